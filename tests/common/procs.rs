//! `ailurus worker` and `ailurus bridge` as real processes (for SIGKILL, restarts, RSS and
//! log scans), each with its stderr in a log file, plus the RLIMIT_NOFILE helper.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `ailurus` process. Killed (SIGKILL) on drop.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its stderr (the tracing log).
    pub log: PathBuf,
}

impl Proc {
    /// Spawn `ailurus <args>` with `env` and wait (at most 20 s) until its log shows `ready`.
    pub fn spawn(args: &[&str], env: &[(&str, String)], ready: &str, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{}-{}.log", args[0], nuid::next()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ailurus"));
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env_remove("AILURUS_CONFIG")
            // CodeSwitch's NEW-API settings would replace the built-in mock; callers pass them.
            .env_remove("NEW_API_URL")
            .env_remove("NEW_API_TOKEN")
            .env_remove("NATS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn ailurus");
        let mut p = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !p.logs().contains(ready) {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("ailurus {args:?} exited at start-up ({status}):\n{}", p.logs());
            }
            assert!(Instant::now() < deadline, "ailurus {args:?} not ready in 20 s:\n{}", p.logs());
            std::thread::sleep(Duration::from_millis(25));
        }
        p
    }

    /// A worker on `url` with `env` (token mode unless `env` says otherwise).
    pub fn worker(url: &str, env: &[(&str, String)], log_dir: &Path) -> Self {
        let mut all = vec![("NATS_URL", url.to_string()), ("AILURUS_LOG", "info".to_string())];
        all.extend(env.iter().cloned());
        Self::spawn(&["worker"], &all, "worker serving", log_dir)
    }

    /// A bridge on `url`, listening on `listen`.
    pub fn bridge(url: &str, listen: &str, env: &[(&str, String)], log_dir: &Path) -> Self {
        let mut all = vec![("NATS_URL", url.to_string()), ("AILURUS_LOG", "info".to_string())];
        all.extend(env.iter().cloned());
        Self::spawn(&["bridge", "--listen", listen], &all, "bridge listening", log_dir)
    }

    /// The log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Raise this process's soft RLIMIT_NOFILE to `want` (at most the hard limit); children
/// inherit it. Returns the soft limit now in force.
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let target = want.min(lim.rlim_max as u64);
        if (lim.rlim_cur as u64) < target {
            lim.rlim_cur = target as libc::rlim_t;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur as u64
    }
}

/// A free loopback address `127.0.0.1:<port>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", ailurus::nats_server::free_port().expect("free port"))
}
