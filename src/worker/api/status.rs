//! `GET /api/status`: what a NEW-API client reads before logging in (no credential needed).

use super::{Answer, Call, Reply};
use serde_json::json;

/// When this process started (Unix seconds), for `start_time`.
static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

/// The `status` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) => Ok(Reply::ok(json!({
            "system_name": "Ailurus",
            "version": env!("CARGO_PKG_VERSION"),
            "start_time": *STARTED.get_or_init(crate::bus::proof::now_secs),
            "quota_per_unit": crate::pricing::QUOTA_PER_USD as i64,
            "display_in_currency": true,
            "auth_mode": format!("{:?}", call.ctx.auth.mode).to_lowercase(),
            "setup": true,
        }))),
        _ => Err(call.no_route()),
    }
}
