//! JOB execution logs.
//!
//! v3 `batch_get_job_instance_ip_log` (one step, many hosts; gateway
//! `POST api/v3/batch_get_job_instance_ip_log`, ESB `jobv3/batch_get_job_instance_ip_log/`)
//! answers `script_task_logs` for script steps and `file_task_logs` for file steps. The v2
//! `get_job_instance_log` (legacy ESB `job` system only) answers every step of an instance, its
//! hosts grouped by host status.

use chrono::{DateTime, Utc};
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CloudIp, Job, RunStatus, ScopeType};
use crate::bk::de;
use crate::bk::{BkError, CallKind, CallSpec, System};

/// The hosts of one log call: upstream ignores `ip_list` when `host_id_list` is given, so a call
/// names hosts one way only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogHosts {
    /// By host id (`host_id_list`).
    Ids(Vec<i64>),
    /// By cloud area and IP (`ip_list`), for hosts known without an id.
    Ips(Vec<CloudIp>),
}

/// One host's output of a script step (`script_task_logs[]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ScriptTaskLog {
    /// Host id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_host_id: Option<i64>,
    /// Cloud area.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_cloud_id: Option<i64>,
    /// IP.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub ip: Option<String>,
    /// What the script printed.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub log_content: Option<String>,
}

/// One transfer of a file step (`file_logs[]`): an upload from a source host (mode 0) or a
/// download to a target host (mode 1).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct FileLog {
    /// 0 upload, 1 download.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub mode: Option<i64>,
    /// Source path.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub src_path: Option<String>,
    /// Target path (downloads).
    #[serde(default, deserialize_with = "de::opt_text")]
    pub dest_path: Option<String>,
    /// 1 waiting, 2 uploading, 3 downloading, 4 success, 5 failed.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub status: Option<i64>,
    /// The transfer's log.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub log_content: Option<String>,
}

/// One host's transfers of a file step (`file_task_logs[]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct FileTaskLog {
    /// Host id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_host_id: Option<i64>,
    /// Cloud area.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_cloud_id: Option<i64>,
    /// IP.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub ip: Option<String>,
    /// The transfers.
    #[serde(default, deserialize_with = "de::list")]
    pub file_logs: Vec<FileLog>,
}

/// `batch_get_job_instance_ip_log` answer: the logs of one step.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StepLogsV3 {
    /// 1 script, 2 file.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub log_type: Option<i64>,
    /// The step.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub step_instance_id: Option<i64>,
    /// Script step output per host.
    #[serde(default, deserialize_with = "de::list")]
    pub script_task_logs: Vec<ScriptTaskLog>,
    /// File step transfers per host.
    #[serde(default, deserialize_with = "de::list")]
    pub file_task_logs: Vec<FileTaskLog>,
}

/// One host's log text of a step, whatever the step's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLog {
    /// Host id.
    pub bk_host_id: Option<i64>,
    /// Cloud area.
    pub bk_cloud_id: Option<i64>,
    /// IP.
    pub ip: Option<String>,
    /// The text: the script output, or one line per file transfer.
    pub text: String,
}

impl FileLog {
    fn line(&self) -> String {
        let path = match (self.mode, &self.src_path, &self.dest_path) {
            (Some(1), src, Some(dest)) => {
                format!("download {} -> {dest}", src.as_deref().unwrap_or("?"))
            }
            (_, Some(src), _) => format!("upload {src}"),
            _ => "transfer".to_owned(),
        };
        format!(
            "{path}: {}",
            self.log_content.as_deref().unwrap_or_default()
        )
    }
}

impl StepLogsV3 {
    /// The logs per host, script and file steps alike.
    pub fn host_logs(&self) -> Vec<HostLog> {
        let scripts = self.script_task_logs.iter().map(|l| HostLog {
            bk_host_id: l.bk_host_id,
            bk_cloud_id: l.bk_cloud_id,
            ip: l.ip.clone(),
            text: l.log_content.clone().unwrap_or_default(),
        });
        let files = self.file_task_logs.iter().map(|l| HostLog {
            bk_host_id: l.bk_host_id,
            bk_cloud_id: l.bk_cloud_id,
            ip: l.ip.clone(),
            text: l
                .file_logs
                .iter()
                .map(FileLog::line)
                .collect::<Vec<_>>()
                .join("\n"),
        });
        scripts.chain(files).collect()
    }
}

/// A host's run of a step in the v2 log (`ip_logs[]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct IpLogV2 {
    /// IP.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub ip: Option<String>,
    /// Cloud area.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub bk_cloud_id: Option<i64>,
    /// Script exit code.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub exit_code: Option<i64>,
    /// Error code.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub error_code: Option<i64>,
    /// Output, HTML-escaped upstream (see [`IpLogV2::text`]).
    #[serde(default, deserialize_with = "de::opt_text")]
    pub log_content: Option<String>,
    /// Started.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// Ended.
    #[serde(default, deserialize_with = "de::time")]
    pub end_time: Option<DateTime<Utc>>,
}

impl IpLogV2 {
    /// The output as the script printed it: bk-job escapes it for HTML in this API.
    pub fn text(&self) -> String {
        unescape_html(self.log_content.as_deref().unwrap_or_default())
    }
}

/// Hosts of a v2 step that ended the same way (`step_results[]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StepResultV2 {
    /// The hosts' status (same codes as the v3 per-host status).
    #[serde(default, deserialize_with = "de::opt_int")]
    pub ip_status: Option<i64>,
    /// The tag a script set with `job_success` / `job_fail`.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub tag: Option<String>,
    /// The hosts.
    #[serde(default, deserialize_with = "de::list")]
    pub ip_logs: Vec<IpLogV2>,
}

/// One step of the v2 log.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StepLogV2 {
    /// Step instance id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub step_instance_id: Option<i64>,
    /// Name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub name: Option<String>,
    /// Step status.
    #[serde(default)]
    pub status: Option<RunStatus>,
    /// The hosts, by result.
    #[serde(default, deserialize_with = "de::list")]
    pub step_results: Vec<StepResultV2>,
}

/// Undoes the HTML escaping of `&`, `<`, `>`, `"` and `'`.
fn unescape_html(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

impl Job<'_> {
    /// v3 `batch_get_job_instance_ip_log`: the log of one step on `hosts`. Retried on transient
    /// errors.
    pub async fn batch_get_job_instance_ip_log(
        &self,
        scope_type: &ScopeType,
        scope_id: &str,
        job_instance_id: i64,
        step_instance_id: i64,
        hosts: &LogHosts,
    ) -> Result<StepLogsV3, BkError> {
        let mut body = json!({
            "bk_scope_type": scope_type,
            "bk_scope_id": scope_id,
            "job_instance_id": job_instance_id,
            "step_instance_id": step_instance_id,
        });
        match hosts {
            LogHosts::Ids(ids) => body["host_id_list"] = json!(ids),
            LogHosts::Ips(ips) => body["ip_list"] = json!(ips),
        }
        self.client
            .call(
                CallSpec::new(
                    System::Job,
                    "batch_get_job_instance_ip_log",
                    CallKind::Safe,
                    body,
                )
                .gateway(Method::POST, "api/v3/batch_get_job_instance_ip_log")
                .esb(Method::POST, "jobv3/batch_get_job_instance_ip_log/"),
            )
            .await
    }

    /// v2 `get_job_instance_log` (legacy ESB `job` system only): every step with its hosts'
    /// output.
    pub async fn get_job_instance_log_v2(
        &self,
        biz_id: i64,
        job_instance_id: i64,
    ) -> Result<Vec<StepLogV2>, BkError> {
        let body = json!({ "bk_biz_id": biz_id, "job_instance_id": job_instance_id });
        let raw: Value = self
            .client
            .call(
                CallSpec::new(System::Job, "get_job_instance_log.v2", CallKind::Safe, body)
                    .esb(Method::POST, "job/get_job_instance_log/"),
            )
            .await?;
        // A step this client cannot read is left out rather than failing the whole log.
        let rows = match raw {
            Value::Array(rows) => rows,
            _ => Vec::new(),
        };
        Ok(self.client.decode_rows(rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_and_file_logs_decode_as_upstream_documents_them() -> Result<(), serde_json::Error> {
        let script: StepLogsV3 = serde_json::from_value(json!({
            "log_type": 1, "job_instance_id": 100, "step_instance_id": 200,
            "script_task_logs": [
                {"bk_host_id": 101, "ip": "127.0.0.1", "bk_cloud_id": 0,
                 "log_content": "[2018-03-15 14:39:30][PID:56875] job_start\n"},
                {"bk_host_id": 102, "ip": "127.0.0.2", "bk_cloud_id": 0, "log_content": null}
            ]
        }))?;
        let logs = script.host_logs();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].bk_host_id, Some(101));
        assert_eq!(logs[0].text, "[2018-03-15 14:39:30][PID:56875] job_start\n");
        assert_eq!(logs[1].text, "");

        let file: StepLogsV3 = serde_json::from_value(json!({
            "log_type": 2, "job_instance_id": 100, "step_instance_id": 200,
            "script_task_logs": null,
            "file_task_logs": [{
                "bk_host_id": 101, "ip": "127.0.0.1", "bk_cloud_id": 0,
                "file_logs": [{
                    "mode": 1,
                    "src_ip": {"bk_host_id": 102, "bk_cloud_id": 0, "ip": "127.0.0.2"},
                    "src_path": "/data/1.log",
                    "dest_ip": {"bk_host_id": 101, "bk_cloud_id": 0, "ip": "127.0.0.1"},
                    "dest_path": "/tmp/1.log", "status": 4,
                    "log_content": "FileName: /tmp/1.log State: dest agent success download file",
                    "size": "1.0 Bytes", "speed": "0 KB/s", "process": "100%"
                }]
            }]
        }))?;
        let logs = file.host_logs();
        assert_eq!(
            logs[0].text,
            "download /data/1.log -> /tmp/1.log: FileName: /tmp/1.log State: dest agent success download file"
        );
        Ok(())
    }

    #[test]
    fn the_v2_log_decodes_by_step_and_host_result() -> Result<(), serde_json::Error> {
        let steps: Vec<StepLogV2> = serde_json::from_value(json!([{
            "is_finished": true, "step_instance_id": 90000, "name": "step 1", "status": 4,
            "step_results": [
                {"ip_status": 9, "tag": "", "ip_logs": [
                    {"start_time": "2024-01-01 10:00:00", "end_time": "2024-01-01 10:00:01",
                     "total_time": 1.0, "execute_count": 0, "error_code": 0, "exit_code": 0,
                     "log_content": "ok &amp; done", "bk_cloud_id": 0, "ip": "10.0.0.1"}]},
                {"ip_status": 104, "tag": "", "ip_logs": [
                    {"error_code": 0, "exit_code": 1, "log_content": "if [ 1 &lt; 2 ]",
                     "bk_cloud_id": 0, "ip": "10.0.0.2"}]}
            ]
        }]))?;
        assert_eq!(steps[0].status, Some(RunStatus::Fail));
        let failed = &steps[0].step_results[1];
        assert_eq!(failed.ip_status, Some(104));
        assert_eq!(failed.ip_logs[0].exit_code, Some(1));
        assert_eq!(failed.ip_logs[0].text(), "if [ 1 < 2 ]");
        assert_eq!(steps[0].step_results[0].ip_logs[0].text(), "ok & done");
        Ok(())
    }
}
