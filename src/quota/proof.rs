//! The replay set of proofs of possession (`bus::proof`): the `PROOFS` KV bucket. A worker
//! that accepts a proof creates the key `<token short id>.<trace id>`; JetStream accepts a
//! create only when the key has no value, so of two workers racing on the same copy exactly
//! one wins, and every later copy (a replay read from `LLM_REQUESTS`) is refused. One round
//! trip per request (a publish and its ack). Entries expire after the bucket's `max_age`
//! (180 s), which outlasts a proof's time window (±60 s) on both sides.

use async_nats::jetstream::{self, kv};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The KV bucket name.
pub const BUCKET: &str = "PROOFS";

/// Bound on opening the bucket and on one claim.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How long this worker remembers a trace id it accepted (the bucket's `max_age`).
const REMEMBER: Duration = Duration::from_secs(180);

/// The replay set, opened on first use (a worker may start before `streams apply`).
#[derive(Clone)]
pub struct ReplaySet {
    /// JetStream, to open the bucket.
    js: jetstream::Context,
    /// The bucket, once opened.
    kv: Arc<OnceCell<kv::Store>>,
    /// Keys this worker accepted, and when: a replay to this worker is refused without a
    /// round trip, and while the bucket is leaderless (a JetStream election) this set alone
    /// decides (see RELIABILITY.md: during an election a replay to another worker within
    /// the proof window is not caught).
    seen: Arc<dashmap::DashMap<String, std::time::Instant>>,
}

impl ReplaySet {
    /// The replay set on `js`.
    pub fn new(js: jetstream::Context) -> Self {
        Self { js, kv: Arc::new(OnceCell::new()), seen: Arc::default() }
    }

    async fn store(&self) -> Result<&kv::Store, String> {
        self.kv
            .get_or_try_init(|| async {
                tokio::time::timeout(TIMEOUT, self.js.get_key_value(BUCKET))
                    .await
                    .map_err(|_| format!("opening {BUCKET} timed out"))?
                    .map_err(|e| format!("opening {BUCKET}: {} (run `ailurus streams apply`)", e.kind()))
            })
            .await
    }

    /// Claim `trace` for the token `token_id` (its short id): `Ok(true)` the first time,
    /// `Ok(false)` when it was already claimed (a replay), `Err` when the bucket did not
    /// answer within the bound (the caller refuses).
    pub async fn claim(&self, token_id: &str, trace: &str) -> Result<bool, String> {
        let key = format!("{token_id}.{trace}");
        if self.seen.contains_key(&key) {
            return Ok(false);
        }
        let claimed = async {
            let kv = self.store().await?;
            match tokio::time::timeout(TIMEOUT, kv.create(&key, bytes::Bytes::new())).await {
                Err(_) => Err(format!("claiming a trace id in {BUCKET} timed out")),
                Ok(Ok(_)) => Ok(true),
                Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Ok(Err(e)) => Err(format!("claiming a trace id in {BUCKET}: {e}")),
            }
        };
        let fresh = match claimed.await {
            Ok(fresh) => fresh,
            // Leaderless (an election): this worker's own set decides.
            Err(e) if super::tokens::leaderless(&e) => {
                tracing::debug!(error = %e, "replay set leaderless; checking this worker's set only");
                true
            }
            Err(e) => return Err(e),
        };
        if fresh && self.seen.insert(key, std::time::Instant::now()).is_some() {
            // Two copies raced on this worker while the bucket was leaderless.
            return Ok(false);
        }
        if fresh && self.seen.len().is_multiple_of(1024) {
            self.seen.retain(|_, at| at.elapsed() < REMEMBER);
        }
        Ok(fresh)
    }
}
