//! `ExecuteJob`: a JOB execution plan. `jobApi: v3` (default) uses the current
//! `execute_job_plan`; `jobApi: v2` the seed's legacy `execute_job` (seed `003`).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, JobStatus};
use super::validation::{FieldErrors, FieldPath, check_range};

/// Launch a JOB (作业平台) execution plan and follow it to the end.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bkops.io",
    version = "v1alpha1",
    kind = "ExecuteJob",
    namespaced,
    status = "JobStatus",
    shortname = "xjob",
    category = "bkops",
    doc = "A JOB execution: execute_job_plan (v3, default) or the legacy execute_job (v2).",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".status.run.jobId"}"#,
    printcolumn = r#"{"name":"OK","type":"integer","jsonPath":".status.run.summary.succeeded"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.run.summary.failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#
)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.steps) || size(self.steps) == 0 || (has(self.jobApi) && self.jobApi == 'v2')").message("steps are supported only with jobApi: v2 (execute_job); execute_job_plan has no steps"),
    validation = Rule::new("(has(self.jobApi) && self.jobApi == 'v2') ? (has(self.bkBizId) && has(self.bkJobId)) : has(self.jobPlanId)").message("jobApi v2 needs bkBizId and bkJobId; v3 needs jobPlanId"),
    validation = Rule::new("(has(self.jobApi) && self.jobApi == 'v2') || has(self.bkScopeId) || has(self.bkBizId)").message("jobApi v3 needs bkScopeId (or the deprecated bkBizId)"),
    validation = Rule::new("(has(self.jobApi) && self.jobApi == 'v2') ? (!has(self.globalVarList) && !has(self.callbackUrl) && !has(self.jobPlanId)) : (!has(self.globalVars) && !has(self.bkCallbackUrl) && !has(self.bkJobId))").message("v2 fields (bkJobId, globalVars, bkCallbackUrl) and v3 fields (jobPlanId, globalVarList, callbackUrl) cannot be mixed")
)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteJobSpec {
    /// Fields shared by every job kind.
    #[serde(flatten)]
    pub common: CommonSpec,

    /// Which JOB API to call: `v3` (default) = `execute_job_plan`, created with
    /// `start_task=false` and then started, so an unclear create leaves nothing running;
    /// `v2` = the legacy ESB `execute_job` of the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_api: Option<JobApi>,

    /// Business id. JOB `bk_biz_id` (v2; on v3 the deprecated form of `bkScopeId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::api::common::MAX_BK_ID))]
    pub bk_biz_id: Option<i64>,

    /// v3: scope type, `biz` (default) or `biz_set`. JOB `bk_scope_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_scope_type: Option<ScopeType>,

    /// v3: scope id (the business or business-set id). JOB `bk_scope_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_scope_id: Option<String>,

    /// v3: the execution plan. JOB `job_plan_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::api::common::MAX_BK_ID))]
    pub job_plan_id: Option<i64>,

    /// v3: global variables. JOB `global_var_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_var_list: Option<Vec<GlobalVarV3>>,

    /// v3: URL JOB calls once when the job ends. JOB `callback_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,

    /// v2: the job template. JOB `bk_job_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::api::common::MAX_BK_ID))]
    pub bk_job_id: Option<i64>,

    /// v2: steps to run or customise (all when absent). JOB `steps`. Not supported by v3
    /// (`execute_job_plan` has no steps; bk-job V3's v2 shim ignores them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Step>>,

    /// v2: global variables. JOB `global_vars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_vars: Option<Vec<GlobalVarV2>>,

    /// v2: URL JOB calls once when the job ends. JOB `bk_callback_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_callback_url: Option<String>,
}

/// Which JOB API an `ExecuteJob` uses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobApi {
    /// Legacy ESB `execute_job`.
    V2,
    /// `execute_job_plan`.
    #[default]
    V3,
}

/// JOB `bk_scope_type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeType {
    /// A business.
    #[default]
    Biz,
    /// A business set.
    BizSet,
}

impl ScopeType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeType::Biz => "biz",
            ScopeType::BizSet => "biz_set",
        }
    }
}

/// A host by cloud area and IP. JOB `ip_list[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpEntry {
    /// Cloud area id. JOB `bk_cloud_id`.
    #[schemars(range(min = 0, max = crate::api::common::MAX_BK_ID))]
    pub bk_cloud_id: i64,
    /// IP address. JOB `ip`.
    #[schemars(length(min = 1))]
    pub ip: String,
}

/// A v2 global variable. JOB `global_vars[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalVarV2 {
    /// Variable id; when absent `name` identifies it. JOB `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = crate::api::common::MAX_BK_ID))]
    pub id: Option<i64>,
    /// Variable name. JOB `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Value of a string variable. JOB `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// CMDB custom query ids (IP variables). JOB `custom_query_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_query_id: Option<Vec<String>>,
    /// Hosts (IP variables). JOB `ip_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<IpEntry>>,
}

/// A v3 global variable. JOB `global_var_list[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalVarV3 {
    /// Variable id; when absent `name` identifies it. JOB `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = crate::api::common::MAX_BK_ID))]
    pub id: Option<i64>,
    /// Variable name. JOB `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Value of a string variable. JOB `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Hosts of a host variable. JOB `server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Server>,
}

/// Hosts of a v3 host variable. JOB `server`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    /// Host ids. JOB `host_id_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(inner(range(min = 0, max = crate::api::common::MAX_BK_ID)))]
    pub host_id_list: Option<Vec<i64>>,
    /// Hosts by cloud area and IP. JOB `ip_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<IpEntry>>,
    /// Dynamic groups. JOB `dynamic_group_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_group_list: Option<Vec<DynamicGroup>>,
    /// Topology nodes. JOB `topo_node_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topo_node_list: Option<Vec<TopoNode>>,
}

/// A CMDB dynamic group. JOB `dynamic_group_list[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct DynamicGroup {
    /// Group id. JOB `id`.
    pub id: String,
}

/// A CMDB topology node. JOB `topo_node_list[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopoNode {
    /// Node id. JOB `id`.
    #[schemars(range(min = 0, max = crate::api::common::MAX_BK_ID))]
    pub id: i64,
    /// Node type, e.g. `module`, `set`. JOB `node_type`.
    pub node_type: String,
}

/// A v2 step. JOB `steps[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[x_kube(
    cel,
    validation = Rule::new("!has(self.scriptContent) || size(self.scriptContent) == 0 || has(self.scriptId) || has(self.scriptType)").message("scriptType is required when scriptContent is set without scriptId")
)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Step id. JOB `step_id`.
    #[schemars(range(min = 0, max = crate::api::common::MAX_BK_ID))]
    pub step_id: i64,
    /// Script id, when changing the script. JOB `script_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = crate::api::common::MAX_BK_ID))]
    pub script_id: Option<i64>,
    /// Script type: 1 shell, 2 bat, 3 perl, 4 python, 5 powershell. JOB `script_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub script_type: Option<i32>,
    /// Script content, Base64. JOB `script_content` (`scriptId` wins when both are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_content: Option<String>,
    /// Script parameters, Base64. JOB `script_param`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_param: Option<String>,
    /// Script timeout in seconds, 60 to 86400 (JOB default 1000). JOB `script_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 86400))]
    pub script_timeout: Option<i32>,
    /// Execution account name or alias. JOB `account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// DB account for SQL steps. JOB `db_account_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = crate::api::common::MAX_BK_ID))]
    pub db_account_id: Option<i64>,
    /// File transfer target path. JOB `file_target_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_target_path: Option<String>,
    /// File transfer sources. JOB `file_source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_source: Option<Vec<FileSource>>,
    /// CMDB custom query ids of the target hosts. JOB `custom_query_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_query_id: Option<Vec<String>>,
    /// Target hosts. JOB `ip_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<IpEntry>>,
}

/// A file transfer source. JOB `file_source[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSource {
    /// Absolute source paths. JOB `files`.
    pub files: Vec<String>,
    /// Account on the source hosts. JOB `account`.
    pub account: String,
    /// CMDB custom query ids of the source hosts. JOB `custom_query_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_query_id: Option<Vec<String>>,
    /// Source hosts. JOB `ip_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<IpEntry>>,
}

impl ExecuteJobSpec {
    /// The JOB API in use (v3 unless `jobApi: v2`).
    pub fn api(&self) -> JobApi {
        self.job_api.unwrap_or_default()
    }

    /// Every problem with this spec, with its field path.
    pub fn validate(&self) -> FieldErrors {
        let mut errors = FieldErrors::default();
        self.common.validate_into(&mut errors);
        let spec = FieldPath::spec();
        match self.api() {
            JobApi::V2 => {
                if self.bk_biz_id.is_none() {
                    errors.push(spec.child("bkBizId"), "is required with jobApi: v2");
                }
                if self.bk_job_id.is_none() {
                    errors.push(spec.child("bkJobId"), "is required with jobApi: v2");
                }
                for field in [
                    ("jobPlanId", self.job_plan_id.is_some()),
                    ("globalVarList", self.global_var_list.is_some()),
                    ("callbackUrl", self.callback_url.is_some()),
                    ("bkScopeId", self.bk_scope_id.is_some()),
                    ("bkScopeType", self.bk_scope_type.is_some()),
                ]
                .iter()
                .filter(|(_, set)| *set)
                {
                    errors.push(
                        spec.child(field.0),
                        "is a v3 field; with jobApi: v2 use the v2 fields",
                    );
                }
            }
            JobApi::V3 => {
                if self.job_plan_id.is_none() {
                    errors.push(
                        spec.child("jobPlanId"),
                        "is required (jobApi v3, execute_job_plan)",
                    );
                }
                if self.bk_scope_id.is_none() && self.bk_biz_id.is_none() {
                    errors.push(
                        spec.child("bkScopeId"),
                        "is required (jobApi v3, execute_job_plan)",
                    );
                }
                if self.steps.as_ref().is_some_and(|s| !s.is_empty()) {
                    errors.push(
                        spec.child("steps"),
                        "steps are supported only with jobApi: v2 (execute_job); execute_job_plan has no steps",
                    );
                }
                for field in [
                    ("bkJobId", self.bk_job_id.is_some()),
                    ("globalVars", self.global_vars.is_some()),
                    ("bkCallbackUrl", self.bk_callback_url.is_some()),
                ]
                .iter()
                .filter(|(_, set)| *set)
                {
                    errors.push(
                        spec.child(field.0),
                        "is a v2 field; set jobApi: v2 or use the v3 fields",
                    );
                }
                if let Some(id) = &self.bk_scope_id
                    && id.trim().is_empty()
                {
                    errors.push(spec.child("bkScopeId"), "must not be empty");
                }
            }
        }
        for (i, step) in self.steps.iter().flatten().enumerate() {
            let path = spec.child("steps").index(i);
            if let Some(t) = step.script_type {
                check_range(&mut errors, path.child("scriptType"), t.into(), 1, 5);
            }
            if let Some(t) = step.script_timeout {
                check_range(
                    &mut errors,
                    path.child("scriptTimeout"),
                    t.into(),
                    60,
                    86400,
                );
            }
            // scriptId wins over scriptContent upstream, so the type only matters without an id.
            if step
                .script_content
                .as_deref()
                .is_some_and(|c| !c.is_empty())
                && step.script_id.is_none()
                && step.script_type.is_none()
            {
                errors.push(
                    path.child("scriptType"),
                    "is required when scriptContent is set without scriptId",
                );
            }
            for (j, src) in step.file_source.iter().flatten().enumerate() {
                if src.files.is_empty() {
                    errors.push(
                        path.child("fileSource").index(j).child("files"),
                        "must list at least one file",
                    );
                }
            }
        }
        for (i, var) in self.global_vars.iter().flatten().enumerate() {
            if var.id.is_none() && var.name.is_none() {
                errors.push(spec.child("globalVars").index(i), "needs an id or a name");
            }
        }
        for (i, var) in self.global_var_list.iter().flatten().enumerate() {
            if var.id.is_none() && var.name.is_none() {
                errors.push(
                    spec.child("globalVarList").index(i),
                    "needs an id or a name",
                );
            }
        }
        for (field, url) in [
            ("callbackUrl", &self.callback_url),
            ("bkCallbackUrl", &self.bk_callback_url),
        ] {
            if let Some(u) = url
                && url::Url::parse(u)
                    .map(|u| !matches!(u.scheme(), "http" | "https"))
                    .unwrap_or(true)
            {
                errors.push(
                    spec.child(field),
                    format!("must be an http(s) URL, got {u:?}"),
                );
            }
        }
        errors
    }
}
