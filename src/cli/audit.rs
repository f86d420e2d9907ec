//! `ailurus audit replay|tail` and `ailurus chat history`.

use crate::audit::{self, Filter};
use crate::bus::subjects::{self, Token};
use crate::config::Config;
use clap::Subcommand;
use futures::StreamExt;
use std::process::ExitCode;

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Rebuild past exchanges from JetStream.
    Replay {
        /// From this time: `1h`, `30m`, `2d` ago, or RFC 3339.
        #[arg(long)]
        since: Option<String>,
        /// Until this time (same forms).
        #[arg(long)]
        until: Option<String>,
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
        /// Only this trace.
        #[arg(long)]
        trace: Option<String>,
        /// Only this platform.
        #[arg(long)]
        platform: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Follow live requests, replies and usage records.
    Tail,
}

/// Chat commands.
#[derive(Debug, Subcommand)]
pub enum ChatCmd {
    /// A session's turns, in order.
    History {
        /// The user.
        #[arg(long)]
        user: String,
        /// The session.
        #[arg(long)]
        session: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Run an audit command.
pub async fn run(config: Config, cmd: AuditCmd) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-audit").await?;
    match cmd {
        AuditCmd::Replay { since, until, user, trace, platform, json } => {
            let filter = Filter {
                since: since.as_deref().map(audit::parse_time).transpose()?,
                until: until.as_deref().map(audit::parse_time).transpose()?,
                user,
                trace,
                platform,
                scan_until: None,
            };
            let js = async_nats::jetstream::new(client);
            let exchanges = audit::replay(&js, &filter, |stream, n, total| {
                if total >= 1000 {
                    eprintln!("{stream}: {n}/{total} messages read");
                }
            })
            .await?;
            if json {
                for ex in &exchanges {
                    println!("{}", serde_json::to_string(ex).map_err(|e| e.to_string())?);
                }
            } else {
                println!(
                    "{:<20} {:<22} {:<7} {:<10} {:<14} {:>6} {:>7} {:>7} {:>10}  answer",
                    "time", "trace", "plat", "user", "model", "status", "in", "out", "cost $"
                );
                for ex in &exchanges {
                    let r = ex.response.as_ref();
                    let u = ex.usage.as_ref();
                    let answer: String = r
                        .map(|r| {
                            if r.success {
                                r.content.clone()
                            } else {
                                format!("ERROR {}", r.error.clone().unwrap_or_default())
                            }
                        })
                        .unwrap_or_else(|| ex.chunks.concat())
                        .chars()
                        .take(50)
                        .collect();
                    println!(
                        "{:<20} {:<22} {:<7} {:<10} {:<14} {:>6} {:>7} {:>7} {:>10.6}  {}",
                        ex.time.chars().take(19).collect::<String>(),
                        ex.trace_id,
                        ex.platform,
                        ex.user_id.as_deref().unwrap_or("-"),
                        ex.model.as_deref().unwrap_or("-").chars().take(14).collect::<String>(),
                        ex.status.map_or("-".into(), |s| s.to_string()),
                        u.map_or(r.map_or(0, |r| r.tokens_input), |u| u.input_tokens
                            + u.cache_read_tokens
                            + u.cache_write_tokens),
                        u.map_or(r.map_or(0, |r| r.tokens_output), |u| u.output_tokens),
                        u.map_or(r.map_or(0.0, |r| r.cost), |u| u.cost_usd),
                        answer.replace('\n', " ")
                    );
                }
                eprintln!("{} exchange(s)", exchanges.len());
            }
        }
        AuditCmd::Tail => {
            let mut subs = futures::stream::select_all([
                client.subscribe(subjects::request_all()).await.map_err(|e| e.to_string())?,
                client.subscribe(subjects::response_all()).await.map_err(|e| e.to_string())?,
                client.subscribe(subjects::usage_all()).await.map_err(|e| e.to_string())?,
            ]);
            // Say so only once the server holds the subscriptions: what is sent from then on shows.
            if crate::bus::confirm_subscriptions(&client, crate::bus::CONFIRM_WITHIN).await {
                eprintln!("following llm.request.*, llm.response.*, llm.usage.* (Ctrl-C stops)");
            } else {
                eprintln!(
                    "the server has not confirmed the subscriptions within {:?}; following anyway",
                    crate::bus::CONFIRM_WITHIN
                );
            }
            let shutdown = crate::shutdown::Shutdown::new();
            shutdown.on_signals();
            loop {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    m = subs.next() => match m {
                        Some(m) => println!("{}", audit::tail_line(&m.subject, m.headers.as_ref(), &m.payload)),
                        None => break,
                    },
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run a chat command.
pub async fn chat(config: Config, cmd: ChatCmd) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-chat").await?;
    let js = async_nats::jetstream::new(client);
    match cmd {
        ChatCmd::History { user, session, json } => {
            let u = Token::new("user_id", &user).map_err(|e| e.to_string())?;
            let s = Token::new("session_id", &session).map_err(|e| e.to_string())?;
            for r in audit::chat_history(&js, &u, &s).await? {
                if json {
                    println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
                } else {
                    println!("[{}] {:>9}: {}", r.timestamp, r.role, r.content);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
