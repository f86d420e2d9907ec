//! The worker's telemetry hooks: each is one `Option` check when export is off (no span is
//! built), and turns a job, a candidate or an outcome into [`crate::telemetry`]'s terms
//! when it is on.

use super::job::{Client, Delivered, Job};
use super::WorkerCtx;
use crate::error::RequestError;
use crate::formats::Op;
use crate::protocol::canonical::Usage;
use crate::protocol::LLMNATSResponse;
use crate::router::Candidate;
use crate::telemetry::spans::{self, Attempt, ChatSpan, Outcome, Request};
use opentelemetry::Context;
use std::time::Duration;

pub(crate) use crate::telemetry::propagate::scoped;

/// Start a request's span (after parsing and scenario routing), a child of the client's
/// `traceparent`.
pub(crate) fn start(ctx: &WorkerCtx, job: &Job) -> Option<ChatSpan> {
    let t = ctx.telemetry.as_ref()?;
    let operation = match &job.client {
        Client::Native { op: Op::CountTokens, .. } => "count_tokens",
        _ => "chat",
    };
    let req = Request { operation, model: &job.model, chat: &job.chat, trace_id: job.trace_id.as_str() };
    Some(t.chat(job.headers.as_ref(), &req))
}

/// The context a request's work runs in (its span current), if traced.
pub(crate) fn context(chat: Option<&ChatSpan>) -> Option<&Context> {
    chat.map(ChatSpan::context)
}

/// Start the admission span.
pub(crate) fn admission(ctx: &WorkerCtx, chat: Option<&ChatSpan>) -> Option<Context> {
    Some(ctx.telemetry.as_ref()?.admission(chat?))
}

/// End the admission span with its verdict.
pub(crate) fn admitted<T>(span: Option<Context>, verdict: &Result<T, RequestError>) {
    if let Some(cx) = span {
        let error = verdict.as_ref().err().map(|e| (e.status.to_string(), e.message.as_str()));
        spans::end_child(&cx, error.as_ref().map(|(k, m)| (k.as_str(), *m)));
    }
}

fn attempt_of(cand: &Candidate) -> Attempt<'_> {
    let c = &cand.channel.config;
    Attempt { channel: &c.name, kind: cand.channel.kind.as_str(), model: &cand.upstream_model, base_url: &c.base_url }
}

/// Start an upstream attempt's span (under the request's, which is current in the pipeline).
pub(crate) fn attempt(ctx: &WorkerCtx, cand: &Candidate) -> Option<Context> {
    Some(ctx.telemetry.as_ref()?.attempt(&attempt_of(cand)))
}

/// The attempt answered (fully, or until a mid-stream failure); a whole answer's first
/// chunk is all of it.
pub(crate) fn served(ctx: &WorkerCtx, span: Option<&Context>, cand: &Candidate, d: &Delivered, ttfb: Option<Duration>) {
    if let (Some(t), Some(cx)) = (ctx.telemetry.as_ref(), span) {
        if let Some(f) = &d.failure {
            spans::mark_error(cx, &f.status.to_string(), &f.message);
        }
        let first = ttfb.or(d.upstream.filter(|_| d.failure.is_none()));
        t.served(cx, &attempt_of(cand), d.acc.model(), first);
    }
}

/// The attempt gave the client nothing (`kind`: the status, or why it could not be tried).
pub(crate) fn failed(span: Option<&Context>, kind: &str, message: &str) {
    if let Some(cx) = span {
        spans::end_child(cx, Some((kind, message)));
    }
}

/// End a request's span once its final reply is out, and record its metrics.
pub(crate) fn finish(
    ctx: &WorkerCtx,
    chat: Option<ChatSpan>,
    resp: &LLMNATSResponse,
    usage: Option<&Usage>,
    status: u16,
) {
    if let (Some(t), Some(chat)) = (ctx.telemetry.as_ref(), chat) {
        let out = Outcome {
            usage,
            finish_reason: resp.finish_reason.as_deref(),
            status,
            error: resp.error.as_deref(),
            output: &resp.content,
        };
        t.end(chat, &out);
    }
}
