//! `render_response` and `render_error`: canonical answers and errors → client bodies.

use super::items::{
    finish_status, function_call_item, message_item, reasoning_item, response_id, response_object, ResponseMeta,
};
use super::{new_id, normalize_args, now, REDACTED_PREFIX};
use crate::protocol::canonical::{ChatResponse, Part};
use serde_json::{json, Value};

/// Render a canonical answer as a Responses API body. `model` is the name the client asked for.
pub fn render_response(resp: &ChatResponse, model: &str) -> Vec<u8> {
    let mut output = Vec::new();
    let mut text: Option<String> = None;
    let flush = |text: &mut Option<String>, output: &mut Vec<Value>| {
        if let Some(t) = text.take() {
            output.push(message_item(&new_id("msg"), &t));
        }
    };
    for part in &resp.content {
        match part {
            Part::Text { text: t } => text.get_or_insert_with(String::new).push_str(t),
            Part::Thinking { text: t, signature } => {
                flush(&mut text, &mut output);
                output.push(reasoning_item(&new_id("rs"), t, signature.as_deref()));
            }
            Part::RedactedThinking { data } => {
                flush(&mut text, &mut output);
                output.push(reasoning_item(&new_id("rs"), "", Some(&format!("{REDACTED_PREFIX}{data}"))));
            }
            Part::ToolCall { id, name, arguments, signature } => {
                flush(&mut text, &mut output);
                if let Some(sig) = signature.as_deref().filter(|s| !s.is_empty()) {
                    output.push(reasoning_item(&new_id("rs"), "", Some(sig)));
                }
                output.push(function_call_item(&new_id("fc"), id, name, normalize_args(arguments), "completed"));
            }
            Part::Image { .. } | Part::ToolResult { .. } => {}
        }
    }
    flush(&mut text, &mut output);
    let id = response_id(&resp.id);
    let meta = ResponseMeta { id: &id, created_at: now(), model };
    let status = finish_status(Some(resp.finish));
    let body = response_object(&meta, status, output, Some(&resp.usage), Some(resp.finish), None);
    serde_json::to_vec(&body).unwrap_or_default()
}

/// An error body in OpenAI's shape.
pub fn render_error(status: u16, message: &str) -> Vec<u8> {
    let (ty, code) = match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        402 => ("insufficient_quota", Some("insufficient_quota")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("not_found")),
        429 => ("rate_limit_error", Some("rate_limit_exceeded")),
        503 | 529 => ("server_error", Some("server_is_overloaded")),
        s if s >= 500 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    let body = json!({"error": {"message": message, "type": ty, "param": null, "code": code}});
    serde_json::to_vec(&body).unwrap_or_default()
}
