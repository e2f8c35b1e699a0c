//! Carrying out [`decide`]'s decisions: the fenced intent, the one create, the id write that
//! retries until it lands, polls, cancels, and the status and Events that report them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use rand::Rng;
use serde_json::json;
use tracing::{debug, info, warn};

use super::connection::{ConnectionError, Resolved};
use super::context::Context;
use super::metrics::{CallKindLabels, CallLabels, PhaseLabels, ReconcileLabels, SubmissionLabels};
use crate::api::JobStatus;
use crate::api::common::{
    ADOPT_ANNOTATION, CONFIRM_NOT_SUBMITTED_ANNOTATION, FIELD_MANAGER, FINALIZER, Phase,
    RERUN_ANNOTATION, RunStatus,
};
use crate::bk::facade::{CancelOutcome, JobPhase, JobRef, SearchQuery, Unsupported};
use crate::bk::{BkError, ErrorClass};
use crate::run::resolve::{self, Found, Resolution};
use crate::run::status::{apply_progress, merge_diff, progress_only, push_history, render};
use crate::run::{Decision, JobKind, Observed, Trigger, decide, reason, run_key, spec_hash};

/// Errors of one reconcile; each has a short category for metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace, name or resourceVersion (cannot happen for a namespaced
    /// object read from the API server).
    #[error("object without namespace, name or resourceVersion")]
    Unnamed,
}

impl Error {
    /// Stable category for labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(_) => "kubernetes",
            Error::Unnamed => "unnamed",
        }
    }
}

/// How long a reconcile waits at most for the cache to show the operator's own last status
/// write before it decides on what the cache has (a decision on an older copy could only fail
/// its write). Only the operator writes status, so the wait normally ends when the watch
/// delivers that write; the bound covers someone else writing status meanwhile.
const CACHE_CATCH_UP: Duration = Duration::from_secs(30);
/// How soon a reconcile waiting for the cache looks again: a quarter of the wait so far, within
/// these bounds. A lag of seconds is looked at a few times, not four times a second (each look
/// decodes the cached status).
pub const CACHE_CATCH_UP_STEPS: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(2));
/// How long a status write of mere progress waits after the object's last status write of any
/// kind: the id write already says the job runs, so the first poll's counts wait too (under a
/// burst of submissions they would otherwise add a write per object to a saturated API server).
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a record of a create's job id is retried before the run is left to be resolved.
const ID_WRITE_BUDGET: Duration = Duration::from_secs(120);
/// How long deletion waits on a failing cancel before letting go.
const DELETE_CANCEL_BUDGET: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

/// Identifies a status as the API server holds it (for "does the cache show our write yet").
fn status_hash(status: Option<&JobStatus>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&status).unwrap_or_default().hash(&mut h);
    h.finish()
}

fn outcome(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Transient => "transient",
        ErrorClass::Rejected => "rejected",
        ErrorClass::Ambiguous => "ambiguous",
    }
}

/// How the record of a job is written.
#[derive(Clone, Copy)]
enum Record<'s> {
    /// After this reconcile's fenced intent and create, on the status that intent left: the job
    /// exists, so its record must land (on a conflict, against a fresh read, until it does).
    Created(&'s JobStatus),
    /// On this reconcile's decision (an adoption, a job found by search), on the status the
    /// decision saw: written only if the object is still there; a conflict decides again.
    Decided(&'s JobStatus),
}

impl<'s> Record<'s> {
    fn status(self) -> &'s JobStatus {
        match self {
            Record::Created(s) | Record::Decided(s) => s,
        }
    }
}

/// After a run ends, decide once more: a spec edit made during the run, or a retry, may be
/// waiting, and the operator's own status write does not trigger a reconcile.
fn after_run_end() -> Action {
    Action::requeue(Duration::from_millis(200))
}

/// A jittered poll interval that grows with the run's age: seconds at first, up to the cap.
pub fn poll_interval(ctx: &Context, run: &RunStatus) -> Duration {
    let age = run
        .submitted_at
        .or(run.intent_at)
        .map(|t| (Utc::now() - t).num_seconds().max(0) as f64)
        .unwrap_or(0.0);
    let base = ctx.config.poll_initial.as_secs_f64();
    let cap = ctx.config.poll_max.as_secs_f64().max(base);
    let grown = (base * (1.0 + age / 20.0)).min(cap);
    let jitter = rand::rng().random_range(0.8..1.2);
    Duration::from_secs_f64(grown * jitter)
}

/// Whether the cache still shows `obj` without the status this process wrote last, so the
/// reconcile should wait instead of deciding: how long until it looks again
/// ([`CACHE_CATCH_UP_STEPS`]), or `None` to decide now.
///
/// A busy API server's watch lags the operator's own writes by seconds. Deciding on the older
/// copy would repeat polls and starts and then lose the write to a conflict. A person's edit
/// since (spec, annotations) leaves that status as it is, so it does not hold the wait up. This
/// runs before the reconcile takes one of its kind's slots: objects waiting for the cache come
/// back many times under a burst, and holding slots they would queue new submissions behind
/// them.
pub async fn behind_own_write(
    ctx: &Context,
    kind: &'static str,
    obj: &super::cached::CachedObject,
) -> Option<Duration> {
    let uid = obj.metadata.uid.as_deref()?;
    let (hash, at) = ctx.timings.lock().await.written.get(uid).copied()?;
    // Unreadable status: the reconcile reports the malformed object; nothing to wait for.
    let cached: Option<JobStatus> = match obj.status_as::<JobStatus>() {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return None,
    };
    let waited = at.elapsed();
    if status_hash(cached.as_ref()) != hash && waited < CACHE_CATCH_UP {
        ctx.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind,
                outcome: "await_cache",
            })
            .inc();
        let (shortest, longest) = CACHE_CATCH_UP_STEPS;
        return Some((waited / 4).clamp(shortest, longest));
    }
    // Caught up (or given up on): nothing more to wait for until the next write.
    ctx.timings.lock().await.written.remove(uid);
    None
}

/// Why bkops refuses a run before its intent.
enum Refusal {
    /// The spec cannot become a call bkops would send.
    Spec(String),
    /// The connection cannot make the call (the message names it and what to change).
    Connection(String),
}

/// The message for a connection that cannot make a job's create call: which connection, whose
/// refusal, and what to change.
fn unsupported_message(connection: &str, u: Unsupported) -> String {
    let change = match u {
        Unsupported::JobV2OverGateway => {
            "set jobApi: v3 (execute_job_plan), or use a BkConnection whose job mode is esb"
                .to_owned()
        }
        Unsupported::NoEndpoint(system) => {
            format!("add a {system} endpoint to the BkConnection, or use another BkConnection")
        }
    };
    format!(
        "BkConnection {connection:?} cannot make this call ({u}); bkops refused the run, nothing was sent to BlueKing: {change}"
    )
}

/// One reconcile of one job object.
pub struct Reconciler<'a, K: JobKind> {
    ctx: &'a Context,
    obj: K,
    api: Api<K>,
    ns: String,
    name: String,
    uid: String,
    generation: i64,
    kind: &'static str,
    /// The resourceVersion every status write of this reconcile is conditional on: the cached
    /// object's, which the decision was made on, then that of the reconcile's own last write.
    rv: std::sync::Mutex<Option<String>>,
}

impl<'a, K: JobKind> Reconciler<'a, K> {
    /// Prepares a reconcile of `obj`.
    pub fn new(ctx: &'a Context, obj: K, kind: &'static str) -> Result<Self, Error> {
        let ns = obj.namespace().ok_or(Error::Unnamed)?;
        let name = obj.meta().name.clone().ok_or(Error::Unnamed)?;
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let generation = obj.meta().generation.unwrap_or(0);
        let api = Api::namespaced(ctx.client.clone(), &ns);
        let rv = std::sync::Mutex::new(obj.resource_version());
        Ok(Reconciler {
            rv,
            ctx,
            obj,
            api,
            ns,
            name,
            uid,
            generation,
            kind,
        })
    }

    fn status(&self) -> JobStatus {
        self.obj.job_status().cloned().unwrap_or_default()
    }

    fn trigger(obj: &K) -> Trigger {
        Trigger {
            spec_hash: spec_hash(&obj.spec_json()),
            rerun_token: obj.common().rerun_token.clone(),
            rerun_requested_at: obj.annotations().get(RERUN_ANNOTATION).cloned(),
        }
    }

    fn observe(&self, obj: &K, status: &JobStatus) -> Decision {
        let errors = obj.validate_spec();
        let annotations = obj.annotations();
        let observed = Observed {
            now: Utc::now(),
            generation: obj.meta().generation.unwrap_or(0),
            trigger: Self::trigger(obj),
            common: obj.common(),
            status,
            invalid: (!errors.is_empty()).then(|| errors.to_string()),
            deleting: obj.meta().deletion_timestamp.is_some(),
            has_finalizer: obj.finalizers().iter().any(|f| f == FINALIZER),
            adopt_annotation: annotations.get(ADOPT_ANNOTATION).map(String::as_str),
            confirm_annotation: annotations
                .get(CONFIRM_NOT_SUBMITTED_ANNOTATION)
                .map(String::as_str),
            two_phase: obj.two_phase(),
            resolve_grace: self.ctx.config.resolve_grace,
        };
        decide(&observed)
    }

    /// Decides and acts.
    pub async fn run(self) -> Result<Action, Error> {
        let status = self.status();
        let mut decision = self.observe(&self.obj, &status);
        if decision == Decision::Start && self.started_here(&status).await {
            // Started by this process, `started` not yet written (the next write carries it):
            // following it is a poll, and counted as one.
            decision = Decision::Poll;
        }
        debug!(?decision, "reconcile");
        let label = match &decision {
            Decision::AddFinalizer => "add_finalizer",
            Decision::RemoveFinalizer { .. } => "remove_finalizer",
            Decision::CancelForDeletion => "cancel_for_deletion",
            Decision::Report { .. } => "report",
            Decision::Submit { .. } => "submit",
            Decision::AdoptIntoRun { .. } => "adopt",
            Decision::Resolve => "resolve",
            Decision::Start => "start",
            Decision::Poll => "poll",
            Decision::Cancel { .. } => "cancel",
            Decision::Idle { .. } => "idle",
        };
        self.ctx
            .metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind: self.kind,
                outcome: label,
            })
            .inc();
        match decision {
            Decision::AddFinalizer => self.set_finalizer(true).await,
            Decision::RemoveFinalizer { warning } => {
                if let Some(w) = warning {
                    self.event(EventType::Warning, "CleanupIncomplete", &w);
                }
                self.set_finalizer(false).await
            }
            Decision::CancelForDeletion => self.cancel_for_deletion(status).await,
            Decision::Report {
                phase,
                reason,
                message,
            } => {
                let run = status.run.clone();
                let new = render(
                    &status,
                    self.generation,
                    phase,
                    reason,
                    message,
                    run,
                    Utc::now(),
                );
                self.write(&status, new).await?;
                Ok(Action::await_change())
            }
            Decision::Submit {
                attempt,
                retries,
                adopt,
            } => self.submit(status, attempt, retries, adopt).await,
            Decision::AdoptIntoRun { job_id } => self.adopt_into_run(status, job_id).await,
            Decision::Resolve => self.resolve(status).await,
            Decision::Start => self.start(status).await,
            Decision::Poll => self.poll(status).await,
            Decision::Cancel { deadline } => self.cancel(status, deadline).await,
            Decision::Idle { requeue } => {
                // A control-field edit (suspend, cancel, ...) moves the generation without a
                // run: say that it was seen.
                if status.observed_generation != Some(self.generation)
                    && let Some(phase) = status.phase
                {
                    let why = status
                        .run
                        .as_ref()
                        .and_then(|r| r.reason.clone())
                        .unwrap_or_else(|| phase.to_string());
                    let message = status.message.clone().unwrap_or_default();
                    let new = render(
                        &status,
                        self.generation,
                        phase,
                        &why,
                        message,
                        status.run.clone(),
                        Utc::now(),
                    );
                    self.write(&status, new).await?;
                }
                Ok(requeue
                    .map(Action::requeue)
                    .unwrap_or_else(Action::await_change))
            }
        }
    }

    async fn connection(&self) -> Result<Resolved, ConnectionError> {
        self.ctx
            .connections
            .resolve(&self.ns, self.obj.common().connection_ref.as_ref())
            .await
    }

    /// Writes `new` over `old` as a minimal merge patch, only if the object is still at the
    /// resourceVersion this reconcile's decisions were made on (its own last write's, or the
    /// cached one's): a decision made on a stale cache must not overwrite what it did not see
    /// (409, and the next reconcile decides again). Publishes an Event when the phase changed.
    async fn write(&self, old: &JobStatus, new: JobStatus) -> Result<bool, Error> {
        let rv = self
            .rv
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Unnamed)?;
        self.write_at(old, new, &rv).await
    }

    /// [`Self::write`] against the object at `rv`.
    async fn write_at(&self, old: &JobStatus, new: JobStatus, rv: &str) -> Result<bool, Error> {
        let (Ok(old_v), Ok(new_v)) = (serde_json::to_value(old), serde_json::to_value(&new)) else {
            return Ok(false);
        };
        let Some(diff) = merge_diff(&old_v, &new_v) else {
            return Ok(false);
        };
        let patch = json!({ "metadata": { "resourceVersion": rv }, "status": diff });
        let written = self
            .api
            .patch_status(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Merge(&patch),
            )
            .await?;
        *self.rv.lock().unwrap_or_else(|e| e.into_inner()) = written.resource_version();
        {
            let hash = status_hash(written.job_status());
            let mut timings = self.ctx.timings.lock().await;
            if timings.written.len() > 4096 {
                timings
                    .written
                    .retain(|_, (_, at)| at.elapsed() < CACHE_CATCH_UP);
            }
            if timings.last_write.len() > 4096 {
                // An entry older than the interval throttles nothing.
                timings
                    .last_write
                    .retain(|_, at| at.elapsed() < PROGRESS_WRITE_INTERVAL);
            }
            let now = Instant::now();
            timings.written.insert(self.uid.clone(), (hash, now));
            timings.last_write.insert(self.uid.clone(), now);
        }
        let new_run = new.run.as_ref().map(|r| &r.key);
        let why = if new_run.is_some() && new_run != old.run.as_ref().map(|r| &r.key) {
            "intent"
        } else if progress_only(old, &new) {
            "progress"
        } else {
            "change"
        };
        self.ctx
            .metrics
            .status_writes
            .get_or_create(&ReconcileLabels {
                kind: self.kind,
                outcome: why,
            })
            .inc();
        if let Some(phase) = new.phase
            && old.phase != new.phase
        {
            self.ctx
                .metrics
                .phase_transitions
                .get_or_create(&PhaseLabels {
                    kind: self.kind,
                    phase: phase.as_str(),
                })
                .inc();
            let type_ = match phase {
                Phase::Failed | Phase::Unknown | Phase::Cancelled => EventType::Warning,
                _ => EventType::Normal,
            };
            let message = new.message.clone().unwrap_or_default();
            self.event(type_, phase.as_str(), &message);
        }
        Ok(true)
    }

    /// Writes until it lands (the record of a created job must not be lost), within a budget:
    /// on a conflict or an error, reads the object and writes against what it holds.
    /// `current` is the status this reconcile's own last write left.
    async fn write_until_landed(&self, current: &JobStatus, new: JobStatus) -> Result<(), Error> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        // Right after its own write the reconcile knows the object without a read.
        let mut known = Some(current.clone());
        loop {
            let attempt = match known.take() {
                Some(current) => self.write(&current, new.clone()).await,
                None => match self.api.get_status(&self.name).await {
                    Ok(o) => {
                        let current = o.job_status().cloned().unwrap_or_default();
                        let rv = o.resource_version().unwrap_or_default();
                        self.write_at(&current, new.clone(), &rv).await
                    }
                    Err(e) => Err(e.into()),
                },
            };
            match attempt {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() < ID_WRITE_BUDGET => {
                    if !matches!(&e, Error::Kube(kube::Error::Api(s)) if s.code == 409) {
                        warn!(error = %e, "recording the job id failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues an Event about this object (published off the reconcile path).
    fn event(&self, type_: EventType, reason: &str, note: &str) {
        let reference = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(self.name.clone()),
            namespace: Some(self.ns.clone()),
            uid: self.obj.meta().uid.clone(),
            resource_version: self.obj.meta().resource_version.clone(),
            ..Default::default()
        };
        let note: String = note.chars().take(1000).collect();
        let ev = Event {
            type_,
            reason: reason.chars().take(128).collect(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        self.ctx.events.publish(ev, reference);
    }

    fn record_call<T, E: std::ops::Deref<Target = BkError>>(
        &self,
        system: &'static str,
        call: &'static str,
        started: Instant,
        r: &Result<T, E>,
    ) {
        let out = match r {
            Ok(_) => "ok",
            Err(e) => outcome(e.class()),
        };
        self.ctx
            .metrics
            .bk_calls
            .get_or_create(&CallLabels {
                system,
                call,
                outcome: out,
            })
            .inc();
        self.ctx
            .metrics
            .bk_call_seconds
            .get_or_create(&CallKindLabels { system, call })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Ends `run` with `phase` (into history) and writes it; the next decision follows shortly.
    async fn end_run(
        &self,
        status: &JobStatus,
        mut run: RunStatus,
        phase: Phase,
        why: &'static str,
        message: String,
    ) -> Result<Action, Error> {
        let now = Utc::now();
        run.phase = phase;
        run.reason = Some(why.to_owned());
        run.completion_time = Some(now);
        let mut new = render(
            status,
            self.generation,
            phase,
            why,
            message,
            Some(run.clone()),
            now,
        );
        push_history(&mut new.history, &run);
        self.write(status, new).await?;
        Ok(after_run_end())
    }

    async fn set_finalizer(&self, present: bool) -> Result<Action, Error> {
        let mut finalizers: Vec<String> = self
            .obj
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        if present {
            finalizers.push(FINALIZER.to_owned());
        }
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": self.obj.resource_version()}});
        match self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(Action::await_change()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Ok(Action::requeue(Duration::from_millis(500)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stalls the object with a connection problem, keeping any run as it is.
    async fn report_connection(
        &self,
        status: &JobStatus,
        e: ConnectionError,
    ) -> Result<Action, Error> {
        if e.is_transient() {
            warn!(error = %e, "connection lookup failed");
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
        let in_flight = status.run.as_ref().is_some_and(|r| {
            matches!(
                r.phase,
                Phase::Submitting | Phase::Running | Phase::WaitingForUser
            )
        });
        let message = format!("cannot use the connection: {e}");
        let new = if in_flight {
            // The job runs on; only the message says why it is not followed.
            let mut s = status.clone();
            s.message = Some(message);
            s.observed_generation = Some(self.generation);
            s
        } else {
            render(
                status,
                self.generation,
                Phase::Failed,
                e.reason(),
                message,
                status.run.clone(),
                Utc::now(),
            )
        };
        self.write(status, new).await?;
        Ok(Action::requeue(Duration::from_secs(30)))
    }

    async fn submit(
        &self,
        status: JobStatus,
        attempt: u32,
        retries: u32,
        adopt: Option<String>,
    ) -> Result<Action, Error> {
        let key = run_key(&self.uid, self.generation, attempt);
        // A create reads its connection now: a deleted connection or a changed Secret counts
        // from the next create on.
        let looked_up = match adopt {
            None => {
                self.ctx
                    .connections
                    .resolve_fresh(&self.ns, self.obj.common().connection_ref.as_ref())
                    .await
            }
            Some(_) => self.connection().await,
        };
        let conn = match looked_up {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        // Build the call (or the adopted job's reference) before the intent: a spec that cannot
        // be mapped is reported like an invalid one, and nothing is fenced or sent.
        let mapped = match &adopt {
            Some(id) => self
                .obj
                .job_ref(id, &conn.defaults)
                .map(|r| (None, Some(r))),
            None => self
                .obj
                .create_request(&key, &conn.defaults)
                .map(|r| (Some(r), None)),
        };
        let (request, adopt_ref) = match mapped {
            Ok(m) => m,
            Err(e) => return self.refuse(&status, Refusal::Spec(e.to_string())).await,
        };
        // What bkops itself refuses is refused here, before the intent: a body its client would
        // not send, or a call the connection cannot make. Found only after the intent, it would
        // read as BlueKing's refusal of a call that was never made.
        if let Some(req) = &request {
            if let Err(e) = req.validate() {
                return self.refuse(&status, Refusal::Spec(e.to_string())).await;
            }
            if let Some(u) = conn.client.unsupported(req) {
                return self
                    .refuse(
                        &status,
                        Refusal::Connection(unsupported_message(&conn.id, u)),
                    )
                    .await;
            }
        }

        // The create's rate-limit token is taken before the intent, so that the create follows
        // the intent at once (a create is made only right after its intent landed). Waited
        // for after the intent, the token can take as long as the limit and the crowd of jobs
        // make it (minutes, for thousands of jobs at the default limit), and an operator stopped
        // in that wait (a rolling update) leaves each such run Submitting with no job: `Unknown`,
        // for a person to resolve, once restarted.
        let ticket = match &request {
            Some(_) => Some(conn.client.create_ticket().await),
            None => None,
        };

        // The fence: the intent is written only if the object is still at the
        // resourceVersion this decision was made on. The API server compares and swaps, so a
        // write that lands proves the cached copy was the current object; a stale cache, a
        // person's edit or another operator makes it fail with 409, and no call is made.
        // (Reading the object fresh first would only narrow the window for a conflict, at a
        // request per submission on a busy API server.)
        let generation = self.generation;
        let trigger = Self::trigger(&self.obj);
        let now = Utc::now();
        let mut base = status.clone();
        if let Some(previous) = &base.run
            && previous.key != key
            && previous.phase != Phase::Pending
        {
            push_history(&mut base.history, previous);
        }
        if trigger.rerun_requested_at.is_some() {
            base.last_handled_rerun_at = trigger.rerun_requested_at.clone();
        }
        let run = RunStatus {
            key: key.clone(),
            generation,
            attempt,
            spec_hash: trigger.spec_hash.clone(),
            rerun_token: trigger.rerun_token.clone(),
            rerun_requested_at: trigger.rerun_requested_at.clone(),
            retries,
            phase: Phase::Submitting,
            intent_at: Some(now),
            // A create tried again after it could not be made keeps the time of the first try.
            deferred_since: status
                .run
                .as_ref()
                .filter(|r| r.key == key && r.phase == Phase::Pending)
                .and_then(|r| r.deferred_since),
            ..Default::default()
        };
        let intent = render(
            &base,
            generation,
            Phase::Submitting,
            reason::SUBMITTING,
            format!("submitting run {key}"),
            Some(run.clone()),
            now,
        );
        match self.write(&status, intent.clone()).await {
            Ok(_) => {}
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {
                debug!("the object moved since this decision; no BlueKing call, deciding again");
                return Ok(Action::requeue(Duration::from_millis(500)));
            }
            Err(e) => return Err(e),
        }

        if let Some(job) = adopt_ref {
            self.ctx
                .metrics
                .submissions
                .get_or_create(&SubmissionLabels {
                    kind: self.kind,
                    outcome: "adopted",
                })
                .inc();
            info!(%key, job = %job, "following an existing job (adoptJobId)");
            return self
                .record_job(Record::Created(&intent), run, job, None, true, false)
                .await;
        }
        let (Some(request), Some(ticket)) = (request, ticket) else {
            return Ok(Action::await_change());
        };
        let system = K::SYSTEM.as_str();
        let started = Instant::now();
        let result = conn.client.submit_with(ticket, &request).await;
        self.record_call(system, "create", started, &result.as_ref());
        match result {
            Ok(sub) => {
                self.ctx
                    .metrics
                    .submissions
                    .get_or_create(&SubmissionLabels {
                        kind: self.kind,
                        outcome: "submitted",
                    })
                    .inc();
                info!(%key, job = %sub.job, "submitted");
                let needs_start = sub.needs_start;
                self.record_job(
                    Record::Created(&intent),
                    run,
                    sub.job,
                    sub.job_url,
                    false,
                    needs_start,
                )
                .await
            }
            Err(e) => {
                let class = e.class();
                self.ctx
                    .metrics
                    .submissions
                    .get_or_create(&SubmissionLabels {
                        kind: self.kind,
                        outcome: outcome(class),
                    })
                    .inc();
                warn!(%key, error = %e, class = outcome(class), "create failed");
                let mut run = run;
                let now = Utc::now();
                let (phase, why, message, next) = match class {
                    // Refused by the client itself (the checks before the intent make this
                    // rare): no call was made, so it is not BlueKing's refusal.
                    ErrorClass::Rejected if e.call().is_none() => {
                        run.phase = Phase::Failed;
                        run.completion_time = Some(now);
                        let why = match &e {
                            BkError::Config(_) => reason::CONNECTION_UNSUPPORTED,
                            _ => reason::INVALID_SPEC,
                        };
                        (
                            Phase::Failed,
                            why,
                            format!(
                                "bkops refused run {key} before calling BlueKing; nothing was sent: {e}"
                            ),
                            Action::requeue(Duration::from_secs(30)),
                        )
                    }
                    ErrorClass::Rejected => {
                        run.phase = Phase::Failed;
                        run.completion_time = Some(now);
                        (
                            Phase::Failed,
                            reason::SUBMISSION_REJECTED,
                            format!("BlueKing refused run {key}; nothing ran: {e}"),
                            Action::requeue(Duration::from_secs(1)),
                        )
                    }
                    ErrorClass::Transient => {
                        run.phase = Phase::Pending;
                        let since = *run.deferred_since.get_or_insert(now);
                        let unreachable = matches!(e, BkError::Transport { .. });
                        let why = crate::run::deferral(
                            unreachable,
                            since,
                            now,
                            self.ctx.config.submit_stall,
                        );
                        let message = if why == reason::SUBMIT_DEFERRED {
                            format!("run {key} not submitted yet (nothing was created): {e}")
                        } else {
                            format!(
                                "run {key} not submitted for {} s through BkConnection {}{}: {e}; nothing was created, still trying every {} s",
                                (now - since).num_seconds(),
                                conn.id,
                                if unreachable {
                                    " (BlueKing does not answer)"
                                } else {
                                    ""
                                },
                                crate::run::SUBMIT_DEFER.as_secs()
                            )
                        };
                        (
                            Phase::Pending,
                            why,
                            message,
                            Action::requeue(crate::run::SUBMIT_DEFER),
                        )
                    }
                    ErrorClass::Ambiguous => (
                        Phase::Submitting,
                        reason::RESOLVING,
                        format!(
                            "the create of run {key} may or may not have happened ({e}); searching BlueKing for it"
                        ),
                        Action::requeue(Duration::from_secs(2)),
                    ),
                };
                run.reason = Some(why.to_owned());
                let mut new = render(
                    &intent,
                    self.generation,
                    phase,
                    why,
                    message,
                    Some(run.clone()),
                    now,
                );
                if phase == Phase::Failed {
                    push_history(&mut new.history, &run);
                }
                self.write_until_landed(&intent, new).await?;
                Ok(next)
            }
        }
    }

    /// Reports a run bkops refuses before its intent: nothing is recorded as a run and nothing
    /// is sent. A spec problem waits for a spec change; a connection problem is looked at again
    /// every 30 s, as the connection can change without the job changing.
    async fn refuse(&self, status: &JobStatus, refusal: Refusal) -> Result<Action, Error> {
        let (why, message, next) = match refusal {
            Refusal::Spec(problem) => (
                reason::INVALID_SPEC,
                crate::run::invalid_spec_message(&problem),
                Action::await_change(),
            ),
            Refusal::Connection(message) => (
                reason::CONNECTION_UNSUPPORTED,
                message,
                Action::requeue(Duration::from_secs(30)),
            ),
        };
        let new = render(
            status,
            self.generation,
            Phase::Failed,
            why,
            message,
            status.run.clone(),
            Utc::now(),
        );
        self.write(status, new).await?;
        Ok(next)
    }

    /// Records the job of `run` (created or adopted), then starts it where needed.
    async fn record_job(
        &self,
        base: Record<'_>,
        mut run: RunStatus,
        job: JobRef,
        job_url: Option<String>,
        adopted: bool,
        needs_start: bool,
    ) -> Result<Action, Error> {
        let now = Utc::now();
        run.job_id = Some(job.id());
        run.job_url = job_url;
        run.adopted = adopted;
        run.submitted_at = Some(now);
        run.phase = Phase::Running;
        run.reason = Some(reason::RUNNING.to_owned());
        let verb = if adopted { "following" } else { "submitted" };
        let message = format!("{verb} {job} (run {})", run.key);
        let new = render(
            base.status(),
            self.generation,
            Phase::Running,
            reason::RUNNING,
            message,
            Some(run.clone()),
            now,
        );
        match base {
            Record::Created(current) => self.write_until_landed(current, new.clone()).await?,
            Record::Decided(seen) => {
                self.write(seen, new.clone()).await?;
            }
        }
        self.ctx
            .timings
            .lock()
            .await
            .recorded
            .insert(self.uid.clone(), run.key.clone());
        if needs_start {
            return self.start_job(new, run, job).await;
        }
        Ok(Action::requeue(poll_interval(self.ctx, &run)))
    }

    async fn start_job(
        &self,
        status: JobStatus,
        run: RunStatus,
        job: JobRef,
    ) -> Result<Action, Error> {
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        let started = Instant::now();
        let result = conn.client.start(&job).await;
        self.record_call(K::SYSTEM.as_str(), "start", started, &result.as_ref());
        match result {
            Ok(()) => {
                self.ctx
                    .timings
                    .lock()
                    .await
                    .started
                    .insert(self.uid.clone(), run.key.clone());
                Ok(Action::requeue(poll_interval(self.ctx, &run)))
            }
            Err(e) if e.class() == ErrorClass::Rejected => {
                let message = format!("BlueKing refused to start {job}: {e}");
                self.end_run(&status, run, Phase::Failed, reason::JOB_FAILED, message)
                    .await
            }
            Err(e) => {
                warn!(error = %e, "start failed; will retry");
                Ok(Action::requeue(Duration::from_secs(3)))
            }
        }
    }

    async fn start(&self, status: JobStatus) -> Result<Action, Error> {
        let Some(run) = status.run.clone() else {
            return Ok(Action::await_change());
        };
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        let job = match self.followed_job(&run, &conn) {
            Ok(job) => job,
            Err(why) => return self.cannot_follow(&status, run, why).await,
        };
        self.start_job(status, run, job).await
    }

    /// Whether this process started the run's job already (the start call answered) and its
    /// `started` is still to be written.
    async fn started_here(&self, status: &JobStatus) -> bool {
        let Some(run) = &status.run else {
            return false;
        };
        self.ctx.timings.lock().await.started.get(&self.uid) == Some(&run.key)
    }

    async fn adopt_into_run(&self, status: JobStatus, job_id: String) -> Result<Action, Error> {
        let Some(run) = status.run.clone() else {
            return Ok(Action::await_change());
        };
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        let job = match self.obj.job_ref(&job_id, &conn.defaults) {
            Ok(j) => j,
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "AdoptRefused",
                    &format!("cannot adopt job {job_id}: {e}"),
                );
                return Ok(Action::await_change());
            }
        };
        self.event(
            EventType::Normal,
            "Adopted",
            &format!("a person named {job} as the job of run {}", run.key),
        );
        let two_phase = self.obj.two_phase();
        self.record_job(Record::Decided(&status), run, job, None, true, two_phase)
            .await
    }

    async fn resolve(&self, status: JobStatus) -> Result<Action, Error> {
        let Some(run) = status.run.clone() else {
            return Ok(Action::await_change());
        };
        // This process recorded the run's job: the cache has not caught up with that write yet
        // (a busy API server's watch can lag by seconds). Nothing to resolve; look again soon.
        if self.ctx.timings.lock().await.recorded.get(&self.uid) == Some(&run.key) {
            debug!(key = %run.key, "cache behind the recorded job id; waiting for it");
            return Ok(Action::requeue(Duration::from_millis(500)));
        }
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        if let Some(last) = self.ctx.timings.lock().await.last_poll.get(&self.uid)
            && last.elapsed() < self.ctx.config.poll_initial
        {
            return Ok(Action::requeue(self.ctx.config.poll_initial));
        }
        let now = Utc::now();
        let intent_at = run.intent_at.unwrap_or(now);
        let target = match self.obj.search_target(&conn.defaults) {
            Ok(t) => t,
            Err(e) => {
                let message = format!("cannot search for run {}: {e}", run.key);
                return self
                    .unknown(&status, run, reason::UNKNOWN_SUBMISSION, message)
                    .await;
            }
        };
        let query = SearchQuery {
            key: run.key.clone(),
            creator: self.obj.creator(&conn.defaults),
            since: crate::run::shifted(intent_at, -60).unwrap_or(intent_at),
            until: crate::run::shifted(now, 60).unwrap_or(now),
            target,
        };
        self.ctx
            .timings
            .lock()
            .await
            .last_poll
            .insert(self.uid.clone(), Instant::now());
        let started = Instant::now();
        let result = conn.client.search(&query).await;
        self.record_call(K::SYSTEM.as_str(), "search", started, &result.as_ref());
        let searched = match result {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "search failed");
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
        };
        // Jobs of this object's earlier runs, and jobs other objects follow, are not this run's.
        let earlier: Vec<String> = status
            .history
            .iter()
            .filter_map(|h| h.job_id.clone())
            .collect();
        let claimed = self.ctx.claimed_jobs(self.kind, &self.uid);
        let found: Vec<Found> = searched
            .candidates
            .iter()
            .map(|c| {
                let id = c.job.id();
                let claimed_by = if earlier.contains(&id) {
                    Some("an earlier run of this object".to_owned())
                } else {
                    claimed.get(&id).cloned()
                };
                Found {
                    id,
                    key_matched: c.key_matched,
                    content_matched: c.content_matched,
                    claimed_by,
                }
            })
            .collect();
        let grace = resolve::grace(self.ctx.config.resolve_grace, conn.client.timeout());
        let searched_for = (now - intent_at).to_std().unwrap_or_default();
        let outcome = resolve::resolution(
            &found,
            K::SYSTEM.stores_run_key(),
            searched.complete,
            searched_for,
            grace,
        );
        debug!(
            candidates = found.len(),
            ?outcome,
            "searched for an unclear create"
        );
        match outcome {
            Resolution::Adopt(id) => {
                let Some(job) = searched
                    .candidates
                    .into_iter()
                    .map(|c| c.job)
                    .find(|j| j.id() == id)
                else {
                    return Ok(Action::requeue(Duration::from_secs(2)));
                };
                if !self.ctx.claim_job(self.kind, &id, &self.uid) {
                    // Another object of this process adopted it a moment ago: look again.
                    return Ok(Action::requeue(Duration::from_secs(2)));
                }
                self.count_submission("found");
                self.event(
                    EventType::Normal,
                    "Found",
                    &format!("found {job} for run {} after an unclear create", run.key),
                );
                let two_phase = self.obj.two_phase();
                self.record_job(Record::Decided(&status), run, job, None, true, two_phase)
                    .await
            }
            Resolution::Wait => Ok(Action::requeue(
                Duration::from_secs(2).min(self.ctx.config.resolve_grace),
            )),
            Resolution::NotSubmitted => {
                self.count_submission("not_found");
                let note = format!(
                    "no {} job carries run {}'s key {} s after its intent: nothing was created; submitting again",
                    K::SYSTEM,
                    run.key,
                    searched_for.as_secs()
                );
                info!(key = %run.key, "{note}");
                self.event(EventType::Normal, reason::SUBMISSION_NOT_FOUND, &note);
                // The run that created nothing leaves no history entry.
                let mut base = status;
                let (attempt, retries) = (run.attempt + 1, run.retries);
                if let Some(r) = base.run.as_mut() {
                    r.phase = Phase::Pending;
                    r.reason = Some(reason::SUBMISSION_NOT_FOUND.to_owned());
                }
                self.submit(base, attempt, retries, None).await
            }
            Resolution::Unknown {
                reason: why,
                plausible,
            } => {
                let message = if plausible.is_empty() {
                    format!(
                        "whether run {} was submitted is unknown: the create got no clear answer and no job matching it was found. \
                         Check BlueKing, then annotate {ADOPT_ANNOTATION}=<job id> to follow the job, or \
                         {CONFIRM_NOT_SUBMITTED_ANNOTATION}={} to submit again",
                        run.key, run.key
                    )
                } else {
                    format!(
                        "whether run {} was submitted is unknown: {} could be its job ({}). Check BlueKing, then annotate \
                         {ADOPT_ANNOTATION}=<job id> to follow one, or {CONFIRM_NOT_SUBMITTED_ANNOTATION}={} if none is",
                        run.key,
                        if plausible.len() == 1 {
                            "this job"
                        } else {
                            "these jobs"
                        },
                        plausible.join(", "),
                        run.key
                    )
                };
                self.event(EventType::Warning, why, &message);
                self.unknown(&status, run, why, message).await
            }
        }
    }

    /// The reference of the job `run` follows, or why there is none.
    fn followed_job(&self, run: &RunStatus, conn: &Resolved) -> Result<JobRef, String> {
        let id = run
            .job_id
            .as_deref()
            .ok_or_else(|| format!("run {} has no job id", run.key))?;
        self.obj
            .job_ref(id, &conn.defaults)
            .map_err(|e| format!("cannot address job {id} of run {}: {e}", run.key))
    }

    /// A run whose job cannot be addressed (say the connection's BKFlow space id was removed):
    /// nothing is polled, started or cancelled; the status says so, `Stalled`, and the object is
    /// looked at again every 30 s (a fix to the connection does not touch the object).
    async fn cannot_follow(
        &self,
        status: &JobStatus,
        run: RunStatus,
        why: String,
    ) -> Result<Action, Error> {
        warn!(error = %why, "cannot follow the job");
        let phase = status.phase.unwrap_or(run.phase);
        let message = format!(
            "{why}. The job is not followed until the spec or the connection addresses it again"
        );
        if status.message.as_deref() != Some(message.as_str()) {
            let new = render(
                status,
                self.generation,
                phase,
                reason::JOB_UNADDRESSABLE,
                message,
                Some(run),
                Utc::now(),
            );
            self.write(status, new).await?;
        }
        Ok(Action::requeue(Duration::from_secs(30)))
    }

    fn count_submission(&self, outcome: &'static str) {
        self.ctx
            .metrics
            .submissions
            .get_or_create(&SubmissionLabels {
                kind: self.kind,
                outcome,
            })
            .inc();
    }

    async fn unknown(
        &self,
        status: &JobStatus,
        mut run: RunStatus,
        why: &'static str,
        message: String,
    ) -> Result<Action, Error> {
        run.phase = Phase::Unknown;
        run.reason = Some(why.to_owned());
        let new = render(
            status,
            self.generation,
            Phase::Unknown,
            why,
            message,
            Some(run),
            Utc::now(),
        );
        self.write(status, new).await?;
        Ok(Action::await_change())
    }

    async fn poll(&self, status: JobStatus) -> Result<Action, Error> {
        let Some(run) = status.run.clone() else {
            return Ok(Action::await_change());
        };
        if let Some(last) = self.ctx.timings.lock().await.last_poll.get(&self.uid) {
            let due = poll_interval(self.ctx, &run);
            if last.elapsed() < due.mul_f64(0.5) {
                return Ok(Action::requeue(due - last.elapsed().min(due)));
            }
        }
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        let job = match self.followed_job(&run, &conn) {
            Ok(job) => job,
            Err(why) => return self.cannot_follow(&status, run, why).await,
        };
        self.ctx
            .timings
            .lock()
            .await
            .last_poll
            .insert(self.uid.clone(), Instant::now());
        let started = Instant::now();
        let result = match &job {
            JobRef::Bkflow { space_id, task_id } => {
                self.ctx
                    .bkflow_batch
                    .progress(&conn, *space_id, *task_id)
                    .await
            }
            _ => conn.client.progress(&job).await.map_err(Arc::new),
        };
        self.record_call(K::SYSTEM.as_str(), "poll", started, &result);
        let progress = match result {
            Ok(p) => p,
            Err(e) if e.is_not_found() => {
                let message = format!("{job} no longer exists in BlueKing: {e}");
                return self
                    .end_run(&status, run, Phase::Failed, reason::JOB_FAILED, message)
                    .await;
            }
            Err(e) => {
                warn!(error = %e, "poll failed; will poll again");
                let wait = e
                    .retry_after()
                    .unwrap_or_else(|| poll_interval(self.ctx, &run));
                return Ok(Action::requeue(wait));
            }
        };
        if progress.phase == JobPhase::NotStarted && self.obj.two_phase() {
            let mut run = run;
            run.started = false;
            let new = render(
                &status,
                self.generation,
                Phase::Running,
                reason::RUNNING,
                status.message.clone().unwrap_or_default(),
                Some(run.clone()),
                Utc::now(),
            );
            return self.start_job(new, run, job).await;
        }
        let now = Utc::now();
        let (mut new_run, mut message) = apply_progress(&run, &progress, now);
        if self.obj.two_phase() && progress.phase != JobPhase::NotStarted {
            new_run.started = true;
        }
        if run.cancel_requested_at.is_some() && !self.obj.can_cancel() && !new_run.phase.is_final()
        {
            message = format!(
                "{} has no cancel call; following {job} to its end: {message}",
                K::SYSTEM.as_str()
            );
        }
        let phase = new_run.phase;
        let why = new_run.reason.clone().unwrap_or_default();
        let mut new = render(
            &status,
            self.generation,
            phase,
            &why,
            message,
            Some(new_run.clone()),
            now,
        );
        if phase.is_final() {
            push_history(&mut new.history, &new_run);
            self.write(&status, new).await?;
            self.ctx.timings.lock().await.forget(&self.uid);
            return Ok(after_run_end());
        }
        let throttled = progress_only(&status, &new)
            && self
                .ctx
                .timings
                .lock()
                .await
                .last_write
                .get(&self.uid)
                .is_some_and(|t| t.elapsed() < PROGRESS_WRITE_INTERVAL);
        if !throttled {
            self.write(&status, new).await?;
        }
        Ok(Action::requeue(poll_interval(self.ctx, &new_run)))
    }

    async fn cancel(&self, status: JobStatus, deadline: bool) -> Result<Action, Error> {
        let Some(mut run) = status.run.clone() else {
            return Ok(Action::await_change());
        };
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        let job = match self.followed_job(&run, &conn) {
            Ok(job) => job,
            Err(why) => return self.cannot_follow(&status, run, why).await,
        };
        let started = Instant::now();
        let result = conn.client.cancel(&job).await;
        self.record_call(K::SYSTEM.as_str(), "cancel", started, &result.as_ref());
        let now = Utc::now();
        let outcome = match result {
            Ok(o) => o,
            Err(e) if e.class() == ErrorClass::Transient => {
                warn!(error = %e, "cancel failed; will retry");
                return Ok(Action::requeue(Duration::from_secs(3)));
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "CancelFailed",
                    &format!("BlueKing refused to cancel {job}: {e}"),
                );
                CancelOutcome::NotSupported
            }
        };
        run.cancel_requested_at = Some(now);
        let cancellable = outcome != CancelOutcome::NotSupported;
        if !cancellable {
            let note = format!(
                "{} cannot cancel {job}; it may still be running",
                K::SYSTEM.as_str()
            );
            self.event(EventType::Warning, "CancelNotSupported", &note);
        } else {
            self.event(
                EventType::Normal,
                "CancelRequested",
                &format!("cancel requested for {job}"),
            );
        }
        if deadline {
            let secs = self
                .obj
                .common()
                .active_deadline_seconds
                .unwrap_or_default();
            let tail = if cancellable {
                "cancelled it"
            } else {
                "the system has no cancel call, so it may still be running"
            };
            let message = format!("activeDeadlineSeconds ({secs}s) passed; {job}: {tail}");
            return self
                .end_run(
                    &status,
                    run,
                    Phase::Failed,
                    reason::DEADLINE_EXCEEDED,
                    message,
                )
                .await;
        }
        let message = if cancellable {
            format!("cancel requested for {job}")
        } else {
            format!(
                "{} has no cancel call; following {job} to its end",
                K::SYSTEM.as_str()
            )
        };
        let phase = status.phase.unwrap_or(Phase::Running);
        let why = run
            .reason
            .clone()
            .unwrap_or_else(|| reason::RUNNING.to_owned());
        let new = render(
            &status,
            self.generation,
            phase,
            &why,
            message,
            Some(run.clone()),
            now,
        );
        self.write(&status, new).await?;
        Ok(Action::requeue(Duration::from_millis(500)))
    }

    async fn cancel_for_deletion(&self, status: JobStatus) -> Result<Action, Error> {
        let Some(mut run) = status.run.clone() else {
            return self.set_finalizer(false).await;
        };
        let deleted_for = self
            .obj
            .meta()
            .deletion_timestamp
            .as_ref()
            .map(|t| Utc::now().timestamp() - t.0.as_second())
            .unwrap_or(0);
        let give_up = deleted_for > DELETE_CANCEL_BUDGET.num_seconds();
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                self.event(EventType::Warning, "CleanupIncomplete", &format!("deleted with deletionPolicy Cancel, but the connection is unusable ({e}); the job was not cancelled"));
                return self.set_finalizer(false).await;
            }
        };
        let job = match self.followed_job(&run, &conn) {
            Ok(job) => job,
            Err(why) => {
                self.event(
                    EventType::Warning,
                    "CleanupIncomplete",
                    &format!(
                        "deleted with deletionPolicy Cancel, but {why}; the job was not cancelled"
                    ),
                );
                return self.set_finalizer(false).await;
            }
        };
        let started = Instant::now();
        let result = conn.client.cancel(&job).await;
        self.record_call(K::SYSTEM.as_str(), "cancel", started, &result.as_ref());
        match result {
            Ok(CancelOutcome::NotSupported) => {
                self.event(EventType::Warning, "CancelNotSupported", &format!("deleted with deletionPolicy Cancel, but {} cannot cancel {job}; it may still be running", K::SYSTEM.as_str()));
            }
            Ok(_) => self.event(
                EventType::Normal,
                "CancelledOnDelete",
                &format!("cancel requested for {job} before deletion"),
            ),
            Err(e) if e.class() == ErrorClass::Transient && !give_up => {
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "CleanupIncomplete",
                    &format!("cancelling {job} failed ({e}); letting the object go"),
                );
            }
        }
        run.cancel_requested_at = Some(Utc::now());
        let mut new = status.clone();
        new.run = Some(run);
        let _ = self.write(&status, new).await;
        self.set_finalizer(false).await
    }
}

/// Shared handle used by the per-kind controllers.
pub type Ctx = Arc<Context>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bk::System;
    use crate::controller::metrics::Metrics;

    #[test]
    fn a_connection_refusal_names_the_connection_whose_it_is_and_what_to_change() {
        let m = unsupported_message("prod/blueking", Unsupported::JobV2OverGateway);
        assert!(m.starts_with("BkConnection \"prod/blueking\" cannot make this call (JOB v2 execute_job exists only on the legacy ESB"), "{m}");
        assert!(
            m.contains("bkops refused the run, nothing was sent to BlueKing: set jobApi: v3"),
            "{m}"
        );
        let m = unsupported_message("prod/esb", Unsupported::NoEndpoint(System::Bkflow));
        assert!(
            m.contains("(no endpoint for BKFlow)")
                && m.ends_with(
                    "add a BKFlow endpoint to the BkConnection, or use another BkConnection"
                ),
            "{m}"
        );
    }

    /// A context whose API server is never reached (these tests make no request).
    fn context() -> Context {
        let unreachable = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, _>(std::io::Error::other("no API server"))
        });
        Context::new(
            kube::Client::new(unreachable, "ns"),
            super::super::context::OperatorConfig::default(),
            Arc::new(Metrics::default()),
        )
    }

    fn object(status: Option<&JobStatus>) -> super::super::cached::CachedObject {
        let mut o = serde_json::json!({
            "apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {},
        });
        if let Some(s) = status {
            o["status"] = serde_json::to_value(s).expect("a status serializes");
        }
        serde_json::from_str(&o.to_string()).expect("an object")
    }

    fn waits(ctx: &Context) -> u64 {
        ctx.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind: "ProcessJob",
                outcome: "await_cache",
            })
            .get()
    }

    #[tokio::test]
    async fn a_reconcile_waits_only_until_the_cache_shows_its_own_last_write() {
        let ctx = context();
        let written = JobStatus {
            phase: Some(Phase::Running),
            message: Some("job 7 running".into()),
            ..Default::default()
        };
        let older = JobStatus {
            phase: Some(Phase::Submitting),
            ..Default::default()
        };
        // Nothing written by this process: nothing to wait for.
        assert_eq!(
            behind_own_write(&ctx, "ProcessJob", &object(Some(&older))).await,
            None
        );

        ctx.timings
            .lock()
            .await
            .written
            .insert("u-1".into(), (status_hash(Some(&written)), Instant::now()));
        let (shortest, longest) = CACHE_CATCH_UP_STEPS;
        assert_eq!(
            behind_own_write(&ctx, "ProcessJob", &object(Some(&older))).await,
            Some(shortest)
        );
        assert_eq!(
            behind_own_write(&ctx, "ProcessJob", &object(None)).await,
            Some(shortest)
        );
        assert_eq!(waits(&ctx), 2);
        // The cache shows the write: decide, and forget the wait.
        assert_eq!(
            behind_own_write(&ctx, "ProcessJob", &object(Some(&written))).await,
            None
        );
        assert!(ctx.timings.lock().await.written.is_empty());
        assert_eq!(
            behind_own_write(&ctx, "ProcessJob", &object(Some(&older))).await,
            None
        );

        // A lag of seconds is looked at less often.
        let seconds_ago = |secs| {
            Instant::now()
                .checked_sub(Duration::from_secs(secs))
                .expect("the clock is past it")
        };
        ctx.timings
            .lock()
            .await
            .written
            .insert("u-1".into(), (status_hash(Some(&written)), seconds_ago(4)));
        let step = behind_own_write(&ctx, "ProcessJob", &object(Some(&older)))
            .await
            .expect("still behind");
        assert!(step >= Duration::from_secs(1) && step < longest, "{step:?}");
        ctx.timings
            .lock()
            .await
            .written
            .insert("u-1".into(), (status_hash(Some(&written)), seconds_ago(20)));
        assert_eq!(
            behind_own_write(&ctx, "ProcessJob", &object(Some(&older))).await,
            Some(longest)
        );
        assert_eq!(waits(&ctx), 4);

        // A cache that never shows it (someone else wrote status since) is waited on no longer
        // than CACHE_CATCH_UP.
        let long_ago = Instant::now()
            .checked_sub(CACHE_CATCH_UP + Duration::from_secs(1))
            .expect("the clock is past it");
        ctx.timings
            .lock()
            .await
            .written
            .insert("u-1".into(), (status_hash(Some(&written)), long_ago));
        assert_eq!(
            behind_own_write(&ctx, "ProcessJob", &object(Some(&older))).await,
            None
        );
        assert_eq!(waits(&ctx), 4);
    }
}
