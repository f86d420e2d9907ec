//! Upstream providers, channels, routing and failover, end to end: a real nats-server, an
//! in-process worker whose `[[channels]]` point at scripted loopback upstreams
//! (`tests/common/upstream.rs`) speaking the real wire formats, and requests sent over NATS
//! as seed `LLMNATSRequest`s or native API bodies (`Ailurus-Format`).

mod common;

use ailurus::bus::codec::Encoding;
use ailurus::bus::headers::{self, ReplyKind};
use ailurus::bus::subjects::{self, Token};
use ailurus::config::Config;
use ailurus::formats::Format;
use ailurus::protocol::{LLMNATSResponse, Platform};
use ailurus::router::{HealthSnapshot, Router};
use async_nats::HeaderMap;
use bytes::Bytes;
use common::upstream::{Answer, Api, Fault, Script, Upstream, Usage};
use common::{platform_of, request, usage_records, Stack};
use futures::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
#[path = "support/grammar/mod.rs"]
mod grammar;
use grammar::ValidateStream;

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(20);

/// Run a whole test body under one bound.
async fn bounded<F: Future<Output = ()>>(limit: Duration, f: F) {
    tokio::time::timeout(limit, f).await.expect("test exceeded its time bound");
}

/// Set an API key variable unique to the calling test; returns its name.
fn key(var: &str) -> &str {
    std::env::set_var(var, format!("key-of-{var}"));
    var
}

/// One `[[channels]]` block. `extra` holds further keys and may end with sub-tables.
fn chan(name: &str, api: Api, up: &Upstream, key_var: &str, priority: i32, extra: &str) -> String {
    chan_url(name, api, &up.base_url(api), key_var, priority, extra)
}

fn chan_url(name: &str, api: Api, base: &str, key_var: &str, priority: i32, extra: &str) -> String {
    format!(
        "\n[[channels]]\nname = \"{name}\"\nkind = \"{}\"\nbase_url = \"{base}\"\napi_key_env = [\"{key_var}\"]\npriority = {priority}\n{extra}\n",
        api.kind()
    )
}

/// Settings every gateway here starts from: open mode (no auth, no billing: routing is what
/// is tested here), bounded request time, no built-in mock.
const BASE: &str = "[auth]\nmode = \"open\"\n[worker]\nrequest_timeout_ms = 20000\n[routing]\nbuiltin_mock = false\n";

/// A nats-server and one worker on `config_toml`; the router handle reads channel health.
async fn gateway(config_toml: &str) -> (Stack, Arc<Router>) {
    let config: Config = toml::from_str(config_toml).unwrap_or_else(|e| panic!("{e}\n{config_toml}"));
    config.validate().unwrap_or_else(|e| panic!("{e}\n{config_toml}"));
    let router = Arc::new(Router::new(&config.routing, &config.channels).expect("router"));
    let mut stack = Stack::server_only().await;
    stack.add_routed_worker(config, router.clone()).await;
    (stack, router)
}

fn health(router: &Router, channel: &str) -> HealthSnapshot {
    router.snapshot().into_iter().find(|h| h.channel == channel).unwrap_or_else(|| panic!("no channel {channel}"))
}

/// What a seed request got.
#[derive(Debug)]
struct Seed {
    chunks: Vec<String>,
    kind: ReplyKind,
    status: Option<u16>,
    resp: LLMNATSResponse,
    raw: Bytes,
}

async fn seed(stack: &Stack, model: &str, stream: bool) -> Seed {
    let req = request(Platform::Claude, model, "hello upstream", stream);
    seed_req(stack, &req).await
}

async fn seed_req(stack: &Stack, req: &ailurus::protocol::LLMNATSRequest) -> Seed {
    seed_req_with(stack, req, HeaderMap::new()).await
}

/// A seed request with these headers (a credential, say).
async fn seed_req_with(stack: &Stack, req: &ailurus::protocol::LLMNATSRequest, h: HeaderMap) -> Seed {
    seed_via(stack.requester(), req, h).await
}

/// [`seed_req_with`] through `requester` (e.g. one that signs with a token).
async fn seed_via(
    requester: ailurus::client::Requester,
    req: &ailurus::protocol::LLMNATSRequest,
    h: HeaderMap,
) -> Seed {
    let mut replies = requester.send(req, Encoding::Json, h).await.expect("send");
    let mut chunks = Vec::new();
    loop {
        let r = tokio::time::timeout(WAIT, replies.next()).await.expect("reply in time").expect("a final reply");
        let r = r.expect("reply");
        match r.kind {
            ReplyKind::Heartbeat => {}
            ReplyKind::Chunk => chunks.push(r.chunk(Encoding::Json).unwrap().delta),
            kind => {
                return Seed {
                    chunks,
                    kind,
                    status: r.status,
                    resp: r.response(Encoding::Json).unwrap(),
                    raw: r.payload,
                }
            }
        }
    }
}

/// What a native request got: the chunk bytes as a bridge would write them, and the final reply.
#[derive(Debug)]
struct Native {
    first_status: Option<u16>,
    bytes: Vec<u8>,
    kind: ReplyKind,
    status: Option<u16>,
    last: Bytes,
}

impl Native {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A minimal native request body.
fn native_body(format: Format, model: &str, stream: bool) -> Vec<u8> {
    let v = match format {
        Format::AnthropicMessages => serde_json::json!({"model": model, "max_tokens": 256, "stream": stream,
            "messages": [{"role": "user", "content": "hello upstream"}]}),
        Format::OpenAiChat => serde_json::json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "hello upstream"}]}),
        Format::OpenAiResponses => serde_json::json!({"model": model, "stream": stream, "input": "hello upstream"}),
        Format::GeminiGenerate => {
            serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "hello upstream"}]}]})
        }
    };
    v.to_string().into_bytes()
}

async fn native(stack: &Stack, format: Format, model: &str, stream: bool) -> Native {
    native_raw(stack, format, model, stream, native_body(format, model, stream), &[]).await
}

async fn native_raw(
    stack: &Stack,
    format: Format,
    model: &str,
    stream: bool,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> Native {
    native_via(stack.requester(), format, model, stream, body, extra).await
}

/// [`native_raw`] through `requester` (e.g. one that signs with a token).
async fn native_via(
    requester: ailurus::client::Requester,
    format: Format,
    model: &str,
    stream: bool,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> Native {
    let trace = Token::random();
    let mut h = HeaderMap::new();
    h.insert(headers::FORMAT, format.as_str());
    h.insert(headers::TRACE, trace.as_str());
    if format == Format::GeminiGenerate {
        h.insert(headers::MODEL, model);
        h.insert(headers::OP, if stream { "stream" } else { "generate" });
    }
    for (k, v) in extra {
        h.insert(*k, *v);
    }
    let mut replies =
        requester.send_raw(subjects::request(platform_of(format)), h, body.into(), Some(trace)).await.expect("send");
    let mut out =
        Native { first_status: None, bytes: Vec::new(), kind: ReplyKind::Error, status: None, last: Bytes::new() };
    let mut first = true;
    loop {
        let r = tokio::time::timeout(WAIT, replies.next()).await.expect("reply in time").expect("a final reply");
        let r = r.expect("reply");
        match r.kind {
            ReplyKind::Heartbeat => {}
            ReplyKind::Chunk => {
                if first {
                    out.first_status = r.status;
                    first = false;
                }
                out.bytes.extend_from_slice(&r.payload);
            }
            kind => {
                out.kind = kind;
                out.status = r.status;
                out.last = r.payload;
                return out;
            }
        }
    }
}

fn answer(text: &str) -> Script {
    Script { answer: Answer::text(&[text]), ..Default::default() }
}

// ---------------------------------------------------------------------------------------
// Failover, tiers, weights, cooldown.

#[tokio::test]
async fn failover_follows_priority_tiers() {
    bounded(Duration::from_secs(60), async {
        let (a, b, c) = (
            Upstream::with(answer("from A")).await,
            Upstream::with(answer("from B")).await,
            Upstream::with(answer("from C")).await,
        );
        a.fault(Fault::status(500));
        let k = key("AILURUS_T_TIERS_KEY");
        let cfg = format!(
            "{BASE}{}{}{}",
            chan("tier-low", Api::OpenAi, &c, k, 1, ""),
            chan("tier-high", Api::OpenAi, &a, k, 10, ""),
            chan("tier-mid", Api::Anthropic, &b, k, 5, "")
        );
        let (stack, router) = gateway(&cfg).await;
        for stream in [true, false] {
            let s = seed(&stack, "any-model", stream).await;
            assert_eq!(s.kind, ReplyKind::Done, "{s:?}");
            assert_eq!(s.resp.content, "from B");
        }
        assert_eq!(a.count(), 1, "the failing top tier is tried once, then cools down");
        assert_eq!(b.count(), 2);
        assert_eq!(c.count(), 0, "the lowest tier is never needed");
        let high = health(&router, "tier-high");
        assert_eq!((high.failures, high.successes, high.state.as_str()), (1, 0, "cooling"), "{high:?}");
        assert!(high.cooldown_left_ms > 0 && high.cooldown_left_ms <= 5_000, "{high:?}");
        let mid = health(&router, "tier-mid");
        assert_eq!((mid.successes, mid.failures, mid.state.as_str()), (2, 0, "ok"));
    })
    .await;
}

#[tokio::test]
async fn weights_share_a_tier() {
    bounded(Duration::from_secs(120), async {
        let (heavy, light) = (Upstream::start().await, Upstream::start().await);
        let k = key("AILURUS_T_WEIGHTS_KEY");
        let cfg = format!(
            "{BASE}{}{}",
            chan("heavy", Api::OpenAi, &heavy, k, 1, "weight = 3"),
            chan("light", Api::OpenAi, &light, k, 1, "weight = 1")
        );
        let (stack, router) = gateway(&cfg).await;
        let n = 400;
        let ok = futures::stream::iter(0..n)
            .map(|_| async { seed(&stack, "weighted", false).await.kind == ReplyKind::Done })
            .buffer_unordered(32)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        assert_eq!(ok, n);
        let (h, l) = (heavy.count(), light.count());
        assert_eq!(h + l, n, "each request reaches exactly one upstream");
        // Binomial(400, 3/4): mean 300, σ = √75 ≈ 8.66; 5σ ≈ 43.
        assert!((257..=343).contains(&h), "heavy served {h}, light {l}");
        assert_eq!(health(&router, "heavy").successes + health(&router, "light").successes, n as u64);
    })
    .await;
}

#[tokio::test]
async fn retry_after_cools_a_channel_then_a_probe_brings_it_back() {
    bounded(Duration::from_secs(60), async {
        let (a, b) = (Upstream::with(answer("from A")).await, Upstream::with(answer("from B")).await);
        a.script(|s| {
            s.next.push_back(Fault::Status {
                code: 429,
                retry_after: Some("1".into()),
                message: "Rate limit reached".into(),
            })
        });
        let k = key("AILURUS_T_COOLDOWN_KEY");
        // A long base cooldown: only the upstream's Retry-After can make it short.
        let cfg = format!(
            "{BASE}cooldown_base_ms = 60000\n{}{}",
            chan("limited", Api::Anthropic, &a, k, 10, ""),
            chan("spare", Api::OpenAi, &b, k, 5, "")
        );
        let (stack, router) = gateway(&cfg).await;
        let s = seed(&stack, "m", false).await;
        assert_eq!(s.resp.content, "from B", "429 before the first byte fails over");
        let h = health(&router, "limited");
        assert_eq!(h.state, "cooling");
        assert!((700..=1000).contains(&h.cooldown_left_ms), "Retry-After: 1 sets the cooldown: {h:?}");
        let first_429 = a.requests()[0].at;
        // Meanwhile the channel is skipped; after about a second it is probed, and serves.
        let mut served_by_a_at = None;
        for _ in 0..40 {
            let s = seed(&stack, "m", false).await;
            assert_eq!(s.kind, ReplyKind::Done);
            if s.resp.content == "from A" {
                served_by_a_at = Some(Instant::now());
                break;
            }
            assert_eq!(a.count(), 1, "a cooling channel is not called while another serves");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served_by_a_at.is_some(), "the channel came back");
        let reqs = a.requests();
        assert_eq!(reqs.len(), 2, "one probe");
        let gap = reqs[1].at - first_429;
        assert!(gap >= Duration::from_millis(950) && gap < Duration::from_millis(1600), "probed after {gap:?}");
        let h = health(&router, "limited");
        assert_eq!((h.state.as_str(), h.successes, h.failures, h.consecutive_failures), ("ok", 1, 1, 0), "{h:?}");
        // Healthy again: the top tier serves at once.
        assert_eq!(seed(&stack, "m", true).await.resp.content, "from A");
        assert_eq!(a.count(), 3);
    })
    .await;
}

/// A channel in the table below: its fault, and whether a stream is asked for.
struct FaultCase {
    name: String,
    api: Api,
    fault: Fault,
    stream: bool,
    upstream: Option<Upstream>,
}

/// Every fault before the first byte, on every upstream kind, streamed and not: the request
/// is served by the next tier, and the faulty channel cools down. Client errors (4xx) are
/// not failed over.
#[tokio::test]
async fn every_fault_before_the_first_byte_fails_over() {
    bounded(Duration::from_secs(120), async {
        let faults = [
            ("s500", Fault::status(500)),
            ("s503", Fault::status(503)),
            ("s529", Fault::status(529)),
            ("s429", Fault::Status { code: 429, retry_after: Some("30".into()), message: "slow down".into() }),
            ("slowhead", Fault::Delay(Duration::from_millis(1500))),
            ("slowbody", Fault::SlowStream(Duration::from_millis(1500))),
            ("malformed", Fault::Malformed),
            ("reset0", Fault::ResetAfter(0)),
            ("errevent", Fault::ErrorEvent("Overloaded".into())),
            ("refused", Fault::None),
        ];
        let refused = refused_url().await;
        let k = key("AILURUS_T_FAULTS_KEY");
        let spare = Upstream::with(answer("served by spare")).await;
        let mut cfg = format!("{BASE}{}", chan("spare", Api::OpenAi, &spare, k, 1, ""));
        let mut cases = Vec::new();
        for api in Api::ALL {
            for (fname, fault) in &faults {
                for stream in [true, false] {
                    if *fname == "slowbody" && !stream {
                        // A whole body is bounded by the total timeout, not the first byte.
                        continue;
                    }
                    let name = format!("{}-{fname}-{}", api.kind(), if stream { "s" } else { "j" });
                    let extra = format!("models = [\"{name}\"]\n[channels.timeouts]\nfirst_byte_ms = 400\n");
                    let upstream = if *fname == "refused" {
                        cfg.push_str(&chan_url(&name, api, &refused_base(&refused, api), k, 10, &extra));
                        None
                    } else {
                        let up = Upstream::start().await;
                        up.fault(fault.clone());
                        cfg.push_str(&chan(&name, api, &up, k, 10, &extra));
                        Some(up)
                    };
                    cases.push(FaultCase { name, api, fault: fault.clone(), stream, upstream });
                }
            }
        }
        let mut client_cases = Vec::new();
        let mut client_ups = Vec::new();
        for api in Api::ALL {
            for code in [400, 401, 404, 422] {
                let up = Upstream::start().await;
                up.fault(Fault::status(code));
                let name = format!("{}-client-{code}", api.kind());
                cfg.push_str(&chan(&name, api, &up, k, 10, &format!("models = [\"{name}\"]")));
                client_cases.push((name, code));
                client_ups.push(up);
            }
        }
        let (stack, router) = gateway(&cfg).await;
        let mut served = 0;
        for case in &cases {
            check_failover(&stack, &router, case).await;
            served += 1;
            assert_eq!(spare.count(), served, "{}: the spare served it", case.name);
        }
        // The request's own fault: passed on, not failed over, the channel stays healthy.
        for (name, code) in &client_cases {
            let before = spare.count();
            let s = seed(&stack, name, true).await;
            assert_eq!((s.kind, s.status), (ReplyKind::Error, Some(*code)), "{name}: {s:?}");
            assert!(s.resp.error.as_deref().unwrap_or("").contains(&format!("scripted status {code}")), "{s:?}");
            assert_eq!(spare.count(), before, "{name}: a client error is not failed over");
            let h = health(&router, name);
            assert_eq!((h.failures, h.state.as_str()), (0, "ok"), "{name}: {h:?}");
        }
    })
    .await;
}

async fn check_failover(stack: &Stack, router: &Router, case: &FaultCase) {
    let t = Instant::now();
    let s = seed(stack, &case.name, case.stream).await;
    assert_eq!(s.kind, ReplyKind::Done, "{} ({:?}, {:?}): {s:?}", case.name, case.api, case.fault);
    assert_eq!(s.resp.content, "served by spare", "{}", case.name);
    if case.stream {
        assert_eq!(s.chunks.concat(), "served by spare", "{}: nothing of the failed attempt leaks", case.name);
    }
    if let Some(up) = &case.upstream {
        assert_eq!(up.count(), 1, "{}", case.name);
    }
    if matches!(case.fault, Fault::Delay(_) | Fault::SlowStream(_)) {
        assert!(t.elapsed() < Duration::from_millis(1400), "{}: first-byte timeout: {:?}", case.name, t.elapsed());
    }
    let h = health(router, &case.name);
    assert_eq!((h.failures, h.successes, h.state.as_str()), (1, 0, "cooling"), "{}: {h:?}", case.name);
    if let Fault::Status { code: 429, .. } = case.fault {
        assert!(h.cooldown_left_ms > 25_000, "{}: Retry-After: 30 honoured: {h:?}", case.name);
    }
}

/// `http://127.0.0.1:<port>` where nothing listens.
async fn refused_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn refused_base(url: &str, api: Api) -> String {
    match api {
        Api::OpenAi | Api::Responses => format!("{url}/v1"),
        _ => url.to_string(),
    }
}

#[tokio::test]
async fn a_broken_channel_never_fails_a_request() {
    bounded(Duration::from_secs(60), async {
        let healthy = Upstream::with(answer("healthy")).await;
        let k = key("AILURUS_T_BROKEN_KEY");
        let refused = refused_url().await;
        let cfg = format!(
            "{BASE}{}{}",
            chan_url("broken", Api::OpenAi, &format!("{refused}/v1"), k, 1, ""),
            chan("healthy", Api::Anthropic, &healthy, k, 1, "")
        );
        let (stack, router) = gateway(&cfg).await;
        let results: Vec<Seed> = futures::stream::iter(0..50)
            .map(|i| {
                let stack = &stack;
                async move { seed(stack, "m", i % 2 == 0).await }
            })
            .buffer_unordered(5)
            .collect()
            .await;
        for s in &results {
            assert_eq!((s.kind, s.resp.content.as_str()), (ReplyKind::Done, "healthy"), "{s:?}");
        }
        assert_eq!(healthy.count(), 50);
        let b = health(&router, "broken");
        assert!(b.failures >= 1 && b.successes == 0 && b.state == "cooling", "{b:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// After the first byte.

#[tokio::test]
async fn no_failover_after_the_first_byte() {
    bounded(Duration::from_secs(90), async {
        let k = key("AILURUS_T_NOFAILOVER_KEY");
        let spare = Upstream::with(answer("must not be used")).await;
        let mut cfg = format!("{BASE}{}", chan("spare", Api::OpenAi, &spare, k, 1, ""));
        let mut ups = Vec::new();
        for api in Api::ALL {
            let up =
                Upstream::with(Script { answer: Answer::text(&["one", " two", " three"]), ..Default::default() }).await;
            up.fault(Fault::ResetAfter(2));
            // One channel per client, so that each request meets a fresh (not cooling) one.
            for client in ["seed", "anthropic", "openai", "responses", "gemini"] {
                let name = format!("reset-{}-{client}", api.kind());
                cfg.push_str(&chan(&name, api, &up, k, 10, &format!("models = [\"{name}\"]")));
            }
            ups.push((api, up));
        }
        let (stack, router) = gateway(&cfg).await;
        let formats = [
            ("anthropic", Format::AnthropicMessages),
            ("openai", Format::OpenAiChat),
            ("responses", Format::OpenAiResponses),
            ("gemini", Format::GeminiGenerate),
        ];
        let mut failures = Vec::new();
        for (api, up) in &ups {
            // The seed client: the two pieces, then an error that keeps them.
            let name = format!("reset-{}-seed", api.kind());
            let s = seed(&stack, &name, true).await;
            assert_eq!(s.chunks, ["one", " two"], "{name}");
            assert_eq!(s.kind, ReplyKind::Error, "{name}");
            assert_eq!(s.resp.content, "one two", "{name}");
            assert!(s.resp.error.as_deref().unwrap_or("").contains("mid-stream"), "{name}: {s:?}");
            assert!(s.resp.tokens_output > 0 && s.resp.usage_estimated, "{name}: billed for what was delivered");
            let h = health(&router, &name);
            assert_eq!((h.failures, h.state.as_str()), (1, "cooling"), "{name}: {h:?}");
            // Native clients: the pieces, then a well-formed error event in their own format.
            for (client, format) in formats {
                let name = format!("reset-{}-{client}", api.kind());
                let n = native(&stack, format, &name, true).await;
                let text = n.text();
                let check = || -> Result<(), String> {
                    if n.first_status != Some(200) {
                        return Err(format!("first status {:?}", n.first_status));
                    }
                    if !(text.contains("one") && text.contains(" two")) || text.contains(" three") {
                        return Err("the delivered pieces are not exactly the two sent".into());
                    }
                    format.validate_stream(&n.bytes).map_err(|e| format!("invalid stream: {e}"))?;
                    if !text.contains("error") && !text.contains("failed") {
                        return Err("no error event".into());
                    }
                    if n.kind != ReplyKind::Error {
                        return Err(format!("final {:?}", n.kind));
                    }
                    Ok(())
                };
                if let Err(e) = check() {
                    failures.push(format!("{name} ({format} client from {:?} upstream): {e}\n{text}", api));
                }
            }
            assert_eq!(up.count(), 5, "{api:?}: each request tried its channel once");
        }
        assert_eq!(spare.count(), 0, "no failover after the first byte");
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n---\n"));
    })
    .await;
}

#[tokio::test]
async fn an_error_event_before_any_content_fails_over() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_ERREVENT_KEY");
        let anth = Upstream::with(answer("never")).await;
        anth.fault(Fault::ErrorEvent("Overloaded".into()));
        let resp = Upstream::with(answer("never")).await;
        resp.fault(Fault::ErrorEvent("The server had an error".into()));
        let spare = Upstream::with(answer("from spare")).await;
        let mut cfg = format!("{BASE}{}", chan("spare", Api::Anthropic, &spare, k, 1, ""));
        for (client, up, api) in [
            ("seed", &anth, Api::Anthropic),
            ("native", &anth, Api::Anthropic),
            ("seed-r", &resp, Api::Responses),
            ("native-r", &resp, Api::Responses),
        ] {
            cfg.push_str(&chan(&format!("ev-{client}"), api, up, k, 10, &format!("models = [\"ev-{client}\"]")));
        }
        let (stack, router) = gateway(&cfg).await;
        for model in ["ev-seed", "ev-seed-r"] {
            let s = seed(&stack, model, true).await;
            assert_eq!((s.kind, s.resp.content.as_str()), (ReplyKind::Done, "from spare"), "{model}: {s:?}");
            assert_eq!(s.chunks.concat(), "from spare");
            assert_eq!(health(&router, model).failures, 1);
        }
        // A native Anthropic client on pass-through: the failed attempt's message_start was
        // held back, so the client sees one well-formed message, the spare's.
        let n = native(&stack, Format::AnthropicMessages, "ev-native", true).await;
        Format::AnthropicMessages.validate_stream(&n.bytes).unwrap();
        assert_eq!(n.text().matches("event: message_start").count(), 1, "{}", n.text());
        assert!(n.text().contains("from spare") && !n.text().contains("Overloaded"));
        assert_eq!(n.kind, ReplyKind::Done);
        // Same for a Responses client on pass-through.
        let n = native(&stack, Format::OpenAiResponses, "ev-native-r", true).await;
        Format::OpenAiResponses.validate_stream(&n.bytes).unwrap();
        assert_eq!(n.text().matches("event: response.created").count(), 1, "{}", n.text());
        assert!(n.text().contains("from spare"));
        assert_eq!((anth.count(), resp.count(), spare.count()), (2, 2, 4));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Cancellation and timeouts.

#[tokio::test]
async fn cancel_drops_the_upstream_connection_within_100ms() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_CANCEL_KEY");
        let mut cfg = BASE.to_string();
        let mut ups = Vec::new();
        for api in Api::ALL {
            let up = Upstream::start().await;
            up.fault(Fault::Hang(1));
            cfg.push_str(&chan(
                &format!("hang-{}", api.kind()),
                api,
                &up,
                k,
                1,
                &format!("models = [\"hang-{}\"]", api.kind()),
            ));
            ups.push((api, up));
        }
        let (stack, router) = gateway(&cfg).await;
        for (api, up) in &ups {
            let model = format!("hang-{}", api.kind());
            let req = request(Platform::Claude, &model, "never ends", true);
            let trace = Token::new("trace_id", &req.trace_id).unwrap();
            let mut replies = stack.send(&req, Encoding::Json).await;
            let r = tokio::time::timeout(WAIT, replies.next_content()).await.unwrap().unwrap().unwrap();
            assert_eq!(r.kind, ReplyKind::Chunk, "{model}: the first piece arrives");
            assert_eq!(up.stats().in_flight, 1, "{model}");
            let t = Instant::now();
            stack.client.publish(subjects::cancel(&trace), Bytes::new()).await.unwrap();
            stack.client.flush().await.unwrap();
            let stats = up.wait_for(Duration::from_secs(2), |s| s.dropped >= 1).await;
            assert_eq!((stats.dropped, stats.in_flight), (1, 0), "{model}: upstream connection not dropped");
            let took = up.drops()[0] - t;
            assert!(took < Duration::from_millis(100), "{model}: upstream dropped {took:?} after the cancel");
            let last = tokio::time::timeout(WAIT, replies.next_content()).await.unwrap().unwrap().unwrap();
            assert_eq!((last.kind, last.status), (ReplyKind::Error, Some(499)), "{model}");
            let h = health(&router, &model);
            assert_eq!((h.failures, h.state.as_str()), (0, "ok"), "{model}: a cancel is not the channel's fault");
        }
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_probe_does_not_leave_the_channel_stuck() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_PROBE_KEY");
        let (a, b) = (Upstream::with(answer("from A")).await, Upstream::with(answer("from B")).await);
        a.script(|s| s.next.push_back(Fault::status(500)));
        let cfg = format!(
            "{BASE}cooldown_base_ms = 200\n{}{}",
            chan("flaky", Api::OpenAi, &a, k, 10, ""),
            chan("steady", Api::OpenAi, &b, k, 5, "")
        );
        let (stack, router) = gateway(&cfg).await;
        assert_eq!(seed(&stack, "m", true).await.resp.content, "from B");
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The probe hangs after one piece and the client cancels it.
        a.fault(Fault::Hang(1));
        let req = request(Platform::Claude, "m", "probe", true);
        let trace = Token::new("trace_id", &req.trace_id).unwrap();
        let mut replies = stack.send(&req, Encoding::Json).await;
        let r = tokio::time::timeout(WAIT, replies.next_content()).await.unwrap().unwrap().unwrap();
        assert_eq!(r.kind, ReplyKind::Chunk);
        assert_eq!(health(&router, "flaky").state, "probing");
        stack.client.publish(subjects::cancel(&trace), Bytes::new()).await.unwrap();
        let last = tokio::time::timeout(WAIT, replies.next_content()).await.unwrap().unwrap().unwrap();
        assert_eq!(last.status, Some(499));
        a.wait_for(Duration::from_secs(2), |s| s.dropped >= 1).await;
        // The cancelled probe gave no verdict: the next request probes again, and it heals.
        a.fault(Fault::None);
        let h = health(&router, "flaky");
        assert_eq!(h.state, "probe-ready", "{h:?}");
        assert_eq!(seed(&stack, "m", true).await.resp.content, "from A");
        assert_eq!(health(&router, "flaky").state, "ok");
    })
    .await;
}

#[tokio::test]
async fn a_slow_first_byte_beyond_the_timeout_fails_over() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_TIMEOUT_KEY");
        let (slow_head, slow_body, fast) =
            (Upstream::start().await, Upstream::start().await, Upstream::with(answer("fast")).await);
        slow_head.fault(Fault::Delay(Duration::from_secs(5)));
        slow_body.fault(Fault::SlowStream(Duration::from_secs(5)));
        let t = "[channels.timeouts]\nfirst_byte_ms = 300\n";
        let cfg = format!(
            "{BASE}{}{}{}",
            chan("slow-head", Api::Anthropic, &slow_head, k, 10, t),
            chan("slow-body", Api::Anthropic, &slow_body, k, 9, t),
            chan("fast", Api::Gemini, &fast, k, 1, "")
        );
        let (stack, router) = gateway(&cfg).await;
        let start = Instant::now();
        let s = seed(&stack, "m", true).await;
        let took = start.elapsed();
        assert_eq!((s.kind, s.resp.content.as_str()), (ReplyKind::Done, "fast"), "{s:?}");
        assert!(took >= Duration::from_millis(600) && took < Duration::from_millis(2500), "{took:?}");
        assert_eq!((slow_head.count(), slow_body.count(), fast.count()), (1, 1, 1));
        for name in ["slow-head", "slow-body"] {
            assert_eq!(health(&router, name).state, "cooling", "{name}");
        }
        // The slow body's connection was given up, not left open.
        let st = slow_body.wait_for(Duration::from_secs(2), |s| s.dropped == 1).await;
        assert_eq!(st.in_flight, 0, "{st:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// What reaches the upstream, and what comes back.

#[tokio::test]
async fn usage_is_the_upstreams_for_every_kind() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_USAGE_KEY");
        let mut cfg = BASE.to_string();
        let mut ups = Vec::new();
        for api in Api::ALL {
            let usage = Usage {
                input: 1200,
                output: 345,
                cache_read: 800,
                cache_write: if api == Api::Anthropic { 150 } else { 0 },
            };
            let up = Upstream::with(Script { usage, ..Default::default() }).await;
            let name = format!("usage-{}", api.kind());
            cfg.push_str(&chan(&name, api, &up, k, 1, &format!("models = [\"{name}\"]")));
            ups.push((api, up, usage, name));
        }
        let (stack, _router) = gateway(&cfg).await;
        for (api, up, usage, name) in &ups {
            for stream in [true, false] {
                let s = seed(&stack, name, stream).await;
                assert_eq!(s.kind, ReplyKind::Done, "{name} stream={stream}: {s:?}");
                assert_eq!(s.resp.content, "Hello from upstream");
                assert_eq!(
                    (s.resp.tokens_input, s.resp.tokens_output, s.resp.usage_estimated),
                    (usage.prompt_total(*api), usage.output, false),
                    "{name} stream={stream}"
                );
            }
            if *api == Api::OpenAi {
                let sent = up.requests()[0].json();
                assert_eq!(sent["stream"], true);
                assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
            }
        }
        // A native OpenAI client that did not ask for usage still gets billed from the
        // upstream's numbers: pass-through adds include_usage.
        let n = native(&stack, Format::OpenAiChat, "usage-openai", true).await;
        Format::OpenAiChat.validate_stream(&n.bytes).unwrap();
        let last: LLMNATSResponse = serde_json::from_slice(&n.last).unwrap();
        assert_eq!((last.tokens_input, last.tokens_output, last.usage_estimated), (2000, 345, false));
        let sent = ups[0].1.requests().last().unwrap().json();
        assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    })
    .await;
}

#[tokio::test]
async fn model_mapping_and_wildcards_reach_the_upstream() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_MAPPING_KEY");
        let mut cfg = BASE.to_string();
        let mut ups = Vec::new();
        for api in Api::ALL {
            let up = Upstream::start().await;
            let p = api.kind();
            let extra = format!(
                "models = [\"{p}-claude-*\", \"{p}-plain\"]\n[channels.model_map]\n\"{p}-claude-*\" = \"wild-{p}\"\n\"{p}-claude-exact\" = \"exact-{p}\"\n"
            );
            cfg.push_str(&chan(&format!("map-{p}"), api, &up, k, 1, &extra));
            ups.push((api, up));
        }
        let (stack, _router) = gateway(&cfg).await;
        for (api, up) in &ups {
            let p = api.kind();
            for (asked, expected) in [
                (format!("{p}-claude-sonnet-4-5"), format!("wild-{p}")),
                (format!("{p}-claude-exact"), format!("exact-{p}")),
                (format!("{p}-plain"), format!("{p}-plain")),
            ] {
                for stream in [true, false] {
                    let s = seed(&stack, &asked, stream).await;
                    assert_eq!(s.kind, ReplyKind::Done, "{asked}: {s:?}");
                    assert_eq!(s.resp.model, asked, "the reply names the model the client asked for");
                    let got = up.requests().pop().unwrap();
                    assert_eq!(got.model().as_deref(), Some(expected.as_str()), "{asked} stream={stream}");
                    if *api == Api::Gemini {
                        let action = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
                        assert_eq!(got.path, format!("/v1beta/models/{expected}:{action}"));
                        assert!(got.json().get("model").is_none(), "Gemini names the model only in the URL");
                    } else {
                        assert_eq!(got.json()["model"], expected.as_str());
                    }
                }
            }
        }
        let s = seed(&stack, "gpt-4o", false).await;
        assert_eq!((s.kind, s.status), (ReplyKind::Error, Some(404)), "{s:?}");
        assert!(s.resp.error.unwrap().contains("no channel serves model"));
    })
    .await;
}

#[tokio::test]
async fn pass_through_is_byte_exact_except_the_model() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_PASSTHROUGH_KEY");
        let (anth, resp, gem) = (Upstream::start().await, Upstream::start().await, Upstream::start().await);
        let map = |from: &str, to: &str| format!("models = [\"{from}\"]\n[channels.model_map]\n\"{from}\" = \"{to}\"\n");
        let cfg = format!(
            "{BASE}{}{}{}",
            chan("pt-anthropic", Api::Anthropic, &anth, k, 1, &map("claude-client-name", "claude-upstream-name")),
            chan("pt-responses", Api::Responses, &resp, k, 1, &map("gpt-client", "gpt-upstream")),
            chan("pt-gemini", Api::Gemini, &gem, k, 1, &map("gemini-client", "gemini-upstream"))
        );
        let (stack, _router) = gateway(&cfg).await;

        // Odd spacing, unknown fields, cache_control, a thinking signature, a nested "model".
        let anthropic_body = r#"{ "model" :  "claude-client-name", "max_tokens":1024, "stream":true,
  "system":[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral"}}],
  "messages":[
    {"role":"user","content":[{"type":"text","text":"What is 2+2? \u00e9\n","cache_control":{"type":"ephemeral","ttl":"1h"}}]},
    {"role":"assistant","content":[{"type":"thinking","thinking":"Simple arithmetic.","signature":"EqQBCkYIBxgCKkBz+/Zk3Q=="},{"type":"text","text":"4"}]},
    {"role":"user","content":"And 3+3?"}],
  "thinking":{"type":"enabled","budget_tokens":2048},
  "metadata":{"user_id":"u-42"},
  "x_future_field":{"nested":[1, 2.50, {"model":"not-this-one"}]},
  "temperature":1.0 }"#;
        let beta = "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31";
        let n = native_raw(
            &stack,
            Format::AnthropicMessages,
            "claude-client-name",
            true,
            anthropic_body.as_bytes().to_vec(),
            &[("anthropic-beta", beta), ("anthropic-version", "2023-06-01"), ("x-api-key", "client-gateway-token")],
        )
        .await;
        assert_eq!(n.kind, ReplyKind::Done, "{}\n{}", n.text(), String::from_utf8_lossy(&n.last));
        Format::AnthropicMessages.validate_stream(&n.bytes).unwrap();
        let got = anth.requests().pop().unwrap();
        let expected = anthropic_body.replacen("\"claude-client-name\"", "\"claude-upstream-name\"", 1);
        assert_eq!(String::from_utf8_lossy(&got.body), expected, "byte-exact but for the model");
        assert_eq!(got.header("anthropic-beta"), Some(beta));
        assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(got.header("x-api-key"), Some(format!("key-of-{k}").as_str()), "the channel's key, not the client's");

        // Responses: encrypted reasoning and unknown fields survive.
        let responses_body = r#"{"model":"gpt-client","stream":true,"input":[{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"gAAAAB3xyz=="},{"role":"user","content":"hi"}],"include":["reasoning.encrypted_content"],"store":false,"x_new":{"a":[true,null]}}"#;
        let n = native_raw(&stack, Format::OpenAiResponses, "gpt-client", true, responses_body.as_bytes().to_vec(), &[])
            .await;
        assert_eq!(n.kind, ReplyKind::Done, "{}\n{}", n.text(), String::from_utf8_lossy(&n.last));
        Format::OpenAiResponses.validate_stream(&n.bytes).unwrap();
        let got = resp.requests().pop().unwrap();
        assert_eq!(String::from_utf8_lossy(&got.body), responses_body.replacen("gpt-client", "gpt-upstream", 1));
        assert_eq!(got.header("authorization"), Some(format!("Bearer key-of-{k}").as_str()));

        // Gemini: the body is untouched, the model goes in the URL.
        let gemini_body = r#"{"contents":[{"role":"user","parts":[{"text":"hi","thoughtSignature":"c2lnbmF0dXJl"}]}],"generationConfig":{"thinkingConfig":{"includeThoughts":true}},"x_new":[1]}"#;
        let n =
            native_raw(&stack, Format::GeminiGenerate, "gemini-client", true, gemini_body.as_bytes().to_vec(), &[])
                .await;
        assert_eq!(n.kind, ReplyKind::Done, "{}\n{}", n.text(), String::from_utf8_lossy(&n.last));
        Format::GeminiGenerate.validate_stream(&n.bytes).unwrap();
        let got = gem.requests().pop().unwrap();
        assert_eq!(String::from_utf8_lossy(&got.body), gemini_body);
        assert_eq!(got.path, "/v1beta/models/gemini-upstream:streamGenerateContent?alt=sse");
        assert_eq!(got.header("x-goog-api-key"), Some(format!("key-of-{k}").as_str()));
    })
    .await;
}

#[tokio::test]
async fn secrets_never_reach_error_replies() {
    bounded(Duration::from_secs(60), async {
        let var = "AILURUS_T_SECRET_KEY";
        let secret = "test-secret-VALUE-9f8e7d6c5b4a";
        std::env::set_var(var, secret);
        let echo = format!("Incorrect API key provided: {secret}. Check your key at the console.");
        let mut cfg = BASE.to_string();
        let mut ups = Vec::new();
        for api in Api::ALL {
            let up = Upstream::start().await;
            up.fault(Fault::Status { code: 401, retry_after: None, message: echo.clone() });
            cfg.push_str(&chan(
                &format!("s401-{}", api.kind()),
                api,
                &up,
                var,
                1,
                &format!("models = [\"s401-{}\"]", api.kind()),
            ));
            let ev = Upstream::start().await;
            ev.fault(Fault::ErrorEvent(echo.clone()));
            cfg.push_str(&chan(
                &format!("sev-{}", api.kind()),
                api,
                &ev,
                var,
                1,
                &format!("models = [\"sev-{}\"]", api.kind()),
            ));
            ups.push((up, ev));
        }
        let (stack, _router) = gateway(&cfg).await;
        for api in Api::ALL {
            for model in [format!("s401-{}", api.kind()), format!("sev-{}", api.kind())] {
                for stream in [true, false] {
                    let s = seed(&stack, &model, stream).await;
                    assert_eq!(s.kind, ReplyKind::Error, "{model}");
                    let all = format!("{} {}", s.chunks.concat(), String::from_utf8_lossy(&s.raw));
                    assert!(!all.contains(secret), "{model} stream={stream} leaks the key: {all}");
                    assert!(all.contains("[redacted]"), "{model}: the message is kept, the key masked: {all}");
                }
                for format in Format::ALL {
                    let n = native(&stack, format, &model, true).await;
                    let all = format!("{} {}", n.text(), String::from_utf8_lossy(&n.last));
                    assert!(!all.contains(secret), "{model} via {format} leaks the key: {all}");
                }
            }
        }
        for (up, ev) in &ups {
            assert_eq!(
                up.requests()[0]
                    .header("authorization")
                    .or(up.requests()[0].header("x-api-key"))
                    .or(up.requests()[0].header("x-goog-api-key"))
                    .map(|v| v.contains(secret)),
                Some(true)
            );
            assert!(ev.count() > 0);
        }
    })
    .await;
}

#[tokio::test]
async fn tool_calls_convert_from_every_upstream_kind() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_TOOLS_KEY");
        let mut cfg = BASE.to_string();
        let mut ups = Vec::new();
        for api in Api::ALL {
            let up = Upstream::with(Script {
                answer: Answer::Tool {
                    name: "get_weather".into(),
                    args: vec!["{\"city\":".into(), " \"Paris\"}".into()],
                },
                ..Default::default()
            })
            .await;
            let name = format!("tools-{}", api.kind());
            cfg.push_str(&chan(&name, api, &up, k, 1, &format!("models = [\"{name}\"]")));
            ups.push((api, up, name));
        }
        let (stack, _router) = gateway(&cfg).await;
        let mut failures = Vec::new();
        for (api, _up, name) in &ups {
            for format in Format::ALL {
                for stream in [true, false] {
                    let n = native(&stack, format, name, stream).await;
                    let text = n.text();
                    let ok = n.kind == ReplyKind::Done
                        && text.contains("get_weather")
                        && text.contains("Paris")
                        && (!stream || format.validate_stream(&n.bytes).is_ok());
                    if !ok {
                        let why = if stream { format.validate_stream(&n.bytes).err() } else { None };
                        failures.push(format!("{api:?} upstream → {format} client, stream={stream}: {why:?}\n{text}"));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n---\n"));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Real providers: only when their key is set (never in CI here).

async fn smoke(var: &str, api: Api, base: &str, default_model: &str) {
    if std::env::var(var).map_or(true, |v| v.trim().is_empty()) {
        eprintln!("skipped: {var} is not set");
        return;
    }
    let model_var = format!("AILURUS_SMOKE_{}_MODEL", api.kind().to_ascii_uppercase());
    let model = std::env::var(&model_var).unwrap_or_else(|_| default_model.to_string());
    let cfg = format!("{BASE}{}", chan_url("real", api, base, var, 1, &format!("models = [\"{model}\"]")));
    let (stack, router) = gateway(&cfg).await;
    for stream in [true, false] {
        let mut req = request(Platform::Claude, &model, "Reply with one word: pong", stream);
        req.max_tokens = Some(512);
        let s = seed_req(&stack, &req).await;
        assert_eq!(s.kind, ReplyKind::Done, "{var} stream={stream}: {s:?}");
        assert!(!s.resp.content.trim().is_empty(), "{s:?}");
        assert!(s.resp.tokens_input > 0 && s.resp.tokens_output > 0 && !s.resp.usage_estimated, "{s:?}");
        eprintln!(
            "{model} stream={stream}: {:?} ({} in, {} out)",
            s.resp.content, s.resp.tokens_input, s.resp.tokens_output
        );
    }
    assert_eq!(health(&router, "real").successes, 2);
}

#[tokio::test]
async fn real_openai_smoke() {
    smoke("OPENAI_API_KEY", Api::OpenAi, "https://api.openai.com/v1", "gpt-4o-mini").await;
}

#[tokio::test]
async fn real_anthropic_smoke() {
    smoke("ANTHROPIC_API_KEY", Api::Anthropic, "https://api.anthropic.com", "claude-haiku-4-5").await;
}

#[tokio::test]
async fn real_gemini_smoke() {
    smoke("GEMINI_API_KEY", Api::Gemini, "https://generativelanguage.googleapis.com", "gemini-2.5-flash").await;
}

#[tokio::test]
async fn a_request_no_channel_can_express_is_a_client_error() {
    bounded(Duration::from_secs(30), async {
        let k = key("AILURUS_T_UNMAPPABLE_KEY");
        let up = Upstream::start().await;
        let cfg = format!("{BASE}{}", chan("gem", Api::Gemini, &up, k, 1, ""));
        let (stack, router) = gateway(&cfg).await;
        // A tool result for a call that never happened: Gemini needs the tool's name.
        let body = serde_json::json!({"model": "m", "stream": true, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "call_unknown", "content": "42"}]});
        let n = native_raw(&stack, Format::OpenAiChat, "m", true, body.to_string().into_bytes(), &[]).await;
        let last = String::from_utf8_lossy(&n.last);
        assert_eq!((n.kind, n.status), (ReplyKind::Error, Some(400)), "{last}");
        assert!(last.contains("call_unknown") && last.contains("invalid_request_error"), "{last}");
        assert!(!last.contains("all channels failed"), "{last}");
        assert_eq!(up.count(), 0, "nothing was sent upstream");
        let h = health(&router, "gem");
        assert_eq!((h.failures, h.state.as_str()), (0, "ok"), "the channel is not to blame: {h:?}");
    })
    .await;
}

#[tokio::test]
async fn an_upstream_gone_quiet_mid_stream_ends_with_an_error_within_the_idle_bound() {
    bounded(Duration::from_secs(30), async {
        let k = key("AILURUS_T_IDLE_KEY");
        let (quiet, spare) = (Upstream::start().await, Upstream::with(answer("spare")).await);
        quiet.fault(Fault::Hang(2));
        let cfg = format!(
            "{BASE}{}{}",
            chan("quiet", Api::Anthropic, &quiet, k, 10, "[channels.timeouts]\nidle_ms = 300\n"),
            chan("spare", Api::OpenAi, &spare, k, 1, "")
        );
        let (stack, router) = gateway(&cfg).await;
        let t = Instant::now();
        let s = seed(&stack, "m", true).await;
        assert_eq!(s.chunks, ["Hello", " from"]);
        assert_eq!((s.kind, s.status), (ReplyKind::Error, Some(504)), "{s:?}");
        assert!(s.resp.error.as_deref().unwrap_or("").contains("no stream event within 300 ms"), "{s:?}");
        assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
        let st = quiet.wait_for(Duration::from_secs(2), |s| s.dropped == 1).await;
        assert_eq!(st.in_flight, 0, "the quiet connection was closed: {st:?}");
        assert_eq!(spare.count(), 0, "no failover after the first byte");
        assert_eq!(health(&router, "quiet").state, "cooling");
    })
    .await;
}

/// A `mock` channel serving exactly `model`, as the mock's `upstream_model`.
fn mock_chan(model: &str, upstream_model: &str, extra: &str) -> String {
    format!(
        "\n[[channels]]\nname = \"{model}\"\nkind = \"mock\"\npriority = 10\nmodels = [\"{model}\"]\n{extra}\n[channels.model_map]\n\"{model}\" = \"{upstream_model}\"\n"
    )
}

/// The total bound of the stream tests: long enough for a few pieces, far below the
/// streams' own length and the idle timeout.
const TOTAL_MS: u64 = 1200;
/// What the total bound may be overrun by on a loaded machine (reply hops, settle).
const TOTAL_SLACK: Duration = Duration::from_millis(900);

/// A stream that outlives the channel's `timeouts.total_ms` after the first byte — one that
/// keeps trickling (every gap well inside `idle_ms`) and one that stalls after its first
/// pieces — from every upstream API and the built-in mock, to a seed client and a native
/// client of each format: the client keeps what it got, then the usual in-stream error in
/// its own format (a valid stream), no failover, the request ends within `total_ms` plus a
/// small margin, the upstream connection is closed, and the ledger and the quota counter
/// bill exactly the delivered output (the upstreams report a huge usage that only a full
/// answer would carry).
#[tokio::test]
async fn total_timeout_bounds_streams_after_the_first_byte() {
    use ailurus::quota::account::QuotaStore;
    use ailurus::quota::tokens::TokenStore;
    bounded(Duration::from_secs(150), async {
        let k = key("AILURUS_T_TOTAL_KEY");
        // Pieces of exactly four bytes: each is one estimated token, so the billed output
        // tokens are the number of pieces delivered.
        let pieces: Vec<String> = (0..40).map(|i| format!("w{i:02} ")).collect();
        let script = |trickle: bool| Script {
            answer: Answer::Text(pieces.clone()),
            usage: Usage { input: 11, output: 100_000, ..Default::default() },
            fault: if trickle { Fault::None } else { Fault::Hang(3) },
            piece_delay: Duration::from_millis(if trickle { 150 } else { 0 }),
            ..Default::default()
        };
        let spare = Upstream::with(answer("must not be used")).await;
        let timeouts = format!("[channels.timeouts]\ntotal_ms = {TOTAL_MS}\nidle_ms = 20000\n");
        let mut cfg = format!(
            "[worker]\nrequest_timeout_ms = 20000\n[routing]\nbuiltin_mock = false\n{}",
            chan("spare", Api::OpenAi, &spare, k, 1, "")
        );
        let clients = ["seed", "anthropic", "openai", "responses", "gemini"];
        // (upstream name, fault name, scripted upstream or the mock); one channel per client
        // (named as its model), so that each request meets a fresh (not cooling) one.
        let mut groups: Vec<(String, &str, Option<Upstream>)> = Vec::new();
        for api in Api::ALL {
            for fault in ["trickle", "stall"] {
                let up = Upstream::with(script(fault == "trickle")).await;
                let name = format!("mock-tt-{}-{fault}", api.kind());
                for client in clients {
                    let model = format!("{name}-{client}");
                    cfg.push_str(&chan(&model, api, &up, k, 10, &format!("models = [\"{model}\"]\n{timeouts}")));
                }
                groups.push((name, fault, Some(up)));
            }
        }
        for (fault, upstream_model) in [("trickle", "mock-c60-d150"), ("stall", "mock-hang")] {
            let name = format!("mock-tt-mock-{fault}");
            for client in clients {
                cfg.push_str(&mock_chan(&format!("{name}-{client}"), upstream_model, &timeouts));
            }
            groups.push((name, fault, None));
        }
        let config: Config = toml::from_str(&cfg).unwrap_or_else(|e| panic!("{e}\n{cfg}"));
        config.validate().unwrap_or_else(|e| panic!("{e}\n{cfg}"));
        let router = Arc::new(Router::new(&config.routing, &config.channels).expect("router"));
        let mut stack = Stack::server_only().await;
        stack.apply_streams().await;
        stack.add_routed_worker(config, router.clone()).await;
        let js = async_nats::jetstream::new(stack.client.clone());
        let tokens = TokenStore::open(&js).await.unwrap();
        let quota = QuotaStore::open(stack.client.clone()).await.unwrap();
        let user = Token::new("user_id", "tina").unwrap();
        quota.topup(&user, 1_000_000_000).await.unwrap();
        let (token, _) = tokens.create("tina", "t", None, vec![], None).await.unwrap();
        let signed = || stack.requester().signed_by(&token);
        let formats = [
            ("anthropic", Format::AnthropicMessages),
            ("openai", Format::OpenAiChat),
            ("responses", Format::OpenAiResponses),
            ("gemini", Format::GeminiGenerate),
        ];
        let total = Duration::from_millis(TOTAL_MS);
        let longest = std::cell::Cell::new(Duration::ZERO);
        let in_bound = |took: Duration| {
            longest.set(longest.get().max(took));
            took >= total - Duration::from_millis(50) && took < total + TOTAL_SLACK
        };
        let mut failures = Vec::new();
        // Delivered output tokens per model (client), as the client saw them.
        let mut delivered: Vec<(String, u64)> = Vec::new();
        for (name, fault, up) in &groups {
            // The five clients of one upstream at once.
            let seed_model = format!("{name}-seed");
            let mut req = request(Platform::Claude, &seed_model, "hello upstream", true);
            req.user_id = "tina".into();
            let seed_call = async {
                let t = Instant::now();
                let s = seed_via(signed(), &req, HeaderMap::new()).await;
                (s, t.elapsed())
            };
            let natives = futures::future::join_all(formats.iter().map(|(client, format)| {
                let model = format!("{name}-{client}");
                let requester = signed();
                async move {
                    let t = Instant::now();
                    let body = native_body(*format, &model, true);
                    let n = native_via(requester, *format, &model, true, body, &[]).await;
                    (model, *format, n, t.elapsed())
                }
            }));
            let ((s, took), natives) = futures::join!(seed_call, natives);

            let check_seed = || -> Result<(), String> {
                if s.chunks.is_empty() {
                    return Err("nothing delivered before the cut".into());
                }
                if (s.kind, s.status) != (ReplyKind::Error, Some(504)) {
                    return Err(format!("final {:?} {:?}", s.kind, s.status));
                }
                let err = s.resp.error.as_deref().unwrap_or("");
                if !(err.contains("mid-stream") && err.contains(&format!("{TOTAL_MS} ms total timeout"))) {
                    return Err(format!("error {err:?}"));
                }
                if s.resp.content != s.chunks.concat() {
                    return Err("the final content is not what was streamed".into());
                }
                let want = ailurus::protocol::canonical::estimate_tokens(&s.chunks.concat());
                if (s.resp.tokens_output, s.resp.usage_estimated) != (want, true) {
                    return Err(format!("billed {} output tokens, delivered {want}", s.resp.tokens_output));
                }
                if !in_bound(took) {
                    return Err(format!("took {took:?}"));
                }
                Ok(())
            };
            if let Err(e) = check_seed() {
                failures.push(format!("{seed_model} (seed): {e}\n{s:?}"));
            }
            delivered.push((seed_model, s.resp.tokens_output));
            for (model, format, n, took) in natives {
                let text = n.text();
                // The scripted pieces delivered; the mock's words are counted from the ledger.
                let got = pieces.iter().filter(|p| text.contains(p.trim_end())).count() as u64;
                let check = || -> Result<(), String> {
                    if n.first_status != Some(200) {
                        return Err(format!("first status {:?}", n.first_status));
                    }
                    if up.is_some() && got == 0 {
                        return Err("nothing delivered before the cut".into());
                    }
                    format.validate_stream(&n.bytes).map_err(|e| format!("invalid stream: {e}"))?;
                    if !text.contains("total timeout") {
                        return Err("no error event naming the total timeout".into());
                    }
                    if n.kind != ReplyKind::Error {
                        return Err(format!("final {:?}", n.kind));
                    }
                    if !in_bound(took) {
                        return Err(format!("took {took:?}"));
                    }
                    Ok(())
                };
                if let Err(e) = check() {
                    failures.push(format!("{model} ({format} client, {fault}): {e}\n{text}"));
                }
                if up.is_some() {
                    delivered.push((model, got));
                }
            }
            if let Some(up) = up {
                let st = up.wait_for(Duration::from_secs(3), |s| s.dropped == 5).await;
                if (st.received, st.dropped, st.in_flight) != (5, 5, 0) {
                    failures.push(format!("{name}: the upstream connections were not all closed: {st:?}"));
                }
            }
            for client in clients {
                let h = health(&router, &format!("{name}-{client}"));
                if (h.failures, h.state.as_str()) != (1, "cooling") {
                    failures.push(format!("{name}-{client}: channel {h:?}"));
                }
            }
        }
        assert_eq!(spare.count(), 0, "no failover after the first byte");
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n---\n"));
        println!("total_ms {TOTAL_MS}: the longest request took {:?}", longest.get());

        // The ledger: one usage record per request, its output the delivered tokens, its
        // charge their price; the quota counter holds exactly the sum.
        let want = groups.len() * 5;
        let records = usage_records(&stack.client, &user, want, WAIT).await;
        assert_eq!(records.len(), want, "one record per request");
        let prices = ailurus::pricing::PriceTable::new(&[], ailurus::pricing::BuiltinPrices::MockNames);
        for r in &records {
            assert!(r.estimated && r.status == 504, "{r:?}");
            assert!(r.output_tokens > 0 && r.output_tokens < 40, "only a part was delivered: {r:?}");
            if let Some((_, got)) = delivered.iter().find(|(m, _)| *m == r.model) {
                assert_eq!(r.output_tokens, *got, "{}: billed output = delivered output", r.model);
            }
            let usage = ailurus::protocol::canonical::Usage {
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                ..Default::default()
            };
            assert_eq!(r.quota, ailurus::pricing::usd_to_quota(prices.cost(&r.model, &usage)), "{r:?}");
        }
        let used = common::quiet_balance(&quota, &user).await.used;
        assert_eq!(used, records.iter().map(|r| r.quota).sum::<i64>(), "the counter holds the ledger's sum");
    })
    .await;
}

/// A whole (non-stream) answer whose body does not come within `total_ms` — headers at
/// once, then half the body and silence, or the body only after a long pause, or the mock
/// hanging — is given up at the total bound and fails over (nothing reached the client yet).
#[tokio::test]
async fn total_timeout_bounds_a_whole_body() {
    bounded(Duration::from_secs(60), async {
        let k = key("AILURUS_T_TOTAL_BODY_KEY");
        let (half, late) = (Upstream::start().await, Upstream::start().await);
        half.fault(Fault::Hang(0));
        late.fault(Fault::SlowStream(Duration::from_secs(10)));
        let spare = Upstream::with(answer("from spare")).await;
        let t = format!("[channels.timeouts]\ntotal_ms = {TOTAL_MS}\nidle_ms = 20000\n");
        let mut cfg = format!("{BASE}{}", chan("spare", Api::Gemini, &spare, k, 1, ""));
        // One channel per client (named as its model): the first failure cools a channel.
        for client in ["seed", "native"] {
            let model = |c: &str| format!("{c}-{client}");
            cfg.push_str(&chan(
                &model("half"),
                Api::OpenAi,
                &half,
                k,
                10,
                &format!("models = [\"{}\"]\n{t}", model("half")),
            ));
            cfg.push_str(&chan(
                &model("late"),
                Api::Anthropic,
                &late,
                k,
                10,
                &format!("models = [\"{}\"]\n{t}", model("late")),
            ));
            cfg.push_str(&mock_chan(&model("hang"), "mock-hang", &t));
        }
        let (stack, router) = gateway(&cfg).await;
        let total = Duration::from_millis(TOTAL_MS);
        for channel in ["half", "late", "hang"] {
            let start = Instant::now();
            let s = seed(&stack, &format!("{channel}-seed"), false).await;
            let took = start.elapsed();
            assert_eq!((s.kind, s.resp.content.as_str()), (ReplyKind::Done, "from spare"), "{channel}: {s:?}");
            assert!(took >= total && took < total + TOTAL_SLACK, "{channel}: {took:?}");
            let start = Instant::now();
            let n = native(&stack, Format::AnthropicMessages, &format!("{channel}-native"), false).await;
            let took = start.elapsed();
            assert_eq!((n.kind, n.first_status), (ReplyKind::Done, Some(200)), "{channel}: {}", n.text());
            assert!(n.text().contains("from spare"), "{channel}: {}", n.text());
            assert!(took >= total && took < total + TOTAL_SLACK, "{channel}: {took:?}");
        }
        for (name, up) in [("half", &half), ("late", &late)] {
            let st = up.wait_for(Duration::from_secs(3), |s| s.dropped == 2).await;
            assert_eq!((st.received, st.dropped, st.in_flight), (2, 2, 0), "{name}: {st:?}");
        }
        for channel in ["half", "late", "hang"] {
            for client in ["seed", "native"] {
                // (Its cooldown may be over by now.)
                let h = health(&router, &format!("{channel}-{client}"));
                assert_eq!((h.successes, h.failures), (0, 1), "{h:?}");
            }
        }
        assert_eq!(spare.count(), 6);
    })
    .await;
}

#[tokio::test]
async fn keys_rotate_and_configured_headers_are_sent() {
    bounded(Duration::from_secs(30), async {
        let (k1, k2) = (key("AILURUS_T_ROTATE_KEY_1"), key("AILURUS_T_ROTATE_KEY_2"));
        let mut cfg = BASE.to_string();
        let mut ups = Vec::new();
        for api in Api::ALL {
            let up = Upstream::start().await;
            let name = format!("rot-{}", api.kind());
            cfg.push_str(&format!(
                "\n[[channels]]\nname = \"{name}\"\nkind = \"{}\"\nbase_url = \"{}\"\napi_key_env = [\"{k1}\", \"{k2}\"]\nmodels = [\"{name}\"]\n[channels.headers]\nx-tenant = \"t-42\"\n",
                api.kind(),
                up.base_url(api)
            ));
            ups.push((api, up, name));
        }
        let (stack, _router) = gateway(&cfg).await;
        for (api, up, name) in &ups {
            for i in 0..4 {
                assert_eq!(seed(&stack, name, i % 2 == 0).await.kind, ReplyKind::Done);
            }
            let keys: Vec<String> = up
                .requests()
                .iter()
                .map(|r| {
                    assert_eq!(r.header("x-tenant"), Some("t-42"), "{api:?}");
                    let auth = match api {
                        Api::OpenAi | Api::Responses => r.header("authorization").unwrap().trim_start_matches("Bearer "),
                        Api::Anthropic => r.header("x-api-key").unwrap(),
                        Api::Gemini => r.header("x-goog-api-key").unwrap(),
                    };
                    auth.to_string()
                })
                .collect();
            let (a, b) = (format!("key-of-{k1}"), format!("key-of-{k2}"));
            assert_eq!(keys, [a.clone(), b.clone(), a, b], "{api:?}: keys are used round robin");
            // No key ever travels in a URL.
            assert!(up.requests().iter().all(|r| !r.path.contains("key-of-")), "{api:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn fields_only_a_same_format_upstream_takes_pass_through_and_are_refused_otherwise() {
    bounded(Duration::from_secs(30), async {
        let k = key("AILURUS_T_STRICT_KEY");
        let gem = Upstream::start().await;
        let base = BASE.replace("builtin_mock = false", "builtin_mock = true");
        let cfg = format!("{base}{}", chan("gem", Api::Gemini, &gem, k, 1, "models = [\"gemini-*\"]"));
        let (stack, _router) = gateway(&cfg).await;
        // `cachedContent` is stateful: no conversion can carry it, but Gemini itself can.
        let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"cachedContent":"cachedContents/abc"}"#;
        let n = native_raw(&stack, Format::GeminiGenerate, "gemini-x", true, body.as_bytes().to_vec(), &[]).await;
        assert_eq!(n.kind, ReplyKind::Done, "{}", String::from_utf8_lossy(&n.last));
        assert_eq!(String::from_utf8_lossy(&gem.requests().pop().unwrap().body), body);
        // The same field towards the mock (no Gemini channel serves mock*): the parser's 400.
        let n = native_raw(&stack, Format::GeminiGenerate, "mock", true, body.as_bytes().to_vec(), &[]).await;
        let last = String::from_utf8_lossy(&n.last);
        assert_eq!((n.kind, n.status), (ReplyKind::Error, Some(400)), "{last}");
        assert!(last.contains("cachedContent"), "{last}");
    })
    .await;
}

#[tokio::test]
async fn count_tokens_goes_to_an_upstream_that_counts_else_is_local() {
    bounded(Duration::from_secs(30), async {
        let k = key("AILURUS_T_COUNT_KEY");
        let (anth, gem) = (Upstream::start().await, Upstream::start().await);
        let cfg = format!(
            "{BASE}{}{}",
            chan("anth", Api::Anthropic, &anth, k, 1, "models = [\"claude-*\"]"),
            chan("gem", Api::Gemini, &gem, k, 1, "models = [\"gemini-*\"]")
        );
        let (stack, _router) = gateway(&cfg).await;
        let body = r#"{"model":"claude-x","messages":[{"role":"user","content":"count me"}],"x_new":1}"#;
        let n = native_op(&stack, Format::AnthropicMessages, "count_tokens", None, body).await;
        assert_eq!(n, r#"{"input_tokens":4242}"#);
        let got = anth.requests().pop().unwrap();
        assert_eq!(got.path, "/v1/messages/count_tokens");
        assert_eq!(String::from_utf8_lossy(&got.body), body, "passed through as is");
        let n = native_op(
            &stack,
            Format::GeminiGenerate,
            "count_tokens",
            Some("gemini-x"),
            r#"{"contents":[{"parts":[{"text":"hi"}]}]}"#,
        )
        .await;
        assert_eq!(n, r#"{"totalTokens":4343}"#);
        assert_eq!(gem.requests().pop().unwrap().path, "/v1beta/models/gemini-x:countTokens");
        // A model only a differently shaped channel serves: counted locally (o200k).
        let n = native_op(
            &stack,
            Format::GeminiGenerate,
            "count_tokens",
            Some("claude-x"),
            r#"{"contents":[{"parts":[{"text":"hello world"}]}]}"#,
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&n).unwrap();
        assert!(v["totalTokens"].as_u64().unwrap() > 0 && v["totalTokens"] != 4343, "{n}");
    })
    .await;
}

/// Send a native request with an `Ailurus-Op`; return the body written to the client.
async fn native_op(stack: &Stack, format: Format, op: &str, model: Option<&str>, body: &str) -> String {
    let mut h = async_nats::HeaderMap::new();
    h.insert(ailurus::bus::headers::FORMAT, format.as_str());
    h.insert(ailurus::bus::headers::OP, op);
    if let Some(m) = model {
        h.insert(ailurus::bus::headers::MODEL, m);
    }
    let subject = ailurus::bus::subjects::request(platform_of(format));
    let mut replies = stack.requester().send_raw(subject, h, body.as_bytes().to_vec().into(), None).await.unwrap();
    let r = replies.next_content().await.unwrap().unwrap();
    assert_eq!(r.kind, ReplyKind::Chunk, "{}", String::from_utf8_lossy(&r.payload));
    String::from_utf8(r.payload.to_vec()).unwrap()
}
