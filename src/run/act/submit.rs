//! The fenced intent and the one create: refusals before the intent, the rate-limit ticket, the
//! intent conditional on the resourceVersion the decision saw, the create, and what its error
//! means for the run ([`create_failure`], pure).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use super::record::Record;
use super::{Connections, Error, JobSystem, Next, ObjectStore, Reconciler, outcome};
use crate::api::JobStatus;
use crate::api::common::{Phase, RunStatus};
use crate::bk::facade::Unsupported;
use crate::bk::{BkError, ErrorClass};
use crate::run::status::{push_history, render};
use crate::run::{JobKind, reason, resolve, run_key};

/// Why bkops refuses a run before its intent.
enum Refusal {
    /// The spec cannot become a call bkops would send.
    Spec(String),
    /// The connection cannot make the call (the message names it and what to change).
    Connection(String),
}

/// The message for a connection that cannot make a job's create call: which connection, whose
/// refusal, and what to change.
pub fn unsupported_message(connection: &str, u: Unsupported) -> String {
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

/// What a failed create means for its run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateFailure {
    /// The run's phase now.
    pub phase: Phase,
    /// The condition reason.
    pub reason: &'static str,
    /// The status message.
    pub message: String,
    /// When to look again.
    pub next: Next,
    /// Whether the run is over (goes into history).
    pub ends_run: bool,
}

/// The run's phase, reason, message and next look after its create failed with `e`.
///
/// - refused by the client itself (no call made): `Failed`, `InvalidSpec` or
///   `ConnectionUnsupported`;
/// - refused by BlueKing: `Failed`, `SubmissionRejected`: nothing ran;
/// - not made (transient: unreachable, throttled, 5xx before the create): `Pending`, tried again
///   every [`crate::run::SUBMIT_DEFER`], `Stalled` after `stall` since the first try;
/// - unclear (the create may have happened): `Submitting`, `Resolving`: searched for, never sent
///   again.
pub fn create_failure(
    e: &BkError,
    key: &str,
    connection: &str,
    deferred_since: DateTime<Utc>,
    now: DateTime<Utc>,
    stall: Duration,
) -> CreateFailure {
    match e.class() {
        // Refused by the client itself (the checks before the intent make this rare): no call
        // was made, so it is not BlueKing's refusal.
        ErrorClass::Rejected if e.call().is_none() => CreateFailure {
            phase: Phase::Failed,
            reason: match e {
                BkError::Config(_) => crate::run::reason::CONNECTION_UNSUPPORTED,
                _ => reason::INVALID_SPEC,
            },
            message: format!(
                "bkops refused run {key} before calling BlueKing; nothing was sent: {e}"
            ),
            next: Next::Requeue(Duration::from_secs(30)),
            ends_run: true,
        },
        ErrorClass::Rejected => CreateFailure {
            phase: Phase::Failed,
            reason: reason::SUBMISSION_REJECTED,
            message: format!("BlueKing refused run {key}; nothing ran: {e}"),
            next: Next::Requeue(Duration::from_secs(1)),
            ends_run: true,
        },
        ErrorClass::Transient => {
            let unreachable = matches!(e, BkError::Transport { .. });
            let why = crate::run::deferral(unreachable, deferred_since, now, stall);
            let message = if why == reason::SUBMIT_DEFERRED {
                format!("run {key} not submitted yet (nothing was created): {e}")
            } else {
                format!(
                    "run {key} not submitted for {} s through BkConnection {connection}{}: {e}; nothing was created, still trying every {} s",
                    (now - deferred_since).num_seconds(),
                    if unreachable {
                        " (BlueKing does not answer)"
                    } else {
                        ""
                    },
                    crate::run::SUBMIT_DEFER.as_secs()
                )
            };
            CreateFailure {
                phase: Phase::Pending,
                reason: why,
                message,
                next: Next::Requeue(crate::run::SUBMIT_DEFER),
                ends_run: false,
            }
        }
        ErrorClass::Ambiguous => CreateFailure {
            phase: Phase::Submitting,
            reason: reason::RESOLVING,
            message: format!(
                "the create of run {key} may or may not have happened ({e}); searching BlueKing for it"
            ),
            next: Next::Requeue(Duration::from_secs(2)),
            ends_run: false,
        },
    }
}

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    pub(super) async fn submit(
        &self,
        status: JobStatus,
        attempt: u32,
        retries: u32,
        adopt: Option<String>,
    ) -> Result<Next, Error> {
        if adopt.is_none() {
            // A brand-new object that ran before (deleted and re-created) takes that run.
            if let Some(next) = self.guard(&status).await? {
                return Ok(next);
            }
            // A create retried after it could not be made is the same run: its gate was open.
            let retried = status.run.as_ref().is_some_and(|r| {
                r.phase == Phase::Pending && r.reason.as_deref().is_some_and(reason::is_deferral)
            });
            if !retried && let Some(next) = self.wait_for_dependencies(&status).await? {
                return Ok(next);
            }
        }
        // The run this one replaces in status leaves for history: its record must be there
        // first (a process that wrote it may have died before it did).
        if let Some(previous) = status
            .run
            .as_ref()
            .filter(|r| r.key != run_key(&self.uid, self.generation, attempt))
            && !self.keep_record(previous).await
        {
            return Ok(Next::Requeue(Duration::from_secs(5)));
        }
        let key = run_key(&self.uid, self.generation, attempt);
        // A create reads its connection now: a deleted connection or a changed Secret counts
        // from the next create on.
        let conn = match self.connection(adopt.is_none()).await {
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
            if let Some(u) = conn.system.unsupported(req) {
                let message = unsupported_message(&conn.id, u);
                return self.refuse(&status, Refusal::Connection(message)).await;
            }
        }

        // The create's rate-limit token is taken before the intent, so that the create follows
        // the intent at once (a create is made only right after its intent landed). Waited
        // for after the intent, the token can take as long as the limit and the crowd of jobs
        // make it (minutes, for thousands of jobs at the default limit), and an operator stopped
        // in that wait (a rolling update) leaves each such run Submitting with no job: `Unknown`,
        // for a person to resolve, once restarted.
        let ticket = match &request {
            Some(_) => Some(conn.system.create_ticket().await),
            None => None,
        };

        // The fence: the intent is written only if the object is still at the
        // resourceVersion this decision was made on. The store compares and swaps, so a write
        // that lands proves the cached copy was the current object; a stale cache, a person's
        // edit or another operator makes it fail with a conflict, and no call is made.
        let intended = self.life.clock.elapsed();
        let (intent, run) = self.intent(&status, &key, attempt, retries);
        match self.write(&status, intent.clone()).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {
                debug!("the object moved since this decision; no BlueKing call, deciding again");
                return Ok(Next::Requeue(Duration::from_millis(500)));
            }
            Err(e) => return Err(e),
        }

        if let Some(job) = adopt_ref {
            self.count_submission("adopted");
            info!(%key, job = %job, "following an existing job (adoptJobId)");
            return self
                .record_job(Record::Created(&intent), run, job, None, true, false)
                .await;
        }
        let (Some(request), Some(ticket)) = (request, ticket) else {
            return Ok(Next::AwaitChange);
        };
        // A create sent later than its window after the intent could land after another
        // process's search concluded it was never made: it is not sent then (NotSent), and the
        // run is tried again like a create that could not be made.
        let timeout = conn.system.timeout();
        let window = resolve::send_window(
            resolve::grace(self.life.config.resolve_grace, timeout),
            timeout,
        );
        let started = self.life.clock.elapsed();
        let since_intent = started.saturating_sub(intended);
        let result = if since_intent < window {
            let send_within = window - since_intent;
            conn.system.submit(ticket, &request, send_within).await
        } else {
            Err(BkError::NotSent {
                call: crate::bk::CallInfo {
                    system: K::SYSTEM,
                    endpoint: "create",
                    kind: crate::bk::CallKind::Create,
                },
                waited: since_intent,
                window,
            })
        };
        self.record_call("create", started, &result.as_ref());
        match result {
            Ok(sub) => {
                self.count_submission("submitted");
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
                self.count_submission(outcome(e.class()));
                warn!(%key, error = %e, class = outcome(e.class()), "create failed");
                let mut run = run;
                let now = self.life.clock.now();
                let since = run.deferred_since.unwrap_or(now);
                let failure = create_failure(
                    &e,
                    &key,
                    &conn.id,
                    since,
                    now,
                    self.life.config.submit_stall,
                );
                if failure.phase == Phase::Pending {
                    run.deferred_since = Some(since);
                }
                run.phase = failure.phase;
                run.reason = Some(failure.reason.to_owned());
                if failure.ends_run {
                    run.completion_time = Some(now);
                }
                let mut new = render(
                    &intent,
                    self.generation,
                    failure.phase,
                    failure.reason,
                    failure.message,
                    Some(run.clone()),
                    now,
                );
                if failure.ends_run {
                    push_history(&mut new.history, &run);
                }
                self.write_until_landed(&intent, new).await?;
                Ok(failure.next)
            }
        }
    }

    /// The intent of run `key` over `status`: the status to write before the create, and the
    /// run it starts.
    fn intent(
        &self,
        status: &JobStatus,
        key: &str,
        attempt: u32,
        retries: u32,
    ) -> (JobStatus, RunStatus) {
        let trigger = crate::run::Trigger::of(&self.obj);
        let now = self.life.clock.now();
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
            key: key.to_owned(),
            generation: self.generation,
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
            self.generation,
            Phase::Submitting,
            reason::SUBMITTING,
            format!("submitting run {key}"),
            Some(run.clone()),
            now,
        );
        (intent, run)
    }

    /// Reports a run bkops refuses before its intent: nothing is recorded as a run and nothing
    /// is sent. A spec problem waits for a spec change; a connection problem is looked at again
    /// every 30 s, as the connection can change without the job changing.
    async fn refuse(&self, status: &JobStatus, refusal: Refusal) -> Result<Next, Error> {
        let (why, message, next) = match refusal {
            Refusal::Spec(problem) => (
                reason::INVALID_SPEC,
                crate::run::invalid_spec_message(&problem),
                Next::AwaitChange,
            ),
            Refusal::Connection(message) => (
                reason::CONNECTION_UNSUPPORTED,
                message,
                Next::Requeue(Duration::from_secs(30)),
            ),
        };
        let now = self.life.clock.now();
        let new = render(
            status,
            self.generation,
            Phase::Failed,
            why,
            message,
            status.run.clone(),
            now,
        );
        self.write(status, new).await?;
        Ok(next)
    }
}
