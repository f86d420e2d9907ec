//! The worker: queue-subscribes to `llm.request.*`, handles each request in its own task
//! with bounded concurrency, stops work on `llm.cancel.<trace_id>`, and drains on shutdown
//! (stop taking, finish what is in flight, then return).
//!
//! - [`admission`]: the concurrency slots and the bounded wait queue in front of them.
//! - [`inflight`]: trace id → cancellation handle, for cancels and duplicate detection.
//! - [`reply`]: the reply protocol (`Ailurus-Kind` chunk / heartbeat / done / error).
//! - `handler`: one request from message to final reply (parse, auth, rate limits, reserve,
//!   heartbeats, cancel, timeout, final reply, settle).
//! - `billing`: admission (unpriced models, rate limits, output cap, worst-case hold) and
//!   settle, the one quota interface the handler calls.
//! - [`job`]: the parsed request a worker serves, how its client talks, what was delivered.
//! - `pipeline`: routing with failover before the first byte, pass-through or conversion.
//! - [`sync`]: chat sync, presence and the audit copy of each answer.
//! - `api`: the NEW-API management API (`ailurus.api.<family>`), one file per family.
//! - `models`: model lists in each API's shape.
//! - [`health`]: channel health into the `CHANNEL_HEALTH` bucket (and the other workers'
//!   in-flight counts back into the router).
//! - `routing`: scenario routes applied to a job; the session affinity table.
//! - `otel`: the telemetry hooks (the request's span, admission, attempts), one `Option`
//!   check each when export is off.
//! - `live`: the live configuration (channels, prices, group ratios in KV), followed and
//!   swapped in after every change.

pub mod admission;
mod api;
mod billing;
mod handler;
pub mod health;
pub mod inflight;
pub(crate) mod job;
mod live;
mod models;
mod otel;
mod pipeline;
mod reasoning;
pub mod reply;
mod routing;
pub mod sync;

use crate::bus::subjects;
use crate::config::Config;
use crate::pricing::PriceTable;
use crate::router::Router;
use crate::shutdown::Shutdown;
use async_nats::Message;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// How long a stopping worker waits for its ledger records to be confirmed and its leases to
/// go back (another worker completes what is left, from the ledger).
const LEASE_DRAIN: Duration = Duration::from_secs(20);

/// What every request task shares.
pub(crate) struct WorkerCtx {
    /// The NATS connection replies go out on.
    pub client: async_nats::Client,
    /// Worker settings.
    pub config: crate::config::WorkerConfig,
    /// Model → provider (shared with whoever started the worker, for `Router::snapshot`);
    /// its channel set follows the live configuration.
    pub router: Arc<Router>,
    /// Model → price and the group ratios, swapped whole when the live configuration changes.
    pub pricing: std::sync::RwLock<Arc<Pricing>>,
    /// The followed live-configuration buckets (none: the config file alone).
    pub live: Option<live::Live>,
    /// Requests being worked on, by trace id.
    pub inflight: inflight::InFlight,
    /// Concurrency slots.
    pub admission: admission::Admission,
    /// Authentication settings.
    pub auth: crate::quota::AuthConfig,
    /// Token records (none in open mode).
    pub tokens: Option<crate::quota::tokens::TokenStore>,
    /// Users and roles, for the management API (none in open mode or without `USERS`).
    pub users: Option<crate::quota::users::UserStore>,
    /// Top-up codes (none in open mode or without `REDEMPTIONS`).
    pub redemptions: Option<crate::quota::redemption::Redemptions>,
    /// Quota accounts and counters (none in open mode).
    pub quota: Option<crate::quota::account::QuotaStore>,
    /// This worker's quota leases and its ledger writer (none in open mode).
    pub leases: Option<Arc<crate::quota::lease::Leases>>,
    /// Per-token rate limits (none in open mode or without `RATE_COUNTERS`).
    pub rates: Option<crate::quota::ratelimit::RateLimiter>,
    /// What a request for a model without a price gets (`[pricing] unpriced`).
    pub unpriced: crate::pricing::Unpriced,
    /// When each user's presence was last published (throttle).
    pub presence: dashmap::DashMap<String, std::time::Instant>,
    /// This worker's id (its key in `WORKERS`, the owner of its quota holds).
    pub worker_id: String,
    /// Requests, latency and gateway overhead by platform (`--metrics-listen`).
    pub metrics: crate::metrics::Metrics,
    /// The reasoning store for clients without a reasoning slot (none without the bucket).
    pub reasoning: Option<async_nats::jetstream::kv::Store>,
    /// The session affinity table (none when off or without the bucket).
    pub affinity: Option<Arc<routing::Affinity>>,
    /// The worker's stop signal (long-lived answers, the log stream, end on it).
    pub shutdown: Shutdown,
    /// The usage statistics bucket, opened by the first `/api/data` call.
    pub stats_kv: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
    /// OpenTelemetry export (none when no endpoint is configured).
    pub telemetry: Option<Arc<crate::telemetry::Telemetry>>,
}

/// Prices and group ratios at one moment.
pub(crate) struct Pricing {
    /// Model → price.
    pub table: PriceTable,
    /// Price multipliers per group.
    pub groups: std::collections::BTreeMap<String, f64>,
}

impl WorkerCtx {
    /// The prices and group ratios now.
    pub(crate) fn pricing(&self) -> Arc<Pricing> {
        self.pricing.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swap in new prices and group ratios.
    pub(crate) fn set_pricing(&self, p: Pricing) {
        *self.pricing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
    }

    /// Price multiplier of a group (1.0 when not configured).
    pub(crate) fn group_ratio(&self, group: &str) -> f64 {
        self.pricing().groups.get(group).copied().unwrap_or(1.0)
    }

    /// The largest price multiplier any user may have (at least 1.0): a hold is taken before
    /// the user's group is read, so it covers the dearest group.
    pub(crate) fn group_ratio_bound(&self) -> f64 {
        self.pricing().groups.values().copied().fold(1.0, f64::max)
    }
}

/// Subscribe to `subject`, in `queue` when given.
async fn subscribe(
    client: &async_nats::Client,
    subject: String,
    queue: Option<&str>,
) -> Result<async_nats::Subscriber, WorkerError> {
    let sub = match queue {
        Some(q) => client.queue_subscribe(subject.clone(), q.to_string()).await,
        None => client.subscribe(subject.clone()).await,
    };
    sub.map_err(|e| WorkerError(format!("subscribe {subject}: {e}")))
}

/// The next message of an optional subscription (never, for one this worker does not hold;
/// `None` when a held one ends).
async fn next(sub: &mut Option<async_nats::Subscriber>) -> Option<Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Refresh this worker's key in `WORKERS` three times per liveness period, until shutdown
/// (the key then expires by itself).
async fn keep_alive(
    quota: crate::quota::account::QuotaStore,
    worker_id: String,
    liveness: Duration,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(liveness / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tick.tick() => {
                if let Err(e) = quota.announce(&worker_id, liveness).await {
                    tracing::warn!(error = %e.message, "worker liveness refresh failed");
                }
            }
        }
    }
}

/// Scan for orphaned quota holds every `every` (with jitter, so a fleet spreads its scans),
/// until shutdown.
async fn reap(quota: crate::quota::account::QuotaStore, liveness: Duration, every: Duration, shutdown: Shutdown) {
    let mut reaper = crate::quota::holds::Reaper::new(quota, liveness);
    loop {
        let pause = every + Duration::from_millis(fastrand::u64(0..=every.as_millis() as u64 / 4));
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(pause) => {
                match reaper.scan().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(completed = n, "quota holds of lost workers completed"),
                    Err(e) => tracing::debug!(error = %e.message, "hold scan failed; retrying later"),
                }
            }
        }
    }
}

/// Errors that stop the worker loop itself (not a single request).
#[derive(Debug)]
pub struct WorkerError(pub String);

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WorkerError {}

/// Serve `GET /metrics` (Prometheus text) on `addr` until `shutdown`.
async fn serve_metrics(addr: &str, ctx: Arc<WorkerCtx>, shutdown: Shutdown) -> Result<(), WorkerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| WorkerError(format!("metrics cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, "worker metrics on /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let ctx = ctx.clone();
            async move {
                let mut text = ctx.metrics.render();
                if let Some(leases) = &ctx.leases {
                    leases.stats().render(&mut text);
                }
                ([("content-type", "text/plain; version=0.0.4")], text)
            }
        }),
    );
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

/// Run a worker on `client` until `shutdown` fires, then drain.
pub async fn run(client: async_nats::Client, config: &Config, shutdown: Shutdown) -> Result<(), WorkerError> {
    let router = Router::new(&config.routing, &config.channels).map_err(WorkerError)?;
    run_with_router(client, config, Arc::new(router), shutdown).await
}

/// [`run`] with a router the caller built (from `config.routing` and `config.channels`) and
/// keeps, to read channel health with [`Router::snapshot`] while the worker serves.
pub async fn run_with_router(
    client: async_nats::Client,
    config: &Config,
    router: Arc<Router>,
    shutdown: Shutdown,
) -> Result<(), WorkerError> {
    start(client, config, router, shutdown).await?.run().await
}

/// A worker whose subscriptions the server holds: requests sent from now on reach it (or
/// its queue group). [`Serving::run`] takes them until shutdown, then drains.
pub struct Serving {
    /// What every request task shares.
    ctx: Arc<WorkerCtx>,
    /// `llm.request.*` in the queue group (`None` when this worker serves the API only).
    requests: Option<async_nats::Subscriber>,
    /// `llm.cancel.*`, outside the queue group: every worker hears every cancel.
    cancels: async_nats::Subscriber,
    /// `ailurus.api.*` in the queue group (`None` when this worker serves requests only).
    api: Option<async_nats::Subscriber>,
    /// The statistics roll-up, closed (flushed) after the drain.
    stats: Option<crate::stats::rollup::Rollup>,
    /// Ends the serve loop.
    shutdown: Shutdown,
}

/// Set a worker up on `client` (stores, router, live configuration, subscriptions) and
/// return once the server has its subscriptions; `Serving::run` then serves.
pub async fn start(
    client: async_nats::Client,
    config: &Config,
    router: Arc<Router>,
    shutdown: Shutdown,
) -> Result<Serving, WorkerError> {
    // On the heap: the set-up's state is large (every store's opening), too large for the
    // stack of a caller that awaits it in place (a test thread has 2 MiB).
    Box::pin(set_up(client, config, router, shutdown)).await
}

/// The body of [`start`].
async fn set_up(
    client: async_nats::Client,
    config: &Config,
    router: Arc<Router>,
    shutdown: Shutdown,
) -> Result<Serving, WorkerError> {
    let wc = config.worker.clone();
    let (tokens, quota, rates, users) = if config.auth.mode == crate::quota::AuthMode::Open {
        (None, None, None, None)
    } else {
        let js = async_nats::jetstream::new(client.clone());
        let tokens = crate::quota::tokens::TokenStore::open(&js).await.map_err(WorkerError)?;
        tokens.follow(shutdown.clone()).await.map_err(WorkerError)?;
        let quota = crate::quota::account::QuotaStore::open(client.clone()).await.map_err(WorkerError)?;
        let rates = crate::quota::ratelimit::RateLimiter::open(client.clone()).await;
        let users = match crate::quota::users::UserStore::open(&js).await {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(error = %e, "no user directory: access tokens and roles are unavailable");
                None
            }
        };
        (Some(tokens), Some(quota), rates, users)
    };
    let redemptions = match &quota {
        Some(q) => crate::quota::redemption::Redemptions::open(q.jetstream()).await.ok(),
        None => None,
    };
    // The built-in prices follow what this router's built-in mock serves.
    let prices = PriceTable::new(&config.pricing.models, router.mock_scope().builtin_prices());
    if config.auth.mode != crate::quota::AuthMode::Open && config.pricing.unpriced == crate::pricing::Unpriced::Refuse {
        for ch in config.channels.iter().filter(|c| c.enabled) {
            let (_, missing) = prices.coverage(&ch.models);
            for pattern in missing {
                tracing::warn!(channel = %ch.name, models = %pattern,
                    "no price covers these models: requests for them are refused until [[pricing.models]] has them \
                     (or [pricing] unpriced = \"free\")");
            }
        }
    }
    let worker_id = nuid::next().to_string();
    let stats = match (&quota, wc.stats_flush_ms) {
        (Some(_), ms) if ms > 0 => {
            let js = async_nats::jetstream::new(client.clone());
            crate::stats::rollup::Rollup::start(&js, worker_id.clone(), Duration::from_millis(ms)).await
        }
        _ => None,
    };
    let leases = quota.as_ref().map(|q| {
        let lc = crate::quota::lease::LeaseConfig {
            requests: wc.lease_requests,
            idle: Duration::from_millis(wc.lease_idle_ms),
            max_age: Duration::from_millis(wc.lease_max_age_ms),
            request_ttl: Duration::from_millis(wc.request_timeout_ms),
            stall: Duration::from_millis(wc.billing_stall_ms),
            linger: Duration::from_millis(wc.ledger_linger_ms),
        };
        crate::quota::lease::Leases::new(q.clone(), worker_id.clone(), lc, stats.clone())
    });
    let seal = crate::seal::SealKey::load(config.live.secret_key_file.as_deref()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no secret key: channels with a sealed API key are left out");
        None
    });
    let telemetry = match config.telemetry.endpoint(&|k| std::env::var(k).ok()) {
        Some(endpoint) => {
            // Off the async threads: the exporters' HTTP clients are built on threads of theirs.
            let (cfg, at) = (config.telemetry.clone(), endpoint.clone());
            let t = tokio::task::spawn_blocking(move || crate::telemetry::Telemetry::start(&cfg, &at))
                .await
                .map_err(|e| WorkerError(format!("telemetry: {e}")))?
                .map_err(WorkerError)?;
            tracing::info!(endpoint = %endpoint, capture_content = config.telemetry.capture_content, "exporting OpenTelemetry traces and metrics");
            Some(Arc::new(t))
        }
        None => None,
    };
    let live = if config.live.follow { live::Live::open(&client, seal, &shutdown).await? } else { None };
    let ctx = Arc::new(WorkerCtx {
        auth: config.auth.clone(),
        tokens,
        users,
        redemptions,
        quota,
        leases,
        rates,
        live,
        unpriced: config.pricing.unpriced,
        presence: dashmap::DashMap::new(),
        worker_id,
        client: client.clone(),
        admission: admission::Admission::new(wc.concurrency, wc.max_queued, Duration::from_millis(wc.queue_timeout_ms)),
        config: wc.clone(),
        router: router.clone(),
        pricing: std::sync::RwLock::new(Arc::new(Pricing { table: prices, groups: config.pricing.groups.clone() })),
        inflight: inflight::InFlight::default(),
        metrics: crate::metrics::Metrics::new("ailurus_worker", "platform"),
        reasoning: reasoning::open(&client).await,
        affinity: routing::Affinity::open(&client, router.affinity(), shutdown.clone()).await,
        shutdown: shutdown.clone(),
        stats_kv: tokio::sync::OnceCell::new(),
        telemetry,
    });
    if let Some(l) = &ctx.live {
        let file = live::FileConfig {
            channels: config.channels.clone(),
            prices: config.pricing.models.clone(),
            groups: config.pricing.groups.clone(),
        };
        // Serve the live set from the first request on, then follow it.
        l.apply(&ctx, &file);
        tokio::spawn(live::Live::keep_applying(ctx.clone(), file, shutdown.clone()));
    }
    tokio::spawn(health::publish_loop(
        client.clone(),
        ctx.router.clone(),
        format!("worker-{}", nuid::next()),
        shutdown.clone(),
    ));
    if let Some(addr) = &wc.metrics_listen {
        serve_metrics(addr, ctx.clone(), shutdown.clone()).await?;
    }
    // Load the count_tokens vocabulary in the background, so the first count is fast.
    tokio::task::spawn_blocking(|| crate::tokenize::count(""));
    let serve = wc.serve;
    let queue = Some(wc.queue_group.as_str());
    let requests =
        if serve.requests() { Some(subscribe(&client, subjects::request_all(), queue).await?) } else { None };
    // Cancels reach LLM requests and the management API's log streams alike.
    let cancels = subscribe(&client, subjects::cancel_all(), None).await?;
    let api = if serve.api() { Some(subscribe(&client, subjects::api_all(), queue).await?) } else { None };
    // Make sure the server has the subscriptions before anyone is told we are up (a flush
    // only writes them; a request from another connection could still find no worker).
    if !crate::bus::confirm_subscriptions(&client, crate::bus::CONFIRM_WITHIN).await {
        tracing::warn!(limit = ?crate::bus::CONFIRM_WITHIN, "the server has not confirmed this worker's subscriptions; serving anyway");
    }
    if let Some(quota) = ctx.quota.clone() {
        // Announce this worker before it takes a request, then keep the key alive and scan
        // for the holds of lost workers, until shutdown.
        let liveness = Duration::from_millis(wc.liveness_ms);
        if let Err(e) = quota.announce(&ctx.worker_id, liveness).await {
            return Err(WorkerError(format!("announce worker: {}", e.message)));
        }
        tokio::spawn(keep_alive(quota.clone(), ctx.worker_id.clone(), liveness, shutdown.clone()));
        tokio::spawn(reap(quota, liveness, Duration::from_millis(wc.reaper_ms), shutdown.clone()));
    }
    if let Some(leases) = ctx.leases.clone() {
        tokio::spawn(leases.keep(shutdown.clone()));
    }
    tracing::info!(queue_group = %wc.queue_group, concurrency = wc.concurrency, worker_id = %ctx.worker_id, serve = ?serve, "worker serving");
    Ok(Serving { ctx, requests, cancels, api, stats, shutdown })
}

impl Serving {
    /// Serve until shutdown, then drain: stop taking, finish what is in flight (bounded by
    /// the request timeout), confirm the ledger, give the leases back.
    pub async fn run(self) -> Result<(), WorkerError> {
        let Serving { ctx, mut requests, mut cancels, mut api, stats, shutdown } = self;
        let client = ctx.client.clone();
        let wc = &ctx.config;
        let tasks = TaskTracker::new();
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                msg = next(&mut requests) => match msg {
                    Some(msg) => { tasks.spawn(handler::handle(ctx.clone(), msg)); }
                    None => {
                        tracing::warn!("request subscription closed");
                        break;
                    }
                },
                msg = cancels.next() => if let Some(msg) = msg {
                    ctx.inflight.cancel(subjects::last_token(&msg.subject));
                },
                msg = next(&mut api) => match msg {
                    Some(msg) => {
                        let ctx = ctx.clone();
                        tasks.spawn(async move { api::handle(&ctx, msg).await });
                    }
                    None => {
                        tracing::warn!("API subscription closed");
                        break;
                    }
                },
            }
        }
        if let Some(api) = &mut api {
            let _ = api.unsubscribe().await;
        }

        // Drain: stop taking new requests, but handle the ones already delivered to us.
        tracing::info!(in_flight = ctx.inflight.len(), "draining");
        if let Some(requests) = &mut requests {
            if let Err(e) = requests.drain().await {
                tracing::warn!(error = %e, "unsubscribe during drain failed");
            }
        }
        let pending = async {
            while let Some(msg) = next(&mut requests).await {
                tasks.spawn(handler::handle(ctx.clone(), msg));
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), pending).await.is_err() {
            tracing::warn!("pending requests did not arrive within 2 s of drain");
        }
        tasks.close();
        let finish = tasks.wait();
        tokio::pin!(finish);
        let limit = tokio::time::sleep(Duration::from_millis(wc.request_timeout_ms));
        tokio::pin!(limit);
        loop {
            tokio::select! {
                _ = &mut finish => break,
                _ = &mut limit => {
                    tracing::warn!(in_flight = ctx.inflight.len(), "drain timed out; abandoning in-flight requests");
                    break;
                }
                msg = cancels.next() => if let Some(msg) = msg {
                    ctx.inflight.cancel(subjects::last_token(&msg.subject));
                },
            }
        }
        // Every request has settled: confirm their ledger records and give the leases back.
        if let Some(leases) = &ctx.leases {
            leases.drain(LEASE_DRAIN).await;
        }
        if let Some(stats) = &stats {
            stats.close(Duration::from_secs(5)).await;
        }
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), client.flush()).await {
            tracing::warn!(error = %e, "final flush timed out");
        }
        if let Some(t) = ctx.telemetry.clone() {
            // Blocks until the exporters answer (each export is time-limited).
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}
