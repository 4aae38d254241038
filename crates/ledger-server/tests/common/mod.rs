//! What the server's integration tests share: the real `ledger-server` binary as a child
//! process on an ephemeral port.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ledger_server::pb::ledger_client::LedgerClient;
use tonic::transport::Channel;

/// A running server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub metrics: Option<String>,
    /// The console's base URL (`http(s)://host:port`), when started with one.
    pub console: Option<String>,
}

impl Server {
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_with(data, extra, |_| {})
    }

    /// [`Server::start`], with `prepare` applied to the command first.
    pub fn start_with(data: &Path, extra: &[&str], prepare: impl FnOnce(&mut Command)) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger-server"));
        prepare(&mut command);
        let mut child = command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--max-accounts",
                "1000",
                "--ring-size",
                "4096",
            ])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env("LEDGER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ledger-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut metrics = None;
        let mut console = None;
        let addr = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .unwrap();
            if let Some(m) = line.strip_prefix("metrics on http://") {
                metrics = Some(m.trim_end_matches("/metrics").to_owned());
            }
            if let Some(url) = line.strip_prefix("console on ") {
                console = Some(url.trim_end_matches('/').to_owned());
            }
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            metrics,
            console,
        }
    }

    pub async fn client(&self) -> LedgerClient<Channel> {
        LedgerClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub fn signal(&mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The metrics page of `server` (started with `--metrics-addr`).
pub fn metrics_page(server: &Server) -> String {
    let addr = server.metrics.as_ref().expect("metrics address printed");
    let mut http = std::net::TcpStream::connect(addr).unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    page
}

/// The value of metric `name` (a line `name value`) on `page`.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Makes sure the program `tool` is on the PATH for a test that needs a real outside
/// server (a broker): on a fresh machine where it is missing and we are root with apt,
/// installs Debian's `package` (as `.ci/run` does), so `cargo test --workspace` needs no
/// set-up of its own; anywhere else it fails with what to install.
pub fn ensure_tool(tool: &str, package: &str) {
    let found = || {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found() {
        return;
    }
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && Path::new("/usr/bin/apt-get").exists() {
        // One installer at a time across test binaries.
        let script = format!(
            "flock /tmp/ledger-tests-apt.lock sh -c \
             'command -v {tool} || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package})'"
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .status();
    }
    assert!(
        found(),
        "this test needs `{tool}`: install it (Debian: apt-get install {package})"
    );
}
