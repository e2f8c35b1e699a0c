//! Decide on what you wrote: the object this process's last write of it returned is the newest
//! state it knows of that object, until the watch brings something newer. A busy API server's
//! watch lags the operator's own writes by seconds (tens of seconds with thousands of jobs in
//! flight); deciding on the returned object instead of waiting for the cache keeps polls and
//! the end of a run on time. It is safe because every write stays conditional on the
//! resourceVersion decided on: a copy someone else has changed since loses its write.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Connections, Error, Lifecycle, Next, ObjectStore, Reconciler};
use crate::run::JobKind;

/// How long a reconcile waits at most for the cache to pass a write whose outcome this process
/// does not know (it failed, or conflicted) before it decides on what the cache has. Only the
/// operator writes status, so the wait normally ends when the watch delivers that version.
pub const CACHE_CATCH_UP: Duration = Duration::from_secs(30);
/// How soon a reconcile waiting for the cache looks again: a quarter of the wait so far, within
/// these bounds.
pub const CACHE_CATCH_UP_STEPS: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(2));
/// How long a copy is kept for an object the cache never shows again (deleted meanwhile).
const KEPT: Duration = Duration::from_secs(600);
/// Above this many copies, those older than [`KEPT`] are dropped.
const PRUNE_ABOVE: usize = 4096;

/// The object as this process's last write of it left it.
struct Written {
    /// The object the write returned (a `K`); `None` once a later write of it failed or
    /// conflicted: then this process only knows the object is at `version` or later.
    object: Option<Arc<dyn Any + Send + Sync>>,
    version: Version,
    /// [`super::Clock::elapsed`] at the write.
    at: Duration,
    /// Whether the object follows a job (a run with a job id that has not ended).
    following: bool,
}

/// Where an object stands, to tell whether the cache shows a write yet.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Version {
    /// The resourceVersion, when it is a number (etcd's revision: later writes have larger
    /// ones). Any other version is compared by `hash` alone.
    number: Option<u64>,
    /// A hash of what the operator writes: status and finalizers.
    hash: u64,
}

impl Version {
    fn of<K: JobKind>(obj: &K) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_vec(&obj.job_status())
            .unwrap_or_default()
            .hash(&mut h);
        obj.meta().finalizers.hash(&mut h);
        Version {
            number: obj
                .meta()
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok()),
            hash: h.finish(),
        }
    }

    /// Whether an object at `self` shows what was written at `written`.
    fn shows(self, written: Version) -> bool {
        match (self.number, written.number) {
            (Some(seen), Some(wrote)) => seen >= wrote,
            _ => self.hash == written.hash,
        }
    }
}

/// The objects this process's writes returned, by uid, until the cache shows them.
#[derive(Default)]
pub struct OwnWrites {
    by_uid: HashMap<String, Written>,
}

impl OwnWrites {
    /// Keeps `obj`, as a write of it at `now` returned it.
    pub fn wrote<K: JobKind>(&mut self, obj: &K, now: Duration) {
        let Some(uid) = obj.meta().uid.clone() else {
            return;
        };
        if self.by_uid.len() > PRUNE_ABOVE {
            self.by_uid.retain(|_, w| now.saturating_sub(w.at) < KEPT);
        }
        let following = obj
            .job_status()
            .and_then(|s| s.run.as_ref())
            .is_some_and(|r| r.job_id.is_some() && !r.phase.is_final());
        let written = Written {
            object: Some(Arc::new(obj.clone())),
            version: Version::of(obj),
            at: now,
            following,
        };
        self.by_uid.insert(uid, written);
    }

    /// A write of `uid` failed or conflicted: its outcome, or someone else's change, is unknown
    /// to this process, so its copy is no longer the newest state. Reconciles wait for the
    /// cache to pass the copy's version instead.
    pub fn doubt(&mut self, uid: &str) {
        if let Some(w) = self.by_uid.get_mut(uid) {
            w.object = None;
        }
    }

    /// Forgets `uid`'s copy.
    pub fn forget(&mut self, uid: &str) {
        self.by_uid.remove(uid);
    }

    /// What to decide on at `now` for `cached`: the cache, once it shows this process's last
    /// write of the object; before that, the object that write returned; or, if that write's
    /// outcome is unknown, nothing until the cache passes it (at most [`CACHE_CATCH_UP`], looked
    /// at less often the longer it lags).
    pub fn latest<K: JobKind>(&mut self, cached: K, now: Duration) -> Known<K> {
        let uid = cached.meta().uid.clone().unwrap_or_default();
        let Some(written) = self.by_uid.get(&uid) else {
            return Known::Decide(cached);
        };
        if Version::of(&cached).shows(written.version) {
            self.by_uid.remove(&uid);
            return Known::Decide(cached);
        }
        if let Some(newer) = written.object.as_ref().and_then(|o| o.downcast_ref::<K>()) {
            return Known::Decide(newer.clone());
        }
        let waited = now.saturating_sub(written.at);
        if waited < CACHE_CATCH_UP {
            let (shortest, longest) = CACHE_CATCH_UP_STEPS;
            return Known::Wait((waited / 4).clamp(shortest, longest));
        }
        // Given up on: decide on the cache (a stale decision only loses its write).
        self.by_uid.remove(&uid);
        Known::Decide(cached)
    }

    /// Whether `uid`'s copy follows a job (a run with a job id that has not ended); `None`
    /// without a copy to decide on.
    pub fn following(&self, uid: &str) -> Option<bool> {
        let written = self.by_uid.get(uid)?;
        written.object.as_ref().map(|_| written.following)
    }

    /// The number of copies kept.
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    /// Whether no copy is kept.
    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

/// What a reconcile decides on.
#[derive(Debug)]
pub enum Known<K> {
    /// This object: the cached one, or this process's own newer copy.
    Decide(K),
    /// Nothing yet: look again after this long (the cache is behind a write whose outcome this
    /// process does not know).
    Wait(Duration),
}

impl<S: ObjectStore, C: Connections> Lifecycle<S, C> {
    /// Keeps `obj` as this process's newest state of it (a write just returned it).
    pub(super) fn wrote_object<K: JobKind>(&self, obj: &K) {
        let now = self.clock.elapsed();
        self.own().wrote(obj, now);
    }

    /// A write of `uid` failed or conflicted ([`OwnWrites::doubt`]).
    pub(super) fn doubt_own_write(&self, uid: &str) {
        self.own().doubt(uid);
    }

    /// Forgets this process's copy of `uid` (the cache shows the object settled).
    pub fn forget_own_write(&self, uid: &str) {
        self.own().forget(uid);
    }

    /// Whether this process's copy of `uid` follows a job ([`OwnWrites::following`]).
    pub fn own_write_following(&self, uid: &str) -> Option<bool> {
        self.own().following(uid)
    }

    fn own(&self) -> std::sync::MutexGuard<'_, OwnWrites> {
        self.own.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a reconcile of `cached` (as the watch delivered it) decides on
    /// ([`OwnWrites::latest`]); a wait is counted as `await_cache`.
    pub fn latest_known<K: JobKind>(&self, kind: &'static str, cached: K) -> Known<K> {
        let now = self.clock.elapsed();
        let known = self.own().latest(cached, now);
        if matches!(known, Known::Wait(_)) {
            self.counters.reconcile(kind, "await_cache");
        }
        known
    }
}

/// One reconcile of `cached`, an object of kind `K` as the watch delivered it: decided on the
/// newest state this process knows ([`Lifecycle::latest_known`]).
pub async fn reconcile<K: JobKind, S: ObjectStore, C: Connections>(
    life: &Lifecycle<S, C>,
    cached: K,
    kind: &'static str,
) -> Result<Next, Error> {
    let delivered = cached.meta().resource_version.clone();
    match life.latest_known(kind, cached) {
        Known::Decide(obj) => {
            Reconciler::new(life, obj, kind)?
                .delivered_at(delivered)
                .run()
                .await
        }
        Known::Wait(after) => Ok(Next::Requeue(after)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::ExecuteJob;

    /// Object `u-1` at resourceVersion `rv` in `phase`.
    fn job(rv: &str, phase: &str, finalizer: bool) -> ExecuteJob {
        let finalizers = if finalizer {
            vec!["bkops.io/cleanup"]
        } else {
            vec![]
        };
        serde_json::from_value(json!({
            "apiVersion": "bkops.io/v1alpha1", "kind": "ExecuteJob",
            "metadata": {"name": "j", "namespace": "ns", "uid": "u-1", "resourceVersion": rv,
                         "finalizers": finalizers},
            "spec": {"connectionRef": {"name": "bk"}, "bkScopeType": "biz", "bkScopeId": "2",
                     "jobPlanId": 1},
            "status": {"phase": phase},
        }))
        .expect("an ExecuteJob")
    }

    fn phase(known: Known<ExecuteJob>) -> String {
        match known {
            Known::Decide(obj) => serde_json::to_value(obj.job_status())
                .ok()
                .and_then(|s| s["phase"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            Known::Wait(after) => format!("wait {after:?}"),
        }
    }

    #[test]
    fn decides_on_its_own_write_until_the_cache_shows_it() {
        let mut own = OwnWrites::default();
        let at = Duration::from_secs(100);
        // Nothing written: the cache.
        assert_eq!(phase(own.latest(job("5", "Pending", true), at)), "Pending");
        // Written at 7: a cache at 5 or 6 is behind, the write's object is decided on.
        own.wrote(&job("7", "Running", true), at);
        assert_eq!(phase(own.latest(job("5", "Pending", true), at)), "Running");
        assert_eq!(phase(own.latest(job("6", "Pending", false), at)), "Running");
        assert_eq!(own.len(), 1);
        assert_eq!(own.following("u-1"), Some(false), "a run without a job id");
        let mut following = job("8", "Running", true);
        if let Some(status) = following.status.as_mut() {
            status.run = Some(crate::api::common::RunStatus {
                key: "u-1-g1-a0".into(),
                job_id: Some("70".into()),
                phase: crate::api::common::Phase::Running,
                ..Default::default()
            });
        }
        own.wrote(&following, at);
        assert_eq!(own.following("u-1"), Some(true));
        assert_eq!(phase(own.latest(job("7", "Pending", true), at)), "Running");
        own.doubt("u-1");
        assert_eq!(own.following("u-1"), None, "no copy to decide on");
        own.wrote(&job("7", "Running", true), at);
        // A cache at 7 or later shows it (or someone's later change): the cache, and the copy
        // is forgotten.
        assert_eq!(phase(own.latest(job("9", "Failed", true), at)), "Failed");
        assert!(own.is_empty());
        assert_eq!(phase(own.latest(job("5", "Pending", true), at)), "Pending");
    }

    #[test]
    fn after_a_failed_or_refused_write_it_waits_for_the_cache_to_pass_it() {
        let mut own = OwnWrites::default();
        let (shortest, longest) = CACHE_CATCH_UP_STEPS;
        let at = Duration::from_secs(100);
        own.wrote(&job("7", "Running", true), at);
        own.doubt("u-1");
        let wait = |after: Duration| format!("wait {after:?}");
        assert_eq!(
            phase(own.latest(job("5", "Pending", true), at)),
            wait(shortest)
        );
        // Looked at less often the longer it lags, and not beyond CACHE_CATCH_UP.
        let later = at + Duration::from_secs(20);
        assert_eq!(
            phase(own.latest(job("5", "Pending", true), later)),
            wait(longest)
        );
        let too_late = at + CACHE_CATCH_UP;
        assert_eq!(
            phase(own.latest(job("5", "Pending", true), too_late)),
            "Pending"
        );
        assert!(own.is_empty());
        // Once the cache passes it: the cache.
        own.wrote(&job("7", "Running", true), at);
        own.doubt("u-1");
        assert_eq!(phase(own.latest(job("8", "Failed", true), at)), "Failed");
    }

    #[test]
    fn versions_that_are_not_numbers_compare_by_what_was_written() {
        let mut own = OwnWrites::default();
        let at = Duration::from_secs(100);
        own.wrote(&job("b", "Running", true), at);
        // Another status, or the same status without the finalizer: behind.
        assert_eq!(phase(own.latest(job("a", "Pending", true), at)), "Running");
        assert_eq!(phase(own.latest(job("a", "Running", false), at)), "Running");
        // The status and finalizers written: caught up.
        assert_eq!(phase(own.latest(job("c", "Running", true), at)), "Running");
        assert!(own.is_empty());
    }

    #[test]
    fn copies_of_objects_never_seen_again_are_dropped() {
        let mut own = OwnWrites::default();
        for i in 0..=PRUNE_ABOVE {
            let mut obj = job("7", "Running", true);
            obj.metadata.uid = Some(format!("u-{i}"));
            own.wrote(&obj, Duration::ZERO);
        }
        assert_eq!(own.len(), PRUNE_ABOVE + 1);
        own.wrote(&job("7", "Running", true), KEPT);
        assert_eq!(own.len(), 1);
    }
}
