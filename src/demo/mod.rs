//! `bkops demo`: the whole system on one machine, in one command.
//!
//! It starts the local control plane ([`crate::local`], provisioned as for the tests), installs
//! the CRDs, starts the BlueKing simulator ([`crate::sim`]) and the operator
//! ([`crate::controller::run`]) in this process, creates the connections `blueking` and
//! `blueking-esb` to the simulator, and applies every job manifest of `examples/`. The simulator
//! is told to make it interesting: one job gets failed targets, one waits for a person (the demo
//! approves it a few seconds later). A live table follows the resources until every run has
//! ended; then each resource's final phase is checked against what the simulator did with its
//! job, and the create calls are counted (exactly one per resource). Last, every job is deleted
//! and applied again: each adopts its earlier run from its record, with no new create.
//!
//! The helpers that set up such a world ([`documents`], [`apply_yaml`], [`connections_yaml`])
//! are shared with the tests.

mod args;
mod finish;
mod manifests;
mod play;
mod recreate;
mod scenario;
mod start;
mod summary;
mod table;

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use crate::local::{ControlPlane, ControlPlaneOptions};
use crate::sim::{SimConfig, SimControl, SimHandle};
pub use args::DemoArgs;
use args::{keep_dir, reset_keep_dir};
pub use manifests::{
    APPLY_MANAGER, JOB_KINDS, ManifestError, api_resource, apply_objects, apply_yaml,
    connections_yaml, documents, kind_and_name, local_offset,
};
use scenario::load_examples;
use start::{binaries, init_logging};

/// The last line of a demo whose every run ended as the simulator says, with one create each.
pub const ALL_MATCHED: &str =
    "Every run ended matching the simulator, with exactly one create per resource.";

/// `bkops demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !args.job_seconds.is_finite() || args.job_seconds < 0.0 {
        bail!("--job-seconds must be a non-negative number");
    }
    if args.timeout_seconds == 0 {
        bail!("--timeout-seconds must be at least 1");
    }
    let (jobs, skipped) = load_examples(&args.examples)?;
    let stdout_tty = std::io::stdout().is_terminal();
    let color = !args.no_color && crate::output::color_for(&std::io::stdout());

    let dir = if args.keep {
        let dir = keep_dir(&args)?;
        reset_keep_dir(&dir)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Some(std::path::absolute(&dir).unwrap_or(dir))
    } else {
        None
    };
    let log = match &dir {
        Some(dir) => dir.join("operator.log"),
        None => std::env::temp_dir().join(format!("bkops-demo-{}.log", std::process::id())),
    };
    init_logging(&log)?;

    crate::outln!(
        "bkops demo: {} job manifests from {} against the BlueKing simulator",
        jobs.len(),
        args.examples.display()
    )?;
    let binaries = binaries().await?;
    crate::outln!(
        "Starting etcd and kube-apiserver {} ...",
        crate::local::K8S_VERSION
    )?;
    let cp = ControlPlane::start(ControlPlaneOptions {
        binaries: Some(binaries),
        dir: dir.clone(),
        ..ControlPlaneOptions::default()
    })
    .await
    .context("starting the local control plane")?;
    crate::outln!(
        "  ready in {:.1} s at {}",
        cp.startup_duration().as_secs_f32(),
        cp.server_url()
    )?;
    // Ctrl-C from here on stops the demo cleanly (before, it ends the process, and the control
    // plane's supervisors stop the servers).
    let stop = CancellationToken::new();
    crate::cli::cancel_on_signal(stop.clone());

    let sim_config = SimConfig {
        job_duration: Duration::from_secs_f64(args.job_seconds),
        ..SimConfig::default()
    };
    let sim = crate::sim::start(sim_config, ([127, 0, 0, 1], 0).into())
        .await
        .context("starting the BlueKing simulator")?;
    let mut demo = Demo {
        control: sim.control(),
        sim: Some(sim),
        cp: Some(cp),
        operator: None,
        args: args.clone(),
        stop: stop.clone(),
    };
    let result = demo.play(&jobs, &skipped, color, stdout_tty).await;
    demo.finish(result, &log).await
}

/// The running pieces.
struct Demo {
    cp: Option<ControlPlane>,
    sim: Option<SimHandle>,
    control: SimControl,
    operator: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
    args: DemoArgs,
    stop: CancellationToken,
}
