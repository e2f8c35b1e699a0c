//! A deterministic simulation of the exactly-once protocol: the real run lifecycle
//! (`bkops::run::act`) against in-memory fakes (`fakes.rs`), no API server.
//!
//! A seeded scheduler runs two operator instances against one store and one BlueKing. At every
//! step it does one of: advance a reconcile to its next await point, start a reconcile from an
//! instance's cache, deliver a watch event late (caches lag, each object's in order, objects out
//! of order), advance the clock, kill an instance (its reconciles stop at whatever await point
//! they reached and its memory is lost; it restarts with a fresh cache), or edit, delete or
//! re-create an object. A re-created object is a new incarnation (a new uid) of the same name,
//! made from the manifest last applied (sometimes the first one, or with a fresh rerunToken),
//! once the old one is gone; sometimes deleted and re-created in one go (Argo CD
//! `Replace=true`). Some objects carry `recreatePolicy: Run`. BlueKing and the store inject
//! faults: a create committed whose answer is lost, a reset before the commit, 429, 5xx,
//! slowness past the gateway's timeout, failed status writes, run record writes that time out
//! before or after they commit, incomplete searches. Several objects share a system, a creator,
//! a plan or template, and a time window.
//!
//! Checked after every step: at most one create per run key; no create without its intent
//! landed; no create while an earlier create of the same object is unknown to it (an unclear
//! create repeated); no run follows a job created for another run; at most one job per
//! fingerprint (kind, namespace, name, job-defining spec, rerunToken) unless the object says
//! `recreatePolicy: Run` (a re-created object does not run again). Then faults stop and the
//! calm phase checks that every object, re-created ones too, reaches a final phase or
//! `Unknown`.
//!
//! `BKOPS_SIM_SEEDS=N` runs N seeds instead of the default; `BKOPS_SIM_SEED=S` replays one;
//! `BKOPS_SIM_KEEP_GOING=1` runs every seed and reports all that fail; `BKOPS_SIM_TRACE=1`
//! prints every step, intent, create, record write, re-creation and kill.

mod fakes;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bkops::api::common::Phase;
use bkops::api::{AgentJob, ExecuteJob, ProcessJob, Taskflow};
use bkops::run::act::{Error, Lifecycle, Next, NoCounters, RunConfig, reconcile};
use bkops::run::reason::ADOPTED_EARLIER_RUN;
use fakes::{Intents, Shared, SimClock, SimConnections, SimStore, World, lock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

type Life = Lifecycle<SimStore, SimConnections>;
type Reconcile = Pin<Box<dyn Future<Output = Result<Next, Error>>>>;

/// Seeds run by default: enough to cover every await point with kills, in seconds.
const DEFAULT_SEEDS: u64 = 300;
/// Steps of the chaos phase per seed.
const STEPS: usize = 600;

/// One operator process.
struct Instance {
    life: Arc<Life>,
    cache: Arc<Mutex<BTreeMap<String, Value>>>,
    /// The resourceVersion of the last watch event the cache took, by namespace (a deletion
    /// too): a watch never goes back.
    seen: BTreeMap<String, u64>,
    /// In-flight reconciles by namespace, with the await point each stopped at.
    inflight: BTreeMap<String, (Reconcile, &'static str)>,
}

impl Instance {
    fn start(world: &Shared, grace: Duration) -> Self {
        let cache: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
        // A (re)started process lists every object: its cache starts current.
        let seen = {
            let w = lock(world);
            *cache.lock().unwrap_or_else(|e| e.into_inner()) = w.objects.clone();
            w.versions.keys().map(|ns| (ns.clone(), w.rv)).collect()
        };
        let intents: Intents = Arc::default();
        let store = SimStore {
            world: world.clone(),
            cache: cache.clone(),
            intents: intents.clone(),
        };
        let config = RunConfig {
            resolve_grace: grace,
            ..RunConfig::default()
        };
        let life = Lifecycle::new(
            store,
            SimConnections(world.clone(), intents),
            config,
            Arc::new(NoCounters),
            Arc::new(SimClock(world.clone())),
        );
        Instance {
            life: Arc::new(life),
            cache,
            seen,
            inflight: BTreeMap::new(),
        }
    }

    /// The cache relisted: it shows every object as it is now.
    fn relist(&mut self, world: &Shared) {
        let w = lock(world);
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = w.objects.clone();
        self.seen = w.versions.keys().map(|ns| (ns.clone(), w.rv)).collect();
    }

    /// Starts a reconcile of the cached copy of `ns`'s object, as the controller does: wait for
    /// the cache to show this process's last write, then decide and act.
    fn reconcile(&mut self, ns: &str) {
        if self.inflight.contains_key(ns) {
            return;
        }
        let Some(obj) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ns)
            .cloned()
        else {
            return;
        };
        let life = self.life.clone();
        let fut: Reconcile = Box::pin(async move {
            let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
            let kind: &'static str = match kind.as_str() {
                "ExecuteJob" => "ExecuteJob",
                "ProcessJob" => "ProcessJob",
                "AgentJob" => "AgentJob",
                _ => "Taskflow",
            };
            match kind {
                "ExecuteJob" => {
                    let typed: ExecuteJob =
                        serde_json::from_value(obj).expect("a valid job object");
                    reconcile(&life, typed, kind).await
                }
                "AgentJob" => {
                    let typed: AgentJob = serde_json::from_value(obj).expect("a valid job object");
                    reconcile(&life, typed, kind).await
                }
                "ProcessJob" => {
                    let typed: ProcessJob =
                        serde_json::from_value(obj).expect("a valid job object");
                    reconcile(&life, typed, kind).await
                }
                _ => {
                    let typed: Taskflow = serde_json::from_value(obj).expect("a valid job object");
                    reconcile(&life, typed, kind).await
                }
            }
        });
        self.inflight.insert(ns.to_owned(), (fut, "not started"));
    }

    /// Advances `ns`'s reconcile to its next await point; `true` when it finished.
    fn step(&mut self, world: &Shared, ns: &str) -> bool {
        let Some((fut, at)) = self.inflight.get_mut(ns) else {
            return true;
        };
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(_) => {
                self.inflight.remove(ns);
                true
            }
            Poll::Pending => {
                *at = lock(world).at;
                false
            }
        }
    }
}

/// The manifest of `ns`'s object as a person re-creates it: mostly as last applied (same
/// fingerprint), sometimes as first created, sometimes with a fresh rerunToken.
fn recreated_manifest(
    w: &World,
    ns: &str,
    rng: &mut StdRng,
    token: String,
) -> (Value, &'static str) {
    let m = &w.manifests[ns];
    match rng.random_range(0..100) {
        0..=74 => (m.applied.clone(), "as last applied"),
        75..=84 => (m.original.clone(), "as first created"),
        _ => {
            let mut fresh = m.applied.clone();
            fresh["spec"]["rerunToken"] = json!(token);
            (fresh, "with a fresh rerunToken")
        }
    }
}

fn execute_job(plan: i64) -> Value {
    json!({
        "apiVersion": "bkops.io/v1alpha1", "kind": "ExecuteJob",
        "metadata": {},
        "spec": {
            "connectionRef": {"name": "bk"},
            "bkScopeType": "biz", "bkScopeId": "2", "jobPlanId": plan,
            "deletionPolicy": "Cancel",
        },
    })
}

fn process_job(process: &str, cancel_policy: bool) -> Value {
    let mut obj = json!({
        "apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob",
        "metadata": {},
        "spec": {
            "connectionRef": {"name": "bk"},
            "bkBizId": 2, "jobObject": "process", "jobAction": "restart",
            "expressionScope": {
                "bkSetEnv": "3", "bkSetName": "web", "bkModuleName": process,
                "bkProcessName": process,
            },
        },
    });
    if cancel_policy {
        obj["spec"]["deletionPolicy"] = json!("Cancel");
    }
    obj
}

fn agent_job(hosts: &[i64]) -> Value {
    json!({
        "apiVersion": "bkops.io/v1alpha1", "kind": "AgentJob",
        "metadata": {},
        "spec": {
            "connectionRef": {"name": "bk"},
            "jobType": "RESTART_AGENT", "bkBizId": [2], "bkHostId": hosts,
            "deletionPolicy": "Cancel",
        },
    })
}

fn taskflow(template: i64) -> Value {
    json!({
        "apiVersion": "bkops.io/v1alpha1", "kind": "Taskflow",
        "metadata": {},
        "spec": {
            "connectionRef": {"name": "bk"},
            "spaceId": 1, "templateId": template, "creator": "admin",
        },
    })
}

/// What one case covered.
#[derive(Default)]
struct Coverage {
    steps: u64,
    /// Kills of an instance with reconciles in flight, by the await point each stopped at.
    crash_points: BTreeMap<&'static str, u64>,
    creates: u64,
    unknown: u64,
    not_sent: u64,
    orphans_adopted: u64,
    orphans_claimed: u64,
    /// Jobs the current runs of two objects followed at once, and the seeds.
    shared_jobs: u64,
    shared_jobs_seeds: Vec<u64>,
    /// Runs with a job that had no record when their object went, and the seeds.
    unrecorded: u64,
    unrecorded_seeds: Vec<u64>,
    /// Seeds where a run adopted a job a record claims.
    orphans_claimed_seeds: Vec<u64>,
    final_phases: BTreeMap<String, u64>,
    /// Re-creations, by how the manifest came.
    recreations: BTreeMap<&'static str, u64>,
    /// Re-creations, by what their fingerprint had when they were created.
    recreated_found: BTreeMap<&'static str, u64>,
    /// Re-created objects that adopted an earlier run from its record: with a job id (a create
    /// avoided), or of unknown outcome (`Unknown`, for a person).
    adopted_record_job: u64,
    adopted_record_unknown: u64,
    /// Jobs made by re-created objects: with `recreatePolicy: Run`, or not (no record of the
    /// same fingerprint: a fresh token, or the earlier object made no job).
    recreated_creates_run_policy: u64,
    recreated_creates: u64,
}

impl Coverage {
    fn add(&mut self, other: Coverage) {
        self.steps += other.steps;
        for (k, v) in other.crash_points {
            *self.crash_points.entry(k).or_default() += v;
        }
        self.creates += other.creates;
        self.unknown += other.unknown;
        self.not_sent += other.not_sent;
        self.orphans_adopted += other.orphans_adopted;
        self.orphans_claimed += other.orphans_claimed;
        self.shared_jobs += other.shared_jobs;
        self.shared_jobs_seeds.extend(other.shared_jobs_seeds);
        self.unrecorded += other.unrecorded;
        self.unrecorded_seeds.extend(other.unrecorded_seeds);
        self.orphans_claimed_seeds
            .extend(other.orphans_claimed_seeds);
        for (k, v) in other.final_phases {
            *self.final_phases.entry(k).or_default() += v;
        }
        for (k, v) in other.recreations {
            *self.recreations.entry(k).or_default() += v;
        }
        for (k, v) in other.recreated_found {
            *self.recreated_found.entry(k).or_default() += v;
        }
        self.adopted_record_job += other.adopted_record_job;
        self.adopted_record_unknown += other.adopted_record_unknown;
        self.recreated_creates_run_policy += other.recreated_creates_run_policy;
        self.recreated_creates += other.recreated_creates;
    }
}

/// What a case runs against.
#[derive(Clone, Copy)]
struct Setup {
    /// The store checks resourceVersion on writes.
    compare_and_swap: bool,
    /// The store lists run records to the re-creation guard.
    records_visible: bool,
}

const FAITHFUL: Setup = Setup {
    compare_and_swap: true,
    records_visible: true,
};

/// Runs one case; `Err` names the first broken invariant.
fn case(seed: u64, setup: Setup) -> Result<Coverage, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let world: Shared = Arc::new(Mutex::new(World::new(seed)));
    lock(&world).compare_and_swap = setup.compare_and_swap;
    lock(&world).records_visible = setup.records_visible;
    let grace = Duration::from_secs(60);
    let mut cov = Coverage::default();

    // Objects sharing a system, a creator and a plan or template, created in the same window.
    let n = rng.random_range(3..6);
    let mut namespaces = Vec::new();
    for i in 0..n {
        let ns = format!("ns{i}");
        let mut obj = match rng.random_range(0..4) {
            0 => execute_job(1000 + rng.random_range(0..2)),
            1 => taskflow(4 + rng.random_range(0..2)),
            2 => agent_job(if rng.random_bool(0.5) {
                &[101, 102]
            } else {
                &[103]
            }),
            _ => process_job(
                ["nginx", "redis"][rng.random_range(0..2)],
                rng.random_bool(0.5),
            ),
        };
        if rng.random_bool(0.2) {
            obj["spec"]["recreatePolicy"] = json!("Run");
        }
        lock(&world).create(&ns, obj);
        namespaces.push(ns);
    }
    let mut instances = [
        Instance::start(&world, grace),
        Instance::start(&world, grace),
    ];

    let pick = |rng: &mut StdRng, v: &[String]| v[rng.random_range(0..v.len())].clone();
    for _ in 0..STEPS {
        cov.steps += 1;
        let i = rng.random_range(0..2);
        // What this step did, for the trace.
        let mut did = String::new();
        match rng.random_range(0..100) {
            // Advance a reconcile.
            0..=54 => {
                let running: Vec<String> = instances[i].inflight.keys().cloned().collect();
                if !running.is_empty() {
                    let ns = pick(&mut rng, &running);
                    let done = instances[i].step(&world, &ns);
                    did = if done {
                        format!("{ns}: reconcile done")
                    } else {
                        format!("{ns}: at {}", lock(&world).at)
                    };
                }
            }
            // Start a reconcile from the cache.
            55..=69 => {
                let ns = pick(&mut rng, &namespaces);
                instances[i].reconcile(&ns);
                did = format!("{ns}: reconcile from the cache");
            }
            // Deliver a watch event: a later version of one object, maybe not the latest.
            70..=81 => {
                let ns = pick(&mut rng, &namespaces);
                deliver(&world, &mut instances[i], &ns, &mut rng);
                did = format!("{ns}: watch event");
            }
            // Time passes: mostly seconds, sometimes past the grace window.
            82..=90 => {
                let secs = if rng.random_bool(0.1) {
                    rng.random_range(60..200)
                } else {
                    rng.random_range(1..15)
                };
                lock(&world).advance(Duration::from_secs(secs));
                did = format!("clock +{secs}s");
            }
            // A kill: the reconciles stop where they are, memory is lost, the cache relisted.
            91..=94 => {
                for (ns, (_, at)) in std::mem::take(&mut instances[i].inflight) {
                    if trace() {
                        eprintln!("kill inst {i}: its reconcile of {ns} stops at {at}");
                    }
                    *cov.crash_points.entry(at).or_default() += 1;
                }
                instances[i] = Instance::start(&world, grace);
                did = "killed and restarted".to_owned();
            }
            // A person edits an object (a new run; tokens are never reused).
            95..=97 => {
                let ns = pick(&mut rng, &namespaces);
                lock(&world).edit(&ns, format!("t{}", cov.steps));
                did = format!("{ns}: edited (rerunToken t{})", cov.steps);
            }
            // A person deletes an object, deletes and re-creates it in one go (Argo CD
            // Replace=true: created again once the old one is gone), or re-creates a deleted one.
            _ => {
                let ns = pick(&mut rng, &namespaces);
                let mut w = lock(&world);
                if !w.objects.contains_key(&ns) {
                    if !w.replacing.contains(&ns) && rng.random_bool(0.5) {
                        let (manifest, how) =
                            recreated_manifest(&w, &ns, &mut rng, format!("t{}", cov.steps));
                        w.recreate(&ns, manifest, how).expect("the name is free");
                    }
                } else {
                    // People mostly delete a job that ran (and re-create it from git).
                    let ran = w.objects[&ns].pointer("/status/run").is_some();
                    if ran || rng.random_bool(0.3) {
                        if rng.random_bool(0.4) {
                            w.delete(&ns);
                            did = format!("{ns}: deleted");
                        } else if rng.random_bool(0.25) {
                            w.delete(&ns);
                            did = format!("{ns}: deleted, to be re-created once gone");
                            w.replacing.insert(ns);
                        }
                    }
                }
            }
        }
        lock(&world).replace_gone();
        let mut w = lock(&world);
        if trace() {
            let phases: Vec<String> = namespaces
                .iter()
                .map(|ns| {
                    let o = w.objects.get(ns);
                    let p = |path: &str| {
                        o.and_then(|o| o.pointer(path))
                            .map(|v| v.to_string())
                            .unwrap_or_default()
                    };
                    let history: Vec<String> = o
                        .and_then(|o| o.pointer("/status/history"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|h| h.get("jobId").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect();
                    format!(
                        "{ns}{}={}/{}/{}{}",
                        o.and_then(|o| o.pointer("/metadata/uid"))
                            .and_then(Value::as_str)
                            .map(|uid| format!(
                                "[{}{}]",
                                uid,
                                if o.is_some_and(|o| o["metadata"]
                                    .get("deletionTimestamp")
                                    .is_some())
                                {
                                    ",deleted"
                                } else {
                                    ""
                                }
                            ))
                            .unwrap_or_default(),
                        p("/status/phase"),
                        p("/status/run/key"),
                        p("/status/run/jobId"),
                        if history.is_empty() {
                            String::new()
                        } else {
                            format!(" history{history:?}")
                        }
                    )
                })
                .collect();
            eprintln!(
                "step {} inst {i} {did} t={} {}",
                cov.steps,
                w.now.format("%H:%M:%S"),
                phases.join(" ")
            );
        }
        w.check_records();
        if let Some(v) = w.violations.first() {
            return Err(format!("{v} (step {})", cov.steps));
        }
    }

    // Calm: no faults, no kills, no edits; caches catch up, every object is looked at, time
    // passes. Every object must reach a final phase or Unknown.
    lock(&world).faults = false;
    for _ in 0..200 {
        for (i, inst) in instances.iter_mut().enumerate() {
            inst.relist(&world);
            for ns in &namespaces {
                inst.reconcile(ns);
            }
            let running: Vec<String> = inst.inflight.keys().cloned().collect();
            for ns in running {
                let mut polls = 0;
                while !inst.step(&world, &ns) {
                    if trace() {
                        eprintln!("calm inst {i} {ns}: at {}", lock(&world).at);
                    }
                    polls += 1;
                    if polls > 10_000 {
                        return Err(format!("{ns}: a reconcile never finished"));
                    }
                }
            }
        }
        lock(&world).advance(Duration::from_secs(10));
        lock(&world).replace_gone();
        let mut w = lock(&world);
        if trace() {
            let jobs: Vec<String> = w
                .jobs
                .iter()
                .map(|j| format!("{}:{}", j.id, j.key))
                .collect();
            let objs: Vec<String> = w
                .objects
                .iter()
                .map(|(ns, o)| format!("{ns}={}", o.get("status").cloned().unwrap_or_default()))
                .collect();
            eprintln!(
                "calm t={} jobs {jobs:?}\n  {}",
                w.now.format("%H:%M:%S"),
                objs.join("\n  ")
            );
        }
        w.check_records();
        if let Some(v) = w.violations.first() {
            return Err(format!("{v} (calm phase)"));
        }
        if settled(&w) {
            break;
        }
    }
    let w = lock(&world);
    for (ns, obj) in &w.objects {
        let phase = obj.pointer("/status/phase").and_then(Value::as_str);
        // A deleted object whose run is Unknown waits for a person; any other is gone.
        let deleting = obj["metadata"].get("deletionTimestamp").is_some();
        let settled = match phase {
            Some("Unknown") => true,
            Some("Succeeded" | "Failed" | "Cancelled") => !deleting,
            _ => false,
        };
        if !settled {
            let status = obj.get("status").cloned().unwrap_or_default();
            return Err(format!(
                "{ns}: not settled once faults stopped: phase {phase:?}, status {status}"
            ));
        }
        *cov.final_phases
            .entry(phase.unwrap_or_default().to_owned())
            .or_default() += 1;
        if phase == Some(Phase::Unknown.as_str()) {
            cov.unknown += 1;
        }
    }
    if let Some(ns) = w.replacing.iter().find(|ns| !w.objects.contains_key(*ns)) {
        return Err(format!("{ns}: deleted to be re-created, never re-created"));
    }
    cov.creates = w.jobs.len() as u64;
    cov.not_sent = w.not_sent;
    cov.orphans_adopted = w.orphans_adopted.len() as u64;
    cov.orphans_claimed = w.orphans_claimed.len() as u64;
    if cov.orphans_claimed > 0 {
        cov.orphans_claimed_seeds.push(seed);
    }
    cov.unrecorded = w.unrecorded.len() as u64;
    if cov.unrecorded > 0 {
        cov.unrecorded_seeds.push(seed);
    }
    cov.shared_jobs = w.shared_jobs.len() as u64;
    if cov.shared_jobs > 0 {
        cov.shared_jobs_seeds.push(seed);
    }
    for r in &w.recreations {
        *cov.recreations.entry(r.how).or_default() += 1;
        let what = match (r.run_policy, r.record, r.job) {
            (true, _, _) => "recreatePolicy Run",
            (false, true, true) => "record and job",
            (false, true, false) => "record, no job",
            (false, false, true) => "job, NO RECORD",
            (false, false, false) => "nothing",
        };
        *cov.recreated_found.entry(what).or_default() += 1;
    }
    // Each incarnation that adopted a record, once, with whether the record named a job.
    let mut adopted: BTreeMap<&str, bool> = BTreeMap::new();
    for (_, v) in w.versions.values().flatten() {
        let Some(v) = v else { continue };
        if v.pointer("/status/run/reason").and_then(Value::as_str) == Some(ADOPTED_EARLIER_RUN) {
            let uid = v
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let job = v.pointer("/status/run/jobId").is_some();
            *adopted.entry(uid).or_default() |= job;
        }
    }
    cov.adopted_record_job = adopted.values().filter(|j| **j).count() as u64;
    cov.adopted_record_unknown = adopted.values().filter(|j| !**j).count() as u64;
    for r in &w.recreations {
        for job in w.jobs.iter().filter(|j| j.uid == r.uid) {
            if job.recreate_run {
                cov.recreated_creates_run_policy += 1;
            } else {
                cov.recreated_creates += 1;
            }
        }
    }
    Ok(cov)
}

/// Whether every object is final or Unknown (deleted ones gone, and re-created where they were
/// to be).
fn settled(w: &World) -> bool {
    w.replacing.iter().all(|ns| w.objects.contains_key(ns))
        && w.objects.values().all(|obj| {
            let phase = obj.pointer("/status/phase").and_then(Value::as_str);
            let run_key = obj.pointer("/status/run/key");
            let deleting = obj["metadata"].get("deletionTimestamp").is_some();
            let done = match phase {
                Some("Unknown") => true,
                Some("Succeeded" | "Failed" | "Cancelled") => !deleting,
                _ => false,
            };
            done && run_key.is_some()
                && obj.pointer("/status/observedGeneration") == obj.pointer("/metadata/generation")
        })
}

/// Moves `inst`'s cache of `ns` to a later version of the object (or its deletion, or a later
/// incarnation), in order: never back to one it has seen past.
fn deliver(world: &Shared, inst: &mut Instance, ns: &str, rng: &mut StdRng) {
    let w = lock(world);
    let Some(versions) = w.versions.get(ns) else {
        return;
    };
    let seen = inst.seen.get(ns).copied().unwrap_or(0);
    let newer: Vec<&(u64, Option<Value>)> = versions.iter().filter(|(rv, _)| *rv > seen).collect();
    if newer.is_empty() {
        return;
    }
    let (rv, version) = newer[rng.random_range(0..newer.len())];
    inst.seen.insert(ns.to_owned(), *rv);
    let mut cache = inst.cache.lock().unwrap_or_else(|e| e.into_inner());
    match version {
        None => {
            cache.remove(ns);
        }
        Some(v) => {
            cache.insert(ns.to_owned(), v.clone());
        }
    }
}

fn trace() -> bool {
    std::env::var_os("BKOPS_SIM_TRACE").is_some()
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("BKOPS_SIM_SEED") {
        return vec![seed.parse().expect("BKOPS_SIM_SEED is a number")];
    }
    let n = std::env::var("BKOPS_SIM_SEEDS")
        .ok()
        .map(|n| n.parse().expect("BKOPS_SIM_SEEDS is a number"))
        .unwrap_or(DEFAULT_SEEDS);
    (1..=n).collect()
}

#[test]
fn exactly_once_holds_under_kills_lagging_caches_and_faults() {
    let seeds = seeds();
    // BKOPS_SIM_KEEP_GOING: run every seed, then report all that failed.
    let keep_going = std::env::var_os("BKOPS_SIM_KEEP_GOING").is_some();
    let mut failed = Vec::new();
    let mut total = Coverage::default();
    for &seed in &seeds {
        match case(seed, FAITHFUL) {
            Ok(c) => total.add(c),
            Err(e) if keep_going => {
                println!("seed {seed}: {e}");
                failed.push(seed);
            }
            Err(e) => {
                panic!("seed {seed}: {e}\nreplay: BKOPS_SIM_SEED={seed} cargo test --test protocol")
            }
        }
    }
    let points: BTreeSet<&str> = total.crash_points.keys().copied().collect();
    println!(
        "{} seeds, {} steps, {} creates ({} given up unsent); kills at {} await points ({} reconciles killed): {:?}; final phases {:?}; \
         runs that adopted the job of an object deleted since by a content search: {} ({} of them a job a run record claims for another run, seeds {:?}); \
         jobs the current runs of two objects followed at once: {} (seeds {:?}); \
         runs with a job that had no run record when their object went: {} (seeds {:?})",
        seeds.len(),
        total.steps,
        total.creates,
        total.not_sent,
        points.len(),
        total.crash_points.values().sum::<u64>(),
        total.crash_points,
        total.final_phases,
        total.orphans_adopted,
        total.orphans_claimed,
        &total.orphans_claimed_seeds[..total.orphans_claimed_seeds.len().min(10)],
        total.shared_jobs,
        &total.shared_jobs_seeds[..total.shared_jobs_seeds.len().min(10)],
        total.unrecorded,
        &total.unrecorded_seeds[..total.unrecorded_seeds.len().min(10)],
    );
    println!(
        "re-creations {:?} ({} in all), by what their fingerprint had then: {:?}; re-created objects that adopted an earlier run from its record: {} with its job (creates avoided), {} of unknown outcome (Unknown); \
         jobs made by re-created objects: {} with recreatePolicy Run, {} without (no record of the same fingerprint)",
        total.recreations,
        total.recreations.values().sum::<u64>(),
        total.recreated_found,
        total.adopted_record_job,
        total.adopted_record_unknown,
        total.recreated_creates_run_policy,
        total.recreated_creates,
    );
    assert!(
        failed.is_empty(),
        "{} seeds failed: {failed:?}",
        failed.len()
    );
    if seeds.len() as u64 >= DEFAULT_SEEDS {
        // The cases must reach the protocol's critical points, not only idle ones.
        for at in [
            "bk.ticket",
            "bk.create.sent",
            "bk.create.answered",
            "store.patch_status.sent",
            "store.patch_status.answered",
            "bk.search",
            "bk.start.answered",
        ] {
            assert!(points.contains(at), "no kill at {at}: {points:?}");
        }
        assert!(total.unknown > 0, "no case ended Unknown: faults too mild");
        // Re-creations must reach the guard both ways, and both kinds of re-creation happen.
        assert!(
            total.recreations.len() == 4,
            "not every kind of re-creation: {:?}",
            total.recreations
        );
        assert!(
            total.adopted_record_job > 0,
            "no re-created object adopted a job"
        );
        assert!(
            total.adopted_record_unknown > 0,
            "no re-created object adopted a run of unknown outcome"
        );
        assert!(
            total.recreated_creates_run_policy > 0,
            "no re-created object with recreatePolicy Run ran"
        );
    }
}

#[test]
fn the_simulation_catches_a_re_created_object_that_runs_again() {
    // The run records are what keep a re-created object from running its job again. With a
    // store whose list of records comes back empty (the guard finds nothing), some seed among
    // the first hundred must create a second job for a fingerprint; if none does, the
    // simulation is too weak to guard the records.
    let setup = Setup {
        records_visible: false,
        ..FAITHFUL
    };
    for seed in 1..=100 {
        if let Err(e) = case(seed, setup) {
            println!("without run records, seed {seed}: {e}");
            assert!(e.contains("fingerprint"), "seed {seed}: {e}");
            return;
        }
    }
    panic!("no invariant broke without run records");
}

#[test]
fn the_simulation_catches_writes_without_the_resource_version_precondition() {
    // The fence is what keeps two instances (or a stale cache) from both submitting. With a
    // store that ignores resourceVersion, some seed among the first hundred must break an
    // invariant; if none does, the simulation is too weak to guard the fence.
    let setup = Setup {
        compare_and_swap: false,
        ..FAITHFUL
    };
    let broken = (1..=100).find_map(|seed| case(seed, setup).err().map(|e| (seed, e)));
    let (seed, e) = broken.expect("no invariant broke without compare-and-swap");
    println!("without compare-and-swap, seed {seed}: {e}");
    assert!(
        e.contains("created") || e.contains("follows job"),
        "seed {seed}: {e}"
    );
}
