//! Channel health on NATS: every worker puts its router's snapshot into the `CHANNEL_HEALTH`
//! KV bucket under its worker id every few seconds, so any process (`ailurus channels`,
//! dashboards) can read the health of every channel on every worker. The bucket's max age
//! drops the entries of workers that died. On the same tick a worker reads the others'
//! reports back and gives their in-flight counts to its router (`least_busy` and
//! `p2c_ewma` count the whole fleet's load, at most [`EVERY`] old).

use crate::router::{HealthSnapshot, Router};
use crate::shutdown::Shutdown;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The KV bucket.
pub const BUCKET: &str = "CHANNEL_HEALTH";
/// How often a worker publishes.
pub const EVERY: Duration = Duration::from_secs(5);

/// One worker's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerHealth {
    /// Worker id (random per process).
    pub worker: String,
    /// RFC 3339 time of the report.
    pub timestamp: String,
    /// Its channels.
    pub channels: Vec<HealthSnapshot>,
}

/// Publish `router`'s health under `worker` until `shutdown`. Quietly does nothing when the
/// bucket does not exist (streams not applied).
pub async fn publish_loop(client: async_nats::Client, router: Arc<Router>, worker: String, shutdown: Shutdown) {
    let js = jetstream::new(client);
    let Ok(kv) = js.get_key_value(BUCKET).await else {
        tracing::debug!("no {BUCKET} bucket; channel health is not published");
        return;
    };
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tick.tick() => {
                let report = WorkerHealth { worker: worker.clone(), timestamp: crate::clock::now_rfc3339(), channels: router.snapshot() };
                if let Ok(body) = serde_json::to_vec(&report) {
                    if let Err(e) = tokio::time::timeout(Duration::from_secs(2), kv.put(&worker, body.into())).await {
                        tracing::debug!(error = %e, "channel health put timed out");
                    }
                }
                match tokio::time::timeout(Duration::from_secs(2), read_bucket(&kv)).await {
                    Ok(Ok(all)) => router.absorb(
                        all.iter().filter(|r| r.worker != worker && fresh(r)).flat_map(|r| r.channels.iter()),
                    ),
                    Ok(Err(e)) => tracing::debug!(error = %e, "reading the other workers' channel health failed"),
                    Err(_) => tracing::debug!("reading the other workers' channel health timed out"),
                }
            }
        }
    }
}

/// Whether a report is recent enough to count its in-flight requests (a dead worker's entry
/// stays in the bucket up to a minute).
fn fresh(r: &WorkerHealth) -> bool {
    let Ok(at) = time::OffsetDateTime::parse(&r.timestamp, &time::format_description::well_known::Rfc3339) else {
        return false;
    };
    time::OffsetDateTime::now_utc() - at < EVERY * 3
}

/// Every live worker's report.
pub async fn read_all(js: &jetstream::Context) -> Result<Vec<WorkerHealth>, String> {
    let kv =
        js.get_key_value(BUCKET).await.map_err(|e| format!("KV bucket {BUCKET}: {e} (run `ailurus streams apply`)"))?;
    read_bucket(&kv).await
}

/// Every report in the bucket.
async fn read_bucket(kv: &jetstream::kv::Store) -> Result<Vec<WorkerHealth>, String> {
    use futures::StreamExt;
    let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(k) = keys.next().await {
        let k = k.map_err(|e| e.to_string())?;
        if let Some(v) = kv.get(k.as_str()).await.map_err(|e| e.to_string())? {
            if let Ok(r) = serde_json::from_slice::<WorkerHealth>(&v) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recent_reports_count() {
        let report = |timestamp: String| WorkerHealth { worker: "w".into(), timestamp, channels: Vec::new() };
        assert!(fresh(&report(crate::clock::now_rfc3339())));
        assert!(!fresh(&report("2020-01-01T00:00:00Z".into())));
        assert!(!fresh(&report("not a time".into())));
    }
}
