//! `ailurus channels`: the health of every channel on every live worker, read from the
//! `CHANNEL_HEALTH` KV bucket, with where each channel came from (its `origin`).

use crate::config::Config;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// One channel summed over workers.
#[derive(Default)]
struct Row {
    /// Upstream kind.
    kind: String,
    /// Where the channel came from (config, NEW_API_URL env, code-switch app.json, built-in
    /// mock), as the worker reports it.
    origin: String,
    /// Priority tier.
    priority: i32,
    /// Weight in the tier.
    weight: u32,
    /// Successes on all workers.
    ok: u64,
    /// Failures on all workers.
    failed: u64,
    /// Worst average time to first byte.
    ttfb_ms: f64,
    /// Attempts in flight on all workers.
    inflight: u64,
    /// Workers where it is not healthy.
    states: Vec<String>,
    /// How much of its models the local config's price table covers (`all`, `partial`,
    /// `none`; `?` for a channel this config does not define).
    prices: &'static str,
}

/// Print per-channel totals across workers, then each worker's state.
pub async fn run(config: Config, json: bool) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-admin").await?;
    let js = async_nats::jetstream::new(client);
    let reports = crate::worker::health::read_all(&js).await?;
    if json {
        for r in &reports {
            println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The built-in mock (and its built-in prices) as this config's workers have them.
    let scope = config.routing.mock_scope(&config.channels);
    let table = crate::pricing::PriceTable::new(&config.pricing.models, scope.builtin_prices());
    let prices = |name: &str| {
        match config.channels.iter().find(|c| c.name == name) {
            Some(c) => table.coverage(&c.models).0.as_str(),
            // The built-in mock serves `mock*` (or, with no channels, every name), which the
            // built-in prices cover.
            None if name == "mock" && scope != crate::router::MockScope::Off => {
                table.coverage(&scope.patterns()).0.as_str()
            }
            None => "?",
        }
    };
    let mut by_channel: BTreeMap<String, Row> = BTreeMap::new();
    for r in &reports {
        for c in &r.channels {
            let e = by_channel.entry(c.channel.clone()).or_insert_with(|| Row {
                kind: c.kind.clone(),
                origin: if c.origin.is_empty() { "?".to_string() } else { c.origin.clone() },
                priority: c.priority,
                weight: c.weight,
                prices: prices(&c.channel),
                ..Default::default()
            });
            e.ok += c.successes;
            e.failed += c.failures;
            e.ttfb_ms = e.ttfb_ms.max(c.ttfb_ms);
            e.inflight += c.inflight;
            if c.state != "ok" {
                e.states.push(format!("{}:{}({} ms)", r.worker, c.state, c.cooldown_left_ms));
            }
        }
    }
    println!("{} live worker(s)", reports.len());
    println!(
        "{:<20} {:<17} {:<20} {:>8} {:>6} {:>9} {:>9} {:>10} {:>9} {:>7}  state",
        "channel", "kind", "origin", "priority", "weight", "ok", "failed", "ttfb ms", "in flight", "prices"
    );
    for (name, r) in by_channel {
        let state = if r.states.is_empty() { "ok".to_string() } else { r.states.join(", ") };
        println!(
            "{name:<20} {:<17} {:<20} {:>8} {:>6} {:>9} {:>9} {:>10.1} {:>9} {:>7}  {state}",
            r.kind, r.origin, r.priority, r.weight, r.ok, r.failed, r.ttfb_ms, r.inflight, r.prices
        );
    }
    for line in super::newapi_balance::lines(&config.channels, &|k| std::env::var(k).ok()).await {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
