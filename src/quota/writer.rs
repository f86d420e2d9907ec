//! The ledger writer: usage records leave the request's path here. One task per worker
//! takes records from a queue, gathers what comes within its linger
//! (`[worker] ledger_linger_ms`) of the first, publishes up to [`BATCH`] of them back to back
//! (pipelined: every publish goes out before the first acknowledgement is awaited; nats-server
//! spends about a third of the CPU on a record of a batch that it spends on one alone), sends one quota
//! event per user for what the batch confirmed, and retries the ones
//! not acknowledged, in order, until a JetStream leader answers. Each record keeps its
//! `Nats-Msg-Id` (`usage-<lease>.<n>`), so a retry of a record that did land is stored once.
//! A record not confirmed within [`PATIENCE`] (inside the stream's two-minute duplicate
//! window, past which a retry could be stored twice) is given up and counted.

use super::account::QuotaStore;
use super::lease::Lease;
use super::ledger::UsageRecord;
use crate::bus::subjects::{self, Token};
use crate::stats::rollup::Rollup;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most records published before their acknowledgements are awaited.
const BATCH: usize = 256;
/// How long a record is retried before it is given up.
const PATIENCE: Duration = Duration::from_secs(100);
/// Bound on one publish or one acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One record on its way to the ledger.
pub(crate) struct Entry {
    /// `llm.usage.<user>`.
    subject: String,
    /// `Nats-Msg-Id`.
    msg_id: String,
    /// The record, serialised once.
    body: Bytes,
    /// Units it charges.
    quota: i64,
    /// The model and trace, for the quota event sent once it is confirmed.
    model: String,
    /// See `model`.
    trace_id: String,
    /// The lease it was drawn on (told when it is confirmed or given up).
    lease: Arc<Lease>,
    /// When it was queued.
    queued: Instant,
    /// What it adds to the usage statistics (its sequence filled in once confirmed).
    point: Option<crate::stats::Point>,
}

impl Entry {
    /// An entry for `record` of `user`, drawn on `lease`.
    pub(crate) fn new(user: &Token, record: &UsageRecord, lease: Arc<Lease>) -> Self {
        Self {
            subject: subjects::usage(user),
            msg_id: super::ledger::msg_id(record),
            // A record is plain data: serialising it cannot fail.
            body: serde_json::to_vec(record).map(Bytes::from).unwrap_or_default(),
            quota: record.quota,
            model: record.model.clone(),
            trace_id: record.trace_id.clone(),
            lease,
            queued: Instant::now(),
            point: crate::stats::Point::from_record(0, record),
        }
    }
}

/// The handle requests push records to.
#[derive(Clone)]
pub(crate) struct LedgerWriter {
    /// The queue.
    tx: mpsc::UnboundedSender<Entry>,
    /// Records queued and not yet confirmed or given up.
    queued: Arc<AtomicU64>,
    /// Records given up since start.
    abandoned: Arc<AtomicU64>,
}

impl LedgerWriter {
    /// Start the writer task; it runs until every handle is dropped and its queue is empty
    /// (a stopping worker waits for its leases, see [`super::lease::Leases::drain`]).
    /// Confirmed records are counted in `stats` when given.
    /// The writer gathers records for up to `linger` after the first one before publishing.
    pub(crate) fn start(store: QuotaStore, stats: Option<Rollup>, linger: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicU64::new(0));
        let abandoned = Arc::new(AtomicU64::new(0));
        let w = Self { tx, queued: queued.clone(), abandoned: abandoned.clone() };
        tokio::spawn(run(store, rx, queued, abandoned, stats, linger));
        w
    }

    /// Queue a record (never waits; the queue is bounded by admission, see
    /// [`super::lease::MAX_QUEUED`]).
    pub(crate) fn push(&self, entry: Entry) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(entry)) = self.tx.send(entry) {
            // The writer is gone (the worker is stopping past its drain): the record cannot
            // be confirmed; its lease settles without it and a reaper finds nothing of it.
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.abandoned.fetch_add(1, Ordering::Relaxed);
            entry.lease.abandoned();
            tracing::error!(trace_id = %entry.trace_id, "ledger writer stopped; usage record dropped");
        }
    }

    /// Records waiting for confirmation.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records given up since start.
    pub(crate) fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }
}

/// The writer loop.
async fn run(
    store: QuotaStore,
    mut rx: mpsc::UnboundedReceiver<Entry>,
    queued: Arc<AtomicU64>,
    abandoned: Arc<AtomicU64>,
    stats: Option<Rollup>,
    linger: Duration,
) {
    let mut pending: VecDeque<Entry> = VecDeque::new();
    let mut pause = Duration::from_millis(50);
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(e) => pending.push_back(e),
                None => return,
            }
            // Gather what comes within `linger` of the first record: one wake-up of the
            // server for the lot. A closed queue (the worker stopping) publishes at once.
            let until = tokio::time::Instant::now() + linger;
            while pending.len() < BATCH && !linger.is_zero() {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(e)) => pending.push_back(e),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        while pending.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => pending.push_back(e),
                Err(_) => break,
            }
        }
        let n = pending.len().min(BATCH);
        let confirmed = publish_batch(&store, pending.range(..n)).await;
        let mut kept = VecDeque::with_capacity(pending.len());
        let mut failed = false;
        let mut events: Vec<Change> = Vec::new();
        for (i, mut e) in pending.drain(..).enumerate() {
            if let Some(seq) = confirmed.get(i).copied().flatten() {
                queued.fetch_sub(1, Ordering::Relaxed);
                if let (Some(stats), Some(mut p)) = (&stats, e.point.take()) {
                    p.seq = seq;
                    stats.add(p);
                }
                let (user, total, used) = e.lease.confirmed(e.quota);
                match events.iter_mut().find(|c| c.user == user) {
                    Some(c) => c.add(total, used, e.quota),
                    None => events.push(Change { user, total, used, cost: e.quota, one: Some((e.model, e.trace_id)) }),
                }
            } else if i < n && e.queued.elapsed() >= PATIENCE {
                queued.fetch_sub(1, Ordering::Relaxed);
                abandoned.fetch_add(1, Ordering::Relaxed);
                e.lease.abandoned();
                tracing::error!(trace_id = %e.trace_id, "usage record not confirmed within the duplicate window; given up");
            } else {
                failed |= i < n;
                kept.push_back(e);
            }
        }
        pending = kept;
        for c in events {
            let (model, trace) = c.one.unzip();
            store.event(&c.user, c.total, c.used, c.cost, model, trace).await;
        }
        if failed {
            tracing::warn!(waiting = pending.len(), "ledger appends not confirmed; retrying");
            tokio::time::sleep(pause).await;
            // A failed publish during an election fails at once: retry often.
            pause = (pause * 2).min(Duration::from_millis(500));
        } else {
            pause = Duration::from_millis(50);
        }
    }
}

/// One user's balance change from the records a batch confirmed: one `user.<id>.quota`
/// event for the lot (each one is also a stored message in `USER_EVENTS`).
struct Change {
    /// Whose balance.
    user: Token,
    /// The balance after the batch.
    total: i64,
    /// See `total`.
    used: i64,
    /// What the batch's records of this user charged together.
    cost: i64,
    /// The model and trace id when the batch held one record of this user (several have none).
    one: Option<(String, String)>,
}

impl Change {
    /// Count one more confirmed record, after which the balance is `total` / `used`.
    fn add(&mut self, total: i64, used: i64, cost: i64) {
        (self.total, self.used) = (total, used);
        self.cost += cost;
        self.one = None;
    }
}

/// Publish `batch` back to back, then await the acknowledgements: each one's stream
/// sequence, if it was stored.
async fn publish_batch<'a>(store: &QuotaStore, batch: impl Iterator<Item = &'a Entry>) -> Vec<Option<u64>> {
    let js = store.jetstream();
    let mut acks = Vec::new();
    let mut connected = true;
    for e in batch {
        if !connected {
            acks.push(None);
            continue;
        }
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", e.msg_id.as_str());
        let sent =
            tokio::time::timeout(ACK_TIMEOUT, js.publish_with_headers(e.subject.clone(), h, e.body.clone())).await;
        acks.push(match sent {
            Ok(Ok(ack)) => Some(ack),
            // The connection does not take messages: the rest of the batch waits too.
            _ => {
                connected = false;
                None
            }
        });
    }
    // Every acknowledgement is awaited at once: one bound for the whole batch.
    futures::future::join_all(acks.into_iter().map(|ack| async move {
        match ack {
            Some(ack) => match tokio::time::timeout(ACK_TIMEOUT, ack).await {
                Ok(Ok(ack)) => Some(ack.sequence),
                _ => None,
            },
            None => None,
        }
    }))
    .await
}
