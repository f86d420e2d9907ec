//! Typed configuration. Sources, later ones winning: built-in defaults, a TOML file
//! (`--config`, or `AILURUS_CONFIG`), then `AILURUS__SECTION__FIELD` environment variables.
//! Unknown keys are errors; semantic checks live in [`Config::validate`].

use crate::channel::ChannelConfig;
use crate::pricing::PriceEntry;
use crate::router::RoutingConfig;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The whole configuration of an Ailurus process.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to reach NATS.
    #[serde(default)]
    pub nats: NatsConfig,
    /// Worker behaviour.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Prices per model; the built-in table covers the mock models.
    #[serde(default)]
    pub pricing: PricingConfig,
    /// Authentication and quota.
    #[serde(default)]
    pub auth: crate::quota::AuthConfig,
    /// The HTTP bridge.
    #[serde(default)]
    pub bridge: crate::bridge::BridgeConfig,
    /// How channels are chosen.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Upstream channels (`[[channels]]`). The built-in mock serves `mock*` besides.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// How long the audit trail (`LLM_REQUESTS`: requests and answers) is kept.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The live configuration (channels, prices and group ratios in KV).
    #[serde(default)]
    pub live: LiveConfig,
    /// OpenTelemetry export (GenAI traces and metrics over OTLP/HTTP); off by default.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
}

/// Retention of the audit trail, applied to `LLM_REQUESTS` by `ailurus up` and `ailurus
/// streams apply` (the ledger, `LLM_USAGE`, is kept forever whatever this says).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Oldest request kept, as an operator duration (`30d`, `12h`).
    #[serde(default = "AuditConfig::default_retention")]
    pub retention: String,
    /// Most bytes kept; the oldest go first. JetStream reserves this much of the server's
    /// file store when the stream is created, so it must fit `max_file_store`.
    #[serde(default = "AuditConfig::default_max_bytes")]
    pub max_bytes: u64,
}

impl AuditConfig {
    fn default_retention() -> String {
        "30d".to_string()
    }

    const fn default_max_bytes() -> u64 {
        2 << 30
    }

    /// The retention in nanoseconds (JetStream's unit), or what is wrong with it.
    pub fn retention_ns(&self) -> Result<i64, String> {
        let secs = crate::clock::parse_duration(&self.retention).map_err(|e| format!("audit.retention: {e}"))?;
        if secs <= 0 {
            return Err("audit.retention must be longer than 0".into());
        }
        secs.checked_mul(1_000_000_000).ok_or_else(|| "audit.retention is too long".to_string())
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention: Self::default_retention(), max_bytes: Self::default_max_bytes() }
    }
}

/// The live configuration: the `CHANNELS`, `PRICES` and `GROUPS` buckets, which win over the
/// file's channels, prices and group ratios (see `src/live/mod.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Follow the buckets (when they exist). `false`: this worker serves the file alone.
    #[serde(default = "LiveConfig::default_follow")]
    pub follow: bool,
    /// The file holding the 64-hex-digit key that seals the API keys stored in `CHANNELS`.
    /// Unset: `AILURUS_SECRET_KEY`, else the file `AILURUS_SECRET_KEY_FILE` names, else
    /// `<AILURUS_DATA or .ailurus-data>/secret-key` (which `ailurus up` creates, mode 0600).
    #[serde(default)]
    pub secret_key_file: Option<std::path::PathBuf>,
}

impl LiveConfig {
    const fn default_follow() -> bool {
        true
    }

    /// Semantic checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.secret_key_file {
            Some(p) if p.as_os_str().is_empty() => Err(ConfigError("live.secret_key_file must not be empty".into())),
            _ => Ok(()),
        }
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self { follow: Self::default_follow(), secret_key_file: None }
    }
}

/// How to reach NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma separated (`nats://127.0.0.1:4222`). `NATS_URL` overrides it.
    #[serde(default = "NatsConfig::default_url")]
    pub url: String,
}

impl NatsConfig {
    fn default_url() -> String {
        "nats://127.0.0.1:4222".to_string()
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self { url: Self::default_url() }
    }
}

/// Worker behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Queue group shared by all workers, so each request goes to exactly one of them.
    #[serde(default = "WorkerConfig::default_queue_group")]
    pub queue_group: String,
    /// Requests handled at once by this worker.
    #[serde(default = "WorkerConfig::default_concurrency")]
    pub concurrency: usize,
    /// Requests allowed to wait for a free slot; beyond it a request gets a fast 503.
    #[serde(default = "WorkerConfig::default_max_queued")]
    pub max_queued: usize,
    /// Longest wait for a free slot before answering 503.
    #[serde(default = "WorkerConfig::default_queue_timeout_ms")]
    pub queue_timeout_ms: u64,
    /// Interval between heartbeats while a request is silent.
    #[serde(default = "WorkerConfig::default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Longest time one request may take, end to end.
    #[serde(default = "WorkerConfig::default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Copy each final reply sent to a private inbox onto `llm.response.<trace_id>`, so
    /// `LLM_REQUESTS` holds every outcome for `ailurus audit replay`.
    #[serde(default = "WorkerConfig::default_audit_copy")]
    pub audit_copy: bool,
    /// Liveness period: the worker refreshes its key in the `WORKERS` bucket three times
    /// per period, and the key expires a period after the last refresh. Other workers
    /// complete the quota holds of a worker whose key stayed absent for a whole period.
    #[serde(default = "WorkerConfig::default_liveness_ms")]
    pub liveness_ms: u64,
    /// Interval between two scans for orphaned quota holds.
    #[serde(default = "WorkerConfig::default_reaper_ms")]
    pub reaper_ms: u64,
    /// How long a user's presence record (`user.<id>.presence`) lives without a refresh, in
    /// milliseconds, rounded up to whole seconds (the unit of a message TTL). A user's
    /// requests refresh it at most every third of this, and at most every 30 s, so an active
    /// user stays online and one who stops goes offline by itself. At least 1000.
    #[serde(default = "WorkerConfig::default_presence_ttl_ms")]
    pub presence_ttl_ms: u64,
    /// Serve Prometheus metrics (`GET /metrics`: requests, latency, `gateway_overhead_seconds`)
    /// on this address, e.g. `127.0.0.1:9464`. Off when unset.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Quota lease size, in requests: when a user's request finds no room in this worker's
    /// leases, the worker takes a lease of this many times the request's worst case (one
    /// JetStream step) and admits the user's next requests from it in memory. 1 takes a lease
    /// per request (a hold each, the slowest and tightest).
    #[serde(default = "WorkerConfig::default_lease_requests")]
    pub lease_requests: u32,
    /// A lease with no request in flight and none drawn for this long goes back.
    #[serde(default = "WorkerConfig::default_lease_idle_ms")]
    pub lease_idle_ms: u64,
    /// No request draws on a lease older than this; it goes back once its requests settle.
    #[serde(default = "WorkerConfig::default_lease_max_age_ms")]
    pub lease_max_age_ms: u64,
    /// How long a billed request's ledger record may wait unconfirmed (the quota store
    /// unreachable, e.g. during a JetStream leader election) before this worker stops
    /// admitting that user's requests (503) until the records are confirmed.
    #[serde(default = "WorkerConfig::default_billing_stall_ms")]
    pub billing_stall_ms: u64,
    /// How long the ledger writer gathers usage records before publishing them together
    /// (pipelined, one acknowledgement wait for all). Records never delay a reply: they are
    /// written after it. A JetStream write alone costs nats-server about three times the CPU of
    /// one in a pipelined batch (`ailurus-bench --only jetstream`), so a few milliseconds here
    /// take most of the ledger's cost off the server; a record is confirmed (balance event,
    /// statistics) this much later. 0 publishes
    /// each record as soon as the writer is free.
    #[serde(default = "WorkerConfig::default_ledger_linger_ms")]
    pub ledger_linger_ms: u64,
    /// How often the usage statistics (`USAGE_STATS`: per-hour and per-day rollups of the
    /// ledger, read by `/api/data` and `ailurus stats`) take this worker's confirmed
    /// records; 0 keeps none (rebuild them later with `ailurus stats rebuild`).
    #[serde(default = "WorkerConfig::default_stats_flush_ms")]
    pub stats_flush_ms: u64,
    /// What this worker answers: `all` (LLM requests and the management API, the default),
    /// `requests` (LLM requests only) or `api` (the management API only). The secure profile
    /// runs its request workers as `requests`, and one `api` worker as the NATS user allowed
    /// to write users, tokens, quota, codes and the live configuration (deploy/nats/secure).
    #[serde(default)]
    pub serve: Serve,
}

/// What a worker answers (`[worker] serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Serve {
    /// LLM requests and the management API.
    #[default]
    All,
    /// LLM requests (`llm.request.*`, `llm.cancel.*`) only.
    Requests,
    /// The management API (`ailurus.api.*`) only.
    Api,
}

impl Serve {
    /// Whether LLM requests are answered.
    pub const fn requests(self) -> bool {
        matches!(self, Serve::All | Serve::Requests)
    }

    /// Whether the management API is answered.
    pub const fn api(self) -> bool {
        matches!(self, Serve::All | Serve::Api)
    }
}

impl WorkerConfig {
    const fn default_lease_requests() -> u32 {
        8
    }
    const fn default_lease_idle_ms() -> u64 {
        500
    }
    const fn default_lease_max_age_ms() -> u64 {
        10_000
    }
    const fn default_billing_stall_ms() -> u64 {
        15_000
    }
    const fn default_ledger_linger_ms() -> u64 {
        10
    }
    const fn default_stats_flush_ms() -> u64 {
        1_000
    }
    fn default_queue_group() -> String {
        "ailurus-workers".to_string()
    }
    const fn default_concurrency() -> usize {
        1024
    }
    const fn default_max_queued() -> usize {
        1024
    }
    const fn default_queue_timeout_ms() -> u64 {
        5_000
    }
    const fn default_heartbeat_ms() -> u64 {
        1_000
    }
    const fn default_request_timeout_ms() -> u64 {
        600_000
    }
    const fn default_audit_copy() -> bool {
        true
    }
    const fn default_liveness_ms() -> u64 {
        6_000
    }
    const fn default_reaper_ms() -> u64 {
        5_000
    }
    const fn default_presence_ttl_ms() -> u64 {
        90_000
    }

    /// [`Self::heartbeat_ms`] as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queue_group: Self::default_queue_group(),
            concurrency: Self::default_concurrency(),
            max_queued: Self::default_max_queued(),
            queue_timeout_ms: Self::default_queue_timeout_ms(),
            heartbeat_ms: Self::default_heartbeat_ms(),
            request_timeout_ms: Self::default_request_timeout_ms(),
            audit_copy: Self::default_audit_copy(),
            liveness_ms: Self::default_liveness_ms(),
            reaper_ms: Self::default_reaper_ms(),
            presence_ttl_ms: Self::default_presence_ttl_ms(),
            metrics_listen: None,
            lease_requests: Self::default_lease_requests(),
            lease_idle_ms: Self::default_lease_idle_ms(),
            lease_max_age_ms: Self::default_lease_max_age_ms(),
            billing_stall_ms: Self::default_billing_stall_ms(),
            ledger_linger_ms: Self::default_ledger_linger_ms(),
            stats_flush_ms: Self::default_stats_flush_ms(),
            serve: Serve::All,
        }
    }
}

/// Prices per model.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// Entries tried in order; the first whose pattern matches the model wins, then the
    /// built-in defaults.
    #[serde(default)]
    pub models: Vec<PriceEntry>,
    /// A model no entry prices: `refuse` (the default: a clear error before any upstream
    /// call) or `free` (served at no charge). Auth mode `open` bills nothing either way.
    #[serde(default)]
    pub unpriced: crate::pricing::Unpriced,
    /// Price multiplier per user group (NEW-API group ratios); a group not listed pays 1.0.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, f64>,
}

/// A configuration problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Load from an optional file plus `AILURUS__…` environment overrides, then validate.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("AILURUS").prefix_separator("__").separator("__").try_parsing(true),
        );
        let raw = builder.build().map_err(|e| ConfigError(format!("config: {e}")))?;
        let nats_url_set = raw.get_string("nats.url").is_ok();
        let mut cfg: Config = raw.try_deserialize().map_err(|e| ConfigError(format!("config: {e}")))?;
        let env = |k: &str| std::env::var(k).ok();
        cfg.apply_seed(&env, crate::seed_config::home_dir().as_deref(), nats_url_set)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Fill in what the seed's (CodeSwitch's) settings give and nothing explicit sets (see
    /// `seed_config`): NEW-API channels when there are no `[[channels]]`, the sync NATS URL
    /// when neither `NATS_URL` nor `nats.url` (`nats_url_set`) is set.
    pub fn apply_seed(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
        nats_url_set: bool,
    ) -> Result<(), ConfigError> {
        let want_nats = !nats_url_set && env("NATS_URL").is_none_or(|v| v.trim().is_empty());
        let seed = crate::seed_config::seed(env, home, self.channels.is_empty(), want_nats).map_err(ConfigError)?;
        if !seed.channels.is_empty() {
            for c in &seed.channels {
                tracing::info!(channel = %c.name, kind = %c.kind, base_url = %c.base_url, origin = c.origin.as_str(), "NEW-API channel from the CodeSwitch settings");
            }
            self.channels = seed.channels;
        }
        if let Some(url) = seed.nats_url {
            tracing::info!(url = %crate::bus::redact_urls(&url), "NATS URL from ~/.code-switch/sync-settings.json");
            self.nats.url = url;
        }
        Ok(())
    }

    /// Parse a TOML text (tests, examples), then validate.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Semantic checks; each message names the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.audit.retention_ns().map_err(ConfigError)?;
        if self.audit.max_bytes < 1 << 20 {
            return Err(ConfigError("audit.max_bytes must be at least 1 MiB (1048576)".into()));
        }
        let w = &self.worker;
        if w.concurrency == 0 {
            return Err(ConfigError("worker.concurrency must be at least 1".into()));
        }
        if w.heartbeat_ms == 0 || w.heartbeat_ms > 60_000 {
            return Err(ConfigError("worker.heartbeat_ms must be between 1 and 60000".into()));
        }
        if w.queue_group.is_empty() || w.queue_group.contains(|c: char| c.is_whitespace() || c == '.') {
            return Err(ConfigError("worker.queue_group must be one token without spaces or dots".into()));
        }
        if w.liveness_ms < 1_000 {
            return Err(ConfigError("worker.liveness_ms must be at least 1000 (key TTLs are whole seconds)".into()));
        }
        if w.presence_ttl_ms < 1_000 {
            return Err(ConfigError(
                "worker.presence_ttl_ms must be at least 1000 (message TTLs are whole seconds)".into(),
            ));
        }
        if w.lease_requests == 0 {
            return Err(ConfigError("worker.lease_requests must be at least 1".into()));
        }
        if w.lease_max_age_ms == 0 || w.billing_stall_ms == 0 {
            return Err(ConfigError("worker.lease_max_age_ms and worker.billing_stall_ms must be positive".into()));
        }
        if w.reaper_ms == 0 {
            return Err(ConfigError("worker.reaper_ms must be positive".into()));
        }
        if w.request_timeout_ms == 0 {
            return Err(ConfigError("worker.request_timeout_ms must be positive".into()));
        }
        if self.nats.url.trim().is_empty() {
            return Err(ConfigError("nats.url must not be empty".into()));
        }
        self.routing.validate().map_err(ConfigError)?;
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            c.validate().map_err(|e| ConfigError(format!("channels[{i}] ({}): {e}", c.name)))?;
            if !names.insert(c.name.as_str()) {
                return Err(ConfigError(format!("channels[{i}]: duplicate name {:?}", c.name)));
            }
        }
        self.live.validate()?;
        self.telemetry.validate().map_err(ConfigError)?;
        for (g, r) in &self.pricing.groups {
            if !r.is_finite() || *r < 0.0 {
                return Err(ConfigError(format!("pricing.groups.{g} must be a non-negative number")));
            }
        }
        for (i, p) in self.pricing.models.iter().enumerate() {
            p.validate().map_err(|e| ConfigError(format!("pricing.models[{i}].{e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        let cfg = Config::from_toml("").unwrap();
        assert_eq!(cfg.worker.heartbeat_ms, 1000);
        assert_eq!(cfg.worker.presence_ttl_ms, 90_000);
    }

    #[test]
    fn seed_settings_fill_only_what_is_not_explicit() {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(home.path().join(".code-switch")).expect("mkdir");
        std::fs::write(
            home.path().join(crate::seed_config::SYNC_JSON),
            r#"{"enabled":true,"url":"nats://sync.example:4222"}"#,
        )
        .expect("write");
        let explicit = "[[channels]]\nname = \"mine\"\nkind = \"mock\"\n";
        let env_set = |k: &str| match k {
            "NEW_API_URL" => Some("https://newapi.example".to_string()),
            "NEW_API_TOKEN" => Some("sk-t".to_string()),
            _ => None,
        };
        let nats_env = |k: &str| (k == "NATS_URL").then(|| "nats://env:4222".to_string());
        // (config text, env, nats.url set in config, channel names, NATS URL)
        type Env = fn(&str) -> Option<String>;
        let cases: [(&str, Env, bool, &[&str], &str); 4] = [
            ("", env_set, false, &["newapi-claude", "newapi"], "nats://sync.example:4222"),
            (explicit, env_set, false, &["mine"], "nats://sync.example:4222"),
            ("[nats]\nurl = \"nats://file:4222\"\n", |_| None, true, &[], "nats://file:4222"),
            ("", nats_env, false, &[], "nats://127.0.0.1:4222"),
        ];
        for (text, env, nats_set, names, url) in cases {
            let mut cfg = Config::from_toml(text).expect("config");
            cfg.apply_seed(&env, Some(home.path()), nats_set).expect("seed");
            cfg.validate().expect("valid");
            assert_eq!(cfg.channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), names, "{text}");
            assert_eq!(cfg.nats.url, url, "{text}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let err = Config::from_toml("[worker]\nconcurency = 3\n").unwrap_err();
        assert!(err.0.contains("concurency"), "{err}");
        let err = Config::from_toml("[worker]\nconcurrency = 0\n").unwrap_err();
        assert!(err.0.contains("worker.concurrency"), "{err}");
        let err = Config::from_toml("[worker]\npresence_ttl_ms = 500\n").unwrap_err();
        assert!(err.0.contains("worker.presence_ttl_ms"), "{err}");
        let err = Config::from_toml("[[pricing.models]]\npattern = \"x\"\ninput = -1.0\n").unwrap_err();
        assert!(err.0.contains("pricing.models[0].input"), "{err}");
    }
}
