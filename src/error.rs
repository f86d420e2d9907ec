//! The one error type of a request's failure, whichever layer refused it (bad input, auth,
//! rate limits, quota, routing, the upstream): an HTTP-like status, a message safe to show the
//! caller, and how long to wait before retrying. Each layer converts into it with `From`,
//! and the worker renders it once, in the caller's own format.

use std::fmt;

/// What kind of failure a status means, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400, 404, 409, 413 and other 4xx the request itself caused.
    BadRequest,
    /// 401: no, unknown, revoked or expired credential.
    Unauthenticated,
    /// 403: the credential may not do this.
    Forbidden,
    /// 402: the quota cannot cover it.
    InsufficientQuota,
    /// 429: a rate limit; `retry_after` says when.
    RateLimited,
    /// 499: the caller went away.
    Cancelled,
    /// 503: no capacity, or a store the request needs is unreachable.
    Unavailable,
    /// 504: a bound on time ran out.
    Timeout,
    /// Any other 5xx: the upstream or the gateway failed.
    Upstream,
}

/// A request-level failure with its HTTP-like status; the message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// HTTP-like status (`Ailurus-Status`, the HTTP answer's status).
    pub status: u16,
    /// What went wrong, for the caller; never holds a secret.
    pub message: String,
    /// Seconds to wait before retrying, for 429 / 503.
    pub retry_after: Option<u64>,
}

impl RequestError {
    /// An error with a status and message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }

    /// A 503 for a store the request needs (`"quota store"`, `"rate limit store"`) that did
    /// not answer.
    pub fn unavailable(store: &str, e: impl fmt::Display) -> Self {
        Self { status: 503, message: format!("{store} unavailable: {e}"), retry_after: None }
    }

    /// The same error, with a retry hint in seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// What the status means.
    pub const fn kind(&self) -> ErrorKind {
        match self.status {
            401 => ErrorKind::Unauthenticated,
            402 => ErrorKind::InsufficientQuota,
            403 => ErrorKind::Forbidden,
            429 => ErrorKind::RateLimited,
            499 => ErrorKind::Cancelled,
            503 => ErrorKind::Unavailable,
            504 => ErrorKind::Timeout,
            400..=498 => ErrorKind::BadRequest,
            _ => ErrorKind::Upstream,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_status() {
        for (status, kind) in [
            (400, ErrorKind::BadRequest),
            (401, ErrorKind::Unauthenticated),
            (402, ErrorKind::InsufficientQuota),
            (403, ErrorKind::Forbidden),
            (404, ErrorKind::BadRequest),
            (429, ErrorKind::RateLimited),
            (499, ErrorKind::Cancelled),
            (502, ErrorKind::Upstream),
            (503, ErrorKind::Unavailable),
            (504, ErrorKind::Timeout),
        ] {
            assert_eq!(RequestError::new(status, "x").kind(), kind, "{status}");
        }
        let e = RequestError::unavailable("quota store", "timed out");
        assert_eq!((e.status, e.message.as_str(), e.retry_after), (503, "quota store unavailable: timed out", None));
    }
}
