//! `bkops demo` end to end: the real binary starts its own control plane, simulator and operator,
//! runs every example and must end with each run matching the simulator, one create each.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
fn demo_runs_every_example_to_a_final_phase_matching_the_simulator() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let began = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_bkops"))
        .arg("demo")
        .arg("--examples")
        .arg(&examples)
        .args(["--job-seconds", "1", "--timeout-seconds", "45"])
        .args(["--namespace", "demo-e2e"])
        .env("NO_COLOR", "1")
        .output()
        .expect("running bkops demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "bkops demo took {:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        began.elapsed().as_secs_f32()
    );
    assert!(
        output.status.success(),
        "bkops demo failed: {}",
        output.status
    );
    assert!(
        stdout.lines().any(|l| l == bkops::demo::ALL_MATCHED),
        "the summary does not say every run matched the simulator"
    );
    let summary = stdout
        .split("Summary:")
        .nth(1)
        .expect("a summary is printed");
    let rows: Vec<&str> = summary.lines().filter(|l| l.ends_with("matches")).collect();
    assert_eq!(
        rows.len(),
        11,
        "one matching line per example job:\n{summary}"
    );
    // The simulator's twists show: one run fails with a failed target, one waited for a person.
    assert!(
        rows.iter()
            .any(|l| l.contains(" Failed ") && l.contains("PART_FAILED") && l.contains("1 failed")),
        "{summary}"
    );
    assert!(
        rows.iter()
            .any(|l| l.contains(" Succeeded ") && l.contains("approved by the demo")),
        "{summary}"
    );
    assert!(
        stdout.contains("WaitingForUser"),
        "the table showed a run waiting for a person"
    );
    assert!(
        summary.contains("GSEKit 5/5, BKFlow 2/2, NodeMan 2/2, JOB 2/2"),
        "{summary}"
    );
    // The last act: every job re-created from the same YAML adopts its run, with no create (the
    // counts above are taken after it), and every run is on record.
    assert!(
        stdout.contains("11 of 11 re-created jobs adopted their earlier run from its record"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Run records (kubectl get bkruns -n "),
        "{stdout}"
    );
    let records = stdout
        .split("Run records (kubectl get bkruns")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.trim_start().starts_with(|c: char| c.is_ascii_lowercase()) && l.contains("-g1-a")
        })
        .count();
    assert_eq!(records, 11, "one record per run of the demo:\n{stdout}");
}
