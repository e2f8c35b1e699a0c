//! Command-line arguments of the library's entry points (`bkops run`), so that `main.rs` stays
//! a thin dispatcher and tests can build the same configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::controller::{LeaderElection, OperatorConfig, default_identity};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging flags shared by the long-running commands.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log level or filter (`info`, `debug`, `bkops=debug,kube=info`); `RUST_LOG` wins when set.
    #[arg(long, env = "BKOPS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "BKOPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global tracing subscriber (logs go to stderr, coloured only when stderr is a
    /// terminal and `NO_COLOR` is unset or empty: a log file or collector gets plain text).
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .or_else(|_| tracing_subscriber::EnvFilter::try_new(&self.log_level))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(crate::output::color_for(&std::io::stderr()))
            .with_writer(std::io::stderr);
        let _ = match self.log_format {
            LogFormat::Json => builder.json().try_init(),
            LogFormat::Text => builder.try_init(),
        };
    }
}

/// `bkops run`: the operator.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Kubeconfig file; default: in-cluster config, then `KUBECONFIG`, then `~/.kube/config`.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces to watch, comma-separated; empty watches all.
    #[arg(long, env = "BKOPS_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// BkConnection (in the job's own namespace) for jobs without `spec.connectionRef`.
    #[arg(long, env = "BKOPS_DEFAULT_CONNECTION")]
    pub default_connection: Option<String>,
    /// Address for `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "BKOPS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Take a Lease before reconciling, so only one replica acts (correctness does not depend
    /// on it: every submission is fenced on the object itself).
    #[arg(long, env = "BKOPS_LEADER_ELECT", action = ArgAction::Set, default_value_t = true)]
    pub leader_elect: bool,
    /// Namespace of the Lease; default: `POD_NAMESPACE`, else `default`.
    #[arg(long, env = "BKOPS_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, env = "BKOPS_LEASE_NAME", default_value = "bkops")]
    pub lease_name: String,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// Reconciles at once, per kind and lane: one lane follows running jobs (polls, starts,
    /// cancels), the other decides everything else (submissions first of all), so new objects
    /// never queue behind the jobs already running. They wait on the API server and BlueKing,
    /// not on CPU; BlueKing calls are capped on their own by each connection's `rateLimit`.
    #[arg(long, env = "BKOPS_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,
    /// Seconds after its intent that an unclear create is searched for before the search
    /// concludes: for BKFlow, that nothing was created (the run is submitted again); for GSEKit,
    /// NodeMan and JOB, `Unknown` for a person. Never less than the connection's call timeout
    /// plus 5 s. Keep it above the API gateway's backend timeouts (GSEKit 180 s, BKFlow 120 s
    /// upstream), or a create the gateway still carries out could land after the search.
    #[arg(long, env = "BKOPS_RESOLVE_GRACE_SECONDS", default_value_t = 240.0)]
    pub resolve_grace_seconds: f64,
    /// Seconds a run's creates may go unmade (BlueKing unreachable, rate limited, over quota)
    /// before the run is reported Stalled (reason ConnectionUnreachable or SubmitBlocked);
    /// they are still tried every 10 s.
    #[arg(long, env = "BKOPS_SUBMIT_STALL_SECONDS", default_value_t = 300.0)]
    pub submit_stall_seconds: f64,
    /// First poll interval of a run, in seconds; intervals grow with the run's age.
    #[arg(long, env = "BKOPS_POLL_INITIAL_SECONDS", default_value_t = 2.0)]
    pub poll_initial_seconds: f64,
    /// Longest poll interval, in seconds.
    #[arg(long, env = "BKOPS_POLL_MAX_SECONDS", default_value_t = 30.0)]
    pub poll_max_seconds: f64,
    /// Days a finished run record (`BkRun`) is kept after its run ended; 0 keeps them all.
    /// Records of runs in flight or of unknown outcome are never deleted. A re-created job
    /// object whose record is gone runs again.
    #[arg(long, env = "BKOPS_RUN_RETENTION_DAYS", default_value_t = 90)]
    pub run_retention_days: u32,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

fn seconds(flag: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("--{flag} must be a non-negative number of seconds, got {v}"))
}

impl RunArgs {
    /// The operator configuration these flags describe, with `POD_NAMESPACE` and `POD_NAME`
    /// from the process environment.
    pub fn config(&self) -> anyhow::Result<OperatorConfig> {
        self.config_with_env(|name| std::env::var(name).ok())
    }

    /// [`RunArgs::config`] with the environment given as a lookup, so a test can build the
    /// configuration a pod would get from its rendered environment.
    pub fn config_with_env(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<OperatorConfig> {
        if self.concurrency == 0 {
            anyhow::bail!("--concurrency must be at least 1");
        }
        let poll_initial = seconds("poll-initial-seconds", self.poll_initial_seconds)?;
        let poll_max = seconds("poll-max-seconds", self.poll_max_seconds)?;
        if poll_initial.is_zero() || poll_max < poll_initial {
            anyhow::bail!("--poll-initial-seconds must be above 0 and at most --poll-max-seconds");
        }
        if self.lease_seconds < 2 {
            anyhow::bail!("--lease-seconds must be at least 2");
        }
        let leader_election = self.leader_elect.then(|| LeaderElection {
            namespace: self
                .leader_election_namespace
                .clone()
                .or_else(|| env("POD_NAMESPACE"))
                .unwrap_or_else(|| "default".to_owned()),
            lease_name: self.lease_name.clone(),
            duration_secs: self.lease_seconds,
        });
        Ok(OperatorConfig {
            namespaces: self
                .namespaces
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            default_connection: self.default_connection.clone().filter(|c| !c.is_empty()),
            concurrency: self.concurrency,
            resolve_grace: seconds("resolve-grace-seconds", self.resolve_grace_seconds)?,
            submit_stall: seconds("submit-stall-seconds", self.submit_stall_seconds)?,
            poll_initial,
            poll_max,
            leader_election,
            metrics_addr: Some(self.metrics_addr),
            run_retention: (self.run_retention_days > 0)
                .then(|| Duration::from_secs(u64::from(self.run_retention_days) * 86_400)),
            identity: env("POD_NAME")
                .map(|p| format!("{p}-{}", std::process::id()))
                .unwrap_or_else(default_identity),
        })
    }
}

/// A Kubernetes client from an explicit kubeconfig file, or the usual inference.
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Cancels `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

/// `bkops run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    args.log.init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = args.config()?;
    let client = kube_client(args.kubeconfig.as_deref()).await?;
    let token = tokio_util::sync::CancellationToken::new();
    cancel_on_signal(token.clone());
    crate::controller::run(client, config, token).await
}
