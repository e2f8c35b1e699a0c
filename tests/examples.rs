//! Every file in `examples/` parses, decodes into its Rust type and passes the operator's
//! validation and the CRD's CEL rules, so the examples cannot rot.

use std::path::Path;

use bkops::api::{AgentJob, BkConnection, ExecuteJob, ProcessJob, Taskflow};
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

fn example_docs() -> Vec<(String, serde_yaml::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "expected the examples, found {files:?}");
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable example");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            if !value.is_null() {
                docs.push((
                    file.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    value,
                ));
            }
        }
    }
    docs
}

#[test]
fn every_example_decodes_and_validates() {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (file, doc) in example_docs() {
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"))
            .to_owned();
        let json = serde_json::to_value(&doc).expect("YAML maps to JSON");
        let spec = json.get("spec").cloned().unwrap_or_default();
        let (errors, cel) = match kind.as_str() {
            "ProcessJob" => {
                let o: ProcessJob =
                    serde_json::from_value(json).unwrap_or_else(|e| panic!("{file}: {e}"));
                (
                    o.spec.validate(),
                    bkops::api::ProcessJobSpec::validate_cel(&spec, None)
                        .map_err(|e| format!("{e:?}")),
                )
            }
            "Taskflow" => {
                let o: Taskflow =
                    serde_json::from_value(json).unwrap_or_else(|e| panic!("{file}: {e}"));
                (
                    o.spec.validate(),
                    bkops::api::TaskflowSpec::validate_cel(&spec, None)
                        .map_err(|e| format!("{e:?}")),
                )
            }
            "AgentJob" => {
                let o: AgentJob =
                    serde_json::from_value(json).unwrap_or_else(|e| panic!("{file}: {e}"));
                (
                    o.spec.validate(),
                    bkops::api::AgentJobSpec::validate_cel(&spec, None)
                        .map_err(|e| format!("{e:?}")),
                )
            }
            "ExecuteJob" => {
                let o: ExecuteJob =
                    serde_json::from_value(json).unwrap_or_else(|e| panic!("{file}: {e}"));
                (
                    o.spec.validate(),
                    bkops::api::ExecuteJobSpec::validate_cel(&spec, None)
                        .map_err(|e| format!("{e:?}")),
                )
            }
            "BkConnection" => {
                let o: BkConnection =
                    serde_json::from_value(json).unwrap_or_else(|e| panic!("{file}: {e}"));
                (
                    o.spec.validate(),
                    bkops::api::BkConnectionSpec::validate_cel(&spec, None)
                        .map_err(|e| format!("{e:?}")),
                )
            }
            "Secret" => {
                let s: Secret =
                    serde_json::from_value(json).unwrap_or_else(|e| panic!("{file}: {e}"));
                let data = s.string_data.unwrap_or_default();
                assert!(
                    data.contains_key("bk_app_code") && data.contains_key("bk_app_secret"),
                    "{file}: credentials keys"
                );
                (Default::default(), Ok(()))
            }
            other => panic!("{file}: unexpected kind {other}"),
        };
        assert!(
            errors.is_empty(),
            "{file} ({kind}): validate() says {errors}"
        );
        assert!(cel.is_ok(), "{file} ({kind}): CEL rules say {cel:?}");
        *kinds.entry(kind).or_default() += 1;
    }
    for kind in [
        "ProcessJob",
        "Taskflow",
        "AgentJob",
        "ExecuteJob",
        "BkConnection",
        "Secret",
    ] {
        assert!(kinds.contains_key(kind), "no example of {kind}: {kinds:?}");
    }
}

#[test]
fn execute_job_examples_cover_both_apis() {
    let apis: Vec<String> = example_docs()
        .into_iter()
        .filter(|(_, d)| d["kind"].as_str() == Some("ExecuteJob"))
        .map(|(_, d)| d["spec"]["jobApi"].as_str().unwrap_or("v3").to_owned())
        .collect();
    assert!(
        apis.iter().any(|a| a == "v2") && apis.iter().any(|a| a == "v3"),
        "{apis:?}"
    );
}

#[test]
fn pipeline_tree_example_is_the_seed_tree_in_full() {
    let (_, doc) = example_docs()
        .into_iter()
        .find(|(f, _)| f == "taskflow-pipeline-tree.yaml")
        .expect("pipeline tree example");
    let tree = &doc["spec"]["pipelineTree"];
    for key in [
        "activities",
        "end_event",
        "flows",
        "gateways",
        "line",
        "location",
        "outputs",
        "start_event",
        "constants",
        "internalVariable",
    ] {
        assert!(!tree[key].is_null(), "pipelineTree.{key} missing");
    }
    assert_eq!(
        tree["activities"]["nf834705dbbb37c59ad114aa37314975"]["component"]["code"].as_str(),
        Some("bk_display")
    );
}
