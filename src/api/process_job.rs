//! `ProcessJob`: a GSEKit `create_job` (seed `000`, upstream `POST /api/{bk_biz_id}/job/`).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, JobStatus};
use super::validation::{FieldErrors, FieldPath, check_range};

/// Restart, reload, generate or release configuration for a set of processes with GSEKit
/// (BlueKing process configuration manager, `create_job`).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bkops.io",
    version = "v1alpha1",
    kind = "ProcessJob",
    namespaced,
    status = "JobStatus",
    shortname = "pjob",
    category = "bkops",
    doc = "A GSEKit job (create_job): an operation on processes or their config files.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".status.run.jobId"}"#,
    printcolumn = r#"{"name":"OK","type":"integer","jsonPath":".status.run.summary.succeeded"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.run.summary.failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#
)]
#[x_kube(
    cel,
    validation = Rule::new("has(self.scope) || has(self.expressionScope)").message("one of scope or expressionScope is required (scope wins when both are set)")
)]
#[serde(rename_all = "camelCase")]
pub struct ProcessJobSpec {
    /// Fields shared by every job kind.
    #[serde(flatten)]
    pub common: CommonSpec,

    /// Business id. GSEKit `bk_biz_id` (in the gateway path `/api/{bk_biz_id}/job/`, in the body
    /// on the legacy ESB path).
    #[schemars(range(min = 1, max = crate::api::common::MAX_BK_ID))]
    pub bk_biz_id: i64,

    /// What to operate on. GSEKit `job_object`: `configfile` or `process`.
    pub job_object: JobObject,

    /// The operation. GSEKit `job_action`. `diff` is accepted by GSEKit though its API document
    /// omits it.
    pub job_action: JobAction,

    /// The processes to act on, by id lists. GSEKit `scope`; wins over `expressionScope` when
    /// both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ProcessScope>,

    /// The processes to act on, by name expressions. GSEKit `expression_scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression_scope: Option<ExpressionScope>,

    /// Extra options passed through as given. GSEKit `extra_data`, e.g.
    /// `{"config_template_ids": [1, 2]}` for configfile jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::free_form_object")]
    pub extra_data: Option<serde_json::Value>,
}

/// GSEKit `job_object`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobObject {
    /// Config files.
    Configfile,
    /// Processes.
    Process,
}

/// GSEKit `job_action` (upstream `Job.JobAction`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    /// Generate config files.
    Generate,
    /// Release (push) config files.
    Release,
    /// Compare generated and live config files.
    Diff,
    /// Start processes.
    Start,
    /// Stop processes.
    Stop,
    /// Restart processes.
    Restart,
    /// Reload processes.
    Reload,
    /// Force-stop processes.
    ForceStop,
    /// Put processes under GSE management.
    SetAuto,
    /// Take processes out of GSE management.
    UnsetAuto,
}

impl JobAction {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Generate => "generate",
            JobAction::Release => "release",
            JobAction::Diff => "diff",
            JobAction::Start => "start",
            JobAction::Stop => "stop",
            JobAction::Restart => "restart",
            JobAction::Reload => "reload",
            JobAction::ForceStop => "force_stop",
            JobAction::SetAuto => "set_auto",
            JobAction::UnsetAuto => "unset_auto",
        }
    }
}

impl JobObject {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobObject::Configfile => "configfile",
            JobObject::Process => "process",
        }
    }
}

/// GSEKit `bk_set_env`, a string choice upstream. Quote it in YAML: `bkSetEnv: "3"`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SetEnv {
    /// All environments.
    #[serde(rename = "0")]
    All,
    /// Testing.
    #[serde(rename = "1")]
    Testing,
    /// Experience.
    #[serde(rename = "2")]
    Experience,
    /// Formal (production).
    #[serde(rename = "3")]
    Formal,
}

impl SetEnv {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            SetEnv::All => "0",
            SetEnv::Testing => "1",
            SetEnv::Experience => "2",
            SetEnv::Formal => "3",
        }
    }
}

/// GSEKit `scope`: processes by id lists. Empty lists mean "all".
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessScope {
    /// Set environment. GSEKit `scope.bk_set_env`: "0" all, "1" testing, "2" experience,
    /// "3" formal.
    pub bk_set_env: SetEnv,
    /// Set ids. GSEKit `scope.bk_set_ids`.
    #[serde(default)]
    #[schemars(inner(range(min = 0, max = crate::api::common::MAX_BK_ID)))]
    pub bk_set_ids: Vec<i64>,
    /// Module ids. GSEKit `scope.bk_module_ids`.
    #[serde(default)]
    #[schemars(inner(range(min = 0, max = crate::api::common::MAX_BK_ID)))]
    pub bk_module_ids: Vec<i64>,
    /// Service instance ids. GSEKit `scope.bk_service_ids`.
    #[serde(default)]
    #[schemars(inner(range(min = 0, max = crate::api::common::MAX_BK_ID)))]
    pub bk_service_ids: Vec<i64>,
    /// Process aliases. GSEKit `scope.bk_process_names`.
    #[serde(default)]
    pub bk_process_names: Vec<String>,
    /// Process ids. GSEKit `scope.bk_process_ids`.
    #[serde(default)]
    #[schemars(inner(range(min = 0, max = crate::api::common::MAX_BK_ID)))]
    pub bk_process_ids: Vec<i64>,
}

/// GSEKit `expression_scope`: processes by name expressions; an empty or absent expression
/// means `*` (all).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpressionScope {
    /// Set environment. GSEKit `expression_scope.bk_set_env` (a string choice upstream; the ESB
    /// doc says int).
    pub bk_set_env: SetEnv,
    /// Set name expression, e.g. `[PaaS, CMDB]`. GSEKit `expression_scope.bk_set_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_set_name: Option<String>,
    /// Module name expression. GSEKit `expression_scope.bk_module_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_module_name: Option<String>,
    /// Service instance name expression. GSEKit `expression_scope.service_instance_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_instance_name: Option<String>,
    /// Process alias expression. GSEKit `expression_scope.bk_process_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_process_name: Option<String>,
    /// Process id expression, e.g. `4[6, 8, 9]`. GSEKit `expression_scope.bk_process_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_process_id: Option<String>,
}

impl ProcessJobSpec {
    /// Every problem with this spec, with its field path. The CEL rules say the same to
    /// clusters that enforce them.
    pub fn validate(&self) -> FieldErrors {
        let mut errors = FieldErrors::default();
        self.common.validate_into(&mut errors);
        let spec = FieldPath::spec();
        check_range(
            &mut errors,
            spec.child("bkBizId"),
            self.bk_biz_id,
            1,
            i64::MAX,
        );
        if self.scope.is_none() && self.expression_scope.is_none() {
            errors.push(
                spec,
                "one of scope or expressionScope is required (GSEKit fails without either)",
            );
        }
        if let Some(extra) = &self.extra_data
            && !extra.is_object()
        {
            errors.push(FieldPath::spec().child("extraData"), "must be an object");
        }
        errors
    }
}
