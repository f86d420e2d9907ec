//! The deployment profiles in `deploy/nats/`, run for real: nats-server processes started
//! from those very files (ports rewritten to free loopback ones, stores to temp dirs).
//!
//! - `secure_*`: the secure profile's permissions — an end user reaches its own replies,
//!   events and chats and nothing of another user's, nor any stream or KV bucket; workers
//!   and bridges can do their whole job as their own users.
//! - `cluster_*`: the three-node cluster with 3 replicas keeps serving and keeps its data
//!   while one node is killed and restarted.

mod common;

use ailurus::bus::codec::Encoding;
use ailurus::bus::headers::ReplyKind;
use ailurus::bus::ConnectAuth;
use ailurus::client::{ClientError, Requester};
use ailurus::config::Config;
use ailurus::nats_server::{free_port, NatsServer, SpawnOptions};
use ailurus::protocol::{LLMNATSResponse, Platform};
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use ailurus::shutdown::Shutdown;
use async_nats::HeaderMap;
use common::cluster::{cluster_nodes, lead_from, read, rewrite, stream_messages, usage_at_least, Node};
use common::request;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The secure profile's password variables, defined for the test server.
const PASSWORDS: [(&str, &str); 7] = [
    ("AILURUS_ADMIN_PASSWORD", "t-admin"),
    ("AILURUS_AUDITOR_PASSWORD", "t-auditor"),
    ("AILURUS_WORKER_PASSWORD", "t-worker"),
    ("AILURUS_API_PASSWORD", "t-api"),
    ("AILURUS_BRIDGE_PASSWORD", "t-bridge"),
    ("ALICE_PASSWORD", "t-alice"),
    ("BOB_PASSWORD", "t-bob"),
];

fn password(var: &str) -> &'static str {
    PASSWORDS.iter().find(|(v, _)| *v == var).map(|(_, p)| *p).expect("known variable")
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("ailurus-deploy-{tag}-{}", nuid::next()));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client plus the server errors (`-ERR`, e.g. permission violations) it received.
struct Watched {
    client: async_nats::Client,
    errors: mpsc::UnboundedReceiver<String>,
}

impl Watched {
    /// Wait (at most 3 s) for a permission violation naming `op` (`Publish` or
    /// `Subscription`) and `subject`. async-nats reports the server's `-ERR` only through
    /// the connection's event callback; a denied subscription simply never delivers.
    async fn expect_violation(&mut self, op: &str, subject: &str) {
        let want = format!("permissions violation for {op} to \"{subject}\"").to_lowercase();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            match tokio::time::timeout_at(deadline, self.errors.recv()).await {
                Ok(Some(e)) if e.to_lowercase().contains(&want) => return,
                Ok(Some(_)) => continue,
                _ => panic!("no permission violation for {op} to {subject:?}"),
            }
        }
    }

    /// Every server error so far.
    fn drain_errors(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = self.errors.try_recv() {
            out.push(e);
        }
        out
    }
}

async fn connect_watched(url: &str, name: &str, auth: &ConnectAuth) -> Watched {
    let (tx, errors) = mpsc::unbounded_channel();
    let addrs = ailurus::bus::server_addrs(url).expect("urls");
    let opts = ailurus::bus::options(name, auth, None).await.expect("options").event_callback(move |ev| {
        let tx = tx.clone();
        async move {
            if let async_nats::Event::ServerError(e) = ev {
                let _ = tx.send(e.to_string());
            }
        }
    });
    let client = opts.connect(addrs).await.unwrap_or_else(|e| panic!("connect {name}: {e}"));
    Watched { client, errors }
}

fn login(user: &str, var: &str, inbox_prefix: Option<&str>) -> ConnectAuth {
    ConnectAuth {
        user: Some(user.into()),
        password: Some(password(var).into()),
        inbox_prefix: inbox_prefix.map(str::to_string),
        ..Default::default()
    }
}

/// The secure profile, as an operator would run it, with the include inlined, the
/// passwords defined, and ports and store moved out of the way.
fn secure_server(store: &Path) -> NatsServer {
    let mut text: String = PASSWORDS.iter().map(|(v, p)| format!("{v}: \"{p}\"\n")).collect();
    let main = read("deploy/nats/secure/nats-server.conf");
    text += &rewrite(&main, "include ./accounts.conf", &read("deploy/nats/secure/accounts.conf"));
    let text = rewrite(&text, "127.0.0.1:8222", &format!("127.0.0.1:{}", free_port().unwrap()));
    let text = rewrite(&text, "127.0.0.1:9222", &format!("127.0.0.1:{}", free_port().unwrap()));
    // The store is given with -sd (nats-server refuses both a flag and a config value).
    let text = rewrite(&text, "store_dir: \"/var/lib/nats/jetstream\"", "");
    NatsServer::spawn(SpawnOptions {
        config: text,
        store_dir: Some(store.to_path_buf()),
        log_file: Some(store.join("server.log")),
        ..Default::default()
    })
    .expect("secure nats-server starts (run ./deploy/setup.sh)")
}

/// Run a worker in-process until `shutdown`.
fn spawn_worker(client: async_nats::Client, config: Config, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = ailurus::worker::run(client, &config, shutdown).await {
            panic!("worker stopped: {e}");
        }
    })
}

/// Send one seed request; the final reply, or why there was none.
async fn ask(requester: &Requester, req: &ailurus::protocol::LLMNATSRequest) -> Result<LLMNATSResponse, String> {
    let work = async {
        let mut replies = requester.send(req, Encoding::Json, HeaderMap::new()).await.map_err(|e| e.to_string())?;
        while let Some(r) = replies.next_content().await {
            let r = r.map_err(|e: ClientError| e.to_string())?;
            if r.kind.is_final() {
                let resp = r.response(Encoding::Json).map_err(|e| e.to_string())?;
                return if r.kind == ReplyKind::Done && resp.success {
                    Ok(resp)
                } else {
                    Err(format!("status {:?}: {:?}", r.status, resp.error))
                };
            }
        }
        Err("replies ended without a final one".into())
    };
    tokio::time::timeout(Duration::from_secs(20), work).await.unwrap_or_else(|_| Err("HUNG: no outcome in 20 s".into()))
}

/// Retry `ask` until it succeeds (the worker may still be subscribing), at most `limit`.
async fn ask_until_ok(
    requester: &Requester,
    make: impl Fn() -> ailurus::protocol::LLMNATSRequest,
    limit: Duration,
) -> LLMNATSResponse {
    let deadline = Instant::now() + limit;
    loop {
        match ask(requester, &make()).await {
            Ok(r) => return r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no answer within {limit:?}: {e}"),
        }
    }
}

/// Run the `ailurus` binary with `env`, at most 30 s; its stdout.
fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ailurus"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for k in ["NATS_USER", "NATS_PASSWORD", "NATS_CREDS", "NATS_INBOX_PREFIX", "AILURUS_TOKEN", "AILURUS_CONFIG"] {
        cmd.env_remove(k);
    }
    cmd.env("AILURUS_LOG", "warn").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(_status) = child.try_wait().map_err(|e| e.to_string())? {
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            return if out.status.success() { Ok(stdout) } else { Err(format!("{}: {stderr}", out.status)) };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("ailurus {args:?} did not finish in 30 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_profile_isolates_end_users_and_lets_each_role_work() {
    tokio::time::timeout(Duration::from_secs(120), secure_profile()).await.expect("secure profile test timed out");
}

async fn secure_profile() {
    let store = TempDir::new("secure");
    let server = secure_server(&store.0);
    let url = server.url.clone();

    // Anonymous connections are refused.
    assert!(ailurus::bus::connect_with(&url, "anon", &ConnectAuth::default()).await.is_err(), "anonymous login");
    assert!(
        ailurus::bus::connect_with(&url, "alice", &login("alice", "BOB_PASSWORD", None)).await.is_err(),
        "alice with bob's password"
    );

    // Admin: streams, a token and quota per user.
    let admin = connect_watched(&url, "admin", &login("admin", "AILURUS_ADMIN_PASSWORD", None)).await;
    let js = async_nats::jetstream::new(admin.client.clone());
    ailurus::streams::apply(&js, &ailurus::streams::load(None).unwrap()).await.expect("admin applies streams");
    let tokens = TokenStore::open(&js).await.expect("TOKENS");
    let quota = QuotaStore::open(admin.client.clone()).await.expect("QUOTA");
    let (alice_token, _) = tokens.create("alice", "t", None, Vec::new(), None).await.unwrap();
    let (bob_token, _) = tokens.create("bob", "t", None, Vec::new(), None).await.unwrap();
    for u in ["alice", "bob"] {
        quota.topup(&ailurus::bus::subjects::Token::new("user_id", u).unwrap(), 5_000_000).await.unwrap();
    }

    // Worker, as the worker user, in token mode (KV watch, counters, ledger, events),
    // answering LLM requests only; the management API's worker as the api user.
    let mut worker = connect_watched(&url, "worker", &login("worker", "AILURUS_WORKER_PASSWORD", None)).await;
    let shutdown = Shutdown::new();
    let mut requests_only = Config::default();
    requests_only.worker.serve = ailurus::config::Serve::Requests;
    let worker_task = spawn_worker(worker.client.clone(), requests_only, shutdown.clone());
    let mut api_worker = connect_watched(&url, "api", &login("api", "AILURUS_API_PASSWORD", None)).await;
    let mut api_only = Config::default();
    api_only.worker.serve = ailurus::config::Serve::Api;
    let api_task = spawn_worker(api_worker.client.clone(), api_only, shutdown.clone());

    // Bridge, as the bridge user.
    let bridge = connect_watched(&url, "bridge", &login("bridge", "AILURUS_BRIDGE_PASSWORD", None)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bridge_addr = listener.local_addr().unwrap();
    let bridge_task = {
        let (c, s) = (bridge.client.clone(), shutdown.clone());
        tokio::spawn(async move { ailurus::bridge::serve(listener, c, Default::default(), s).await })
    };

    let mut alice = connect_watched(&url, "alice", &login("alice", "ALICE_PASSWORD", Some("_INBOX.u.alice"))).await;
    let mut bob = connect_watched(&url, "bob", &login("bob", "BOB_PASSWORD", Some("_INBOX.u.bob"))).await;

    // --- The positive path: alice asks over NATS with her own inbox and sees her events.
    let mut alice_quota = alice.client.subscribe("user.alice.quota").await.unwrap();
    let mut alice_chat = alice.client.subscribe("chat.alice.>").await.unwrap();
    alice.client.flush().await.unwrap();
    let alice_requester = Requester::new(alice.client.clone()).signed_by(&alice_token);
    let alice_req = || {
        let mut r = request(Platform::Claude, "mock", "hello from alice", false);
        r.user_id = "alice".into();
        r.session_id = Some("s1".into());
        r
    };
    let resp = ask_until_ok(&alice_requester, alice_req, Duration::from_secs(15)).await;
    assert!(resp.content.contains("hello from alice"), "{resp:?}");
    let ev = tokio::time::timeout(Duration::from_secs(5), alice_quota.next()).await.expect("quota event").unwrap();
    let ev: ailurus::protocol::QuotaChangeEvent = serde_json::from_slice(&ev.payload).unwrap();
    assert_eq!(ev.user_id, "alice");
    let chat = tokio::time::timeout(Duration::from_secs(5), alice_chat.next()).await.expect("chat sync").unwrap();
    assert!(chat.subject.starts_with("chat.alice.s1."), "{}", chat.subject);

    // The same through the CLI: NATS_USER / NATS_PASSWORD / NATS_INBOX_PREFIX.
    let out = run_cli(
        &["req", "claude", "hello via cli", "--user", "alice"],
        &[
            ("NATS_URL", url.as_str()),
            ("NATS_USER", "alice"),
            ("NATS_PASSWORD", password("ALICE_PASSWORD")),
            ("NATS_INBOX_PREFIX", "_INBOX.u.alice"),
            ("AILURUS_TOKEN", alice_token.as_str()),
        ],
    )
    .expect("ailurus req as alice");
    assert!(out.contains("hello via cli"), "{out}");

    // And through the bridge, which runs as the bridge user.
    let http = reqwest::Client::new()
        .post(format!("http://{bridge_addr}/v1/chat/completions"))
        .bearer_auth(&bob_token)
        .header("content-type", "application/json")
        .body(r#"{"model":"mock","messages":[{"role":"user","content":"hello via bridge"}]}"#)
        .send()
        .await
        .expect("bridge answers");
    let status = http.status();
    let body = http.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello via bridge"), "{body}");

    // --- The auditor reads LLM_REQUESTS; replayed by an end user's connection (alice, who
    // may publish requests), as is, with another trace id, another body, on another subject,
    // nothing is served and no balance moves.
    let mut auditor =
        connect_watched(&url, "auditor", &login("auditor", "AILURUS_AUDITOR_PASSWORD", Some("_INBOX.audit"))).await;
    let mut audit_js = async_nats::jetstream::new(auditor.client.clone());
    audit_js.set_timeout(Duration::from_millis(2000));
    let stored = {
        let stream = audit_js.get_stream("LLM_REQUESTS").await.expect("the auditor reads LLM_REQUESTS");
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .unwrap_or_else(|e| panic!("an ordered consumer: {e}: {:?}", auditor.drain_errors()));
        let mut msgs = consumer.messages().await.expect("messages");
        let mut stored = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(700), msgs.next()).await {
            stored.push((m.subject.to_string(), m.headers.clone().unwrap_or_default(), m.payload.clone()));
        }
        // The requests that were answered (their outcome is on `llm.response.<trace>`). One no
        // worker took (sent while none listened) was never claimed: within its 60 s a reader
        // could have it served once, billed to its signer as sent (RELIABILITY.md, residual).
        let answered: Vec<String> =
            stored.iter().filter_map(|(s, _, _)| s.strip_prefix("llm.response.").map(str::to_string)).collect();
        let trace_of = |h: &HeaderMap, body: &[u8]| {
            h.get("Ailurus-Trace").map(|v| v.as_str().to_string()).or_else(|| {
                serde_json::from_slice::<serde_json::Value>(body).ok()?.get("trace_id")?.as_str().map(str::to_string)
            })
        };
        stored
            .into_iter()
            .filter(|(s, h, b)| s.starts_with("llm.request.") && trace_of(h, b).is_some_and(|t| answered.contains(&t)))
            .collect::<Vec<_>>()
    };
    assert!(stored.len() >= 2, "answered requests are in the audit stream ({})", stored.len());
    assert!(audit_js.get_key_value("TOKENS").await.is_err(), "the auditor opens TOKENS");
    let users = [
        ailurus::bus::subjects::Token::new("user_id", "alice").unwrap(),
        ailurus::bus::subjects::Token::new("user_id", "bob").unwrap(),
    ];
    let mut before = Vec::new();
    for u in &users {
        let b = quota.balance(u).await.unwrap();
        before.push((b.used, b.request_count));
    }
    let replayer = Requester::new(alice.client.clone());
    let mut attempts = 0;
    for (subject, h, body) in &stored {
        let mut variants = vec![(subject.clone(), h.clone(), body.clone())];
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) {
            v["trace_id"] = serde_json::Value::String(ailurus::bus::subjects::Token::random().to_string());
            variants.push((subject.clone(), h.clone(), serde_json::to_vec(&v).unwrap().into()));
            let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
            v["messages"][0]["content"] = serde_json::Value::String("on someone else's quota".into());
            variants.push((subject.clone(), h.clone(), serde_json::to_vec(&v).unwrap().into()));
        }
        let other = if subject.ends_with("codex") { "llm.request.claude" } else { "llm.request.codex" };
        variants.push((other.to_string(), h.clone(), body.clone()));
        for (subject, h, body) in variants {
            let work = async {
                let mut replies = replayer.send_raw(subject.clone(), h, body, None).await.expect("publish");
                loop {
                    let r = replies.next_content().await.expect("a final reply").expect("a reply");
                    if r.kind.is_final() {
                        return r;
                    }
                }
            };
            let r = tokio::time::timeout(Duration::from_secs(15), work).await.expect("an answer in time");
            assert_eq!(r.kind, ReplyKind::Error, "a replay on {subject} was served");
            assert!(matches!(r.status, Some(400..=499)), "{:?}", r.status);
            attempts += 1;
        }
    }
    assert!(attempts >= 8, "{attempts}");
    for (u, want) in users.iter().zip(&before) {
        let b = quota.balance(u).await.unwrap();
        assert_eq!((b.used, b.request_count), *want, "{u}'s balance moved");
    }

    // --- Isolation: every attempt on bob's subjects or the streams is a permission error.
    let mut spies = Vec::new();
    for subject in ["_INBOX.u.bob.>", "user.bob.quota", "user.bob.>", "chat.bob.>", "llm.response.*", "llm.request.*"] {
        spies.push(alice.client.subscribe(subject.to_string()).await.unwrap());
        alice.client.flush().await.unwrap();
        alice.expect_violation("Subscription", subject).await;
    }
    for subject in ["$KV.TOKENS.>", "$JS.API.>"] {
        spies.push(alice.client.subscribe(subject.to_string()).await.unwrap());
        alice.client.flush().await.unwrap();
        alice.expect_violation("Subscription", subject).await;
    }
    for subject in ["user.bob.presence", "llm.usage.alice", "chat.bob.s1.msg", "quota.used.alice", "$KV.QUOTA.alice"] {
        alice.client.publish(subject.to_string(), "{}".into()).await.unwrap();
        alice.client.flush().await.unwrap();
        alice.expect_violation("Publish", subject).await;
    }
    // A denied JetStream call gets no answer at all, so bound each one.
    let mut alice_js = async_nats::jetstream::new(alice.client.clone());
    alice_js.set_timeout(Duration::from_millis(1000));
    assert!(alice_js.get_stream("LLM_USAGE").await.is_err(), "alice reads LLM_USAGE");
    alice.expect_violation("Publish", "$JS.API.STREAM.INFO.LLM_USAGE").await;
    assert!(alice_js.get_key_value("TOKENS").await.is_err(), "alice opens TOKENS");
    alice.expect_violation("Publish", "$JS.API.STREAM.INFO.KV_TOKENS").await;
    let direct = "$JS.API.DIRECT.GET.KV_QUOTA.$KV.QUOTA.bob".to_string();
    let got = tokio::time::timeout(Duration::from_secs(1), alice.client.request(direct.clone(), "".into())).await;
    assert!(!matches!(got, Ok(Ok(_))), "alice direct-gets bob's quota");
    alice.expect_violation("Publish", &direct).await;

    // Bob is served while alice's denied subscriptions stay silent.
    let mut bob_quota = bob.client.subscribe("user.bob.quota").await.unwrap();
    bob.client.flush().await.unwrap();
    let bob_requester = Requester::new(bob.client.clone()).signed_by(&bob_token);
    let bob_req = || {
        let mut r = request(Platform::Codex, "mock", "bob's secret prompt", false);
        r.user_id = "bob".into();
        r.session_id = Some("s1".into());
        r
    };
    let resp = ask_until_ok(&bob_requester, bob_req, Duration::from_secs(10)).await;
    assert!(resp.content.contains("bob's secret prompt"));
    tokio::time::timeout(Duration::from_secs(5), bob_quota.next()).await.expect("bob's quota event").unwrap();
    for spy in &mut spies {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), spy.next()).await {
            panic!("alice received {} ({} bytes)", m.subject, m.payload.len());
        }
    }

    // Alice cannot impersonate bob with his user_id: the worker bills the token's owner.
    let mut spoof = request(Platform::Claude, "mock", "spoof", false);
    spoof.user_id = "bob".into();
    let err = ask(&alice_requester, &spoof).await.expect_err("alice's token, bob's user_id");
    assert!(err.contains("403") || err.contains("401"), "{err}");

    // Nor make the worker write its reply into bob's events: a reply subject inside
    // Ailurus's own subjects is dropped, not answered.
    let mut admin_view = admin.client.subscribe("user.bob.>").await.unwrap();
    admin.client.flush().await.unwrap();
    let mut h = HeaderMap::new();
    h.insert("Content-Type", "application/json");
    let body = serde_json::to_vec(&alice_req()).unwrap();
    alice.client.publish_with_reply_and_headers("llm.request.claude", "user.bob.quota", h, body.into()).await.unwrap();
    alice.client.flush().await.unwrap();
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1500), admin_view.next()).await {
        panic!("the worker wrote on {} for alice", m.subject);
    }

    // The management API works through the bridge: the api worker writes what request
    // workers may not (a token of alice's own; a root setting alice's quota).
    let users = ailurus::quota::users::UserStore::open(&js).await.expect("USERS");
    let root = users.create("root", ailurus::quota::users::role::ROOT, "").await.unwrap();
    let root_access = users.new_access_token("root").await.unwrap();
    let alice_id = users.create("alice", ailurus::quota::users::role::COMMON, "").await.unwrap().id;
    let api = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("http://{bridge_addr}{path}"))
            .header("content-type", "application/json")
    };
    let made = api(reqwest::Method::POST, "/api/token/")
        .bearer_auth(&alice_token)
        .body(r#"{"name":"from-the-api"}"#)
        .send()
        .await
        .unwrap();
    let made: serde_json::Value = serde_json::from_str(&made.text().await.unwrap()).unwrap();
    assert_eq!(made["success"], true, "{made}");
    assert!(tokens.list().await.unwrap().iter().any(|(_, r)| r.name == "from-the-api"));
    let set = api(reqwest::Method::PUT, "/api/user/")
        .header("Authorization", &root_access)
        .header("New-Api-User", root.id.to_string())
        .body(serde_json::json!({"id": alice_id, "quota": 7_000_000}).to_string())
        .send()
        .await
        .unwrap();
    let set: serde_json::Value = serde_json::from_str(&set.text().await.unwrap()).unwrap();
    assert_eq!(set["success"], true, "{set}");

    // The roles did their whole job without a single permission error.
    let worker_errors = worker.drain_errors();
    assert!(worker_errors.is_empty(), "worker: {worker_errors:?}");
    let api_errors = api_worker.drain_errors();
    assert!(api_errors.is_empty(), "api worker: {api_errors:?}");
    let mut b = bridge;
    let bridge_errors = b.drain_errors();
    assert!(bridge_errors.is_empty(), "bridge: {bridge_errors:?}");
    let bob_errors = bob.drain_errors();
    assert!(bob_errors.is_empty(), "bob: {bob_errors:?}");

    // The ledger holds both users' requests (read by the admin).
    let mut usage = js.get_stream("LLM_USAGE").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while usage.info().await.unwrap().state.messages < 2 + 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(usage.info().await.unwrap().state.messages >= 6, "2 top-ups and 4 requests in LLM_USAGE");

    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(10), worker_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), api_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), bridge_task).await;
    drop(server);
}

/// What the request loop saw in one phase.
#[derive(Debug, Default)]
struct Phase {
    answered: usize,
    errors: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_serving_and_keeps_data_through_a_node_restart() {
    tokio::time::timeout(Duration::from_secs(240), cluster()).await.expect("cluster test timed out");
}

async fn cluster() {
    // The worker's own complaints (e.g. a settle that failed) go to the test output.
    let _ = tracing_subscriber::fmt().with_env_filter("ailurus=warn").with_test_writer().try_init();
    let root = TempDir::new("cluster");
    let mut nodes = cluster_nodes(&root.0);
    for n in &mut nodes {
        n.start();
    }
    let urls = nodes.iter().map(Node::url).collect::<Vec<_>>().join(",");

    // One connection string with all three nodes.
    let admin =
        ailurus::bus::connect_with(&urls, "admin", &ConnectAuth::default()).await.expect("connect to the cluster");
    let js = async_nats::jetstream::new(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.query_account().await.is_err() {
        assert!(Instant::now() < deadline, "JetStream cluster not ready in 30 s (logs in {})", root.0.display());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // `ailurus streams apply --replicas 3` through the comma-separated NATS_URL; retried
    // while the cluster still elects its leaders, then idempotent.
    let apply = || run_cli(&["streams", "apply", "--replicas", "3"], &[("NATS_URL", urls.as_str())]);
    let deadline = Instant::now() + Duration::from_secs(40);
    let first = loop {
        match apply() {
            Ok(out) => break out,
            Err(e) if Instant::now() < deadline => {
                eprintln!("streams apply: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("streams apply --replicas 3: {e}"),
        }
    };
    eprintln!("{first}");
    let again = apply().expect("second apply");
    assert_eq!(again.lines().count(), ailurus::streams::EMBEDDED.len(), "{again}");
    assert!(again.lines().all(|l| l.trim_end().ends_with("unchanged")), "second apply changed something:\n{again}");
    for decl in ailurus::streams::load(None).unwrap() {
        let info = js.get_stream(&decl.config.name).await.unwrap().info().await.unwrap().clone();
        assert_eq!(info.config.num_replicas, 3, "{}", decl.config.name);
        assert_eq!(info.cluster.map(|c| c.replicas.len()), Some(2), "{} has 2 other replicas", decl.config.name);
    }

    // A billed user, so every answer writes counters and a ledger record.
    let tokens = TokenStore::open(&js).await.unwrap();
    let quota = QuotaStore::open(admin.clone()).await.unwrap();
    let carol = ailurus::bus::subjects::Token::new("user_id", "carol").unwrap();
    let (token, _) = tokens.create("carol", "t", None, Vec::new(), None).await.unwrap();
    quota.topup(&carol, 50_000_000).await.unwrap();

    let worker_client = ailurus::bus::connect_with(&urls, "worker", &ConnectAuth::default()).await.unwrap();
    let shutdown = Shutdown::new();
    let worker = spawn_worker(worker_client.clone(), Config::default(), shutdown.clone());
    let requester =
        Requester::new(ailurus::bus::connect_with(&urls, "requester", &ConnectAuth::default()).await.unwrap())
            .signed_by(&token);
    let make = || {
        let mut r = request(Platform::Claude, "mock", "cluster hello", false);
        r.user_id = "carol".into();
        r
    };
    ask_until_ok(&requester, make, Duration::from_secs(15)).await;

    // The victim: the worker's node, made leader of every stream.
    let victim_name = worker_client.server_info().server_name;
    let victim = nodes.iter().position(|n| n.name == victim_name).expect("the worker's node is one of ours");
    lead_from(&admin, &js, &victim_name).await;

    // One loop of requests: 3 s on three nodes, the victim killed for 15 s (the elections
    // after the kill took 4-8 s here), then 8 s after its restart. Every request ends in an answer or a prompt, clean error.
    let mut phases = [Phase::default(), Phase::default(), Phase::default()];
    let (mut streak_start, mut longest_blip): (Option<Instant>, Duration) = (None, Duration::ZERO);
    let mut tail_errors = 0;
    let started = Instant::now();
    let mut phase = 0;
    loop {
        let t = started.elapsed();
        if phase == 0 && t >= Duration::from_secs(3) {
            eprintln!("killing {victim_name}: the worker's node and every stream's leader");
            nodes[victim].kill();
            phase = 1;
        } else if phase == 1 && t >= Duration::from_secs(18) {
            eprintln!("restarting {victim_name}");
            nodes[victim].start();
            phase = 2;
        } else if phase == 2 && t >= Duration::from_secs(26) {
            break;
        }
        let res = ask(&requester, &make()).await;
        match res {
            Ok(_) => {
                phases[phase].answered += 1;
                if let Some(s) = streak_start.take() {
                    longest_blip = longest_blip.max(s.elapsed());
                }
                tail_errors = 0;
            }
            Err(e) => {
                assert!(!e.starts_with("HUNG"), "a request hung: {e}");
                eprintln!("phase {phase}: clean error: {e}");
                phases[phase].errors += 1;
                streak_start.get_or_insert_with(Instant::now);
                tail_errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!("3 nodes / 2 nodes / restarted: {phases:?}; longest run of errors {longest_blip:?}");
    assert!(phases.iter().all(|p| p.answered > 0), "a phase without answers: {phases:?}");
    assert!(longest_blip < Duration::from_secs(14), "errors for {longest_blip:?}: more than a blip");
    assert_eq!(tail_errors, 0, "still failing at the end: {phases:?}");

    // Nothing billed was lost: the top-up and every answered request are in the ledger
    // (settling waits out the elections), and the KV values are intact.
    let answered: usize = phases.iter().map(|p| p.answered).sum::<usize>() + 1;
    let want = 1 + answered as u64;
    let have = usage_at_least(&js, want, Duration::from_secs(45)).await;
    assert!(have >= want, "LLM_USAGE holds {have} records, want the top-up + {answered} answered requests");
    let bal = common::quiet_balance(&quota, &carol).await;
    assert_eq!(bal.total, 50_000_000);
    assert!(bal.used > 0 && bal.request_count > 0, "{bal:?}");

    // The restarted node has caught up on every file stream (the ledger, the buckets, the
    // counters, chats, events, the audit trail): all replicas current again. Memory streams
    // (SESSION_STATUS: a day of statuses) restart empty on that node; their
    // replica there was seen still behind 30 s after the restart, so they need a leader only.
    let deadline = Instant::now() + Duration::from_secs(30);
    for decl in ailurus::streams::load(None).unwrap() {
        let memory = decl.config.storage == async_nats::jetstream::stream::StorageType::Memory;
        loop {
            // The JetStream API itself may time out while leaders move; that is "not yet".
            let cluster = match js.get_stream(&decl.config.name).await {
                Ok(mut s) => s.info().await.ok().and_then(|i| i.cluster.clone()),
                Err(_) => None,
            };
            let current = cluster.as_ref().is_some_and(|c| {
                c.leader.is_some()
                    && c.replicas.len() == 2
                    && (memory || c.replicas.iter().all(|p| p.current && !p.offline))
            });
            if current {
                break;
            }
            assert!(Instant::now() < deadline, "{} replicas not current: {cluster:?}", decl.config.name);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let lone = ailurus::bus::connect_with(&nodes[victim].url(), "lone", &ConnectAuth::default()).await.unwrap();
    let lone_js = async_nats::jetstream::new(lone.clone());
    let lone_tokens = TokenStore::open(&lone_js).await.unwrap();
    let rec = lone_tokens
        .lookup(&ailurus::credential::hash(&token))
        .await
        .expect("the restarted node answers")
        .expect("token record on the restarted node");
    assert_eq!(rec.user_id, "carol");
    let lone_quota = QuotaStore::open(lone).await.unwrap();
    assert_eq!(lone_quota.account(&carol).await.unwrap().map(|a| a.total), Some(50_000_000));
    assert!(stream_messages(&lone_js, "LLM_USAGE").await >= want);

    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    for n in &mut nodes {
        n.kill();
    }
}
