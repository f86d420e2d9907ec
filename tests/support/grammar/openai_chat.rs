//! The event grammar of a OpenAI Chat Completions stream.

use super::*;

const FINISH_REASONS: [&str; 5] = ["stop", "length", "tool_calls", "content_filter", "function_call"];

#[derive(Default)]
struct StreamCheck {
    id: Option<String>,
    model: Option<String>,
    created: Option<i64>,
    saw_choice: bool,
    finished: bool,
    tools: usize,
}

impl StreamCheck {
    fn chunk(&mut self, n: usize, v: &Value) -> Result<(), String> {
        let at = format!("event {n}");
        if v.get("object").and_then(Value::as_str) != Some("chat.completion.chunk") {
            return Err(format!("{at}: object is not \"chat.completion.chunk\""));
        }
        let id = v.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let id = id.ok_or_else(|| format!("{at}: id missing"))?;
        if *self.id.get_or_insert_with(|| id.to_string()) != id {
            return Err(format!("{at}: id {id:?} differs from the first chunk's"));
        }
        let model = v.get("model").and_then(Value::as_str).ok_or_else(|| format!("{at}: model missing"))?;
        if *self.model.get_or_insert_with(|| model.to_string()) != model {
            return Err(format!("{at}: model {model:?} differs from the first chunk's"));
        }
        let created = v.get("created").and_then(Value::as_i64).ok_or_else(|| format!("{at}: created missing"))?;
        if *self.created.get_or_insert(created) != created {
            return Err(format!("{at}: created differs from the first chunk's"));
        }
        let choices = v.get("choices").and_then(Value::as_array).ok_or_else(|| format!("{at}: choices missing"))?;
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            check_usage(u).map_err(|e| format!("{at}: {e}"))?;
        }
        if choices.is_empty() {
            if !self.finished {
                return Err(format!("{at}: a chunk without choices before the finish_reason"));
            }
            if v.get("usage").is_none_or(Value::is_null) {
                return Err(format!("{at}: a chunk without choices must carry usage"));
            }
            return Ok(());
        }
        if self.finished {
            return Err(format!("{at}: only usage chunks may follow the finish_reason"));
        }
        let [choice] = choices.as_slice() else {
            return Err(format!("{at}: more than one choice"));
        };
        if choice.get("index").and_then(Value::as_u64) != Some(0) {
            return Err(format!("{at}: choices[0].index is not 0"));
        }
        if choice.get("logprobs").is_some_and(|l| !l.is_null()) {
            return Err(format!("{at}: logprobs must be null"));
        }
        let delta = choice.get("delta").filter(|d| d.is_object()).ok_or_else(|| format!("{at}: delta missing"))?;
        match delta.get("role") {
            None | Some(Value::Null) if self.saw_choice => {}
            Some(Value::String(r)) if r == "assistant" => {}
            _ if !self.saw_choice => return Err(format!("{at}: the first chunk's delta has no role \"assistant\"")),
            _ => return Err(format!("{at}: delta.role is not \"assistant\"")),
        }
        self.saw_choice = true;
        for key in ["content", "reasoning_content", "refusal"] {
            match delta.get(key) {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => return Err(format!("{at}: delta.{key} is not a string")),
            }
        }
        if let Some(calls) = delta.get("tool_calls").filter(|c| !c.is_null()) {
            let calls = calls.as_array().ok_or_else(|| format!("{at}: delta.tool_calls is not an array"))?;
            for (k, tc) in calls.iter().enumerate() {
                self.tool_call(tc).map_err(|e| format!("{at}: tool_calls[{k}]: {e}"))?;
            }
        }
        match choice.get("finish_reason") {
            None | Some(Value::Null) => {}
            Some(Value::String(f)) if FINISH_REASONS.contains(&f.as_str()) => self.finished = true,
            Some(other) => return Err(format!("{at}: finish_reason {other} is not valid")),
        }
        Ok(())
    }

    fn tool_call(&mut self, tc: &Value) -> Result<(), String> {
        let index = tc.get("index").and_then(Value::as_u64).ok_or("index missing")?;
        let func = tc.get("function").filter(|f| f.is_object()).ok_or("function missing")?;
        match func.get("arguments") {
            None | Some(Value::String(_)) => {}
            Some(_) => return Err("function.arguments is not a string".into()),
        }
        let known = usize::try_from(index).map_err(|_| "index out of range")?;
        if known < self.tools {
            if tc.get("id").is_some() || tc.get("type").is_some() || func.get("name").is_some() {
                return Err(format!("index {index}: id/type/name repeated after the first fragment"));
            }
            return Ok(());
        }
        if known != self.tools {
            return Err(format!("index {index} skips ahead (next new call is {})", self.tools));
        }
        if tc.get("id").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("index {index}: the first fragment has no id"));
        }
        if tc.get("type").and_then(Value::as_str) != Some("function") {
            return Err(format!("index {index}: the first fragment's type is not \"function\""));
        }
        if func.get("name").and_then(Value::as_str).is_none() {
            return Err(format!("index {index}: the first fragment has no function.name"));
        }
        self.tools += 1;
        Ok(())
    }
}

fn check_usage(u: &Value) -> Result<(), String> {
    let field = |k: &str| u.get(k).and_then(Value::as_u64).ok_or_else(|| format!("usage.{k} missing"));
    let (p, c, t) = (field("prompt_tokens")?, field("completion_tokens")?, field("total_tokens")?);
    if p.saturating_add(c) != t {
        return Err("usage.total_tokens is not prompt_tokens + completion_tokens".into());
    }
    Ok(())
}

fn check_error(v: &Value) -> Result<(), String> {
    let e = v.get("error").filter(|e| e.is_object()).ok_or("error is not an object")?;
    if e.get("message").and_then(Value::as_str).is_none() {
        return Err("error.message missing".into());
    }
    if e.get("type").and_then(Value::as_str).is_none() {
        return Err("error.type missing".into());
    }
    Ok(())
}

/// Checks a client stream: `data:` chunks (no event names), `[DONE]` last after a
/// finish_reason, or a terminal error object.
pub fn validate_stream(bytes: &[u8]) -> Result<(), String> {
    let events = sse::parse(bytes)?;
    if events.is_empty() {
        return Err("empty stream".into());
    }
    let last = events.len() - 1;
    let mut check = StreamCheck::default();
    for (n, ev) in events.iter().enumerate() {
        if let Some(name) = &ev.event {
            return Err(format!("event {n}: Chat Completions streams have no event names (got {name:?})"));
        }
        if ev.data == "[DONE]" {
            if n != last {
                return Err(format!("event {n}: [DONE] is not the last event"));
            }
            if !check.finished {
                return Err(format!("event {n}: [DONE] before any finish_reason"));
            }
            return Ok(());
        }
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| format!("event {n}: data is not JSON: {e}"))?;
        if v.get("error").is_some() {
            check_error(&v).map_err(|e| format!("event {n}: {e}"))?;
            if n != last {
                return Err(format!("event {n}: events follow the error"));
            }
            return Ok(());
        }
        check.chunk(n, &v)?;
    }
    Err("stream ends without data: [DONE] or an error".into())
}
