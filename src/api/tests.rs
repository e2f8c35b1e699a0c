//! Cross-field rules: each case runs through the CEL rules (as a newer API server would) and
//! through `validate()` (what the controller reports on clusters that ignore CEL), and both must
//! agree.

use serde_json::{Value, json};

use super::*;

/// A case: a spec, and `None` when valid or the text both checks must mention.
struct Case {
    name: &'static str,
    spec: Value,
    error: Option<&'static str>,
}

fn case(name: &'static str, spec: Value, error: Option<&'static str>) -> Case {
    Case { name, spec, error }
}

/// Runs `cases` through `cel` (the kind's generated CEL check) and `rust` (its `validate()`).
fn check(
    cases: &[Case],
    cel: impl Fn(&Value) -> Result<(), String>,
    rust: impl Fn(&Value) -> Result<FieldErrors, String>,
) {
    for c in cases {
        let cel_result = cel(&c.spec);
        let rust_result =
            rust(&c.spec).unwrap_or_else(|e| panic!("{}: spec does not decode: {e}", c.name));
        match c.error {
            None => {
                assert!(
                    cel_result.is_ok(),
                    "{}: CEL rejected a valid spec: {cel_result:?}",
                    c.name
                );
                assert!(
                    rust_result.is_empty(),
                    "{}: validate() rejected a valid spec: {rust_result}",
                    c.name
                );
            }
            Some(text) => {
                let cel_err = cel_result
                    .err()
                    .unwrap_or_else(|| panic!("{}: CEL accepted an invalid spec", c.name));
                assert!(
                    cel_err.contains(text),
                    "{}: CEL error {cel_err:?} does not mention {text:?}",
                    c.name
                );
                assert!(
                    !rust_result.is_empty(),
                    "{}: validate() accepted an invalid spec",
                    c.name
                );
                let rust_text = rust_result.to_string();
                assert!(
                    rust_text.contains(text),
                    "{}: validate() said {rust_text:?}, not {text:?}",
                    c.name
                );
            }
        }
    }
}

fn cel_err(r: Result<(), kube::core::cel::ValidationErrors>) -> Result<(), String> {
    r.map_err(|e| format!("{e:?}"))
}

fn with(base: &Value, patch: Value) -> Value {
    let mut v = base.clone();
    if let (Some(obj), Some(p)) = (v.as_object_mut(), patch.as_object()) {
        for (k, val) in p {
            if val.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), val.clone());
            }
        }
    }
    v
}

#[test]
fn process_job_rules() {
    let good = json!({"bkBizId": 2, "jobObject": "process", "jobAction": "restart",
        "scope": {"bkSetEnv": "3", "bkSetIds": [5]}});
    let cases = [
        case("scope", good.clone(), None),
        case(
            "expression scope",
            with(
                &good,
                json!({"scope": null, "expressionScope": {"bkSetEnv": "3", "bkSetName": "*"}}),
            ),
            None,
        ),
        case(
            "both scopes",
            with(&good, json!({"expressionScope": {"bkSetEnv": "1"}})),
            None,
        ),
        case(
            "no scope",
            with(&good, json!({"scope": null})),
            Some("one of scope or expressionScope is required"),
        ),
    ];
    check(
        &cases,
        |v| cel_err(ProcessJobSpec::validate_cel(v, None)),
        |v| {
            serde_json::from_value::<ProcessJobSpec>(v.clone())
                .map(|s| s.validate())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn taskflow_rules() {
    let good = json!({"templateId": 4, "creator": "admin"});
    let tree = json!({"start_event": {}, "end_event": {}, "activities": {}, "flows": {}});
    let cases = [
        case("template", good.clone(), None),
        case(
            "tree",
            json!({"pipelineTree": tree, "creator": "admin", "scopeType": "project", "scopeValue": "1"}),
            None,
        ),
        case(
            "both",
            with(&good, json!({"pipelineTree": tree})),
            Some("exactly one of templateId or pipelineTree"),
        ),
        case(
            "neither",
            json!({"creator": "admin"}),
            Some("templateId or pipelineTree"),
        ),
        case(
            "scope on template",
            with(&good, json!({"scopeType": "project"})),
            Some("scopeType and scopeValue apply only to a pipelineTree task"),
        ),
    ];
    check(
        &cases,
        |v| cel_err(TaskflowSpec::validate_cel(v, None)),
        |v| {
            serde_json::from_value::<TaskflowSpec>(v.clone())
                .map(|s| s.validate())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn agent_job_rules() {
    let good = json!({"jobType": "RESTART_AGENT", "bkBizId": [2], "bkHostId": [1, 2]});
    let plugin = json!({"jobType": "MAIN_RESTART_PLUGIN", "bkBizId": [2], "bkHostId": [1],
        "pluginParams": {"name": "bkmonitorbeat"}});
    let cases = [
        case("hosts", good.clone(), None),
        case(
            "exclude",
            with(
                &good,
                json!({"bkHostId": null, "excludeHosts": [3],
            "conditions": [{"key": "inner_ip", "value": ["127.0.0.1"]}]}),
            ),
            None,
        ),
        case("plugin", plugin.clone(), None),
        case(
            "both host lists",
            with(&good, json!({"excludeHosts": [3]})),
            Some("bkHostId and excludeHosts cannot both be set"),
        ),
        case(
            "no host list",
            with(&good, json!({"bkHostId": null})),
            Some("one of bkHostId or excludeHosts is required"),
        ),
        case(
            "plugin without params",
            with(&plugin, json!({"pluginParams": null})),
            Some("pluginParams"),
        ),
        case(
            "params on agent job",
            with(&good, json!({"pluginParams": {"name": "x"}})),
            Some("pluginParams"),
        ),
        case(
            "install type",
            with(&good, json!({"jobType": "MANUAL_INSTALL_AGENT"})),
            Some("install job types"),
        ),
    ];
    check(
        &cases,
        |v| cel_err(AgentJobSpec::validate_cel(v, None)),
        |v| {
            serde_json::from_value::<AgentJobSpec>(v.clone())
                .map(|s| s.validate())
                .map_err(|e| e.to_string())
        },
    );
}

/// Every job type, with pluginParams exactly where a MAIN_*_PLUGIN type needs them: the CEL
/// rules and `validate()` refuse the same ones, those `refusal()` names, and say what to use.
#[test]
fn agent_job_types_are_refused_alike_by_cel_and_validate() {
    use super::agent_job::NodemanJobType;
    let mut refused = Vec::new();
    for t in NodemanJobType::ALL {
        let mut spec = json!({"jobType": t.as_str(), "bkHostId": [1]});
        if t.is_main_plugin() {
            spec["pluginParams"] = json!({"name": "bkmonitorbeat"});
        }
        let cel = AgentJobSpec::validate_cel(&spec, None).is_err();
        let errors = serde_json::from_value::<AgentJobSpec>(spec)
            .map(|s| s.validate())
            .unwrap_or_else(|e| panic!("{t:?}: {e}"));
        assert_eq!(
            cel,
            !errors.is_empty(),
            "{t:?}: CEL and validate() disagree: {errors}"
        );
        assert_eq!(t.refusal().is_some(), cel, "{t:?}");
        if let Some(r) = t.refusal() {
            let text = errors.to_string();
            assert!(text.starts_with("spec.jobType: "), "{t:?}: {text}");
            assert!(
                text.contains(r.why) && text.contains(r.instead),
                "{t:?}: {text}"
            );
            // One clear reason: the type, not also a pluginParams rule.
            assert_eq!(errors.errors().len(), 1, "{t:?}: {text}");
            refused.push(t.as_str());
        }
    }
    assert_eq!(
        refused,
        [
            "MANUAL_INSTALL_AGENT",
            "MANUAL_INSTALL_PROXY",
            "DEBUG_PLUGIN",
            "STOP_DEBUG_PLUGIN",
            "PUSH_CONFIG_PLUGIN",
            "REMOVE_CONFIG_PLUGIN",
            "PACKING_PLUGIN"
        ]
    );
}

#[test]
fn execute_job_rules() {
    let v3 = json!({"bkScopeType": "biz", "bkScopeId": "2", "jobPlanId": 1000});
    let v2 = json!({"jobApi": "v2", "bkBizId": 1, "bkJobId": 100,
        "steps": [{"stepId": 200, "scriptType": 1, "scriptContent": "ZWNobyAkMQ==", "scriptTimeout": 1000}]});
    let cases = [
        case("v3", v3.clone(), None),
        case("v2 with steps", v2.clone(), None),
        case(
            "steps on v3",
            with(&v3, json!({"steps": [{"stepId": 1}]})),
            Some("steps are supported only with jobApi: v2"),
        ),
        case(
            "v3 without plan",
            with(&v3, json!({"jobPlanId": null})),
            Some("jobPlanId"),
        ),
        case(
            "v2 without template",
            with(&v2, json!({"bkJobId": null})),
            Some("bkJobId"),
        ),
        case(
            "v3 without scope",
            with(&v3, json!({"bkScopeId": null})),
            Some("bkScopeId"),
        ),
        case(
            "mixed v2 field on v3",
            with(&v3, json!({"bkCallbackUrl": "http://cb.example.com/"})),
            Some("v2 field"),
        ),
    ];
    check(
        &cases,
        |v| cel_err(ExecuteJobSpec::validate_cel(v, None)),
        |v| {
            serde_json::from_value::<ExecuteJobSpec>(v.clone())
                .map(|s| s.validate())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn step_rules() {
    let ok = json!({"stepId": 1, "scriptType": 1, "scriptContent": "ZWNobw=="});
    assert!(execute_job::Step::validate_cel(&ok, None).is_ok());
    let bad = json!({"stepId": 1, "scriptContent": "ZWNobw=="});
    let err = execute_job::Step::validate_cel(&bad, None)
        .err()
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    assert!(
        err.contains("scriptType is required when scriptContent is set without scriptId"),
        "{err}"
    );
    // The seed's second step: scriptId wins over scriptContent, so no type is needed.
    let seed =
        json!({"stepId": 1, "scriptId": 1, "scriptContent": "ZWNobyAkMQ==", "dbAccountId": 31});
    assert!(execute_job::Step::validate_cel(&seed, None).is_ok());
    let spec: ExecuteJobSpec = serde_json::from_value(
        json!({"jobApi": "v2", "bkBizId": 1, "bkJobId": 1, "steps": [bad, seed]}),
    )
    .unwrap();
    assert_eq!(spec.validate().errors().len(), 1, "{}", spec.validate());
    assert!(
        spec.validate()
            .to_string()
            .contains("spec.steps[0].scriptType"),
        "{}",
        spec.validate()
    );
}

#[test]
fn ranges_are_reported_with_paths() {
    let spec: ExecuteJobSpec =
        serde_json::from_value(json!({"jobApi": "v2", "bkBizId": 1, "bkJobId": 1,
        "steps": [{"stepId": 1, "scriptType": 6, "scriptTimeout": 59}]}))
        .unwrap();
    let text = spec.validate().to_string();
    assert!(
        text.contains("spec.steps[0].scriptType: must be between 1 and 5, got 6"),
        "{text}"
    );
    assert!(
        text.contains("spec.steps[0].scriptTimeout: must be between 60 and 86400, got 59"),
        "{text}"
    );

    let spec: ProcessJobSpec = serde_json::from_value(json!({"bkBizId": 2, "jobObject": "process",
        "jobAction": "restart", "scope": {"bkSetEnv": "3"}, "activeDeadlineSeconds": 0, "adoptJobId": "x1"}))
    .unwrap();
    let text = spec.validate().to_string();
    assert!(text.contains("spec.activeDeadlineSeconds"), "{text}");
    assert!(text.contains("spec.adoptJobId"), "{text}");
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let spec: AgentJobSpec =
        serde_json::from_value(json!({"jobType": "MAIN_START_PLUGIN", "bkBizId": [0],
        "bkHostId": [1], "excludeHosts": [2]}))
        .unwrap();
    let errors = spec.validate();
    let paths: Vec<&str> = errors.errors().iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"spec.excludeHosts"), "{paths:?}");
    assert!(paths.contains(&"spec.bkBizId[0]"), "{paths:?}");
    assert!(paths.contains(&"spec.pluginParams"), "{paths:?}");
}

#[test]
fn connection_rules() {
    let good = json!({"gateway": {"urlTemplate": "https://bkapi.example.com/api/{api_name}/"},
        "credentialsSecretRef": {"name": "bk"}});
    let cases = [
        case("gateway", good.clone(), None),
        case(
            "esb",
            json!({"esbUrl": "https://paas.example.com", "credentialsSecretRef": {"name": "bk"},
            "gsekit": {"mode": "esb"}}),
            None,
        ),
        case(
            "nowhere",
            json!({"credentialsSecretRef": {"name": "bk"}}),
            Some("give gateway.urlTemplate, esbUrl, or a url per system"),
        ),
    ];
    check(
        &cases,
        |v| cel_err(BkConnectionSpec::validate_cel(v, None)),
        |v| {
            serde_json::from_value::<BkConnectionSpec>(v.clone())
                .map(|s| s.validate())
                .map_err(|e| e.to_string())
        },
    );
    let spec: BkConnectionSpec =
        serde_json::from_value(with(&good, json!({"bkflow": {"mode": "esb"}}))).unwrap();
    assert!(
        spec.validate()
            .to_string()
            .contains("BKFlow has no legacy ESB API")
    );
    let spec: BkConnectionSpec =
        serde_json::from_value(json!({"gateway": {"urlTemplate": "https://bkapi.example.com/"}, "credentialsSecretRef": {"name": "bk"}}))
            .unwrap();
    assert!(
        spec.validate()
            .to_string()
            .contains("must contain {api_name}")
    );
}
