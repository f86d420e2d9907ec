//! The balance of the NEW-API behind CodeSwitch's channels, for `ailurus channels`.
//!
//! A NEW-API answers two questions (QuantumNous/new-api, `router/api-router.go`):
//! `GET /api/usage/token/` with the relay key as a bearer gives that key's own quota, and
//! `GET /api/user/self` with a personal access token and `New-Api-User: <id>` gives the
//! account's. The channels carry only the relay key, so the key's quota is asked unless
//! `NEW_API_ACCESS_TOKEN` (and `NEW_API_USER`) are set. Quota is in NEW-API's units, 500,000
//! per dollar. Neither credential is ever printed: a failure says what answered, redacted.

use crate::channel::{ChannelConfig, ChannelOrigin};
use serde_json::Value;
use std::time::Duration;

/// NEW-API's quota units per US dollar (`common.QuotaPerUnit`).
const UNITS_PER_DOLLAR: f64 = 500_000.0;

/// The longest one balance question may take.
const ASK_LIMIT: Duration = Duration::from_secs(5);

/// One NEW-API to ask: its root URL and the relay key its channels use.
struct Account {
    /// `https://host` without a trailing `/v1`.
    root: String,
    /// The relay key (`sk-…`).
    key: String,
}

/// One line per NEW-API that `channels` reach, with its balance or why it is unknown.
pub async fn lines(channels: &[ChannelConfig], env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut accounts: Vec<Account> = Vec::new();
    for c in channels.iter().filter(|c| matches!(c.origin, ChannelOrigin::NewApiEnv | ChannelOrigin::CodeSwitchApp)) {
        let root = c.base_url.trim_end_matches('/').trim_end_matches("/v1").to_string();
        let Some(key) = c.keys().ok().and_then(|k| k.first().map(|s| s.expose().to_string())) else { continue };
        if !accounts.iter().any(|a| a.root == root) {
            accounts.push(Account { root, key });
        }
    }
    if accounts.is_empty() {
        return Vec::new();
    }
    let access = env("NEW_API_ACCESS_TOKEN").filter(|t| !t.trim().is_empty());
    let user = env("NEW_API_USER").filter(|u| !u.trim().is_empty());
    let http = match reqwest::Client::builder().timeout(ASK_LIMIT).build() {
        Ok(c) => c,
        Err(e) => return vec![format!("NEW-API balance: no HTTP client: {e}")],
    };
    let mut out = Vec::new();
    for a in &accounts {
        let secrets: Vec<&str> = [Some(a.key.as_str()), access.as_deref()].into_iter().flatten().collect();
        let line = match (&access, &user) {
            (Some(token), Some(id)) => account_balance(&http, &a.root, token, id).await,
            _ => key_balance(&http, &a.root, &a.key).await,
        };
        let line = line.unwrap_or_else(|why| format!("balance unknown: {why}"));
        out.push(crate::redact::redact(&format!("NEW-API at {}: {line}", a.root), &secrets));
    }
    out
}

/// `GET <root>/api/usage/token/` with the relay key.
async fn key_balance(http: &reqwest::Client, root: &str, key: &str) -> Result<String, String> {
    let body = ask(http.get(format!("{root}/api/usage/token/")).bearer_auth(key)).await?;
    let data = body.get("data").filter(|_| body.get("code").and_then(Value::as_bool) == Some(true));
    let Some(data) = data else { return Err(message(&body)) };
    let name = data.get("name").and_then(Value::as_str).unwrap_or("");
    if data.get("unlimited_quota").and_then(Value::as_bool) == Some(true) {
        return Ok(format!(
            "key {name:?} has unlimited quota (the account's balance needs NEW_API_ACCESS_TOKEN and NEW_API_USER)"
        ));
    }
    let left = units(data, "total_available")?;
    let used = units(data, "total_used").unwrap_or(0);
    Ok(format!("key {name:?} has {} left ({} units; {} used)", dollars(left), group(left), dollars(used)))
}

/// `GET <root>/api/user/self` with an access token and `New-Api-User`.
async fn account_balance(http: &reqwest::Client, root: &str, token: &str, user: &str) -> Result<String, String> {
    let req = http.get(format!("{root}/api/user/self")).header("Authorization", token).header("New-Api-User", user);
    let body = ask(req).await?;
    let data = body.get("data").filter(|_| body.get("success").and_then(Value::as_bool) == Some(true));
    let Some(data) = data else { return Err(message(&body)) };
    let name = data.get("username").and_then(Value::as_str).unwrap_or("");
    let left = units(data, "quota")?;
    let used = units(data, "used_quota").unwrap_or(0);
    let requests = data.get("request_count").and_then(Value::as_i64).unwrap_or(0);
    Ok(format!(
        "account {name:?} (user {user}) has {} left ({} units; {} used, {requests} requests)",
        dollars(left),
        group(left),
        dollars(used)
    ))
}

/// Send `req`; its JSON body, or why there is none.
async fn ask(req: reqwest::RequestBuilder) -> Result<Value, String> {
    let resp =
        req.send().await.map_err(|e| if e.is_timeout() { "no answer within 5 s".into() } else { e.to_string() })?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if status.is_success() => Ok(v),
        Ok(v) => Err(format!("HTTP {}: {}", status.as_u16(), message(&v))),
        Err(_) => Err(format!("HTTP {}: not JSON", status.as_u16())),
    }
}

/// The `message` of a NEW-API answer.
fn message(body: &Value) -> String {
    body.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or("no data").to_string()
}

fn units(data: &Value, field: &str) -> Result<i64, String> {
    data.get(field).and_then(Value::as_i64).ok_or_else(|| format!("the answer has no {field}"))
}

fn dollars(units: i64) -> String {
    let d = units as f64 / UNITS_PER_DOLLAR;
    if d < 0.0 {
        format!("-${:.2}", -d)
    } else {
        format!("${d:.2}")
    }
}

/// `1234567` → `1,234,567`.
fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_new_api_shows_them() {
        for (units, want_dollars, want_units) in [
            (5_000_000, "$10.00", "5,000,000"),
            (0, "$0.00", "0"),
            (250_000, "$0.50", "250,000"),
            (-500_000, "-$1.00", "-500,000"),
            (999, "$0.00", "999"),
        ] {
            assert_eq!((dollars(units).as_str(), group(units).as_str()), (want_dollars, want_units), "{units}");
        }
    }
}
