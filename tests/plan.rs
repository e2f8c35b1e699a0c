//! `bkops plan`: the binary on `examples/` and on broken manifests (no cluster), and the requests
//! it shows against what the simulator receives when the operator submits the same manifests.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use serde_json::Value;

use bkops::plan::{PLAN_KEY, documents, plan};
use support::env::{Env, api_resource, connections_yaml};

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Runs `bkops plan ARGS` with `stdin`; (exit code, stdout, stderr).
fn bkops_plan(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bkops"))
        .arg("plan")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bkops runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    let out = child.wait_with_output().expect("bkops ends");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The job documents of `examples/` (what the operator would submit).
fn example_jobs() -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())
        .expect("examples/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut jobs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        for (_, doc) in documents(&file.display().to_string(), &text) {
            let doc = doc.expect("examples are YAML");
            let kind = doc["kind"].as_str().unwrap_or_default();
            if bkops::run::kinds::job_kind(kind).is_some() {
                jobs.push(doc);
            }
        }
    }
    jobs
}

#[test]
fn every_example_is_valid_and_shows_one_request_without_credentials() {
    let dir = examples_dir();
    let (code, out, err) = bkops_plan(&["-f", &dir.to_string_lossy(), "-o", "json"], "");
    assert_eq!(code, 0, "{out}\n{err}");
    let plan: Value = serde_json::from_str(&out).expect("JSON output");
    let jobs = plan["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), example_jobs().len(), "{out}");
    assert!(jobs.len() >= 8);
    for job in jobs {
        assert_eq!(job["problems"], serde_json::json!([]), "{job}");
        let requests = job["requests"].as_array().expect("requests");
        assert_eq!(requests.len(), 1, "one create per job: {job}");
        assert!(
            job["connection"]
                .as_str()
                .is_some_and(|c| c.starts_with("BkConnection blueking")),
            "the example's own connection: {job}"
        );
    }
    assert_eq!(plan["skipped"]["BkConnection"], 2, "{out}");
    assert_eq!(plan["skipped"]["Secret"], 2, "{out}");
    // The examples' Secret holds bk_app_secret "change-me": never shown, nor any credential key.
    for secret in [
        "change-me",
        "bk_app_secret",
        "bk_app_code",
        "bk_token",
        "access_token",
    ] {
        assert!(!out.contains(secret), "{secret} in the plan: {out}");
    }
    // The same, for people, from stdin.
    let text = std::fs::read_to_string(dir.join("executejob-v3.yaml")).expect("readable");
    let (code, out, err) = bkops_plan(&["-f", "-"], &text);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("JOB (gateway) POST ") && out.contains("api/v3/execute_job_plan"),
        "{out}"
    );
    assert!(out.contains("placeholder: BkConnection blueking is not in the input"));
}

#[test]
fn broken_manifests_exit_1_naming_the_field() {
    let job = |kind: &str, name: &str, spec: &str| {
        format!(
            "apiVersion: bkops.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n{spec}"
        )
    };
    let process = "  bkBizId: 2\n  jobObject: process\n  jobAction: restart\n";
    let cases = [
        // The structural schema (what the API server refuses).
        (
            job("ProcessJob", "p", "  bkBizId: two\n  jobObject: process\n  jobAction: restart\n  expressionScope: {bkProcessName: x}\n"),
            "spec.bkBizId",
        ),
        (
            job("ExecuteJob", "e", "  bkScopeType: biz\n  bkScopeId: \"2\"\n  jobPlanId: 0\n"),
            "spec.jobPlanId",
        ),
        // A CEL rule (1.20 to 1.24 clusters do not evaluate them) and the operator's own check.
        (job("ProcessJob", "p", process), "spec"),
        // The operator's checks.
        (
            job("ExecuteJob", "e", "  bkBizId: 2\n  steps: [{stepId: 1}]\n"),
            "spec",
        ),
        ("apiVersion: bkops.io/v1alpha1\nkind: Taskflow\nmetadata: {}\nspec:\n  spaceId: 1\n  templateId: 4\n  creator: admin\n".to_owned(), "metadata.name"),
        // Not YAML.
        ("kind: [\n".to_owned(), "."),
    ];
    for (manifest, path) in cases {
        let (code, out, err) = bkops_plan(&["-f", "-", "-o", "json"], &manifest);
        assert_eq!(code, 1, "{manifest}\n{out}\n{err}");
        let plan: Value = serde_json::from_str(&out).expect("JSON output");
        let problems = plan["jobs"][0]["problems"].as_array().expect("problems");
        assert!(
            problems.iter().any(|p| p["path"] == path),
            "{manifest}: no problem at {path}: {out}"
        );
        assert!(
            plan["jobs"][0]["requests"] == serde_json::json!([]),
            "{out}"
        );
    }
    // The human form says INVALID and names the field.
    let (code, out, _) = bkops_plan(
        &["-f", "-"],
        &job(
            "ExecuteJob",
            "e",
            "  bkScopeType: biz\n  bkScopeId: \"2\"\n  jobPlanId: 0\n",
        ),
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("INVALID") && out.contains("- spec.jobPlanId: "),
        "{out}"
    );
}

#[test]
fn unreadable_input_is_a_usage_error() {
    let (code, _, err) = bkops_plan(&["-f", "/nonexistent/jobs.yaml"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/jobs.yaml"), "{err}");
    let (code, _, err) = bkops_plan(&[], "");
    assert_eq!(code, 2, "no -f: {err}");
    // Other objects are counted, not planned; with no job at all the plan is empty and valid.
    let (code, out, _) = bkops_plan(
        &["-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 job manifest(s), 0 invalid; 1 other document(s) skipped (ConfigMap 1)"),
        "{out}"
    );
}

/// Credentials the transport adds to an ESB body; never part of the plan.
const CREDENTIAL_KEYS: [&str; 5] = [
    "bk_app_code",
    "bk_app_secret",
    "bk_username",
    "bk_token",
    "access_token",
];

#[tokio::test]
async fn the_planned_body_is_what_the_simulator_receives() {
    let env = Env::start("plan-bodies").await;
    let jobs = example_jobs();
    for job in &jobs {
        env.apply(&serde_yaml::to_string(job).expect("YAML")).await;
    }
    // Each example makes one create.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let created = loop {
        let seen = env.control.jobs().await.expect("simulator jobs");
        if seen.len() >= jobs.len() || tokio::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(created.len(), jobs.len(), "one create per example");

    // The plan, with the connections the operator used.
    let docs: Vec<_> = jobs
        .iter()
        .map(|j| ("example".to_owned(), Ok(j.clone())))
        .collect();
    let connections = documents(
        "connections",
        &connections_yaml(env.sim.base_url().as_str()),
    );
    let planned = plan(&docs, &connections).await;
    assert!(planned.valid(), "{planned:?}");

    let mut compared = BTreeMap::new();
    for (job, plan) in jobs.iter().zip(&planned.jobs) {
        let kind = job["kind"].as_str().expect("a kind");
        let name = job["metadata"]["name"].as_str().expect("a name");
        let api: Api<DynamicObject> =
            Api::namespaced_with(env.ns.client(), env.ns.name(), &api_resource(kind));
        let obj = api.get(name).await.expect("the object");
        let run = &obj.data["status"]["run"];
        let key = run["key"].as_str().expect("a run key");
        let id: u64 = run["jobId"]
            .as_str()
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("{kind}/{name}: no job id: {run}"));
        let [request] = plan.requests.as_slice() else {
            panic!("{kind}/{name}: {plan:?}");
        };
        let sim = created
            .iter()
            .find(|j| j.id == id && j.system == bkops::sim::System::from(request.system))
            .unwrap_or_else(|| panic!("{kind}/{name}: job {id} not in the simulator"));
        let mut received = sim.created.clone();
        if let Some(body) = received.as_object_mut() {
            for k in CREDENTIAL_KEYS {
                body.remove(k);
            }
        }
        let shown = serde_json::to_string(&request.body)
            .expect("JSON")
            .replace(PLAN_KEY, key);
        let shown: Value = serde_json::from_str(&shown).expect("JSON");
        assert_eq!(shown, received, "{kind}/{name} ({})", request.mode);
        *compared
            .entry(format!("{kind} {}", request.mode))
            .or_insert(0) += 1;
    }
    // Every kind, and both modes (JOB v2 goes through the ESB).
    for kind in ["ProcessJob", "Taskflow", "AgentJob", "ExecuteJob"] {
        assert!(
            compared.keys().any(|k| k.starts_with(kind)),
            "{kind} not compared: {compared:?}"
        );
    }
    assert!(compared.keys().any(|k| k.ends_with("esb")), "{compared:?}");
    assert!(
        compared.keys().any(|k| k.ends_with("gateway")),
        "{compared:?}"
    );
    env.stop().await;
}
