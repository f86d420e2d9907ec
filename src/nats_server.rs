//! Finds a modern `nats-server` (≥ 2.10; Debian's 2.9 cannot serve KV to async-nats) and
//! spawns it: `ailurus up` uses it when nothing answers at the configured URL, tests spawn
//! one per test on a random loopback port with a temporary store.
//!
//! Search order: `$NATS_SERVER_BIN`, `.tools/bin/nats-server` under the current directory,
//! the same under the source tree this binary was built from (what `deploy/setup.sh`
//! installs), then `nats-server` on `PATH`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The oldest server version accepted.
pub const MIN_VERSION: (u32, u32) = (2, 10);

/// The default server config (`deploy/nats/nats-server.conf`), for `ailurus up`.
pub const DEFAULT_CONF: &str = include_str!("../deploy/nats/nats-server.conf");

/// Parse `nats-server: v2.12.8` into (2, 12).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The version a binary reports, if it runs.
pub fn version_of(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin).arg("--version").stderr(Stdio::null()).output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// The first acceptable `nats-server`, or an error that says how to install one.
pub fn find_binary() -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from(".tools/bin/nats-server"));
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/nats-server"));
    candidates.push(PathBuf::from("nats-server"));
    for c in candidates {
        match version_of(&c) {
            Some(v) if v >= MIN_VERSION => return Ok(c),
            Some((a, b)) => tried.push(format!("{} is v{a}.{b}", c.display())),
            None => tried.push(format!("{} not found", c.display())),
        }
    }
    Err(format!(
        "no nats-server >= {}.{} found ({}); run ./deploy/setup.sh or set NATS_SERVER_BIN",
        MIN_VERSION.0,
        MIN_VERSION.1,
        tried.join("; ")
    ))
}

/// A free loopback TCP port for a server started later (bound then released).
///
/// Picked below Linux's ephemeral range (32768–60999), which is where `bind(:0)` and every
/// outgoing connection take their ports: a port from there can be taken by some client's
/// connection (a cluster node dialling its routes, say) between this call and the server's
/// bind. A port is never handed out twice by one process.
pub fn free_port() -> io::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const LOW: u16 = 20_000;
    const HIGH: u16 = 32_000;
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..200 {
        let port = fastrand::u16(LOW..HIGH);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    // A crowded range: fall back to the kernel's choice.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running nats-server, killed when dropped.
pub struct NatsServer {
    /// The process.
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// Client port.
    pub port: u16,
    /// Temporary store removed on drop, when the server owns it.
    _store: Option<tempfile_dir::TempDir>,
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// Config file text; the client port, host and store dir are set by flags.
    pub config: String,
    /// Client port (0 picks a free one).
    pub port: u16,
    /// Host to listen on.
    pub host: String,
    /// JetStream store directory (`None`: a fresh temporary one).
    pub store_dir: Option<PathBuf>,
    /// Where the server's log goes (`None`: discarded).
    pub log_file: Option<PathBuf>,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        Self {
            // The declared streams reserve their `max_bytes` (about 13 GiB: chats, the audit
            // trail, reasoning) against the server's file store, which by default is 75 % of
            // the free disk; a throwaway server holds kilobytes, so its limit is set high enough
            // that no test depends on how full the machine's disk is.
            config: "jetstream { max_file_store: 1TB }\nmax_payload: 8MB\n".into(),
            port: 0,
            host: "127.0.0.1".into(),
            store_dir: None,
            log_file: None,
        }
    }
}

/// Write `text` to `path`, readable and writable by the owner only (mode 0600 on Unix, set
/// when the file is created and again if it already existed).
pub fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let mut f = opts.open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        io::Write::write_all(&mut f, text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        io::Write::write_all(&mut opts.open(path)?, text.as_bytes())
    }
}

impl NatsServer {
    /// Start a server and wait until it accepts connections (at most 10 s).
    pub fn spawn(opts: SpawnOptions) -> io::Result<Self> {
        let bin = find_binary().map_err(io::Error::other)?;
        let port = if opts.port == 0 { free_port()? } else { opts.port };
        let (store_dir, temp) = match opts.store_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile_dir::TempDir::new("ailurus-nats")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&store_dir)?;
        let conf_path = store_dir.join("nats-server.conf");
        // The config may hold the server's password (`ailurus up`): readable by its owner only.
        write_private(&conf_path, &opts.config)?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(&conf_path)
            .arg("-a")
            .arg(&opts.host)
            .arg("-p")
            .arg(port.to_string())
            .arg("-sd")
            .arg(&store_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        match &opts.log_file {
            Some(f) => {
                cmd.stderr(std::fs::File::create(f)?);
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        let child = cmd.spawn()?;
        let mut server = Self { child, url: format!("nats://{}:{port}", opts.host), port, _store: temp };
        let addr: SocketAddr = format!("{}:{port}", opts.host)
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("host: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(io::Error::other(format!("nats-server exited at start-up: {status}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "nats-server did not listen within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop the server now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal self-removing temporary directory (std has none; avoids a runtime dependency).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// Removed with its contents on drop.
    #[derive(Debug)]
    pub struct TempDir(PathBuf);

    impl TempDir {
        /// Create `<tmp>/<prefix>-<random>`.
        pub fn new(prefix: &str) -> std::io::Result<Self> {
            let path = std::env::temp_dir().join(format!("{prefix}-{}", nuid::next()));
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }

        /// The directory.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions() {
        assert_eq!(parse_version("nats-server: v2.12.8\n"), Some((2, 12)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert!(parse_version("garbage").is_none());
    }
}
