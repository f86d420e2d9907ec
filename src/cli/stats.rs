//! `ailurus stats`: usage over a window from the statistics kept at write time
//! (`USAGE_STATS`) — totals, a split, the series — and `ailurus stats rebuild`, which
//! recomputes them from the ledger (like `quota rebuild`).

use crate::config::Config;
use crate::stats::query::{self, Report, Row, Scope};
use clap::{Args, Subcommand};
use std::process::ExitCode;

/// `ailurus stats` arguments.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Window start: a duration back from now (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Window end (default now), same forms as `--since`.
    #[arg(long)]
    pub until: Option<String>,
    /// One user's statistics (default everyone's).
    #[arg(long)]
    pub user: Option<String>,
    /// The split to print: model, channel, platform, user or token.
    #[arg(long, default_value = "model")]
    pub by: String,
    /// Print the whole report as JSON (series, every split, heatmap).
    #[arg(long)]
    pub json: bool,
    /// `rebuild`.
    #[command(subcommand)]
    pub cmd: Option<StatsCmd>,
}

/// Statistics administration.
#[derive(Debug, Subcommand)]
pub enum StatsCmd {
    /// Recompute every statistics document from the ledger (safe beside live traffic).
    Rebuild {
        /// Only report the documents that differ from the ledger.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Run `ailurus stats`.
pub async fn run(config: Config, args: StatsArgs) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-admin").await?;
    let js = async_nats::jetstream::new(client);
    let kv = query::open(&js).await?;
    if let Some(StatsCmd::Rebuild { dry_run }) = args.cmd {
        let r = crate::stats::rebuild::rebuild(&js, &kv, dry_run).await?;
        println!(
            "read {} ledger records ({} usage); {} documents, {} differed from the ledger, {} written{}",
            r.records,
            r.usage,
            r.documents,
            r.drifted.len(),
            r.written,
            if dry_run { " (dry run)" } else { "" }
        );
        for key in r.drifted.iter().take(20) {
            println!("  {key}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let start = crate::audit::parse_time(&args.since)?.unix_timestamp();
    let end = match &args.until {
        Some(u) => crate::audit::parse_time(u)?.unix_timestamp(),
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let scope = match &args.user {
        Some(u) => Scope::User(crate::bus::subjects::Token::new("user", u).map_err(|e| e.to_string())?.to_string()),
        None => Scope::All,
    };
    let periods = query::read(&kv, &scope, start, end).await?;
    let report = Report::build(start, end, &periods);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    let split = match args.by.as_str() {
        "model" => &report.by_model,
        "channel" => &report.by_channel,
        "platform" => &report.by_platform,
        "user" => &report.by_user,
        "token" => &report.by_token,
        other => return Err(format!("--by {other:?}: use model, channel, platform, user or token")),
    };
    println!(
        "{:<28} {:>9} {:>7} {:>12} {:>12} {:>12} {:>9} {:>9}",
        args.by.to_uppercase(),
        "REQUESTS",
        "ERRORS",
        "TOKENS",
        "QUOTA",
        "COST_USD",
        "P50_MS",
        "P99_MS"
    );
    for row in split {
        line(row.name.as_deref().unwrap_or("-"), row);
    }
    line("TOTAL", &report.totals);
    Ok(ExitCode::SUCCESS)
}

fn line(name: &str, r: &Row) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    println!(
        "{:<28} {:>9} {:>7} {:>12} {:>12} {:>12.6} {:>9} {:>9}",
        name,
        r.requests,
        r.errors,
        r.tokens,
        r.quota,
        r.cost_usd,
        ms(r.latency_ms.p50),
        ms(r.latency_ms.p99)
    );
}
