//! Reading upstream Chat JSON, shared by the body parser and the stream decoder: finish
//! reasons, usage, error objects (and the status they stand for), content and reasoning text,
//! tool-call arguments. Read leniently: a wrong type is treated as absent.

use crate::formats::FormatError;
use crate::protocol::canonical::{FinishReason, Usage};
use serde_json::Value;

/// An upstream `finish_reason` → canonical; unknown reasons are `ToolUse` when the answer
/// holds tool calls, else `Stop`.
pub(super) fn parse_finish(s: &str, has_tool_calls: bool) -> FinishReason {
    match s {
        "length" | "max_tokens" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolUse,
        "content_filter" => FinishReason::ContentFilter,
        _ if has_tool_calls => FinishReason::ToolUse,
        _ => FinishReason::Stop,
    }
}

/// A count, `0` when absent or not an unsigned integer.
fn num(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// An upstream `usage` object → canonical (input excludes cache read / write).
pub(super) fn parse_usage(v: &Value) -> Usage {
    let prompt = num(v.get("prompt_tokens"));
    let completion = num(v.get("completion_tokens"));
    let details = v.get("prompt_tokens_details");
    let cached = match details.and_then(|d| d.get("cached_tokens")).and_then(Value::as_u64) {
        Some(c) => c,
        // DeepSeek's own spelling.
        None => num(v.get("prompt_cache_hit_tokens")),
    }
    .min(prompt);
    let write = num(details.and_then(|d| d.get("cache_write_tokens"))).min(prompt - cached);
    let reasoning = num(v.get("completion_tokens_details").and_then(|d| d.get("reasoning_tokens"))).min(completion);
    Usage {
        input_tokens: prompt - cached - write,
        output_tokens: completion,
        cache_read_tokens: cached,
        cache_write_tokens: write,
        reasoning_tokens: reasoning,
        estimated: false,
    }
}

/// The status an upstream `error` object stands for.
fn error_status(err: &Value) -> u16 {
    let code = err.get("code");
    if let Some(n) = code.and_then(Value::as_u64).or_else(|| code.and_then(Value::as_str).and_then(|s| s.parse().ok()))
    {
        if (400..=599).contains(&n) {
            return n as u16;
        }
    }
    let words: Vec<String> = ["code", "type"]
        .iter()
        .filter_map(|k| err.get(*k).and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
        .collect();
    let has = |needles: &[&str]| words.iter().any(|w| needles.iter().any(|n| w.contains(n)));
    // OpenAI's rate-limit errors carry type "requests" or "tokens".
    let is = |exact: &[&str]| words.iter().any(|w| exact.contains(&w.as_str()));
    if has(&["insufficient_quota", "rate_limit", "ratelimit"]) || is(&["requests", "tokens"]) {
        429
    } else if has(&["overloaded", "service_unavailable", "unavailable"]) {
        503
    } else if has(&["invalid_api_key", "authentication", "unauthorized"]) {
        401
    } else if has(&["permission", "forbidden"]) {
        403
    } else if has(&["not_found", "notfound"]) {
        404
    } else if has(&["invalid_request", "bad_request", "badrequest", "context_length", "invalid"]) {
        400
    } else if has(&["server_error", "api_error", "internal"]) {
        500
    } else {
        502
    }
}

/// An upstream `error` object → a `FormatError` with the status it stands for.
pub(super) fn upstream_error(err: &Value) -> FormatError {
    let message = match err.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => err.to_string(),
    };
    FormatError { status: error_status(err), message: format!("upstream error: {message}") }
}

/// An error object in an upstream body or chunk: `{"error": {...}}`, or vLLM's bare
/// `{"object": "error", ...}`.
pub(super) fn find_error(v: &Value) -> Option<&Value> {
    match v.get("error") {
        Some(e) if !e.is_null() => Some(e),
        _ if v.get("object").and_then(Value::as_str) == Some("error") => Some(v),
        _ => None,
    }
}

/// Text and thinking from a message / delta `content` that some servers (Mistral) send as
/// an array of parts.
pub(super) fn content_pieces(v: Option<&Value>, text: &mut String, thinking: &mut String) {
    match v {
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(p.get("text").and_then(Value::as_str).unwrap_or("")),
                    Some("thinking") => {
                        let mut ignored = String::new();
                        match p.get("thinking") {
                            Some(Value::String(s)) => thinking.push_str(s),
                            inner => content_pieces(inner, thinking, &mut ignored),
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Reasoning text: `reasoning_content` (DeepSeek, vLLM, Qwen) or `reasoning` (OpenRouter,
/// newer vLLM).
pub(super) fn reasoning_of(v: &Value) -> Option<&str> {
    for key in ["reasoning_content", "reasoning"] {
        if let Some(s) = v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return Some(s);
        }
    }
    None
}

/// Tool-call `arguments` as text: a string as is, absent or null as empty, anything else as JSON.
pub(super) fn arguments_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}
