//! Usage statistics kept at write time: per-hour and per-day rollups of the ledger in the
//! `USAGE_STATS` KV bucket, so a 30-day chart reads 30 values whatever the traffic.
//!
//! - this file: the data — [`Point`] (what one ledger record adds), [`Agg`] (sums and two
//!   latency histograms), [`Doc`] (one hour or one day of one scope: totals, splits by model,
//!   channel, platform, user and token, and for a day its 24 hour cells) and the keys
//!   (`h.<scope>.<YYYYMMDDHH>`, `d.<scope>.<YYYYMMDD>`, scope `all` or `u.<user>`).
//! - [`rollup`]: a worker's accumulator. The ledger writer hands it every record the stream
//!   confirmed (with its stream sequence); every flush interval each touched document is
//!   merged with one compare-and-set. A flush is marked in the document (worker, flush
//!   number), so a retried merge whose first try did land is not counted twice.
//! - [`query`]: a window read back (hour documents up to 7 days, day documents beyond),
//!   turned into series, splits, percentiles and the day × hour heatmap.
//! - [`rebuild`]: every document recomputed from the ledger (`ailurus stats rebuild`).
//!
//! Exactness: a document remembers the highest ledger sequence it counts (`max_seq`) and,
//! after a rebuild, the sequence it was rebuilt through (`through`); a worker merges only
//! records above `through`, and a rebuild writes a document only after reading the ledger at
//! least up to its `max_seq`. So a rebuild running beside live traffic neither loses nor
//! double counts a record.

pub mod query;
pub mod rebuild;
pub mod rollup;

use crate::quota::ledger::UsageRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The KV bucket.
pub const BUCKET: &str = "USAGE_STATS";
/// Largest document written: a scope with very many users or tokens drops its token split
/// first, then its user split (marked `trimmed`), rather than failing every merge.
const MAX_DOC: usize = 768 * 1024;

/// Upper bounds (ms) of the latency histogram's buckets; one more bucket above the last.
pub const BOUNDS_MS: [u64; 18] =
    [50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000];

/// What one ledger record adds to the statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// The record's `LLM_USAGE` sequence.
    pub seq: u64,
    /// When it was settled (Unix seconds).
    pub ts: i64,
    /// Billed user.
    pub user: String,
    /// Short token id, if any.
    pub token: Option<String>,
    /// Model as the client named it.
    pub model: String,
    /// Channel that served it (empty: none did).
    pub channel: String,
    /// Platform.
    pub platform: String,
    /// HTTP-like status of the outcome.
    pub status: u16,
    /// Uncached prompt tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache-read prompt tokens.
    pub cache_read: u64,
    /// Cache-write prompt tokens.
    pub cache_write: u64,
    /// USD charged.
    pub usd: f64,
    /// Quota units charged.
    pub quota: i64,
    /// Request time.
    pub duration_ms: u64,
    /// Time to the first answer-bearing chunk, when one came.
    pub ttft_ms: Option<u64>,
}

impl Point {
    /// The point of ledger record `rec` stored at `seq`; `None` for admin records
    /// (top-ups and sets are not traffic).
    pub fn from_record(seq: u64, rec: &UsageRecord) -> Option<Self> {
        if rec.kind != "usage" {
            return None;
        }
        let ts = time::OffsetDateTime::parse(&rec.timestamp, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .ok()?;
        Some(Self {
            seq,
            ts,
            user: rec.user_id.clone(),
            token: rec.token_id.clone(),
            model: rec.model.clone(),
            channel: rec.channel.clone(),
            platform: rec.platform.clone(),
            status: rec.status,
            input: rec.input_tokens,
            output: rec.output_tokens,
            cache_read: rec.cache_read_tokens,
            cache_write: rec.cache_write_tokens,
            usd: rec.cost_usd,
            quota: rec.quota,
            duration_ms: rec.duration_ms,
            ttft_ms: rec.ttft_ms,
        })
    }

    /// The keys of the documents this point counts in: its hour and its day, for everyone
    /// and for its user.
    pub fn keys(&self) -> [String; 4] {
        let (h, d) = (hour_stamp(self.ts), day_stamp(self.ts));
        let u = format!("u.{}", self.user);
        [format!("h.all.{h}"), format!("d.all.{d}"), format!("h.{u}.{h}"), format!("d.{u}.{d}")]
    }
}

/// `YYYYMMDDHH` (UTC) of Unix second `ts`.
pub fn hour_stamp(ts: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour())
}

/// `YYYYMMDD` (UTC) of Unix second `ts`.
pub fn day_stamp(ts: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ts).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

/// A latency histogram: counts per [`BOUNDS_MS`] bucket, trailing empty buckets left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hist(pub Vec<u64>);

impl Hist {
    /// Count one value.
    pub fn add(&mut self, ms: u64) {
        let i = BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(BOUNDS_MS.len());
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        self.0[i] += 1;
    }

    /// Add another histogram's counts.
    pub fn merge(&mut self, other: &Hist) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket; `None` when empty.
    /// Accurate to the bucket: the bounds step by 1.5–2× (the last bucket reads as 2× its
    /// lower bound).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).max(1.0);
        let mut seen = 0u64;
        for (i, c) in self.0.iter().enumerate() {
            if *c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let lo = if i == 0 { 0 } else { BOUNDS_MS[i - 1] } as f64;
                let hi = BOUNDS_MS.get(i).map_or(lo * 2.0, |b| *b as f64);
                let within = (rank - seen as f64) / *c as f64;
                return Some(lo + (hi - lo) * within);
            }
            seen += c;
        }
        None
    }
}

/// Sums over a set of requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agg {
    /// Requests.
    #[serde(rename = "n", default)]
    pub requests: u64,
    /// Answered with a 4xx status.
    #[serde(rename = "e4", default, skip_serializing_if = "is_zero")]
    pub err_4xx: u64,
    /// Answered with a 5xx status (or any other failure).
    #[serde(rename = "e5", default, skip_serializing_if = "is_zero")]
    pub err_5xx: u64,
    /// Uncached prompt tokens.
    #[serde(rename = "it", default)]
    pub input: u64,
    /// Output tokens.
    #[serde(rename = "ot", default)]
    pub output: u64,
    /// Cache-read prompt tokens.
    #[serde(rename = "cr", default, skip_serializing_if = "is_zero")]
    pub cache_read: u64,
    /// Cache-write prompt tokens.
    #[serde(rename = "cw", default, skip_serializing_if = "is_zero")]
    pub cache_write: u64,
    /// USD charged.
    #[serde(rename = "usd", default)]
    pub usd: f64,
    /// Quota units charged.
    #[serde(rename = "q", default)]
    pub quota: i64,
    /// Sum of request times (ms).
    #[serde(rename = "dur", default)]
    pub duration_ms: u64,
    /// Sum of times to first chunk (ms), over `ttft_n` requests.
    #[serde(rename = "ft", default, skip_serializing_if = "is_zero")]
    pub ttft_ms: u64,
    /// Requests that had a first chunk.
    #[serde(rename = "ftn", default, skip_serializing_if = "is_zero")]
    pub ttft_n: u64,
    /// Request-time histogram (kept for the totals and the model, channel and platform
    /// splits; empty in user and token splits, which only need sums).
    #[serde(rename = "lh", default, skip_serializing_if = "hist_empty")]
    pub latency: Hist,
    /// Time-to-first-chunk histogram (as `latency`).
    #[serde(rename = "fh", default, skip_serializing_if = "hist_empty")]
    pub ttft: Hist,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn hist_empty(h: &Hist) -> bool {
    h.0.is_empty()
}

impl Agg {
    /// Count `p`; with `hist`, in the histograms too.
    pub fn add(&mut self, p: &Point, hist: bool) {
        self.requests += 1;
        match p.status {
            200..=399 => {}
            400..=499 => self.err_4xx += 1,
            _ => self.err_5xx += 1,
        }
        self.input += p.input;
        self.output += p.output;
        self.cache_read += p.cache_read;
        self.cache_write += p.cache_write;
        self.usd += p.usd;
        self.quota += p.quota;
        self.duration_ms += p.duration_ms;
        if let Some(ft) = p.ttft_ms {
            self.ttft_ms += ft;
            self.ttft_n += 1;
        }
        if hist {
            self.latency.add(p.duration_ms);
            if let Some(ft) = p.ttft_ms {
                self.ttft.add(ft);
            }
        }
    }

    /// Add another set's sums.
    pub fn merge(&mut self, o: &Agg) {
        self.requests += o.requests;
        self.err_4xx += o.err_4xx;
        self.err_5xx += o.err_5xx;
        self.input += o.input;
        self.output += o.output;
        self.cache_read += o.cache_read;
        self.cache_write += o.cache_write;
        self.usd += o.usd;
        self.quota += o.quota;
        self.duration_ms += o.duration_ms;
        self.ttft_ms += o.ttft_ms;
        self.ttft_n += o.ttft_n;
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
    }

    /// Every token counted.
    pub fn tokens(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_write
    }
}

/// One hour's or one day's statistics of one scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Doc {
    /// Ledger sequence a rebuild counted through: records at or below it are in already.
    pub through: u64,
    /// Highest ledger sequence counted.
    pub max_seq: u64,
    /// Worker → its last flush merged here (a retried merge is recognised).
    pub marks: BTreeMap<String, u64>,
    /// Every request of the period.
    pub total: Agg,
    /// By model.
    pub model: BTreeMap<String, Agg>,
    /// By channel.
    pub channel: BTreeMap<String, Agg>,
    /// By platform.
    pub platform: BTreeMap<String, Agg>,
    /// By user (the `all` scope only).
    pub user: BTreeMap<String, Agg>,
    /// By token id (requests without a token under `-`).
    pub token: BTreeMap<String, Agg>,
    /// A day's hours, `"00"`–`"23"` (requests, errors, tokens, cost: no histograms), for the
    /// heatmap.
    pub hours: BTreeMap<String, Agg>,
    /// Whether the token (then user) split was dropped to keep the document under its size
    /// bound.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub trimmed: bool,
}

impl Doc {
    /// Count `p` in the document named `key`.
    pub fn add(&mut self, key: &str, p: &Point) {
        self.max_seq = self.max_seq.max(p.seq);
        self.total.add(p, true);
        self.model.entry(p.model.clone()).or_default().add(p, true);
        let channel = if p.channel.is_empty() { "-" } else { &p.channel };
        self.channel.entry(channel.to_string()).or_default().add(p, true);
        self.platform.entry(p.platform.clone()).or_default().add(p, true);
        if key.starts_with("h.all.") || key.starts_with("d.all.") {
            self.user.entry(p.user.clone()).or_default().add(p, false);
        }
        self.token.entry(p.token.clone().unwrap_or_else(|| "-".into())).or_default().add(p, false);
        if key.starts_with("d.") {
            let hour = time::OffsetDateTime::from_unix_timestamp(p.ts).map_or(0, |t| t.hour());
            self.hours.entry(format!("{hour:02}")).or_default().add(p, false);
        }
    }

    /// The document as stored, trimmed if it would pass [`MAX_DOC`].
    pub fn encode(&mut self) -> Vec<u8> {
        let mut body = serde_json::to_vec(self).unwrap_or_default();
        if body.len() > MAX_DOC && !self.token.is_empty() {
            self.token.clear();
            self.trimmed = true;
            body = serde_json::to_vec(self).unwrap_or_default();
        }
        if body.len() > MAX_DOC {
            self.user.clear();
            self.trimmed = true;
            body = serde_json::to_vec(self).unwrap_or_default();
        }
        body
    }

    /// A stored document; a damaged one reads as empty (and is rebuilt by `stats rebuild`).
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "damaged usage statistics document; run `ailurus stats rebuild`");
            Self::default()
        })
    }
}

#[cfg(test)]
mod tests;
