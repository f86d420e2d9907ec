//! One HTTP request → one NATS request: route, refuse what is ambiguous or too large, build
//! the NATS headers (format tag, operation, model, trace, API headers, and a proof of
//! possession made from the caller's token: never the token nor its hash alone), send the
//! body untouched, and turn the first reply into the HTTP answer.

use super::body::{reply_body, sse_frames, whole_body, BodyState, Finished};
use super::response::{api_error, client_error, copy_reply_headers, error, json};
use super::routes::{self, Route};
use super::state::AppState;
use crate::bus::headers::{self, ReplyKind};
use crate::bus::proof;
use crate::bus::subjects::{self, Token};
use crate::protocol::{Format, Op};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Headers copied to NATS as they are (API headers and the W3C trace context; never
/// credentials, see [`signer`]).
const FORWARD: [&str; 11] = [
    headers::TRACEPARENT,
    headers::TRACESTATE,
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "user-agent",
    "x-claude-code-session-id",
    "session_id",
    "x-session-id",
    "conversation_id",
    "openai-organization",
];

/// Which API's client sent `req`, from its headers (see [`routes::Dialect`]).
fn dialect(req: &Request) -> routes::Dialect {
    let h = req.headers();
    if h.contains_key("anthropic-version") || h.contains_key("x-api-key") {
        routes::Dialect::Anthropic
    } else if h.contains_key("x-goog-api-key")
        || req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("key=")))
    {
        routes::Dialect::Gemini
    } else {
        routes::Dialect::Neutral
    }
}

/// Every HTTP request: match a route, then answer it or forward it.
pub(super) async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(route) = routes::match_route(method.as_str(), &path, dialect(&req)) else {
        let resp = error(None, 404, &format!("no route for {method} {path}"));
        st.metrics.record("unmatched", 404, started.elapsed().as_secs_f64(), None);
        return resp;
    };
    let label = route.label();
    let resp = match &route {
        Route::Root => super::console::index(method == Method::HEAD),
        Route::Console => super::console::file(&path, method == Method::HEAD),
        Route::Health => {
            let ok = st.client.connection_state() == async_nats::connection::State::Connected;
            let body = serde_json::json!({"status": if ok {"ok"} else {"degraded"}, "nats": format!("{:?}", st.client.connection_state()).to_lowercase()});
            json(if ok { 200 } else { 503 }, body.to_string().into_bytes())
        }
        Route::Metrics => {
            let mut r = Response::new(Body::from(st.metrics.render()));
            r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        Route::Api { family, .. } => api(&st, req, family).await,
        Route::Models { platform, format, .. } => {
            match forward(
                &st,
                req,
                Target { platform: *platform, format: *format, op: Some("models"), model: None, label, started },
            )
            .await
            {
                Answer::Complete(r) => r,
                Answer::Streaming(r) => return r,
            }
        }
        Route::Llm { platform, format, op, model, .. } => {
            let op_name = match op {
                Op::Generate => None,
                other => Some(other.as_str()),
            };
            match forward(
                &st,
                req,
                Target { platform: *platform, format: *format, op: op_name, model: model.clone(), label, started },
            )
            .await
            {
                Answer::Complete(r) => r,
                // The body records the metrics when it ends.
                Answer::Streaming(r) => return r,
            }
        }
    };
    st.metrics.record(label, resp.status().as_u16(), started.elapsed().as_secs_f64(), None);
    resp
}

/// Longest path-and-query a management-API call may have (it travels in a header).
const MAX_API_TARGET: usize = 4096;

/// A management-API call (`/api/<family>…`): one NATS request to `ailurus.api.<family>`
/// with `Ailurus-Op: <METHOD> <path below the family>[?<query>]`, `New-Api-User` as sent,
/// the body as is, and a proof of possession made from the caller's `Authorization`
/// (`Bearer sk-…`, or NEW-API's bare access token); the worker's answer is returned as is.
async fn api(st: &Arc<AppState>, req: Request, family: &'static str) -> Response {
    let (parts, body) = req.into_parts();
    let has_body = !matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE);
    if let Err((status, message)) = check_headers(&parts.headers, has_body) {
        return api_error(status, &message);
    }
    let mut target = format!("{} {}", parts.method, routes::api_rest(parts.uri.path(), family));
    if let Some(q) = parts.uri.query().filter(|q| !q.is_empty()) {
        target.push('?');
        target.push_str(q);
    }
    if target.len() > MAX_API_TARGET {
        return api_error(414, &format!("the path and query are over {MAX_API_TARGET} bytes"));
    }
    let body = match read_body(st, body).await {
        Ok(b) => b,
        Err((status, message)) => return api_error(status, &message),
    };
    let mut h = async_nats::HeaderMap::new();
    let trace = Token::random();
    h.insert(headers::TRACE, trace.as_str());
    h.insert(headers::OP, target.as_str());
    if let Some(v) = parts.headers.get(headers::NEW_API_USER).and_then(|v| v.to_str().ok()) {
        h.insert(headers::NEW_API_USER, v);
    }
    let subject = subjects::api(family);
    if let Some(signer) = signer(&parts.headers, None) {
        signer.sign(&subject, trace.as_str(), proof::now_secs(), &mut h, &body);
    }
    if parts.method == Method::GET && routes::api_rest(parts.uri.path(), family).ends_with("/stream") {
        return api_stream(st, subject, h, body, trace).await;
    }
    let req = st.client.request_with_headers(subject, h, body);
    match tokio::time::timeout(Duration::from_millis(st.config.silence_ms), req).await {
        Ok(Ok(msg)) if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) => {
            api_error(503, "no Ailurus worker is serving the management API")
        }
        Ok(Ok(msg)) => {
            let status = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::STATUS))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(200);
            json(status, msg.payload.to_vec())
        }
        Ok(Err(e)) => api_error(503, &format!("management API request failed: {e}")),
        Err(_) => api_error(504, "the management API did not answer in time"),
    }
}

/// A management-API answer that streams (`…/stream`: server-sent events): the first reply
/// decides — a final one is a plain JSON answer (a refusal), a chunk opens the event stream,
/// whose chunks are copied as they come until the final reply. Dropping the body (the
/// client left) cancels it on `llm.cancel.<trace>`, as for an LLM stream.
async fn api_stream(
    st: &Arc<AppState>,
    subject: String,
    h: async_nats::HeaderMap,
    body: Bytes,
    trace: Token,
) -> Response {
    let mut replies = match st.requester.send_raw(subject, h, body, Some(trace.clone())).await {
        Ok(r) => r,
        Err(e) => return api_error(503, &format!("management API request failed: {e}")),
    };
    let first = match replies.next_content().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return api_error(503, &e.to_string()),
        None => return api_error(502, "the worker closed the reply stream"),
    };
    let status = first.status.unwrap_or(200);
    if first.kind != ReplyKind::Chunk {
        replies.detach();
        return json(status, first.payload.to_vec());
    }
    let rest = futures::stream::unfold(replies, |mut replies| async move {
        loop {
            match replies.next().await {
                Some(Ok(r)) if r.kind == ReplyKind::Chunk => {
                    return Some((Ok::<_, std::convert::Infallible>(r.payload), replies))
                }
                Some(Ok(r)) if r.kind == ReplyKind::Heartbeat => continue,
                // Final, an error, or the end: the stream ends (the client reconnects).
                _ => return None,
            }
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::once(std::future::ready(Ok(first.payload))), rest);
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

/// Read a request body within the size and time limits: the body, or a status and why not.
async fn read_body(st: &Arc<AppState>, body: Body) -> Result<Bytes, (u16, String)> {
    let read = axum::body::to_bytes(body, st.config.max_body_bytes);
    match tokio::time::timeout(Duration::from_millis(st.config.body_read_timeout_ms), read).await {
        Err(_) => Err((408, format!("the request body did not arrive within {} ms", st.config.body_read_timeout_ms))),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            Err(if too_big {
                (413, format!("request body is over the {} byte limit", st.config.max_body_bytes))
            } else {
                (400, format!("cannot read the request body: {e}"))
            })
        }
    }
}

/// Build the NATS headers: format tag, operation, model, trace, API headers (the proof is
/// added once the body is read).
fn nats_headers(
    http: &HeaderMap,
    format: Format,
    op: Option<&str>,
    model: Option<&str>,
    trace: &Token,
) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::FORMAT, format.as_str());
    if let Some(op) = op {
        h.insert(headers::OP, op);
    }
    if let Some(m) = model {
        h.insert(headers::MODEL, m);
    }
    h.insert(headers::TRACE, trace.as_str());
    for name in FORWARD {
        if let Some(v) = http.get(name).and_then(|v| v.to_str().ok()) {
            h.insert(name, v);
        }
    }
    h
}

/// Refuse ambiguous or unreadable requests before forwarding: a credential header sent twice
/// (which token is meant?) is a 400, and a body declared as something clearly not JSON
/// (multipart, XML, text) is a 415. A missing `Content-Type`, and the form type `curl -d`
/// sends, are taken as JSON. The refusal is a status and a message.
fn check_headers(http: &HeaderMap, has_body: bool) -> Result<(), (u16, String)> {
    for name in ["authorization", "x-api-key", "x-goog-api-key"] {
        if http.get_all(name).iter().count() > 1 {
            return Err((400, format!("more than one {name} header")));
        }
    }
    if !has_body {
        return Ok(());
    }
    let types: Vec<_> = http.get_all("content-type").iter().collect();
    if types.len() > 1 {
        return Err((400, "more than one content-type header".into()));
    }
    if let Some(ct) = types.first() {
        let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        // `curl -d` sends form-encoded: taken as what it carries (the worker refuses a body
        // that is not JSON, in the route's format).
        let form = ct == "application/x-www-form-urlencoded";
        if !(form || ct == "application/json" || ct == "text/json" || ct.ends_with("+json")) {
            return Err((415, format!("content-type {ct:?} is not supported: send application/json")));
        }
    }
    Ok(())
}

/// The signer of the caller's token (`Authorization: Bearer`, `x-api-key`,
/// `x-goog-api-key`, or Gemini's `?key=`). Only a proof bound to the one request goes on
/// NATS: neither the token nor its hash reaches the bus or the `LLM_REQUESTS` audit stream.
/// The bridge knows nothing of quota: whether the token is any good is the worker's call.
fn signer(http: &HeaderMap, query: Option<&str>) -> Option<proof::Signer> {
    let header = |n: &str| http.get(n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let token = header("authorization")
        .map(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")).unwrap_or(a).trim())
        .or_else(|| header("x-api-key"))
        .or_else(|| header("x-goog-api-key"))
        .or_else(|| query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key="))))?;
    (!token.is_empty()).then(|| proof::Signer::new(token))
}

/// What [`forward`] made of a request.
enum Answer {
    /// A response that is complete now; the caller records its metrics.
    Complete(Response),
    /// A response whose body is still to come; the body records the metrics when it ends.
    Streaming(Response),
}

/// Where a forwarded request goes, from its route.
struct Target {
    /// The platform of its subject (`llm.request.<platform>`).
    platform: crate::protocol::Platform,
    /// The format tag of its body.
    format: Format,
    /// The operation (`Ailurus-Op`), when not a plain generate.
    op: Option<&'static str>,
    /// The model from the URL (Gemini), else the body names it.
    model: Option<String>,
    /// The route's metrics label.
    label: &'static str,
    /// When the HTTP request arrived.
    started: Instant,
}

/// Forward one request and turn its first reply into the HTTP response.
async fn forward(st: &Arc<AppState>, req: Request, target: Target) -> Answer {
    let Target { platform, format, op, model, label, started } = target;
    let (parts, body) = req.into_parts();
    if let Err((status, message)) = check_headers(&parts.headers, op != Some("models")) {
        return Answer::Complete(error(Some(format), status, &message));
    }
    let body = match read_body(st, body).await {
        Ok(b) => b,
        Err((status, message)) => {
            let mut r = error(Some(format), status, &message);
            if status == 408 {
                r.headers_mut().insert("connection", HeaderValue::from_static("close"));
            }
            return Answer::Complete(r);
        }
    };
    let trace = Token::random();
    let mut headers = nats_headers(&parts.headers, format, op, model.as_deref(), &trace);
    let subject = subjects::request(platform);
    if let Some(signer) = signer(&parts.headers, parts.uri.query()) {
        signer.sign(&subject, trace.as_str(), proof::now_secs(), &mut headers, &body);
    }
    let mut replies = match st.requester.send_raw(subject, headers, body, Some(trace.clone())).await {
        Ok(r) => r,
        Err(e) => return Answer::Complete(client_error(format, &e)),
    };
    let first = match replies.next_content().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Answer::Complete(client_error(format, &e)),
        None => return Answer::Complete(error(Some(format), 502, "the worker closed the reply stream")),
    };
    let status = first.status.unwrap_or(200);
    match first.kind {
        ReplyKind::Error | ReplyKind::Done => {
            let mut r = json(status, first.payload.clone());
            copy_reply_headers(&first, &mut r, &trace);
            replies.detach();
            Answer::Complete(r)
        }
        ReplyKind::Chunk => {
            let content_type = first
                .headers
                .get(headers::CONTENT_TYPE)
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| "application/json".into());
            if !content_type.starts_with("text/event-stream") {
                // A whole answer (one chunk, then the final reply right behind it): answer
                // with one body of known length, without a streamed body.
                let done = Finished { state: st.clone(), label, status, started };
                return Answer::Complete(whole_body(replies, first, content_type, &trace, done).await);
            }
            let body = BodyState {
                replies,
                format,
                model: model.unwrap_or_default(),
                events: sse_frames(&first.payload),
                ended: false,
                done: Some(Finished { state: st.clone(), label, status, started }),
            };
            let mut r = Response::new(Body::from_stream(reply_body(first.payload.clone(), body)));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                r.headers_mut().insert("content-type", v);
            }
            r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
            copy_reply_headers(&first, &mut r, &trace);
            Answer::Streaming(r)
        }
        ReplyKind::Heartbeat => Answer::Complete(error(Some(format), 502, "unexpected heartbeat")),
    }
}
