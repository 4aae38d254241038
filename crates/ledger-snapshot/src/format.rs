//! The on-disk layout: file names and the fixed 64-byte header.
//!
//! `docs/snapshot-format.md` describes the same layout byte by byte; keep both in step.

use std::path::Path;

use crate::error::SnapshotError;

/// The first eight bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"RODASNAP";

/// The format version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Size of the header; the payload starts right after it.
pub const HEADER_BYTES: usize = 64;

/// Where the rkyv payload starts in the file. It must be a multiple of the largest
/// alignment an archive may need (16): the file is memory-mapped at a page boundary, so
/// the archive is then aligned in memory too.
pub const PAYLOAD_OFFSET: u64 = HEADER_BYTES as u64;

/// The alignment the payload offset guarantees (rkyv archives need at most 16).
pub const PAYLOAD_ALIGN: usize = 16;

/// [`HEADER_BYTES`] as stored in the header.
const HEADER_BYTES_U32: u32 = 64;

/// Bytes of the header covered by the header checksum (everything before it).
const HEADER_CRC_COVERED_BYTES: usize = HEADER_BYTES - 4;

/// Reserved bytes between the payload format and the header checksum.
const RESERVED_BYTES: usize = 20;

const _: () = assert!(HEADER_BYTES_U32 as usize == HEADER_BYTES);
const _: () = assert!(HEADER_BYTES == 8 + 4 + 4 + 8 + 8 + 4 + 4 + RESERVED_BYTES + 4);
const _: () = assert!(HEADER_BYTES.is_multiple_of(PAYLOAD_ALIGN));
const _: () = assert!(PAYLOAD_ALIGN.is_power_of_two());

/// The names of snapshot files, `snapshot-<20 digits>.snap`, and of snapshots being
/// written, `snapshot-<20 digits>.snap.tmp`.
const NAMES: ledger_storage::NumberedName = ledger_storage::NumberedName::new("snapshot-", ".snap");

/// The file name of the snapshot consistent at `sequence`.
#[must_use]
pub fn file_name(sequence: u64) -> String {
    NAMES.name(sequence)
}

/// The temporary file name used while the snapshot at `sequence` is being written.
#[must_use]
pub(crate) fn temp_file_name(sequence: u64) -> String {
    NAMES.temp_name(sequence)
}

/// The sequence number of a complete snapshot's file name, or `None` if the name is not
/// exactly `snapshot-<20 digits>.snap`.
#[must_use]
pub fn parse_file_name(name: &str) -> Option<u64> {
    NAMES.parse(name)
}

/// True for a leftover temporary file (`snapshot-*.snap.tmp`).
pub(crate) fn is_temp_file_name(name: &str) -> bool {
    NAMES.is_temp(name)
}

/// The decoded, checked header of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sequence number the snapshot is consistent at.
    pub sequence: u64,
    /// Length of the rkyv payload that follows the header.
    pub payload_bytes: u64,
    /// crc32c (Castagnoli) of the payload bytes.
    pub payload_crc32c: u32,
    /// The caller's number for the payload's type and version (0 in files written before
    /// the field existed, when these bytes were reserved and zero).
    pub payload_format: u32,
}

impl Header {
    /// Total file length this header describes.
    #[must_use]
    pub fn file_bytes(&self) -> Option<u64> {
        PAYLOAD_OFFSET.checked_add(self.payload_bytes)
    }

    /// The 64 header bytes, little-endian, header checksum included.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        let mut cursor = Cursor {
            buf: &mut out,
            pos: 0,
        };
        cursor.put(&MAGIC);
        cursor.put(&FORMAT_VERSION.to_le_bytes());
        cursor.put(&HEADER_BYTES_U32.to_le_bytes());
        cursor.put(&self.sequence.to_le_bytes());
        cursor.put(&self.payload_bytes.to_le_bytes());
        cursor.put(&self.payload_crc32c.to_le_bytes());
        cursor.put(&self.payload_format.to_le_bytes());
        cursor.put(&[0u8; RESERVED_BYTES]);
        let covered_end = cursor.pos;
        debug_assert_eq!(covered_end, HEADER_CRC_COVERED_BYTES);
        let crc = header_crc(&out);
        let mut cursor = Cursor {
            buf: &mut out,
            pos: covered_end,
        };
        cursor.put(&crc.to_le_bytes());
        debug_assert_eq!(cursor.pos, HEADER_BYTES);
        out
    }

    /// Decodes and checks a header read from `path`. `bytes` may be the whole file or
    /// only its start; only the first [`HEADER_BYTES`] are looked at.
    ///
    /// Checks, in order: length, magic, version, header checksum, fixed fields.
    /// The payload itself is not looked at here.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let Some((header, _)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
            return Err(SnapshotError::Truncated {
                path: path.to_path_buf(),
                len_bytes: bytes.len() as u64,
                expected_min_bytes: PAYLOAD_OFFSET,
            });
        };
        let mut r = Reader { rest: header };
        let magic: [u8; 8] = r.take();
        if magic != MAGIC {
            return Err(SnapshotError::BadMagic {
                path: path.to_path_buf(),
                found: magic,
            });
        }
        let version = u32::from_le_bytes(r.take());
        if version != FORMAT_VERSION {
            return Err(SnapshotError::UnknownVersion {
                path: path.to_path_buf(),
                version,
                supported: FORMAT_VERSION,
            });
        }
        let header_len = u32::from_le_bytes(r.take());
        let sequence = u64::from_le_bytes(r.take());
        let payload_bytes = u64::from_le_bytes(r.take());
        let payload_crc32c = u32::from_le_bytes(r.take());
        let payload_format = u32::from_le_bytes(r.take());
        let reserved: [u8; RESERVED_BYTES] = r.take();
        let stored_crc = u32::from_le_bytes(r.take());
        debug_assert!(r.rest.is_empty());

        let actual_crc = header_crc(header);
        if stored_crc != actual_crc {
            return Err(SnapshotError::HeaderChecksumMismatch {
                path: path.to_path_buf(),
                expected: stored_crc,
                actual: actual_crc,
            });
        }
        if header_len != HEADER_BYTES_U32 {
            return Err(SnapshotError::BadHeader {
                path: path.to_path_buf(),
                reason: "header length field is not 64",
            });
        }
        if reserved != [0u8; RESERVED_BYTES] {
            return Err(SnapshotError::BadHeader {
                path: path.to_path_buf(),
                reason: "reserved bytes are not zero",
            });
        }
        let header = Self {
            sequence,
            payload_bytes,
            payload_crc32c,
            payload_format,
        };
        if header.file_bytes().is_none() {
            return Err(SnapshotError::BadHeader {
                path: path.to_path_buf(),
                reason: "payload length overflows a file offset",
            });
        }
        Ok(header)
    }
}

/// crc32c of the covered part of a header.
fn header_crc(header: &[u8; HEADER_BYTES]) -> u32 {
    header
        .first_chunk::<HEADER_CRC_COVERED_BYTES>()
        .map_or(0, |covered| crc32c::crc32c(covered))
}

/// Writes fixed fields into a header buffer (encode side: bounds are static).
struct Cursor<'a> {
    buf: &'a mut [u8; HEADER_BYTES],
    pos: usize,
}

impl Cursor<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        } else {
            // The field list above is checked by the const assertion on HEADER_BYTES.
            debug_assert!(false, "header field out of bounds");
        }
        self.pos = end;
    }
}

/// Reads fixed fields from a header (decode side: never panics).
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                *head
            }
            None => {
                // Unreachable: the reader is built over exactly HEADER_BYTES bytes and
                // the fields add up to that (const assertion above). Return zeros rather
                // than panic; the header checksum then fails.
                debug_assert!(false, "header field out of bounds");
                self.rest = &[];
                [0u8; N]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header {
            sequence: 0x0102_0304_0506_0708,
            payload_bytes: 1234,
            payload_crc32c: 0xdead_beef,
            payload_format: 7,
        };
        let bytes = header.encode();
        assert_eq!(bytes.get(..8), Some(&MAGIC[..]));
        let decoded = Header::decode(Path::new("x"), &bytes);
        assert_eq!(decoded.ok(), Some(header));
    }

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(file_name(42), "snapshot-00000000000000000042.snap");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name(&file_name(0)), Some(0));
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_file_name("snapshot-42.snap"), None);
        assert_eq!(parse_file_name("snapshot-0000000000000000004x.snap"), None);
        assert_eq!(parse_file_name("snapshot-99999999999999999999.snap"), None);
        assert_eq!(parse_file_name(&temp_file_name(3)), None);
        assert!(is_temp_file_name(&temp_file_name(3)));
        assert!(!is_temp_file_name(&file_name(3)));
    }
}
