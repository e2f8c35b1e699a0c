//! The types of the facade's calls: create requests, job references, phases, progress,
//! cancel outcomes, and the queries and answers of a search.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bk::gsekit::{self, JobAction, JobObject};
use crate::bk::job::{self, ScopeType};
use crate::bk::{BkError, System, bkflow, nodeman};

// Named by the doc links only.
#[cfg(doc)]
use crate::bk::BkClient;

/// Most failed targets reported per progress; status must stay small.
pub const FAILED_TARGETS_CAP: usize = 20;

/// A create call, with the typed body of its system.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateRequest {
    /// GSEKit `create_job`.
    Gsekit(gsekit::CreateJobRequest),
    /// BKFlow `create_task` from a template.
    BkflowTemplate {
        /// The space (the calling app must own it).
        space_id: i64,
        /// The body.
        body: bkflow::CreateTaskRequest,
    },
    /// BKFlow `create_task_without_template` from a pipeline tree.
    BkflowTree {
        /// The space.
        space_id: i64,
        /// The body.
        body: bkflow::CreateTaskWithoutTemplateRequest,
    },
    /// NodeMan `job/operate` (agent and proxy job types).
    NodemanJob(nodeman::JobOperateRequest),
    /// NodeMan `plugin/operate` (`MAIN_*_PLUGIN` and other plugin job types).
    NodemanPlugin(nodeman::PluginOperateRequest),
    /// JOB v2 `execute_job` (legacy ESB only); runs at once.
    JobV2(job::ExecuteJobRequest),
    /// JOB v3 `execute_job_plan`; always sent with `start_task=false`, started by
    /// [`BkClient::start`].
    JobV3(job::ExecuteJobPlanRequest),
}

impl CreateRequest {
    /// The checks the system's client makes before sending this body (the rules upstream would
    /// refuse it by, where bkops knows them). Nothing is sent; run it before recording an
    /// intent, so a body bkops itself refuses is never reported as BlueKing's refusal.
    pub fn validate(&self) -> Result<(), BkError> {
        match self {
            CreateRequest::Gsekit(r) => r.validate(),
            CreateRequest::NodemanJob(r) => r.validate(),
            CreateRequest::NodemanPlugin(r) => r.validate(),
            CreateRequest::BkflowTemplate { .. }
            | CreateRequest::BkflowTree { .. }
            | CreateRequest::JobV2(_)
            | CreateRequest::JobV3(_) => Ok(()),
        }
    }

    /// The system the request goes to.
    pub fn system(&self) -> System {
        match self {
            CreateRequest::Gsekit(_) => System::Gsekit,
            CreateRequest::BkflowTemplate { .. } | CreateRequest::BkflowTree { .. } => {
                System::Bkflow
            }
            CreateRequest::NodemanJob(_) | CreateRequest::NodemanPlugin(_) => System::Nodeman,
            CreateRequest::JobV2(_) | CreateRequest::JobV3(_) => System::Job,
        }
    }
}

/// Why a connection cannot make a create call at all, known before anything is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// The connection configures no endpoint for the system.
    NoEndpoint(System),
    /// JOB v2 `execute_job` exists only on the legacy ESB, and the connection reaches JOB
    /// through the API gateway.
    JobV2OverGateway,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::NoEndpoint(system) => write!(f, "no endpoint for {system}"),
            Unsupported::JobV2OverGateway => f.write_str(
                "JOB v2 execute_job exists only on the legacy ESB, and JOB is reached through the API gateway",
            ),
        }
    }
}

/// Identifies a job in its system, with everything the poll, cancel and start calls need.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobRef {
    /// A GSEKit job.
    Gsekit {
        /// Business id.
        biz_id: i64,
        /// Job id.
        job_id: i64,
    },
    /// A BKFlow task.
    Bkflow {
        /// Space id.
        space_id: i64,
        /// Task id.
        task_id: i64,
    },
    /// A NodeMan job.
    Nodeman {
        /// Job id.
        job_id: i64,
    },
    /// A JOB instance created through v2 `execute_job`.
    JobV2 {
        /// Business id.
        biz_id: i64,
        /// Instance id.
        job_instance_id: i64,
    },
    /// A JOB instance created through v3 `execute_job_plan`.
    JobV3 {
        /// `biz` / `biz_set`.
        scope_type: ScopeType,
        /// Scope id.
        scope_id: String,
        /// Instance id.
        job_instance_id: i64,
    },
}

impl JobRef {
    /// The upstream id as text (`status.run.jobId`).
    pub fn id(&self) -> String {
        match self {
            JobRef::Gsekit { job_id, .. } | JobRef::Nodeman { job_id } => job_id.to_string(),
            JobRef::Bkflow { task_id, .. } => task_id.to_string(),
            JobRef::JobV2 {
                job_instance_id, ..
            }
            | JobRef::JobV3 {
                job_instance_id, ..
            } => job_instance_id.to_string(),
        }
    }

    /// The system the job lives in.
    pub fn system(&self) -> System {
        match self {
            JobRef::Gsekit { .. } => System::Gsekit,
            JobRef::Bkflow { .. } => System::Bkflow,
            JobRef::Nodeman { .. } => System::Nodeman,
            JobRef::JobV2 { .. } | JobRef::JobV3 { .. } => System::Job,
        }
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} job {}", self.system(), self.id())
    }
}

/// A successful create.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    /// The new job.
    pub job: JobRef,
    /// A link to it, when the system gives one (NodeMan).
    pub job_url: Option<String>,
    /// Whether [`BkClient::start`] must be called (BKFlow, JOB v3).
    pub needs_start: bool,
}

/// The one phase all four systems map to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobPhase {
    /// Created, not started (BKFlow CREATED, JOB v3 status 1 before it is started).
    NotStarted,
    /// Running or queued.
    Running,
    /// A person must act in BlueKing (pause, confirm, approval, manual rolling batch).
    WaitingForUser,
    /// Done, successfully.
    Succeeded,
    /// Done, failed (partly failed included).
    Failed,
    /// Revoked or terminated.
    Cancelled,
}

impl JobPhase {
    /// Whether the job is over.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobPhase::Succeeded | JobPhase::Failed | JobPhase::Cancelled
        )
    }
}

/// Target counts (processes, hosts or flow nodes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// All targets.
    pub total: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed.
    pub failed: u32,
    /// Running.
    pub running: u32,
    /// Not yet started.
    pub pending: u32,
    /// Nothing to do, skipped, or terminated on request.
    pub ignored: u32,
}

/// A target that failed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedTarget {
    /// IP, process or node name.
    pub target: String,
    /// Upstream's reason.
    pub reason: String,
}

/// Where a job stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// The shared phase.
    pub phase: JobPhase,
    /// The raw upstream state (`RUNNING`, `PART_FAILED`, `4`, ...).
    pub upstream_state: String,
    /// Target counts.
    pub summary: Summary,
    /// Failed targets, at most [`FAILED_TARGETS_CAP`].
    pub failed_targets: Vec<FailedTarget>,
    /// A readable explanation, mostly for failures.
    pub message: Option<String>,
    /// Started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished at.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Progress {
    pub(super) fn state_only(phase: JobPhase, upstream_state: String) -> Self {
        Progress {
            phase,
            upstream_state,
            summary: Summary::default(),
            failed_targets: Vec::new(),
            message: None,
            started_at: None,
            finished_at: None,
        }
    }
}

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Upstream accepted the revoke/terminate; poll to see it end.
    Requested,
    /// The system has no cancel (GSEKit).
    NotSupported,
    /// The job had ended already.
    AlreadyFinished,
}

/// System-specific filters of a search.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchTarget {
    /// GSEKit jobs of a business.
    Gsekit {
        /// Business id.
        biz_id: i64,
        /// Job object.
        job_object: Option<JobObject>,
        /// Job action.
        job_action: Option<JobAction>,
        /// The request's `scope` (JSON), compared with a job row's: GSEKit stores it as given.
        scope: Option<Value>,
        /// The request's `expression_scope` (JSON), compared when the request has no `scope`.
        expression_scope: Option<Value>,
    },
    /// BKFlow tasks of a space.
    Bkflow {
        /// Space id.
        space_id: i64,
        /// Template id (template-based tasks).
        template_id: Option<i64>,
    },
    /// NodeMan jobs.
    Nodeman {
        /// Job type.
        job_type: Option<String>,
        /// Businesses of the request (select-all mode), compared with a job's `bk_biz_scope`.
        bk_biz_id: Option<Vec<i64>>,
        /// Hosts of the request, compared with the hosts a job's details list.
        bk_host_id: Option<Vec<i64>>,
    },
    /// JOB instances of a scope.
    Job {
        /// `biz` / `biz_set`.
        scope_type: ScopeType,
        /// Scope id (the business id for v2).
        scope_id: String,
        /// Plan id (`bk_job_id` for v2).
        job_plan_id: Option<i64>,
        /// Whether the submission was v2 (decides the [`JobRef`] of candidates).
        v2: bool,
    },
}

/// A search for a job whose create had an unknown outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    /// Our run key, as placed in the BKFlow task name/description or GSEKit
    /// `extra_data.bkops_run_key`.
    pub key: String,
    /// The creator/operator the create was sent as, when known.
    pub creator: Option<String>,
    /// Window start (a little before the intent was written).
    pub since: DateTime<Utc>,
    /// Window end.
    pub until: DateTime<Utc>,
    /// System-specific filters.
    pub target: SearchTarget,
}

/// A job that may be the one a create made.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The job.
    pub job: JobRef,
    /// When it was created.
    pub created_at: Option<DateTime<Utc>>,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// Whether the run key was found on the job (BKFlow name/description, GSEKit
    /// `extra_data`). Where a system keeps the key, a job without it is somebody else's.
    pub key_matched: bool,
    /// Whether the job's content (type, business, hosts, plan) matches the request, as far as
    /// the list and detail calls show it; `None` when they did not tell.
    pub content_matched: Option<bool>,
}

/// What a search found.
#[derive(Clone, Debug, PartialEq)]
pub struct Searched {
    /// The jobs of the window that passed the filters, run key matches first, newest first.
    pub candidates: Vec<Candidate>,
    /// Whether every job of the window was seen; `false` when the search stopped at its page
    /// limit, so a job may exist that it did not see.
    pub complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ref_ids_and_serde() -> Result<(), serde_json::Error> {
        let r = JobRef::JobV3 {
            scope_type: ScopeType::Biz,
            scope_id: "2".into(),
            job_instance_id: 10000,
        };
        assert_eq!(r.id(), "10000");
        assert_eq!(r.system(), System::Job);
        let v = serde_json::to_value(&r)?;
        assert_eq!(v["kind"], "job_v3");
        assert_eq!(serde_json::from_value::<JobRef>(v)?, r);
        Ok(())
    }
}
