//! `bkops demo`: the whole system on one machine, in one command.
//!
//! It starts the local control plane ([`crate::local`], provisioned as for the tests), installs
//! the CRDs, starts the BlueKing simulator ([`crate::sim`]) and the operator
//! ([`crate::controller::run`]) in this process, creates the connections `blueking` and
//! `blueking-esb` to the simulator, and applies every job manifest of `examples/`. The simulator
//! is told to make it interesting: one job gets failed targets, one waits for a person (the demo
//! approves it a few seconds later). A live table follows the resources until every run has
//! ended; then each resource's final phase is checked against what the simulator did with its
//! job, and the create calls are counted (exactly one per resource).
//!
//! The helpers that set up such a world ([`documents`], [`apply_yaml`], [`connections_yaml`])
//! are shared with the tests.

mod manifests;
mod table;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::api::{JobStatus, Phase};
use crate::controller::{OperatorConfig, default_identity};
use crate::local::{Binaries, ControlPlane, ControlPlaneOptions, Locator, stop_command};
use crate::sim::{Behaviour, JobView, SimConfig, SimControl, SimHandle, System};
pub use manifests::{
    APPLY_MANAGER, JOB_KINDS, ManifestError, api_resource, apply_objects, apply_yaml,
    connections_yaml, documents, kind_and_name, local_offset,
};
use table::{Layout, Live, Row};

/// The last line of a demo whose every run ended as the simulator says, with one create each.
pub const ALL_MATCHED: &str =
    "Every run ended matching the simulator, with exactly one create per resource.";

/// `bkops demo`: run the examples against the simulator on a local control plane.
#[derive(clap::Args, Debug, Clone)]
#[command(
    about = "Run every example against the BlueKing simulator on a local control plane",
    long_about = "Start a local kube-apiserver and etcd (built once from Debian's sources on \
first use), install the CRDs, start the BlueKing simulator and the operator in this process, \
create the connections `blueking` and `blueking-esb`, apply every job manifest of the examples \
folder and follow them in a live table until every run has ended. One job is given failed \
targets and one waits for a person, whom the demo plays. Ends with a summary that checks each \
resource against what the simulator did and counts the create calls (exactly one per resource)."
)]
pub struct DemoArgs {
    /// Leave everything running after the summary, until Ctrl-C, and the control plane after that
    /// (with a kubeconfig to look with kubectl).
    #[arg(long)]
    pub keep: bool,
    /// Folder of manifests to apply (Secrets and BkConnections in it are skipped: the demo makes
    /// its own connections, with the same names, to the simulator).
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
    /// Namespace to run the examples in.
    #[arg(long, default_value = "bkops-demo")]
    pub namespace: String,
    /// How long a simulated job runs, in seconds.
    #[arg(long, default_value_t = 4.0)]
    pub job_seconds: f64,
    /// Give up when the runs have not all ended this many seconds after the examples are applied.
    #[arg(long, default_value_t = 180)]
    pub timeout_seconds: u64,
    /// No colours (none either when `NO_COLOR` is set and not empty, or the output is not a
    /// terminal).
    #[arg(long)]
    pub no_color: bool,
    /// Folder of the control plane kept by `--keep`; default `~/.cache/bkops/demo` (or
    /// `$BKOPS_CACHE_DIR/demo`). Emptied at the start of every `--keep` demo.
    #[arg(long, requires = "keep")]
    pub dir: Option<PathBuf>,
}

/// One job manifest of the examples folder.
#[derive(Clone, Debug)]
struct Example {
    file: String,
    kind: String,
    name: String,
    system: System,
    doc: Value,
}

/// What the simulator is told to do with one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Twist {
    /// The last of its targets fail: the run fails, with failed targets.
    FailTarget,
    /// It stops for a person, whom the demo plays a few seconds later.
    WaitForUser,
}

impl Twist {
    fn behaviour(self, system: System) -> Behaviour {
        Behaviour {
            system,
            failed_targets: (self == Twist::FailTarget).then_some(1),
            wait_for_user: self == Twist::WaitForUser,
            duration_ms: None,
            targets: None,
            times: Some(1),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Twist::FailTarget => "one target will fail",
            Twist::WaitForUser => "it will wait for a person (the demo approves it)",
        }
    }

    /// The phase the run should end in.
    fn expected(self) -> Phase {
        match self {
            Twist::FailTarget => Phase::Failed,
            Twist::WaitForUser => Phase::Succeeded,
        }
    }
}

/// The system a job kind talks to.
fn system_of(kind: &str) -> Option<System> {
    crate::run::kinds::job_kind(kind).map(|k| k.system.into())
}

/// A system's name for people.
fn system_label(system: System) -> &'static str {
    match system {
        System::Gsekit => "GSEKit",
        System::Bkflow => "BKFlow",
        System::Nodeman => "NodeMan",
        System::Job => "JOB",
    }
}

/// The job manifests of `dir` (`*.yaml`, `*.yml`, in name order), and what was skipped.
fn load_examples(dir: &Path) -> anyhow::Result<(Vec<Example>, Vec<String>)> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading the examples folder {} (run `bkops demo` from the bkops repository, or pass \
             --examples DIR)",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    let mut jobs: Vec<Example> = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let docs = documents(&text).with_context(|| format!("{}", path.display()))?;
        for doc in docs {
            let (kind, name) =
                kind_and_name(&doc).with_context(|| format!("{}", path.display()))?;
            let Some(system) = system_of(kind) else {
                skipped.push(format!("{file}: {kind} {name}"));
                continue;
            };
            if jobs.iter().any(|j| j.kind == kind && j.name == name) {
                bail!("{}: a second {kind} named {name}", path.display());
            }
            jobs.push(Example {
                file: file.clone(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                system,
                doc: doc.clone(),
            });
        }
    }
    if jobs.is_empty() {
        bail!(
            "no job manifests (ProcessJob, Taskflow, AgentJob, ExecuteJob) in {}",
            dir.display()
        );
    }
    Ok((jobs, skipped))
}

/// Which jobs get a twist: the first AgentJob (else ProcessJob) without a retry policy fails a
/// target (a retry would make a second create); the first ExecuteJob (else Taskflow) waits for a
/// person. They are of different systems, so each behaviour meets its own job's create.
fn choose_twists(jobs: &[Example]) -> Vec<(usize, Twist)> {
    let retries = |e: &Example| {
        e.doc["spec"]["retry"]["limit"]
            .as_u64()
            .is_some_and(|limit| limit > 0)
    };
    let first = |kinds: &[&str], ok: &dyn Fn(&Example) -> bool| {
        kinds
            .iter()
            .find_map(|kind| jobs.iter().position(|e| e.kind == *kind && ok(e)))
    };
    let mut twists = Vec::new();
    if let Some(i) = first(&["AgentJob", "ProcessJob"], &|e| !retries(e)) {
        twists.push((i, Twist::FailTarget));
    }
    if let Some(i) = first(&["ExecuteJob", "Taskflow"], &|_| true) {
        twists.push((i, Twist::WaitForUser));
    }
    twists
}

/// The phase a simulator job's final state means, or `None` while it is not final. Written from
/// the simulator's side (`docs/blueking-api.md`), not taken from the operator's mapping, so the two check
/// each other.
fn simulator_phase(system: System, state: &str) -> Option<Phase> {
    let phase = match (system, state) {
        (System::Gsekit, "succeeded") => Phase::Succeeded,
        (System::Gsekit, "failed") => Phase::Failed,
        (System::Bkflow, "FINISHED") => Phase::Succeeded,
        (System::Bkflow, "FAILED" | "EXPIRED") => Phase::Failed,
        (System::Bkflow, "REVOKED") => Phase::Cancelled,
        (System::Nodeman, "SUCCESS") => Phase::Succeeded,
        (System::Nodeman, "FAILED" | "PART_FAILED") => Phase::Failed,
        (System::Job, "3" | "6") => Phase::Succeeded,
        (System::Job, "4" | "5" | "9" | "14") => Phase::Failed,
        (System::Job, "8" | "11" | "13") => Phase::Cancelled,
        _ => return None,
    };
    Some(phase)
}

/// A simulator state for people: JOB's numeric statuses get their names.
fn state_label(system: System, state: &str) -> String {
    let name = match (system, state) {
        (System::Job, "1") => "BLANK",
        (System::Job, "2") => "RUNNING",
        (System::Job, "3") => "SUCCESS",
        (System::Job, "4") => "FAIL",
        (System::Job, "5") => "SKIPPED",
        (System::Job, "6") => "IGNORE_ERROR",
        (System::Job, "7") => "WAITING_USER",
        (System::Job, "8") => "TERMINATED",
        (System::Job, "11") => "STOP_SUCCESS",
        _ => return state.to_owned(),
    };
    format!("{state} {name}")
}

/// The folder `--keep` uses.
fn keep_dir(args: &DemoArgs) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.dir {
        return Ok(dir.clone());
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let cache = var("BKOPS_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache/bkops")))
        .context("neither BKOPS_CACHE_DIR nor HOME is set: pass --dir for --keep")?;
    Ok(cache.join("demo"))
}

/// Empties a kept demo folder from an earlier `--keep`, unless its servers still run.
fn reset_keep_dir(dir: &Path) -> anyhow::Result<()> {
    let entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    if entries.is_empty() {
        return Ok(());
    }
    if !dir.join("kubeconfig").exists() && !dir.join("etcd.log").exists() {
        bail!(
            "{} is not empty and does not look like a bkops demo folder; pass another --dir",
            dir.display()
        );
    }
    let alive: Vec<String> = entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pid"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|pid| pid.trim().to_owned())
        .filter(|pid| !pid.is_empty() && Path::new("/proc").join(pid).exists())
        .collect();
    if !alive.is_empty() {
        bail!(
            "the control plane of an earlier `bkops demo --keep` is still running (pids {}): \
             stop it with `{}`, or pass --dir for another folder",
            alive.join(", "),
            stop_command(dir)
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))
}

/// Sends the operator's (and everything else's) logs to a file: the terminal shows the table.
fn init_logging(path: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
    Ok(())
}

/// The control-plane binaries, provisioned when missing (which takes minutes, once).
async fn binaries() -> anyhow::Result<Binaries> {
    let locator = Locator::from_env();
    let missing = match locator.locate() {
        Ok(binaries) => return Ok(binaries),
        Err(err) => err,
    };
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let no_provision = var("BKOPS_NO_PROVISION").is_some_and(|v| v != "0" && v != "false");
    if var("KUBEBUILDER_ASSETS").is_some() || no_provision {
        return Err(missing.into());
    }
    crate::outln!(
        "kube-apiserver and etcd are not installed yet: building them once into {} from Debian's \
         sources (Debian bookworm, needs root; 5-10 minutes). Set KUBEBUILDER_ASSETS to a folder \
         holding kube-apiserver and etcd to skip this.",
        locator
            .cache_bin_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "the cache folder".into())
    )?;
    let binaries = tokio::task::spawn_blocking(move || locator.provision())
        .await
        .context("provisioning the control plane")??;
    Ok(binaries)
}

/// The operator's settings for the demo: only the demo namespace, quick polls, no Lease.
fn operator_config(namespace: &str) -> OperatorConfig {
    OperatorConfig {
        namespaces: vec![namespace.to_owned()],
        default_connection: Some("blueking".to_owned()),
        concurrency: 8,
        submit_stall: Duration::from_secs(300),
        resolve_grace: Duration::from_secs(10),
        poll_initial: Duration::from_millis(500),
        poll_max: Duration::from_secs(2),
        leader_election: None,
        metrics_addr: None,
        identity: default_identity(),
    }
}

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

/// One resource at the end, checked against the simulator.
struct Checked {
    row: Row,
    system: System,
    sim: Option<JobView>,
    expected: Phase,
    approved: bool,
}

impl Checked {
    fn sim_phase(&self) -> Option<Phase> {
        self.sim
            .as_ref()
            .and_then(|job| simulator_phase(job.system, &job.state))
    }

    fn matches(&self) -> bool {
        self.row.is_final() && self.sim_phase() == self.row.phase
    }
}

impl Demo {
    fn client(&self) -> anyhow::Result<kube::Client> {
        let cp = self.cp.as_ref().context("the control plane is gone")?;
        Ok(cp.client()?)
    }

    /// Everything between a ready control plane and the summary.
    async fn play(
        &mut self,
        jobs: &[Example],
        skipped: &[String],
        color: bool,
        tty: bool,
    ) -> anyhow::Result<()> {
        let client = self.client()?;
        let ns = self.args.namespace.clone();
        crate::local::install_crds(&client).await?;
        crate::outln!("  CRDs installed")?;
        create_namespace(&client, &ns).await?;
        let base = self
            .sim
            .as_ref()
            .map(|s| s.base_url().to_string())
            .unwrap_or_default();
        apply_yaml(&client, &ns, &connections_yaml(&base)).await?;
        crate::outln!(
            "  BlueKing simulator at {base}; connections blueking and blueking-esb in namespace {ns}"
        )?;
        let token = CancellationToken::new();
        let task = tokio::spawn(crate::controller::run(
            client.clone(),
            operator_config(&ns),
            token.clone(),
        ));
        self.operator = Some((token, task));
        crate::outln!("  operator running in this process, watching namespace {ns}")?;
        for s in skipped {
            crate::outln!("  skipped {s} (the demo makes its own connections to the simulator)")?;
        }
        crate::outln!()?;

        let rows: Vec<Row> = jobs
            .iter()
            .map(|j| Row::from_status(&j.kind, &j.name, None))
            .collect();
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .or(tty.then_some(120));
        let mut live = Live::new(Layout::new(&rows, color, columns), tty);
        let checked = self.follow(&client, jobs, &mut live).await?;
        self.summarize(&checked, color).await
    }

    /// Applies the jobs and shows the table until every run has ended.
    async fn follow(
        &mut self,
        client: &kube::Client,
        jobs: &[Example],
        live: &mut Live,
    ) -> anyhow::Result<Vec<Checked>> {
        let ns = self.args.namespace.clone();
        let twists = choose_twists(jobs);
        // The twisted jobs go first, each right after its behaviour, so it meets their creates.
        for &(i, twist) in &twists {
            let job = &jobs[i];
            self.control
                .set_behaviour(&twist.behaviour(job.system))
                .await
                .context("setting a simulator behaviour")?;
            apply_objects(client, &ns, std::slice::from_ref(&job.doc)).await?;
            live.note(format!(
                "applied {} {} ({}): {}",
                job.kind,
                job.name,
                job.file,
                twist.describe()
            ))?;
        }
        let mut rest_applied = twists.is_empty();
        if rest_applied {
            self.apply_rest(client, jobs, &twists, live).await?;
        }
        let started = Instant::now();
        let timeout = Duration::from_secs(self.args.timeout_seconds);
        let approve_after = Duration::from_secs_f64(self.args.job_seconds.clamp(1.0, 3.0));
        let mut waiting_since: BTreeMap<usize, Instant> = BTreeMap::new();
        let mut approved: Vec<usize> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stop.cancelled() => bail!("interrupted"),
            }
            if let Some((_, task)) = &self.operator
                && task.is_finished()
            {
                let result = match self.operator.take() {
                    Some((_, task)) => task.await,
                    None => Ok(Ok(())),
                };
                match result {
                    Ok(Ok(())) => bail!("the operator stopped on its own"),
                    Ok(Err(e)) => return Err(e.context("the operator stopped")),
                    Err(e) => bail!("the operator task failed: {e}"),
                }
            }
            let rows = fetch_rows(client, &ns, jobs).await?;
            if !rest_applied {
                let twisted_submitted = twists
                    .iter()
                    .all(|&(i, _)| rows[i].job.is_some() || rows[i].is_final());
                if twisted_submitted || started.elapsed() > Duration::from_secs(30) {
                    self.apply_rest(client, jobs, &twists, live).await?;
                    rest_applied = true;
                }
            }
            for (i, row) in rows.iter().enumerate() {
                if row.phase != Some(Phase::WaitingForUser) || approved.contains(&i) {
                    continue;
                }
                let since = *waiting_since.entry(i).or_insert_with(Instant::now);
                let id = row
                    .job
                    .as_deref()
                    .and_then(|j| j.trim().parse::<u64>().ok());
                if let (true, Some(id)) = (since.elapsed() >= approve_after, id) {
                    self.control
                        .approve(jobs[i].system, id)
                        .await
                        .with_context(|| {
                            format!("approving {} job {id}", system_label(jobs[i].system))
                        })?;
                    approved.push(i);
                    live.note(format!(
                        "approved {} job {id} of {} {} in the simulator, as the person it waits for",
                        system_label(jobs[i].system),
                        jobs[i].kind,
                        jobs[i].name
                    ))?;
                }
            }
            let open = rows.iter().filter(|r| !r.is_final()).count();
            let done = rest_applied && open == 0;
            let footer = if done {
                format!(
                    "every run has ended ({:.0} s)",
                    started.elapsed().as_secs_f32()
                )
            } else {
                format!(
                    "waiting for {open} of {} runs to end ({:.0} s, timeout {} s; Ctrl-C stops)",
                    rows.len(),
                    started.elapsed().as_secs_f32(),
                    timeout.as_secs()
                )
            };
            live.draw(&rows, &footer)?;
            if done {
                crate::outln!()?;
                let expected = |i: usize| {
                    twists
                        .iter()
                        .find(|(t, _)| *t == i)
                        .map(|(_, twist)| twist.expected())
                        .unwrap_or(Phase::Succeeded)
                };
                let sim_jobs = self
                    .control
                    .jobs()
                    .await
                    .context("reading the simulator's jobs")?;
                return Ok(rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| {
                        let system = jobs[i].system;
                        let id = row
                            .job
                            .as_deref()
                            .and_then(|j| j.trim().parse::<u64>().ok());
                        let sim = sim_jobs
                            .iter()
                            .find(|j| j.system == system && Some(j.id) == id)
                            .cloned();
                        Checked {
                            row,
                            system,
                            sim,
                            expected: expected(i),
                            approved: approved.contains(&i),
                        }
                    })
                    .collect());
            }
            if started.elapsed() > timeout {
                let layout = live.layout().clone();
                let unfinished: Vec<String> = rows
                    .iter()
                    .filter(|r| !r.is_final())
                    .map(|r| layout.line(r))
                    .collect();
                bail!(
                    "timed out after {} s; these runs have not ended:\n{}\n{}",
                    timeout.as_secs(),
                    layout.header(),
                    unfinished.join("\n")
                );
            }
        }
    }

    async fn apply_rest(
        &self,
        client: &kube::Client,
        jobs: &[Example],
        twists: &[(usize, Twist)],
        live: &mut Live,
    ) -> anyhow::Result<()> {
        let rest: Vec<Value> = jobs
            .iter()
            .enumerate()
            .filter(|(i, _)| !twists.iter().any(|(t, _)| t == i))
            .map(|(_, j)| j.doc.clone())
            .collect();
        apply_objects(client, &self.args.namespace, &rest).await?;
        live.note(format!("applied the other {} job manifests", rest.len()))?;
        Ok(())
    }

    /// Prints the check of every resource against the simulator and the create counts; fails
    /// when anything does not match.
    async fn summarize(&self, checked: &[Checked], color: bool) -> anyhow::Result<()> {
        let paint = |code: &str, text: String| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text
            }
        };
        let lines: Vec<[String; 5]> = checked
            .iter()
            .map(|c| {
                let sim = match &c.sim {
                    Some(job) => format!(
                        "{} job {}: {}{}",
                        system_label(job.system),
                        job.id,
                        state_label(job.system, &job.state),
                        if c.approved {
                            " (approved by the demo)"
                        } else {
                            ""
                        }
                    ),
                    None => format!(
                        "no {} job {}",
                        system_label(c.system),
                        c.row.job.as_deref().unwrap_or("(no job id)")
                    ),
                };
                let targets = match (c.row.ok, c.row.failed) {
                    (Some(ok), Some(failed)) => format!("{ok} ok, {failed} failed"),
                    _ => "-".to_owned(),
                };
                let phase = c.row.phase.map(Phase::as_str).unwrap_or("-").to_owned();
                [c.row.kind.clone(), c.row.name.clone(), phase, sim, targets]
            })
            .collect();
        let width = |i: usize| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [width(0), width(1), width(2), width(3), width(4)];
        crate::outln!("Summary: each resource's final phase, and its job in the simulator")?;
        let mut problems = Vec::new();
        for (c, line) in checked.iter().zip(&lines) {
            let mut text = String::from(" ");
            for (cell, w) in line.iter().zip(widths) {
                let pad = w.saturating_sub(cell.chars().count());
                text.push(' ');
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 1));
            }
            let verdict = if c.matches() {
                paint("32", "matches".to_owned())
            } else {
                paint("31", "MISMATCH".to_owned())
            };
            crate::outln!("{text}{verdict}")?;
            if !c.matches() {
                problems.push(format!(
                    "{} {}: phase {}, but the simulator says {}",
                    c.row.kind,
                    c.row.name,
                    line[2],
                    c.sim_phase()
                        .map(Phase::as_str)
                        .unwrap_or("not final / no such job")
                ));
            } else if c.row.phase != Some(c.expected) {
                crate::outln!("    note: the demo planned {} for it", c.expected.as_str())?;
            }
        }
        let calls = self
            .control
            .calls()
            .await
            .context("reading the simulator's call counts")?;
        let mut per_system: BTreeMap<System, u64> = BTreeMap::new();
        for c in checked {
            *per_system.entry(c.system).or_default() += 1;
        }
        let counts: Vec<String> = per_system
            .iter()
            .map(|(system, resources)| {
                let creates = calls.get(*system, "create");
                if creates != *resources {
                    problems.push(format!(
                        "{}: {creates} create calls for {resources} resources",
                        system_label(*system)
                    ));
                }
                format!("{} {creates}/{resources}", system_label(*system))
            })
            .collect();
        crate::outln!("Create calls / resources per system: {}", counts.join(", "))?;
        if problems.is_empty() {
            crate::outln!("{}", paint("1", ALL_MATCHED.to_owned()))?;
            Ok(())
        } else {
            for p in &problems {
                crate::outln!("{} {p}", paint("31", "MISMATCH".to_owned()))?;
            }
            bail!("{} problem(s) found; see the summary above", problems.len())
        }
    }

    /// Shows how to look further (and stays up until Ctrl-C with `--keep`), then stops what runs.
    /// A closed stdout (`bkops demo | head`) skips the waiting: nobody reads how to look further.
    async fn finish(mut self, mut result: anyhow::Result<()>, log: &Path) -> anyhow::Result<()> {
        let closed = |result: &anyhow::Result<()>| {
            result.as_ref().is_err_and(crate::output::is_stdout_closed)
        };
        if self.args.keep
            && !self.stop.is_cancelled()
            && !closed(&result)
            && let Some(cp) = &self.cp
        {
            match self.look_further(cp, log) {
                Ok(()) => self.stop.cancelled().await,
                Err(e) => result = result.and(Err(e.into())),
            }
        }
        if let Some((token, task)) = self.operator.take() {
            token.cancel();
            match tokio::time::timeout(Duration::from_secs(20), task).await {
                Ok(Ok(Err(e))) => tracing::warn!("the operator ended with an error: {e:#}"),
                Ok(Err(e)) => tracing::warn!("the operator task failed: {e}"),
                Err(_) => tracing::warn!("the operator did not stop in 20 s"),
                Ok(Ok(Ok(()))) => {}
            }
        }
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
        if let Some(cp) = self.cp.take() {
            if self.args.keep {
                let kubeconfig = cp.kubeconfig_path().to_path_buf();
                let dir = cp.detach();
                // The control plane is left running: say how to stop it, on stderr when stdout
                // is closed.
                let how = format!(
                    "\nThe simulator and the operator have stopped; the control plane still runs:\n  \
                     export KUBECONFIG={}\n  stop it with: {}",
                    kubeconfig.display(),
                    stop_command(&dir)
                );
                if let Err(e) = crate::outln!("{how}") {
                    crate::errln!("{how}");
                    result = result.and(Err(e.into()));
                }
            } else if let Err(e) = cp.stop().await {
                crate::errln!("bkops demo: stopping the control plane: {e}");
            }
        }
        if result.is_err() && !closed(&result) {
            crate::errln!("bkops demo: the operator's log is in {}", log.display());
        } else if !self.args.keep {
            let _ = std::fs::remove_file(log);
            if result.is_ok() {
                result = crate::outln!(
                    "Everything has stopped. `bkops demo --keep` leaves it running, to look with kubectl."
                )
                .map_err(Into::into);
            }
        }
        result
    }

    fn look_further(
        &self,
        cp: &ControlPlane,
        log: &Path,
    ) -> Result<(), crate::output::StdoutError> {
        let ns = &self.args.namespace;
        let kubectl = cp
            .kubectl_path()
            .map(|k| k.display().to_string())
            .unwrap_or_else(|| "kubectl".to_owned());
        let base = self
            .sim
            .as_ref()
            .map(|s| s.base_url().to_string())
            .unwrap_or_default();
        crate::outln!(
            "\nThe demo keeps running: this process serves the simulator and runs the operator, so \
             leave it in the foreground and use another terminal:\n\
             \n  export KUBECONFIG={kubeconfig}\
             \n  {kubectl} get bkops -n {ns}\
             \n  {kubectl} describe agentjobs -n {ns}\
             \n  {kubectl} get events -n {ns}\
             \n  {kubectl} wait --for=condition=Ready executejob --all -n {ns}\
             \n  curl -s {base}_sim/jobs          # the simulator's jobs\
             \n\nThe simulator: {base}  The operator's log: {log}\n\
             Ctrl-C stops the simulator and the operator; the control plane keeps running until \
             `{stop}`.",
            kubeconfig = cp.kubeconfig_path().display(),
            log = log.display(),
            stop = stop_command(cp.dir()),
        )
    }
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// The rows of the table, in the order of `jobs`.
async fn fetch_rows(client: &kube::Client, ns: &str, jobs: &[Example]) -> anyhow::Result<Vec<Row>> {
    let mut statuses: BTreeMap<(String, String), Option<JobStatus>> = BTreeMap::new();
    for kind in JOB_KINDS {
        if !jobs.iter().any(|j| j.kind == kind) {
            continue;
        }
        let Some(resource) = api_resource(kind) else {
            continue;
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        let list = api
            .list(&Default::default())
            .await
            .with_context(|| format!("listing {kind}s in {ns}"))?;
        for obj in list {
            let status = obj
                .data
                .get("status")
                .and_then(|s| serde_json::from_value::<JobStatus>(s.clone()).ok());
            statuses.insert(
                (kind.to_owned(), obj.metadata.name.unwrap_or_default()),
                status,
            );
        }
    }
    Ok(jobs
        .iter()
        .map(|j| {
            let status = statuses
                .get(&(j.kind.clone(), j.name.clone()))
                .and_then(Option::as_ref);
            Row::from_status(&j.kind, &j.name, status)
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn repo_examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
    }

    #[test]
    fn args_parse() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["demo"]).unwrap();
        assert!(!cli.demo.keep);
        assert_eq!(cli.demo.examples, PathBuf::from("examples"));
        assert_eq!(cli.demo.namespace, "bkops-demo");
        assert_eq!(cli.demo.timeout_seconds, 180);
        assert!(Cli::try_parse_from(["demo", "--dir", "/x"]).is_err());
        let cli =
            Cli::try_parse_from(["demo", "--keep", "--dir", "/x", "--job-seconds", "1"]).unwrap();
        assert_eq!(keep_dir(&cli.demo).unwrap(), PathBuf::from("/x"));
    }

    #[test]
    fn loads_the_repository_examples_without_connections() {
        let (jobs, skipped) = load_examples(&repo_examples()).unwrap();
        assert_eq!(jobs.len(), 8);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(
            skipped
                .iter()
                .all(|s| s.contains("Secret") || s.contains("BkConnection"))
        );
        for system in System::ALL {
            assert_eq!(jobs.iter().filter(|j| j.system == system).count(), 2);
        }
        let twists = choose_twists(&jobs);
        assert_eq!(twists.len(), 2);
        let (fail, wait) = (&jobs[twists[0].0], &jobs[twists[1].0]);
        assert_eq!(
            (fail.kind.as_str(), twists[0].1),
            ("AgentJob", Twist::FailTarget)
        );
        assert_eq!(
            (wait.kind.as_str(), twists[1].1),
            ("ExecuteJob", Twist::WaitForUser)
        );
    }

    #[test]
    fn a_job_with_retries_never_gets_failed_targets() {
        let doc = |kind: &str, name: &str, retry: bool| Example {
            file: "f.yaml".into(),
            kind: kind.into(),
            name: name.into(),
            system: system_of(kind).unwrap(),
            doc: if retry {
                serde_json::json!({"spec": {"retry": {"limit": 1}}})
            } else {
                serde_json::json!({"spec": {}})
            },
        };
        let jobs = [doc("ProcessJob", "a", true), doc("ProcessJob", "b", false)];
        assert_eq!(choose_twists(&jobs), vec![(1, Twist::FailTarget)]);
        assert!(choose_twists(&[doc("ProcessJob", "a", true)]).is_empty());
    }

    #[test]
    fn missing_or_empty_folders_are_clear_errors() {
        let err = load_examples(Path::new("/nonexistent/examples")).unwrap_err();
        assert!(format!("{err:#}").contains("--examples"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            "kind: Secret\nmetadata: {name: s}\n",
        )
        .unwrap();
        let err = load_examples(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no job manifests"), "{err}");
    }

    #[test]
    fn simulator_states() {
        assert_eq!(
            simulator_phase(System::Gsekit, "succeeded"),
            Some(Phase::Succeeded)
        );
        assert_eq!(simulator_phase(System::Gsekit, "running"), None);
        assert_eq!(
            simulator_phase(System::Nodeman, "PART_FAILED"),
            Some(Phase::Failed)
        );
        assert_eq!(simulator_phase(System::Nodeman, "TERMINATED"), None);
        assert_eq!(
            simulator_phase(System::Bkflow, "REVOKED"),
            Some(Phase::Cancelled)
        );
        assert_eq!(simulator_phase(System::Job, "3"), Some(Phase::Succeeded));
        assert_eq!(simulator_phase(System::Job, "7"), None);
        assert_eq!(state_label(System::Job, "3"), "3 SUCCESS");
        assert_eq!(state_label(System::Bkflow, "FINISHED"), "FINISHED");
    }

    #[test]
    fn a_kept_folder_is_only_emptied_when_it_is_a_demo_one() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("demo");
        reset_keep_dir(&kept).unwrap(); // missing: nothing to do
        std::fs::create_dir(&kept).unwrap();
        std::fs::write(kept.join("notes.txt"), "mine").unwrap();
        assert!(reset_keep_dir(&kept).is_err());
        std::fs::write(kept.join("kubeconfig"), "").unwrap();
        std::fs::write(kept.join("etcd.pid"), format!("{}\n", std::process::id())).unwrap();
        let err = reset_keep_dir(&kept).unwrap_err();
        assert!(err.to_string().contains("still running"), "{err}");
        std::fs::write(kept.join("etcd.pid"), "999999999\n").unwrap();
        reset_keep_dir(&kept).unwrap();
        assert!(!kept.exists());
    }
}
