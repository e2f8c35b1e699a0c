//! The operator against a real kube-apiserver and the BlueKing simulator over HTTP. Every test
//! asserts the simulator's call counts: a run is submitted exactly once.

mod support;

use std::time::Duration;

use bkops::api::common::Phase;
use bkops::api::{AgentJob, ExecuteJob, ProcessJob, Taskflow};
use bkops::run::JobKind;
use bkops::sim::{Behaviour, FaultAction, FaultRule, System, SystemSel};
use support::env::{Env, EnvOptions, documents};

fn example(file: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(file)).expect("example")
}

fn status<K: JobKind>(o: &K) -> bkops::api::JobStatus {
    o.job_status().cloned().unwrap_or_default()
}

fn condition<K: JobKind>(o: &K, type_: &str) -> Option<String> {
    status(o).conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

#[tokio::test]
async fn every_example_runs_to_succeeded_with_one_create_each() {
    let env = Env::start("all-kinds").await;
    let files = [
        "processjob-generate-config.yaml",
        "processjob-restart.yaml",
        "taskflow-template.yaml",
        "taskflow-pipeline-tree.yaml",
        "agentjob-restart-agents.yaml",
        "agentjob-restart-plugin.yaml",
        "executejob-v3.yaml",
        "executejob-v2.yaml",
    ];
    for f in files {
        env.apply(&example(f)).await;
    }
    for f in files {
        let doc = &documents(&example(f))[0];
        let name = doc["metadata"]["name"].as_str().unwrap();
        let (job_id, summary, ready, reconciling) = match doc["kind"].as_str().unwrap() {
            "ProcessJob" => {
                let o = env.wait_phase::<ProcessJob>(name, Phase::Succeeded).await;
                (status(&o).run.unwrap().job_id, status(&o).run.unwrap().summary, condition(&o, "Ready"), condition(&o, "Reconciling"))
            }
            "Taskflow" => {
                let o = env.wait_phase::<Taskflow>(name, Phase::Succeeded).await;
                (status(&o).run.unwrap().job_id, status(&o).run.unwrap().summary, condition(&o, "Ready"), condition(&o, "Reconciling"))
            }
            "AgentJob" => {
                let o = env.wait_phase::<AgentJob>(name, Phase::Succeeded).await;
                (status(&o).run.unwrap().job_id, status(&o).run.unwrap().summary, condition(&o, "Ready"), condition(&o, "Reconciling"))
            }
            _ => {
                let o = env.wait_phase::<ExecuteJob>(name, Phase::Succeeded).await;
                (status(&o).run.unwrap().job_id, status(&o).run.unwrap().summary, condition(&o, "Ready"), condition(&o, "Reconciling"))
            }
        };
        assert!(job_id.is_some(), "{f}: job id recorded");
        let summary = summary.unwrap_or_default();
        assert!(summary.total > 0 && summary.succeeded > 0, "{f}: per-target results {summary:?}");
        assert_eq!(ready.as_deref(), Some("True"), "{f}: Ready");
        assert_eq!(reconciling, None, "{f}: Reconciling absent when done");
    }
    assert_eq!(env.creates(System::Gsekit).await, 2);
    assert_eq!(env.creates(System::Bkflow).await, 2);
    assert_eq!(env.creates(System::Nodeman).await, 2);
    assert_eq!(env.creates(System::Job).await, 2);
    env.stop().await;
}
