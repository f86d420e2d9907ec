//! The client stream encoder: canonical `StreamEvent`s → Messages SSE.

use super::errors::error_json;
use super::{message_id, new_id, stop_reason, usage_json};
use crate::formats::StreamEncoder;
use crate::protocol::canonical::{FinishReason, StreamEvent, Usage};
use crate::sse;
use serde_json::{json, Value};
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Thinking { signed: bool },
    Tool { ordinal: u32 },
}

struct PendingTool {
    ordinal: u32,
    id: String,
    name: String,
    signature: Option<String>,
    args: String,
}

/// Writes the Messages SSE grammar: `message_start`, content blocks with indices 0,1,2…,
/// `message_delta`, `message_stop` (or a terminal `error`).
pub struct Encoder {
    model: String,
    id: Option<String>,
    started: bool,
    done: bool,
    next_index: u32,
    open: Open,
    open_index: u32,
    pending: Vec<PendingTool>,
    tools_seen: HashSet<u32>,
    usage: Usage,
    finish: Option<FinishReason>,
}

/// A stream encoder for a client; `model` is the client's model name.
pub fn encoder(model: &str) -> Encoder {
    Encoder {
        model: model.to_string(),
        id: None,
        started: false,
        done: false,
        next_index: 0,
        open: Open::None,
        open_index: 0,
        pending: Vec::new(),
        tools_seen: HashSet::new(),
        usage: Usage::default(),
        finish: None,
    }
}

impl Encoder {
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = self.id.get_or_insert_with(|| new_id("msg_")).clone();
        let mut usage = usage_json(&self.usage);
        if let Some(u) = usage.as_object_mut() {
            u.insert("output_tokens".into(), json!(0));
        }
        sse::json_frame(
            out,
            Some("message_start"),
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage,
            }}),
        );
    }

    /// An unsigned thinking block open for more text or its signature (closing whatever
    /// else is open).
    fn ensure_unsigned_thinking(&mut self, out: &mut Vec<u8>) {
        if self.open != (Open::Thinking { signed: false }) {
            self.close_all(out);
            self.open_block(
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                Open::Thinking { signed: false },
                out,
            );
        }
    }

    fn open_block(&mut self, block: Value, kind: Open, out: &mut Vec<u8>) {
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        self.open = kind;
        self.open_index = index;
        sse::json_frame(
            out,
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        sse::json_frame(
            out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": self.open_index, "delta": delta}),
        );
    }

    fn stop_block(index: u32, out: &mut Vec<u8>) {
        sse::json_frame(out, Some("content_block_stop"), &json!({"type": "content_block_stop", "index": index}));
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if self.open != Open::None {
            Self::stop_block(self.open_index, out);
            self.open = Open::None;
        }
    }

    /// Close the open block and emit any buffered tool calls whole.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close_open(out);
        for t in std::mem::take(&mut self.pending) {
            self.open_tool(t.ordinal, &t.id, &t.name, t.signature.as_deref(), out);
            if !t.args.is_empty() {
                self.delta(json!({"type": "input_json_delta", "partial_json": t.args}), out);
            }
            self.close_open(out);
        }
    }

    /// Open a `tool_use` block (nothing may be open), preceded by a signed empty thinking
    /// block when the call carries a (Gemini) signature.
    fn open_tool(&mut self, ordinal: u32, id: &str, name: &str, signature: Option<&str>, out: &mut Vec<u8>) {
        if let Some(sig) = signature.filter(|s| !s.is_empty()) {
            self.open_block(
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                Open::Thinking { signed: true },
                out,
            );
            self.delta(json!({"type": "signature_delta", "signature": sig}), out);
            self.close_open(out);
        }
        let id = if id.is_empty() { new_id("toolu_") } else { id.to_string() };
        self.open_block(json!({"type": "tool_use", "id": id, "name": name, "input": {}}), Open::Tool { ordinal }, out);
    }

    fn tool_start(&mut self, ordinal: u32, id: &str, name: &str, signature: Option<&str>, out: &mut Vec<u8>) {
        if !self.tools_seen.insert(ordinal) {
            return; // a repeated start for the same call
        }
        if matches!(self.open, Open::Tool { .. }) {
            self.pending.push(PendingTool {
                ordinal,
                id: id.to_string(),
                name: name.to_string(),
                signature: signature.map(str::to_string),
                args: String::new(),
            });
        } else {
            self.close_all(out);
            self.open_tool(ordinal, id, name, signature, out);
        }
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let StreamEvent::Start { id, .. } = ev {
            if !self.started && !id.is_empty() {
                self.id = Some(message_id(id));
            }
        }
        // `message_start` waits for the first content so it can carry any early usage.
        if !matches!(ev, StreamEvent::Usage(_) | StreamEvent::Start { .. }) {
            self.start(out);
        }
        match ev {
            StreamEvent::Start { .. } => {}
            StreamEvent::Text(t) => {
                if t.is_empty() {
                    return;
                }
                if self.open != Open::Text {
                    self.close_all(out);
                    self.open_block(json!({"type": "text", "text": ""}), Open::Text, out);
                }
                self.delta(json!({"type": "text_delta", "text": t}), out);
            }
            StreamEvent::Thinking(t) => {
                if t.is_empty() {
                    return;
                }
                self.ensure_unsigned_thinking(out);
                self.delta(json!({"type": "thinking_delta", "thinking": t}), out);
            }
            StreamEvent::ThinkingSignature(s) => {
                self.ensure_unsigned_thinking(out);
                self.delta(json!({"type": "signature_delta", "signature": s}), out);
                self.open = Open::Thinking { signed: true };
            }
            StreamEvent::RedactedThinking(data) => {
                self.close_all(out);
                self.open_block(json!({"type": "redacted_thinking", "data": data}), Open::None, out);
                Self::stop_block(self.open_index, out);
            }
            StreamEvent::ToolCallStart { index, id, name, signature } => {
                self.tool_start(*index, id, name, signature.as_deref(), out)
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                if !self.tools_seen.contains(index) {
                    self.tool_start(*index, "", "", None, out);
                }
                if self.open == (Open::Tool { ordinal: *index }) {
                    if !delta.is_empty() {
                        self.delta(json!({"type": "input_json_delta", "partial_json": delta}), out);
                    }
                } else if let Some(t) = self.pending.iter_mut().find(|t| t.ordinal == *index) {
                    t.args.push_str(delta);
                }
                // Otherwise the call's block is closed already: documented drop.
            }
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::Finish(f) => {
                self.finish = Some(*f);
                self.close_all(out);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close_all(out);
        let reason = stop_reason(self.finish.unwrap_or(FinishReason::Stop));
        sse::json_frame(
            out,
            Some("message_delta"),
            &json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
                    "usage": usage_json(&self.usage)}),
        );
        sse::json_frame(out, Some("message_stop"), &json!({"type": "message_stop"}));
        self.done = true;
    }

    fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        sse::json_frame(out, Some("error"), &error_json(status, message));
        self.done = true;
    }
}
