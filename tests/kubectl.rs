//! `kubectl bkops` (the binary called as `kubectl-bkops`) against the real API server, with the
//! operator and the simulator running: every command, and the errors a person meets.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bkops::api::{AgentJob, ExecuteJob, Phase, ProcessJob, Taskflow};

use bkops::run::JobKind;
use bkops::sim::{Behaviour, FaultAction, FaultRule, System, SystemSel};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use support::env::Env;
use support::{run_of, status};

const PROCESS_JOB: &str = r#"
apiVersion: bkops.io/v1alpha1
kind: ProcessJob
metadata: {name: restart}
spec:
  bkBizId: 2
  jobObject: process
  jobAction: restart
  scope: {bkSetEnv: "3", bkSetIds: [1]}
"#;

const EXECUTE_JOB: &str = r#"
apiVersion: bkops.io/v1alpha1
kind: ExecuteJob
metadata: {name: unclear}
spec:
  bkScopeType: biz
  bkScopeId: "2"
  jobPlanId: 1000
"#;

/// The plugin: the bkops binary linked as `kubectl-bkops`, talking to the test cluster.
struct Plugin {
    exe: PathBuf,
    kubeconfig: PathBuf,
    ns: String,
    _dir: tempfile::TempDir,
}

impl Plugin {
    async fn new(ns: &str) -> Plugin {
        let dir = tempfile::tempdir().expect("a temp dir");
        let exe = dir.path().join("kubectl-bkops");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bkops"), &exe).expect("linked");
        let kubeconfig = support::control_plane().await.kubeconfig_path().to_owned();
        Plugin {
            exe,
            kubeconfig,
            ns: ns.to_owned(),
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("NO_COLOR")
            .args(["-n", &self.ns])
            .args(args);
        c
    }

    /// Runs and returns (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().expect("kubectl-bkops runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "kubectl bkops {args:?} failed: {out}\n{err}");
        out
    }

    /// Like [`Plugin::run`], but awaits the plugin rather than blocking the test's runtime:
    /// for commands that call the simulator, which is served by that runtime.
    async fn call(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::from(self.command(args))
            .output()
            .await
            .expect("kubectl-bkops runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// [`Plugin::call`], expecting success; returns stdout.
    async fn call_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.call(args).await;
        assert!(ok, "kubectl bkops {args:?} failed: {out}\n{err}");
        out
    }

    /// [`Plugin::call`], expecting a failure; returns stderr.
    async fn call_fails(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.call(args).await;
        assert!(!ok, "kubectl bkops {args:?} should fail: {out}\n{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    /// The same plugin with a kubeconfig that acts as `user` (kubectl's `--as`), as a person
    /// whose own rights are those of `user` would run it.
    fn acting_as(&self, user: &str, groups: &[&str]) -> Plugin {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
        for u in config["users"].as_sequence_mut().expect("users") {
            u["user"]["as"] = user.into();
            u["user"]["as-groups"] = groups.iter().map(|g| serde_yaml::Value::from(*g)).collect();
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let exe = dir.path().join("kubectl-bkops");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bkops"), &exe).expect("linked");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config).expect("YAML"))
            .expect("written");
        Plugin {
            exe,
            kubeconfig,
            ns: self.ns.clone(),
            _dir: dir,
        }
    }
}

fn spec_field(obj: &impl serde::Serialize, field: &str) -> serde_json::Value {
    serde_json::to_value(obj).expect("JSON")["spec"][field].clone()
}

#[tokio::test]
async fn get_describe_rerun_suspend_resume_and_cancel_work_on_a_job() {
    let env = Env::start("kubectl-day2").await;
    let plugin = Plugin::new(env.ns.name()).await;
    env.apply(PROCESS_JOB).await;
    let done = env
        .wait_phase::<ProcessJob>("restart", Phase::Succeeded)
        .await;
    let job = run_of(&done).job_id.expect("a job id");

    // get: the table, in this namespace and in all.
    let out = plugin.ok(&["get"]);
    let row = out
        .lines()
        .find(|l| l.contains("restart"))
        .unwrap_or_default();
    assert!(
        out.starts_with("KIND")
            && row.starts_with("ProcessJob")
            && row.contains("Succeeded")
            && row.contains(&job),
        "{out}"
    );
    let out = plugin.ok(&["get", "-A"]);
    assert!(
        out.starts_with("NAMESPACE") && out.contains(env.ns.name()),
        "{out}"
    );
    let out = plugin.ok(&["get", "processjobs"]);
    assert!(out.contains("restart"), "{out}");
    let out = plugin.ok(&["get", "taskflow"]);
    assert!(!out.contains("restart"), "{out}");

    // get -w: the table first, then changes; stopped here.
    let mut watch = plugin
        .command(&["get", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("get -w runs");
    let stdout = watch.stdout.take().expect("stdout");
    let first = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .map(|l| l.unwrap_or_default())
            .collect::<Vec<_>>()
    });
    let first = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("get -w prints the table")
        .expect("read");
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(
        first[0].starts_with("KIND") && first[1].contains("restart"),
        "{first:?}"
    );

    // describe: the run, its job, and the Events.
    let out = plugin.ok(&["describe", "processjob/restart"]);
    for want in [
        "Name:       restart",
        "Kind:       ProcessJob",
        "Phase:      Succeeded",
        "Key:",
        &job,
        "Events:",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }

    // rerun: exactly one more create, and the run succeeds again.
    let before = env.creates(System::Gsekit).await;
    let out = plugin.ok(&["rerun", "processjob/restart"]);
    assert!(out.contains("rerun requested"), "{out}");
    let again = env
        .wait_for::<ProcessJob>("restart", Duration::from_secs(30), |o| {
            status(o).phase == Some(Phase::Succeeded) && run_of(o).job_id.as_deref() != Some(&job)
        })
        .await;
    assert_eq!(env.creates(System::Gsekit).await, before + 1);
    assert_eq!(
        status(&again).history.len(),
        2,
        "the first run is in history"
    );

    // suspend / resume / cancel: the spec fields a person would set.
    plugin.ok(&["suspend", "processjob/restart"]);
    let obj = env.api::<ProcessJob>().get("restart").await.expect("get");
    assert_eq!(spec_field(&obj, "suspend"), serde_json::json!(true));
    plugin.ok(&["resume", "processjob/restart"]);
    let obj = env.api::<ProcessJob>().get("restart").await.expect("get");
    assert_eq!(spec_field(&obj, "suspend"), serde_json::Value::Null);
    let out = plugin.ok(&["cancel", "processjob/restart"]);
    assert!(out.contains("cancel requested"), "{out}");
    let obj = env.api::<ProcessJob>().get("restart").await.expect("get");
    assert_eq!(spec_field(&obj, "cancel"), serde_json::json!(true));
    assert_eq!(
        env.creates(System::Gsekit).await,
        before + 1,
        "no edit made a create"
    );

    // Errors say what is wrong.
    let (ok, _, err) = plugin.run(&["describe", "processjob/missing"]);
    assert!(
        !ok && err.contains("processjob/missing in namespace") && err.contains("not found"),
        "{err}"
    );
    let (ok, _, err) = plugin.run(&["describe", "pod/x"]);
    assert!(
        !ok && err.contains("\"pod\" is not a bkops job kind"),
        "{err}"
    );
    let (ok, _, err) = plugin.run(&["rerun", "restart"]);
    assert!(!ok && err.contains("expected KIND/NAME"), "{err}");
    env.stop().await;
}

#[tokio::test]
async fn runs_lists_the_records_that_outlive_a_deleted_job() {
    let env = Env::start("kubectl-runs").await;
    let plugin = Plugin::new(env.ns.name()).await;
    let (ok, _, err) = plugin.run(&["runs"]);
    assert!(ok && err.contains("No run records in namespace"), "{err}");
    env.apply(PROCESS_JOB).await;
    let done = env
        .wait_phase::<ProcessJob>("restart", Phase::Succeeded)
        .await;
    let job = run_of(&done).job_id.expect("a job id");
    let key = run_of(&done).key;
    // The record ends with the run.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = plugin.ok(&["runs"]);
        if out.contains("Succeeded") || std::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(
        out.starts_with("JOB")
            && row.starts_with("processjob/restart")
            && row.contains(&key)
            && row.contains("Succeeded")
            && row.contains(&job),
        "{out}"
    );
    let out = plugin.ok(&["describe", "processjob/restart"]);
    assert!(out.contains("Records:") && out.contains(&key), "{out}");

    // Deleted: the record stays, in this namespace and in all.
    env.api::<ProcessJob>()
        .delete("restart", &Default::default())
        .await
        .expect("delete");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env
        .api::<ProcessJob>()
        .get_opt("restart")
        .await
        .expect("get")
        .is_some()
    {
        assert!(std::time::Instant::now() < deadline, "never let go");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = plugin.ok(&["runs", "processjob/restart"]);
    assert!(out.contains(&key) && out.contains(&job), "{out}");
    let out = plugin.ok(&["runs", "-A"]);
    assert!(
        out.starts_with("NAMESPACE") && out.contains(env.ns.name()) && out.contains(&key),
        "{out}"
    );
    let (ok, _, err) = plugin.run(&["runs", "taskflow/restart"]);
    assert!(
        ok && err.contains("No run records of taskflow/restart"),
        "{err}"
    );
    let (ok, _, err) = plugin.run(&["runs", "pods/x"]);
    assert!(!ok && err.contains("not a bkops job kind"), "{err}");
    env.stop().await;
}

#[tokio::test]
async fn resolve_settles_only_an_unknown_run_and_not_submitted_makes_one_more_create() {
    let env = Env::start("kubectl-resolve").await;
    env.short_create_timeout().await;
    let plugin = Plugin::new(env.ns.name()).await;
    // The create answers 502: it may have happened, and no matching job exists, so the run ends
    // Unknown once the grace window has passed.
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
        .expect("fault");
    env.apply(EXECUTE_JOB).await;
    let unknown = env
        .wait_for::<ExecuteJob>("unclear", Duration::from_secs(60), |o| {
            status(o).phase == Some(Phase::Unknown)
        })
        .await;
    let key = run_of(&unknown).key;
    assert_eq!(env.creates(System::Job).await, 1);

    // A job id is a number; a run that is not Unknown is not resolved.
    let (ok, _, err) = plugin.run(&["resolve", "executejob/unclear", "--adopt", "abc"]);
    assert!(
        !ok && err.contains("a BlueKing job id is a number"),
        "{err}"
    );
    let (ok, _, err) = plugin.run(&["resolve", "executejob/unclear"]);
    assert!(
        !ok && err.contains("--not-submitted"),
        "one of the two is required: {err}"
    );

    let out = plugin.ok(&["resolve", "executejob/unclear", "--not-submitted"]);
    assert!(
        out.contains(&format!("run {key} confirmed not submitted")),
        "{out}"
    );
    let done = env
        .wait_for::<ExecuteJob>("unclear", Duration::from_secs(60), |o| {
            status(o).phase == Some(Phase::Succeeded)
        })
        .await;
    assert_ne!(run_of(&done).key, key, "a new attempt");
    assert_eq!(env.creates(System::Job).await, 2, "exactly one more create");

    let (ok, _, err) = plugin.run(&["resolve", "executejob/unclear", "--not-submitted"]);
    assert!(
        !ok && err.contains("is Succeeded with job")
            && err.contains("not Unknown: there is nothing to resolve"),
        "{err}"
    );
    assert_eq!(env.creates(System::Job).await, 2);
    env.stop().await;
}

const LOG_JOBS: &str = r#"
apiVersion: bkops.io/v1alpha1
kind: ProcessJob
metadata: {name: restart}
spec:
  bkBizId: 2
  jobObject: process
  jobAction: restart
  scope: {bkSetEnv: "3", bkSetIds: [1]}
---
apiVersion: bkops.io/v1alpha1
kind: Taskflow
metadata: {name: flow}
spec:
  connectionRef: {name: blueking}
  spaceId: 1
  templateId: 4
  creator: admin
---
apiVersion: bkops.io/v1alpha1
kind: AgentJob
metadata: {name: agents}
spec:
  connectionRef: {name: blueking-esb}
  jobType: RESTART_AGENT
  bkBizId: [2]
  excludeHosts: [1]
---
apiVersion: bkops.io/v1alpha1
kind: ExecuteJob
metadata: {name: deploy}
spec:
  connectionRef: {name: blueking}
  bkScopeType: biz
  bkScopeId: "2"
  jobPlanId: 1000
---
apiVersion: bkops.io/v1alpha1
kind: ExecuteJob
metadata: {name: legacy}
spec:
  connectionRef: {name: blueking-esb}
  jobApi: v2
  bkBizId: 2
  bkJobId: 100
"#;

/// The blocks of `logs` text output after its header: (first line, whole block).
fn blocks(out: &str) -> Vec<(String, String)> {
    out.split("\n\n")
        .skip(1)
        .map(|b| {
            (
                b.lines().next().unwrap_or_default().to_owned(),
                b.to_owned(),
            )
        })
        .collect()
}

/// `logs` of a job that failed on one target of `total`: every target is shown with its
/// status, the failed one first with its reason, and it is the target the status names.
async fn assert_logs<K: JobKind>(plugin: &Plugin, obj: &K, args: &[&str], total: usize) -> String {
    let out = plugin.call_ok(args).await;
    assert!(!out.contains("bkops-secret"), "no credentials: {out}");
    let run = run_of(obj);
    let failed = &run.failed_targets[0].target;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(args[1]) && lines[0].contains(&run.key),
        "header: {out}"
    );
    assert_eq!(
        lines[1],
        format!("{total} targets: 1 failed, {} succeeded", total - 1),
        "{out}"
    );
    let blocks = blocks(&out);
    assert_eq!(blocks.len(), total, "one block per target: {out}");
    assert!(
        blocks[0].0.starts_with(&format!("{failed}  Failed  ")),
        "the failed target first: {out}"
    );
    assert!(
        blocks[0].1.contains("\n  reason: "),
        "with its reason: {out}"
    );
    for (head, _) in &blocks[1..] {
        assert!(head.contains("  Succeeded  "), "{head}: {out}");
    }
    out
}

#[tokio::test]
async fn logs_show_every_target_of_every_kind_failures_first() {
    let env = Env::start("kubectl-logs").await;
    let plugin = Plugin::new(env.ns.name()).await;
    for (system, times) in [
        (System::Gsekit, 1),
        (System::Bkflow, 1),
        (System::Nodeman, 1),
        (System::Job, 2),
    ] {
        env.control
            .set_behaviour(&Behaviour {
                system,
                failed_targets: Some(1),
                wait_for_user: false,
                duration_ms: None,
                targets: Some(3),
                times: Some(times),
            })
            .await
            .expect("behaviour");
    }
    env.apply(LOG_JOBS).await;
    let pj = env.wait_phase::<ProcessJob>("restart", Phase::Failed).await;
    let tf = env.wait_phase::<Taskflow>("flow", Phase::Failed).await;
    let aj = env.wait_phase::<AgentJob>("agents", Phase::Failed).await;
    let ej = env.wait_phase::<ExecuteJob>("deploy", Phase::Failed).await;
    let legacy = env.wait_phase::<ExecuteJob>("legacy", Phase::Failed).await;

    // A job without connectionRef uses the operator's default, which the plugin cannot see.
    let err = plugin.call_fails(&["logs", "processjob/restart"]).await;
    assert!(
        err.contains("--connection NAME") && err.contains("one of: blueking, blueking-esb"),
        "{err}"
    );
    let out = assert_logs(
        &plugin,
        &pj,
        &["logs", "processjob/restart", "--connection", "blueking"],
        3,
    )
    .await;
    assert!(
        out.contains("  Failed  failed (err_code 3)") && out.contains("进程启动超时"),
        "{out}"
    );

    let out = assert_logs(&plugin, &tf, &["logs", "taskflow/flow"], 3).await;
    assert!(
        out.contains("  Failed  FAILED") && out.contains("simulated plugin error"),
        "{out}"
    );

    // NodeMan over ESB: each host's steps with their logs.
    let out = assert_logs(&plugin, &aj, &["logs", "agentjob/agents"], 3).await;
    let failed = &blocks(&out)[0].1;
    assert!(
        failed.contains("  step '重启Agent': FAILED")
            && failed.contains("[sim] 执行失败: 命令返回非零")
            && failed.contains("  step '查询Agent状态': PENDING"),
        "{out}"
    );

    // JOB v3 through the gateway and v2 through ESB: per host, per step, status and log.
    for (obj, name) in [(&ej, "executejob/deploy"), (&legacy, "executejob/legacy")] {
        let out = assert_logs(&plugin, obj, &["logs", name], 3).await;
        let b = blocks(&out);
        assert!(
            b[0].1
                .contains("host status 104 (script exited non-zero), exit code 1")
                && b[0].1.contains("job_start")
                && b[0].1.contains("[sim] error: command failed"),
            "{out}"
        );
        assert!(
            b[1].1.contains("host status 9 (success)") && b[1].1.contains("done"),
            "{out}"
        );
    }
    assert!(env.calls(System::Job, "log").await >= 2);
    assert!(env.calls(System::Nodeman, "log").await >= 3);

    // --target: by the name the status gives, by IP, process name or node id.
    let failed = run_of(&ej).failed_targets[0].target.clone();
    let out = plugin
        .call_ok(&["logs", "executejob/deploy", "--target", &failed])
        .await;
    assert_eq!(blocks(&out).len(), 1, "{out}");
    assert!(out.contains("1 target: 1 failed"), "{out}");
    let out = plugin
        .call_ok(&[
            "logs",
            "processjob/restart",
            "--connection",
            "blueking",
            "--target",
            "sim-proc-1",
        ])
        .await;
    let b = blocks(&out);
    assert!(
        b.len() == 1 && b[0].0.contains("sim-proc-1  Succeeded"),
        "{out}"
    );
    let err = plugin
        .call_fails(&["logs", "agentjob/agents", "--target", "10.9.9.9"])
        .await;
    assert!(
        err.contains("has no target \"10.9.9.9\"; its targets: ")
            && err.contains(&run_of(&aj).failed_targets[0].target),
        "{err}"
    );

    // -o json, and --run of the current run; an unknown run names the known ones.
    let out = plugin
        .call_ok(&[
            "logs",
            "taskflow/flow",
            "-o",
            "json",
            "--run",
            &run_of(&tf).key,
        ])
        .await;
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["system"], "bkflow");
    assert_eq!(doc["targets"].as_array().map(Vec::len), Some(3));
    assert_eq!(doc["targets"][0]["outcome"], "Failed");
    assert!(doc["targets"][0]["reason"].is_string(), "{doc}");
    let err = plugin
        .call_fails(&["logs", "taskflow/flow", "--run", "nope"])
        .await;
    assert!(
        err.contains(&format!("no run nope; its runs: {}", run_of(&tf).key)),
        "{err}"
    );
    env.stop().await;
}

#[tokio::test]
async fn logs_say_clearly_what_stands_in_the_way() {
    let env = Env::start("kubectl-logs-errors").await;
    let ns = env.ns.name().to_owned();
    let plugin = Plugin::new(&ns).await;
    env.apply(
        r#"
apiVersion: bkops.io/v1alpha1
kind: AgentJob
metadata: {name: agents}
spec:
  connectionRef: {name: blueking}
  jobType: RESTART_AGENT
  bkBizId: [2]
  excludeHosts: [1]
---
apiVersion: bkops.io/v1alpha1
kind: ProcessJob
metadata: {name: later}
spec:
  suspend: true
  bkBizId: 2
  jobObject: process
  jobAction: restart
  scope: {bkSetEnv: "3", bkSetIds: [1]}
"#,
    )
    .await;
    env.apply(PROCESS_JOB).await;
    env.wait_phase::<AgentJob>("agents", Phase::Succeeded).await;
    env.wait_phase::<ProcessJob>("restart", Phase::Succeeded)
        .await;
    plugin.call_ok(&["logs", "agentjob/agents"]).await;

    // No run yet.
    let err = plugin
        .call_fails(&["logs", "processjob/later", "--connection", "blueking"])
        .await;
    assert!(err.contains("processjob/later: it has no run yet"), "{err}");

    // A connection that does not exist.
    let err = plugin
        .call_fails(&["logs", "processjob/restart", "--connection", "x"])
        .await;
    assert!(
        err.contains(&format!("BkConnection \"x\" not found in namespace {ns}")),
        "{err}"
    );

    // BlueKing refuses the log call: its message, and no output.
    env.control
        .add_fault(&FaultRule {
            system: SystemSel::Nodeman,
            endpoint: "log".into(),
            action: FaultAction::Reject {
                code: 3801099,
                message: Some("simulated log outage".into()),
            },
            times: Some(1),
        })
        .await
        .expect("fault");
    let (ok, out, err) = plugin.call(&["logs", "agentjob/agents"]).await;
    assert!(
        !ok && out.is_empty()
            && err.contains("agentjob/agents: reading run")
            && err.contains("NodeMan job_log")
            && err.contains("simulated log outage"),
        "{out}\n{err}"
    );
    plugin.call_ok(&["logs", "agentjob/agents"]).await;

    // A person who may read the jobs and connections but not Secrets.
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("reader".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    env.ns
        .api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .expect("ServiceAccount");
    let role = Role {
        metadata: ObjectMeta {
            name: Some("bkops-reader".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["bkops.io".into()]),
            resources: Some(
                [
                    "processjobs",
                    "taskflows",
                    "agentjobs",
                    "executejobs",
                    "bkconnections",
                    "bkruns",
                ]
                .map(String::from)
                .to_vec(),
            ),
            verbs: ["get", "list", "watch"].map(String::from).to_vec(),
            ..PolicyRule::default()
        }]),
    };
    env.ns
        .api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("Role");
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("bkops-reader".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "bkops-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(ns.clone()),
            ..Subject::default()
        }]),
    };
    env.ns
        .api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("RoleBinding");
    let user = format!("system:serviceaccount:{ns}:reader");
    let reader = plugin.acting_as(&user, &["system:serviceaccounts", "system:authenticated"]);
    // The binding takes effect shortly; until then even reading the job is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !reader.call(&["describe", "agentjob/agents"]).await.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the binding never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = reader.call_fails(&["logs", "agentjob/agents"]).await;
    assert!(
        err.contains("Secret \"blueking-credentials\"")
            && err.contains("of BkConnection \"blueking\"")
            && err.contains(&format!("in namespace {ns}"))
            && err.contains("`get secrets`"),
        "{err}"
    );
    assert!(
        !err.contains("bkops-secret"),
        "no credentials printed: {err}"
    );
    env.stop().await;
}

#[test]
fn the_plugin_has_its_own_help() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let exe = dir.path().join("kubectl-bkops");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bkops"), &exe).expect("linked");
    let out = Command::new(&exe).arg("--help").output().expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for want in [
        "kubectl bkops",
        "get",
        "describe",
        "rerun",
        "cancel",
        "suspend",
        "resume",
        "resolve",
        "logs",
        "KIND/NAME",
        "kubectl-bkops",
    ] {
        assert!(help.contains(want), "no {want:?} in:\n{help}");
    }
    assert!(Path::new(&exe).exists());
}
