//! Unit tests of the OpenAI Responses format, one file per concern, and the helpers they share.

mod build;
mod codex_defaults;
mod garbage;
mod request;
mod response;
mod stream_decoder;
mod stream_encoder;
mod stream_grammar;

use crate::formats::grammar::ValidateStream as _;
use crate::formats::testing::{targs, text, think, tstart};

fn validate_stream(bytes: &[u8]) -> Result<(), String> {
    crate::formats::Format::OpenAiResponses.validate_stream(bytes)
}

use super::{
    build_request, decoder, encoder, normalize_args, parse_request, parse_response, render_error, render_response,
    Decoder,
};
use crate::formats::{FormatError, ParseContext, StreamDecoder, StreamEncoder};
use crate::protocol::canonical::{
    ChatRequest, ChatResponse, FinishReason, ImageSource, Message, Part, Role, StreamEvent, Usage,
};
use crate::sse;
use serde_json::{json, Value};

const CODEX: &str = include_str!("../../../../tests/fixtures/openai_responses/codex_request.json");

fn parse(body: &str) -> Result<ChatRequest, FormatError> {
    parse_request(body.as_bytes(), &ParseContext::default())
}

fn usage(input: u64, output: u64, cached: u64, reasoning: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: reasoning,
        estimated: false,
    }
}

fn encode(events: &[StreamEvent]) -> Vec<u8> {
    crate::formats::testing::encode_all(encoder("client-model"), events, None)
}

fn decode(bytes: &[u8]) -> Result<Vec<StreamEvent>, FormatError> {
    crate::formats::testing::decode_all(decoder(), bytes)
}

fn sequences() -> Vec<(&'static str, Vec<StreamEvent>)> {
    let u = usage(12, 34, 56, 7);
    vec![
        (
            "thinking, text, two calls, usage after finish",
            vec![
                StreamEvent::Start { id: "msg_01XYZ".into(), model: "claude".into() },
                think("Let me "),
                think("think."),
                StreamEvent::ThinkingSignature("ailurus.responses.EqQBsig==".into()),
                text("Hel"),
                text("lo"),
                tstart(0, "toolu_1", "get_weather"),
                targs(0, "{\"city\""),
                targs(0, ":\"Paris\"}"),
                tstart(1, "toolu_2", "now"),
                targs(1, "{}"),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(u),
            ],
        ),
        (
            "no start, text only, usage before finish",
            vec![text("just text"), StreamEvent::Usage(u), StreamEvent::Finish(FinishReason::Stop)],
        ),
        ("text after a tool call, no finish", vec![tstart(0, "call_1", "f"), targs(0, "{\"a\":1}"), text("after")]),
        ("zero output", vec![StreamEvent::Usage(u), StreamEvent::Finish(FinishReason::Stop)]),
        ("nothing at all", vec![]),
        (
            "redacted thinking then text, length",
            vec![
                StreamEvent::RedactedThinking("ailurus.responses.opaque==".into()),
                text("cut"),
                StreamEvent::Finish(FinishReason::Length),
            ],
        ),
        (
            "interleaved reasoning and text",
            vec![
                think("one"),
                text("a"),
                think("two"),
                StreamEvent::ThinkingSignature("ailurus.responses.s2".into()),
                think("three"),
                StreamEvent::ThinkingSignature("ailurus.responses.s3".into()),
                text("b"),
            ],
        ),
        ("signature without text", vec![StreamEvent::ThinkingSignature("ailurus.responses.gAAAA".into()), text("x")]),
        ("call with no arguments", vec![tstart(0, "c", "noargs"), StreamEvent::Finish(FinishReason::ToolUse)]),
        (
            "parallel calls with interleaved argument fragments (as some Chat servers send)",
            vec![
                tstart(0, "c0", "f"),
                targs(0, "{\"a\":"),
                tstart(1, "c1", "g"),
                targs(1, "{\"b\":"),
                targs(0, "1}"),
                targs(1, "2}"),
                tstart(2, "c2", "h"),
                targs(2, "{}"),
                text("after"),
                StreamEvent::Finish(FinishReason::ToolUse),
            ],
        ),
        ("content filter", vec![text("partial"), StreamEvent::Finish(FinishReason::ContentFilter)]),
        (
            "gemini-style call with signature, stop sequence",
            vec![
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: String::new(),
                    name: "f".into(),
                    signature: Some("ailurus.responses.g".into()),
                },
                targs(0, "{\"x\":[1,2]}"),
                StreamEvent::Finish(FinishReason::StopSequence),
            ],
        ),
    ]
}
