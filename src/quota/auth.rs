//! Who a request is. A request on NATS proves possession of its token for itself alone
//! (`bus::proof`): the token's id is looked up in the workers' in-memory copy of `TOKENS`,
//! the MAC checked with the record's proof key, the time against the window, and the trace
//! id claimed in the replay set. Bearer forms (a plain token, its bare sha256) are refused:
//! the audit stream keeps every request as published.

use super::proof::{Claim, Verdict};
use super::tokens::{TokenRecord, TokenStatus, TokenStore};
use super::AuthMode;
use crate::bus::proof::Presented;
use crate::bus::subjects::{self, Token};
use crate::error::RequestError;
use async_nats::{HeaderMap, Message};
use serde::Serialize;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Billed user.
    pub user: Token,
    /// The token's hash and record, when a token was used.
    pub token: Option<(Token, TokenRecord)>,
}

/// A refusal: 401 (no, unknown, revoked or expired token) or 403 (not allowed), with the
/// user concerned when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    /// The refusal; its message never contains the token.
    pub error: RequestError,
    /// The user concerned, when known (for the `user.<id>.auth` event).
    pub user: Option<String>,
}

impl AuthError {
    fn new(status: u16, message: impl Into<String>, user: Option<&str>) -> Self {
        Self { error: RequestError::new(status, message), user: user.map(str::to_string) }
    }
}

impl AuthError {
    /// A 503 for a store that did not answer (`what`: "token store", …): the caller is
    /// refused rather than trusted on a copy that may be stale; retry in a second.
    fn unavailable(what: &str, e: &str) -> Self {
        tracing::warn!(error = %e, "{what} did not answer; refusing");
        Self { error: RequestError::new(503, format!("{what} unavailable; retry shortly")).retry_after(1), user: None }
    }
}

impl From<AuthError> for RequestError {
    fn from(e: AuthError) -> Self {
        e.error
    }
}

/// A credential as it arrives on NATS.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A proof of possession (`Ailurus-Token-Id`, `Ailurus-Proof-Time`, `Ailurus-Proof`).
    Proof(Box<Presented>),
    /// A form that is refused on the bus, and why (the message says what to send instead).
    Refused(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(***)")
    }
}

/// What to send instead of a refused credential.
const SEND_INSTEAD: &str = "send a proof of possession instead: Ailurus-Token-Id, Ailurus-Proof-Time and \
     Ailurus-Proof (`ailurus sign` prints them; see examples/nats-cli.md)";

/// The credential a message carries: a proof; the old `Ailurus-Token-Sha256` or a plain
/// token (`Authorization`, `x-api-key`, `x-goog-api-key`, the seed `token` field) are
/// [`Credential::Refused`]: `LLM_REQUESTS` keeps every request as published, so either would
/// hand its readers a credential. `trace` is the request's trace id, if it has one.
pub fn credential_from(msg: &Message, trace: Option<&str>, seed_token: Option<&str>) -> Option<Credential> {
    let empty = HeaderMap::new();
    let headers = msg.headers.as_ref().unwrap_or(&empty);
    if header(Some(headers), crate::bus::headers::TOKEN_SHA256).is_some() {
        return Some(Credential::Refused(format!(
            "Ailurus-Token-Sha256 is no longer accepted (a token's hash kept by the audit stream could be replayed); \
             {SEND_INSTEAD}"
        )));
    }
    if let Some(p) = Presented::from_message(msg.subject.as_str(), trace, headers, &msg.payload) {
        return Some(match p {
            Ok(p) => Credential::Proof(Box::new(p)),
            Err(why) => Credential::Refused(format!("{why}; {SEND_INSTEAD}")),
        });
    }
    token_from(Some(headers), seed_token).map(|_| {
        Credential::Refused(format!(
            "a plain API token is not accepted on NATS (the audit stream keeps every request as sent: revoke this \
             token if others can read it); {SEND_INSTEAD}"
        ))
    })
}

/// The first value of header `k`, whatever its case (NATS header names are case-sensitive;
/// HTTP's are not, and clients spell them freely).
fn header(headers: Option<&HeaderMap>, k: &str) -> Option<String> {
    headers
        .and_then(|h| h.iter().find(|(name, _)| AsRef::<str>::as_ref(*name).eq_ignore_ascii_case(k)))
        .and_then(|(_, values)| values.first())
        .map(|v| v.as_str().trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The plain token a request carries, if any.
fn token_from(headers: Option<&HeaderMap>, seed_token: Option<&str>) -> Option<String> {
    let get = |k: &str| header(headers, k);
    if let Some(a) = get("authorization") {
        let t = a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")).unwrap_or(&a).trim().to_string();
        if !t.is_empty() {
            return Some(t);
        }
    }
    get("x-api-key")
        .or_else(|| get("x-goog-api-key"))
        .or_else(|| seed_token.map(str::to_string).filter(|t| !t.is_empty()))
}

/// Authenticate. `claimed_user` is a seed request's `user_id`; `model` is checked against
/// the token's allow-list (empty: no model involved). `Ok(None)` in open mode: nobody is billed.
/// The trace id's claim in the replay set is awaited here (see [`begin`] for a request that
/// overlaps it with its upstream call).
pub async fn authenticate(
    mode: AuthMode,
    store: Option<&TokenStore>,
    token: Option<&Credential>,
    claimed_user: Option<&str>,
    model: &str,
) -> Result<Option<Principal>, AuthError> {
    let (principal, claim) = begin(mode, store, token, claimed_user, model).await?;
    match (&principal, claim) {
        (Some(p), Some(c)) => {
            let trace = match token {
                Some(Credential::Proof(proof)) => proof.bound.trace.as_str(),
                _ => "",
            };
            refusal(&c.verdict().await, p.user.as_str(), trace).map_or(Ok(principal), Err)
        }
        _ => Ok(principal),
    }
}

/// The refusal a claim's verdict calls for, if any (`user` and `trace`: the request's).
pub fn refusal(verdict: &Verdict, user: &str, trace: &str) -> Option<AuthError> {
    match verdict {
        Verdict::Fresh => None,
        Verdict::Replayed => {
            let m = format!(
                "trace_id {trace} was already used with this token (a replayed request): sign each request with a new trace id"
            );
            Some(AuthError::new(401, m, Some(user)))
        }
        Verdict::Unavailable(e) => Some(AuthError::unavailable("proof replay set", e)),
    }
}

/// Authenticate up to the replay set, whose claim is started and handed back: everything a
/// request needs of its credential is checked here, in memory; the caller awaits the claim's
/// verdict (and passes it to [`refusal`]) before anything of the answer leaves the worker.
pub async fn begin(
    mode: AuthMode,
    store: Option<&TokenStore>,
    token: Option<&Credential>,
    claimed_user: Option<&str>,
    model: &str,
) -> Result<(Option<Principal>, Option<Claim>), AuthError> {
    if mode == AuthMode::Open {
        return Ok((None, None));
    }
    if mode == AuthMode::Trusted {
        if let (Some(user), None) = (claimed_user, token) {
            let user = Token::new("user_id", user).map_err(|e| AuthError::new(400, e.to_string(), None))?;
            return Ok((Some(Principal { user, token: None }), None));
        }
    }
    let Some(token) = token else {
        return Err(AuthError::new(401, format!("missing API token: {SEND_INSTEAD}"), None));
    };
    let proof = match token {
        Credential::Proof(p) => p,
        Credential::Refused(why) => return Err(AuthError::new(401, why.clone(), None)),
    };
    let Some(store) = store else {
        return Err(AuthError::new(503, "token store unavailable", None));
    };
    let hash = proof.token_id.as_str();
    let rec = match store.lookup(hash).await {
        Ok(Some(rec)) => rec,
        Ok(None) => return Err(AuthError::new(401, "invalid API token", None)),
        // The bucket did not answer (the cache was not proven current, or did not hold the
        // token): refuse rather than trust a copy that may miss a revocation.
        Err(e) => return Err(AuthError::unavailable("token store", &e)),
    };
    let Some(key) = &rec.proof_key else {
        let m = format!("API token {} was created before proofs of possession: create a new one", rec.id);
        return Err(AuthError::new(401, m, Some(&rec.user_id)));
    };
    if !proof.verify(key.expose()) {
        return Err(AuthError::new(401, "invalid API token proof", None));
    }
    if !proof.fresh_at(crate::bus::proof::now_secs()) {
        let m = format!(
            "Ailurus-Proof-Time is more than {} s from the gateway's clock: sign each request as it is sent",
            crate::bus::proof::WINDOW_SECS
        );
        return Err(AuthError::new(401, m, None));
    }
    let user = Some(rec.user_id.as_str());
    let refused = match rec.status {
        TokenStatus::Active => None,
        TokenStatus::Revoked => Some("has been revoked"),
        TokenStatus::Disabled => Some("is disabled"),
        TokenStatus::Deleted => Some("has been deleted"),
    };
    if let Some(why) = refused {
        return Err(AuthError::new(401, format!("API token {} {why}", rec.id), user));
    }
    if rec.expired(time::OffsetDateTime::now_utc()) {
        return Err(AuthError::new(401, format!("API token {} has expired", rec.id), user));
    }
    if let Some(claimed) = claimed_user {
        if claimed != rec.user_id && mode == AuthMode::Token {
            return Err(AuthError::new(403, format!("user_id {claimed:?} does not match the token's user"), user));
        }
    }
    // An empty model is a request that uses no model (the user API).
    if !model.is_empty() && !rec.allows(model) {
        return Err(AuthError::new(403, format!("API token {} may not use model {model:?}", rec.id), user));
    }
    let user_token = Token::new("user_id", &rec.user_id).map_err(|e| AuthError::new(500, e.to_string(), None))?;
    let hash_token = Token::new("token_id", hash).map_err(|e| AuthError::new(500, e.to_string(), None))?;
    // Last, so only a request that is otherwise accepted uses up its trace id.
    let claim = store.replay().begin(&rec.id, &proof.bound.trace);
    Ok((Some(Principal { user: user_token, token: Some((hash_token, rec)) }), Some(claim)))
}

/// Who called the management API: a token's holder, or a user by its access token.
#[derive(Debug, Clone)]
pub enum ApiIdentity {
    /// An API token (`sk-…`): its user, at most a common user's rights.
    Token(Principal),
    /// A user's access token (NEW-API's `Authorization: <access token>`).
    Access(super::users::UserRecord),
}

/// Authenticate a management-API call: the proof's token id is an API token in `TOKENS`
/// (checked as [`authenticate`] does) or a user's access token in `USERS` (the same proof,
/// time window and replay set; a disabled user is refused).
pub async fn authenticate_api(
    tokens: &TokenStore,
    users: Option<&super::users::UserStore>,
    token: Option<&Credential>,
) -> Result<ApiIdentity, AuthError> {
    let as_token = || async {
        match authenticate(AuthMode::Token, Some(tokens), token, None, "").await? {
            Some(p) => Ok(ApiIdentity::Token(p)),
            None => Err(AuthError::new(401, "no user", None)),
        }
    };
    let Some(Credential::Proof(proof)) = token else { return as_token().await };
    // An outage of the token store is answered by `authenticate`, in its own words.
    let is_token = tokens.lookup(&proof.token_id).await.map_or(true, |found| found.is_some());
    let Some(users) = users.filter(|_| !is_token) else { return as_token().await };
    let rec = match users.by_access(&proof.token_id).await {
        Ok(Some(rec)) => rec,
        Ok(None) => return Err(AuthError::new(401, "invalid API token", None)),
        Err(e) => return Err(AuthError::unavailable("user store", &e)),
    };
    let Some(key) = rec.access.as_ref().map(|a| a.proof_key.clone()) else {
        return Err(AuthError::new(401, "invalid API token", None));
    };
    if !proof.verify(key.expose()) {
        return Err(AuthError::new(401, "invalid API token proof", None));
    }
    if !proof.fresh_at(crate::bus::proof::now_secs()) {
        return Err(AuthError::new(401, "Ailurus-Proof-Time is too far from the gateway's clock", None));
    }
    if rec.status != 1 {
        return Err(AuthError::new(403, format!("user {} is disabled", rec.id), Some(&rec.username)));
    }
    match tokens.replay().claim(&format!("user-{}", rec.id), &proof.bound.trace).await {
        Ok(true) => Ok(ApiIdentity::Access(rec)),
        Ok(false) => Err(AuthError::new(401, "this trace id was already used (a replayed request)", None)),
        Err(e) => Err(AuthError::unavailable("proof replay set", &e)),
    }
}

/// An event on `user.<id>.auth`.
#[derive(Debug, Clone, Serialize)]
pub struct AuthEvent<'a> {
    /// `created`, `revoked`, `disabled`, `deleted` or `rejected`.
    pub event: &'a str,
    /// Whose.
    pub user_id: &'a str,
    /// Short token id (never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<&'a str>,
    /// Why, for `rejected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// RFC 3339.
    pub timestamp: String,
}

/// Publish an auth event (best effort).
pub async fn publish_event(client: &async_nats::Client, ev: &AuthEvent<'_>) {
    let Ok(user) = Token::new("user_id", ev.user_id) else { return };
    if let Ok(body) = serde_json::to_vec(ev) {
        if let Err(e) = client.publish(subjects::auth(&user), body.into()).await {
            tracing::debug!(error = %e, "auth event publish failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_in_order() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-a");
        h.insert("x-api-key", "sk-b");
        assert_eq!(token_from(Some(&h), Some("sk-c")).as_deref(), Some("sk-a"));
        let mut h = HeaderMap::new();
        h.insert("X-Goog-Api-Key", "g");
        assert_eq!(token_from(Some(&h), None).as_deref(), Some("g"));
        assert_eq!(token_from(None, Some("sk-c")).as_deref(), Some("sk-c"));
        assert_eq!(token_from(None, Some("")), None);
    }
}
