//! An operator test environment: a namespace, the BlueKing simulator on a free port, connections
//! to it, and the operator running in-process (or as a real `bkops run` process).

use std::time::Duration;

use bkops::api::Phase;
use bkops::controller::OperatorConfig;
use bkops::run::JobKind;
use bkops::sim::{SimConfig, SimControl, SimHandle, System};
use kube::api::{Api, ApiResource, DynamicObject};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::TestNamespace;

static CRDS: OnceCell<()> = OnceCell::const_new();

/// Installs the generated CRDs once per test binary and waits until they are served.
pub async fn install_crds() {
    CRDS.get_or_init(|| async {
        bkops::local::install_crds(&super::client().await)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    })
    .await;
}

/// Sets the call timeout of the connections [`connections_yaml`] makes in `ns` to 2 s.
pub async fn short_create_timeout(client: &kube::Client, ns: &str) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &api_resource("BkConnection"));
    for name in ["blueking", "blueking-esb"] {
        api.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"timeoutSeconds": 2}})),
        )
        .await
        .expect("connection patched");
    }
}

/// The resource of a manifest's kind.
pub fn api_resource(kind: &str) -> ApiResource {
    bkops::demo::api_resource(kind).unwrap_or_else(|| panic!("no API resource for kind {kind}"))
}

/// Splits a multi-document YAML string into objects.
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    bkops::demo::documents(yaml).expect("valid YAML")
}

/// Server-side applies every object of `yaml` in namespace `ns`.
pub async fn apply(
    client: &kube::Client,
    ns: &str,
    yaml: &str,
) -> Result<Vec<DynamicObject>, bkops::demo::ManifestError> {
    bkops::demo::apply_yaml(client, ns, yaml).await
}

/// How to set up an [`Env`].
#[derive(Clone, Debug)]
pub struct EnvOptions {
    /// How long simulated jobs run.
    pub job_ms: u64,
    /// Start the operator in-process right away.
    pub operator: bool,
    /// The operator's resolve grace.
    pub resolve_grace: Duration,
}

impl Default for EnvOptions {
    fn default() -> Self {
        EnvOptions {
            job_ms: 1200,
            operator: true,
            resolve_grace: Duration::from_secs(3),
        }
    }
}

/// One operator test's world.
pub struct Env {
    /// The namespace.
    pub ns: TestNamespace,
    /// The simulator.
    pub sim: SimHandle,
    /// Its control API.
    pub control: SimControl,
    options: EnvOptions,
    operator: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

pub use bkops::demo::connections_yaml;

impl Env {
    /// Namespace, simulator, connections and operator, with defaults.
    pub async fn start(prefix: &str) -> Env {
        Env::with(prefix, EnvOptions::default()).await
    }

    /// With options.
    pub async fn with(prefix: &str, options: EnvOptions) -> Env {
        let _ = rustls::crypto::ring::default_provider().install_default();
        install_crds().await;
        let ns = TestNamespace::create(prefix).await;
        let config = SimConfig {
            job_duration: Duration::from_millis(options.job_ms),
            ..SimConfig::default()
        };
        let sim = bkops::sim::start(config, "127.0.0.1:0".parse().expect("test setup"))
            .await
            .expect("simulator starts");
        let control = sim.control();
        apply(
            &ns.client(),
            ns.name(),
            &connections_yaml(sim.base_url().as_str()),
        )
        .await
        .expect("connections apply");
        let mut env = Env {
            ns,
            sim,
            control,
            options: options.clone(),
            operator: None,
        };
        if options.operator {
            env.start_operator().await;
        }
        env
    }

    /// The operator's configuration for this namespace (fast polls, short grace).
    pub fn operator_config(&self) -> OperatorConfig {
        OperatorConfig {
            namespaces: vec![self.ns.name().to_owned()],
            default_connection: Some("blueking".to_owned()),
            concurrency: 8,
            submit_stall: Duration::from_secs(3),
            resolve_grace: self.options.resolve_grace,
            poll_initial: Duration::from_millis(300),
            poll_max: Duration::from_secs(1),
            leader_election: None,
            metrics_addr: None,
            identity: bkops::controller::default_identity(),
            run_retention: None,
        }
    }

    /// Sets the namespace's connections' call timeout to 2 s. The search for an unclear create
    /// concludes only after the create's own timeout (plus a margin), 35 s with the default.
    pub async fn short_create_timeout(&self) {
        short_create_timeout(&self.ns.client(), self.ns.name()).await;
    }

    /// Starts the in-process operator with the admin client and [`Env::operator_config`].
    pub async fn start_operator(&mut self) {
        self.start_operator_with(self.ns.client(), self.operator_config())
            .await;
    }

    /// Starts the in-process operator with a client and configuration of the test's choosing,
    /// e.g. a client acting as a ServiceAccount bound to the chart's rules (RBAC tests), or a
    /// configuration with leader election on. Panics if an operator already runs.
    pub async fn start_operator_with(&mut self, client: kube::Client, config: OperatorConfig) {
        assert!(
            self.operator.is_none(),
            "the operator already runs in this Env; stop it first"
        );
        let token = CancellationToken::new();
        let task = tokio::spawn(bkops::controller::run(client, config, token.clone()));
        self.operator = Some((token, task));
    }

    /// Whether the in-process operator task ended (an error, or lost leadership) while it should
    /// be running.
    pub fn operator_finished(&self) -> bool {
        self.operator
            .as_ref()
            .is_some_and(|(_, task)| task.is_finished())
    }

    /// Stops the in-process operator and waits for it.
    pub async fn stop_operator(&mut self) {
        if let Some((token, task)) = self.operator.take() {
            token.cancel();
            let r = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("operator stops")
                .expect("operator task");
            r.expect("operator ran without error");
        }
    }

    /// Applies manifests in the namespace.
    pub async fn apply(&self, yaml: &str) -> Vec<DynamicObject> {
        apply(&self.ns.client(), self.ns.name(), yaml)
            .await
            .expect("apply")
    }

    /// A typed API in the namespace.
    pub fn api<K: JobKind>(&self) -> Api<K> {
        Api::namespaced(self.ns.client(), self.ns.name())
    }

    /// Waits until `pred` holds for object `name` (or panics with its status after `timeout`).
    pub async fn wait_for<K: JobKind>(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&K) -> bool,
    ) -> K {
        let api = self.api::<K>();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let obj = api.get(name).await.expect("get");
            if pred(&obj) {
                return obj;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{name}: condition not met in {timeout:?}; status: {}",
                    serde_json::to_string_pretty(&obj.job_status()).expect("test setup")
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits for a phase.
    pub async fn wait_phase<K: JobKind>(&self, name: &str, phase: Phase) -> K {
        self.wait_for::<K>(name, Duration::from_secs(30), |o| {
            o.job_status().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    /// Create calls the simulator received for `system`.
    pub async fn creates(&self, system: System) -> u64 {
        self.control
            .calls()
            .await
            .expect("calls")
            .get(system, "create")
    }

    /// Calls of one endpoint.
    pub async fn calls(&self, system: System, endpoint: &str) -> u64 {
        self.control
            .calls()
            .await
            .expect("calls")
            .get(system, endpoint)
    }

    /// Stops the operator and the simulator.
    pub async fn stop(mut self) {
        self.stop_operator().await;
        self.sim.shutdown().await;
    }
}
