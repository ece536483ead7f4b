//! The `ferry` command line.

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use ferry::{controller, telemetry};

#[derive(Parser, Debug)]
#[command(name = "ferry", version = ferry::VERSION, about = "GitOps reconciliation agent for Kubernetes")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text", env = "FERRY_LOG_FORMAT")]
    log_format: telemetry::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller against the cluster in KUBECONFIG (or the in-cluster config).
    Run {
        /// Seconds each start-up check may wait for the API server.
        #[arg(long, default_value_t = 10, env = "FERRY_API_TIMEOUT_SECONDS")]
        api_timeout_seconds: u64,
    },
    /// Print the CustomResourceDefinitions as YAML (`ferry crd | kubectl apply --server-side -f -`).
    Crd,
    /// Print ferry's version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match ferry::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&format!("cannot serialize the CRDs: {err}")),
        },
        Command::Version => {
            println!("ferry {}", ferry::VERSION);
            ExitCode::SUCCESS
        }
        Command::Run { api_timeout_seconds } => {
            telemetry::init(cli.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
            };
            let opts = controller::RunOptions { api_timeout: Duration::from_secs(api_timeout_seconds) };
            match runtime.block_on(controller::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err.to_string()),
            }
        }
    }
}

/// One line on stderr, exit code 1: the contract scripts and people rely on.
fn fail(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}
