//! A streamed LLM request to Ailurus with plain `async-nats` (no Ailurus code needed), plus
//! the user's quota events. `cargo run --example rust -- "hello"` with `ailurus up` running:
//!
//! ```sh
//! AILURUS_TOKEN=$(cat .ailurus-data/demo-token) cargo run --example rust -- "hello from Rust"
//! ```
//!
//! The reply protocol (design §3), step by step:
//! 1. subscribe to a fresh inbox, then publish the seed `LLMNATSRequest` on
//!    `llm.request.<platform>` with that inbox as reply subject, `Ailurus-Heartbeat: 1` and a
//!    proof of possession of the token for this one request ([`proof_headers`]: the token's
//!    id, a time and an HMAC; neither the token nor its hash alone ever goes on NATS);
//! 2. no reply within ~1 s: no worker is listening;
//! 3. every reply has `Ailurus-Kind`: `heartbeat`, `chunk` (`{trace_id, seq, delta}`), then one
//!    final `done` (`LLMNATSResponse`) or `error` (same, `success:false`, plus `Ailurus-Status`);
//! 4. a gap of more than a few heartbeats between replies: the worker died;
//! 5. giving up early: publish `llm.cancel.<trace_id>`.
//!
//! Environment: `NATS_URL` (default `nats://127.0.0.1:4222`), `AILURUS_TOKEN`,
//! `AILURUS_USER_ID` (default `demo`), `AILURUS_SESSION_ID`, `AILURUS_MODEL` (default `mock`),
//! `AILURUS_PLATFORM` (default `claude`). Answer on stdout, status lines on stderr.

use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::process::ExitCode;
use std::time::Duration;

/// No reply within this: no worker serves the subject.
pub const FIRST_REPLY: Duration = Duration::from_millis(1000);
/// Longest silence between replies (workers heartbeat every second).
pub const SILENCE: Duration = Duration::from_millis(4000);

/// Who asks, and for what.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seed `user_id`; must be the token's user.
    pub user_id: String,
    /// Seed `session_id`.
    pub session_id: String,
    /// The API token (never sent: it signs each request).
    pub token: Option<String>,
    /// Model name.
    pub model: String,
    /// `claude`, `codex`, `gemini` or `openai`.
    pub platform: String,
}

impl Settings {
    /// From the environment variables above.
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| std::env::var(k).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| d.to_string());
        Self {
            user_id: var("AILURUS_USER_ID", "demo"),
            session_id: var("AILURUS_SESSION_ID", &format!("session_{}", nuid::next())),
            token: std::env::var("AILURUS_TOKEN").ok().filter(|t| !t.is_empty()),
            model: var("AILURUS_MODEL", "mock"),
            platform: var("AILURUS_PLATFORM", "claude"),
        }
    }
}

/// A finished answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The final `LLMNATSResponse` (`Ailurus-Kind: done`).
    pub response: Value,
    /// The streamed text, chunk by chunk.
    pub text: String,
    /// How many chunks arrived.
    pub chunks: usize,
}

/// Send one streamed request; `on_delta` gets each piece of text as it arrives.
pub async fn stream_answer(
    client: &async_nats::Client,
    s: &Settings,
    prompt: &str,
    mut on_delta: impl FnMut(&str),
) -> Result<Answer, String> {
    let trace_id = format!("t_{}", nuid::next());
    let request = json!({
        "trace_id": trace_id,
        "user_id": s.user_id,
        "session_id": s.session_id,
        "platform": s.platform,
        "model": s.model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": true,
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "application/json");
    headers.insert("Ailurus-Heartbeat", "1");
    let subject = format!("llm.request.{}", s.platform);
    let body = request.to_string();
    if let Some(token) = &s.token {
        for (k, v) in proof_headers(token, &subject, &trace_id, body.as_bytes()) {
            headers.insert(k, v.as_str());
        }
    }
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
    client.publish_with_reply_and_headers(subject, inbox, headers, body.into()).await.map_err(|e| e.to_string())?;

    let (mut seen, mut text, mut chunks, mut next_seq) = (false, String::new(), 0usize, 0u64);
    loop {
        let wait = if seen { SILENCE } else { FIRST_REPLY };
        let msg = match tokio::time::timeout(wait, replies.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err("the reply subscription closed".into()),
            Err(_) if seen => {
                // Tell a possibly stuck worker to stop, then give up.
                let _ = client.publish(format!("llm.cancel.{trace_id}"), "".into()).await;
                return Err(format!("the worker went silent for {} ms", wait.as_millis()));
            }
            Err(_) => return Err("no Ailurus worker is serving this subject".into()),
        };
        if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err("no Ailurus worker is serving this subject".into());
        }
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let Some(kind) = header("Ailurus-Kind") else { continue }; // not a protocol reply
        seen = true;
        match kind.as_str() {
            "heartbeat" => {}
            "chunk" => {
                let chunk: Value = serde_json::from_slice(&msg.payload).map_err(|e| e.to_string())?;
                let seq = chunk["seq"].as_u64().unwrap_or(next_seq);
                if seq != next_seq {
                    eprintln!("warning: chunk seq {seq}, expected {next_seq}");
                }
                next_seq = seq + 1;
                let delta = chunk["delta"].as_str().unwrap_or_default();
                on_delta(delta);
                text.push_str(delta);
                chunks += 1;
            }
            "done" => {
                let response = serde_json::from_slice(&msg.payload).map_err(|e| e.to_string())?;
                return Ok(Answer { response, text, chunks });
            }
            _ => {
                let body: Value = serde_json::from_slice(&msg.payload).unwrap_or_default();
                let status = header("Ailurus-Status").unwrap_or_else(|| "500".into());
                return Err(format!("({status}) {}", body["error"].as_str().unwrap_or("request failed")));
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let prompt = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let prompt = if prompt.is_empty() { "Hello from async-nats".to_string() } else { prompt };
    let settings = Settings::from_env();
    let client = match async_nats::ConnectOptions::new()
        .name("ailurus-rust-example")
        .connection_timeout(Duration::from_secs(2))
        .connect(&url)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot connect to {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Quota events of this user: one QuotaChangeEvent per balance change.
    let mut quota = match client.subscribe(format!("user.{}.quota", settings.user_id)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = stream_answer(&client, &settings, &prompt, |d| {
        use std::io::Write;
        print!("{d}");
        let _ = std::io::stdout().flush();
    })
    .await;
    println!();
    match result {
        Ok(a) => {
            let r = &a.response;
            eprintln!(
                "[nats-tcp] {} in · {} out tokens · ${:.6} · {} ms · {} chunks · trace {}",
                r["tokens_input"],
                r["tokens_output"],
                r["cost"].as_f64().unwrap_or(0.0),
                r["duration_ms"],
                a.chunks,
                r["trace_id"].as_str().unwrap_or_default()
            );
            if settings.token.is_some() {
                // The worker settles right after the final reply; wait briefly for our event.
                let wait = tokio::time::sleep(Duration::from_secs(3));
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        Some(m) = quota.next() => {
                            let ev: Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                            eprintln!("[quota] {}: {} remain of {} (last cost {})",
                                settings.user_id, ev["quota_remain"], ev["quota_total"], ev["last_cost"]);
                            if ev["trace_id"] == r["trace_id"] { break; }
                        }
                        _ = &mut wait => { eprintln!("[quota] no quota event within 3 s"); break; }
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 of `msg` under `key`.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// The proof of possession of `token` for one seed request (`examples/nats-cli.md`): good
/// for this subject, trace id and body only, once, within 60 s.
fn proof_headers(token: &str, subject: &str, trace_id: &str, body: &[u8]) -> [(&'static str, String); 3] {
    let token_id = hex(&Sha256::digest(token.as_bytes()));
    let key = hex(&hmac_sha256(token.as_bytes(), b"ailurus-proof-key-v1"));
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    // Subject, trace id, time, then Ailurus-Format / -Op / -Model (none for a seed request),
    // then the body's sha256.
    let text = ["ailurus-proof-v1", subject, trace_id, &time, "", "", "", &hex(&Sha256::digest(body))].join("\n");
    let proof = hex(&hmac_sha256(key.as_bytes(), text.as_bytes()));
    [("Ailurus-Token-Id", token_id), ("Ailurus-Proof-Time", time), ("Ailurus-Proof", proof)]
}
