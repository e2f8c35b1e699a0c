//! A connection's changes count from the next create on, and a BlueKing that does not answer is
//! reported, against the real API server and the simulator.

mod support;

use std::time::Duration;

use bkops::api::ProcessJob;
use bkops::api::common::{JobStatus, Phase};
use bkops::sim::System;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::env::{Env, api_resource};
use support::status;

fn process_job(name: &str, connection: &str) -> String {
    format!(
        "apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {{name: {name}}}\nspec: {{bkBizId: 2, jobObject: process, jobAction: restart, scope: {{bkSetEnv: \"3\"}}, connectionRef: {{name: {connection}}}}}\n"
    )
}

fn connections(env: &Env) -> Api<kube::api::DynamicObject> {
    Api::namespaced_with(
        env.ns.client(),
        env.ns.name(),
        &api_resource("BkConnection"),
    )
}

fn reason_of(s: &JobStatus, type_: &str) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn a_deleted_connection_or_secret_stops_the_next_create_at_once() {
    let env = Env::start("conn-delete").await;
    // The connection is in use (and cached) by a job that ran.
    env.apply(&process_job("before", "blueking")).await;
    env.wait_phase::<ProcessJob>("before", Phase::Succeeded)
        .await;
    assert_eq!(env.creates(System::Gsekit).await, 1);

    // Deleted, then a job applied at once: nothing is submitted.
    connections(&env)
        .delete("blueking", &DeleteParams::default())
        .await
        .expect("deleted");
    env.apply(&process_job("after-delete", "blueking")).await;
    let o = env
        .wait_phase::<ProcessJob>("after-delete", Phase::Failed)
        .await;
    assert_eq!(
        reason_of(&status(&o), "Stalled"),
        Some(("True".into(), "ConnectionNotFound".into()))
    );
    assert_eq!(
        env.creates(System::Gsekit).await,
        1,
        "no create after the delete"
    );

    // The same for the ESB connection's Secret.
    env.apply(&process_job("esb-before", "blueking-esb")).await;
    env.wait_phase::<ProcessJob>("esb-before", Phase::Succeeded)
        .await;
    assert_eq!(env.creates(System::Gsekit).await, 2);
    let secrets: Api<Secret> = Api::namespaced(env.ns.client(), env.ns.name());
    secrets
        .delete("blueking-credentials", &DeleteParams::default())
        .await
        .expect("deleted");
    env.apply(&process_job("after-secret", "blueking-esb"))
        .await;
    let o = env
        .wait_phase::<ProcessJob>("after-secret", Phase::Failed)
        .await;
    assert_eq!(
        reason_of(&status(&o), "Stalled"),
        Some(("True".into(), "SecretNotFound".into()))
    );
    assert_eq!(
        env.creates(System::Gsekit).await,
        2,
        "no create after the Secret went"
    );
    env.stop().await;
}

#[tokio::test]
async fn an_unreachable_blueking_stalls_the_run_and_it_still_submits_once_reachable() {
    let env = Env::start("conn-unreachable").await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    connections(&env)
        .patch(
            "blueking",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gateway": {
                "urlTemplate": format!("http://127.0.0.1:{port}/api/{{api_name}}/")
            }}})),
        )
        .await
        .expect("patched");
    env.apply(&process_job("nowhere", "blueking")).await;
    // Deferred at first, then Stalled with a reason about the connection (the test operator
    // stalls after 3 s).
    let o = env
        .wait_for::<ProcessJob>("nowhere", Duration::from_secs(60), |o| {
            reason_of(&status(o), "Stalled").is_some()
        })
        .await;
    let s = status(&o);
    assert_eq!(s.phase, Some(Phase::Pending));
    assert_eq!(
        reason_of(&s, "Stalled"),
        Some(("True".into(), "ConnectionUnreachable".into()))
    );
    let message = s.message.unwrap_or_default();
    assert!(
        message.contains(&format!("BkConnection {}/blueking", env.ns.name()))
            && message.contains("still trying"),
        "{message}"
    );
    assert!(s.run.and_then(|r| r.deferred_since).is_some());

    // Reachable again: the next try submits, once.
    connections(&env)
        .patch(
            "blueking",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gateway": {
                "urlTemplate": format!("{}api/{{api_name}}/", env.sim.base_url())
            }}})),
        )
        .await
        .expect("patched back");
    let o = env
        .wait_phase::<ProcessJob>("nowhere", Phase::Succeeded)
        .await;
    assert_eq!(reason_of(&status(&o), "Stalled"), None);
    assert_eq!(env.creates(System::Gsekit).await, 1);
    env.stop().await;
}

#[tokio::test]
async fn a_running_job_that_cannot_be_addressed_any_more_is_stalled_not_forgotten() {
    let env = Env::with(
        "conn-unaddressable",
        support::env::EnvOptions {
            job_ms: 180_000,
            ..support::env::EnvOptions::default()
        },
    )
    .await;
    // No spaceId of its own: the task is addressed through the connection's bkflowSpaceId.
    env.apply("apiVersion: bkops.io/v1alpha1\nkind: Taskflow\nmetadata: {name: long}\nspec: {templateId: 4, creator: admin}\n")
        .await;
    env.wait_phase::<bkops::api::Taskflow>("long", Phase::Running)
        .await;
    connections(&env)
        .patch(
            "blueking",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"bkflowSpaceId": null}})),
        )
        .await
        .expect("patched");
    // Once the operator's copy of the connection is renewed (30 s at most), the job is reported.
    let o = env
        .wait_for::<bkops::api::Taskflow>("long", Duration::from_secs(90), |o| {
            reason_of(&status(o), "Stalled").is_some()
        })
        .await;
    let s = status(&o);
    assert_eq!(s.phase, Some(Phase::Running), "the job still runs upstream");
    assert_eq!(
        reason_of(&s, "Stalled"),
        Some(("True".into(), "JobUnaddressable".into()))
    );
    let message = s.message.unwrap_or_default();
    let job = s.run.and_then(|r| r.job_id).expect("a job id");
    assert!(
        message.contains(&format!("cannot address job {job}")) && message.contains("space"),
        "{message}"
    );
    assert_eq!(env.creates(System::Bkflow).await, 1);
    env.stop().await;
}
