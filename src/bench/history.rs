//! `bkops bench --history N`: years of finished jobs. N job objects whose runs are already over
//! (their final status written directly: a realistic size, the four kinds, some with a large
//! BKFlow pipeline tree) are in the cluster when a fresh operator starts. It must make no
//! BlueKing call and no status write, see every object idle soon, and keep its memory small.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::Num;
use super::args::BenchArgs;
use super::cluster::{apply, namespace};
use super::follower::{Follower, Role};
use super::probe::{process_usage, samples};
use super::status::realistic;
use super::targets::Verdict;
use super::workload::{self, resource};
use crate::api::{AgentJob, ExecuteJob, ProcessJob, Taskflow};
use crate::local::ControlPlane;
use crate::run::{JobKind, spec_hash};
use crate::sim::SimControl;

/// How soon every object must be seen and idle after the operator starts.
pub const IDLE_WITHIN: Duration = Duration::from_secs(60);
/// Peak RSS allowed: half the chart's memory limit (256 Mi).
pub const MAX_RSS_MIB: f64 = 128.0;
/// Every how many objects one is a Taskflow with a large pipeline tree.
const LARGE_TREE_EVERY: usize = 50;

/// What a history run measured.
#[derive(Clone, Debug, Default)]
pub struct HistoryReport {
    /// Objects.
    pub n: usize,
    /// How long writing them took (seconds).
    pub populate_secs: f64,
    /// Seconds from the operator's start until it had reconciled every object once, idle.
    pub idle_after: Option<f64>,
    /// BlueKing calls the operator made.
    pub bk_calls: u64,
    /// Status writes the operator made.
    pub status_writes: f64,
    /// Other writes the operator made (finalizers aside, run records).
    pub record_writes: f64,
    /// The operator's resident memory with no object, after start (MiB).
    pub base_rss_mib: f64,
    /// Its resident memory once every object was idle (MiB).
    pub rss_mib: f64,
    /// Its peak resident memory (MiB).
    pub peak_rss_mib: f64,
}

impl HistoryReport {
    /// Resident bytes per object, above the empty operator's.
    pub fn bytes_per_object(&self) -> f64 {
        (self.rss_mib - self.base_rss_mib).max(0.0) * 1024.0 * 1024.0 / self.n.max(1) as f64
    }
}

/// A large pipeline tree: `nodes` activities in a line, as BKFlow stores them.
fn pipeline_tree(nodes: usize) -> Value {
    let mut activities = serde_json::Map::new();
    let mut flows = serde_json::Map::new();
    for i in 0..nodes {
        activities.insert(
            format!("n{i:04}"),
            json!({"id": format!("n{i:04}"), "type": "ServiceActivity", "name": format!("step {i}"),
                   "component": {"code": "job_execute_task", "data": {
                       "biz_cc_id": {"hook": false, "value": 2},
                       "job_script_source": {"hook": false, "value": "manual"},
                       "job_content": {"hook": false, "value": format!("echo step {i} && sleep 1")}}},
                   "incoming": [format!("f{i:04}")], "outgoing": format!("f{:04}", i + 1)}),
        );
        flows.insert(
            format!("f{i:04}"),
            json!({"id": format!("f{i:04}"), "source": "start", "target": format!("n{i:04}")}),
        );
    }
    json!({"activities": activities, "flows": flows, "gateways": {}, "constants": {},
           "start_event": {"id": "start", "type": "EmptyStartEvent"},
           "end_event": {"id": "end", "type": "EmptyEndEvent"}})
}

/// The spec hash the operator computes for `manifest` of `kind`.
fn hash_of(kind: &str, manifest: &Value) -> anyhow::Result<String> {
    fn typed<K: JobKind>(m: &Value) -> anyhow::Result<String> {
        let obj: K = serde_json::from_value(m.clone())?;
        Ok(spec_hash(&obj.spec_json()))
    }
    match kind {
        "ProcessJob" => typed::<ProcessJob>(manifest),
        "Taskflow" => typed::<Taskflow>(manifest),
        "AgentJob" => typed::<AgentJob>(manifest),
        _ => typed::<ExecuteJob>(manifest),
    }
}

/// Writes object `i` of the history: created, then its final status.
async fn populate_one(client: Client, ns: String, i: usize) -> anyhow::Result<()> {
    let (kind, name, mut manifest) = workload::job(i);
    if kind == "Taskflow" && i % LARGE_TREE_EVERY == 1 {
        manifest["spec"]["templateId"] = Value::Null;
        manifest["spec"]["pipelineTree"] = pipeline_tree(80);
    }
    let hash = hash_of(kind, &manifest)?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &resource(kind));
    let obj: DynamicObject = serde_json::from_value(manifest)?;
    api.create(&PostParams::default(), &obj).await?;
    let mut status = realistic(
        1 + i % 5,
        if i.is_multiple_of(7) { 3 } else { 0 },
        Utc::now(),
    );
    status.observed_generation = Some(1);
    if let Some(run) = status.run.as_mut() {
        run.generation = 1;
        run.spec_hash = hash;
    }
    let patch = json!({"status": status});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn sum(metrics: &str, name: &str, outcome: Option<&str>) -> f64 {
    samples(metrics, name)
        .iter()
        .filter(|s| outcome.is_none_or(|o| s.label("outcome") == o))
        .map(|s| s.value)
        .sum()
}

/// One history run of `n` objects.
pub(super) async fn run_history(
    args: &BenchArgs,
    cp: &ControlPlane,
    admin: &Client,
    sim_base: &str,
    control: &SimControl,
    n: usize,
) -> anyhow::Result<HistoryReport> {
    let suffix = format!("{:04x}", rand::random::<u16>());
    let (secret, conn) = workload::connection(sim_base, args.qps, args.burst, args.max_in_flight);

    // The operator's own memory, with nothing to watch.
    let empty = format!("history-empty-{suffix}");
    namespace(admin, &empty).await?;
    let op = Follower::spawn(Role::Operator, args, cp, &empty).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base_rss_mib = rss_mib(op.pid).unwrap_or(f64::NAN);
    op.stop().await;

    let ns = format!("history-{n}-{suffix}");
    namespace(admin, &ns).await?;
    apply(admin, &ns, &secret).await?;
    apply(admin, &ns, &conn).await?;
    crate::errln!("  writing {n} finished jobs ...");
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| populate_one(admin.clone(), ns.clone(), i))
        .buffer_unordered(args.parallelism)
        .try_collect::<Vec<()>>()
        .await
        .context("writing the history")?;
    let populate_secs = t0.elapsed().as_secs_f64();
    crate::errln!(
        "  written in {:.0} s; starting the operator",
        Num(populate_secs)
    );

    control.reset().await?;
    let calls_before = control.calls().await?;
    let op = Follower::spawn(Role::Operator, args, cp, &ns).await?;
    let started = Instant::now();
    let mut idle_after = None;
    let deadline = started + Duration::from_secs(args.timeout_seconds);
    while Instant::now() < deadline {
        let metrics = op.metrics().await.unwrap_or_default();
        if sum(&metrics, "bkops_reconciles_total", Some("idle")) >= n as f64 {
            idle_after = Some(started.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Anything a settled object would set off has had time to happen.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = op.metrics().await.unwrap_or_default();
    let calls_after = control.calls().await?;
    let bk_calls = calls_after.total.saturating_sub(calls_before.total);
    let report = HistoryReport {
        n,
        populate_secs,
        idle_after,
        bk_calls,
        status_writes: sum(&metrics, "bkops_status_writes_total", None),
        record_writes: sum(&metrics, "bkops_run_record_writes_total", None),
        base_rss_mib,
        rss_mib: rss_mib(op.pid).unwrap_or(f64::NAN),
        peak_rss_mib: process_usage(op.pid)
            .map(|(hwm, _)| hwm as f64 / 1024.0 / 1024.0)
            .unwrap_or(f64::NAN),
    };
    op.stop().await;
    Ok(report)
}

/// The history run as a Markdown section: the measures, then each target with what it is judged
/// against.
pub fn render(r: &HistoryReport) -> String {
    let mut s = format!(
        "## History: {} finished jobs when the operator starts\n\n\
         Every object's run is over (its final status written directly: 1 to 5 runs in its \
         history, every 7th with 3 failed targets, every {LARGE_TREE_EVERY}th a Taskflow with \
         an 80-node pipeline tree); then a fresh operator starts.\n\n\
         | measure | value |\n| --- | ---: |\n",
        r.n
    );
    let idle = r
        .idle_after
        .map(|t| format!("{:.1}", Num(t)))
        .unwrap_or_else(|| "never".into());
    for (what, value) in [
        (
            "writing the history took (s)",
            format!("{:.0}", Num(r.populate_secs)),
        ),
        ("every object seen and idle after the start (s)", idle),
        ("BlueKing calls after the start", r.bk_calls.to_string()),
        (
            "status writes after the start",
            format!("{:.0}", Num(r.status_writes)),
        ),
        (
            "run record writes after the start",
            format!("{:.0}", Num(r.record_writes)),
        ),
        (
            "operator RSS with no object (MiB)",
            format!("{:.1}", Num(r.base_rss_mib)),
        ),
        (
            "operator RSS with the history (MiB)",
            format!("{:.1}", Num(r.rss_mib)),
        ),
        (
            "operator peak RSS (MiB)",
            format!("{:.1}", Num(r.peak_rss_mib)),
        ),
        (
            "resident bytes per finished object",
            format!("{:.0}", Num(r.bytes_per_object())),
        ),
    ] {
        s.push_str(&format!("| {what} | {value} |\n"));
    }
    s.push_str("\n| target | measured | bound | met |\n| --- | --- | --- | --- |\n");
    for v in verdicts(r) {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            v.target,
            v.measured,
            v.bound,
            match v.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        ));
    }
    s
}

/// The history targets.
pub fn verdicts(r: &HistoryReport) -> Vec<Verdict> {
    vec![
        Verdict {
            target: "history: BlueKing calls after the start".into(),
            measured: r.bk_calls.to_string(),
            bound: "0".into(),
            met: Some(r.bk_calls == 0),
        },
        Verdict {
            target: "history: status writes after the start".into(),
            measured: format!("{:.0}", Num(r.status_writes)),
            bound: "0".into(),
            met: Some(r.status_writes == 0.0),
        },
        Verdict {
            target: "history: every object seen and idle after the start".into(),
            measured: r
                .idle_after
                .map(|t| format!("{:.1} s", Num(t)))
                .unwrap_or_else(|| "never".into()),
            bound: format!("≤ {} s", IDLE_WITHIN.as_secs()),
            met: Some(r.idle_after.is_some_and(|t| t <= IDLE_WITHIN.as_secs_f64())),
        },
        Verdict {
            target: "history: operator peak RSS".into(),
            measured: format!("{:.1} MiB", Num(r.peak_rss_mib)),
            bound: format!("≤ {MAX_RSS_MIB} MiB (half the chart's limit)"),
            met: Some(r.peak_rss_mib <= MAX_RSS_MIB),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_history_figure_past_its_bound_is_a_miss() {
        let good = HistoryReport {
            n: 20_000,
            idle_after: Some(20.0),
            peak_rss_mib: 90.0,
            rss_mib: 80.0,
            base_rss_mib: 20.0,
            ..Default::default()
        };
        assert!(verdicts(&good).iter().all(|v| v.met == Some(true)));
        type Spoil = Box<dyn Fn(&mut HistoryReport)>;
        let spoiled: [Spoil; 4] = [
            Box::new(|r| r.bk_calls = 1),
            Box::new(|r| r.status_writes = 3.0),
            Box::new(|r| r.idle_after = Some(61.0)),
            Box::new(|r| r.peak_rss_mib = 129.0),
        ];
        for (i, spoil) in spoiled.iter().enumerate() {
            let mut r = good.clone();
            spoil(&mut r);
            assert_eq!(
                verdicts(&r).iter().filter(|v| v.met == Some(false)).count(),
                1,
                "case {i}"
            );
        }
        let mut never = good.clone();
        never.idle_after = None;
        assert!(render(&never).contains("never"));
        assert!((good.bytes_per_object() - 60.0 * 1048576.0 / 20000.0).abs() < 1.0);
    }
}
