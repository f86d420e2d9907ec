//! The reasoning store: signed reasoning kept on the server for clients whose format has no
//! slot for it (Chat Completions keeps content and each call's id, name and arguments).
//!
//! After a converted answer with tool calls, one entry goes into the `REASONING` KV bucket
//! (`streams/KV_REASONING.json`): key sha256(user, first call id), value the parts of
//! [`formats::reasoning::kept`] as JSON. When a request of that user comes back with that
//! call id in an assistant turn, [`restore`] puts them back before the upstream body is
//! built, on whichever worker serves it. Bounds: an entry of more than [`MAX_ENTRY`] bytes is
//! not stored; the bucket keeps entries 24 hours and at most 1 GiB (oldest dropped first); a
//! request looks up at most [`formats::reasoning::MAX_RESTORED_TURNS`] turns, all at once,
//! within [`LOOKUP_TIMEOUT`]. An entry that has expired (or was never stored) is not an
//! error here: the request goes on without it, and the upstream's own refusal (its 400 for
//! a missing signature) reaches the client in the client's format.

use super::job::{Client, Job};
use super::WorkerCtx;
use crate::formats::{self, Format};
use crate::protocol::canonical::Part;
use async_nats::jetstream::kv::Store;
use std::collections::HashMap;
use std::time::Duration;

/// The KV bucket.
pub const BUCKET: &str = "REASONING";
/// Largest entry stored (the bucket's `max_msg_size`).
pub const MAX_ENTRY: usize = 256 * 1024;
/// Bound on the lookups of one request.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// Bound on storing one entry.
pub const PUT_TIMEOUT: Duration = Duration::from_secs(2);

/// The bucket, when `ailurus streams apply` created it (else the store is off: a Chat client's
/// reasoning is lost, as without Ailurus).
pub(crate) async fn open(client: &async_nats::Client) -> Option<Store> {
    let js = async_nats::jetstream::new(client.clone());
    match tokio::time::timeout(PUT_TIMEOUT, js.get_key_value(BUCKET)).await {
        Ok(Ok(kv)) => Some(kv),
        _ => {
            tracing::info!(
                "no {BUCKET} KV bucket: Chat Completions clients lose signed reasoning (run `ailurus streams apply`)"
            );
            None
        }
    }
}

/// Whether the job's client has no reasoning slot (so the store serves it).
fn slotless(job: &Job) -> bool {
    matches!(job.client, Client::Native { format: Format::OpenAiChat, .. })
}

/// The key of `call_id` for `user`: hex sha256, so keys are valid and reveal nothing.
fn key(user: &str, call_id: &str) -> String {
    crate::credential::hash(&format!("{user}\n{call_id}"))
}

/// Whether a channel that may serve the job speaks another format than the client's Chat
/// Completions (only a converted answer can carry signed reasoning; plain OpenAI-compatible
/// traffic costs no lookup).
fn converted(ctx: &WorkerCtx, job: &Job) -> bool {
    ctx.router
        .candidates(&job.model, job.platform.as_str())
        .iter()
        .any(|c| c.channel.kind.format().is_some_and(|f| f != Format::OpenAiChat))
}

/// Put back the reasoning of the job's earlier tool-call turns (see the module doc).
pub(crate) async fn restore(ctx: &WorkerCtx, job: &mut Job) {
    let Some(kv) = ctx.reasoning.as_ref().filter(|_| slotless(job)) else { return };
    let ids = formats::reasoning::wanted(&job.chat);
    if ids.is_empty() || !converted(ctx, job) {
        return;
    }
    let lookups = ids.iter().map(|id| {
        let k = key(&job.user_id, id);
        async move { (id.clone(), kv.get(k).await) }
    });
    let Ok(found) = tokio::time::timeout(LOOKUP_TIMEOUT, futures::future::join_all(lookups)).await else {
        tracing::warn!(trace_id = %job.trace_id, "reasoning store lookup timed out; the request goes on without it");
        return;
    };
    let mut map: HashMap<String, Vec<Part>> = HashMap::new();
    for (id, got) in found {
        match got {
            Ok(Some(bytes)) => match serde_json::from_slice::<Vec<Part>>(&bytes) {
                Ok(parts) => {
                    map.insert(id, parts);
                }
                Err(e) => tracing::warn!(error = %e, "unreadable reasoning store entry ignored"),
            },
            Ok(None) => {
                tracing::debug!(trace_id = %job.trace_id, "no stored reasoning for a call (expired or never kept)")
            }
            Err(e) => tracing::warn!(error = %e, "reasoning store lookup failed"),
        }
    }
    formats::reasoning::restore(&mut job.chat, |id| map.remove(id));
}

/// What to store for this answer (pure CPU: computed before the final reply, stored after).
pub(crate) fn entry(kv: Option<&Store>, job: &Job, parts: &[Part]) -> Option<(String, Vec<u8>)> {
    kv?;
    if !slotless(job) {
        return None;
    }
    let (call_id, kept) = formats::reasoning::kept(parts)?;
    let value = serde_json::to_vec(&kept).ok()?;
    if value.len() > MAX_ENTRY {
        tracing::warn!(trace_id = %job.trace_id, bytes = value.len(), "reasoning too large for the store; not kept");
        return None;
    }
    Some((key(&job.user_id, &call_id), value))
}

/// Store an [`entry`] (one KV write, bounded by [`PUT_TIMEOUT`]).
pub(crate) async fn store(kv: Option<&Store>, entry: Option<(String, Vec<u8>)>) {
    let (Some(kv), Some((k, value))) = (kv, entry) else { return };
    match tokio::time::timeout(PUT_TIMEOUT, kv.put(k, value.into())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "reasoning store write failed"),
        Err(_) => tracing::warn!("reasoning store write timed out"),
    }
}
