//! The router's set of channels: what one moment's routing reads ([`ChannelSet`]), how a
//! channel is built from its config, when two configs are the same channel (whose provider and
//! health a swap keeps), and which channels serve a request.

use super::{Channel, MockScope};
use crate::channel::ChannelConfig;
use crate::providers::{http::HttpProvider, mock::MockProvider, Provider, ProviderKind};
use std::sync::Arc;

/// The channels a router serves at one moment, and what its built-in mock serves.
#[derive(Debug)]
pub struct ChannelSet {
    /// Every channel, config order.
    pub channels: Vec<Arc<Channel>>,
    /// What the built-in mock serves.
    pub scope: MockScope,
}

/// Build one channel (its provider reads keys from the environment or the handed-over key).
pub fn build_channel(c: &ChannelConfig) -> Result<Channel, String> {
    let kind = c.provider_kind().map_err(|e| format!("channel {}: {e}", c.name))?;
    let provider = match kind {
        ProviderKind::Mock => Provider::Mock(MockProvider::default()),
        _ => Provider::Http(HttpProvider::new(kind, c).map_err(|e| format!("channel {}: {e}", c.name))?),
    };
    Ok(Channel::new(c.clone(), kind, provider))
}

/// Whether two channel configs are the same channel (then its provider and health are kept).
pub(super) fn same(a: &ChannelConfig, b: &ChannelConfig) -> bool {
    a.key == b.key
        && a.origin == b.origin
        && a.revision == b.revision
        && serde_json::to_value(a).ok().is_some_and(|v| serde_json::to_value(b).ok() == Some(v))
}

/// The enabled channels of `channels` that serve `model` on `platform` inside `group` (any
/// when empty).
pub(super) fn serving<'a>(
    channels: &'a [Arc<Channel>],
    model: &'a str,
    platform: &'a str,
    group: &'a [String],
) -> impl Iterator<Item = &'a Arc<Channel>> {
    channels
        .iter()
        .filter(move |c| c.config.enabled && c.config.serves(model) && c.config.serves_platform(platform))
        .filter(move |c| group.is_empty() || group.iter().any(|p| crate::wildcard::matches(p, &c.config.name)))
}
