//! The NATS-native client examples in `examples/`, run against a live stack: a real
//! nats-server with JetStream and a WebSocket listener, the streams, an in-process worker in
//! token mode, a demo user with quota and a token, and an in-process HTTP bridge.
//!
//! - `examples/ts/` (Gemini CLI "NATS mode" on nats.js): over WebSocket, over TCP, and falling
//!   back to the HTTP bridge when NATS is unreachable; plus `tsc --noEmit`.
//! - `examples/python/stream.py` (nats-py): over TCP and the HTTP fallback.
//! - `examples/rust/main.rs` (async-nats): its `stream_answer` is compiled in here and called.
//! - `examples/nats-cli.md`: every `nats …` command is parsed out of the file and sent with
//!   async-nats (same subjects, headers and JSON); every subject of `subjects.toml` must
//!   have a recipe.
//!
//! Node/npm or the Python venv missing: those tests print `SKIP …` and pass (`./deploy/setup.sh`
//! installs both on CI). Every wait is bounded; child processes are killed on drop.

mod common;

#[path = "../examples/rust/main.rs"]
#[allow(dead_code)]
mod rust_example;

use ailurus::bridge::BridgeConfig;
use ailurus::bus::subjects::Token;
use ailurus::config::Config;
use ailurus::nats_server::{free_port, SpawnOptions};
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use common::Stack;
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------------------
// The live stack
// ---------------------------------------------------------------------------------------------

/// Everything a client example needs.
struct Live {
    /// Server, test client, worker (stopped on drop).
    stack: Stack,
    /// The demo user's API token.
    token: String,
    /// Its sha256 (hex).
    sha: String,
    /// `ws://127.0.0.1:<port>`.
    ws_url: String,
    /// `http://127.0.0.1:<port>` of the in-process bridge.
    bridge_url: String,
}

impl Live {
    async fn start() -> Self {
        let ws_port = free_port().unwrap();
        let config = format!(
            "jetstream {{ max_file_store: 1TB }}\nmax_payload: 8MB\nwebsocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n}}\n"
        );
        let mut stack = Stack::with_server(SpawnOptions { config, ..SpawnOptions::default() }).await;
        stack.apply_streams().await;
        stack.add_worker(Config::default()).await; // token mode
        let js = jetstream::new(stack.client.clone());
        let store = TokenStore::open(&js).await.unwrap();
        // A token with its own limit, so `quota.tokenused.<sha>` counts too.
        let (token, _) = store.create("demo", "demo", None, Vec::new(), Some(2_000_000)).await.unwrap();
        let quota = QuotaStore::open(stack.client.clone()).await.unwrap();
        quota.topup(&Token::new("user_id", "demo").unwrap(), 2_500_000).await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bridge_url = format!("http://{}", listener.local_addr().unwrap());
        let bridge_client = ailurus::bus::connect(&stack.server.url, "test-bridge").await.unwrap();
        let shutdown = stack.shutdown.clone();
        tokio::spawn(async move {
            ailurus::bridge::serve(listener, bridge_client, BridgeConfig::default(), shutdown).await
        });

        // nats-server opens the WebSocket listener right after the client port; wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", ws_port)).await.is_err() {
            assert!(Instant::now() < deadline, "the WebSocket listener did not open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sha = ailurus::credential::hash(&token);
        Self { stack, token, sha, ws_url: format!("ws://127.0.0.1:{ws_port}"), bridge_url }
    }

    fn client(&self) -> &async_nats::Client {
        &self.stack.client
    }

    /// Environment for an example process: everything explicit, nothing inherited.
    fn env(&self, nats_url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("NATS_URL", nats_url.to_string()),
            ("CODESWITCH_BASE_URL", self.bridge_url.clone()),
            ("AILURUS_TOKEN", self.token.clone()),
            ("AILURUS_USER_ID", "demo".into()),
            ("AILURUS_SESSION_ID", "s-example".into()),
            ("AILURUS_MODEL", "mock-c6-d20".into()),
        ]
    }
}

/// A loopback URL where nothing listens.
fn dead_nats_url() -> String {
    format!("nats://127.0.0.1:{}", free_port().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// What a finished child printed.
#[derive(Debug)]
struct Ran {
    /// Exit code (None: killed).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn assert_ok(&self, what: &str) {
        assert_eq!(self.code, Some(0), "{what} failed\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
    }
}

/// Run a command with a time limit; the child is killed when the limit passes.
async fn run(mut cmd: tokio::process::Command, limit: Duration, what: &str) -> Ran {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what} did not finish within {} s (killed)", limit.as_secs()),
    }
}

/// The same, blocking (for one-time setup inside a `OnceLock`).
fn run_blocking(cmd: &mut std::process::Command, limit: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            return if status.success() { Ok(text) } else { Err(format!("{cmd:?} failed ({status}):\n{text}")) };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} did not finish within {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// TypeScript: examples/ts
// ---------------------------------------------------------------------------------------------

fn ts_dir() -> PathBuf {
    Path::new(MANIFEST).join("examples/ts")
}

/// `Ok(dir)` when Node ≥ 20 and the example's packages are installed (running `npm ci` once
/// when they are not), `Err(reason)` to skip.
fn ts_ready() -> Result<PathBuf, String> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let version = run_blocking(std::process::Command::new("node").arg("--version"), Duration::from_secs(20))
                .map_err(|_| "node is not installed".to_string())?;
            // `node --import tsx` needs Node 20.6 or later.
            let mut parts = version.trim().trim_start_matches('v').split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            if (major, minor) < (20, 6) {
                return Err(format!("node {} is older than 20.6", version.trim()));
            }
            let dir = ts_dir();
            let installed = dir.join("node_modules/.package-lock.json");
            let stale = match (std::fs::metadata(&installed), std::fs::metadata(dir.join("package-lock.json"))) {
                (Ok(i), Ok(l)) => i.modified().ok() < l.modified().ok(),
                _ => true,
            };
            if stale {
                if run_blocking(std::process::Command::new("npm").arg("--version"), Duration::from_secs(20)).is_err() {
                    return Err("npm is not installed".into());
                }
                eprintln!("examples/ts: npm ci");
                let out = run_blocking(
                    std::process::Command::new("npm")
                        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                        .current_dir(&dir),
                    Duration::from_secs(300),
                );
                // npm is there and the registry is reachable on CI: a failed install is a failure.
                if let Err(e) = out {
                    panic!("npm ci in examples/ts: {e}");
                }
            }
            Ok(dir)
        })
        .clone()
}

/// Run `node --import tsx demo.ts <prompt>` (one process; `npx tsx demo.ts` does the same).
async fn run_ts_demo(dir: &Path, env: &[(&'static str, String)], prompt: &str) -> Ran {
    let mut cmd = tokio::process::Command::new("node");
    cmd.args(["--import", "tsx", "demo.ts", prompt]).current_dir(dir);
    for k in ["NATS_ENABLED", "AILURUS_PLATFORM"] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    run(cmd, Duration::from_secs(60), "examples/ts demo.ts").await
}

macro_rules! skip_unless {
    ($ready:expr, $what:expr) => {
        match $ready {
            Ok(v) => v,
            Err(reason) => {
                eprintln!("SKIP {}: {reason}", $what);
                return;
            }
        }
    };
}

/// The demo streamed the mock's answer over `transport` and saw its own quota event.
fn assert_streamed(ran: &Ran, prompt: &str, transport: &str, quota_event: bool) {
    ran.assert_ok(transport);
    assert!(
        ran.stdout.starts_with(&format!("Mock answer to \"{prompt}\":")),
        "no answer on stdout:\n{}\n{}",
        ran.stdout,
        ran.stderr
    );
    let summary = ran
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("[{transport}] ")) && l.contains(" chunks · trace "))
        .unwrap_or_else(|| panic!("no [{transport}] summary line:\n{}", ran.stderr));
    // mock-c6-d20: six chunks 20 ms apart, each printed as it came.
    assert!(summary.contains(" · 6 chunks · "), "not streamed in 6 chunks: {summary}");
    if quota_event {
        let trace = summary.rsplit(" trace ").next().unwrap();
        assert!(
            ran.stderr.lines().any(|l| l.starts_with("[quota] demo: ") && l.contains(&format!("trace {trace}"))),
            "no quota event for {trace}:\n{}",
            ran.stderr
        );
    }
}

#[tokio::test]
async fn ts_example_typechecks() {
    let dir = skip_unless!(ts_ready(), "ts_example_typechecks (examples/ts)");
    let mut cmd = tokio::process::Command::new("node");
    cmd.args(["node_modules/typescript/bin/tsc", "--noEmit", "-p", "."]).current_dir(&dir);
    run(cmd, Duration::from_secs(120), "tsc --noEmit").await.assert_ok("tsc --noEmit");
}

#[tokio::test]
async fn ts_example_streams_over_websocket_with_quota_and_presence() {
    let dir = skip_unless!(ts_ready(), "ts_example_streams_over_websocket (examples/ts)");
    let live = Live::start().await;
    let mut presence = live.client().subscribe("user.demo.presence").await.unwrap();
    live.client().flush().await.unwrap();
    let prompt = "hello over WebSocket";
    let ran = run_ts_demo(&dir, &live.env(&live.ws_url), prompt).await;
    assert_streamed(&ran, prompt, "nats-ws", true);
    // The NATS mode announces the session on start and exit.
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(5), presence.next()).await.expect("presence").unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        if v["source"] == "gateway" {
            // The worker's own presence record for the authenticated user.
            continue;
        }
        assert_eq!((v["user_id"].as_str(), v["session_id"].as_str()), (Some("demo"), Some("s-example")));
        statuses.push(v["status"].as_str().unwrap().to_string());
    }
    assert_eq!(statuses, ["online", "offline"]);
}

#[tokio::test]
async fn ts_example_streams_over_tcp() {
    let dir = skip_unless!(ts_ready(), "ts_example_streams_over_tcp (examples/ts)");
    let live = Live::start().await;
    let prompt = "hello over TCP";
    let ran = run_ts_demo(&dir, &live.env(&live.stack.server.url), prompt).await;
    assert_streamed(&ran, prompt, "nats-tcp", true);
}

#[tokio::test]
async fn ts_example_falls_back_to_the_http_bridge_when_nats_is_unreachable() {
    let dir = skip_unless!(ts_ready(), "ts_example_falls_back (examples/ts)");
    let live = Live::start().await;
    for url in [dead_nats_url(), dead_nats_url().replace("nats://", "ws://")] {
        let prompt = "hello through the bridge";
        let ran = run_ts_demo(&dir, &live.env(&url), prompt).await;
        assert_streamed(&ran, prompt, "http", false);
        assert!(ran.stderr.contains(&format!("[http] NATS at {url} unreachable")), "{}", ran.stderr);
    }
    // NATS_ENABLED=false: straight to the bridge.
    let mut env = live.env(&live.ws_url);
    env.push(("NATS_ENABLED", "false".into()));
    let ran = run_ts_demo(&dir, &env, "disabled").await;
    assert_streamed(&ran, "disabled", "http", false);
    assert!(ran.stderr.contains("[http] NATS_ENABLED=false"), "{}", ran.stderr);
}

/// The seed's Gemini CLI variables: `NEW_API_TOKEN` stands for the token, and with
/// `USE_CODESWITCH=false` the HTTP fallback goes to `NEW_API_URL` instead of
/// `CODESWITCH_BASE_URL` (here a dead address, so only the right choice can answer).
#[tokio::test]
async fn ts_example_honours_the_seeds_codeswitch_and_new_api_variables() {
    let dir = skip_unless!(ts_ready(), "ts_example_honours_the_seeds_variables (examples/ts)");
    let live = Live::start().await;
    let dead_http = dead_nats_url().replace("nats://", "http://");
    let mut env: Vec<(&'static str, String)> = live
        .env(&dead_nats_url())
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "AILURUS_TOKEN" | "CODESWITCH_BASE_URL"))
        .collect();
    env.extend([
        ("NEW_API_TOKEN", live.token.clone()),
        ("NEW_API_URL", live.bridge_url.clone()),
        ("USE_CODESWITCH", "false".into()),
        ("CODESWITCH_BASE_URL", dead_http.clone()),
    ]);
    let ran = run_ts_demo(&dir, &env, "seed variables").await;
    assert_streamed(&ran, "seed variables", "http", false);
    assert!(ran.stderr.contains(&format!("using {}", live.bridge_url)), "{}", ran.stderr);
    // USE_CODESWITCH left at its default: the (dead) CodeSwitch address is used, and fails.
    let env: Vec<_> = env.into_iter().filter(|(k, _)| *k != "USE_CODESWITCH").collect();
    let ran = run_ts_demo(&dir, &env, "codeswitch").await;
    assert_ne!(ran.code, Some(0), "the dead CODESWITCH_BASE_URL answered:\n{}", ran.stdout);
    assert!(ran.stderr.contains(&format!("using {dead_http}")), "{}", ran.stderr);
}

#[tokio::test]
async fn ts_example_reports_a_rejected_token() {
    let dir = skip_unless!(ts_ready(), "ts_example_reports_a_rejected_token (examples/ts)");
    let live = Live::start().await;
    let mut env = live.env(&live.stack.server.url);
    env.retain(|(k, _)| *k != "AILURUS_TOKEN");
    env.push(("AILURUS_TOKEN", "sk-ail-not-a-real-token".into()));
    let ran = run_ts_demo(&dir, &env, "who am I").await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(ran.stderr.contains("error (401): invalid API token"), "{}", ran.stderr);
}

// ---------------------------------------------------------------------------------------------
// Python: examples/python/stream.py
// ---------------------------------------------------------------------------------------------

/// The venv's python with nats-py, or why not.
fn python_ready() -> Result<PathBuf, String> {
    let py = Path::new(MANIFEST).join(".tools/venv/bin/python");
    if !py.exists() {
        return Err(format!("{} is missing (run ./deploy/setup.sh)", py.display()));
    }
    run_blocking(std::process::Command::new(&py).args(["-c", "import nats"]), Duration::from_secs(30))
        .map_err(|_| "nats-py is not installed in .tools/venv (run ./deploy/setup.sh)".to_string())?;
    Ok(py)
}

async fn run_python(py: &Path, env: &[(&'static str, String)], prompt: &str) -> Ran {
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(Path::new(MANIFEST).join("examples/python/stream.py")).arg(prompt).env_remove("NATS_ENABLED");
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    run(cmd, Duration::from_secs(60), "examples/python/stream.py").await
}

#[tokio::test]
async fn python_example_streams_over_nats_and_falls_back_to_http() {
    let py = skip_unless!(python_ready(), "python_example (examples/python)");
    let live = Live::start().await;
    let prompt = "hello from python";
    let ran = run_python(&py, &live.env(&live.stack.server.url), prompt).await;
    assert_streamed(&ran, prompt, "nats-tcp", true);
    let ran = run_python(&py, &live.env(&dead_nats_url()), prompt).await;
    assert_streamed(&ran, prompt, "http", false);
}

// ---------------------------------------------------------------------------------------------
// Rust: examples/rust/main.rs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rust_example_streams_an_answer_and_reports_errors() {
    let live = Live::start().await;
    let client = ailurus::bus::connect(&live.stack.server.url, "rust-example").await.unwrap();
    let settings = rust_example::Settings {
        user_id: "demo".into(),
        session_id: "s-rust".into(),
        token: Some(live.token.clone()),
        model: "mock-c6-d20".into(),
        platform: "claude".into(),
    };
    let mut deltas = Vec::new();
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        rust_example::stream_answer(&client, &settings, "hello from rust", |d| deltas.push(d.to_string())),
    )
    .await
    .expect("bounded")
    .expect("answer");
    assert_eq!(answer.chunks, 6);
    assert_eq!(deltas.concat(), answer.text);
    assert!(answer.text.starts_with("Mock answer to \"hello from rust\":"), "{}", answer.text);
    assert_eq!(answer.response["success"], true);
    assert_eq!(answer.response["content"].as_str(), Some(answer.text.as_str()));
    assert!(answer.response["cost"].as_f64().unwrap() > 0.0);

    // Someone else's user_id with this token: a clean 403.
    let wrong = rust_example::Settings { user_id: "mallory".into(), ..settings.clone() };
    let err = rust_example::stream_answer(&client, &wrong, "hi", |_| {}).await.unwrap_err();
    assert!(err.starts_with("(403)"), "{err}");

    // No worker at all (the LLM_REQUESTS stream still captures the subject, so NATS reports
    // no "no responders"): the first-reply bound says so within about a second.
    let empty = Stack::server_only().await;
    empty.apply_streams().await;
    let started = Instant::now();
    let err = rust_example::stream_answer(&empty.client, &settings, "hi", |_| {}).await.unwrap_err();
    assert!(err.contains("no Ailurus worker"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// examples/nats-cli.md
// ---------------------------------------------------------------------------------------------

/// One `nats …` command from the recipes, shell-expanded.
#[derive(Debug, Clone)]
struct NatsCmd {
    /// The source line(s), for messages.
    line: String,
    /// Words that are not flags: the (sub)command, then its arguments.
    args: Vec<String>,
    /// `-H` / `--header` values, split at the first `:` and trimmed (as natscli does).
    headers: Vec<(String, String)>,
    /// Other flags (`--subject`, `--last-for`, `--replies`, `--timeout`, ...).
    flags: BTreeMap<String, String>,
    /// A `$(ailurus sign SUBJECT BODY [-H K:V]…)` in the line: the token and the words after
    /// `sign`. Its headers are made when the command is sent (a proof is good once, 60 s).
    sign: Option<(String, Vec<String>)>,
}

impl NatsCmd {
    fn verb(&self) -> String {
        match self.args.first().map(String::as_str) {
            Some(v @ ("stream" | "kv" | "counter")) => format!("{v} {}", self.args.get(1).map_or("", |s| s.as_str())),
            Some("request") => "req".into(),
            Some("publish") => "pub".into(),
            Some("subscribe") => "sub".into(),
            Some(v) => v.to_string(),
            None => String::new(),
        }
    }

    /// The concrete subject the command touches, if any.
    fn subject(&self) -> Option<String> {
        match self.verb().as_str() {
            "req" | "pub" | "sub" => self.args.get(1).cloned(),
            "stream view" => self.flags.get("subject").cloned(),
            "stream get" => self.flags.get("last-for").cloned(),
            _ => None,
        }
    }

    /// Whether the line, or the body it sends (which may sit in a variable), contains `needle`.
    fn mentions(&self, needle: &str) -> bool {
        self.line.contains(needle) || String::from_utf8_lossy(&self.body()).contains(needle)
    }

    fn body(&self) -> Bytes {
        Bytes::from(self.args.get(2).cloned().unwrap_or_default())
    }

    fn header_map(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in self.headers.iter().chain(&self.signed()) {
            h.append(k.as_str(), v.as_str());
        }
        h
    }

    /// The headers `ailurus sign` prints for this command now (what the shell would splice in).
    fn signed(&self) -> Vec<(String, String)> {
        let Some((token, words)) = &self.sign else { return Vec::new() };
        let (subject, body) = (&words[0], &words[1]);
        let mut given = Vec::new();
        let mut it = words[2..].iter();
        while let Some(w) = it.next() {
            assert_eq!(w, "-H", "ailurus sign takes -H K:V only: {}", self.line);
            let kv = it.next().unwrap_or_else(|| panic!("-H without a value: {}", self.line));
            let (k, v) = kv.split_once(':').unwrap_or_else(|| panic!("{kv:?} is not K:V"));
            given.push((k.trim().to_string(), v.trim().to_string()));
        }
        ailurus::cli::sign::proof_headers(token, subject, body.as_bytes(), &given, ailurus::bus::proof::now_secs())
            .unwrap_or_else(|e| panic!("ailurus sign: {e}: {}", self.line))
    }
}

/// Split one shell line into words: single quotes literal, double quotes with `$VAR` and
/// backslash escapes, bare words with `$VAR`; adjacent pieces join; `#` starts a comment.
fn shell_words(line: &str, vars: &BTreeMap<String, String>) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let expand = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String| {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        match vars.get(name.as_str()) {
            Some(v) => out.push_str(v),
            None => panic!("nats-cli.md uses ${name}, which the test does not define"),
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                if !matches!(n, '"' | '\\' | '$' | '`') {
                                    cur.push('\\');
                                }
                                cur.push(n);
                            }
                        }
                        '$' => expand(&mut chars, &mut cur),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '$' => {
                in_word = true;
                expand(&mut chars, &mut cur);
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Every `nats …` command in the `sh` blocks of `examples/nats-cli.md`.
fn recipes(vars: &BTreeMap<String, String>) -> Vec<NatsCmd> {
    let mut vars = vars.clone();
    let text = std::fs::read_to_string(Path::new(MANIFEST).join("examples/nats-cli.md")).unwrap();
    let mut lines = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for raw in text.lines() {
        let t = raw.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(head) = raw.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        lines.push(std::mem::take(&mut pending));
    }
    const VALUE_FLAGS: [&str; 8] =
        ["header", "subject", "last-for", "timeout", "replies", "count", "reply-timeout", "stream"];
    let mut out = Vec::new();
    for line in lines {
        // A body kept in a variable: `B='{…}'`.
        if let Some((name, value)) = line.trim().split_once("='") {
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && value.ends_with('\'') {
                let words = shell_words(&format!("'{value}"), &vars);
                vars.insert(name.to_string(), words.concat());
                continue;
            }
        }
        // Only `nats …` lines are recipes (setup lines like `TOKEN=$(cat …)` are not run).
        if !line.trim_start().starts_with("nats ") {
            continue;
        }
        // `$(ailurus sign …)`: cut out, signed when sent.
        let (line_rest, sign) = match line.find("$(ailurus sign ") {
            Some(at) => {
                let end = at + line[at..].find(')').unwrap_or_else(|| panic!("unclosed $( in: {line}"));
                let inner = shell_words(&line[at + "$(ailurus sign ".len()..end], &vars);
                let token = vars.get("TOKEN").cloned().unwrap_or_default();
                (format!("{}{}", &line[..at], &line[end + 1..]), Some((token, inner)))
            }
            None => (line.clone(), None),
        };
        let mut words = shell_words(&line_rest, &vars);
        if words.last().map(String::as_str) == Some("&") {
            words.pop();
        }
        let mut cmd = NatsCmd {
            line: line.trim().to_string(),
            args: Vec::new(),
            headers: Vec::new(),
            flags: BTreeMap::new(),
            sign,
        };
        let mut it = words.into_iter().skip(1);
        while let Some(w) = it.next() {
            let (name, inline) = if let Some(long) = w.strip_prefix("--") {
                match long.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (long.to_string(), None),
                }
            } else if w == "-H" {
                ("header".to_string(), None)
            } else if w == "-S" {
                ("last-for".to_string(), None)
            } else {
                cmd.args.push(w);
                continue;
            };
            let value = if VALUE_FLAGS.contains(&name.as_str()) {
                inline.or_else(|| it.next()).unwrap_or_else(|| panic!("flag --{name} without a value in: {line}"))
            } else {
                inline.unwrap_or_else(|| "true".into())
            };
            if name == "header" {
                let (k, v) = value.split_once(':').unwrap_or_else(|| panic!("header {value:?} is not K:V in: {line}"));
                cmd.headers.push((k.trim().to_string(), v.trim().to_string()));
            } else {
                cmd.flags.insert(name, value);
            }
        }
        out.push(cmd);
    }
    out
}

/// The recipes, expanded with a live stack's token, plus lookups.
struct Doc {
    cmds: Vec<NatsCmd>,
}

impl Doc {
    fn load(token: &str, sha: &str) -> Self {
        let vars = BTreeMap::from([
            ("TOKEN".to_string(), token.to_string()),
            ("SHA".to_string(), sha.to_string()),
            ("NATS_URL".to_string(), "nats://127.0.0.1:4222".to_string()),
        ]);
        Self { cmds: recipes(&vars) }
    }

    /// The one command with this verb and subject whose line contains `needle`.
    fn one(&self, verb: &str, subject: &str, needle: &str) -> &NatsCmd {
        let found: Vec<_> = self
            .cmds
            .iter()
            .filter(|c| c.verb() == verb && c.subject().as_deref() == Some(subject) && c.mentions(needle))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one `nats {verb} {subject}` recipe containing {needle:?}, found {found:#?}"
        );
        found[0]
    }

    /// The one command with this verb whose line contains `needle`.
    fn verb(&self, verb: &str, needle: &str) -> &NatsCmd {
        let found: Vec<_> = self.cmds.iter().filter(|c| c.verb() == verb && c.line.contains(needle)).collect();
        assert_eq!(found.len(), 1, "expected one `nats {verb}` recipe containing {needle:?}, found {found:#?}");
        found[0]
    }
}

/// What a recipe got back: (subject, headers, payload).
type Got = (String, HeaderMap, Bytes);

fn kind(h: &HeaderMap) -> Option<&str> {
    h.get("Ailurus-Kind").map(|v| v.as_str())
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

/// Runs recipe commands with async-nats, the way natscli would.
struct Exec {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Exec {
    fn new(client: &async_nats::Client) -> Self {
        Self { client: client.clone(), js: jetstream::new(client.clone()) }
    }

    /// `nats req`: publish with a fresh inbox; the first reply, or with `--replies=0` every
    /// reply until the timeout (stopping early at the final `done`/`error`).
    async fn req(&self, c: &NatsCmd) -> Vec<Got> {
        let subject = c.subject().unwrap();
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.unwrap();
        self.client.publish_with_reply_and_headers(subject, inbox, c.header_map(), c.body()).await.unwrap();
        let all = c.flags.get("replies").map(String::as_str) == Some("0");
        let limit = c.flags.get("timeout").map_or(Duration::from_secs(5), |t| {
            Duration::from_secs(t.trim_end_matches('s').parse().expect("--timeout in seconds"))
        });
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
            let h = m.headers.clone().unwrap_or_default();
            let fin = matches!(kind(&h), Some("done" | "error"));
            got.push((m.subject.to_string(), h, m.payload));
            if !all || fin {
                break;
            }
        }
        assert!(!got.is_empty(), "no reply to: {}", c.line);
        got
    }

    /// `nats pub`.
    async fn publish(&self, c: &NatsCmd) {
        self.client.publish_with_headers(c.subject().unwrap(), c.header_map(), c.body()).await.unwrap();
        self.client.flush().await.unwrap();
    }

    /// `nats sub` (in the background).
    async fn sub(&self, c: &NatsCmd) -> async_nats::Subscriber {
        let s = self.client.subscribe(c.subject().unwrap()).await.unwrap();
        self.client.flush().await.unwrap();
        s
    }

    /// `nats stream view STREAM [--subject S]`: every message, oldest first.
    async fn stream_view(&self, c: &NatsCmd) -> Vec<Got> {
        let stream = self.js.get_stream(&c.args[2]).await.unwrap();
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: c.flags.get("subject").cloned().unwrap_or_default(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut msgs = consumer.messages().await.unwrap();
        let mut got = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), msgs.next()).await {
            let pending = m.info().map(|i| i.pending).unwrap_or(0);
            got.push((m.subject.to_string(), m.headers.clone().unwrap_or_default(), m.payload.clone()));
            if pending == 0 {
                break;
            }
        }
        got
    }

    /// `nats stream get STREAM --last-for SUBJECT`.
    async fn stream_get(&self, c: &NatsCmd) -> Got {
        let stream = self.js.get_stream(&c.args[2]).await.unwrap();
        let subject = c.subject().unwrap();
        let m = stream.get_last_raw_message_by_subject(&subject).await.unwrap_or_else(|e| panic!("{}: {e}", c.line));
        (m.subject.to_string(), m.headers, m.payload)
    }

    /// `nats kv get BUCKET KEY`.
    async fn kv_get(&self, c: &NatsCmd) -> Bytes {
        let kv = self.js.get_key_value(&c.args[2]).await.unwrap();
        kv.get(&c.args[3]).await.unwrap().unwrap_or_else(|| panic!("no value for: {}", c.line))
    }

    /// `nats kv ls BUCKET`.
    async fn kv_ls(&self, c: &NatsCmd) -> Vec<String> {
        let kv = self.js.get_key_value(&c.args[2]).await.unwrap();
        kv.keys().await.unwrap().filter_map(|k| async move { k.ok() }).collect().await
    }

    /// `nats stream ls`.
    async fn stream_ls(&self) -> Vec<String> {
        self.js.stream_names().filter_map(|n| async move { n.ok() }).collect().await
    }
}

/// Messages a background `nats sub` got, until `stop` says enough or 10 s pass.
async fn collect(sub: &mut async_nats::Subscriber, mut stop: impl FnMut(&[Got]) -> bool) -> Vec<Got> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !stop(&got) {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => got.push((m.subject.to_string(), m.headers.clone().unwrap_or_default(), m.payload)),
            _ => break,
        }
    }
    got
}

fn has_final(got: &[Got]) -> bool {
    got.iter().any(|(_, h, _)| matches!(kind(h), Some("done" | "error")))
}

/// Every subject pattern of `subjects.toml` has at least one recipe that touches it.
#[test]
fn nats_cli_recipes_cover_every_subject_in_subjects_toml() {
    let doc = Doc::load("sk-ail-example", &ailurus::credential::hash("sk-ail-example"));
    let text = std::fs::read_to_string(Path::new(MANIFEST).join("subjects.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let subjects = table["subjects"].as_table().unwrap();
    assert!(subjects.len() >= 13, "subjects.toml shrank?");
    let touched: Vec<String> = doc.cmds.iter().filter_map(NatsCmd::subject).collect();
    for (name, def) in subjects {
        let pattern = def["pattern"].as_str().unwrap();
        let parts: Vec<&str> = pattern.split('.').collect();
        let ok = touched.iter().any(|s| {
            let toks: Vec<&str> = s.split('.').collect();
            toks.len() == parts.len()
                && toks.iter().zip(&parts).all(|(t, p)| {
                    if p.starts_with('{') {
                        !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    } else {
                        t == p
                    }
                })
        });
        assert!(ok, "subjects.toml [{name}] {pattern} has no recipe in examples/nats-cli.md");
    }
    // Every command is one the executor understands.
    for c in &doc.cmds {
        assert!(
            ["req", "pub", "sub", "stream view", "stream get", "stream ls", "kv get", "kv ls"]
                .contains(&c.verb().as_str()),
            "unknown recipe command: {}",
            c.line
        );
    }
}

#[tokio::test]
async fn nats_cli_recipes_requests_answer_in_one_reply_and_stream_to_an_inbox() {
    let live = Live::start().await;
    let doc = Doc::load(&live.token, &live.sha);
    let x = Exec::new(live.client());

    // One answer, signed by `ailurus sign` (the token's id and a one-time proof in headers).
    let c = doc.one("req", "llm.request.claude", "\"t-1\"");
    let signed = c.header_map();
    assert_eq!(signed.get("Ailurus-Token-Id").map(|v| v.as_str()), Some(live.sha.as_str()), "{c:?}");
    assert!(signed.get("Ailurus-Proof").is_some() && signed.get("Ailurus-Token-Sha256").is_none(), "{c:?}");
    let got = x.req(c).await;
    let (_, h, body) = &got[0];
    assert_eq!((kind(h), h.get("Ailurus-Status").map(|v| v.as_str())), (Some("done"), Some("200")), "{body:?}");
    let r = json(body);
    assert_eq!((r["trace_id"].as_str(), r["success"].as_bool()), (Some("t-1"), Some(true)));
    assert!(r["content"].as_str().unwrap().starts_with("Mock answer to \"hello\":"), "{r}");
    for k in ["model", "tokens_input", "tokens_output", "cost", "duration_ms"] {
        assert!(r.get(k).is_some(), "{k} missing in {r}");
    }

    // The same command again: a replay, refused.
    let got = x.req(doc.one("req", "llm.request.claude", "\"t-1\"")).await;
    assert_eq!(kind(&got[0].1), Some("error"), "{:?}", got[0].2);
    assert!(json(&got[0].2)["error"].as_str().unwrap_or("").contains("already used"), "{:?}", got[0].2);

    // The old bare-hash header: refused, saying what to send instead.
    let c = doc.one("req", "llm.request.openai", "\"t-6\"");
    assert!(c.headers.contains(&("Ailurus-Token-Sha256".into(), live.sha.clone())), "{c:?}");
    let got = x.req(c).await;
    assert_eq!(got[0].1.get("Ailurus-Status").map(|v| v.as_str()), Some("401"), "{:?}", got[0].2);
    let error = json(&got[0].2)["error"].as_str().unwrap_or("").to_string();
    assert!(error.contains("no longer accepted") && error.contains("ailurus sign"), "{error}");

    // --replies=0 with Ailurus-Heartbeat: heartbeat, chunks 0..4 in order, done.
    let c = doc.one("req", "llm.request.codex", "\"t-5\"");
    let got = x.req(c).await;
    let kinds: Vec<_> = got.iter().map(|(_, h, _)| kind(h).unwrap_or("?")).collect();
    assert_eq!(kinds.first(), Some(&"heartbeat"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    let chunks: Vec<Value> = got.iter().filter(|(_, h, _)| kind(h) == Some("chunk")).map(|(_, _, b)| json(b)).collect();
    assert_eq!(chunks.iter().map(|c| c["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let text: String = chunks.iter().map(|c| c["delta"].as_str().unwrap()).collect();
    assert_eq!(json(&got.last().unwrap().2)["content"].as_str(), Some(text.as_str()));

    // The audit stream holds the proof, never the token nor its key.
    let view = x.stream_view(doc.verb("stream view", "LLM_REQUESTS")).await;
    let t1 = view.iter().find(|(_, _, b)| json(b)["trace_id"] == "t-1").expect("t-1 in LLM_REQUESTS");
    assert_eq!(t1.1.get("Ailurus-Token-Id").map(|v| v.as_str()), Some(live.sha.as_str()));
    let stored = format!("{:?} {}", t1.1, String::from_utf8_lossy(&t1.2));
    assert!(!stored.contains(&live.token) && !stored.contains(&ailurus::credential::proof_key(&live.token)));
    let names = x.stream_ls().await;
    for s in ["LLM_REQUESTS", "LLM_USAGE", "USER_EVENTS", "CHAT_MESSAGES", "SESSION_STATUS", "QUOTA_COUNTERS"] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
}

#[tokio::test]
async fn nats_cli_recipes_default_subject_streaming_and_cancel() {
    let live = Live::start().await;
    let doc = Doc::load(&live.token, &live.sha);
    let x = Exec::new(live.client());

    // Streaming on llm.response.t-2.
    let mut sub = x.sub(doc.one("sub", "llm.response.t-2", "")).await;
    x.publish(doc.one("pub", "llm.request.gemini", "\"t-2\"")).await;
    let got = collect(&mut sub, has_final).await;
    let kinds: Vec<_> = got.iter().map(|(_, h, _)| kind(h).unwrap_or("?")).collect();
    assert_eq!(kinds.first(), Some(&"heartbeat"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"), "{kinds:?}");
    let first_chunk = got.iter().find(|(_, h, _)| kind(h) == Some("chunk")).unwrap();
    let c = json(&first_chunk.2);
    assert_eq!((c["trace_id"].as_str(), c["seq"].as_u64()), (Some("t-2"), Some(0)));
    assert_eq!(c["delta"].as_str(), Some("Mock answer to \"stream please\":"));

    // Cancel: mock-hang never ends; llm.cancel.t-3 ends it with 499.
    let mut sub = x.sub(doc.one("sub", "llm.response.t-3", "")).await;
    x.publish(doc.one("pub", "llm.request.claude", "\"t-3\"")).await;
    let first = collect(&mut sub, |g| !g.is_empty()).await;
    assert_eq!(first.first().and_then(|(_, h, _)| kind(h)), Some("heartbeat"), "the worker took t-3");
    x.publish(doc.one("pub", "llm.cancel.t-3", "")).await;
    let got = collect(&mut sub, has_final).await;
    let (_, h, body) = got.last().expect("a final reply after the cancel");
    assert_eq!((kind(h), h.get("Ailurus-Status").map(|v| v.as_str())), (Some("error"), Some("499")), "{body:?}");
    assert_eq!(json(body)["success"], false);
}

#[tokio::test]
async fn nats_cli_recipes_events_ledger_and_sync() {
    let live = Live::start().await;
    let doc = Doc::load(&live.token, &live.sha);
    let x = Exec::new(live.client());
    let mut quota = x.sub(doc.one("sub", "user.demo.quota", "")).await;
    let mut auth = x.sub(doc.one("sub", "user.demo.auth", "")).await;
    let mut usage = x.sub(doc.one("sub", "llm.usage.demo", "")).await;
    let mut chat = x.sub(doc.verb("sub", "chat.demo.>")).await;

    // A billed request → a QuotaChangeEvent and a usage record.
    let got = x.req(doc.one("req", "llm.request.claude", "\"t-1\"")).await;
    assert_eq!(kind(&got[0].1), Some("done"));
    let evs = collect(&mut quota, |g| g.iter().any(|(_, _, b)| json(b)["trace_id"] == "t-1")).await;
    let ev = evs.iter().map(|(_, _, b)| json(b)).find(|v| v["trace_id"] == "t-1").expect("quota event for t-1");
    for k in ["user_id", "quota_total", "quota_used", "quota_remain", "last_cost", "timestamp"] {
        assert!(ev.get(k).is_some(), "{k} missing in {ev}");
    }
    assert_eq!(
        ev["quota_total"].as_i64().unwrap() - ev["quota_used"].as_i64().unwrap(),
        ev["quota_remain"].as_i64().unwrap()
    );
    assert!(ev["last_cost"].as_i64().unwrap() > 0, "{ev}");
    let recs = collect(&mut usage, |g| g.iter().any(|(_, _, b)| json(b)["trace_id"] == "t-1")).await;
    assert!(recs.iter().any(|(_, _, b)| json(b)["kind"] == "usage"), "no usage record: {recs:?}");
    let view = x.stream_view(doc.one("stream view", "user.demo.quota", "USER_EVENTS")).await;
    assert!(view.iter().any(|(_, _, b)| json(b)["trace_id"] == "t-1"), "USER_EVENTS lacks the t-1 event");
    let view = x.stream_view(doc.one("stream view", "llm.usage.demo", "LLM_USAGE")).await;
    assert!(view.iter().any(|(_, _, b)| json(b)["trace_id"] == "t-1"));
    let (_, _, last) = x.stream_get(doc.one("stream get", "llm.usage.demo", "LLM_USAGE")).await;
    assert_eq!(json(&last)["user_id"], "demo");

    // A misused token → 403 and a `rejected` auth event for the token's user.
    let got = x.req(doc.one("req", "llm.request.claude", "\"t-4\"")).await;
    assert_eq!((kind(&got[0].1), got[0].1.get("Ailurus-Status").map(|v| v.as_str())), (Some("error"), Some("403")));
    let evs = collect(&mut auth, |g| !g.is_empty()).await;
    let ev = json(&evs.first().expect("an auth event").2);
    assert_eq!((ev["event"].as_str(), ev["user_id"].as_str()), (Some("rejected"), Some("demo")));
    assert!(ev["reason"].as_str().unwrap().contains("mallory"), "{ev}");

    // Presence: published by the client, kept by USER_EVENTS.
    x.publish(doc.one("pub", "user.demo.presence", "online")).await;
    let mut view = x.stream_view(doc.one("stream view", "user.demo.presence", "USER_EVENTS")).await;
    // Workers also mark authenticated users online (`source: gateway`); keep the client's.
    view.retain(|m| json(&m.2)["source"] != "gateway");
    assert_eq!(view.len(), 1, "{view:?}");
    assert_eq!(json(&view[0].2)["status"], "online");

    // Chat sync: what lands on chat.demo.s-1.* is seen by `nats sub 'chat.demo.>'` and kept
    // by CHAT_MESSAGES / SESSION_STATUS.
    let msg = br#"{"role":"user","content":"hello","trace_id":"t-sync"}"#;
    live.client().publish("chat.demo.s-1.msg", Bytes::from_static(msg)).await.unwrap();
    live.client().publish("chat.demo.s-1.status", Bytes::from_static(br#"{"status":"idle"}"#)).await.unwrap();
    let seen = collect(&mut chat, |g| g.len() >= 2).await;
    assert_eq!(
        seen.iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(),
        ["chat.demo.s-1.msg", "chat.demo.s-1.status"]
    );
    let kept = x.stream_view(doc.one("stream view", "chat.demo.s-1.msg", "CHAT_MESSAGES")).await;
    assert_eq!(kept.len(), 1);
    let kept = x.stream_view(doc.one("stream view", "chat.demo.s-1.status", "SESSION_STATUS")).await;
    assert_eq!(json(&kept[0].2)["status"], "idle");
}

#[tokio::test]
async fn nats_cli_recipes_user_api_kv_and_counters() {
    let live = Live::start().await;
    let doc = Doc::load(&live.token, &live.sha);
    let x = Exec::new(live.client());
    let mut quota = x.sub(doc.one("sub", "user.demo.quota", "")).await;
    let got = x.req(doc.one("req", "llm.request.claude", "\"t-1\"")).await;
    let cost = ailurus::pricing::usd_to_quota(json(&got[0].2)["cost"].as_f64().unwrap());
    // The counters settle right after the final reply; the quota event comes after that.
    let settled = collect(&mut quota, |g| g.iter().any(|(_, _, b)| json(b)["trace_id"] == "t-1")).await;
    assert!(!settled.is_empty(), "t-1 never settled");
    // The worker's quota lease goes back half a second after the request: then the counters
    // hold what the ledger charged.
    let store = ailurus::quota::account::QuotaStore::open(live.client().clone()).await.unwrap();
    common::quiet_balance(&store, &ailurus::bus::subjects::Token::new("user_id", "demo").unwrap()).await;

    let got = x.req(doc.one("req", "ailurus.api.user_self", "")).await;
    let (_, h, body) = &got[0];
    assert_eq!(h.get("Ailurus-Status").map(|v| v.as_str()), Some("200"), "{body:?}");
    let v = json(body);
    assert_eq!((v["success"].as_bool(), v["data"]["id"].as_str()), (Some(true), Some("demo")));
    assert_eq!(v["data"]["used_quota"].as_i64(), Some(cost), "{v}");
    assert_eq!(v["data"]["quota"].as_i64(), Some(2_500_000 - cost), "{v}");
    assert_eq!(v["data"]["request_count"].as_i64(), Some(1), "{v}");
    let got = x.req(doc.one("req", "ailurus.api.user_token", "")).await;
    let v = json(&got[0].2);
    let list = v["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert!(!v.to_string().contains(&live.token), "the token leaked: {v}");

    let rec = json(&x.kv_get(doc.verb("kv get", "TOKENS")).await);
    assert_eq!((rec["user_id"].as_str(), rec["status"].as_str()), (Some("demo"), Some("active")));
    let acct = json(&x.kv_get(doc.verb("kv get", "QUOTA")).await);
    assert_eq!(acct["total"].as_i64(), Some(2_500_000));
    assert_eq!(x.kv_ls(doc.verb("kv ls", "TOKENS")).await, std::slice::from_ref(&live.sha));

    let counter = |g: Got| json(&g.2)["val"].as_str().unwrap().parse::<i64>().unwrap();
    assert_eq!(counter(x.stream_get(doc.one("stream get", "quota.used.demo", "")).await), cost);
    assert_eq!(counter(x.stream_get(doc.one("stream get", "quota.requests.demo", "")).await), 1);
    let by_token = doc.one("stream get", &format!("quota.tokenused.{}", live.sha), "");
    assert_eq!(counter(x.stream_get(by_token).await), cost);
}
