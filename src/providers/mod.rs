//! Upstream providers. The set of kinds is closed ([`ProviderKind`]) and matched
//! exhaustively. HTTP kinds share one transport ([`http`]) and differ only in their
//! endpoint, authentication and error shape (one small file each); the wire formats
//! themselves live in [`crate::formats`]. The built-in [`mock`] yields canonical events.

pub mod anthropic;
pub mod call;
pub mod endpoint;
pub mod error;
pub mod gemini;
pub mod http;
pub mod kind;
pub mod mock;
pub mod mock_schema;
pub mod openai;
pub mod openai_responses;

pub use crate::protocol::canonical::StreamEvent;
pub use call::{EventStream, SseStream, UpstreamBody, UpstreamCall};
pub use error::{ProviderError, ProviderErrorKind};
pub use kind::ProviderKind;

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

    /// How many keys it calls with (0 for the mock).
    pub fn key_count(&self) -> usize {
        match self {
            Self::Mock(_) => 0,
            Self::Http(h) => h.key_count(),
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
