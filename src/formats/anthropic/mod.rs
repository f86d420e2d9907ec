//! Anthropic Messages (`POST /v1/messages`, `POST /v1/messages/count_tokens`), both as the
//! format a client speaks to us and as the format we speak to an Anthropic upstream.
//!
//! Requests are walked as `serde_json::Value` so every error names its field
//! (`messages[2].content[0].type "document" is not supported`); unknown fields are ignored.
//! `count_tokens` bodies are the same minus `max_tokens`, so `max_tokens` is optional.
//!
//! # Lossy mappings (client request → canonical)
//!
//! | field | what happens |
//! |---|---|
//! | `cache_control` (system, messages, tools) | ignored: no canonical slot (pass-through keeps it) |
//! | `system` as several text blocks | joined with a blank line into one string |
//! | `top_k` | ignored (no canonical slot) |
//! | `context_management`, `service_tier`, `container` | ignored |
//! | `tools[].defer_loading`, `strict`, `input_examples`, `cache_control` | ignored |
//! | `tools[]` without `input_schema` | schema `{"type":"object","properties":{}}` |
//! | `thinking.type: adaptive` | `enabled`, no budget (indistinguishable from `enabled` without budget) |
//! | `thinking.type: disabled` | `ThinkingConfig { enabled: false }` |
//! | `output_config.effort` without `thinking` | `ThinkingConfig { enabled: false, effort }` |
//! | `output_config.format` / legacy `output_format` json_schema | `ResponseFormat::JsonSchema` named `response` |
//! | text `citations` in history | ignored |
//! | `tool_result` content block `tool_reference {tool_name}` | text part `tool_reference: <name>` |
//! | `metadata.user_id` (string, often a JSON string) | `user`, verbatim; other metadata keys ignored |
//!
//! Refused with a 400 naming them: content blocks `document`, `search_result`,
//! `server_tool_use`, `*_tool_result`, `container_upload`, …; image sources other than
//! `base64`/`url` (e.g. `file`); server tools (`tools[].type` other than `custom`, e.g.
//! `web_search_20250305`, `bash_20250124`, `text_editor_*`, `mcp_toolset`); non-empty `mcp_servers`.
//!
//! # Lossy mappings (canonical → client response / stream)
//!
//! | field | what happens |
//! |---|---|
//! | `stop_sequence` | always `null` (the canonical model does not keep which sequence matched) |
//! | `FinishReason::ContentFilter` | `stop_reason: "refusal"` |
//! | `Usage.reasoning_tokens`, `estimated` | not carried (Anthropic has no field) |
//! | `ToolCall.arguments` not a JSON object | `input: {"_raw_arguments": "<text>"}`; empty → `{}` |
//! | `Thinking` without a signature | `signature: ""` |
//! | `ToolCall.signature` (Gemini `thoughtSignature`) | a `thinking` block with empty text and that signature right before the `tool_use`; sent back, it parses as `Thinking { text: "", signature }`, which the Gemini builder puts back on the call |
//! | `Image` / `ToolResult` parts in an answer | omitted (an assistant answer cannot carry them) |
//! | ids not starting with `msg_` | prefixed with `msg_` (made up when absent) |
//! | stream: `ToolCallArgs` for a call whose block was closed by later non-tool output | dropped (no decoder emits this); args for an unknown call open a `tool_use` with a made-up id and empty name |
//!
//! Tool calls that start while another tool call's block is open are buffered and emitted
//! whole (start, one `input_json_delta`, stop) when the run of tool calls ends, so
//! interleaved argument fragments of parallel calls stay intact.
//!
//! # Lossy mappings (canonical → upstream request, `build_request`)
//!
//! | field | what happens |
//! |---|---|
//! | `max_tokens` absent | 8192 ([`DEFAULT_MAX_TOKENS`]) |
//! | thinking enabled | `{type: enabled, budget_tokens}`; budget defaults to 1024 and is raised to at least 1024; when `max_tokens <= budget`, `max_tokens` becomes `budget + max_tokens` |
//! | thinking enabled + `temperature` / `top_p` | `temperature` sent only when 1, `top_p` only when ≥ 0.95 (the API rejects other values) |
//! | thinking disabled | `thinking` omitted |
//! | `thinking.effort` | `output_config.effort` |
//! | `thinking.include_thoughts` | not sent (Anthropic returns thinking when enabled) |
//! | leading `Role::System` messages | appended to `system`; later ones stay `role: "system"` entries |
//! | `ResponseFormat::JsonSchema` | `output_config.format {type: json_schema, schema}` (name and `strict` dropped) |
//! | `ResponseFormat::JsonObject` | instruction appended to `system` ("Respond with a single valid JSON object…") |
//! | `Thinking` part without a (non-empty) signature | dropped (Anthropic rejects unsigned thinking) |
//! | `Thinking` / `RedactedThinking` signed by another API (see [`crate::formats::reasoning`]) | not sent (Anthropic rejects it); the thinking text becomes a `text` block, redacted data is dropped |
//! | `ToolCall.signature` (Gemini) | dropped |
//! | `ToolResult.name` | dropped (Anthropic matches by id) |
//! | empty text parts; messages left empty | dropped (the API rejects empty text blocks) |
//! | consecutive same-role messages | merged; in user turns `tool_result` blocks are moved first |
//! | `tool_choice` / `parallel_tool_calls` without tools | omitted |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | `Image` `data:` URL | `base64` source |
//!
//! # Upstream responses and streams
//!
//! Server-tool blocks (`server_tool_use`, `web_search_tool_result`, …) are never requested by
//! `build_request`, so an upstream that returns them is answered with a 502 naming the block.
//! `citations_delta` is ignored. Stop reasons: `end_turn`/`pause_turn`/unknown → Stop,
//! `max_tokens`/`model_context_window_exceeded` → Length, `tool_use`, `stop_sequence`,
//! `refusal` → ContentFilter. Anthropic reports no reasoning token count (0).
//!
//! # Layout
//!
//! | file | holds |
//! |---|---|
//! | `request.rs` | client request body → `ChatRequest` ([`parse_request`]) |
//! | `response.rs` | `ChatResponse` / error → client body ([`render_response`], [`render_error`]) |
//! | `encoder.rs` | `StreamEvent`s → client SSE ([`encoder`]) |
//! | `upstream_request.rs` | `ChatRequest` → upstream body ([`build_request`]) |
//! | `upstream_response.rs` | upstream body → `ChatResponse` ([`parse_response`]) |
//! | `decoder.rs` | upstream SSE → `StreamEvent`s ([`decoder`]) |
//! | `errors.rs` | Anthropic `error.type` ↔ HTTP status, error bodies |
//! | this file | the wire helpers several of them share |

mod decoder;
mod encoder;
mod errors;
mod request;
mod response;
#[cfg(test)]
mod tests;
mod upstream_request;
mod upstream_response;

pub use decoder::{decoder, Decoder};
pub use encoder::{encoder, Encoder};
pub use errors::{error_type_for_status, status_for_error_type};
pub use request::parse_request;
pub use response::{render_error, render_response};
pub use upstream_request::{
    build_request, DEFAULT_MAX_TOKENS, DEFAULT_THINKING_BUDGET, JSON_OBJECT_INSTRUCTION, MIN_THINKING_BUDGET,
};
pub use upstream_response::parse_response;

use super::FormatError;
use crate::protocol::canonical::{FinishReason, Part, Usage};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Wire helpers shared by the submodules.

/// A fresh id: `prefix` followed by a NUID.
fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", nuid::next())
}

/// A client-visible message id: `msg_…`.
fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else if id.is_empty() {
        new_id("msg_")
    } else {
        format!("msg_{id}")
    }
}

/// Tool call arguments (JSON text) → the `input` object Anthropic requires.
fn arguments_to_input(arguments: &str) -> Value {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "_raw_arguments": arguments }),
    }
}

/// A part's kind, for error messages.
fn part_kind(p: &Part) -> &'static str {
    match p {
        Part::Text { .. } => "text",
        Part::Image { .. } => "image",
        Part::ToolCall { .. } => "tool_call",
        Part::ToolResult { .. } => "tool_result",
        Part::Thinking { .. } => "thinking",
        Part::RedactedThinking { .. } => "redacted_thinking",
    }
}

/// `FinishReason` → Anthropic `stop_reason`.
fn stop_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolUse => "tool_use",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::ContentFilter => "refusal",
    }
}

/// Anthropic `stop_reason` → `FinishReason` (absent or unknown → `Stop`).
fn finish_from_stop_reason(s: Option<&str>) -> FinishReason {
    match s {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolUse,
        Some("stop_sequence") => FinishReason::StopSequence,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// `Usage` → an Anthropic `usage` object.
fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    })
}

/// Overlay the usage fields present in an Anthropic `usage` object.
fn read_usage(v: Option<&Value>, into: &mut Usage) {
    let Some(o) = v.and_then(Value::as_object) else { return };
    let field = |k: &str| o.get(k).and_then(Value::as_u64);
    if let Some(n) = field("input_tokens") {
        into.input_tokens = n;
    }
    if let Some(n) = field("output_tokens") {
        into.output_tokens = n;
    }
    if let Some(n) = field("cache_creation_input_tokens") {
        into.cache_write_tokens = n;
    }
    if let Some(n) = field("cache_read_input_tokens") {
        into.cache_read_tokens = n;
    }
}

/// A 502 for an upstream answer we cannot read.
fn malformed(message: impl Into<String>) -> FormatError {
    FormatError::malformed(message)
}
