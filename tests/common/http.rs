//! HTTP-side helpers: native request bodies per format, an in-process bridge, and checks
//! that an error body has the caller's own shape.

use ailurus::bridge::BridgeConfig;
use ailurus::formats::Format;
use serde_json::{json, Value};

/// Path and body of a minimal native request.
pub fn native(format: Format, model: &str, stream: bool, prompt: &str) -> (String, Value) {
    match format {
        Format::AnthropicMessages => (
            "/v1/messages".into(),
            json!({"model": model, "max_tokens": 64, "stream": stream,
                   "messages": [{"role": "user", "content": prompt}]}),
        ),
        Format::OpenAiChat => (
            "/v1/chat/completions".into(),
            json!({"model": model, "stream": stream, "max_tokens": 64,
                   "messages": [{"role": "user", "content": prompt}]}),
        ),
        Format::OpenAiResponses => (
            "/v1/responses".into(),
            json!({"model": model, "stream": stream, "max_output_tokens": 64, "input": prompt}),
        ),
        Format::GeminiGenerate => {
            let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
            (
                format!("/v1beta/models/{model}:{method}"),
                json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                       "generationConfig": {"maxOutputTokens": 64}}),
            )
        }
    }
}

/// The header that carries a token for `format`'s clients.
pub fn auth_header(format: Format, token: &str) -> (&'static str, String) {
    match format {
        Format::AnthropicMessages => ("x-api-key", token.to_string()),
        Format::GeminiGenerate => ("x-goog-api-key", token.to_string()),
        _ => ("authorization", format!("Bearer {token}")),
    }
}

/// The message of an error body in `format`'s own shape, or why it is not one.
pub fn error_message(format: Option<Format>, body: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("error body is not JSON ({e}): {}", String::from_utf8_lossy(body)))?;
    let msg = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let got = match format {
        Some(Format::AnthropicMessages) => (v["type"] == "error"
            && v.pointer("/error/type").is_some_and(Value::is_string))
        .then(|| msg("/error/message"))
        .flatten(),
        Some(Format::OpenAiChat | Format::OpenAiResponses) => {
            v.pointer("/error/type").is_some_and(Value::is_string).then(|| msg("/error/message")).flatten()
        }
        Some(Format::GeminiGenerate) => v
            .pointer("/error/code")
            .is_some_and(Value::is_u64)
            .then(|| v.pointer("/error/status").is_some_and(Value::is_string).then(|| msg("/error/message")))
            .flatten()
            .flatten(),
        None => (v.pointer("/error/type") == Some(&json!("ailurus_error"))).then(|| msg("/error/message")).flatten(),
    };
    got.ok_or_else(|| format!("not a {format:?} error shape: {v}"))
}

/// Start a bridge in this process on a random loopback port; returns `http://addr`.
pub async fn bridge(client: async_nats::Client, config: BridgeConfig, shutdown: ailurus::shutdown::Shutdown) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind bridge");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { ailurus::bridge::serve(listener, client, config, shutdown).await });
    format!("http://{addr}")
}

/// The format whose routes `path` belongs to.
pub fn format_of_path(path: &str) -> Option<Format> {
    if path.starts_with("/v1/messages") {
        Some(Format::AnthropicMessages)
    } else if path.contains("chat/completions") {
        Some(Format::OpenAiChat)
    } else if path.contains("responses") {
        Some(Format::OpenAiResponses)
    } else if path.contains("/models/") && path.contains(':') {
        Some(Format::GeminiGenerate)
    } else {
        None
    }
}
