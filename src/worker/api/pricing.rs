//! `GET /api/pricing` (anyone) and `GET /api/group/` (admin): the price table in NEW-API's
//! shape (`model_ratio`: USD per 1M input tokens / 2, `completion_ratio`: output / input,
//! beside the USD prices themselves) and the pricing groups with their ratios.

use super::{Answer, Call, Reply};
use serde_json::{json, Value};

/// The `pricing` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) => {
            let rows: Vec<Value> = call
                .ctx
                .prices
                .entries()
                .iter()
                .map(|e| {
                    json!({
                        "model_name": e.pattern, "quota_type": 0, "model_ratio": e.input / 2.0,
                        "completion_ratio": if e.input > 0.0 { e.output / e.input } else { 0.0 },
                        "model_price": 0, "enable_groups": groups(call),
                        "input_usd_per_mtok": e.input, "output_usd_per_mtok": e.output,
                        "cache_read_usd_per_mtok": e.cache_read, "cache_write_usd_per_mtok": e.cache_write,
                    })
                })
                .collect();
            let mut r = Reply::ok(json!(rows));
            r.body["group_ratio"] = ratios(call);
            Ok(r)
        }
        _ => Err(call.no_route()),
    }
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
    out.extend(call.ctx.group_ratios.keys().filter(|g| *g != "default").cloned());
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
