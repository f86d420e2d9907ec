//! Who a request is. The token comes from `Authorization: Bearer`, `x-api-key`,
//! `x-goog-api-key` (forwarded by the bridge) or the seed request's `token` field; its
//! sha256 is looked up in the workers' in-memory copy of `TOKENS`.

use super::tokens::{TokenRecord, TokenStatus, TokenStore};
use super::AuthMode;
use crate::bus::subjects::{self, Token};
use crate::error::RequestError;
use async_nats::HeaderMap;
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

impl From<AuthError> for RequestError {
    fn from(e: AuthError) -> Self {
        e.error
    }
}

/// A credential as it arrives.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The token itself (NATS clients that do not hash; the seed `token` field).
    Plain(String),
    /// Its sha256, from `Ailurus-Token-Sha256` (the bridge, `ailurus req`).
    Sha256(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(***)")
    }
}

impl Credential {
    /// The `TOKENS` key.
    pub fn hash(&self) -> String {
        match self {
            Credential::Plain(t) => crate::credential::hash(t),
            Credential::Sha256(h) => h.to_ascii_lowercase(),
        }
    }
}

/// The credential a request carries: `Ailurus-Token-Sha256`, else a plain token.
pub fn credential_from(headers: Option<&HeaderMap>, seed_token: Option<&str>) -> Option<Credential> {
    let hashed = headers
        .and_then(|h| {
            h.iter()
                .find(|(name, _)| AsRef::<str>::as_ref(*name).eq_ignore_ascii_case(crate::bus::headers::TOKEN_SHA256))
        })
        .and_then(|(_, v)| v.first())
        .map(|v| v.as_str().trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    match hashed {
        Some(h) => Some(Credential::Sha256(h)),
        None => token_from(headers, seed_token).map(Credential::Plain),
    }
}

/// The plain token a request carries, if any.
pub fn token_from(headers: Option<&HeaderMap>, seed_token: Option<&str>) -> Option<String> {
    // NATS header names are case-sensitive; HTTP's are not, and clients spell them freely.
    let get = |k: &str| {
        headers
            .and_then(|h| h.iter().find(|(name, _)| AsRef::<str>::as_ref(*name).eq_ignore_ascii_case(k)))
            .and_then(|(_, values)| values.first())
            .map(|v| v.as_str().trim().to_string())
            .filter(|v| !v.is_empty())
    };
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
pub async fn authenticate(
    mode: AuthMode,
    store: Option<&TokenStore>,
    token: Option<&Credential>,
    claimed_user: Option<&str>,
    model: &str,
) -> Result<Option<Principal>, AuthError> {
    if mode == AuthMode::Open {
        return Ok(None);
    }
    if mode == AuthMode::Trusted {
        if let (Some(user), None) = (claimed_user, token) {
            let user = Token::new("user_id", user).map_err(|e| AuthError::new(400, e.to_string(), None))?;
            return Ok(Some(Principal { user, token: None }));
        }
    }
    let Some(token) = token else {
        return Err(AuthError::new(401, "missing API token (send Authorization: Bearer <token> or x-api-key)", None));
    };
    let Some(store) = store else {
        return Err(AuthError::new(503, "token store unavailable", None));
    };
    let hash = token.hash();
    let rec = match store.lookup(&hash).await {
        Ok(Some(rec)) => rec,
        Ok(None) => return Err(AuthError::new(401, "invalid API token", None)),
        // The bucket did not answer (the cache was not proven current, or did not hold the
        // token): refuse rather than trust a copy that may miss a revocation.
        Err(e) => {
            tracing::warn!(error = %e, "token lookup failed; refusing");
            return Err(AuthError {
                error: RequestError::new(503, "token store unavailable; retry shortly").retry_after(1),
                user: None,
            });
        }
    };
    let user = Some(rec.user_id.as_str());
    if rec.status == TokenStatus::Revoked {
        return Err(AuthError::new(401, format!("API token {} has been revoked", rec.id), user));
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
    let hash_token = Token::new("token_id", &hash).map_err(|e| AuthError::new(500, e.to_string(), None))?;
    Ok(Some(Principal { user: user_token, token: Some((hash_token, rec)) }))
}

/// An event on `user.<id>.auth`.
#[derive(Debug, Clone, Serialize)]
pub struct AuthEvent<'a> {
    /// `created`, `revoked` or `rejected`.
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
