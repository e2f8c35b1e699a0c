//! What one run measured ([`RunReport`]), the operator's histograms it reads, and which run of
//! several of one N the report shows.

use std::collections::BTreeMap;

use super::{Num, probe};

/// The operator's histogram of waits for a reconcile slot, by kind and lane.
pub(super) const SLOT_WAIT: &str = "bkops_reconcile_slot_wait_seconds";
/// The values of that histogram's `lane` label, in the order the report shows them.
pub(super) const LANES: [&str; 2] = ["decide", "follow"];
/// The operator's histogram of BlueKing calls' waits for the connection's limits, by class.
pub(super) const LIMIT_WAIT: &str = "bkops_bk_call_wait_seconds";

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Job objects.
    pub n: usize,
    /// Objects that reached a final phase.
    pub finished: usize,
    /// ... of which Succeeded.
    pub succeeded: usize,
    /// Seconds from the bench sending the create to BlueKing's create, p50 and p99.
    pub submit_p50: f64,
    /// p99 of the above.
    pub submit_p99: f64,
    /// Seconds from the object's creation (the create call's answer: the API server had stored
    /// it) to BlueKing's create, p50 and p99. Unlike the above, without the API server's
    /// queueing of the create itself, before the object existed.
    pub created_p50: f64,
    /// p99 of the above.
    pub created_p99: f64,
    /// With `--repeat`, that p99 of every run of this N in the order they ran; this report is
    /// the run with their median.
    pub created_p99_of_runs: Vec<f64>,
    /// Where that time goes, p50 and p99 of each part: the create call itself, from its answer
    /// to the operator's intent (watch, queue), and from the intent to BlueKing's create (the
    /// intent's PATCH, then the create call).
    pub submit_parts: [(f64, f64); 3],
    /// From the create's answer to the bench's own watch seeing the object, p50 and p99: how
    /// late the API server's watch delivers it (the operator's watch is alike).
    pub watch_delay: (f64, f64),
    /// The same and what follows from it, per kind (each kind has a watch of its own, and under
    /// load they can lag by different amounts in one run).
    pub by_kind: BTreeMap<&'static str, KindFigures>,
    /// Seconds from the simulated job's end to the bench seeing the final phase, p50.
    pub finish_p50: f64,
    /// p99 of the above.
    pub finish_p99: f64,
    /// Seconds from the first create to the last final phase seen.
    pub drain: f64,
    /// Seconds the creates took.
    pub create_secs: f64,
    /// Operator throughput: jobs per second, net of the simulated job time.
    pub throughput: f64,
    /// The bare controller's figures in the same run, the reference the operator's are judged
    /// against (`None` with `--skip-bare`).
    pub bare: Option<BareFigures>,
    /// Kubernetes API requests by the operator, per job, by `VERB resource[/subresource]`.
    pub kube_per_job: BTreeMap<String, f64>,
    /// The operator's reconciles per job, by the step taken (or the error).
    pub reconciles_per_job: BTreeMap<String, f64>,
    /// Waits for a reconcile slot, by lane (`decide`: submissions and the like; `follow`: polls
    /// and starts of running jobs): p99 (its histogram bucket) and mean, seconds.
    pub slot_wait: BTreeMap<&'static str, (probe::Bucket, f64)>,
    /// Waits of BlueKing calls for the connection's limits, by class (`job`: creates and
    /// operations; `read`: polls): p99 (its histogram bucket) and mean, seconds.
    pub limit_wait: BTreeMap<&'static str, (probe::Bucket, f64)>,
    /// Status patches per job (all `PATCH .../status` on the job kinds).
    pub status_writes_per_job: f64,
    /// Status writes per job by the operator's reason (intent, change, progress).
    pub status_writes_by_reason: BTreeMap<String, f64>,
    /// Run record (`BkRun`) writes per job by outcome (create, update, failed).
    pub record_writes_per_job: BTreeMap<String, f64>,
    /// The operator's Events per job by outcome (published, failed, dropped) when the last
    /// object was final: the rest were still queued.
    pub events_per_job: BTreeMap<String, f64>,
    /// BlueKing calls per job of that system, by `system endpoint`.
    pub bk_per_job: BTreeMap<String, f64>,
    /// BlueKing creates per run.
    pub creates_per_run: f64,
    /// Highest BlueKing calls in any 1-second window (one connection).
    pub peak_calls_per_sec: f64,
    /// Mean BlueKing calls per second from first to last call.
    pub mean_calls_per_sec: f64,
    /// BKFlow per-task polls answered per `get_tasks_states` call.
    pub bkflow_tasks_per_batch: f64,
    /// BKFlow batch calls per second while tasks ran.
    pub bkflow_batch_calls_per_sec: f64,
    /// Peak RSS of the operator, MiB.
    pub rss_mib: f64,
    /// CPU seconds of the operator.
    pub cpu_secs: f64,
    /// CPU seconds of kube-apiserver + etcd during the run.
    pub control_plane_cpu_secs: f64,
    /// CPU seconds of the bench process (simulator, creates, watches) during the run.
    pub bench_cpu_secs: f64,
}

/// One kind's share of a run: how late the bench's watch saw its objects, and how the
/// operator's reconciles of that kind went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KindFigures {
    /// p99 seconds from the create's answer to the bench's watch seeing the object.
    pub watch_delay_p99: f64,
    /// Reconciles per object of this kind that waited for the cache to show the operator's own
    /// last status write (`bkops_reconciles_total{outcome="await_cache"}`).
    pub cache_waits: f64,
    /// Reconciles per object of this kind that polled the job.
    pub polls: f64,
}

/// What the bare controller ([`super::bare`]) did with the same N objects on the same API
/// server and simulator, measured by the same watch as the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BareFigures {
    /// Objects that reached a final phase.
    pub finished: usize,
    /// Seconds from the object's creation to BlueKing's create, p50.
    pub created_p50: f64,
    /// p99 of the above.
    pub created_p99: f64,
    /// Seconds from the simulated job's end to the bench seeing the final phase, p50.
    pub finish_p50: f64,
    /// p99 of the above.
    pub finish_p99: f64,
    /// Seconds from the first create to the last final phase seen.
    pub drain: f64,
    /// Jobs per second, net of the simulated job time.
    pub throughput: f64,
    /// Status patches per job.
    pub status_writes_per_job: f64,
    /// Peak RSS, MiB.
    pub rss_mib: f64,
    /// CPU seconds.
    pub cpu_secs: f64,
}

impl BareFigures {
    /// The figures of a run the bare controller followed.
    pub(super) fn of(r: &RunReport) -> Self {
        BareFigures {
            finished: r.finished,
            created_p50: r.created_p50,
            created_p99: r.created_p99,
            finish_p50: r.finish_p50,
            finish_p99: r.finish_p99,
            drain: r.drain,
            throughput: r.throughput,
            status_writes_per_job: r.status_writes_per_job,
            rss_mib: r.rss_mib,
            cpu_secs: r.cpu_secs,
        }
    }
}

/// Of several runs of one N, the one whose p99 object created → BlueKing create is the median
/// (the lower one of an even count), with that p99 of every run in `created_p99_of_runs`: the
/// latencies move between identical runs by more than most changes do. Each run keeps the bare
/// controller's figures of its own run, so a verdict compares figures of one run.
pub(super) fn median_run(mut runs: Vec<RunReport>) -> Option<RunReport> {
    let all: Vec<f64> = runs.iter().map(|r| r.created_p99).collect();
    runs.sort_by(|a, b| a.created_p99.total_cmp(&b.created_p99));
    let middle = runs.len().checked_sub(1)? / 2;
    let mut chosen = runs.swap_remove(middle);
    chosen.created_p99_of_runs = all;
    Some(chosen)
}

/// With `--repeat`, the p99 object created → BlueKing create of each run, as the report prints it.
pub(super) fn p99_of_each_run(r: &RunReport) -> String {
    let each: Vec<String> = r
        .created_p99_of_runs
        .iter()
        .map(|p| format!("{:.2}", Num(*p)))
        .collect();
    each.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(created_p99: f64, drain: f64) -> RunReport {
        RunReport {
            n: 1000,
            created_p99,
            drain,
            bare: Some(BareFigures {
                drain: drain + 0.5,
                ..BareFigures::default()
            }),
            ..RunReport::default()
        }
    }

    #[test]
    fn the_run_shown_is_the_one_with_the_median_p99_and_every_p99_is_kept() {
        let chosen = median_run(vec![run(4.6, 1.0), run(1.3, 2.0), run(2.5, 3.0)]).unwrap();
        assert_eq!(chosen.created_p99, 2.5);
        // The whole run, not a mix of figures from several, with its own reference.
        assert_eq!(chosen.drain, 3.0);
        assert_eq!(chosen.bare.map(|b| b.drain), Some(3.5));
        assert_eq!(chosen.created_p99_of_runs, vec![4.6, 1.3, 2.5]);
        // An even count shows the lower of the two middle runs.
        let chosen = median_run(vec![
            run(3.0, 0.0),
            run(1.0, 0.0),
            run(2.0, 0.0),
            run(4.0, 0.0),
        ]);
        assert_eq!(chosen.unwrap().created_p99, 2.0);
        assert_eq!(median_run(vec![run(7.0, 0.0)]).unwrap().created_p99, 7.0);
        assert!(median_run(Vec::new()).is_none());
    }
}
