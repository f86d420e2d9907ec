//! The replay set of proofs of possession (`bus::proof`): the `PROOFS` KV bucket. A worker
//! that accepts a proof creates the key `<token short id>.<trace id>`; JetStream accepts a
//! create only when the key has no value, so of two workers racing on the same copy exactly
//! one wins, and every later copy (a replay read from `LLM_REQUESTS`) is refused. One round
//! trip per request (a publish and its ack). Entries expire after the bucket's `max_age`
//! (180 s), which outlasts a proof's time window (±60 s) on both sides.
//!
//! A request does not wait for its claim before its upstream call: [`ReplaySet::begin`]
//! starts the claim in a task of its own and hands back a [`Claim`], whose verdict the worker
//! awaits before anything of the answer leaves it (the replier's gate) and before any event
//! or ledger record of the request. A replayed copy is cancelled upstream when the verdict
//! comes (one JetStream round trip, well before an answer's first token) and answered 401;
//! it is billed nothing, and leaves no presence or chat-sync event, audit copy or ledger
//! record (only the user's `user.<id>.auth` refusal event). Before its verdict a request takes no new quota
//! lease and counts no rate limit (`quota::lease`, `worker::billing`). Each worker remembers
//! the keys it saw refused too, so a copy replayed again to the same worker starts nothing
//! upstream: one captured request can start at most one cancelled upstream call per worker.

use crate::error::RequestError;
use async_nats::jetstream::{self, kv};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OnceCell};

/// What the replay set said of a request's trace id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// First use: serve it.
    Fresh,
    /// Already used: a replayed copy.
    Replayed,
    /// The set did not answer within its bound (the request is refused, 503).
    Unavailable(String),
}

/// A claim under way (cheap to clone: every clone sees the one verdict).
#[derive(Clone)]
pub struct Claim {
    /// The verdict, once the claim's task has it.
    rx: watch::Receiver<Option<Verdict>>,
}

impl Claim {
    /// The verdict (at once when it is known).
    pub async fn verdict(&self) -> Verdict {
        if let Some(v) = self.rx.borrow().as_ref() {
            return v.clone();
        }
        let mut rx = self.rx.clone();
        let v = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.as_ref().cloned(),
            // The claim's task ended without one (the runtime is stopping).
            Err(_) => None,
        };
        v.unwrap_or_else(|| Verdict::Unavailable("the replay-set claim was dropped".into()))
    }

    /// `Ok` once the verdict is [`Verdict::Fresh`] (awaiting it); a 401 otherwise, for work
    /// that must wait for it (a lease take, a rate-limit count). The handler answers a refused
    /// copy with the verdict's own refusal (`auth::refusal`), not this one.
    pub async fn fresh(&self) -> Result<(), RequestError> {
        match self.verdict().await {
            Verdict::Fresh => Ok(()),
            _ => Err(RequestError::new(401, "the replay set refused this trace id")),
        }
    }
}

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

    /// Start claiming `trace` for the token `token_id` in a task of its own.
    pub fn begin(&self, token_id: &str, trace: &str) -> Claim {
        let (tx, rx) = watch::channel(None);
        let (set, token_id, trace) = (self.clone(), token_id.to_string(), trace.to_string());
        tokio::spawn(async move {
            let v = match set.claim(&token_id, &trace).await {
                Ok(true) => Verdict::Fresh,
                Ok(false) => Verdict::Replayed,
                Err(e) => Verdict::Unavailable(e),
            };
            let _ = tx.send(Some(v));
        });
        Claim { rx }
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
        // Remembered refused too: the same copy again is refused here without a trip.
        if self.seen.insert(key, std::time::Instant::now()).is_some() || !fresh {
            // (Or two copies raced on this worker while the bucket was leaderless.)
            return Ok(false);
        }
        if self.seen.len().is_multiple_of(1024) {
            self.seen.retain(|_, at| at.elapsed() < REMEMBER);
        }
        Ok(fresh)
    }
}
