//! `kubectl bkops` (the binary called as `kubectl-bkops`) against the real API server, with the
//! operator and the simulator running: every command, and the errors a person meets.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bkops::api::{ExecuteJob, Phase, ProcessJob};

use bkops::sim::{FaultAction, FaultRule, System, SystemSel};
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
        "KIND/NAME",
        "kubectl-bkops",
    ] {
        assert!(help.contains(want), "no {want:?} in:\n{help}");
    }
    assert!(Path::new(&exe).exists());
}
