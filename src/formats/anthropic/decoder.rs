//! The upstream stream decoder: Anthropic Messages SSE → canonical `StreamEvent`s.

use super::errors::upstream_error;
use super::{finish_from_stop_reason, malformed, read_usage};
use crate::formats::reasoning::{seal, Origin};
use crate::formats::walk::{str_of, Obj};
use crate::formats::{FormatError, StreamDecoder};
use crate::protocol::canonical::{FinishReason, StreamEvent, Usage};
use serde_json::Value;
use std::collections::HashMap;

/// What an open upstream content block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    Redacted,
    Tool { ordinal: u32 },
}

/// Decodes a real Anthropic Messages stream. `StreamEvent` tool indices are tool ordinals
/// (0,1,2… over `tool_use` blocks), not block indices.
pub struct Decoder {
    blocks: HashMap<u64, Block>,
    tools: u32,
    usage: Usage,
    finished: bool,
    stopped: bool,
}

/// A decoder for an upstream Anthropic stream.
pub fn decoder() -> Decoder {
    Decoder { blocks: HashMap::new(), tools: 0, usage: Usage::default(), finished: false, stopped: false }
}

impl Decoder {
    fn block_index(o: &Obj, ty: &str) -> Result<u64, FormatError> {
        o.get("index").and_then(Value::as_u64).ok_or_else(|| malformed(format!("upstream {ty} has no index")))
    }

    fn block_start(&mut self, o: &Obj) -> Result<Vec<StreamEvent>, FormatError> {
        let index = Self::block_index(o, "content_block_start")?;
        let b = o
            .get("content_block")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("upstream content_block_start has no content_block"))?;
        let s = |k: &str| str_of(b, k).unwrap_or_default().to_string();
        let mut out = Vec::new();
        let kind = match str_of(b, "type").unwrap_or_default() {
            "text" => {
                let t = s("text");
                if !t.is_empty() {
                    out.push(StreamEvent::Text(t));
                }
                Block::Text
            }
            "thinking" => {
                let t = s("thinking");
                if !t.is_empty() {
                    out.push(StreamEvent::Thinking(t));
                }
                let sig = s("signature");
                if !sig.is_empty() {
                    out.push(StreamEvent::ThinkingSignature(seal(Origin::Anthropic, &sig)));
                }
                Block::Thinking
            }
            "redacted_thinking" => {
                out.push(StreamEvent::RedactedThinking(seal(Origin::Anthropic, &s("data"))));
                Block::Redacted
            }
            "tool_use" => {
                let ordinal = self.tools;
                self.tools = self.tools.saturating_add(1);
                out.push(StreamEvent::ToolCallStart { index: ordinal, id: s("id"), name: s("name"), signature: None });
                if let Some(input) = b.get("input").and_then(Value::as_object).filter(|i| !i.is_empty()) {
                    out.push(StreamEvent::ToolCallArgs {
                        index: ordinal,
                        delta: Value::Object(input.clone()).to_string(),
                    });
                }
                Block::Tool { ordinal }
            }
            other => {
                return Err(malformed(format!(
                    "upstream content block type {other:?} (a server tool block) is not supported"
                )))
            }
        };
        self.blocks.insert(index, kind);
        Ok(out)
    }

    fn block_delta(&mut self, o: &Obj) -> Result<Vec<StreamEvent>, FormatError> {
        let index = Self::block_index(o, "content_block_delta")?;
        let kind = *self
            .blocks
            .get(&index)
            .ok_or_else(|| malformed(format!("upstream content_block_delta for unknown block {index}")))?;
        let d = o
            .get("delta")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("upstream content_block_delta has no delta"))?;
        let s = |k: &str| str_of(d, k).unwrap_or_default().to_string();
        let dty = str_of(d, "type").unwrap_or_default();
        Ok(match (dty, kind) {
            ("text_delta", Block::Text) => vec![StreamEvent::Text(s("text"))],
            ("citations_delta", Block::Text) => Vec::new(),
            ("thinking_delta", Block::Thinking) => vec![StreamEvent::Thinking(s("thinking"))],
            ("signature_delta", Block::Thinking) => {
                vec![StreamEvent::ThinkingSignature(seal(Origin::Anthropic, &s("signature")))]
            }
            ("input_json_delta", Block::Tool { ordinal }) => {
                let delta = s("partial_json");
                if delta.is_empty() {
                    Vec::new()
                } else {
                    vec![StreamEvent::ToolCallArgs { index: ordinal, delta }]
                }
            }
            _ => return Err(malformed(format!("upstream delta {dty:?} does not fit block {index} ({kind:?})"))),
        })
    }
}

impl StreamDecoder for Decoder {
    fn feed(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>, FormatError> {
        if self.stopped {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(data.trim())
            .map_err(|e| malformed(format!("upstream event {:?} data is not JSON: {e}", event.unwrap_or(""))))?;
        let Some(o) = v.as_object() else {
            return Err(malformed("upstream event data is not a JSON object"));
        };
        let ty = str_of(o, "type").or(event).unwrap_or_default();
        match ty {
            "message_start" => {
                let m = o.get("message").and_then(Value::as_object);
                let s = |k: &str| m.and_then(|m| str_of(m, k)).unwrap_or_default().to_string();
                let usage = m.and_then(|m| m.get("usage")).filter(|u| u.is_object());
                read_usage(usage, &mut self.usage);
                let mut out = vec![StreamEvent::Start { id: s("id"), model: s("model") }];
                // The prompt's usage is known now; a client's `message_start` should carry it.
                if usage.is_some() {
                    out.push(StreamEvent::Usage(self.usage));
                }
                Ok(out)
            }
            "content_block_start" => self.block_start(o),
            "content_block_delta" => self.block_delta(o),
            "message_delta" => {
                read_usage(o.get("usage"), &mut self.usage);
                let reason = o.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str);
                self.finished = true;
                Ok(vec![StreamEvent::Usage(self.usage), StreamEvent::Finish(finish_from_stop_reason(reason))])
            }
            "message_stop" => {
                self.stopped = true;
                if self.finished {
                    Ok(Vec::new())
                } else {
                    self.finished = true;
                    Ok(vec![StreamEvent::Usage(self.usage), StreamEvent::Finish(FinishReason::Stop)])
                }
            }
            "error" => Err(upstream_error(o)),
            // content_block_stop, ping, and event types added later: nothing to emit.
            _ => Ok(Vec::new()),
        }
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError> {
        if self.stopped {
            Ok(Vec::new())
        } else {
            Err(malformed("upstream stream ended before message_stop"))
        }
    }
}
