//! Status writes: conditional on the resourceVersion a decision was made on, each kept as the
//! newest state this process knows of the object ([`super::own`]), and the record of a created
//! job retried until it lands.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tracing::warn;

use super::{Connections, Error, ObjectStore, Reconciler, Severity, StoreError};
use crate::api::JobStatus;
use crate::api::common::Phase;
use crate::run::JobKind;
use crate::run::status::{merge_diff, progress_only, push_history};

/// How long a status write of mere progress waits after the object's last status write of any
/// kind: the id write already says the job runs, so the first poll's counts wait too (under a
/// burst of submissions they would otherwise add a write per object to a saturated API server).
pub(super) const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a record of a create's job id is retried before the run is left to be resolved.
const ID_WRITE_BUDGET: Duration = Duration::from_secs(120);

/// In-memory per-object timing, by uid (never written to status: such stamps make the
/// controller trigger itself). Times are [`super::Clock::elapsed`] readings.
#[derive(Default)]
pub struct Timings {
    pub(crate) last_poll: HashMap<String, Duration>,
    /// When this process last wrote each object's status (progress writes wait for
    /// `PROGRESS_WRITE_INTERVAL` after it).
    pub(crate) last_write: HashMap<String, Duration>,
    /// Run key per object whose start call succeeded but whose `run.started` is not written
    /// yet: it rides on the next status write instead of a write of its own (a start is safe
    /// to repeat should the operator restart before that).
    pub(crate) started: HashMap<String, String>,
    /// Run key per object whose job id this process recorded. A cache that still shows that run
    /// without a job id is behind the operator's own write, not a create to resolve.
    pub(crate) recorded: HashMap<String, String>,
}

impl Timings {
    /// Forgets an object.
    pub fn forget(&mut self, uid: &str) {
        self.last_poll.remove(uid);
        self.last_write.remove(uid);
        self.started.remove(uid);
        self.recorded.remove(uid);
    }

    /// Notes this process's status write of `uid` at `now` ([`super::Clock::elapsed`]); keeps
    /// the map bounded.
    pub fn wrote(&mut self, uid: &str, now: Duration) {
        if self.last_write.len() > 4096 {
            // An entry older than the interval throttles nothing.
            self.last_write
                .retain(|_, at| now.saturating_sub(*at) < PROGRESS_WRITE_INTERVAL);
        }
        self.last_write.insert(uid.to_owned(), now);
    }
}

/// What to write over `fresh` (the object as read now) to record `new`, the outcome of this
/// reconcile's run: `new` itself while the object is still on that run. If it moved on to
/// another run meanwhile (another operator process decided on it), that run is left alone: a
/// job this run made goes into history, so it is never lost; an outcome without a job is
/// dropped (`None`).
pub fn over_fresh(fresh: &JobStatus, new: &JobStatus) -> Option<JobStatus> {
    let ours = new.run.as_ref()?;
    // The same run is the same key and the same intent: a create retried after it could not be
    // made keeps its key under a new intent, which may have made a job since.
    if fresh
        .run
        .as_ref()
        .is_some_and(|r| r.key == ours.key && r.intent_at == ours.intent_at)
    {
        return Some(new.clone());
    }
    ours.job_id.as_ref()?;
    if fresh
        .history
        .iter()
        .any(|h| h.key == ours.key && h.job_id == ours.job_id)
    {
        return None;
    }
    let mut kept = fresh.clone();
    push_history(&mut kept.history, ours);
    Some(kept)
}

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    /// Writes `new` over `old` as a minimal merge patch, only if the object is still at the
    /// resourceVersion this reconcile's decisions were made on (its own last write's, or the
    /// cached one's): a decision made on a stale cache must not overwrite what it did not see
    /// (a conflict, and the next reconcile decides again). Publishes an Event when the phase
    /// changed.
    pub(super) async fn write(&self, old: &JobStatus, new: JobStatus) -> Result<bool, Error> {
        let rv = self.rv().ok_or(Error::Unnamed)?;
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
        let written: K = match self
            .life
            .store
            .patch_status(&self.ns, &self.name, &patch)
            .await
        {
            Ok(written) => written,
            Err(e) => {
                self.life.doubt_own_write(&self.uid);
                return Err(e.into());
            }
        };
        *self.rv.lock().unwrap_or_else(|e| e.into_inner()) =
            written.meta().resource_version.clone();
        self.life.wrote_object(&written);
        let now = self.life.clock.elapsed();
        self.life.timings.lock().await.wrote(&self.uid, now);
        let new_run = new.run.as_ref().map(|r| &r.key);
        let why = if new_run.is_some() && new_run != old.run.as_ref().map(|r| &r.key) {
            "intent"
        } else if progress_only(old, &new) {
            "progress"
        } else {
            "change"
        };
        self.life.counters.status_write(self.kind, why);
        if let Some(run) = &new.run {
            self.keep_record(run).await;
        }
        if let Some(phase) = new.phase
            && old.phase != new.phase
        {
            self.life.counters.phase(self.kind, phase.as_str());
            let severity = match phase {
                Phase::Failed | Phase::Unknown | Phase::Cancelled => Severity::Warning,
                _ => Severity::Normal,
            };
            let message = new.message.clone().unwrap_or_default();
            self.event(severity, phase.as_str(), &message);
        }
        Ok(true)
    }

    /// Writes until it lands (the record of a created job must not be lost), within a budget:
    /// on a conflict or an error, reads the object and writes against what it holds
    /// ([`over_fresh`]: never over a run another process started meanwhile).
    /// `current` is the status this reconcile's own last write left.
    pub(super) async fn write_until_landed(
        &self,
        current: &JobStatus,
        new: JobStatus,
    ) -> Result<(), Error> {
        let started = self.life.clock.elapsed();
        let mut delay = Duration::from_millis(200);
        // Right after its own write the reconcile knows the object without a read.
        let mut known = Some(current.clone());
        loop {
            let attempt = match known.take() {
                Some(current) => self.write(&current, new.clone()).await,
                None => match self.life.store.read::<K>(&self.ns, &self.name).await {
                    // Another object of the same name (deleted and re-created since): this
                    // reconcile's object is gone, and nothing of its run belongs in the new one.
                    Ok(o) if o.meta().uid.as_deref() != Some(self.uid.as_str()) => {
                        Err(Error::Store(StoreError::NotFound))
                    }
                    Ok(o) => {
                        let current = o.job_status().cloned().unwrap_or_default();
                        let rv = o.meta().resource_version.clone().unwrap_or_default();
                        match over_fresh(&current, &new) {
                            Some(record) => self.write_at(&current, record, &rv).await,
                            None => return Ok(()),
                        }
                    }
                    Err(e) => Err(e.into()),
                },
            };
            match attempt {
                Ok(_) => {
                    // Landed, or kept in history under another process's newer run.
                    if let Some(run) = &new.run {
                        self.keep_record(run).await;
                    }
                    return Ok(());
                }
                // The object is gone: there is nothing left to write the record to.
                Err(e @ Error::Store(StoreError::NotFound)) => return Err(e),
                Err(e) if self.life.clock.elapsed().saturating_sub(started) < ID_WRITE_BUDGET => {
                    if !e.is_conflict() {
                        warn!(error = %e, "recording the job id failed; retrying");
                        self.life.clock.sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::RunStatus;

    fn status(key: &str, job: Option<&str>) -> JobStatus {
        JobStatus {
            phase: Some(Phase::Running),
            run: Some(RunStatus {
                key: key.into(),
                job_id: job.map(str::to_owned),
                phase: Phase::Running,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_late_record_never_overwrites_a_run_another_process_started() {
        // Still on our run: our record is written as it is.
        let ours = status("u-g1-a1", Some("7"));
        assert_eq!(
            over_fresh(&status("u-g1-a1", None), &ours),
            Some(ours.clone())
        );
        // Moved on to a2: a2 stays; our job goes into history, once.
        let fresh = status("u-g1-a2", None);
        let kept = over_fresh(&fresh, &ours).expect("the job is kept");
        assert_eq!(kept.run, fresh.run);
        assert_eq!(kept.history.len(), 1);
        assert_eq!(kept.history[0].key, "u-g1-a1");
        assert_eq!(kept.history[0].job_id.as_deref(), Some("7"));
        assert_eq!(over_fresh(&kept, &ours), None);
        // The same key under a later intent (a create retried after it could not be made) is
        // another attempt: a stale outcome of the earlier one never overwrites it.
        let mut retried = status("u-g1-a1", Some("9"));
        if let Some(r) = retried.run.as_mut() {
            r.intent_at = chrono::DateTime::from_timestamp(100, 0);
        }
        let stale = status("u-g1-a1", None);
        assert_eq!(over_fresh(&retried, &stale), None);
        // An outcome without a job (unclear, not made) has nothing to keep.
        assert_eq!(over_fresh(&fresh, &status("u-g1-a1", None)), None);
        assert_eq!(over_fresh(&fresh, &JobStatus::default()), None);
    }
}
