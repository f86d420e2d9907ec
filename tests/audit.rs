//! Audit replay, chat sync and presence against a real nats-server.

mod common;

use ailurus::audit::{self, Filter};
use ailurus::bus::codec::Encoding;
use ailurus::bus::headers::ReplyKind;
use ailurus::bus::subjects::Token;
use ailurus::config::Config;
use ailurus::protocol::Platform;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use async_nats::jetstream::stream::DirectGetErrorKind;
use async_nats::HeaderMap;
use common::{request, Stack};
use std::time::{Duration, Instant};

async fn stack() -> (Stack, TokenStore, QuotaStore) {
    stack_with(Config::default()).await
}

/// A server with the streams and one worker on `config`, and the token and quota stores.
async fn stack_with(config: Config) -> (Stack, TokenStore, QuotaStore) {
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    stack.add_worker(config).await;
    let js = async_nats::jetstream::new(stack.client.clone());
    (stack, TokenStore::open(&js).await.unwrap(), QuotaStore::open(stack_client(&js)).await.unwrap())
}

fn stack_client(js: &async_nats::jetstream::Context) -> async_nats::Client {
    js.client()
}

/// Send and drain one request; return (trace, final kind, content).
async fn run(
    stack: &Stack,
    token: &str,
    user: &str,
    model: &str,
    prompt: &str,
    stream: bool,
    session: Option<&str>,
) -> (String, ReplyKind, String) {
    let mut req = request(Platform::Gemini, model, prompt, stream);
    req.user_id = user.into();
    req.session_id = session.map(str::to_string);
    let mut replies = stack.requester().signed_by(token).send(&req, Encoding::Json, HeaderMap::new()).await.unwrap();
    loop {
        let r = tokio::time::timeout(Duration::from_secs(20), replies.next_content()).await.unwrap().unwrap().unwrap();
        if r.kind.is_final() {
            let resp = r.response(Encoding::Json).unwrap();
            return (req.trace_id, r.kind, resp.content);
        }
    }
}

#[tokio::test]
async fn replay_rebuilds_fifty_exchanges_and_filters_work() {
    let (stack, tokens, quota) = stack().await;
    let mut users = Vec::new();
    for u in ["ann", "ben"] {
        quota.topup(&Token::new("user_id", u).unwrap(), 10_000_000).await.unwrap();
        users.push((u, tokens.create(u, "t", None, vec![], None).await.unwrap().0));
    }
    let mut sent = Vec::new();
    for i in 0..50 {
        let (user, token) = &users[i % 2];
        let model = if i % 10 == 9 { "mock-error" } else { "mock-c4" };
        let stream = i % 3 == 0;
        let (trace, kind, content) = run(&stack, token, user, model, &format!("question {i}"), stream, None).await;
        sent.push((trace, kind, content, *user, model));
        if i == 24 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    let js = async_nats::jetstream::new(stack.client.clone());
    // The ledger is written after the reply: wait for all 45 usage records.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all = audit::replay(&js, &Filter::default(), |_, _, _| {}).await.unwrap();
        if all.iter().filter(|e| e.usage.is_some()).count() >= 50 || std::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(all.len(), 50);
    for (ex, (trace, kind, content, user, model)) in all.iter().zip(&sent) {
        assert_eq!(&ex.trace_id, trace);
        assert_eq!(ex.user_id.as_deref(), Some(*user));
        assert_eq!(ex.model.as_deref(), Some(*model));
        assert_eq!(ex.platform, "gemini");
        let resp = ex.response.as_ref().expect("final response kept");
        assert_eq!(resp.success, *kind == ReplyKind::Done);
        assert_eq!(&resp.content, content);
        let usage = ex.usage.as_ref().expect("usage record");
        if resp.success {
            assert_eq!(usage.output_tokens, resp.tokens_output);
            assert!((usage.cost_usd - resp.cost).abs() < 1e-12);
            assert!(usage.quota > 0);
        } else {
            assert_eq!((usage.quota, ex.status), (0, Some(502)));
        }
        assert!(ex.request.get("token").is_none());
    }
    let only_ann =
        audit::replay(&js, &Filter { user: Some("ann".into()), ..Default::default() }, |_, _, _| {}).await.unwrap();
    assert_eq!(only_ann.len(), 25);
    assert!(only_ann.iter().all(|e| e.user_id.as_deref() == Some("ann")));
    let one = audit::replay(&js, &Filter { trace: Some(sent[7].0.clone()), ..Default::default() }, |_, _, _| {})
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].trace_id, sent[7].0);
    // --since: the second half was sent after a pause.
    let half_time = time::OffsetDateTime::parse(&all[25].time, &time::format_description::well_known::Rfc3339).unwrap();
    let later = audit::replay(
        &js,
        &Filter { since: Some(half_time - time::Duration::milliseconds(500)), ..Default::default() },
        |_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(later.len(), 25, "{:?}", later.iter().map(|e| &e.time).collect::<Vec<_>>());
    // The CLI prints JSON lines too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .args(["audit", "replay", "--json", "--user", "ben"])
        .env("NATS_URL", &stack.server.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 25);
}

#[tokio::test]
async fn two_interleaved_sessions_come_back_in_order() {
    let (stack, tokens, quota) = stack().await;
    quota.topup(&Token::new("user_id", "cat").unwrap(), 10_000_000).await.unwrap();
    let (token, _) = tokens.create("cat", "t", None, vec![], None).await.unwrap();
    for i in 0..4 {
        for s in ["s1", "s2"] {
            run(&stack, &token, "cat", "mock-c3", &format!("{s} turn {i}"), i % 2 == 0, Some(s)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let u = Token::new("user_id", "cat").unwrap();
    for s in ["s1", "s2"] {
        let turns = audit::chat_history(&js, &u, &Token::new("session_id", s).unwrap()).await.unwrap();
        assert_eq!(turns.len(), 8, "{s}: {turns:?}");
        for (i, pair) in turns.chunks(2).enumerate() {
            assert_eq!(pair[0].role, "user");
            assert_eq!(pair[0].content, format!("{s} turn {i}"));
            assert_eq!(pair[1].role, "assistant");
            assert!(pair[1].content.contains(&format!("{s} turn {i}")), "{}", pair[1].content);
            assert_eq!(pair[0].trace_id, pair[1].trace_id);
            assert_eq!(pair[1].model, "mock-c3");
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .args(["chat", "history", "--user", "cat", "--session", "s2"])
        .env("NATS_URL", &stack.server.url)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 8);
}

/// A request marks its user online on `user.<id>.presence` with the configured TTL
/// (`worker.presence_ttl_ms`, 90 s by default; 2 s here), and the record vanishes from the
/// stream once the TTL has passed — not before.
#[tokio::test]
async fn presence_is_published_and_expires() {
    assert_eq!(Config::default().worker.presence_ttl_ms, 90_000, "the production TTL");
    let ttl = Duration::from_secs(2);
    let mut config = Config::default();
    config.worker.presence_ttl_ms = ttl.as_millis() as u64;
    let (stack, tokens, quota) = stack_with(config).await;
    quota.topup(&Token::new("user_id", "dan").unwrap(), 10_000_000).await.unwrap();
    let (token, _) = tokens.create("dan", "t", None, vec![], None).await.unwrap();
    let js = async_nats::jetstream::new(stack.client.clone());
    let stream = js.get_stream("USER_EVENTS").await.unwrap();
    let subject = ailurus::bus::subjects::presence(&Token::new("user_id", "dan").unwrap());
    let sent = Instant::now();
    run(&stack, &token, "dan", "mock", "hi", false, None).await;
    // Published (the worker publishes it on the side: poll, bounded).
    let msg = loop {
        match stream.direct_get_last_for_subject(subject.as_str()).await {
            Ok(m) => break m,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound && sent.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no presence record: {e}"),
        }
    };
    let p: ailurus::worker::sync::Presence = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(p.status, "online");
    assert_eq!(msg.headers.get("Nats-TTL").map(|v| v.as_str()), Some("2s"));
    // Gone once the TTL has passed: poll until the stream no longer holds it, bounded.
    let gone = loop {
        match stream.direct_get_last_for_subject(subject.as_str()).await {
            Ok(_) => {
                assert!(sent.elapsed() < ttl + Duration::from_secs(5), "the presence record never expired");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => break sent.elapsed(),
            Err(e) => panic!("reading the presence record: {e}"),
        }
    };
    // It was published after `sent`, so it cannot have expired sooner than the TTL after it.
    assert!(gone >= ttl, "expired after {gone:?}, before its {ttl:?} TTL");
    println!("the presence record with a {ttl:?} TTL was gone {gone:?} after the request was sent");
}

/// The audit trail lasts (issue 17): `LLM_REQUESTS` is a file stream kept 30 days, so the
/// requests and answers of before a nats-server restart replay after it; its retention is
/// the config's (`[audit] retention`, `max_bytes`); and a memory stream of an earlier version
/// is recreated on file by `streams apply`.
#[tokio::test]
async fn the_audit_trail_survives_a_restart_and_keeps_its_configured_retention() {
    use ailurus::nats_server::{free_port, NatsServer, SpawnOptions};
    use ailurus::streams::{self, Outcome};
    use async_nats::jetstream::stream::StorageType;
    let store = tempfile::tempdir().unwrap();
    let opts =
        SpawnOptions { port: free_port().unwrap(), store_dir: Some(store.path().join("nats")), ..Default::default() };
    let mut stack = Stack::with_server(opts.clone()).await;
    // An earlier version's audit stream: in memory, one hour.
    let js = async_nats::jetstream::new(stack.client.clone());
    let mut old = streams::load(None).unwrap().into_iter().find(|d| d.config.name == "LLM_REQUESTS").unwrap();
    old.config.storage = StorageType::Memory;
    old.config.max_age = Duration::from_secs(3600);
    js.create_stream(old.config).await.unwrap();
    let applied = streams::apply(&js, &streams::load(None).unwrap()).await.unwrap();
    assert!(applied.contains(&("LLM_REQUESTS".to_string(), Outcome::Recreated)), "{applied:?}");
    let config = js.get_stream("LLM_REQUESTS").await.unwrap().info().await.unwrap().config.clone();
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.max_age, Duration::from_secs(30 * 86_400), "30 days by default");
    assert_eq!(config.max_bytes, 2 << 30);
    // Applying again changes nothing.
    let again = streams::apply(&js, &streams::load(None).unwrap()).await.unwrap();
    assert!(again.iter().all(|(_, o)| *o == Outcome::Unchanged), "{again:?}");

    stack.add_worker(Config::default()).await;
    let tokens = TokenStore::open(&js).await.unwrap();
    let quota = QuotaStore::open(stack.client.clone()).await.unwrap();
    quota.topup(&Token::new("user_id", "ada").unwrap(), 10_000_000).await.unwrap();
    let token = tokens.create("ada", "t", None, vec![], None).await.unwrap().0;
    let mut sent = Vec::new();
    for i in 0..6 {
        let (trace, kind, content) =
            run(&stack, &token, "ada", "mock", &format!("before restart {i}"), i % 2 == 0, None).await;
        assert_eq!(kind, ReplyKind::Done);
        sent.push((trace, content));
    }
    // Kill the server hard and start it again on the same store.
    stack.server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.server = NatsServer::spawn(opts).expect("restart nats-server");
    let js = async_nats::jetstream::new(stack.client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let found = loop {
        let day = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let found = audit::replay(&js, &Filter { since: Some(day), ..Default::default() }, |_, _, _| {}).await;
        match found {
            Ok(f) if f.len() >= sent.len() => break f,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            other => panic!("the audit trail after the restart: {other:?}"),
        }
    };
    for (trace, content) in &sent {
        let ex = found.iter().find(|e| &e.trace_id == trace).expect("a request of before the restart");
        assert_eq!(ex.response.as_ref().map(|r| r.content.as_str()), Some(content.as_str()), "{trace}");
        assert!(ex.request.get("messages").is_some(), "the request itself is kept: {:?}", ex.request);
    }

    // A short retention from the config: the stream drops what is older.
    let short = Config::from_toml("[audit]\nretention = \"2s\"\nmax_bytes = 1048576\n").unwrap();
    let mut decls = streams::load(None).unwrap();
    streams::with_audit_retention(&mut decls, short.audit.retention_ns().unwrap(), short.audit.max_bytes);
    let applied = streams::apply(&js, &decls).await.unwrap();
    assert!(applied.contains(&("LLM_REQUESTS".to_string(), Outcome::Updated)), "{applied:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = js.get_stream("LLM_REQUESTS").await.unwrap().info().await.unwrap().state.messages;
        if n == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "LLM_REQUESTS still holds {n} messages past a 2 s retention");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The ledger is not the audit trail: it keeps everything.
    let ledger = js.get_stream("LLM_USAGE").await.unwrap().info().await.unwrap().state.messages;
    assert!(ledger >= sent.len() as u64, "LLM_USAGE holds {ledger}");
    for bad in ["[audit]\nretention = \"0s\"\n", "[audit]\nretention = \"soon\"\n", "[audit]\nmax_bytes = 10\n"] {
        let e = Config::from_toml(bad).unwrap_err().to_string();
        assert!(e.contains("audit."), "{bad}: {e}");
    }
}
