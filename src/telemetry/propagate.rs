//! W3C trace context across the gateway: `traceparent` / `tracestate` read from a request's
//! NATS headers (the bridge copies them from HTTP, a NATS client sets them itself), and
//! written on the upstream HTTP call, so the upstream sees the client's trace id.

use futures::future::Either;
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The W3C header carrying the trace id and the caller's span id.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor state, passed along with [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// A NATS header map read as a carrier.
struct NatsHeaders<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, TRACESTATE].into_iter().filter(|k| self.0.get(*k).is_some()).collect()
    }
}

/// The remote parent a request's headers name (an empty context when none is valid).
pub fn extract(headers: Option<&async_nats::HeaderMap>) -> Context {
    match headers {
        Some(h) => TraceContextPropagator::new().extract(&NatsHeaders(h)),
        None => Context::new(),
    }
}

/// `req` with the current span's `traceparent` (and `tracestate`), when export is on and a
/// span is current; untouched otherwise, after one atomic load.
pub fn inject(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if !super::active() {
        return req;
    }
    let mut carrier = std::collections::HashMap::new();
    Context::map_current(|cx| {
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(cx, &mut carrier);
        }
    });
    carrier.into_iter().fold(req, |req, (k, v)| req.header(k, v))
}

/// `fut` run with `cx` as the current context (so spans started inside are its children and
/// the upstream call propagates it); `fut` itself when there is none.
pub fn scoped<F: std::future::Future>(cx: Option<&Context>, fut: F) -> Either<WithContext<F>, F> {
    match cx {
        Some(cx) => Either::Left(fut.with_context(cx.clone())),
        None => Either::Right(fut),
    }
}
