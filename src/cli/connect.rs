//! `ailurus connect claude|codex|gemini|openai`: what a client needs to use this gateway, with
//! a token. Printed by default (shell `export` lines and settings-file snippets); `--write`
//! merges it into the client's own settings files, keeping a backup beside each file the first
//! time; `--undo` puts back what was there (or removes a file that did not exist).
//!
//! The editors are pure (old text → new text), so they are tested on data; a file that does
//! not parse is an error that names it, and nothing is written. Nothing here logs: the token is
//! the user's own and is printed only on stdout, as asked.

use crate::config::Config;
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The clients `connect` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Client {
    /// Claude Code: `ANTHROPIC_BASE_URL` / `ANTHROPIC_AUTH_TOKEN`, `~/.claude/settings.json`.
    Claude,
    /// Codex CLI: a provider in `~/.codex/config.toml`, the key in `AILURUS_API_KEY`.
    Codex,
    /// Gemini CLI: `~/.gemini/settings.json` and `~/.gemini/.env`.
    Gemini,
    /// OpenAI SDKs: `OPENAI_BASE_URL` / `OPENAI_API_KEY`.
    Openai,
}

/// Arguments of `ailurus connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Which client to set up: claude, codex, gemini or openai.
    pub client: Client,
    /// API token the client sends (default: `AILURUS_TOKEN`, else the demo token `ailurus up`
    /// saved in `<data-dir>/demo-token`).
    #[arg(long, env = "AILURUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Bridge URL, without `/v1` (default: `http://` + the config's `[bridge] listen`).
    #[arg(long)]
    pub bridge: Option<String>,
    /// Model the client asks for (default: the client's own, which the embedded default's mock
    /// answers too).
    #[arg(long)]
    pub model: Option<String>,
    /// Merge the settings into the client's files, keeping `<file>.ailurus-backup` the first time.
    #[arg(long, conflicts_with = "undo")]
    pub write: bool,
    /// Restore the files an earlier `--write` changed (remove those it created).
    #[arg(long)]
    pub undo: bool,
    /// Where `ailurus up` keeps its data, including the demo token.
    #[arg(long, env = "AILURUS_DATA", default_value = ".ailurus-data")]
    pub data_dir: PathBuf,
}

/// Suffix of the copy of a file as it was before the first `--write`.
const BACKUP: &str = ".ailurus-backup";
/// Suffix of the marker saying the file did not exist before the first `--write`.
const CREATED: &str = ".ailurus-created";
/// The environment variable Codex reads the token from (`env_key`).
const CODEX_ENV_KEY: &str = "AILURUS_API_KEY";

/// One change to one file.
#[derive(Debug, Clone, PartialEq)]
enum Edit {
    /// Set these values at these key paths of a JSON object (other keys are kept).
    Json(Vec<(Vec<&'static str>, Value)>),
    /// Select the `ailurus` provider of Codex, pointed at this bridge.
    CodexToml { bridge: String, model: Option<String> },
    /// Set these `KEY=value` lines of a dotenv file (other lines are kept).
    DotEnv(Vec<(&'static str, String)>),
}

impl Edit {
    /// The new text of a file that holds `old`.
    fn apply(&self, old: &str) -> Result<String, String> {
        match self {
            Edit::Json(sets) => edit_json(old, sets),
            Edit::CodexToml { bridge, model } => edit_codex_toml(old, bridge, model.as_deref()),
            Edit::DotEnv(sets) => Ok(edit_dotenv(old, sets)),
        }
    }
}

/// A file to change and how.
struct FilePlan {
    path: PathBuf,
    edit: Edit,
    /// How the printed snippet relates to the exports ("or, instead of the exports, in").
    role: &'static str,
}

/// Everything one client needs.
struct Plan {
    title: String,
    /// Shell variables, in print mode.
    env: Vec<(&'static str, String)>,
    /// Of those, the ones a shell still needs once the files are written.
    env_after_write: Vec<(&'static str, String)>,
    files: Vec<FilePlan>,
    notes: Vec<String>,
}

/// The client's settings files (`--undo` needs only these, not a token).
fn client_files(client: Client, home: &Path) -> Vec<PathBuf> {
    let dir =
        |var: &str, default: PathBuf| std::env::var_os(var).filter(|v| !v.is_empty()).map_or(default, PathBuf::from);
    match client {
        Client::Claude => vec![dir("CLAUDE_CONFIG_DIR", home.join(".claude")).join("settings.json")],
        Client::Codex => vec![dir("CODEX_HOME", home.join(".codex")).join("config.toml")],
        Client::Gemini => vec![home.join(".gemini").join("settings.json"), home.join(".gemini").join(".env")],
        Client::Openai => Vec::new(),
    }
}

fn plan(client: Client, home: &Path, bridge: &str, token: &str, model: Option<&str>) -> Plan {
    let files = client_files(client, home);
    let s = |v: &str| v.to_string();
    let mut notes = Vec::new();
    if model.is_none() && client != Client::Openai {
        notes.push(
            "the client keeps its default model (the embedded default's mock answers every name; \
             with real channels, one of them must serve it)"
                .into(),
        );
    }
    let file = |i: usize, edit: Edit, role: &'static str| FilePlan { path: files[i].clone(), edit, role };
    match client {
        Client::Claude => {
            let mut env = vec![("ANTHROPIC_BASE_URL", s(bridge)), ("ANTHROPIC_AUTH_TOKEN", s(token))];
            if let Some(m) = model {
                env.extend([("ANTHROPIC_MODEL", s(m)), ("ANTHROPIC_DEFAULT_HAIKU_MODEL", s(m))]);
            }
            notes.push(
                "ANTHROPIC_AUTH_TOKEN goes as `Authorization: Bearer`, which Ailurus reads first; leave ANTHROPIC_API_KEY \
                 unset (Claude Code would send it too, as x-api-key, and warn of the conflict)"
                    .into(),
            );
            let sets = env.iter().map(|(k, v)| (vec!["env", *k], Value::String(v.clone()))).collect();
            Plan {
                title: format!("Claude Code → Ailurus at {bridge}"),
                env,
                env_after_write: Vec::new(),
                files: vec![file(0, Edit::Json(sets), "or, instead of the exports, in")],
                notes,
            }
        }
        Client::Codex => {
            let edit = Edit::CodexToml { bridge: s(bridge), model: model.map(s) };
            let env = vec![(CODEX_ENV_KEY, s(token))];
            Plan {
                title: format!("Codex CLI → Ailurus at {bridge}/v1 (Responses API)"),
                env: env.clone(),
                env_after_write: env,
                files: vec![file(0, edit, "and in")],
                notes,
            }
        }
        Client::Gemini => {
            let mut sets = vec![(vec!["security", "auth", "selectedType"], Value::String(s("gemini-api-key")))];
            if let Some(m) = model {
                sets.push((vec!["model", "name"], Value::String(s(m))));
            }
            let env = vec![("GOOGLE_GEMINI_BASE_URL", s(bridge)), ("GEMINI_API_KEY", s(token))];
            notes.push("Gemini CLI reads only the first .env it finds (the project's before ~/.gemini/.env), and only in a folder it trusts (else pass --skip-trust); exported variables win over both".into());
            Plan {
                title: format!("Gemini CLI → Ailurus at {bridge}"),
                env: env.clone(),
                env_after_write: Vec::new(),
                files: vec![
                    file(0, Edit::Json(sets), "and in"),
                    file(1, Edit::DotEnv(env), "or, instead of the exports, in"),
                ],
                notes,
            }
        }
        Client::Openai => {
            let env = vec![("OPENAI_BASE_URL", format!("{bridge}/v1")), ("OPENAI_API_KEY", s(token))];
            notes.push("the SDKs read only the environment: there is no file to write".into());
            Plan {
                title: format!("OpenAI SDKs → Ailurus at {bridge}/v1"),
                env: env.clone(),
                env_after_write: env,
                files: Vec::new(),
                notes,
            }
        }
    }
}

/// Print, write or undo.
pub fn run(config: &Config, args: ConnectArgs) -> Result<ExitCode, String> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or("HOME is not set: cannot find the client's settings files")?;
    let out = if args.undo {
        undo(&client_files(args.client, &home))?
    } else {
        let bridge = bridge_url(args.bridge.as_deref(), &config.bridge.listen)?;
        let token = token(args.token, &args.data_dir)?;
        let plan = plan(args.client, &home, &bridge, &token, args.model.as_deref());
        if args.write {
            write(&plan, args.client)?
        } else {
            render(&plan, args.client)?
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush());
    Ok(ExitCode::SUCCESS)
}

/// `--token`/`AILURUS_TOKEN`, else the demo token file; checked to be one shell word.
fn token(given: Option<String>, data_dir: &Path) -> Result<String, String> {
    let token = match given {
        Some(t) => t,
        None => {
            let path = data_dir.join("demo-token");
            std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "no token: pass --token or set AILURUS_TOKEN (create one with `ailurus token create`), \
                     or run `ailurus up` for a demo token ({}: {e})",
                    path.display()
                )
            })?
        }
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if let Some(c) = token.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\')) {
        return Err(format!("the token has a character no client setting can carry: {c:?}"));
    }
    Ok(token)
}

/// `--bridge`, else `http://<listen>` with a wildcard host replaced by loopback; no trailing `/`.
fn bridge_url(given: Option<&str>, listen: &str) -> Result<String, String> {
    let url = match given {
        // The root: each client gets the suffix it needs (`/v1` for OpenAI and Codex).
        Some(u) => u.trim().trim_end_matches('/').trim_end_matches("/v1").to_string(),
        None => {
            let local = listen.replacen("0.0.0.0:", "127.0.0.1:", 1).replacen("[::]:", "[::1]:", 1);
            format!("http://{local}")
        }
    };
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\')) => {
            Ok(url)
        }
        _ => Err(format!("bridge URL {url:?} is not an http:// or https:// URL")),
    }
}

/// A value as one shell word.
fn shell_word(v: &str) -> String {
    if plain(v) {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

/// Needs no quotes, in a shell or a dotenv file.
fn plain(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:/=+@%,".contains(c))
}

fn render(plan: &Plan, client: Client) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(out, "# {}", plan.title);
    let _ = writeln!(out, "# In your shell:");
    for (k, v) in &plan.env {
        let _ = writeln!(out, "export {k}={}", shell_word(v));
    }
    for f in &plan.files {
        let snippet = f.edit.apply("")?;
        let _ = writeln!(out, "\n# {} {}:", f.role, f.path.display());
        out.push_str(&snippet);
    }
    if !plan.files.is_empty() {
        let _ = writeln!(
            out,
            "\n# `ailurus connect {} --write` merges these into the files (a backup is kept).",
            name(client)
        );
    }
    for n in &plan.notes {
        let _ = writeln!(out, "# Note: {n}");
    }
    Ok(out)
}

fn name(client: Client) -> String {
    format!("{client:?}").to_lowercase()
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The file's text, `None` if it does not exist.
fn read(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| format!("{}: not UTF-8 text", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write(plan: &Plan, client: Client) -> Result<String, String> {
    // Every edit is computed before anything is written: one bad file changes nothing.
    let mut changes = Vec::new();
    for f in &plan.files {
        let old = read(&f.path)?;
        let new = f.edit.apply(old.as_deref().unwrap_or("")).map_err(|e| {
            format!("{}: {e}; nothing was written (fix or move the file, or edit it by hand)", f.path.display())
        })?;
        changes.push((f, old, new));
    }
    let mut out = String::new();
    let _ = writeln!(out, "# {}", plan.title);
    for (f, old, new) in changes {
        let path = &f.path;
        if old.as_deref() == Some(new.as_str()) {
            let _ = writeln!(out, "unchanged {}", path.display());
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let (backup, created) = (sibling(path, BACKUP), sibling(path, CREATED));
        let kept = if backup.exists() || created.exists() {
            "the backup of the original is kept".to_string()
        } else if old.is_some() {
            std::fs::copy(path, &backup).map_err(|e| format!("{}: cannot back up: {e}", backup.display()))?;
            format!("backup {}", backup.display())
        } else {
            let note =
                format!("{} did not exist before `ailurus connect --write`; --undo removes it\n", path.display());
            std::fs::write(&created, note).map_err(|e| format!("{}: {e}", created.display()))?;
            "it did not exist: --undo removes it".to_string()
        };
        std::fs::write(path, &new).map_err(|e| format!("{}: {e}", path.display()))?;
        #[cfg(unix)]
        if old.is_none() {
            // A new file holds the token: readable by its owner only.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let verb = if old.is_some() { "updated" } else { "created" };
        let _ = writeln!(out, "{verb} {} ({kept})", path.display());
    }
    if plan.files.is_empty() {
        let _ = writeln!(out, "no file to write for {}: set the environment instead", name(client));
    }
    if !plan.env_after_write.is_empty() {
        let _ = writeln!(out, "# Still needed in your shell:");
        for (k, v) in &plan.env_after_write {
            let _ = writeln!(out, "export {k}={}", shell_word(v));
        }
    }
    if !plan.files.is_empty() {
        let _ = writeln!(out, "# `ailurus connect {} --undo` restores the files.", name(client));
    }
    Ok(out)
}

fn undo(files: &[PathBuf]) -> Result<String, String> {
    let mut out = String::new();
    for path in files {
        let (backup, created) = (sibling(path, BACKUP), sibling(path, CREATED));
        if backup.exists() {
            std::fs::rename(&backup, path).map_err(|e| format!("{}: cannot restore: {e}", backup.display()))?;
            let _ = writeln!(out, "restored {}", path.display());
        } else if created.exists() {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
            std::fs::remove_file(&created).map_err(|e| format!("{}: {e}", created.display()))?;
            let _ = writeln!(out, "removed {} (it did not exist before)", path.display());
        } else {
            let _ = writeln!(out, "nothing to undo for {}", path.display());
        }
    }
    if files.is_empty() {
        let _ = writeln!(out, "no file to undo: this client is set up by environment variables only");
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Pure editors
// ---------------------------------------------------------------------------------------------

/// Set values at key paths of a JSON object, creating the objects on the way; every other key
/// is kept, in the file's order. Empty text is an empty object.
fn edit_json(old: &str, sets: &[(Vec<&'static str>, Value)]) -> Result<String, String> {
    let mut root = if old.trim().is_empty() {
        Json::Object(Vec::new())
    } else {
        serde_json::from_str(old).map_err(|e| format!("not valid JSON ({e}); comments are not supported"))?
    };
    for (path, value) in sets {
        let mut at = &mut root;
        for (i, key) in path.iter().enumerate() {
            let Json::Object(fields) = at else { return Err(not_object(&path[..i])) };
            let pos = fields.iter().position(|(k, _)| k == key).unwrap_or_else(|| {
                fields.push(((*key).to_string(), Json::Object(Vec::new())));
                fields.len() - 1
            });
            if i + 1 == path.len() {
                fields[pos].1 = Json::Leaf(value.clone());
                break;
            }
            at = &mut fields[pos].1;
        }
    }
    let mut text = serde_json::to_string_pretty(&root).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// A JSON value whose objects keep the file's key order (serde_json's `Map` sorts them).
#[derive(Debug)]
enum Json {
    Leaf(Value),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Leaf(Value::Null))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Leaf(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Leaf(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Leaf(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Leaf(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Leaf(Value::String(v.to_string())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut fields: Vec<(String, Json)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    // A repeated key: the last value wins (as in serde_json), at the first place.
                    match fields.iter_mut().find(|(name, _)| *name == k) {
                        Some(field) => field.1 = v,
                        None => fields.push((k, v)),
                    }
                }
                Ok(Json::Object(fields))
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Json::Leaf(v) => v.serialize(s),
            Json::List(items) => items.serialize(s),
            Json::Object(fields) => {
                let mut m = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

fn not_object(path: &[&str]) -> String {
    if path.is_empty() {
        "the top level is not a JSON object".into()
    } else {
        format!("`{}` is not a JSON object", path.join("."))
    }
}

/// Select Codex's `ailurus` provider: `model_provider` (and `model`) at the top, and the table
/// `[model_providers.ailurus]` replaced; comments and everything else are kept.
fn edit_codex_toml(old: &str, bridge: &str, model: Option<&str>) -> Result<String, String> {
    use toml_edit::{value, DocumentMut, Item, Table};
    let mut doc: DocumentMut = old.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    doc["model_provider"] = value("ailurus");
    if let Some(m) = model {
        doc["model"] = value(m);
    }
    let providers = doc.entry("model_providers").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    let providers = providers.as_table_mut().ok_or("`model_providers` is not a table")?;
    let ours = providers.entry("ailurus").or_insert_with(|| Item::Table(Table::new()));
    let ours = ours.as_table_mut().ok_or("`model_providers.ailurus` is not a table")?;
    ours.clear();
    ours["name"] = value("Ailurus");
    ours["base_url"] = value(format!("{bridge}/v1"));
    ours["wire_api"] = value("responses");
    ours["env_key"] = value(CODEX_ENV_KEY);
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Set `KEY=value` lines of a dotenv file: a line of the key (or `export KEY=`) is replaced in
/// place (later duplicates dropped), a missing key appended, every other line kept.
fn edit_dotenv(old: &str, sets: &[(&'static str, String)]) -> String {
    let line_of = |k: &str, v: &str| if plain(v) { format!("{k}={v}") } else { format!("{k}=\"{v}\"") };
    let mut done = vec![false; sets.len()];
    let mut lines = Vec::new();
    for line in old.lines() {
        let body = line.trim_start();
        let body = body.strip_prefix("export ").unwrap_or(body);
        let key = body.split_once('=').map(|(k, _)| k.trim());
        match key.and_then(|k| sets.iter().position(|(name, _)| *name == k)) {
            Some(i) if !done[i] => {
                lines.push(line_of(sets[i].0, &sets[i].1));
                done[i] = true;
            }
            Some(_) => {}
            None => lines.push(line.to_string()),
        }
    }
    for (i, (k, v)) in sets.iter().enumerate() {
        if !done[i] {
            lines.push(line_of(k, v));
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_json(input: &str, expected: Result<&str, &str>) {
        let sets = vec![
            (vec!["env", "ANTHROPIC_BASE_URL"], Value::String("http://h:1".into())),
            (vec!["env", "ANTHROPIC_AUTH_TOKEN"], Value::String("sk-t".into())),
        ];
        match (edit_json(input, &sets), expected) {
            (Ok(got), Ok(want)) => {
                let want: Value = serde_json::from_str(want).unwrap();
                assert_eq!(serde_json::from_str::<Value>(&got).unwrap(), want, "input {input:?}");
                // Applying it again changes nothing.
                assert_eq!(edit_json(&got, &sets).unwrap(), got);
            }
            (Err(got), Err(want)) => assert!(got.contains(want), "input {input:?}: {got}"),
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn json_editor() {
        let ours = r#"{"env":{"ANTHROPIC_BASE_URL":"http://h:1","ANTHROPIC_AUTH_TOKEN":"sk-t"}}"#;
        check_json("", Ok(ours));
        check_json(" \n", Ok(ours));
        check_json("{}", Ok(ours));
        check_json(
            r#"{"model":"opus","env":{"FOO":"1"},"permissions":{"allow":["Bash"]}}"#,
            Ok(
                r#"{"model":"opus","env":{"FOO":"1","ANTHROPIC_BASE_URL":"http://h:1","ANTHROPIC_AUTH_TOKEN":"sk-t"},"permissions":{"allow":["Bash"]}}"#,
            ),
        );
        check_json(r#"{"env":{"ANTHROPIC_BASE_URL":"http://old","ANTHROPIC_AUTH_TOKEN":"sk-old"}}"#, Ok(ours));
        check_json("{\"env\": ", Err("not valid JSON"));
        check_json("// c\n{}", Err("comments are not supported"));
        check_json("[1]", Err("the top level is not a JSON object"));
        check_json(r#"{"env":"x"}"#, Err("`env` is not a JSON object"));
        // Deeper paths create their parents.
        let sets = vec![(vec!["security", "auth", "selectedType"], Value::String("gemini-api-key".into()))];
        let got = edit_json(r#"{"security":{"folderTrust":{"enabled":true}}}"#, &sets).unwrap();
        let want = r#"{"security":{"auth":{"selectedType":"gemini-api-key"},"folderTrust":{"enabled":true}}}"#;
        assert_eq!(serde_json::from_str::<Value>(&got).unwrap(), serde_json::from_str::<Value>(want).unwrap());
        assert!(edit_json(r#"{"security":{"auth":3}}"#, &sets).unwrap_err().contains("`security.auth`"));
        // The file's key order and every kind of value survive.
        let old = r#"{"z":null,"a":{"y":[1,-2,1.5,{"k":true}],"b":18446744073709551615},"env":{"Z":"1"},"d":1,"d":2}"#;
        let sets = vec![(vec!["env", "A"], Value::String("x".into())), (vec!["new", "k"], Value::String("v".into()))];
        let got = edit_json(old, &sets).unwrap();
        let want = r#"{"z":null,"a":{"y":[1,-2,1.5,{"k":true}],"b":18446744073709551615},"env":{"Z":"1","A":"x"},"d":2,"new":{"k":"v"}}"#;
        assert_eq!(got.split_whitespace().collect::<String>(), want);
    }

    const BLOCK: &str = "[model_providers.ailurus]\nname = \"Ailurus\"\nbase_url = \"http://h:1/v1\"\nwire_api = \"responses\"\nenv_key = \"AILURUS_API_KEY\"\n";

    fn check_toml(input: &str, model: Option<&str>, expected: Result<String, &str>) {
        match (edit_codex_toml(input, "http://h:1", model), expected) {
            (Ok(got), Ok(want)) => {
                assert_eq!(got, want, "input {input:?}");
                assert_eq!(edit_codex_toml(&got, "http://h:1", model).unwrap(), got, "idempotent");
                assert!(got.parse::<toml::Table>().is_ok());
            }
            (Err(got), Err(want)) => assert!(got.contains(want), "input {input:?}: {got}"),
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn toml_editor() {
        check_toml("", None, Ok(format!("model_provider = \"ailurus\"\n\n{BLOCK}")));
        check_toml("", Some("mock"), Ok(format!("model_provider = \"ailurus\"\nmodel = \"mock\"\n\n{BLOCK}")));
        // Unrelated keys, tables and comments stay where they were.
        check_toml(
            "# mine\nmodel = \"gpt-5\" # best\napproval_policy = \"on-request\"\n\n[mcp_servers.x]\ncommand = \"x\"\n",
            None,
            Ok(format!(
                "# mine\nmodel = \"gpt-5\" # best\napproval_policy = \"on-request\"\nmodel_provider = \"ailurus\"\n\n[mcp_servers.x]\ncommand = \"x\"\n\n{BLOCK}"
            )),
        );
        // An earlier block (and the provider choice) is replaced; other providers are kept.
        check_toml(
            "model_provider = \"openai\"\n\n[model_providers.ailurus]\nname = \"old\"\nbase_url = \"http://old/v1\"\nexperimental_bearer_token = \"sk-old\"\n\n[model_providers.other]\nname = \"O\"\n",
            None,
            Ok(format!("model_provider = \"ailurus\"\n\n{BLOCK}\n[model_providers.other]\nname = \"O\"\n")),
        );
        check_toml("model = ", None, Err("not valid TOML"));
        check_toml("model_providers = 3\n", None, Err("`model_providers` is not a table"));
        check_toml("[model_providers]\nailurus = \"x\"\n", None, Err("`model_providers.ailurus` is not a table"));
    }

    #[test]
    fn dotenv_editor() {
        let sets = vec![("GOOGLE_GEMINI_BASE_URL", "http://h:1".to_string()), ("GEMINI_API_KEY", "sk-t".to_string())];
        let ours = "GOOGLE_GEMINI_BASE_URL=http://h:1\nGEMINI_API_KEY=sk-t\n";
        let cases: &[(&str, String)] = &[
            ("", ours.to_string()),
            ("# keys\nFOO=bar\n", format!("# keys\nFOO=bar\n{ours}")),
            (
                "export GEMINI_API_KEY=old\nX=1\nGEMINI_API_KEY=dup\nGOOGLE_GEMINI_BASE_URL = \"http://old\"",
                "GEMINI_API_KEY=sk-t\nX=1\nGOOGLE_GEMINI_BASE_URL=http://h:1\n".to_string(),
            ),
            ("GEMINI_API_KEYS=keep\n", format!("GEMINI_API_KEYS=keep\n{ours}")),
        ];
        for (input, want) in cases {
            let got = edit_dotenv(input, &sets);
            assert_eq!(&got, want, "input {input:?}");
            assert_eq!(edit_dotenv(&got, &sets), got, "idempotent");
        }
        assert_eq!(edit_dotenv("", &[("K", "a b$c".into())]), "K=\"a b$c\"\n");
    }

    #[test]
    fn bridge_and_token() {
        assert_eq!(bridge_url(None, "127.0.0.1:18100").unwrap(), "http://127.0.0.1:18100");
        assert_eq!(bridge_url(None, "0.0.0.0:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(bridge_url(None, "[::]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(bridge_url(Some("https://gw.example/ "), "x").unwrap(), "https://gw.example");
        assert_eq!(bridge_url(Some("http://h:1/v1/"), "x").unwrap(), "http://h:1");
        assert!(bridge_url(Some("gw.example"), "x").is_err());
        let dir = Path::new("/nonexistent-ailurus");
        assert_eq!(token(Some(" sk-ail-x\n".into()), dir).unwrap(), "sk-ail-x");
        assert!(token(None, dir).unwrap_err().contains("--token"));
        assert!(token(Some("a b".into()), dir).is_err());
        assert!(token(Some("".into()), dir).is_err());
        assert_eq!(shell_word("sk-ail-X9"), "sk-ail-X9");
        assert_eq!(shell_word("a$b"), "'a$b'");
    }
}
