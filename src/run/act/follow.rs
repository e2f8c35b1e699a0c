//! Following a running job: polls on a growing, jittered interval; progress written at most every
//! [`PROGRESS_WRITE_INTERVAL`]; the end of the run; and a job that can no longer be addressed.

use std::time::Duration;

use tracing::warn;

use super::after_run_end;
use super::write::PROGRESS_WRITE_INTERVAL;
use super::{Connection, Connections, Error, JobSystem, Lifecycle, Next, ObjectStore, Reconciler};
use crate::api::JobStatus;
use crate::api::common::{Phase, RunStatus};
use crate::bk::facade::{JobPhase, JobRef};
use crate::run::status::{apply_progress, progress_only, push_history, render};
use crate::run::{Defaults, JobKind, reason};

/// What [`Reconciler::reach`] found.
pub(super) enum Reach<S> {
    /// The connection and the job.
    Job(Connection<S>, JobRef),
    /// Either cannot be had; the reconcile ends with this.
    Instead(Next),
}

/// The poll interval of a run `age_secs` after its submission: `initial` at first, growing to
/// `max`, times `jitter` (0.8..1.2).
pub fn interval(initial: Duration, max: Duration, age_secs: f64, jitter: f64) -> Duration {
    let base = initial.as_secs_f64();
    let cap = max.as_secs_f64().max(base);
    let grown = (base * (1.0 + age_secs / 20.0)).min(cap);
    Duration::from_secs_f64(grown * jitter)
}

/// A jittered poll interval that grows with the run's age: seconds at first, up to the cap.
pub fn poll_interval<S, C>(life: &Lifecycle<S, C>, run: &RunStatus) -> Duration {
    let now = life.clock.now();
    let age = run
        .submitted_at
        .or(run.intent_at)
        .map(|t| (now - t).num_seconds().max(0) as f64)
        .unwrap_or(0.0);
    interval(
        life.config.poll_initial,
        life.config.poll_max,
        age,
        life.clock.jitter(),
    )
}

/// Whether a poll's new status is written: always when something other than progress changed;
/// progress only once [`PROGRESS_WRITE_INTERVAL`] has passed since the object's last write
/// (`since_last_write`, `None` when this process has not written it).
pub fn progress_write_due(only_progress: bool, since_last_write: Option<Duration>) -> bool {
    !only_progress || since_last_write.is_none_or(|d| d >= PROGRESS_WRITE_INTERVAL)
}

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    /// Polls the run's job and writes what changed.
    pub(super) async fn poll(&self, status: JobStatus) -> Result<Next, Error> {
        let Some(run) = status.run.clone() else {
            return Ok(Next::AwaitChange);
        };
        let last = self
            .life
            .timings
            .lock()
            .await
            .last_poll
            .get(&self.uid)
            .copied();
        if let Some(last) = last {
            let due = poll_interval(self.life, &run);
            let since = self.life.clock.elapsed().saturating_sub(last);
            if since < due.mul_f64(0.5) {
                return Ok(Next::Requeue(due - since.min(due)));
            }
        }
        let (conn, job) = match self.reach(&status, &run).await? {
            Reach::Job(conn, job) => (conn, job),
            Reach::Instead(next) => return Ok(next),
        };
        let started = self.life.clock.elapsed();
        self.life
            .timings
            .lock()
            .await
            .last_poll
            .insert(self.uid.clone(), started);
        let result = conn.system.progress(&job).await;
        self.record_call("poll", started, &result);
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
                    .unwrap_or_else(|| poll_interval(self.life, &run));
                return Ok(Next::Requeue(wait));
            }
        };
        if progress.phase == JobPhase::NotStarted && self.obj.two_phase() {
            let mut run = run;
            run.started = false;
            let now = self.life.clock.now();
            let new = render(
                &status,
                self.generation,
                Phase::Running,
                reason::RUNNING,
                status.message.clone().unwrap_or_default(),
                Some(run.clone()),
                now,
            );
            return self.start_job(new, run, job).await;
        }
        let now = self.life.clock.now();
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
            self.life.timings.lock().await.forget(&self.uid);
            return Ok(after_run_end());
        }
        let since_last_write = {
            let timings = self.life.timings.lock().await;
            let now = self.life.clock.elapsed();
            timings
                .last_write
                .get(&self.uid)
                .map(|t| now.saturating_sub(*t))
        };
        if progress_write_due(progress_only(&status, &new), since_last_write) {
            self.write(&status, new).await?;
        }
        Ok(Next::Requeue(poll_interval(self.life, &new_run)))
    }

    /// The connection and the job of `run`, for a step that calls BlueKing about it; or, when
    /// either cannot be had, what to do instead (the problem is reported in status).
    pub(super) async fn reach(
        &self,
        status: &JobStatus,
        run: &RunStatus,
    ) -> Result<Reach<C::System>, Error> {
        let conn = match self.connection(false).await {
            Ok(c) => c,
            Err(e) => return self.report_connection(status, e).await.map(Reach::Instead),
        };
        match self.followed_job(run, &conn.defaults) {
            Ok(job) => Ok(Reach::Job(conn, job)),
            Err(why) => self
                .cannot_follow(status, run.clone(), why)
                .await
                .map(Reach::Instead),
        }
    }

    /// The reference of the job `run` follows, or why there is none.
    pub(super) fn followed_job(
        &self,
        run: &RunStatus,
        defaults: &Defaults,
    ) -> Result<JobRef, String> {
        let id = run
            .job_id
            .as_deref()
            .ok_or_else(|| format!("run {} has no job id", run.key))?;
        self.obj
            .job_ref(id, defaults)
            .map_err(|e| format!("cannot address job {id} of run {}: {e}", run.key))
    }

    /// A run whose job cannot be addressed (say the connection's BKFlow space id was removed):
    /// nothing is polled, started or cancelled; the status says so, `Stalled`, and the object is
    /// looked at again every 30 s (a fix to the connection does not touch the object).
    pub(super) async fn cannot_follow(
        &self,
        status: &JobStatus,
        run: RunStatus,
        why: String,
    ) -> Result<Next, Error> {
        warn!(error = %why, "cannot follow the job");
        let phase = status.phase.unwrap_or(run.phase);
        let message = format!(
            "{why}. The job is not followed until the spec or the connection addresses it again"
        );
        if status.message.as_deref() != Some(message.as_str()) {
            let now = self.life.clock.now();
            let new = render(
                status,
                self.generation,
                phase,
                reason::JOB_UNADDRESSABLE,
                message,
                Some(run),
                now,
            );
            self.write(status, new).await?;
        }
        Ok(Next::Requeue(Duration::from_secs(30)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_intervals_grow_with_age_up_to_the_cap() {
        let (initial, max) = (Duration::from_secs(2), Duration::from_secs(30));
        let cases = [
            (0.0, 1.0, 2.0),
            (20.0, 1.0, 4.0),
            (200.0, 1.0, 22.0),
            (10_000.0, 1.0, 30.0),
            (0.0, 0.8, 1.6),
            (10_000.0, 1.2, 36.0),
        ];
        for (age, jitter, want) in cases {
            let got = interval(initial, max, age, jitter).as_secs_f64();
            assert!(
                (got - want).abs() < 1e-9,
                "age {age} jitter {jitter}: {got} != {want}"
            );
        }
        // A cap below the initial interval never shortens it.
        assert_eq!(
            interval(Duration::from_secs(5), Duration::from_secs(1), 100.0, 1.0),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn progress_is_written_at_most_every_interval_other_changes_at_once() {
        let cases = [
            (false, None, true),
            (false, Some(Duration::ZERO), true),
            (true, None, true),
            (true, Some(Duration::from_secs(1)), false),
            (
                true,
                Some(PROGRESS_WRITE_INTERVAL - Duration::from_millis(1)),
                false,
            ),
            (true, Some(PROGRESS_WRITE_INTERVAL), true),
            (true, Some(Duration::from_secs(3600)), true),
        ];
        for (only_progress, since, want) in cases {
            assert_eq!(
                progress_write_due(only_progress, since),
                want,
                "only progress {only_progress}, since last write {since:?}"
            );
        }
    }
}
