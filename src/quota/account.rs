//! Per-user quota. `QUOTA` (KV) holds what an admin sets: the total and the group. What is
//! spent lives in server-side counters (`QUOTA_COUNTERS`, NATS ≥ 2.12 `Nats-Incr`):
//! `quota.used.<user>`, `quota.tokenused.<token hash>`, `quota.requests.<user>`. A
//! reservation is one atomic increment, checked against the total and undone when it does
//! not fit, so concurrent workers can never lose an update or overspend beyond what the
//! reservations in flight hold.

use super::holds::{CasError, Did, Hold, HoldOwner, HoldState};
use super::ledger::{self, UsageRecord};
use super::store::OP_TIMEOUT;
pub use super::store::{QuotaStore, BUCKET, COUNTERS};
use super::store_error;
use crate::bus::subjects::{self, Token};
use crate::error::RequestError;
use crate::protocol::QuotaChangeEvent;
use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

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

/// Units held for one quota lease until it goes back: a durable hold (see [`super::holds`]
/// and [`super::lease`]).
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
    /// The user's total when the hold was taken (for informative quota events).
    pub total: i64,
    /// The user's spent counter right after the hold was taken (this hold included).
    pub used: i64,
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

impl QuotaStore {
    /// The account, if the user has one.
    pub async fn account(&self, user: &Token) -> Result<Option<Account>, RequestError> {
        let v = tokio::time::timeout(OP_TIMEOUT, self.kv.get(user.as_str()))
            .await
            .map_err(|_| store_error("account read timed out"))?
            .map_err(store_error)?;
        Ok(v.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The user's balance.
    pub async fn balance(&self, user: &Token) -> Result<Balance, RequestError> {
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
    pub async fn token_used(&self, token_hash: &Token) -> Result<i64, RequestError> {
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
    ) -> Result<Reservation, RequestError> {
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
            deadline_ms: crate::clock::now_ms()
                + (owner.ttl + super::holds::SETTLE_GRACE).as_millis().min(i64::MAX as u128) as i64,
            actual: None,
            record: None,
            lease: owner.lease,
            requests: 0,
            created_ms: crate::clock::now_ms(),
        };
        // The account read and the hold write are independent: one round trip for both.
        let (acct, seq) = tokio::join!(self.account(user), self.put_hold(&hold, 0));
        let seq = match seq {
            Ok(seq) => seq,
            Err(CasError::Lost(_)) => return Err(store_error("hold id collision")),
            Err(CasError::Store(e)) => return Err(e),
        };
        let refuse = |message: String| RequestError::new(402, message);
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
        Ok(Reservation {
            user: user.clone(),
            token: held_token,
            units,
            group,
            total,
            used,
            hold,
            seq,
            marking: Some(marking),
        })
    }

    /// Release a hold this worker wrote and no longer needs (a refusal or a store error
    /// inside `reserve`). When the store does not answer (an election), the release is
    /// retried in the background inside the duplicate window; after that the hold stays for
    /// a scan to complete at its deadline.
    async fn give_back(&self, hold: &Hold, seq: u64, did: [Did; 2]) {
        match self.release(hold, seq, false, false, did).await {
            Ok(()) | Err(CasError::Lost(_)) => return,
            Err(CasError::Store(e)) => {
                tracing::warn!(hold = %hold.id, error = %e.message, "releasing a refused hold failed; retrying")
            }
        }
        let (store, hold) = (self.clone(), hold.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut pause = std::time::Duration::from_millis(250);
            let mut claimed = false;
            while started.elapsed() < super::lease::SETTLE_RETRY {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(4));
                match store.release(&hold, seq, claimed, false, did).await {
                    Ok(()) => return,
                    // Our own claim landed before the error: finish the release.
                    Err(CasError::Lost(Some(h))) if h.id == hold.id && h.state == HoldState::Released => claimed = true,
                    Err(CasError::Lost(_)) => return,
                    Err(CasError::Store(_)) => {}
                }
            }
            tracing::warn!(hold = %hold.id, "releasing a refused hold kept failing; a scan completes it at its deadline");
        });
    }

    /// Settle a lease (see [`super::lease`]) at what its requests' ledger records charged
    /// (`actual`, already appended by the writer) and how many they are. When another worker
    /// completed the lease meanwhile (this worker looked lost), only what that completion
    /// missed is charged, under ids of its own. Safe to call again after an error.
    pub async fn settle_lease(&self, res: &mut Reservation, actual: i64, requests: u64) -> Result<(), RequestError> {
        if let Some(marking) = res.marking.take() {
            if let Ok(Some(seq)) = marking.await {
                res.seq = seq;
            }
        }
        let mut settling = res.hold.clone();
        settling.state = HoldState::Settling;
        settling.actual = Some(actual);
        settling.requests = requests;
        match self.put_hold(&settling, res.seq).await {
            Ok(_) => {
                self.finish_settle(&settling).await?;
                Ok(())
            }
            Err(CasError::Lost(Some(h))) if h.id == res.hold.id && h.state == HoldState::Held => {
                // Our own hold at another sequence (its `counted` mark landed unseen).
                if let Ok(id) = Token::new("hold_id", &h.id) {
                    if let Some((_, seq)) = self.current_hold(&id).await? {
                        res.seq = seq;
                    }
                }
                Err(store_error("lease moved; settle again"))
            }
            Err(CasError::Lost(Some(h)))
                if h.state == HoldState::Settling && h.actual == Some(actual) && h.requests == requests =>
            {
                // An earlier attempt of ours got this far.
                self.finish_settle(&h).await.map(|_| ())
            }
            Err(CasError::Lost(current)) => {
                // Completed by another worker from the ledger (or released at zero): charge
                // the difference between what this worker's records charged and that.
                let (done_actual, done_requests) = match &current {
                    Some(h) if h.state == HoldState::Settling => {
                        self.finish_settle(h).await?;
                        (h.actual.unwrap_or(0), h.requests)
                    }
                    Some(h) => (h.actual.unwrap_or(0), h.requests),
                    None => (0, 0),
                };
                let (du, dn) = (actual - done_actual, requests as i64 - done_requests as i64);
                tracing::warn!(lease = %res.hold.id, charged = done_actual, late = du,
                    "lease was completed by another worker; charging what it missed");
                let late = |s: &str| format!("{}:late-{s}", res.hold.id);
                if du != 0 {
                    self.incr_once(subjects::quota_used(&res.user), du, &late("u")).await?;
                    if let Some(t) = &res.token {
                        self.incr_once(subjects::quota_token_used(t), du, &late("t")).await?;
                    }
                }
                if dn != 0 {
                    self.incr_once(subjects::quota_requests(&res.user), dn, &late("r")).await?;
                }
                Ok(())
            }
            Err(CasError::Store(e)) => Err(e),
        }
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
            timestamp: crate::clock::now_rfc3339(),
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
    ) -> Result<Account, RequestError> {
        for _ in 0..20 {
            let entry = self.kv.entry(user.as_str()).await.map_err(store_error)?;
            let (old, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (serde_json::from_slice::<Account>(&e.value).ok(), e.revision)
                }
                Some(e) => (None, e.revision),
                None => (None, 0),
            };
            let old = old.unwrap_or(Account { total: 0, group: Account::default_group() });
            let new = Account { total: f(old.total), group: group.map_or(old.group, str::to_string) };
            let body: Bytes = serde_json::to_vec(&new).map_err(store_error)?.into();
            let res = if revision == 0 {
                self.kv.create(user.as_str(), body).await.map(|_| ()).map_err(|e| e.to_string())
            } else {
                self.kv.update(user.as_str(), body, revision).await.map(|_| ()).map_err(|e| e.to_string())
            };
            if res.is_ok() {
                return Ok(new);
            }
        }
        Err(store_error("too many concurrent changes to the account"))
    }

    /// Add `units` to the total (an admin top-up), with a ledger record and an event.
    pub async fn topup(&self, user: &Token, units: i64) -> Result<Balance, RequestError> {
        let acct = self.update_total(user, None, |t| t + units).await?;
        let rec = UsageRecord::admin("topup", user.as_str(), units);
        ledger::append(&self.js, user, &rec).await.map_err(store_error)?;
        let bal = self.balance(user).await?;
        self.event(user, acct.total, bal.used, units, None, None).await;
        Ok(bal)
    }

    /// Set the total (and optionally the group), with a ledger record and an event.
    pub async fn set(&self, user: &Token, total: i64, group: Option<&str>) -> Result<Balance, RequestError> {
        let acct = self.update_total(user, group, |_| total).await?;
        let rec = UsageRecord::admin("set", user.as_str(), total);
        ledger::append(&self.js, user, &rec).await.map_err(store_error)?;
        let bal = self.balance(user).await?;
        self.event(user, acct.total, bal.used, 0, None, None).await;
        Ok(bal)
    }

    /// Repair a user from the ledger's figures: put `total` and move the used counter to
    /// `used`.
    pub async fn repair(&self, user: &Token, total: i64, used: i64) -> Result<(), RequestError> {
        self.update_total(user, None, |_| total).await?;
        let current = self.counter(subjects::quota_used(user)).await?;
        if current != used {
            self.incr(subjects::quota_used(user), used - current).await?;
        }
        Ok(())
    }

    /// Every user with an account.
    pub async fn users(&self) -> Result<Vec<String>, RequestError> {
        use futures::StreamExt;
        let mut keys = self.kv.keys().await.map_err(store_error)?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            out.push(k.map_err(store_error)?);
        }
        out.sort();
        Ok(out)
    }
}
