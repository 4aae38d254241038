//! The progress bar of long reads (replay, dump): drawn on standard error only when it is
//! a terminal, so scripts and tests see none of it.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use ledger_wal::parse_segment_file_name;

/// Progress through the bytes of a WAL, segment by segment.
#[derive(Debug)]
pub struct WalProgress {
    bar: ProgressBar,
    /// `(segment number, bytes of all segments before it)`, ascending.
    starts: Vec<(u64, u64)>,
}

impl WalProgress {
    /// A bar over the segment files of `wal_dir` (their sizes from the directory listing;
    /// nothing is read). Hidden unless standard error is a terminal and `enabled`.
    pub fn new(wal_dir: &Path, enabled: bool) -> WalProgress {
        let mut segments: Vec<(u64, u64)> = std::fs::read_dir(wal_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let number = parse_segment_file_name(entry.file_name().to_str()?)?;
                Some((number, entry.metadata().ok()?.len()))
            })
            .collect();
        segments.sort_unstable();
        let mut total = 0u64;
        let starts = segments
            .iter()
            .map(|&(number, len)| {
                let start = total;
                total = total.saturating_add(len);
                (number, start)
            })
            .collect();
        let bar = if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        WalProgress { bar, starts }
    }

    /// The reader is at `offset` of segment `segment`.
    #[inline]
    pub fn at(&self, segment: u64, offset: u64) {
        if self.bar.is_hidden() {
            return;
        }
        let base = match self.starts.binary_search_by_key(&segment, |&(n, _)| n) {
            Ok(i) => self.starts.get(i).map_or(0, |&(_, start)| start),
            Err(_) => return,
        };
        self.bar.set_position(base.saturating_add(offset));
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
