//! Walking the frames of one segment: every check of the format, and the decision at the
//! first position that is not a valid frame (clean end, torn tail, or corruption).
//!
//! The scanner reads through a window buffer in large chunks (no per-frame allocation or
//! syscall) from anything that can read at an offset: a file, or bytes in memory (tests and
//! the fuzz harness).

use std::io;
use std::path::{Path, PathBuf};

use ledger_storage::StorageFile;

use crate::error::{FrameDefect, WalError, io_err};
use crate::format::{
    FORMAT_VERSION, FRAME_HEADER_BYTES, FRAME_MAGIC, FRAME_PAYLOAD_BYTES_MAX, FrameHeader,
    FrameKind, HeaderCheck, SEGMENT_HEADER_BYTES, SegmentHeader, SegmentHeaderError,
};

/// Bytes read per refill of the window.
const READ_CHUNK_BYTES: usize = 4 << 20;

/// Something the scanner can read from at an offset.
pub(crate) trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for Box<dyn StorageFile> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.pread(buf, offset)
    }
}

impl ReadAt for &dyn StorageFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.pread(buf, offset)
    }
}

impl ReadAt for &[u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = self.get(start..).unwrap_or_default();
        let n = src.len().min(buf.len());
        if let (Some(d), Some(s)) = (buf.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
        Ok(n)
    }
}

/// How a segment's frames end when they end cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanEnd {
    /// The last frame ends exactly at the end of the file.
    EndOfFile,
    /// Only zero bytes follow the last frame (a pre-zeroed segment).
    ZeroFill,
    /// A frame of an earlier use of the file (another salt) follows, and no frame of this
    /// segment comes after it (a recycled segment).
    StaleData,
}

/// Where and how the valid frames of a segment end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// The frames end at `offset` and nothing that could be lost data follows.
    Clean {
        /// Offset just after the last valid frame (where the next frame goes).
        offset: u64,
        /// What follows it.
        how: CleanEnd,
    },
    /// The last segment ends in a partially written frame: `bytes` bytes from `offset` to
    /// the end of the file hold no valid frame of this segment. Recovery truncates them; a
    /// read-only reader stops before them and reports this.
    Torn {
        /// Offset just after the last valid frame.
        offset: u64,
        /// Bytes from `offset` to the end of the file.
        bytes: u64,
        /// What is wrong at `offset`.
        defect: FrameDefect,
    },
}

impl SegmentEnd {
    /// Offset just after the last valid frame.
    #[must_use]
    pub fn offset(&self) -> u64 {
        match *self {
            Self::Clean { offset, .. } | Self::Torn { offset, .. } => offset,
        }
    }
}

/// A verified frame handed out by a reader. The payload borrows the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the frame carries.
    pub kind: FrameKind,
    /// The sequence of the first record (for a frame without records: the sequence the
    /// next records frame starts at).
    pub first_seq: u64,
    /// How many records the frame holds (`>= 1` for [`FrameKind::Records`], `0` otherwise).
    pub record_count: u32,
    /// The number of the segment the frame is in.
    pub segment: u64,
    /// Byte offset of the frame header in the segment file.
    pub offset: u64,
    /// The payload, verified against its crc32c.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// The sequence of the last record, `None` for a frame without records.
    #[must_use]
    pub fn last_seq(&self) -> Option<u64> {
        (u64::from(self.record_count))
            .checked_sub(1)
            .map(|k| self.first_seq + k)
    }

    /// The sequence the frame after this one starts at.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        // Cannot overflow: the scanner refuses frames whose range overflows.
        self.first_seq.saturating_add(u64::from(self.record_count))
    }
}

/// A frame found by the scanner, without the borrow of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    pub kind: FrameKind,
    pub first_seq: u64,
    pub record_count: u32,
    pub offset: u64,
    pub payload_len: usize,
    pub padding_bytes: usize,
}

impl FrameMeta {
    pub(crate) fn next_seq(&self) -> u64 {
        self.first_seq.saturating_add(u64::from(self.record_count))
    }
}

/// One step of the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Frame(FrameMeta),
    End(SegmentEnd),
}

/// Reads and checks the 64-byte header of a segment whose file name says `number`.
pub(crate) fn read_segment_header<S: ReadAt>(
    src: &S,
    path: &Path,
    number: Option<u64>,
) -> Result<SegmentHeader, WalError> {
    let mut bytes = [0_u8; SEGMENT_HEADER_BYTES];
    let mut got = 0;
    while got < SEGMENT_HEADER_BYTES {
        let dst = bytes.get_mut(got..).unwrap_or_default();
        match src.read_at(dst, got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path)(e)),
        }
    }
    let corrupt = |reason| WalError::CorruptSegmentHeader {
        segment: path.to_path_buf(),
        reason,
    };
    if got < SEGMENT_HEADER_BYTES {
        return Err(corrupt("file is shorter than a segment header"));
    }
    let header = SegmentHeader::decode(&bytes).map_err(|e| match e {
        SegmentHeaderError::BadMagic => corrupt("bad magic"),
        SegmentHeaderError::UnknownVersion(version) => WalError::UnknownVersion {
            segment: path.to_path_buf(),
            offset: 0,
            version,
            supported: FORMAT_VERSION,
        },
        SegmentHeaderError::BadLength => corrupt("header length field is not 64"),
        SegmentHeaderError::Checksum => corrupt("header checksum mismatch"),
        SegmentHeaderError::Reserved => corrupt("reserved bytes are not zero"),
    })?;
    if number.is_some_and(|n| n != header.number) {
        return Err(corrupt("segment number differs from the file name"));
    }
    Ok(header)
}

/// Walks the frames of one segment.
#[derive(Debug)]
pub(crate) struct SegmentScan<S> {
    src: S,
    path: PathBuf,
    header: SegmentHeader,
    file_len: u64,
    is_last: bool,
    pos: u64,
    next_seq: u64,
    buf: Vec<u8>,
    win_start: u64,
    win_len: usize,
    chunk_bytes: usize,
    end: Option<SegmentEnd>,
}

impl<S: ReadAt> SegmentScan<S> {
    /// A scan of the frames after the (already checked) header; `buf` is a buffer to reuse.
    pub(crate) fn new(
        src: S,
        path: PathBuf,
        header: SegmentHeader,
        file_len: u64,
        is_last: bool,
        buf: Vec<u8>,
    ) -> Self {
        Self {
            src,
            path,
            header,
            file_len,
            is_last,
            pos: SEGMENT_HEADER_BYTES as u64,
            next_seq: header.first_seq,
            buf,
            win_start: SEGMENT_HEADER_BYTES as u64,
            win_len: 0,
            chunk_bytes: READ_CHUNK_BYTES,
            end: None,
        }
    }

    /// Starts the walk at the frame at `offset` instead, which must hold `first_seq`
    /// (a position the writer returned), reading `chunk_bytes` at a time: random access
    /// reads a frame or two, not megabytes.
    pub(crate) fn seek(&mut self, offset: u64, first_seq: u64, chunk_bytes: usize) {
        self.pos = offset.max(SEGMENT_HEADER_BYTES as u64);
        self.next_seq = first_seq;
        self.win_start = self.pos;
        self.win_len = 0;
        self.chunk_bytes = chunk_bytes;
        self.end = None;
    }

    /// The sequence the next frame must start at.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Gives the buffer back for reuse.
    pub(crate) fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// Takes the buffer out (for the scan of the next segment); this scan is done.
    pub(crate) fn take_buf(&mut self) -> Vec<u8> {
        self.win_len = 0;
        std::mem::take(&mut self.buf)
    }

    /// The verified payload of a frame just returned by [`Self::step`].
    pub(crate) fn payload(&self, meta: &FrameMeta) -> &[u8] {
        let start = meta.offset + FRAME_HEADER_BYTES as u64 - self.win_start;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        self.buf
            .get(start..start.saturating_add(meta.payload_len))
            .unwrap_or_default()
    }

    /// Makes `[off, off + n)` (clamped to the file) readable in the window and returns it.
    fn window(&mut self, off: u64, n: u64) -> Result<&[u8], WalError> {
        let want = n.min(self.file_len.saturating_sub(off));
        let want_usize = usize::try_from(want).map_err(|_| WalError::Io {
            path: self.path.clone(),
            source: io::Error::new(io::ErrorKind::OutOfMemory, "segment too large to read"),
        })?;
        let win_end = self.win_start + self.win_len as u64;
        if off < self.win_start || off + want > win_end {
            // Keep the bytes of the window that are still ahead, then refill.
            if off >= self.win_start && off <= win_end {
                let rel = usize::try_from(off - self.win_start).unwrap_or(0);
                self.buf.copy_within(rel..self.win_len, 0);
                self.win_len -= rel;
            } else {
                self.win_len = 0;
            }
            self.win_start = off;
            let left = usize::try_from(self.file_len - off).unwrap_or(usize::MAX);
            let size = want_usize.max(self.chunk_bytes).min(left);
            if self.buf.len() < size {
                self.buf.resize(size, 0);
            }
            while self.win_len < size {
                let dst = self.buf.get_mut(self.win_len..size).unwrap_or_default();
                match self.src.read_at(dst, off + self.win_len as u64) {
                    Ok(0) => break,
                    Ok(k) => self.win_len += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(&self.path)(e)),
                }
            }
        }
        let rel = usize::try_from(off - self.win_start).unwrap_or(usize::MAX);
        let have = want_usize.min(self.win_len.saturating_sub(rel));
        Ok(self
            .buf
            .get(rel..rel.saturating_add(have))
            .unwrap_or_default())
    }

    /// The next frame of the segment, or where its frames end. After the end, keeps
    /// returning the same end.
    pub(crate) fn step(&mut self) -> Result<Step, WalError> {
        if let Some(end) = self.end {
            return Ok(Step::End(end));
        }
        let pos = self.pos;
        if pos >= self.file_len {
            return Ok(self.finish(SegmentEnd::Clean {
                offset: pos,
                how: CleanEnd::EndOfFile,
            }));
        }
        let head = self.window(pos, FRAME_HEADER_BYTES as u64)?;
        let h = match FrameHeader::check(head) {
            HeaderCheck::Invalid(defect) => return self.tail(pos, defect, false),
            HeaderCheck::Valid(h) => h,
        };
        if h.salt != self.header.salt {
            return self.tail(pos, FrameDefect::StaleFrame { salt: h.salt }, true);
        }
        let malformed = |reason| WalError::MalformedFrame {
            segment: self.path.clone(),
            offset: pos,
            reason,
        };
        if !h.version_ok() {
            return Err(WalError::UnknownVersion {
                segment: self.path.clone(),
                offset: pos,
                version: h.version_u32(),
                supported: FORMAT_VERSION,
            });
        }
        let Some(kind) = FrameKind::from_byte(h.kind) else {
            return Err(WalError::UnknownFrameKind {
                segment: self.path.clone(),
                offset: pos,
                kind: h.kind,
            });
        };
        match kind {
            FrameKind::Records if h.record_count == 0 => {
                return Err(malformed("records frame with no records"));
            }
            FrameKind::Optional(_) if h.record_count != 0 => {
                return Err(malformed("optional frame with records"));
            }
            _ => {}
        }
        let payload_len = h.payload_len as usize;
        if payload_len > FRAME_PAYLOAD_BYTES_MAX {
            return Err(malformed("payload length above the frame limit"));
        }
        let Some(next_seq) = h.first_seq.checked_add(u64::from(h.record_count)) else {
            return Err(malformed("sequence range overflows u64"));
        };
        let padding_bytes = usize::from(h.padding_bytes);
        let total = (FRAME_HEADER_BYTES + payload_len + padding_bytes) as u64;
        let available = self.file_len - pos;
        if total > available {
            let defect = FrameDefect::Truncated {
                needed_bytes: total,
                available_bytes: available,
            };
            return self.tail(pos, defect, false);
        }
        let frame = self.window(pos, total)?;
        let (payload, padding) = frame
            .get(FRAME_HEADER_BYTES..)
            .unwrap_or_default()
            .split_at_checked(payload_len)
            .unwrap_or_default();
        let computed = crc32c::crc32c(payload);
        if computed != h.payload_crc {
            let defect = FrameDefect::PayloadChecksum {
                stored: h.payload_crc,
                computed,
            };
            return self.tail(pos, defect, false);
        }
        if padding.iter().any(|&b| b != 0) {
            return self.tail(pos, FrameDefect::NonZeroPadding, false);
        }
        if h.first_seq != self.next_seq {
            return Err(WalError::SequenceGap {
                segment: self.path.clone(),
                offset: pos,
                expected: self.next_seq,
                found: h.first_seq,
            });
        }
        self.pos = pos + total;
        self.next_seq = next_seq;
        Ok(Step::Frame(FrameMeta {
            kind,
            first_seq: h.first_seq,
            record_count: h.record_count,
            offset: pos,
            payload_len,
            padding_bytes,
        }))
    }

    fn finish(&mut self, end: SegmentEnd) -> Step {
        self.end = Some(end);
        Step::End(end)
    }

    /// Decides what the bytes from `pos` (not a valid frame of this segment) to the end of
    /// the file are.
    fn tail(&mut self, pos: u64, defect: FrameDefect, stale: bool) -> Result<Step, WalError> {
        let salt = self.header.salt;
        let is_last = self.is_last;
        let rest_len = self.file_len - pos;
        let rest = self.window(pos, rest_len)?;
        if !stale && rest.iter().all(|&b| b == 0) {
            return Ok(self.finish(SegmentEnd::Clean {
                offset: pos,
                how: CleanEnd::ZeroFill,
            }));
        }
        if let Some((rel, _)) = find_valid_frame(rest, salt, 1) {
            // Frames written after the last sync may reach the disk in any order, so in the
            // last segment a whole frame after a torn one is an unacknowledged write,
            // unless a durable mark after the damage proves it was synced.
            let synced_before = !is_last || stale || has_durable_mark(rest, salt, rel);
            if synced_before {
                return Err(WalError::CorruptFrame {
                    segment: self.path.clone(),
                    offset: pos,
                    defect,
                    next_valid_offset: Some(pos + rel as u64),
                });
            }
        }
        if stale {
            return Ok(self.finish(SegmentEnd::Clean {
                offset: pos,
                how: CleanEnd::StaleData,
            }));
        }
        if !self.is_last {
            return Err(WalError::CorruptFrame {
                segment: self.path.clone(),
                offset: pos,
                defect,
                next_valid_offset: None,
            });
        }
        Ok(self.finish(SegmentEnd::Torn {
            offset: pos,
            bytes: rest_len,
            defect,
        }))
    }
}

/// The offset (at or after `from`) and header of the first complete frame of the segment
/// with `salt` in `rest`: magic, header checksum, salt and payload checksum all verify.
fn find_valid_frame(rest: &[u8], salt: u64, mut from: usize) -> Option<(usize, FrameHeader)> {
    loop {
        let tail = rest.get(from..)?;
        let rel = tail.iter().position(|&b| b == FRAME_MAGIC[0])?;
        let at = from + rel;
        let candidate = rest.get(at..).unwrap_or_default();
        if let HeaderCheck::Valid(h) = FrameHeader::check(candidate)
            && h.salt == salt
            && let Some(payload) = candidate
                .get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES.saturating_add(h.payload_len as usize))
            && crc32c::crc32c(payload) == h.payload_crc
        {
            return Some((at, h));
        }
        from = at + 1;
    }
}

/// Whether a durable mark of the segment with `salt` starts at or after `from` in `rest`.
fn has_durable_mark(rest: &[u8], salt: u64, mut from: usize) -> bool {
    while let Some((at, h)) = find_valid_frame(rest, salt, from) {
        if h.kind == FrameKind::DURABLE_MARK_BYTE {
            return true;
        }
        from = at + 1;
    }
    false
}
