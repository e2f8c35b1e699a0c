//! What every reconcile shares: the operator's settings, the Kubernetes client, the connection
//! cache, metrics, Events, the BKFlow batch poller, each kind's cache and in-memory timings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use rand::Rng;
use tokio::sync::Mutex;

use super::batch::{self, BkflowBatcher};
use super::cached::CachedObject;
use super::connection::Connections;
use super::events::Events;
use super::metrics::Metrics;

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// Connection for jobs without `connectionRef` (looked up in the job's namespace).
    pub default_connection: Option<String>,
    /// Reconciles at once, per kind and lane (deciding, following a running job).
    pub concurrency: u16,
    /// How long creates of a run may go unmade (BlueKing unreachable, rate limited, over quota)
    /// before the run is reported `Stalled`; they are still tried.
    pub submit_stall: Duration,
    /// How long after its intent an unclear create is searched for before the search concludes
    /// (nothing created, or `Unknown`); never less than the create call's timeout plus 5 s.
    pub resolve_grace: Duration,
    /// First poll interval of a run.
    pub poll_initial: Duration,
    /// Longest poll interval.
    pub poll_max: Duration,
    /// Leader election with a Lease.
    pub leader_election: Option<LeaderElection>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// Identity in Events and the Lease.
    pub identity: String,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            namespaces: Vec::new(),
            default_connection: None,
            concurrency: 64,
            resolve_grace: Duration::from_secs(240),
            submit_stall: Duration::from_secs(300),
            poll_initial: Duration::from_secs(2),
            poll_max: Duration::from_secs(30),
            leader_election: None,
            metrics_addr: None,
            identity: default_identity(),
        }
    }
}

/// The pod name (`HOSTNAME`) plus a random suffix, so two processes never share an identity.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "bkops".to_owned());
    format!("{host}-{:06x}", rand::rng().random_range(0..0xff_ffff))
}

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Lease duration in seconds.
    pub duration_secs: u64,
}

/// Shared by every reconcile.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Settings.
    pub config: OperatorConfig,
    /// Connection cache.
    pub connections: Connections,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Events, published off the reconcile path.
    pub events: Events,
    /// In-memory timings.
    pub timings: Mutex<Timings>,
    /// BKFlow batch poller.
    pub bkflow_batch: BkflowBatcher,
    /// Each kind's cache (one per watched namespace), for the job ids other objects follow.
    stores: std::sync::Mutex<Vec<(&'static str, reflector::Store<CachedObject>)>>,
    /// Jobs this process adopted after a search, by kind and job id: the object's uid. Closes the
    /// window before the adopting object's status shows the job in the cache.
    adopted: std::sync::Mutex<std::collections::HashMap<(&'static str, String), String>>,
}

impl Context {
    /// A context for `client` and `config`. Starts the Event publishers, so it must be called on a
    /// Tokio runtime.
    pub fn new(client: Client, config: OperatorConfig, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "bkops".into(),
            instance: Some(config.identity.clone()),
        };
        Context {
            connections: Connections::new(client.clone(), config.default_connection.clone())
                .with_metrics(metrics.clone()),
            events: Events::start(client.clone(), reporter, metrics.clone()),
            client,
            config,
            metrics,
            timings: Mutex::new(Timings::default()),
            bkflow_batch: BkflowBatcher::new(batch::BKFLOW_BATCH_WINDOW),
            stores: std::sync::Mutex::new(Vec::new()),
            adopted: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub(super) fn watch_store(&self, kind: &'static str, store: reflector::Store<CachedObject>) {
        self.metrics.watch_store(kind, store.clone());
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((kind, store));
    }

    /// The job ids that objects of `kind` other than `uid` follow or followed (current run and
    /// history, as the cache shows them, and adoptions this process made), each with who
    /// (`namespace/name`).
    pub fn claimed_jobs(
        &self,
        kind: &'static str,
        uid: &str,
    ) -> std::collections::HashMap<String, String> {
        #[derive(serde::Deserialize)]
        struct Claim {
            #[serde(rename = "jobId")]
            job_id: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Status {
            run: Option<Claim>,
            #[serde(default)]
            history: Vec<Claim>,
        }
        let mut claimed = std::collections::HashMap::new();
        let stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        for obj in stores
            .iter()
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, store)| store.state())
        {
            if obj.metadata.uid.as_deref() == Some(uid) {
                continue;
            }
            let Some(Ok(status)) = obj.status_as::<Status>() else {
                continue;
            };
            let who = format!(
                "{}/{}",
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                obj.metadata.name.as_deref().unwrap_or_default()
            );
            for id in status
                .run
                .into_iter()
                .chain(status.history)
                .filter_map(|c| c.job_id)
            {
                claimed.insert(id, who.clone());
            }
        }
        drop(stores);
        let adopted = self.adopted.lock().unwrap_or_else(|e| e.into_inner());
        for ((k, id), owner) in adopted.iter() {
            if *k == kind && owner != uid {
                claimed
                    .entry(id.clone())
                    .or_insert_with(|| format!("object {owner}"));
            }
        }
        claimed
    }

    /// Notes that `uid` adopts `job_id` after a search; `false` when another object of `kind`
    /// did first (in this process).
    pub fn claim_job(&self, kind: &'static str, job_id: &str, uid: &str) -> bool {
        let mut adopted = self.adopted.lock().unwrap_or_else(|e| e.into_inner());
        let owner = adopted
            .entry((kind, job_id.to_owned()))
            .or_insert_with(|| uid.to_owned());
        owner == uid
    }
}

/// In-memory per-object timing (never written to status: such stamps make the controller
/// trigger itself).
#[derive(Default)]
pub struct Timings {
    pub(crate) last_poll: HashMap<String, Instant>,
    /// When this process last wrote each object's status (progress writes wait for
    /// `PROGRESS_WRITE_INTERVAL` after it).
    pub(crate) last_write: HashMap<String, Instant>,
    /// Run key per object whose start call succeeded but whose `run.started` is not written
    /// yet: it rides on the next status write instead of a write of its own (a start is safe
    /// to repeat should the operator restart before that).
    pub(crate) started: HashMap<String, String>,
    /// Run key per object whose job id this process recorded. A cache that still shows that run
    /// without a job id is behind the operator's own write, not a create to resolve.
    pub(crate) recorded: HashMap<String, String>,
    /// A hash of the status this process's last status write left per object, and when; removed
    /// once the cache shows it or after `CACHE_CATCH_UP` (not forgotten at a run's end: the
    /// end write is one to wait for).
    pub(crate) written: HashMap<String, (u64, Instant)>,
}

impl Timings {
    /// Forgets an object.
    pub fn forget(&mut self, uid: &str) {
        self.last_poll.remove(uid);
        self.last_write.remove(uid);
        self.started.remove(uid);
        self.recorded.remove(uid);
    }
}
