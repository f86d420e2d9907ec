//! `/api/token/…`: API tokens (`sk-…`). A user lists, reads, creates, changes and deletes
//! its own; an admin any user's (`?user=` / the body's `user_id`). The token itself is shown
//! only when created. Beside NEW-API's fields a token has Ailurus's rate limits, `rpm`,
//! `tpm` and `concurrency` (across all workers; `null` or absent on create: none; on update
//! absent keeps, `0` or `null` removes, a positive number sets).

use super::{unix, Answer, Call, Reply};
use crate::bus::subjects::Token;
use crate::quota::tokens::{RateLimits, TokenRecord, TokenStatus};
use serde::Deserialize;
use serde_json::{json, Value};

/// The `token` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) => list(call, None).await,
        ("GET", ["search"]) => list(call, call.query("keyword").or(call.query("token"))).await,
        ("GET", [id]) => {
            let (hash, rec) = find(call, id).await?;
            Ok(Reply::ok(shown(call, &hash, &rec).await))
        }
        ("POST", []) => create(call).await,
        ("PUT", []) => update(call).await,
        ("DELETE", [id]) => {
            let (hash, _) = find(call, id).await?;
            let rec = store(call)?
                .modify(&hash, |r| {
                    r.status = TokenStatus::Deleted;
                    Ok(())
                })
                .await
                .map_err(|e| Reply::fail(409, &e))?;
            event(call, "deleted", &rec).await;
            Ok(Reply::ok(Value::Null))
        }
        ("POST", [_, "key"]) => Err(Reply::fail(404, "a token is shown once, when it is created; make a new one")),
        _ => Err(call.no_route()),
    }
}

/// A token as NEW-API shows it (never the token; `key` is masked).
pub(super) async fn shown(call: &Call<'_>, hash: &str, r: &TokenRecord) -> Value {
    let used = match (&call.ctx.quota, Token::new("token_id", hash)) {
        (Some(q), Ok(t)) => q.token_used(&t).await.unwrap_or(0),
        _ => 0,
    };
    json!({
        "id": r.id, "user_id": r.user_id, "name": r.name, "key": format!("sk-ail-…{}", hash.get(..4).unwrap_or("")),
        "status": if r.status == TokenStatus::Active { 1 } else { 2 },
        "created_time": unix(&r.created_at), "accessed_time": 0,
        "expired_time": r.expires_at.as_deref().map_or(-1, unix),
        "remain_quota": r.quota_limit.map_or(-1, |l| l - used), "unlimited_quota": r.quota_limit.is_none(),
        "used_quota": used, "model_limits_enabled": !r.models.is_empty(), "model_limits": r.models.join(","),
        "rpm": r.rpm, "tpm": r.tpm, "concurrency": r.concurrency,
    })
}

/// The caller's tokens (hash, record), oldest first.
async fn own(call: &Call<'_>, user: &str) -> Result<Vec<(String, TokenRecord)>, Reply> {
    let tokens = call.ctx.tokens.as_ref().ok_or_else(|| Reply::unavailable("token store unavailable"))?;
    let mut list: Vec<_> =
        tokens.list().await.map_err(Reply::unavailable)?.into_iter().filter(|(_, r)| r.user_id == user).collect();
    // RFC 3339 with the same offset and precision: the text orders as the time.
    list.sort_by(|a, b| (&a.1.created_at, &a.1.id).cmp(&(&b.1.created_at, &b.1.id)));
    Ok(list)
}

fn store<'a>(call: &Call<'a>) -> Result<&'a crate::quota::tokens::TokenStore, Reply> {
    call.ctx.tokens.as_ref().ok_or_else(|| Reply::unavailable("token store unavailable"))
}

/// Whose tokens a call is about: the caller's, or for an admin the user named by `?user=`
/// (or the body's `user_id`) if the admin outranks it.
async fn owner(call: &Call<'_>, named: Option<&str>) -> Result<String, Reply> {
    let me = call.caller().await?;
    let Some(named) = named.filter(|n| *n != me.user.as_str()) else { return Ok(me.user.to_string()) };
    if !me.is_admin() {
        return Err(Reply::forbidden());
    }
    let rec = match &call.ctx.users {
        Some(users) => match named.parse::<i64>() {
            Ok(n) => users.by_id(n).await,
            Err(_) => users.get(named).await,
        }
        .map_err(Reply::unavailable)?,
        None => None,
    };
    let (name, role) = rec.map_or((named.to_string(), crate::quota::users::role::COMMON), |r| (r.username, r.role));
    if !me.outranks(role) {
        return Err(Reply::fail(403, "permission denied: the user's role is not below yours"));
    }
    Token::new("user_id", &name).map_err(|e| Reply::bad(&e.to_string()))?;
    Ok(name)
}

/// The token with short id `id` that the caller may manage: its own, or for an admin one
/// of a user it outranks; 404 otherwise (another user's token is not found, not forbidden).
async fn find(call: &Call<'_>, id: &str) -> Result<(String, TokenRecord), Reply> {
    let me = call.caller().await?;
    let found = store(call)?
        .list()
        .await
        .map_err(Reply::unavailable)?
        .into_iter()
        .find(|(_, r)| r.id == id && r.status != TokenStatus::Deleted)
        .ok_or_else(|| Reply::not_found("token"))?;
    if found.1.user_id == me.user.as_str() {
        return Ok(found);
    }
    if !me.is_admin() {
        return Err(Reply::not_found("token"));
    }
    owner(call, Some(&found.1.user_id)).await?;
    Ok(found)
}

/// `GET /api/token/?p=&page_size=[&user=]` and `GET /api/token/search?keyword=`: tokens,
/// newest first, paged.
async fn list(call: &Call<'_>, keyword: Option<&str>) -> Answer {
    let user = owner(call, call.query("user")).await?;
    let page = call.page()?;
    let mut all = own(call, &user).await?;
    all.retain(|(_, r)| r.status != TokenStatus::Deleted && keyword.is_none_or(|k| r.name.contains(k) || r.id == k));
    all.reverse();
    let (cut, total) = page.cut(all);
    let mut items = Vec::new();
    for (hash, r) in cut {
        items.push(shown(call, &hash, &r).await);
    }
    Ok(page.reply(items, total))
}

/// What a create or update may set (NEW-API's names).
#[derive(serde::Deserialize)]
struct TokenBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<i64>,
    /// Unix seconds, or -1 for never.
    #[serde(default)]
    expired_time: Option<i64>,
    #[serde(default)]
    remain_quota: Option<i64>,
    #[serde(default)]
    unlimited_quota: Option<bool>,
    #[serde(default)]
    model_limits_enabled: Option<bool>,
    #[serde(default)]
    model_limits: Option<String>,
    /// Requests per minute (`Some(None)`: explicitly none).
    #[serde(default, deserialize_with = "limit")]
    rpm: Option<Option<i64>>,
    /// Tokens per minute.
    #[serde(default, deserialize_with = "limit")]
    tpm: Option<Option<i64>>,
    /// Requests in flight at once.
    #[serde(default, deserialize_with = "limit")]
    concurrency: Option<Option<i64>>,
}

/// A rate limit field: present (`Some`), with `null` as `Some(None)`.
fn limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Ok(Some(Option::<i64>::deserialize(d)?))
}

/// A limit as stored: none for `null` or `0`, a 400 naming it when negative or too large.
fn bound<T: TryFrom<i64>>(name: &str, v: Option<i64>) -> Result<Option<T>, Reply> {
    match v {
        None | Some(0) => Ok(None),
        Some(n) => T::try_from(n)
            .ok()
            .filter(|_| n > 0)
            .map(Some)
            .ok_or_else(|| Reply::bad(&format!("{name} must be a whole number from 0 (no limit) up"))),
    }
}

impl TokenBody {
    /// The expiry as RFC 3339 (`Ok(None)`: never), when given.
    fn expiry(&self) -> Result<Option<Option<String>>, Reply> {
        match self.expired_time {
            None => Ok(None),
            Some(t) if t < 0 => Ok(Some(None)),
            Some(t) => time::OffsetDateTime::from_unix_timestamp(t)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .map(|t| Some(Some(t)))
                .ok_or_else(|| Reply::bad("expired_time is not a time")),
        }
    }

    /// The rate limits given, each `None` when absent (keep) or `Some(limit)`.
    #[allow(clippy::type_complexity)]
    fn limits(&self) -> Result<(Option<Option<u32>>, Option<Option<u64>>, Option<Option<u32>>), Reply> {
        Ok((
            self.rpm.map(|v| bound("rpm", v)).transpose()?,
            self.tpm.map(|v| bound("tpm", v)).transpose()?,
            self.concurrency.map(|v| bound("concurrency", v)).transpose()?,
        ))
    }

    /// The model patterns, when given.
    fn models(&self) -> Option<Vec<String>> {
        match (self.model_limits_enabled, &self.model_limits) {
            (Some(false), _) => Some(Vec::new()),
            (_, Some(m)) => Some(m.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()),
            _ => None,
        }
    }
}

/// `POST /api/token/`: a new token for the caller (or, for an admin, `user_id`); the only
/// answer that carries the token itself (`data.key`).
async fn create(call: &Call<'_>) -> Answer {
    let b: TokenBody = call.json()?;
    let named = b.user_id.as_ref().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    let user = owner(call, named.as_deref()).await?;
    let name = b.name.clone().unwrap_or_else(|| "default".into());
    if name.chars().count() > 50 {
        return Err(Reply::bad("name is longer than 50 characters"));
    }
    let expires = match b.expiry()? {
        Some(Some(t)) => Some((unix(&t) - crate::bus::proof::now_secs()).max(1)),
        _ => None,
    };
    let limit = if b.unlimited_quota.unwrap_or(true) { None } else { Some(b.remain_quota.unwrap_or(0).max(0)) };
    let (rpm, tpm, concurrency) = b.limits()?;
    let rates = RateLimits { rpm: rpm.flatten(), tpm: tpm.flatten(), concurrency: concurrency.flatten() };
    let (plain, rec) = store(call)?
        .create_with_limits(&user, &name, expires, b.models().unwrap_or_default(), limit, rates)
        .await
        .map_err(Reply::unavailable)?;
    event(call, "created", &rec).await;
    let mut data = shown(call, &crate::credential::hash(&plain), &rec).await;
    data["key"] = json!(plain);
    Ok(Reply::ok(data))
}

/// `PUT /api/token/[?status_only=true]`: change a token's name, status (1 on, 2 off),
/// expiry, remaining quota, models or rate limits.
async fn update(call: &Call<'_>) -> Answer {
    let b: TokenBody = call.json()?;
    let id = b.id.clone().ok_or_else(|| Reply::bad("id is required"))?;
    let (hash, _) = find(call, &id).await?;
    let status_only = call.query("status_only").is_some_and(|v| v == "true");
    let status = match b.status {
        None => None,
        Some(1) => Some(TokenStatus::Active),
        Some(2) => Some(TokenStatus::Disabled),
        Some(_) => return Err(Reply::bad("status must be 1 (enabled) or 2 (disabled)")),
    };
    let expiry = b.expiry()?;
    let models = b.models();
    let (rpm, tpm, concurrency) = b.limits()?;
    let used = match (&call.ctx.quota, Token::new("token_id", &hash)) {
        (Some(q), Ok(t)) => q.token_used(&t).await.map_err(|e| Reply::fail(e.status, &e.message))?,
        _ => 0,
    };
    let rec = store(call)?
        .modify(&hash, |r| {
            if let Some(s) = status {
                r.status = s;
            }
            if status_only {
                return Ok(());
            }
            if let Some(n) = &b.name {
                r.name.clone_from(n);
            }
            if let Some(e) = &expiry {
                r.expires_at.clone_from(e);
            }
            if let Some(m) = &models {
                r.models.clone_from(m);
            }
            if let Some(v) = rpm {
                r.rpm = v;
            }
            if let Some(v) = tpm {
                r.tpm = v;
            }
            if let Some(v) = concurrency {
                r.concurrency = v;
            }
            match (b.unlimited_quota, b.remain_quota) {
                (Some(true), _) => r.quota_limit = None,
                (_, Some(remain)) => r.quota_limit = Some(used + remain.max(0)),
                _ => {}
            }
            Ok(())
        })
        .await
        .map_err(|e| Reply::fail(409, &e))?;
    if status == Some(TokenStatus::Disabled) {
        event(call, "disabled", &rec).await;
    }
    Ok(Reply::ok(shown(call, &hash, &rec).await))
}

/// The `user.<id>.auth` event of a token change.
async fn event(call: &Call<'_>, what: &str, rec: &TokenRecord) {
    let ev = crate::quota::auth::AuthEvent {
        event: what,
        user_id: &rec.user_id,
        token_id: Some(&rec.id),
        reason: None,
        timestamp: crate::clock::now_rfc3339(),
    };
    crate::quota::auth::publish_event(&call.ctx.client, &ev).await;
}

/// The older `ailurus.api.user_token` operation: the caller's tokens as a plain list.
pub(super) async fn legacy_list(call: &Call<'_>) -> Answer {
    let me = call.caller().await?;
    let mut items = Vec::new();
    for (hash, r) in own(call, me.user.as_str()).await? {
        items.push(shown(call, &hash, &r).await);
    }
    Ok(Reply::ok(json!(items)))
}
