//! `ailurus streams apply|list`.

use crate::config::Config;
use crate::streams::{self, Outcome};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// Stream management.
#[derive(Debug, Subcommand)]
pub enum StreamsCmd {
    /// Create or update the declared streams (idempotent).
    Apply {
        /// Read `*.json` declarations from this directory instead of the built-in copies.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Copies of every stream and KV bucket: 3 on a three-node JetStream cluster
        /// (default: as declared, 1). Re-running with the same value changes nothing.
        #[arg(long, env = "AILURUS_STREAM_REPLICAS")]
        replicas: Option<usize>,
    },
    /// Show every stream with its message count.
    List,
}

/// Run a streams subcommand.
pub async fn run(config: Config, cmd: StreamsCmd) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-admin").await?;
    let js = async_nats::jetstream::new(client);
    match cmd {
        StreamsCmd::Apply { dir, replicas } => {
            let mut decls = streams::load(dir.as_deref()).map_err(|e| e.to_string())?;
            if let Some(n) = replicas {
                streams::with_replicas(&mut decls, n).map_err(|e| e.to_string())?;
            }
            streams::with_audit_retention(&mut decls, config.audit.retention_ns()?, config.audit.max_bytes);
            for (name, outcome) in streams::apply(&js, &decls).await.map_err(|e| e.to_string())? {
                let word = match outcome {
                    Outcome::Created => "created",
                    Outcome::Updated => "updated",
                    Outcome::Unchanged => "unchanged",
                    Outcome::Recreated => "recreated on file (its memory content is gone)",
                };
                println!("{name:<16} {word}");
            }
        }
        StreamsCmd::List => {
            println!("{:<16} {:<8} {:>10} {:>12}  subjects", "stream", "storage", "messages", "bytes");
            for r in streams::list(&js).await.map_err(|e| e.to_string())? {
                println!(
                    "{:<16} {:<8} {:>10} {:>12}  {}",
                    r.name,
                    r.storage,
                    r.messages,
                    r.bytes,
                    r.subjects.join(", ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
