//! The JOB side of [`BkClient::target_logs`]: a job instance's hosts, each once with a step
//! entry per step it ran in, and the log of each (v3 asks for them in batches per step; v2 gives
//! them with the instance).

use crate::bk::job::{self, CloudIp, LogHosts, ScopeType};
use crate::bk::{BkClient, BkError};

use super::super::phases::{job_host_status_text, job_status_name};
use super::{LOG_TARGETS_CAP, StepLog, TargetLog, TargetLogs, TargetOutcome};
use super::{not_fetched, pick, select, selection};

/// Most hosts named in one JOB `batch_get_job_instance_ip_log`.
const JOB_HOSTS_PER_CALL: usize = 100;

impl BkClient {
    pub(super) async fn job_v3_logs(
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
                job_status_name(st.job_instance.status)
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

    pub(super) async fn job_v2_logs(
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
pub(super) struct JobHosts {
    pub(super) targets: Vec<TargetLog>,
    /// Per target: the step instance of each of its steps (v3).
    step_ids: Vec<Vec<i64>>,
    /// Per target: its host id and address (v3).
    addresses: Vec<(Option<i64>, Option<CloudIp>)>,
}

impl JobHosts {
    /// Adds one host's result of one step; a host counts with its worst step, and the first
    /// failed step is its reason.
    pub(super) fn add(
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
pub(super) fn add_wanted(
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
