//! `/api/redemption/…` (admin): top-up codes — list, search, get, create (the codes are in
//! that answer only), change, disable (`DELETE`); and `POST /api/user/topup` `{key}`, a
//! user redeeming one (in `user.rs`, through [`topup`]).

use super::{Answer, Call, Reply};
use crate::quota::redemption::{status, Redemption, Redemptions};
use serde_json::{json, Value};

fn store<'a>(call: &Call<'a>) -> Result<&'a Redemptions, Reply> {
    call.ctx.redemptions.as_ref().ok_or_else(|| Reply::unavailable("the REDEMPTIONS bucket is missing"))
}

fn shown(r: &Redemption) -> Value {
    json!({"id": r.id, "name": r.name, "quota": r.quota, "status": r.status, "created_time": r.created_time,
           "redeemed_time": r.redeemed_time, "used_user_id": r.used_user_id, "key": ""})
}

/// The `redemption` family.
pub(super) async fn serve(call: &Call<'_>) -> Answer {
    call.admin().await?;
    let (method, path) = call.route();
    match (method, path.as_slice()) {
        ("GET", []) | ("GET", ["search"]) => {
            let page = call.page()?;
            let keyword = call.query("keyword");
            let mut all = store(call)?.list().await.map_err(Reply::unavailable)?;
            all.retain(|(_, r)| keyword.is_none_or(|k| r.name.contains(k) || r.id == k));
            let (cut, total) = page.cut(all);
            Ok(page.reply(cut.iter().map(|(_, r)| shown(r)).collect(), total))
        }
        ("GET", [id]) => Ok(Reply::ok(shown(&find(call, id).await?.1))),
        ("POST", []) => {
            #[derive(serde::Deserialize)]
            struct New {
                #[serde(default)]
                name: String,
                quota: i64,
                #[serde(default = "one")]
                count: usize,
            }
            fn one() -> usize {
                1
            }
            let n: New = call.json()?;
            let codes = store(call)?.create(&n.name, n.quota, n.count).await.map_err(|e| Reply::bad(&e))?;
            Ok(Reply::ok(json!(codes)))
        }
        ("PUT", []) => {
            #[derive(serde::Deserialize)]
            struct Change {
                id: String,
                #[serde(default)]
                name: Option<String>,
                #[serde(default)]
                quota: Option<i64>,
                #[serde(default)]
                status: Option<i64>,
            }
            let c: Change = call.json()?;
            let (hash, _) = find(call, &c.id).await?;
            let rec = store(call)?
                .modify(&hash, |r| {
                    if r.status == status::USED {
                        return Err("a used code cannot change".into());
                    }
                    match c.status {
                        Some(s @ (status::UNUSED | status::DISABLED)) => r.status = s,
                        Some(_) => return Err("status must be 1 (unused) or 2 (disabled)".into()),
                        None => {}
                    }
                    if let Some(n) = &c.name {
                        r.name.clone_from(n);
                    }
                    if let Some(q) = c.quota.filter(|q| *q > 0) {
                        r.quota = q;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| Reply::fail(409, &e))?;
            Ok(Reply::ok(shown(&rec)))
        }
        ("DELETE", [id]) => {
            let (hash, _) = find(call, id).await?;
            store(call)?
                .modify(&hash, |r| {
                    if r.status == status::UNUSED {
                        r.status = status::DISABLED;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| Reply::fail(409, &e))?;
            Ok(Reply::ok(Value::Null))
        }
        _ => Err(call.no_route()),
    }
}

async fn find(call: &Call<'_>, id: &str) -> Result<(String, Redemption), Reply> {
    let all = store(call)?.list().await.map_err(Reply::unavailable)?;
    all.into_iter().find(|(_, r)| r.id == id).ok_or_else(|| Reply::not_found("redemption code"))
}

/// `POST /api/user/topup` `{"key": "<code>"}`: the caller redeems a code; `data` is the
/// units added.
pub(super) async fn topup(call: &Call<'_>) -> Answer {
    #[derive(serde::Deserialize)]
    struct Key {
        key: String,
    }
    let me = call.caller().await?;
    let k: Key = call.json()?;
    let quota = call.ctx.quota.as_ref().ok_or_else(|| Reply::unavailable("quota store unavailable"))?;
    let rec = store(call)?.redeem(&k.key, me.user.as_str()).await.map_err(|e| Reply::bad(&e))?;
    quota.topup(&me.user, rec.quota).await.map_err(|e| Reply::fail(e.status, &e.message))?;
    Ok(Reply::ok(json!(rec.quota)))
}
