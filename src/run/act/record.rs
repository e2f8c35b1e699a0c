//! The record of a run's job (created, adopted by annotation, or found by a search), and the
//! end of a run.

use super::follow::poll_interval;
use super::{Connections, Error, Next, ObjectStore, Reconciler, Severity, after_run_end};
use crate::api::JobStatus;
use crate::api::common::{Phase, RunStatus};
use crate::bk::facade::JobRef;
use crate::run::status::{push_history, render};
use crate::run::{JobKind, reason};

/// How the record of a job is written.
#[derive(Clone, Copy)]
pub(super) enum Record<'s> {
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

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    /// Records the job of `run` (created or adopted), then starts it where needed.
    pub(super) async fn record_job(
        &self,
        base: Record<'_>,
        mut run: RunStatus,
        job: JobRef,
        job_url: Option<String>,
        adopted: bool,
        needs_start: bool,
    ) -> Result<Next, Error> {
        let now = self.life.clock.now();
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
        self.life
            .timings
            .lock()
            .await
            .recorded
            .insert(self.uid.clone(), run.key.clone());
        if needs_start {
            return self.start_job(new, run, job).await;
        }
        Ok(Next::Requeue(poll_interval(self.life, &run)))
    }

    /// A person named the job of a run whose create is unclear (`bkops.io/adopt-job-id`).
    pub(super) async fn adopt_into_run(
        &self,
        status: JobStatus,
        job_id: String,
    ) -> Result<Next, Error> {
        let Some(run) = status.run.clone() else {
            return Ok(Next::AwaitChange);
        };
        let conn = match self.connection(false).await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        let job = match self.obj.job_ref(&job_id, &conn.defaults) {
            Ok(j) => j,
            Err(e) => {
                let note = format!("cannot adopt job {job_id}: {e}");
                self.event(Severity::Warning, "AdoptRefused", &note);
                return Ok(Next::AwaitChange);
            }
        };
        let note = format!("a person named {job} as the job of run {}", run.key);
        self.event(Severity::Normal, "Adopted", &note);
        let two_phase = self.obj.two_phase();
        self.record_job(Record::Decided(&status), run, job, None, true, two_phase)
            .await
    }

    /// Ends `run` with `phase` (into history) and writes it; the next decision follows shortly.
    pub(super) async fn end_run(
        &self,
        status: &JobStatus,
        mut run: RunStatus,
        phase: Phase,
        why: &'static str,
        message: String,
    ) -> Result<Next, Error> {
        let now = self.life.clock.now();
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

    /// Says that the object's connection cannot be used, keeping any run as it is.
    pub(super) async fn report_connection(
        &self,
        status: &JobStatus,
        e: super::ConnectionError,
    ) -> Result<Next, Error> {
        if e.is_transient() {
            tracing::warn!(error = %e, "connection lookup failed");
            return Ok(Next::Requeue(std::time::Duration::from_secs(10)));
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
            let now = self.life.clock.now();
            render(
                status,
                self.generation,
                Phase::Failed,
                e.reason(),
                message,
                status.run.clone(),
                now,
            )
        };
        self.write(status, new).await?;
        Ok(Next::Requeue(std::time::Duration::from_secs(30)))
    }
}
