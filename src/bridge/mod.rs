//! The HTTP bridge: a route table plus byte copying. Each HTTP request becomes one NATS
//! message on `llm.request.<platform>` with the untouched body, a format tag, the
//! credentials' sha256 and the API headers; the replies are written back as they arrive.
//!
//! - `config.rs`: [`BridgeConfig`].
//! - `server.rs`: the listener and hyper's accept loop (header read timeout, connection cap,
//!   graceful shutdown).
//! - [`routes`]: method + path → platform, format tag, operation.
//! - `forward.rs`: one HTTP request → one NATS request (headers, credentials, limits), and
//!   the first reply → the HTTP answer.
//! - `body.rs`: the rest of an answer: a whole body, or an event stream read as the client
//!   takes it.
//! - `console.rs`: the web console's files, embedded, at `/` and `/console/…`.
//! - `response.rs`: JSON and error responses, the bridge's own failures.
//!
//! Invariant: the bridge never parses a request body, never calls a provider and never
//! touches KV. It knows a request's format only by its tag ([`crate::protocol::Format`]); the
//! error shapes of its own failures (no worker, body too large, a silent worker) come from
//! `Format::render_error` and `Format::continuation_error`.

mod body;
mod config;
mod console;
mod forward;
mod response;
pub mod routes;
mod server;
mod state;

use crate::client::Requester;
use crate::shutdown::Shutdown;
pub use config::BridgeConfig;
use state::AppState;
use std::sync::Arc;
use std::time::Duration;

/// Serve HTTP on `config.listen` until `shutdown`.
pub async fn run(client: async_nats::Client, config: BridgeConfig, shutdown: Shutdown) -> Result<(), String> {
    let listener =
        server::listen(&config.listen).await.map_err(|e| format!("bridge cannot listen on {}: {e}", config.listen))?;
    serve(listener, client, config, shutdown).await
}

/// Serve HTTP on a bound listener (tests bind port 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: async_nats::Client,
    config: BridgeConfig,
    shutdown: Shutdown,
) -> Result<(), String> {
    // One shared reply subscription for every request (no SUB/UNSUB per request).
    // A client that stops reading: cancelled once `buffer_chunks` replies wait unread for
    // `slow_client_ms`.
    let slow = crate::client::SlowReader {
        max_buffered: config.buffer_chunks.max(1),
        max_wait: Duration::from_millis(config.slow_client_ms),
    };
    let mut requester = Requester::multiplexed(client.clone(), Some(slow)).await.map_err(|e| e.to_string())?;
    requester.first_reply = Duration::from_millis(config.first_reply_ms);
    requester.silence = Duration::from_millis(config.silence_ms);
    let limits = server::Limits {
        header_read: Duration::from_millis(config.header_read_timeout_ms.max(1)),
        max_connections: config.max_connections.max(1),
    };
    let state = Arc::new(AppState { requester, client, config, metrics: crate::metrics::Metrics::default() });
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "bridge listening");
    let app = axum::Router::new().fallback(forward::handle).with_state(state);
    server::accept_loop(listener, app, limits, shutdown).await;
    Ok(())
}
