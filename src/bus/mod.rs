//! NATS itself: subject names ([`subjects`]), payload encodings ([`codec`]) and the
//! reply-protocol headers ([`headers`]). Nothing here knows about LLM wire formats.

pub mod codec;
pub mod headers;
pub mod subjects;

use std::time::Duration;

/// Connect to NATS with the options every Ailurus process uses: a name for monitoring,
/// retry on the first connect (so a worker can start before the server), bounded waits.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(Some(Duration::from_secs(10)))
        .connect(url)
        .await
}
