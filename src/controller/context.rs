//! What every reconcile shares: the operator's settings, the Kubernetes client, metrics, and the
//! run lifecycle over the real seams (the API server, Events, the kinds' caches, the connections'
//! BlueKing clients with the BKFlow batch poller).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector;
use rand::Rng;

use super::batch::{self, BkflowBatcher};
use super::cached::CachedObject;
use super::connection::Connections;
use super::events::Events;
use super::metrics::Metrics;
use super::store::KubeStore;
use super::systems::BkSystems;
use crate::run::act::{Lifecycle, RunConfig, SystemClock};

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
    /// How long finished run records are kept after their run ended; `None`: forever.
    pub run_retention: Option<Duration>,
}

impl OperatorConfig {
    /// What the run lifecycle needs of these settings.
    pub fn run_config(&self) -> RunConfig {
        RunConfig {
            submit_stall: self.submit_stall,
            resolve_grace: self.resolve_grace,
            poll_initial: self.poll_initial,
            poll_max: self.poll_max,
        }
    }
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
            run_retention: Some(Duration::from_secs(90 * 86_400)),
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
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The run lifecycle over the API server and the connections' BlueKing clients.
    pub life: Lifecycle<KubeStore, BkSystems>,
    /// Who depends on whom (`spec.dependsOn`), to wake dependents when a job changes.
    pub deps: super::deps::DependencyIndex,
}

impl Context {
    /// A context for `client` and `config`. Starts the Event publishers, so it must be called on a
    /// Tokio runtime.
    pub fn new(client: Client, config: OperatorConfig, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "bkops".into(),
            instance: Some(config.identity.clone()),
        };
        let connections = Connections::new(client.clone(), config.default_connection.clone())
            .with_metrics(metrics.clone());
        let events = Events::start(client.clone(), reporter, metrics.clone());
        let life = Lifecycle::new(
            KubeStore::new(client.clone(), events, config.namespaces.clone()),
            BkSystems::new(connections, BkflowBatcher::new(batch::BKFLOW_BATCH_WINDOW)),
            config.run_config(),
            metrics.clone(),
            Arc::new(SystemClock::default()),
        );
        Context {
            client,
            config,
            metrics,
            life,
            deps: super::deps::DependencyIndex::default(),
        }
    }

    /// The Event publisher.
    pub fn events(&self) -> &Events {
        &self.life.store.events
    }

    pub(super) fn watch_store(&self, kind: &'static str, store: reflector::Store<CachedObject>) {
        self.metrics.watch_store(kind, store.clone());
        self.life.store.watch_cache(kind, store);
    }
}
