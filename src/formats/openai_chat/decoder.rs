//! Upstream SSE → canonical stream events: the `chat.completion.chunk` decoder, which
//! reassembles tool calls from their fragments.

use super::new_id;
use super::upstream_wire::{
    arguments_text, content_pieces, find_error, parse_finish, parse_usage, reasoning_of, upstream_error,
};
use crate::formats::{FormatError, StreamDecoder};
use crate::protocol::canonical::StreamEvent;
use serde_json::Value;

/// One upstream tool call being reassembled from its fragments.
struct ToolSlot {
    /// The upstream `index` (or the slot's position when the server sends none).
    upstream: Option<u64>,
    id: Option<String>,
    name: Option<String>,
    started: bool,
    pending: String,
}

/// Decodes `chat.completion.chunk` streams (OpenAI, DeepSeek, Qwen, Ollama, vLLM, OpenRouter).
#[derive(Default)]
pub struct Decoder {
    started: bool,
    done: bool,
    finished: bool,
    tools: Vec<ToolSlot>,
}

/// A decoder for an upstream stream.
pub fn decoder() -> Decoder {
    Decoder::default()
}

impl Decoder {
    fn slot_for(&mut self, index: Option<u64>, id: Option<&str>) -> usize {
        let found = match (index, id) {
            (Some(ix), _) => self.tools.iter().rposition(|s| s.upstream == Some(ix)),
            (None, Some(id)) => self.tools.iter().rposition(|s| s.id.as_deref() == Some(id)),
            (None, None) => self.tools.len().checked_sub(1),
        };
        match found {
            // Some servers reuse index 0 for every call; a new id means a new call.
            Some(pos) if !matches!((id, self.tools.get(pos).and_then(|s| s.id.as_deref())), (Some(a), Some(b)) if a != b) => {
                pos
            }
            _ => {
                self.tools.push(ToolSlot {
                    upstream: index,
                    id: None,
                    name: None,
                    started: false,
                    pending: String::new(),
                });
                self.tools.len() - 1
            }
        }
    }

    fn tool_fragment(&mut self, tc: &Value, out: &mut Vec<StreamEvent>) {
        let index = tc.get("index").and_then(Value::as_u64);
        let id = tc.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let func = tc.get("function").unwrap_or(&Value::Null);
        let name = func.get("name").and_then(Value::as_str).filter(|s| !s.is_empty());
        let args = arguments_text(func.get("arguments"));
        let pos = self.slot_for(index, id);
        let Some(slot) = self.tools.get_mut(pos) else { return };
        if slot.id.is_none() {
            slot.id = id.map(str::to_string);
        }
        if slot.name.is_none() {
            slot.name = name.map(str::to_string);
        }
        slot.pending.push_str(&args);
        if slot.name.is_some() {
            Self::start_slot(slot, pos, out);
        }
    }

    fn start_slot(slot: &mut ToolSlot, pos: usize, out: &mut Vec<StreamEvent>) {
        let index = u32::try_from(pos).unwrap_or(u32::MAX);
        if !slot.started {
            slot.started = true;
            let id = slot.id.get_or_insert_with(|| new_id("call_")).clone();
            out.push(StreamEvent::ToolCallStart {
                index,
                id,
                name: slot.name.clone().unwrap_or_default(),
                signature: None,
            });
        }
        if !slot.pending.is_empty() {
            out.push(StreamEvent::ToolCallArgs { index, delta: std::mem::take(&mut slot.pending) });
        }
    }

    /// Start any call whose name never came (so its arguments are not lost).
    fn flush_tools(&mut self, out: &mut Vec<StreamEvent>) {
        for (pos, slot) in self.tools.iter_mut().enumerate() {
            if !slot.started || !slot.pending.is_empty() {
                Self::start_slot(slot, pos, out);
            }
        }
    }

    fn chunk(&mut self, v: &Value) -> Result<Vec<StreamEvent>, FormatError> {
        let mut out = Vec::new();
        if !v.is_object() {
            return Err(FormatError::malformed("upstream stream chunk is not a JSON object"));
        }
        if let Some(err) = find_error(v) {
            return Err(upstream_error(err));
        }
        if !self.started {
            self.started = true;
            let id = match v.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                Some(id) => id.to_string(),
                None => new_id("chatcmpl-"),
            };
            let model = v.get("model").and_then(Value::as_str).unwrap_or("").to_string();
            out.push(StreamEvent::Start { id, model });
        }
        let mut finish = None;
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            for choice in choices {
                if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 || self.finished {
                    continue;
                }
                if let Some(delta) = choice.get("delta").filter(|d| d.is_object()) {
                    let mut text = String::new();
                    let mut thinking = reasoning_of(delta).unwrap_or("").to_string();
                    content_pieces(delta.get("content"), &mut text, &mut thinking);
                    if let Some(r) = delta.get("refusal").and_then(Value::as_str) {
                        text.push_str(r);
                    }
                    if !thinking.is_empty() {
                        out.push(StreamEvent::Thinking(thinking));
                    }
                    if !text.is_empty() {
                        out.push(StreamEvent::Text(text));
                    }
                    if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                        for tc in calls {
                            self.tool_fragment(tc, &mut out);
                        }
                    }
                }
                if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                    finish = Some(parse_finish(f, !self.tools.is_empty()));
                }
            }
        }
        if let Some(f) = finish {
            self.flush_tools(&mut out);
            self.finished = true;
            out.push(StreamEvent::Finish(f));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            out.push(StreamEvent::Usage(parse_usage(u)));
        }
        Ok(out)
    }
}

impl StreamDecoder for Decoder {
    fn feed(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>, FormatError> {
        let data = data.trim();
        if self.done || data.is_empty() {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            self.done = true;
            let mut out = Vec::new();
            self.flush_tools(&mut out);
            return Ok(out);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| FormatError::malformed(format!("upstream stream chunk is not valid JSON: {e}")))?;
        if event == Some("error") {
            return Err(upstream_error(find_error(&v).unwrap_or(&v)));
        }
        self.chunk(&v)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError> {
        if !(self.done || self.finished) {
            return Err(FormatError::malformed("upstream stream ended before a finish_reason or [DONE]"));
        }
        let mut out = Vec::new();
        self.flush_tools(&mut out);
        Ok(out)
    }
}
