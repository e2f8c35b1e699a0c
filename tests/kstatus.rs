//! The statuses bkops writes, against the kstatus rules (what Flux, `kubectl wait` and Argo CD
//! read), in every phase: Pending, Submitting, Running, WaitingForUser, Succeeded, Failed,
//! Cancelled, Suspended, Unknown and an invalid spec. Every status snapshot seen while polling is
//! checked, not just the last one, and the real `kubectl wait` and `kubectl get bkops` are run
//! against the objects.

mod support;

use std::time::Duration;

use bkops::api::common::Phase;
use bkops::sim::{Behaviour, FaultAction, FaultRule, System, SystemSel};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;
use support::control_plane;
use support::env::{Env, EnvOptions, api_resource};

/// What kstatus concludes about a resource (the subset bkops can produce).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kstatus {
    InProgress,
    Failed,
    Current,
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn condition_status<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    condition(obj, type_).and_then(|c| c["status"].as_str())
}

/// kstatus' generic rules (sigs.k8s.io/cli-utils/pkg/kstatus/status, `checkGenericProperties`,
/// then the default for kinds it has no special rules for): a deleted object is Terminating (not
/// used here); an `observedGeneration` behind `metadata.generation` is InProgress;
/// `Reconciling=True` is InProgress; `Stalled=True` is Failed; anything else is Current (tools
/// waiting for success, like `kubectl wait` and Argo CD, also want `Ready=True`).
fn kstatus(obj: &Value) -> Kstatus {
    let generation = obj["metadata"]["generation"].as_i64();
    if let Some(observed) = obj["status"]["observedGeneration"].as_i64()
        && Some(observed) != generation
    {
        return Kstatus::InProgress;
    }
    if condition_status(obj, "Reconciling") == Some("True") {
        return Kstatus::InProgress;
    }
    if condition_status(obj, "Stalled") == Some("True") {
        return Kstatus::Failed;
    }
    Kstatus::Current
}

fn phase_of(obj: &Value) -> Option<Phase> {
    serde_json::from_value(obj["status"]["phase"].clone()).ok()
}

fn in_progress(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Pending | Phase::Submitting | Phase::Running | Phase::WaitingForUser
    )
}

fn stalled(phase: Phase) -> bool {
    matches!(phase, Phase::Failed | Phase::Cancelled | Phase::Unknown)
}

/// The kstatus verdict a settled object in `phase` must get.
fn expected_kstatus(phase: Phase) -> Kstatus {
    if in_progress(phase) {
        Kstatus::InProgress
    } else if stalled(phase) {
        Kstatus::Failed
    } else {
        Kstatus::Current
    }
}

/// The rules for one snapshot of an object whose status has a phase; `Err` says which broke.
fn check_snapshot(obj: &Value) -> Result<(), String> {
    let Some(phase) = phase_of(obj) else {
        return Ok(());
    };
    let generation = obj["metadata"]["generation"].as_i64();
    let observed = obj["status"]["observedGeneration"].as_i64();
    if observed.is_none() {
        return Err("no observedGeneration".into());
    }
    let ready = condition_status(obj, "Ready");
    let want_ready = if phase == Phase::Succeeded {
        "True"
    } else {
        "False"
    };
    if ready != Some(want_ready) {
        return Err(format!("{phase}: Ready is {ready:?}, want {want_ready}"));
    }
    let reconciling = condition_status(obj, "Reconciling");
    let want = in_progress(phase).then_some("True");
    if reconciling != want {
        return Err(format!(
            "{phase}: Reconciling is {reconciling:?}, want {want:?}"
        ));
    }
    let stalled_now = condition_status(obj, "Stalled");
    let want = stalled(phase).then_some("True");
    if stalled_now != want {
        return Err(format!(
            "{phase}: Stalled is {stalled_now:?}, want {want:?}"
        ));
    }
    for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
        if c["lastTransitionTime"].as_str().is_none_or(str::is_empty)
            || c["reason"].as_str().is_none_or(str::is_empty)
        {
            return Err(format!(
                "condition without lastTransitionTime or reason: {c}"
            ));
        }
        if !matches!(c["status"].as_str(), Some("True" | "False" | "Unknown")) {
            return Err(format!("condition status not True/False/Unknown: {c}"));
        }
    }
    let verdict = kstatus(obj);
    let want = if observed == generation {
        expected_kstatus(phase)
    } else {
        Kstatus::InProgress
    };
    if verdict != want {
        return Err(format!("{phase}: kstatus says {verdict:?}, want {want:?}"));
    }
    Ok(())
}

/// `lastTransitionTime` of a condition may move only when its status moves.
fn check_transition(before: &Value, after: &Value) -> Result<(), String> {
    for c in after["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let type_ = c["type"].as_str().unwrap_or_default();
        let Some(old) = condition(before, type_) else {
            continue;
        };
        if old["status"] == c["status"] && old["lastTransitionTime"] != c["lastTransitionTime"] {
            return Err(format!(
                "{type_} stayed {} but its lastTransitionTime moved from {} to {}",
                c["status"], old["lastTransitionTime"], c["lastTransitionTime"]
            ));
        }
        if old["status"] != c["status"]
            && old["lastTransitionTime"].as_str() > c["lastTransitionTime"].as_str()
        {
            return Err(format!(
                "{type_} changed but its lastTransitionTime went back"
            ));
        }
    }
    Ok(())
}

/// One object followed by polling: every distinct snapshot (by resourceVersion) is checked.
struct Follow {
    api: Api<DynamicObject>,
    name: String,
    snapshots: Vec<Value>,
}

impl Follow {
    fn new(env: &Env, kind: &str, name: &str) -> Follow {
        Follow {
            api: Api::namespaced_with(env.ns.client(), env.ns.name(), &api_resource(kind)),
            name: name.to_owned(),
            snapshots: Vec::new(),
        }
    }

    /// Polls (every 50 ms) until `done` holds for a snapshot, checking each new one. Panics with
    /// the snapshots on a broken rule or after `timeout`.
    async fn until(&mut self, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let obj = serde_json::to_value(self.api.get(&self.name).await.expect("get"))
                .expect("object is JSON");
            let new = self.snapshots.last().is_none_or(|last| {
                last["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]
            });
            if new {
                let checked = check_snapshot(&obj).and_then(|()| match self.snapshots.last() {
                    Some(last) => check_transition(last, &obj),
                    None => Ok(()),
                });
                if let Err(e) = checked {
                    panic!(
                        "{}: {e}\nsnapshot: {}\nphases so far: {:?}",
                        self.name,
                        serde_json::to_string_pretty(&obj["status"]).expect("JSON"),
                        self.phases()
                    );
                }
                self.snapshots.push(obj.clone());
            }
            if done(&obj) {
                return obj;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{}: not done in {timeout:?}; phases seen {:?}; status {}",
                    self.name,
                    self.phases(),
                    serde_json::to_string_pretty(&obj["status"]).expect("JSON")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Until the object is in `phase` and settled (observedGeneration caught up).
    async fn settled(&mut self, phase: Phase) -> Value {
        let obj = self
            .until(Duration::from_secs(45), |o| {
                phase_of(o) == Some(phase)
                    && o["status"]["observedGeneration"] == o["metadata"]["generation"]
            })
            .await;
        assert_eq!(kstatus(&obj), expected_kstatus(phase), "{}", self.name);
        obj
    }

    /// The phases seen, in order, without repeats.
    fn phases(&self) -> Vec<Phase> {
        let mut out: Vec<Phase> = Vec::new();
        for p in self.snapshots.iter().filter_map(phase_of) {
            if out.last() != Some(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Asserts that `wanted` were seen, in this order (others may come between).
    fn saw_in_order(&self, wanted: &[Phase]) {
        let seen = self.phases();
        let mut it = seen.iter();
        for w in wanted {
            assert!(
                it.any(|p| p == w),
                "{}: phases {seen:?} lack {wanted:?} in order",
                self.name
            );
        }
    }
}

fn fault(system: SystemSel, endpoint: &str, action: FaultAction) -> FaultRule {
    FaultRule {
        system,
        endpoint: endpoint.into(),
        action,
        times: Some(1),
    }
}

fn behaviour(system: System) -> Behaviour {
    Behaviour {
        system,
        failed_targets: None,
        wait_for_user: false,
        duration_ms: None,
        targets: None,
        times: Some(1),
    }
}

const PROCESS_JOB: &str = r#"
apiVersion: bkops.io/v1alpha1
kind: ProcessJob
metadata: {name: NAME}
spec:
  bkBizId: 2
  jobObject: process
  jobAction: restart
  scope: {bkSetEnv: "3", bkSetIds: [1]}
"#;

const TASKFLOW: &str = r#"
apiVersion: bkops.io/v1alpha1
kind: Taskflow
metadata: {name: NAME}
spec:
  templateId: 4
  creator: admin
"#;

const AGENT_JOB: &str = r#"
apiVersion: bkops.io/v1alpha1
kind: AgentJob
metadata: {name: NAME}
spec:
  jobType: RESTART_AGENT
  bkBizId: [2]
  bkHostId: [1, 2, 3, 4, 5, 6]
"#;

const EXECUTE_JOB: &str = r#"
apiVersion: bkops.io/v1alpha1
kind: ExecuteJob
metadata: {name: NAME}
spec:
  bkScopeType: biz
  bkScopeId: "2"
  jobPlanId: 1000
"#;

fn manifest(template: &str, name: &str, extra_spec: &str) -> String {
    let mut out = template.replace("NAME", name);
    for line in extra_spec.lines().filter(|l| !l.trim().is_empty()) {
        out.push_str("  ");
        out.push_str(line.trim());
        out.push('\n');
    }
    out
}

fn job_id(obj: &Value) -> u64 {
    obj["status"]["run"]["jobId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {}", obj["status"]))
}

async fn patch_spec(env: &Env, kind: &str, name: &str, spec: Value) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(env.ns.client(), env.ns.name(), &api_resource(kind));
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": spec })),
    )
    .await
    .expect("patching the spec");
}

#[tokio::test]
async fn in_progress_phases_then_current() {
    let env = Env::with(
        "kstatus-progress",
        EnvOptions {
            job_ms: 2500,
            ..EnvOptions::default()
        },
    )
    .await;
    let c = &env.control;
    // Submitting: GSEKit holds the create for 2 s.
    c.add_fault(&fault(
        SystemSel::Gsekit,
        "create",
        FaultAction::DelayMs(2000),
    ))
    .await
    .unwrap();
    // Pending: JOB throttles the first create (nothing created; retried after the deferral).
    c.add_fault(&fault(SystemSel::Job, "create", FaultAction::RateLimit))
        .await
        .unwrap();
    // WaitingForUser: the BKFlow task stops for a person.
    c.set_behaviour(&Behaviour {
        wait_for_user: true,
        ..behaviour(System::Bkflow)
    })
    .await
    .unwrap();
    env.apply(&manifest(PROCESS_JOB, "submitting", "")).await;
    env.apply(&manifest(EXECUTE_JOB, "pending", "")).await;
    env.apply(&manifest(TASKFLOW, "waiting", "")).await;

    let mut submitting = Follow::new(&env, "ProcessJob", "submitting");
    let mut pending = Follow::new(&env, "ExecuteJob", "pending");
    let mut waiting = Follow::new(&env, "Taskflow", "waiting");
    let approve = async {
        let obj = waiting.settled(Phase::WaitingForUser).await;
        assert_eq!(
            condition(&obj, "Reconciling").and_then(|c| c["reason"].as_str()),
            Some("WaitingForUser")
        );
        c.approve(System::Bkflow, job_id(&obj)).await.unwrap();
        waiting.settled(Phase::Succeeded).await;
    };
    tokio::join!(
        submitting.settled(Phase::Succeeded),
        pending.settled(Phase::Succeeded),
        approve,
    );
    submitting.saw_in_order(&[Phase::Submitting, Phase::Running, Phase::Succeeded]);
    pending.saw_in_order(&[Phase::Pending, Phase::Running, Phase::Succeeded]);
    waiting.saw_in_order(&[Phase::Running, Phase::WaitingForUser, Phase::Succeeded]);

    // Ready stayed False from the first write to the last poll before success: one transition
    // time; it moved only when Ready turned True.
    let first = submitting
        .snapshots
        .iter()
        .find(|s| phase_of(s).is_some())
        .unwrap();
    let last = submitting.snapshots.last().unwrap();
    let before_success = submitting
        .snapshots
        .iter()
        .rev()
        .find(|s| phase_of(s) != Some(Phase::Succeeded))
        .unwrap();
    assert_eq!(
        condition(first, "Ready").unwrap()["lastTransitionTime"],
        condition(before_success, "Ready").unwrap()["lastTransitionTime"]
    );
    assert!(
        condition(last, "Ready").unwrap()["lastTransitionTime"].as_str()
            >= condition(before_success, "Ready").unwrap()["lastTransitionTime"].as_str()
    );
    assert_eq!(env.creates(System::Gsekit).await, 1);
    assert_eq!(env.creates(System::Job).await, 2, "one throttled, one real");
    assert_eq!(env.creates(System::Bkflow).await, 1);
    env.stop().await;
}

async fn system_calls(env: &Env, system: System) -> u64 {
    env.control
        .calls()
        .await
        .expect("call counts")
        .endpoints
        .iter()
        .filter(|e| e.system == system)
        .map(|e| e.count)
        .sum()
}

#[tokio::test]
async fn running_conditions_hold_still_and_cancel_stalls() {
    let env = Env::start("kstatus-running").await;
    let c = &env.control;
    for system in [System::Nodeman, System::Job] {
        c.set_behaviour(&Behaviour {
            duration_ms: Some(40_000),
            ..behaviour(system)
        })
        .await
        .unwrap();
    }
    env.apply(&manifest(AGENT_JOB, "long", "")).await;
    env.apply(&manifest(EXECUTE_JOB, "cancel-me", "")).await;

    // A running job: polls, and a progress write, leave the conditions as they were.
    let mut long = Follow::new(&env, "AgentJob", "long");
    let first = long.settled(Phase::Running).await;
    let since = tokio::time::Instant::now();
    // Polls right after the job id write write nothing: progress waits ~10 s after any write.
    let polls = system_calls(&env, System::Nodeman).await;
    while system_calls(&env, System::Nodeman).await < polls + 3 {
        assert!(
            since.elapsed() < Duration::from_secs(8),
            "no three polls in 8 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let quiet = long.until(Duration::ZERO, |_| true).await;
    assert_eq!(
        quiet["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"],
        "a progress write within {:?} of the job id write",
        since.elapsed()
    );
    // After the first progress write (upstream state and counts), which waits ~10 s after the
    // job id write like every progress write ...
    let running = long
        .until(Duration::from_secs(25), |o| {
            o["status"]["run"]["summary"].is_object()
        })
        .await;
    // ... the operator polls twice more ...
    let polls = system_calls(&env, System::Nodeman).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while system_calls(&env, System::Nodeman).await < polls + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no two polls in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... and writes progress again (throttled to one write per ~10 s).
    let rv = running["metadata"]["resourceVersion"].clone();
    let later = long
        .until(Duration::from_secs(30), |o| {
            o["metadata"]["resourceVersion"] != rv && phase_of(o) == Some(Phase::Running)
        })
        .await;
    assert_ne!(
        running["status"]["run"]["summary"], later["status"]["run"]["summary"],
        "a progress write in between"
    );
    for type_ in ["Ready", "Reconciling"] {
        assert_eq!(
            condition(&running, type_).unwrap()["lastTransitionTime"],
            condition(&later, type_).unwrap()["lastTransitionTime"],
            "{type_} kept its lastTransitionTime across polls"
        );
    }
    c.finish(System::Nodeman, job_id(&later)).await.unwrap();
    let done = long.settled(Phase::Succeeded).await;
    assert!(condition(&done, "Reconciling").is_none());

    // Cancelled: spec.cancel while running (a spec change: observedGeneration must follow).
    let mut cancel = Follow::new(&env, "ExecuteJob", "cancel-me");
    let before = cancel.settled(Phase::Running).await;
    patch_spec(
        &env,
        "ExecuteJob",
        "cancel-me",
        serde_json::json!({"cancel": true}),
    )
    .await;
    let obj = cancel.settled(Phase::Cancelled).await;
    assert!(
        obj["metadata"]["generation"].as_i64() > before["metadata"]["generation"].as_i64(),
        "the cancel moved the generation"
    );
    assert_eq!(condition_status(&obj, "Succeeded"), Some("False"));
    assert_eq!(env.calls(System::Job, "cancel").await, 1);
    env.stop().await;
}

#[tokio::test]
async fn failures_stall_and_suspend_is_current() {
    let mut env = Env::start("kstatus-failed").await;
    // The unclear NodeMan create is resolved once the grace window, which outlasts the call
    // timeout, has passed: a short timeout keeps it within the wait below.
    env.short_create_timeout().await;
    let c = &env.control;
    c.set_behaviour(&Behaviour {
        failed_targets: Some(1),
        ..behaviour(System::Gsekit)
    })
    .await
    .unwrap();
    // Unknown: the NodeMan gateway answers 502 to the create: maybe created, nothing found.
    c.add_fault(&fault(
        SystemSel::Nodeman,
        "create",
        FaultAction::HttpStatus {
            status: 502,
            code: None,
        },
    ))
    .await
    .unwrap();
    env.apply(&manifest(PROCESS_JOB, "failed", "")).await;
    env.apply(&manifest(AGENT_JOB, "unknown", "")).await;
    env.apply(&manifest(EXECUTE_JOB, "invalid", "steps: [{stepId: 1}]"))
        .await;
    env.apply(&manifest(TASKFLOW, "suspended", "suspend: true"))
        .await;

    let mut failed = Follow::new(&env, "ProcessJob", "failed");
    let mut unknown = Follow::new(&env, "AgentJob", "unknown");
    let mut invalid = Follow::new(&env, "ExecuteJob", "invalid");
    let mut suspended = Follow::new(&env, "Taskflow", "suspended");
    let (f, u, i, s) = tokio::join!(
        failed.settled(Phase::Failed),
        unknown.settled(Phase::Unknown),
        invalid.settled(Phase::Failed),
        suspended.settled(Phase::Suspended),
    );
    assert_eq!(condition_status(&f, "Succeeded"), Some("False"));
    assert_eq!(
        condition(&f, "Stalled").unwrap()["reason"].as_str(),
        Some("JobFailed")
    );
    unknown.saw_in_order(&[Phase::Submitting, Phase::Unknown]);
    assert_eq!(
        condition(&u, "Stalled").unwrap()["reason"].as_str(),
        Some("UnknownSubmission")
    );
    assert_eq!(
        condition(&i, "Stalled").unwrap()["reason"].as_str(),
        Some("InvalidSpec")
    );
    assert_eq!(kstatus(&s), Kstatus::Current);
    assert_eq!(condition_status(&s, "Ready"), Some("False"));
    assert_eq!(env.creates(System::Nodeman).await, 1, "never resubmitted");
    assert_eq!(env.creates(System::Job).await, 0, "invalid: nothing sent");
    assert_eq!(
        env.creates(System::Bkflow).await,
        0,
        "suspended: nothing sent"
    );

    // With no operator to observe it, a spec change is InProgress by observedGeneration alone.
    env.stop_operator().await;
    patch_spec(
        &env,
        "Taskflow",
        "suspended",
        serde_json::json!({"suspend": false}),
    )
    .await;
    let behind = suspended
        .until(Duration::from_secs(5), |o| {
            o["metadata"]["generation"] != o["status"]["observedGeneration"]
        })
        .await;
    assert_eq!(phase_of(&behind), Some(Phase::Suspended));
    assert_eq!(kstatus(&behind), Kstatus::InProgress);
    env.start_operator().await;
    suspended.settled(Phase::Succeeded).await;
    assert_eq!(env.creates(System::Bkflow).await, 1);
    env.stop().await;
}

/// `kubectl` from the control plane, as an async command.
async fn kubectl(args: &[&str]) -> tokio::process::Command {
    let cmd = control_plane()
        .await
        .kubectl()
        .expect("kubectl beside the control-plane binaries");
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.args(args);
    cmd
}

#[tokio::test]
async fn kubectl_wait_and_get_bkops() {
    let env = Env::with(
        "kubectl",
        EnvOptions {
            job_ms: 3000,
            ..EnvOptions::default()
        },
    )
    .await;
    let ns = env.ns.name().to_owned();
    env.control
        .set_behaviour(&Behaviour {
            failed_targets: Some(1),
            ..behaviour(System::Nodeman)
        })
        .await
        .unwrap();
    env.apply(&manifest(PROCESS_JOB, "pj", "")).await;
    env.apply(&manifest(TASKFLOW, "tf", "")).await;
    env.apply(&manifest(AGENT_JOB, "aj-fails", "")).await;
    env.apply(&manifest(EXECUTE_JOB, "ej", "")).await;

    // Started while the job runs: kubectl waits for Ready=True.
    let ready = kubectl(&[
        "wait",
        "--for=condition=Ready",
        "processjob/pj",
        "-n",
        &ns,
        "--timeout=60s",
    ])
    .await
    .output()
    .await
    .unwrap();
    assert!(
        ready.status.success(),
        "kubectl wait Ready: {}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let pj = env
        .wait_phase::<bkops::api::ProcessJob>("pj", Phase::Succeeded)
        .await;
    assert!(pj.status.is_some());

    let stalled = kubectl(&[
        "wait",
        "--for=condition=Stalled",
        "agentjob/aj-fails",
        "-n",
        &ns,
        "--timeout=60s",
    ])
    .await
    .output()
    .await
    .unwrap();
    assert!(
        stalled.status.success(),
        "kubectl wait Stalled: {}",
        String::from_utf8_lossy(&stalled.stderr)
    );
    env.wait_phase::<bkops::api::AgentJob>("aj-fails", Phase::Failed)
        .await;
    let not_ready = kubectl(&[
        "wait",
        "--for=condition=Ready",
        "agentjob/aj-fails",
        "-n",
        &ns,
        "--timeout=5s",
    ])
    .await
    .output()
    .await
    .unwrap();
    assert!(
        !not_ready.status.success(),
        "kubectl wait Ready on a failed job must time out"
    );
    let err = String::from_utf8_lossy(&not_ready.stderr);
    assert!(err.contains("timed out"), "{err}");

    env.wait_phase::<bkops::api::Taskflow>("tf", Phase::Succeeded)
        .await;
    env.wait_phase::<bkops::api::ExecuteJob>("ej", Phase::Succeeded)
        .await;
    let get = kubectl(&["get", "bkops", "-n", &ns, "-o", "wide"])
        .await
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&get.stdout);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    for object in [
        "processjob.bkops.io/pj",
        "taskflow.bkops.io/tf",
        "agentjob.bkops.io/aj-fails",
        "executejob.bkops.io/ej",
    ] {
        assert!(
            out.contains(object),
            "kubectl get bkops lacks {object}:\n{out}"
        );
    }
    let headers: Vec<&str> = out.lines().filter(|l| l.starts_with("NAME")).collect();
    assert_eq!(headers.len(), 4, "one table per kind:\n{out}");
    for h in headers {
        let columns: Vec<&str> = h.split_whitespace().collect();
        assert_eq!(
            columns,
            ["NAME", "PHASE", "JOB", "OK", "FAILED", "AGE", "MESSAGE"],
            "{out}"
        );
    }
    let row = out
        .lines()
        .find(|l| l.starts_with("agentjob.bkops.io/aj-fails"))
        .unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "Failed", "{row}");
    assert!(cells[2].parse::<u64>().is_ok(), "job id column: {row}");
    assert_eq!(cells[4], "1", "failed targets column: {row}");
    env.stop().await;
}
