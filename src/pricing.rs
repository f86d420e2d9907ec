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
    /// The most output tokens one answer of this model may bill: the cap the gateway sets
    /// in the upstream request when the client sets none (never above what the balance
    /// pays for). Unset: [`DEFAULT_MAX_OUTPUT_TOKENS`].
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
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

    /// The output cap for a request that sets none.
    pub fn output_limit(&self) -> u32 {
        self.max_output_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS)
    }

    /// The worst price of one input token: an upstream may bill any prompt token as plain
    /// input, a cache read or a cache write.
    pub fn worst_input(&self) -> f64 {
        self.input.max(self.cache_read).max(self.cache_write)
    }

    /// The most `input` prompt tokens and `output` answer tokens can cost, in USD.
    pub fn worst_cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.worst_input() + output as f64 * self.output) / 1_000_000.0
    }

    /// The most output tokens `usd` pays for after `input` prompt tokens at their worst
    /// price (`u32::MAX` for a model whose output is free).
    pub fn affordable_output(&self, usd: f64, input: u64) -> u32 {
        let left = usd - input as f64 * self.worst_input() / 1_000_000.0;
        if left <= 0.0 {
            return 0;
        }
        if self.output <= 0.0 {
            return u32::MAX;
        }
        (left * 1_000_000.0 / self.output).floor().min(u32::MAX as f64) as u32
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

/// The output cap of a model whose price entry sets no `max_output_tokens`.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 32_000;

/// Which built-in prices a table gets: they follow what the built-in mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuiltinPrices {
    /// `mock*` at the mock's demo prices (the mock serves only `mock*` names, or is off).
    #[default]
    MockNames,
    /// `mock*`, then `*`, at the mock's demo prices: only when the built-in mock serves every
    /// model name, which it does only when no channel is configured, so a real channel never
    /// gets a price nobody wrote.
    AllNames,
}

/// Built-in prices for the mock, so demos show non-zero, realistic costs.
fn builtin(which: BuiltinPrices) -> Vec<PriceEntry> {
    let demo = |pattern: &str| PriceEntry {
        pattern: pattern.into(),
        input: 3.0,
        output: 15.0,
        cache_read: 0.3,
        cache_write: 3.75,
        max_output_tokens: None,
    };
    match which {
        BuiltinPrices::MockNames => vec![demo("mock*")],
        BuiltinPrices::AllNames => vec![demo("mock*"), demo("*")],
    }
}

/// What happens to a request for a model the price table does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unpriced {
    /// Refused before any upstream call, naming the model and the setting to add (default):
    /// one missing line must not give away a provider's bill.
    #[default]
    Refuse,
    /// Served at no charge (the operator opts in).
    Free,
}

/// The price table: configured entries first, then the built-ins.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Entries tried in order.
    entries: Vec<PriceEntry>,
}

impl PriceTable {
    /// Configured entries, then the built-ins `which` names (see [`BuiltinPrices`]).
    pub fn new(configured: &[PriceEntry], which: BuiltinPrices) -> Self {
        let mut entries = configured.to_vec();
        entries.extend(builtin(which));
        Self { entries }
    }

    /// Every entry, in the order they are tried.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The entry for a model, if any.
    pub fn lookup(&self, model: &str) -> Option<&PriceEntry> {
        self.entries.iter().find(|e| wildcard::matches(&e.pattern, model))
    }

    /// Price of `usage` on `model` in USD (0 for an unpriced model).
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        self.lookup(model).map_or(0.0, |e| e.cost(usage))
    }

    /// Whether some entry prices every model a channel pattern (`deepseek-*`) can name:
    /// `Some(true)` when one entry covers the whole pattern, `Some(false)` when entries
    /// cover only some of its models, `None` when no entry matches any.
    pub fn covers(&self, channel_pattern: &str) -> Option<bool> {
        // An entry that matches the pattern's own text matches every name it can stand for.
        if self.lookup(channel_pattern).is_some() {
            return Some(true);
        }
        let partly = self.entries.iter().any(|e| wildcard::matches(channel_pattern, &e.pattern));
        partly.then_some(false)
    }

    /// The coverage of a channel serving `patterns` (empty: every model), and the patterns
    /// not wholly priced.
    pub fn coverage(&self, patterns: &[String]) -> (Coverage, Vec<String>) {
        let all = [String::from("*")];
        let patterns = if patterns.is_empty() { &all[..] } else { patterns };
        let mut missing = Vec::new();
        let mut any = false;
        for p in patterns {
            match self.covers(p) {
                Some(true) => any = true,
                Some(false) => {
                    any = true;
                    missing.push(p.clone());
                }
                None => missing.push(p.clone()),
            }
        }
        let c = if missing.is_empty() {
            Coverage::All
        } else if any {
            Coverage::Some
        } else {
            Coverage::None
        };
        (c, missing)
    }
}

/// How much of a channel's models the price table covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every model the channel serves has a price.
    All,
    /// Some do, some do not (requests for the others are refused, or free).
    Some,
    /// None has a price.
    None,
}

impl Coverage {
    /// How `ailurus channels` shows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Some => "partial",
            Self::None => "none",
        }
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
        let table = PriceTable::new(
            &[PriceEntry {
                pattern: "gpt-4o*".into(),
                input: 2.5,
                output: 10.0,
                cache_read: 1.25,
                cache_write: 0.0,
                max_output_tokens: None,
            }],
            BuiltinPrices::MockNames,
        );
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

    #[test]
    fn worst_cases_and_what_a_balance_affords() {
        let e = PriceEntry {
            pattern: "m".into(),
            input: 1.0,
            output: 5.0,
            cache_read: 0.1,
            cache_write: 1.25,
            max_output_tokens: Some(100),
        };
        assert_eq!(e.worst_input(), 1.25);
        assert!((e.worst_cost(1_000_000, 1_000_000) - 6.25).abs() < 1e-12);
        // $0.01 after 2,000 prompt tokens at $1.25/M: $0.0075 left, 1,500 output tokens.
        assert_eq!(e.affordable_output(0.01, 2_000), 1_500);
        assert_eq!(e.affordable_output(0.001, 2_000), 0);
        assert_eq!(e.output_limit(), 100);
        let free_out = PriceEntry { output: 0.0, ..e.clone() };
        assert_eq!(free_out.affordable_output(1.0, 10), u32::MAX);
    }

    #[test]
    fn coverage_of_channel_patterns() {
        let entry = |p: &str| PriceEntry {
            pattern: p.into(),
            input: 1.0,
            output: 1.0,
            cache_read: 0.0,
            cache_write: 0.0,
            max_output_tokens: None,
        };
        let table = PriceTable::new(&[entry("deepseek-*"), entry("gpt-4o")], BuiltinPrices::MockNames);
        assert_eq!(table.covers("deepseek-chat"), Some(true));
        assert_eq!(table.covers("deepseek-*"), Some(true));
        assert_eq!(table.covers("gpt-*"), Some(false));
        assert_eq!(table.covers("claude-*"), None);
        assert_eq!(table.covers("mock-fast"), Some(true));
        let pats = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(table.coverage(&pats(&["deepseek-*", "mock"])), (Coverage::All, vec![]));
        assert_eq!(table.coverage(&pats(&["deepseek-*", "claude-*"])), (Coverage::Some, pats(&["claude-*"])));
        assert_eq!(table.coverage(&pats(&["claude-*"])), (Coverage::None, pats(&["claude-*"])));
        assert_eq!(table.coverage(&[]).0, Coverage::Some);
    }

    #[test]
    fn every_name_is_priced_only_when_the_mock_serves_every_name() {
        let usage = Usage { input_tokens: 1000, output_tokens: 100, ..Default::default() };
        let mock_only = PriceTable::new(&[], BuiltinPrices::MockNames);
        let every = PriceTable::new(&[], BuiltinPrices::AllNames);
        for model in ["claude-sonnet-4-5", "gpt-5-codex", "gemini-2.5-pro"] {
            assert!(mock_only.lookup(model).is_none(), "{model} has no silent price");
            assert!((every.cost(model, &usage) - 0.0045).abs() < 1e-12, "{model} at the mock's demo price");
        }
        assert_eq!(every.coverage(&["*".to_string()]), (Coverage::All, vec![]));
        assert_eq!(mock_only.coverage(&["*".to_string()]).0, Coverage::Some);
        // A configured entry still comes first.
        let entry = PriceEntry { pattern: "gpt-5*".into(), input: 1.0, output: 1.0, ..every.entries[0].clone() };
        let table = PriceTable::new(&[entry], BuiltinPrices::AllNames);
        assert_eq!(table.lookup("gpt-5-codex").map(|e| e.pattern.as_str()), Some("gpt-5*"));
    }
}
