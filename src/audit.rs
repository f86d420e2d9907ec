//! Audit over JetStream: `replay` rebuilds exchanges (request, streamed chunks, final
//! response, usage and cost) from `LLM_REQUESTS` and `LLM_USAGE` with ordered consumers
//! starting at a time; `tail` follows live traffic; `chat_history` reads a session back
//! from `CHAT_MESSAGES`. Output never holds tokens: headers are not shown, a seed request's
//! `token` field is removed, and all text passes through [`crate::redact`].

use crate::bus::codec::{decode, Encoding};
use crate::bus::headers::{self, ReplyKind};
use crate::bus::subjects::{self, Token};
use crate::protocol::{ChunkMessage, LLMNATSResponse};
use crate::quota::ledger::UsageRecord;
use crate::worker::sync::ChatRecord;
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use time::OffsetDateTime;

/// Which exchanges to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only from this time on.
    pub since: Option<OffsetDateTime>,
    /// Only before this time.
    pub until: Option<OffsetDateTime>,
    /// Only this user's.
    pub user: Option<String>,
    /// Only this trace.
    pub trace: Option<String>,
    /// Only this platform.
    pub platform: Option<String>,
    /// Stop reading the streams at the first message published after this time (bounds the
    /// scan of one exchange whose time is known; later answers are not seen).
    pub scan_until: Option<OffsetDateTime>,
}

/// One rebuilt exchange.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Exchange {
    /// Trace id.
    pub trace_id: String,
    /// When the request was published (RFC 3339).
    pub time: String,
    /// `claude`, `codex`, `gemini`, `openai`.
    pub platform: String,
    /// Billed user, when known.
    pub user_id: Option<String>,
    /// Model asked for.
    pub model: Option<String>,
    /// Native format, or `seed`.
    pub format: String,
    /// The request body (redacted).
    pub request: Value,
    /// Streamed chunk deltas, in order (seed replies on `llm.response.<trace_id>`).
    pub chunks: Vec<String>,
    /// The final response.
    pub response: Option<LLMNATSResponse>,
    /// HTTP-like status of the outcome.
    pub status: Option<u16>,
    /// The ledger record (tokens by class, cost, channel).
    pub usage: Option<UsageRecord>,
}

/// Parse `1h`, `30m`, `2d` (before now) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let secs = crate::clock::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither a duration like 1h nor an RFC 3339 time"))?;
    Ok(OffsetDateTime::now_utc() - time::Duration::seconds(secs))
}

fn redact_value(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("token");
            map.values_mut().for_each(redact_value);
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::String(s) => *s = crate::redact::redact(s, &[]),
        _ => {}
    }
}

/// Read every message of a stream (optionally from a time), calling `each` with it.
async fn read_stream(
    js: &jetstream::Context,
    name: &str,
    (since, stop): (Option<OffsetDateTime>, Option<OffsetDateTime>),
    filter_subject: Option<String>,
    mut each: impl FnMut(async_nats::jetstream::Message),
    mut progress: impl FnMut(u64, u64),
) -> Result<(), String> {
    let mut stream = js.get_stream(name).await.map_err(|e| format!("{name}: {e}"))?;
    let total = stream.info().await.map_err(|e| format!("{name}: {e}"))?.state.messages;
    if total == 0 {
        return Ok(());
    }
    let deliver_policy = match since {
        Some(start_time) => DeliverPolicy::ByStartTime { start_time },
        None => DeliverPolicy::All,
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy,
            filter_subject: filter_subject.unwrap_or_default(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("{name}: consumer: {e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| format!("{name}: {e}"))?;
    let mut n = 0u64;
    loop {
        match tokio::time::timeout(Duration::from_millis(700), messages.next()).await {
            Ok(Some(Ok(m))) => {
                if stop.is_some_and(|s| m.info().is_ok_and(|i| i.published > s)) {
                    break;
                }
                let done = m.info().map(|i| i.pending == 0).unwrap_or(false);
                each(m);
                n += 1;
                if n.is_multiple_of(1000) {
                    progress(n, total);
                }
                if done {
                    break;
                }
            }
            Ok(Some(Err(e))) => return Err(format!("{name}: {e}")),
            Ok(None) | Err(_) => break,
        }
    }
    progress(n, total);
    Ok(())
}

fn header<'a>(m: &'a async_nats::jetstream::Message, k: &str) -> Option<&'a str> {
    m.headers.as_ref().and_then(|h| h.get(k)).map(|v| v.as_str())
}

/// Rebuild exchanges.
pub async fn replay(
    js: &jetstream::Context,
    filter: &Filter,
    mut progress: impl FnMut(&str, u64, u64),
) -> Result<Vec<Exchange>, String> {
    let mut by_trace: BTreeMap<String, Exchange> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    read_stream(
        js,
        "LLM_REQUESTS",
        (filter.since, filter.scan_until),
        None,
        |m| {
            let subject = m.subject.to_string();
            let time = m
                .info()
                .ok()
                .and_then(|i| i.published.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_default();
            if let Some(platform) = subjects::token_of(subjects::REQUEST, &subject) {
                let enc = Encoding::from_headers(m.headers.as_ref());
                let format = header(&m, headers::FORMAT).map(str::to_string);
                let mut body: Value = match format {
                    Some(_) => serde_json::from_slice(&m.payload).unwrap_or(Value::Null),
                    None => decode::<Value>(enc, &m.payload).unwrap_or(Value::Null),
                };
                let trace = header(&m, headers::TRACE)
                    .map(str::to_string)
                    .or_else(|| body.get("trace_id").and_then(|t| t.as_str()).map(str::to_string));
                let Some(trace) = trace else { return };
                let user = body.get("user_id").and_then(|u| u.as_str()).map(str::to_string);
                let model = header(&m, headers::MODEL)
                    .map(str::to_string)
                    .or_else(|| body.get("model").and_then(|u| u.as_str()).map(str::to_string));
                redact_value(&mut body);
                if !by_trace.contains_key(&trace) {
                    order.push(trace.clone());
                }
                let ex = by_trace.entry(trace.clone()).or_default();
                ex.trace_id = trace;
                ex.time = time;
                ex.platform = platform.to_string();
                ex.user_id = ex.user_id.take().or(user);
                ex.model = model;
                ex.format = format.unwrap_or_else(|| "seed".into());
                ex.request = body;
            } else if let Some(trace) = subjects::token_of(subjects::RESPONSE, &subject) {
                let kind = ReplyKind::of(m.headers.as_ref());
                let enc = Encoding::from_headers(m.headers.as_ref());
                let ex = by_trace
                    .entry(trace.to_string())
                    .or_insert_with(|| Exchange { trace_id: trace.to_string(), ..Default::default() });
                match kind {
                    Some(ReplyKind::Chunk) => {
                        if let Ok(c) = decode::<ChunkMessage>(enc, &m.payload) {
                            ex.chunks.push(crate::redact::redact(&c.delta, &[]));
                        }
                    }
                    Some(ReplyKind::Done | ReplyKind::Error) => {
                        if let Ok(mut r) = decode::<LLMNATSResponse>(enc, &m.payload) {
                            r.content = crate::redact::redact(&r.content, &[]);
                            r.error = r.error.map(|e| crate::redact::redact(&e, &[]));
                            ex.status = header(&m, headers::STATUS).and_then(|s| s.parse().ok());
                            ex.response = Some(r);
                        }
                    }
                    Some(ReplyKind::Heartbeat) | None => {}
                }
            }
        },
        |n, t| progress("LLM_REQUESTS", n, t),
    )
    .await?;
    read_stream(
        js,
        "LLM_USAGE",
        (filter.since, filter.scan_until),
        None,
        |m| {
            if let Ok(rec) = serde_json::from_slice::<UsageRecord>(&m.payload) {
                if rec.kind != "usage" {
                    return;
                }
                if let Some(ex) = by_trace.get_mut(&rec.trace_id) {
                    ex.user_id = Some(rec.user_id.clone());
                    ex.usage = Some(rec);
                }
            }
        },
        |n, t| progress("LLM_USAGE", n, t),
    )
    .await?;
    let until = filter.until;
    Ok(order
        .into_iter()
        .filter_map(|t| by_trace.remove(&t))
        .filter(|ex| filter.user.as_deref().is_none_or(|u| ex.user_id.as_deref() == Some(u)))
        .filter(|ex| filter.trace.as_deref().is_none_or(|t| ex.trace_id == t))
        .filter(|ex| filter.platform.as_deref().is_none_or(|p| ex.platform == p))
        .filter(|ex| {
            until.is_none_or(|u| {
                OffsetDateTime::parse(&ex.time, &time::format_description::well_known::Rfc3339).is_ok_and(|t| t < u)
            })
        })
        .collect())
}

/// A session's turns, in order.
pub async fn chat_history(js: &jetstream::Context, user: &Token, session: &Token) -> Result<Vec<ChatRecord>, String> {
    let mut out = Vec::new();
    read_stream(
        js,
        "CHAT_MESSAGES",
        (None, None),
        Some(subjects::chat_msg(user, session)),
        |m| {
            if let Ok(r) = serde_json::from_slice::<ChatRecord>(&m.payload) {
                out.push(r);
            }
        },
        |_, _| {},
    )
    .await?;
    Ok(out)
}

/// One line describing a live message, for `audit tail` (no headers, redacted).
pub fn tail_line(subject: &str, headers_map: Option<&async_nats::HeaderMap>, payload: &[u8]) -> String {
    let kind =
        headers_map.and_then(|h| h.get(headers::KIND)).map(|v| v.as_str().to_string()).unwrap_or_else(|| "msg".into());
    let text = String::from_utf8_lossy(payload);
    let mut short: String = text.chars().take(160).collect();
    if text.chars().count() > 160 {
        short.push('…');
    }
    let now = crate::clock::now_rfc3339();
    format!("{now} {subject} [{kind}] {}", crate::redact::redact(&short, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_redaction() {
        assert!(parse_time("1h").unwrap() < OffsetDateTime::now_utc());
        assert!(parse_time("2026-01-01T00:00:00Z").is_ok());
        assert!(parse_time("yesterday").is_err());
        let mut v = serde_json::json!({"token": "sk-ail-secret", "messages": [{"content": "key sk-proj-abcdefghijk"}]});
        redact_value(&mut v);
        assert!(v.get("token").is_none());
        assert_eq!(v["messages"][0]["content"], "key sk-[redacted]");
    }
}
