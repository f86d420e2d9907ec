//! Per-user quota. `QUOTA` (KV) holds what an admin sets: the total and the group. What is
//! spent lives in server-side counters (`QUOTA_COUNTERS`, NATS ≥ 2.12 `Nats-Incr`):
//! `quota.used.<user>`, `quota.tokenused.<token hash>`, `quota.requests.<user>`. A
//! reservation is one atomic increment, checked against the total and undone when it does
//! not fit, so concurrent workers can never lose an update or overspend beyond what the
//! reservations in flight hold.

use super::holds::{CasError, Did, Hold, HoldOwner, HoldState};
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
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(5);

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
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        Self { status: 503, message: format!("quota store unavailable: {e}") }
    }
}

/// Units held for one request until it settles: a durable hold (see [`super::holds`]).
#[derive(Debug)]
pub struct Reservation {
    /// Billed user.
    pub user: Token,
    /// Token hash, when the token has its own limit.
    pub token: Option<Token>,
    /// Units held.
    pub units: i64,
    /// The user's pricing group.
    pub group: String,
    /// The hold as written.
    hold: Hold,
    /// The hold's last known subject sequence.
    seq: u64,
    /// The write of its `counted` mark, which runs beside the upstream call; settle waits
    /// for its sequence (`None`: it failed, `seq` stands).
    marking: Option<tokio::task::JoinHandle<Option<u64>>>,
}

impl Reservation {
    /// The hold id (prefix of every `Nats-Msg-Id` of this reservation).
    pub fn hold_id(&self) -> &str {
        &self.hold.id
    }
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
        let holds = js
            .get_stream(super::holds::STREAM)
            .await
            .map_err(|e| format!("stream {}: {e} (run `ailurus streams apply`)", super::holds::STREAM))?;
        let workers = js
            .get_key_value(super::holds::WORKERS)
            .await
            .map_err(|e| format!("KV bucket {}: {e} (run `ailurus streams apply`)", super::holds::WORKERS))?;
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
    pub(crate) async fn incr_raw(&self, subject: String, delta: i64, msg_id: &str) -> Result<Option<i64>, QuotaError> {
        let mut last = QuotaError::store("counter increment failed");
        for attempt in 0..3u32 {
            let mut h = HeaderMap::new();
            h.insert("Nats-Incr", format!("{delta:+}").as_str());
            h.insert("Nats-Msg-Id", msg_id);
            let res = tokio::time::timeout(OP_TIMEOUT, async {
                self.js
                    .publish_with_headers(subject.clone(), h, Bytes::new())
                    .await
                    .map_err(QuotaError::store)?
                    .await
                    .map_err(QuotaError::store)
            })
            .await
            .unwrap_or_else(|_| Err(QuotaError::store("counter increment timed out")));
            match res {
                Ok(ack) if ack.duplicate => return Ok(None),
                Ok(ack) => {
                    return ack
                        .value
                        .as_deref()
                        .and_then(|v| v.parse().ok())
                        .map(Some)
                        .ok_or_else(|| QuotaError::store("counter ack without a value (is the server ≥ 2.12?)"))
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Err(last)
    }

    /// [`Self::incr_raw`] that always returns the counter's value (read when the increment
    /// was a duplicate, or is 0).
    pub(crate) async fn incr_once(&self, subject: String, delta: i64, msg_id: &str) -> Result<i64, QuotaError> {
        if delta == 0 {
            return self.counter(subject).await;
        }
        match self.incr_raw(subject.clone(), delta, msg_id).await? {
            Some(v) => Ok(v),
            None => self.counter(subject).await,
        }
    }

    /// Add `delta` to a counter with a fresh id (admin repairs).
    async fn incr(&self, subject: String, delta: i64) -> Result<i64, QuotaError> {
        self.incr_once(subject, delta, &format!("adm-{}", nuid::next())).await
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
    /// the token's own limit — cannot cover it. The hold is written down before any counter
    /// moves, so a worker lost at any point leaves something another worker can complete
    /// (see [`super::holds`]).
    pub async fn reserve(
        &self,
        user: &Token,
        token: Option<(&Token, i64)>,
        units: i64,
        owner: &HoldOwner,
    ) -> Result<Reservation, QuotaError> {
        let units = units.max(1);
        let id = super::holds::new_id();
        let hold = Hold {
            id: id.to_string(),
            state: HoldState::Held,
            user: user.to_string(),
            token: token.map(|(h, _)| h.to_string()),
            units,
            counted: false,
            worker: owner.worker.clone(),
            trace_id: owner.trace_id.clone(),
            deadline_ms: super::holds::now_ms()
                + (owner.ttl + super::holds::SETTLE_GRACE).as_millis().min(i64::MAX as u128) as i64,
            actual: None,
            record: None,
        };
        // The account read and the hold write are independent: one round trip for both.
        let (acct, seq) = tokio::join!(self.account(user), self.put_hold(&hold, 0));
        let seq = match seq {
            Ok(seq) => seq,
            Err(CasError::Lost(_)) => return Err(QuotaError::store("hold id collision")),
            Err(CasError::Store(e)) => return Err(e),
        };
        let refuse = |message: String| QuotaError { status: 402, message };
        let acct = match acct {
            Ok(a) => a,
            Err(e) => {
                self.give_back(&hold, seq, [Did::No, Did::No]).await;
                return Err(e);
            }
        };
        let total = acct.as_ref().map_or(0, |a| a.total);
        let group = acct.map_or_else(Account::default_group, |a| a.group);
        let step = |s: &str| format!("{id}:{s}");
        let used = match self.incr_once(subjects::quota_used(user), units, &step("u+")).await {
            Ok(u) => u,
            Err(e) => {
                self.give_back(&hold, seq, [Did::Maybe, Did::No]).await;
                return Err(e);
            }
        };
        if used > total {
            self.give_back(&hold, seq, [Did::Yes, Did::No]).await;
            return Err(refuse(format!(
                "insufficient quota: this request needs up to {units} units, {} of {total} remain",
                (total - (used - units)).max(0)
            )));
        }
        let mut held_token = None;
        if let Some((hash, limit)) = token {
            let tused = match self.incr_once(subjects::quota_token_used(hash), units, &step("t+")).await {
                Ok(t) => t,
                Err(e) => {
                    self.give_back(&hold, seq, [Did::Yes, Did::Maybe]).await;
                    return Err(e);
                }
            };
            if tused > limit {
                self.give_back(&hold, seq, [Did::Yes, Did::Yes]).await;
                return Err(refuse(format!("insufficient quota: the token's own limit of {limit} units is spent")));
            }
            held_token = Some(hash.clone());
        }
        // Mark the hold counted, beside the upstream call (off the critical path).
        let mut counted = hold.clone();
        counted.counted = true;
        let store = self.clone();
        let marking = tokio::spawn(async move { store.put_hold(&counted, seq).await.ok() });
        let mut hold = hold;
        hold.counted = true;
        Ok(Reservation { user: user.clone(), token: held_token, units, group, hold, seq, marking: Some(marking) })
    }

    /// Release a hold this worker wrote and no longer needs (a refusal or a store error
    /// inside `reserve`). On failure the hold stays for a scan to complete.
    async fn give_back(&self, hold: &Hold, seq: u64, did: [Did; 2]) {
        match self.release(hold, seq, false, false, did).await {
            Ok(()) | Err(CasError::Lost(_)) => {}
            Err(CasError::Store(e)) => {
                tracing::warn!(hold = %hold.id, error = %e.message, "releasing a refused hold failed; a scan will")
            }
        }
    }

    /// Settle a reservation at `actual` units: adjust the counters, count the request,
    /// append the ledger record and publish the `QuotaChangeEvent`. Exactly once per
    /// reservation, even against a worker that released it as orphaned meanwhile, and safe to
    /// call again after an error (every step is keyed by the hold id; call again within the
    /// duplicate window, two minutes).
    pub async fn settle(&self, res: &mut Reservation, actual: i64, mut record: UsageRecord) -> Result<(), QuotaError> {
        record.quota = actual;
        record.hold_id = Some(res.hold.id.clone());
        if let Some(marking) = res.marking.take() {
            if let Ok(Some(seq)) = marking.await {
                res.seq = seq;
            }
        }
        let mut settling = res.hold.clone();
        settling.state = HoldState::Settling;
        settling.actual = Some(actual);
        settling.record = Some(record.clone());
        let used = match self.put_hold(&settling, res.seq).await {
            Ok(_) => Some(self.finish_settle(&settling).await?),
            // Released meanwhile (this worker looked dead): the hold was given back, so
            // charge what was delivered directly, under ids of its own.
            Err(CasError::Lost(Some(current))) if current.state == HoldState::Released => {
                tracing::warn!(hold = %res.hold.id, trace_id = %record.trace_id, "hold was released while the request ran; charging directly");
                let late = |s: &str| format!("{}:late-{s}", res.hold.id);
                let used = self.incr_once(subjects::quota_used(&res.user), actual, &late("u")).await?;
                if let Some(t) = &res.token {
                    self.incr_once(subjects::quota_token_used(t), actual, &late("t")).await?;
                }
                self.incr_once(subjects::quota_requests(&res.user), 1, &late("r")).await?;
                record.hold_id = Some(format!("{}-late", res.hold.id));
                ledger::append(&self.js, &res.user, &record).await.map_err(QuotaError::store)?;
                Some(used)
            }
            // Our own settling hold, completed by a scan meanwhile (or by an earlier attempt
            // of ours), or a hold released and purged: nothing left to charge. (The second
            // case under-bills; it needs the owner cut off for a whole liveness period and
            // the scan to finish first.)
            Err(CasError::Lost(current)) => {
                match current {
                    Some(h) if h.state == HoldState::Settling && h.id == res.hold.id => {
                        Some(self.finish_settle(&h).await?)
                    }
                    // Our own hold at another sequence (its `counted` mark landed unseen):
                    // note the sequence and let the caller try again.
                    Some(h) if h.state == HoldState::Held && h.id == res.hold.id => {
                        if let Ok(id) = Token::new("hold_id", &h.id) {
                            if let Some((_, seq)) = self.current_hold(&id).await? {
                                res.seq = seq;
                            }
                        }
                        return Err(QuotaError::store("hold moved; settle again"));
                    }
                    Some(h) if h.state == HoldState::Done => None,
                    Some(_) => {
                        return Err(QuotaError::store(format!("hold {} is in an unexpected state", res.hold.id)))
                    }
                    None => None,
                }
            }
            Err(CasError::Store(e)) => return Err(e),
        };
        // The event is informative: billing is complete whether or not it goes out.
        if let Some(used) = used {
            match self.account(&res.user).await {
                Ok(acct) => {
                    let total = acct.map_or(0, |a| a.total);
                    self.event(
                        &res.user,
                        total,
                        used,
                        actual,
                        Some(record.model.clone()),
                        Some(record.trace_id.clone()),
                    )
                    .await
                }
                Err(e) => tracing::warn!(error = %e.message, "quota event skipped: account unreadable"),
            }
        }
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
