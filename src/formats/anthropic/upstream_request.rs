//! Canonical → upstream: the body for a real Anthropic `POST /v1/messages`.

use super::{arguments_to_input, part_kind};
use crate::formats::reasoning::{is_foreign, open, Origin};
use crate::formats::walk::{bad, Obj};
use crate::formats::FormatError;
use crate::protocol::canonical::{ChatRequest, ImageSource, Message, Part, ResponseFormat, Role, ToolChoice};
use serde_json::{json, Value};

/// `max_tokens` sent upstream when the caller gave none (the API requires it).
pub const DEFAULT_MAX_TOKENS: u32 = 8192;
/// Thinking budget sent upstream when thinking is on without a budget.
pub const DEFAULT_THINKING_BUDGET: u32 = 1024;
/// The smallest budget the API accepts.
pub const MIN_THINKING_BUDGET: u32 = 1024;
/// Appended to `system` for `ResponseFormat::JsonObject` (Anthropic has no JSON mode).
pub const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object and nothing else.";

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
            Part::Thinking { text, signature } => match signature.as_deref().map(|s| (s, open(s, Origin::Anthropic))) {
                Some((_, Some(sig))) => out.push(json!({"type": "thinking", "thinking": text, "signature": sig})),
                // Another API's signature: Anthropic would reject it; the text stays as context.
                Some((s, None)) if is_foreign(s, Origin::Anthropic) && !text.is_empty() => {
                    out.push(json!({"type": "text", "text": text}))
                }
                // Unsigned thinking: Anthropic rejects it.
                _ => {}
            },
            Part::RedactedThinking { data } => {
                if let Some(data) = open(data, Origin::Anthropic) {
                    out.push(json!({"type": "redacted_thinking", "data": data}));
                }
            }
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
