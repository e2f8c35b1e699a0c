//! Carrying out [`decide`]'s decisions, one small step per module: the fenced intent and the one
//! create ([`submit`]), the record of the job ([`record`]), the start ([`start`]), the search
//! after an unclear create ([`search`]), polls ([`follow`]), cancels ([`cancel`]) and deletion
//! ([`finalize`]); the status writes they share are in [`write`].
//!
//! Everything here works through the traits of [`seams`]: the operator passes its BlueKing
//! client and kube, the protocol simulation in-memory fakes.

mod cancel;
mod connection_error;
mod finalize;
mod follow;
mod gate;
mod own;
mod record;
mod records;
pub mod seams;
mod search;
mod start;
mod submit;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::api::JobStatus;
use crate::api::common::{ADOPT_ANNOTATION, CONFIRM_NOT_SUBMITTED_ANNOTATION, FINALIZER};
use crate::bk::{BkError, ErrorClass};
use crate::run::status::render;
use crate::run::{Decision, JobKind, Observed, Trigger, decide};

pub use connection_error::ConnectionError;
pub use follow::{interval, poll_interval, progress_write_due};
pub use own::{CACHE_CATCH_UP, CACHE_CATCH_UP_STEPS, Known, OwnWrites, reconcile};
pub use records::{adopted_run, gitops_source, needs_record, newest, record_name};
pub use seams::{
    Clock, Connection, Connections, Counters, JobSystem, NoCounters, ObjectStore, Severity,
    StoreError, SystemClock,
};
pub use submit::{CreateFailure, create_failure, unsupported_message};
pub use write::{Timings, over_fresh};

/// What the lifecycle is told about timing and its windows.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// How long creates of a run may go unmade before the run is reported `Stalled`.
    pub submit_stall: Duration,
    /// How long after its intent an unclear create is searched for before the search concludes.
    pub resolve_grace: Duration,
    /// First poll interval of a run.
    pub poll_initial: Duration,
    /// Longest poll interval.
    pub poll_max: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            submit_stall: Duration::from_secs(300),
            resolve_grace: Duration::from_secs(240),
            poll_initial: Duration::from_secs(2),
            poll_max: Duration::from_secs(30),
        }
    }
}

/// What every run of one process shares: the seams, the settings, and what this process
/// remembers between reconciles (never written to status).
pub struct Lifecycle<S, C> {
    /// The object store.
    pub store: S,
    /// The connections to job systems.
    pub connections: C,
    /// Timing and windows.
    pub config: RunConfig,
    /// Where steps are counted.
    pub counters: Arc<dyn Counters>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// In-memory per-object timings.
    pub timings: tokio::sync::Mutex<Timings>,
    /// The objects this process's writes returned, until the cache shows them.
    own: std::sync::Mutex<OwnWrites>,
    /// Jobs this process adopted after a search, by kind and job id: the object's uid. Closes the
    /// window before the adopting object's status shows the job in the cache.
    adopted: std::sync::Mutex<HashMap<(&'static str, String), String>>,
    /// The run records this process wrote, and those whose write failed.
    records: std::sync::Mutex<records::RecordBook>,
}

impl<S: ObjectStore, C: Connections> Lifecycle<S, C> {
    /// A lifecycle over these seams.
    pub fn new(
        store: S,
        connections: C,
        config: RunConfig,
        counters: Arc<dyn Counters>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Lifecycle {
            store,
            connections,
            config,
            counters,
            clock,
            timings: tokio::sync::Mutex::new(Timings::default()),
            own: std::sync::Mutex::new(OwnWrites::default()),
            adopted: std::sync::Mutex::new(HashMap::new()),
            records: std::sync::Mutex::new(records::RecordBook::default()),
        }
    }

    /// The job ids that objects of `kind` other than `uid` follow or followed (as the caches show
    /// them, and adoptions this process made), each with who.
    pub fn claimed_jobs(&self, kind: &'static str, uid: &str) -> HashMap<String, String> {
        let mut claimed = self.store.claimed_jobs(kind, uid);
        let adopted = self.adopted.lock().unwrap_or_else(|e| e.into_inner());
        for ((k, id), owner) in adopted.iter() {
            if *k == kind && owner != uid {
                claimed
                    .entry(id.clone())
                    .or_insert_with(|| format!("object {owner}"));
            }
        }
        claimed
    }

    /// Whether a run record of object `uid` waits to be written again.
    pub fn record_pending(&self, uid: &str) -> bool {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending(uid)
    }

    /// Notes that `uid` adopts `job_id` after a search; `false` when another object of `kind`
    /// did first (in this process).
    pub fn claim_job(&self, kind: &'static str, job_id: &str, uid: &str) -> bool {
        let mut adopted = self.adopted.lock().unwrap_or_else(|e| e.into_inner());
        let owner = adopted
            .entry((kind, job_id.to_owned()))
            .or_insert_with(|| uid.to_owned());
        owner == uid
    }
}

/// What the reconcile asks of its queue next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Look at the object again after this long.
    Requeue(Duration),
    /// Wait for the object to change.
    AwaitChange,
}

/// Errors of one reconcile; each has a short category for metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object store refused or failed a call.
    #[error("object store: {0}")]
    Store(#[from] StoreError),
    /// The object has no namespace, name or resourceVersion (cannot happen for a namespaced
    /// object read from the API server).
    #[error("object without namespace, name or resourceVersion")]
    Unnamed,
}

impl Error {
    /// Stable category for labels.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Store(StoreError::Conflict) => "conflict",
            Error::Store(_) => "kubernetes",
            Error::Unnamed => "unnamed",
        }
    }

    fn is_conflict(&self) -> bool {
        matches!(self, Error::Store(StoreError::Conflict))
    }
}

/// The label of a BlueKing call's outcome.
fn outcome(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Transient => "transient",
        ErrorClass::Rejected => "rejected",
        ErrorClass::Ambiguous => "ambiguous",
    }
}

/// Whether `obj` carries the operator's cleanup finalizer.
fn has_finalizer<K: JobKind>(obj: &K) -> bool {
    obj.meta()
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

/// After a run ends, decide once more: a spec edit made during the run, or a retry, may be
/// waiting, and the operator's own status write does not trigger a reconcile.
fn after_run_end() -> Next {
    Next::Requeue(Duration::from_millis(200))
}

/// The metric label of a decision.
fn label(decision: &Decision) -> &'static str {
    match decision {
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
    }
}

/// One reconcile of one job object.
pub struct Reconciler<'a, K: JobKind, S, C> {
    life: &'a Lifecycle<S, C>,
    obj: K,
    ns: String,
    name: String,
    uid: String,
    generation: i64,
    kind: &'static str,
    /// The resourceVersion every status write of this reconcile is conditional on: the cached
    /// object's, which the decision was made on, then that of the reconcile's own last write.
    rv: std::sync::Mutex<Option<String>>,
    /// The resourceVersion of the object as the watch delivered it: a version of this
    /// incarnation no later than any this reconcile decides on (see [`Self::delivered_at`]).
    delivered_rv: Option<String>,
    /// The re-creation guard's records, read while the finalizer was written: the fingerprint
    /// and its records.
    read_ahead: std::sync::Mutex<Option<(String, Vec<crate::api::BkRun>)>>,
}

impl<'a, K: JobKind, S: ObjectStore, C: Connections> Reconciler<'a, K, S, C> {
    /// Prepares a reconcile of `obj`.
    pub fn new(life: &'a Lifecycle<S, C>, obj: K, kind: &'static str) -> Result<Self, Error> {
        let ns = obj.meta().namespace.clone().ok_or(Error::Unnamed)?;
        let name = obj.meta().name.clone().ok_or(Error::Unnamed)?;
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let generation = obj.meta().generation.unwrap_or(0);
        let delivered_rv = obj.meta().resource_version.clone();
        let rv = std::sync::Mutex::new(delivered_rv.clone());
        Ok(Reconciler {
            life,
            obj,
            ns,
            name,
            uid,
            generation,
            kind,
            rv,
            delivered_rv,
            read_ahead: std::sync::Mutex::new(None),
        })
    }

    /// Notes that the watch delivered this object at `rv`, older than the copy decided on (the
    /// operator's own last write). Reads that must see everything written before this
    /// incarnation existed (the guard's run records) ask for that version, which the API
    /// server's watch cache has usually passed, not for the newer one it has often not.
    pub fn delivered_at(mut self, rv: Option<String>) -> Self {
        if rv.is_some() {
            self.delivered_rv = rv;
        }
        self
    }

    fn status(&self) -> JobStatus {
        self.obj.job_status().cloned().unwrap_or_default()
    }

    /// The resourceVersion this reconcile's writes are conditional on: its own last write's,
    /// or the cached object's it decided on.
    fn rv(&self) -> Option<String> {
        self.rv.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn observe(&self, obj: &K, status: &JobStatus) -> Decision {
        observe(
            obj,
            status,
            self.life.clock.now(),
            self.life.config.resolve_grace,
        )
    }

    /// Decides and acts.
    pub async fn run(self) -> Result<Next, Error> {
        // A run record whose write failed earlier is written first; it never holds the run up.
        let record_pending = !self.retry_record().await;
        let next = self.decide_and_act().await?;
        Ok(match next {
            Next::AwaitChange if record_pending => Next::Requeue(Duration::from_secs(10)),
            next => next,
        })
    }

    async fn decide_and_act(&self) -> Result<Next, Error> {
        let status = self.status();
        let mut decision = self.observe(&self.obj, &status);
        if decision == Decision::Start && self.started_here(&status).await {
            // Started by this process, `started` not yet written (the next write carries it):
            // following it is a poll, and counted as one.
            decision = Decision::Poll;
        }
        debug!(?decision, "reconcile");
        self.life.counters.reconcile(self.kind, label(&decision));
        match decision {
            Decision::AddFinalizer => self.set_finalizer(true).await,
            Decision::RemoveFinalizer { warning } => {
                if let Some(w) = warning {
                    self.event(Severity::Warning, "CleanupIncomplete", &w);
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
                let now = self.life.clock.now();
                let new = render(&status, self.generation, phase, reason, message, run, now);
                self.write(&status, new).await?;
                Ok(Next::AwaitChange)
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
            Decision::Idle { requeue } => self.idle(status, requeue).await,
        }
    }

    /// Nothing to do; but a control-field edit (suspend, cancel, ...) moves the generation
    /// without a run: say that it was seen.
    async fn idle(&self, status: JobStatus, requeue: Option<Duration>) -> Result<Next, Error> {
        if status.observed_generation != Some(self.generation)
            && let Some(phase) = status.phase
        {
            let why = status
                .run
                .as_ref()
                .and_then(|r| r.reason.clone())
                .unwrap_or_else(|| phase.to_string());
            let message = status.message.clone().unwrap_or_default();
            let now = self.life.clock.now();
            let new = render(
                &status,
                self.generation,
                phase,
                &why,
                message,
                status.run.clone(),
                now,
            );
            self.write(&status, new).await?;
        }
        Ok(requeue.map(Next::Requeue).unwrap_or(Next::AwaitChange))
    }

    /// The connection the object names: `fresh` for a create.
    async fn connection(&self, fresh: bool) -> Result<Connection<C::System>, ConnectionError> {
        self.life
            .connections
            .resolve(&self.ns, self.obj.common().connection_ref.as_ref(), fresh)
            .await
    }

    /// Publishes an Event about this object.
    fn event(&self, severity: Severity, reason: &str, note: &str) {
        self.life.store.event(&self.obj, severity, reason, note);
    }

    /// Counts a BlueKing call that took since `started` (a [`Clock::elapsed`] reading).
    fn record_call<T, E: std::ops::Deref<Target = BkError>>(
        &self,
        call: &'static str,
        started: Duration,
        r: &Result<T, E>,
    ) {
        let out = match r {
            Ok(_) => "ok",
            Err(e) => outcome(e.class()),
        };
        let took = self.life.clock.elapsed().saturating_sub(started);
        self.life
            .counters
            .bk_call(K::SYSTEM.as_str(), call, out, took);
    }

    /// Whether the object is being deleted.
    fn deleting(&self) -> bool {
        self.obj.meta().deletion_timestamp.is_some()
    }

    fn count_submission(&self, outcome: &'static str) {
        self.life.counters.submission(self.kind, outcome);
    }
}

/// [`decide`] on `obj` with `status` at `now`.
fn observe<K: JobKind>(
    obj: &K,
    status: &JobStatus,
    now: chrono::DateTime<chrono::Utc>,
    resolve_grace: Duration,
) -> Decision {
    let errors = obj.validate_spec();
    let observed = Observed {
        now,
        generation: obj.meta().generation.unwrap_or(0),
        trigger: Trigger::of(obj),
        common: obj.common(),
        status,
        invalid: (!errors.is_empty()).then(|| errors.to_string()),
        deleting: obj.meta().deletion_timestamp.is_some(),
        has_finalizer: has_finalizer(obj),
        adopt_annotation: annotation(obj, ADOPT_ANNOTATION),
        confirm_annotation: annotation(obj, CONFIRM_NOT_SUBMITTED_ANNOTATION),
        two_phase: obj.two_phase(),
        resolve_grace,
    };
    decide(&observed)
}

/// Whether `obj` is settled: its run is over and answers what the object asks, and nothing is
/// left to do for it until the object changes ([`decide`] says idle, with no look planned, and
/// its status speaks for its generation). The controller keeps only a small projection of such
/// objects in memory.
pub fn settled<K: JobKind>(obj: &K, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(status) = obj.job_status() else {
        return false;
    };
    status.observed_generation == obj.meta().generation
        && status.run.as_ref().is_some_and(|r| r.phase.is_final())
        && observe(obj, status, now, Duration::ZERO) == Decision::Idle { requeue: None }
}

fn annotation<'o, K: JobKind>(obj: &'o K, key: &str) -> Option<&'o str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}
