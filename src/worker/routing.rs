//! The worker's side of routing: scenario routes applied to a parsed job, and the session
//! affinity table.
//!
//! The table is the `ROUTE_AFFINITY` KV bucket (`streams/KV_ROUTE_AFFINITY.json`): key
//! sha256(user, session) (see `router::affinity`), value the pinned channel and key index;
//! an entry lives [`TTL`] after its last write. In front of it each worker keeps a local
//! cache that a watch on the bucket keeps current, so the hot path costs no JetStream round
//! trip: a request reads the local cache; only a session this worker has not seen yet costs
//! one KV get (bounded by [`LOOKUP_TIMEOUT`]); a KV write happens only when the assignment
//! changes (a new session, a failover) or when the entry is a third of its life old (to keep
//! a live session's entry from expiring), in a task of its own that the reply never waits
//! for. A failover on one worker reaches every other worker's cache through the watch (within
//! a round trip or two of the answer).

use super::job::{Client, Job};
use super::WorkerCtx;
use crate::router::affinity::{self, Assignment, Evidence};
use crate::router::scenario::Features;
use async_nats::jetstream::kv::{Operation, Store};
use dashmap::DashMap;
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The KV bucket.
pub const BUCKET: &str = "ROUTE_AFFINITY";
/// How long an entry lives after its last write (the bucket's `max_age`).
pub const TTL: Duration = Duration::from_secs(3600);
/// Bound on the one KV get of a session new to this worker.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(150);
/// Bound on one KV write.
const PUT_TIMEOUT: Duration = Duration::from_secs(2);

/// One cached assignment.
#[derive(Debug, Clone)]
struct Local {
    /// Where the session is pinned.
    assignment: Assignment,
    /// When the KV entry was last written (by anyone, as far as this worker knows).
    written: Instant,
    /// When a request last used it.
    used: Instant,
}

/// The affinity table of this worker.
pub(crate) struct Affinity {
    /// The bucket.
    kv: Store,
    /// The local cache in front of it.
    local: DashMap<String, Local>,
}

impl Affinity {
    /// The table, when affinity is on and the bucket exists (`ailurus streams apply`); a
    /// task follows the bucket until `shutdown`.
    pub(crate) async fn open(
        client: &async_nats::Client,
        enabled: bool,
        shutdown: crate::shutdown::Shutdown,
    ) -> Option<Arc<Self>> {
        if !enabled {
            return None;
        }
        let js = async_nats::jetstream::new(client.clone());
        let kv = match tokio::time::timeout(PUT_TIMEOUT, js.get_key_value(BUCKET)).await {
            Ok(Ok(kv)) => kv,
            _ => {
                tracing::info!("no {BUCKET} KV bucket: session affinity is off (run `ailurus streams apply`)");
                return None;
            }
        };
        let me = Arc::new(Self { kv, local: DashMap::new() });
        tokio::spawn(me.clone().follow(shutdown));
        Some(me)
    }

    /// Keep the local cache current with every worker's writes, and drop entries unused for
    /// [`TTL`]; re-watch after a broken watch.
    async fn follow(self: Arc<Self>, shutdown: crate::shutdown::Shutdown) {
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
        loop {
            let mut watch = match tokio::time::timeout(PUT_TIMEOUT, self.kv.watch_all()).await {
                Ok(Ok(w)) => w,
                _ => {
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = sweep.tick() => {
                        let now = Instant::now();
                        self.local.retain(|_, l| now.duration_since(l.used) < TTL);
                    }
                    entry = watch.next() => match entry {
                        Some(Ok(e)) => self.seen(&e.key, e.operation, &e.value),
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "affinity watch error; watching again");
                            break;
                        }
                        None => break,
                    },
                }
            }
        }
    }

    /// An entry written by any worker (this one included).
    fn seen(&self, key: &str, op: Operation, value: &[u8]) {
        match (op, serde_json::from_slice::<Assignment>(value)) {
            (Operation::Put, Ok(assignment)) => {
                let now = Instant::now();
                let used = self.local.get(key).map_or(now, |l| l.used);
                self.local.insert(key.to_string(), Local { assignment, written: now, used });
            }
            (Operation::Put, Err(_)) => {}
            (Operation::Delete | Operation::Purge, _) => {
                self.local.remove(key);
            }
        }
    }

    /// Where `key`'s session is pinned: the local cache, else one bounded KV get.
    pub(crate) async fn lookup(&self, key: &str) -> Option<Assignment> {
        if let Some(mut l) = self.local.get_mut(key) {
            l.used = Instant::now();
            return Some(l.assignment.clone());
        }
        let got = tokio::time::timeout(LOOKUP_TIMEOUT, self.kv.entry(key)).await;
        match got {
            Ok(Ok(Some(e))) if e.operation == Operation::Put => {
                let assignment: Assignment = serde_json::from_slice(&e.value).ok()?;
                // Its age decides when to refresh it.
                let age = Duration::from_secs(
                    (time::OffsetDateTime::now_utc() - e.created).whole_seconds().clamp(0, TTL.as_secs() as i64) as u64,
                );
                let now = Instant::now();
                let written = now.checked_sub(age).unwrap_or(now);
                self.local.insert(key.to_string(), Local { assignment: assignment.clone(), written, used: now });
                Some(assignment)
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "affinity lookup failed; routing without it");
                None
            }
            Err(_) => {
                tracing::debug!("affinity lookup timed out; routing without it");
                None
            }
        }
    }

    /// `key`'s session was served at `assignment`: the cache is updated at once, and the
    /// bucket, in a task of its own (the reply never waits for it), when the assignment
    /// changed or is a third of its life old. Returns whether a write was started.
    pub(crate) fn record(self: &Arc<Self>, key: &str, assignment: Assignment) -> bool {
        let now = Instant::now();
        if let Some(l) = self.local.get(key) {
            if l.assignment == assignment && now.duration_since(l.written) < TTL / 3 {
                return false;
            }
        }
        self.local.insert(key.to_string(), Local { assignment: assignment.clone(), written: now, used: now });
        let me = self.clone();
        let key = key.to_string();
        tokio::spawn(async move { me.store(key, assignment).await });
        true
    }

    /// Write one assignment (bounded).
    async fn store(&self, key: String, assignment: Assignment) {
        let Ok(value) = serde_json::to_vec(&assignment) else { return };
        match tokio::time::timeout(PUT_TIMEOUT, self.kv.put(key, value.into())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "affinity write failed"),
            Err(_) => tracing::debug!("affinity write timed out"),
        }
    }

    /// How many sessions this worker has cached.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.local.len()
    }
}

/// A header of the job's request, by name.
fn header(job: &Job, name: &str) -> Option<String> {
    job.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string())
}

/// The native body, if any.
fn body(job: &Job) -> Option<&[u8]> {
    match &job.client {
        Client::Native { body, .. } => Some(body),
        Client::Seed => None,
    }
}

/// The affinity table key of the job's session (when affinity is on).
pub(crate) fn session_key(ctx: &WorkerCtx, job: &Job) -> Option<String> {
    ctx.affinity.as_ref()?;
    let get = |h: &str| header(job, h);
    let ev = Evidence {
        header: &get,
        seed_session: matches!(job.client, Client::Seed).then_some(job.session_id.as_deref()).flatten(),
        chat: &job.chat,
        // Only OpenAI bodies carry a `prompt_cache_key` (Codex).
        body: match &job.client {
            Client::Native {
                format: crate::formats::Format::OpenAiResponses | crate::formats::Format::OpenAiChat,
                body,
                ..
            } => Some(body),
            _ => None,
        },
    };
    let (session, _) = affinity::session(&ev);
    Some(affinity::table_key(&job.user_id, &session))
}

/// Apply the first scenario rule the job matches: the model it is served as and the
/// channels allowed.
pub(crate) fn apply_scenario(ctx: &WorkerCtx, job: &mut Job) {
    let decision = {
        let get = |h: &str| header(job, h);
        let f = Features::new(&job.model, job.platform.as_str(), &job.chat, &get, body(job));
        ctx.router.scenario(&f)
    };
    let Some(d) = decision else { return };
    tracing::debug!(trace_id = %job.trace_id, scenario = %d.rule, model = ?d.model, channels = ?d.channels, "scenario route");
    if let Some(m) = d.model {
        job.chat.model = m.clone();
        job.model = m;
    }
    job.channel_group = d.channels;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_is_the_buckets_max_age() {
        let decls = crate::streams::load(None).expect("embedded streams");
        let d = decls.iter().find(|d| d.config.name == format!("KV_{BUCKET}")).expect("declared");
        assert_eq!(d.config.max_age, TTL);
    }

    #[tokio::test]
    async fn writes_only_when_the_assignment_changes() {
        let server = match crate::nats_server::NatsServer::spawn(Default::default()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipped: this test needs a nats-server ({e})");
                return;
            }
        };
        let client = async_nats::connect(&server.url).await.expect("connect");
        let js = async_nats::jetstream::new(client.clone());
        let decls = crate::streams::load(None).expect("streams");
        crate::streams::apply(&js, &decls).await.expect("apply");
        let shutdown = crate::shutdown::Shutdown::new();
        let a = Affinity::open(&client, true, shutdown.clone()).await.expect("table");
        let b = Affinity::open(&client, true, shutdown.clone()).await.expect("table");
        let pin = |c: &str, k| Assignment { channel: c.into(), key: k };
        assert_eq!(a.lookup("s1").await, None);
        assert!(a.record("s1", pin("x", 2)), "a new session is written");
        assert!(!a.record("s1", pin("x", 2)), "the same assignment is not written again");
        // Another worker finds it with one get, then in its cache.
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.lookup("s1").await != Some(pin("x", 2)) {
            assert!(Instant::now() < deadline, "the other worker finds the session");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(b.cached(), 1);
        // A failover on b reaches a through the watch.
        assert!(b.record("s1", pin("y", 0)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.lookup("s1").await != Some(pin("y", 0)) {
            assert!(Instant::now() < deadline, "the move reached the other worker");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.trigger();
    }
}
