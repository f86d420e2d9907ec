//! API tokens. The plain token (`sk-ail-…`) is shown once at creation; the `TOKENS` bucket
//! keeps only its sha256 (the key) and a record. Workers hold every record in memory and
//! follow the bucket with a KV watch, so a revocation reaches every worker in milliseconds.
//! The copy is trusted only while it is proven current (see [`MAX_STALE`]); otherwise a
//! lookup reads the bucket, and refuses when the bucket does not answer. A record also keeps
//! the token's proof key, which checks the proof of possession requests carry on NATS; the
//! store carries the replay set those proofs are claimed in ([`ReplaySet`]).

use super::proof::ReplaySet;
use crate::kv_mirror::{Mirror, Spec};
use crate::shutdown::Shutdown;
use async_nats::jetstream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;
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
    /// Whether the token has any rate limit (rpm, tpm or concurrency), counted in the store.
    pub fn has_rate_limits(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.concurrency.is_some()
    }

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

/// How long the in-memory copy is trusted after the last proof that it was current (see
/// [`crate::kv_mirror::MAX_STALE`]): a revocation acknowledged by the server at time `t` is
/// honoured by every lookup from `t + MAX_STALE` on, whatever happens to the watch.
pub const MAX_STALE: Duration = crate::kv_mirror::MAX_STALE;

/// Bound on a lookup's own read of the bucket (when the cache is not trusted, or misses).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a failed request looks like a leaderless stream (see [`crate::kv_mirror::leaderless`]).
pub(crate) fn leaderless(error: &str) -> bool {
    crate::kv_mirror::leaderless(error)
}

/// The token store: KV plus the in-memory copy ([`Mirror`]).
#[derive(Clone)]
pub struct TokenStore {
    /// The bucket and hash → record, kept fresh by [`TokenStore::follow`].
    pub(super) mirror: Mirror<TokenRecord>,
    /// Trace ids already used by proofs.
    replay: ReplaySet,
}

impl TokenStore {
    /// Open the bucket (created by `ailurus streams apply`).
    pub async fn open(js: &jetstream::Context) -> Result<Self, String> {
        let kv = js
            .get_key_value(BUCKET)
            .await
            .map_err(|e| format!("KV bucket {BUCKET}: {e} (run `ailurus streams apply`)"))?;
        let spec = Spec {
            bucket: BUCKET,
            parse: |b| serde_json::from_slice::<TokenRecord>(b).map_err(|e| e.to_string()),
            // The key is a credential (the hash is accepted as one): log only its id.
            label: |k| k.get(..12).unwrap_or_default().to_string(),
        };
        Ok(Self { mirror: Mirror::new(kv, js.client(), spec), replay: ReplaySet::new(js.clone()) })
    }

    /// The replay set proofs are claimed in.
    pub fn replay(&self) -> &ReplaySet {
        &self.replay
    }

    /// Follow the bucket until `shutdown`: every put and delete updates the cache. Returns
    /// once the current contents are loaded (an error if they cannot be). When the watch
    /// ends, fails, falls behind or the connection drops, the cache is trusted only until its
    /// last proof is [`MAX_STALE`] old (longer while the bucket is leaderless); then lookups
    /// read the bucket, and after a short backoff a new watch is opened and every key loaded
    /// again, so revoked, deleted and purged tokens leave the cache.
    pub async fn follow(&self, shutdown: Shutdown) -> Result<(), String> {
        self.mirror.follow(shutdown).await
    }

    /// Whether lookups currently answer from the cache (it was proven current within
    /// [`MAX_STALE`]).
    pub fn cache_trusted(&self) -> bool {
        self.mirror.trusted()
    }

    /// The record for a token hash: the cache while it is trusted, else (or on a miss: a
    /// token created a moment ago on another process) the bucket. `Err` when the cache is
    /// not trusted and the bucket does not answer within [`LOOKUP_TIMEOUT`]: the caller must
    /// refuse. The message never contains the hash.
    pub async fn lookup(&self, token_hash: &str) -> Result<Option<TokenRecord>, String> {
        if self.mirror.trusted() {
            if let Some(c) = self.mirror.cached(token_hash) {
                return Ok(Some(c.value));
            }
        }
        // Not stored in the cache: only the watch writes it, in revision order.
        Ok(self.mirror.read(token_hash, LOOKUP_TIMEOUT).await?.map(|c| c.value))
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
        self.mirror.store().create(&h, body.into()).await.map_err(|e| format!("store token: {e}"))?;
        Ok((plain, rec))
    }

    /// Every (hash, record) in the bucket.
    pub async fn list(&self) -> Result<Vec<(String, TokenRecord)>, String> {
        let mut out = Vec::new();
        let mut keys = self.mirror.store().keys().await.map_err(|e| format!("keys {BUCKET}: {e}"))?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| e.to_string())?;
            if let Some(v) = self.mirror.store().get(key.as_str()).await.map_err(|e| e.to_string())? {
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
        self.mirror.store().put(&h, body.into()).await.map_err(|e| format!("store token: {e}"))?;
        Ok(rec)
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
}
