//! Canonical → client body: a whole answer as a Messages response, and error bodies.

use super::errors::error_json;
use super::{arguments_to_input, message_id, new_id, stop_reason, usage_json};
use crate::protocol::canonical::{ChatResponse, Part};
use serde_json::{json, Value};

/// A signed thinking block with no text: how a tool call's Gemini `thoughtSignature` travels
/// through an Anthropic client (sent back, it parses as `Thinking { text: "", signature }`
/// right before the call, which the Gemini builder puts back on the call).
fn signature_block(sig: &str) -> Value {
    json!({"type": "thinking", "thinking": "", "signature": sig})
}

/// The blocks for one answer part (a signed tool call is two blocks).
fn response_blocks(p: &Part) -> Vec<Value> {
    match p {
        Part::ToolCall { signature: Some(sig), .. } if !sig.is_empty() => {
            [Some(signature_block(sig)), response_block(p)].into_iter().flatten().collect()
        }
        _ => response_block(p).into_iter().collect(),
    }
}

fn response_block(p: &Part) -> Option<Value> {
    Some(match p {
        Part::Text { text } => json!({"type": "text", "text": text}),
        Part::Thinking { text, signature } => {
            json!({"type": "thinking", "thinking": text, "signature": signature.as_deref().unwrap_or("")})
        }
        Part::RedactedThinking { data } => json!({"type": "redacted_thinking", "data": data}),
        Part::ToolCall { id, name, arguments, .. } => {
            let id = if id.is_empty() { new_id("toolu_") } else { id.clone() };
            json!({"type": "tool_use", "id": id, "name": name, "input": arguments_to_input(arguments)})
        }
        Part::Image { .. } | Part::ToolResult { .. } => return None,
    })
}

/// Render a whole answer as a Messages response body; `model` is the client's model name.
pub fn render_response(resp: &ChatResponse, model: &str) -> Vec<u8> {
    let content: Vec<Value> = resp.content.iter().flat_map(response_blocks).collect();
    json!({
        "id": message_id(&resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(resp.finish),
        "stop_sequence": null,
        "usage": usage_json(&resp.usage),
    })
    .to_string()
    .into_bytes()
}

/// An error body: `{"type":"error","error":{"type":…,"message":…}}`.
pub fn render_error(status: u16, message: &str) -> Vec<u8> {
    error_json(status, message).to_string().into_bytes()
}
