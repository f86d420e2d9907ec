//! The web console in a real browser: Debian's Chromium driven through `chromium-driver` by
//! Python selenium (`tests/console/run.py`, pinned in `deploy/setup.sh`) against a live
//! stack — a real nats-server, an in-process worker serving the built-in mock in token
//! mode, and the HTTP bridge on a random loopback port, plus two scripted upstreams that the
//! script adds as channels in the UI (flow 3: disable one, traffic moves to the other). The
//! stack holds a root user with a management access token, a common user with an API token
//! and quota, and a second user (bob) whose traffic the first must never see; the script signs
//! in as each, walks every page, screenshots each at 1280×800 and at phone width (390×844)
//! under `target/console-screenshots/`, checks that every control is labelled and reached by
//! Tab in the page's order, and
//! prints what the pages showed as one JSON line (`RESULT {…}`), which this test checks
//! against the ledger. Without Chromium, chromedriver or selenium the test prints why and
//! passes.

mod common;

use ailurus::bridge::BridgeConfig;
use ailurus::config::Config;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use ailurus::quota::users::{role, UserStore};
use common::upstream::{Api, Upstream};
use common::Stack;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A name made to run script if a page ever inserted it as markup.
const HOSTILE: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2;alert(2)\">";

/// The API keys typed into the Channels page (the upstreams must receive them; the page and
/// the API must never show them).
const CHANNEL_KEY_A: &str = "sk-upstream-primary-0123456789abcdef";
const CHANNEL_KEY_B: &str = "sk-upstream-secondary-0123456789abcdef";

/// Why the browser test cannot run here, if it cannot.
fn missing_tools(python: &Path) -> Option<String> {
    for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(bin).exists() {
            return Some(format!("{bin} is missing (apt-get install chromium chromium-driver; deploy/setup.sh does)"));
        }
    }
    if !python.exists() {
        return Some(format!("{} is missing; run ./deploy/setup.sh", python.display()));
    }
    let ok = std::process::Command::new(python).args(["-c", "import selenium"]).output().map(|o| o.status.success());
    if ok.unwrap_or(false) {
        None
    } else {
        Some("selenium is not installed in .tools/venv; run ./deploy/setup.sh".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".tools/venv/bin/python");
    if let Some(why) = missing_tools(&python) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    // The streams reserve their max_bytes (13 GiB) from the file store, which nats-server
    // sizes from the free disk by default; this test stores a few kilobytes, so it names a
    // store size rather than fail on a machine with little free disk.
    let mut stack = Stack::with_server(ailurus::nats_server::SpawnOptions {
        config: "jetstream {\n  max_file_store: 64GB\n}\nmax_payload: 8MB\n".into(),
        ..Default::default()
    })
    .await;
    stack.apply_streams().await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let tokens = TokenStore::open(&js).await.expect("TOKENS");
    let quota = QuotaStore::open(stack.client.clone()).await.expect("QUOTA");
    let users = UserStore::open(&js).await.expect("USERS");
    let root_user = users.create("root", role::ROOT, "Root User").await.expect("root user");
    let root_token = users.new_access_token("root").await.expect("root access token");
    let (alice, alice_token) = common::funded(&tokens, &quota, "alice", 50_000_000).await;
    users.create("alice", role::COMMON, HOSTILE).await.expect("alice");
    // A token whose name is hostile markup, shown on the Tokens page.
    tokens.create("alice", HOSTILE, None, Vec::new(), None).await.expect("hostile token");
    let root_name = ailurus::bus::subjects::Token::new("user_id", "root").expect("root id");
    quota.set(&root_name, 100_000_000, None).await.expect("root quota");
    // Bob: another user whose requests alice must never see.
    let (bob, _) = common::funded(&tokens, &quota, "bob", 50_000_000).await;
    let (bob_token, _) = tokens.create("bob", "bob-secret-token", None, Vec::new(), None).await.expect("bob's token");
    let _ = bob;
    users.create("bob", role::COMMON, "Bob").await.expect("bob");
    // The channels the script adds in the UI serve `flow3-model`, priced here; their keys are
    // sealed with this secret key.
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, key_file) = ailurus::seal::SealKey::load_or_create(dir.path()).expect("secret key");
    let mut config = Config::from_toml(
        "[routing]\nbuiltin_mock = true\n[[pricing.models]]\npattern = \"flow3-*\"\ninput = 1.0\noutput = 2.0\n",
    )
    .expect("config");
    config.live.secret_key_file = Some(key_file);
    stack.add_worker(config).await;
    let (up_a, up_b) = (Upstream::start().await, Upstream::start().await);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind bridge");
    let bridge_url = format!("http://{}", listener.local_addr().expect("addr"));
    let bridge_client = ailurus::bus::connect(&stack.server.url, "test-bridge").await.expect("connect bridge");
    let bridge =
        tokio::spawn(ailurus::bridge::serve(listener, bridge_client, BridgeConfig::default(), stack.shutdown.clone()));

    let shots = root.join("target/console-screenshots");
    let run = tokio::process::Command::new(&python)
        .arg("tests/console/run.py")
        .current_dir(root)
        .env("AILURUS_BRIDGE_URL", &bridge_url)
        .env("AILURUS_ROOT_TOKEN", &root_token)
        .env("AILURUS_ROOT_ID", root_user.id.to_string())
        .env("AILURUS_USER_TOKEN", &alice_token)
        .env("AILURUS_OTHER_TOKEN", &bob_token)
        .env("AILURUS_UPSTREAM_A", up_a.base_url(Api::OpenAi))
        .env("AILURUS_UPSTREAM_B", up_b.base_url(Api::OpenAi))
        .env("AILURUS_CHANNEL_KEY_A", CHANNEL_KEY_A)
        .env("AILURUS_CHANNEL_KEY_B", CHANNEL_KEY_B)
        .env("AILURUS_SCREENSHOTS", &shots)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(400), run)
        .await
        .expect("the browser script took more than 400 s")
        .expect("run tests/console/run.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- run.py stdout ---\n{stdout}\n--- run.py stderr ---\n{stderr}");
    assert!(out.status.success(), "tests/console/run.py failed ({}); its output is above", out.status);
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("run.py printed no RESULT line");

    // Flow 3: both upstreams served (before and after the UI disabled the first), each with
    // the key typed into the UI (kept sealed, never shown, but used).
    let moved = &result["flow3"];
    for (up, key, name) in [(&up_a, CHANNEL_KEY_A, "primary"), (&up_b, CHANNEL_KEY_B, "secondary")] {
        let reqs = up.requests();
        assert!(!reqs.is_empty(), "upstream {name} got no request: {moved}");
        let auth = format!("Bearer {key}");
        assert!(reqs.iter().all(|r| r.header("authorization") == Some(auth.as_str())), "{name}: not the UI's key");
    }
    println!(
        "flow 3: upstream primary got {}, secondary {} requests; the log showed {moved}",
        up_a.count(),
        up_b.count()
    );
    // The dashboard's own figures are the ledger's (read once every lease is back).
    let ledger = common::quiet_balance(&quota, &alice).await;
    let shown = &result["alice_dashboard"];
    assert!(ledger.request_count > 0, "the SDK's requests were not billed: {ledger:?}");
    assert_eq!(shown["requests"].as_str(), Some(ledger.request_count.to_string().as_str()), "{shown}");
    let money = |units: i64| format!("${:.4}", units as f64 / ailurus::pricing::QUOTA_PER_USD);
    assert_eq!(shown["spent"].as_str(), Some(money(ledger.used).as_str()), "{shown} vs {ledger:?}");
    assert_eq!(shown["balance"].as_str(), Some(money(ledger.remain).as_str()), "{shown} vs {ledger:?}");
    // The usage totals (from /api/data/self/stats) too, and they are what `ailurus stats`
    // reads (the same rollups, over the last day).
    let totals = &result["alice_totals"];
    assert!(!totals.is_null(), "the dashboard showed no usage totals");
    assert_eq!(totals["requests"].as_str(), Some(ledger.request_count.to_string().as_str()), "{totals}");
    assert_eq!(totals["cost"].as_str(), Some(money(ledger.used).as_str()), "{totals} vs {ledger:?}");
    let stats = ailurus::stats::query::open(&js).await.expect("USAGE_STATS");
    let now = ailurus::bus::proof::now_secs();
    let scope = ailurus::stats::query::Scope::User("alice".into());
    let periods = ailurus::stats::query::read(&stats, &scope, now - 86_400, now).await.expect("read the statistics");
    let report = ailurus::stats::query::Report::build(now - 86_400, now, &periods);
    assert_eq!(
        (report.totals.requests.to_string(), money(report.totals.quota)),
        (ledger.request_count.to_string(), money(ledger.used)),
        "ailurus stats vs the ledger"
    );
    println!(
        "dashboard totals {totals} = ailurus stats {} requests, {} = the ledger",
        report.totals.requests,
        money(report.totals.quota)
    );
    stack.shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(5), bridge).await;
}
