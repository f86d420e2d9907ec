//! The event grammar of a Gemini streamGenerateContent stream.

use super::*;

const FINISH_REASONS: [&str; 18] = [
    "FINISH_REASON_UNSPECIFIED",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "OTHER",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "MALFORMED_FUNCTION_CALL",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "IMAGE_OTHER",
    "UNEXPECTED_TOOL_CALL",
    "TOO_MANY_TOOL_CALLS",
    "MISSING_THOUGHT_SIGNATURE",
];

const DATA_KEYS: [&str; 7] =
    ["text", "functionCall", "functionResponse", "inlineData", "fileData", "executableCode", "codeExecutionResult"];

fn validate_part(p: &Value, where_: &str) -> Result<(), String> {
    let o = p.as_object().ok_or_else(|| format!("{where_} is not an object"))?;
    let data: Vec<&str> = DATA_KEYS.into_iter().filter(|k| o.contains_key(*k)).collect();
    if data.len() != 1 {
        return Err(format!("{where_} must have exactly one data field, has {data:?}"));
    }
    if o.get("thought").is_some_and(|t| !t.is_boolean()) {
        return Err(format!("{where_}.thought is not a boolean"));
    }
    if o.get("thoughtSignature").is_some_and(|t| !t.is_string()) {
        return Err(format!("{where_}.thoughtSignature is not a string"));
    }
    if let Some(t) = o.get("text") {
        if !t.is_string() {
            return Err(format!("{where_}.text is not a string"));
        }
    }
    if let Some(fc) = o.get("functionCall") {
        let fc = fc.as_object().ok_or_else(|| format!("{where_}.functionCall is not an object"))?;
        if fc.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("{where_}.functionCall has no name"));
        }
        if !fc.get("args").is_some_and(Value::is_object) {
            return Err(format!("{where_}.functionCall.args is not an object"));
        }
        if fc.get("id").is_some_and(|i| !i.is_string()) {
            return Err(format!("{where_}.functionCall.id is not a string"));
        }
    }
    Ok(())
}

fn validate_usage(u: &Value, where_: &str) -> Result<(), String> {
    let o = u.as_object().ok_or_else(|| format!("{where_}.usageMetadata is not an object"))?;
    for (k, v) in o {
        if k.ends_with("TokenCount") && !v.is_u64() {
            return Err(format!("{where_}.usageMetadata.{k} is not a non-negative integer"));
        }
    }
    Ok(())
}

/// Checks a `streamGenerateContent?alt=sse` stream: data-only JSON chunks, exactly one
/// candidate chunk with `finishReason` and nothing but usage-only chunks after it, or an
/// error object as the last event.
pub fn validate_stream(bytes: &[u8]) -> Result<(), String> {
    let events = sse::parse(bytes)?;
    if events.is_empty() {
        return Err("empty stream".into());
    }
    let mut finished = false;
    let mut errored = false;
    for (i, ev) in events.iter().enumerate() {
        let w = format!("event {i}");
        if errored {
            return Err(format!("{w} follows the error event"));
        }
        if let Some(name) = &ev.event {
            return Err(format!("{w} has an event name {name:?}; Gemini streams are data-only"));
        }
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| format!("{w} is not JSON: {e}"))?;
        let m = v.as_object().ok_or_else(|| format!("{w} is not a JSON object"))?;
        if let Some(e) = m.get("error") {
            let e = e.as_object().ok_or_else(|| format!("{w}: error is not an object"))?;
            if !e.get("code").is_some_and(Value::is_u64) {
                return Err(format!("{w}: error.code is not an integer"));
            }
            if !e.get("message").is_some_and(Value::is_string) || !e.get("status").is_some_and(Value::is_string) {
                return Err(format!("{w}: error needs a message and a status string"));
            }
            errored = true;
            continue;
        }
        let cands = m.get("candidates");
        let usage = m.get("usageMetadata");
        let feedback = m.get("promptFeedback");
        if cands.is_none() && usage.is_none() && feedback.is_none() {
            return Err(format!("{w} has neither candidates nor usageMetadata"));
        }
        if let Some(u) = usage {
            validate_usage(u, &w)?;
        }
        if let Some(c) = cands {
            let arr = c.as_array().ok_or_else(|| format!("{w}: candidates is not an array"))?;
            if finished && !arr.is_empty() {
                return Err(format!("{w}: a candidate chunk follows the finishReason chunk"));
            }
            if arr.len() > 1 {
                return Err(format!("{w}: {} candidates (one expected)", arr.len()));
            }
            if let Some(cand) = arr.first() {
                let co = cand.as_object().ok_or_else(|| format!("{w}: candidate is not an object"))?;
                if co.get("index").is_some_and(|i| i.as_u64() != Some(0)) {
                    return Err(format!("{w}: candidate index {} is not 0", co.get("index").unwrap_or(&Value::Null)));
                }
                if let Some(content) = co.get("content") {
                    let content = content.as_object().ok_or_else(|| format!("{w}: content is not an object"))?;
                    if content.get("role").is_some_and(|r| r.as_str() != Some("model")) {
                        return Err(format!("{w}: content.role is not \"model\""));
                    }
                    let parts = content.get("parts").map_or(Some(&[][..]), |p| p.as_array().map(Vec::as_slice));
                    let parts = parts.ok_or_else(|| format!("{w}: content.parts is not an array"))?;
                    for (j, p) in parts.iter().enumerate() {
                        validate_part(p, &format!("{w}: parts[{j}]"))?;
                    }
                }
                if let Some(r) = co.get("finishReason") {
                    let r = r.as_str().ok_or_else(|| format!("{w}: finishReason is not a string"))?;
                    if !FINISH_REASONS.contains(&r) {
                        return Err(format!("{w}: unknown finishReason {r:?}"));
                    }
                    finished = true;
                }
            }
        }
        if let Some(f) = feedback {
            if f.get("blockReason").is_some_and(|b| b.as_str().is_some_and(|b| !b.is_empty())) {
                finished = true;
            }
        }
    }
    if !finished && !errored {
        return Err("stream ended without a finishReason chunk or an error".into());
    }
    Ok(())
}
