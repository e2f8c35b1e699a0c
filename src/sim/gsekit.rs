//! GSEKit (bk-process-config-manager 1.0.x): `create_job`, `job_status`, `job_task`, job list.
//!
//! Envelope: `{result, data, code: 0, message: ""}` on success; errors carry a 7-digit
//! **string** code, the code appended to the message in full-width brackets, and an `errors`
//! field (`apps/generic.py` `_error`). Always HTTP 200, except the paths where upstream crashes
//! with a bare Django 500 (neither `scope` nor `expression_scope`; an unparsable body, whose DRF
//! 3-digit error code makes `_error` raise). There is no cancel.

use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use serde_json::{Map, Value, json};

use super::api::JobView;
use super::jobs::GseJob;
use super::model::{Run, TargetState};
use super::wire::{Reply, Req, get_i64, get_str, get_str_list, get_u64, get_u64_list, page};
use super::world::World;
use super::{SimConfig, System};

const VALIDATION: &str = "4100001";
const JOB_NOT_FOUND: &str = "4102005";
const OBJECTS: [&str; 2] = ["configfile", "process"];
const ACTIONS: [&str; 10] = [
    "generate",
    "release",
    "diff",
    "start",
    "stop",
    "restart",
    "reload",
    "force_stop",
    "set_auto",
    "unset_auto",
];

pub(crate) fn ok_body(data: Value) -> Value {
    json!({"result": true, "data": data, "code": 0, "message": ""})
}

/// GSEKit's error envelope: string code, code appended to the message.
pub(crate) fn error_body(code: &str, message: &str) -> Value {
    json!({
        "result": false,
        "code": code,
        "data": null,
        "message": format!("{message}（{code}）"),
        "errors": null,
    })
}

fn invalid(field: &str, reason: &str) -> Reply {
    Reply::ok(error_body(
        VALIDATION,
        &format!("{field}({field}): 1.{reason} "),
    ))
}

fn server_error() -> Reply {
    Reply::Html {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        body: "<h1>Server Error (500)</h1>".to_string(),
    }
}

fn fmt_time(t: DateTime<Local>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%z").to_string()
}

/// `bk_biz_id` from the gateway path, or from the ESB body.
fn biz_of(req: &Req) -> Result<u64, Reply> {
    if let Some(b) = req.ids.biz {
        return Ok(b);
    }
    match get_u64(&req.params, "bk_biz_id") {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(invalid("bk_biz_id", "该字段是必填项。")),
        Err(()) => Err(invalid("bk_biz_id", "请填写合法的整数值。")),
    }
}

fn job_id_of(req: &Req) -> Result<u64, Reply> {
    if let Some(id) = req.ids.id {
        return Ok(id);
    }
    match get_u64(&req.params, "job_id") {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(invalid("job_id", "该字段是必填项。")),
        Err(()) => Err(invalid("job_id", "请填写合法的整数值。")),
    }
}

fn check_set_env(obj: &Map<String, Value>, required: bool, field: &str) -> Result<(), Reply> {
    match obj.get("bk_set_env") {
        None | Some(Value::Null) if required => {
            Err(invalid(&format!("{field}.bk_set_env"), "该字段是必填项。"))
        }
        None | Some(Value::Null) => Ok(()),
        Some(v) => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            if ["0", "1", "2", "3"].contains(&s.as_str()) {
                Ok(())
            } else {
                Err(invalid(
                    &format!("{field}.bk_set_env"),
                    &format!("“{s}” 不是合法选项。"),
                ))
            }
        }
    }
}

/// `POST /api/{bk_biz_id}/job/` (ESB `gsekit/api/job/create_job/`).
pub(crate) fn create(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    if req.body_error.is_some() {
        return server_error();
    }
    let biz = match biz_of(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let p = &req.params;
    let job_object = match get_str(p, "job_object") {
        None => return invalid("job_object", "该字段是必填项。"),
        Some(s) if !OBJECTS.contains(&s.as_str()) => {
            return invalid("job_object", &format!("“{s}” 不是合法选项。"));
        }
        Some(s) => s,
    };
    let job_action = match get_str(p, "job_action") {
        None => return invalid("job_action", "该字段是必填项。"),
        Some(s) if !ACTIONS.contains(&s.as_str()) => {
            return invalid("job_action", &format!("“{s}” 不是合法选项。"));
        }
        Some(s) => s,
    };
    let scope = p.get("scope").cloned().unwrap_or(Value::Null);
    let expression_scope = p.get("expression_scope").cloned().unwrap_or(Value::Null);
    for (name, v, required) in [
        ("scope", &scope, false),
        ("expression_scope", &expression_scope, true),
    ] {
        match v {
            Value::Null => {}
            Value::Object(m) => {
                if let Err(r) = check_set_env(m, required, name) {
                    return r;
                }
            }
            _ => return invalid(name, "请提供合法的字典。"),
        }
    }
    if scope.is_null() && expression_scope.is_null() {
        // Upstream dereferences None in `create_job` and crashes.
        return server_error();
    }
    // Checked like upstream's serializer, then handed to the task builder only: not kept on
    // the job row.
    if let Some(v) = p.get("extra_data")
        && !matches!(v, Value::Null | Value::Object(_))
    {
        return invalid("extra_data", "请提供合法的字典。");
    }
    let named: Vec<u64> = scope
        .as_object()
        .and_then(|s| get_u64_list(s, "bk_process_ids").ok().flatten())
        .unwrap_or_default();
    let natural = (!named.is_empty()).then_some(named.len());
    let plan = w.plan_for(System::Gsekit, config, natural);
    let id = w.next_id(System::Gsekit);
    let processes = if named.is_empty() {
        (0..plan.targets).map(|i| id * 100 + i as u64 + 1).collect()
    } else {
        named
    };
    let mut run = Run::new(plan, req.body.clone(), req.mode);
    // The job row is created and its sub-tasks are built right away (asynchronously upstream).
    run.start(now);
    w.gse.insert(
        id,
        GseJob {
            id,
            biz,
            job_object,
            job_action,
            scope,
            expression_scope,
            created_by: req.user.clone(),
            app_code: req.app_code.clone(),
            processes,
            run,
        },
    );
    Reply::ok(ok_body(json!({ "job_id": id })))
}

/// A job task's state.
fn task_state(job: &GseJob, i: usize, now: Instant) -> TargetState {
    let plan = &job.run.plan;
    let p = job.run.clock.progress(now, plan, plan.end());
    TargetState::of(plan.parallel_window(i), plan.target_fails(i), p)
}

fn is_ready(job: &GseJob, now: Instant) -> bool {
    let plan = &job.run.plan;
    job.run
        .clock
        .progress(now, plan, plan.end())
        .is_some_and(|p| p.eff >= plan.pending_phase())
}

fn status_word(s: TargetState) -> &'static str {
    match s {
        TargetState::Pending => "pending",
        TargetState::Running => "running",
        TargetState::Succeeded => "succeeded",
        TargetState::Failed | TargetState::Cancelled => "failed",
    }
}

/// The job's status and, when final, when it ended.
fn job_status(job: &GseJob, now: Instant) -> (&'static str, Option<Duration>) {
    if !is_ready(job, now) {
        return ("pending", None);
    }
    let states: Vec<TargetState> = (0..job.processes.len())
        .map(|i| task_state(job, i, now))
        .collect();
    if states.iter().any(|s| !s.is_done()) {
        ("running", None)
    } else if states.contains(&TargetState::Failed) {
        ("failed", Some(job.run.plan.end()))
    } else {
        ("succeeded", Some(job.run.plan.end()))
    }
}

fn expression(job: &GseJob) -> String {
    let e = job.expression_scope.as_object();
    let part = |k: &str| {
        e.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("*")
            .to_string()
    };
    [
        "bk_set_name",
        "bk_module_name",
        "service_instance_name",
        "bk_process_name",
        "bk_process_id",
    ]
    .iter()
    .map(|k| part(k))
    .collect::<Vec<_>>()
    .join(".")
}

fn job_info(job: &GseJob, now: Instant) -> Value {
    let (status, end) = job_status(job, now);
    json!({
        "id": job.id,
        "bk_biz_id": job.biz,
        "expression": expression(job),
        "scope": job.scope,
        "expression_scope": job.expression_scope,
        "job_object": job.job_object,
        "job_action": job.job_action,
        "status": status,
        "created_by": job.created_by,
        "is_ready": is_ready(job, now),
        "start_time": fmt_time(job.run.created_wall),
        "end_time": end.and_then(|d| job.run.wall_at(d)).map(fmt_time),
        "pipeline_id": if is_ready(job, now) { json!(super::wire::hex_id('p', job.id, 0)) } else { json!("") },
        "task_granularity": "process",
        // Upstream creates the job row without the request's extra_data (only its task builder
        // gets it); the row's extra_data holds a failed_reason, if building the tasks failed.
        "extra_data": {},
        "bk_app_code": job.app_code,
    })
}

fn task_item(job: &GseJob, i: usize, now: Instant) -> Value {
    let state = task_state(job, i, now);
    let plan = &job.run.plan;
    let (start, end) = plan.parallel_window(i);
    let pid = job.processes[i];
    let err_code = match state {
        TargetState::Succeeded => 0,
        TargetState::Pending => 1,
        TargetState::Running => 2,
        TargetState::Failed | TargetState::Cancelled => 3,
    };
    let failed_reason = if err_code == 3 {
        format!(
            "[sim] 进程{}执行失败: 进程启动超时 (exit code 1)",
            job.job_action
        )
    } else {
        String::new()
    };
    json!({
        "id": job.id * 1000 + i as u64 + 1,
        "job_id": job.id,
        "bk_process_id": pid,
        "status": status_word(state),
        "err_code": err_code,
        "start_time": (state != TargetState::Pending).then(|| job.run.wall_at(start).map(fmt_time)).flatten(),
        "end_time": state.is_done().then(|| job.run.wall_at(end).map(fmt_time)).flatten(),
        "pipeline_id": super::wire::hex_id('p', job.id, i as u64 + 1),
        "extra_data": {
            "failed_reason": failed_reason,
            "err_code": err_code,
            "retryable": err_code == 3,
            "solutions": [],
            "process_info": {
                "set": {"bk_set_id": 1, "bk_set_name": "sim-set", "bk_set_env": "3"},
                "module": {"bk_module_id": 1, "bk_module_name": "sim-module"},
                "host": {"bk_host_id": pid, "bk_host_innerip": format!("10.0.{}.{}", (pid / 250) % 250, pid % 250 + 1), "bk_cloud_id": 0},
                "process": {"bk_process_id": pid, "bk_process_name": format!("sim-proc-{}", i + 1)},
                "service_instance": {"id": pid, "name": format!("sim-instance-{pid}")},
                "process_template": {"id": 1},
            },
            "inst_id": 1,
            "local_inst_id": 1,
        },
        "topo_level_info": {},
    })
}

fn tasks_of(job: &GseJob, now: Instant) -> Vec<Value> {
    if !is_ready(job, now) {
        return Vec::new();
    }
    (0..job.processes.len())
        .map(|i| task_item(job, i, now))
        .collect()
}

fn counter(tasks: &[Value]) -> Value {
    let mut c = json!({"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "ignored": 0});
    for t in tasks {
        if let Some(s) = t["status"].as_str()
            && let Some(n) = c.get_mut(s)
        {
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
    }
    c
}

fn find<'a>(w: &'a World, req: &Req) -> Result<&'a GseJob, Reply> {
    let biz = biz_of(req)?;
    let id = job_id_of(req)?;
    w.gse
        .get(&id)
        .filter(|j| j.biz == biz)
        .ok_or_else(|| Reply::ok(error_body(JOB_NOT_FOUND, "任务不存在")))
}

/// `POST /api/{biz}/job/{id}/job_status/`.
pub(crate) fn status(w: &mut World, req: &Req, now: Instant) -> Reply {
    let job = match find(w, req) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let wanted = match get_u64_list(&req.params, "job_task_id_list") {
        Ok(l) => l.unwrap_or_default(),
        Err(()) => return invalid("job_task_id_list", "请填写合法的整数值。"),
    };
    let tasks = tasks_of(job, now);
    // Upstream filters `id__in=job_task_id_list`, so an empty list returns no tasks.
    let selected: Vec<Value> = tasks
        .iter()
        .filter(|t| t["id"].as_u64().is_some_and(|id| wanted.contains(&id)))
        .cloned()
        .collect();
    Reply::ok(ok_body(json!({
        "job_info": job_info(job, now),
        "job_tasks": selected,
        "count": tasks.len(),
        "status_counter": counter(&tasks),
    })))
}

/// `POST /api/{biz}/job/{id}/job_task/`: paged per-process results.
pub(crate) fn tasks(w: &mut World, req: &Req, now: Instant) -> Reply {
    let job = match find(w, req) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let p = &req.params;
    let (Ok(pg), Ok(size)) = (get_i64(p, "page"), get_i64(p, "pagesize")) else {
        return invalid("page", "请填写合法的整数值。");
    };
    let Some(pg) = pg else {
        return invalid("page", "该字段是必填项。");
    };
    let Some(size) = size else {
        return invalid("pagesize", "该字段是必填项。");
    };
    let tasks = tasks_of(job, now);
    let statuses = get_str_list(p, "statuses");
    let pids = get_u64_list(p, "bk_process_ids").ok().flatten();
    let filtered: Vec<Value> = tasks
        .iter()
        .filter(|t| {
            statuses
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| t["status"].as_str() == Some(x.as_str())))
        })
        .filter(|t| {
            pids.as_ref().is_none_or(|ids| {
                t["bk_process_id"]
                    .as_u64()
                    .is_some_and(|id| ids.contains(&id))
            })
        })
        .cloned()
        .collect();
    Reply::ok(ok_body(json!({
        "list": page(&filtered, pg, size),
        "count": filtered.len(),
        "status_counter": counter(&tasks),
    })))
}

/// `GET /api/{biz}/job/`: the DRF list with `{count, list}` paging and simple filters.
pub(crate) fn list(w: &mut World, req: &Req, now: Instant) -> Reply {
    let biz = match biz_of(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let p = &req.params;
    let pg = get_i64(p, "page").ok().flatten().unwrap_or(1);
    let size = get_i64(p, "pagesize").ok().flatten().unwrap_or(10);
    let created_by = get_str(p, "created_by");
    let object = get_str(p, "job_object");
    let action = get_str(p, "job_action");
    let since = get_str(p, "start_time__gte").and_then(|s| super::wire::parse_time(&s));
    let mut rows: Vec<&GseJob> = w
        .gse
        .values()
        .filter(|j| j.biz == biz)
        .filter(|j| created_by.as_ref().is_none_or(|c| &j.created_by == c))
        .filter(|j| object.as_ref().is_none_or(|o| &j.job_object == o))
        .filter(|j| action.as_ref().is_none_or(|a| &j.job_action == a))
        .filter(|j| since.is_none_or(|s| j.run.created_wall >= s))
        .collect();
    rows.reverse(); // newest first, as the SaaS orders by -id
    let items: Vec<Value> = rows.iter().map(|j| job_info(j, now)).collect();
    Reply::ok(ok_body(json!({
        "count": items.len(),
        "list": page(&items, pg, size),
    })))
}

pub(crate) fn views(w: &mut World, now: Instant) -> Vec<JobView> {
    w.gse
        .values()
        .map(|j| JobView {
            system: System::Gsekit,
            id: j.id,
            state: job_status(j, now).0.to_string(),
            started: true,
            mode: super::wire::mode_str(j.run.mode),
            created_at: j.run.created_wall.to_rfc3339(),
            finished_at: j.run.planned_end(),
            created: j.run.request.clone(),
        })
        .collect()
}
