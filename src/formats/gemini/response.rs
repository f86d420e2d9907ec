//! Canonical → client bodies: a `GenerateContentResponse`, an error, a `countTokens` answer.

use super::new_id;
use super::parts::{gemini_parts, Audience};
use crate::formats::walk::Obj;
use crate::protocol::canonical::{ChatResponse, FinishReason, Usage};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A canonical finish reason → Gemini's `finishReason`.
pub(super) fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::ToolUse | FinishReason::StopSequence => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
    }
}

/// Canonical usage → `usageMetadata`.
pub(super) fn usage_json(u: &Usage) -> Value {
    let prompt = u.prompt_total();
    let candidates = u.output_tokens.saturating_sub(u.reasoning_tokens);
    let mut o = Obj::new();
    o.insert("promptTokenCount".into(), json!(prompt));
    o.insert("candidatesTokenCount".into(), json!(candidates));
    o.insert("totalTokenCount".into(), json!(prompt.saturating_add(candidates).saturating_add(u.reasoning_tokens)));
    if u.cache_read_tokens > 0 {
        o.insert("cachedContentTokenCount".into(), json!(u.cache_read_tokens));
    }
    if u.reasoning_tokens > 0 {
        o.insert("thoughtsTokenCount".into(), json!(u.reasoning_tokens));
    }
    Value::Object(o)
}

/// Canonical answer → a `GenerateContentResponse` body.
pub fn render_response(resp: &ChatResponse, model: &str) -> Vec<u8> {
    let parts = gemini_parts(&resp.content, Audience::Client, &HashMap::new(), "content").unwrap_or_default();
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": finish_str(resp.finish),
            "index": 0,
        }],
        "usageMetadata": usage_json(&resp.usage),
        "modelVersion": model,
        "responseId": if resp.id.is_empty() { new_id() } else { resp.id.clone() },
    });
    body.to_string().into_bytes()
}

/// Google's canonical status string for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        402 | 403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 | 529 => "UNAVAILABLE",
        400..=499 => "FAILED_PRECONDITION",
        500..=599 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// The error object of `render_error` (also a stream's last event).
pub(super) fn error_json(status: u16, message: &str) -> Value {
    json!({"error": {"code": status, "message": message, "status": status_name(status)}})
}

/// `{"error": {"code", "message", "status"}}`.
pub fn render_error(status: u16, message: &str) -> Vec<u8> {
    error_json(status, message).to_string().into_bytes()
}

/// `{"totalTokens": n}`.
pub fn render_count_tokens(n: u64) -> Vec<u8> {
    format!("{{\"totalTokens\":{n}}}").into_bytes()
}
