//! The controller: connects to the cluster, checks that it can serve Applications, and (in later
//! stages of the pipeline) reconciles them.

mod preflight;
pub mod status;

pub use preflight::{PreflightError, preflight};

use kube::{Client, Config};
use tracing::info;

/// Options of `ferry run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How long each start-up check may take before ferry gives up on the API server.
    pub api_timeout: std::time::Duration,
}

/// Runs the controller until SIGINT or SIGTERM.
///
/// For now this connects, checks that the Application CRD is served, reports readiness and
/// waits for a shutdown signal; reconciliation is wired in by the sync-engine stage.
pub async fn run(opts: RunOptions) -> Result<(), PreflightError> {
    let kubeconfig_env = || std::env::var("KUBECONFIG").ok();
    let config = Config::infer().await.map_err(|e| PreflightError::no_config(&e, kubeconfig_env()))?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| PreflightError::no_config(&e, kubeconfig_env()))?;
    let cluster = preflight(&client, &url, opts.api_timeout).await?;
    info!(
        api_server = %cluster.url,
        kubernetes_version = %cluster.kubernetes_version,
        "ferry is ready: connected to the API server and the Application CRD is installed"
    );
    shutdown_signal().await;
    info!("shutting down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
