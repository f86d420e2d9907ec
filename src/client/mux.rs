//! Many requests' replies on one wildcard subscription (`<inbox>.*`), for long-lived
//! requesters such as the bridge: no SUB and UNSUB per request (two protocol messages and
//! two interest-graph changes in nats-server), and no per-request subscription channel
//! (async-nats allocates a 32-message block, about 6 KB, for each, which an idle stream
//! keeps). One dispatcher task routes each reply, by the last token of its subject, to the
//! queue of its request, and wakes the request's reader directly.

use async_nats::{Message, Subscriber};
use dashmap::DashMap;
use futures::task::AtomicWaker;
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Replies one request may have waiting before it counts as stuck; the requester ends it
/// (as if its subscription closed) instead of queueing without bound.
const MAX_QUEUED: usize = 8192;

/// `last_taken_us` of a slot whose reader has taken nothing yet.
const NOT_READING: u64 = u64::MAX;

/// When a request whose replies are not being read is cancelled: `max_buffered` replies
/// waiting and none taken for `max_wait` (its HTTP client stopped reading, say). The
/// dispatcher checks as replies arrive, so a reader that is never polled (the body of an
/// HTTP response whose client does not read) is still caught.
#[derive(Debug, Clone, Copy)]
pub struct SlowReader {
    /// Replies waiting.
    pub max_buffered: usize,
    /// Time since a reply was last taken.
    pub max_wait: Duration,
}

/// The shared reply subscription.
pub(crate) struct Mux {
    /// For the cancels of slow readers.
    client: async_nats::Client,
    /// Cancel requests whose replies go unread, if set.
    slow: Option<SlowReader>,
    /// Base of the slots' `last_taken_us`.
    epoch: Instant,
    /// `<inbox>.`: a request's reply subject is this plus its id.
    prefix: String,
    /// The next request id.
    next: AtomicU64,
    /// Open requests by id.
    routes: DashMap<u64, Arc<Slot>>,
    /// Set when the subscription ended (the connection closed for good): new requests
    /// fail at once instead of waiting for replies that cannot come.
    closed: AtomicBool,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux").field("prefix", &self.prefix).field("open", &self.routes.len()).finish()
    }
}

/// The replies waiting for one request.
struct Slot {
    /// Replies in arrival order.
    queue: Mutex<VecDeque<Message>>,
    /// The request's reader, woken by a new reply.
    waker: AtomicWaker,
    /// No more replies will come (subscription ended, slow reader, or too many unread).
    closed: AtomicBool,
    /// Microseconds after the mux's epoch when a reply was last taken; `NOT_READING` before
    /// the first.
    last_taken_us: AtomicU64,
    /// `llm.cancel.<trace_id>`, published if the reader is too slow.
    cancel: Option<String>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a reply. `true`: the reader is too slow (or `MAX_QUEUED` replies wait); the
    /// slot is closed and emptied, and the request should be cancelled.
    fn push(&self, msg: Message, slow: Option<SlowReader>, now_us: u64) -> bool {
        let stuck = {
            let mut q = self.lock();
            // Ended (slow reader, too many unread, subscription gone): later replies are
            // dropped, so a cancelled request is cancelled once and holds no memory.
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            // Judged only once the reader has taken a reply (the response has started): a
            // requester still waiting for its first reply is not a slow reader.
            let last = self.last_taken_us.load(Ordering::Relaxed);
            let idle = Duration::from_micros(now_us.saturating_sub(last));
            let slow =
                last != NOT_READING && slow.is_some_and(|s| q.len() >= s.max_buffered.max(1) && idle >= s.max_wait);
            if slow || q.len() >= MAX_QUEUED {
                self.closed.store(true, Ordering::Release);
                q.clear();
                true
            } else {
                q.push_back(msg);
                false
            }
        };
        self.waker.wake();
        stuck
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// The next reply; `None` once closed and drained.
    fn poll_next(&self, cx: &mut Context<'_>, now_us: u64) -> Poll<Option<Message>> {
        self.waker.register(cx.waker());
        if let Some(m) = self.lock().pop_front() {
            self.last_taken_us.store(now_us, Ordering::Relaxed);
            return Poll::Ready(Some(m));
        }
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// One request's place in the mux; leaving it (drop) forgets the request, so late replies
/// are discarded.
pub(crate) struct Entry {
    /// To deregister on drop.
    mux: Arc<Mux>,
    /// Key in `routes`.
    id: u64,
    /// Where its replies land.
    slot: Arc<Slot>,
    /// Its reply subject.
    pub(crate) subject: String,
}

impl Entry {
    /// The next reply; `None` once the slot is closed and drained.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.slot.poll_next(cx, self.mux.now_us())
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.mux.routes.remove(&self.id);
    }
}

impl Mux {
    /// Subscribe to a fresh `<inbox>.*` and start the dispatcher.
    pub(crate) async fn start(client: &async_nats::Client, slow: Option<SlowReader>) -> Result<Arc<Self>, String> {
        let prefix = format!("{}.", client.new_inbox());
        let sub = client.subscribe(format!("{prefix}*")).await.map_err(|e| e.to_string())?;
        let mux = Arc::new(Self {
            client: client.clone(),
            slow,
            epoch: Instant::now(),
            prefix,
            next: AtomicU64::new(1),
            routes: DashMap::new(),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(dispatch(Arc::downgrade(&mux), sub));
        Ok(mux)
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A new request's entry; `cancel` is the subject that stops it if its reader is slow.
    pub(crate) fn register(self: &Arc<Self>, cancel: Option<String>) -> Entry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            queue: Mutex::default(),
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
            last_taken_us: AtomicU64::new(NOT_READING),
            cancel,
        });
        if self.closed.load(Ordering::Acquire) {
            slot.close();
        }
        self.routes.insert(id, slot.clone());
        Entry { mux: self.clone(), id, slot, subject: format!("{}{id}", self.prefix) }
    }
}

/// Route every reply to its request until the subscription ends (or the mux is gone), then
/// close every open request. A request found too slow is cancelled here.
async fn dispatch(mux: Weak<Mux>, mut sub: Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(mux) = mux.upgrade() else { return };
        let id = msg.subject.as_str().rsplit('.').next().and_then(|t| t.parse::<u64>().ok());
        let Some(slot) = id.and_then(|id| mux.routes.get(&id).map(|s| s.value().clone())) else {
            tracing::debug!(subject = %msg.subject, "reply for a request no longer waiting");
            continue;
        };
        if slot.push(msg, mux.slow, mux.now_us()) {
            tracing::info!(cancel = ?slot.cancel, "replies unread for too long; cancelling");
            if let Some(cancel) = &slot.cancel {
                if let Err(e) = mux.client.publish(cancel.clone(), bytes::Bytes::new()).await {
                    tracing::debug!(error = %e, "cancel publish failed");
                }
            }
        }
    }
    if let Some(mux) = mux.upgrade() {
        mux.closed.store(true, Ordering::Release);
        for r in mux.routes.iter() {
            r.value().close();
        }
    }
}
