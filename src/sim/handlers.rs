//! The route table (gateway and ESB paths → operations), the request/reply types the system
//! modules share, and each system's response envelope.

use std::time::Instant;

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use url::Url;

use super::model::{Mode, World};
use super::{SimConfig, System, bkflow, gsekit, job, nodeman};

/// One business operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    GseCreate,
    GseStatus,
    GseTasks,
    GseList,
    FlowCreate,
    FlowCreateRaw,
    FlowOperate,
    FlowStates,
    FlowBatchStates,
    FlowDetail,
    FlowNodeDetail,
    FlowList,
    NmOperate,
    NmPluginOperate,
    NmDetails,
    NmRevoke,
    NmList,
    JobPlan,
    JobV2Execute,
    JobOperate,
    JobStatusV3,
    JobStatusV2,
    JobList,
}

impl Op {
    pub(crate) fn system(self) -> System {
        use Op::*;
        match self {
            GseCreate | GseStatus | GseTasks | GseList => System::Gsekit,
            FlowCreate | FlowCreateRaw | FlowOperate | FlowStates | FlowBatchStates
            | FlowDetail | FlowNodeDetail | FlowList => System::Bkflow,
            NmOperate | NmPluginOperate | NmDetails | NmRevoke | NmList => System::Nodeman,
            JobPlan | JobV2Execute | JobOperate | JobStatusV3 | JobStatusV2 | JobList => {
                System::Job
            }
        }
    }

    /// The endpoint name used by call counts and fault rules.
    pub(crate) fn endpoint(self, route: &Route, params: &Map<String, Value>) -> &'static str {
        use Op::*;
        match self {
            GseCreate | FlowCreate | FlowCreateRaw | NmOperate | NmPluginOperate | JobPlan
            | JobV2Execute => "create",
            GseStatus | FlowStates | NmDetails | JobStatusV3 | JobStatusV2 => "status",
            GseTasks => "tasks",
            GseList | FlowList | NmList | JobList => "list",
            FlowBatchStates => "batch_status",
            FlowDetail => "detail",
            FlowNodeDetail => "node_detail",
            NmRevoke => "cancel",
            FlowOperate => match route.ids.operation.as_deref() {
                Some("start") => "start",
                Some("revoke") => "cancel",
                Some("pause") => "pause",
                Some("resume") => "resume",
                _ => "operate",
            },
            JobOperate => match get_i64(params, "operation_code") {
                Ok(Some(2)) => "start",
                Ok(Some(1)) => "cancel",
                _ => "operate",
            },
        }
    }
}

/// Identifiers taken from the path.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ids {
    pub biz: Option<u64>,
    pub id: Option<u64>,
    pub space: Option<u64>,
    pub node: Option<String>,
    pub operation: Option<String>,
    /// A NodeMan `/system/...` resource (app-only).
    pub system_resource: bool,
}

/// A resolved route.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub mode: Mode,
    pub op: Op,
    pub ids: Ids,
    /// The resource needs a user identity besides the app (`userVerifiedRequired`).
    pub user_required: bool,
    /// Credentials may come from query/body (`allow_auth_from_params`); never for bk-job.
    pub params_auth: bool,
}

/// A request as the system modules see it.
#[derive(Debug)]
pub(crate) struct Req {
    pub mode: Mode,
    pub op: Op,
    pub ids: Ids,
    /// Query parameters overlaid with the body's top-level keys.
    pub params: Map<String, Value>,
    /// The parsed body (`Null` when empty or unparsable).
    pub body: Value,
    /// Why the body could not be parsed, if it could not.
    pub body_error: Option<String>,
    /// The caller's user name.
    pub user: String,
    pub app_code: String,
    /// Base for links (NodeMan `job_url`).
    pub base_url: Url,
}

/// What a handler answers.
#[derive(Debug)]
pub(crate) enum Reply {
    Json { status: StatusCode, body: Value },
    Html { status: StatusCode, body: String },
}

impl Reply {
    pub(crate) fn ok(body: Value) -> Self {
        Reply::Json {
            status: StatusCode::OK,
            body,
        }
    }
}

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
        "job/execute_job" => Op::JobV2Execute,
        "job/get_job_instance_status" => Op::JobStatusV2,
        "jobv3/execute_job_plan" => Op::JobPlan,
        "jobv3/operate_job_instance" => Op::JobOperate,
        "jobv3/get_job_instance_status" => Op::JobStatusV3,
        "jobv3/get_job_instance_list" => Op::JobList,
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
        JobPlan | JobV2Execute => job::create(w, config, req, now),
        JobOperate => job::operate(w, req, now),
        JobStatusV3 => job::status_v3(w, req, now),
        JobStatusV2 => job::status_v2(w, req, now),
        JobList => job::list(w, req, now),
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

/// An integer parameter: a JSON number or a numeric string (query parameters are strings).
/// `Err` when present but not an integer.
pub(crate) fn get_i64(params: &Map<String, Value>, key: &str) -> Result<Option<i64>, ()> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

/// A non-negative integer parameter.
pub(crate) fn get_u64(params: &Map<String, Value>, key: &str) -> Result<Option<u64>, ()> {
    match get_i64(params, key)? {
        None => Ok(None),
        Some(n) => u64::try_from(n).map(Some).map_err(|_| ()),
    }
}

/// A string parameter (numbers are turned into strings).
pub(crate) fn get_str(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A boolean parameter (query strings say `true`/`false`/`1`/`0`).
pub(crate) fn get_bool(params: &Map<String, Value>, key: &str) -> Option<bool> {
    match params.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" | "" => Some(false),
            _ => None,
        },
        Some(Value::Number(n)) => Some(n.as_i64() != Some(0)),
        _ => None,
    }
}

/// A list of integers; `Err` if present and not a list of integers.
pub(crate) fn get_u64_list(params: &Map<String, Value>, key: &str) -> Result<Option<Vec<u64>>, ()> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_u64().ok_or(()),
                Value::String(s) => s.parse().map_err(|_| ()),
                _ => Err(()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(()),
    }
}

/// A list of strings, accepting a single string or a comma-separated query value.
pub(crate) fn get_str_list(params: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    match params.get(key) {
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        Some(Value::String(s)) if !s.is_empty() => {
            Some(s.split(',').map(|x| x.trim().to_string()).collect())
        }
        _ => None,
    }
}

/// Slices `items` for 1-based `page` of `pagesize` (`pagesize <= 0` → everything).
pub(crate) fn page<T: Clone>(items: &[T], page: i64, pagesize: i64) -> Vec<T> {
    if pagesize <= 0 {
        return items.to_vec();
    }
    let start = ((page.max(1) - 1) * pagesize) as usize;
    items
        .iter()
        .skip(start)
        .take(pagesize as usize)
        .cloned()
        .collect()
}

/// Stable 32-hex id derived from numbers (pipeline ids, node ids), so the same job always
/// shows the same ids.
pub(crate) fn hex_id(prefix: char, a: u64, b: u64) -> String {
    let mut x = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
    let mut s = String::with_capacity(32);
    s.push(prefix);
    while s.len() < 32 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 29;
        s.push_str(&format!("{:016x}", x));
    }
    s.truncate(32);
    s
}
