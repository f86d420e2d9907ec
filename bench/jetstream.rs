//! The `jetstream` phase: what one JetStream write costs nats-server, the floor under token
//! mode's CPU. Writes of the kinds a billed request makes (a `PROOFS`-style KV create, a
//! ledger-sized record with `Nats-Msg-Id`) are timed one at a time (each awaits its
//! acknowledgement before the next, as a request's replay-set claim does at 1,000 req/s) and
//! in pipelined batches of 16 (as the ledger writer sends them), against the bench's own
//! nats-server with no other load; the figure is nats-server's CPU per write.

use super::cpu_of;
use async_nats::jetstream::{self, kv, stream};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Writes per row.
const N: usize = 4_000;
/// Bound on one write's acknowledgement.
const ACK: Duration = Duration::from_secs(5);

/// One row: (what, nats-server CPU µs per write, wall µs per write).
pub type Row = (&'static str, f64, f64);

/// Measure every row on the server at `url` (process `pid`).
pub async fn run(url: &str, pid: u32) -> Result<Vec<Row>, String> {
    let client = ailurus::bus::connect(url, "bench-jetstream").await.map_err(|e| e.to_string())?;
    let js = jetstream::new(client);
    let kv = js
        .create_key_value(kv::Config {
            bucket: "BENCH_CLAIMS".into(),
            max_age: Duration::from_secs(180),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("BENCH_CLAIMS: {e}"))?;
    js.get_or_create_stream(stream::Config {
        name: "BENCH_LEDGER".into(),
        subjects: vec!["bench.ledger.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("BENCH_LEDGER: {e}"))?;
    let record = bytes::Bytes::from(vec![b'x'; 600]);
    let run_id = nuid::next().to_string();
    let mut rows = Vec::new();

    let (c0, t) = (cpu_of(&[pid])[0], Instant::now());
    for i in 0..N {
        let create = kv.create(format!("tok.{run_id}-{i}"), bytes::Bytes::new());
        tokio::time::timeout(ACK, create).await.map_err(|_| "KV create timed out")?.map_err(|e| e.to_string())?;
    }
    rows.push(per_write("KV create (a replay-set claim), one at a time", c0, cpu_of(&[pid])[0], t));

    let (c0, t) = (cpu_of(&[pid])[0], Instant::now());
    for i in 0..N {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("a-{run_id}-{i}").as_str());
        let ack = js.publish_with_headers("bench.ledger.u", h, record.clone()).await.map_err(|e| e.to_string())?;
        tokio::time::timeout(ACK, ack).await.map_err(|_| "ack timed out")?.map_err(|e| e.to_string())?;
    }
    rows.push(per_write("600 B record with Nats-Msg-Id, one at a time", c0, cpu_of(&[pid])[0], t));

    let (c0, t) = (cpu_of(&[pid])[0], Instant::now());
    for b in 0..N / 16 {
        let mut acks = Vec::with_capacity(16);
        for i in 0..16 {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", format!("b-{run_id}-{b}-{i}").as_str());
            acks.push(js.publish_with_headers("bench.ledger.u", h, record.clone()).await.map_err(|e| e.to_string())?);
        }
        for ack in acks {
            tokio::time::timeout(ACK, ack).await.map_err(|_| "ack timed out")?.map_err(|e| e.to_string())?;
        }
    }
    rows.push(per_write("600 B record, pipelined batches of 16", c0, cpu_of(&[pid])[0], t));
    let _ = js.delete_key_value("BENCH_CLAIMS").await;
    let _ = js.delete_stream("BENCH_LEDGER").await;
    Ok(rows)
}

/// A row from CPU ticks (10 ms each) before and after and the start time.
fn per_write(what: &'static str, before: u64, after: u64, started: Instant) -> Row {
    let cpu_us = after.saturating_sub(before) as f64 * 10_000.0 / N as f64;
    (what, cpu_us, started.elapsed().as_secs_f64() * 1e6 / N as f64)
}

/// The phase's table.
pub fn report(s: &mut String, rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "**One JetStream write** (nats-server CPU per write, {N} writes per row, no other load)\n");
    let _ = writeln!(s, "| write | nats-server CPU µs / write | wall µs / write |");
    let _ = writeln!(s, "|---|---:|---:|");
    for (what, cpu, wall) in rows {
        let _ = writeln!(s, "| {what} | {cpu:.0} | {wall:.0} |");
    }
    let _ = writeln!(s);
}
