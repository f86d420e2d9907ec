//! The worker against a real nats-server: reply protocol, encodings, queue groups,
//! liveness, bad input, cancellation, overload and drain.

mod common;

use ailurus::bus::codec::{decode, Encoding};
use ailurus::bus::headers::{self, ReplyKind};
use ailurus::bus::subjects::{self, Token};
use ailurus::client::ClientError;
use ailurus::protocol::{LLMNATSResponse, Platform};
use async_nats::HeaderMap;
use bytes::Bytes;
use common::{request, Stack, WorkerProcess};
use futures::StreamExt;
use std::time::{Duration, Instant};

/// Collect every reply of one request: (chunk deltas with seq, final kind, final response).
async fn collect(
    mut replies: ailurus::client::Replies,
    enc: Encoding,
) -> (Vec<(u64, String)>, ReplyKind, LLMNATSResponse, u32) {
    let mut chunks = Vec::new();
    let mut heartbeats = 0;
    while let Some(r) = replies.next().await {
        let r = r.expect("reply");
        match r.kind {
            ReplyKind::Heartbeat => heartbeats += 1,
            ReplyKind::Chunk => {
                let c = r.chunk(enc).unwrap();
                chunks.push((c.seq, c.delta));
            }
            kind => return (chunks, kind, r.response(enc).unwrap(), heartbeats),
        }
    }
    panic!("no final reply");
}

/// `Ailurus-Heartbeat: <n>ms`: the first heartbeat only when nothing else went out in that
/// time (a quick answer costs no heartbeat message), then every second as usual.
#[tokio::test]
async fn a_delayed_first_heartbeat_goes_out_only_for_slow_answers() {
    let stack = Stack::start().await;
    let send = |model: &str, first: &str| {
        let mut h = HeaderMap::new();
        h.insert(headers::HEARTBEAT, first);
        let req = request(Platform::Claude, model, "hello", true);
        let requester = stack.requester();
        async move { requester.send(&req, Encoding::Json, h).await.expect("send") }
    };
    // Answered within the delay: chunks and done, no heartbeat.
    let (chunks, kind, _, heartbeats) = collect(send("mock-c3", "3000ms").await, Encoding::Json).await;
    assert_eq!((kind, chunks.len(), heartbeats), (ReplyKind::Done, 3, 0));
    // A first byte after 1.2 s: the heartbeat comes before it, long before a second.
    let started = Instant::now();
    let mut replies = send("mock-c2-f1200", "100ms").await;
    let first = replies.next().await.expect("a reply").expect("reply");
    assert_eq!(first.kind, ReplyKind::Heartbeat);
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    let (chunks, kind, _, _) = collect(replies, Encoding::Json).await;
    assert_eq!((kind, chunks.len()), (ReplyKind::Done, 2));
    // The default requester's header: a tenth of its first-reply window.
    let (_, kind, _, _) =
        collect(stack.send(&request(Platform::Claude, "mock-c2", "hi", true), Encoding::Json).await, Encoding::Json)
            .await;
    assert_eq!(kind, ReplyKind::Done);
}

/// A multiplexed requester (one `<inbox>.*` subscription, as the bridge uses): concurrent
/// streams each get exactly their own replies, and a request dropped early is cancelled
/// while the others go on.
#[tokio::test]
async fn multiplexed_requests_get_their_own_replies() {
    let stack = Stack::start().await;
    let requester = ailurus::client::Requester::multiplexed(stack.client.clone(), None).await.expect("mux");
    let mut tasks = Vec::new();
    for i in 0..60 {
        let requester = requester.clone();
        tasks.push(tokio::spawn(async move {
            let prompt = format!("question number {i}");
            let req = request(Platform::Claude, &format!("mock-c{}", 2 + i % 5), &prompt, true);
            let replies = requester.send(&req, Encoding::Json, HeaderMap::new()).await.expect("send");
            let (chunks, kind, resp, _) = collect(replies, Encoding::Json).await;
            assert_eq!(kind, ReplyKind::Done);
            assert_eq!(chunks.len(), 2 + i % 5, "request {i}");
            assert_eq!(resp.trace_id, req.trace_id);
            assert!(resp.content.contains(&prompt), "request {i} got {:?}", resp.content);
        }));
    }
    // One hanging request dropped after its first reply: cancelled, the rest unaffected.
    let req = request(Platform::Claude, "mock-hang", "never ends", true);
    let mut hanging = requester.send(&req, Encoding::Json, HeaderMap::new()).await.expect("send");
    let mut cancels =
        stack.client.subscribe(subjects::cancel(&Token::new("trace_id", &req.trace_id).unwrap())).await.unwrap();
    let _ = hanging.next().await.expect("first reply").expect("reply");
    drop(hanging);
    assert!(tokio::time::timeout(Duration::from_secs(2), cancels.next()).await.is_ok(), "cancel published");
    for t in tasks {
        t.await.expect("request task");
    }
}

#[tokio::test]
async fn stream_gives_chunks_then_done_in_json_and_msgpack() {
    let stack = Stack::start().await;
    for enc in [Encoding::Json, Encoding::MsgPack] {
        let req = request(Platform::Claude, "mock-c12", "hello there gateway", true);
        let mut at_once = HeaderMap::new();
        at_once.insert(headers::HEARTBEAT, "1");
        let replies = stack.requester().send(&req, enc, at_once).await.expect("send");
        let (chunks, kind, resp, heartbeats) = collect(replies, enc).await;
        assert_eq!(kind, ReplyKind::Done);
        assert!(heartbeats >= 1, "the requester asked for heartbeats and gets one at once");
        assert_eq!(chunks.len(), 12);
        assert!(chunks.iter().enumerate().all(|(i, (seq, _))| *seq == i as u64), "contiguous seq");
        let text: String = chunks.iter().map(|(_, d)| d.as_str()).collect();
        assert!(resp.success);
        assert_eq!(resp.content, text);
        assert!(text.starts_with("Mock answer to \"hello there gateway\""));
        assert_eq!(resp.trace_id, req.trace_id);
        assert_eq!(resp.model, "mock-c12");
        assert!(resp.tokens_input > 0 && resp.tokens_output > 0);
        assert!(resp.cost > 0.0);
        assert_eq!(resp.finish_reason.as_deref(), Some("stop"));
        assert!(!resp.usage_estimated);
    }
}

#[tokio::test]
async fn non_stream_request_gets_exactly_one_reply() {
    let stack = Stack::start().await;
    // As `nats req` sends it: no headers, a reply inbox, stream:false.
    let req = request(Platform::Gemini, "mock", "one reply please", false);
    let inbox = stack.client.new_inbox();
    let mut sub = stack.client.subscribe(inbox.clone()).await.unwrap();
    stack
        .client
        .publish_with_reply(subjects::request(Platform::Gemini), inbox, serde_json::to_vec(&req).unwrap().into())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert_eq!(ReplyKind::of(first.headers.as_ref()), Some(ReplyKind::Done));
    let resp: LLMNATSResponse = serde_json::from_slice(&first.payload).unwrap();
    assert!(resp.success && resp.content.contains("one reply please"));
    assert!(tokio::time::timeout(Duration::from_millis(500), sub.next()).await.is_err(), "a second reply arrived");

    // MessagePack in, MessagePack out, same single reply.
    let req = request(Platform::Gemini, "mock", "packed", false);
    let mut h = HeaderMap::new();
    h.insert("Content-Type", "application/msgpack");
    let inbox = stack.client.new_inbox();
    let mut sub = stack.client.subscribe(inbox.clone()).await.unwrap();
    let body = rmp_serde::to_vec_named(&req).unwrap();
    stack
        .client
        .publish_with_reply_and_headers(subjects::request(Platform::Gemini), inbox, h, body.into())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    let resp: LLMNATSResponse = decode(Encoding::MsgPack, &first.payload).unwrap();
    assert!(resp.success && resp.content.contains("packed"));
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err());
}

#[tokio::test]
async fn without_reply_subject_replies_go_to_llm_response_trace_id() {
    let stack = Stack::start().await;
    let req = request(Platform::Codex, "mock-c3", "default subject", true);
    let trace = Token::new("trace_id", &req.trace_id).unwrap();
    let mut sub = stack.client.subscribe(subjects::response(&trace)).await.unwrap();
    stack.client.flush().await.unwrap();
    stack.client.publish(subjects::request(Platform::Codex), serde_json::to_vec(&req).unwrap().into()).await.unwrap();
    let mut kinds = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
        let kind = ReplyKind::of(msg.headers.as_ref()).unwrap();
        kinds.push(kind);
        if kind.is_final() {
            break;
        }
    }
    let chunks = kinds.iter().filter(|k| **k == ReplyKind::Chunk).count();
    assert_eq!(chunks, 3);
    assert_eq!(kinds.last(), Some(&ReplyKind::Done));
}

#[tokio::test]
async fn three_workers_share_300_requests_each_answered_once() {
    let mut stack = Stack::server_only().await;
    // Quiet background ticks (liveness, reaper) so message counts are requests only.
    let mut config = common::open_config();
    config.worker.liveness_ms = 600_000;
    config.worker.reaper_ms = 600_000;
    for _ in 0..3 {
        stack.add_worker(config.clone()).await;
    }
    let counts = |stack: &Stack| -> Vec<u64> {
        stack
            .worker_clients
            .iter()
            .map(|c| c.statistics().in_messages.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    };
    // The workers' start-up replies (bucket lookups, watches) may still be arriving: start
    // counting once the counts stand still for 200 ms.
    let mut before = counts(&stack);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = counts(&stack);
        if now == before || Instant::now() > deadline {
            break;
        }
        before = now;
    }
    let mut tasks = Vec::new();
    for i in 0..300 {
        let client = stack.client.clone();
        tasks.push(tokio::spawn(async move {
            let req = request(Platform::Openai, "mock-c2", &format!("request {i}"), false);
            let inbox = client.new_inbox();
            let mut sub = client.subscribe(inbox.clone()).await.unwrap();
            client
                .publish_with_reply(
                    subjects::request(Platform::Openai),
                    inbox,
                    serde_json::to_vec(&req).unwrap().into(),
                )
                .await
                .unwrap();
            let msg = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.unwrap().unwrap();
            let resp: LLMNATSResponse = serde_json::from_slice(&msg.payload).unwrap();
            assert!(resp.success);
            assert_eq!(resp.trace_id, req.trace_id);
            // Exactly once: nothing else arrives for this request.
            assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let served: Vec<u64> = stack
        .worker_clients
        .iter()
        .zip(&before)
        .map(|(c, b)| c.statistics().in_messages.load(std::sync::atomic::Ordering::Relaxed) - b)
        .collect();
    assert_eq!(served.iter().sum::<u64>(), 300, "each request delivered to exactly one worker: {served:?}");
    assert!(served.iter().all(|n| *n >= 40), "load is shared: {served:?}");
}

#[tokio::test]
async fn no_worker_is_known_within_a_second() {
    let stack = Stack::server_only().await;
    let req = request(Platform::Claude, "mock", "anyone?", true);
    // Plain core NATS: the server's no-responders status.
    let t = Instant::now();
    let mut replies = stack.send(&req, Encoding::Json).await;
    assert_eq!(replies.next().await.unwrap().unwrap_err(), ClientError::NoWorker);
    assert!(t.elapsed() < Duration::from_millis(1100), "{:?}", t.elapsed());
    // With LLM_REQUESTS capturing llm.request.* the stream hides no-responders; the
    // missing heartbeat still tells within the first-reply window, and no PubAck leaks.
    stack.apply_streams().await;
    let t = Instant::now();
    let mut replies = stack.send(&request(Platform::Claude, "mock", "anyone?", false), Encoding::Json).await;
    assert_eq!(replies.next().await.unwrap().unwrap_err(), ClientError::NoWorker);
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
}

/// A worker is announced ("worker serving", `worker::start` returning) only once the server
/// holds its subscriptions: a flush alone writes them to the socket, and a request from
/// another connection could still find no worker (seen on loaded CI machines). Each round
/// is a fresh server, so nothing else is subscribed.
#[tokio::test]
async fn a_started_worker_takes_the_very_next_request() {
    for round in 0..10 {
        let mut stack = Stack::server_only().await;
        stack.add_worker(common::open_config()).await;
        let mut replies = stack.send(&request(Platform::Openai, "mock-c1", "first", false), Encoding::Json).await;
        let reply = replies.next().await.expect("a reply");
        let reply = reply.unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(reply.kind, ReplyKind::Done, "round {round}");
    }
}

#[tokio::test]
async fn requests_are_captured_for_audit_without_a_pub_ack_reply() {
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    stack.add_worker(common::open_config()).await;
    let req = request(Platform::Claude, "mock-c2", "audited", false);
    let inbox = stack.client.new_inbox();
    let mut sub = stack.client.subscribe(inbox.clone()).await.unwrap();
    stack
        .client
        .publish_with_reply(subjects::request(Platform::Claude), inbox, serde_json::to_vec(&req).unwrap().into())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
    assert_eq!(ReplyKind::of(first.headers.as_ref()), Some(ReplyKind::Done), "first reply is the answer, not a PubAck");
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err());
    let js = async_nats::jetstream::new(stack.client.clone());
    let mut stream = js.get_stream("LLM_REQUESTS").await.unwrap();
    // The request, and the audit copy of its final reply on llm.response.<trace_id>.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
    let trace = Token::new("trace_id", &req.trace_id).unwrap();
    let copy = stream.direct_get_last_for_subject(subjects::response(&trace)).await;
    let copy = match copy {
        Ok(m) => m.payload,
        Err(_) => stream.get_last_raw_message_by_subject(&subjects::response(&trace)).await.unwrap().payload,
    };
    let resp: LLMNATSResponse = serde_json::from_slice(&copy).unwrap();
    assert!(resp.success && resp.content.contains("audited"));
}

#[tokio::test]
async fn worker_killed_mid_stream_gives_a_bounded_error() {
    let stack = Stack::server_only().await;
    let mut worker = WorkerProcess::start(&stack.server.url);
    let req = request(Platform::Claude, "mock-c50-d200", "long answer", true);
    let mut replies = stack.send(&req, Encoding::Json).await;
    // Wait for the first chunk, then kill the worker.
    loop {
        let r = replies.next().await.unwrap().unwrap();
        if r.kind == ReplyKind::Chunk {
            break;
        }
    }
    worker.signal("KILL");
    assert!(worker.wait_exit(Duration::from_secs(5)).is_some());
    let t = Instant::now();
    let err = loop {
        match replies.next().await {
            Some(Ok(r)) => assert!(!r.kind.is_final(), "a dead worker cannot finish"),
            Some(Err(e)) => break e,
            None => panic!("sequence ended without an error"),
        }
    };
    assert!(matches!(err, ClientError::WorkerSilent(_)), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
}

/// One data-driven bad-input case from `tests/fixtures/seed/bad_requests.json`.
#[derive(serde::Deserialize)]
struct BadCase {
    name: String,
    subject: String,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    json: Option<serde_json::Value>,
    status: u16,
    error: String,
}

/// Send `payload` on `subject` and return (status, error text) of the error reply.
async fn check_error(stack: &Stack, subject: &str, payload: Bytes) -> (u16, String) {
    let inbox = stack.client.new_inbox();
    let mut sub = stack.client.subscribe(inbox.clone()).await.unwrap();
    stack.client.publish_with_reply(subject.to_string(), inbox, payload).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.expect("no reply").unwrap();
    let h = msg.headers.expect("headers");
    assert_eq!(h.get(headers::KIND).map(|v| v.as_str()), Some("error"));
    let status = h.get(headers::STATUS).and_then(|v| v.as_str().parse().ok()).expect("status");
    let resp: LLMNATSResponse = serde_json::from_slice(&msg.payload).expect("error body is an LLMNATSResponse");
    assert!(!resp.success);
    (status, resp.error.unwrap_or_default())
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_worker_keeps_serving() {
    // `mock*` only, so the fixture's unknown model is one.
    let mut stack = Stack::server_only().await;
    stack.add_worker(common::mock_names_only(common::open_config())).await;
    let cases: Vec<BadCase> =
        serde_json::from_str(include_str!("fixtures/seed/bad_requests.json")).expect("fixture parses");
    assert!(cases.len() >= 20);
    let long = "x".repeat(200);
    for case in &cases {
        let payload = match (&case.payload, &case.json) {
            (Some(p), _) => Bytes::from(p.clone()),
            (None, Some(j)) => Bytes::from(j.to_string().replace("REPEAT_200", &long)),
            (None, None) => panic!("{}: no payload", case.name),
        };
        let (status, error) = check_error(&stack, &case.subject, payload).await;
        assert_eq!(status, case.status, "{}: {error}", case.name);
        assert!(error.contains(&case.error), "{}: {error:?} lacks {:?}", case.name, case.error);
    }
    // A payload over the server's max_payload (8 MB in tests) is refused to the publisher.
    let huge = request(Platform::Claude, "mock", &"x".repeat(9 * 1024 * 1024), false);
    let err = stack.requester().send(&huge, Encoding::Json, HeaderMap::new()).await.err().expect("refused");
    assert!(matches!(&err, ClientError::Publish(m) if m.contains("payload")), "{err:?}");
    // Still serving.
    let (_, kind, resp, _) = collect(
        stack.send(&request(Platform::Claude, "mock", "still there?", false), Encoding::Json).await,
        Encoding::Json,
    )
    .await;
    assert_eq!(kind, ReplyKind::Done);
    assert!(resp.content.contains("still there?"));
}

#[tokio::test]
async fn upstream_failures_are_errors_with_status() {
    let stack = Stack::start().await;
    let (_, kind, resp, _) =
        collect(stack.send(&request(Platform::Claude, "mock-error", "x", true), Encoding::Json).await, Encoding::Json)
            .await;
    assert_eq!(kind, ReplyKind::Error);
    assert!(resp.error.as_deref().unwrap().contains("upstream status 500"));
    // Mid-stream failure: chunks were delivered, then an error that keeps what was delivered.
    let (chunks, kind, resp, _) = collect(
        stack.send(&request(Platform::Claude, "mock-midfail", "x", true), Encoding::Json).await,
        Encoding::Json,
    )
    .await;
    assert_eq!(kind, ReplyKind::Error);
    assert_eq!(chunks.len(), 2);
    assert_eq!(resp.content, chunks.iter().map(|c| c.1.as_str()).collect::<String>());
    assert!(resp.error.as_deref().unwrap().contains("mid-stream"));
    assert!(resp.usage_estimated && resp.tokens_output > 0, "billing counts only what was delivered");
}

#[tokio::test]
async fn cancel_stops_the_work() {
    let stack = Stack::start().await;
    let req = request(Platform::Claude, "mock-hang", "never ends", true);
    let trace = Token::new("trace_id", &req.trace_id).unwrap();
    let mut replies = stack.send(&req, Encoding::Json).await;
    loop {
        if replies.next().await.unwrap().unwrap().kind == ReplyKind::Chunk {
            break;
        }
    }
    let t = Instant::now();
    stack.client.publish(subjects::cancel(&trace), Bytes::new()).await.unwrap();
    let last = loop {
        let r = replies.next().await.unwrap().unwrap();
        if r.kind.is_final() {
            break r;
        }
    };
    assert_eq!(last.kind, ReplyKind::Error);
    assert_eq!(last.status, Some(499));
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
}

#[tokio::test]
async fn duplicate_trace_in_flight_is_refused() {
    let stack = Stack::start().await;
    let req = request(Platform::Claude, "mock-hang", "first", true);
    let mut first = stack.send(&req, Encoding::Json).await;
    assert_eq!(first.next_content().await.unwrap().unwrap().kind, ReplyKind::Chunk);
    let (_, kind, resp, _) = collect(stack.send(&req, Encoding::Json).await, Encoding::Json).await;
    assert_eq!(kind, ReplyKind::Error);
    assert!(resp.error.unwrap().contains("already in flight"));
}

#[tokio::test]
async fn saturated_worker_answers_a_fast_503_with_retry_after() {
    let mut stack = Stack::server_only().await;
    let mut config = common::open_config();
    config.worker.concurrency = 1;
    config.worker.max_queued = 0;
    stack.add_worker(config).await;
    let mut busy = stack.send(&request(Platform::Claude, "mock-hang", "occupy", true), Encoding::Json).await;
    assert_eq!(busy.next_content().await.unwrap().unwrap().kind, ReplyKind::Chunk);
    let t = Instant::now();
    let mut replies = stack.send(&request(Platform::Claude, "mock", "overflow", false), Encoding::Json).await;
    let last = replies.next_content().await.unwrap().unwrap();
    assert_eq!(last.kind, ReplyKind::Error);
    assert_eq!(last.status, Some(503));
    assert_eq!(last.headers.get("Retry-After").map(|v| v.as_str()), Some("1"));
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn sigterm_drains_ten_in_flight_streams() {
    let stack = Stack::server_only().await;
    let mut worker = WorkerProcess::start(&stack.server.url);
    let mut all = Vec::new();
    for i in 0..10 {
        // The worker's subscription travels on its own connection: on a loaded machine the
        // server may not have it yet when its "serving" line is read, so the first request
        // may meet no responder; it is sent again then (at most 5 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let replies = loop {
            let mut replies = stack
                .send(&request(Platform::Claude, "mock-c10-d100", &format!("drain {i}"), true), Encoding::Json)
                .await;
            match replies.next_content().await.unwrap() {
                Ok(first) => {
                    assert_eq!(first.kind, ReplyKind::Chunk);
                    break replies;
                }
                Err(ClientError::NoWorker) if i == 0 && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("drain {i}: {e:?}"),
            }
        };
        all.push(replies);
    }
    worker.signal("TERM");
    // After SIGTERM the worker takes nothing new: within moments (the unsubscribe reaches the
    // server), a request finds no worker. One taken before that is still answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut late = stack.send(&request(Platform::Claude, "mock", "too late", false), Encoding::Json).await;
        match late.next().await.unwrap() {
            Err(ClientError::NoWorker) => break,
            Ok(_) if std::time::Instant::now() < deadline => {
                let (_, kind, _, _) = collect(late, Encoding::Json).await;
                assert_eq!(kind, ReplyKind::Done, "a request taken before the unsubscribe is answered");
            }
            other => panic!("5 s after SIGTERM the worker still takes requests: {other:?}"),
        }
    }
    // ...but finishes every stream it had.
    for replies in all {
        let (chunks, kind, resp, _) = collect(replies, Encoding::Json).await;
        assert_eq!(kind, ReplyKind::Done);
        assert_eq!(chunks.len(), 9, "the 9 chunks after the first");
        assert!(resp.success);
    }
    let status = worker.wait_exit(Duration::from_secs(10)).expect("worker exits after draining");
    assert!(status.success(), "{status:?}");
}

/// `[worker] metrics_listen`: Prometheus text on `GET /metrics`, with the worker's own
/// overhead (`gateway_overhead_seconds`: total minus the upstream call) per platform.
#[tokio::test]
async fn worker_serves_its_metrics_with_gateway_overhead() {
    let mut stack = Stack::server_only().await;
    let port = ailurus::nats_server::free_port().expect("port");
    let mut config = common::open_config();
    config.worker.metrics_listen = Some(format!("127.0.0.1:{port}"));
    stack.add_worker(config).await;
    for _ in 0..3 {
        let req = request(Platform::Claude, "mock-c2", "count me", false);
        let replies = stack.requester().send(&req, Encoding::Json, HeaderMap::new()).await.expect("send");
        let (_, kind, _, _) = collect(replies, Encoding::Json).await;
        assert_eq!(kind, ReplyKind::Done);
    }
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.expect("GET").text().await.expect("body");
    assert!(text.contains("ailurus_worker_requests_total{platform=\"claude\",status=\"200\"} 3"), "{text}");
    assert!(text.contains("gateway_overhead_seconds_count{platform=\"claude\"} 3"), "{text}");
    assert!(
        text.contains("ailurus_worker_request_duration_seconds_bucket{platform=\"claude\",le=\"+Inf\"} 3"),
        "{text}"
    );
}
