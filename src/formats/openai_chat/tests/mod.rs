//! Unit tests of the OpenAI Chat format, one file per concern; the fixtures and helpers they
//! share are here.

mod build;
mod decode;
mod encode;
mod garbage;
mod request;
mod response;
mod validate;

use super::{build_request, decoder, encoder, parse_request, parse_response, render_error, render_response};
use crate::formats::testing::{start, targs, text, think, tstart};
use crate::formats::{Format, FormatError, ParseContext, StreamDecoder, StreamEncoder};
use crate::protocol::canonical::{
    ChatRequest, ChatResponse, FinishReason, ImageSource, Message, Part, ResponseFormat, Role, StreamEvent,
    ThinkingConfig, ToolChoice, ToolDef, Usage,
};
use crate::sse;
use serde_json::{json, Value};

use crate::formats::grammar::ValidateStream as _;

/// The OpenAI Chat stream grammar (`tests/support/grammar/openai_chat.rs`).
fn validate_stream(bytes: &[u8]) -> Result<(), String> {
    crate::formats::Format::OpenAiChat.validate_stream(bytes)
}

const FIX_REQ: [(&str, &str, &str); 4] = [
    (
        "plain",
        include_str!("../../../../tests/fixtures/openai_chat/req_plain.json"),
        include_str!("../../../../tests/fixtures/openai_chat/req_plain.canonical.json"),
    ),
    (
        "tools",
        include_str!("../../../../tests/fixtures/openai_chat/req_tools.json"),
        include_str!("../../../../tests/fixtures/openai_chat/req_tools.canonical.json"),
    ),
    (
        "image",
        include_str!("../../../../tests/fixtures/openai_chat/req_image.json"),
        include_str!("../../../../tests/fixtures/openai_chat/req_image.canonical.json"),
    ),
    (
        "json_schema",
        include_str!("../../../../tests/fixtures/openai_chat/req_json_schema.json"),
        include_str!("../../../../tests/fixtures/openai_chat/req_json_schema.canonical.json"),
    ),
];
const STREAM_TOOLS: &str = include_str!("../../../../tests/fixtures/openai_chat/stream_openai_tools.sse");
const STREAM_DEEPSEEK: &str = include_str!("../../../../tests/fixtures/openai_chat/stream_deepseek_reasoner.sse");
const STREAM_OPENROUTER: &str = include_str!("../../../../tests/fixtures/openai_chat/stream_openrouter_reasoning.sse");
const STREAM_OLLAMA: &str = include_str!("../../../../tests/fixtures/openai_chat/stream_ollama_tool.sse");
const RESP_TOOLS: &str = include_str!("../../../../tests/fixtures/openai_chat/resp_openai_tools.json");
const RESP_DEEPSEEK: &str = include_str!("../../../../tests/fixtures/openai_chat/resp_deepseek_reasoner.json");

fn parse(body: &str) -> Result<ChatRequest, FormatError> {
    parse_request(body.as_bytes(), &ParseContext::default())
}

fn canonical(text: &str) -> ChatRequest {
    serde_json::from_str(text).unwrap()
}

fn decode(bytes: &[u8]) -> Result<Vec<StreamEvent>, FormatError> {
    crate::formats::testing::decode_all(decoder(), bytes)
}

fn encode(events: &[StreamEvent], error: Option<(u16, &str)>) -> Vec<u8> {
    crate::formats::testing::encode_all(encoder("client-model"), events, error)
}

fn usage(input: u64, output: u64, read: u64, write: u64, reasoning: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: reasoning,
        estimated: false,
    }
}
