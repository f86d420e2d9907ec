//! Payload encodings: JSON by default, MessagePack (named fields) when a request says
//! `Content-Type: application/msgpack`. Replies use the request's encoding.

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

/// The MIME type that selects MessagePack.
pub const MSGPACK: &str = "application/msgpack";
/// The MIME type of JSON payloads.
pub const JSON: &str = "application/json";

/// How a payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 JSON (the default).
    #[default]
    Json,
    /// MessagePack with named fields (rmp-serde `to_vec_named`).
    MsgPack,
}

impl Encoding {
    /// The encoding a message's headers ask for.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Self {
        match headers.and_then(|h| h.get("Content-Type")) {
            Some(v) if v.as_str().trim().eq_ignore_ascii_case(MSGPACK) => Self::MsgPack,
            _ => Self::Json,
        }
    }

    /// The `Content-Type` value for this encoding.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Json => JSON,
            Self::MsgPack => MSGPACK,
        }
    }
}

/// Why a payload could not be decoded; the message is safe to show a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Encode a value.
pub fn encode<T: Serialize>(enc: Encoding, value: &T) -> Result<Bytes, String> {
    match enc {
        Encoding::Json => serde_json::to_vec(value).map(Bytes::from).map_err(|e| e.to_string()),
        Encoding::MsgPack => rmp_serde::to_vec_named(value).map(Bytes::from).map_err(|e| e.to_string()),
    }
}

/// Decode a value; errors name the encoding and the problem.
pub fn decode<T: DeserializeOwned>(enc: Encoding, bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError("empty payload".into()));
    }
    match enc {
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| DecodeError(format!("invalid JSON: {e}"))),
        Encoding::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| DecodeError(format!("invalid MessagePack: {e}"))),
    }
}
