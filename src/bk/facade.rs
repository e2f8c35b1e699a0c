//! The system-neutral face of the client, used by the run lifecycle: submit once, start,
//! follow progress, cancel, and search for a job whose submission outcome is unknown.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::bkflow::{self, Operation, StateNode, TaskState};
use super::error::ErrorClass;
use super::gsekit::{self, JobAction, JobObject};
use super::job::{self, HostOutcome, OperationCode, RunStatus, ScopeType};
use super::nodeman;
use super::{BkClient, BkError, System};

/// Most failed targets reported per progress; status must stay small.
pub const FAILED_TARGETS_CAP: usize = 20;
/// Most BKFlow node details fetched per progress (one call each).
const BKFLOW_NODE_DETAILS_CAP: usize = 5;
/// Page size and page limit of the list calls behind [`BkClient::search`].
const SEARCH_PAGE: u32 = 50;
const SEARCH_MAX_PAGES: u32 = 5;

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
    fn state_only(phase: JobPhase, upstream_state: String) -> Self {
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

/// Most NodeMan jobs whose hosts one search reads (one details call each).
const SEARCH_MAX_DETAILS: usize = 10;

// ---------------------------------------------------------------------------------------------
// State mapping (tables in docs/blueking-api.md)
// ---------------------------------------------------------------------------------------------

/// GSEKit `job_info.status`. Unknown states keep the job followed (Running).
pub fn gsekit_phase(s: &gsekit::JobStatus) -> JobPhase {
    use gsekit::JobStatus as S;
    match s {
        S::Pending | S::Running | S::Unknown(_) => JobPhase::Running,
        S::Succeeded => JobPhase::Succeeded,
        S::Failed => JobPhase::Failed,
    }
}

/// BKFlow root state. FAILED is reported as Failed although a person may still retry or skip
/// the node in BKFlow; EXPIRED (runtime data purged) as Failed.
pub fn bkflow_phase(s: &TaskState) -> JobPhase {
    match s {
        TaskState::Created => JobPhase::NotStarted,
        TaskState::Ready | TaskState::Running | TaskState::Blocked | TaskState::Unknown(_) => {
            JobPhase::Running
        }
        TaskState::Suspended | TaskState::NodeSuspended => JobPhase::WaitingForUser,
        TaskState::Finished => JobPhase::Succeeded,
        TaskState::Failed | TaskState::Expired => JobPhase::Failed,
        TaskState::Revoked => JobPhase::Cancelled,
    }
}

/// NodeMan job status. TERMINATED is transient (the next details call recomputes it to
/// FAILED/PART_FAILED), so it stays Running; PART_FAILED is Failed.
pub fn nodeman_phase(s: &nodeman::JobStatus) -> JobPhase {
    use nodeman::JobStatus as S;
    match s {
        S::Pending | S::Running | S::Terminated | S::Unknown(_) => JobPhase::Running,
        S::Success | S::Ignored | S::Filtered => JobPhase::Succeeded,
        S::Failed | S::PartFailed | S::Removed => JobPhase::Failed,
    }
}

/// JOB instance status.
///
/// - 1 BLANK: `NotStarted` when the instance has no start time (a v3 instance created with
///   `start_task=false` and not started yet), else `Running` (started, queued). v2 instances
///   always run at once, so the caller passes `started = true` for them.
/// - 2 RUNNING, 10 STOPPING → Running; 3 SUCCESS, 6 IGNORE_ERROR → Succeeded;
/// - 7 WAITING_USER, 15 ROLLING_WAITING → WaitingForUser;
/// - 4 FAIL, 9 ABNORMAL, 14 ABANDONED → Failed; 5 SKIPPED → **Failed**: at job level it means a
///   person skipped a failed step, so the asked-for work did not all happen; we never report
///   it as success;
/// - 8 TERMINATED, 11 STOP_SUCCESS, 13 CONFIRM_TERMINATED → Cancelled;
/// - 12 STOP_FAIL (step-only) and unknown codes → Running (keep following).
pub fn job_phase(s: RunStatus, started: bool) -> JobPhase {
    match s {
        RunStatus::Blank if started => JobPhase::Running,
        RunStatus::Blank => JobPhase::NotStarted,
        RunStatus::Running | RunStatus::Stopping | RunStatus::StopFail | RunStatus::Other(_) => {
            JobPhase::Running
        }
        RunStatus::Success | RunStatus::IgnoreError => JobPhase::Succeeded,
        RunStatus::WaitingUser | RunStatus::RollingWaiting => JobPhase::WaitingForUser,
        RunStatus::Fail | RunStatus::Skipped | RunStatus::AbnormalState | RunStatus::Abandoned => {
            JobPhase::Failed
        }
        RunStatus::Terminated | RunStatus::StopSuccess | RunStatus::ConfirmTerminated => {
            JobPhase::Cancelled
        }
    }
}

fn job_status_name(s: RunStatus) -> String {
    let name = match s {
        RunStatus::Blank => "BLANK",
        RunStatus::Running => "RUNNING",
        RunStatus::Success => "SUCCESS",
        RunStatus::Fail => "FAIL",
        RunStatus::Skipped => "SKIPPED",
        RunStatus::IgnoreError => "IGNORE_ERROR",
        RunStatus::WaitingUser => "WAITING_USER",
        RunStatus::Terminated => "TERMINATED",
        RunStatus::AbnormalState => "ABNORMAL_STATE",
        RunStatus::Stopping => "STOPPING",
        RunStatus::StopSuccess => "STOP_SUCCESS",
        RunStatus::StopFail => "STOP_FAIL",
        RunStatus::ConfirmTerminated => "CONFIRM_TERMINATED",
        RunStatus::Abandoned => "ABANDONED",
        RunStatus::RollingWaiting => "ROLLING_WAITING",
        RunStatus::Other(n) => return n.to_string(),
    };
    format!("{} ({name})", s.code())
}

/// Readable text for JOB per-host status codes (best effort; the code is always given).
fn job_host_status_text(status: Option<i64>) -> String {
    let label = match status {
        Some(1) => Some("agent error"),
        Some(2) => Some("host not found"),
        Some(11) => Some("failed"),
        Some(13) => Some("task timed out"),
        Some(101) => Some("script failed"),
        Some(102) => Some("script timed out"),
        Some(103) => Some("script terminated"),
        Some(104) => Some("script exited non-zero"),
        Some(202) => Some("file transfer failed"),
        Some(310) => Some("agent abnormal"),
        _ => None,
    };
    match (status, label) {
        (Some(s), Some(l)) => format!("host status {s} ({l})"),
        (Some(s), None) => format!("host status {s}"),
        (None, _) => "host status unknown".into(),
    }
}

/// Host tally across steps: a host counts once, with its worst outcome.
fn tally_hosts<'a>(
    hosts: impl Iterator<Item = (String, Option<&'a str>, HostOutcome, String)>,
) -> (Summary, Vec<FailedTarget>) {
    fn rank(o: HostOutcome) -> u8 {
        match o {
            HostOutcome::Failed => 4,
            HostOutcome::Running => 3,
            HostOutcome::Pending => 2,
            HostOutcome::Succeeded => 1,
            HostOutcome::Ignored => 0,
        }
    }
    let mut worst: BTreeMap<String, (HostOutcome, String)> = BTreeMap::new();
    for (target, step, outcome, reason) in hosts {
        let reason = match step {
            Some(s) => format!("step '{s}': {reason}"),
            None => reason,
        };
        match worst.get(&target) {
            Some((o, _)) if rank(*o) >= rank(outcome) => {}
            _ => {
                worst.insert(target, (outcome, reason));
            }
        }
    }
    let mut summary = Summary::default();
    let mut failed = Vec::new();
    for (target, (outcome, reason)) in worst {
        summary.total += 1;
        match outcome {
            HostOutcome::Succeeded => summary.succeeded += 1,
            HostOutcome::Running => summary.running += 1,
            HostOutcome::Pending => summary.pending += 1,
            HostOutcome::Ignored => summary.ignored += 1,
            HostOutcome::Failed => {
                summary.failed += 1;
                if failed.len() < FAILED_TARGETS_CAP {
                    failed.push(FailedTarget { target, reason });
                }
            }
        }
    }
    (summary, failed)
}

/// Counts BKFlow leaf nodes by state.
fn bkflow_summary(root: &StateNode) -> Summary {
    let mut s = Summary::default();
    for (_, node) in root.leaves() {
        s.total += 1;
        let ignored = node.skip == Some(true) || node.error_ignored == Some(true);
        match &node.state {
            _ if ignored => s.ignored += 1,
            TaskState::Finished => s.succeeded += 1,
            TaskState::Failed => s.failed += 1,
            TaskState::Created => s.pending += 1,
            TaskState::Revoked | TaskState::Expired => s.ignored += 1,
            _ => s.running += 1,
        }
    }
    s
}

/// A failure of a secondary call (failure details) is passed on only when a repeat could
/// fix it; otherwise the progress is reported without the details.
fn secondary(e: BkError, what: &str) -> Result<Option<String>, BkError> {
    if e.retryable() {
        return Err(e);
    }
    warn!(error = %e, "could not fetch {what}");
    Ok(Some(format!("{what} unavailable: {e}")))
}

fn in_window(t: Option<DateTime<Utc>>, q: &SearchQuery) -> bool {
    // A row without a time cannot be excluded: let the caller see it.
    t.is_none_or(|t| t >= q.since && t <= q.until)
}

fn creator_matches(c: Option<&str>, q: &SearchQuery) -> bool {
    match (&q.creator, c) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    }
}

fn value_mentions(v: &Value, key: &str) -> bool {
    match v {
        Value::String(s) => s.contains(key),
        Value::Array(a) => a.iter().any(|x| value_mentions(x, key)),
        Value::Object(m) => m.values().any(|x| value_mentions(x, key)),
        _ => false,
    }
}

/// A create's rate-limit token, taken before the run's intent is written so that the create
/// follows the intent at once (a create is made only right after its intent landed). Spent by
/// [`BkClient::submit_with`]; dropped unused (the intent was refused), it is lost, as a call is.
#[must_use = "a ticket is spent by submit_with"]
#[derive(Debug)]
pub struct CreateTicket {
    waited: std::time::Duration,
}

impl BkClient {
    /// Waits for the connection's rate limit for a create (ahead of waiting reads, as creates
    /// are) and holds the token for [`BkClient::submit_with`].
    pub async fn create_ticket(&self) -> CreateTicket {
        CreateTicket {
            waited: self.inner.transport.take_create_token().await,
        }
    }

    /// [`BkClient::submit`] with the token of `ticket`: the create is sent without waiting for
    /// the rate again (only for a slot among the calls in flight, or a 429's pause), and not at
    /// all ([`BkError::NotSent`]) if those waits last longer than `send_within`.
    pub async fn submit_with(
        &self,
        ticket: CreateTicket,
        req: &CreateRequest,
        send_within: std::time::Duration,
    ) -> Result<Submitted, BkError> {
        self.inner
            .transport
            .with_ticket(ticket.waited, send_within, self.submit(req))
            .await
    }

    /// Creates the job, once: never retried, whatever the error. On error, use
    /// [`BkError::class`]: `Ambiguous` means the job may exist (search, never resubmit).
    pub async fn submit(&self, req: &CreateRequest) -> Result<Submitted, BkError> {
        let result = self.submit_inner(req).await;
        match &result {
            Ok(s) => info!(system = %req.system(), job_id = %s.job.id(), "BlueKing job created"),
            Err(e) => {
                warn!(system = %req.system(), error = %e, class = ?e.class(), "BlueKing create failed")
            }
        }
        result
    }

    /// Why this client cannot make `req`, if it cannot: a question of its configuration,
    /// answered without a call.
    pub fn unsupported(&self, req: &CreateRequest) -> Option<Unsupported> {
        let system = req.system();
        if self.mode(system).is_none() {
            return Some(Unsupported::NoEndpoint(system));
        }
        match req {
            CreateRequest::JobV2(_) if !self.job().supports_v2() => {
                Some(Unsupported::JobV2OverGateway)
            }
            _ => None,
        }
    }

    async fn submit_inner(&self, req: &CreateRequest) -> Result<Submitted, BkError> {
        if let Some(u) = self.unsupported(req) {
            return Err(BkError::Config(format!("cannot send this create: {u}")));
        }
        Ok(match req {
            CreateRequest::Gsekit(r) => {
                let resp = self.gsekit().create_job(r).await?;
                Submitted {
                    job: JobRef::Gsekit {
                        biz_id: r.bk_biz_id,
                        job_id: resp.job_id,
                    },
                    job_url: None,
                    needs_start: false,
                }
            }
            CreateRequest::BkflowTemplate { space_id, body } => {
                let t = self.bkflow().create_task(*space_id, body).await?;
                Submitted {
                    job: JobRef::Bkflow {
                        space_id: t.space_id.unwrap_or(*space_id),
                        task_id: t.id,
                    },
                    job_url: None,
                    needs_start: t.is_started != Some(true),
                }
            }
            CreateRequest::BkflowTree { space_id, body } => {
                let t = self
                    .bkflow()
                    .create_task_without_template(*space_id, body)
                    .await?;
                Submitted {
                    job: JobRef::Bkflow {
                        space_id: t.space_id.unwrap_or(*space_id),
                        task_id: t.id,
                    },
                    job_url: None,
                    needs_start: t.is_started != Some(true),
                }
            }
            CreateRequest::NodemanJob(r) => {
                let resp = self.nodeman().job_operate(r).await?;
                Submitted {
                    job: JobRef::Nodeman {
                        job_id: resp.job_id,
                    },
                    job_url: resp.job_url,
                    needs_start: false,
                }
            }
            CreateRequest::NodemanPlugin(r) => {
                let resp = self.nodeman().plugin_operate(r).await?;
                Submitted {
                    job: JobRef::Nodeman {
                        job_id: resp.job_id,
                    },
                    job_url: resp.job_url,
                    needs_start: false,
                }
            }
            CreateRequest::JobV2(r) => {
                let resp = self.job().execute_job(r).await?;
                Submitted {
                    job: JobRef::JobV2 {
                        biz_id: r.bk_biz_id,
                        job_instance_id: resp.job_instance_id,
                    },
                    job_url: None,
                    needs_start: false,
                }
            }
            CreateRequest::JobV3(r) => {
                let mut body = r.clone();
                body.start_task = false;
                let resp = self.job().execute_job_plan(&body).await?;
                Submitted {
                    job: JobRef::JobV3 {
                        scope_type: r.bk_scope_type.clone(),
                        scope_id: r.bk_scope_id.clone(),
                        job_instance_id: resp.job_instance_id,
                    },
                    job_url: None,
                    needs_start: true,
                }
            }
        })
    }

    /// Starts a job created without starting (BKFlow, JOB v3); a no-op for the others. Safe
    /// to repeat: "already started" counts as success, and a refused start is checked
    /// against the job's state before it is reported.
    pub async fn start(&self, job: &JobRef) -> Result<(), BkError> {
        match job {
            JobRef::Bkflow { space_id, task_id } => {
                let operator = self.inner.username.as_deref();
                match self
                    .bkflow()
                    .operate_task(*space_id, *task_id, &Operation::Start, operator)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if bkflow::is_already_started(&e) => {
                        debug!(%job, "BKFlow task was already started");
                        Ok(())
                    }
                    Err(e) if e.class() == ErrorClass::Rejected => {
                        match self.bkflow().get_task_states(*space_id, *task_id).await {
                            Ok(s) if s.state != TaskState::Created => Ok(()),
                            _ => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            JobRef::JobV3 {
                scope_type,
                scope_id,
                job_instance_id,
            } => {
                match self
                    .job()
                    .operate_job_instance(
                        scope_type,
                        scope_id,
                        *job_instance_id,
                        OperationCode::Start,
                    )
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.class() == ErrorClass::Rejected => {
                        match self
                            .job()
                            .get_job_instance_status(scope_type, scope_id, *job_instance_id)
                            .await
                        {
                            Ok(s)
                                if s.job_instance.status != RunStatus::Blank
                                    || s.job_instance.start_time.is_some() =>
                            {
                                Ok(())
                            }
                            _ => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }

    /// Where the job stands: phase, counts, failed targets (failures first, capped).
    pub async fn progress(&self, job: &JobRef) -> Result<Progress, BkError> {
        match job {
            JobRef::Gsekit { biz_id, job_id } => self.progress_gsekit(*biz_id, *job_id).await,
            JobRef::Bkflow { space_id, task_id } => self.progress_bkflow(*space_id, *task_id).await,
            JobRef::Nodeman { job_id } => self.progress_nodeman(*job_id).await,
            JobRef::JobV2 {
                biz_id,
                job_instance_id,
            } => {
                if self.job().supports_v2() {
                    self.progress_job_v2(*biz_id, *job_instance_id).await
                } else {
                    // Through the gateway a v2-created instance is read with the v3 call.
                    self.progress_job_v3(
                        &ScopeType::Biz,
                        &biz_id.to_string(),
                        *job_instance_id,
                        true,
                    )
                    .await
                }
            }
            JobRef::JobV3 {
                scope_type,
                scope_id,
                job_instance_id,
            } => {
                self.progress_job_v3(scope_type, scope_id, *job_instance_id, false)
                    .await
            }
        }
    }

    async fn progress_gsekit(&self, biz_id: i64, job_id: i64) -> Result<Progress, BkError> {
        let st = self.gsekit().job_status(biz_id, job_id).await?;
        let c = &st.status_counter;
        let sum = c.pending + c.running + c.succeeded + c.failed + c.ignored;
        let summary = Summary {
            total: st.count.max(sum),
            succeeded: c.succeeded,
            failed: c.failed,
            running: c.running,
            pending: c.pending,
            ignored: c.ignored,
        };
        let mut message = st.job_info.failed_reason();
        let mut failed_targets = Vec::new();
        if c.failed > 0 {
            let q = gsekit::JobTaskQuery {
                page: 1,
                pagesize: FAILED_TARGETS_CAP as u32,
                statuses: Some(vec![gsekit::TaskStatus::Failed]),
                bk_process_ids: None,
            };
            match self.gsekit().job_task(biz_id, job_id, &q).await {
                Ok(page) => {
                    failed_targets = page
                        .list
                        .iter()
                        .filter(|t| t.status == gsekit::TaskStatus::Failed)
                        .take(FAILED_TARGETS_CAP)
                        .map(|t| FailedTarget {
                            target: t.target(),
                            reason: t.reason(),
                        })
                        .collect();
                }
                Err(e) => message = message.or(secondary(e, "failed processes")?),
            }
        }
        let phase = gsekit_phase(&st.job_info.status);
        if phase == JobPhase::Failed && message.is_none() {
            message = Some(format!(
                "{} of {} processes failed",
                c.failed, summary.total
            ));
        }
        Ok(Progress {
            phase,
            upstream_state: st.job_info.status.to_string(),
            summary,
            failed_targets,
            message,
            started_at: st.job_info.start_time,
            finished_at: st.job_info.end_time,
        })
    }

    async fn progress_bkflow(&self, space_id: i64, task_id: i64) -> Result<Progress, BkError> {
        let root = self.bkflow().get_task_states(space_id, task_id).await?;
        let phase = bkflow_phase(&root.state);
        let summary = bkflow_summary(&root);
        let mut failed_targets = Vec::new();
        let mut message = None;
        let failed_nodes: Vec<&str> = root
            .leaves()
            .into_iter()
            .filter(|(_, n)| n.state == TaskState::Failed)
            .map(|(id, _)| id)
            .collect();
        for (i, node_id) in failed_nodes.iter().enumerate() {
            if i >= BKFLOW_NODE_DETAILS_CAP {
                failed_targets.push(FailedTarget {
                    target: (*node_id).to_owned(),
                    reason: "node failed".into(),
                });
                continue;
            }
            match self
                .bkflow()
                .get_task_node_detail(space_id, task_id, node_id)
                .await
            {
                Ok(d) => {
                    let reason = d.failure_text().unwrap_or_else(|| "node failed".into());
                    let target = d.name.clone().unwrap_or_else(|| (*node_id).to_owned());
                    if message.is_none() {
                        message = Some(format!("{target}: {reason}"));
                    }
                    failed_targets.push(FailedTarget { target, reason });
                }
                Err(e) => {
                    let m = secondary(e, "node failure detail")?;
                    message = message.or(m);
                    failed_targets.push(FailedTarget {
                        target: (*node_id).to_owned(),
                        reason: "node failed".into(),
                    });
                }
            }
            if failed_targets.len() >= FAILED_TARGETS_CAP {
                break;
            }
        }
        if message.is_none() {
            message = match &root.state {
                TaskState::Suspended => Some("the task is paused in BKFlow".into()),
                TaskState::NodeSuspended => Some("a node waits for a person in BKFlow".into()),
                TaskState::Expired => Some("the task expired in BKFlow".into()),
                _ => None,
            };
        }
        Ok(Progress {
            phase,
            upstream_state: root.state.to_string(),
            summary,
            failed_targets,
            message,
            started_at: root.start_time,
            finished_at: root.finish_time,
        })
    }

    async fn progress_nodeman(&self, job_id: i64) -> Result<Progress, BkError> {
        // One call gives the job-wide statistics and, filtered, the failed hosts.
        let q = nodeman::DetailsQuery {
            page: 1,
            pagesize: FAILED_TARGETS_CAP as i32,
            conditions: vec![nodeman::Condition {
                key: "status".into(),
                value: json!(["FAILED"]),
            }],
        };
        let d = self.nodeman().details(job_id, &q).await?;
        let s = &d.statistics;
        let summary = Summary {
            total: s.total_count,
            succeeded: s.success_count,
            failed: s.failed_count,
            running: s.running_count,
            pending: s.pending_count,
            ignored: s.ignored_count,
        };
        let failed_targets: Vec<FailedTarget> = d
            .list
            .iter()
            .filter(|h| h.status == nodeman::JobStatus::Failed)
            .take(FAILED_TARGETS_CAP)
            .map(|h| FailedTarget {
                target: h.target(),
                reason: h
                    .status_display
                    .clone()
                    .or_else(|| h.step.clone())
                    .unwrap_or_else(|| "failed".into()),
            })
            .collect();
        let phase = nodeman_phase(&d.status);
        let message = match &d.status {
            nodeman::JobStatus::PartFailed | nodeman::JobStatus::Failed => Some(format!(
                "{} of {} hosts failed",
                s.failed_count, s.total_count
            )),
            nodeman::JobStatus::Terminated => Some("revoked; final status pending".into()),
            _ => None,
        };
        Ok(Progress {
            phase,
            upstream_state: d.status.to_string(),
            summary,
            failed_targets,
            message,
            started_at: d.start_time,
            finished_at: d.end_time,
        })
    }

    async fn progress_job_v3(
        &self,
        scope_type: &ScopeType,
        scope_id: &str,
        job_instance_id: i64,
        always_started: bool,
    ) -> Result<Progress, BkError> {
        let st = self
            .job()
            .get_job_instance_status(scope_type, scope_id, job_instance_id)
            .await?;
        let inst = &st.job_instance;
        let started = always_started || inst.start_time.is_some();
        let hosts = st.step_instance_list.iter().flat_map(|step| {
            step.step_ip_result_list.iter().map(move |h| {
                let mut reason = job_host_status_text(h.status);
                if let Some(c) = h.exit_code.filter(|c| *c != 0) {
                    reason.push_str(&format!(", exit code {c}"));
                }
                (
                    h.target(),
                    step.name.as_deref(),
                    job::host_outcome(h.status),
                    reason,
                )
            })
        });
        let (summary, failed_targets) = tally_hosts(hosts);
        Ok(job_progress(
            inst,
            started,
            summary,
            failed_targets,
            st.step_instance_list
                .iter()
                .map(|s| (s.name.as_deref(), s.status)),
        ))
    }

    async fn progress_job_v2(
        &self,
        biz_id: i64,
        job_instance_id: i64,
    ) -> Result<Progress, BkError> {
        let st = self
            .job()
            .get_job_instance_status_v2(biz_id, job_instance_id)
            .await?;
        let steps: Vec<&job::StepInstanceV2> = st
            .blocks
            .iter()
            .flat_map(|b| b.step_instances.iter())
            .collect();
        let hosts = steps.iter().flat_map(|step| {
            step.step_ip_status.iter().map(move |h| {
                let target = match (&h.ip, h.bk_cloud_id) {
                    (Some(ip), Some(c)) if c != 0 => format!("{c}:{ip}"),
                    (Some(ip), _) => ip.clone(),
                    _ => "unknown host".into(),
                };
                (
                    target,
                    step.name.as_deref(),
                    job::host_outcome(h.status),
                    job_host_status_text(h.status),
                )
            })
        });
        let (summary, failed_targets) = tally_hosts(hosts);
        Ok(job_progress(
            &st.job_instance,
            true,
            summary,
            failed_targets,
            steps.iter().map(|s| (s.name.as_deref(), s.status)),
        ))
    }

    /// Phases of many BKFlow tasks of one space in one call. Tasks that reached an end get a
    /// full [`Progress`] (one more call each, once); the others carry the state only. Tasks
    /// upstream did not answer for are absent from the map.
    pub async fn progress_bkflow_batch(
        &self,
        space_id: i64,
        task_ids: &[i64],
    ) -> Result<HashMap<i64, Progress>, BkError> {
        if task_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let states = self.bkflow().get_tasks_states(space_id, task_ids).await?;
        let mut out = HashMap::with_capacity(states.len());
        for (id, st) in states {
            let phase = bkflow_phase(&st.state);
            let mut p = Progress::state_only(phase, st.state.to_string());
            if phase.is_terminal() {
                match self.progress_bkflow(space_id, id).await {
                    Ok(full) => p = full,
                    Err(e) => debug!(task_id = id, error = %e, "full BKFlow progress unavailable"),
                }
            }
            out.insert(id, p);
        }
        Ok(out)
    }

    /// Asks the system to stop the job. GSEKit has no cancel (`NotSupported`).
    pub async fn cancel(&self, job: &JobRef) -> Result<CancelOutcome, BkError> {
        match job {
            JobRef::Gsekit { .. } => Ok(CancelOutcome::NotSupported),
            JobRef::Bkflow { space_id, task_id } => {
                let st = self.bkflow().get_task_states(*space_id, *task_id).await?;
                if bkflow_phase(&st.state).is_terminal() && st.state != TaskState::Failed {
                    return Ok(CancelOutcome::AlreadyFinished);
                }
                let operator = self.inner.username.as_deref();
                match self
                    .bkflow()
                    .operate_task(*space_id, *task_id, &Operation::Revoke, operator)
                    .await
                {
                    Ok(_) => Ok(CancelOutcome::Requested),
                    Err(e) if e.class() == ErrorClass::Rejected => {
                        match self.bkflow().get_task_states(*space_id, *task_id).await {
                            Ok(s)
                                if bkflow_phase(&s.state).is_terminal()
                                    && s.state != TaskState::Failed =>
                            {
                                Ok(CancelOutcome::AlreadyFinished)
                            }
                            _ => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            JobRef::Nodeman { job_id } => {
                let p = self.progress_nodeman(*job_id).await?;
                if p.phase.is_terminal() {
                    return Ok(CancelOutcome::AlreadyFinished);
                }
                self.nodeman().revoke(*job_id, &[]).await?;
                Ok(CancelOutcome::Requested)
            }
            JobRef::JobV2 {
                biz_id,
                job_instance_id,
            } => {
                self.cancel_job(&ScopeType::Biz, &biz_id.to_string(), *job_instance_id)
                    .await
            }
            JobRef::JobV3 {
                scope_type,
                scope_id,
                job_instance_id,
            } => {
                self.cancel_job(scope_type, scope_id, *job_instance_id)
                    .await
            }
        }
    }

    async fn cancel_job(
        &self,
        scope_type: &ScopeType,
        scope_id: &str,
        id: i64,
    ) -> Result<CancelOutcome, BkError> {
        let finished = |s: &job::JobInstanceStatusV3| {
            s.finished || job_phase(s.job_instance.status, true).is_terminal()
        };
        let st = self
            .job()
            .get_job_instance_status(scope_type, scope_id, id)
            .await?;
        if finished(&st) {
            return Ok(CancelOutcome::AlreadyFinished);
        }
        match self
            .job()
            .operate_job_instance(scope_type, scope_id, id, OperationCode::Terminate)
            .await
        {
            Ok(_) => Ok(CancelOutcome::Requested),
            Err(e) if e.class() == ErrorClass::Rejected => {
                match self
                    .job()
                    .get_job_instance_status(scope_type, scope_id, id)
                    .await
                {
                    Ok(s) if finished(&s) => Ok(CancelOutcome::AlreadyFinished),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Lists jobs that may be the one an ambiguous create made: same system and filters,
    /// created in the window, by the creator when given. Sorted key matches first, then
    /// newest first. Reads at most a few pages (the window should be minutes wide).
    pub async fn search(&self, q: &SearchQuery) -> Result<Searched, BkError> {
        let (mut out, complete) = match &q.target {
            SearchTarget::Gsekit {
                biz_id,
                job_object,
                job_action,
                scope,
                expression_scope,
            } => {
                let wanted = (scope.as_ref(), expression_scope.as_ref());
                self.search_gsekit(q, *biz_id, job_object, job_action, wanted)
                    .await?
            }
            SearchTarget::Bkflow {
                space_id,
                template_id,
            } => self.search_bkflow(q, *space_id, *template_id).await?,
            SearchTarget::Nodeman {
                job_type,
                bk_biz_id,
                bk_host_id,
            } => {
                self.search_nodeman(q, job_type, bk_biz_id.as_deref(), bk_host_id.as_deref())
                    .await?
            }
            SearchTarget::Job {
                scope_type,
                scope_id,
                job_plan_id,
                v2,
            } => {
                self.search_job(q, scope_type, scope_id, *job_plan_id, *v2)
                    .await?
            }
        };
        out.sort_by(|a, b| {
            b.key_matched
                .cmp(&a.key_matched)
                .then(b.created_at.cmp(&a.created_at))
        });
        Ok(Searched {
            candidates: out,
            complete,
        })
    }

    async fn search_gsekit(
        &self,
        q: &SearchQuery,
        biz_id: i64,
        job_object: &Option<JobObject>,
        job_action: &Option<JobAction>,
        (scope, expression_scope): (Option<&Value>, Option<&Value>),
    ) -> Result<(Vec<Candidate>, bool), BkError> {
        let (rows, complete) = paged(
            |index| {
                let query = gsekit::JobListQuery {
                    page: index + 1,
                    pagesize: SEARCH_PAGE,
                    created_by: q.creator.clone(),
                    job_object: job_object.clone(),
                    job_action: job_action.clone(),
                };
                async move { Ok(self.gsekit().job_list(biz_id, &query).await?.list) }
            },
            |j| j.start_time.is_some_and(|t| t < q.since),
        )
        .await?;
        let out = rows
            .into_iter()
            .filter(|j| {
                let same_object = job_object
                    .as_ref()
                    .is_none_or(|o| j.job_object.as_deref().is_none_or(|x| x == o.as_str()));
                let same_action = job_action
                    .as_ref()
                    .is_none_or(|a| j.job_action.as_deref().is_none_or(|x| x == a.as_str()));
                in_window(j.start_time, q)
                    && creator_matches(j.created_by.as_deref(), q)
                    && same_object
                    && same_action
            })
            .map(|j| Candidate {
                job: JobRef::Gsekit {
                    biz_id,
                    job_id: j.id,
                },
                created_at: j.start_time,
                key_matched: j
                    .extra_data
                    .as_ref()
                    .is_some_and(|e| value_mentions(e, &q.key)),
                // The request's scope as GSEKit stored it: `scope` when one was given, else the
                // `expression_scope` given.
                content_matched: match (scope, expression_scope) {
                    (Some(want), _) => j.scope.as_ref().map(|have| have == want),
                    (None, Some(want)) => j.expression_scope.as_ref().map(|have| have == want),
                    (None, None) => None,
                },
                name: j.job_action,
            })
            .collect();
        Ok((out, complete))
    }

    async fn search_bkflow(
        &self,
        q: &SearchQuery,
        space_id: i64,
        template_id: Option<i64>,
    ) -> Result<(Vec<Candidate>, bool), BkError> {
        let (rows, complete) = paged(
            |index| {
                let query = bkflow::TaskListQuery {
                    creator: q.creator.clone(),
                    template_id,
                    limit: SEARCH_PAGE,
                    offset: index * SEARCH_PAGE,
                };
                async move { Ok(self.bkflow().get_task_list(space_id, &query).await?.list) }
            },
            |t| t.create_time.is_some_and(|c| c < q.since),
        )
        .await?;
        let out = rows
            .into_iter()
            .filter(|t| {
                in_window(t.create_time, q)
                    && creator_matches(t.creator.as_deref(), q)
                    && !(template_id.is_some()
                        && t.template_id.is_some()
                        && t.template_id != template_id)
            })
            .map(|t| Candidate {
                job: JobRef::Bkflow {
                    space_id: t.space_id.unwrap_or(space_id),
                    task_id: t.id,
                },
                created_at: t.create_time,
                key_matched: t.name.as_deref().is_some_and(|n| n.contains(&q.key))
                    || t.description.as_deref().is_some_and(|d| d.contains(&q.key)),
                name: t.name,
                content_matched: Some(true),
            })
            .collect();
        Ok((out, complete))
    }

    async fn search_nodeman(
        &self,
        q: &SearchQuery,
        job_type: &Option<String>,
        bk_biz_id: Option<&[i64]>,
        bk_host_id: Option<&[i64]>,
    ) -> Result<(Vec<Candidate>, bool), BkError> {
        let (rows, complete) = paged(
            |index| {
                let query = nodeman::JobListQuery {
                    page: index + 1,
                    pagesize: SEARCH_PAGE,
                    created_by: q.creator.clone().map(|c| vec![c]),
                    job_type: job_type.clone().map(|t| vec![t]),
                };
                async move { Ok(self.nodeman().job_list(&query).await?.list) }
            },
            |j| j.start_time.is_some_and(|t| t < q.since),
        )
        .await?;
        let mut out: Vec<Candidate> = rows
            .into_iter()
            .filter(|j| {
                let same_type = job_type
                    .as_ref()
                    .is_none_or(|t| j.job_type.as_deref().is_none_or(|x| x == t));
                in_window(j.start_time, q)
                    && creator_matches(j.created_by.as_deref(), q)
                    && same_type
            })
            .map(|j| {
                let same_biz = match (bk_biz_id, &j.bk_biz_scope) {
                    (Some(want), Some(have)) => Some(same_set(want, have)),
                    _ => None,
                };
                Candidate {
                    job: JobRef::Nodeman { job_id: j.id },
                    created_at: j.start_time,
                    name: j.job_type,
                    key_matched: false,
                    content_matched: if same_biz == Some(false) {
                        Some(false)
                    } else if bk_host_id.is_none() {
                        Some(true)
                    } else {
                        None
                    },
                }
            })
            .collect();
        // The hosts are only in a job's details: read them for the jobs still in question.
        if let Some(want) = bk_host_id {
            let open = out.iter_mut().filter(|c| c.content_matched.is_none());
            for c in open.take(SEARCH_MAX_DETAILS) {
                let JobRef::Nodeman { job_id } = c.job else {
                    continue;
                };
                let query = nodeman::DetailsQuery {
                    page: 1,
                    pagesize: -1,
                    conditions: Vec::new(),
                };
                let details = self.nodeman().details(job_id, &query).await?;
                let hosts: Vec<i64> = details.list.iter().filter_map(|h| h.bk_host_id).collect();
                // No host listed yet: the job is still being prepared, and says nothing.
                c.content_matched = (!hosts.is_empty()).then(|| same_set(want, &hosts));
            }
        }
        Ok((out, complete))
    }

    async fn search_job(
        &self,
        q: &SearchQuery,
        scope_type: &ScopeType,
        scope_id: &str,
        job_plan_id: Option<i64>,
        v2: bool,
    ) -> Result<(Vec<Candidate>, bool), BkError> {
        // JOB filters by time itself: every page is of the window.
        let (rows, complete) = paged(
            |index| {
                let query = job::JobInstanceListQuery {
                    bk_scope_type: scope_type.clone(),
                    bk_scope_id: scope_id.to_owned(),
                    since: q.since,
                    until: q.until,
                    operator: q.creator.clone(),
                    job_plan_id,
                    start: index * SEARCH_PAGE,
                    length: SEARCH_PAGE,
                };
                async move { Ok(self.job().get_job_instance_list(&query).await?.list) }
            },
            |_| false,
        )
        .await?;
        let out = rows
            .into_iter()
            .filter(|i| {
                in_window(i.create_time, q)
                    && creator_matches(i.operator.as_deref(), q)
                    && !(job_plan_id.is_some()
                        && i.job_plan_id.is_some()
                        && i.job_plan_id != job_plan_id)
            })
            .map(|i| {
                let job = match (v2, scope_id.parse::<i64>()) {
                    (true, Ok(biz_id)) => JobRef::JobV2 {
                        biz_id,
                        job_instance_id: i.id,
                    },
                    _ => JobRef::JobV3 {
                        scope_type: scope_type.clone(),
                        scope_id: scope_id.to_owned(),
                        job_instance_id: i.id,
                    },
                };
                Candidate {
                    job,
                    created_at: i.create_time,
                    name: i.name,
                    key_matched: false,
                    content_matched: match (job_plan_id, i.job_plan_id) {
                        (Some(want), Some(have)) => Some(want == have),
                        _ => None,
                    },
                }
            })
            .collect();
        Ok((out, complete))
    }
}

/// Reads a job list page by page (`page(0)`, `page(1)`, ...; newest first upstream) until a
/// short page, a page whose rows are all `older` than the window, or [`SEARCH_MAX_PAGES`].
/// Returns the rows read and whether the whole window was seen (`false` at the page limit).
async fn paged<R, Fut>(
    mut page: impl FnMut(u32) -> Fut,
    older: impl Fn(&R) -> bool,
) -> Result<(Vec<R>, bool), BkError>
where
    Fut: std::future::Future<Output = Result<Vec<R>, BkError>>,
{
    let mut rows = Vec::new();
    for index in 0..SEARCH_MAX_PAGES {
        let list = page(index).await?;
        let short = list.len() < SEARCH_PAGE as usize;
        let all_older = !list.is_empty() && list.iter().all(&older);
        rows.extend(list);
        if short || all_older {
            return Ok((rows, true));
        }
    }
    Ok((rows, false))
}

/// Whether two id lists hold the same ids, in any order.
fn same_set(a: &[i64], b: &[i64]) -> bool {
    let set = |v: &[i64]| v.iter().copied().collect::<std::collections::BTreeSet<_>>();
    set(a) == set(b)
}

fn job_progress<'a>(
    inst: &job::JobInstanceV3,
    started: bool,
    summary: Summary,
    failed_targets: Vec<FailedTarget>,
    steps: impl Iterator<Item = (Option<&'a str>, RunStatus)>,
) -> Progress {
    let phase = job_phase(inst.status, started);
    let message = match phase {
        JobPhase::Failed | JobPhase::WaitingForUser | JobPhase::Cancelled => {
            let step = steps
                .filter(|(_, s)| job_phase(*s, true) == phase)
                .map(|(n, s)| format!("step '{}' is {}", n.unwrap_or("?"), job_status_name(s)))
                .next();
            step.or_else(|| Some(format!("job instance is {}", job_status_name(inst.status))))
        }
        _ => None,
    };
    Progress {
        phase,
        upstream_state: job_status_name(inst.status),
        summary,
        failed_targets,
        message,
        started_at: inst.start_time,
        finished_at: inst.end_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsekit_table() {
        use gsekit::JobStatus as S;
        for (s, p) in [
            (S::Pending, JobPhase::Running),
            (S::Running, JobPhase::Running),
            (S::Succeeded, JobPhase::Succeeded),
            (S::Failed, JobPhase::Failed),
            (S::Unknown("x".into()), JobPhase::Running),
        ] {
            assert_eq!(gsekit_phase(&s), p, "{s}");
        }
    }

    #[test]
    fn bkflow_table() {
        for (s, p) in [
            ("CREATED", JobPhase::NotStarted),
            ("READY", JobPhase::Running),
            ("RUNNING", JobPhase::Running),
            ("BLOCKED", JobPhase::Running),
            ("SUSPENDED", JobPhase::WaitingForUser),
            ("NODE_SUSPENDED", JobPhase::WaitingForUser),
            ("FAILED", JobPhase::Failed),
            ("FINISHED", JobPhase::Succeeded),
            ("REVOKED", JobPhase::Cancelled),
            ("EXPIRED", JobPhase::Failed),
            ("SOMETHING_NEW", JobPhase::Running),
        ] {
            assert_eq!(bkflow_phase(&TaskState::from(s)), p, "{s}");
        }
    }

    #[test]
    fn nodeman_table() {
        for (s, p) in [
            ("PENDING", JobPhase::Running),
            ("RUNNING", JobPhase::Running),
            ("TERMINATED", JobPhase::Running),
            ("SUCCESS", JobPhase::Succeeded),
            ("FAILED", JobPhase::Failed),
            ("PART_FAILED", JobPhase::Failed),
            ("NEW", JobPhase::Running),
        ] {
            assert_eq!(nodeman_phase(&nodeman::JobStatus::from(s)), p, "{s}");
        }
    }

    #[test]
    fn job_table() {
        let table = [
            (1, false, JobPhase::NotStarted),
            (1, true, JobPhase::Running),
            (2, false, JobPhase::Running),
            (3, false, JobPhase::Succeeded),
            (4, false, JobPhase::Failed),
            (5, false, JobPhase::Failed),
            (6, false, JobPhase::Succeeded),
            (7, false, JobPhase::WaitingForUser),
            (8, false, JobPhase::Cancelled),
            (9, false, JobPhase::Failed),
            (10, false, JobPhase::Running),
            (11, false, JobPhase::Cancelled),
            (12, false, JobPhase::Running),
            (13, false, JobPhase::Cancelled),
            (14, false, JobPhase::Failed),
            (15, false, JobPhase::WaitingForUser),
            (99, false, JobPhase::Running),
        ];
        for (code, started, want) in table {
            assert_eq!(job_phase(RunStatus::from(code), started), want, "{code}");
        }
        // finished == true exactly for the terminal set upstream.
        for code in 1..=15 {
            let terminal = job_phase(RunStatus::from(code), true).is_terminal();
            assert_eq!(
                terminal,
                [3, 4, 5, 6, 8, 9, 11, 13, 14].contains(&code),
                "{code}"
            );
        }
    }

    #[test]
    fn hosts_count_once_with_worst_outcome() {
        let hosts = vec![
            (
                "a".to_owned(),
                Some("s1"),
                HostOutcome::Succeeded,
                "ok".to_owned(),
            ),
            (
                "a".to_owned(),
                Some("s2"),
                HostOutcome::Failed,
                "bad".to_owned(),
            ),
            (
                "b".to_owned(),
                Some("s1"),
                HostOutcome::Succeeded,
                "ok".to_owned(),
            ),
            (
                "b".to_owned(),
                Some("s2"),
                HostOutcome::Running,
                "run".to_owned(),
            ),
            (
                "c".to_owned(),
                None,
                HostOutcome::Succeeded,
                "ok".to_owned(),
            ),
        ];
        let (s, f) = tally_hosts(hosts.into_iter());
        assert_eq!(
            s,
            Summary {
                total: 3,
                succeeded: 1,
                failed: 1,
                running: 1,
                pending: 0,
                ignored: 0
            }
        );
        assert_eq!(
            f,
            vec![FailedTarget {
                target: "a".into(),
                reason: "step 's2': bad".into()
            }]
        );
    }

    #[test]
    fn list_shapes() {
        assert_eq!(super::super::de::list_items(json!([1, 2])).0.len(), 2);
        let (items, count) = super::super::de::list_items(json!({"count": 5, "results": [1]}));
        assert_eq!((items.len(), count), (1, Some(5)));
        let (items, count) = super::super::de::list_items(json!({"total": "3", "data": [1, 2, 3]}));
        assert_eq!((items.len(), count), (3, Some(3)));
        assert_eq!(super::super::de::list_items(json!(null)).0.len(), 0);
    }

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

    /// Pages of `len` rows each, `older` from `first_older` on (newest first, as upstream).
    async fn read(
        lens: &[usize],
        first_older: Option<u32>,
    ) -> (Result<(Vec<u32>, bool), BkError>, u32) {
        let calls = std::cell::Cell::new(0);
        let result = paged(
            |index| {
                calls.set(calls.get() + 1);
                let rows: Vec<u32> = (0..lens.get(index as usize).copied().unwrap_or(0))
                    .map(|_| index)
                    .collect();
                async move { Ok(rows) }
            },
            |page: &u32| first_older.is_some_and(|o| *page >= o),
        )
        .await;
        (result, calls.get())
    }

    #[tokio::test]
    async fn a_paged_search_stops_at_the_windows_end_and_says_when_it_did_not_reach_it() {
        let full = SEARCH_PAGE as usize;
        // A short page is the list's end.
        let (r, calls) = read(&[full, 3], None).await;
        assert_eq!((r.expect("read").1, calls), (true, 2));
        // A page entirely older than the window ends it.
        let (r, calls) = read(&[full, full, full], Some(1)).await;
        assert_eq!((r.expect("read").1, calls), (true, 2));
        // Full pages up to the limit: jobs may exist that were not seen.
        let (r, calls) = read(&[full; 10], None).await;
        let (rows, complete) = r.expect("read");
        assert!(!complete);
        assert_eq!(calls, SEARCH_MAX_PAGES);
        assert_eq!(rows.len(), full * SEARCH_MAX_PAGES as usize);
        // An empty first page: nothing in the window.
        let (r, _) = read(&[], None).await;
        assert_eq!(r.expect("read"), (Vec::new(), true));
    }
}
