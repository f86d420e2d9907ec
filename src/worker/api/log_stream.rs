//! `GET /api/log/self/stream` (a user's own) and `GET /api/log/stream` (an admin: everyone's):
//! the request log as it grows, pushed as server-sent events. The worker that answers
//! authenticates the caller like any API call, then follows the ledger's subjects
//! (`llm.usage.<user>`, or `llm.usage.*`) on core NATS and sends each record as one chunk
//! `data: <log entry>\n\n` (the entry's shape is `/api/log/`'s, with `id` 0: a pushed record
//! has no stream sequence yet), with heartbeats between them. The bridge relays the chunks as
//! it relays an LLM stream; a client that goes away cancels it (`llm.cancel.<trace>`), and
//! the stream ends by itself after [`MAX_STREAM`] (a browser's `fetch` reconnects) or when
//! the worker stops. A retried ledger append can be pushed twice: clients keep one entry per
//! `trace_id` and `type`.

use super::{Call, Reply};
use crate::bus::codec::Encoding;
use crate::bus::headers::{self, ReplyKind};
use crate::bus::subjects::{self, Token};
use crate::quota::ledger::UsageRecord;
use crate::worker::reply::Replier;
use async_nats::Subject;
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

/// How long one stream lasts before the client reconnects.
pub(crate) const MAX_STREAM: Duration = Duration::from_secs(300);

/// Whether the call asks for a log stream.
pub(super) fn wanted(family: &str, call: &Call<'_>) -> bool {
    family == "log" && matches!(call.route(), ("GET", p) if matches!(p.as_slice(), ["self", "stream"] | ["stream"]))
}

/// Serve one log stream on `reply` (a refusal is one final reply, as for any API call).
pub(super) async fn serve(call: &Call<'_>, reply: Subject) {
    let (ctx, msg) = (call.ctx, call.msg);
    let whose = match call.route().1.as_slice() {
        ["self", "stream"] => call.caller().await.map(|c| Some(c.user.clone())),
        _ => call.admin().await.map(|_| None),
    };
    let user: Option<Token> = match whose {
        Ok(u) => u,
        Err(r) => return super::send(ctx, reply, &r).await,
    };
    let trace = msg.headers.as_ref().and_then(|h| h.get(headers::TRACE)).map(|v| v.as_str().to_string());
    let trace = trace.unwrap_or_else(|| Token::random().to_string());
    let Some(guard) = ctx.inflight.register(&trace) else {
        return super::send(ctx, reply, &Reply::fail(409, "this trace id is already in flight")).await;
    };
    let subject = user.as_ref().map_or_else(subjects::usage_all, subjects::usage);
    let mut records = match ctx.client.subscribe(subject).await {
        Ok(s) => s,
        Err(e) => return super::send(ctx, reply, &Reply::unavailable(format!("following the ledger: {e}"))).await,
    };
    // The subscription is at the server before the client hears the stream is open.
    let _ = tokio::time::timeout(Duration::from_secs(2), ctx.client.flush()).await;
    let replier = Replier::new(ctx.client.clone(), reply, Encoding::Json, trace);
    replier
        .send(
            ReplyKind::Chunk,
            Some(200),
            Some("text/event-stream"),
            &[],
            Bytes::from_static(b": the request log, live\n\n"),
        )
        .await;
    let ends = tokio::time::sleep(MAX_STREAM);
    tokio::pin!(ends);
    let mut beat = tokio::time::interval(ctx.config.heartbeat());
    beat.tick().await;
    loop {
        tokio::select! {
            _ = &mut ends => break,
            _ = ctx.shutdown.wait() => break,
            _ = guard.token.cancelled() => break,
            _ = beat.tick() => replier.heartbeat().await,
            m = records.next() => match m {
                Some(m) => {
                    if let Ok(rec) = serde_json::from_slice::<UsageRecord>(&m.payload) {
                        let line = format!("data: {}\n\n", super::log::shown(0, &rec));
                        replier.send(ReplyKind::Chunk, None, None, &[], line.into()).await;
                    }
                }
                None => break,
            },
        }
    }
    let _ = records.unsubscribe().await;
    replier.send(ReplyKind::Done, Some(200), Some("application/json"), &[], Bytes::from_static(b"{}")).await;
}
