//! Many requests' replies on one wildcard subscription (`<inbox>.*`), for long-lived
//! requesters such as the bridge: no SUB and UNSUB per request (two protocol messages and
//! two interest-graph changes in nats-server), and no per-request subscription channel
//! (async-nats allocates a 32-message block, about 6 KB, for each, which an idle stream
//! keeps). One dispatcher task routes each reply, by the last token of its subject, to the
//! queue of its request.

use async_nats::{Message, Subscriber};
use dashmap::DashMap;
use futures::task::AtomicWaker;
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

/// Replies one request may have waiting before it counts as stuck; the requester ends it
/// (as if its subscription closed) instead of queueing without bound.
const MAX_QUEUED: usize = 8192;

/// The shared reply subscription.
pub(crate) struct Mux {
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
#[derive(Default)]
pub(crate) struct Slot {
    /// Replies in arrival order.
    queue: Mutex<VecDeque<Message>>,
    /// The request's task, woken by a new reply.
    waker: AtomicWaker,
    /// No more replies will come (subscription ended, or too many unread).
    closed: AtomicBool,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, msg: Message) {
        {
            let mut q = self.lock();
            if q.len() >= MAX_QUEUED {
                tracing::warn!("{MAX_QUEUED} replies unread for one request; ending it");
                self.closed.store(true, Ordering::Release);
            } else {
                q.push_back(msg);
            }
        }
        self.waker.wake();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// The next reply; `None` once closed and drained.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.waker.register(cx.waker());
        if let Some(m) = self.lock().pop_front() {
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
    pub(crate) slot: Arc<Slot>,
    /// Its reply subject.
    pub(crate) subject: String,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.mux.routes.remove(&self.id);
    }
}

impl Mux {
    /// Subscribe to a fresh `<inbox>.*` and start the dispatcher.
    pub(crate) async fn start(client: &async_nats::Client) -> Result<Arc<Self>, String> {
        let prefix = format!("{}.", client.new_inbox());
        let sub = client.subscribe(format!("{prefix}*")).await.map_err(|e| e.to_string())?;
        let mux =
            Arc::new(Self { prefix, next: AtomicU64::new(1), routes: DashMap::new(), closed: AtomicBool::new(false) });
        tokio::spawn(dispatch(Arc::downgrade(&mux), sub));
        Ok(mux)
    }

    /// A new request's entry.
    pub(crate) fn register(self: &Arc<Self>) -> Entry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        if self.closed.load(Ordering::Acquire) {
            slot.close();
        }
        self.routes.insert(id, slot.clone());
        Entry { mux: self.clone(), id, slot, subject: format!("{}{id}", self.prefix) }
    }
}

/// Route every reply to its request until the subscription ends (or the mux is gone), then
/// close every open request.
async fn dispatch(mux: Weak<Mux>, mut sub: Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(mux) = mux.upgrade() else { return };
        let id = msg.subject.as_str().rsplit('.').next().and_then(|t| t.parse::<u64>().ok());
        let slot = id.and_then(|id| mux.routes.get(&id).map(|s| s.value().clone()));
        match slot {
            Some(slot) => slot.push(msg),
            None => tracing::debug!(subject = %msg.subject, "reply for a request no longer waiting"),
        }
    }
    if let Some(mux) = mux.upgrade() {
        mux.closed.store(true, Ordering::Release);
        for r in mux.routes.iter() {
            r.value().close();
        }
    }
}
