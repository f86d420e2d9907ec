//! Unit tests of the statistics' data: points, histograms, documents, reports.

use super::query::{Period, Periods, Report};
use super::*;

fn point(seq: u64, ts: i64, user: &str, model: &str, status: u16, dur: u64, ttft: Option<u64>) -> Point {
    Point {
        seq,
        ts,
        user: user.into(),
        token: Some(format!("t-{user}")),
        model: model.into(),
        channel: "c1".into(),
        platform: "claude".into(),
        status,
        input: 10,
        output: 5,
        cache_read: 2,
        cache_write: 0,
        usd: 0.001,
        quota: 500,
        duration_ms: dur,
        ttft_ms: ttft,
    }
}

#[test]
fn a_point_counts_in_its_hour_and_day_for_everyone_and_its_user() {
    // 2026-12-03T16:30:00Z
    let p = point(1, 1_796_315_400, "alice", "m", 200, 100, Some(40));
    assert_eq!(
        p.keys(),
        ["h.all.2026120316", "d.all.20261203", "h.u.alice.2026120316", "d.u.alice.20261203"].map(String::from)
    );
}

#[test]
fn admin_records_are_not_traffic() {
    let rec = crate::quota::ledger::UsageRecord::admin("topup", "alice", 100);
    assert_eq!(Point::from_record(3, &rec), None);
    let mut usage = rec.clone();
    usage.kind = "usage".into();
    usage.ttft_ms = Some(12);
    let p = Point::from_record(3, &usage).expect("a usage record is a point");
    assert_eq!((p.seq, p.ttft_ms, p.user.as_str()), (3, Some(12), "alice"));
}

#[test]
fn histogram_quantiles_fall_in_the_right_bucket() {
    let mut h = Hist::default();
    for ms in 1..=100u64 {
        h.add(ms * 10); // 10 ms … 1000 ms, uniform
    }
    assert_eq!(h.count(), 100);
    let check = |q: f64, lo: f64, hi: f64| {
        let v = h.quantile(q).expect("not empty");
        assert!((lo..=hi).contains(&v), "q{q} = {v}, expected within {lo}..={hi}");
    };
    check(0.5, 300.0, 750.0);
    check(0.9, 750.0, 1000.0);
    check(0.01, 0.0, 50.0);
    assert_eq!(Hist::default().quantile(0.5), None);
    let mut slow = Hist::default();
    slow.add(500_000);
    assert_eq!(slow.0.len(), BOUNDS_MS.len() + 1, "above the last bound: the overflow bucket");
}

#[test]
fn documents_merge_into_reports() {
    let t0 = 1_796_313_600; // 2026-12-03T16:00:00Z
    let mut a = Doc::default();
    let mut b = Doc::default();
    a.add("h.all.2026120316", &point(1, t0 + 5, "alice", "m1", 200, 100, Some(30)));
    a.add("h.all.2026120316", &point(2, t0 + 6, "bob", "m2", 429, 10, None));
    b.add("h.all.2026120317", &point(3, t0 + 3_700, "alice", "m1", 502, 1_000, None));
    assert_eq!((a.max_seq, a.total.requests, a.total.err_4xx), (2, 2, 1));
    assert!(a.user["bob"].latency.0.is_empty(), "user splits keep sums only");
    assert_eq!(a.model["m1"].latency.count(), 1);
    let periods = Periods { bucket: "hour", items: vec![Period { t: t0, doc: a }, Period { t: t0 + 3_600, doc: b }] };
    let r = Report::build(t0, t0 + 7_199, &periods);
    assert_eq!(r.totals.requests, 3);
    assert_eq!((r.totals.errors, r.totals.errors_4xx, r.totals.errors_5xx), (2, 1, 1));
    assert_eq!(r.totals.quota, 1_500);
    assert_eq!(r.totals.tokens, 3 * 17);
    assert_eq!(r.series.iter().map(|s| s.requests).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(r.by_model[0].name.as_deref(), Some("m1"));
    assert_eq!(r.by_model[0].requests, 2);
    assert_eq!(
        r.by_user.iter().map(|u| (u.name.clone().unwrap_or_default(), u.requests)).collect::<Vec<_>>(),
        [("alice".to_string(), 2), ("bob".to_string(), 1)]
    );
    assert_eq!(r.totals.ttft_ms.avg, Some(30.0));
    assert_eq!(r.heatmap.len(), 2);
    // Each split's values over time, aligned with the series.
    let models = &r.split_series["by_model"];
    assert_eq!(
        models.iter().map(|s| (s.name.as_str(), s.requests.clone())).collect::<Vec<_>>(),
        [("m1", vec![1, 1]), ("m2", vec![1, 0])]
    );
    assert_eq!((models[0].quota.clone(), models[1].errors.clone()), (vec![500, 500], vec![1, 0]));
    assert_eq!((r.heatmap[1].day.as_str(), r.heatmap[1].hour), ("2026-12-03", 17));
}

#[test]
fn a_day_keeps_its_hours_for_the_heatmap() {
    let t0 = 1_796_256_000; // 2026-12-03T00:00:00Z
    let mut d = Doc::default();
    d.add("d.all.20261203", &point(1, t0 + 3 * 3_600, "a", "m", 200, 1, None));
    d.add("d.all.20261203", &point(2, t0 + 23 * 3_600 + 59, "a", "m", 200, 1, None));
    assert_eq!(d.hours.keys().cloned().collect::<Vec<_>>(), ["03", "23"]);
    let mut h = Doc::default();
    h.add("h.all.2026120303", &point(1, t0 + 3 * 3_600, "a", "m", 200, 1, None));
    assert!(h.hours.is_empty(), "an hour document has no hour cells");
}

#[test]
fn an_oversized_document_drops_its_token_split_first() {
    let mut d = Doc::default();
    for i in 0..20_000u64 {
        let mut p = point(i, 1_796_313_600, &format!("user-{i}"), "m", 200, 1, None);
        p.token = Some(format!("token-{i:08}"));
        d.add("h.all.2026120316", &p);
    }
    let body = d.encode();
    assert!(body.len() <= MAX_DOC, "{} bytes", body.len());
    assert!(d.trimmed && d.token.is_empty());
    let back = Doc::decode(&body);
    assert_eq!(back.total.requests, 20_000);
}
