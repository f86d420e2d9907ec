//! Reading and changing the live configuration. Every change is a compare-and-set on the
//! record's revision (two admins editing at once: one wins, the other is told to retry),
//! then an event on `ailurus.config.<kind>` (who, what, before → after as
//! [`ChannelRecord::view`] shows them: never a key) that `CONFIG_EVENTS` keeps forever.

use super::{price_key, ChannelRecord, GroupRecord, PriceRecord, CHANNELS, GROUPS, PRICES};
use crate::bus::subjects::{self, Token};
use crate::channel::{ChannelConfig, Secret};
use crate::pricing::PriceEntry;
use crate::seal::SealKey;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Bound on each request to the server.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// One change of the live configuration, as published and kept in `CONFIG_EVENTS`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigEvent {
    /// When, RFC 3339.
    pub at: String,
    /// Who (`cli:<user>`, `user:<id>`).
    pub actor: String,
    /// `channel`, `price` or `group`.
    pub kind: String,
    /// `create`, `update`, `enable`, `disable`, `delete`, `set`.
    pub op: String,
    /// The channel name, model pattern or group.
    pub name: String,
    /// The public form before (none when created).
    pub before: Option<Value>,
    /// The public form after (none when deleted).
    pub after: Option<Value>,
    /// Whether a channel's API key changed (its value is never here).
    #[serde(default)]
    pub key_changed: bool,
}

/// What a channel change does to its API key.
#[derive(Debug, Clone)]
pub enum KeyChange {
    /// Keep the stored one (or none).
    Keep,
    /// Seal and store this one.
    Set(Secret),
    /// Remove it.
    Clear,
}

/// The three buckets and where events go.
#[derive(Clone)]
pub struct LiveStore {
    /// JetStream, for events.
    js: jetstream::Context,
    /// `CHANNELS`.
    channels: kv::Store,
    /// `PRICES`.
    prices: kv::Store,
    /// `GROUPS`.
    groups: kv::Store,
    /// Seals new keys (none: a key cannot be set).
    seal: Option<SealKey>,
    /// Who makes the changes.
    actor: String,
}

/// `fut` within [`OP_TIMEOUT`], its error as text after `what`.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{what}: timed out after {OP_TIMEOUT:?}"))?
        .map_err(|e| format!("{what}: {e}"))
}

impl LiveStore {
    /// Open the buckets (created by `ailurus streams apply`); changes are made as `actor`.
    pub async fn open(js: jetstream::Context, seal: Option<SealKey>, actor: &str) -> Result<Self, String> {
        let open = |b: &'static str| {
            let js = js.clone();
            async move { bounded(&format!("KV bucket {b} (run `ailurus streams apply`)"), js.get_key_value(b)).await }
        };
        Ok(Self {
            channels: open(CHANNELS).await?,
            prices: open(PRICES).await?,
            groups: open(GROUPS).await?,
            js,
            seal,
            actor: actor.to_string(),
        })
    }

    /// The same store, making changes as `actor`.
    pub fn as_actor(&self, actor: &str) -> Self {
        Self { actor: actor.to_string(), ..self.clone() }
    }

    /// Every (key, revision, value) of a bucket, by key.
    async fn all<T: serde::de::DeserializeOwned>(
        kv: &kv::Store,
        bucket: &str,
    ) -> Result<Vec<(String, u64, T)>, String> {
        let mut keys: Vec<String> = Vec::new();
        let mut stream = bounded(&format!("keys of {bucket}"), kv.keys()).await?;
        loop {
            match tokio::time::timeout(OP_TIMEOUT, stream.next()).await {
                Ok(Some(Ok(k))) => keys.push(k),
                Ok(Some(Err(e))) => return Err(format!("keys of {bucket}: {e}")),
                Ok(None) => break,
                Err(_) => return Err(format!("keys of {bucket}: timed out")),
            }
        }
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some((rev, v)) = Self::one(kv, bucket, &k).await? {
                out.push((k, rev, v));
            }
        }
        Ok(out)
    }

    /// The (revision, value) of one key, none when missing or deleted.
    async fn one<T: serde::de::DeserializeOwned>(
        kv: &kv::Store,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(u64, T)>, String> {
        let entry = bounded(&format!("read {bucket}"), kv.entry(key)).await?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => serde_json::from_slice(&e.value)
                .map(|v| Some((e.revision, v)))
                .map_err(|err| format!("{bucket} record {key}: {err}")),
            _ => Ok(None),
        }
    }

    /// Write `value` at `key`: create when `revision` is none, else only over that revision.
    async fn write<T: Serialize>(
        kv: &kv::Store,
        bucket: &str,
        key: &str,
        revision: Option<u64>,
        value: &T,
    ) -> Result<u64, String> {
        let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        let res = match revision {
            None => tokio::time::timeout(OP_TIMEOUT, kv.create(key, body.into()))
                .await
                .map(|r| r.map_err(|e| e.to_string())),
            Some(rev) => tokio::time::timeout(OP_TIMEOUT, kv.update(key, body.into(), rev))
                .await
                .map(|r| r.map_err(|e| e.to_string())),
        };
        match res {
            Err(_) => Err(format!("write {bucket}: timed out after {OP_TIMEOUT:?}")),
            Ok(Ok(rev)) => Ok(rev),
            Ok(Err(e)) if e.to_lowercase().contains("wrong last sequence") || e.to_lowercase().contains("exist") => {
                Err(match revision {
                    None => format!("{key} already exists in {bucket}"),
                    Some(_) => format!("{key} was changed meanwhile in {bucket}; read it again and retry"),
                })
            }
            Ok(Err(e)) => Err(format!("write {bucket}: {e}")),
        }
    }

    /// Publish `event` and wait for `CONFIG_EVENTS` to keep it.
    async fn record(&self, event: ConfigEvent) -> Result<(), String> {
        let kind = Token::new("kind", &event.kind).map_err(|e| e.to_string())?;
        let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        let ack = bounded("publish config event", self.js.publish(subjects::config_event(&kind), body.into())).await?;
        bounded("config event kept", std::future::IntoFuture::into_future(ack)).await.map(|_| ())
    }

    /// An event of this store's actor, now.
    fn event(&self, kind: &str, op: &str, name: &str, before: Option<Value>, after: Option<Value>) -> ConfigEvent {
        ConfigEvent {
            at: crate::clock::now_rfc3339(),
            actor: self.actor.clone(),
            kind: kind.into(),
            op: op.into(),
            name: name.into(),
            before,
            after,
            key_changed: false,
        }
    }

    /// Every channel record with its revision, by name.
    pub async fn channels(&self) -> Result<Vec<(u64, ChannelRecord)>, String> {
        Ok(Self::all(&self.channels, CHANNELS).await?.into_iter().map(|(_, rev, r)| (rev, r)).collect())
    }

    /// One channel record with its revision.
    pub async fn channel(&self, name: &str) -> Result<Option<(u64, ChannelRecord)>, String> {
        Self::one(&self.channels, CHANNELS, name).await
    }

    /// Store `channel` (validated) as a change `op` of `before` (none: a new channel), its key
    /// changed by `key`. Returns the stored record.
    pub async fn save_channel(
        &self,
        op: &str,
        before: Option<&(u64, ChannelRecord)>,
        channel: ChannelConfig,
        key: KeyChange,
    ) -> Result<ChannelRecord, String> {
        let name = channel.name.clone();
        Token::new("name", &name).map_err(|_| "name must be 1 to 128 of A-Z a-z 0-9 _ -".to_string())?;
        let (sealed_key, key_mask, key_changed) = match (&key, before) {
            (KeyChange::Keep, Some((_, b))) => (b.sealed_key.clone(), b.key_mask.clone(), false),
            (KeyChange::Keep, None) | (KeyChange::Clear, None) => (None, None, false),
            (KeyChange::Clear, Some((_, b))) => (None, None, b.sealed_key.is_some()),
            (KeyChange::Set(k), _) => {
                let seal = self.seal.as_ref().ok_or_else(|| {
                    format!(
                        "no secret key to seal the API key with: set {} or run `ailurus up` once (it makes {}/{})",
                        crate::seal::KEY_ENV,
                        crate::seal::DEFAULT_DATA_DIR,
                        crate::seal::KEY_FILE
                    )
                })?;
                (Some(seal.seal(k.expose(), &name)?), Some(crate::seal::mask(k.expose())), true)
            }
        };
        // Validate as a worker will build it: the key (if any) stands in for api_key_env.
        let mut check = channel.clone();
        if sealed_key.is_some() {
            check.key = Some(Secret::new("sealed"));
        }
        check.validate().map_err(|e| format!("channel {name}: {e}"))?;
        let rec = ChannelRecord {
            channel,
            sealed_key,
            key_mask,
            updated_by: self.actor.clone(),
            updated_at: crate::clock::now_rfc3339(),
        };
        Self::write(&self.channels, CHANNELS, &name, before.map(|b| b.0), &rec).await?;
        let mut ev = self.event("channel", op, &name, before.map(|b| b.1.view()), Some(rec.view()));
        ev.key_changed = key_changed;
        self.record(ev).await?;
        Ok(rec)
    }

    /// Change the bucket's record of `name` with `edit` (compare-and-set on its revision), or
    /// create the bucket's copy of the config file's channel `from_file` (which then wins over
    /// the file's). The event's op is `enable` / `disable` when that is what changed.
    pub async fn change(
        &self,
        name: &str,
        from_file: Option<ChannelConfig>,
        edit: impl FnOnce(&mut ChannelConfig) -> Result<KeyChange, String>,
    ) -> Result<ChannelRecord, String> {
        let before = self.channel(name).await?;
        let (mut c, file_key) = match (&before, from_file) {
            (Some((_, r)), _) => (r.channel.clone(), None),
            (None, Some(f)) => {
                let key = f.key.clone();
                (f, key)
            }
            (None, None) => return Err(format!("no channel {name} in the bucket or the config file")),
        };
        let was = c.enabled;
        let mut key = edit(&mut c)?;
        if c.name != name {
            return Err("a channel's name cannot change (delete it and add it again)".into());
        }
        // A file channel's handed-over key (CodeSwitch's app.json token) goes into the copy, sealed.
        if let (KeyChange::Keep, Some(k)) = (&key, file_key) {
            key = KeyChange::Set(k);
        }
        let op = match (was, c.enabled) {
            (false, true) => "enable",
            (true, false) => "disable",
            _ => "update",
        };
        self.save_channel(op, before.as_ref(), c, key).await
    }

    /// Delete a channel (only at the revision read, so a concurrent edit is not lost).
    pub async fn delete_channel(&self, name: &str) -> Result<ChannelRecord, String> {
        let (rev, rec) = self.channel(name).await?.ok_or_else(|| format!("no channel {name} in {CHANNELS}"))?;
        bounded("delete channel", self.channels.delete_expect_revision(name, Some(rev))).await?;
        self.record(self.event("channel", "delete", name, Some(rec.view()), None)).await?;
        Ok(rec)
    }

    /// Every price entry with its revision.
    pub async fn prices(&self) -> Result<Vec<(u64, PriceRecord)>, String> {
        Ok(Self::all(&self.prices, PRICES).await?.into_iter().map(|(_, rev, r)| (rev, r)).collect())
    }

    /// Set the price of a pattern (validated).
    pub async fn set_price(&self, entry: PriceEntry) -> Result<(), String> {
        entry.validate().map_err(|e| format!("price {}: {e}", entry.pattern))?;
        let key = price_key(&entry.pattern);
        let before = Self::one::<PriceRecord>(&self.prices, PRICES, &key).await?;
        let name = entry.pattern.clone();
        let rec = PriceRecord { entry, updated_by: self.actor.clone(), updated_at: crate::clock::now_rfc3339() };
        Self::write(&self.prices, PRICES, &key, before.as_ref().map(|b| b.0), &rec).await?;
        let view = |r: &PriceRecord| serde_json::to_value(&r.entry).unwrap_or(Value::Null);
        let op = if before.is_some() { "update" } else { "create" };
        self.record(self.event("price", op, &name, before.map(|b| view(&b.1)), Some(view(&rec)))).await
    }

    /// Remove the price of a pattern.
    pub async fn delete_price(&self, pattern: &str) -> Result<(), String> {
        let key = price_key(pattern);
        let (rev, rec) = Self::one::<PriceRecord>(&self.prices, PRICES, &key)
            .await?
            .ok_or_else(|| format!("no price for {pattern:?} in {PRICES}"))?;
        bounded("delete price", self.prices.delete_expect_revision(&key, Some(rev))).await?;
        let before = serde_json::to_value(&rec.entry).ok();
        self.record(self.event("price", "delete", pattern, before, None)).await
    }

    /// Every group ratio with its revision, as (revision, name, record).
    pub async fn groups(&self) -> Result<Vec<(u64, String, GroupRecord)>, String> {
        Ok(Self::all(&self.groups, GROUPS).await?.into_iter().map(|(k, rev, r)| (rev, k, r)).collect())
    }

    /// Set a group's price multiplier (non-negative).
    pub async fn set_group(&self, name: &str, ratio: f64) -> Result<(), String> {
        Token::new("group", name).map_err(|_| "group must be 1 to 128 of A-Z a-z 0-9 _ -".to_string())?;
        if !ratio.is_finite() || ratio < 0.0 {
            return Err(format!("group {name}: the ratio must be a non-negative number"));
        }
        let before = Self::one::<GroupRecord>(&self.groups, GROUPS, name).await?;
        let rec = GroupRecord { ratio, updated_by: self.actor.clone(), updated_at: crate::clock::now_rfc3339() };
        Self::write(&self.groups, GROUPS, name, before.as_ref().map(|b| b.0), &rec).await?;
        let op = if before.is_some() { "update" } else { "create" };
        let before = before.map(|b| serde_json::json!({ "ratio": b.1.ratio }));
        self.record(self.event("group", op, name, before, Some(serde_json::json!({ "ratio": ratio })))).await
    }
}
