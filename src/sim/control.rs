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
use serde_json::{Value, json};
use url::Url;

use super::api::{Behaviour, CallCounts, EndpointCount, FaultRule, JobView, PathCount};
use super::state::{Shared, approve, finish, job_views};
use super::{SimError, System};

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
    w.faults.push(super::world::StoredFault {
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
    w.behaviours.push(super::world::StoredBehaviour {
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
        out.extend(job_views(&mut w, &sh.config, system, now));
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
        "approve" => approve(&mut w, system, id, now),
        "finish" => finish(&mut w, system, id, now),
        other => return bad_request(format!("unknown job action {other}")),
    };
    if !found {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no {} job {id}", system.as_str())})),
        )
            .into_response();
    }
    match job_views(&mut w, &sh.config, system, now)
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
    use crate::sim::{FaultAction, SystemSel};

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
