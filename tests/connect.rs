//! `ailurus connect`: the real binary with HOME set to a temporary directory. Print mode for
//! every client; `--write` creating and merging files with backups, idempotent when run twice;
//! `--undo` restoring the original bytes and removing files that did not exist; a file that does
//! not parse left alone. No NATS server is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BRIDGE: &str = "http://127.0.0.1:18100";
const TOKEN: &str = "sk-ail-FAKEfake0123456789";

/// The binary, with HOME (and the working directory) in `home` and nothing of the caller's
/// environment that `connect` reads.
fn ailurus(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .args(["connect"])
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env_remove("AILURUS_TOKEN")
        .env_remove("AILURUS_CONFIG")
        .env_remove("AILURUS_DATA")
        .env_remove("AILURUS__BRIDGE__LISTEN")
        .env_remove("CODEX_HOME")
        .env_remove("CLAUDE_CONFIG_DIR")
        .output()
        .expect("run ailurus")
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = ailurus(home, args);
    assert!(out.status.success(), "ailurus connect {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every file under `dir`, with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn print_mode_shows_the_bridge_and_the_token_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    for (client, needles) in [
        (
            "claude",
            vec![
                "export ANTHROPIC_BASE_URL=http://127.0.0.1:18100",
                "export ANTHROPIC_AUTH_TOKEN=sk-ail-FAKE",
                "\"env\"",
            ],
        ),
        (
            "codex",
            vec![
                "export AILURUS_API_KEY=sk-ail-FAKE",
                "base_url = \"http://127.0.0.1:18100/v1\"",
                "wire_api = \"responses\"",
            ],
        ),
        (
            "gemini",
            vec![
                "export GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:18100",
                "export GEMINI_API_KEY=sk-ail-FAKE",
                "gemini-api-key",
            ],
        ),
        ("openai", vec!["export OPENAI_BASE_URL=http://127.0.0.1:18100/v1", "export OPENAI_API_KEY=sk-ail-FAKE"]),
    ] {
        let out = ok(h, &[client, "--token", TOKEN, "--bridge", BRIDGE]);
        for n in needles {
            assert!(out.contains(n), "{client}: {n:?} missing in\n{out}");
        }
    }
    assert!(snapshot(h).is_empty(), "print mode wrote {:?}", snapshot(h));

    // --model reaches every client's setting.
    let out = ok(h, &["claude", "--token", TOKEN, "--model", "mock"]);
    assert!(
        out.contains("export ANTHROPIC_MODEL=mock") && out.contains("export ANTHROPIC_DEFAULT_HAIKU_MODEL=mock"),
        "{out}"
    );
    assert!(ok(h, &["codex", "--token", TOKEN, "--model", "mock"]).contains("model = \"mock\""));
    assert!(ok(h, &["gemini", "--token", TOKEN, "--model", "mock"]).contains("\"name\": \"mock\""));
}

#[test]
fn the_token_and_the_bridge_come_from_flags_environment_data_dir_or_config() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // No token anywhere: a clear error.
    let out = ailurus(h, &["openai"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no token") && err.contains("--token") && err.contains("demo-token"), "{err}");

    // The demo token `ailurus up` saves (default data dir, relative to the working directory).
    std::fs::create_dir_all(h.join(".ailurus-data")).unwrap();
    std::fs::write(h.join(".ailurus-data/demo-token"), "sk-ail-demo\n").unwrap();
    assert!(ok(h, &["openai"]).contains("export OPENAI_API_KEY=sk-ail-demo\n"));
    // AILURUS_TOKEN wins over the file; --token over both.
    let with_env = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ailurus"));
        c.arg("connect").args(args).current_dir(h).env("HOME", h).env("AILURUS_TOKEN", "sk-ail-env");
        c.env_remove("AILURUS_CONFIG").env_remove("AILURUS__BRIDGE__LISTEN").env_remove("AILURUS_DATA");
        String::from_utf8(c.output().unwrap().stdout).unwrap()
    };
    assert!(with_env(&["openai"]).contains("OPENAI_API_KEY=sk-ail-env\n"));
    assert!(with_env(&["openai", "--token", "sk-ail-flag"]).contains("OPENAI_API_KEY=sk-ail-flag\n"));

    // The bridge: the config's [bridge] listen (a wildcard host becomes loopback).
    std::fs::write(h.join("ailurus.toml"), "[bridge]\nlisten = \"0.0.0.0:19999\"\n").unwrap();
    let out = ok(h, &["--config", "ailurus.toml", "openai"]);
    assert!(out.contains("export OPENAI_BASE_URL=http://127.0.0.1:19999/v1\n"), "{out}");
    assert!(ok(h, &["openai"]).contains("OPENAI_BASE_URL=http://127.0.0.1:18100/v1\n"));
}

#[test]
fn write_merges_keeps_a_backup_is_idempotent_and_undo_restores_the_bytes() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Claude and Gemini have settings of their own; Codex has none yet.
    std::fs::create_dir_all(h.join(".claude")).unwrap();
    std::fs::create_dir_all(h.join(".gemini")).unwrap();
    let claude_orig = "{\n  \"model\": \"opus\",\n  \"env\": { \"FOO\": \"1\" },\n  \"permissions\": { \"allow\": [\"Bash(ls)\"] }\n}\n";
    let gemini_orig = "{ \"ui\": { \"theme\": \"GitHub\" }, \"security\": { \"folderTrust\": { \"enabled\": true } } }";
    std::fs::write(h.join(".claude/settings.json"), claude_orig).unwrap();
    std::fs::write(h.join(".gemini/settings.json"), gemini_orig).unwrap();
    let before = snapshot(h);

    for client in ["claude", "codex", "gemini", "openai"] {
        ok(h, &[client, "--write", "--token", TOKEN, "--bridge", BRIDGE, "--model", "mock"]);
    }
    let claude = json(&h.join(".claude/settings.json"));
    assert_eq!(claude["model"], "opus");
    assert_eq!(claude["permissions"]["allow"][0], "Bash(ls)");
    assert_eq!(claude["env"]["FOO"], "1");
    assert_eq!(claude["env"]["ANTHROPIC_BASE_URL"], BRIDGE);
    assert_eq!(claude["env"]["ANTHROPIC_AUTH_TOKEN"], TOKEN);
    assert_eq!(claude["env"]["ANTHROPIC_MODEL"], "mock");
    assert_eq!(std::fs::read_to_string(h.join(".claude/settings.json.ailurus-backup")).unwrap(), claude_orig);

    let codex: toml::Table = std::fs::read_to_string(h.join(".codex/config.toml")).unwrap().parse().unwrap();
    assert_eq!(codex["model_provider"].as_str(), Some("ailurus"));
    assert_eq!(codex["model"].as_str(), Some("mock"));
    let p = &codex["model_providers"]["ailurus"];
    assert_eq!(p["base_url"].as_str(), Some("http://127.0.0.1:18100/v1"));
    assert_eq!(p["wire_api"].as_str(), Some("responses"));
    assert_eq!(p["env_key"].as_str(), Some("AILURUS_API_KEY"));
    assert!(h.join(".codex/config.toml.ailurus-created").exists());
    assert!(!h.join(".codex/config.toml.ailurus-backup").exists());

    let gemini = json(&h.join(".gemini/settings.json"));
    assert_eq!(gemini["security"]["auth"]["selectedType"], "gemini-api-key");
    assert_eq!(gemini["security"]["folderTrust"]["enabled"], true);
    assert_eq!(gemini["ui"]["theme"], "GitHub");
    assert_eq!(gemini["model"]["name"], "mock");
    let dotenv = std::fs::read_to_string(h.join(".gemini/.env")).unwrap();
    assert_eq!(dotenv, format!("GOOGLE_GEMINI_BASE_URL={BRIDGE}\nGEMINI_API_KEY={TOKEN}\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(h.join(".gemini/.env")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a created file holding the token is private");
    }

    // Twice: the same bytes, the backups of the originals untouched.
    let once = snapshot(h);
    for client in ["claude", "codex", "gemini"] {
        let out = ok(h, &[client, "--write", "--token", TOKEN, "--bridge", BRIDGE, "--model", "mock"]);
        assert!(out.contains("unchanged") && !out.contains("updated") && !out.contains("created"), "{out}");
    }
    assert_eq!(snapshot(h), once);
    // A new token replaces ours and keeps the first backup.
    ok(h, &["claude", "--write", "--token", "sk-ail-new", "--bridge", BRIDGE]);
    assert_eq!(json(&h.join(".claude/settings.json"))["env"]["ANTHROPIC_AUTH_TOKEN"], "sk-ail-new");
    assert_eq!(std::fs::read_to_string(h.join(".claude/settings.json.ailurus-backup")).unwrap(), claude_orig);

    // Undo: the original bytes back, the created files and every marker gone (the created
    // directory .codex may stay, empty).
    for client in ["claude", "codex", "gemini", "openai"] {
        ok(h, &[client, "--undo"]);
    }
    assert_eq!(snapshot(h), before);
    assert!(ok(h, &["claude", "--undo"]).contains("nothing to undo"));
}

#[test]
fn a_file_that_does_not_parse_is_named_and_left_alone() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join(".codex")).unwrap();
    std::fs::create_dir_all(h.join(".gemini")).unwrap();
    std::fs::write(h.join(".codex/config.toml"), "model = \n").unwrap();
    std::fs::write(h.join(".gemini/settings.json"), "{ // mine\n}").unwrap();
    let before = snapshot(h);
    for (client, file, what) in
        [("codex", ".codex/config.toml", "not valid TOML"), ("gemini", ".gemini/settings.json", "not valid JSON")]
    {
        let out = ailurus(h, &[client, "--write", "--token", TOKEN]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(file) && err.contains(what) && err.contains("nothing was written"), "{err}");
    }
    // Not even gemini's .env, which would have been fine on its own.
    assert_eq!(snapshot(h), before);
}
