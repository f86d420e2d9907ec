//! The requester side of the reply protocol: subscribe to a fresh inbox, publish the
//! request, then read replies with two bounded waits — the first reply (a worker sends a
//! heartbeat within the delay the requester asked for, so silence past that and the window
//! means "no worker") and the gap between replies (a dead worker stops heartbeating). Used by `ailurus req`, the bridge and the tests.
//!
//! A requester subscribes one inbox per request, or (made with
//! [`Requester::multiplexed`], as the bridge is) takes every request's replies on one
//! shared wildcard subscription ([`mux`]).

mod mux;

pub use mux::SlowReader;

use crate::bus::codec::{decode, encode, Encoding};
use crate::bus::headers::{self, ReplyKind};
use crate::bus::proof::{now_secs, Signer};
use crate::bus::subjects::{self, Token};
use crate::protocol::{ChunkMessage, LLMNATSRequest, LLMNATSResponse};
use async_nats::{HeaderMap, StatusCode, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait for the first reply before deciding no worker is listening.
pub const DEFAULT_FIRST_REPLY: Duration = Duration::from_millis(1000);
/// How long a silent worker is trusted (several heartbeat intervals).
pub const DEFAULT_SILENCE: Duration = Duration::from_millis(4000);

/// Why a request got no proper answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Nothing answered: no worker subscribes to the subject.
    NoWorker,
    /// A worker went silent past the heartbeat window (it probably died).
    WorkerSilent(Duration),
    /// The request could not be published (too large, connection closed, ...).
    Publish(String),
    /// A reply could not be decoded.
    Decode(String),
    /// The reply subscription ended before a final reply.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoWorker => f.write_str("no worker is serving this subject"),
            Self::WorkerSilent(d) => write!(f, "the worker went silent for {} ms (it may have died)", d.as_millis()),
            Self::Publish(m) => write!(f, "cannot send the request: {m}"),
            Self::Decode(m) => write!(f, "bad reply: {m}"),
            Self::Closed => f.write_str("reply subscription closed before the final reply"),
        }
    }
}

impl std::error::Error for ClientError {}

/// One reply message.
#[derive(Debug, Clone)]
pub struct Reply {
    /// What it is.
    pub kind: ReplyKind,
    /// `Ailurus-Status`, if present.
    pub status: Option<u16>,
    /// All headers, for callers that copy them (the bridge).
    pub headers: HeaderMap,
    /// The body bytes.
    pub payload: Bytes,
}

impl Reply {
    /// Decode a seed chunk.
    pub fn chunk(&self, enc: Encoding) -> Result<ChunkMessage, ClientError> {
        decode(enc, &self.payload).map_err(|e| ClientError::Decode(e.0))
    }

    /// Decode a final `LLMNATSResponse`.
    pub fn response(&self, enc: Encoding) -> Result<LLMNATSResponse, ClientError> {
        decode(enc, &self.payload).map_err(|e| ClientError::Decode(e.0))
    }
}

/// Sends requests and hands back their replies.
#[derive(Clone, Debug)]
pub struct Requester {
    /// The connection.
    client: async_nats::Client,
    /// Wait for the first reply.
    pub first_reply: Duration,
    /// Longest allowed gap between replies.
    pub silence: Duration,
    /// The shared reply subscription, when multiplexed; else one inbox per request.
    mux: Option<Arc<mux::Mux>>,
    /// Signs every request with a proof of possession (see [`Requester::signed_by`]).
    signer: Option<Signer>,
}

impl Requester {
    /// A requester with the default waits, subscribing one inbox per request.
    pub fn new(client: async_nats::Client) -> Self {
        Self { client, first_reply: DEFAULT_FIRST_REPLY, silence: DEFAULT_SILENCE, mux: None, signer: None }
    }

    /// This requester, signing every request it sends with `token`'s proof of possession
    /// (`bus::proof`): the token itself never goes on NATS. A request's trace id (the
    /// `Ailurus-Trace` header, else the seed `trace_id`) is what the proof is bound to.
    #[must_use]
    pub fn signed_by(mut self, token: &str) -> Self {
        self.signer = Some(Signer::new(token));
        self
    }

    /// A requester whose requests share one reply subscription (`<inbox>.*`): for
    /// long-lived, busy requesters (the bridge). Fails when the subscription cannot be made.
    /// With `slow`, a request whose replies go unread (see [`SlowReader`]) is cancelled and
    /// its replies end.
    pub async fn multiplexed(client: async_nats::Client, slow: Option<SlowReader>) -> Result<Self, ClientError> {
        let mux = mux::Mux::start(&client, slow).await.map_err(ClientError::Publish)?;
        Ok(Self { mux: Some(mux), ..Self::new(client) })
    }

    /// Publish raw bytes on `subject` with `headers` (plus the heartbeat request), reply
    /// inbox subscribed first. `trace_id` is used to cancel when the replies are dropped early.
    pub async fn send_raw(
        &self,
        subject: String,
        mut headers: HeaderMap,
        payload: Bytes,
        trace_id: Option<Token>,
    ) -> Result<Replies, ClientError> {
        let (inbox, source) = match &self.mux {
            Some(mux) => {
                let entry = mux.register(trace_id.as_ref().map(subjects::cancel));
                (entry.subject.clone(), Source::Shared(entry))
            }
            None => {
                let inbox = self.client.new_inbox();
                let sub =
                    self.client.subscribe(inbox.clone()).await.map_err(|e| ClientError::Publish(e.to_string()))?;
                (inbox, Source::Own(sub))
            }
        };
        // The first heartbeat may wait a tenth of the first-reply window: a quick answer
        // then needs no heartbeat message at all. A caller's own `Ailurus-Heartbeat` (e.g.
        // `1`: at once) is kept. Whatever delay was asked for is added to the first-reply
        // wait, so a worker still has the whole window after its heartbeat is due.
        if headers.get(headers::HEARTBEAT).is_none() {
            headers.insert(headers::HEARTBEAT, headers::heartbeat_after(self.first_reply / 10).as_str());
        }
        if let Some(signer) = &self.signer {
            let trace = headers.get(headers::TRACE).map(|v| v.as_str().to_string());
            let trace = trace.or_else(|| trace_id.as_ref().map(Token::to_string)).unwrap_or_default();
            signer.sign(&subject, &trace, now_secs(), &mut headers, &payload);
        }
        let delay = headers.get(headers::HEARTBEAT).map_or(Duration::ZERO, |v| headers::first_heartbeat(v.as_str()));
        self.client
            .publish_with_reply_and_headers(subject, inbox, headers, payload)
            .await
            .map_err(|e| ClientError::Publish(e.to_string()))?;
        Ok(Replies {
            source,
            client: self.client.clone(),
            trace_id,
            first_reply: self.first_reply + delay,
            silence: self.silence,
            seen: false,
            finished: false,
        })
    }

    /// Publish a seed request on `llm.request.<platform>`.
    pub async fn send(&self, req: &LLMNATSRequest, enc: Encoding, extra: HeaderMap) -> Result<Replies, ClientError> {
        let payload = encode(enc, req).map_err(ClientError::Publish)?;
        let mut headers = extra;
        headers.insert(headers::CONTENT_TYPE, enc.content_type());
        let trace = Token::new("trace_id", &req.trace_id).ok();
        self.send_raw(subjects::request(req.platform), headers, payload, trace).await
    }
}

/// The replies of one request. Dropping it before the final reply publishes
/// `llm.cancel.<trace_id>`, so the worker stops.
pub struct Replies {
    /// Where the replies arrive.
    source: Source,
    /// For the cancel on drop.
    client: async_nats::Client,
    /// For the cancel on drop.
    trace_id: Option<Token>,
    /// Wait for the first reply: the requester's window plus the first-heartbeat delay asked for.
    first_reply: Duration,
    /// Longest gap between replies.
    silence: Duration,
    /// Whether any protocol reply arrived.
    seen: bool,
    /// Whether the final reply arrived (or an error ended the sequence).
    finished: bool,
}

impl Replies {
    /// The next reply; `None` after the final one. Errors end the sequence.
    pub async fn next(&mut self) -> Option<Result<Reply, ClientError>> {
        if self.finished {
            return None;
        }
        loop {
            let wait = if self.seen { self.silence } else { self.first_reply };
            let msg = match tokio::time::timeout(wait, self.source.recv()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => return Some(Err(self.fail(ClientError::Closed))),
                Err(_) if self.seen => return Some(Err(self.fail(ClientError::WorkerSilent(wait)))),
                Err(_) => return Some(Err(self.fail(ClientError::NoWorker))),
            };
            if msg.status == Some(StatusCode::NO_RESPONDERS) {
                return Some(Err(self.fail(ClientError::NoWorker)));
            }
            let Some(kind) = ReplyKind::of(msg.headers.as_ref()) else {
                // Not a protocol reply (e.g. a stray JetStream ack); it proves nothing.
                tracing::debug!("ignoring a reply without Ailurus-Kind");
                continue;
            };
            self.seen = true;
            if kind.is_final() {
                self.finished = true;
            }
            let headers = msg.headers.unwrap_or_default();
            let status = headers.get(headers::STATUS).and_then(|v| v.as_str().parse().ok());
            return Some(Ok(Reply { kind, status, headers, payload: msg.payload }));
        }
    }

    /// The next reply that is not a heartbeat.
    pub async fn next_content(&mut self) -> Option<Result<Reply, ClientError>> {
        loop {
            match self.next().await {
                Some(Ok(r)) if r.kind == ReplyKind::Heartbeat => continue,
                other => return other,
            }
        }
    }

    fn fail(&mut self, e: ClientError) -> ClientError {
        self.finished = true;
        // A dead or missing worker has nothing to cancel; keep the drop quiet.
        self.trace_id = None;
        e
    }

    /// Mark the sequence finished without a cancel (e.g. the caller got what it needed).
    pub fn detach(mut self) {
        self.finished = true;
    }
}

/// Where one request's replies arrive.
enum Source {
    /// Its own inbox subscription (unsubscribed on drop).
    Own(Subscriber),
    /// Its entry in the requester's shared subscription (forgotten on drop).
    Shared(mux::Entry),
}

impl Source {
    async fn recv(&mut self) -> Option<async_nats::Message> {
        match self {
            Self::Own(sub) => sub.next().await,
            Self::Shared(entry) => futures::future::poll_fn(|cx| entry.poll_next(cx)).await,
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let (Some(trace), Ok(handle)) = (self.trace_id.take(), tokio::runtime::Handle::try_current()) {
            let client = self.client.clone();
            handle.spawn(async move {
                let _ = client.publish(subjects::cancel(&trace), Bytes::new()).await;
            });
        }
    }
}
