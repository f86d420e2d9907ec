//! Test support: checkers of each wire API's stream grammar (event order, required fields,
//! indexes, terminal events). Only tests use them, so they are not compiled into the library:
//! integration tests include this folder with `#[path]`, and the library's own unit tests
//! include the same files under `#[cfg(test)]` (`src/formats/mod.rs`).
//!
//! `format.validate_stream(bytes)` reads as before through the [`ValidateStream`] trait.
#![allow(dead_code)]

mod anthropic;
mod gemini;
mod openai_chat;
mod openai_responses;

use ailurus::formats::Format;
use ailurus::sse;
use serde_json::{Map, Value};

/// A JSON object.
type Obj = Map<String, Value>;

/// Checks a whole client stream against the API's event grammar.
pub trait ValidateStream {
    /// `Ok` if `bytes` is a complete, well-formed stream of this API; else what is wrong.
    fn validate_stream(self, bytes: &[u8]) -> Result<(), String>;
}

impl ValidateStream for Format {
    fn validate_stream(self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Format::AnthropicMessages => anthropic::validate_stream(bytes),
            Format::OpenAiChat => openai_chat::validate_stream(bytes),
            Format::OpenAiResponses => openai_responses::validate_stream(bytes),
            Format::GeminiGenerate => gemini::validate_stream(bytes),
        }
    }
}

/// A string field, or `None` when absent or of another type.
fn s<'a>(o: &'a Obj, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}
