//! Picks the provider that serves a model. Today the built-in mock serves every `mock*`
//! model; configured channels join here (priority tiers, weights, failover, cooldown).

use crate::providers::{mock::MockProvider, Provider};
use crate::wildcard;

/// One way to serve a request: a provider and the model name to send it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Name for logs, metrics and the ledger.
    pub channel: String,
    /// The upstream to call.
    pub provider: Provider,
    /// The model name the upstream receives.
    pub upstream_model: String,
}

/// Routes models to providers.
#[derive(Debug, Clone)]
pub struct Router {
    /// The built-in mock, shared by every mock request.
    mock: Provider,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// A router with the built-in mock.
    pub fn new() -> Self {
        Self { mock: Provider::Mock(MockProvider::default()) }
    }

    /// Candidates for a model, best first. Empty means no channel serves the model.
    pub fn candidates(&self, model: &str) -> Vec<Candidate> {
        if wildcard::matches("mock*", model) {
            vec![Candidate { channel: "mock".into(), provider: self.mock.clone(), upstream_model: model.to_string() }]
        } else {
            Vec::new()
        }
    }

    /// Model patterns served, for `/v1/models`.
    pub fn models(&self) -> Vec<String> {
        vec!["mock".into(), "mock-slow".into(), "mock-flaky".into(), "mock-error".into()]
    }
}
