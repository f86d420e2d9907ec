//! Per-user quota. `QUOTA` (KV) holds what an admin sets: the total and the group. What is
//! spent lives in server-side counters (`QUOTA_COUNTERS`, NATS ≥ 2.12 `Nats-Incr`):
//! `quota.used.<user>`, `quota.tokenused.<token hash>`, `quota.requests.<user>`. A
//! reservation is one atomic increment, checked against the total and undone when it does
//! not fit, so concurrent workers can never lose an update or overspend beyond what the
//! reservations in flight hold.

use super::ledger::{self, UsageRecord};
use crate::bus::subjects::{self, Token};
use crate::protocol::QuotaChangeEvent;
use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The KV bucket name.
pub const BUCKET: &str = "QUOTA";
/// The counter stream.
pub const COUNTERS: &str = "QUOTA_COUNTERS";
/// Round-trip bound for quota operations.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long settling waits out a JetStream leader election (a lost cluster node): the
/// answer was delivered, so its billing is retried rather than dropped.
const SETTLE_PATIENCE: Duration = Duration::from_secs(30);

/// What `QUOTA` stores per user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Quota units granted in all (top-ups and sets).
    pub total: i64,
    /// Pricing group (ratios in `[pricing.groups]`).
    #[serde(default = "Account::default_group")]
    pub group: String,
}

impl Account {
    fn default_group() -> String {
        "default".into()
    }
}

/// A balance as shown by `quota show` and `/api/user/self`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    /// Whose.
    pub user_id: String,
    /// Granted.
    pub total: i64,
    /// Spent (plus reservations in flight).
    pub used: i64,
    /// `total - used`.
    pub remain: i64,
    /// Pricing group.
    pub group: String,
    /// Requests made.
    pub request_count: i64,
}

/// A quota failure, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaError {
    /// 402 (insufficient quota) or 503 (quota store unreachable).
    pub status: u16,
    /// Safe to show.
    pub message: String,
}

impl QuotaError {
    fn store(e: impl std::fmt::Display) -> Self {
        Self { status: 503, message: format!("quota store unavailable: {e}") }
    }
}

/// Units held for one request until it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Billed user.
    pub user: Token,
    /// Token hash, when the token has its own limit.
    pub token: Option<Token>,
    /// Units held.
    pub units: i64,
    /// The user's pricing group.
    pub group: String,
}

/// Quota operations over NATS.
#[derive(Clone)]
pub struct QuotaStore {
    /// For counters, events and the ledger.
    js: jetstream::Context,
    /// For events.
    client: async_nats::Client,
    /// The `QUOTA` bucket.
    kv: kv::Store,
    /// The counter stream (direct gets).
    counters: jetstream::stream::Stream,
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
        Ok(Self { js, client, kv, counters })
    }

    /// The JetStream context (for the ledger).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Add `delta` to a counter; returns the new value.
    async fn incr(&self, subject: String, delta: i64) -> Result<i64, QuotaError> {
        self.incr_within(subject, delta, Duration::ZERO).await
    }

    /// [`Self::incr`], retried for up to `patience` while no stream answers (NATS
    /// no-responders, e.g. during a leader election after a cluster node is lost). Nothing
    /// was stored then, so a retry cannot count twice; a timeout is never retried.
    async fn incr_within(&self, subject: String, delta: i64, patience: Duration) -> Result<i64, QuotaError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let mut h = HeaderMap::new();
            h.insert("Nats-Incr", format!("{delta:+}").as_str());
            let res = tokio::time::timeout(OP_TIMEOUT, async {
                self.js.publish_with_headers(subject.clone(), h, Bytes::new()).await?.await
            })
            .await
            .map_err(|_| QuotaError::store("counter increment timed out"))?;
            let ack = match res {
                Ok(ack) => ack,
                Err(e)
                    if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound
                        && started.elapsed() + pause <= patience =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(e) => return Err(QuotaError::store(e)),
            };
            return ack
                .value
                .as_deref()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| QuotaError::store("counter ack without a value (is the server ≥ 2.12?)"));
        }
    }

    /// A counter's value (0 when it has never been incremented).
    async fn counter(&self, subject: String) -> Result<i64, QuotaError> {
        match tokio::time::timeout(OP_TIMEOUT, self.counters.direct_get_last_for_subject(subject)).await {
            Err(_) => Err(QuotaError::store("counter read timed out")),
            Ok(Ok(msg)) => Ok(counter_value(&msg.payload).unwrap_or(0)),
            Ok(Err(e)) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(0),
            Ok(Err(e)) => Err(QuotaError::store(e)),
        }
    }

    /// The account, if the user has one.
    pub async fn account(&self, user: &Token) -> Result<Option<Account>, QuotaError> {
        let v = tokio::time::timeout(OP_TIMEOUT, self.kv.get(user.as_str()))
            .await
            .map_err(|_| QuotaError::store("account read timed out"))?
            .map_err(QuotaError::store)?;
        Ok(v.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The user's balance.
    pub async fn balance(&self, user: &Token) -> Result<Balance, QuotaError> {
        let acct = self.account(user).await?.unwrap_or(Account { total: 0, group: Account::default_group() });
        let used = self.counter(subjects::quota_used(user)).await?;
        let request_count = self.counter(subjects::quota_requests(user)).await?;
        Ok(Balance {
            user_id: user.to_string(),
            total: acct.total,
            used,
            remain: acct.total - used,
            group: acct.group,
            request_count,
        })
    }

    /// Units spent through one token.
    pub async fn token_used(&self, token_hash: &Token) -> Result<i64, QuotaError> {
        self.counter(subjects::quota_token_used(token_hash)).await
    }

    /// Hold `units` for a request (at least 1). Refuses with 402 when the user's total — or
    /// the token's own limit — cannot cover it.
    pub async fn reserve(
        &self,
        user: &Token,
        token: Option<(&Token, i64)>,
        units: i64,
    ) -> Result<Reservation, QuotaError> {
        let units = units.max(1);
        let acct = self.account(user).await?;
        let total = acct.as_ref().map_or(0, |a| a.total);
        let group = acct.map_or_else(Account::default_group, |a| a.group);
        let used = self.incr(subjects::quota_used(user), units).await?;
        if used > total {
            self.incr(subjects::quota_used(user), -units).await?;
            return Err(QuotaError {
                status: 402,
                message: format!(
                    "insufficient quota: this request needs up to {units} units, {} of {total} remain",
                    (total - (used - units)).max(0)
                ),
            });
        }
        let mut held_token = None;
        if let Some((hash, limit)) = token {
            let tused = self.incr(subjects::quota_token_used(hash), units).await?;
            if tused > limit {
                self.incr(subjects::quota_token_used(hash), -units).await?;
                self.incr(subjects::quota_used(user), -units).await?;
                return Err(QuotaError {
                    status: 402,
                    message: format!("insufficient quota: the token's own limit of {limit} units is spent"),
                });
            }
            held_token = Some(hash.clone());
        }
        Ok(Reservation { user: user.clone(), token: held_token, units, group })
    }

    /// Settle a reservation at `actual` units: append the ledger record, adjust the
    /// counters, count the request and publish the `QuotaChangeEvent`.
    pub async fn settle(&self, res: &Reservation, actual: i64, mut record: UsageRecord) -> Result<(), QuotaError> {
        // The ledger first: it is idempotent and retried through any failure, and it is what
        // `quota rebuild` trusts, so a counter update lost below (an ack that never came
        // while a cluster node died) is repairable instead of a delivered answer unbilled.
        record.quota = actual;
        ledger::append(&self.js, &res.user, &record).await.map_err(QuotaError::store)?;
        let delta = actual - res.units;
        let used = if delta != 0 {
            self.incr_within(subjects::quota_used(&res.user), delta, SETTLE_PATIENCE).await?
        } else {
            self.counter(subjects::quota_used(&res.user)).await?
        };
        if let (Some(t), true) = (&res.token, delta != 0) {
            self.incr_within(subjects::quota_token_used(t), delta, SETTLE_PATIENCE).await?;
        }
        self.incr_within(subjects::quota_requests(&res.user), 1, SETTLE_PATIENCE).await?;
        let total = self.account(&res.user).await?.map_or(0, |a| a.total);
        self.event(&res.user, total, used, actual, Some(record.model.clone()), Some(record.trace_id.clone())).await;
        Ok(())
    }

    /// Publish a `QuotaChangeEvent`.
    pub async fn event(
        &self,
        user: &Token,
        total: i64,
        used: i64,
        last: i64,
        model: Option<String>,
        trace: Option<String>,
    ) {
        let ev = QuotaChangeEvent {
            user_id: user.to_string(),
            quota_total: total,
            quota_used: used,
            quota_remain: total - used,
            last_cost: last,
            model,
            trace_id: trace,
            timestamp: super::now_rfc3339(),
        };
        if let Ok(body) = serde_json::to_vec(&ev) {
            if let Err(e) = self.client.publish(subjects::quota(user), body.into()).await {
                tracing::warn!(error = %e, "quota event publish failed");
            }
        }
    }

    /// Change the total with compare-and-swap (bounded retries): `f` maps the old total.
    async fn update_total(
        &self,
        user: &Token,
        group: Option<&str>,
        f: impl Fn(i64) -> i64,
    ) -> Result<Account, QuotaError> {
        for _ in 0..20 {
            let entry = self.kv.entry(user.as_str()).await.map_err(QuotaError::store)?;
            let (old, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (serde_json::from_slice::<Account>(&e.value).ok(), e.revision)
                }
                Some(e) => (None, e.revision),
                None => (None, 0),
            };
            let old = old.unwrap_or(Account { total: 0, group: Account::default_group() });
            let new = Account { total: f(old.total), group: group.map_or(old.group, str::to_string) };
            let body: Bytes = serde_json::to_vec(&new).map_err(QuotaError::store)?.into();
            let res = if revision == 0 {
                self.kv.create(user.as_str(), body).await.map(|_| ()).map_err(|e| e.to_string())
            } else {
                self.kv.update(user.as_str(), body, revision).await.map(|_| ()).map_err(|e| e.to_string())
            };
            if res.is_ok() {
                return Ok(new);
            }
        }
        Err(QuotaError::store("too many concurrent changes to the account"))
    }

    /// Add `units` to the total (an admin top-up), with a ledger record and an event.
    pub async fn topup(&self, user: &Token, units: i64) -> Result<Balance, QuotaError> {
        let acct = self.update_total(user, None, |t| t + units).await?;
        let rec = UsageRecord::admin("topup", user.as_str(), units);
        ledger::append(&self.js, user, &rec).await.map_err(QuotaError::store)?;
        let bal = self.balance(user).await?;
        self.event(user, acct.total, bal.used, units, None, None).await;
        Ok(bal)
    }

    /// Set the total (and optionally the group), with a ledger record and an event.
    pub async fn set(&self, user: &Token, total: i64, group: Option<&str>) -> Result<Balance, QuotaError> {
        let acct = self.update_total(user, group, |_| total).await?;
        let rec = UsageRecord::admin("set", user.as_str(), total);
        ledger::append(&self.js, user, &rec).await.map_err(QuotaError::store)?;
        let bal = self.balance(user).await?;
        self.event(user, acct.total, bal.used, 0, None, None).await;
        Ok(bal)
    }

    /// Repair a user from the ledger's figures: put `total` and move the used counter to
    /// `used`.
    pub async fn repair(&self, user: &Token, total: i64, used: i64) -> Result<(), QuotaError> {
        self.update_total(user, None, |_| total).await?;
        let current = self.counter(subjects::quota_used(user)).await?;
        if current != used {
            self.incr(subjects::quota_used(user), used - current).await?;
        }
        Ok(())
    }

    /// Every user with an account.
    pub async fn users(&self) -> Result<Vec<String>, QuotaError> {
        use futures::StreamExt;
        let mut keys = self.kv.keys().await.map_err(QuotaError::store)?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            out.push(k.map_err(QuotaError::store)?);
        }
        out.sort();
        Ok(out)
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
