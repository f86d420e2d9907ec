//! A worker's accumulator: confirmed ledger records go in (in memory, no I/O), and every
//! flush interval each document they touch is merged into `USAGE_STATS` with one
//! compare-and-set. Its cost on a request is one lock and a push; the merges are off the
//! request's path and their number is bounded by the documents touched (four per active
//! user and period), not by the traffic.
//!
//! A merge carries the worker's flush number and the document remembers it (`marks`): a
//! merge retried after an unanswered write that did land is recognised and not counted
//! twice. A document not merged (no JetStream leader) keeps its points for the next flush.

use super::{Doc, Point, BUCKET};
use async_nats::jetstream::kv::Store;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Bound on one KV read or write.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Compare-and-set attempts per document and flush (another worker merging the same
/// document at the same moment is the only conflict).
const CAS_TRIES: usize = 8;
/// Points kept for documents that cannot be merged (no leader), beyond which the oldest
/// are dropped and counted (a rebuild restores them from the ledger).
const MAX_WAITING: usize = 1_000_000;

/// The handle the ledger writer feeds.
#[derive(Clone)]
pub struct Rollup {
    /// Points confirmed since the last flush.
    fresh: Arc<Mutex<Vec<Point>>>,
    /// Asks the flusher for a last flush (answered when it is done).
    close: mpsc::Sender<oneshot::Sender<()>>,
}

/// Per document, the merges still owed: (flush number, its points).
type Owed = BTreeMap<String, Vec<(u64, Vec<Arc<Point>>)>>;

impl Rollup {
    /// Open the bucket and start the flusher (every `every`, and once more on [`close`]);
    /// `None` when the bucket is not there (`ailurus streams apply` makes it).
    ///
    /// [`close`]: Self::close
    pub async fn start(js: &async_nats::jetstream::Context, worker: String, every: Duration) -> Option<Self> {
        let kv = match tokio::time::timeout(TIMEOUT, js.get_key_value(BUCKET)).await {
            Ok(Ok(kv)) => kv,
            _ => {
                tracing::warn!("no {BUCKET} KV bucket: usage statistics are not kept (run `ailurus streams apply`)");
                return None;
            }
        };
        let (close, closed) = mpsc::channel(1);
        let me = Self { fresh: Arc::default(), close };
        tokio::spawn(flusher(kv, worker, me.fresh.clone(), every, closed));
        Some(me)
    }

    /// Flush what is left and stop the flusher (a stopping worker, once its ledger records
    /// are confirmed); waits at most `limit`.
    pub async fn close(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.close.send(tx).await.is_ok() && tokio::time::timeout(limit, rx).await.is_err() {
            tracing::warn!("usage statistics' last flush did not finish in time (run `ailurus stats rebuild`)");
        }
    }

    /// Count a record the ledger confirmed at `seq`.
    pub fn add(&self, point: Point) {
        if let Ok(mut f) = self.fresh.lock() {
            f.push(point);
        }
    }
}

/// The flush loop.
async fn flusher(
    kv: Store,
    worker: String,
    fresh: Arc<Mutex<Vec<Point>>>,
    every: Duration,
    mut closed: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut owed = Owed::new();
    let mut flush_no = 0u64;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => None,
            asked = closed.recv() => Some(asked),
        };
        let points = fresh.lock().map(|mut f| std::mem::take(&mut *f)).unwrap_or_default();
        if !points.is_empty() {
            flush_no += 1;
            let mut batch: BTreeMap<String, Vec<Arc<Point>>> = BTreeMap::new();
            for p in points {
                let p = Arc::new(p);
                for key in p.keys() {
                    batch.entry(key).or_default().push(p.clone());
                }
            }
            for (key, pts) in batch {
                owed.entry(key).or_default().push((flush_no, pts));
            }
        }
        let mut left = BTreeMap::new();
        for (key, merges) in std::mem::take(&mut owed) {
            if let Err(e) = merge(&kv, &worker, &key, &merges).await {
                tracing::warn!(key = %key, error = %e, "usage statistics merge failed; retried at the next flush");
                left.insert(key, merges);
            }
        }
        owed = bound(left);
        if let Some(asked) = last {
            if let Some(done) = asked {
                let _ = done.send(());
            }
            return;
        }
    }
}

/// Drop the oldest owed points past [`MAX_WAITING`].
fn bound(mut owed: Owed) -> Owed {
    let mut total: usize = owed.values().flatten().map(|(_, p)| p.len()).sum();
    while total > MAX_WAITING {
        let Some(key) = owed.keys().next().cloned() else { break };
        if let Some(merges) = owed.remove(&key) {
            let n: usize = merges.iter().map(|(_, p)| p.len()).sum();
            total -= n;
            tracing::error!(key = %key, points = n, "usage statistics could not be merged for too long; dropped (run `ailurus stats rebuild`)");
        }
    }
    owed
}

/// Merge `merges` (in flush order) into document `key` with compare-and-set.
async fn merge(kv: &Store, worker: &str, key: &str, merges: &[(u64, Vec<Arc<Point>>)]) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..CAS_TRIES {
        let entry = crate::quota::within("stats read", TIMEOUT, kv.entry(key)).await?;
        let (mut doc, revision) = match &entry {
            Some(e) if !e.value.is_empty() => (Doc::decode(&e.value), Some(e.revision)),
            Some(e) => (Doc::default(), Some(e.revision)),
            None => (Doc::default(), None),
        };
        let mark = doc.marks.get(worker).copied().unwrap_or(0);
        let mut changed = false;
        for (no, pts) in merges.iter().filter(|(no, _)| *no > mark) {
            let through = doc.through;
            for p in pts.iter().filter(|p| p.seq > through) {
                doc.add(key, p);
            }
            doc.marks.insert(worker.to_string(), *no);
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        let body = doc.encode();
        let wrote = match revision {
            Some(rev) => {
                crate::quota::within("stats write", TIMEOUT, kv.update(key, body.into(), rev)).await.map(|_| ())
            }
            None => crate::quota::within("stats write", TIMEOUT, kv.create(key, body.into())).await.map(|_| ()),
        };
        match wrote {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}
