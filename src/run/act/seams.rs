//! What the run lifecycle needs from the world, as traits: a job system (BlueKing, reached
//! through a connection), the object store (the API server and the operator's caches), a clock,
//! and somewhere to count. The operator implements them with its BlueKing client and kube; the
//! protocol simulation (`tests/protocol.rs`) with in-memory fakes. The lifecycle sees nothing
//! else.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::BkRun;
use crate::api::common::{ConnectionRef, Dependency};
use crate::bk::BkError;
use crate::bk::facade::{
    CancelOutcome, CreateRequest, JobRef, Progress, SearchQuery, Searched, Submitted, Unsupported,
};
use crate::run::{Defaults, JobKind};

pub use super::connection_error::ConnectionError;

/// What the lifecycle asks of one job system through one connection.
pub trait JobSystem: Send + Sync {
    /// A create's place in the connection's rate limit, taken before the intent is written.
    type Ticket: Send;

    /// How long one call may take (the create's, for the resolve grace window).
    fn timeout(&self) -> Duration;
    /// Why this connection cannot make `req` at all, known without a call.
    fn unsupported(&self, req: &CreateRequest) -> Option<Unsupported>;
    /// Waits for the connection's rate limit for a create.
    fn create_ticket(&self) -> impl Future<Output = Self::Ticket> + Send;
    /// Creates the job, once, never retried; not sent at all ([`BkError::NotSent`]) unless it
    /// can be sent within `send_within`.
    fn submit(
        &self,
        ticket: Self::Ticket,
        req: &CreateRequest,
        send_within: Duration,
    ) -> impl Future<Output = Result<Submitted, BkError>> + Send;
    /// Starts a job created not started (BKFlow, JOB v3).
    fn start(&self, job: &JobRef) -> impl Future<Output = Result<(), BkError>> + Send;
    /// Where the job stands (BKFlow tasks of a space are asked for in batches).
    fn progress(&self, job: &JobRef)
    -> impl Future<Output = Result<Progress, Arc<BkError>>> + Send;
    /// Asks the system to stop the job.
    fn cancel(&self, job: &JobRef) -> impl Future<Output = Result<CancelOutcome, BkError>> + Send;
    /// Looks for the job an unclear create may have made.
    fn search(&self, q: &SearchQuery) -> impl Future<Output = Result<Searched, BkError>> + Send;
}

/// A usable connection: the job system behind it and the defaults calls are built with.
#[derive(Clone)]
pub struct Connection<S> {
    /// The job system, reached through this connection.
    pub system: S,
    /// Defaults for building calls.
    pub defaults: Defaults,
    /// `namespace/name`, for messages.
    pub id: String,
}

/// Finds the connection a job names.
pub trait Connections: Send + Sync {
    /// The job system a connection reaches.
    type System: JobSystem;
    /// The connection a job in `ns` refers to; `fresh` reads it now (for a create), otherwise a
    /// recent copy will do (for following a job).
    fn resolve(
        &self,
        ns: &str,
        reference: Option<&ConnectionRef>,
        fresh: bool,
    ) -> impl Future<Output = Result<Connection<Self::System>, ConnectionError>> + Send;
}

/// Why the object store did not take a write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object is no longer at the resourceVersion the write was conditional on.
    #[error("conflict: the object changed since it was read")]
    Conflict,
    /// The object is gone.
    #[error("not found")]
    NotFound,
    /// Anything else (the API server failed, timed out, refused).
    #[error("{0}")]
    Other(String),
}

/// Normal or Warning, as in a Kubernetes Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something went as it should.
    Normal,
    /// Something a person may need to look at.
    Warning,
}

/// What the lifecycle reads from and writes to the object store.
pub trait ObjectStore: Send + Sync {
    /// The object as the store holds it now.
    fn read<K: JobKind>(
        &self,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = Result<K, StoreError>> + Send;
    /// Every object of kind `K` the operator watches, read now (not from a cache).
    fn list<K: JobKind>(&self) -> impl Future<Output = Result<Vec<K>, StoreError>> + Send;
    /// Applies a merge patch to the status subresource. `patch` carries
    /// `metadata.resourceVersion`, so the store refuses it ([`StoreError::Conflict`]) when the
    /// object moved. Returns the object as written.
    fn patch_status<K: JobKind>(
        &self,
        ns: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> impl Future<Output = Result<K, StoreError>> + Send;
    /// Sets the object's finalizers, conditional on `resource_version`. Returns the object as
    /// written, or `None` when that let a deleted object go.
    fn set_finalizers<K: JobKind>(
        &self,
        ns: &str,
        name: &str,
        resource_version: Option<&str>,
        finalizers: Vec<String>,
    ) -> impl Future<Output = Result<Option<K>, StoreError>> + Send;
    /// Publishes an Event about `obj` (off the reconcile path: never fails the reconcile).
    fn event<K: JobKind>(&self, obj: &K, severity: Severity, reason: &str, note: &str);
    /// The job ids that objects of `kind` other than `uid` follow or followed, as the caches
    /// show them, each with who (`namespace/name`).
    fn claimed_jobs(&self, kind: &'static str, uid: &str) -> HashMap<String, String>;
    /// Writes a run record: creates it, or updates it when it exists (then its `jobUid`, the
    /// object that made the run, is kept). `true` when it was created. `known` says this
    /// process wrote or adopted it before, so the update is tried first (one request, not a
    /// refused create and then the update).
    fn put_record(
        &self,
        ns: &str,
        record: &BkRun,
        known: bool,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The run records in `ns` labelled with `fingerprint`, as the store holds them at
    /// `not_older_than` (a resourceVersion) or later: every record written before that version
    /// is in the answer. The API server serves it from its watch cache once that cache has
    /// caught up with the version, so a guard costs no read of every record from etcd.
    fn records(
        &self,
        ns: &str,
        fingerprint: &str,
        not_older_than: &str,
    ) -> impl Future<Output = Result<Vec<BkRun>, StoreError>> + Send;
    /// The run records of jobs of `kind` in every namespace the operator watches, read now.
    fn records_of_kind(
        &self,
        kind: &'static str,
    ) -> impl Future<Output = Result<Vec<BkRun>, StoreError>> + Send;
    /// What a job that others depend on shows now: `None` when it does not exist.
    fn dependency(
        &self,
        ns: &str,
        dep: &Dependency,
    ) -> impl Future<Output = Result<Option<crate::run::deps::DependencyView>, StoreError>> + Send;
}

/// Time as the lifecycle sees it.
pub trait Clock: Send + Sync {
    /// Wall-clock time (written to status, compared with BlueKing's times).
    fn now(&self) -> DateTime<Utc>;
    /// A monotonic reading, for in-memory intervals.
    fn elapsed(&self) -> Duration;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// A factor in 0.8..1.2 that spreads poll intervals.
    fn jitter(&self) -> f64;
}

/// The operator's clock: the system's time, Tokio's timer, a random jitter.
pub struct SystemClock {
    started: std::time::Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            started: std::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
    fn jitter(&self) -> f64 {
        use rand::Rng;
        rand::rng().random_range(0.8..1.2)
    }
}

/// What the lifecycle counts. Labels are static strings, as they are metric labels.
pub trait Counters: Send + Sync {
    /// A reconcile decided `outcome` (`submit`, `poll`, `await_cache`, ...).
    fn reconcile(&self, kind: &'static str, outcome: &'static str);
    /// A status write of kind `why` (`intent`, `progress`, `change`).
    fn status_write(&self, kind: &'static str, why: &'static str);
    /// An object entered `phase`.
    fn phase(&self, kind: &'static str, phase: &'static str);
    /// A create's outcome (`submitted`, `transient`, `ambiguous`, `found`, ...).
    fn submission(&self, kind: &'static str, outcome: &'static str);
    /// A run record write (`create`, `update`, `failed`).
    fn record_write(&self, kind: &'static str, outcome: &'static str);
    /// A BlueKing call, its outcome and how long it took.
    fn bk_call(
        &self,
        system: &'static str,
        call: &'static str,
        outcome: &'static str,
        took: Duration,
    );
}

/// Counts nothing.
pub struct NoCounters;

impl Counters for NoCounters {
    fn reconcile(&self, _: &'static str, _: &'static str) {}
    fn status_write(&self, _: &'static str, _: &'static str) {}
    fn phase(&self, _: &'static str, _: &'static str) {}
    fn submission(&self, _: &'static str, _: &'static str) {}
    fn record_write(&self, _: &'static str, _: &'static str) {}
    fn bk_call(&self, _: &'static str, _: &'static str, _: &'static str, _: Duration) {}
}
