//! `completions SHELL`: a completion script generated from the clap definitions, so it
//! never falls behind the commands.

use clap::{Args, Command};
use clap_complete::Shell;

use crate::exit::{CliResult, stdout_error};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate for (e.g. `ledger-cli completions bash > /etc/bash_completion.d/ledger-cli`).
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(args: &CompletionsArgs, mut command: Command) -> CliResult {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "ledger-cli", &mut script);
    use std::io::Write;
    std::io::stdout().write_all(&script).map_err(stdout_error)
}
