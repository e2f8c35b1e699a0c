//! NodeMan: agent, proxy and plugin jobs.
//!
//! Gateway `bk-nodeman`: `api/job/operate/`, `api/plugin/operate/`, `api/job/{id}/details/`,
//! `api/job/{id}/revoke/`, `api/job/job_list/`, `GET api/job/{id}/log/?instance_id=`. Legacy
//! ESB: `nodeman/api/job/operate/`, `nodeman/api/job/details/` and `nodeman/api/job/log/` (job
//! id in the body) are documented; the ESB plugin operate, revoke and list components are not
//! confirmed upstream and follow the same pattern.

use chrono::{DateTime, Utc};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::de::{self, string_enum};
use super::{BkClient, BkError, CallKind, CallSpec, Mode, System};

string_enum! {
    /// Job-level status (`JobStatusType`).
    pub enum JobStatus {
        /// No instance yet (still preparing).
        Pending = "PENDING",
        /// Some host runs.
        Running = "RUNNING",
        /// All hosts succeeded (or were ignored).
        Success = "SUCCESS",
        /// No host succeeded.
        Failed = "FAILED",
        /// Some succeeded, some failed.
        PartFailed = "PART_FAILED",
        /// Revoked; recomputed to FAILED/PART_FAILED by the next details call.
        Terminated = "TERMINATED",
        /// Removed.
        Removed = "REMOVED",
        /// Filtered out.
        Filtered = "FILTERED",
        /// Ignored.
        Ignored = "IGNORED",
    }
}

/// One search condition, `{key, value}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// `inner_ip`, `status`, `os_type`, ...
    pub key: String,
    /// A value or a list of values.
    pub value: Value,
}

/// `job/operate` body. Upstream rules: one of `bk_host_id` / `exclude_hosts` / `hosts`;
/// not `bk_host_id` together with `exclude_hosts`; no `INSTALL_*`/`REPLACE_*` types.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobOperateRequest {
    /// `RESTART_AGENT`, `UPGRADE_AGENT`, ...
    pub job_type: String,
    /// Business ids (a list upstream, not a scalar).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bk_biz_id: Vec<i64>,
    /// Conditions (honoured in "select all across pages" mode, i.e. with `exclude_hosts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Hosts to act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_host_id: Option<Vec<i64>>,
    /// Hosts to leave out of "all matching hosts".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_hosts: Option<Vec<i64>>,
    /// Hosts as objects (`{bk_host_id}` or cloud + ip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<Value>>,
    /// Install the latest plugins too (upstream default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_install_latest_plugins: Option<bool>,
}

/// Host selection shared by the validation of both operate bodies.
fn check_hosts(
    bk_host_id: &Option<Vec<i64>>,
    exclude_hosts: &Option<Vec<i64>>,
    hosts: &Option<Vec<Value>>,
) -> Result<(), BkError> {
    if bk_host_id.is_none() && exclude_hosts.is_none() && hosts.is_none() {
        return Err(BkError::InvalidRequest(
            "NodeMan needs bk_host_id, exclude_hosts or hosts".into(),
        ));
    }
    if bk_host_id.is_some() && exclude_hosts.is_some() {
        return Err(BkError::InvalidRequest(
            "NodeMan rejects bk_host_id together with exclude_hosts".into(),
        ));
    }
    Ok(())
}

/// Whether a job type belongs to the plugin operate call.
pub fn is_plugin_job_type(job_type: &str) -> bool {
    job_type.ends_with("_PLUGIN")
}

impl JobOperateRequest {
    /// Rejects what upstream would reject, before sending.
    pub fn validate(&self) -> Result<(), BkError> {
        let t = self.job_type.as_str();
        if t.is_empty() {
            return Err(BkError::InvalidRequest("NodeMan job_type is empty".into()));
        }
        if t.starts_with("INSTALL_") || t.starts_with("REPLACE_") || t.starts_with("MANUAL_INSTALL")
        {
            return Err(BkError::InvalidRequest(format!(
                "NodeMan job/operate does not take {t}; installs use /api/job/install/"
            )));
        }
        if is_plugin_job_type(t) {
            // job/operate takes them but builds an agent step for them.
            return Err(BkError::InvalidRequest(format!(
                "NodeMan plugin job type {t} goes through plugin operate with plugin_params"
            )));
        }
        check_hosts(&self.bk_host_id, &self.exclude_hosts, &self.hosts)
    }
}

/// `plugin_params` of a plugin operate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginParams {
    /// Plugin name.
    pub name: String,
    /// Version (latest when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Keep the current config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_config: Option<bool>,
    /// Do not restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_restart: Option<bool>,
}

/// `plugin/operate` body (one plugin).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginOperateRequest {
    /// `MAIN_START_PLUGIN`, `MAIN_STOP_PLUGIN`, ...
    pub job_type: String,
    /// The plugin.
    pub plugin_params: PluginParams,
    /// Business ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bk_biz_id: Vec<i64>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_host_id: Option<Vec<i64>>,
    /// Hosts left out of "all matching".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_hosts: Option<Vec<i64>>,
}

impl PluginOperateRequest {
    /// Rejects what upstream would reject, before sending.
    pub fn validate(&self) -> Result<(), BkError> {
        if !is_plugin_job_type(&self.job_type) {
            return Err(BkError::InvalidRequest(format!(
                "{} is not a plugin job type",
                self.job_type
            )));
        }
        if self.plugin_params.name.is_empty() {
            return Err(BkError::InvalidRequest(
                "plugin_params.name is empty".into(),
            ));
        }
        check_hosts(&self.bk_host_id, &self.exclude_hosts, &None)
    }
}

/// Answer of both operate calls.
#[derive(Clone, Debug, PartialEq)]
pub struct OperateResponse {
    /// The job id.
    pub job_id: i64,
    /// Link to the job in NodeMan.
    pub job_url: Option<String>,
}

fn operate_response(v: Value) -> Result<OperateResponse, String> {
    let url = v.get("job_url").and_then(Value::as_str).map(str::to_owned);
    if let Some(id) = v.get("job_id").and_then(de::value_to_i64) {
        return Ok(OperateResponse {
            job_id: id,
            job_url: url,
        });
    }
    // Plugin operate with several plugins answers `{plugin_name: job_id}`; we send one.
    if let Value::Object(m) = &v {
        let ids: Vec<i64> = m.values().filter_map(de::value_to_i64).collect();
        if let [id] = ids.as_slice() {
            return Ok(OperateResponse {
                job_id: *id,
                job_url: None,
            });
        }
    }
    Err(format!("no job_id in {v}"))
}

/// Job statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Statistics {
    /// Hosts.
    #[serde(default, deserialize_with = "de::count")]
    pub total_count: u32,
    /// Succeeded.
    #[serde(default, deserialize_with = "de::count")]
    pub success_count: u32,
    /// Failed.
    #[serde(default, deserialize_with = "de::count")]
    pub failed_count: u32,
    /// Pending.
    #[serde(default, deserialize_with = "de::count")]
    pub pending_count: u32,
    /// Running.
    #[serde(default, deserialize_with = "de::count")]
    pub running_count: u32,
    /// Ignored.
    #[serde(default, deserialize_with = "de::count")]
    pub ignored_count: u32,
}

/// One host of a job.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HostResult {
    /// Instance id (for logs).
    #[serde(default, deserialize_with = "de::opt_text")]
    pub instance_id: Option<String>,
    /// IP.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub ip: Option<String>,
    /// Inner IPv4.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub inner_ip: Option<String>,
    /// Inner IPv6.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub inner_ipv6: Option<String>,
    /// Host id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_host_id: Option<i64>,
    /// Cloud area.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_cloud_id: Option<i64>,
    /// Host status.
    pub status: JobStatus,
    /// The current or failed step, readable.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub status_display: Option<String>,
    /// Step name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub step: Option<String>,
}

impl HostResult {
    /// The host's address, as readable as available.
    pub fn target(&self) -> String {
        let ip = self
            .inner_ip
            .clone()
            .or_else(|| self.ip.clone())
            .or_else(|| self.inner_ipv6.clone());
        match (ip, self.bk_cloud_id, self.bk_host_id) {
            (Some(ip), Some(cloud), _) if cloud != 0 => format!("{cloud}:{ip}"),
            (Some(ip), _, _) => ip,
            (None, _, Some(id)) => format!("host {id}"),
            _ => self
                .instance_id
                .clone()
                .unwrap_or_else(|| "unknown host".into()),
        }
    }
}

/// `details` answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobDetails {
    /// Job id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub job_id: Option<i64>,
    /// Creator.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub created_by: Option<String>,
    /// Job type.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub job_type: Option<String>,
    /// Job status (recomputed by every details call).
    pub status: JobStatus,
    /// Host counters over the whole job.
    #[serde(default)]
    pub statistics: Statistics,
    /// Hosts matching the conditions, all pages.
    #[serde(default, deserialize_with = "de::count")]
    pub total: u32,
    /// Hosts on this page.
    #[serde(default)]
    pub list: Vec<HostResult>,
    /// Start.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// End.
    #[serde(default, deserialize_with = "de::time")]
    pub end_time: Option<DateTime<Utc>>,
}

/// Paging and filters of `details`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DetailsQuery {
    /// 1-based page.
    pub page: u32,
    /// Page size (`-1` for all).
    pub pagesize: i32,
    /// `{key: ip|instance_id|status|exclude_instance_ids, value}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One step of a host's log (`job/{id}/log/` answers a list of them, in order).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct LogStep {
    /// The step's name (`更新任务状态`, `执行升级脚本`, ...).
    #[serde(default, deserialize_with = "de::opt_text")]
    pub step: Option<String>,
    /// The step's status (same values as a host's).
    #[serde(default)]
    pub status: Option<JobStatus>,
    /// The step's log lines.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub log: Option<String>,
    /// Started.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// Finished.
    #[serde(default, deserialize_with = "de::time")]
    pub finish_time: Option<DateTime<Utc>>,
}

/// A job row of the job list.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobListItem {
    /// Job id.
    #[serde(deserialize_with = "de::int_from_value")]
    pub id: i64,
    /// Creator.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub created_by: Option<String>,
    /// Job type.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub job_type: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: Option<JobStatus>,
    /// Start (creation) time.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// Businesses the job covers.
    #[serde(default, deserialize_with = "de::opt_int_list")]
    pub bk_biz_scope: Option<Vec<i64>>,
}

/// Paging and filters of the job list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobListQuery {
    /// 1-based page.
    pub page: u32,
    /// Page size.
    pub pagesize: u32,
    /// Creators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Vec<String>>,
    /// Job types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_type: Option<Vec<String>>,
}

/// A page of the job list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobListPage {
    /// Jobs on this page.
    pub list: Vec<JobListItem>,
    /// All matching jobs, when upstream says.
    pub count: Option<u32>,
}

/// Calls to NodeMan. Get one with [`BkClient::nodeman`].
#[derive(Clone, Copy, Debug)]
pub struct Nodeman<'a> {
    client: &'a BkClient,
}

impl BkClient {
    /// NodeMan calls.
    pub fn nodeman(&self) -> Nodeman<'_> {
        Nodeman { client: self }
    }
}

fn body_of<T: Serialize>(v: &T) -> Result<Value, BkError> {
    serde_json::to_value(v).map_err(|e| BkError::InvalidRequest(format!("cannot encode: {e}")))
}

fn decode_operate(v: Value, endpoint: &'static str) -> Result<OperateResponse, BkError> {
    operate_response(v).map_err(|message| BkError::Decode {
        call: super::CallInfo {
            system: System::Nodeman,
            endpoint,
            kind: CallKind::Create,
        },
        status: 200,
        request_id: None,
        path: "data.job_id".into(),
        message,
    })
}

impl Nodeman<'_> {
    fn esb(&self) -> bool {
        self.client.mode(System::Nodeman) == Some(Mode::Esb)
    }

    /// Agent/proxy job (never retried).
    pub async fn job_operate(&self, req: &JobOperateRequest) -> Result<OperateResponse, BkError> {
        req.validate()?;
        let v: Value = self
            .client
            .call(
                CallSpec::new(
                    System::Nodeman,
                    "job_operate",
                    CallKind::Create,
                    body_of(req)?,
                )
                .gateway(Method::POST, "api/job/operate/")
                .esb(Method::POST, "nodeman/api/job/operate/"),
            )
            .await?;
        decode_operate(v, "job_operate")
    }

    /// Plugin job (never retried).
    pub async fn plugin_operate(
        &self,
        req: &PluginOperateRequest,
    ) -> Result<OperateResponse, BkError> {
        req.validate()?;
        let v: Value = self
            .client
            .call(
                CallSpec::new(
                    System::Nodeman,
                    "plugin_operate",
                    CallKind::Create,
                    body_of(req)?,
                )
                .gateway(Method::POST, "api/plugin/operate/")
                .esb(Method::POST, "nodeman/api/plugin/operate/"),
            )
            .await?;
        decode_operate(v, "plugin_operate")
    }

    /// Job status, statistics and one page of hosts.
    pub async fn details(&self, job_id: i64, query: &DetailsQuery) -> Result<JobDetails, BkError> {
        let mut body = body_of(query)?;
        if self.esb()
            && let Value::Object(m) = &mut body
        {
            m.insert("job_id".into(), job_id.into());
        }
        let path = format!("api/job/{job_id}/details/");
        self.client
            .call(
                CallSpec::new(System::Nodeman, "job_details", CallKind::Safe, body)
                    .gateway(Method::POST, &path)
                    .esb(Method::POST, "nodeman/api/job/details/"),
            )
            .await
    }

    /// Revokes the job (all instances when `instance_ids` is empty).
    pub async fn revoke(&self, job_id: i64, instance_ids: &[String]) -> Result<Value, BkError> {
        let mut body = json!({});
        if !instance_ids.is_empty() {
            body["instance_id_list"] = json!(instance_ids);
        }
        if self.esb() {
            body["job_id"] = json!(job_id);
        }
        let path = format!("api/job/{job_id}/revoke/");
        self.client
            .call(
                CallSpec::new(System::Nodeman, "job_revoke", CallKind::Operate, body)
                    .gateway(Method::POST, &path)
                    .esb(Method::POST, "nodeman/api/job/revoke/"),
            )
            .await
    }

    /// The log of one host (`instance_id` of the details list), step by step.
    pub async fn job_log(&self, job_id: i64, instance_id: &str) -> Result<Vec<LogStep>, BkError> {
        let mut params = json!({ "instance_id": instance_id });
        if self.esb() {
            params["job_id"] = json!(job_id);
        }
        let path = format!("api/job/{job_id}/log/");
        let raw: Value = self
            .client
            .call(
                CallSpec::new(System::Nodeman, "job_log", CallKind::Safe, params)
                    .gateway(Method::GET, &path)
                    .esb(Method::POST, "nodeman/api/job/log/"),
            )
            .await?;
        let (steps, _) = super::de::list_items(raw);
        Ok(self.client.decode_rows(steps))
    }

    /// One page of jobs.
    pub async fn job_list(&self, query: &JobListQuery) -> Result<JobListPage, BkError> {
        let raw: Value = self
            .client
            .call(
                CallSpec::new(System::Nodeman, "job_list", CallKind::Safe, body_of(query)?)
                    .gateway(Method::POST, "api/job/job_list/")
                    .esb(Method::POST, "nodeman/api/job/job_list/"),
            )
            .await?;
        let (items, count) = super::de::list_items(raw);
        let list = self.client.decode_rows(items);
        Ok(JobListPage { list, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_request_is_valid() -> Result<(), serde_json::Error> {
        let seed = json!({
            "job_type": "RESTART_AGENT",
            "conditions": [{"key": "inner_ip", "value": ["127.0.0.1"]}],
            "exclude_hosts": [1, 2, 3]
        });
        let req: JobOperateRequest = serde_json::from_value(seed.clone())?;
        assert!(req.validate().is_ok());
        assert_eq!(serde_json::to_value(&req)?, seed);
        Ok(())
    }

    #[test]
    fn validation() {
        let mut req = JobOperateRequest {
            job_type: "RESTART_AGENT".into(),
            ..Default::default()
        };
        assert!(req.validate().is_err(), "no hosts");
        req.bk_host_id = Some(vec![1]);
        req.exclude_hosts = Some(vec![2]);
        assert!(req.validate().is_err(), "both");
        req.exclude_hosts = None;
        assert!(req.validate().is_ok());
        req.job_type = "INSTALL_AGENT".into();
        assert!(req.validate().is_err());
        req.job_type = "MAIN_START_PLUGIN".into();
        assert!(req.validate().is_err());
    }

    #[test]
    fn operate_answers() {
        let r = operate_response(
            json!({"job_id": 1741, "job_url": "https://x/#/task-list/detail/1741"}),
        );
        assert_eq!(r.as_ref().map(|r| r.job_id), Ok(1741));
        let r = operate_response(json!({"bkmonitorbeat": 12}));
        assert_eq!(r.map(|r| r.job_id), Ok(12));
        assert!(operate_response(json!({})).is_err());
    }

    #[test]
    fn a_host_log_decodes_step_by_step() -> Result<(), serde_json::Error> {
        let steps: Vec<LogStep> = serde_json::from_value(json!([
            {"step": "更新任务状态", "status": "SUCCESS",
             "log": "[2021-09-16 15:06:04 INFO] 开始更新任务状态",
             "start_time": "2021-09-16 15:06:04", "finish_time": "2021-09-16 15:06:04"},
            {"step": "执行升级脚本", "status": "FAILED",
             "log": "[2021-09-16 15:06:39 INFO] 开始执行升级脚本\n[2021-09-16 15:06:45 ERROR] 脚本返回非零",
             "start_time": "2021-09-16 15:06:39", "finish_time": null},
            {"step": "查询Agent状态", "status": "PENDING", "log": null}
        ]))?;
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[1].status, Some(JobStatus::Failed));
        assert!(
            steps[1]
                .log
                .as_deref()
                .is_some_and(|l| l.ends_with("脚本返回非零"))
        );
        assert!(steps[0].start_time.is_some() && steps[1].finish_time.is_none());
        assert_eq!(steps[2].log, None);
        Ok(())
    }

    #[test]
    fn details_decode() -> Result<(), serde_json::Error> {
        let d: JobDetails = serde_json::from_value(json!({
            "job_id": 7, "status": "PART_FAILED", "total": 1,
            "statistics": {"total_count": 2, "success_count": 1, "failed_count": 1,
                            "pending_count": 0, "running_count": 0, "ignored_count": 0},
            "list": [{"instance_id": "host|instance|host|1", "inner_ip": "10.0.0.1", "bk_cloud_id": 0,
                      "status": "FAILED", "status_display": "安装失败"}],
            "start_time": "2024-10-22 10:00:00"
        }))?;
        assert_eq!(d.status, JobStatus::PartFailed);
        assert_eq!(d.list[0].target(), "10.0.0.1");
        Ok(())
    }
}
