//! The control API under `/_sim/` and a typed client for it.
//!
//! Tests use it to inject faults, shape the next jobs, act as the person a job waits for, and
//! read call counts ("exactly one create") and the jobs the simulator holds.
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `POST /_sim/faults` | [`FaultRule`] | `{"id": n}` |
//! | `GET /_sim/faults` | | `[{"id", "rule", "remaining"}]` |
//! | `DELETE /_sim/faults` | | `{}` |
//! | `POST /_sim/behaviour` | [`Behaviour`] | `{"id": n}` |
//! | `GET /_sim/behaviour` | | `[{"id", "rule", "remaining"}]` |
//! | `DELETE /_sim/behaviour` | | `{}` |
//! | `POST /_sim/jobs/{system}/{id}/approve` | | the job ([`JobView`]) |
//! | `POST /_sim/jobs/{system}/{id}/finish` | | the job ([`JobView`]) |
//! | `GET /_sim/jobs` | | `[JobView]` |
//! | `GET /_sim/calls` | | [`CallCounts`] |
//! | `POST /_sim/reset` | | `{}` |

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::server::Shared;
use super::{SimError, System};

/// Which system a fault rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SystemSel {
    /// Every system.
    #[default]
    Any,
    /// GSEKit only.
    Gsekit,
    /// BKFlow only.
    Bkflow,
    /// NodeMan only.
    Nodeman,
    /// JOB only.
    Job,
}

/// What a fault does to a matching request.
///
/// JSON is externally tagged: `{"commit_then_timeout": {"delay_ms": 3000}}`,
/// `"commit_then_drop"` (or `{"commit_then_drop": null}`), `{"http_status": {"status": 502}}`,
/// `"rate_limit"`, `{"delay_ms": 500}`, `{"reject": {"code": 1244032, "message": "quota"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Carry out the request (a create creates the job), then hold the answer for `delay_ms`
    /// so the client times out; the answer is sent afterwards if anyone still listens.
    CommitThenTimeout {
        /// How long to hold the answer.
        delay_ms: u64,
    },
    /// Carry out the request, then close the connection without sending a single byte.
    CommitThenDrop,
    /// Answer with a gateway error of this HTTP status without carrying out the request. `code`
    /// defaults per status (500 → 1650001, 502 → 1650200, 503 → 1650300, 504 → 1650401).
    HttpStatus {
        /// HTTP status to answer with.
        status: u16,
        /// Gateway error code (ESB: ESB code) to put in the body.
        #[serde(default)]
        code: Option<i64>,
    },
    /// Answer 429 with the gateway body 1642901 (ESB: 1306429), without carrying out the request.
    RateLimit,
    /// Wait this many milliseconds, then handle the request normally.
    DelayMs(u64),
    /// Answer with the system's own business error envelope (HTTP 200, `result: false`) and this
    /// code, without carrying out the request. GSEKit gets the code as a string, as upstream.
    Reject {
        /// Error code.
        code: i64,
        /// Error message.
        #[serde(default)]
        message: Option<String>,
    },
}

/// A fault rule: which requests it matches, what it does, how often.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// System the rule applies to (`any` by default).
    #[serde(default)]
    pub system: SystemSel,
    /// Endpoint name (`create`, `start`, `status`, `tasks`, `list`, `cancel`, `detail`,
    /// `node_detail`, `batch_status`, `pause`, `resume`, `operate`), or `*` for all.
    #[serde(default = "star")]
    pub endpoint: String,
    /// What to do.
    pub action: FaultAction,
    /// How many matching calls it applies to; `None` means until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

fn star() -> String {
    "*".to_string()
}

/// How the next created jobs of a system behave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// The system whose next jobs this shapes.
    pub system: System,
    /// How many targets fail (the last ones).
    #[serde(default)]
    pub failed_targets: Option<u32>,
    /// The job stops for a person (BKFlow NODE_SUSPENDED, JOB status 7) until approved via
    /// `/_sim/jobs/{system}/{id}/approve`. Rejected for GSEKit and NodeMan, which upstream
    /// never wait for a person.
    #[serde(default)]
    pub wait_for_user: bool,
    /// Run duration (overrides the configured job duration).
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Number of targets, where the request does not name them itself.
    #[serde(default)]
    pub targets: Option<u32>,
    /// How many creates it applies to; `None` means until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

/// One line of [`CallCounts::endpoints`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCount {
    /// System.
    pub system: System,
    /// Endpoint name, as in [`FaultRule::endpoint`].
    pub endpoint: String,
    /// Requests seen.
    pub count: u64,
}

/// One line of [`CallCounts::paths`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathCount {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Requests seen.
    pub count: u64,
}

/// Every request that reached a business endpoint, including ones that failed auth or were
/// faulted; control-API calls and unknown paths are not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    /// All counted requests.
    pub total: u64,
    /// Per system and endpoint.
    pub endpoints: Vec<EndpointCount>,
    /// Per method and path.
    pub paths: Vec<PathCount>,
}

impl CallCounts {
    /// Requests seen for one system and endpoint.
    pub fn get(&self, system: System, endpoint: &str) -> u64 {
        self.endpoints
            .iter()
            .filter(|e| e.system == system && e.endpoint == endpoint)
            .map(|e| e.count)
            .sum()
    }
}

/// A job as the control API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// System.
    pub system: System,
    /// The id the system gave it.
    pub id: u64,
    /// The upstream state as the status call would report it now (JOB: the status code as text).
    pub state: String,
    /// Whether the job has been started (BKFlow and JOB create jobs that are not).
    pub started: bool,
    /// `gateway` or `esb`.
    pub mode: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// When the job's plan ends (RFC 3339), once it has started: the moment the status call
    /// starts reporting the job finished. Benchmarks compare it with when the operator says so.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The create request body as received.
    pub created: Value,
}

/// A typed client for the control API.
#[derive(Clone, Debug)]
pub struct SimControl {
    base: Url,
    http: reqwest::Client,
}

impl SimControl {
    /// A client for the simulator at `base` (its root URL).
    pub fn new(base: Url) -> Result<Self, SimError> {
        super::install_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| SimError::Client(e.to_string()))?;
        Ok(SimControl { base, http })
    }

    fn url(&self, path: &str) -> Result<Url, SimError> {
        self.base
            .join(path)
            .map_err(|e| SimError::Client(e.to_string()))
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, SimError> {
        let resp = req
            .send()
            .await
            .map_err(|e| SimError::Client(e.to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| SimError::Client(e.to_string()))?;
        if !status.is_success() {
            return Err(SimError::Client(format!("{status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| SimError::Client(format!("{e}: {text}")))
    }

    /// Adds a fault rule; returns its id.
    pub async fn add_fault(&self, rule: &FaultRule) -> Result<u64, SimError> {
        let v: Value = self
            .send(self.http.post(self.url("_sim/faults")?).json(rule))
            .await?;
        Ok(v["id"].as_u64().unwrap_or_default())
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) -> Result<(), SimError> {
        let _: Value = self
            .send(self.http.delete(self.url("_sim/faults")?))
            .await?;
        Ok(())
    }

    /// Shapes the next created jobs of a system; returns the rule's id.
    pub async fn set_behaviour(&self, behaviour: &Behaviour) -> Result<u64, SimError> {
        let v: Value = self
            .send(self.http.post(self.url("_sim/behaviour")?).json(behaviour))
            .await?;
        Ok(v["id"].as_u64().unwrap_or_default())
    }

    /// Removes every behaviour rule.
    pub async fn clear_behaviours(&self) -> Result<(), SimError> {
        let _: Value = self
            .send(self.http.delete(self.url("_sim/behaviour")?))
            .await?;
        Ok(())
    }

    /// Acts as the person a waiting job needs (BKFlow NODE_SUSPENDED, JOB WAITING_USER).
    pub async fn approve(&self, system: System, id: u64) -> Result<JobView, SimError> {
        let path = format!("_sim/jobs/{}/{id}/approve", system.as_str());
        self.send(self.http.post(self.url(&path)?)).await
    }

    /// Ends a job now, as its plan says (starting it first if it was not started).
    pub async fn finish(&self, system: System, id: u64) -> Result<JobView, SimError> {
        let path = format!("_sim/jobs/{}/{id}/finish", system.as_str());
        self.send(self.http.post(self.url(&path)?)).await
    }

    /// Every job the simulator holds.
    pub async fn jobs(&self) -> Result<Vec<JobView>, SimError> {
        self.send(self.http.get(self.url("_sim/jobs")?)).await
    }

    /// Call counts.
    pub async fn calls(&self) -> Result<CallCounts, SimError> {
        self.send(self.http.get(self.url("_sim/calls")?)).await
    }

    /// Clears faults, behaviours, counts and jobs.
    pub async fn reset(&self) -> Result<(), SimError> {
        let _: Value = self.send(self.http.post(self.url("_sim/reset")?)).await?;
        Ok(())
    }
}

fn bad_request(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg.into()}))).into_response()
}

/// Accepts the unit actions written as objects too (`{"commit_then_drop": {}}`), which is how
/// people tend to write them next to the other, object-shaped actions.
fn normalize_action(rule: &mut Value) {
    if let Some(action) = rule.get_mut("action")
        && let Some(obj) = action.as_object()
        && obj.len() == 1
        && let Some((name, arg)) = obj.iter().next()
        && matches!(name.as_str(), "commit_then_drop" | "rate_limit")
        && (arg.is_null() || arg.as_object().is_some_and(|m| m.is_empty()))
    {
        *action = Value::String(name.clone());
    }
}

/// Parses a fault rule as the control API accepts it.
fn parse_fault(body: &[u8]) -> Result<FaultRule, String> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    normalize_action(&mut v);
    serde_json::from_value(v).map_err(|e| e.to_string())
}

pub(crate) async fn add_fault(State(sh): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let rule: FaultRule = match parse_fault(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("invalid fault rule: {e}")),
    };
    let mut w = sh.world();
    let id = w.next_rule_id();
    let remaining = rule.times;
    w.faults.push(super::model::StoredFault {
        id,
        rule,
        remaining,
    });
    Json(json!({ "id": id })).into_response()
}

pub(crate) async fn list_faults(State(sh): State<Arc<Shared>>) -> Response {
    let w = sh.world();
    let v: Vec<Value> = w
        .faults
        .iter()
        .map(|f| json!({"id": f.id, "rule": f.rule, "remaining": f.remaining}))
        .collect();
    Json(v).into_response()
}

pub(crate) async fn clear_faults(State(sh): State<Arc<Shared>>) -> Response {
    sh.world().faults.clear();
    Json(json!({})).into_response()
}

pub(crate) async fn add_behaviour(
    State(sh): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Response {
    let rule: Behaviour = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("invalid behaviour: {e}")),
    };
    if rule.wait_for_user && matches!(rule.system, System::Gsekit | System::Nodeman) {
        return bad_request(format!(
            "{} never waits for a person upstream; wait_for_user is only for bkflow and job",
            rule.system.as_str()
        ));
    }
    let mut w = sh.world();
    let id = w.next_rule_id();
    let remaining = rule.times;
    w.behaviours.push(super::model::StoredBehaviour {
        id,
        rule,
        remaining,
    });
    Json(json!({ "id": id })).into_response()
}

pub(crate) async fn list_behaviours(State(sh): State<Arc<Shared>>) -> Response {
    let w = sh.world();
    let v: Vec<Value> = w
        .behaviours
        .iter()
        .map(|b| json!({"id": b.id, "rule": b.rule, "remaining": b.remaining}))
        .collect();
    Json(v).into_response()
}

pub(crate) async fn clear_behaviours(State(sh): State<Arc<Shared>>) -> Response {
    sh.world().behaviours.clear();
    Json(json!({})).into_response()
}

pub(crate) async fn reset(State(sh): State<Arc<Shared>>) -> Response {
    sh.world().reset();
    Json(json!({})).into_response()
}

pub(crate) async fn calls(State(sh): State<Arc<Shared>>) -> Response {
    let w = sh.world();
    let counts = CallCounts {
        total: w.total_calls,
        endpoints: w
            .calls
            .iter()
            .map(|((system, endpoint), count)| EndpointCount {
                system: *system,
                endpoint: endpoint.clone(),
                count: *count,
            })
            .collect(),
        paths: w
            .paths
            .iter()
            .map(|((method, path), count)| PathCount {
                method: method.clone(),
                path: path.clone(),
                count: *count,
            })
            .collect(),
    };
    Json(counts).into_response()
}

pub(crate) async fn jobs(State(sh): State<Arc<Shared>>) -> Response {
    let now = Instant::now();
    let mut w = sh.world();
    let mut out = Vec::new();
    for system in System::ALL {
        out.extend(super::server::job_views(&mut w, &sh.config, system, now));
    }
    Json(out).into_response()
}

pub(crate) async fn job_action(
    State(sh): State<Arc<Shared>>,
    Path((system, id, action)): Path<(String, u64, String)>,
) -> Response {
    let Some(system) = System::parse(&system) else {
        return bad_request(format!("unknown system {system}"));
    };
    let now = Instant::now();
    let mut w = sh.world();
    let found = match action.as_str() {
        "approve" => super::server::approve(&mut w, system, id, now),
        "finish" => super::server::finish(&mut w, system, id, now),
        other => return bad_request(format!("unknown job action {other}")),
    };
    if !found {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no {} job {id}", system.as_str())})),
        )
            .into_response();
    }
    match super::server::job_views(&mut w, &sh.config, system, now)
        .into_iter()
        .find(|j| j.id == id)
    {
        Some(v) => Json(v).into_response(),
        None => bad_request("job vanished"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn documented_fault_shapes_parse() {
        let cases = [
            (
                r#"{"system":"job","endpoint":"create","action":{"commit_then_timeout":{"delay_ms":5}}}"#,
                FaultAction::CommitThenTimeout { delay_ms: 5 },
            ),
            (
                r#"{"action":"commit_then_drop"}"#,
                FaultAction::CommitThenDrop,
            ),
            (
                r#"{"action":{"commit_then_drop":{}}}"#,
                FaultAction::CommitThenDrop,
            ),
            (
                r#"{"action":{"commit_then_drop":null}}"#,
                FaultAction::CommitThenDrop,
            ),
            (
                r#"{"action":{"http_status":{"status":502}}}"#,
                FaultAction::HttpStatus {
                    status: 502,
                    code: None,
                },
            ),
            (r#"{"action":{"rate_limit":{}}}"#, FaultAction::RateLimit),
            (
                r#"{"action":{"delay_ms":100},"times":2}"#,
                FaultAction::DelayMs(100),
            ),
            (
                r#"{"action":{"reject":{"code":1244032,"message":"quota"}}}"#,
                FaultAction::Reject {
                    code: 1244032,
                    message: Some("quota".into()),
                },
            ),
        ];
        for (json, action) in cases {
            let rule = parse_fault(json.as_bytes()).unwrap();
            assert_eq!(rule.action, action, "{json}");
        }
        let rule = parse_fault(br#"{"action":"rate_limit"}"#).unwrap();
        assert_eq!(rule.system, SystemSel::Any);
        assert_eq!(rule.endpoint, "*");
        assert_eq!(rule.times, None);
        assert!(parse_fault(br#"{"action":{"explode":{}}}"#).is_err());
    }
}
