//! What a worker serves: one parsed, validated request ([`Job`]), how its client talks
//! ([`Client`]), and what was delivered for it ([`Delivered`]). The handler builds a job, the
//! pipeline serves it, sync and audit read it.

use crate::bus::subjects::Token;
use crate::error::RequestError;
use crate::formats;
use crate::protocol::accumulate::Accumulator;
use crate::protocol::canonical::{ChatRequest, Usage};
use crate::protocol::{Format, Op, Platform};
use bytes::Bytes;
use std::time::Duration;

/// How the client talks.
pub(crate) enum Client {
    /// The seed's `LLMNATSRequest` (its encoding lives in the replier).
    Seed,
    /// A native API body forwarded by the bridge (or any client).
    Native {
        /// Its format.
        format: Format,
        /// What it asked for.
        op: Op,
        /// The untouched body, for pass-through.
        body: Bytes,
        /// Headers forwarded upstream on pass-through (`anthropic-beta`, …).
        forward: Vec<(String, String)>,
    },
}

/// A parsed, validated request.
pub(crate) struct Job {
    /// Validated trace id.
    pub trace_id: Token,
    /// Who is billed.
    pub user_id: String,
    /// Chat session, for sync.
    pub session_id: Option<String>,
    /// From the subject.
    pub platform: Platform,
    /// The model as the client named it.
    pub model: String,
    /// The canonical request.
    pub chat: ChatRequest,
    /// How the client talks.
    pub client: Client,
    /// The API token (or its hash) the request carries (never logged).
    pub credential: Option<crate::quota::auth::Credential>,
    /// A seed request's `user_id` (checked against the token's user).
    pub claimed_user: Option<String>,
    /// Set when the native body failed strict parsing: it may still go byte for byte to an
    /// upstream of its own format, but no conversion is possible (this is the answer then).
    pub strict_error: Option<formats::FormatError>,
    /// The output cap the gateway set because the request set none (billing bounds every
    /// answer); written into a pass-through body too.
    pub output_cap: Option<u32>,
    /// The message's headers (session headers, `user-agent`, … for routing).
    pub headers: Option<async_nats::HeaderMap>,
    /// Channel name patterns a scenario route allows (empty: any).
    pub channel_group: Vec<String>,
}

/// What was delivered.
pub(crate) struct Delivered {
    /// The answer as accumulated.
    pub acc: Accumulator,
    /// Usage as reported, else estimated from what was delivered.
    pub usage: Usage,
    /// The channel that served it.
    pub channel: String,
    /// Set when the upstream failed after the first byte.
    pub failure: Option<RequestError>,
    /// Time spent on the successful attempt (upstream call and stream).
    pub upstream: Option<Duration>,
    /// When the first answer-bearing event came (time to first token).
    pub first_chunk: Option<std::time::Instant>,
}
