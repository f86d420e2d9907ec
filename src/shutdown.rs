//! The one shutdown signal. Every long-running loop `select!`s on [`Shutdown::wait`].

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown signal: triggering any clone wakes every waiter.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Cancelled once, when the process should stop taking new work.
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that has not fired yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fire the signal (idempotent).
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the signal fires.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// Fire this signal on SIGINT (Ctrl-C) or SIGTERM. Runs in the background.
    pub fn on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received, draining");
            this.trigger();
        });
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
