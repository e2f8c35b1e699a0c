//! The finalizer: added before anything is sent, removed once a deleted object's run is on
//! record and its job cancelled (`deletionPolicy: Cancel`) or left to run.

use std::time::Duration;

use super::{
    Connections, Error, JobSystem, Next, ObjectStore, Reconciler, Severity, StoreError,
    has_finalizer,
};
use crate::api::JobStatus;
use crate::api::common::FINALIZER;
use crate::bk::ErrorClass;
use crate::bk::facade::CancelOutcome;
use crate::run::JobKind;

/// How long deletion waits on a failing cancel before letting go.
const DELETE_CANCEL_BUDGET: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    pub(super) async fn set_finalizer(&self, present: bool) -> Result<Next, Error> {
        // Before a deleted object goes, its run record must be there: a re-created object finds
        // its run by it instead of running the job again.
        if !present
            && let Some(run) = self.status().run
            && !self.keep_record(&run).await
        {
            return Ok(Next::Requeue(Duration::from_secs(5)));
        }
        let mut finalizers: Vec<String> = self
            .obj
            .meta()
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        if present {
            finalizers.push(FINALIZER.to_owned());
        }
        // Conditional on the version this reconcile last saw: its own last status write's, if
        // it made one (a cancel on deletion writes before letting go), else the cached one's.
        let rv = self.rv();
        let write =
            self.life
                .store
                .set_finalizers::<K>(&self.ns, &self.name, rv.as_deref(), finalizers);
        let (written, read_ahead) = if present {
            let status = self.status();
            tokio::join!(write, self.guard_read_ahead(&status))
        } else {
            (write.await, None)
        };
        match written {
            Ok(Some(obj)) => {
                self.life.wrote_object(&obj);
                if present && has_finalizer(&obj) {
                    // Decide on what was written: the run this finalizer was added for goes on
                    // now, not once the watch brings the object back.
                    let next = Reconciler::new(self.life, obj, self.kind)?
                        .delivered_at(self.delivered_rv.clone());
                    *next.read_ahead.lock().unwrap_or_else(|e| e.into_inner()) = read_ahead;
                    return Box::pin(next.decide_and_act()).await;
                }
                Ok(Next::AwaitChange)
            }
            Ok(None) | Err(StoreError::NotFound) => Ok(Next::AwaitChange),
            Err(e) => {
                self.life.doubt_own_write(&self.uid);
                match e {
                    StoreError::Conflict => Ok(Next::Requeue(Duration::from_millis(500))),
                    e => Err(e.into()),
                }
            }
        }
    }

    /// A deleted object whose `deletionPolicy` is `Cancel`: cancel its job, then let it go.
    pub(super) async fn cancel_for_deletion(&self, status: JobStatus) -> Result<Next, Error> {
        let Some(mut run) = status.run.clone() else {
            return self.set_finalizer(false).await;
        };
        let now = self.life.clock.now();
        let deleted_for = self
            .obj
            .meta()
            .deletion_timestamp
            .as_ref()
            .map(|t| now.timestamp() - t.0.as_second())
            .unwrap_or(0);
        let give_up = deleted_for > DELETE_CANCEL_BUDGET.num_seconds();
        let incomplete = |what: String| {
            self.event(
                Severity::Warning,
                "CleanupIncomplete",
                &format!(
                    "deleted with deletionPolicy Cancel, but {what}; the job was not cancelled"
                ),
            );
        };
        let conn = match self.connection(false).await {
            Ok(c) => c,
            Err(e) => {
                incomplete(format!("the connection is unusable ({e})"));
                return self.set_finalizer(false).await;
            }
        };
        let job = match self.followed_job(&run, &conn.defaults) {
            Ok(job) => job,
            Err(why) => {
                incomplete(why);
                return self.set_finalizer(false).await;
            }
        };
        let started = self.life.clock.elapsed();
        let result = conn.system.cancel(&job).await;
        self.record_call("cancel", started, &result.as_ref());
        match result {
            Ok(CancelOutcome::NotSupported) => {
                let note = format!(
                    "deleted with deletionPolicy Cancel, but {} cannot cancel {job}; it may still be running",
                    K::SYSTEM.as_str()
                );
                self.event(Severity::Warning, "CancelNotSupported", &note);
            }
            Ok(_) => self.event(
                Severity::Normal,
                "CancelledOnDelete",
                &format!("cancel requested for {job} before deletion"),
            ),
            Err(e) if e.class() == ErrorClass::Transient && !give_up => {
                return Ok(Next::Requeue(Duration::from_secs(5)));
            }
            Err(e) => {
                self.event(
                    Severity::Warning,
                    "CleanupIncomplete",
                    &format!("cancelling {job} failed ({e}); letting the object go"),
                );
            }
        }
        run.cancel_requested_at = Some(self.life.clock.now());
        let mut new = status.clone();
        new.run = Some(run);
        let _ = self.write(&status, new).await;
        self.set_finalizer(false).await
    }
}
