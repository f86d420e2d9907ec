//! JetStream streams and KV buckets declared in `streams/*.json` (the JetStream API's own
//! stream-config JSON, as `nats stream add --config FILE` takes it). `apply` creates or
//! updates them idempotently: a stream whose declared fields already match is left alone.

use async_nats::jetstream::{self, stream::Config as StreamConfig, stream::StorageType};
use serde_json::Value;
use std::path::Path;

/// The declarations compiled into the binary, so `ailurus` works from any directory.
pub const EMBEDDED: [(&str, &str); 22] = [
    ("CHAT_MESSAGES.json", include_str!("../streams/CHAT_MESSAGES.json")),
    ("SESSION_STATUS.json", include_str!("../streams/SESSION_STATUS.json")),
    ("USER_EVENTS.json", include_str!("../streams/USER_EVENTS.json")),
    ("LLM_REQUESTS.json", include_str!("../streams/LLM_REQUESTS.json")),
    ("LLM_USAGE.json", include_str!("../streams/LLM_USAGE.json")),
    ("KV_TOKENS.json", include_str!("../streams/KV_TOKENS.json")),
    ("KV_QUOTA.json", include_str!("../streams/KV_QUOTA.json")),
    ("QUOTA_COUNTERS.json", include_str!("../streams/QUOTA_COUNTERS.json")),
    ("KV_CHANNEL_HEALTH.json", include_str!("../streams/KV_CHANNEL_HEALTH.json")),
    ("RATE_COUNTERS.json", include_str!("../streams/RATE_COUNTERS.json")),
    ("QUOTA_HOLDS.json", include_str!("../streams/QUOTA_HOLDS.json")),
    ("KV_WORKERS.json", include_str!("../streams/KV_WORKERS.json")),
    ("KV_REASONING.json", include_str!("../streams/KV_REASONING.json")),
    ("KV_PROOFS.json", include_str!("../streams/KV_PROOFS.json")),
    ("KV_ROUTE_AFFINITY.json", include_str!("../streams/KV_ROUTE_AFFINITY.json")),
    ("KV_USERS.json", include_str!("../streams/KV_USERS.json")),
    ("KV_CHANNELS.json", include_str!("../streams/KV_CHANNELS.json")),
    ("KV_PRICES.json", include_str!("../streams/KV_PRICES.json")),
    ("KV_GROUPS.json", include_str!("../streams/KV_GROUPS.json")),
    ("CONFIG_EVENTS.json", include_str!("../streams/CONFIG_EVENTS.json")),
    ("KV_REDEMPTIONS.json", include_str!("../streams/KV_REDEMPTIONS.json")),
    ("KV_USAGE_STATS.json", include_str!("../streams/KV_USAGE_STATS.json")),
];

/// What `apply` did to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist.
    Created,
    /// A declared field differed.
    Updated,
    /// Everything declared already matched.
    Unchanged,
    /// A memory stream declared on file now: storage cannot change in place, so the stream
    /// was deleted and created again. Only memory streams are, whose content a restart
    /// loses anyway (the audit trail of earlier versions, `LLM_REQUESTS`).
    Recreated,
}

/// A stream declaration: the parsed config plus the raw JSON, whose keys say which fields
/// were declared (the server fills in the rest, which must not count as drift).
#[derive(Debug, Clone)]
pub struct Declared {
    /// File name, for messages.
    pub file: String,
    /// The raw JSON.
    pub raw: Value,
    /// The typed config.
    pub config: StreamConfig,
}

/// A problem with a declaration or the server, naming the stream or file.
#[derive(Debug, Clone)]
pub struct StreamsError(pub String);

impl std::fmt::Display for StreamsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StreamsError {}

/// Parse one declaration.
pub fn parse(file: &str, text: &str) -> Result<Declared, StreamsError> {
    let raw: Value = serde_json::from_str(text).map_err(|e| StreamsError(format!("{file}: {e}")))?;
    let config: StreamConfig = serde_json::from_value(raw.clone()).map_err(|e| StreamsError(format!("{file}: {e}")))?;
    if config.name.is_empty() {
        return Err(StreamsError(format!("{file}: \"name\" is required")));
    }
    Ok(Declared { file: file.to_string(), raw, config })
}

/// The declarations from `dir` (every `*.json`, sorted), or the embedded ones.
pub fn load(dir: Option<&Path>) -> Result<Vec<Declared>, StreamsError> {
    let Some(dir) = dir else {
        return EMBEDDED.iter().map(|(f, t)| parse(f, t)).collect();
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| StreamsError(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| StreamsError(format!("{}: {e}", p.display())))?;
            parse(&p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), &text)
        })
        .collect()
}

/// Most replicas a JetStream stream may have.
pub const MAX_REPLICAS: usize = 5;

/// Give every declaration `replicas` copies (3 on a three-node cluster). The raw JSON
/// changes too, so `apply` compares against the new value: applying again is a no-op, and
/// applying with another count scales the streams (JetStream moves the data).
pub fn with_replicas(decls: &mut [Declared], replicas: usize) -> Result<(), StreamsError> {
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return Err(StreamsError(format!("replicas must be 1 to {MAX_REPLICAS}, not {replicas}")));
    }
    for d in decls {
        d.config.num_replicas = replicas;
        if let Value::Object(map) = &mut d.raw {
            map.insert("num_replicas".into(), Value::from(replicas));
        }
    }
    Ok(())
}

/// The stream holding the audit trail, whose retention the config sets.
pub const AUDIT_STREAM: &str = "LLM_REQUESTS";

/// Keep the audit trail (`LLM_REQUESTS`) `max_age_ns` nanoseconds and `max_bytes` bytes at
/// most (config `[audit]`); the raw JSON changes too, as for [`with_replicas`].
pub fn with_audit_retention(decls: &mut [Declared], max_age_ns: i64, max_bytes: u64) {
    for d in decls.iter_mut().filter(|d| d.config.name == AUDIT_STREAM) {
        d.config.max_age = std::time::Duration::from_nanos(max_age_ns.max(0) as u64);
        d.config.max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        if let Value::Object(map) = &mut d.raw {
            map.insert("max_age".into(), Value::from(max_age_ns));
            map.insert("max_bytes".into(), Value::from(max_bytes));
        }
    }
}

/// Whether every field declared in `raw` has the same value on the server.
fn matches(raw: &Value, current: &StreamConfig) -> bool {
    let Ok(Value::Object(current)) = serde_json::to_value(current) else { return false };
    let Value::Object(declared) = raw else { return false };
    // Round-trip the declaration through the typed config so units and spellings agree.
    let Ok(typed) = serde_json::from_value::<StreamConfig>(raw.clone()) else { return false };
    let Ok(Value::Object(typed)) = serde_json::to_value(typed) else { return false };
    declared.keys().all(|k| typed.get(k) == current.get(k))
}

/// Create or update every declaration.
pub async fn apply(js: &jetstream::Context, decls: &[Declared]) -> Result<Vec<(String, Outcome)>, StreamsError> {
    let mut out = Vec::with_capacity(decls.len());
    for d in decls {
        let name = d.config.name.clone();
        let outcome = match js.get_stream(&name).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(|e| StreamsError(format!("{name}: info: {e}")))?;
                if matches(&d.raw, &info.config) {
                    Outcome::Unchanged
                } else if info.config.storage == StorageType::Memory && d.config.storage == StorageType::File {
                    js.delete_stream(&name).await.map_err(|e| StreamsError(format!("{name}: delete: {e}")))?;
                    js.create_stream(d.config.clone())
                        .await
                        .map_err(|e| StreamsError(format!("{name}: create on file: {e}")))?;
                    Outcome::Recreated
                } else {
                    js.update_stream(d.config.clone())
                        .await
                        .map_err(|e| StreamsError(format!("{name}: update: {e}")))?;
                    Outcome::Updated
                }
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                js.create_stream(d.config.clone()).await.map_err(|e| StreamsError(format!("{name}: create: {e}")))?;
                Outcome::Created
            }
            Err(e) => return Err(StreamsError(format!("{name}: {e}"))),
        };
        out.push((name, outcome));
    }
    Ok(out)
}

/// One row of `streams list`.
#[derive(Debug, Clone)]
pub struct StreamRow {
    /// Stream name.
    pub name: String,
    /// Subjects captured.
    pub subjects: Vec<String>,
    /// Messages held.
    pub messages: u64,
    /// Bytes held.
    pub bytes: u64,
    /// `file` or `memory`.
    pub storage: String,
}

/// Every stream on the server with its counts.
pub async fn list(js: &jetstream::Context) -> Result<Vec<StreamRow>, StreamsError> {
    use futures::TryStreamExt;
    let infos: Vec<jetstream::stream::Info> =
        js.streams().try_collect().await.map_err(|e| StreamsError(format!("list streams: {e}")))?;
    let mut rows: Vec<StreamRow> = infos
        .into_iter()
        .map(|i| StreamRow {
            name: i.config.name.clone(),
            subjects: i.config.subjects.clone(),
            messages: i.state.messages,
            bytes: i.state.bytes,
            storage: format!("{:?}", i.config.storage).to_lowercase(),
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_declarations_parse_and_avoid_the_request_traps() {
        let decls = load(None).unwrap();
        let names: Vec<_> = decls.iter().map(|d| d.config.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "CHAT_MESSAGES",
                "SESSION_STATUS",
                "USER_EVENTS",
                "LLM_REQUESTS",
                "LLM_USAGE",
                "KV_TOKENS",
                "KV_QUOTA",
                "QUOTA_COUNTERS",
                "KV_CHANNEL_HEALTH",
                "RATE_COUNTERS",
                "QUOTA_HOLDS",
                "KV_WORKERS",
                "KV_REASONING",
                "KV_PROOFS",
                "KV_ROUTE_AFFINITY",
                "KV_USERS",
                "KV_CHANNELS",
                "KV_PRICES",
                "KV_GROUPS",
                "CONFIG_EVENTS",
                "KV_REDEMPTIONS",
                "KV_USAGE_STATS"
            ]
        );
        let counters = decls.iter().find(|d| d.config.name == "QUOTA_COUNTERS").unwrap();
        assert!(counters.config.allow_message_counter);
        let req = decls.iter().find(|d| d.config.name == "LLM_REQUESTS").unwrap();
        // Without no_ack the stream would answer every request's reply inbox with a PubAck.
        assert!(req.config.no_ack);
        // The audit trail lasts: on file, 30 days unless `[audit]` says otherwise.
        assert_eq!(req.config.storage, jetstream::stream::StorageType::File);
        assert_eq!(req.config.max_age, std::time::Duration::from_secs(30 * 86_400));
        let mut decls = decls.clone();
        with_audit_retention(&mut decls, 7_200_000_000_000, 1 << 30);
        let req = decls.iter().find(|d| d.config.name == AUDIT_STREAM).unwrap();
        assert_eq!((req.config.max_age, req.config.max_bytes), (std::time::Duration::from_secs(7200), 1 << 30));
        assert_eq!(
            (req.raw["max_age"].as_i64(), req.raw["max_bytes"].as_i64()),
            (Some(7_200_000_000_000), Some(1 << 30))
        );
        let usage = decls.iter().find(|d| d.config.name == "LLM_USAGE").unwrap();
        assert_eq!(usage.config.storage, jetstream::stream::StorageType::File);
    }

    #[test]
    fn replicas_override_config_and_raw() {
        let mut decls = load(None).unwrap();
        with_replicas(&mut decls, 3).unwrap();
        for d in &decls {
            assert_eq!(d.config.num_replicas, 3, "{}", d.file);
            assert_eq!(d.raw["num_replicas"], 3, "{}", d.file);
        }
        assert!(with_replicas(&mut decls, 0).is_err());
        assert!(with_replicas(&mut decls, 6).is_err());
    }
}
