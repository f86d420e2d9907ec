//! Users and their roles (NEW-API's common 1, admin 10, root 100) in the `USERS` KV bucket.
//! A user's name is the id its quota and ledger are keyed by (`llm.usage.<name>`); the
//! number NEW-API clients send as `New-Api-User` is kept beside it. Keys:
//!
//! - `u.<name>`: the [`UserRecord`];
//! - `id.<n>`: the name of user number `n`;
//! - `access.<sha256 of the access token>`: the name of its user (NEW-API's access token,
//!   `GET /api/user/token`, which authorises the management API; the plain token is shown
//!   once and never stored);
//! - `seq`: the last number given out (compare-and-set).
//!
//! A user with a quota account but no record (made by `ailurus quota set` or the demo of
//! `ailurus up`) is a common user.

use super::tokens::ProofKey;
use crate::bus::subjects::Token;
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The KV bucket name.
pub const BUCKET: &str = "USERS";

/// Bound on one bucket operation.
const TIMEOUT: Duration = Duration::from_secs(5);

/// NEW-API's role numbers.
pub mod role {
    /// A common user: its own account, tokens, logs.
    pub const COMMON: i64 = 1;
    /// An admin: every user below admin, tokens, logs, channels, redemption codes.
    pub const ADMIN: i64 = 10;
    /// The root user: everything, including admins.
    pub const ROOT: i64 = 100;

    /// Whether `r` is one of the three roles.
    pub fn valid(r: i64) -> bool {
        matches!(r, COMMON | ADMIN | ROOT)
    }
}

/// A user's access token as stored: its sha256 and its proof key (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// sha256 of the token (hex): the `Ailurus-Token-Id` its proofs carry.
    pub hash: String,
    /// The key its proofs are checked with.
    pub proof_key: ProofKey,
}

/// What `USERS` stores for a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// NEW-API's numeric id (`New-Api-User`).
    pub id: i64,
    /// The name quota, tokens and the ledger are keyed by.
    pub username: String,
    /// Shown name.
    #[serde(default)]
    pub display_name: String,
    /// 1, 10 or 100 (see [`role`]).
    pub role: i64,
    /// 1 enabled, 2 disabled (a disabled user's API calls are refused).
    pub status: i64,
    /// E-mail, informational.
    #[serde(default)]
    pub email: String,
    /// RFC 3339.
    pub created_at: String,
    /// The current access token, if one was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessKey>,
}

/// The user directory.
#[derive(Clone)]
pub struct UserStore {
    kv: kv::Store,
}

/// The key of a user's record.
fn record_key(name: &str) -> String {
    format!("u.{name}")
}

fn kv_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{BUCKET} {what}: {e}")
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    super::within(what, TIMEOUT, f).await
}

impl UserStore {
    /// Open the bucket (created by `ailurus streams apply`).
    pub async fn open(js: &jetstream::Context) -> Result<Self, String> {
        let kv = bounded("open", js.get_key_value(BUCKET))
            .await
            .map_err(|e| format!("{e} (run `ailurus streams apply`)"))?;
        Ok(Self { kv })
    }

    async fn get_raw(&self, key: &str) -> Result<Option<(bytes::Bytes, u64)>, String> {
        let entry = bounded("read", self.kv.entry(key)).await?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put).map(|e| (e.value, e.revision)))
    }

    /// The record of `username` and its revision.
    pub async fn get_rev(&self, username: &str) -> Result<Option<(UserRecord, u64)>, String> {
        if Token::new("username", username).is_err() {
            return Ok(None);
        }
        match self.get_raw(&record_key(username)).await? {
            Some((v, rev)) => {
                serde_json::from_slice(&v).map(|r| Some((r, rev))).map_err(|e| kv_err("record unreadable", e))
            }
            None => Ok(None),
        }
    }

    /// The record of `username`.
    pub async fn get(&self, username: &str) -> Result<Option<UserRecord>, String> {
        Ok(self.get_rev(username).await?.map(|(r, _)| r))
    }

    /// The record of user number `id`.
    pub async fn by_id(&self, id: i64) -> Result<Option<UserRecord>, String> {
        match self.get_raw(&format!("id.{id}")).await? {
            Some((name, _)) => self.get(&String::from_utf8_lossy(&name)).await,
            None => Ok(None),
        }
    }

    /// The user whose access token has sha256 `hash` (the record must still name it).
    pub async fn by_access(&self, hash: &str) -> Result<Option<UserRecord>, String> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match self.get_raw(&format!("access.{hash}")).await? {
            Some((name, _)) => Ok(self
                .get(&String::from_utf8_lossy(&name))
                .await?
                .filter(|r| r.access.as_ref().is_some_and(|a| a.hash == hash))),
            None => Ok(None),
        }
    }

    /// Every user record, by id.
    pub async fn list(&self) -> Result<Vec<UserRecord>, String> {
        let mut keys = bounded("list", self.kv.keys()).await?;
        let mut names = Vec::new();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while let Some(k) =
            tokio::time::timeout_at(deadline, keys.next()).await.map_err(|_| kv_err("list", "timed out"))?
        {
            if let Some(name) = k.map_err(|e| kv_err("list", e))?.strip_prefix("u.") {
                names.push(name.to_string());
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(r) = self.get(&n).await? {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// The next user number (compare-and-set on `seq`).
    async fn next_id(&self) -> Result<i64, String> {
        for _ in 0..20 {
            let (last, rev) = match self.get_raw("seq").await? {
                Some((v, rev)) => (String::from_utf8_lossy(&v).parse::<i64>().unwrap_or(0), Some(rev)),
                None => (0, None),
            };
            let next = (last + 1).to_string();
            let res = match rev {
                Some(rev) => bounded("seq", self.kv.update("seq", next.clone().into(), rev)).await.map(|_| ()),
                None => bounded("seq", self.kv.create("seq", next.clone().into())).await.map(|_| ()),
            };
            if res.is_ok() {
                return Ok(last + 1);
            }
        }
        Err(kv_err("seq", "too much contention"))
    }

    /// Create a user; `Err` when the name is taken or invalid.
    pub async fn create(&self, username: &str, role: i64, display_name: &str) -> Result<UserRecord, String> {
        Token::new("username", username).map_err(|e| e.to_string())?;
        if !role::valid(role) {
            return Err(format!("role {role} is not 1 (common), 10 (admin) or 100 (root)"));
        }
        if self.get(username).await?.is_some() {
            return Err(format!("user {username:?} exists"));
        }
        let rec = UserRecord {
            id: self.next_id().await?,
            username: username.into(),
            display_name: if display_name.is_empty() { username.into() } else { display_name.into() },
            role,
            status: 1,
            email: String::new(),
            created_at: crate::clock::now_rfc3339(),
            access: None,
        };
        let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        bounded("create", self.kv.create(record_key(username), body.into()))
            .await
            .map_err(|_| format!("user {username:?} exists"))?;
        bounded("index", self.kv.put(format!("id.{}", rec.id), username.to_string().into())).await?;
        Ok(rec)
    }

    /// Write `rec` if the stored record is still at `revision`.
    pub async fn update(&self, rec: &UserRecord, revision: u64) -> Result<(), String> {
        let body = serde_json::to_vec(rec).map_err(|e| e.to_string())?;
        bounded("update", self.kv.update(record_key(&rec.username), body.into(), revision))
            .await
            .map(|_| ())
            .map_err(|_| format!("user {:?} changed meanwhile; try again", rec.username))
    }

    /// Delete a user's record, its number and its access token (its quota and ledger stay).
    pub async fn delete(&self, rec: &UserRecord) -> Result<(), String> {
        if let Some(a) = &rec.access {
            bounded("delete", self.kv.delete(format!("access.{}", a.hash))).await?;
        }
        bounded("delete", self.kv.delete(format!("id.{}", rec.id))).await?;
        bounded("delete", self.kv.delete(record_key(&rec.username))).await
    }

    /// Give `username` a new access token (the old one stops working); returns it, the
    /// only time it is seen.
    pub async fn new_access_token(&self, username: &str) -> Result<String, String> {
        let (mut rec, rev) = self.get_rev(username).await?.ok_or_else(|| format!("no user {username:?}"))?;
        let token = super::tokens::generate()?.replacen("sk-ail-", "", 1);
        let key = AccessKey { hash: crate::credential::hash(&token), proof_key: ProofKey::of(&token) };
        bounded("index", self.kv.put(format!("access.{}", key.hash), username.to_string().into())).await?;
        let old = rec.access.replace(key);
        self.update(&rec, rev).await?;
        if let Some(old) = old {
            bounded("delete", self.kv.delete(format!("access.{}", old.hash))).await?;
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_debug_hide_the_key() {
        assert!(role::valid(1) && role::valid(10) && role::valid(100) && !role::valid(5));
        let k = AccessKey { hash: "a".repeat(64), proof_key: ProofKey::of("secret") };
        assert!(!format!("{k:?}").contains(&crate::credential::proof_key("secret")));
    }
}
