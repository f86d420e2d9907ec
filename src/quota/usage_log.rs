//! The request log, read from the ledger (`LLM_USAGE`) newest first without reading it all:
//! the window's sequence bounds come from the stream's start-time lookups, then chunks of
//! sequences are read backwards through ordered consumers filtered by subject
//! (`llm.usage.<user>` when one user is asked for, else `llm.usage.*`), each chunk four
//! times the last, until the page is full or the window's start is reached. The first page
//! of a busy ledger reads a few hundred records; a user's log reads only that user's.

use super::ledger::UsageRecord;
use crate::bus::subjects::{self, Token};
use async_nats::jetstream::{self, consumer, stream::Stream};
use futures::StreamExt;
use std::time::Duration;

/// The ledger stream.
const STREAM: &str = "LLM_USAGE";
/// Bound on each JetStream request and on each message wait.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The most records one query reads (a page far back in a long window stops there).
pub const MAX_SCAN: usize = 200_000;

/// A page of the log, newest first.
#[derive(Debug, Default)]
pub struct LogPage {
    /// (stream sequence, record), newest first: at most the `want` asked for.
    pub items: Vec<(u64, UsageRecord)>,
    /// Matching records found.
    pub matched: usize,
    /// Whether the whole window was read (then `matched` is the exact total).
    pub complete: bool,
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    super::within(what, TIMEOUT, f).await
}

/// The first sequence at or after `secs` among `filter`'s messages (`None`: none).
async fn seq_at(stream: &Stream, filter: &str, secs: i64) -> Result<Option<u64>, String> {
    let start_time = time::OffsetDateTime::from_unix_timestamp(secs.max(0)).map_err(|e| e.to_string())?;
    let config = consumer::pull::OrderedConfig {
        filter_subject: filter.to_string(),
        deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time },
        ..Default::default()
    };
    let c = bounded("log consumer", stream.create_consumer(config)).await?;
    if c.cached_info().num_pending == 0 {
        return Ok(None);
    }
    let mut msgs = bounded("log read", c.messages()).await?;
    match tokio::time::timeout(TIMEOUT, msgs.next()).await {
        Ok(Some(Ok(m))) => Ok(m.info().ok().map(|i| i.stream_sequence)),
        Ok(Some(Err(e))) => Err(e.to_string()),
        _ => Err("log read timed out".into()),
    }
}

/// Read `filter`'s messages with sequences in `from..=to`, oldest first, into `out` (an
/// unreadable record is skipped); returns how many messages were read.
pub(crate) async fn read_range(
    stream: &Stream,
    filter: &str,
    from: u64,
    to: u64,
    out: &mut Vec<(u64, UsageRecord)>,
) -> Result<usize, String> {
    let config = consumer::pull::OrderedConfig {
        filter_subject: filter.to_string(),
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from },
        ..Default::default()
    };
    let c = bounded("log consumer", stream.create_consumer(config)).await?;
    if c.cached_info().num_pending == 0 {
        return Ok(0);
    }
    let mut msgs = bounded("log read", c.messages()).await?;
    let mut read = 0;
    loop {
        let m = match tokio::time::timeout(TIMEOUT, msgs.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => break,
            Err(_) => return Err("log read timed out".into()),
        };
        let Ok(info) = m.info() else { break };
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq > to {
            break;
        }
        read += 1;
        if let Ok(rec) = serde_json::from_slice::<UsageRecord>(&m.payload) {
            out.push((seq, rec));
        }
        if pending == 0 || seq == to {
            break;
        }
    }
    Ok(read)
}

/// The newest `want` records of `user` (or everyone's) between `start` and `end` (Unix
/// seconds, inclusive) that `keep` accepts.
pub async fn newest(
    js: &jetstream::Context,
    user: Option<&Token>,
    start: Option<i64>,
    end: Option<i64>,
    want: usize,
    keep: impl Fn(&UsageRecord) -> bool,
) -> Result<LogPage, String> {
    let mut stream = bounded("LLM_USAGE", js.get_stream(STREAM)).await?;
    let state = bounded("LLM_USAGE info", stream.info()).await?.state.clone();
    let mut page = LogPage::default();
    if state.messages == 0 {
        page.complete = true;
        return Ok(page);
    }
    let filter = user.map_or_else(subjects::usage_all, subjects::usage);
    let lo = match start {
        Some(s) => match seq_at(&stream, &filter, s).await? {
            Some(seq) => seq,
            None => {
                page.complete = true;
                return Ok(page);
            }
        },
        None => state.first_sequence,
    };
    let mut hi = match end {
        Some(e) => match seq_at(&stream, &filter, e + 1).await? {
            Some(seq) => seq.saturating_sub(1),
            None => state.last_sequence,
        },
        None => state.last_sequence,
    };
    let in_window = |r: &UsageRecord| {
        let t = time::OffsetDateTime::parse(&r.timestamp, &time::format_description::well_known::Rfc3339)
            .map_or(0, |t| t.unix_timestamp());
        start.is_none_or(|s| t >= s) && end.is_none_or(|e| t <= e)
    };
    let mut width = (want as u64 * 4).max(256);
    let mut scanned = 0usize;
    while hi >= lo && hi > 0 {
        let from = hi.saturating_sub(width - 1).max(lo);
        let mut chunk = Vec::new();
        scanned += read_range(&stream, &filter, from, hi, &mut chunk).await?;
        for (seq, rec) in chunk.into_iter().rev() {
            if in_window(&rec) && keep(&rec) {
                page.matched += 1;
                if page.items.len() < want {
                    page.items.push((seq, rec));
                }
            }
        }
        if from == lo {
            page.complete = true;
            break;
        }
        if page.items.len() >= want || scanned >= MAX_SCAN {
            break;
        }
        hi = from - 1;
        width = width.saturating_mul(4);
    }
    Ok(page)
}
