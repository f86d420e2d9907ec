//! The billing ledger: one record per finished request, and one per top-up or set, on
//! `llm.usage.<user>` in `LLM_USAGE` (file storage, kept). `Nats-Msg-Id` = the record id,
//! so a retried append is stored once. `rebuild` recomputes every balance from it.

use crate::bus::subjects::{self, Token};
use async_nats::jetstream::{self, consumer};
use async_nats::HeaderMap;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UsageRecord {
    /// `usage`, `topup` or `set`.
    pub kind: String,
    /// Request trace (usage), or a fresh id (admin records).
    pub trace_id: String,
    /// Billed user.
    pub user_id: String,
    /// Short token id used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Platform of the request.
    #[serde(default)]
    pub platform: String,
    /// Model as the client named it.
    #[serde(default)]
    pub model: String,
    /// Channel that served it.
    #[serde(default)]
    pub channel: String,
    /// Uncached prompt tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cache-read prompt tokens.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Cache-write prompt tokens.
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Reasoning tokens (part of output).
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Price in USD.
    #[serde(default)]
    pub cost_usd: f64,
    /// Quota units charged (usage), granted (topup) or set as the total (set).
    pub quota: i64,
    /// Request time.
    #[serde(default)]
    pub duration_ms: u64,
    /// Time to the first answer-bearing chunk, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    /// HTTP-like status of the outcome.
    #[serde(default)]
    pub status: u16,
    /// Whether the token counts were estimated.
    #[serde(default)]
    pub estimated: bool,
    /// Chat session, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// RFC 3339.
    pub timestamp: String,
    /// The quota hold this record settles or releases (the ledger's de-duplication key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    /// Units charged above what the request's hold reserved (an upstream that ignored the
    /// output cap); 0 for almost every record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overage: i64,
    /// The worker's quota lease this request drew on (its `hold_id` is then
    /// `<lease>.<n>`): a lost worker's lease is charged the sum of its records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl UsageRecord {
    /// An admin record (`topup` or `set`).
    pub fn admin(kind: &str, user: &str, quota: i64) -> Self {
        Self {
            kind: kind.into(),
            trace_id: format!("{kind}-{}", nuid::next()),
            user_id: user.into(),
            quota,
            status: 200,
            timestamp: crate::clock::now_rfc3339(),
            ..Default::default()
        }
    }
}

/// The record's `Nats-Msg-Id`: one per quota hold (a request may reuse a trace id), else
/// kind and trace id (admin records have fresh ids).
pub(crate) fn msg_id(rec: &UsageRecord) -> String {
    match &rec.hold_id {
        Some(h) => format!("{}-{h}", rec.kind),
        None => format!("{}-{}", rec.kind, rec.trace_id),
    }
}

/// How long an append keeps retrying: longer than a JetStream leader election after a
/// cluster node is lost, shorter than the stream's 120 s duplicate window.
const APPEND_PATIENCE: Duration = Duration::from_secs(30);

/// Append a record; retried for up to 30 s, de-duplicated by the record's id.
pub async fn append(js: &jetstream::Context, user: &Token, rec: &UsageRecord) -> Result<(), String> {
    let body = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
    let mut last = String::new();
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    while started.elapsed() < APPEND_PATIENCE {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", msg_id(rec).as_str());
        let res = tokio::time::timeout(Duration::from_secs(5), async {
            js.publish_with_headers(subjects::usage(user), h, body.clone().into())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match res {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = "ledger append timed out".into(),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    Err(format!("ledger append failed: {last}"))
}

/// What the ledger holds of one lease: the units its usage records charged and how many there
/// are. Reads `user`'s records from a little before `since_ms` (the lease's start).
pub async fn lease_spend(
    js: &jetstream::Context,
    user: &Token,
    lease: &str,
    since_ms: i64,
) -> Result<(i64, u64), String> {
    use consumer::DeliverPolicy;
    let stream = tokio::time::timeout(Duration::from_secs(5), js.get_stream("LLM_USAGE"))
        .await
        .map_err(|_| "LLM_USAGE lookup timed out".to_string())?
        .map_err(|e| format!("LLM_USAGE: {e}"))?;
    // Clocks of workers differ a little: start a minute early.
    let start = time::OffsetDateTime::from_unix_timestamp((since_ms / 1000 - 60).max(0)).map_err(|e| e.to_string())?;
    let deliver_policy =
        if since_ms > 0 { DeliverPolicy::ByStartTime { start_time: start } } else { DeliverPolicy::All };
    let config =
        consumer::pull::OrderedConfig { filter_subject: subjects::usage(user), deliver_policy, ..Default::default() };
    let consumer = tokio::time::timeout(Duration::from_secs(5), stream.create_consumer(config))
        .await
        .map_err(|_| "ledger consumer timed out".to_string())?
        .map_err(|e| format!("ledger consumer: {e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let (mut spent, mut n) = (0i64, 0u64);
    loop {
        match tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
            Ok(Some(Ok(m))) => {
                if let Ok(rec) = serde_json::from_slice::<UsageRecord>(&m.payload) {
                    if rec.kind == "usage" && rec.lease_id.as_deref() == Some(lease) {
                        spent += rec.quota;
                        n += 1;
                    }
                }
                if m.info().map(|i| i.pending == 0).unwrap_or(false) {
                    break;
                }
            }
            Ok(Some(Err(e))) => return Err(e.to_string()),
            // Nothing (more) to read: an ordered consumer with no pending messages is silent.
            Ok(None) | Err(_) => break,
        }
    }
    Ok((spent, n))
}

/// Read every record (optionally one user's), oldest first.
pub async fn read_all(js: &jetstream::Context, user: Option<&Token>) -> Result<Vec<UsageRecord>, String> {
    let stream = js.get_stream("LLM_USAGE").await.map_err(|e| format!("LLM_USAGE: {e}"))?;
    let filter = user.map_or_else(subjects::usage_all, subjects::usage);
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig { filter_subject: filter, ..Default::default() })
        .await
        .map_err(|e| format!("ledger consumer: {e}"))?;
    let mut info = stream.clone();
    let pending = info.info().await.map_err(|e| e.to_string())?.state.messages;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
        match next {
            Ok(Some(Ok(m))) => {
                if let Ok(rec) = serde_json::from_slice::<UsageRecord>(&m.payload) {
                    out.push(rec);
                }
                if m.info().map(|i| i.pending == 0).unwrap_or(false) {
                    break;
                }
            }
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(out)
}

/// What the ledger says a user's balance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Granted.
    pub total: i64,
    /// Spent.
    pub used: i64,
}

/// Balances from records: `set` replaces the total, `topup` adds, `usage` spends.
pub fn totals(records: &[UsageRecord]) -> BTreeMap<String, Totals> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for r in records {
        let t = out.entry(r.user_id.clone()).or_default();
        match r.kind.as_str() {
            "set" => t.total = r.quota,
            "topup" => t.total += r.quota,
            "usage" => t.used += r.quota,
            _ => {}
        }
    }
    out
}

/// One account whose live figures disagree with the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Whose.
    pub user_id: String,
    /// Live (total, used).
    pub live: Totals,
    /// From the ledger.
    pub ledger: Totals,
}

/// Compare every account with the ledger; unless `dry_run`, repair the drifting ones.
/// Returns the number of records read and the drifts found.
pub async fn rebuild(store: &super::store::QuotaStore, dry_run: bool) -> Result<(usize, Vec<Drift>), String> {
    let records = read_all(store.jetstream(), None).await?;
    let from_ledger = totals(&records);
    let mut users: std::collections::BTreeSet<String> = from_ledger.keys().cloned().collect();
    users.extend(store.users().await.map_err(|e| e.message)?);
    let mut drifts = Vec::new();
    for user in users {
        let t = Token::new("user_id", &user).map_err(|e| e.to_string())?;
        let want = from_ledger.get(&user).copied().unwrap_or_default();
        let have = store.balance(&t).await.map_err(|e| e.message)?;
        let live = Totals { total: have.total, used: have.used };
        if live != want {
            if !dry_run {
                store.repair(&t, want.total, want.used).await.map_err(|e| e.message)?;
            }
            drifts.push(Drift { user_id: user, live, ledger: want });
        }
    }
    Ok((records.len(), drifts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_fold_records() {
        let mut recs = vec![
            UsageRecord::admin("topup", "a", 100),
            UsageRecord { kind: "usage".into(), user_id: "a".into(), quota: 7, ..Default::default() },
            UsageRecord::admin("set", "a", 50),
            UsageRecord::admin("topup", "a", 5),
            UsageRecord { kind: "usage".into(), user_id: "b".into(), quota: 3, ..Default::default() },
        ];
        recs.push(UsageRecord { kind: "usage".into(), user_id: "a".into(), quota: 2, ..Default::default() });
        let t = totals(&recs);
        assert_eq!(t["a"], Totals { total: 55, used: 9 });
        assert_eq!(t["b"], Totals { total: 0, used: 3 });
    }
}
