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
//! | upstream request: signatures of any origin | sent as `encrypted_content` (origin is unknown; OpenAI rejects foreign ones) |
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

use super::walk::{at as join, bad, get, Obj};
use super::{sse, FormatError, ParseContext, StreamDecoder, StreamEncoder};
use crate::protocol::canonical::{
    ChatRequest, ChatResponse, FinishReason, ImageSource, Message, Part, ResponseFormat, Role, StreamEvent,
    ThinkingConfig, ToolChoice, ToolDef, Usage,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Prefix marking a canonical `RedactedThinking` inside a client-facing `encrypted_content`.
pub const REDACTED_PREFIX: &str = "ailurus-redacted:";

const HOSTED_TOOLS: [&str; 13] = [
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "web_search_2025_08_26",
    "file_search",
    "code_interpreter",
    "image_generation",
    "computer_use_preview",
    "computer_use",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
];

// ---------------------------------------------------------------------------------------------
// Small JSON helpers (client input: wrong types are 400s that name the field)
// ---------------------------------------------------------------------------------------------

fn opt_str<'a>(o: &'a Obj, key: &str, path: &str) -> Result<Option<&'a str>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(format!("{} must be a string", join(path, key)))),
    }
}

fn req_str<'a>(o: &'a Obj, key: &str, path: &str) -> Result<&'a str, FormatError> {
    opt_str(o, key, path)?.ok_or_else(|| bad(format!("{} is required", join(path, key))))
}

fn opt_bool(o: &Obj, key: &str, path: &str) -> Result<Option<bool>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("{} must be a boolean", join(path, key)))),
    }
}

fn opt_f64(o: &Obj, key: &str, path: &str) -> Result<Option<f64>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().map(Some).ok_or_else(|| bad(format!("{} must be a number", join(path, key))))
        }
        Some(_) => Err(bad(format!("{} must be a number", join(path, key)))),
    }
}

fn opt_u32(o: &Obj, key: &str, path: &str) -> Result<Option<u32>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{} must be an integer from 0 to {}", join(path, key), u32::MAX))),
    }
}

fn opt_obj<'a>(o: &'a Obj, key: &str, path: &str) -> Result<Option<&'a Obj>, FormatError> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(format!("{} must be an object", join(path, key)))),
    }
}

/// Lenient string field (upstream data).
fn s<'a>(o: &'a Obj, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", nuid::next())
}

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

fn image_source(url: &str) -> ImageSource {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            let mut fields = meta.split(';');
            let media_type = fields.next().unwrap_or_default();
            if !media_type.is_empty() && fields.any(|f| f.eq_ignore_ascii_case("base64")) {
                return ImageSource::Base64 { media_type: media_type.to_string(), data: data.to_string() };
            }
        }
    }
    ImageSource::Url { url: url.to_string() }
}

fn image_url(src: &ImageSource) -> String {
    match src {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url.clone(),
    }
}

fn custom_tool_schema() -> Value {
    json!({"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]})
}

// ---------------------------------------------------------------------------------------------
// parse_request: client body → ChatRequest
// ---------------------------------------------------------------------------------------------

/// Parse a client's `POST /v1/responses` body.
pub fn parse_request(body: &[u8], ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let o = root.as_object().ok_or_else(|| bad("the request body must be a JSON object"))?;

    for key in ["previous_response_id", "conversation"] {
        if get(o, key).is_some() {
            return Err(bad(format!(
                "{key} is not supported: Ailurus is stateless, send the whole conversation in input"
            )));
        }
    }
    if get(o, "prompt").is_some() {
        return Err(bad("prompt (a stored prompt template) is not supported: Ailurus is stateless"));
    }
    if opt_bool(o, "background", "")? == Some(true) {
        return Err(bad("background: true is not supported: Ailurus does not run background responses"));
    }
    let model = match &ctx.model {
        Some(m) => m.clone(),
        None => req_str(o, "model", "")?.to_string(),
    };

    let mut b = InputBuilder::default();
    if let Some(instructions) = opt_str(o, "instructions", "")? {
        if !instructions.is_empty() {
            b.system.push(instructions.to_string());
        }
    }
    match get(o, "input") {
        None => return Err(bad("input is required")),
        Some(Value::String(text)) => b.push(Role::User, vec![Part::text(text.clone())]),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                b.item(i, item)?;
            }
        }
        Some(_) => return Err(bad("input must be a string or an array of items")),
    }
    if !b.messages.iter().any(|m| m.role != Role::System) {
        return Err(bad("input must hold at least one user or assistant item"));
    }

    let tools = match get(o, "tools") {
        None => Vec::new(),
        Some(v) => parse_tools(v)?,
    };
    let tool_choice = match get(o, "tool_choice") {
        None => None,
        Some(v) => Some(parse_tool_choice(v)?),
    };
    let thinking = match opt_obj(o, "reasoning", "")? {
        None => None,
        Some(r) => {
            let effort = opt_str(r, "effort", "reasoning")?;
            let summary = match opt_str(r, "summary", "reasoning")? {
                Some(s) => Some(s),
                None => opt_str(r, "generate_summary", "reasoning")?,
            };
            Some(ThinkingConfig {
                enabled: effort != Some("none"),
                budget_tokens: None,
                effort: effort.map(str::to_string),
                include_thoughts: summary.is_some_and(|s| s != "none"),
            })
        }
    };
    let response_format = match opt_obj(o, "text", "")? {
        None => None,
        Some(t) => match opt_obj(t, "format", "text")? {
            None => None,
            Some(f) => Some(parse_text_format(f)?),
        },
    };

    Ok(ChatRequest {
        model,
        system: if b.system.is_empty() { None } else { Some(b.system.join("\n\n")) },
        messages: b.messages,
        max_tokens: opt_u32(o, "max_output_tokens", "")?,
        temperature: opt_f64(o, "temperature", "")?,
        top_p: opt_f64(o, "top_p", "")?,
        stop: Vec::new(),
        stream: opt_bool(o, "stream", "")?.unwrap_or(false),
        tools,
        tool_choice,
        parallel_tool_calls: opt_bool(o, "parallel_tool_calls", "")?,
        thinking,
        response_format,
        user: opt_str(o, "user", "")?.map(str::to_string),
    })
}

#[derive(Default)]
struct InputBuilder {
    system: Vec<String>,
    messages: Vec<Message>,
    /// call_id → tool name, to name tool results (Gemini needs the name).
    call_names: HashMap<String, String>,
}

impl InputBuilder {
    fn push(&mut self, role: Role, parts: Vec<Part>) {
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(parts),
            _ => self.messages.push(Message { role, content: parts }),
        }
    }

    fn item(&mut self, i: usize, v: &Value) -> Result<(), FormatError> {
        let path = format!("input[{i}]");
        let o = v.as_object().ok_or_else(|| bad(format!("{path} must be an object")))?;
        match opt_str(o, "type", &path)? {
            Some("message") => self.message(o, &path),
            None if get(o, "role").is_some() => self.message(o, &path),
            None => Err(bad(format!("{path}.type is required"))),
            Some("function_call") => {
                let call_id = req_str(o, "call_id", &path)?;
                let base = req_str(o, "name", &path)?;
                let namespaced = opt_str(o, "namespace", &path)?.map(|ns| format!("{ns}{NAMESPACE_SEP}{base}"));
                let name = namespaced.as_deref().unwrap_or(base);
                let arguments = match get(o, "arguments") {
                    None => "{}".to_string(),
                    Some(Value::String(a)) => a.clone(),
                    Some(a @ Value::Object(_)) => a.to_string(),
                    Some(_) => return Err(bad(format!("{path}.arguments must be a string"))),
                };
                self.call_names.insert(call_id.to_string(), name.to_string());
                let call =
                    Part::ToolCall { id: call_id.to_string(), name: name.to_string(), arguments, signature: None };
                self.push(Role::Assistant, vec![call]);
                Ok(())
            }
            Some("custom_tool_call") => {
                let call_id = req_str(o, "call_id", &path)?;
                let name = req_str(o, "name", &path)?;
                let input = req_str(o, "input", &path)?;
                self.call_names.insert(call_id.to_string(), name.to_string());
                let call = Part::ToolCall {
                    id: call_id.to_string(),
                    name: name.to_string(),
                    arguments: json!({ "input": input }).to_string(),
                    signature: None,
                };
                self.push(Role::Assistant, vec![call]);
                Ok(())
            }
            Some("function_call_output" | "custom_tool_call_output") => {
                let call_id = req_str(o, "call_id", &path)?;
                let out_path = format!("{path}.output");
                let content = match get(o, "output") {
                    None => return Err(bad(format!("{out_path} is required"))),
                    Some(v) => parse_content(v, &out_path)?,
                };
                let result = Part::ToolResult {
                    call_id: call_id.to_string(),
                    name: self.call_names.get(call_id).cloned(),
                    content,
                    is_error: false,
                };
                self.push(Role::User, vec![result]);
                Ok(())
            }
            Some("reasoning") => {
                let text = reasoning_text(o, &path)?;
                let part = match opt_str(o, "encrypted_content", &path)? {
                    Some(ec) => match ec.strip_prefix(REDACTED_PREFIX) {
                        Some(data) => Part::RedactedThinking { data: data.to_string() },
                        None => Part::Thinking { text, signature: Some(ec.to_string()) },
                    },
                    None if text.is_empty() => return Ok(()),
                    None => Part::Thinking { text, signature: None },
                };
                self.push(Role::Assistant, vec![part]);
                Ok(())
            }
            Some("item_reference") => Err(bad(format!(
                "{path}.type \"item_reference\" is not supported: Ailurus is stateless and stores no items"
            ))),
            Some(other) => Err(bad(format!("{path}.type {other:?} is not supported"))),
        }
    }

    fn message(&mut self, o: &Obj, path: &str) -> Result<(), FormatError> {
        let role = req_str(o, "role", path)?;
        let content = get(o, "content").ok_or_else(|| bad(format!("{path}.content is required")))?;
        let content_path = format!("{path}.content");
        let parts = parse_content(content, &content_path)?;
        match role {
            "user" => self.push(Role::User, parts),
            "assistant" => self.push(Role::Assistant, parts),
            "system" | "developer" if self.messages.is_empty() => {
                let mut texts = Vec::with_capacity(parts.len());
                for (j, part) in parts.into_iter().enumerate() {
                    match part {
                        Part::Text { text } => texts.push(text),
                        _ => {
                            return Err(bad(format!(
                                "{content_path}[{j}]: only text is supported in a leading {role} message"
                            )))
                        }
                    }
                }
                let text = texts.join("\n\n");
                if !text.is_empty() {
                    self.system.push(text);
                }
            }
            "system" | "developer" => self.push(Role::System, parts),
            other => {
                return Err(bad(format!("{path}.role {other:?} is not supported (user, assistant, system, developer)")))
            }
        }
        Ok(())
    }
}

/// Text of a client reasoning item: summaries joined by a blank line, else raw `content` text.
fn reasoning_text(o: &Obj, path: &str) -> Result<String, FormatError> {
    let mut texts = Vec::new();
    for key in ["summary", "content"] {
        match get(o, key) {
            None => {}
            Some(Value::Array(a)) => {
                for (j, part) in a.iter().enumerate() {
                    let p = format!("{path}.{key}[{j}]");
                    let po = part.as_object().ok_or_else(|| bad(format!("{p} must be an object")))?;
                    texts.push(req_str(po, "text", &p)?.to_string());
                }
            }
            Some(_) => return Err(bad(format!("{path}.{key} must be an array"))),
        }
        if !texts.is_empty() {
            break;
        }
    }
    Ok(texts.join("\n\n"))
}

fn parse_content(v: &Value, path: &str) -> Result<Vec<Part>, FormatError> {
    match v {
        Value::String(text) => Ok(vec![Part::text(text.clone())]),
        Value::Array(parts) => {
            parts.iter().enumerate().map(|(j, p)| parse_content_part(p, &format!("{path}[{j}]"))).collect()
        }
        _ => Err(bad(format!("{path} must be a string or an array of content parts"))),
    }
}

fn parse_content_part(v: &Value, path: &str) -> Result<Part, FormatError> {
    let o = v.as_object().ok_or_else(|| bad(format!("{path} must be an object")))?;
    let ty = req_str(o, "type", path)?;
    match ty {
        "input_text" | "output_text" => Ok(Part::text(req_str(o, "text", path)?)),
        "refusal" => {
            let text = match opt_str(o, "refusal", path)? {
                Some(t) => t,
                None => req_str(o, "text", path)?,
            };
            Ok(Part::text(text))
        }
        "input_image" => {
            let url = match get(o, "image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(Value::Object(u)) => req_str(u, "url", &join(path, "image_url"))?,
                Some(_) => return Err(bad(format!("{path}.image_url must be a string"))),
                None if get(o, "file_id").is_some() => {
                    return Err(bad(format!(
                        "{path}.file_id is not supported: Ailurus is stateless, send image_url (a data: or https URL)"
                    )))
                }
                None => return Err(bad(format!("{path}.image_url is required"))),
            };
            Ok(Part::Image { source: image_source(url) })
        }
        other => Err(bad(format!("{path}.type {other:?} is not supported"))),
    }
}

/// Separator between a namespace and a tool name in a flattened tool name.
pub const NAMESPACE_SEP: &str = "__";

/// Hosted web search, which only OpenAI's own Responses API can run: on conversion it is
/// removed (documented lossy mapping; pass-through keeps it).
fn is_web_search(ty: &str) -> bool {
    ty.starts_with("web_search")
}

/// One function or custom tool; `namespace` prefixes its name (`ns__name`).
fn parse_function_tool(o: &Obj, ty: &str, path: &str, namespace: Option<&str>) -> Result<ToolDef, FormatError> {
    if get(o, "name").is_none() && get(o, "function").is_some() {
        return Err(bad(format!(
            "{path}.name is required (Responses tools are flat: {{type, name, description, parameters}})"
        )));
    }
    let base = req_str(o, "name", path)?;
    let name = match namespace {
        Some(ns) => format!("{ns}{NAMESPACE_SEP}{base}"),
        None => base.to_string(),
    };
    let description = opt_str(o, "description", path)?.map(str::to_string);
    let parameters = if ty == "custom" {
        custom_tool_schema()
    } else {
        match get(o, "parameters") {
            None => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => return Err(bad(format!("{path}.parameters must be an object"))),
        }
    };
    Ok(ToolDef { name, description, parameters })
}

fn parse_tools(v: &Value) -> Result<Vec<ToolDef>, FormatError> {
    let tools = v.as_array().ok_or_else(|| bad("tools must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let o = t.as_object().ok_or_else(|| bad(format!("{path} must be an object")))?;
        let ty = req_str(o, "type", &path)?;
        match ty {
            "function" | "custom" => out.push(parse_function_tool(o, ty, &path, None)?),
            // A group of tools (Codex's `multi_agent_v1`): flattened as `namespace__tool`;
            // calls render back with their `namespace`.
            "namespace" => {
                let ns = req_str(o, "name", &path)?;
                let inner = get(o, "tools").and_then(Value::as_array).ok_or_else(|| bad(format!("{path}.tools must be an array")))?;
                for (j, t) in inner.iter().enumerate() {
                    let ipath = format!("{path}.tools[{j}]");
                    let io = t.as_object().ok_or_else(|| bad(format!("{ipath} must be an object")))?;
                    match req_str(io, "type", &ipath)? {
                        ity @ ("function" | "custom") => out.push(parse_function_tool(io, ity, &ipath, Some(ns))?),
                        other => return Err(bad(format!("{ipath}.type {other:?} is not supported inside a namespace"))),
                    }
                }
            }
            web if is_web_search(web) => {}
            hosted if HOSTED_TOOLS.contains(&hosted) => {
                return Err(bad(format!(
                    "{path}.type {hosted:?} is not supported: hosted tools cannot be forwarded, only function and custom tools"
                )))
            }
            other => return Err(bad(format!("{path}.type {other:?} is not supported"))),
        }
    }
    Ok(out)
}

fn parse_tool_choice(v: &Value) -> Result<ToolChoice, FormatError> {
    match v {
        Value::String(c) => match c.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(bad(format!("tool_choice {other:?} is not one of auto, none, required"))),
        },
        Value::Object(o) => match req_str(o, "type", "tool_choice")? {
            "function" | "custom" => Ok(ToolChoice::Tool { name: req_str(o, "name", "tool_choice")?.to_string() }),
            other => Err(bad(format!("tool_choice.type {other:?} is not supported"))),
        },
        _ => Err(bad("tool_choice must be a string or an object")),
    }
}

fn parse_text_format(f: &Obj) -> Result<ResponseFormat, FormatError> {
    match req_str(f, "type", "text.format")? {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let schema = match get(f, "schema") {
                Some(s @ Value::Object(_)) => s.clone(),
                Some(_) => return Err(bad("text.format.schema must be an object")),
                None => return Err(bad("text.format.schema is required")),
            };
            Ok(ResponseFormat::JsonSchema {
                name: opt_str(f, "name", "text.format")?.unwrap_or("response").to_string(),
                schema,
                strict: opt_bool(f, "strict", "text.format")?,
            })
        }
        other => Err(bad(format!("text.format.type {other:?} is not supported"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Output items and the response object (render_response and the encoder)
// ---------------------------------------------------------------------------------------------

fn summary_json(text: &str) -> Value {
    if text.is_empty() {
        json!([])
    } else {
        json!([{"type": "summary_text", "text": text}])
    }
}

fn reasoning_item(id: &str, text: &str, encrypted: Option<&str>) -> Value {
    let mut item = json!({"id": id, "type": "reasoning", "summary": summary_json(text)});
    if let (Some(ec), Some(m)) = (encrypted, item.as_object_mut()) {
        m.insert("encrypted_content".into(), ec.into());
    }
    item
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, text: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": "completed", "role": "assistant",
        "content": [output_text_part(text)],
    })
}

fn function_call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
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

fn finish_status(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length | FinishReason::ContentFilter) => "incomplete",
        _ => "completed",
    }
}

/// The client-visible response id: the upstream's when it already looks like one.
fn response_id(upstream: &str) -> String {
    if upstream.starts_with("resp_") {
        upstream.to_string()
    } else if upstream.is_empty() {
        new_id("resp")
    } else {
        format!("resp_{upstream}")
    }
}

struct ResponseMeta<'a> {
    id: &'a str,
    created_at: i64,
    model: &'a str,
}

/// The full response object, with the fields the SDKs require.
fn response_object(
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

/// `response.failed` error code for an HTTP-like status.
fn failed_code(status: u16) -> &'static str {
    match status {
        429 => "rate_limit_exceeded",
        402 => "insufficient_quota",
        503 | 529 => "server_is_overloaded",
        400..=499 => "invalid_prompt",
        _ => "server_error",
    }
}

// ---------------------------------------------------------------------------------------------
// Stream encoder: canonical events → Responses SSE
// ---------------------------------------------------------------------------------------------

enum OpenItem {
    Reasoning { id: String, index: usize, text: String, part_open: bool, signature: Option<String> },
    Message { id: String, index: usize, text: String },
    Call { id: String, index: usize, ordinal: u32, call_id: String, name: String, args: String },
}

/// A tool call that started while another call's item was open (parallel calls whose argument
/// fragments interleave); it is emitted whole when the run of calls ends.
struct PendingCall {
    ordinal: u32,
    call_id: String,
    name: String,
    signature: Option<String>,
    args: String,
}

/// Writes the Responses event grammar: `response.created`, `response.in_progress`, output items
/// (one open at a time; an item closes when an event of another kind starts), then
/// `response.completed` / `response.incomplete`, or `response.failed` on error.
pub struct Encoder {
    model: String,
    id: String,
    created_at: i64,
    seq: u64,
    started: bool,
    ended: bool,
    cur: Option<OpenItem>,
    pending: Vec<PendingCall>,
    output: Vec<Value>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

/// An encoder for a client that asked for `model`.
pub fn encoder(model: &str) -> Encoder {
    Encoder {
        model: model.to_string(),
        id: String::new(),
        created_at: now(),
        seq: 0,
        started: false,
        ended: false,
        cur: None,
        pending: Vec::new(),
        output: Vec::new(),
        usage: None,
        finish: None,
    }
}

fn emit(seq: &mut u64, out: &mut Vec<u8>, ty: &str, fields: Value) {
    let mut data = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    data.insert("type".into(), ty.into());
    data.insert("sequence_number".into(), (*seq).into());
    *seq += 1;
    sse::json_frame(out, Some(ty), &Value::Object(data));
}

impl Encoder {
    fn response(&self, status: &str, usage: Option<&Usage>, error: Option<Value>) -> Value {
        let meta = ResponseMeta { id: &self.id, created_at: self.created_at, model: &self.model };
        let output = if status == "in_progress" { Vec::new() } else { self.output.clone() };
        response_object(&meta, status, output, usage, self.finish, error)
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = new_id("resp");
        }
        let r = self.response("in_progress", None, None);
        emit(&mut self.seq, out, "response.created", json!({ "response": r.clone() }));
        emit(&mut self.seq, out, "response.in_progress", json!({ "response": r }));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(item) = self.cur.take() else { return };
        let seq = &mut self.seq;
        let (index, done) = match item {
            OpenItem::Reasoning { id, index, text, part_open, signature } => {
                if part_open {
                    let at = json!({"item_id": id, "output_index": index, "summary_index": 0});
                    let mut ev = at.clone();
                    ev["text"] = text.as_str().into();
                    emit(seq, out, "response.reasoning_summary_text.done", ev);
                    let mut ev = at;
                    ev["part"] = json!({"type": "summary_text", "text": text});
                    emit(seq, out, "response.reasoning_summary_part.done", ev);
                }
                (index, reasoning_item(&id, &text, signature.as_deref()))
            }
            OpenItem::Message { id, index, text } => {
                let ev =
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []});
                emit(seq, out, "response.output_text.done", ev);
                let ev =
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text_part(&text)});
                emit(seq, out, "response.content_part.done", ev);
                (index, message_item(&id, &text))
            }
            OpenItem::Call { id, index, call_id, name, args, .. } => {
                let args = normalize_args(&args);
                let ev = json!({"item_id": id, "output_index": index, "arguments": args});
                emit(seq, out, "response.function_call_arguments.done", ev);
                (index, function_call_item(&id, &call_id, &name, args, "completed"))
            }
        };
        emit(seq, out, "response.output_item.done", json!({"output_index": index, "item": done.clone()}));
        self.output.push(done);
    }

    /// Close the current item and emit the buffered calls whole.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close(out);
        for p in std::mem::take(&mut self.pending) {
            self.open_call(out, p.ordinal, p.call_id, p.name, p.signature);
            if let Some(OpenItem::Call { id, index, args, .. }) = &mut self.cur {
                if !p.args.is_empty() {
                    args.push_str(&p.args);
                    let ev = json!({"item_id": id, "output_index": index, "delta": p.args});
                    emit(&mut self.seq, out, "response.function_call_arguments.delta", ev);
                }
            }
            self.close(out);
        }
    }

    /// Open a function call item (after a reasoning item carrying the call's Gemini signature,
    /// which a client sends back as `encrypted_content` right before the call).
    fn open_call(&mut self, out: &mut Vec<u8>, ordinal: u32, call_id: String, name: String, sig: Option<String>) {
        if let Some(sig) = sig.filter(|s| !s.is_empty()) {
            self.open_reasoning(out, Some(sig));
            self.close(out);
        }
        let call_id = if call_id.is_empty() { new_id("call") } else { call_id };
        let item = OpenItem::Call { id: new_id("fc"), index: 0, ordinal, call_id, name, args: String::new() };
        self.open(out, item);
    }

    /// Close the current item and open `item` as the next output item (its index is set here).
    fn open(&mut self, out: &mut Vec<u8>, mut item: OpenItem) {
        self.close_all(out);
        let index = self.output.len();
        match &mut item {
            OpenItem::Reasoning { index: i, .. }
            | OpenItem::Message { index: i, .. }
            | OpenItem::Call { index: i, .. } => {
                *i = index;
            }
        }
        let added = match &item {
            OpenItem::Reasoning { id, .. } => json!({"id": id, "type": "reasoning", "summary": []}),
            OpenItem::Message { id, .. } => {
                json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []})
            }
            OpenItem::Call { id, call_id, name, .. } => function_call_item(id, call_id, name, "", "in_progress"),
        };
        emit(&mut self.seq, out, "response.output_item.added", json!({"output_index": index, "item": added}));
        if let OpenItem::Message { id, .. } = &item {
            let ev = json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text_part("")});
            emit(&mut self.seq, out, "response.content_part.added", ev);
        }
        self.cur = Some(item);
    }

    fn open_reasoning(&mut self, out: &mut Vec<u8>, signature: Option<String>) {
        let item = OpenItem::Reasoning { id: new_id("rs"), index: 0, text: String::new(), part_open: false, signature };
        self.open(out, item);
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match ev {
            StreamEvent::Start { id, .. } => {
                if !self.started && !id.is_empty() {
                    self.id = response_id(id);
                }
                self.start(out);
            }
            StreamEvent::Text(t) => {
                self.start(out);
                if !matches!(self.cur, Some(OpenItem::Message { .. })) {
                    self.open(out, OpenItem::Message { id: new_id("msg"), index: 0, text: String::new() });
                }
                if let Some(OpenItem::Message { id, index, text }) = &mut self.cur {
                    if !t.is_empty() {
                        text.push_str(t);
                        let ev = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": t, "logprobs": []});
                        emit(&mut self.seq, out, "response.output_text.delta", ev);
                    }
                }
            }
            StreamEvent::Thinking(t) => {
                self.start(out);
                if !matches!(self.cur, Some(OpenItem::Reasoning { signature: None, .. })) {
                    self.open_reasoning(out, None);
                }
                if let Some(OpenItem::Reasoning { id, index, text, part_open, .. }) = &mut self.cur {
                    if t.is_empty() {
                        return;
                    }
                    let at = json!({"item_id": id, "output_index": index, "summary_index": 0});
                    if !*part_open {
                        *part_open = true;
                        let mut ev = at.clone();
                        ev["part"] = json!({"type": "summary_text", "text": ""});
                        emit(&mut self.seq, out, "response.reasoning_summary_part.added", ev);
                    }
                    text.push_str(t);
                    let mut ev = at;
                    ev["delta"] = t.as_str().into();
                    emit(&mut self.seq, out, "response.reasoning_summary_text.delta", ev);
                }
            }
            StreamEvent::ThinkingSignature(sig) => {
                self.start(out);
                match &mut self.cur {
                    Some(OpenItem::Reasoning { signature: signature @ None, .. }) => *signature = Some(sig.clone()),
                    _ => self.open_reasoning(out, Some(sig.clone())),
                }
            }
            StreamEvent::RedactedThinking(data) => {
                self.start(out);
                self.open_reasoning(out, Some(format!("{REDACTED_PREFIX}{data}")));
                self.close(out);
            }
            StreamEvent::ToolCallStart { index: ordinal, id, name, signature } => {
                self.start(out);
                if matches!(self.cur, Some(OpenItem::Call { .. })) {
                    self.pending.push(PendingCall {
                        ordinal: *ordinal,
                        call_id: id.clone(),
                        name: name.clone(),
                        signature: signature.clone(),
                        args: String::new(),
                    });
                } else {
                    self.open_call(out, *ordinal, id.clone(), name.clone(), signature.clone());
                }
            }
            StreamEvent::ToolCallArgs { index: ordinal, delta } => {
                self.start(out);
                match &mut self.cur {
                    Some(OpenItem::Call { id, index, ordinal: open, args, .. }) if open == ordinal => {
                        if !delta.is_empty() {
                            args.push_str(delta);
                            let ev = json!({"item_id": id, "output_index": index, "delta": delta});
                            emit(&mut self.seq, out, "response.function_call_arguments.delta", ev);
                        }
                    }
                    _ => {
                        if let Some(p) = self.pending.iter_mut().find(|p| p.ordinal == *ordinal) {
                            p.args.push_str(delta);
                        }
                    }
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish = Some(*f),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        self.close_all(out);
        self.ended = true;
        let status = finish_status(self.finish);
        let usage = self.usage.unwrap_or_default();
        let r = self.response(status, Some(&usage), None);
        emit(&mut self.seq, out, &format!("response.{status}"), json!({ "response": r }));
    }

    fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        self.cur = None;
        self.pending.clear();
        self.ended = true;
        let error = json!({"code": failed_code(status), "message": message});
        let r = self.response("failed", self.usage.as_ref(), Some(error));
        emit(&mut self.seq, out, "response.failed", json!({ "response": r }));
    }
}

// ---------------------------------------------------------------------------------------------
// build_request: ChatRequest → upstream body
// ---------------------------------------------------------------------------------------------

fn part_kind(p: &Part) -> &'static str {
    match p {
        Part::Text { .. } => "text part",
        Part::Image { .. } => "image",
        Part::ToolCall { .. } => "tool call",
        Part::ToolResult { .. } => "tool result",
        Part::Thinking { .. } => "thinking part",
        Part::RedactedThinking { .. } => "redacted thinking part",
    }
}

fn input_image(src: &ImageSource) -> Value {
    json!({"type": "input_image", "image_url": image_url(src), "detail": "auto"})
}

fn flush_message(role: &str, content: &mut Vec<Value>, input: &mut Vec<Value>) {
    if !content.is_empty() {
        input.push(json!({"type": "message", "role": role, "content": std::mem::take(content)}));
    }
}

fn tool_output(content: &[Part], path: &str) -> Result<Value, FormatError> {
    if content.iter().all(|p| matches!(p, Part::Text { .. })) {
        let mut text = String::new();
        for p in content {
            if let Part::Text { text: t } = p {
                text.push_str(t);
            }
        }
        return Ok(text.into());
    }
    let mut parts = Vec::with_capacity(content.len());
    for (k, p) in content.iter().enumerate() {
        parts.push(match p {
            Part::Text { text } => json!({"type": "input_text", "text": text}),
            Part::Image { source } => input_image(source),
            other => {
                return Err(bad(format!(
                    "{path}.content[{k}]: a {} inside a tool result cannot be sent to openai.responses",
                    part_kind(other)
                )))
            }
        });
    }
    Ok(Value::Array(parts))
}

fn build_message(i: usize, m: &Message, input: &mut Vec<Value>) -> Result<(), FormatError> {
    let mut content = Vec::new();
    let unsupported = |j: usize, p: &Part, role: &str| {
        bad(format!(
            "messages[{i}].content[{j}]: a {} in a {role} message cannot be sent to openai.responses",
            part_kind(p)
        ))
    };
    match m.role {
        Role::System => {
            for (j, p) in m.content.iter().enumerate() {
                match p {
                    Part::Text { text } => content.push(json!({"type": "input_text", "text": text})),
                    Part::Image { source } => content.push(input_image(source)),
                    other => return Err(unsupported(j, other, "system")),
                }
            }
            flush_message("developer", &mut content, input);
        }
        Role::User => {
            for (j, p) in m.content.iter().enumerate() {
                match p {
                    Part::Text { text } => content.push(json!({"type": "input_text", "text": text})),
                    Part::Image { source } => content.push(input_image(source)),
                    Part::ToolResult { call_id, content: result, .. } => {
                        flush_message("user", &mut content, input);
                        let output = tool_output(result, &format!("messages[{i}].content[{j}]"))?;
                        input.push(json!({"type": "function_call_output", "call_id": call_id, "output": output}));
                    }
                    other => return Err(unsupported(j, other, "user")),
                }
            }
            flush_message("user", &mut content, input);
        }
        Role::Assistant => {
            for (j, p) in m.content.iter().enumerate() {
                match p {
                    Part::Text { text } => content.push(json!({"type": "output_text", "text": text})),
                    Part::Thinking { text, signature: Some(sig) } if !sig.is_empty() => {
                        flush_message("assistant", &mut content, input);
                        input.push(
                            json!({"type": "reasoning", "summary": summary_json(text), "encrypted_content": sig}),
                        );
                    }
                    // Unsigned (or `signature: ""`, as an Anthropic client shows it): dropped.
                    Part::Thinking { .. } => {}
                    Part::RedactedThinking { data } => {
                        flush_message("assistant", &mut content, input);
                        input.push(json!({"type": "reasoning", "summary": [], "encrypted_content": data}));
                    }
                    Part::ToolCall { id, name, arguments, .. } => {
                        flush_message("assistant", &mut content, input);
                        input.push(json!({
                            "type": "function_call", "call_id": id, "name": name,
                            "arguments": normalize_args(arguments),
                        }));
                    }
                    other => return Err(unsupported(j, other, "assistant")),
                }
            }
            flush_message("assistant", &mut content, input);
        }
    }
    Ok(())
}

fn budget_effort(budget: u32) -> &'static str {
    match budget {
        0..=4095 => "low",
        4096..=16383 => "medium",
        _ => "high",
    }
}

/// Build the body for an upstream Responses API (`store: false`, the whole conversation in `input`).
pub fn build_request(req: &ChatRequest, model: &str) -> Result<Vec<u8>, FormatError> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        body.insert("instructions".into(), system.into());
    }
    let mut input = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        build_message(i, m, &mut input)?;
    }
    body.insert("input".into(), Value::Array(input));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut tool = json!({"type": "function", "name": t.name, "parameters": t.parameters, "strict": false});
                if let (Some(d), Some(m)) = (&t.description, tool.as_object_mut()) {
                    m.insert("description".into(), d.as_str().into());
                }
                tool
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        let v = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool { name } => json!({"type": "function", "name": name}),
        };
        body.insert("tool_choice".into(), v);
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), p.into());
    }
    let mut reasoning_on = false;
    if let Some(t) = &req.thinking {
        let effort = t.effort.clone().or_else(|| t.budget_tokens.map(|b| budget_effort(b).to_string()));
        if t.enabled || effort.as_deref() == Some("none") {
            let mut r = Map::new();
            if let Some(e) = effort {
                r.insert("effort".into(), e.into());
            }
            if t.enabled && t.include_thoughts {
                r.insert("summary".into(), "auto".into());
            }
            body.insert("reasoning".into(), Value::Object(r));
            reasoning_on = t.enabled;
        }
    }
    if let Some(f) = &req.response_format {
        let format = match f {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema { name, schema, strict } => {
                let mut v = json!({"type": "json_schema", "name": name, "schema": schema});
                if let (Some(st), Some(m)) = (strict, v.as_object_mut()) {
                    m.insert("strict".into(), (*st).into());
                }
                v
            }
        };
        body.insert("text".into(), json!({ "format": format }));
    }
    if let Some(n) = req.max_tokens {
        body.insert("max_output_tokens".into(), n.max(16).into());
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), p.into());
    }
    if let Some(u) = &req.user {
        body.insert("user".into(), u.as_str().into());
    }
    body.insert("stream".into(), req.stream.into());
    body.insert("store".into(), false.into());
    if reasoning_on {
        body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    }
    serde_json::to_vec(&Value::Object(body))
        .map_err(|e| FormatError { status: 500, message: format!("cannot serialise the request: {e}") })
}

// ---------------------------------------------------------------------------------------------
// parse_response and decoder: upstream → canonical
// ---------------------------------------------------------------------------------------------

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

fn upstream_error(err: Option<&Obj>) -> FormatError {
    let code = err.and_then(|e| s(e, "code"));
    let ty = err.and_then(|e| s(e, "type"));
    let message = err.and_then(|e| s(e, "message")).filter(|m| !m.is_empty()).unwrap_or("upstream response failed");
    let message = match code.or(ty) {
        Some(c) => format!("{message} ({c})"),
        None => message.to_string(),
    };
    FormatError { status: error_status(code, ty), message }
}

fn parse_usage(v: &Value) -> Option<Usage> {
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
fn texts(item: &Obj, key: &str) -> Vec<String> {
    let Some(parts) = item.get(key).and_then(Value::as_array) else { return Vec::new() };
    parts
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|p| s(p, "text").or_else(|| s(p, "refusal")).map(str::to_string))
        .collect()
}

/// (text, encrypted_content) of an upstream reasoning item.
fn reasoning_fields(item: &Obj) -> (String, Option<String>) {
    let mut t = texts(item, "summary");
    if t.is_empty() {
        t = texts(item, "content");
    }
    (t.join("\n\n"), s(item, "encrypted_content").map(str::to_string))
}

fn reasoning_part(text: String, encrypted: Option<String>) -> Option<Part> {
    match encrypted {
        Some(ec) => Some(match ec.strip_prefix(REDACTED_PREFIX) {
            Some(data) => Part::RedactedThinking { data: data.to_string() },
            None if text.is_empty() => Part::RedactedThinking { data: ec },
            None => Part::Thinking { text, signature: Some(ec) },
        }),
        None if text.is_empty() => None,
        None => Some(Part::Thinking { text, signature: None }),
    }
}

fn call_arguments(item: &Obj) -> String {
    match item.get("arguments") {
        Some(Value::String(a)) => a.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => String::new(),
    }
}

fn call_id_of(item: &Obj) -> String {
    s(item, "call_id").or_else(|| s(item, "id")).map_or_else(|| new_id("call"), str::to_string)
}

/// Canonical parts of an upstream `output` array (unknown item types are ignored).
fn output_to_parts(output: &[Value]) -> Vec<Part> {
    let mut parts = Vec::new();
    for item in output.iter().filter_map(Value::as_object) {
        match s(item, "type") {
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
                name: s(item, "name").unwrap_or_default().to_string(),
                arguments: normalize_args(&call_arguments(item)).to_string(),
                signature: None,
            }),
            _ => {}
        }
    }
    parts
}

fn finish_reason(status: &str, incomplete_reason: Option<&str>, has_calls: bool) -> FinishReason {
    match (status, incomplete_reason) {
        ("incomplete", Some("content_filter")) => FinishReason::ContentFilter,
        ("incomplete", _) => FinishReason::Length,
        _ if has_calls => FinishReason::ToolUse,
        _ => FinishReason::Stop,
    }
}

fn incomplete_reason(resp: &Obj) -> Option<&str> {
    resp.get("incomplete_details").and_then(Value::as_object).and_then(|d| s(d, "reason"))
}

/// Parse an upstream (non-streamed) Responses body.
pub fn parse_response(body: &[u8]) -> Result<ChatResponse, FormatError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| FormatError::malformed(format!("upstream response is not JSON: {e}")))?;
    let o = v.as_object().ok_or_else(|| FormatError::malformed("upstream response is not a JSON object"))?;
    if let Some(err) = o.get("error").and_then(Value::as_object) {
        return Err(upstream_error(Some(err)));
    }
    let status = s(o, "status").unwrap_or("completed");
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
        id: s(o, "id").map_or_else(|| new_id("resp"), str::to_string),
        model: s(o, "model").unwrap_or_default().to_string(),
        finish: finish_reason(status, incomplete_reason(o), has_calls),
        usage: o.get("usage").and_then(parse_usage).unwrap_or_default(),
        content,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Reasoning,
    Call,
    Other,
}

struct DecItem {
    kind: Kind,
    id: String,
    /// Streamed text (message) or reasoning text.
    text: String,
    /// Streamed arguments (call).
    args: String,
    ordinal: u32,
}

/// Reads an upstream Responses stream.
pub struct Decoder {
    started: bool,
    ended: bool,
    next_ordinal: u32,
    next_key: u64,
    items: HashMap<u64, DecItem>,
    saw_items: bool,
    saw_call: bool,
}

/// A decoder for an upstream Responses stream.
pub fn decoder() -> Decoder {
    Decoder {
        started: false,
        ended: false,
        next_ordinal: 0,
        next_key: 1 << 40,
        items: HashMap::new(),
        saw_items: false,
        saw_call: false,
    }
}

impl Decoder {
    fn key(&self, d: &Obj) -> Option<u64> {
        if let Some(i) = d.get("output_index").and_then(Value::as_u64) {
            return Some(i);
        }
        let id = s(d, "item_id")?;
        self.items.iter().find(|(_, it)| it.id == id).map(|(k, _)| *k)
    }

    fn item_mut(&mut self, d: &Obj) -> Option<&mut DecItem> {
        let k = self.key(d)?;
        self.items.get_mut(&k)
    }

    fn start_call(&mut self, item: &Obj, out: &mut Vec<StreamEvent>) -> DecItem {
        let ordinal = self.next_ordinal;
        self.next_ordinal = self.next_ordinal.saturating_add(1);
        self.saw_call = true;
        out.push(StreamEvent::ToolCallStart {
            index: ordinal,
            id: call_id_of(item),
            name: s(item, "name").unwrap_or_default().to_string(),
            signature: None,
        });
        let args = call_arguments(item);
        if !args.is_empty() {
            out.push(StreamEvent::ToolCallArgs { index: ordinal, delta: args.clone() });
        }
        DecItem {
            kind: Kind::Call,
            id: s(item, "id").unwrap_or_default().to_string(),
            text: String::new(),
            args,
            ordinal,
        }
    }

    fn added(&mut self, d: &Obj, out: &mut Vec<StreamEvent>) {
        let Some(item) = d.get("item").and_then(Value::as_object) else { return };
        self.saw_items = true;
        let key = d.get("output_index").and_then(Value::as_u64).unwrap_or_else(|| {
            self.next_key += 1;
            self.next_key
        });
        let kind = match s(item, "type") {
            Some("message") => Kind::Message,
            Some("reasoning") => Kind::Reasoning,
            Some("function_call") => Kind::Call,
            _ => Kind::Other,
        };
        let st = if kind == Kind::Call {
            self.start_call(item, out)
        } else {
            let id = s(item, "id").unwrap_or_default().to_string();
            DecItem { kind, id, text: String::new(), args: String::new(), ordinal: 0 }
        };
        self.items.insert(key, st);
    }

    fn done(&mut self, d: &Obj, out: &mut Vec<StreamEvent>) {
        let Some(item) = d.get("item").and_then(Value::as_object) else { return };
        self.saw_items = true;
        let st = self.key(d).and_then(|k| self.items.remove(&k));
        match s(item, "type") {
            Some("function_call") => {
                let mut st = match st {
                    Some(st) if st.kind == Kind::Call => st,
                    _ => self.start_call(item, out),
                };
                let full = call_arguments(item);
                args_remainder(&mut st, &full, out);
            }
            Some("message") => {
                let text = texts(item, "content").concat();
                if st.is_none_or(|st| st.text.is_empty()) && !text.is_empty() {
                    out.push(StreamEvent::Text(text));
                }
            }
            Some("reasoning") => {
                let streamed = st.map(|st| st.text).unwrap_or_default();
                let (text, ec) = reasoning_fields(item);
                let mut have_text = !streamed.is_empty();
                if !have_text && !text.is_empty() {
                    out.push(StreamEvent::Thinking(text));
                    have_text = true;
                }
                if let Some(ec) = ec {
                    out.push(match ec.strip_prefix(REDACTED_PREFIX) {
                        Some(data) => StreamEvent::RedactedThinking(data.to_string()),
                        None if have_text => StreamEvent::ThinkingSignature(ec),
                        None => StreamEvent::RedactedThinking(ec),
                    });
                }
            }
            _ => {}
        }
    }

    fn terminal(&mut self, ty: &str, d: &Obj, out: &mut Vec<StreamEvent>) {
        self.ended = true;
        let resp = d.get("response").and_then(Value::as_object);
        if !self.saw_items {
            let output = resp.and_then(|r| r.get("output")).and_then(Value::as_array);
            for part in output.map(|o| output_to_parts(o)).unwrap_or_default() {
                self.part_events(part, out);
            }
        }
        if let Some(u) = resp.and_then(|r| r.get("usage")).and_then(parse_usage) {
            out.push(StreamEvent::Usage(u));
        }
        let status = if ty == "response.incomplete" { "incomplete" } else { "completed" };
        out.push(StreamEvent::Finish(finish_reason(status, resp.and_then(incomplete_reason), self.saw_call)));
    }

    /// Events for a whole part (a stream that only reported its final response object).
    fn part_events(&mut self, part: Part, out: &mut Vec<StreamEvent>) {
        match part {
            Part::Text { text } => out.push(StreamEvent::Text(text)),
            Part::Thinking { text, signature } => {
                out.push(StreamEvent::Thinking(text));
                out.extend(signature.map(StreamEvent::ThinkingSignature));
            }
            Part::RedactedThinking { data } => out.push(StreamEvent::RedactedThinking(data)),
            Part::ToolCall { id, name, arguments, .. } => {
                let index = self.next_ordinal;
                self.next_ordinal = self.next_ordinal.saturating_add(1);
                self.saw_call = true;
                out.push(StreamEvent::ToolCallStart { index, id, name, signature: None });
                out.push(StreamEvent::ToolCallArgs { index, delta: arguments });
            }
            Part::Image { .. } | Part::ToolResult { .. } => {}
        }
    }
}

/// Emit the part of `full` arguments not streamed yet (servers that skip the deltas).
fn args_remainder(st: &mut DecItem, full: &str, out: &mut Vec<StreamEvent>) {
    if let Some(rest) = full.strip_prefix(st.args.as_str()) {
        if !rest.is_empty() {
            out.push(StreamEvent::ToolCallArgs { index: st.ordinal, delta: rest.to_string() });
            st.args.push_str(rest);
        }
    }
}

impl StreamDecoder for Decoder {
    fn feed(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>, FormatError> {
        let mut out = Vec::new();
        let data = data.trim();
        if self.ended || data.is_empty() || data == "[DONE]" {
            return Ok(out);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| FormatError::malformed(format!("upstream stream event is not JSON: {e}")))?;
        let d = v.as_object().ok_or_else(|| FormatError::malformed("upstream stream event is not a JSON object"))?;
        let ty = s(d, "type").or(event).unwrap_or_default();
        let delta = s(d, "delta").filter(|t| !t.is_empty());
        match ty {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let (false, Some(r)) = (self.started, d.get("response").and_then(Value::as_object)) {
                    self.started = true;
                    let id = s(r, "id").unwrap_or_default().to_string();
                    let model = s(r, "model").unwrap_or_default().to_string();
                    out.push(StreamEvent::Start { id, model });
                }
            }
            "response.output_item.added" => self.added(d, &mut out),
            "response.output_item.done" => self.done(d, &mut out),
            "response.output_text.delta" | "response.refusal.delta" => {
                if let Some(t) = delta {
                    if let Some(st) = self.item_mut(d) {
                        st.text.push_str(t);
                    }
                    out.push(StreamEvent::Text(t.to_string()));
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(t) = delta {
                    if let Some(st) = self.item_mut(d) {
                        st.text.push_str(t);
                    }
                    out.push(StreamEvent::Thinking(t.to_string()));
                }
            }
            "response.reasoning_summary_part.added" => {
                let later = d.get("summary_index").and_then(Value::as_u64).is_some_and(|i| i > 0);
                if let Some(st) = self.item_mut(d) {
                    if later && !st.text.is_empty() {
                        st.text.push_str("\n\n");
                        out.push(StreamEvent::Thinking("\n\n".into()));
                    }
                }
            }
            "response.function_call_arguments.delta" => {
                if let (Some(t), Some(st)) = (delta, self.item_mut(d)) {
                    if st.kind == Kind::Call {
                        st.args.push_str(t);
                        out.push(StreamEvent::ToolCallArgs { index: st.ordinal, delta: t.to_string() });
                    }
                }
            }
            "response.function_call_arguments.done" => {
                let full = s(d, "arguments").unwrap_or_default().to_string();
                if let Some(st) = self.item_mut(d) {
                    if st.kind == Kind::Call {
                        args_remainder(st, &full, &mut out);
                    }
                }
            }
            "response.completed" | "response.incomplete" => self.terminal(ty, d, &mut out),
            "response.failed" => {
                self.ended = true;
                let resp = d.get("response").and_then(Value::as_object);
                return Err(upstream_error(resp.and_then(|r| r.get("error")).and_then(Value::as_object)));
            }
            "error" | "" => {
                let nested = d.get("error").and_then(Value::as_object);
                if ty.is_empty() && nested.is_none() {
                    return Ok(out);
                }
                self.ended = true;
                return Err(upstream_error(Some(nested.unwrap_or(d))));
            }
            _ => {}
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError> {
        if self.ended {
            Ok(Vec::new())
        } else {
            Err(FormatError::malformed("upstream stream ended before response.completed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::formats::grammar::ValidateStream as _;

    fn validate_stream(bytes: &[u8]) -> Result<(), String> {
        crate::formats::Format::OpenAiResponses.validate_stream(bytes)
    }

    use super::*;
    use crate::formats::sse::SseEvent;

    const CODEX: &str = include_str!("../../tests/fixtures/openai_responses/codex_request.json");
    const CODEX_EXPECTED: &str = include_str!("../../tests/fixtures/openai_responses/codex_request.expected.json");
    const PARSE_CASES: &str = include_str!("../../tests/fixtures/openai_responses/parse_cases.json");
    const BAD_REQUESTS: &str = include_str!("../../tests/fixtures/openai_responses/bad_requests.json");
    const BUILD_CASES: &str = include_str!("../../tests/fixtures/openai_responses/build_cases.json");
    const UPSTREAM_STREAM: &str = include_str!("../../tests/fixtures/openai_responses/upstream_stream.sse");
    const UPSTREAM_RESPONSE: &str = include_str!("../../tests/fixtures/openai_responses/upstream_response.json");

    fn parse(body: &str) -> Result<ChatRequest, FormatError> {
        parse_request(body.as_bytes(), &ParseContext::default())
    }

    fn check_parse(name: &str, request: &Value, expected: &Value) {
        let got = parse(&request.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want: ChatRequest = serde_json::from_value(expected.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }

    // ---- parse_request -----------------------------------------------------------------------

    #[test]
    fn codex_request_parses() {
        let request: Value = serde_json::from_str(CODEX).unwrap();
        let expected: Value = serde_json::from_str(CODEX_EXPECTED).unwrap();
        check_parse("codex", &request, &expected);
    }

    #[test]
    fn parse_cases() {
        let cases: Vec<Value> = serde_json::from_str(PARSE_CASES).unwrap();
        assert!(cases.len() >= 4);
        for case in &cases {
            check_parse(case["name"].as_str().unwrap(), &case["request"], &case["expected"]);
        }
    }

    #[test]
    fn bad_requests_are_400_naming_the_field() {
        let cases: Vec<Value> = serde_json::from_str(BAD_REQUESTS).unwrap();
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let body = match case.get("raw") {
                Some(raw) => raw.as_str().unwrap().to_string(),
                None => case["request"].to_string(),
            };
            let err = parse(&body).expect_err(name);
            assert_eq!(err.status, 400, "{name}: {err}");
            let want = case["error"].as_str().unwrap();
            assert!(err.message.contains(want), "{name}: {:?} does not contain {want:?}", err.message);
        }
    }

    #[test]
    fn model_from_context_wins() {
        let ctx = ParseContext { model: Some("from-url".into()), ..Default::default() };
        let req = parse_request(br#"{"input":"hi"}"#, &ctx).unwrap();
        assert_eq!(req.model, "from-url");
    }

    #[test]
    fn codex_request_survives_build_and_reparse() {
        let first = parse(CODEX).unwrap();
        let body = build_request(&first, "gpt-5-codex").unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(body["store"], json!(false));
        assert!(body.get("instructions").is_some());
        let second = parse(&body.to_string()).unwrap();
        assert_eq!(second, first);
    }

    // ---- build_request -----------------------------------------------------------------------

    #[test]
    fn build_cases() {
        let cases: Vec<Value> = serde_json::from_str(BUILD_CASES).unwrap();
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let req: ChatRequest = serde_json::from_value(case["canonical"].clone()).unwrap();
            let body = build_request(&req, case["model"].as_str().unwrap()).unwrap();
            let got: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got, case["expected"], "{name}:\n{}", serde_json::to_string_pretty(&got).unwrap());
        }
    }

    #[test]
    fn build_rejects_parts_the_api_cannot_carry() {
        let cases = [
            (Role::Assistant, Part::Image { source: ImageSource::Url { url: "https://x/y.png".into() } }, "image"),
            (
                Role::User,
                Part::ToolCall { id: "c".into(), name: "f".into(), arguments: "{}".into(), signature: None },
                "tool call",
            ),
            (Role::System, Part::Thinking { text: "t".into(), signature: None }, "thinking"),
            (
                Role::Assistant,
                Part::ToolResult { call_id: "c".into(), name: None, content: vec![], is_error: false },
                "tool result",
            ),
        ];
        for (role, part, what) in cases {
            let req = ChatRequest {
                messages: vec![Message::text(Role::User, "hi"), Message { role, content: vec![Part::text("x"), part] }],
                ..Default::default()
            };
            let err = build_request(&req, "m").unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.message.contains("messages[1].content[1]") && err.message.contains(what), "{}", err.message);
        }
    }

    // ---- render_response / parse_response ----------------------------------------------------

    fn usage(input: u64, output: u64, cached: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cached,
            cache_write_tokens: 0,
            reasoning_tokens: reasoning,
            estimated: false,
        }
    }

    fn call(id: &str, name: &str, args: &str) -> Part {
        Part::ToolCall { id: id.into(), name: name.into(), arguments: args.into(), signature: None }
    }

    #[test]
    fn render_then_parse_round_trips() {
        let cases = vec![
            ChatResponse {
                id: "msg_01Anthropic".into(),
                model: "claude-sonnet-4-5".into(),
                content: vec![
                    Part::Thinking { text: "Let me think.".into(), signature: Some("EqQBsig==".into()) },
                    Part::text("Calling tools."),
                    call("toolu_1", "get_weather", r#"{"city":"Paris"}"#),
                    call("toolu_2", "now", "{}"),
                ],
                finish: FinishReason::ToolUse,
                usage: usage(100, 50, 900, 20),
            },
            ChatResponse {
                id: "resp_abc".into(),
                model: "gpt-5".into(),
                content: vec![Part::RedactedThinking { data: "opaque==".into() }, Part::text("Cut o")],
                finish: FinishReason::Length,
                usage: usage(10, 16, 0, 0),
            },
            ChatResponse {
                id: "x".into(),
                model: "m".into(),
                content: vec![],
                finish: FinishReason::ContentFilter,
                usage: usage(5, 0, 0, 0),
            },
            ChatResponse {
                id: "y".into(),
                model: "m".into(),
                content: vec![
                    Part::text("a"),
                    Part::Thinking { text: String::new(), signature: Some("gAAAA".into()) },
                    Part::text("b"),
                ],
                finish: FinishReason::Stop,
                usage: usage(1, 2, 0, 0),
            },
        ];
        for resp in cases {
            let body = render_response(&resp, "client-model");
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["object"], "response");
            assert_eq!(v["model"], "client-model");
            assert!(v["id"].as_str().unwrap().starts_with("resp_"));
            for key in ["created_at", "parallel_tool_calls", "tool_choice", "tools", "output", "usage", "error"] {
                assert!(v.get(key).is_some(), "missing {key}");
            }
            let back = parse_response(&body).unwrap();
            let mut want = resp.clone();
            want.id = response_id(&resp.id);
            want.model = "client-model".into();
            // An empty-text signed reasoning item comes back as redacted (documented).
            for p in &mut want.content {
                if let Part::Thinking { text, signature: Some(sig) } = p {
                    if text.is_empty() {
                        *p = Part::RedactedThinking { data: sig.clone() };
                    }
                }
            }
            assert_eq!(back, want);
        }
    }

    #[test]
    fn render_shape() {
        let resp = ChatResponse {
            id: "resp_1".into(),
            model: "up".into(),
            content: vec![Part::Thinking { text: "t".into(), signature: None }, Part::text("hi"), call("c1", "f", "")],
            finish: FinishReason::Length,
            usage: Usage { cache_write_tokens: 7, ..usage(10, 20, 30, 5) },
        };
        let v: Value = serde_json::from_slice(&render_response(&resp, "m")).unwrap();
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"], json!({"reason": "max_output_tokens"}));
        let out = v["output"].as_array().unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["type"], "reasoning");
        assert!(out[0]["id"].as_str().unwrap().starts_with("rs_"));
        assert_eq!(out[0]["summary"], json!([{"type": "summary_text", "text": "t"}]));
        assert!(out[0].get("encrypted_content").is_none());
        assert_eq!(out[1]["type"], "message");
        assert!(out[1]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(out[1]["status"], "completed");
        assert_eq!(out[1]["content"][0]["type"], "output_text");
        assert_eq!(out[1]["content"][0]["annotations"], json!([]));
        assert_eq!(out[2]["type"], "function_call");
        assert!(out[2]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(out[2]["call_id"], "c1");
        assert_eq!(out[2]["arguments"], "{}");
        assert_eq!(
            v["usage"],
            json!({
                "input_tokens": 47, "input_tokens_details": {"cached_tokens": 30},
                "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 67
            })
        );
        let filtered = ChatResponse { finish: FinishReason::ContentFilter, ..resp };
        let v: Value = serde_json::from_slice(&render_response(&filtered, "m")).unwrap();
        assert_eq!(v["incomplete_details"], json!({"reason": "content_filter"}));
    }

    #[test]
    fn parse_upstream_response_fixture() {
        let got = parse_response(UPSTREAM_RESPONSE.as_bytes()).unwrap();
        let want = ChatResponse {
            id: "resp_68f1c2a9b0d88193a1b2c3d4e5f60718".into(),
            model: "gpt-5-2025-08-07".into(),
            content: vec![
                Part::Thinking { text: "Plan.".into(), signature: Some("gAAAAABo8sEnc_A==".into()) },
                Part::RedactedThinking { data: "gAAAAABo8sEnc_NoSummary==".into() },
                Part::text("Part one. No more."),
                call("call_Q", "lookup", r#"{"q":1}"#),
            ],
            finish: FinishReason::Length,
            usage: usage(30, 16, 20, 10),
        };
        assert_eq!(got, want);
    }

    #[test]
    fn parse_response_errors() {
        let cases = [
            (
                r#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                401,
            ),
            (r#"{"status":"failed","output":[],"error":{"code":"rate_limit_exceeded","message":"slow"}}"#, 429),
            (r#"{"status":"failed","output":[],"error":{"code":"server_error","message":"oops"}}"#, 500),
            (r#"{"status":"failed","output":[]}"#, 502),
            (r#"{"status":"in_progress","output":[]}"#, 502),
            (r#"{"status":"completed"}"#, 502),
            (r#"{"status":"completed","output":{}}"#, 502),
            ("not json", 502),
            ("[]", 502),
        ];
        for (body, status) in cases {
            let err = parse_response(body.as_bytes()).expect_err(body);
            assert_eq!(err.status, status, "{body}: {err}");
        }
    }

    #[test]
    fn render_error_shapes() {
        let cases = [
            (400, "invalid_request_error", Value::Null),
            (401, "invalid_request_error", json!("invalid_api_key")),
            (402, "insufficient_quota", json!("insufficient_quota")),
            (403, "permission_error", Value::Null),
            (404, "invalid_request_error", json!("not_found")),
            (429, "rate_limit_error", json!("rate_limit_exceeded")),
            (500, "server_error", Value::Null),
            (503, "server_error", json!("server_is_overloaded")),
            (529, "server_error", json!("server_is_overloaded")),
        ];
        for (status, ty, code) in cases {
            let v: Value = serde_json::from_slice(&render_error(status, "boom")).unwrap();
            assert_eq!(v, json!({"error": {"message": "boom", "type": ty, "param": null, "code": code}}), "{status}");
        }
    }

    // ---- streams -----------------------------------------------------------------------------

    #[derive(Debug, PartialEq)]
    enum Block {
        Text(String),
        Thinking(String, Option<String>),
        Redacted(String),
        Call(u32, String, String, Value),
    }

    #[derive(Debug, PartialEq)]
    struct Summary {
        blocks: Vec<Block>,
        usage: Option<Usage>,
        finish: FinishReason,
    }

    /// What a client sees: text concatenated, thinking with its signature, calls with JSON args.
    fn summarize(events: &[StreamEvent]) -> Summary {
        let mut blocks: Vec<Block> = Vec::new();
        let mut args: HashMap<u32, String> = HashMap::new();
        let mut usage = None;
        let mut finish = FinishReason::Stop;
        for ev in events {
            match ev {
                StreamEvent::Start { .. } => {}
                StreamEvent::Text(t) if t.is_empty() => {}
                StreamEvent::Text(t) => match blocks.last_mut() {
                    Some(Block::Text(prev)) => prev.push_str(t),
                    _ => blocks.push(Block::Text(t.clone())),
                },
                StreamEvent::Thinking(t) if t.is_empty() => {}
                StreamEvent::Thinking(t) => match blocks.last_mut() {
                    Some(Block::Thinking(prev, None)) => prev.push_str(t),
                    _ => blocks.push(Block::Thinking(t.clone(), None)),
                },
                StreamEvent::ThinkingSignature(sig) => match blocks.last_mut() {
                    Some(Block::Thinking(_, slot @ None)) => *slot = Some(sig.clone()),
                    _ => blocks.push(Block::Redacted(sig.clone())),
                },
                StreamEvent::RedactedThinking(d) => blocks.push(Block::Redacted(d.clone())),
                StreamEvent::ToolCallStart { index, id, name, signature } => {
                    // A call's (Gemini) signature travels as a reasoning item before it.
                    blocks.extend(signature.iter().filter(|s| !s.is_empty()).map(|s| Block::Redacted(s.clone())));
                    blocks.push(Block::Call(*index, id.clone(), name.clone(), Value::Null));
                    args.insert(*index, String::new());
                }
                StreamEvent::ToolCallArgs { index, delta } => {
                    if let Some(a) = args.get_mut(index) {
                        a.push_str(delta);
                    }
                }
                StreamEvent::Usage(u) => usage = Some(*u),
                StreamEvent::Finish(f) => finish = *f,
            }
        }
        for b in &mut blocks {
            if let Block::Call(index, _, _, v) = b {
                let a = args.get(index).map_or("{}", |a| normalize_args(a));
                *v = serde_json::from_str(a).unwrap_or(Value::String(a.to_string()));
            }
        }
        Summary { blocks, usage, finish }
    }

    fn encode(events: &[StreamEvent]) -> Vec<u8> {
        let mut enc = encoder("client-model");
        let mut out = Vec::new();
        for ev in events {
            enc.event(ev, &mut out);
        }
        enc.finish(&mut out);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Vec<StreamEvent>, FormatError> {
        let mut dec = decoder();
        let mut events = Vec::new();
        for ev in sse::parse(bytes).unwrap() {
            events.extend(dec.feed(ev.event.as_deref(), &ev.data)?);
        }
        events.extend(dec.end()?);
        Ok(events)
    }

    fn tstart(index: u32, id: &str, name: &str) -> StreamEvent {
        StreamEvent::ToolCallStart { index, id: id.into(), name: name.into(), signature: None }
    }

    fn targs(index: u32, delta: &str) -> StreamEvent {
        StreamEvent::ToolCallArgs { index, delta: delta.into() }
    }

    fn text(t: &str) -> StreamEvent {
        StreamEvent::Text(t.into())
    }

    fn think(t: &str) -> StreamEvent {
        StreamEvent::Thinking(t.into())
    }

    fn sequences() -> Vec<(&'static str, Vec<StreamEvent>)> {
        let u = usage(12, 34, 56, 7);
        vec![
            (
                "thinking, text, two calls, usage after finish",
                vec![
                    StreamEvent::Start { id: "msg_01XYZ".into(), model: "claude".into() },
                    think("Let me "),
                    think("think."),
                    StreamEvent::ThinkingSignature("EqQBsig==".into()),
                    text("Hel"),
                    text("lo"),
                    tstart(0, "toolu_1", "get_weather"),
                    targs(0, "{\"city\""),
                    targs(0, ":\"Paris\"}"),
                    tstart(1, "toolu_2", "now"),
                    targs(1, "{}"),
                    StreamEvent::Finish(FinishReason::ToolUse),
                    StreamEvent::Usage(u),
                ],
            ),
            (
                "no start, text only, usage before finish",
                vec![text("just text"), StreamEvent::Usage(u), StreamEvent::Finish(FinishReason::Stop)],
            ),
            ("text after a tool call, no finish", vec![tstart(0, "call_1", "f"), targs(0, "{\"a\":1}"), text("after")]),
            ("zero output", vec![StreamEvent::Usage(u), StreamEvent::Finish(FinishReason::Stop)]),
            ("nothing at all", vec![]),
            (
                "redacted thinking then text, length",
                vec![
                    StreamEvent::RedactedThinking("opaque==".into()),
                    text("cut"),
                    StreamEvent::Finish(FinishReason::Length),
                ],
            ),
            (
                "interleaved reasoning and text",
                vec![
                    think("one"),
                    text("a"),
                    think("two"),
                    StreamEvent::ThinkingSignature("s2".into()),
                    think("three"),
                    StreamEvent::ThinkingSignature("s3".into()),
                    text("b"),
                ],
            ),
            ("signature without text", vec![StreamEvent::ThinkingSignature("gAAAA".into()), text("x")]),
            ("call with no arguments", vec![tstart(0, "c", "noargs"), StreamEvent::Finish(FinishReason::ToolUse)]),
            (
                "parallel calls with interleaved argument fragments (as some Chat servers send)",
                vec![
                    tstart(0, "c0", "f"),
                    targs(0, "{\"a\":"),
                    tstart(1, "c1", "g"),
                    targs(1, "{\"b\":"),
                    targs(0, "1}"),
                    targs(1, "2}"),
                    tstart(2, "c2", "h"),
                    targs(2, "{}"),
                    text("after"),
                    StreamEvent::Finish(FinishReason::ToolUse),
                ],
            ),
            ("content filter", vec![text("partial"), StreamEvent::Finish(FinishReason::ContentFilter)]),
            (
                "gemini-style call with signature, stop sequence",
                vec![
                    StreamEvent::ToolCallStart {
                        index: 0,
                        id: String::new(),
                        name: "f".into(),
                        signature: Some("g".into()),
                    },
                    targs(0, "{\"x\":[1,2]}"),
                    StreamEvent::Finish(FinishReason::StopSequence),
                ],
            ),
        ]
    }

    #[test]
    fn encoder_streams_validate_and_decode_back() {
        for (name, events) in sequences() {
            let bytes = encode(&events);
            validate_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&bytes)));
            let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut want = summarize(&events);
            if want.usage.is_none() {
                want.usage = Some(Usage::default());
            }
            // Decoded ToolUse needs a call; StopSequence is reported as completed (Stop).
            if want.finish == FinishReason::StopSequence {
                want.finish = if want.blocks.iter().any(|b| matches!(b, Block::Call(..))) {
                    FinishReason::ToolUse
                } else {
                    FinishReason::Stop
                };
            }
            if want.finish == FinishReason::Stop && want.blocks.iter().any(|b| matches!(b, Block::Call(..))) {
                want.finish = FinishReason::ToolUse;
            }
            // Calls without an id get one made up.
            let mut got = summarize(&decoded);
            for (g, w) in got.blocks.iter_mut().zip(&want.blocks) {
                if let (Block::Call(_, gid, ..), Block::Call(_, wid, ..)) = (g, w) {
                    if wid.is_empty() {
                        assert!(gid.starts_with("call_"), "{name}");
                        gid.clear();
                    }
                }
            }
            assert_eq!(got, want, "{name}");
            assert!(matches!(decoded.first(), Some(StreamEvent::Start { model, .. }) if model == "client-model"));
        }
    }

    #[test]
    fn encoder_grammar_details() {
        let bytes = encode(&sequences()[0].1);
        let events = sse::parse(&bytes).unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let data: Vec<Value> = events.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
        assert_eq!(data[0]["response"]["id"], "resp_msg_01XYZ");
        assert_eq!(data[0]["response"]["status"], "in_progress");
        assert_eq!(data[0]["response"]["model"], "client-model");
        assert_eq!(data[8]["item"]["encrypted_content"], "EqQBsig==");
        assert_eq!(data[8]["item"]["summary"], json!([{"type": "summary_text", "text": "Let me think."}]));
        assert_eq!(data[11]["logprobs"], json!([]));
        assert_eq!(data[16]["item"]["arguments"], "");
        assert_eq!(data[16]["item"]["call_id"], "toolu_1");
        assert_eq!(data[20]["item"]["arguments"], "{\"city\":\"Paris\"}");
        let done = &data[25]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"].as_array().unwrap().len(), 4);
        assert_eq!(done["usage"]["input_tokens"], 12 + 56);
        assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 56);
        assert_eq!(done["usage"]["total_tokens"], 12 + 56 + 34);

        let bytes = encode(&[text("x"), StreamEvent::Finish(FinishReason::Length)]);
        let last = sse::parse(&bytes).unwrap().pop().unwrap();
        assert_eq!(last.event.as_deref(), Some("response.incomplete"));
        let v: Value = serde_json::from_str(&last.data).unwrap();
        assert_eq!(v["response"]["incomplete_details"]["reason"], "max_output_tokens");
    }

    #[test]
    fn encoder_error_ends_the_stream_and_decodes_to_the_status() {
        let cases = [(400, 400), (402, 429), (429, 429), (500, 500), (503, 503), (529, 503), (502, 500)];
        for (prefix_len, (status, decoded_status)) in cases.into_iter().enumerate() {
            let prefix: Vec<StreamEvent> = sequences()[0].1.iter().take(prefix_len * 2).cloned().collect();
            let mut enc = encoder("m");
            let mut out = Vec::new();
            for ev in &prefix {
                enc.event(ev, &mut out);
            }
            enc.error(status, "upstream went away", &mut out);
            // Nothing follows the error.
            enc.event(&text("late"), &mut out);
            enc.finish(&mut out);
            enc.error(500, "again", &mut out);
            validate_stream(&out).unwrap_or_else(|e| panic!("{status}: {e}"));
            let last = sse::parse(&out).unwrap().pop().unwrap();
            assert_eq!(last.event.as_deref(), Some("response.failed"));
            let err = decode(&out).unwrap_err();
            assert_eq!(err.status, decoded_status, "{status}");
            assert!(err.message.contains("upstream went away"));
        }
    }

    #[test]
    fn random_event_sequences_always_validate() {
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..400 {
            let mut enc = encoder("m");
            let mut out = Vec::new();
            for _ in 0..rng.usize(0..30) {
                let ev = match rng.u8(0..12) {
                    0 => StreamEvent::Start { id: ["", "x", "resp_y"][rng.usize(0..3)].into(), model: "u".into() },
                    1 => text(["", "a", "bc"][rng.usize(0..3)]),
                    2 => think(["", "t", "uv"][rng.usize(0..3)]),
                    3 => StreamEvent::ThinkingSignature("sig".into()),
                    4 => StreamEvent::RedactedThinking("red".into()),
                    5 => tstart(rng.u32(0..3), "id", "name"),
                    6 | 7 => targs(rng.u32(0..3), ["", "{", "}", "\"x\""][rng.usize(0..4)]),
                    8 => StreamEvent::Usage(usage(rng.u64(..), rng.u64(..), rng.u64(..), rng.u64(..))),
                    9 => StreamEvent::Finish(
                        [FinishReason::Stop, FinishReason::Length, FinishReason::ToolUse, FinishReason::ContentFilter]
                            [rng.usize(0..4)],
                    ),
                    _ => text("z"),
                };
                enc.event(&ev, &mut out);
            }
            if rng.bool() {
                enc.finish(&mut out);
            } else {
                enc.error(rng.u16(400..600), "e", &mut out);
            }
            validate_stream(&out).unwrap_or_else(|e| panic!("round {round}: {e}\n{}", String::from_utf8_lossy(&out)));
            let _ = decode(&out);
        }
    }

    // ---- validate_stream ---------------------------------------------------------------------

    fn reframe(events: &[SseEvent], renumber: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, ev) in events.iter().enumerate() {
            let mut data = ev.data.clone();
            if renumber {
                if let Ok(mut v) = serde_json::from_str::<Value>(&data) {
                    v["sequence_number"] = json!(n);
                    data = v.to_string();
                }
            }
            sse::frame(&mut out, ev.event.as_deref(), &data);
        }
        out
    }

    fn set(ev: &mut SseEvent, key: &str, value: Value) {
        let mut v: Value = serde_json::from_str(&ev.data).unwrap();
        v[key] = value;
        ev.data = v.to_string();
    }

    #[test]
    fn validate_rejects_broken_streams() {
        let good = sse::parse(&encode(&sequences()[0].1)).unwrap();
        assert!(validate_stream(&reframe(&good, true)).is_ok());
        let find = |name: &str| good.iter().position(|e| e.event.as_deref() == Some(name)).unwrap();
        type Mutation = Box<dyn Fn(&mut Vec<SseEvent>)>;
        let text_delta = find("response.output_text.delta");
        let first_added = find("response.output_item.added");
        let cases: Vec<(&str, bool, Mutation, &str)> = vec![
            ("missing terminal", true, Box::new(|e| drop(e.pop())), "ends without"),
            ("empty stream", true, Box::new(|e| e.clear()), "ends without"),
            ("bad JSON", true, Box::new(move |e| e[text_delta].data = "{oops".into()), "not JSON"),
            ("bad index", true, Box::new(move |e| set(&mut e[first_added], "output_index", json!(3))), "output_index"),
            (
                "delta before its item",
                true,
                Box::new(move |e| {
                    let d = e.remove(text_delta);
                    e.insert(2, d);
                }),
                "never added",
            ),
            ("sequence gap", false, Box::new(move |e| drop(e.remove(text_delta))), "sequence_number"),
            (
                "item not done before completed",
                true,
                Box::new(|e| {
                    let i = e.iter().rposition(|x| x.event.as_deref() == Some("response.output_item.done")).unwrap();
                    e.remove(i);
                }),
                "not done",
            ),
            ("event after terminal", true, Box::new(|e| e.push(e[2].clone())), "follows the terminal"),
            (
                "type differs from event name",
                true,
                Box::new(move |e| e[text_delta].event = Some("response.refusal.delta".into())),
                "differs",
            ),
            ("missing event name", true, Box::new(move |e| e[text_delta].event = None), "no event name"),
            ("not starting with created", true, Box::new(|e| drop(e.remove(0))), "starts with"),
            (
                "delta after its part closed",
                true,
                Box::new(move |e| {
                    let d = e[text_delta].clone();
                    let i = e.iter().position(|x| x.event.as_deref() == Some("response.content_part.done")).unwrap();
                    e.insert(i + 1, d);
                }),
                "not open",
            ),
            (
                "unknown event",
                true,
                Box::new(move |e| {
                    e[text_delta].event = Some("response.bogus".into());
                    set(&mut e[text_delta], "type", json!("response.bogus"));
                }),
                "unknown event",
            ),
            (
                "wrong terminal status",
                true,
                Box::new(|e| {
                    let last = e.len() - 1;
                    let mut v: Value = serde_json::from_str(&e[last].data).unwrap();
                    v["response"]["status"] = json!("in_progress");
                    e[last].data = v.to_string();
                }),
                "status",
            ),
        ];
        for (name, renumber, mutate, want) in cases {
            let mut events = good.clone();
            mutate(&mut events);
            let err = validate_stream(&reframe(&events, renumber)).expect_err(name);
            assert!(err.contains(want), "{name}: {err}");
        }
        assert!(validate_stream(b"event: response.created\ndata: {}").is_err());
    }

    // ---- decoder -----------------------------------------------------------------------------

    #[test]
    fn decodes_a_real_upstream_stream() {
        validate_stream(UPSTREAM_STREAM.as_bytes()).unwrap();
        let got = decode(UPSTREAM_STREAM.as_bytes()).unwrap();
        let want = vec![
            StreamEvent::Start { id: "resp_68f1c2a9b0d88193a1b2c3d4e5f60718".into(), model: "gpt-5-2025-08-07".into() },
            think("**Checking the weather**\n\n"),
            think("I need both cities."),
            think("\n\n"),
            think("Calling the tool twice."),
            StreamEvent::ThinkingSignature("gAAAAABo8sEnc_Reasoning_Blob==".into()),
            text("Checking "),
            text("both "),
            text("cities."),
            tstart(0, "call_AbC123", "get_weather"),
            targs(0, "{\"city\":"),
            targs(0, "\"Paris\"}"),
            tstart(1, "call_DeF456", "get_weather"),
            targs(1, "{\"city\":\"Ber"),
            targs(1, "lin\"}"),
            StreamEvent::Usage(usage(176, 310, 1024, 256)),
            StreamEvent::Finish(FinishReason::ToolUse),
        ];
        assert_eq!(got, want);
        // The thinking text equals the done item's summaries joined, so signatures stay valid.
        let thinking: String =
            got.iter().filter_map(|e| if let StreamEvent::Thinking(t) = e { Some(t.as_str()) } else { None }).collect();
        assert_eq!(thinking, "**Checking the weather**\n\nI need both cities.\n\nCalling the tool twice.");
    }

    #[test]
    fn truncated_upstream_streams_error() {
        let events = sse::parse(UPSTREAM_STREAM.as_bytes()).unwrap();
        for cut in 0..events.len() {
            let mut dec = decoder();
            for ev in &events[..cut] {
                dec.feed(ev.event.as_deref(), &ev.data).unwrap();
            }
            let err = dec.end().unwrap_err();
            assert_eq!(err.status, 502, "cut at {cut}");
        }
    }

    #[test]
    fn decoder_error_events_map_to_statuses() {
        let cases: Vec<(Option<&str>, Value, u16)> = vec![
            (
                Some("error"),
                json!({"type": "error", "code": "rate_limit_exceeded", "message": "Rate limit reached", "param": null, "sequence_number": 2}),
                429,
            ),
            (Some("error"), json!({"type": "error", "code": "insufficient_quota", "message": "quota"}), 429),
            (Some("error"), json!({"type": "error", "code": "server_error", "message": "oops"}), 500),
            (Some("error"), json!({"type": "error", "code": "invalid_prompt", "message": "bad"}), 400),
            (Some("error"), json!({"type": "error", "code": "context_length_exceeded", "message": "long"}), 400),
            (Some("error"), json!({"type": "error", "code": "server_is_overloaded", "message": "busy"}), 503),
            (Some("error"), json!({"type": "error", "code": "brand_new_code", "message": "?"}), 502),
            (
                Some("error"),
                json!({"type": "error", "error": {"type": "server_error", "code": null, "message": "nested"}}),
                500,
            ),
            (None, json!({"error": {"type": "invalid_request_error", "code": null, "message": "chat-style"}}), 400),
            (
                Some("response.failed"),
                json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "rate_limit_exceeded", "message": "slow"}}}),
                429,
            ),
            (
                Some("response.failed"),
                json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "x"}}}),
                500,
            ),
            (
                Some("response.failed"),
                json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "invalid_image_url", "message": "x"}}}),
                400,
            ),
            (
                Some("response.failed"),
                json!({"type": "response.failed", "response": {"status": "failed", "error": null}}),
                502,
            ),
        ];
        for (event, data, status) in cases {
            let mut dec = decoder();
            dec.feed(Some("response.created"), r#"{"type":"response.created","response":{"id":"resp_1","model":"m"}}"#)
                .unwrap();
            let err = dec.feed(event, &data.to_string()).expect_err(&data.to_string());
            assert_eq!(err.status, status, "{data}");
            // After an error the stream is over: end() does not report a second error.
            assert!(dec.end().unwrap().is_empty());
        }
    }

    #[test]
    fn decoder_edge_cases() {
        // Unknown events and keepalives are ignored; non-JSON data is a 502.
        let mut dec = decoder();
        assert!(dec.feed(Some("keepalive"), r#"{"type":"keepalive","sequence_number":0}"#).unwrap().is_empty());
        assert!(dec
            .feed(Some("response.output_text.annotation.added"), r#"{"type":"response.output_text.annotation.added"}"#)
            .unwrap()
            .is_empty());
        assert!(dec.feed(None, "[DONE]").unwrap().is_empty());
        assert_eq!(dec.feed(Some("x"), "not json").unwrap_err().status, 502);

        // A server that only sends the final response object.
        let mut dec = decoder();
        let completed = json!({"type": "response.completed", "response": {"status": "completed", "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}], "encrypted_content": "enc"},
            {"type": "message", "content": [{"type": "output_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
        ], "usage": {"input_tokens": 3, "output_tokens": 4}}});
        let got = dec.feed(None, &completed.to_string()).unwrap();
        assert_eq!(
            got,
            vec![
                think("hm"),
                StreamEvent::ThinkingSignature("enc".into()),
                text("hi"),
                tstart(0, "c", "f"),
                targs(0, "{}"),
                StreamEvent::Usage(usage(3, 4, 0, 0)),
                StreamEvent::Finish(FinishReason::ToolUse),
            ]
        );

        // Arguments only in the done events; text only in the done item; refusal; incomplete.
        let mut dec = decoder();
        let feed = |dec: &mut Decoder, v: Value| dec.feed(None, &v.to_string()).unwrap();
        let mut got = Vec::new();
        got.extend(feed(&mut dec, json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": ""}})));
        got.extend(feed(&mut dec, json!({"type": "response.function_call_arguments.done", "output_index": 0, "item_id": "fc_1", "arguments": "{\"a\":1}"})));
        got.extend(feed(&mut dec, json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"}})));
        got.extend(feed(&mut dec, json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "message", "id": "m1", "content": []}})));
        got.extend(feed(
            &mut dec,
            json!({"type": "response.refusal.delta", "item_id": "m1", "output_index": 1, "delta": "no"}),
        ));
        got.extend(feed(&mut dec, json!({"type": "response.output_item.done", "output_index": 1, "item": {"type": "message", "id": "m1", "content": [{"type": "refusal", "refusal": "no"}]}})));
        got.extend(feed(&mut dec, json!({"type": "response.output_item.done", "output_index": 2, "item": {"type": "message", "id": "m2", "content": [{"type": "output_text", "text": "late"}]}})));
        got.extend(feed(&mut dec, json!({"type": "response.output_item.done", "output_index": 3, "item": {"type": "reasoning", "id": "r", "summary": [], "encrypted_content": "ailurus-redacted:abc"}})));
        got.extend(feed(&mut dec, json!({"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}})));
        assert_eq!(
            got,
            vec![
                tstart(0, "c1", "f"),
                targs(0, "{\"a\":1}"),
                text("no"),
                text("late"),
                StreamEvent::RedactedThinking("abc".into()),
                StreamEvent::Finish(FinishReason::ContentFilter),
            ]
        );
        // Events after the terminal one are ignored.
        assert!(dec.feed(None, r#"{"type":"response.output_text.delta","delta":"x"}"#).unwrap().is_empty());

        let mut dec = decoder();
        let got = dec
            .feed(
                None,
                r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":"max_output_tokens"}}}"#,
            )
            .unwrap();
        assert_eq!(got, vec![StreamEvent::Finish(FinishReason::Length)]);
    }

    // ---- garbage never panics ----------------------------------------------------------------

    fn poke(bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let _ = parse_request(bytes, &ParseContext::default());
        let _ = parse_response(bytes);
        let _ = validate_stream(bytes);
        let mut dec = decoder();
        for name in [None, Some("response.completed"), Some("error")] {
            let _ = dec.feed(name, &text);
        }
        let _ = dec.end();
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(42);
        let alphabet = b"{}[]\":,0123456789.-eE truefalsnl\\\n\rabc_type";
        for _ in 0..2000 {
            let len = rng.usize(0..200);
            let bytes: Vec<u8> = if rng.bool() {
                (0..len).map(|_| rng.u8(..)).collect()
            } else {
                (0..len).map(|_| alphabet[rng.usize(0..alphabet.len())]).collect()
            };
            poke(&bytes);
        }
    }

    #[test]
    fn deep_nesting_and_huge_numbers_never_panic() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        poke(deep.as_bytes());
        let deep_obj = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
        poke(deep_obj.as_bytes());
        let nested =
            format!(r#"{{"model":"m","input":[{{"role":"user","content":{}{}}}]}}"#, "[".repeat(120), "]".repeat(120));
        assert_eq!(parse(&nested).unwrap_err().status, 400);
        for n in ["1e400", "-1e400", "18446744073709551616", "-0", "1.5", "NaN"] {
            poke(format!(r#"{{"model":"m","input":"x","max_output_tokens":{n},"temperature":{n}}}"#).as_bytes());
        }
        let huge = json!({"type": "response.completed", "response": {"usage": {
            "input_tokens": u64::MAX, "input_tokens_details": {"cached_tokens": u64::MAX},
            "output_tokens": u64::MAX, "output_tokens_details": {"reasoning_tokens": u64::MAX}}}});
        let events = decoder().feed(None, &huge.to_string()).unwrap();
        let mut enc = encoder("m");
        let mut out = Vec::new();
        for ev in &events {
            enc.event(ev, &mut out);
        }
        enc.finish(&mut out);
        validate_stream(&out).unwrap();
        let big = Usage {
            input_tokens: u64::MAX,
            cache_read_tokens: u64::MAX,
            cache_write_tokens: u64::MAX,
            ..Usage::default()
        };
        let resp = ChatResponse {
            id: String::new(),
            model: "m".into(),
            content: vec![],
            finish: FinishReason::Stop,
            usage: big,
        };
        assert!(parse_response(&render_response(&resp, "m")).is_ok());
    }

    #[test]
    fn wrong_json_types_never_panic() {
        let wrong = [
            json!(null),
            json!(1),
            json!(-1),
            json!(1.5e300),
            json!("s"),
            json!([]),
            json!({}),
            json!(true),
            json!([{}]),
            json!([1, "x", null]),
        ];
        let base: Value = serde_json::from_str(CODEX).unwrap();
        // Every top-level field, and every field of every input item and of every tool.
        let mut paths: Vec<Vec<Value>> = base.as_object().unwrap().keys().map(|k| vec![json!(k)]).collect();
        for (i, item) in base["input"].as_array().unwrap().iter().enumerate() {
            for k in item.as_object().unwrap().keys() {
                paths.push(vec![json!("input"), json!(i), json!(k)]);
            }
            paths.push(vec![json!("input"), json!(i)]);
        }
        for (i, tool) in base["tools"].as_array().unwrap().iter().enumerate() {
            for k in tool.as_object().unwrap().keys() {
                paths.push(vec![json!("tools"), json!(i), json!(k)]);
            }
        }
        for path in &paths {
            for w in &wrong {
                let mut req = base.clone();
                let mut slot = &mut req;
                for p in path {
                    slot = match p {
                        Value::String(k) => &mut slot[k.as_str()],
                        Value::Number(i) => &mut slot[i.as_u64().unwrap() as usize],
                        _ => unreachable!(),
                    };
                }
                *slot = w.clone();
                if let Err(e) = parse(&req.to_string()) {
                    assert_eq!(e.status, 400, "{path:?} = {w}: {e}");
                }
            }
        }
        // Upstream events with wrong field types.
        let kinds = [
            "response.created",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_part.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.completed",
            "response.incomplete",
            "response.failed",
            "error",
        ];
        for kind in kinds {
            for w in &wrong {
                for key in [
                    "response",
                    "item",
                    "output_index",
                    "item_id",
                    "delta",
                    "arguments",
                    "summary_index",
                    "code",
                    "error",
                ] {
                    let mut dec = decoder();
                    let _ = dec.feed(None, r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"function_call","id":"fc","call_id":"c","name":"f"}}"#);
                    let mut data = json!({"type": kind, "output_index": 0, "item_id": "fc"});
                    data[key] = w.clone();
                    let _ = dec.feed(Some(kind), &data.to_string());
                    let item = json!({"type": kind, "item": {"type": w, "summary": w, "content": w, "arguments": w, "encrypted_content": w}, "response": {"output": w, "usage": w, "error": w, "incomplete_details": w}});
                    let _ = dec.feed(Some(kind), &item.to_string());
                    let _ = dec.end();
                    let _ = parse_response(
                        json!({"status": w, "output": [{"type": "message", "content": w}], "usage": w})
                            .to_string()
                            .as_bytes(),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod codex_defaults {
    use super::*;

    /// Codex CLI's default request (its multi-agent `namespace` tool group and hosted
    /// `web_search`) parses; namespace calls render back with their namespace.
    #[test]
    fn codex_default_tools_parse_and_round_trip() {
        let body = include_bytes!("../../tests/fixtures/clients/codex_request.json");
        let req = parse_request(body, &ParseContext::default()).expect("codex default request parses");
        assert!(
            req.tools.iter().any(|t| t.name == "multi_agent_v1__close_agent"),
            "{:?}",
            req.tools.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        assert!(!req.tools.iter().any(|t| t.name.starts_with("web_search")));
        let item = function_call_item("fc_1", "call_1", "multi_agent_v1__close_agent", "{}", "completed");
        assert_eq!((item["namespace"].as_str(), item["name"].as_str()), (Some("multi_agent_v1"), Some("close_agent")));
        let history = serde_json::json!({"model": "m", "input": [
            {"type": "function_call", "call_id": "c1", "namespace": "multi_agent_v1", "name": "close_agent", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"}]});
        let req = parse_request(history.to_string().as_bytes(), &ParseContext::default()).unwrap();
        assert!(
            matches!(&req.messages[0].content[0], Part::ToolCall { name, .. } if name == "multi_agent_v1__close_agent")
        );
    }
}
