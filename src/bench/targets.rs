//! The targets of issues 6 and 19, judged from the bench's own measurements: each line gives the
//! measured value next to the target and whether it was met, so the report needs no hand-written
//! verdicts. Latency and throughput are judged against the bare controller measured in the same
//! run on the same API server ([`super::bare`]), each line giving the operator's figure, the bare
//! controller's and their ratio.

use std::fmt::Write as _;

use super::Num;
use super::args::{BenchArgs, RAISED_LIMIT};
use super::report::{BareFigures, RunReport, p99_of_each_run};
use super::workload::BKFLOW_SPACES;
use crate::controller::batch::BKFLOW_BATCH_WINDOW;

/// Status writes per run allowed in steady state: the intent, the job id, the end.
pub const MAX_STATUS_WRITES: f64 = 3.0;
/// Seconds between two progress writes of one object (no more often than every ~10 s).
pub const PROGRESS_INTERVAL_SECS: f64 = 10.0;
/// BlueKing creates per run allowed.
pub const MAX_CREATES: f64 = 1.0;
/// Run record writes per run: created with the job id, updated at the end.
pub const MAX_RECORD_WRITES: f64 = 2.0;
/// Operator throughput as a share of the bare controller's, at least.
pub const MIN_THROUGHPUT_SHARE: f64 = 0.9;
/// The operator's p99 object created → BlueKing create may be this many times the bare
/// controller's, plus [`SUBMIT_SLACK_SECS`].
pub const SUBMIT_FACTOR: f64 = 1.25;
/// Seconds of slack on top of [`SUBMIT_FACTOR`] (the bare controller's p99 can be tiny).
pub const SUBMIT_SLACK_SECS: f64 = 0.2;
/// The N at which the operator's reconciles that wait for the cache to show its own last write
/// are judged, and the bound per job.
pub const CACHE_WAIT_TARGET: (usize, f64) = (5000, 1.0);
/// The N at which the memory target applies, and the bound on the operator's peak RSS (MiB).
pub const RSS_TARGET: (usize, f64) = (5000, 150.0);

/// One target line: what, measured, target, met.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The target's name.
    pub target: String,
    /// The measured values, one per N where it applies.
    pub measured: String,
    /// The bound.
    pub bound: String,
    /// `None` when no run measured it (an N it needs was not run).
    pub met: Option<bool>,
}

fn per_n(reports: &[RunReport], f: impl Fn(&RunReport) -> String) -> String {
    reports
        .iter()
        .map(|r| format!("{} (N = {})", f(r), r.n))
        .collect::<Vec<_>>()
        .join(", ")
}

fn all(reports: &[RunReport], ok: impl Fn(&RunReport) -> bool) -> Option<bool> {
    (!reports.is_empty()).then(|| reports.iter().all(ok))
}

fn writes(r: &RunReport, reason: &str) -> f64 {
    r.status_writes_by_reason
        .get(reason)
        .copied()
        .unwrap_or(0.0)
}

/// Why the connection's rate limit may have set the latency of `r`'s creates, if it may have:
/// the limit was below the bench's raised default, or a second's calls reached its qps.
fn limit_in_the_way(args: &BenchArgs, r: &RunReport) -> Option<String> {
    let raised = RAISED_LIMIT;
    if args.qps < raised.qps
        || args.burst < raised.burst
        || args.max_in_flight < raised.max_in_flight
    {
        return Some(format!(
            "the connection's limit (qps {}, burst {}, {} in flight) is below the bench's raised \
             default (qps {}, burst {}, {} in flight)",
            args.qps,
            args.burst,
            args.max_in_flight,
            raised.qps,
            raised.burst,
            raised.max_in_flight
        ));
    }
    (r.peak_calls_per_sec >= f64::from(args.qps)).then(|| {
        format!(
            "the busiest second's {:.0} BlueKing calls reached the connection's qps {}",
            Num(r.peak_calls_per_sec),
            args.qps
        )
    })
}

/// The N at which latency and throughput are judged against the bare controller
/// (`--judge-n`, by default 1000 and 5000: at N = 100 the throughput is mostly the job time and
/// the start), as the report prints them.
fn judged_n(args: &BenchArgs) -> String {
    let each: Vec<String> = args.judge_n.iter().map(|n| n.to_string()).collect();
    each.join(" and ")
}

/// `operator X / bare Y = ratio` (ratio to two decimals).
fn ratio(operator: f64, bare: f64, unit: &str) -> String {
    format!(
        "operator {:.2}{unit} / bare {:.2}{unit} = {:.2}",
        Num(operator),
        Num(bare),
        Num(operator / bare)
    )
}

/// A target judged against the bare controller of the same run at each N of `--judge-n` that
/// was run: `show` gives the measured text of one N, `judge` whether it is met (`None`:
/// not judged at that N). Not judged at all when no such N was run, or the bare controller
/// was not (`--skip-bare`).
fn against_bare(
    args: &BenchArgs,
    reports: &[RunReport],
    target: String,
    bound: String,
    show: &dyn Fn(&RunReport, &BareFigures) -> String,
    judge: &dyn Fn(&RunReport, &BareFigures) -> Option<bool>,
) -> Verdict {
    let judged: Vec<&RunReport> = reports
        .iter()
        .filter(|r| args.judge_n.contains(&r.n))
        .collect();
    let measured = judged
        .iter()
        .map(|r| match &r.bare {
            Some(b) => format!("{} (N = {})", show(r, b), r.n),
            None => format!("not run: --skip-bare (N = {})", r.n),
        })
        .collect::<Vec<_>>();
    let verdicts: Vec<bool> = judged
        .iter()
        .filter_map(|r| r.bare.as_ref().and_then(|b| judge(r, b)))
        .collect();
    Verdict {
        target,
        measured: if measured.is_empty() {
            "not run".into()
        } else {
            measured.join(", ")
        },
        bound,
        met: (!verdicts.is_empty()).then(|| verdicts.iter().all(|ok| *ok)),
    }
}

/// Judges every target on the runs made.
pub fn verdicts(args: &BenchArgs, reports: &[RunReport]) -> Vec<Verdict> {
    let mut out = Vec::new();
    // Judged as the report prints them, to two decimals.
    let steady = |r: &RunReport| writes(r, "intent") + writes(r, "change");
    out.push(Verdict {
        target: "status writes per run, steady state (intent + job id + end)".into(),
        measured: per_n(reports, |r| format!("{:.2}", Num(steady(r)))),
        bound: format!("≤ {MAX_STATUS_WRITES}"),
        met: all(reports, |r| steady(r) <= MAX_STATUS_WRITES + 0.005),
    });
    let progress_bound = args.job_seconds / PROGRESS_INTERVAL_SECS;
    out.push(Verdict {
        target: format!(
            "… plus progress writes, at most one per {PROGRESS_INTERVAL_SECS} s of a {} s job",
            Num(args.job_seconds)
        ),
        measured: per_n(reports, |r| format!("{:.2}", Num(writes(r, "progress")))),
        bound: format!("≤ {:.1}", Num(progress_bound)),
        met: all(reports, |r| writes(r, "progress") <= progress_bound + 0.005),
    });
    let records = |r: &RunReport| {
        ["create", "update", "failed"]
            .iter()
            .map(|o| r.record_writes_per_job.get(*o).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    out.push(Verdict {
        target: "run record writes per run (create with the job id + update at the end)".into(),
        measured: per_n(reports, |r| format!("{:.2}", Num(records(r)))),
        bound: format!("≤ {MAX_RECORD_WRITES}"),
        met: all(reports, |r| records(r) <= MAX_RECORD_WRITES + 0.005),
    });
    out.push(Verdict {
        target: "BlueKing creates per run".into(),
        measured: per_n(reports, |r| format!("{:.2}", Num(r.creates_per_run))),
        bound: format!("≤ {MAX_CREATES}"),
        met: all(reports, |r| r.creates_per_run <= MAX_CREATES + 0.005),
    });
    // A token bucket lets through at most its burst plus qps calls in any one second.
    let call_bound = f64::from(args.qps) + f64::from(args.burst);
    out.push(Verdict {
        target: "BlueKing calls in any 1-s window, within the connection's rate limit".into(),
        measured: per_n(reports, |r| format!("{:.0}", Num(r.peak_calls_per_sec))),
        bound: format!("≤ qps + burst = {:.0}", Num(call_bound)),
        met: all(reports, |r| r.peak_calls_per_sec <= call_bound),
    });
    let batch_bound = BKFLOW_SPACES.len() as f64 / BKFLOW_BATCH_WINDOW.as_secs_f64();
    out.push(Verdict {
        target: format!(
            "BKFlow batch calls/s grow with spaces ({}), not tasks (N / 4); tasks per call in brackets",
            BKFLOW_SPACES.len()
        ),
        measured: per_n(reports, |r| {
            format!(
                "{:.1} [{:.1}]",
                Num(r.bkflow_batch_calls_per_sec),
                Num(r.bkflow_tasks_per_batch)
            )
        }),
        bound: format!(
            "≤ spaces / batch window = {:.0}/s at every N",
            Num(batch_bound)
        ),
        met: all(reports, |r| r.bkflow_batch_calls_per_sec <= batch_bound),
    });
    let at = |n: usize| reports.iter().find(|r| r.n == n);
    out.push(against_bare(
        args,
        reports,
        format!(
            "p99 object created → BlueKing create, {} creates in flight",
            args.parallelism
        ),
        format!(
            "≤ {SUBMIT_FACTOR} × bare + {SUBMIT_SLACK_SECS} s at N = {}",
            judged_n(args)
        ),
        &|r, b| {
            let mut measured = ratio(r.created_p99, b.created_p99, " s");
            if r.created_p99_of_runs.len() > 1 {
                let _ = write!(
                    measured,
                    "; the median of {} runs: {} s",
                    r.created_p99_of_runs.len(),
                    p99_of_each_run(r)
                );
            }
            if let Some(why) = limit_in_the_way(args, r) {
                let _ = write!(
                    measured,
                    "; not judged: {why}, and the target is for a limit out of the way"
                );
            }
            measured
        },
        &|r, b| {
            limit_in_the_way(args, r)
                .is_none()
                .then_some(r.created_p99 <= SUBMIT_FACTOR * b.created_p99 + SUBMIT_SLACK_SECS)
        },
    ));
    let poll = args.poll_initial_seconds;
    out.push(against_bare(
        args,
        reports,
        "p99 job end → status final".into(),
        format!(
            "≤ bare + one poll interval (--poll-initial-seconds {} s) at N = {}",
            Num(poll),
            judged_n(args)
        ),
        &|r, b| ratio(r.finish_p99, b.finish_p99, " s"),
        &|r, b| Some(r.finish_p99 <= b.finish_p99 + poll),
    ));
    out.push(against_bare(
        args,
        reports,
        "operator throughput (jobs/s, net of job time)".into(),
        format!(
            "≥ {:.0} % of bare at N = {}",
            Num(100.0 * MIN_THROUGHPUT_SHARE),
            judged_n(args)
        ),
        &|r, b| ratio(r.throughput, b.throughput, ""),
        &|r, b| Some(r.throughput >= MIN_THROUGHPUT_SHARE * b.throughput),
    ));
    let (cache_n, cache_bound) = CACHE_WAIT_TARGET;
    let cache_waits = |r: &RunReport| {
        r.reconciles_per_job
            .get("await_cache")
            .copied()
            .unwrap_or(0.0)
    };
    out.push(Verdict {
        target: format!(
            "operator reconciles per job waiting for its own write (await_cache) at N = {cache_n}"
        ),
        measured: at(cache_n)
            .map(|r| format!("{:.2}", Num(cache_waits(r))))
            .unwrap_or_else(|| "not run".into()),
        bound: format!("≤ {cache_bound}"),
        met: at(cache_n).map(|r| cache_waits(r) <= cache_bound + 0.005),
    });
    let (rss_n, rss_bound) = RSS_TARGET;
    out.push(Verdict {
        target: format!("operator peak RSS at N = {rss_n}"),
        measured: at(rss_n)
            .map(|r| format!("{:.1} MiB", Num(r.rss_mib)))
            .unwrap_or_else(|| "not run".into()),
        bound: format!("< {rss_bound} MiB"),
        met: at(rss_n).map(|r| r.rss_mib < rss_bound),
    });
    out
}

/// The targets as a Markdown table.
pub fn render(args: &BenchArgs, reports: &[RunReport]) -> String {
    let mut s = String::from("| target | measured | target | met |\n| --- | --- | --- | :---: |\n");
    for v in verdicts(args, reports) {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(s, "| {} | {} | {} | {met} |", v.target, v.measured, v.bound);
    }
    s
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args() -> BenchArgs {
        Cli::parse_from(["bench"]).bench
    }

    fn good(n: usize) -> RunReport {
        RunReport {
            n,
            status_writes_by_reason: [("intent", 1.0), ("change", 2.0), ("progress", 1.6)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            record_writes_per_job: [("create", 1.0), ("update", 1.0)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            creates_per_run: 1.0,
            peak_calls_per_sec: 700.0,
            bkflow_batch_calls_per_sec: 12.0,
            bkflow_tasks_per_batch: 5.0,
            submit_p50: 1.4,
            submit_p99: 2.6,
            created_p50: 1.0,
            created_p99: 1.8,
            finish_p99: 2.5,
            throughput: 80.0,
            reconciles_per_job: [("await_cache".to_owned(), 0.5)].into_iter().collect(),
            bare: Some(BareFigures {
                created_p99: 1.6,
                finish_p99: 1.0,
                throughput: 85.0,
                ..BareFigures::default()
            }),
            rss_mib: 120.0,
            ..Default::default()
        }
    }

    fn met(v: &[Verdict], starts: &str) -> Option<bool> {
        v.iter()
            .find(|v| v.target.starts_with(starts))
            .unwrap_or_else(|| panic!("no target {starts}"))
            .met
    }

    #[test]
    fn every_target_met_when_every_figure_is_within_its_bound() {
        let v = verdicts(&args(), &[good(100), good(1000), good(5000)]);
        assert_eq!(v.len(), 11);
        assert!(v.iter().all(|v| v.met == Some(true)), "{v:#?}");
    }

    #[test]
    fn each_figure_past_its_bound_is_a_miss() {
        let a = args();
        type Spoil = Box<dyn Fn(&mut RunReport)>;
        let cases: Vec<(&str, Spoil)> = vec![
            (
                "status writes",
                Box::new(|r| {
                    r.status_writes_by_reason.insert("change".into(), 2.5);
                }),
            ),
            (
                "… plus progress",
                Box::new(|r| {
                    r.status_writes_by_reason.insert("progress".into(), 3.0);
                }),
            ),
            (
                "run record writes",
                Box::new(|r| {
                    r.record_writes_per_job.insert("failed".into(), 0.1);
                }),
            ),
            ("BlueKing creates", Box::new(|r| r.creates_per_run = 1.02)),
            (
                "BlueKing calls",
                Box::new(|r| r.peak_calls_per_sec = 2001.0),
            ),
            (
                "BKFlow batch",
                Box::new(|r| r.bkflow_batch_calls_per_sec = 25.0),
            ),
            // 1.25 × 1.6 s + 0.2 s = 2.2 s.
            ("p99 object created", Box::new(|r| r.created_p99 = 2.21)),
            // 1.0 s + one poll interval of 2 s.
            ("p99 job end", Box::new(|r| r.finish_p99 = 3.01)),
            // 90 % of 85.
            ("operator throughput", Box::new(|r| r.throughput = 76.4)),
            (
                "operator reconciles per job waiting",
                Box::new(|r| {
                    r.reconciles_per_job.insert("await_cache".into(), 1.1);
                }),
            ),
            ("operator peak RSS", Box::new(|r| r.rss_mib = 150.0)),
        ];
        for (target, spoil) in cases {
            let mut bad = good(1000);
            let mut bad_5000 = good(5000);
            spoil(&mut bad);
            spoil(&mut bad_5000);
            let v = verdicts(&a, &[good(100), bad, bad_5000]);
            assert_eq!(met(&v, target), Some(false), "{target}: {v:#?}");
            let missed = v.iter().filter(|v| v.met == Some(false)).count();
            assert_eq!(missed, 1, "only {target} should miss: {v:#?}");
        }
    }

    #[test]
    fn a_target_whose_n_was_not_run_is_not_judged() {
        let v = verdicts(&args(), &[good(100)]);
        for target in [
            "p99 object created",
            "p99 job end",
            "operator throughput",
            "operator reconciles per job waiting",
            "operator peak RSS",
        ] {
            assert_eq!(met(&v, target), None, "{target}: {v:#?}");
        }
        assert_eq!(met(&v, "BlueKing creates"), Some(true));
        let table = render(&args(), &[good(100)]);
        assert!(
            table.contains("| not run | ≤ 1.25 × bare + 0.2 s at N = 1000 and 5000 | – |"),
            "{table}"
        );
    }

    /// At N = 100 the throughput is mostly job time and start-up: reported nowhere in the
    /// verdict, and a poor one there misses nothing.
    #[test]
    fn throughput_at_n_100_is_not_judged() {
        let slow = RunReport {
            throughput: 1.0,
            ..good(100)
        };
        let v = verdicts(&args(), &[slow, good(1000), good(5000)]);
        assert_eq!(met(&v, "operator throughput"), Some(true));
        let throughput = v
            .iter()
            .find(|v| v.target.starts_with("operator throughput"))
            .expect("a throughput target");
        assert!(!throughput.measured.contains("N = 100)"), "{throughput:#?}");
        assert!(
            throughput
                .measured
                .contains("operator 80.00 / bare 85.00 = 0.94 (N = 1000)"),
            "{throughput:#?}"
        );
    }

    /// Without the bare controller (`--skip-bare`) there is no reference: the relative
    /// targets say so and are not judged.
    #[test]
    fn without_the_bare_controller_the_relative_targets_are_not_judged() {
        let skipped = RunReport {
            bare: None,
            ..good(1000)
        };
        let v = verdicts(&args(), &[skipped]);
        for target in ["p99 object created", "p99 job end", "operator throughput"] {
            let verdict = v
                .iter()
                .find(|v| v.target.starts_with(target))
                .expect("a target");
            assert_eq!(verdict.met, None, "{verdict:#?}");
            assert_eq!(verdict.measured, "not run: --skip-bare (N = 1000)");
        }
    }

    /// With the connection's rate limit in the way, the latency is the limit's: reported, not
    /// judged, and the report says why.
    #[test]
    fn the_latency_target_is_not_judged_when_the_rate_limit_is_in_the_way() {
        let slow = RunReport {
            created_p99: 5.0,
            peak_calls_per_sec: 29.0,
            ..good(1000)
        };
        let limited = Cli::parse_from(["bench", "--qps", "10", "--burst", "20"]).bench;
        let v = verdicts(&limited, std::slice::from_ref(&slow));
        let latency = v
            .iter()
            .find(|v| v.target.starts_with("p99 object created"))
            .expect("a latency target");
        assert_eq!(latency.met, None, "{latency:#?}");
        assert!(
            latency
                .measured
                .contains("not judged: the connection's limit (qps 10, burst 20, 64 in flight)"),
            "{latency:#?}"
        );
        // At the raised default, a second whose calls reach qps means the limit was reached.
        let mut busy = slow.clone();
        busy.peak_calls_per_sec = 1000.0;
        let v = verdicts(&args(), &[busy]);
        assert_eq!(met(&v, "p99 object created"), None);
        // One call fewer, and the miss counts.
        let mut under = slow;
        under.peak_calls_per_sec = 999.0;
        let v = verdicts(&args(), &[under]);
        assert_eq!(met(&v, "p99 object created"), Some(false));
    }

    /// The latency depends on how many creates the API server serves at once, so its target
    /// line says how many the run sent.
    #[test]
    fn the_latency_target_names_the_creates_in_flight() {
        let v = verdicts(
            &Cli::parse_from(["bench", "--parallelism", "16"]).bench,
            &[good(1000)],
        );
        let latency = v
            .iter()
            .find(|v| v.target.starts_with("p99 object created"))
            .expect("a latency target");
        assert!(
            latency.target.ends_with(", 16 creates in flight"),
            "{latency:#?}"
        );
    }
}
