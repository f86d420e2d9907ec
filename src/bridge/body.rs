//! The rest of an answer after its first reply: a whole body collected into one response,
//! or an event stream handed to the client chunk by chunk as it reads (no task, no channel:
//! the replies wake the connection), ended by an error event that continues the stream if
//! the worker goes silent.

use super::response::copy_reply_headers;
use super::state::AppState;
use crate::bus::headers::ReplyKind;
use crate::bus::subjects::Token;
use crate::client::{ClientError, Reply};
use crate::protocol::Format;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

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
pub(super) async fn whole_body(
    mut replies: crate::client::Replies,
    first: Reply,
    content_type: String,
    trace: &Token,
    done: Finished,
) -> Response {
    let status = done.status;
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
    done.record(upstream);
    r
}

/// The rest of an event-stream response: read by the body stream as the client takes it.
pub(super) struct BodyState {
    /// The replies still to come.
    pub(super) replies: crate::client::Replies,
    /// The client's format, for an in-stream error event.
    pub(super) format: Format,
    /// Model from the URL, for the error event.
    pub(super) model: String,
    /// SSE events written so far (counted by frame terminators, not parsed), so an error
    /// event can continue the stream's numbering.
    pub(super) events: u64,
    /// Nothing more to send.
    pub(super) ended: bool,
    /// Records the metrics once: at the final reply (with the upstream time), else when
    /// the body is dropped (client gone, worker lost).
    pub(super) done: Option<Finished>,
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
pub(super) fn reply_body(first: Bytes, state: BodyState) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
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
pub(super) fn sse_frames(bytes: &[u8]) -> u64 {
    bytes.windows(2).filter(|w| *w == b"\n\n").count() as u64
}

/// Records a streamed response's metrics when its body ends.
pub(super) struct Finished {
    /// For the metrics.
    pub(super) state: Arc<AppState>,
    /// Route label.
    pub(super) label: &'static str,
    /// HTTP status sent.
    pub(super) status: u16,
    /// When the request arrived.
    pub(super) started: Instant,
}

impl Finished {
    pub(super) fn record(self, upstream_ms: Option<u64>) {
        let total = self.started.elapsed().as_secs_f64();
        let overhead = upstream_ms.map(|u| total - u as f64 / 1000.0);
        self.state.metrics.record(self.label, self.status, total, overhead);
    }
}
