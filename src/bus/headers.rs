//! Header names and values of the reply protocol (design §3).

use async_nats::HeaderMap;

/// Kind of a reply: `chunk`, `heartbeat`, `done` or `error`.
pub const KIND: &str = "Ailurus-Kind";
/// HTTP-like status of a reply (on `error`, and on the first reply of native formats).
pub const STATUS: &str = "Ailurus-Status";
/// Native wire format of a forwarded HTTP body (`anthropic.messages`, `openai.chat`, ...).
pub const FORMAT: &str = "Ailurus-Format";
/// Model taken from a URL (Gemini puts it in the path).
pub const MODEL: &str = "Ailurus-Model";
/// Operation of a native request: `generate` (default), `stream` (Gemini
/// `streamGenerateContent`), `count_tokens`, `models`. On `ailurus.api.<family>`: the HTTP
/// method and the path below `/api/<family>` with its query (`GET /5?p=1`), so the proof of
/// possession covers them.
pub const OP: &str = "Ailurus-Op";
/// NEW-API's user id header, sent beside an access token (`New-Api-User: 1`); forwarded to
/// the management API as is.
pub const NEW_API_USER: &str = "New-Api-User";
/// Trace id of a native request (the bridge makes one per HTTP request).
pub const TRACE: &str = "Ailurus-Trace";
/// The old bearer form: the sha256 of a token alone. Refused (a reader of `LLM_REQUESTS`
/// could replay it); the refusal names the headers to send instead.
pub const TOKEN_SHA256: &str = "Ailurus-Token-Sha256";
/// Which token signed a request: its sha256 (hex). Public; see [`super::proof`].
pub const TOKEN_ID: &str = "Ailurus-Token-Id";
/// When a request was signed, Unix seconds.
pub const PROOF_TIME: &str = "Ailurus-Proof-Time";
/// The request's proof of possession (HMAC-SHA256, hex), see [`super::proof`].
pub const PROOF: &str = "Ailurus-Proof";
/// Sent by a requester that wants heartbeats, so it can tell "no worker" from "slow worker"
/// even when a JetStream stream hides no-responders. `1` asks for the first at once;
/// `<n>ms` ([`heartbeat_after`]) for the first only after n ms without a reply.
pub const HEARTBEAT: &str = "Ailurus-Heartbeat";

/// Longest first-heartbeat delay a requester may ask for (its "is anyone there" window must
/// stay short).
pub const MAX_FIRST_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// The [`HEARTBEAT`] value asking for the first heartbeat only after `delay` without a reply.
pub fn heartbeat_after(delay: std::time::Duration) -> String {
    format!("{}ms", delay.as_millis().max(1))
}

/// The first-heartbeat delay a [`HEARTBEAT`] value asks for: `<n>ms` waits (at most
/// [`MAX_FIRST_HEARTBEAT`]), anything else (the classic `1`) means at once.
pub fn first_heartbeat(value: &str) -> std::time::Duration {
    value
        .trim()
        .strip_suffix("ms")
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map_or(std::time::Duration::ZERO, |ms| std::time::Duration::from_millis(ms).min(MAX_FIRST_HEARTBEAT))
}
/// W3C trace context of a request (`00-<trace id>-<parent span id>-<flags>`): copied from
/// HTTP by the bridge, or set by a NATS client; the worker's span is its child.
pub const TRACEPARENT: &str = "traceparent";
/// W3C vendor trace state, passed along with [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";
/// Seconds a requester should wait before retrying an overloaded gateway.
pub const RETRY_AFTER: &str = "Retry-After";
/// Payload encoding, see [`super::codec::Encoding`].
pub const CONTENT_TYPE: &str = "Content-Type";

/// What a reply message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// A piece of the answer.
    Chunk,
    /// The worker is still working; carries no payload.
    Heartbeat,
    /// Final: the answer is complete.
    Done,
    /// Final: the request failed.
    Error,
}

impl ReplyKind {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chunk => "chunk",
            Self::Heartbeat => "heartbeat",
            Self::Done => "done",
            Self::Error => "error",
        }
    }

    /// Parse a header value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chunk" => Some(Self::Chunk),
            "heartbeat" => Some(Self::Heartbeat),
            "done" => Some(Self::Done),
            "error" => Some(Self::Error),
            _ => None,
        }
    }

    /// Whether this kind ends the reply sequence.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Error)
    }

    /// The kind a message's headers declare.
    pub fn of(headers: Option<&HeaderMap>) -> Option<Self> {
        headers.and_then(|h| h.get(KIND)).and_then(|v| Self::parse(v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn heartbeat_header_values() {
        for (value, ms) in
            [("1", 0), ("", 0), ("yes", 0), ("250ms", 250), (" 40 ms", 40), ("99999ms", 10_000), ("-5ms", 0)]
        {
            assert_eq!(first_heartbeat(value), Duration::from_millis(ms), "{value:?}");
        }
        // What a requester writes is what a worker reads.
        assert_eq!(first_heartbeat(&heartbeat_after(Duration::from_millis(100))), Duration::from_millis(100));
    }
}
