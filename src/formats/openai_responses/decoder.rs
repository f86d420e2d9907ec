//! The upstream stream decoder: Responses SSE events → canonical events.

use super::upstream_response::{
    call_arguments, call_id_of, finish_reason, incomplete_reason, output_to_parts, parse_usage, reasoning_fields,
    texts, upstream_error,
};
use super::REDACTED_PREFIX;
use crate::formats::reasoning::{seal, Origin};
use crate::formats::walk::{str_of, Obj};
use crate::formats::{FormatError, StreamDecoder};
use crate::protocol::canonical::{Part, StreamEvent};
use serde_json::Value;
use std::collections::HashMap;

/// The kind of an upstream output item.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Message,
    Reasoning,
    Call,
    Other,
}

/// An upstream output item being streamed, and what it has streamed so far.
struct DecItem {
    kind: Kind,
    id: String,
    /// Streamed text (message) or reasoning text.
    text: String,
    /// Streamed arguments (call).
    args: String,
    ordinal: u32,
}

/// Reads an upstream Responses stream.
pub struct Decoder {
    started: bool,
    ended: bool,
    next_ordinal: u32,
    next_key: u64,
    items: HashMap<u64, DecItem>,
    saw_items: bool,
    saw_call: bool,
}

/// A decoder for an upstream Responses stream.
pub fn decoder() -> Decoder {
    Decoder {
        started: false,
        ended: false,
        next_ordinal: 0,
        next_key: 1 << 40,
        items: HashMap::new(),
        saw_items: false,
        saw_call: false,
    }
}

impl Decoder {
    fn key(&self, d: &Obj) -> Option<u64> {
        if let Some(i) = d.get("output_index").and_then(Value::as_u64) {
            return Some(i);
        }
        let id = str_of(d, "item_id")?;
        self.items.iter().find(|(_, it)| it.id == id).map(|(k, _)| *k)
    }

    fn item_mut(&mut self, d: &Obj) -> Option<&mut DecItem> {
        let k = self.key(d)?;
        self.items.get_mut(&k)
    }

    fn start_call(&mut self, item: &Obj, out: &mut Vec<StreamEvent>) -> DecItem {
        let ordinal = self.next_ordinal;
        self.next_ordinal = self.next_ordinal.saturating_add(1);
        self.saw_call = true;
        out.push(StreamEvent::ToolCallStart {
            index: ordinal,
            id: call_id_of(item),
            name: str_of(item, "name").unwrap_or_default().to_string(),
            signature: None,
        });
        let args = call_arguments(item);
        if !args.is_empty() {
            out.push(StreamEvent::ToolCallArgs { index: ordinal, delta: args.clone() });
        }
        DecItem {
            kind: Kind::Call,
            id: str_of(item, "id").unwrap_or_default().to_string(),
            text: String::new(),
            args,
            ordinal,
        }
    }

    fn added(&mut self, d: &Obj, out: &mut Vec<StreamEvent>) {
        let Some(item) = d.get("item").and_then(Value::as_object) else { return };
        self.saw_items = true;
        let key = d.get("output_index").and_then(Value::as_u64).unwrap_or_else(|| {
            self.next_key += 1;
            self.next_key
        });
        let kind = match str_of(item, "type") {
            Some("message") => Kind::Message,
            Some("reasoning") => Kind::Reasoning,
            Some("function_call") => Kind::Call,
            _ => Kind::Other,
        };
        let st = if kind == Kind::Call {
            self.start_call(item, out)
        } else {
            let id = str_of(item, "id").unwrap_or_default().to_string();
            DecItem { kind, id, text: String::new(), args: String::new(), ordinal: 0 }
        };
        self.items.insert(key, st);
    }

    fn done(&mut self, d: &Obj, out: &mut Vec<StreamEvent>) {
        let Some(item) = d.get("item").and_then(Value::as_object) else { return };
        self.saw_items = true;
        let st = self.key(d).and_then(|k| self.items.remove(&k));
        match str_of(item, "type") {
            Some("function_call") => {
                let mut st = match st {
                    Some(st) if st.kind == Kind::Call => st,
                    _ => self.start_call(item, out),
                };
                let full = call_arguments(item);
                args_remainder(&mut st, &full, out);
            }
            Some("message") => {
                let text = texts(item, "content").concat();
                if st.is_none_or(|st| st.text.is_empty()) && !text.is_empty() {
                    out.push(StreamEvent::Text(text));
                }
            }
            Some("reasoning") => {
                let streamed = st.map(|st| st.text).unwrap_or_default();
                let (text, ec) = reasoning_fields(item);
                let mut have_text = !streamed.is_empty();
                if !have_text && !text.is_empty() {
                    out.push(StreamEvent::Thinking(text));
                    have_text = true;
                }
                if let Some(ec) = ec {
                    out.push(match ec.strip_prefix(REDACTED_PREFIX) {
                        Some(data) => StreamEvent::RedactedThinking(data.to_string()),
                        None if have_text => StreamEvent::ThinkingSignature(seal(Origin::Responses, &ec)),
                        None => StreamEvent::RedactedThinking(seal(Origin::Responses, &ec)),
                    });
                }
            }
            _ => {}
        }
    }

    fn terminal(&mut self, ty: &str, d: &Obj, out: &mut Vec<StreamEvent>) {
        self.ended = true;
        let resp = d.get("response").and_then(Value::as_object);
        if !self.saw_items {
            let output = resp.and_then(|r| r.get("output")).and_then(Value::as_array);
            for part in output.map(|o| output_to_parts(o)).unwrap_or_default() {
                self.part_events(part, out);
            }
        }
        if let Some(u) = resp.and_then(|r| r.get("usage")).and_then(parse_usage) {
            out.push(StreamEvent::Usage(u));
        }
        let status = if ty == "response.incomplete" { "incomplete" } else { "completed" };
        out.push(StreamEvent::Finish(finish_reason(status, resp.and_then(incomplete_reason), self.saw_call)));
    }

    /// Events for a whole part (a stream that only reported its final response object).
    fn part_events(&mut self, part: Part, out: &mut Vec<StreamEvent>) {
        match part {
            Part::Text { text } => out.push(StreamEvent::Text(text)),
            Part::Thinking { text, signature } => {
                out.push(StreamEvent::Thinking(text));
                out.extend(signature.map(StreamEvent::ThinkingSignature));
            }
            Part::RedactedThinking { data } => out.push(StreamEvent::RedactedThinking(data)),
            Part::ToolCall { id, name, arguments, .. } => {
                let index = self.next_ordinal;
                self.next_ordinal = self.next_ordinal.saturating_add(1);
                self.saw_call = true;
                out.push(StreamEvent::ToolCallStart { index, id, name, signature: None });
                out.push(StreamEvent::ToolCallArgs { index, delta: arguments });
            }
            Part::Image { .. } | Part::ToolResult { .. } => {}
        }
    }
}

/// Emit the part of `full` arguments not streamed yet (servers that skip the deltas).
fn args_remainder(st: &mut DecItem, full: &str, out: &mut Vec<StreamEvent>) {
    if let Some(rest) = full.strip_prefix(st.args.as_str()) {
        if !rest.is_empty() {
            out.push(StreamEvent::ToolCallArgs { index: st.ordinal, delta: rest.to_string() });
            st.args.push_str(rest);
        }
    }
}

impl StreamDecoder for Decoder {
    fn feed(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>, FormatError> {
        let mut out = Vec::new();
        let data = data.trim();
        if self.ended || data.is_empty() || data == "[DONE]" {
            return Ok(out);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| FormatError::malformed(format!("upstream stream event is not JSON: {e}")))?;
        let d = v.as_object().ok_or_else(|| FormatError::malformed("upstream stream event is not a JSON object"))?;
        let ty = str_of(d, "type").or(event).unwrap_or_default();
        let delta = str_of(d, "delta").filter(|t| !t.is_empty());
        match ty {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let (false, Some(r)) = (self.started, d.get("response").and_then(Value::as_object)) {
                    self.started = true;
                    let id = str_of(r, "id").unwrap_or_default().to_string();
                    let model = str_of(r, "model").unwrap_or_default().to_string();
                    out.push(StreamEvent::Start { id, model });
                }
            }
            "response.output_item.added" => self.added(d, &mut out),
            "response.output_item.done" => self.done(d, &mut out),
            "response.output_text.delta" | "response.refusal.delta" => {
                if let Some(t) = delta {
                    if let Some(st) = self.item_mut(d) {
                        st.text.push_str(t);
                    }
                    out.push(StreamEvent::Text(t.to_string()));
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(t) = delta {
                    if let Some(st) = self.item_mut(d) {
                        st.text.push_str(t);
                    }
                    out.push(StreamEvent::Thinking(t.to_string()));
                }
            }
            "response.reasoning_summary_part.added" => {
                let later = d.get("summary_index").and_then(Value::as_u64).is_some_and(|i| i > 0);
                if let Some(st) = self.item_mut(d) {
                    if later && !st.text.is_empty() {
                        st.text.push_str("\n\n");
                        out.push(StreamEvent::Thinking("\n\n".into()));
                    }
                }
            }
            "response.function_call_arguments.delta" => {
                if let (Some(t), Some(st)) = (delta, self.item_mut(d)) {
                    if st.kind == Kind::Call {
                        st.args.push_str(t);
                        out.push(StreamEvent::ToolCallArgs { index: st.ordinal, delta: t.to_string() });
                    }
                }
            }
            "response.function_call_arguments.done" => {
                let full = str_of(d, "arguments").unwrap_or_default().to_string();
                if let Some(st) = self.item_mut(d) {
                    if st.kind == Kind::Call {
                        args_remainder(st, &full, &mut out);
                    }
                }
            }
            "response.completed" | "response.incomplete" => self.terminal(ty, d, &mut out),
            "response.failed" => {
                self.ended = true;
                let resp = d.get("response").and_then(Value::as_object);
                return Err(upstream_error(resp.and_then(|r| r.get("error")).and_then(Value::as_object)));
            }
            "error" | "" => {
                let nested = d.get("error").and_then(Value::as_object);
                if ty.is_empty() && nested.is_none() {
                    return Ok(out);
                }
                self.ended = true;
                return Err(upstream_error(Some(nested.unwrap_or(d))));
            }
            _ => {}
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError> {
        if self.ended {
            Ok(Vec::new())
        } else {
            Err(FormatError::malformed("upstream stream ended before response.completed"))
        }
    }
}
