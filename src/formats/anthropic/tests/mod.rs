//! Unit tests of the Anthropic format: fixtures and helpers shared by the test files beside this one.

mod build;
mod decoder;
mod encoder;
mod grammar;
mod request;
mod response;
mod robustness;

use super::*;
use crate::formats::grammar::ValidateStream as _;
use crate::formats::{Format, Op, ParseContext, StreamDecoder as _, StreamEncoder as _};
use crate::protocol::canonical::{ChatRequest, ChatResponse, ImageSource, Message, Role, StreamEvent, ThinkingConfig};
use crate::sse;
use std::collections::HashMap;

/// The stream grammar checker of `tests/support/grammar`, for Anthropic Messages.
fn validate_stream(bytes: &[u8]) -> Result<(), String> {
    crate::formats::Format::AnthropicMessages.validate_stream(bytes)
}

const CLAUDE_CODE: &str = include_str!("../../../../tests/fixtures/anthropic/claude_code_request.json");
const PARSE_CASES: &str = include_str!("../../../../tests/fixtures/anthropic/parse_cases.json");
const BUILD_CASES: &str = include_str!("../../../../tests/fixtures/anthropic/build_cases.json");
const UPSTREAM_STREAM: &str = include_str!("../../../../tests/fixtures/anthropic/upstream_stream.sse");
const UPSTREAM_RESPONSE: &str = include_str!("../../../../tests/fixtures/anthropic/upstream_response.json");

/// The `ParseContext` a case in `parse_cases.json` asks for.
fn ctx_of(v: Option<&Value>) -> ParseContext {
    let model = v.and_then(|c| c.get("model")).and_then(Value::as_str).map(str::to_string);
    let op = v.and_then(|c| c.get("op")).and_then(Value::as_str).and_then(Op::parse).unwrap_or_default();
    ParseContext { model, op }
}

/// Parse a body given as a JSON value.
fn parse_value(v: &Value) -> Result<ChatRequest, FormatError> {
    parse_request(v.to_string().as_bytes(), &ParseContext::default())
}

// ----- streams -------------------------------------------------------------------

/// Encode `events` as a whole client stream.
fn encode(events: &[StreamEvent], model: &str) -> Vec<u8> {
    crate::formats::testing::encode_all(encoder(model), events, None)
}

/// Decode a whole upstream stream.
fn decode(bytes: &[u8]) -> Result<Vec<StreamEvent>, FormatError> {
    crate::formats::testing::decode_all(decoder(), bytes)
}

/// The event names of a stream.
fn names(bytes: &[u8]) -> Vec<String> {
    sse::parse(bytes).unwrap().into_iter().map(|e| e.event.unwrap_or_default()).collect()
}

/// What a client would assemble from a stream: parts in order, last usage, finish.
#[derive(Debug, PartialEq)]
struct Summary {
    parts: Vec<Part>,
    usage: Usage,
    finish: FinishReason,
}

fn summarize(events: &[StreamEvent]) -> Summary {
    let mut parts: Vec<Part> = Vec::new();
    let mut tool_pos: HashMap<u32, usize> = HashMap::new();
    let mut usage = Usage::default();
    let mut finish = FinishReason::Stop;
    for ev in events {
        match ev {
            StreamEvent::Start { .. } => {}
            StreamEvent::Text(t) if t.is_empty() => {}
            StreamEvent::Text(t) => match parts.last_mut() {
                Some(Part::Text { text }) => text.push_str(t),
                _ => parts.push(Part::text(t.clone())),
            },
            StreamEvent::Thinking(t) if t.is_empty() => {}
            StreamEvent::Thinking(t) => match parts.last_mut() {
                Some(Part::Thinking { text, signature: None }) => text.push_str(t),
                _ => parts.push(Part::Thinking { text: t.clone(), signature: None }),
            },
            StreamEvent::ThinkingSignature(s) => match parts.last_mut() {
                Some(Part::Thinking { signature: sig @ None, .. }) => *sig = Some(s.clone()),
                _ => parts.push(Part::Thinking { text: String::new(), signature: Some(s.clone()) }),
            },
            StreamEvent::RedactedThinking(d) => parts.push(Part::RedactedThinking { data: d.clone() }),
            StreamEvent::ToolCallStart { index, id, name, .. } => {
                tool_pos.insert(*index, parts.len());
                parts.push(Part::ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: None,
                });
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                if let Some(Part::ToolCall { arguments, .. }) = tool_pos.get(index).and_then(|&p| parts.get_mut(p)) {
                    arguments.push_str(delta);
                }
            }
            StreamEvent::Usage(u) => usage = *u,
            StreamEvent::Finish(f) => finish = *f,
        }
    }
    for p in &mut parts {
        if let Part::ToolCall { arguments, .. } = p {
            if let Ok(v) = serde_json::from_str::<Value>(arguments) {
                *arguments = v.to_string();
            }
        }
    }
    Summary { parts, usage, finish }
}

/// Encode, validate, decode, and compare what a client would assemble.
fn check_stream(name: &str, events: &[StreamEvent]) -> Vec<u8> {
    let bytes = encode(events, "client-model");
    let text = String::from_utf8_lossy(&bytes).to_string();
    validate_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    let Some(StreamEvent::Start { id, model }) = decoded.first() else { panic!("{name}: no Start") };
    assert_eq!(model, "client-model", "{name}");
    assert!(id.starts_with("msg_"), "{name}");
    if let Some(StreamEvent::Start { id: upstream, .. }) = events.first() {
        assert_eq!(*id, message_id(upstream), "{name}");
    }
    assert_eq!(summarize(&decoded), summarize(events), "{name}\n{text}");
    bytes
}

fn usage(i: u64, o: u64) -> Usage {
    Usage { input_tokens: i, output_tokens: o, cache_read_tokens: 7, cache_write_tokens: 3, ..Default::default() }
}

fn tool_start(i: u32, name: &str) -> StreamEvent {
    StreamEvent::ToolCallStart { index: i, id: format!("toolu_{i}"), name: name.into(), signature: None }
}

fn args(i: u32, d: &str) -> StreamEvent {
    StreamEvent::ToolCallArgs { index: i, delta: d.into() }
}
