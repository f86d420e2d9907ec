//! Signed reasoning end to end: clients of every format (each keeping only what the real
//! client keeps, `support/clients.rs`) run tool loops through real workers on a real
//! nats-server against scripted upstreams that sign their reasoning on every tool-call turn
//! and answer 400, as the real APIs do, when a follow-up lacks it (`support/signed.rs`).
//! Follow-ups are served by another worker than the first turn (the Chat client's reasoning
//! store is shared in KV); an expired store entry lets the upstream's own 400 reach the client
//! in the Chat format; a client that switches providers never sends the new upstream a
//! signature of the old one.

#[path = "support/clients.rs"]
mod clients;
mod common;
#[path = "support/signed.rs"]
mod signed;

use ailurus::bus::headers::{self, ReplyKind};
use ailurus::bus::subjects::{self, Token};
use ailurus::config::Config;
use ailurus::formats::Format;
use ailurus::shutdown::Shutdown;
use async_nats::HeaderMap;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use clients::{follow_up, kept_by_client, Kept};
use common::{platform_of, Stack};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Longest any single wait may take.
const WAIT: Duration = Duration::from_secs(20);

/// The signing upstreams and the model each is asked for.
const SIGNERS: [(Format, &str); 3] = [
    (Format::AnthropicMessages, "claude-sonnet-4-5"),
    (Format::OpenAiResponses, "gpt-5"),
    (Format::GeminiGenerate, "gemini-3-pro-preview"),
];

/// Which API a request to the scripted upstream speaks, by its path.
fn api_of(path: &str) -> Option<Format> {
    if path.ends_with("/messages") {
        Some(Format::AnthropicMessages)
    } else if path.ends_with("/responses") {
        Some(Format::OpenAiResponses)
    } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        Some(Format::GeminiGenerate)
    } else {
        None
    }
}

/// The API's own 400 body.
fn refusal(api: Format, message: &str) -> Value {
    match api {
        Format::AnthropicMessages => {
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
        }
        Format::GeminiGenerate => json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}),
        _ => json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    }
}

/// How many tool-call turns a follow-up replays: its tool results, two per turn.
fn prior_turns(api: Format, body: &Value) -> usize {
    let marker = match api {
        Format::AnthropicMessages => "\"type\":\"tool_result\"",
        Format::OpenAiResponses => "\"type\":\"function_call_output\"",
        _ => "\"functionResponse\"",
    };
    body.to_string().matches(marker).count() / signed::CITIES.len()
}

/// One upstream request: refuse a follow-up without the reasoning issued, else answer the
/// next turn, whole or streamed.
async fn signing_upstream(uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let Some(api) = api_of(&path) else {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Body::empty()).unwrap_or_default();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return Response::builder().status(StatusCode::BAD_REQUEST).body(Body::empty()).unwrap_or_default();
    };
    let prior = prior_turns(api, &v);
    if let Err(message) = signed::demand(api, &v, prior) {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header("content-type", "application/json")
            .body(Body::from(refusal(api, &message).to_string()))
            .unwrap_or_default();
    }
    let stream = match api {
        Format::GeminiGenerate => path.contains(":streamGenerateContent"),
        _ => v["stream"] == json!(true),
    };
    let (ct, text) = if stream {
        ("text/event-stream", signed::stream(api, prior + 1))
    } else {
        ("application/json", signed::body(api, prior + 1).to_string())
    };
    Response::builder().header("content-type", ct).body(Body::from(text)).unwrap_or_default()
}

/// Start the scripted upstream; its base URL.
async fn start_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("address");
    let app = axum::Router::new().fallback(signing_upstream);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// Open mode, one channel per signing upstream on `base`.
fn config(base: &str) -> Config {
    std::env::set_var("AILURUS_REASONING_TEST_KEY", "sk-test");
    let mut toml = String::from(
        "[auth]\nmode = \"open\"\n[worker]\nrequest_timeout_ms = 20000\n[routing]\nbuiltin_mock = false\n",
    );
    for (kind, url, models) in [
        ("anthropic", base.to_string(), "claude-*"),
        ("openai_responses", format!("{base}/v1"), "gpt-5*"),
        ("gemini", base.to_string(), "gemini-*"),
    ] {
        toml.push_str(&format!(
            "\n[[channels]]\nname = \"{kind}\"\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key_env = [\"AILURUS_REASONING_TEST_KEY\"]\nmodels = [\"{models}\"]\n"
        ));
    }
    let config: Config = toml::from_str(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config.validate().unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config
}

/// A worker of its own, stopped by its own shutdown.
async fn spawn_worker(url: &str, config: Config) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let client = ailurus::bus::connect(url, "reasoning-worker").await.expect("connect worker");
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let router = Arc::new(ailurus::router::Router::new(&config.routing, &config.channels).expect("router"));
    let serving = ailurus::worker::start(client, &config, router, stop).await.expect("worker start");
    let task = tokio::spawn(async move { serving.run().await.expect("worker run") });
    (shutdown, task)
}

/// Every client format.
const CLIENTS: [Format; 4] =
    [Format::AnthropicMessages, Format::OpenAiChat, Format::OpenAiResponses, Format::GeminiGenerate];

/// What a request got: the bytes a bridge would write, and the final status.
struct Got {
    /// The chunks' bytes (or the error body).
    bytes: Vec<u8>,
    /// The final reply's kind.
    kind: ReplyKind,
    /// The final reply's status.
    status: Option<u16>,
}

/// Send a `client`'s follow-up of `history` for `model`.
async fn send(stack: &Stack, client: Format, model: &str, history: &[Kept], stream: bool) -> Got {
    let mut body: Value = serde_json::from_slice(&follow_up(client, history)).expect("JSON");
    let trace = Token::random();
    let mut h = HeaderMap::new();
    h.insert(headers::FORMAT, client.as_str());
    h.insert(headers::TRACE, trace.as_str());
    if client == Format::GeminiGenerate {
        h.insert(headers::MODEL, model);
        h.insert(headers::OP, if stream { "stream" } else { "generate" });
    } else {
        body["model"] = json!(model);
        body["stream"] = json!(stream);
    }
    let mut replies = stack
        .requester()
        .send_raw(subjects::request(platform_of(client)), h, body.to_string().into(), Some(trace))
        .await
        .expect("send");
    let mut got = Got { bytes: Vec::new(), kind: ReplyKind::Error, status: None };
    loop {
        let r = tokio::time::timeout(WAIT, replies.next()).await.expect("reply in time").expect("a final reply");
        let r = r.expect("reply");
        match r.kind {
            ReplyKind::Heartbeat => {}
            ReplyKind::Chunk => got.bytes.extend_from_slice(&r.payload),
            kind => {
                got.kind = kind;
                got.status = r.status;
                if kind == ReplyKind::Error && got.bytes.is_empty() {
                    got.bytes = r.payload.to_vec();
                }
                return got;
            }
        }
    }
}

/// One more turn of a loop: send, check it succeeded, keep what the client keeps.
async fn turn(stack: &Stack, client: Format, model: &str, history: &mut Vec<Kept>, stream: bool) {
    let got = send(stack, client, model, history, stream).await;
    let text = String::from_utf8_lossy(&got.bytes);
    assert_eq!(
        got.kind,
        ReplyKind::Done,
        "{client} client, {model}, stream {stream}, turn {}: {text}",
        history.len() + 1
    );
    let kept = kept_by_client(client, &got.bytes, stream);
    assert_eq!(kept.1.len(), 2, "{model}: two parallel calls: {text}");
    history.push(kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_keeps_every_signers_reasoning_across_workers() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let base = start_upstream().await;
        let stack = Stack::server_only().await;
        stack.apply_streams().await;
        // Worker A serves the first turn of every loop, then stops; worker B serves the rest.
        let (stop_a, task_a) = spawn_worker(&stack.server.url, config(&base)).await;
        let mut loops = Vec::new();
        for client in CLIENTS {
            for (upstream, model) in SIGNERS {
                if client == upstream {
                    continue; // pass-through (tests/providers.rs)
                }
                for stream in [false, true] {
                    let mut history = Vec::new();
                    turn(&stack, client, model, &mut history, stream).await;
                    loops.push((client, model, stream, history));
                }
            }
        }
        stop_a.trigger();
        tokio::time::timeout(WAIT, task_a).await.expect("worker A drains").expect("worker A ends");
        let (_stop_b, _task_b) = spawn_worker(&stack.server.url, config(&base)).await;
        for (client, model, stream, history) in &mut loops {
            // Turn 2 replays turn 1 (two-turn loop); the streamed loops go on to five turns.
            let turns = if *stream { 5 } else { 2 };
            while history.len() < turns {
                turn(&stack, *client, model, history, *stream).await;
            }
        }
    })
    .await
    .expect("test within its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_lets_the_upstreams_own_400_reach_the_chat_client() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let base = start_upstream().await;
        let stack = Stack::server_only().await;
        stack.apply_streams().await;
        let (_stop, _task) = spawn_worker(&stack.server.url, config(&base)).await;
        for (api, model) in SIGNERS {
            let mut history = Vec::new();
            turn(&stack, Format::OpenAiChat, model, &mut history, false).await;
            // Expire every entry (as the bucket's max age would).
            let kv = async_nats::jetstream::new(stack.client.clone())
                .get_key_value("REASONING")
                .await
                .expect("the REASONING bucket");
            // The entry is written after the final reply: wait for it (5 s at most).
            let mut n = 0;
            for _ in 0..50 {
                let mut keys = kv.keys().await.expect("keys");
                while let Some(k) = keys.next().await {
                    kv.purge(k.expect("key")).await.expect("purge");
                    n += 1;
                }
                if n > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(n >= 1, "{model}: the first turn kept an entry");
            let got = send(&stack, Format::OpenAiChat, model, &history, false).await;
            assert_eq!(got.kind, ReplyKind::Error, "{model}");
            assert_eq!(got.status, Some(400), "{model}: the upstream's own status");
            let err: Value = serde_json::from_slice(&got.bytes).expect("a JSON error body");
            let message = err["error"]["message"].as_str().unwrap_or_else(|| panic!("Chat error shape: {err}"));
            let needle = match api {
                Format::AnthropicMessages => "must start with a thinking block",
                Format::OpenAiResponses => "without its required 'reasoning' item",
                _ => "is missing a `thought_signature`",
            };
            assert!(message.contains(needle), "{model}: the upstream's own message ({needle:?}) in {message:?}");
        }
    })
    .await
    .expect("test within its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_switches_providers_never_sends_the_old_signature() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let base = start_upstream().await;
        let stack = Stack::server_only().await;
        stack.apply_streams().await;
        let (_stop, _task) = spawn_worker(&stack.server.url, config(&base)).await;
        // A turn signed by each other API, then a follow-up to the client's own API: the
        // body, pass-through otherwise, is converted so that only its own signatures remain.
        for (client, own_model) in SIGNERS {
            for (other, model) in SIGNERS.into_iter().filter(|(f, _)| *f != client) {
                let mut history = Vec::new();
                turn(&stack, client, model, &mut history, true).await;
                let got = send(&stack, client, own_model, &history, true).await;
                let text = String::from_utf8_lossy(&got.bytes);
                // The switched-to API refuses a tool loop it did not sign, as the real one
                // would, but for the missing reasoning, never for a foreign signature.
                assert!(
                    !text.contains("invalid signature"),
                    "{client} client switching from {other}: a foreign signature reached {client}: {text}"
                );
                assert_eq!(got.status, Some(400), "{client} after {other}: {text}");
            }
        }
    })
    .await
    .expect("test within its bound");
}

/// What the reasoning store costs a Chat Completions request whose answer carries signed
/// reasoning: CPU to pick and serialise what to keep (after the answer), CPU to find and put
/// it back into a five-turn follow-up, and one KV write and one KV read against a local
/// nats-server. Run: `cargo test --release --test reasoning_e2e reasoning_store_cost --
/// --ignored --nocapture` (BENCHMARKS.md records the figures).
#[tokio::test]
#[ignore = "a benchmark: prints figures"]
async fn reasoning_store_cost() {
    use ailurus::formats::reasoning::{kept, restore, wanted};
    use ailurus::protocol::canonical::{ChatRequest, Message, Part, Role};
    use std::hint::black_box;
    use std::time::Instant;
    let call = |id: &str| Part::ToolCall {
        id: id.into(),
        name: "read_file".into(),
        arguments: r#"{"path":"src/lib.rs"}"#.into(),
        signature: None,
    };
    // 2 KB of thinking with a 400-byte signature, then two parallel calls.
    let answer = vec![
        Part::Thinking { text: "t".repeat(2048), signature: Some(format!("ailurus.anthropic.{}", "s".repeat(400))) },
        call("call_1"),
        call("call_2"),
    ];
    let n = 20_000u32;
    let t = Instant::now();
    for _ in 0..n {
        let (key, parts) = kept(black_box(&answer)).expect("signed reasoning is kept");
        black_box((key, serde_json::to_vec(&parts).expect("serialise")));
    }
    let keep_ns = t.elapsed().as_nanos() / u128::from(n);
    let stored = serde_json::to_vec(&kept(&answer).expect("kept").1).expect("serialise");
    // A follow-up as a chat client sends it: five tool turns, each call without reasoning.
    let mut req = ChatRequest { model: "m".into(), ..Default::default() };
    req.messages.push(Message { role: Role::User, content: vec![Part::Text { text: "fix it".into() }] });
    for turn in 0..5 {
        let id = format!("call_{turn}");
        req.messages.push(Message { role: Role::Assistant, content: vec![call(&id)] });
        let result = Part::ToolResult {
            call_id: id,
            name: None,
            content: vec![Part::Text { text: "fn main() {}".into() }],
            is_error: false,
        };
        req.messages.push(Message { role: Role::User, content: vec![result] });
    }
    let t = Instant::now();
    for _ in 0..n {
        let mut r = req.clone();
        assert_eq!(wanted(&r).len(), 5);
        restore(&mut r, |_| serde_json::from_slice(&stored).ok());
        black_box(r);
    }
    let restore_ns = t.elapsed().as_nanos() / u128::from(n);

    let stack = Stack::server_only().await;
    stack.apply_streams().await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let kv = js.get_key_value("REASONING").await.expect("REASONING bucket");
    let m = 2_000u32;
    let t = Instant::now();
    for i in 0..m {
        kv.put(format!("bench.{i}"), stored.clone().into()).await.expect("put");
    }
    let put_us = t.elapsed().as_micros() / u128::from(m);
    let t = Instant::now();
    for i in 0..m {
        assert!(kv.get(format!("bench.{i}")).await.expect("get").is_some());
    }
    let get_us = t.elapsed().as_micros() / u128::from(m);
    println!(
        "reasoning store, {} B entry: keep + serialise {keep_ns} ns; find + restore into 5 turns {restore_ns} ns; \
         KV write {put_us} µs, KV read {get_us} µs (local nats-server, sequential)",
        stored.len()
    );
}
