//! BKFlow: `create_task`, `create_task_without_template`, `operate_task/{op}`,
//! `get_task_states`, `get_tasks_states`, `get_task_detail`, `get_task_node_detail`,
//! `get_task_list`, all under `/space/{space_id}/`.
//!
//! Envelope: success `{result: true, data, code: "0", message: "", trace_id}`; errors carry an
//! int (400, 500) or a DRF string code; `operate_task` answers without any `code`; a space the
//! app does not own gets HTTP 403 `{result: false, message}` with no code. A created task is
//! not running until `operate_task/start`, and a second start is refused.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{DateTime, Local};
use serde_json::{Map, Value, json};

use super::api::JobView;
use super::jobs::FlowTask;
use super::model::{Run, TargetState};
use super::wire::{Op, Reply, Req, get_i64, get_str, get_u64, get_u64_list, hex_id};
use super::world::World;
use super::{SimConfig, System};

fn trace_id() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

fn ok_body(data: Value) -> Value {
    json!({"result": true, "data": data, "code": "0", "message": "", "trace_id": trace_id()})
}

/// BKFlow's error envelope; `code` is whatever the failing layer used (int or string).
pub(crate) fn error_body(code: Value, message: &str) -> Value {
    json!({"result": false, "data": null, "code": code, "message": message, "trace_id": trace_id()})
}

/// The engine's operation result: no `code` at all.
fn operation_body(result: bool, message: &str) -> Value {
    json!({"result": result, "data": null, "message": message, "trace_id": trace_id()})
}

fn invalid(field: &str, reason: &str) -> Reply {
    Reply::ok(error_body(
        json!(400),
        &format!("{{'{field}': [ErrorDetail(string='{reason}', code='invalid')]}}"),
    ))
}

fn not_found(what: &str) -> Reply {
    Reply::ok(error_body(json!("not_found"), &format!("{what} not found")))
}

fn fmt_iso(t: DateTime<Local>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
}

fn fmt_plain(t: DateTime<Local>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%z").to_string()
}

/// The 403 upstream's `check_jwt_and_space` answers for a space the app does not own.
fn space_check(config: &SimConfig, req: &Req) -> Result<u64, Reply> {
    let space = req.ids.space.unwrap_or_default();
    if !config.bkflow_spaces.is_empty() && !config.bkflow_spaces.contains(&space) {
        return Err(Reply::Json {
            status: StatusCode::FORBIDDEN,
            body: json!({
                "result": false,
                "message": format!("app {} has no permission for space {space}", req.app_code),
            }),
        });
    }
    Ok(space)
}

fn nodes_from_tree(tree: &Value) -> Vec<(String, String)> {
    tree.get("activities")
        .and_then(Value::as_object)
        .map(|acts| {
            acts.iter()
                .map(|(id, a)| {
                    let name = a
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("node")
                        .to_string();
                    (id.clone(), name)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `create_task` and `create_task_without_template`.
pub(crate) fn create(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    let space = match space_check(config, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(e) = &req.body_error {
        return Reply::ok(error_body(json!(400), e));
    }
    let p = &req.params;
    let creator = match get_str(p, "creator") {
        None => return invalid("creator", "This field is required."),
        Some(c) if c.is_empty() => return invalid("creator", "This field may not be blank."),
        Some(c) if c.chars().count() > 32 => {
            return invalid(
                "creator",
                "Ensure this field has no more than 32 characters.",
            );
        }
        Some(c) => c,
    };
    let name = get_str(p, "name").unwrap_or_else(|| "default_taskflow_instance".to_string());
    if name.chars().count() > 128 {
        return invalid("name", "Ensure this field has no more than 128 characters.");
    }
    let (template_id, tree_nodes) = if req.op == Op::FlowCreate {
        match get_u64(p, "template_id") {
            Ok(Some(t)) => (Some(t), Vec::new()),
            Ok(None) => return invalid("template_id", "This field is required."),
            Err(()) => return invalid("template_id", "A valid integer is required."),
        }
    } else {
        match p.get("pipeline_tree") {
            Some(tree @ Value::Object(_)) => (None, nodes_from_tree(tree)),
            Some(_) => return invalid("pipeline_tree", "Value must be valid JSON."),
            None => return invalid("pipeline_tree", "This field is required."),
        }
    };
    if let Some(c) = p.get("constants")
        && !c.is_object()
        && !c.is_null()
    {
        return invalid("constants", "Expected a dictionary of items.");
    }
    let natural = (!tree_nodes.is_empty()).then_some(tree_nodes.len());
    let plan = w.plan_for(System::Bkflow, config, natural);
    let id = w.next_id(System::Bkflow);
    let nodes = if tree_nodes.is_empty() {
        (0..plan.targets)
            .map(|i| (hex_id('n', id, i as u64 + 1), format!("sim node {}", i + 1)))
            .collect()
    } else {
        tree_nodes
    };
    let task = FlowTask {
        id,
        space_id: space,
        template_id,
        name,
        creator,
        description: get_str(p, "description").unwrap_or_default(),
        scope_type: p.get("scope_type").cloned().unwrap_or(Value::Null),
        scope_value: p.get("scope_value").cloned().unwrap_or(Value::Null),
        instance_id: hex_id('n', id, 0),
        executor: String::new(),
        revoked: false,
        nodes,
        run: Run::new(plan, req.body.clone(), req.mode),
    };
    let data = task_fields(&task, now, false);
    w.flow.insert(id, task);
    Reply::ok(ok_body(data))
}

fn pause_point(task: &FlowTask) -> Duration {
    task.run.plan.sequential_pause_point()
}

/// One node's engine state, or `None` when the engine has not reached it.
fn node_state(task: &FlowTask, i: usize, now: Instant) -> Option<&'static str> {
    let plan = &task.run.plan;
    let p = task.run.clock.progress(now, plan, pause_point(task))?;
    let first_failing = (plan.failed > 0).then(|| plan.targets - plan.failed);
    if let Some(f) = first_failing
        && i > f
    {
        // The pipeline stops at the failed node; later nodes never run.
        return None;
    }
    if p.waiting && i == plan.targets / 2 {
        return Some("SUSPENDED");
    }
    let fails = first_failing == Some(i);
    match TargetState::of(plan.sequential_window(i), fails, Some(p)) {
        TargetState::Pending => None,
        TargetState::Running | TargetState::Cancelled => Some("RUNNING"),
        TargetState::Succeeded => Some("FINISHED"),
        TargetState::Failed => Some("FAILED"),
    }
}

/// The task's root state as BKFlow reports it.
pub(crate) fn root_state(task: &FlowTask, now: Instant) -> &'static str {
    if task.run.clock.started.is_none() {
        return "CREATED";
    }
    if task.revoked {
        return "REVOKED";
    }
    let states: Vec<Option<&str>> = (0..task.nodes.len())
        .map(|i| node_state(task, i, now))
        .collect();
    if states.contains(&Some("FAILED")) {
        "FAILED"
    } else if task.run.clock.is_paused() {
        "SUSPENDED"
    } else if states.contains(&Some("SUSPENDED")) {
        "NODE_SUSPENDED"
    } else if states.iter().all(|s| *s == Some("FINISHED")) {
        "FINISHED"
    } else {
        "RUNNING"
    }
}

fn task_fields(task: &FlowTask, now: Instant, plain_times: bool) -> Value {
    let state = root_state(task, now);
    let fmt = |t: DateTime<Local>| {
        if plain_times {
            fmt_plain(t)
        } else {
            fmt_iso(t)
        }
    };
    let finish = (state == "FINISHED")
        .then(|| task.run.wall_at(task.run.plan.end()))
        .flatten();
    json!({
        "id": task.id,
        "space_id": task.space_id,
        "scope_type": task.scope_type,
        "scope_value": task.scope_value,
        "instance_id": task.instance_id,
        "template_id": task.template_id,
        "name": task.name,
        "creator": task.creator,
        "create_method": "API",
        "create_time": fmt(task.run.created_wall),
        "executor": task.executor,
        "start_time": task.run.started_wall.map(fmt),
        "finish_time": finish.map(fmt),
        "description": task.description,
        "is_started": task.run.clock.started.is_some(),
        "is_finished": state == "FINISHED",
        "is_revoked": task.revoked,
        "is_deleted": false,
        "is_expired": false,
        "snapshot_id": task.id,
        "execution_snapshot_id": task.id,
        "tree_info_id": null,
        "extra_info": {},
        "labels": [],
    })
}

fn find<'a>(w: &'a World, req: &Req, space: u64) -> Result<&'a FlowTask, Reply> {
    let id = req.ids.id.unwrap_or_default();
    w.flow
        .get(&id)
        .filter(|t| t.space_id == space)
        .ok_or_else(|| not_found("TaskInstance"))
}

/// `operate_task/{start|pause|resume|revoke}`.
pub(crate) fn operate(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    let space = match space_check(config, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(r) = find(w, req, space) {
        return r;
    }
    let id = req.ids.id.unwrap_or_default();
    let state = w.flow.get(&id).map(|t| root_state(t, now));
    let Some(task) = w.flow.get_mut(&id) else {
        return not_found("TaskInstance");
    };
    let operator = get_str(&req.params, "operator").unwrap_or_else(|| req.user.clone());
    let (ok, message) = match (req.ids.operation.as_deref(), state) {
        (Some("start"), Some("CREATED")) => {
            task.run.start(now);
            task.executor = operator;
            (true, "success")
        }
        (Some("start"), _) => (false, "task already started"),
        (Some("pause"), Some("RUNNING" | "NODE_SUSPENDED")) => {
            task.run.clock.pause(now);
            (true, "success")
        }
        (Some("pause"), _) => (false, "task is not running, can not pause"),
        (Some("resume"), Some("SUSPENDED")) => {
            task.run.clock.resume(now);
            (true, "success")
        }
        (Some("resume"), _) => (false, "task is not suspended, can not resume"),
        (Some("revoke"), Some("CREATED")) => (false, "task is not started, can not revoke"),
        (Some("revoke"), Some("FINISHED" | "REVOKED")) => {
            (false, "task is already finished, can not revoke")
        }
        (Some("revoke"), _) => {
            let pp = task.run.plan.sequential_pause_point();
            task.run.clock.resume(now);
            task.run.clock.cancel(now, &task.run.plan, pp);
            task.revoked = true;
            (true, "success")
        }
        _ => (false, "task operation not allowed"),
    };
    Reply::ok(operation_body(ok, message))
}

fn fmt_opt(t: Option<DateTime<Local>>) -> Value {
    t.map(fmt_plain).map(Value::String).unwrap_or(Value::Null)
}

fn tree_node(
    id: &str,
    root: &str,
    state: &str,
    start: Value,
    finish: Value,
    elapsed: u64,
) -> Value {
    json!({
        "id": id,
        "state": state,
        "root_id": root,
        "parent_id": root,
        "version": hex_id('v', id.len() as u64, elapsed),
        "loop": 1,
        "retry": 0,
        "skip": false,
        "error_ignorable": false,
        "error_ignored": false,
        "elapsed_time": elapsed,
        "start_time": start,
        "finish_time": finish,
        "children": {},
    })
}

fn states_tree(task: &FlowTask, now: Instant) -> Value {
    let root = &task.instance_id;
    let state = root_state(task, now);
    if state == "CREATED" {
        return tree_node(root, root, "CREATED", Value::Null, Value::Null, 0);
    }
    let plan = &task.run.plan;
    let mut children = Map::new();
    for (i, (nid, _)) in task.nodes.iter().enumerate() {
        let Some(s) = node_state(task, i, now) else {
            continue;
        };
        let (start, end) = plan.sequential_window(i);
        let done = matches!(s, "FINISHED" | "FAILED");
        children.insert(
            nid.clone(),
            tree_node(
                nid,
                root,
                s,
                fmt_opt(task.run.wall_at(start)),
                if done {
                    fmt_opt(task.run.wall_at(end))
                } else {
                    Value::Null
                },
                if done { (end - start).as_secs() } else { 0 },
            ),
        );
    }
    let finished = matches!(state, "FINISHED" | "REVOKED");
    let mut node = tree_node(
        root,
        root,
        state,
        fmt_opt(task.run.started_wall),
        if finished {
            fmt_opt(task.run.wall_at(plan.end()))
        } else {
            Value::Null
        },
        0,
    );
    node["children"] = Value::Object(children);
    node
}

/// `GET .../task/{id}/get_task_states/`.
pub(crate) fn states(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    let space = match space_check(config, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match find(w, req, space) {
        Ok(t) => Reply::ok(ok_body(states_tree(t, now))),
        Err(r) => r,
    }
}

/// `POST /space/{id}/get_tasks_states/` with `{"task_ids": [...]}`.
pub(crate) fn batch_states(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    let space = match space_check(config, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ids = match get_u64_list(&req.params, "task_ids") {
        Ok(Some(ids)) => ids,
        Ok(None) => return invalid("task_ids", "This field is required."),
        Err(()) => return invalid("task_ids", "A valid integer is required."),
    };
    let mut out = Map::new();
    for id in ids {
        if let Some(t) = w.flow.get(&id).filter(|t| t.space_id == space) {
            out.insert(id.to_string(), json!({"state": root_state(t, now)}));
        }
    }
    Reply::ok(ok_body(Value::Object(out)))
}

/// `GET .../task/{id}/get_task_detail/`.
pub(crate) fn detail(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    let space = match space_check(config, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match find(w, req, space) {
        Ok(t) => {
            let mut data = task_fields(t, now, false);
            data["webhook_delivery_history"] = json!([]);
            data["template_name"] = t
                .template_id
                .map(|id| json!(format!("sim template {id}")))
                .unwrap_or(Value::Null);
            Reply::ok(ok_body(data))
        }
        Err(r) => r,
    }
}

/// `GET .../task/{id}/node/{node_id}/get_task_node_detail/`.
pub(crate) fn node_detail(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    let space = match space_check(config, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let task = match find(w, req, space) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let node = req.ids.node.clone().unwrap_or_default();
    let Some(i) = task.nodes.iter().position(|(id, _)| *id == node) else {
        return Reply::ok(error_body(
            json!(500),
            &format!("node({node}) does not exist"),
        ));
    };
    let state = node_state(task, i, now).unwrap_or("READY");
    let ex_data = match state {
        "FAILED" => format!(
            "[sim] node {} failed: simulated plugin error (exit code 1)",
            task.nodes[i].1
        ),
        _ => String::new(),
    };
    let (start, end) = task.run.plan.sequential_window(i);
    Reply::ok(ok_body(json!({
        "id": node,
        "name": task.nodes[i].1,
        "state": state,
        "component_code": "sim_component",
        "inputs": {},
        "outputs": [],
        "ex_data": ex_data,
        "error_ignorable": false,
        "loop": 1,
        "retry": 0,
        "skip": false,
        "start_time": if state == "READY" { Value::Null } else { fmt_opt(task.run.wall_at(start)) },
        "finish_time": if matches!(state, "FINISHED" | "FAILED") { fmt_opt(task.run.wall_at(end)) } else { Value::Null },
        "elapsed_time": 0,
    })))
}

/// `GET /space/{id}/get_task_list/`: limit/offset paging, newest first.
pub(crate) fn list(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    let space = match space_check(config, req) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let p = &req.params;
    let limit = get_i64(p, "limit")
        .ok()
        .flatten()
        .unwrap_or(20)
        .clamp(1, 200) as usize;
    let offset = get_i64(p, "offset").ok().flatten().unwrap_or(0).max(0) as usize;
    let name = get_str(p, "name");
    let creator = get_str(p, "creator");
    let template = get_u64(p, "template_id").ok().flatten();
    let scope_type = get_str(p, "scope_type");
    let scope_value = get_str(p, "scope_value");
    let start = get_str(p, "create_at_start").and_then(|s| super::wire::parse_time(&s));
    let end = get_str(p, "create_at_end").and_then(|s| super::wire::parse_time(&s));
    let mut rows: Vec<&FlowTask> = w
        .flow
        .values()
        .filter(|t| t.space_id == space)
        .filter(|t| name.as_ref().is_none_or(|n| t.name.contains(n.as_str())))
        .filter(|t| creator.as_ref().is_none_or(|c| &t.creator == c))
        .filter(|t| template.is_none_or(|id| t.template_id == Some(id)))
        .filter(|t| {
            scope_type
                .as_ref()
                .is_none_or(|s| t.scope_type.as_str() == Some(s))
        })
        .filter(|t| {
            scope_value
                .as_ref()
                .is_none_or(|s| t.scope_value.as_str() == Some(s))
        })
        .filter(|t| start.is_none_or(|s| t.run.created_wall >= s))
        .filter(|t| end.is_none_or(|e| t.run.created_wall <= e))
        .collect();
    rows.reverse();
    let results: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|t| task_fields(t, now, true))
        .collect();
    Reply::ok(ok_body(json!({
        "count": rows.len(),
        "next": null,
        "previous": null,
        "results": results,
    })))
}

pub(crate) fn approve(w: &mut World, id: u64, now: Instant) -> bool {
    match w.flow.get_mut(&id) {
        Some(t) => {
            let pp = t.run.plan.sequential_pause_point();
            t.run.clock.approve(now, pp);
            true
        }
        None => false,
    }
}

pub(crate) fn views(w: &mut World, now: Instant) -> Vec<JobView> {
    w.flow
        .values()
        .map(|t| JobView {
            system: System::Bkflow,
            id: t.id,
            state: root_state(t, now).to_string(),
            started: t.run.clock.started.is_some(),
            mode: super::wire::mode_str(t.run.mode),
            created_at: t.run.created_wall.to_rfc3339(),
            finished_at: t.run.planned_end(),
            created: t.run.request.clone(),
        })
        .collect()
}
