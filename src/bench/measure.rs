//! One run of the benchmark: N job objects created at once and watched until final, once followed
//! by the bare controller and once by the operator, and what the follower, the API server and the
//! simulator did meanwhile, read into a [`RunReport`]. Both are measured by the same code.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::Mutex;

use super::Num;
use super::args::BenchArgs;
use super::cluster::{apply, namespace};
use super::follower::{Follower, Role};
use super::probe::{self, Sample, process_usage, quantile, samples};
use super::report::{BareFigures, KindFigures, LANES, LIMIT_WAIT, RunReport, SLOT_WAIT};
use super::workload::{self, KINDS, resource};
use crate::api::common::Phase;
use crate::controller::metrics::WAIT_CLASSES;
use crate::local::ControlPlane;
use crate::sim::{CallCounts, SimControl, System};

/// CPU seconds used so far by `pids`.
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| process_usage(*p))
        .map(|(_, cpu)| cpu)
        .sum()
}

async fn apiserver_requests(client: &Client) -> anyhow::Result<Vec<Sample>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    Ok(samples(&text, "apiserver_request_total"))
}

/// Requests by `VERB resource[/subresource]` between two scrapes.
fn request_diff(before: &[Sample], after: &[Sample]) -> BTreeMap<String, f64> {
    let key = |s: &Sample| {
        let sub = s.label("subresource");
        let res = if sub.is_empty() {
            s.label("resource").to_owned()
        } else {
            format!("{}/{sub}", s.label("resource"))
        };
        // Kept as reported: 1.20 labels a GET of one custom resource LIST.
        format!("{} {res}", s.label("verb"))
    };
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for s in after {
        *out.entry(key(s)).or_default() += s.value;
    }
    for s in before {
        *out.entry(key(s)).or_default() -= s.value;
    }
    out.retain(|_, v| *v > 0.0);
    out
}

/// Per object: when the bench asked for it, and when it saw it final.
#[derive(Clone, Debug, Default)]
struct Seen {
    created: Option<DateTime<Utc>>,
    /// When the create call answered.
    create_answered: Option<DateTime<Utc>>,
    /// When the bench's own watch first saw it (as created, before any status).
    watched: Option<DateTime<Utc>>,
    /// `status.run.intentAt` (the follower's clock, the same machine's) of the final status.
    intent_at: Option<DateTime<Utc>>,
    kind: &'static str,
    job_id: Option<String>,
    final_at: Option<DateTime<Utc>>,
    phase: Option<Phase>,
}

/// One run of N: the bare controller over N objects in a fresh namespace (unless
/// `--skip-bare`), then the operator over N objects in another, each measured by [`measure`];
/// the operator's report carries the bare controller's figures.
pub(super) async fn run_one(
    args: &BenchArgs,
    cp: &ControlPlane,
    admin: &Client,
    sim_base: &str,
    control: &SimControl,
    n: usize,
) -> anyhow::Result<RunReport> {
    let suffix = format!("{:04x}", rand::random::<u16>());
    let bare = if args.skip_bare {
        None
    } else {
        let ns = format!("bench-{n}-bare-{suffix}");
        let report = measure(Role::Bare, &ns, args, cp, admin, sim_base, control, n).await?;
        crate::errln!("  bare controller: {}", one_line_bare(&report));
        // Its jobs would otherwise be listed (and answered) while the operator runs.
        control.reset().await?;
        Some(BareFigures::of(&report))
    };
    let ns = format!("bench-{n}-{suffix}");
    let mut report = measure(Role::Operator, &ns, args, cp, admin, sim_base, control, n).await?;
    report.bare = bare;
    Ok(report)
}

/// The bare controller's run in one line, as the bench goes.
fn one_line_bare(r: &RunReport) -> String {
    format!(
        "{}/{} final, created→submit p99 {:.2}s, finish→status p99 {:.2}s, drain {:.1}s, {:.0} jobs/s, RSS {:.1} MiB, CPU {:.1}s",
        r.finished,
        r.n,
        Num(r.created_p99),
        Num(r.finish_p99),
        Num(r.drain),
        Num(r.throughput),
        Num(r.rss_mib),
        Num(r.cpu_secs)
    )
}

/// The bench's watch of a measurement's objects: when each was first seen, and when final.
struct Watch {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    done: Arc<tokio::sync::Notify>,
    remaining: Arc<std::sync::atomic::AtomicUsize>,
}

impl Watch {
    /// Watches every kind in `ns`, recording into `seen` until `n` objects are final.
    fn start(admin: &Client, ns: &str, n: usize, seen: &Arc<Mutex<HashMap<String, Seen>>>) -> Self {
        let done = Arc::new(tokio::sync::Notify::new());
        let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(n));
        let tasks = KINDS
            .iter()
            .map(|kind| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(admin.clone(), ns, &resource(kind));
                let task = watch_kind(api, seen.clone(), done.clone(), remaining.clone());
                tokio::spawn(task)
            })
            .collect();
        Watch {
            tasks,
            done,
            remaining,
        }
    }

    /// Waits until every object is final, or `timeout`; says how many were not.
    async fn wait(&self, timeout: Duration) {
        let left = || self.remaining.load(std::sync::atomic::Ordering::SeqCst);
        let timed_out = tokio::time::timeout(timeout, self.done.notified())
            .await
            .is_err();
        if timed_out && left() > 0 {
            crate::errln!("  timed out with {} objects not final", left());
        }
    }

    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// One kind's watch of [`Watch`].
async fn watch_kind(
    api: Api<DynamicObject>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    done: Arc<tokio::sync::Notify>,
    remaining: Arc<std::sync::atomic::AtomicUsize>,
) {
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    // Errors (a watch that timed out under load) are retried by the backoff; only the end of
    // the stream ends the watch.
    while let Some(item) = stream.next().await {
        let Ok(obj) = item else { continue };
        let now = Utc::now();
        let status = obj.data.get("status");
        if status.is_none() {
            // The object as created: when a watch like the follower's first sees it.
            if let Some(entry) = seen.lock().await.get_mut(&obj.name_any()) {
                entry.watched.get_or_insert(now);
            }
            continue;
        }
        let phase = status
            .and_then(|s| s.get("phase"))
            .and_then(|p| serde_json::from_value::<Phase>(p.clone()).ok());
        let Some(phase) = phase.filter(|p| p.is_final()) else {
            continue;
        };
        let mut s = seen.lock().await;
        if let Some(entry) = s.get_mut(&obj.name_any())
            && entry.final_at.is_none()
        {
            entry.final_at = Some(now);
            entry.phase = Some(phase);
            let run = status.and_then(|s| s.get("run"));
            entry.job_id = run
                .and_then(|r| r.get("jobId"))
                .and_then(|j| j.as_str())
                .map(str::to_owned);
            entry.intent_at = run
                .and_then(|r| r.get("intentAt"))
                .and_then(|t| serde_json::from_value(t.clone()).ok());
            if remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                done.notify_one();
            }
        }
    }
}

/// Creates the `n` objects of the workload in `ns`, `parallelism` at a time, noting in `seen`
/// when each was sent and answered. Returns the seconds it took.
async fn create_objects(
    admin: &Client,
    ns: &str,
    n: usize,
    parallelism: usize,
    seen: &Arc<Mutex<HashMap<String, Seen>>>,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| async move {
            let (kind, name, manifest) = workload::job(i);
            let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &resource(kind));
            let obj: DynamicObject = serde_json::from_value(manifest)?;
            let at = Utc::now();
            api.create(&PostParams::default(), &obj).await?;
            let answered = Utc::now();
            if let Some(e) = seen.lock().await.get_mut(&name) {
                e.created = Some(at);
                e.create_answered = Some(answered);
            }
            anyhow::Ok(())
        })
        .buffer_unordered(parallelism)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(t0.elapsed().as_secs_f64())
}

/// One measurement: N objects created at once in namespace `ns` and followed by `role`, watched
/// until final, and what the follower, the API server and the simulator did meanwhile.
#[allow(clippy::too_many_arguments)]
async fn measure(
    role: Role,
    ns: &str,
    args: &BenchArgs,
    cp: &ControlPlane,
    admin: &Client,
    sim_base: &str,
    control: &SimControl,
    n: usize,
) -> anyhow::Result<RunReport> {
    let (secret, conn) = workload::connection(sim_base, args.qps, args.burst, args.max_in_flight);
    namespace(admin, ns).await?;
    apply(admin, ns, &secret).await?;
    apply(admin, ns, &conn).await?;

    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::new(Mutex::new(
        (0..n)
            .map(|i| {
                let (kind, name, _) = workload::job(i);
                let entry = Seen {
                    kind,
                    ..Default::default()
                };
                (name, entry)
            })
            .collect(),
    ));
    // Watch first, so no final phase is missed.
    let watch = Watch::start(admin, ns, n, &seen);

    let cp_pids = cp.process_ids();
    let cp_cpu_before = cpu_of(&cp_pids);
    let bench_cpu_before = cpu_of(&[std::process::id()]);
    let follower = Follower::spawn(role, args, cp, ns).await?;
    let kube_before = apiserver_requests(admin).await?;
    let bk_before = control.calls().await?;

    // BlueKing calls per second, sampled.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let control = control.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut series: Vec<(Instant, CallCounts)> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                tick.tick().await;
                if let Ok(c) = control.calls().await {
                    series.push((Instant::now(), c));
                }
            }
            series
        })
    };

    let started = Utc::now();
    let create_secs = create_objects(admin, ns, n, args.parallelism, &seen).await?;
    crate::errln!("  created {n} objects in {:.1} s", Num(create_secs));
    watch.wait(Duration::from_secs(args.timeout_seconds)).await;
    let (rss, cpu) = process_usage(follower.pid).unwrap_or_default();
    let control_plane_cpu_secs = cpu_of(&cp_pids) - cp_cpu_before;
    let bench_cpu_secs = cpu_of(&[std::process::id()]) - bench_cpu_before;
    let op_metrics = follower.metrics().await.unwrap_or_default();
    let kube_after = apiserver_requests(admin).await?;
    let bk_after = control.calls().await?;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let series = sampler.await.unwrap_or_default();
    follower.stop().await;
    watch.stop();
    let jobs = control.jobs().await?;

    let seen = seen.lock().await.clone();
    let mut report = RunReport {
        n,
        create_secs,
        rss_mib: rss as f64 / (1024.0 * 1024.0),
        cpu_secs: cpu,
        control_plane_cpu_secs,
        bench_cpu_secs,
        ..Default::default()
    };
    let sim_jobs: HashMap<(System, String), &crate::sim::JobView> = jobs
        .iter()
        .map(|j| ((j.system, j.id.to_string()), j))
        .collect();
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let mut submit = Vec::new();
    let mut from_created = Vec::new();
    let mut parts: [Vec<f64>; 3] = Default::default();
    let mut watch_delay = Vec::new();
    let mut watch_by_kind: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut finish = Vec::new();
    let mut last_final = started;
    for s in seen.values() {
        let Some(final_at) = s.final_at else { continue };
        report.finished += 1;
        if s.phase == Some(Phase::Succeeded) {
            report.succeeded += 1;
        }
        last_final = last_final.max(final_at);
        let Some(job) = s
            .job_id
            .as_ref()
            .and_then(|id| sim_jobs.get(&(workload::system(s.kind), id.clone())))
        else {
            continue;
        };
        if let (Some(created), Some(bk)) = (s.created, parse(&job.created_at)) {
            submit.push((bk - created).as_seconds_f64());
            if let (Some(answered), Some(intent)) = (s.create_answered, s.intent_at) {
                let secs = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).as_seconds_f64();
                from_created.push(secs(answered, bk));
                if let Some(watched) = s.watched {
                    let delay = secs(answered, watched);
                    watch_delay.push(delay);
                    watch_by_kind.entry(s.kind).or_default().push(delay);
                }
                parts[0].push(secs(created, answered));
                parts[1].push(secs(answered, intent));
                parts[2].push(secs(intent, bk));
            }
        }
        if let Some(end) = job.finished_at.as_deref().and_then(parse) {
            finish.push((final_at - end).as_seconds_f64());
        }
    }
    (report.submit_p50, report.submit_p99) = p50_p99(&mut submit);
    (report.created_p50, report.created_p99) = p50_p99(&mut from_created);
    report.watch_delay = p50_p99(&mut watch_delay);
    for (part, times) in report.submit_parts.iter_mut().zip(parts.iter_mut()) {
        *part = p50_p99(times);
    }
    (report.finish_p50, report.finish_p99) = p50_p99(&mut finish);
    report.drain = (last_final - started).as_seconds_f64();
    report.throughput = n as f64 / (report.drain - args.job_seconds).max(0.001);

    // Kubernetes requests: the bench's own creates are the only POSTs on the job kinds.
    let n_f = n as f64;
    let mut kube = request_diff(&kube_before, &kube_after);
    for kind in KINDS {
        let plural = resource(kind).plural;
        if let Some(v) = kube.get_mut(&format!("POST {plural}")) {
            *v -= n_f;
        }
        report.status_writes_per_job += kube
            .get(&format!("PATCH {plural}/status"))
            .copied()
            .unwrap_or(0.0)
            / n_f;
    }
    kube.retain(|_, v| *v > 0.0);
    report.kube_per_job = kube.into_iter().map(|(k, v)| (k, v / n_f)).collect();
    let per_job_by_outcome = |samples: &[Sample]| {
        let mut out: BTreeMap<String, f64> = BTreeMap::new();
        for s in samples {
            *out.entry(s.label("outcome").to_owned()).or_default() += s.value / n_f;
        }
        out
    };
    let reconciles = samples(&op_metrics, "bkops_reconciles_total");
    report.reconciles_per_job = per_job_by_outcome(&reconciles);
    for kind in KINDS {
        let objects = seen.values().filter(|s| s.kind == kind).count().max(1) as f64;
        let of_kind = |outcome: &str| {
            reconciles
                .iter()
                .filter(|s| s.label("kind") == kind && s.label("outcome") == outcome)
                .map(|s| s.value)
                .sum::<f64>()
                / objects
        };
        let delays = watch_by_kind.get_mut(kind).map(Vec::as_mut_slice);
        report.by_kind.insert(
            kind,
            KindFigures {
                watch_delay_p99: delays.map_or(f64::NAN, |d| p50_p99(d).1),
                cache_waits: of_kind("await_cache"),
                polls: of_kind("poll"),
            },
        );
    }
    report.status_writes_by_reason =
        per_job_by_outcome(&samples(&op_metrics, "bkops_status_writes_total"));
    report.record_writes_per_job =
        per_job_by_outcome(&samples(&op_metrics, "bkops_run_record_writes_total"));
    report.events_per_job = per_job_by_outcome(&samples(&op_metrics, "bkops_events_total"));
    for lane in LANES {
        let only = [("lane", lane)];
        if let Some(wait) = probe::histogram(&op_metrics, SLOT_WAIT, &only, 0.99) {
            report.slot_wait.insert(lane, wait);
        }
    }
    for class in WAIT_CLASSES {
        if let Some(wait) = probe::histogram(&op_metrics, LIMIT_WAIT, &[("class", class)], 0.99) {
            report.limit_wait.insert(class, wait);
        }
    }

    // BlueKing calls, per job of the system called.
    let per_system = |sys: System| {
        seen.values()
            .filter(|s| workload::system(s.kind) == sys)
            .count()
    };
    let mut creates = 0.0;
    for e in &bk_after.endpoints {
        let before = bk_before.get(e.system, &e.endpoint);
        let calls = e.count.saturating_sub(before) as f64;
        if calls == 0.0 {
            continue;
        }
        if e.endpoint == "create" {
            creates += calls;
        }
        let jobs_of = per_system(e.system).max(1) as f64;
        report.bk_per_job.insert(
            format!("{} {}", e.system.as_str(), e.endpoint),
            calls / jobs_of,
        );
    }
    report.creates_per_run = creates / n_f;
    let bkflow_batch_endpoint = "batch_status";
    let mut peak: f64 = 0.0;
    for w in series.windows(2) {
        let dt = w[1].0.duration_since(w[0].0).as_secs_f64().max(0.001);
        peak = peak.max((w[1].1.total.saturating_sub(w[0].1.total)) as f64 / dt);
    }
    report.peak_calls_per_sec = peak;
    let total_calls = bk_after.total.saturating_sub(bk_before.total) as f64;
    report.mean_calls_per_sec = total_calls / report.drain.max(0.001);
    let batch_calls = bk_after
        .get(System::Bkflow, bkflow_batch_endpoint)
        .saturating_sub(bk_before.get(System::Bkflow, bkflow_batch_endpoint))
        as f64;
    let task_polls: f64 = samples(&op_metrics, "bkops_bk_calls_total")
        .iter()
        .filter(|s| s.label("system") == "bkflow" && s.label("call") == "poll")
        .map(|s| s.value)
        .sum();
    report.bkflow_tasks_per_batch = task_polls / batch_calls.max(1.0);
    report.bkflow_batch_calls_per_sec = batch_calls / report.drain.max(0.001);
    Ok(report)
}

/// The median and 99th percentile of `times` (NaN when there are none).
fn p50_p99(times: &mut [f64]) -> (f64, f64) {
    let mut at = |q| quantile(times, q).unwrap_or(f64::NAN);
    (at(0.5), at(0.99))
}
