//! `ailurus redemption …`: top-up codes (NEW-API's redemptions). A code is printed once, when
//! it is made; a user redeems it with `POST /api/user/topup`.

use crate::config::Config;
use crate::quota::redemption::Redemptions;
use clap::Subcommand;
use std::process::ExitCode;

/// Top-up code administration.
#[derive(Debug, Subcommand)]
pub enum RedemptionCmd {
    /// Make codes; each is printed once.
    Create {
        /// Quota units each code grants, or USD (`$5`).
        quota: String,
        /// How many (at most 100).
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// A name for the batch.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List codes (never the codes themselves).
    List,
}

/// Run a redemption subcommand.
pub async fn run(config: Config, cmd: RedemptionCmd) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-admin").await?;
    let store = Redemptions::open(&async_nats::jetstream::new(client)).await?;
    match cmd {
        RedemptionCmd::Create { quota, count, name } => {
            for code in store.create(&name, super::admin::parse_amount(&quota)?, count).await? {
                println!("{code}");
            }
        }
        RedemptionCmd::List => {
            println!("{:<13} {:<16} {:>12} {:<9} USED BY", "ID", "NAME", "QUOTA", "STATUS");
            for (_, r) in store.list().await? {
                let status = match r.status {
                    1 => "unused",
                    2 => "disabled",
                    _ => "used",
                };
                println!("{:<13} {:<16} {:>12} {:<9} {}", r.id, r.name, r.quota, status, r.used_user_id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
