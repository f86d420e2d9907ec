//! The NEW-API-compatible user API over NATS (`ailurus.api.user_self`,
//! `ailurus.api.user_token`): the bridge forwards `GET /api/user/self` and
//! `GET /api/user/token` with the caller's credentials; a worker answers with
//! `{success, message, data}` in NEW-API's shape (`quota` is the remaining balance).

use super::WorkerCtx;
use crate::bus::headers;
use crate::bus::subjects;
use crate::quota::auth::{authenticate, credential_from};
use crate::quota::AuthMode;
use async_nats::{HeaderMap, Message};
use serde_json::{json, Value};

/// Answer one API request.
pub(crate) async fn handle(ctx: &WorkerCtx, msg: Message) {
    let Some(reply) = msg.reply.clone() else { return };
    if !super::handler::reply_is_safe(&msg) {
        return;
    }
    let (status, body) = answer(ctx, &msg).await;
    let mut h = HeaderMap::new();
    h.insert(headers::KIND, if status == 200 { "done" } else { "error" });
    h.insert(headers::STATUS, status.to_string().as_str());
    h.insert(headers::CONTENT_TYPE, "application/json");
    if let Err(e) = ctx.client.publish_with_headers(reply, h, body.to_string().into()).await {
        tracing::debug!(error = %e, "api reply failed");
    }
}

fn failure(status: u16, message: &str) -> (u16, Value) {
    (status, json!({"success": false, "message": message, "data": null}))
}

async fn answer(ctx: &WorkerCtx, msg: &Message) -> (u16, Value) {
    let op = subjects::last_token(&msg.subject);
    if ctx.auth.mode == AuthMode::Open {
        return failure(404, "the user API needs token authentication (auth.mode = \"token\")");
    }
    let trace = msg.headers.as_ref().and_then(|h| h.get(headers::TRACE)).map(|v| v.as_str().to_string());
    let token = credential_from(msg, trace.as_deref(), None);
    let principal = match authenticate(ctx.auth.mode, ctx.tokens.as_ref(), token.as_ref(), None, "").await {
        Ok(Some(p)) => p,
        Ok(None) => return failure(401, "no user"),
        Err(e) => return failure(e.error.status, &e.error.message),
    };
    let (Some(quota), Some(tokens)) = (&ctx.quota, &ctx.tokens) else {
        return failure(503, "quota store unavailable");
    };
    match op {
        "user_self" => match quota.balance(&principal.user).await {
            Ok(b) => (
                200,
                json!({"success": true, "message": "", "data": {
                    "id": b.user_id, "username": b.user_id, "display_name": b.user_id, "role": 1, "status": 1,
                    "group": b.group, "quota": b.remain, "used_quota": b.used, "request_count": b.request_count,
                    "quota_total": b.total,
                }}),
            ),
            Err(e) => failure(e.status, &e.message),
        },
        "user_token" => match tokens.list().await {
            Ok(list) => {
                let mut items = Vec::new();
                for (hash, r) in list.into_iter().filter(|(_, r)| r.user_id == principal.user.as_str()) {
                    let used = match subjects::Token::new("token_id", &hash) {
                        Ok(t) => quota.token_used(&t).await.unwrap_or(0),
                        Err(_) => 0,
                    };
                    let expires = r
                        .expires_at
                        .as_deref()
                        .and_then(|t| {
                            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                        })
                        .map_or(-1, |t| t.unix_timestamp());
                    let created =
                        time::OffsetDateTime::parse(&r.created_at, &time::format_description::well_known::Rfc3339)
                            .map_or(0, |t| t.unix_timestamp());
                    items.push(json!({
                        "id": r.id, "name": r.name, "key": format!("sk-ail-…{}", &hash[..4]),
                        "status": if r.status == crate::quota::tokens::TokenStatus::Active { 1 } else { 2 },
                        "created_time": created, "expired_time": expires,
                        "remain_quota": r.quota_limit.map_or(-1, |l| l - used), "unlimited_quota": r.quota_limit.is_none(),
                        "used_quota": used, "model_limits_enabled": !r.models.is_empty(), "model_limits": r.models.join(","),
                    }));
                }
                (200, json!({"success": true, "message": "", "data": items}))
            }
            Err(e) => failure(503, &e),
        },
        other => failure(404, &format!("unknown API operation {other:?}")),
    }
}
