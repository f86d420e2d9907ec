//! Live configuration: channels, prices and group ratios in the KV buckets `CHANNELS`,
//! `PRICES` and `GROUPS`, which every worker follows (`worker/live.rs`, with the fail-closed
//! copy of `kv_mirror`), so a change reaches every worker without a restart.
//!
//! **Which wins.** The config file still works: its `[[channels]]`, `[[pricing.models]]` and
//! `[pricing.groups]` are the starting set of each worker that reads it. The buckets win over
//! the file: a bucket channel with a file channel's name replaces it (origin
//! `kv (over config)`; that is what `ailurus channels edit` of a config channel writes), bucket
//! prices are tried before the file's, a bucket group ratio replaces the file's. The file is
//! never written to the buckets behind the operator's back; `ailurus channels import` copies
//! its channels in once, on request.
//!
//! - [`store`]: reading and changing the buckets (compare-and-set), each change an event on
//!   `ailurus.config.<kind>`, kept in `CONFIG_EVENTS`.
//! - [`probe`]: one tiny request through one channel (`ailurus channels test`).
//!
//! An API key entered here is sealed (`seal.rs`) before it is stored, and only its mask is
//! ever shown: [`ChannelRecord::view`] is the one public form of a record.

pub mod probe;
pub mod store;

use crate::channel::{ChannelConfig, ChannelOrigin, Secret};
use crate::pricing::PriceEntry;
use crate::seal::SealKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The channels bucket: channel name → [`ChannelRecord`].
pub const CHANNELS: &str = "CHANNELS";
/// The prices bucket: [`price_key`] → [`PriceRecord`].
pub const PRICES: &str = "PRICES";
/// The group-ratio bucket: group name → [`GroupRecord`].
pub const GROUPS: &str = "GROUPS";

/// What `CHANNELS` stores for a channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRecord {
    /// The channel, as in the config file (a key is never in it).
    pub channel: ChannelConfig,
    /// The API key, sealed with the secret key and the channel's name (see `seal.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_key: Option<String>,
    /// How the key is shown (`sk-…wxyz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_mask: Option<String>,
    /// Who changed it last (`cli:<user>`, `user:<id>`).
    pub updated_by: String,
    /// When, RFC 3339.
    pub updated_at: String,
}

impl ChannelRecord {
    /// The public form: every field but the sealed key, with `key` the mask (or none).
    pub fn view(&self) -> Value {
        let mut v = serde_json::to_value(&self.channel).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            map.insert("key".into(), self.key_mask.clone().map_or(Value::Null, Value::String));
            map.insert("updated_by".into(), Value::String(self.updated_by.clone()));
            map.insert("updated_at".into(), Value::String(self.updated_at.clone()));
        }
        v
    }

    /// The channel as a router builds it: the key opened with `seal`, the origin set, the
    /// bucket revision noted. The error names the channel, never the key.
    pub fn to_config(&self, seal: Option<&SealKey>, over_config: bool, revision: u64) -> Result<ChannelConfig, String> {
        let mut c = self.channel.clone();
        c.origin = if over_config { ChannelOrigin::LiveOverConfig } else { ChannelOrigin::Live };
        c.revision = revision;
        if let Some(sealed) = &self.sealed_key {
            let key = seal.ok_or_else(|| {
                format!(
                    "channel {}: its key is sealed and this process has no secret key ({} or {})",
                    c.name,
                    crate::seal::KEY_ENV,
                    crate::seal::KEY_FILE_ENV
                )
            })?;
            c.key = Some(Secret::new(key.open(sealed, &c.name).map_err(|e| format!("channel {}: {e}", c.name))?));
        }
        Ok(c)
    }
}

/// What `PRICES` stores for a model pattern.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRecord {
    /// The price.
    pub entry: PriceEntry,
    /// Who changed it last.
    pub updated_by: String,
    /// When, RFC 3339.
    pub updated_at: String,
}

/// What `GROUPS` stores for a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRecord {
    /// The price multiplier.
    pub ratio: f64,
    /// Who changed it last.
    pub updated_by: String,
    /// When, RFC 3339.
    pub updated_at: String,
}

/// The `PRICES` key of a model pattern: `m` + the pattern's bytes in hex (a pattern's `*`
/// and `?` are not key characters).
pub fn price_key(pattern: &str) -> String {
    let mut out = String::from("m");
    for b in pattern.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// NEW-API's channel type numbers Ailurus serves, and its kind names.
pub const NEWAPI_TYPES: [(u32, &str); 3] = [(1, "openai"), (14, "anthropic"), (24, "gemini")];

/// A kind name from Ailurus's name or NEW-API's type number.
pub fn kind_name(given: &str) -> Result<String, String> {
    let g = given.trim();
    if let Ok(n) = g.parse::<u32>() {
        return NEWAPI_TYPES
            .iter()
            .find(|(t, _)| *t == n)
            .map(|(_, k)| k.to_string())
            .ok_or_else(|| format!("type {n} is not one Ailurus serves (1 openai, 14 anthropic, 24 gemini)"));
    }
    crate::providers::ProviderKind::parse(g)
        .map(|_| g.to_string())
        .ok_or_else(|| format!("kind {g:?} is not one of openai, openai_responses, anthropic, gemini, mock"))
}

/// The live set of channels: the file's, each replaced by the bucket's record of the same
/// name, then the bucket's others (by name). A record that cannot be opened (no secret key,
/// another key) is left out with a warning that names the channel only.
pub fn merge_channels(
    file: &[ChannelConfig],
    live: &[(u64, ChannelRecord)],
    seal: Option<&SealKey>,
) -> Vec<ChannelConfig> {
    let by_name: BTreeMap<&str, &(u64, ChannelRecord)> = live.iter().map(|r| (r.1.channel.name.as_str(), r)).collect();
    let mut out = Vec::with_capacity(file.len() + live.len());
    let add =
        |rec: &(u64, ChannelRecord), over: bool, out: &mut Vec<ChannelConfig>| match rec.1.to_config(seal, over, rec.0)
        {
            Ok(c) => out.push(c),
            Err(e) => tracing::warn!(error = %e, "live channel left out"),
        };
    for f in file {
        match by_name.get(f.name.as_str()) {
            Some(rec) => add(rec, true, &mut out),
            None => out.push(f.clone()),
        }
    }
    for rec in live {
        if !file.iter().any(|f| f.name == rec.1.channel.name) {
            add(rec, false, &mut out);
        }
    }
    out
}

/// The price entries: the bucket's, most specific first (patterns without wildcards, then
/// longer patterns first), then the file's in their order.
pub fn merge_prices(file: &[PriceEntry], live: &[PriceEntry]) -> Vec<PriceEntry> {
    let mut mine = live.to_vec();
    mine.sort_by(|a, b| {
        let wild = |p: &str| p.contains(['*', '?']);
        (wild(&a.pattern), std::cmp::Reverse(a.pattern.len()), &a.pattern).cmp(&(
            wild(&b.pattern),
            std::cmp::Reverse(b.pattern.len()),
            &b.pattern,
        ))
    });
    mine.extend(file.iter().cloned());
    mine
}

/// The group ratios: the file's, each replaced by the bucket's of the same name.
pub fn merge_groups(file: &BTreeMap<String, f64>, live: &[(String, f64)]) -> BTreeMap<String, f64> {
    let mut out = file.clone();
    out.extend(live.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, priority: i32) -> ChannelConfig {
        toml::from_str(&format!("name = \"{name}\"\nkind = \"mock\"\npriority = {priority}\n")).unwrap()
    }

    fn record(c: ChannelConfig) -> ChannelRecord {
        ChannelRecord { channel: c, sealed_key: None, key_mask: None, updated_by: "t".into(), updated_at: "t".into() }
    }

    #[test]
    fn the_bucket_wins_over_the_file() {
        let file = [channel("a", 1), channel("b", 1)];
        let live = [(7, record(channel("b", 9))), (8, record(channel("c", 2)))];
        let got = merge_channels(&file, &live, None);
        // (name, priority, origin, revision)
        let rows: Vec<_> = got.iter().map(|c| (c.name.as_str(), c.priority, c.origin.as_str(), c.revision)).collect();
        assert_eq!(rows, [("a", 1, "config", 0), ("b", 9, "kv (over config)", 7), ("c", 2, "kv", 8)]);
        let mut groups = BTreeMap::new();
        groups.insert("vip".to_string(), 0.5);
        groups.insert("svip".to_string(), 0.3);
        let g = merge_groups(&groups, &[("vip".into(), 0.8)]);
        assert_eq!((g["vip"], g["svip"]), (0.8, 0.3));
    }

    #[test]
    fn bucket_prices_come_first_most_specific_first() {
        let e = |p: &str| toml::from_str::<PriceEntry>(&format!("pattern = {p:?}\ninput = 1.0\noutput = 1.0")).unwrap();
        let got = merge_prices(&[e("gpt-4o")], &[e("gpt-*"), e("gpt-4o-*"), e("gpt-4o-mini")]);
        let names: Vec<_> = got.iter().map(|p| p.pattern.as_str()).collect();
        assert_eq!(names, ["gpt-4o-mini", "gpt-4o-*", "gpt-*", "gpt-4o"]);
        assert_eq!(price_key("gpt-*"), "m6770742d2a");
    }

    #[test]
    fn a_sealed_key_opens_only_with_the_secret_key_and_never_shows() {
        let seal = SealKey::generate().unwrap();
        let secret = "sk-live-abcdefghijklmnopqrstuvwxyz";
        let mut rec = record(channel("up", 1));
        rec.sealed_key = Some(seal.seal(secret, "up").unwrap());
        rec.key_mask = Some(crate::seal::mask(secret));
        let c = rec.to_config(Some(&seal), false, 3).unwrap();
        assert_eq!(c.key.as_ref().map(Secret::expose), Some(secret));
        let err = rec.to_config(None, false, 3).unwrap_err();
        assert!(err.contains("no secret key") && !err.contains(secret), "{err}");
        let shown = rec.view().to_string() + &serde_json::to_string(&rec).unwrap() + &format!("{c:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert_eq!(rec.view()["key"], "sk-…wxyz");
        assert!(merge_channels(&[], &[(1, rec)], None).is_empty(), "left out without the key");
    }
}
