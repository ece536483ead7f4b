//! The `ferry` command line.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use ferry::{controller, startup, telemetry};

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
    Run(Box<RunArgs>),
    /// Ask ferry to reconcile an Application now (sets the ferry.dev/reconcile-at annotation).
    Sync {
        /// The Application's name.
        name: String,
        /// Its namespace (default: the kubeconfig context's namespace).
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// What syncing a revision (or a local checkout) would change, compared with the live cluster
    /// through server-side dry runs. Exit 0: no changes, 1: changes, 2: error.
    Diff {
        /// The Application's name (optional with --file).
        name: Option<String>,
        #[arg(short, long)]
        namespace: Option<String>,
        /// A branch, tag or commit of the Application's repository.
        #[arg(long, conflicts_with = "local", required_unless_present = "local")]
        revision: Option<String>,
        /// A checkout of the repository (its root; the Application's path applies inside it).
        #[arg(long)]
        local: Option<PathBuf>,
        /// An Application manifest to use instead of one in the cluster (e.g. not created yet).
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, short, value_enum, default_value = "text")]
        output: ferry::diff::Format,
        #[arg(long, default_value = "kustomize", env = "FERRY_KUSTOMIZE")]
        kustomize: PathBuf,
        #[arg(long, default_value = "helm", env = "FERRY_HELM")]
        helm: PathBuf,
        /// Where --revision fetches go (default: a temporary directory).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Show an Application: sync, health, revision, and its rollout (phase, step, weight, analysis).
    Status {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Continue a paused rollout (the current step ends), or with --full skip every remaining step.
    /// With --set, NAME is an ApplicationSet whose fleet rollout pauses after a step.
    Promote {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
        /// Promote the new version to every replica now.
        #[arg(long, conflicts_with = "set")]
        full: bool,
        /// NAME is an ApplicationSet: its fleet rollout goes on past the step it paused after.
        #[arg(long)]
        set: bool,
    },
    /// Abort a rollout: all traffic back to the stable version, the canary removed.
    Abort {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Roll out again a revision whose rollout was aborted.
    Retry {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Print the ferry objects equivalent to Argo CD Applications and ApplicationSets and Flux
    /// Kustomizations and HelmReleases (with their sources), with a comment for every field that
    /// does not map. Exit 0: everything mapped, 1: some fields did not map, 2: error.
    Import {
        /// YAML files (several documents each); `-` reads stdin.
        files: Vec<PathBuf>,
        /// Also read the upstream objects in the cluster of the current kubeconfig.
        #[arg(long)]
        from_cluster: bool,
        /// With --from-cluster, only this namespace (default: all namespaces).
        #[arg(short, long, requires = "from_cluster")]
        namespace: Option<String>,
        /// The branch Argo CD's targetRevision HEAD (the default branch) stands for; without it
        /// `main` is assumed, and said so in a comment.
        #[arg(long)]
        default_branch: Option<String>,
    },
    /// Print the CustomResourceDefinitions as YAML (`ferry crd | kubectl apply --server-side -f -`).
    Crd,
    /// Print ferry's version.
    Version,
}

// The options of `ferry run` as flags and environment variables; `into_options` turns them into
// what the controller starts with. (A plain comment: a doc comment here would become the
// subcommand's help text.)
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Seconds each API call may take.
    #[arg(long, default_value_t = 10, env = "FERRY_API_TIMEOUT_SECONDS")]
    api_timeout_seconds: u64,
    /// Only reconcile Applications in this namespace (default: all namespaces).
    #[arg(long, env = "FERRY_NAMESPACE")]
    namespace: Option<String>,
    /// Git cache directory (default: ~/.cache/ferry/run).
    #[arg(long, env = "FERRY_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Cached snapshots and repositories no Application used for this long are deleted.
    #[arg(long, default_value = "1h", env = "FERRY_CACHE_UNUSED_AFTER", value_parser = go_duration)]
    cache_unused_after: Duration,
    /// Bytes of file content the Git cache may hold (e.g. 2Gi, 500Mi): past it, the least
    /// recently used snapshots, then repositories, are deleted. What Applications sync from
    /// now is always kept. Default: no budget.
    #[arg(long, env = "FERRY_CACHE_MAX_SIZE", value_parser = byte_size)]
    cache_max_size: Option<u64>,
    /// How often the Git cache is collected.
    #[arg(long, default_value = "1m", env = "FERRY_CACHE_GC_INTERVAL", value_parser = go_duration)]
    cache_gc_interval: Duration,
    /// Applications reconciled at once.
    #[arg(long, default_value_t = 4, env = "FERRY_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Refuse Applications that do not name a ServiceAccount to act as (unless a default applies:
    /// --default-service-account or a TenantPolicy's defaultServiceAccount).
    #[arg(long, env = "FERRY_REQUIRE_SERVICE_ACCOUNT")]
    require_service_account: bool,
    /// ServiceAccount, in each Application's namespace, that Applications naming no
    /// spec.serviceAccountName act as (instead of ferry's own identity).
    #[arg(long, env = "FERRY_DEFAULT_SERVICE_ACCOUNT", value_name = "NAME", value_parser = service_account_name)]
    default_service_account: Option<String>,
    /// Accept file:// repository URLs (a local demo, tests). Off by default: in a shared
    /// install a file:// URL reads ferry's own disk.
    #[arg(long, env = "FERRY_ALLOW_FILE_URLS")]
    allow_file_urls: bool,
    /// References never leave an Application's namespace: spec.source.ref.fromApplication and
    /// spec.dependsOn may name only Applications of the same namespace, whatever
    /// --promotion-namespaces says.
    #[arg(long, env = "FERRY_NO_CROSS_NAMESPACE_REFS")]
    no_cross_namespace_refs: bool,
    /// Enforce the TenantPolicies of this namespace (ferry's own; only the platform team should
    /// be able to write there). Default: no TenantPolicy is read.
    #[arg(long, env = "FERRY_POLICY_NAMESPACE", value_name = "NAMESPACE")]
    policy_namespace: Option<String>,
    /// Seconds an Application may stay Progressing before it is Degraded.
    #[arg(long, default_value_t = 600, env = "FERRY_HEALTH_TIMEOUT_SECONDS")]
    health_timeout_seconds: u64,
    /// YAML file with cluster-wide custom health checks: a list of {apiVersion, kind, current,
    /// inProgress, failed} CEL checks, as in spec.healthChecks (which take precedence). Read at
    /// start; the chart mounts its `healthChecks` value here.
    #[arg(long, env = "FERRY_HEALTH_CHECKS", value_name = "FILE")]
    health_checks: Option<PathBuf>,
    /// Seconds an ls-remote of a repository is shared by the Applications on it with the same
    /// credentials (never longer than half an Application's interval; a sync requested by a
    /// webhook or `ferry sync` always lists afresh). 0: each Application lists for itself.
    #[arg(long, default_value_t = 30, env = "FERRY_GIT_REF_CACHE_SECONDS")]
    git_ref_cache_seconds: u64,
    /// The kustomize binary.
    #[arg(long, default_value = "kustomize", env = "FERRY_KUSTOMIZE")]
    kustomize: PathBuf,
    /// The helm binary.
    #[arg(long, default_value = "helm", env = "FERRY_HELM")]
    helm: PathBuf,
    /// Address of the HTTP server: /metrics, /healthz, /readyz and /hooks/* (port 0 picks a free port).
    #[arg(long, default_value = "0.0.0.0:8080", env = "FERRY_HTTP_ADDRESS")]
    http_address: String,
    /// [NAMESPACE/]NAME of the Secret with the webhook keys (github, gitlab, generic or token);
    /// the namespace defaults to --namespace, else "default". Without it webhooks are off.
    #[arg(long, env = "FERRY_WEBHOOK_SECRET", value_name = "[NAMESPACE/]NAME")]
    webhook_secret: Option<String>,
    /// Prometheus base URL for rollout analyses that name no `prometheus.address`.
    #[arg(long, env = "FERRY_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// The only Prometheus base URLs an analysis's `prometheus.address` may name besides
    /// --prometheus-url (comma-separated). Set it when Application authors are not trusted:
    /// otherwise an author can make ferry send GET requests to any URL it reaches.
    #[arg(long, env = "FERRY_ALLOWED_PROMETHEUS_URLS", value_delimiter = ',', value_name = "URL,...")]
    allowed_prometheus_urls: Vec<String>,
    /// Namespaces whose Applications may be followed (`spec.source.ref.fromApplication`) or
    /// depended on (`spec.dependsOn`) from other namespaces, comma-separated; `*` for any. An
    /// Application may always refer to one in its own namespace.
    #[arg(long, env = "FERRY_PROMOTION_NAMESPACES", value_delimiter = ',')]
    promotion_namespaces: Vec<String>,
    /// Watch managed objects only in these namespaces (comma-separated), for RBAC that grants
    /// Roles there and nothing cluster-wide. Default: watch cluster-wide.
    #[arg(long, env = "FERRY_MANAGED_NAMESPACES", value_delimiter = ',', value_name = "NS,...")]
    managed_namespaces: Option<Vec<String>>,
    /// Elect a leader among the replicas with a coordination.k8s.io Lease: only the leader
    /// reconciles; the others stand by, ready to take over.
    #[arg(long, env = "FERRY_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the Lease (default: --namespace, else "default").
    #[arg(long, env = "FERRY_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease; with --shard-count above 1, "-shard-<index>" is appended.
    #[arg(long, default_value = "ferry", env = "FERRY_LEADER_ELECTION_LEASE_NAME")]
    leader_election_lease_name: String,
    /// How long a standby waits after the leader's last renewal before it takes over.
    #[arg(long, default_value = "15s", env = "FERRY_LEADER_ELECTION_LEASE_DURATION", value_parser = go_duration)]
    leader_election_lease_duration: Duration,
    /// How long a leader keeps reconciling without a successful renewal (below the lease duration).
    #[arg(long, default_value = "10s", env = "FERRY_LEADER_ELECTION_RENEW_DEADLINE", value_parser = go_duration)]
    leader_election_renew_deadline: Duration,
    /// How often candidates read and renew the Lease.
    #[arg(long, default_value = "2s", env = "FERRY_LEADER_ELECTION_RETRY_PERIOD", value_parser = go_duration)]
    leader_election_retry_period: Duration,
    /// This process's name in the Lease and in Events (default: POD_NAME, else host name and PID).
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// With --shard-count N, reconcile only the Applications whose namespace/name hashes to this index.
    #[arg(long, default_value_t = 0, env = "FERRY_SHARD_INDEX")]
    shard_index: u32,
    /// Split Applications among this many ferry processes (each with its own --shard-index).
    #[arg(long, default_value_t = 1, env = "FERRY_SHARD_COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    shard_count: u32,
    /// What the shards split: Applications by their own name, or by their destination Cluster
    /// (all of one remote cluster's Applications, its connection and watches in one process).
    #[arg(long, value_enum, default_value = "application", env = "FERRY_SHARD_BY")]
    shard_by: controller::ShardBy,
    /// Largest render: what kustomize or helm prints, or a plain directory's manifest files
    /// together (bytes, or with a Ki, Mi or Gi suffix). A larger one fails as RenderFailed.
    #[arg(long, default_value = "32Mi", env = "FERRY_MAX_RENDER_BYTES", value_parser = byte_size)]
    max_render_bytes: u64,
    /// Most objects one render may produce; more fail as RenderFailed.
    #[arg(long, default_value_t = ferry::render::DEFAULT_MAX_RENDER_OBJECTS as u32, env = "FERRY_MAX_RENDER_OBJECTS", value_parser = clap::value_parser!(u32).range(1..))]
    max_render_objects: u32,
    /// Finished renders kept for reuse, by their size as JSON (bytes, or Ki, Mi, Gi).
    #[arg(long, default_value = "64Mi", env = "FERRY_RENDER_CACHE_BYTES", value_parser = byte_size)]
    render_cache_bytes: u64,
    /// Largest Helm repository index.yaml ferry reads (bytes, or Ki, Mi, Gi); a larger one fails
    /// the Applications on that repository as FetchFailed.
    #[arg(long, default_value = "64Mi", env = "FERRY_MAX_CHART_INDEX_BYTES", value_parser = byte_size)]
    max_chart_index_bytes: u64,
}

impl RunArgs {
    /// The options `ferry run` starts with: flag values checked (the shard), defaults filled in
    /// (identity, cache directory, Lease namespace), empty list items dropped.
    fn into_options(self) -> Result<startup::RunOptions, controller::ShardError> {
        let shard = controller::Shard::new(self.shard_index, self.shard_count)?.by(self.shard_by);
        let identity = self
            .leader_election_identity
            .filter(|i| !i.is_empty())
            .unwrap_or_else(controller::default_identity);
        let leader = self.leader_elect.then(|| controller::LeaderConfig {
            namespace: self
                .leader_election_namespace
                .or_else(|| self.namespace.clone())
                .unwrap_or_else(|| "default".into()),
            // Each shard elects its own leader.
            lease_name: if shard.is_sharded() {
                format!("{}-shard-{}", self.leader_election_lease_name, self.shard_index)
            } else {
                self.leader_election_lease_name
            },
            identity: identity.clone(),
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
        });
        let managed_namespaces = self
            .managed_namespaces
            .map(|list| list.into_iter().filter(|n| !n.is_empty()).collect::<Vec<_>>())
            .filter(|list| !list.is_empty());
        Ok(startup::RunOptions {
            api_timeout: Duration::from_secs(self.api_timeout_seconds),
            namespace: self.namespace,
            cache_dir: self.cache_dir.unwrap_or_else(controller::default_cache_dir),
            cache_retention: ferry::source::Retention {
                unused_after: self.cache_unused_after,
                max_bytes: self.cache_max_size,
            },
            cache_gc_interval: self.cache_gc_interval,
            concurrency: self.concurrency,
            lockdown: ferry::tenancy::Lockdown {
                allow_file_urls: self.allow_file_urls,
                require_service_account: self.require_service_account,
                default_service_account: self.default_service_account,
                no_cross_namespace_refs: self.no_cross_namespace_refs,
            },
            policy_namespace: self.policy_namespace.filter(|n| !n.is_empty()),
            health_timeout: Duration::from_secs(self.health_timeout_seconds),
            health_checks: self.health_checks,
            git_ref_cache: Duration::from_secs(self.git_ref_cache_seconds),
            kustomize: self.kustomize,
            helm: self.helm,
            http_address: self.http_address,
            webhook_secret: self.webhook_secret,
            prometheus_url: self.prometheus_url,
            allowed_prometheus_urls: self
                .allowed_prometheus_urls
                .into_iter()
                .filter(|u| !u.is_empty())
                .collect(),
            promotion_namespaces: self.promotion_namespaces,
            managed_namespaces,
            identity,
            leader,
            shard,
            render_limits: startup::RenderLimits {
                max_bytes: self.max_render_bytes,
                max_objects: self.max_render_objects as usize,
                cache_bytes: self.render_cache_bytes,
                max_index_bytes: self.max_chart_index_bytes,
            },
        })
    }
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
        Command::Run(args) => {
            telemetry::init(cli.log_format);
            let opts = match args.into_options() {
                Ok(opts) => opts,
                Err(err) => return fail(&err.to_string()),
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
            };
            match runtime.block_on(startup::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err.to_string()),
            }
        }
        Command::Sync { name, namespace } => {
            client_command(ferry::cli::request_sync(&name, namespace.as_deref()))
        }
        Command::Diff { name, namespace, revision, local, file, output, kustomize, helm, cache_dir } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(err) => return fail_with(&format!("cannot start the async runtime: {err}"), 2),
            };
            let input = match (revision, local) {
                (Some(r), _) => ferry::diff::live::Input::Revision(r),
                (None, Some(dir)) => ferry::diff::live::Input::Local(dir),
                (None, None) => return fail_with("pass --revision REF or --local DIR", 2),
            };
            let render = ferry::render::RenderOptions {
                kustomize_bin: kustomize,
                helm_bin: helm,
                ..Default::default()
            };
            let run = ferry::cli::diff(ferry::cli::DiffRequest {
                name: name.as_deref(),
                namespace: namespace.as_deref(),
                file: file.as_deref(),
                input: &input,
                render: &render,
                cache_dir,
            });
            match runtime.block_on(run) {
                Ok(plan) => {
                    print!("{}", ferry::diff::report(&plan, output));
                    if plan.has_changes() { ExitCode::from(1) } else { ExitCode::SUCCESS }
                }
                Err(err) => fail_with(&err.to_string(), 2),
            }
        }
        Command::Import { files, from_cluster, namespace, default_branch } => {
            let request = ferry::cli::ImportRequest {
                files: &files,
                from_cluster,
                namespace: namespace.as_deref(),
                options: ferry::import::Options { default_branch },
            };
            import(request)
        }
        Command::Status { name, namespace } => {
            client_command(ferry::cli::status(&name, namespace.as_deref()))
        }
        Command::Promote { name, namespace, set: true, .. } => {
            client_command(ferry::cli::request_set_promotion(&name, namespace.as_deref()))
        }
        Command::Promote { name, namespace, full, set: false } => {
            let verb = if full { "promote-full" } else { "promote" };
            client_command(ferry::cli::request_rollout(&name, namespace.as_deref(), verb))
        }
        Command::Abort { name, namespace } => {
            client_command(ferry::cli::request_rollout(&name, namespace.as_deref(), "abort"))
        }
        Command::Retry { name, namespace } => {
            client_command(ferry::cli::request_rollout(&name, namespace.as_deref(), "retry"))
        }
    }
}

/// `ferry import`: the YAML on stdout; exit 1 when some field did not map (as `ferry diff`
/// exits 1 for changes), 2 on an error (nothing printed on stdout).
fn import(request: ferry::cli::ImportRequest<'_>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return fail_with(&format!("cannot start the async runtime: {err}"), 2),
    };
    let report = match runtime.block_on(ferry::cli::import(request)) {
        Ok(report) => report,
        Err(err) => return fail_with(&err.to_string(), 2),
    };
    match report.to_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            if report.has_notes() { ExitCode::from(1) } else { ExitCode::SUCCESS }
        }
        Err(err) => fail_with(&err.to_string(), 2),
    }
}

/// Runs a command that talks to the cluster and prints what it says.
fn client_command(
    command: impl std::future::Future<Output = Result<String, ferry::cli::CliError>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}")),
    };
    match runtime.block_on(command) {
        Ok(done) => {
            println!("{}", done.trim_end());
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err.to_string()),
    }
}

/// A duration flag that is not one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration like 15s, 1m or 500ms, of at most 8760h")]
struct NotADuration(String);

/// A Go-style duration flag (`15s`, `1m30s`, `500ms`).
fn go_duration(text: &str) -> Result<Duration, NotADuration> {
    ferry::duration::parse(text).ok_or_else(|| NotADuration(text.to_string()))
}

/// A size flag that is not one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a positive size like 1048576, 512Ki, 32Mi or 1Gi")]
struct NotASize(String);

/// A size flag: bytes, or a number with a K/M/G/T (powers of 1000) or Ki/Mi/Gi/Ti suffix.
fn byte_size(text: &str) -> Result<u64, NotASize> {
    ferry::source::gc::parse_size(text).filter(|n| *n > 0).ok_or_else(|| NotASize(text.to_string()))
}

/// One line on stderr, exit code 1: the contract scripts and people rely on.
fn fail(msg: &str) -> ExitCode {
    fail_with(msg, 1)
}

/// One line on stderr and this exit code (`ferry diff` keeps 1 for "changes").
fn fail_with(msg: &str, code: u8) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// `--default-service-account` that is not a ServiceAccount name.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a ServiceAccount name (lower-case letters, digits, '-' and '.', at most 253)")]
struct NotAServiceAccountName(String);

/// A ServiceAccount name (a DNS subdomain), as the API server would accept it.
fn service_account_name(text: &str) -> Result<String, NotAServiceAccountName> {
    let fits = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if text.len() <= 253
        && text.chars().all(fits)
        && ends_ok(text.chars().next())
        && ends_ok(text.chars().last())
    {
        Ok(text.to_string())
    } else {
        Err(NotAServiceAccountName(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_flags_take_bytes_or_suffixes_and_refuse_the_rest() {
        assert_eq!(byte_size("1048576"), Ok(1 << 20));
        assert_eq!(byte_size("512Ki"), Ok(512 << 10));
        assert_eq!(byte_size("32Mi"), Ok(32 << 20));
        assert_eq!(byte_size("1Gi"), Ok(1 << 30));
        for bad in ["", "0", "0Mi", "32MB", "Mi", "-1", "1.5.2Gi", "99999999999999Gi", "é"] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
    }

    /// Issue 19, defect 4: a duration flag past the bound is an error, not a panic.
    #[test]
    fn duration_flags_past_the_bound_are_errors() {
        assert_eq!(go_duration("15s"), Ok(Duration::from_secs(15)));
        let err = go_duration("99999999999999999999h").unwrap_err().to_string();
        assert!(err.contains("at most 8760h"), "{err}");
    }
}
