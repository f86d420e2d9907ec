//! Anthropic Messages upstreams (Anthropic, a NEW-API host's `/v1/messages`):
//! `POST {base_url}/v1/messages`, `x-api-key`, `anthropic-version`. On pass-through the
//! client's `anthropic-version` and `anthropic-beta` headers are forwarded instead.

use super::endpoint::Endpoint;

/// The API version sent when the client did not name one.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// Where and how to call.
pub fn endpoint(base_url: &str, key: &str, forwarded: &[(String, String)]) -> Endpoint {
    let base = base_url.trim_end_matches('/');
    let url = if base.ends_with("/v1") { format!("{base}/messages") } else { format!("{base}/v1/messages") };
    let mut headers = vec![("x-api-key".to_string(), key.to_string())];
    let version = forwarded.iter().find(|(k, _)| k.eq_ignore_ascii_case("anthropic-version"));
    headers.push(("anthropic-version".into(), version.map_or(DEFAULT_VERSION.to_string(), |(_, v)| v.clone())));
    if let Some((_, beta)) = forwarded.iter().find(|(k, _)| k.eq_ignore_ascii_case("anthropic-beta")) {
        headers.push(("anthropic-beta".into(), beta.clone()));
    }
    Endpoint { url, headers }
}
