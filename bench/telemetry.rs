//! The telemetry phase: the worker's CPU per request with OpenTelemetry export off and on
//! (every request a traced `chat` span with its admission and attempt children, the GenAI
//! metrics, `traceparent` on the upstream call), against an OTLP sink in this process that
//! answers every export with 200 (so only the worker's side is counted).

use super::{cpu_of, cpu_us_per_req, openai_target, opts, rate_run, Proc, Stack};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One rate: (req/s, worker CPU µs per request with export off, with it on), each the mean of
/// the rounds.
pub type Row = (f64, f64, f64);

/// An OTLP/HTTP sink on loopback: reads each request and answers 200 with an empty body.
async fn sink() -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    let read = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut chunk)).await;
                    let n = match read {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => return,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    // One whole request (headers and content-length bytes) → one answer.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            break;
                        }
                        buf.drain(..end + 4 + len);
                        let answer =
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if conn.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Alternate export off and on, `rounds` times, at each rate; the worker restarted each time.
pub async fn run(st: &mut Stack, phase: Duration, rounds: usize) -> Result<Vec<Row>, String> {
    let endpoint = format!("http://{}", sink().await?);
    let on =
        [("AILURUS__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()), ("AILURUS__TELEMETRY__EXPORT_INTERVAL_MS", "1000")];
    let mut rows = Vec::new();
    for &rate in &[1000.0, 2000.0] {
        let (mut off_sum, mut on_sum) = (0.0, 0.0);
        for _ in 0..rounds {
            for (exporting, env) in [(false, &[][..]), (true, &on[..])] {
                st.restart_with("open", None, env).await?;
                let gw = openai_target(st.bridge_addr, "bench", false, None);
                rate_run("telemetry warm-up", &gw, opts(rate, Duration::from_millis(1000))).await;
                let worker = [st.worker.as_ref().map_or(0, Proc::pid)];
                let c0 = cpu_of(&worker);
                let label = if exporting { "ailurus, telemetry on" } else { "ailurus, telemetry off" };
                let o = rate_run(label, &gw, opts(rate, phase)).await;
                let c1 = cpu_of(&worker);
                let us = cpu_us_per_req(&c0, &c1, o.ok).first().copied().unwrap_or_default();
                eprintln!("  worker CPU {us:.0} µs/request");
                if exporting {
                    on_sum += us;
                } else {
                    off_sum += us;
                }
            }
        }
        rows.push((rate, off_sum / rounds as f64, on_sum / rounds as f64));
    }
    Ok(rows)
}

/// The report's table.
pub fn report(s: &mut String, rows: &[Row], rounds: usize) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "**OpenTelemetry export** (bridge, non-streaming, open mode; worker CPU per request, mean of {rounds} alternating rounds; on = `[telemetry] otlp_endpoint` set, a `chat` span with admission and attempt children, three metrics, `traceparent` to the upstream)\n"
    );
    let _ = writeln!(s, "| req/s | worker CPU µs/req, export off | export on | added |");
    let _ = writeln!(s, "|---:|---:|---:|---:|");
    for (r, off, on) in rows {
        let _ = writeln!(s, "| {r:.0} | {off:.0} | {on:.0} | {:+.0} |", on - off);
    }
    let _ = writeln!(s);
}
