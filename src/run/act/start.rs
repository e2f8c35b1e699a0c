//! Starting a job created not started (BKFlow, JOB v3).

use std::time::Duration;

use tracing::warn;

use super::follow::Reach;
use super::{Connections, Error, JobSystem, Next, ObjectStore, Reconciler, follow::poll_interval};
use crate::api::JobStatus;
use crate::api::common::{Phase, RunStatus};
use crate::bk::ErrorClass;
use crate::bk::facade::JobRef;
use crate::run::{JobKind, reason};

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    /// Starts `job` of `run`. A start is safe to repeat; BlueKing's refusal ends the run.
    pub(super) async fn start_job(
        &self,
        status: JobStatus,
        run: RunStatus,
        job: JobRef,
    ) -> Result<Next, Error> {
        let conn = match self.connection(false).await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        let started = self.life.clock.elapsed();
        let result = conn.system.start(&job).await;
        self.record_call("start", started, &result.as_ref());
        match result {
            Ok(()) => {
                self.life
                    .timings
                    .lock()
                    .await
                    .started
                    .insert(self.uid.clone(), run.key.clone());
                Ok(Next::Requeue(poll_interval(self.life, &run)))
            }
            Err(e) if e.class() == ErrorClass::Rejected => {
                let message = format!("BlueKing refused to start {job}: {e}");
                self.end_run(&status, run, Phase::Failed, reason::JOB_FAILED, message)
                    .await
            }
            Err(e) => {
                warn!(error = %e, "start failed; will retry");
                Ok(Next::Requeue(Duration::from_secs(3)))
            }
        }
    }

    /// Starts the run's recorded job.
    pub(super) async fn start(&self, status: JobStatus) -> Result<Next, Error> {
        let Some(run) = status.run.clone() else {
            return Ok(Next::AwaitChange);
        };
        let (_, job) = match self.reach(&status, &run).await? {
            Reach::Job(conn, job) => (conn, job),
            Reach::Instead(next) => return Ok(next),
        };
        self.start_job(status, run, job).await
    }

    /// Whether this process started the run's job already (the start call answered) and its
    /// `started` is still to be written.
    pub(super) async fn started_here(&self, status: &JobStatus) -> bool {
        let Some(run) = &status.run else {
            return false;
        };
        self.life.timings.lock().await.started.get(&self.uid) == Some(&run.key)
    }
}
