//! Live configuration (issue 17): channels, prices and group ratios in KV buckets, followed by
//! every worker without a restart; the bucket wins over the config file; sealed API keys that
//! never reach a stream; every change an event in `CONFIG_EVENTS`; fail-closed when the
//! bucket cannot be proven current; and the propagation time of an edit to two workers
//! (p50 / p99 over 100 edits, printed: `cargo test --test live_config -- --nocapture`).

mod common;

use ailurus::bus::codec::Encoding;
use ailurus::bus::headers::ReplyKind;
use ailurus::channel::{ChannelConfig, Secret};
use ailurus::config::Config;
use ailurus::live::store::{ConfigEvent, KeyChange, LiveStore};
use ailurus::protocol::{LLMNATSResponse, Platform};
use ailurus::router::Router;
use ailurus::seal::SealKey;
use async_nats::HeaderMap;
use common::upstream::{Answer, Api, Script, Upstream};
use common::{request, Stack};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for anything here.
const WAIT: Duration = Duration::from_secs(15);

/// A server with the streams, `workers` in-process workers (their routers kept) and a store
/// of the live configuration, all with one secret key.
struct Setup {
    stack: Stack,
    routers: Vec<Arc<Router>>,
    store: LiveStore,
    cfg: Config,
    _dir: tempfile::TempDir,
}

/// [`Setup`]: in open mode with no built-in mock and `file` (config-file text, e.g.
/// channels) when given (routing is what is tested), else in token mode with the defaults.
async fn setup(file: Option<&str>, workers: usize) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, key_file) = SealKey::load_or_create(dir.path()).expect("secret key");
    let mut cfg: Config = match file {
        Some(f) => {
            toml::from_str(&format!("[auth]\nmode = \"open\"\n[routing]\nbuiltin_mock = false\n{f}")).expect("config")
        }
        None => Config::default(),
    };
    cfg.live.secret_key_file = Some(key_file);
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    let mut routers = Vec::new();
    for _ in 0..workers {
        let r = Arc::new(Router::new(&cfg.routing, &cfg.channels).expect("router"));
        stack.add_routed_worker(cfg.clone(), r.clone()).await;
        routers.push(r);
    }
    let js = async_nats::jetstream::new(stack.client.clone());
    let store = LiveStore::open(js, Some(key), "test:admin").await.expect("live store");
    Setup { stack, routers, store, cfg, _dir: dir }
}

/// A config file with one mock channel `filech` serving `file-*`.
const FILE_CHANNEL: &str = "[[channels]]\nname = \"filech\"\nkind = \"mock\"\nmodels = [\"file-*\"]\n";

/// A channel named `name` of `kind` serving `models`.
fn channel(name: &str, kind: &str, base_url: &str, models: &[&str]) -> ChannelConfig {
    let mut c: ChannelConfig = toml::from_str(&format!("name = {name:?}\nkind = {kind:?}\n")).expect("channel");
    c.base_url = base_url.into();
    c.models = models.iter().map(|m| m.to_string()).collect();
    c
}

/// One seed request for `model`: (final kind, status, response).
async fn ask(stack: &Stack, model: &str) -> (ReplyKind, Option<u16>, LLMNATSResponse) {
    let req = request(Platform::Openai, model, "hello live", false);
    let mut replies = stack.requester().send(&req, Encoding::Json, HeaderMap::new()).await.expect("send");
    let r = tokio::time::timeout(WAIT, replies.next_content()).await.expect("in time").expect("final").expect("reply");
    (r.kind, r.status, r.response(Encoding::Json).expect("response"))
}

/// Wait until every router satisfies `cond`; the time it took.
async fn until(routers: &[Arc<Router>], what: &str, cond: impl Fn(&Router) -> bool) -> Duration {
    let t = Instant::now();
    while !routers.iter().all(|r| cond(r)) {
        assert!(t.elapsed() < WAIT, "{what}: not on every worker after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t.elapsed()
}

/// The channel `name` on a router, if it has it.
fn find(r: &Router, name: &str) -> Option<ChannelConfig> {
    r.channels().iter().find(|c| c.config.name == name).map(|c| c.config.clone())
}

/// Every event in `CONFIG_EVENTS`, in order.
async fn events(stack: &Stack) -> Vec<ConfigEvent> {
    let js = async_nats::jetstream::new(stack.client.clone());
    let stream = js.get_stream("CONFIG_EVENTS").await.expect("CONFIG_EVENTS");
    let last = stream.get_info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(serde_json::from_slice(&m.payload).expect("a config event"));
        }
    }
    out
}

/// Every stored message of every stream (payload and headers) that contains `needle`.
async fn streams_holding(stack: &Stack, needle: &str) -> Vec<String> {
    let js = async_nats::jetstream::new(stack.client.clone());
    let names: Vec<String> = js.stream_names().filter_map(|n| async { n.ok() }).collect().await;
    let mut found = Vec::new();
    for name in names {
        let stream = js.get_stream(&name).await.expect("stream");
        let state = stream.get_info().await.expect("info").state;
        for seq in state.first_sequence..=state.last_sequence {
            let Ok(m) = stream.get_raw_message(seq).await else { continue };
            let text = format!("{} {:?}", String::from_utf8_lossy(&m.payload), m.headers);
            if text.contains(needle) {
                found.push(format!("{name} #{seq} ({})", m.subject));
            }
        }
    }
    found
}

#[tokio::test]
async fn a_live_channel_reaches_both_workers_follows_each_change_and_its_key_stays_sealed() {
    let Setup { stack, routers, store, .. } = setup(Some(""), 2).await;
    let up = Upstream::with(Script { answer: Answer::text(&["from the live channel"]), ..Default::default() }).await;
    let secret = "sk-live-secret-0123456789abcdefXYZ";

    let ch = channel("live-up", "openai", &up.base_url(Api::OpenAi), &["live-*"]);
    let rec = store.save_channel("create", None, ch, KeyChange::Set(Secret::new(secret))).await.expect("create");
    assert_eq!(rec.view()["key"], "sk-…fXYZ", "shown masked");
    until(&routers, "the new channel", |r| find(r, "live-up").is_some()).await;
    let (kind, _, resp) = ask(&stack, "live-model").await;
    assert_eq!((kind, resp.content.as_str()), (ReplyKind::Done, "from the live channel"), "{resp:?}");
    let sent = up.requests();
    assert_eq!(sent.last().and_then(|r| r.header("authorization")), Some(format!("Bearer {secret}").as_str()));

    // (change, whether the model is served after it)
    let enabled = |on: bool| move |r: &Router| find(r, "live-up").is_some_and(|c| c.enabled == on);
    let before = store.channel("live-up").await.expect("read").expect("stored");
    let mut off = before.1.channel.clone();
    off.enabled = false;
    store.save_channel("disable", Some(&before), off, KeyChange::Keep).await.expect("disable");
    until(&routers, "disabled", enabled(false)).await;
    let (kind, status, _) = ask(&stack, "live-model").await;
    assert_eq!((kind, status), (ReplyKind::Error, Some(404)));
    let before = store.channel("live-up").await.expect("read").expect("stored");
    let mut on = before.1.channel.clone();
    on.enabled = true;
    on.weight = 3;
    store.save_channel("enable", Some(&before), on, KeyChange::Keep).await.expect("enable");
    until(&routers, "enabled again", enabled(true)).await;
    assert_eq!(ask(&stack, "live-model").await.0, ReplyKind::Done, "the sealed key was kept");
    // A stale revision loses: two admins editing at once do not overwrite each other.
    let stale = store.save_channel("update", Some(&before), before.1.channel.clone(), KeyChange::Keep).await;
    assert!(stale.expect_err("stale revision").contains("changed meanwhile"));
    store.delete_channel("live-up").await.expect("delete");
    until(&routers, "deleted", |r| find(r, "live-up").is_none()).await;
    assert_eq!(ask(&stack, "live-model").await.1, Some(404));

    let evs = events(&stack).await;
    let ops: Vec<(&str, &str, bool)> = evs.iter().map(|e| (e.op.as_str(), e.actor.as_str(), e.key_changed)).collect();
    assert_eq!(
        ops,
        [
            ("create", "test:admin", true),
            ("disable", "test:admin", false),
            ("enable", "test:admin", false),
            ("delete", "test:admin", false)
        ]
    );
    assert_eq!(
        (evs[1].before.as_ref().map(|b| &b["enabled"]), evs[1].after.as_ref().map(|a| &a["enabled"])),
        (Some(&serde_json::json!(true)), Some(&serde_json::json!(false)))
    );
    assert!(evs[3].after.is_none() && evs[0].before.is_none());
    let holding = streams_holding(&stack, secret).await;
    assert!(holding.is_empty(), "the API key is in {holding:?}");
    assert!(!streams_holding(&stack, "live-up").await.is_empty(), "the scan reads the streams");
}

#[tokio::test]
async fn the_file_starts_the_set_and_the_bucket_wins_until_its_record_goes() {
    let Setup { stack, routers, store, cfg, .. } = setup(Some(FILE_CHANNEL), 1).await;
    let origin = |r: &Router| r.snapshot().into_iter().find(|s| s.channel == "filech").map(|s| s.origin);
    assert_eq!(origin(&routers[0]).as_deref(), Some("config"));
    assert_eq!(ask(&stack, "file-1").await.0, ReplyKind::Done);
    // `ailurus channels disable filech`: the bucket's copy of the file's channel.
    let mut off = cfg.channels[0].clone();
    off.enabled = false;
    store.save_channel("disable", None, off, KeyChange::Keep).await.expect("override");
    until(&routers, "the bucket's copy", |r| origin(r).as_deref() == Some("kv (over config)")).await;
    assert_eq!(ask(&stack, "file-1").await.1, Some(404));
    store.delete_channel("filech").await.expect("delete the copy");
    until(&routers, "the file's channel back", |r| origin(r).as_deref() == Some("config")).await;
    assert_eq!(ask(&stack, "file-1").await.0, ReplyKind::Done);
}

#[tokio::test]
async fn prices_and_group_ratios_follow_the_buckets() {
    let Setup { stack, store, .. } = setup(None, 1).await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let tokens = ailurus::quota::tokens::TokenStore::open(&js).await.expect("tokens");
    let quota = ailurus::quota::account::QuotaStore::open(stack.client.clone()).await.expect("quota");
    let (_, token) = common::funded(&tokens, &quota, "carol", 50_000_000).await;
    let call = || async {
        let mut req = request(Platform::Claude, "mock-priced", "price me", false);
        req.user_id = "carol".into();
        req.max_tokens = Some(20);
        let mut replies =
            stack.requester().signed_by(&token).send(&req, Encoding::Json, HeaderMap::new()).await.expect("send");
        let r = tokio::time::timeout(WAIT, replies.next_content()).await.expect("in time").expect("final").expect("ok");
        assert_eq!(r.kind, ReplyKind::Done, "{:?}", String::from_utf8_lossy(&r.payload));
        r.response(Encoding::Json).expect("response")
    };
    // (input, output USD per 1M tokens, group ratio of the default group)
    for (input, output, ratio) in [(100.0, 200.0, None), (1000.0, 3000.0, None), (1000.0, 3000.0, Some(0.5))] {
        let entry = ailurus::pricing::PriceEntry {
            pattern: "mock-priced".into(),
            input,
            output,
            cache_read: 0.0,
            cache_write: 0.0,
            max_output_tokens: None,
        };
        store.set_price(entry).await.expect("set price");
        if let Some(r) = ratio {
            store.set_group("default", r).await.expect("set group");
        }
        // Propagation is milliseconds; give it a generous bound, then check the bill.
        let t = Instant::now();
        loop {
            let resp = call().await;
            let want =
                (resp.tokens_input as f64 * input + resp.tokens_output as f64 * output) / 1e6 * ratio.unwrap_or(1.0);
            if (resp.cost - want).abs() < 1e-9 {
                break;
            }
            assert!(t.elapsed() < WAIT, "price {input}/{output} ratio {ratio:?}: cost {} not {want}", resp.cost);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let kinds: Vec<String> =
        events(&stack).await.into_iter().map(|e| format!("{} {} {}", e.kind, e.op, e.name)).collect();
    assert_eq!(
        kinds,
        ["price create mock-priced", "price update mock-priced", "price update mock-priced", "group create default"]
    );
}

#[tokio::test]
async fn without_a_current_copy_requests_are_refused_not_routed_on_stale_channels() {
    let Setup { stack, routers, store, .. } = setup(Some(FILE_CHANNEL), 1).await;
    store.save_channel("create", None, channel("kvch", "mock", "", &["kv-*"]), KeyChange::Keep).await.expect("add");
    until(&routers, "kv channel", |r| find(r, "kvch").is_some()).await;
    assert_eq!(ask(&stack, "kv-1").await.0, ReplyKind::Done);
    // The bucket disappears: the copy loses its proof within MAX_STALE, and nothing can be confirmed.
    let js = async_nats::jetstream::new(stack.client.clone());
    js.delete_stream("KV_CHANNELS").await.expect("delete the bucket");
    tokio::time::sleep(ailurus::kv_mirror::MAX_STALE + Duration::from_millis(700)).await;
    for model in ["kv-1", "file-1"] {
        let (kind, status, resp) = ask(&stack, model).await;
        assert_eq!((kind, status), (ReplyKind::Error, Some(503)), "{model}: {resp:?}");
    }
    // The bucket is back (empty): the copy reloads; the file's channel serves, the deleted one is gone.
    stack.apply_streams().await;
    until(&routers, "reloaded", |r| find(r, "kvch").is_none()).await;
    let t = Instant::now();
    while ask(&stack, "file-1").await.0 != ReplyKind::Done {
        assert!(t.elapsed() < WAIT, "the file's channel did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ask(&stack, "kv-1").await.1, Some(404));
}

#[tokio::test]
async fn an_edit_reaches_two_workers_in_milliseconds_p50_p99_over_100_edits() {
    let Setup { stack: _stack, routers, store, .. } = setup(Some(""), 2).await;
    store.save_channel("create", None, channel("prop", "mock", "", &["prop-*"]), KeyChange::Keep).await.expect("add");
    until(&routers, "the channel", |r| find(r, "prop").is_some()).await;
    let mut times = Vec::with_capacity(100);
    for i in 0..100u32 {
        let before = store.channel("prop").await.expect("read").expect("stored");
        let mut c = before.1.channel.clone();
        c.weight = i + 2;
        let t = Instant::now();
        store.save_channel("update", Some(&before), c, KeyChange::Keep).await.expect("edit");
        until(&routers, "the edit", |r| find(r, "prop").is_some_and(|c| c.weight == i + 2)).await;
        times.push(t.elapsed());
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "live config propagation to 2 workers over {} edits: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        p(0.50).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        p(1.0).as_secs_f64() * 1e3
    );
}

/// A credential: the `Authorization` value and the `New-Api-User` header, if any.
type Auth = (String, Option<String>);

/// One management-API call through the bridge: (HTTP status, body).
async fn api(
    base: &str,
    method: &str,
    path: &str,
    auth: &Auth,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut r = reqwest::Client::new().request(method, format!("{base}{path}")).header("Authorization", &auth.0);
    if let Some(id) = &auth.1 {
        r = r.header("New-Api-User", id);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b.to_string());
    }
    let resp = tokio::time::timeout(WAIT, r.send()).await.expect("in time").expect("sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

#[tokio::test]
async fn the_channel_api_speaks_new_api_shapes_to_admins_and_refuses_everyone_else() {
    let Setup { stack, routers, store, .. } = setup(None, 1).await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let users = ailurus::quota::users::UserStore::open(&js).await.expect("users");
    let tokens = ailurus::quota::tokens::TokenStore::open(&js).await.expect("tokens");
    let ops = users.create("ops", ailurus::quota::users::role::ADMIN, "Ops").await.expect("admin");
    let bob = users.create("bob", ailurus::quota::users::role::COMMON, "Bob").await.expect("user");
    let admin = (users.new_access_token("ops").await.expect("access token"), Some(ops.id.to_string()));
    let bob_access = (users.new_access_token("bob").await.expect("access token"), Some(bob.id.to_string()));
    let (bob_token, _) = tokens.create("bob", "laptop", None, vec![], None).await.expect("token");
    let bob_bearer = (format!("Bearer {bob_token}"), None);
    let base = common::http::bridge(stack.client.clone(), Default::default(), stack.shutdown.clone()).await;
    let up = Upstream::with(Script { answer: Answer::text(&["api channel ok"]), ..Default::default() }).await;
    let secret = "sk-api-secret-0123456789abcdefQRST";

    // Create as NEW-API's console does.
    let new = serde_json::json!({"mode": "single", "channel": {
        "name": "api-up", "type": 1, "key": secret, "base_url": up.base_url(Api::OpenAi),
        "models": "api-*,other", "group": "default", "priority": 3, "weight": 2, "status": 1,
        "model_mapping": "{\"api-x\":\"upstream-x\"}"}});
    let (status, body) = api(&base, "POST", "/api/channel/", &admin, Some(new.clone())).await;
    assert_eq!((status, &body["success"]), (200, &serde_json::json!(true)), "{body}");
    let d = &body["data"];
    assert_eq!(
        (&d["type"], &d["models"], &d["status"], &d["priority"], &d["weight"], &d["key"]),
        (
            &serde_json::json!(1),
            &serde_json::json!("api-*,other"),
            &serde_json::json!(1),
            &serde_json::json!(3),
            &serde_json::json!(2),
            &serde_json::json!("sk-…QRST")
        )
    );
    let id = d["id"].as_i64().expect("a numeric id");
    until(&routers, "the API's channel", |r| find(r, "api-up").is_some()).await;
    let (_, listed) = api(&base, "GET", "/api/channel/?p=1&page_size=10", &admin, None).await;
    assert_eq!(listed["data"]["total"], 1, "{listed}");
    assert_eq!(listed["data"]["items"][0]["name"], "api-up");
    let (_, got) = api(&base, "GET", &format!("/api/channel/{id}"), &admin, None).await;
    assert_eq!(got["data"]["name"], "api-up");
    let (status, tested) = api(&base, "GET", &format!("/api/channel/test/{id}?model=api-x"), &admin, None).await;
    assert_eq!((status, &tested["success"]), (200, &serde_json::json!(true)), "{tested}");
    assert!(tested["time"].as_f64().is_some_and(|t| t >= 0.0), "{tested}");
    let sent = up.requests();
    let last = sent.last().expect("the test request reached the upstream");
    assert_eq!(last.header("authorization"), Some(format!("Bearer {secret}").as_str()));
    assert_eq!(last.model().as_deref(), Some("upstream-x"), "model_mapping applied");

    // Everyone but an admin: 403 (or 401 with no credential) in NEW-API's envelope, nothing changes.
    let rev = store.channel("api-up").await.expect("read").expect("stored").0;
    let events_before = events(&stack).await.len();
    let nobody = (String::new(), None);
    let off = serde_json::json!({"id": id, "status": 2});
    // (caller, method, path, body, status)
    let cases: [(&Auth, &str, String, Option<serde_json::Value>, u16); 9] = [
        (&bob_access, "GET", "/api/channel/".into(), None, 403),
        (&bob_access, "PUT", "/api/channel/".into(), Some(off.clone()), 403),
        (&bob_access, "DELETE", format!("/api/channel/{id}"), None, 403),
        (&bob_access, "GET", format!("/api/channel/test/{id}"), None, 403),
        (&bob_bearer, "POST", "/api/channel/".into(), Some(new.clone()), 403),
        (&bob_bearer, "PUT", "/api/channel/".into(), Some(off.clone()), 403),
        (&bob_bearer, "GET", format!("/api/channel/{id}"), None, 403),
        (&nobody, "DELETE", format!("/api/channel/{id}"), None, 401),
        (&nobody, "GET", "/api/channel/".into(), None, 401),
    ];
    for (who, method, path, body, want) in cases {
        let (status, reply) = api(&base, method, &path, who, body).await;
        assert_eq!((status, &reply["success"]), (want, &serde_json::json!(false)), "{method} {path}: {reply}");
        assert!(reply["message"].is_string() && reply.get("data").is_some(), "NEW-API's envelope: {reply}");
    }
    assert_eq!(store.channel("api-up").await.expect("read").expect("still there").0, rev, "nothing changed");
    assert_eq!(events(&stack).await.len(), events_before, "no event");

    let (status, body) = api(&base, "PUT", "/api/channel/", &admin, Some(off)).await;
    assert_eq!(
        (status, &body["data"]["status"], &body["data"]["key"]),
        (200, &serde_json::json!(2), &serde_json::json!("sk-…QRST"))
    );
    until(&routers, "disabled through the API", |r| find(r, "api-up").is_some_and(|c| !c.enabled)).await;
    let bad = serde_json::json!({"id": id, "status": 7});
    let (status, body) = api(&base, "PUT", "/api/channel/", &admin, Some(bad)).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api(&base, "DELETE", &format!("/api/channel/{id}"), &admin, None).await;
    assert_eq!(status, 200);
    until(&routers, "deleted through the API", |r| find(r, "api-up").is_none()).await;
    let evs = events(&stack).await;
    let ops: Vec<(&str, &str)> = evs.iter().map(|e| (e.op.as_str(), e.actor.as_str())).collect();
    assert_eq!(ops, [("create", "user:ops"), ("disable", "user:ops"), ("delete", "user:ops")]);
    let holding = streams_holding(&stack, secret).await;
    assert!(holding.is_empty(), "the API key is in {holding:?}");
}

/// `ailurus <args>` against the stack, with `stdin`; (success, stdout + stderr).
fn cli(setup: &Setup, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let key_file = setup.cfg.live.secret_key_file.as_ref().expect("key file");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .args(args)
        .env("NATS_URL", &setup.stack.server.url)
        .env("AILURUS_SECRET_KEY_FILE", key_file)
        .env("AILURUS_LOG", "debug")
        .env_remove("AILURUS_SECRET_KEY")
        .env_remove("NEW_API_URL")
        .env_remove("NEW_API_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ailurus");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("ailurus ends");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn a_key_typed_into_the_cli_is_sealed_masked_and_in_no_output_log_or_stream() {
    let setup = setup(Some(""), 1).await;
    let secret = "sk-cli-secret-0123456789abcdefWXYZ";
    // (args, stdin, succeeds, what the output shows)
    let steps: [(&[&str], &str, bool, &str); 6] = [
        (
            &[
                "channels",
                "add",
                "cli-up",
                "--kind",
                "1",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--models",
                "cli-*",
                "--key-stdin",
            ],
            &format!("{secret}\n"),
            true,
            "sk-…WXYZ",
        ),
        (&["channels", "list"], "", true, "cli-up"),
        (&["channels", "list", "--json"], "", true, "\"key\":\"sk-…WXYZ\""),
        // Nothing listens on port 9: the test fails, and its error names no key.
        (&["channels", "test", "cli-up", "--model", "cli-x"], "", false, "cli-up: failed"),
        (&["channels", "edit", "cli-up", "--weight", "4"], "", true, "cli-up"),
        (&["channels", "delete", "cli-up"], "", true, "deleted cli-up"),
    ];
    for (args, stdin, ok, shows) in steps {
        let (success, out) = cli(&setup, args, stdin);
        assert_eq!(success, ok, "{args:?}: {out}");
        assert!(out.contains(shows), "{args:?} shows {shows:?}: {out}");
        assert!(!out.contains(secret), "{args:?} printed the key: {out}");
    }
    let holding = streams_holding(&setup.stack, secret).await;
    assert!(holding.is_empty(), "the API key is in {holding:?}");
    let ops: Vec<String> =
        events(&setup.stack).await.into_iter().map(|e| format!("{} {}", e.op, e.key_changed)).collect();
    assert_eq!(ops, ["create true", "update false", "delete false"]);
}
