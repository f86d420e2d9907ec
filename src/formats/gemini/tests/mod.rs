//! Unit tests of the Gemini format, one file per concern; the fixtures and helpers they share.

use crate::formats::grammar::ValidateStream as _;

fn validate_stream(bytes: &[u8]) -> Result<(), String> {
    crate::formats::Format::GeminiGenerate.validate_stream(bytes)
}

mod request;
mod response;
mod robustness;
mod stream;
mod upstream_request;

use super::chunk::upstream_error;
use super::parts::args_object;
use super::upstream_response::fold_events;
use super::*;
use crate::formats::reasoning;
use crate::formats::{FormatError, Op, ParseContext, StreamDecoder, StreamEncoder};
use crate::protocol::canonical::{
    ChatRequest, ChatResponse, FinishReason, ImageSource, Message, Part, ResponseFormat, Role, StreamEvent,
    ThinkingConfig, ToolChoice, ToolDef, Usage,
};
use crate::sse;
use serde_json::{json, Value};

const CLI_GENERATE: &str = include_str!("../../../../tests/fixtures/gemini/cli_generate.json");
const CLI_STREAM: &str = include_str!("../../../../tests/fixtures/gemini/cli_stream.json");
const UP_TOOL: &str = include_str!("../../../../tests/fixtures/gemini/upstream_stream_tool.sse");
const UP_TEXT: &str = include_str!("../../../../tests/fixtures/gemini/upstream_stream_text.sse");
const UP_RESPONSE: &str = include_str!("../../../../tests/fixtures/gemini/upstream_response.json");

fn ctx(op: Op, model: Option<&str>) -> ParseContext {
    ParseContext { model: model.map(str::to_string), op }
}

fn gen() -> ParseContext {
    ctx(Op::Generate, Some("gemini-2.5-pro"))
}

/// Every key of `expected` is in `actual` with an equal value (objects recursively;
/// arrays element-wise with the same length).
fn subset(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let av = a.get(k).ok_or_else(|| format!("{path}.{k} missing in {actual}"))?;
                subset(ev, av, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!("{path}: expected {} items, got {}: {actual}", e.len(), a.len()));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                subset(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{path}: expected {expected}, got {actual}")),
    }
}

fn check_ok(name: &str, op: Op, body: Value, expected: Value) {
    let req = parse_request(body.to_string().as_bytes(), &ctx(op, Some("gemini-2.5-pro")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let actual = serde_json::to_value(&req).unwrap();
    if let Err(e) = subset(&expected, &actual, "") {
        panic!("{name}: {e}\nfull: {actual}");
    }
}

fn user(parts: Value) -> Value {
    json!({"contents": [{"role": "user", "parts": parts}]})
}

fn usage(input: u64, output: u64, cache: u64, reasoning: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache,
        cache_write_tokens: 0,
        reasoning_tokens: reasoning,
        estimated: false,
    }
}

fn decode_stream(bytes: &[u8]) -> Result<Vec<StreamEvent>, FormatError> {
    crate::formats::testing::decode_all(decoder(), bytes)
}

fn encode(events: &[StreamEvent]) -> Vec<u8> {
    crate::formats::testing::encode_all(encoder("gemini-client"), events, None)
}

fn fold(events: &[StreamEvent]) -> ChatResponse {
    let mut r = ChatResponse {
        id: String::new(),
        model: String::new(),
        content: vec![],
        finish: FinishReason::Stop,
        usage: Usage::default(),
    };
    fold_events(events, &mut r);
    // Compare tool arguments as JSON values (the encoder re-serialises them).
    for p in &mut r.content {
        if let Part::ToolCall { arguments, .. } = p {
            *arguments = args_object(arguments).to_string();
        }
    }
    r
}

fn tool_start(index: u32, id: &str, name: &str, sig: Option<&str>) -> StreamEvent {
    StreamEvent::ToolCallStart { index, id: id.into(), name: name.into(), signature: sig.map(str::to_string) }
}

fn args(index: u32, delta: &str) -> StreamEvent {
    StreamEvent::ToolCallArgs { index, delta: delta.into() }
}
