//! What each target of a job did: [`BkClient::target_logs`] lists a job's targets (processes,
//! hosts, flow nodes) with their status and reason, and the log each one wrote where the
//! system keeps one (JOB, NodeMan). GSEKit and BKFlow keep none: a process has a status and an
//! error message, a flow node a state and its failure text.

use std::fmt;

use serde::Serialize;

use crate::bk::bkflow::TaskState;
use crate::bk::job::{HostOutcome, ScopeType};
use crate::bk::{BkClient, BkError, gsekit, nodeman};

use super::types::JobRef;

mod job;

/// Most targets whose log is fetched in one [`BkClient::target_logs`] (one call each for
/// NodeMan; BKFlow names its nodes one call each too). The others are listed without it.
pub const LOG_TARGETS_CAP: usize = 50;
/// GSEKit `job_task` page size (upstream documents 100 as its maximum).
const GSEKIT_PAGE: u32 = 100;
/// Most GSEKit `job_task` pages read.
const GSEKIT_PAGES_CAP: u32 = 50;

/// How a target ended, or stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum TargetOutcome {
    /// Failed.
    Failed,
    /// Running, or waiting for a person.
    Running,
    /// Not started.
    Pending,
    /// Done, successfully.
    Succeeded,
    /// Nothing to do, skipped, or ended on request.
    Ignored,
}

impl TargetOutcome {
    fn rank(self) -> u8 {
        match self {
            TargetOutcome::Failed => 4,
            TargetOutcome::Running => 3,
            TargetOutcome::Pending => 2,
            TargetOutcome::Succeeded => 1,
            TargetOutcome::Ignored => 0,
        }
    }
}

impl From<HostOutcome> for TargetOutcome {
    fn from(o: HostOutcome) -> Self {
        match o {
            HostOutcome::Failed => TargetOutcome::Failed,
            HostOutcome::Running => TargetOutcome::Running,
            HostOutcome::Pending => TargetOutcome::Pending,
            HostOutcome::Succeeded => TargetOutcome::Succeeded,
            HostOutcome::Ignored => TargetOutcome::Ignored,
        }
    }
}

impl fmt::Display for TargetOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One step of a target: a JOB step on a host, a NodeMan step of an agent job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepLog {
    /// The step's name.
    pub name: String,
    /// Its status on this target, as upstream says it.
    pub status: String,
    /// What it logged (empty when nothing yet, or not fetched).
    pub log: String,
}

/// One target of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetLog {
    /// The target as the job's status names it (IP, `ip process`, node name).
    pub target: String,
    /// Other names it answers to: host id, IP, process name or id, node id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// How it ended.
    pub outcome: TargetOutcome,
    /// Its status as upstream says it.
    pub status: String,
    /// Why it failed, in upstream's words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its steps, with their logs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepLog>,
    /// Why something is missing (a log not fetched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TargetLog {
    fn new(target: String, outcome: TargetOutcome, status: String) -> Self {
        TargetLog {
            target,
            aliases: Vec::new(),
            outcome,
            status,
            reason: None,
            steps: Vec::new(),
            note: None,
        }
    }

    /// Whether `name` names this target (its name or an alias; letter case ignored).
    pub fn answers_to(&self, name: &str) -> bool {
        let name = name.trim();
        std::iter::once(&self.target)
            .chain(&self.aliases)
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The targets of a job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetLogs {
    /// The targets asked for, failures first, otherwise in upstream's order.
    pub targets: Vec<TargetLog>,
    /// Every target's name, also of those left out by the filter.
    #[serde(skip)]
    pub all: Vec<String>,
    /// About the job as a whole, when its targets do not say it (no targets yet, tasks that
    /// could not be built).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The positions of the targets `only` names (all without it), failures first, otherwise in
/// upstream's order.
fn selection(targets: &[TargetLog], only: Option<&str>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..targets.len())
        .filter(|&i| only.is_none_or(|name| targets[i].answers_to(name)))
        .collect();
    // Stable: upstream's order among the failures and among the others.
    order.sort_by_key(|&i| targets[i].outcome != TargetOutcome::Failed);
    order
}

/// The targets at `order`, and every target's name.
fn pick(targets: Vec<TargetLog>, order: &[usize]) -> (Vec<TargetLog>, Vec<String>) {
    let all = targets.iter().map(|t| t.target.clone()).collect();
    let mut slots: Vec<Option<TargetLog>> = targets.into_iter().map(Some).collect();
    let picked = order
        .iter()
        .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
        .collect();
    (picked, all)
}

/// [`selection`] and [`pick`] in one, for targets without logs to fetch.
fn select(targets: Vec<TargetLog>, only: Option<&str>) -> (Vec<TargetLog>, Vec<String>) {
    let order = selection(&targets, only);
    pick(targets, &order)
}

fn not_fetched() -> Option<String> {
    Some(format!(
        "log not fetched: only the first {LOG_TARGETS_CAP} targets' logs are; name this one with --target"
    ))
}

impl BkClient {
    /// The targets of `job` with their status, reason and log; only those `only` names when it
    /// is given (see [`TargetLog::answers_to`]). Logs are fetched for at most
    /// [`LOG_TARGETS_CAP`] targets, failures first.
    pub async fn target_logs(
        &self,
        job: &JobRef,
        only: Option<&str>,
    ) -> Result<TargetLogs, BkError> {
        match job {
            JobRef::Gsekit { biz_id, job_id } => self.gsekit_logs(*biz_id, *job_id, only).await,
            JobRef::Bkflow { space_id, task_id } => {
                self.bkflow_logs(*space_id, *task_id, only).await
            }
            JobRef::Nodeman { job_id } => self.nodeman_logs(*job_id, only).await,
            JobRef::JobV2 {
                biz_id,
                job_instance_id,
            } if self.job().supports_v2() => {
                self.job_v2_logs(*biz_id, *job_instance_id, only).await
            }
            // Through the gateway a v2-created instance is read with the v3 calls.
            JobRef::JobV2 {
                biz_id,
                job_instance_id,
            } => {
                self.job_v3_logs(&ScopeType::Biz, &biz_id.to_string(), *job_instance_id, only)
                    .await
            }
            JobRef::JobV3 {
                scope_type,
                scope_id,
                job_instance_id,
            } => {
                self.job_v3_logs(scope_type, scope_id, *job_instance_id, only)
                    .await
            }
        }
    }

    async fn gsekit_logs(
        &self,
        biz_id: i64,
        job_id: i64,
        only: Option<&str>,
    ) -> Result<TargetLogs, BkError> {
        let mut tasks = Vec::new();
        for page in 1..=GSEKIT_PAGES_CAP {
            let q = gsekit::JobTaskQuery {
                page,
                pagesize: GSEKIT_PAGE,
                statuses: None,
                bk_process_ids: None,
            };
            let p = self.gsekit().job_task(biz_id, job_id, &q).await?;
            let got = p.list.len();
            tasks.extend(p.list);
            if got < GSEKIT_PAGE as usize || tasks.len() >= p.count as usize {
                break;
            }
        }
        let message = if tasks.is_empty() {
            let st = self.gsekit().job_status(biz_id, job_id).await?;
            Some(st.job_info.failed_reason().unwrap_or_else(|| {
                format!(
                    "GSEKit lists no processes for this job yet (job {})",
                    st.job_info.status
                )
            }))
        } else {
            None
        };
        let (targets, all) = select(tasks.iter().map(gsekit_target).collect(), only);
        Ok(TargetLogs {
            targets,
            all,
            message,
        })
    }

    async fn bkflow_logs(
        &self,
        space_id: i64,
        task_id: i64,
        only: Option<&str>,
    ) -> Result<TargetLogs, BkError> {
        let root = self.bkflow().get_task_states(space_id, task_id).await?;
        let mut targets = Vec::new();
        // Node names come from the node detail only.
        for (i, (node_id, node)) in root.leaves().into_iter().enumerate() {
            let detail = if i < LOG_TARGETS_CAP {
                Some(
                    self.bkflow()
                        .get_task_node_detail(space_id, task_id, node_id)
                        .await?,
                )
            } else {
                None
            };
            let mut t = bkflow_target(node_id, node, detail.as_ref());
            if detail.is_none() {
                t.note = Some(format!(
                    "node name and failure text not fetched: only the first {LOG_TARGETS_CAP} nodes' are"
                ));
            }
            targets.push(t);
        }
        let message = targets.is_empty().then(|| match root.state {
            TaskState::Created => "the task has not been started in BKFlow".to_owned(),
            ref s => format!("no node of the task has run yet (task {s})"),
        });
        let (targets, all) = select(targets, only);
        Ok(TargetLogs {
            targets,
            all,
            message,
        })
    }

    async fn nodeman_logs(&self, job_id: i64, only: Option<&str>) -> Result<TargetLogs, BkError> {
        let q = nodeman::DetailsQuery {
            page: 1,
            pagesize: -1,
            conditions: Vec::new(),
        };
        let d = self.nodeman().details(job_id, &q).await?;
        let message = d
            .list
            .is_empty()
            .then(|| format!("NodeMan lists no hosts for this job yet (job {})", d.status));
        let mut targets: Vec<TargetLog> = d.list.iter().map(nodeman_target).collect();
        let order = selection(&targets, only);
        for (n, &i) in order.iter().enumerate() {
            let t = &mut targets[i];
            if n >= LOG_TARGETS_CAP {
                t.note = not_fetched();
                continue;
            }
            let Some(instance) = d.list[i].instance_id.as_deref() else {
                t.note = Some("NodeMan gives no instance id for this host: no log".into());
                continue;
            };
            let steps = self.nodeman().job_log(job_id, instance).await?;
            fill_nodeman_steps(t, &steps);
        }
        let (targets, all) = pick(targets, &order);
        Ok(TargetLogs {
            targets,
            all,
            message,
        })
    }
}

fn gsekit_target(t: &gsekit::JobTask) -> TargetLog {
    use gsekit::TaskStatus as S;
    let outcome = match &t.status {
        S::Failed => TargetOutcome::Failed,
        S::Running | S::Unknown(_) => TargetOutcome::Running,
        S::Pending => TargetOutcome::Pending,
        S::Succeeded => TargetOutcome::Succeeded,
        S::Ignored => TargetOutcome::Ignored,
    };
    let status = match t.err_code.filter(|c| *c != 0) {
        Some(c) => format!("{} (err_code {c})", t.status),
        None => t.status.to_string(),
    };
    let mut target = TargetLog::new(t.target(), outcome, status);
    target.aliases = t.names();
    if outcome == TargetOutcome::Failed {
        target.reason = Some(t.reason());
    }
    target
}

fn bkflow_target(
    node_id: &str,
    node: &crate::bk::bkflow::StateNode,
    detail: Option<&crate::bk::bkflow::NodeDetail>,
) -> TargetLog {
    let skipped = node.skip == Some(true);
    let ignored = node.error_ignored == Some(true);
    let outcome = match &node.state {
        _ if skipped || ignored => TargetOutcome::Ignored,
        TaskState::Failed => TargetOutcome::Failed,
        TaskState::Finished => TargetOutcome::Succeeded,
        TaskState::Created | TaskState::Ready => TargetOutcome::Pending,
        TaskState::Revoked | TaskState::Expired => TargetOutcome::Ignored,
        _ => TargetOutcome::Running,
    };
    let mut status = node.state.to_string();
    if skipped {
        status.push_str(" (skipped)");
    }
    if ignored {
        status.push_str(" (error ignored)");
    }
    if node.retry > 0 {
        status.push_str(&format!(" (retried {} times)", node.retry));
    }
    let name = detail
        .and_then(|d| d.name.clone())
        .filter(|n| !n.is_empty());
    let mut t = TargetLog::new(
        name.clone().unwrap_or_else(|| node_id.to_owned()),
        outcome,
        status,
    );
    if name.is_some() {
        t.aliases.push(node_id.to_owned());
    }
    let failure = detail.and_then(|d| d.failure_text());
    if outcome == TargetOutcome::Failed || (ignored && failure.is_some()) {
        t.reason = Some(failure.unwrap_or_else(|| "node failed".into()));
    }
    t
}

fn nodeman_target(h: &nodeman::HostResult) -> TargetLog {
    use nodeman::JobStatus as S;
    let outcome = match &h.status {
        S::Failed | S::PartFailed | S::Terminated => TargetOutcome::Failed,
        S::Running | S::Unknown(_) => TargetOutcome::Running,
        S::Pending => TargetOutcome::Pending,
        S::Success => TargetOutcome::Succeeded,
        S::Removed | S::Filtered | S::Ignored => TargetOutcome::Ignored,
    };
    let status = match h.status_display.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => format!("{} ({d})", h.status),
        None => h.status.to_string(),
    };
    let mut t = TargetLog::new(h.target(), outcome, status);
    t.aliases = [&h.ip, &h.inner_ip, &h.inner_ipv6, &h.instance_id]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .cloned()
        .chain(h.bk_host_id.map(|id| id.to_string()))
        .collect();
    if outcome == TargetOutcome::Failed {
        t.reason = h
            .step
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| h.status_display.clone())
            .or_else(|| Some("failed".into()));
    }
    t
}

/// A NodeMan host's steps; a failed step's last log line is the host's reason.
fn fill_nodeman_steps(t: &mut TargetLog, steps: &[nodeman::LogStep]) {
    t.steps = steps
        .iter()
        .map(|s| StepLog {
            name: s.step.clone().unwrap_or_else(|| "step".into()),
            status: s
                .status
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            log: s.log.clone().unwrap_or_default(),
        })
        .collect();
    let failed = steps
        .iter()
        .find(|s| s.status == Some(nodeman::JobStatus::Failed));
    if t.outcome == TargetOutcome::Failed
        && let Some(step) = failed
    {
        let name = step.step.as_deref().unwrap_or("step");
        let line = step
            .log
            .as_deref()
            .and_then(|l| l.lines().rev().find(|l| !l.trim().is_empty()));
        t.reason = Some(match line {
            Some(line) => format!("{name}: {}", line.trim()),
            None => format!("{name} failed"),
        });
    }
}

#[cfg(test)]
mod tests;
