//! NATS itself: subject names ([`subjects`]), payload encodings ([`codec`]), the
//! reply-protocol headers ([`headers`]) and the per-request proof of possession that replaces
//! bearer credentials on the bus ([`proof`]). Nothing here knows about LLM wire formats.

pub mod codec;
pub mod headers;
pub mod proof;
pub mod subjects;

use async_nats::{ConnectError, ConnectErrorKind, ConnectOptions, ServerAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Who a process is to NATS and where its replies arrive, for servers that require
/// authentication (`deploy/nats/secure/`). Empty (the default) means anonymous with the
/// standard `_INBOX` prefix, which is what the open profile expects.
///
/// [`ConnectAuth::from_env`] reads `NATS_USER` + `NATS_PASSWORD`, `NATS_CREDS` (a `.creds`
/// file, for operator/JWT setups) and `NATS_INBOX_PREFIX`. A `user:password@` in the first
/// `NATS_URL` is used when `NATS_USER` is not set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectAuth {
    /// User name.
    pub user: Option<String>,
    /// Password (plain; the server may store a bcrypt hash).
    pub password: Option<String>,
    /// A NATS `.creds` file (user JWT + nkey seed).
    pub creds_file: Option<PathBuf>,
    /// Reply inbox prefix instead of `_INBOX`. End users of the secure profile must use
    /// `_INBOX.u.<user>`: their credential may subscribe only below it.
    pub inbox_prefix: Option<String>,
}

impl std::fmt::Debug for ConnectAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectAuth")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("creds_file", &self.creds_file)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

impl ConnectAuth {
    /// From `NATS_USER`, `NATS_PASSWORD`, `NATS_CREDS` and `NATS_INBOX_PREFIX` (empty
    /// values count as unset).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            user: var("NATS_USER"),
            password: var("NATS_PASSWORD"),
            creds_file: var("NATS_CREDS").map(PathBuf::from),
            inbox_prefix: var("NATS_INBOX_PREFIX"),
        }
    }
}

/// The file in `ailurus up`'s data directory that holds the user and password of the
/// nats-server it started (`NATS_USER=…` / `NATS_PASSWORD=…` lines, mode 0600).
pub const LOCAL_AUTH_FILE: &str = "nats-auth";

/// The data directory of `ailurus up` (`AILURUS_DATA`, default `.ailurus-data`).
pub fn data_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("AILURUS_DATA").ok().filter(|d| !d.is_empty()).unwrap_or_else(|| ".ailurus-data".into()),
    )
}

impl ConnectAuth {
    /// The user and password of a `NATS_USER=` / `NATS_PASSWORD=` file (comments and other
    /// lines ignored); `None` when it cannot be read or names no user.
    pub fn from_file(path: &std::path::Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut auth = Self::default();
        for line in text.lines() {
            match line.trim().split_once('=') {
                Some(("NATS_USER", v)) => auth.user = Some(v.trim().to_string()),
                Some(("NATS_PASSWORD", v)) => auth.password = Some(v.trim().to_string()),
                _ => {}
            }
        }
        auth.user.is_some().then_some(auth)
    }
}

/// Whether `addr` is on this machine (where `ailurus up`'s local credentials may be sent).
fn loopback(addr: &ServerAddr) -> bool {
    matches!(addr.host(), "127.0.0.1" | "localhost" | "::1" | "[::1]")
}

/// Parse `NATS_URL`-style text: one or more server URLs, comma separated.
pub fn server_addrs(urls: &str) -> Result<Vec<ServerAddr>, ConnectError> {
    let addrs = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse::<ServerAddr>().map_err(|e| ConnectError::with_source(ConnectErrorKind::ServerParse, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(ConnectError::with_source(
            ConnectErrorKind::ServerParse,
            std::io::Error::other("no NATS URL given"),
        ));
    }
    Ok(addrs)
}

/// `urls` with any `user:password@` removed, for messages and logs.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***@{}", &u[..s + 3], &u[at + 1..]),
            (None, Some(at)) => format!("***@{}", &u[at + 1..]),
            _ => u.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The options every Ailurus process uses: a name for monitoring, bounded waits, and the
/// credentials and inbox prefix of `auth` (a user/password in `first` is the fallback).
pub async fn options(
    name: &str,
    auth: &ConnectAuth,
    first: Option<&ServerAddr>,
) -> Result<ConnectOptions, ConnectError> {
    let mut opts = ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(3))
        .request_timeout(Some(Duration::from_secs(10)))
        // Reconnect for ever (the default) but never wait more than MAX_RECONNECT_DELAY.
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                async_nats::Event::Connected => tracing::info!("NATS connection (re-)established"),
                async_nats::Event::SlowConsumer(sid) => tracing::warn!(sid, "NATS slow consumer: messages dropped"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        });
    if let Some(path) = &auth.creds_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| ConnectError::with_source(ConnectErrorKind::Authentication, e))?;
    }
    let url_user = first.filter(|a| a.has_user_pass()).and_then(|a| Some((a.username()?, a.password().unwrap_or(""))));
    // Nothing given, and the server is on this machine: the credentials `ailurus up` wrote
    // for the server it started, if there are any (never sent to another host).
    let local;
    let auth = match (&auth.user, &auth.creds_file, url_user, first) {
        (None, None, None, Some(addr)) if loopback(addr) => {
            match ConnectAuth::from_file(&data_dir().join(LOCAL_AUTH_FILE)) {
                Some(found) => {
                    local = ConnectAuth { inbox_prefix: auth.inbox_prefix.clone(), ..found };
                    &local
                }
                None => auth,
            }
        }
        _ => auth,
    };
    match (&auth.user, url_user) {
        (Some(user), _) => {
            opts = opts.user_and_password(user.clone(), auth.password.clone().unwrap_or_default());
        }
        (None, Some((user, password))) => opts = opts.user_and_password(user.to_string(), password.to_string()),
        (None, None) => {}
    }
    if let Some(prefix) = &auth.inbox_prefix {
        opts = opts.custom_inbox_prefix(prefix);
    }
    Ok(opts)
}

/// Connect to NATS at `url` (one URL or several, comma separated: the client fails over
/// between them) as the environment says ([`ConnectAuth::from_env`]).
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    connect_with(url, name, &ConnectAuth::from_env()).await
}

/// [`connect`] with explicit credentials instead of the environment's.
pub async fn connect_with(url: &str, name: &str, auth: &ConnectAuth) -> Result<async_nats::Client, ConnectError> {
    let addrs = server_addrs(url)?;
    options(name, auth, addrs.first()).await?.connect(addrs).await
}

/// Longest pause between two reconnect attempts. A restarted nats-server is found again
/// within this (plus jitter) of listening, so workers and bridges serve again in about a
/// second without a process restart (the client library's default backs off to 4 s).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Pause before reconnect attempt `attempts` (1-based): 0, then 50 ms growing linearly to
/// [`MAX_RECONNECT_DELAY`], plus up to 100 ms of jitter so a fleet does not reconnect in
/// lock step.
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let base = Duration::from_millis(50).saturating_mul(attempts.min(100) as u32).min(MAX_RECONNECT_DELAY);
    base + Duration::from_millis(fastrand::u64(0..100))
}

/// [`connect`] for long-running services (worker, bridge): also retries the first
/// connect in the background, so a service may start before its server.
pub async fn connect_service(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    let addrs = server_addrs(url)?;
    options(name, &ConnectAuth::from_env(), addrs.first()).await?.retry_on_initial_connect().connect(addrs).await
}

/// How long a starting service (a worker, `ailurus audit tail`) waits in
/// [`confirm_subscriptions`] for the server before it goes on anyway.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// Wait until the server has processed everything `client` sent before this call (its
/// subscriptions above all), at most `limit`; `false` when it did not say so in time.
///
/// `Client::flush` only writes the buffer to the socket: a server reads each connection on
/// its own, so another client's publish can still find no interest for a while. One message
/// to a fresh inbox of this client's own makes the round trip, and a server handles one
/// connection's operations in order.
pub async fn confirm_subscriptions(client: &async_nats::Client, limit: Duration) -> bool {
    let inbox = client.new_inbox();
    let Ok(mut echo) = client.subscribe(inbox.clone()).await else {
        return false;
    };
    if client.publish(inbox, bytes::Bytes::new()).await.is_err() {
        return false;
    }
    let confirmed = matches!(tokio::time::timeout(limit, futures::StreamExt::next(&mut echo)).await, Ok(Some(_)));
    let _ = echo.unsubscribe().await;
    confirmed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lists() {
        let a = server_addrs("nats://127.0.0.1:4222, nats://127.0.0.1:4223,127.0.0.1:4224").unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[2].port(), 4224);
        assert!(server_addrs(" , ").is_err());
        let u = server_addrs("nats://alice:s3cret@127.0.0.1:4222").unwrap();
        assert_eq!((u[0].username(), u[0].password()), (Some("alice"), Some("s3cret")));
    }

    #[test]
    fn redacted_urls() {
        assert_eq!(redact_urls("nats://a:b@h:1,nats://h2:2"), "nats://***@h:1,nats://h2:2");
        assert_eq!(redact_urls("a:b@h:1"), "***@h:1");
        assert_eq!(redact_urls("nats://h:1"), "nats://h:1");
    }

    #[test]
    fn local_auth_files_are_read() {
        let dir = std::env::temp_dir().join(format!("ailurus-auth-{}", nuid::next()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(LOCAL_AUTH_FILE);
        std::fs::write(&f, "# comment\nNATS_USER=ailurus\nNATS_PASSWORD=pw1\n").unwrap();
        let a = ConnectAuth::from_file(&f).unwrap();
        assert_eq!((a.user.as_deref(), a.password.as_deref()), (Some("ailurus"), Some("pw1")));
        std::fs::write(&f, "nothing\n").unwrap();
        assert!(ConnectAuth::from_file(&f).is_none());
        assert!(ConnectAuth::from_file(&dir.join("missing")).is_none());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(loopback(&"nats://127.0.0.1:4222".parse().unwrap()));
        assert!(!loopback(&"nats://10.1.2.3:4222".parse().unwrap()));
    }

    #[test]
    fn debug_hides_the_password() {
        let a = ConnectAuth { user: Some("w".into()), password: Some("hunter2".into()), ..Default::default() };
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn reconnect_delay_is_bounded() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        for n in 2..1000 {
            let d = reconnect_delay(n);
            assert!(d <= MAX_RECONNECT_DELAY + Duration::from_millis(100), "{n}: {d:?}");
        }
    }
}
