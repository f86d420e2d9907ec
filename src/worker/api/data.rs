//! `/api/data/…`: usage over time from the statistics kept at write time (`stats`), never
//! from the ledger itself, so a 30-day window reads 30 documents whatever the traffic.
//!
//! - `GET /api/data/` (admin) and `GET /api/data/self`: NEW-API's `QuotaData` rows — per
//!   model and period: `model_name`, `created_at`, `count`, `quota`, `token_used`. Query:
//!   `start_timestamp`, `end_timestamp` (Unix seconds; default the last 24 hours), and for an
//!   admin `username` (that user's rows; else everyone's, per model as NEW-API sums them).
//! - `GET /api/data/stats` (admin; `username` optional) and `GET /api/data/self/stats`:
//!   Ailurus's report — `series` (one row per hour, or per day beyond 7 days), `totals`,
//!   `by_model`, `by_channel`, `by_platform`, `by_user` (everyone's only), `by_token`, each
//!   row with requests, errors (4xx, 5xx), tokens by class, `cost_usd`, `quota`, and latency
//!   and time-to-first-token `avg` / `p50` / `p90` / `p99` in ms (accurate to the
//!   histogram's bucket); `split_series`, each split's six largest values over time (requests,
//!   errors, tokens, quota per period); `heatmap`, one cell per day and hour with requests;
//!   `bucket`.

use super::{Answer, Call, Reply};
use crate::bus::subjects::Token;
use crate::stats::query::{self, Report, Scope};
use serde_json::json;

/// Default window: the last day.
const DEFAULT_WINDOW: i64 = 86_400;

/// The `data` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    let (scope, stats) = match (method, path.as_slice()) {
        ("GET", []) | ("GET", ["stats"]) => {
            call.admin().await?;
            let user = call.query("username").or(call.query("user_id"));
            let user = user.map(|u| Token::new("username", u)).transpose().map_err(|e| Reply::bad(&e.to_string()))?;
            (user.map_or(Scope::All, |u| Scope::User(u.as_str().to_string())), path.len() == 1)
        }
        ("GET", ["self"]) | ("GET", ["self", "stats"]) => {
            let me = call.caller().await?.user.clone();
            (Scope::User(me.as_str().to_string()), path.len() == 2)
        }
        _ => return Err(call.no_route()),
    };
    let now = crate::bus::proof::now_secs();
    let end = call.query_i64("end_timestamp")?.unwrap_or(now);
    let start = call.query_i64("start_timestamp")?.unwrap_or(end - DEFAULT_WINDOW);
    if start > end {
        return Err(Reply::bad("start_timestamp is after end_timestamp"));
    }
    if end - start > query::MAX_WINDOW {
        return Err(Reply::bad(&format!("the window is longer than {} days", query::MAX_WINDOW / 86_400)));
    }
    let quota = call.ctx.quota.as_ref().ok_or_else(|| Reply::unavailable("quota store unavailable"))?;
    let kv = call
        .ctx
        .stats_kv
        .get_or_try_init(|| query::open(quota.jetstream()))
        .await
        .map_err(|e| Reply::unavailable(format!("usage statistics: {e}")))?;
    let periods = query::read(kv, &scope, start, end).await.map_err(Reply::unavailable)?;
    if stats {
        let report = Report::build(start, end, &periods);
        return Ok(Reply::ok(serde_json::to_value(&report).unwrap_or_else(|_| json!({}))));
    }
    let user = match &scope {
        Scope::User(u) => Some((u.as_str(), u.as_str())),
        Scope::All => None,
    };
    Ok(Reply::ok(json!(query::quota_rows(&periods, user))))
}
