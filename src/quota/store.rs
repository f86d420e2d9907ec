//! The quota store: one handle on the JetStream pieces billing uses (the `QUOTA` bucket, the
//! `QUOTA_COUNTERS` counters, the `QUOTA_HOLDS` holds, the `WORKERS` bucket) and the counter
//! primitives. Its operations are grouped by concern: balances, reserve and settle in
//! [`super::account`], durable holds in [`super::holds`], the ledger in [`super::ledger`].

use super::store_error;
use crate::error::RequestError;
use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use std::time::Duration;

/// The KV bucket name.
pub const BUCKET: &str = "QUOTA";
/// The counter stream.
pub const COUNTERS: &str = "QUOTA_COUNTERS";
/// Round-trip bound for quota operations.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// The stream of holds (see [`super::holds`]).
pub const HOLDS: &str = "QUOTA_HOLDS";
/// The KV bucket in which live workers announce themselves.
pub const WORKERS: &str = "WORKERS";

/// Quota operations over NATS.
#[derive(Clone)]
pub struct QuotaStore {
    /// For counters, events and the ledger.
    pub(super) js: jetstream::Context,
    /// For events.
    pub(super) client: async_nats::Client,
    /// The `QUOTA` bucket.
    pub(super) kv: kv::Store,
    /// The counter stream (direct gets).
    counters: jetstream::stream::Stream,
    /// The holds (`QUOTA_HOLDS`).
    holds: jetstream::stream::Stream,
    /// Live workers (`WORKERS`).
    workers: kv::Store,
}

/// The value of a counter message body `{"val":"123"}`.
fn counter_value(payload: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Val {
        val: String,
    }
    serde_json::from_slice::<Val>(payload).ok()?.val.parse().ok()
}

impl QuotaStore {
    /// Open the bucket and the counter stream (created by `ailurus streams apply`).
    pub async fn open(client: async_nats::Client) -> Result<Self, String> {
        let js = jetstream::new(client.clone());
        let kv = js
            .get_key_value(BUCKET)
            .await
            .map_err(|e| format!("KV bucket {BUCKET}: {e} (run `ailurus streams apply`)"))?;
        let counters = js
            .get_stream(COUNTERS)
            .await
            .map_err(|e| format!("stream {COUNTERS}: {e} (run `ailurus streams apply`)"))?;
        let holds =
            js.get_stream(HOLDS).await.map_err(|e| format!("stream {}: {e} (run `ailurus streams apply`)", HOLDS))?;
        let workers = js
            .get_key_value(WORKERS)
            .await
            .map_err(|e| format!("KV bucket {}: {e} (run `ailurus streams apply`)", WORKERS))?;
        Ok(Self { js, client, kv, counters, holds, workers })
    }

    /// The JetStream context (for the ledger).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The `QUOTA_HOLDS` stream.
    pub(crate) fn holds(&self) -> &jetstream::stream::Stream {
        &self.holds
    }

    /// The `WORKERS` bucket.
    pub(crate) fn workers(&self) -> &kv::Store {
        &self.workers
    }

    /// Add `delta` to a counter exactly once per `msg_id` (JetStream drops a repeated
    /// `Nats-Msg-Id` inside the stream's duplicate window, counter streams included).
    /// Returns the new value, or `None` when this was such a duplicate. Retried: a retry of
    /// an increment that landed is a duplicate.
    pub(crate) async fn incr_raw(
        &self,
        subject: String,
        delta: i64,
        msg_id: &str,
    ) -> Result<Option<i64>, RequestError> {
        let mut last = store_error("counter increment failed");
        for attempt in 0..3u32 {
            let mut h = HeaderMap::new();
            h.insert("Nats-Incr", format!("{delta:+}").as_str());
            h.insert("Nats-Msg-Id", msg_id);
            let res = tokio::time::timeout(OP_TIMEOUT, async {
                self.js
                    .publish_with_headers(subject.clone(), h, Bytes::new())
                    .await
                    .map_err(store_error)?
                    .await
                    .map_err(store_error)
            })
            .await
            .unwrap_or_else(|_| Err(store_error("counter increment timed out")));
            match res {
                Ok(ack) if ack.duplicate => return Ok(None),
                Ok(ack) => {
                    return ack
                        .value
                        .as_deref()
                        .and_then(|v| v.parse().ok())
                        .map(Some)
                        .ok_or_else(|| store_error("counter ack without a value (is the server ≥ 2.12?)"))
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Err(last)
    }

    /// [`Self::incr_raw`] that always returns the counter's value (read when the increment
    /// was a duplicate, or is 0).
    pub(crate) async fn incr_once(&self, subject: String, delta: i64, msg_id: &str) -> Result<i64, RequestError> {
        if delta == 0 {
            return self.counter(subject).await;
        }
        match self.incr_raw(subject.clone(), delta, msg_id).await? {
            Some(v) => Ok(v),
            None => self.counter(subject).await,
        }
    }

    /// Add `delta` to a counter with a fresh id (admin repairs).
    pub(super) async fn incr(&self, subject: String, delta: i64) -> Result<i64, RequestError> {
        self.incr_once(subject, delta, &format!("adm-{}", nuid::next())).await
    }

    /// A counter's value (0 when it has never been incremented).
    pub(super) async fn counter(&self, subject: String) -> Result<i64, RequestError> {
        match tokio::time::timeout(OP_TIMEOUT, self.counters.direct_get_last_for_subject(subject)).await {
            Err(_) => Err(store_error("counter read timed out")),
            Ok(Ok(msg)) => Ok(counter_value(&msg.payload).unwrap_or(0)),
            Ok(Err(e)) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(0),
            Ok(Err(e)) => Err(store_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::counter_value;

    #[test]
    fn counter_bodies() {
        assert_eq!(counter_value(br#"{"val":"42"}"#), Some(42));
        assert_eq!(counter_value(br#"{"val":"-3"}"#), Some(-3));
        assert_eq!(counter_value(b"nope"), None);
    }
}
