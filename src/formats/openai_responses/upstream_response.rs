//! `parse_response`: an upstream (non-streamed) Responses body → canonical [`ChatResponse`],
//! with the readers of upstream output items and errors that the stream decoder shares.

use super::{new_id, normalize_args, REDACTED_PREFIX};
use crate::formats::reasoning::{seal, Origin};
use crate::formats::walk::{str_of, Obj};
use crate::formats::FormatError;
use crate::protocol::canonical::{ChatResponse, FinishReason, Part, Usage};
use serde_json::Value;

/// HTTP-like status for an upstream error code (or type).
fn error_status(code: Option<&str>, ty: Option<&str>) -> u16 {
    fn of(c: &str) -> u16 {
        match c {
            "rate_limit_exceeded" | "insufficient_quota" | "rate_limit_error" | "requests" | "tokens" => 429,
            "server_is_overloaded" | "slow_down" | "overloaded_error" => 503,
            "server_error" | "api_error" => 500,
            "invalid_prompt" | "context_length_exceeded" | "invalid_request_error" | "invalid_value" => 400,
            "invalid_api_key" | "authentication_error" => 401,
            c if c.starts_with("invalid_image") || c.starts_with("image_") => 400,
            "invalid_base64_image"
            | "unsupported_image_media_type"
            | "empty_image_file"
            | "failed_to_download_image" => 400,
            _ => 502,
        }
    }
    match code.map(of) {
        Some(s) if s != 502 => s,
        _ => ty.map_or(502, of),
    }
}

pub(super) fn upstream_error(err: Option<&Obj>) -> FormatError {
    let code = err.and_then(|e| str_of(e, "code"));
    let ty = err.and_then(|e| str_of(e, "type"));
    let message =
        err.and_then(|e| str_of(e, "message")).filter(|m| !m.is_empty()).unwrap_or("upstream response failed");
    let message = match code.or(ty) {
        Some(c) => format!("{message} ({c})"),
        None => message.to_string(),
    };
    FormatError { status: error_status(code, ty), message }
}

pub(super) fn parse_usage(v: &Value) -> Option<Usage> {
    let u = v.as_object()?;
    let n = |o: &Obj, k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
    let detail = |k: &str, d: &str| u.get(k).and_then(Value::as_object).map_or(0, |o| n(o, d));
    let input = n(u, "input_tokens");
    let cached = detail("input_tokens_details", "cached_tokens").min(input);
    Some(Usage {
        input_tokens: input - cached,
        output_tokens: n(u, "output_tokens"),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: detail("output_tokens_details", "reasoning_tokens"),
        estimated: false,
    })
}

/// Texts of an upstream item's array field (`summary`, `content`), by the text key of each part.
pub(super) fn texts(item: &Obj, key: &str) -> Vec<String> {
    let Some(parts) = item.get(key).and_then(Value::as_array) else { return Vec::new() };
    parts
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|p| str_of(p, "text").or_else(|| str_of(p, "refusal")).map(str::to_string))
        .collect()
}

/// (text, encrypted_content) of an upstream reasoning item.
pub(super) fn reasoning_fields(item: &Obj) -> (String, Option<String>) {
    let mut t = texts(item, "summary");
    if t.is_empty() {
        t = texts(item, "content");
    }
    (t.join("\n\n"), str_of(item, "encrypted_content").map(str::to_string))
}

fn reasoning_part(text: String, encrypted: Option<String>) -> Option<Part> {
    match encrypted {
        Some(ec) => Some(match ec.strip_prefix(REDACTED_PREFIX) {
            Some(data) => Part::RedactedThinking { data: data.to_string() },
            None if text.is_empty() => Part::RedactedThinking { data: seal(Origin::Responses, &ec) },
            None => Part::Thinking { text, signature: Some(seal(Origin::Responses, &ec)) },
        }),
        None if text.is_empty() => None,
        None => Some(Part::Thinking { text, signature: None }),
    }
}

pub(super) fn call_arguments(item: &Obj) -> String {
    match item.get("arguments") {
        Some(Value::String(a)) => a.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => String::new(),
    }
}

pub(super) fn call_id_of(item: &Obj) -> String {
    str_of(item, "call_id").or_else(|| str_of(item, "id")).map_or_else(|| new_id("call"), str::to_string)
}

/// Canonical parts of an upstream `output` array (unknown item types are ignored).
pub(super) fn output_to_parts(output: &[Value]) -> Vec<Part> {
    let mut parts = Vec::new();
    for item in output.iter().filter_map(Value::as_object) {
        match str_of(item, "type") {
            Some("message") => {
                let text = texts(item, "content").concat();
                match parts.last_mut() {
                    Some(Part::Text { text: prev }) => prev.push_str(&text),
                    _ => parts.push(Part::Text { text }),
                }
            }
            Some("reasoning") => {
                let (text, ec) = reasoning_fields(item);
                parts.extend(reasoning_part(text, ec));
            }
            Some("function_call") => parts.push(Part::ToolCall {
                id: call_id_of(item),
                name: str_of(item, "name").unwrap_or_default().to_string(),
                arguments: normalize_args(&call_arguments(item)).to_string(),
                signature: None,
            }),
            _ => {}
        }
    }
    parts
}

pub(super) fn finish_reason(status: &str, incomplete_reason: Option<&str>, has_calls: bool) -> FinishReason {
    match (status, incomplete_reason) {
        ("incomplete", Some("content_filter")) => FinishReason::ContentFilter,
        ("incomplete", _) => FinishReason::Length,
        _ if has_calls => FinishReason::ToolUse,
        _ => FinishReason::Stop,
    }
}

pub(super) fn incomplete_reason(resp: &Obj) -> Option<&str> {
    resp.get("incomplete_details").and_then(Value::as_object).and_then(|d| str_of(d, "reason"))
}

/// Parse an upstream (non-streamed) Responses body.
pub fn parse_response(body: &[u8]) -> Result<ChatResponse, FormatError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| FormatError::malformed(format!("upstream response is not JSON: {e}")))?;
    let o = v.as_object().ok_or_else(|| FormatError::malformed("upstream response is not a JSON object"))?;
    if let Some(err) = o.get("error").and_then(Value::as_object) {
        return Err(upstream_error(Some(err)));
    }
    let status = str_of(o, "status").unwrap_or("completed");
    match status {
        "completed" | "incomplete" => {}
        "failed" => return Err(upstream_error(None)),
        other => return Err(FormatError::malformed(format!("upstream response has status {other:?}"))),
    }
    let output = o
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| FormatError::malformed("upstream response has no output array"))?;
    let content = output_to_parts(output);
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall { .. }));
    Ok(ChatResponse {
        id: str_of(o, "id").map_or_else(|| new_id("resp"), str::to_string),
        model: str_of(o, "model").unwrap_or_default().to_string(),
        finish: finish_reason(status, incomplete_reason(o), has_calls),
        usage: o.get("usage").and_then(parse_usage).unwrap_or_default(),
        content,
    })
}
