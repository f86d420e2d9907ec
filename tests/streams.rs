//! `streams apply` against a real server: idempotent, and a changed file updates the stream.

mod common;

use ailurus::streams::{self, Outcome};
use common::Stack;
use std::time::Duration;

#[tokio::test]
async fn apply_is_idempotent_and_follows_file_changes() {
    let stack = Stack::server_only().await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in streams::EMBEDDED {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let decls = streams::load(Some(dir.path())).unwrap();
    let first = streams::apply(&js, &decls).await.unwrap();
    assert!(first.iter().all(|(_, o)| *o == Outcome::Created), "{first:?}");
    let second = streams::apply(&js, &decls).await.unwrap();
    assert!(second.iter().all(|(_, o)| *o == Outcome::Unchanged), "{second:?}");

    // Change SESSION_STATUS's max_age from 1 day to 2 hours.
    let path = dir.path().join("SESSION_STATUS.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("86400000000000", "7200000000000");
    std::fs::write(&path, text).unwrap();
    let decls = streams::load(Some(dir.path())).unwrap();
    let third = streams::apply(&js, &decls).await.unwrap();
    for (name, outcome) in &third {
        let want = if name == "SESSION_STATUS" { Outcome::Updated } else { Outcome::Unchanged };
        assert_eq!(*outcome, want, "{name}");
    }
    let mut s = js.get_stream("SESSION_STATUS").await.unwrap();
    assert_eq!(s.info().await.unwrap().config.max_age, Duration::from_secs(7200));
    assert!(streams::apply(&js, &decls).await.unwrap().iter().all(|(_, o)| *o == Outcome::Unchanged));

    let rows = streams::list(&js).await.unwrap();
    assert_eq!(rows.len(), streams::EMBEDDED.len());
}

#[tokio::test]
async fn the_cli_applies_and_lists() {
    let stack = Stack::server_only().await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"))
            .args(args)
            .env("NATS_URL", &stack.server.url)
            .env_remove("AILURUS_LOG")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        // A one-shot command prints its output, not the service log ("NATS connection
        // (re-)established" and the like).
        assert!(!stderr.contains("INFO"), "{args:?} logged at info: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&["streams", "apply"]).matches("created").count(), streams::EMBEDDED.len());
    assert_eq!(run(&["streams", "apply"]).matches("unchanged").count(), streams::EMBEDDED.len());
    let list = run(&["streams", "list"]);
    assert!(list.contains("LLM_USAGE") && list.contains("llm.request.*"), "{list}");
    // RUST_LOG (or AILURUS_LOG) still raises the level.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .args(["streams", "list"])
        .env("NATS_URL", &stack.server.url)
        .env_remove("AILURUS_LOG")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("INFO"), "RUST_LOG=info was not honoured");
}

#[tokio::test]
async fn channel_health_is_published_for_ailurus_channels() {
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    stack.add_worker(common::open_config()).await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reports = loop {
        let r = ailurus::worker::health::read_all(&js).await.unwrap();
        if !r.is_empty() || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reports.len(), 1);
    assert!(reports[0].channels.iter().any(|c| c.channel == "mock" && c.state == "ok"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .arg("channels")
        .env("NATS_URL", &stack.server.url)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 live worker") && text.contains("mock"), "{text}");
    // The built-in mock's models are priced by the built-in table.
    assert!(text.contains("prices") && text.lines().any(|l| l.starts_with("mock") && l.contains(" all ")), "{text}");
}
