//! Command line: one file per subcommand. Every command returns an exit code; errors are
//! printed once, on stderr, without secrets.

mod admin;
mod audit;
mod bridge;
mod channels;
mod connect;
mod live;
mod newapi_balance;
mod redemption;
mod req;
pub mod sign;
mod stats;
mod streams;
mod up;
mod users;
mod worker;

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Ailurus: a NATS-native LLM gateway.
#[derive(Debug, Parser)]
#[command(name = "ailurus", version, about)]
pub struct Cli {
    /// Config file (TOML). `AILURUS__SECTION__FIELD` variables override it.
    #[arg(long, global = true, env = "AILURUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// NATS server URL(s), comma separated.
    #[arg(long, global = true, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything on one box: local nats-server if none answers, streams, worker.
    Up(up::UpArgs),
    /// Serve `llm.request.*` until SIGTERM / Ctrl-C, then drain.
    Worker {
        /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. 127.0.0.1:9464.
        #[arg(long, env = "AILURUS_METRICS_LISTEN")]
        metrics_listen: Option<String>,
    },
    /// Serve the HTTP API (Anthropic, OpenAI, Gemini routes) over NATS.
    Bridge {
        /// Address to listen on (default 127.0.0.1:18100).
        #[arg(long, env = "AILURUS_LISTEN")]
        listen: Option<String>,
    },
    /// Send one request over NATS and print the answer.
    Req(req::ReqArgs),
    /// Print the proof-of-possession headers of one request, as `-H K:V` for the nats CLI.
    Sign(sign::SignArgs),
    /// Health of every channel on every live worker; with a subcommand, change the live
    /// channels (CHANNELS bucket).
    Channels {
        /// One JSON report per worker.
        #[arg(long)]
        json: bool,
        /// add, edit, enable, disable, delete, test, list, import.
        #[command(subcommand)]
        cmd: Option<live::ChannelsCmd>,
    },
    /// List and change the live prices and group ratios (PRICES and GROUPS buckets).
    #[command(subcommand)]
    Prices(live::PricesCmd),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(admin::TokenCmd),
    /// Show, top up, set and rebuild quota.
    #[command(subcommand)]
    Quota(admin::QuotaCmd),
    /// Users and roles (common, admin, root) and their management-API access tokens.
    #[command(subcommand)]
    User(users::UserCmd),
    /// Usage over a window (requests, errors, tokens, cost, latency) by model, channel,
    /// platform, user or token; `stats rebuild` recomputes the statistics from the ledger.
    Stats(stats::StatsArgs),
    /// Make and list top-up codes (redeemed with `POST /api/user/topup`).
    #[command(subcommand)]
    Redemption(redemption::RedemptionCmd),
    /// Replay or follow traffic from JetStream.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Read chat sessions back.
    #[command(subcommand)]
    Chat(audit::ChatCmd),
    /// Manage the JetStream streams declared in `streams/`.
    #[command(subcommand)]
    Streams(streams::StreamsCmd),
    /// Print (or `--write`, `--undo`) what Claude Code, Codex, Gemini CLI or the OpenAI SDKs need.
    Connect(connect::ConnectArgs),
}

/// Parse arguments, run, map errors to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Services log what they do; one-shot commands print only their output and warnings.
    let service = matches!(cli.command, Command::Up(_) | Command::Worker { .. } | Command::Bridge { .. });
    init_tracing(if service { "info,async_nats=warn" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let mut config = Config::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(url) = cli.nats_url {
        config.nats.url = url;
    }
    match cli.command {
        Command::Up(args) => up::run(config, args).await,
        Command::Worker { metrics_listen } => {
            if metrics_listen.is_some() {
                config.worker.metrics_listen = metrics_listen;
            }
            worker::run(config).await
        }
        Command::Bridge { listen } => bridge::run(config, listen).await,
        Command::Req(args) => req::run(config, args).await,
        Command::Sign(args) => sign::run(args),
        Command::Streams(cmd) => streams::run(config, cmd).await,
        Command::Token(cmd) => admin::token(config, cmd).await,
        Command::Channels { json: _, cmd: Some(cmd) } => live::channels(config, cmd).await,
        Command::Channels { json, cmd: None } => channels::run(config, json).await,
        Command::Prices(cmd) => live::prices(config, cmd).await,
        Command::Audit(cmd) => audit::run(config, cmd).await,
        Command::Chat(cmd) => audit::chat(config, cmd).await,
        Command::Quota(cmd) => admin::quota(config, cmd).await,
        Command::User(cmd) => users::run(config, cmd).await,
        Command::Redemption(cmd) => redemption::run(config, cmd).await,
        Command::Stats(args) => stats::run(config, args).await,
        Command::Connect(args) => connect::run(&config, args),
    }
}

/// Log to stderr at `AILURUS_LOG`, else `RUST_LOG`, else `default`.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AILURUS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Connect to NATS, naming the process for the server's monitoring pages.
pub(crate) async fn connect(config: &Config, name: &str) -> Result<async_nats::Client, String> {
    crate::bus::connect(&config.nats.url, name)
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", crate::bus::redact_urls(&config.nats.url)))
}

/// [`connect`] for a long-running service (worker, bridge): the first connect is retried in
/// the background too, so the service may start before its server.
pub(crate) async fn connect_service(config: &Config, name: &str) -> Result<async_nats::Client, String> {
    crate::bus::connect_service(&config.nats.url, name)
        .await
        .map_err(|e| format!("cannot connect to NATS at {}: {e}", config.nats.url))
}
