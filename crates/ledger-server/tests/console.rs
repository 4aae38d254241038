//! The web console in a real browser: headless Chromium, driven over WebDriver
//! (chromedriver), against a real `ledger-server` with a token file. It signs in, loads
//! every page, follows links, searches, submits a transfer and sees it on its page and
//! live on the overview, checks the charts drew, refuses bad input and a read token's
//! submission, and fits a phone's screen.
//!
//! With `LEDGER_CONSOLE_SCREENSHOTS=<dir>` it also saves a screenshot of each page there
//! (docs/console/ holds the ones the docs show).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Server, ensure_tool};
use fantoccini::{Client, ClientBuilder, Locator};
use ledger_server::pb::{self, ledger_client::LedgerClient};
use tonic::transport::Channel;

const READ_TOKEN: &str = "console-reader-0123456789";
const WRITE_TOKEN: &str = "console-writer-0123456789";
/// How long the page may take to show something it is waiting for (a chart, a live
/// update): generous, it bounds a failure, not a pass.
const PATIENCE: Duration = Duration::from_secs(30);

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Writer = LedgerClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
    >,
>;

fn with_write_token(mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {WRITE_TOKEN}").parse().unwrap(),
    );
    Ok(r)
}

async fn writer(server: &Server) -> Writer {
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    LedgerClient::with_interceptor(channel, with_write_token as fn(_) -> _)
}

async fn committed(client: &mut Writer) -> u64 {
    client
        .get_pipeline_index(pb::GetPipelineIndexRequest {})
        .await
        .unwrap()
        .into_inner()
        .committed_index
}

fn submit(op: pb::submit_and_wait_request::Operation) -> pb::SubmitAndWaitRequest {
    pb::SubmitAndWaitRequest {
        operation: Some(op),
        wait_level: pb::WaitLevel::Committed.into(),
    }
}

fn transfer(
    from: u64,
    to: u64,
    amount: u64,
    user_ref: u64,
) -> pb::submit_and_wait_request::Operation {
    pb::submit_and_wait_request::Operation::Transfer(pb::Transfer {
        from,
        to,
        amount,
        user_ref,
    })
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn has(browser: &Client, css: &str) -> bool {
    browser.find(Locator::Css(css)).await.is_ok()
}

async fn path(browser: &Client) -> String {
    let url = browser.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

async fn screenshot(browser: &Client, name: &str) {
    let Some(dir) = std::env::var_os("LEDGER_CONSOLE_SCREENSHOTS") else {
        return;
    };
    let png = browser.screenshot().await.unwrap();
    std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
}

/// Waits until the chart in `css` has drawn (console.js marks it) onto a canvas.
async fn chart_drawn(browser: &Client, css: &str) {
    let drawn = format!("{css}[data-rendered='true'] canvas");
    eventually(&format!("the chart {css} drew"), || has(browser, &drawn)).await;
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Submits the operation form, waits for the transaction's page and checks it
/// committed; its id.
async fn submit_form(browser: &Client) -> u64 {
    click(browser, "#submit-button").await;
    eventually("the submitted transaction's page", || async {
        path(browser).await.starts_with("/tx/")
    })
    .await;
    assert_eq!(text(browser, "#outcome").await, "committed");
    path(browser)
        .await
        .trim_start_matches("/tx/")
        .parse()
        .unwrap()
}

async fn fill(browser: &Client, css: &str, value: &str) {
    let input = browser.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn sign_in(browser: &Client, base: &str, token: &str) {
    browser.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(
        path(browser).await,
        "/login",
        "a visitor without a token signs in first"
    );
    fill(browser, "#token", token).await;
    click(browser, "form.card button").await;
    eventually("the overview after signing in", || async {
        path(browser).await == "/"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    ensure_tool("chromium", "chromium");
    ensure_tool("chromedriver", "chromium-driver");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("read {READ_TOKEN}\nwrite {WRITE_TOKEN}\n")).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--token-file",
            tokens.to_str().unwrap(),
            "--console-listen",
            "127.0.0.1:0",
        ],
    );
    let base = server
        .console
        .clone()
        .expect("the console's address printed");
    let mut client = writer(&server).await;

    // Account 1 funds account 2 thirty times (more than one history page); one
    // transfer is sent twice with one user_ref, so a duplicate links to its original.
    let deposit = pb::submit_and_wait_request::Operation::Deposit(pb::Deposit {
        account: 1,
        amount: 1_000_000,
        user_ref: 0,
    });
    client.submit_and_wait(submit(deposit)).await.unwrap();
    for i in 0..30 {
        client
            .submit_and_wait(submit(transfer(1, 2, 100 + i, 0)))
            .await
            .unwrap();
    }
    let original = client
        .submit_and_wait(submit(transfer(1, 3, 7, 4242)))
        .await
        .unwrap()
        .into_inner();
    let duplicate = client
        .submit_and_wait(submit(transfer(1, 3, 7, 4242)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(duplicate.fail_reason, 7, "a duplicate");

    let driver = Driver::start();
    let browser = driver.browser().await;

    // Without a token: the API says to sign in; an unknown token is refused.
    browser
        .goto(&format!("{base}/api/accounts/1/balances"))
        .await
        .unwrap();
    assert!(text(&browser, "body").await.starts_with("sign in"));
    browser.goto(&format!("{base}/login")).await.unwrap();
    fill(&browser, "#token", "not-a-token-0123456789").await;
    click(&browser, "form.card button").await;
    eventually("the refusal", || has(&browser, "p.error")).await;
    assert!(text(&browser, "p.error").await.starts_with("Unknown token"));

    // Overview: figures, live charts, the newest transactions.
    sign_in(&browser, &base, WRITE_TOKEN).await;
    for chart in [
        "#chart-tps",
        "#chart-latency",
        "#chart-fsyncs",
        "#chart-gaps",
    ] {
        chart_drawn(&browser, chart).await;
    }
    let load_ms = browser
        .execute(
            "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;",
            vec![],
        )
        .await
        .unwrap();
    println!("overview load: {load_ms} ms");
    // Live, without a reload: a transfer made now shows in the figures and the list.
    let live = client
        .submit_and_wait(submit(transfer(1, 2, 5, 0)))
        .await
        .unwrap()
        .into_inner();
    let live_id = live.transaction_id.to_string();
    eventually("the overview shows the new committed index", || async {
        text(&browser, "#committed").await == live_id
    })
    .await;
    eventually("the newest transactions list it", || async {
        text(&browser, "#recent tbody tr:first-child td:first-child").await == live_id
    })
    .await;
    screenshot(&browser, "overview").await;

    // Search for account 1: its page, its balance as the API says, its chart.
    fill(&browser, "form.search input[name=q]", "1").await;
    click(&browser, "form.search button[value=account]").await;
    eventually("the account page", || async {
        path(&browser).await == "/accounts/1"
    })
    .await;
    let balance = client
        .get_balance(pb::GetBalanceRequest {
            account_id: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .balance;
    assert_eq!(text(&browser, "#balance").await, balance.to_string());
    chart_drawn(&browser, "#balance-chart").await;
    screenshot(&browser, "account").await;

    // The history pages with its cursor.
    let first_page = browser
        .find_all(Locator::Css("#history tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(first_page, 25);
    click(&browser, "#older").await;
    eventually("the older page", || async {
        path(&browser).await.starts_with("/accounts/1?from=")
    })
    .await;
    let older = browser
        .find_all(Locator::Css("#history tbody tr"))
        .await
        .unwrap()
        .len();
    assert!(older > 0, "the older page lists the rest");

    // A transaction from the history, then an account it names.
    click(&browser, "#history tbody tr:first-child a").await;
    eventually("a transaction page", || async {
        path(&browser).await.starts_with("/tx/")
    })
    .await;
    assert_eq!(text(&browser, "#outcome").await, "committed");
    click(&browser, "#entries tbody tr:last-child a").await;
    eventually("the receiving account's page", || async {
        path(&browser).await == "/accounts/2"
    })
    .await;

    // The duplicate: rejected, linked to its original.
    browser
        .goto(&format!("{base}/tx/{}", duplicate.transaction_id))
        .await
        .unwrap();
    assert_eq!(
        text(&browser, "#outcome").await,
        format!(
            "rejected: duplicate of transaction {}",
            original.transaction_id
        )
    );
    click(&browser, "#links a").await;
    eventually("the original", || async {
        path(&browser).await == format!("/tx/{}", original.transaction_id)
    })
    .await;
    screenshot(&browser, "transaction").await;

    // Submit a transfer: it lands on its own page, committed, and the API agrees.
    browser.goto(&format!("{base}/submit")).await.unwrap();
    screenshot(&browser, "submit").await;
    fill(&browser, "#account", "2").await;
    fill(&browser, "#to", "3").await;
    fill(&browser, "#amount", "250").await;
    let submitted = submit_form(&browser).await;
    let tx = client
        .get_transaction(pb::GetTransactionRequest {
            tx_id: submitted,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tx.fail_reason, 0);
    assert!(
        tx.entries
            .iter()
            .any(|e| e.account_id == 3 && e.amount == 250)
    );
    // ...and it appears on the overview without a reload.
    browser.goto(&format!("{base}/")).await.unwrap();
    eventually("the submitted transfer among the newest", || async {
        text(&browser, "#recent tbody")
            .await
            .lines()
            .any(|l| l.starts_with(&format!("{submitted} ")))
    })
    .await;

    // A hold from the form; the account lists it, and its Post link posts it.
    browser.goto(&format!("{base}/submit")).await.unwrap();
    click(&browser, "input[name=kind][value=hold]").await;
    fill(&browser, "#account", "1").await;
    fill(&browser, "#to", "3").await;
    fill(&browser, "#amount", "77").await;
    fill(&browser, "#timeout_secs", "3600").await;
    let hold_id = submit_form(&browser).await;
    assert!(
        text(&browser, "#effects")
            .await
            .contains("Hold of 77 from account 1 to account 3")
    );
    browser.goto(&format!("{base}/accounts/1")).await.unwrap();
    assert!(
        text(&browser, "#holds tbody")
            .await
            .starts_with(&format!("{hold_id} 1 3 77"))
    );
    click(&browser, "#holds a[href^='/submit?kind=post']").await;
    eventually("the post form", || async {
        path(&browser).await.starts_with("/submit?")
    })
    .await;
    submit_form(&browser).await;
    assert_eq!(
        text(&browser, "#effects").await,
        format!("hold {hold_id} posted: 77 moved")
    );
    browser.goto(&format!("{base}/accounts/1")).await.unwrap();
    assert!(
        !has(&browser, "#holds").await,
        "the posted hold is no longer open"
    );

    // Reverse the transfer submitted above: linked both ways.
    browser.goto(&format!("{base}/submit")).await.unwrap();
    click(&browser, "input[name=kind][value=reverse]").await;
    fill(&browser, "#target", &submitted.to_string()).await;
    submit_form(&browser).await;
    assert_eq!(
        text(&browser, "#links").await,
        format!("Reverses transaction {submitted}")
    );
    browser
        .goto(&format!("{base}/tx/{submitted}"))
        .await
        .unwrap();
    assert!(
        text(&browser, "#links")
            .await
            .starts_with("Reversed by transaction")
    );

    // Bad input: a clear error, the form kept, nothing submitted.
    let before = committed(&mut client).await;
    browser.goto(&format!("{base}/submit")).await.unwrap();
    fill(&browser, "#account", "2").await;
    fill(&browser, "#to", "3").await;
    fill(&browser, "#amount", "ten").await;
    click(&browser, "#submit-button").await;
    eventually("the form's error", || has(&browser, "#submit-error")).await;
    assert!(
        text(&browser, "#submit-error")
            .await
            .contains("whole number")
    );
    let after = committed(&mut client).await;
    assert_eq!(before, after, "nothing was submitted");
    // An unknown transaction and a malformed id: error pages that say why.
    browser.goto(&format!("{base}/tx/999999")).await.unwrap();
    assert!(text(&browser, "p.error").await.contains("never issued"));
    browser.goto(&format!("{base}/accounts/x1")).await.unwrap();
    assert!(text(&browser, "p.error").await.contains("whole number"));

    // A phone: nothing wider than the screen.
    browser.set_window_size(390, 844).await.unwrap();
    browser.goto(&format!("{base}/")).await.unwrap();
    chart_drawn(&browser, "#chart-tps").await;
    let overflow = browser
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow.as_i64(),
        Some(0),
        "the overview scrolls sideways on a phone"
    );
    screenshot(&browser, "overview-phone").await;
    browser.set_window_size(1280, 1000).await.unwrap();

    // A read token sees, but may not submit.
    click(&browser, "form.signout button").await;
    eventually("signed out", || async { path(&browser).await == "/login" }).await;
    sign_in(&browser, &base, READ_TOKEN).await;
    browser.goto(&format!("{base}/submit")).await.unwrap();
    assert!(text(&browser, "main").await.contains("read-only"));
    let disabled = browser
        .find(Locator::Css("#submit-button"))
        .await
        .unwrap()
        .prop("disabled")
        .await
        .unwrap();
    assert_eq!(disabled.as_deref(), Some("true"));
    // Posted anyway (from the page, with its cookie): refused, nothing submitted.
    let refused = browser
        .execute(
            "return fetch('/submit', {method: 'POST', headers: {'content-type': \
             'application/x-www-form-urlencoded'}, body: 'kind=deposit&account=1&amount=5'}) \
             .then(async r => [r.status, await r.text()]);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused[0].as_u64(), Some(403), "{refused}");
    assert!(
        refused[1].as_str().unwrap().contains("read-only"),
        "{refused}"
    );

    browser.close().await.unwrap();
}
