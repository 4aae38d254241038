//! `wal ls | verify | dump | truncate-torn`: what is in a WAL, and is it intact.

use std::path::Path;

use clap::{Args, Subcommand};
use ledger_core::record::{DecodedRecord, FrameDecoder};
use ledger_wal::{CleanEnd, Frame, FrameKind, SegmentEnd, WalReader, segment_file_name};
use serde::Serialize;

use crate::data_dir::DataDir;
use crate::exit::{CliError, CliResult};
use crate::output::{Sink, Table};
use crate::{dump, repair};

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// List the segments: sequence ranges, sizes, state.
    Ls(LsArgs),
    /// Read every frame: checksums, framing, sequence continuity, record decoding.
    /// Exits 1 naming the file and offset of the first problem (a torn tail included).
    Verify(VerifyArgs),
    /// Print transactions as JSON lines, streaming.
    Dump(dump::DumpArgs),
    /// Cut a torn tail (a partly written last frame) off the last segment. The only
    /// command that writes; asks for confirmation unless --yes.
    TruncateTorn(repair::TruncateArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// One JSON object per segment instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(data: &DataDir, command: WalCommand) -> CliResult {
    let wal_dir = data.wal_dir()?;
    match command {
        WalCommand::Ls(args) => ls(wal_dir, &args),
        WalCommand::Verify(args) => verify(wal_dir, &args),
        WalCommand::Dump(args) => dump::run(wal_dir, &args),
        WalCommand::TruncateTorn(args) => repair::run(wal_dir, &args),
    }
}

/// One row of `wal ls`.
#[derive(Debug, Serialize)]
struct SegmentRow {
    segment: u64,
    file: String,
    first_tx: u64,
    /// `None` for a segment without records.
    last_tx: Option<u64>,
    bytes: u64,
    state: String,
}

fn ls(wal_dir: &Path, args: &LsArgs) -> CliResult {
    let reader = WalReader::open(wal_dir)?;
    let segments = reader.segments()?;
    // How the last segment ends (`segments` read it but keeps only its range).
    let end = match segments.last() {
        Some(last) => {
            let mut frames = reader.frames_from(last.first_seq)?;
            while frames.next_frame()?.is_some() {}
            frames.end()
        }
        None => None,
    };
    let mut sink = Sink::stdout();
    let mut table = Table::new(&["SEGMENT", "FILE", "FIRST_TX", "LAST_TX", "BYTES", "STATE"]);
    for (i, segment) in segments.iter().enumerate() {
        let bytes = std::fs::metadata(&segment.path)
            .map_err(|e| CliError::io(&segment.path, &e))?
            .len();
        let state = if i + 1 < segments.len() {
            "sealed".to_owned()
        } else {
            end.map_or_else(|| "open".to_owned(), |end| describe_end(&end))
        };
        let row = SegmentRow {
            segment: segment.number,
            file: segment_file_name(segment.number),
            first_tx: segment.first_seq,
            last_tx: segment.last_seq(),
            bytes,
            state,
        };
        if args.json {
            sink.json(&row)?;
        } else {
            table.row(vec![
                row.segment.to_string(),
                row.file,
                row.first_tx.to_string(),
                row.last_tx
                    .map_or_else(|| "-".to_owned(), |t| t.to_string()),
                row.bytes.to_string(),
                row.state,
            ]);
        }
    }
    if !args.json {
        table.print(&mut sink)?;
    }
    sink.finish()
}

/// The last segment's end, in words (stable: scripts may match on the first word).
pub fn describe_end(end: &SegmentEnd) -> String {
    match end {
        SegmentEnd::Clean { how, .. } => match how {
            CleanEnd::EndOfFile => "open, clean".to_owned(),
            CleanEnd::ZeroFill => "open, clean (zero-filled after the last frame)".to_owned(),
            CleanEnd::StaleData => "open, clean (stale frames after the last frame)".to_owned(),
        },
        SegmentEnd::Torn {
            offset,
            bytes,
            defect,
        } => format!("torn tail at offset {offset}: {bytes} bytes, {defect}"),
    }
}

/// What `wal verify` checked.
#[derive(Debug, Default, Serialize)]
struct VerifySummary {
    segments: usize,
    frames: u64,
    /// Frames of optional kinds, verified and skipped.
    optional_frames: u64,
    records: u64,
    payload_bytes: u64,
    first_tx: Option<u64>,
    last_tx: Option<u64>,
    end: Option<String>,
    ok: bool,
}

fn verify(wal_dir: &Path, args: &VerifyArgs) -> CliResult {
    let reader = WalReader::open(wal_dir)?;
    let mut summary = VerifySummary {
        segments: reader.segment_count(),
        ..VerifySummary::default()
    };
    let mut frames = reader.frames();
    while let Some(frame) = frames.next_frame()? {
        summary.frames += 1;
        summary.payload_bytes += frame.payload.len() as u64;
        if frame.kind != FrameKind::Records {
            summary.optional_frames += 1;
            continue;
        }
        for_each_record(wal_dir, &frame, |record| {
            summary.first_tx.get_or_insert(record.tx_id);
            summary.last_tx = Some(record.tx_id);
            summary.records += 1;
            Ok(true)
        })?;
    }
    let end = frames.end();
    summary.end = end.map(|e| describe_end(&e));
    let torn = match (end, frames.current_segment()) {
        (Some(SegmentEnd::Torn { offset, defect, .. }), Some(segment)) => Some(format!(
            "{} offset {offset}: torn tail ({defect}); `ledger-cli wal truncate-torn` cuts it, \
             as the engine's recovery would",
            segment.display()
        )),
        _ => None,
    };
    summary.ok = torn.is_none();
    let mut sink = Sink::stdout();
    if args.json {
        sink.json(&summary)?;
    } else {
        sink.line(format_args!("segments       {}", summary.segments))?;
        sink.line(format_args!(
            "frames         {} ({} optional)",
            summary.frames, summary.optional_frames
        ))?;
        sink.line(format_args!("records        {}", summary.records))?;
        let range = match (summary.first_tx, summary.last_tx) {
            (Some(first), Some(last)) => format!("{first}..={last}"),
            _ => "none".to_owned(),
        };
        sink.line(format_args!("transactions   {range}"))?;
        sink.line(format_args!("payload bytes  {}", summary.payload_bytes))?;
        if let Some(end) = &summary.end {
            sink.line(format_args!("end            {end}"))?;
        }
        sink.line(if summary.ok { "ok" } else { "FAILED" })?;
    }
    sink.finish()?;
    match torn {
        Some(message) => Err(CliError::Verification(message)),
        None => Ok(()),
    }
}

/// A records frame that passed its checksums but does not decode.
/// Decodes every record of a records frame in order, handing each to `f` until it returns
/// `false`; returns whether it went to the end. A record that does not decode is a
/// verification failure naming the frame's file and offset.
pub fn for_each_record(
    wal_dir: &Path,
    frame: &Frame<'_>,
    mut f: impl FnMut(&DecodedRecord<'_>) -> Result<bool, CliError>,
) -> Result<bool, CliError> {
    let segment = wal_dir.join(segment_file_name(frame.segment));
    let corrupt = |e| record_error(&segment, frame.offset, e);
    let mut decoder =
        FrameDecoder::new(frame.payload, frame.first_seq, frame.record_count).map_err(corrupt)?;
    while let Some(record) = decoder.next_record().map_err(corrupt)? {
        if !f(&record)? {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn record_error(
    segment: &Path,
    frame_offset: u64,
    error: ledger_core::record::RecordError,
) -> CliError {
    CliError::verification(format!(
        "{} offset {frame_offset}: records frame does not decode: {error} \
         (offsets in the error are within the payload, which starts at offset {})",
        segment.display(),
        frame_offset + ledger_wal::FRAME_HEADER_BYTES as u64
    ))
}
