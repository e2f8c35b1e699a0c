//! Spec fields every job kind shares and the status they all report.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validation::{FieldErrors, FieldPath};

/// Annotation asking for an imperative rerun (not in git); its value is echoed in
/// `status.lastHandledRerunAt` once the rerun has started.
pub const RERUN_ANNOTATION: &str = "bkops.io/rerun-requested-at";
/// Annotation by which a person resolves an `Unknown` submission: adopt this BlueKing job id.
pub const ADOPT_ANNOTATION: &str = "bkops.io/adopt-job-id";
/// Annotation by which a person resolves an `Unknown` submission: confirm that nothing was
/// submitted, so the run may be submitted again. Its value must equal the run key it speaks for.
pub const CONFIRM_NOT_SUBMITTED_ANNOTATION: &str = "bkops.io/confirm-not-submitted";
/// Finalizer that lets the operator cancel a job (deletionPolicy: Cancel) before the object goes.
pub const FINALIZER: &str = "bkops.io/cleanup";
/// Field manager for every write the operator makes.
pub const FIELD_MANAGER: &str = "bkops";
/// How many failed targets status keeps; status must stay small.
pub const MAX_FAILED_TARGETS: usize = 20;
/// How many finished runs `status.history` keeps.
pub const MAX_HISTORY: usize = 5;
/// Longest `activeDeadlineSeconds`: 366 days. A bound keeps the deadline's time arithmetic in
/// range, and no BlueKing job is followed for longer.
pub const MAX_ACTIVE_DEADLINE_SECONDS: i64 = 366 * 24 * 3600;
/// Largest id bkops accepts for a BlueKing object (business, host, plan, template, ...): the
/// largest integer a JSON number carries exactly, so every tool on the way reads the same id.
pub const MAX_BK_ID: i64 = (1 << 53) - 1;

/// Fields shared by every job kind. Flattened into each kind's spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    /// The `BkConnection` (in this namespace) that says how to reach BlueKing. When absent, the
    /// operator's default connection is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<ConnectionRef>,

    /// While true no new run starts; a run already in flight is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Any string. Changing it asks for a new run of the same spec (a rerun from git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub rerun_token: Option<String>,

    /// Cancel the running job where the system can (phase `Cancelled`). GSEKit has no cancel call;
    /// there the job is left to finish and an Event says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,

    /// Overall deadline of a run in seconds (at most 31622400, 366 days), counted from
    /// submission. Past it the job is cancelled where possible and the run fails with reason
    /// `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_ACTIVE_DEADLINE_SECONDS))]
    pub active_deadline_seconds: Option<i64>,

    /// Resubmit a job that *failed* in BlueKing. A submission whose outcome is unknown is never
    /// resubmitted automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,

    /// What deleting this resource does to a running job: `Orphan` (default) leaves it running,
    /// `Cancel` cancels it first (where the system can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Follow this existing BlueKing job (job id / task id / job instance id) instead of
    /// submitting a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub adopt_job_id: Option<String>,

    /// Jobs in this namespace that must have succeeded, with no run pending, before a new run
    /// of this one starts (`generate`, then `release`, then `restart`). A run already started is
    /// never affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub depends_on: Vec<Dependency>,

    /// What a brand-new object does when a run record (`BkRun`) with its fingerprint exists
    /// (the same kind, namespace, name, job-defining spec and `rerunToken` ran before, e.g. the
    /// object was deleted and re-created): `Adopt` (default) takes that run's job and result
    /// instead of running again, `Run` runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recreate_policy: Option<RecreatePolicy>,
}

/// A job this one waits for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct Dependency {
    /// Its kind.
    pub kind: DependencyKind,
    /// Its name, in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kinds a job can depend on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DependencyKind {
    /// A GSEKit job.
    ProcessJob,
    /// A BKFlow task.
    Taskflow,
    /// A NodeMan job.
    AgentJob,
    /// A JOB execution.
    ExecuteJob,
}

impl DependencyKind {
    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            DependencyKind::ProcessJob,
            DependencyKind::Taskflow,
            DependencyKind::AgentJob,
            DependencyKind::ExecuteJob,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyKind::ProcessJob => "ProcessJob",
            DependencyKind::Taskflow => "Taskflow",
            DependencyKind::AgentJob => "AgentJob",
            DependencyKind::ExecuteJob => "ExecuteJob",
        }
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// What a brand-new object does when an earlier run with its fingerprint is on record.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RecreatePolicy {
    /// Take the newest such run as this object's (follow it if it is still in flight).
    #[default]
    Adopt,
    /// Ignore run records: a new object runs.
    Run,
}

/// A reference to a `BkConnection` in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ConnectionRef {
    /// Name of the `BkConnection`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Must be omitted or equal to this object's namespace: a job may only use a connection
    /// in its own namespace, and any other value is refused (Stalled, no BlueKing call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Resubmission of failed jobs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// How many times a failed job is resubmitted (0 = never).
    #[serde(default)]
    #[schemars(range(min = 0, max = 20))]
    pub limit: u32,
    /// Seconds to wait before each resubmission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub backoff_seconds: Option<u32>,
}

/// What deleting the resource does to a running job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the job running in BlueKing.
    #[default]
    Orphan,
    /// Cancel the job where the system can, then let the resource go.
    Cancel,
}

impl CommonSpec {
    /// Problems with the shared fields, paths rooted at `spec`.
    pub fn validate_into(&self, errors: &mut FieldErrors) {
        let spec = FieldPath::spec();
        if let Some(conn) = &self.connection_ref
            && conn.name.trim().is_empty()
        {
            errors.push(
                spec.child("connectionRef").child("name"),
                "must not be empty",
            );
        }
        if let Some(secs) = self.active_deadline_seconds
            && !(1..=MAX_ACTIVE_DEADLINE_SECONDS).contains(&secs)
        {
            errors.push(
                spec.child("activeDeadlineSeconds"),
                format!(
                    "must be between 1 and {MAX_ACTIVE_DEADLINE_SECONDS} (366 days), got {secs}"
                ),
            );
        }
        if let Some(retry) = &self.retry {
            if retry.limit > 20 {
                errors.push(
                    spec.child("retry").child("limit"),
                    format!("must be at most 20, got {}", retry.limit),
                );
            }
            if let Some(b) = retry.backoff_seconds
                && b > 86400
            {
                errors.push(
                    spec.child("retry").child("backoffSeconds"),
                    format!("must be at most 86400, got {b}"),
                );
            }
        }
        if let Some(id) = &self.adopt_job_id
            && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()))
        {
            errors.push(
                spec.child("adoptJobId"),
                format!("must be a BlueKing job id (digits only), got {id:?}"),
            );
        }
        if let Some(token) = &self.rerun_token
            && token.len() > 253
        {
            errors.push(spec.child("rerunToken"), "must be at most 253 characters");
        }
        if self.depends_on.len() > 32 {
            errors.push(
                spec.child("dependsOn"),
                format!("must list at most 32 jobs, got {}", self.depends_on.len()),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, d) in self.depends_on.iter().enumerate() {
            let at = spec.child("dependsOn").index(i).child("name");
            if d.name.trim().is_empty() {
                errors.push(at, "must not be empty");
            } else if !seen.insert(d) {
                errors.push(at, format!("{d} is listed twice"));
            }
        }
    }
}

/// The phase of a job resource.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, no run started yet.
    #[default]
    Pending,
    /// `spec.suspend` holds back a new run.
    Suspended,
    /// The intent is recorded; the create call is being made or its outcome is being resolved.
    Submitting,
    /// BlueKing runs the job.
    Running,
    /// The job waits for a person to act in BlueKing (approval, confirmation, paused task).
    WaitingForUser,
    /// The job finished successfully.
    Succeeded,
    /// The job failed, was rejected, or the spec is invalid.
    Failed,
    /// The job was cancelled.
    Cancelled,
    /// Whether the job was submitted is not known; a person must resolve it (see the README).
    Unknown,
}

impl Phase {
    /// True for phases after which no BlueKing job of this run can still change.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }

    /// The phase name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Suspended => "Suspended",
            Phase::Submitting => "Submitting",
            Phase::Running => "Running",
            Phase::WaitingForUser => "WaitingForUser",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Cancelled => "Cancelled",
            Phase::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kstatus-style condition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled` or `Succeeded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason, stable enough for alerts.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// The generation this condition speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Per-target counts of a run (hosts, processes or flow nodes, as the system reports them).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TargetSummary {
    /// All targets.
    pub total: u32,
    /// Targets that succeeded.
    pub succeeded: u32,
    /// Targets that failed.
    pub failed: u32,
    /// Targets still running.
    pub running: u32,
    /// Targets not started yet.
    pub pending: u32,
    /// Targets that needed no action or were skipped.
    pub ignored: u32,
}

/// One failed target with the system's reason.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct FailedTarget {
    /// The target: an IP, a process, or a flow node.
    pub target: String,
    /// Why it failed, as BlueKing says.
    pub reason: String,
}

/// The current (or last) run: one submission to BlueKing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Our key for this run: uid prefix, generation and attempt (e.g. `1f3a9c2e-g3-a1`). Put
    /// where a system takes it (the BKFlow task name, GSEKit `extra_data`), to find a job whose
    /// create got no clear answer.
    pub key: String,
    /// The spec generation this run submitted.
    pub generation: i64,
    /// 1 for the first run of a generation; grows with reruns and retries.
    pub attempt: u32,
    /// Hash of the job-defining spec this run submitted (the spec without `suspend`, `cancel`,
    /// `activeDeadlineSeconds`, `retry` and `deletionPolicy`, which steer runs but do not define
    /// the job). A different hash makes a new run due.
    pub spec_hash: String,
    /// The `rerunToken` this run answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_token: Option<String>,
    /// The rerun annotation value this run answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_requested_at: Option<String>,
    /// How many failed jobs of this generation were resubmitted so far.
    #[serde(default)]
    pub retries: u32,
    /// Phase of this run.
    pub phase: Phase,
    /// When the intent to submit was recorded (before the create call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_at: Option<DateTime<Utc>>,
    /// When this run's first create that could not be made (BlueKing unreachable, rate limited,
    /// over quota) was tried; it is tried again every 10 s, and reported `Stalled` after a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_since: Option<DateTime<Utc>>,
    /// The BlueKing job id (GSEKit job id, BKFlow task id, NodeMan job id, JOB job instance id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// A link to the job in BlueKing, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_url: Option<String>,
    /// True when the job was adopted (spec.adoptJobId, the adopt annotation, or found by search).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// For two-phase systems (BKFlow, JOB v3): the start call was acknowledged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
    /// The raw upstream state (e.g. `RUNNING`, `PART_FAILED`, `7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_state: Option<String>,
    /// When the create call returned an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    /// When BlueKing started the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
    /// When a cancel call was made for this run (made once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Per-target counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<TargetSummary>,
    /// Failed targets, at most 20, failures first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_targets: Vec<FailedTarget>,
    /// A CamelCase reason for the run's end or its current wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A finished run, kept in `status.history`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run key.
    pub key: String,
    /// The BlueKing job id, if one was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// How the run ended.
    pub phase: Phase,
    /// When the run was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<DateTime<Utc>>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<DateTime<Utc>>,
}

/// Status shared by every job kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The spec generation this status speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the resource is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// kstatus conditions: `Ready`, `Reconciling`, `Stalled`, `Succeeded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The current or last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunStatus>,
    /// The last finished runs, newest first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RunRecord>,
    /// The value of the `bkops.io/rerun-requested-at` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_rerun_at: Option<String>,
    /// What is going on, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
