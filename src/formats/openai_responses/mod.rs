//! OpenAI Responses API (`POST /v1/responses`): client requests, answers and streams, and the
//! same API spoken to an upstream (request bodies, answers, streams).
//!
//! Ailurus is stateless: every request carries the whole conversation in `input` (as Codex CLI
//! does with `store: false`). Input items become canonical messages; consecutive items of the
//! same role merge into one message (`function_call` and `reasoning` items join the assistant
//! message, `*_output` items join the user message). Leading `system` / `developer` messages
//! (before any other item) become `system`, after `instructions`, joined with a blank line;
//! later ones stay in place as [`Role::System`] messages.
//!
//! Reasoning (round-trips Anthropic signatures and Responses `encrypted_content` unchanged):
//!
//! | canonical | client-facing reasoning item |
//! |---|---|
//! | `Thinking{text, signature}` | `summary: [{type: summary_text, text}]` (`[]` when text is empty), `encrypted_content: signature` |
//! | `RedactedThinking{data}` | `summary: []`, `encrypted_content: "ailurus-redacted:" + data` |
//!
//! Towards an upstream Responses API the prefix is not used: `RedactedThinking{data}` is sent as
//! `encrypted_content: data`, and an upstream reasoning item without summary text decodes to
//! `RedactedThinking(encrypted_content)`, so OpenAI's own encrypted reasoning survives a round trip.
//!
//! ## Lossy mappings and unsupported features
//!
//! | field | what happens |
//! |---|---|
//! | `previous_response_id`, `conversation`, `prompt`, `background: true`, `item_reference` items | 400 naming it (stateless) |
//! | hosted `web_search*` tools | removed on conversion (only OpenAI runs them; pass-through keeps them) |
//! | `additional_tools` input items (Codex's default request) | their tools join the top-level `tools` (same shapes, namespaces flattened) |
//! | `namespace` tools (Codex `multi_agent_v1`) | flattened to functions named `<namespace>__<tool>`; calls render back with `namespace` (a tool whose own name holds `__` renders with a namespace too) |
//! | other hosted tools (`file_search`, `code_interpreter`, `mcp`, …) and other tool types | 400 naming the type |
//! | `tool_choice` of a hosted tool, `allowed_tools` | 400 naming the type |
//! | `input_file`, `input_audio` parts, `input_image.file_id`, unknown item / part types | 400 naming them |
//! | `store`, `include`, `prompt_cache_key`, `metadata`, `service_tier`, `truncation`, `safety_identifier`, `stream_options`, `max_tool_calls`, `top_logprobs`, `client_metadata` | ignored |
//! | `text.verbosity`, `input_image.detail`, function tool `strict`, custom tool `format` | ignored |
//! | `reasoning.summary` level (`auto`/`concise`/`detailed`) | kept only as "summary wanted" (`include_thoughts`) |
//! | custom tools | a function tool with one string parameter `input`; a `custom_tool_call` becomes a call with arguments `{"input": …}`; answers always render calls as `function_call` items |
//! | input item `id`s and `status` | dropped (`call_id` is the call id) |
//! | reasoning item with neither summary text nor `encrypted_content` | dropped |
//! | reasoning `content` (raw reasoning text) | used as the text only when `summary` has none |
//! | rendered response: `instructions`, `tools`, `tool_choice`, `temperature`, `top_p`, … | API defaults (`null`, `"auto"`, `[]`), not the request's values |
//! | rendered response / stream: image and tool-result parts of an answer | dropped (no output item carries them) |
//! | rendered usage: `cache_write_tokens` | counted in `input_tokens` (the API has no cache-write field) |
//! | rendered finish: `stop_sequence` / `tool_use` | `status: completed` (decodes as `stop` / `tool_use` by the presence of calls) |
//! | stream encoder: calls that start while another call is open (parallel calls with interleaved argument fragments, as some Chat servers send) | buffered and emitted whole when the run of calls ends |
//! | stream encoder: `ToolCallArgs` for a call whose item is already done | dropped (decoders never produce it) |
//! | rendered response / stream: `ToolCall.signature` (Gemini `thoughtSignature`) | a reasoning item `summary: []`, `encrypted_content: signature` right before the call; sent back it parses as `Thinking { text: "", signature }`, which the Gemini builder puts back on the call |
//! | stream encoder: a signature without reasoning text | reasoning item with `summary: []`; decodes as `RedactedThinking` |
//! | upstream request: `stop` | dropped (the API has no stop sequences) |
//! | upstream request: `max_tokens` below 16 | raised to 16 (the API's minimum) |
//! | upstream request: `Thinking` without a (non-empty) signature | dropped (without `encrypted_content` the API cannot take it back when `store: false`) |
//! | upstream request: another API's signature (see [`crate::formats::reasoning`]) | not sent (OpenAI rejects it); its thinking text becomes `output_text` of the assistant message, its redacted reasoning is dropped |
//! | upstream request: `ToolResult.is_error`, `ToolCall.signature` | dropped |
//! | upstream request: `budget_tokens` without `effort` | effort `low` (< 4096), `medium` (< 16384) or `high` |
//! | upstream request: thinking disabled | no `reasoning` (model default) unless effort is `"none"` |
//! | upstream request: function tools | `strict: false` (the API defaults to strict schemas) |
//! | upstream stream / body: unknown events (keepalive, annotations, …) and non-function output items | ignored |
//!
//! Errors (`render_error`): 400/413/422 `invalid_request_error`; 401 `invalid_request_error` /
//! `invalid_api_key`; 402 `insufficient_quota`; 403 `permission_error`; 404
//! `invalid_request_error` / `not_found`; 429 `rate_limit_error` / `rate_limit_exceeded`; 5xx
//! `server_error` (503/529 with code `server_is_overloaded`). In streams a failure is
//! `response.failed` with `error.code` `invalid_prompt` (4xx), `rate_limit_exceeded` (429),
//! `insufficient_quota` (402), `server_is_overloaded` (503/529) or `server_error`. Upstream
//! error codes (`error` events, `response.failed`, error bodies) map back: `rate_limit_exceeded`
//! and `insufficient_quota` 429, `server_is_overloaded` / `slow_down` 503, `server_error` 500,
//! `invalid_prompt`, `context_length_exceeded` and the image codes 400, anything else 502.

mod decoder;
mod encoder;
mod items;
mod request;
mod response;
#[cfg(test)]
mod tests;
mod upstream_request;
mod upstream_response;

pub use decoder::{decoder, Decoder};
pub use encoder::{encoder, Encoder};
pub use request::parse_request;
pub use response::{render_error, render_response};
pub use upstream_request::build_request;
pub use upstream_response::parse_response;

use serde_json::{json, Value};

/// Prefix marking a canonical `RedactedThinking` inside a client-facing `encrypted_content`.
pub const REDACTED_PREFIX: &str = "ailurus-redacted:";

/// Separator between a namespace and a tool name in a flattened tool name.
pub const NAMESPACE_SEP: &str = "__";

/// A fresh id with a type prefix (`resp_…`, `msg_…`, `fc_…`).
fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", nuid::next())
}

/// The current Unix time in seconds.
fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Tool arguments as sent on the wire: never empty (a call without arguments is `{}`).
fn normalize_args(args: &str) -> &str {
    if args.trim().is_empty() {
        "{}"
    } else {
        args
    }
}

/// A reasoning item's `summary`: one `summary_text` part, or `[]` for empty text.
fn summary_json(text: &str) -> Value {
    if text.is_empty() {
        json!([])
    } else {
        json!([{"type": "summary_text", "text": text}])
    }
}
