//! Top-up codes (NEW-API's redemptions) in the `REDEMPTIONS` KV bucket, keyed by the code's
//! sha256 (`c.<hash>`): an admin makes them (each shown once), a user redeems one for quota.
//! Redeeming marks the code used with a compare-and-set before the quota is added, so of two
//! users racing on one code exactly one is credited.

use super::tokens::generate;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The KV bucket name.
pub const BUCKET: &str = "REDEMPTIONS";
/// Bound on one bucket operation.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Unused (1), disabled (2), used (3): NEW-API's numbers.
pub mod status {
    /// Can be redeemed.
    pub const UNUSED: i64 = 1;
    /// Switched off by an admin.
    pub const DISABLED: i64 = 2;
    /// Redeemed.
    pub const USED: i64 = 3;
}

/// What the bucket keeps of a code (never the code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redemption {
    /// Short id (the first 12 hex digits of the hash).
    pub id: String,
    /// A name for the batch.
    pub name: String,
    /// Quota units it grants.
    pub quota: i64,
    /// See [`status`].
    pub status: i64,
    /// Unix seconds.
    pub created_time: i64,
    /// Unix seconds; 0 until redeemed.
    #[serde(default)]
    pub redeemed_time: i64,
    /// Who redeemed it.
    #[serde(default)]
    pub used_user_id: String,
}

/// The code store.
#[derive(Clone)]
pub struct Redemptions {
    kv: kv::Store,
}

impl Redemptions {
    /// Open the bucket (created by `ailurus streams apply`).
    pub async fn open(js: &jetstream::Context) -> Result<Self, String> {
        let kv = super::within(BUCKET, TIMEOUT, js.get_key_value(BUCKET))
            .await
            .map_err(|e| format!("{e} (run `ailurus streams apply`)"))?;
        Ok(Self { kv })
    }

    /// Make `count` codes of `quota` units each; the codes, shown this once.
    pub async fn create(&self, name: &str, quota: i64, count: usize) -> Result<Vec<String>, String> {
        if quota <= 0 || count == 0 || count > 100 {
            return Err("quota must be positive and count between 1 and 100".into());
        }
        let mut codes = Vec::with_capacity(count);
        for _ in 0..count {
            let code = generate()?.replacen("sk-ail-", "", 1);
            let hash = crate::credential::hash(&code);
            let rec = Redemption {
                id: hash[..12].to_string(),
                name: name.to_string(),
                quota,
                status: status::UNUSED,
                created_time: crate::bus::proof::now_secs(),
                redeemed_time: 0,
                used_user_id: String::new(),
            };
            let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
            super::within("store code", TIMEOUT, self.kv.create(format!("c.{hash}"), body.into())).await?;
            codes.push(code);
        }
        Ok(codes)
    }

    /// Every code's record (hash, record), newest first.
    pub async fn list(&self) -> Result<Vec<(String, Redemption)>, String> {
        let mut keys = super::within("list codes", TIMEOUT, self.kv.keys()).await?;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut names = Vec::new();
        while let Some(k) = tokio::time::timeout_at(deadline, keys.next()).await.map_err(|_| "list codes timed out")? {
            names.push(k.map_err(|e| e.to_string())?);
        }
        for k in names {
            if let Some(v) = super::within("read code", TIMEOUT, self.kv.get(&k)).await? {
                if let Ok(r) = serde_json::from_slice::<Redemption>(&v) {
                    out.push((k.trim_start_matches("c.").to_string(), r));
                }
            }
        }
        out.sort_by(|a, b| (b.1.created_time, &b.1.id).cmp(&(a.1.created_time, &a.1.id)));
        Ok(out)
    }

    /// Change the record of `hash` with compare-and-set; the record as stored.
    pub async fn modify(
        &self,
        hash: &str,
        change: impl Fn(&mut Redemption) -> Result<(), String>,
    ) -> Result<Redemption, String> {
        let key = format!("c.{hash}");
        for _ in 0..5 {
            let entry = super::within("read code", TIMEOUT, self.kv.entry(&key)).await?.ok_or("no such code")?;
            let mut rec: Redemption = serde_json::from_slice(&entry.value).map_err(|_| "unreadable code record")?;
            change(&mut rec)?;
            let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
            if super::within("write code", TIMEOUT, self.kv.update(&key, body.into(), entry.revision)).await.is_ok() {
                return Ok(rec);
            }
        }
        Err("the code changed too often meanwhile; try again".into())
    }

    /// Mark `code` used by `user` (exactly once); the units it grants. The caller adds them.
    pub async fn redeem(&self, code: &str, user: &str) -> Result<Redemption, String> {
        let hash = crate::credential::hash(code.trim());
        self.modify(&hash, |r| {
            if r.status != status::UNUSED {
                return Err("this code has been used or disabled".into());
            }
            r.status = status::USED;
            r.used_user_id = user.to_string();
            r.redeemed_time = crate::bus::proof::now_secs();
            Ok(())
        })
        .await
        .map_err(|e| if e == "no such code" { "invalid redemption code".into() } else { e })
    }
}
