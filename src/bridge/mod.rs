//! The HTTP bridge: a route table plus byte copying. Each HTTP request becomes one NATS
//! message on `llm.request.<platform>` with the untouched body, a format tag, the
//! credentials and the API headers; the replies are written back as they arrive.
//!
//! Invariant: the bridge never parses a request body, never calls a provider and never
//! touches KV. Its only format knowledge is [`routes`] and the error shapes of its own
//! failures (no worker, body too large, a silent worker), rendered by
//! [`crate::formats::Format::render_error`].

pub mod routes;

use crate::bus::headers::{self, ReplyKind};
use crate::bus::subjects::{self, Token};
use crate::client::{ClientError, Reply, Requester};
use crate::protocol::{Format, Op};
use crate::shutdown::Shutdown;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use routes::Route;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bridge settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Address to listen on.
    #[serde(default = "BridgeConfig::default_listen")]
    pub listen: String,
    /// Largest request body accepted; larger gets 413.
    #[serde(default = "BridgeConfig::default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Wait for a worker's first reply before answering 503.
    #[serde(default = "BridgeConfig::default_first_reply_ms")]
    pub first_reply_ms: u64,
    /// Longest silence (no chunk, no heartbeat) before the worker is declared lost.
    #[serde(default = "BridgeConfig::default_silence_ms")]
    pub silence_ms: u64,
    /// Reply chunks buffered for a slow HTTP client.
    #[serde(default = "BridgeConfig::default_buffer_chunks")]
    pub buffer_chunks: usize,
    /// How long a full buffer may stay full before the request is cancelled.
    #[serde(default = "BridgeConfig::default_slow_client_ms")]
    pub slow_client_ms: u64,
    /// Longest wait for a request's headers, from the connection's first byte wait (and
    /// between requests on a kept-alive connection); slower clients are disconnected
    /// (slowloris).
    #[serde(default = "BridgeConfig::default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Longest time to receive a whole request body; slower gets 408.
    #[serde(default = "BridgeConfig::default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// Most HTTP connections open at once; further ones wait in the listen backlog.
    #[serde(default = "BridgeConfig::default_max_connections")]
    pub max_connections: usize,
}

impl BridgeConfig {
    fn default_listen() -> String {
        "127.0.0.1:18100".into()
    }
    const fn default_max_body_bytes() -> usize {
        32 * 1024 * 1024
    }
    const fn default_first_reply_ms() -> u64 {
        1_000
    }
    const fn default_silence_ms() -> u64 {
        4_000
    }
    const fn default_buffer_chunks() -> usize {
        256
    }
    const fn default_slow_client_ms() -> u64 {
        30_000
    }
    const fn default_header_read_timeout_ms() -> u64 {
        10_000
    }
    const fn default_body_read_timeout_ms() -> u64 {
        60_000
    }
    const fn default_max_connections() -> usize {
        16_384
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            listen: Self::default_listen(),
            max_body_bytes: Self::default_max_body_bytes(),
            first_reply_ms: Self::default_first_reply_ms(),
            silence_ms: Self::default_silence_ms(),
            buffer_chunks: Self::default_buffer_chunks(),
            slow_client_ms: Self::default_slow_client_ms(),
            header_read_timeout_ms: Self::default_header_read_timeout_ms(),
            body_read_timeout_ms: Self::default_body_read_timeout_ms(),
            max_connections: Self::default_max_connections(),
        }
    }
}

/// Headers copied to NATS as they are (API headers; never credentials, see
/// [`credential_hash`]).
const FORWARD: [&str; 9] = [
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

/// What every request handler shares.
struct AppState {
    /// Sends requests over NATS.
    requester: Requester,
    /// The NATS connection (health, cancels).
    client: async_nats::Client,
    /// Settings.
    config: BridgeConfig,
    /// Counters.
    metrics: crate::metrics::Metrics,
}

/// Serve HTTP on `config.listen` until `shutdown`.
pub async fn run(client: async_nats::Client, config: BridgeConfig, shutdown: Shutdown) -> Result<(), String> {
    let listener =
        listen(&config.listen).await.map_err(|e| format!("bridge cannot listen on {}: {e}", config.listen))?;
    serve(listener, client, config, shutdown).await
}

/// Bind `addr` with a listen backlog of 4096 (the kernel caps it at `somaxconn`): the
/// default of 128 makes a burst of connections wait for SYN retransmits, a second each.
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address");
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(4096)) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serve HTTP on a bound listener (tests bind port 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: async_nats::Client,
    config: BridgeConfig,
    shutdown: Shutdown,
) -> Result<(), String> {
    // One shared reply subscription for every request (no SUB/UNSUB per request).
    // A client that stops reading: cancelled once `buffer_chunks` replies wait unread for
    // `slow_client_ms`.
    let slow = crate::client::SlowReader {
        max_buffered: config.buffer_chunks.max(1),
        max_wait: Duration::from_millis(config.slow_client_ms),
    };
    let mut requester = Requester::multiplexed(client.clone(), Some(slow)).await.map_err(|e| e.to_string())?;
    requester.first_reply = Duration::from_millis(config.first_reply_ms);
    requester.silence = Duration::from_millis(config.silence_ms);
    let limits = Limits {
        header_read: Duration::from_millis(config.header_read_timeout_ms.max(1)),
        max_connections: config.max_connections.max(1),
    };
    let state = Arc::new(AppState { requester, client, config, metrics: crate::metrics::Metrics::default() });
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "bridge listening");
    let app = axum::Router::new().fallback(handle).with_state(state);
    accept_loop(listener, app, limits, shutdown).await;
    Ok(())
}

/// Connection limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Header read timeout (also bounds the wait for a new connection's first bytes).
    header_read: Duration,
    /// Most connections at once.
    max_connections: usize,
}

/// Accept connections until `shutdown`, each served by hyper with a header read timeout;
/// then stop accepting and let open connections finish (at most 30 s).
async fn accept_loop(listener: tokio::net::TcpListener, app: axum::Router, limits: Limits, shutdown: Shutdown) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.wait() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            if !first_bytes(&stream, limits.header_read).await {
                return;
            }
            let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("HTTP connections still open 30 s after shutdown; dropping them");
    }
}

/// Wait (at most `limit`) until a new connection has sent enough to tell HTTP/1 from an
/// HTTP/2 preface: hyper's header read timeout only starts after that, so a client that
/// connects and sends nothing (or trickles the preface) would otherwise hold its connection
/// for ever. `false`: drop the connection.
async fn first_bytes(stream: &tokio::net::TcpStream, limit: Duration) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 24];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return false,
        };
        if n == 0 {
            return false;
        }
        if n >= PREFACE.len() || buf[..n] != PREFACE[..n] {
            return true;
        }
        // A partial HTTP/2 preface: wait for more without spinning.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(20))).await.is_err() {
            return false;
        }
    }
}

/// A JSON response.
fn json(status: u16, body: impl Into<Bytes>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// An error in the route's format, or a neutral JSON shape.
fn error(format: Option<Format>, status: u16, message: &str) -> Response {
    let body = match format {
        Some(f) => f.render_error(status, message),
        None => serde_json::json!({"error": {"message": message, "type": "ailurus_error", "code": status}})
            .to_string()
            .into_bytes(),
    };
    json(status, body)
}

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

async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
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
        Route::Root => {
            let body = if method == Method::HEAD { Body::empty() } else { Body::from("ailurus bridge\n") };
            Response::new(body)
        }
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
        Route::UserApi { what } => user_api(&st, req.headers(), what).await,
        Route::Models { platform, format, .. } => {
            match forward(&st, req, *platform, *format, Some("models"), None, label, started).await {
                Ok(r) => r,
                Err(r) => return r,
            }
        }
        Route::Llm { platform, format, op, model, .. } => {
            let op_name = match op {
                Op::Generate => None,
                other => Some(other.as_str()),
            };
            match forward(&st, req, *platform, *format, op_name, model.clone(), label, started).await {
                Ok(r) => r,
                // Streamed: the body records the metrics when it ends.
                Err(r) => return r,
            }
        }
    };
    st.metrics.record(label, resp.status().as_u16(), started.elapsed().as_secs_f64(), None);
    resp
}

/// `GET /api/user/self|token`: one NATS request to `ailurus.api.user_<what>` with the
/// caller's credentials; the worker's JSON answer is returned as is.
async fn user_api(st: &Arc<AppState>, http: &HeaderMap, what: &str) -> Response {
    for name in ["authorization", "x-api-key", "x-goog-api-key"] {
        if http.get_all(name).iter().count() > 1 {
            return error(None, 400, &format!("more than one {name} header"));
        }
    }
    let mut h = async_nats::HeaderMap::new();
    if let Some(hash) = credential_hash(http, None) {
        h.insert(headers::TOKEN_SHA256, hash.as_str());
    }
    let subject = subjects::api(&format!("user_{what}"));
    let req = st.client.request_with_headers(subject, h, Bytes::new());
    match tokio::time::timeout(Duration::from_millis(st.config.silence_ms), req).await {
        Ok(Ok(msg)) if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) => {
            error(None, 503, "no Ailurus worker is serving the user API")
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
        Ok(Err(e)) => error(None, 503, &format!("user API request failed: {e}")),
        Err(_) => error(None, 504, "the user API did not answer in time"),
    }
}

/// Build the NATS headers: format tag, operation, model, trace, credentials, API headers.
fn nats_headers(
    http: &HeaderMap,
    query: Option<&str>,
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
    if let Some(hash) = credential_hash(http, query) {
        h.insert(headers::TOKEN_SHA256, hash.as_str());
    }
    h
}

/// Refuse ambiguous or unreadable requests before forwarding: a credential header sent twice
/// (which token is meant?) is a 400, and a body declared as something other than JSON is a
/// 415 (a missing `Content-Type` is taken as JSON).
#[allow(clippy::result_large_err)]
fn check_headers(http: &HeaderMap, format: Format, has_body: bool) -> Result<(), Response> {
    for name in ["authorization", "x-api-key", "x-goog-api-key"] {
        if http.get_all(name).iter().count() > 1 {
            return Err(error(Some(format), 400, &format!("more than one {name} header")));
        }
    }
    if !has_body {
        return Ok(());
    }
    let types: Vec<_> = http.get_all("content-type").iter().collect();
    if types.len() > 1 {
        return Err(error(Some(format), 400, "more than one content-type header"));
    }
    if let Some(ct) = types.first() {
        let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !(ct == "application/json" || ct == "text/json" || ct.ends_with("+json")) {
            return Err(error(
                Some(format),
                415,
                &format!("content-type {ct:?} is not supported: send application/json"),
            ));
        }
    }
    Ok(())
}

/// sha256 of the caller's token (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`,
/// or Gemini's `?key=`). Only the hash goes on NATS: the token never reaches the bus or
/// the `LLM_REQUESTS` audit stream.
fn credential_hash(http: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = |n: &str| http.get(n).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let token = header("authorization")
        .map(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")).unwrap_or(a).trim())
        .or_else(|| header("x-api-key"))
        .or_else(|| header("x-goog-api-key"))
        .or_else(|| query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key="))))?;
    (!token.is_empty()).then(|| crate::credential::hash(token))
}

/// Forward one request and turn its replies into the HTTP response: `Ok` for a response
/// that is complete now, `Err` for one whose body is still streaming (the body records
/// its metrics).
#[allow(clippy::too_many_arguments)]
async fn forward(
    st: &Arc<AppState>,
    req: Request,
    platform: crate::protocol::Platform,
    format: Format,
    op: Option<&str>,
    model: Option<String>,
    label: &'static str,
    started: Instant,
) -> Result<Response, Response> {
    let (parts, body) = req.into_parts();
    if let Err(r) = check_headers(&parts.headers, format, op != Some("models")) {
        return Ok(r);
    }
    let read = axum::body::to_bytes(body, st.config.max_body_bytes);
    let body = match tokio::time::timeout(Duration::from_millis(st.config.body_read_timeout_ms), read).await {
        Err(_) => {
            let mut r = error(
                Some(format),
                408,
                &format!("the request body did not arrive within {} ms", st.config.body_read_timeout_ms),
            );
            r.headers_mut().insert("connection", HeaderValue::from_static("close"));
            return Ok(r);
        }
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            return Ok(if too_big {
                error(Some(format), 413, &format!("request body is over the {} byte limit", st.config.max_body_bytes))
            } else {
                error(Some(format), 400, &format!("cannot read the request body: {e}"))
            });
        }
    };
    let trace = Token::random();
    let headers = nats_headers(&parts.headers, parts.uri.query(), format, op, model.as_deref(), &trace);
    let mut replies = match st.requester.send_raw(subjects::request(platform), headers, body, Some(trace.clone())).await
    {
        Ok(r) => r,
        Err(e) => return Ok(client_error(format, &e)),
    };
    let first = match replies.next_content().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Ok(client_error(format, &e)),
        None => return Ok(error(Some(format), 502, "the worker closed the reply stream")),
    };
    let status = first.status.unwrap_or(200);
    match first.kind {
        ReplyKind::Error | ReplyKind::Done => {
            let mut r = json(status, first.payload.clone());
            copy_reply_headers(&first, &mut r, &trace);
            replies.detach();
            Ok(r)
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
                return Err(whole_body(st, replies, first, content_type, status, &trace, label, started).await);
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
            Err(r)
        }
        ReplyKind::Heartbeat => Ok(error(Some(format), 502, "unexpected heartbeat")),
    }
}

/// `upstream_ms` of a final reply, without decoding the rest of it.
fn upstream_ms(payload: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Final {
        #[serde(default)]
        upstream_ms: Option<u64>,
    }
    serde_json::from_slice::<Final>(payload).ok().and_then(|f| f.upstream_ms)
}

/// The rest of a non-streaming answer: every chunk until the final reply, as one body.
/// A worker that goes silent (or a reply stream that ends) after the first chunk: what came
/// is sent.
#[allow(clippy::too_many_arguments)]
async fn whole_body(
    st: &Arc<AppState>,
    mut replies: crate::client::Replies,
    first: Reply,
    content_type: String,
    status: u16,
    trace: &Token,
    label: &'static str,
    started: Instant,
) -> Response {
    let mut body = first.payload.clone();
    let mut more: Option<Vec<u8>> = None;
    let mut upstream = None;
    while let Some(Ok(r)) = replies.next().await {
        match r.kind {
            ReplyKind::Heartbeat => {}
            ReplyKind::Chunk => more.get_or_insert_with(|| body.to_vec()).extend_from_slice(&r.payload),
            ReplyKind::Done | ReplyKind::Error => {
                upstream = upstream_ms(&r.payload);
                replies.detach();
                break;
            }
        }
    }
    if let Some(v) = more {
        body = Bytes::from(v);
    }
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        r.headers_mut().insert("content-type", v);
    }
    copy_reply_headers(&first, &mut r, trace);
    Finished { state: st.clone(), label, status, started }.record(upstream);
    r
}

fn copy_reply_headers(reply: &Reply, r: &mut Response, trace: &Token) {
    if let Some(ra) = reply.headers.get(headers::RETRY_AFTER).and_then(|v| HeaderValue::from_str(v.as_str()).ok()) {
        r.headers_mut().insert("retry-after", ra);
    }
    if let Ok(v) = HeaderValue::from_str(trace.as_str()) {
        r.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
    }
}

fn client_error(format: Format, e: &ClientError) -> Response {
    match e {
        ClientError::NoWorker => {
            let mut r = error(Some(format), 503, "no Ailurus worker is serving requests right now");
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            r
        }
        ClientError::WorkerSilent(_) => error(Some(format), 504, &e.to_string()),
        ClientError::Publish(m) if m.contains("payload") => error(Some(format), 413, &e.to_string()),
        other => error(Some(format), 502, &other.to_string()),
    }
}

/// The rest of an event-stream response: read by the body stream as the client takes it.
struct BodyState {
    /// The replies still to come.
    replies: crate::client::Replies,
    /// The client's format, for an in-stream error event.
    format: Format,
    /// Model from the URL, for the error event.
    model: String,
    /// SSE events written so far (counted by frame terminators, not parsed), so an error
    /// event can continue the stream's numbering.
    events: u64,
    /// Nothing more to send.
    ended: bool,
    /// Records the metrics once: at the final reply (with the upstream time), else when
    /// the body is dropped (client gone, worker lost).
    done: Option<Finished>,
}

impl Drop for BodyState {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done.record(None);
        }
    }
}

/// The HTTP body of a streamed answer: `first`, then each reply chunk as the client takes
/// it, without a task of its own; the request's replies wake the connection directly. A
/// client that disconnects drops the body, and with it the replies: `llm.cancel.<trace_id>`.
/// A client that stops reading is cancelled by the requester (see `SlowReader`).
fn reply_body(first: Bytes, state: BodyState) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let rest = futures::stream::unfold(state, |mut s| async move {
        if s.ended {
            return None;
        }
        loop {
            match s.replies.next().await {
                Some(Ok(r)) => match r.kind {
                    ReplyKind::Heartbeat => {}
                    ReplyKind::Chunk => {
                        s.events += sse_frames(&r.payload);
                        return Some((Ok(r.payload), s));
                    }
                    // Final: an error after bytes went out was already written as an event.
                    ReplyKind::Done | ReplyKind::Error => {
                        if let Some(done) = s.done.take() {
                            done.record(upstream_ms(&r.payload));
                        }
                        return None;
                    }
                },
                Some(Err(e)) => {
                    s.ended = true;
                    if e != ClientError::Closed {
                        // The worker is gone mid-stream: end the client's stream with an error
                        // event that continues it (no second preamble, numbering goes on).
                        let out = s.format.continuation_error("", &s.model, s.events, 504, &e.to_string());
                        return Some((Ok(Bytes::from(out)), s));
                    }
                    return None;
                }
                None => return None,
            }
        }
    });
    futures::StreamExt::chain(futures::stream::once(std::future::ready(Ok(first))), rest)
}

/// SSE frames in a chunk of an event stream: its blank-line terminators. The bridge only
/// counts them (it never parses what it forwards).
fn sse_frames(bytes: &[u8]) -> u64 {
    bytes.windows(2).filter(|w| *w == b"\n\n").count() as u64
}

/// Records a streamed response's metrics when its body ends.
struct Finished {
    /// For the metrics.
    state: Arc<AppState>,
    /// Route label.
    label: &'static str,
    /// HTTP status sent.
    status: u16,
    /// When the request arrived.
    started: Instant,
}

impl Finished {
    fn record(self, upstream_ms: Option<u64>) {
        let total = self.started.elapsed().as_secs_f64();
        let overhead = upstream_ms.map(|u| total - u as f64 / 1000.0);
        self.state.metrics.record(self.label, self.status, total, overhead);
    }
}
