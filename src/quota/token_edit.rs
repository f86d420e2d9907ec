//! Changes to a token record after its creation (the management API's `PUT` and `DELETE`
//! of `/api/token/`): compare-and-set on the record's revision, so an edit never undoes a
//! revocation that landed meanwhile, and a revoked or deleted token stays so.

use super::tokens::{TokenRecord, TokenStatus, TokenStore, BUCKET, LOOKUP_TIMEOUT};

impl TokenStore {
    /// Apply `change` to the record of `hash` and store it if nobody wrote it meanwhile
    /// (retried a few times); the record as stored. A revoked or deleted token cannot change.
    pub async fn modify(
        &self,
        hash: &str,
        change: impl Fn(&mut TokenRecord) -> Result<(), String>,
    ) -> Result<TokenRecord, String> {
        for _ in 0..5 {
            let entry = tokio::time::timeout(LOOKUP_TIMEOUT, self.kv.entry(hash))
                .await
                .map_err(|_| format!("reading {BUCKET} timed out"))?
                .map_err(|e| format!("reading {BUCKET}: {}", e.kind()))?
                .ok_or("no such token")?;
            let mut rec: TokenRecord =
                serde_json::from_slice(&entry.value).map_err(|_| "the token record is unreadable".to_string())?;
            if matches!(rec.status, TokenStatus::Revoked | TokenStatus::Deleted) {
                return Err(format!("token {} is {:?} and cannot change", rec.id, rec.status).to_lowercase());
            }
            change(&mut rec)?;
            let body = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
            match tokio::time::timeout(LOOKUP_TIMEOUT, self.kv.update(hash, body.into(), entry.revision)).await {
                Ok(Ok(_)) => return Ok(rec),
                Ok(Err(_)) => continue,
                Err(_) => return Err(format!("writing {BUCKET} timed out")),
            }
        }
        Err("the token changed too often meanwhile; try again".into())
    }
}
