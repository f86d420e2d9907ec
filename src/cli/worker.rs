//! `ailurus worker`: serve requests until a signal, then drain.

use crate::config::Config;
use crate::shutdown::Shutdown;
use std::process::ExitCode;

/// Run a worker against the configured NATS.
pub async fn run(config: Config) -> Result<ExitCode, String> {
    let client = super::connect_service(&config, "ailurus-worker").await?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    crate::worker::run(client, &config, shutdown).await.map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
