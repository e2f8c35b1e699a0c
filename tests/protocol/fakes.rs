//! In-memory fakes of the lifecycle's seams: an object store with resourceVersion
//! compare-and-swap and per-instance lagging caches, and a BlueKing that keeps its jobs and
//! injects faults. Every call is an await point (a yield the scheduler may stop at, or kill the
//! instance at); calls with an effect yield before and after it, so a kill after the effect loses
//! the answer.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bkops::api::common::{ConnectionRef, Dependency, RecreatePolicy};
use bkops::api::{AgentJob, BkRun, ExecuteJob, JobStatus, ProcessJob, Taskflow};
use bkops::bk::facade::{
    CancelOutcome, Candidate, CreateRequest, JobPhase, JobRef, Progress, SearchQuery, SearchTarget,
    Searched, Submitted, Summary, Unsupported,
};
use bkops::bk::{BkError, CallInfo, CallKind, System};
use bkops::run::act::{
    Clock, Connection, ConnectionError, Connections, JobSystem, ObjectStore, Severity, StoreError,
};
use bkops::run::{Defaults, JobKind};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// How long a create may take before the gateway gives up on it (and the backend with it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A job in the fake BlueKing.
#[derive(Clone, Debug)]
pub struct FakeJob {
    pub id: i64,
    pub system: System,
    /// The namespace (one object each) whose create made it.
    pub ns: String,
    /// The uid of that object (of the incarnation whose intent the create followed).
    pub uid: String,
    /// The run key of the intent the create followed.
    pub key: String,
    /// The fingerprint of the object that made it, as its intent landed (empty: no intent).
    pub fingerprint: String,
    /// Whether that object carried `recreatePolicy: Run`.
    pub recreate_run: bool,
    /// Plan/scope or space/template: what a content search compares.
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub started: bool,
    pub polls_left: u32,
    pub ends: JobPhase,
    pub phase: JobPhase,
}

/// Everything the fakes share; one per simulated case.
pub struct World {
    pub rng: StdRng,
    pub now: DateTime<Utc>,
    pub mono: Duration,
    /// Faults are injected while this is set.
    pub faults: bool,
    /// The store checks `metadata.resourceVersion` on writes (turned off to show that the
    /// simulation catches a store without compare-and-swap).
    pub compare_and_swap: bool,
    /// The guard's list of run records answers (turned off to show that the simulation catches
    /// a re-created object that runs again).
    pub records_visible: bool,
    pub rv: u64,
    /// The objects by namespace (one object per namespace, named `job`).
    pub objects: BTreeMap<String, Value>,
    /// Every version each namespace's object had, in order, with its resourceVersion; `None`
    /// once deleted (a later incarnation follows with a higher resourceVersion).
    pub versions: BTreeMap<String, Vec<(u64, Option<Value>)>>,
    /// The manifest (kind and spec) each namespace's object was first created with, and the
    /// one last applied (at its last creation or edit): what a person re-creates it from.
    pub manifests: BTreeMap<String, Manifests>,
    /// Incarnations created so far by namespace: the next one's uid is `uid-{ns}-{n}`.
    pub incarnations: BTreeMap<String, u32>,
    /// Namespaces whose object is deleted and re-created in one go (Argo CD `Replace=true`):
    /// created again from the last applied manifest once the old object is gone.
    pub replacing: std::collections::BTreeSet<String>,
    /// Re-creations, in order.
    pub recreations: Vec<Recreation>,
    pub jobs: Vec<FakeJob>,
    pub next_id: i64,
    /// Creates by run key.
    pub creates: BTreeMap<String, u32>,
    pub violations: Vec<String>,
    /// The await point the last yield was at.
    pub at: &'static str,
    pub events: u64,
    /// Creates given up unsent, past their send window.
    pub not_sent: u64,
    /// Runs (namespace, key) that adopted the job of an object deleted since.
    pub orphans_adopted: std::collections::BTreeSet<(String, String)>,
    /// Of those, the runs that adopted a job a run record claims for another run (the record of
    /// the deleted object's run was there to tell the search whose job it is).
    pub orphans_claimed: std::collections::BTreeSet<(String, String)>,
    /// Jobs that runs of two objects in the cluster followed at once (by run key and uid).
    pub shared_jobs: std::collections::BTreeSet<i64>,
    /// Runs with a job id (current or in history) that had no run record when their object went:
    /// a re-created object with that run's manifest would run again.
    pub unrecorded: Vec<String>,
    /// Run records by namespace and name.
    pub records: BTreeMap<(String, String), BkRun>,
}

impl World {
    pub fn new(seed: u64) -> Self {
        World {
            rng: StdRng::seed_from_u64(seed),
            now: DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
                .expect("a time")
                .with_timezone(&Utc),
            mono: Duration::from_secs(1000),
            faults: true,
            compare_and_swap: true,
            records_visible: true,
            rv: 1,
            objects: BTreeMap::new(),
            versions: BTreeMap::new(),
            manifests: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            replacing: Default::default(),
            recreations: Vec::new(),
            jobs: Vec::new(),
            next_id: 100,
            creates: BTreeMap::new(),
            violations: Vec::new(),
            at: "start",
            events: 0,
            not_sent: 0,
            orphans_adopted: Default::default(),
            orphans_claimed: Default::default(),
            shared_jobs: Default::default(),
            unrecorded: Vec::new(),
            records: BTreeMap::new(),
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.mono += d;
        self.now += chrono::TimeDelta::from_std(d).expect("a short step");
    }

    fn bump(&mut self, ns: &str) {
        self.rv += 1;
        let rv = self.rv.to_string();
        if let Some(obj) = self.objects.get_mut(ns) {
            obj["metadata"]["resourceVersion"] = json!(rv);
            let copy = obj.clone();
            let rv = self.rv;
            self.versions
                .entry(ns.to_owned())
                .or_default()
                .push((rv, Some(copy)));
        }
    }

    /// Stores a new object in `ns` from `manifest` (kind and spec), a new incarnation with a uid
    /// of its own; returns the uid. Like the API server, refuses (`None`) while an object of
    /// that name exists, deleted or not.
    pub fn create(&mut self, ns: &str, manifest: Value) -> Option<String> {
        if self.objects.contains_key(ns) {
            return None;
        }
        let n = self.incarnations.entry(ns.to_owned()).or_default();
        // The run key takes the uid's first 8 characters other than '-': keep them distinct,
        // as a real uid's are.
        assert!(
            *n < 100,
            "{ns}: too many incarnations for distinct run keys"
        );
        let uid = format!("uid-{ns}-{n}");
        *n += 1;
        self.manifests
            .entry(ns.to_owned())
            .or_insert_with(|| Manifests {
                original: manifest.clone(),
                applied: manifest.clone(),
            })
            .applied = manifest.clone();
        let mut obj = manifest;
        obj["metadata"] = json!({
            "namespace": ns,
            "name": "job",
            "uid": uid,
            "generation": 1,
        });
        self.objects.insert(ns.to_owned(), obj);
        self.bump(ns);
        Some(uid)
    }

    /// The uid of the object now in `ns`.
    pub fn uid_in(&self, ns: &str) -> Option<&str> {
        self.objects.get(ns)?.pointer("/metadata/uid")?.as_str()
    }

    /// A person edits the spec (a new `rerunToken`): a new generation.
    pub fn edit(&mut self, ns: &str, token: String) {
        let Some(obj) = self.objects.get_mut(ns) else {
            return;
        };
        if obj["metadata"].get("deletionTimestamp").is_some() {
            return;
        }
        obj["spec"]["rerunToken"] = json!(token);
        let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        obj["metadata"]["generation"] = json!(generation);
        let spec = obj["spec"].clone();
        if let Some(m) = self.manifests.get_mut(ns) {
            m.applied["spec"] = spec;
        }
        self.bump(ns);
    }

    /// A person deletes the object: marked while it has finalizers, gone otherwise.
    pub fn delete(&mut self, ns: &str) {
        let now = self.now;
        let Some(obj) = self.objects.get_mut(ns) else {
            return;
        };
        let has_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if obj["metadata"].get("deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = json!(now.to_rfc3339());
                self.bump(ns);
            }
        } else {
            self.remove(ns);
        }
    }

    fn remove(&mut self, ns: &str) {
        let gone = self.objects.remove(ns);
        if let Some(status) = gone
            .as_ref()
            .and_then(|o| o.get("status"))
            .and_then(|s| serde_json::from_value::<JobStatus>(s.clone()).ok())
        {
            for (key, id) in records(&status) {
                let Some(id) = id else { continue };
                if !self.records.values().any(|r| r.spec.run_key == key) {
                    let uid = gone.as_ref().and_then(|o| o.pointer("/metadata/uid"));
                    let what =
                        format!("{ns}: run {key} of {uid:?} (job {id}) went without a run record");
                    if std::env::var_os("BKOPS_SIM_TRACE").is_some() {
                        eprintln!("{what}");
                    }
                    self.unrecorded.push(what);
                }
            }
        }
        self.rv += 1;
        let rv = self.rv;
        self.versions
            .entry(ns.to_owned())
            .or_default()
            .push((rv, None));
    }

    /// Creates again, from the last applied manifest, each object deleted and re-created in one
    /// go whose old incarnation is gone now.
    pub fn replace_gone(&mut self) {
        let gone: Vec<String> = self
            .replacing
            .iter()
            .filter(|ns| !self.objects.contains_key(*ns))
            .cloned()
            .collect();
        for ns in gone {
            self.replacing.remove(&ns);
            let manifest = self.manifests[&ns].applied.clone();
            self.recreate(&ns, manifest, "replaced");
        }
    }

    /// Creates `ns`'s object again from `manifest`, noting what its fingerprint had then.
    pub fn recreate(&mut self, ns: &str, manifest: Value, how: &'static str) -> Option<String> {
        let uid = self.create(ns, manifest)?;
        let (fp, run_policy) = fingerprint_of(&self.objects[ns]).expect("a job object");
        let record = self.records.values().any(|r| r.spec.fingerprint == fp);
        let job = self.jobs.iter().any(|j| j.fingerprint == fp);
        if std::env::var_os("BKOPS_SIM_TRACE").is_some() {
            eprintln!(
                "re-created {ns} {how}: {uid}, fingerprint {fp}{} (record: {record}, job: {job})",
                if run_policy {
                    ", recreatePolicy Run"
                } else {
                    ""
                }
            );
        }
        self.recreations.push(Recreation {
            uid: uid.clone(),
            how,
            run_policy,
            record,
            job,
        });
        Some(uid)
    }

    fn status_of(&self, ns: &str) -> Option<JobStatus> {
        let status = self.objects.get(ns)?.get("status")?;
        serde_json::from_value(status.clone()).ok()
    }

    /// Whether some version of `ns`'s object recorded run `key` (its intent landed).
    fn intent_landed(&self, ns: &str, key: &str) -> bool {
        self.versions
            .get(ns)
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.as_ref())
            .any(|v| v.pointer("/status/run/key").and_then(Value::as_str) == Some(key))
    }

    /// Checks a create following `intent` for the object in `ns` against the invariants, before
    /// it commits.
    fn check_create(&mut self, ns: &str, intent: &Intent) {
        let key = intent.key.as_str();
        if !self.intent_landed(ns, key) {
            self.violations.push(format!(
                "{ns}: a create of run {key} without a landed intent"
            ));
        }
        let count = self.creates.entry(key.to_owned()).or_default();
        *count += 1;
        if *count > 1 {
            self.violations
                .push(format!("{ns}: run {key} created {count} times"));
        }
        // A job committed earlier for the same fingerprint (kind, namespace, name, job-defining
        // spec, rerunToken), by this object or an earlier one of the same name: the re-created
        // object ran again. Allowed only with `recreatePolicy: Run` (a person confirming
        // not-submitted, or a retry after the earlier job failed, would also allow it; the
        // simulation does neither). A create the gateway gave up on, or that a search concluded
        // was never made, made no job here, so it does not count.
        if !intent.recreate_run && !intent.fingerprint.is_empty() {
            let earlier: Vec<String> = self
                .jobs
                .iter()
                .filter(|j| j.fingerprint == intent.fingerprint)
                .map(|j| {
                    format!(
                        "job {} of run {} (object {}, created at {})",
                        j.id, j.key, j.uid, j.created_at
                    )
                })
                .collect();
            if !earlier.is_empty() {
                self.violations.push(format!(
                    "{ns}: run {key} of object {} created at {} a second job for fingerprint {}, which already has {} (a re-created object ran again)",
                    intent.uid,
                    self.now,
                    intent.fingerprint,
                    earlier.join(", ")
                ));
            }
        }
        // An earlier create of this object that the object does not know of: it was unclear,
        // and is repeated without a person saying so. (A create still in flight when its object
        // was deleted repeats nothing: no one submits for a deleted object; nor does one of an
        // object deleted and re-created since: that is another object.)
        if self.uid_in(ns) != Some(intent.uid.as_str()) {
            return;
        }
        let known: Vec<String> = self
            .status_of(ns)
            .map(|s| records(&s).into_iter().filter_map(|(_, id)| id).collect())
            .unwrap_or_default();
        for job in self
            .jobs
            .iter()
            .filter(|j| j.uid == intent.uid && j.key != key)
        {
            if !known.contains(&job.id.to_string()) {
                self.violations.push(format!(
                    "{ns}: run {key} created at {} while job {} of run {} (created at {}) is not known to the object (an unclear create repeated)",
                    self.now, job.id, job.key, job.created_at
                ));
            }
        }
    }

    /// Checks what every object records: each job id it names was created for that run.
    pub fn check_records(&mut self) {
        let mut found = Vec::new();
        let mut orphans = std::collections::BTreeSet::new();
        // Which objects' current runs follow each job.
        let mut followers: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (ns, obj) in &self.objects {
            let Some(status) = obj
                .get("status")
                .and_then(|s| serde_json::from_value::<JobStatus>(s.clone()).ok())
            else {
                continue;
            };
            if let Some(run) = &status.run
                && let Some(id) = &run.job_id
            {
                let uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
                followers
                    .entry(id.clone())
                    .or_default()
                    .push((uid.unwrap_or_default().to_owned(), run.key.clone()));
            }
            for (key, id) in records(&status) {
                let Some(id) = id else { continue };
                match self.jobs.iter().find(|j| j.id.to_string() == id) {
                    Some(job) if job.key == key => {}
                    // The job of an object deleted since (maybe re-created as another object):
                    // no object claims it any more, so a search by content cannot tell it apart.
                    // Counted, not a failure here.
                    Some(job) if self.uid_in(&job.ns) != Some(job.uid.as_str()) => {
                        let claimed = self.records.values().any(|r| {
                            r.spec.job_id.as_deref() == Some(id.as_str()) && r.spec.run_key != key
                        });
                        if claimed
                            && !self.orphans_claimed.contains(&(ns.clone(), key.clone()))
                            && std::env::var_os("BKOPS_SIM_TRACE").is_some()
                        {
                            eprintln!(
                                "{ns}: run {key} follows job {id} of run {} of deleted object {}, which a run record claims",
                                job.key, job.uid
                            );
                        }
                        if claimed {
                            self.orphans_claimed.insert((ns.clone(), key.clone()));
                        }
                        orphans.insert((ns.clone(), key));
                    }
                    Some(job) => found.push(format!(
                        "{ns}: run {key} follows job {id}, created for run {} of {}",
                        job.key, job.ns
                    )),
                    None => found.push(format!(
                        "{ns}: run {key} follows job {id}, which does not exist"
                    )),
                }
            }
        }
        self.violations.extend(found);
        self.orphans_adopted.extend(orphans);
        for (id, who) in followers {
            let Ok(id) = id.parse::<i64>() else { continue };
            if who.len() > 1
                && self.shared_jobs.insert(id)
                && std::env::var_os("BKOPS_SIM_TRACE").is_some()
            {
                eprintln!("job {id} followed at once by {who:?}");
            }
        }
    }

    fn fault(&mut self, per_mille: u32) -> bool {
        self.faults && self.rng.random_range(0..1000) < per_mille
    }
}

pub type Shared = Arc<Mutex<World>>;

pub fn lock(world: &Shared) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

/// Returns `Pending` once: the scheduler decides when, and whether, the caller goes on.
#[derive(Default)]
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// An await point named `at`.
async fn point(world: &Shared, at: &'static str) {
    lock(world).at = at;
    YieldOnce::default().await;
}

/// The simulated clock.
pub struct SimClock(pub Shared);

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        lock(&self.0).now
    }
    fn elapsed(&self) -> Duration {
        lock(&self.0).mono
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        // The sleeper lets time pass.
        let world = self.0.clone();
        Box::pin(async move {
            lock(&world).advance(d);
            point(&world, "sleep").await
        })
    }
    fn jitter(&self) -> f64 {
        1.0
    }
}

/// One instance's view of the store: writes go to the shared store, the caches are its own.
pub struct SimStore {
    pub world: Shared,
    /// The instance's watch cache by namespace.
    pub cache: Arc<Mutex<BTreeMap<String, Value>>>,
    /// The run key of this instance's last intent that landed, by namespace (removed when an
    /// intent fails): the run a create of this instance follows.
    pub intents: Intents,
}

/// A re-created object, and what was there for its fingerprint when it was created.
#[derive(Clone, Debug)]
pub struct Recreation {
    pub uid: String,
    /// From what manifest.
    pub how: &'static str,
    /// Whether it carries `recreatePolicy: Run`.
    pub run_policy: bool,
    /// Whether a run record of its fingerprint existed.
    pub record: bool,
    /// Whether a job of its fingerprint existed.
    pub job: bool,
}

/// The manifests a namespace's object is created from (kind and spec).
#[derive(Clone, Debug)]
pub struct Manifests {
    /// As first created.
    pub original: Value,
    /// As last applied (created or edited).
    pub applied: Value,
}

/// An intent that landed: the run and the object (incarnation) it was written to.
#[derive(Clone, Debug)]
pub struct Intent {
    pub key: String,
    pub uid: String,
    /// The object's fingerprint as the operator computes it from the typed object.
    pub fingerprint: String,
    /// Whether the object carries `recreatePolicy: Run`.
    pub recreate_run: bool,
}

/// Intents by namespace.
pub type Intents = Arc<Mutex<BTreeMap<String, Intent>>>;

/// The fingerprint of `obj` (`bkops::run::fingerprint` of its kind, namespace, name, spec hash
/// and rerunToken, computed from the typed object as the operator does), and whether it carries
/// `recreatePolicy: Run`.
pub fn fingerprint_of(obj: &Value) -> Option<(String, bool)> {
    fn of<K: JobKind>(obj: &Value) -> Option<(String, bool)> {
        let typed: K = serde_json::from_value(obj.clone()).ok()?;
        let meta = typed.meta();
        let common = typed.common();
        let fp = bkops::run::fingerprint(
            K::NAME,
            meta.namespace.as_deref()?,
            meta.name.as_deref()?,
            &bkops::run::spec_hash(&typed.spec_json()),
            common.rerun_token.as_deref(),
        );
        Some((fp, common.recreate_policy == Some(RecreatePolicy::Run)))
    }
    match obj["kind"].as_str()? {
        "ExecuteJob" => of::<ExecuteJob>(obj),
        "ProcessJob" => of::<ProcessJob>(obj),
        "AgentJob" => of::<AgentJob>(obj),
        "Taskflow" => of::<Taskflow>(obj),
        _ => None,
    }
}

fn rv_of(v: &Value) -> Option<&str> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// RFC 7386 merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn parse<K: JobKind>(v: &Value) -> Result<K, StoreError> {
    serde_json::from_value(v.clone()).map_err(|e| StoreError::Other(e.to_string()))
}

impl ObjectStore for SimStore {
    async fn read<K: JobKind>(&self, ns: &str, _name: &str) -> Result<K, StoreError> {
        point(&self.world, "store.read").await;
        let w = lock(&self.world);
        w.objects
            .get(ns)
            .map(parse)
            .unwrap_or(Err(StoreError::NotFound))
    }

    async fn list<K: JobKind>(&self) -> Result<Vec<K>, StoreError> {
        point(&self.world, "store.list").await;
        let w = lock(&self.world);
        let kind = K::kind(&()).into_owned();
        w.objects
            .values()
            .filter(|o| o["kind"].as_str() == Some(kind.as_str()))
            .map(parse)
            .collect()
    }

    async fn patch_status<K: JobKind>(
        &self,
        ns: &str,
        _name: &str,
        patch: &Value,
    ) -> Result<K, StoreError> {
        point(&self.world, "store.patch_status.sent").await;
        // An intent starts a run (a new key) or submits a run again (phase Submitting from
        // Pending): the minimal merge patch carries the key or the phase. (Not intentAt: two
        // intents in the same simulated instant have the same one, left out of the patch.)
        let intent = patch.pointer("/status/run/key").is_some()
            || patch.pointer("/status/run/phase").and_then(Value::as_str) == Some("Submitting");
        let expected = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        let mut landed = None;
        let result: Result<K, StoreError> = {
            let mut w = lock(&self.world);
            let cas = w.compare_and_swap;
            // Like the API server's, a timeout comes before the write commits or after.
            let timeout = w.fault(50);
            let committed = !timeout || w.rng.random_bool(0.5);
            let result = if !committed {
                Err(StoreError::Other("the API server timed out".into()))
            } else {
                match w.objects.get_mut(ns) {
                    None => Err(StoreError::NotFound),
                    // Like the API server: a patch without a resourceVersion is unconditional.
                    Some(obj) if cas && expected.is_some() && rv_of(obj) != expected => {
                        Err(StoreError::Conflict)
                    }
                    Some(obj) => {
                        merge(
                            obj.as_object_mut()
                                .expect("an object")
                                .entry("status")
                                .or_insert(json!({})),
                            &patch["status"],
                        );
                        w.bump(ns);
                        let obj = &w.objects[ns];
                        if let (Some(key), Some((fingerprint, recreate_run))) = (
                            obj.pointer("/status/run/key").and_then(Value::as_str),
                            fingerprint_of(obj),
                        ) {
                            landed = Some(Intent {
                                key: key.to_owned(),
                                uid: obj["metadata"]["uid"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                                fingerprint,
                                recreate_run,
                            });
                        }
                        parse(obj)
                    }
                }
            };
            if timeout {
                if committed && result.is_ok() && std::env::var_os("BKOPS_SIM_TRACE").is_some() {
                    eprintln!("status of {ns} written, the answer timed out");
                }
                Err(StoreError::Other("the API server timed out".into()))
            } else {
                result
            }
        };
        if result.is_err() {
            landed = None;
        }
        if intent {
            if std::env::var_os("BKOPS_SIM_TRACE").is_some() {
                eprintln!(
                    "intent {ns} {} -> {:?}",
                    patch["status"]["run"],
                    result.as_ref().map(|_| ())
                );
            }
            let mut intents = self.intents.lock().unwrap_or_else(|e| e.into_inner());
            match landed {
                Some(intent) => intents.insert(ns.to_owned(), intent),
                None => intents.remove(ns),
            };
        }
        point(&self.world, "store.patch_status.answered").await;
        result
    }

    async fn set_finalizers<K: JobKind>(
        &self,
        ns: &str,
        _name: &str,
        resource_version: Option<&str>,
        finalizers: Vec<String>,
    ) -> Result<Option<K>, StoreError> {
        point(&self.world, "store.finalizers.sent").await;
        let result = {
            let mut w = lock(&self.world);
            let cas = w.compare_and_swap;
            let timeout = w.fault(30);
            let committed = !timeout || w.rng.random_bool(0.5);
            let result = match w.objects.get_mut(ns) {
                _ if !committed => Ok(None),
                None => Err(StoreError::NotFound),
                Some(obj)
                    if cas && resource_version.is_some() && rv_of(obj) != resource_version =>
                {
                    Err(StoreError::Conflict)
                }
                Some(obj) => {
                    obj["metadata"]["finalizers"] = json!(finalizers);
                    let gone =
                        finalizers.is_empty() && obj["metadata"].get("deletionTimestamp").is_some();
                    if gone {
                        w.remove(ns);
                        Ok(None)
                    } else {
                        w.bump(ns);
                        parse(&w.objects[ns]).map(Some)
                    }
                }
            };
            if timeout {
                Err(StoreError::Other("the API server timed out".into()))
            } else {
                result
            }
        };
        point(&self.world, "store.finalizers.answered").await;
        result
    }

    fn event<K: JobKind>(&self, _obj: &K, _severity: Severity, _reason: &str, _note: &str) {
        lock(&self.world).events += 1;
    }

    async fn put_record(&self, ns: &str, record: &BkRun, _known: bool) -> Result<bool, StoreError> {
        point(&self.world, "store.record.sent").await;
        let result = {
            let mut w = lock(&self.world);
            // Like the API server's, a timeout comes before the write commits or after.
            let timeout = w.fault(50);
            let committed = !timeout || w.rng.random_bool(0.5);
            let name = record.metadata.name.clone().unwrap_or_default();
            let created = match w.records.get_mut(&(ns.to_owned(), name.clone())) {
                _ if !committed => false,
                // It exists: a merge patch of the spec without `jobUid` (as the operator's
                // store sends it), so fields the new spec leaves out are kept.
                Some(old) => {
                    let mut spec = serde_json::to_value(&old.spec).expect("a spec");
                    let mut patch = serde_json::to_value(&record.spec).expect("a spec");
                    if let Some(p) = patch.as_object_mut() {
                        p.remove("jobUid");
                    }
                    merge(&mut spec, &patch);
                    old.spec = serde_json::from_value(spec).expect("a merged spec");
                    false
                }
                None => {
                    w.records
                        .insert((ns.to_owned(), name.clone()), record.clone());
                    true
                }
            };
            if std::env::var_os("BKOPS_SIM_TRACE").is_some() {
                eprintln!(
                    "record {ns}/{name} job {:?} phase {} fingerprint {}: {}",
                    record.spec.job_id,
                    record.spec.phase,
                    record.spec.fingerprint,
                    match (timeout, committed) {
                        (false, _) => "written",
                        (true, true) => "written, answer timed out",
                        (true, false) => "timed out, not written",
                    }
                );
            }
            if timeout {
                Err(StoreError::Other("the API server timed out".into()))
            } else {
                Ok(created)
            }
        };
        point(&self.world, "store.record.answered").await;
        result
    }

    async fn records(
        &self,
        ns: &str,
        fingerprint: &str,
        _not_older_than: &str,
    ) -> Result<Vec<BkRun>, StoreError> {
        // The fake store is always current.
        point(&self.world, "store.records").await;
        let mut w = lock(&self.world);
        if w.fault(30) {
            return Err(StoreError::Other("the API server timed out".into()));
        }
        if !w.records_visible {
            return Ok(Vec::new());
        }
        Ok(w.records
            .iter()
            .filter(|((n, _), r)| n == ns && r.spec.fingerprint == fingerprint)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn records_of_kind(&self, kind: &'static str) -> Result<Vec<BkRun>, StoreError> {
        point(&self.world, "store.records").await;
        let mut w = lock(&self.world);
        if w.fault(30) {
            return Err(StoreError::Other("the API server timed out".into()));
        }
        Ok(w.records
            .values()
            .filter(|r| r.spec.job_kind == kind)
            .cloned()
            .collect())
    }

    async fn dependency(
        &self,
        _ns: &str,
        _dep: &Dependency,
    ) -> Result<Option<bkops::run::deps::DependencyView>, StoreError> {
        // The simulated objects depend on nothing.
        Err(StoreError::Other(
            "no dependencies in the simulation".into(),
        ))
    }

    fn claimed_jobs(&self, _kind: &'static str, uid: &str) -> HashMap<String, String> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut claimed = HashMap::new();
        for (ns, obj) in cache.iter() {
            if obj.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid) {
                continue;
            }
            let Some(status) = obj
                .get("status")
                .and_then(|s| serde_json::from_value::<JobStatus>(s.clone()).ok())
            else {
                continue;
            };
            for (_, id) in records(&status) {
                if let Some(id) = id {
                    claimed.insert(id, ns.clone());
                }
            }
        }
        claimed
    }
}

/// The connections of the simulation: every namespace's reaches the same BlueKing.
pub struct SimConnections(pub Shared, pub Intents);

impl Connections for SimConnections {
    type System = SimBk;

    async fn resolve(
        &self,
        ns: &str,
        _reference: Option<&ConnectionRef>,
        _fresh: bool,
    ) -> Result<Connection<SimBk>, ConnectionError> {
        Ok(Connection {
            system: SimBk {
                world: self.0.clone(),
                ns: ns.to_owned(),
                intents: self.1.clone(),
            },
            defaults: Defaults {
                username: Some("admin".into()),
                ..Default::default()
            },
            id: format!("{ns}/bk"),
        })
    }
}

/// BlueKing as one namespace's connection reaches it.
pub struct SimBk {
    world: Shared,
    ns: String,
    intents: Intents,
}

fn http(system: System, endpoint: &'static str, kind: CallKind, status: u16) -> BkError {
    BkError::Http {
        call: CallInfo {
            system,
            endpoint,
            kind,
        },
        status,
        request_id: None,
        retry_after: None,
        body: "simulated".into(),
    }
}

/// What a content search compares: plan and scope, or space and template.
fn content_of_request(req: &CreateRequest) -> (System, String) {
    match req {
        CreateRequest::JobV3(r) => (
            System::Job,
            format!("{:?}/{}/{}", r.bk_scope_type, r.bk_scope_id, r.job_plan_id),
        ),
        CreateRequest::BkflowTemplate { space_id, body } => {
            (System::Bkflow, format!("{space_id}/{}", body.template_id))
        }
        CreateRequest::NodemanJob(r) => (
            System::Nodeman,
            format!("{}/{:?}", r.job_type, r.bk_host_id),
        ),
        CreateRequest::Gsekit(r) => (
            System::Gsekit,
            format!(
                "{}/{:?}/{:?}/{}",
                r.bk_biz_id,
                Some(r.job_object.clone()),
                Some(r.job_action.clone()),
                serde_json::to_value(&r.expression_scope).unwrap_or_default()
            ),
        ),
        other => panic!("the simulation does not create {:?}", other.system()),
    }
}

fn content_of_target(target: &SearchTarget) -> String {
    match target {
        SearchTarget::Job {
            scope_type,
            scope_id,
            job_plan_id,
            ..
        } => format!(
            "{scope_type:?}/{scope_id}/{}",
            job_plan_id.unwrap_or_default()
        ),
        SearchTarget::Bkflow {
            space_id,
            template_id,
        } => format!("{space_id}/{}", template_id.unwrap_or_default()),
        SearchTarget::Nodeman {
            job_type,
            bk_host_id,
            ..
        } => format!("{}/{bk_host_id:?}", job_type.clone().unwrap_or_default()),
        SearchTarget::Gsekit {
            biz_id,
            job_object,
            job_action,
            expression_scope,
            ..
        } => format!(
            "{biz_id}/{job_object:?}/{job_action:?}/{}",
            expression_scope.clone().unwrap_or_default()
        ),
    }
}

fn job_ref(job: &FakeJob) -> JobRef {
    match job.system {
        System::Job => JobRef::JobV3 {
            scope_type: bkops::bk::job::ScopeType::Biz,
            scope_id: "2".into(),
            job_instance_id: job.id,
        },
        System::Gsekit => JobRef::Gsekit {
            biz_id: 2,
            job_id: job.id,
        },
        System::Nodeman => JobRef::Nodeman { job_id: job.id },
        _ => JobRef::Bkflow {
            space_id: 1,
            task_id: job.id,
        },
    }
}

fn find<'w>(w: &'w mut World, job: &JobRef) -> Option<&'w mut FakeJob> {
    let id: i64 = job.id().parse().ok()?;
    w.jobs.iter_mut().find(|j| j.id == id)
}

impl JobSystem for SimBk {
    type Ticket = ();

    fn timeout(&self) -> Duration {
        CALL_TIMEOUT
    }

    fn unsupported(&self, _req: &CreateRequest) -> Option<Unsupported> {
        None
    }

    async fn create_ticket(&self) {
        point(&self.world, "bk.ticket").await;
    }

    async fn submit(
        &self,
        _ticket: (),
        req: &CreateRequest,
        send_within: Duration,
    ) -> Result<Submitted, BkError> {
        let (system, content) = content_of_request(req);
        // Waiting for a slot among the calls in flight: the create is sent only within its window.
        let asked = lock(&self.world).mono;
        point(&self.world, "bk.create.queued").await;
        let waited = lock(&self.world).mono.saturating_sub(asked);
        if waited > send_within {
            let call = CallInfo {
                system,
                endpoint: "create",
                kind: CallKind::Create,
            };
            lock(&self.world).not_sent += 1;
            return Err(BkError::NotSent {
                call,
                waited,
                window: send_within,
            });
        }
        let sent = lock(&self.world).mono;
        point(&self.world, "bk.create.sent").await;
        let answer = {
            let mut w = lock(&self.world);
            // The intent this create follows: this instance's last that landed.
            let intent = self
                .intents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&self.ns)
                .cloned()
                .unwrap_or_else(|| Intent {
                    key: "(no intent)".into(),
                    uid: String::new(),
                    fingerprint: String::new(),
                    recreate_run: false,
                });
            let key = intent.key.clone();
            if w.fault(80) {
                Err(http(system, "create", CallKind::Create, 429))
            } else if w.fault(80) {
                // Reset before the backend took it.
                Err(http(system, "create", CallKind::Create, 502))
            } else if w.mono.saturating_sub(sent) > CALL_TIMEOUT {
                // Too slow: the gateway gave up, and the backend with it.
                Err(http(system, "create", CallKind::Create, 504))
            } else {
                w.check_create(&self.ns, &intent);
                if std::env::var_os("BKOPS_SIM_TRACE").is_some() {
                    eprintln!(
                        "create {} for {key} of {} (fingerprint {}) at {}",
                        w.next_id,
                        intent.uid,
                        intent.fingerprint,
                        w.now.format("%H:%M:%S")
                    );
                }
                let id = w.next_id;
                w.next_id += 1;
                let polls_left = w.rng.random_range(1..4);
                let ends = if w.rng.random_range(0..5) == 0 {
                    JobPhase::Failed
                } else {
                    JobPhase::Succeeded
                };
                let mut job = FakeJob {
                    id,
                    system,
                    ns: self.ns.clone(),
                    uid: intent.uid,
                    key,
                    fingerprint: intent.fingerprint,
                    recreate_run: intent.recreate_run,
                    content,
                    created_at: w.now,
                    started: false,
                    polls_left,
                    ends,
                    phase: JobPhase::NotStarted,
                };
                let reference = job_ref(&job);
                // GSEKit and NodeMan run a job at once; BKFlow and JOB v3 wait for their start.
                let needs_start = matches!(system, System::Bkflow | System::Job);
                if !needs_start {
                    job.started = true;
                    job.phase = JobPhase::Running;
                }
                w.jobs.push(job);
                if w.fault(100) {
                    // Committed, and the answer lost.
                    Err(http(system, "create", CallKind::Create, 504))
                } else {
                    Ok(Submitted {
                        job: reference,
                        job_url: None,
                        needs_start,
                    })
                }
            }
        };
        point(&self.world, "bk.create.answered").await;
        answer
    }

    async fn start(&self, job: &JobRef) -> Result<(), BkError> {
        point(&self.world, "bk.start.sent").await;
        let answer = {
            let mut w = lock(&self.world);
            if w.fault(100) {
                Err(http(job.system(), "start", CallKind::Operate, 503))
            } else if let Some(j) = find(&mut w, job) {
                j.started = true;
                if j.phase == JobPhase::NotStarted {
                    j.phase = JobPhase::Running;
                }
                Ok(())
            } else {
                Err(http(job.system(), "start", CallKind::Operate, 404))
            }
        };
        point(&self.world, "bk.start.answered").await;
        answer
    }

    async fn progress(&self, job: &JobRef) -> Result<Progress, Arc<BkError>> {
        point(&self.world, "bk.progress").await;
        let mut w = lock(&self.world);
        if w.fault(100) {
            return Err(Arc::new(http(job.system(), "status", CallKind::Safe, 503)));
        }
        let Some(j) = find(&mut w, job) else {
            return Err(Arc::new(http(job.system(), "status", CallKind::Safe, 404)));
        };
        if j.phase == JobPhase::Running {
            j.polls_left = j.polls_left.saturating_sub(1);
            if j.polls_left == 0 {
                j.phase = j.ends;
            }
        }
        Ok(Progress {
            phase: j.phase,
            upstream_state: format!("{:?}", j.phase),
            summary: Summary::default(),
            failed_targets: Vec::new(),
            message: None,
            started_at: None,
            finished_at: None,
        })
    }

    async fn cancel(&self, job: &JobRef) -> Result<CancelOutcome, BkError> {
        point(&self.world, "bk.cancel.sent").await;
        let answer = {
            let mut w = lock(&self.world);
            if w.fault(100) {
                Err(http(job.system(), "cancel", CallKind::Operate, 503))
            } else if job.system() == System::Gsekit {
                Ok(CancelOutcome::NotSupported)
            } else if let Some(j) = find(&mut w, job) {
                if j.phase.is_terminal() {
                    Ok(CancelOutcome::AlreadyFinished)
                } else {
                    j.phase = JobPhase::Cancelled;
                    Ok(CancelOutcome::Requested)
                }
            } else {
                Err(http(job.system(), "cancel", CallKind::Operate, 404))
            }
        };
        point(&self.world, "bk.cancel.answered").await;
        answer
    }

    async fn search(&self, q: &SearchQuery) -> Result<Searched, BkError> {
        point(&self.world, "bk.search").await;
        let mut w = lock(&self.world);
        let now = w.now;
        let content = content_of_target(&q.target);
        let system = match q.target {
            SearchTarget::Job { .. } => System::Job,
            SearchTarget::Gsekit { .. } => System::Gsekit,
            SearchTarget::Nodeman { .. } => System::Nodeman,
            _ => System::Bkflow,
        };
        if w.fault(100) {
            return Err(http(system, "search", CallKind::Safe, 503));
        }
        let mut candidates: Vec<Candidate> = w
            .jobs
            .iter()
            .rev()
            .filter(|j| j.system == system && j.created_at >= q.since && j.created_at <= q.until)
            .map(|j| Candidate {
                job: job_ref(j),
                created_at: Some(j.created_at),
                name: None,
                key_matched: system.stores_run_key() && j.key == q.key,
                // NodeMan shows a job's hosts only once it is prepared.
                content_matched: (system != System::Nodeman
                    || q.until.min(now) - j.created_at >= chrono::TimeDelta::seconds(10))
                .then_some(j.content == content),
            })
            .collect();
        candidates.sort_by_key(|c| !c.key_matched);
        let complete = !w.fault(100);
        if !complete {
            candidates.truncate(1);
        }
        Ok(Searched {
            candidates,
            complete,
        })
    }
}

/// The run key and job id of a status's current run and of its history.
pub fn records(status: &JobStatus) -> Vec<(String, Option<String>)> {
    let current = status.run.iter().map(|r| (r.key.clone(), r.job_id.clone()));
    let history = status
        .history
        .iter()
        .map(|r| (r.key.clone(), r.job_id.clone()));
    current.chain(history).collect()
}
