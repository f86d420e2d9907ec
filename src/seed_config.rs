//! The seed's (CodeSwitch's) settings, read when Ailurus is not configured otherwise.
//!
//! - NEW-API: `NEW_API_URL` + `NEW_API_TOKEN` in the environment (these win), else
//!   `~/.code-switch/app.json` with `new_api_enabled: true`, `new_api_url`, `new_api_token`,
//!   give two top-priority channels when no `[[channels]]` are configured: `newapi` (kind
//!   `openai`, `<url>/v1`, every model and platform) and `newapi-claude` (kind `anthropic`,
//!   `<url>`, the `claude` platform, one tier higher so Claude clients pass through).
//! - NATS: `~/.code-switch/sync-settings.json` with `enabled: true` gives `url` when no NATS URL
//!   is set (`NATS_URL`, `[nats] url`, `AILURUS__NATS__URL`).
//!
//! [`seed`] is pure: it reads the environment through a lookup function and files under the
//! given home directory only. The env token is passed by name (`api_key_env =
//! ["NEW_API_TOKEN"]`); the app.json token as [`ChannelConfig::key`], never through the
//! process environment. No token is ever part of an error or a log line.

use crate::channel::{ChannelConfig, ChannelOrigin, Secret};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// CodeSwitch's app settings, under the home directory.
pub const APP_JSON: &str = ".code-switch/app.json";
/// CodeSwitch's sync settings (the NATS URL), under the home directory.
pub const SYNC_JSON: &str = ".code-switch/sync-settings.json";
/// Environment variable with the NEW-API root URL.
pub const URL_ENV: &str = "NEW_API_URL";
/// Environment variable with the NEW-API token.
pub const TOKEN_ENV: &str = "NEW_API_TOKEN";
/// Priority of the `newapi` channel (`newapi-claude` is one higher).
pub const PRIORITY: i32 = 1000;

/// What the seed's settings contribute.
#[derive(Debug, Default)]
pub struct Seed {
    /// NEW-API channels (empty when not configured, or when not asked for).
    pub channels: Vec<ChannelConfig>,
    /// The NATS URL of `sync-settings.json`, when enabled and asked for.
    pub nats_url: Option<String>,
}

/// Read the seed's settings. `want_channels`: no `[[channels]]` are configured;
/// `want_nats`: no NATS URL is set. Files are read only when needed. Errors name the file (or
/// variable) and field.
pub fn seed(
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    want_channels: bool,
    want_nats: bool,
) -> Result<Seed, String> {
    let mut out = Seed::default();
    if want_channels {
        out.channels = new_api_channels(env, home)?;
    }
    if want_nats {
        if let Some(home) = home {
            out.nats_url = sync_nats_url(&home.join(SYNC_JSON))?;
        }
    }
    Ok(out)
}

/// A non-blank variable.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The NEW-API channels from the environment, else from `app.json`.
fn new_api_channels(env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Result<Vec<ChannelConfig>, String> {
    match (var(env, URL_ENV), var(env, TOKEN_ENV)) {
        (Some(url), Some(_)) => {
            let root = root_url(&url).map_err(|e| format!("{URL_ENV}: {e}"))?;
            return Ok(channels(&root, ChannelOrigin::NewApiEnv, vec![TOKEN_ENV.to_string()], None));
        }
        (Some(_), None) => return Err(format!("{URL_ENV} is set but {TOKEN_ENV} is not")),
        (None, Some(_)) => return Err(format!("{TOKEN_ENV} is set but {URL_ENV} is not")),
        (None, None) => {}
    }
    let Some(home) = home else { return Ok(Vec::new()) };
    let path = home.join(APP_JSON);
    let Some(doc) = read_json(&path)? else { return Ok(Vec::new()) };
    let file = path.display();
    if !bool_field(&doc, "new_api_enabled", &path)?.unwrap_or(false) {
        return Ok(Vec::new());
    }
    let url = string_field(&doc, "new_api_url", &path)?
        .ok_or_else(|| format!("{file}: new_api_enabled is true but new_api_url is empty"))?;
    let token = string_field(&doc, "new_api_token", &path)?
        .ok_or_else(|| format!("{file}: new_api_enabled is true but new_api_token is empty"))?;
    let root = root_url(&url).map_err(|e| format!("{file}: new_api_url {e}"))?;
    Ok(channels(&root, ChannelOrigin::CodeSwitchApp, Vec::new(), Some(Secret::new(token))))
}

/// The NEW-API root: trimmed, without trailing `/` or `/v1`. The value is not repeated in
/// the error (a URL may carry credentials).
fn root_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix("/v1").unwrap_or(url).trim_end_matches('/');
    let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).unwrap_or("");
    if host.is_empty() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(url.to_string())
}

/// The two channels on `root`.
fn channels(root: &str, origin: ChannelOrigin, api_key_env: Vec<String>, key: Option<Secret>) -> Vec<ChannelConfig> {
    let base = |name: &str, kind: &str, base_url: String, priority: i32, platforms: Vec<String>| ChannelConfig {
        name: name.into(),
        kind: kind.into(),
        base_url,
        api_key_env: api_key_env.clone(),
        models: Vec::new(),
        model_map: Default::default(),
        priority,
        weight: 1,
        platforms,
        timeouts: Default::default(),
        failure_statuses: Vec::new(),
        headers: Default::default(),
        enabled: true,
        origin,
        key: key.clone(),
        revision: 0,
    };
    vec![
        base("newapi-claude", "anthropic", root.to_string(), PRIORITY + 1, vec!["claude".into()]),
        base("newapi", "openai", format!("{root}/v1"), PRIORITY, Vec::new()),
    ]
}

/// The NATS URL of `sync-settings.json` when it is enabled.
fn sync_nats_url(path: &Path) -> Result<Option<String>, String> {
    let Some(doc) = read_json(path)? else { return Ok(None) };
    if !bool_field(&doc, "enabled", path)?.unwrap_or(false) {
        return Ok(None);
    }
    string_field(&doc, "url", path)?
        .map(Some)
        .ok_or_else(|| format!("{}: enabled is true but url is empty", path.display()))
}

/// A JSON object from `path`; `None` when there is no such file.
fn read_json(path: &Path) -> Result<Option<serde_json::Map<String, Value>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    // serde_json's message names a line and column, never the value.
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(format!("{}: not a JSON object", path.display())),
        Err(e) => Err(format!("{}: not valid JSON ({e})", path.display())),
    }
}

/// A boolean field; `None` when absent or null.
fn bool_field(doc: &serde_json::Map<String, Value>, field: &str, path: &Path) -> Result<Option<bool>, String> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{}: {field} must be true or false", path.display())),
    }
}

/// A non-blank string field, trimmed; `None` when absent, null or blank.
fn string_field(doc: &serde_json::Map<String, Value>, field: &str, path: &Path) -> Result<Option<String>, String> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Some(_) => Err(format!("{}: {field} must be a string", path.display())),
    }
}

/// The home directory of this process (`HOME`).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TOKEN: &str = "sk-newapi-secret-123";

    /// Environment variables, or files (relative path, text).
    type Pairs = &'static [(&'static str, &'static str)];
    /// The root URL and origin the channels should have, or none.
    type Want = Option<(&'static str, ChannelOrigin)>;
    /// `(name, kind, base_url, priority, platforms, origin, api_key_env, has key)`.
    type Row = (String, String, String, i32, Vec<String>, ChannelOrigin, Vec<String>, bool);

    /// A temporary home with `files` (relative path → text).
    fn home(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (rel, text) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    fn run(env: &[(&str, &str)], files: &[(&str, &str)], channels: bool, nats: bool) -> Result<Seed, String> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let h = home(files);
        seed(&|k| env.get(k).cloned(), Some(h.path()), channels, nats)
    }

    /// A [`Row`] for each channel.
    fn summary(seed: &Seed) -> Vec<Row> {
        seed.channels
            .iter()
            .map(|c| {
                c.validate().expect("seeded channels validate");
                (
                    c.name.clone(),
                    c.kind.clone(),
                    c.base_url.clone(),
                    c.priority,
                    c.platforms.clone(),
                    c.origin,
                    c.api_key_env.clone(),
                    c.key.is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn new_api_channels_from_env_or_app_json() {
        let app_on = r#"{"theme":"dark","new_api_enabled":true,"new_api_url":"https://app.example/","new_api_token":"sk-newapi-secret-123"}"#;
        let app_off = r#"{"new_api_enabled":false,"new_api_url":"https://app.example","new_api_token":"t"}"#;
        let env_set: Pairs = &[(URL_ENV, "https://env.example/v1/"), (TOKEN_ENV, TOKEN)];
        // (env, app.json, expected root URL and origin, or none)
        let cases: [(Pairs, Option<&str>, Want); 6] = [
            (&[], None, None),
            (&[], Some(app_off), None),
            (&[], Some("{}"), None),
            (&[], Some(app_on), Some(("https://app.example", ChannelOrigin::CodeSwitchApp))),
            (env_set, None, Some(("https://env.example", ChannelOrigin::NewApiEnv))),
            // The environment wins over app.json.
            (env_set, Some(app_on), Some(("https://env.example", ChannelOrigin::NewApiEnv))),
        ];
        for (env, app, want) in cases {
            let files: Vec<(&str, &str)> = app.map(|a| (APP_JSON, a)).into_iter().collect();
            let got = run(env, &files, true, false).unwrap_or_else(|e| panic!("{env:?} {app:?}: {e}"));
            let Some((root, origin)) = want else {
                assert!(got.channels.is_empty(), "{env:?} {app:?}");
                continue;
            };
            let from_env = origin == ChannelOrigin::NewApiEnv;
            let keys_env: Vec<String> = if from_env { vec![TOKEN_ENV.into()] } else { vec![] };
            assert_eq!(
                summary(&got),
                [
                    (
                        "newapi-claude".into(),
                        "anthropic".into(),
                        root.to_string(),
                        PRIORITY + 1,
                        vec!["claude".to_string()],
                        origin,
                        keys_env.clone(),
                        !from_env
                    ),
                    (
                        "newapi".into(),
                        "openai".into(),
                        format!("{root}/v1"),
                        PRIORITY,
                        vec![],
                        origin,
                        keys_env,
                        !from_env
                    ),
                ],
                "{env:?} {app:?}"
            );
            if !from_env {
                let keys = got.channels[0].keys().expect("keys");
                assert_eq!(keys.iter().map(Secret::expose).collect::<Vec<_>>(), [TOKEN]);
            }
            // The token is never shown.
            assert!(!format!("{:?}", got.channels).contains(TOKEN));
        }
    }

    #[test]
    fn not_asked_means_not_read() {
        // Explicit channels and an explicit NATS URL: even a broken file is not read.
        let got = run(&[(URL_ENV, "x")], &[(APP_JSON, "{"), (SYNC_JSON, "{")], false, false).expect("not read");
        assert!(got.channels.is_empty() && got.nats_url.is_none());
    }

    #[test]
    fn errors_name_the_file_and_field_never_the_token() {
        // (env, files, what the error names)
        let cases: [(Pairs, Pairs, &str); 9] = [
            (&[(URL_ENV, "https://x")], &[], "NEW_API_URL is set but NEW_API_TOKEN is not"),
            (&[(TOKEN_ENV, TOKEN)], &[], "NEW_API_TOKEN is set but NEW_API_URL is not"),
            (&[(URL_ENV, "ftp://x"), (TOKEN_ENV, TOKEN)], &[], "NEW_API_URL: must be an http"),
            (&[], &[(APP_JSON, "{not json")], "app.json: not valid JSON"),
            (&[], &[(APP_JSON, "[]")], "app.json: not a JSON object"),
            (&[], &[(APP_JSON, r#"{"new_api_enabled":"yes"}"#)], "app.json: new_api_enabled must be true or false"),
            (
                &[],
                &[(APP_JSON, r#"{"new_api_enabled":true,"new_api_token":"sk-newapi-secret-123"}"#)],
                "app.json: new_api_enabled is true but new_api_url is empty",
            ),
            (
                &[],
                &[(APP_JSON, r#"{"new_api_enabled":true,"new_api_url":"https://x","new_api_token":7}"#)],
                "app.json: new_api_token must be a string",
            ),
            (
                &[],
                &[(APP_JSON, r#"{"new_api_enabled":true,"new_api_url":"sk-newapi-secret-123","new_api_token":"t"}"#)],
                "app.json: new_api_url must be an http",
            ),
        ];
        for (env, files, want) in cases {
            let err = run(env, files, true, false).expect_err(want);
            assert!(err.contains(want), "{err:?} lacks {want:?}");
            assert!(!err.contains(TOKEN), "{err}");
        }
        let err = run(&[], &[(SYNC_JSON, r#"{"enabled":true,"url":""}"#)], false, true).expect_err("empty url");
        assert!(err.contains("sync-settings.json: enabled is true but url is empty"), "{err}");
        let err = run(&[], &[(SYNC_JSON, r#"{"enabled":1}"#)], false, true).expect_err("bad enabled");
        assert!(err.contains("sync-settings.json: enabled must be true or false"), "{err}");
    }

    #[test]
    fn sync_settings_give_the_nats_url_when_enabled() {
        // (sync-settings.json, NATS URL)
        let cases = [
            (None, None),
            (Some(r#"{"enabled":false,"url":"nats://sync:4222"}"#), None),
            (Some(r#"{"enabled":true,"url":" nats://sync:4222 "}"#), Some("nats://sync:4222")),
            (Some(r#"{"url":"nats://sync:4222"}"#), None),
        ];
        for (file, want) in cases {
            let files: Vec<(&str, &str)> = file.map(|f| (SYNC_JSON, f)).into_iter().collect();
            let got = run(&[], &files, false, true).expect("seed");
            assert_eq!(got.nats_url.as_deref(), want, "{file:?}");
        }
        let no_home = seed(&|_| None, None, true, true).expect("no home");
        assert!(no_home.channels.is_empty() && no_home.nats_url.is_none());
    }
}
