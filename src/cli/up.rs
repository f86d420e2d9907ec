//! `ailurus up`: the embedded default. Connect to NATS, or start a local nats-server with
//! `deploy/nats/nats-server.conf` when nothing answers; apply the streams; run the worker;
//! print what to type next. Ctrl-C drains the worker, then stops the server it started.

use crate::config::Config;
use crate::nats_server::{NatsServer, SpawnOptions, DEFAULT_CONF};
use crate::shutdown::Shutdown;
use crate::streams;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `ailurus up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where a started nats-server keeps its JetStream data.
    #[arg(long, env = "AILURUS_DATA", default_value = ".ailurus-data")]
    pub data_dir: PathBuf,
    /// Monitoring port of a started nats-server.
    #[arg(long, env = "AILURUS_MONITOR_PORT", default_value_t = 8222)]
    pub monitor_port: u16,
    /// WebSocket port of a started nats-server (for browser and TypeScript clients).
    #[arg(long, env = "AILURUS_WS_PORT", default_value_t = 9222)]
    pub ws_port: u16,
}

/// Seed the demo user (a $5 top-up the first time) and a demo token, saved in
/// `<data_dir>/demo-token` (mode 0600) so `ailurus req` and the README's client setups can
/// use it. The gateway itself stores only the token's hash.
async fn seed_demo(client: &async_nats::Client, data_dir: &std::path::Path) -> Result<String, String> {
    use crate::quota::{account::QuotaStore, tokens};
    let js = async_nats::jetstream::new(client.clone());
    let quota = QuotaStore::open(client.clone()).await?;
    let user = crate::bus::subjects::Token::new("user_id", "demo").map_err(|e| e.to_string())?;
    if quota.account(&user).await.map_err(|e| e.message)?.is_none() {
        quota.topup(&user, 2_500_000).await.map_err(|e| e.message)?;
    }
    let store = tokens::TokenStore::open(&js).await?;
    let path = data_dir.join("demo-token");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim().to_string();
        if let Ok(Some(rec)) = store.lookup(&crate::credential::hash(&saved)).await {
            // A token made before proofs of possession has no proof key: it cannot sign.
            let usable = rec.status == tokens::TokenStatus::Active && rec.proof_key.is_some();
            if usable && !rec.expired(time::OffsetDateTime::now_utc()) {
                return Ok(saved);
            }
        }
    }
    let (plain, _) = store.create("demo", "demo", None, Vec::new(), None).await?;
    save_secret(&path, &plain)?;
    Ok(plain)
}

/// Seed the root user (NEW-API role 100) the first time, with an access token for the
/// management API saved in `<data_dir>/root-token` (mode 0600). Returns the token when it
/// was made now (it is printed once), else `None`.
async fn seed_root(client: &async_nats::Client, data_dir: &std::path::Path) -> Result<Option<(i64, String)>, String> {
    use crate::quota::users::{role, UserStore};
    let users = UserStore::open(&async_nats::jetstream::new(client.clone())).await?;
    let rec = match users.get("root").await? {
        Some(rec) if rec.access.is_some() => return Ok(None),
        Some(rec) => rec,
        None => users.create("root", role::ROOT, "Root User").await?,
    };
    let token = users.new_access_token(&rec.username).await?;
    save_secret(&data_dir.join("root-token"), &token)?;
    Ok(Some((rec.id, token)))
}

/// Write a secret to `path` with mode 0600.
fn save_secret(path: &std::path::Path, secret: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, format!("{secret}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// The user and password of the nats-server `up` starts: read from
/// `<data_dir>/nats-auth`, or made (40 random characters) and written there with mode 0600.
/// The CLI, a separate worker or bridge, and the nats CLI read that file (see
/// `bus::LOCAL_AUTH_FILE`).
fn local_auth(data_dir: &std::path::Path) -> Result<crate::bus::ConnectAuth, String> {
    let path = data_dir.join(crate::bus::LOCAL_AUTH_FILE);
    if let Some(auth) = crate::bus::ConnectAuth::from_file(&path) {
        if auth.password.as_deref().is_some_and(|p| p.len() >= 32 && p.bytes().all(|b| b.is_ascii_alphanumeric())) {
            return Ok(auth);
        }
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut buf = [0u8; 128];
    getrandom::getrandom(&mut buf).map_err(|e| format!("no randomness: {e}"))?;
    // Rejection sampling keeps the characters uniform.
    let password: String = buf
        .iter()
        .filter(|b| usize::from(**b) < 248)
        .take(40)
        .map(|b| char::from(ALPHABET[usize::from(*b) % 62]))
        .collect();
    if password.len() < 40 {
        return Err("not enough randomness for a password".into());
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let text = format!(
        "# The NATS user and password of the nats-server `ailurus up` started (keep this file 0600).\n\
         # The ailurus CLI reads it; for the nats CLI: export $(grep -v '^#' {0})\n\
         NATS_USER=ailurus\nNATS_PASSWORD={password}\n",
        path.display()
    );
    crate::nats_server::write_private(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(crate::bus::ConnectAuth { user: Some("ailurus".into()), password: Some(password), ..Default::default() })
}

/// The server config of `up`: the default one on the given ports, with one user required
/// on every listener (client and WebSocket).
fn locked_config(args: &UpArgs, auth: &crate::bus::ConnectAuth) -> String {
    let (user, password) = (auth.user.as_deref().unwrap_or("ailurus"), auth.password.as_deref().unwrap_or(""));
    format!(
        "{}\n# Added by `ailurus up`: nobody connects without the user and password of {}.\n\
         authorization {{\n  user: \"{user}\"\n  password: \"{password}\"\n}}\n",
        DEFAULT_CONF
            .replace("127.0.0.1:8222", &format!("127.0.0.1:{}", args.monitor_port))
            .replace("127.0.0.1:9222", &format!("127.0.0.1:{}", args.ws_port)),
        crate::bus::LOCAL_AUTH_FILE
    )
}

/// Host and port of a `nats://host:port` URL on loopback, if it is one we may start.
fn local_target(url: &str) -> Option<(String, u16)> {
    let first = url.split(',').next()?.trim();
    let rest = first.strip_prefix("nats://").unwrap_or(first);
    let rest = rest.rsplit('@').next()?;
    let (host, port) = rest.rsplit_once(':').map_or((rest, "4222"), |(h, p)| (h, p));
    let port: u16 = port.trim_end_matches('/').parse().ok()?;
    matches!(host, "127.0.0.1" | "localhost").then(|| ("127.0.0.1".to_string(), port))
}

/// Run everything in one process.
pub async fn run(mut config: Config, args: UpArgs) -> Result<ExitCode, String> {
    // The key that seals the API keys of live channels: made once, mode 0600.
    if config.live.secret_key_file.is_none() && std::env::var_os(crate::seal::KEY_ENV).is_none() {
        let (_, path) = crate::seal::SealKey::load_or_create(&args.data_dir)?;
        config.live.secret_key_file = Some(path);
    }
    let url = config.nats.url.clone();
    let mut started: Option<NatsServer> = None;
    let client = match tokio::time::timeout(Duration::from_secs(2), crate::bus::connect(&url, "ailurus-up")).await {
        Ok(Ok(c)) => {
            eprintln!("using the NATS server at {}", crate::bus::redact_urls(&url));
            c
        }
        _ => {
            let (host, port) = local_target(&url).ok_or_else(|| {
                format!(
                    "nothing answers at {}, and it is not a loopback address to start a server on",
                    crate::bus::redact_urls(&url)
                )
            })?;
            let store = args.data_dir.join("nats");
            std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
            let log = args.data_dir.join("nats-server.log");
            let auth = local_auth(&args.data_dir)?;
            let server = NatsServer::spawn(SpawnOptions {
                config: locked_config(&args, &auth),
                port,
                host,
                store_dir: Some(store.clone()),
                log_file: Some(log.clone()),
            })
            .map_err(|e| format!("cannot start nats-server: {e}"))?;
            eprintln!(
                "started nats-server (pid {}) at {} · data {} · log {} · user and password in {} (mode 0600)",
                server.pid(),
                server.url,
                store.display(),
                log.display(),
                args.data_dir.join(crate::bus::LOCAL_AUTH_FILE).display()
            );
            let c = crate::bus::connect_with(&server.url, "ailurus-up", &auth).await.map_err(|e| e.to_string())?;
            started = Some(server);
            c
        }
    };
    let js = async_nats::jetstream::new(client.clone());
    let mut decls = streams::load(None).map_err(|e| e.to_string())?;
    streams::with_audit_retention(&mut decls, config.audit.retention_ns()?, config.audit.max_bytes);
    let applied = streams::apply(&js, &decls).await.map_err(|e| e.to_string())?;
    eprintln!(
        "streams: {}",
        applied.iter().map(|(n, o)| format!("{n} {o:?}").to_lowercase()).collect::<Vec<_>>().join(", ")
    );

    let (demo, root) = if config.auth.mode == crate::quota::AuthMode::Open {
        (None, None)
    } else {
        (Some(seed_demo(&client, &args.data_dir).await?), seed_root(&client, &args.data_dir).await?)
    };
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let listen = config.bridge.listen.clone();
    let bridge = {
        let (client, bridge_config, shutdown) = (client.clone(), config.bridge.clone(), shutdown.clone());
        tokio::spawn(async move { crate::bridge::run(client, bridge_config, shutdown).await })
    };
    // The banner's commands run at once: `worker::start` returns once the server holds the
    // worker's subscriptions.
    let started_worker = match crate::router::Router::new(&config.routing, &config.channels) {
        Ok(router) => crate::worker::start(client.clone(), &config, std::sync::Arc::new(router), shutdown.clone())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let worker = match started_worker {
        Ok(serving) => tokio::spawn(serving.run()),
        Err(e) => {
            // The bridge stops; a server this command started stops when `started` drops.
            shutdown.trigger();
            let _ = bridge.await;
            return Err(e);
        }
    };
    if let Some(token) = &demo {
        eprintln!(
            "\ndemo user: demo ($5 of quota) · demo token (saved in {}/demo-token):\n  {token}",
            args.data_dir.display()
        );
        match &root {
            Some((id, token)) => eprintln!(
                "root user: root (id {id}) · management API access token, shown once (saved in {}/root-token):\n  \
                 {token}\n  send it as `Authorization: <token>` with `New-Api-User: {id}`",
                args.data_dir.display()
            ),
            None => eprintln!(
                "root user: root · its access token is in {}/root-token (`ailurus user token root` makes a new one)",
                args.data_dir.display()
            ),
        }
    }
    let scope = config.routing.mock_scope(&config.channels);
    let serving = match scope {
        crate::router::MockScope::AllNames => "the built-in mock answers every model name, so Claude Code, Codex \
                                               and Gemini CLI work with their default models (mock-slow, \
                                               mock-error … pick its behaviour)"
            .to_string(),
        crate::router::MockScope::MockNames => {
            format!("{} channel(s), and the built-in mock for mock* names", config.channels.len())
        }
        crate::router::MockScope::Off => format!("{} channel(s), no built-in mock", config.channels.len()),
    };
    // What to try: each line runs as typed from this directory (tests/readme.rs runs them).
    let auth = if demo.is_some() {
        format!(" -H \"Authorization: Bearer $(cat {}/demo-token)\"", args.data_dir.display())
    } else {
        String::new()
    };
    let model = if matches!(scope, crate::router::MockScope::Off) { "<a model your channels serve>" } else { "mock" };
    let try_lines = [
        "ailurus req claude \"hello\" --stream".to_string(),
        format!(
            "curl -s http://{listen}/v1/chat/completions{auth} -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'"
        ),
        "ailurus streams list".to_string(),
    ];
    eprintln!(
        "\nAilurus is up: worker on llm.request.*, HTTP bridge on http://{listen}\n\
         Web console: http://{listen}/ (sign in with the root access token and user id above, or any sk- token)\n\
         Models: {serving}\n\
         Try, in another terminal:\n\n  {}\n\
         \nCtrl-C stops everything this command started.",
        try_lines.join("\n  ")
    );
    let result = worker.await;
    shutdown.trigger();
    match bridge.await {
        Ok(Err(e)) => eprintln!("bridge: {e}"),
        Err(e) => eprintln!("bridge task failed: {e}"),
        Ok(Ok(())) => {}
    }
    drop(client);
    if let Some(mut server) = started {
        server.kill();
        eprintln!("nats-server stopped");
    }
    match result {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("worker task failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::local_target;

    #[test]
    fn local_targets() {
        assert_eq!(local_target("nats://127.0.0.1:4222"), Some(("127.0.0.1".into(), 4222)));
        assert_eq!(local_target("nats://localhost:5000"), Some(("127.0.0.1".into(), 5000)));
        assert_eq!(local_target("nats://user:pw@127.0.0.1:4300"), Some(("127.0.0.1".into(), 4300)));
        assert_eq!(local_target("nats://10.0.0.5:4222"), None);
    }
}
