//! The router's unit tests: tiers, weights, cooldown and probes, strategies, affinity.

use super::*;
use crate::providers::ProviderErrorKind;

fn mock_channel(name: &str, priority: i32, weight: u32) -> ChannelConfig {
    toml::from_str(&format!(
        "name = \"{name}\"\nkind = \"mock\"\nmodels = [\"m\", \"m1\"]\npriority = {priority}\nweight = {weight}\n"
    ))
    .unwrap()
}

fn router(chs: &[ChannelConfig]) -> Router {
    let cfg = RoutingConfig { builtin_mock: Some(false), max_attempts: 10, cooldown_base_ms: 50, ..Default::default() };
    Router::new(&cfg, chs).unwrap()
}

fn names(c: &[Candidate]) -> Vec<String> {
    c.iter().map(|c| c.channel.config.name.clone()).collect()
}

#[test]
fn tiers_come_first_and_weights_share_a_tier() {
    let r = router(&[mock_channel("low", 1, 1), mock_channel("a", 10, 3), mock_channel("b", 10, 1)]);
    let mut first_a = 0;
    for _ in 0..4000 {
        let c = names(&r.candidates("m1", "claude"));
        assert_eq!(c.len(), 3);
        assert_eq!(c[2], "low", "the lower tier is last");
        if c[0] == "a" {
            first_a += 1;
        }
    }
    // Expect 3/4 of 4000 = 3000; allow ±5 standard deviations (σ ≈ 27).
    assert!((2860..=3140).contains(&first_a), "a first {first_a} times of 4000");
    assert!(r.candidates("other", "claude").is_empty());
}

#[test]
fn cooldown_then_half_open_probe_then_recovery() {
    let r = router(&[mock_channel("a", 10, 1), mock_channel("b", 5, 1)]);
    let c = r.candidates("m", "claude");
    let err = ProviderError::new(ProviderErrorKind::Status(503), "down");
    r.failure(&c[0], &err);
    assert_eq!(names(&r.candidates("m", "claude")), ["b", "a"], "cooling channel goes last");
    std::thread::sleep(Duration::from_millis(60));
    let mut c = r.candidates("m", "claude");
    assert_eq!(names(&c), ["a", "b"]);
    assert!(c[0].probe && r.claim(&mut c[0]));
    // A second request does not get the probe.
    let c2 = r.candidates("m", "claude");
    assert_eq!(names(&c2), ["b", "a"]);
    // The probe fails: cooldown doubles (100 ms).
    r.failure(&c[0], &err);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(names(&r.candidates("m", "claude"))[0], "b");
    std::thread::sleep(Duration::from_millis(60));
    let mut c = r.candidates("m", "claude");
    assert!(c[0].probe && r.claim(&mut c[0]));
    r.success(&c[0], Duration::from_millis(5), Duration::from_millis(9));
    let c = r.candidates("m", "claude");
    assert!(!c[0].probe && names(&c)[0] == "a");
    let snap = r.snapshot();
    assert_eq!((snap[0].successes, snap[0].failures, snap[0].state.as_str()), (1, 2, "ok"));
}

#[test]
fn retry_after_sets_the_cooldown() {
    let r = router(&[mock_channel("a", 1, 1)]);
    let c = r.candidates("m", "x");
    let mut err = ProviderError::new(ProviderErrorKind::Status(429), "slow down");
    err.retry_after = Some(Duration::from_secs(30));
    r.failure(&c[0], &err);
    let left = r.snapshot()[0].cooldown_left_ms;
    assert!((29_000..=30_000).contains(&left), "{left}");
}

#[test]
fn platforms_filter_and_attempts_cap() {
    let mut only_gemini = mock_channel("g", 1, 1);
    only_gemini.platforms = vec!["gemini".into()];
    let r = router(&[only_gemini, mock_channel("all", 1, 1)]);
    assert_eq!(names(&r.candidates("m", "claude")), ["all"]);
    assert_eq!(r.candidates("m", "gemini").len(), 2);
    let cfg = RoutingConfig { builtin_mock: Some(true), max_attempts: 1, ..Default::default() };
    let r = Router::new(&cfg, &[mock_channel("a", 1, 1), mock_channel("b", 1, 1)]).unwrap();
    assert_eq!(r.candidates("m", "claude").len(), 1);
    assert_eq!(names(&r.candidates("mock-slow", "claude")), ["mock"]);
}

#[test]
fn the_builtin_mock_serves_every_name_only_without_channels() {
    let real = mock_channel("real", 1, 1);
    let with = |builtin_mock: Option<bool>, chs: &[ChannelConfig]| {
        Router::new(&RoutingConfig { builtin_mock, ..Default::default() }, chs).unwrap()
    };
    // (builtin_mock, channels configured, scope, serves claude-sonnet-4-5, serves mock-slow)
    let cases = [
        (None, false, MockScope::AllNames, true, true),
        (Some(true), false, MockScope::AllNames, true, true),
        (Some(false), false, MockScope::Off, false, false),
        (None, true, MockScope::Off, false, false),
        (Some(true), true, MockScope::MockNames, false, true),
        (Some(false), true, MockScope::Off, false, false),
    ];
    for (setting, channels, scope, any_name, mock_name) in cases {
        let chs = if channels { vec![real.clone()] } else { Vec::new() };
        let r = with(setting, &chs);
        let what = format!("builtin_mock {setting:?}, channels {channels}");
        assert_eq!(r.mock_scope(), scope, "{what}");
        assert_eq!(RoutingConfig { builtin_mock: setting, ..Default::default() }.mock_scope(&chs), scope);
        let serves = |m: &str| r.candidates(m, "gemini").iter().any(|c| c.channel.config.name == "mock");
        assert_eq!(serves("claude-sonnet-4-5"), any_name, "{what}");
        assert_eq!(serves("mock-slow"), mock_name, "{what}");
        let listed = r.models();
        assert_eq!(listed.contains(&"gpt-5-codex".to_string()), any_name, "{what}: {listed:?}");
        let builtin = r.channels().iter().any(|c| c.config.name == "mock");
        assert_eq!(builtin, scope != MockScope::Off, "{what}");
    }
    let toml = |t: &str| toml::from_str::<RoutingConfig>(t).unwrap().builtin_mock;
    assert_eq!((toml(""), toml("builtin_mock = true")), (None, Some(true)));
}

fn with_keys(name: &str, priority: i32, keys: usize) -> ChannelConfig {
    let vars: Vec<String> = (0..keys)
        .map(|i| {
            let var = format!("AILURUS_ROUTER_TEST_{name}_{i}").to_uppercase();
            std::env::set_var(&var, format!("sk-{name}-{i}"));
            format!("\"{var}\"")
        })
        .collect();
    toml::from_str(&format!(
        "name = \"{name}\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = [{}]\npriority = {priority}\n",
        vars.join(", ")
    ))
    .unwrap()
}

#[test]
fn a_pinned_session_goes_first_on_its_key_while_healthy_and_in_the_first_tier() {
    let r = router(&[with_keys("a", 5, 3), with_keys("b", 5, 3), with_keys("low", 1, 2)]);
    let pin = |c: &str, k| Assignment { channel: c.into(), key: k };
    for _ in 0..50 {
        let c = r.candidates_for("m", "claude", Some(&pin("b", 2)), &[]);
        assert_eq!((c[0].channel.config.name.as_str(), c[0].key, c[0].pinned), ("b", 2, true));
        assert!(c[1..].iter().all(|c| !c.pinned));
    }
    // Unpinned requests take the keys round robin.
    let keys: Vec<usize> = (0..6)
        .map(|_| {
            let mut c = r.candidates_for("m", "x", None, &["a".into()]).remove(0);
            assert!(r.claim(&mut c));
            c.key
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[1] == (w[0] + 1) % 3), "{keys:?}");
    // A key the channel no longer has, or a lower tier, is not pinned.
    assert!(!r.candidates_for("m", "claude", Some(&pin("b", 7)), &[])[0].pinned);
    assert!(!r.candidates_for("m", "claude", Some(&pin("low", 0)), &[])[0].pinned);
    // A cooling channel loses the session.
    let b = r.candidates_for("m", "claude", Some(&pin("b", 1)), &[]).remove(0);
    r.failure(&b, &ProviderError::new(ProviderErrorKind::Status(503), "down"));
    let c = r.candidates_for("m", "claude", Some(&pin("b", 1)), &[]);
    assert_eq!(names(&c)[0], "a");
    assert!(!c[0].pinned);
    // A scenario's channel group narrows the candidates.
    assert_eq!(names(&r.candidates_for("m", "claude", None, &["l*".into()])), ["low"]);
}

/// A closed-loop simulation on a synthetic clock: `clients` callers, each sending its next
/// request when the last ends; channel i answers after `latency[i]`. Returns each channel's
/// share of the requests sent in [from, to).
fn simulate(strategy: Strategy, latency: &dyn Fn(usize, Duration) -> Duration, window: (u64, u64)) -> Vec<f64> {
    let loads = [Load::default(), Load::default()];
    struct Ch<'a>(u64, &'a Load, usize);
    impl strategy::Weighed for Ch<'_> {
        fn weight(&self) -> u64 {
            self.0
        }
        fn load(&self) -> &Load {
            self.1
        }
    }
    let tau = Duration::from_millis(500);
    let t0 = Instant::now();
    // (ends at, channel, started at, in-flight guard)
    let mut running: Vec<(Duration, usize, Duration, strategy::InFlight<'_>)> = Vec::new();
    let mut counts = [0u64; 2];
    let mut now = Duration::ZERO;
    let clients = 8;
    while now < Duration::from_secs(window.1) {
        while running.len() < clients {
            let order = strategy::order(strategy, vec![Ch(1, &loads[0], 0), Ch(1, &loads[1], 1)], t0 + now, tau);
            let i = order[0].2;
            if now >= Duration::from_secs(window.0) {
                counts[i] += 1;
            }
            running.push((now + latency(i, now), i, now, loads[i].begin()));
        }
        running.sort_by_key(|r| r.0);
        let (end, i, start, guard) = running.remove(0);
        now = end;
        loads[i].observe(end - start, t0 + now, tau);
        drop(guard);
    }
    let total = (counts[0] + counts[1]).max(1) as f64;
    counts.iter().map(|c| *c as f64 / total).collect()
}

#[test]
fn p2c_ewma_sends_less_to_a_slow_channel_and_a_recovered_one_earns_it_back() {
    // Channel 1 is ten times slower for the first 10 s, then as fast as channel 0.
    let lat = |i: usize, at: Duration| {
        if i == 1 && at < Duration::from_secs(10) {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(20)
        }
    };
    let slow = simulate(Strategy::P2cEwma, &lat, (2, 10));
    let recovered = simulate(Strategy::P2cEwma, &lat, (14, 20));
    let weighted = simulate(Strategy::Weighted, &lat, (2, 10));
    println!(
        "share of the slow channel: p2c_ewma {:.3} (weighted {:.3}); after recovery {:.3}",
        slow[1], weighted[1], recovered[1]
    );
    assert!(slow[1] < 0.15, "slow channel share {:.3}", slow[1]);
    assert!((0.35..=0.65).contains(&recovered[1]), "recovered share {:.3}", recovered[1]);
    // Weighted random ignores latency: half the picks (fewer requests complete on the slow one,
    // but each caller waits on it).
    assert!(weighted[1] > 0.05);
    let busy = simulate(Strategy::LeastBusy, &lat, (2, 10));
    println!("least_busy: share of the slow channel {:.3}", busy[1]);
    assert!(busy[1] < 0.35, "least_busy slow share {:.3}", busy[1]);
}

#[test]
fn routing_settings_are_checked() {
    let bad = |t: &str| toml::from_str::<RoutingConfig>(t).map_err(|e| e.to_string()).and_then(|c| c.validate());
    assert!(bad("strategy = \"fastest\"").unwrap_err().contains("fastest"));
    assert!(bad(
        "[[tiers]]\npriority = 1\nstrategy = \"least_busy\"\n[[tiers]]\npriority = 1\nstrategy = \"weighted\""
    )
    .unwrap_err()
    .contains("listed twice"));
    assert!(bad("[[scenarios]]\nname = \"x\"\nto_model = \"m\"").unwrap_err().contains("condition"));
    assert!(bad("[[scenarios]]\nname = \"x\"\nthinking = true").unwrap_err().contains("target"));
    let ok = toml::from_str::<RoutingConfig>(
        "strategy = \"p2c_ewma\"\n[[tiers]]\npriority = 1\nstrategy = \"least_busy\"\n[[scenarios]]\nname = \"bg\"\nmodel = \"*haiku*\"\nto_model = \"cheap\"",
    )
    .unwrap();
    ok.validate().unwrap();
    assert_eq!((ok.strategy_of(1), ok.strategy_of(5)), (Strategy::LeastBusy, Strategy::P2cEwma));
}

#[test]
fn a_replaced_set_keeps_the_health_of_unchanged_channels_only() {
    let r = router(&[mock_channel("a", 10, 1), mock_channel("b", 5, 1)]);
    let held = r.candidates("m", "claude");
    r.failure(&held[0], &ProviderError::new(ProviderErrorKind::Status(503), "down"));
    let mut b2 = mock_channel("b", 5, 7);
    b2.revision = 2;
    assert!(r.replace(&[mock_channel("a", 10, 1), b2, mock_channel("c", 1, 1)]).is_empty());
    let snap: Vec<_> = r.snapshot().into_iter().map(|s| (s.channel, s.failures, s.weight)).collect();
    assert_eq!(snap, [("a".into(), 1, 1), ("b".into(), 0, 7), ("c".into(), 0, 1)]);
    // The request in flight still holds the old channel.
    assert!(Arc::ptr_eq(&held[0].channel, &r.channels()[0]) && held[1].channel.config.weight == 1);
}

#[test]
fn least_busy_counts_what_the_other_workers_report() {
    let cfg = RoutingConfig {
        builtin_mock: Some(false),
        strategy: Strategy::LeastBusy,
        max_attempts: 10,
        ..Default::default()
    };
    let r = Router::new(&cfg, &[mock_channel("a", 1, 1), mock_channel("b", 1, 1)]).unwrap();
    let mut other = r.snapshot();
    for s in &mut other {
        s.inflight = if s.channel == "a" { 5 } else { 1 };
    }
    r.absorb(other.iter());
    let channels = r.channels();
    let _here: Vec<_> = (0..3).map(|_| channels[1].health.load.begin()).collect();
    // a: 5 elsewhere; b: 1 elsewhere + 3 here.
    for _ in 0..20 {
        assert_eq!(names(&r.candidates("m", "x")), ["b", "a"]);
    }
    r.absorb(std::iter::empty());
    assert_eq!(names(&r.candidates("m", "x")), ["a", "b"], "the reports are gone");
}
