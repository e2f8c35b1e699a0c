//! JOB (bk-job): v3 `execute_job_plan`, `operate_job_instance`, `get_job_instance_status`,
//! `get_job_instance_list` (gateway `/api/v3/...` without trailing slash, ESB `jobv3/...`), and
//! the legacy v2 `execute_job` / `get_job_instance_status` (ESB `job/...`).
//!
//! Envelope `{result, code, message, data, job_request_id}` with int codes (1241002 illegal
//! param, 1244006 instance not found). Status codes follow `RunStatusEnum`: 1 blank (created
//! with `start_task=false`), 2 running, 3 success, 4 fail, 7 waiting for a person, 10 stopping,
//! 11 stop success; `finished` is true exactly for 3, 4, 5, 6, 8, 9, 11, 13, 14.
//!
//! Not simulated: the completion callback (`callback_url` / `bk_callback_url` is accepted and
//! ignored; polling is the source of truth anyway), running-job quotas (inject them with a
//! `reject` fault, code 1244032).

use std::time::Instant;

use chrono::{DateTime, Local};
use serde_json::{Value, json};

use super::api::JobView;
use super::jobs::{JobInst, StepDef};
use super::model::{Progress, Run, TargetState};
use super::wire::{Op, Reply, Req, get_bool, get_i64, get_str, get_u64};
use super::world::World;
use super::{SimConfig, System};

pub(super) const ILLEGAL_PARAM: i64 = 1241002;
const NOT_FOUND: i64 = 1244006;
pub(super) const FINISHED: [u8; 9] = [3, 4, 5, 6, 8, 9, 11, 13, 14];

fn request_id() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

pub(super) fn ok_body(data: Value) -> Value {
    json!({"result": true, "code": 0, "message": "success", "data": data, "job_request_id": request_id()})
}

/// JOB's error envelope.
pub(crate) fn error_body(code: i64, message: &str) -> Value {
    json!({"result": false, "code": code, "message": message, "data": null, "job_request_id": request_id()})
}

pub(super) fn illegal(param: &str) -> Reply {
    Reply::ok(error_body(
        ILLEGAL_PARAM,
        &format!("Param [{param}] is missing or illegal"),
    ))
}

fn ms(t: Option<DateTime<Local>>) -> Value {
    t.map(|t| json!(t.timestamp_millis()))
        .unwrap_or(Value::Null)
}

fn plain(t: Option<DateTime<Local>>) -> Value {
    t.map(|t| json!(t.format("%Y-%m-%d %H:%M:%S").to_string()))
        .unwrap_or(Value::Null)
}

/// `(bk_scope_type, bk_scope_id)` from the v3 fields or the deprecated `bk_biz_id`.
fn scope_of(req: &Req) -> Result<(String, String), Reply> {
    let p = &req.params;
    match (get_str(p, "bk_scope_type"), get_str(p, "bk_scope_id")) {
        (Some(t), Some(id)) if !id.is_empty() => {
            if t == "biz" || t == "biz_set" {
                Ok((t, id))
            } else {
                Err(illegal("bk_scope_type"))
            }
        }
        _ => match get_u64(p, "bk_biz_id") {
            Ok(Some(b)) => Ok(("biz".to_string(), b.to_string())),
            _ => Err(illegal("bk_scope_id")),
        },
    }
}

/// Hosts named in the global variables (`server.ip_list`/`host_id_list` in v3, `ip_list` in v2).
fn hosts_from_vars(vars: Option<&Value>) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for var in vars.and_then(Value::as_array).into_iter().flatten() {
        let holder = var.get("server").unwrap_or(var);
        for ip in holder
            .get("ip_list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(s) = ip.get("ip").and_then(Value::as_str)
                && !out.iter().any(|(_, x)| x == s)
            {
                out.push((0, s.to_string()));
            }
        }
        for id in holder
            .get("host_id_list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = id.as_u64()
                && !out.iter().any(|(h, _)| *h == id)
            {
                out.push((id, String::new()));
            }
        }
    }
    out
}

/// `execute_job_plan` (v3) and `execute_job` (v2).
pub(crate) fn create(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    if let Some(e) = &req.body_error {
        return Reply::ok(error_body(ILLEGAL_PARAM, e));
    }
    let p = &req.params;
    let v2 = req.op == Op::JobV2Execute;
    let (scope_type, scope_id) = match scope_of(req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let plan_key = if v2 { "bk_job_id" } else { "job_plan_id" };
    let plan_id = match get_u64(p, plan_key) {
        Ok(Some(id)) if id > 0 => id,
        _ => return illegal(plan_key),
    };
    let vars_key = if v2 { "global_vars" } else { "global_var_list" };
    if let Some(v) = p.get(vars_key)
        && !v.is_array()
        && !v.is_null()
    {
        return illegal(vars_key);
    }
    let start_task = if v2 {
        true
    } else {
        match p.get("start_task") {
            None | Some(Value::Null) => true,
            Some(_) => match get_bool(p, "start_task") {
                Some(b) => b,
                None => return illegal("start_task"),
            },
        }
    };
    let named = hosts_from_vars(p.get(vars_key));
    let natural = (!named.is_empty()).then_some(named.len());
    let plan = w.plan_for(System::Job, config, natural);
    let id = w.next_id(System::Job);
    let hosts: Vec<(u64, String)> = if named.is_empty() {
        (0..plan.targets)
            .map(|i| {
                (
                    id * 100 + i as u64 + 1,
                    format!("10.2.{}.{}", id % 250, i + 1),
                )
            })
            .collect()
    } else {
        named
            .into_iter()
            .enumerate()
            .map(|(i, (h, ip))| {
                let h = if h == 0 { id * 100 + i as u64 + 1 } else { h };
                let ip = if ip.is_empty() {
                    format!("10.2.{}.{}", id % 250, i + 1)
                } else {
                    ip
                };
                (h, ip)
            })
            .collect()
    };
    let mut steps = Vec::new();
    if plan.wait_for_user {
        steps.push(StepDef {
            step_instance_id: id * 100 + 1,
            step_id: 1,
            name: "manual confirm".into(),
            kind: 3,
        });
    }
    // The v2 seed documents `steps`; they are accepted and shown as the instance's steps
    // (bk-job V3's compatibility layer ignores them).
    let seed_steps: Vec<u64> = if v2 {
        p.get("steps")
            .and_then(Value::as_array)
            .map(|s| s.iter().filter_map(|x| x["step_id"].as_u64()).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let script_ids = if seed_steps.is_empty() {
        vec![10]
    } else {
        seed_steps
    };
    for step_id in script_ids {
        steps.push(StepDef {
            step_instance_id: id * 100 + steps.len() as u64 + 1,
            step_id,
            name: format!("step {step_id}"),
            kind: 1,
        });
    }
    let name = format!("sim job plan {plan_id}");
    let mut run = Run::new(plan, req.body.clone(), req.mode);
    if start_task {
        run.start(now);
    }
    let first_step = steps.first().map(|s| s.step_instance_id);
    w.job.insert(
        id,
        JobInst {
            id,
            scope_type,
            scope_id,
            plan_id,
            name: name.clone(),
            operator: req.user.clone(),
            hosts,
            steps,
            terminated: false,
            stopping_reported: false,
            run,
        },
    );
    Reply::ok(ok_body(json!({
        "job_instance_id": id,
        "job_instance_name": name,
        "step_instance_id": first_step,
    })))
}

pub(super) fn find_mut<'a>(w: &'a mut World, req: &Req) -> Result<&'a mut JobInst, Reply> {
    let id = match get_u64(&req.params, "job_instance_id") {
        Ok(Some(id)) => id,
        _ => return Err(illegal("job_instance_id")),
    };
    let scope = scope_of(req).ok();
    w.job
        .get_mut(&id)
        .filter(|j| {
            scope
                .as_ref()
                .is_none_or(|(t, s)| &j.scope_type == t && &j.scope_id == s)
        })
        .ok_or_else(|| {
            Reply::ok(error_body(
                NOT_FOUND,
                &format!("Job instance [{id}] does not exist"),
            ))
        })
}

pub(super) fn progress(job: &JobInst, now: Instant) -> Option<Progress> {
    let plan = &job.run.plan;
    job.run.clock.progress(now, plan, plan.pending_phase())
}

/// The job-level status code, without the STOPPING→STOP_SUCCESS bookkeeping.
pub(super) fn raw_status(job: &JobInst, now: Instant) -> u8 {
    if job.terminated {
        return if job.stopping_reported { 11 } else { 10 };
    }
    let Some(p) = progress(job, now) else {
        return 1;
    };
    if p.waiting {
        return 7;
    }
    let states: Vec<TargetState> = (0..job.hosts.len())
        .map(|i| host_state(job, i, now))
        .collect();
    if states.iter().any(|s| !s.is_done()) {
        2
    } else if states.contains(&TargetState::Failed) {
        4
    } else {
        3
    }
}

/// The status a status call reports; the first report after a terminate is 10, then 11.
fn report_status(job: &mut JobInst, now: Instant) -> u8 {
    let s = raw_status(job, now);
    if s == 10 {
        job.stopping_reported = true;
    }
    s
}

pub(super) fn host_state(job: &JobInst, i: usize, now: Instant) -> TargetState {
    let plan = &job.run.plan;
    TargetState::of(
        plan.parallel_window(i),
        plan.target_fails(i),
        progress(job, now),
    )
}

/// Per-host `(status, exit_code, error_code)`.
pub(super) fn host_codes(job: &JobInst, i: usize, now: Instant) -> (u32, i64, i64) {
    if progress(job, now).is_some_and(|p| p.waiting) {
        return (5, 0, 0);
    }
    match host_state(job, i, now) {
        TargetState::Pending => (5, 0, 0),
        TargetState::Running => (7, 0, 115),
        TargetState::Succeeded => (9, 0, 0),
        TargetState::Failed => (104, 1, 0),
        TargetState::Cancelled => (403, 0, 126),
    }
}

fn job_times(job: &JobInst, status: u8) -> (Value, Value, Value) {
    let end = if FINISHED.contains(&status) {
        Some(
            job.run
                .clock
                .cancelled_at
                .unwrap_or_else(|| job.run.plan.end()),
        )
    } else {
        None
    };
    let start = job.run.started_wall;
    let end_t = end.and_then(|d| job.run.wall_at(d));
    let total = end
        .map(|d| json!(d.as_millis() as u64))
        .unwrap_or(Value::Null);
    (ms(start), ms(end_t), total)
}

pub(super) fn step_status(job: &JobInst, step: &StepDef, status: u8, now: Instant) -> u8 {
    if step.kind == 3 {
        let p = progress(job, now);
        return match p {
            None => 1,
            Some(p) if p.waiting => 7,
            Some(p) if p.eff >= job.run.plan.pending_phase() => 3,
            Some(_) => 2,
        };
    }
    match status {
        7 => 1,
        s => s,
    }
}

fn ip_results(job: &JobInst, now: Instant) -> Vec<Value> {
    let plan = &job.run.plan;
    job.hosts
        .iter()
        .enumerate()
        .map(|(i, (host, ip))| {
            let (status, exit_code, error_code) = host_codes(job, i, now);
            let (start, end) = plan.parallel_window(i);
            let done = matches!(status, 9 | 104 | 403);
            json!({
                "bk_host_id": host,
                "ip": ip,
                "bk_cloud_id": 0,
                "status": status,
                "tag": "",
                "exit_code": exit_code,
                "error_code": error_code,
                "start_time": if status == 5 { Value::Null } else { ms(job.run.wall_at(start)) },
                "end_time": if done { ms(job.run.wall_at(end)) } else { Value::Null },
                "total_time": if done { json!((end - start).as_millis() as u64) } else { Value::Null },
            })
        })
        .collect()
}

/// v3 `get_job_instance_status`.
pub(crate) fn status_v3(w: &mut World, req: &Req, now: Instant) -> Reply {
    let with_ips = get_bool(&req.params, "return_ip_result").unwrap_or(false);
    let job = match find_mut(w, req) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let status = report_status(job, now);
    let job = &*job;
    let (start, end, total) = job_times(job, status);
    let ips = ip_results(job, now);
    let steps: Vec<Value> = job
        .steps
        .iter()
        .map(|s| {
            let st = step_status(job, s, status, now);
            let mut v = json!({
                "step_instance_id": s.step_instance_id,
                "type": s.kind,
                "name": s.name,
                "status": st,
                "execute_count": if st == 1 { 0 } else { 1 },
                "create_time": ms(Some(job.run.created_wall)),
                "start_time": if st == 1 { Value::Null } else { start.clone() },
                "end_time": if FINISHED.contains(&st) { end.clone() } else { Value::Null },
                "total_time": if FINISHED.contains(&st) { total.clone() } else { Value::Null },
            });
            if with_ips && s.kind != 3 {
                v["step_ip_result_list"] = json!(ips);
            }
            v
        })
        .collect();
    Reply::ok(ok_body(json!({
        "finished": FINISHED.contains(&status),
        "job_instance": {
            "job_instance_id": job.id,
            "bk_scope_type": job.scope_type,
            "bk_scope_id": job.scope_id,
            "bk_biz_id": job.scope_id.parse::<u64>().ok(),
            "name": job.name,
            "status": status,
            "create_time": ms(Some(job.run.created_wall)),
            "start_time": start,
            "end_time": end,
            "total_time": total,
        },
        "step_instance_list": steps,
    })))
}

/// v2 `get_job_instance_status` (legacy ESB `job` system).
pub(crate) fn status_v2(w: &mut World, req: &Req, now: Instant) -> Reply {
    let job = match find_mut(w, req) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let status = report_status(job, now);
    let job = &*job;
    let finished = FINISHED.contains(&status);
    let end = finished
        .then(|| {
            job.run.wall_at(
                job.run
                    .clock
                    .cancelled_at
                    .unwrap_or_else(|| job.run.plan.end()),
            )
        })
        .flatten();
    let ips: Vec<Value> = (0..job.hosts.len())
        .map(|i| {
            json!({
                "ip": job.hosts[i].1,
                "bk_cloud_id": 0,
                "status": host_codes(job, i, now).0,
            })
        })
        .collect();
    let steps: Vec<Value> = job
        .steps
        .iter()
        .map(|s| {
            let st = step_status(job, s, status, now);
            json!({
                "step_instance_id": s.step_instance_id,
                "step_id": s.step_id,
                "name": s.name,
                "type": s.kind,
                "operator": job.operator,
                "status": st,
                "execute_count": if st == 1 { 0 } else { 1 },
                "create_time": plain(Some(job.run.created_wall)),
                "start_time": plain(job.run.started_wall),
                "end_time": if FINISHED.contains(&st) { plain(end) } else { Value::Null },
                "total_time": 0,
                "step_ip_status": if s.kind == 3 { json!([]) } else { json!(ips) },
            })
        })
        .collect();
    Reply::ok(ok_body(json!({
        "is_finished": finished,
        "job_instance": {
            "job_instance_id": job.id,
            "bk_job_id": job.plan_id,
            "bk_biz_id": job.scope_id.parse::<u64>().ok(),
            "name": job.name,
            "operator": job.operator,
            "status": status,
            "create_time": plain(Some(job.run.created_wall)),
            "start_time": plain(job.run.started_wall),
            "end_time": plain(end),
            "total_time": 0,
            "start_way": 2,
            "current_step_instance_id": job.steps.first().map(|s| s.step_instance_id),
        },
        "blocks": [{"type": 1, "step_instances": steps}],
    })))
}

/// v3 `operate_job_instance`: 1 terminate, 2 start a job created with `start_task=false`.
pub(crate) fn operate(w: &mut World, req: &Req, now: Instant) -> Reply {
    let code = match get_i64(&req.params, "operation_code") {
        Ok(Some(c)) => c,
        _ => return illegal("operation_code"),
    };
    let job = match find_mut(w, req) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let status = raw_status(job, now);
    match code {
        2 => {
            if job.run.clock.started.is_some() || job.terminated {
                return Reply::ok(error_body(
                    ILLEGAL_PARAM,
                    "Operation not allowed: job instance is already started",
                ));
            }
            job.run.start(now);
        }
        1 => {
            if FINISHED.contains(&status) || job.terminated {
                return Reply::ok(error_body(
                    ILLEGAL_PARAM,
                    "Operation not allowed: job instance is already finished",
                ));
            }
            job.run.start(now);
            let plan = job.run.plan.clone();
            job.run.clock.cancel(now, &plan, plan.pending_phase());
            job.terminated = true;
        }
        _ => return illegal("operation_code"),
    }
    Reply::ok(ok_body(json!({"job_instance_id": job.id})))
}

/// v3 `get_job_instance_list`: `create_time_start`/`create_time_end` (ms) required.
pub(crate) fn list(w: &mut World, req: &Req, now: Instant) -> Reply {
    let p = &req.params;
    let (scope_type, scope_id) = match scope_of(req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Ok(Some(from)) = get_i64(p, "create_time_start") else {
        return illegal("create_time_start");
    };
    let Ok(Some(to)) = get_i64(p, "create_time_end") else {
        return illegal("create_time_end");
    };
    let operator = get_str(p, "operator");
    let plan_id = get_u64(p, "job_plan_id").ok().flatten();
    let instance = get_u64(p, "job_instance_id").ok().flatten();
    let status = get_i64(p, "status").ok().flatten();
    let start = get_i64(p, "start").ok().flatten().unwrap_or(0).max(0) as usize;
    let length = get_i64(p, "length")
        .ok()
        .flatten()
        .unwrap_or(20)
        .clamp(1, 1000) as usize;
    let mut rows: Vec<Value> = w
        .job
        .values()
        .filter(|j| j.scope_type == scope_type && j.scope_id == scope_id)
        .filter(|j| {
            let t = j.run.created_wall.timestamp_millis();
            t >= from && t <= to
        })
        .filter(|j| operator.as_ref().is_none_or(|o| &j.operator == o))
        .filter(|j| plan_id.is_none_or(|id| j.plan_id == id))
        .filter(|j| instance.is_none_or(|id| j.id == id))
        .map(|j| {
            let st = raw_status(j, now);
            let (s, e, total) = job_times(j, st);
            json!({
                "bk_scope_type": j.scope_type,
                "bk_scope_id": j.scope_id,
                "id": j.id,
                "job_template_id": j.plan_id,
                "job_plan_id": j.plan_id,
                "name": j.name,
                "operator": j.operator,
                "create_time": j.run.created_wall.timestamp_millis(),
                "status": st,
                "start_time": s,
                "end_time": e,
                "total_time": total,
                "type": 0,
                "launch_mode": 2,
            })
        })
        .filter(|v| status.is_none_or(|s| v["status"].as_i64() == Some(s)))
        .collect();
    rows.reverse();
    let total = rows.len();
    let data: Vec<Value> = rows.into_iter().skip(start).take(length).collect();
    Reply::ok(ok_body(json!({
        "start": start,
        "length": length,
        "total": total,
        "data": data,
    })))
}

pub(crate) fn approve(w: &mut World, id: u64, now: Instant) -> bool {
    match w.job.get_mut(&id) {
        Some(j) => {
            let pp = j.run.plan.pending_phase();
            j.run.clock.approve(now, pp);
            true
        }
        None => false,
    }
}

pub(crate) fn views(w: &mut World, _config: &SimConfig, now: Instant) -> Vec<JobView> {
    w.job
        .values()
        .map(|j| JobView {
            system: System::Job,
            id: j.id,
            state: raw_status(j, now).to_string(),
            started: j.run.clock.started.is_some(),
            mode: super::wire::mode_str(j.run.mode),
            created_at: j.run.created_wall.to_rfc3339(),
            finished_at: j.run.planned_end(),
            created: j.run.request.clone(),
        })
        .collect()
}
