//! Quota leases: billing without a JetStream round trip per request.
//!
//! A worker takes a slice of a user's balance with one durable hold (a [`Hold`] marked
//! `lease`, see [`super::holds`]): the user's spent counter rises by the whole slice at once,
//! so the cross-worker bound is the same as for a hold of one request. The user's next
//! requests on this worker are admitted from the slice in memory ([`Leases::draw`]): each
//! holds its own worst case against the lease, exactly as it would against the balance.
//! When a request ends, its ledger record (naming the lease, `hold_id` `<lease>.<n>`) goes
//! to the [`LedgerWriter`], which appends records in pipelined batches and retries them
//! until a JetStream leader answers. A lease goes back ([`QuotaStore::settle_lease`]) when it
//! is idle, old or closed and every record drawn on it is confirmed: the counter then moves
//! by what the records charged minus the slice, and the request count by their number.
//!
//! **Bounds.** A user can never be admitted beyond what the leases hold: overspend is
//! impossible while the bus is down, only admission stops when the leases are spent. A
//! record waits unconfirmed at most `billing_stall_ms` before the user's requests on this
//! worker are refused (503); the whole queue is bounded by [`MAX_QUEUED`] records.
//!
//! **A lost worker.** Its leases are completed by another worker's reaper from the ledger:
//! the lease is charged what its records there add up to ([`super::holds`]). A record still
//! in the lost worker's memory is not charged (the operator's loss, never the user's); see
//! RELIABILITY.md.

use super::account::{QuotaStore, Reservation};
use super::holds::HoldOwner;
use super::ledger::UsageRecord;
use super::proof::Claim;
use super::writer::{Entry, LedgerWriter};
use crate::bus::subjects::Token;
use crate::error::RequestError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most ledger records queued unconfirmed; beyond it billed requests are refused (503).
pub const MAX_QUEUED: usize = 100_000;
/// How long a request waits for a new lease before it is refused (503) or served from an
/// aged one; the take itself goes on.
const TAKE_WAIT: Duration = Duration::from_secs(3);
/// While no new lease can be taken, a lease serves up to this many times its maximum age
/// (its hold's deadline is the maximum age plus the request timeout plus 30 s).
const OUTAGE_AGE: u32 = 6;
/// How long a lease's settle is retried (inside JetStream's two-minute duplicate window).
pub(crate) const SETTLE_RETRY: Duration = Duration::from_secs(90);

/// How leases are sized and returned.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// A lease is this many times the worst case of the request that takes it.
    pub requests: u32,
    /// An unused lease goes back after this long.
    pub idle: Duration,
    /// No request draws on a lease older than this.
    pub max_age: Duration,
    /// Longest a request may take (a lease's hold lives `max_age` plus this, plus a grace).
    pub request_ttl: Duration,
    /// Longest a record may wait unconfirmed before the user's requests are refused.
    pub stall: Duration,
    /// How long the ledger writer gathers records before it publishes them together.
    pub linger: Duration,
}

/// Whose balance a lease is a slice of: the user, and the token when it has its own limit
/// (both counters are held).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// Billed user.
    user: Token,
    /// Token hash of a token with its own limit.
    token: Option<Token>,
}

/// One lease of this worker.
pub struct Lease {
    /// The hold id (prefix of its records' ids).
    id: String,
    /// Billed user.
    user: Token,
    /// Units the lease holds.
    units: i64,
    /// The user's pricing group.
    group: String,
    /// The user's total when it was taken (informative events).
    total: i64,
    /// The spent counter right after it was taken, the lease included (informative events).
    used_after_take: i64,
    /// When it was taken.
    created: Instant,
    /// The hold, taken out when the lease goes back.
    res: tokio::sync::Mutex<Option<Reservation>>,
    /// What is drawn, spent and confirmed.
    state: Mutex<State>,
}

/// A lease's moving parts.
struct State {
    /// Worst cases of the requests in flight.
    reserved: i64,
    /// What settled requests charged (queued or confirmed).
    spent: i64,
    /// What confirmed records charged.
    acked: i64,
    /// Confirmed records.
    acked_n: u64,
    /// Records that left the queue (confirmed, or given up after the duplicate window).
    finished_n: u64,
    /// Records handed to the writer.
    queued_n: u64,
    /// Requests in flight.
    in_flight: u32,
    /// No more draws (too old, single-use, or the worker is stopping).
    closed: bool,
    /// Last draw or settle.
    last_used: Instant,
    /// Since when a record has been waiting unconfirmed (none: all confirmed).
    unconfirmed_since: Option<Instant>,
}

impl Lease {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Units a request could still draw: neither spent nor held by a request in flight.
    fn free(&self, s: &State) -> i64 {
        self.units - s.spent - s.reserved
    }

    /// A record of this lease was confirmed: `(user, total, used)` for the quota event.
    pub(crate) fn confirmed(&self, quota: i64) -> (Token, i64, i64) {
        let mut s = self.lock();
        s.acked += quota;
        s.acked_n += 1;
        s.finished_n += 1;
        s.unconfirmed_since = if s.finished_n == s.queued_n { None } else { Some(Instant::now()) };
        (self.user.clone(), self.total, self.used_after_take - self.units + s.acked)
    }

    /// A record of this lease was given up (it was not confirmed within the duplicate window).
    pub(crate) fn abandoned(&self) {
        let mut s = self.lock();
        s.finished_n += 1;
        if s.finished_n == s.queued_n {
            s.unconfirmed_since = None;
        }
    }

    /// Whether it may go back now: nothing in flight, every record confirmed, and closed,
    /// idle, old with a younger lease beside it (`superseded`), or past the outage age. An
    /// old lease alone stays: it serves while a new one cannot be taken (an election).
    fn returnable(&self, s: &State, cfg: &LeaseConfig, superseded: bool) -> bool {
        let age = self.created.elapsed();
        s.in_flight == 0
            && s.finished_n == s.queued_n
            && (s.closed
                || s.last_used.elapsed() >= cfg.idle
                || (age >= cfg.max_age && superseded)
                || age >= cfg.max_age * OUTAGE_AGE)
    }
}

/// What one admitted request holds of a lease; settle it with [`Leases::settle`] (dropped
/// unsettled, it gives its worst case back and charges nothing).
pub struct Draw {
    /// The lease.
    lease: Arc<Lease>,
    /// The request's worst case.
    units: i64,
    /// Whether [`Leases::settle`] took it.
    settled: bool,
}

impl Draw {
    /// The request's worst case, as held.
    pub fn units(&self) -> i64 {
        self.units
    }

    /// The user's pricing group.
    pub fn group(&self) -> &str {
        &self.lease.group
    }
}

impl Drop for Draw {
    fn drop(&mut self) {
        if !self.settled {
            self.lease.lock().end(self.units);
        }
    }
}

impl State {
    /// A request that held `units` ended (settled, or dropped unsettled).
    fn end(&mut self, units: i64) {
        self.reserved -= units;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.last_used = Instant::now();
    }
}

/// What a draw found in the leases.
enum Found {
    /// Drawn; `true` when the key's newest lease is half spent or near its age, so its
    /// successor should be taken now, ahead of need.
    Drawn(Draw, bool),
    /// No lease with room.
    NoRoom,
    /// The user's records are not being confirmed: refuse.
    Stalled,
}

/// A lease take in its own task, awaited by every request that needs it.
type TakeFuture = futures::future::Shared<futures::future::BoxFuture<'static, Result<(), RequestError>>>;

/// How a key's next lease is sized.
#[derive(Debug, Default)]
struct Sizing {
    /// When its last lease was taken.
    last: Option<Instant>,
    /// The multiplier of `requests × units` for the next lease (at least 1).
    scale: i64,
}

/// Largest scale of a lease (its size is at most this many times `requests` worst cases).
const MAX_SCALE: i64 = 4096;

/// Figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseStats {
    /// Leases open on this worker.
    pub open: u64,
    /// Units they hold.
    pub units: i64,
    /// Ledger records waiting for confirmation.
    pub queued: u64,
    /// Records given up (not confirmed within the duplicate window) since start.
    pub abandoned: u64,
}

impl LeaseStats {
    /// These figures in the Prometheus text format, appended to `out`: what an operator
    /// watches during a JetStream election (records queue, leases keep admitting).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let rows: [(&str, &str, &str, String); 4] = [
            ("ailurus_worker_leases_open", "gauge", "Quota leases this worker holds.", self.open.to_string()),
            ("ailurus_worker_lease_units", "gauge", "Quota units those leases hold.", self.units.to_string()),
            (
                "ailurus_worker_ledger_queued",
                "gauge",
                "Usage records waiting for the ledger to confirm them.",
                self.queued.to_string(),
            ),
            (
                "ailurus_worker_ledger_abandoned_total",
                "counter",
                "Usage records not confirmed within the duplicate window (not billed).",
                self.abandoned.to_string(),
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

/// This worker's leases.
pub struct Leases {
    /// Holds, counters and events.
    store: QuotaStore,
    /// This worker's id (the owner of its lease holds).
    worker: String,
    /// Sizes and timings.
    config: LeaseConfig,
    /// Open leases per user (and limited token).
    book: Mutex<HashMap<Key, Vec<Arc<Lease>>>>,
    /// One lease take at a time per key (concurrent first requests of a user share one), and
    /// how the key's leases are sized: when the last take was recent, the next lease is
    /// larger (a busy user's lease should last its maximum age, and so outlast an election).
    takes: dashmap::DashMap<Key, Arc<tokio::sync::Mutex<Sizing>>>,
    /// The lease take running per key (one at a time), shared by the requests waiting for it.
    taking: Mutex<HashMap<Key, TakeFuture>>,
    /// The ledger appends.
    writer: LedgerWriter,
    /// Leases going back (awaited when the worker stops).
    returning: tokio_util::task::TaskTracker,
}

impl Leases {
    /// Leases of worker `worker`, with their ledger writer (which counts confirmed records
    /// in `stats` when given).
    pub fn new(
        store: QuotaStore,
        worker: String,
        config: LeaseConfig,
        stats: Option<crate::stats::rollup::Rollup>,
    ) -> Arc<Self> {
        let writer = LedgerWriter::start(store.clone(), stats, config.linger);
        Arc::new(Self {
            store,
            worker,
            config,
            book: Mutex::default(),
            takes: dashmap::DashMap::new(),
            taking: Mutex::default(),
            writer,
            returning: tokio_util::task::TaskTracker::new(),
        })
    }

    fn book(&self) -> MutexGuard<'_, HashMap<Key, Vec<Arc<Lease>>>> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hold `units` for one request of `user` (and `token`, a limited token with its limit):
    /// from an open lease with room, else from a new lease of `requests` times `units` (or,
    /// when the balance cannot cover that, of `units` alone). The new lease is taken by a task
    /// of its own, waited for at most [`TAKE_WAIT`]: a take that outlasts the wait (a JetStream
    /// election) still completes and serves later requests, instead of leaving a half-taken
    /// hold behind. Refuses with 402 when the balance cannot cover `units`, 503 when the
    /// store does not answer in time, the user's records are not being confirmed or the
    /// writer's queue is full.
    pub async fn draw(
        self: &Arc<Self>,
        user: &Token,
        token: Option<(&Token, i64)>,
        units: i64,
        trace_id: &str,
        claim: Option<&Claim>,
    ) -> Result<Draw, RequestError> {
        let units = units.max(1);
        // Until its trace id is known fresh (`proof::Claim`), a request takes no lease for
        // lack of room: a replayed copy never makes the store hold an idle user's balance.
        // (Renewals ahead of need go on: they follow the user's own traffic here.)
        let key = Key { user: user.clone(), token: token.map(|(t, _)| t.clone()) };
        if self.writer.queued() >= MAX_QUEUED as u64 {
            return Err(stalled());
        }
        let limit = token.map(|(_, l)| l);
        // New leases are taken until one has room left for this request, for at most
        // TAKE_WAIT (concurrent requests of the user may draw on each one first).
        let deadline = tokio::time::Instant::now() + TAKE_WAIT;
        loop {
            match self.find(&key, units, false) {
                Found::Drawn(d, renew) => {
                    if renew {
                        drop(self.take_shared(&key, limit, units, trace_id, true));
                    }
                    return Ok(d);
                }
                Found::Stalled => return Err(stalled()),
                Found::NoRoom => {}
            }
            // A lease past its age with room serves this request at once, while a new one is
            // taken beside it (so an election during the take costs no request).
            if let Found::Drawn(d, _) = self.find(&key, units, true) {
                drop(self.take_shared(&key, limit, units, trace_id, true));
                return Ok(d);
            }
            if let Some(c) = claim {
                c.fresh().await?;
            }
            let take = self.take_shared(&key, limit, units, trace_id, false);
            let failed = match tokio::time::timeout_at(deadline, take).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) if e.status != 503 => return Err(e),
                Ok(Err(e)) => e,
                Err(_) => store_slow("the quota store did not answer in time"),
            };
            // The store does not answer (an election): a lease past its age still serves,
            // while its hold is far from its deadline.
            return match self.find(&key, units, true) {
                Found::Drawn(d, _) => Ok(d),
                _ => Err(failed),
            };
        }
    }

    /// The take of a lease for `key` running now, or a new one: a task of its own (it goes on
    /// when every waiter has gone), shared by every request of the key that waits for it.
    fn take_shared(
        self: &Arc<Self>,
        key: &Key,
        limit: Option<i64>,
        units: i64,
        trace_id: &str,
        renew: bool,
    ) -> TakeFuture {
        use futures::FutureExt;
        let mut running = self.taking.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = running.get(key) {
            return f.clone();
        }
        let this = self.clone();
        let (k, trace) = (key.clone(), trace_id.to_string());
        let task = tokio::spawn(async move {
            let res = this.clone().take(k.clone(), limit, units, trace, renew).await;
            this.taking.lock().unwrap_or_else(|p| p.into_inner()).remove(&k);
            res
        });
        let f =
            async move { task.await.unwrap_or_else(|_| Err(store_slow("the lease take stopped"))) }.boxed().shared();
        running.insert(key.clone(), f.clone());
        f
    }

    /// Take a lease of `key` with room for `units` (one take per key at a time; none when
    /// another take made room meanwhile) and put it in the book.
    async fn take(
        self: Arc<Self>,
        key: Key,
        limit: Option<i64>,
        units: i64,
        trace_id: String,
        renew: bool,
    ) -> Result<(), RequestError> {
        let gate = self.takes.entry(key.clone()).or_default().clone();
        let mut sizing = gate.lock().await;
        let enough = if renew {
            // A successor: unless the newest lease is still fresh and half full.
            let book = self.book();
            book.get(&key).and_then(|l| l.last()).is_some_and(|newest| !self.wants_successor(newest))
        } else {
            self.room_for(&key, units)
        };
        if enough {
            return Ok(());
        }
        // Leases taken less than half an age apart: the next is four times larger; a user
        // idle for two ages: half the size.
        sizing.scale = match sizing.last {
            Some(t) if t.elapsed() < self.config.max_age / 2 => (sizing.scale * 4).clamp(1, MAX_SCALE),
            Some(t) if t.elapsed() < self.config.max_age * 2 => sizing.scale.max(1),
            _ => (sizing.scale / 2).max(1),
        };
        let owner = HoldOwner {
            worker: self.worker.clone(),
            trace_id,
            ttl: self.config.max_age + self.config.request_ttl,
            lease: true,
        };
        let token = key.token.as_ref().zip(limit);
        let target = units.saturating_mul(i64::from(self.config.requests)).saturating_mul(sizing.scale);
        // The balance may not cover a whole lease: an eighth of it, then this request alone.
        let mut res = None;
        for size in [target, target / 8, units] {
            if size < units || (size < target && res.is_some()) {
                continue;
            }
            match self.store.reserve(&key.user, token, size, &owner).await {
                Ok(r) => {
                    res = Some(r);
                    break;
                }
                Err(e) if e.status == 402 && size > units => {}
                Err(e) => return Err(e),
            }
        }
        let Some(res) = res else { return Err(RequestError::new(402, "insufficient quota")) };
        sizing.last = Some(Instant::now());
        let now = Instant::now();
        let lease = Arc::new(Lease {
            id: res.hold_id().to_string(),
            user: key.user.clone(),
            units: res.units,
            group: res.group.clone(),
            total: res.total,
            used_after_take: res.used,
            created: now,
            state: Mutex::new(State {
                reserved: 0,
                spent: 0,
                acked: 0,
                acked_n: 0,
                finished_n: 0,
                queued_n: 0,
                in_flight: 0,
                closed: false,
                last_used: now,
                unconfirmed_since: None,
            }),
            res: tokio::sync::Mutex::new(Some(res)),
        });
        self.book().entry(key).or_default().push(lease);
        Ok(())
    }

    /// Whether an open lease of `key` has room for `units` now.
    fn room_for(&self, key: &Key, units: i64) -> bool {
        self.most_free(key) >= units
    }

    /// The most units one request of `key` could draw from an open lease within its age.
    fn most_free(&self, key: &Key) -> i64 {
        let book = self.book();
        book.get(key)
            .into_iter()
            .flatten()
            .filter(|l| l.created.elapsed() < self.config.max_age)
            .map(|l| {
                let s = l.lock();
                if s.closed {
                    0
                } else {
                    l.free(&s)
                }
            })
            .max()
            .unwrap_or(0)
    }

    /// A draw from an open lease of `key` with room for `units`; `aged`: also from a lease
    /// past its age (not yet closed), up to [`OUTAGE_AGE`] times it, while no new lease can be
    /// taken.
    fn find(&self, key: &Key, units: i64, aged: bool) -> Found {
        let limit = if aged { self.config.max_age * OUTAGE_AGE } else { self.config.max_age };
        let book = self.book();
        let Some(leases) = book.get(key) else { return Found::NoRoom };
        for lease in leases {
            let mut s = lease.lock();
            if s.unconfirmed_since.is_some_and(|t| t.elapsed() >= self.config.stall) {
                return Found::Stalled;
            }
            if s.closed || lease.created.elapsed() >= limit {
                continue;
            }
            if lease.free(&s) >= units {
                s.reserved += units;
                s.in_flight += 1;
                s.last_used = Instant::now();
                drop(s);
                let renew = leases.last().is_some_and(|newest| self.wants_successor(newest));
                return Found::Drawn(Draw { lease: lease.clone(), units, settled: false }, renew);
            }
        }
        Found::NoRoom
    }

    /// Whether a lease is half spent or past 70 % of its age: its successor is taken early,
    /// so that a take that must wait out an election finds the old lease still serving.
    fn wants_successor(&self, lease: &Lease) -> bool {
        let s = lease.lock();
        s.closed || lease.free(&s) < lease.units / 2 || lease.created.elapsed() > self.config.max_age * 7 / 10
    }

    /// The most a request of `user` (and a limited `token`) could draw from this worker's
    /// open leases now.
    pub fn room(&self, user: &Token, token: Option<&Token>) -> i64 {
        self.most_free(&Key { user: user.clone(), token: token.cloned() })
    }

    /// Settle one request at `actual` units: the lease notes it and its ledger record (with
    /// its id and charge filled in here) joins the writer's queue. Never waits on the bus.
    pub fn settle(&self, mut draw: Draw, actual: i64, mut record: UsageRecord) {
        draw.settled = true;
        let lease = draw.lease.clone();
        let n = {
            let mut s = lease.lock();
            s.end(draw.units);
            s.spent += actual;
            let n = s.queued_n;
            s.queued_n += 1;
            if s.unconfirmed_since.is_none() {
                s.unconfirmed_since = Some(Instant::now());
            }
            n
        };
        record.quota = actual;
        record.lease_id = Some(lease.id.clone());
        record.hold_id = Some(format!("{}.{n}", lease.id));
        self.writer.push(Entry::new(&lease.user, &record, lease.clone()));
    }

    /// Give back every lease that is due (idle, old or closed, all its records confirmed).
    /// Returns how many went back.
    fn return_due(&self, all: bool) -> usize {
        let mut due = Vec::new();
        {
            let mut book = self.book();
            book.retain(|_, leases| {
                let newest = leases.iter().map(|l| l.created).max();
                leases.retain(|lease| {
                    let superseded = newest.is_some_and(|n| n > lease.created);
                    let mut s = lease.lock();
                    if all {
                        s.closed = true;
                    }
                    if lease.returnable(&s, &self.config, superseded) {
                        s.closed = true;
                        due.push(lease.clone());
                        false
                    } else {
                        true
                    }
                });
                !leases.is_empty()
            });
        }
        let n = due.len();
        for lease in due {
            let store = self.store.clone();
            self.returning.spawn(give_back(store, lease));
        }
        n
    }

    /// Return due leases every 100 ms until `shutdown` (the stopping worker then calls
    /// [`Self::drain`] once its requests have settled).
    pub async fn keep(self: Arc<Self>, shutdown: crate::shutdown::Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => { self.return_due(false); }
            }
        }
    }

    /// Close every lease and return them as they come due, for at most `limit`.
    pub async fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.return_due(true);
            if self.book().is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let open = self.book().len();
        if open > 0 {
            tracing::warn!(open, "leases still open at shutdown; another worker completes them from the ledger");
        }
        self.returning.close();
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
        if tokio::time::timeout(left, self.returning.wait()).await.is_err() {
            tracing::warn!("lease settles still running at shutdown; another worker completes them");
        }
    }

    /// Figures for `/metrics`.
    pub fn stats(&self) -> LeaseStats {
        let book = self.book();
        let mut stats =
            LeaseStats { queued: self.writer.queued(), abandoned: self.writer.abandoned(), ..Default::default() };
        for lease in book.values().flatten() {
            stats.open += 1;
            stats.units += lease.units;
        }
        stats
    }
}

/// The 503 for a lease that could not be taken in time.
fn store_slow(why: &str) -> RequestError {
    RequestError::unavailable("quota store", why)
}

/// The 503 for a user whose billing records are not being confirmed.
fn stalled() -> RequestError {
    RequestError::new(
        503,
        "billing is paused: this worker's usage records are not being confirmed by the quota store \
         (a JetStream election or outage); retry shortly",
    )
}

/// Settle `lease` at what its confirmed records charged, retried inside the duplicate
/// window; after that the hold stays for another worker's reaper (it completes it from the
/// ledger, which holds every confirmed record).
async fn give_back(store: QuotaStore, lease: Arc<Lease>) {
    let Some(mut res) = lease.res.lock().await.take() else { return };
    let (actual, requests) = {
        let s = lease.lock();
        (s.acked, s.acked_n)
    };
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match store.settle_lease(&mut res, actual, requests).await {
            Ok(()) => return,
            Err(e) if started.elapsed() + pause < SETTLE_RETRY => {
                tracing::warn!(lease = %lease.id, error = %e.message, "lease settle failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(8));
            }
            Err(e) => {
                tracing::error!(lease = %lease.id, error = %e.message, "lease settle failed; a reaper completes it from the ledger");
                return;
            }
        }
    }
}
