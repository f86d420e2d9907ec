//! One request, from NATS message to final reply: decode, validate, admit, route with
//! failover before the first byte, stream, and finish with `done` or `error`.

use super::admission::Rejected;
use super::reply::Replier;
use super::WorkerCtx;
use crate::bus::codec::{decode, Encoding};
use crate::bus::headers;
use crate::bus::subjects::{self, Token};
use crate::protocol::canonical::{estimate_tokens, ChatRequest, Usage};
use crate::protocol::{LLMNATSRequest, LLMNATSResponse, Platform};
use crate::providers::{ProviderError, StreamEvent};
use async_nats::{Message, Subject};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request-level failure with its HTTP-like status; the message is safe to show.
#[derive(Debug, Clone)]
pub(crate) struct RequestError {
    /// HTTP-like status (`Ailurus-Status`).
    pub status: u16,
    /// What went wrong.
    pub message: String,
    /// Seconds to wait before retrying, for 429 / 503.
    pub retry_after: Option<u64>,
}

impl RequestError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }
}

impl From<ProviderError> for RequestError {
    fn from(e: ProviderError) -> Self {
        Self { status: e.status(), message: e.to_string(), retry_after: e.retry_after.map(|d| d.as_secs().max(1)) }
    }
}

/// What the caller gets at the end.
struct Outcome {
    /// Accumulated answer text (what was delivered, on failure).
    content: String,
    /// Usage as reported, or estimated.
    usage: Usage,
    /// Why the answer ended.
    finish_reason: Option<&'static str>,
    /// The channel that served it.
    channel: String,
    /// Set when the answer failed after its first byte.
    failure: Option<RequestError>,
}

/// A validated request.
struct Parsed {
    /// The request as sent.
    seed: LLMNATSRequest,
    /// Validated trace id.
    trace_id: Token,
    /// The canonical form.
    chat: ChatRequest,
}

/// Handle one message from `llm.request.<platform>`.
pub(crate) async fn handle(ctx: Arc<WorkerCtx>, msg: Message) {
    let started = Instant::now();
    let encoding = Encoding::from_headers(msg.headers.as_ref());
    let wants_heartbeat = msg.headers.as_ref().is_some_and(|h| h.get(headers::HEARTBEAT).is_some());

    let parsed = match parse(&msg, encoding) {
        Ok(p) => p,
        Err((err, trace)) => {
            reply_invalid(&ctx, &msg, encoding, trace, err).await;
            return;
        }
    };
    let reply_subject = msg.reply.clone().unwrap_or_else(|| Subject::from(subjects::response(&parsed.trace_id)));
    let replier = Replier::new(ctx.client.clone(), reply_subject, encoding, parsed.seed.trace_id.clone());
    // Heartbeats let a requester tell "no worker" and "dead worker" from "slow". A plain
    // `stream:false` seed request (e.g. `nats req`) gets exactly one reply instead.
    let heartbeats = wants_heartbeat || parsed.seed.stream;
    if heartbeats {
        replier.heartbeat().await;
    }
    let Some(guard) = ctx.inflight.register(parsed.trace_id.as_str()) else {
        let err = RequestError::new(409, format!("trace_id {} is already in flight", parsed.trace_id));
        finish(&ctx, &replier, &parsed, started, Err(err)).await;
        return;
    };

    let work = serve(&ctx, &parsed, &replier);
    tokio::pin!(work);
    let heartbeat_every = ctx.config.heartbeat();
    let mut ticker = tokio::time::interval(heartbeat_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(Duration::from_millis(ctx.config.request_timeout_ms));
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            res = &mut work => break res,
            _ = ticker.tick(), if heartbeats => {
                if replier.idle_for() >= heartbeat_every {
                    replier.heartbeat().await;
                }
            }
            _ = guard.token.cancelled() => break Err(RequestError::new(499, "request cancelled by the client")),
            _ = &mut deadline => break Err(RequestError::new(504, format!(
                "request exceeded the worker's {} ms limit", ctx.config.request_timeout_ms))),
        }
    };
    drop(guard);
    finish(&ctx, &replier, &parsed, started, result).await;
}

/// Decode and validate. On error, also return the trace id if one could be read, so the
/// error can still be addressed to `llm.response.<trace_id>`.
fn parse(msg: &Message, encoding: Encoding) -> Result<Parsed, (RequestError, Option<Token>)> {
    if let Some(format) = msg.headers.as_ref().and_then(|h| h.get(headers::FORMAT)) {
        return Err((
            RequestError::new(
                415,
                format!(
                    "native format {:?} is not served by this worker; send the seed LLMNATSRequest",
                    format.as_str()
                ),
            ),
            None,
        ));
    }
    let seed: LLMNATSRequest =
        decode(encoding, &msg.payload).map_err(|e| (RequestError::new(400, format!("bad request: {e}")), None))?;
    let trace_id = Token::new("trace_id", &seed.trace_id).map_err(|e| (RequestError::new(400, e.to_string()), None))?;
    let bad = |m: String| (RequestError::new(400, m), Some(trace_id.clone()));
    Token::new("user_id", &seed.user_id).map_err(|e| bad(e.to_string()))?;
    if let Some(session) = &seed.session_id {
        Token::new("session_id", session).map_err(|e| bad(e.to_string()))?;
    }
    let token = subjects::last_token(&msg.subject);
    let platform: Platform = token.parse().map_err(|e: String| bad(format!("subject {}: {e}", msg.subject)))?;
    if platform != seed.platform {
        return Err(bad(format!(
            "platform {:?} in the body does not match the subject {}",
            seed.platform.as_str(),
            msg.subject
        )));
    }
    if seed.model.trim().is_empty() {
        return Err(bad("model must not be empty".into()));
    }
    let chat = ChatRequest::try_from(&seed).map_err(|e| bad(e.0))?;
    Ok(Parsed { seed, trace_id, chat })
}

/// Answer a request that could not be parsed, where an address exists.
async fn reply_invalid(ctx: &WorkerCtx, msg: &Message, encoding: Encoding, trace: Option<Token>, err: RequestError) {
    let subject = match (&msg.reply, &trace) {
        (Some(reply), _) => reply.clone(),
        (None, Some(t)) => Subject::from(subjects::response(t)),
        (None, None) => {
            tracing::warn!(subject = %msg.subject, error = %err.message, "invalid request with no reply subject and no usable trace_id; nobody to tell");
            return;
        }
    };
    tracing::debug!(subject = %msg.subject, error = %err.message, "invalid request");
    let trace_id = trace.map(|t| t.to_string()).unwrap_or_default();
    let replier = Replier::new(ctx.client.clone(), subject, encoding, trace_id.clone());
    let resp = LLMNATSResponse { trace_id, success: false, error: Some(err.message), ..Default::default() };
    replier.error(err.status, &resp, err.retry_after).await;
}

/// Admit, route with failover before the first byte, then stream the answer.
async fn serve(ctx: &WorkerCtx, parsed: &Parsed, replier: &Replier) -> Result<Outcome, RequestError> {
    let chat = &parsed.chat;
    let candidates = ctx.router.candidates(&chat.model);
    if candidates.is_empty() {
        return Err(RequestError::new(404, format!("no channel serves model {:?}", chat.model)));
    }
    let _slot = ctx.admission.acquire().await.map_err(|r| {
        let why = match r {
            Rejected::QueueFull => "worker saturated: wait queue full",
            Rejected::TimedOut => "worker saturated: no free slot in time",
        };
        RequestError { status: 503, message: why.into(), retry_after: Some(1) }
    })?;

    let mut last_error: Option<ProviderError> = None;
    for cand in candidates {
        let mut stream = match cand.provider.stream(chat, &cand.upstream_model).await {
            Ok(s) => s,
            Err(e) if e.is_retryable() => {
                tracing::info!(channel = %cand.channel, error = %e, "upstream failed before first byte; trying next");
                last_error = Some(e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // Peek the first event: a failure here can still fail over.
        let first = match stream.next().await {
            Some(Ok(ev)) => ev,
            Some(Err(e)) if e.is_retryable() => {
                last_error = Some(e);
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                last_error = Some(ProviderError::new(
                    crate::providers::ProviderErrorKind::Protocol,
                    "upstream closed the stream without an answer",
                ));
                continue;
            }
        };
        let mut out = Outcome {
            content: String::new(),
            usage: Usage::default(),
            finish_reason: None,
            channel: cand.channel.clone(),
            failure: None,
        };
        let mut have_usage = false;
        let mut next = Some(Ok(first));
        while let Some(item) = next {
            match item {
                Ok(StreamEvent::Text(delta)) => {
                    out.content.push_str(&delta);
                    if parsed.seed.stream {
                        replier.chunk(delta).await;
                    }
                }
                Ok(StreamEvent::Usage(u)) => {
                    out.usage = u;
                    have_usage = true;
                }
                Ok(StreamEvent::Finish(f)) => out.finish_reason = Some(f.as_str()),
                // The seed format carries answer text only; seed requests offer no tools.
                Ok(
                    StreamEvent::Start { .. }
                    | StreamEvent::Thinking(_)
                    | StreamEvent::ThinkingSignature(_)
                    | StreamEvent::RedactedThinking(_)
                    | StreamEvent::ToolCallStart { .. }
                    | StreamEvent::ToolCallArgs { .. },
                ) => {}
                Err(e) => {
                    // After the first byte there is no failover: report, bill what was delivered.
                    let mut err = RequestError::from(e);
                    err.message = format!("upstream failed mid-stream: {}", err.message);
                    out.failure = Some(err);
                    have_usage = false;
                    break;
                }
            }
            next = stream.next().await;
        }
        if !have_usage {
            out.usage = Usage {
                input_tokens: chat.estimate_prompt_tokens(),
                output_tokens: estimate_tokens(&out.content),
                estimated: true,
                ..Default::default()
            };
        }
        return Ok(out);
    }
    let last = last_error.map(|e| e.to_string()).unwrap_or_else(|| "no channel answered".into());
    Err(RequestError { status: 502, message: format!("all channels failed; last error: {last}"), retry_after: None })
}

/// Send the final reply.
async fn finish(
    ctx: &WorkerCtx,
    replier: &Replier,
    parsed: &Parsed,
    started: Instant,
    result: Result<Outcome, RequestError>,
) {
    let duration_ms = started.elapsed().as_millis() as u64;
    let mut resp = LLMNATSResponse {
        trace_id: parsed.seed.trace_id.clone(),
        model: parsed.seed.model.clone(),
        duration_ms,
        ..Default::default()
    };
    match result {
        Ok(out) => {
            let u = out.usage;
            resp.tokens_input = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens;
            resp.tokens_output = u.output_tokens;
            resp.cost = ctx.prices.cost(&parsed.seed.model, &u);
            resp.usage_estimated = u.estimated;
            resp.finish_reason = out.finish_reason.map(str::to_string);
            resp.content = out.content;
            tracing::debug!(trace_id = %resp.trace_id, channel = %out.channel, duration_ms, "finished");
            match out.failure {
                None => {
                    resp.success = true;
                    replier.done(&resp).await;
                }
                Some(err) => {
                    resp.error = Some(err.message);
                    replier.error(err.status, &resp, err.retry_after).await;
                }
            }
        }
        Err(err) => {
            tracing::debug!(trace_id = %resp.trace_id, status = err.status, error = %err.message, "failed");
            resp.error = Some(err.message);
            replier.error(err.status, &resp, err.retry_after).await;
        }
    }
}
