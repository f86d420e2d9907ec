//! Client request body → canonical: `parse_request` and the walk over messages, content parts,
//! tools, `tool_choice`, reasoning and `response_format`.

use crate::formats::walk::{bad, object, wrong_type, Fields};
use crate::formats::{FormatError, ParseContext};
use crate::protocol::canonical::{
    ChatRequest, ImageSource, Message, Part, ResponseFormat, Role, ThinkingConfig, ToolChoice, ToolDef,
};
use serde_json::{json, Value};
use std::collections::HashMap;

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

/// Parse a client's `POST /v1/chat/completions` body.
pub fn parse_request(body: &[u8], ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let obj = root.as_object().ok_or_else(|| bad("request body must be a JSON object"))?;
    let f = Fields::new(obj, "");
    reject_unsupported(f)?;

    let model = match &ctx.model {
        Some(m) => m.clone(),
        None => f.req_str("model")?.to_string(),
    };

    let msgs = f.array("messages")?.ok_or_else(|| f.required("messages"))?;
    if msgs.is_empty() {
        return Err(bad("messages must not be empty"));
    }
    let mut conv = Conversation::default();
    for (i, m) in msgs.iter().enumerate() {
        conv.push(m, i)?;
    }

    let max_tokens = match f.u32("max_completion_tokens")? {
        Some(n) => Some(n),
        None => f.u32("max_tokens")?,
    };
    let stop = match f.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_str().map(str::to_string).ok_or_else(|| wrong_type(format!("stop[{i}]"), "a string", v)))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(f.wrong("stop", "a string or an array", other)),
    };
    let tools = parse_tools(f)?;
    let tool_choice = parse_tool_choice(f)?;
    // Ignored, but only when it has the shape the API defines.
    f.object("stream_options")?;
    let user = match f.str("user")? {
        Some(u) => Some(u.to_string()),
        None => f.str("safety_identifier")?.map(str::to_string),
    };

    Ok(ChatRequest {
        model,
        system: if conv.system.is_empty() { None } else { Some(conv.system.join("\n\n")) },
        messages: conv.messages,
        max_tokens,
        temperature: f.f64("temperature")?,
        top_p: f.f64("top_p")?,
        stop,
        stream: f.bool("stream")?.unwrap_or(false),
        tools,
        tool_choice,
        parallel_tool_calls: f.bool("parallel_tool_calls")?,
        thinking: parse_thinking(f)?,
        response_format: parse_response_format(f)?,
        user,
    })
}

/// Request fields that ask for something the gateway cannot deliver.
fn reject_unsupported(f: Fields<'_, '_>) -> Result<(), FormatError> {
    if let Some(n) = f.get("n") {
        if n.as_u64() != Some(1) {
            return Err(bad("n: only one choice (n = 1) is supported"));
        }
    }
    match f.get("logprobs") {
        None | Some(Value::Bool(false)) => {}
        Some(_) => return Err(bad("logprobs is not supported")),
    }
    match f.get("top_logprobs") {
        None => {}
        Some(v) if v.as_u64() == Some(0) => {}
        Some(_) => return Err(bad("top_logprobs is not supported")),
    }
    for key in ["audio", "prediction", "web_search_options"] {
        if f.has(key) {
            return Err(bad(format!("{key} is not supported")));
        }
    }
    for key in ["functions", "function_call"] {
        if f.has(key) {
            return Err(bad(format!("{key} (legacy function calling) is not supported; use tools and tool_choice")));
        }
    }
    if let Some(a) = f.array("modalities")? {
        if a.iter().any(|m| m.as_str() == Some("audio")) {
            return Err(bad("modalities \"audio\" is not supported"));
        }
    }
    Ok(())
}

/// The canonical conversation being built from client messages, in order.
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
        let f = Fields::new(object(m, &path)?, &path);
        let role = f.req_str("role")?;
        match role {
            "system" | "developer" => {
                let text = text_parts(f, "content", false)?.join("\n\n");
                if self.messages.is_empty() {
                    self.system.push(text);
                } else {
                    self.close_group();
                    self.messages.push(Message::text(Role::System, text));
                }
            }
            "user" => {
                let content = user_content(f)?;
                match self.messages.last_mut() {
                    Some(last) if self.tool_group_open => last.content.extend(content),
                    _ => self.messages.push(Message { role: Role::User, content }),
                }
                self.tool_group_open = false;
            }
            "assistant" => {
                let content = self.assistant_content(f)?;
                self.close_group();
                self.messages.push(Message { role: Role::Assistant, content });
            }
            "tool" => {
                let call_id = f.req_str("tool_call_id")?.to_string();
                let content = text_parts(f, "content", true)?.into_iter().map(Part::text).collect();
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

    fn assistant_content(&mut self, f: Fields<'_, '_>) -> Result<Vec<Part>, FormatError> {
        let mut parts = Vec::new();
        if f.has("audio") {
            return Err(bad(format!("{} is not supported", f.at("audio"))));
        }
        if f.has("function_call") {
            return Err(bad(format!(
                "{} (legacy function calling) is not supported; use tool_calls",
                f.at("function_call")
            )));
        }
        let reasoning = match f.str("reasoning_content")? {
            Some(r) => Some(r),
            None => match f.get("reasoning") {
                Some(Value::String(r)) => Some(r.as_str()),
                _ => None,
            },
        };
        if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
            parts.push(Part::Thinking { text: r.to_string(), signature: None });
        }
        match f.get("content") {
            None => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => parts.push(Part::text(s.clone())),
            Some(Value::Array(items)) => {
                for (j, item) in items.iter().enumerate() {
                    let ppath = format!("{}[{j}]", f.at("content"));
                    let p = Fields::new(object(item, &ppath)?, &ppath);
                    let text = match p.req_str("type")? {
                        "text" => p.req_str("text")?,
                        "refusal" => p.req_str("refusal")?,
                        other => return Err(bad(format!("{ppath}.type {other:?} is not supported"))),
                    };
                    if !text.is_empty() {
                        parts.push(Part::text(text));
                    }
                }
            }
            Some(other) => return Err(f.wrong("content", "a string, an array or null", other)),
        }
        if let Some(r) = f.str("refusal")? {
            if !r.is_empty() {
                parts.push(Part::text(r));
            }
        }
        if let Some(calls) = f.array("tool_calls")? {
            for (j, call) in calls.iter().enumerate() {
                let part = parse_tool_call(call, &format!("{}[{j}]", f.at("tool_calls")))?;
                if let Part::ToolCall { id, name, .. } = &part {
                    self.call_names.insert(id.clone(), name.clone());
                }
                parts.push(part);
            }
        }
        if parts.is_empty() {
            parts.push(Part::text(""));
        }
        Ok(parts)
    }
}

/// An assistant `tool_calls` entry at `path` → a `ToolCall` part.
fn parse_tool_call(call: &Value, path: &str) -> Result<Part, FormatError> {
    let f = Fields::new(object(call, path)?, path);
    if let Some(t) = f.str("type")? {
        if t != "function" {
            return Err(bad(format!("{path}.type {t:?} is not supported (only \"function\")")));
        }
    }
    let id = f.req_str("id")?.to_string();
    let func_path = f.at("function");
    let func = Fields::new(f.object("function")?.ok_or_else(|| f.required("function"))?, &func_path);
    let name = func.req_str("name")?.to_string();
    let arguments = match func.get("arguments") {
        None => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Object(_)) => v.to_string(),
        Some(other) => return Err(func.wrong("arguments", "a string", other)),
    };
    Ok(Part::ToolCall { id, name, arguments, signature: None })
}

/// Content that may only hold text: a string, or an array of `text` parts (null → nothing
/// when `allow_null`).
fn text_parts(msg: Fields<'_, '_>, key: &str, allow_null: bool) -> Result<Vec<String>, FormatError> {
    match msg.get(key) {
        None if allow_null => Ok(Vec::new()),
        None => Err(msg.required(key)),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| {
                let ppath = format!("{}[{j}]", msg.at(key));
                let p = Fields::new(object(item, &ppath)?, &ppath);
                match p.req_str("type")? {
                    "text" => Ok(p.req_str("text")?.to_string()),
                    other => Err(bad(format!("{ppath}.type {other:?} is not supported here (only \"text\")"))),
                }
            })
            .collect(),
        Some(other) => Err(msg.wrong(key, "a string or an array", other)),
    }
}

/// A user message's `content` (string, or text and image parts) → parts.
fn user_content(msg: Fields<'_, '_>) -> Result<Vec<Part>, FormatError> {
    let items = match msg.get("content") {
        None => return Err(msg.required("content")),
        Some(Value::String(s)) => return Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(msg.wrong("content", "a string or an array", other)),
    };
    let mut parts = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let ppath = format!("{}[{j}]", msg.at("content"));
        let p = Fields::new(object(item, &ppath)?, &ppath);
        match p.req_str("type")? {
            "text" => parts.push(Part::text(p.req_str("text")?)),
            "image_url" => {
                let url = match p.get("image_url") {
                    Some(Value::String(s)) => s.as_str(),
                    Some(Value::Object(o)) => Fields::new(o, &p.at("image_url")).req_str("url")?,
                    Some(other) => return Err(p.wrong("image_url", "an object", other)),
                    None => return Err(p.required("image_url")),
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

/// `tools` → canonical tool definitions (function tools only).
fn parse_tools(f: Fields<'_, '_>) -> Result<Vec<ToolDef>, FormatError> {
    let Some(items) = f.array("tools")? else {
        return Ok(Vec::new());
    };
    let mut tools = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool = Fields::new(object(t, &path)?, &path);
        let kind = tool.req_str("type")?;
        if kind != "function" {
            return Err(bad(format!("{path}.type {kind:?} is not supported (only \"function\")")));
        }
        let func_path = tool.at("function");
        let func = Fields::new(tool.object("function")?.ok_or_else(|| tool.required("function"))?, &func_path);
        let name = func.req_str("name")?.to_string();
        let description = func.str("description")?.map(str::to_string);
        let parameters = match func.object("parameters")? {
            None => json!({"type": "object", "properties": {}}),
            Some(p) => Value::Object(p.clone()),
        };
        tools.push(ToolDef { name, description, parameters });
    }
    Ok(tools)
}

/// `tool_choice` (string or `{"type": "function", ...}`) → canonical.
fn parse_tool_choice(f: Fields<'_, '_>) -> Result<Option<ToolChoice>, FormatError> {
    match f.get("tool_choice") {
        None => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" => Ok(Some(ToolChoice::Required)),
            other => Err(bad(format!("tool_choice {other:?} is not one of auto, none, required"))),
        },
        Some(Value::Object(o)) => {
            let tc = Fields::new(o, "tool_choice");
            let kind = tc.req_str("type")?;
            if kind != "function" {
                return Err(bad(format!("tool_choice.type {kind:?} is not supported (only \"function\")")));
            }
            let func = tc.object("function")?.ok_or_else(|| tc.required("function"))?;
            let name = Fields::new(func, "tool_choice.function").req_str("name")?.to_string();
            Ok(Some(ToolChoice::Tool { name }))
        }
        Some(other) => Err(f.wrong("tool_choice", "a string or an object", other)),
    }
}

/// `reasoning_effort`, or Qwen's `enable_thinking` / `thinking_budget` → canonical thinking.
fn parse_thinking(f: Fields<'_, '_>) -> Result<Option<ThinkingConfig>, FormatError> {
    if let Some(effort) = f.str("reasoning_effort")? {
        let enabled = effort != "none";
        return Ok(Some(ThinkingConfig {
            enabled,
            budget_tokens: None,
            effort: Some(effort.to_string()),
            include_thoughts: enabled,
        }));
    }
    // Qwen / DashScope extension (sent through the SDK's `extra_body`).
    if let Some(enabled) = f.bool("enable_thinking")? {
        return Ok(Some(ThinkingConfig {
            enabled,
            budget_tokens: if enabled { f.u32("thinking_budget")? } else { None },
            effort: None,
            include_thoughts: enabled,
        }));
    }
    Ok(None)
}

/// `response_format` → canonical.
fn parse_response_format(f: Fields<'_, '_>) -> Result<Option<ResponseFormat>, FormatError> {
    let Some(rf) = f.object("response_format")? else {
        return Ok(None);
    };
    let rf = Fields::new(rf, "response_format");
    match rf.req_str("type")? {
        "text" => Ok(Some(ResponseFormat::Text)),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let js = rf.object("json_schema")?.ok_or_else(|| rf.required("json_schema"))?;
            let js = Fields::new(js, "response_format.json_schema");
            let name = js.str("name")?.unwrap_or("response").to_string();
            let schema = match js.object("schema")? {
                None => json!({}),
                Some(s) => Value::Object(s.clone()),
            };
            let strict = js.bool("strict")?;
            Ok(Some(ResponseFormat::JsonSchema { name, schema, strict }))
        }
        other => Err(bad(format!("response_format.type {other:?} is not one of text, json_object, json_schema"))),
    }
}
