//! Test support for the formats' unit tests: a whole stream through an encoder or a decoder,
//! and short constructors for the stream events the tests spell out.

use super::{FormatError, StreamDecoder, StreamEncoder};
use crate::protocol::canonical::StreamEvent;
use crate::sse;

/// `events` through `enc`, ended by `finish` (or by the error `end` names), as client bytes.
pub(crate) fn encode_all(mut enc: impl StreamEncoder, events: &[StreamEvent], end: Option<(u16, &str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in events {
        enc.event(ev, &mut out);
    }
    match end {
        Some((status, message)) => enc.error(status, message, &mut out),
        None => enc.finish(&mut out),
    }
    out
}

/// A whole upstream SSE stream through `dec`.
pub(crate) fn decode_all(mut dec: impl StreamDecoder, bytes: &[u8]) -> Result<Vec<StreamEvent>, FormatError> {
    let mut out = Vec::new();
    for ev in sse::parse(bytes).map_err(FormatError::malformed)? {
        out.extend(dec.feed(ev.event.as_deref(), &ev.data)?);
    }
    out.extend(dec.end()?);
    Ok(out)
}

/// `Start` with an id and a model.
pub(crate) fn start(id: &str, model: &str) -> StreamEvent {
    StreamEvent::Start { id: id.into(), model: model.into() }
}

/// A text delta.
pub(crate) fn text(t: &str) -> StreamEvent {
    StreamEvent::Text(t.into())
}

/// A thinking delta.
pub(crate) fn think(t: &str) -> StreamEvent {
    StreamEvent::Thinking(t.into())
}

/// The start of tool call `index`, without a signature.
pub(crate) fn tstart(index: u32, id: &str, name: &str) -> StreamEvent {
    StreamEvent::ToolCallStart { index, id: id.into(), name: name.into(), signature: None }
}

/// An arguments delta of tool call `index`.
pub(crate) fn targs(index: u32, delta: &str) -> StreamEvent {
    StreamEvent::ToolCallArgs { index, delta: delta.into() }
}
