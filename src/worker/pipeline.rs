//! Serving one parsed request: try the router's candidates in order, fail over while
//! nothing has reached the client, then stream (or return) the answer in the client's
//! format — untouched on pass-through, converted through the canonical model otherwise.
//!
//! "Reached the client" means a reply chunk was published. Frames that carry no answer
//! yet (Anthropic `message_start`, pings) are held back, so an error event right after them
//! still fails over.

use super::job::{Client, Delivered, Job};
use super::reply::Replier;
use super::WorkerCtx;
use crate::error::RequestError;
use crate::formats::{self, Format, Op, StreamEncoder};
use crate::protocol::accumulate::{to_events, Accumulator};
use crate::protocol::canonical::{estimate_tokens, ChatRequest, StreamEvent, Usage};
use crate::providers::{ProviderError, UpstreamBody, UpstreamCall};
use crate::router::{Candidate, Router};
use bytes::Bytes;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::time::timeout_at;

/// Why an attempt produced nothing for the client.
enum AttemptFail {
    /// The upstream failed before the first byte.
    Upstream(ProviderError),
    /// The request cannot be expressed in this channel's format.
    Unmappable(formats::FormatError),
}

/// Route, fail over, deliver.
pub(crate) async fn serve(ctx: &WorkerCtx, job: &Job, replier: &Replier) -> Result<Delivered, RequestError> {
    if let Client::Native { format, op: Op::CountTokens, body, forward } = &job.client {
        let bytes = match count_upstream(ctx, job, *format, body, forward).await {
            Some(b) => b,
            None => {
                // Local count with the o200k tokenizer, off the async threads.
                let chat = job.chat.clone();
                let n = tokio::task::spawn_blocking(move || crate::tokenize::count_request(&chat)).await.unwrap_or(0);
                format.render_count_tokens(n)
            }
        };
        replier.native_chunk(Some((200, "application/json")), bytes).await;
        return Ok(Delivered {
            acc: Accumulator::new(),
            usage: Usage::default(),
            channel: "local".into(),
            failure: None,
            upstream: None,
            first_chunk: None,
        });
    }
    // Session affinity: where this session is pinned (the local cache; one KV get for a
    // session new to this worker).
    let session = super::routing::session_key(ctx, job);
    let pin = match (&ctx.affinity, &session) {
        (Some(table), Some(key)) => table.lookup(key).await,
        _ => None,
    };
    let candidates = ctx.router.candidates_for(&job.model, job.platform.as_str(), pin.as_ref(), &job.channel_group);
    if candidates.is_empty() {
        return Err(RequestError::new(404, no_channel(job)));
    }
    let _slot = ctx.admission.acquire().await.map_err(|r| {
        let why = match r {
            super::admission::Rejected::QueueFull => "worker saturated: wait queue full",
            super::admission::Rejected::TimedOut => "worker saturated: no free slot in time",
        };
        RequestError { status: 503, message: why.into(), retry_after: Some(1) }
    })?;

    let mut last: Option<RequestError> = None;
    let mut upstream_failed = false;
    // Fail-closed: a copy not proven current is checked against the bucket itself.
    let unproven = match &ctx.live {
        Some(l) => !l.channels_current().await,
        None => false,
    };
    for mut cand in candidates {
        if let Some(live) = ctx.live.as_ref().filter(|_| unproven) {
            match live.confirm(&cand.channel.config).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "channel configuration not proven current");
                    return Err(RequestError {
                        status: 503,
                        message: "channel configuration is not proven current (the CHANNELS bucket does not answer); \
                                  retry shortly"
                            .into(),
                        retry_after: Some(1),
                    });
                }
            }
        }
        if !ctx.router.claim(&mut cand) {
            continue;
        }
        // Released on drop unless a verdict is recorded: also when this future is dropped
        // mid-attempt (cancel, request timeout), which would otherwise leave a probe claimed
        // for good and the channel stuck in `probing`.
        let mut claim = Claim { router: &ctx.router, cand: &cand, settled: false };
        // Counted in flight (the load-aware strategies read it) until the attempt ends.
        let _busy = cand.channel.health.load.begin();
        let started = Instant::now();
        let span = super::otel::attempt(ctx, &cand);
        // Boxed: the attempt's state is large and `serve` would hold it (often twice over).
        match Box::pin(super::otel::scoped(span.as_ref(), attempt(job, &cand, replier))).await {
            Ok((mut delivered, ttfb)) => {
                delivered.upstream = Some(started.elapsed());
                super::otel::served(ctx, span.as_ref(), &cand, &delivered, ttfb);
                match &delivered.failure {
                    None => {
                        ctx.router.success(&cand, ttfb.unwrap_or_default(), started.elapsed());
                        pin_here(ctx, session.as_deref(), &cand);
                    }
                    Some(f) => ctx.router.failure(
                        &cand,
                        &ProviderError::new(crate::providers::ProviderErrorKind::Protocol, f.message.clone()),
                    ),
                }
                claim.settled = true;
                return Ok(delivered);
            }
            Err(AttemptFail::Unmappable(e)) => {
                super::otel::failed(span.as_ref(), "unmappable", &e.message);
                tracing::debug!(channel = %cand.channel.config.name, error = %e, "request cannot use this channel's format");
                last = Some(RequestError::new(e.status, e.message));
            }
            Err(AttemptFail::Upstream(e)) => {
                super::otel::failed(span.as_ref(), &e.status().to_string(), &e.to_string());
                if ctx.router.is_channel_failure(&cand, &e) {
                    ctx.router.failure(&cand, &e);
                    claim.settled = true;
                    tracing::info!(channel = %cand.channel.config.name, error = %e, "upstream failed before the first byte; trying the next channel");
                    last = Some(RequestError::from(e));
                    upstream_failed = true;
                } else {
                    // The upstream refused the request itself (4xx): no failover, pass it on
                    // (the claim is released on return).
                    return Err(RequestError::from(e));
                }
            }
        }
    }
    // No upstream failed: every channel refused the request's shape, which is the client's
    // error (a 400 naming the feature), not a gateway failure.
    if let (Some(e), false) = (&last, upstream_failed) {
        return Err(e.clone());
    }
    let last = last.map_or_else(|| "every channel is cooling down".to_string(), |e| e.message);
    Err(RequestError { status: 502, message: format!("all channels failed; last error: {last}"), retry_after: None })
}

/// Why no channel can take the job (naming its scenario's channels, if any).
pub(crate) fn no_channel(job: &Job) -> String {
    let group = if job.channel_group.is_empty() {
        String::new()
    } else {
        format!(" among the channels {:?} its scenario route allows", job.channel_group)
    };
    format!("no channel serves model {:?}{group}", job.model)
}

/// Pin the session where it was served (a table write only when it moved or is new).
fn pin_here(ctx: &WorkerCtx, session: Option<&str>, cand: &Candidate) {
    if let (Some(table), Some(key)) = (ctx.affinity.as_ref(), session) {
        table.record(key, crate::router::Assignment { channel: cand.channel.config.name.clone(), key: cand.key });
    }
}

/// A claimed candidate; releases the claim on drop unless `settled` (a verdict was recorded).
struct Claim<'a> {
    /// The router that holds the claim.
    router: &'a Router,
    /// The claimed candidate.
    cand: &'a Candidate,
    /// Whether `success` or `failure` was recorded.
    settled: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.router.release(self.cand);
        }
    }
}

/// Count tokens at the first channel that speaks the client's format and can count
/// (Anthropic, Gemini); `None` to count locally.
async fn count_upstream(
    ctx: &WorkerCtx,
    job: &Job,
    format: Format,
    body: &Bytes,
    forward: &[(String, String)],
) -> Option<Vec<u8>> {
    let cand = ctx.router.candidates(&job.model, job.platform.as_str()).into_iter().find(|c| {
        c.channel.kind.format() == Some(format)
            && matches!(
                c.channel.kind,
                crate::providers::ProviderKind::Anthropic | crate::providers::ProviderKind::Gemini
            )
    })?;
    let crate::providers::Provider::Http(http) = &cand.channel.provider else { return None };
    let upstream_body = formats::passthrough::body(format, body, &cand.upstream_model, false).ok()?;
    let call = UpstreamCall {
        chat: &job.chat,
        body: upstream_body.into(),
        model: &cand.upstream_model,
        stream: false,
        forward_headers: forward,
        key: cand.channel.round_robin(),
    };
    match http.count_tokens(call).await {
        Ok(b) => Some(b.to_vec()),
        Err(e) => {
            tracing::debug!(channel = %cand.channel.config.name, error = %e, "upstream count_tokens failed; counting locally");
            None
        }
    }
}

/// Output state of one attempt.
struct Output<'a> {
    /// Where replies go.
    replier: &'a Replier,
    /// The request.
    job: &'a Job,
    /// Native streaming conversion encoder.
    encoder: Option<Box<dyn StreamEncoder>>,
    /// Native bytes not yet published.
    pending: Vec<u8>,
    /// Seed deltas not yet published.
    pending_text: Vec<String>,
    /// Whether something answer-bearing is pending.
    substantive: bool,
    /// Whether anything was published (no failover after this).
    committed: bool,
    /// Upstream frames forwarded as they are (pass-through).
    forwarded: u64,
    /// Everything received.
    acc: Accumulator,
    /// When the attempt started.
    started: Instant,
    /// Time to the first answer-bearing event.
    ttfb: Option<Duration>,
}

impl<'a> Output<'a> {
    fn new(job: &'a Job, replier: &'a Replier, passthrough: bool) -> Self {
        let encoder = match &job.client {
            Client::Native { format, .. } if job.chat.stream && !passthrough => Some(format.encoder(&job.model)),
            _ => None,
        };
        Self {
            replier,
            job,
            encoder,
            pending: Vec::new(),
            pending_text: Vec::new(),
            substantive: false,
            committed: false,
            forwarded: 0,
            acc: Accumulator::new(),
            started: Instant::now(),
            ttfb: None,
        }
    }

    fn event(&mut self, ev: StreamEvent) {
        let answer_bearing = !matches!(ev, StreamEvent::Start { .. } | StreamEvent::Usage(_));
        if answer_bearing && self.ttfb.is_none() {
            self.ttfb = Some(self.started.elapsed());
        }
        match (&self.job.client, self.job.chat.stream) {
            (Client::Seed, true) => {
                if let StreamEvent::Text(t) = &ev {
                    self.pending_text.push(t.clone());
                    self.substantive = true;
                }
            }
            (Client::Native { .. }, true) => {
                if let Some(enc) = self.encoder.as_mut() {
                    enc.event(&ev, &mut self.pending);
                }
                self.substantive |= answer_bearing;
            }
            // Whole answers are rendered at the end.
            (_, false) => {}
        }
        self.acc.push(&ev);
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.forwarded += 1;
    }

    async fn flush(&mut self, force: bool) {
        if !(self.substantive || force) {
            return;
        }
        match &self.job.client {
            Client::Seed => {
                for delta in std::mem::take(&mut self.pending_text) {
                    self.replier.seed_chunk(delta).await;
                    self.committed = true;
                }
            }
            Client::Native { .. } => {
                if !self.pending.is_empty() {
                    let first = (!self.committed).then_some((200, "text/event-stream"));
                    self.replier.native_chunk(first, std::mem::take(&mut self.pending)).await;
                    self.committed = true;
                }
            }
        }
        self.substantive = false;
    }

    /// An upstream failure: before the first byte it is the attempt's failure (fail over);
    /// after it, an error event in the client's format and a delivered-with-failure result.
    async fn fail(mut self, e: ProviderError, cand: &Candidate) -> Result<(Delivered, Option<Duration>), AttemptFail> {
        if !self.committed {
            return Err(AttemptFail::Upstream(e));
        }
        let mut err = RequestError::from(e);
        err.message = format!("upstream failed mid-stream: {}", err.message);
        if let Client::Native { format, .. } = &self.job.client {
            match self.encoder.take() {
                Some(mut enc) => enc.error(err.status, &err.message, &mut self.pending),
                // Pass-through: the client is reading the upstream's own stream.
                None => passthrough_error(*format, &self.acc, self.forwarded, &err, &mut self.pending),
            }
            self.flush(true).await;
        }
        let usage = delivered_usage(&self.job.chat, &self.acc);
        let ttfb = self.ttfb;
        Ok((
            Delivered {
                acc: self.acc,
                usage,
                channel: cand.channel.config.name.clone(),
                failure: Some(err),
                upstream: None,
                first_chunk: ttfb.map(|t| self.started + t),
            },
            ttfb,
        ))
    }

    /// The upstream finished: close the client's stream, or render the whole body.
    async fn finish(mut self, cand: &Candidate, whole: Option<Vec<u8>>) -> (Delivered, Option<Duration>) {
        let usage = match self.acc.usage() {
            Some(u) => u,
            None => Usage { estimated: true, ..delivered_usage(&self.job.chat, &self.acc) },
        };
        if let Client::Native { format, .. } = &self.job.client {
            if self.job.chat.stream {
                if let Some(enc) = self.encoder.as_mut() {
                    enc.finish(&mut self.pending);
                }
                self.flush(true).await;
            } else {
                let body = whole.unwrap_or_else(|| {
                    let resp = self.acc.clone().into_response(&self.job.model, usage);
                    format.render_response(&resp, &self.job.model)
                });
                self.replier.native_chunk(Some((200, "application/json")), body).await;
                self.committed = true;
            }
        } else {
            self.flush(true).await;
        }
        let ttfb = self.ttfb;
        (
            Delivered {
                acc: self.acc,
                usage,
                channel: cand.channel.config.name.clone(),
                failure: None,
                upstream: None,
                first_chunk: ttfb.map(|t| self.started + t),
            },
            ttfb,
        )
    }
}

/// The error event that ends a pass-through stream mid-way: the client already has the
/// upstream's preamble and `forwarded` frames (see [`Format::continuation_error`]).
fn passthrough_error(format: Format, acc: &Accumulator, forwarded: u64, err: &RequestError, out: &mut Vec<u8>) {
    let started = acc.clone().into_response("", Usage::default());
    out.extend_from_slice(&format.continuation_error(&started.id, &started.model, forwarded, err.status, &err.message));
}

/// Usage estimated from what was delivered (the prompt counts in full).
fn delivered_usage(chat: &ChatRequest, acc: &Accumulator) -> Usage {
    let resp = acc.clone().into_response("", Usage::default());
    let out: u64 = resp
        .content
        .iter()
        .map(|p| match p {
            crate::protocol::canonical::Part::Text { text }
            | crate::protocol::canonical::Part::Thinking { text, .. } => estimate_tokens(text),
            crate::protocol::canonical::Part::ToolCall { name, arguments, .. } => {
                estimate_tokens(name) + estimate_tokens(arguments)
            }
            _ => 0,
        })
        .sum();
    Usage { input_tokens: chat.estimate_prompt_tokens(), output_tokens: out, estimated: true, ..Default::default() }
}

/// One try on one channel.
async fn attempt(job: &Job, cand: &Candidate, replier: &Replier) -> Result<(Delivered, Option<Duration>), AttemptFail> {
    let upstream_format = cand.channel.kind.format();
    // Same format: pass-through, unless the body carries reasoning of another API (a client
    // that switched providers), which only a conversion keeps from reaching this upstream.
    let (passthrough, raw_body, forward): (bool, &[u8], &[(String, String)]) = match &job.client {
        Client::Native { format, body, forward, .. }
            if Some(*format) == upstream_format
                && (job.strict_error.is_some() || !formats::reasoning::has_envelope(body)) =>
        {
            (true, body, forward)
        }
        _ => (false, &[], &[]),
    };
    if let (Some(e), false) = (&job.strict_error, passthrough) {
        return Err(AttemptFail::Unmappable(e.clone()));
    }
    let body: Bytes = match upstream_format {
        None => Bytes::new(),
        Some(f) if passthrough => {
            let mut b = formats::passthrough::body(f, raw_body, &cand.upstream_model, job.chat.stream)
                .map_err(AttemptFail::Unmappable)?;
            if let Some(cap) = job.output_cap {
                b = formats::passthrough::with_output_cap(f, &b, &cand.upstream_model, cap)
                    .map_err(AttemptFail::Unmappable)?;
            }
            b.into()
        }
        Some(f) => f.build_request(&job.chat, &cand.upstream_model).map_err(AttemptFail::Unmappable)?.into(),
    };
    let deadline = tokio::time::Instant::now() + cand.channel.config.timeouts.total();
    let call = UpstreamCall {
        chat: &job.chat,
        body,
        model: &cand.upstream_model,
        stream: job.chat.stream,
        forward_headers: forward,
        key: cand.key,
    };
    // Boxed: the call is over once the answer starts; its state should not stay in the
    // attempt's for the whole stream.
    let upstream = match timeout_at(deadline, Box::pin(cand.channel.provider.call(call))).await {
        Ok(r) => r.map_err(AttemptFail::Upstream)?,
        Err(_) => return Err(AttemptFail::Upstream(total_timeout(cand))),
    };
    let mut out = Output::new(job, replier, passthrough);
    match upstream {
        UpstreamBody::Events(mut events) => loop {
            match timeout_at(deadline, events.next()).await {
                Err(_) => return out.fail(total_timeout(cand), cand).await,
                Ok(None) => break,
                Ok(Some(Ok(ev))) => {
                    out.event(ev);
                    out.flush(false).await;
                }
                Ok(Some(Err(e))) => return out.fail(e, cand).await,
            }
        },
        UpstreamBody::Sse(mut events) => {
            let Some(format) = upstream_format else {
                return Err(AttemptFail::Upstream(ProviderError::new(
                    crate::providers::ProviderErrorKind::Protocol,
                    "an SSE body from a provider without a format",
                )));
            };
            let mut decoder = format.decoder();
            loop {
                let item = match timeout_at(deadline, events.next()).await {
                    Err(_) => return out.fail(total_timeout(cand), cand).await,
                    Ok(None) => break,
                    Ok(Some(item)) => item,
                };
                let sse = match item {
                    Ok(sse) => sse,
                    Err(e) => return out.fail(e, cand).await,
                };
                match decoder.feed(sse.event.as_deref(), &sse.data) {
                    Ok(evs) => {
                        if passthrough {
                            let mut frame = Vec::with_capacity(sse.data.len() + 32);
                            crate::sse::frame(&mut frame, sse.event.as_deref(), &sse.data);
                            out.raw(&frame);
                            // The raw frame carries the answer; mark what it holds.
                            out.substantive |=
                                evs.iter().any(|e| !matches!(e, StreamEvent::Start { .. } | StreamEvent::Usage(_)));
                            for ev in evs {
                                out.acc.push(&ev);
                                if out.ttfb.is_none() && out.substantive {
                                    out.ttfb = Some(out.started.elapsed());
                                }
                            }
                        } else {
                            for ev in evs {
                                out.event(ev);
                            }
                        }
                        out.flush(false).await;
                    }
                    Err(fe) => return out.fail(upstream_error(cand, fe), cand).await,
                }
            }
            match decoder.end() {
                Ok(evs) => {
                    for ev in evs {
                        if passthrough {
                            out.acc.push(&ev);
                        } else {
                            out.event(ev);
                        }
                    }
                }
                Err(fe) => return out.fail(upstream_error(cand, fe), cand).await,
            }
        }
        UpstreamBody::Json(bytes) => {
            let Some(format) = upstream_format else {
                return Err(AttemptFail::Upstream(ProviderError::new(
                    crate::providers::ProviderErrorKind::Protocol,
                    "a JSON body from a provider without a format",
                )));
            };
            let resp = format.parse_response(&bytes).map_err(|e| AttemptFail::Upstream(upstream_error(cand, e)))?;
            let events = to_events(&resp);
            if passthrough && !job.chat.stream {
                for ev in events {
                    out.acc.push(&ev);
                }
                return Ok(out.finish(cand, Some(bytes.to_vec())).await);
            }
            if out.encoder.is_none() && job.chat.stream {
                if let Client::Native { format, .. } = &job.client {
                    out.encoder = Some(format.encoder(&job.model));
                }
            }
            for ev in events {
                out.event(ev);
            }
        }
    }
    Ok(out.finish(cand, None).await)
}

/// An upstream error event or error body as a provider error, with the channel's keys
/// masked: upstreams echo keys in such messages, and only the transport's own errors are
/// redacted before this point.
/// Malformed upstream data (a format's 502) is a protocol error; an error event carries the
/// upstream's own status.
fn upstream_error(cand: &Candidate, e: formats::FormatError) -> ProviderError {
    use crate::providers::ProviderErrorKind;
    let kind = if e.status == 502 { ProviderErrorKind::Protocol } else { ProviderErrorKind::Status(e.status) };
    let mut e = ProviderError::new(kind, e.message);
    let secrets = cand.channel.provider.secrets();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    e.message = crate::redact::redact(&e.message, &refs);
    e
}

fn total_timeout(cand: &Candidate) -> ProviderError {
    ProviderError::new(
        crate::providers::ProviderErrorKind::Timeout,
        format!("attempt exceeded the channel's {} ms total timeout", cand.channel.config.timeouts.total_ms),
    )
}
