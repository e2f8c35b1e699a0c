//! Statuses as the operator writes them, made with the operator's own rendering, for the bare
//! client's ceiling (the same three patches) and for the memory bench (a realistic status).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::JobStatus;
use crate::api::common::{FailedTarget, Phase, RunStatus, TargetSummary};
use crate::run::reason;
use crate::run::status::{merge_diff, push_history, render};

/// The intent, job-id and end statuses of run `key`, each rendered over the one before.
pub fn lifecycle(key: &str, job_id: u64, now: DateTime<Utc>) -> [JobStatus; 3] {
    let empty = JobStatus::default();
    let mut run = RunStatus {
        key: key.to_owned(),
        generation: 1,
        attempt: 0,
        spec_hash: "3f9a1c0b7e5d2a64".to_owned(),
        phase: Phase::Submitting,
        intent_at: Some(now),
        ..Default::default()
    };
    let intent = render(
        &empty,
        1,
        Phase::Submitting,
        reason::SUBMITTING,
        format!("submitting run {key}"),
        Some(run.clone()),
        now,
    );
    run.job_id = Some(job_id.to_string());
    run.job_url = Some(format!(
        "https://bk.example.com/job/biz/2/execute/task/{job_id}"
    ));
    run.submitted_at = Some(now);
    run.phase = Phase::Running;
    run.reason = Some(reason::RUNNING.to_owned());
    let id = render(
        &intent,
        1,
        Phase::Running,
        reason::RUNNING,
        format!("submitted JOB instance {job_id} (run {key})"),
        Some(run.clone()),
        now,
    );
    run.started = true;
    run.phase = Phase::Succeeded;
    run.reason = Some(reason::SUCCEEDED.to_owned());
    run.upstream_state = Some("SUCCESS".to_owned());
    run.start_time = Some(now);
    run.completion_time = Some(now);
    run.summary = Some(TargetSummary {
        total: 2,
        succeeded: 2,
        ..Default::default()
    });
    let mut end = render(
        &id,
        1,
        Phase::Succeeded,
        reason::SUCCEEDED,
        format!("JOB instance {job_id} succeeded: 2/2 targets"),
        Some(run.clone()),
        now,
    );
    push_history(&mut end.history, &run);
    [intent, id, end]
}

/// The three status patches (minimal merge patches, as the operator sends them) of a run.
pub fn lifecycle_patches(key: &str, job_id: u64, now: DateTime<Utc>) -> [Value; 3] {
    let [intent, id, end] = lifecycle(key, job_id, now);
    let to = |s: &JobStatus| serde_json::to_value(s).unwrap_or(Value::Null);
    let empty = to(&JobStatus::default());
    let (i, d, e) = (to(&intent), to(&id), to(&end));
    let patch = |old: &Value, new: &Value| json!({"status": merge_diff(old, new).unwrap_or_else(|| json!({}))});
    [patch(&empty, &i), patch(&i, &d), patch(&d, &e)]
}

/// A finished run's status after `runs` runs, with `failed` failed targets listed: what a
/// cached object of a job that ran a while carries.
pub fn realistic(runs: usize, failed: usize, now: DateTime<Utc>) -> JobStatus {
    let mut status = JobStatus::default();
    for r in 0..runs.max(1) {
        let key = format!("9c1e7a2b-g{}-a0", r + 1);
        let [_, _, mut end] = lifecycle(&key, 100_000 + r as u64, now);
        let mut history = std::mem::take(&mut status.history);
        if let Some(run) = end.run.as_mut() {
            run.failed_targets = (0..failed)
                .map(|t| FailedTarget {
                    target: format!("10.0.{}.{} (cloud 0)", t / 250, t % 250 + 1),
                    reason: "script exited with code 1: connection refused by 10.0.0.1:8080"
                        .to_owned(),
                })
                .collect();
            if let Some(s) = run.summary.as_mut() {
                s.total += failed as u32;
                s.failed = failed as u32;
            }
            push_history(&mut history, run);
        }
        end.history = history;
        status = end;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_carry_only_what_changed() {
        let [intent, id, end] = lifecycle_patches("abc-g1-a0", 7, Utc::now());
        assert_eq!(intent["status"]["phase"], "Submitting");
        assert_eq!(id["status"]["run"]["jobId"], "7");
        assert!(id["status"].get("observedGeneration").is_none());
        assert_eq!(end["status"]["phase"], "Succeeded");
    }

    #[test]
    fn realistic_status_keeps_bounded_history() {
        let s = realistic(20, 5, Utc::now());
        assert!(!s.history.is_empty());
        assert!(s.history.len() <= crate::api::common::MAX_HISTORY);
        assert_eq!(s.run.map(|r| r.failed_targets.len()), Some(5));
    }
}
