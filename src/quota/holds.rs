//! Crash-safe reservations ("holds"). A reservation raises the user's spent counter before
//! the upstream call; a worker killed before it settles would leave that raise behind for
//! ever, with no ledger record to explain it. So every reservation is first written down,
//! durably, as one message on `quota.hold.<hold_id>` in the `QUOTA_HOLDS` stream (file
//! storage, one message per subject), and every step after it is idempotent:
//!
//! 1. **hold**: publish the hold (`state: held`, the user, token, units, owning worker) with
//!    `Nats-Expected-Last-Subject-Sequence: 0`; then increment the counters, each
//!    increment with its own `Nats-Msg-Id` (`<hold>:u+`, `<hold>:t+`), which JetStream
//!    de-duplicates inside the stream's duplicate window (counter streams included); then
//!    mark the hold `counted` (beside the upstream call).
//! 2. **settle** (the owner): compare-and-swap the hold to `state: settling` with the
//!    final amount and the ledger record (expected last subject sequence = the hold's), then
//!    the counter corrections, the request count and the ledger append, all keyed by the
//!    hold id, then a final `done` message. A worker's holds are quota leases
//!    ([`super::lease`]): their settle carries no record (each request appended its own) but
//!    the sum of their charges and their number; an orphaned lease is completed from the
//!    ledger ([`QuotaStore::reclaim_lease`]).
//! 3. **release** (a refusal, or a recovery by any worker): compare-and-swap the hold to
//!    `state: released`; take back its increments (an increment that may not have happened
//!    is redone first under its `Nats-Msg-Id`, a no-op if it had), write a zero-cost ledger
//!    record for recoveries, then `done`.
//!
//! The compare-and-swap makes settle and release exclusive: exactly one of them wins for
//! each hold, however many workers try. A settle that loses (its hold was released as
//! orphaned while the owner was cut off) charges the delivered amount directly, with its own
//! ids and its own ledger record, so the request is billed once.
//!
//! Finished holds end with a `done` message (with a TTL) rather than a delete: JetStream
//! deletes are not crash-durable (after a nats-server SIGKILL, recently deleted messages come
//! back), appends are. The last message of a subject is the hold's state.
//!
//! **Recovery.** Every worker announces itself in the `WORKERS` KV bucket with a per-message
//! TTL (`Nats-TTL`) and refreshes it; a dead worker's key vanishes on its own. Every worker
//! also scans the holds now and then ([`Reaper`]): a hold whose owner has been absent for two
//! scans a liveness period apart, or that outlived its deadline (the owner's request timeout
//! plus a grace), or a `settling` / `released` hold left half done, is completed — released
//! at zero cost, or its settle finished with the recorded amount. RELIABILITY.md has the
//! whole argument and its residual risks.

use super::ledger::UsageRecord;
use super::store::{QuotaStore, OP_TIMEOUT};
use super::store_error;
use crate::bus::subjects::{self, Token};
use crate::error::RequestError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use super::store::{HOLDS as STREAM, WORKERS};
/// How long a half-done settle or release is left to its owner before another worker
/// completes it.
pub const SETTLE_GRACE: Duration = Duration::from_secs(30);
/// How long a `done` hold stays before it expires (well past the time a nats-server needs
/// to make its deletes durable).
pub const DONE_TTL: Duration = Duration::from_secs(15 * 60);
/// Most holds one scan looks at.
const SCAN_LIMIT: usize = 1000;

/// Where a hold is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldState {
    /// Units are (being) held for a request in flight.
    Held,
    /// The owner decided the final amount; corrections and the ledger record follow.
    Settling,
    /// The hold is being given back (refused, or recovered from a dead worker).
    Released,
    /// Settled or released: nothing left to do. Written as the hold's last message (with a
    /// TTL) instead of deleting it: JetStream deletes (purges, per-subject limits) are not
    /// crash-durable — after a nats-server SIGKILL, recently deleted messages come back — while
    /// appended messages are, so the last message of a subject is the truth.
    Done,
}

/// One hold, as stored on `quota.hold.<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// Hold id (a subject token; also the prefix of every `Nats-Msg-Id` of this hold).
    pub id: String,
    /// Where it is.
    pub state: HoldState,
    /// Billed user.
    pub user: String,
    /// Token hash, when the token has its own limit (its counter is held too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Units held.
    pub units: i64,
    /// Whether the hold's increments are known to have happened (written by the owner right
    /// after them). A hold without it may have crashed between the hold and its increments:
    /// its release redoes them under their `Nats-Msg-Id`s first.
    #[serde(default)]
    pub counted: bool,
    /// The owning worker's id (its key in `WORKERS`).
    pub worker: String,
    /// The request.
    pub trace_id: String,
    /// Unix milliseconds after which any worker may release a `held` hold, owner alive or not.
    pub deadline_ms: i64,
    /// Final units (`settling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<i64>,
    /// The ledger record to append (`settling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<UsageRecord>,
    /// Whether this is a worker's quota lease (see [`super::lease`]): many requests draw on
    /// it, each with a ledger record of its own that names the lease; its settle carries no
    /// record, only the sum of theirs (`actual`) and their count (`requests`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lease: bool,
    /// Requests settled against a lease (`settling`, and kept in its `done` message).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requests: u64,
    /// Unix milliseconds when the hold was written (where a lease's records start in the
    /// ledger).
    #[serde(default)]
    pub created_ms: i64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Who holds, for how long.
#[derive(Debug, Clone)]
pub struct HoldOwner {
    /// The worker's id (its key in `WORKERS`).
    pub worker: String,
    /// The request's trace id.
    pub trace_id: String,
    /// How long the request may take (the owner's request timeout); a `held` hold older than
    /// this plus [`SETTLE_GRACE`] is released even if its owner still answers.
    pub ttl: Duration,
    /// Whether the hold is a lease (many requests draw on it).
    pub lease: bool,
}

/// A fresh hold id.
pub(crate) fn new_id() -> Token {
    Token::random()
}

/// The counters a hold raises, with the short names in their `Nats-Msg-Id`s: the user's
/// spent counter (`u`), and the token's when it has its own limit (`t`).
fn counters(hold: &Hold) -> Result<Vec<(String, &'static str)>, CasError> {
    let bad = |e: crate::bus::subjects::InvalidToken| CasError::Store(store_error(e));
    let mut out = vec![(subjects::quota_used(&Token::new("user_id", &hold.user).map_err(bad)?), "u")];
    if let Some(t) = &hold.token {
        out.push((subjects::quota_token_used(&Token::new("token_id", t).map_err(bad)?), "t"));
    }
    Ok(out)
}

/// Whether one increment of a hold happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Did {
    /// It did (acknowledged).
    Yes,
    /// It was never sent.
    No,
    /// Unknown (sent without an answer, or the hold is not marked `counted`).
    Maybe,
}

impl Did {
    /// What a recovery knows of a hold's increments.
    fn of(hold: &Hold) -> [Did; 2] {
        let d = if hold.counted { Did::Yes } else { Did::Maybe };
        [d, d]
    }
}

/// Why a compare-and-swap on a hold did not happen.
#[derive(Debug)]
pub(crate) enum CasError {
    /// Someone else moved the hold first: what the subject holds now (`None`: nothing, the
    /// hold was completed and purged).
    Lost(Option<Box<Hold>>),
    /// The store did not answer.
    Store(RequestError),
}

impl QuotaStore {
    /// Publish `hold` on its subject if the subject's last sequence is `expected` (0: the
    /// subject is empty). Returns the new sequence. Retried on timeouts; a retry of a write
    /// that did land is recognised by its `Nats-Msg-Id` and counts as success.
    pub(crate) async fn put_hold(&self, hold: &Hold, expected: u64) -> Result<u64, CasError> {
        let id = Token::new("hold_id", &hold.id).map_err(|e| CasError::Store(store_error(e)))?;
        let body: bytes::Bytes = serde_json::to_vec(hold).map_err(|e| CasError::Store(store_error(e)))?.into();
        let msg_id = format!("{}:{:?}{}", hold.id, hold.state, if hold.counted { "-counted" } else { "" });
        let mut last = String::new();
        for attempt in 0..3u32 {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
            h.insert("Nats-Msg-Id", msg_id.as_str());
            let res = tokio::time::timeout(OP_TIMEOUT, async {
                self.jetstream().publish_with_headers(subjects::quota_hold(&id), h, body.clone()).await?.await
            })
            .await;
            match res {
                Ok(Ok(ack)) => return Ok(ack.sequence),
                Ok(Err(e)) if e.kind() == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence => {
                    // JetStream checks the expected sequence before de-duplicating, so a retry
                    // of a write that landed looks like this too: compare with what is there.
                    return match self.current_hold(&id).await.map_err(CasError::Store)? {
                        Some((current, seq)) if current == *hold => Ok(seq),
                        other => Err(CasError::Lost(other.map(|(h, _)| Box::new(h)))),
                    };
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "hold write timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Err(CasError::Store(store_error(last)))
    }

    /// The hold on `quota.hold.<id>` now, with its sequence.
    pub(crate) async fn current_hold(&self, id: &Token) -> Result<Option<(Hold, u64)>, RequestError> {
        let get = self.holds().direct_get_last_for_subject(subjects::quota_hold(id));
        match tokio::time::timeout(OP_TIMEOUT, get).await {
            Err(_) => Err(store_error("hold read timed out")),
            Ok(Ok(m)) => Ok(serde_json::from_slice(&m.payload).ok().map(|h| (h, m.sequence))),
            Ok(Err(e)) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
            Ok(Err(e)) => Err(store_error(e)),
        }
    }

    /// Mark a hold finished: its last message becomes `done` (expiring after [`DONE_TTL`]).
    pub(crate) async fn drop_hold(&self, hold: &Hold) {
        let Ok(id) = Token::new("hold_id", &hold.id) else { return };
        // A lease's done message keeps what it charged: an owner that settles it late
        // charges only what that misses.
        let actual = if hold.lease { hold.actual } else { None };
        let done = Hold { state: HoldState::Done, actual, record: None, ..hold.clone() };
        let Ok(body) = serde_json::to_vec(&done) else { return };
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-TTL", format!("{}s", DONE_TTL.as_secs()).as_str());
        h.insert("Nats-Msg-Id", format!("{}:Done", hold.id).as_str());
        for attempt in 0..3u32 {
            let write = async {
                self.jetstream()
                    .publish_with_headers(subjects::quota_hold(&id), h.clone(), body.clone().into())
                    .await?
                    .await
            };
            match tokio::time::timeout(OP_TIMEOUT, write).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => tracing::debug!(hold = %hold.id, error = %e, "hold done-mark failed"),
                Err(_) => tracing::debug!(hold = %hold.id, "hold done-mark timed out"),
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        tracing::warn!(hold = %hold.id, "could not mark a finished hold done; a scan will redo its (idempotent) steps");
    }

    /// Give a hold back: claim it (`released`) unless `claimed`, take back its increments
    /// (`did`: whether the user's and the token's increment happened; an unknown one is
    /// redone under its `Nats-Msg-Id` first, a no-op when it had happened), write a
    /// zero-cost ledger record when `record` (recoveries), purge. `Err(CasError::Lost)` when
    /// someone else owns its outcome.
    pub(crate) async fn release(
        &self,
        hold: &Hold,
        seq: u64,
        claimed: bool,
        record: bool,
        did: [Did; 2],
    ) -> Result<(), CasError> {
        if !claimed {
            let mut released = hold.clone();
            released.state = HoldState::Released;
            self.put_hold(&released, seq).await?;
        }
        let user = Token::new("user_id", &hold.user).map_err(|e| CasError::Store(store_error(e)))?;
        for ((subject, name), did) in counters(hold)?.into_iter().zip(did) {
            if did == Did::No {
                continue;
            }
            if did == Did::Maybe {
                self.redo_increment(hold, &subject, name).await?;
            }
            self.incr_raw(subject, -hold.units, &format!("{}:{name}-", hold.id)).await.map_err(CasError::Store)?;
        }
        if record {
            let rec = UsageRecord {
                kind: "usage".into(),
                trace_id: hold.trace_id.clone(),
                user_id: hold.user.clone(),
                hold_id: Some(hold.id.clone()),
                status: 0,
                quota: 0,
                channel: "released: the serving worker was lost".into(),
                timestamp: crate::clock::now_rfc3339(),
                ..Default::default()
            };
            super::ledger::append(self.jetstream(), &user, &rec).await.map_err(|e| CasError::Store(store_error(e)))?;
        }
        self.drop_hold(hold).await;
        Ok(())
    }

    /// The steps of a settle after its compare-and-swap: counter corrections, the request
    /// count, the ledger record, purge. Idempotent (every write is keyed by the hold id).
    pub(crate) async fn finish_settle(&self, hold: &Hold) -> Result<i64, RequestError> {
        let user = Token::new("user_id", &hold.user).map_err(store_error)?;
        let actual = hold.actual.unwrap_or(0);
        let delta = actual - hold.units;
        let step = |s: &str| format!("{}:{s}", hold.id);
        // Only an owner whose increments were acknowledged writes `settling`: no redo here
        // (a settle may come long after the hold, outside the duplicate window).
        let used = self.incr_once(subjects::quota_used(&user), delta, &step("us")).await?;
        if let Some(t) = &hold.token {
            let t = Token::new("token_id", t).map_err(store_error)?;
            self.incr_once(subjects::quota_token_used(&t), delta, &step("ts")).await?;
        }
        let requests = if hold.lease { hold.requests as i64 } else { 1 };
        self.incr_once(subjects::quota_requests(&user), requests, &step("r")).await?;
        if let Some(rec) = &hold.record {
            let mut rec = rec.clone();
            rec.quota = actual;
            rec.hold_id = Some(hold.id.clone());
            super::ledger::append(self.jetstream(), &user, &rec).await.map_err(store_error)?;
        }
        self.drop_hold(hold).await;
        Ok(used)
    }

    /// Redo a hold's increment of one counter under its `Nats-Msg-Id` (`<hold>:<name>+`): a
    /// no-op inside the duplicate window when it had happened.
    async fn redo_increment(&self, hold: &Hold, subject: &str, name: &str) -> Result<(), CasError> {
        self.incr_raw(subject.to_string(), hold.units, &format!("{}:{name}+", hold.id))
            .await
            .map(|_| ())
            .map_err(CasError::Store)
    }

    /// Complete a lease whose owner is gone (or that outlived its deadline): charge what the
    /// ledger holds of it (the records its requests appended, found by lease id from the
    /// lease's start), count them, and give the rest back. Requests whose records never reached
    /// the ledger are not charged (see RELIABILITY.md); an owner that comes back and settles
    /// the lease itself charges only what this missed.
    pub(crate) async fn reclaim_lease(&self, hold: &Hold, seq: u64) -> Result<(), CasError> {
        let user = Token::new("user_id", &hold.user).map_err(|e| CasError::Store(store_error(e)))?;
        let (spent, requests) = super::ledger::lease_spend(self.jetstream(), &user, &hold.id, hold.created_ms)
            .await
            .map_err(|e| CasError::Store(store_error(e)))?;
        if !hold.counted {
            // The owner may have been lost before its increments: redo them (no-ops when
            // they landed), so the settle's correction below takes back only what was added.
            for (subject, name) in counters(hold)? {
                self.redo_increment(hold, &subject, name).await?;
            }
        }
        let mut settling = hold.clone();
        settling.state = HoldState::Settling;
        settling.counted = true;
        settling.actual = Some(spent);
        settling.requests = requests;
        self.put_hold(&settling, seq).await?;
        self.finish_settle(&settling).await.map_err(CasError::Store)?;
        Ok(())
    }

    /// Announce a live worker for `ttl` (a KV put with a per-message TTL: the key vanishes
    /// on its own when the worker stops refreshing it).
    pub async fn announce(&self, worker: &str, ttl: Duration) -> Result<(), RequestError> {
        let key = Token::new("worker_id", worker).map_err(store_error)?;
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-TTL", format!("{}s", ttl.as_secs().max(1)).as_str());
        let subject = subjects::kv_key(WORKERS, &key);
        tokio::time::timeout(OP_TIMEOUT, async {
            self.jetstream().publish_with_headers(subject, h, bytes::Bytes::from_static(b"alive")).await?.await
        })
        .await
        .map_err(|_| store_error("worker announce timed out"))?
        .map_err(store_error)?;
        Ok(())
    }

    /// Whether a worker's key is in `WORKERS`.
    pub async fn worker_alive(&self, worker: &str) -> Result<bool, RequestError> {
        if Token::new("worker_id", worker).is_err() {
            return Ok(false);
        }
        let get = tokio::time::timeout(OP_TIMEOUT, self.workers().get(worker))
            .await
            .map_err(|_| store_error("worker lookup timed out"))?
            .map_err(store_error)?;
        Ok(get.is_some())
    }

    /// Holds not yet `done` (for tests and tooling; reads every hold, at most 100,000).
    pub async fn holds_in_flight(&self) -> Result<u64, RequestError> {
        let mut open = 0;
        let mut next = 1u64;
        for _ in 0..100_000 {
            let get = self.holds().direct_get_next_for_subject(subjects::quota_hold_all(), Some(next));
            let msg = match tokio::time::timeout(OP_TIMEOUT, get).await {
                Err(_) => return Err(store_error("hold scan timed out")),
                Ok(Ok(m)) => m,
                Ok(Err(e)) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => break,
                Ok(Err(e)) => return Err(store_error(e)),
            };
            next = msg.sequence + 1;
            if self.is_current(&msg).await? {
                if let Ok(h) = serde_json::from_slice::<Hold>(&msg.payload) {
                    open += u64::from(h.state != HoldState::Done);
                }
            }
        }
        Ok(open)
    }

    /// Whether `msg` is the last message of its subject (older ones may be deleted
    /// messages that a crash brought back).
    async fn is_current(&self, msg: &async_nats::jetstream::message::StreamMessage) -> Result<bool, RequestError> {
        let get = self.holds().direct_get_last_for_subject(msg.subject.to_string());
        match tokio::time::timeout(OP_TIMEOUT, get).await {
            Err(_) => Err(store_error("hold read timed out")),
            Ok(Ok(last)) => Ok(last.sequence == msg.sequence),
            Ok(Err(e)) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => Ok(false),
            Ok(Err(e)) => Err(store_error(e)),
        }
    }
}

/// Finds and completes holds whose owner is gone. One per worker; [`Reaper::scan`] runs
/// every few seconds. It reads the hold stream once, in sequence order, with a cursor: a
/// hold still open when read (and older than a liveness period) is watched and looked at
/// again each scan until its last message is `done`.
pub struct Reaper {
    /// The store.
    store: QuotaStore,
    /// The liveness period: how long a worker key lives without a refresh.
    liveness: Duration,
    /// Next stream sequence to read.
    cursor: u64,
    /// Open holds already read: hold id → subject.
    watch: HashMap<String, String>,
    /// Holds whose owner was absent at an earlier scan, and since when.
    suspects: HashMap<String, Instant>,
}

impl Reaper {
    /// Read the hold messages appended since the last scan that are older than a liveness
    /// period (one ordered consumer from the cursor, not one request per message): open
    /// holds join the watch list, `done` ones leave it.
    async fn read_new(&mut self) -> Result<(), RequestError> {
        use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
        let mut info = self.store.holds().clone();
        let last = tokio::time::timeout(OP_TIMEOUT, info.info())
            .await
            .map_err(|_| store_error("hold stream info timed out"))?
            .map_err(store_error)?
            .state
            .last_sequence;
        if last < self.cursor {
            return Ok(());
        }
        let young = time::OffsetDateTime::now_utc() - self.liveness;
        let config = OrderedConfig {
            filter_subject: subjects::quota_hold_all(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: self.cursor },
            ..Default::default()
        };
        let consumer = tokio::time::timeout(OP_TIMEOUT, self.store.holds().create_consumer(config))
            .await
            .map_err(|_| store_error("hold consumer timed out"))?
            .map_err(store_error)?;
        let mut messages = consumer.messages().await.map_err(store_error)?;
        use futures::StreamExt;
        for _ in 0..SCAN_LIMIT {
            let msg = match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(store_error(e)),
                Ok(None) | Err(_) => break,
            };
            let Ok(meta) = msg.info() else { break };
            // Sequence order is time order: everything after a young hold is young too.
            if meta.published > young {
                break;
            }
            let (seq, pending) = (meta.stream_sequence, meta.pending);
            self.cursor = seq + 1;
            match serde_json::from_slice::<Hold>(&msg.payload) {
                Ok(h) if h.state == HoldState::Done => {
                    self.watch.remove(&h.id);
                }
                Ok(h) => {
                    self.watch.insert(h.id, msg.subject.to_string());
                }
                Err(_) => tracing::warn!(subject = %msg.subject, "unreadable hold; leaving it for an operator"),
            }
            if pending == 0 {
                break;
            }
        }
        Ok(())
    }

    /// A reaper for workers announcing with `liveness` TTLs.
    pub fn new(store: QuotaStore, liveness: Duration) -> Self {
        Self { store, liveness, cursor: 1, watch: HashMap::new(), suspects: HashMap::new() }
    }

    /// Read the holds appended since the last scan (those older than one liveness period),
    /// then look at every open one and complete the orphaned ones. Returns how many were
    /// completed.
    ///
    /// Each watched hold costs one direct get per scan; the watch list holds only holds
    /// older than a liveness period that are not done (long requests and orphans).
    pub async fn scan(&mut self) -> Result<usize, RequestError> {
        self.read_new().await?;
        let mut alive: HashMap<String, bool> = HashMap::new();
        let mut completed = 0;
        let watched: Vec<(String, String)> = self.watch.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (id, subject) in watched {
            // The last message of the subject is the hold's state (older ones may be deleted
            // messages that a nats-server crash brought back).
            let get = self.store.holds().direct_get_last_for_subject(subject);
            let msg = match tokio::time::timeout(OP_TIMEOUT, get).await {
                Err(_) => return Err(store_error("hold read timed out")),
                Ok(Ok(m)) => m,
                Ok(Err(e)) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {
                    self.watch.remove(&id);
                    continue;
                }
                Ok(Err(e)) => return Err(store_error(e)),
            };
            let hold = match serde_json::from_slice::<Hold>(&msg.payload) {
                Ok(h) if h.state != HoldState::Done => h,
                _ => {
                    self.watch.remove(&id);
                    self.suspects.remove(&id);
                    continue;
                }
            };
            let owner_alive = match alive.get(&hold.worker) {
                Some(a) => *a,
                None => {
                    let a = self.store.worker_alive(&hold.worker).await?;
                    alive.insert(hold.worker.clone(), a);
                    a
                }
            };
            // An absent owner must stay absent a whole liveness period (two scans apart):
            // a worker briefly cut off from NATS, or a server restart, must not look dead.
            let orphaned = if owner_alive {
                self.suspects.remove(&id);
                false
            } else {
                let first = *self.suspects.entry(id.clone()).or_insert_with(Instant::now);
                first.elapsed() >= self.liveness
            };
            let age = time::OffsetDateTime::now_utc() - msg.time;
            let overdue = match hold.state {
                HoldState::Held => crate::clock::now_ms() > hold.deadline_ms,
                HoldState::Settling | HoldState::Released => age > SETTLE_GRACE,
                HoldState::Done => false,
            };
            if !(orphaned || overdue) {
                continue;
            }
            let outcome = match hold.state {
                HoldState::Held if hold.lease => match self.store.reclaim_lease(&hold, msg.sequence).await {
                    Ok(()) => Ok(true),
                    Err(CasError::Lost(_)) => Ok(false),
                    Err(CasError::Store(e)) => Err(e),
                },
                HoldState::Held => match self.store.release(&hold, msg.sequence, false, true, Did::of(&hold)).await {
                    Ok(()) => Ok(true),
                    Err(CasError::Lost(_)) => Ok(false),
                    Err(CasError::Store(e)) => Err(e),
                },
                HoldState::Released => {
                    match self.store.release(&hold, msg.sequence, true, true, Did::of(&hold)).await {
                        Ok(()) => Ok(true),
                        Err(CasError::Lost(_)) => Ok(false),
                        Err(CasError::Store(e)) => Err(e),
                    }
                }
                HoldState::Settling => self.store.finish_settle(&hold).await.map(|_| true),
                HoldState::Done => Ok(false),
            };
            match outcome {
                Ok(true) => {
                    completed += 1;
                    self.suspects.remove(&id);
                    tracing::info!(hold = %hold.id, trace_id = %hold.trace_id, user = %hold.user, state = ?hold.state,
                        owner_alive, "completed an orphaned quota hold");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(hold = %hold.id, error = %e.message, "could not complete a quota hold; will retry")
                }
            }
        }
        Ok(completed)
    }
}
