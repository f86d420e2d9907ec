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
    // channel → (kind, priority, weight, successes, failures, worst ttfb, states)
    let mut by_channel: BTreeMap<String, (String, i32, u32, u64, u64, f64, Vec<String>)> = BTreeMap::new();
    for r in &reports {
        for c in &r.channels {
            let e = by_channel
                .entry(c.channel.clone())
                .or_insert_with(|| (c.kind.clone(), c.priority, c.weight, 0, 0, 0.0, Vec::new()));
            e.3 += c.successes;
            e.4 += c.failures;
            e.5 = e.5.max(c.ttfb_ms);
            if c.state != "ok" {
                e.6.push(format!("{}:{}({} ms)", r.worker, c.state, c.cooldown_left_ms));
            }
        }
    }
    println!("{} live worker(s)", reports.len());
    println!(
        "{:<20} {:<17} {:>8} {:>6} {:>9} {:>9} {:>10}  state",
        "channel", "kind", "priority", "weight", "ok", "failed", "ttfb ms"
    );
    for (name, (kind, prio, weight, ok, failed, ttfb, states)) in by_channel {
        let state = if states.is_empty() { "ok".to_string() } else { states.join(", ") };
        println!("{name:<20} {kind:<17} {prio:>8} {weight:>6} {ok:>9} {failed:>9} {ttfb:>10.1}  {state}");
    }
    Ok(ExitCode::SUCCESS)
}
