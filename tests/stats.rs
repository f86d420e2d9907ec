//! Usage statistics kept at write time (issue 17, point 4): the rollups two workers merge
//! equal the ledger, `/api/data/…` answers in NEW-API's shape and by role, `ailurus stats`
//! prints them, and `ailurus stats rebuild` restores them from the ledger — also with old
//! records and beside live traffic.

mod common;

use ailurus::bus::subjects::Token;
use ailurus::config::Config;
use ailurus::quota::ledger::{self, UsageRecord};
use common::mgmt::{Cred, Mgmt};
use serde_json::{json, Value};
use std::time::Duration;

/// One chat through the bridge as `who` with `model`; its HTTP status.
async fn chat(m: &Mgmt, who: &str, model: &str, stream: bool) -> u16 {
    let resp = m
        .request(&m.bearer(who), "POST", "/v1/chat/completions")
        .body(
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "count me"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    status
}

/// The ledger's usage records.
async fn ledger_usage(m: &Mgmt) -> Vec<UsageRecord> {
    let js = async_nats::jetstream::new(m.stack.client.clone());
    ledger::read_all(&js, None).await.unwrap().into_iter().filter(|r| r.kind == "usage").collect()
}

/// `/api/data/stats` (as `cred`, at `path`) once its totals count `n` requests.
async fn stats_with(m: &Mgmt, cred: &Cred, path: &str, n: u64) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (s, v) = m.call(cred, "GET", path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        if v["data"]["totals"]["requests"].as_u64() == Some(n) {
            return v["data"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{path}: totals never reached {n}: {}",
            v["data"]["totals"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sums a report's totals must equal: (requests, errors, quota, tokens).
fn sums(records: &[&UsageRecord]) -> (u64, u64, i64, u64) {
    (
        records.len() as u64,
        records.iter().filter(|r| r.status >= 400).count() as u64,
        records.iter().map(|r| r.quota).sum(),
        records.iter().map(|r| r.input_tokens + r.output_tokens + r.cache_read_tokens + r.cache_write_tokens).sum(),
    )
}

fn totals(v: &Value) -> (u64, u64, i64, u64) {
    let t = &v["totals"];
    (
        t["requests"].as_u64().unwrap(),
        t["errors"].as_u64().unwrap(),
        t["quota"].as_i64().unwrap(),
        t["tokens"].as_u64().unwrap(),
    )
}

fn cli(m: &Mgmt, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .args(args)
        .env("NATS_URL", &m.stack.server.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "ailurus {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn two_workers_rollups_equal_the_ledger_and_each_role_sees_its_own() {
    let m = Mgmt::start(2, Config::default()).await;
    // Enough for both workers' quota leases at once (each takes several requests' worst case).
    for who in ["alice", "bob"] {
        m.quota.topup(&Token::new("user_id", who).unwrap(), 500_000_000).await.unwrap();
    }
    let plan = [
        ("alice", "mock-a", false),
        ("alice", "mock-b", true),
        ("alice", "mock-a", true),
        ("bob", "mock-b", false),
        ("bob", "mock-error", false),
        ("alice", "mock-a", false),
    ];
    let sent = futures::future::join_all(plan.iter().map(|(who, model, stream)| chat(&m, who, model, *stream))).await;
    assert_eq!(sent.iter().filter(|s| **s == 200).count(), 5, "{sent:?}");
    for (who, n) in [("alice", 4), ("bob", 2)] {
        common::usage_records(&m.stack.client, &Token::new("user_id", who).unwrap(), n, Duration::from_secs(20)).await;
    }
    let records = ledger_usage(&m).await;
    assert_eq!(records.len(), 6);
    let root = m.access("root");
    let all = stats_with(&m, &root, "/api/data/stats", 6).await;
    assert_eq!(totals(&all), sums(&records.iter().collect::<Vec<_>>()), "{}", all["totals"]);
    assert_eq!(all["bucket"], "hour");
    let by = |split: &str, name: &str| {
        all[split].as_array().unwrap().iter().find(|r| r["name"] == name).map(|r| r["requests"].as_u64().unwrap())
    };
    assert_eq!(
        (by("by_model", "mock-a"), by("by_model", "mock-b"), by("by_model", "mock-error")),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!((by("by_user", "alice"), by("by_user", "bob")), (Some(4), Some(2)));
    assert_eq!(all["totals"]["errors_5xx"].as_u64(), Some(1), "mock-error is a 5xx: {}", all["totals"]);
    for pct in ["latency_ms", "ttft_ms"] {
        let p = &all["totals"][pct];
        assert!(p["avg"].is_number() && p["p50"].is_number() && p["p99"].is_number(), "{pct}: {p}");
    }
    let now = ailurus::bus::proof::now_secs();
    let cell = &all["heatmap"][all["heatmap"].as_array().unwrap().len() - 1];
    assert_eq!(cell["hour"].as_i64(), Some((now % 86_400) / 3_600), "{}", all["heatmap"]);
    // NEW-API's rows: per model and hour, everyone's for an admin, one user's with username.
    let (s, rows) = m.call(&root, "GET", "/api/data/", None).await;
    assert_eq!(s, 200, "{rows}");
    let count: u64 = rows["data"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(count, 6, "{rows}");
    let row = &rows["data"][0];
    assert!(
        row["model_name"].is_string()
            && row["created_at"].is_i64()
            && row["token_used"].is_u64()
            && row["quota"].is_i64()
    );
    let (_, bob_rows) = m.call(&m.access("ada"), "GET", "/api/data/?username=bob", None).await;
    let bob_count: u64 = bob_rows["data"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(bob_count, 2, "{bob_rows}");
    // alice sees hers only, and no one else's.
    let alice = m.bearer("alice");
    let mine = stats_with(&m, &alice, "/api/data/self/stats", 4).await;
    let her: Vec<&UsageRecord> = records.iter().filter(|r| r.user_id == "alice").collect();
    assert_eq!(totals(&mine), sums(&her));
    assert!(mine["by_user"].as_array().unwrap().is_empty(), "{}", mine["by_user"]);
    let (s, v) = m.call(&alice, "GET", "/api/data/self", None).await;
    let her_count: u64 = v["data"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!((s, her_count), (200, 4), "{v}");
    for path in ["/api/data/", "/api/data/stats", "/api/data/?username=bob", "/api/data/stats?username=bob"] {
        let (s, v) = m.call(&alice, "GET", path, None).await;
        assert_eq!((s, v["success"].as_bool()), (403, Some(false)), "{path}: {v}");
    }
    let (s, _) = m.call(&Cred::None, "GET", "/api/data/self/stats", None).await;
    assert_eq!(s, 401);
    for bad in ["/api/data/stats?start_timestamp=10&end_timestamp=5", "/api/data/stats?start_timestamp=x"] {
        let (s, v) = m.call(&root, "GET", bad, None).await;
        assert_eq!((s, v["success"].as_bool()), (400, Some(false)), "{bad}: {v}");
    }
    // The CLI prints the same totals.
    let out = cli(&m, &["stats", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(totals(&report), totals(&all));
    let table = cli(&m, &["stats", "--by", "user"]);
    assert!(table.lines().any(|l| l.starts_with("alice") && l.split_whitespace().nth(1) == Some("4")), "{table}");
}

/// A usage record of `user` settled at Unix second `ts`, as the ledger stores it.
fn old_record(user: &str, model: &str, ts: i64, quota: i64) -> UsageRecord {
    let t = time::OffsetDateTime::from_unix_timestamp(ts).unwrap();
    UsageRecord {
        kind: "usage".into(),
        trace_id: format!("old-{}", nuid::next()),
        user_id: user.into(),
        token_id: Some("t0".into()),
        platform: "claude".into(),
        model: model.into(),
        channel: "c1".into(),
        input_tokens: 100,
        output_tokens: 10,
        quota,
        duration_ms: 800,
        ttft_ms: Some(200),
        status: 200,
        timestamp: t.format(&time::format_description::well_known::Rfc3339).unwrap(),
        ..Default::default()
    }
}

#[tokio::test]
async fn rebuild_restores_the_statistics_from_the_ledger_beside_live_traffic() {
    let m = Mgmt::start(1, Config::default()).await;
    let js = async_nats::jetstream::new(m.stack.client.clone());
    // Old records (3 and 20 days ago), as a restore or another gateway's history would be.
    let now = ailurus::bus::proof::now_secs();
    for (days, n) in [(20, 3), (3, 2)] {
        for i in 0..n {
            let rec = old_record("bob", "old-model", now - days * 86_400 + i, 1_000);
            ledger::append(&js, &Token::new("user_id", "bob").unwrap(), &rec).await.unwrap();
        }
    }
    for model in ["mock-a", "mock-b"] {
        assert_eq!(chat(&m, "alice", model, false).await, 200);
    }
    common::usage_records(&m.stack.client, &Token::new("user_id", "alice").unwrap(), 2, Duration::from_secs(20)).await;
    let root = m.access("root");
    let month = format!("/api/data/stats?start_timestamp={}&end_timestamp={now}", now - 30 * 86_400);
    // Workers counted only what they settled.
    stats_with(&m, &root, &month, 2).await;
    let dry = cli(&m, &["stats", "rebuild", "--dry-run"]);
    assert!(dry.contains("ledger records (7 usage)") && dry.contains("0 written (dry run)"), "{dry}");
    stats_with(&m, &root, &month, 2).await;
    let out = cli(&m, &["stats", "rebuild"]);
    assert!(out.contains("7 usage"), "{out}");
    let report = stats_with(&m, &root, &month, 7).await;
    assert_eq!(report["bucket"], "day", "a 30-day window reads days");
    assert_eq!(report["series"].as_array().unwrap().len(), 31);
    let old_days: Vec<&Value> =
        report["series"].as_array().unwrap().iter().filter(|r| r["requests"].as_u64() > Some(0)).collect();
    assert_eq!(old_days.iter().map(|r| r["requests"].as_u64().unwrap()).collect::<Vec<_>>()[..2], [3, 2]);
    let heat: u64 = report["heatmap"].as_array().unwrap().iter().map(|c| c["requests"].as_u64().unwrap()).sum();
    assert_eq!(heat, 7);
    // A second rebuild finds nothing to do.
    let again = cli(&m, &["stats", "rebuild"]);
    assert!(again.contains("0 differed from the ledger, 0 written"), "{again}");

    // Damage the statistics, then rebuild while requests keep settling: the totals end equal
    // to the ledger's, nothing lost and nothing counted twice.
    let mut stream = js.get_stream("KV_USAGE_STATS").await.unwrap();
    stream.purge().await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
    let traffic = async {
        let mut ok = 0;
        for i in 0..30 {
            if chat(&m, if i % 2 == 0 { "alice" } else { "bob" }, "mock-a", i % 3 == 0).await == 200 {
                ok += 1;
            }
        }
        ok
    };
    let url = m.stack.server.url.clone();
    let rebuild = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"))
            .args(["stats", "rebuild"])
            .env("NATS_URL", url)
            .output()
    });
    let (ok, rebuilt) = tokio::join!(traffic, rebuild);
    let rebuilt = rebuilt.unwrap().unwrap();
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    assert_eq!(ok, 30);
    for (who, n) in [("alice", 2 + 15), ("bob", 5 + 15)] {
        common::usage_records(&m.stack.client, &Token::new("user_id", who).unwrap(), n, Duration::from_secs(20)).await;
    }
    let records = ledger_usage(&m).await;
    assert_eq!(records.len(), 37);
    let report = stats_with(&m, &root, &month, 37).await;
    // Settled: a last flush interval, then the totals must still be exact.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let report2 = stats_with(&m, &root, &month, 37).await;
    assert_eq!(totals(&report2), sums(&records.iter().collect::<Vec<_>>()));
    assert_eq!(totals(&report), totals(&report2));
}
