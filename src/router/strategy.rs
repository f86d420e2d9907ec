//! How channels of one priority tier are ordered: `weighted` (random by weight, the
//! default), `p2c_ewma` (power of two choices over in-flight requests × peak-EWMA time to
//! first byte) or `least_busy` (fewest requests in flight, this worker's and the others'
//! as they report them through `CHANNEL_HEALTH`, ties by weight).
//!
//! The load figures live in [`Load`], one per channel, updated by the pipeline (an
//! [`InFlight`] guard per attempt, one latency sample per success) and read without a lock
//! on the hot path except for the EWMA's small mutex.

use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a tier orders its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Weighted random order without replacement.
    #[default]
    Weighted,
    /// Power of two choices: of two channels drawn by weight, the one with the lower
    /// peak-EWMA time to first byte × (in flight + 1) goes first.
    P2cEwma,
    /// Fewest requests in flight first (cluster-wide as far as known), ties by weight.
    LeastBusy,
}

/// One tier's strategy (`[[routing.tiers]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The channels' `priority` this applies to.
    pub priority: i32,
    /// How that tier orders its channels.
    pub strategy: Strategy,
}

/// Peak EWMA of a latency: a sample above the estimate replaces it at once (a channel that
/// turns slow is avoided at once); below it, the estimate moves towards it with weight
/// `1 - e^(-Δt/τ)`. Reading decays it towards zero the same way (Finagle's peak EWMA), so a
/// channel nobody tries for a while gets tried again and earns its traffic back if it
/// recovered.
#[derive(Debug)]
struct Peak {
    /// Estimate, microseconds.
    value_us: f64,
    /// When it was last moved.
    at: Instant,
}

/// Load of one channel on this worker (and what the other workers report).
#[derive(Debug)]
pub struct Load {
    /// Attempts in flight on this worker.
    inflight: AtomicU64,
    /// Attempts in flight on the other workers, from their last `CHANNEL_HEALTH` reports.
    remote_inflight: AtomicU64,
    /// Peak EWMA of time to first byte.
    peak: Mutex<Peak>,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            inflight: AtomicU64::new(0),
            remote_inflight: AtomicU64::new(0),
            peak: Mutex::new(Peak { value_us: 0.0, at: Instant::now() }),
        }
    }
}

/// An attempt in flight; counted until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Load);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Load {
    /// Count an attempt until the guard drops.
    pub fn begin(&self) -> InFlight<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Attempts in flight on this worker.
    pub fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Attempts in flight on this worker and the others.
    pub fn total_inflight(&self) -> u64 {
        self.inflight() + self.remote_inflight.load(Ordering::Relaxed)
    }

    /// Set what the other workers report.
    pub fn set_remote_inflight(&self, n: u64) {
        self.remote_inflight.store(n, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Peak> {
        self.peak.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record one latency sample at `now`.
    pub fn observe(&self, sample: Duration, now: Instant, tau: Duration) {
        let s = sample.as_micros() as f64;
        let mut p = self.lock();
        if s > p.value_us {
            p.value_us = s;
        } else {
            let w = decay(now.saturating_duration_since(p.at), tau);
            p.value_us = p.value_us * w + s * (1.0 - w);
        }
        p.at = now;
    }

    /// The estimate at `now`, decayed towards zero since its last sample, microseconds.
    pub fn peak_us(&self, now: Instant, tau: Duration) -> f64 {
        let p = self.lock();
        p.value_us * decay(now.saturating_duration_since(p.at), tau)
    }

    /// The p2c cost at `now`: estimate × (in flight + 1). A channel without samples costs 0
    /// (tried first, which gives it a sample).
    fn cost(&self, now: Instant, tau: Duration) -> f64 {
        self.peak_us(now, tau) * (self.total_inflight() as f64 + 1.0)
    }
}

/// `e^(-elapsed/τ)`.
fn decay(elapsed: Duration, tau: Duration) -> f64 {
    let tau = tau.as_secs_f64().max(1e-3);
    (-elapsed.as_secs_f64() / tau).exp()
}

/// One channel as the ordering sees it.
pub trait Weighed {
    /// Its weight inside the tier.
    fn weight(&self) -> u64;
    /// Its load.
    fn load(&self) -> &Load;
}

/// Index of a weighted random pick among `items` (all weights at least 1).
fn weighted_pick<T: Weighed>(items: &[T]) -> usize {
    let total: u64 = items.iter().map(Weighed::weight).sum();
    let mut pick = fastrand::u64(0..total.max(1));
    items
        .iter()
        .position(|c| {
            let w = c.weight();
            if pick < w {
                true
            } else {
                pick -= w;
                false
            }
        })
        .unwrap_or(0)
}

/// Order one tier's channels by `strategy` (consumes `tier`, returns it ordered).
pub fn order<T: Weighed>(strategy: Strategy, mut tier: Vec<T>, now: Instant, tau: Duration) -> Vec<T> {
    let mut out = Vec::with_capacity(tier.len());
    match strategy {
        Strategy::Weighted => {
            while !tier.is_empty() {
                out.push(tier.remove(weighted_pick(&tier)));
            }
        }
        Strategy::P2cEwma => {
            while tier.len() > 1 {
                let a = weighted_pick(&tier);
                // The second choice is drawn from the others.
                let mut b = fastrand::usize(0..tier.len() - 1);
                if b >= a {
                    b += 1;
                }
                let (ca, cb) = (tier[a].load().cost(now, tau), tier[b].load().cost(now, tau));
                let first = if cb < ca { b } else { a };
                out.push(tier.remove(first));
            }
            out.append(&mut tier);
        }
        Strategy::LeastBusy => {
            // Shuffle by weight first so ties keep the weighted shares, then a stable sort.
            while !tier.is_empty() {
                out.push(tier.remove(weighted_pick(&tier)));
            }
            out.sort_by_key(|c| c.load().total_inflight());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ch(u64, Load);

    impl Weighed for &Ch {
        fn weight(&self) -> u64 {
            self.0
        }
        fn load(&self) -> &Load {
            &self.1
        }
    }

    const TAU: Duration = Duration::from_secs(10);

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let l = Load::default();
        let t0 = Instant::now();
        l.observe(Duration::from_millis(10), t0, TAU);
        l.observe(Duration::from_millis(500), t0 + Duration::from_millis(1), TAU);
        assert!((l.peak_us(t0 + Duration::from_millis(1), TAU) - 500_000.0).abs() < 1.0, "a peak is taken at once");
        // Ten τ later the estimate has all but vanished: the channel is worth a try again.
        assert!(l.peak_us(t0 + TAU * 10, TAU) < 50.0);
        // Fast samples pull it down over time.
        let mut t = t0 + Duration::from_secs(1);
        for _ in 0..20 {
            t += Duration::from_secs(2);
            l.observe(Duration::from_millis(10), t, TAU);
        }
        assert!(l.peak_us(t, TAU) < 20_000.0, "{}", l.peak_us(t, TAU));
    }

    #[test]
    fn least_busy_puts_the_idle_channel_first() {
        let (a, b) = (Ch(1, Load::default()), Ch(5, Load::default()));
        let _busy: Vec<_> = (0..3).map(|_| b.1.begin()).collect();
        a.1.set_remote_inflight(2);
        for _ in 0..50 {
            let o = order(Strategy::LeastBusy, vec![&a, &b], Instant::now(), TAU);
            assert_eq!(o[0].0, 1, "a (2 remote) before b (3 local)");
        }
        drop(_busy);
        assert_eq!(b.1.inflight(), 0);
    }
}
