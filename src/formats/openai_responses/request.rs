//! `parse_request`: a client's `POST /v1/responses` body → canonical [`ChatRequest`].

use super::{NAMESPACE_SEP, REDACTED_PREFIX};
use crate::formats::reasoning::{seal, Origin};
use crate::formats::walk::{array, bad, object, wrong_type, Fields, Obj};
use crate::formats::{FormatError, ParseContext};
use crate::protocol::canonical::{
    ChatRequest, ImageSource, Message, Part, ResponseFormat, Role, ThinkingConfig, ToolChoice, ToolDef,
};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Hosted tool types: only OpenAI runs them, so they cannot be forwarded.
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

/// A canonical image from an `image_url`: a base64 `data:` URL becomes inline data.
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

/// The parameters of a custom tool as a function: one string parameter `input`.
fn custom_tool_schema() -> Value {
    json!({"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]})
}

/// Parse a client's `POST /v1/responses` body.
pub fn parse_request(body: &[u8], ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let o = root.as_object().ok_or_else(|| bad("the request body must be a JSON object"))?;
    let f = Fields::new(o, "");

    for key in ["previous_response_id", "conversation"] {
        if f.has(key) {
            return Err(bad(format!(
                "{key} is not supported: Ailurus is stateless, send the whole conversation in input"
            )));
        }
    }
    if f.has("prompt") {
        return Err(bad("prompt (a stored prompt template) is not supported: Ailurus is stateless"));
    }
    if f.bool("background")? == Some(true) {
        return Err(bad("background: true is not supported: Ailurus does not run background responses"));
    }
    let model = match &ctx.model {
        Some(m) => m.clone(),
        None => f.req_str("model")?.to_string(),
    };

    let mut b = InputBuilder::default();
    if let Some(instructions) = f.str("instructions")? {
        if !instructions.is_empty() {
            b.system.push(instructions.to_string());
        }
    }
    match f.get("input") {
        None => return Err(f.required("input")),
        Some(Value::String(text)) => b.push(Role::User, vec![Part::text(text.clone())]),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                b.item(i, item)?;
            }
        }
        Some(v) => return Err(f.wrong("input", "a string or an array of items", v)),
    }
    if !b.messages.iter().any(|m| m.role != Role::System) {
        return Err(bad("input must hold at least one user or assistant item"));
    }

    let mut tools = match f.get("tools") {
        None => Vec::new(),
        Some(v) => parse_tools(v, "tools")?,
    };
    tools.append(&mut b.tools);
    let tool_choice = match f.get("tool_choice") {
        None => None,
        Some(v) => Some(parse_tool_choice(v)?),
    };
    let thinking = match f.object("reasoning")? {
        None => None,
        Some(r) => {
            let r = Fields::new(r, "reasoning");
            let effort = r.str("effort")?;
            let summary = match r.str("summary")? {
                Some(s) => Some(s),
                None => r.str("generate_summary")?,
            };
            Some(ThinkingConfig {
                enabled: effort != Some("none"),
                budget_tokens: None,
                effort: effort.map(str::to_string),
                include_thoughts: summary.is_some_and(|s| s != "none"),
            })
        }
    };
    let response_format = match f.object("text")? {
        None => None,
        Some(t) => match Fields::new(t, "text").object("format")? {
            None => None,
            Some(format) => Some(parse_text_format(format)?),
        },
    };

    Ok(ChatRequest {
        model,
        system: if b.system.is_empty() { None } else { Some(b.system.join("\n\n")) },
        messages: b.messages,
        max_tokens: f.u32("max_output_tokens")?,
        temperature: f.f64("temperature")?,
        top_p: f.f64("top_p")?,
        stop: Vec::new(),
        stream: f.bool("stream")?.unwrap_or(false),
        tools,
        tool_choice,
        parallel_tool_calls: f.bool("parallel_tool_calls")?,
        thinking,
        response_format,
        user: f.str("user")?.map(str::to_string),
    })
}

#[derive(Default)]
struct InputBuilder {
    system: Vec<String>,
    messages: Vec<Message>,
    /// call_id → tool name, to name tool results (Gemini needs the name).
    call_names: HashMap<String, String>,
    /// Tools offered by `additional_tools` input items (Codex sends its tools this way).
    tools: Vec<ToolDef>,
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
        let f = Fields::new(object(v, &path)?, &path);
        match f.str("type")? {
            Some("message") => self.message(f),
            None if f.has("role") => self.message(f),
            None => Err(f.required("type")),
            Some("function_call") => {
                let call_id = f.req_str("call_id")?;
                let base = f.req_str("name")?;
                let namespaced = f.str("namespace")?.map(|ns| format!("{ns}{NAMESPACE_SEP}{base}"));
                let name = namespaced.as_deref().unwrap_or(base);
                let arguments = match f.get("arguments") {
                    None => "{}".to_string(),
                    Some(Value::String(a)) => a.clone(),
                    Some(a @ Value::Object(_)) => a.to_string(),
                    Some(a) => return Err(f.wrong("arguments", "a string", a)),
                };
                self.call_names.insert(call_id.to_string(), name.to_string());
                let call =
                    Part::ToolCall { id: call_id.to_string(), name: name.to_string(), arguments, signature: None };
                self.push(Role::Assistant, vec![call]);
                Ok(())
            }
            Some("custom_tool_call") => {
                let call_id = f.req_str("call_id")?;
                let name = f.req_str("name")?;
                let input = f.req_str("input")?;
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
                let call_id = f.req_str("call_id")?;
                let content = match f.get("output") {
                    None => return Err(f.required("output")),
                    Some(v) => parse_content(v, &f.at("output"))?,
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
                let text = reasoning_text(f)?;
                let part = match f.str("encrypted_content")? {
                    Some(ec) => match ec.strip_prefix(REDACTED_PREFIX) {
                        Some(data) => Part::RedactedThinking { data: data.to_string() },
                        None => Part::Thinking { text, signature: Some(seal(Origin::Responses, ec)) },
                    },
                    None if text.is_empty() => return Ok(()),
                    None => Part::Thinking { text, signature: None },
                };
                self.push(Role::Assistant, vec![part]);
                Ok(())
            }
            // Tools offered inside the input (Codex's default request): the same shapes as
            // the top-level `tools`, added to them.
            Some("additional_tools") => {
                let tools = f.get("tools").ok_or_else(|| f.required("tools"))?;
                self.tools.extend(parse_tools(tools, &f.at("tools"))?);
                Ok(())
            }
            Some("item_reference") => Err(bad(format!(
                "{path}.type \"item_reference\" is not supported: Ailurus is stateless and stores no items"
            ))),
            Some(other) => Err(bad(format!("{path}.type {other:?} is not supported"))),
        }
    }

    fn message(&mut self, f: Fields<'_, '_>) -> Result<(), FormatError> {
        let path = f.path();
        let role = f.req_str("role")?;
        let content = f.get("content").ok_or_else(|| f.required("content"))?;
        let content_path = f.at("content");
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
fn reasoning_text(f: Fields<'_, '_>) -> Result<String, FormatError> {
    let mut texts = Vec::new();
    for key in ["summary", "content"] {
        if let Some(a) = f.array(key)? {
            for (j, part) in a.iter().enumerate() {
                let p = format!("{}[{j}]", f.at(key));
                texts.push(Fields::new(object(part, &p)?, &p).req_str("text")?.to_string());
            }
        }
        if !texts.is_empty() {
            break;
        }
    }
    Ok(texts.join("\n\n"))
}

/// Content: a plain string, or an array of content parts.
fn parse_content(v: &Value, path: &str) -> Result<Vec<Part>, FormatError> {
    match v {
        Value::String(text) => Ok(vec![Part::text(text.clone())]),
        Value::Array(parts) => {
            parts.iter().enumerate().map(|(j, p)| parse_content_part(p, &format!("{path}[{j}]"))).collect()
        }
        _ => Err(wrong_type(path, "a string or an array of content parts", v)),
    }
}

/// One content part (`input_text`, `output_text`, `refusal`, `input_image`).
fn parse_content_part(v: &Value, path: &str) -> Result<Part, FormatError> {
    let f = Fields::new(object(v, path)?, path);
    let ty = f.req_str("type")?;
    match ty {
        "input_text" | "output_text" => Ok(Part::text(f.req_str("text")?)),
        "refusal" => {
            let text = match f.str("refusal")? {
                Some(t) => t,
                None => f.req_str("text")?,
            };
            Ok(Part::text(text))
        }
        "input_image" => {
            let url = match f.get("image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(Value::Object(u)) => Fields::new(u, &f.at("image_url")).req_str("url")?,
                Some(u) => return Err(f.wrong("image_url", "a string", u)),
                None if f.has("file_id") => {
                    return Err(bad(format!(
                        "{path}.file_id is not supported: Ailurus is stateless, send image_url (a data: or https URL)"
                    )))
                }
                None => return Err(f.required("image_url")),
            };
            Ok(Part::Image { source: image_source(url) })
        }
        other => Err(bad(format!("{path}.type {other:?} is not supported"))),
    }
}

/// Hosted web search, which only OpenAI's own Responses API can run: on conversion it is
/// removed (documented lossy mapping; pass-through keeps it).
fn is_web_search(ty: &str) -> bool {
    ty.starts_with("web_search")
}

/// One function or custom tool; `namespace` prefixes its name (`ns__name`).
fn parse_function_tool(f: Fields<'_, '_>, ty: &str, namespace: Option<&str>) -> Result<ToolDef, FormatError> {
    if !f.has("name") && f.has("function") {
        return Err(bad(format!(
            "{} is required (Responses tools are flat: {{type, name, description, parameters}})",
            f.at("name")
        )));
    }
    let base = f.req_str("name")?;
    let name = match namespace {
        Some(ns) => format!("{ns}{NAMESPACE_SEP}{base}"),
        None => base.to_string(),
    };
    let description = f.str("description")?.map(str::to_string);
    let parameters = if ty == "custom" {
        custom_tool_schema()
    } else {
        match f.get("parameters") {
            None => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(p) => return Err(f.wrong("parameters", "an object", p)),
        }
    };
    Ok(ToolDef { name, description, parameters })
}

/// A `tools` array at `at`: function and custom tools, namespaces flattened, web search
/// removed.
fn parse_tools(v: &Value, at: &str) -> Result<Vec<ToolDef>, FormatError> {
    let tools = array(v, at)?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let path = format!("{at}[{i}]");
        let f = Fields::new(object(t, &path)?, &path);
        let ty = f.req_str("type")?;
        match ty {
            "function" | "custom" => out.push(parse_function_tool(f, ty, None)?),
            // A group of tools (Codex's `multi_agent_v1`): flattened as `namespace__tool`;
            // calls render back with their `namespace`.
            "namespace" => {
                let ns = f.req_str("name")?;
                let inner = f.array("tools")?.ok_or_else(|| f.required("tools"))?;
                for (j, t) in inner.iter().enumerate() {
                    let ipath = format!("{path}.tools[{j}]");
                    let inner_f = Fields::new(object(t, &ipath)?, &ipath);
                    match inner_f.req_str("type")? {
                        ity @ ("function" | "custom") => out.push(parse_function_tool(inner_f, ity, Some(ns))?),
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

/// `tool_choice`: `auto` / `none` / `required`, or one function or custom tool.
fn parse_tool_choice(v: &Value) -> Result<ToolChoice, FormatError> {
    match v {
        Value::String(c) => match c.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(bad(format!("tool_choice {other:?} is not one of auto, none, required"))),
        },
        Value::Object(o) => {
            let f = Fields::new(o, "tool_choice");
            match f.req_str("type")? {
                "function" | "custom" => Ok(ToolChoice::Tool { name: f.req_str("name")?.to_string() }),
                other => Err(bad(format!("tool_choice.type {other:?} is not supported"))),
            }
        }
        _ => Err(wrong_type("tool_choice", "a string or an object", v)),
    }
}

/// `text.format`: plain text, any JSON object, or a JSON schema.
fn parse_text_format(format: &Obj) -> Result<ResponseFormat, FormatError> {
    let f = Fields::new(format, "text.format");
    match f.req_str("type")? {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let schema = match f.get("schema") {
                Some(s @ Value::Object(_)) => s.clone(),
                Some(s) => return Err(f.wrong("schema", "an object", s)),
                None => return Err(f.required("schema")),
            };
            Ok(ResponseFormat::JsonSchema {
                name: f.str("name")?.unwrap_or("response").to_string(),
                schema,
                strict: f.bool("strict")?,
            })
        }
        other => Err(bad(format!("text.format.type {other:?} is not supported"))),
    }
}
