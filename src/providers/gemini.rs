//! Gemini upstreams: `POST {base_url}/v1beta/models/{model}:generateContent` or
//! `:streamGenerateContent?alt=sse`, `x-goog-api-key`.

use super::endpoint::Endpoint;

/// Where and how to call. A `base_url` that already ends in a version (`/v1`, `/v1beta`)
/// is used as is.
pub fn endpoint(base_url: &str, key: &str, model: &str, stream: bool) -> Endpoint {
    let base = base_url.trim_end_matches('/');
    let versioned = base.ends_with("/v1") || base.ends_with("/v1beta");
    let root = if versioned { base.to_string() } else { format!("{base}/v1beta") };
    let url = if stream {
        format!("{root}/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("{root}/models/{model}:generateContent")
    };
    Endpoint { url, headers: vec![("x-goog-api-key".into(), key.to_string())] }
}
