//! Per-token rate limits, correct across any number of workers: every check is one atomic
//! server-side counter increment (`RATE_COUNTERS`, `Nats-Incr`), checked and undone when over
//! the limit — the same mechanism as the quota.
//!
//! - requests per minute: `quota.rpm.<token>.<unix minute>`, +1 per request;
//! - tokens per minute: `quota.tpm.<token>.<unix minute>`, + the estimate at admission,
//!   corrected to the real count at the end;
//! - concurrency: `quota.conc.<token>`, +1 at admission, −1 at the end.
//!
//! Windows are fixed minutes; their subjects age out of the stream two minutes after their
//! last change. A worker killed mid-request leaves its concurrency slot taken until the
//! token's counter has been idle for two minutes (the stream's max age), then it resets.

use super::tokens::TokenRecord;
use crate::bus::subjects::{self, Token};
use crate::error::RequestError;
use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The counter stream.
pub const STREAM: &str = "RATE_COUNTERS";

/// What an admitted request holds until [`RateLimiter::release`].
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Token hash.
    token: Token,
    /// The minute it was admitted in.
    window: u64,
    /// Tokens counted against `tpm` (0 when the token has no `tpm`).
    tokens: u64,
    /// Whether a concurrency slot is held.
    slot: bool,
}

/// One atomic counter increment on `subject`; returns the new value.
pub async fn incr(js: &jetstream::Context, subject: String, delta: i64) -> Result<i64, String> {
    let mut h = HeaderMap::new();
    h.insert("Nats-Incr", format!("{delta:+}").as_str());
    let ack = tokio::time::timeout(Duration::from_secs(5), async {
        js.publish_with_headers(subject, h, Bytes::new())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| "counter increment timed out".to_string())??;
    ack.value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "counter ack without a value (is the server ≥ 2.12?)".to_string())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Rate limits over NATS.
#[derive(Clone)]
pub struct RateLimiter {
    /// For the counters.
    js: jetstream::Context,
}

impl RateLimiter {
    /// A limiter, if the counter stream exists.
    pub async fn open(client: async_nats::Client) -> Option<Self> {
        let js = jetstream::new(client);
        js.get_stream(STREAM).await.ok()?;
        Some(Self { js })
    }

    fn unavailable(e: String) -> RequestError {
        RequestError::unavailable("rate limit store", e).retry_after(1)
    }

    /// Admit a request of about `tokens` tokens for the token `hash`, or refuse with 429.
    /// `Ok(None)` when the token has no limits.
    pub async fn admit(&self, hash: &Token, rec: &TokenRecord, tokens: u64) -> Result<Option<Admitted>, RequestError> {
        if !rec.has_rate_limits() {
            return Ok(None);
        }
        let now = now_secs();
        let window = now / 60;
        let to_next_minute = 60 - now % 60;
        let mut held = Admitted { token: hash.clone(), window, tokens: 0, slot: false };
        let mut rpm_held = false;
        if let Some(rpm) = rec.rpm {
            let v = incr(&self.js, subjects::rate_rpm(hash, window), 1).await.map_err(Self::unavailable)?;
            if v > rpm as i64 {
                let _ = incr(&self.js, subjects::rate_rpm(hash, window), -1).await;
                return Err(RequestError::new(
                    429,
                    format!("rate limit: token {} allows {rpm} requests per minute", rec.id),
                )
                .retry_after(to_next_minute));
            }
            rpm_held = true;
        }
        if let Some(tpm) = rec.tpm {
            let n = tokens.min(i64::MAX as u64) as i64;
            let v = incr(&self.js, subjects::rate_tpm(hash, window), n).await.map_err(Self::unavailable)?;
            if v > tpm.min(i64::MAX as u64) as i64 {
                let _ = incr(&self.js, subjects::rate_tpm(hash, window), -n).await;
                if rpm_held {
                    let _ = incr(&self.js, subjects::rate_rpm(hash, window), -1).await;
                }
                return Err(RequestError::new(
                    429,
                    format!("rate limit: token {} allows {tpm} tokens per minute", rec.id),
                )
                .retry_after(to_next_minute));
            }
            held.tokens = tokens;
        }
        if let Some(max) = rec.concurrency {
            let v = incr(&self.js, subjects::rate_conc(hash), 1).await.map_err(Self::unavailable)?;
            if v > max as i64 {
                let _ = incr(&self.js, subjects::rate_conc(hash), -1).await;
                self.release(held, None).await;
                if rpm_held {
                    let _ = incr(&self.js, subjects::rate_rpm(hash, window), -1).await;
                }
                return Err(RequestError::new(
                    429,
                    format!("rate limit: token {} allows {max} requests at once", rec.id),
                )
                .retry_after(1));
            }
            held.slot = true;
        }
        Ok(Some(held))
    }

    /// The request ended: free its slot and correct the token count to `actual` (`None`:
    /// give back everything counted, e.g. the request was refused later).
    pub async fn release(&self, held: Admitted, actual: Option<u64>) {
        if held.slot {
            if let Err(e) = incr(&self.js, subjects::rate_conc(&held.token), -1).await {
                tracing::warn!(error = %e, "releasing a concurrency slot failed");
            }
        }
        if held.tokens > 0 {
            let delta = actual.unwrap_or(0) as i64 - held.tokens as i64;
            if delta != 0 {
                let _ = incr(&self.js, subjects::rate_tpm(&held.token, held.window), delta).await;
            }
        }
    }
}
