//! Objects that once stopped a whole kind: a deadline past the end of time, a pipeline tree
//! nested deeper than the JSON decoder goes. Each is stored in the real API server (the deadline
//! ones under an older, looser schema, since today's CRDs refuse them), and a valid object of the
//! same kind, applied after it, must still reach `Succeeded`. A test binary of its own, because
//! it swaps CRDs.

mod support;

use std::time::Duration;

use bkops::api::common::Phase;
use bkops::api::{ExecuteJob, ProcessJob, Taskflow};
use bkops::controller::cached::CachedObject;
use bkops::crdgen::CrdKind;
use bkops::sim::System;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};
use support::env::{Env, EnvOptions};

/// The CRD of `kind` with a spec that takes anything.
fn loose(kind: CrdKind) -> CustomResourceDefinition {
    let mut crd = kind.crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .expect("a schema");
    schema.properties.as_mut().expect("properties").insert(
        "spec".into(),
        JSONSchemaProps {
            type_: Some("object".into()),
            x_kubernetes_preserve_unknown_fields: Some(true),
            ..Default::default()
        },
    );
    crd
}

async fn put_crd(crds: &Api<CustomResourceDefinition>, crd: CustomResourceDefinition) {
    let name = crd.metadata.name.clone().expect("named");
    match crds.get_opt(&name).await.expect("get CRD") {
        Some(current) => {
            let mut next = crd;
            next.metadata.resource_version = current.metadata.resource_version;
            crds.replace(&name, &PostParams::default(), &next)
                .await
                .expect("replace CRD");
        }
        None => {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("create CRD");
        }
    }
    let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("CRD established in time")
        .expect("CRD watch");
}

/// Creates `obj` (JSON) through an API whose objects decode however deep they nest.
async fn create(env: &Env, obj: Value) {
    let kind = obj["kind"].as_str().expect("a kind");
    let api: Api<CachedObject> = Api::namespaced_with(
        env.ns.client(),
        env.ns.name(),
        &support::env::api_resource(kind),
    );
    let obj: CachedObject = serde_json::from_str(&obj.to_string()).expect("an object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("the API server stores it");
}

/// A JSON value nested `depth` levels deep.
fn nested(depth: usize) -> Value {
    let mut v = json!({"leaf": 1});
    for _ in 0..depth {
        v = json!({ "activities": v });
    }
    v
}

/// Until an Event of `reason` about `name` exists; returns its note.
async fn event_note(env: &Env, name: &str, reason: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let notes = support::events_about(&env.ns.client(), env.ns.name(), name, reason).await;
        if let Some(note) = notes.into_iter().next() {
            return note;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {reason} Event for {name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn poison_objects_stop_neither_their_kind_nor_the_operator() {
    let client = support::client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut env = Env::with(
        "poison",
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;

    // Today's schema refuses the deadlines outright.
    let refused = env
        .ns
        .api::<ProcessJob>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob",
                "metadata": {"name": "refused"},
                "spec": {"bkBizId": 2, "jobObject": "process", "jobAction": "restart",
                         "scope": {"bkSetEnv": "3"}, "activeDeadlineSeconds": i64::MAX},
            }))
            .expect("a ProcessJob"),
        )
        .await
        .expect_err("a deadline past the CRD's maximum is refused");
    assert!(
        refused.to_string().contains("activeDeadlineSeconds"),
        "{refused}"
    );

    // Objects stored under an older, looser schema still reach the operator.
    for kind in [CrdKind::ProcessJob, CrdKind::ExecuteJob] {
        put_crd(&crds, loose(kind)).await;
    }
    create(
        &env,
        json!({
            "apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob",
            "metadata": {"name": "forever"},
            "spec": {"bkBizId": 2, "jobObject": "process", "jobAction": "restart",
                     "scope": {"bkSetEnv": "3"}, "activeDeadlineSeconds": i64::MAX},
        }),
    )
    .await;
    create(
        &env,
        json!({
            "apiVersion": "bkops.io/v1alpha1", "kind": "ExecuteJob",
            "metadata": {"name": "aeons"},
            "spec": {"bkScopeId": "2", "jobPlanId": 1000,
                     "activeDeadlineSeconds": 10_000_000_000_000_i64},
        }),
    )
    .await;
    // The looser schemas stay, as they do in a cluster whose CRDs were not upgraded with the
    // operator (Helm never upgrades CRDs).
    // Free-form: today's schema takes a tree of any depth.
    let mut tree = nested(300);
    tree["start_event"] = json!({"id": "s"});
    create(
        &env,
        json!({
            "apiVersion": "bkops.io/v1alpha1", "kind": "Taskflow",
            "metadata": {"name": "deep"},
            "spec": {"creator": "admin", "pipelineTree": tree},
        }),
    )
    .await;

    env.start_operator().await;
    // Objects of each kind applied after the poison ones are processed.
    env.apply("apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {name: fine}\nspec: {bkBizId: 2, jobObject: process, jobAction: restart, scope: {bkSetEnv: \"3\"}}\n").await;
    env.apply("apiVersion: bkops.io/v1alpha1\nkind: ExecuteJob\nmetadata: {name: fine}\nspec: {bkScopeId: \"2\", jobPlanId: 1000}\n").await;
    env.apply("apiVersion: bkops.io/v1alpha1\nkind: Taskflow\nmetadata: {name: fine}\nspec: {templateId: 4, creator: admin}\n").await;
    env.wait_phase::<ProcessJob>("fine", Phase::Succeeded).await;
    env.wait_phase::<ExecuteJob>("fine", Phase::Succeeded).await;
    env.wait_phase::<Taskflow>("fine", Phase::Succeeded).await;

    // The deadlines are refused as invalid, before any call; the deep tree is reported.
    for name in ["forever"] {
        let obj = env.wait_phase::<ProcessJob>(name, Phase::Failed).await;
        let message = obj.status.and_then(|s| s.message).unwrap_or_default();
        assert!(
            message.contains("spec.activeDeadlineSeconds: must be between 1 and 31622400"),
            "{message}"
        );
    }
    let obj = env.wait_phase::<ExecuteJob>("aeons", Phase::Failed).await;
    let message = obj.status.and_then(|s| s.message).unwrap_or_default();
    assert!(message.contains("spec.activeDeadlineSeconds"), "{message}");
    let note = event_note(&env, "deep", "MalformedObject").await;
    assert!(
        note.contains("spec.pipelineTree") && note.contains("nests more than 128 levels deep"),
        "{note}"
    );
    assert_eq!(env.creates(System::Gsekit).await, 1, "only `fine` ran");
    assert_eq!(env.creates(System::Job).await, 1, "only `fine` ran");
    assert_eq!(env.creates(System::Bkflow).await, 1, "only `fine` ran");
    assert!(
        !env.operator_finished(),
        "the operator keeps running through all of it"
    );
    env.stop().await;
    for kind in [CrdKind::ProcessJob, CrdKind::ExecuteJob] {
        put_crd(&crds, kind.crd()).await;
    }
}
