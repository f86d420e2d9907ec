//! The usage-statistics phases of the bench (issue 17): a ledger of synthetic usage records
//! (spread over 30 days, users, tokens, models, channels and platforms), `ailurus stats
//! rebuild` over it, and the management API's reads timed through the bridge.

use ailurus::bus::subjects::Token;
use ailurus::quota::ledger::UsageRecord;
use std::time::{Duration, Instant};

/// Shape of the synthetic traffic.
const USERS: usize = 50;
const MODELS: [&str; 6] =
    ["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-5-mini", "gemini-2.5-pro", "deepseek-chat"];
const CHANNELS: [&str; 3] = ["anthropic-a", "openai-b", "gemini-c"];
const PLATFORMS: [&str; 3] = ["claude", "codex", "gemini"];

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Synthetic usage record number `i`, settled at Unix second `ts`.
fn record(rng: &mut Rng, i: u64, ts: i64) -> Result<UsageRecord, String> {
    let user = rng.below(USERS as u64);
    let m = rng.below(MODELS.len() as u64) as usize;
    let t = time::OffsetDateTime::from_unix_timestamp(ts).map_err(|e| e.to_string())?;
    let input = 200 + rng.below(4_000);
    let output = 20 + rng.below(800);
    let error = rng.below(50) == 0;
    Ok(UsageRecord {
        kind: "usage".into(),
        trace_id: format!("syn{i}"),
        user_id: format!("user{user:02}"),
        token_id: Some(format!("tok{user:02}{}", rng.below(2))),
        platform: PLATFORMS[m % 3].into(),
        model: MODELS[m].into(),
        channel: CHANNELS[m % 3].into(),
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: rng.below(2) * input * 3,
        cost_usd: (input as f64 * 3.0 + output as f64 * 15.0) / 1e6,
        quota: ((input * 3 + output * 15) / 2) as i64,
        duration_ms: 300 + rng.below(5_000),
        ttft_ms: Some(100 + rng.below(1_500)),
        status: if error { 502 } else { 200 },
        timestamp: t.format(&time::format_description::well_known::Rfc3339).map_err(|e| e.to_string())?,
        ..Default::default()
    })
}

/// Publish `n` usage records spread evenly over the last `days` days (pipelined, 1,024
/// acknowledgements awaited at a time); returns how long it took.
pub async fn synthetic(js: &async_nats::jetstream::Context, n: u64, days: i64) -> Result<Duration, String> {
    let started = Instant::now();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let span = days * 86_400;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut acks = Vec::with_capacity(1024);
    for i in 0..n {
        let rec = record(&mut rng, i, now - span + (i as i64 * span) / n as i64)?;
        let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        let subject = ailurus::bus::subjects::usage(&Token::new("user_id", &rec.user_id).map_err(|e| e.to_string())?);
        let ack = js.publish(subject, body.into()).await.map_err(|e| format!("publish: {e}"))?;
        acks.push(ack);
        if acks.len() == 1024 || i + 1 == n {
            for ack in acks.drain(..) {
                tokio::time::timeout(Duration::from_secs(10), ack)
                    .await
                    .map_err(|_| "ledger ack timed out".to_string())?
                    .map_err(|e| format!("ledger ack: {e}"))?;
            }
        }
        if i > 0 && i % 200_000 == 0 {
            eprintln!("  {i} records");
        }
    }
    Ok(started.elapsed())
}

/// A management-API credential: root's access token and id.
pub async fn root_credential(client: &async_nats::Client) -> Result<(String, String), String> {
    let js = async_nats::jetstream::new(client.clone());
    let users = ailurus::quota::users::UserStore::open(&js).await.map_err(|e| e.to_string())?;
    let rec = match users.get("root").await.map_err(|e| e.to_string())? {
        Some(r) => r,
        None => users.create("root", ailurus::quota::users::role::ROOT, "").await.map_err(|e| e.to_string())?,
    };
    Ok((users.new_access_token("root").await.map_err(|e| e.to_string())?, rec.id.to_string()))
}

/// p50, p95 and the slowest of `n` GETs of `path` (ms), after one unmeasured call; fails
/// on any answer but 200.
pub async fn time_get(base: &str, cred: &(String, String), path: &str, n: usize) -> Result<(f64, f64, f64), String> {
    let http = reqwest::Client::new();
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        let started = Instant::now();
        let resp = http
            .get(format!("{base}{path}"))
            .header("Authorization", &cred.0)
            .header("New-Api-User", &cred.1)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("{path}: {status}: {}", String::from_utf8_lossy(&body)));
        }
        if i > 0 {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Ok((at(0.5), at(0.95), times[times.len() - 1]))
}

/// What the rollups cost a worker per request, measured in this process: `n` ledger records
/// of the synthetic shape made into points, each counted in its four documents, and every
/// document encoded once (what one flush does before its compare-and-set writes). Returns
/// µs per record and the number of documents.
pub fn aggregation_cost(n: u64) -> (f64, usize) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // The synthetic records of the last `n / 10` seconds, as the points the writer hands over.
    let points: Vec<ailurus::stats::Point> = (0..n)
        .filter_map(|i| {
            let rec = record(&mut rng, i, now - (n - i) as i64 / 10).ok()?;
            ailurus::stats::Point::from_record(i + 1, &rec)
        })
        .collect();
    let started = Instant::now();
    let mut docs: std::collections::BTreeMap<String, ailurus::stats::Doc> = std::collections::BTreeMap::new();
    for p in &points {
        for key in p.keys() {
            docs.entry(key.clone()).or_default().add(&key, p);
        }
    }
    let bytes: usize = docs.values_mut().map(|d| d.encode().len()).sum();
    let elapsed = started.elapsed();
    std::hint::black_box(bytes);
    (elapsed.as_secs_f64() * 1e6 / n as f64, docs.len())
}
