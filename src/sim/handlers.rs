//! The route table (gateway and ESB paths → operations), the request/reply types the system
//! modules share, and each system's response envelope.

use std::time::Instant;

use axum::http::Method;
use serde_json::json;

use super::model::Mode;
use super::wire::{Ids, Op, Reply, Req, Route};
use super::world::World;
use super::{SimConfig, System, bkflow, gsekit, job, logs, nodeman};

fn num(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// Resolves a path; `Err(mode)` means "not found" in that mode's words.
pub(crate) fn route(method: &Method, path: &str, config: &SimConfig) -> Result<Route, Mode> {
    if let Some(rest) = path.strip_prefix("/api/c/compapi/v2/") {
        return esb_route(rest).ok_or(Mode::Esb);
    }
    let rest = path.strip_prefix("/api/").ok_or(Mode::Gateway)?;
    let mut parts = rest.splitn(3, '/');
    let gateway = parts.next().unwrap_or_default();
    let stage = parts.next().ok_or(Mode::Gateway)?;
    let resource = parts.next().ok_or(Mode::Gateway)?;
    if stage != config.stage {
        return Err(Mode::Gateway);
    }
    let segs: Vec<&str> = resource.split('/').collect();
    let is = |m: &Method| method == m;
    let mut ids = Ids::default();
    let gw = |op: Op, ids: Ids, user_required: bool| Route {
        mode: Mode::Gateway,
        op,
        ids,
        user_required,
        params_auth: op.system() != System::Job,
    };
    match gateway {
        "bk-gsekit" => match segs.as_slice() {
            ["api", biz, "job", ""] => {
                ids.biz = Some(num(biz).ok_or(Mode::Gateway)?);
                if is(&Method::POST) {
                    Ok(gw(Op::GseCreate, ids, true))
                } else if is(&Method::GET) {
                    Ok(gw(Op::GseList, ids, true))
                } else {
                    Err(Mode::Gateway)
                }
            }
            ["api", biz, "job", id, action, ""] if is(&Method::POST) => {
                ids.biz = Some(num(biz).ok_or(Mode::Gateway)?);
                ids.id = Some(num(id).ok_or(Mode::Gateway)?);
                match *action {
                    "job_status" => Ok(gw(Op::GseStatus, ids, true)),
                    "job_task" => Ok(gw(Op::GseTasks, ids, true)),
                    _ => Err(Mode::Gateway),
                }
            }
            _ => Err(Mode::Gateway),
        },
        "bk-flow" | "bk-flow-engine" => {
            let op = match segs.as_slice() {
                ["space", sid, tail @ ..] => {
                    ids.space = Some(num(sid).ok_or(Mode::Gateway)?);
                    match tail {
                        ["create_task", ""] if is(&Method::POST) => Op::FlowCreate,
                        ["create_task_without_template", ""] if is(&Method::POST) => {
                            Op::FlowCreateRaw
                        }
                        ["get_tasks_states", ""] if is(&Method::POST) => Op::FlowBatchStates,
                        ["get_task_list", ""] if is(&Method::GET) => Op::FlowList,
                        ["task", tid, rest @ ..] => {
                            ids.id = Some(num(tid).ok_or(Mode::Gateway)?);
                            match rest {
                                ["operate_task", op, ""] if is(&Method::POST) => {
                                    ids.operation = Some((*op).to_string());
                                    Op::FlowOperate
                                }
                                ["get_task_states", ""] if is(&Method::GET) => Op::FlowStates,
                                ["get_task_detail", ""] if is(&Method::GET) => Op::FlowDetail,
                                ["node", nid, "get_task_node_detail", ""] if is(&Method::GET) => {
                                    ids.node = Some((*nid).to_string());
                                    Op::FlowNodeDetail
                                }
                                _ => return Err(Mode::Gateway),
                            }
                        }
                        _ => return Err(Mode::Gateway),
                    }
                }
                _ => return Err(Mode::Gateway),
            };
            Ok(gw(op, ids, false))
        }
        "bk-nodeman" => {
            let (system_resource, segs) = match segs.as_slice() {
                ["system", rest @ ..] => (true, rest),
                rest => (false, rest),
            };
            ids.system_resource = system_resource;
            // The per-host log is the one GET resource among these.
            if let ["api", "job", id, "log", ""] = segs
                && is(&Method::GET)
            {
                ids.id = Some(num(id).ok_or(Mode::Gateway)?);
                return Ok(gw(Op::NmLog, ids, !system_resource));
            }
            if !is(&Method::POST) {
                return Err(Mode::Gateway);
            }
            let op = match segs {
                ["api", "job", "operate", ""] => Op::NmOperate,
                ["api", "plugin", "operate", ""] => Op::NmPluginOperate,
                ["api", "job", "job_list", ""] => Op::NmList,
                ["api", "job", id, action, ""] => {
                    ids.id = Some(num(id).ok_or(Mode::Gateway)?);
                    match *action {
                        "details" => Op::NmDetails,
                        "revoke" => Op::NmRevoke,
                        _ => return Err(Mode::Gateway),
                    }
                }
                _ => return Err(Mode::Gateway),
            };
            Ok(gw(op, ids, !system_resource))
        }
        "bk-job" => {
            // bk-job resources have no trailing slash, and credentials only in the header.
            let op = match segs.as_slice() {
                ["api", "v3", "execute_job_plan"] if is(&Method::POST) => Op::JobPlan,
                ["api", "v3", "operate_job_instance"] if is(&Method::POST) => Op::JobOperate,
                ["api", "v3", "get_job_instance_status"]
                    if is(&Method::GET) || is(&Method::POST) =>
                {
                    Op::JobStatusV3
                }
                ["api", "v3", "get_job_instance_list"] if is(&Method::GET) => Op::JobList,
                ["api", "v3", "batch_get_job_instance_ip_log"] if is(&Method::POST) => {
                    Op::JobBatchIpLog
                }
                ["api", "v3", "get_job_instance_ip_log"] if is(&Method::GET) => Op::JobIpLog,
                _ => return Err(Mode::Gateway),
            };
            Ok(gw(op, ids, true))
        }
        _ => Err(Mode::Gateway),
    }
}

/// ESB components; ids travel in the body. ESB routes by component path regardless of the
/// method, and tolerates a missing trailing slash.
fn esb_route(rest: &str) -> Option<Route> {
    let rest = rest.trim_end_matches('/');
    let op = match rest {
        "gsekit/api/job/create_job" => Op::GseCreate,
        "gsekit/api/job/job_status" => Op::GseStatus,
        "gsekit/api/job/job_task" => Op::GseTasks,
        "gsekit/api/job/list" | "gsekit/api/job/job_list" | "gsekit/api/job/list_job" => {
            Op::GseList
        }
        "nodeman/api/job/operate" => Op::NmOperate,
        "nodeman/api/job/details" => Op::NmDetails,
        "nodeman/api/job/revoke" => Op::NmRevoke,
        "nodeman/api/job/job_list" => Op::NmList,
        "nodeman/api/plugin/operate" => Op::NmPluginOperate,
        "nodeman/api/job/log" => Op::NmLog,
        "job/execute_job" => Op::JobV2Execute,
        "job/get_job_instance_status" => Op::JobStatusV2,
        "job/get_job_instance_log" => Op::JobLogV2,
        "jobv3/execute_job_plan" => Op::JobPlan,
        "jobv3/operate_job_instance" => Op::JobOperate,
        "jobv3/get_job_instance_status" => Op::JobStatusV3,
        "jobv3/get_job_instance_list" => Op::JobList,
        "jobv3/batch_get_job_instance_ip_log" => Op::JobBatchIpLog,
        "jobv3/get_job_instance_ip_log" => Op::JobIpLog,
        _ => return None,
    };
    Some(Route {
        mode: Mode::Esb,
        op,
        ids: Ids::default(),
        user_required: true,
        params_auth: true,
    })
}

/// Runs the operation.
pub(crate) fn dispatch(w: &mut World, config: &SimConfig, req: &Req, now: Instant) -> Reply {
    use Op::*;
    match req.op {
        GseCreate => gsekit::create(w, config, req, now),
        GseStatus => gsekit::status(w, req, now),
        GseTasks => gsekit::tasks(w, req, now),
        GseList => gsekit::list(w, req, now),
        FlowCreate | FlowCreateRaw => bkflow::create(w, config, req, now),
        FlowOperate => bkflow::operate(w, config, req, now),
        FlowStates => bkflow::states(w, config, req, now),
        FlowBatchStates => bkflow::batch_states(w, config, req, now),
        FlowDetail => bkflow::detail(w, config, req, now),
        FlowNodeDetail => bkflow::node_detail(w, config, req, now),
        FlowList => bkflow::list(w, config, req, now),
        NmOperate | NmPluginOperate => nodeman::create(w, config, req, now),
        NmDetails => nodeman::details(w, req, now),
        NmRevoke => nodeman::revoke(w, req, now),
        NmList => nodeman::list(w, req, now),
        NmLog => logs::nodeman_log(w, req, now),
        JobPlan | JobV2Execute => job::create(w, config, req, now),
        JobOperate => job::operate(w, req, now),
        JobStatusV3 => job::status_v3(w, req, now),
        JobStatusV2 => job::status_v2(w, req, now),
        JobList => job::list(w, req, now),
        JobBatchIpLog => logs::job_batch_ip_log(w, req, now),
        JobIpLog => logs::job_ip_log(w, req, now),
        JobLogV2 => logs::job_log_v2(w, req, now),
    }
}

/// A business error in the system's own envelope and `code` type.
pub(crate) fn error_reply(system: System, code: i64, message: &str) -> Reply {
    Reply::ok(match system {
        System::Gsekit => gsekit::error_body(&code.to_string(), message),
        System::Bkflow => bkflow::error_body(json!(code), message),
        System::Nodeman => nodeman::error_body(code, message),
        System::Job => job::error_body(code, message),
    })
}
