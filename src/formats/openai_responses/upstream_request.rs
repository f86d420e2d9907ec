//! `build_request`: canonical [`ChatRequest`] → an upstream Responses API body.

use super::{normalize_args, summary_json};
use crate::formats::reasoning::{is_foreign, open, Origin};
use crate::formats::walk::bad;
use crate::formats::FormatError;
use crate::protocol::canonical::{ChatRequest, ImageSource, Message, Part, ResponseFormat, Role, ToolChoice};
use serde_json::{json, Map, Value};

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
fn image_url(src: &ImageSource) -> String {
    match src {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url.clone(),
    }
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
                    Part::Thinking { text, signature: Some(sig) } if open(sig, Origin::Responses).is_some() => {
                        flush_message("assistant", &mut content, input);
                        let ec = open(sig, Origin::Responses);
                        input
                            .push(json!({"type": "reasoning", "summary": summary_json(text), "encrypted_content": ec}));
                    }
                    // Another API's signature: OpenAI would reject it; the text stays as context.
                    Part::Thinking { text, signature: Some(sig) }
                        if is_foreign(sig, Origin::Responses) && !text.is_empty() =>
                    {
                        content.push(json!({"type": "output_text", "text": text}))
                    }
                    // Unsigned (or `signature: ""`, as an Anthropic client shows it): dropped.
                    Part::Thinking { .. } => {}
                    Part::RedactedThinking { data } => {
                        if let Some(ec) = open(data, Origin::Responses) {
                            flush_message("assistant", &mut content, input);
                            input.push(json!({"type": "reasoning", "summary": [], "encrypted_content": ec}));
                        }
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
