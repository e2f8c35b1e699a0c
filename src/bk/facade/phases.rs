//! State mapping (tables in docs/blueking-api.md): each system's job states to the shared
//! [`JobPhase`], and the target counts and readable texts the progress reports carry.

use std::collections::BTreeMap;

use crate::bk::bkflow::{StateNode, TaskState};
use crate::bk::gsekit;
use crate::bk::job::{HostOutcome, RunStatus};
use crate::bk::nodeman;

use super::types::{FAILED_TARGETS_CAP, FailedTarget, JobPhase, Summary};

/// GSEKit `job_info.status`. Unknown states keep the job followed (Running).
pub fn gsekit_phase(s: &gsekit::JobStatus) -> JobPhase {
    use gsekit::JobStatus as S;
    match s {
        S::Pending | S::Running | S::Unknown(_) => JobPhase::Running,
        S::Succeeded => JobPhase::Succeeded,
        S::Failed => JobPhase::Failed,
    }
}

/// BKFlow root state. FAILED is reported as Failed although a person may still retry or skip
/// the node in BKFlow; EXPIRED (runtime data purged) as Failed.
pub fn bkflow_phase(s: &TaskState) -> JobPhase {
    match s {
        TaskState::Created => JobPhase::NotStarted,
        TaskState::Ready | TaskState::Running | TaskState::Blocked | TaskState::Unknown(_) => {
            JobPhase::Running
        }
        TaskState::Suspended | TaskState::NodeSuspended => JobPhase::WaitingForUser,
        TaskState::Finished => JobPhase::Succeeded,
        TaskState::Failed | TaskState::Expired => JobPhase::Failed,
        TaskState::Revoked => JobPhase::Cancelled,
    }
}

/// NodeMan job status. TERMINATED is transient (the next details call recomputes it to
/// FAILED/PART_FAILED), so it stays Running; PART_FAILED is Failed.
pub fn nodeman_phase(s: &nodeman::JobStatus) -> JobPhase {
    use nodeman::JobStatus as S;
    match s {
        S::Pending | S::Running | S::Terminated | S::Unknown(_) => JobPhase::Running,
        S::Success | S::Ignored | S::Filtered => JobPhase::Succeeded,
        S::Failed | S::PartFailed | S::Removed => JobPhase::Failed,
    }
}

/// JOB instance status.
///
/// - 1 BLANK: `NotStarted` when the instance has no start time (a v3 instance created with
///   `start_task=false` and not started yet), else `Running` (started, queued). v2 instances
///   always run at once, so the caller passes `started = true` for them.
/// - 2 RUNNING, 10 STOPPING → Running; 3 SUCCESS, 6 IGNORE_ERROR → Succeeded;
/// - 7 WAITING_USER, 15 ROLLING_WAITING → WaitingForUser;
/// - 4 FAIL, 9 ABNORMAL, 14 ABANDONED → Failed; 5 SKIPPED → **Failed**: at job level it means a
///   person skipped a failed step, so the asked-for work did not all happen; we never report
///   it as success;
/// - 8 TERMINATED, 11 STOP_SUCCESS, 13 CONFIRM_TERMINATED → Cancelled;
/// - 12 STOP_FAIL (step-only) and unknown codes → Running (keep following).
pub fn job_phase(s: RunStatus, started: bool) -> JobPhase {
    match s {
        RunStatus::Blank if started => JobPhase::Running,
        RunStatus::Blank => JobPhase::NotStarted,
        RunStatus::Running | RunStatus::Stopping | RunStatus::StopFail | RunStatus::Other(_) => {
            JobPhase::Running
        }
        RunStatus::Success | RunStatus::IgnoreError => JobPhase::Succeeded,
        RunStatus::WaitingUser | RunStatus::RollingWaiting => JobPhase::WaitingForUser,
        RunStatus::Fail | RunStatus::Skipped | RunStatus::AbnormalState | RunStatus::Abandoned => {
            JobPhase::Failed
        }
        RunStatus::Terminated | RunStatus::StopSuccess | RunStatus::ConfirmTerminated => {
            JobPhase::Cancelled
        }
    }
}

pub(super) fn job_status_name(s: RunStatus) -> String {
    let name = match s {
        RunStatus::Blank => "BLANK",
        RunStatus::Running => "RUNNING",
        RunStatus::Success => "SUCCESS",
        RunStatus::Fail => "FAIL",
        RunStatus::Skipped => "SKIPPED",
        RunStatus::IgnoreError => "IGNORE_ERROR",
        RunStatus::WaitingUser => "WAITING_USER",
        RunStatus::Terminated => "TERMINATED",
        RunStatus::AbnormalState => "ABNORMAL_STATE",
        RunStatus::Stopping => "STOPPING",
        RunStatus::StopSuccess => "STOP_SUCCESS",
        RunStatus::StopFail => "STOP_FAIL",
        RunStatus::ConfirmTerminated => "CONFIRM_TERMINATED",
        RunStatus::Abandoned => "ABANDONED",
        RunStatus::RollingWaiting => "ROLLING_WAITING",
        RunStatus::Other(n) => return n.to_string(),
    };
    format!("{} ({name})", s.code())
}

/// Readable text for JOB per-host status codes (best effort; the code is always given).
pub(super) fn job_host_status_text(status: Option<i64>) -> String {
    let label = match status {
        Some(3) => Some("succeeded last time"),
        Some(5) => Some("waiting"),
        Some(7) => Some("running"),
        Some(9) => Some("success"),
        Some(403) => Some("terminated"),
        Some(1) => Some("agent error"),
        Some(2) => Some("host not found"),
        Some(11) => Some("failed"),
        Some(13) => Some("task timed out"),
        Some(101) => Some("script failed"),
        Some(102) => Some("script timed out"),
        Some(103) => Some("script terminated"),
        Some(104) => Some("script exited non-zero"),
        Some(202) => Some("file transfer failed"),
        Some(310) => Some("agent abnormal"),
        _ => None,
    };
    match (status, label) {
        (Some(s), Some(l)) => format!("host status {s} ({l})"),
        (Some(s), None) => format!("host status {s}"),
        (None, _) => "host status unknown".into(),
    }
}

/// Host tally across steps: a host counts once, with its worst outcome.
pub(super) fn tally_hosts<'a>(
    hosts: impl Iterator<Item = (String, Option<&'a str>, HostOutcome, String)>,
) -> (Summary, Vec<FailedTarget>) {
    fn rank(o: HostOutcome) -> u8 {
        match o {
            HostOutcome::Failed => 4,
            HostOutcome::Running => 3,
            HostOutcome::Pending => 2,
            HostOutcome::Succeeded => 1,
            HostOutcome::Ignored => 0,
        }
    }
    let mut worst: BTreeMap<String, (HostOutcome, String)> = BTreeMap::new();
    for (target, step, outcome, reason) in hosts {
        let reason = match step {
            Some(s) => format!("step '{s}': {reason}"),
            None => reason,
        };
        match worst.get(&target) {
            Some((o, _)) if rank(*o) >= rank(outcome) => {}
            _ => {
                worst.insert(target, (outcome, reason));
            }
        }
    }
    let mut summary = Summary::default();
    let mut failed = Vec::new();
    for (target, (outcome, reason)) in worst {
        summary.total += 1;
        match outcome {
            HostOutcome::Succeeded => summary.succeeded += 1,
            HostOutcome::Running => summary.running += 1,
            HostOutcome::Pending => summary.pending += 1,
            HostOutcome::Ignored => summary.ignored += 1,
            HostOutcome::Failed => {
                summary.failed += 1;
                if failed.len() < FAILED_TARGETS_CAP {
                    failed.push(FailedTarget { target, reason });
                }
            }
        }
    }
    (summary, failed)
}

/// Counts BKFlow leaf nodes by state.
pub(super) fn bkflow_summary(root: &StateNode) -> Summary {
    let mut s = Summary::default();
    for (_, node) in root.leaves() {
        s.total += 1;
        let ignored = node.skip == Some(true) || node.error_ignored == Some(true);
        match &node.state {
            _ if ignored => s.ignored += 1,
            TaskState::Finished => s.succeeded += 1,
            TaskState::Failed => s.failed += 1,
            TaskState::Created => s.pending += 1,
            TaskState::Revoked | TaskState::Expired => s.ignored += 1,
            _ => s.running += 1,
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsekit_table() {
        use gsekit::JobStatus as S;
        for (s, p) in [
            (S::Pending, JobPhase::Running),
            (S::Running, JobPhase::Running),
            (S::Succeeded, JobPhase::Succeeded),
            (S::Failed, JobPhase::Failed),
            (S::Unknown("x".into()), JobPhase::Running),
        ] {
            assert_eq!(gsekit_phase(&s), p, "{s}");
        }
    }

    #[test]
    fn bkflow_table() {
        for (s, p) in [
            ("CREATED", JobPhase::NotStarted),
            ("READY", JobPhase::Running),
            ("RUNNING", JobPhase::Running),
            ("BLOCKED", JobPhase::Running),
            ("SUSPENDED", JobPhase::WaitingForUser),
            ("NODE_SUSPENDED", JobPhase::WaitingForUser),
            ("FAILED", JobPhase::Failed),
            ("FINISHED", JobPhase::Succeeded),
            ("REVOKED", JobPhase::Cancelled),
            ("EXPIRED", JobPhase::Failed),
            ("SOMETHING_NEW", JobPhase::Running),
        ] {
            assert_eq!(bkflow_phase(&TaskState::from(s)), p, "{s}");
        }
    }

    #[test]
    fn nodeman_table() {
        for (s, p) in [
            ("PENDING", JobPhase::Running),
            ("RUNNING", JobPhase::Running),
            ("TERMINATED", JobPhase::Running),
            ("SUCCESS", JobPhase::Succeeded),
            ("FAILED", JobPhase::Failed),
            ("PART_FAILED", JobPhase::Failed),
            ("NEW", JobPhase::Running),
        ] {
            assert_eq!(nodeman_phase(&nodeman::JobStatus::from(s)), p, "{s}");
        }
    }

    #[test]
    fn job_table() {
        let table = [
            (1, false, JobPhase::NotStarted),
            (1, true, JobPhase::Running),
            (2, false, JobPhase::Running),
            (3, false, JobPhase::Succeeded),
            (4, false, JobPhase::Failed),
            (5, false, JobPhase::Failed),
            (6, false, JobPhase::Succeeded),
            (7, false, JobPhase::WaitingForUser),
            (8, false, JobPhase::Cancelled),
            (9, false, JobPhase::Failed),
            (10, false, JobPhase::Running),
            (11, false, JobPhase::Cancelled),
            (12, false, JobPhase::Running),
            (13, false, JobPhase::Cancelled),
            (14, false, JobPhase::Failed),
            (15, false, JobPhase::WaitingForUser),
            (99, false, JobPhase::Running),
        ];
        for (code, started, want) in table {
            assert_eq!(job_phase(RunStatus::from(code), started), want, "{code}");
        }
        // finished == true exactly for the terminal set upstream.
        for code in 1..=15 {
            let terminal = job_phase(RunStatus::from(code), true).is_terminal();
            assert_eq!(
                terminal,
                [3, 4, 5, 6, 8, 9, 11, 13, 14].contains(&code),
                "{code}"
            );
        }
    }

    #[test]
    fn hosts_count_once_with_worst_outcome() {
        let hosts = vec![
            (
                "a".to_owned(),
                Some("s1"),
                HostOutcome::Succeeded,
                "ok".to_owned(),
            ),
            (
                "a".to_owned(),
                Some("s2"),
                HostOutcome::Failed,
                "bad".to_owned(),
            ),
            (
                "b".to_owned(),
                Some("s1"),
                HostOutcome::Succeeded,
                "ok".to_owned(),
            ),
            (
                "b".to_owned(),
                Some("s2"),
                HostOutcome::Running,
                "run".to_owned(),
            ),
            (
                "c".to_owned(),
                None,
                HostOutcome::Succeeded,
                "ok".to_owned(),
            ),
        ];
        let (s, f) = tally_hosts(hosts.into_iter());
        assert_eq!(
            s,
            Summary {
                total: 3,
                succeeded: 1,
                failed: 1,
                running: 1,
                pending: 0,
                ignored: 0
            }
        );
        assert_eq!(
            f,
            vec![FailedTarget {
                target: "a".into(),
                reason: "step 's2': bad".into()
            }]
        );
    }
}
