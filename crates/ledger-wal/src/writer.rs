//! The writer: recovery on open, append (one `pwritev` per frame; two writes and a
//! writeback hint for frames of 256 KiB and more), group-commit `sync`,
//! segment rotation, retention.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger_storage::{
    AtomicFile, LockGuard, OpenMode, Storage, StorageFile, read_full_at, write_all_at,
};

use crate::dir::{self, SegmentFile, sync_dir};
use crate::error::{FrameDefect, WalError, io_err};
use crate::format::{
    BLOCK_BYTES, FRAME_ALIGN_BYTES_MAX, FRAME_HEADER_BYTES, FRAME_PAYLOAD_BYTES_MAX, FrameHeader,
    FrameKind, HeaderCheck, SEGMENT_BYTES_MIN, SEGMENT_HEADER_BYTES, SegmentHeader, new_salt,
    segment_file_name, segment_path, temp_file_name,
};
use crate::reader::SegmentInfo;
use crate::scan::{SegmentEnd, SegmentScan, Step};

/// Name of the lock file a writer holds (`flock`) in its directory.
pub const LOCK_FILE_NAME: &str = "wal.lock";

/// Bytes of zeros written per call when pre-zeroing a segment.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// How a [`Wal`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalConfig {
    /// A new segment is started when the next frame would take the current one past this
    /// size (a single frame larger than it gets a segment of its own). Default 64 MiB.
    pub segment_bytes_max: u64,
    /// Write zeros over the whole segment (and `fdatasync`) when it is created, so that
    /// appends overwrite allocated blocks instead of growing the file. Default off.
    pub preallocate: bool,
    /// Frames of at least this many bytes (header + payload) are followed by zero padding
    /// up to the next multiple of [`WalConfig::frame_align_bytes`] in the file, so the next frame
    /// starts on a fresh block: large group commits then write whole blocks only, as a bare
    /// aligned `write` loop does. Smaller frames are not padded (their next append
    /// overwrites the partly written block, which is cheaper than a fresh one).
    /// Default 32 KiB (at most 1/8 of such a frame is padding); `u64::MAX` disables it.
    pub align_frames_min_bytes: u64,
    /// The boundary padded frames end on: a power of two from 512 to
    /// [`FRAME_ALIGN_BYTES_MAX`] (64 KiB). Default 4096 (a block). On this machine's disk a
    /// 64 KiB write at a 64 KiB-aligned offset commits 15-25% faster than at a 4 KiB one:
    /// a caller that sizes frames to fill 64 KiB units can set 65536.
    pub frame_align_bytes: u64,
    /// Frames of at least this many bytes are written payload first: the payload's
    /// writeback is started (`sync_file_range`) before its crc32c is computed, and the
    /// header goes in last, so the checksum (about 5 GB/s here, 0.2 ms per MiB) overlaps
    /// the disk instead of adding to each commit. Smaller frames are one `pwritev`.
    /// Default 256 KiB; `u64::MAX` disables it.
    pub overlap_checksum_min_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes_max: 64 << 20,
            preallocate: false,
            align_frames_min_bytes: 32 << 10,
            frame_align_bytes: BLOCK_BYTES,
            overlap_checksum_min_bytes: 256 << 10,
        }
    }
}

impl WalConfig {
    /// Sets [`WalConfig::segment_bytes_max`].
    #[must_use]
    pub fn with_segment_bytes_max(mut self, bytes: u64) -> Self {
        self.segment_bytes_max = bytes;
        self
    }

    /// Sets [`WalConfig::align_frames_min_bytes`].
    #[must_use]
    pub fn with_align_frames_min_bytes(mut self, bytes: u64) -> Self {
        self.align_frames_min_bytes = bytes;
        self
    }

    /// Sets [`WalConfig::frame_align_bytes`].
    #[must_use]
    pub fn with_frame_align_bytes(mut self, bytes: u64) -> Self {
        self.frame_align_bytes = bytes;
        self
    }

    /// Sets [`WalConfig::overlap_checksum_min_bytes`].
    #[must_use]
    pub fn with_overlap_checksum_min_bytes(mut self, bytes: u64) -> Self {
        self.overlap_checksum_min_bytes = bytes;
        self
    }

    /// Sets [`WalConfig::preallocate`].
    #[must_use]
    pub fn with_preallocate(mut self, preallocate: bool) -> Self {
        self.preallocate = preallocate;
        self
    }
}

/// A torn tail that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    /// The segment file.
    pub segment: PathBuf,
    /// The offset it was truncated at (just after the last valid frame).
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
    /// What was wrong at `offset`.
    pub defect: FrameDefect,
}

/// What [`Wal::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Number of segment files.
    pub segments: usize,
    /// How the last segment ended before any repair (`None` for an empty log).
    pub end: Option<SegmentEnd>,
    /// The torn tail that was truncated, if any.
    pub truncated: Option<TruncatedTail>,
    /// Leftover temporary segment files (of an interrupted segment creation) removed.
    pub removed_temp_files: Vec<PathBuf>,
    /// The sequence the next append must start at, `None` for a log with no segment
    /// (any first sequence is accepted then).
    pub next_seq: Option<u64>,
}

impl RecoveryReport {
    /// The last sequence in the log (every sequence below [`Self::next_seq`] is accounted
    /// for), `None` if there is none.
    #[must_use]
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq.and_then(|n| n.checked_sub(1))
    }
}

/// The durable position after a [`Wal::sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// The sequence after the last durable record (`None` if the log is still empty).
    pub next_seq: Option<u64>,
    /// The number of the segment being written.
    pub segment: u64,
    /// Durable bytes in that segment.
    pub offset: u64,
}

impl Durable {
    /// The last durable sequence: everything up to it is committed.
    #[must_use]
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq.and_then(|n| n.checked_sub(1))
    }
}

#[derive(Debug)]
struct Active {
    file: Box<dyn StorageFile>,
    number: u64,
    salt: u64,
    /// Where the next frame goes.
    pos: u64,
}

/// A truncation point [`Wal::check_cut`] found valid.
#[derive(Debug)]
struct Cut {
    /// Index in `Wal::segments` of the segment holding it.
    index: usize,
    /// That segment's file, when it is not the active one.
    opened: Option<Box<dyn StorageFile>>,
    /// The `first_seq` of the frame there: where the log continues.
    first_seq: u64,
}

/// What [`Wal::truncate`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// The sequence the next append starts at: the `first_seq` of the frame that was at
    /// the cut.
    pub next_seq: u64,
    /// Bytes cut from the end of the segment holding the cut (its file length before, less
    /// the cut's offset).
    pub bytes_cut: u64,
    /// The segment files deleted (every segment after the one holding the cut), oldest
    /// first.
    pub removed_segments: Vec<PathBuf>,
}

/// A frame about to be written: its kind byte, where its records start and how many.
#[derive(Debug, Clone, Copy)]
struct FrameSpec {
    kind: u8,
    first_seq: u64,
    record_count: u32,
}

/// Where a frame is: its segment's number and the byte offset of its header in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FramePosition {
    /// The segment number.
    pub segment: u64,
    /// Byte offset of the frame header in the segment file.
    pub offset: u64,
}

/// The single writer of a WAL directory.
///
/// `append`/`append_with` write one frame each with one `pwritev` (into the kernel's page
/// cache; large frames: payload, writeback hint, header, see
/// [`WalConfig::overlap_checksum_min_bytes`]); `sync` makes everything appended since the last sync durable with one
/// `fdatasync`. After any failed write or sync the writer is poisoned and must be reopened.
#[derive(Debug)]
pub struct Wal {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    cfg: WalConfig,
    _lock: Box<dyn LockGuard>,
    segments: Vec<SegmentFile>,
    active: Option<Active>,
    next_seq: Option<u64>,
    durable: Durable,
    unsynced: bool,
    poisoned: bool,
    payload_buf: Vec<u8>,
    appended_bytes: u64,
    /// The number of the last segment a [`Wal::reset`] deleted (0: none): the next
    /// segment is numbered after it, so a position into the old log never names a new one.
    numbered_after: u64,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` and recovers it: leftover temporary
    /// segments are removed, every segment header is checked, the last segment is made
    /// durable and read back from the disk frame by frame, and a torn tail at its end is
    /// truncated (and reported). Anything else invalid is refused with an error naming
    /// the file and offset.
    ///
    /// Every frame the recovered log holds is durable when this returns: frames that a
    /// killed writer left in the page cache are synced before they are read, and pages
    /// that a failed `fdatasync` left looking written are dropped from the cache first,
    /// so what is read is what the disk has.
    ///
    /// # Errors
    /// [`WalError::Locked`] if another writer holds the directory, I/O errors, the
    /// corruption variants, [`WalError::InvalidConfig`].
    pub fn open(dir: impl AsRef<Path>, cfg: WalConfig) -> Result<(Self, RecoveryReport), WalError> {
        Self::open_on(ledger_storage::real(), dir, cfg)
    }

    /// [`Wal::open`] on `storage`.
    ///
    /// # Errors
    /// As [`Wal::open`].
    pub fn open_on(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        cfg: WalConfig,
    ) -> Result<(Self, RecoveryReport), WalError> {
        if cfg.segment_bytes_max < SEGMENT_BYTES_MIN {
            return Err(WalError::InvalidConfig {
                reason: "segment_bytes_max is below SEGMENT_BYTES_MIN",
            });
        }
        if !cfg.frame_align_bytes.is_power_of_two()
            || !(512..=FRAME_ALIGN_BYTES_MAX).contains(&cfg.frame_align_bytes)
        {
            return Err(WalError::InvalidConfig {
                reason: "frame_align_bytes must be a power of two from 512 to 65536",
            });
        }
        let dir = dir.as_ref().to_path_buf();
        storage.create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock = lock_dir(storage.as_ref(), &dir)?;
        let listing = dir::list(storage.as_ref(), &dir)?;
        for tmp in &listing.temp_files {
            storage.remove_file(tmp).map_err(io_err(tmp))?;
        }
        let mut report = RecoveryReport {
            segments: listing.segments.len(),
            end: None,
            truncated: None,
            removed_temp_files: listing.temp_files,
            next_seq: None,
        };
        let mut wal = Self {
            storage,
            dir,
            cfg,
            _lock: lock,
            segments: listing.segments,
            active: None,
            next_seq: None,
            durable: Durable {
                next_seq: None,
                segment: 0,
                offset: 0,
            },
            unsynced: false,
            poisoned: false,
            payload_buf: Vec::new(),
            appended_bytes: 0,
            numbered_after: 0,
        };
        // The names of the segments (the newest may have been created by a writer that
        // died before syncing the directory) and the removals above become durable before
        // anything in them is reported.
        sync_dir(wal.storage.as_ref(), &wal.dir)?;
        if let Some(last) = wal.segments.last().cloned() {
            let file = wal
                .storage
                .open(&last.path, OpenMode::ReadWrite)
                .map_err(io_err(&last.path))?;
            // What a killed writer appended is still in the page cache, not on the disk:
            // sync it before reporting it committed. Then drop the cache, so pages that a
            // failed fdatasync left looking written are read from the disk, as they are.
            file.sync_data().map_err(io_err(&last.path))?;
            file.drop_cache().map_err(io_err(&last.path))?;
            let len = file.size().map_err(io_err(&last.path))?;
            let mut scan = SegmentScan::new(
                file.as_ref(),
                last.path.clone(),
                last.header,
                len,
                true,
                Vec::new(),
            );
            let end = loop {
                match scan.step()? {
                    Step::Frame(_) => {}
                    Step::End(end) => break end,
                }
            };
            let next_seq = scan.next_seq();
            drop(scan);
            if let SegmentEnd::Torn {
                offset,
                bytes,
                defect,
            } = end
            {
                file.set_len(offset).map_err(io_err(&last.path))?;
                file.sync_all().map_err(io_err(&last.path))?;
                report.truncated = Some(TruncatedTail {
                    segment: last.path.clone(),
                    offset,
                    bytes_dropped: bytes,
                    defect,
                });
            }
            let pos = end.offset();
            wal.active = Some(Active {
                file,
                number: last.header.number,
                salt: last.header.salt,
                pos,
            });
            wal.next_seq = Some(next_seq);
            wal.durable = Durable {
                next_seq: Some(next_seq),
                segment: last.header.number,
                offset: pos,
            };
            report.end = Some(end);
            report.next_seq = Some(next_seq);
        }
        Ok((wal, report))
    }

    /// The directory of the log.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence the next append must start at (`None`: empty log, any start).
    #[must_use]
    pub fn next_seq(&self) -> Option<u64> {
        self.next_seq
    }

    /// The durable position as of the last sync (or open).
    #[must_use]
    pub fn durable(&self) -> Durable {
        self.durable
    }

    /// Bytes appended to segments since open: frame headers, payloads and padding (not
    /// segment headers). What a caller divides by its records for bytes on disk per record.
    #[must_use]
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes
    }

    /// Appends `payload` as one records frame holding sequences `first_seq..=last_seq`.
    /// One `pwritev`, no copy of the payload. Not durable until [`Wal::sync`]. Returns
    /// where the frame went, for a [`FrameCursor`](crate::FrameCursor) to read it back.
    ///
    /// # Errors
    /// [`WalError::OutOfOrder`] / [`WalError::InvalidRange`] / [`WalError::PayloadTooLarge`]
    /// (nothing written, the writer stays usable); I/O errors (the writer is poisoned).
    pub fn append(
        &mut self,
        first_seq: u64,
        last_seq: u64,
        payload: &[u8],
    ) -> Result<FramePosition, WalError> {
        self.append_records(first_seq, last_seq, payload)
    }

    /// Appends an optional frame of the caller's `kind` (`0x81..=0xFF`: at least
    /// [`FrameKind::OPTIONAL_MIN`], not the writer's own [`FrameKind::DURABLE_MARK_BYTE`])
    /// carrying `payload` and no records. Readers hand it out as `FrameKind::Optional(kind)`
    /// with its payload, in log order.
    ///
    /// Its `first_seq` is [`Wal::next_seq`], the sequence the next records frame starts at,
    /// as for a durable mark: an optional frame takes no sequence, so the next append
    /// still starts at `next_seq()`. A log with no sequence yet (new and empty,
    /// `next_seq() == None`) refuses it: call [`Wal::start_at`] first. A segment this frame
    /// opens (rotation) gets that sequence as its header's `first_seq`.
    ///
    /// Otherwise as [`Wal::append`]: one `pwritev`, padded and rotated by the same rules,
    /// not durable until [`Wal::sync`]; the position is where the frame went.
    ///
    /// # Errors
    /// [`WalError::InvalidFrameKind`], [`WalError::NoSequence`],
    /// [`WalError::PayloadTooLarge`] (nothing written, the writer stays usable); I/O errors
    /// (the writer is poisoned).
    pub fn append_optional(&mut self, kind: u8, payload: &[u8]) -> Result<FramePosition, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let invalid = |reason| WalError::InvalidFrameKind { kind, reason };
        if kind < FrameKind::OPTIONAL_MIN {
            return Err(invalid("not an optional kind (0x80..=0xFF)"));
        }
        if kind == FrameKind::DURABLE_MARK_BYTE {
            return Err(invalid("the durable mark is written by the WAL itself"));
        }
        let Some(first_seq) = self.next_seq else {
            return Err(WalError::NoSequence);
        };
        let spec = FrameSpec {
            kind,
            first_seq,
            record_count: 0,
        };
        self.write_frame(spec, payload)
    }

    /// Sets the sequence a log with no sequence yet (new and empty: `next_seq() == None`)
    /// starts at, so that its first frame may be an optional one
    /// ([`Wal::append_optional`]); the next records frame must then start at `first_seq`.
    /// Writes nothing: until a frame is appended, a reopened log is empty again. On a log
    /// that has a sequence, `first_seq` must be [`Wal::next_seq`] (then nothing changes).
    ///
    /// # Errors
    /// [`WalError::OutOfOrder`] when the log already expects another sequence;
    /// [`WalError::Poisoned`].
    pub fn start_at(&mut self, first_seq: u64) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        match self.next_seq {
            None => self.next_seq = Some(first_seq),
            Some(expected) if expected != first_seq => {
                return Err(WalError::OutOfOrder {
                    expected,
                    first_seq,
                });
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Appends one records frame for `first_seq..=last_seq` whose payload `encode` writes
    /// into the WAL's own reusable buffer (passed empty). Returns what `encode` returns.
    ///
    /// # Errors
    /// As [`Wal::append`]; range errors are reported before `encode` runs.
    pub fn append_with<R>(
        &mut self,
        first_seq: u64,
        last_seq: u64,
        encode: impl FnOnce(&mut Vec<u8>) -> R,
    ) -> Result<R, WalError> {
        self.check_append(first_seq, last_seq)?;
        let mut buf = std::mem::take(&mut self.payload_buf);
        buf.clear();
        let out = encode(&mut buf);
        let result = self.append_records(first_seq, last_seq, &buf);
        self.payload_buf = buf;
        result.map(|_| out)
    }

    fn check_append(&self, first_seq: u64, last_seq: u64) -> Result<u32, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let invalid = |reason| WalError::InvalidRange {
            first_seq,
            last_seq,
            reason,
        };
        if last_seq < first_seq {
            return Err(invalid("last_seq is below first_seq"));
        }
        if last_seq == u64::MAX {
            return Err(invalid("last_seq must be below u64::MAX"));
        }
        let count = u32::try_from(last_seq - first_seq + 1)
            .map_err(|_| invalid("more than u32::MAX records in one frame"))?;
        if let Some(expected) = self.next_seq
            && expected != first_seq
        {
            return Err(WalError::OutOfOrder {
                expected,
                first_seq,
            });
        }
        Ok(count)
    }

    fn append_records(
        &mut self,
        first_seq: u64,
        last_seq: u64,
        payload: &[u8],
    ) -> Result<FramePosition, WalError> {
        let record_count = self.check_append(first_seq, last_seq)?;
        let spec = FrameSpec {
            kind: FrameKind::RECORDS_BYTE,
            first_seq,
            record_count,
        };
        self.write_frame(spec, payload)
    }

    /// Writes one checked frame at the end of the log, rotating first if it does not fit.
    fn write_frame(&mut self, spec: FrameSpec, payload: &[u8]) -> Result<FramePosition, WalError> {
        let FrameSpec {
            kind,
            first_seq,
            record_count,
        } = spec;
        assert_eq!(record_count == 0, kind != FrameKind::RECORDS_BYTE);
        assert!(self.next_seq.is_none_or(|next| next == first_seq));
        if payload.len() > FRAME_PAYLOAD_BYTES_MAX {
            return Err(WalError::PayloadTooLarge {
                payload_bytes: payload.len() as u64,
                max_bytes: FRAME_PAYLOAD_BYTES_MAX as u64,
            });
        }
        let frame_bytes = (FRAME_HEADER_BYTES + payload.len()) as u64;
        let align_min = self.cfg.align_frames_min_bytes;
        let align = self.cfg.frame_align_bytes;
        let padding_at = |pos: u64| {
            if frame_bytes < align_min {
                return 0;
            }
            (align - (pos + frame_bytes) % align) % align
        };
        let needs_segment = match &self.active {
            None => true,
            Some(a) => {
                a.pos > SEGMENT_HEADER_BYTES as u64
                    && a.pos + frame_bytes + padding_at(a.pos) > self.cfg.segment_bytes_max
            }
        };
        if needs_segment {
            self.rotate(first_seq)
                .inspect_err(|_| self.poisoned = true)?;
        }
        let Some(active) = self.active.as_mut() else {
            return Err(WalError::Poisoned);
        };
        let salt = active.salt;
        let pos = active.pos;
        // frame_align_bytes <= FRAME_ALIGN_BYTES_MAX = 65536 (checked at open), so the
        // padding, below it, fits a u16.
        let Ok(padding) = u16::try_from(padding_at(pos)) else {
            unreachable!("padding below frame_align_bytes <= 65536");
        };
        let zeros = ZEROS
            .get(..usize::from(padding))
            .expect("ZEROS is FRAME_ALIGN_BYTES_MAX long");
        let path = segment_path(&self.dir, active.number);
        let header = |payload: &[u8]| {
            FrameHeader::new(kind, first_seq, record_count, salt, payload, padding).encode()
        };
        let file = active.file.as_ref();
        let written = if frame_bytes >= self.cfg.overlap_checksum_min_bytes {
            // Payload first, its writeback started, the checksum computed meanwhile, the
            // header last. The block holding the header is left to `sync`.
            let body = pos + FRAME_HEADER_BYTES as u64;
            let end = pos + frame_bytes + u64::from(padding);
            let first_block = body.next_multiple_of(BLOCK_BYTES);
            write_all_at(
                file,
                body,
                &mut [IoSlice::new(payload), IoSlice::new(zeros)],
            )
            .and_then(|()| {
                if end > first_block {
                    file.start_writeback(first_block, end - first_block)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| write_all_at(file, pos, &mut [IoSlice::new(&header(payload))]))
        } else {
            let header = header(payload);
            let mut bufs = [
                IoSlice::new(&header),
                IoSlice::new(payload),
                IoSlice::new(zeros),
            ];
            write_all_at(file, pos, &mut bufs)
        };
        if let Err(e) = written {
            self.poisoned = true;
            return Err(io_err(path)(e));
        }
        active.pos += frame_bytes + u64::from(padding);
        self.appended_bytes += frame_bytes + u64::from(padding);
        // check_append refused ranges reaching u64::MAX: no overflow for records.
        self.next_seq = Some(first_seq + u64::from(record_count));
        self.unsynced = true;
        Ok(FramePosition {
            segment: active.number,
            offset: pos,
        })
    }

    /// Makes everything appended so far durable with one `fdatasync` (none if nothing was
    /// appended since the last sync) and returns the durable position.
    ///
    /// # Errors
    /// I/O errors; the writer is then poisoned (a failed `fdatasync` may have lost pages).
    pub fn sync(&mut self) -> Result<Durable, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if self.unsynced
            && let Some(active) = &self.active
        {
            if let Err(e) = active.file.sync_data() {
                self.poisoned = true;
                return Err(io_err(segment_path(&self.dir, active.number))(e));
            }
            self.unsynced = false;
            self.durable = Durable {
                next_seq: self.next_seq,
                segment: active.number,
                offset: active.pos,
            };
            self.write_durable_mark()?;
        }
        Ok(self.durable)
    }

    /// Removes the frame at `at` and every frame after it, in every segment, durably: the
    /// log then ends where that frame started, and the next append starts at that frame's
    /// `first_seq` (records) or is an optional frame with that `first_seq`. Frames at or
    /// before `at` may have been synced: cutting acknowledged frames is allowed (a Raft
    /// follower drops conflicting entries). Positions at or after `at` are invalid
    /// afterwards; segment numbers after `at.segment` are used again by later rotations.
    ///
    /// `at` must be a frame position of this log (from an append or a reader). It is
    /// checked before anything changes: the segment exists, `at` is past its header and
    /// before the end of the log, and a frame header of this segment (magic, checksum,
    /// salt) whose frame fits the segment and whose sequence lies in the segment's range
    /// starts there. Any frame may be cut at, durable marks and optional frames included.
    ///
    /// What it does, in this order, so that a crash anywhere leaves a valid log (the old
    /// log, or a prefix of it, or the cut one):
    /// 1. deletes every later segment, newest first, then `fsync`s the directory;
    /// 2. cuts the segment holding `at` to `at.offset` (`set_len`; a frame right after the
    ///    header leaves the segment empty, header only, which is a valid last segment that
    ///    starts at that frame's sequence) and `fsync`s it: the removed bytes, which carry
    ///    this segment's salt, can never reappear after a power loss and be read as frames;
    /// 3. continues appending at `at.offset` in that segment, with a durable mark there
    ///    first (as after a sync: everything before it is durable), so damage to the frames
    ///    before the cut is still told apart from a torn write of later appends.
    ///
    /// A preallocated segment loses its preallocation past the cut.
    ///
    /// # Errors
    /// [`WalError::InvalidPosition`] (and I/O errors while reading the header at `at`):
    /// nothing changed, the writer stays usable. I/O errors afterwards poison the writer;
    /// reopening recovers the old log, a prefix of it, or the cut one.
    pub fn truncate(&mut self, at: FramePosition) -> Result<Truncated, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let cut = self.check_cut(at)?;
        self.cut(at, cut).inspect_err(|_| self.poisoned = true)
    }

    /// Checks that a frame of this log starts at `at` and returns what [`Wal::cut`] needs.
    fn check_cut(&self, at: FramePosition) -> Result<Cut, WalError> {
        let invalid = |reason| WalError::InvalidPosition {
            segment: at.segment,
            offset: at.offset,
            reason,
        };
        let Some(index) = self
            .segments
            .iter()
            .position(|s| s.header.number == at.segment)
        else {
            return Err(invalid("no such segment in the log"));
        };
        let (Some(seg), Some(active)) = (self.segments.get(index), self.active.as_ref()) else {
            return Err(invalid("no such segment in the log"));
        };
        if at.offset < SEGMENT_HEADER_BYTES as u64 {
            return Err(invalid("inside the segment header"));
        }
        // The active segment is the last; its frames end at `pos` (a preallocated file is
        // longer). An older segment was complete when the writer left it.
        let opened = if active.number == at.segment {
            None
        } else {
            Some(
                self.storage
                    .open(&seg.path, OpenMode::ReadWrite)
                    .map_err(io_err(&seg.path))?,
            )
        };
        let (file, end) = match &opened {
            Some(f) => (f.as_ref(), f.size().map_err(io_err(&seg.path))?),
            None => (active.file.as_ref(), active.pos),
        };
        if at.offset.saturating_add(FRAME_HEADER_BYTES as u64) > end {
            return Err(invalid(
                "no frame there: past the end of the segment's frames",
            ));
        }
        let mut head = [0_u8; FRAME_HEADER_BYTES];
        let n = read_full_at(file, &mut head, at.offset).map_err(io_err(&seg.path))?;
        let HeaderCheck::Valid(h) = FrameHeader::check(head.get(..n).unwrap_or_default()) else {
            return Err(invalid("no valid frame header there"));
        };
        if h.salt != seg.header.salt {
            return Err(invalid("the frame there is not of this segment (salt)"));
        }
        let frame_bytes =
            FRAME_HEADER_BYTES as u64 + u64::from(h.payload_len) + u64::from(h.padding_bytes);
        if at.offset.saturating_add(frame_bytes) > end {
            return Err(invalid("the frame there does not fit in the segment"));
        }
        let segment_next_seq = match self.segments.get(index + 1) {
            Some(next) => next.header.first_seq,
            None => self.next_seq.unwrap_or(seg.header.first_seq),
        };
        let first = at.offset == SEGMENT_HEADER_BYTES as u64;
        if !(seg.header.first_seq..=segment_next_seq).contains(&h.first_seq)
            || (first && h.first_seq != seg.header.first_seq)
        {
            return Err(invalid(
                "the frame's sequence is outside the segment's range",
            ));
        }
        Ok(Cut {
            index,
            opened,
            first_seq: h.first_seq,
        })
    }

    /// Does the cut [`Wal::check_cut`] checked (see [`Wal::truncate`] for the order).
    fn cut(&mut self, at: FramePosition, cut: Cut) -> Result<Truncated, WalError> {
        let later = self.segments.split_off(cut.index + 1);
        // Newest first: a crash in between leaves a consecutive run of complete segments.
        for seg in later.iter().rev() {
            self.storage
                .remove_file(&seg.path)
                .map_err(io_err(&seg.path))?;
        }
        if !later.is_empty() {
            sync_dir(self.storage.as_ref(), &self.dir)?;
        }
        let Some(seg) = self.segments.last() else {
            unreachable!("check_cut found the segment");
        };
        assert_eq!(seg.header.number, at.segment);
        let (number, salt, path) = (seg.header.number, seg.header.salt, seg.path.clone());
        let file = match cut.opened {
            Some(file) => file,
            None => match self.active.take() {
                Some(active) => active.file,
                None => unreachable!("check_cut found the active segment"),
            },
        };
        let len = file.size().map_err(io_err(&path))?;
        file.set_len(at.offset).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
        self.active = Some(Active {
            file,
            number,
            salt,
            pos: at.offset,
        });
        self.next_seq = Some(cut.first_seq);
        self.unsynced = false;
        self.durable = Durable {
            next_seq: self.next_seq,
            segment: number,
            offset: at.offset,
        };
        self.write_durable_mark()?;
        Ok(Truncated {
            next_seq: cut.first_seq,
            bytes_cut: len.saturating_sub(at.offset),
            removed_segments: later.into_iter().map(|s| s.path).collect(),
        })
    }

    /// Writes a durable mark (not synced: it only has to be read if it reached the disk)
    /// at the durable end, so recovery can tell damage to synced frames from a torn write
    /// of unsynced ones (`FrameKind::DURABLE_MARK_BYTE`). Skipped where it would take the
    /// segment past its size: the next append starts a new segment then.
    fn write_durable_mark(&mut self) -> Result<(), WalError> {
        let (Some(active), Some(next_seq)) = (self.active.as_mut(), self.next_seq) else {
            return Ok(());
        };
        let mark = FrameHeader::durable_mark(next_seq, active.salt).encode();
        let end = active.pos + mark.len() as u64;
        if end > self.cfg.segment_bytes_max {
            return Ok(());
        }
        if let Err(e) = write_all_at(active.file.as_ref(), active.pos, &mut [IoSlice::new(&mark)]) {
            self.poisoned = true;
            return Err(io_err(segment_path(&self.dir, active.number))(e));
        }
        active.pos = end;
        self.appended_bytes += mark.len() as u64;
        Ok(())
    }

    /// Finishes the current segment (makes it durable) and starts the next one, whose
    /// first frame will be `first_seq`.
    fn rotate(&mut self, first_seq: u64) -> Result<(), WalError> {
        let number = match &self.active {
            Some(a) => {
                // Always: besides unsynced frames, the durable mark written after the
                // last sync is not synced, and a torn one would end an older segment in
                // garbage (corruption there, not a torn tail).
                a.file
                    .sync_data()
                    .map_err(io_err(segment_path(&self.dir, a.number)))?;
                a.number + 1
            }
            None => self.numbered_after + 1,
        };
        let salt = new_salt(number);
        let header = SegmentHeader {
            number,
            first_seq,
            salt,
        };
        let (created, file) = AtomicFile::create(
            self.storage.as_ref(),
            &self.dir,
            &temp_file_name(number),
            &segment_file_name(number),
        )
        .map_err(|(path, e)| io_err(path)(e))?;
        let tmp = created.temp_path().to_path_buf();
        write_all_at(file.as_ref(), 0, &mut [IoSlice::new(&header.encode())])
            .map_err(io_err(&tmp))?;
        if self.cfg.preallocate {
            let zeros = vec![0_u8; ZERO_CHUNK_BYTES];
            let mut at = SEGMENT_HEADER_BYTES as u64;
            while at < self.cfg.segment_bytes_max {
                let n = usize::try_from(self.cfg.segment_bytes_max - at)
                    .unwrap_or(usize::MAX)
                    .min(ZERO_CHUNK_BYTES);
                write_all_at(
                    file.as_ref(),
                    at,
                    &mut [IoSlice::new(zeros.get(..n).expect("n <= ZERO_CHUNK_BYTES"))],
                )
                .map_err(io_err(&tmp))?;
                at += n as u64;
            }
        }
        created
            .commit(file.as_ref())
            .map_err(|(path, e)| io_err(path)(e))?;
        let path = segment_path(&self.dir, number);
        if let Some(prev) = &self.active {
            // Everything in the previous segment was made durable above.
            self.durable = Durable {
                next_seq: self.next_seq,
                segment: prev.number,
                offset: prev.pos,
            };
        }
        self.unsynced = false;
        self.segments.push(SegmentFile { path, header });
        self.active = Some(Active {
            file,
            number,
            salt,
            pos: SEGMENT_HEADER_BYTES as u64,
        });
        Ok(())
    }

    /// The segments with their sequence ranges, oldest first; the last one is being
    /// written (its range includes appended, not yet synced, frames).
    #[must_use]
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentInfo {
                number: s.header.number,
                path: s.path.clone(),
                first_seq: s.header.first_seq,
                next_seq: match self.segments.get(i + 1) {
                    Some(next) => next.header.first_seq,
                    None => self.next_seq.unwrap_or(s.header.first_seq),
                },
            })
            .collect()
    }

    /// Deletes, oldest first, every segment whose records are all below `seq` (the
    /// segment being written is never deleted), then `fsync`s the directory. Returns the
    /// removed segments.
    ///
    /// Optional frames do not count: a segment is removed when its
    /// [`SegmentInfo::next_seq`] is at most `seq`, so optional frames at `seq` itself go
    /// with it when they end a segment (an optional frame written just before the records
    /// it introduces can be in the segment before them). To keep every frame from a
    /// position on, use [`Wal::remove_segments_before`].
    ///
    /// # Errors
    /// I/O errors (segments removed before the error stay removed).
    pub fn remove_segments_below(&mut self, seq: u64) -> Result<Vec<SegmentInfo>, WalError> {
        let infos = self.segments();
        let removable = infos
            .iter()
            .take(infos.len().saturating_sub(1))
            .take_while(|s| s.next_seq <= seq)
            .count();
        self.remove_oldest(infos, removable)
    }

    /// Deletes, oldest first, every segment numbered below `segment` (the segment being
    /// written is never deleted), then `fsync`s the directory; returns them. With `segment`
    /// from a [`FramePosition`], every frame at or after that position is kept.
    ///
    /// # Errors
    /// I/O errors (segments removed before the error stay removed).
    pub fn remove_segments_before(&mut self, segment: u64) -> Result<Vec<SegmentInfo>, WalError> {
        let infos = self.segments();
        let removable = infos
            .iter()
            .take(infos.len().saturating_sub(1))
            .take_while(|s| s.number < segment)
            .count();
        self.remove_oldest(infos, removable)
    }

    /// Empties the log: deletes every segment, oldest first (a crash on the way leaves a
    /// suffix of the log, never a hole), syncs the directory, and makes `next_seq` the
    /// sequence of the next append, which goes into a new segment numbered after the
    /// deleted ones. For a log replaced by a state from elsewhere (a replica's installed
    /// snapshot). Returns the deleted segments.
    ///
    /// # Errors
    /// I/O errors (the writer is poisoned; segments removed before the error stay removed).
    pub fn reset(&mut self, next_seq: u64) -> Result<Vec<SegmentInfo>, WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        let infos = self.segments();
        self.numbered_after = infos.last().map_or(self.numbered_after, |s| s.number);
        self.active = None;
        self.poisoned = true; // until every removal is done and synced
        for info in &infos {
            self.storage
                .remove_file(&info.path)
                .map_err(io_err(&info.path))?;
            self.segments.remove(0);
        }
        sync_dir(self.storage.as_ref(), &self.dir)?;
        self.poisoned = false;
        self.next_seq = Some(next_seq);
        self.durable = Durable {
            next_seq: None,
            segment: 0,
            offset: 0,
        };
        self.unsynced = false;
        Ok(infos)
    }

    /// Deletes the `removable` oldest of `infos` (this writer's segments), then syncs the
    /// directory.
    fn remove_oldest(
        &mut self,
        infos: Vec<SegmentInfo>,
        removable: usize,
    ) -> Result<Vec<SegmentInfo>, WalError> {
        assert!(removable < infos.len() || infos.is_empty());
        let mut removed = Vec::with_capacity(removable);
        for info in infos.into_iter().take(removable) {
            let result = self
                .storage
                .remove_file(&info.path)
                .map_err(io_err(&info.path));
            if result.is_ok() {
                self.segments.remove(0);
                removed.push(info);
            }
            if let Err(e) = result {
                sync_dir(self.storage.as_ref(), &self.dir)?;
                return Err(e);
            }
        }
        if !removed.is_empty() {
            sync_dir(self.storage.as_ref(), &self.dir)?;
        }
        Ok(removed)
    }
}

/// Zeros for frame padding.
static ZEROS: [u8; FRAME_ALIGN_BYTES_MAX as usize] = [0; FRAME_ALIGN_BYTES_MAX as usize];

/// Takes the directory's lock file: one writer per log.
fn lock_dir(storage: &dyn Storage, dir: &Path) -> Result<Box<dyn LockGuard>, WalError> {
    let path = dir.join(LOCK_FILE_NAME);
    storage.lock(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            WalError::Locked { path: path.clone() }
        } else {
            io_err(&path)(e)
        }
    })
}
