//! Prometheus metrics of the bridge and, with another prefix and label, of the worker:
//! requests and errors by route and status, request latency, and gateway overhead (time the
//! gateway adds to the upstream's own time).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

/// A cumulative histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Count per bucket (not cumulative; summed when rendered).
    counts: [u64; BUCKETS.len()],
    /// Observations over the largest bucket.
    over: u64,
    /// Sum of observations.
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        match BUCKETS.iter().position(|b| v <= *b) {
            Some(i) => self.counts[i] += 1,
            None => self.over += 1,
        }
        self.sum += v;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut acc = 0;
        for (b, c) in BUCKETS.iter().zip(self.counts) {
            acc += c;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {acc}");
        }
        let total = acc + self.over;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
    }
}

/// Everything the bridge counts.
#[derive(Debug, Default)]
struct Inner {
    /// (route, status) → requests.
    requests: BTreeMap<(&'static str, u16), u64>,
    /// route → latency.
    latency: BTreeMap<&'static str, Histogram>,
    /// route → gateway overhead.
    overhead: BTreeMap<&'static str, Histogram>,
    /// Answers billed above what their hold reserved (the upstream ignored the cap).
    overage_requests: u64,
    /// Quota units billed above the holds, in all.
    overage_units: u64,
}

/// Bridge (or worker) metrics; cheap to share.
#[derive(Debug)]
pub struct Metrics {
    /// Guarded state (a short critical section per request).
    inner: Mutex<Inner>,
    /// Metric name prefix: `ailurus_bridge` or `ailurus_worker`.
    prefix: &'static str,
    /// Label of the first dimension: `route` (bridge) or `platform` (worker).
    label: &'static str,
}

impl Default for Metrics {
    /// The bridge's metrics.
    fn default() -> Self {
        Self::new("ailurus_bridge", "route")
    }
}

impl Metrics {
    /// Metrics named `<prefix>_…`, keyed by `label` and status.
    pub fn new(prefix: &'static str, label: &'static str) -> Self {
        Self { inner: Mutex::default(), prefix, label }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One finished request. `overhead` is total time minus upstream time, when known.
    pub fn record(&self, route: &'static str, status: u16, seconds: f64, overhead: Option<f64>) {
        let mut m = self.lock();
        *m.requests.entry((route, status)).or_default() += 1;
        m.latency.entry(route).or_default().observe(seconds);
        if let Some(o) = overhead {
            m.overhead.entry(route).or_default().observe(o.max(0.0));
        }
    }

    /// One answer billed `units` above what its hold reserved.
    pub fn record_overage(&self, units: u64) {
        let mut m = self.lock();
        m.overage_requests += 1;
        m.overage_units += units;
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let m = self.lock();
        let (p, l) = (self.prefix, self.label);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP {p}_requests_total Requests by {l} and status.");
        let _ = writeln!(out, "# TYPE {p}_requests_total counter");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(out, "{p}_requests_total{{{l}=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP {p}_errors_total Requests answered with a status >= 400.");
        let _ = writeln!(out, "# TYPE {p}_errors_total counter");
        for ((route, status), n) in m.requests.iter().filter(|((_, s), _)| *s >= 400) {
            let _ = writeln!(out, "{p}_errors_total{{{l}=\"{route}\",status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP {p}_request_duration_seconds Time from request to the end of the response.");
        let _ = writeln!(out, "# TYPE {p}_request_duration_seconds histogram");
        for (route, h) in &m.latency {
            h.render(&mut out, &format!("{p}_request_duration_seconds"), &format!("{l}=\"{route}\""));
        }
        if m.overage_requests > 0 {
            let _ = writeln!(out, "# HELP {p}_billing_overage_total Answers billed above their reservation.");
            let _ = writeln!(out, "# TYPE {p}_billing_overage_total counter");
            let _ = writeln!(out, "{p}_billing_overage_total {}", m.overage_requests);
            let _ = writeln!(out, "# HELP {p}_billing_overage_units_total Quota units billed above reservations.");
            let _ = writeln!(out, "# TYPE {p}_billing_overage_units_total counter");
            let _ = writeln!(out, "{p}_billing_overage_units_total {}", m.overage_units);
        }
        out.push_str("# HELP gateway_overhead_seconds Time the gateway adds: total minus upstream time.\n");
        out.push_str("# TYPE gateway_overhead_seconds histogram\n");
        for (route, h) in &m.overhead {
            h.render(&mut out, "gateway_overhead_seconds", &format!("{l}=\"{route}\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.record("/v1/messages", 200, 0.002, Some(0.0004));
        m.record("/v1/messages", 503, 0.5, None);
        let text = m.render();
        assert!(text.contains("ailurus_bridge_requests_total{route=\"/v1/messages\",status=\"200\"} 1"));
        assert!(text.contains("ailurus_bridge_errors_total{route=\"/v1/messages\",status=\"503\"} 1"));
        assert!(text.contains("ailurus_bridge_request_duration_seconds_bucket{route=\"/v1/messages\",le=\"0.0025\"} 1"));
        assert!(text.contains("gateway_overhead_seconds_count{route=\"/v1/messages\"} 1"));
    }

    #[test]
    fn worker_metrics_have_their_own_names() {
        let m = Metrics::new("ailurus_worker", "platform");
        m.record("claude", 200, 0.002, Some(0.0003));
        let text = m.render();
        assert!(text.contains("ailurus_worker_requests_total{platform=\"claude\",status=\"200\"} 1"));
        assert!(text.contains("gateway_overhead_seconds_bucket{platform=\"claude\",le=\"0.0005\"} 1"));
        assert!(!text.contains("overage"));
        m.record_overage(70);
        m.record_overage(30);
        let text = m.render();
        assert!(text.contains("ailurus_worker_billing_overage_total 2"));
        assert!(text.contains("ailurus_worker_billing_overage_units_total 100"));
    }
}
