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
//! | canonical `Thinking.signature`, `RedactedThinking` (response, stream) | lost: Chat has no slot; thinking text goes to `reasoning_content` (DeepSeek style) |
//! | `Thinking` / `RedactedThinking` in history (build_request) | dropped: OpenAI-compatible upstreams reject or ignore them, DeepSeek requires they are not sent back |
//! | `ToolCall.signature` (Gemini) (build_request, response, stream) | lost |
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

use super::walk::{bad, Obj};
use super::{sse, FormatError, ParseContext, StreamDecoder, StreamEncoder};
use crate::protocol::canonical::{
    ChatRequest, ChatResponse, FinishReason, ImageSource, Message, Part, ResponseFormat, Role, StreamEvent,
    ThinkingConfig, ToolChoice, ToolDef, Usage,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// A field, with JSON `null` treated as absent.
fn get<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_str<'a>(obj: &'a Obj, key: &str, path: &str) -> Result<Option<&'a str>, FormatError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(format!("{path} must be a string, not {}", type_name(other)))),
    }
}

fn req_str<'a>(obj: &'a Obj, key: &str, path: &str) -> Result<&'a str, FormatError> {
    opt_str(obj, key, path)?.ok_or_else(|| bad(format!("{path} is required")))
}

fn opt_bool(obj: &Obj, key: &str) -> Result<Option<bool>, FormatError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!("{key} must be a boolean, not {}", type_name(other)))),
    }
}

fn opt_f64(obj: &Obj, key: &str) -> Result<Option<f64>, FormatError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or_else(|| bad(format!("{key} is out of range")))
        }
        Some(other) => Err(bad(format!("{key} must be a number, not {}", type_name(other)))),
    }
}

fn opt_u32(obj: &Obj, key: &str) -> Result<Option<u32>, FormatError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("{key} must be a non-negative integer below 2^32"))),
    }
}

fn opt_obj<'a>(obj: &'a Obj, key: &str, path: &str) -> Result<Option<&'a Obj>, FormatError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(bad(format!("{path} must be an object, not {}", type_name(other)))),
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", nuid::next())
}

/// A client-visible completion id: `chatcmpl-…`.
fn chat_id(id: &str) -> String {
    if id.is_empty() {
        new_id("chatcmpl-")
    } else if id.starts_with("chatcmpl-") {
        id.to_string()
    } else {
        format!("chatcmpl-{id}")
    }
}

/// `data:<media>;base64,<data>` → (media, data).
fn split_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    let media = header.strip_suffix(";base64")?;
    if media.is_empty() {
        return None;
    }
    Some((media, data))
}

// ---------------------------------------------------------------------------------------
// parse_request: client body → canonical
// ---------------------------------------------------------------------------------------

/// Parse a client's `POST /v1/chat/completions` body.
pub fn parse_request(body: &[u8], ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let obj = root.as_object().ok_or_else(|| bad("request body must be a JSON object"))?;
    reject_unsupported(obj)?;

    let model = match &ctx.model {
        Some(m) => m.clone(),
        None => req_str(obj, "model", "model")?.to_string(),
    };

    let msgs = match get(obj, "messages") {
        Some(Value::Array(a)) => a,
        Some(other) => return Err(bad(format!("messages must be an array, not {}", type_name(other)))),
        None => return Err(bad("messages is required")),
    };
    if msgs.is_empty() {
        return Err(bad("messages must not be empty"));
    }
    let mut conv = Conversation::default();
    for (i, m) in msgs.iter().enumerate() {
        conv.push(m, i)?;
    }

    let max_tokens = match opt_u32(obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => opt_u32(obj, "max_tokens")?,
    };
    let stop = match get(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_str().map(str::to_string).ok_or_else(|| bad(format!("stop[{i}] must be a string"))))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad(format!("stop must be a string or an array, not {}", type_name(other)))),
    };
    let tools = parse_tools(obj)?;
    let tool_choice = parse_tool_choice(obj)?;
    // Ignored, but only when it has the shape the API defines.
    if let Some(v) = get(obj, "stream_options").filter(|v| !v.is_object()) {
        return Err(bad(format!("stream_options must be an object, not {}", type_name(v))));
    }
    let user = match opt_str(obj, "user", "user")? {
        Some(u) => Some(u.to_string()),
        None => opt_str(obj, "safety_identifier", "safety_identifier")?.map(str::to_string),
    };

    Ok(ChatRequest {
        model,
        system: if conv.system.is_empty() { None } else { Some(conv.system.join("\n\n")) },
        messages: conv.messages,
        max_tokens,
        temperature: opt_f64(obj, "temperature")?,
        top_p: opt_f64(obj, "top_p")?,
        stop,
        stream: opt_bool(obj, "stream")?.unwrap_or(false),
        tools,
        tool_choice,
        parallel_tool_calls: opt_bool(obj, "parallel_tool_calls")?,
        thinking: parse_thinking(obj)?,
        response_format: parse_response_format(obj)?,
        user,
    })
}

/// Request fields that ask for something the gateway cannot deliver.
fn reject_unsupported(obj: &Obj) -> Result<(), FormatError> {
    if let Some(n) = get(obj, "n") {
        if n.as_u64() != Some(1) {
            return Err(bad("n: only one choice (n = 1) is supported"));
        }
    }
    match get(obj, "logprobs") {
        None | Some(Value::Bool(false)) => {}
        Some(_) => return Err(bad("logprobs is not supported")),
    }
    match get(obj, "top_logprobs") {
        None => {}
        Some(v) if v.as_u64() == Some(0) => {}
        Some(_) => return Err(bad("top_logprobs is not supported")),
    }
    for key in ["audio", "prediction", "web_search_options"] {
        if get(obj, key).is_some() {
            return Err(bad(format!("{key} is not supported")));
        }
    }
    for key in ["functions", "function_call"] {
        if get(obj, key).is_some() {
            return Err(bad(format!("{key} (legacy function calling) is not supported; use tools and tool_choice")));
        }
    }
    match get(obj, "modalities") {
        Some(Value::Array(a)) if a.iter().any(|m| m.as_str() == Some("audio")) => {
            return Err(bad("modalities \"audio\" is not supported"));
        }
        None | Some(Value::Array(_)) => {}
        Some(other) => return Err(bad(format!("modalities must be an array, not {}", type_name(other)))),
    }
    Ok(())
}

#[derive(Default)]
struct Conversation {
    system: Vec<String>,
    messages: Vec<Message>,
    /// The last canonical message is a User message built from `tool` messages, and no user
    /// message has been merged into it yet.
    tool_group_open: bool,
    /// Tool call id → tool name, from assistant `tool_calls`.
    call_names: HashMap<String, String>,
}

impl Conversation {
    fn push(&mut self, m: &Value, i: usize) -> Result<(), FormatError> {
        let path = format!("messages[{i}]");
        let obj = m.as_object().ok_or_else(|| bad(format!("{path} must be an object")))?;
        let role = req_str(obj, "role", &format!("{path}.role"))?;
        match role {
            "system" | "developer" => {
                let text = text_parts(get(obj, "content"), &format!("{path}.content"), false)?.join("\n\n");
                if self.messages.is_empty() {
                    self.system.push(text);
                } else {
                    self.close_group();
                    self.messages.push(Message::text(Role::System, text));
                }
            }
            "user" => {
                let content = user_content(get(obj, "content"), &path)?;
                match self.messages.last_mut() {
                    Some(last) if self.tool_group_open => last.content.extend(content),
                    _ => self.messages.push(Message { role: Role::User, content }),
                }
                self.tool_group_open = false;
            }
            "assistant" => {
                let content = self.assistant_content(obj, &path)?;
                self.close_group();
                self.messages.push(Message { role: Role::Assistant, content });
            }
            "tool" => {
                let call_id = req_str(obj, "tool_call_id", &format!("{path}.tool_call_id"))?.to_string();
                let content = text_parts(get(obj, "content"), &format!("{path}.content"), true)?
                    .into_iter()
                    .map(Part::text)
                    .collect();
                let part = Part::ToolResult {
                    name: self.call_names.get(&call_id).cloned(),
                    call_id,
                    content,
                    is_error: false,
                };
                match self.messages.last_mut() {
                    Some(last) if self.tool_group_open => last.content.push(part),
                    _ => self.messages.push(Message { role: Role::User, content: vec![part] }),
                }
                self.tool_group_open = true;
            }
            "function" => {
                return Err(bad(format!(
                    "{path}.role \"function\" (legacy function calling) is not supported; use tool messages"
                )))
            }
            other => {
                return Err(bad(format!(
                    "{path}.role {other:?} is not one of system, developer, user, assistant, tool"
                )))
            }
        }
        Ok(())
    }

    fn close_group(&mut self) {
        self.tool_group_open = false;
    }

    fn assistant_content(&mut self, obj: &Obj, path: &str) -> Result<Vec<Part>, FormatError> {
        let mut parts = Vec::new();
        if get(obj, "audio").is_some() {
            return Err(bad(format!("{path}.audio is not supported")));
        }
        if get(obj, "function_call").is_some() {
            return Err(bad(format!(
                "{path}.function_call (legacy function calling) is not supported; use tool_calls"
            )));
        }
        let reasoning = match opt_str(obj, "reasoning_content", &format!("{path}.reasoning_content"))? {
            Some(r) => Some(r),
            None => match get(obj, "reasoning") {
                Some(Value::String(r)) => Some(r.as_str()),
                _ => None,
            },
        };
        if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
            parts.push(Part::Thinking { text: r.to_string(), signature: None });
        }
        match get(obj, "content") {
            None => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => parts.push(Part::text(s.clone())),
            Some(Value::Array(items)) => {
                for (j, item) in items.iter().enumerate() {
                    let ppath = format!("{path}.content[{j}]");
                    let pobj = item.as_object().ok_or_else(|| bad(format!("{ppath} must be an object")))?;
                    let text = match req_str(pobj, "type", &format!("{ppath}.type"))? {
                        "text" => req_str(pobj, "text", &format!("{ppath}.text"))?,
                        "refusal" => req_str(pobj, "refusal", &format!("{ppath}.refusal"))?,
                        other => return Err(bad(format!("{ppath}.type {other:?} is not supported"))),
                    };
                    if !text.is_empty() {
                        parts.push(Part::text(text));
                    }
                }
            }
            Some(other) => {
                return Err(bad(format!("{path}.content must be a string, an array or null, not {}", type_name(other))))
            }
        }
        if let Some(r) = opt_str(obj, "refusal", &format!("{path}.refusal"))? {
            if !r.is_empty() {
                parts.push(Part::text(r));
            }
        }
        match get(obj, "tool_calls") {
            None => {}
            Some(Value::Array(calls)) => {
                for (j, call) in calls.iter().enumerate() {
                    let part = parse_tool_call(call, &format!("{path}.tool_calls[{j}]"))?;
                    if let Part::ToolCall { id, name, .. } = &part {
                        self.call_names.insert(id.clone(), name.clone());
                    }
                    parts.push(part);
                }
            }
            Some(other) => return Err(bad(format!("{path}.tool_calls must be an array, not {}", type_name(other)))),
        }
        if parts.is_empty() {
            parts.push(Part::text(""));
        }
        Ok(parts)
    }
}

fn parse_tool_call(call: &Value, path: &str) -> Result<Part, FormatError> {
    let obj = call.as_object().ok_or_else(|| bad(format!("{path} must be an object")))?;
    if let Some(t) = opt_str(obj, "type", &format!("{path}.type"))? {
        if t != "function" {
            return Err(bad(format!("{path}.type {t:?} is not supported (only \"function\")")));
        }
    }
    let id = req_str(obj, "id", &format!("{path}.id"))?.to_string();
    let func = opt_obj(obj, "function", &format!("{path}.function"))?
        .ok_or_else(|| bad(format!("{path}.function is required")))?;
    let name = req_str(func, "name", &format!("{path}.function.name"))?.to_string();
    let arguments = match get(func, "arguments") {
        None => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(other) => {
            return Err(bad(format!("{path}.function.arguments must be a string, not {}", type_name(other))))
        }
    };
    Ok(Part::ToolCall { id, name, arguments, signature: None })
}

/// Content that may only hold text: a string, or an array of `text` parts (null → nothing
/// when `allow_null`).
fn text_parts(v: Option<&Value>, path: &str, allow_null: bool) -> Result<Vec<String>, FormatError> {
    match v {
        None if allow_null => Ok(Vec::new()),
        None => Err(bad(format!("{path} is required"))),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| {
                let ppath = format!("{path}[{j}]");
                let pobj = item.as_object().ok_or_else(|| bad(format!("{ppath} must be an object")))?;
                match req_str(pobj, "type", &format!("{ppath}.type"))? {
                    "text" => Ok(req_str(pobj, "text", &format!("{ppath}.text"))?.to_string()),
                    other => Err(bad(format!("{ppath}.type {other:?} is not supported here (only \"text\")"))),
                }
            })
            .collect(),
        Some(other) => Err(bad(format!("{path} must be a string or an array, not {}", type_name(other)))),
    }
}

fn user_content(v: Option<&Value>, path: &str) -> Result<Vec<Part>, FormatError> {
    let items = match v {
        None => return Err(bad(format!("{path}.content is required"))),
        Some(Value::String(s)) => return Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(bad(format!("{path}.content must be a string or an array, not {}", type_name(other))))
        }
    };
    let mut parts = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let ppath = format!("{path}.content[{j}]");
        let pobj = item.as_object().ok_or_else(|| bad(format!("{ppath} must be an object")))?;
        match req_str(pobj, "type", &format!("{ppath}.type"))? {
            "text" => parts.push(Part::text(req_str(pobj, "text", &format!("{ppath}.text"))?)),
            "image_url" => {
                let url = match get(pobj, "image_url") {
                    Some(Value::String(s)) => s.as_str(),
                    Some(Value::Object(o)) => req_str(o, "url", &format!("{ppath}.image_url.url"))?,
                    Some(other) => {
                        return Err(bad(format!("{ppath}.image_url must be an object, not {}", type_name(other))))
                    }
                    None => return Err(bad(format!("{ppath}.image_url is required"))),
                };
                let source = match split_data_url(url) {
                    Some((media_type, data)) => {
                        ImageSource::Base64 { media_type: media_type.to_string(), data: data.to_string() }
                    }
                    None => ImageSource::Url { url: url.to_string() },
                };
                parts.push(Part::Image { source });
            }
            other => return Err(bad(format!("{ppath}.type {other:?} is not supported"))),
        }
    }
    Ok(parts)
}

fn parse_tools(obj: &Obj) -> Result<Vec<ToolDef>, FormatError> {
    let items = match get(obj, "tools") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(bad(format!("tools must be an array, not {}", type_name(other)))),
    };
    let mut tools = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tobj = t.as_object().ok_or_else(|| bad(format!("{path} must be an object")))?;
        let kind = req_str(tobj, "type", &format!("{path}.type"))?;
        if kind != "function" {
            return Err(bad(format!("{path}.type {kind:?} is not supported (only \"function\")")));
        }
        let func = opt_obj(tobj, "function", &format!("{path}.function"))?
            .ok_or_else(|| bad(format!("{path}.function is required")))?;
        let name = req_str(func, "name", &format!("{path}.function.name"))?.to_string();
        let description = opt_str(func, "description", &format!("{path}.function.description"))?.map(str::to_string);
        let parameters = match get(func, "parameters") {
            None => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(other) => {
                return Err(bad(format!("{path}.function.parameters must be an object, not {}", type_name(other))))
            }
        };
        tools.push(ToolDef { name, description, parameters });
    }
    Ok(tools)
}

fn parse_tool_choice(obj: &Obj) -> Result<Option<ToolChoice>, FormatError> {
    match get(obj, "tool_choice") {
        None => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            other => Err(bad(format!("tool_choice {other:?} is not one of auto, none, required"))),
        },
        Some(Value::Object(o)) => {
            let kind = req_str(o, "type", "tool_choice.type")?;
            if kind != "function" {
                return Err(bad(format!("tool_choice.type {kind:?} is not supported (only \"function\")")));
            }
            let func = opt_obj(o, "function", "tool_choice.function")?
                .ok_or_else(|| bad("tool_choice.function is required"))?;
            let name = req_str(func, "name", "tool_choice.function.name")?.to_string();
            Ok(Some(ToolChoice::Tool { name }))
        }
        Some(other) => Err(bad(format!("tool_choice must be a string or an object, not {}", type_name(other)))),
    }
}

fn parse_thinking(obj: &Obj) -> Result<Option<ThinkingConfig>, FormatError> {
    if let Some(effort) = opt_str(obj, "reasoning_effort", "reasoning_effort")? {
        let enabled = effort != "none";
        return Ok(Some(ThinkingConfig {
            enabled,
            budget_tokens: None,
            effort: Some(effort.to_string()),
            include_thoughts: enabled,
        }));
    }
    // Qwen / DashScope extension (sent through the SDK's `extra_body`).
    if let Some(enabled) = opt_bool(obj, "enable_thinking")? {
        return Ok(Some(ThinkingConfig {
            enabled,
            budget_tokens: if enabled { opt_u32(obj, "thinking_budget")? } else { None },
            effort: None,
            include_thoughts: enabled,
        }));
    }
    Ok(None)
}

fn parse_response_format(obj: &Obj) -> Result<Option<ResponseFormat>, FormatError> {
    let Some(rf) = opt_obj(obj, "response_format", "response_format")? else {
        return Ok(None);
    };
    match req_str(rf, "type", "response_format.type")? {
        "text" => Ok(Some(ResponseFormat::Text)),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let js = opt_obj(rf, "json_schema", "response_format.json_schema")?
                .ok_or_else(|| bad("response_format.json_schema is required"))?;
            let name = opt_str(js, "name", "response_format.json_schema.name")?.unwrap_or("response").to_string();
            let schema = match get(js, "schema") {
                None => json!({}),
                Some(s @ Value::Object(_)) => s.clone(),
                Some(other) => {
                    return Err(bad(format!(
                        "response_format.json_schema.schema must be an object, not {}",
                        type_name(other)
                    )))
                }
            };
            let strict = match get(js, "strict") {
                None => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(_) => return Err(bad("response_format.json_schema.strict must be a boolean")),
            };
            Ok(Some(ResponseFormat::JsonSchema { name, schema, strict }))
        }
        other => Err(bad(format!("response_format.type {other:?} is not one of text, json_object, json_schema"))),
    }
}

// ---------------------------------------------------------------------------------------
// Shared response pieces
// ---------------------------------------------------------------------------------------

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolUse => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

fn parse_finish(s: &str, has_tool_calls: bool) -> FinishReason {
    match s {
        "length" | "max_tokens" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolUse,
        "content_filter" => FinishReason::ContentFilter,
        _ if has_tool_calls => FinishReason::ToolUse,
        _ => FinishReason::Stop,
    }
}

fn usage_json(u: &Usage) -> Value {
    let prompt = u.input_tokens.saturating_add(u.cache_read_tokens).saturating_add(u.cache_write_tokens);
    let mut details = json!({"cached_tokens": u.cache_read_tokens});
    if u.cache_write_tokens > 0 {
        details["cache_write_tokens"] = json!(u.cache_write_tokens);
    }
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt.saturating_add(u.output_tokens),
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

fn num(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// An upstream `usage` object → canonical (input excludes cache read / write).
fn parse_usage(v: &Value) -> Usage {
    let prompt = num(v.get("prompt_tokens"));
    let completion = num(v.get("completion_tokens"));
    let details = v.get("prompt_tokens_details");
    let cached = match details.and_then(|d| d.get("cached_tokens")).and_then(Value::as_u64) {
        Some(c) => c,
        // DeepSeek's own spelling.
        None => num(v.get("prompt_cache_hit_tokens")),
    }
    .min(prompt);
    let write = num(details.and_then(|d| d.get("cache_write_tokens"))).min(prompt - cached);
    let reasoning = num(v.get("completion_tokens_details").and_then(|d| d.get("reasoning_tokens"))).min(completion);
    Usage {
        input_tokens: prompt - cached - write,
        output_tokens: completion,
        cache_read_tokens: cached,
        cache_write_tokens: write,
        reasoning_tokens: reasoning,
        estimated: false,
    }
}

/// (type, code) OpenAI sends for an HTTP status.
fn error_kind(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        402 => ("insufficient_quota", Some("insufficient_quota")),
        403 => ("request_forbidden", None),
        429 => ("requests", Some("rate_limit_exceeded")),
        503 | 529 => ("service_unavailable_error", Some("server_is_overloaded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

fn error_json(status: u16, message: &str) -> Value {
    let (kind, code) = error_kind(status);
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The status an upstream `error` object stands for.
fn error_status(err: &Value) -> u16 {
    let code = err.get("code");
    if let Some(n) = code.and_then(Value::as_u64).or_else(|| code.and_then(Value::as_str).and_then(|s| s.parse().ok()))
    {
        if (400..=599).contains(&n) {
            return n as u16;
        }
    }
    let words: Vec<String> = ["code", "type"]
        .iter()
        .filter_map(|k| err.get(*k).and_then(Value::as_str))
        .map(str::to_ascii_lowercase)
        .collect();
    let has = |needles: &[&str]| words.iter().any(|w| needles.iter().any(|n| w.contains(n)));
    // OpenAI's rate-limit errors carry type "requests" or "tokens".
    let is = |exact: &[&str]| words.iter().any(|w| exact.contains(&w.as_str()));
    if has(&["insufficient_quota", "rate_limit", "ratelimit"]) || is(&["requests", "tokens"]) {
        429
    } else if has(&["overloaded", "service_unavailable", "unavailable"]) {
        503
    } else if has(&["invalid_api_key", "authentication", "unauthorized"]) {
        401
    } else if has(&["permission", "forbidden"]) {
        403
    } else if has(&["not_found", "notfound"]) {
        404
    } else if has(&["invalid_request", "bad_request", "badrequest", "context_length", "invalid"]) {
        400
    } else if has(&["server_error", "api_error", "internal"]) {
        500
    } else {
        502
    }
}

fn upstream_error(err: &Value) -> FormatError {
    let message = match err.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => err.to_string(),
    };
    FormatError { status: error_status(err), message: format!("upstream error: {message}") }
}

/// An error object in an upstream body or chunk: `{"error": {...}}`, or vLLM's bare
/// `{"object": "error", ...}`.
fn find_error(v: &Value) -> Option<&Value> {
    match v.get("error") {
        Some(e) if !e.is_null() => Some(e),
        _ if v.get("object").and_then(Value::as_str) == Some("error") => Some(v),
        _ => None,
    }
}

/// Text and thinking from a message / delta `content` that some servers (Mistral) send as
/// an array of parts.
fn content_pieces(v: Option<&Value>, text: &mut String, thinking: &mut String) {
    match v {
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(p.get("text").and_then(Value::as_str).unwrap_or("")),
                    Some("thinking") => {
                        let mut ignored = String::new();
                        match p.get("thinking") {
                            Some(Value::String(s)) => thinking.push_str(s),
                            inner => content_pieces(inner, thinking, &mut ignored),
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Reasoning text: `reasoning_content` (DeepSeek, vLLM, Qwen) or `reasoning` (OpenRouter,
/// newer vLLM).
fn reasoning_of(v: &Value) -> Option<&str> {
    for key in ["reasoning_content", "reasoning"] {
        if let Some(s) = v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return Some(s);
        }
    }
    None
}

fn arguments_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// render_response
// ---------------------------------------------------------------------------------------

/// Canonical answer → `chat.completion` body.
pub fn render_response(resp: &ChatResponse, model: &str) -> Vec<u8> {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut tool_calls = Vec::new();
    for part in &resp.content {
        match part {
            Part::Text { text: t } => text.push_str(t),
            Part::Thinking { text: t, .. } => thinking.push_str(t),
            Part::ToolCall { id, name, arguments, .. } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            })),
            Part::RedactedThinking { .. } | Part::Image { .. } | Part::ToolResult { .. } => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if !thinking.is_empty() {
        message["reasoning_content"] = Value::String(thinking);
    }
    let body = json!({
        "id": chat_id(&resp.id),
        "object": "chat.completion",
        "created": now_unix(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_str(resp.finish),
        }],
        "usage": usage_json(&resp.usage),
    });
    body.to_string().into_bytes()
}

/// An error body: `{"error": {"message", "type", "param", "code"}}`.
pub fn render_error(status: u16, message: &str) -> Vec<u8> {
    error_json(status, message).to_string().into_bytes()
}

// ---------------------------------------------------------------------------------------
// Encoder: canonical events → client SSE
// ---------------------------------------------------------------------------------------

/// Writes `chat.completion.chunk` frames, then `data: [DONE]`.
pub struct Encoder {
    model: String,
    id: Option<String>,
    created: i64,
    /// Canonical tool index → Chat tool index, in order of first appearance.
    tools: Vec<u32>,
    finished: bool,
    usage: Option<Usage>,
    done: bool,
}

/// A stream encoder for a client; `model` is the name the client asked for.
pub fn encoder(model: &str) -> Encoder {
    Encoder {
        model: model.to_string(),
        id: None,
        created: now_unix(),
        tools: Vec::new(),
        finished: false,
        usage: None,
        done: false,
    }
}

impl Encoder {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id.as_deref().unwrap_or(""),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn ensure_started(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.id.is_some() {
            return;
        }
        self.id = Some(chat_id(upstream_id.unwrap_or("")));
        let first = self.chunk(json!({"role": "assistant", "content": ""}), None);
        sse::json_frame(out, None, &first);
    }

    fn delta(&mut self, delta: Value, out: &mut Vec<u8>) {
        self.ensure_started(None, out);
        let chunk = self.chunk(delta, None);
        sse::json_frame(out, None, &chunk);
    }

    fn tool_start(&mut self, index: u32, id: &str, name: &str, out: &mut Vec<u8>) -> usize {
        let pos = self.tools.len();
        self.tools.push(index);
        let id = if id.is_empty() { new_id("call_") } else { id.to_string() };
        self.delta(
            json!({"tool_calls": [{
                "index": pos,
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }]}),
            out,
        );
        pos
    }

    fn finish_chunk(&mut self, reason: &str, out: &mut Vec<u8>) {
        self.ensure_started(None, out);
        let chunk = self.chunk(json!({}), Some(reason));
        sse::json_frame(out, None, &chunk);
        self.finished = true;
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.finished {
            // Only usage may follow a finish_reason.
            if let StreamEvent::Usage(u) = ev {
                self.usage = Some(*u);
            }
            return;
        }
        match ev {
            StreamEvent::Start { id, .. } => self.ensure_started(Some(id), out),
            StreamEvent::Text(t) => {
                if !t.is_empty() {
                    self.delta(json!({"content": t}), out);
                }
            }
            StreamEvent::Thinking(t) => {
                if !t.is_empty() {
                    self.delta(json!({"reasoning_content": t}), out);
                }
            }
            // No Chat slot for signatures or opaque reasoning (documented lossy).
            StreamEvent::ThinkingSignature(_) | StreamEvent::RedactedThinking(_) => {}
            StreamEvent::ToolCallStart { index, id, name, .. } => {
                self.tool_start(*index, id, name, out);
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                let pos = match self.tools.iter().position(|i| i == index) {
                    Some(p) => p,
                    None => self.tool_start(*index, "", "", out),
                };
                if !delta.is_empty() {
                    self.delta(json!({"tool_calls": [{"index": pos, "function": {"arguments": delta}}]}), out);
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish_chunk(finish_str(*f), out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.finished {
            let reason = if self.tools.is_empty() { "stop" } else { "tool_calls" };
            self.finish_chunk(reason, out);
        }
        if let Some(u) = self.usage {
            let chunk = json!({
                "id": self.id.as_deref().unwrap_or(""),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_json(&u),
            });
            sse::json_frame(out, None, &chunk);
        }
        sse::frame(out, None, "[DONE]");
        self.done = true;
    }

    fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        sse::json_frame(out, None, &error_json(status, message));
        self.done = true;
    }
}

// ---------------------------------------------------------------------------------------
// build_request: canonical → upstream body
// ---------------------------------------------------------------------------------------

const IMAGE_NOTE: &str = "[image omitted: OpenAI Chat tool results carry text only]";

/// OpenAI reasoning models reject `max_tokens`.
fn wants_max_completion_tokens(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p))
}

fn image_url(source: &ImageSource) -> Value {
    let url = match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url.clone(),
    };
    json!({"type": "image_url", "image_url": {"url": url}})
}

/// A `content` value from text and image parts: a plain string when it is one text.
fn content_value(parts: Vec<Value>) -> Value {
    if let [one] = parts.as_slice() {
        if one.get("type").and_then(Value::as_str) == Some("text") {
            if let Some(t) = one.get("text") {
                return t.clone();
            }
        }
    }
    if parts.is_empty() {
        return Value::String(String::new());
    }
    Value::Array(parts)
}

fn tool_result_content(content: &[Part]) -> Value {
    let mut texts = Vec::new();
    for part in content {
        match part {
            Part::Text { text } => texts.push(text.clone()),
            Part::Image { .. } => texts.push(IMAGE_NOTE.to_string()),
            // Nested results / calls / thinking do not occur in tool output; keep any text.
            other => {
                let m = Message { role: Role::User, content: vec![other.clone()] };
                let t = m.joined_text();
                if !t.is_empty() {
                    texts.push(t);
                }
            }
        }
    }
    match texts.len() {
        0 => Value::String(String::new()),
        1 => Value::String(texts.pop().unwrap_or_default()),
        _ => Value::Array(texts.into_iter().map(|t| json!({"type": "text", "text": t})).collect()),
    }
}

fn build_messages(req: &ChatRequest) -> Result<Vec<Value>, FormatError> {
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system.as_deref() {
        out.push(json!({"role": "system", "content": system}));
    }
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::System => {
                let mut text = String::new();
                for part in &m.content {
                    match part {
                        Part::Text { text: t } => text.push_str(t),
                        Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
                        _ => {
                            return Err(bad(format!(
                                "messages[{i}]: a system message can only hold text for an OpenAI Chat upstream"
                            )))
                        }
                    }
                }
                out.push(json!({"role": "system", "content": text}));
            }
            Role::User => {
                let mut rest = Vec::new();
                for part in &m.content {
                    match part {
                        Part::ToolResult { call_id, content, .. } => out.push(json!({
                            "role": "tool",
                            "tool_call_id": call_id,
                            "content": tool_result_content(content),
                        })),
                        Part::Text { text } => rest.push(json!({"type": "text", "text": text})),
                        Part::Image { source } => rest.push(image_url(source)),
                        Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
                        Part::ToolCall { .. } => {
                            return Err(bad(format!(
                                "messages[{i}]: a tool call in a user message cannot be sent to an OpenAI Chat upstream"
                            )))
                        }
                    }
                }
                let only_results = rest.is_empty() && m.content.iter().any(|p| matches!(p, Part::ToolResult { .. }));
                if !only_results {
                    out.push(json!({"role": "user", "content": content_value(rest)}));
                }
            }
            Role::Assistant => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for part in &m.content {
                    match part {
                        Part::Text { text: t } => text.push_str(t),
                        Part::ToolCall { id, name, arguments, .. } => calls.push(json!({
                            "id": id,
                            "type": "function",
                            "function": {
                                "name": name,
                                "arguments": if arguments.trim().is_empty() { "{}" } else { arguments.as_str() },
                            },
                        })),
                        Part::Thinking { .. } | Part::RedactedThinking { .. } | Part::Image { .. } => {}
                        Part::ToolResult { .. } => {
                            return Err(bad(format!(
                                "messages[{i}]: a tool result in an assistant message cannot be sent to an OpenAI Chat upstream"
                            )))
                        }
                    }
                }
                let mut msg = json!({"role": "assistant"});
                msg["content"] = if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
        }
    }
    Ok(out)
}

fn effort_from(thinking: &ThinkingConfig) -> Option<String> {
    if !thinking.enabled {
        return thinking.effort.as_deref().filter(|e| *e == "none").map(str::to_string);
    }
    if let Some(e) = thinking.effort.as_deref().filter(|e| !e.is_empty()) {
        return Some(e.to_string());
    }
    thinking.budget_tokens.map(|b| {
        match b {
            0..=2048 => "low",
            2049..=8192 => "medium",
            _ => "high",
        }
        .to_string()
    })
}

/// Canonical request → body for an OpenAI-compatible upstream; `model` is the upstream name.
pub fn build_request(req: &ChatRequest, model: &str) -> Result<Vec<u8>, FormatError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(build_messages(req)?));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name});
                if let Some(d) = &t.description {
                    f["description"] = json!(d);
                }
                f["parameters"] = if t.parameters.is_object() {
                    t.parameters.clone()
                } else {
                    json!({"type": "object", "properties": {}})
                };
                json!({"type": "function", "function": f})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = &req.tool_choice {
            let v = match tc {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool { name } => json!({"type": "function", "function": {"name": name}}),
            };
            body.insert("tool_choice".into(), v);
        }
        if let Some(p) = req.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    if let Some(n) = req.max_tokens {
        let key = if wants_max_completion_tokens(model) { "max_completion_tokens" } else { "max_tokens" };
        body.insert(key.into(), json!(n));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        body.insert("stop".into(), json!(req.stop));
    }
    if let Some(rf) = &req.response_format {
        let v = match rf {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema { name, schema, strict } => {
                let mut js = json!({"name": name, "schema": schema});
                if let Some(s) = strict {
                    js["strict"] = json!(s);
                }
                json!({"type": "json_schema", "json_schema": js})
            }
        };
        body.insert("response_format".into(), v);
    }
    if let Some(effort) = req.thinking.as_ref().and_then(effort_from) {
        body.insert("reasoning_effort".into(), json!(effort));
    }
    if let Some(u) = &req.user {
        body.insert("user".into(), json!(u));
    }
    body.insert("stream".into(), json!(req.stream));
    if req.stream {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Ok(Value::Object(body).to_string().into_bytes())
}

// ---------------------------------------------------------------------------------------
// parse_response: upstream body → canonical
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Decoder: upstream SSE → canonical events
// ---------------------------------------------------------------------------------------

struct ToolSlot {
    /// The upstream `index` (or the slot's position when the server sends none).
    upstream: Option<u64>,
    id: Option<String>,
    name: Option<String>,
    started: bool,
    pending: String,
}

/// Decodes `chat.completion.chunk` streams (OpenAI, DeepSeek, Qwen, Ollama, vLLM, OpenRouter).
#[derive(Default)]
pub struct Decoder {
    started: bool,
    done: bool,
    finished: bool,
    tools: Vec<ToolSlot>,
}

/// A decoder for an upstream stream.
pub fn decoder() -> Decoder {
    Decoder::default()
}

impl Decoder {
    fn slot_for(&mut self, index: Option<u64>, id: Option<&str>) -> usize {
        let found = match (index, id) {
            (Some(ix), _) => self.tools.iter().rposition(|s| s.upstream == Some(ix)),
            (None, Some(id)) => self.tools.iter().rposition(|s| s.id.as_deref() == Some(id)),
            (None, None) => self.tools.len().checked_sub(1),
        };
        match found {
            // Some servers reuse index 0 for every call; a new id means a new call.
            Some(pos) if !matches!((id, self.tools.get(pos).and_then(|s| s.id.as_deref())), (Some(a), Some(b)) if a != b) => {
                pos
            }
            _ => {
                self.tools.push(ToolSlot {
                    upstream: index,
                    id: None,
                    name: None,
                    started: false,
                    pending: String::new(),
                });
                self.tools.len() - 1
            }
        }
    }

    fn tool_fragment(&mut self, tc: &Value, out: &mut Vec<StreamEvent>) {
        let index = tc.get("index").and_then(Value::as_u64);
        let id = tc.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let func = tc.get("function").unwrap_or(&Value::Null);
        let name = func.get("name").and_then(Value::as_str).filter(|s| !s.is_empty());
        let args = arguments_text(func.get("arguments"));
        let pos = self.slot_for(index, id);
        let Some(slot) = self.tools.get_mut(pos) else { return };
        if slot.id.is_none() {
            slot.id = id.map(str::to_string);
        }
        if slot.name.is_none() {
            slot.name = name.map(str::to_string);
        }
        slot.pending.push_str(&args);
        if slot.name.is_some() {
            Self::start_slot(slot, pos, out);
        }
    }

    fn start_slot(slot: &mut ToolSlot, pos: usize, out: &mut Vec<StreamEvent>) {
        let index = u32::try_from(pos).unwrap_or(u32::MAX);
        if !slot.started {
            slot.started = true;
            let id = slot.id.get_or_insert_with(|| new_id("call_")).clone();
            out.push(StreamEvent::ToolCallStart {
                index,
                id,
                name: slot.name.clone().unwrap_or_default(),
                signature: None,
            });
        }
        if !slot.pending.is_empty() {
            out.push(StreamEvent::ToolCallArgs { index, delta: std::mem::take(&mut slot.pending) });
        }
    }

    /// Start any call whose name never came (so its arguments are not lost).
    fn flush_tools(&mut self, out: &mut Vec<StreamEvent>) {
        for (pos, slot) in self.tools.iter_mut().enumerate() {
            if !slot.started || !slot.pending.is_empty() {
                Self::start_slot(slot, pos, out);
            }
        }
    }

    fn chunk(&mut self, v: &Value) -> Result<Vec<StreamEvent>, FormatError> {
        let mut out = Vec::new();
        if !v.is_object() {
            return Err(FormatError::malformed("upstream stream chunk is not a JSON object"));
        }
        if let Some(err) = find_error(v) {
            return Err(upstream_error(err));
        }
        if !self.started {
            self.started = true;
            let id = match v.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                Some(id) => id.to_string(),
                None => new_id("chatcmpl-"),
            };
            let model = v.get("model").and_then(Value::as_str).unwrap_or("").to_string();
            out.push(StreamEvent::Start { id, model });
        }
        let mut finish = None;
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            for choice in choices {
                if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 || self.finished {
                    continue;
                }
                if let Some(delta) = choice.get("delta").filter(|d| d.is_object()) {
                    let mut text = String::new();
                    let mut thinking = reasoning_of(delta).unwrap_or("").to_string();
                    content_pieces(delta.get("content"), &mut text, &mut thinking);
                    if let Some(r) = delta.get("refusal").and_then(Value::as_str) {
                        text.push_str(r);
                    }
                    if !thinking.is_empty() {
                        out.push(StreamEvent::Thinking(thinking));
                    }
                    if !text.is_empty() {
                        out.push(StreamEvent::Text(text));
                    }
                    if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                        for tc in calls {
                            self.tool_fragment(tc, &mut out);
                        }
                    }
                }
                if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                    finish = Some(parse_finish(f, !self.tools.is_empty()));
                }
            }
        }
        if let Some(f) = finish {
            self.flush_tools(&mut out);
            self.finished = true;
            out.push(StreamEvent::Finish(f));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            out.push(StreamEvent::Usage(parse_usage(u)));
        }
        Ok(out)
    }
}

impl StreamDecoder for Decoder {
    fn feed(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>, FormatError> {
        let data = data.trim();
        if self.done || data.is_empty() {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            self.done = true;
            let mut out = Vec::new();
            self.flush_tools(&mut out);
            return Ok(out);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| FormatError::malformed(format!("upstream stream chunk is not valid JSON: {e}")))?;
        if event == Some("error") {
            return Err(upstream_error(find_error(&v).unwrap_or(&v)));
        }
        self.chunk(&v)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError> {
        if !(self.done || self.finished) {
            return Err(FormatError::malformed("upstream stream ended before a finish_reason or [DONE]"));
        }
        let mut out = Vec::new();
        self.flush_tools(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::formats::grammar::ValidateStream as _;

    fn validate_stream(bytes: &[u8]) -> Result<(), String> {
        crate::formats::Format::OpenAiChat.validate_stream(bytes)
    }

    use super::*;
    use crate::formats::{Format, StreamDecoder, StreamEncoder};

    const FIX_REQ: [(&str, &str, &str); 4] = [
        (
            "plain",
            include_str!("../../tests/fixtures/openai_chat/req_plain.json"),
            include_str!("../../tests/fixtures/openai_chat/req_plain.canonical.json"),
        ),
        (
            "tools",
            include_str!("../../tests/fixtures/openai_chat/req_tools.json"),
            include_str!("../../tests/fixtures/openai_chat/req_tools.canonical.json"),
        ),
        (
            "image",
            include_str!("../../tests/fixtures/openai_chat/req_image.json"),
            include_str!("../../tests/fixtures/openai_chat/req_image.canonical.json"),
        ),
        (
            "json_schema",
            include_str!("../../tests/fixtures/openai_chat/req_json_schema.json"),
            include_str!("../../tests/fixtures/openai_chat/req_json_schema.canonical.json"),
        ),
    ];
    const STREAM_TOOLS: &str = include_str!("../../tests/fixtures/openai_chat/stream_openai_tools.sse");
    const STREAM_DEEPSEEK: &str = include_str!("../../tests/fixtures/openai_chat/stream_deepseek_reasoner.sse");
    const STREAM_OPENROUTER: &str = include_str!("../../tests/fixtures/openai_chat/stream_openrouter_reasoning.sse");
    const STREAM_OLLAMA: &str = include_str!("../../tests/fixtures/openai_chat/stream_ollama_tool.sse");
    const RESP_TOOLS: &str = include_str!("../../tests/fixtures/openai_chat/resp_openai_tools.json");
    const RESP_DEEPSEEK: &str = include_str!("../../tests/fixtures/openai_chat/resp_deepseek_reasoner.json");

    fn parse(body: &str) -> Result<ChatRequest, FormatError> {
        parse_request(body.as_bytes(), &ParseContext::default())
    }

    fn canonical(text: &str) -> ChatRequest {
        serde_json::from_str(text).unwrap()
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

    fn encode(events: &[StreamEvent], error: Option<(u16, &str)>) -> Vec<u8> {
        let mut e = encoder("client-model");
        let mut out = Vec::new();
        for ev in events {
            e.event(ev, &mut out);
        }
        match error {
            Some((status, msg)) => e.error(status, msg, &mut out),
            None => e.finish(&mut out),
        }
        out
    }

    fn usage(input: u64, output: u64, read: u64, write: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: read,
            cache_write_tokens: write,
            reasoning_tokens: reasoning,
            estimated: false,
        }
    }

    fn start(id: &str, model: &str) -> StreamEvent {
        StreamEvent::Start { id: id.into(), model: model.into() }
    }
    fn text(t: &str) -> StreamEvent {
        StreamEvent::Text(t.into())
    }
    fn think(t: &str) -> StreamEvent {
        StreamEvent::Thinking(t.into())
    }
    fn tstart(index: u32, id: &str, name: &str) -> StreamEvent {
        StreamEvent::ToolCallStart { index, id: id.into(), name: name.into(), signature: None }
    }
    fn targs(index: u32, delta: &str) -> StreamEvent {
        StreamEvent::ToolCallArgs { index, delta: delta.into() }
    }

    // ---------------------------------------------------------------- parse_request

    #[test]
    fn fixture_requests_parse_to_canonical() {
        for (name, body, expected) in FIX_REQ {
            let got = parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, canonical(expected), "fixture {name}");
        }
    }

    #[test]
    fn request_cases() {
        // (body, check)
        type Check = fn(ChatRequest);
        let cases: Vec<(&str, Check)> = vec![
            (
                // Tool messages with no user message after them, then an assistant turn.
                r#"{"model":"m","messages":[{"role":"user","content":"hi"},
                   {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                   {"role":"tool","tool_call_id":"c1","content":"ok"},
                   {"role":"assistant","content":"done"},
                   {"role":"tool","tool_call_id":"zz","content":null},
                   {"role":"user","content":"a"},{"role":"user","content":"b"}]}"#,
                |r| {
                    assert_eq!(r.messages.len(), 6);
                    assert_eq!(
                        r.messages[2].content,
                        vec![Part::ToolResult {
                            call_id: "c1".into(),
                            name: Some("f".into()),
                            content: vec![Part::text("ok")],
                            is_error: false
                        }]
                    );
                    // Unknown call id: no name; the next user message merges in, the one after does not.
                    assert_eq!(r.messages[4].content.len(), 2);
                    assert!(matches!(&r.messages[4].content[0], Part::ToolResult { name: None, .. }));
                    assert_eq!(r.messages[5], Message::text(Role::User, "b"));
                },
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"none",
                   "tool_choice":{"type":"function","function":{"name":"f"}},"stop":"END",
                   "response_format":{"type":"json_object"},"safety_identifier":"s1","max_tokens":5,
                   "max_completion_tokens":7,"n":1,"logprobs":false,"top_logprobs":0,"modalities":["text"]}"#,
                |r| {
                    assert_eq!(r.thinking.as_ref().map(|t| t.enabled), Some(false));
                    assert_eq!(r.tool_choice, Some(ToolChoice::Tool { name: "f".into() }));
                    assert_eq!(r.stop, vec!["END".to_string()]);
                    assert_eq!(r.response_format, Some(ResponseFormat::JsonObject));
                    assert_eq!(r.user.as_deref(), Some("s1"));
                    assert_eq!(r.max_tokens, Some(7));
                },
            ),
            (
                r#"{"model":"qwen3","messages":[{"role":"user","content":"x"}],"enable_thinking":true,"thinking_budget":4096,
                   "tool_choice":"required"}"#,
                |r| {
                    let t = r.thinking.unwrap();
                    assert!(t.enabled);
                    assert_eq!(t.budget_tokens, Some(4096));
                    assert_eq!(r.tool_choice, Some(ToolChoice::Required));
                },
            ),
            (
                // Assistant refusal part and field become text; non-base64 data URL stays a URL.
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":"data:text/plain,hi"}]},
                   {"role":"assistant","content":[{"type":"refusal","refusal":"No."}],"refusal":"Sorry."}]}"#,
                |r| {
                    assert_eq!(
                        r.messages[0].content,
                        vec![Part::Image { source: ImageSource::Url { url: "data:text/plain,hi".into() } }]
                    );
                    assert_eq!(r.messages[1].content, vec![Part::text("No."), Part::text("Sorry.")]);
                },
            ),
            (r#"{"model":"m","messages":[{"role":"system","content":"only system"}]}"#, |r| {
                assert_eq!(r.system.as_deref(), Some("only system"));
                assert!(r.messages.is_empty());
            }),
        ];
        for (i, (body, check)) in cases.into_iter().enumerate() {
            let r = parse(body).unwrap_or_else(|e| panic!("case {i}: {e}"));
            check(r);
        }
    }

    #[test]
    fn bad_requests_name_the_field() {
        let m = r#""model":"m""#;
        let user = r#"{"role":"user","content":"x"}"#;
        let cases: Vec<(String, &str)> = vec![
            (format!(r#"{{{m},"messages":[{{"role":"function","name":"f","content":"x"}}]}}"#), "\"function\""),
            (
                format!(
                    r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"input_audio","input_audio":{{"data":"AA","format":"wav"}}}}]}}]}}"#
                ),
                "messages[0].content[0].type \"input_audio\"",
            ),
            (
                format!(
                    r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"file","file":{{"file_id":"f"}}}}]}}]}}"#
                ),
                "messages[0].content[0].type \"file\"",
            ),
            (format!(r#"{{{m},"messages":[{user}],"n":2}}"#), "n:"),
            (format!(r#"{{{m},"messages":[{user}],"logprobs":true}}"#), "logprobs"),
            (format!(r#"{{{m},"messages":[{user}],"top_logprobs":3}}"#), "top_logprobs"),
            (format!(r#"{{{m},"messages":[{user}],"audio":{{"voice":"alloy","format":"wav"}}}}"#), "audio"),
            (format!(r#"{{{m},"messages":[{user}],"modalities":["text","audio"]}}"#), "modalities"),
            (format!(r#"{{{m},"messages":[{user}],"prediction":{{"type":"content","content":"x"}}}}"#), "prediction"),
            (format!(r#"{{{m},"messages":[{user}],"functions":[]}}"#), "functions"),
            (
                format!(r#"{{{m},"messages":[{user}],"tools":[{{"type":"custom","custom":{{"name":"x"}}}}]}}"#),
                "tools[0].type",
            ),
            (format!(r#"{{{m},"messages":[{user}],"tool_choice":"sometimes"}}"#), "tool_choice"),
            (format!(r#"{{{m},"messages":[{user}],"tool_choice":{{"type":"allowed_tools"}}}}"#), "tool_choice.type"),
            (format!(r#"{{{m},"messages":[{user}],"max_tokens":-1}}"#), "max_tokens"),
            (format!(r#"{{{m},"messages":[{user}],"max_completion_tokens":99999999999}}"#), "max_completion_tokens"),
            (format!(r#"{{{m},"messages":[{user}],"temperature":"hot"}}"#), "temperature"),
            (format!(r#"{{{m},"messages":[{user}],"stop":[1]}}"#), "stop[0]"),
            (format!(r#"{{{m},"messages":[{user}],"response_format":{{"type":"yaml"}}}}"#), "response_format.type"),
            (format!(r#"{{{m},"messages":[{user}],"web_search_options":{{}}}}"#), "web_search_options"),
            (format!(r#"{{{m},"messages":[]}}"#), "messages"),
            (r#"{"messages":[{"role":"user","content":"x"}]}"#.to_string(), "model"),
            (format!(r#"{{{m},"messages":[{{"role":"robot","content":"x"}}]}}"#), "messages[0].role"),
            (format!(r#"{{{m},"messages":[{{"role":"user","content":7}}]}}"#), "messages[0].content"),
            (format!(r#"{{{m},"messages":[{{"role":"user"}}]}}"#), "messages[0].content"),
            (format!(r#"{{{m},"messages":[{user},{{"role":"tool","content":"x"}}]}}"#), "messages[1].tool_call_id"),
            (
                format!(
                    r#"{{{m},"messages":[{user},{{"role":"assistant","tool_calls":[{{"type":"function","function":{{"name":"f"}}}}]}}]}}"#
                ),
                "messages[1].tool_calls[0].id",
            ),
            (
                format!(
                    r#"{{{m},"messages":[{user},{{"role":"assistant","content":null,"function_call":{{"name":"f","arguments":"{{}}"}}}}]}}"#
                ),
                "messages[1].function_call",
            ),
            (
                format!(
                    r#"{{{m},"messages":[{{"role":"system","content":[{{"type":"image_url","image_url":{{"url":"x"}}}}]}}]}}"#
                ),
                "messages[0].content[0].type",
            ),
            ("[1,2]".to_string(), "JSON object"),
            ("{".to_string(), "not valid JSON"),
        ];
        for (body, needle) in cases {
            let err = parse(&body).expect_err(&body);
            assert_eq!(err.status, 400, "{body}");
            assert!(err.message.contains(needle), "{body}: {:?} lacks {needle:?}", err.message);
        }
    }

    #[test]
    fn dispatch_goes_through_format() {
        let (_, body, expected) = FIX_REQ[0];
        let got = Format::OpenAiChat.parse_request(body.as_bytes(), &ParseContext::default()).unwrap();
        assert_eq!(got, canonical(expected));
    }

    // ---------------------------------------------------------------- responses

    fn sample_response() -> ChatResponse {
        ChatResponse {
            id: "msg_01ABC".into(),
            model: "claude-sonnet-4".into(),
            content: vec![
                Part::Thinking { text: "Let me see.".into(), signature: Some("sig-lost".into()) },
                Part::text("Calling the tool."),
                Part::ToolCall {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                    signature: None,
                },
            ],
            finish: FinishReason::ToolUse,
            usage: usage(100, 50, 20, 5, 10),
        }
    }

    #[test]
    fn render_response_shape_and_round_trip() {
        let resp = sample_response();
        let body = render_response(&resp, "gpt-client");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "chatcmpl-msg_01ABC");
        assert_eq!(v["object"], "chat.completion");
        assert!(v["created"].as_i64().unwrap() > 1_600_000_000);
        assert_eq!(v["model"], "gpt-client");
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["logprobs"], Value::Null);
        assert_eq!(choice["message"]["content"], "Calling the tool.");
        assert_eq!(choice["message"]["reasoning_content"], "Let me see.");
        assert_eq!(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 125, "completion_tokens": 50, "total_tokens": 175,
                   "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 5},
                   "completion_tokens_details": {"reasoning_tokens": 10}})
        );

        let back = parse_response(&body).unwrap();
        let mut expected = resp.clone();
        expected.id = "chatcmpl-msg_01ABC".into();
        expected.model = "gpt-client".into();
        // Thinking signatures have no Chat slot (documented lossy).
        expected.content[0] = Part::Thinking { text: "Let me see.".into(), signature: None };
        assert_eq!(back, expected);

        // No text → content null; no tool calls → key omitted; no reasoning → key omitted.
        let bare = ChatResponse { content: vec![], finish: FinishReason::Length, ..resp };
        let v: Value = serde_json::from_slice(&render_response(&bare, "m")).unwrap();
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], Value::Null);
        assert!(msg.get("tool_calls").is_none() && msg.get("reasoning_content").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn parse_response_fixtures() {
        let r = parse_response(RESP_TOOLS.as_bytes()).unwrap();
        assert_eq!(r.id, "chatcmpl-BmXyZ2");
        assert_eq!(r.model, "gpt-4.1-2025-04-14");
        assert_eq!(r.finish, FinishReason::ToolUse);
        assert_eq!(r.content.len(), 2);
        assert!(matches!(&r.content[1], Part::ToolCall { id, arguments, .. }
            if id == "call_3XnM2jIbk0WGKcMD4qYrzv5Q" && arguments == r#"{"city":"Tokyo"}"#));
        assert_eq!(r.usage, usage(296, 46, 1024, 0, 0));

        let r = parse_response(RESP_DEEPSEEK.as_bytes()).unwrap();
        assert_eq!(
            r.content,
            vec![
                Part::Thinking { text: "Compare the tenths: 9 > 1.".into(), signature: None },
                Part::text("9.9 is larger.")
            ]
        );
        assert_eq!(r.finish, FinishReason::Stop);
        assert_eq!(r.usage, usage(64, 230, 0, 0, 210));

        // DeepSeek's prompt_cache_hit_tokens when prompt_tokens_details is absent; stop + tool calls → ToolUse.
        let body = r#"{"id":"x","model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"",
            "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"a":1}}}]},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":64}}"#;
        let r = parse_response(body.as_bytes()).unwrap();
        assert_eq!(r.finish, FinishReason::ToolUse);
        assert_eq!(r.usage, usage(36, 5, 64, 0, 0));
        assert!(matches!(&r.content[0], Part::ToolCall { arguments, .. } if arguments == r#"{"a":1}"#));

        let err =
            parse_response(br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#)
                .unwrap_err();
        assert_eq!(err.status, 429);
        assert_eq!(parse_response(br#"{"id":"x","choices":[]}"#).unwrap_err().status, 502);
    }

    #[test]
    fn render_error_uses_openai_strings() {
        let cases = [
            (400, "invalid_request_error", Value::Null),
            (404, "invalid_request_error", Value::Null),
            (413, "invalid_request_error", Value::Null),
            (415, "invalid_request_error", Value::Null),
            (401, "invalid_request_error", json!("invalid_api_key")),
            (402, "insufficient_quota", json!("insufficient_quota")),
            (403, "request_forbidden", Value::Null),
            (429, "requests", json!("rate_limit_exceeded")),
            (500, "server_error", Value::Null),
            (502, "server_error", Value::Null),
            (503, "service_unavailable_error", json!("server_is_overloaded")),
            (529, "service_unavailable_error", json!("server_is_overloaded")),
        ];
        for (status, kind, code) in cases {
            let v: Value = serde_json::from_slice(&render_error(status, "boom")).unwrap();
            assert_eq!(v["error"]["message"], "boom");
            assert_eq!(v["error"]["type"], kind, "{status}");
            assert_eq!(v["error"]["code"], code, "{status}");
            assert_eq!(v["error"]["param"], Value::Null);
        }
    }

    // ---------------------------------------------------------------- build_request

    fn rich_request() -> ChatRequest {
        ChatRequest {
            model: "client-name".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![
                        Part::text("Look at this"),
                        Part::Image {
                            source: ImageSource::Base64 { media_type: "image/png".into(), data: "AAAA".into() },
                        },
                        Part::Image { source: ImageSource::Url { url: "https://x/y.png".into() } },
                    ],
                },
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Thinking { text: "hmm".into(), signature: Some("sig".into()) },
                        Part::RedactedThinking { data: "opaque".into() },
                        Part::text("Checking."),
                        Part::ToolCall {
                            id: "call_1".into(),
                            name: "get_weather".into(),
                            arguments: r#"{"city":"Paris"}"#.into(),
                            signature: Some("gemini-sig".into()),
                        },
                        Part::ToolCall {
                            id: "call_2".into(),
                            name: "screenshot".into(),
                            arguments: String::new(),
                            signature: None,
                        },
                    ],
                },
                Message {
                    role: Role::User,
                    content: vec![
                        Part::ToolResult {
                            call_id: "call_1".into(),
                            name: Some("get_weather".into()),
                            content: vec![Part::text("18C")],
                            is_error: false,
                        },
                        Part::ToolResult {
                            call_id: "call_2".into(),
                            name: None,
                            content: vec![
                                Part::text("here"),
                                Part::Image { source: ImageSource::Url { url: "https://x/shot.png".into() } },
                            ],
                            is_error: true,
                        },
                        Part::text("and now?"),
                    ],
                },
                Message::text(Role::System, "Answer in French."),
                Message::text(Role::User, "go"),
            ],
            max_tokens: Some(1000),
            temperature: Some(0.2),
            top_p: None,
            stop: vec!["END".into()],
            stream: true,
            tools: vec![
                ToolDef {
                    name: "get_weather".into(),
                    description: Some("Weather.".into()),
                    parameters: json!({"type":"object","properties":{"city":{"type":"string"}}}),
                },
                ToolDef { name: "screenshot".into(), description: None, parameters: Value::Null },
            ],
            tool_choice: Some(ToolChoice::Tool { name: "get_weather".into() }),
            parallel_tool_calls: Some(false),
            thinking: Some(ThinkingConfig {
                enabled: true,
                budget_tokens: Some(5000),
                effort: None,
                include_thoughts: true,
            }),
            response_format: Some(ResponseFormat::JsonSchema {
                name: "out".into(),
                schema: json!({"type":"object"}),
                strict: Some(true),
            }),
            user: Some("u1".into()),
        }
    }

    #[test]
    fn build_request_full() {
        let body: Value = serde_json::from_slice(&build_request(&rich_request(), "gpt-4.1").unwrap()).unwrap();
        let expected = json!({
            "model": "gpt-4.1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Look at this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
                ]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "tool", "tool_call_id": "call_2", "content": [
                    {"type": "text", "text": "here"},
                    {"type": "text", "text": IMAGE_NOTE}
                ]},
                {"role": "user", "content": "and now?"},
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "go"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "screenshot", "parameters": {"type": "object", "properties": {}}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "max_tokens": 1000,
            "temperature": 0.2,
            "stop": ["END"],
            "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}},
            "reasoning_effort": "medium",
            "user": "u1",
            "stream": true,
            "stream_options": {"include_usage": true}
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn build_request_variants() {
        let mut req = rich_request();
        req.stream = false;
        req.tools.clear();
        let body: Value = serde_json::from_slice(&build_request(&req, "openai/o3-mini").unwrap()).unwrap();
        assert_eq!(body["max_completion_tokens"], 1000);
        assert!(body.get("max_tokens").is_none());
        assert!(body.get("stream_options").is_none());
        assert_eq!(body["stream"], false);
        // No tools → no tool_choice / parallel_tool_calls (OpenAI rejects them alone).
        assert!(body.get("tool_choice").is_none() && body.get("parallel_tool_calls").is_none());

        let effort = |enabled: bool, budget: Option<u32>, effort: Option<&str>| {
            effort_from(&ThinkingConfig {
                enabled,
                budget_tokens: budget,
                effort: effort.map(str::to_string),
                include_thoughts: false,
            })
        };
        assert_eq!(effort(true, Some(1024), None).as_deref(), Some("low"));
        assert_eq!(effort(true, Some(2048), None).as_deref(), Some("low"));
        assert_eq!(effort(true, Some(8192), None).as_deref(), Some("medium"));
        assert_eq!(effort(true, Some(8193), None).as_deref(), Some("high"));
        assert_eq!(effort(true, Some(8193), Some("minimal")).as_deref(), Some("minimal"));
        assert_eq!(effort(true, None, None), None);
        assert_eq!(effort(false, Some(9000), Some("high")), None);
        assert_eq!(effort(false, None, Some("none")).as_deref(), Some("none"));

        // Tool results only → only tool messages; an image in a system message is refused.
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::ToolResult { call_id: "c".into(), name: None, content: vec![], is_error: false }],
            }],
            ..Default::default()
        };
        let body: Value = serde_json::from_slice(&build_request(&req, "m").unwrap()).unwrap();
        assert_eq!(body["messages"], json!([{"role": "tool", "tool_call_id": "c", "content": ""}]));
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::System,
                content: vec![Part::Image { source: ImageSource::Url { url: "u".into() } }],
            }],
            ..Default::default()
        };
        assert_eq!(build_request(&req, "m").unwrap_err().status, 400);
    }

    #[test]
    fn build_then_parse_round_trips() {
        for (name, _, expected) in FIX_REQ {
            let mut req = canonical(expected);
            let body = build_request(&req, &req.model).unwrap();
            let back = parse_request(&body, &ParseContext::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
            // Thinking in history is not sent upstream (documented lossy).
            for m in &mut req.messages {
                m.content.retain(|p| !matches!(p, Part::Thinking { .. } | Part::RedactedThinking { .. }));
            }
            assert_eq!(back, req, "fixture {name}");
        }
    }

    // ---------------------------------------------------------------- decoder

    #[test]
    fn decoder_fixture_streams() {
        let cases: Vec<(&str, &str, Vec<StreamEvent>)> = vec![
            (
                "openai parallel tools",
                STREAM_TOOLS,
                vec![
                    start("chatcmpl-BmXyZ1", "gpt-4.1-2025-04-14"),
                    tstart(0, "call_Q9tuRD3Vd6RrE0xOwB8BpJyR", "get_weather"),
                    targs(0, "{\"ci"),
                    targs(0, "ty\": \"Paris\"}"),
                    tstart(1, "call_3XnM2jIbk0WGKcMD4qYrzv5Q", "get_weather"),
                    targs(1, "{\"city\": \"Tokyo\"}"),
                    StreamEvent::Finish(FinishReason::ToolUse),
                    StreamEvent::Usage(usage(296, 46, 1024, 0, 0)),
                ],
            ),
            (
                "deepseek reasoner",
                STREAM_DEEPSEEK,
                vec![
                    start("9f2c1a7e-4b1d-4f7a-9d55-0c1e2b3a4d5e", "deepseek-reasoner"),
                    think("9.11 vs 9.9: "),
                    think("compare tenths."),
                    text("9.9 is"),
                    text(" larger."),
                    StreamEvent::Finish(FinishReason::Stop),
                    StreamEvent::Usage(usage(20, 120, 0, 0, 98)),
                ],
            ),
            (
                "openrouter reasoning",
                STREAM_OPENROUTER,
                vec![
                    start("gen-1751000200-AbCdEfGhIjKlMnOp", "anthropic/claude-sonnet-4"),
                    think("Let me think"),
                    think(" about it."),
                    text("Hello there!"),
                    StreamEvent::Finish(FinishReason::Length),
                    StreamEvent::Usage(usage(200, 64, 1000, 300, 10)),
                ],
            ),
            (
                "ollama whole calls, index 0 reused, stop with tool calls",
                STREAM_OLLAMA,
                vec![
                    start("chatcmpl-318", "qwen3:8b"),
                    think("Need the weather tool."),
                    tstart(0, "call_k2x9q3tz", "get_weather"),
                    targs(0, "{\"city\":\"Paris\"}"),
                    tstart(1, "call_m7b1c0rw", "get_time"),
                    targs(1, "{\"tz\":\"Europe/Paris\"}"),
                    StreamEvent::Finish(FinishReason::ToolUse),
                    StreamEvent::Usage(usage(180, 40, 0, 0, 0)),
                ],
            ),
        ];
        for (name, stream, expected) in cases {
            let got = decode(stream.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn decoder_tool_index_ordinals() {
        // Upstream indices 3 then 1; a fragment without an index continues the last call;
        // name arriving after the first fragment.
        let chunks = [
            r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":3,"id":"c3","function":{"arguments":"{\"x\""}}]}}]}"#,
            r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"function":{"name":"f3","arguments":":1}"}}]}}]}"#,
            r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c1","type":"function","function":{"name":"f1","arguments":"{"}}]}}]}"#,
            r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"}"}}]}}]}"#,
            r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ];
        let mut d = decoder();
        let mut got = Vec::new();
        for c in chunks {
            got.extend(d.feed(None, c).unwrap());
        }
        got.extend(d.end().unwrap());
        assert_eq!(
            got,
            vec![
                start("a", "m"),
                tstart(0, "c3", "f3"),
                targs(0, "{\"x\":1}"),
                tstart(1, "c1", "f1"),
                targs(1, "{"),
                targs(1, "}"),
                StreamEvent::Finish(FinishReason::ToolUse),
            ]
        );
    }

    #[test]
    fn decoder_error_events_map_statuses() {
        let cases = [
            (
                r#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
                429,
            ),
            (r#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#, 429),
            (r#"{"error":{"message":"oops","type":"server_error","code":null}}"#, 500),
            (r#"{"error":{"message":"bad","type":"invalid_request_error","code":"context_length_exceeded"}}"#, 400),
            (r#"{"error":{"message":"Provider returned error","code":429,"metadata":{}}}"#, 429),
            (r#"{"error":{"message":"x","code":"503"}}"#, 503),
            (r#"{"error":{"message":"busy","type":"service_unavailable_error","code":"server_is_overloaded"}}"#, 503),
            (r#"{"error":{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}}"#, 400),
            (r#"{"object":"error","message":"boom","type":"InternalServerError","param":null,"code":500}"#, 500),
            (r#"{"error":{"message":"key","type":"invalid_request_error","code":"invalid_api_key"}}"#, 401),
            (r#"{"error":{"message":"who knows"}}"#, 502),
            (
                r#"{"id":"g","object":"chat.completion.chunk","error":{"code":"server_error","message":"Upstream died"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#,
                500,
            ),
        ];
        for (data, status) in cases {
            let mut d = decoder();
            d.feed(
                None,
                r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}"#,
            )
            .unwrap();
            let err = d.feed(None, data).expect_err(data);
            assert_eq!(err.status, status, "{data}");
        }
        let err = decoder().feed(Some("error"), r#"{"message":"x","type":"rate_limit_error"}"#).unwrap_err();
        assert_eq!(err.status, 429);
        assert_eq!(decoder().feed(None, "{not json").unwrap_err().status, 502);
        assert_eq!(decoder().feed(None, "[1]").unwrap_err().status, 502);
    }

    #[test]
    fn truncated_streams() {
        let mid =
            "data: {\"id\":\"a\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hal\"}}]}\n\n";
        assert_eq!(decode(mid.as_bytes()).unwrap_err().status, 502);
        assert_eq!(decode(b"").unwrap_err().status, 502);
        // Cut inside the fixture, before finish_reason.
        let cut = STREAM_TOOLS
            .split("data: {\"id\":\"chatcmpl-BmXyZ1\"")
            .take(4)
            .collect::<Vec<_>>()
            .join("data: {\"id\":\"chatcmpl-BmXyZ1\"");
        assert_eq!(decode(cut.as_bytes()).unwrap_err().status, 502);
        // finish_reason without [DONE] is fine (some servers omit it); [DONE] alone too.
        let no_done = STREAM_DEEPSEEK.replace("data: [DONE]\n\n", "");
        assert!(decode(no_done.as_bytes()).is_ok());
        let done_only = format!("{mid}data: [DONE]\n\n");
        assert_eq!(decode(done_only.as_bytes()).unwrap(), vec![start("a", "m"), text("hal")]);
    }

    // ---------------------------------------------------------------- encoder ↔ decoder

    #[derive(Debug, PartialEq, Default)]
    struct Summary {
        text: String,
        thinking: String,
        tools: Vec<(String, String, Value)>,
        usage: Option<Usage>,
        finish: Option<FinishReason>,
    }

    fn summarize(events: &[StreamEvent]) -> Summary {
        let mut s = Summary::default();
        let mut order: Vec<u32> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let mut heads: Vec<(String, String)> = Vec::new();
        for ev in events {
            match ev {
                StreamEvent::Text(t) => s.text.push_str(t),
                StreamEvent::Thinking(t) => s.thinking.push_str(t),
                StreamEvent::ToolCallStart { index, id, name, .. } => {
                    order.push(*index);
                    heads.push((id.clone(), name.clone()));
                    args.push(String::new());
                }
                StreamEvent::ToolCallArgs { index, delta } => {
                    if let Some(p) = order.iter().position(|i| i == index) {
                        args[p].push_str(delta);
                    }
                }
                StreamEvent::Usage(u) => s.usage = Some(*u),
                StreamEvent::Finish(f) => s.finish = Some(*f),
                _ => {}
            }
        }
        s.tools = heads
            .into_iter()
            .zip(args)
            .map(|((id, name), a)| (id, name, serde_json::from_str(&a).unwrap_or(Value::String(a))))
            .collect();
        s
    }

    fn sequences() -> Vec<(&'static str, Vec<StreamEvent>, FinishReason)> {
        vec![
            (
                "text, usage before finish",
                vec![
                    start("msg_01", "upstream"),
                    text("Hel"),
                    text("lo"),
                    StreamEvent::Usage(usage(10, 2, 0, 0, 0)),
                    StreamEvent::Finish(FinishReason::Stop),
                ],
                FinishReason::Stop,
            ),
            (
                "no start, thinking + signature then text, usage after finish",
                vec![
                    think("Think"),
                    think("ing."),
                    StreamEvent::ThinkingSignature("EqQBCkYIBxgCKkD".into()),
                    StreamEvent::RedactedThinking("opaque".into()),
                    text("Answer."),
                    StreamEvent::Finish(FinishReason::Length),
                    StreamEvent::Usage(usage(100, 50, 20, 5, 10)),
                ],
                FinishReason::Length,
            ),
            (
                "tool calls, text after a tool call",
                vec![
                    start("resp_1", "u"),
                    text("Let me check."),
                    tstart(0, "toolu_A", "get_weather"),
                    targs(0, "{\"city\":"),
                    targs(0, "\"Paris\"}"),
                    tstart(1, "toolu_B", "get_time"),
                    targs(1, "{}"),
                    text(" (checking)"),
                    StreamEvent::Finish(FinishReason::ToolUse),
                    StreamEvent::Usage(usage(7, 8, 0, 0, 0)),
                ],
                FinishReason::ToolUse,
            ),
            ("zero text", vec![StreamEvent::Finish(FinishReason::ContentFilter)], FinishReason::ContentFilter),
            ("nothing at all, finish missing", vec![], FinishReason::Stop),
            (
                "finish missing after a tool call",
                vec![tstart(0, "", "f"), targs(0, "{\"a\":[1,2]}")],
                FinishReason::ToolUse,
            ),
            (
                "stop sequence, events after finish ignored",
                vec![text("x"), StreamEvent::Finish(FinishReason::StopSequence), text("late")],
                FinishReason::Stop,
            ),
        ]
    }

    #[test]
    fn encoder_streams_validate_and_decode_back() {
        for (name, events, finish) in sequences() {
            let bytes = encode(&events, None);
            validate_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&bytes)));
            Format::OpenAiChat.validate_stream(&bytes).unwrap();
            let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(matches!(decoded.first(), Some(StreamEvent::Start { model, .. }) if model == "client-model"));
            let mut want = summarize(&events);
            want.finish = Some(finish);
            if name.starts_with("stop sequence") {
                want.text = "x".into();
            }
            let mut got = summarize(&decoded);
            // Empty ids are filled in by the encoder.
            for ((id, ..), (want_id, ..)) in got.tools.iter_mut().zip(&want.tools) {
                if want_id.is_empty() {
                    assert!(id.starts_with("call_"));
                    id.clear();
                }
            }
            assert_eq!(got, want, "{name}");
        }
        // The Start id becomes the chunk id.
        let bytes = encode(&[start("msg_01", "u"), text("a")], None);
        assert!(String::from_utf8(bytes).unwrap().contains("\"id\":\"chatcmpl-msg_01\""));
    }

    #[test]
    fn encoder_exact_frames() {
        let bytes = encode(
            &[
                start("chatcmpl-1", "u"),
                tstart(0, "call_1", "f"),
                targs(0, "{}"),
                StreamEvent::Finish(FinishReason::ToolUse),
            ],
            None,
        );
        let events = sse::parse(&bytes).unwrap();
        let datas: Vec<Value> =
            events.iter().filter(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect();
        assert!(events.iter().all(|e| e.event.is_none()));
        assert_eq!(datas[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(
            datas[1]["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]})
        );
        assert_eq!(
            datas[2]["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
        );
        assert_eq!(
            datas[3]["choices"][0],
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "tool_calls"})
        );
        assert_eq!(events.len(), 5, "no usage chunk without a Usage event");
        assert_eq!(events[4].data, "[DONE]");
        for d in &datas {
            assert_eq!(d["object"], "chat.completion.chunk");
            assert_eq!(d["model"], "client-model");
            assert_eq!(d["id"], "chatcmpl-1");
        }
        // A usage chunk: choices [] and usage, just before [DONE].
        let bytes = encode(&[text("a"), StreamEvent::Usage(usage(3, 4, 1, 0, 0))], None);
        let events = sse::parse(&bytes).unwrap();
        let u: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["prompt_tokens"], 4);
        assert_eq!(u["usage"]["total_tokens"], 8);
        assert_eq!(u["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
    }

    #[test]
    fn encoder_error_ends_stream() {
        for (events, status) in [
            (vec![text("partial"), tstart(0, "c", "f"), targs(0, "{\"a")], 429u16),
            (vec![], 500),
            (vec![text("x"), StreamEvent::Finish(FinishReason::Stop)], 503),
        ] {
            let bytes = encode(&events, Some((status, "upstream failed")));
            validate_stream(&bytes).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&bytes)));
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(!text.contains("[DONE]"));
            let last = sse::parse(&bytes).unwrap().pop().unwrap();
            let v: Value = serde_json::from_str(&last.data).unwrap();
            assert_eq!(v["error"]["message"], "upstream failed");
            assert_eq!(v["error"]["type"], error_kind(status).0);
            assert_eq!(decode(&bytes).unwrap_err().status, status);
        }
        // Nothing after error or finish.
        let mut e = encoder("m");
        let mut out = Vec::new();
        e.error(500, "x", &mut out);
        let n = out.len();
        e.event(&text("late"), &mut out);
        e.finish(&mut out);
        e.error(500, "again", &mut out);
        assert_eq!(out.len(), n);
    }

    #[test]
    fn encoder_random_sequences_always_validate() {
        let mut rng = fastrand::Rng::with_seed(7);
        let pool = [
            start("s", "m"),
            text("t"),
            text(""),
            think("th"),
            StreamEvent::ThinkingSignature("sig".into()),
            StreamEvent::RedactedThinking("r".into()),
            tstart(0, "a", "f"),
            tstart(1, "b", "g"),
            targs(0, "{"),
            targs(1, "}"),
            targs(9, "x"),
            StreamEvent::Usage(usage(1, 2, 3, 4, 1)),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Finish(FinishReason::ToolUse),
        ];
        for round in 0..300 {
            let n = rng.usize(0..12);
            let events: Vec<StreamEvent> = (0..n).map(|_| pool[rng.usize(0..pool.len())].clone()).collect();
            let err = if rng.u8(0..4) == 0 { Some((rng.u16(400..600), "e")) } else { None };
            let bytes = encode(&events, err);
            validate_stream(&bytes)
                .unwrap_or_else(|e| panic!("round {round}: {e}\n{events:?}\n{}", String::from_utf8_lossy(&bytes)));
            assert_eq!(decode(&bytes).is_err(), err.is_some(), "round {round}");
        }
    }

    // ---------------------------------------------------------------- validate_stream

    #[test]
    fn validate_accepts_real_openai_stream() {
        validate_stream(STREAM_TOOLS.as_bytes()).unwrap();
    }

    #[test]
    fn validate_rejects_broken_streams() {
        let good = String::from_utf8(encode(
            &[
                start("chatcmpl-x", "u"),
                text("hi"),
                tstart(0, "c", "f"),
                targs(0, "{}"),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(usage(1, 1, 0, 0, 0)),
            ],
            None,
        ))
        .unwrap();
        validate_stream(good.as_bytes()).unwrap();
        let frames: Vec<&str> = good.split_terminator("\n\n").collect();
        let join = |fs: &[&str]| fs.iter().map(|f| format!("{f}\n\n")).collect::<String>();
        let chunk = |delta: &str, finish: &str| {
            format!(
                "data: {{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"client-model\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}"
            )
        };
        let role = chunk(r#"{"role":"assistant","content":""}"#, "null");
        let fin = chunk("{}", "\"stop\"");
        let done = "data: [DONE]";
        let cases: Vec<(&str, String)> = vec![
            ("missing [DONE]", join(&frames[..frames.len() - 1])),
            ("missing terminal: only role", join(&[&role])),
            ("delta before start", join(&[&chunk(r#"{"content":"x"}"#, "null"), &fin, done])),
            ("bad JSON", join(&[&role, "data: {\"id\":", &fin, done])),
            ("[DONE] before finish", join(&[&role, done])),
            ("event after [DONE]", join(&[&role, &fin, done, &fin])),
            ("content after finish", join(&[&role, &fin, &chunk(r#"{"content":"x"}"#, "null"), done])),
            (
                "bad tool index (skips)",
                join(&[
                    &role,
                    &chunk(
                        r#"{"tool_calls":[{"index":1,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}"#,
                        "null",
                    ),
                    &fin,
                    done,
                ]),
            ),
            (
                "args before tool start",
                join(&[
                    &role,
                    &chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}"#, "null"),
                    &fin,
                    done,
                ]),
            ),
            (
                "id repeated on later fragment",
                join(&[
                    &role,
                    &chunk(
                        r#"{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}"#,
                        "null",
                    ),
                    &chunk(
                        r#"{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}"#,
                        "null",
                    ),
                    &fin,
                    done,
                ]),
            ),
            ("bad finish reason", join(&[&role, &chunk("{}", "\"eos\""), done])),
            ("inconsistent id", join(&[&role, &fin.replace("chatcmpl-x", "chatcmpl-y"), done])),
            ("inconsistent model", join(&[&role, &fin.replace("client-model", "other"), done])),
            ("wrong object", join(&[&role.replace("chat.completion.chunk", "chat.completion"), &fin, done])),
            ("event names", format!("event: message\n{role}\n\n{fin}\n\n{done}\n\n")),
            ("error then more", join(&[&role, r#"data: {"error":{"message":"x","type":"server_error"}}"#, &fin])),
            ("error without type", join(&[&role, r#"data: {"error":{"message":"x"}}"#])),
            (
                "usage chunk before finish",
                join(&[
                    &role,
                    r#"data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"client-model","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
                    &fin,
                    done,
                ]),
            ),
            (
                "bad usage total",
                join(&[
                    &role,
                    &fin,
                    r#"data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"client-model","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":3}}"#,
                    done,
                ]),
            ),
            ("unterminated frame", format!("{role}\n\n{fin}\n\n{done}")),
            ("empty", String::new()),
        ];
        for (name, stream) in cases {
            assert!(validate_stream(stream.as_bytes()).is_err(), "{name} was accepted:\n{stream}");
        }
        // Sanity: the pieces themselves make a valid stream.
        validate_stream(join(&[&role, &fin, done]).as_bytes()).unwrap();
    }

    // ---------------------------------------------------------------- garbage in, no panic

    /// Every node of `v` replaced by each value of `subs`, one at a time.
    fn mutations(v: &Value, subs: &[Value]) -> Vec<Value> {
        fn walk(root: &Value, path: &mut Vec<String>, subs: &[Value], out: &mut Vec<Value>) {
            let node = path.iter().try_fold(root, |n, k| match n {
                Value::Object(o) => o.get(k),
                Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            });
            let Some(node) = node else { return };
            for s in subs {
                let mut copy = root.clone();
                let mut slot = &mut copy;
                for k in path.iter() {
                    slot = match slot {
                        Value::Object(o) => o.get_mut(k).unwrap(),
                        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                        _ => unreachable!(),
                    };
                }
                *slot = s.clone();
                out.push(copy);
            }
            let keys: Vec<String> = match node {
                Value::Object(o) => o.keys().cloned().collect(),
                Value::Array(a) => (0..a.len()).map(|i| i.to_string()).collect(),
                _ => vec![],
            };
            for k in keys {
                path.push(k);
                walk(root, path, subs, out);
                path.pop();
            }
        }
        let mut out = Vec::new();
        walk(v, &mut Vec::new(), subs, &mut out);
        out
    }

    fn substitutes() -> Vec<Value> {
        vec![
            Value::Null,
            json!(true),
            json!(-1),
            json!(1.5),
            json!(1e308),
            serde_json::from_str("18446744073709551616").unwrap(),
            json!(u64::MAX),
            json!(""),
            json!("x"),
            json!([]),
            json!([null]),
            json!({}),
        ]
    }

    #[test]
    fn garbage_never_panics() {
        let subs = substitutes();
        for (_, body, _) in FIX_REQ {
            let v: Value = serde_json::from_str(body).unwrap();
            for m in mutations(&v, &subs) {
                let bytes = serde_json::to_vec(&m).unwrap();
                if let Ok(req) = parse_request(&bytes, &ParseContext::default()) {
                    let _ = build_request(&req, "m");
                }
            }
        }
        for body in [RESP_TOOLS, RESP_DEEPSEEK] {
            let v: Value = serde_json::from_str(body).unwrap();
            for m in mutations(&v, &subs) {
                let bytes = serde_json::to_vec(&m).unwrap();
                if let Ok(r) = parse_response(&bytes) {
                    let _ = render_response(&r, "m");
                }
            }
        }
        for stream in [STREAM_TOOLS, STREAM_DEEPSEEK, STREAM_OPENROUTER, STREAM_OLLAMA] {
            for ev in sse::parse(stream.as_bytes()).unwrap() {
                let Ok(v) = serde_json::from_str::<Value>(&ev.data) else { continue };
                for m in mutations(&v, &subs) {
                    let mut d = decoder();
                    let mut enc = encoder("m");
                    let mut out = Vec::new();
                    if let Ok(evs) = d.feed(None, &m.to_string()) {
                        for e in &evs {
                            enc.event(e, &mut out);
                        }
                    }
                    let _ = d.end();
                    enc.finish(&mut out);
                    validate_stream(&out).unwrap();
                }
            }
        }

        // Random bytes.
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..2000 {
            let len = rng.usize(0..256);
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = parse_request(&bytes, &ParseContext::default());
            let _ = parse_response(&bytes);
            let _ = validate_stream(&bytes);
            let _ = decoder().feed(None, &String::from_utf8_lossy(&bytes));
        }

        // Deep nesting and huge numbers.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_obj = format!(r#"{{"model":"m","messages":[{{"role":"user","content":{deep}}}]}}"#);
        for body in [deep.as_str(), deep_obj.as_str()] {
            assert!(parse_request(body.as_bytes(), &ParseContext::default()).is_err());
            assert!(parse_response(body.as_bytes()).is_err());
            assert!(decoder().feed(None, body).is_err());
        }
        let huge = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e400}"#;
        assert!(parse_request(huge.as_bytes(), &ParseContext::default()).is_err());
        let huge =
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1e308,"max_tokens":4294967296}"#;
        assert_eq!(parse_request(huge.as_bytes(), &ParseContext::default()).unwrap_err().status, 400);
        let usage_huge = r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615,
            "prompt_tokens_details":{"cached_tokens":18446744073709551615,"cache_write_tokens":18446744073709551615}}}"#;
        let evs = decoder().feed(None, usage_huge).unwrap();
        let mut enc = encoder("m");
        let mut out = Vec::new();
        for e in &evs {
            enc.event(e, &mut out);
        }
        enc.finish(&mut out);
        let _ = validate_stream(&out);
        let r = parse_response(usage_huge.replace("\"delta\":{}", "\"message\":{}").as_bytes()).unwrap();
        let _ = render_response(&r, "m");
    }
}
