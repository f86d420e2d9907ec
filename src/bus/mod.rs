//! NATS itself: subject names ([`subjects`]), payload encodings ([`codec`]) and the
//! reply-protocol headers ([`headers`]). Nothing here knows about LLM wire formats.

pub mod codec;
pub mod headers;
pub mod subjects;

use std::time::Duration;

/// Longest pause between two reconnect attempts. A restarted nats-server is found again
/// within this (plus jitter) of listening, so workers and bridges serve again in about a
/// second without a process restart (the client library's default backs off to 4 s).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Pause before reconnect attempt `attempts` (1-based): 0, then 50 ms growing linearly to
/// [`MAX_RECONNECT_DELAY`], plus up to 100 ms of jitter so a fleet does not reconnect in
/// lock step.
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let base = Duration::from_millis(50).saturating_mul(attempts.min(100) as u32).min(MAX_RECONNECT_DELAY);
    base + Duration::from_millis(fastrand::u64(0..100))
}

fn options(name: &str) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(Some(Duration::from_secs(10)))
        // Reconnect for ever (the default) but never wait more than MAX_RECONNECT_DELAY.
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                async_nats::Event::Connected => tracing::info!("NATS connection (re-)established"),
                async_nats::Event::SlowConsumer(sid) => tracing::warn!(sid, "NATS slow consumer: messages dropped"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
}

/// Connect to NATS with the options every Ailurus process uses: a name for monitoring,
/// bounded waits, and fast automatic reconnects (subscriptions are re-established by the
/// client). Fails at once when no server answers, so a caller can tell (e.g. `ailurus up`
/// starting its own server).
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    options(name).connect(url).await
}

/// [`connect`] for long-running services (worker, bridge): also retries the first
/// connect in the background, so a service may start before its server.
pub async fn connect_service(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    options(name).retry_on_initial_connect().connect(url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_is_bounded() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        for n in 2..1000 {
            let d = reconnect_delay(n);
            assert!(d <= MAX_RECONNECT_DELAY + Duration::from_millis(100), "{n}: {d:?}");
        }
    }
}
