//! The NEW-API-compatible management API over NATS. The bridge forwards `/api/<family>…` to
//! `ailurus.api.<family>` (a queue group: any worker answers) with `Ailurus-Op: <METHOD>
//! <path below the family>[?<query>]`, the body, `New-Api-User` and a proof of possession;
//! a worker answers with NEW-API's envelope `{success, message, data}` and the HTTP status
//! in `Ailurus-Status`.
//!
//! This file is the framework: [`Call`] (method, path segments, query, body, and the caller,
//! authenticated once on first use), [`Reply`] (the envelope), [`Page`] (NEW-API's `p` /
//! `page_size` → `{items, total, page, page_size}`), and the dispatch table in [`answer`].
//! Each endpoint family is one file whose `serve` matches `(method, path segments)`:
//! adding a family is one file and one line in [`answer`] (and one in the bridge's list of
//! families, `bridge::routes`).
//!
//! Credentials: an API token (`Authorization: Bearer sk-…`) gives its user's own account at
//! most a common user's rights — a token never authorises admin operations —; NEW-API's
//! access token (`Authorization: <access token>` with `New-Api-User: <id>`, made by
//! `GET /api/user/token`) gives the user's role (common 1, admin 10, root 100).

mod channel;
mod data;
mod log;
mod log_stream;
mod pricing;
mod redemption;
mod status;
mod token;
mod user;

use super::WorkerCtx;
use crate::bus::headers;
use crate::bus::subjects::{self, Token};
use crate::quota::auth::{authenticate_api, credential_from, ApiIdentity};
use crate::quota::tokens::TokenRecord;
use crate::quota::users::{role, UserRecord};
use crate::quota::AuthMode;
use async_nats::{HeaderMap, Message};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// Answer one API request.
pub(crate) async fn handle(ctx: &WorkerCtx, msg: Message) {
    let Some(reply) = msg.reply.clone() else { return };
    if !super::handler::reply_is_safe(&msg) {
        return;
    }
    let family = subjects::last_token(&msg.subject);
    let call = Call::parse(ctx, &msg, family);
    if log_stream::wanted(family, &call) {
        return log_stream::serve(&call, reply).await;
    }
    let r = answer(family, &call).await;
    send(ctx, reply, &r).await;
}

/// Send `r` as the one final reply.
async fn send(ctx: &WorkerCtx, reply: async_nats::Subject, r: &Reply) {
    let mut h = HeaderMap::new();
    h.insert(headers::KIND, if r.status == 200 { "done" } else { "error" });
    h.insert(headers::STATUS, r.status.to_string().as_str());
    h.insert(headers::CONTENT_TYPE, "application/json");
    if let Err(e) = ctx.client.publish_with_headers(reply, h, r.body.to_string().into()).await {
        tracing::debug!(error = %e, "api reply failed");
    }
}

/// The dispatch table: subject's last token → the family's `serve`.
async fn answer(family: &str, call: &Call<'_>) -> Reply {
    let answered = match family {
        "status" => status::serve(call).await,
        "user" | "user_self" => user::serve(call).await,
        "token" => token::serve(call).await,
        "channel" => channel::serve(call).await,
        "user_token" => token::legacy_list(call).await,
        "log" => log::serve(call).await,
        "data" => data::serve(call).await,
        "pricing" => pricing::serve(call).await,
        "group" => pricing::serve_groups(call).await,
        "redemption" => redemption::serve(call).await,
        other => Err(Reply::fail(404, &format!("unknown API operation {other:?}"))),
    };
    answered.unwrap_or_else(|e| e)
}

/// An answer: the HTTP status and NEW-API's envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    /// The HTTP status (`Ailurus-Status`).
    pub status: u16,
    /// `{success, message, data}`.
    pub body: Value,
}

/// What a family's handler returns: `Err` short-cuts with `?`.
pub(crate) type Answer = Result<Reply, Reply>;

impl Reply {
    /// Success with `data`.
    pub fn ok(data: Value) -> Self {
        Self { status: 200, body: json!({"success": true, "message": "", "data": data}) }
    }

    /// A refusal or failure.
    pub fn fail(status: u16, message: &str) -> Self {
        Self { status, body: json!({"success": false, "message": message, "data": null}) }
    }

    /// 403: the caller may not do this.
    pub fn forbidden() -> Self {
        Self::fail(403, "permission denied: this needs a higher role")
    }

    /// 404 for a thing the caller may not see or that does not exist (the same answer).
    pub fn not_found(what: &str) -> Self {
        Self::fail(404, &format!("{what} not found"))
    }

    /// 400 for bad input.
    pub fn bad(message: &str) -> Self {
        Self::fail(400, message)
    }

    /// 503 for a store that did not answer (its message carries no secret).
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::fail(503, &e.to_string())
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The user's name (quota, tokens and ledger key).
    pub user: Token,
    /// The user's record, when it has one (a quota-only user has none).
    pub record: Option<UserRecord>,
    /// The rights of this call: the user's role by access token, at most common by token.
    pub role: i64,
    /// The API token used, if any (hash, record).
    pub token: Option<(Token, TokenRecord)>,
}

impl Caller {
    /// Whether this call has admin rights.
    pub fn is_admin(&self) -> bool {
        self.role >= role::ADMIN
    }

    /// Whether this call may manage a user of role `other` (admins manage users below
    /// them, root everyone).
    pub fn outranks(&self, other: i64) -> bool {
        self.role == role::ROOT || (self.is_admin() && other < self.role)
    }
}

/// One API call.
pub(crate) struct Call<'a> {
    /// The worker.
    pub ctx: &'a WorkerCtx,
    /// `GET`, `POST`, `PUT`, `DELETE`, …
    pub method: String,
    /// The path below the family, without empty segments (`/5/` → `["5"]`).
    segments: Vec<String>,
    /// The query, decoded.
    query: Vec<(String, String)>,
    /// The message (body, headers, credential).
    msg: &'a Message,
    /// The caller, authenticated on first use.
    caller: OnceCell<Result<Caller, Reply>>,
}

impl<'a> Call<'a> {
    fn parse(ctx: &'a WorkerCtx, msg: &'a Message, family: &str) -> Self {
        let op = msg.headers.as_ref().and_then(|h| h.get(headers::OP)).map(|v| v.as_str().to_string());
        let target = match (family, op) {
            ("user_self", _) => "GET /self".to_string(),
            (_, Some(op)) => op,
            (_, None) => "GET /".to_string(),
        };
        let (method, rest) = target.split_once(' ').unwrap_or((target.as_str(), "/"));
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        Self {
            ctx,
            method: method.to_ascii_uppercase(),
            segments: path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            query: form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
            msg,
            caller: OnceCell::new(),
        }
    }

    /// `(method, path segments)`, to match a route on.
    pub fn route(&self) -> (&str, Vec<&str>) {
        (self.method.as_str(), self.segments.iter().map(String::as_str).collect())
    }

    /// The answer to a route no family knows.
    pub fn no_route(&self) -> Reply {
        Reply::fail(404, &format!("no API route for {} /{}", self.method, self.segments.join("/")))
    }

    /// A query parameter (the first, if repeated).
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// A whole-number query parameter; a present but malformed one is a 400.
    pub fn query_i64(&self, key: &str) -> Result<Option<i64>, Reply> {
        self.query(key)
            .map(|v| v.trim().parse::<i64>().map_err(|_| Reply::bad(&format!("{key} must be a whole number"))))
            .transpose()
    }

    /// NEW-API's paging (`p` from 1, `page_size` default 10, at most 100).
    pub fn page(&self) -> Result<Page, Reply> {
        let p = self.query_i64("p")?.unwrap_or(1).max(1);
        let size = self.query_i64("page_size")?.unwrap_or(10).clamp(1, 100);
        Ok(Page { page: p as usize, size: size as usize })
    }

    /// The body as JSON of type `T` (a 400 naming what is wrong otherwise).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Reply> {
        serde_json::from_slice(&self.msg.payload).map_err(|e| Reply::bad(&format!("invalid JSON body: {e}")))
    }

    /// The authenticated caller (401 without a good credential; 404 in open mode, which has
    /// no users).
    pub async fn caller(&self) -> Result<&Caller, Reply> {
        self.caller.get_or_init(|| identify(self.ctx, self.msg)).await.as_ref().map_err(Clone::clone)
    }

    /// The caller, if an admin (403 otherwise).
    pub async fn admin(&self) -> Result<&Caller, Reply> {
        let c = self.caller().await?;
        if c.is_admin() {
            Ok(c)
        } else {
            Err(Reply::forbidden())
        }
    }

    /// The caller, if root (403 otherwise).
    pub async fn root(&self) -> Result<&Caller, Reply> {
        let c = self.caller().await?;
        if c.role == role::ROOT {
            Ok(c)
        } else {
            Err(Reply::forbidden())
        }
    }
}

/// Authenticate the message's credential (see the module's doc).
async fn identify(ctx: &WorkerCtx, msg: &Message) -> Result<Caller, Reply> {
    if ctx.auth.mode == AuthMode::Open {
        return Err(Reply::fail(404, "the management API needs token authentication (auth.mode = \"token\")"));
    }
    let Some(tokens) = &ctx.tokens else { return Err(Reply::unavailable("token store unavailable")) };
    let trace = msg.headers.as_ref().and_then(|h| h.get(headers::TRACE)).map(|v| v.as_str().to_string());
    let cred = credential_from(msg, trace.as_deref(), None);
    let identity = authenticate_api(tokens, ctx.users.as_ref(), cred.as_ref())
        .await
        .map_err(|e| Reply::fail(e.error.status, &e.error.message))?;
    match identity {
        ApiIdentity::Token(p) => {
            let record = match &ctx.users {
                Some(users) => users.get(p.user.as_str()).await.map_err(Reply::unavailable)?,
                None => None,
            };
            if record.as_ref().is_some_and(|r| r.status != 1) {
                return Err(Reply::fail(403, "this user is disabled"));
            }
            Ok(Caller { user: p.user, record, role: role::COMMON, token: p.token })
        }
        ApiIdentity::Access(rec) => {
            let claimed = msg.headers.as_ref().and_then(|h| h.get(headers::NEW_API_USER)).map(|v| v.as_str().trim());
            match claimed {
                None | Some("") => {
                    return Err(Reply::fail(401, "an access token needs the New-Api-User header (the user's id)"))
                }
                Some(c) if c != rec.id.to_string() && c != rec.username => {
                    return Err(Reply::fail(401, "New-Api-User does not match the access token's user"))
                }
                Some(_) => {}
            }
            let user = Token::new("user_id", &rec.username).map_err(|e| Reply::fail(500, &e.to_string()))?;
            Ok(Caller { user, role: rec.role, record: Some(rec), token: None })
        }
    }
}

/// NEW-API's paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    /// From 1.
    pub page: usize,
    /// Items per page.
    pub size: usize,
}

impl Page {
    /// Items to skip.
    pub fn offset(&self) -> usize {
        (self.page - 1).saturating_mul(self.size)
    }

    /// This page of `all`, with its total.
    pub fn cut<T>(&self, all: Vec<T>) -> (Vec<T>, usize) {
        let total = all.len();
        (all.into_iter().skip(self.offset()).take(self.size).collect(), total)
    }

    /// `{items, total, page, page_size}` of a page already cut.
    pub fn reply(&self, items: Vec<Value>, total: usize) -> Reply {
        Reply::ok(json!({"items": items, "total": total, "page": self.page, "page_size": self.size}))
    }
}

/// RFC 3339 → Unix seconds (0 when unreadable).
pub(crate) fn unix(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cut_like_new_api() {
        let (items, total) = Page { page: 3, size: 10 }.cut((0..25).collect());
        assert_eq!((items, total), (vec![20, 21, 22, 23, 24], 25));
        assert!(Page { page: 9, size: 10 }.cut((0..25).collect::<Vec<_>>()).0.is_empty());
        let r = Page { page: 3, size: 10 }.reply(vec![json!(1)], 25);
        assert_eq!((r.body["data"]["total"].as_u64(), r.body["data"]["page"].as_u64()), (Some(25), Some(3)));
        assert_eq!(Reply::forbidden().body["success"], json!(false));
    }
}
