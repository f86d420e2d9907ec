//! Client wire formats. One module per API; each owns its private wire types and converts
//! them to and from the canonical model ([`crate::protocol::canonical`]) in both
//! directions — as the format a client speaks to us, and as the format we speak to an
//! upstream of that kind:
//!
//! | function | direction |
//! |---|---|
//! | `parse_request(body, ctx)` | client request → `ChatRequest` |
//! | `render_response(resp, model)` | `ChatResponse` → client JSON body |
//! | `encoder(model)` | `StreamEvent`s → client stream bytes (SSE) |
//! | `render_error(status, msg)` | error → client error body |
//! | `build_request(req, model)` | `ChatRequest` → upstream request body |
//! | `parse_response(body)` | upstream JSON body → `ChatResponse` |
//! | `decoder()` | upstream SSE events → `StreamEvent`s |
//!
//! Adding a fifth format: a new module with these functions, a [`Format`] variant, and the
//! arms in the `match`es below (the compiler lists them).

pub mod anthropic;
pub mod gemini;
pub mod openai_chat;
pub mod openai_responses;
pub mod passthrough;
pub mod reasoning;
#[cfg(test)]
mod testing;
mod walk;

/// The stream grammar checkers of `tests/support/grammar`, for the unit tests.
#[cfg(test)]
#[path = "../../tests/support/grammar/mod.rs"]
pub(crate) mod grammar;

use crate::protocol::canonical::{ChatRequest, ChatResponse, StreamEvent};
pub use crate::protocol::tag::{Format, Op};
use crate::sse;
use std::fmt;

/// What a parser needs besides the body.
#[derive(Debug, Clone, Default)]
pub struct ParseContext {
    /// Model from the URL (Gemini puts it in the path; it wins over any body field).
    pub model: Option<String>,
    /// The operation.
    pub op: Op,
}

/// A conversion failure: a client's bad request (4xx), a feature that cannot be mapped
/// (400 naming it), or an upstream error event / malformed upstream data (5xx, 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// HTTP-like status.
    pub status: u16,
    /// Safe to show the caller.
    pub message: String,
}

impl FormatError {
    /// A 400 for a client's bad request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into() }
    }

    /// A 400 for a feature this conversion cannot carry; the message names it.
    pub fn unsupported(feature: &str, from: Format, to: Format) -> Self {
        Self { status: 400, message: format!("{feature} cannot be converted from {from} to {to}") }
    }

    /// A 502 for upstream data that breaks its own format.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self { status: 502, message: message.into() }
    }
}

impl From<FormatError> for crate::error::RequestError {
    fn from(e: FormatError) -> Self {
        Self::new(e.status, e.message)
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for FormatError {}

/// Turns canonical stream events into a client's stream bytes.
pub trait StreamEncoder: Send {
    /// Append the bytes for one event. The first call also writes any preamble
    /// (e.g. Anthropic `message_start`, Responses `response.created`).
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>);
    /// Append the closing bytes after the last event (e.g. `message_stop`, `data: [DONE]`).
    fn finish(&mut self, out: &mut Vec<u8>);
    /// Append an in-stream error (the upstream failed after the first byte). Nothing
    /// follows it.
    fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>);
}

/// Turns an upstream's SSE events into canonical stream events.
pub trait StreamDecoder: Send {
    /// Feed one SSE event (its `event:` name, if any, and its `data:` text). An upstream
    /// error event (Anthropic `error`, Responses `response.failed`, an OpenAI `error`
    /// object) is an `Err` with the upstream's status.
    fn feed(&mut self, event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>, FormatError>;
    /// The stream ended. Errors when it ended before the API's final event.
    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError>;
}

impl Format {
    /// Client request → canonical.
    pub fn parse_request(self, body: &[u8], ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
        match self {
            Self::AnthropicMessages => anthropic::parse_request(body, ctx),
            Self::OpenAiChat => openai_chat::parse_request(body, ctx),
            Self::OpenAiResponses => openai_responses::parse_request(body, ctx),
            Self::GeminiGenerate => gemini::parse_request(body, ctx),
        }
    }

    /// Canonical answer → client body. `model` is the name the client asked for.
    pub fn render_response(self, resp: &ChatResponse, model: &str) -> Vec<u8> {
        match self {
            Self::AnthropicMessages => anthropic::render_response(resp, model),
            Self::OpenAiChat => openai_chat::render_response(resp, model),
            Self::OpenAiResponses => openai_responses::render_response(resp, model),
            Self::GeminiGenerate => gemini::render_response(resp, model),
        }
    }

    /// A stream encoder for a client. `model` is the name the client asked for.
    pub fn encoder(self, model: &str) -> Box<dyn StreamEncoder> {
        match self {
            Self::AnthropicMessages => Box::new(anthropic::encoder(model)),
            Self::OpenAiChat => Box::new(openai_chat::encoder(model)),
            Self::OpenAiResponses => Box::new(openai_responses::encoder(model)),
            Self::GeminiGenerate => Box::new(gemini::encoder(model)),
        }
    }

    /// An error body in the client's shape.
    pub fn render_error(self, status: u16, message: &str) -> Vec<u8> {
        match self {
            Self::AnthropicMessages => anthropic::render_error(status, message),
            Self::OpenAiChat => openai_chat::render_error(status, message),
            Self::OpenAiResponses => openai_responses::render_error(status, message),
            Self::GeminiGenerate => gemini::render_error(status, message),
        }
    }

    /// A count-tokens answer in the client's shape (Anthropic and Gemini have one; the
    /// OpenAI formats get Anthropic's `{"input_tokens": n}`).
    pub fn render_count_tokens(self, tokens: u64) -> Vec<u8> {
        match self {
            Self::GeminiGenerate => gemini::render_count_tokens(tokens),
            Self::AnthropicMessages | Self::OpenAiChat | Self::OpenAiResponses => {
                format!("{{\"input_tokens\":{tokens}}}").into_bytes()
            }
        }
    }

    /// Canonical → upstream request body, with `model` as the upstream model name.
    pub fn build_request(self, req: &ChatRequest, model: &str) -> Result<Vec<u8>, FormatError> {
        match self {
            Self::AnthropicMessages => anthropic::build_request(req, model),
            Self::OpenAiChat => openai_chat::build_request(req, model),
            Self::OpenAiResponses => openai_responses::build_request(req, model),
            Self::GeminiGenerate => gemini::build_request(req, model),
        }
    }

    /// Upstream JSON body → canonical answer.
    pub fn parse_response(self, body: &[u8]) -> Result<ChatResponse, FormatError> {
        match self {
            Self::AnthropicMessages => anthropic::parse_response(body),
            Self::OpenAiChat => openai_chat::parse_response(body),
            Self::OpenAiResponses => openai_responses::parse_response(body),
            Self::GeminiGenerate => gemini::parse_response(body),
        }
    }

    /// A decoder for an upstream's stream.
    pub fn decoder(self) -> Box<dyn StreamDecoder> {
        match self {
            Self::AnthropicMessages => Box::new(anthropic::decoder()),
            Self::OpenAiChat => Box::new(openai_chat::decoder()),
            Self::OpenAiResponses => Box::new(openai_responses::decoder()),
            Self::GeminiGenerate => Box::new(gemini::decoder()),
        }
    }

    /// The error event that ends a stream of which `events` SSE events already reached the
    /// client (a pass-through stream that broke, or a bridge whose worker went silent). The
    /// client has the preamble (Responses `response.created`, Anthropic `message_start`…),
    /// so a fresh encoder is primed with a start, its output discarded, and writes only the
    /// failure; where the format numbers its events (`sequence_number`), the numbering
    /// continues after `events` instead of restarting at 0.
    pub fn continuation_error(self, id: &str, model: &str, events: u64, status: u16, message: &str) -> Vec<u8> {
        let mut enc = self.encoder(model);
        enc.event(&StreamEvent::Start { id: id.to_string(), model: model.to_string() }, &mut Vec::new());
        let mut bytes = Vec::new();
        enc.error(status, message, &mut bytes);
        let Ok(parsed) = sse::parse(&bytes) else {
            return bytes;
        };
        let mut out = Vec::with_capacity(bytes.len() + 16);
        let mut seq = events;
        for ev in parsed {
            match serde_json::from_str::<serde_json::Value>(&ev.data) {
                Ok(mut v) if v.get("sequence_number").is_some() => {
                    v["sequence_number"] = seq.into();
                    seq += 1;
                    sse::json_frame(&mut out, ev.event.as_deref(), &v);
                }
                _ => sse::frame(&mut out, ev.event.as_deref(), &ev.data),
            }
        }
        out
    }
}
