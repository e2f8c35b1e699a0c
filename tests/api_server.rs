//! The CRDs on a real Kubernetes 1.20 API server: they install and become Established, every
//! example applies server-side and reads back with its spec intact, and bad manifests are
//! refused by the server's schema (cross-field mistakes, which 1.20 cannot check, are reported
//! by `validate()`).

mod support;

use std::path::Path;

use kube::api::{Api, DynamicObject};
use support::TestNamespace;
use support::env::{api_resource, apply, documents, install_crds};

fn examples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("examples/ readable")
        .map(|e| e.expect("examples/ readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name()
                    .expect("examples/ readable")
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read_to_string(&p).expect("examples/ readable"),
            )
        })
        .collect()
}

#[tokio::test]
async fn crds_install_and_every_example_round_trips() {
    install_crds().await;
    let ns = TestNamespace::create("examples").await;
    let client = ns.client();
    let mut applied = 0;
    for (file, yaml) in examples() {
        apply(&client, ns.name(), &yaml)
            .await
            .unwrap_or_else(|e| panic!("{file}: the API server refused it: {e}"));
        for doc in documents(&yaml) {
            let kind = doc["kind"].as_str().unwrap();
            let name = doc["metadata"]["name"].as_str().unwrap();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns.name(), &api_resource(kind));
            let back = api.get(name).await.unwrap();
            let field = if kind == "Secret" {
                "stringData"
            } else {
                "spec"
            };
            if kind == "Secret" {
                assert!(
                    back.data.get("data").is_some(),
                    "{file}: secret data stored"
                );
                continue;
            }
            assert_eq!(
                back.data[field], doc[field],
                "{file}: {kind}/{name} {field} changed on the way through the API server"
            );
            applied += 1;
        }
    }
    assert!(applied >= 10, "applied {applied} objects");
}

/// Manifests the API server itself must refuse (types, enums, ranges, required fields).
const BAD: &[(&str, &str, &str)] = &[
    (
        "wrong type",
        "ProcessJob",
        r#"{"bkBizId": "two", "jobObject": "process", "jobAction": "restart", "scope": {"bkSetEnv": "3"}}"#,
    ),
    (
        "bad enum",
        "ProcessJob",
        r#"{"bkBizId": 2, "jobObject": "process", "jobAction": "explode", "scope": {"bkSetEnv": "3"}}"#,
    ),
    (
        "bad set env",
        "ProcessJob",
        r#"{"bkBizId": 2, "jobObject": "process", "jobAction": "restart", "scope": {"bkSetEnv": "9"}}"#,
    ),
    (
        "missing required",
        "ProcessJob",
        r#"{"jobObject": "process", "jobAction": "restart", "scope": {"bkSetEnv": "3"}}"#,
    ),
    (
        "biz id below 1",
        "ProcessJob",
        r#"{"bkBizId": 0, "jobObject": "process", "jobAction": "restart", "scope": {"bkSetEnv": "3"}}"#,
    ),
    ("missing creator", "Taskflow", r#"{"templateId": 4}"#),
    (
        "creator too long",
        "Taskflow",
        r#"{"templateId": 4, "creator": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
    ),
    (
        "unknown job type",
        "AgentJob",
        r#"{"jobType": "RESTART_EVERYTHING", "bkHostId": [1]}"#,
    ),
    (
        "biz id not a list",
        "AgentJob",
        r#"{"jobType": "RESTART_AGENT", "bkBizId": 2, "bkHostId": [1]}"#,
    ),
    (
        "script timeout",
        "ExecuteJob",
        r#"{"jobApi": "v2", "bkBizId": 1, "bkJobId": 1, "steps": [{"stepId": 1, "scriptTimeout": 30}]}"#,
    ),
    (
        "script type",
        "ExecuteJob",
        r#"{"jobApi": "v2", "bkBizId": 1, "bkJobId": 1, "steps": [{"stepId": 1, "scriptType": 9}]}"#,
    ),
    (
        "bad job api",
        "ExecuteJob",
        r#"{"jobApi": "v4", "jobPlanId": 1, "bkScopeId": "2"}"#,
    ),
    (
        "step without id",
        "ExecuteJob",
        r#"{"jobApi": "v2", "bkBizId": 1, "bkJobId": 1, "steps": [{"scriptType": 1}]}"#,
    ),
    (
        "bad deletion policy",
        "ExecuteJob",
        r#"{"jobPlanId": 1, "bkScopeId": "2", "deletionPolicy": "Delete"}"#,
    ),
    (
        "negative deadline",
        "ExecuteJob",
        r#"{"jobPlanId": 1, "bkScopeId": "2", "activeDeadlineSeconds": 0}"#,
    ),
    (
        "connection without secret",
        "BkConnection",
        r#"{"esbUrl": "https://paas.example.com"}"#,
    ),
    (
        "bad time zone",
        "BkConnection",
        r#"{"esbUrl": "https://x.example.com", "credentialsSecretRef": {"name": "s"}, "timeZoneOffset": "8"}"#,
    ),
];

#[tokio::test]
async fn the_api_server_refuses_bad_manifests() {
    install_crds().await;
    let ns = TestNamespace::create("bad-manifests").await;
    for (i, (what, kind, spec)) in BAD.iter().enumerate() {
        // A plain create: 1.20's server-side apply refuses wrong types even before the schema
        // check (HTTP 500 "failed to create typed patch object"), which would hide what is tested.
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "bkops.io/v1alpha1", "kind": kind,
            "metadata": {"name": format!("bad-{i}"), "namespace": ns.name()},
            "spec": serde_json::from_str::<serde_json::Value>(spec).unwrap(),
        }))
        .unwrap();
        let api: Api<DynamicObject> =
            Api::namespaced_with(ns.client(), ns.name(), &api_resource(kind));
        match api.create(&kube::api::PostParams::default(), &obj).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{what}: expected 422 Invalid, got {s:?}");
            }
            Err(e) => panic!("{what}: unexpected error {e}"),
            Ok(_) => panic!("{what}: the API server accepted a bad {kind}: {spec}"),
        }
    }
}

/// Cross-field mistakes pass 1.20's schema (it ignores CEL) and are caught by `validate()`.
#[tokio::test]
async fn cross_field_mistakes_pass_the_schema_and_fail_validate() {
    use bkops::run::JobKind;
    install_crds().await;
    let ns = TestNamespace::create("cross-field").await;
    let cases = [
        (
            "ProcessJob",
            r#"{"bkBizId": 2, "jobObject": "process", "jobAction": "restart"}"#,
            "scope or expressionScope",
        ),
        (
            "Taskflow",
            r#"{"templateId": 4, "creator": "admin", "pipelineTree": {"x": 1}}"#,
            "exactly one of templateId or pipelineTree",
        ),
        (
            "AgentJob",
            r#"{"jobType": "RESTART_AGENT", "bkHostId": [1], "excludeHosts": [2]}"#,
            "bkHostId and excludeHosts cannot both be set",
        ),
        (
            "AgentJob",
            r#"{"jobType": "MAIN_START_PLUGIN", "bkHostId": [1]}"#,
            "pluginParams",
        ),
        (
            "ExecuteJob",
            r#"{"jobPlanId": 1, "bkScopeId": "2", "steps": [{"stepId": 1}]}"#,
            "steps are supported only with jobApi: v2",
        ),
    ];
    for (i, (kind, spec, expected)) in cases.iter().enumerate() {
        let name = format!("cross-{i}");
        let yaml = format!(
            "apiVersion: bkops.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        );
        let stored = apply(&ns.client(), ns.name(), &yaml)
            .await
            .unwrap_or_else(|e| panic!("{kind} {spec}: {e}"));
        let value = serde_json::to_value(&stored[0]).unwrap();
        let problems = match *kind {
            "ProcessJob" => serde_json::from_value::<bkops::api::ProcessJob>(value)
                .unwrap()
                .validate_spec(),
            "Taskflow" => serde_json::from_value::<bkops::api::Taskflow>(value)
                .unwrap()
                .validate_spec(),
            "AgentJob" => serde_json::from_value::<bkops::api::AgentJob>(value)
                .unwrap()
                .validate_spec(),
            _ => serde_json::from_value::<bkops::api::ExecuteJob>(value)
                .unwrap()
                .validate_spec(),
        };
        assert!(
            problems.to_string().contains(expected),
            "{kind} {spec}: validate() said {problems:?}"
        );
    }
}
