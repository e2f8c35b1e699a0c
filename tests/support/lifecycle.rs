//! The operator carries every job kind through its lifecycle, run by whatever identity and
//! configuration a test gives it (a ServiceAccount bound to the chart's rendered RBAC, the
//! rendered Deployment's arguments): submit, poll, cancel, a deletion through its finalizer,
//! status writes, Events and the leader-election Lease.

use std::time::Duration;

use bkops::api::common::{FINALIZER, Phase};
use bkops::api::{AgentJob, ExecuteJob, ProcessJob, Taskflow};
use bkops::sim::{Behaviour, System};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use super::env::Env;

/// The Lease the operator under test holds.
pub struct LeaseRef<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The holder identity the operator writes (`OperatorConfig::identity`).
    pub holder: &'a str,
}

/// An example manifest from `examples/` (one object) renamed to `name`, as YAML.
pub fn example(file: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example");
    let mut docs = super::env::documents(&text);
    assert_eq!(docs.len(), 1, "{file}: one object");
    docs[0]["metadata"]["name"] = name.into();
    serde_json::to_string(&docs[0]).expect("JSON is YAML")
}

/// Waits until the API server's RBAC cache lets `client` read the BkConnection `blueking` in `ns`
/// and Leases in `lease_ns` (bindings take effect asynchronously).
pub async fn wait_until_bound(client: &kube::Client, ns: &str, lease_ns: &str) {
    let connections: Api<bkops::api::BkConnection> = Api::namespaced(client.clone(), ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), lease_ns);
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

/// Asserts a call was refused with 403 Forbidden.
pub fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: want 403 Forbidden, got {other:?}"),
    }
}

/// Every kind to Succeeded with one create each, a spec.cancel to Cancelled, a deletion with
/// deletionPolicy Cancel through the finalizer; Events and the Lease are written. The operator
/// must be running (in-process, see [`Env::start_operator_with`]) with `env`'s namespace watched.
pub async fn lifecycle(env: &Env, lease: LeaseRef<'_>) {
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
    let held = Api::<Lease>::namespaced(admin, lease.namespace)
        .get(lease.name)
        .await
        .unwrap_or_else(|e| panic!("the Lease {}/{}: {e}", lease.namespace, lease.name));
    assert_eq!(
        held.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(lease.holder)
    );
    assert!(!env.operator_finished(), "the operator is still running");
}
