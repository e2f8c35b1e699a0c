//! NodeMan (bk-nodeman 2.4): `job/operate`, `plugin/operate`, `job/{id}/details`,
//! `job/{id}/revoke`, `job/job_list` (gateway `/api/...` and `/system/api/...`, ESB
//! `nodeman/api/...`).
//!
//! Envelope `{result, data, code, message}` with int codes `3800000 + module + error`
//! (`apps/exceptions.py`): 3800001 validation, 3801012 job does not exist. Every `details` call
//! recomputes the job status from the host counters; after a revoke the status is `TERMINATED`
//! for exactly one `details` call and is then recomputed to FAILED / PART_FAILED.

use std::time::Instant;

use chrono::{DateTime, Local};
use serde_json::{Map, Value, json};

use super::api::JobView;
use super::jobs::NmJob;
use super::model::{Run, TargetState};
use super::wire::{Op, Reply, Req, get_i64, get_str, get_str_list, get_u64, get_u64_list, page};
use super::world::World;
use super::{SimConfig, System};

pub(super) const VALIDATION: i64 = 3800001;
pub(super) const JOB_NOT_FOUND: i64 = 3801012;

const AGENT_TYPES: [&str; 16] = [
    "RESTART_AGENT",
    "REINSTALL_AGENT",
    "UNINSTALL_AGENT",
    "REMOVE_AGENT",
    "UPGRADE_AGENT",
    "IMPORT_AGENT",
    "RELOAD_AGENT",
    "ACTIVATE_AGENT",
    "RESTART_PROXY",
    "REINSTALL_PROXY",
    "UNINSTALL_PROXY",
    "REMOVE_PROXY",
    "UPGRADE_PROXY",
    "IMPORT_PROXY",
    "RELOAD_PROXY",
    "ACTIVATE_PROXY",
];

const PLUGIN_TYPES: [&str; 13] = [
    "MAIN_START_PLUGIN",
    "MAIN_STOP_PLUGIN",
    "MAIN_RESTART_PLUGIN",
    "MAIN_RELOAD_PLUGIN",
    "MAIN_DELEGATE_PLUGIN",
    "MAIN_UNDELEGATE_PLUGIN",
    "MAIN_INSTALL_PLUGIN",
    "MAIN_STOP_AND_DELETE_PLUGIN",
    "DEBUG_PLUGIN",
    "STOP_DEBUG_PLUGIN",
    "PUSH_CONFIG_PLUGIN",
    "REMOVE_CONFIG_PLUGIN",
    "PACKING_PLUGIN",
];

pub(super) fn ok_body(data: Value) -> Value {
    json!({"result": true, "data": data, "code": 0, "message": ""})
}

/// NodeMan's error envelope (int code).
pub(crate) fn error_body(code: i64, message: &str) -> Value {
    json!({"result": false, "data": null, "code": code, "message": message})
}

fn invalid(message: impl Into<String>) -> Reply {
    Reply::ok(error_body(VALIDATION, &message.into()))
}

pub(super) fn fmt_time(t: DateTime<Local>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `job/operate` and `plugin/operate`.
pub(crate) fn create(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    if let Some(e) = &req.body_error {
        return invalid(e.clone());
    }
    let p = &req.params;
    let Some(job_type) = get_str(p, "job_type") else {
        return invalid("job_type: 该字段是必填项。");
    };
    let plugin_call = req.op == Op::NmPluginOperate;
    if !plugin_call
        && (job_type.starts_with("INSTALL_")
            || job_type.starts_with("REPLACE_")
            || job_type.starts_with("MANUAL_INSTALL_"))
    {
        return invalid(format!(
            "{job_type} 不可用于该接口，安装/替换请使用 /api/job/install/"
        ));
    }
    let allowed = if plugin_call {
        PLUGIN_TYPES.contains(&job_type.as_str())
    } else {
        AGENT_TYPES.contains(&job_type.as_str()) || PLUGIN_TYPES.contains(&job_type.as_str())
    };
    if !allowed {
        return invalid(format!("job_type: “{job_type}” 不是合法选项。"));
    }
    let bk_biz_id = match get_u64_list(p, "bk_biz_id") {
        Ok(v) => v.unwrap_or_default(),
        Err(()) => return invalid("bk_biz_id: 请提供整数列表 (Expected a list of items)。"),
    };
    let (bk_host_id, exclude_hosts) = match (
        get_u64_list(p, "bk_host_id"),
        get_u64_list(p, "exclude_hosts"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return invalid("bk_host_id / exclude_hosts: 请提供整数列表。"),
    };
    let hosts_param: Option<Vec<u64>> = match p.get("hosts") {
        Some(Value::Array(items)) if !plugin_call => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, h)| h["bk_host_id"].as_u64().unwrap_or(i as u64 + 1))
                .collect(),
        ),
        _ => None,
    };
    if bk_host_id.is_some() && exclude_hosts.is_some() {
        return invalid("跨页全选模式下不允许传bk_host_id参数");
    }
    if bk_host_id.is_none() && exclude_hosts.is_none() && hosts_param.is_none() {
        return invalid("bk_host_id, exclude_hosts, hosts 必须选择一个");
    }
    let plugins: Vec<String> = if plugin_call {
        let single = p
            .get("plugin_params")
            .and_then(|v| v.get("name"))
            .and_then(Value::as_str)
            .map(|s| vec![s.to_string()]);
        let many = p
            .get("plugin_params_list")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|x| x.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect::<Vec<_>>()
            });
        match single.or(many) {
            Some(v) if !v.is_empty() => v,
            _ => return invalid("plugin_params 或 plugin_params_list 必须提供一个（含 name）"),
        }
    } else {
        Vec::new()
    };
    let named = bk_host_id.or(hosts_param);
    let natural = named.as_ref().map(Vec::len).filter(|n| *n > 0);
    let exclude = exclude_hosts.unwrap_or_default();
    let base = req.base_url.as_str().trim_end_matches('/').to_string();
    let mut created: Vec<(Option<String>, u64)> = Vec::new();
    let jobs: Vec<Option<String>> = if plugins.is_empty() {
        vec![None]
    } else {
        plugins.into_iter().map(Some).collect()
    };
    for plugin in jobs {
        let plan = w.plan_for(System::Nodeman, config, natural);
        let id = w.next_id(System::Nodeman);
        let hosts = match &named {
            Some(h) if !h.is_empty() => h.clone(),
            _ => (1..)
                .map(|n| id * 1000 + n)
                .filter(|h| !exclude.contains(h))
                .take(plan.targets)
                .collect(),
        };
        let mut run = Run::new(plan, req.body.clone(), req.mode);
        run.start(now);
        w.nm.insert(
            id,
            NmJob {
                id,
                job_type: job_type.clone(),
                bk_biz_id: bk_biz_id.clone(),
                hosts,
                created_by: req.user.clone(),
                plugin: plugin.clone(),
                terminated_unreported: false,
                run,
            },
        );
        created.push((plugin, id));
    }
    let data = match created.as_slice() {
        [(_, id)] => json!({"job_id": id, "job_url": format!("{base}/#/task-list/detail/{id}")}),
        many => Value::Object(
            many.iter()
                .map(|(name, id)| (name.clone().unwrap_or_default(), json!(id)))
                .collect::<Map<String, Value>>(),
        ),
    };
    Reply::ok(ok_body(data))
}

pub(super) fn host_state(job: &NmJob, i: usize, now: Instant) -> TargetState {
    let plan = &job.run.plan;
    let p = job.run.clock.progress(now, plan, plan.end());
    TargetState::of(plan.parallel_window(i), plan.target_fails(i), p)
}

pub(super) fn prepared(job: &NmJob, now: Instant) -> bool {
    let plan = &job.run.plan;
    job.run
        .clock
        .progress(now, plan, plan.end())
        .is_some_and(|p| p.eff >= plan.pending_phase() || p.cancelled)
}

fn host_status(s: TargetState) -> &'static str {
    match s {
        TargetState::Pending => "PENDING",
        TargetState::Running => "RUNNING",
        TargetState::Succeeded => "SUCCESS",
        // Revoke forces unfinished instances to FAILED.
        TargetState::Failed | TargetState::Cancelled => "FAILED",
    }
}

/// Statistics and the recomputed status (never TERMINATED).
fn computed(job: &NmJob, now: Instant) -> (Value, &'static str) {
    if !prepared(job, now) {
        return (
            json!({"total_count": 0, "success_count": 0, "failed_count": 0, "pending_count": 0, "running_count": 0, "ignored_count": 0}),
            "PENDING",
        );
    }
    let (mut ok, mut failed, mut pending, mut running) = (0, 0, 0, 0);
    for i in 0..job.hosts.len() {
        match host_status(host_state(job, i, now)) {
            "SUCCESS" => ok += 1,
            "FAILED" => failed += 1,
            "RUNNING" => running += 1,
            _ => pending += 1,
        }
    }
    let status = if pending + running > 0 {
        "RUNNING"
    } else if failed == 0 {
        "SUCCESS"
    } else if ok == 0 {
        "FAILED"
    } else {
        "PART_FAILED"
    };
    (
        json!({"total_count": job.hosts.len(), "success_count": ok, "failed_count": failed, "pending_count": pending, "running_count": running, "ignored_count": 0}),
        status,
    )
}

pub(super) fn split_type(job_type: &str) -> (&'static str, String) {
    for (suffix, kind) in [
        ("_AGENT", "AGENT"),
        ("_PROXY", "PROXY"),
        ("_PLUGIN", "PLUGIN"),
    ] {
        if let Some(op) = job_type.strip_suffix(suffix) {
            return (kind, op.to_string());
        }
    }
    ("AGENT", job_type.to_string())
}

fn host_item(job: &NmJob, i: usize, now: Instant) -> Value {
    let state = host_state(job, i, now);
    let status = host_status(state);
    let (kind, op) = split_type(&job.job_type);
    let (start, end) = job.run.plan.parallel_window(i);
    let host = job.hosts[i];
    let ip = format!("10.1.{}.{}", (host / 250) % 250, host % 250 + 1);
    let (display, step) = match status {
        "PENDING" => ("等待执行", ""),
        "RUNNING" => ("正在执行", "执行中"),
        "SUCCESS" => ("执行成功", "完成"),
        _ if state == TargetState::Cancelled => ("执行失败", "任务已终止"),
        _ => ("执行失败", "[sim] 执行失败: 命令返回非零"),
    };
    json!({
        "instance_id": format!("host|instance|host|{host}"),
        "ip": ip,
        "inner_ip": ip,
        "inner_ipv6": "",
        "bk_host_id": host,
        "bk_cloud_id": 0,
        "bk_biz_id": job.bk_biz_id.first().copied().unwrap_or(2),
        "status": status,
        "start_time": (state != TargetState::Pending).then(|| job.run.wall_at(start).map(fmt_time)).flatten(),
        "end_time": state.is_done().then(|| job.run.wall_at(end).map(fmt_time)).flatten(),
        "cost_time": if state.is_done() { (end - start).as_secs() } else { 0 },
        "op_type": op,
        "op_type_display": op,
        "node_type": kind,
        "node_id": host,
        "status_display": display,
        "step": step,
        "is_manual": false,
        "ap_id": 1,
    })
}

pub(super) fn job_id_of(req: &Req) -> Result<u64, Reply> {
    if let Some(id) = req.ids.id {
        return Ok(id);
    }
    match get_u64(&req.params, "job_id") {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(invalid("job_id: 该字段是必填项。")),
        Err(()) => Err(invalid("job_id: 请填写合法的整数值。")),
    }
}

fn matches_conditions(item: &Value, conditions: &[Value]) -> bool {
    conditions.iter().all(|c| {
        let key = c.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<String> = match c.get("value") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(v) => vec![v.to_string()],
            None => Vec::new(),
        };
        let field = |name: &str| {
            item.get(name)
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default()
        };
        match key {
            "status" => values.contains(&field("status")),
            "ip" | "inner_ip" => values.contains(&field("ip")),
            "instance_id" => values.contains(&field("instance_id")),
            "exclude_instance_ids" => !values.contains(&field("instance_id")),
            _ => true,
        }
    })
}

/// `POST /api/job/{id}/details/`.
pub(crate) fn details(w: &mut World, req: &Req, now: Instant) -> Reply {
    let id = match job_id_of(req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(job) = w.nm.get_mut(&id) else {
        return Reply::ok(error_body(JOB_NOT_FOUND, "任务不存在"));
    };
    let (statistics, computed_status) = computed(job, now);
    let status = if job.terminated_unreported {
        job.terminated_unreported = false;
        "TERMINATED"
    } else {
        computed_status
    };
    let job = &*job;
    let p = &req.params;
    let pg = get_i64(p, "page").ok().flatten().unwrap_or(1);
    let size = get_i64(p, "pagesize").ok().flatten().unwrap_or(10);
    let conditions = p
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let hosts: Vec<Value> = if prepared(job, now) {
        (0..job.hosts.len())
            .map(|i| host_item(job, i, now))
            .filter(|h| matches_conditions(h, &conditions))
            .collect()
    } else {
        Vec::new()
    };
    let (kind, op) = split_type(&job.job_type);
    let final_state = matches!(status, "SUCCESS" | "FAILED" | "PART_FAILED" | "TERMINATED");
    let end = final_state.then(|| {
        job.run
            .clock
            .cancelled_at
            .unwrap_or_else(|| job.run.plan.end())
    });
    Reply::ok(ok_body(json!({
        "job_id": job.id,
        "created_by": job.created_by,
        "job_type": job.job_type,
        "job_type_display": job.job_type,
        "ip_filter_list": [],
        "total": hosts.len(),
        "list": page(&hosts, pg, size),
        "statistics": statistics,
        "status": status,
        "start_time": fmt_time(job.run.created_wall),
        "end_time": end.and_then(|d| job.run.wall_at(d)).map(fmt_time),
        "cost_time": end.map(|d| d.as_secs()).unwrap_or(0),
        "meta": {
            "type": kind,
            "step_type": kind,
            "op_type": op,
            "op_type_display": op,
            "name": job.plugin,
            "category": "manual",
        },
    })))
}

/// `POST /api/job/{id}/revoke/`.
pub(crate) fn revoke(w: &mut World, req: &Req, now: Instant) -> Reply {
    let id = match job_id_of(req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(job) = w.nm.get_mut(&id) else {
        return Reply::ok(error_body(JOB_NOT_FOUND, "任务不存在"));
    };
    let plan = job.run.plan.clone();
    job.run.clock.cancel(now, &plan, plan.end());
    job.terminated_unreported = true;
    Reply::ok(ok_body(json!({"task_id_list": [job.id * 10 + 1]})))
}

/// `POST /api/job/job_list/`.
pub(crate) fn list(w: &mut World, req: &Req, now: Instant) -> Reply {
    let p = &req.params;
    let pg = get_i64(p, "page").ok().flatten().unwrap_or(1);
    let size = get_i64(p, "pagesize").ok().flatten().unwrap_or(10);
    let created_by = get_str_list(p, "created_by");
    let job_types = get_str_list(p, "job_type");
    let statuses = get_str_list(p, "status");
    let ids = get_u64_list(p, "job_id").ok().flatten();
    let bizs = get_u64_list(p, "bk_biz_id").ok().flatten();
    let start = get_str(p, "start_time").and_then(|s| super::wire::parse_time(&s));
    let end = get_str(p, "end_time").and_then(|s| super::wire::parse_time(&s));
    let mut rows: Vec<Value> =
        w.nm.values()
            .filter(|j| {
                created_by
                    .as_ref()
                    .is_none_or(|c| c.contains(&j.created_by))
            })
            .filter(|j| job_types.as_ref().is_none_or(|t| t.contains(&j.job_type)))
            .filter(|j| ids.as_ref().is_none_or(|ids| ids.contains(&j.id)))
            .filter(|j| {
                bizs.as_ref()
                    .is_none_or(|b| j.bk_biz_id.iter().any(|x| b.contains(x)))
            })
            .filter(|j| start.is_none_or(|s| j.run.created_wall >= s))
            .filter(|j| end.is_none_or(|e| j.run.created_wall <= e))
            .map(|j| {
                let (statistics, status) = computed(j, now);
                let status = if j.terminated_unreported {
                    "TERMINATED"
                } else {
                    status
                };
                json!({
                    "id": j.id,
                    "bk_biz_scope": j.bk_biz_id,
                    "job_type": j.job_type,
                    "job_type_display": j.job_type,
                    "created_by": j.created_by,
                    "start_time": fmt_time(j.run.created_wall),
                    "end_time": null,
                    "cost_time": 0,
                    "status": status,
                    "statistics": statistics,
                    "task_id_list": [j.id * 10 + 1],
                    "is_auto_trigger": false,
                })
            })
            .filter(|v| {
                statuses
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|x| v["status"].as_str() == Some(x.as_str())))
            })
            .collect();
    rows.reverse();
    Reply::ok(ok_body(
        json!({"total": rows.len(), "list": page(&rows, pg, size)}),
    ))
}

pub(crate) fn views(w: &mut World, now: Instant) -> Vec<JobView> {
    w.nm.values()
        .map(|j| JobView {
            system: System::Nodeman,
            id: j.id,
            state: if j.terminated_unreported {
                "TERMINATED".to_string()
            } else {
                computed(j, now).1.to_string()
            },
            started: true,
            mode: super::wire::mode_str(j.run.mode),
            created_at: j.run.created_wall.to_rfc3339(),
            finished_at: j.run.planned_end(),
            created: j.run.request.clone(),
        })
        .collect()
}
