//! Tokens, quota and billing on JetStream (design §4, §5).
//!
//! - [`tokens`]: API tokens in the `TOKENS` KV bucket, keyed by sha256; workers keep an
//!   in-memory copy fresh with a KV watch, so the hot path reads no KV.
//! - [`account`]: per-user totals in the `QUOTA` KV bucket; the amount spent is a NATS 2.12
//!   server-side counter (`quota.used.<user>` in `QUOTA_COUNTERS`, `Nats-Incr`): every
//!   reserve and settle is one atomic increment, so concurrent workers never lose an update.
//! - [`ledger`]: one `UsageRecord` per finished request (and per top-up) on
//!   `llm.usage.<user>` (`LLM_USAGE`); `rebuild` recomputes balances from it.
//! - [`ratelimit`]: per-token requests/tokens per minute and concurrency, as counters.
//! - [`holds`]: every reservation is first a durable hold on `quota.hold.<id>`, so a worker
//!   killed mid-request leaves something another worker releases exactly once.
//! - [`lease`]: a worker's slice of a user's balance, taken with one hold; requests are
//!   admitted from it in memory, and [`writer`] appends their ledger records in batches.
//! - [`auth`]: who a request is, from the proof of possession it carries.
//! - [`proof`]: the replay set (`PROOFS` bucket): a proof's trace id is good once.
//!
//! Units follow NEW-API: 500,000 quota units = 1 USD.

pub mod account;
pub mod auth;
pub mod holds;
pub mod lease;
pub mod ledger;
pub mod proof;
pub mod ratelimit;
pub mod redemption;
pub mod store;
pub mod token_edit;
pub mod tokens;
pub mod usage_log;
pub mod users;
pub mod writer;

use crate::error::RequestError;
use serde::Deserialize;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every request needs a valid token (the default); seed `user_id` must match it.
    #[default]
    Token,
    /// NATS accounts authenticate the connection: a seed request's `user_id` is taken as
    /// given (and billed). Native requests still need a proof of possession of a token.
    Trusted,
    /// No authentication and no billing (local development only).
    Open,
}

/// Authentication and quota settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `token`, `trusted` or `open`.
    #[serde(default)]
    pub mode: AuthMode,
}

/// A 503 for a quota operation whose JetStream store did not answer.
pub(crate) fn store_error(e: impl std::fmt::Display) -> RequestError {
    RequestError::unavailable("quota store", e)
}

/// `f` within `limit`, its error (or the timeout) as text naming `what`.
pub(crate) async fn within<T, E: std::fmt::Display>(
    what: &str,
    limit: std::time::Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out")),
    }
}
