//! `/api/log/…`: the request log from the ledger, newest first (`quota::usage_log`): every
//! user's for an admin (`GET /`, `GET /stat`), the caller's own (`GET /self`,
//! `GET /self/stat`). Filters (NEW-API's names): `start_timestamp`, `end_timestamp` (Unix
//! seconds), `username` (admin), `token_name`, `token_id`, `model_name`, `channel`,
//! `status` (an HTTP status, or `2xx`, `4xx`, `5xx`), `type` (1 top-up, 2 use, 3 set,
//! 5 error). `total` is exact when the window was read to its start (`data.complete`),
//! else the matches found so far.
//!
//! `GET /detail/:trace_id`: one entry with its exchange from the audit trail
//! (`LLM_REQUESTS`): the request as sent and the answer, redacted exactly as `ailurus audit
//! replay` redacts them (it is the same code, `audit::replay`). An admin reads any entry, a
//! user only their own (another's is not found). `exchange` is null once the audit trail's
//! retention dropped it.

use super::{Answer, Call, Reply};
use crate::bus::subjects::Token;
use crate::quota::ledger::UsageRecord;
use crate::quota::usage_log;
use serde_json::{json, Value};

/// The `log` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) | ("GET", ["search"]) => {
            call.admin().await?;
            let user = call.query("username").map(|u| Token::new("user_id", u)).transpose();
            let user = user.map_err(|e| Reply::bad(&e.to_string()))?;
            list(call, user.as_ref(), false).await
        }
        ("GET", ["stat"]) => {
            call.admin().await?;
            let user = call.query("username").map(|u| Token::new("user_id", u)).transpose();
            let user = user.map_err(|e| Reply::bad(&e.to_string()))?;
            list(call, user.as_ref(), true).await
        }
        ("GET", ["self"]) | ("GET", ["self", "search"]) => {
            let me = call.caller().await?.user.clone();
            list(call, Some(&me), false).await
        }
        ("GET", ["self", "stat"]) => {
            let me = call.caller().await?.user.clone();
            list(call, Some(&me), true).await
        }
        ("GET", ["detail", trace]) => detail(call, trace).await,
        _ => Err(call.no_route()),
    }
}

/// NEW-API's log type of a record.
fn log_type(r: &UsageRecord) -> i64 {
    match r.kind.as_str() {
        "topup" => 1,
        "set" => 3,
        _ if r.status >= 400 => 5,
        _ => 2,
    }
}

/// A record as NEW-API's log entry.
pub(super) fn shown(seq: u64, r: &UsageRecord) -> Value {
    json!({
        "id": seq, "created_at": super::unix(&r.timestamp), "type": log_type(r), "content": "",
        "username": r.user_id, "user_id": r.user_id, "token_id": r.token_id, "token_name": r.token_id,
        "model_name": r.model, "channel": r.channel, "channel_name": r.channel, "platform": r.platform,
        "quota": r.quota, "prompt_tokens": r.input_tokens + r.cache_read_tokens + r.cache_write_tokens,
        "completion_tokens": r.output_tokens, "use_time": r.duration_ms / 1000, "duration_ms": r.duration_ms,
        "status": r.status, "cost_usd": r.cost_usd, "trace_id": r.trace_id, "is_stream": false,
        "other": json!({"cache_read_tokens": r.cache_read_tokens, "cache_write_tokens": r.cache_write_tokens,
                        "reasoning_tokens": r.reasoning_tokens, "estimated": r.estimated}).to_string(),
    })
}

/// The filters of the query, as a predicate.
struct Filter {
    token: Option<String>,
    model: Option<String>,
    channel: Option<String>,
    status: Option<(u16, u16)>,
    kind: Option<i64>,
}

impl Filter {
    fn of(call: &Call<'_>) -> Result<Self, Reply> {
        let status = match call.query("status") {
            None => None,
            Some(s) if s.len() == 3 && s.ends_with("xx") => {
                let c = s[..1].parse::<u16>().map_err(|_| Reply::bad("status must be like 200 or 4xx"))?;
                Some((c * 100, c * 100 + 99))
            }
            Some(s) => {
                let n = s.parse::<u16>().map_err(|_| Reply::bad("status must be like 200 or 4xx"))?;
                Some((n, n))
            }
        };
        Ok(Self {
            token: call.query("token_id").or(call.query("token_name")).map(str::to_string),
            model: call.query("model_name").map(str::to_string),
            channel: call.query("channel").map(str::to_string),
            status,
            kind: call.query_i64("type")?.filter(|t| *t != 0),
        })
    }

    fn keep(&self, r: &UsageRecord) -> bool {
        self.token.as_ref().is_none_or(|t| r.token_id.as_ref() == Some(t))
            && self.model.as_ref().is_none_or(|m| r.model.contains(m.as_str()))
            && self.channel.as_ref().is_none_or(|c| &r.channel == c)
            && self.status.is_none_or(|(lo, hi)| (lo..=hi).contains(&r.status))
            && self.kind.is_none_or(|k| log_type(r) == k)
    }
}

/// A page of the log, or (`stat`) its sums: `quota`, and `rpm` / `tpm` over the last minute.
async fn list(call: &Call<'_>, user: Option<&Token>, stat: bool) -> Answer {
    let quota = call.ctx.quota.as_ref().ok_or_else(|| Reply::unavailable("quota store unavailable"))?;
    let filter = Filter::of(call)?;
    let (start, end) = (call.query_i64("start_timestamp")?, call.query_i64("end_timestamp")?);
    let page = call.page()?;
    let js = quota.jetstream();
    if stat {
        let got = usage_log::newest(js, user, start, end, usage_log::MAX_SCAN, |r| filter.keep(r))
            .await
            .map_err(Reply::unavailable)?;
        let now = crate::bus::proof::now_secs();
        let minute: Vec<_> = got.items.iter().filter(|(_, r)| super::unix(&r.timestamp) > now - 60).collect();
        let tokens: u64 = minute.iter().map(|(_, r)| r.input_tokens + r.output_tokens + r.cache_read_tokens).sum();
        let sum: i64 = got.items.iter().filter(|(_, r)| r.kind == "usage").map(|(_, r)| r.quota).sum();
        return Ok(Reply::ok(json!({"quota": sum, "rpm": minute.len(), "tpm": tokens, "complete": got.complete})));
    }
    let want = page.offset() + page.size;
    let got = usage_log::newest(js, user, start, end, want, |r| filter.keep(r)).await.map_err(Reply::unavailable)?;
    let items: Vec<Value> = got.items.iter().skip(page.offset()).map(|(seq, r)| shown(*seq, r)).collect();
    let mut r = page.reply(items, got.matched);
    r.body["data"]["complete"] = json!(got.complete);
    Ok(r)
}

/// How far around a ledger record's time the audit trail is read for its exchange.
const AUDIT_MARGIN: time::Duration = time::Duration::seconds(30);

/// `GET /detail/:trace_id`.
async fn detail(call: &Call<'_>, trace: &str) -> Answer {
    let me = call.caller().await?;
    Token::new("trace_id", trace).map_err(|_| Reply::bad("not a trace id"))?;
    let quota = call.ctx.quota.as_ref().ok_or_else(|| Reply::unavailable("quota store unavailable"))?;
    let js = quota.jetstream();
    let user = (!me.is_admin()).then(|| me.user.clone());
    let got = usage_log::newest(js, user.as_ref(), None, None, 1, |r| r.trace_id == trace)
        .await
        .map_err(Reply::unavailable)?;
    let (seq, rec) = got.items.first().ok_or_else(|| Reply::not_found("log entry"))?;
    let at = time::OffsetDateTime::parse(&rec.timestamp, &time::format_description::well_known::Rfc3339)
        .map_err(|_| Reply::fail(500, "the ledger record has no readable time"))?;
    let took = time::Duration::milliseconds(i64::try_from(rec.duration_ms).unwrap_or(0));
    let filter = crate::audit::Filter {
        since: Some(at - took - AUDIT_MARGIN),
        scan_until: Some(at + AUDIT_MARGIN),
        trace: Some(trace.to_string()),
        ..Default::default()
    };
    let read = crate::audit::replay(js, &filter, |_, _, _| {});
    let exchange = match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
        Ok(Ok(found)) => found.into_iter().next(),
        Ok(Err(e)) => return Err(Reply::unavailable(e)),
        Err(_) => return Err(Reply::fail(504, "reading the audit trail took over 10 s")),
    };
    Ok(Reply::ok(json!({"log": shown(*seq, rec), "exchange": exchange})))
}
