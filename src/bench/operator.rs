//! The operator under test, as a separate `bkops run` process (so that its memory and CPU time
//! can be read from `/proc`), and its metrics.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::args::BenchArgs;
use crate::local::ControlPlane;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) struct Operator {
    child: tokio::process::Child,
    pub(super) pid: u32,
    metrics: String,
}

impl Operator {
    pub(super) async fn spawn(
        args: &BenchArgs,
        cp: &ControlPlane,
        ns: &str,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(cp.dir().join(format!("operator-{ns}.log")))?;
        let exe = std::env::current_exe()?;
        let child = tokio::process::Command::new(exe)
            .arg("run")
            .arg("--kubeconfig")
            .arg(cp.kubeconfig_path())
            .args(["--namespaces", ns])
            .args(["--default-connection", "blueking"])
            .arg("--leader-elect=false")
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args([
                "--poll-initial-seconds",
                &args.poll_initial_seconds.to_string(),
            ])
            .args(["--poll-max-seconds", &args.poll_max_seconds.to_string()])
            .args(["--log-level", &args.operator_log_level])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting `bkops run`")?;
        let pid = child.id().context("operator pid")?;
        let op = Operator {
            child,
            pid,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        };
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(&ready).send().await
                && r.status().is_success()
            {
                return Ok(op);
            }
            if Instant::now() > deadline {
                anyhow::bail!("the operator did not become ready in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(super) async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(&self.metrics).await?.text().await?)
    }

    pub(super) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
