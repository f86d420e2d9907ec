//! What every request handler of the bridge shares.

use super::config::BridgeConfig;
use crate::client::Requester;

/// What every request handler shares.
pub(super) struct AppState {
    /// Sends requests over NATS.
    pub(super) requester: Requester,
    /// The NATS connection (health, cancels).
    pub(super) client: async_nats::Client,
    /// Settings.
    pub(super) config: BridgeConfig,
    /// Counters.
    pub(super) metrics: crate::metrics::Metrics,
}
