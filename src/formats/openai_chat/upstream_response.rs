//! Upstream body → canonical: `parse_response` for a `chat.completion` body.

use super::new_id;
use super::upstream_wire::{
    arguments_text, content_pieces, find_error, parse_finish, parse_usage, reasoning_of, upstream_error,
};
use crate::formats::FormatError;
use crate::protocol::canonical::{ChatResponse, FinishReason, Part};
use serde_json::Value;

/// An upstream `chat.completion` body → canonical answer.
pub fn parse_response(body: &[u8]) -> Result<ChatResponse, FormatError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| FormatError::malformed(format!("upstream response is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(FormatError::malformed("upstream response is not a JSON object"));
    }
    if let Some(err) = find_error(&v) {
        return Err(upstream_error(err));
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| FormatError::malformed("upstream response has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);

    let mut content = Vec::new();
    let mut text = String::new();
    let mut thinking = reasoning_of(message).unwrap_or("").to_string();
    content_pieces(message.get("content"), &mut text, &mut thinking);
    if let Some(r) = message.get("refusal").and_then(Value::as_str) {
        text.push_str(r);
    }
    if !thinking.is_empty() {
        content.push(Part::Thinking { text: thinking, signature: None });
    }
    if !text.is_empty() {
        content.push(Part::Text { text });
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let func = call.get("function").unwrap_or(&Value::Null);
            let id = match call.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                Some(id) => id.to_string(),
                None => new_id("call_"),
            };
            let mut arguments = arguments_text(func.get("arguments"));
            if arguments.is_empty() {
                arguments = "{}".into();
            }
            content.push(Part::ToolCall {
                id,
                name: func.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                arguments,
                signature: None,
            });
        }
    }
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall { .. }));
    let finish = match choice.get("finish_reason").and_then(Value::as_str) {
        Some(f) => parse_finish(f, has_calls),
        None if has_calls => FinishReason::ToolUse,
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        id: match v.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(id) => id.to_string(),
            None => new_id("chatcmpl-"),
        },
        model: v.get("model").and_then(Value::as_str).unwrap_or("").to_string(),
        content,
        finish,
        usage: v.get("usage").filter(|u| u.is_object()).map(parse_usage).unwrap_or_default(),
    })
}
