//! The upstream stream decoder: `streamGenerateContent?alt=sse` events → canonical events.

use super::chunk::ChunkState;
use crate::formats::{FormatError, StreamDecoder};
use crate::protocol::canonical::StreamEvent;
use serde_json::Value;

#[derive(Default)]
pub struct Decoder {
    st: ChunkState,
}

impl StreamDecoder for Decoder {
    fn feed(&mut self, _event: Option<&str>, data: &str) -> Result<Vec<StreamEvent>, FormatError> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| FormatError::malformed(format!("Gemini stream event is not valid JSON: {e}")))?;
        self.st.chunk(&v)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError> {
        if self.st.finished {
            Ok(Vec::new())
        } else {
            Err(FormatError::malformed("Gemini stream ended before a chunk with a finishReason"))
        }
    }
}

/// A decoder for an upstream Gemini SSE stream.
pub fn decoder() -> Decoder {
    Decoder::default()
}
