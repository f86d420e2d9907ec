//! One request, from NATS message to final reply: read the head (headers), parse and
//! validate the body (seed `LLMNATSRequest` or a native API body), then serve it under the
//! heartbeat, cancel and timeout watch, and send the final `done` or `error`.

use super::job::{Client, Delivered, Job};
use super::pipeline;
use super::reply::Replier;
use super::WorkerCtx;
use crate::bus::codec::{decode, Encoding};
use crate::bus::headers::{self, OP, TRACE};
use crate::bus::subjects::{self, Token};
use crate::error::RequestError;
use crate::formats::{Format, Op, ParseContext};
use crate::protocol::canonical::ChatRequest;
use crate::protocol::{LLMNATSRequest, LLMNATSResponse, Platform};
use crate::quota::auth::AuthError;
use crate::quota::proof::Claim;
use crate::router::affinity::SESSION_HEADERS;
use async_nats::{HeaderMap, Message, Subject};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Client headers forwarded upstream on pass-through.
const FORWARDED: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// What the headers say about a request.
struct Head {
    /// Seed payload encoding.
    encoding: Encoding,
    /// Native format, if any.
    format: Option<Format>,
    /// Whether the requester asked for heartbeats (`Ailurus-Heartbeat`), and how long the
    /// first may wait: zero (any value but `<n>ms`) sends it at once; `<n>ms` only when
    /// nothing else was sent in that time, so a quick answer costs no heartbeat message.
    heartbeat: Option<Duration>,
}

impl Head {
    fn read(headers: Option<&HeaderMap>) -> Result<Self, RequestError> {
        let get = |k: &str| headers.and_then(|h| h.get(k)).map(|v| v.as_str().to_string());
        let format = match get(headers::FORMAT) {
            None => None,
            Some(f) => Some(Format::parse(&f).ok_or_else(|| {
                RequestError::new(400, format!("unknown {} {f:?} (expected anthropic.messages, openai.chat, openai.responses or gemini.generate)", headers::FORMAT))
            })?),
        };
        Ok(Self {
            encoding: Encoding::from_headers(headers),
            format,
            heartbeat: get(headers::HEARTBEAT).map(|v| headers::first_heartbeat(&v)),
        })
    }
}

/// What a message asks for.
enum Parsed {
    /// Serve a chat request.
    Job(Box<Job>),
    /// List the models (native formats only).
    Models(Format),
}

/// A parse failure, with whatever is known for addressing and shaping the error.
struct Rejection {
    /// The error.
    err: RequestError,
    /// Trace id, if readable (to reply on `llm.response.<trace_id>`).
    trace: Option<Token>,
}

/// Whether the message's reply subject (if any) may be published on: a reply into
/// Ailurus's own subjects would let a requester write as the worker
/// ([`subjects::is_safe_reply`]). Such a message is dropped unanswered.
pub(crate) fn reply_is_safe(msg: &Message) -> bool {
    match &msg.reply {
        Some(reply) if !subjects::is_safe_reply(reply) => {
            tracing::warn!(subject = %msg.subject, reply = %reply, "dropping a request whose reply subject is in Ailurus's own subject space");
            false
        }
        _ => true,
    }
}

/// Handle one message from `llm.request.<platform>`.
pub(crate) async fn handle(ctx: Arc<WorkerCtx>, msg: Message) {
    let started = Instant::now();
    if !reply_is_safe(&msg) {
        return;
    }
    let head = match Head::read(msg.headers.as_ref()) {
        Ok(h) => h,
        Err(err) => {
            let head = Head { encoding: Encoding::Json, format: None, heartbeat: None };
            Box::pin(reply_rejection(&ctx, &msg, &head, Rejection { err, trace: None })).await;
            return;
        }
    };
    let mut job = match parse(&msg, &head) {
        Ok(Parsed::Job(job)) => job,
        Ok(Parsed::Models(format)) => {
            Box::pin(list_models(&ctx, &msg, &head, format)).await;
            return;
        }
        Err(rej) => {
            Box::pin(reply_rejection(&ctx, &msg, &head, rej)).await;
            return;
        }
    };
    let Some(replier) = replier_for(&ctx, &msg, &head, Some(&job.trace_id)) else { return };
    // A scenario route may serve it as another model, on a group of channels: before
    // admission, which prices and bounds the model served.
    super::routing::apply_scenario(&ctx, &mut job);
    let otel = super::otel::start(&ctx, &job);
    // Heartbeats let a requester tell "no worker" and "dead worker" from "slow"; the first
    // goes out at once (or, when the requester allows a delay, from a timer of its own),
    // never behind a JetStream round trip (auth, holds), so the requester's one-second "is
    // anyone there" bound holds under load. A plain `stream:false` seed request (e.g.
    // `nats req`) gets exactly one reply instead.
    let heartbeats = head.heartbeat.is_some() || (matches!(job.client, Client::Seed) && job.chat.stream);
    let first_delay = head.heartbeat.unwrap_or(Duration::ZERO);
    let mut pending_heartbeat = if !heartbeats {
        None
    } else if first_delay.is_zero() {
        replier.heartbeat().await;
        None
    } else {
        Some(replier.heartbeat_unless_answered(first_delay))
    };
    // In flight from now on, so a cancel sent right after the first heartbeat finds the
    // request even while it is still being authenticated and reserved.
    let Some(guard) = ctx.inflight.register(job.trace_id.as_str()) else {
        let err = RequestError::new(409, format!("trace_id {} is already in flight", job.trace_id));
        Box::pin(finish(&ctx, &replier, &job, started, Err(err), 1.0)).await;
        return;
    };
    let every = ctx.config.heartbeat();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(Duration::from_millis(ctx.config.request_timeout_ms));
    tokio::pin!(deadline);
    // Who it is, then admission: refused here, before any upstream work, a request leaves
    // quota and ledger as they were. Heartbeats keep going meanwhile (a lease take waits out
    // a JetStream election for a while).
    let admission_span = super::otel::admission(&ctx, otel.as_ref());
    // The trace id's claim in the replay set runs beside admission and the upstream call.
    let mut claim = None;
    let admitted = {
        let mut admitting = Box::pin(async {
            let (principal, started_claim) = Box::pin(super::billing::identify(&ctx, &mut job)).await?;
            if let Some(c) = &started_claim {
                replier.gate(c.clone());
            }
            claim = started_claim;
            // A Chat client's earlier reasoning, back from the store before the prompt is
            // bounded.
            Box::pin(super::reasoning::restore(&ctx, &mut job)).await;
            // Refuse what no channel can serve before anything is reserved.
            preflight(&ctx, &job)?;
            // Unpriced models, rate limits, the output bound and the worst-case hold.
            Box::pin(super::billing::admit(&ctx, &mut job, principal, claim.as_ref())).await
        });
        loop {
            tokio::select! {
                res = &mut admitting => break res,
                _ = ticker.tick(), if heartbeats => {
                    if replier.idle_for() >= every {
                        replier.heartbeat().await;
                    }
                }
                _ = guard.token.cancelled() => break Err(RequestError::new(499, "request cancelled by the client")),
            }
        }
    };
    super::otel::admitted(admission_span, &admitted);
    let ticket = match admitted {
        Ok(t) => t,
        Err(e) => {
            // A replayed copy learns nothing of the user's balance or limits: verdict first.
            let e = match &claim {
                Some(c) => Box::pin(super::billing::verdict(&ctx, &job, c)).await.unwrap_or(e),
                None => e,
            };
            let summary = Box::pin(finish(&ctx, &replier, &job, started, Err(e), 1.0)).await;
            super::otel::finish(&ctx, otel, &summary.resp, None, summary.status);
            return;
        }
    };
    let ratio = ticket.ratio;
    // Chat sync hears of the request once its trace id is known to be fresh.
    let mut pending_verdict = claim.is_some();
    if !pending_verdict {
        Box::pin(super::sync::started(&ctx, &job)).await;
    }
    // Boxed here and above: an async fn's state is the largest of the futures it awaits
    // (often twice over), and it lives as long as the request. Boxing the ones that are
    // only briefly alive keeps an idle stream's task small.
    let mut work =
        Box::pin(super::otel::scoped(super::otel::context(otel.as_ref()), pipeline::serve(&ctx, &job, &replier)));
    let mut refused = false;
    let mut result = loop {
        tokio::select! {
            res = &mut work => break res,
            v = verdict(&ctx, &job, claim.as_ref()), if pending_verdict => {
                pending_verdict = false;
                if let Err(e) = v {
                    // A refused copy: its upstream call is dropped here.
                    refused = true;
                    break Err(e);
                }
            }
            _ = ticker.tick(), if heartbeats => {
                // Answered: the delayed first heartbeat's timer task (and its memory) can go.
                if pending_heartbeat.is_some() && replier.answered() {
                    pending_heartbeat = None;
                }
                if replier.idle_for() >= every {
                    replier.heartbeat().await;
                }
            }
            _ = guard.token.cancelled() => break Err(RequestError::new(499, "request cancelled by the client")),
            _ = &mut deadline => break Err(RequestError::new(504, format!(
                "request exceeded the worker's {} ms limit", ctx.config.request_timeout_ms))),
        }
    };
    drop(work);
    drop(guard);
    if pending_verdict {
        if let Err(e) = Box::pin(verdict(&ctx, &job, claim.as_ref())).await {
            refused = true;
            result = Err(e);
        }
    }
    if refused {
        // Nothing of a refused copy is kept: no event, audit copy or ledger record.
        let summary = Box::pin(finish(&ctx, &replier, &job, started, result, 1.0)).await;
        super::otel::finish(&ctx, otel, &summary.resp, None, summary.status);
        Box::pin(ticket.release(&ctx)).await;
        return;
    }
    let keep = result
        .as_ref()
        .ok()
        .filter(|d| d.failure.is_none())
        .and_then(|d| super::reasoning::entry(ctx.reasoning.as_ref(), &job, d.acc.parts()));
    let summary = Box::pin(finish(&ctx, &replier, &job, started, result, ratio)).await;
    super::otel::finish(&ctx, otel, &summary.resp, summary.usage.as_ref(), summary.status);
    // After the final reply: the client never waits for this write.
    Box::pin(super::reasoning::store(ctx.reasoning.as_ref(), keep)).await;
    Box::pin(super::sync::finished(&ctx, &job, &summary.resp)).await;
    if msg.reply.is_some() && ctx.config.audit_copy {
        Box::pin(super::sync::audit_copy(&ctx, &job.trace_id, &summary.resp, summary.status)).await;
    }
    let outcome = super::billing::Outcome {
        usage: summary.usage.as_ref(),
        cost: summary.resp.cost,
        channel: &summary.channel,
        duration_ms: summary.resp.duration_ms,
        status: summary.status,
        ttft_ms: summary.ttft_ms,
    };
    Box::pin(ticket.settle(&ctx, &job, &outcome)).await;
}

/// The verdict of `claim` (none: nothing to wait for): a refused copy's error, or, for a fresh
/// trace id, its user's presence and chat sync's `started` (neither is sent for a replayed
/// copy).
async fn verdict(ctx: &WorkerCtx, job: &Job, claim: Option<&Claim>) -> Result<(), RequestError> {
    let Some(c) = claim else { return Ok(()) };
    if let Some(e) = Box::pin(super::billing::verdict(ctx, job, c)).await {
        return Err(e);
    }
    if let Ok(user) = Token::new("user_id", &job.user_id) {
        Box::pin(super::sync::presence(ctx, &user)).await;
    }
    Box::pin(super::sync::started(ctx, job)).await;
    Ok(())
}

/// Answer a model listing in `format` (a valid token needed, except in open mode).
async fn list_models(ctx: &WorkerCtx, msg: &Message, head: &Head, format: Format) {
    let trace = native_trace(msg);
    let Some(replier) = replier_for(ctx, msg, head, trace.as_ref()) else { return };
    let credential = crate::quota::auth::credential_from(msg, trace.as_ref().map(Token::as_str), None);
    let auth =
        crate::quota::auth::authenticate(ctx.auth.mode, ctx.tokens.as_ref(), credential.as_ref(), None, "").await;
    if let Err(AuthError { error: e, .. }) = auth {
        replier.native_error(e.status, format.render_error(e.status, &e.message), None).await;
        return;
    }
    let body = super::models::render(format, &ctx.router.models());
    replier.native_chunk(Some((200, "application/json")), body).await;
    replier.done(&LLMNATSResponse { success: true, ..Default::default() }).await;
}

/// Whether some channel can take the request: a model no channel serves is a 404, and a
/// native body the strict parser refused is its 400 unless a channel of its own format could
/// take it byte for byte. Token counting is local and always possible.
fn preflight(ctx: &WorkerCtx, job: &Job) -> Result<(), RequestError> {
    if let Client::Native { op: Op::CountTokens, .. } = &job.client {
        return Ok(());
    }
    let formats = ctx.router.serving_formats(&job.model, job.platform.as_str(), &job.channel_group);
    if formats.is_empty() {
        return Err(RequestError::new(404, super::pipeline::no_channel(job)));
    }
    if let (Some(e), Client::Native { format, .. }) = (&job.strict_error, &job.client) {
        if !formats.contains(&Some(*format)) {
            return Err(RequestError::new(e.status, e.message.clone()));
        }
    }
    Ok(())
}

/// What billing needs of a finished request.
struct Summary {
    /// The final response as sent (cost in USD, tokens, status).
    resp: LLMNATSResponse,
    /// Usage by class, when an answer (or part of one) was delivered.
    usage: Option<crate::protocol::canonical::Usage>,
    /// The channel that served it.
    channel: String,
    /// HTTP-like status of the outcome.
    status: u16,
    /// Time to the first answer-bearing chunk, when one came.
    ttft_ms: Option<u64>,
}

fn native_trace(msg: &Message) -> Option<Token> {
    msg.headers.as_ref().and_then(|h| h.get(TRACE)).and_then(|v| Token::new("trace_id", v.as_str()).ok())
}

/// Where to reply: the message's inbox, else `llm.response.<trace_id>`.
fn replier_for(ctx: &WorkerCtx, msg: &Message, head: &Head, trace: Option<&Token>) -> Option<Replier> {
    let subject = match (&msg.reply, trace) {
        (Some(reply), _) => reply.clone(),
        (None, Some(t)) => Subject::from(subjects::response(t)),
        (None, None) => return None,
    };
    let trace_id = trace.map(|t| t.to_string()).unwrap_or_default();
    Some(Replier::new(ctx.client.clone(), subject, head.encoding, trace_id))
}

/// Decode and validate.
fn parse(msg: &Message, head: &Head) -> Result<Parsed, Rejection> {
    let token = subjects::last_token(&msg.subject);
    match head.format {
        Some(format) => parse_native(msg, format, token),
        None => parse_seed(msg, head.encoding, token),
    }
}

fn parse_seed(msg: &Message, encoding: Encoding, subject_platform: &str) -> Result<Parsed, Rejection> {
    let reject = |err: RequestError, trace: Option<Token>| Rejection { err, trace };
    let seed: LLMNATSRequest = decode(encoding, &msg.payload)
        .map_err(|e| reject(RequestError::new(400, format!("bad request: {e}")), None))?;
    let trace_id =
        Token::new("trace_id", &seed.trace_id).map_err(|e| reject(RequestError::new(400, e.to_string()), None))?;
    let bad = |m: String| Rejection { err: RequestError::new(400, m), trace: Some(trace_id.clone()) };
    Token::new("user_id", &seed.user_id).map_err(|e| bad(e.to_string()))?;
    if let Some(session) = &seed.session_id {
        Token::new("session_id", session).map_err(|e| bad(e.to_string()))?;
    }
    let platform: Platform =
        subject_platform.parse().map_err(|e: String| bad(format!("subject {}: {e}", msg.subject)))?;
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
    Ok(Parsed::Job(Box::new(Job {
        trace_id: trace_id.clone(),
        user_id: seed.user_id.clone(),
        session_id: seed.session_id.clone(),
        platform,
        model: seed.model.clone(),
        chat,
        client: Client::Seed,
        credential: crate::quota::auth::credential_from(msg, Some(trace_id.as_str()), seed.token.as_deref()),
        claimed_user: Some(seed.user_id.clone()),
        strict_error: None,
        output_cap: None,
        headers: msg.headers.clone(),
        channel_group: Vec::new(),
    })))
}

fn parse_native(msg: &Message, format: Format, subject_platform: &str) -> Result<Parsed, Rejection> {
    let h = msg.headers.as_ref();
    let get = |k: &str| h.and_then(|h| h.get(k)).map(|v| v.as_str().to_string());
    let trace_id = match get(TRACE) {
        Some(t) => Token::new("trace_id", &t)
            .map_err(|e| Rejection { err: RequestError::new(400, e.to_string()), trace: None })?,
        None => Token::random(),
    };
    let bad = |status: u16, m: String| Rejection { err: RequestError::new(status, m), trace: Some(trace_id.clone()) };
    let platform: Platform =
        subject_platform.parse().map_err(|e: String| bad(400, format!("subject {}: {e}", msg.subject)))?;
    let op = match get(OP).as_deref() {
        None => Op::Generate,
        Some("models") => return Ok(Parsed::Models(format)),
        Some(o) => Op::parse(o).ok_or_else(|| bad(400, format!("unknown {OP} {o:?}")))?,
    };
    let ctx = ParseContext { model: get(headers::MODEL), op };
    let (chat, strict_error) = match format.parse_request(&msg.payload, &ctx) {
        Ok(chat) => (chat, None),
        // Refused by the strict parser but well-formed JSON with a model: a same-format
        // channel may still take it byte for byte; without one, the 400 stands.
        Err(e) if e.status == 400 && op != Op::CountTokens => {
            match crate::formats::passthrough::minimal_request(format, &msg.payload, &ctx) {
                Some(chat) => (chat, Some(e)),
                None => return Err(bad(e.status, e.message)),
            }
        }
        Err(e) => return Err(bad(e.status, e.message)),
    };
    if chat.model.trim().is_empty() {
        return Err(bad(400, "model must not be empty".into()));
    }
    let forward = FORWARDED.iter().filter_map(|k| get(k).map(|v| (k.to_string(), v))).collect();
    // Chat sync for native clients: their own session header, when it is a valid token.
    let session_id = SESSION_HEADERS.iter().find_map(|k| get(k)).filter(|s| Token::new("session_id", s).is_ok());
    Ok(Parsed::Job(Box::new(Job {
        trace_id,
        user_id: "anonymous".into(),
        session_id,
        platform,
        model: chat.model.clone(),
        chat,
        client: Client::Native { format, op, body: msg.payload.clone(), forward },
        // The trace id a proof is bound to is the one the publisher sent (never a made-up one).
        credential: crate::quota::auth::credential_from(msg, get(TRACE).as_deref(), None),
        claimed_user: None,
        strict_error,
        output_cap: None,
        headers: msg.headers.clone(),
        channel_group: Vec::new(),
    })))
}

/// Answer a request that could not be parsed, where an address exists.
async fn reply_rejection(ctx: &WorkerCtx, msg: &Message, head: &Head, rej: Rejection) {
    let trace = rej.trace.or_else(|| native_trace(msg));
    let Some(replier) = replier_for(ctx, msg, head, trace.as_ref()) else {
        tracing::warn!(subject = %msg.subject, error = %rej.err.message, "invalid request with no reply subject and no usable trace_id; nobody to tell");
        return;
    };
    tracing::debug!(subject = %msg.subject, error = %rej.err.message, "invalid request");
    match head.format {
        Some(format) => {
            replier
                .native_error(
                    rej.err.status,
                    format.render_error(rej.err.status, &rej.err.message),
                    rej.err.retry_after,
                )
                .await
        }
        None => {
            let resp = LLMNATSResponse {
                trace_id: trace.map(|t| t.to_string()).unwrap_or_default(),
                success: false,
                error: Some(rej.err.message),
                ..Default::default()
            };
            replier.seed_error(rej.err.status, &resp, rej.err.retry_after).await;
        }
    }
}

/// Send the final reply.
async fn finish(
    ctx: &WorkerCtx,
    replier: &Replier,
    job: &Job,
    started: Instant,
    result: Result<Delivered, RequestError>,
    ratio: f64,
) -> Summary {
    let duration_ms = started.elapsed().as_millis() as u64;
    let mut resp = LLMNATSResponse {
        trace_id: job.trace_id.to_string(),
        model: job.model.clone(),
        duration_ms,
        ..Default::default()
    };
    let mut usage = None;
    let mut channel = String::new();
    let mut upstream = None;
    let mut ttft_ms = None;
    let failure = match result {
        Ok(d) => {
            upstream = d.upstream;
            ttft_ms = d.first_chunk.map(|t| t.saturating_duration_since(started).as_millis() as u64);
            usage = Some(d.usage);
            channel = d.channel.clone();
            let u = d.usage;
            resp.tokens_input = u.prompt_total();
            resp.tokens_output = u.output_tokens;
            resp.cost = ctx.pricing().table.cost(&job.model, &u) * ratio;
            resp.usage_estimated = u.estimated;
            resp.finish_reason = d.acc.finish().map(|f| f.as_str().to_string());
            resp.content = d.acc.text().to_string();
            resp.upstream_ms = d.upstream.map(|u| u.as_millis() as u64);
            tracing::debug!(trace_id = %resp.trace_id, user = %job.user_id, session = ?job.session_id, channel = %d.channel, duration_ms, "finished");
            d.failure.map(|f| (f, true))
        }
        Err(err) => Some((err, false)),
    };
    let status = failure.as_ref().map_or(200, |(e, _)| e.status);
    match failure {
        None => {
            resp.success = true;
            replier.done(&resp).await;
        }
        Some((err, delivered)) => {
            tracing::debug!(trace_id = %resp.trace_id, status = err.status, error = %err.message, "failed");
            resp.error = Some(err.message.clone());
            match &job.client {
                Client::Seed => replier.seed_error(err.status, &resp, err.retry_after).await,
                // After bytes went out, the error event is already in the stream; the final
                // message is only the summary.
                Client::Native { format, .. } => {
                    let body = if delivered {
                        serde_json::to_vec(&resp).unwrap_or_default()
                    } else {
                        format.render_error(err.status, &err.message)
                    };
                    replier.native_error(err.status, body, err.retry_after).await
                }
            }
        }
    }
    let total = started.elapsed();
    let overhead = upstream.map(|u| total.saturating_sub(u).as_secs_f64());
    ctx.metrics.record(job.platform.as_str(), status, total.as_secs_f64(), overhead);
    Summary { resp, usage, channel, status, ttft_ms }
}
