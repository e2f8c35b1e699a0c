//! The report as printed: a line per run while the bench goes, then the Markdown table of every
//! measure, with the targets after it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::args::BenchArgs;
use super::report::{BareFigures, LANES, RunReport, p99_of_each_run};
use super::workload::KINDS;
use super::{Num, probe, targets};
use crate::controller::metrics::WAIT_CLASSES;

/// A p50 / p99 pair as the report prints it.
fn pair(p50: f64, p99: f64) -> String {
    format!("{:.2} / {:.2}", Num(p50), Num(p99))
}

/// A histogram's p99 bucket and mean as a report cell, `–` when nothing was observed.
fn wait_cell(wait: Option<&(probe::Bucket, f64)>) -> String {
    wait.map(|(p99, mean)| format!("{p99} / {:.3}", Num(*mean)))
        .unwrap_or_else(|| "–".into())
}

pub(super) fn one_line(r: &RunReport) -> String {
    format!(
        "  N={}: {}/{} final ({} succeeded), created→submit p50 {:.2}s p99 {:.2}s, sent→submit p50 {:.2}s p99 {:.2}s (p99 create call {:.2}s, to intent {:.2}s, intent to BK {:.2}s), finish→status p50 {:.2}s p99 {:.2}s, drain {:.1}s, status writes/job {:.2}, creates/run {:.2}, peak {:.0} calls/s, RSS {:.1} MiB, CPU {:.1}s",
        r.n,
        r.finished,
        r.n,
        r.succeeded,
        Num(r.created_p50),
        Num(r.created_p99),
        Num(r.submit_p50),
        Num(r.submit_p99),
        Num(r.submit_parts[0].1),
        Num(r.submit_parts[1].1),
        Num(r.submit_parts[2].1),
        Num(r.finish_p50),
        Num(r.finish_p99),
        Num(r.drain),
        Num(r.status_writes_per_job),
        Num(r.creates_per_run),
        Num(r.peak_calls_per_sec),
        Num(r.rss_mib),
        Num(r.cpu_secs)
    )
}

pub(super) fn render_report(args: &BenchArgs, reports: &[RunReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Job duration {} s; {} creates in flight; rate limit qps {} burst {} in-flight {}; operator concurrency {} per kind and lane (bare controller: as many objects submitting at once); polls {}–{} s; {}.\n",
        Num(args.job_seconds),
        args.parallelism,
        args.qps,
        args.burst,
        args.max_in_flight,
        args.concurrency,
        Num(args.poll_initial_seconds),
        Num(args.poll_max_seconds),
        if args.repeat > 1 {
            format!(
                "{} runs of each N, each column the run with the median p99 object created → BlueKing create",
                args.repeat
            )
        } else {
            "one run of each N".to_owned()
        }
    );
    let cols: String = reports.iter().map(|r| format!(" N = {} |", r.n)).collect();
    let sep: String = reports.iter().map(|_| " ---: |").collect();
    let _ = writeln!(s, "| measure |{cols}\n| --- |{sep}");
    let row = |s: &mut String, name: &str, f: &dyn Fn(&RunReport) -> String| {
        let cells: String = reports.iter().map(|r| format!(" {} |", f(r))).collect();
        let _ = writeln!(s, "| {name} |{cells}");
    };
    // One row per key of a per-job map: the `fixed` keys in that order, or else every key any
    // run has, sorted.
    let per_job_rows = |s: &mut String,
                        fixed: &[&str],
                        map: &dyn Fn(&RunReport) -> &BTreeMap<String, f64>,
                        name: &dyn Fn(&str) -> String| {
        let mut keys: Vec<String> = fixed.iter().map(|k| (*k).to_owned()).collect();
        if keys.is_empty() {
            keys = reports
                .iter()
                .flat_map(|r| map(r).keys().cloned())
                .collect();
            keys.sort();
            keys.dedup();
        }
        for k in keys {
            row(s, &name(&k), &|r| {
                format!("{:.2}", Num(map(r).get(&k).copied().unwrap_or(0.0)))
            });
        }
    };
    row(&mut s, "objects final (succeeded)", &|r| {
        format!("{} ({})", r.finished, r.succeeded)
    });
    row(&mut s, "bench creates took (s)", &|r| {
        format!("{:.1}", Num(r.create_secs))
    });
    row(
        &mut s,
        "object created → BlueKing create p50 / p99 (s)",
        &|r| pair(r.created_p50, r.created_p99),
    );
    if args.repeat > 1 {
        row(&mut s, "… p99 of each run, in order (s)", &p99_of_each_run);
    }
    row(
        &mut s,
        "create sent → BlueKing create p50 / p99 (s)",
        &|r| pair(r.submit_p50, r.submit_p99),
    );
    for (i, part) in [
        "… the create call (sent → answered)",
        "… its answer → the operator's intent (watch, queue)",
        "… intent → BlueKing create (intent PATCH, create call)",
    ]
    .iter()
    .enumerate()
    {
        row(&mut s, &format!("{part} p50 / p99 (s)"), &|r| {
            pair(r.submit_parts[i].0, r.submit_parts[i].1)
        });
    }
    row(
        &mut s,
        "… … of which the watch's delay (the bench's own watch) p50 / p99 (s)",
        &|r| pair(r.watch_delay.0, r.watch_delay.1),
    );
    row(&mut s, "job end → status final p50 / p99 (s)", &|r| {
        pair(r.finish_p50, r.finish_p99)
    });
    row(&mut s, "drain: first create → last final (s)", &|r| {
        format!("{:.1}", Num(r.drain))
    });
    row(
        &mut s,
        "operator throughput (jobs/s, net of job time)",
        &|r| format!("{:.0}", Num(r.throughput)),
    );
    // The bare controller's figures of the same run: the reference of the targets.
    let bare = |s: &mut String, name: &str, f: &dyn Fn(&RunReport, &BareFigures) -> String| {
        row(s, &format!("bare controller: {name}"), &|r| {
            r.bare.as_ref().map_or("–".into(), |b| f(r, b))
        });
    };
    bare(&mut s, "objects final", &|_, b| b.finished.to_string());
    bare(
        &mut s,
        "object created → BlueKing create p50 / p99 (s)",
        &|_, b| pair(b.created_p50, b.created_p99),
    );
    bare(&mut s, "job end → status final p50 / p99 (s)", &|_, b| {
        pair(b.finish_p50, b.finish_p99)
    });
    bare(&mut s, "drain (s)", &|_, b| format!("{:.1}", Num(b.drain)));
    bare(&mut s, "throughput (jobs/s, net of job time)", &|_, b| {
        format!("{:.0}", Num(b.throughput))
    });
    row(
        &mut s,
        "operator throughput / the bare controller's",
        &|r| {
            r.bare.as_ref().map_or("–".into(), |b| {
                format!("{:.0} %", Num(100.0 * r.throughput / b.throughput))
            })
        },
    );
    bare(&mut s, "status PATCHes per job", &|_, b| {
        format!("{:.2}", Num(b.status_writes_per_job))
    });
    bare(&mut s, "peak RSS (MiB) / CPU (s)", &|_, b| {
        format!("{:.1} / {:.1}", Num(b.rss_mib), Num(b.cpu_secs))
    });
    row(&mut s, "status PATCHes per job", &|r| {
        format!("{:.2}", Num(r.status_writes_per_job))
    });
    per_job_rows(
        &mut s,
        &["intent", "change", "progress"],
        &|r| &r.status_writes_by_reason,
        &|why| format!("… of which {why}"),
    );
    per_job_rows(
        &mut s,
        &["create", "update", "failed"],
        &|r| &r.record_writes_per_job,
        &|outcome| format!("run record writes per job: {outcome}"),
    );
    // Three per job in the end (one per phase change); all outcomes shown, `dropped` above all.
    per_job_rows(
        &mut s,
        &["published", "failed", "dropped"],
        &|r| &r.events_per_job,
        &|outcome| format!("operator Events per job: {outcome}"),
    );
    per_job_rows(&mut s, &[], &|r| &r.reconciles_per_job, &|k| {
        format!("operator reconciles per job: {k}")
    });
    for kind in KINDS {
        row(
            &mut s,
            &format!("{kind}: the watch's delay p99 (s) / waits for the cache / polls, per object"),
            &|r| {
                r.by_kind.get(kind).map_or("–".into(), |k| {
                    format!(
                        "{:.2} / {:.2} / {:.2}",
                        Num(k.watch_delay_p99),
                        Num(k.cache_waits),
                        Num(k.polls)
                    )
                })
            },
        );
    }
    for lane in LANES {
        row(
            &mut s,
            &format!("wait for a reconcile slot, {lane} lane: p99 bucket ≤ / mean (s)"),
            &|r| wait_cell(r.slot_wait.get(lane)),
        );
    }
    for class in WAIT_CLASSES {
        row(
            &mut s,
            &format!("BK {class} calls' wait for the rate limit: p99 bucket ≤ / mean (s)"),
            &|r| wait_cell(r.limit_wait.get(class)),
        );
    }
    per_job_rows(&mut s, &[], &|r| &r.kube_per_job, &|k| {
        format!("k8s {k} per job")
    });
    per_job_rows(&mut s, &[], &|r| &r.bk_per_job, &|k| {
        format!("BK {k} per job")
    });
    row(&mut s, "BK creates per run", &|r| {
        format!("{:.2}", Num(r.creates_per_run))
    });
    row(&mut s, "BK calls/s: peak 1-s window / mean", &|r| {
        format!(
            "{:.0} / {:.0}",
            Num(r.peak_calls_per_sec),
            Num(r.mean_calls_per_sec)
        )
    });
    row(&mut s, "BKFlow task polls per batch call", &|r| {
        format!("{:.1}", Num(r.bkflow_tasks_per_batch))
    });
    row(&mut s, "BKFlow batch calls/s (2 spaces)", &|r| {
        format!("{:.1}", Num(r.bkflow_batch_calls_per_sec))
    });
    row(&mut s, "operator peak RSS (MiB)", &|r| {
        format!("{:.1}", Num(r.rss_mib))
    });
    row(&mut s, "operator CPU (s)", &|r| {
        format!("{:.1}", Num(r.cpu_secs))
    });
    row(&mut s, "kube-apiserver + etcd CPU (s)", &|r| {
        format!("{:.1}", Num(r.control_plane_cpu_secs))
    });
    row(
        &mut s,
        "bench process CPU: simulator, creates, watches (s)",
        &|r| format!("{:.1}", Num(r.bench_cpu_secs)),
    );
    let _ = write!(s, "\nTargets:\n\n{}", targets::render(args, reports));
    s
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::bench::KindFigures;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn the_report_never_shows_a_negative_zero() {
        // Differences of two readings that came out a hair below zero.
        let tiny = -0.0004;
        let report = RunReport {
            n: 10,
            created_p50: -0.0,
            created_p99: tiny,
            created_p99_of_runs: vec![tiny, -0.0],
            submit_parts: [(tiny, tiny); 3],
            watch_delay: (tiny, -0.0),
            by_kind: KINDS
                .iter()
                .map(|k| {
                    (
                        *k,
                        KindFigures {
                            watch_delay_p99: tiny,
                            cache_waits: -0.0,
                            polls: tiny,
                        },
                    )
                })
                .collect(),
            drain: tiny,
            create_secs: tiny,
            throughput: -0.4,
            bare: Some(BareFigures {
                created_p99: tiny,
                finish_p50: -0.0,
                throughput: 1.0,
                cpu_secs: tiny,
                ..BareFigures::default()
            }),
            kube_per_job: [("POST x".to_owned(), tiny)].into_iter().collect(),
            status_writes_by_reason: [("progress".to_owned(), tiny)].into_iter().collect(),
            slot_wait: [("decide", (probe::Bucket::AtMost(-0.0), tiny))]
                .into_iter()
                .collect(),
            cpu_secs: tiny,
            control_plane_cpu_secs: -0.0,
            bench_cpu_secs: tiny,
            ..RunReport::default()
        };
        let args = Cli::parse_from(["bench", "--repeat", "2"]).bench;
        let text = render_report(&args, std::slice::from_ref(&report)) + &one_line(&report);
        assert!(!text.contains("-0"), "{text}");
        assert!(text.contains("| 0.00 / 0.00 |"), "{text}");
    }
}
