//! The segment files of a WAL directory and the checks that involve more than one of them.

use std::path::{Path, PathBuf};

use ledger_storage::{OpenMode, Storage};

use crate::error::{WalError, io_err};
use crate::format::{SegmentHeader, is_temp_file_name, parse_segment_file_name};
use crate::scan::read_segment_header;

/// One segment file with its checked header.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub path: PathBuf,
    pub header: SegmentHeader,
}

/// What is in a WAL directory.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segments in ascending number order, numbers consecutive, headers valid.
    pub segments: Vec<SegmentFile>,
    /// Leftover `wal-*.seg.tmp` files of an interrupted segment creation.
    pub temp_files: Vec<PathBuf>,
}

/// Lists and checks the segments of `dir`: every header valid and matching its file name,
/// numbers consecutive, first sequences never decreasing. A missing directory is an empty
/// log. Files that are neither segments nor temporary segments are ignored.
pub(crate) fn list(storage: &dyn Storage, dir: &Path) -> Result<Listing, WalError> {
    let mut listing = Listing::default();
    let names = match storage.list(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut numbered = Vec::new();
    for name in names {
        if let Some(number) = parse_segment_file_name(&name) {
            numbered.push((number, dir.join(name)));
        } else if is_temp_file_name(&name) {
            listing.temp_files.push(dir.join(name));
        }
    }
    numbered.sort_unstable_by_key(|(n, _)| *n);
    let mut previous: Option<&SegmentFile> = None;
    for (number, path) in numbered {
        let file = storage.open(&path, OpenMode::Read).map_err(io_err(&path))?;
        let header = read_segment_header(&file, &path, Some(number))?;
        if let Some(prev) = previous {
            if prev.header.number.checked_add(1) != Some(number) {
                return Err(WalError::SegmentGap {
                    previous: prev.path.clone(),
                    next: path,
                });
            }
            if header.first_seq < prev.header.first_seq {
                return Err(WalError::SequenceGap {
                    segment: path,
                    offset: 0,
                    expected: prev.header.first_seq,
                    found: header.first_seq,
                });
            }
        }
        listing.segments.push(SegmentFile { path, header });
        previous = listing.segments.last();
    }
    Ok(listing)
}

/// `fsync`s a directory so that creates, renames and deletes in it are durable.
pub(crate) fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<(), WalError> {
    storage.sync_dir(dir).map_err(io_err(dir))
}
