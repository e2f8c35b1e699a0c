//! Every value the CRDs accept, walked through the operator against the simulator: each one is
//! either submitted (exactly one create, a job id, the job running or done) or refused by bkops
//! before any call (phase `Failed`, reason `InvalidSpec` or `ConnectionUnsupported`, no create).
//! Never a refusal from BlueKing for a value bkops let through. The values are read from the
//! generated CRDs and the test environment's connections, so a new one cannot be missed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bkops::api::agent_job::NodemanJobType;
use bkops::api::common::Phase;
use bkops::api::{AgentJob, AgentJobSpec, ExecuteJob, ExecuteJobSpec, JobStatus};
use bkops::api::{ProcessJob, ProcessJobSpec, Taskflow, TaskflowSpec};
use bkops::crdgen::CrdKind;
use bkops::run::JobKind;
use bkops::sim::System;
use serde_json::{Value, json};
use support::env::{Env, connections_yaml, documents};

const WAIT: Duration = Duration::from_secs(90);

/// The properties of a CRD's `spec`.
fn spec_properties(kind: CrdKind) -> Value {
    let crd = serde_json::to_value(kind.crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .clone()
}

/// The values a spec field of a CRD accepts (its schema's `enum`).
fn enum_values(kind: CrdKind, field: &str) -> Vec<String> {
    let values: Vec<String> = spec_properties(kind)[field]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{kind:?}.spec.{field} has no enum"))
        .iter()
        .map(|v| v.as_str().expect("string enum").to_owned())
        .collect();
    assert!(!values.is_empty(), "{kind:?}.spec.{field}");
    values
}

/// The test environment's connections: name and how each reaches each system (`gateway`/`esb`).
fn connections() -> Vec<(String, Value)> {
    let conns: Vec<(String, Value)> = documents(&connections_yaml("http://127.0.0.1:1/"))
        .into_iter()
        .filter(|d| d["kind"] == "BkConnection")
        .map(|d| {
            let name = d["metadata"]["name"].as_str().expect("name").to_owned();
            (name, d["spec"].clone())
        })
        .collect();
    assert!(
        conns.len() >= 2,
        "a gateway and an ESB connection: {conns:?}"
    );
    conns
}

fn mode_of(conn: &Value, system: &str) -> String {
    conn[system]["mode"]
        .as_str()
        .unwrap_or("gateway")
        .to_owned()
}

/// The pipeline tree of the example, a tree the simulator runs.
fn example_tree() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("taskflow-pipeline-tree.yaml");
    let text = std::fs::read_to_string(path).expect("example");
    documents(&text)[0]["spec"]["pipelineTree"].clone()
}

/// What bkops must do with a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Submitted,
    Refused(&'static str),
}

/// One value (or combination) on one connection.
struct Case {
    kind: &'static str,
    name: String,
    what: String,
    system: System,
    /// The connection's mode for the case's system.
    mode: String,
    doc: Value,
    expect: Expect,
    /// A field the create body must carry, and its value (`null`: present with any value).
    body: Vec<(&'static str, Value)>,
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "bkops.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// The spec's own checks (what the operator reports as `InvalidSpec`).
fn spec_problems<S: serde::de::DeserializeOwned>(
    spec: &Value,
    validate: fn(&S) -> String,
) -> String {
    let s: S = serde_json::from_value(spec.clone()).expect("spec decodes");
    validate(&s)
}

fn from_validation(problems: String) -> Expect {
    if problems.is_empty() {
        Expect::Submitted
    } else {
        Expect::Refused("InvalidSpec")
    }
}

fn cases() -> Vec<Case> {
    let conns = connections();
    let mut out = Vec::new();
    for (ci, (conn, conn_spec)) in conns.iter().enumerate() {
        let conn_ref = json!({"name": conn});

        for (i, t) in enum_values(CrdKind::AgentJob, "jobType").iter().enumerate() {
            let ty: NodemanJobType = serde_json::from_value(json!(t)).expect("job type");
            let mut spec = json!({"connectionRef": conn_ref, "jobType": t, "bkHostId": [1, 2, 3]});
            if ty.is_main_plugin() {
                spec["pluginParams"] = json!({"name": "bkmonitorbeat"});
            }
            let problems = spec_problems(&spec, |s: &AgentJobSpec| s.validate().to_string());
            let name = format!("aj-{ci}-{i}");
            out.push(Case {
                kind: "AgentJob",
                what: format!("AgentJob {t} via {conn}"),
                system: System::Nodeman,
                mode: mode_of(conn_spec, "nodeman"),
                doc: object("AgentJob", &name, spec),
                expect: from_validation(problems),
                body: vec![("job_type", json!(t))],
                name,
            });
        }

        let objects = enum_values(CrdKind::ProcessJob, "jobObject");
        let actions = enum_values(CrdKind::ProcessJob, "jobAction");
        for (oi, o) in objects.iter().enumerate() {
            for (ai, a) in actions.iter().enumerate() {
                let spec = json!({"connectionRef": conn_ref, "bkBizId": 2, "jobObject": o,
                    "jobAction": a, "scope": {"bkSetEnv": "3"}});
                let problems = spec_problems(&spec, |s: &ProcessJobSpec| s.validate().to_string());
                let name = format!("pj-{ci}-{oi}-{ai}");
                out.push(Case {
                    kind: "ProcessJob",
                    what: format!("ProcessJob {o}/{a} via {conn}"),
                    system: System::Gsekit,
                    mode: mode_of(conn_spec, "gsekit"),
                    doc: object("ProcessJob", &name, spec),
                    expect: from_validation(problems),
                    body: vec![("job_object", json!(o)), ("job_action", json!(a))],
                    name,
                });
            }
        }

        for (i, api) in enum_values(CrdKind::ExecuteJob, "jobApi")
            .iter()
            .enumerate()
        {
            let (spec, field) = if api == "v2" {
                (
                    json!({"connectionRef": conn_ref, "jobApi": api, "bkBizId": 1, "bkJobId": 100}),
                    "bk_job_id",
                )
            } else {
                (
                    json!({"connectionRef": conn_ref, "jobApi": api, "bkScopeId": "2", "jobPlanId": 1000}),
                    "job_plan_id",
                )
            };
            let problems = spec_problems(&spec, |s: &ExecuteJobSpec| s.validate().to_string());
            let mode = mode_of(conn_spec, "job");
            // JOB v2 exists only on the legacy ESB: through a gateway connection it is refused.
            let expect = match from_validation(problems) {
                Expect::Submitted if api == "v2" && mode != "esb" => {
                    Expect::Refused("ConnectionUnsupported")
                }
                e => e,
            };
            let name = format!("xj-{ci}-{i}");
            out.push(Case {
                kind: "ExecuteJob",
                what: format!("ExecuteJob {api} via {conn} ({mode})"),
                system: System::Job,
                mode,
                doc: object("ExecuteJob", &name, spec),
                expect,
                body: vec![(field, Value::Null)],
                name,
            });
        }

        // A Taskflow comes from a template or from a pipeline tree: the two ways the CRD offers.
        let props = spec_properties(CrdKind::Taskflow);
        for (i, source) in ["templateId", "pipelineTree"].iter().enumerate() {
            assert!(props.get(source).is_some(), "Taskflow.spec.{source}");
            let (spec, field) = if *source == "templateId" {
                (
                    json!({"connectionRef": conn_ref, "templateId": 4, "creator": "admin"}),
                    "template_id",
                )
            } else {
                (
                    json!({"connectionRef": conn_ref, "pipelineTree": example_tree(), "creator": "admin"}),
                    "pipeline_tree",
                )
            };
            let problems = spec_problems(&spec, |s: &TaskflowSpec| s.validate().to_string());
            let name = format!("tf-{ci}-{i}");
            out.push(Case {
                kind: "Taskflow",
                what: format!("Taskflow from {source} via {conn}"),
                system: System::Bkflow,
                mode: mode_of(conn_spec, "bkflow"),
                doc: object("Taskflow", &name, spec),
                expect: from_validation(problems),
                body: vec![(field, Value::Null)],
                name,
            });
        }
    }
    out
}

/// Waits until the object is submitted or has ended, and returns its status.
async fn settled<K: JobKind>(env: &Env, name: &str) -> JobStatus {
    let o = env
        .wait_for::<K>(name, WAIT, |o| {
            o.job_status().is_some_and(|s| match s.phase {
                Some(Phase::Running | Phase::WaitingForUser | Phase::Succeeded) => {
                    s.run.as_ref().is_some_and(|r| r.job_id.is_some())
                }
                Some(Phase::Failed | Phase::Cancelled | Phase::Unknown) => true,
                _ => false,
            })
        })
        .await;
    o.job_status().cloned().unwrap_or_default()
}

fn stalled_reason(s: &JobStatus) -> Option<String> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .map(|c| c.reason.clone())
}

#[tokio::test]
async fn every_accepted_value_is_submitted_once_or_refused_by_bkops() {
    let env = Env::start("enums").await;
    let cases = cases();
    for c in &cases {
        env.apply(&serde_json::to_string(&c.doc).expect("JSON is YAML"))
            .await;
    }

    // system → job id → the case that recorded it
    let mut submitted: BTreeMap<System, BTreeMap<String, &Case>> = BTreeMap::new();
    let mut refused = Vec::new();
    for c in &cases {
        let s = match c.kind {
            "AgentJob" => settled::<AgentJob>(&env, &c.name).await,
            "ProcessJob" => settled::<ProcessJob>(&env, &c.name).await,
            "ExecuteJob" => settled::<ExecuteJob>(&env, &c.name).await,
            _ => settled::<Taskflow>(&env, &c.name).await,
        };
        let message = s.message.clone().unwrap_or_default();
        match c.expect {
            Expect::Submitted => {
                let job_id = s.run.as_ref().and_then(|r| r.job_id.clone());
                assert!(
                    matches!(
                        s.phase,
                        Some(Phase::Running | Phase::WaitingForUser | Phase::Succeeded)
                    ),
                    "{}: expected submitted, got {:?} ({:?}): {message}",
                    c.what,
                    s.phase,
                    stalled_reason(&s)
                );
                let job_id = job_id.unwrap_or_else(|| panic!("{}: no job id", c.what));
                let previous = submitted
                    .entry(c.system)
                    .or_default()
                    .insert(job_id.clone(), c);
                assert!(
                    previous.is_none(),
                    "{}: job {job_id} recorded twice",
                    c.what
                );
            }
            Expect::Refused(reason) => {
                assert_eq!(
                    (s.phase, stalled_reason(&s).as_deref()),
                    (Some(Phase::Failed), Some(reason)),
                    "{}: expected refused by bkops: {message}",
                    c.what
                );
                assert!(
                    s.run.as_ref().is_none_or(|r| r.job_id.is_none()),
                    "{}: a refused object has no job",
                    c.what
                );
                assert!(
                    message.contains("refused") && message.contains("nothing was sent to BlueKing"),
                    "{}: the message must say bkops refused it and nothing ran: {message}",
                    c.what
                );
                refused.push(c.what.clone());
            }
        }
    }

    // Exactly one create per submitted object, none for the refused: every create the simulator
    // received made one of the recorded jobs, each carrying the case's value.
    let jobs = env.control.jobs().await.expect("jobs");
    for system in System::ALL {
        let recorded = submitted.remove(&system).unwrap_or_default();
        assert_eq!(
            env.creates(system).await,
            recorded.len() as u64,
            "{system:?}: one create per submitted object, none for a refused one"
        );
        let made: BTreeSet<String> = jobs
            .iter()
            .filter(|j| j.system == system)
            .map(|j| j.id.to_string())
            .collect();
        let want: BTreeSet<String> = recorded.keys().cloned().collect();
        assert_eq!(made, want, "{system:?}: the jobs the simulator made");
        for j in jobs.iter().filter(|j| j.system == system) {
            let c = recorded[&j.id.to_string()];
            assert_eq!(j.mode, c.mode, "{}: reached through its connection", c.what);
            for (field, value) in &c.body {
                let got = &j.created[*field];
                if value.is_null() {
                    assert!(!got.is_null(), "{}: create body has no {field}", c.what);
                } else {
                    assert_eq!(got, value, "{}: create body {field}", c.what);
                }
            }
        }
    }
    println!(
        "{} values and combinations: {} submitted, {} refused by bkops: {refused:#?}",
        cases.len(),
        cases.len() - refused.len(),
        refused.len()
    );
    env.stop().await;
}
