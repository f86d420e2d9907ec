//! Prices per model, in USD per million tokens, and the NEW-API quota unit
//! (500,000 quota = 1 USD).

use crate::protocol::canonical::Usage;
use crate::wildcard;
use serde::Deserialize;

/// NEW-API's unit: this many quota units buy one US dollar.
pub const QUOTA_PER_USD: f64 = 500_000.0;

/// One row of the price table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Model pattern (`*` and `?` wildcards).
    pub pattern: String,
    /// USD per 1M uncached input tokens.
    #[serde(default)]
    pub input: f64,
    /// USD per 1M output tokens (reasoning included).
    #[serde(default)]
    pub output: f64,
    /// USD per 1M tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read: f64,
    /// USD per 1M tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write: f64,
}

impl PriceEntry {
    /// Checks one entry; the error starts with the field name.
    pub fn validate(&self) -> Result<(), String> {
        if self.pattern.is_empty() {
            return Err("pattern must not be empty".into());
        }
        for (name, v) in [
            ("input", self.input),
            ("output", self.output),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} must be a non-negative number, got {v}"));
            }
        }
        Ok(())
    }

    /// Price of `usage` in USD.
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input
            + usage.output_tokens as f64 * self.output
            + usage.cache_read_tokens as f64 * self.cache_read
            + usage.cache_write_tokens as f64 * self.cache_write)
            / 1_000_000.0
    }
}

/// Built-in prices for the mock models, so demos show non-zero, realistic costs.
fn builtin() -> Vec<PriceEntry> {
    vec![PriceEntry { pattern: "mock*".into(), input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 }]
}

/// The price table: configured entries first, then the built-ins.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Entries tried in order.
    entries: Vec<PriceEntry>,
}

impl PriceTable {
    /// Configured entries, then built-ins.
    pub fn new(configured: &[PriceEntry]) -> Self {
        let mut entries = configured.to_vec();
        entries.extend(builtin());
        Self { entries }
    }

    /// The entry for a model, if any.
    pub fn lookup(&self, model: &str) -> Option<&PriceEntry> {
        self.entries.iter().find(|e| wildcard::matches(&e.pattern, model))
    }

    /// Price of `usage` on `model` in USD (0 for an unpriced model).
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.lookup(model).map_or(0.0, |e| e.cost(usage))
    }
}

/// USD to quota units, rounded up so the gateway never under-charges.
pub fn usd_to_quota(usd: f64) -> i64 {
    (usd * QUOTA_PER_USD).ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_units() {
        let table = PriceTable::new(&[PriceEntry {
            pattern: "gpt-4o*".into(),
            input: 2.5,
            output: 10.0,
            cache_read: 1.25,
            cache_write: 0.0,
        }]);
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            cache_read_tokens: 2_000_000,
            ..Default::default()
        };
        assert!((table.cost("gpt-4o-mini", &usage) - (2.5 + 5.0 + 2.5)).abs() < 1e-9);
        assert!(
            (table.cost("mock", &Usage { input_tokens: 1000, output_tokens: 100, ..Default::default() }) - 0.0045)
                .abs()
                < 1e-12
        );
        assert_eq!(table.cost("unknown", &usage), 0.0);
        assert_eq!(usd_to_quota(1.0), 500_000);
        assert_eq!(usd_to_quota(0.0000001), 1);
    }
}
