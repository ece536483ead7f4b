//! The controller: connects to the cluster, checks that it can serve Applications, and (in later
//! stages of the pipeline) reconciles them.

mod preflight;
pub mod status;

pub use preflight::{PreflightError, preflight};

use kube::{Client, Config};
use tokio::signal::unix::{Signal, SignalKind, signal};
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
    let mut shutdown = Shutdown::install().map_err(|e| PreflightError::Signals { cause: e.to_string() })?;
    let kubeconfig_env = || std::env::var("KUBECONFIG").ok();
    let config = Config::infer().await.map_err(|e| PreflightError::no_config(&e, kubeconfig_env()))?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| PreflightError::no_config(&e, kubeconfig_env()))?;
    let cluster = tokio::select! {
        checked = preflight(&client, &url, opts.api_timeout) => checked?,
        _ = shutdown.wait() => {
            info!("shutting down before start-up finished");
            return Ok(());
        }
    };
    info!(
        api_server = %cluster.url,
        kubernetes_version = %cluster.kubernetes_version,
        "ferry is ready: connected to the API server and the Application CRD is installed"
    );
    shutdown.wait().await;
    info!("shutting down");
    Ok(())
}

/// SIGTERM and SIGINT, listened for from the moment this is created: a signal that arrives
/// while start-up is still running must end ferry cleanly, not kill it with the default action.
struct Shutdown {
    term: Signal,
    int: Signal,
}

impl Shutdown {
    fn install() -> std::io::Result<Shutdown> {
        Ok(Shutdown { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
