//! An upstream `GenerateContentResponse` body (or a JSON array of chunks) → canonical.

use super::chunk::ChunkState;
use super::new_id;
use crate::formats::FormatError;
use crate::protocol::canonical::{ChatResponse, FinishReason, Part, StreamEvent, Usage};
use serde_json::Value;
use std::collections::HashMap;

/// Canonical events → the parts of a whole answer (for `parse_response` and tests).
pub(super) fn fold_events(events: &[StreamEvent], resp: &mut ChatResponse) {
    let mut tool_pos: HashMap<u32, usize> = HashMap::new();
    for ev in events {
        let content = &mut resp.content;
        match ev {
            StreamEvent::Start { id, model } => {
                resp.id = id.clone();
                resp.model = model.clone();
            }
            StreamEvent::Text(t) => match content.last_mut() {
                Some(Part::Text { text }) => text.push_str(t),
                _ => content.push(Part::text(t.clone())),
            },
            StreamEvent::Thinking(t) => match content.last_mut() {
                Some(Part::Thinking { text, signature: None }) => text.push_str(t),
                _ => content.push(Part::Thinking { text: t.clone(), signature: None }),
            },
            StreamEvent::ThinkingSignature(s) => match content.last_mut() {
                Some(Part::Thinking { signature: sig @ None, .. }) => *sig = Some(s.clone()),
                _ => content.push(Part::Thinking { text: String::new(), signature: Some(s.clone()) }),
            },
            StreamEvent::RedactedThinking(d) => content.push(Part::RedactedThinking { data: d.clone() }),
            StreamEvent::ToolCallStart { index, id, name, signature } => {
                tool_pos.insert(*index, content.len());
                content.push(Part::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: signature.clone(),
                });
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                if let Some(Part::ToolCall { arguments, .. }) = tool_pos.get(index).and_then(|&i| content.get_mut(i)) {
                    arguments.push_str(delta);
                }
            }
            StreamEvent::Usage(u) => resp.usage = *u,
            StreamEvent::Finish(f) => resp.finish = *f,
        }
    }
}

/// An upstream `GenerateContentResponse` body (or a JSON array of chunks) → canonical.
pub fn parse_response(body: &[u8]) -> Result<ChatResponse, FormatError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| FormatError::malformed(format!("Gemini upstream body is not valid JSON: {e}")))?;
    let mut st = ChunkState::default();
    let mut events = st.chunk(&v)?;
    if !st.finished {
        if !st.saw_candidate {
            return Err(FormatError::malformed("Gemini upstream response has no candidates"));
        }
        events.extend(st.usage.map(StreamEvent::Usage));
        events.push(StreamEvent::Finish(if st.saw_tool { FinishReason::ToolUse } else { FinishReason::Stop }));
    }
    let mut resp = ChatResponse {
        id: String::new(),
        model: String::new(),
        content: Vec::new(),
        finish: FinishReason::Stop,
        usage: Usage::default(),
    };
    fold_events(&events, &mut resp);
    if resp.id.is_empty() {
        resp.id = new_id();
    }
    Ok(resp)
}
