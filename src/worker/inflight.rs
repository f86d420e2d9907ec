//! The in-flight registry: trace id → cancellation handle. A cancel on
//! `llm.cancel.<trace_id>` fires the handle; a second request with a trace id already in
//! flight is refused.

use dashmap::{mapref::entry::Entry, DashMap};
use tokio_util::sync::CancellationToken;

/// Requests being worked on by this worker.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Trace id → the handle that stops its work.
    map: DashMap<String, CancellationToken>,
}

/// Removes its entry from the registry when dropped.
pub struct InFlightGuard<'a> {
    /// The registry to remove from.
    registry: &'a InFlight,
    /// The key to remove.
    trace_id: String,
    /// Fires when the request is cancelled.
    pub token: CancellationToken,
}

impl InFlight {
    /// Register a trace id; `None` when it is already in flight here.
    pub fn register(&self, trace_id: &str) -> Option<InFlightGuard<'_>> {
        match self.map.entry(trace_id.to_owned()) {
            Entry::Occupied(_) => None,
            Entry::Vacant(v) => {
                let token = CancellationToken::new();
                v.insert(token.clone());
                Some(InFlightGuard { registry: self, trace_id: trace_id.to_owned(), token })
            }
        }
    }

    /// Cancel a trace id if it is in flight here; returns whether it was.
    pub fn cancel(&self, trace_id: &str) -> bool {
        match self.map.get(trace_id) {
            Some(token) => {
                token.cancel();
                tracing::debug!(trace_id, "cancelled");
                true
            }
            None => false,
        }
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.registry.map.remove(&self.trace_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_cancel_and_release() {
        let reg = InFlight::default();
        let guard = reg.register("t1").unwrap();
        assert!(reg.register("t1").is_none(), "duplicate refused");
        assert!(reg.cancel("t1"));
        assert!(guard.token.is_cancelled());
        assert!(!reg.cancel("other"));
        drop(guard);
        assert!(reg.is_empty());
        assert!(reg.register("t1").is_some());
    }
}
