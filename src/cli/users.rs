//! `ailurus user …`: users and roles (NEW-API's common 1, admin 10, root 100) in `USERS`,
//! and their access tokens for the management API (printed once, never stored).

use crate::config::Config;
use crate::quota::users::{role, UserRecord, UserStore};
use clap::Subcommand;
use std::process::ExitCode;

/// User administration.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user (its quota account is `ailurus quota …`).
    Create {
        /// The name (the id quota, tokens and the ledger use).
        name: String,
        /// `common`, `admin`, `root`, or NEW-API's number (1, 10, 100).
        #[arg(long, default_value = "common")]
        role: String,
        /// Shown name.
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// List users.
    List,
    /// Show one user (by name or id).
    Show {
        /// Name or id.
        user: String,
    },
    /// Change a user's role or status.
    Set {
        /// Name or id.
        user: String,
        /// New role.
        #[arg(long)]
        role: Option<String>,
        /// `enabled` or `disabled`.
        #[arg(long)]
        status: Option<String>,
    },
    /// Delete a user's record and access token (its quota and ledger stay).
    Delete {
        /// Name or id.
        user: String,
    },
    /// Make a new access token for the management API (the old one stops working); printed once.
    Token {
        /// Name or id.
        user: String,
    },
}

/// `common` / `admin` / `root` or 1 / 10 / 100.
pub fn parse_role(s: &str) -> Result<i64, String> {
    let r = match s.trim().to_ascii_lowercase().as_str() {
        "common" | "user" => role::COMMON,
        "admin" => role::ADMIN,
        "root" => role::ROOT,
        n => n.parse::<i64>().map_err(|_| format!("{s:?} is not a role (common, admin, root)"))?,
    };
    if role::valid(r) {
        Ok(r)
    } else {
        Err(format!("{s:?} is not a role (common, admin, root)"))
    }
}

fn role_name(r: i64) -> &'static str {
    match r {
        role::ROOT => "root",
        role::ADMIN => "admin",
        _ => "common",
    }
}

async fn find(store: &UserStore, user: &str) -> Result<UserRecord, String> {
    let rec = match user.parse::<i64>() {
        Ok(n) => store.by_id(n).await?,
        Err(_) => store.get(user).await?,
    };
    rec.ok_or_else(|| format!("no user {user:?}"))
}

fn print(r: &UserRecord) {
    println!(
        "{:<5} {:<20} {:<7} {:<9} {:<24} {}",
        r.id,
        r.username,
        role_name(r.role),
        if r.status == 1 { "enabled" } else { "disabled" },
        r.created_at,
        if r.access.is_some() { "access token set" } else { "" }
    );
}

/// Run a user subcommand.
pub async fn run(config: Config, cmd: UserCmd) -> Result<ExitCode, String> {
    let client = super::connect(&config, "ailurus-admin").await?;
    let store = UserStore::open(&async_nats::jetstream::new(client)).await?;
    match cmd {
        UserCmd::Create { name, role, display_name } => {
            let rec = store.create(&name, parse_role(&role)?, &display_name).await?;
            print(&rec);
        }
        UserCmd::List => {
            println!("{:<5} {:<20} {:<7} {:<9} {:<24}", "ID", "NAME", "ROLE", "STATUS", "CREATED");
            store.list().await?.iter().for_each(print);
        }
        UserCmd::Show { user } => print(&find(&store, &user).await?),
        UserCmd::Set { user, role, status } => {
            let found = find(&store, &user).await?;
            let (mut rec, rev) = store.get_rev(&found.username).await?.ok_or_else(|| format!("no user {user:?}"))?;
            if let Some(r) = role {
                rec.role = parse_role(&r)?;
            }
            if let Some(s) = status {
                rec.status = match s.as_str() {
                    "enabled" | "1" => 1,
                    "disabled" | "2" => 2,
                    _ => return Err(format!("{s:?}: use enabled or disabled")),
                };
            }
            store.update(&rec, rev).await?;
            print(&rec);
        }
        UserCmd::Delete { user } => {
            let rec = find(&store, &user).await?;
            store.delete(&rec).await?;
            println!("deleted user {} ({})", rec.username, rec.id);
        }
        UserCmd::Token { user } => {
            let rec = find(&store, &user).await?;
            let token = store.new_access_token(&rec.username).await?;
            eprintln!("access token of {} (send with New-Api-User: {}); shown once:", rec.username, rec.id);
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_role;

    #[test]
    fn roles_by_name_or_number() {
        assert_eq!(parse_role("admin"), Ok(10));
        assert_eq!(parse_role("100"), Ok(100));
        assert_eq!(parse_role("Common"), Ok(1));
        assert!(parse_role("5").is_err() && parse_role("god").is_err());
    }
}
