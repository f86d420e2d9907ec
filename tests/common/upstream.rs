//! A scripted upstream: one loopback HTTP server that speaks the real wire shapes of the
//! four upstream APIs, answers what its [`Script`] says (text or a tool call, with usage), or
//! misbehaves on purpose (slow first byte, 429 with `Retry-After`, 5xx, a reset mid-stream,
//! malformed SSE, a stream that never ends, an error event after a 200).
//!
//! | path | API |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI Chat (`data:` chunks, usage chunk when asked, `[DONE]`) |
//! | `POST /v1/messages` | Anthropic Messages (named events `message_start` … `message_stop`) |
//! | `POST /v1/responses` | OpenAI Responses (`response.created` … `response.completed`) |
//! | `POST /v1beta/models/{model}:generateContent` / `:streamGenerateContent?alt=sse` | Gemini |
//!
//! Every request is recorded (path, headers, body), and every answer's life is counted:
//! in flight, finished (the body ran to its scripted end) or dropped (the client went away
//! before the end: the body stream was dropped), with the instant of each drop, so a test can
//! prove that a cancel closed the upstream connection.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Which API a request spoke (from its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST …/chat/completions`.
    OpenAi,
    /// `POST …/v1/messages`.
    Anthropic,
    /// `POST …/responses`.
    Responses,
    /// `POST …/models/{model}:generateContent` or `:streamGenerateContent`.
    Gemini,
}

impl Api {
    /// Every API.
    pub const ALL: [Api; 4] = [Api::OpenAi, Api::Anthropic, Api::Responses, Api::Gemini];

    /// The channel `kind` for this API.
    pub const fn kind(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
            Api::Responses => "openai_responses",
            Api::Gemini => "gemini",
        }
    }

    fn of_path(path: &str) -> Option<Self> {
        if path.ends_with("/chat/completions") {
            Some(Api::OpenAi)
        } else if path.ends_with("/messages") {
            Some(Api::Anthropic)
        } else if path.ends_with("/responses") {
            Some(Api::Responses)
        } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
            Some(Api::Gemini)
        } else {
            None
        }
    }
}

/// What the upstream answers when it answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Text, streamed as these pieces (one content event each).
    Text(Vec<String>),
    /// One tool call; `args` pieces concatenate to a JSON object.
    Tool {
        /// Function name.
        name: String,
        /// Argument JSON, in streamed pieces.
        args: Vec<String>,
    },
}

impl Answer {
    /// A text answer from pieces.
    pub fn text(pieces: &[&str]) -> Self {
        Answer::Text(pieces.iter().map(|p| p.to_string()).collect())
    }

    /// The whole text (empty for a tool call).
    pub fn full_text(&self) -> String {
        match self {
            Answer::Text(p) => p.concat(),
            Answer::Tool { .. } => String::new(),
        }
    }

    fn pieces(&self) -> &[String] {
        match self {
            Answer::Text(p) => p,
            Answer::Tool { args, .. } => args,
        }
    }
}

/// Token counts the upstream reports. `input` is the uncached prompt; each API folds the
/// cache numbers in its own way (OpenAI, Responses and Gemini count cached tokens inside the
/// prompt; Anthropic reports them apart; only Anthropic has cache writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens neither read from nor written to a cache.
    pub input: u64,
    /// Answer tokens.
    pub output: u64,
    /// Prompt tokens read from the cache.
    pub cache_read: u64,
    /// Prompt tokens written to the cache (Anthropic only).
    pub cache_write: u64,
}

impl Usage {
    /// Every prompt token, as the gateway reports `tokens_input`.
    pub fn prompt_total(&self, api: Api) -> u64 {
        self.input + self.cache_read + if api == Api::Anthropic { self.cache_write } else { 0 }
    }
}

impl Default for Usage {
    fn default() -> Self {
        Self { input: 11, output: 7, cache_read: 0, cache_write: 0 }
    }
}

/// How the upstream misbehaves on one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Wait this long before the response headers (a slow first byte).
    Delay(Duration),
    /// Headers at once, then wait this long before the first event (a slow first event).
    SlowStream(Duration),
    /// Answer with this status, an optional `Retry-After`, and an error body (the API's own
    /// error shape with `message`, or `raw` as is).
    Status {
        /// HTTP status.
        code: u16,
        /// `Retry-After` header value.
        retry_after: Option<String>,
        /// The error message inside the API's error shape.
        message: String,
    },
    /// Stream the preamble and this many content pieces, then break the connection.
    ResetAfter(usize),
    /// A garbage `data:` line first.
    Malformed,
    /// Stream the preamble and this many content pieces, then nothing, forever.
    Hang(usize),
    /// A 200 stream whose first event after the preamble is the API's error event
    /// (Anthropic `error`, Responses `response.failed`, an OpenAI / Gemini error object),
    /// carrying this message.
    ErrorEvent(String),
}

impl Fault {
    /// A status with no `Retry-After`.
    pub fn status(code: u16) -> Self {
        Fault::Status { code, retry_after: None, message: format!("scripted status {code}") }
    }
}

/// What the server does; a test changes it at any time through [`Upstream::script`].
#[derive(Debug, Clone)]
pub struct Script {
    /// The answer.
    pub answer: Answer,
    /// Reported usage.
    pub usage: Usage,
    /// Fault for every request without a queued one.
    pub fault: Fault,
    /// Faults for the next requests, one each, before `fault` applies again.
    pub next: VecDeque<Fault>,
    /// Pause between two streamed content pieces.
    pub piece_delay: Duration,
    /// As a NEW-API: (remaining, used) quota units of the key (`GET /api/usage/token/`) and of
    /// the account behind an access token (`GET /api/user/self`); 500,000 units are $1.
    pub newapi_quota: (i64, i64),
    /// Simulate a prompt cache per API key: the usage reports as cache reads the tokens of
    /// the longest prefix of the conversation this key has sent before (and the rest as
    /// input); `usage.output` stays as scripted. See [`Upstream::cache_totals`].
    pub prompt_cache: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            answer: Answer::text(&["Hello", " from", " upstream"]),
            usage: Usage::default(),
            fault: Fault::None,
            next: VecDeque::new(),
            piece_delay: Duration::ZERO,
            newapi_quota: (5_000_000, 1_250_000),
            prompt_cache: false,
        }
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, normally.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, as received.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The model the request names: the body's `model`, else Gemini's URL model.
    pub fn model(&self) -> Option<String> {
        if let Some(m) = self.json().get("model").and_then(Value::as_str) {
            return Some(m.to_string());
        }
        let rest = self.path.split("/models/").nth(1)?;
        Some(rest.split(':').next()?.to_string())
    }
}

/// Counters of answers' lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Requests received.
    pub received: usize,
    /// Answers still being written.
    pub in_flight: usize,
    /// Answers that ran to their scripted end (including scripted resets).
    pub finished: usize,
    /// Answers the client walked away from (body or handler dropped before the end).
    pub dropped: usize,
}

/// State shared by the server task and the test.
#[derive(Debug, Default)]
pub struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<Recorded>>,
    received: AtomicUsize,
    finished: AtomicUsize,
    dropped: AtomicUsize,
    drops: Mutex<Vec<Instant>>,
    changed: Notify,
    /// The simulated prompt cache: key → hashes of every conversation prefix it has sent.
    cache: Mutex<std::collections::HashMap<String, std::collections::HashSet<u64>>>,
    /// Simulated prompt cache, summed: (prompt tokens, of which read from the cache, later
    /// turns (three messages or more), of which read all of the turn before's prompt).
    cache_totals: Mutex<(u64, u64, u64, u64)>,
}

impl Shared {
    /// The usage of a request under the simulated per-key prompt cache (see
    /// [`Script::prompt_cache`]): each message counts a quarter of its JSON's bytes.
    fn cached_usage(&self, api: Api, headers: &HeaderMap, uri: &Uri, req: &Value, output: u64) -> Usage {
        use std::hash::{Hash, Hasher};
        let key = ["x-api-key", "authorization", "x-goog-api-key"]
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()).map(str::to_string))
            .or_else(|| uri.query().map(str::to_string))
            .unwrap_or_default();
        let (head, turns) = match api {
            Api::Anthropic => ("system", "messages"),
            Api::OpenAi => ("", "messages"),
            Api::Responses => ("instructions", "input"),
            Api::Gemini => ("systemInstruction", "contents"),
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        req.get(head).map(Value::to_string).unwrap_or_default().hash(&mut hasher);
        let mut total = req.get(head).map_or(0, |v| v.to_string().len() as u64 / 4);
        let mut prefixes = Vec::new();
        for m in req.get(turns).and_then(Value::as_array).into_iter().flatten() {
            let text = m.to_string();
            text.hash(&mut hasher);
            total += text.len() as u64 / 4;
            prefixes.push((hasher.finish(), total));
        }
        let mut cache = self.cache.lock().unwrap();
        let seen = cache.entry(key).or_default();
        let read = prefixes.iter().rev().find(|(h, _)| seen.contains(h)).map_or(0, |(_, t)| *t);
        // The turn before sent everything up to its answer and this turn's message.
        let later = prefixes.len() >= 3;
        let warm = later && seen.contains(&prefixes[prefixes.len() - 3].0);
        seen.extend(prefixes.iter().map(|(h, _)| *h));
        let mut totals = self.cache_totals.lock().unwrap();
        totals.0 += total;
        totals.1 += read;
        totals.2 += u64::from(later);
        totals.3 += u64::from(warm);
        Usage { input: total - read, output, cache_read: read, cache_write: 0 }
    }
}

/// Tracks one answer: finished when marked, dropped when dropped unmarked.
struct Flight {
    shared: Arc<Shared>,
    done: bool,
}

impl Flight {
    fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if self.done {
            self.shared.finished.fetch_add(1, Ordering::SeqCst);
        } else {
            self.shared.drops.lock().unwrap().push(Instant::now());
            self.shared.dropped.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.changed.notify_waiters();
    }
}

/// A running scripted upstream. Stops on drop.
pub struct Upstream {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Shared state.
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Start one on a random loopback port, with the default script.
    pub async fn start() -> Self {
        Self::with(Script::default()).await
    }

    /// Start one with `script`.
    pub async fn with(script: Script) -> Self {
        let shared = Arc::new(Shared { script: Mutex::new(script), ..Default::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{addr}"), shared, task }
    }

    /// The `base_url` a channel of `api` uses for this server.
    pub fn base_url(&self, api: Api) -> String {
        match api {
            Api::OpenAi | Api::Responses => format!("{}/v1", self.url),
            Api::Anthropic | Api::Gemini => self.url.clone(),
        }
    }

    /// Change the script.
    pub fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.shared.script.lock().unwrap());
    }

    /// Set the standing fault.
    pub fn fault(&self, fault: Fault) {
        self.script(|s| s.fault = fault);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let received = self.shared.received.load(Ordering::SeqCst);
        let finished = self.shared.finished.load(Ordering::SeqCst);
        let dropped = self.shared.dropped.load(Ordering::SeqCst);
        Stats { received, in_flight: received.saturating_sub(finished + dropped), finished, dropped }
    }

    /// Over every request: (prompt tokens, of which read from the simulated prompt cache,
    /// later turns, of which found the whole prompt of the turn before in the cache).
    pub fn cache_totals(&self) -> (u64, u64, u64, u64) {
        *self.shared.cache_totals.lock().unwrap()
    }

    /// Instants at which answers were dropped, in order.
    pub fn drops(&self) -> Vec<Instant> {
        self.shared.drops.lock().unwrap().clone()
    }

    /// Wait until `cond(stats)` holds, at most `limit`; the final stats either way.
    pub async fn wait_for(&self, limit: Duration, cond: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let s = self.stats();
            if cond(&s) {
                return s;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.stats();
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `GET /api/usage/token/` (the key's own quota, relay token as bearer) and `GET
/// /api/user/self` (the account's, an access token and `New-Api-User`), as a NEW-API answers.
fn newapi_account(path: &str, headers: &HeaderMap, (remain, used): (i64, i64)) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = |status, body: Value| Some(plain(status, "application/json", body.to_string()));
    match path.trim_end_matches('/') {
        "/api/usage/token" => match auth.strip_prefix("Bearer ") {
            Some(_) => json(
                StatusCode::OK,
                serde_json::json!({"code": true, "message": "ok", "data": {
                    "object": "token_usage", "name": "codeswitch", "total_granted": remain + used,
                    "total_used": used, "total_available": remain, "unlimited_quota": false,
                    "model_limits": {}, "model_limits_enabled": false, "expires_at": 0,
                }}),
            ),
            None => {
                json(StatusCode::UNAUTHORIZED, serde_json::json!({"success": false, "message": "Invalid Bearer token"}))
            }
        },
        "/api/user/self" => match headers.get("new-api-user").and_then(|v| v.to_str().ok()) {
            Some(id) if !auth.is_empty() => json(
                StatusCode::OK,
                serde_json::json!({"success": true, "message": "", "data": {
                    "id": id.parse::<i64>().unwrap_or(0), "username": "codeswitch", "role": 1, "status": 1,
                    "group": "default", "quota": remain * 2, "used_quota": used * 2, "request_count": 42,
                }}),
            ),
            _ => json(StatusCode::UNAUTHORIZED, serde_json::json!({"success": false, "message": "not logged in"})),
        },
        _ => None,
    }
}

/// One step of a streamed body.
enum Step {
    /// Write these bytes.
    Bytes(Vec<u8>),
    /// Wait.
    Sleep(Duration),
    /// Break the connection (the body ends with an error).
    Reset,
    /// Never go on.
    Hang,
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    shared.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: body.clone(),
        at: Instant::now(),
    });
    shared.received.fetch_add(1, Ordering::SeqCst);
    shared.changed.notify_waiters();
    let mut flight = Flight { shared: shared.clone(), done: false };

    let (mut script, fault) = {
        let mut s = shared.script.lock().unwrap();
        let fault = s.next.pop_front().unwrap_or_else(|| s.fault.clone());
        (s.clone(), fault)
    };
    // A NEW-API's account endpoints (QuantumNous/new-api: controller/token.go `GetTokenUsage`,
    // controller/user.go `GetSelf` behind an access token and `New-Api-User`).
    if let Some(answer) = newapi_account(uri.path(), &headers, script.newapi_quota) {
        flight.finish();
        return answer;
    }
    // Token counting, as Anthropic and Gemini answer it.
    if uri.path().ends_with("/messages/count_tokens") {
        flight.finish();
        return plain(StatusCode::OK, "application/json", r#"{"input_tokens":4242}"#.to_string());
    }
    if uri.path().ends_with(":countTokens") {
        flight.finish();
        return plain(StatusCode::OK, "application/json", r#"{"totalTokens":4343}"#.to_string());
    }
    let Some(api) = Api::of_path(uri.path()) else {
        flight.finish();
        return plain(StatusCode::NOT_FOUND, "application/json", format!(r#"{{"error":"no route {path}"}}"#));
    };
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let stream = match api {
        Api::Gemini => uri.path().contains(":streamGenerateContent"),
        _ => req.get("stream").and_then(Value::as_bool).unwrap_or(false),
    };
    let model = match api {
        Api::Gemini => uri.path().split("/models/").nth(1).and_then(|r| r.split(':').next()).unwrap_or("").to_string(),
        _ => req.get("model").and_then(Value::as_str).unwrap_or("").to_string(),
    };
    if script.prompt_cache {
        script.usage = shared.cached_usage(api, &headers, &uri, &req, script.usage.output);
    }
    let include_usage =
        req.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false) || api != Api::OpenAi;

    if let Fault::Delay(d) = fault {
        // If the client gives up meanwhile, this future (and `flight`) is dropped.
        tokio::time::sleep(d).await;
    }
    if let Fault::Status { code, retry_after, message } = &fault {
        flight.finish();
        let mut resp = plain(
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "application/json",
            error_body(api, *code, message).to_string(),
        );
        if let Some(ra) = retry_after {
            resp.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        return resp;
    }
    let w = Wire { api, model: if model.is_empty() { "scripted-model".into() } else { model }, script: &script };

    if !stream {
        return match &fault {
            Fault::Malformed => {
                flight.finish();
                plain(StatusCode::OK, "application/json", "{\"id\": oops not json".into())
            }
            Fault::ErrorEvent(m) => {
                flight.finish();
                plain(StatusCode::OK, "application/json", error_body(api, 500, m).to_string())
            }
            Fault::ResetAfter(_) | Fault::Hang(_) => {
                let whole = w.whole().to_string().into_bytes();
                let half = whole[..whole.len() / 2].to_vec();
                let end = if matches!(fault, Fault::Hang(_)) { Step::Hang } else { Step::Reset };
                streamed("application/json", vec![Step::Bytes(half), end], flight)
            }
            Fault::SlowStream(d) => {
                streamed("application/json", vec![Step::Sleep(*d), Step::Bytes(w.whole().to_string().into())], flight)
            }
            _ => {
                flight.finish();
                plain(StatusCode::OK, "application/json", w.whole().to_string())
            }
        };
    }

    let (preamble, pieces, closing) = w.events(include_usage);
    let mut steps = Vec::new();
    if let Fault::SlowStream(d) = fault {
        steps.push(Step::Sleep(d));
    }
    if fault == Fault::Malformed {
        steps.push(Step::Bytes(b"data: {\"choices\": [garbage\n\n".to_vec()));
    }
    steps.extend(preamble.into_iter().map(Step::Bytes));
    let limit = match fault {
        Fault::ResetAfter(n) | Fault::Hang(n) => n,
        Fault::ErrorEvent(_) => 0,
        _ => usize::MAX,
    };
    for (i, p) in pieces.into_iter().enumerate() {
        if i >= limit {
            break;
        }
        if i > 0 && !script.piece_delay.is_zero() {
            steps.push(Step::Sleep(script.piece_delay));
        }
        steps.push(Step::Bytes(p));
    }
    match &fault {
        Fault::ResetAfter(_) => steps.push(Step::Reset),
        Fault::Hang(_) => steps.push(Step::Hang),
        Fault::ErrorEvent(m) => steps.push(Step::Bytes(w.error_event(m))),
        _ => steps.extend(closing.into_iter().map(Step::Bytes)),
    }
    streamed("text/event-stream", steps, flight)
}

fn plain(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder().status(status).header("content-type", content_type).body(Body::from(body)).unwrap()
}

/// A body written step by step; `flight` is finished at the scripted end, dropped otherwise.
fn streamed(content_type: &str, steps: Vec<Step>, flight: Flight) -> Response {
    let stream = futures::stream::unfold((steps.into_iter(), flight), |(mut steps, mut flight)| async move {
        loop {
            match steps.next() {
                Some(Step::Bytes(b)) => return Some((Ok(Bytes::from(b)), (steps, flight))),
                Some(Step::Sleep(d)) => tokio::time::sleep(d).await,
                Some(Step::Reset) => {
                    // Let the frames before it reach the wire first: hyper drops what it still
                    // buffers when a body fails.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    flight.finish();
                    let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "scripted reset");
                    return Some((Err(err), (steps, flight)));
                }
                Some(Step::Hang) => futures::future::pending::<()>().await,
                None => {
                    flight.finish();
                    return None;
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The API's error body for a status.
pub fn error_body(api: Api, code: u16, message: &str) -> Value {
    match api {
        Api::OpenAi | Api::Responses => {
            let ty = match code {
                401 => "invalid_request_error",
                429 => "rate_limit_exceeded",
                400..=499 => "invalid_request_error",
                _ => "server_error",
            };
            json!({"error": {"message": message, "type": ty, "param": null, "code": null}})
        }
        Api::Anthropic => {
            let ty = match code {
                401 => "authentication_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": ty, "message": message}})
        }
        Api::Gemini => {
            let status = match code {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            json!({"error": {"code": code, "message": message, "status": status}})
        }
    }
}

/// SSE frames.
type Frames = Vec<Vec<u8>>;
/// Named events before numbering.
type Named<'a> = Vec<(&'a str, Value)>;
/// Content delta of one piece.
type DeltaOf = Box<dyn Fn(&str) -> Value>;

/// Renders a script in one API's wire shapes.
struct Wire<'a> {
    api: Api,
    model: String,
    script: &'a Script,
}

const CREATED: u64 = 1_760_000_000;

fn sse(event: Option<&str>, data: &Value) -> Vec<u8> {
    match event {
        Some(e) => format!("event: {e}\ndata: {data}\n\n").into_bytes(),
        None => format!("data: {data}\n\n").into_bytes(),
    }
}

impl Wire<'_> {
    fn tool_args(&self) -> Value {
        serde_json::from_str(&self.script.answer.pieces().concat()).unwrap_or(json!({}))
    }

    fn openai_usage(&self) -> Value {
        let u = self.script.usage;
        let prompt = u.input + u.cache_read;
        json!({"prompt_tokens": prompt, "completion_tokens": u.output, "total_tokens": prompt + u.output,
               "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                   "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
    }

    fn anthropic_usage(&self, output: u64) -> Value {
        let u = self.script.usage;
        json!({"input_tokens": u.input, "cache_creation_input_tokens": u.cache_write,
               "cache_read_input_tokens": u.cache_read, "output_tokens": output,
               "service_tier": "standard"})
    }

    fn responses_usage(&self) -> Value {
        let u = self.script.usage;
        let input = u.input + u.cache_read;
        json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": u.cache_read},
               "output_tokens": u.output, "output_tokens_details": {"reasoning_tokens": 0},
               "total_tokens": input + u.output})
    }

    fn gemini_usage(&self, done: bool) -> Value {
        let u = self.script.usage;
        let prompt = u.input + u.cache_read;
        let out = if done { u.output } else { 0 };
        let mut v = json!({"promptTokenCount": prompt, "totalTokenCount": prompt + out,
                           "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]});
        if done {
            v["candidatesTokenCount"] = out.into();
        }
        if u.cache_read > 0 {
            v["cachedContentTokenCount"] = u.cache_read.into();
        }
        v
    }

    fn responses_shell(&self, status: &str, output: Value, usage: Value) -> Value {
        json!({"id": "resp_scripted0001", "object": "response", "created_at": CREATED, "status": status,
               "background": false, "error": null, "incomplete_details": null, "instructions": null,
               "max_output_tokens": null, "model": self.model, "output": output,
               "parallel_tool_calls": true, "previous_response_id": null,
               "reasoning": {"effort": null, "summary": null}, "store": false, "temperature": 1.0,
               "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
               "truncation": "disabled", "usage": usage, "user": null, "metadata": {}})
    }

    fn responses_item(&self, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match &self.script.answer {
            Answer::Text(p) => {
                let content = if done {
                    json!([{"type": "output_text", "text": p.concat(), "annotations": [], "logprobs": []}])
                } else {
                    json!([])
                };
                json!({"id": "msg_scripted0001", "type": "message", "status": status, "role": "assistant",
                       "content": content})
            }
            Answer::Tool { name, args } => {
                let arguments = if done { args.concat() } else { String::new() };
                json!({"id": "fc_scripted0001", "type": "function_call", "status": status,
                       "arguments": arguments, "call_id": "call_scripted0001", "name": name})
            }
        }
    }

    /// The whole (non-stream) answer.
    fn whole(&self) -> Value {
        let a = &self.script.answer;
        match self.api {
            Api::OpenAi => {
                let (message, finish) = match a {
                    Answer::Text(p) => (
                        json!({"role": "assistant", "content": p.concat(), "refusal": null, "annotations": []}),
                        "stop",
                    ),
                    Answer::Tool { name, args } => (
                        json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                            {"id": "call_scripted0001", "type": "function",
                             "function": {"name": name, "arguments": args.concat()}}]}),
                        "tool_calls",
                    ),
                };
                json!({"id": "chatcmpl-scripted0001", "object": "chat.completion", "created": CREATED,
                       "model": self.model, "choices": [{"index": 0, "message": message, "logprobs": null,
                       "finish_reason": finish}], "usage": self.openai_usage(), "service_tier": "default",
                       "system_fingerprint": "fp_scripted"})
            }
            Api::Anthropic => {
                let (content, stop) = match a {
                    Answer::Text(p) => (json!([{"type": "text", "text": p.concat()}]), "end_turn"),
                    Answer::Tool { name, .. } => (
                        json!([{"type": "tool_use", "id": "toolu_scripted0001", "name": name,
                                "input": self.tool_args()}]),
                        "tool_use",
                    ),
                };
                json!({"id": "msg_scripted0001", "type": "message", "role": "assistant", "model": self.model,
                       "content": content, "stop_reason": stop, "stop_sequence": null,
                       "usage": self.anthropic_usage(self.script.usage.output)})
            }
            Api::Responses => {
                self.responses_shell("completed", json!([self.responses_item(true)]), self.responses_usage())
            }
            Api::Gemini => {
                let part = match a {
                    Answer::Text(p) => json!({"text": p.concat()}),
                    Answer::Tool { name, .. } => json!({"functionCall": {"name": name, "args": self.tool_args()}}),
                };
                json!({"candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP",
                       "index": 0}], "usageMetadata": self.gemini_usage(true), "modelVersion": self.model,
                       "responseId": "scripted0001"})
            }
        }
    }

    /// The stream as (preamble frames, one frame per content piece, closing frames).
    fn events(&self, include_usage: bool) -> (Frames, Frames, Frames) {
        let a = &self.script.answer;
        let pieces = a.pieces();
        match self.api {
            Api::OpenAi => {
                let chunk = |delta: Value, finish: Value| {
                    let mut c = json!({"id": "chatcmpl-scripted0001", "object": "chat.completion.chunk",
                        "created": CREATED, "model": self.model, "service_tier": "default",
                        "system_fingerprint": "fp_scripted",
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
                    if include_usage {
                        c["usage"] = Value::Null;
                    }
                    sse(None, &c)
                };
                let (pre, body, finish): (Vec<Vec<u8>>, Vec<Vec<u8>>, &str) = match a {
                    Answer::Text(_) => (
                        vec![chunk(json!({"role": "assistant", "content": "", "refusal": null}), Value::Null)],
                        pieces.iter().map(|p| chunk(json!({"content": p}), Value::Null)).collect(),
                        "stop",
                    ),
                    Answer::Tool { name, .. } => (
                        vec![chunk(
                            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                                "id": "call_scripted0001", "type": "function",
                                "function": {"name": name, "arguments": ""}}]}),
                            Value::Null,
                        )],
                        pieces
                            .iter()
                            .map(|p| {
                                chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}), Value::Null)
                            })
                            .collect(),
                        "tool_calls",
                    ),
                };
                let mut close = vec![chunk(json!({}), json!(finish))];
                if include_usage {
                    close.push(sse(
                        None,
                        &json!({"id": "chatcmpl-scripted0001", "object": "chat.completion.chunk", "created": CREATED,
                            "model": self.model, "service_tier": "default", "system_fingerprint": "fp_scripted",
                            "choices": [], "usage": self.openai_usage()}),
                    ));
                }
                close.push(b"data: [DONE]\n\n".to_vec());
                (pre, body, close)
            }
            Api::Anthropic => {
                let start = json!({"type": "message_start", "message": {"id": "msg_scripted0001", "type": "message",
                    "role": "assistant", "model": self.model, "content": [], "stop_reason": null,
                    "stop_sequence": null, "usage": self.anthropic_usage(1)}});
                let (block, delta_of, stop): (Value, DeltaOf, &str) = match a {
                    Answer::Text(_) => (
                        json!({"type": "text", "text": ""}),
                        Box::new(|p| json!({"type": "text_delta", "text": p})),
                        "end_turn",
                    ),
                    Answer::Tool { name, .. } => (
                        json!({"type": "tool_use", "id": "toolu_scripted0001", "name": name, "input": {}}),
                        Box::new(|p| json!({"type": "input_json_delta", "partial_json": p})),
                        "tool_use",
                    ),
                };
                let pre = vec![
                    sse(Some("message_start"), &start),
                    sse(
                        Some("content_block_start"),
                        &json!({"type": "content_block_start", "index": 0, "content_block": block}),
                    ),
                    sse(Some("ping"), &json!({"type": "ping"})),
                ];
                let body = pieces
                    .iter()
                    .map(|p| {
                        sse(
                            Some("content_block_delta"),
                            &json!({"type": "content_block_delta", "index": 0, "delta": delta_of(p)}),
                        )
                    })
                    .collect();
                let close = vec![
                    sse(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 0})),
                    sse(
                        Some("message_delta"),
                        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                                "usage": {"output_tokens": self.script.usage.output}}),
                    ),
                    sse(Some("message_stop"), &json!({"type": "message_stop"})),
                ];
                (pre, body, close)
            }
            Api::Responses => {
                // Sequence numbers are assigned at the end, in order.
                let mut pre = vec![
                    (
                        "response.created",
                        json!({"response": self.responses_shell("in_progress", json!([]), Value::Null)}),
                    ),
                    (
                        "response.in_progress",
                        json!({"response": self.responses_shell("in_progress", json!([]), Value::Null)}),
                    ),
                    ("response.output_item.added", json!({"output_index": 0, "item": self.responses_item(false)})),
                ];
                let (body, mut close): (Named, Named) = match a {
                    Answer::Text(p) => {
                        pre.push((
                            "response.content_part.added",
                            json!({"item_id": "msg_scripted0001", "output_index": 0, "content_index": 0,
                                   "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                        ));
                        let body = p
                            .iter()
                            .map(|d| {
                                (
                                    "response.output_text.delta",
                                    json!({"item_id": "msg_scripted0001", "output_index": 0,
                                    "content_index": 0, "delta": d, "logprobs": [], "obfuscation": "x"}),
                                )
                            })
                            .collect();
                        let text = p.concat();
                        let close = vec![
                            (
                                "response.output_text.done",
                                json!({"item_id": "msg_scripted0001", "output_index": 0,
                                "content_index": 0, "text": text, "logprobs": []}),
                            ),
                            (
                                "response.content_part.done",
                                json!({"item_id": "msg_scripted0001", "output_index": 0,
                                "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": [],
                                "logprobs": []}}),
                            ),
                        ];
                        (body, close)
                    }
                    Answer::Tool { args, .. } => {
                        let body = args
                            .iter()
                            .map(|d| {
                                ("response.function_call_arguments.delta",
                                 json!({"item_id": "fc_scripted0001", "output_index": 0, "delta": d, "obfuscation": "x"}))
                            })
                            .collect();
                        let close = vec![(
                            "response.function_call_arguments.done",
                            json!({"item_id": "fc_scripted0001", "output_index": 0, "arguments": args.concat()}),
                        )];
                        (body, close)
                    }
                };
                close
                    .push(("response.output_item.done", json!({"output_index": 0, "item": self.responses_item(true)})));
                close.push((
                    "response.completed",
                    json!({"response": self.responses_shell("completed", json!([self.responses_item(true)]),
                        self.responses_usage())}),
                ));
                // Number every event as if the stream were whole; a cut stream keeps its prefix.
                let mut seq = 0u64;
                let mut frame = |(name, mut data): (&str, Value)| {
                    data["type"] = json!(name);
                    data["sequence_number"] = json!(seq);
                    seq += 1;
                    // Keep `type` and `sequence_number` first, as OpenAI does.
                    let mut ordered = serde_json::Map::new();
                    ordered.insert("type".into(), data["type"].take());
                    ordered.insert("sequence_number".into(), data["sequence_number"].take());
                    if let Value::Object(rest) = data {
                        for (k, v) in rest {
                            if k != "type" && k != "sequence_number" {
                                ordered.insert(k, v);
                            }
                        }
                    }
                    sse(Some(name), &Value::Object(ordered))
                };
                let pre: Vec<Vec<u8>> = pre.into_iter().map(&mut frame).collect();
                let body: Vec<Vec<u8>> = body.into_iter().map(&mut frame).collect();
                let close: Vec<Vec<u8>> = close.into_iter().map(&mut frame).collect();
                (pre, body, close)
            }
            Api::Gemini => {
                let chunk = |part: Value, finish: Option<&str>| {
                    let mut cand = json!({"content": {"parts": [part], "role": "model"}, "index": 0});
                    if let Some(f) = finish {
                        cand["finishReason"] = json!(f);
                    }
                    let v = json!({"candidates": [cand], "usageMetadata": self.gemini_usage(finish.is_some()),
                                   "modelVersion": self.model, "responseId": "scripted0001"});
                    // Gemini frames its SSE with CRLF.
                    format!("data: {v}\r\n\r\n").into_bytes()
                };
                match a {
                    Answer::Text(p) => {
                        let n = p.len();
                        let body = p
                            .iter()
                            .enumerate()
                            .map(|(i, t)| chunk(json!({"text": t}), (i + 1 == n).then_some("STOP")))
                            .collect();
                        (Vec::new(), body, Vec::new())
                    }
                    // Gemini sends a function call whole, in one chunk.
                    Answer::Tool { name, .. } => (
                        Vec::new(),
                        vec![chunk(json!({"functionCall": {"name": name, "args": self.tool_args()}}), Some("STOP"))],
                        Vec::new(),
                    ),
                }
            }
        }
    }

    /// The API's in-stream error event.
    fn error_event(&self, message: &str) -> Vec<u8> {
        match self.api {
            Api::OpenAi => sse(None, &error_body(Api::OpenAi, 500, message)),
            Api::Anthropic => {
                sse(Some("error"), &json!({"type": "error", "error": {"type": "overloaded_error", "message": message}}))
            }
            Api::Responses => {
                let mut r = self.responses_shell("failed", json!([]), Value::Null);
                r["error"] = json!({"code": "server_error", "message": message});
                // After created, in_progress, output_item.added, content_part.added: 4 for text.
                let seq = if matches!(self.script.answer, Answer::Text(_)) { 4 } else { 3 };
                sse(Some("response.failed"), &json!({"type": "response.failed", "sequence_number": seq, "response": r}))
            }
            Api::Gemini => format!("data: {}\r\n\r\n", error_body(Api::Gemini, 500, message)).into_bytes(),
        }
    }
}
