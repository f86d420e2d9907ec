//! Channel configuration: one upstream endpoint with its keys, models, priority and timeouts.
//! Secrets come from environment variables (`api_key_env`) and are never written back,
//! logged or shown: [`Secret`] prints as `***`.

use crate::providers::kind::ProviderKind;
use crate::wildcard;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Timeouts of one channel, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP + TLS connect.
    #[serde(default = "Timeouts::default_connect_ms")]
    pub connect_ms: u64,
    /// From sending the request to the first byte of the answer (headers and first event).
    #[serde(default = "Timeouts::default_first_byte_ms")]
    pub first_byte_ms: u64,
    /// Longest gap between two stream events.
    #[serde(default = "Timeouts::default_idle_ms")]
    pub idle_ms: u64,
    /// Whole attempt, end to end: the request, the first byte and every stream event or body
    /// byte after it. Past the first byte a stream cut by it ends with an in-stream error in
    /// the client's format (no failover), billed for what was delivered.
    #[serde(default = "Timeouts::default_total_ms")]
    pub total_ms: u64,
}

impl Timeouts {
    const fn default_connect_ms() -> u64 {
        5_000
    }
    const fn default_first_byte_ms() -> u64 {
        120_000
    }
    const fn default_idle_ms() -> u64 {
        120_000
    }
    const fn default_total_ms() -> u64 {
        900_000
    }
    /// Connect timeout.
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    /// First-byte timeout.
    pub fn first_byte(&self) -> Duration {
        Duration::from_millis(self.first_byte_ms)
    }
    /// Idle timeout.
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }
    /// Total timeout.
    pub fn total(&self) -> Duration {
        Duration::from_millis(self.total_ms)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: Self::default_connect_ms(),
            first_byte_ms: Self::default_first_byte_ms(),
            idle_ms: Self::default_idle_ms(),
            total_ms: Self::default_total_ms(),
        }
    }
}

/// Where a channel came from, shown by `ailurus channels`. Not settable in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelOrigin {
    /// `[[channels]]` of the config file or `AILURUS__…` variables.
    #[default]
    Config,
    /// `NEW_API_URL` / `NEW_API_TOKEN` in the environment (CodeSwitch's NEW-API setting).
    NewApiEnv,
    /// `~/.code-switch/app.json` (`new_api_enabled`, `new_api_url`, `new_api_token`).
    CodeSwitchApp,
    /// The built-in mock.
    BuiltinMock,
    /// The `CHANNELS` KV bucket (`ailurus channels add`, `/api/channel/`), live on every worker.
    Live,
    /// The `CHANNELS` bucket's record of a channel the config file also defines: the
    /// bucket's wins (`ailurus channels edit` of a config channel).
    LiveOverConfig,
}

impl ChannelOrigin {
    /// The label `ailurus channels` shows.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::NewApiEnv => "NEW_API_URL env",
            Self::CodeSwitchApp => "code-switch app.json",
            Self::BuiltinMock => "built-in mock",
            Self::Live => "kv",
            Self::LiveOverConfig => "kv (over config)",
        }
    }
}

/// One upstream channel, as written in the config file (and, serialized, in a `CHANNELS`
/// record: the fields skipped here never are).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique name, shown in logs, metrics, the ledger and `ailurus channels`.
    pub name: String,
    /// Upstream API: `openai`, `openai_responses`, `anthropic`, `gemini` or `mock`.
    pub kind: String,
    /// API root: `https://api.openai.com/v1`, `https://api.anthropic.com`,
    /// `https://generativelanguage.googleapis.com`, a NEW-API host's root + `/v1` for `openai`.
    #[serde(default)]
    pub base_url: String,
    /// Names of environment variables holding API keys, used round robin.
    #[serde(default)]
    pub api_key_env: Vec<String>,
    /// Model patterns served (`*` and `?` wildcards). Empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Requested model (pattern allowed) → upstream model name.
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    /// Higher tiers are tried first.
    #[serde(default)]
    pub priority: i32,
    /// Share of traffic inside a tier.
    #[serde(default = "ChannelConfig::default_weight")]
    pub weight: u32,
    /// Platforms served (`claude`, `codex`, `gemini`, `openai`). Empty: all.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Upstream statuses that count as failures (fail over, cool down) besides 429 and 5xx.
    #[serde(default)]
    pub failure_statuses: Vec<u16>,
    /// Extra headers sent upstream (not secrets; use `api_key_env` for keys).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Whether the channel is used.
    #[serde(default = "ChannelConfig::default_enabled")]
    pub enabled: bool,
    /// Where it came from (never read from the file).
    #[serde(skip)]
    pub origin: ChannelOrigin,
    /// A key handed over directly rather than by an environment variable's name (the token of
    /// `~/.code-switch/app.json`); used before the `api_key_env` ones. Never read from the file.
    #[serde(skip)]
    pub key: Option<Secret>,
    /// The `CHANNELS` bucket revision this channel came from (0: not from the bucket).
    #[serde(skip)]
    pub revision: u64,
}

impl ChannelConfig {
    const fn default_weight() -> u32 {
        1
    }
    const fn default_enabled() -> bool {
        true
    }

    /// The kind, parsed.
    pub fn provider_kind(&self) -> Result<ProviderKind, String> {
        ProviderKind::parse(&self.kind).ok_or_else(|| {
            format!("kind {:?} is not one of openai, openai_responses, anthropic, gemini, mock", self.kind)
        })
    }

    /// Whether this channel serves `model`.
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| wildcard::matches(p, model))
    }

    /// Whether this channel serves `platform`.
    pub fn serves_platform(&self, platform: &str) -> bool {
        self.platforms.is_empty() || self.platforms.iter().any(|p| p == platform)
    }

    /// The upstream model name for a requested model: an exact mapping first, then the
    /// first matching pattern, else unchanged.
    pub fn map_model(&self, model: &str) -> String {
        if let Some(m) = self.model_map.get(model) {
            return m.clone();
        }
        self.model_map
            .iter()
            .find(|(pattern, _)| pattern.contains(['*', '?']) && wildcard::matches(pattern, model))
            .map_or_else(|| model.to_string(), |(_, m)| m.clone())
    }

    /// The keys: the one handed over directly, if any, then those read from the environment.
    pub fn keys(&self) -> Result<Vec<Secret>, String> {
        let from_env = self.api_key_env.iter().map(|var| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| Secret::new(v.trim()))
                .ok_or_else(|| format!("api_key_env: environment variable {var} is not set"))
        });
        self.key.iter().cloned().map(Ok).chain(from_env).collect()
    }

    /// Semantic checks; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(|c: char| c.is_whitespace() || c == '.') {
            return Err("name must be non-empty, without spaces or dots".into());
        }
        let kind = self.provider_kind()?;
        if kind != ProviderKind::Mock {
            if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
                return Err(format!("base_url {:?} must start with http:// or https://", self.base_url));
            }
            if self.api_key_env.is_empty() && self.key.is_none() {
                return Err("api_key_env must name at least one environment variable (or give a key)".into());
            }
        }
        if self.weight == 0 {
            return Err("weight must be at least 1".into());
        }
        for p in &self.platforms {
            if p.parse::<crate::protocol::Platform>().is_err() {
                return Err(format!("platforms: {p:?} is not one of claude, codex, gemini, openai"));
            }
        }
        for s in &self.failure_statuses {
            if !(100..600).contains(s) {
                return Err(format!("failure_statuses: {s} is not an HTTP status"));
            }
        }
        let t = &self.timeouts;
        if t.connect_ms == 0 || t.first_byte_ms == 0 || t.idle_ms == 0 || t.total_ms == 0 {
            return Err("timeouts must all be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(toml_text: &str) -> ChannelConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn model_mapping_and_wildcards() {
        let c = channel(
            r#"name = "deepseek"
kind = "openai"
base_url = "https://api.deepseek.com/v1"
api_key_env = ["DEEPSEEK_API_KEY"]
models = ["deepseek-*", "claude-*"]
[model_map]
"claude-*" = "deepseek-chat"
"deepseek-reasoner" = "deepseek-reasoner"
"#,
        );
        assert!(c.serves("claude-sonnet-4-5") && c.serves("deepseek-chat") && !c.serves("gpt-4o"));
        assert_eq!(c.map_model("claude-sonnet-4-5"), "deepseek-chat");
        assert_eq!(c.map_model("deepseek-reasoner"), "deepseek-reasoner");
        assert_eq!(c.map_model("deepseek-coder"), "deepseek-coder");
        c.validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let c = channel("name = \"x\"\nkind = \"openia\"\n");
        assert!(c.validate().unwrap_err().contains("kind \"openia\""));
        let c = channel("name = \"x\"\nkind = \"openai\"\nbase_url = \"ftp://x\"\napi_key_env = [\"K\"]\n");
        assert!(c.validate().unwrap_err().contains("base_url"));
        let c = channel("name = \"x\"\nkind = \"openai\"\nbase_url = \"http://x\"\n");
        assert!(c.validate().unwrap_err().contains("api_key_env"));
        assert!(toml::from_str::<ChannelConfig>("name = \"x\"\nkind = \"mock\"\nwieght = 2\n").is_err());
        assert_eq!(format!("{:?}", Secret::new("sk-live-123")), "Secret(***)");
    }
}
