//! A fast mock upstream for the benchmarks: OpenAI Chat, Anthropic Messages and Gemini
//! `generateContent` / `streamGenerateContent`, answered at full speed.
//!
//! ```text
//! mock-upstream [--listen 127.0.0.1:18300] [--chunks 8] [--chunk-delay-us 0] [--delay-us 0]
//! ```
//!
//! | path | API |
//! |---|---|
//! | `POST …/chat/completions` | OpenAI Chat (`data:` chunks, usage chunk, `[DONE]`) |
//! | `POST …/messages` | Anthropic Messages (named events) |
//! | `POST …/models/{model}:generateContent` / `:streamGenerateContent` | Gemini |
//!
//! The model name overrides the defaults per request, dash-separated options anywhere in
//! it: `c<N>` chunks, `i<US>` microseconds between chunks, `f<US>` microseconds before the
//! answer, `h<MS>` milliseconds to hold the stream open after the first chunk (slow streams).
//! Example: `bench-c100-i1000` streams 100 chunks 1 ms apart.
//!
//! Each streamed text piece is `@<unix nanoseconds>;`, the instant it was written, so a load
//! driver on the same machine can measure the one-way latency of every chunk.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::serve::ListenerExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Defaults from the command line.
#[derive(Debug, Clone, Copy)]
struct Opts {
    /// Text pieces in a streamed answer.
    chunks: u32,
    /// Pause between pieces.
    chunk_delay: Duration,
    /// Pause before the answer.
    delay: Duration,
    /// Hold the stream open this long after the first piece.
    hold: Duration,
}

impl Opts {
    /// Apply the options found in a model name.
    fn with_model(mut self, model: &str) -> Self {
        for part in model.split('-') {
            let num = |p: char| part.strip_prefix(p).and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = num('c') {
                self.chunks = n.clamp(1, 100_000) as u32;
            } else if let Some(us) = num('i') {
                self.chunk_delay = Duration::from_micros(us);
            } else if let Some(us) = num('f') {
                self.delay = Duration::from_micros(us);
            } else if let Some(ms) = num('h') {
                self.hold = Duration::from_millis(ms);
            }
        }
        self
    }
}

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
    Gemini,
}

/// The fields of a request body the mock reads.
#[derive(serde::Deserialize, Default)]
struct Head {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// One SSE frame.
fn frame(event: Option<&str>, data: &str) -> Bytes {
    match event {
        Some(e) => Bytes::from(format!("event: {e}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

fn content_frame(api: Api, model: &str, text: &str) -> Bytes {
    match api {
        Api::OpenAi => frame(
            None,
            &format!(
                r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"{model}","choices":[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":null}}]}}"#
            ),
        ),
        Api::Anthropic => frame(
            Some("content_block_delta"),
            &format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}"#),
        ),
        Api::Gemini => frame(
            None,
            &format!(
                r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}},"index":0}}],"usageMetadata":{{"promptTokenCount":12,"totalTokenCount":12}},"modelVersion":"{model}"}}"#
            ),
        ),
    }
}

fn preamble(api: Api, model: &str) -> Vec<Bytes> {
    match api {
        Api::OpenAi => vec![frame(
            None,
            &format!(
                r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"{model}","choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}"#
            ),
        )],
        Api::Anthropic => vec![
            frame(
                Some("message_start"),
                &format!(
                    r#"{{"type":"message_start","message":{{"id":"msg_bench","type":"message","role":"assistant","model":"{model}","content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":12,"output_tokens":1}}}}}}"#
                ),
            ),
            frame(
                Some("content_block_start"),
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
        ],
        Api::Gemini => Vec::new(),
    }
}

fn closing(api: Api, model: &str, output: u32) -> Vec<Bytes> {
    match api {
        Api::OpenAi => vec![
            frame(
                None,
                &format!(
                    r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"{model}","choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}"#
                ),
            ),
            frame(
                None,
                &format!(
                    r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"{model}","choices":[],"usage":{{"prompt_tokens":12,"completion_tokens":{output},"total_tokens":{}}}}}"#,
                    12 + output
                ),
            ),
            Bytes::from_static(b"data: [DONE]\n\n"),
        ],
        Api::Anthropic => vec![
            frame(Some("content_block_stop"), r#"{"type":"content_block_stop","index":0}"#),
            frame(
                Some("message_delta"),
                &format!(
                    r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{output}}}}}"#
                ),
            ),
            frame(Some("message_stop"), r#"{"type":"message_stop"}"#),
        ],
        Api::Gemini => vec![frame(
            None,
            &format!(
                r#"{{"candidates":[{{"content":{{"parts":[{{"text":""}}],"role":"model"}},"finishReason":"STOP","index":0}}],"usageMetadata":{{"promptTokenCount":12,"candidatesTokenCount":{output},"totalTokenCount":{}}},"modelVersion":"{model}"}}"#,
                12 + output
            ),
        )],
    }
}

/// The whole (non-stream) answer.
fn whole(api: Api, model: &str) -> String {
    let text = "The gateway routes every request through NATS.";
    match api {
        Api::OpenAi => format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}}}"#
        ),
        Api::Anthropic => format!(
            r#"{{"id":"msg_bench","type":"message","role":"assistant","model":"{model}","content":[{{"type":"text","text":"{text}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":12,"output_tokens":9}}}}"#
        ),
        Api::Gemini => format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}},"finishReason":"STOP","index":0}}],"usageMetadata":{{"promptTokenCount":12,"candidatesTokenCount":9,"totalTokenCount":21}},"modelVersion":"{model}","responseId":"bench"}}"#
        ),
    }
}

async fn handle(State(opts): State<Arc<Opts>>, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let (api, path_model, path_stream) = if path.ends_with("/chat/completions") {
        (Api::OpenAi, None, false)
    } else if path.ends_with("/messages") {
        (Api::Anthropic, None, false)
    } else if let Some((m, method)) = path.rsplit_once('/').and_then(|(_, last)| last.split_once(':')) {
        (Api::Gemini, Some(m.to_string()), method == "streamGenerateContent")
    } else {
        let mut r = Response::new(Body::from("not found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let head: Head = serde_json::from_slice(&body).unwrap_or_default();
    let model = path_model.or(head.model).unwrap_or_else(|| "bench".into());
    let stream = path_stream || head.stream.unwrap_or(false);
    let o = opts.with_model(&model);
    if !o.delay.is_zero() {
        tokio::time::sleep(o.delay).await;
    }
    if !stream {
        let mut r = Response::new(Body::from(whole(api, &model)));
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
        return r;
    }
    let pre = preamble(api, &model);
    // State: (next piece index, model). Pieces are produced lazily so each carries the
    // instant it was written.
    let chunks = o.chunks;
    let stream = futures::stream::unfold((0u32, pre, Vec::<Bytes>::new()), move |(i, mut pre, mut close)| {
        let model = model.clone();
        async move {
            if !pre.is_empty() {
                let first = pre.remove(0);
                return Some((Ok::<_, std::convert::Infallible>(first), (i, pre, close)));
            }
            if i < chunks {
                if i > 0 && !o.chunk_delay.is_zero() {
                    tokio::time::sleep(o.chunk_delay).await;
                }
                if i == 1 && !o.hold.is_zero() {
                    tokio::time::sleep(o.hold).await;
                }
                let text = format!("@{};", now_nanos());
                let f = content_frame(api, &model, &text);
                if i + 1 == chunks {
                    close = closing(api, &model, chunks);
                }
                return Some((Ok(f), (i + 1, pre, close)));
            }
            if !close.is_empty() {
                let f = close.remove(0);
                return Some((Ok(f), (i, pre, close)));
            }
            None
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

fn main() {
    let mut listen = "127.0.0.1:18300".to_string();
    let mut opts = Opts { chunks: 8, chunk_delay: Duration::ZERO, delay: Duration::ZERO, hold: Duration::ZERO };
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--listen" => listen = val(),
            "--chunks" => opts.chunks = val().parse().unwrap_or(8),
            "--chunk-delay-us" => opts.chunk_delay = Duration::from_micros(val().parse().unwrap_or(0)),
            "--delay-us" => opts.delay = Duration::from_micros(val().parse().unwrap_or(0)),
            "--threads" => threads = val().parse().unwrap_or(1),
            "-h" | "--help" => {
                println!(
                    "mock-upstream [--listen ADDR] [--chunks N] [--chunk-delay-us US] [--delay-us US] [--threads N]"
                );
                return;
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("mock-upstream listening on {listen}");
        // Small frames go out at once (no Nagle delay behind a delayed ACK).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = axum::Router::new().fallback(handle).with_state(Arc::new(opts));
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("serve: {e}");
        }
    });
}
