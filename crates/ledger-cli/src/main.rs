//! `ledger-cli`: look inside a ledger's data directory without running it — list,
//! verify and dump the WAL, replay it into balances, check snapshots — repair a torn
//! tail when asked, and talk to a running server (`client.rs`). Exit codes: 0 ok, 1 the
//! data failed verification (or the ledger rejected an operation), 2 usage or I/O error
//! (`exit.rs`). `docs/cli.md` is the manual.
//!
//! Each command group is a module with its clap arguments and a `run` returning a
//! `CliResult`; adding a group is one variant in `Command` and one arm in `main`.

mod client;
mod compare;
mod completions;
mod data_dir;
mod decode;
mod dump;
mod exit;
mod output;
mod progress;
mod repair;
mod replay;
mod snapshot;
mod state;
mod state_rows;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::data_dir::DataDir;

/// Inspect, verify and replay a ledger's write-ahead log and snapshots; talk to a server.
#[derive(Debug, Parser)]
#[command(name = "ledger-cli", version, about, long_about = None)]
struct Cli {
    /// The data directory the engine or ledger-server writes (holds `wal/` and
    /// `snapshots/`).
    #[arg(
        long,
        global = true,
        env = "LEDGER_DATA_DIR",
        default_value = "./data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The write-ahead log: list, verify, dump, repair a torn tail.
    #[command(subcommand)]
    Wal(wal::WalCommand),
    /// Rebuild balances from the WAL, verifying every transaction.
    Replay(replay::ReplayArgs),
    /// Snapshot files: list, verify, dump.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Client commands against a running ledger-server (deposit, balance, tx, ...).
    #[command(flatten)]
    Client(client::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let data = DataDir::new(cli.data_dir);
    exit::finish(match cli.command {
        Command::Wal(command) => wal::run(&data, command),
        Command::Replay(args) => replay::run(&data, &args),
        Command::Snapshot(command) => snapshot::run(&data, command),
        Command::Completions(args) => completions::run(&args, Cli::command()),
        Command::Client(command) => client::run(command),
    })
}
