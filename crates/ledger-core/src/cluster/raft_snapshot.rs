//! Raft snapshots of a ledger node: the engine's own snapshot file (the state right after
//! transaction `T`, an *image*) behind a head that says which prefix of the replicated
//! log it stands for ([`SnapshotHead`]: the last entry it covers, the membership as of
//! it, and that prefix's last transaction). The same bytes are sent to a node that lags
//! behind the purged log and kept as `raft-snapshot` in the data directory, so a node
//! that restarts still has its snapshot to send, and a node that installed one finishes
//! the installation on its next start.
//!
//! ```text
//! "RLRSNAP1" | head length: u32 LE | head | crc32c(magic, length, head): u32 LE | image
//! ```
//!
//! The image carries its own checksums (`docs/snapshot-format.md`).

use std::path::Path;

use ledger_storage::Storage;

use super::entry_format::{HeaderError, SnapshotHead};
use super::types::TypeConfig;

/// The file in the data directory.
pub(crate) const FILE_NAME: &str = "raft-snapshot";
const MAGIC: &[u8; 8] = b"RLRSNAP1";
/// The largest head: a membership of many nodes is still far below it.
const HEAD_BYTES_MAX: usize = 1 << 20;

/// Why a Raft snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotFileError {
    #[error("raft snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft snapshot: {0}")]
    Layout(&'static str),
    #[error("raft snapshot: {0}")]
    Head(#[from] HeaderError),
    #[error("raft snapshot image: {0}")]
    Image(#[from] ledger_snapshot::SnapshotError),
}

/// A Raft snapshot, checked: its head's checksum and its image's.
#[derive(Clone, Debug)]
pub(crate) struct RaftSnapshot {
    pub head: SnapshotHead,
    /// The transaction the image is consistent at (`>= head.covered_tx`).
    pub image_tx: u64,
    bytes: Vec<u8>,
    image_at: usize,
}

impl RaftSnapshot {
    /// The snapshot of `image` (an engine snapshot file) standing for `head`.
    ///
    /// # Errors
    /// An image that does not verify, or that does not cover `head.covered_tx`.
    pub fn new(head: SnapshotHead, image: &[u8]) -> Result<RaftSnapshot, SnapshotFileError> {
        let mut encoded = Vec::new();
        head.encode(&mut encoded);
        let head_len = u32::try_from(encoded.len()).expect("a head is small");
        let mut bytes = Vec::with_capacity(MAGIC.len() + 8 + encoded.len() + image.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&head_len.to_le_bytes());
        bytes.extend_from_slice(&encoded);
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(image);
        RaftSnapshot::decode(bytes)
    }

    /// Checks and splits the bytes of a snapshot.
    ///
    /// # Errors
    /// A damaged or truncated head, an image that does not verify or does not cover
    /// the head's transactions.
    pub fn decode(bytes: Vec<u8>) -> Result<RaftSnapshot, SnapshotFileError> {
        let short = SnapshotFileError::Layout("truncated");
        let magic = bytes.get(..MAGIC.len()).ok_or(short)?;
        if magic != MAGIC {
            return Err(SnapshotFileError::Layout("not a raft snapshot (bad magic)"));
        }
        let len_at = MAGIC.len();
        let len = bytes
            .get(len_at..len_at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(SnapshotFileError::Layout("truncated"))?;
        if len > HEAD_BYTES_MAX {
            return Err(SnapshotFileError::Layout("head length out of range"));
        }
        let head_end = len_at + 4 + len;
        let crc = bytes
            .get(head_end..head_end + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or(SnapshotFileError::Layout("truncated"))?;
        if crc32c::crc32c(&bytes[..head_end]) != crc {
            return Err(SnapshotFileError::Layout("head checksum mismatch"));
        }
        let head = SnapshotHead::decode(&bytes[len_at + 4..head_end])?;
        let image_at = head_end + 4;
        let (info, _) = ledger_snapshot::verify_bytes(&bytes[image_at..])?;
        if head.meta.last_log_id.is_none() || info.sequence < head.covered_tx {
            return Err(SnapshotFileError::Layout(
                "the image does not cover the entries the head names",
            ));
        }
        Ok(RaftSnapshot {
            head,
            image_tx: info.sequence,
            bytes,
            image_at,
        })
    }

    /// The engine snapshot file inside.
    pub fn image(&self) -> &[u8] {
        &self.bytes[self.image_at..]
    }

    /// In openraft's terms.
    pub fn into_openraft(self) -> openraft::Snapshot<TypeConfig> {
        openraft::Snapshot {
            meta: self.head.meta,
            snapshot: Box::new(std::io::Cursor::new(self.bytes)),
        }
    }

    /// Reads `dir`'s snapshot file; `None` when there is none.
    ///
    /// # Errors
    /// I/O errors; a damaged file (written atomically, so only a disk's fault).
    pub fn read(
        storage: &dyn Storage,
        dir: &Path,
    ) -> Result<Option<RaftSnapshot>, SnapshotFileError> {
        let bytes = match ledger_storage::read_whole(storage, &dir.join(FILE_NAME)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        RaftSnapshot::decode(bytes).map(Some)
    }

    /// Writes it as `dir`'s snapshot file, durably and atomically.
    ///
    /// # Errors
    /// I/O errors (the previous file, if any, is left as it was).
    pub fn write(&self, storage: &dyn Storage, dir: &Path) -> std::io::Result<()> {
        ledger_storage::write_whole(storage, dir, FILE_NAME, &self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{
        BasicNode, CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership,
    };

    use super::*;

    fn head(covered_tx: u64) -> SnapshotHead {
        let nodes = BTreeMap::from([(1, BasicNode::new("a:1"))]);
        SnapshotHead {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 40)),
                last_membership: StoredMembership::new(
                    Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
                    Membership::new(vec![BTreeSet::from([1])], nodes),
                ),
                snapshot_id: "3-1-40".into(),
            },
            covered_tx,
        }
    }

    fn image(dir: &Path, tx: u64) -> Vec<u8> {
        let store = ledger_snapshot::SnapshotStore::open(dir, Default::default()).unwrap();
        let state = crate::ledger::SnapshotState {
            format: crate::ledger::STATE_FORMAT,
            last_tx_id: tx,
            now_ns: 0,
            balances: vec![0; 4],
            dedup: Vec::new(),
            latest: vec![0; 4],
            accounts: Vec::new(),
            system_balances: Vec::new(),
            holds: Vec::new(),
            reversals: Vec::new(),
        };
        let report = store
            .write_format(tx, crate::ledger::STATE_FORMAT, &state)
            .unwrap();
        std::fs::read(report.path).unwrap()
    }

    #[test]
    fn a_snapshot_round_trips_through_its_file_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let image = image(&dir.path().join("snapshots"), 120);
        let snapshot = RaftSnapshot::new(head(100), &image).unwrap();
        assert_eq!((snapshot.image_tx, snapshot.image()), (120, &image[..]));

        let storage = ledger_storage::real();
        assert!(
            RaftSnapshot::read(storage.as_ref(), dir.path())
                .unwrap()
                .is_none()
        );
        snapshot.write(storage.as_ref(), dir.path()).unwrap();
        let read = RaftSnapshot::read(storage.as_ref(), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(read.head, snapshot.head);
        assert_eq!(read.image(), &image[..]);

        // Any flipped bit is caught: in the head by its checksum, in the image by its own.
        let bytes = snapshot.bytes.clone();
        for at in [0, 9, 20, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(RaftSnapshot::decode(damaged).is_err(), "flip at {at}");
        }
        for cut in [3, 12, bytes.len() - 1] {
            assert!(
                RaftSnapshot::decode(bytes[..cut].to_vec()).is_err(),
                "cut at {cut}"
            );
        }
        // An image older than the entries the head names is refused.
        assert!(RaftSnapshot::new(head(121), &image).is_err());
    }
}
