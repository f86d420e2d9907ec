//! The live configuration on a worker: the `CHANNELS`, `PRICES` and `GROUPS` buckets followed
//! with fail-closed copies (`kv_mirror`), merged with the config file's (`live::merge_*`: the
//! buckets win), and swapped into the router and the price table after every change, so an
//! edit reaches every worker in milliseconds, without a restart.
//!
//! Fail-closed: while the channel copy is not proven current (see `kv_mirror::MAX_STALE`), a
//! request uses a channel only after reading its record from the bucket and finding the
//! revision it was built from (a disabled, deleted or changed channel is skipped); when the
//! bucket does not answer, the request gets a 503. While the price or group copy is not
//! proven current, billed requests get a 503. Without the buckets (`streams apply` not run),
//! the worker serves the config file's channels and prices alone.

use super::{Pricing, WorkerCtx, WorkerError};
use crate::channel::ChannelConfig;
use crate::kv_mirror::{Mirror, Spec};
use crate::live::{self, ChannelRecord, GroupRecord, PriceRecord};
use crate::pricing::{PriceEntry, PriceTable};
use crate::seal::SealKey;
use crate::shutdown::Shutdown;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Bound on a request's own read of a channel record while the copy is not trusted.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// The followed buckets.
pub(crate) struct Live {
    /// `CHANNELS`.
    channels: Mirror<ChannelRecord>,
    /// `PRICES`.
    prices: Mirror<PriceRecord>,
    /// `GROUPS`.
    groups: Mirror<GroupRecord>,
    /// Opens (and, for the management API, seals) API keys.
    seal: Option<SealKey>,
    /// Changes made through the management API (`/api/channel/`), as the worker.
    store: live::store::LiveStore,
}

/// What the config file gives, which the buckets are merged over.
pub(crate) struct FileConfig {
    /// `[[channels]]` (and the seed's).
    pub channels: Vec<ChannelConfig>,
    /// `[[pricing.models]]`.
    pub prices: Vec<PriceEntry>,
    /// `[pricing.groups]`.
    pub groups: BTreeMap<String, f64>,
}

/// A mirror of `bucket` whose records are JSON `T`.
fn mirror<T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static>(
    kv: async_nats::jetstream::kv::Store,
    client: &async_nats::Client,
    bucket: &'static str,
) -> Mirror<T> {
    let spec =
        Spec { bucket, parse: |b| serde_json::from_slice::<T>(b).map_err(|e| e.to_string()), label: str::to_string };
    Mirror::new(kv, client.clone(), spec)
}

impl Live {
    /// Follow the buckets until `shutdown`, once their contents are loaded. `None` (the config
    /// file alone) when `CHANNELS` does not exist.
    pub(crate) async fn open(
        client: &async_nats::Client,
        seal: Option<SealKey>,
        shutdown: &Shutdown,
    ) -> Result<Option<Self>, WorkerError> {
        let js = async_nats::jetstream::new(client.clone());
        let get = |b: &'static str| {
            let js = js.clone();
            async move { tokio::time::timeout(Duration::from_secs(5), js.get_key_value(b)).await.ok()?.ok() }
        };
        let (Some(c), Some(p), Some(g)) = (get(live::CHANNELS).await, get(live::PRICES).await, get(live::GROUPS).await)
        else {
            tracing::info!("no CHANNELS / PRICES / GROUPS buckets (run `ailurus streams apply`): the config file's channels and prices only");
            return Ok(None);
        };
        let store = live::store::LiveStore::open(js.clone(), seal.clone(), "worker")
            .await
            .map_err(|e| WorkerError(format!("live configuration: {e}")))?;
        let this = Self {
            channels: mirror(c, client, live::CHANNELS),
            prices: mirror(p, client, live::PRICES),
            groups: mirror(g, client, live::GROUPS),
            seal,
            store,
        };
        for follow in [
            this.channels.follow(shutdown.clone()).await,
            this.prices.follow(shutdown.clone()).await,
            this.groups.follow(shutdown.clone()).await,
        ] {
            follow.map_err(|e| WorkerError(format!("live configuration: {e}")))?;
        }
        Ok(Some(this))
    }

    /// The store, making changes as `actor`.
    pub(crate) fn store(&self, actor: &str) -> live::store::LiveStore {
        self.store.as_actor(actor)
    }

    /// The key that opens sealed API keys, if this worker has one.
    pub(crate) fn seal(&self) -> Option<&SealKey> {
        self.seal.as_ref()
    }

    /// Whether the channel copy is current: trusted, or proven so now against the bucket (a
    /// failure to prove counts as not current: each channel is then confirmed on its own).
    pub(crate) async fn channels_current(&self) -> bool {
        self.channels.trusted() || matches!(self.channels.prove(CONFIRM_TIMEOUT).await, Ok(true))
    }

    /// Whether the price and group copies are current: trusted, or (a loaded worker's follower
    /// lagging behind its proofs) proven so now against the buckets. `Err` when they cannot
    /// be.
    pub(crate) async fn prices_current(&self) -> Result<bool, String> {
        let prices = self.prices.trusted() || self.prices.prove(CONFIRM_TIMEOUT).await?;
        Ok(prices && (self.groups.trusted() || self.groups.prove(CONFIRM_TIMEOUT).await?))
    }

    /// Whether `channel` is still what the bucket says, read from the bucket itself: a
    /// channel from the bucket at the same revision, or one from the file with no record.
    pub(crate) async fn confirm(&self, channel: &ChannelConfig) -> Result<bool, String> {
        let now = self.channels.read(&channel.name, CONFIRM_TIMEOUT).await?;
        Ok(match now {
            Some(c) => c.revision == channel.revision,
            None => channel.revision == 0,
        })
    }

    /// Rebuild the router's channels and the price table from the file and the copies.
    pub(crate) fn apply(&self, ctx: &WorkerCtx, file: &FileConfig) {
        let records: Vec<(u64, ChannelRecord)> =
            self.channels.entries().into_iter().map(|(_, c)| (c.revision, c.value)).collect();
        let merged = live::merge_channels(&file.channels, &records, self.seal.as_ref());
        for e in ctx.router.replace(&merged) {
            tracing::warn!(error = %e, "live channel left out");
        }
        let prices: Vec<PriceEntry> = self.prices.entries().into_iter().map(|(_, c)| c.value.entry).collect();
        let groups: Vec<(String, f64)> = self.groups.entries().into_iter().map(|(k, c)| (k, c.value.ratio)).collect();
        let table =
            PriceTable::new(&live::merge_prices(&file.prices, &prices), ctx.router.mock_scope().builtin_prices());
        ctx.set_pricing(Pricing { table, groups: live::merge_groups(&file.groups, &groups) });
    }

    /// Apply every change until `shutdown`.
    pub(crate) async fn keep_applying(ctx: Arc<WorkerCtx>, file: FileConfig, shutdown: Shutdown) {
        let Some(live) = ctx.live.as_ref() else { return };
        let (mut c, mut p, mut g) = (live.channels.changes(), live.prices.changes(), live.groups.changes());
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                r = c.changed() => if r.is_err() { return },
                r = p.changed() => if r.is_err() { return },
                r = g.changed() => if r.is_err() { return },
            }
            // Mark all seen before reading, so a change during the rebuild triggers another.
            c.borrow_and_update();
            p.borrow_and_update();
            g.borrow_and_update();
            live.apply(&ctx, &file);
        }
    }
}
