//! The `ledger-server` binary: settings, logging, then [`ledger_server::serve::run`].

use std::io::IsTerminal as _;

use ledger_server::settings::Settings;
use tracing_subscriber::EnvFilter;

fn main() {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("ledger-server: {e}");
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_new(settings.log()).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log_json() {
        logs.json().init();
    } else {
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Named so operators (and a test) can tell the gRPC threads from the stage threads.
    builder
        .enable_all()
        .thread_name("ledger-io")
        .worker_threads(settings.io_threads());
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ledger-server: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if settings.probe {
        match runtime.block_on(ledger_server::serve::probe(&settings)) {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("ledger-server --probe: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Err(e) = runtime.block_on(ledger_server::serve::run(settings)) {
        eprintln!("ledger-server: {e}");
        std::process::exit(1);
    }
}
