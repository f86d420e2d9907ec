//! A window of usage statistics read back: the hour documents of a window up to
//! [`HOURLY_UP_TO`], else its day documents (whole days, so the edges are the days'), all
//! read at once with direct gets — a 30-day chart is 30 reads whatever the traffic — and
//! turned into a [`Report`]: series, totals, splits with percentiles, the largest values of
//! each split over time, and the day × hour heatmap.

use super::{Agg, Doc, Hist, BUCKET};
use async_nats::jetstream::{self, kv::Store};
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Bound on each read.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Windows up to this long are read hour by hour; longer ones day by day.
pub const HOURLY_UP_TO: i64 = 7 * 86_400;
/// Longest window (two years of days).
pub const MAX_WINDOW: i64 = 731 * 86_400;
/// Reads in flight at once.
const PARALLEL: usize = 64;

/// Whose statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everyone's.
    All,
    /// One user's.
    User(String),
}

impl Scope {
    fn key_part(&self) -> String {
        match self {
            Scope::All => "all".into(),
            Scope::User(u) => format!("u.{u}"),
        }
    }
}

/// One period's document.
#[derive(Debug, Clone)]
pub struct Period {
    /// Its first second (Unix).
    pub t: i64,
    /// Its statistics (empty when none were kept).
    pub doc: Doc,
}

/// Periods read: whether hours or days, and each one in order.
#[derive(Debug, Clone)]
pub struct Periods {
    /// `hour` or `day`.
    pub bucket: &'static str,
    /// Oldest first, one per period of the window (empty documents included).
    pub items: Vec<Period>,
}

/// Open the bucket.
pub async fn open(js: &jetstream::Context) -> Result<Store, String> {
    crate::quota::within(BUCKET, TIMEOUT, js.get_key_value(BUCKET)).await
}

/// Read the documents of `scope` covering `start..=end` (Unix seconds).
pub async fn read(kv: &Store, scope: &Scope, start: i64, end: i64) -> Result<Periods, String> {
    if end < start {
        return Err("the window ends before it starts".into());
    }
    if end - start > MAX_WINDOW {
        return Err(format!("the window is longer than {} days", MAX_WINDOW / 86_400));
    }
    let hourly = end - start <= HOURLY_UP_TO;
    let step = if hourly { 3_600 } else { 86_400 };
    let first = start.div_euclid(step) * step;
    let scope = scope.key_part();
    let times: Vec<i64> = (0..).map(|i| first + i * step).take_while(|t| *t <= end).collect();
    let keys: Vec<String> = times
        .iter()
        .map(|t| {
            if hourly {
                format!("h.{scope}.{}", super::hour_stamp(*t))
            } else {
                format!("d.{scope}.{}", super::day_stamp(*t))
            }
        })
        .collect();
    let got: Vec<Result<Option<bytes::Bytes>, String>> = futures::stream::iter(
        keys.into_iter().map(|key| async move { crate::quota::within("stats read", TIMEOUT, kv.get(key)).await }),
    )
    .buffered(PARALLEL)
    .collect()
    .await;
    let mut items = Vec::with_capacity(times.len());
    for (t, got) in times.into_iter().zip(got) {
        let doc = got?.map_or_else(Doc::default, |b| Doc::decode(&b));
        items.push(Period { t, doc });
    }
    Ok(Periods { bucket: if hourly { "hour" } else { "day" }, items })
}

/// Percentiles of a histogram (ms; bucket-accurate) and the mean.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pct {
    /// Mean.
    pub avg: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Pct {
    fn of(h: &Hist, sum: u64, n: u64) -> Self {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        Self {
            avg: (n > 0).then(|| round(sum as f64 / n as f64)),
            p50: h.quantile(0.5).map(round),
            p90: h.quantile(0.9).map(round),
            p99: h.quantile(0.99).map(round),
        }
    }
}

/// One row: a period of the series, the totals or one value of a split.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    /// The split's value (model, channel, platform, user or token id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The period's first second (series rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t: Option<i64>,
    /// Requests.
    pub requests: u64,
    /// Requests answered with an error status.
    pub errors: u64,
    /// Of which 4xx.
    pub errors_4xx: u64,
    /// Of which 5xx.
    pub errors_5xx: u64,
    /// Uncached prompt tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache-read prompt tokens.
    pub cache_read_tokens: u64,
    /// Cache-write prompt tokens.
    pub cache_write_tokens: u64,
    /// Every token.
    pub tokens: u64,
    /// USD charged.
    pub cost_usd: f64,
    /// Quota units charged.
    pub quota: i64,
    /// Request time.
    pub latency_ms: Pct,
    /// Time to first chunk.
    pub ttft_ms: Pct,
}

impl Row {
    /// The row of `a`.
    pub fn of(a: &Agg) -> Self {
        Self {
            name: None,
            t: None,
            requests: a.requests,
            errors: a.err_4xx + a.err_5xx,
            errors_4xx: a.err_4xx,
            errors_5xx: a.err_5xx,
            input_tokens: a.input,
            output_tokens: a.output,
            cache_read_tokens: a.cache_read,
            cache_write_tokens: a.cache_write,
            tokens: a.tokens(),
            cost_usd: (a.usd * 1e6).round() / 1e6,
            quota: a.quota,
            latency_ms: Pct::of(&a.latency, a.duration_ms, a.requests),
            ttft_ms: Pct::of(&a.ttft, a.ttft_ms, a.ttft_n),
        }
    }

    fn named(name: &str, a: &Agg) -> Self {
        Self { name: Some(name.to_string()), ..Self::of(a) }
    }
}

/// One heatmap cell: an hour of a day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// 0–23 (UTC).
    pub hour: u8,
    /// Requests.
    pub requests: u64,
    /// Quota units charged.
    pub quota: i64,
    /// USD charged.
    pub cost_usd: f64,
}

/// A window's statistics.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Window start (Unix seconds, as asked).
    pub start: i64,
    /// Window end.
    pub end: i64,
    /// `hour` or `day`: the series' step (day windows count whole days).
    pub bucket: &'static str,
    /// One row per period, oldest first.
    pub series: Vec<Row>,
    /// The whole window.
    pub totals: Row,
    /// Splits, largest first by requests.
    pub by_model: Vec<Row>,
    /// See `by_model`.
    pub by_channel: Vec<Row>,
    /// See `by_model`.
    pub by_platform: Vec<Row>,
    /// See `by_model` (everyone's statistics only).
    pub by_user: Vec<Row>,
    /// See `by_model`.
    pub by_token: Vec<Row>,
    /// The largest values of each split (by requests, at most [`SPLIT_SERIES`]) over time:
    /// `by_model`, `by_channel`, `by_platform`, `by_user` → one series each, aligned with
    /// `series`.
    pub split_series: BTreeMap<&'static str, Vec<SplitSeries>>,
    /// Requests and cost per day and hour (cells with requests only).
    pub heatmap: Vec<Cell>,
    /// Whether a period's token or user split was dropped for size.
    pub trimmed: bool,
}

/// Values of a split charted over time.
pub const SPLIT_SERIES: usize = 6;

/// One value of a split over time: per period (aligned with the report's `series`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSeries {
    /// The value (a model, channel, platform or user).
    pub name: String,
    /// Requests per period.
    pub requests: Vec<u64>,
    /// Requests answered with an error status, per period.
    pub errors: Vec<u64>,
    /// Tokens per period.
    pub tokens: Vec<u64>,
    /// Quota units charged per period.
    pub quota: Vec<i64>,
}

/// The [`SPLIT_SERIES`] largest values of a split (by requests in `rows`) over `periods`.
fn split_series(rows: &[Row], periods: &Periods, pick: impl Fn(&Doc) -> &BTreeMap<String, Agg>) -> Vec<SplitSeries> {
    rows.iter()
        .filter_map(|r| r.name.clone())
        .take(SPLIT_SERIES)
        .map(|name| {
            let of = |p: &Period| pick(&p.doc).get(&name).cloned().unwrap_or_default();
            let aggs: Vec<Agg> = periods.items.iter().map(of).collect();
            SplitSeries {
                requests: aggs.iter().map(|a| a.requests).collect(),
                errors: aggs.iter().map(|a| a.err_4xx + a.err_5xx).collect(),
                tokens: aggs.iter().map(Agg::tokens).collect(),
                quota: aggs.iter().map(|a| a.quota).collect(),
                name,
            }
        })
        .collect()
}

fn split(maps: impl Iterator<Item = BTreeMap<String, Agg>>) -> Vec<Row> {
    let mut sum: BTreeMap<String, Agg> = BTreeMap::new();
    for m in maps {
        for (k, a) in m {
            sum.entry(k).or_default().merge(&a);
        }
    }
    let mut rows: Vec<Row> = sum.iter().map(|(k, a)| Row::named(k, a)).collect();
    rows.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.name.cmp(&b.name)));
    rows
}

fn ymd(t: i64) -> String {
    let d = super::day_stamp(t);
    format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8])
}

impl Report {
    /// The report of `periods` read for `start..=end`.
    pub fn build(start: i64, end: i64, periods: &Periods) -> Self {
        let mut total = Agg::default();
        let mut series = Vec::with_capacity(periods.items.len());
        let mut heatmap = Vec::new();
        for p in &periods.items {
            total.merge(&p.doc.total);
            series.push(Row { t: Some(p.t), ..Row::of(&p.doc.total) });
            if periods.bucket == "hour" {
                if p.doc.total.requests > 0 {
                    let hour = ((p.t.rem_euclid(86_400)) / 3_600) as u8;
                    heatmap.push(cell(ymd(p.t), hour, &p.doc.total));
                }
            } else {
                for (h, a) in &p.doc.hours {
                    if a.requests > 0 {
                        heatmap.push(cell(ymd(p.t), h.parse().unwrap_or(0), a));
                    }
                }
            }
        }
        let docs = || periods.items.iter().map(|p| &p.doc);
        let by_model = split(docs().map(|d| d.model.clone()));
        let by_channel = split(docs().map(|d| d.channel.clone()));
        let by_platform = split(docs().map(|d| d.platform.clone()));
        let by_user = split(docs().map(|d| d.user.clone()));
        let split_series = BTreeMap::from([
            ("by_model", split_series(&by_model, periods, |d| &d.model)),
            ("by_channel", split_series(&by_channel, periods, |d| &d.channel)),
            ("by_platform", split_series(&by_platform, periods, |d| &d.platform)),
            ("by_user", split_series(&by_user, periods, |d| &d.user)),
        ]);
        Self {
            start,
            end,
            bucket: periods.bucket,
            series,
            totals: Row::of(&total),
            by_model,
            by_channel,
            by_platform,
            by_user,
            by_token: split(docs().map(|d| d.token.clone())),
            split_series,
            heatmap,
            trimmed: docs().any(|d| d.trimmed),
        }
    }
}

fn cell(day: String, hour: u8, a: &Agg) -> Cell {
    Cell { day, hour, requests: a.requests, quota: a.quota, cost_usd: (a.usd * 1e6).round() / 1e6 }
}

/// NEW-API's `/api/data` rows (`QuotaData`): per model and period, its request count,
/// quota and tokens; `created_at` is the period's first second.
pub fn quota_rows(periods: &Periods, user: Option<(&str, &str)>) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for p in &periods.items {
        for (model, a) in &p.doc.model {
            let mut row = serde_json::json!({
                "model_name": model,
                "created_at": p.t,
                "count": a.requests,
                "quota": a.quota,
                "token_used": a.tokens(),
            });
            if let Some((id, name)) = user {
                row["user_id"] = id.into();
                row["username"] = name.into();
            }
            rows.push(row);
        }
    }
    rows
}
