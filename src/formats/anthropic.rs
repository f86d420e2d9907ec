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

use super::walk::{at, bad, get, Obj};
use super::{sse, FormatError, Op, ParseContext, StreamDecoder, StreamEncoder};
use crate::protocol::canonical::{
    ChatRequest, ChatResponse, FinishReason, ImageSource, Message, Part, ResponseFormat, Role, StreamEvent,
    ThinkingConfig, ToolChoice, ToolDef, Usage,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// `max_tokens` sent upstream when the caller gave none (the API requires it).
pub const DEFAULT_MAX_TOKENS: u32 = 8192;
/// Thinking budget sent upstream when thinking is on without a budget.
pub const DEFAULT_THINKING_BUDGET: u32 = 1024;
/// The smallest budget the API accepts.
pub const MIN_THINKING_BUDGET: u32 = 1024;
/// Appended to `system` for `ResponseFormat::JsonObject` (Anthropic has no JSON mode).
pub const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object and nothing else.";

// ---------------------------------------------------------------------------------------
// Small helpers for walking JSON with field paths in the errors.

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Obj, FormatError> {
    v.as_object().ok_or_else(|| bad(format!("{path} must be an object")))
}

fn opt_obj<'a>(o: &'a Obj, key: &str, path: &str) -> Result<Option<&'a Obj>, FormatError> {
    get(o, key).map(|v| as_object(v, &at(path, key))).transpose()
}

fn opt_array<'a>(o: &'a Obj, key: &str, path: &str) -> Result<Option<&'a Vec<Value>>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(bad(format!("{} must be an array", at(path, key)))),
    }
}

fn req_str<'a>(o: &'a Obj, key: &str, path: &str) -> Result<&'a str, FormatError> {
    match get(o, key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(format!("{} must be a string", at(path, key)))),
        None => Err(bad(format!("{} is required", at(path, key)))),
    }
}

fn opt_str<'a>(o: &'a Obj, key: &str, path: &str) -> Result<Option<&'a str>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{} must be a string", at(path, key)))),
    }
}

fn opt_u32(o: &Obj, key: &str, path: &str) -> Result<Option<u32>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{} must be a non-negative integer below 2^32", at(path, key)))),
    }
}

fn opt_f64(o: &Obj, key: &str, path: &str) -> Result<Option<f64>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| bad(format!("{} must be a number", at(path, key)))),
    }
}

fn opt_bool(o: &Obj, key: &str, path: &str) -> Result<Option<bool>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("{} must be a boolean", at(path, key)))),
    }
}

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

fn stop_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolUse => "tool_use",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::ContentFilter => "refusal",
    }
}

fn finish_from_stop_reason(s: Option<&str>) -> FinishReason {
    match s {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolUse,
        Some("stop_sequence") => FinishReason::StopSequence,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

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

/// Anthropic `error.type` → HTTP status.
pub fn status_for_error_type(t: &str) -> u16 {
    match t {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 502,
    }
}

/// HTTP status → Anthropic `error.type`.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

fn error_json(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type_for_status(status), "message": message}})
}

/// An upstream `{"type":"error","error":{…}}` object → `FormatError` with the mapped status.
fn upstream_error(o: &Obj) -> FormatError {
    let err = o.get("error").and_then(Value::as_object);
    let ty = err.and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("unknown_error");
    let msg = err.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("upstream error");
    FormatError { status: status_for_error_type(ty), message: format!("upstream {ty}: {msg}") }
}

// ---------------------------------------------------------------------------------------
// Client request → canonical.

/// Parse a client's Messages (or `count_tokens`) body.
pub fn parse_request(body: &[u8], ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let o = root.as_object().ok_or_else(|| bad("request body must be a JSON object"))?;

    let model = match &ctx.model {
        Some(m) => m.clone(),
        None => req_str(o, "model", "")?.to_string(),
    };
    if model.is_empty() {
        return Err(bad("model must not be empty"));
    }
    let system = parse_system(get(o, "system"))?;
    let messages = parse_messages(o.get("messages"))?;
    let max_tokens = opt_u32(o, "max_tokens", "")?;
    let temperature = opt_f64(o, "temperature", "")?;
    let top_p = opt_f64(o, "top_p", "")?;
    opt_f64(o, "top_k", "")?; // validated, then ignored (lossy)
    let stop = match opt_array(o, "stop_sequences", "")? {
        None => Vec::new(),
        Some(a) => a
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str().map(str::to_string).ok_or_else(|| bad(format!("stop_sequences[{i}] must be a string")))
            })
            .collect::<Result<_, _>>()?,
    };
    let stream = opt_bool(o, "stream", "")?.unwrap_or(false) || ctx.op == Op::StreamGenerate;
    let tools = parse_tools(o)?;
    let (tool_choice, parallel_tool_calls) = parse_tool_choice(o)?;
    let mut thinking = parse_thinking(o)?;
    let mut response_format = None;
    if let Some(f) = opt_obj(o, "output_format", "")? {
        response_format = Some(parse_output_format(f, "output_format")?);
    }
    if let Some(cfg) = opt_obj(o, "output_config", "")? {
        if let Some(f) = opt_obj(cfg, "format", "output_config")? {
            response_format = Some(parse_output_format(f, "output_config.format")?);
        }
        if let Some(effort) = opt_str(cfg, "effort", "output_config")? {
            thinking.get_or_insert_with(ThinkingConfig::default).effort = Some(effort.to_string());
        }
    }
    let user = match opt_obj(o, "metadata", "")? {
        None => None,
        Some(m) => opt_str(m, "user_id", "metadata")?.map(str::to_string),
    };
    if let Some(servers) = opt_array(o, "mcp_servers", "")? {
        if !servers.is_empty() {
            return Err(bad("mcp_servers (server-side MCP connector) is not supported"));
        }
    }

    Ok(ChatRequest {
        model,
        system,
        messages,
        max_tokens,
        temperature,
        top_p,
        stop,
        stream,
        tools,
        tool_choice,
        parallel_tool_calls,
        thinking,
        response_format,
        user,
    })
}

fn parse_system(v: Option<&Value>) -> Result<Option<String>, FormatError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                let path = format!("system[{i}]");
                let o = as_object(b, &path)?;
                let ty = req_str(o, "type", &path)?;
                if ty != "text" {
                    return Err(bad(format!("{path}.type {ty:?} is not supported (system blocks must be text)")));
                }
                let text = req_str(o, "text", &path)?;
                if !text.is_empty() {
                    texts.push(text);
                }
            }
            Ok(if texts.is_empty() { None } else { Some(texts.join("\n\n")) })
        }
        Some(_) => Err(bad("system must be a string or an array of text blocks")),
    }
}

fn parse_messages(v: Option<&Value>) -> Result<Vec<Message>, FormatError> {
    let arr = match v {
        Some(Value::Array(a)) => a,
        Some(Value::Null) | None => return Err(bad("messages is required")),
        Some(_) => return Err(bad("messages must be an array")),
    };
    if arr.is_empty() {
        return Err(bad("messages must not be empty"));
    }
    let mut out = Vec::with_capacity(arr.len());
    for (i, m) in arr.iter().enumerate() {
        let path = format!("messages[{i}]");
        let o = as_object(m, &path)?;
        let role = match req_str(o, "role", &path)? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" => Role::System,
            other => return Err(bad(format!("{path}.role {other:?} is not one of user, assistant, system"))),
        };
        let content = parse_content(get(o, "content"), &at(&path, "content"))?;
        if role == Role::System {
            if let Some((j, p)) = content.iter().enumerate().find(|(_, p)| !matches!(p, Part::Text { .. })) {
                return Err(bad(format!(
                    "{path}.content[{j}] is a {} block; system messages may only hold text",
                    part_kind(p)
                )));
            }
        }
        out.push(Message { role, content });
    }
    Ok(out)
}

fn parse_content(v: Option<&Value>, path: &str) -> Result<Vec<Part>, FormatError> {
    match v {
        None => Err(bad(format!("{path} is required"))),
        Some(Value::String(s)) => Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(blocks)) => {
            blocks.iter().enumerate().map(|(j, b)| parse_block(b, &format!("{path}[{j}]"))).collect()
        }
        Some(_) => Err(bad(format!("{path} must be a string or an array of content blocks"))),
    }
}

fn parse_block(b: &Value, path: &str) -> Result<Part, FormatError> {
    let o = as_object(b, path)?;
    match req_str(o, "type", path)? {
        "text" => Ok(Part::text(req_str(o, "text", path)?)),
        "image" => parse_image(o, path),
        "tool_use" => {
            let id = req_str(o, "id", path)?.to_string();
            let name = req_str(o, "name", path)?.to_string();
            let arguments = match get(o, "input") {
                None => "{}".to_string(),
                Some(v @ Value::Object(_)) => v.to_string(),
                Some(_) => return Err(bad(format!("{path}.input must be an object"))),
            };
            Ok(Part::ToolCall { id, name, arguments, signature: None })
        }
        "tool_result" => {
            let call_id = req_str(o, "tool_use_id", path)?.to_string();
            let content = parse_tool_result_content(get(o, "content"), &at(path, "content"))?;
            let is_error = opt_bool(o, "is_error", path)?.unwrap_or(false);
            Ok(Part::ToolResult { call_id, name: None, content, is_error })
        }
        "thinking" => Ok(Part::Thinking {
            text: opt_str(o, "thinking", path)?.unwrap_or_default().to_string(),
            signature: opt_str(o, "signature", path)?.map(str::to_string),
        }),
        "redacted_thinking" => Ok(Part::RedactedThinking { data: req_str(o, "data", path)?.to_string() }),
        other => Err(bad(format!("{path}.type {other:?} is not supported"))),
    }
}

fn parse_image(o: &Obj, path: &str) -> Result<Part, FormatError> {
    let spath = at(path, "source");
    let src = match get(o, "source") {
        Some(v) => as_object(v, &spath)?,
        None => return Err(bad(format!("{spath} is required"))),
    };
    let source = match req_str(src, "type", &spath)? {
        "base64" => ImageSource::Base64 {
            media_type: req_str(src, "media_type", &spath)?.to_string(),
            data: req_str(src, "data", &spath)?.to_string(),
        },
        "url" => ImageSource::Url { url: req_str(src, "url", &spath)?.to_string() },
        other => return Err(bad(format!("{spath}.type {other:?} is not supported"))),
    };
    Ok(Part::Image { source })
}

fn parse_tool_result_content(v: Option<&Value>, path: &str) -> Result<Vec<Part>, FormatError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(blocks)) => {
            let mut out = Vec::with_capacity(blocks.len());
            for (k, b) in blocks.iter().enumerate() {
                let p = format!("{path}[{k}]");
                let o = as_object(b, &p)?;
                out.push(match req_str(o, "type", &p)? {
                    "text" => Part::text(req_str(o, "text", &p)?),
                    "image" => parse_image(o, &p)?,
                    "tool_reference" => Part::text(format!("tool_reference: {}", req_str(o, "tool_name", &p)?)),
                    other => return Err(bad(format!("{p}.type {other:?} is not supported in a tool_result"))),
                });
            }
            Ok(out)
        }
        Some(_) => Err(bad(format!("{path} must be a string or an array of content blocks"))),
    }
}

fn parse_tools(o: &Obj) -> Result<Vec<ToolDef>, FormatError> {
    let Some(arr) = opt_array(o, "tools", "")? else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(arr.len());
    for (i, t) in arr.iter().enumerate() {
        let path = format!("tools[{i}]");
        let t = as_object(t, &path)?;
        if let Some(ty) = opt_str(t, "type", &path)? {
            if ty != "custom" {
                return Err(bad(format!("{path}.type {ty:?} is not supported (server tools cannot be converted)")));
            }
        }
        let name = req_str(t, "name", &path)?.to_string();
        let description = opt_str(t, "description", &path)?.map(str::to_string);
        let parameters = match get(t, "input_schema") {
            None => json!({"type": "object", "properties": {}}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(bad(format!("{path}.input_schema must be an object"))),
        };
        out.push(ToolDef { name, description, parameters });
    }
    Ok(out)
}

fn parse_tool_choice(o: &Obj) -> Result<(Option<ToolChoice>, Option<bool>), FormatError> {
    let Some(tc) = opt_obj(o, "tool_choice", "")? else { return Ok((None, None)) };
    let path = "tool_choice";
    let choice = match req_str(tc, "type", path)? {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Tool { name: req_str(tc, "name", path)?.to_string() },
        other => return Err(bad(format!("tool_choice.type {other:?} is not one of auto, any, tool, none"))),
    };
    let parallel = opt_bool(tc, "disable_parallel_tool_use", path)?.map(|d| !d);
    Ok((Some(choice), parallel))
}

fn parse_thinking(o: &Obj) -> Result<Option<ThinkingConfig>, FormatError> {
    let Some(t) = opt_obj(o, "thinking", "")? else { return Ok(None) };
    let path = "thinking";
    let visible = opt_str(t, "display", path)? != Some("omitted");
    Ok(Some(match req_str(t, "type", path)? {
        "enabled" => ThinkingConfig {
            enabled: true,
            budget_tokens: opt_u32(t, "budget_tokens", path)?,
            effort: None,
            include_thoughts: visible,
        },
        "adaptive" => ThinkingConfig { enabled: true, budget_tokens: None, effort: None, include_thoughts: visible },
        "disabled" => ThinkingConfig::default(),
        other => return Err(bad(format!("thinking.type {other:?} is not one of enabled, adaptive, disabled"))),
    }))
}

fn parse_output_format(f: &Obj, path: &str) -> Result<ResponseFormat, FormatError> {
    match req_str(f, "type", path)? {
        "json_schema" => {
            let schema = match get(f, "schema") {
                Some(v @ Value::Object(_)) => v.clone(),
                Some(_) => return Err(bad(format!("{path}.schema must be an object"))),
                None => return Err(bad(format!("{path}.schema is required"))),
            };
            Ok(ResponseFormat::JsonSchema { name: "response".into(), schema, strict: None })
        }
        other => Err(bad(format!("{path}.type {other:?} is not supported"))),
    }
}

// ---------------------------------------------------------------------------------------
// Canonical answer → client body.

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

// ---------------------------------------------------------------------------------------
// Stream encoder (canonical events → client SSE).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking { signed: bool },
    Tool { ordinal: u32 },
}

struct PendingTool {
    ordinal: u32,
    id: String,
    name: String,
    signature: Option<String>,
    args: String,
}

/// Writes the Messages SSE grammar: `message_start`, content blocks with indices 0,1,2…,
/// `message_delta`, `message_stop` (or a terminal `error`).
pub struct Encoder {
    model: String,
    id: Option<String>,
    started: bool,
    done: bool,
    next_index: u32,
    open: Open,
    open_index: u32,
    pending: Vec<PendingTool>,
    tools_seen: HashSet<u32>,
    usage: Usage,
    finish: Option<FinishReason>,
}

/// A stream encoder for a client; `model` is the client's model name.
pub fn encoder(model: &str) -> Encoder {
    Encoder {
        model: model.to_string(),
        id: None,
        started: false,
        done: false,
        next_index: 0,
        open: Open::None,
        open_index: 0,
        pending: Vec::new(),
        tools_seen: HashSet::new(),
        usage: Usage::default(),
        finish: None,
    }
}

impl Encoder {
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = self.id.get_or_insert_with(|| new_id("msg_")).clone();
        let mut usage = usage_json(&self.usage);
        if let Some(u) = usage.as_object_mut() {
            u.insert("output_tokens".into(), json!(0));
        }
        sse::json_frame(
            out,
            Some("message_start"),
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage,
            }}),
        );
    }

    fn open_block(&mut self, block: Value, kind: Open, out: &mut Vec<u8>) {
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        self.open = kind;
        self.open_index = index;
        sse::json_frame(
            out,
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        sse::json_frame(
            out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": self.open_index, "delta": delta}),
        );
    }

    fn stop_block(index: u32, out: &mut Vec<u8>) {
        sse::json_frame(out, Some("content_block_stop"), &json!({"type": "content_block_stop", "index": index}));
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if self.open != Open::None {
            Self::stop_block(self.open_index, out);
            self.open = Open::None;
        }
    }

    /// Close the open block and emit any buffered tool calls whole.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close_open(out);
        for t in std::mem::take(&mut self.pending) {
            self.open_tool(t.ordinal, &t.id, &t.name, t.signature.as_deref(), out);
            if !t.args.is_empty() {
                self.delta(json!({"type": "input_json_delta", "partial_json": t.args}), out);
            }
            self.close_open(out);
        }
    }

    /// Open a `tool_use` block (nothing may be open), preceded by a signed empty thinking
    /// block when the call carries a (Gemini) signature.
    fn open_tool(&mut self, ordinal: u32, id: &str, name: &str, signature: Option<&str>, out: &mut Vec<u8>) {
        if let Some(sig) = signature.filter(|s| !s.is_empty()) {
            self.open_block(
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                Open::Thinking { signed: true },
                out,
            );
            self.delta(json!({"type": "signature_delta", "signature": sig}), out);
            self.close_open(out);
        }
        let id = if id.is_empty() { new_id("toolu_") } else { id.to_string() };
        self.open_block(json!({"type": "tool_use", "id": id, "name": name, "input": {}}), Open::Tool { ordinal }, out);
    }

    fn tool_start(&mut self, ordinal: u32, id: &str, name: &str, signature: Option<&str>, out: &mut Vec<u8>) {
        if !self.tools_seen.insert(ordinal) {
            return; // a repeated start for the same call
        }
        if matches!(self.open, Open::Tool { .. }) {
            self.pending.push(PendingTool {
                ordinal,
                id: id.to_string(),
                name: name.to_string(),
                signature: signature.map(str::to_string),
                args: String::new(),
            });
        } else {
            self.close_all(out);
            self.open_tool(ordinal, id, name, signature, out);
        }
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let StreamEvent::Start { id, .. } = ev {
            if !self.started && !id.is_empty() {
                self.id = Some(message_id(id));
            }
        }
        // `message_start` waits for the first content so it can carry any early usage.
        if !matches!(ev, StreamEvent::Usage(_) | StreamEvent::Start { .. }) {
            self.start(out);
        }
        match ev {
            StreamEvent::Start { .. } => {}
            StreamEvent::Text(t) => {
                if t.is_empty() {
                    return;
                }
                if self.open != Open::Text {
                    self.close_all(out);
                    self.open_block(json!({"type": "text", "text": ""}), Open::Text, out);
                }
                self.delta(json!({"type": "text_delta", "text": t}), out);
            }
            StreamEvent::Thinking(t) => {
                if t.is_empty() {
                    return;
                }
                if self.open != (Open::Thinking { signed: false }) {
                    self.close_all(out);
                    self.open_block(
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        Open::Thinking { signed: false },
                        out,
                    );
                }
                self.delta(json!({"type": "thinking_delta", "thinking": t}), out);
            }
            StreamEvent::ThinkingSignature(s) => {
                if self.open != (Open::Thinking { signed: false }) {
                    self.close_all(out);
                    self.open_block(
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        Open::Thinking { signed: false },
                        out,
                    );
                }
                self.delta(json!({"type": "signature_delta", "signature": s}), out);
                self.open = Open::Thinking { signed: true };
            }
            StreamEvent::RedactedThinking(data) => {
                self.close_all(out);
                self.open_block(json!({"type": "redacted_thinking", "data": data}), Open::None, out);
                Self::stop_block(self.open_index, out);
            }
            StreamEvent::ToolCallStart { index, id, name, signature } => {
                self.tool_start(*index, id, name, signature.as_deref(), out)
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                if !self.tools_seen.contains(index) {
                    self.tool_start(*index, "", "", None, out);
                }
                if self.open == (Open::Tool { ordinal: *index }) {
                    if !delta.is_empty() {
                        self.delta(json!({"type": "input_json_delta", "partial_json": delta}), out);
                    }
                } else if let Some(t) = self.pending.iter_mut().find(|t| t.ordinal == *index) {
                    t.args.push_str(delta);
                }
                // Otherwise the call's block is closed already: documented drop.
            }
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::Finish(f) => {
                self.finish = Some(*f);
                self.close_all(out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close_all(out);
        let reason = stop_reason(self.finish.unwrap_or(FinishReason::Stop));
        sse::json_frame(
            out,
            Some("message_delta"),
            &json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                    "usage": usage_json(&self.usage)}),
        );
        sse::json_frame(out, Some("message_stop"), &json!({"type": "message_stop"}));
        self.done = true;
    }

    fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        sse::json_frame(out, Some("error"), &error_json(status, message));
        self.done = true;
    }
}

// ---------------------------------------------------------------------------------------
// Canonical request → upstream body.

fn image_source_json(source: &ImageSource) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        ImageSource::Url { url } => {
            if let Some((media_type, data)) = url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                json!({"type": "base64", "media_type": media_type, "data": data})
            } else {
                json!({"type": "url", "url": url})
            }
        }
    }
}

fn upstream_blocks(m: &Message, i: usize) -> Result<Vec<Value>, FormatError> {
    let mut out = Vec::with_capacity(m.content.len());
    for (j, p) in m.content.iter().enumerate() {
        match p {
            Part::Text { text } => {
                if !text.is_empty() {
                    out.push(json!({"type": "text", "text": text}));
                }
            }
            Part::Image { source } => out.push(json!({"type": "image", "source": image_source_json(source)})),
            Part::ToolCall { id, name, arguments, .. } => {
                out.push(json!({"type": "tool_use", "id": id, "name": name, "input": arguments_to_input(arguments)}))
            }
            Part::ToolResult { call_id, content, is_error, .. } => {
                let mut inner = Vec::with_capacity(content.len());
                for (k, c) in content.iter().enumerate() {
                    match c {
                        Part::Text { text } => {
                            if !text.is_empty() {
                                inner.push(json!({"type": "text", "text": text}));
                            }
                        }
                        Part::Image { source } => {
                            inner.push(json!({"type": "image", "source": image_source_json(source)}))
                        }
                        other => {
                            return Err(bad(format!(
                                "messages[{i}].content[{j}].content[{k}]: a {} part cannot be carried in an Anthropic tool_result",
                                part_kind(other)
                            )))
                        }
                    }
                }
                let mut block = json!({"type": "tool_result", "tool_use_id": call_id});
                if let Some(b) = block.as_object_mut() {
                    if !inner.is_empty() {
                        b.insert("content".into(), Value::Array(inner));
                    }
                    if *is_error {
                        b.insert("is_error".into(), Value::Bool(true));
                    }
                }
                out.push(block);
            }
            Part::Thinking { text, signature } => {
                if let Some(sig) = signature.as_deref().filter(|s| !s.is_empty()) {
                    out.push(json!({"type": "thinking", "thinking": text, "signature": sig}));
                }
            }
            Part::RedactedThinking { data } => out.push(json!({"type": "redacted_thinking", "data": data})),
        }
    }
    Ok(out)
}

fn system_message_text(m: &Message, i: usize) -> Result<String, FormatError> {
    let mut texts = Vec::new();
    for (j, p) in m.content.iter().enumerate() {
        match p {
            Part::Text { text } => {
                if !text.is_empty() {
                    texts.push(text.as_str());
                }
            }
            other => {
                return Err(bad(format!(
                    "messages[{i}].content[{j}]: a {} part in a system message cannot be sent to Anthropic",
                    part_kind(other)
                )))
            }
        }
    }
    Ok(texts.join("\n\n"))
}

/// The body for a real Anthropic `POST /v1/messages` upstream; `model` is the upstream name.
pub fn build_request(req: &ChatRequest, model: &str) -> Result<Vec<u8>, FormatError> {
    let mut body = Obj::new();
    body.insert("model".into(), json!(model));

    let thinking_on = req.thinking.as_ref().is_some_and(|t| t.enabled);
    let budget = req
        .thinking
        .as_ref()
        .filter(|t| t.enabled)
        .map(|t| t.budget_tokens.unwrap_or(DEFAULT_THINKING_BUDGET).max(MIN_THINKING_BUDGET));
    let mut max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if let Some(b) = budget {
        if max_tokens <= b {
            max_tokens = b.saturating_add(max_tokens.max(1));
        }
    }
    body.insert("max_tokens".into(), json!(max_tokens));

    // System: the canonical system, then leading system messages, then a JSON-mode hint.
    let mut system: Vec<String> = req.system.iter().filter(|s| !s.is_empty()).cloned().collect();
    let mut messages: Vec<(Role, Vec<Value>)> = Vec::new();
    let mut leading = true;
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = if m.role == Role::System {
            let text = system_message_text(m, i)?;
            if leading {
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            if text.is_empty() {
                continue;
            }
            (Role::System, vec![json!({"type": "text", "text": text})])
        } else {
            leading = false;
            (m.role, upstream_blocks(m, i)?)
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    if req.response_format == Some(ResponseFormat::JsonObject) {
        system.push(JSON_OBJECT_INSTRUCTION.to_string());
    }
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, mut blocks)| match role {
            Role::System => {
                let text: Vec<&str> = blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
                json!({"role": "system", "content": text.join("\n\n")})
            }
            Role::User => {
                // tool_result blocks must come first in a user turn.
                blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
                json!({"role": "user", "content": blocks})
            }
            Role::Assistant => json!({"role": "assistant", "content": blocks}),
        })
        .collect();
    body.insert("messages".into(), Value::Array(messages));

    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let schema = if t.parameters.is_object() {
                    t.parameters.clone()
                } else {
                    json!({"type": "object", "properties": {}})
                };
                let mut tool = json!({"name": t.name, "input_schema": schema});
                if let (Some(d), Some(o)) = (&t.description, tool.as_object_mut()) {
                    o.insert("description".into(), json!(d));
                }
                tool
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        let no_parallel = req.parallel_tool_calls == Some(false);
        let choice = match &req.tool_choice {
            Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
            Some(ToolChoice::Required) => Some(json!({"type": "any"})),
            Some(ToolChoice::Tool { name }) => Some(json!({"type": "tool", "name": name})),
            Some(ToolChoice::None) => Some(json!({"type": "none"})),
            None if no_parallel => Some(json!({"type": "auto"})),
            None => None,
        };
        if let Some(mut choice) = choice {
            if no_parallel && req.tool_choice != Some(ToolChoice::None) {
                if let Some(o) = choice.as_object_mut() {
                    o.insert("disable_parallel_tool_use".into(), Value::Bool(true));
                }
            }
            body.insert("tool_choice".into(), choice);
        }
    }

    if let Some(b) = budget {
        body.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": b}));
    }
    let mut output_config = Obj::new();
    if let Some(effort) = req.thinking.as_ref().and_then(|t| t.effort.as_ref()) {
        output_config.insert("effort".into(), json!(effort));
    }
    if let Some(ResponseFormat::JsonSchema { schema, .. }) = &req.response_format {
        output_config.insert("format".into(), json!({"type": "json_schema", "schema": schema}));
    }
    if !output_config.is_empty() {
        body.insert("output_config".into(), Value::Object(output_config));
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(req.stop));
    }
    if let Some(t) = req.temperature.filter(|t| !thinking_on || *t == 1.0) {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p.filter(|p| !thinking_on || *p >= 0.95) {
        body.insert("top_p".into(), json!(p));
    }
    body.insert("stream".into(), Value::Bool(req.stream));
    Ok(Value::Object(body).to_string().into_bytes())
}

// ---------------------------------------------------------------------------------------
// Upstream answer → canonical.

fn malformed(message: impl Into<String>) -> FormatError {
    FormatError::malformed(message)
}

fn upstream_block(b: &Value, path: &str) -> Result<Part, FormatError> {
    let o = b.as_object().ok_or_else(|| malformed(format!("upstream {path} is not an object")))?;
    let s = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    match o.get("type").and_then(Value::as_str).unwrap_or_default() {
        "text" => Ok(Part::Text { text: s("text") }),
        "thinking" => Ok(Part::Thinking {
            text: s("thinking"),
            signature: o.get("signature").and_then(Value::as_str).map(str::to_string),
        }),
        "redacted_thinking" => Ok(Part::RedactedThinking { data: s("data") }),
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
    if o.get("type").and_then(Value::as_str) == Some("error") {
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
    let id =
        o.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map_or_else(|| new_id("msg_"), str::to_string);
    Ok(ChatResponse {
        id,
        model: o.get("model").and_then(Value::as_str).unwrap_or_default().to_string(),
        content,
        finish: finish_from_stop_reason(o.get("stop_reason").and_then(Value::as_str)),
        usage,
    })
}

// ---------------------------------------------------------------------------------------
// Upstream stream → canonical events.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    Redacted,
    Tool { ordinal: u32 },
}

/// Decodes a real Anthropic Messages stream. `StreamEvent` tool indices are tool ordinals
/// (0,1,2… over `tool_use` blocks), not block indices.
pub struct Decoder {
    blocks: HashMap<u64, Block>,
    tools: u32,
    usage: Usage,
    finished: bool,
    stopped: bool,
}

/// A decoder for an upstream Anthropic stream.
pub fn decoder() -> Decoder {
    Decoder { blocks: HashMap::new(), tools: 0, usage: Usage::default(), finished: false, stopped: false }
}

impl Decoder {
    fn block_index(o: &Obj, ty: &str) -> Result<u64, FormatError> {
        o.get("index").and_then(Value::as_u64).ok_or_else(|| malformed(format!("upstream {ty} has no index")))
    }

    fn block_start(&mut self, o: &Obj) -> Result<Vec<StreamEvent>, FormatError> {
        let index = Self::block_index(o, "content_block_start")?;
        let b = o
            .get("content_block")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("upstream content_block_start has no content_block"))?;
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let mut out = Vec::new();
        let kind = match b.get("type").and_then(Value::as_str).unwrap_or_default() {
            "text" => {
                let t = s("text");
                if !t.is_empty() {
                    out.push(StreamEvent::Text(t));
                }
                Block::Text
            }
            "thinking" => {
                let t = s("thinking");
                if !t.is_empty() {
                    out.push(StreamEvent::Thinking(t));
                }
                let sig = s("signature");
                if !sig.is_empty() {
                    out.push(StreamEvent::ThinkingSignature(sig));
                }
                Block::Thinking
            }
            "redacted_thinking" => {
                out.push(StreamEvent::RedactedThinking(s("data")));
                Block::Redacted
            }
            "tool_use" => {
                let ordinal = self.tools;
                self.tools = self.tools.saturating_add(1);
                out.push(StreamEvent::ToolCallStart { index: ordinal, id: s("id"), name: s("name"), signature: None });
                if let Some(input) = b.get("input").and_then(Value::as_object).filter(|i| !i.is_empty()) {
                    out.push(StreamEvent::ToolCallArgs {
                        index: ordinal,
                        delta: Value::Object(input.clone()).to_string(),
                    });
                }
                Block::Tool { ordinal }
            }
            other => {
                return Err(malformed(format!(
                    "upstream content block type {other:?} (a server tool block) is not supported"
                )))
            }
        };
        self.blocks.insert(index, kind);
        Ok(out)
    }

    fn block_delta(&mut self, o: &Obj) -> Result<Vec<StreamEvent>, FormatError> {
        let index = Self::block_index(o, "content_block_delta")?;
        let kind = *self
            .blocks
            .get(&index)
            .ok_or_else(|| malformed(format!("upstream content_block_delta for unknown block {index}")))?;
        let d = o
            .get("delta")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("upstream content_block_delta has no delta"))?;
        let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let dty = d.get("type").and_then(Value::as_str).unwrap_or_default();
        Ok(match (dty, kind) {
            ("text_delta", Block::Text) => vec![StreamEvent::Text(s("text"))],
            ("citations_delta", Block::Text) => Vec::new(),
            ("thinking_delta", Block::Thinking) => vec![StreamEvent::Thinking(s("thinking"))],
            ("signature_delta", Block::Thinking) => vec![StreamEvent::ThinkingSignature(s("signature"))],
            ("input_json_delta", Block::Tool { ordinal }) => {
                let delta = s("partial_json");
                if delta.is_empty() {
                    Vec::new()
                } else {
                    vec![StreamEvent::ToolCallArgs { index: ordinal, delta }]
                }
            }
            _ => return Err(malformed(format!("upstream delta {dty:?} does not fit block {index} ({kind:?})"))),
        })
    }
}

impl StreamDecoder for Decoder {
    fn feed(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>, FormatError> {
        if self.stopped {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(data.trim())
            .map_err(|e| malformed(format!("upstream event {:?} data is not JSON: {e}", event.unwrap_or(""))))?;
        let Some(o) = v.as_object() else {
            return Err(malformed("upstream event data is not a JSON object"));
        };
        let ty = o.get("type").and_then(Value::as_str).or(event).unwrap_or_default();
        match ty {
            "message_start" => {
                let m = o.get("message").and_then(Value::as_object);
                let s = |k: &str| m.and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or_default().to_string();
                let usage = m.and_then(|m| m.get("usage")).filter(|u| u.is_object());
                read_usage(usage, &mut self.usage);
                let mut out = vec![StreamEvent::Start { id: s("id"), model: s("model") }];
                // The prompt's usage is known now; a client's `message_start` should carry it.
                if usage.is_some() {
                    out.push(StreamEvent::Usage(self.usage));
                }
                Ok(out)
            }
            "content_block_start" => self.block_start(o),
            "content_block_delta" => self.block_delta(o),
            "message_delta" => {
                read_usage(o.get("usage"), &mut self.usage);
                let reason = o.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str);
                self.finished = true;
                Ok(vec![StreamEvent::Usage(self.usage), StreamEvent::Finish(finish_from_stop_reason(reason))])
            }
            "message_stop" => {
                self.stopped = true;
                if self.finished {
                    Ok(Vec::new())
                } else {
                    self.finished = true;
                    Ok(vec![StreamEvent::Usage(self.usage), StreamEvent::Finish(FinishReason::Stop)])
                }
            }
            "error" => Err(upstream_error(o)),
            // content_block_stop, ping, and event types added later: nothing to emit.
            _ => Ok(Vec::new()),
        }
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError> {
        if self.stopped {
            Ok(Vec::new())
        } else {
            Err(malformed("upstream stream ended before message_stop"))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::formats::grammar::ValidateStream as _;

    fn validate_stream(bytes: &[u8]) -> Result<(), String> {
        crate::formats::Format::AnthropicMessages.validate_stream(bytes)
    }

    use super::*;
    use crate::formats::Format;

    const CLAUDE_CODE: &str = include_str!("../../tests/fixtures/anthropic/claude_code_request.json");
    const PARSE_CASES: &str = include_str!("../../tests/fixtures/anthropic/parse_cases.json");
    const BUILD_CASES: &str = include_str!("../../tests/fixtures/anthropic/build_cases.json");
    const UPSTREAM_STREAM: &str = include_str!("../../tests/fixtures/anthropic/upstream_stream.sse");
    const UPSTREAM_RESPONSE: &str = include_str!("../../tests/fixtures/anthropic/upstream_response.json");

    fn ctx_of(v: Option<&Value>) -> ParseContext {
        let model = v.and_then(|c| c.get("model")).and_then(Value::as_str).map(str::to_string);
        let op = v.and_then(|c| c.get("op")).and_then(Value::as_str).and_then(Op::parse).unwrap_or_default();
        ParseContext { model, op }
    }

    fn parse_value(v: &Value) -> Result<ChatRequest, FormatError> {
        parse_request(v.to_string().as_bytes(), &ParseContext::default())
    }

    // ----- requests ------------------------------------------------------------------

    #[test]
    fn parse_request_cases() {
        let cases: Vec<Value> = serde_json::from_str(PARSE_CASES).unwrap();
        assert!(cases.len() > 30);
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let got = parse_request(case["body"].to_string().as_bytes(), &ctx_of(case.get("ctx")));
            if let Some(err) = case.get("error") {
                let e = got.expect_err(name);
                assert_eq!(u64::from(e.status), err[0].as_u64().unwrap(), "{name}: {e}");
                assert!(e.message.contains(err[1].as_str().unwrap()), "{name}: message was {:?}", e.message);
            } else {
                let want: ChatRequest = serde_json::from_value(case["expect"].clone()).unwrap();
                assert_eq!(got.unwrap_or_else(|e| panic!("{name}: {e}")), want, "{name}");
            }
        }
    }

    #[test]
    fn claude_code_request_parses() {
        let req = parse_request(CLAUDE_CODE.as_bytes(), &ParseContext::default()).unwrap();
        assert_eq!(req.model, "claude-opus-4-5-20251101");
        assert!(req.stream);
        assert_eq!(req.max_tokens, Some(32000));
        let system = req.system.as_deref().unwrap();
        assert!(system.starts_with("x-anthropic-billing-header"));
        assert!(system.contains("\n\nYou are Claude Code, Anthropic's official CLI for Claude.\n\n"));
        assert_eq!(req.tools.len(), 22);
        assert!(req.tools.iter().any(|t| t.name == "mcp__ide__getDiagnostics"));
        assert_eq!(req.tools[1].name, "Bash");
        assert_eq!(req.tools[1].parameters["required"], json!(["command"]));
        assert_eq!(
            req.thinking,
            Some(ThinkingConfig {
                enabled: true,
                budget_tokens: None,
                effort: Some("high".into()),
                include_thoughts: true
            })
        );
        let user: Value = serde_json::from_str(req.user.as_deref().unwrap()).unwrap();
        assert!(user["session_id"].is_string());

        let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
        use Role::{Assistant as A, System as S, User as U};
        assert_eq!(roles, [U, A, U, A, U, S, U]);
        assert_eq!(
            req.messages[5].content,
            vec![Part::text("The user has changed the permission mode to acceptEdits.")]
        );
        let Part::Thinking { signature, .. } = &req.messages[1].content[0] else { panic!("thinking") };
        assert_eq!(signature.as_deref(), Some("EqQBCkgIBxABGAIqQKf0p3Vh9Jx1zGQx2m4yN0wqE3bXk5c1rG8sTtJ2uQ1w=="));
        assert!(matches!(&req.messages[1].content[2], Part::ToolCall { name, arguments, .. }
            if name == "Glob" && arguments == r#"{"pattern":"src/worker/**/*.rs"}"#));
        assert!(matches!(&req.messages[3].content[0], Part::RedactedThinking { data } if data.starts_with("EmwK")));
        assert!(matches!(&req.messages[4].content[0], Part::ToolResult { content, .. }
            if content == &vec![Part::text("tool_reference: mcp__ide__getDiagnostics")]));
        assert!(
            matches!(&req.messages[6].content[1], Part::Image { source: ImageSource::Base64 { media_type, .. } } if media_type == "image/png")
        );

        // The older Claude Code shape: thinking enabled with a budget.
        let mut body: Value = serde_json::from_str(CLAUDE_CODE).unwrap();
        body["thinking"] = json!({"type": "enabled", "budget_tokens": 31999});
        let req2 = parse_value(&body).unwrap();
        assert_eq!(req2.thinking.as_ref().and_then(|t| t.budget_tokens), Some(31999));
        // Through the dispatch, as the bridge calls it (POST /v1/messages?beta=true).
        let via = Format::AnthropicMessages.parse_request(CLAUDE_CODE.as_bytes(), &ParseContext::default()).unwrap();
        assert_eq!(via, req);
    }

    #[test]
    fn claude_code_request_survives_build_and_reparse() {
        let req = parse_request(CLAUDE_CODE.as_bytes(), &ParseContext::default()).unwrap();
        let body = build_request(&req, "claude-opus-4-5-20251101").unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["messages"][5],
            json!({"role": "system", "content": "The user has changed the permission mode to acceptEdits."})
        );
        assert_eq!(v["thinking"], json!({"type": "enabled", "budget_tokens": 1024}));
        assert_eq!(v["output_config"], json!({"effort": "high"}));
        assert_eq!(v["tools"].as_array().unwrap().len(), 22);
        assert!(v["tools"][8].get("defer_loading").is_none());
        let back = parse_request(&body, &ParseContext::default()).unwrap();
        assert_eq!(back.messages, req.messages);
        assert_eq!(back.tools, req.tools);
        assert_eq!(back.system, req.system);
        assert_eq!(back.user, req.user);
        assert_eq!(back.max_tokens, req.max_tokens);
    }

    #[test]
    fn build_request_cases() {
        let cases: Vec<Value> = serde_json::from_str(BUILD_CASES).unwrap();
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let req: ChatRequest =
                serde_json::from_value(case["request"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let body = build_request(&req, case["model"].as_str().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got, case["expect"], "{name}:\n{}", serde_json::to_string_pretty(&got).unwrap());
            // What we send upstream is itself a valid Anthropic request.
            parse_request(&body, &ParseContext::default()).unwrap_or_else(|e| panic!("{name}: reparse {e}"));
        }
    }

    #[test]
    fn build_request_refuses_what_anthropic_cannot_carry() {
        let base = ChatRequest { model: "m".into(), ..Default::default() };
        let cases = [
            Message {
                role: Role::User,
                content: vec![Part::ToolResult {
                    call_id: "c".into(),
                    name: None,
                    content: vec![Part::ToolCall {
                        id: "x".into(),
                        name: "n".into(),
                        arguments: "{}".into(),
                        signature: None,
                    }],
                    is_error: false,
                }],
            },
            Message { role: Role::System, content: vec![Part::RedactedThinking { data: "d".into() }] },
        ];
        for m in cases {
            let req = ChatRequest { messages: vec![Message::text(Role::User, "q"), m], ..base.clone() };
            let e = build_request(&req, "m").unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains("messages[1].content[0]"), "{}", e.message);
        }
    }

    // ----- responses -----------------------------------------------------------------

    #[test]
    fn parse_upstream_response() {
        let resp = parse_response(UPSTREAM_RESPONSE.as_bytes()).unwrap();
        assert_eq!(resp.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(resp.model, "claude-sonnet-4-5-20250929");
        assert_eq!(resp.finish, FinishReason::ToolUse);
        assert_eq!(
            resp.usage,
            Usage {
                input_tokens: 2095,
                output_tokens: 503,
                cache_read_tokens: 1800,
                cache_write_tokens: 0,
                ..Default::default()
            }
        );
        assert_eq!(
            resp.content,
            vec![
                Part::Thinking { text: "Need the weather tool.".into(), signature: Some("EqQBCgIYAhIM".into()) },
                Part::RedactedThinking { data: "EmwKAhgBEgy3va3pzix".into() },
                Part::text("I'll check."),
                Part::ToolCall {
                    id: "toolu_01A09q90qw90lq917835lq9".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"location":"San Francisco, CA","unit":"celsius"}"#.into(),
                    signature: None,
                },
            ]
        );
    }

    #[test]
    fn render_parse_round_trip() {
        let upstream = parse_response(UPSTREAM_RESPONSE.as_bytes()).unwrap();
        let finishes = [
            (FinishReason::Stop, "end_turn"),
            (FinishReason::Length, "max_tokens"),
            (FinishReason::ToolUse, "tool_use"),
            (FinishReason::StopSequence, "stop_sequence"),
            (FinishReason::ContentFilter, "refusal"),
        ];
        for (finish, wire) in finishes {
            let resp = ChatResponse { finish, ..upstream.clone() };
            let body = render_response(&resp, "client-model");
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["model"], "client-model");
            assert_eq!(v["type"], "message");
            assert_eq!(v["role"], "assistant");
            assert_eq!(v["stop_reason"], wire);
            assert_eq!(v["stop_sequence"], Value::Null);
            assert_eq!(v["usage"]["cache_read_input_tokens"], 1800);
            assert_eq!(v["content"][3]["input"], json!({"location": "San Francisco, CA", "unit": "celsius"}));
            let mut back = parse_response(&body).unwrap();
            back.model = resp.model.clone();
            assert_eq!(back, resp);
        }
    }

    #[test]
    fn render_response_edge_cases() {
        let resp = ChatResponse {
            id: "chatcmpl-9".into(),
            model: "gpt".into(),
            content: vec![
                Part::Thinking { text: "t".into(), signature: None },
                Part::ToolCall { id: "call_1".into(), name: "a".into(), arguments: "{\"x\":".into(), signature: None },
                Part::ToolCall {
                    id: String::new(),
                    name: "b".into(),
                    arguments: String::new(),
                    signature: Some("g".into()),
                },
                Part::ToolCall { id: "call_3".into(), name: "c".into(), arguments: "[1]".into(), signature: None },
                Part::Image { source: ImageSource::Url { url: "u".into() } },
            ],
            finish: FinishReason::ToolUse,
            usage: Usage { input_tokens: 1, output_tokens: 2, reasoning_tokens: 1, ..Default::default() },
        };
        let v: Value = serde_json::from_slice(&render_response(&resp, "m")).unwrap();
        assert_eq!(v["id"], "msg_chatcmpl-9");
        assert_eq!(v["content"][0], json!({"type": "thinking", "thinking": "t", "signature": ""}));
        assert_eq!(v["content"][1]["input"], json!({"_raw_arguments": "{\"x\":"}));
        // A call's Gemini signature comes as a signed empty thinking block right before it.
        assert_eq!(v["content"][2], json!({"type": "thinking", "thinking": "", "signature": "g"}));
        assert_eq!(v["content"][3]["input"], json!({}));
        assert!(v["content"][3]["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(v["content"][4]["input"], json!({"_raw_arguments": "[1]"}));
        assert_eq!(v["content"].as_array().unwrap().len(), 5);
        let empty = ChatResponse { id: String::new(), content: vec![], ..resp };
        let v: Value = serde_json::from_slice(&render_response(&empty, "m")).unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(v["content"], json!([]));
    }

    #[test]
    fn errors_map_both_ways() {
        let table: &[(u16, &str, u16)] = &[
            (400, "invalid_request_error", 400),
            (401, "authentication_error", 401),
            (402, "billing_error", 402),
            (403, "permission_error", 403),
            (404, "not_found_error", 404),
            (409, "invalid_request_error", 400),
            (413, "request_too_large", 413),
            (429, "rate_limit_error", 429),
            (499, "invalid_request_error", 400),
            (500, "api_error", 500),
            (502, "api_error", 500),
            (503, "overloaded_error", 529),
            (504, "timeout_error", 504),
            (529, "overloaded_error", 529),
        ];
        for &(status, ty, back) in table {
            let v: Value = serde_json::from_slice(&render_error(status, "nope \"quoted\"")).unwrap();
            assert_eq!(v, json!({"type": "error", "error": {"type": ty, "message": "nope \"quoted\""}}), "{status}");
            // An upstream error body with that type maps back to a status.
            let e = parse_response(&render_error(status, "m")).unwrap_err();
            assert_eq!(e.status, back, "{status}");
            let mut d = decoder();
            let e = d.feed(Some("error"), &String::from_utf8(render_error(status, "m")).unwrap()).unwrap_err();
            assert_eq!(e.status, back, "{status}");
        }
        let e = parse_response(br#"{"type":"error","error":{"type":"brand_new_error","message":"x"}}"#).unwrap_err();
        assert_eq!(e.status, 502);
    }

    // ----- streams -------------------------------------------------------------------

    fn encode(events: &[StreamEvent], model: &str) -> Vec<u8> {
        let mut enc = encoder(model);
        let mut out = Vec::new();
        for ev in events {
            enc.event(ev, &mut out);
        }
        enc.finish(&mut out);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Vec<StreamEvent>, FormatError> {
        let mut d = decoder();
        let mut out = Vec::new();
        for ev in sse::parse(bytes).map_err(FormatError::malformed)? {
            out.extend(d.feed(ev.event.as_deref(), &ev.data)?);
        }
        out.extend(d.end()?);
        Ok(out)
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        sse::parse(bytes).unwrap().into_iter().map(|e| e.event.unwrap_or_default()).collect()
    }

    /// What a client would assemble from a stream: parts in order, last usage, finish.
    #[derive(Debug, PartialEq)]
    struct Summary {
        parts: Vec<Part>,
        usage: Usage,
        finish: FinishReason,
    }

    fn summarize(events: &[StreamEvent]) -> Summary {
        let mut parts: Vec<Part> = Vec::new();
        let mut tool_pos: HashMap<u32, usize> = HashMap::new();
        let mut usage = Usage::default();
        let mut finish = FinishReason::Stop;
        for ev in events {
            match ev {
                StreamEvent::Start { .. } => {}
                StreamEvent::Text(t) if t.is_empty() => {}
                StreamEvent::Text(t) => match parts.last_mut() {
                    Some(Part::Text { text }) => text.push_str(t),
                    _ => parts.push(Part::text(t.clone())),
                },
                StreamEvent::Thinking(t) if t.is_empty() => {}
                StreamEvent::Thinking(t) => match parts.last_mut() {
                    Some(Part::Thinking { text, signature: None }) => text.push_str(t),
                    _ => parts.push(Part::Thinking { text: t.clone(), signature: None }),
                },
                StreamEvent::ThinkingSignature(s) => match parts.last_mut() {
                    Some(Part::Thinking { signature: sig @ None, .. }) => *sig = Some(s.clone()),
                    _ => parts.push(Part::Thinking { text: String::new(), signature: Some(s.clone()) }),
                },
                StreamEvent::RedactedThinking(d) => parts.push(Part::RedactedThinking { data: d.clone() }),
                StreamEvent::ToolCallStart { index, id, name, .. } => {
                    tool_pos.insert(*index, parts.len());
                    parts.push(Part::ToolCall {
                        id: id.clone(),
                        name: name.clone(),
                        arguments: String::new(),
                        signature: None,
                    });
                }
                StreamEvent::ToolCallArgs { index, delta } => {
                    if let Some(Part::ToolCall { arguments, .. }) = tool_pos.get(index).and_then(|&p| parts.get_mut(p))
                    {
                        arguments.push_str(delta);
                    }
                }
                StreamEvent::Usage(u) => usage = *u,
                StreamEvent::Finish(f) => finish = *f,
            }
        }
        for p in &mut parts {
            if let Part::ToolCall { arguments, .. } = p {
                if let Ok(v) = serde_json::from_str::<Value>(arguments) {
                    *arguments = v.to_string();
                }
            }
        }
        Summary { parts, usage, finish }
    }

    /// Encode, validate, decode, and compare what a client would assemble.
    fn check_stream(name: &str, events: &[StreamEvent]) -> Vec<u8> {
        let bytes = encode(events, "client-model");
        let text = String::from_utf8_lossy(&bytes).to_string();
        validate_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        let Some(StreamEvent::Start { id, model }) = decoded.first() else { panic!("{name}: no Start") };
        assert_eq!(model, "client-model", "{name}");
        assert!(id.starts_with("msg_"), "{name}");
        if let Some(StreamEvent::Start { id: upstream, .. }) = events.first() {
            assert_eq!(*id, message_id(upstream), "{name}");
        }
        assert_eq!(summarize(&decoded), summarize(events), "{name}\n{text}");
        bytes
    }

    fn usage(i: u64, o: u64) -> Usage {
        Usage { input_tokens: i, output_tokens: o, cache_read_tokens: 7, cache_write_tokens: 3, ..Default::default() }
    }

    fn tool_start(i: u32, name: &str) -> StreamEvent {
        StreamEvent::ToolCallStart { index: i, id: format!("toolu_{i}"), name: name.into(), signature: None }
    }

    fn args(i: u32, d: &str) -> StreamEvent {
        StreamEvent::ToolCallArgs { index: i, delta: d.into() }
    }

    #[test]
    fn encoder_sequences_validate_and_round_trip() {
        use StreamEvent::*;
        let start = || Start { id: "msg_up".into(), model: "upstream-model".into() };
        let cases: Vec<(&str, Vec<StreamEvent>, Vec<&str>)> = vec![
            (
                "text, usage after finish",
                vec![start(), Text("Hel".into()), Text("lo".into()), Finish(FinishReason::Stop), Usage(usage(5, 2))],
                vec![
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop",
                ],
            ),
            (
                "thinking + signature then text, usage before finish",
                vec![
                    start(),
                    Thinking("Let me ".into()),
                    Thinking("think.".into()),
                    ThinkingSignature("sig==".into()),
                    Text("Answer".into()),
                    Usage(usage(1, 9)),
                    Finish(FinishReason::Stop),
                ],
                vec![
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_stop",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop",
                ],
            ),
            (
                "text after a tool call",
                vec![
                    start(),
                    Text("a".into()),
                    tool_start(0, "f"),
                    args(0, "{\"q\":"),
                    args(0, "1}"),
                    Text("b".into()),
                    Finish(FinishReason::ToolUse),
                ],
                vec![],
            ),
            (
                "zero text",
                vec![start(), Usage(usage(3, 0)), Finish(FinishReason::Stop)],
                vec!["message_start", "message_delta", "message_stop"],
            ),
            ("nothing at all", vec![], vec!["message_start", "message_delta", "message_stop"]),
            ("no start, no finish", vec![Text("x".into()), Usage(usage(2, 1))], vec![]),
            (
                "sequential parallel tool calls",
                vec![
                    start(),
                    tool_start(0, "a"),
                    args(0, "{\"x\":1}"),
                    tool_start(1, "b"),
                    args(1, "{\"y\":"),
                    args(1, "2}"),
                    tool_start(2, "c"),
                    Finish(FinishReason::ToolUse),
                    Usage(usage(10, 20)),
                ],
                vec![],
            ),
            (
                "interleaved tool args",
                vec![
                    start(),
                    tool_start(0, "a"),
                    tool_start(1, "b"),
                    args(1, "{\"y\":"),
                    args(0, "{\"x\":"),
                    args(1, "2}"),
                    args(0, "1}"),
                    tool_start(2, "c"),
                    args(2, "{}"),
                    Text("done".into()),
                ],
                vec![],
            ),
            (
                "redacted between thinking",
                vec![
                    Thinking("a".into()),
                    RedactedThinking("opaque".into()),
                    Thinking("b".into()),
                    ThinkingSignature("s".into()),
                    ThinkingSignature("t".into()),
                ],
                vec![],
            ),
            (
                "signature without thinking text",
                vec![Text("hi".into()), ThinkingSignature("gemini-sig".into()), Text("more".into())],
                vec![],
            ),
            (
                "empty deltas skipped",
                vec![
                    Text(String::new()),
                    Thinking(String::new()),
                    tool_start(0, "f"),
                    args(0, ""),
                    Text(String::new()),
                ],
                vec![],
            ),
            ("content filter", vec![Text("I can't".into()), Finish(FinishReason::ContentFilter)], vec![]),
            ("length", vec![Thinking("long".into()), Finish(FinishReason::Length)], vec![]),
            ("stop sequence", vec![start(), start(), Text("x".into()), Finish(FinishReason::StopSequence)], vec![]),
            (
                "upstream id without msg_ prefix",
                vec![Start { id: "chatcmpl-1".into(), model: "gpt".into() }, Text("x".into())],
                vec![],
            ),
            (
                "unicode and escapes",
                vec![Text("🦀 \"q\"\n\\ <b>".into()), tool_start(0, "f"), args(0, "{\"s\":\"é\\n\"}")],
                vec![],
            ),
        ];
        for (name, events, want_names) in cases {
            let bytes = check_stream(name, &events);
            if !want_names.is_empty() {
                assert_eq!(names(&bytes), want_names, "{name}");
            }
        }
    }

    #[test]
    fn encoder_wire_details() {
        let bytes = encode(
            &[
                StreamEvent::Start { id: "abc".into(), model: "upstream".into() },
                StreamEvent::Usage(usage(11, 0)),
                StreamEvent::Thinking("t".into()),
                StreamEvent::ThinkingSignature("s".into()),
                StreamEvent::RedactedThinking("r".into()),
                tool_start(0, "f"),
                args(0, "{}"),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(usage(11, 42)),
            ],
            "alias",
        );
        let events = sse::parse(&bytes).unwrap();
        let data: Vec<Value> = events.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
        assert_eq!(
            data[0],
            json!({"type": "message_start", "message": {"id": "msg_abc", "type": "message", "role": "assistant", "model": "alias",
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 11, "output_tokens": 0, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 7}}})
        );
        assert_eq!(
            data[1],
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
        );
        assert_eq!(
            data[3],
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}})
        );
        assert_eq!(
            data[5],
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "r"}})
        );
        assert_eq!(data[6], json!({"type": "content_block_stop", "index": 1}));
        assert_eq!(
            data[7],
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_0", "name": "f", "input": {}}})
        );
        assert_eq!(
            data[8],
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}})
        );
        let n = data.len();
        assert_eq!(
            data[n - 2],
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"input_tokens": 11, "output_tokens": 42, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 7}})
        );
        assert_eq!(data[n - 1], json!({"type": "message_stop"}));
    }

    #[test]
    fn encoder_error_ends_stream() {
        use StreamEvent::*;
        let prefixes: Vec<Vec<StreamEvent>> = vec![
            vec![],
            vec![Start { id: "x".into(), model: "m".into() }],
            vec![Text("partial".into())],
            vec![Thinking("hmm".into())],
            vec![tool_start(0, "f"), args(0, "{\"a\"")],
            vec![tool_start(0, "f"), tool_start(1, "g"), Finish(FinishReason::ToolUse)],
        ];
        for (k, events) in prefixes.iter().enumerate() {
            for (status, want) in [(529, 529), (503, 529), (429, 429), (500, 500), (400, 400), (502, 500)] {
                let mut enc = encoder("m");
                let mut out = Vec::new();
                for ev in events {
                    enc.event(ev, &mut out);
                }
                enc.error(status, "upstream died", &mut out);
                enc.event(&Text("after".into()), &mut out);
                enc.finish(&mut out);
                enc.error(500, "twice", &mut out);
                validate_stream(&out).unwrap_or_else(|e| panic!("prefix {k} {status}: {e}"));
                assert_eq!(names(&out).last().map(String::as_str), Some("error"));
                assert_eq!(names(&out).iter().filter(|n| *n == "error").count(), 1);
                let e = decode(&out).unwrap_err();
                assert_eq!(e.status, want, "prefix {k}");
                assert!(e.message.contains("upstream died"));
            }
        }
    }

    #[test]
    fn encoder_unknown_tool_ordinal_and_late_args() {
        use StreamEvent::*;
        // Args for a call never started: a tool_use with a made-up id is opened.
        let bytes = encode(&[args(3, "{\"a\":1}"), Text("x".into()), args(3, "ignored")], "m");
        validate_stream(&bytes).unwrap();
        let decoded = decode(&bytes).unwrap();
        let s = summarize(&decoded);
        assert!(matches!(&s.parts[0], Part::ToolCall { id, name, arguments, .. }
            if id.starts_with("toolu_") && name.is_empty() && arguments == "{\"a\":1}"));
        assert_eq!(s.parts[1], Part::text("x"));
    }

    /// Sequences shaped like the decoders' output (tool ordinals counted from 0, arguments
    /// only for calls of the current run of tool calls, possibly interleaved).
    fn decoder_like(rng: &mut fastrand::Rng) -> Vec<StreamEvent> {
        const TEXTS: [&str; 8] = ["hello", " wörld", "\"q\"", "\n", "🦀", "", "<b>&amp;", "\\"];
        const FRAGS: [&str; 6] = ["{\"a\":", "1", "}", "\"x y\"", "", "[1,{\"b\":null}]"];
        let mut ev = Vec::new();
        if rng.bool() {
            ev.push(StreamEvent::Start { id: format!("up{}", rng.u32(..)), model: "up".into() });
        }
        let u = Usage {
            input_tokens: rng.u64(0..100_000),
            output_tokens: rng.u64(0..100_000),
            cache_read_tokens: rng.u64(0..100_000),
            cache_write_tokens: rng.u64(0..100_000),
            ..Default::default()
        };
        let mut tools = 0u32;
        let mut run: Vec<u32> = Vec::new();
        for _ in 0..rng.usize(0..30) {
            let pick = |rng: &mut fastrand::Rng, list: &[&str]| list[rng.usize(..list.len())].to_string();
            match rng.u8(0..9) {
                0 | 1 => {
                    ev.push(StreamEvent::Text(pick(rng, &TEXTS)));
                    run.clear();
                }
                2 => {
                    ev.push(StreamEvent::Thinking(pick(rng, &TEXTS)));
                    run.clear();
                }
                3 => {
                    ev.push(StreamEvent::ThinkingSignature(format!("sig{}", rng.u32(..))));
                    run.clear();
                }
                4 => {
                    ev.push(StreamEvent::RedactedThinking(format!("red{}", rng.u32(..))));
                    run.clear();
                }
                5 => {
                    ev.push(tool_start(tools, "fn"));
                    run.push(tools);
                    tools += 1;
                }
                6 | 7 => {
                    if !run.is_empty() {
                        let i = run[rng.usize(..run.len())];
                        ev.push(args(i, &pick(rng, &FRAGS)));
                    }
                }
                _ => ev.push(StreamEvent::Usage(u)),
            }
        }
        if rng.bool() {
            let f = [
                FinishReason::Stop,
                FinishReason::Length,
                FinishReason::ToolUse,
                FinishReason::ContentFilter,
                FinishReason::StopSequence,
            ];
            ev.push(StreamEvent::Finish(f[rng.usize(..f.len())]));
        }
        if rng.bool() {
            ev.push(StreamEvent::Usage(u));
        }
        ev
    }

    #[test]
    fn encoder_random_decoder_like_sequences_round_trip() {
        let mut rng = fastrand::Rng::with_seed(0xA11u64);
        for n in 0..400 {
            let events = decoder_like(&mut rng);
            check_stream(&format!("random #{n}: {events:?}"), &events);
        }
    }

    #[test]
    fn encoder_any_sequence_is_valid() {
        let mut rng = fastrand::Rng::with_seed(7);
        for n in 0..400 {
            let mut enc = encoder("m");
            let mut out = Vec::new();
            for _ in 0..rng.usize(0..40) {
                let i = rng.u32(0..4);
                let ev = match rng.u8(0..10) {
                    0 => StreamEvent::Start { id: String::new(), model: String::new() },
                    1 => StreamEvent::Text("t".into()),
                    2 => StreamEvent::Thinking("th".into()),
                    3 => StreamEvent::ThinkingSignature(String::new()),
                    4 => StreamEvent::RedactedThinking(String::new()),
                    5 => StreamEvent::ToolCallStart {
                        index: i,
                        id: String::new(),
                        name: "n".into(),
                        signature: Some("s".into()),
                    },
                    6 | 7 => args(i, "{"),
                    8 => StreamEvent::Usage(Usage { output_tokens: u64::MAX, ..Default::default() }),
                    _ => StreamEvent::Finish(FinishReason::Length),
                };
                enc.event(&ev, &mut out);
            }
            if rng.bool() {
                enc.finish(&mut out);
            } else {
                enc.error(rng.u16(..), "boom", &mut out);
            }
            validate_stream(&out).unwrap_or_else(|e| panic!("#{n}: {e}\n{}", String::from_utf8_lossy(&out)));
        }
    }

    #[test]
    fn decoder_reads_real_stream() {
        use StreamEvent::*;
        validate_stream(UPSTREAM_STREAM.as_bytes()).unwrap();
        let got = decode(UPSTREAM_STREAM.as_bytes()).unwrap();
        let want = vec![
            Start { id: "msg_01HCnXoqhC1wdBZ1xXo9a5Rj".into(), model: "claude-sonnet-4-5-20250929".into() },
            // The prompt's usage from message_start, at once.
            Usage(crate::protocol::canonical::Usage {
                input_tokens: 472,
                output_tokens: 2,
                cache_read_tokens: 20480,
                cache_write_tokens: 1024,
                ..Default::default()
            }),
            Thinking("The user wants weather ".into()),
            Thinking("for two cities.".into()),
            ThinkingSignature("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds=".into()),
            Text("Let me check ".into()),
            Text("both.".into()),
            ToolCallStart {
                index: 0,
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "get_weather".into(),
                signature: None,
            },
            args(0, "{\"city\": \"Pa"),
            args(0, "ris\"}"),
            ToolCallStart { index: 1, id: "toolu_01AbCdEfGh".into(), name: "get_weather".into(), signature: None },
            args(1, "{\"city\":\"Rome\"}"),
            Usage(crate::protocol::canonical::Usage {
                input_tokens: 472,
                output_tokens: 89,
                cache_read_tokens: 20480,
                cache_write_tokens: 1024,
                ..Default::default()
            }),
            Finish(FinishReason::ToolUse),
        ];
        assert_eq!(got, want);
        // Re-encoding what we decoded gives a stream that decodes to the same answer.
        check_stream("re-encode", &got);
    }

    #[test]
    fn decoder_truncated_streams_error() {
        let events = sse::parse(UPSTREAM_STREAM.as_bytes()).unwrap();
        for cut in 0..events.len() {
            let mut d = decoder();
            for ev in &events[..cut] {
                d.feed(ev.event.as_deref(), &ev.data).unwrap();
            }
            let e = d.end().unwrap_err();
            assert_eq!(e.status, 502, "cut at {cut}");
        }
        let mut d = decoder();
        for ev in &events {
            d.feed(ev.event.as_deref(), &ev.data).unwrap();
        }
        assert_eq!(d.end().unwrap(), vec![]);
    }

    #[test]
    fn decoder_edge_events() {
        // message_stop without message_delta still finishes.
        let mut d = decoder();
        d.feed(
            Some("message_start"),
            r#"{"type":"message_start","message":{"id":"msg_1","model":"c","usage":{"input_tokens":4}}}"#,
        )
        .unwrap();
        let out = d.feed(Some("message_stop"), r#"{"type":"message_stop"}"#).unwrap();
        assert_eq!(
            out,
            vec![
                StreamEvent::Usage(Usage { input_tokens: 4, ..Default::default() }),
                StreamEvent::Finish(FinishReason::Stop)
            ]
        );
        assert_eq!(d.feed(Some("ping"), "not even json").unwrap(), vec![]); // after the end: ignored
        assert!(d.end().unwrap().is_empty());

        let start = r#"{"type":"message_start","message":{"id":"msg_1","model":"c"}}"#;
        let table: &[(&str, &str, u16)] = &[
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}"#,
                502,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"web_search_tool_result"}}"#,
                502,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":5,"delta":{"type":"text_delta","text":"x"}}"#,
                502,
            ),
            ("content_block_start", r#"{"type":"content_block_start","content_block":{"type":"text","text":""}}"#, 502),
            ("message_delta", "{not json", 502),
            ("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, 529),
            ("error", r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#, 429),
            ("error", r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#, 500),
            (
                "error",
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}"#,
                400,
            ),
            ("error", r#"{"type":"error","error":{"type":"authentication_error","message":"x"}}"#, 401),
            ("error", r#"{"type":"error","error":{"type":"permission_error","message":"x"}}"#, 403),
            ("error", r#"{"type":"error","error":{"type":"not_found_error","message":"x"}}"#, 404),
            ("error", r#"{"type":"error","error":{"type":"request_too_large","message":"x"}}"#, 413),
            ("error", r#"{"type":"error"}"#, 502),
        ];
        for (event, data, status) in table {
            let mut d = decoder();
            d.feed(Some("message_start"), start).unwrap();
            let e = d.feed(Some(event), data).unwrap_err();
            assert_eq!(e.status, *status, "{data}");
        }
        // Block deltas that do not fit the block are malformed; citations are ignored.
        let mut d = decoder();
        d.feed(None, start).unwrap();
        d.feed(None, r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Hi"}}"#)
            .unwrap();
        let c = d
            .feed(None, r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#)
            .unwrap();
        assert!(c.is_empty());
        let e = d.feed(
            None,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
        );
        assert_eq!(e.unwrap_err().status, 502);
        // A tool_use start that carries its input whole.
        let out = d
            .feed(None, r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"n","input":{"a":1}}}"#)
            .unwrap();
        assert_eq!(out[1], args(0, "{\"a\":1}"));
        // Unknown event types are ignored (Anthropic may add some).
        assert!(d.feed(Some("brand_new"), r#"{"type":"brand_new"}"#).unwrap().is_empty());
    }

    type Frames<'a> = Vec<(&'a str, &'a str)>;

    fn frames(list: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (e, d) in list {
            sse::frame(&mut out, if e.is_empty() { None } else { Some(e) }, d);
        }
        out
    }

    #[test]
    fn validate_stream_rejects_broken_streams() {
        const MS: (&str, &str) = (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":0}}}"#,
        );
        const TS: (&str, &str) = (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        );
        const TD: (&str, &str) = (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
        );
        const STOP0: (&str, &str) = ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#);
        const MD: (&str, &str) = (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#,
        );
        const MST: (&str, &str) = ("message_stop", r#"{"type":"message_stop"}"#);
        const PING: (&str, &str) = ("ping", r#"{"type":"ping"}"#);
        validate_stream(&frames(&[MS, PING, TS, TD, PING, STOP0, MD, MST])).unwrap();
        let tool_start = (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"n","input":{}}}"#,
        );
        let cases: Vec<(&str, Frames, &str)> = vec![
            ("missing terminal event", vec![MS, TS, TD, STOP0, MD], "without message_stop"),
            ("missing everything", vec![], "without message_stop"),
            (
                "bad first index",
                vec![
                    MS,
                    (
                        "content_block_start",
                        r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
                    ),
                ],
                "expected 0",
            ),
            ("index reused", vec![MS, TS, STOP0, TS], "expected 1"),
            ("delta before start", vec![MS, TD], "no open block"),
            (
                "delta for another block",
                vec![
                    MS,
                    TS,
                    (
                        "content_block_delta",
                        r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"x"}}"#,
                    ),
                ],
                "block 0 is open",
            ),
            ("bad JSON", vec![MS, ("content_block_delta", "{\"type\":")], "not JSON"),
            (
                "type differs from event",
                vec![MS, ("content_block_stop", r#"{"type":"content_block_start","index":0}"#)],
                "does not equal",
            ),
            (
                "overlapping blocks",
                vec![
                    MS,
                    TS,
                    (
                        "content_block_start",
                        r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
                    ),
                ],
                "still open",
            ),
            ("stop without start", vec![MS, STOP0], "does not close"),
            (
                "wrong delta kind",
                vec![
                    MS,
                    TS,
                    STOP0,
                    tool_start,
                    (
                        "content_block_delta",
                        r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"x"}}"#,
                    ),
                ],
                "does not fit",
            ),
            ("message_stop before message_delta", vec![MS, MST], "before message_delta"),
            ("message_delta with open block", vec![MS, TS, MD], "still open"),
            ("event after message_stop", vec![MS, MD, MST, PING], "follows the terminal"),
            (
                "event after error",
                vec![MS, ("error", r#"{"type":"error","error":{"type":"api_error","message":"x"}}"#), MD],
                "follows the terminal",
            ),
            ("ping before message_start", vec![PING, MS], "before message_start"),
            ("no event name", vec![MS, ("", r#"{"type":"ping"}"#)], "no event: name"),
            ("unknown event", vec![MS, ("message_pause", r#"{"type":"message_pause"}"#)], "unknown event"),
            ("second message_start", vec![MS, MS], "second message_start"),
            (
                "message_start with content",
                vec![(
                    "message_start",
                    r#"{"type":"message_start","message":{"id":"a","type":"message","role":"assistant","model":"m","content":[1],"usage":{}}}"#,
                )],
                "empty array",
            ),
            (
                "error without message",
                vec![("error", r#"{"type":"error","error":{"type":"api_error"}}"#)],
                "message must be a string",
            ),
            (
                "tool_use without input",
                vec![
                    MS,
                    (
                        "content_block_start",
                        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"n"}}"#,
                    ),
                ],
                "input must be an object",
            ),
            (
                "message_delta without usage",
                vec![MS, ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":null}}"#)],
                "no usage",
            ),
        ];
        for (name, list, want) in cases {
            let e = validate_stream(&frames(&list)).unwrap_err();
            assert!(e.contains(want), "{name}: {e}");
        }
        // An event cut off mid-way (no blank line) is not a stream.
        let mut cut = frames(&[MS, TS]);
        cut.truncate(cut.len() - 1);
        assert!(validate_stream(&cut).is_err());
        assert!(validate_stream(&[0xff, 0xfe, b'\n', b'\n']).is_err());
    }

    // ----- garbage never panics --------------------------------------------------------

    fn poke_everything(bytes: &[u8]) {
        let _ = parse_request(bytes, &ParseContext::default());
        let _ = parse_request(bytes, &ParseContext { model: Some("x".into()), op: Op::CountTokens });
        let _ = parse_response(bytes);
        let _ = validate_stream(bytes);
        let text = String::from_utf8_lossy(bytes);
        for event in [None, Some("message_start"), Some("content_block_delta"), Some("error")] {
            let mut d = decoder();
            let _ = d.feed(event, &text);
            let _ = d.end();
        }
        let _ = decode(bytes);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..500 {
            let len = rng.usize(0..300);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            poke_everything(&bytes);
        }
        // Mutations of a real body and a real stream.
        for base in [CLAUDE_CODE.as_bytes(), UPSTREAM_STREAM.as_bytes(), UPSTREAM_RESPONSE.as_bytes()] {
            for _ in 0..150 {
                let mut b = base.to_vec();
                for _ in 0..rng.usize(1..6) {
                    let i = rng.usize(..b.len());
                    b[i] = b"{}[]\":,0a-\\ \n"[rng.usize(..13)];
                }
                b.truncate(rng.usize(b.len() / 2..=b.len()));
                poke_everything(&b);
            }
        }
    }

    #[test]
    fn wrong_json_types_are_400() {
        let bodies = [
            json!(null),
            json!("string"),
            json!(12),
            json!({"model": 1, "messages": []}),
            json!({"model": "m", "messages": {}}),
            json!({"model": "m", "messages": [1]}),
            json!({"model": "m", "messages": [{"role": 1, "content": "x"}]}),
            json!({"model": "m", "messages": [{"role": "user"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [1]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": 1}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image"}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 5}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": 5}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "is_error": "yes"}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "thinking", "thinking": []}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "redacted_thinking"}]}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": "x"}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [1]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "a", "input_schema": 1}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "a", "type": 3}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "auto", "disable_parallel_tool_use": 1}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "thinking": []}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled", "budget_tokens": 1_099_511_627_776u64}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled", "budget_tokens": 1.5}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "system": 1}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "system": [1]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": "x"}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "output_config": 1}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "output_config": {"effort": 1}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "output_config": {"format": {"type": "json_schema"}}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop_sequences": "x"}),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": "x"}),
            json!({"model": "", "messages": [{"role": "user", "content": "x"}]}),
        ];
        for b in &bodies {
            let e = parse_value(b).expect_err(&b.to_string());
            assert_eq!(e.status, 400, "{b}: {e}");
        }
    }

    #[test]
    fn deep_nesting_and_huge_numbers() {
        // Deeper than serde_json's recursion limit: a clean 400.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_request(deep.as_bytes(), &ParseContext::default()).unwrap_err().status, 400);
        assert_eq!(parse_response(deep.as_bytes()).unwrap_err().status, 502);
        let mut d = decoder();
        assert_eq!(d.feed(None, &deep).unwrap_err().status, 502);
        // Deep but legal tool input survives parse → build → render.
        let input = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"n","input":{input}}}]}}]}}"#
        );
        let req = parse_request(body.as_bytes(), &ParseContext::default()).unwrap();
        let built = build_request(&req, "m").unwrap();
        assert!(parse_request(&built, &ParseContext::default()).is_ok());
        let resp = ChatResponse {
            id: "x".into(),
            model: "m".into(),
            content: req.messages[0].content.clone(),
            finish: FinishReason::ToolUse,
            usage: Usage::default(),
        };
        assert_eq!(parse_response(&render_response(&resp, "m")).unwrap().content, resp.content);
        // Huge numbers.
        for (field, value) in
            [("max_tokens", "1e400"), ("temperature", "1e400"), ("max_tokens", "-0"), ("top_p", "-1e308")]
        {
            let body = format!(r#"{{"model":"m","{field}":{value},"messages":[{{"role":"user","content":"x"}}]}}"#);
            let r = parse_request(body.as_bytes(), &ParseContext::default());
            drop(r); // any answer is fine; it must not panic
        }
        let big = r#"{"model":"m","max_tokens":4294967295,"temperature":1e308,"messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled","budget_tokens":4294967295}}"#;
        let req = parse_request(big.as_bytes(), &ParseContext::default()).unwrap();
        let built: Value = serde_json::from_slice(&build_request(&req, "m").unwrap()).unwrap();
        assert_eq!(built["max_tokens"], u32::MAX);
        assert!(built.get("temperature").is_none());
        let huge_usage = r#"{"type":"message","content":[],"usage":{"input_tokens":18446744073709551615,"output_tokens":1e300,"cache_read_input_tokens":-5}}"#;
        let resp = parse_response(huge_usage.as_bytes()).unwrap();
        assert_eq!(resp.usage.input_tokens, u64::MAX);
        assert_eq!(resp.usage.output_tokens, 0);
        let mut enc = encoder("m");
        let mut out = Vec::new();
        enc.event(&StreamEvent::Usage(resp.usage), &mut out);
        enc.finish(&mut out);
        validate_stream(&out).unwrap();
    }

    #[test]
    fn decoder_wrong_types_never_panic() {
        let datas = [
            r#"{"type":"message_start","message":5}"#,
            r#"{"type":"message_start","message":{"id":7,"usage":"x"}}"#,
            r#"{"type":"content_block_start","index":-1,"content_block":{"type":"text"}}"#,
            r#"{"type":"content_block_start","index":18446744073709551615,"content_block":{"type":"tool_use","input":[1]}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":"text"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":"x"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}"#,
            r#"{"type":"content_block_delta","index":"0"}"#,
            r#"{"type":"message_delta","delta":[],"usage":{"output_tokens":1e300}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":5},"usage":5}"#,
            r#"{"type":"error","error":"x"}"#,
            r#"{"type":5}"#,
            r#"[]"#,
            r#""string""#,
            "",
        ];
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..300 {
            let mut d = decoder();
            for _ in 0..rng.usize(0..10) {
                let data = datas[rng.usize(..datas.len())];
                let _ = d.feed(if rng.bool() { Some("content_block_delta") } else { None }, data);
            }
            let _ = d.end();
        }
        let responses = [
            r#"{"content":"x"}"#,
            r#"{"content":[5]}"#,
            r#"{"content":[{"type":"tool_use","input":"x"}],"stop_reason":7,"usage":[]}"#,
            r#"{"id":5,"model":[],"content":null}"#,
            r#"{"type":"error","error":5}"#,
        ];
        for r in responses {
            let _ = parse_response(r.as_bytes());
        }
    }
}
