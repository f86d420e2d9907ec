//! The HTTP transport shared by every HTTP provider kind: pooled reqwest client per channel,
//! the key the router picked (round robin or a session's pinned one), connect / first-byte / idle timeouts, SSE framing, upstream error
//! classification (status, `Retry-After`) with secrets removed.

use super::call::{SseStream, UpstreamBody, UpstreamCall};
use super::endpoint::Endpoint;
use super::error::{ProviderError, ProviderErrorKind};
use super::kind::ProviderKind;
use crate::channel::{ChannelConfig, Secret, Timeouts};
use crate::redact::redact;
use crate::sse::SseEvent;
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use std::time::Duration;

/// Largest upstream body read (non-stream answers and error bodies).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest error body kept for the message.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// An HTTP upstream.
#[derive(Debug)]
pub struct HttpProvider {
    /// Which API it speaks.
    kind: ProviderKind,
    /// API root.
    base_url: String,
    /// Keys; each call names the one it uses.
    keys: Vec<Secret>,
    /// Extra configured headers.
    extra_headers: Vec<(String, String)>,
    /// Timeouts.
    timeouts: Timeouts,
    /// Pooled connections to this upstream.
    client: reqwest::Client,
}

impl HttpProvider {
    /// Build from a channel config; reads the keys from the environment.
    pub fn new(kind: ProviderKind, cfg: &ChannelConfig) -> Result<Self, String> {
        let keys = cfg.keys()?;
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.timeouts.connect())
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("ailurus/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            kind,
            base_url: cfg.base_url.clone(),
            keys,
            extra_headers: cfg.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            timeouts: cfg.timeouts.clone(),
            client,
        })
    }

    /// The kind.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// How many keys it has.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Keys, for redaction.
    pub fn secrets(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.expose().to_string()).collect()
    }

    fn redact(&self, text: &str) -> String {
        let keys: Vec<&str> = self.keys.iter().map(|k| k.expose()).collect();
        redact(text, &keys)
    }

    fn endpoint(&self, call: &UpstreamCall<'_>) -> Endpoint {
        let n = self.keys.len().max(1);
        let key = self.keys.get(call.key % n).map_or("", |k| k.expose());
        match self.kind {
            ProviderKind::OpenAi => super::openai::endpoint(&self.base_url, key),
            ProviderKind::OpenAiResponses => super::openai_responses::endpoint(&self.base_url, key),
            ProviderKind::Anthropic => super::anthropic::endpoint(&self.base_url, key, call.forward_headers),
            ProviderKind::Gemini => super::gemini::endpoint(&self.base_url, key, call.model, call.stream),
            // The mock never reaches the HTTP transport.
            ProviderKind::Mock => Endpoint { url: String::new(), headers: Vec::new() },
        }
    }

    /// Send the call; classify failures; hand back the stream or body.
    pub async fn call(&self, call: UpstreamCall<'_>) -> Result<UpstreamBody, ProviderError> {
        let ep = self.endpoint(&call);
        let mut req = self
            .client
            .post(&ep.url)
            .header("content-type", "application/json")
            .header("accept", if call.stream { "text/event-stream" } else { "application/json" });
        for (k, v) in ep.headers.iter().chain(self.extra_headers.iter()) {
            req = req.header(k.as_str(), v.as_str());
        }
        // The attempt's span, when traced: the upstream sees the client's trace id.
        let req = crate::telemetry::propagate::inject(req);
        let send = req.body(call.body.clone()).send();
        let resp = match tokio::time::timeout(self.timeouts.first_byte(), send).await {
            Err(_) => {
                return Err(ProviderError::new(
                    ProviderErrorKind::Timeout,
                    format!("no response headers within {} ms", self.timeouts.first_byte_ms),
                ))
            }
            Ok(Err(e)) => return Err(self.transport_error(&e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.status_error(resp).await);
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if call.stream && is_sse {
            Ok(UpstreamBody::Sse(self.sse(resp)))
        } else {
            let body = read_limited(resp, MAX_BODY, self.timeouts.total()).await.map_err(|e| self.redacted(e))?;
            Ok(UpstreamBody::Json(body))
        }
    }

    /// Ask the upstream to count a request's input tokens (Anthropic
    /// `/v1/messages/count_tokens`, Gemini `:countTokens`); the body is already in the
    /// upstream's format and the answer comes back as is.
    pub async fn count_tokens(&self, call: UpstreamCall<'_>) -> Result<Bytes, ProviderError> {
        let mut ep = self.endpoint(&call);
        ep.url = match self.kind {
            ProviderKind::Anthropic => format!("{}/count_tokens", ep.url),
            ProviderKind::Gemini => ep.url.replace(":generateContent", ":countTokens"),
            ProviderKind::OpenAi | ProviderKind::OpenAiResponses | ProviderKind::Mock => {
                return Err(ProviderError::new(
                    ProviderErrorKind::InvalidRequest,
                    "this upstream has no token counting",
                ))
            }
        };
        let mut req = self.client.post(&ep.url).header("content-type", "application/json");
        for (k, v) in ep.headers.iter().chain(self.extra_headers.iter()) {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = match tokio::time::timeout(self.timeouts.first_byte(), req.body(call.body.clone()).send()).await {
            Err(_) => return Err(ProviderError::new(ProviderErrorKind::Timeout, "count_tokens: no answer in time")),
            Ok(Err(e)) => return Err(self.transport_error(&e)),
            Ok(Ok(r)) => r,
        };
        if !resp.status().is_success() {
            return Err(self.status_error(resp).await);
        }
        read_limited(resp, MAX_ERROR_BODY, self.timeouts.total()).await.map_err(|e| self.redacted(e))
    }

    fn redacted(&self, mut e: ProviderError) -> ProviderError {
        e.message = self.redact(&e.message);
        e
    }

    fn transport_error(&self, e: &reqwest::Error) -> ProviderError {
        let kind = if e.is_timeout() {
            ProviderErrorKind::Timeout
        } else if e.is_connect() {
            ProviderErrorKind::Connect
        } else {
            ProviderErrorKind::Protocol
        };
        // reqwest errors name the URL; ours carry no secrets in URLs, but redact anyway.
        ProviderError::new(kind, self.redact(&error_chain(e)))
    }

    async fn status_error(&self, resp: reqwest::Response) -> ProviderError {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(resp, MAX_ERROR_BODY, Duration::from_secs(5)).await.unwrap_or_default();
        let mut e = ProviderError::new(ProviderErrorKind::Status(status), self.redact(&upstream_message(&body)));
        e.retry_after = retry_after;
        e
    }

    fn sse(&self, resp: reqwest::Response) -> SseStream {
        let first = self.timeouts.first_byte();
        let idle = self.timeouts.idle();
        let keys: Vec<String> = self.secrets();
        let events = resp.bytes_stream().eventsource();
        let mut seen = false;
        let stream = futures::stream::unfold((events, false), move |(mut events, done)| {
            let wait = if seen { idle } else { first };
            seen = true;
            let keys = keys.clone();
            async move {
                if done {
                    return None;
                }
                match tokio::time::timeout(wait, events.next()).await {
                    Err(_) => Some((
                        Err(ProviderError::new(
                            ProviderErrorKind::Timeout,
                            format!("no stream event within {} ms", wait.as_millis()),
                        )),
                        (events, true),
                    )),
                    Ok(None) => None,
                    Ok(Some(Ok(ev))) => {
                        let name = if ev.event.is_empty() || ev.event == "message" { None } else { Some(ev.event) };
                        Some((Ok(SseEvent { event: name, data: ev.data }), (events, false)))
                    }
                    Ok(Some(Err(e))) => {
                        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                        Some((
                            Err(ProviderError::new(
                                ProviderErrorKind::Protocol,
                                redact(&format!("stream broken: {e}"), &refs),
                            )),
                            (events, true),
                        ))
                    }
                }
            }
        });
        stream.boxed()
    }
}

/// The error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Read a body up to `limit` bytes within `deadline`.
async fn read_limited(resp: reqwest::Response, limit: usize, deadline: Duration) -> Result<Bytes, ProviderError> {
    let read = async {
        let mut buf = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ProviderError::new(ProviderErrorKind::Protocol, error_chain(&e)))?;
            if buf.len() + chunk.len() > limit {
                return Err(ProviderError::new(
                    ProviderErrorKind::Protocol,
                    format!("upstream body over {limit} bytes"),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| ProviderError::new(ProviderErrorKind::Timeout, "upstream body not read in time"))?
}

/// The message of an upstream error body in any of the four APIs' shapes, else its text.
pub fn upstream_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let v = if let Some(first) = v.as_array().and_then(|a| a.first()) { first.clone() } else { v };
        let msg = v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .and_then(|m| m.as_str());
        if let Some(m) = msg {
            return m.chars().take(500).collect();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::upstream_message;

    #[test]
    fn error_messages_from_every_shape() {
        assert_eq!(
            upstream_message(br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            "Overloaded"
        );
        assert_eq!(upstream_message(br#"{"error":{"message":"Rate limit","type":"requests"}}"#), "Rate limit");
        assert_eq!(
            upstream_message(br#"[{"error":{"code":429,"message":"Quota","status":"RESOURCE_EXHAUSTED"}}]"#),
            "Quota"
        );
        assert_eq!(upstream_message(br#"{"error":"plain"}"#), "plain");
        assert_eq!(upstream_message(b"<html>bad gateway</html>"), "<html>bad gateway</html>");
        assert_eq!(upstream_message(b""), "(empty body)");
    }
}
