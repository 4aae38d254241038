//! Read-only access: iterate frames across segments, verify a whole log, list segments.
//! Nothing here writes, truncates or deletes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger_storage::{OpenMode, Storage, StorageFile};

use crate::dir::{self, SegmentFile};
use crate::error::{WalError, io_err};
use crate::format::SEGMENT_HEADER_BYTES;
use crate::scan::{Frame, FrameMeta, SegmentEnd, SegmentScan, Step};

/// One segment and the sequences it holds: records `first_seq..next_seq` (empty when equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment number.
    pub number: u64,
    /// The segment file.
    pub path: PathBuf,
    /// The sequence its first frame starts at.
    pub first_seq: u64,
    /// The sequence after its last record.
    pub next_seq: u64,
}

impl SegmentInfo {
    /// The sequence of its last record, `None` if it holds none.
    #[must_use]
    pub fn last_seq(&self) -> Option<u64> {
        (self.next_seq > self.first_seq).then(|| self.next_seq - 1)
    }
}

/// A read-only view of a WAL directory, taken when opened (segments created later are not
/// seen). Works beside a running writer and without one.
#[derive(Debug, Clone)]
pub struct WalReader {
    storage: Arc<dyn Storage>,
    segments: Vec<SegmentFile>,
}

impl WalReader {
    /// Lists the segments of `dir` and checks their headers (numbers consecutive, valid
    /// headers, first sequences never decreasing). Frames are checked as they are read.
    /// A missing or empty directory is an empty log.
    ///
    /// # Errors
    /// [`WalError::Io`] on a failed listing or open, and the corruption variants for a bad
    /// segment header or a gap in segment numbers.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, WalError> {
        Self::open_on(ledger_storage::real(), dir)
    }

    /// [`WalReader::open`] on `storage`.
    ///
    /// # Errors
    /// As [`WalReader::open`].
    pub fn open_on(storage: Arc<dyn Storage>, dir: impl AsRef<Path>) -> Result<Self, WalError> {
        let listing = dir::list(storage.as_ref(), dir.as_ref())?;
        Ok(Self {
            storage,
            segments: listing.segments,
        })
    }

    /// Number of segment files.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The first sequence still on disk (the oldest segment's), `None` for an empty log.
    #[must_use]
    pub fn first_seq(&self) -> Option<u64> {
        self.segments.first().map(|s| s.header.first_seq)
    }

    /// Every frame from the start of the oldest segment.
    #[must_use]
    pub fn frames(&self) -> Frames {
        Frames::new(self.storage.clone(), self.segments.clone(), 0, 0)
    }

    /// Frames from the one holding `seq` on (frames whose records are all below `seq` are
    /// verified and skipped). A `seq` past the end yields nothing. Reading starts in the
    /// segment holding the records from `seq`: an optional frame at `seq` that ends the
    /// segment before is not handed out (read from its position with a [`FrameCursor`]).
    ///
    /// # Errors
    /// [`WalError::NotRetained`] when `seq` is below the oldest segment's first sequence.
    pub fn frames_from(&self, seq: u64) -> Result<Frames, WalError> {
        let Some(first) = self.first_seq() else {
            return Ok(Frames::new(self.storage.clone(), Vec::new(), 0, seq));
        };
        if seq < first {
            return Err(WalError::NotRetained {
                requested: seq,
                first_available: first,
            });
        }
        let idx = self
            .segments
            .iter()
            .rposition(|s| s.header.first_seq <= seq)
            .unwrap_or(0);
        Ok(Frames::new(
            self.storage.clone(),
            self.segments.clone(),
            idx,
            seq,
        ))
    }

    /// The segments with their sequence ranges. For the last segment this scans (and
    /// verifies) its frames; a torn tail is not an error here (see [`verify`]).
    ///
    /// # Errors
    /// I/O errors and corruption found in the last segment.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>, WalError> {
        let mut out = Vec::with_capacity(self.segments.len());
        for (i, seg) in self.segments.iter().enumerate() {
            let next_seq = match self.segments.get(i + 1) {
                Some(next) => next.header.first_seq,
                None => {
                    let mut frames = Frames::new(self.storage.clone(), vec![seg.clone()], 0, 0);
                    while frames.next_frame()?.is_some() {}
                    frames.next_seq()
                }
            };
            out.push(SegmentInfo {
                number: seg.header.number,
                path: seg.path.clone(),
                first_seq: seg.header.first_seq,
                next_seq,
            });
        }
        Ok(out)
    }
}

/// A lending iterator over verified frames, across segments. Call
/// [`Frames::next_frame`] until it returns `Ok(None)`, then [`Frames::end`] says how the
/// log ends (clean, or a torn tail that a writer's recovery would truncate).
#[derive(Debug)]
pub struct Frames {
    storage: Arc<dyn Storage>,
    segments: Vec<SegmentFile>,
    idx: usize,
    from_seq: u64,
    scan: Option<SegmentScan<Box<dyn StorageFile>>>,
    spare_buf: Vec<u8>,
    next_seq: Option<u64>,
    end: Option<SegmentEnd>,
    frame: Option<FrameMeta>,
}

impl Frames {
    fn new(
        storage: Arc<dyn Storage>,
        segments: Vec<SegmentFile>,
        idx: usize,
        from_seq: u64,
    ) -> Self {
        let next_seq = segments.get(idx).map(|s| s.header.first_seq);
        Self {
            storage,
            segments,
            idx,
            from_seq,
            scan: None,
            spare_buf: Vec::new(),
            next_seq,
            end: None,
            frame: None,
        }
    }

    /// How the log ends, once [`Frames::next_frame`] has returned `Ok(None)` (`None` for
    /// an empty log or before the end).
    #[must_use]
    pub fn end(&self) -> Option<SegmentEnd> {
        self.end
    }

    /// The sequence after the last record read so far (the first segment's first sequence
    /// before any frame); `0` for an empty log.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.next_seq.unwrap_or(0)
    }

    /// The path of the segment being read, if any.
    #[must_use]
    pub fn current_segment(&self) -> Option<&Path> {
        self.segments.get(self.idx).map(|s| s.path.as_path())
    }

    /// The next verified frame, `Ok(None)` at the end of the log.
    ///
    /// # Errors
    /// I/O errors and every corruption variant; after an error, do not continue.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError> {
        self.frame = None;
        loop {
            if self.end.is_some() {
                return Ok(None);
            }
            let Some(seg) = self.segments.get(self.idx) else {
                return Ok(None);
            };
            let last = self.idx + 1 == self.segments.len();
            let scan = match &mut self.scan {
                Some(scan) => scan,
                slot @ None => {
                    let file = self
                        .storage
                        .open(&seg.path, OpenMode::Read)
                        .map_err(io_err(&seg.path))?;
                    let len = file.size().map_err(io_err(&seg.path))?;
                    let buf = std::mem::take(&mut self.spare_buf);
                    slot.insert(SegmentScan::new(
                        file,
                        seg.path.clone(),
                        seg.header,
                        len,
                        last,
                        buf,
                    ))
                }
            };
            match scan.step()? {
                Step::Frame(meta) => {
                    self.next_seq = Some(meta.next_seq());
                    if meta.next_seq() <= self.from_seq && meta.first_seq < self.from_seq {
                        continue;
                    }
                    self.frame = Some(meta);
                    break;
                }
                Step::End(end) => {
                    if last {
                        self.end = Some(end);
                        return Ok(None);
                    }
                    let expected = scan.next_seq();
                    if let Some(scan) = self.scan.take() {
                        self.spare_buf = scan.into_buf();
                    }
                    self.idx += 1;
                    if let Some(next) = self.segments.get(self.idx)
                        && next.header.first_seq != expected
                    {
                        return Err(WalError::SequenceGap {
                            segment: next.path.clone(),
                            offset: 0,
                            expected,
                            found: next.header.first_seq,
                        });
                    }
                }
            }
        }
        let (Some(meta), Some(scan), Some(seg)) =
            (self.frame, &self.scan, self.segments.get(self.idx))
        else {
            return Ok(None);
        };
        Ok(Some(Frame {
            kind: meta.kind,
            first_seq: meta.first_seq,
            record_count: meta.record_count,
            segment: seg.header.number,
            offset: meta.offset,
            payload: scan.payload(&meta),
        }))
    }
}

/// Random access to the frames from a known frame position (one that
/// [`Wal::append`](crate::Wal::append) or a reader returned): the verified frame there,
/// then the frames after it in the same segment ([`FrameCursor::open`]) or in the
/// following segments too ([`FrameCursor::open_across`]). Every check of a sequential read
/// applies; reads are sized to the frame, so a lookup costs two `pread`s per frame.
#[derive(Debug)]
pub struct FrameCursor {
    scan: SegmentScan<Box<dyn StorageFile>>,
    segment: u64,
    /// The position it was opened at, until a frame was read there.
    opened_at: Option<u64>,
    path: PathBuf,
    frame: Option<FrameMeta>,
    /// Set for a cursor that continues into the following segments: where to find them.
    follow: Option<(Arc<dyn Storage>, PathBuf)>,
}

/// Bytes a [`FrameCursor`] reads at least: a block for the header, then the rest of the
/// frame exactly (a larger window would read a frame's start twice).
const CURSOR_CHUNK_BYTES: usize = 4 << 10;

impl FrameCursor {
    /// Opens segment `segment` of `dir` at the frame at `offset`, which holds `first_seq`.
    /// `buf` is a buffer to reuse (see [`FrameCursor::into_buf`]).
    ///
    /// # Errors
    /// [`WalError::Io`] when the segment cannot be opened (a segment deleted by retention
    /// is `NotFound`), and [`WalError::CorruptSegmentHeader`] for a bad header.
    pub fn open(
        dir: impl AsRef<Path>,
        segment: u64,
        offset: u64,
        first_seq: u64,
        buf: Vec<u8>,
    ) -> Result<Self, WalError> {
        Self::open_on(
            &ledger_storage::OsStorage,
            dir,
            segment,
            offset,
            first_seq,
            buf,
        )
    }

    /// [`FrameCursor::open`] on `storage`.
    ///
    /// # Errors
    /// As [`FrameCursor::open`].
    pub fn open_on(
        storage: &dyn Storage,
        dir: impl AsRef<Path>,
        segment: u64,
        offset: u64,
        first_seq: u64,
        buf: Vec<u8>,
    ) -> Result<Self, WalError> {
        let path = dir.as_ref().join(crate::format::segment_file_name(segment));
        let file = storage.open(&path, OpenMode::Read).map_err(io_err(&path))?;
        let header = crate::scan::read_segment_header(&file, &path, Some(segment))?;
        let len = file.size().map_err(io_err(&path))?;
        // `is_last`: the segment may be the one being written; an unfinished frame past
        // the durable end is then a tail, not corruption.
        let mut scan = SegmentScan::new(file, path.clone(), header, len, true, buf);
        scan.seek(offset, first_seq, CURSOR_CHUNK_BYTES);
        Ok(Self {
            scan,
            segment,
            opened_at: Some(offset),
            path,
            frame: None,
            follow: None,
        })
    }

    /// [`FrameCursor::open_on`] at `at`, for a cursor that does not stop at the end of the
    /// segment: where a segment's frames end and segment `number + 1` exists, it goes on
    /// with that segment's frames (its header's `first_seq` must continue the sequence,
    /// else [`WalError::SequenceGap`]). It ends where the last segment's frames end, as a
    /// sequential read does. For reading back a group of frames written one after the
    /// other (a Raft entry: its header frame, then its records frames) wherever rotation
    /// put them.
    ///
    /// # Errors
    /// As [`FrameCursor::open`].
    pub fn open_across(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        at: crate::FramePosition,
        first_seq: u64,
        buf: Vec<u8>,
    ) -> Result<Self, WalError> {
        let dir = dir.as_ref().to_path_buf();
        let mut cursor = Self::open_on(
            storage.as_ref(),
            &dir,
            at.segment,
            at.offset,
            first_seq,
            buf,
        )?;
        cursor.follow = Some((storage, dir));
        Ok(cursor)
    }

    /// The next verified frame (durable marks and other optional frames included: skip
    /// the kinds you do not want), `Ok(None)` where the segment's frames end (for a cursor
    /// from [`FrameCursor::open_across`]: where the log's frames end). The first call must
    /// find a frame: anything else there is an error.
    ///
    /// # Errors
    /// I/O errors and every corruption variant.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError> {
        self.frame = None;
        let mut opened_at = self.opened_at.take();
        loop {
            match self.scan.step()? {
                Step::Frame(meta) => {
                    self.frame = Some(meta);
                    break;
                }
                // The position was handed out by an append: what is there is a frame, so a
                // torn write there is damage, not the end of the log.
                Step::End(SegmentEnd::Torn { offset, defect, .. }) if opened_at == Some(offset) => {
                    return Err(WalError::CorruptFrame {
                        segment: self.path.clone(),
                        offset,
                        defect,
                        next_valid_offset: None,
                    });
                }
                Step::End(end) => {
                    if !self.next_segment(end)? {
                        return Ok(None);
                    }
                    opened_at = None;
                }
            }
        }
        let Some(meta) = self.frame else {
            return Ok(None);
        };
        Ok(Some(Frame {
            kind: meta.kind,
            first_seq: meta.first_seq,
            record_count: meta.record_count,
            segment: self.segment,
            offset: meta.offset,
            payload: self.scan.payload(&meta),
        }))
    }

    /// Gives the read buffer back for reuse.
    #[must_use]
    pub fn into_buf(self) -> Vec<u8> {
        self.scan.into_buf()
    }

    /// For a cursor that follows segments, moves to the segment after the one whose frames
    /// ended with `end`. False when there is none (or the cursor does not follow).
    fn next_segment(&mut self, end: SegmentEnd) -> Result<bool, WalError> {
        let Some((storage, dir)) = &self.follow else {
            return Ok(false);
        };
        let Some(number) = self.segment.checked_add(1) else {
            return Ok(false);
        };
        let path = dir.join(crate::format::segment_file_name(number));
        let file = match storage.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path)(e)),
        };
        // A torn write can only end the last segment.
        if let SegmentEnd::Torn { offset, defect, .. } = end {
            return Err(WalError::CorruptFrame {
                segment: self.path.clone(),
                offset,
                defect,
                next_valid_offset: None,
            });
        }
        let header = crate::scan::read_segment_header(&file, &path, Some(number))?;
        let expected = self.scan.next_seq();
        if header.first_seq != expected {
            return Err(WalError::SequenceGap {
                segment: path,
                offset: 0,
                expected,
                found: header.first_seq,
            });
        }
        let len = file.size().map_err(io_err(&path))?;
        let buf = self.scan.take_buf();
        let mut scan = SegmentScan::new(file, path.clone(), header, len, true, buf);
        scan.seek(
            SEGMENT_HEADER_BYTES as u64,
            header.first_seq,
            CURSOR_CHUNK_BYTES,
        );
        self.scan = scan;
        self.segment = number;
        self.path = path;
        Ok(true)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: usize,
    /// Records frames checked.
    pub frames: u64,
    /// Optional frames checked (the writer's durable marks and the caller's kinds).
    pub optional_frames: u64,
    /// Records in those frames.
    pub records: u64,
    /// Payload bytes checked.
    pub payload_bytes: u64,
    /// The first sequence on disk, `None` for an empty log.
    pub first_seq: Option<u64>,
    /// The sequence after the last record, `None` for an empty log.
    pub next_seq: Option<u64>,
    /// How the last segment ends; a torn tail is reported here, not repaired.
    pub end: Option<SegmentEnd>,
    /// The last segment's path, if any.
    pub last_segment: Option<PathBuf>,
}

/// Reads and verifies every frame of the log in `dir` without changing anything.
///
/// # Errors
/// The first I/O error or corruption found.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport, WalError> {
    verify_on(ledger_storage::real(), dir)
}

/// [`verify`] on `storage`.
///
/// # Errors
/// As [`verify`].
pub fn verify_on(
    storage: Arc<dyn Storage>,
    dir: impl AsRef<Path>,
) -> Result<VerifyReport, WalError> {
    let reader = WalReader::open_on(storage, dir)?;
    let mut frames = reader.frames();
    let mut report = VerifyReport {
        segments: reader.segment_count(),
        frames: 0,
        optional_frames: 0,
        records: 0,
        payload_bytes: 0,
        first_seq: reader.first_seq(),
        next_seq: None,
        end: None,
        last_segment: reader.segments.last().map(|s| s.path.clone()),
    };
    while let Some(frame) = frames.next_frame()? {
        if frame.kind != crate::FrameKind::Records {
            report.optional_frames += 1;
            continue;
        }
        report.frames += 1;
        report.records += u64::from(frame.record_count);
        report.payload_bytes += frame.payload.len() as u64;
    }
    report.end = frames.end();
    report.next_seq = reader.first_seq().map(|_| frames.next_seq());
    Ok(report)
}
