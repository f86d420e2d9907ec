//! Canonical → client body: `render_response`, `render_error`, and the JSON pieces the client
//! stream encoder shares with them (finish reasons, usage, error objects, completion ids).

use super::{new_id, now_unix};
use crate::protocol::canonical::{ChatResponse, FinishReason, Part, Usage};
use serde_json::{json, Value};

/// A client-visible completion id: `chatcmpl-…`.
pub(super) fn chat_id(id: &str) -> String {
    if id.is_empty() {
        new_id("chatcmpl-")
    } else if id.starts_with("chatcmpl-") {
        id.to_string()
    } else {
        format!("chatcmpl-{id}")
    }
}

/// A canonical finish reason → Chat `finish_reason`.
pub(super) fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolUse => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

/// Canonical usage → a Chat `usage` object (prompt tokens include cache read and write).
pub(super) fn usage_json(u: &Usage) -> Value {
    let prompt = u.input_tokens.saturating_add(u.cache_read_tokens).saturating_add(u.cache_write_tokens);
    let mut details = json!({"cached_tokens": u.cache_read_tokens});
    if u.cache_write_tokens > 0 {
        details["cache_write_tokens"] = json!(u.cache_write_tokens);
    }
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt.saturating_add(u.output_tokens),
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

/// (type, code) OpenAI sends for an HTTP status.
pub(super) fn error_kind(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        402 => ("insufficient_quota", Some("insufficient_quota")),
        403 => ("request_forbidden", None),
        429 => ("requests", Some("rate_limit_exceeded")),
        503 | 529 => ("service_unavailable_error", Some("server_is_overloaded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// `{"error": {...}}` with the type and code OpenAI sends for `status`.
pub(super) fn error_json(status: u16, message: &str) -> Value {
    let (kind, code) = error_kind(status);
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// Canonical answer → `chat.completion` body.
pub fn render_response(resp: &ChatResponse, model: &str) -> Vec<u8> {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut tool_calls = Vec::new();
    for part in &resp.content {
        match part {
            Part::Text { text: t } => text.push_str(t),
            Part::Thinking { text: t, .. } => thinking.push_str(t),
            Part::ToolCall { id, name, arguments, .. } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            })),
            Part::RedactedThinking { .. } | Part::Image { .. } | Part::ToolResult { .. } => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !thinking.is_empty() {
        message["reasoning_content"] = Value::String(thinking);
    }
    let body = json!({
        "id": chat_id(&resp.id),
        "object": "chat.completion",
        "created": now_unix(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_str(resp.finish),
        }],
        "usage": usage_json(&resp.usage),
    });
    body.to_string().into_bytes()
}

/// An error body: `{"error": {"message", "type", "param", "code"}}`.
pub fn render_error(status: u16, message: &str) -> Vec<u8> {
    error_json(status, message).to_string().into_bytes()
}
