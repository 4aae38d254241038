//! One simulated file's bytes: what is durable, what the page cache shows, and the writes
//! in between.

use super::rng::Rng;

/// Bytes the disk writes atomically: a power loss keeps or drops each whole sector.
pub const SECTOR_BYTES: u64 = 512;

/// A change written to the page cache and not yet durable.
#[derive(Debug, Clone)]
pub enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// What a power loss (or a failed sync) keeps of a file's pending changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// Nothing: the disk has only what was synced.
    DropAll,
    /// The first `n` changes, whole, in order.
    Prefix(usize),
    /// Each sector of each change kept or dropped at random (later sectors may survive
    /// while earlier ones are lost).
    Sectors,
}

impl Tear {
    /// One of the three, at random.
    pub fn pick(rng: &mut Rng, pending: usize) -> Tear {
        match rng.below(3) {
            0 => Tear::DropAll,
            1 => Tear::Prefix(usize::try_from(rng.below(pending as u64 + 1)).unwrap_or(0)),
            _ => Tear::Sectors,
        }
    }
}

/// A file (an inode: it may have several names or none).
#[derive(Debug, Clone, Default)]
pub struct Inode {
    /// What survives a power loss.
    pub durable: Vec<u8>,
    /// What reads see: `durable` plus every write since, including writes a failed sync
    /// lost (until [`Inode::drop_cache`]).
    pub cached: Vec<u8>,
    /// Changes since the last sync, in order: a sync makes them durable.
    pub pending: Vec<Pending>,
}

impl Inode {
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        apply_write(&mut self.cached, offset, data);
        self.pending.push(Pending::Write {
            offset,
            data: data.to_vec(),
        });
    }

    pub fn set_len(&mut self, len: u64) {
        resize(&mut self.cached, len);
        self.pending.push(Pending::SetLen(len));
    }

    /// A successful sync: every pending change is durable.
    pub fn sync(&mut self) {
        for change in std::mem::take(&mut self.pending) {
            apply(&mut self.durable, &change);
        }
    }

    /// A power loss: `tear` decides what of the pending changes reached the disk; the
    /// page cache is gone.
    pub fn lose_power(&mut self, tear: Tear, rng: &mut Rng) {
        self.tear_into_durable(tear, rng);
        self.cached = self.durable.clone();
    }

    /// A failed sync: some of the pending changes may have reached the disk, the rest are
    /// lost, but the page cache still shows them (Linux marks the pages clean), so reads
    /// return bytes that are not on the disk until the cache is dropped.
    pub fn fail_sync(&mut self, tear: Tear, rng: &mut Rng) {
        self.tear_into_durable(tear, rng);
    }

    /// Drops clean cached pages: reads see the disk again, plus what is still pending.
    pub fn drop_cache(&mut self) {
        self.cached = self.durable.clone();
        for change in &self.pending {
            apply(&mut self.cached, change);
        }
    }

    fn tear_into_durable(&mut self, tear: Tear, rng: &mut Rng) {
        let pending = std::mem::take(&mut self.pending);
        match tear {
            Tear::DropAll => {}
            Tear::Prefix(n) => {
                for change in pending.iter().take(n) {
                    apply(&mut self.durable, change);
                }
            }
            Tear::Sectors => {
                for change in &pending {
                    match change {
                        Pending::SetLen(_) => {
                            if rng.chance(500_000) {
                                apply(&mut self.durable, change);
                            }
                        }
                        Pending::Write { offset, data } => {
                            for (at, piece) in sectors(*offset, data) {
                                if rng.chance(500_000) {
                                    apply_write(&mut self.durable, at, piece);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The pieces of a write at `offset` cut at sector boundaries of the file.
fn sectors(offset: u64, data: &[u8]) -> Vec<(u64, &[u8])> {
    let mut pieces = Vec::new();
    let mut at = offset;
    let mut rest = data;
    while !rest.is_empty() {
        let room = SECTOR_BYTES - at % SECTOR_BYTES;
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        pieces.push((at, piece));
        at += n as u64;
        rest = tail;
    }
    pieces
}

fn apply(bytes: &mut Vec<u8>, change: &Pending) {
    match change {
        Pending::Write { offset, data } => apply_write(bytes, *offset, data),
        Pending::SetLen(len) => resize(bytes, *len),
    }
}

fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).expect("a simulated file fits in memory");
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn resize(bytes: &mut Vec<u8>, len: u64) {
    bytes.resize(
        usize::try_from(len).expect("a simulated file fits in memory"),
        0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(writes: &[(u64, &[u8])]) -> Inode {
        let mut inode = Inode::default();
        for (offset, data) in writes {
            inode.write(*offset, data);
        }
        inode
    }

    #[test]
    fn a_sync_makes_writes_durable_and_a_power_loss_keeps_only_that() {
        let mut rng = Rng::new(1);
        let mut inode = written(&[(0, b"hello")]);
        inode.sync();
        inode.write(5, b" world");
        assert_eq!(inode.cached, b"hello world");
        inode.lose_power(Tear::DropAll, &mut rng);
        assert_eq!(inode.durable, b"hello");
        assert_eq!(inode.cached, b"hello");
    }

    #[test]
    fn a_prefix_tear_keeps_whole_changes_in_order() {
        let mut rng = Rng::new(1);
        let mut inode = written(&[(0, b"aa"), (2, b"bb"), (4, b"cc")]);
        inode.lose_power(Tear::Prefix(2), &mut rng);
        assert_eq!(inode.durable, b"aabb");
    }

    #[test]
    fn a_sector_tear_keeps_some_whole_sectors_of_a_write() {
        let data = vec![7_u8; 4 * SECTOR_BYTES as usize];
        let mut seen_later_without_earlier = false;
        for seed in 0..64 {
            let mut rng = Rng::new(seed);
            let mut inode = written(&[(0, &data)]);
            inode.lose_power(Tear::Sectors, &mut rng);
            // Every sector is all 7s or all 0s (zeros where the file grew over a gap).
            for sector in inode.durable.chunks(SECTOR_BYTES as usize) {
                assert!(sector.iter().all(|&b| b == 7) || sector.iter().all(|&b| b == 0));
            }
            if inode.durable.first() == Some(&0) && inode.durable.last() == Some(&7) {
                seen_later_without_earlier = true;
            }
        }
        assert!(seen_later_without_earlier);
    }

    #[test]
    fn after_a_failed_sync_the_cache_shows_what_the_disk_lost_until_dropped() {
        let mut rng = Rng::new(1);
        let mut inode = written(&[(0, b"kept")]);
        inode.sync();
        inode.write(4, b"lost");
        inode.fail_sync(Tear::DropAll, &mut rng);
        assert_eq!(inode.cached, b"keptlost");
        // A later sync has nothing to write: the pages are clean.
        inode.sync();
        assert_eq!(inode.durable, b"kept");
        inode.drop_cache();
        assert_eq!(inode.cached, b"kept");
    }

    #[test]
    fn sectors_cut_at_file_sector_boundaries() {
        let data = [1_u8; 1000];
        let pieces = sectors(500, &data);
        let cuts: Vec<(u64, usize)> = pieces.iter().map(|(at, p)| (*at, p.len())).collect();
        assert_eq!(cuts, vec![(500, 12), (512, 512), (1024, 476)]);
    }
}
