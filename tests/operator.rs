//! The operator against a real kube-apiserver and the BlueKing simulator over HTTP. Every test
//! asserts the simulator's call counts: a run is submitted exactly once.

mod support;

use support::{run_of, status};

use std::time::Duration;

use bkops::api::common::Phase;
use bkops::api::{AgentJob, ExecuteJob, ProcessJob, Taskflow};
use bkops::run::JobKind;
use bkops::sim::{Behaviour, FaultAction, FaultRule, System, SystemSel};
use support::env::{Env, EnvOptions, documents};

fn example(file: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(file),
    )
    .expect("example")
}

fn condition<K: JobKind>(o: &K, type_: &str) -> Option<String> {
    status(o)
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
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
                (
                    status(&o).run.unwrap().job_id,
                    status(&o).run.unwrap().summary,
                    condition(&o, "Ready"),
                    condition(&o, "Reconciling"),
                )
            }
            "Taskflow" => {
                let o = env.wait_phase::<Taskflow>(name, Phase::Succeeded).await;
                (
                    status(&o).run.unwrap().job_id,
                    status(&o).run.unwrap().summary,
                    condition(&o, "Ready"),
                    condition(&o, "Reconciling"),
                )
            }
            "AgentJob" => {
                let o = env.wait_phase::<AgentJob>(name, Phase::Succeeded).await;
                (
                    status(&o).run.unwrap().job_id,
                    status(&o).run.unwrap().summary,
                    condition(&o, "Ready"),
                    condition(&o, "Reconciling"),
                )
            }
            _ => {
                let o = env.wait_phase::<ExecuteJob>(name, Phase::Succeeded).await;
                (
                    status(&o).run.unwrap().job_id,
                    status(&o).run.unwrap().summary,
                    condition(&o, "Ready"),
                    condition(&o, "Reconciling"),
                )
            }
        };
        assert!(job_id.is_some(), "{f}: job id recorded");
        let summary = summary.unwrap_or_default();
        assert!(
            summary.total > 0 && summary.succeeded > 0,
            "{f}: per-target results {summary:?}"
        );
        assert_eq!(ready.as_deref(), Some("True"), "{f}: Ready");
        assert_eq!(reconciling, None, "{f}: Reconciling absent when done");
    }
    assert_eq!(env.creates(System::Gsekit).await, 2);
    assert_eq!(env.creates(System::Bkflow).await, 2);
    assert_eq!(env.creates(System::Nodeman).await, 2);
    assert_eq!(env.creates(System::Job).await, 2);
    env.stop().await;
}

const WAIT: Duration = Duration::from_secs(30);

fn agent_job(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: bkops.io/v1alpha1\nkind: AgentJob\nmetadata: {{name: {name}}}\nspec:\n  jobType: RESTART_AGENT\n  bkHostId: [1, 2, 3]\n{extra}"
    )
}

fn taskflow(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: bkops.io/v1alpha1\nkind: Taskflow\nmetadata: {{name: {name}}}\nspec:\n  templateId: 4\n  creator: admin\n{extra}"
    )
}

fn process_job(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {{name: {name}}}\nspec:\n  bkBizId: 2\n  jobObject: process\n  jobAction: restart\n  scope: {{bkSetEnv: \"3\"}}\n{extra}"
    )
}

fn execute_job(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: bkops.io/v1alpha1\nkind: ExecuteJob\nmetadata: {{name: {name}}}\nspec:\n  bkScopeId: \"2\"\n  jobPlanId: 1000\n{extra}"
    )
}

#[tokio::test]
async fn failed_targets_fail_the_run_with_their_reasons() {
    let env = Env::start("failed-targets").await;
    env.control
        .set_behaviour(&Behaviour {
            system: System::Nodeman,
            failed_targets: Some(2),
            wait_for_user: false,
            duration_ms: None,
            targets: Some(5),
            times: None,
        })
        .await
        .unwrap();
    env.apply(&agent_job("broken", "")).await;
    let o = env.wait_phase::<AgentJob>("broken", Phase::Failed).await;
    let run = run_of(&o);
    assert_eq!(run.summary.unwrap().failed, 2);
    assert_eq!(run.failed_targets.len(), 2, "{:?}", run.failed_targets);
    assert!(
        run.failed_targets
            .iter()
            .all(|t| !t.target.is_empty() && !t.reason.is_empty())
    );
    assert_eq!(condition(&o, "Stalled").as_deref(), Some("True"));
    assert_eq!(condition(&o, "Ready").as_deref(), Some("False"));
    assert_eq!(run.reason.as_deref(), Some("JobFailed"));
    assert_eq!(env.creates(System::Nodeman).await, 1);
    env.stop().await;
}

#[tokio::test]
async fn waiting_for_a_person_then_approved() {
    let env = Env::start("waiting").await;
    env.control
        .set_behaviour(&Behaviour {
            system: System::Job,
            failed_targets: None,
            wait_for_user: true,
            duration_ms: None,
            targets: None,
            times: None,
        })
        .await
        .unwrap();
    env.apply(&execute_job("confirm", "")).await;
    let o = env
        .wait_phase::<ExecuteJob>("confirm", Phase::WaitingForUser)
        .await;
    assert_eq!(condition(&o, "Reconciling").as_deref(), Some("True"));
    assert_eq!(
        status(&o)
            .conditions
            .iter()
            .find(|c| c.type_ == "Reconciling")
            .map(|c| c.reason.as_str()),
        Some("WaitingForUser")
    );
    let id: u64 = run_of(&o).job_id.unwrap().parse().unwrap();
    env.control.approve(System::Job, id).await.unwrap();
    env.wait_phase::<ExecuteJob>("confirm", Phase::Succeeded)
        .await;
    assert_eq!(env.creates(System::Job).await, 1);
    assert_eq!(
        env.calls(System::Job, "start").await,
        1,
        "v3: created stopped, started once"
    );
    env.stop().await;
}

#[tokio::test]
async fn rerun_by_token_and_by_annotation_each_make_exactly_one_more_create() {
    let env = Env::start("rerun").await;
    env.apply(&process_job("again", "")).await;
    let first = env
        .wait_phase::<ProcessJob>("again", Phase::Succeeded)
        .await;
    assert_eq!(env.creates(System::Gsekit).await, 1);

    env.apply(&process_job("again", "  rerunToken: \"2\"\n"))
        .await;
    let second = env
        .wait_for::<ProcessJob>("again", WAIT, |o| {
            run_of(o).key != run_of(&first).key && status(o).phase == Some(Phase::Succeeded)
        })
        .await;
    assert_eq!(env.creates(System::Gsekit).await, 2);
    assert_eq!(status(&second).history.len(), 2, "both runs in history");

    let api = env.api::<ProcessJob>();
    let stamp = "2026-11-22T12:00:00Z";
    let patch =
        serde_json::json!({"metadata": {"annotations": {"bkops.io/rerun-requested-at": stamp}}});
    api.patch(
        "again",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let third = env
        .wait_for::<ProcessJob>("again", WAIT, |o| {
            status(o).last_handled_rerun_at.as_deref() == Some(stamp)
                && status(o).phase == Some(Phase::Succeeded)
        })
        .await;
    assert_eq!(env.creates(System::Gsekit).await, 3);
    assert_ne!(run_of(&third).key, run_of(&second).key);
    // Nothing more happens by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.creates(System::Gsekit).await, 3);
    env.stop().await;
}

#[tokio::test]
async fn a_spec_edit_during_a_run_waits_for_it() {
    let env = Env::with(
        "edit",
        EnvOptions {
            job_ms: 3000,
            ..EnvOptions::default()
        },
    )
    .await;
    env.apply(&taskflow("flow", "")).await;
    let running = env
        .wait_for::<Taskflow>("flow", WAIT, |o| run_of(o).job_id.is_some())
        .await;
    env.apply(&taskflow("flow", "  description: edited\n"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        env.creates(System::Bkflow).await,
        1,
        "the running job is not replaced"
    );
    let first_job = run_of(&running).job_id;
    let done = env
        .wait_for::<Taskflow>("flow", WAIT, |o| {
            run_of(o).job_id != first_job && status(o).phase == Some(Phase::Succeeded)
        })
        .await;
    assert_eq!(
        status(&done).history[1].phase,
        Phase::Succeeded,
        "the first run finished"
    );
    assert_eq!(env.creates(System::Bkflow).await, 2);
    env.stop().await;
}

#[tokio::test]
async fn suspend_holds_new_runs_and_resume_releases_them() {
    let env = Env::start("suspend").await;
    env.apply(&agent_job("held", "  suspend: true\n")).await;
    let o = env.wait_phase::<AgentJob>("held", Phase::Suspended).await;
    assert_eq!(condition(&o, "Reconciling"), None);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(env.creates(System::Nodeman).await, 0);
    env.apply(&agent_job("held", "  suspend: false\n")).await;
    env.wait_phase::<AgentJob>("held", Phase::Succeeded).await;
    assert_eq!(env.creates(System::Nodeman).await, 1);
    // Suspending a finished job starts nothing and changes no run.
    env.apply(&agent_job("held", "  suspend: true\n")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(env.creates(System::Nodeman).await, 1);
    env.stop().await;
}

#[tokio::test]
async fn cancel_is_called_once_and_gsekit_says_it_cannot() {
    let env = Env::with(
        "cancel",
        EnvOptions {
            job_ms: 20_000,
            ..EnvOptions::default()
        },
    )
    .await;
    env.apply(&taskflow("stop-me", "")).await;
    env.apply(&process_job("cannot-stop", "")).await;
    env.wait_for::<Taskflow>("stop-me", WAIT, |o| run_of(o).started)
        .await;
    env.wait_for::<ProcessJob>("cannot-stop", WAIT, |o| run_of(o).job_id.is_some())
        .await;
    env.apply(&taskflow("stop-me", "  cancel: true\n")).await;
    env.apply(&process_job("cannot-stop", "  cancel: true\n"))
        .await;
    let o = env
        .wait_phase::<Taskflow>("stop-me", Phase::Cancelled)
        .await;
    assert_eq!(condition(&o, "Stalled").as_deref(), Some("True"));
    assert_eq!(env.calls(System::Bkflow, "cancel").await, 1);
    let g = env
        .wait_for::<ProcessJob>("cannot-stop", WAIT, |o| {
            run_of(o).cancel_requested_at.is_some()
        })
        .await;
    assert!(
        status(&g).message.unwrap_or_default().contains("no cancel"),
        "{:?}",
        status(&g).message
    );
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.ns.client(), env.ns.name());
    let list = events.list(&Default::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("CancelNotSupported")),
        "an Event explains GSEKit cannot cancel"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.calls(System::Bkflow, "cancel").await,
        1,
        "cancel made once"
    );
    env.stop().await;
}

#[tokio::test]
async fn the_deadline_cancels_and_fails_the_run() {
    let env = Env::with(
        "deadline",
        EnvOptions {
            job_ms: 20_000,
            ..EnvOptions::default()
        },
    )
    .await;
    env.apply(&execute_job("slow", "  activeDeadlineSeconds: 2\n"))
        .await;
    let o = env.wait_phase::<ExecuteJob>("slow", Phase::Failed).await;
    assert_eq!(run_of(&o).reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(env.calls(System::Job, "cancel").await, 1);
    assert_eq!(env.creates(System::Job).await, 1);
    env.stop().await;
}

#[tokio::test]
async fn retry_resubmits_failed_jobs_up_to_the_limit() {
    let env = Env::start("retry").await;
    env.control
        .set_behaviour(&Behaviour {
            system: System::Gsekit,
            failed_targets: Some(1),
            wait_for_user: false,
            duration_ms: None,
            targets: None,
            times: None,
        })
        .await
        .unwrap();
    env.apply(&process_job(
        "flaky",
        "  retry: {limit: 2, backoffSeconds: 0}\n",
    ))
    .await;
    let o = env
        .wait_for::<ProcessJob>("flaky", WAIT, |o| {
            status(o).phase == Some(Phase::Failed) && run_of(o).retries == 2
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.creates(System::Gsekit).await,
        3,
        "1 + 2 retries, then no more"
    );
    assert_eq!(status(&o).history.len(), 3);
    env.stop().await;
}

#[tokio::test]
async fn deleting_with_cancel_policy_cancels_then_lets_go() {
    let env = Env::with(
        "delete",
        EnvOptions {
            job_ms: 20_000,
            ..EnvOptions::default()
        },
    )
    .await;
    env.apply(&agent_job("doomed", "  deletionPolicy: Cancel\n"))
        .await;
    env.wait_for::<AgentJob>("doomed", WAIT, |o| {
        run_of(o).job_id.is_some()
            && o.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == "bkops.io/cleanup")
    })
    .await;
    env.api::<AgentJob>()
        .delete("doomed", &Default::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while env
        .api::<AgentJob>()
        .get_opt("doomed")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the object was not released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(env.calls(System::Nodeman, "cancel").await, 1);
    assert_eq!(env.creates(System::Nodeman).await, 1);
    env.stop().await;
}

#[tokio::test]
async fn bad_specs_and_missing_secrets_make_no_call() {
    let env = Env::start("no-call").await;
    env.apply(&taskflow(
        "both",
        "  pipelineTree: {start_event: {}, end_event: {}, activities: {}, flows: {}}\n",
    ))
    .await;
    env.apply(
        "apiVersion: bkops.io/v1alpha1\nkind: BkConnection\nmetadata: {name: no-secret}\nspec:\n  esbUrl: http://127.0.0.1:9/\n  credentialsSecretRef: {name: missing}\n",
    )
    .await;
    env.apply(&agent_job("orphan", "  connectionRef: {name: no-secret}\n"))
        .await;
    env.apply(&agent_job(
        "elsewhere",
        "  connectionRef: {name: blueking, namespace: kube-system}\n",
    ))
    .await;
    env.apply(&execute_job(
        "nowhere",
        "  connectionRef: {name: does-not-exist}\n",
    ))
    .await;
    let both = env.wait_phase::<Taskflow>("both", Phase::Failed).await;
    assert!(
        status(&both)
            .message
            .unwrap()
            .contains("exactly one of templateId or pipelineTree")
    );
    assert_eq!(condition(&both, "Stalled").as_deref(), Some("True"));
    let orphan = env.wait_phase::<AgentJob>("orphan", Phase::Failed).await;
    assert!(
        status(&orphan)
            .message
            .unwrap()
            .contains("Secret \"missing\""),
        "{:?}",
        status(&orphan).message
    );
    let elsewhere = env.wait_phase::<AgentJob>("elsewhere", Phase::Failed).await;
    assert!(
        status(&elsewhere)
            .message
            .unwrap()
            .contains("only the object's own namespace")
    );
    let reason = |o: &AgentJob| {
        status(o)
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .map(|c| c.reason.clone())
    };
    assert_eq!(reason(&orphan).as_deref(), Some("SecretNotFound"));
    assert_eq!(
        reason(&elsewhere).as_deref(),
        Some("CrossNamespaceReference")
    );
    let nowhere = env.wait_phase::<ExecuteJob>("nowhere", Phase::Failed).await;
    assert!(status(&nowhere).message.unwrap().contains("not found"));
    assert_eq!(
        env.control.calls().await.unwrap().total,
        0,
        "no BlueKing call at all"
    );
    env.stop().await;
}

#[tokio::test]
async fn rate_limits_and_5xx_while_polling_still_finish() {
    let env = Env::with(
        "flaky-polls",
        EnvOptions {
            job_ms: 2500,
            ..EnvOptions::default()
        },
    )
    .await;
    for (system, action) in [
        (SystemSel::Nodeman, FaultAction::RateLimit),
        (
            SystemSel::Job,
            FaultAction::HttpStatus {
                status: 502,
                code: None,
            },
        ),
    ] {
        env.control
            .add_fault(&FaultRule {
                system,
                endpoint: "status".into(),
                action,
                times: Some(4),
            })
            .await
            .unwrap();
    }
    env.control
        .add_fault(&FaultRule {
            system: SystemSel::Nodeman,
            endpoint: "detail".into(),
            action: FaultAction::RateLimit,
            times: Some(4),
        })
        .await
        .unwrap();
    env.apply(&agent_job("limited", "")).await;
    env.apply(&execute_job("gateway-errors", "")).await;
    env.wait_phase::<AgentJob>("limited", Phase::Succeeded)
        .await;
    env.wait_phase::<ExecuteJob>("gateway-errors", Phase::Succeeded)
        .await;
    assert_eq!(env.creates(System::Nodeman).await, 1);
    assert_eq!(env.creates(System::Job).await, 1);
    env.stop().await;
}

#[tokio::test]
async fn an_ambiguous_create_is_found_and_adopted_not_resubmitted() {
    let env = Env::start("ambiguous").await;
    // The create commits but its answer is lost: for BKFlow (run key in the task name) and
    // NodeMan (found by type, creator and time window).
    for system in [SystemSel::Bkflow, SystemSel::Nodeman] {
        env.control
            .add_fault(&FaultRule {
                system,
                endpoint: "create".into(),
                action: FaultAction::CommitThenDrop,
                times: Some(1),
            })
            .await
            .unwrap();
    }
    env.apply(&taskflow("lost-answer", "")).await;
    env.apply(&agent_job("lost-answer", "")).await;
    let t = env
        .wait_phase::<Taskflow>("lost-answer", Phase::Succeeded)
        .await;
    let a = env
        .wait_phase::<AgentJob>("lost-answer", Phase::Succeeded)
        .await;
    assert!(run_of(&t).adopted && run_of(&a).adopted, "found by search");
    assert_eq!(env.creates(System::Bkflow).await, 1);
    assert_eq!(env.creates(System::Nodeman).await, 1);
    assert_eq!(
        env.calls(System::Bkflow, "start").await,
        1,
        "the found task was started once"
    );
    env.stop().await;
}

#[tokio::test]
async fn an_unknown_submission_waits_for_a_person() {
    let env = Env::start("unknown").await;
    // The search concludes once the create's own timeout has passed.
    env.short_create_timeout().await;
    // A 502 on the create: the job may or may not exist; here it does not.
    env.control
        .add_fault(&FaultRule {
            system: SystemSel::Job,
            endpoint: "create".into(),
            action: FaultAction::HttpStatus {
                status: 502,
                code: None,
            },
            times: Some(1),
        })
        .await
        .unwrap();
    env.apply(&execute_job("unclear", "")).await;
    let o = env
        .wait_phase::<ExecuteJob>("unclear", Phase::Unknown)
        .await;
    let key = run_of(&o).key;
    assert!(
        status(&o)
            .message
            .unwrap()
            .contains("bkops.io/confirm-not-submitted")
    );
    assert_eq!(condition(&o, "Stalled").as_deref(), Some("True"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.creates(System::Job).await,
        1,
        "never resubmitted on its own"
    );
    // A person confirms nothing was submitted: exactly one more create.
    let patch =
        serde_json::json!({"metadata": {"annotations": {"bkops.io/confirm-not-submitted": key}}});
    env.api::<ExecuteJob>()
        .patch(
            "unclear",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    env.wait_phase::<ExecuteJob>("unclear", Phase::Succeeded)
        .await;
    assert_eq!(env.creates(System::Job).await, 2);
    env.stop().await;
}

/// A real `bkops run` process for this environment's namespace.
struct OperatorProcess(std::process::Child);

impl OperatorProcess {
    async fn spawn(env: &Env) -> OperatorProcess {
        let cp = support::control_plane().await;
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_bkops"))
            .args([
                "run",
                "--leader-elect=false",
                "--metrics-addr",
                "127.0.0.1:0",
                "--default-connection",
                "blueking",
            ])
            .args([
                "--namespaces",
                env.ns.name(),
                "--resolve-grace-seconds",
                "3",
            ])
            .args(["--poll-initial-seconds", "0.3", "--poll-max-seconds", "1"])
            .arg("--kubeconfig")
            .arg(cp.kubeconfig_path())
            .env("RUST_LOG", "bkops=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("bkops run starts");
        OperatorProcess(child)
    }

    /// SIGKILL: no chance to clean up, as in a node crash or an OOM kill.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn no_operator() -> EnvOptions {
    EnvOptions {
        operator: false,
        ..EnvOptions::default()
    }
}

#[tokio::test]
async fn killed_after_the_intent_the_restarted_operator_never_creates_twice() {
    let env = Env::with("crash-intent", no_operator()).await;
    env.short_create_timeout().await;
    // The create hangs before it commits; the operator is killed while it waits.
    env.control
        .add_fault(&FaultRule {
            system: SystemSel::Nodeman,
            endpoint: "create".into(),
            action: FaultAction::DelayMs(8_000),
            times: Some(1),
        })
        .await
        .unwrap();
    let first = OperatorProcess::spawn(&env).await;
    env.apply(&agent_job("crash", "")).await;
    env.wait_for::<AgentJob>("crash", WAIT, |o| run_of(o).phase == Phase::Submitting)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill();
    let _second = OperatorProcess::spawn(&env).await;
    // Whether the hung create committed after all decides between adopting it and Unknown;
    // either way there is never a second create.
    env.wait_for::<AgentJob>("crash", WAIT, |o| {
        matches!(
            status(o).phase,
            Some(Phase::Unknown) | Some(Phase::Succeeded)
        )
    })
    .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        env.creates(System::Nodeman).await,
        1,
        "exactly one create call"
    );
    let jobs = env.control.jobs().await.unwrap();
    assert!(jobs.len() <= 1, "at most one job exists: {jobs:?}");
    let o = env.api::<AgentJob>().get("crash").await.unwrap();
    match status(&o).phase {
        Some(Phase::Unknown) => assert!(jobs.is_empty(), "Unknown only when nothing was found"),
        Some(Phase::Succeeded) | Some(Phase::Running) => assert!(run_of(&o).adopted),
        other => panic!("unexpected phase {other:?}: {:?}", status(&o)),
    }

    env.stop().await;
}

#[tokio::test]
async fn killed_after_a_create_that_committed_the_job_is_adopted() {
    let env = Env::with("crash-commit", no_operator()).await;
    // The create commits at once but its answer is held back for 60 s.
    env.control
        .add_fault(&FaultRule {
            system: SystemSel::Bkflow,
            endpoint: "create".into(),
            action: FaultAction::CommitThenTimeout { delay_ms: 60_000 },
            times: Some(1),
        })
        .await
        .unwrap();
    let first = OperatorProcess::spawn(&env).await;
    env.apply(&taskflow("crash", "")).await;
    env.wait_for::<Taskflow>("crash", WAIT, |o| run_of(o).phase == Phase::Submitting)
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while env.control.jobs().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the create never reached the simulator"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill();
    let _second = OperatorProcess::spawn(&env).await;
    let o = env.wait_phase::<Taskflow>("crash", Phase::Succeeded).await;
    assert!(
        run_of(&o).adopted,
        "the restarted operator found the job by its run key"
    );
    assert_eq!(env.creates(System::Bkflow).await, 1);
    assert_eq!(env.control.jobs().await.unwrap().len(), 1);
    env.stop().await;
}

#[tokio::test]
async fn two_operators_at_once_create_each_run_once() {
    let env = Env::with("two-operators", no_operator()).await;
    let _a = OperatorProcess::spawn(&env).await;
    let _b = OperatorProcess::spawn(&env).await;
    let mut yaml = String::new();
    for i in 0..5 {
        yaml.push_str(&format!("{}\n---\n", agent_job(&format!("a{i}"), "")));
        yaml.push_str(&format!("{}\n---\n", taskflow(&format!("t{i}"), "")));
        yaml.push_str(&format!("{}\n---\n", process_job(&format!("p{i}"), "")));
        yaml.push_str(&format!("{}\n---\n", execute_job(&format!("e{i}"), "")));
    }
    env.apply(&yaml).await;
    for i in 0..5 {
        env.wait_phase::<AgentJob>(&format!("a{i}"), Phase::Succeeded)
            .await;
        env.wait_phase::<Taskflow>(&format!("t{i}"), Phase::Succeeded)
            .await;
        env.wait_phase::<ProcessJob>(&format!("p{i}"), Phase::Succeeded)
            .await;
        env.wait_phase::<ExecuteJob>(&format!("e{i}"), Phase::Succeeded)
            .await;
    }
    for system in [System::Nodeman, System::Bkflow, System::Gsekit, System::Job] {
        assert_eq!(
            env.creates(system).await,
            5,
            "{system:?}: one create per run"
        );
    }
    env.stop().await;
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let mut env = Env::with("metrics", no_operator()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = env.operator_config();
    config.metrics_addr = Some(format!("127.0.0.1:{port}").parse().unwrap());
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(bkops::controller::run(
        env.ns.client(),
        config,
        token.clone(),
    ));
    env.apply(&process_job("measured", "")).await;
    env.wait_phase::<ProcessJob>("measured", Phase::Succeeded)
        .await;
    // One Event per phase change, published off the reconcile path: they arrive shortly after.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.ns.client(), env.ns.name());
    let deadline = tokio::time::Instant::now() + WAIT;
    let reasons = loop {
        let mut reasons: Vec<String> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("measured"))
            .filter_map(|e| e.reason)
            .collect();
        reasons.sort();
        if reasons.len() >= 3 || tokio::time::Instant::now() > deadline {
            break reasons;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reasons, ["Running", "Submitting", "Succeeded"]);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"bkops_runs{kind="ProcessJob",phase="Succeeded"} 1"#,
        r#"bkops_submissions_total{kind="ProcessJob",outcome="submitted"} 1"#,
        r#"bkops_bk_calls_total{system="gsekit",call="create",outcome="ok"} 1"#,
        r#"bkops_phase_transitions_total{kind="ProcessJob",phase="Succeeded"} 1"#,
        r#"bkops_events_total{outcome="published"} 3"#,
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    assert!(!text.contains("measured"), "no object names in labels");
    // The waits for the connection's rate limit, by connection and class: the create is a job call.
    let waits = format!(
        r#"bkops_bk_call_wait_seconds_count{{connection="{}/"#,
        env.ns.name()
    );
    let job_waits: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&waits) && l.contains(r#"class="job"}"#))
        .collect();
    assert_eq!(job_waits.len(), 1, "one connection, one job class:\n{text}");
    let count: f64 = job_waits[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        count >= 1.0,
        "the create waited (if briefly): {}",
        job_waits[0]
    );
    token.cancel();
    task.await.unwrap().unwrap();
    env.stop_operator().await;
    env.stop().await;
}

#[tokio::test]
async fn sigterm_stops_the_operator_cleanly() {
    let env = Env::with("sigterm", no_operator()).await;
    let mut op = OperatorProcess::spawn(&env).await;
    env.apply(&process_job("before-stop", "")).await;
    env.wait_phase::<ProcessJob>("before-stop", Phase::Succeeded)
        .await;
    let pid = op.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = op.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bkops run did not stop within 20 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(code.success(), "exit status after SIGTERM: {code:?}");
    env.stop().await;
}

#[tokio::test]
async fn adopt_job_id_follows_an_existing_job_without_creating_one() {
    let env = Env::start("adopt").await;
    env.apply(&process_job("original", "")).await;
    let original = env
        .wait_phase::<ProcessJob>("original", Phase::Succeeded)
        .await;
    let job_id = run_of(&original).job_id.unwrap();
    env.apply(&process_job(
        "follower",
        &format!("  adoptJobId: \"{job_id}\"\n"),
    ))
    .await;
    let follower = env
        .wait_phase::<ProcessJob>("follower", Phase::Succeeded)
        .await;
    assert!(run_of(&follower).adopted);
    assert_eq!(run_of(&follower).job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(
        env.creates(System::Gsekit).await,
        1,
        "adopting makes no create"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_decision_on_a_stale_copy_never_overwrites_the_object() {
    // Under load the operator's cache can lag its own writes by seconds. A reconcile of a copy
    // from before the job id was written sees "Submitting, no job id" and searches BlueKing; for
    // JOB (no run key to search by) that finds every recent job. Its verdict must not land on an
    // object that has moved on: the job would be lost behind an `Unknown` that never was.
    let mut env = Env::start("stale-copy").await;
    let created = env.apply(&execute_job("stale", "")).await;
    let running = env
        .wait_for::<ExecuteJob>("stale", WAIT, |o| run_of(o).job_id.is_some())
        .await;
    // Another JOB job in the search window makes the verdict "ambiguous" (Unknown).
    env.apply(&execute_job("other", "")).await;
    env.wait_for::<ExecuteJob>("other", WAIT, |o| run_of(o).job_id.is_some())
        .await;
    env.stop_operator().await;
    let before = env.api::<ExecuteJob>().get("stale").await.unwrap();
    let searches = env.calls(System::Job, "list").await;

    // The copy a lagging cache would hold: the intent written, the job id not yet, at an older
    // resourceVersion.
    let mut stale = before.clone();
    stale.metadata.resource_version = created[0].metadata.resource_version.clone();
    let seen = stale.status.as_mut().expect("a status");
    seen.phase = Some(Phase::Submitting);
    let run = seen.run.as_mut().expect("a run");
    run.phase = Phase::Submitting;
    run.job_id = None;
    run.job_url = None;
    run.submitted_at = None;
    run.completion_time = None;
    // Past the grace window, so the search's verdict (two jobs of the same plan: ambiguous) is
    // written, not waited on.
    run.intent_at = Some(chrono::Utc::now() - chrono::Duration::minutes(10));

    // A fresh operator context (nothing in memory) reconciles the copy from before the id write.
    let ctx = bkops::controller::Context::new(
        env.ns.client(),
        env.operator_config(),
        std::sync::Arc::new(bkops::controller::metrics::Metrics::default()),
    );
    let outcome = bkops::run::act::Reconciler::new(&ctx.life, stale, "ExecuteJob")
        .expect("a named object")
        .run()
        .await;
    let err = outcome.expect_err("the write of a decision on a stale copy is refused");
    assert_eq!(err.category(), "conflict", "{err}");
    assert!(
        env.calls(System::Job, "list").await > searches,
        "the stale copy did lead to a search (the scenario is real)"
    );

    let after = env.api::<ExecuteJob>().get("stale").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "nothing was written"
    );
    assert_eq!(run_of(&after).job_id, run_of(&running).job_id);
    assert_ne!(status(&after).phase, Some(Phase::Unknown));
    assert_eq!(env.creates(System::Job).await, 2, "one create per object");
    env.stop().await;
}

/// The create's token is taken before the intent (a create is made only right after its intent
/// landed). With the token taken after it, each create would wait for the limit after its
/// intent, and an operator stopped in that wait would leave runs Submitting with no job:
/// Unknown.
#[tokio::test]
async fn behind_a_tight_rate_limit_each_create_follows_its_intent_at_once() {
    let env = Env::start("tight-limit").await;
    // The env's default connection, with one call a second.
    let (_, tight) = bkops::bench::workload::connection(env.sim.base_url().as_str(), 1, 1, 8);
    env.apply(&tight.to_string()).await;
    let names = ["tight-a", "tight-b", "tight-c", "tight-d"];
    for name in names {
        env.apply(&process_job(name, "")).await;
    }
    let mut runs = Vec::new();
    for name in names {
        let job = env.wait_phase::<ProcessJob>(name, Phase::Succeeded).await;
        runs.push(run_of(&job));
    }
    let jobs = env.control.jobs().await.unwrap();
    let mut gaps = Vec::new();
    for run in runs {
        let id: u64 = run.job_id.as_deref().unwrap().parse().unwrap();
        let created = jobs
            .iter()
            .find(|j| j.system == System::Gsekit && j.id == id)
            .map(|j| chrono::DateTime::parse_from_rfc3339(&j.created_at).unwrap())
            .unwrap();
        let gap = created.with_timezone(&chrono::Utc) - run.intent_at.unwrap();
        gaps.push(gap.as_seconds_f64());
    }
    assert_eq!(env.creates(System::Gsekit).await, 4);
    // The tokens themselves come a second apart: the creates do too, each right after its intent.
    assert!(
        gaps.iter().all(|g| *g < 0.8),
        "intent → create (s): {gaps:?}"
    );
    env.stop().await;
}

/// What bkops refuses itself, before any call, says so: `InvalidSpec` for a job type no NodeMan
/// operate call runs, `ConnectionUnsupported` (naming the connection and what to change) for a
/// call the connection cannot make. Never `SubmissionRejected`, which would send a person to
/// BlueKing's logs for a call that was never made.
#[tokio::test]
async fn bkops_own_refusals_make_no_call_and_say_whose_they_are() {
    let env = Env::start("refusals").await;
    env.apply(&agent_job("debug", "").replace("RESTART_AGENT", "DEBUG_PLUGIN"))
        .await;
    env.apply(
        &agent_job("push-config", "  pluginParams: {name: bkmonitorbeat}\n")
            .replace("RESTART_AGENT", "PUSH_CONFIG_PLUGIN"),
    )
    .await;
    env.apply(
        "apiVersion: bkops.io/v1alpha1\nkind: ExecuteJob\nmetadata: {name: v2-gateway}\nspec:\n  connectionRef: {name: blueking}\n  jobApi: v2\n  bkBizId: 1\n  bkJobId: 100\n",
    )
    .await;
    // A connection that reaches JOB through the ESB and nothing else.
    let base = env.sim.base_url();
    env.apply(&format!(
        "apiVersion: bkops.io/v1alpha1\nkind: BkConnection\nmetadata: {{name: job-only}}\nspec:\n  esbUrl: \"{base}\"\n  job: {{mode: esb}}\n  bkflowSpaceId: 1\n  credentialsSecretRef: {{name: blueking-credentials}}\n"
    ))
    .await;
    env.apply(&taskflow(
        "no-bkflow",
        "  connectionRef: {name: job-only}\n",
    ))
    .await;

    let stalled = |s: &bkops::api::JobStatus| {
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .expect("Stalled condition");
        assert_eq!(c.status, "True");
        (c.reason.clone(), s.message.clone().unwrap_or_default())
    };
    for name in ["debug", "push-config"] {
        let o = env.wait_phase::<AgentJob>(name, Phase::Failed).await;
        let (reason, message) = stalled(&status(&o));
        assert_eq!(reason, "InvalidSpec", "{name}: {message}");
        assert!(
            message.contains("refused by bkops; nothing was sent to BlueKing")
                && message.contains("spec.jobType")
                && message.contains("NodeMan's operate calls do not run this job type"),
            "{name}: {message}"
        );
        assert!(run_of(&o).job_id.is_none(), "{name}: no job");
    }
    let ns = env.ns.name().to_owned();
    let v2 = env
        .wait_phase::<ExecuteJob>("v2-gateway", Phase::Failed)
        .await;
    let (reason, message) = stalled(&status(&v2));
    assert_eq!(reason, "ConnectionUnsupported", "{message}");
    assert!(
        message.contains(&format!("BkConnection \"{ns}/blueking\""))
            && message.contains("bkops refused the run, nothing was sent to BlueKing")
            && message.contains("jobApi: v3")
            && message.contains("job mode is esb"),
        "{message}"
    );
    let flow = env.wait_phase::<Taskflow>("no-bkflow", Phase::Failed).await;
    let (reason, message) = stalled(&status(&flow));
    assert_eq!(reason, "ConnectionUnsupported", "{message}");
    assert!(
        message.contains(&format!("BkConnection \"{ns}/job-only\""))
            && message.contains("no endpoint for BKFlow")
            && message.contains("nothing was sent to BlueKing"),
        "{message}"
    );
    assert_eq!(
        env.control.calls().await.unwrap().total,
        0,
        "no BlueKing call at all"
    );
    env.stop().await;
}

/// A Taskflow without `spec.name` is named after its object, up to 253 characters; BKFlow takes
/// 128. The name is cut to fit, the run key kept whole: the run succeeds, and a create whose
/// answer is lost is still found by its key (one create, adopted).
#[tokio::test]
async fn a_taskflow_with_the_longest_object_name_runs_and_is_found_by_its_key() {
    let env = Env::start("long-name").await;
    env.control
        .add_fault(&FaultRule {
            system: SystemSel::Bkflow,
            endpoint: "create".into(),
            action: FaultAction::CommitThenDrop,
            times: Some(1),
        })
        .await
        .unwrap();
    let name = "t".repeat(253);
    env.apply(&taskflow(&name, "  description: nightly\n"))
        .await;
    let t = env.wait_phase::<Taskflow>(&name, Phase::Succeeded).await;
    let run = run_of(&t);
    assert!(run.adopted, "found by its key after the lost answer");
    assert_eq!(env.creates(System::Bkflow).await, 1);
    let jobs = env.control.jobs().await.unwrap();
    let task = jobs
        .iter()
        .find(|j| j.system == System::Bkflow && Some(j.id.to_string()) == run.job_id)
        .expect("the task");
    let sent = task.created["name"].as_str().unwrap();
    assert_eq!(sent.chars().count(), 128, "{sent}");
    assert!(sent.ends_with(&format!("… [bkops:{}]", run.key)), "{sent}");
    assert_eq!(
        task.created["description"], "nightly",
        "the user's description, without the key"
    );
    env.stop().await;
}
