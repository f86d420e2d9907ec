//! The event grammar of a OpenAI Responses stream.

use super::*;

struct VItem {
    id: String,
    kind: String,
    done: bool,
    /// Open state of each content part (message) or summary part (reasoning).
    parts: Vec<bool>,
}

fn v_item<'a>(items: &'a mut [VItem], d: &Obj, ty: &str, kind: &str) -> Result<&'a mut VItem, String> {
    let index = d.get("output_index").and_then(Value::as_u64).ok_or_else(|| format!("{ty} has no output_index"))?;
    let item = usize::try_from(index)
        .ok()
        .and_then(|i| items.get_mut(i))
        .ok_or_else(|| format!("{ty} refers to output_index {index}, which was never added"))?;
    if item.done {
        return Err(format!("{ty} for output_index {index}, which is already done"));
    }
    if item.kind != kind {
        return Err(format!("{ty} for a {} item (output_index {index})", item.kind));
    }
    if s(d, "item_id").is_some_and(|id| id != item.id) {
        return Err(format!("{ty} item_id does not match output_index {index}"));
    }
    Ok(item)
}

fn v_part<'a>(item: &'a mut VItem, d: &Obj, ty: &str, key: &str) -> Result<&'a mut bool, String> {
    let index = d.get(key).and_then(Value::as_u64).ok_or_else(|| format!("{ty} has no {key}"))?;
    match usize::try_from(index).ok().and_then(|i| item.parts.get_mut(i)) {
        Some(open) if *open => Ok(open),
        _ => Err(format!("{ty} for {key} {index}, which is not open")),
    }
}

fn v_status(d: &Obj, ty: &str, want: &str) -> Result<(), String> {
    let r = d.get("response").and_then(Value::as_object).ok_or_else(|| format!("{ty} has no response object"))?;
    match s(r, "status") {
        Some(st) if st == want => Ok(()),
        other => Err(format!("{ty} has response.status {other:?}, expected {want:?}")),
    }
}

/// Check a whole stream against the Responses event grammar.
pub fn validate_stream(bytes: &[u8]) -> Result<(), String> {
    let events = sse::parse(bytes)?;
    let mut items: Vec<VItem> = Vec::new();
    let mut terminal: Option<String> = None;
    for (n, ev) in events.iter().enumerate() {
        if let Some(t) = &terminal {
            return Err(format!("event {n} follows the terminal event {t}"));
        }
        let name = ev.event.as_deref().ok_or_else(|| format!("event {n} has no event name"))?;
        let v: Value =
            serde_json::from_str(&ev.data).map_err(|e| format!("event {n} ({name}) data is not JSON: {e}"))?;
        let d = v.as_object().ok_or_else(|| format!("event {n} ({name}) data is not an object"))?;
        let ty = s(d, "type").ok_or_else(|| format!("event {n} ({name}) has no type"))?;
        if ty != name {
            return Err(format!("event {n}: type {ty:?} differs from the event name {name:?}"));
        }
        match d.get("sequence_number").and_then(Value::as_u64) {
            Some(seq) if seq == n as u64 => {}
            other => return Err(format!("event {n} ({ty}) has sequence_number {other:?}, expected {n}")),
        }
        if n == 0 && ty != "response.created" {
            return Err(format!("the stream starts with {ty}, not response.created"));
        }
        match ty {
            "response.created" | "response.in_progress" | "response.queued" => {
                if n > 0 && ty == "response.created" {
                    return Err(format!("event {n}: a second response.created"));
                }
                let want = if ty == "response.queued" { "queued" } else { "in_progress" };
                v_status(d, ty, want)?;
            }
            "response.output_item.added" => {
                let index = d.get("output_index").and_then(Value::as_u64);
                if index != Some(items.len() as u64) {
                    return Err(format!(
                        "event {n}: output_item.added has output_index {index:?}, expected {}",
                        items.len()
                    ));
                }
                let item = d.get("item").and_then(Value::as_object).ok_or_else(|| format!("event {n}: no item"))?;
                let kind = s(item, "type").ok_or_else(|| format!("event {n}: the item has no type"))?;
                let id = s(item, "id").ok_or_else(|| format!("event {n}: the item has no id"))?;
                items.push(VItem { id: id.to_string(), kind: kind.to_string(), done: false, parts: Vec::new() });
            }
            "response.output_item.done" => {
                let item = d.get("item").and_then(Value::as_object).ok_or_else(|| format!("event {n}: no item"))?;
                let kind = s(item, "type").unwrap_or_default().to_string();
                let it = v_item(&mut items, d, ty, &kind)?;
                if s(item, "id") != Some(it.id.as_str()) {
                    return Err(format!("event {n}: output_item.done item id differs from the added item"));
                }
                if it.parts.iter().any(|open| *open) {
                    return Err(format!("event {n}: output_item.done while a part is still open"));
                }
                it.done = true;
            }
            "response.content_part.added" => {
                let it = v_item(&mut items, d, ty, "message")?;
                if d.get("content_index").and_then(Value::as_u64) != Some(it.parts.len() as u64) {
                    return Err(format!("event {n}: content_part.added has a wrong content_index"));
                }
                it.parts.push(true);
            }
            "response.reasoning_summary_part.added" => {
                let it = v_item(&mut items, d, ty, "reasoning")?;
                if d.get("summary_index").and_then(Value::as_u64) != Some(it.parts.len() as u64) {
                    return Err(format!("event {n}: reasoning_summary_part.added has a wrong summary_index"));
                }
                it.parts.push(true);
            }
            "response.content_part.done" => {
                let it = v_item(&mut items, d, ty, "message")?;
                *v_part(it, d, ty, "content_index")? = false;
            }
            "response.reasoning_summary_part.done" => {
                let it = v_item(&mut items, d, ty, "reasoning")?;
                *v_part(it, d, ty, "summary_index")? = false;
            }
            "response.output_text.delta"
            | "response.output_text.done"
            | "response.refusal.delta"
            | "response.refusal.done"
            | "response.output_text.annotation.added" => {
                let it = v_item(&mut items, d, ty, "message")?;
                v_part(it, d, ty, "content_index")?;
                if ty.ends_with(".delta") && s(d, "delta").is_none() {
                    return Err(format!("event {n}: {ty} has no string delta"));
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_summary_text.done" => {
                let it = v_item(&mut items, d, ty, "reasoning")?;
                v_part(it, d, ty, "summary_index")?;
                if ty.ends_with(".delta") && s(d, "delta").is_none() {
                    return Err(format!("event {n}: {ty} has no string delta"));
                }
            }
            "response.reasoning_text.delta" | "response.reasoning_text.done" => {
                v_item(&mut items, d, ty, "reasoning")?;
            }
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                v_item(&mut items, d, ty, "function_call")?;
                let key = if ty.ends_with(".delta") { "delta" } else { "arguments" };
                if s(d, key).is_none() {
                    return Err(format!("event {n}: {ty} has no string {key}"));
                }
            }
            "response.completed" | "response.incomplete" => {
                if let Some(i) = items.iter().position(|it| !it.done) {
                    return Err(format!("event {n}: {ty} while output item {i} is not done"));
                }
                v_status(d, ty, if ty == "response.completed" { "completed" } else { "incomplete" })?;
                terminal = Some(ty.to_string());
            }
            "response.failed" => {
                v_status(d, ty, "failed")?;
                let has_error = d
                    .get("response")
                    .and_then(|r| r.get("error"))
                    .and_then(Value::as_object)
                    .is_some_and(|e| s(e, "message").is_some());
                if !has_error {
                    return Err(format!("event {n}: response.failed without response.error.message"));
                }
                terminal = Some(ty.to_string());
            }
            "error" => terminal = Some(ty.to_string()),
            "keepalive" => {}
            other => return Err(format!("event {n}: unknown event type {other:?}")),
        }
    }
    if terminal.is_none() {
        return Err("the stream ends without response.completed, response.incomplete or response.failed".into());
    }
    Ok(())
}
