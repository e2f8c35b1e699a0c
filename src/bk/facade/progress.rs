//! Following a job: [`BkClient::progress`] per system, and
//! [`BkClient::progress_bkflow_batch`] for many BKFlow tasks of one space at once.

use std::collections::HashMap;

use serde_json::json;
use tracing::{debug, warn};

use crate::bk::bkflow::TaskState;
use crate::bk::gsekit;
use crate::bk::job::{self, RunStatus, ScopeType};
use crate::bk::nodeman;
use crate::bk::{BkClient, BkError};

use super::phases::{
    bkflow_phase, bkflow_summary, gsekit_phase, job_host_status_text, job_phase, job_status_name,
    nodeman_phase, tally_hosts,
};
use super::types::{FAILED_TARGETS_CAP, FailedTarget, JobPhase, JobRef, Progress, Summary};

/// Most BKFlow node details fetched per progress (one call each).
const BKFLOW_NODE_DETAILS_CAP: usize = 5;

/// A failure of a secondary call (failure details) is passed on only when a repeat could
/// fix it; otherwise the progress is reported without the details.
fn secondary(e: BkError, what: &str) -> Result<Option<String>, BkError> {
    if e.retryable() {
        return Err(e);
    }
    warn!(error = %e, "could not fetch {what}");
    Ok(Some(format!("{what} unavailable: {e}")))
}

impl BkClient {
    /// Where the job stands: phase, counts, failed targets (failures first, capped).
    pub async fn progress(&self, job: &JobRef) -> Result<Progress, BkError> {
        match job {
            JobRef::Gsekit { biz_id, job_id } => self.progress_gsekit(*biz_id, *job_id).await,
            JobRef::Bkflow { space_id, task_id } => self.progress_bkflow(*space_id, *task_id).await,
            JobRef::Nodeman { job_id } => self.progress_nodeman(*job_id).await,
            JobRef::JobV2 {
                biz_id,
                job_instance_id,
            } => {
                if self.job().supports_v2() {
                    self.progress_job_v2(*biz_id, *job_instance_id).await
                } else {
                    // Through the gateway a v2-created instance is read with the v3 call.
                    self.progress_job_v3(
                        &ScopeType::Biz,
                        &biz_id.to_string(),
                        *job_instance_id,
                        true,
                    )
                    .await
                }
            }
            JobRef::JobV3 {
                scope_type,
                scope_id,
                job_instance_id,
            } => {
                self.progress_job_v3(scope_type, scope_id, *job_instance_id, false)
                    .await
            }
        }
    }

    async fn progress_gsekit(&self, biz_id: i64, job_id: i64) -> Result<Progress, BkError> {
        let st = self.gsekit().job_status(biz_id, job_id).await?;
        let c = &st.status_counter;
        let sum = c.pending + c.running + c.succeeded + c.failed + c.ignored;
        let summary = Summary {
            total: st.count.max(sum),
            succeeded: c.succeeded,
            failed: c.failed,
            running: c.running,
            pending: c.pending,
            ignored: c.ignored,
        };
        let mut message = st.job_info.failed_reason();
        let mut failed_targets = Vec::new();
        if c.failed > 0 {
            let q = gsekit::JobTaskQuery {
                page: 1,
                pagesize: FAILED_TARGETS_CAP as u32,
                statuses: Some(vec![gsekit::TaskStatus::Failed]),
                bk_process_ids: None,
            };
            match self.gsekit().job_task(biz_id, job_id, &q).await {
                Ok(page) => {
                    failed_targets = page
                        .list
                        .iter()
                        .filter(|t| t.status == gsekit::TaskStatus::Failed)
                        .take(FAILED_TARGETS_CAP)
                        .map(|t| FailedTarget {
                            target: t.target(),
                            reason: t.reason(),
                        })
                        .collect();
                }
                Err(e) => message = message.or(secondary(e, "failed processes")?),
            }
        }
        let phase = gsekit_phase(&st.job_info.status);
        if phase == JobPhase::Failed && message.is_none() {
            message = Some(format!(
                "{} of {} processes failed",
                c.failed, summary.total
            ));
        }
        Ok(Progress {
            phase,
            upstream_state: st.job_info.status.to_string(),
            summary,
            failed_targets,
            message,
            started_at: st.job_info.start_time,
            finished_at: st.job_info.end_time,
        })
    }

    async fn progress_bkflow(&self, space_id: i64, task_id: i64) -> Result<Progress, BkError> {
        let root = self.bkflow().get_task_states(space_id, task_id).await?;
        let phase = bkflow_phase(&root.state);
        let summary = bkflow_summary(&root);
        let mut failed_targets = Vec::new();
        let mut message = None;
        let failed_nodes: Vec<&str> = root
            .leaves()
            .into_iter()
            .filter(|(_, n)| n.state == TaskState::Failed)
            .map(|(id, _)| id)
            .collect();
        for (i, node_id) in failed_nodes.iter().enumerate() {
            if i >= BKFLOW_NODE_DETAILS_CAP {
                failed_targets.push(FailedTarget {
                    target: (*node_id).to_owned(),
                    reason: "node failed".into(),
                });
                continue;
            }
            match self
                .bkflow()
                .get_task_node_detail(space_id, task_id, node_id)
                .await
            {
                Ok(d) => {
                    let reason = d.failure_text().unwrap_or_else(|| "node failed".into());
                    let target = d.name.clone().unwrap_or_else(|| (*node_id).to_owned());
                    if message.is_none() {
                        message = Some(format!("{target}: {reason}"));
                    }
                    failed_targets.push(FailedTarget { target, reason });
                }
                Err(e) => {
                    let m = secondary(e, "node failure detail")?;
                    message = message.or(m);
                    failed_targets.push(FailedTarget {
                        target: (*node_id).to_owned(),
                        reason: "node failed".into(),
                    });
                }
            }
            if failed_targets.len() >= FAILED_TARGETS_CAP {
                break;
            }
        }
        if message.is_none() {
            message = match &root.state {
                TaskState::Suspended => Some("the task is paused in BKFlow".into()),
                TaskState::NodeSuspended => Some("a node waits for a person in BKFlow".into()),
                TaskState::Expired => Some("the task expired in BKFlow".into()),
                _ => None,
            };
        }
        Ok(Progress {
            phase,
            upstream_state: root.state.to_string(),
            summary,
            failed_targets,
            message,
            started_at: root.start_time,
            finished_at: root.finish_time,
        })
    }

    pub(super) async fn progress_nodeman(&self, job_id: i64) -> Result<Progress, BkError> {
        // One call gives the job-wide statistics and, filtered, the failed hosts.
        let q = nodeman::DetailsQuery {
            page: 1,
            pagesize: FAILED_TARGETS_CAP as i32,
            conditions: vec![nodeman::Condition {
                key: "status".into(),
                value: json!(["FAILED"]),
            }],
        };
        let d = self.nodeman().details(job_id, &q).await?;
        let s = &d.statistics;
        let summary = Summary {
            total: s.total_count,
            succeeded: s.success_count,
            failed: s.failed_count,
            running: s.running_count,
            pending: s.pending_count,
            ignored: s.ignored_count,
        };
        let failed_targets: Vec<FailedTarget> = d
            .list
            .iter()
            .filter(|h| h.status == nodeman::JobStatus::Failed)
            .take(FAILED_TARGETS_CAP)
            .map(|h| FailedTarget {
                target: h.target(),
                reason: h
                    .status_display
                    .clone()
                    .or_else(|| h.step.clone())
                    .unwrap_or_else(|| "failed".into()),
            })
            .collect();
        let phase = nodeman_phase(&d.status);
        let message = match &d.status {
            nodeman::JobStatus::PartFailed | nodeman::JobStatus::Failed => Some(format!(
                "{} of {} hosts failed",
                s.failed_count, s.total_count
            )),
            nodeman::JobStatus::Terminated => Some("revoked; final status pending".into()),
            _ => None,
        };
        Ok(Progress {
            phase,
            upstream_state: d.status.to_string(),
            summary,
            failed_targets,
            message,
            started_at: d.start_time,
            finished_at: d.end_time,
        })
    }

    async fn progress_job_v3(
        &self,
        scope_type: &ScopeType,
        scope_id: &str,
        job_instance_id: i64,
        always_started: bool,
    ) -> Result<Progress, BkError> {
        let st = self
            .job()
            .get_job_instance_status(scope_type, scope_id, job_instance_id)
            .await?;
        let inst = &st.job_instance;
        let started = always_started || inst.start_time.is_some();
        let hosts = st.step_instance_list.iter().flat_map(|step| {
            step.step_ip_result_list.iter().map(move |h| {
                let mut reason = job_host_status_text(h.status);
                if let Some(c) = h.exit_code.filter(|c| *c != 0) {
                    reason.push_str(&format!(", exit code {c}"));
                }
                (
                    h.target(),
                    step.name.as_deref(),
                    job::host_outcome(h.status),
                    reason,
                )
            })
        });
        let (summary, failed_targets) = tally_hosts(hosts);
        Ok(job_progress(
            inst,
            started,
            summary,
            failed_targets,
            st.step_instance_list
                .iter()
                .map(|s| (s.name.as_deref(), s.status)),
        ))
    }

    async fn progress_job_v2(
        &self,
        biz_id: i64,
        job_instance_id: i64,
    ) -> Result<Progress, BkError> {
        let st = self
            .job()
            .get_job_instance_status_v2(biz_id, job_instance_id)
            .await?;
        let steps: Vec<&job::StepInstanceV2> = st
            .blocks
            .iter()
            .flat_map(|b| b.step_instances.iter())
            .collect();
        let hosts = steps.iter().flat_map(|step| {
            step.step_ip_status.iter().map(move |h| {
                let target = match (&h.ip, h.bk_cloud_id) {
                    (Some(ip), Some(c)) if c != 0 => format!("{c}:{ip}"),
                    (Some(ip), _) => ip.clone(),
                    _ => "unknown host".into(),
                };
                (
                    target,
                    step.name.as_deref(),
                    job::host_outcome(h.status),
                    job_host_status_text(h.status),
                )
            })
        });
        let (summary, failed_targets) = tally_hosts(hosts);
        Ok(job_progress(
            &st.job_instance,
            true,
            summary,
            failed_targets,
            steps.iter().map(|s| (s.name.as_deref(), s.status)),
        ))
    }

    /// Phases of many BKFlow tasks of one space in one call. Tasks that reached an end get a
    /// full [`Progress`] (one more call each, once); the others carry the state only. Tasks
    /// upstream did not answer for are absent from the map.
    pub async fn progress_bkflow_batch(
        &self,
        space_id: i64,
        task_ids: &[i64],
    ) -> Result<HashMap<i64, Progress>, BkError> {
        if task_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let states = self.bkflow().get_tasks_states(space_id, task_ids).await?;
        let mut out = HashMap::with_capacity(states.len());
        for (id, st) in states {
            let phase = bkflow_phase(&st.state);
            let mut p = Progress::state_only(phase, st.state.to_string());
            if phase.is_terminal() {
                match self.progress_bkflow(space_id, id).await {
                    Ok(full) => p = full,
                    Err(e) => debug!(task_id = id, error = %e, "full BKFlow progress unavailable"),
                }
            }
            out.insert(id, p);
        }
        Ok(out)
    }
}

fn job_progress<'a>(
    inst: &job::JobInstanceV3,
    started: bool,
    summary: Summary,
    failed_targets: Vec<FailedTarget>,
    steps: impl Iterator<Item = (Option<&'a str>, RunStatus)>,
) -> Progress {
    let phase = job_phase(inst.status, started);
    let message = match phase {
        JobPhase::Failed | JobPhase::WaitingForUser | JobPhase::Cancelled => {
            let step = steps
                .filter(|(_, s)| job_phase(*s, true) == phase)
                .map(|(n, s)| format!("step '{}' is {}", n.unwrap_or("?"), job_status_name(s)))
                .next();
            step.or_else(|| Some(format!("job instance is {}", job_status_name(inst.status))))
        }
        _ => None,
    };
    Progress {
        phase,
        upstream_state: job_status_name(inst.status),
        summary,
        failed_targets,
        message,
        started_at: inst.start_time,
        finished_at: inst.end_time,
    }
}
