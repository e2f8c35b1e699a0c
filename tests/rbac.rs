//! Least privilege, proven: the operator runs as a ServiceAccount bound to exactly the chart's
//! rules (read from the chart templates by `support::chart_rbac`, never restated here), with
//! leader election on, and still carries every job kind through its lifecycle: submit, poll,
//! cancel, a deletion through its finalizer, status writes and Events. The same identity cannot
//! read a Secret outside the namespaces it watches, nor list Secrets anywhere.

mod support;

use std::time::Duration;

use bkops::api::common::{FINALIZER, Phase};
use bkops::api::{AgentJob, ExecuteJob, ProcessJob, Taskflow};
use bkops::controller::{LeaderElection, OperatorConfig};
use bkops::sim::{Behaviour, System};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use support::env::{Env, EnvOptions};
use support::{TestNamespace, chart_rbac, control_plane};

/// The ServiceAccount name the chart gives the operator (`bkops.serviceAccountName` with the
/// release named `bkops`).
const SA: &str = "bkops";

/// Tests here that run a cluster-wide operator would see the other tests' objects: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn example(file: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example");
    let mut docs = support::env::documents(&text);
    assert_eq!(docs.len(), 1, "{file}: one object");
    docs[0]["metadata"]["name"] = name.into();
    serde_json::to_string(&docs[0]).expect("JSON is YAML")
}

fn sa_user(ns: &str) -> String {
    format!("system:serviceaccount:{ns}:{SA}")
}

/// A client acting as the operator's ServiceAccount in `ns`, with the groups a real token has.
fn sa_client(ns: &str, cp: &bkops::local::ControlPlane) -> kube::Client {
    cp.client_as(
        &sa_user(ns),
        &["system:serviceaccounts", "system:authenticated"],
    )
    .expect("impersonating client")
}

fn sa_subject(ns: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: SA.into(),
        namespace: Some(ns.into()),
        api_group: None,
    }
}

fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        ..ObjectMeta::default()
    }
}

/// A Role with `rules` and a RoleBinding of it to the ServiceAccount of `sa_ns`, in `ns`.
async fn bind_role(
    admin: &kube::Client,
    ns: &str,
    sa_ns: &str,
    name: &str,
    rules: Vec<PolicyRule>,
) {
    let role = Role {
        metadata: meta(name, Some(ns)),
        rules: Some(rules),
    };
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("creating the Role");
    let binding = RoleBinding {
        metadata: meta(name, Some(ns)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(vec![sa_subject(sa_ns)]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating the RoleBinding");
}

/// A ClusterRole with `rules` and a ClusterRoleBinding of it to the ServiceAccount of `sa_ns`.
async fn bind_cluster_role(admin: &kube::Client, sa_ns: &str, rules: Vec<PolicyRule>) {
    let name = format!("bkops-{sa_ns}");
    let role = ClusterRole {
        metadata: meta(&name, None),
        rules: Some(rules),
        aggregation_rule: None,
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("creating the ClusterRole");
    let binding = ClusterRoleBinding {
        metadata: meta(&name, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: name.clone(),
        },
        subjects: Some(vec![sa_subject(sa_ns)]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating the ClusterRoleBinding");
}

/// The ServiceAccount object itself (impersonation does not need it; the chart creates it).
async fn create_service_account(admin: &kube::Client, ns: &str) {
    let sa = ServiceAccount {
        metadata: meta(SA, Some(ns)),
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("creating the ServiceAccount");
}

/// Waits until the API server's RBAC cache lets `client` read BkConnections and Leases in `ns`
/// (bindings take effect asynchronously).
async fn wait_until_bound(client: &kube::Client, ns: &str) {
    let connections: Api<bkops::api::BkConnection> = Api::namespaced(client.clone(), ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a = connections.get_opt("blueking").await;
        let b = leases.get_opt("no-such-lease").await;
        match (&a, &b) {
            (Ok(Some(_)), Ok(None)) => return,
            _ if tokio::time::Instant::now() > deadline => {
                panic!("the bindings did not take effect in 20 s: {a:?} / {b:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: want 403 Forbidden, got {other:?}"),
    }
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

/// Every kind to Succeeded with one create each, a spec.cancel to Cancelled, a deletion with
/// deletionPolicy Cancel through the finalizer; Events and the Lease are written.
async fn lifecycle(env: &Env, identity: &str) {
    let admin = env.ns.client();
    let ns = env.ns.name();
    let jobs = [
        ("processjob-restart.yaml", "pj"),
        ("taskflow-template.yaml", "tf"),
        ("agentjob-restart-agents.yaml", "aj"),
        ("executejob-v3.yaml", "ej"),
    ];
    for (file, name) in jobs {
        env.apply(&example(file, name)).await;
    }
    env.wait_phase::<ProcessJob>("pj", Phase::Succeeded).await;
    // The Taskflow example has deletionPolicy Cancel: its finalizer went on first.
    let tf = env.wait_phase::<Taskflow>("tf", Phase::Succeeded).await;
    assert!(
        tf.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER),
        "the Taskflow carries {FINALIZER}"
    );
    env.wait_phase::<AgentJob>("aj", Phase::Succeeded).await;
    env.wait_phase::<ExecuteJob>("ej", Phase::Succeeded).await;
    for system in [System::Gsekit, System::Bkflow, System::Nodeman, System::Job] {
        assert_eq!(env.creates(system).await, 1, "{system:?}: one create");
    }

    // Long-running jobs: one cancelled through spec.cancel, one deleted with deletionPolicy Cancel.
    for system in [System::Nodeman, System::Bkflow] {
        env.control
            .set_behaviour(&Behaviour {
                system,
                failed_targets: None,
                wait_for_user: false,
                duration_ms: Some(120_000),
                targets: None,
                times: Some(1),
            })
            .await
            .expect("behaviour");
    }
    env.apply(&example("agentjob-restart-agents.yaml", "aj-cancel"))
        .await;
    env.apply(&example("taskflow-template.yaml", "tf-delete"))
        .await;
    env.wait_phase::<AgentJob>("aj-cancel", Phase::Running)
        .await;
    env.wait_phase::<Taskflow>("tf-delete", Phase::Running)
        .await;
    env.api::<AgentJob>()
        .patch(
            "aj-cancel",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"cancel": true}})),
        )
        .await
        .expect("setting spec.cancel");
    env.api::<Taskflow>()
        .delete("tf-delete", &DeleteParams::default())
        .await
        .expect("deleting tf-delete");
    env.wait_phase::<AgentJob>("aj-cancel", Phase::Cancelled)
        .await;
    let taskflows = env.api::<Taskflow>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while taskflows
        .get_opt("tf-delete")
        .await
        .expect("get tf-delete")
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tf-delete still there 30 s after its deletion: the finalizer was not removed"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(env.calls(System::Nodeman, "cancel").await, 1, "revoke");
    assert_eq!(env.calls(System::Bkflow, "cancel").await, 1, "revoke");

    // Events, written by the operator's identity.
    let events: Api<Event> = Api::namespaced(admin.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let want = [
        ("pj", "Succeeded"),
        ("tf", "Succeeded"),
        ("aj", "Succeeded"),
        ("ej", "Succeeded"),
        ("aj-cancel", "Cancelled"),
        ("tf-delete", "CancelledOnDelete"),
    ];
    loop {
        let list = events
            .list(&ListParams::default())
            .await
            .expect("listing Events")
            .items;
        let missing: Vec<_> = want
            .iter()
            .filter(|(name, reason)| {
                !list.iter().any(|e| {
                    e.reason.as_deref() == Some(*reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(*name)
                        && e.reporting_controller.as_deref() == Some("bkops")
                })
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Events missing: {missing:?}; have {:?}",
            list.iter()
                .map(|e| (
                    e.regarding.as_ref().and_then(|r| r.name.clone()),
                    e.reason.clone()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The Lease is held by this operator.
    let lease = Api::<Lease>::namespaced(admin, ns)
        .get("bkops")
        .await
        .expect("the Lease exists");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(identity)
    );
    assert!(!env.operator_finished(), "the operator is still running");
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
    create_service_account(&admin, &ns).await;
    bind_role(&admin, &ns, &ns, "bkops", chart_rbac::operator_rules()).await;
    bind_role(
        &admin,
        &ns,
        &ns,
        "bkops-leader-election",
        chart_rbac::leader_election_rules(),
    )
    .await;
    let sa = sa_client(&ns, cp);
    wait_until_bound(&sa, &ns).await;

    // What it must not do: read a Secret of a namespace it does not watch, or list Secrets.
    let other = TestNamespace::create("rbac-other").await;
    let secret = Secret {
        metadata: meta("other-credentials", None),
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
    lifecycle(&env, &identity).await;
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
    create_service_account(&admin, &ns).await;
    bind_cluster_role(&admin, &ns, chart_rbac::operator_rules()).await;
    bind_role(
        &admin,
        &ns,
        &ns,
        "bkops-leader-election",
        chart_rbac::leader_election_rules(),
    )
    .await;
    let sa = sa_client(&ns, cp);
    wait_until_bound(&sa, &ns).await;
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
    lifecycle(&env, &identity).await;
    env.stop().await;
}
