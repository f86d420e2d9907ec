//! The reply protocol (design §3): every reply carries `Ailurus-Kind`; errors and the first
//! reply of a native answer carry `Ailurus-Status`; `Content-Type` is the payload's type
//! (the seed encoding, or the HTTP content type a bridge copies).

use crate::bus::codec::{encode, Encoding};
use crate::bus::headers::{self, ReplyKind};
use crate::protocol::{ChunkMessage, LLMNATSResponse};
use crate::quota::proof::{Claim, Verdict};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Sends the replies of one request.
pub struct Replier {
    /// Where replies go (the request's reply inbox, else `llm.response.<trace_id>`).
    subject: Subject,
    /// Connection to publish on.
    client: async_nats::Client,
    /// The seed encoding (native replies name their own content type).
    encoding: Encoding,
    /// Echoed in seed chunks.
    trace_id: String,
    /// When the replier was made; base for `last_sent_us`.
    start: Instant,
    /// Microseconds after `start` of the last reply sent, for heartbeat pacing.
    last_sent_us: AtomicU64,
    /// Next seed chunk sequence number.
    seq: AtomicU64,
    /// Whether any reply went out (shared with a delayed first heartbeat's timer task).
    sent_any: Arc<AtomicBool>,
    /// The request's replay-set claim, when it has one: no answer chunk leaves before its
    /// verdict, and none at all for a refused copy (heartbeats and errors go out).
    gate: OnceLock<Claim>,
}

/// Aborts a delayed first heartbeat when the request ends first.
pub struct FirstHeartbeat(tokio::task::JoinHandle<()>);

impl Drop for FirstHeartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Replier {
    /// A replier for one request.
    pub fn new(client: async_nats::Client, subject: Subject, encoding: Encoding, trace_id: String) -> Self {
        Self {
            subject,
            client,
            encoding,
            trace_id,
            start: Instant::now(),
            last_sent_us: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            sent_any: Arc::new(AtomicBool::new(false)),
            gate: OnceLock::new(),
        }
    }

    /// Hold every answer chunk until `claim`'s verdict, and drop them for a refused copy.
    pub fn gate(&self, claim: Claim) {
        let _ = self.gate.set(claim);
    }

    /// Time since the last reply.
    pub fn idle_for(&self) -> Duration {
        let now = self.start.elapsed().as_micros() as u64;
        Duration::from_micros(now.saturating_sub(self.last_sent_us.load(Ordering::Relaxed)))
    }

    /// Publish one reply.
    pub async fn send(
        &self,
        kind: ReplyKind,
        status: Option<u16>,
        content_type: Option<&str>,
        extra: &[(&str, String)],
        payload: Bytes,
    ) {
        // Behind the gate: a heartbeat never waits; an error waits (it follows any chunk held
        // before it) and goes out; an answer chunk waits and is dropped for a refused copy.
        if let (Some(claim), true) = (self.gate.get(), kind != ReplyKind::Heartbeat) {
            let fresh = claim.verdict().await == Verdict::Fresh;
            if !fresh && kind != ReplyKind::Error {
                return;
            }
        }
        let mut h = HeaderMap::new();
        h.insert(headers::KIND, kind.as_str());
        if let Some(ct) = content_type {
            h.insert(headers::CONTENT_TYPE, ct);
        }
        if let Some(status) = status {
            h.insert(headers::STATUS, status.to_string().as_str());
        }
        for (k, v) in extra {
            h.insert(*k, v.as_str());
        }
        self.last_sent_us.store(self.start.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.sent_any.store(true, Ordering::Relaxed);
        // Boxed: callers await replies inside long-lived request tasks, whose state would
        // otherwise carry this future's size for the whole request.
        if let Err(e) = Box::pin(self.client.publish_with_headers(self.subject.clone(), h, payload)).await {
            tracing::debug!(trace_id = %self.trace_id, error = %e, "reply publish failed");
        }
    }

    /// Whether any reply went out.
    pub fn answered(&self) -> bool {
        self.sent_any.load(Ordering::Relaxed)
    }

    /// "Still working."
    pub async fn heartbeat(&self) {
        self.send(ReplyKind::Heartbeat, None, None, &[], Bytes::new()).await
    }

    /// A heartbeat after `delay` unless some reply went out before; from a timer task of its
    /// own, so it is never held up by what the request is awaiting. Dropping the guard
    /// cancels it. A heartbeat that races a first chunk is harmless (requesters skip them).
    pub fn heartbeat_unless_answered(&self, delay: Duration) -> FirstHeartbeat {
        let (client, subject, sent) = (self.client.clone(), self.subject.clone(), self.sent_any.clone());
        FirstHeartbeat(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if !sent.load(Ordering::Relaxed) {
                let mut h = HeaderMap::new();
                h.insert(headers::KIND, ReplyKind::Heartbeat.as_str());
                let _ = client.publish_with_headers(subject, h, Bytes::new()).await;
            }
        }))
    }

    /// One seed chunk, `{trace_id, seq, delta}`.
    pub async fn seed_chunk(&self, delta: String) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let msg = ChunkMessage { trace_id: self.trace_id.clone(), seq, delta };
        match encode(self.encoding, &msg) {
            Ok(bytes) => self.send(ReplyKind::Chunk, None, Some(self.encoding.content_type()), &[], bytes).await,
            Err(e) => tracing::error!(error = %e, "encode chunk"),
        }
    }

    /// Native bytes to write; the first one names the HTTP status and content type.
    pub async fn native_chunk(&self, first: Option<(u16, &str)>, bytes: Vec<u8>) {
        match first {
            Some((status, ct)) => self.send(ReplyKind::Chunk, Some(status), Some(ct), &[], bytes.into()).await,
            None => self.send(ReplyKind::Chunk, None, None, &[], bytes.into()).await,
        }
    }

    /// The final seed answer, or a native answer's summary (which a bridge does not write).
    pub async fn done(&self, resp: &LLMNATSResponse) {
        match encode(self.encoding, resp) {
            Ok(bytes) => self.send(ReplyKind::Done, Some(200), Some(self.encoding.content_type()), &[], bytes).await,
            Err(e) => tracing::error!(error = %e, "encode response"),
        }
    }

    /// The final seed error.
    pub async fn seed_error(&self, status: u16, resp: &LLMNATSResponse, retry_after: Option<u64>) {
        let extra: Vec<(&str, String)> =
            retry_after.map(|s| (headers::RETRY_AFTER, s.to_string())).into_iter().collect();
        match encode(self.encoding, resp) {
            Ok(bytes) => {
                self.send(ReplyKind::Error, Some(status), Some(self.encoding.content_type()), &extra, bytes).await
            }
            Err(e) => tracing::error!(error = %e, "encode error response"),
        }
    }

    /// The final native error: `body` is the client's error shape (JSON), written as the HTTP
    /// body when nothing was written before it.
    pub async fn native_error(&self, status: u16, body: Vec<u8>, retry_after: Option<u64>) {
        let extra: Vec<(&str, String)> =
            retry_after.map(|s| (headers::RETRY_AFTER, s.to_string())).into_iter().collect();
        self.send(ReplyKind::Error, Some(status), Some("application/json"), &extra, body.into()).await
    }
}
