//! `ailurus channels test` and `/api/channel/test/:id`: one tiny request (`ping`, at most 8
//! output tokens, not streamed) through one channel, outside routing (no failover, no
//! cooldown), reporting the time and the outcome. An upstream error is reported with its
//! secrets removed, as every upstream error is.

use crate::channel::ChannelConfig;
use crate::formats::{Format, ParseContext};
use crate::providers::{UpstreamBody, UpstreamCall};
use futures::StreamExt;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Bound on the whole test, whatever the channel's own timeouts.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a channel test found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeResult {
    /// The channel answered with a well-formed reply.
    pub ok: bool,
    /// Milliseconds from sending to the whole answer.
    pub ms: u64,
    /// The model asked for.
    pub model: String,
    /// The answer's text (cut to 80 characters), or why it failed.
    pub message: String,
}

/// The model a test asks for: `model`, else the channel's first model name without
/// wildcards, else its first mapped name, else `mock` for the mock.
pub fn test_model(channel: &ChannelConfig, model: Option<&str>) -> Option<String> {
    if let Some(m) = model.filter(|m| !m.is_empty()) {
        return Some(m.to_string());
    }
    let plain = |m: &&String| !m.contains(['*', '?']);
    channel
        .models
        .iter()
        .find(plain)
        .or_else(|| channel.model_map.keys().find(plain))
        .cloned()
        .or_else(|| (channel.kind == "mock").then(|| "mock".to_string()))
}

/// Send the test request through `channel`.
pub async fn probe(channel: &ChannelConfig, model: Option<&str>) -> ProbeResult {
    let Some(model) = test_model(channel, model) else {
        return ProbeResult {
            ok: false,
            ms: 0,
            model: String::new(),
            message: "the channel names no model without wildcards; give one (--model)".into(),
        };
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(TEST_TIMEOUT, attempt(channel, &model)).await;
    let ms = started.elapsed().as_millis() as u64;
    let (ok, message) = match outcome {
        Err(_) => (false, format!("no answer within {TEST_TIMEOUT:?}")),
        Ok(Err(e)) => (false, e),
        Ok(Ok(text)) => (true, text.chars().take(80).collect()),
    };
    ProbeResult { ok, ms, model, message }
}

/// One call; the answer's text, or the error.
async fn attempt(channel: &ChannelConfig, model: &str) -> Result<String, String> {
    let built = crate::router::build_channel(channel)?;
    let upstream_model = channel.map_model(model);
    let request = serde_json::json!({
        "model": model,
        "messages": [{ "role": "user", "content": "ping" }],
        "max_tokens": 8,
        "stream": false,
    });
    let chat = Format::OpenAiChat
        .parse_request(request.to_string().as_bytes(), &ParseContext::default())
        .map_err(|e| e.message)?;
    let format = built.kind.format();
    let body = match format {
        Some(f) => f.build_request(&chat, &upstream_model).map_err(|e| e.message)?,
        None => Vec::new(),
    };
    let call = UpstreamCall {
        chat: &chat,
        body: body.into(),
        model: &upstream_model,
        stream: false,
        forward_headers: &[],
        key: 0,
    };
    let answer = built.provider.call(call).await.map_err(|e| e.to_string())?;
    match (answer, format) {
        (UpstreamBody::Json(bytes), Some(f)) => {
            let resp = f.parse_response(&bytes).map_err(|e| format!("malformed answer: {}", e.message))?;
            let text = resp.content.iter().filter_map(|p| match p {
                crate::protocol::canonical::Part::Text { text } => Some(text.as_str()),
                _ => None,
            });
            Ok(text.collect())
        }
        (UpstreamBody::Events(mut events), _) => {
            let mut text = String::new();
            while let Some(ev) = events.next().await {
                let ev = ev.map_err(|e| e.to_string())?;
                if let crate::protocol::canonical::StreamEvent::Text(t) = ev {
                    text.push_str(&t);
                }
            }
            Ok(text)
        }
        (UpstreamBody::Sse(_), _) | (UpstreamBody::Json(_), None) => Err("unexpected answer shape".into()),
    }
}
