//! The BlueKing simulator: GSEKit, BKFlow, NodeMan and JOB on one local port, faithful to the
//! upstream behaviour described in `docs/blueking-api.md`.
//!
//! Tests and the demo run the operator against it over real HTTP. One listener serves:
//!
//! - **API gateway** paths `/api/{gateway}/{stage}/{resource}` for the gateways `bk-gsekit`,
//!   `bk-flow` (also `bk-flow-engine`), `bk-nodeman` and `bk-job`, with each system's resource
//!   paths (JOB's without a trailing slash);
//! - **legacy ESB** paths `/api/c/compapi/v2/{gsekit,nodeman,job,jobv3}/...` (BKFlow has none);
//! - the **control API** under `/_sim/` (see [`control`]).
//!
//! Jobs move through their system's states as time passes (see [`model`] for how), with
//! per-target results, and the quirks the operator must survive are kept: BKFlow tasks are not
//! started until started and refuse a second start, NodeMan reports `TERMINATED` once after a
//! revoke, GSEKit has no cancel, JOB creates with `start_task=false` wait at status 1.
//!
//! Deliberate deviations from upstream are commented next to the code that makes them. The main
//! ones: any non-empty user identity is accepted (there is no user directory); bodies with
//! trailing commas are accepted (the seed examples have them); BKFlow errors are answered with
//! HTTP 200; JOB's "operation not allowed in this state" uses code 1241002 (the exact upstream
//! code was not confirmed); JOB completion callbacks are not sent.

#![warn(missing_docs)]

mod api;
pub mod control;
mod handlers;
mod jobs;
mod lenient;
mod model;
mod server;
mod state;
mod wire;
mod world;

mod bkflow;
mod gsekit;
mod job;
mod logs;
mod nodeman;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

pub use api::{
    Behaviour, CallCounts, EndpointCount, FaultAction, FaultRule, JobView, PathCount, SystemSel,
};
pub use control::SimControl;

/// The four BlueKing systems the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// GSEKit (process and config file jobs).
    Gsekit,
    /// BKFlow (task flows).
    Bkflow,
    /// NodeMan (agent and plugin jobs).
    Nodeman,
    /// JOB (job plans).
    Job,
}

impl From<crate::bk::System> for System {
    fn from(s: crate::bk::System) -> Self {
        match s {
            crate::bk::System::Gsekit => System::Gsekit,
            crate::bk::System::Bkflow => System::Bkflow,
            crate::bk::System::Nodeman => System::Nodeman,
            crate::bk::System::Job => System::Job,
        }
    }
}

impl System {
    /// All systems, in a fixed order.
    pub const ALL: [System; 4] = [System::Gsekit, System::Bkflow, System::Nodeman, System::Job];

    /// The lowercase name used in the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            System::Gsekit => "gsekit",
            System::Bkflow => "bkflow",
            System::Nodeman => "nodeman",
            System::Job => "job",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        System::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The API gateway name (BKFlow also answers to `bk-flow-engine`).
    pub fn gateway_name(self) -> &'static str {
        match self {
            System::Gsekit => "bk-gsekit",
            System::Bkflow => "bk-flow",
            System::Nodeman => "bk-nodeman",
            System::Job => "bk-job",
        }
    }
}

/// An app the simulator accepts (`bk_app_code` + `bk_app_secret`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCredential {
    /// `bk_app_code`.
    pub app_code: String,
    /// `bk_app_secret`.
    pub app_secret: String,
}

impl AppCredential {
    /// A credential pair.
    pub fn new(app_code: impl Into<String>, app_secret: impl Into<String>) -> Self {
        AppCredential {
            app_code: app_code.into(),
            app_secret: app_secret.into(),
        }
    }
}

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Apps accepted. Several pairs may share an app code (the seed examples use different
    /// secrets for the same placeholder code).
    pub apps: Vec<AppCredential>,
    /// The user name assumed for a caller identified by `bk_token` or `access_token` only
    /// (there is no login service to resolve them). Any non-empty `bk_username` is accepted.
    pub token_user: String,
    /// How long a started job runs, from start to its last target.
    pub job_duration: Duration,
    /// Targets per job where the request does not name them (processes, nodes, hosts).
    pub targets: usize,
    /// The API gateway stage in gateway paths.
    pub stage: String,
    /// Base of NodeMan's `job_url` (upstream `BK_NODEMAN_HOST`); the simulator's own URL when
    /// `None`.
    pub job_url_host: Option<Url>,
    /// JOB answers HTTP 401 to requests without `X-Bk-Tenant-Id` (multi-tenant bk-job).
    pub require_tenant: bool,
    /// BKFlow spaces owned by the calling apps; a request for any other space gets 403. Empty
    /// means every space belongs to the caller.
    pub bkflow_spaces: Vec<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            apps: vec![AppCredential::new("bkops", "bkops-secret")],
            token_user: "admin".to_string(),
            job_duration: Duration::from_secs(5),
            targets: 3,
            stage: "prod".to_string(),
            job_url_host: None,
            require_tenant: false,
            bkflow_spaces: Vec::new(),
        }
    }
}

/// Errors from starting or talking to the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A URL could not be built.
    #[error("invalid URL: {0}")]
    Url(#[from] url::ParseError),
    /// A control-API call failed.
    #[error("control API: {0}")]
    Client(String),
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    base: Url,
    stage: String,
    control: SimControl,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its root URL, `http://{addr}/`.
    pub fn base_url(&self) -> Url {
        self.base.clone()
    }

    /// The gateway base URL for an API (gateway) name: `{base}/api/{api_name}/{stage}/`.
    pub fn gateway_url(&self, api_name: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/api/{api_name}/{}/", self.stage));
        url
    }

    /// The legacy ESB base URL, `{base}/api/c/compapi/v2/`.
    pub fn esb_url(&self) -> Url {
        let mut url = self.base.clone();
        url.set_path("/api/c/compapi/v2/");
        url
    }

    /// A control-API client.
    pub fn control(&self) -> SimControl {
        self.control.clone()
    }

    /// Stops serving and waits for the server task to end.
    ///
    /// Open keep-alive connections are closed; if they do not close within a few seconds, the
    /// server task is aborted so a test can never hang on shutdown.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Starts the simulator on `addr` (port 0 picks a free port).
pub async fn start(config: SimConfig, addr: SocketAddr) -> Result<SimHandle, SimError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| SimError::Bind { addr, source })?;
    let base = Url::parse(&format!("http://{local}/"))?;
    let stage = config.stage.clone();
    let control = SimControl::new(base.clone())?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(server::serve(listener, config, base.clone(), stop.clone()));
    Ok(SimHandle {
        addr: local,
        base,
        stage,
        control,
        stop,
        task,
    })
}

/// Installs the process-wide rustls provider (ring) that reqwest's `rustls-no-provider`
/// feature expects; a provider installed earlier wins.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `bkops sim`: serve the BlueKing simulator for the demo or for rehearsing manifests.
#[derive(Clone, Debug, clap::Args)]
#[command(
    about = "Serve a local BlueKing simulator (GSEKit, BKFlow, NodeMan, JOB)",
    long_about = "Serve a local BlueKing simulator: the API-gateway and legacy-ESB paths of \
GSEKit, BKFlow, NodeMan and JOB on one port, with upstream auth, envelopes and state machines, \
plus a control API under /_sim/ for faults and call counts. Point a BkConnection at the printed \
URLs to rehearse manifests."
)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, env = "BKOPS_SIM_LISTEN", default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// The bk_app_code the simulator accepts.
    #[arg(long, env = "BKOPS_SIM_APP_CODE", default_value = "bkops")]
    pub app_code: String,
    /// The bk_app_secret the simulator accepts.
    #[arg(long, env = "BKOPS_SIM_APP_SECRET", default_value = "bkops-secret")]
    pub app_secret: String,
    /// User name assumed for callers that send only bk_token or access_token.
    #[arg(long, env = "BKOPS_SIM_TOKEN_USER", default_value = "admin")]
    pub token_user: String,
    /// How long a started job runs, in seconds (fractions allowed, e.g. 0.2).
    #[arg(long, env = "BKOPS_SIM_JOB_SECONDS", default_value_t = 5.0)]
    pub job_seconds: f64,
    /// Targets (processes, nodes, hosts) per job when the request does not name them.
    #[arg(long, env = "BKOPS_SIM_TARGETS", default_value_t = 3)]
    pub targets: usize,
    /// API gateway stage used in gateway paths.
    #[arg(long, env = "BKOPS_SIM_STAGE", default_value = "prod")]
    pub stage: String,
    /// Base of NodeMan's job_url links (defaults to the simulator's own URL).
    #[arg(long, env = "BKOPS_SIM_JOB_URL_HOST")]
    pub job_url_host: Option<Url>,
    /// Make JOB answer 401 without an X-Bk-Tenant-Id header (multi-tenant bk-job).
    #[arg(long, env = "BKOPS_SIM_REQUIRE_TENANT")]
    pub require_tenant: bool,
    /// A BKFlow space owned by the app (repeatable); other spaces answer 403. None given means
    /// every space is owned.
    #[arg(
        long = "bkflow-space",
        env = "BKOPS_SIM_BKFLOW_SPACES",
        value_delimiter = ','
    )]
    pub bkflow_spaces: Vec<u64>,
}

impl SimArgs {
    /// The configuration these arguments describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        if !self.job_seconds.is_finite() || self.job_seconds < 0.0 {
            anyhow::bail!("--job-seconds must be a non-negative number");
        }
        Ok(SimConfig {
            apps: vec![AppCredential::new(&self.app_code, &self.app_secret)],
            token_user: self.token_user.clone(),
            job_duration: Duration::from_secs_f64(self.job_seconds),
            targets: self.targets.max(1),
            stage: self.stage.clone(),
            job_url_host: self.job_url_host.clone(),
            require_tenant: self.require_tenant,
            bkflow_spaces: self.bkflow_spaces.clone(),
        })
    }
}

/// Serves the simulator until Ctrl-C or SIGTERM, after printing the URLs and credentials to use;
/// stops early when stdout is closed (`bkops sim | head -1`).
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let handle = start(config, args.listen).await?;
    let stop = shutdown_signal();
    let mut printed = announce(&args, &handle);
    if printed.is_ok() {
        stop.await;
        printed = crate::outln!("shutting down");
    }
    handle.shutdown().await;
    Ok(printed?)
}

/// Prints where the simulator listens and how to authenticate.
fn announce(args: &SimArgs, handle: &SimHandle) -> Result<(), crate::output::StdoutError> {
    crate::outln!("BlueKing simulator listening on {}", handle.base_url())?;
    for system in System::ALL {
        crate::outln!(
            "  {:<8} gateway  {}",
            system.as_str(),
            handle.gateway_url(system.gateway_name())
        )?;
    }
    crate::outln!("  ESB (gsekit, nodeman, job, jobv3)  {}", handle.esb_url())?;
    crate::outln!("  control API  {}_sim/", handle.base_url())?;
    crate::outln!(
        "  credentials  bk_app_code={} bk_app_secret={} and any bk_username (or bk_token/access_token, taken as {})",
        args.app_code,
        args.app_secret,
        args.token_user
    )?;
    if args.require_tenant {
        crate::outln!("  JOB requires the X-Bk-Tenant-Id header")?;
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM. SIGTERM is caught from this call on, not from the first poll:
/// a supervisor that stops the simulator right after its first line must not kill it instead.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn args_parse_into_config() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "sim",
            "--job-seconds",
            "0.2",
            "--bkflow-space",
            "1,2",
            "--require-tenant",
        ])
        .unwrap();
        let config = cli.sim.to_config().unwrap();
        assert_eq!(config.job_duration, Duration::from_millis(200));
        assert_eq!(config.bkflow_spaces, vec![1, 2]);
        assert!(config.require_tenant);
        assert_eq!(
            config.apps,
            vec![AppCredential::new("bkops", "bkops-secret")]
        );
    }
}
