//! `ailurus token …` and `ailurus quota …`: administration over NATS. Every change
//! publishes on `user.<id>.auth` or `user.<id>.quota` and is recorded in the ledger.

use crate::bus::subjects::Token;
use crate::config::Config;
use crate::pricing::QUOTA_PER_USD;
use crate::quota::account::QuotaStore;
use crate::quota::auth::{publish_event, AuthEvent};
use crate::quota::ledger;
use crate::quota::tokens::{self, TokenStore};
use clap::Subcommand;
use std::process::ExitCode;

/// Token administration.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; the plain token is printed once and never stored.
    Create {
        /// Owner.
        #[arg(long)]
        user: String,
        /// Name.
        #[arg(long, default_value = "default")]
        name: String,
        /// The token's own limit, in quota units or USD (`$5`, `5usd`).
        #[arg(long)]
        quota: Option<String>,
        /// Lifetime: `30d`, `12h`, `90m`.
        #[arg(long)]
        expires: Option<String>,
        /// Allowed model patterns, comma separated (`claude-*,gpt-*`).
        #[arg(long)]
        models: Option<String>,
        /// Requests per minute (across all workers).
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute (across all workers).
        #[arg(long)]
        tpm: Option<u64>,
        /// Requests in flight at once (across all workers).
        #[arg(long)]
        concurrency: Option<u32>,
    },
    /// List tokens (never the tokens themselves).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by its id (or an id prefix of at least 6 characters).
    Revoke {
        /// The id shown by `token list`.
        id: String,
    },
}

/// Quota administration.
#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Show a user's balance.
    Show {
        /// The user.
        user: String,
    },
    /// Add to a user's total (quota units, or USD as `$5` / `5usd`).
    Topup {
        /// The user.
        user: String,
        /// Amount.
        amount: String,
    },
    /// Set a user's total (and optionally the pricing group).
    Set {
        /// The user.
        user: String,
        /// New total.
        total: String,
        /// Pricing group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Recompute every balance from the ledger and report (and repair) drift.
    Rebuild {
        /// Only report.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Quota units from `123`, `$5`, `5usd` or `0.5USD`.
pub fn parse_amount(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let usd = t.strip_prefix('$').or_else(|| t.strip_suffix("usd")).or_else(|| t.strip_suffix("USD"));
    match usd {
        Some(v) => {
            let d: f64 = v.trim().parse().map_err(|_| format!("{s:?} is not an amount"))?;
            if !d.is_finite() || d < 0.0 {
                return Err(format!("{s:?} must be a non-negative amount"));
            }
            Ok((d * QUOTA_PER_USD).round() as i64)
        }
        None => t.parse::<i64>().map_err(|_| format!("{s:?} is not a whole number of quota units (or use $5)")),
    }
}

fn user_token(user: &str) -> Result<Token, String> {
    Token::new("user_id", user).map_err(|e| e.to_string())
}

/// Run a token subcommand.
pub async fn token(config: Config, cmd: TokenCmd) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-admin").await?;
    let js = async_nats::jetstream::new(client.clone());
    let store = TokenStore::open(&js).await?;
    match cmd {
        TokenCmd::Create { user, name, quota, expires, models, rpm, tpm, concurrency } => {
            let limit = quota.as_deref().map(parse_amount).transpose()?;
            let secs = expires.as_deref().map(crate::clock::parse_duration).transpose()?;
            let models: Vec<String> = models
                .map(|m| m.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
                .unwrap_or_default();
            let limits = tokens::RateLimits { rpm, tpm, concurrency };
            let (plain, rec) = store.create_with_limits(&user, &name, secs, models, limit, limits).await?;
            publish_event(
                &client,
                &AuthEvent {
                    event: "created",
                    user_id: &rec.user_id,
                    token_id: Some(&rec.id),
                    reason: None,
                    timestamp: crate::clock::now_rfc3339(),
                },
            )
            .await;
            println!("{plain}");
            eprintln!("token {} for user {} created; it is shown only now", rec.id, rec.user_id);
        }
        TokenCmd::List { user } => {
            println!(
                "{:<13} {:<16} {:<16} {:<8} {:<21} {:<12} models",
                "id", "user", "name", "status", "expires", "limit"
            );
            for (_, r) in
                store.list().await?.into_iter().filter(|(_, r)| user.as_deref().is_none_or(|u| u == r.user_id))
            {
                println!(
                    "{:<13} {:<16} {:<16} {:<8} {:<21} {:<12} {}",
                    r.id,
                    r.user_id,
                    r.name,
                    format!("{:?}", r.status).to_lowercase(),
                    r.expires_at.as_deref().unwrap_or("never"),
                    r.quota_limit.map_or("-".into(), |l| l.to_string()),
                    if r.models.is_empty() { "*".into() } else { r.models.join(",") }
                );
            }
        }
        TokenCmd::Revoke { id } => {
            let rec = store.revoke(&id).await?;
            publish_event(
                &client,
                &AuthEvent {
                    event: "revoked",
                    user_id: &rec.user_id,
                    token_id: Some(&rec.id),
                    reason: None,
                    timestamp: crate::clock::now_rfc3339(),
                },
            )
            .await;
            println!("revoked {} ({} / {})", rec.id, rec.user_id, rec.name);
        }
    }
    client.flush().await.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn print_balance(b: &crate::quota::account::Balance) {
    println!(
        "user {}  group {}  total {}  used {}  remain {} (${:.6})  requests {}",
        b.user_id,
        b.group,
        b.total,
        b.used,
        b.remain,
        b.remain as f64 / QUOTA_PER_USD,
        b.request_count
    );
}

/// Run a quota subcommand.
pub async fn quota(config: Config, cmd: QuotaCmd) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-admin").await?;
    let store = QuotaStore::open(client.clone()).await?;
    match cmd {
        QuotaCmd::Show { user } => print_balance(&store.balance(&user_token(&user)?).await.map_err(|e| e.message)?),
        QuotaCmd::Topup { user, amount } => {
            let units = parse_amount(&amount)?;
            print_balance(&store.topup(&user_token(&user)?, units).await.map_err(|e| e.message)?);
        }
        QuotaCmd::Set { user, total, group } => {
            let units = parse_amount(&total)?;
            print_balance(&store.set(&user_token(&user)?, units, group.as_deref()).await.map_err(|e| e.message)?);
        }
        QuotaCmd::Rebuild { dry_run } => {
            let (records, drifts) = ledger::rebuild(&store, dry_run).await?;
            for d in &drifts {
                println!(
                    "drift {}: total {} (ledger {}), used {} (ledger {}){}",
                    d.user_id,
                    d.live.total,
                    d.ledger.total,
                    d.live.used,
                    d.ledger.used,
                    if dry_run { "" } else { " — repaired" }
                );
            }
            println!(
                "{records} ledger records, {} account(s) with drift{}",
                drifts.len(),
                if dry_run && !drifts.is_empty() { " (dry run: nothing changed)" } else { "" }
            );
        }
    }
    client.flush().await.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_amount;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("1000").unwrap(), 1000);
        assert_eq!(parse_amount("$5").unwrap(), 2_500_000);
        assert_eq!(parse_amount("0.5usd").unwrap(), 250_000);
        assert!(parse_amount("-$1").is_err() && parse_amount("lots").is_err() && parse_amount("$-1").is_err());
    }
}
