//! Concurrency slots with a bounded, time-limited queue in front: a saturated worker answers
//! a fast 503 with `Retry-After` instead of queueing without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots for requests being served.
#[derive(Debug)]
pub struct Admission {
    /// One permit per request being served.
    slots: Arc<Semaphore>,
    /// Requests currently waiting for a permit.
    waiting: AtomicUsize,
    /// Most requests allowed to wait.
    max_waiting: usize,
    /// Longest wait for a permit.
    wait_limit: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The wait queue is full.
    QueueFull,
    /// Waited the whole limit without a slot.
    TimedOut,
}

impl Admission {
    /// `slots` concurrent requests, `max_waiting` more queued for up to `wait_limit`.
    pub fn new(slots: usize, max_waiting: usize, wait_limit: Duration) -> Self {
        Self { slots: Arc::new(Semaphore::new(slots)), waiting: AtomicUsize::new(0), max_waiting, wait_limit }
    }

    /// Take a slot, waiting a bounded time in a bounded queue.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, Rejected> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Rejected::QueueFull);
        }
        let res = tokio::time::timeout(self.wait_limit, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match res {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout if it ever is.
            Ok(Err(_)) | Err(_) => Err(Rejected::TimedOut),
        }
    }

    /// Free slots right now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_queue_then_fast_reject() {
        let adm = Admission::new(1, 1, Duration::from_millis(50));
        let held = adm.acquire().await.unwrap();
        // One may wait; it times out because the slot is never freed.
        assert_eq!(adm.acquire().await.unwrap_err(), Rejected::TimedOut);
        drop(held);
        assert!(adm.acquire().await.is_ok());
        let _held = adm.acquire().await.unwrap();
        let adm = Arc::new(adm);
        let waiter = {
            let adm = adm.clone();
            tokio::spawn(async move { adm.acquire().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // The queue (size 1) is taken by `waiter`: rejected at once.
        assert_eq!(adm.acquire().await.unwrap_err(), Rejected::QueueFull);
        assert_eq!(waiter.await.unwrap().unwrap_err(), Rejected::TimedOut);
    }
}
