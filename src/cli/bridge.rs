//! `ailurus bridge`: serve HTTP until a signal.

use crate::config::Config;
use crate::shutdown::Shutdown;
use std::process::ExitCode;

/// Run the bridge against the configured NATS.
pub async fn run(mut config: Config, listen: Option<String>) -> Result<ExitCode, String> {
    if let Some(l) = listen {
        config.bridge.listen = l;
    }
    let client = super::connect_service(&config, "ailurus-bridge").await?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    crate::bridge::run(client, config.bridge.clone(), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
