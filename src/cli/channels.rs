//! `ailurus channels`: the health of every channel on every live worker, read from the
//! `CHANNEL_HEALTH` KV bucket.

use crate::config::Config;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// One channel summed over workers.
#[derive(Default)]
struct Row {
    /// Upstream kind.
    kind: String,
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
    /// Workers where it is not healthy.
    states: Vec<String>,
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
    let mut by_channel: BTreeMap<String, Row> = BTreeMap::new();
    for r in &reports {
        for c in &r.channels {
            let e = by_channel.entry(c.channel.clone()).or_insert_with(|| Row {
                kind: c.kind.clone(),
                priority: c.priority,
                weight: c.weight,
                ..Default::default()
            });
            e.ok += c.successes;
            e.failed += c.failures;
            e.ttfb_ms = e.ttfb_ms.max(c.ttfb_ms);
            if c.state != "ok" {
                e.states.push(format!("{}:{}({} ms)", r.worker, c.state, c.cooldown_left_ms));
            }
        }
    }
    println!("{} live worker(s)", reports.len());
    println!(
        "{:<20} {:<17} {:>8} {:>6} {:>9} {:>9} {:>10}  state",
        "channel", "kind", "priority", "weight", "ok", "failed", "ttfb ms"
    );
    for (name, r) in by_channel {
        let state = if r.states.is_empty() { "ok".to_string() } else { r.states.join(", ") };
        println!(
            "{name:<20} {:<17} {:>8} {:>6} {:>9} {:>9} {:>10.1}  {state}",
            r.kind, r.priority, r.weight, r.ok, r.failed, r.ttfb_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
