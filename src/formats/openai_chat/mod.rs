//! OpenAI Chat Completions (`POST /v1/chat/completions`), both as a client format and as
//! the upstream format for OpenAI and OpenAI-compatible hosts (DeepSeek, Qwen/DashScope,
//! Ollama, vLLM, OpenRouter, NEW-API/one-api).
//!
//! Wire types are walked as `serde_json::Value` so every error can name the offending field
//! (`messages[2].content[0].type "input_audio" is not supported`) and unknown fields are
//! tolerated.
//!
//! ## Client request → canonical
//! - Leading `system` / `developer` messages → `system` (joined with `"\n\n"`); later ones →
//!   `Role::System` messages in place.
//! - Consecutive `tool` messages → ONE `User` message of `ToolResult` parts; a `user` message
//!   directly after them is merged into it after the results. A tool result's `name` is taken
//!   from the assistant `tool_calls` entry with the same id (Gemini needs it).
//! - Assistant `reasoning_content` (DeepSeek; `reasoning`, OpenRouter) → a `Thinking` part
//!   before the text.
//! - `reasoning_effort` → `thinking {enabled: true, effort, include_thoughts: true}` (Chat has a
//!   slot for visible reasoning, `reasoning_content`); `"none"` → `enabled: false`. Qwen's
//!   `enable_thinking` / `thinking_budget` extension → `thinking {enabled, budget_tokens}`.
//! - `max_completion_tokens` wins over `max_tokens`; `safety_identifier` is used as `user`
//!   when `user` is absent.
//!
//! ## Lossy mappings (field → what happens)
//! | field | what happens |
//! |---|---|
//! | `image_url.detail` | dropped (no canonical slot) |
//! | `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `service_tier`, `store`, `metadata`, `prompt_cache_key`, `verbosity`, `top_k`, `repetition_penalty` | ignored (no canonical slot) |
//! | `stream_options` | ignored: the gateway always asks upstreams for usage and always sends a usage chunk to streaming clients when usage is known |
//! | message `name` | dropped |
//! | `tools[].function.strict` | dropped (canonical `ToolDef` has no `strict`) |
//! | `response_format.json_schema.description` | dropped |
//! | assistant `refusal` (part or field) | becomes text |
//! | canonical `Thinking.signature`, `RedactedThinking` (response, stream) | not in the body: Chat has no slot; thinking text goes to `reasoning_content` (DeepSeek style); the worker keeps the signed reasoning in its store and restores it when the call id comes back ([`crate::formats::reasoning::kept`]) |
//! | `Thinking` / `RedactedThinking` in history (build_request) | dropped: OpenAI-compatible upstreams reject or ignore them, DeepSeek requires they are not sent back |
//! | `ToolCall.signature` (Gemini) (build_request, response, stream) | not in the body; kept by the worker's reasoning store like the rest |
//! | `ToolResult.is_error` (build_request) | lost: a `tool` message has no error flag (parsed tool results are never errors) |
//! | several assistant text parts (build_request) | concatenated into one `content` string |
//! | upstream `refusal` (message or delta) | becomes text |
//! | upstream content arrays (Mistral) | `text` and `thinking` parts are read, other part types ignored |
//! | images in tool results (build_request) | replaced by the text note `[image omitted: …]` (Chat `tool` messages carry text only) |
//! | images in assistant history (build_request) | dropped |
//! | `cache_write_tokens` (response, stream) | counted in `prompt_tokens`; also reported as `prompt_tokens_details.cache_write_tokens` (OpenRouter style) when non-zero |
//! | `StopSequence` finish | `"stop"` (Chat does not tell them apart) |
//! | `insufficient_quota` upstream error | status 429 (OpenAI sends quota errors as 429) |
//! | upstream `finish_reason` other than stop/length/tool_calls/function_call/content_filter | `Stop` (`ToolUse` when the answer holds tool calls; also for `"stop"` with tool calls, as some servers send) |
//! | `max_tokens` (build_request) | sent as `max_tokens` (DeepSeek, Ollama, vLLM, NEW-API all accept it); for OpenAI reasoning models (`o1*`, `o3*`, `o4*`, `gpt-5*`), which reject it, as `max_completion_tokens` |
//! | `thinking` (build_request) | `reasoning_effort`: the effort as given, else from `budget_tokens` (≤2048 low, ≤8192 medium, else high); disabled → only `"none"` is sent if that was the effort, else nothing |
//! | `tool_choice` / `parallel_tool_calls` without tools (build_request) | not sent (OpenAI rejects them without `tools`) |
//! | `finish()` without a `Finish` event (encoder) | `finish_reason` `"tool_calls"` if a tool call was streamed, else `"stop"` |
//!
//! ## Unsupported (400 naming the field)
//! Role `function` and top-level `functions` / `function_call` (legacy function calling),
//! content parts `input_audio` and `file`, `n` ≠ 1, `logprobs: true`, `top_logprobs`, `audio`,
//! `modalities` containing `audio`, `prediction`, `web_search_options`, tool types other than
//! `function`, `tool_choice` types other than `function`, assistant `audio`.
//!
//! ## Errors
//! `render_error` uses the strings OpenAI really sends: 401 `invalid_request_error` /
//! `invalid_api_key`, 402 `insufficient_quota`, 403 `request_forbidden`, 429 `requests` /
//! `rate_limit_exceeded`, 503 and 529 `service_unavailable_error` / `server_is_overloaded`,
//! other 5xx `server_error`, other 4xx `invalid_request_error`.
//!
//! ## Layout
//! - `request`: client request body → canonical (`parse_request`).
//! - `response`: canonical → client body (`render_response`, `render_error`) and the JSON
//!   pieces the client stream shares with it.
//! - `encoder`: canonical events → client SSE (`encoder`).
//! - `upstream_request`: canonical → upstream request body (`build_request`).
//! - `upstream_wire`: reading upstream JSON (finish reasons, usage, errors, content), shared by
//!   the body parser and the stream decoder.
//! - `upstream_response`: upstream body → canonical (`parse_response`).
//! - `decoder`: upstream SSE → canonical events (`decoder`).

mod decoder;
mod encoder;
mod request;
mod response;
mod upstream_request;
mod upstream_response;
mod upstream_wire;

#[cfg(test)]
mod tests;

pub use decoder::{decoder, Decoder};
pub use encoder::{encoder, Encoder};
pub use request::parse_request;
pub use response::{render_error, render_response};
pub use upstream_request::build_request;
pub(crate) use upstream_request::wants_max_completion_tokens;
pub use upstream_response::parse_response;

/// The current Unix time in seconds (`created` of responses and chunks).
fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A fresh id: `prefix` followed by a NUID.
fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", nuid::next())
}
