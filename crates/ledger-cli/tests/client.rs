//! The client commands of the real `ledger-cli` binary against a real server (served
//! in-process by `ledger_server::serve::serve` on a port bound here).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use ledger_server::settings::Settings;
use serde_json::Value;

/// A server on its own runtime and thread, stopped (durably) when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Server {
    fn start(data: &Path, extra: impl FnOnce(&mut Settings)) -> Server {
        Server::start_at(data, "127.0.0.1:0".parse().unwrap(), extra)
    }

    /// [`Server::start`] on `addr` (port 0: a free one).
    fn start_at(data: &Path, addr: SocketAddr, extra: impl FnOnce(&mut Settings)) -> Server {
        let mut settings = Settings {
            data_dir: Some(data.to_path_buf()),
            max_accounts: Some(1000),
            ..Settings::default()
        };
        extra(&mut settings);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, bound_addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                bound.send(listener.local_addr().unwrap()).unwrap();
                ledger_server::serve::serve(listener, settings, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        Server {
            addr: bound_addr.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Runs `ledger-cli ARGS --server ADDR`.
    fn cli(&self, args: &[&str]) -> Output {
        let addr = self.addr.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &addr]);
        cli(&all)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledger-cli"))
        .args(args)
        .env_remove("LEDGER_SERVER")
        .env_remove("LEDGER_TOKEN_FILE")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs a command that must succeed and print one JSON object.
fn json(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let o = server.cli(&all);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

#[test]
fn every_client_command_against_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), |_| {});

    let d = json(&server, &["deposit", "1", "1000", "--user-ref", "77"]);
    assert_eq!(d["fail_reason"], 0);
    let deposit_id = d["transaction_id"].as_u64().unwrap();
    assert!(deposit_id >= 1);
    let t = json(
        &server,
        &["transfer", "1", "2", "300", "--wait", "snapshot"],
    );
    let transfer_id = t["transaction_id"].as_u64().unwrap();
    assert_eq!(transfer_id, deposit_id + 1);
    let w = json(&server, &["withdraw", "2", "100", "--wait", "processed"]);
    assert_eq!(w["fail_reason"], 0);
    // Composite from flags: 1 pays 50 to 3 and a fee of 5 to 0, atomically.
    let c = json(
        &server,
        &[
            "composite",
            "--step",
            "credit:1:55",
            "--step",
            "debit:3:50",
            "--step",
            "debit:0:5",
            "--wait",
            "snapshot",
        ],
    );
    assert_eq!(c["fail_reason"], 0);
    // Composite from a file, in the proto's JSON names.
    let file = dir.path().join("steps.json");
    std::fs::write(
        &file,
        r#"{"steps": [{"credit": {"account_id": 3, "amount": "10"}},
                       {"debit": {"account_id": 4, "amount": 10}}], "user_ref": 5}"#,
    )
    .unwrap();
    let f = json(
        &server,
        &[
            "composite",
            "--file",
            file.to_str().unwrap(),
            "--wait",
            "snapshot",
        ],
    );
    assert_eq!(f["fail_reason"], 0);

    let b = json(&server, &["balance", "1", "2", "3", "4"]);
    let balances: Vec<i64> = b["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["balance"].as_i64().unwrap())
        .collect();
    assert_eq!(balances, [645, 200, 40, 10]);
    let at = json(&server, &["balance", "1", "--at", &deposit_id.to_string()]);
    assert_eq!(at["balance"], 1000);

    let s = json(
        &server,
        &["status", &deposit_id.to_string(), &transfer_id.to_string()],
    );
    assert_eq!(s["results"][0]["status"], "ON_SNAPSHOT");

    let tx = json(&server, &["tx", &transfer_id.to_string()]);
    assert_eq!(tx["tx_id"].as_u64(), Some(transfer_id));
    let entries = tx["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().any(|e| e["account_id"] == 2
        && e["kind"] == "DEBIT"
        && e["amount"] == 300
        && e["balance_after"] == 300));

    let h = json(&server, &["history", "1", "--limit", "1"]);
    assert_eq!(h["entries"].as_array().unwrap().len(), 1);
    assert_ne!(h["next_tx_id"], 0);

    let i = json(&server, &["index"]);
    assert!(i["snapshot_index"].as_u64().unwrap() >= transfer_id);

    // Text output: the same facts, for people.
    let o = server.cli(&["balance", "2"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("2  200\n"), "{}", stdout(&o));
    let o = server.cli(&["tx", &transfer_id.to_string()]);
    assert!(stdout(&o).contains("committed"), "{}", stdout(&o));
    let o = server.cli(&["deposit", "5", "1", "--wait", "none"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).ends_with(" submitted\n"), "{}", stdout(&o));

    // Configured accounts: a currency, a credit line, a maximum; then reads.
    let cfg = json(
        &server,
        &[
            "configure",
            "9",
            "--currency",
            "840",
            "--overdraft-limit",
            "50",
            "--max-balance",
            "500",
        ],
    );
    assert_eq!(cfg["fail_reason"], 0);
    let cross = server.cli(&["transfer", "9", "1", "10"]);
    assert_eq!(cross.status.code(), Some(1));
    assert!(stdout(&cross).contains("(code 10)"), "{}", stdout(&cross));
    let dep = json(&server, &["deposit", "9", "20", "--wait", "snapshot"]);
    assert_eq!(dep["fail_reason"], 0);
    let a = json(&server, &["account", "9"]);
    assert_eq!(
        (
            &a["currency"],
            &a["min_balance"],
            &a["max_balance"],
            &a["balance"]
        ),
        (
            &serde_json::json!(840),
            &serde_json::json!("-50"),
            &serde_json::json!(500),
            &serde_json::json!(20)
        )
    );
    assert_eq!(
        (&a["configured"], &a["moved"], &a["frozen"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(true),
            &serde_json::json!(false)
        )
    );
    let sys = json(&server, &["system-balance", "--currency", "840"]);
    assert_eq!(sys["balance"], -20);
    let o = server.cli(&["account", "9"]);
    assert!(stdout(&o).contains("currency 840"), "{}", stdout(&o));
    let frozen = json(
        &server,
        &["configure", "9", "--currency", "840", "--frozen"],
    );
    assert_eq!(frozen["fail_reason"], 0);
    let o = server.cli(&["withdraw", "9", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("account is frozen (code 9)"),
        "{}",
        stdout(&o)
    );

    // Two-phase transfers: hold, read it and the account's open holds, post part of it,
    // and a second post refused with its own reason.
    let held = json(&server, &["hold", "1", "4", "100", "--wait", "snapshot"]);
    assert_eq!(held["fail_reason"], 0);
    let hold_id = held["transaction_id"].as_u64().unwrap().to_string();
    let shown = json(&server, &["hold-show", &hold_id]);
    assert_eq!(shown["holds"][0]["state"], "HOLD_OPEN");
    let placed = json(&server, &["tx", &hold_id]);
    assert_eq!(placed["effects"][0]["hold_opened"]["amount"], 100);
    assert_eq!(shown["holds"][0]["amount"], 100);
    let open = json(&server, &["holds", "1"]);
    assert_eq!(open["holds"].as_array().unwrap().len(), 1);
    let a = json(&server, &["account", "1"]);
    assert_eq!(a["held_outgoing"], 100);
    let posted = json(
        &server,
        &["post", &hold_id, "--amount", "30", "--wait", "snapshot"],
    );
    assert_eq!(posted["fail_reason"], 0);
    let o = server.cli(&["post", &hold_id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("(code 14)"), "{}", stdout(&o));
    let o = server.cli(&["void", &hold_id]);
    assert_eq!(o.status.code(), Some(1));
    let shown = json(&server, &["hold-show", &hold_id]);
    assert_eq!(
        (&shown["holds"][0]["state"], &shown["holds"][0]["posted"]),
        (&serde_json::json!("HOLD_POSTED"), &serde_json::json!(30))
    );
    let second = json(&server, &["hold", "1", "4", "5"]);
    let o = server.cli(&["void", &second["transaction_id"].to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(
        json(&server, &["holds", "1"])["holds"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Account 4's history shows the holds' events: the void, the second hold, the post
    // (with its entry) and the first hold, newest first; as JSON and as text.
    let second_id = second["transaction_id"].as_u64().unwrap();
    let h = json(&server, &["history", "4", "--limit", "10"]);
    let kinds: Vec<String> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let effect = e["effect"].as_object().unwrap();
            let kind = effect.keys().find(|k| *k != "amount").unwrap();
            format!("{} {kind}", e["tx_id"])
        })
        .collect();
    let post_tx = posted["transaction_id"].as_u64().unwrap();
    assert_eq!(
        kinds,
        [
            format!("{} hold_voided", second_id + 1),
            format!("{second_id} hold_opened"),
            format!("{post_tx} hold_posted"),
            format!("{hold_id} hold_opened"),
        ],
        "{h}"
    );
    let text = stdout(&server.cli(&["history", "4"]));
    assert!(text.contains(&format!("tx {post_tx}  debit")), "{text}");
    assert!(
        text.contains(&format!("tx {hold_id}  event   {{\"hold_opened\"")),
        "{text}"
    );
    let o = server.cli(&["hold-show", "99999"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("NotFound"), "{}", stderr(&o));

    // The change stream: every transaction so far, in order, rejected ones included;
    // then only those naming account 4 (its holds, its post), committed ones.
    let committed = json(&server, &["index"])["committed_index"]
        .as_u64()
        .unwrap();
    let n = committed.to_string();
    let o = server.cli(&["tail", "--from", "1", "--rejected", "--count", &n, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<u64> = lines.iter().map(|l| l["tx_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=committed).collect::<Vec<_>>());
    assert!(lines.iter().any(|l| l["fail_reason"] != 0));
    let o = server.cli(&["tail", "--from", "1", "--account", "4", "--count", "4"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for id in [
        hold_id.to_string(),
        post_tx.to_string(),
        second_id.to_string(),
    ] {
        assert!(
            text.contains(&format!("transaction {id}  committed")),
            "{text}"
        );
    }
    assert!(!text.contains("rejected"), "{text}");

    // Reversals: a hold moved no money; its post is moved back once, not twice.
    let o = server.cli(&["reverse", &hold_id]);
    assert!(stdout(&o).contains("(code 18)"), "{}", stdout(&o));
    let post_id = posted["transaction_id"].as_u64().unwrap().to_string();
    let reversed = json(&server, &["reverse", &post_id, "--wait", "snapshot"]);
    assert_eq!(reversed["fail_reason"], 0);
    let o = server.cli(&["reverse", &post_id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("already reversed (code 19)"),
        "{}",
        stdout(&o)
    );
    // Hierarchies: account 6 under account 5; 5's aggregate counts 6's balance.
    let sub = json(&server, &["configure", "6", "--parent", "5"]);
    assert_eq!(sub["fail_reason"], 0);
    assert_eq!(
        json(&server, &["deposit", "6", "12", "--wait", "snapshot"])["fail_reason"],
        0
    );
    let parent = json(&server, &["account", "5"]);
    let own = parent["balance"].as_i64().unwrap();
    assert_eq!(
        (&parent["children"], &parent["aggregate_balance"]),
        (&serde_json::json!(1), &serde_json::json!(own + 12))
    );
}

#[test]
fn rejections_exit_1_and_errors_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), |_| {});
    // Insufficient funds: the ledger's answer, exit 1, the reason in words.
    let o = server.cli(&["withdraw", "7", "10"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("insufficient funds (code 1)"),
        "{}",
        stdout(&o)
    );
    // The same user_ref twice: a duplicate naming the original.
    let first = server.cli(&["deposit", "7", "10", "--user-ref", "42", "--json"]);
    assert_eq!(first.status.code(), Some(0));
    let original: Value = serde_json::from_str(stdout(&first).trim()).unwrap();
    let again = server.cli(&["deposit", "7", "10", "--user-ref", "42", "--json"]);
    assert_eq!(again.status.code(), Some(1));
    let again: Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert_eq!(again["fail_reason"], 7);
    assert_eq!(again["original_transaction_id"], original["transaction_id"]);
    // Bad input the server refuses: exit 2, the status on stderr.
    let o = server.cli(&["deposit", "7", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("InvalidArgument"), "{}", stderr(&o));
    let o = server.cli(&["balance", "5000"]);
    assert_eq!(o.status.code(), Some(2));
    // Usage errors: exit 2 before any connection.
    assert_eq!(
        server
            .cli(&["composite", "--step", "loan:1:2"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(server.cli(&["deposit", "1"]).status.code(), Some(2));
    let o = server.cli(&["balance", "1", "2", "--at", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--at takes exactly one account"));
    // Nobody listening: exit 2 naming the address, once the retries ran out.
    let addr = closed_port();
    let o = cli(&["index", "--server", &addr, "--timeout", "2", "--retry", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&addr), "{}", stderr(&o));
    // The server kept serving through all of it.
    assert_eq!(server.cli(&["index"]).status.code(), Some(0));
}

#[test]
fn tokens_go_with_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "read reader-secret-0123456789\nwrite writer-secret-0123456789\n",
    )
    .unwrap();
    let token_file = tokens.clone();
    let server = Server::start(&dir.path().join("data"), move |s| {
        s.token_file = Some(token_file);
    });
    let write = dir.path().join("write.token");
    std::fs::write(&write, "writer-secret-0123456789\n").unwrap();
    let read = dir.path().join("read.token");
    std::fs::write(&read, "reader-secret-0123456789\n").unwrap();
    let (write, read) = (write.to_str().unwrap(), read.to_str().unwrap());

    let o = server.cli(&["deposit", "1", "5", "--token-file", write]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = server.cli(&["deposit", "1", "5", "--token-file", read]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("PermissionDenied"), "{}", stderr(&o));
    let o = server.cli(&["index", "--token-file", read]);
    assert_eq!(o.status.code(), Some(0));
    let o = server.cli(&["index"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Unauthenticated"), "{}", stderr(&o));
}

#[test]
fn tls_with_the_servers_ca() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let server = Server::start(&dir.path().join("data"), move |s| {
        s.tls_cert = Some(c);
        s.tls_key = Some(k);
    });
    let ca = cert_path.to_str().unwrap();
    let o = server.cli(&[
        "deposit",
        "1",
        "5",
        "--tls-ca",
        ca,
        "--tls-domain",
        "localhost",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Plaintext against a TLS server fails cleanly.
    let o = server.cli(&["index", "--timeout", "2", "--retry", "0"]);
    assert_eq!(o.status.code(), Some(2));
    // A certificate for another name is refused.
    let o = server.cli(&[
        "index",
        "--tls-ca",
        ca,
        "--tls-domain",
        "example.org",
        "--retry",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_list_of_servers_skips_the_ones_that_are_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), |_| {});
    // The first is down: nothing was sent to it, so even a write without a user_ref goes
    // on to the next.
    let servers = format!("{},{}", closed_port(), server.addr);
    let o = cli(&["deposit", "3", "25", "--server", &servers, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let deposit: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let id = deposit["transaction_id"].as_u64().unwrap().to_string();
    let o = cli(&["tx", &id, "--server", &servers, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let tx: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let entries = tx["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["account_id"] == 3 && e["amount"] == 25),
        "{tx}"
    );
}

/// An address nobody listens on (bound, then closed).
fn closed_port() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    closed.local_addr().unwrap().to_string()
}

/// `ledger-cli tail` opens the stream again where it stopped when the server goes away
/// (a graceful stop with the subscriber attached, then a new server on the same address):
/// every transaction printed once, in order.
#[test]
fn tail_reopens_the_stream_after_the_server_restarts() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, |_| {});
    let addr = server.addr;
    let mut tail = Command::new(env!("CARGO_BIN_EXE_ledger-cli"))
        .args(["tail", "--from", "1", "--count", "20", "--json", "--server"])
        .arg(addr.to_string())
        .env_remove("LEDGER_SERVER")
        .env_remove("LEDGER_TOKEN_FILE")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut ids = Vec::new();
    let mut read = |n: usize, ids: &mut Vec<u64>| {
        for _ in 0..n {
            let line = lines.next().expect("a line from tail").unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            ids.push(v["tx_id"].as_u64().unwrap());
        }
    };
    for i in 1..=10 {
        let o = server.cli(&["deposit", "1", &i.to_string()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    read(10, &mut ids);
    // Stops with the subscriber attached: the stop must not wait for it.
    drop(server);
    let server = Server::start_at(&data, addr, |_| {});
    for i in 11..=20 {
        let o = server.cli(&["deposit", "1", &i.to_string()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    read(10, &mut ids);
    assert!(tail.wait().unwrap().success());
    assert_eq!(ids, (1..=20).collect::<Vec<u64>>());
}
