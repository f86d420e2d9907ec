//! The seed's message types (`ARCH_Products.md`, "Data Types"), field names exactly as there.
//! Unknown fields are tolerated on input; optional extensions are skipped when empty so a
//! seed-only client sees only the fields it knows.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The CLI family a request comes from; the last token of `llm.request.<platform>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Claude Code and Anthropic SDKs.
    Claude,
    /// Codex CLI (OpenAI Responses).
    Codex,
    /// Gemini CLI and Google SDKs.
    Gemini,
    /// Generic OpenAI Chat Completions clients.
    Openai,
}

impl Platform {
    /// Every platform, in subject order.
    pub const ALL: [Platform; 4] = [Self::Claude, Self::Codex, Self::Gemini, Self::Openai];

    /// The subject token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::Gemini => "gemini",
            Self::Openai => "openai",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown platform {s:?} (expected claude, codex, gemini or openai)"))
    }
}

/// One turn of a conversation in the seed format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

/// A request published on `llm.request.<platform>` (seed format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LLMNATSRequest {
    /// Caller-chosen id; names `llm.response.<trace_id>` and `llm.cancel.<trace_id>`.
    pub trace_id: String,
    /// The user the request is billed to.
    pub user_id: String,
    /// Chat session for sync on `chat.<user>.<session>.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Must equal the subject's platform token.
    pub platform: Platform,
    /// Model name as the caller knows it; channels may map it.
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<LLMMessage>,
    /// `true`: chunks then a final message; `false`: exactly one reply.
    #[serde(default)]
    pub stream: bool,
    /// Free-form string pairs carried to the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Extension: upper bound on output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Extension: sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Extension: a system prompt in addition to any `system` messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Extension: the API token, for NATS clients that do not send an auth header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The final reply to a request (`Ailurus-Kind: done` or `error`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LLMNATSResponse {
    /// Echo of the request's trace id.
    pub trace_id: String,
    /// Whether an answer was produced.
    pub success: bool,
    /// The model that answered (as the caller named it).
    pub model: String,
    /// The whole answer text.
    pub content: String,
    /// Prompt tokens billed.
    pub tokens_input: u64,
    /// Completion tokens billed.
    pub tokens_output: u64,
    /// Price of the request in USD.
    pub cost: f64,
    /// Wall time from receipt to the final reply.
    pub duration_ms: u64,
    /// Why the request failed, when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Extension: why the answer ended (`stop`, `length`, `tool_use`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Extension: `true` when the token counts were estimated, not reported by the upstream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    /// Extension: milliseconds spent waiting on the upstream (for gateway-overhead metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
}

/// One streamed piece of the answer in the seed format (`Ailurus-Kind: chunk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkMessage {
    /// Echo of the request's trace id.
    pub trace_id: String,
    /// 0-based position of this chunk; lets a reader detect gaps.
    pub seq: u64,
    /// Text to append.
    pub delta: String,
}

/// Published on `user.<id>.quota` on every balance change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaChangeEvent {
    /// Whose balance changed.
    pub user_id: String,
    /// Total quota granted, in quota units (500,000 = 1 USD).
    pub quota_total: i64,
    /// Quota spent so far.
    pub quota_used: i64,
    /// `quota_total - quota_used`.
    pub quota_remain: i64,
    /// Quota units of the change that caused this event.
    pub last_cost: i64,
    /// Model of the request that caused it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Trace of the request that caused it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// RFC 3339 time of the change.
    pub timestamp: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::codec::{decode, encode, Encoding};

    fn sample_request() -> LLMNATSRequest {
        LLMNATSRequest {
            trace_id: "t-1".into(),
            user_id: "user_123".into(),
            session_id: Some("session_456".into()),
            platform: Platform::Claude,
            model: "mock".into(),
            messages: vec![LLMMessage { role: "user".into(), content: "hello".into() }],
            stream: true,
            metadata: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
            max_tokens: Some(64),
            temperature: None,
            system: None,
            token: None,
        }
    }

    #[test]
    fn round_trip_both_encodings() {
        let req = sample_request();
        let resp = LLMNATSResponse {
            trace_id: "t-1".into(),
            success: true,
            model: "mock".into(),
            content: "hi".into(),
            tokens_input: 3,
            tokens_output: 1,
            cost: 0.25,
            duration_ms: 12,
            ..Default::default()
        };
        let chunk = ChunkMessage { trace_id: "t-1".into(), seq: 7, delta: "x".into() };
        let event = QuotaChangeEvent {
            user_id: "u".into(),
            quota_total: 10,
            quota_used: 4,
            quota_remain: 6,
            last_cost: 4,
            model: None,
            trace_id: Some("t".into()),
            timestamp: "2026-01-01T00:00:00Z".into(),
        };
        for enc in [Encoding::Json, Encoding::MsgPack] {
            assert_eq!(decode::<LLMNATSRequest>(enc, &encode(enc, &req).unwrap()).unwrap(), req);
            assert_eq!(decode::<LLMNATSResponse>(enc, &encode(enc, &resp).unwrap()).unwrap(), resp);
            assert_eq!(decode::<ChunkMessage>(enc, &encode(enc, &chunk).unwrap()).unwrap(), chunk);
            assert_eq!(decode::<QuotaChangeEvent>(enc, &encode(enc, &event).unwrap()).unwrap(), event);
        }
    }

    #[test]
    fn seed_field_names_are_exact() {
        let v = serde_json::to_value(sample_request()).unwrap();
        for key in ["trace_id", "user_id", "session_id", "platform", "model", "messages", "stream", "metadata"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let v = serde_json::to_value(LLMNATSResponse::default()).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["content", "cost", "duration_ms", "model", "success", "tokens_input", "tokens_output", "trace_id"]
        );
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let json = br#"{"trace_id":"a","user_id":"b","platform":"gemini","model":"m",
            "messages":[{"role":"user","content":"x","extra":1}],"stream":false,"future":{"x":[1]}}"#;
        let req: LLMNATSRequest = decode(Encoding::Json, json).unwrap();
        assert_eq!(req.platform, Platform::Gemini);
        // MessagePack written by another client with an extra key.
        let mut value = serde_json::to_value(sample_request()).unwrap();
        value["unknown_ext"] = serde_json::json!({"nested": true});
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(decode::<LLMNATSRequest>(Encoding::MsgPack, &bytes).unwrap(), sample_request());
    }
}
