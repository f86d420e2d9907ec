//! `/api/user/…`: the caller's own account (`GET /self`, `GET /token` for a new access
//! token) and, for admins, every user (list, search, get, create, update, delete).

use super::{Answer, Call, Caller, Reply};
use crate::bus::subjects::Token;
use crate::quota::users::{role, UserRecord, UserStore};
use serde_json::{json, Value};

/// The `user` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", ["self"]) => get_self(call).await,
        ("GET", ["token"]) => access_token(call).await,
        ("GET", []) => list(call, None).await,
        ("GET", ["search"]) => list(call, call.query("keyword")).await,
        ("POST", []) => create(call).await,
        ("PUT", []) => update(call).await,
        ("POST", ["manage"]) => manage(call).await,
        ("POST", ["topup"]) => super::redemption::topup(call).await,
        ("GET", [id]) => {
            let (name, rec) = target(call, id).await?;
            Ok(Reply::ok(shown(call, &name, Some(&rec)).await?))
        }
        ("DELETE", [id]) => {
            let (_, rec) = target(call, id).await?;
            users(call)?.delete(&rec).await.map_err(Reply::unavailable)?;
            Ok(Reply::ok(Value::Null))
        }
        _ => Err(call.no_route()),
    }
}

/// The user directory, or a 503.
pub(super) fn users<'a>(call: &Call<'a>) -> Result<&'a UserStore, Reply> {
    call.ctx
        .users
        .as_ref()
        .ok_or_else(|| Reply::unavailable("the USERS bucket is missing (run `ailurus streams apply`)"))
}

/// A user as NEW-API shows it: the record (or, for a quota-only user, its name as the id)
/// with the balance.
pub(super) async fn shown(call: &Call<'_>, name: &Token, rec: Option<&UserRecord>) -> Result<Value, Reply> {
    let quota = call.ctx.quota.as_ref().ok_or_else(|| Reply::unavailable("quota store unavailable"))?;
    let b = quota.balance(name).await.map_err(|e| Reply::fail(e.status, &e.message))?;
    let id = rec.map_or_else(|| json!(b.user_id), |r| json!(r.id));
    Ok(json!({
        "id": id, "username": b.user_id,
        "display_name": rec.map_or(b.user_id.as_str(), |r| r.display_name.as_str()),
        "role": rec.map_or(role::COMMON, |r| r.role), "status": rec.map_or(1, |r| r.status),
        "email": rec.map_or("", |r| r.email.as_str()), "group": b.group,
        "quota": b.remain, "used_quota": b.used, "request_count": b.request_count, "quota_total": b.total,
    }))
}

async fn get_self(call: &Call<'_>) -> Answer {
    let me = call.caller().await?;
    Ok(Reply::ok(shown(call, &me.user, me.record.as_ref()).await?))
}

/// NEW-API's `GET /api/user/token`: a new access token for the caller (the old one stops
/// working), shown once. A caller with an API token gets one only as a common user (a
/// token never leads to admin rights); a quota-only user gets a record first.
async fn access_token(call: &Call<'_>) -> Answer {
    let me: &Caller = call.caller().await?;
    let users = users(call)?;
    if me.token.is_some() && me.record.as_ref().is_some_and(|r| r.role > role::COMMON) {
        return Err(Reply::fail(403, "an admin's access token is made with its access token or `ailurus user token`"));
    }
    if me.record.is_none() {
        users.create(me.user.as_str(), role::COMMON, "").await.map_err(|e| Reply::fail(409, &e))?;
    }
    let token = users.new_access_token(me.user.as_str()).await.map_err(Reply::unavailable)?;
    Ok(Reply::ok(json!(token)))
}

/// The user `id` (a number or a name) that the caller, an admin, may manage: 404 when it
/// does not exist, 403 when its role is not below the caller's (root manages everyone).
async fn target(call: &Call<'_>, id: &str) -> Result<(Token, UserRecord), Reply> {
    let me = call.admin().await?;
    let users = users(call)?;
    let rec = match id.parse::<i64>() {
        Ok(n) => users.by_id(n).await,
        Err(_) => users.get(id).await,
    }
    .map_err(Reply::unavailable)?
    .ok_or_else(|| Reply::not_found("user"))?;
    if !me.outranks(rec.role) {
        return Err(Reply::fail(403, "permission denied: the user's role is not below yours"));
    }
    let name = Token::new("user_id", &rec.username).map_err(|e| Reply::fail(500, &e.to_string()))?;
    Ok((name, rec))
}

/// `GET /api/user/` and `GET /api/user/search?keyword=`: users, paged, by id.
async fn list(call: &Call<'_>, keyword: Option<&str>) -> Answer {
    call.admin().await?;
    let page = call.page()?;
    let group = call.query("group");
    let mut all = users(call)?.list().await.map_err(Reply::unavailable)?;
    if let Some(k) = keyword {
        all.retain(|r| {
            r.id.to_string() == k || r.username.contains(k) || r.display_name.contains(k) || r.email.contains(k)
        });
    }
    let mut items = Vec::new();
    let total = all.len();
    for rec in all.into_iter().skip(page.offset()) {
        if items.len() == page.size {
            break;
        }
        let Ok(name) = Token::new("user_id", &rec.username) else { continue };
        let v = shown(call, &name, Some(&rec)).await?;
        if group.is_none_or(|g| v["group"] == g) {
            items.push(v);
        }
    }
    Ok(page.reply(items, total))
}

/// The fields of a user a create or update may set (NEW-API's names).
#[derive(serde::Deserialize)]
struct UserBody {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    role: Option<i64>,
    #[serde(default)]
    status: Option<i64>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    group: Option<String>,
    /// The remaining quota to set.
    #[serde(default)]
    quota: Option<i64>,
}

/// `POST /api/user/`: a new user, of a role below the caller's.
async fn create(call: &Call<'_>) -> Answer {
    let me = call.admin().await?;
    let b: UserBody = call.json()?;
    let name = b.username.as_deref().ok_or_else(|| Reply::bad("username is required"))?;
    let role = b.role.unwrap_or(role::COMMON);
    if !role::valid(role) {
        return Err(Reply::bad("role must be 1, 10 or 100"));
    }
    if !me.outranks(role) {
        return Err(Reply::fail(403, "permission denied: you can only create users of a role below yours"));
    }
    let rec = users(call)?.create(name, role, b.display_name.as_deref().unwrap_or("")).await.map_err(|e| {
        if e.contains("exists") {
            Reply::fail(409, &e)
        } else {
            Reply::bad(&e)
        }
    })?;
    Ok(Reply::ok(json!({"id": rec.id, "username": rec.username, "role": rec.role})))
}

/// `PUT /api/user/`: change a user's display name, role, status, e-mail, group or
/// remaining quota.
async fn update(call: &Call<'_>) -> Answer {
    let me = call.admin().await?;
    let b: UserBody = call.json()?;
    let id = b.id.ok_or_else(|| Reply::bad("id is required"))?;
    let (name, rec) = target(call, &id.to_string()).await?;
    if b.username.as_deref().is_some_and(|u| u != rec.username) {
        return Err(Reply::bad("a user's username cannot change (its quota and ledger are keyed by it)"));
    }
    let mut new = rec.clone();
    if let Some(r) = b.role {
        if !role::valid(r) || !me.outranks(r) {
            return Err(Reply::fail(403, "permission denied: the new role must be below yours"));
        }
        new.role = r;
    }
    if let Some(s) = b.status {
        if !matches!(s, 1 | 2) {
            return Err(Reply::bad("status must be 1 (enabled) or 2 (disabled)"));
        }
        new.status = s;
    }
    if let Some(d) = b.display_name {
        new.display_name = d;
    }
    if let Some(e) = b.email {
        new.email = e;
    }
    save(call, &name, &new, b.group.as_deref(), b.quota).await
}

/// Write a changed record (compare-and-set), then the group or the remaining quota.
async fn save(call: &Call<'_>, name: &Token, new: &UserRecord, group: Option<&str>, remain: Option<i64>) -> Answer {
    let users = users(call)?;
    let (_, rev) =
        users.get_rev(&new.username).await.map_err(Reply::unavailable)?.ok_or_else(|| Reply::not_found("user"))?;
    users.update(new, rev).await.map_err(|e| Reply::fail(409, &e))?;
    if group.is_some() || remain.is_some() {
        let quota = call.ctx.quota.as_ref().ok_or_else(|| Reply::unavailable("quota store unavailable"))?;
        let b = quota.balance(name).await.map_err(|e| Reply::fail(e.status, &e.message))?;
        let total = remain.map_or(b.total, |r| b.used + r.max(0));
        quota.set(name, total, group).await.map_err(|e| Reply::fail(e.status, &e.message))?;
    }
    Ok(Reply::ok(shown(call, name, Some(new)).await?))
}

/// `POST /api/user/manage` `{id, action}`: `disable`, `enable`, `delete`, `promote`
/// (common → admin, root only), `demote` (admin → common, root only).
async fn manage(call: &Call<'_>) -> Answer {
    #[derive(serde::Deserialize)]
    struct Manage {
        id: i64,
        action: String,
    }
    let m: Manage = call.json()?;
    let (name, rec) = target(call, &m.id.to_string()).await?;
    let mut new = rec.clone();
    match m.action.as_str() {
        "disable" => new.status = 2,
        "enable" => new.status = 1,
        "delete" => {
            users(call)?.delete(&rec).await.map_err(Reply::unavailable)?;
            return Ok(Reply::ok(Value::Null));
        }
        "promote" | "demote" => {
            call.root().await?;
            new.role = if m.action == "promote" { role::ADMIN } else { role::COMMON };
        }
        other => return Err(Reply::bad(&format!("unknown action {other:?}"))),
    }
    save(call, &name, &new, None, None).await
}
