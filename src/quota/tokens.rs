//! API tokens. The plain token (`sk-ail-…`) is shown once at creation; the `TOKENS` bucket
//! keeps only its sha256 (the key) and a record. Workers hold every record in memory and
//! follow the bucket with a KV watch, so a revocation reaches every worker in milliseconds.
//! The copy is trusted only while it is proven current (see [`MAX_STALE`]); otherwise a
//! lookup reads the bucket, and refuses when the bucket does not answer. A record also keeps
//! the token's proof key, which checks the proof of possession requests carry on NATS; the
//! store carries the replay set those proofs are claimed in ([`ReplaySet`]).

use super::proof::ReplaySet;
use crate::shutdown::Shutdown;
use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use dashmap::DashMap;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The KV bucket name.
pub const BUCKET: &str = "TOKENS";

/// Whether a token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStatus {
    /// Usable.
    Active,
    /// Revoked by an admin (for good).
    Revoked,
    /// Switched off through the management API; can be switched on again.
    Disabled,
    /// Deleted through the management API (the bucket keeps the record, refused and unlisted).
    Deleted,
}

/// What `TOKENS` stores for a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Short id (first 12 hex digits of the hash), for listing and revoking.
    pub id: String,
    /// Owner; billed for its use.
    pub user_id: String,
    /// Human name.
    pub name: String,
    /// Active or revoked.
    pub status: TokenStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; none means no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Allowed model patterns; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// The token's own limit in quota units (its spending is the counter
    /// `quota.tokenused.<hash>`); none means only the user's quota applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_limit: Option<i64>,
    /// Requests per minute, across all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens (prompt + output) per minute, across all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once, across all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The key the token's proofs of possession are checked with; none for a token created
    /// before proofs existed (it cannot sign, and must be replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_key: Option<ProofKey>,
}

/// A token's proof key ([`crate::credential::proof_key`], hex). Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProofKey(String);

impl ProofKey {
    /// The key of `token`.
    pub fn of(token: &str) -> Self {
        Self(crate::credential::proof_key(token))
    }

    /// The key, to check a MAC with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProofKey(***)")
    }
}

impl TokenRecord {
    /// Whether the token has expired at `now`.
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
            .is_some_and(|exp| exp <= now)
    }

    /// Whether the token may use `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| crate::wildcard::matches(p, model))
    }
}

/// A token's rate limits (none: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Requests in flight.
    pub concurrency: Option<u32>,
}

/// A new random token: `sk-ail-` + 40 base62 characters from the OS's CSPRNG.
pub fn generate() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::from("sk-ail-");
    let mut buf = [0u8; 64];
    getrandom::getrandom(&mut buf).map_err(|e| format!("no randomness: {e}"))?;
    // Rejection sampling keeps the characters uniform.
    for b in buf.iter().filter(|b| (**b as usize) < 248).take(40) {
        out.push(ALPHABET[*b as usize % ALPHABET.len()] as char);
    }
    if out.len() < 47 {
        return generate();
    }
    Ok(out)
}

/// How long the in-memory copy is trusted after the last proof that it was current: a
/// lookup answers from the cache only if, at most `MAX_STALE` before, the server's last
/// revision of the bucket (asked every [`PROBE_EVERY`]) was already applied to the cache.
/// Otherwise — watch ended, failed, fell behind, connection lost, or a reload not finished —
/// the lookup reads the bucket itself (within [`LOOKUP_TIMEOUT`]) and refuses if it cannot.
/// So a revocation acknowledged by the server at time `t` is honoured by every lookup from
/// `t + MAX_STALE` on, whatever happens to the watch (normally within milliseconds).
pub const MAX_STALE: Duration = Duration::from_secs(2);

/// How much longer the copy stays trusted while the bucket's stream is leaderless (a
/// JetStream election after a node loss: the probe times out or hears "no responders" /
/// "unavailable" while the connection is up). No revocation can be acknowledged without a
/// leader, so the copy is as current as it was; requests keep being served through the
/// election. The price: in a minority partition (the worker's node cut off from a majority
/// that elected a leader), a revocation made on the majority side is honoured within
/// `MAX_STALE + ELECTION_GRACE` instead of `MAX_STALE`. See RELIABILITY.md.
pub const ELECTION_GRACE: Duration = Duration::from_secs(15);

/// How often the follower asks the server for the bucket's last revision.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Bound on a lookup's own read of the bucket (when the cache is not trusted, or misses).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

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
struct Cached {
    revision: u64,
    record: TokenRecord,
}

/// When the cache was last proven current.
#[derive(Debug)]
struct Freshness {
    /// Origin of `verified`.
    epoch: Instant,
    /// Microseconds from `epoch` to the sending of the last probe whose revision the cache
    /// had reached, plus one; 0: not trusted.
    verified: AtomicU64,
    /// Whether the last probe found the bucket's stream leaderless (see [`ELECTION_GRACE`]).
    election: std::sync::atomic::AtomicBool,
}

impl Freshness {
    fn new() -> Self {
        Self { epoch: Instant::now(), verified: AtomicU64::new(0), election: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Whether lookups may answer from the cache now.
    fn trusted(&self) -> bool {
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
    fn failed(&self, error: &str) {
        self.election.store(leaderless(error), Ordering::Release);
    }

    /// The cache held every revision the bucket had when `sent`.
    fn verify(&self, sent: Instant) {
        let us = u64::try_from(sent.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX - 1);
        self.verified.store(us + 1, Ordering::Release);
        self.election.store(false, Ordering::Release);
    }

    /// Stop trusting the cache until the next proof.
    fn distrust(&self) {
        self.verified.store(0, Ordering::Release);
        self.election.store(false, Ordering::Release);
    }
}

/// Whether a failed request to the bucket's stream looks like a leaderless stream (timed out,
/// no responders, JetStream temporarily unavailable) rather than a missing bucket or a bad
/// answer.
pub(crate) fn leaderless(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    ["timed out", "timeout", "no responders", "no stream found for given subject", "unavailable", "10008"]
        .iter()
        .any(|s| e.contains(s))
}

/// The token store: KV plus the in-memory copy.
#[derive(Clone)]
pub struct TokenStore {
    /// The bucket.
    pub(super) kv: kv::Store,
    /// The connection, to see it drop.
    client: async_nats::Client,
    /// hash → record, kept fresh by [`TokenStore::follow`].
    cache: Arc<DashMap<String, Cached>>,
    /// Whether the cache may be trusted.
    fresh: Arc<Freshness>,
    /// Trace ids already used by proofs.
    replay: ReplaySet,
}

/// The watch being followed and the highest bucket revision applied to the cache.
struct Live {
    watch: kv::Watch,
    revision: u64,
}

impl TokenStore {
    /// Open the bucket (created by `ailurus streams apply`).
    pub async fn open(js: &jetstream::Context) -> Result<Self, String> {
        let kv = js
            .get_key_value(BUCKET)
            .await
            .map_err(|e| format!("KV bucket {BUCKET}: {e} (run `ailurus streams apply`)"))?;
        Ok(Self {
            kv,
            client: js.client(),
            cache: Arc::new(DashMap::new()),
            fresh: Arc::new(Freshness::new()),
            replay: ReplaySet::new(js.clone()),
        })
    }

    /// The replay set proofs are claimed in.
    pub fn replay(&self) -> &ReplaySet {
        &self.replay
    }

    /// Follow the bucket until `shutdown`: every put and delete updates the cache. Returns
    /// once the current contents are loaded (an error if they cannot be). When the watch
    /// ends, fails, falls behind or the connection drops, the cache is trusted only until its
    /// last proof is [`MAX_STALE`] old (or, while the bucket is leaderless,
    /// [`ELECTION_GRACE`] more); then it is distrusted (lookups
    /// read the bucket, see [`MAX_STALE`]), and after a short backoff a new watch is opened
    /// and every key loaded again, so revoked, deleted and purged tokens leave the cache.
    pub async fn follow(&self, shutdown: Shutdown) -> Result<(), String> {
        let live = self.load().await?;
        let this = self.clone();
        tokio::spawn(async move { this.follow_loop(live, shutdown).await });
        Ok(())
    }

    /// Whether lookups currently answer from the cache (it was proven current within
    /// [`MAX_STALE`]).
    pub fn cache_trusted(&self) -> bool {
        self.fresh.trusted()
    }

    /// Follow `live`; when it is lost, back off, load again and follow that, until `shutdown`.
    async fn follow_loop(self, live: Live, shutdown: Shutdown) {
        let mut live = Some(live);
        let mut backoff = BACKOFF_MIN;
        loop {
            if let Some(l) = live.take() {
                let started = Instant::now();
                match self.follow_live(l, &shutdown).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "token watch lost; lookups read the bucket until it is followed again")
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
                        tracing::info!("token watch following {BUCKET} again");
                        live = Some(l);
                    }
                    Err(e) => {
                        // A leaderless bucket keeps the copy trusted for a while (no revocation
                        // can land either); anything else distrusts it.
                        if self.client.connection_state() == State::Connected && leaderless(&e) {
                            self.fresh.failed(&e);
                        } else {
                            self.fresh.distrust();
                        }
                        tracing::debug!(error = %e, "token watch not reopened yet")
                    }
                },
            }
        }
    }

    /// The bucket's last revision and message count, from the server.
    async fn bucket_state(kv: &kv::Store) -> Result<(u64, u64), String> {
        let info = tokio::time::timeout(REQUEST_TIMEOUT, kv.stream.get_info())
            .await
            .map_err(|_| format!("stream info of {BUCKET} timed out"))?
            .map_err(|e| format!("stream info of {BUCKET}: {e}"))?;
        Ok((info.state.last_sequence, info.state.messages))
    }

    /// Open a watch that starts with the last value of every key, read it until it has
    /// delivered what the bucket held when we started, and replace the cache with that set.
    /// The cache is distrusted meanwhile.
    async fn load(&self) -> Result<Live, String> {
        // Trusted meanwhile only as long as the last proof allows (or an election extends it).
        let asked = Instant::now();
        let (last, messages) = Self::bucket_state(&self.kv).await?;
        let mut watch = tokio::time::timeout(REQUEST_TIMEOUT, self.kv.watch_with_history(">"))
            .await
            .map_err(|_| format!("watch {BUCKET} timed out"))?
            .map_err(|e| format!("watch {BUCKET}: {e}"))?;
        let mut set: HashMap<String, Cached> = HashMap::new();
        let mut revision = 0;
        // Nothing to read when the bucket was empty; else read until the last revision we saw
        // (deliveries are in revision order) or until nothing is pending.
        if messages > 0 {
            let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
            loop {
                let entry = tokio::time::timeout_at(deadline, watch.next())
                    .await
                    .map_err(|_| format!("loading {BUCKET} timed out"))?
                    .ok_or_else(|| format!("watch {BUCKET} ended while loading"))?
                    .map_err(|e| format!("watch {BUCKET} while loading: {e}"))?;
                revision = revision.max(entry.revision);
                let done = entry.revision >= last || entry.delta == 0;
                match parse(&entry) {
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
        self.fresh.verify(asked);
        Ok(Live { watch, revision: revision.max(last) })
    }

    /// Apply updates from `live` and prove the cache current every [`PROBE_EVERY`]. `Ok` on
    /// shutdown; `Err` when the watch ends or fails, the connection drops, or no proof
    /// succeeds for [`MAX_STALE`].
    async fn follow_live(&self, live: Live, shutdown: &Shutdown) -> Result<(), String> {
        let Live { mut watch, mut revision } = live;
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        type Probe = std::pin::Pin<Box<dyn std::future::Future<Output = (Instant, Result<(u64, u64), String>)> + Send>>;
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
                    }
                    Some(Err(e)) => return Err(format!("watch {BUCKET}: {e}")),
                    None => return Err(format!("watch {BUCKET} ended")),
                },
                _ = tick.tick() => {
                    if self.client.connection_state() != State::Connected {
                        return Err("NATS connection lost".into());
                    }
                    if proven.elapsed() > MAX_STALE {
                        return Err(format!("cache not proven current for {:?}", proven.elapsed()));
                    }
                    if probe.is_none() && target.is_none() {
                        let kv = self.kv.clone();
                        probe = Some(Box::pin(async move {
                            let asked = Instant::now();
                            (asked, Self::bucket_state(&kv).await)
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
                        Ok((last, messages)) => target = Some((asked, if messages == 0 { 0 } else { last })),
                        Err(e) => {
                            if self.client.connection_state() == State::Connected {
                                self.fresh.failed(&e);
                            }
                            tracing::debug!(error = %e, "token cache probe failed")
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

    /// Apply one watch entry, unless the cache already holds a later revision of its key.
    fn apply(&self, e: kv::Entry) {
        let newer = self.cache.get(&e.key).is_none_or(|c| c.revision < e.revision);
        if !newer {
            return;
        }
        match parse(&e) {
            Some(c) => {
                self.cache.insert(e.key, c);
            }
            None => {
                self.cache.remove(&e.key);
            }
        }
    }

    /// The record for a token hash: the cache while it is trusted, else (or on a miss: a
    /// token created a moment ago on another process) the bucket. `Err` when the cache is
    /// not trusted and the bucket does not answer within [`LOOKUP_TIMEOUT`]: the caller must
    /// refuse. The message never contains the hash.
    pub async fn lookup(&self, token_hash: &str) -> Result<Option<TokenRecord>, String> {
        if self.fresh.trusted() {
            if let Some(c) = self.cache.get(token_hash) {
                return Ok(Some(c.record.clone()));
            }
        }
        // Not stored in the cache: only the watch writes it, in revision order.
        let v = tokio::time::timeout(LOOKUP_TIMEOUT, self.kv.get(token_hash))
            .await
            .map_err(|_| format!("reading {BUCKET} timed out after {LOOKUP_TIMEOUT:?}"))?
            .map_err(|e| format!("reading {BUCKET}: {}", e.kind()))?;
        Ok(v.and_then(|v| serde_json::from_slice::<TokenRecord>(&v).ok()))
    }

    /// Create a token; returns the plain token (shown once) and its record.
    pub async fn create(
        &self,
        user_id: &str,
        name: &str,
        expires_in_secs: Option<i64>,
        models: Vec<String>,
        quota_limit: Option<i64>,
    ) -> Result<(String, TokenRecord), String> {
        self.create_with_limits(user_id, name, expires_in_secs, models, quota_limit, RateLimits::default()).await
    }

    /// [`Self::create`] with rate limits.
    pub async fn create_with_limits(
        &self,
        user_id: &str,
        name: &str,
        expires_in_secs: Option<i64>,
        models: Vec<String>,
        quota_limit: Option<i64>,
        limits: RateLimits,
    ) -> Result<(String, TokenRecord), String> {
        crate::bus::subjects::Token::new("user_id", user_id).map_err(|e| e.to_string())?;
        let plain = generate()?;
        let h = crate::credential::hash(&plain);
        let now = OffsetDateTime::now_utc();
        let fmt = &time::format_description::well_known::Rfc3339;
        let expires_at = match expires_in_secs {
            Some(s) => Some((now + time::Duration::seconds(s)).format(fmt).map_err(|e| e.to_string())?),
            None => None,
        };
        let rec = TokenRecord {
            id: h[..12].to_string(),
            user_id: user_id.to_string(),
            name: name.to_string(),
            status: TokenStatus::Active,
            created_at: now.format(fmt).map_err(|e| e.to_string())?,
            expires_at,
            models,
            quota_limit,
            rpm: limits.rpm,
            tpm: limits.tpm,
            concurrency: limits.concurrency,
            proof_key: Some(ProofKey::of(&plain)),
        };
        let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        self.kv.create(&h, body.into()).await.map_err(|e| format!("store token: {e}"))?;
        Ok((plain, rec))
    }

    /// Every (hash, record) in the bucket.
    pub async fn list(&self) -> Result<Vec<(String, TokenRecord)>, String> {
        let mut out = Vec::new();
        let mut keys = self.kv.keys().await.map_err(|e| format!("keys {BUCKET}: {e}"))?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| e.to_string())?;
            if let Some(v) = self.kv.get(key.as_str()).await.map_err(|e| e.to_string())? {
                if let Ok(rec) = serde_json::from_slice::<TokenRecord>(&v) {
                    out.push((key, rec));
                }
            }
        }
        out.sort_by(|a, b| (&a.1.user_id, &a.1.created_at).cmp(&(&b.1.user_id, &b.1.created_at)));
        Ok(out)
    }

    /// Revoke the token whose short id (or hash prefix) is `id`.
    pub async fn revoke(&self, id: &str) -> Result<TokenRecord, String> {
        if id.len() < 6 {
            return Err("give at least 6 characters of the token id".into());
        }
        let matches: Vec<_> = self.list().await?.into_iter().filter(|(h, _)| h.starts_with(id)).collect();
        let (h, mut rec) = match matches.len() {
            0 => return Err(format!("no token with id {id}")),
            1 => matches.into_iter().next().ok_or("no token")?,
            n => return Err(format!("{n} tokens match {id}; give more characters")),
        };
        rec.status = TokenStatus::Revoked;
        let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        self.kv.put(&h, body.into()).await.map_err(|e| format!("store token: {e}"))?;
        Ok(rec)
    }
}

/// A watch entry as cached: `None` for a deleted, purged or unreadable record.
fn parse(e: &kv::Entry) -> Option<Cached> {
    match e.operation {
        kv::Operation::Put => match serde_json::from_slice::<TokenRecord>(&e.value) {
            Ok(record) => Some(Cached { revision: e.revision, record }),
            Err(err) => {
                // The key is a credential (the hash is accepted as one): log only its id.
                let id = e.key.get(..12).unwrap_or_default();
                tracing::warn!(id, error = %err, "unreadable token record");
                None
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_generate_and_expire() {
        let t = generate().unwrap();
        assert!(t.starts_with("sk-ail-") && t.len() == 47, "{t}");
        assert_ne!(t, generate().unwrap());
        let mut rec = TokenRecord {
            id: "x".into(),
            user_id: "u".into(),
            name: "n".into(),
            status: TokenStatus::Active,
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: Some("2026-01-02T00:00:00Z".into()),
            models: vec!["claude-*".into()],
            quota_limit: None,
            rpm: None,
            tpm: None,
            concurrency: None,
            proof_key: Some(ProofKey::of(&t)),
        };
        assert!(!format!("{rec:?}").contains(&crate::credential::proof_key(&t)));
        assert!(rec.allows("claude-x") && !rec.allows("gpt-4o"));
        assert!(rec.expired(OffsetDateTime::now_utc()));
        rec.expires_at = None;
        assert!(!rec.expired(OffsetDateTime::now_utc()));
    }

    #[test]
    fn tokens_cache_is_trusted_only_within_max_stale_of_a_proof() {
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
