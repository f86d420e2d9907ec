//! Folding a stream of [`StreamEvent`]s into a whole [`ChatResponse`], and back. Used when
//! a client wants a whole body but the upstream streamed (or the reverse), and to keep the
//! answer text for the seed reply, chat sync and billing.

use super::canonical::{ChatResponse, FinishReason, Part, StreamEvent, Usage};

/// Builds a [`ChatResponse`] from stream events.
#[derive(Debug, Default, Clone)]
pub struct Accumulator {
    /// Upstream id, from `Start`.
    id: Option<String>,
    /// Upstream model, from `Start`.
    model: Option<String>,
    /// Parts so far, in order.
    parts: Vec<Part>,
    /// Part index of each tool call ordinal.
    tool_slots: Vec<usize>,
    /// Last usage seen.
    usage: Option<Usage>,
    /// Finish reason, once seen.
    finish: Option<FinishReason>,
    /// Answer text only (what the seed reply and chat sync show).
    text: String,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold one event in.
    pub fn push(&mut self, ev: &StreamEvent) {
        match ev {
            StreamEvent::Start { id, model } => {
                self.id = Some(id.clone());
                self.model = Some(model.clone());
            }
            StreamEvent::Text(t) => {
                self.text.push_str(t);
                match self.parts.last_mut() {
                    Some(Part::Text { text }) => text.push_str(t),
                    _ => self.parts.push(Part::text(t.clone())),
                }
            }
            StreamEvent::Thinking(t) => match self.parts.last_mut() {
                Some(Part::Thinking { text, signature: None }) => text.push_str(t),
                _ => self.parts.push(Part::Thinking { text: t.clone(), signature: None }),
            },
            StreamEvent::ThinkingSignature(sig) => match self.parts.last_mut() {
                Some(Part::Thinking { signature, .. }) if signature.is_none() => *signature = Some(sig.clone()),
                _ => self.parts.push(Part::Thinking { text: String::new(), signature: Some(sig.clone()) }),
            },
            StreamEvent::RedactedThinking(data) => self.parts.push(Part::RedactedThinking { data: data.clone() }),
            StreamEvent::ToolCallStart { index, id, name, signature } => {
                let slot = self.parts.len();
                self.parts.push(Part::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: signature.clone(),
                });
                let i = *index as usize;
                if self.tool_slots.len() <= i {
                    self.tool_slots.resize(i + 1, usize::MAX);
                }
                self.tool_slots[i] = slot;
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                if let Some(&slot) = self.tool_slots.get(*index as usize) {
                    if let Some(Part::ToolCall { arguments, .. }) = self.parts.get_mut(slot) {
                        arguments.push_str(delta);
                    }
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish = Some(*f),
        }
    }

    /// The answer text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Usage, if the upstream reported any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The finish reason, if seen.
    pub fn finish(&self) -> Option<FinishReason> {
        self.finish
    }

    /// The parts so far (thinking, text, tool calls), in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The upstream's model, from `Start`.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether any part of an answer arrived.
    pub fn has_content(&self) -> bool {
        !self.parts.is_empty()
    }

    /// The whole response (usage as reported, or `fallback_usage`).
    pub fn into_response(self, fallback_model: &str, fallback_usage: Usage) -> ChatResponse {
        let has_tools = self.parts.iter().any(|p| matches!(p, Part::ToolCall { .. }));
        let finish = self.finish.unwrap_or(if has_tools { FinishReason::ToolUse } else { FinishReason::Stop });
        ChatResponse {
            id: self.id.unwrap_or_else(|| format!("gen_{}", nuid::next())),
            model: self.model.unwrap_or_else(|| fallback_model.to_string()),
            content: self.parts,
            finish,
            usage: self.usage.unwrap_or(fallback_usage),
        }
    }
}

/// The events that stream a whole response (for a streaming client of a non-streaming
/// upstream).
pub fn to_events(resp: &ChatResponse) -> Vec<StreamEvent> {
    let mut out = vec![StreamEvent::Start { id: resp.id.clone(), model: resp.model.clone() }];
    let mut tool = 0u32;
    for part in &resp.content {
        match part {
            Part::Text { text } => out.push(StreamEvent::Text(text.clone())),
            Part::Thinking { text, signature } => {
                out.push(StreamEvent::Thinking(text.clone()));
                if let Some(sig) = signature {
                    out.push(StreamEvent::ThinkingSignature(sig.clone()));
                }
            }
            Part::RedactedThinking { data } => out.push(StreamEvent::RedactedThinking(data.clone())),
            Part::ToolCall { id, name, arguments, signature } => {
                out.push(StreamEvent::ToolCallStart {
                    index: tool,
                    id: id.clone(),
                    name: name.clone(),
                    signature: signature.clone(),
                });
                out.push(StreamEvent::ToolCallArgs { index: tool, delta: arguments.clone() });
                tool += 1;
            }
            // Answers carry no images or tool results; nothing to stream for them.
            Part::Image { .. } | Part::ToolResult { .. } => {}
        }
    }
    out.push(StreamEvent::Finish(resp.finish));
    out.push(StreamEvent::Usage(resp.usage));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_events() {
        let resp = ChatResponse {
            id: "r1".into(),
            model: "m".into(),
            content: vec![
                Part::Thinking { text: "hmm".into(), signature: Some("sig".into()) },
                Part::text("Hello"),
                Part::ToolCall { id: "c1".into(), name: "f".into(), arguments: "{\"a\":1}".into(), signature: None },
                Part::ToolCall { id: "c2".into(), name: "g".into(), arguments: "{}".into(), signature: None },
            ],
            finish: FinishReason::ToolUse,
            usage: Usage { input_tokens: 3, output_tokens: 4, ..Default::default() },
        };
        let mut acc = Accumulator::new();
        for ev in to_events(&resp) {
            acc.push(&ev);
        }
        assert_eq!(acc.text(), "Hello");
        assert_eq!(acc.into_response("x", Usage::default()), resp);
    }

    #[test]
    fn split_arguments_and_text_join() {
        let mut acc = Accumulator::new();
        for ev in [
            StreamEvent::Text("a".into()),
            StreamEvent::Text("b".into()),
            StreamEvent::ToolCallStart { index: 0, id: "x".into(), name: "f".into(), signature: None },
            StreamEvent::ToolCallArgs { index: 0, delta: "{\"q\":".into() },
            StreamEvent::ToolCallArgs { index: 0, delta: "2}".into() },
            StreamEvent::ToolCallArgs { index: 7, delta: "ignored".into() },
        ] {
            acc.push(&ev);
        }
        let r = acc.into_response("m", Usage::default());
        assert_eq!(r.finish, FinishReason::ToolUse);
        assert_eq!(r.content[0], Part::text("ab"));
        assert!(matches!(&r.content[1], Part::ToolCall { arguments, .. } if arguments == "{\"q\":2}"));
    }
}
