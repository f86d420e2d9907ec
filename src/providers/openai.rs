//! OpenAI Chat Completions upstreams (OpenAI, DeepSeek, Qwen compatible mode, Ollama, vLLM,
//! OpenRouter, NEW-API): `POST {base_url}/chat/completions`, `Authorization: Bearer`.

use super::endpoint::Endpoint;

/// Where and how to call.
pub fn endpoint(base_url: &str, key: &str) -> Endpoint {
    Endpoint {
        url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
        headers: vec![("authorization".into(), format!("Bearer {key}"))],
    }
}
