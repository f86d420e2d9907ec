//! Channel choice. Candidates for a request are the enabled channels that serve its model
//! and platform (and its scenario's channel group), ordered: highest priority tier first,
//! inside a tier by the tier's [`Strategy`] (weighted random, power of two choices over
//! peak-EWMA latency, least busy), channels cooling down after failures last (tried only
//! when nothing else is left). A session pinned to a healthy channel of the first tier
//! goes there first, on its pinned key ([`affinity`]). A cooled-down channel gets one
//! half-open probe; success closes it, failure re-opens it with a doubled cooldown (or the
//! upstream's `Retry-After`).
//!
//! - [`strategy`]: the orderings inside a tier and the load they read.
//! - [`affinity`]: which session a request belongs to; the pinned (channel, key).
//! - [`scenario`]: scenario routes (features → model and channel group).

pub mod affinity;
pub mod scenario;
mod set;
pub mod strategy;

use crate::channel::ChannelConfig;
use crate::pricing::BuiltinPrices;
use crate::providers::{mock::MockProvider, Provider, ProviderError, ProviderKind};
pub use affinity::Assignment;
use serde::{Deserialize, Serialize};
pub use set::{build_channel, ChannelSet};
use set::{same, serving};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use strategy::{Load, Strategy, TierConfig};

/// Routing settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Most channels tried for one request.
    #[serde(default = "RoutingConfig::default_max_attempts")]
    pub max_attempts: usize,
    /// First cooldown after a failure; doubles with each consecutive failure.
    #[serde(default = "RoutingConfig::default_cooldown_base_ms")]
    pub cooldown_base_ms: u64,
    /// Longest cooldown.
    #[serde(default = "RoutingConfig::default_cooldown_max_ms")]
    pub cooldown_max_ms: u64,
    /// The built-in mock provider (a channel named `mock`). Unset (the default): on only
    /// when no `[[channels]]` are configured, and then it answers every model name (so
    /// Claude Code, Codex and Gemini CLI work with their default models). `true`: on beside
    /// the configured channels, serving only `mock*` names at the lowest priority. `false`:
    /// off.
    #[serde(default = "RoutingConfig::default_builtin_mock")]
    pub builtin_mock: Option<bool>,
    /// How every tier orders its channels unless `tiers` says otherwise: `weighted`,
    /// `p2c_ewma` or `least_busy`.
    #[serde(default)]
    pub strategy: Strategy,
    /// Per-tier strategies (`[[routing.tiers]]`: `priority`, `strategy`).
    #[serde(default)]
    pub tiers: Vec<TierConfig>,
    /// Time constant of the peak-EWMA latency (`p2c_ewma`): how fast a slow sample is
    /// forgotten, and how fast an untried channel's estimate decays so it is tried again.
    #[serde(default = "RoutingConfig::default_ewma_tau_ms")]
    pub ewma_tau_ms: u64,
    /// Session affinity: a session's requests go to the channel and key that served it
    /// last while that channel is healthy and in the first tier (the table is the
    /// `ROUTE_AFFINITY` KV bucket, shared by every worker).
    #[serde(default = "RoutingConfig::default_affinity")]
    pub affinity: bool,
    /// Scenario routes (`[[routing.scenarios]]`), first match wins.
    #[serde(default)]
    pub scenarios: Vec<scenario::ScenarioRule>,
}

/// What the built-in mock serves, from `routing.builtin_mock` and the configured channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockScope {
    /// Not built in.
    Off,
    /// `mock*` names only, below every configured channel.
    MockNames,
    /// Every model name (no channels are configured).
    AllNames,
}

impl MockScope {
    /// The built-in prices that go with it: the mock's demo price for every name only when
    /// the mock serves every name, so a configured channel never gets a silent `*` price.
    pub const fn builtin_prices(self) -> BuiltinPrices {
        match self {
            Self::AllNames => BuiltinPrices::AllNames,
            Self::Off | Self::MockNames => BuiltinPrices::MockNames,
        }
    }

    /// The model patterns the built-in mock channel serves (none when off).
    pub fn patterns(self) -> Vec<String> {
        match self {
            Self::Off => Vec::new(),
            Self::MockNames => vec!["mock*".into()],
            Self::AllNames => vec!["*".into()],
        }
    }
}

impl RoutingConfig {
    const fn default_max_attempts() -> usize {
        3
    }
    const fn default_cooldown_base_ms() -> u64 {
        5_000
    }
    const fn default_cooldown_max_ms() -> u64 {
        300_000
    }
    const fn default_builtin_mock() -> Option<bool> {
        None
    }
    const fn default_ewma_tau_ms() -> u64 {
        10_000
    }
    const fn default_affinity() -> bool {
        true
    }

    /// The strategy of the tier of `priority`.
    pub fn strategy_of(&self, priority: i32) -> Strategy {
        self.tiers.iter().find(|t| t.priority == priority).map_or(self.strategy, |t| t.strategy)
    }

    /// Semantic checks; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("routing.max_attempts must be at least 1".into());
        }
        if self.ewma_tau_ms == 0 {
            return Err("routing.ewma_tau_ms must be positive".into());
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if self.tiers[..i].iter().any(|o| o.priority == t.priority) {
                return Err(format!("routing.tiers[{i}]: priority {} is listed twice", t.priority));
            }
        }
        for (i, r) in self.scenarios.iter().enumerate() {
            r.validate().map_err(|e| format!("routing.scenarios[{i}] ({}): {e}", r.name))?;
        }
        Ok(())
    }

    /// What the built-in mock serves beside `channels`: unset, it is on (for every name)
    /// only when there are no channels; `true` adds it for `mock*` names beside them (for
    /// every name when there are none); `false` turns it off.
    pub fn mock_scope(&self, channels: &[ChannelConfig]) -> MockScope {
        match (self.builtin_mock, channels.is_empty()) {
            (Some(false), _) => MockScope::Off,
            (_, true) => MockScope::AllNames,
            (Some(true), false) => MockScope::MockNames,
            (None, false) => MockScope::Off,
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            max_attempts: Self::default_max_attempts(),
            cooldown_base_ms: Self::default_cooldown_base_ms(),
            cooldown_max_ms: Self::default_cooldown_max_ms(),
            builtin_mock: Self::default_builtin_mock(),
            strategy: Strategy::default(),
            tiers: Vec::new(),
            ewma_tau_ms: Self::default_ewma_tau_ms(),
            affinity: Self::default_affinity(),
            scenarios: Vec::new(),
        }
    }
}

/// Circuit state of one channel.
#[derive(Debug, Default)]
struct Breaker {
    /// Until when the channel cools down.
    open_until: Option<Instant>,
    /// A half-open probe is in flight.
    probing: bool,
}

/// Health of one channel, shared by every request on this worker.
#[derive(Debug, Default)]
pub struct Health {
    /// Successful attempts.
    successes: AtomicU64,
    /// Failed attempts (channel failures only, not the client's 4xx).
    failures: AtomicU64,
    /// Failures since the last success.
    consecutive: AtomicU32,
    /// Moving average of time to first byte, in microseconds.
    ttfb_us: AtomicU64,
    /// Moving average of whole-attempt time, in microseconds.
    total_us: AtomicU64,
    /// Cooldown state.
    breaker: Mutex<Breaker>,
    /// In flight and peak-EWMA latency, for the load-aware strategies.
    pub load: Load,
}

/// A snapshot for `ailurus channels` and the health subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthSnapshot {
    /// Channel name.
    pub channel: String,
    /// Upstream kind.
    pub kind: String,
    /// Priority tier.
    pub priority: i32,
    /// Weight inside the tier.
    pub weight: u32,
    /// Successful attempts.
    pub successes: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Average time to first byte, ms.
    pub ttfb_ms: f64,
    /// Average attempt time, ms.
    pub total_ms: f64,
    /// `ok`, `cooling` or `probing`.
    pub state: String,
    /// Milliseconds of cooldown left.
    pub cooldown_left_ms: u64,
    /// Where the channel came from (`ChannelOrigin`'s label); empty from older workers.
    #[serde(default)]
    pub origin: String,
    /// Attempts in flight on this worker when reported.
    #[serde(default)]
    pub inflight: u64,
    /// Peak-EWMA time to first byte, ms (decayed to the report's time).
    #[serde(default)]
    pub peak_ttfb_ms: f64,
}

/// How a channel may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Healthy.
    Closed,
    /// Cooldown over: this request is the probe.
    Probe,
    /// Cooling down.
    Open,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn peek(&self, now: Instant) -> Admit {
        let b = self.lock();
        match b.open_until {
            None => Admit::Closed,
            Some(t) if now >= t && !b.probing => Admit::Probe,
            Some(_) => Admit::Open,
        }
    }

    /// Claim the half-open probe; false when another request already holds it.
    fn claim_probe(&self, now: Instant) -> bool {
        let mut b = self.lock();
        match b.open_until {
            Some(t) if now >= t && !b.probing => {
                b.probing = true;
                true
            }
            None => true,
            _ => false,
        }
    }

    fn ewma(slot: &AtomicU64, sample: Duration) {
        let s = sample.as_micros() as u64;
        let old = slot.load(Ordering::Relaxed);
        let new = if old == 0 { s } else { (old * 7 + s) / 8 };
        slot.store(new, Ordering::Relaxed);
    }
}

/// A channel: config, provider, health.
#[derive(Debug)]
pub struct Channel {
    /// As configured.
    pub config: ChannelConfig,
    /// Parsed kind.
    pub kind: ProviderKind,
    /// The upstream.
    pub provider: Provider,
    /// Shared health.
    pub health: Health,
    /// How many keys it has (at least 1).
    pub keys: usize,
    /// The next key of the round robin, for a request no session pins.
    next_key: AtomicUsize,
}

impl Channel {
    fn new(config: ChannelConfig, kind: ProviderKind, provider: Provider) -> Self {
        let keys = provider.key_count().max(1);
        Self { config, kind, provider, health: Health::default(), keys, next_key: AtomicUsize::new(0) }
    }

    /// The next key of the round robin.
    pub fn round_robin(&self) -> usize {
        self.next_key.fetch_add(1, Ordering::Relaxed) % self.keys
    }
}

impl strategy::Weighed for &Arc<Channel> {
    fn weight(&self) -> u64 {
        self.config.weight as u64
    }
    fn load(&self) -> &Load {
        &self.health.load
    }
}

/// One way to serve a request.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The channel.
    pub channel: Arc<Channel>,
    /// The model name the upstream receives.
    pub upstream_model: String,
    /// This attempt is the channel's half-open probe.
    pub probe: bool,
    /// Which of the channel's keys to call with: a pinned session's, else the next of the
    /// round robin, taken by [`Router::claim`] (only candidates that are tried take one).
    pub key: usize,
    /// First because a session is pinned here.
    pub pinned: bool,
}

/// Routes models to channels. The set of channels is swapped whole ([`Router::replace`]): a
/// request reads it once, so it never sees half a change, and in-flight requests keep the
/// channels they hold.
#[derive(Debug)]
pub struct Router {
    /// The current set.
    set: std::sync::RwLock<Arc<ChannelSet>>,
    /// Settings.
    config: RoutingConfig,
}

impl Router {
    /// Build every channel (reads keys from the environment).
    pub fn new(config: &RoutingConfig, channels: &[ChannelConfig]) -> Result<Self, String> {
        let mut built = Vec::new();
        for c in channels {
            built.push(Arc::new(build_channel(c)?));
        }
        let set = Self::with_mock(config, channels, built, None)?;
        Ok(Self { set: std::sync::RwLock::new(Arc::new(set)), config: config.clone() })
    }

    /// `built` plus the built-in mock when `channels` call for it (kept from `old` if there).
    fn with_mock(
        config: &RoutingConfig,
        channels: &[ChannelConfig],
        mut built: Vec<Arc<Channel>>,
        old: Option<&ChannelSet>,
    ) -> Result<ChannelSet, String> {
        let scope = config.mock_scope(channels);
        if scope != MockScope::Off && !built.iter().any(|c| c.config.name == "mock") {
            let mut cfg: ChannelConfig =
                toml::from_str("name = \"mock\"\nkind = \"mock\"\npriority = -1000\n").map_err(|e| e.to_string())?;
            cfg.models = scope.patterns();
            cfg.origin = crate::channel::ChannelOrigin::BuiltinMock;
            let kept = old.and_then(|o| o.channels.iter().find(|c| same(&c.config, &cfg)).cloned());
            built.push(kept.unwrap_or_else(|| {
                Arc::new(Channel::new(cfg, ProviderKind::Mock, Provider::Mock(MockProvider::default())))
            }));
        }
        Ok(ChannelSet { channels: built, scope })
    }

    /// Swap in a new set of channels at once. A channel whose config is unchanged keeps its
    /// provider (connection pool) and its health (cooldown, probe, averages); one that cannot
    /// be built is left out, and its error returned. Requests in flight keep what they hold.
    pub fn replace(&self, channels: &[ChannelConfig]) -> Vec<String> {
        let old = self.current();
        let mut errors = Vec::new();
        let mut built = Vec::with_capacity(channels.len() + 1);
        let mut usable = Vec::with_capacity(channels.len());
        for c in channels {
            if let Some(kept) = old.channels.iter().find(|o| same(&o.config, c)) {
                built.push(kept.clone());
                usable.push(c.clone());
                continue;
            }
            match build_channel(c) {
                Ok(ch) => {
                    built.push(Arc::new(ch));
                    usable.push(c.clone());
                }
                Err(e) => errors.push(e),
            }
        }
        match Self::with_mock(&self.config, &usable, built, Some(&old)) {
            Ok(set) => *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set),
            Err(e) => errors.push(e),
        }
        errors
    }

    /// The current set.
    pub fn current(&self) -> Arc<ChannelSet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the built-in mock serves on this router.
    pub fn mock_scope(&self) -> MockScope {
        self.current().scope
    }

    /// A router with only the built-in mock.
    pub fn mock_only() -> Self {
        Self::new(&RoutingConfig::default(), &[]).unwrap_or(Self {
            set: std::sync::RwLock::new(Arc::new(ChannelSet { channels: Vec::new(), scope: MockScope::Off })),
            config: RoutingConfig::default(),
        })
    }

    /// Every channel now.
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.current().channels.clone()
    }

    /// The upstream formats of the enabled channels that serve `model` on `platform` (and are
    /// in `group`, a scenario's channel patterns, when not empty; `None` for a channel
    /// without a wire format, the mock): a cheap check before any work.
    pub fn serving_formats(
        &self,
        model: &str,
        platform: &str,
        group: &[String],
    ) -> Vec<Option<crate::protocol::Format>> {
        let set = self.current();
        serving(&set.channels, model, platform, group).map(|c| c.kind.format()).collect()
    }
    /// Candidates for a request, best first, at most `max_attempts`.
    pub fn candidates(&self, model: &str, platform: &str) -> Vec<Candidate> {
        self.candidates_for(model, platform, None, &[])
    }

    /// Candidates for a request whose session may be pinned (`pin`) and whose scenario may
    /// allow only a group of channels (`group`: name patterns, empty for any), best first,
    /// at most `max_attempts`. The pinned channel goes first, on its key, when it is healthy
    /// (not cooling, not probing) and in the first tier that has a healthy channel; else the
    /// order is as without it and the session moves where it is served.
    pub fn candidates_for(
        &self,
        model: &str,
        platform: &str,
        pin: Option<&Assignment>,
        group: &[String],
    ) -> Vec<Candidate> {
        let now = Instant::now();
        let tau = Duration::from_millis(self.config.ewma_tau_ms);
        let set = self.current();
        let mut eligible: Vec<&Arc<Channel>> = serving(&set.channels, model, platform, group).collect();
        eligible.sort_by_key(|c| std::cmp::Reverse(c.config.priority));
        let mut ordered: Vec<&Arc<Channel>> = Vec::with_capacity(eligible.len());
        let mut i = 0;
        while i < eligible.len() {
            let tier = eligible[i].config.priority;
            let end = eligible[i..].iter().position(|c| c.config.priority != tier).map_or(eligible.len(), |p| i + p);
            let strategy = self.config.strategy_of(tier);
            ordered.extend(strategy::order(strategy, eligible[i..end].to_vec(), now, tau));
            i = end;
        }
        let (mut ready, cooling): (Vec<Candidate>, Vec<Candidate>) = ordered
            .into_iter()
            .map(|c| {
                let admit = c.health.peek(now);
                let cand = Candidate {
                    channel: c.clone(),
                    upstream_model: c.config.map_model(model),
                    probe: admit == Admit::Probe,
                    key: 0,
                    pinned: false,
                };
                (cand, admit)
            })
            .fold((Vec::new(), Vec::new()), |(mut r, mut o), (cand, admit)| {
                if admit == Admit::Open {
                    o.push(cand);
                } else {
                    r.push(cand);
                }
                (r, o)
            });
        if let (Some(pin), Some(first)) = (pin, ready.first()) {
            let tier = first.channel.config.priority;
            let at = ready.iter().position(|c| {
                c.channel.config.name == pin.channel
                    && !c.probe
                    && c.channel.config.priority == tier
                    && pin.key < c.channel.keys
            });
            if let Some(at) = at {
                let mut c = ready.remove(at);
                c.key = pin.key;
                c.pinned = true;
                ready.insert(0, c);
            }
        }
        ready.extend(cooling);
        ready.truncate(self.config.max_attempts.max(1));
        ready
    }

    /// The scenario rule a request matches, if any.
    pub fn scenario(&self, features: &scenario::Features<'_>) -> Option<scenario::Decision> {
        if self.config.scenarios.is_empty() {
            return None;
        }
        scenario::decide(&self.config.scenarios, features)
    }

    /// Whether session affinity is on.
    pub const fn affinity(&self) -> bool {
        self.config.affinity
    }

    /// Take in what the other workers report in `CHANNEL_HEALTH` (their in-flight counts):
    /// `others` are the channel snapshots of every other live worker.
    pub fn absorb<'a>(&self, others: impl Iterator<Item = &'a HealthSnapshot>) {
        let mut sums: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for s in others {
            *sums.entry(s.channel.as_str()).or_default() += s.inflight;
        }
        for c in &self.current().channels {
            c.health.load.set_remote_inflight(sums.get(c.config.name.as_str()).copied().unwrap_or(0));
        }
    }

    /// Claim a candidate before calling it: a probe candidate may lose the race to another
    /// request, and is then skipped. A candidate no session pins takes its key here.
    pub fn claim(&self, cand: &mut Candidate) -> bool {
        let ok = !cand.probe || cand.channel.health.claim_probe(Instant::now());
        if ok && !cand.pinned {
            cand.key = cand.channel.round_robin();
        }
        ok
    }

    /// Whether an upstream error is the channel's fault (fail over, cool down).
    pub fn is_channel_failure(&self, cand: &Candidate, err: &ProviderError) -> bool {
        err.is_retryable()
            || matches!(err.kind, crate::providers::ProviderErrorKind::Status(s)
                if cand.channel.config.failure_statuses.contains(&s))
    }

    /// Record a success (time to first byte, whole attempt).
    pub fn success(&self, cand: &Candidate, ttfb: Duration, total: Duration) {
        let h = &cand.channel.health;
        h.successes.fetch_add(1, Ordering::Relaxed);
        h.consecutive.store(0, Ordering::Relaxed);
        Health::ewma(&h.ttfb_us, ttfb);
        Health::ewma(&h.total_us, total);
        h.load.observe(ttfb, Instant::now(), Duration::from_millis(self.config.ewma_tau_ms));
        let mut b = h.lock();
        b.open_until = None;
        b.probing = false;
    }

    /// Record a channel failure and start (or extend) its cooldown.
    pub fn failure(&self, cand: &Candidate, err: &ProviderError) {
        let h = &cand.channel.health;
        h.failures.fetch_add(1, Ordering::Relaxed);
        let n = h.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let backoff =
            self.config.cooldown_base_ms.saturating_mul(1u64 << (n - 1).min(16)).min(self.config.cooldown_max_ms);
        let wait = err
            .retry_after
            .map_or(Duration::from_millis(backoff), |ra| ra.min(Duration::from_millis(self.config.cooldown_max_ms)));
        let mut b = h.lock();
        b.open_until = Some(Instant::now() + wait);
        b.probing = false;
        tracing::warn!(channel = %cand.channel.config.name, cooldown_ms = wait.as_millis() as u64, error = %err, "channel cooling down");
    }

    /// Release a probe claim without a verdict (client cancelled, not the channel's fault).
    pub fn release(&self, cand: &Candidate) {
        if cand.probe {
            cand.channel.health.lock().probing = false;
        }
    }

    /// Health of every channel.
    pub fn snapshot(&self) -> Vec<HealthSnapshot> {
        let now = Instant::now();
        let tau = Duration::from_millis(self.config.ewma_tau_ms);
        self.current()
            .channels
            .iter()
            .map(|c| {
                let h = &c.health;
                let b = h.lock();
                let (state, left) = match b.open_until {
                    None => ("ok", 0),
                    Some(_) if b.probing => ("probing", 0),
                    Some(t) if t > now => ("cooling", (t - now).as_millis() as u64),
                    Some(_) => ("probe-ready", 0),
                };
                HealthSnapshot {
                    channel: c.config.name.clone(),
                    kind: c.kind.as_str().to_string(),
                    priority: c.config.priority,
                    weight: c.config.weight,
                    successes: h.successes.load(Ordering::Relaxed),
                    failures: h.failures.load(Ordering::Relaxed),
                    consecutive_failures: h.consecutive.load(Ordering::Relaxed),
                    ttfb_ms: h.ttfb_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    total_ms: h.total_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    state: state.to_string(),
                    cooldown_left_ms: left,
                    origin: c.config.origin.as_str().to_string(),
                    inflight: h.load.inflight(),
                    peak_ttfb_ms: h.load.peak_us(now, tau) / 1000.0,
                }
            })
            .collect()
    }

    /// Model patterns served, for `/v1/models`.
    pub fn models(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.current().channels {
            if !c.config.enabled {
                continue;
            }
            let names: Vec<String> = if c.kind == ProviderKind::Mock {
                // A mock serving every name lists the names the CLIs use by default first.
                let every = c.config.models.iter().any(|m| m == "*");
                let clients = if every { crate::providers::mock::CLIENT_DEFAULT_MODELS } else { &[] };
                clients.iter().chain(crate::providers::mock::LISTED_MODELS).map(|m| m.to_string()).collect()
            } else {
                c.config
                    .models
                    .iter()
                    .chain(c.config.model_map.keys())
                    .filter(|m| !m.contains(['*', '?']))
                    .cloned()
                    .collect()
            };
            for n in names {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
