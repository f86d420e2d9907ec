//! README.md's shell commands (and examples/README.md's, and deploy/README.md's), run as
//! typed against a live `ailurus up`, so the docs cannot drift from the code. A command that
//! cannot run here (a machine's own ports, systemd, Docker) says so with a `# not run by the
//! doc test: <reason>` line in its block; its paths must exist and its `ailurus …` must parse.
//!
//! The test starts `ailurus up` (this build's binary) in a temporary directory on free ports,
//! then runs every ```` ```sh ```` block of README.md with bash in that directory, one command
//! after another, each bounded in time and required to succeed. What it changes, and why:
//!
//! - `alias ailurus='cargo run -q --release --'` becomes a function calling this build's
//!   binary (a non-interactive shell does not expand aliases, and a release build does not
//!   belong in a test);
//! - the bridge's default address `127.0.0.1:18100` / `localhost:18100` becomes the test's;
//! - `BRIDGE` and `TOKEN` are set as the README's prose defines them, and `HOME` is a
//!   directory of the test's own (`ailurus connect --write` writes client settings there);
//! - the two set-up commands of "Fresh machine" are not run here: `.ci/run` runs the first
//!   half of each, this test runs `ailurus up`, and the second is the command running it;
//! - a command with a trailing `# needs: <program>` comment runs only when that program is on
//!   `PATH`; otherwise it is skipped with a printed reason;
//! - a command with a trailing `# runs until Ctrl-C` comment runs for two seconds and must still
//!   be running then.
//!
//! A `curl` command must also answer without an error body. The commands `ailurus up` prints
//! under "Try, in another terminal" are run the same way.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest one command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// One command of a block, as the shell will read it.
#[derive(Debug, Clone)]
struct Cmd {
    /// The line (continuations joined).
    text: String,
    /// Where it is in README.md (1-based line of its first line).
    line: usize,
    /// Why the doc test does not run it: a `# not run by the doc test: <reason>` line earlier
    /// in its block (or the same words as its own trailing comment).
    not_run: Option<String>,
}

/// The marker of a command (or, on a line of its own, of the rest of its block) that the doc
/// test does not run.
const NOT_RUN: &str = "not run by the doc test:";

/// The commands of every `sh` block, in order, block by block.
fn blocks(readme: &str) -> Vec<Vec<Cmd>> {
    let mut out = Vec::new();
    // Inside a fenced block, and the commands so far when it is an `sh` one.
    let mut open: Option<Option<Vec<Cmd>>> = None;
    let mut pending: Option<Cmd> = None;
    let mut not_run: Option<String> = None;
    for (i, raw) in readme.lines().enumerate() {
        let trimmed = raw.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            match open.take() {
                Some(Some(block)) => out.push(block),
                Some(None) => {}
                None => open = Some((info.trim() == "sh").then(Vec::new)),
            }
            not_run = None;
            continue;
        }
        let Some(Some(block)) = open.as_mut() else {
            not_run = None;
            continue;
        };
        if let Some(reason) = trimmed.strip_prefix('#').and_then(|c| c.trim().strip_prefix(NOT_RUN)) {
            not_run = Some(reason.trim().to_string());
            continue;
        }
        let cmd = match pending.take() {
            Some(p) => Cmd { text: format!("{}\n{raw}", p.text), ..p },
            None if trimmed.is_empty() || trimmed.starts_with('#') => continue,
            None => Cmd { text: raw.to_string(), line: i + 1, not_run: not_run.clone() },
        };
        if cmd.text.ends_with('\\') {
            pending = Some(cmd);
        } else {
            block.push(Cmd { text: cmd.text.trim().to_string(), ..cmd });
        }
    }
    out
}

/// Whether `cmd` only sets a variable (`T=$(cat file)`, `export X=1`), which the next
/// commands of its block need.
fn sets_a_variable(cmd: &str) -> bool {
    if cmd.starts_with("export ") {
        return true;
    }
    let Some((name, value)) = cmd.split_once('=') else { return false };
    let identifier = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    identifier && (!value.contains(char::is_whitespace) || (value.starts_with("$(") && value.ends_with(')')))
}

/// Everything after an unquoted `#` that starts a comment, if any (good enough for the
/// README: markers are plain trailing comments).
fn comment(cmd: &str) -> Option<&str> {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in cmd.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return Some(cmd[i + 1..].trim()),
            _ => {}
        }
        prev = c;
    }
    None
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// `ailurus up` running in a temporary directory; killed on drop.
struct Up {
    child: Child,
    dir: tempfile::TempDir,
    bridge: String,
    nats: String,
    /// Its nats-server's WebSocket port.
    ws: u16,
    /// What it printed up to its banner's last line.
    banner: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        // SIGTERM lets it drain and stop the nats-server it started.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn up() -> Up {
    let port = |what: &str| ailurus::nats_server::free_port().unwrap_or_else(|e| panic!("a free port for {what}: {e}"));
    let (nats_port, bridge_port, monitor, ws) = (port("nats"), port("bridge"), port("monitor"), port("ws"));
    let dir = tempfile::tempdir().expect("temp dir");
    let nats = format!("nats://127.0.0.1:{nats_port}");
    let bridge = format!("127.0.0.1:{bridge_port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .arg("up")
        .current_dir(dir.path())
        .env("NATS_URL", &nats)
        .env("AILURUS__NATS__URL", &nats)
        .env("AILURUS__BRIDGE__LISTEN", &bridge)
        .env("AILURUS_MONITOR_PORT", monitor.to_string())
        .env("AILURUS_WS_PORT", ws.to_string())
        .env("NATS_SERVER_BIN", nats_server_bin())
        .env_remove("AILURUS_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ailurus up");
    // Ready when it prints its banner; keep draining its stderr afterwards.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            said.push(line.clone());
            if line.contains("Ctrl-C stops everything") {
                let _ = tx.send(Ok(said.join("\n")));
            }
        }
        let _ = tx.send(Err(said.join("\n")));
    });
    let banner = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(said)) => said,
        Ok(Err(said)) => panic!("ailurus up stopped before it was up:\n{said}"),
        Err(_) => panic!("ailurus up was not up within 60 s"),
    };
    Up { child, dir, bridge, nats, ws, banner }
}

fn nats_server_bin() -> PathBuf {
    ailurus::nats_server::find_binary().expect("nats-server (run ./deploy/setup.sh)")
}

/// Run `cmd` with bash in `dir`, after `prelude`; its output, or why it failed.
fn run(
    dir: &Path,
    env: &[(&str, String)],
    prelude: &str,
    cmd: &str,
    until_interrupted: bool,
) -> Result<String, String> {
    let script = if until_interrupted {
        format!("{prelude}\ntimeout 2 bash -c {} ; [ $? -eq 124 ]", shell_quote(&format!("{prelude}\n{cmd}")))
    } else {
        format!("{prelude}\n{cmd}")
    };
    let mut c = Command::new("bash");
    c.arg("-o").arg("pipefail").arg("-c").arg(&script).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("bash: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND_LIMIT) {
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                Ok(stdout)
            } else {
                Err(format!("exit {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status.code()))
            }
        }
        Ok(Err(e)) => Err(format!("bash: {e}")),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            Err(format!("did not finish within {COMMAND_LIMIT:?}"))
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn every_readme_command_runs_as_typed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let all = blocks(&readme);
    assert!(all.len() >= 5, "README.md's sh blocks were not found ({} blocks)", all.len());
    let stack = up();
    let dir = stack.dir.path();
    let token =
        std::fs::read_to_string(dir.join(".ailurus-data/demo-token")).expect("the demo token").trim().to_string();
    // Commands that write a client's settings (`ailurus connect … --write`) write them here,
    // never into the home of whoever runs the tests.
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("a home for the commands");
    let env = [
        ("HOME", home.display().to_string()),
        ("NATS_URL", stack.nats.clone()),
        ("BRIDGE", format!("http://{}", stack.bridge)),
        ("TOKEN", token),
        ("NATS_SERVER_BIN", nats_server_bin().display().to_string()),
    ];
    let prelude = format!("ailurus() {{ {} \"$@\"; }}", shell_quote(env!("CARGO_BIN_EXE_ailurus")));
    // The lines `ailurus up` tells the user to try run the same way, as one more block.
    let try_lines: Vec<Cmd> = stack
        .banner
        .lines()
        .skip_while(|l| !l.contains("Try, in another terminal"))
        .skip(1)
        .take_while(|l| !l.contains("Ctrl-C stops everything"))
        .filter(|l| !l.trim().is_empty())
        .map(|l| Cmd { text: l.trim().to_string(), line: 0, not_run: None })
        .collect();
    assert!(try_lines.len() >= 3, "the banner's commands were not found:\n{}", stack.banner);
    let all: Vec<Vec<Cmd>> = all.into_iter().chain(std::iter::once(try_lines)).collect();
    let replace = |t: &str| t.replace("127.0.0.1:18100", &stack.bridge).replace("localhost:18100", &stack.bridge);
    let ran = run_blocks("README.md", &all, dir, &env, &prelude, &replace);
    assert!(ran >= 10, "only {ran} README commands ran");
}

/// Run every command of `all` (blocks of `doc`) in `dir` as the README test does, after
/// `replace` (ports); a block's assignments, exports and `cd` carry over to its next commands.
/// Panics listing every command that failed; returns how many ran.
fn run_blocks(
    doc: &str,
    all: &[Vec<Cmd>],
    dir: &Path,
    env: &[(&str, String)],
    prelude: &str,
    replace: &dyn Fn(&str) -> String,
) -> usize {
    let (mut ran, mut skipped, mut failed) = (0, Vec::new(), Vec::new());
    for block in all {
        // Variables set by one command (T=…) are seen by the next ones of its block.
        let mut before = String::new();
        for cmd in block {
            let text = replace(&cmd.text);
            let first = cmd.text.lines().next().unwrap_or("");
            let where_ = if cmd.line == 0 {
                format!("the banner of ailurus up: {first}")
            } else {
                format!("{doc}:{}: {first}", cmd.line)
            };
            if text.starts_with("./deploy/setup.sh") {
                skipped.push(format!("{where_} — a set-up command: .ci/run runs it, and this test runs `ailurus up`"));
                continue;
            }
            if text.starts_with("alias ailurus=") {
                continue; // replaced by the prelude's function
            }
            let note = comment(&text).unwrap_or("");
            if let Some(reason) = cmd.not_run.as_deref().or_else(|| note.strip_prefix(NOT_RUN).map(str::trim)) {
                assert!(!reason.is_empty(), "{where_}: say why it is not run");
                match still_true(&text) {
                    Ok(()) => skipped.push(format!("{where_} — {reason} (its paths and ailurus arguments checked)")),
                    Err(e) => failed.push(format!("{where_}\n  {e}")),
                }
                continue;
            }
            if let Some(program) = note.strip_prefix("needs:").map(str::trim) {
                let program = program.split_whitespace().next().unwrap_or("");
                if !on_path(program) {
                    skipped.push(format!("{where_} — needs `{program}`, which is not installed here"));
                    continue;
                }
            }
            let until = note.contains("runs until Ctrl-C");
            match run(dir, env, &format!("{prelude}\n{before}"), &text, until) {
                Ok(out) if text.starts_with("curl") && out.contains("\"error\"") => {
                    failed.push(format!("{where_}\n  answered an error: {out}"))
                }
                Ok(_) => ran += 1,
                Err(e) => failed.push(format!("{where_}\n  {e}")),
            }
            // Assignments, exports and a leading `cd` carry over to the next commands of the block.
            if sets_a_variable(&text) {
                before.push_str(&format!("{text}\n"));
            } else if let Some(cd) = text.strip_prefix("cd ") {
                let target = cd.split("&&").next().unwrap_or("").trim();
                before.push_str(&format!("cd {target}\n"));
            }
        }
    }
    for s in &skipped {
        println!("skipped {s}");
    }
    println!("{doc}: {ran} commands ran, {} skipped", skipped.len());
    assert!(failed.is_empty(), "{} {doc} commands failed:\n{}", failed.len(), failed.join("\n"));
    ran
}

/// What a command the doc test does not run must still get right: every repository path it
/// names exists (globs match something) and every `ailurus …` it runs parses (`--help` after
/// its arguments exits 0, so the subcommands and flags exist).
fn still_true(cmd: &str) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = cmd.split(" # ").next().unwrap_or(cmd);
    for word in text.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|') {
        let word = word.trim_matches(|c| c == '"' || c == '\'' || c == '(' || c == ')');
        if !(word.starts_with("deploy/") || word.starts_with(".tools/") || word.starts_with("examples/")) {
            continue;
        }
        let path = word.replace("$n", "1");
        let found = if path.contains('*') {
            let (dir, pattern) = path.rsplit_once('/').unwrap_or((".", path.as_str()));
            let (head, tail) = pattern.split_once('*').unwrap_or((pattern, ""));
            std::fs::read_dir(root.join(dir)).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(head) && name.ends_with(tail)
                })
            })
        } else {
            // `.tools/` is made by ./deploy/setup.sh, which the README runs first.
            path.starts_with(".tools/") || root.join(&path).exists()
        };
        if !found {
            return Err(format!("names {word}, which is not in the repository"));
        }
    }
    // Each command of a `a && b; c` list once.
    let list = text.replace("&&", ";");
    for part in list.split(';') {
        let words: Vec<&str> = part
            .split_whitespace()
            .filter(|w| *w != "\\")
            .skip_while(|w| w.contains('=') && !w.starts_with('-'))
            .collect();
        if words.first() != Some(&"ailurus") {
            continue;
        }
        let args: Vec<&str> = words[1..].iter().copied().take_while(|w| *w != "&" && *w != "|").collect();
        let out = Command::new(env!("CARGO_BIN_EXE_ailurus"))
            .args(args.iter().map(|a| a.trim_matches('\'')))
            .arg("--help")
            .env_remove("NATS_URL")
            .output()
            .map_err(|e| format!("ailurus: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ailurus {}` does not parse: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

/// examples/README.md, run as typed from a directory laid out like the repository root
/// (`examples/` copied without its installed packages, `.tools/` linked, `.ailurus-data/` of
/// a live `ailurus up`): the TypeScript and Python clients answer over WebSocket, TCP and the
/// bridge. Ports are the test's: `127.0.0.1:4222` becomes its NATS port, and `NATS_URL` /
/// `CODESWITCH_BASE_URL` stand for the clients' defaults (`ws://127.0.0.1:9222`, the bridge).
#[test]
fn every_examples_readme_command_runs_as_typed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !on_path("npm") || !on_path("node") {
        return println!("SKIP every_examples_readme_command_runs_as_typed: node and npm are not installed");
    }
    if !root.join(".tools/venv/bin/python").exists() {
        return println!("SKIP every_examples_readme_command_runs_as_typed: run ./deploy/setup.sh first");
    }
    let doc = std::fs::read_to_string(root.join("examples/README.md")).expect("examples/README.md");
    let all = blocks(&doc);
    let stack = up();
    let dir = stack.dir.path();
    copy_tree(&root.join("examples"), &dir.join("examples"));
    std::os::unix::fs::symlink(root.join(".tools"), dir.join(".tools")).expect("link .tools");
    let nats_port = stack.nats.rsplit(':').next().unwrap_or("").to_string();
    let env = [
        ("HOME", dir.display().to_string()),
        ("NATS_URL", format!("ws://127.0.0.1:{}", stack.ws)),
        ("CODESWITCH_BASE_URL", format!("http://{}", stack.bridge)),
        ("npm_config_cache", std::env::temp_dir().join("ailurus-npm-cache").display().to_string()),
        ("NATS_SERVER_BIN", nats_server_bin().display().to_string()),
    ];
    let prelude = format!("ailurus() {{ {} \"$@\"; }}", shell_quote(env!("CARGO_BIN_EXE_ailurus")));
    let replace = |t: &str| t.replace("127.0.0.1:4222", &format!("127.0.0.1:{nats_port}"));
    let ran = run_blocks("examples/README.md", &all, dir, &env, &prelude, &replace);
    assert!(ran >= 8, "only {ran} examples/README.md commands ran");
}

/// deploy/README.md: its commands set up machines (system paths, systemd, Docker, fixed
/// ports), so each carries a `not run by the doc test` marker with the reason; what they name
/// is still checked — the files exist and every `ailurus …` parses. `tests/deploy.rs` runs
/// the same configurations (secure profile, cluster) on free ports.
#[test]
fn every_deploy_readme_command_is_run_or_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("deploy/README.md")).expect("deploy/README.md");
    let all = blocks(&doc);
    assert!(all.len() >= 5, "deploy/README.md's sh blocks were not found");
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("HOME", dir.path().display().to_string())];
    let prelude = format!("ailurus() {{ {} \"$@\"; }}", shell_quote(env!("CARGO_BIN_EXE_ailurus")));
    run_blocks("deploy/README.md", &all, dir.path(), &env, &prelude, &|t: &str| t.to_string());
}

/// Copy `from` to `to`, leaving out installed packages (`node_modules`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").filter_map(Result::ok) {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_name() == "node_modules" {
            continue;
        }
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

#[test]
fn blocks_and_comments_are_read_as_the_shell_reads_them() {
    let md = "text\n```sh\na 1 \\\n  2   # c\n# only a comment\n\nb '#not' # needs: nats\n```\n```toml\nx = 1\n```\n```sh\nc\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 2);
    assert_eq!(
        b[0].iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
        ["a 1 \\\n  2   # c", "b '#not' # needs: nats"]
    );
    assert_eq!(b[0][1].line, 7);
    assert_eq!(b[1][0].text, "c");
    assert_eq!(comment("b '#not' # needs: nats"), Some("needs: nats"));
    assert_eq!(comment("curl -d '{\"a\":\"#\"}'"), None);
    assert!(sets_a_variable("T=$(cat .ailurus-data/demo-token)"));
    assert!(sets_a_variable("export A=1 B=2"));
    assert!(!sets_a_variable("AILURUS_API_KEY=$TOKEN codex exec \"say hi\""));
    assert!(!sets_a_variable("ailurus req claude \"hello\""));
    // A command that is not run still has to name real files and parse.
    assert!(still_true("install -m 0644 deploy/systemd/ailurus-*.service /etc/systemd/system/").is_ok());
    assert!(still_true("NATS_USER=a X=… ailurus quota topup alice '$5'").is_ok());
    assert!(still_true("docker build -f deploy/Dockerfile.gone .").unwrap_err().contains("deploy/Dockerfile.gone"));
    assert!(still_true("ailurus tokens create --user alice").unwrap_err().contains("does not parse"));
    assert!(still_true("ailurus token create --usr alice").unwrap_err().contains("does not parse"));
    let md = "```sh\n# not run by the doc test: port 4222\na\nb # c\n```\n```sh\nd\n```\n";
    let b = blocks(md);
    assert_eq!(b[0].iter().map(|c| c.not_run.as_deref()).collect::<Vec<_>>(), [Some("port 4222"), Some("port 4222")]);
    assert_eq!(b[1][0].not_run, None);
}

/// What a NATS server answers, within 5 s, after `hello` on `stream` (raw bytes, as text).
fn exchange(stream: &mut std::net::TcpStream, hello: &[u8], want: &[&str]) -> String {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
    stream.write_all(hello).expect("write");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let text = String::from_utf8_lossy(&got).into_owned();
        if want.iter().any(|w| text.contains(w)) {
            return text;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// One masked WebSocket binary frame (a client must mask), payload under 126 bytes.
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x1b, 0x2c, 0x3d, 0x4e];
    let mut f = vec![0x82, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Issue 16: the embedded default is locked. `ailurus up` writes a user and password (mode
/// 0600) and starts its nats-server requiring them on the client port and the WebSocket
/// port; a connection without them is refused, one with them is served, and the CLI finds
/// them by itself.
#[test]
fn ailurus_up_locks_its_nats_server_on_both_ports() {
    use std::os::unix::fs::PermissionsExt;
    let stack = up();
    let dir = stack.dir.path();
    let auth_file = dir.join(".ailurus-data").join(ailurus::bus::LOCAL_AUTH_FILE);
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&auth_file), 0o600, "{}", auth_file.display());
    let conf = dir.join(".ailurus-data/nats/nats-server.conf");
    assert_eq!(mode(&conf), 0o600, "the server config holds the password");
    let secret_key = dir.join(".ailurus-data").join(ailurus::seal::KEY_FILE);
    assert_eq!(mode(&secret_key), 0o600, "the key that seals channel API keys");
    let auth = ailurus::bus::ConnectAuth::from_file(&auth_file).expect("user and password");
    let (user, password) = (auth.user.unwrap_or_default(), auth.password.unwrap_or_default());
    assert!(password.len() >= 32);
    let addr = stack.nats.trim_start_matches("nats://").to_string();

    // Client port: no credentials → refused; the right ones → served.
    let mut anon = std::net::TcpStream::connect(&addr).expect("connect");
    let said = exchange(&mut anon, b"CONNECT {\"verbose\":false}\r\nPING\r\n", &["-ERR", "PONG"]);
    assert!(said.contains("\"auth_required\":true"), "{said}");
    assert!(said.contains("Authorization Violation") && !said.contains("PONG"), "{said}");
    let mut known = std::net::TcpStream::connect(&addr).expect("connect");
    let hello = format!("CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"{password}\"}}\r\nPING\r\n");
    let said = exchange(&mut known, hello.as_bytes(), &["-ERR", "PONG"]);
    assert!(said.contains("PONG") && !said.contains("-ERR"), "{said}");

    // WebSocket port: the same refusal.
    let mut ws = std::net::TcpStream::connect(("127.0.0.1", stack.ws)).expect("connect ws");
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        stack.ws
    );
    let said = exchange(&mut ws, upgrade.as_bytes(), &["auth_required"]);
    assert!(said.starts_with("HTTP/1.1 101"), "{said}");
    let said = exchange(&mut ws, &ws_frame(b"CONNECT {\"verbose\":false}\r\nPING\r\n"), &["-ERR", "PONG"]);
    assert!(said.contains("Authorization Violation") && !said.contains("PONG"), "{said}");

    // The CLI reads the file by itself (from the data directory of the current directory).
    let out = Command::new(env!("CARGO_BIN_EXE_ailurus"))
        .args(["streams", "list"])
        .current_dir(dir)
        .env("NATS_URL", &stack.nats)
        .env("AILURUS__NATS__URL", &stack.nats)
        .env_remove("NATS_USER")
        .env_remove("NATS_PASSWORD")
        .output()
        .expect("ailurus streams list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("LLM_REQUESTS"));
}

/// The README's promise for a new user: after the two set-up commands, `ailurus connect
/// <cli> --write` is the only setup, and Claude Code, Codex CLI and Gemini CLI — the real ones,
/// pinned in `tests/clients/run_cli_smoke.sh`, each in an empty HOME with no model variable —
/// answer `say hi` through `ailurus up`. Needs Node ≥ 20 and npm (the CLIs are installed from
/// the npm registry into a cache directory once); skipped with the reason otherwise.
#[test]
fn the_real_clis_answer_after_ailurus_connect() {
    let node = Command::new("node").arg("--version").output();
    let major = node.as_ref().ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).trim().trim_start_matches('v').split('.').next()?.parse::<u32>().ok()
    });
    match major {
        None => return println!("SKIP the_real_clis_answer_after_ailurus_connect: node is not installed"),
        Some(m) if m < 20 => {
            return println!("SKIP the_real_clis_answer_after_ailurus_connect: node {m} is older than 20")
        }
        Some(_) if !on_path("npm") => {
            return println!("SKIP the_real_clis_answer_after_ailurus_connect: npm is not installed")
        }
        Some(_) => {}
    }
    let stack = up();
    let token = std::fs::read_to_string(stack.dir.path().join(".ailurus-data/demo-token"))
        .expect("the demo token")
        .trim()
        .to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/run_cli_smoke.sh");
    let cli_dir = std::env::temp_dir().join("ailurus-cli-smoke");
    let mut c = Command::new("bash");
    c.arg(&script)
        .env("SETUP", "connect")
        .env("AILURUS", env!("CARGO_BIN_EXE_ailurus"))
        .env("BRIDGE", format!("http://{}", stack.bridge))
        .env("API_KEY", &token)
        .env("CLI_DIR", &cli_dir)
        .env("TIMEOUT", "120")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("bash tests/clients/run_cli_smoke.sh");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    // The install (about 35 s here) and three CLIs, each bounded to 120 s by the script.
    let out = match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("run_cli_smoke.sh: {e}"),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("run_cli_smoke.sh did not finish within 600 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    // npm is there (checked above): a failed install is a failure, as every other one is.
    assert!(out.status.success(), "the real CLIs did not all answer:\n{stdout}\n{stderr}");
    for cli in ["claude", "codex", "gemini"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("PASS {cli} ")) && l.contains("(ailurus connect): Mock answer to")),
            "{cli} did not answer:\n{stdout}"
        );
    }
    assert!(!stdout.contains(&token), "the token was printed:\n{stdout}");
}
