//! Execution logs, made up from each job's plan so they agree with its status calls: a host or
//! step that the status reports failed ends its log with the failure, one that runs has begun
//! its log, one that waits has none.
//!
//! - JOB v3 `batch_get_job_instance_ip_log` (gateway `POST /api/v3/...`, ESB
//!   `jobv3/batch_get_job_instance_ip_log/`) and `get_job_instance_ip_log` (gateway `GET`, ESB
//!   `jobv3/get_job_instance_ip_log/`): script step output per host (`script_task_logs`);
//!   a manual-confirm step has no host output;
//! - JOB v2 `get_job_instance_log` (ESB `job/get_job_instance_log/`): every step, hosts grouped
//!   by host status, output HTML-escaped as bk-job does in that API;
//! - NodeMan `GET /api/job/{id}/log/?instance_id=` (ESB `nodeman/api/job/log/` with `job_id`
//!   and `instance_id` in the body): the host's steps with status and log.

use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use serde_json::{Value, json};

use super::jobs::{JobInst, NmJob};
use super::model::{Progress, TargetState};
use super::wire::{Reply, Req, get_str, get_u64, get_u64_list};
use super::world::World;
use super::{job, nodeman};

fn stamp(t: Option<DateTime<Local>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A JOB host's script output in one step, up to where the host is now.
fn job_host_log(j: &JobInst, i: usize, step: &str, now: Instant) -> String {
    let state = job::host_state(j, i, now);
    let waiting = job::progress(j, now).is_some_and(|p| p.waiting);
    if state == TargetState::Pending || waiting {
        return String::new();
    }
    let (host, ip) = &j.hosts[i];
    let (start, end) = j.run.plan.parallel_window(i);
    let at = |d: Duration| stamp(j.run.wall_at(d));
    let pid = 10_000 + host % 50_000;
    let mut log = format!(
        "[{}][PID:{pid}] job_start\n[{}][PID:{pid}] {step}: running on {ip}\n",
        at(start),
        at(start)
    );
    match state {
        TargetState::Succeeded => log.push_str(&format!("[{}][PID:{pid}] done\n", at(end))),
        TargetState::Failed => log.push_str(&format!(
            "[{}][PID:{pid}] [sim] error: command failed on {ip}\n[{}][PID:{pid}] exit code 1\n",
            at(end),
            at(end)
        )),
        TargetState::Cancelled => {
            let stop = j.run.clock.cancelled_at.unwrap_or(end);
            log.push_str(&format!("[{}][PID:{pid}] terminated\n", at(stop)));
        }
        TargetState::Pending | TargetState::Running => {}
    }
    log
}

/// The step of a JOB request, and whether it runs on hosts (a manual confirm does not).
fn job_step<'a>(j: &'a JobInst, req: &Req) -> Result<&'a super::jobs::StepDef, Reply> {
    match get_u64(&req.params, "step_instance_id") {
        Ok(Some(id)) => j
            .steps
            .iter()
            .find(|s| s.step_instance_id == id)
            .ok_or_else(|| job::illegal("step_instance_id")),
        _ => Err(job::illegal("step_instance_id")),
    }
}

fn script_log(j: &JobInst, i: usize, step: &super::jobs::StepDef, now: Instant) -> Value {
    let (host, ip) = &j.hosts[i];
    json!({
        "bk_host_id": host,
        "ip": ip,
        "bk_cloud_id": 0,
        "log_content": job_host_log(j, i, &step.name, now),
    })
}

/// v3 `batch_get_job_instance_ip_log`: `host_id_list`, else `ip_list`.
pub(crate) fn job_batch_ip_log(w: &mut World, req: &Req, now: Instant) -> Reply {
    let j = match job::find_mut(w, req) {
        Ok(j) => &*j,
        Err(r) => return r,
    };
    let step = match job_step(j, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ids = match get_u64_list(&req.params, "host_id_list") {
        Ok(ids) => ids.filter(|ids| !ids.is_empty()),
        Err(()) => return job::illegal("host_id_list"),
    };
    let ips: Option<Vec<String>> = req
        .params
        .get("ip_list")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|x| x.get("ip").and_then(Value::as_str).map(str::to_owned))
                .collect()
        });
    if ids.is_none() && ips.is_none() {
        return job::illegal("host_id_list");
    }
    let logs: Vec<Value> = if step.kind == 3 {
        Vec::new()
    } else {
        (0..j.hosts.len())
            .filter(|&i| match (&ids, &ips) {
                (Some(ids), _) => ids.contains(&j.hosts[i].0),
                (None, Some(ips)) => ips.contains(&j.hosts[i].1),
                (None, None) => false,
            })
            .map(|i| script_log(j, i, step, now))
            .collect()
    };
    Reply::ok(job::ok_body(json!({
        "log_type": 1,
        "job_instance_id": j.id,
        "step_instance_id": step.step_instance_id,
        "script_task_logs": logs,
    })))
}

/// v3 `get_job_instance_ip_log`: one host, by `host_id` or `bk_cloud_id` + `ip`.
pub(crate) fn job_ip_log(w: &mut World, req: &Req, now: Instant) -> Reply {
    let j = match job::find_mut(w, req) {
        Ok(j) => &*j,
        Err(r) => return r,
    };
    let step = match job_step(j, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let host_id = get_u64(&req.params, "host_id").ok().flatten();
    let ip = get_str(&req.params, "ip");
    let Some(i) = (0..j.hosts.len()).find(|&i| match (host_id, &ip) {
        (Some(h), _) => j.hosts[i].0 == h,
        (None, Some(ip)) => &j.hosts[i].1 == ip,
        (None, None) => false,
    }) else {
        return job::illegal("host_id");
    };
    let mut data = script_log(j, i, step, now);
    data["log_type"] = json!(1);
    if step.kind == 3 {
        data["log_content"] = json!("");
    }
    Reply::ok(job::ok_body(data))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// v2 `get_job_instance_log`: every step, its hosts grouped by host status.
pub(crate) fn job_log_v2(w: &mut World, req: &Req, now: Instant) -> Reply {
    let j = match job::find_mut(w, req) {
        Ok(j) => &*j,
        Err(r) => return r,
    };
    let status = job::raw_status(j, now);
    let plan = &j.run.plan;
    let steps: Vec<Value> = j
        .steps
        .iter()
        .map(|s| {
            let st = job::step_status(j, s, status, now);
            let mut groups: Vec<(u32, Vec<Value>)> = Vec::new();
            for i in (0..j.hosts.len()).filter(|_| s.kind != 3) {
                let (code, exit_code, error_code) = job::host_codes(j, i, now);
                let (start, end) = plan.parallel_window(i);
                let done = matches!(code, 9 | 104 | 403);
                let entry = json!({
                    "start_time": if code == 5 { Value::Null } else { json!(stamp(j.run.wall_at(start))) },
                    "end_time": if done { json!(stamp(j.run.wall_at(end))) } else { Value::Null },
                    "total_time": if done { json!((end - start).as_secs_f64()) } else { json!(0) },
                    "execute_count": 0,
                    "error_code": error_code,
                    "exit_code": exit_code,
                    "log_content": escape_html(&job_host_log(j, i, &s.name, now)),
                    "bk_cloud_id": 0,
                    "ip": j.hosts[i].1,
                });
                match groups.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, hosts)) => hosts.push(entry),
                    None => groups.push((code, vec![entry])),
                }
            }
            json!({
                "is_finished": job::FINISHED.contains(&st),
                "step_instance_id": s.step_instance_id,
                "name": s.name,
                "status": st,
                "step_results": groups
                    .into_iter()
                    .map(|(code, hosts)| json!({"ip_status": code, "tag": "", "ip_logs": hosts}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Reply::ok(job::ok_body(json!(steps)))
}

/// The steps of a NodeMan host's job; the middle one does the work and is where a host fails.
fn nm_steps(job: &NmJob) -> Vec<String> {
    let (kind, op) = nodeman::split_type(&job.job_type);
    let what = match kind {
        "PLUGIN" => job.plugin.clone().unwrap_or_else(|| "插件".into()),
        "PROXY" => "Proxy".into(),
        _ => "Agent".into(),
    };
    let verb = match op.trim_start_matches("MAIN_") {
        "RESTART" => "重启",
        "REINSTALL" => "重装",
        "UPGRADE" => "升级",
        "UNINSTALL" | "REMOVE" => "卸载",
        "RELOAD" => "重载",
        "START" => "启动",
        "STOP" => "停止",
        other => other,
    }
    .to_owned();
    vec![
        "更新任务状态".into(),
        format!("{verb}{what}"),
        format!("查询{what}状态"),
    ]
}

fn nm_step_items(job: &NmJob, i: usize, p: Option<Progress>, now: Instant) -> Vec<Value> {
    let names = nm_steps(job);
    let state = nodeman::host_state(job, i, now);
    let (start, end) = job.run.plan.parallel_window(i);
    let n = names.len() as u32;
    let slot = (end - start) / n;
    let eff = p.map(|p| p.eff).unwrap_or_default();
    let failing = names.len() - 2;
    let at = |d: Duration| stamp(job.run.wall_at(d));
    let mut failed_before = false;
    names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (s0, s1) = (start + slot * k as u32, start + slot * (k as u32 + 1));
            let (status, log) = if failed_before {
                ("PENDING", String::new())
            } else {
                match state {
                    TargetState::Pending => ("PENDING", String::new()),
                    TargetState::Succeeded => ("SUCCESS", format!("[{}] {name} 完成", at(s1))),
                    TargetState::Failed if k == failing => {
                        failed_before = true;
                        (
                            "FAILED",
                            format!("[{}] 开始{name}\n[{}] [sim] 执行失败: 命令返回非零", at(s0), at(s1)),
                        )
                    }
                    TargetState::Cancelled if eff < s1 => {
                        failed_before = true;
                        ("FAILED", format!("[{}] 开始{name}\n任务已终止", at(s0)))
                    }
                    _ if eff >= s1 => ("SUCCESS", format!("[{}] {name} 完成", at(s1))),
                    _ if eff >= s0 => ("RUNNING", format!("[{}] 开始{name}", at(s0))),
                    _ => ("PENDING", String::new()),
                }
            };
            json!({
                "step": name,
                "status": status,
                "log": log,
                "start_time": if status == "PENDING" { Value::Null } else { json!(at(s0)) },
                "finish_time": if matches!(status, "SUCCESS" | "FAILED") { json!(at(s1)) } else { Value::Null },
            })
        })
        .collect()
}

/// NodeMan `job/{id}/log/`: the steps of the host `instance_id` names.
pub(crate) fn nodeman_log(w: &mut World, req: &Req, now: Instant) -> Reply {
    let id = match nodeman::job_id_of(req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(job) = w.nm.get(&id) else {
        return Reply::ok(nodeman::error_body(nodeman::JOB_NOT_FOUND, "任务不存在"));
    };
    let Some(instance) = get_str(&req.params, "instance_id") else {
        return Reply::ok(nodeman::error_body(
            nodeman::VALIDATION,
            "instance_id: 该字段是必填项。",
        ));
    };
    let host = instance
        .rsplit('|')
        .next()
        .and_then(|h| h.parse::<u64>().ok());
    let found = host.and_then(|h| job.hosts.iter().position(|x| *x == h));
    let (Some(i), true) = (found, nodeman::prepared(job, now)) else {
        return Reply::ok(nodeman::error_body(
            nodeman::VALIDATION,
            &format!("实例 {instance} 不存在"),
        ));
    };
    let plan = &job.run.plan;
    let p = job.run.clock.progress(now, plan, plan.end());
    Reply::ok(nodeman::ok_body(json!(nm_step_items(job, i, p, now))))
}
