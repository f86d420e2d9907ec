//! `/api/token/…`: API tokens (`sk-…`). A user lists, reads, creates, changes and deletes
//! its own; an admin any user's (`?user=` / the body's `user_id`). The token itself is shown
//! only when created.

use super::{unix, Answer, Call, Reply};
use crate::bus::subjects::Token;
use crate::quota::tokens::{TokenRecord, TokenStatus};
use serde_json::{json, Value};

/// The `token` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) => list(call).await,
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
    })
}

/// The caller's tokens (hash, record), oldest first.
async fn own(call: &Call<'_>, user: &str) -> Result<Vec<(String, TokenRecord)>, Reply> {
    let tokens = call.ctx.tokens.as_ref().ok_or_else(|| Reply::unavailable("token store unavailable"))?;
    let mut list: Vec<_> =
        tokens.list().await.map_err(Reply::unavailable)?.into_iter().filter(|(_, r)| r.user_id == user).collect();
    list.sort_by(|a, b| (unix(&a.1.created_at), &a.1.id).cmp(&(unix(&b.1.created_at), &b.1.id)));
    Ok(list)
}

/// `GET /api/token/?p=&page_size=`: the caller's tokens, paged.
async fn list(call: &Call<'_>) -> Answer {
    let me = call.caller().await?;
    let page = call.page()?;
    let mut shown_all = Vec::new();
    for (hash, r) in own(call, me.user.as_str()).await? {
        shown_all.push(shown(call, &hash, &r).await);
    }
    Ok(page.of(shown_all))
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
