//! The spans of one request: `{operation} {model}` (the GenAI semantic conventions'
//! request span), its `admission` child, and one `attempt {channel}` child per upstream
//! try (a failover shows as a failed attempt then the one that served).

use super::Telemetry;
use crate::protocol::canonical::{ChatRequest, Usage};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a request asks, as the span records it.
pub struct Request<'a> {
    /// `gen_ai.operation.name`: `chat`, or `count_tokens`.
    pub operation: &'static str,
    /// The model asked for (after a scenario route).
    pub model: &'a str,
    /// The parsed request (`max_tokens`, `stream`, and the prompt when content is captured).
    pub chat: &'a ChatRequest,
    /// Ailurus's own trace id (`Ailurus-Trace` / the seed's `trace_id`).
    pub trace_id: &'a str,
}

/// One upstream attempt.
pub struct Attempt<'a> {
    /// The channel's name.
    pub channel: &'a str,
    /// The channel's kind (`openai`, `anthropic`, ...).
    pub kind: &'a str,
    /// The model the upstream is asked for.
    pub model: &'a str,
    /// The channel's base URL (`server.address`, `server.port`).
    pub base_url: &'a str,
}

/// How a request ended, as the span and the metrics record it.
pub struct Outcome<'a> {
    /// Usage, when an answer (or part of one) was delivered.
    pub usage: Option<&'a Usage>,
    /// The finish reason, when the answer finished.
    pub finish_reason: Option<&'a str>,
    /// HTTP-like status.
    pub status: u16,
    /// The error, on failure.
    pub error: Option<&'a str>,
    /// The answer's text (only recorded when content is captured).
    pub output: &'a str,
}

/// What the attempt that served learnt (provider, response model), kept in the request's
/// context for the request span's end and its metrics.
#[derive(Debug, Default)]
struct Served {
    /// `gen_ai.provider.name`.
    provider: Option<&'static str>,
    /// `gen_ai.response.model`.
    response_model: Option<String>,
}

/// The [`Served`] slot a request's context carries.
#[derive(Debug, Clone, Default)]
struct ServedSlot(Arc<Mutex<Served>>);

/// One request's span.
pub struct ChatSpan {
    /// The context whose span is the request's (the parent of admission and attempts).
    cx: Context,
    /// When the request started.
    started: Instant,
    /// `gen_ai.operation.name`.
    operation: &'static str,
    /// `gen_ai.request.model`.
    model: String,
}

impl ChatSpan {
    /// The context the request's work runs in: its span is the parent of what it starts.
    pub fn context(&self) -> &Context {
        &self.cx
    }
}

/// `gen_ai.provider.name` for a channel kind (the conventions' well-known values).
pub fn provider_name(kind: &str) -> &'static str {
    match kind {
        "openai" | "openai_responses" => "openai",
        "anthropic" => "anthropic",
        "gemini" => "gcp.gemini",
        "mock" => "ailurus.mock",
        _ => "ailurus",
    }
}

/// Host and port of a base URL (`https://api.x.com/v1` → `api.x.com`, 443).
fn server(base_url: &str) -> (String, i64) {
    let (rest, port) = match base_url.split_once("://") {
        Some(("http", rest)) => (rest, 80),
        Some((_, rest)) => (rest, 443),
        None => (base_url, 443),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, p) = match authority.find(']') {
        Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    (host.to_string(), p.and_then(|p| p.parse().ok()).unwrap_or(port))
}

fn strings(items: impl IntoIterator<Item = String>) -> Value {
    Value::Array(Array::String(items.into_iter().map(StringValue::from).collect()))
}

impl Telemetry {
    /// Start a request's span, a child of the `traceparent` in `headers` when there is one.
    pub fn chat(&self, headers: Option<&async_nats::HeaderMap>, req: &Request<'_>) -> ChatSpan {
        let parent = super::propagate::extract(headers);
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", req.operation),
            KeyValue::new("gen_ai.request.model", req.model.to_string()),
            KeyValue::new("gen_ai.request.stream", req.chat.stream),
            KeyValue::new("ailurus.trace_id", req.trace_id.to_string()),
        ];
        if let Some(n) = req.chat.max_tokens {
            attrs.push(KeyValue::new("gen_ai.request.max_tokens", i64::from(n)));
        }
        if let Some(t) = req.chat.temperature {
            attrs.push(KeyValue::new("gen_ai.request.temperature", t));
        }
        if self.capture_content {
            attrs.push(KeyValue::new(
                "gen_ai.input.messages",
                serde_json::to_string(&req.chat.messages).unwrap_or_default(),
            ));
            if let Some(system) = &req.chat.system {
                attrs.push(KeyValue::new("gen_ai.system_instructions", system.clone()));
            }
        }
        let span = self
            .tracer
            .span_builder(format!("{} {}", req.operation, req.model))
            .with_kind(SpanKind::Server)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span).with_value(ServedSlot::default());
        ChatSpan { cx, started: Instant::now(), operation: req.operation, model: req.model.to_string() }
    }

    /// Start the `admission` child (identify, rate limits, the quota hold); end it with
    /// [`end_child`].
    pub fn admission(&self, chat: &ChatSpan) -> Context {
        let span = self
            .tracer
            .span_builder("admission")
            .with_kind(SpanKind::Internal)
            .start_with_context(&self.tracer, &chat.cx);
        chat.cx.with_span(span)
    }

    /// Start an attempt's span under the current context (the request's, inside the
    /// pipeline); run the attempt [`scoped`](super::propagate::scoped) to it so the upstream
    /// call carries its `traceparent`.
    pub fn attempt(&self, a: &Attempt<'_>) -> Context {
        let (host, port) = server(a.base_url);
        let attrs = vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", provider_name(a.kind)),
            KeyValue::new("gen_ai.request.model", a.model.to_string()),
            KeyValue::new("server.address", host),
            KeyValue::new("server.port", port),
            KeyValue::new("ailurus.channel", a.channel.to_string()),
        ];
        let parent = Context::current();
        let span = self
            .tracer
            .span_builder(format!("attempt {}", a.channel))
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }

    /// The attempt in `cx` served the request: end it, and tell the request's span (the
    /// current context's) who answered and how fast the first chunk came.
    pub fn served(&self, cx: &Context, a: &Attempt<'_>, response_model: Option<&str>, first_chunk: Option<Duration>) {
        let provider = provider_name(a.kind);
        let (host, port) = server(a.base_url);
        let response_model = response_model.unwrap_or(a.model).to_string();
        cx.span().set_attribute(KeyValue::new("gen_ai.response.model", response_model.clone()));
        cx.span().end();
        Context::map_current(|chat| {
            let span = chat.span();
            span.set_attribute(KeyValue::new("gen_ai.provider.name", provider));
            span.set_attribute(KeyValue::new("server.address", host));
            span.set_attribute(KeyValue::new("server.port", port));
            span.set_attribute(KeyValue::new("ailurus.channel", a.channel.to_string()));
            let attrs = [
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.provider.name", provider),
                KeyValue::new("gen_ai.request.model", a.model.to_string()),
            ];
            if let Some(t) = first_chunk {
                span.set_attribute(KeyValue::new("ailurus.time_to_first_chunk_ms", t.as_millis() as i64));
                self.metrics.first_token(&attrs, t.as_secs_f64());
            }
            if let Some(slot) = chat.get::<ServedSlot>() {
                let mut s = slot.0.lock().unwrap_or_else(|p| p.into_inner());
                s.provider = Some(provider);
                s.response_model = Some(response_model);
            }
        });
    }

    /// Finish a request's span and record its metrics.
    pub fn end(&self, chat: ChatSpan, out: &Outcome<'_>) {
        let span = chat.cx.span();
        let served = chat
            .cx
            .get::<ServedSlot>()
            .map(|s| std::mem::take(&mut *s.0.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default();
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", chat.operation),
            KeyValue::new("gen_ai.request.model", chat.model.clone()),
        ];
        if let Some(p) = served.provider {
            attrs.push(KeyValue::new("gen_ai.provider.name", p));
        }
        if let Some(m) = served.response_model {
            attrs.push(KeyValue::new("gen_ai.response.model", m));
        }
        if let Some(e) = out.error {
            attrs.push(KeyValue::new("error.type", out.status.to_string()));
            span.set_status(Status::error(e.to_string()));
        }
        let tokens = out.usage.map(|u| (u.prompt_total(), u.output_tokens));
        self.metrics.finished(&attrs, chat.started.elapsed().as_secs_f64(), tokens);
        span.set_attributes(attrs);
        if let Some(u) = out.usage {
            span.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", u.prompt_total() as i64));
            span.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", u.output_tokens as i64));
            span.set_attribute(KeyValue::new("gen_ai.usage.cache_read.input_tokens", u.cache_read_tokens as i64));
            span.set_attribute(KeyValue::new("gen_ai.usage.cache_creation.input_tokens", u.cache_write_tokens as i64));
            span.set_attribute(KeyValue::new("ailurus.usage.estimated", u.estimated));
        }
        if let Some(f) = out.finish_reason {
            span.set_attribute(KeyValue::new("gen_ai.response.finish_reasons", strings([f.to_string()])));
        }
        span.set_attribute(KeyValue::new("ailurus.status", i64::from(out.status)));
        if self.capture_content && out.error.is_none() {
            let msg = serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": out.output}],
                "finish_reason": out.finish_reason}]);
            span.set_attribute(KeyValue::new("gen_ai.output.messages", msg.to_string()));
        }
        span.end();
    }
}

/// End a child span (admission, an attempt): with `error` (its `error.type` and message), or
/// fine.
pub fn end_child(cx: &Context, error: Option<(&str, &str)>) {
    if let Some((kind, message)) = error {
        mark_error(cx, kind, message);
    }
    cx.span().end();
}

/// Mark the span in `cx` failed: `error.type` = `kind`, status error with `message`.
pub fn mark_error(cx: &Context, kind: &str, message: &str) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("error.type", kind.to_string()));
    span.set_status(Status::error(message.to_string()));
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_address_and_port_of_base_urls() {
        for (url, host, port) in [
            ("https://api.openai.com/v1", "api.openai.com", 443),
            ("http://127.0.0.1:8080/v1", "127.0.0.1", 8080),
            ("http://localhost", "localhost", 80),
            ("https://[::1]:9443/x", "[::1]", 9443),
        ] {
            assert_eq!(super::server(url), (host.to_string(), port), "{url}");
        }
    }
}
