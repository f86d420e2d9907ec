//! One call to an upstream and what it answers: canonical events (the mock), server-sent
//! events or a whole JSON body in the upstream's own format.

use super::error::ProviderError;
use crate::protocol::canonical::StreamEvent;
use crate::sse::SseEvent;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of canonical events (the mock).
pub type EventStream = BoxStream<'static, Result<StreamEvent, ProviderError>>;
/// A stream of raw SSE events from an HTTP upstream, timeouts applied.
pub type SseStream = BoxStream<'static, Result<SseEvent, ProviderError>>;

/// What an upstream answered.
pub enum UpstreamBody {
    /// Canonical events (the mock).
    Events(EventStream),
    /// Server-sent events in the upstream's format.
    Sse(SseStream),
    /// A whole JSON body in the upstream's format.
    Json(Bytes),
}

/// One call to an upstream.
pub struct UpstreamCall<'a> {
    /// The request, canonical (the mock reads it; HTTP kinds send `body`).
    pub chat: &'a crate::protocol::canonical::ChatRequest,
    /// The upstream body, already in the upstream's format (ignored by the mock).
    pub body: Bytes,
    /// Model name the upstream gets (in the body already; Gemini also needs it in the URL).
    pub model: &'a str,
    /// Ask for a stream.
    pub stream: bool,
    /// Client headers forwarded on pass-through (`anthropic-beta`, `anthropic-version`, …).
    pub forward_headers: &'a [(String, String)],
    /// Which of the channel's keys to use (taken modulo their number; the router picks it:
    /// round robin, or the key a session is pinned to).
    pub key: usize,
}
