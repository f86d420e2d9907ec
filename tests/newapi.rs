//! CodeSwitch's NEW-API settings: a worker started with no `[[channels]]` and `NEW_API_URL` +
//! `NEW_API_TOKEN` in its environment, or `~/.code-switch/app.json` with `new_api_enabled`,
//! routes OpenAI-shaped requests (`gpt-4o`) to `<url>/v1/chat/completions` with
//! `Authorization: Bearer <token>` and Claude requests (`claude-sonnet-4-5`) to
//! `<url>/v1/messages` with `x-api-key: <token>`, and the answers come back;
//! `~/.code-switch/sync-settings.json` gives the NATS URL when none is set; `ailurus channels`
//! shows where each channel came from; the token is in no log and no output.

mod common;

use ailurus::bus::codec::Encoding;
use ailurus::bus::headers::ReplyKind;
use ailurus::protocol::{LLMNATSResponse, Platform};
use common::procs::Proc;
use common::upstream::{Api, Upstream};
use common::{request, Stack};
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "sk-newapi-integration-4242";

/// Where the worker's NEW-API settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `NEW_API_URL` / `NEW_API_TOKEN`, with `NATS_URL` set (sync-settings.json points
    /// nowhere and must lose).
    Env,
    /// `~/.code-switch/app.json`, with the NATS URL from sync-settings.json only.
    AppJson,
}

impl Source {
    const fn origin(self) -> &'static str {
        match self {
            Source::Env => "NEW_API_URL env",
            Source::AppJson => "code-switch app.json",
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Send one seed request and return its final reply.
async fn ask(stack: &Stack, platform: Platform, model: &str) -> LLMNATSResponse {
    let mut replies = stack.send(&request(platform, model, "hello", false), Encoding::Json).await;
    while let Some(r) = replies.next().await {
        let r = r.expect("reply");
        match r.kind {
            ReplyKind::Heartbeat | ReplyKind::Chunk => {}
            _ => return r.response(Encoding::Json).expect("final response"),
        }
    }
    panic!("no final reply for {model}");
}

/// `ailurus channels` with `env`, until its table lists `want` (at most 20 s).
fn channels_table(env: &[(&str, String)], want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ailurus"));
        cmd.arg("channels")
            .env_remove("NATS_URL")
            .env_remove("NEW_API_URL")
            .env_remove("NEW_API_TOKEN")
            .env_remove("AILURUS_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run ailurus channels");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() && want.iter().all(|w| text.contains(w)) {
            return text;
        }
        assert!(Instant::now() < deadline, "ailurus channels never listed {want:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

async fn newapi_worker_serves_both_shapes(source: Source) {
    let upstream = Upstream::start().await;
    let stack = Stack::server_only().await;
    stack.apply_streams().await;
    let home = tempfile::tempdir().expect("home");
    let sync = home.path().join(".code-switch/sync-settings.json");
    let mut env = vec![
        ("HOME", home.path().display().to_string()),
        ("AILURUS_LOG", "info".to_string()),
        ("AILURUS__AUTH__MODE", "open".to_string()),
    ];
    match source {
        Source::Env => {
            // An explicit NATS_URL wins over sync-settings.json (which points at nothing).
            write(&sync, r#"{"enabled":true,"url":"nats://127.0.0.1:9"}"#);
            env.push(("NATS_URL", stack.server.url.clone()));
            env.push(("NEW_API_URL", format!("{}/", upstream.url)));
            env.push(("NEW_API_TOKEN", TOKEN.to_string()));
        }
        Source::AppJson => {
            write(&sync, &format!(r#"{{"enabled":true,"url":"{}"}}"#, stack.server.url));
            write(
                &home.path().join(".code-switch/app.json"),
                &format!(
                    r#"{{"theme":"dark","new_api_enabled":true,"new_api_url":"{}","new_api_token":"{TOKEN}"}}"#,
                    upstream.url
                ),
            );
        }
    }
    let worker = Proc::spawn(&["worker"], &env, "worker serving", home.path());

    // (platform, model, API the upstream saw, auth header, its value)
    let bearer = format!("Bearer {TOKEN}");
    let cases = [
        (Platform::Openai, "gpt-4o", Api::OpenAi, "authorization", bearer.as_str()),
        (Platform::Claude, "claude-sonnet-4-5", Api::Anthropic, "x-api-key", TOKEN),
    ];
    for (i, (platform, model, api, header, value)) in cases.into_iter().enumerate() {
        let resp = ask(&stack, platform, model).await;
        assert!(resp.success, "{source:?} {model}: {:?}\n{}", resp.error, worker.logs());
        assert_eq!(resp.content, "Hello from upstream", "{source:?} {model}");
        let seen = upstream.requests();
        assert_eq!(seen.len(), i + 1, "{source:?} {model}");
        let last = &seen[i];
        let path = match api {
            Api::OpenAi => "/v1/chat/completions",
            _ => "/v1/messages",
        };
        assert_eq!(last.path, path, "{source:?} {model}");
        assert_eq!(last.model().as_deref(), Some(model), "{source:?}");
        assert_eq!(last.header(header), Some(value), "{source:?} {model}: {:?}", last.headers);
    }

    // `ailurus channels` (HOME in the temp dir) names the origin of both channels.
    let mut cli_env = vec![("HOME", home.path().display().to_string())];
    if source == Source::Env {
        cli_env.push(("NATS_URL", stack.server.url.clone()));
        cli_env.push(("NEW_API_URL", format!("{}/", upstream.url)));
        cli_env.push(("NEW_API_TOKEN", TOKEN.to_string()));
    }
    let table = channels_table(&cli_env, &["newapi-claude", "newapi ", "NEW-API at "]);
    eprintln!("{source:?}:\n{table}");
    for name in ["newapi-claude", "newapi"] {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{table}"));
        assert!(row.contains(source.origin()), "{source:?}: {row}\n{table}");
    }
    assert!(!table.contains("built-in mock"), "the mock is off beside NEW-API:\n{table}");
    // The NEW-API's balance (its `/api/usage/token/` for the relay key: $10.00 left, $2.50
    // used), once for the two channels on the same NEW-API.
    let balance: Vec<&str> = table.lines().filter(|l| l.starts_with("NEW-API at ")).collect();
    assert_eq!(balance.len(), 1, "{table}");
    assert!(balance[0].contains("has $10.00 left (5,000,000 units; $2.50 used)"), "{table}");
    // With an access token and the user id, the account's own balance (`/api/user/self`).
    cli_env.push(("NEW_API_ACCESS_TOKEN", "access-token-7f3c".to_string()));
    cli_env.push(("NEW_API_USER", "7".to_string()));
    let table = channels_table(&cli_env, &["newapi-claude", "NEW-API at "]);
    assert!(
        table.contains("account \"codeswitch\" (user 7) has $20.00 left (10,000,000 units; $5.00 used, 42 requests)"),
        "{table}"
    );
    let asked = upstream.requests();
    let me = asked.iter().rev().find(|r| r.path == "/api/user/self").expect("GET /api/user/self");
    assert_eq!((me.header("authorization"), me.header("new-api-user")), (Some("access-token-7f3c"), Some("7")));
    assert!(!table.contains("access-token-7f3c"), "{table}");
    assert!(!table.contains(TOKEN), "{table}");
    assert!(!worker.logs().contains(TOKEN), "{}", worker.logs());
}

// Multi-threaded: `ailurus channels` runs blocking while the scripted NEW-API answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_api_from_the_environment() {
    newapi_worker_serves_both_shapes(Source::Env).await;
}

// Multi-threaded: `ailurus channels` runs blocking while the scripted NEW-API answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_api_from_code_switch_app_json_with_the_sync_nats_url() {
    newapi_worker_serves_both_shapes(Source::AppJson).await;
}
