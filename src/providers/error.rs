//! Upstream failures, classified for failover: connect, timeout, status, protocol, invalid
//! request. Messages never hold secrets.

use std::fmt;
use std::time::Duration;

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

impl From<ProviderError> for crate::error::RequestError {
    fn from(e: ProviderError) -> Self {
        Self { status: e.status(), message: e.to_string(), retry_after: e.retry_after.map(|d| d.as_secs().max(1)) }
    }
}
