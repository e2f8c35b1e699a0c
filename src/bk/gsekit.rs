//! GSEKit (bk-process-config-manager): process and config-file jobs.
//!
//! Gateway `bk-gsekit`: `POST api/{bk_biz_id}/job/` (biz in the path), `job_status`, `job_task`,
//! `GET api/{bk_biz_id}/job/` (list). Legacy ESB: `gsekit/api/job/{create_job,job_status}/`
//! with `bk_biz_id` in the body; the ESB `job_task` and `job_list` components are not
//! documented upstream and follow the same pattern here. GSEKit has no cancel.

use chrono::{DateTime, Utc};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::de::{self, string_enum};
use super::{BkClient, BkError, CallKind, CallSpec, System};

string_enum! {
    /// `job_object`: what a job acts on.
    pub enum JobObject {
        /// Config files.
        Configfile = "configfile",
        /// Processes.
        Process = "process",
    }
}

string_enum! {
    /// `job_action` (`Job.JobAction`; the seed omits `diff`).
    pub enum JobAction {
        /// Render config files.
        Generate = "generate",
        /// Push rendered config files.
        Release = "release",
        /// Compare config files.
        Diff = "diff",
        /// Start processes.
        Start = "start",
        /// Stop processes.
        Stop = "stop",
        /// Restart processes.
        Restart = "restart",
        /// Reload processes.
        Reload = "reload",
        /// Kill processes.
        ForceStop = "force_stop",
        /// Put processes under GSE supervision.
        SetAuto = "set_auto",
        /// Take processes out of GSE supervision.
        UnsetAuto = "unset_auto",
    }
}

string_enum! {
    /// `job_info.status` of a job.
    pub enum JobStatus {
        /// Created; sub-tasks still being built or waiting.
        Pending = "pending",
        /// The pipeline runs.
        Running = "running",
        /// Done, no job task failed.
        Succeeded = "succeeded",
        /// A job task failed, or building the tasks failed.
        Failed = "failed",
    }
}

string_enum! {
    /// Status of one job task (one process).
    pub enum TaskStatus {
        /// Waiting.
        Pending = "pending",
        /// Running.
        Running = "running",
        /// Succeeded.
        Succeeded = "succeeded",
        /// Failed.
        Failed = "failed",
        /// Nothing to do (e.g. already running); does not fail the job.
        Ignored = "ignored",
    }
}

/// `scope`: the processes a job acts on, by id. Wins over `expression_scope` when both are set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    /// `"0"` all, `"1"` testing, `"2"` experience, `"3"` formal.
    pub bk_set_env: String,
    /// Set ids (empty: all).
    #[serde(default)]
    pub bk_set_ids: Vec<i64>,
    /// Module ids (empty: all).
    #[serde(default)]
    pub bk_module_ids: Vec<i64>,
    /// Service instance ids (empty: all).
    #[serde(default)]
    pub bk_service_ids: Vec<i64>,
    /// Process aliases (empty: all).
    #[serde(default)]
    pub bk_process_names: Vec<String>,
    /// Process ids (empty: all).
    #[serde(default)]
    pub bk_process_ids: Vec<i64>,
}

/// `expression_scope`: the processes a job acts on, by name expressions (empty means `*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpressionScope {
    /// `"0"`–`"3"`, as in [`Scope::bk_set_env`]; the ESB doc says int, upstream takes a string.
    pub bk_set_env: String,
    /// Set name expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_set_name: Option<String>,
    /// Module name expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_module_name: Option<String>,
    /// Service instance name expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_instance_name: Option<String>,
    /// Process alias expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_process_name: Option<String>,
    /// Process id expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_process_id: Option<String>,
}

/// `create_job` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateJobRequest {
    /// Business id: in the path through the gateway, in the body through ESB.
    pub bk_biz_id: i64,
    /// What the job acts on.
    pub job_object: JobObject,
    /// What the job does.
    pub job_action: JobAction,
    /// Process scope by id; wins when both scopes are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Process scope by expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression_scope: Option<ExpressionScope>,
    /// Free-form extras (`config_template_ids` for config-file jobs). GSEKit stores it on the
    /// job and returns it, so a run key placed here (`bkops_run_key`) is found by `search`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_data: Option<Map<String, Value>>,
}

impl CreateJobRequest {
    /// Rejects bodies upstream would answer with a 500 (an ambiguous create).
    pub fn validate(&self) -> Result<(), BkError> {
        if self.scope.is_none() && self.expression_scope.is_none() {
            return Err(BkError::InvalidRequest(
                "GSEKit create_job needs scope or expression_scope (upstream answers 500 without)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `create_job` answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CreateJobResponse {
    /// The new job's id.
    #[serde(deserialize_with = "de::int_from_value")]
    pub job_id: i64,
}

/// A job row (`job_info` of `job_status`, items of the job list).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobInfo {
    /// Job id.
    #[serde(deserialize_with = "de::int_from_value")]
    pub id: i64,
    /// Business id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_biz_id: Option<i64>,
    /// `configfile` / `process`.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub job_object: Option<String>,
    /// The action.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub job_action: Option<String>,
    /// Job status.
    pub status: JobStatus,
    /// Who created it.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub created_by: Option<String>,
    /// Whether the sub-tasks are built.
    #[serde(default)]
    pub is_ready: Option<bool>,
    /// Start (creation) time.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// End time.
    #[serde(default, deserialize_with = "de::time")]
    pub end_time: Option<DateTime<Utc>>,
    /// Holds `failed_reason` when building the tasks failed, and whatever the creator put in.
    #[serde(default)]
    pub extra_data: Option<Value>,
    /// The scope the job was created with.
    #[serde(default)]
    pub scope: Option<Value>,
    /// The expression scope the job was created with (or derived from its scope).
    #[serde(default)]
    pub expression_scope: Option<Value>,
}

impl JobInfo {
    /// `extra_data.failed_reason`, when building the sub-tasks failed.
    pub fn failed_reason(&self) -> Option<String> {
        self.extra_data
            .as_ref()
            .and_then(|e| e.get("failed_reason"))
            .and_then(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Null | Value::String(_) => None,
                other => Some(other.to_string()),
            })
    }
}

/// `status_counter`: job tasks by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StatusCounter {
    /// Waiting.
    #[serde(default, deserialize_with = "de::count")]
    pub pending: u32,
    /// Running.
    #[serde(default, deserialize_with = "de::count")]
    pub running: u32,
    /// Succeeded.
    #[serde(default, deserialize_with = "de::count")]
    pub succeeded: u32,
    /// Failed.
    #[serde(default, deserialize_with = "de::count")]
    pub failed: u32,
    /// Nothing to do.
    #[serde(default, deserialize_with = "de::count")]
    pub ignored: u32,
}

/// `job_status` answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobStatusResponse {
    /// The job row.
    pub job_info: JobInfo,
    /// Job tasks over all statuses.
    #[serde(default, deserialize_with = "de::count")]
    pub count: u32,
    /// Job tasks by status.
    #[serde(default)]
    pub status_counter: StatusCounter,
}

/// Filters and paging of `job_task`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobTaskQuery {
    /// 1-based page.
    pub page: u32,
    /// Page size (upstream documents a maximum of 100).
    pub pagesize: u32,
    /// Only these task statuses (e.g. `["failed"]` to fetch failures first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<TaskStatus>>,
    /// Only these process ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bk_process_ids: Option<Vec<i64>>,
}

/// One job task (one process).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobTask {
    /// Task id.
    #[serde(deserialize_with = "de::int_from_value")]
    pub id: i64,
    /// Process id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_process_id: Option<i64>,
    /// Task status.
    pub status: TaskStatus,
    /// 0 ok, 1 pending, 2 running, 3 failed, 4 ignored, -1 other, or an app/GSE code.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub err_code: Option<i64>,
    /// Start time.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// End time.
    #[serde(default, deserialize_with = "de::time")]
    pub end_time: Option<DateTime<Utc>>,
    /// `failed_reason`, `process_info{set, module, host, process, ...}`, `solutions`, ...
    #[serde(default)]
    pub extra_data: Option<Value>,
}

impl JobTask {
    /// `extra_data.process_info.{part}.{field}` as text.
    fn process_info(&self, part: &str, field: &str) -> Option<String> {
        self.extra_data
            .as_ref()
            .and_then(|e| e.get("process_info"))
            .and_then(|i| i.get(part))
            .and_then(|x| x.get(field))
            .and_then(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    }

    /// A readable name for the process: `ip process-name`, falling back to the ids.
    pub fn target(&self) -> String {
        let get = |a: &str, b: &str| self.process_info(a, b);
        let ip = get("host", "bk_host_innerip");
        let name = get("process", "bk_process_name");
        match (ip, name, self.bk_process_id) {
            (Some(ip), Some(name), _) => format!("{ip} {name}"),
            (None, Some(name), _) => name,
            (Some(ip), None, Some(pid)) => format!("{ip} process {pid}"),
            (_, _, Some(pid)) => format!("process {pid}"),
            _ => format!("job task {}", self.id),
        }
    }

    /// The other names of the process a person may pick it by: its host's IP and id, its
    /// name, its id.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = [
            ("host", "bk_host_innerip"),
            ("host", "bk_host_id"),
            ("process", "bk_process_name"),
        ]
        .iter()
        .filter_map(|(part, field)| self.process_info(part, field))
        .collect();
        names.extend(self.bk_process_id.map(|id| id.to_string()));
        names
    }

    /// `extra_data.failed_reason`, else the error code.
    pub fn reason(&self) -> String {
        let reason = self
            .extra_data
            .as_ref()
            .and_then(|e| e.get("failed_reason"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        match (reason, self.err_code) {
            (Some(r), _) => r.to_owned(),
            (None, Some(c)) => format!("{} (err_code {c})", self.status),
            (None, None) => self.status.to_string(),
        }
    }
}

/// `job_task` answer: one page.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobTaskPage {
    /// The tasks on this page.
    #[serde(default)]
    pub list: Vec<JobTask>,
    /// Matching tasks in all pages.
    #[serde(default, deserialize_with = "de::count")]
    pub count: u32,
    /// Job tasks by status.
    #[serde(default)]
    pub status_counter: StatusCounter,
}

/// Filters and paging of the job list.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JobListQuery {
    /// 1-based page.
    pub page: u32,
    /// Page size.
    pub pagesize: u32,
    /// Creator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Job object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_object: Option<JobObject>,
    /// Job action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_action: Option<JobAction>,
}

/// A page of the job list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobListPage {
    /// Jobs on this page, newest first when upstream orders so.
    pub list: Vec<JobInfo>,
    /// All matching jobs, when upstream says.
    pub count: Option<u32>,
}

/// Calls to GSEKit. Get one with [`BkClient::gsekit`].
#[derive(Clone, Copy, Debug)]
pub struct Gsekit<'a> {
    client: &'a BkClient,
}

impl BkClient {
    /// GSEKit calls.
    pub fn gsekit(&self) -> Gsekit<'_> {
        Gsekit { client: self }
    }
}

fn body_of<T: Serialize>(v: &T) -> Result<Value, BkError> {
    serde_json::to_value(v).map_err(|e| BkError::InvalidRequest(format!("cannot encode: {e}")))
}

impl Gsekit<'_> {
    /// Creates a job (never retried). The job starts by itself.
    pub async fn create_job(&self, req: &CreateJobRequest) -> Result<CreateJobResponse, BkError> {
        req.validate()?;
        let mut body = body_of(req)?;
        let gateway_path = format!("api/{}/job/", req.bk_biz_id);
        if self.client.mode(System::Gsekit) == Some(super::Mode::Gateway)
            && let Value::Object(m) = &mut body
        {
            m.remove("bk_biz_id");
        }
        self.client
            .call(
                CallSpec::new(System::Gsekit, "create_job", CallKind::Create, body)
                    .gateway(Method::POST, &gateway_path)
                    .esb(Method::POST, "gsekit/api/job/create_job/"),
            )
            .await
    }

    /// Job row and task counters.
    pub async fn job_status(&self, biz_id: i64, job_id: i64) -> Result<JobStatusResponse, BkError> {
        let gateway_path = format!("api/{biz_id}/job/{job_id}/job_status/");
        let body = match self.client.mode(System::Gsekit) {
            Some(super::Mode::Esb) => json!({"bk_biz_id": biz_id, "job_id": job_id}),
            _ => json!({}),
        };
        self.client
            .call(
                CallSpec::new(System::Gsekit, "job_status", CallKind::Safe, body)
                    .gateway(Method::POST, &gateway_path)
                    .esb(Method::POST, "gsekit/api/job/job_status/"),
            )
            .await
    }

    /// One page of per-process results.
    pub async fn job_task(
        &self,
        biz_id: i64,
        job_id: i64,
        query: &JobTaskQuery,
    ) -> Result<JobTaskPage, BkError> {
        let gateway_path = format!("api/{biz_id}/job/{job_id}/job_task/");
        let mut body = body_of(query)?;
        if self.client.mode(System::Gsekit) == Some(super::Mode::Esb)
            && let Value::Object(m) = &mut body
        {
            m.insert("bk_biz_id".into(), biz_id.into());
            m.insert("job_id".into(), job_id.into());
        }
        self.client
            .call(
                CallSpec::new(System::Gsekit, "job_task", CallKind::Safe, body)
                    .gateway(Method::POST, &gateway_path)
                    .esb(Method::POST, "gsekit/api/job/job_task/"),
            )
            .await
    }

    /// One page of the business's jobs (for finding a job whose create was ambiguous).
    pub async fn job_list(
        &self,
        biz_id: i64,
        query: &JobListQuery,
    ) -> Result<JobListPage, BkError> {
        let gateway_path = format!("api/{biz_id}/job/");
        let mut params = body_of(query)?;
        if self.client.mode(System::Gsekit) == Some(super::Mode::Esb)
            && let Value::Object(m) = &mut params
        {
            m.insert("bk_biz_id".into(), biz_id.into());
        }
        let raw: Value = self
            .client
            .call(
                CallSpec::new(System::Gsekit, "job_list", CallKind::Safe, params)
                    .gateway(Method::GET, &gateway_path)
                    .esb(Method::POST, "gsekit/api/job/job_list/"),
            )
            .await?;
        let (items, count) = super::de::list_items(raw);
        Ok(JobListPage {
            list: self.client.decode_rows(items),
            count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_request_encodes() -> Result<(), serde_json::Error> {
        let seed = json!({
            "bk_biz_id": 2,
            "job_object": "configfile",
            "job_action": "generate",
            "scope": {"bk_set_env": "3", "bk_set_ids": [], "bk_module_ids": [],
                      "bk_service_ids": [], "bk_process_names": [], "bk_process_ids": []},
            "expression_scope": {"bk_set_env": "3", "bk_set_name": "[管控平台, PaaS平台]",
                "bk_module_name": "*", "service_instance_name": "*", "bk_process_name": "*",
                "bk_process_id": "4[6, 8, 9]"}
        });
        let req: CreateJobRequest = serde_json::from_value(seed.clone())?;
        assert_eq!(req.job_action, JobAction::Generate);
        assert_eq!(serde_json::to_value(&req)?, seed);
        assert!(req.validate().is_ok());
        Ok(())
    }

    #[test]
    fn no_scope_is_invalid() {
        let req = CreateJobRequest {
            bk_biz_id: 2,
            job_object: JobObject::Process,
            job_action: JobAction::Restart,
            scope: None,
            expression_scope: None,
            extra_data: None,
        };
        assert!(matches!(req.validate(), Err(BkError::InvalidRequest(_))));
    }

    #[test]
    fn status_decodes_with_unknown_state() -> Result<(), serde_json::Error> {
        let v = json!({
            "job_info": {"id": 5, "bk_biz_id": 2, "status": "paused_by_ufo",
                         "start_time": "2024-01-01 10:00:00", "extra_data": {"failed_reason": "boom"}},
            "job_tasks": [], "count": 3,
            "status_counter": {"pending": 1, "running": 0, "succeeded": 1, "failed": 1, "ignored": 0}
        });
        let s: JobStatusResponse = serde_json::from_value(v)?;
        assert_eq!(
            s.job_info.status,
            JobStatus::Unknown("paused_by_ufo".into())
        );
        assert_eq!(s.job_info.failed_reason().as_deref(), Some("boom"));
        assert_eq!(s.status_counter.failed, 1);
        Ok(())
    }

    #[test]
    fn task_target_and_reason() -> Result<(), serde_json::Error> {
        let t: JobTask = serde_json::from_value(json!({
            "id": 1, "job_id": 5, "bk_process_id": 42, "status": "failed", "err_code": 3,
            "extra_data": {"failed_reason": "exit 1",
                "process_info": {"host": {"bk_host_innerip": "10.0.0.1"},
                                 "process": {"bk_process_name": "nginx"}}}
        }))?;
        assert_eq!(t.target(), "10.0.0.1 nginx");
        assert_eq!(t.reason(), "exit 1");
        assert_eq!(t.names(), ["10.0.0.1", "nginx", "42"]);
        Ok(())
    }
}
