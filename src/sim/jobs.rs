//! The jobs the simulator holds, one type per system: what each system's handlers create and
//! read, and what the world keeps.

use serde_json::Value;

use super::model::Run;

/// A GSEKit job.
#[derive(Clone, Debug)]
pub(crate) struct GseJob {
    pub id: u64,
    pub biz: u64,
    pub job_object: String,
    pub job_action: String,
    pub scope: Value,
    pub expression_scope: Value,
    pub created_by: String,
    pub app_code: String,
    pub processes: Vec<u64>,
    pub run: Run,
}

/// A BKFlow task.
#[derive(Clone, Debug)]
pub(crate) struct FlowTask {
    pub id: u64,
    pub space_id: u64,
    pub template_id: Option<u64>,
    pub name: String,
    pub creator: String,
    pub description: String,
    pub scope_type: Value,
    pub scope_value: Value,
    pub instance_id: String,
    pub executor: String,
    pub revoked: bool,
    /// (node id, node name), in execution order.
    pub nodes: Vec<(String, String)>,
    pub run: Run,
}

/// A NodeMan job.
#[derive(Clone, Debug)]
pub(crate) struct NmJob {
    pub id: u64,
    pub job_type: String,
    pub bk_biz_id: Vec<u64>,
    pub hosts: Vec<u64>,
    pub created_by: String,
    pub plugin: Option<String>,
    /// A revoke happened and no `details` call has reported `TERMINATED` yet.
    pub terminated_unreported: bool,
    pub run: Run,
}

/// A step of an instance.
#[derive(Clone, Debug)]
pub(crate) struct StepDef {
    pub step_instance_id: u64,
    pub step_id: u64,
    pub name: String,
    /// 1 script, 2 file, 3 manual confirm, 4 SQL.
    pub kind: u8,
}

/// A JOB instance.
#[derive(Clone, Debug)]
pub(crate) struct JobInst {
    pub id: u64,
    pub scope_type: String,
    pub scope_id: String,
    pub plan_id: u64,
    pub name: String,
    pub operator: String,
    pub hosts: Vec<(u64, String)>,
    pub steps: Vec<StepDef>,
    /// Terminate requested (`operate_job_instance` code 1).
    pub terminated: bool,
    /// A status call has already reported STOPPING (10) after the terminate.
    pub stopping_reported: bool,
    pub run: Run,
}
