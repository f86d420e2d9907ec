//! Upstream providers. Each kind lives in its own module with private wire types; all of
//! them produce the normalised [`StreamEvent`] stream. The set of kinds is closed
//! ([`ProviderKind`]) and matched exhaustively.

pub mod mock;

use crate::protocol::canonical::ChatRequest;
pub use crate::protocol::canonical::StreamEvent;
use futures::stream::BoxStream;
use std::fmt;
use std::time::Duration;

/// The closed set of upstream kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// The built-in deterministic provider.
    Mock,
}

impl ProviderKind {
    /// The config spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mock => "mock",
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
    /// The upstream answered with this HTTP status.
    Status(u16),
    /// The upstream broke its own wire format, or failed mid-stream.
    Protocol,
    /// The request was invalid for this provider (not retried elsewhere).
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

    /// Whether another channel may be tried (before the first byte only).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ProviderErrorKind::Connect | ProviderErrorKind::Timeout | ProviderErrorKind::Protocol => true,
            ProviderErrorKind::Status(s) => s == 429 || s >= 500,
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

/// A running upstream answer.
pub type EventStream = BoxStream<'static, Result<StreamEvent, ProviderError>>;

/// A configured upstream, ready to call.
#[derive(Debug, Clone)]
pub enum Provider {
    /// The built-in mock.
    Mock(mock::MockProvider),
}

impl Provider {
    /// Which kind this is.
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Mock(_) => ProviderKind::Mock,
        }
    }

    /// Start an answer for `req`, sending `upstream_model` as the model name. Errors
    /// returned here happen before any byte of the answer.
    pub async fn stream(&self, req: &ChatRequest, upstream_model: &str) -> Result<EventStream, ProviderError> {
        match self {
            Self::Mock(m) => m.stream(req, upstream_model),
        }
    }
}
