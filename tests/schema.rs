//! `bkops schema --out-dir DIR`: the JSON Schemas kubeconform reads, checked with a JSON Schema
//! validator: every object in `examples/` is valid, and broken manifests are not, each for the
//! field it breaks.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// Runs `bkops schema --out-dir` and loads what it wrote, by kind.
fn schemas() -> BTreeMap<String, jsonschema::Validator> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_bkops"))
        .args(["schema", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("bkops runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut by_kind = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).expect("the folder") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("a schema file");
        let schema: Value = serde_json::from_str(&text).expect("JSON");
        let kind = schema["properties"]["kind"]["enum"][0]
            .as_str()
            .expect("a pinned kind")
            .to_owned();
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert_eq!(
            file,
            format!("{}_v1alpha1.json", kind.to_lowercase()),
            "named for kubeconform's {{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json"
        );
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{file} is not a usable JSON Schema: {e}"));
        by_kind.insert(kind, validator);
    }
    assert_eq!(
        by_kind.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "AgentJob",
            "BkConnection",
            "BkRun",
            "ExecuteJob",
            "ProcessJob",
            "Taskflow"
        ]
    );
    by_kind
}

fn problems(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn every_example_is_valid_and_broken_manifests_are_not() {
    let schemas = schemas();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let path = entry.expect("an entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a manifest");
        for doc in bkops::demo::documents(&text).expect("YAML") {
            let Some(validator) = doc["kind"].as_str().and_then(|k| schemas.get(k)) else {
                continue;
            };
            let found = problems(validator, &doc);
            assert!(found.is_empty(), "{}: {found:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} example objects checked");

    let meta = json!({"name": "x", "namespace": "n"});
    let broken = [
        (
            json!({"apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob", "metadata": meta,
                   "spec": {"bkBizId": "two", "jobObject": "process", "jobAction": "restart",
                            "scope": {"bkSetEnv": "3"}}}),
            "/spec/bkBizId",
        ),
        (
            json!({"apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob", "metadata": meta,
                   "spec": {"bkBizId": 2, "jobAction": "restart", "scope": {"bkSetEnv": "3"}}}),
            "/spec",
        ),
        (
            json!({"apiVersion": "bkops.io/v1alpha1", "kind": "ProcessJob", "metadata": meta,
                   "spec": {"bkBizId": 2, "jobObject": "process", "jobAction": "restart",
                            "scope": {"bkSetEnv": "3"}, "activeDeadlineSeconds": i64::MAX}}),
            "/spec/activeDeadlineSeconds",
        ),
        (
            json!({"apiVersion": "bkops.io/v1alpha1", "kind": "AgentJob", "metadata": meta,
                   "spec": {"jobType": "REBOOT_EVERYTHING", "bkHostId": [1]}}),
            "/spec/jobType",
        ),
        (
            json!({"apiVersion": "bkops.io/v1alpha1", "kind": "ExecuteJob", "metadata": meta,
                   "spec": {"bkScopeId": "2", "jobPlanId": 0}}),
            "/spec/jobPlanId",
        ),
        (
            json!({"apiVersion": "bkops.io/v1", "kind": "Taskflow", "metadata": meta,
                   "spec": {"templateId": 4, "creator": "admin"}}),
            "/apiVersion",
        ),
    ];
    for (doc, path) in broken {
        let validator = &schemas[doc["kind"].as_str().expect("a kind")];
        let found = problems(validator, &doc);
        assert!(
            found.iter().any(|p| p.starts_with(&format!("{path}:"))),
            "{path} not named for {doc}: {found:?}"
        );
    }
}
