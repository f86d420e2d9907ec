//! Upstream answer → canonical: an Anthropic Messages response body becomes a `ChatResponse`.

use super::errors::upstream_error;
use super::{finish_from_stop_reason, malformed, new_id, read_usage};
use crate::formats::reasoning::{seal, seal_opt, Origin};
use crate::formats::walk::str_of;
use crate::formats::FormatError;
use crate::protocol::canonical::{ChatResponse, Part, Usage};
use serde_json::Value;

/// One content block of an upstream answer.
fn upstream_block(b: &Value, path: &str) -> Result<Part, FormatError> {
    let o = b.as_object().ok_or_else(|| malformed(format!("upstream {path} is not an object")))?;
    let s = |k: &str| str_of(o, k).unwrap_or_default().to_string();
    match str_of(o, "type").unwrap_or_default() {
        "text" => Ok(Part::Text { text: s("text") }),
        "thinking" => {
            Ok(Part::Thinking { text: s("thinking"), signature: seal_opt(Origin::Anthropic, str_of(o, "signature")) })
        }
        "redacted_thinking" => Ok(Part::RedactedThinking { data: seal(Origin::Anthropic, &s("data")) }),
        "tool_use" => Ok(Part::ToolCall {
            id: s("id"),
            name: s("name"),
            arguments: o.get("input").filter(|v| !v.is_null()).map_or_else(|| "{}".to_string(), Value::to_string),
            signature: None,
        }),
        other => Err(malformed(format!("upstream {path}.type {other:?} (a server tool block) is not supported"))),
    }
}

/// Parse an Anthropic Messages response body (or its error body → `Err` with the status).
pub fn parse_response(body: &[u8]) -> Result<ChatResponse, FormatError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("upstream body is not JSON: {e}")))?;
    let o = v.as_object().ok_or_else(|| malformed("upstream body is not a JSON object"))?;
    if str_of(o, "type") == Some("error") {
        return Err(upstream_error(o));
    }
    let content = match o.get("content") {
        Some(Value::Array(a)) => {
            a.iter().enumerate().map(|(k, b)| upstream_block(b, &format!("content[{k}]"))).collect::<Result<_, _>>()?
        }
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(malformed("upstream content is not an array")),
    };
    let mut usage = Usage::default();
    read_usage(o.get("usage"), &mut usage);
    let id = str_of(o, "id").filter(|s| !s.is_empty()).map_or_else(|| new_id("msg_"), str::to_string);
    Ok(ChatResponse {
        id,
        model: str_of(o, "model").unwrap_or_default().to_string(),
        content,
        finish: finish_from_stop_reason(str_of(o, "stop_reason")),
        usage,
    })
}
