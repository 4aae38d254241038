//! Exit codes and the one error type of the tool: 0 ok, 1 the data failed verification,
//! 2 usage or I/O error. Scripts rely on these, so every failure maps to exactly one.

use std::fmt;
use std::io;
use std::path::Path;
use std::process::ExitCode;

use ledger_snapshot::SnapshotError;
use ledger_wal::WalError;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The data is damaged or inconsistent (exit 1). The message names file and offset.
    Verification(String),
    /// Bad arguments, a missing data directory, an I/O failure (exit 2).
    Usage(String),
    /// The ledger rejected a submitted operation (exit 1): a business outcome of a client
    /// command, with its reason.
    Rejected(String),
    /// Standard output was closed by the reader (`| head`): not an error (exit 0).
    OutputClosed,
}

/// What every command returns.
pub type CliResult = Result<(), CliError>;

impl CliError {
    /// A verification failure.
    pub fn verification(message: impl fmt::Display) -> CliError {
        CliError::Verification(message.to_string())
    }

    /// A usage or I/O error.
    pub fn usage(message: impl fmt::Display) -> CliError {
        CliError::Usage(message.to_string())
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, error: &io::Error) -> CliError {
        CliError::Usage(format!("{}: {error}", path.display()))
    }

    /// The message, without the kind (empty for a closed output).
    pub fn message(&self) -> &str {
        match self {
            CliError::Verification(m) | CliError::Usage(m) | CliError::Rejected(m) => m,
            CliError::OutputClosed => "",
        }
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Verification(_) | CliError::Rejected(_) => 1,
            CliError::Usage(_) => 2,
            CliError::OutputClosed => 0,
        }
    }
}

impl From<WalError> for CliError {
    fn from(error: WalError) -> CliError {
        // The WAL errors about bytes on disk already name the segment file and offset.
        if error.is_corruption() {
            CliError::Verification(error.to_string())
        } else {
            CliError::Usage(error.to_string())
        }
    }
}

impl From<SnapshotError> for CliError {
    fn from(error: SnapshotError) -> CliError {
        if error.is_corruption() {
            CliError::Verification(error.to_string())
        } else {
            CliError::Usage(error.to_string())
        }
    }
}

/// Writing to standard output failed: a closed pipe ends the command quietly.
pub fn stdout_error(error: io::Error) -> CliError {
    if error.kind() == io::ErrorKind::BrokenPipe {
        CliError::OutputClosed
    } else {
        CliError::Usage(format!("writing to standard output: {error}"))
    }
}

/// Prints the error (if any) to standard error and turns the result into the exit code.
pub fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match &error {
                CliError::Verification(message) => {
                    eprintln!("ledger-cli: verification failed: {message}");
                }
                CliError::Usage(message) => eprintln!("ledger-cli: error: {message}"),
                CliError::Rejected(message) => eprintln!("ledger-cli: {message}"),
                CliError::OutputClosed => {}
            }
            ExitCode::from(error.code())
        }
    }
}
