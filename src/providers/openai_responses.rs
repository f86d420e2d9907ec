//! OpenAI Responses upstreams: `POST {base_url}/responses`, `Authorization: Bearer`.

use super::endpoint::Endpoint;

/// Where and how to call.
pub fn endpoint(base_url: &str, key: &str) -> Endpoint {
    Endpoint {
        url: format!("{}/responses", base_url.trim_end_matches('/')),
        headers: vec![("authorization".into(), format!("Bearer {key}"))],
    }
}
