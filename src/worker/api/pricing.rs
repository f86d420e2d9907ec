//! `/api/pricing` and `/api/group/`: the price table in NEW-API's shape (`model_ratio`: USD
//! per 1M input tokens / 2, `completion_ratio`: output / input, beside the USD prices
//! themselves) and the pricing groups with their ratios.
//!
//! - `GET /api/pricing` (anyone): every row, each with `source` (`kv`: the `PRICES` bucket,
//!   which wins; `config`: the config file's or the built-in ones); for an admin also
//!   `unpriced`, the channels' model patterns no price covers (`[{channel, models}]`), whose
//!   requests are refused (or free with `[pricing] unpriced = "free"`).
//! - `PUT` or `POST /api/pricing` (admin) `{model_name, input_usd_per_mtok,
//!   output_usd_per_mtok, cache_read_usd_per_mtok, cache_write_usd_per_mtok,
//!   max_output_tokens}`: set a pattern's price in `PRICES` (as `ailurus prices set` does;
//!   every worker follows within about a second).
//! - `DELETE /api/pricing?model_name=` (admin): remove a pattern's price from `PRICES` (a
//!   config-file price of the same pattern shows again).
//! - `GET /api/group/` (admin): the group names.

use super::{Answer, Call, Reply};
use crate::pricing::PriceEntry;
use serde_json::{json, Value};

/// The `pricing` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) => list(call).await,
        ("PUT" | "POST", []) => {
            let store = store(call).await?;
            let b: PriceBody = call.json()?;
            let entry = PriceEntry {
                pattern: b.model_name.trim().to_string(),
                input: b.input_usd_per_mtok,
                output: b.output_usd_per_mtok,
                cache_read: b.cache_read_usd_per_mtok,
                cache_write: b.cache_write_usd_per_mtok,
                max_output_tokens: b.max_output_tokens,
            };
            store.set_price(entry.clone()).await.map_err(|e| Reply::bad(&e))?;
            Ok(Reply::ok(row(&entry, "kv", call)))
        }
        ("DELETE", []) | ("DELETE", [_]) => {
            let store = store(call).await?;
            let pattern = match path.as_slice() {
                [p] => Some(*p),
                _ => call.query("model_name"),
            };
            let pattern = pattern.ok_or_else(|| Reply::bad("model_name is required"))?;
            store.delete_price(pattern).await.map_err(|e| Reply::fail(404, &e))?;
            Ok(Reply::ok(Value::Null))
        }
        _ => Err(call.no_route()),
    }
}

/// What a price change sends (the USD prices; NEW-API's ratios are derived from them, not
/// accepted).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    /// The model pattern (`*` and `?` wildcards).
    model_name: String,
    /// USD per 1M uncached input tokens.
    #[serde(default)]
    input_usd_per_mtok: f64,
    /// USD per 1M output tokens.
    #[serde(default)]
    output_usd_per_mtok: f64,
    /// USD per 1M cache-read tokens.
    #[serde(default)]
    cache_read_usd_per_mtok: f64,
    /// USD per 1M cache-write tokens.
    #[serde(default)]
    cache_write_usd_per_mtok: f64,
    /// The output cap of a request that sets none.
    #[serde(default)]
    max_output_tokens: Option<u32>,
}

/// The live store as the calling admin (403 for others, 503 without the buckets).
async fn store(call: &Call<'_>) -> Result<crate::live::store::LiveStore, Reply> {
    let admin = call.admin().await?;
    let live = call.ctx.live.as_ref().ok_or_else(|| {
        Reply::unavailable("the PRICES bucket is missing (run `ailurus streams apply`) or [live] follow is off")
    })?;
    Ok(live.store(&format!("user:{}", admin.user.as_str())))
}

/// One price row in NEW-API's shape.
fn row(e: &PriceEntry, source: &str, call: &Call<'_>) -> Value {
    json!({
        "model_name": e.pattern, "quota_type": 0, "model_ratio": e.input / 2.0,
        "completion_ratio": if e.input > 0.0 { e.output / e.input } else { 0.0 },
        "model_price": 0, "enable_groups": groups(call),
        "input_usd_per_mtok": e.input, "output_usd_per_mtok": e.output,
        "cache_read_usd_per_mtok": e.cache_read, "cache_write_usd_per_mtok": e.cache_write,
        "max_output_tokens": e.max_output_tokens, "source": source,
    })
}

/// `GET /api/pricing`.
async fn list(call: &Call<'_>) -> Answer {
    let pricing = call.ctx.pricing();
    let live: Vec<String> = match &call.ctx.live {
        Some(l) => l.store("api").prices().await.map_err(Reply::unavailable)?,
        None => Vec::new(),
    }
    .into_iter()
    .map(|(_, r)| r.entry.pattern)
    .collect();
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<Value> = pricing
        .table
        .entries()
        .iter()
        // A bucket price hides the file's of the same pattern (it is tried first).
        .filter(|e| seen.insert(e.pattern.clone()))
        .map(|e| row(e, if live.contains(&e.pattern) { "kv" } else { "config" }, call))
        .collect();
    let mut r = Reply::ok(json!(rows));
    r.body["group_ratio"] = ratios(call);
    if call.caller().await.is_ok_and(|c| c.is_admin()) {
        let unpriced: Vec<Value> = call
            .ctx
            .router
            .channels()
            .iter()
            .filter_map(|ch| {
                let (_, missing) = pricing.table.coverage(&ch.config.models);
                (!missing.is_empty()).then(|| json!({"channel": ch.config.name, "models": missing}))
            })
            .collect();
        r.body["unpriced"] = json!(unpriced);
    }
    Ok(r)
}

/// The `group` family.
pub(super) async fn serve_groups(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) => {
            call.admin().await?;
            Ok(Reply::ok(json!(groups(call))))
        }
        _ => Err(call.no_route()),
    }
}

/// Every group name (`default` first).
fn groups(call: &Call<'_>) -> Vec<String> {
    let mut out = vec!["default".to_string()];
    out.extend(call.ctx.pricing().groups.keys().filter(|g| *g != "default").cloned());
    out
}

/// Group → price multiplier.
fn ratios(call: &Call<'_>) -> Value {
    let mut m = serde_json::Map::new();
    for g in groups(call) {
        m.insert(g.clone(), json!(call.ctx.group_ratio(&g)));
    }
    Value::Object(m)
}
