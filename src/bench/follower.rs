//! The process that follows a measurement's objects, started from the bench's own binary so that
//! its memory and CPU time can be read from `/proc`: the operator under test (`bkops run`, with
//! its metrics) or the bare controller it is judged against (`bkops bench-bare`, see
//! [`super::bare`]).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::args::BenchArgs;
use crate::local::ControlPlane;

/// How long a follower may take to be ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Which process follows the objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// The operator under test.
    Operator,
    /// The bare controller.
    Bare,
}

impl Role {
    /// The name its log file and the bench's lines use.
    pub(super) fn name(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Bare => "bare",
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running follower.
pub(super) struct Follower {
    child: tokio::process::Child,
    pub(super) pid: u32,
    /// The operator's metrics URL; the bare controller has none.
    metrics: Option<String>,
}

impl Follower {
    /// Starts `role` on namespace `ns` with the bench's poll schedule and concurrency, and
    /// waits until it is ready: its watches listed the namespace.
    pub(super) async fn spawn(
        role: Role,
        args: &BenchArgs,
        cp: &ControlPlane,
        ns: &str,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(cp.dir().join(format!("{}-{ns}.log", role.name())))?;
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        let port = free_port()?;
        match role {
            Role::Operator => command
                .arg("run")
                .args(["--namespaces", ns])
                .args(["--default-connection", "blueking"])
                .arg("--leader-elect=false")
                .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
                .args(["--log-level", &args.operator_log_level])
                .stdout(std::process::Stdio::null()),
            Role::Bare => command
                .arg("bench-bare")
                .args(["--namespace", ns])
                .args(["--connection", "blueking"])
                .stdout(std::process::Stdio::piped()),
        };
        let mut child = command
            .arg("--kubeconfig")
            .arg(cp.kubeconfig_path())
            .args(["--concurrency", &args.concurrency.to_string()])
            .args([
                "--poll-initial-seconds",
                &args.poll_initial_seconds.to_string(),
            ])
            .args(["--poll-max-seconds", &args.poll_max_seconds.to_string()])
            .env_remove("RUST_LOG")
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {}", role.name()))?;
        let pid = child.id().context("follower pid")?;
        let ready = match role {
            Role::Operator => operator_ready(port).await,
            Role::Bare => bare_ready(child.stdout.take()).await,
        };
        ready.with_context(|| format!("the {} did not become ready", role.name()))?;
        Ok(Follower {
            child,
            pid,
            metrics: (role == Role::Operator).then(|| format!("http://127.0.0.1:{port}/metrics")),
        })
    }

    /// The operator's metrics (empty for the bare controller).
    pub(super) async fn metrics(&self) -> anyhow::Result<String> {
        match &self.metrics {
            Some(url) => Ok(reqwest::get(url).await?.text().await?),
            None => Ok(String::new()),
        }
    }

    pub(super) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Waits for the operator's `/readyz`.
async fn operator_ready(port: u16) -> anyhow::Result<()> {
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(r) = http.get(&ready).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("not ready in {} s", READY_WITHIN.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the bare controller's `ready` line.
async fn bare_ready(stdout: Option<tokio::process::ChildStdout>) -> anyhow::Result<()> {
    let mut lines = BufReader::new(stdout.context("no stdout")?).lines();
    let line = tokio::time::timeout(READY_WITHIN, lines.next_line())
        .await
        .context("not ready in time")??;
    match line.as_deref() {
        Some("ready") => Ok(()),
        other => anyhow::bail!("it said {other:?} instead of ready"),
    }
}
