//! Canonical → upstream request body: `build_request` for OpenAI and OpenAI-compatible hosts.

use crate::formats::walk::bad;
use crate::formats::FormatError;
use crate::protocol::canonical::{
    ChatRequest, ImageSource, Message, Part, ResponseFormat, Role, ThinkingConfig, ToolChoice,
};
use serde_json::{json, Map, Value};

/// What replaces an image in a tool result (Chat `tool` messages carry text only).
pub(super) const IMAGE_NOTE: &str = "[image omitted: OpenAI Chat tool results carry text only]";

/// OpenAI reasoning models reject `max_tokens`.
pub(crate) fn wants_max_completion_tokens(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p))
}

/// A canonical image → a Chat `image_url` content part (base64 as a data URL).
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

/// A tool result's content → a `tool` message `content` (text only).
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

/// Canonical system prompt and messages → Chat `messages`.
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

/// Canonical thinking → `reasoning_effort` (see the module doc's table).
pub(super) fn effort_from(thinking: &ThinkingConfig) -> Option<String> {
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
