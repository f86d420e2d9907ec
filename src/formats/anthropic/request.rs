//! Client request → canonical: a Messages (or `count_tokens`) body becomes a `ChatRequest`.

use super::part_kind;
use crate::formats::reasoning::{seal, seal_opt, Origin};
use crate::formats::walk::{bad, object, wrong_type, Fields};
use crate::formats::{FormatError, Op, ParseContext};
use crate::protocol::canonical::{
    ChatRequest, ImageSource, Message, Part, ResponseFormat, Role, ThinkingConfig, ToolChoice, ToolDef,
};
use serde_json::{json, Value};

/// Parse a client's Messages (or `count_tokens`) body.
pub fn parse_request(body: &[u8], ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let o = root.as_object().ok_or_else(|| bad("request body must be a JSON object"))?;
    let f = Fields::new(o, "");

    let model = match &ctx.model {
        Some(m) => m.clone(),
        None => f.req_str("model")?.to_string(),
    };
    if model.is_empty() {
        return Err(bad("model must not be empty"));
    }
    let system = parse_system(f.get("system"))?;
    let messages = parse_messages(f)?;
    let max_tokens = f.u32("max_tokens")?;
    let temperature = f.f64("temperature")?;
    let top_p = f.f64("top_p")?;
    f.f64("top_k")?; // validated, then ignored (lossy)
    let stop = match f.array("stop_sequences")? {
        None => Vec::new(),
        Some(a) => a
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str().map(str::to_string).ok_or_else(|| wrong_type(format!("stop_sequences[{i}]"), "a string", s))
            })
            .collect::<Result<_, _>>()?,
    };
    let stream = f.bool("stream")?.unwrap_or(false) || ctx.op == Op::StreamGenerate;
    let tools = parse_tools(f)?;
    let (tool_choice, parallel_tool_calls) = parse_tool_choice(f)?;
    let mut thinking = parse_thinking(f)?;
    let mut response_format = None;
    if let Some(format) = f.object("output_format")? {
        response_format = Some(parse_output_format(Fields::new(format, "output_format"))?);
    }
    if let Some(cfg) = f.object("output_config")? {
        let cfg = Fields::new(cfg, "output_config");
        if let Some(format) = cfg.object("format")? {
            response_format = Some(parse_output_format(Fields::new(format, "output_config.format"))?);
        }
        if let Some(effort) = cfg.str("effort")? {
            thinking.get_or_insert_with(ThinkingConfig::default).effort = Some(effort.to_string());
        }
    }
    let user = match f.object("metadata")? {
        None => None,
        Some(m) => Fields::new(m, "metadata").str("user_id")?.map(str::to_string),
    };
    if let Some(servers) = f.array("mcp_servers")? {
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

/// `system`: a string, or text blocks joined with a blank line.
fn parse_system(v: Option<&Value>) -> Result<Option<String>, FormatError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                let path = format!("system[{i}]");
                let b = Fields::new(object(b, &path)?, &path);
                let ty = b.req_str("type")?;
                if ty != "text" {
                    return Err(bad(format!("{path}.type {ty:?} is not supported (system blocks must be text)")));
                }
                let text = b.req_str("text")?;
                if !text.is_empty() {
                    texts.push(text);
                }
            }
            Ok(if texts.is_empty() { None } else { Some(texts.join("\n\n")) })
        }
        Some(v) => Err(wrong_type("system", "a string or an array of text blocks", v)),
    }
}

/// `messages`: required, not empty; system messages may only hold text.
fn parse_messages(f: Fields<'_, '_>) -> Result<Vec<Message>, FormatError> {
    let arr = f.array("messages")?.ok_or_else(|| f.required("messages"))?;
    if arr.is_empty() {
        return Err(bad("messages must not be empty"));
    }
    let mut out = Vec::with_capacity(arr.len());
    for (i, m) in arr.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = Fields::new(object(m, &path)?, &path);
        let role = match m.req_str("role")? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" => Role::System,
            other => return Err(bad(format!("{path}.role {other:?} is not one of user, assistant, system"))),
        };
        let content = parse_content(m.get("content"), &m.at("content"))?;
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

/// A message's `content` (at `path`): a string or an array of content blocks.
fn parse_content(v: Option<&Value>, path: &str) -> Result<Vec<Part>, FormatError> {
    match v {
        None => Err(bad(format!("{path} is required"))),
        Some(Value::String(s)) => Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(blocks)) => {
            blocks.iter().enumerate().map(|(j, b)| parse_block(b, &format!("{path}[{j}]"))).collect()
        }
        Some(v) => Err(wrong_type(path, "a string or an array of content blocks", v)),
    }
}

/// One content block of a message.
fn parse_block(b: &Value, path: &str) -> Result<Part, FormatError> {
    let f = Fields::new(object(b, path)?, path);
    match f.req_str("type")? {
        "text" => Ok(Part::text(f.req_str("text")?)),
        "image" => parse_image(f),
        "tool_use" => {
            let id = f.req_str("id")?.to_string();
            let name = f.req_str("name")?.to_string();
            let arguments = match f.get("input") {
                None => "{}".to_string(),
                Some(v @ Value::Object(_)) => v.to_string(),
                Some(v) => return Err(f.wrong("input", "an object", v)),
            };
            Ok(Part::ToolCall { id, name, arguments, signature: None })
        }
        "tool_result" => {
            let call_id = f.req_str("tool_use_id")?.to_string();
            let content = parse_tool_result_content(f.get("content"), &f.at("content"))?;
            let is_error = f.bool("is_error")?.unwrap_or(false);
            Ok(Part::ToolResult { call_id, name: None, content, is_error })
        }
        "thinking" => Ok(Part::Thinking {
            text: f.str("thinking")?.unwrap_or_default().to_string(),
            signature: seal_opt(Origin::Anthropic, f.str("signature")?),
        }),
        "redacted_thinking" => Ok(Part::RedactedThinking { data: seal(Origin::Anthropic, f.req_str("data")?) }),
        other => Err(bad(format!("{path}.type {other:?} is not supported"))),
    }
}

/// An `image` block: a `base64` or `url` source.
fn parse_image(f: Fields<'_, '_>) -> Result<Part, FormatError> {
    let spath = f.at("source");
    let src = f.object("source")?.ok_or_else(|| f.required("source"))?;
    let src = Fields::new(src, &spath);
    let source = match src.req_str("type")? {
        "base64" => ImageSource::Base64 {
            media_type: src.req_str("media_type")?.to_string(),
            data: src.req_str("data")?.to_string(),
        },
        "url" => ImageSource::Url { url: src.req_str("url")?.to_string() },
        other => return Err(bad(format!("{spath}.type {other:?} is not supported"))),
    };
    Ok(Part::Image { source })
}

/// A `tool_result` block's `content` (at `path`): a string or text / image / tool_reference blocks.
fn parse_tool_result_content(v: Option<&Value>, path: &str) -> Result<Vec<Part>, FormatError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(blocks)) => {
            let mut out = Vec::with_capacity(blocks.len());
            for (k, b) in blocks.iter().enumerate() {
                let p = format!("{path}[{k}]");
                let b = Fields::new(object(b, &p)?, &p);
                out.push(match b.req_str("type")? {
                    "text" => Part::text(b.req_str("text")?),
                    "image" => parse_image(b)?,
                    "tool_reference" => Part::text(format!("tool_reference: {}", b.req_str("tool_name")?)),
                    other => return Err(bad(format!("{p}.type {other:?} is not supported in a tool_result"))),
                });
            }
            Ok(out)
        }
        Some(v) => Err(wrong_type(path, "a string or an array of content blocks", v)),
    }
}

/// `tools`: custom tools only (server tools are refused).
fn parse_tools(f: Fields<'_, '_>) -> Result<Vec<ToolDef>, FormatError> {
    let Some(arr) = f.array("tools")? else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(arr.len());
    for (i, t) in arr.iter().enumerate() {
        let path = format!("tools[{i}]");
        let t = Fields::new(object(t, &path)?, &path);
        if let Some(ty) = t.str("type")? {
            if ty != "custom" {
                return Err(bad(format!("{path}.type {ty:?} is not supported (server tools cannot be converted)")));
            }
        }
        let name = t.req_str("name")?.to_string();
        let description = t.str("description")?.map(str::to_string);
        let parameters = match t.get("input_schema") {
            None => json!({"type": "object", "properties": {}}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(v) => return Err(t.wrong("input_schema", "an object", v)),
        };
        out.push(ToolDef { name, description, parameters });
    }
    Ok(out)
}

/// `tool_choice` → the choice and `parallel_tool_calls` (from `disable_parallel_tool_use`).
fn parse_tool_choice(f: Fields<'_, '_>) -> Result<(Option<ToolChoice>, Option<bool>), FormatError> {
    let Some(tc) = f.object("tool_choice")? else { return Ok((None, None)) };
    let tc = Fields::new(tc, "tool_choice");
    let choice = match tc.req_str("type")? {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Tool { name: tc.req_str("name")?.to_string() },
        other => return Err(bad(format!("tool_choice.type {other:?} is not one of auto, any, tool, none"))),
    };
    let parallel = tc.bool("disable_parallel_tool_use")?.map(|d| !d);
    Ok((Some(choice), parallel))
}

/// `thinking`: enabled (with a budget), adaptive or disabled.
fn parse_thinking(f: Fields<'_, '_>) -> Result<Option<ThinkingConfig>, FormatError> {
    let Some(t) = f.object("thinking")? else { return Ok(None) };
    let t = Fields::new(t, "thinking");
    let visible = t.str("display")? != Some("omitted");
    Ok(Some(match t.req_str("type")? {
        "enabled" => ThinkingConfig {
            enabled: true,
            budget_tokens: t.u32("budget_tokens")?,
            effort: None,
            include_thoughts: visible,
        },
        "adaptive" => ThinkingConfig { enabled: true, budget_tokens: None, effort: None, include_thoughts: visible },
        "disabled" => ThinkingConfig::default(),
        other => return Err(bad(format!("thinking.type {other:?} is not one of enabled, adaptive, disabled"))),
    }))
}

/// `output_config.format` / legacy `output_format`: `json_schema` only.
fn parse_output_format(f: Fields<'_, '_>) -> Result<ResponseFormat, FormatError> {
    match f.req_str("type")? {
        "json_schema" => {
            let schema = match f.get("schema") {
                Some(v @ Value::Object(_)) => v.clone(),
                Some(v) => return Err(f.wrong("schema", "an object", v)),
                None => return Err(f.required("schema")),
            };
            Ok(ResponseFormat::JsonSchema { name: "response".into(), schema, strict: None })
        }
        other => Err(bad(format!("{}.type {other:?} is not supported", f.path()))),
    }
}
