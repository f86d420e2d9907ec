//! Upstream providers. The set of kinds is closed ([`ProviderKind`]) and matched
//! exhaustively. HTTP kinds share one transport ([`http`]) and differ only in their
//! endpoint, authentication and error shape (one small file each); the wire formats
//! themselves live in [`crate::formats`]. The built-in [`mock`] yields canonical events.

pub mod anthropic;
pub mod gemini;
pub mod http;
pub mod mock;
pub mod openai;
pub mod openai_responses;

use crate::formats::{sse::SseEvent, Format};
pub use crate::protocol::canonical::StreamEvent;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::fmt;
use std::time::Duration;

/// The closed set of upstream kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI Chat Completions and compatibles (DeepSeek, Qwen, Ollama, vLLM, OpenRouter, NEW-API).
    OpenAi,
    /// The OpenAI Responses API.
    OpenAiResponses,
    /// The Anthropic Messages API (also a NEW-API host's `/v1/messages`).
    Anthropic,
    /// The Gemini API.
    Gemini,
    /// The built-in deterministic provider.
    Mock,
}

impl ProviderKind {
    /// Every kind.
    pub const ALL: [ProviderKind; 5] = [Self::OpenAi, Self::OpenAiResponses, Self::Anthropic, Self::Gemini, Self::Mock];

    /// The config spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::OpenAiResponses => "openai_responses",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Mock => "mock",
        }
    }

    /// Parse the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The wire format this kind speaks (`None` for the mock, which yields canonical events).
    pub const fn format(self) -> Option<Format> {
        match self {
            Self::OpenAi => Some(Format::OpenAiChat),
            Self::OpenAiResponses => Some(Format::OpenAiResponses),
            Self::Anthropic => Some(Format::AnthropicMessages),
            Self::Gemini => Some(Format::GeminiGenerate),
            Self::Mock => None,
        }
    }
}

/// What went wrong upstream, classified for failover decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderErrorKind {
    /// Could not connect.
    Connect,
    /// A connect, first-byte, idle or total timeout.
    Timeout,
    /// The upstream answered with this HTTP status (or an error event carrying it).
    Status(u16),
    /// The upstream broke its own wire format, or the connection broke mid-stream.
    Protocol,
    /// The request cannot be served by this provider (not retried elsewhere).
    InvalidRequest,
}

/// An upstream failure. `message` never holds secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// Classification.
    pub kind: ProviderErrorKind,
    /// Human-readable detail.
    pub message: String,
    /// The upstream's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    /// Build an error of a kind.
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after: None }
    }

    /// Whether another channel may be tried (before the first byte only): connect errors,
    /// timeouts, broken streams, 429 and 5xx. Other 4xx are the request's fault.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ProviderErrorKind::Connect | ProviderErrorKind::Timeout | ProviderErrorKind::Protocol => true,
            ProviderErrorKind::Status(s) => s == 429 || s == 408 || s >= 500,
            ProviderErrorKind::InvalidRequest => false,
        }
    }

    /// The HTTP-like status to report to the caller.
    pub fn status(&self) -> u16 {
        match self.kind {
            ProviderErrorKind::Status(s) if (400..600).contains(&s) => s,
            ProviderErrorKind::Status(_) | ProviderErrorKind::Connect | ProviderErrorKind::Protocol => 502,
            ProviderErrorKind::Timeout => 504,
            ProviderErrorKind::InvalidRequest => 400,
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ProviderErrorKind::Status(s) => write!(f, "upstream status {s}: {}", self.message),
            ProviderErrorKind::Connect => write!(f, "upstream connect error: {}", self.message),
            ProviderErrorKind::Timeout => write!(f, "upstream timeout: {}", self.message),
            ProviderErrorKind::Protocol => write!(f, "upstream protocol error: {}", self.message),
            ProviderErrorKind::InvalidRequest => write!(f, "invalid request: {}", self.message),
        }
    }
}

impl std::error::Error for ProviderError {}

impl From<crate::formats::FormatError> for ProviderError {
    fn from(e: crate::formats::FormatError) -> Self {
        match e.status {
            502 => ProviderError::new(ProviderErrorKind::Protocol, e.message),
            400..=499 if e.status != 429 && e.status != 408 => {
                ProviderError::new(ProviderErrorKind::Status(e.status), e.message)
            }
            s => ProviderError::new(ProviderErrorKind::Status(s), e.message),
        }
    }
}

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
}

/// A configured upstream, ready to call.
#[derive(Debug)]
pub enum Provider {
    /// The built-in mock.
    Mock(mock::MockProvider),
    /// An HTTP upstream of one of the HTTP kinds.
    Http(http::HttpProvider),
}

impl Provider {
    /// Which kind this is.
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Mock(_) => ProviderKind::Mock,
            Self::Http(h) => h.kind(),
        }
    }

    /// Start an answer. Errors returned here happen before any byte of the answer.
    pub async fn call(&self, call: UpstreamCall<'_>) -> Result<UpstreamBody, ProviderError> {
        match self {
            Self::Mock(m) => m.stream(call.chat, call.model).map(UpstreamBody::Events),
            Self::Http(h) => h.call(call).await,
        }
    }

    /// Secrets this provider holds, for redaction.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Self::Mock(_) => Vec::new(),
            Self::Http(h) => h.secrets(),
        }
    }
}
