//! Every statistics document recomputed from the ledger (`ailurus stats rebuild`), safe beside
//! live traffic: the ledger is read up to its last sequence `L`, and a document is written
//! (compare-and-set) only once the ledger has been read at least up to the highest sequence
//! the stored document counts — reading further when a worker merged newer records
//! meanwhile. The written document says it counts everything through `L`, so workers merge
//! only records above it: nothing is lost, nothing counted twice.

use super::{Doc, Point};
use crate::quota::usage_log;
use async_nats::jetstream::{self, kv::Store};
use std::collections::BTreeMap;
use std::time::Duration;

/// Bound on each JetStream request and message wait.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Compare-and-set attempts per document.
const CAS_TRIES: usize = 8;
/// Ledger sequences read per consumer (and held in memory at once).
const CHUNK: u64 = 50_000;

/// What a rebuild found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Ledger records read.
    pub records: u64,
    /// Usage records among them (the rest are top-ups and sets).
    pub usage: u64,
    /// Documents computed.
    pub documents: usize,
    /// Documents whose stored sums differed from the ledger's (requests, tokens or quota),
    /// or were missing.
    pub drifted: Vec<String>,
    /// Documents written (0 on a dry run).
    pub written: usize,
}

/// The ledger's records and the documents they make.
#[derive(Default)]
struct Computed {
    /// Key → document.
    docs: BTreeMap<String, Doc>,
    /// Highest sequence read.
    through: u64,
    /// Records read.
    records: u64,
    /// Usage records read.
    usage: u64,
}

impl Computed {
    /// Read the ledger from `through + 1` to its current last sequence, [`CHUNK`] sequences
    /// at a time (the request log's reader, `usage_log::read_range`).
    async fn read_on(&mut self, js: &jetstream::Context) -> Result<(), String> {
        let mut stream = crate::quota::within("LLM_USAGE", TIMEOUT, js.get_stream("LLM_USAGE")).await?;
        let last = crate::quota::within("LLM_USAGE info", TIMEOUT, stream.info()).await?.state.last_sequence;
        let filter = crate::bus::subjects::usage_all();
        while self.through < last {
            let to = (self.through + CHUNK).min(last);
            let mut chunk = Vec::new();
            self.records += usage_log::read_range(&stream, &filter, self.through + 1, to, &mut chunk).await? as u64;
            for (seq, rec) in &chunk {
                if let Some(p) = Point::from_record(*seq, rec) {
                    self.usage += 1;
                    for key in p.keys() {
                        self.docs.entry(key.clone()).or_default().add(&key, &p);
                    }
                }
            }
            self.through = to;
        }
        Ok(())
    }
}

/// Whether two documents count the same (sums of requests, errors, tokens and quota, in
/// total and per model).
fn same(a: &Doc, b: &Doc) -> bool {
    let sums = |d: &Doc| {
        let t = &d.total;
        let models: Vec<(String, u64, i64)> = d.model.iter().map(|(k, a)| (k.clone(), a.requests, a.quota)).collect();
        (t.requests, t.err_4xx, t.err_5xx, t.input, t.output, t.cache_read, t.cache_write, t.quota, models)
    };
    sums(a) == sums(b)
}

/// Recompute every document from the ledger; unless `dry_run`, write those that differ.
pub async fn rebuild(js: &jetstream::Context, kv: &Store, dry_run: bool) -> Result<Rebuilt, String> {
    let mut c = Computed::default();
    c.read_on(js).await?;
    let keys: Vec<String> = c.docs.keys().cloned().collect();
    let mut out = Rebuilt { documents: keys.len(), ..Default::default() };
    for key in keys {
        let mut tries = 0;
        loop {
            tries += 1;
            let entry = crate::quota::within("stats read", TIMEOUT, kv.entry(key.clone())).await?;
            let stored = entry.as_ref().filter(|e| !e.value.is_empty()).map(|e| Doc::decode(&e.value));
            if stored.as_ref().is_some_and(|s| s.max_seq > c.through) {
                // A worker merged records this rebuild has not read yet: read on first.
                c.read_on(js).await?;
                continue;
            }
            let Some(mut doc) = c.docs.get(&key).cloned() else { break };
            let differs = stored.as_ref().is_none_or(|s| !same(s, &doc));
            if differs && tries == 1 {
                out.drifted.push(key.clone());
            }
            // A document that counts what the ledger says already needs nothing (records it
            // lacks would make it differ).
            if dry_run || !differs {
                break;
            }
            doc.through = c.through;
            let body = doc.encode();
            let wrote = match &entry {
                Some(e) => crate::quota::within("stats write", TIMEOUT, kv.update(&key, body.into(), e.revision)).await,
                None => crate::quota::within("stats write", TIMEOUT, kv.create(&key, body.into())).await,
            };
            match wrote {
                Ok(_) => {
                    out.written += 1;
                    break;
                }
                Err(e) if tries >= CAS_TRIES => return Err(format!("{key}: {e}")),
                Err(_) => continue,
            }
        }
    }
    out.records = c.records;
    out.usage = c.usage;
    Ok(out)
}
