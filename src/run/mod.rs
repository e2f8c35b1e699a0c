//! The run lifecycle, written once for the four kinds (`docs/architecture.md`).
//!
//! [`decide`] is pure: from the object and the clock it picks one [`Decision`]. The controller
//! carries it out (Kubernetes writes, BlueKing calls) and reports with [`status`].

pub mod act;
pub mod deps;
pub mod kinds;
pub mod resolve;
pub mod status;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::api::common::{DeletionPolicy, Phase, RunStatus};
use crate::api::{CommonSpec, JobStatus};

pub use kinds::{Defaults, JobKind};

/// Reasons (CamelCase, stable: used in conditions, Events and alerts).
pub mod reason {
    /// The spec breaks a rule; bkops refused it and sent nothing to BlueKing.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// `spec.suspend` holds back a new run.
    pub const SUSPENDED: &str = "Suspended";
    /// `spec.cancel` holds back a new run.
    pub const CANCEL_REQUESTED: &str = "CancelRequested";
    /// The intent is recorded; the create call follows.
    pub const SUBMITTING: &str = "Submitting";
    /// The create's outcome is unknown; searching for the job.
    pub const RESOLVING: &str = "ResolvingSubmission";
    /// Nothing could be found for an unclear create; a person must decide.
    pub const UNKNOWN_SUBMISSION: &str = "UnknownSubmission";
    /// Several jobs could be the one created; a person must decide.
    pub const AMBIGUOUS_SUBMISSION: &str = "AmbiguousSubmission";
    /// An unclear create made nothing (no job carries the run key after the grace window); the
    /// run is submitted again.
    pub const SUBMISSION_NOT_FOUND: &str = "SubmissionNotFound";
    /// The create was not made (rate limit, quota, network before sending); it is tried again.
    pub const SUBMIT_DEFERRED: &str = "SubmitDeferred";
    /// Creates have not reached BlueKing for a while (no answer: closed port, unknown host,
    /// unreachable network); still tried again. `Stalled` until they do.
    pub const CONNECTION_UNREACHABLE: &str = "ConnectionUnreachable";
    /// Creates have been refused for a while as not made (rate limit, quota, gateway errors
    /// before sending); still tried again. `Stalled` until one is made.
    pub const SUBMIT_BLOCKED: &str = "SubmitBlocked";

    /// The run's job cannot be addressed (its id does not map to a job reference with the
    /// current spec and connection); it is not followed until it can be. `Stalled`.
    pub const JOB_UNADDRESSABLE: &str = "JobUnaddressable";

    /// A brand-new object took the run of an earlier object with the same fingerprint (it was
    /// deleted and re-created) from its run record instead of running again.
    pub const ADOPTED_EARLIER_RUN: &str = "AdoptedEarlierRun";
    /// A job in `spec.dependsOn` has not succeeded yet, or has a run pending.
    pub const WAITING_FOR_DEPENDENCY: &str = "WaitingForDependency";
    /// A job in `spec.dependsOn` does not exist.
    pub const DEPENDENCY_MISSING: &str = "DependencyMissing";
    /// A job in `spec.dependsOn` failed, was cancelled or is `Unknown`. `Stalled`; the run
    /// starts by itself once it succeeds.
    pub const DEPENDENCY_FAILED: &str = "DependencyFailed";

    /// Reasons of a run whose create was not made and is tried again.
    pub fn is_deferral(reason: &str) -> bool {
        [SUBMIT_DEFERRED, CONNECTION_UNREACHABLE, SUBMIT_BLOCKED].contains(&reason)
    }
    /// BlueKing answered the create with a refusal; nothing ran. Only for BlueKing's answers:
    /// what bkops refuses itself, before any call, is `InvalidSpec` or `ConnectionUnsupported`.
    pub const SUBMISSION_REJECTED: &str = "SubmissionRejected";
    /// The job's connection cannot make its create call (no endpoint for the system, or JOB v2
    /// through the API gateway); bkops refused it and sent nothing.
    pub const CONNECTION_UNSUPPORTED: &str = "ConnectionUnsupported";
    /// BlueKing runs the job.
    pub const RUNNING: &str = "Running";
    /// A person must act in BlueKing.
    pub const WAITING_FOR_USER: &str = "WaitingForUser";
    /// The job succeeded.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The job failed in BlueKing.
    pub const JOB_FAILED: &str = "JobFailed";
    /// The job was cancelled.
    pub const CANCELLED: &str = "Cancelled";
    /// `activeDeadlineSeconds` passed.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// A failed job waits for its retry.
    pub const RETRY_BACKOFF: &str = "RetryBackoff";
}

/// The reason and whether the run is stalled, for a create not made (`unreachable`: no answer
/// at all) whose run has been deferred since `since`, at `now`.
pub fn deferral(
    unreachable: bool,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    stall_after: Duration,
) -> &'static str {
    let deferred_for = (now - since).to_std().unwrap_or_default();
    match (deferred_for >= stall_after, unreachable) {
        (false, _) => reason::SUBMIT_DEFERRED,
        (true, true) => reason::CONNECTION_UNREACHABLE,
        (true, false) => reason::SUBMIT_BLOCKED,
    }
}

/// The message of an `InvalidSpec` refusal: whose refusal it is, then the problems.
pub fn invalid_spec_message(problems: &dyn std::fmt::Display) -> String {
    format!("invalid spec, refused by bkops; nothing was sent to BlueKing: {problems}")
}

/// How long a deferred create waits before it is tried again.
pub const SUBMIT_DEFER: Duration = Duration::from_secs(10);

/// What starts a run: the job-defining spec, the rerun token and the rerun annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// Hash of the job-defining spec.
    pub spec_hash: String,
    /// `spec.rerunToken`.
    pub rerun_token: Option<String>,
    /// The `bkops.io/rerun-requested-at` annotation.
    pub rerun_requested_at: Option<String>,
}

impl Trigger {
    /// What `obj` asks for now.
    pub fn of<K: JobKind>(obj: &K) -> Trigger {
        Trigger {
            spec_hash: spec_hash(&obj.spec_json()),
            rerun_token: obj.common().rerun_token.clone(),
            rerun_requested_at: obj
                .meta()
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::api::common::RERUN_ANNOTATION))
                .cloned(),
        }
    }
}

/// Spec fields that steer runs but do not define the job: changing them starts no run.
const CONTROL_FIELDS: [&str; 8] = [
    "suspend",
    "cancel",
    "activeDeadlineSeconds",
    "retry",
    "deletionPolicy",
    "rerunToken",
    "dependsOn",
    "recreatePolicy",
];

/// A stable hash of the job-defining part of a spec (FNV-1a over canonical JSON: object keys
/// are sorted by `serde_json`'s map).
pub fn spec_hash(spec: &Value) -> String {
    let mut v = spec.clone();
    if let Some(obj) = v.as_object_mut() {
        for f in CONTROL_FIELDS {
            obj.remove(f);
        }
    }
    fnv(&v.to_string())
}

/// The fingerprint of a run: what git says about it (kind, namespace, name, job-defining spec
/// and `rerunToken`), not the object's uid. A re-created object with the same YAML has the
/// same fingerprint.
pub fn fingerprint(
    kind: &str,
    ns: &str,
    name: &str,
    spec_hash: &str,
    token: Option<&str>,
) -> String {
    // Length-prefixed, so no two tuples give the same text.
    let mut text = String::new();
    for part in [kind, ns, name, spec_hash, token.unwrap_or("\u{0}none")] {
        text.push_str(&format!("{}:{part};", part.len()));
    }
    fnv(&text)
}

fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The run key: uid prefix, generation and attempt (`1f3a9c2e-g3-a1`).
pub fn run_key(uid: &str, generation: i64, attempt: u32) -> String {
    let prefix: String = uid.chars().filter(|c| *c != '-').take(8).collect();
    format!("{prefix}-g{generation}-a{attempt}")
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The clock.
    pub now: DateTime<Utc>,
    /// `metadata.generation`.
    pub generation: i64,
    /// What the object asks for now.
    pub trigger: Trigger,
    /// The shared spec fields.
    pub common: &'a CommonSpec,
    /// The status as read.
    pub status: &'a JobStatus,
    /// Validation problems, if the spec is invalid.
    pub invalid: Option<String>,
    /// Whether the object is being deleted.
    pub deleting: bool,
    /// Whether it carries the `bkops.io/cleanup` finalizer.
    pub has_finalizer: bool,
    /// The `bkops.io/adopt-job-id` annotation.
    pub adopt_annotation: Option<&'a str>,
    /// The `bkops.io/confirm-not-submitted` annotation.
    pub confirm_annotation: Option<&'a str>,
    /// Whether created jobs must be started by a second call.
    pub two_phase: bool,
    /// How long an unclear create is searched for before the run turns `Unknown`.
    pub resolve_grace: Duration,
}

/// One step of the lifecycle.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Add the cleanup finalizer (`deletionPolicy: Cancel`).
    AddFinalizer,
    /// Drop the cleanup finalizer; a warning is published when something is left behind.
    RemoveFinalizer {
        /// What the user should know (e.g. the job could not be cancelled).
        warning: Option<String>,
    },
    /// The object is being deleted with `deletionPolicy: Cancel`: cancel the job, then let go.
    CancelForDeletion,
    /// Write this phase and make no BlueKing call.
    Report {
        /// The phase to show.
        phase: Phase,
        /// Why.
        reason: &'static str,
        /// For people.
        message: String,
    },
    /// Start a new run: fenced intent write, then one create (or adopt `adopt`).
    Submit {
        /// Attempt number within the generation.
        attempt: u32,
        /// How many retries of failed jobs led here.
        retries: u32,
        /// An existing job to follow instead of creating one.
        adopt: Option<String>,
    },
    /// A person named the job of the current, unresolved run.
    AdoptIntoRun {
        /// The job id.
        job_id: String,
    },
    /// Search for the job of a submission whose outcome is unknown.
    Resolve,
    /// Start a created job (BKFlow, JOB v3).
    Start,
    /// Ask BlueKing how the job is doing.
    Poll,
    /// Cancel the job (once).
    Cancel {
        /// True when the deadline passed, false when `spec.cancel` asks.
        deadline: bool,
    },
    /// Nothing to do now; look again after this long (or on the next change).
    Idle {
        /// When to look again.
        requeue: Option<Duration>,
    },
}

fn in_flight(run: &RunStatus) -> bool {
    matches!(
        run.phase,
        Phase::Submitting | Phase::Running | Phase::WaitingForUser | Phase::Unknown
    )
}

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

/// `t` moved by `secs` seconds, or `None` when the result lies outside the times chrono can
/// hold. Spec and status values reach this arithmetic, and none of them may panic a reconcile.
pub fn shifted(
    t: chrono::DateTime<chrono::Utc>,
    secs: i64,
) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::TimeDelta::try_seconds(secs).and_then(|d| t.checked_add_signed(d))
}

/// Whether `run` already answers `trigger`.
pub fn answers(run: &RunStatus, trigger: &Trigger, last_handled_rerun_at: Option<&str>) -> bool {
    run.spec_hash == trigger.spec_hash
        && run.rerun_token == trigger.rerun_token
        && trigger
            .rerun_requested_at
            .as_deref()
            .is_none_or(|r| Some(r) == last_handled_rerun_at)
}

fn is_job_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The lifecycle's one decision for this object at this moment.
pub fn decide(o: &Observed<'_>) -> Decision {
    let run = o.status.run.as_ref();
    let cancel_policy = o.common.deletion_policy == Some(DeletionPolicy::Cancel);

    if o.deleting {
        if !o.has_finalizer {
            return Decision::Idle { requeue: None };
        }
        // `Orphan`: the finalizer is let go once the run is on record (a create still unclear
        // is recorded as unknown, so that a re-created object does not run it again).
        if let Some(r) = run.filter(|r| cancel_policy && in_flight(r)) {
            if r.job_id.is_some() && r.cancel_requested_at.is_none() && r.phase != Phase::Unknown {
                return Decision::CancelForDeletion;
            }
            if r.job_id.is_none() {
                // Whether the create made a job is unclear, and the job may be running: find it
                // (to cancel it) before letting go, or a person says which it is. Let go now, it
                // would run on untracked, and its job could pass for another object's.
                if let Some(id) = o.adopt_annotation.filter(|a| is_job_id(a)) {
                    return Decision::AdoptIntoRun {
                        job_id: id.to_owned(),
                    };
                }
                if o.confirm_annotation == Some(r.key.as_str()) {
                    return Decision::RemoveFinalizer { warning: None };
                }
                if r.phase == Phase::Unknown {
                    return Decision::Idle { requeue: None };
                }
                return Decision::Resolve;
            }
        }
        return Decision::RemoveFinalizer { warning: None };
    }
    // An object with a run in flight, or about to start one (below), carries the finalizer: its
    // run is on record before it goes. A finished object that never runs again (e.g. from before
    // run records) is left as it is: no write for it.
    if !o.has_finalizer && (cancel_policy || run.is_some_and(in_flight)) {
        return Decision::AddFinalizer;
    }

    if let Some(r) = run.filter(|r| in_flight(r)) {
        if r.job_id.is_none() {
            if let Some(id) = o.adopt_annotation.filter(|a| is_job_id(a)) {
                return Decision::AdoptIntoRun {
                    job_id: id.to_owned(),
                };
            }
            if r.phase == Phase::Unknown {
                if o.confirm_annotation == Some(r.key.as_str()) {
                    // A person confirmed that nothing was submitted: the same trigger may run.
                    return Decision::Submit {
                        attempt: r.attempt + 1,
                        retries: r.retries,
                        adopt: None,
                    };
                }
                return Decision::Idle { requeue: None };
            }
            return Decision::Resolve;
        }
        if let (Some(secs), Some(start)) = (
            o.common.active_deadline_seconds,
            r.submitted_at.or(r.intent_at),
        ) && shifted(start, secs).is_some_and(|deadline| o.now >= deadline)
        {
            return Decision::Cancel { deadline: true };
        }
        if o.common.cancel == Some(true) && r.cancel_requested_at.is_none() {
            return Decision::Cancel { deadline: false };
        }
        if o.two_phase && !r.started {
            return Decision::Start;
        }
        return Decision::Poll;
    }

    let last_rerun = o.status.last_handled_rerun_at.as_deref();
    let deferred = run.filter(|r| {
        r.phase == Phase::Pending && r.reason.as_deref().is_some_and(reason::is_deferral)
    });
    let due = match run {
        None => true,
        Some(r) => deferred.is_some() || !answers(r, &o.trigger, last_rerun),
    };
    if due {
        if let Some(problems) = &o.invalid {
            return Decision::Report {
                phase: Phase::Failed,
                reason: reason::INVALID_SPEC,
                message: invalid_spec_message(&problems),
            };
        }
        if o.common.suspend == Some(true) {
            return Decision::Report {
                phase: Phase::Suspended,
                reason: reason::SUSPENDED,
                message: "spec.suspend is true; no new run starts".to_owned(),
            };
        }
        if o.common.cancel == Some(true) {
            return Decision::Report {
                phase: Phase::Cancelled,
                reason: reason::CANCEL_REQUESTED,
                message: "spec.cancel is true; no new run starts".to_owned(),
            };
        }
        if !o.has_finalizer {
            return Decision::AddFinalizer;
        }
        if let Some(r) = deferred {
            let at = shifted(r.intent_at.unwrap_or(o.now), SUBMIT_DEFER.as_secs() as i64)
                .unwrap_or(o.now);
            if o.now < at {
                return Decision::Idle {
                    requeue: Some(to_std(at - o.now)),
                };
            }
            return Decision::Submit {
                attempt: r.attempt,
                retries: r.retries,
                adopt: None,
            };
        }
        let attempt = match run {
            Some(r) if r.generation == o.generation => r.attempt + 1,
            _ => 1,
        };
        let used = |id: &str| {
            run.and_then(|r| r.job_id.as_deref()) == Some(id)
                || o.status
                    .history
                    .iter()
                    .any(|h| h.job_id.as_deref() == Some(id))
        };
        let adopt = o.common.adopt_job_id.clone().filter(|id| !used(id));
        return Decision::Submit {
            attempt,
            retries: 0,
            adopt,
        };
    }

    // The last run answers the trigger and is over: only a retry of a failed job remains.
    if let Some(r) = run
        && r.phase == Phase::Failed
        && matches!(
            r.reason.as_deref(),
            Some(reason::JOB_FAILED) | Some(reason::SUBMISSION_REJECTED)
        )
        && o.invalid.is_none()
        && o.common.suspend != Some(true)
        && o.common.cancel != Some(true)
    {
        let limit = o.common.retry.as_ref().map(|p| p.limit).unwrap_or(0);
        if r.retries < limit {
            let backoff = o
                .common
                .retry
                .as_ref()
                .and_then(|p| p.backoff_seconds)
                .unwrap_or(0);
            let at = shifted(r.completion_time.unwrap_or(o.now), backoff.into()).unwrap_or(o.now);
            if o.now < at {
                return Decision::Idle {
                    requeue: Some(to_std(at - o.now)),
                };
            }
            if !o.has_finalizer {
                return Decision::AddFinalizer;
            }
            return Decision::Submit {
                attempt: r.attempt + 1,
                retries: r.retries + 1,
                adopt: None,
            };
        }
    }
    Decision::Idle { requeue: None }
}

#[cfg(test)]
mod tests;
