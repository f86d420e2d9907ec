//! Revocation under faults, against a real nats-server: after a nats-server restart, while
//! the workers' token watch is broken, and the latency from a revocation's KV ack to the
//! moment two followers refuse the token (printed; run with `--nocapture` to see it).
//!
//! The promise (`ailurus::quota::tokens::MAX_STALE`): a revocation acknowledged at `t` is
//! honoured by every lookup from `t + MAX_STALE` on, whatever happens to the watch.

mod common;

use ailurus::bus::codec::Encoding;
use ailurus::bus::headers::ReplyKind;
use ailurus::bus::subjects::Token;
use ailurus::client::Requester;
use ailurus::config::Config;
use ailurus::nats_server::{NatsServer, SpawnOptions};
use ailurus::protocol::Platform;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::{TokenStatus, TokenStore, MAX_STALE};
use ailurus::shutdown::Shutdown;
use async_nats::HeaderMap;
use common::{request, Stack};
use futures::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};

/// Fail the test instead of hanging.
async fn bounded<T>(limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.expect("test exceeded its time bound")
}

/// A stack on a server with a store that survives a restart, streams applied, `workers`
/// in-process workers in token mode, and `user` funded with one token.
async fn stack_with_token(
    opts: SpawnOptions,
    workers: usize,
    user: &str,
) -> (Stack, TokenStore, String, ailurus::quota::tokens::TokenRecord) {
    let mut stack = Stack::with_server(opts).await;
    stack.apply_streams().await;
    for _ in 0..workers {
        stack.add_worker(Config::default()).await;
    }
    let js = async_nats::jetstream::new(stack.client.clone());
    let tokens = TokenStore::open(&js).await.unwrap();
    let quota = QuotaStore::open(stack.client.clone()).await.unwrap();
    quota.topup(&Token::new("user_id", user).unwrap(), 50_000_000).await.unwrap();
    let (token, rec) = tokens.create(user, "t", None, vec![], None).await.unwrap();
    (stack, tokens, token, rec)
}

/// One request: `None` when nothing answered (connection trouble), else the final reply's
/// kind, status and error message.
async fn try_call(client: &async_nats::Client, token: &str, user: &str) -> Option<(ReplyKind, u16, String)> {
    let mut req = request(Platform::Claude, "mock", "revoke me", false);
    req.user_id = user.into();
    req.max_tokens = Some(20);
    let mut replies =
        Requester::new(client.clone()).signed_by(token).send(&req, Encoding::Json, HeaderMap::new()).await.ok()?;
    let r = tokio::time::timeout(Duration::from_secs(10), replies.next_content()).await.ok()??.ok()?;
    let resp = r.response(Encoding::Json).ok()?;
    Some((r.kind, r.status.unwrap_or(0), resp.error.unwrap_or_default()))
}

/// Revoke `id`, retrying until the bucket answers; returns when the server acknowledged it.
async fn revoke_when_kv_answers(tokens: &TokenStore, id: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(Duration::from_secs(3), tokens.revoke(id)).await {
            Ok(Ok(rec)) => {
                assert_eq!(rec.status, TokenStatus::Revoked);
                return Instant::now();
            }
            other => {
                assert!(Instant::now() < deadline, "revoke never succeeded: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// After a revocation acknowledged at `acked`, send requests with `token` in a loop until
/// well past the bound, and check: refused (401 "revoked") within `MAX_STALE` (+ slack for
/// the request itself), never accepted when sent after `acked + MAX_STALE`, and every
/// request sent after that bound refused as revoked. Returns the first refusal's delay.
async fn assert_refused_within_bound(client: &async_nats::Client, token: &str, user: &str, acked: Instant) -> Duration {
    let bound = acked + MAX_STALE;
    let until = bound + Duration::from_millis(1500);
    let mut first_refusal = None;
    let (mut late_refused, mut early_accepted) = (0usize, 0usize);
    while Instant::now() < until || first_refusal.is_none() {
        assert!(acked.elapsed() < Duration::from_secs(15), "never refused");
        let sent = Instant::now();
        let outcome = try_call(client, token, user).await;
        match &outcome {
            Some((ReplyKind::Done, _, _)) => {
                assert!(sent < bound, "accepted {:?} after the revocation's ack (bound {MAX_STALE:?})", sent - acked);
                early_accepted += 1;
            }
            Some((ReplyKind::Error, 401, msg)) if msg.contains("revoked") => {
                first_refusal.get_or_insert_with(|| acked.elapsed());
                if sent >= bound {
                    late_refused += 1;
                }
            }
            other => assert!(sent < bound, "after the bound, expected 401 revoked, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = first_refusal.unwrap_or_default();
    assert!(first < MAX_STALE + Duration::from_millis(500), "first refusal {first:?} after the ack");
    assert!(late_refused >= 10, "only {late_refused} requests after the bound");
    println!(
        "refused {first:?} after the ack ({early_accepted} accepted before; {late_refused} refused after the bound)"
    );
    first
}

/// A follower of the bucket on its own connection, as a worker holds one.
async fn follower(url: &str, shutdown: &Shutdown) -> TokenStore {
    let client = ailurus::bus::connect(url, "test-follower").await.unwrap();
    let store = TokenStore::open(&async_nats::jetstream::new(client)).await.unwrap();
    store.follow(shutdown.clone()).await.unwrap();
    store
}

/// Wait until `store` trusts its cache again (it follows the bucket again).
async fn trusted_again(store: &TokenStore, limit: Duration) -> Duration {
    let start = Instant::now();
    while !store.cache_trusted() {
        assert!(start.elapsed() < limit, "the cache was not followed again within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_after_a_nats_server_restart_is_refused_within_the_bound() {
    bounded(Duration::from_secs(90), async {
        let store = tempfile::tempdir().unwrap();
        let port = ailurus::nats_server::free_port().unwrap();
        let opts = SpawnOptions { port, store_dir: Some(store.path().join("nats")), ..Default::default() };
        let (mut stack, tokens, token, rec) = stack_with_token(opts.clone(), 2, "rob").await;
        let watcher = follower(&stack.server.url, &stack.shutdown).await;
        for _ in 0..4 {
            assert_eq!(try_call(&stack.client, &token, "rob").await.map(|o| o.0), Some(ReplyKind::Done));
        }
        // Kill the server hard; start it again on the same port and store.
        stack.server.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stack.server = NatsServer::spawn(opts).expect("restart nats-server");
        let acked = revoke_when_kv_answers(&tokens, &rec.id).await;
        assert_refused_within_bound(&stack.client, &token, "rob", acked).await;
        // The follower follows the bucket again and its cache holds the revocation.
        trusted_again(&watcher, Duration::from_secs(10)).await;
        let seen = watcher.lookup(&ailurus::credential::hash(&token)).await.unwrap().unwrap();
        assert_eq!(seen.status, TokenStatus::Revoked);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_while_the_token_watch_is_broken_is_refused_within_the_bound() {
    bounded(Duration::from_secs(90), async {
        let (stack, tokens, token, rec) = stack_with_token(SpawnOptions::default(), 2, "ruth").await;
        let watcher = follower(&stack.server.url, &stack.shutdown).await;
        let (other, other_rec) = tokens.create("ruth", "other", None, vec![], None).await.unwrap();
        for _ in 0..4 {
            assert_eq!(try_call(&stack.client, &token, "ruth").await.map(|o| o.0), Some(ReplyKind::Done));
        }
        assert!(watcher.cache_trusted());
        // Break every watch: delete the consumers behind them (the workers' and the follower's).
        let js = async_nats::jetstream::new(stack.client.clone());
        let stream = js.get_stream("KV_TOKENS").await.unwrap();
        let names: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
        assert!(names.len() >= 3, "one watch per worker and the follower: {names:?}");
        for n in &names {
            stream.delete_consumer(n).await.unwrap();
        }
        // Revoke one token and delete another during the outage.
        let acked = revoke_when_kv_answers(&tokens, &rec.id).await;
        let kv = js.get_key_value("TOKENS").await.unwrap();
        kv.delete(ailurus::credential::hash(&other)).await.unwrap();
        assert_refused_within_bound(&stack.client, &token, "ruth", acked).await;
        let (kind, status, _) = try_call(&stack.client, &other, "ruth").await.unwrap();
        assert_eq!((kind, status), (ReplyKind::Error, 401), "deleted token {}", other_rec.id);
        // The follower follows again (a new watch, the set rebuilt) and holds both changes.
        trusted_again(&watcher, Duration::from_secs(10)).await;
        let seen = watcher.lookup(&ailurus::credential::hash(&token)).await.unwrap().unwrap();
        assert_eq!(seen.status, TokenStatus::Revoked);
        assert_eq!(watcher.lookup(&ailurus::credential::hash(&other)).await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_store_that_does_not_answer_means_503_not_a_stale_yes() {
    bounded(Duration::from_secs(60), async {
        let (stack, _tokens, token, _) = stack_with_token(SpawnOptions::default(), 1, "rhea").await;
        assert_eq!(try_call(&stack.client, &token, "rhea").await.map(|o| o.0), Some(ReplyKind::Done));
        // The bucket disappears: the watch and every read of it fail.
        let js = async_nats::jetstream::new(stack.client.clone());
        js.delete_stream("KV_TOKENS").await.unwrap();
        let gone = Instant::now();
        let bound = gone + MAX_STALE;
        let mut unavailable = 0;
        while Instant::now() < bound + Duration::from_millis(1500) {
            let sent = Instant::now();
            match try_call(&stack.client, &token, "rhea").await {
                Some((ReplyKind::Done, _, _)) => {
                    assert!(sent < bound, "served {:?} after the bucket went", sent - gone)
                }
                Some((ReplyKind::Error, 503, msg)) => {
                    assert!(msg.contains("token store unavailable"), "{msg}");
                    unavailable += 1;
                }
                other => assert!(sent < bound, "expected 503, got {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(unavailable >= 10, "only {unavailable} refusals");
    })
    .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_latency_across_two_followers() {
    const TOKENS: usize = 50;
    bounded(Duration::from_secs(120), async {
        let stack = Stack::server_only().await;
        stack.apply_streams().await;
        let js = async_nats::jetstream::new(stack.client.clone());
        let admin = TokenStore::open(&js).await.unwrap();
        let followers = [follower(&stack.server.url, &stack.shutdown).await, follower(&stack.server.url, &stack.shutdown).await];
        let mut created = Vec::new();
        for i in 0..TOKENS {
            created.push(admin.create("lat", &format!("t{i}"), None, vec![], None).await.unwrap());
        }
        // Every follower has every token, from its cache.
        for (token, _) in &created {
            let h = ailurus::credential::hash(token);
            for f in &followers {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !(f.cache_trusted() && f.lookup(&h).await.unwrap().is_some_and(|r| r.status == TokenStatus::Active)) {
                    assert!(Instant::now() < deadline);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        let handle = tokio::runtime::Handle::current();
        let (mut latencies, mut from_cache) = (Vec::new(), 0usize);
        for (token, rec) in &created {
            let h = ailurus::credential::hash(token);
            admin.revoke(&rec.id).await.unwrap();
            let acked = Instant::now();
            // Poll each follower in a tight loop (200 µs pauses) on a thread of its own.
            let (fs, handle) = (followers.clone(), handle.clone());
            let seen = tokio::task::spawn_blocking(move || {
                let mut seen = [None, None];
                while seen.iter().any(Option::is_none) {
                    for (i, f) in fs.iter().enumerate() {
                        if seen[i].is_none() {
                            // Trusted: the answer comes from the cache, not the bucket.
                            let cached = f.cache_trusted();
                            let rec = handle.block_on(f.lookup(&h)).unwrap().unwrap();
                            if rec.status == TokenStatus::Revoked {
                                seen[i] = Some((acked.elapsed(), cached));
                            }
                        }
                    }
                    assert!(acked.elapsed() < Duration::from_secs(10), "revocation never seen");
                    std::thread::sleep(Duration::from_micros(200));
                }
                seen
            })
            .await
            .unwrap();
            for (latency, cached) in seen.into_iter().flatten() {
                latencies.push(latency);
                from_cache += usize::from(cached);
            }
        }
        // Nearly every answer came from a trusted cache (a probe delayed on a loaded machine
        // sends a lookup to the bucket instead, which is the fallback, not the watch).
        assert!(from_cache * 10 >= latencies.len() * 9, "only {from_cache} of {} from the cache", latencies.len());
        latencies.sort();
        let (p50, p99, max) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99), latencies[latencies.len() - 1]);
        println!(
            "revocation latency (KV ack → lookup says revoked), {} samples ({TOKENS} tokens × 2 followers, {from_cache} from the cache): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            latencies.len(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
        assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    })
    .await;
}
