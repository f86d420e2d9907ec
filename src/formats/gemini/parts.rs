//! Canonical parts → Gemini parts, for a client (answers, streams) and for an upstream (requests).

use super::guess_image_mime;
use crate::formats::reasoning::{self, is_foreign, open, Origin};
use crate::formats::walk::{bad, Obj};
use crate::formats::FormatError;
use crate::protocol::canonical::{ImageSource, Part};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Who the parts are for: a Gemini client (ids and redacted-thinking markers kept) or a
/// real Gemini upstream (no ids; redacted thinking dropped).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Audience {
    Client,
    Upstream,
}

/// The name written for a tool call that has none (an upstream that never sent it): Gemini
/// requires a non-empty `functionCall.name`, and a client answers an unknown name with an
/// error result the model can read.
const UNNAMED_FUNCTION: &str = "unknown_function";

/// A tool name as written: [`UNNAMED_FUNCTION`] when empty.
pub(super) fn function_name(name: &str) -> String {
    if name.is_empty() {
        UNNAMED_FUNCTION.to_string()
    } else {
        name.to_string()
    }
}

/// A part of its own carrying only a `thoughtSignature`.
pub(super) fn sig_part(sig: &str) -> Value {
    json!({"text": "", "thought": true, "thoughtSignature": sig})
}

/// Tool arguments text → the `args` object (anything else becomes `{}`).
pub(super) fn args_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

/// An image → `inlineData` (base64 and `data:` URLs) or `fileData` (other URLs).
fn image_part(source: &ImageSource) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => json!({"inlineData": {"mimeType": media_type, "data": data}}),
        ImageSource::Url { url } => {
            if let Some(rest) = url.strip_prefix("data:") {
                if let Some((meta, data)) = rest.split_once(',') {
                    let mime = meta.split(';').next().filter(|m| !m.is_empty()).unwrap_or("image/png");
                    if meta.ends_with(";base64") {
                        return json!({"inlineData": {"mimeType": mime, "data": data}});
                    }
                }
            }
            let mime = guess_image_mime(url).unwrap_or("image/jpeg");
            json!({"fileData": {"mimeType": mime, "fileUri": url}})
        }
    }
}

/// `part` with `thoughtSignature: sig` when there is one.
pub(super) fn with_sig(mut part: Obj, sig: Option<String>) -> Value {
    if let Some(s) = sig {
        part.insert("thoughtSignature".into(), Value::String(s));
    }
    Value::Object(part)
}

/// Canonical parts of one message → Gemini parts. `names` maps earlier call ids to tool
/// names (for tool results without a name); errors only for a nameless, unknown result.
pub(super) fn gemini_parts(
    content: &[Part],
    audience: Audience,
    names: &HashMap<String, String>,
    path: &str,
) -> Result<Vec<Value>, FormatError> {
    let mut out = Vec::new();
    let mut trailing = Vec::new();
    let mut carry: Option<String> = None;
    // Another API's reasoning, for a client: one block envelope on the next call.
    let mut block: Vec<Part> = Vec::new();
    // A Gemini signature as written: raw for an upstream, sealed for a client. An empty
    // signature is no signature (an Anthropic client shows unsigned thinking with
    // `signature: ""`, and Gemini rejects an empty `thoughtSignature`).
    let nonempty = |s: &Option<String>| match audience {
        Audience::Upstream => s.as_deref().and_then(|s| open(s, Origin::Gemini)).map(str::to_string),
        Audience::Client => s.clone().filter(|s| !s.is_empty() && !is_foreign(s, Origin::Gemini)),
    };
    for (k, part) in content.iter().enumerate() {
        match part {
            Part::Text { text } => {
                if text.is_empty() {
                    continue;
                }
                let mut p = Obj::new();
                p.insert("text".into(), Value::String(text.clone()));
                out.push(with_sig(p, carry.take()));
            }
            Part::Thinking { text, signature } => {
                if let Some(c) = carry.take() {
                    out.push(sig_part(&c));
                }
                if signature.as_deref().is_some_and(|s| is_foreign(s, Origin::Gemini)) {
                    // Another API's: shown as a thought and carried in a block for a client;
                    // plain context for a Gemini upstream, which would reject the signature.
                    if !text.is_empty() {
                        let thought = audience == Audience::Client;
                        out.push(if thought { json!({"text": text, "thought": true}) } else { json!({"text": text}) });
                    }
                    if audience == Audience::Client {
                        block.push(part.clone());
                    }
                } else if text.is_empty() {
                    carry = nonempty(signature);
                } else {
                    let mut p = Obj::new();
                    p.insert("text".into(), Value::String(text.clone()));
                    p.insert("thought".into(), Value::Bool(true));
                    out.push(with_sig(p, nonempty(signature)));
                }
            }
            Part::RedactedThinking { data } => {
                if let Some(c) = carry.take() {
                    out.push(sig_part(&c));
                }
                if audience == Audience::Client {
                    block.push(Part::RedactedThinking { data: data.clone() });
                }
            }
            Part::ToolCall { id, name, arguments, signature } => {
                let mut sig = match (&nonempty(signature), carry.take()) {
                    (Some(s), Some(c)) => {
                        out.push(sig_part(&c));
                        Some(s.clone())
                    }
                    (Some(s), None) => Some(s.clone()),
                    (None, c) => c,
                };
                if let Some(env) = reasoning::block(&std::mem::take(&mut block)) {
                    match sig {
                        Some(_) => out.push(sig_part(&env)),
                        None => sig = Some(env),
                    }
                }
                let mut fc = Obj::new();
                fc.insert("name".into(), Value::String(function_name(name)));
                fc.insert("args".into(), args_object(arguments));
                if audience == Audience::Client && !id.is_empty() {
                    fc.insert("id".into(), Value::String(id.clone()));
                }
                let mut p = Obj::new();
                p.insert("functionCall".into(), Value::Object(fc));
                out.push(with_sig(p, sig));
            }
            Part::ToolResult { call_id, name, content, is_error } => {
                if let Some(c) = carry.take() {
                    out.push(sig_part(&c));
                }
                let name = match name.clone().or_else(|| names.get(call_id).cloned()) {
                    Some(n) => n,
                    None if audience == Audience::Client => String::new(),
                    None => {
                        return Err(bad(format!(
                            "{path}.content[{k}]: the tool result for call id {call_id:?} has no tool name and no earlier tool call has that id"
                        )))
                    }
                };
                let mut texts = Vec::new();
                for c in content {
                    match c {
                        Part::Text { text } => texts.push(text.as_str()),
                        Part::Image { source } => trailing.push(image_part(source)),
                        _ => {}
                    }
                }
                let key = if *is_error { "error" } else { "content" };
                let mut fr = Obj::new();
                fr.insert("name".into(), Value::String(function_name(&name)));
                fr.insert("response".into(), json!({ key: texts.join("\n") }));
                if audience == Audience::Client && !call_id.is_empty() {
                    fr.insert("id".into(), Value::String(call_id.clone()));
                }
                out.push(json!({"functionResponse": fr}));
            }
            Part::Image { source } => {
                let Value::Object(p) = image_part(source) else { continue };
                out.push(with_sig(p, carry.take()));
            }
        }
    }
    if let Some(c) = carry {
        out.push(sig_part(&c));
    }
    if let Some(env) = reasoning::block(&block) {
        out.push(sig_part(&env));
    }
    out.extend(trailing);
    Ok(out)
}
