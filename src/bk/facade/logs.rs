//! What each target of a job did: [`BkClient::target_logs`] lists a job's targets (processes,
//! hosts, flow nodes) with their status and reason, and the log each one wrote where the
//! system keeps one (JOB, NodeMan). GSEKit and BKFlow keep none: a process has a status and an
//! error message, a flow node a state and its failure text.

use std::fmt;

use serde::Serialize;

use crate::bk::bkflow::TaskState;
use crate::bk::job::{self, CloudIp, HostOutcome, LogHosts, ScopeType};
use crate::bk::{BkClient, BkError, gsekit, nodeman};

use super::phases::job_host_status_text;
use super::types::JobRef;

/// Most targets whose log is fetched in one [`BkClient::target_logs`] (one call each for
/// NodeMan; BKFlow names its nodes one call each too). The others are listed without it.
pub const LOG_TARGETS_CAP: usize = 50;
/// GSEKit `job_task` page size (upstream documents 100 as its maximum).
const GSEKIT_PAGE: u32 = 100;
/// Most GSEKit `job_task` pages read.
const GSEKIT_PAGES_CAP: u32 = 50;
/// Most hosts named in one JOB `batch_get_job_instance_ip_log`.
const JOB_HOSTS_PER_CALL: usize = 100;

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

    async fn job_v3_logs(
        &self,
        scope_type: &ScopeType,
        scope_id: &str,
        job_instance_id: i64,
        only: Option<&str>,
    ) -> Result<TargetLogs, BkError> {
        let st = self
            .job()
            .get_job_instance_status(scope_type, scope_id, job_instance_id)
            .await?;
        let mut hosts = JobHosts::default();
        for step in &st.step_instance_list {
            let Some(step_id) = step.step_instance_id else {
                continue;
            };
            let name = step_name(step.name.as_deref());
            for h in &step.step_ip_result_list {
                let mut status = job_host_status_text(h.status);
                if let Some(c) = h.exit_code.filter(|c| *c != 0) {
                    status.push_str(&format!(", exit code {c}"));
                }
                let at = hosts.add(h.target(), host_names(h), &name, h.status, status);
                hosts.step_ids[at].push(step_id);
                hosts.addresses[at] = (h.bk_host_id, cloud_ip(h));
            }
        }
        let message = hosts.targets.is_empty().then(|| {
            format!(
                "no host has run yet (job instance {})",
                super::phases::job_status_name(st.job_instance.status)
            )
        });
        let order = selection(&hosts.targets, only);
        // The wanted hosts of each step, by id where upstream gave one, else by IP.
        let mut wanted: Vec<(i64, LogHosts, Vec<usize>)> = Vec::new();
        for (n, &i) in order.iter().enumerate() {
            if n >= LOG_TARGETS_CAP {
                hosts.targets[i].note = not_fetched();
                continue;
            }
            let (host_id, ip) = &hosts.addresses[i];
            for &step_id in &hosts.step_ids[i] {
                add_wanted(&mut wanted, step_id, *host_id, ip.clone(), i);
            }
        }
        for (step_id, asked, owners) in wanted {
            let logs = self
                .job()
                .batch_get_job_instance_ip_log(
                    scope_type,
                    scope_id,
                    job_instance_id,
                    step_id,
                    &asked,
                )
                .await?;
            for log in logs.host_logs() {
                let owner = owners
                    .iter()
                    .copied()
                    .find(|&i| is_host(&hosts.addresses[i], &log));
                if let Some(i) = owner {
                    hosts.set_log(i, step_id, log.text);
                }
            }
        }
        let (targets, all) = pick(hosts.targets, &order);
        Ok(TargetLogs {
            targets,
            all,
            message,
        })
    }

    async fn job_v2_logs(
        &self,
        biz_id: i64,
        job_instance_id: i64,
        only: Option<&str>,
    ) -> Result<TargetLogs, BkError> {
        let steps = self
            .job()
            .get_job_instance_log_v2(biz_id, job_instance_id)
            .await?;
        let mut hosts = JobHosts::default();
        for step in &steps {
            let name = step_name(step.name.as_deref());
            for group in &step.step_results {
                for h in &group.ip_logs {
                    let target = match (&h.ip, h.bk_cloud_id) {
                        (Some(ip), Some(c)) if c != 0 => format!("{c}:{ip}"),
                        (Some(ip), _) => ip.clone(),
                        _ => "unknown host".into(),
                    };
                    let mut status = job_host_status_text(group.ip_status);
                    if let Some(c) = h.exit_code.filter(|c| *c != 0) {
                        status.push_str(&format!(", exit code {c}"));
                    }
                    let names = h.ip.iter().cloned().collect();
                    let at = hosts.add(target, names, &name, group.ip_status, status);
                    if let Some(s) = hosts.targets[at].steps.last_mut() {
                        s.log = h.text();
                    }
                }
            }
        }
        let message = hosts
            .targets
            .is_empty()
            .then(|| "no host has run yet".to_owned());
        let (targets, all) = select(hosts.targets, only);
        Ok(TargetLogs {
            targets,
            all,
            message,
        })
    }
}

/// JOB hosts as the steps name them, each once, with a step entry per step it ran in.
#[derive(Default)]
struct JobHosts {
    targets: Vec<TargetLog>,
    /// Per target: the step instance of each of its steps (v3).
    step_ids: Vec<Vec<i64>>,
    /// Per target: its host id and address (v3).
    addresses: Vec<(Option<i64>, Option<CloudIp>)>,
}

impl JobHosts {
    /// Adds one host's result of one step; a host counts with its worst step, and the first
    /// failed step is its reason.
    fn add(
        &mut self,
        target: String,
        names: Vec<String>,
        step: &str,
        host_status: Option<i64>,
        status: String,
    ) -> usize {
        let outcome = TargetOutcome::from(job::host_outcome(host_status));
        let at = match self.targets.iter().position(|t| t.target == target) {
            Some(at) => at,
            None => {
                let mut t = TargetLog::new(target, outcome, status.clone());
                t.aliases = names;
                self.targets.push(t);
                self.step_ids.push(Vec::new());
                self.addresses.push((None, None));
                self.targets.len() - 1
            }
        };
        let t = &mut self.targets[at];
        if outcome.rank() > t.outcome.rank() {
            t.outcome = outcome;
            t.status = status.clone();
        }
        if outcome == TargetOutcome::Failed && t.reason.is_none() {
            t.reason = Some(format!("step '{step}': {status}"));
        }
        t.steps.push(StepLog {
            name: step.to_owned(),
            status,
            log: String::new(),
        });
        at
    }

    /// Sets the log of target `at` in step instance `step_id`.
    fn set_log(&mut self, at: usize, step_id: i64, text: String) {
        let step = self.step_ids[at].iter().position(|&s| s == step_id);
        if let Some(step) = step.and_then(|k| self.targets[at].steps.get_mut(k)) {
            step.log = text;
        }
    }
}

/// Whether a log is of the host at `address`: by id when both have one, else by address.
fn is_host(address: &(Option<i64>, Option<CloudIp>), log: &job::HostLog) -> bool {
    match (address, log.bk_host_id) {
        ((Some(id), _), Some(other)) => *id == other,
        ((_, Some(ip)), _) => {
            log.ip.as_deref() == Some(ip.ip.as_str())
                && log.bk_cloud_id.unwrap_or(0) == ip.bk_cloud_id
        }
        _ => false,
    }
}

fn step_name(name: Option<&str>) -> String {
    name.filter(|n| !n.is_empty()).unwrap_or("step").to_owned()
}

fn host_names(h: &job::IpResult) -> Vec<String> {
    h.ip.iter()
        .cloned()
        .chain(h.bk_host_id.map(|id| id.to_string()))
        .collect()
}

fn cloud_ip(h: &job::IpResult) -> Option<CloudIp> {
    h.ip.as_ref().filter(|ip| !ip.is_empty()).map(|ip| CloudIp {
        bk_cloud_id: h.bk_cloud_id.unwrap_or(0),
        ip: ip.clone(),
    })
}

/// Adds a host of a step to the calls to make: one call per step and way of naming hosts, at
/// most [`JOB_HOSTS_PER_CALL`] hosts each.
fn add_wanted(
    wanted: &mut Vec<(i64, LogHosts, Vec<usize>)>,
    step_id: i64,
    host_id: Option<i64>,
    ip: Option<CloudIp>,
    shown: usize,
) {
    let fits = |hosts: &LogHosts| match (hosts, host_id) {
        (LogHosts::Ids(ids), Some(_)) => ids.len() < JOB_HOSTS_PER_CALL,
        (LogHosts::Ips(ips), None) => ips.len() < JOB_HOSTS_PER_CALL,
        _ => false,
    };
    let slot = wanted
        .iter_mut()
        .find(|(s, hosts, _)| *s == step_id && fits(hosts));
    match (slot, host_id, ip) {
        (Some((_, LogHosts::Ids(ids), owners)), Some(id), _) => {
            ids.push(id);
            owners.push(shown);
        }
        (Some((_, LogHosts::Ips(ips), owners)), None, Some(ip)) => {
            ips.push(ip);
            owners.push(shown);
        }
        (None, Some(id), _) => wanted.push((step_id, LogHosts::Ids(vec![id]), vec![shown])),
        (None, None, Some(ip)) => wanted.push((step_id, LogHosts::Ips(vec![ip]), vec![shown])),
        // Neither id nor IP: nothing to ask for.
        _ => {}
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
mod tests {
    use super::*;
    use serde_json::json;

    fn target(name: &str, outcome: TargetOutcome) -> TargetLog {
        TargetLog::new(name.into(), outcome, String::new())
    }

    #[test]
    fn failures_come_first_and_a_filter_keeps_what_it_names() {
        let mut b = target("10.0.0.2", TargetOutcome::Failed);
        b.aliases = vec!["102".into()];
        let targets = vec![
            target("10.0.0.1", TargetOutcome::Succeeded),
            b,
            target("10.0.0.3", TargetOutcome::Running),
            target("10.0.0.4", TargetOutcome::Failed),
        ];
        let (shown, all) = select(targets.clone(), None);
        let order: Vec<&str> = shown.iter().map(|t| t.target.as_str()).collect();
        assert_eq!(order, ["10.0.0.2", "10.0.0.4", "10.0.0.1", "10.0.0.3"]);
        assert_eq!(all.len(), 4);
        let (shown, all) = select(targets.clone(), Some("102"));
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].target, "10.0.0.2");
        assert_eq!(all.len(), 4, "every name, for a filter that finds nothing");
        assert!(select(targets, Some("10.9.9.9")).0.is_empty());
    }

    #[test]
    fn gsekit_processes_from_a_job_task_page() -> Result<(), serde_json::Error> {
        let page: gsekit::JobTaskPage = serde_json::from_value(json!({
            "count": 2,
            "status_counter": {"pending": 0, "running": 0, "succeeded": 1, "failed": 1, "ignored": 0},
            "list": [
                {"id": 1, "job_id": 5, "bk_process_id": 41, "status": "succeeded", "err_code": 0,
                 "start_time": "2024-01-01 10:00:00", "end_time": "2024-01-01 10:00:03",
                 "pipeline_id": "p1",
                 "extra_data": {"failed_reason": "", "err_code": 0, "retryable": false, "solutions": [],
                    "process_info": {"host": {"bk_host_innerip": "10.0.0.1", "bk_host_id": 7},
                                     "process": {"bk_process_name": "nginx", "bk_process_id": 41}}}},
                {"id": 2, "job_id": 5, "bk_process_id": 42, "status": "failed", "err_code": 3,
                 "extra_data": {"failed_reason": "进程启动超时", "err_code": 3, "retryable": true,
                    "solutions": [{"solution": "check the start command"}],
                    "process_info": {"host": {"bk_host_innerip": "10.0.0.2", "bk_host_id": 8},
                                     "process": {"bk_process_name": "nginx", "bk_process_id": 42}}}}
            ]
        }))?;
        let (shown, _) = select(page.list.iter().map(gsekit_target).collect(), None);
        assert_eq!(shown[0].target, "10.0.0.2 nginx");
        assert_eq!(shown[0].outcome, TargetOutcome::Failed);
        assert_eq!(shown[0].status, "failed (err_code 3)");
        assert_eq!(shown[0].reason.as_deref(), Some("进程启动超时"));
        assert!(shown[0].answers_to("42") && shown[0].answers_to("8"));
        assert_eq!(shown[1].status, "succeeded");
        assert_eq!(shown[1].reason, None);
        Ok(())
    }

    #[test]
    fn bkflow_nodes_from_states_and_details() -> Result<(), serde_json::Error> {
        let root: crate::bk::bkflow::StateNode = serde_json::from_value(json!({
            "id": "root", "state": "FAILED", "root_id": "root", "parent_id": "root",
            "version": "v", "loop": 1, "retry": 0, "skip": false, "error_ignorable": false,
            "error_ignored": false, "elapsed_time": 3, "start_time": "2024-01-01 10:00:00",
            "finish_time": null,
            "children": {
                "n1": {"id": "n1", "state": "FINISHED", "retry": 0, "skip": false, "children": {}},
                "n2": {"id": "n2", "state": "FAILED", "retry": 2, "skip": false, "children": {}}
            }
        }))?;
        let detail: crate::bk::bkflow::NodeDetail = serde_json::from_value(json!({
            "id": "n2", "name": "deploy", "state": "FAILED", "inputs": {}, "outputs": [],
            "ex_data": "HTTP 500 from the deploy service", "error_ignorable": false
        }))?;
        let leaves = root.leaves();
        let ok = bkflow_target(leaves[0].0, leaves[0].1, None);
        assert_eq!(
            (ok.target.as_str(), ok.outcome),
            ("n1", TargetOutcome::Succeeded)
        );
        let failed = bkflow_target(leaves[1].0, leaves[1].1, Some(&detail));
        assert_eq!(failed.target, "deploy");
        assert_eq!(failed.status, "FAILED (retried 2 times)");
        assert_eq!(
            failed.reason.as_deref(),
            Some("HTTP 500 from the deploy service")
        );
        assert!(failed.answers_to("n2") && failed.answers_to("DEPLOY"));
        Ok(())
    }

    #[test]
    fn a_nodeman_host_takes_its_failed_steps_last_line_as_reason() -> Result<(), serde_json::Error>
    {
        let host: nodeman::HostResult = serde_json::from_value(json!({
            "instance_id": "host|instance|host|1001", "ip": "10.1.4.2", "inner_ip": "10.1.4.2",
            "bk_host_id": 1001, "bk_cloud_id": 0, "status": "FAILED",
            "status_display": "执行失败", "step": "重启"
        }))?;
        let steps: Vec<nodeman::LogStep> = serde_json::from_value(json!([
            {"step": "下发脚本", "status": "SUCCESS", "log": "[10:00:00 INFO] ok"},
            {"step": "重启", "status": "FAILED",
             "log": "[10:00:01 INFO] 开始重启\n[10:00:02 ERROR] agent 未响应\n"}
        ]))?;
        let mut t = nodeman_target(&host);
        assert_eq!(t.reason.as_deref(), Some("重启"));
        assert!(t.answers_to("1001") && t.answers_to("host|instance|host|1001"));
        fill_nodeman_steps(&mut t, &steps);
        assert_eq!(t.steps.len(), 2);
        assert_eq!(
            t.reason.as_deref(),
            Some("重启: [10:00:02 ERROR] agent 未响应")
        );
        Ok(())
    }

    #[test]
    fn a_job_host_counts_with_its_worst_step() {
        let mut hosts = JobHosts::default();
        let ok = job_host_status_text(Some(9));
        let bad = format!("{}, exit code 1", job_host_status_text(Some(104)));
        hosts.add(
            "10.0.0.1".into(),
            vec!["1".into()],
            "copy",
            Some(9),
            ok.clone(),
        );
        hosts.add(
            "10.0.0.1".into(),
            vec!["1".into()],
            "run",
            Some(104),
            bad.clone(),
        );
        hosts.add("10.0.0.2".into(), vec!["2".into()], "copy", Some(9), ok);
        assert_eq!(hosts.targets.len(), 2);
        let t = &hosts.targets[0];
        assert_eq!(t.outcome, TargetOutcome::Failed);
        assert_eq!(t.status, bad);
        assert_eq!(
            t.reason.as_deref(),
            Some("step 'run': host status 104 (script exited non-zero), exit code 1")
        );
        assert_eq!(t.steps.len(), 2);
        assert_eq!(hosts.targets[1].outcome, TargetOutcome::Succeeded);
    }

    #[test]
    fn job_log_calls_group_hosts_by_step_and_naming() {
        let mut wanted = Vec::new();
        let ip = |s: &str| {
            Some(CloudIp {
                bk_cloud_id: 0,
                ip: s.into(),
            })
        };
        add_wanted(&mut wanted, 1, Some(11), ip("10.0.0.1"), 0);
        add_wanted(&mut wanted, 1, Some(12), ip("10.0.0.2"), 1);
        add_wanted(&mut wanted, 2, Some(11), ip("10.0.0.1"), 0);
        add_wanted(&mut wanted, 1, None, ip("10.0.0.3"), 2);
        add_wanted(&mut wanted, 1, None, None, 3);
        assert_eq!(wanted.len(), 3);
        assert_eq!(wanted[0], (1, LogHosts::Ids(vec![11, 12]), vec![0, 1]));
        assert_eq!(wanted[1], (2, LogHosts::Ids(vec![11]), vec![0]));
        assert!(
            matches!(&wanted[2], (1, LogHosts::Ips(ips), owners) if ips.len() == 1 && owners == &[2])
        );
    }
}
