//! What the system modules share: the operation a request resolved to, the request and reply
//! as they see them, and readers of the request's parameters (JSON body and query string alike).

use axum::http::StatusCode;
use chrono::{DateTime, Local};
use serde_json::{Map, Value};
use url::Url;

use super::System;
use super::model::Mode;

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
    NmLog,
    JobPlan,
    JobV2Execute,
    JobOperate,
    JobStatusV3,
    JobStatusV2,
    JobList,
    JobBatchIpLog,
    JobIpLog,
    JobLogV2,
}

impl Op {
    pub(crate) fn system(self) -> System {
        use Op::*;
        match self {
            GseCreate | GseStatus | GseTasks | GseList => System::Gsekit,
            FlowCreate | FlowCreateRaw | FlowOperate | FlowStates | FlowBatchStates
            | FlowDetail | FlowNodeDetail | FlowList => System::Bkflow,
            NmOperate | NmPluginOperate | NmDetails | NmRevoke | NmList | NmLog => System::Nodeman,
            JobPlan | JobV2Execute | JobOperate | JobStatusV3 | JobStatusV2 | JobList
            | JobBatchIpLog | JobIpLog | JobLogV2 => System::Job,
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
            NmLog | JobBatchIpLog | JobIpLog | JobLogV2 => "log",
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

/// Accepts `YYYY-MM-DD HH:MM:SS` (local) or RFC 3339.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Local>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Local));
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%z") {
        return Some(t.with_timezone(&Local));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .and_then(|n| n.and_local_timezone(Local).single())
}

/// The mode's name as the job views show it.
pub(crate) fn mode_str(m: Mode) -> String {
    m.as_str().to_string()
}
