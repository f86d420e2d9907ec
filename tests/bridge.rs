//! The HTTP bridge over a real nats-server, worker and scripted upstream: every route,
//! header forwarding, SSE flushing, disconnect → cancel → upstream dropped, errors in the
//! caller's shape, and two bridges at once.

mod common;

use ailurus::bridge::BridgeConfig;
use ailurus::formats::Format;
use common::upstream::{Answer, Api, Fault, Upstream};
use common::Stack;
use std::time::{Duration, Instant};
#[path = "support/grammar/mod.rs"]
mod grammar;
use grammar::ValidateStream;

/// A bridge on a free port; returns its base URL.
async fn bridge(stack: &Stack, config: BridgeConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, shutdown) = (stack.client.clone(), stack.shutdown.clone());
    tokio::spawn(async move { ailurus::bridge::serve(listener, client, config, shutdown).await });
    format!("http://{addr}")
}

/// A worker (open mode) with an Anthropic and an OpenAI scripted channel for `up-*` models,
/// and the built-in mock (turned on explicitly beside them) for `mock*`.
async fn gateway(anth: &Upstream, oai: &Upstream) -> Stack {
    std::env::set_var("AILURUS_T_BRIDGE_KEY", "key-of-bridge-tests");
    let cfg = format!(
        "[auth]\nmode = \"open\"\n[routing]\nbuiltin_mock = true\n\
         [[channels]]\nname = \"anth\"\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key_env = [\"AILURUS_T_BRIDGE_KEY\"]\nmodels = [\"up-claude*\"]\n\
         [[channels]]\nname = \"oai\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = [\"AILURUS_T_BRIDGE_KEY\"]\nmodels = [\"up-gpt*\"]\n",
        anth.base_url(Api::Anthropic),
        oai.base_url(Api::OpenAi)
    );
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    stack.add_worker(ailurus::config::Config::from_toml(&cfg).unwrap()).await;
    stack
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// One route case: method, path, extra header, body, expected status, content type prefix,
/// a substring of the body, and the format whose stream grammar the body must follow.
struct Case {
    method: &'static str,
    path: &'static str,
    header: Option<(&'static str, &'static str)>,
    body: &'static str,
    status: u16,
    content_type: &'static str,
    contains: &'static str,
    stream: Option<Format>,
}

const fn case(
    method: &'static str,
    path: &'static str,
    body: &'static str,
    status: u16,
    content_type: &'static str,
    contains: &'static str,
) -> Case {
    Case { method, path, header: None, body, status, content_type, contains, stream: None }
}

const CHAT: &str = r#"{"model":"mock","messages":[{"role":"user","content":"route test"}]}"#;
const CHAT_STREAM: &str = r#"{"model":"mock","stream":true,"messages":[{"role":"user","content":"route test"}]}"#;
const ANTH: &str = r#"{"model":"mock","max_tokens":50,"messages":[{"role":"user","content":"route test"}]}"#;
const ANTH_STREAM: &str =
    r#"{"model":"mock","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"route test"}]}"#;
const RESP: &str = r#"{"model":"mock","input":"route test"}"#;
const RESP_STREAM: &str = r#"{"model":"mock","stream":true,"input":"route test"}"#;
const GEM: &str = r#"{"contents":[{"role":"user","parts":[{"text":"route test"}]}]}"#;

fn cases() -> Vec<Case> {
    let mut v = vec![
        case("POST", "/v1/messages", ANTH, 200, "application/json", "\"type\":\"message\""),
        Case {
            stream: Some(Format::AnthropicMessages),
            ..case("POST", "/v1/messages?beta=true", ANTH_STREAM, 200, "text/event-stream", "message_stop")
        },
        case("POST", "/v1/messages/count_tokens", ANTH, 200, "application/json", "\"input_tokens\""),
        case("POST", "/responses", RESP, 200, "application/json", "\"object\":\"response\""),
        Case {
            stream: Some(Format::OpenAiResponses),
            ..case("POST", "/v1/responses", RESP_STREAM, 200, "text/event-stream", "response.completed")
        },
        case("POST", "/v1/chat/completions", CHAT, 200, "application/json", "chat.completion"),
        // JSON as `curl -d` sends it (form content type) is JSON all the same.
        Case {
            header: Some(("content-type", "application/x-www-form-urlencoded")),
            ..case("POST", "/v1/chat/completions", CHAT, 200, "application/json", "chat.completion")
        },
        Case {
            header: Some(("content-type", "application/x-www-form-urlencoded")),
            ..case("POST", "/v1/messages", ANTH, 200, "application/json", "\"type\":\"message\"")
        },
        Case {
            stream: Some(Format::OpenAiChat),
            ..case("POST", "/chat/completions", CHAT_STREAM, 200, "text/event-stream", "[DONE]")
        },
        case("POST", "/v1beta/models/mock:generateContent", GEM, 200, "application/json", "\"candidates\""),
        Case {
            stream: Some(Format::GeminiGenerate),
            ..case(
                "POST",
                "/v1beta/models/mock:streamGenerateContent?alt=sse",
                GEM,
                200,
                "text/event-stream",
                "finishReason",
            )
        },
        case("POST", "/v1beta/models/mock:countTokens", GEM, 200, "application/json", "\"totalTokens\""),
        case("POST", "/v1/models/mock:generateContent", GEM, 200, "application/json", "\"candidates\""),
        Case {
            stream: Some(Format::GeminiGenerate),
            ..case(
                "POST",
                "/v1/models/mock:streamGenerateContent?alt=sse",
                GEM,
                200,
                "text/event-stream",
                "finishReason",
            )
        },
        case("POST", "/v1/models/mock:countTokens", GEM, 200, "application/json", "\"totalTokens\""),
        case("GET", "/v1/models", "", 200, "application/json", "\"object\":\"list\""),
        case("GET", "/models", "", 200, "application/json", "\"object\":\"list\""),
        Case {
            header: Some(("anthropic-version", "2023-06-01")),
            ..case("GET", "/v1/models", "", 200, "application/json", "\"has_more\"")
        },
        case("GET", "/v1beta/models", "", 200, "application/json", "\"models/mock\""),
        case("GET", "/", "", 200, "text/html", "<title>Ailurus console</title>"),
        case("HEAD", "/", "", 200, "", ""),
        case("GET", "/healthz", "", 200, "application/json", "\"ok\""),
        case("GET", "/metrics", "", 200, "text/plain", "ailurus_bridge_requests_total"),
        // Open mode: the user API explains that it needs token authentication.
        case("GET", "/api/user/self", "", 404, "application/json", "\"success\":false"),
        case("GET", "/nope", "", 404, "application/json", "no route for GET /nope"),
        case(
            "POST",
            "/v1/messages",
            r#"{"model":"mock","messages":"x"}"#,
            400,
            "application/json",
            "invalid_request_error",
        ),
        case(
            "POST",
            "/v1/chat/completions",
            r#"{"model":"no-such","messages":[{"role":"user","content":"x"}]}"#,
            404,
            "application/json",
            "no channel serves model",
        ),
    ];
    v.push(Case {
        header: Some(("x-goog-api-key", "k")),
        ..case("GET", "/v1/models", "", 200, "application/json", "\"models/mock\"")
    });
    v
}

#[tokio::test]
async fn every_route_answers_in_its_own_shape() {
    let (anth, oai) = (Upstream::start().await, Upstream::start().await);
    let stack = gateway(&anth, &oai).await;
    let base = bridge(&stack, BridgeConfig::default()).await;
    let http = http();
    for c in cases() {
        let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
        let mut req = http.request(method, format!("{base}{}", c.path));
        if let Some((k, v)) = c.header {
            req = req.header(k, v);
        }
        if !c.body.is_empty() {
            req = req.body(c.body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body = resp.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&body);
        let what = format!("{} {}", c.method, c.path);
        assert_eq!(status, c.status, "{what}: {text}");
        assert!(ct.starts_with(c.content_type), "{what}: content-type {ct:?}");
        assert!(text.contains(c.contains), "{what}: {text}");
        if let Some(f) = c.stream {
            f.validate_stream(&body).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
        }
    }
}

#[tokio::test]
async fn api_headers_go_along_and_credentials_do_not() {
    let (anth, oai) = (Upstream::start().await, Upstream::start().await);
    let stack = gateway(&anth, &oai).await;
    let base = bridge(&stack, BridgeConfig::default()).await;
    let body = r#"{"model":"up-claude-x","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = http()
        .post(format!("{base}/v1/messages?beta=true"))
        .header("x-api-key", "sk-client-secret-123456")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14,context-management-2025-06-27")
        .header("user-agent", "claude-cli/2.1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    Format::AnthropicMessages.validate_stream(&bytes).unwrap();
    let got = anth.requests().pop().expect("the upstream was called");
    assert_eq!(got.header("anthropic-beta"), Some("interleaved-thinking-2025-05-14,context-management-2025-06-27"));
    assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
    // The upstream gets the channel's key, never the client's token.
    assert_eq!(got.header("x-api-key"), Some("key-of-bridge-tests"));
    assert!(!format!("{:?}", got).contains("sk-client-secret-123456"));
}

#[tokio::test]
async fn sse_chunks_are_flushed_as_they_arrive() {
    let (anth, oai) = (Upstream::start().await, Upstream::start().await);
    oai.script(|s| {
        s.answer = Answer::text(&["one ", "two ", "three ", "four ", "five"]);
        s.piece_delay = Duration::from_millis(300);
    });
    let stack = gateway(&anth, &oai).await;
    let base = bridge(&stack, BridgeConfig::default()).await;
    let start = Instant::now();
    let mut resp = http()
        .post(format!("{base}/v1/chat/completions"))
        .body(r#"{"model":"up-gpt-x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    let mut first_text = None;
    let mut all = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        all.extend_from_slice(&chunk);
        if first_text.is_none() && String::from_utf8_lossy(&all).contains("one ") {
            first_text = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    let first = first_text.expect("the text arrived");
    assert!(total >= Duration::from_millis(1200), "the upstream takes ~1.5 s: {total:?}");
    assert!(first < total - Duration::from_millis(800), "first text at {first:?} of {total:?}: not flushed");
    Format::OpenAiChat.validate_stream(&all).unwrap();
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream() {
    let (anth, oai) = (Upstream::start().await, Upstream::start().await);
    oai.fault(Fault::Hang(1));
    let stack = gateway(&anth, &oai).await;
    let base = bridge(&stack, BridgeConfig::default()).await;
    let mut resp = http()
        .post(format!("{base}/v1/chat/completions"))
        .body(r#"{"model":"up-gpt-x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("content") {
        seen.extend_from_slice(&resp.chunk().await.unwrap().expect("a first chunk"));
    }
    assert_eq!(oai.stats().in_flight, 1);
    let gone = Instant::now();
    drop(resp);
    let stats = oai.wait_for(Duration::from_secs(5), |s| s.dropped >= 1).await;
    assert_eq!(stats.dropped, 1, "the upstream request was dropped");
    assert!(gone.elapsed() < Duration::from_secs(3), "{:?}", gone.elapsed());
}

#[tokio::test]
async fn failures_come_in_the_callers_shape() {
    // No worker at all: 503 within about a second, with Retry-After, in each format.
    let stack = Stack::server_only().await;
    let base = bridge(&stack, BridgeConfig::default()).await;
    let checks: [(&str, &str, &str); 4] = [
        ("/v1/messages", ANTH, "\"type\":\"error\""),
        ("/v1/chat/completions", CHAT, "\"error\":{"),
        ("/v1/responses", RESP, "\"error\":{"),
        ("/v1beta/models/mock:generateContent", GEM, "\"status\":\"UNAVAILABLE\""),
    ];
    for (path, body, shape) in checks {
        let t = Instant::now();
        let resp = http().post(format!("{base}{path}")).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 503, "{path}");
        assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        let text = resp.text().await.unwrap();
        assert!(text.contains(shape), "{path}: {text}");
        assert!(t.elapsed() < Duration::from_millis(1500), "{path}: {:?}", t.elapsed());
    }
    // A body over the limit: 413 in the route's shape.
    let small = bridge(&stack, BridgeConfig { max_body_bytes: 1024, ..Default::default() }).await;
    let big = format!(r#"{{"model":"mock","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(4096));
    let resp = http().post(format!("{small}/v1/chat/completions")).body(big.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("\"error\":{"));
    let resp = http().post(format!("{small}/v1/messages")).body(big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("request_too_large"));
    // An unknown route: a neutral 404.
    let resp = http().get(format!("{base}/v2/whatever")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], 404);
}

#[tokio::test]
async fn two_bridges_give_the_same_answers() {
    let (anth, oai) = (Upstream::start().await, Upstream::start().await);
    let stack = gateway(&anth, &oai).await;
    let (a, b) = (bridge(&stack, BridgeConfig::default()).await, bridge(&stack, BridgeConfig::default()).await);
    for path_body in
        [("/v1/chat/completions", CHAT), ("/v1/messages", ANTH), ("/v1beta/models/mock:generateContent", GEM)]
    {
        let mut texts = Vec::new();
        for base in [&a, &b] {
            let v: serde_json::Value = http()
                .post(format!("{base}{}", path_body.0))
                .body(path_body.1)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let text = v
                .pointer("/choices/0/message/content")
                .or_else(|| v.pointer("/content/0/text"))
                .or_else(|| v.pointer("/candidates/0/content/parts/0/text"))
                .and_then(|t| t.as_str())
                .unwrap_or_else(|| panic!("{v}"))
                .to_string();
            texts.push(text);
        }
        assert_eq!(texts[0], texts[1], "{}", path_body.0);
        assert!(texts[0].contains("route test"));
    }
}
