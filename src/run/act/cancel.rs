//! Cancelling a running job: on request (`spec.cancel`) or when `activeDeadlineSeconds` passed.

use std::time::Duration;

use tracing::warn;

use super::follow::Reach;
use super::{Connections, Error, JobSystem, Next, ObjectStore, Reconciler, Severity};
use crate::api::JobStatus;
use crate::api::common::Phase;
use crate::bk::ErrorClass;
use crate::bk::facade::CancelOutcome;
use crate::run::status::render;
use crate::run::{JobKind, reason};

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    pub(super) async fn cancel(&self, status: JobStatus, deadline: bool) -> Result<Next, Error> {
        let Some(mut run) = status.run.clone() else {
            return Ok(Next::AwaitChange);
        };
        let (conn, job) = match self.reach(&status, &run).await? {
            Reach::Job(conn, job) => (conn, job),
            Reach::Instead(next) => return Ok(next),
        };
        let started = self.life.clock.elapsed();
        let result = conn.system.cancel(&job).await;
        self.record_call("cancel", started, &result.as_ref());
        let now = self.life.clock.now();
        let outcome = match result {
            Ok(o) => o,
            Err(e) if e.class() == ErrorClass::Transient => {
                warn!(error = %e, "cancel failed; will retry");
                return Ok(Next::Requeue(Duration::from_secs(3)));
            }
            Err(e) => {
                let note = format!("BlueKing refused to cancel {job}: {e}");
                self.event(Severity::Warning, "CancelFailed", &note);
                CancelOutcome::NotSupported
            }
        };
        run.cancel_requested_at = Some(now);
        let cancellable = outcome != CancelOutcome::NotSupported;
        let system = K::SYSTEM.as_str();
        if cancellable {
            let note = format!("cancel requested for {job}");
            self.event(Severity::Normal, "CancelRequested", &note);
        } else {
            let note = format!("{system} cannot cancel {job}; it may still be running");
            self.event(Severity::Warning, "CancelNotSupported", &note);
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
            format!("{system} has no cancel call; following {job} to its end")
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
        Ok(Next::Requeue(Duration::from_millis(500)))
    }
}
