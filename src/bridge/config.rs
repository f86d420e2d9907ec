//! The bridge's settings (`[bridge]` in the config file).

use serde::Deserialize;

/// Bridge settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Address to listen on.
    #[serde(default = "BridgeConfig::default_listen")]
    pub listen: String,
    /// Largest request body accepted; larger gets 413.
    #[serde(default = "BridgeConfig::default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Wait for a worker's first reply before answering 503.
    #[serde(default = "BridgeConfig::default_first_reply_ms")]
    pub first_reply_ms: u64,
    /// Longest silence (no chunk, no heartbeat) before the worker is declared lost.
    #[serde(default = "BridgeConfig::default_silence_ms")]
    pub silence_ms: u64,
    /// Reply chunks buffered for a slow HTTP client.
    #[serde(default = "BridgeConfig::default_buffer_chunks")]
    pub buffer_chunks: usize,
    /// How long a full buffer may stay full before the request is cancelled.
    #[serde(default = "BridgeConfig::default_slow_client_ms")]
    pub slow_client_ms: u64,
    /// Longest wait for a request's headers, from the connection's first byte wait (and
    /// between requests on a kept-alive connection); slower clients are disconnected
    /// (slowloris).
    #[serde(default = "BridgeConfig::default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Longest time to receive a whole request body; slower gets 408.
    #[serde(default = "BridgeConfig::default_body_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// Most HTTP connections open at once; further ones wait in the listen backlog.
    #[serde(default = "BridgeConfig::default_max_connections")]
    pub max_connections: usize,
}

impl BridgeConfig {
    fn default_listen() -> String {
        "127.0.0.1:18100".into()
    }
    const fn default_max_body_bytes() -> usize {
        32 * 1024 * 1024
    }
    const fn default_first_reply_ms() -> u64 {
        1_000
    }
    const fn default_silence_ms() -> u64 {
        4_000
    }
    const fn default_buffer_chunks() -> usize {
        256
    }
    const fn default_slow_client_ms() -> u64 {
        30_000
    }
    const fn default_header_read_timeout_ms() -> u64 {
        10_000
    }
    const fn default_body_read_timeout_ms() -> u64 {
        60_000
    }
    const fn default_max_connections() -> usize {
        16_384
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            listen: Self::default_listen(),
            max_body_bytes: Self::default_max_body_bytes(),
            first_reply_ms: Self::default_first_reply_ms(),
            silence_ms: Self::default_silence_ms(),
            buffer_chunks: Self::default_buffer_chunks(),
            slow_client_ms: Self::default_slow_client_ms(),
            header_read_timeout_ms: Self::default_header_read_timeout_ms(),
            body_read_timeout_ms: Self::default_body_read_timeout_ms(),
            max_connections: Self::default_max_connections(),
        }
    }
}
