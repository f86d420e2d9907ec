//! Channel choice. Candidates for a request are the enabled channels that serve its model
//! and platform, ordered: highest priority tier first, weighted random inside a tier,
//! channels cooling down after failures last (tried only when nothing else is left). A
//! cooled-down channel gets one half-open probe; success closes it, failure re-opens it
//! with a doubled cooldown (or the upstream's `Retry-After`).

use crate::channel::ChannelConfig;
use crate::pricing::BuiltinPrices;
use crate::providers::{http::HttpProvider, mock::MockProvider, Provider, ProviderError, ProviderKind};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

/// The channels a router serves at one moment, and what its built-in mock serves.
#[derive(Debug)]
pub struct ChannelSet {
    /// Every channel, config order.
    pub channels: Vec<Arc<Channel>>,
    /// What the built-in mock serves.
    pub scope: MockScope,
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

/// Build one channel (its provider reads keys from the environment or the handed-over key).
pub fn build_channel(c: &ChannelConfig) -> Result<Channel, String> {
    let kind = c.provider_kind().map_err(|e| format!("channel {}: {e}", c.name))?;
    let provider = match kind {
        ProviderKind::Mock => Provider::Mock(MockProvider::default()),
        _ => Provider::Http(HttpProvider::new(kind, c).map_err(|e| format!("channel {}: {e}", c.name))?),
    };
    Ok(Channel { config: c.clone(), kind, provider, health: Health::default() })
}

/// Whether two channel configs are the same channel (then its provider and health are kept).
fn same(a: &ChannelConfig, b: &ChannelConfig) -> bool {
    a.key == b.key
        && a.origin == b.origin
        && a.revision == b.revision
        && serde_json::to_value(a).ok().is_some_and(|v| serde_json::to_value(b).ok() == Some(v))
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
                Arc::new(Channel {
                    config: cfg,
                    kind: ProviderKind::Mock,
                    provider: Provider::Mock(MockProvider::default()),
                    health: Health::default(),
                })
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

    /// The upstream formats of the enabled channels that serve `model` on `platform` (`None`
    /// for a channel without a wire format, the mock): a cheap check before any work.
    pub fn serving_formats(&self, model: &str, platform: &str) -> Vec<Option<crate::protocol::Format>> {
        self.current()
            .channels
            .iter()
            .filter(|c| c.config.enabled && c.config.serves(model) && c.config.serves_platform(platform))
            .map(|c| c.kind.format())
            .collect()
    }

    /// Candidates for a request, best first, at most `max_attempts`.
    pub fn candidates(&self, model: &str, platform: &str) -> Vec<Candidate> {
        let now = Instant::now();
        let set = self.current();
        let mut eligible: Vec<&Arc<Channel>> = set
            .channels
            .iter()
            .filter(|c| c.config.enabled && c.config.serves(model) && c.config.serves_platform(platform))
            .collect();
        eligible.sort_by_key(|c| std::cmp::Reverse(c.config.priority));
        let mut ordered: Vec<&Arc<Channel>> = Vec::with_capacity(eligible.len());
        let mut i = 0;
        while i < eligible.len() {
            let tier = eligible[i].config.priority;
            let end = eligible[i..].iter().position(|c| c.config.priority != tier).map_or(eligible.len(), |p| i + p);
            let mut tier_channels: Vec<&Arc<Channel>> = eligible[i..end].to_vec();
            // Weighted random order without replacement.
            while !tier_channels.is_empty() {
                let total: u64 = tier_channels.iter().map(|c| c.config.weight as u64).sum();
                let mut pick = fastrand::u64(0..total.max(1));
                let idx = tier_channels
                    .iter()
                    .position(|c| {
                        let w = c.config.weight as u64;
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .unwrap_or(0);
                ordered.push(tier_channels.remove(idx));
            }
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
        ready.extend(cooling);
        ready.truncate(self.config.max_attempts.max(1));
        ready
    }

    /// Claim a candidate before calling it: a probe candidate may lose the race to another
    /// request, and is then skipped.
    pub fn claim(&self, cand: &Candidate) -> bool {
        !cand.probe || cand.channel.health.claim_probe(Instant::now())
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
mod tests {
    use super::*;
    use crate::providers::ProviderErrorKind;

    fn mock_channel(name: &str, priority: i32, weight: u32) -> ChannelConfig {
        toml::from_str(&format!(
            "name = \"{name}\"\nkind = \"mock\"\nmodels = [\"m\", \"m1\"]\npriority = {priority}\nweight = {weight}\n"
        ))
        .unwrap()
    }

    fn router(chs: &[ChannelConfig]) -> Router {
        let cfg =
            RoutingConfig { builtin_mock: Some(false), max_attempts: 10, cooldown_base_ms: 50, ..Default::default() };
        Router::new(&cfg, chs).unwrap()
    }

    fn names(c: &[Candidate]) -> Vec<String> {
        c.iter().map(|c| c.channel.config.name.clone()).collect()
    }

    #[test]
    fn tiers_come_first_and_weights_share_a_tier() {
        let r = router(&[mock_channel("low", 1, 1), mock_channel("a", 10, 3), mock_channel("b", 10, 1)]);
        let mut first_a = 0;
        for _ in 0..4000 {
            let c = names(&r.candidates("m1", "claude"));
            assert_eq!(c.len(), 3);
            assert_eq!(c[2], "low", "the lower tier is last");
            if c[0] == "a" {
                first_a += 1;
            }
        }
        // Expect 3/4 of 4000 = 3000; allow ±5 standard deviations (σ ≈ 27).
        assert!((2860..=3140).contains(&first_a), "a first {first_a} times of 4000");
        assert!(r.candidates("other", "claude").is_empty());
    }

    #[test]
    fn cooldown_then_half_open_probe_then_recovery() {
        let r = router(&[mock_channel("a", 10, 1), mock_channel("b", 5, 1)]);
        let c = r.candidates("m", "claude");
        let err = ProviderError::new(ProviderErrorKind::Status(503), "down");
        r.failure(&c[0], &err);
        assert_eq!(names(&r.candidates("m", "claude")), ["b", "a"], "cooling channel goes last");
        std::thread::sleep(Duration::from_millis(60));
        let c = r.candidates("m", "claude");
        assert_eq!(names(&c), ["a", "b"]);
        assert!(c[0].probe && r.claim(&c[0]));
        // A second request does not get the probe.
        let c2 = r.candidates("m", "claude");
        assert_eq!(names(&c2), ["b", "a"]);
        // The probe fails: cooldown doubles (100 ms).
        r.failure(&c[0], &err);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(names(&r.candidates("m", "claude"))[0], "b");
        std::thread::sleep(Duration::from_millis(60));
        let c = r.candidates("m", "claude");
        assert!(c[0].probe && r.claim(&c[0]));
        r.success(&c[0], Duration::from_millis(5), Duration::from_millis(9));
        let c = r.candidates("m", "claude");
        assert!(!c[0].probe && names(&c)[0] == "a");
        let snap = r.snapshot();
        assert_eq!((snap[0].successes, snap[0].failures, snap[0].state.as_str()), (1, 2, "ok"));
    }

    #[test]
    fn a_replaced_set_keeps_the_health_of_unchanged_channels_only() {
        let r = router(&[mock_channel("a", 10, 1), mock_channel("b", 5, 1)]);
        let held = r.candidates("m", "claude");
        r.failure(&held[0], &ProviderError::new(ProviderErrorKind::Status(503), "down"));
        let mut b2 = mock_channel("b", 5, 7);
        b2.revision = 2;
        assert!(r.replace(&[mock_channel("a", 10, 1), b2, mock_channel("c", 1, 1)]).is_empty());
        let snap: Vec<_> = r.snapshot().into_iter().map(|s| (s.channel, s.failures, s.weight)).collect();
        assert_eq!(snap, [("a".into(), 1, 1), ("b".into(), 0, 7), ("c".into(), 0, 1)]);
        // The request in flight still holds the old channel.
        assert!(Arc::ptr_eq(&held[0].channel, &r.channels()[0]) && held[1].channel.config.weight == 1);
    }

    #[test]
    fn retry_after_sets_the_cooldown() {
        let r = router(&[mock_channel("a", 1, 1)]);
        let c = r.candidates("m", "x");
        let mut err = ProviderError::new(ProviderErrorKind::Status(429), "slow down");
        err.retry_after = Some(Duration::from_secs(30));
        r.failure(&c[0], &err);
        let left = r.snapshot()[0].cooldown_left_ms;
        assert!((29_000..=30_000).contains(&left), "{left}");
    }

    #[test]
    fn platforms_filter_and_attempts_cap() {
        let mut only_gemini = mock_channel("g", 1, 1);
        only_gemini.platforms = vec!["gemini".into()];
        let r = router(&[only_gemini, mock_channel("all", 1, 1)]);
        assert_eq!(names(&r.candidates("m", "claude")), ["all"]);
        assert_eq!(r.candidates("m", "gemini").len(), 2);
        let cfg = RoutingConfig { builtin_mock: Some(true), max_attempts: 1, ..Default::default() };
        let r = Router::new(&cfg, &[mock_channel("a", 1, 1), mock_channel("b", 1, 1)]).unwrap();
        assert_eq!(r.candidates("m", "claude").len(), 1);
        assert_eq!(names(&r.candidates("mock-slow", "claude")), ["mock"]);
    }

    #[test]
    fn the_builtin_mock_serves_every_name_only_without_channels() {
        let real = mock_channel("real", 1, 1);
        let with = |builtin_mock: Option<bool>, chs: &[ChannelConfig]| {
            Router::new(&RoutingConfig { builtin_mock, ..Default::default() }, chs).unwrap()
        };
        // (builtin_mock, channels configured, scope, serves claude-sonnet-4-5, serves mock-slow)
        let cases = [
            (None, false, MockScope::AllNames, true, true),
            (Some(true), false, MockScope::AllNames, true, true),
            (Some(false), false, MockScope::Off, false, false),
            (None, true, MockScope::Off, false, false),
            (Some(true), true, MockScope::MockNames, false, true),
            (Some(false), true, MockScope::Off, false, false),
        ];
        for (setting, channels, scope, any_name, mock_name) in cases {
            let chs = if channels { vec![real.clone()] } else { Vec::new() };
            let r = with(setting, &chs);
            let what = format!("builtin_mock {setting:?}, channels {channels}");
            assert_eq!(r.mock_scope(), scope, "{what}");
            assert_eq!(RoutingConfig { builtin_mock: setting, ..Default::default() }.mock_scope(&chs), scope);
            let serves = |m: &str| r.candidates(m, "gemini").iter().any(|c| c.channel.config.name == "mock");
            assert_eq!(serves("claude-sonnet-4-5"), any_name, "{what}");
            assert_eq!(serves("mock-slow"), mock_name, "{what}");
            let listed = r.models();
            assert_eq!(listed.contains(&"gpt-5-codex".to_string()), any_name, "{what}: {listed:?}");
            let builtin = r.channels().iter().any(|c| c.config.name == "mock");
            assert_eq!(builtin, scope != MockScope::Off, "{what}");
        }
        let toml = |t: &str| toml::from_str::<RoutingConfig>(t).unwrap().builtin_mock;
        assert_eq!((toml(""), toml("builtin_mock = true")), (None, Some(true)));
    }
}
