//! `BkRun`: the record of one run, kept after its job object is gone (`docs/gitops.md`).
//!
//! The operator writes one per run that reached BlueKing (a job id is known) or whose create's
//! outcome is unknown, and updates it when the run ends. A brand-new object whose fingerprint
//! matches a record adopts the newest one instead of running the job again.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Phase, TargetSummary};

/// Label holding a record's fingerprint, so the guard finds records with one list call.
pub const FINGERPRINT_LABEL: &str = "bkops.io/fingerprint";
/// Label holding the kind of the job object a record belongs to.
pub const JOB_KIND_LABEL: &str = "bkops.io/job-kind";
/// Label holding the name of the job object a record belongs to.
pub const JOB_NAME_LABEL: &str = "bkops.io/job-name";

/// One run of a job object: what ran, where, and how it ended. Written by the operator only.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "bkops.io",
    version = "v1alpha1",
    kind = "BkRun",
    namespaced,
    shortname = "bkrun",
    doc = "The record of one run of a bkops job: kept after the job object is deleted, so that a re-created object with the same spec does not run again.",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.jobKind"}"#,
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".spec.jobName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".spec.phase"}"#,
    printcolumn = r#"{"name":"Job ID","type":"string","jsonPath":".spec.jobId"}"#,
    printcolumn = r#"{"name":"Started","type":"date","jsonPath":".spec.submittedAt"}"#,
    printcolumn = r#"{"name":"Finished","type":"date","jsonPath":".spec.completionTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BkRunSpec {
    /// The kind of the job object (`ProcessJob`, `Taskflow`, `AgentJob`, `ExecuteJob`).
    pub job_kind: String,
    /// The job object's name.
    pub job_name: String,
    /// The uid of the job object that made the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_uid: Option<String>,
    /// The run key (`status.run.key` of the job object).
    pub run_key: String,
    /// Hash of kind, namespace, name, job-defining spec and `rerunToken`: what git says, not
    /// the uid. A new object with the same fingerprint adopts this run.
    pub fingerprint: String,
    /// The object's generation the run submitted.
    pub generation: i64,
    /// 1 for the first run of a generation; grows with reruns and retries.
    #[serde(default)]
    pub attempt: u32,
    /// Hash of the job-defining spec.
    pub spec_hash: String,
    /// The `rerunToken` the run answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_token: Option<String>,
    /// The BlueKing system (`gsekit`, `bkflow`, `nodeman`, `job`).
    pub system: String,
    /// The `BkConnection` the job named (empty: the operator's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The BlueKing job id; absent while the create's outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// A link to the job in BlueKing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_url: Option<String>,
    /// For two-phase systems: whether the start call was acknowledged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
    /// The run's phase when the record was last written.
    pub phase: Phase,
    /// Why, as in the object's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the intent to submit was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_at: Option<DateTime<Utc>>,
    /// When the create returned the job id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    /// When BlueKing started the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    /// Per-target counts at the end (or when last written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<TargetSummary>,
    /// The GitOps revision the object came from, where it carries one: `argocd:<tracking id>`,
    /// `argocd-app:<instance>` or `flux:<kind>/<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops_revision: Option<String>,
}

impl BkRunSpec {
    /// Whether the run's create made a job whose id is unknown, or may have: nobody can tell
    /// from the record whether it ran.
    pub fn outcome_unknown(&self) -> bool {
        self.job_id.is_none()
    }

    /// Whether the run is over, so retention may delete its record.
    pub fn finished(&self) -> bool {
        self.job_id.is_some() && self.phase.is_final()
    }
}
