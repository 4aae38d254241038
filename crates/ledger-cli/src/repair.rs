//! `wal truncate-torn`: the one command that writes. It cuts a torn tail (a partly written
//! last frame: a write that was never acknowledged) off the last segment, exactly as the
//! engine's recovery does at start — it *is* that recovery (`Wal::open`), so the two can
//! never disagree about what a torn tail is. A log damaged anywhere else is refused
//! (exit 1) before anything is written.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use clap::Args;
use ledger_wal::{SegmentEnd, Wal, WalConfig, WalReader};

use crate::exit::{CliError, CliResult};

#[derive(Debug, Args)]
pub struct TruncateArgs {
    /// Cut without asking. Without it the command asks on a terminal and refuses
    /// otherwise.
    #[arg(long)]
    yes: bool,
}

pub fn run(wal_dir: &Path, args: &TruncateArgs) -> CliResult {
    // Look first, read-only, at the whole log: a log damaged anywhere else is not
    // touched (that needs a person), and what would be cut is shown before asking.
    let reader = WalReader::open(wal_dir)?;
    let Some(last) = reader.segments()?.pop() else {
        println!("no segments: nothing to cut");
        return Ok(());
    };
    let mut frames = reader.frames();
    while frames.next_frame()?.is_some() {}
    let Some(SegmentEnd::Torn {
        offset,
        bytes,
        defect,
    }) = frames.end()
    else {
        println!("{}: no torn tail, nothing to cut", last.path.display());
        return Ok(());
    };
    println!(
        "{}: torn tail at offset {offset}: {bytes} bytes ({defect}) after the last valid frame \
         (transaction {})",
        last.path.display(),
        last.last_seq()
            .map_or_else(|| "none".to_owned(), |t| t.to_string())
    );
    if !args.yes && !confirm(&format!("cut {bytes} bytes from {}?", last.path.display()))? {
        return Err(CliError::usage(
            "not confirmed: nothing written (pass --yes to cut without asking)",
        ));
    }
    // Takes the writer's lock: refused while a server or another writer has the log open.
    let (_wal, report) = Wal::open(wal_dir, WalConfig::default())?;
    for temp in &report.removed_temp_files {
        println!(
            "removed {} (an interrupted segment creation)",
            temp.display()
        );
    }
    let now_ends = report
        .last_seq()
        .map_or_else(|| "none".to_owned(), |t| t.to_string());
    match report.truncated {
        Some(cut) => println!(
            "cut {} bytes from {} at offset {} ({}); the log now ends at transaction {now_ends}",
            cut.bytes_dropped,
            cut.segment.display(),
            cut.offset,
            cut.defect,
        ),
        // The tail changed between the look and the lock (a writer finished it).
        None => println!(
            "{}: no torn tail any more, nothing cut",
            last.path.display()
        ),
    }
    Ok(())
}

/// Asks on the terminal; refuses (an error, exit 2) when standard input is not one, so
/// a script never writes by accident.
fn confirm(question: &str) -> Result<bool, CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(
            "refusing to write without --yes: standard input is not a terminal to confirm on",
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::usage(format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
