//! A fail-closed in-memory copy of a KV bucket: every record in memory, kept current by a KV
//! watch, and trusted only while proven current (see [`MAX_STALE`]). Used for API tokens
//! (`quota/tokens.rs`) and the live configuration (channels, prices, group ratios).
//!
//! The follower loads every key, then applies the watch's puts and deletes; every
//! [`PROBE_EVERY`] it asks the server for the bucket's last revision and, once the copy has
//! applied it, notes the time it asked as the last proof. When the watch ends, fails, falls
//! behind or the connection drops, the copy stays trusted only until that proof is
//! [`MAX_STALE`] old (or, while the bucket is leaderless, [`ELECTION_GRACE`] more); after a
//! short backoff a new watch is opened and every key loaded again, so deleted and purged
//! records leave the copy. Each applied change bumps a version readers can wait on.

use crate::shutdown::Shutdown;
use async_nats::connection::State;
use async_nats::jetstream::kv;
use dashmap::DashMap;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the in-memory copy is trusted after the last proof that it was current: a
/// reader answers from the copy only if, at most `MAX_STALE` before, the server's last
/// revision of the bucket (asked every [`PROBE_EVERY`]) was already applied to it.
/// Otherwise — watch ended, failed, fell behind, connection lost, or a reload not finished —
/// the reader reads the bucket itself (within a bound) and refuses if it cannot. So a change
/// acknowledged by the server at time `t` is honoured by every reader from `t + MAX_STALE`
/// on, whatever happens to the watch (normally within milliseconds).
pub const MAX_STALE: Duration = Duration::from_secs(2);

/// How much longer the copy stays trusted while the bucket's stream is leaderless (a
/// JetStream election after a node loss: the probe times out or hears "no responders" /
/// "unavailable" while the connection is up). No change can be acknowledged without a
/// leader, so the copy is as current as it was; requests keep being served through the
/// election. The price: in a minority partition (the worker's node cut off from a majority
/// that elected a leader), a change made on the majority side is honoured within
/// `MAX_STALE + ELECTION_GRACE` instead of `MAX_STALE`. See RELIABILITY.md.
pub const ELECTION_GRACE: Duration = Duration::from_secs(15);

/// How often the follower asks the server for the bucket's last revision.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Bound on each request of the follower (stream info, opening the watch).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on loading every key when the follower (re)starts.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// First pause before following again after the watch was lost; doubles up to
/// [`BACKOFF_MAX`], back to this once a watch has lasted [`BACKOFF_RESET`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// A record and the bucket revision it came from.
#[derive(Debug, Clone)]
pub struct Cached<T> {
    /// The bucket revision of this value.
    pub revision: u64,
    /// The value.
    pub value: T,
}

/// How a mirror reads its bucket's values.
pub struct Spec<T> {
    /// The bucket name, for messages.
    pub bucket: &'static str,
    /// A value from a put's bytes; `Err` for an unreadable record (dropped, with a warning
    /// naming the key as [`Spec::label`] shows it).
    pub parse: fn(&[u8]) -> Result<T, String>,
    /// How a key may appear in a log (a key that is a credential shows only a prefix).
    pub label: fn(&str) -> String,
}

/// When the copy was last proven current.
#[derive(Debug)]
pub struct Freshness {
    /// Origin of `verified`.
    epoch: Instant,
    /// Microseconds from `epoch` to the sending of the last probe whose revision the copy
    /// had reached, plus one; 0: not trusted.
    verified: AtomicU64,
    /// Whether the last probe found the bucket's stream leaderless (see [`ELECTION_GRACE`]).
    election: AtomicBool,
}

impl Default for Freshness {
    fn default() -> Self {
        Self::new()
    }
}

impl Freshness {
    /// Never proven.
    pub fn new() -> Self {
        Self { epoch: Instant::now(), verified: AtomicU64::new(0), election: AtomicBool::new(false) }
    }

    /// Whether readers may answer from the copy now.
    pub fn trusted(&self) -> bool {
        match self.verified.load(Ordering::Acquire) {
            0 => false,
            v => {
                let bound = if self.election.load(Ordering::Acquire) { MAX_STALE + ELECTION_GRACE } else { MAX_STALE };
                self.epoch.elapsed() < Duration::from_micros(v - 1) + bound
            }
        }
    }

    /// Note what the last failed probe or load said: a leaderless stream extends the trust
    /// by [`ELECTION_GRACE`], anything else ends the extension.
    pub fn failed(&self, error: &str) {
        self.election.store(leaderless(error), Ordering::Release);
    }

    /// The copy held every revision the bucket had when `sent`.
    pub fn verify(&self, sent: Instant) {
        let us = u64::try_from(sent.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX - 1);
        self.verified.store(us + 1, Ordering::Release);
        self.election.store(false, Ordering::Release);
    }

    /// Stop trusting the copy until the next proof.
    pub fn distrust(&self) {
        self.verified.store(0, Ordering::Release);
        self.election.store(false, Ordering::Release);
    }
}

/// Whether a failed request to the bucket's stream looks like a leaderless stream (timed out,
/// no responders, JetStream temporarily unavailable) rather than a missing bucket or a bad
/// answer.
pub fn leaderless(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    ["timed out", "timeout", "no responders", "no stream found for given subject", "unavailable", "10008"]
        .iter()
        .any(|s| e.contains(s))
}

/// The bucket plus the in-memory copy. Cheap to clone (shared state).
pub struct Mirror<T> {
    /// The bucket.
    kv: kv::Store,
    /// The connection, to see it drop.
    client: async_nats::Client,
    /// How values are read.
    spec: Arc<Spec<T>>,
    /// key → value, kept current by [`Mirror::follow`].
    cache: Arc<DashMap<String, Cached<T>>>,
    /// Whether the copy may be trusted.
    fresh: Arc<Freshness>,
    /// Bumped after every change applied to the copy (a load counts as one).
    version: Arc<tokio::sync::watch::Sender<u64>>,
    /// The highest bucket revision the copy has applied, and the creation time (Unix ns) of
    /// the bucket's stream it was applied from (a re-created bucket starts again at 1).
    applied: Arc<(AtomicU64, std::sync::atomic::AtomicI64)>,
    /// One on-demand proof at a time: readers that find the copy untrusted together share it.
    proving: Arc<tokio::sync::Mutex<()>>,
}

impl<T> Clone for Mirror<T> {
    fn clone(&self) -> Self {
        Self {
            kv: self.kv.clone(),
            client: self.client.clone(),
            spec: self.spec.clone(),
            cache: self.cache.clone(),
            fresh: self.fresh.clone(),
            version: self.version.clone(),
            applied: self.applied.clone(),
            proving: self.proving.clone(),
        }
    }
}

/// The watch being followed and the highest bucket revision applied to the copy.
struct Live {
    watch: kv::Watch,
    revision: u64,
}

impl<T: Clone + Send + Sync + 'static> Mirror<T> {
    /// A mirror of `kv` (not following yet).
    pub fn new(kv: kv::Store, client: async_nats::Client, spec: Spec<T>) -> Self {
        Self {
            kv,
            client,
            spec: Arc::new(spec),
            cache: Arc::new(DashMap::new()),
            fresh: Arc::new(Freshness::new()),
            version: Arc::new(tokio::sync::watch::Sender::new(0)),
            applied: Arc::new((AtomicU64::new(0), std::sync::atomic::AtomicI64::new(0))),
            proving: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The bucket.
    pub fn store(&self) -> &kv::Store {
        &self.kv
    }

    /// Whether readers may answer from the copy now (proven current within [`MAX_STALE`]).
    pub fn trusted(&self) -> bool {
        self.fresh.trusted()
    }

    /// The cached value of `key`, whatever the trust (the caller checks [`Self::trusted`]).
    pub fn cached(&self, key: &str) -> Option<Cached<T>> {
        self.cache.get(key).map(|c| c.clone())
    }

    /// Every cached (key, value), sorted by key.
    pub fn entries(&self) -> Vec<(String, Cached<T>)> {
        let mut out: Vec<(String, Cached<T>)> =
            self.cache.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A receiver that sees the version change after every applied change.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Prove the copy current now, on demand (a reader that found it untrusted, under a load
    /// that delays the follower's own proofs): ask the bucket's last revision within `limit`;
    /// `Ok(true)` (and trusted again) when the copy has applied it, `Ok(false)` when it is
    /// behind. The error names the bucket only.
    pub async fn prove(&self, limit: Duration) -> Result<bool, String> {
        let bucket = self.spec.bucket;
        let state = async {
            let _one = self.proving.lock().await;
            // Another reader's proof may have landed while this one waited.
            if self.fresh.trusted() {
                return Ok(None);
            }
            Self::bucket_state(&self.kv, bucket).await.map(Some)
        };
        let asked = Instant::now();
        let answer = tokio::time::timeout(limit, state)
            .await
            .map_err(|_| format!("stream info of {bucket} timed out"))
            .and_then(|r| r);
        let (last, messages, created) = match answer {
            Ok(Some(state)) => state,
            Ok(None) => return Ok(true),
            // The same rule as the follower's own proofs: a leaderless bucket (an election)
            // extends the trust by ELECTION_GRACE, anything else does not.
            Err(e) => {
                self.fresh.failed(&e);
                return if self.fresh.trusted() { Ok(true) } else { Err(e) };
            }
        };
        let target = if messages == 0 { 0 } else { last };
        let same_stream = self.applied.1.load(Ordering::Acquire) == created;
        if same_stream && self.applied.0.load(Ordering::Acquire) >= target {
            self.fresh.verify(asked);
            return Ok(true);
        }
        Ok(false)
    }

    /// Note that the copy has applied `revision` of the stream created at `created`.
    fn applied_up_to(&self, revision: u64, created: Option<i64>) {
        if let Some(c) = created {
            self.applied.1.store(c, Ordering::Release);
            self.applied.0.store(revision, Ordering::Release);
        } else {
            self.applied.0.fetch_max(revision, Ordering::AcqRel);
        }
    }

    /// Read `key` from the bucket itself within `limit` (a put's value and revision; `None`
    /// for a missing or deleted key). The error names the bucket, never the key.
    pub async fn read(&self, key: &str, limit: Duration) -> Result<Option<Cached<T>>, String> {
        let bucket = self.spec.bucket;
        let e = tokio::time::timeout(limit, self.kv.entry(key))
            .await
            .map_err(|_| format!("reading {bucket} timed out after {limit:?}"))?
            .map_err(|e| format!("reading {bucket}: {}", e.kind()))?;
        Ok(e.and_then(|e| self.parse(&e)))
    }

    /// Follow the bucket until `shutdown`. Returns once the current contents are loaded (an
    /// error if they cannot be); see the module documentation for what happens after.
    pub async fn follow(&self, shutdown: Shutdown) -> Result<(), String> {
        let live = self.load().await?;
        let this = self.clone();
        tokio::spawn(async move { this.follow_loop(live, shutdown).await });
        Ok(())
    }

    /// Follow `live`; when it is lost, back off, load again and follow that, until `shutdown`.
    async fn follow_loop(self, live: Live, shutdown: Shutdown) {
        let bucket = self.spec.bucket;
        let mut live = Some(live);
        let mut backoff = BACKOFF_MIN;
        loop {
            if let Some(l) = live.take() {
                let started = Instant::now();
                match self.follow_live(l, &shutdown).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(bucket, error = %e, "KV watch lost; readers use the bucket until it is followed again")
                    }
                }
                // The copy stays trusted only as long as its last proof allows (`MAX_STALE`,
                // extended by an election): nothing it missed since can be older than that.
                if started.elapsed() >= BACKOFF_RESET {
                    backoff = BACKOFF_MIN;
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if self.client.connection_state() != State::Connected {
                continue;
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                loaded = self.load() => match loaded {
                    Ok(l) => {
                        tracing::info!(bucket, "KV watch following again");
                        live = Some(l);
                    }
                    Err(e) => {
                        // A leaderless bucket keeps the copy trusted for a while (no change
                        // can land either); anything else distrusts it.
                        if self.client.connection_state() == State::Connected && leaderless(&e) {
                            self.fresh.failed(&e);
                        } else {
                            self.fresh.distrust();
                        }
                        tracing::debug!(bucket, error = %e, "KV watch not reopened yet")
                    }
                },
            }
        }
    }

    /// The bucket's last revision, message count and creation time (Unix ns), from the server.
    async fn bucket_state(kv: &kv::Store, bucket: &str) -> Result<(u64, u64, i64), String> {
        let info = tokio::time::timeout(REQUEST_TIMEOUT, kv.stream.get_info())
            .await
            .map_err(|_| format!("stream info of {bucket} timed out"))?
            .map_err(|e| format!("stream info of {bucket}: {e}"))?;
        let created = i64::try_from(info.created.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        Ok((info.state.last_sequence, info.state.messages, created))
    }

    /// Open a watch that starts with the last value of every key, read it until it has
    /// delivered what the bucket held when we started, and replace the copy with that set.
    async fn load(&self) -> Result<Live, String> {
        let bucket = self.spec.bucket;
        // Trusted meanwhile only as long as the last proof allows (or an election extends it).
        let asked = Instant::now();
        let (last, messages, created) = Self::bucket_state(&self.kv, bucket).await?;
        let mut watch = tokio::time::timeout(REQUEST_TIMEOUT, self.kv.watch_with_history(">"))
            .await
            .map_err(|_| format!("watch {bucket} timed out"))?
            .map_err(|e| format!("watch {bucket}: {e}"))?;
        let mut set: HashMap<String, Cached<T>> = HashMap::new();
        let mut revision = 0;
        // Nothing to read when the bucket was empty; else read until the last revision we saw
        // (deliveries are in revision order) or until nothing is pending.
        if messages > 0 {
            let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
            loop {
                let entry = tokio::time::timeout_at(deadline, watch.next())
                    .await
                    .map_err(|_| format!("loading {bucket} timed out"))?
                    .ok_or_else(|| format!("watch {bucket} ended while loading"))?
                    .map_err(|e| format!("watch {bucket} while loading: {e}"))?;
                revision = revision.max(entry.revision);
                let done = entry.revision >= last || entry.delta == 0;
                match self.parse(&entry) {
                    Some(c) => set.insert(entry.key, c),
                    None => set.remove(&entry.key),
                };
                if done {
                    break;
                }
            }
        }
        self.cache.retain(|k, _| set.contains_key(k));
        for (k, c) in set {
            self.cache.insert(k, c);
        }
        // Everything up to `last` is applied: trusted as of when we asked for it.
        self.applied_up_to(revision.max(last), Some(created));
        self.fresh.verify(asked);
        self.version.send_modify(|v| *v += 1);
        Ok(Live { watch, revision: revision.max(last) })
    }

    /// Apply updates from `live` and prove the copy current every [`PROBE_EVERY`]. `Ok` on
    /// shutdown; `Err` when the watch ends or fails, the connection drops, or no proof
    /// succeeds for [`MAX_STALE`].
    async fn follow_live(&self, live: Live, shutdown: &Shutdown) -> Result<(), String> {
        let bucket = self.spec.bucket;
        let Live { mut watch, mut revision } = live;
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        type Answer = Result<(u64, u64, i64), String>;
        type Probe = std::pin::Pin<Box<dyn std::future::Future<Output = (Instant, Answer)> + Send>>;
        let mut probe: Option<Probe> = None;
        // A probe's answer not reached yet: (when it was asked, last revision).
        let mut target: Option<(Instant, u64)> = None;
        let mut proven = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                entry = watch.next() => match entry {
                    Some(Ok(e)) => {
                        revision = revision.max(e.revision);
                        self.apply(e);
                        self.applied_up_to(revision, None);
                    }
                    Some(Err(e)) => return Err(format!("watch {bucket}: {e}")),
                    None => return Err(format!("watch {bucket} ended")),
                },
                _ = tick.tick() => {
                    if self.client.connection_state() != State::Connected {
                        return Err("NATS connection lost".into());
                    }
                    if proven.elapsed() > MAX_STALE {
                        return Err(format!("copy not proven current for {:?}", proven.elapsed()));
                    }
                    if probe.is_none() && target.is_none() {
                        let kv = self.kv.clone();
                        probe = Some(Box::pin(async move {
                            let asked = Instant::now();
                            (asked, Self::bucket_state(&kv, bucket).await)
                        }));
                    }
                }
                (asked, answer) = async {
                    match probe.as_mut() {
                        Some(p) => p.await,
                        None => std::future::pending().await,
                    }
                }, if probe.is_some() => {
                    probe = None;
                    match answer {
                        // An empty bucket has nothing to catch up with.
                        Ok((last, messages, _)) => target = Some((asked, if messages == 0 { 0 } else { last })),
                        Err(e) => {
                            if self.client.connection_state() == State::Connected {
                                self.fresh.failed(&e);
                            }
                            tracing::debug!(bucket, error = %e, "KV copy probe failed")
                        }
                    }
                }
            }
            if let Some((asked, last)) = target {
                if revision >= last {
                    self.fresh.verify(asked);
                    proven = asked;
                    target = None;
                }
            }
        }
    }

    /// Apply one watch entry, unless the copy already holds a later revision of its key.
    fn apply(&self, e: kv::Entry) {
        let newer = self.cache.get(&e.key).is_none_or(|c| c.revision < e.revision);
        if !newer {
            return;
        }
        match self.parse(&e) {
            Some(c) => {
                self.cache.insert(e.key, c);
            }
            None => {
                self.cache.remove(&e.key);
            }
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// A watch entry as cached: `None` for a deleted, purged or unreadable record.
    fn parse(&self, e: &kv::Entry) -> Option<Cached<T>> {
        match e.operation {
            kv::Operation::Put => match (self.spec.parse)(&e.value) {
                Ok(value) => Some(Cached { revision: e.revision, value }),
                Err(err) => {
                    let key = (self.spec.label)(&e.key);
                    tracing::warn!(bucket = self.spec.bucket, key, error = %err, "unreadable record");
                    None
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_trusted_only_within_max_stale_of_a_proof() {
        let f = Freshness::new();
        assert!(!f.trusted(), "never proven");
        f.verify(Instant::now());
        assert!(f.trusted());
        // Proven longer than MAX_STALE ago: no longer trusted.
        if let Some(epoch) = Instant::now().checked_sub(MAX_STALE + Duration::from_millis(100)) {
            let old = Freshness { epoch, verified: AtomicU64::new(0), election: Default::default() };
            old.verify(epoch);
            assert!(!old.trusted());
            old.verify(epoch + Duration::from_millis(200));
            assert!(old.trusted());
        }
        f.distrust();
        assert!(!f.trusted(), "distrusted until the next proof");
    }

    #[test]
    fn a_leaderless_bucket_extends_the_trust_by_the_election_grace_only() {
        let Some(epoch) = Instant::now().checked_sub(MAX_STALE + Duration::from_secs(1)) else { return };
        let f = Freshness { epoch, verified: AtomicU64::new(0), election: Default::default() };
        f.verify(epoch);
        assert!(!f.trusted(), "past MAX_STALE");
        f.failed("stream info of TOKENS timed out");
        assert!(f.trusted(), "an election extends it");
        f.failed("stream info of TOKENS: nats: no responders");
        assert!(f.trusted());
        f.failed("stream info of TOKENS: stream not found");
        assert!(!f.trusted(), "a missing bucket is no election");
        f.failed("timed out");
        f.verify(epoch);
        assert!(!f.trusted(), "a proof ends the extension");
        // Past the grace, an election does not help either.
        if let Some(old) = Instant::now().checked_sub(MAX_STALE + ELECTION_GRACE + Duration::from_secs(1)) {
            let g = Freshness { epoch: old, verified: AtomicU64::new(0), election: Default::default() };
            g.verify(old);
            g.failed("timed out");
            assert!(!g.trusted());
        }
    }
}
