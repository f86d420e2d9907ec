//! What the worker publishes besides replies: chat sync (`chat.<user>.<session>.msg` and
//! `.status`), presence (`user.<id>.presence`, expiring), and the audit copy of a final
//! reply that went to a private inbox (on `llm.response.<trace_id>`, where `LLM_REQUESTS`
//! keeps it for `ailurus audit replay`).

use super::WorkerCtx;
use crate::bus::headers;
use crate::bus::subjects::{self, Token};
use crate::protocol::LLMNATSResponse;
use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Marks a message as the audit copy of a final reply.
pub const AUDIT: &str = "Ailurus-Audit";
/// The longest interval between two refreshes of a user's presence (shorter when a third of
/// `worker.presence_ttl_ms` is shorter).
const PRESENCE_EVERY: Duration = Duration::from_secs(30);

/// One chat turn on `chat.<user>.<session>.msg`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
    /// The request it belongs to.
    pub trace_id: String,
    /// Model as the client named it.
    pub model: String,
    /// RFC 3339.
    pub timestamp: String,
    /// Whose.
    pub user_id: String,
    /// Which session.
    pub session_id: String,
}

/// A session status on `chat.<user>.<session>.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// `streaming`, `idle` or `error`.
    pub status: String,
    /// The request concerned.
    pub trace_id: String,
    /// Error text, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339.
    pub timestamp: String,
}

/// A presence record on `user.<id>.presence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// `online` or `offline`.
    pub status: String,
    /// Who says so (`gateway`, `cli`, …).
    pub source: String,
    /// RFC 3339.
    pub timestamp: String,
}

impl ChatRecord {
    /// One turn of `job`'s chat session `s` of user `u`, stamped `now`.
    fn turn(role: &str, content: String, job: &super::job::Job, now: &str, u: &Token, s: &Token) -> Self {
        Self {
            role: role.into(),
            content,
            trace_id: job.trace_id.to_string(),
            model: job.model.clone(),
            timestamp: now.to_string(),
            user_id: u.to_string(),
            session_id: s.to_string(),
        }
    }
}

async fn publish_json<T: Serialize>(ctx: &WorkerCtx, subject: String, value: &T, headers: Option<HeaderMap>) {
    let Ok(body) = serde_json::to_vec(value) else { return };
    let res = match headers {
        Some(h) => ctx.client.publish_with_headers(subject, h, body.into()).await,
        None => ctx.client.publish(subject, body.into()).await,
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "sync publish failed");
    }
}

/// Tokens of a chat session, if the request has a valid one.
pub(crate) fn session_tokens(user: &str, session: Option<&str>) -> Option<(Token, Token)> {
    let s = Token::new("session_id", session?).ok()?;
    let u = Token::new("user_id", user).ok()?;
    Some((u, s))
}

/// The user turn and the `streaming` status, at the start of a request.
pub(crate) async fn started(ctx: &WorkerCtx, job: &super::job::Job) {
    let Some((u, s)) = session_tokens(&job.user_id, job.session_id.as_deref()) else { return };
    let now = crate::clock::now_rfc3339();
    let record = ChatRecord::turn("user", job.chat.last_user_text().unwrap_or_default(), job, &now, &u, &s);
    publish_json(ctx, subjects::chat_msg(&u, &s), &record, None).await;
    let status =
        StatusRecord { status: "streaming".into(), trace_id: job.trace_id.to_string(), error: None, timestamp: now };
    publish_json(ctx, subjects::chat_status(&u, &s), &status, None).await;
}

/// The assistant turn and the `idle` / `error` status, at the end of a request.
pub(crate) async fn finished(ctx: &WorkerCtx, job: &super::job::Job, resp: &LLMNATSResponse) {
    let Some((u, s)) = session_tokens(&job.user_id, job.session_id.as_deref()) else { return };
    let now = crate::clock::now_rfc3339();
    if !resp.content.is_empty() {
        let record = ChatRecord::turn("assistant", resp.content.clone(), job, &now, &u, &s);
        publish_json(ctx, subjects::chat_msg(&u, &s), &record, None).await;
    }
    let status = StatusRecord {
        status: if resp.success { "idle" } else { "error" }.into(),
        trace_id: job.trace_id.to_string(),
        error: resp.error.clone(),
        timestamp: now,
    };
    publish_json(ctx, subjects::chat_status(&u, &s), &status, None).await;
}

/// Mark an authenticated user online (at most every third of `worker.presence_ttl_ms`, and
/// at most every 30 s; the record expires after the TTL, 90 s by default, so a user who stops
/// sending requests goes offline by itself).
pub(crate) async fn presence(ctx: &WorkerCtx, user: &Token) {
    let ttl_secs = ctx.config.presence_ttl_ms.div_ceil(1000).max(1);
    let every = PRESENCE_EVERY.min(Duration::from_secs(ttl_secs) / 3);
    let now = Instant::now();
    let due = match ctx.presence.get(user.as_str()) {
        Some(last) => now.duration_since(*last) >= every,
        None => true,
    };
    if !due {
        return;
    }
    ctx.presence.insert(user.to_string(), now);
    let mut h = HeaderMap::new();
    h.insert("Nats-TTL", format!("{ttl_secs}s").as_str());
    let p = Presence { status: "online".into(), source: "gateway".into(), timestamp: crate::clock::now_rfc3339() };
    publish_json(ctx, subjects::presence(user), &p, Some(h)).await;
}

/// Copy a final reply that went to a private inbox onto `llm.response.<trace_id>`, so the
/// audit stream holds every exchange's outcome.
pub(crate) async fn audit_copy(ctx: &WorkerCtx, trace: &Token, resp: &LLMNATSResponse, status: u16) {
    let mut h = HeaderMap::new();
    h.insert(headers::KIND, if resp.success { "done" } else { "error" });
    h.insert(headers::STATUS, status.to_string().as_str());
    h.insert(headers::CONTENT_TYPE, "application/json");
    h.insert(AUDIT, "1");
    publish_json(ctx, subjects::response(trace), resp, Some(h)).await;
}
