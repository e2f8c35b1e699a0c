//! Least privilege, proven: the operator runs as the chart's ServiceAccount, bound by the chart's
//! own Roles, ClusterRole and bindings as Helm renders them (`support::helm`) and applied as
//! rendered, with leader election on, and still carries every job kind through its lifecycle
//! (`support::lifecycle`): submit, poll, cancel, a deletion through its finalizer, status writes
//! and Events. The same identity cannot read a Secret outside the namespaces it watches, nor list
//! Secrets anywhere.

mod support;

use bkops::api::ProcessJob;
use bkops::controller::{LeaderElection, OperatorConfig};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use serde_json::{Value, json};
use support::env::{Env, EnvOptions};
use support::lifecycle::{LeaseRef, forbidden, lifecycle, wait_until_bound};
use support::{TestNamespace, control_plane, helm};

/// The release name; the chart names the ServiceAccount, Roles and bindings after it.
const RELEASE: &str = "bkops";

/// The kinds of the rendered chart that grant the operator its rights.
const IDENTITY_KINDS: [&str; 5] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// Tests here that run a cluster-wide operator would see the other tests' objects: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Renders the chart for a release in `ns` with `values` and applies its ServiceAccount and
/// RBAC objects as rendered (the Deployment, which would start nothing here, is left out).
/// Returns the rendered chart and the ServiceAccount's name.
async fn install_identity(
    admin: &kube::Client,
    ns: &str,
    values: Value,
) -> (helm::Rendered, String) {
    let rendered = helm::render(&values, RELEASE, ns).unwrap_or_else(|e| panic!("render: {e}"));
    let objects = rendered
        .objects
        .iter()
        .filter(|o| IDENTITY_KINDS.iter().any(|k| o["kind"] == *k));
    helm::apply(admin, objects)
        .await
        .unwrap_or_else(|e| panic!("applying the rendered RBAC: {e:?}"));
    let sa: ServiceAccount = rendered.one("ServiceAccount");
    let name = sa.metadata.name.expect("ServiceAccount name");
    (rendered, name)
}

/// A client acting as the ServiceAccount `name` of `ns`, with the groups a real token has.
fn sa_client(ns: &str, name: &str, cp: &bkops::local::ControlPlane) -> kube::Client {
    cp.client_as(
        &format!("system:serviceaccount:{ns}:{name}"),
        &["system:serviceaccounts", "system:authenticated"],
    )
    .expect("impersonating client")
}

fn operator_config(env: &Env, namespaces: Vec<String>) -> OperatorConfig {
    OperatorConfig {
        namespaces,
        leader_election: Some(LeaderElection {
            namespace: env.ns.name().to_owned(),
            lease_name: "bkops".to_owned(),
            duration_secs: 15,
        }),
        ..env.operator_config()
    }
}

#[tokio::test]
async fn namespaced_chart_rules_suffice_and_confine_the_operator() {
    let _serial = SERIAL.lock().await;
    let cp = control_plane().await;
    let mut env = Env::with(
        "rbac-ns",
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;
    let admin = env.ns.client();
    let ns = env.ns.name().to_owned();

    // watchNamespaces: [ns]; the release (and the Lease) in the same namespace.
    let (rendered, sa_name) = install_identity(&admin, &ns, json!({"watchNamespaces": [ns]})).await;
    assert!(
        rendered.of_kind("ClusterRole").is_empty()
            && rendered.of_kind("ClusterRoleBinding").is_empty(),
        "watchNamespaces set: nothing cluster-wide"
    );
    let sa = sa_client(&ns, &sa_name, cp);
    wait_until_bound(&sa, &ns, &ns).await;

    // What it must not do: read a Secret of a namespace it does not watch, or list Secrets.
    let other = TestNamespace::create("rbac-other").await;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("other-credentials".into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("bk_app_secret".to_owned(), "not-yours".to_owned())].into()),
        ..Secret::default()
    };
    other
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    forbidden(
        "get a Secret in another namespace",
        Api::<Secret>::namespaced(sa.clone(), other.name())
            .get("other-credentials")
            .await,
    );
    forbidden(
        "list Secrets in the watched namespace",
        Api::<Secret>::namespaced(sa.clone(), &ns)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "list Secrets cluster-wide",
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "watch job objects in another namespace",
        Api::<ProcessJob>::namespaced(sa.clone(), other.name())
            .list(&ListParams::default())
            .await,
    );
    // ... while a Secret of its own namespace, by name, is readable (the 403s are not an
    // impersonation artefact).
    Api::<Secret>::namespaced(sa.clone(), &ns)
        .get("blueking-credentials")
        .await
        .expect("the connection's Secret is readable by name");

    let config = operator_config(&env, vec![ns.clone()]);
    let identity = config.identity.clone();
    env.start_operator_with(sa, config).await;
    let lease = LeaseRef {
        namespace: &ns,
        name: "bkops",
        holder: &identity,
    };
    lifecycle(&env, lease).await;
    env.stop().await;
}

#[tokio::test]
async fn cluster_wide_chart_rules_suffice() {
    let _serial = SERIAL.lock().await;
    let cp = control_plane().await;
    let mut env = Env::with(
        "rbac-cluster",
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;
    let admin = env.ns.client();
    let ns = env.ns.name().to_owned();

    // watchNamespaces empty: a ClusterRole; leader election stays a Role in the release namespace.
    let (rendered, sa_name) = install_identity(&admin, &ns, json!({})).await;
    rendered.get("ClusterRole", RELEASE);
    rendered.get("Role", &format!("{RELEASE}-leader-election"));
    let sa = sa_client(&ns, &sa_name, cp);
    wait_until_bound(&sa, &ns, &ns).await;
    forbidden(
        "list Secrets cluster-wide",
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "Leases outside the release namespace",
        Api::<Lease>::namespaced(sa.clone(), "default")
            .get("bkops")
            .await,
    );

    let config = operator_config(&env, Vec::new());
    let identity = config.identity.clone();
    env.start_operator_with(sa, config).await;
    let lease = LeaseRef {
        namespace: &ns,
        name: "bkops",
        holder: &identity,
    };
    lifecycle(&env, lease).await;
    env.stop().await;
}
