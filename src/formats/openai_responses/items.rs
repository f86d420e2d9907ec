//! Output items and the response object, shared by `render_response` and the stream encoder.

use super::{new_id, summary_json, NAMESPACE_SEP};
use crate::protocol::canonical::{FinishReason, Usage};
use serde_json::{json, Map, Value};

/// A reasoning item; `encrypted_content` only when there is one.
pub(super) fn reasoning_item(id: &str, text: &str, encrypted: Option<&str>) -> Value {
    let mut item = json!({"id": id, "type": "reasoning", "summary": summary_json(text)});
    if let (Some(ec), Some(m)) = (encrypted, item.as_object_mut()) {
        m.insert("encrypted_content".into(), ec.into());
    }
    item
}

/// An `output_text` content part.
pub(super) fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A completed assistant message item holding one text part.
pub(super) fn message_item(id: &str, text: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": "completed", "role": "assistant",
        "content": [output_text_part(text)],
    })
}

/// A `function_call` item; a flattened namespace tool name is split back into `namespace` and `name`.
pub(super) fn function_call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    let mut item = json!({
        "id": id, "type": "function_call", "status": status,
        "arguments": arguments, "call_id": call_id, "name": name,
    });
    // A flattened namespace tool goes back as {namespace, name}.
    if let Some((ns, base)) = name.split_once(NAMESPACE_SEP).filter(|(ns, base)| !ns.is_empty() && !base.is_empty()) {
        item["namespace"] = json!(ns);
        item["name"] = json!(base);
    }
    item
}

/// Usage in the API's shape (cache reads and writes counted in `input_tokens`).
fn usage_json(u: &Usage) -> Value {
    let input = u.input_tokens.saturating_add(u.cache_read_tokens).saturating_add(u.cache_write_tokens);
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": input.saturating_add(u.output_tokens),
    })
}

/// The response `status` for a finish reason: `incomplete` (length, content filter) or `completed`.
pub(super) fn finish_status(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length | FinishReason::ContentFilter) => "incomplete",
        _ => "completed",
    }
}

/// The client-visible response id: the upstream's when it already looks like one.
pub(super) fn response_id(upstream: &str) -> String {
    if upstream.starts_with("resp_") {
        upstream.to_string()
    } else if upstream.is_empty() {
        new_id("resp")
    } else {
        format!("resp_{upstream}")
    }
}

/// What identifies a response: its id, creation time and the model the client asked for.
pub(super) struct ResponseMeta<'a> {
    /// The client-visible response id.
    pub(super) id: &'a str,
    /// Unix seconds.
    pub(super) created_at: i64,
    /// The model name the client asked for.
    pub(super) model: &'a str,
}

/// The full response object, with the fields the SDKs require.
pub(super) fn response_object(
    meta: &ResponseMeta<'_>,
    status: &str,
    output: Vec<Value>,
    usage: Option<&Usage>,
    finish: Option<FinishReason>,
    error: Option<Value>,
) -> Value {
    let incomplete = match (status, finish) {
        ("incomplete", Some(FinishReason::ContentFilter)) => json!({"reason": "content_filter"}),
        ("incomplete", _) => json!({"reason": "max_output_tokens"}),
        _ => Value::Null,
    };
    let mut r = Map::new();
    let mut put = |k: &str, v: Value| {
        r.insert(k.to_string(), v);
    };
    put("id", meta.id.into());
    put("object", "response".into());
    put("created_at", meta.created_at.into());
    put("status", status.into());
    put("background", false.into());
    put("error", error.unwrap_or(Value::Null));
    put("incomplete_details", incomplete);
    put("instructions", Value::Null);
    put("max_output_tokens", Value::Null);
    put("max_tool_calls", Value::Null);
    put("model", meta.model.into());
    put("output", Value::Array(output));
    put("parallel_tool_calls", true.into());
    put("previous_response_id", Value::Null);
    put("reasoning", json!({"effort": null, "summary": null}));
    put("service_tier", "default".into());
    put("store", false.into());
    put("temperature", Value::Null);
    put("text", json!({"format": {"type": "text"}}));
    put("tool_choice", "auto".into());
    put("tools", json!([]));
    put("top_logprobs", 0.into());
    put("top_p", Value::Null);
    put("truncation", "disabled".into());
    put("usage", usage.map_or(Value::Null, usage_json));
    put("user", Value::Null);
    put("metadata", json!({}));
    Value::Object(r)
}
