//! OpenTelemetry end to end: an OTLP/HTTP receiver inside the test decodes what a worker
//! exports, and the spans, their attributes and parentage, the upstream's `traceparent` and
//! the GenAI metrics are checked against what the client sent and the scripted upstream
//! reported.

mod common;

use ailurus::bus::headers;
use ailurus::bus::subjects::{self, Token};
use ailurus::config::Config;
use ailurus::formats::Format;
use ailurus::protocol::LLMNATSResponse;
use async_nats::HeaderMap;
use axum::body::Bytes;
use common::upstream::{Api, Fault, Upstream, Usage};
use common::{platform_of, Stack};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for an export to arrive.
const WAIT: Duration = Duration::from_secs(15);

/// A histogram point's key: the metric's name and the point's attributes.
type PointKey = (String, BTreeMap<String, String>);

/// What the receiver got.
#[derive(Default)]
struct Received {
    /// Every span, in arrival order.
    spans: Vec<Span>,
    /// Histogram points: (metric, attributes) → (unit, count, sum), the latest export's
    /// (the exporter's temporality is cumulative).
    histograms: BTreeMap<PointKey, (String, u64, f64)>,
}

/// An OTLP/HTTP receiver on 127.0.0.1 (`POST /v1/traces`, `POST /v1/metrics`, protobuf).
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let (traces, metrics) = (got.clone(), got.clone());
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                let mut g = traces.lock().unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        g.spans.extend(ss.spans);
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::new())
            }),
        )
        .route(
            "/v1/metrics",
            axum::routing::post(move |body: Bytes| async move {
                let req = ExportMetricsServiceRequest::decode(body).expect("an OTLP metrics export");
                let mut g = metrics.lock().unwrap();
                for m in req.resource_metrics.into_iter().flat_map(|r| r.scope_metrics).flat_map(|s| s.metrics) {
                    if let Some(Data::Histogram(h)) = m.data {
                        for p in h.data_points {
                            let key = (m.name.clone(), attrs(&p.attributes));
                            g.histograms.insert(key, (m.unit.clone(), p.count, p.sum.unwrap_or_default()));
                        }
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::new())
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

/// Attributes as strings (arrays joined with `,`).
fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                Some(AnyValue::ArrayValue(a)) => a
                    .values
                    .iter()
                    .filter_map(|v| match &v.value {
                        Some(AnyValue::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh W3C trace id and parent span id (hex).
fn client_trace() -> (String, String) {
    let t = format!("{:016x}{:016x}", fastrand::u64(1..), fastrand::u64(..));
    (t, format!("{:016x}", fastrand::u64(1..)))
}

/// The spans of `trace` once its request span has arrived with `attempts` attempt spans.
async fn trace_spans(got: &Mutex<Received>, trace: &str, attempts: usize) -> Vec<Span> {
    let end = Instant::now() + WAIT;
    loop {
        let spans: Vec<Span> =
            got.lock().unwrap().spans.iter().filter(|s| hex(&s.trace_id) == trace).cloned().collect();
        let chat = spans.iter().any(|s| s.name.starts_with("chat "));
        let tried = spans.iter().filter(|s| s.name.starts_with("attempt ")).count();
        if chat && tried >= attempts && spans.iter().any(|s| s.name == "admission") {
            return spans;
        }
        assert!(Instant::now() < end, "spans of trace {trace} did not arrive: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker (open mode) exporting to `endpoint`, on a channel that always fails (tried
/// first) and one that answers with `usage`.
async fn gateway(endpoint: &str, capture: bool, bad: &Upstream, good: &Upstream) -> Stack {
    std::env::set_var("AILURUS_T_OTEL_KEY", "sk-otel-test");
    let channel = |name: &str, up: &Upstream, priority: i32| {
        format!(
            "[[channels]]\nname = \"{name}\"\nkind = \"anthropic\"\nbase_url = \"{}\"\n\
             api_key_env = [\"AILURUS_T_OTEL_KEY\"]\nmodels = [\"claude-*\"]\npriority = {priority}\n",
            up.base_url(Api::Anthropic)
        )
    };
    let cfg = format!(
        "[auth]\nmode = \"open\"\n[routing]\nbuiltin_mock = false\naffinity = false\ncooldown_base_ms = 60000\n\
         [telemetry]\notlp_endpoint = \"{endpoint}\"\nexport_interval_ms = 100\ncapture_content = {capture}\n{}{}",
        channel("otel-bad", bad, 10),
        channel("otel-good", good, 0)
    );
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    stack.add_worker(Config::from_toml(&cfg).unwrap_or_else(|e| panic!("{e}\n{cfg}"))).await;
    // Serving once a model list is answered (a list makes no span).
    let end = Instant::now() + WAIT;
    loop {
        let mut h = HeaderMap::new();
        h.insert(headers::FORMAT, Format::AnthropicMessages.as_str());
        h.insert(headers::OP, "models");
        let subject = subjects::request(platform_of(Format::AnthropicMessages));
        let sent = stack.requester().send_raw(subject, h, Bytes::new(), Some(Token::random())).await;
        if let Ok(mut replies) = sent {
            if let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), replies.next()).await {
                break;
            }
        }
        assert!(Instant::now() < end, "the worker did not start serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack
}

/// Send an Anthropic body over NATS with `extra` headers; the final summary (a `done`).
async fn send_nats(stack: &Stack, body: &Value, extra: &[(&str, &str)]) -> LLMNATSResponse {
    let (kind, resp) = send_kind(stack, body, extra).await;
    assert_eq!(kind, headers::ReplyKind::Done, "{resp:?}");
    resp
}

/// Send an Anthropic body over NATS with `extra` headers; the final reply's kind and body.
async fn send_kind(stack: &Stack, body: &Value, extra: &[(&str, &str)]) -> (headers::ReplyKind, LLMNATSResponse) {
    let trace = Token::random();
    let mut h = HeaderMap::new();
    h.insert(headers::FORMAT, Format::AnthropicMessages.as_str());
    h.insert(headers::TRACE, trace.as_str());
    for (k, v) in extra {
        h.insert(*k, *v);
    }
    let subject = subjects::request(platform_of(Format::AnthropicMessages));
    let payload = serde_json::to_vec(body).expect("body").into();
    let mut replies = stack.requester().send_raw(subject, h, payload, Some(trace)).await.expect("send");
    loop {
        let r = tokio::time::timeout(WAIT, replies.next()).await.expect("reply in time").expect("a final reply");
        let r = r.expect("reply");
        if matches!(r.kind, headers::ReplyKind::Done | headers::ReplyKind::Error) {
            return (r.kind, serde_json::from_slice(&r.payload).unwrap_or_default());
        }
    }
}

fn named<'a>(spans: &'a [Span], prefix: &str) -> Vec<&'a Span> {
    let mut v: Vec<&Span> = spans.iter().filter(|s| s.name.starts_with(prefix)).collect();
    v.sort_by_key(|s| s.start_time_unix_nano);
    v
}

#[tokio::test]
async fn genai_spans_and_metrics_follow_the_client_trace_through_bridge_nats_and_upstream() {
    let (endpoint, got) = receiver().await;
    let (bad, good) = (Upstream::start().await, Upstream::start().await);
    bad.fault(Fault::status(503));
    let usage = Usage { input: 21, output: 9, cache_read: 5, cache_write: 0 };
    good.script(|s| s.usage = usage);
    let stack = gateway(&endpoint, false, &bad, &good).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bridge = format!("http://{}", listener.local_addr().expect("addr"));
    let (client, shutdown) = (stack.client.clone(), stack.shutdown.clone());
    tokio::spawn(async move { ailurus::bridge::serve(listener, client, Default::default(), shutdown).await });

    // 1. Over HTTP through the bridge, streamed: the first channel fails before the first
    //    byte, the second serves.
    let (t1, p1) = client_trace();
    let body = json!({"model": "claude-otel", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "secret prompt words"}]});
    let resp = reqwest::Client::new()
        .post(format!("{bridge}/v1/messages"))
        .header("traceparent", format!("00-{t1}-{p1}-01"))
        .json(&body)
        .timeout(WAIT)
        .send()
        .await
        .expect("bridge answers");
    let status = resp.status();
    let text = resp.text().await.expect("stream");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("message_stop"), "{text}");

    // 2. A plain NATS client sends its traceparent in the request's headers, whole answer.
    let (t2, p2) = client_trace();
    let whole = json!({"model": "claude-otel", "max_tokens": 32,
        "messages": [{"role": "user", "content": "secret prompt words"}]});
    let summary = send_nats(&stack, &whole, &[("traceparent", &format!("00-{t2}-{p2}-01"))]).await;

    // Each request: one chat span, child of the client's span, with the GenAI attributes.
    let served = good.requests();
    for (trace, parent, attempts, max_tokens, stream) in [(&t1, &p1, 2, "64", "true"), (&t2, &p2, 1, "32", "false")] {
        let spans = trace_spans(&got, trace, attempts).await;
        let chats = named(&spans, "chat ");
        assert_eq!(chats.len(), 1, "{chats:#?}");
        let chat = chats[0];
        assert_eq!(chat.name, "chat claude-otel");
        assert_eq!(hex(&chat.parent_span_id), *parent, "the request span's parent is the client's span");
        let a = attrs(&chat.attributes);
        println!("{} (trace {trace}, parent {parent}):", chat.name);
        for s in &spans {
            println!("  {} {:?} {:?}", s.name, attrs(&s.attributes), s.status);
        }
        let want = [
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.provider.name", "anthropic"),
            ("gen_ai.request.model", "claude-otel"),
            ("gen_ai.response.model", "claude-otel"),
            ("gen_ai.request.max_tokens", max_tokens),
            ("gen_ai.request.stream", stream),
            ("gen_ai.usage.input_tokens", &usage.prompt_total(Api::Anthropic).to_string()),
            ("gen_ai.usage.output_tokens", &usage.output.to_string()),
            ("gen_ai.usage.cache_read.input_tokens", &usage.cache_read.to_string()),
            ("server.address", "127.0.0.1"),
        ];
        for (k, v) in want {
            assert_eq!(a.get(k).map(String::as_str), Some(v), "{k} on {a:#?}");
        }
        assert!(a.get("gen_ai.response.finish_reasons").is_some_and(|f| !f.is_empty()), "{a:#?}");
        assert!(!a.contains_key("error.type"), "{a:#?}");
        // Content stays out unless opted in.
        for k in ["gen_ai.input.messages", "gen_ai.output.messages"] {
            assert!(!a.contains_key(k), "{k} without capture_content");
        }
        assert!(spans.iter().all(|s| !format!("{:?}", s.attributes).contains("secret prompt")));
        // Admission and attempts are the request span's children.
        let admission = named(&spans, "admission");
        let tried = named(&spans, "attempt ");
        assert_eq!(admission.len(), 1);
        assert_eq!(tried.len(), attempts, "{tried:#?}");
        for s in admission.iter().chain(&tried) {
            assert_eq!(s.parent_span_id, chat.span_id, "{} is a child of the request span", s.name);
        }
        let last = tried[attempts - 1];
        assert_eq!(last.name, "attempt otel-good");
        assert_ne!(last.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32));
        // The upstream got a traceparent of the client's trace, naming the attempt's span.
        let seen = served
            .iter()
            .filter_map(|r| r.header("traceparent"))
            .find(|tp| tp.contains(trace.as_str()))
            .unwrap_or_else(|| panic!("no upstream request carried trace {trace}"));
        assert_eq!(seen, format!("00-{trace}-{}-01", hex(&last.span_id)));
        if attempts == 2 {
            let first = tried[0];
            assert_eq!(first.name, "attempt otel-bad");
            assert_eq!(first.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32), "{first:#?}");
            assert_eq!(attrs(&first.attributes).get("error.type").map(String::as_str), Some("503"));
        } else {
            let f = a.get("gen_ai.response.finish_reasons").cloned().unwrap_or_default();
            assert_eq!(Some(f), summary.finish_reason, "the span's finish reason is the reply's");
        }
    }

    // Metrics: token sums are the upstream's numbers times the two requests.
    let end = Instant::now() + WAIT;
    loop {
        let (input, output, durations, first) = {
            let g = got.lock().unwrap();
            let sum = |name: &str, kind: &str| -> f64 {
                g.histograms
                    .iter()
                    .filter(|((n, a), _)| n == name && a.get("gen_ai.token.type").map(String::as_str) == Some(kind))
                    .map(|(_, (_, _, s))| s)
                    .sum()
            };
            let count = |name: &str, unit: &str| -> u64 {
                g.histograms.iter().filter(|((n, _), (u, _, _))| n == name && u == unit).map(|(_, (_, c, _))| c).sum()
            };
            (
                sum("gen_ai.client.token.usage", "input"),
                sum("gen_ai.client.token.usage", "output"),
                count("gen_ai.client.operation.duration", "s"),
                count("gen_ai.server.time_to_first_token", "s"),
            )
        };
        let want_in = 2.0 * usage.prompt_total(Api::Anthropic) as f64;
        let want_out = 2.0 * usage.output as f64;
        if input == want_in && output == want_out && durations == 2 && first == 2 {
            break;
        }
        assert!(
            Instant::now() < end,
            "metrics: input {input} (want {want_in}), output {output} (want {want_out}), \
             durations {durations}, first chunks {first} (want 2 each)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn content_is_captured_only_when_opted_in_and_a_request_without_traceparent_is_a_root() {
    let (endpoint, got) = receiver().await;
    let (bad, good) = (Upstream::start().await, Upstream::start().await);
    bad.fault(Fault::status(500));
    let stack = gateway(&endpoint, true, &bad, &good).await;
    let body = json!({"model": "claude-otel", "max_tokens": 32,
        "messages": [{"role": "user", "content": "captured prompt words"}]});
    let summary = send_nats(&stack, &body, &[]).await;
    let end = Instant::now() + WAIT;
    let chat = loop {
        let found = got.lock().unwrap().spans.iter().find(|s| s.name == "chat claude-otel").cloned();
        if let Some(s) = found {
            break s;
        }
        assert!(Instant::now() < end, "no request span arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(chat.parent_span_id.is_empty(), "no traceparent: the request span is a root");
    let a = attrs(&chat.attributes);
    let input = a.get("gen_ai.input.messages").expect("input captured");
    assert!(input.contains("captured prompt words"), "{input}");
    let output = a.get("gen_ai.output.messages").expect("output captured");
    assert!(!summary.content.is_empty() && output.contains(&summary.content), "{output} vs {}", summary.content);

    // Every channel fails: the request span carries the gateway's status as `error.type`.
    good.fault(Fault::status(500));
    let (t, p) = client_trace();
    let (kind, _) = send_kind(&stack, &body, &[("traceparent", &format!("00-{t}-{p}-01"))]).await;
    assert_eq!(kind, headers::ReplyKind::Error);
    let spans = trace_spans(&got, &t, 1).await;
    let chat = named(&spans, "chat ")[0];
    assert_eq!(chat.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32), "{chat:#?}");
    let a = attrs(&chat.attributes);
    assert_eq!(a.get("error.type").map(String::as_str), Some("502"), "{a:#?}");
    assert!(!a.contains_key("gen_ai.output.messages"), "no answer, nothing captured");
    assert_eq!(named(&spans, "attempt otel-good").len(), 1);
}

#[test]
fn the_readme_telemetry_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(path).expect("README");
    let section = readme.split("### Traces and metrics (OpenTelemetry)").nth(1).expect("the telemetry section");
    let text = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("its config");
    let config = Config::from_toml(text).unwrap_or_else(|e| panic!("README config: {e}"));
    assert_eq!(config.telemetry.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
    assert!(!config.telemetry.capture_content, "content is off by default");
    let bad = Config::from_toml("[telemetry]\notlp_endpint = \"http://x\"\n").expect_err("a typo is an error");
    assert!(bad.0.contains("otlp_endpint"), "{bad}");
}
