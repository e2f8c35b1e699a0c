//! Statuses as the operator writes them, made with the operator's own rendering: the steps of
//! a run for the bare controller (intent, job id, end), the same three patches, and a realistic
//! status for the memory bench.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::JobStatus;
use crate::api::common::{FailedTarget, Phase, RunStatus, TargetSummary};
use crate::bk::facade::JobRef;
use crate::bk::job::ScopeType;
use crate::run::reason;
use crate::run::status::{merge_diff, push_history, render};

/// The intent of run `key` of an object at `generation`: the run, and the status written
/// before the create.
pub fn intent(key: &str, generation: i64, now: DateTime<Utc>) -> (RunStatus, JobStatus) {
    let run = RunStatus {
        key: key.to_owned(),
        generation,
        attempt: 0,
        spec_hash: "3f9a1c0b7e5d2a64".to_owned(),
        phase: Phase::Submitting,
        intent_at: Some(now),
        ..Default::default()
    };
    let status = render(
        &JobStatus::default(),
        generation,
        Phase::Submitting,
        reason::SUBMITTING,
        format!("submitting run {key}"),
        Some(run.clone()),
        now,
    );
    (run, status)
}

/// The record of `run`'s created `job` over the intent `status`: the run, and the status.
pub fn recorded(
    status: &JobStatus,
    mut run: RunStatus,
    job: &JobRef,
    job_url: Option<String>,
    now: DateTime<Utc>,
) -> (RunStatus, JobStatus) {
    run.job_id = Some(job.id());
    run.job_url = job_url;
    run.submitted_at = Some(now);
    run.phase = Phase::Running;
    run.reason = Some(reason::RUNNING.to_owned());
    let message = format!("submitted {job} (run {})", run.key);
    let generation = run.generation;
    let status = render(
        status,
        generation,
        Phase::Running,
        reason::RUNNING,
        message,
        Some(run.clone()),
        now,
    );
    (run, status)
}

/// The end of `run` (its phase and reason already final) over `status`, into history.
pub fn ended(
    status: &JobStatus,
    run: &RunStatus,
    message: String,
    now: DateTime<Utc>,
) -> JobStatus {
    let why = run.reason.clone().unwrap_or_default();
    let mut end = render(
        status,
        run.generation,
        run.phase,
        &why,
        message,
        Some(run.clone()),
        now,
    );
    push_history(&mut end.history, run);
    end
}

/// The minimal merge patch from `old` to `new`, as the operator sends it.
pub fn patch(old: &JobStatus, new: &JobStatus) -> Value {
    let to = |s: &JobStatus| serde_json::to_value(s).unwrap_or(Value::Null);
    json!({"status": merge_diff(&to(old), &to(new)).unwrap_or_else(|| json!({}))})
}

/// The intent, job-id and end statuses of run `key`, each rendered over the one before.
pub fn lifecycle(key: &str, job_id: u64, now: DateTime<Utc>) -> [JobStatus; 3] {
    let (run, intent) = intent(key, 1, now);
    let job = JobRef::JobV3 {
        scope_type: ScopeType::Biz,
        scope_id: "2".to_owned(),
        job_instance_id: job_id as i64,
    };
    let url = format!("https://bk.example.com/job/biz/2/execute/task/{job_id}");
    let (mut run, id) = recorded(&intent, run, &job, Some(url), now);
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
    let message = format!("{job} succeeded: 2/2 targets");
    let end = ended(&id, &run, message, now);
    [intent, id, end]
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
        let [intent_status, id_status, end_status] = lifecycle("abc-g1-a0", 7, Utc::now());
        let intent = patch(&JobStatus::default(), &intent_status);
        let id = patch(&intent_status, &id_status);
        let end = patch(&id_status, &end_status);
        assert_eq!(intent["status"]["phase"], "Submitting");
        assert_eq!(id["status"]["run"]["jobId"], "7");
        assert!(id["status"].get("observedGeneration").is_none());
        assert_eq!(end["status"]["phase"], "Succeeded");
        assert!(end["status"]["run"].get("key").is_none());
    }

    #[test]
    fn realistic_status_keeps_bounded_history() {
        let s = realistic(20, 5, Utc::now());
        assert!(!s.history.is_empty());
        assert!(s.history.len() <= crate::api::common::MAX_HISTORY);
        assert_eq!(s.run.map(|r| r.failed_targets.len()), Some(5));
    }
}
