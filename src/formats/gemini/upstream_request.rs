//! Canonical → an upstream Gemini `generateContent` body.

use super::bare_model;
use super::parts::{gemini_parts, Audience};
use crate::formats::walk::{bad, Obj};
use crate::formats::FormatError;
use crate::protocol::canonical::{ChatRequest, Part, ResponseFormat, Role, ThinkingConfig, ToolChoice};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Google's documented placeholder for a `functionCall` replayed without its signature
/// (history from another API); Gemini 3 rejects such calls otherwise.
const SIGNATURE_SENTINEL: &str = "skip_thought_signature_validator";

/// Whether `model` is known to be Gemini 3 or later (`gemini-3…`, `models/gemini-3…`).
fn is_gemini_3_or_later(model: &str) -> bool {
    let m = bare_model(model);
    let Some(rest) = m.strip_prefix("gemini-") else { return false };
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|n| n >= 3)
}

/// Gemini 3 and later validate `thoughtSignature` on replayed function calls.
fn requires_call_signatures(model: &str) -> bool {
    is_gemini_3_or_later(model)
}

/// The `thinkingBudget` standing in for an effort on models without `thinkingLevel`
/// (the inverse of the budget → effort thresholds of the OpenAI formats; every value is
/// inside the range all Gemini 2.5 models accept).
fn effort_budget(effort: &str) -> u32 {
    match effort {
        "minimal" => 512,
        "low" => 2048,
        "medium" => 8192,
        _ => 24576,
    }
}

/// In a model turn whose function calls carry no signature at all, give the first one the
/// sentinel (Gemini signs only the first of parallel calls).
fn add_signature_sentinel(parts: &mut [Value]) {
    let is_call = |p: &Value| p.get("functionCall").is_some();
    if parts.iter().any(|p| is_call(p) && p.get("thoughtSignature").is_some()) {
        return;
    }
    if let Some(Value::Object(first)) = parts.iter_mut().find(|p| is_call(p)) {
        first.insert("thoughtSignature".into(), Value::String(SIGNATURE_SENTINEL.into()));
    }
}

/// Append a turn, merging it into the previous one when the role is the same.
fn push_turn(contents: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some((r, ps)) if *r == role => ps.extend(parts),
        _ => contents.push((role, parts)),
    }
}

/// Canonical thinking → `generationConfig.thinkingConfig` for `model`.
fn thinking_json(t: &ThinkingConfig, model: &str) -> Value {
    let mut o = Obj::new();
    let effort = t.effort.as_deref().map(str::to_ascii_lowercase);
    if !t.enabled || effort.as_deref() == Some("none") {
        o.insert("thinkingBudget".into(), json!(0));
    } else if let Some(b) = t.budget_tokens {
        o.insert("thinkingBudget".into(), json!(b));
    } else if let Some(e) = effort.as_deref().filter(|_| !is_gemini_3_or_later(model)) {
        // Models before Gemini 3 reject `thinkingLevel` with a 400; Gemini 3 still takes
        // budgets, so a model name we cannot place gets a budget too.
        o.insert("thinkingBudget".into(), json!(effort_budget(e)));
    } else if let Some(e) = effort {
        let level = match e.as_str() {
            "minimal" => "minimal",
            "low" => "low",
            "medium" => "medium",
            _ => "high",
        };
        o.insert("thinkingLevel".into(), json!(level));
    } else {
        o.insert("thinkingBudget".into(), json!(-1));
    }
    if t.include_thoughts && t.enabled {
        o.insert("includeThoughts".into(), json!(true));
    }
    Value::Object(o)
}

/// Canonical → a Gemini `generateContent` body (the model and streaming are in the URL).
pub fn build_request(req: &ChatRequest, model: &str) -> Result<Vec<u8>, FormatError> {
    let mut system: Vec<String> = req.system.iter().filter(|s| !s.is_empty()).cloned().collect();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut leading = true;
    for (i, m) in req.messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        match m.role {
            Role::System => {
                let mut texts = Vec::new();
                for (k, p) in m.content.iter().enumerate() {
                    match p {
                        Part::Text { text } => texts.push(text.as_str()),
                        _ => {
                            return Err(bad(format!(
                                "{path}.content[{k}]: a system message can only hold text for a Gemini upstream"
                            )))
                        }
                    }
                }
                let text = texts.join("\n");
                if text.is_empty() {
                    continue;
                }
                if leading {
                    system.push(text);
                } else {
                    push_turn(&mut contents, "user", vec![json!({"text": format!("System: {text}")})]);
                }
            }
            Role::User | Role::Assistant => {
                leading = false;
                let parts = gemini_parts(&m.content, Audience::Upstream, &names, &path)?;
                for p in &m.content {
                    if let Part::ToolCall { id, name, .. } = p {
                        names.insert(id.clone(), name.clone());
                    }
                }
                let role = if m.role == Role::User { "user" } else { "model" };
                push_turn(&mut contents, role, parts);
            }
        }
    }
    if contents.is_empty() {
        return Err(bad("the request has no user or model content to send to Gemini"));
    }
    if requires_call_signatures(model) {
        for (role, parts) in &mut contents {
            if *role == "model" {
                add_signature_sentinel(parts);
            }
        }
    }
    let mut body = Obj::new();
    body.insert(
        "contents".into(),
        Value::Array(contents.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect()),
    );
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": [{"text": system.join("\n\n")}]}));
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = Obj::new();
                d.insert("name".into(), Value::String(t.name.clone()));
                if let Some(desc) = &t.description {
                    d.insert("description".into(), Value::String(desc.clone()));
                }
                let params = if t.parameters.is_object() {
                    t.parameters.clone()
                } else {
                    json!({"type": "object", "properties": {}})
                };
                d.insert("parametersJsonSchema".into(), params);
                Value::Object(d)
            })
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
        if let Some(choice) = &req.tool_choice {
            let fcc = match choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Tool { name } => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
            };
            body.insert("toolConfig".into(), json!({"functionCallingConfig": fcc}));
        }
    }
    let mut gc = Obj::new();
    if let Some(n) = req.max_tokens {
        gc.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        gc.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        gc.insert("topP".into(), json!(p));
    }
    if !req.stop.is_empty() {
        gc.insert("stopSequences".into(), json!(req.stop));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            gc.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            gc.insert("responseMimeType".into(), json!("application/json"));
            gc.insert("responseJsonSchema".into(), schema.clone());
        }
    }
    if let Some(t) = &req.thinking {
        gc.insert("thinkingConfig".into(), thinking_json(t, model));
    }
    if !gc.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gc));
    }
    serde_json::to_vec(&Value::Object(body)).map_err(|e| FormatError::malformed(format!("cannot serialise body: {e}")))
}
