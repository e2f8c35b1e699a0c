//! `bkops bench` end to end at a small N, so the documented benchmark command cannot rot: the real
//! binary starts its own control plane, simulator and operator process, and its report must show
//! every object final, the bare controller's figures beside the operator's, and a targets table
//! judged from what it measured.

use std::process::Command;
use std::time::Instant;

/// The line of `text` that starts with `start`.
fn line(text: &str, start: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in\n{text}"))
        .to_owned()
}

/// The numbers in the last cell of a report row, split at `sep`.
fn last_cell_numbers(row: &str, sep: char) -> Vec<f64> {
    let cell = row.rsplit('|').nth(1).unwrap_or_default();
    cell.split(sep)
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("a number in {row:?}"))
        })
        .collect()
}

#[test]
fn bench_reports_every_object_final_and_judges_the_targets() {
    let out = tempfile::tempdir().expect("temp dir");
    let report_path = out.path().join("bench.md");
    let began = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_bkops"))
        .arg("bench")
        .args(["--n", "8", "--job-seconds", "1", "--timeout-seconds", "90"])
        .args(["--repeat", "2"])
        // The relative verdicts are for N = 1000 and 5000; judged here at this N, so that their
        // lines show measured, reference and ratio.
        .args(["--judge-n", "8"])
        .arg("--out")
        .arg(&report_path)
        .output()
        .expect("running bkops bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "bkops bench took {:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        began.elapsed().as_secs_f32()
    );
    assert!(
        output.status.success(),
        "bkops bench failed: {}",
        output.status
    );
    let report = std::fs::read_to_string(&report_path).expect("--out writes the report");
    assert_eq!(report.trim(), stdout.trim(), "--out holds what was printed");

    let row = |name: &str| line(&report, &format!("| {name} |"));
    assert_eq!(
        row("objects final (succeeded)"),
        "| objects final (succeeded) | 8 (8) |"
    );
    assert_eq!(row("BK creates per run"), "| BK creates per run | 1.00 |");
    // Each kind's create and status calls reached the simulator, two objects per kind.
    for system in ["bkflow", "gsekit", "job", "nodeman"] {
        assert_eq!(
            row(&format!("BK {system} create per job")),
            format!("| BK {system} create per job | 1.00 |")
        );
    }
    // The bare controller followed the same N objects: its figures are numbers.
    assert_eq!(
        row("bare controller: objects final"),
        "| bare controller: objects final | 8 |"
    );
    for name in [
        "bare controller: object created → BlueKing create p50 / p99 (s)",
        "bare controller: job end → status final p50 / p99 (s)",
        "bare controller: peak RSS (MiB) / CPU (s)",
    ] {
        let figures = last_cell_numbers(&row(name), '/');
        assert_eq!(figures.len(), 2, "{name}: {report}");
    }
    let throughput = row("bare controller: throughput (jobs/s, net of job time)");
    assert!(last_cell_numbers(&throughput, '/')[0] > 0.0, "{throughput}");
    assert_eq!(
        row("bare controller: status PATCHes per job"),
        "| bare controller: status PATCHes per job | 3.00 |"
    );
    // Two runs: the one shown and the p99 of each.
    let each = row("… p99 of each run, in order (s)");
    let p99s = last_cell_numbers(&each, ',');
    assert_eq!(p99s.len(), 2, "{each}");
    // The run shown is the median one: of two, the lower.
    let shown = row("object created → BlueKing create p50 / p99 (s)");
    let pair = last_cell_numbers(&shown, '/');
    assert_eq!(pair.len(), 2, "a p50 / p99 pair: {shown}");
    let shown_p99 = pair[1];
    assert_eq!(shown_p99, p99s[0].min(p99s[1]), "{shown}\n{each}");
    // Every object's submission waited for a slot of the decide lane; no Event was dropped.
    assert!(
        !row("wait for a reconcile slot, decide lane: p99 bucket ≤ / mean (s)").contains('–'),
        "{report}"
    );
    // Every create told how long it waited for the connection's rate limit.
    assert!(
        !row("BK job calls' wait for the rate limit: p99 bucket ≤ / mean (s)").contains('–'),
        "{report}"
    );
    // Per kind: the bench's watch saw every kind's objects, and each kind's jobs were polled.
    for kind in bkops::bench::workload::KINDS {
        let by_kind = row(&format!(
            "{kind}: the watch's delay p99 (s) / waits for the cache / polls, per object"
        ));
        let figures = last_cell_numbers(&by_kind, '/');
        assert_eq!(figures.len(), 3, "{by_kind}");
        assert!(figures[0] >= 0.0, "a watch delay: {by_kind}");
        assert!(
            figures[2] >= 1.0,
            "each object polled at least once: {by_kind}"
        );
    }
    assert_eq!(
        row("operator Events per job: dropped"),
        "| operator Events per job: dropped | 0.00 |"
    );
    // The targets table: measured next to target; the count targets hold at any N.
    let targets = report.split("Targets:").nth(1).expect("a targets table");
    let target = |starts: &str| line(targets, &format!("| {starts}"));
    assert_eq!(
        target("BlueKing creates per run"),
        "| BlueKing creates per run | 1.00 (N = 8) | ≤ 1 | yes |"
    );
    assert!(
        target("status writes per run").ends_with("| ≤ 3 | yes |"),
        "{targets}"
    );
    // The verdicts against the bare controller: operator, reference and ratio, judged.
    for starts in [
        "p99 object created → BlueKing create",
        "p99 job end → status final",
        "operator throughput",
    ] {
        let verdict = target(starts);
        let measured = verdict.split('|').nth(2).unwrap_or_default();
        let ratio = measured
            .split(" = ")
            .nth(1)
            .and_then(|r| r.split([' ', ';']).next())
            .and_then(|r| r.parse::<f64>().ok());
        assert!(
            measured.trim_start().starts_with("operator ")
                && measured.contains("/ bare ")
                && ratio.is_some_and(f64::is_finite),
            "{verdict}"
        );
        assert!(
            verdict.ends_with("| yes |") || verdict.ends_with("| **no** |"),
            "{verdict}"
        );
    }
    // Targets at N this run did not make are reported as not run, not judged.
    assert!(
        target("operator reconciles per job waiting for its own write")
            .ends_with("| not run | ≤ 1 | – |"),
        "{targets}"
    );
}

/// `bkops bench --history N` at a small N: the report shows the history's measures and every
/// target judged; a fresh operator over finished jobs makes no BlueKing call and no status write.
#[test]
fn bench_history_reports_a_quiet_operator_over_finished_jobs() {
    let output = Command::new(env!("CARGO_BIN_EXE_bkops"))
        .arg("bench")
        .args(["--history", "40", "--timeout-seconds", "60"])
        .output()
        .expect("running bkops bench --history");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert!(output.status.success(), "bkops bench --history failed");
    assert!(stdout.contains("## History: 40 finished jobs"), "{stdout}");
    let row = |name: &str| line(&stdout, &format!("| {name} |"));
    assert_eq!(
        row("history: BlueKing calls after the start"),
        "| history: BlueKing calls after the start | 0 | 0 | yes |"
    );
    assert_eq!(
        row("history: status writes after the start"),
        "| history: status writes after the start | 0 | 0 | yes |"
    );
    assert!(
        row("history: every object seen and idle after the start").ends_with("| yes |"),
        "{stdout}"
    );
    let rss = row("operator peak RSS (MiB)");
    assert!(last_cell_numbers(&rss, '/')[0] > 1.0, "{rss}");
}
