//! Client compatibility with the official Python SDKs (PyPI `openai`, `anthropic`,
//! `google-genai`): a real nats-server, an in-process worker, the HTTP bridge on a random
//! loopback port and a scripted OpenAI-Chat upstream for tool calls; then `pytest tests/sdk`
//! runs against the bridge, authenticated with real tokens (auth mode `token`). The SDKs and
//! pytest live in `.tools/venv` (`deploy/setup.sh`); without that venv the test prints a
//! notice and passes.

mod common;

use ailurus::bridge::BridgeConfig;
use ailurus::bus::subjects::Token;
use ailurus::config::Config;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use common::Stack;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Environment variable holding the scripted upstream's API key (the channel reads it).
const TOOLY_KEY_ENV: &str = "AILURUS_SDK_TEST_TOOLY_KEY";
/// The key itself.
const TOOLY_KEY: &str = "sk-tooly-test-key";

/// Requests the scripted upstream received, for the failure report.
type Seen = Arc<Mutex<Vec<Value>>>;

/// An OpenAI error body.
fn openai_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", "application/json".parse().expect("header"));
    r
}

/// What the scripted upstream answers: a call of the first offered tool, or, once the
/// conversation ends with tool results, text that quotes them.
enum Answer {
    /// Call `name` with `{"city":"Paris"}`.
    ToolCall { name: String },
    /// Plain text.
    Text(String),
}

/// The text of an OpenAI message `content` (string or array of text parts).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// Check the conversation the way OpenAI does (every tool message answers a call made by
/// an earlier assistant message) and decide the answer.
fn script(req: &Value) -> Result<Answer, String> {
    let messages = req.get("messages").and_then(Value::as_array).ok_or("messages must be an array")?;
    let mut calls: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or(format!("messages[{i}].role missing"))?;
        match role {
            "assistant" => {
                for c in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let id = c.get("id").and_then(Value::as_str).ok_or(format!("messages[{i}].tool_calls[].id"))?;
                    let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
                    serde_json::from_str::<Value>(args)
                        .map_err(|e| format!("messages[{i}] tool call arguments are not JSON: {e}"))?;
                    calls.push(id.to_string());
                }
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or(format!("messages[{i}].tool_call_id"))?;
                if !calls.iter().any(|c| c == id) {
                    return Err(format!(
                        "Invalid parameter: messages[{i}] with role 'tool' must be a response to a preceding message with 'tool_calls' (id {id:?})"
                    ));
                }
            }
            "system" | "developer" | "user" => {}
            other => return Err(format!("messages[{i}].role {other:?} is invalid")),
        }
    }
    let tail: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        .map(|m| m.get("content").map(content_text).unwrap_or_default())
        .collect();
    if !tail.is_empty() {
        let results: Vec<String> = tail.into_iter().rev().collect();
        return Ok(Answer::Text(format!("The tool said: {}", results.join(" | "))));
    }
    match req.pointer("/tools/0/function/name").and_then(Value::as_str) {
        Some(name) => Ok(Answer::ToolCall { name: name.to_string() }),
        None => Ok(Answer::Text("No tools were offered.".into())),
    }
}

/// `POST /v1/chat/completions` of the scripted upstream.
async fn chat_completions(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Bearer {TOOLY_KEY}") {
        return openai_error(StatusCode::UNAUTHORIZED, "Incorrect API key provided");
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return openai_error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
    };
    if let Ok(mut s) = seen.lock() {
        s.push(req.clone());
    }
    let answer = match script(&req) {
        Ok(a) => a,
        Err(m) => return openai_error(StatusCode::BAD_REQUEST, &m),
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or("tooly").to_string();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = json!({"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49});
    let id = "chatcmpl-tooly-1";
    let (message, finish) = match &answer {
        Answer::ToolCall { name } => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_tooly_1", "type": "function",
                "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}]}),
            "tool_calls",
        ),
        Answer::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
    };
    let mut r = if !stream {
        let body = json!({
            "id": id, "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
            "usage": usage,
        });
        let mut r = Response::new(Body::from(body.to_string()));
        r.headers_mut().insert("content-type", "application/json".parse().expect("header"));
        r
    } else {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        match &answer {
            Answer::ToolCall { name } => {
                frames.push(chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_tooly_1", "type": "function",
                                           "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                for piece in ["{\"city\":", "\"Paris\"}"] {
                    frames.push(chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        Value::Null,
                    ));
                }
            }
            Answer::Text(t) => {
                let (a, b) = t.split_at(t.len() / 2);
                for piece in [a, b] {
                    frames.push(chunk(json!({"content": piece}), Value::Null));
                }
            }
        }
        frames.push(chunk(json!({}), json!(finish)));
        if req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true) {
            frames.push(json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000,
                               "model": model, "choices": [], "usage": usage}));
        }
        let mut text = String::new();
        for f in frames {
            text.push_str(&format!("data: {f}\n\n"));
        }
        text.push_str("data: [DONE]\n\n");
        let mut r = Response::new(Body::from(text));
        r.headers_mut().insert("content-type", "text/event-stream".parse().expect("header"));
        r
    };
    *r.status_mut() = StatusCode::OK;
    r
}

/// Start the scripted upstream; returns its base URL (ending in `/v1`).
async fn scripted_upstream(seen: Seen, shutdown: ailurus::shutdown::Shutdown) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat_completions)).with_state(seen);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await;
    });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_against_the_bridge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".tools/venv/bin/python");
    if !python.exists() {
        eprintln!("SKIPPED: {} is missing; run ./deploy/setup.sh to test the Python SDKs", python.display());
        return;
    }
    // Set before any task that could read the environment runs.
    std::env::set_var(TOOLY_KEY_ENV, TOOLY_KEY);

    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    // Token mode (the default): each SDK authenticates its own way (Bearer, x-api-key,
    // x-goog-api-key) with a real token; a second user has no quota left.
    let js = async_nats::jetstream::new(stack.client.clone());
    let tokens = TokenStore::open(&js).await.expect("TOKENS");
    let quota = QuotaStore::open(stack.client.clone()).await.expect("QUOTA");
    let (api_key, _) = tokens.create("sdk_user", "sdk tests", None, Vec::new(), None).await.expect("token");
    let (broke_key, _) = tokens.create("broke_user", "no quota", None, Vec::new(), None).await.expect("token");
    let user = |u: &str| Token::new("user_id", u).expect("user id");
    quota.set(&user("sdk_user"), 500_000_000, None).await.expect("quota");
    quota.set(&user("broke_user"), 0, None).await.expect("quota");
    let seen: Seen = Arc::default();
    let upstream = scripted_upstream(seen.clone(), stack.shutdown.clone()).await;
    let config = Config::from_toml(&format!(
        r#"
[routing]
builtin_mock = true

[[pricing.models]]
pattern = "tooly-*"
input = 1.0
output = 2.0

[[channels]]
name = "tooly"
kind = "openai"
base_url = "{upstream}"
api_key_env = ["{TOOLY_KEY_ENV}"]
models = ["tooly-*"]
"#
    ))
    .expect("config");
    stack.add_worker(config).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind bridge");
    let bridge_url = format!("http://{}", listener.local_addr().expect("addr"));
    let bridge_client = ailurus::bus::connect(&stack.server.url, "test-bridge").await.expect("connect bridge");
    let bridge =
        tokio::spawn(ailurus::bridge::serve(listener, bridge_client, BridgeConfig::default(), stack.shutdown.clone()));

    let run = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "tests/sdk", "-q", "-rfEs", "-p", "no:cacheprovider"])
        .current_dir(root)
        .env("AILURUS_BRIDGE_URL", &bridge_url)
        .env("AILURUS_TOOL_MODEL", "tooly-1")
        .env("AILURUS_API_KEY", &api_key)
        .env("AILURUS_BROKE_API_KEY", &broke_key)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("pytest took more than 300 s")
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- pytest stdout ---\n{stdout}\n--- pytest stderr ---\n{stderr}");
    if !out.status.success() || std::env::var_os("AILURUS_SDK_VERBOSE").is_some() {
        if let Ok(s) = seen.lock() {
            for (i, r) in s.iter().enumerate() {
                println!("--- scripted upstream request {i} ---\n{r:#}");
            }
        }
    }
    stack.shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(5), bridge).await;
    assert!(out.status.success(), "pytest tests/sdk failed ({}); its output is above", out.status);
    assert!(stdout.contains("passed"), "pytest ran no tests");
    assert!(!stdout.contains("skipped"), "some SDK tests were skipped; see above");
    // What the SDKs did was billed to the token's user, and nothing to the one without quota.
    let spent = common::quiet_balance(&quota, &user("sdk_user")).await;
    assert!(spent.used > 0 && spent.request_count > 0, "nothing was billed: {spent:?}");
    let broke = quota.balance(&user("broke_user")).await.expect("balance");
    assert_eq!(broke.used, 0, "a refused request was billed: {broke:?}");
}
