//! Canonical stream events → client SSE: the `chat.completion.chunk` encoder.

use super::response::{chat_id, error_json, finish_str, usage_json};
use super::{new_id, now_unix};
use crate::formats::StreamEncoder;
use crate::protocol::canonical::{StreamEvent, Usage};
use crate::sse;
use serde_json::{json, Value};

/// Writes `chat.completion.chunk` frames, then `data: [DONE]`.
pub struct Encoder {
    model: String,
    id: Option<String>,
    created: i64,
    /// Canonical tool index → Chat tool index, in order of first appearance.
    tools: Vec<u32>,
    finished: bool,
    usage: Option<Usage>,
    done: bool,
}

/// A stream encoder for a client; `model` is the name the client asked for.
pub fn encoder(model: &str) -> Encoder {
    Encoder {
        model: model.to_string(),
        id: None,
        created: now_unix(),
        tools: Vec::new(),
        finished: false,
        usage: None,
        done: false,
    }
}

impl Encoder {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id.as_deref().unwrap_or(""),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn ensure_started(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.id.is_some() {
            return;
        }
        self.id = Some(chat_id(upstream_id.unwrap_or("")));
        let first = self.chunk(json!({"role": "assistant", "content": ""}), None);
        sse::json_frame(out, None, &first);
    }

    fn delta(&mut self, delta: Value, out: &mut Vec<u8>) {
        self.ensure_started(None, out);
        let chunk = self.chunk(delta, None);
        sse::json_frame(out, None, &chunk);
    }

    fn tool_start(&mut self, index: u32, id: &str, name: &str, out: &mut Vec<u8>) -> usize {
        let pos = self.tools.len();
        self.tools.push(index);
        let id = if id.is_empty() { new_id("call_") } else { id.to_string() };
        self.delta(
            json!({"tool_calls": [{
                "index": pos,
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }]}),
            out,
        );
        pos
    }

    fn finish_chunk(&mut self, reason: &str, out: &mut Vec<u8>) {
        self.ensure_started(None, out);
        let chunk = self.chunk(json!({}), Some(reason));
        sse::json_frame(out, None, &chunk);
        self.finished = true;
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.finished {
            // Only usage may follow a finish_reason.
            if let StreamEvent::Usage(u) = ev {
                self.usage = Some(*u);
            }
            return;
        }
        match ev {
            StreamEvent::Start { id, .. } => self.ensure_started(Some(id), out),
            StreamEvent::Text(t) => {
                if !t.is_empty() {
                    self.delta(json!({"content": t}), out);
                }
            }
            StreamEvent::Thinking(t) => {
                if !t.is_empty() {
                    self.delta(json!({"reasoning_content": t}), out);
                }
            }
            // No Chat slot for signatures or opaque reasoning (documented lossy).
            StreamEvent::ThinkingSignature(_) | StreamEvent::RedactedThinking(_) => {}
            StreamEvent::ToolCallStart { index, id, name, .. } => {
                self.tool_start(*index, id, name, out);
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                let pos = match self.tools.iter().position(|i| i == index) {
                    Some(p) => p,
                    None => self.tool_start(*index, "", "", out),
                };
                if !delta.is_empty() {
                    self.delta(json!({"tool_calls": [{"index": pos, "function": {"arguments": delta}}]}), out);
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish_chunk(finish_str(*f), out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.finished {
            let reason = if self.tools.is_empty() { "stop" } else { "tool_calls" };
            self.finish_chunk(reason, out);
        }
        if let Some(u) = self.usage {
            let chunk = json!({
                "id": self.id.as_deref().unwrap_or(""),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_json(&u),
            });
            sse::json_frame(out, None, &chunk);
        }
        sse::frame(out, None, "[DONE]");
        self.done = true;
    }

    fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        sse::json_frame(out, None, &error_json(status, message));
        self.done = true;
    }
}
