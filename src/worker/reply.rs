//! The reply protocol (design §3): every reply carries `Ailurus-Kind`; errors carry
//! `Ailurus-Status`; payloads use the request's encoding.

use crate::bus::codec::{encode, Encoding};
use crate::bus::headers::{self, ReplyKind};
use crate::protocol::{ChunkMessage, LLMNATSResponse};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sends the replies of one request.
pub struct Replier {
    /// Where replies go (the request's reply inbox, else `llm.response.<trace_id>`).
    subject: Subject,
    /// Connection to publish on.
    client: async_nats::Client,
    /// The request's encoding.
    encoding: Encoding,
    /// Echoed in chunk payloads.
    trace_id: String,
    /// When the replier was made; base for `last_sent_us`.
    start: Instant,
    /// Microseconds after `start` of the last reply sent, for heartbeat pacing.
    last_sent_us: AtomicU64,
    /// Next chunk sequence number.
    seq: AtomicU64,
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
        }
    }

    /// Time since the last reply.
    pub fn idle_for(&self) -> Duration {
        let now = self.start.elapsed().as_micros() as u64;
        Duration::from_micros(now.saturating_sub(self.last_sent_us.load(Ordering::Relaxed)))
    }

    /// Chunks sent so far.
    pub fn chunks_sent(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    async fn send(&self, kind: ReplyKind, status: Option<u16>, extra: &[(&str, String)], payload: Bytes) {
        let mut h = HeaderMap::new();
        h.insert(headers::KIND, kind.as_str());
        h.insert(headers::CONTENT_TYPE, self.encoding.content_type());
        if let Some(status) = status {
            h.insert(headers::STATUS, status.to_string().as_str());
        }
        for (k, v) in extra {
            h.insert(*k, v.as_str());
        }
        self.last_sent_us.store(self.start.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = self.client.publish_with_headers(self.subject.clone(), h, payload).await {
            tracing::debug!(trace_id = %self.trace_id, error = %e, "reply publish failed");
        }
    }

    /// "Still working."
    pub async fn heartbeat(&self) {
        self.send(ReplyKind::Heartbeat, None, &[], Bytes::new()).await
    }

    /// One piece of the answer, as `{trace_id, seq, delta}`.
    pub async fn chunk(&self, delta: String) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let msg = ChunkMessage { trace_id: self.trace_id.clone(), seq, delta };
        match encode(self.encoding, &msg) {
            Ok(bytes) => self.send(ReplyKind::Chunk, None, &[], bytes).await,
            Err(e) => tracing::error!(error = %e, "encode chunk"),
        }
    }

    /// The final answer.
    pub async fn done(&self, resp: &LLMNATSResponse) {
        match encode(self.encoding, resp) {
            Ok(bytes) => self.send(ReplyKind::Done, Some(200), &[], bytes).await,
            Err(e) => tracing::error!(error = %e, "encode response"),
        }
    }

    /// The final error.
    pub async fn error(&self, status: u16, resp: &LLMNATSResponse, retry_after: Option<u64>) {
        let extra: Vec<(&str, String)> =
            retry_after.map(|s| (headers::RETRY_AFTER, s.to_string())).into_iter().collect();
        match encode(self.encoding, resp) {
            Ok(bytes) => self.send(ReplyKind::Error, Some(status), &extra, bytes).await,
            Err(e) => tracing::error!(error = %e, "encode error response"),
        }
    }
}
