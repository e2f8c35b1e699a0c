//! JOB (bk-job): job plans.
//!
//! v3, gateway `bk-job` (no trailing slashes): `api/v3/execute_job_plan`,
//! `api/v3/operate_job_instance`, `GET api/v3/get_job_instance_status`,
//! `GET api/v3/get_job_instance_list`; ESB `jobv3/<name>/` (all POST).
//! v2 compatibility (legacy ESB `job` system only): `job/execute_job/`,
//! `GET job/get_job_instance_status/`. Logs: `batch_get_job_instance_ip_log` (v3) and
//! `job/get_job_instance_log/` (v2).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::de::{self, int_enum, string_enum};

string_enum! {
    /// `bk_scope_type`.
    pub enum ScopeType {
        /// A business.
        Biz = "biz",
        /// A business set.
        BizSet = "biz_set",
    }
}

int_enum! {
    /// Job and step status (`RunStatusEnum`).
    pub enum RunStatus {
        /// Not started / waiting.
        Blank = 1,
        /// Running.
        Running = 2,
        /// Succeeded.
        Success = 3,
        /// Failed.
        Fail = 4,
        /// Skipped.
        Skipped = 5,
        /// Failed, error ignored: a success.
        IgnoreError = 6,
        /// A confirm step waits for a person.
        WaitingUser = 7,
        /// Ended by hand.
        Terminated = 8,
        /// Abnormal.
        AbnormalState = 9,
        /// Stopping after a terminate.
        Stopping = 10,
        /// Stopped after a terminate.
        StopSuccess = 11,
        /// Stop failed (steps only).
        StopFail = 12,
        /// A person rejected the confirm step.
        ConfirmTerminated = 13,
        /// Abandoned.
        Abandoned = 14,
        /// Between rolling batches.
        RollingWaiting = 15,
    }
}

/// `operate_job_instance` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationCode {
    /// 1: terminate.
    Terminate,
    /// 2: start an instance created with `start_task=false`.
    Start,
}

impl OperationCode {
    fn code(self) -> i64 {
        match self {
            OperationCode::Terminate => 1,
            OperationCode::Start => 2,
        }
    }
}

/// `{bk_cloud_id, ip}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudIp {
    /// Cloud area id.
    pub bk_cloud_id: i64,
    /// IP.
    pub ip: String,
}

/// `server` of a v3 host variable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerV3 {
    /// Host ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id_list: Option<Vec<i64>>,
    /// Hosts by IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<CloudIp>>,
    /// Dynamic groups `{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_group_list: Option<Vec<Value>>,
    /// Topology nodes `{id, node_type}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topo_node_list: Option<Vec<Value>>,
}

/// A v3 global variable: by id or name, with a string value or a server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalVarV3 {
    /// Variable id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Variable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// String value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Host value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerV3>,
}

/// v3 `execute_job_plan` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteJobPlanRequest {
    /// `biz` or `biz_set`.
    pub bk_scope_type: ScopeType,
    /// Scope id (a string upstream).
    pub bk_scope_id: String,
    /// Plan id.
    pub job_plan_id: i64,
    /// Global variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub global_var_list: Vec<GlobalVarV3>,
    /// Called once when the instance finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// `false` creates the instance without running it (start it with operate code 2). The
    /// facade always sends `false`, so an unclear create leaves nothing running.
    #[serde(default = "yes")]
    pub start_task: bool,
}

fn yes() -> bool {
    true
}

/// A v2 global variable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GlobalVarV2 {
    /// Variable id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Variable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// String value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// CMDB custom query ids (IP variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_query_id: Option<Vec<String>>,
    /// Hosts (IP variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<CloudIp>>,
}

/// `file_source` of a v2 step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileSourceV2 {
    /// Absolute source paths.
    pub files: Vec<String>,
    /// Account.
    pub account: String,
    /// CMDB custom query ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_query_id: Option<Vec<String>>,
    /// Hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<CloudIp>>,
}

/// A v2 step override (the seed's `steps`; not supported by the bk-job V3 compatibility
/// backend, which ignores it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepV2 {
    /// Step id.
    pub step_id: i64,
    /// Script id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_id: Option<i64>,
    /// 1 shell, 2 bat, 3 perl, 4 python, 5 powershell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_type: Option<i64>,
    /// Script content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_content: Option<String>,
    /// Script parameters, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_param: Option<String>,
    /// Timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_timeout: Option<i64>,
    /// Account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// DB account id (SQL steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_account_id: Option<i64>,
    /// File target path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_target_path: Option<String>,
    /// File sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_source: Option<Vec<FileSourceV2>>,
    /// CMDB custom query ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_query_id: Option<Vec<String>>,
    /// Hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<CloudIp>>,
}

/// v2 `execute_job` body (the seed's call; legacy ESB only). It starts the job at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteJobRequest {
    /// Business id.
    pub bk_biz_id: i64,
    /// Job (plan) id.
    pub bk_job_id: i64,
    /// Step overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepV2>,
    /// Global variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub global_vars: Vec<GlobalVarV2>,
    /// Called once when the instance finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_callback_url: Option<String>,
}

/// Answer of both execute calls.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ExecuteResponse {
    /// The new instance.
    #[serde(deserialize_with = "de::int_from_value")]
    pub job_instance_id: i64,
    /// Its name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub job_instance_name: Option<String>,
    /// First step instance, when given.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub step_instance_id: Option<i64>,
}

/// A v3 job instance header.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobInstanceV3 {
    /// Instance id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub job_instance_id: Option<i64>,
    /// Name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub name: Option<String>,
    /// Status.
    pub status: RunStatus,
    /// Created (epoch ms upstream).
    #[serde(default, deserialize_with = "de::time")]
    pub create_time: Option<DateTime<Utc>>,
    /// Started.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// Ended.
    #[serde(default, deserialize_with = "de::time")]
    pub end_time: Option<DateTime<Utc>>,
}

/// A per-host result of a step.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct IpResult {
    /// Host id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_host_id: Option<i64>,
    /// IP.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub ip: Option<String>,
    /// Cloud area.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_cloud_id: Option<i64>,
    /// Host status (9 success, 5 waiting, 7 running, many failure codes).
    #[serde(default, deserialize_with = "de::opt_int")]
    pub status: Option<i64>,
    /// Exit code.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub exit_code: Option<i64>,
    /// Error code (0 done, 115 running, 126 terminated, -1 other).
    #[serde(default, deserialize_with = "de::opt_int")]
    pub error_code: Option<i64>,
}

/// How one host's status counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostOutcome {
    /// Done, ok.
    Succeeded,
    /// Failed.
    Failed,
    /// Running.
    Running,
    /// Not yet.
    Pending,
    /// Terminated on request.
    Ignored,
}

/// Classifies a per-host `status`: 9 and 3 succeeded, 7 running,
/// 5 waiting, 403 force-terminated (counted as ignored), everything else failed.
pub fn host_outcome(status: Option<i64>) -> HostOutcome {
    match status {
        Some(9 | 3) => HostOutcome::Succeeded,
        Some(7) => HostOutcome::Running,
        Some(5) | None => HostOutcome::Pending,
        Some(403) => HostOutcome::Ignored,
        Some(_) => HostOutcome::Failed,
    }
}

impl IpResult {
    /// Host address.
    pub fn target(&self) -> String {
        match (&self.ip, self.bk_cloud_id, self.bk_host_id) {
            (Some(ip), Some(c), _) if c != 0 => format!("{c}:{ip}"),
            (Some(ip), _, _) if !ip.is_empty() => ip.clone(),
            (_, _, Some(id)) => format!("host {id}"),
            _ => "unknown host".into(),
        }
    }
}

/// A v3 step instance.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StepV3 {
    /// Step instance id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub step_instance_id: Option<i64>,
    /// Name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub name: Option<String>,
    /// Status.
    pub status: RunStatus,
    /// Per-host results (only with `return_ip_result=true`).
    #[serde(default)]
    pub step_ip_result_list: Vec<IpResult>,
}

/// v3 `get_job_instance_status` answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobInstanceStatusV3 {
    /// Finished (3, 4, 5, 6, 8, 9, 11, 13, 14).
    #[serde(default)]
    pub finished: bool,
    /// The instance.
    pub job_instance: JobInstanceV3,
    /// Steps.
    #[serde(default)]
    pub step_instance_list: Vec<StepV3>,
}

/// A v2 host status.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct IpStatusV2 {
    /// IP.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub ip: Option<String>,
    /// Cloud area.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_cloud_id: Option<i64>,
    /// Host status (same codes as v3).
    #[serde(default, deserialize_with = "de::opt_int")]
    pub status: Option<i64>,
}

/// A v2 step instance.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StepInstanceV2 {
    /// Step instance id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub step_instance_id: Option<i64>,
    /// Name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub name: Option<String>,
    /// Status.
    pub status: RunStatus,
    /// Host results.
    #[serde(default)]
    pub step_ip_status: Vec<IpStatusV2>,
}

/// A v2 block of steps.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BlockV2 {
    /// Steps.
    #[serde(default)]
    pub step_instances: Vec<StepInstanceV2>,
}

/// v2 `get_job_instance_status` answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobInstanceStatusV2 {
    /// Finished.
    #[serde(default)]
    pub is_finished: bool,
    /// The instance.
    pub job_instance: JobInstanceV3,
    /// Steps in blocks.
    #[serde(default)]
    pub blocks: Vec<BlockV2>,
}

/// A row of `get_job_instance_list`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobInstanceListItem {
    /// Instance id (`id` upstream; `job_instance_id` accepted).
    #[serde(alias = "job_instance_id", deserialize_with = "de::int_from_value")]
    pub id: i64,
    /// Name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub name: Option<String>,
    /// Who ran it.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub operator: Option<String>,
    /// Plan id (`job_plan_id`, or `task_id` in the v3 DTO).
    #[serde(default, alias = "task_id", deserialize_with = "de::opt_int")]
    pub job_plan_id: Option<i64>,
    /// Scope type.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub bk_scope_type: Option<String>,
    /// Scope id.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub bk_scope_id: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: Option<RunStatus>,
    /// Created.
    #[serde(default, deserialize_with = "de::time")]
    pub create_time: Option<DateTime<Utc>>,
}

/// Filters of `get_job_instance_list` (the time window is required upstream).
#[derive(Clone, Debug, PartialEq)]
pub struct JobInstanceListQuery {
    /// Scope type.
    pub bk_scope_type: ScopeType,
    /// Scope id.
    pub bk_scope_id: String,
    /// Window start.
    pub since: DateTime<Utc>,
    /// Window end.
    pub until: DateTime<Utc>,
    /// Operator.
    pub operator: Option<String>,
    /// Plan id (`job_plan_id` filter).
    pub job_plan_id: Option<i64>,
    /// Offset.
    pub start: u32,
    /// Page size.
    pub length: u32,
}

/// A page of the instance list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobInstanceListPage {
    /// Instances on this page.
    pub list: Vec<JobInstanceListItem>,
    /// All matching instances, when upstream says.
    pub count: Option<u32>,
}

mod calls;
mod logs;
pub use calls::Job;
pub use logs::{
    FileLog, FileTaskLog, HostLog, IpLogV2, LogHosts, ScriptTaskLog, StepLogV2, StepLogsV3,
    StepResultV2,
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_v2_request_round_trips() -> Result<(), serde_json::Error> {
        let seed = json!({
            "bk_biz_id": 1, "bk_job_id": 100,
            "global_vars": [
                {"id": 436, "custom_query_id": ["3", "5", "7"],
                 "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}, {"bk_cloud_id": 0, "ip": "10.0.0.2"}]},
                {"id": 437, "value": "new String value"}
            ],
            "steps": [
                {"script_timeout": 1000, "script_param": "aGVsbG8=",
                 "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}], "custom_query_id": ["3"],
                 "script_id": 1, "script_content": "ZWNobyAkMQ==", "step_id": 200,
                 "account": "root", "script_type": 1},
                {"file_target_path": "/tmp/[FILESRCIP]/",
                 "file_source": [{"files": ["/tmp/REGEX:[a-z]*.txt"], "account": "root",
                                  "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.0.1"}], "custom_query_id": ["3"]}],
                 "step_id": 2, "account": "root"}
            ]
        });
        let req: ExecuteJobRequest = serde_json::from_value(seed.clone())?;
        assert_eq!(req.steps.len(), 2);
        assert_eq!(serde_json::to_value(&req)?, seed);
        Ok(())
    }

    #[test]
    fn v3_status_decodes() -> Result<(), serde_json::Error> {
        let s: JobInstanceStatusV3 = serde_json::from_value(json!({
            "finished": true,
            "job_instance": {"job_instance_id": 100, "bk_scope_type": "biz", "bk_scope_id": "1",
                              "name": "x", "status": 4, "create_time": 1697448247000_i64,
                              "start_time": 1697448247000_i64, "end_time": 1697448250000_i64},
            "step_instance_list": [{"step_instance_id": 1, "type": 1, "name": "s1", "status": 4,
                "step_ip_result_list": [
                    {"bk_host_id": 1, "ip": "10.0.0.1", "bk_cloud_id": 0, "status": 9, "exit_code": 0},
                    {"bk_host_id": 2, "ip": "10.0.0.2", "bk_cloud_id": 0, "status": 11, "exit_code": 1}
                ]}]
        }))?;
        assert_eq!(s.job_instance.status, RunStatus::Fail);
        let outcomes: Vec<_> = s.step_instance_list[0]
            .step_ip_result_list
            .iter()
            .map(|r| host_outcome(r.status))
            .collect();
        assert_eq!(outcomes, vec![HostOutcome::Succeeded, HostOutcome::Failed]);
        Ok(())
    }
}
