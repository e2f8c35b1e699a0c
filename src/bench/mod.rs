//! `bkops bench`: the load benchmark (issue 6), judged against a bare controller (issue 19).
//!
//! One run per N: a real local `kube-apiserver` + etcd ([`crate::local`]) and the BlueKing
//! simulator ([`crate::sim`]) with jobs that finish after `--job-seconds`. Each run measures two
//! followers of N job objects (the four kinds in turn), created at once (`--parallelism` creates
//! in flight) in a fresh namespace each, with the same watch and timing code:
//!
//! - the **bare controller** ([`bare`]): a minimal watcher on the same API server that makes the
//!   operator's calls for each object (the intent PATCH with a resourceVersion precondition, the
//!   BlueKing create and start, the job-id PATCH, polls on the operator's schedule, the end PATCH)
//!   and nothing else;
//! - then the **operator** as a `bkops run` process.
//!
//! Both run as separate processes of the bench's own binary, so their peak RSS and CPU time can
//! be read from `/proc`. The bench watches the objects until every one reports a final phase,
//! then reports latency, drain time, Kubernetes API requests per job (the API server's own
//! `apiserver_request_total`, before and after), BlueKing calls per job (the simulator's counts)
//! and the follower's resources. Latency and throughput are judged against the bare
//! controller's figures of the same run, not absolute numbers ([`targets`]).

mod args;
pub mod bare;
mod cluster;
mod follower;
pub mod history;
mod measure;
mod num;
pub mod probe;
mod render;
mod report;
pub mod status;
pub mod targets;
pub mod workload;

use std::time::Duration;

use anyhow::Context as _;

use crate::local::{ControlPlane, ControlPlaneOptions};
use crate::sim::SimConfig;
pub use args::{BenchArgs, Limit, RAISED_LIMIT};
use cluster::install_crds;
use measure::run_one;
pub use num::Num;
use render::{one_line, render_report};
use report::median_run;
pub use report::{BareFigures, KindFigures, RunReport};

/// `bkops bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.n.is_empty() || args.n.contains(&0) {
        anyhow::bail!("--n needs one or more positive counts");
    }
    if args.repeat == 0 {
        anyhow::bail!("--repeat needs at least 1 run");
    }
    crate::errln!("starting the control plane ...");
    let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let admin = cp.client()?;
    install_crds(&admin).await?;
    let sim = crate::sim::start(
        SimConfig {
            job_duration: Duration::from_secs_f64(args.job_seconds),
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse()?,
    )
    .await?;
    let control = sim.control();
    if let Some(n) = args.history {
        if n == 0 {
            anyhow::bail!("--history needs a positive count");
        }
        crate::errln!("history of {n} finished jobs: ...");
        let report =
            history::run_history(&args, &cp, &admin, sim.base_url().as_str(), &control, n).await?;
        let text = history::render(&report);
        let printed = crate::outln!("{text}");
        if let Some(path) = &args.out {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        }
        sim.shutdown().await;
        cp.stop().await?;
        return Ok(printed?);
    }
    let mut reports = Vec::new();
    for &n in &args.n {
        let mut runs = Vec::new();
        for run in 1..=args.repeat {
            crate::errln!("N = {n}, run {run} of {}: ...", args.repeat);
            let report = run_one(&args, &cp, &admin, sim.base_url().as_str(), &control, n).await?;
            crate::errln!("{}", one_line(&report));
            runs.push(report);
            // Simulated jobs of this run would otherwise be listed (and answered) in the next.
            control.reset().await?;
        }
        reports.extend(median_run(runs));
    }
    let text = render_report(&args, &reports);
    // A closed stdout still gets the report into `--out` and the servers stopped.
    let printed = crate::outln!("{text}");
    if let Some(path) = &args.out {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    sim.shutdown().await;
    cp.stop().await?;
    Ok(printed?)
}
