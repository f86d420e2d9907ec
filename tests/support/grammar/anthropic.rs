//! The event grammar of a Anthropic Messages stream.

use super::*;

fn u64_field(o: &Obj, key: &str) -> Option<u64> {
    o.get(key).and_then(Value::as_u64)
}

fn check_str(o: &Obj, key: &str, what: &str) -> Result<(), String> {
    if o.get(key).is_some_and(Value::is_string) {
        Ok(())
    } else {
        Err(format!("{what}.{key} must be a string"))
    }
}

/// Check a whole Messages stream: `message_start` first; blocks started before their deltas,
/// deltas matching the block type, stopped before the next starts, indices 0,1,2…;
/// `message_delta` then `message_stop` last — or a terminal `error` event.
pub fn validate_stream(bytes: &[u8]) -> Result<(), String> {
    let events = sse::parse(bytes)?;
    let mut started = false;
    let mut ended = false;
    let mut open: Option<(u64, String)> = None;
    let mut next_index: u64 = 0;
    let mut saw_delta = false;
    for (n, ev) in events.iter().enumerate() {
        let name = ev.event.as_deref().ok_or_else(|| format!("event {n} has no event: name"))?;
        let what = format!("event {n} ({name})");
        if ended {
            return Err(format!("{what} follows the terminal event"));
        }
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| format!("{what} data is not JSON: {e}"))?;
        let o = v.as_object().ok_or_else(|| format!("{what} data is not an object"))?;
        if o.get("type").and_then(Value::as_str) != Some(name) {
            return Err(format!("{what} data.type does not equal the event name"));
        }
        if name == "error" {
            let e = o.get("error").and_then(Value::as_object).ok_or_else(|| format!("{what} has no error object"))?;
            check_str(e, "type", &what)?;
            check_str(e, "message", &what)?;
            ended = true;
            continue;
        }
        if !started && name != "message_start" {
            return Err(format!("{what} comes before message_start"));
        }
        match name {
            "message_start" => {
                if started {
                    return Err(format!("{what}: second message_start"));
                }
                started = true;
                let m = o.get("message").and_then(Value::as_object).ok_or_else(|| format!("{what} has no message"))?;
                check_str(m, "id", &what)?;
                check_str(m, "model", &what)?;
                if m.get("type").and_then(Value::as_str) != Some("message")
                    || m.get("role").and_then(Value::as_str) != Some("assistant")
                {
                    return Err(format!("{what}: message must have type message and role assistant"));
                }
                if m.get("content").and_then(Value::as_array).is_none_or(|c| !c.is_empty()) {
                    return Err(format!("{what}: message.content must be an empty array"));
                }
                if !m.get("usage").is_some_and(Value::is_object) {
                    return Err(format!("{what}: message.usage must be an object"));
                }
            }
            "ping" => {}
            "content_block_start" => {
                if saw_delta {
                    return Err(format!("{what} after message_delta"));
                }
                if let Some((i, _)) = &open {
                    return Err(format!("{what} while block {i} is still open"));
                }
                let index = u64_field(o, "index").ok_or_else(|| format!("{what} has no index"))?;
                if index != next_index {
                    return Err(format!("{what} has index {index}, expected {next_index}"));
                }
                let b = o
                    .get("content_block")
                    .and_then(Value::as_object)
                    .ok_or_else(|| format!("{what} has no content_block"))?;
                let ty =
                    b.get("type").and_then(Value::as_str).ok_or_else(|| format!("{what} content_block has no type"))?;
                match ty {
                    "text" => check_str(b, "text", &what)?,
                    "thinking" => check_str(b, "thinking", &what)?,
                    "redacted_thinking" => check_str(b, "data", &what)?,
                    "tool_use" | "server_tool_use" => {
                        check_str(b, "id", &what)?;
                        check_str(b, "name", &what)?;
                        if !b.get("input").is_some_and(Value::is_object) {
                            return Err(format!("{what}: tool_use input must be an object"));
                        }
                    }
                    other => return Err(format!("{what}: unknown content block type {other:?}")),
                }
                open = Some((index, ty.to_string()));
                next_index += 1;
            }
            "content_block_delta" => {
                let index = u64_field(o, "index").ok_or_else(|| format!("{what} has no index"))?;
                let Some((i, ty)) = &open else { return Err(format!("{what} with no open block")) };
                if *i != index {
                    return Err(format!("{what} has index {index} but block {i} is open"));
                }
                let d = o.get("delta").and_then(Value::as_object).ok_or_else(|| format!("{what} has no delta"))?;
                let dty = d.get("type").and_then(Value::as_str).unwrap_or_default();
                let field = match (ty.as_str(), dty) {
                    ("text", "text_delta") => "text",
                    ("text", "citations_delta") => "citation",
                    ("thinking", "thinking_delta") => "thinking",
                    ("thinking", "signature_delta") => "signature",
                    ("tool_use" | "server_tool_use", "input_json_delta") => "partial_json",
                    _ => return Err(format!("{what}: delta {dty:?} does not fit a {ty} block")),
                };
                if field != "citation" {
                    check_str(d, field, &what)?;
                }
            }
            "content_block_stop" => {
                let index = u64_field(o, "index").ok_or_else(|| format!("{what} has no index"))?;
                match &open {
                    Some((i, _)) if *i == index => open = None,
                    _ => return Err(format!("{what} does not close the open block")),
                }
            }
            "message_delta" => {
                if let Some((i, _)) = &open {
                    return Err(format!("{what} while block {i} is still open"));
                }
                if saw_delta {
                    return Err(format!("{what}: second message_delta"));
                }
                saw_delta = true;
                let d = o.get("delta").and_then(Value::as_object).ok_or_else(|| format!("{what} has no delta"))?;
                if !d.get("stop_reason").is_some_and(|r| r.is_string() || r.is_null()) {
                    return Err(format!("{what}: delta.stop_reason must be a string or null"));
                }
                let u = o.get("usage").and_then(Value::as_object).ok_or_else(|| format!("{what} has no usage"))?;
                if u64_field(u, "output_tokens").is_none() {
                    return Err(format!("{what}: usage.output_tokens must be a number"));
                }
            }
            "message_stop" => {
                if !saw_delta {
                    return Err(format!("{what} before message_delta"));
                }
                ended = true;
            }
            other => return Err(format!("event {n}: unknown event {other:?}")),
        }
    }
    if ended {
        Ok(())
    } else {
        Err("stream ended without message_stop or error".into())
    }
}
