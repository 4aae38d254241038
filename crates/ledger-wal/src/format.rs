//! The on-disk layout: file names, the 64-byte segment header and the 40-byte frame header.
//!
//! `docs/wal-format.md` describes the same layout byte by byte; keep both in step.
//! All integers are little-endian.

use std::path::Path;

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RODAWAL\0";

/// The first four bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"RWFR";

/// The format version this build writes and the only one it reads (segment and frame).
pub const FORMAT_VERSION: u32 = 1;

/// Size of the segment header; the first frame starts right after it.
pub const SEGMENT_HEADER_BYTES: usize = 64;

/// Size of a frame header; the payload follows it.
pub const FRAME_HEADER_BYTES: usize = 40;

/// The largest payload one frame may carry (256 MiB).
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 256 << 20;

/// The largest alignment a writer may pad frames to (the padding length is a u16).
pub const FRAME_ALIGN_BYTES_MAX: u64 = 1 << 16;

/// The filesystem block size the writer assumes (ext4 default, the page size).
pub const BLOCK_BYTES: u64 = 4096;

/// The smallest `segment_bytes_max` accepted: a header and one small frame.
pub const SEGMENT_BYTES_MIN: u64 = (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES) as u64 + 64;

const SEGMENT_HEADER_BYTES_U32: u32 = 64;
const SEGMENT_HEADER_CRC_COVERED: usize = SEGMENT_HEADER_BYTES - 4;
const SEGMENT_RESERVED_BYTES: usize = 20;
const FRAME_HEADER_CRC_COVERED: usize = FRAME_HEADER_BYTES - 4;
/// Frame format version as stored in the frame header's one version byte.
const FRAME_VERSION_U8: u8 = 1;

const _: () = assert!(SEGMENT_HEADER_BYTES_U32 as usize == SEGMENT_HEADER_BYTES);
const _: () = assert!(SEGMENT_HEADER_BYTES == 8 + 4 + 4 + 8 + 8 + 8 + SEGMENT_RESERVED_BYTES + 4);
const _: () = assert!(FRAME_HEADER_BYTES == 4 + 1 + 1 + 2 + 4 + 4 + 8 + 8 + 4 + 4);
const _: () = assert!(FRAME_VERSION_U8 as u32 == FORMAT_VERSION);
const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(8));
const _: () = assert!(FRAME_ALIGN_BYTES_MAX.is_power_of_two());
const _: () = assert!(FRAME_ALIGN_BYTES_MAX == u16::MAX as u64 + 1);
const _: () = assert!(BLOCK_BYTES.is_power_of_two() && BLOCK_BYTES <= FRAME_ALIGN_BYTES_MAX);
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(8));

/// What a frame carries.
///
/// Kinds `0x80..=0xFF` are *optional*: they carry no records (`record_count == 0`) and
/// readers verify them and hand them out with kind and payload, so a caller skips the ones
/// it does not use. `0x80` is the writer's durable mark; `0x81..=0xFF` are the caller's
/// ([`crate::Wal::append_optional`]), never interpreted by this crate. Any other unknown
/// kind is refused ([`crate::WalError::UnknownFrameKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A batch of the caller's records, `record_count >= 1` of them.
    Records,
    /// An optional kind (`0x80..=0xFF`) with no records.
    Optional(u8),
}

impl FrameKind {
    /// The kind byte of a records frame.
    pub const RECORDS_BYTE: u8 = 1;
    /// Kind bytes at or above this are optional.
    pub const OPTIONAL_MIN: u8 = 0x80;
    /// The kind byte of a *durable mark*: an optional frame with no payload that the
    /// writer puts before the first frame it appends after a sync. A mark at offset X
    /// says everything before X in its segment was durable when the mark was written, so
    /// recovery can tell a torn tail (no mark after the damage) from damage to synced
    /// data (a mark after it).
    pub const DURABLE_MARK_BYTE: u8 = 0x80;

    /// The byte stored in the frame header.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Records => Self::RECORDS_BYTE,
            Self::Optional(b) => b,
        }
    }

    /// The kind of a stored byte, or `None` for a must-understand kind this build does
    /// not know.
    #[must_use]
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            Self::RECORDS_BYTE => Some(Self::Records),
            b if b >= Self::OPTIONAL_MIN => Some(Self::Optional(b)),
            _ => None,
        }
    }
}

/// The names of segment files, `wal-<20 digits>.seg`, and of segments being created,
/// `wal-<20 digits>.seg.tmp`.
pub(crate) const SEGMENT_NAMES: ledger_storage::NumberedName =
    ledger_storage::NumberedName::new("wal-", ".seg");

/// The file name of segment `number`.
#[must_use]
pub fn segment_file_name(number: u64) -> String {
    SEGMENT_NAMES.name(number)
}

/// The temporary name a segment is created under before it is renamed into place.
pub(crate) fn temp_file_name(number: u64) -> String {
    SEGMENT_NAMES.temp_name(number)
}

/// The segment number of a segment file name, or `None` if the name is not exactly
/// `wal-<20 digits>.seg`.
#[must_use]
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    SEGMENT_NAMES.parse(name)
}

/// True for a leftover temporary file (`wal-*.seg.tmp`).
pub(crate) fn is_temp_file_name(name: &str) -> bool {
    SEGMENT_NAMES.is_temp(name)
}

fn u32_at(bytes: &[u8; SEGMENT_HEADER_BYTES], at: usize) -> u32 {
    let mut b = [0_u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0_u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

fn u32_in(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0_u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

fn put(dst: &mut [u8], at: usize, src: &[u8]) {
    if let Some(d) = dst.get_mut(at..at + src.len()) {
        d.copy_from_slice(src);
    }
}

/// The decoded, checked header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment number (also in the file name).
    pub number: u64,
    /// The sequence the first frame of this segment carries.
    pub first_seq: u64,
    /// A random value chosen when the segment was created; every frame of the segment
    /// carries it, so bytes left from an older use of the file are never taken for frames.
    pub salt: u64,
}

/// Why a segment header was refused (turned into a [`crate::WalError`] by the caller, who
/// knows the path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentHeaderError {
    BadMagic,
    UnknownVersion(u32),
    BadLength,
    Checksum,
    Reserved,
}

impl SegmentHeader {
    /// The 64 bytes written at offset 0 of the segment file.
    #[must_use]
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0_u8; SEGMENT_HEADER_BYTES];
        put(&mut out, 0, &SEGMENT_MAGIC);
        put(&mut out, 8, &FORMAT_VERSION.to_le_bytes());
        put(&mut out, 12, &SEGMENT_HEADER_BYTES_U32.to_le_bytes());
        put(&mut out, 16, &self.number.to_le_bytes());
        put(&mut out, 24, &self.first_seq.to_le_bytes());
        put(&mut out, 32, &self.salt.to_le_bytes());
        let crc = crc32c::crc32c(out.get(..SEGMENT_HEADER_CRC_COVERED).unwrap_or_default());
        put(&mut out, SEGMENT_HEADER_CRC_COVERED, &crc.to_le_bytes());
        out
    }

    /// Decodes and checks a segment header. Magic and version are checked before the
    /// checksum: a segment of a newer version is refused as such even if its header
    /// layout differs.
    pub(crate) fn decode(bytes: &[u8; SEGMENT_HEADER_BYTES]) -> Result<Self, SegmentHeaderError> {
        if bytes.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(SegmentHeaderError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(SegmentHeaderError::UnknownVersion(version));
        }
        let stored = u32_at(bytes, SEGMENT_HEADER_CRC_COVERED);
        let computed = crc32c::crc32c(bytes.get(..SEGMENT_HEADER_CRC_COVERED).unwrap_or_default());
        if stored != computed {
            return Err(SegmentHeaderError::Checksum);
        }
        if u32_at(bytes, 12) != SEGMENT_HEADER_BYTES_U32 {
            return Err(SegmentHeaderError::BadLength);
        }
        let reserved = bytes
            .get(40..SEGMENT_HEADER_CRC_COVERED)
            .unwrap_or_default();
        if reserved.iter().any(|&b| b != 0) {
            return Err(SegmentHeaderError::Reserved);
        }
        Ok(Self {
            number: u64_at(bytes, 16),
            first_seq: u64_at(bytes, 24),
            salt: u64_at(bytes, 32),
        })
    }
}

/// A frame header as stored (before any check beyond the two checksums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub version: u8,
    pub kind: u8,
    pub padding_bytes: u16,
    pub payload_len: u32,
    pub record_count: u32,
    pub first_seq: u64,
    pub salt: u64,
    pub payload_crc: u32,
}

/// The result of looking at [`FRAME_HEADER_BYTES`] bytes where a frame should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderCheck {
    /// Magic and header checksum verify.
    Valid(FrameHeader),
    /// Not a frame header.
    Invalid(crate::FrameDefect),
}

impl FrameHeader {
    /// Encodes the header; `payload_crc` must already be the payload's crc32c.
    pub(crate) fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0_u8; FRAME_HEADER_BYTES];
        put(&mut out, 0, &FRAME_MAGIC);
        put(&mut out, 4, &[self.version, self.kind]);
        put(&mut out, 6, &self.padding_bytes.to_le_bytes());
        put(&mut out, 8, &self.payload_len.to_le_bytes());
        put(&mut out, 12, &self.record_count.to_le_bytes());
        put(&mut out, 16, &self.first_seq.to_le_bytes());
        put(&mut out, 24, &self.salt.to_le_bytes());
        put(&mut out, 32, &self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(out.get(..FRAME_HEADER_CRC_COVERED).unwrap_or_default());
        put(&mut out, FRAME_HEADER_CRC_COVERED, &crc.to_le_bytes());
        out
    }

    /// The header of a durable mark (see [`FrameKind::DURABLE_MARK_BYTE`]) before the
    /// records frame starting at `next_seq`.
    pub(crate) fn durable_mark(next_seq: u64, salt: u64) -> Self {
        Self {
            version: FRAME_VERSION_U8,
            kind: FrameKind::DURABLE_MARK_BYTE,
            padding_bytes: 0,
            payload_len: 0,
            record_count: 0,
            first_seq: next_seq,
            salt,
            payload_crc: crc32c::crc32c(&[]),
        }
    }

    /// A records frame header.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn records(
        first_seq: u64,
        record_count: u32,
        salt: u64,
        payload: &[u8],
        padding_bytes: u16,
    ) -> Self {
        Self::new(
            FrameKind::RECORDS_BYTE,
            first_seq,
            record_count,
            salt,
            payload,
            padding_bytes,
        )
    }

    /// A frame header of any kind (the caller checks kind and record count agree).
    pub(crate) fn new(
        kind: u8,
        first_seq: u64,
        record_count: u32,
        salt: u64,
        payload: &[u8],
        padding_bytes: u16,
    ) -> Self {
        Self {
            version: FRAME_VERSION_U8,
            kind,
            padding_bytes,
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            record_count,
            first_seq,
            salt,
            payload_crc: crc32c::crc32c(payload),
        }
    }

    /// Checks magic and header checksum of `bytes` (at least [`FRAME_HEADER_BYTES`] long;
    /// shorter input is reported as truncated).
    pub(crate) fn check(bytes: &[u8]) -> HeaderCheck {
        let Some(head) = bytes.get(..FRAME_HEADER_BYTES) else {
            return HeaderCheck::Invalid(crate::FrameDefect::Truncated {
                needed_bytes: FRAME_HEADER_BYTES as u64,
                available_bytes: bytes.len() as u64,
            });
        };
        let mut magic = [0_u8; 4];
        magic.copy_from_slice(head.get(..4).unwrap_or(&[0; 4]));
        if magic != FRAME_MAGIC {
            return HeaderCheck::Invalid(crate::FrameDefect::BadMagic { found: magic });
        }
        let stored = u32_in(head, FRAME_HEADER_CRC_COVERED);
        let computed = crc32c::crc32c(head.get(..FRAME_HEADER_CRC_COVERED).unwrap_or_default());
        if stored != computed {
            return HeaderCheck::Invalid(crate::FrameDefect::HeaderChecksum { stored, computed });
        }
        let byte = |i: usize| head.get(i).copied().unwrap_or(0);
        HeaderCheck::Valid(Self {
            version: byte(4),
            kind: byte(5),
            padding_bytes: u16::from_le_bytes([byte(6), byte(7)]),
            payload_len: u32_in(head, 8),
            record_count: u32_in(head, 12),
            first_seq: u64_at(head, 16),
            salt: u64_at(head, 24),
            payload_crc: u32_in(head, 32),
        })
    }

    /// The version byte as a format version.
    pub(crate) fn version_u32(&self) -> u32 {
        u32::from(self.version)
    }

    /// Whether the version byte is the one this build reads.
    pub(crate) fn version_ok(&self) -> bool {
        self.version == FRAME_VERSION_U8
    }
}

/// A random salt for a new segment: OS-seeded `RandomState` keys hashed with the segment
/// number and the time, never zero (a zero-filled region never looks like a frame of it).
pub(crate) fn new_salt(number: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(number);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// The path of segment `number` in `dir`.
pub(crate) fn segment_path(dir: &Path, number: u64) -> std::path::PathBuf {
    dir.join(segment_file_name(number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in [0, 1, 42, u64::MAX] {
            assert_eq!(parse_segment_file_name(&segment_file_name(n)), Some(n));
        }
        assert_eq!(parse_segment_file_name("wal-1.seg"), None);
        assert_eq!(
            parse_segment_file_name("wal-0000000000000000000a.seg"),
            None
        );
        assert!(is_temp_file_name(&temp_file_name(3)));
    }

    #[test]
    fn segment_header_round_trip_and_checks() {
        let h = SegmentHeader {
            number: 7,
            first_seq: 1234,
            salt: 99,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(SegmentHeaderError::BadMagic)
        );
        let mut bad = bytes;
        bad[8] = 2;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(SegmentHeaderError::UnknownVersion(2))
        );
        let mut bad = bytes;
        bad[20] ^= 1;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(SegmentHeaderError::Checksum)
        );
    }

    #[test]
    fn frame_header_round_trip() {
        let h = FrameHeader::records(5, 3, 77, b"abc", 9);
        let bytes = h.encode();
        assert_eq!(FrameHeader::check(&bytes), HeaderCheck::Valid(h));
        assert!(matches!(
            FrameHeader::check(&bytes[..10]),
            HeaderCheck::Invalid(crate::FrameDefect::Truncated { .. })
        ));
    }

    #[test]
    fn kinds() {
        assert_eq!(FrameKind::from_byte(1), Some(FrameKind::Records));
        assert_eq!(FrameKind::from_byte(0x81), Some(FrameKind::Optional(0x81)));
        assert_eq!(FrameKind::from_byte(0), None);
        assert_eq!(FrameKind::from_byte(2), None);
        assert_eq!(FrameKind::Optional(0x90).to_byte(), 0x90);
    }
}
