//! Status rendering: kstatus conditions, progress, history, and the minimal merge patch that
//! takes the old status to the new one (nothing is written when nothing changed).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::api::JobStatus;
use crate::api::common::{
    Condition, FailedTarget, MAX_FAILED_TARGETS, MAX_HISTORY, Phase, RunRecord, RunStatus,
    TargetSummary,
};
use crate::bk::facade::{JobPhase, Progress};

use super::reason;

/// Builds the conditions for `phase`, keeping `lastTransitionTime` of conditions whose status
/// did not change.
pub fn conditions(
    old: &[Condition],
    phase: Phase,
    why: &str,
    message: &str,
    generation: i64,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let make = |type_: &str, status: bool| {
        let status = if status { "True" } else { "False" };
        let last = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time)
            .unwrap_or(now);
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: why.to_owned(),
            message: message.to_owned(),
            last_transition_time: Some(last),
            observed_generation: Some(generation),
        }
    };
    let mut out = vec![make("Ready", phase == Phase::Succeeded)];
    // A create that has not reached BlueKing for a while makes no progress by itself, though it
    // is still tried: Stalled, so that people and GitOps tools see it.
    use super::reason;
    let blocked = [
        reason::CONNECTION_UNREACHABLE,
        reason::SUBMIT_BLOCKED,
        reason::JOB_UNADDRESSABLE,
        reason::DEPENDENCY_FAILED,
    ]
    .contains(&why);
    match phase {
        Phase::Pending | Phase::Submitting | Phase::Running | Phase::WaitingForUser if blocked => {
            out.push(make("Stalled", true));
        }
        Phase::Pending | Phase::Submitting | Phase::Running | Phase::WaitingForUser => {
            out.push(make("Reconciling", true));
        }
        Phase::Failed | Phase::Cancelled | Phase::Unknown => out.push(make("Stalled", true)),
        Phase::Succeeded | Phase::Suspended => {}
    }
    match phase {
        Phase::Succeeded => out.push(make("Succeeded", true)),
        Phase::Failed | Phase::Cancelled => out.push(make("Succeeded", false)),
        _ => {}
    }
    out
}

/// The whole status for `phase`, `run` and `message` at `generation`.
pub fn render(
    old: &JobStatus,
    generation: i64,
    phase: Phase,
    why: &str,
    message: String,
    run: Option<RunStatus>,
    now: DateTime<Utc>,
) -> JobStatus {
    JobStatus {
        observed_generation: Some(generation),
        phase: Some(phase),
        conditions: conditions(&old.conditions, phase, why, &message, generation, now),
        run,
        history: old.history.clone(),
        last_handled_rerun_at: old.last_handled_rerun_at.clone(),
        message: Some(message),
    }
}

/// Moves a finished `run` into the history (newest first, capped).
pub fn push_history(history: &mut Vec<RunRecord>, run: &RunStatus) {
    history.retain(|h| h.key != run.key);
    history.insert(
        0,
        RunRecord {
            key: run.key.clone(),
            job_id: run.job_id.clone(),
            phase: run.phase,
            submitted_at: run.submitted_at,
            completion_time: run.completion_time,
        },
    );
    history.truncate(MAX_HISTORY);
}

/// Applies a poll answer to the run: phase, counts, failed targets, times. `cancel_requested`
/// turns a failure that follows our cancel (NodeMan's revoke ends FAILED) into `Cancelled`.
pub fn apply_progress(run: &RunStatus, p: &Progress, now: DateTime<Utc>) -> (RunStatus, String) {
    let mut r = run.clone();
    r.upstream_state = Some(p.upstream_state.clone());
    r.summary = Some(TargetSummary {
        total: p.summary.total,
        succeeded: p.summary.succeeded,
        failed: p.summary.failed,
        running: p.summary.running,
        pending: p.summary.pending,
        ignored: p.summary.ignored,
    });
    r.failed_targets = p
        .failed_targets
        .iter()
        .take(MAX_FAILED_TARGETS)
        .map(|t| FailedTarget {
            target: t.target.clone(),
            reason: truncate(&t.reason, 256),
        })
        .collect();
    if r.start_time.is_none() {
        r.start_time = p.started_at;
    }
    let counts = || {
        let s = &p.summary;
        if s.total > 0 {
            format!(
                " ({} of {} targets succeeded, {} failed)",
                s.succeeded, s.total, s.failed
            )
        } else {
            String::new()
        }
    };
    let detail = p
        .message
        .as_deref()
        .map(|m| format!(": {}", truncate(m, 512)))
        .unwrap_or_default();
    let (phase, why, message) = match p.phase {
        JobPhase::NotStarted | JobPhase::Running => (
            Phase::Running,
            reason::RUNNING,
            format!("running{}", counts()),
        ),
        JobPhase::WaitingForUser => (
            Phase::WaitingForUser,
            reason::WAITING_FOR_USER,
            format!(
                "waiting for a person to act in BlueKing (state {}){detail}",
                p.upstream_state
            ),
        ),
        JobPhase::Succeeded => (
            Phase::Succeeded,
            reason::SUCCEEDED,
            format!("succeeded{}", counts()),
        ),
        JobPhase::Failed if r.cancel_requested_at.is_some() => (
            Phase::Cancelled,
            reason::CANCELLED,
            format!(
                "cancelled; BlueKing reports {}{}",
                p.upstream_state,
                counts()
            ),
        ),
        JobPhase::Failed => (
            Phase::Failed,
            reason::JOB_FAILED,
            format!(
                "failed in BlueKing (state {}){}{detail}",
                p.upstream_state,
                counts()
            ),
        ),
        JobPhase::Cancelled => (
            Phase::Cancelled,
            reason::CANCELLED,
            format!("cancelled (state {})", p.upstream_state),
        ),
    };
    r.phase = phase;
    r.reason = Some(why.to_owned());
    if phase.is_final() {
        r.completion_time = Some(p.finished_at.unwrap_or(now));
    }
    (r, message)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// RFC 7386 merge patch from `old` to `new`: changed keys, and `null` for removed ones.
/// Arrays are replaced whole. Returns `None` when nothing differs.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(p) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), p);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ if old == new => None,
        _ => Some(new.clone()),
    }
}

/// Whether only progress moved (same phase, same job): such writes are throttled.
pub fn progress_only(old: &JobStatus, new: &JobStatus) -> bool {
    let (Some(o), Some(n)) = (&old.run, &new.run) else {
        return false;
    };
    old.phase == new.phase
        && old.observed_generation == new.observed_generation
        && o.key == n.key
        && o.phase == n.phase
        && o.job_id == n.job_id
        // A job seen started is progress: it rides on a throttled write.
        && (o.started == n.started || n.started)
        && o.cancel_requested_at == n.cancel_requested_at
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_job_seen_started_is_progress_but_a_new_job_is_not() {
        let run = RunStatus {
            key: "k".into(),
            phase: Phase::Running,
            job_id: Some("1".into()),
            ..Default::default()
        };
        let old = JobStatus {
            phase: Some(Phase::Running),
            run: Some(run.clone()),
            ..Default::default()
        };
        let mut started = old.clone();
        if let Some(r) = started.run.as_mut() {
            r.started = true;
        }
        assert!(progress_only(&old, &started));
        assert!(!progress_only(&started, &old));
        let mut other_job = old.clone();
        if let Some(r) = other_job.run.as_mut() {
            r.job_id = Some("2".into());
        }
        assert!(!progress_only(&old, &other_job));
    }

    #[test]
    fn merge_diff_nulls_removed_keys_and_skips_equal_values() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]});
        let new = json!({"a": 1, "b": {"c": 2}, "e": [1], "f": "x"});
        assert_eq!(
            merge_diff(&old, &new),
            Some(json!({"b": {"d": null}, "e": [1], "f": "x"}))
        );
        assert_eq!(merge_diff(&old, &old), None);
    }

    #[test]
    fn conditions_follow_kstatus() {
        let now = Utc::now();
        let kinds = |phase| {
            conditions(&[], phase, "R", "m", 3, now)
                .into_iter()
                .map(|c| format!("{}={}", c.type_, c.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(Phase::Running), ["Ready=False", "Reconciling=True"]);
        assert_eq!(kinds(Phase::Pending), ["Ready=False", "Reconciling=True"]);
        for (phase, blocked) in [
            (Phase::Pending, "ConnectionUnreachable"),
            (Phase::Pending, "SubmitBlocked"),
            (Phase::Running, "JobUnaddressable"),
        ] {
            let types: Vec<_> = conditions(&[], phase, blocked, "m", 3, now)
                .into_iter()
                .map(|c| format!("{}={}", c.type_, c.status))
                .collect();
            assert_eq!(types, ["Ready=False", "Stalled=True"], "{blocked}");
        }
        assert_eq!(
            kinds(Phase::WaitingForUser),
            ["Ready=False", "Reconciling=True"]
        );
        assert_eq!(kinds(Phase::Succeeded), ["Ready=True", "Succeeded=True"]);
        assert_eq!(
            kinds(Phase::Failed),
            ["Ready=False", "Stalled=True", "Succeeded=False"]
        );
        assert_eq!(kinds(Phase::Unknown), ["Ready=False", "Stalled=True"]);
        assert_eq!(kinds(Phase::Suspended), ["Ready=False"]);
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let t0 = Utc::now() - chrono::Duration::minutes(5);
        let old = conditions(&[], Phase::Running, "Running", "a", 1, t0);
        let now = Utc::now();
        let same = conditions(&old, Phase::WaitingForUser, "WaitingForUser", "b", 1, now);
        assert_eq!(same[0].last_transition_time, Some(t0), "Ready stayed False");
        assert_eq!(
            same[1].last_transition_time,
            Some(t0),
            "Reconciling stayed True"
        );
        let done = conditions(&old, Phase::Succeeded, "Succeeded", "c", 1, now);
        assert_eq!(done[0].last_transition_time, Some(now), "Ready turned True");
    }

    #[test]
    fn history_is_newest_first_and_capped() {
        let mut h = Vec::new();
        for i in 0..8 {
            let run = RunStatus {
                key: format!("k{i}"),
                phase: Phase::Succeeded,
                ..Default::default()
            };
            push_history(&mut h, &run);
        }
        assert_eq!(h.len(), MAX_HISTORY);
        assert_eq!(h[0].key, "k7");
    }
}
