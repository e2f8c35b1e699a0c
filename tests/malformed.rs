//! A malformed object (here: stored under an older, looser schema) is reported on the object and
//! does not stop the watch of its kind: the good object next to it still runs. A test binary of
//! its own, because it swaps the ProcessJob CRD.

mod support;

use std::time::Duration;

use bkops::api::ProcessJob;
use bkops::api::common::Phase;
use bkops::crdgen::CrdKind;
use bkops::run::JobKind;
use bkops::sim::System;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::api::{Api, PostParams};
use support::env::{Env, EnvOptions};

#[tokio::test]
async fn a_malformed_object_is_reported_and_does_not_stop_the_watch() {
    let client = support::client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // An older schema that took any spec.
    let mut loose = CrdKind::ProcessJob.crd();
    let v = &mut loose.spec.versions[0];
    let schema = v
        .schema
        .as_mut()
        .unwrap()
        .open_api_v3_schema
        .as_mut()
        .unwrap();
    schema.properties.as_mut().unwrap().insert(
        "spec".into(),
        JSONSchemaProps {
            type_: Some("object".into()),
            x_kubernetes_preserve_unknown_fields: Some(true),
            ..Default::default()
        },
    );
    crds.create(&PostParams::default(), &loose).await.unwrap();
    // `Env::with` installs the CRDs: this one exists, so it only waits until it is served.

    let mut env = Env::with(
        "malformed",
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;
    env.apply("apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {name: broken}\nspec: {bkBizId: two, jobObject: process}\n").await;
    // The current schema comes back; the stored object stays as it was.
    let mut current = crds.get("processjobs.bkops.io").await.unwrap();
    current.spec = CrdKind::ProcessJob.crd().spec;
    crds.replace("processjobs.bkops.io", &PostParams::default(), &current)
        .await
        .unwrap();
    // Wait until the server enforces the restored schema: a dry run of a bad spec is refused.
    let probe: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob",
        "metadata": {"name": "probe", "namespace": env.ns.name()},
        "spec": {"bkBizId": "two"},
    }))
    .unwrap();
    let dynamic_api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.ns.client(),
        env.ns.name(),
        &kube::api::ApiResource::erase::<ProcessJob>(&()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dynamic_api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &probe,
        )
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restored schema never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.apply("apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {name: fine}\nspec: {bkBizId: 2, jobObject: process, jobAction: restart, scope: {bkSetEnv: \"3\"}}\n")
        .await;

    env.start_operator().await;
    env.wait_phase::<ProcessJob>("fine", Phase::Succeeded).await;
    let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.ns.client(),
        env.ns.name(),
        &kube::api::ApiResource::erase::<ProcessJob>(&()),
    );
    // The Event always says so (1.20 refuses the status write: it validates the whole object).
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.ns.client(), env.ns.name());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = events.list(&Default::default()).await.unwrap();
        let found = list.items.iter().find(|e| {
            e.reason.as_deref() == Some("MalformedObject")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
        });
        if let Some(e) = found {
            let note = e.note.clone().unwrap_or_default();
            assert!(
                note.contains(
                    "malformed object, cannot be read as ProcessJob: spec.bkBizId: invalid type"
                ),
                "{note}"
            );
            // Says what is wrong in the user's words, not the operator's internal types.
            assert!(!note.contains("DynamicObject"), "{note}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no MalformedObject Event for the broken object"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let broken = dynamic.get("broken").await.unwrap();
    assert!(
        broken
            .data
            .get("status")
            .is_none_or(|s| s.get("run").is_none()),
        "no run started for it"
    );
    assert_eq!(
        env.creates(System::Gsekit).await,
        1,
        "only the good object was submitted"
    );
    let _ = env
        .api::<ProcessJob>()
        .get("fine")
        .await
        .unwrap()
        .job_status();
    env.stop().await;
}
