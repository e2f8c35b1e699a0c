//! A job's GitOps life against the real API server and the simulator: run records that outlive
//! their object, the re-creation guard, and ordered steps (`dependsOn`). Every test asserts the
//! simulator's create counts: re-creating an object must never run its job again.

mod support;

use std::time::Duration;

use bkops::api::common::Phase;
use bkops::api::{AgentJob, BkRun, ExecuteJob, ProcessJob, Taskflow};
use bkops::run::{JobKind, reason};
use bkops::sim::{Behaviour, FaultAction, FaultRule, System, SystemSel};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use support::env::{Env, EnvOptions};
use support::{run_of, status};

const WAIT: Duration = Duration::from_secs(60);

/// One job of each kind, named `name`.
fn all_kinds(name: &str) -> String {
    format!(
        "apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {{name: {name}}}\nspec: {{bkBizId: 2, jobObject: process, jobAction: restart, scope: {{bkSetEnv: \"3\"}}}}\n---\n\
         apiVersion: bkops.io/v1alpha1\nkind: Taskflow\nmetadata: {{name: {name}}}\nspec: {{templateId: 4, creator: admin}}\n---\n\
         apiVersion: bkops.io/v1alpha1\nkind: AgentJob\nmetadata: {{name: {name}}}\nspec: {{jobType: RESTART_AGENT, bkHostId: [1, 2]}}\n---\n\
         apiVersion: bkops.io/v1alpha1\nkind: ExecuteJob\nmetadata: {{name: {name}}}\nspec: {{bkScopeId: \"2\", jobPlanId: 1000}}\n"
    )
}

fn process_job(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {{name: {name}}}\nspec: {{bkBizId: 2, jobObject: process, jobAction: restart, scope: {{bkSetEnv: \"3\"}}{extra}}}\n"
    )
}

async fn total_creates(env: &Env) -> u64 {
    let mut n = 0;
    for system in System::ALL {
        n += env.creates(system).await;
    }
    n
}

async fn delete_and_wait<K: JobKind>(env: &Env, name: &str) {
    let api = env.api::<K>();
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt(name).await.expect("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} {name} was never let go",
            K::NAME
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn records(env: &Env, kind: &str, name: &str) -> Vec<BkRun> {
    let api: Api<BkRun> = Api::namespaced(env.ns.client(), env.ns.name());
    let params = ListParams::default().labels(&format!(
        "bkops.io/job-kind={kind},bkops.io/job-name={name}"
    ));
    api.list(&params).await.expect("list bkruns").items
}

async fn wait_run<K: JobKind>(env: &Env, name: &str, pred: impl Fn(&K) -> bool) -> K {
    env.wait_for::<K>(name, WAIT, pred).await
}

fn reason_of<K: JobKind>(o: &K) -> Option<String> {
    run_of(o).reason
}

/// Succeeded once, then deleted and applied again with the same YAML, a job of each kind takes
/// its earlier run from the record: no create. A new `rerunToken` runs it again, once.
#[tokio::test]
async fn a_re_created_job_of_every_kind_adopts_its_run_and_runs_again_only_for_a_new_token() {
    let env = Env::start("gitops-recreate").await;
    env.apply(&all_kinds("nightly")).await;
    let p = env
        .wait_phase::<ProcessJob>("nightly", Phase::Succeeded)
        .await;
    let t = env
        .wait_phase::<Taskflow>("nightly", Phase::Succeeded)
        .await;
    let a = env
        .wait_phase::<AgentJob>("nightly", Phase::Succeeded)
        .await;
    let e = env
        .wait_phase::<ExecuteJob>("nightly", Phase::Succeeded)
        .await;
    let ids = [
        run_of(&p).job_id,
        run_of(&t).job_id,
        run_of(&a).job_id,
        run_of(&e).job_id,
    ];
    assert_eq!(total_creates(&env).await, 4);
    // Each run is on record, finished.
    for kind in ["ProcessJob", "Taskflow", "AgentJob", "ExecuteJob"] {
        let recs = env_records_settled(&env, kind, "nightly", Phase::Succeeded).await;
        assert_eq!(recs.len(), 1, "{kind}: one record");
        assert!(recs[0].spec.job_id.is_some(), "{kind}: {:?}", recs[0].spec);
    }

    delete_and_wait::<ProcessJob>(&env, "nightly").await;
    delete_and_wait::<Taskflow>(&env, "nightly").await;
    delete_and_wait::<AgentJob>(&env, "nightly").await;
    delete_and_wait::<ExecuteJob>(&env, "nightly").await;
    env.apply(&all_kinds("nightly")).await;
    let p2 = wait_adopted::<ProcessJob>(&env, "nightly").await;
    let t2 = wait_adopted::<Taskflow>(&env, "nightly").await;
    let a2 = wait_adopted::<AgentJob>(&env, "nightly").await;
    let e2 = wait_adopted::<ExecuteJob>(&env, "nightly").await;
    assert_eq!(
        [
            run_of(&p2).job_id,
            run_of(&t2).job_id,
            run_of(&a2).job_id,
            run_of(&e2).job_id,
        ],
        ids,
        "the re-created objects show the earlier jobs"
    );
    assert_ne!(p2.metadata.uid, p.metadata.uid, "a new object");
    // A create made by mistake would show by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(total_creates(&env).await, 4, "re-creating made no create");
    let events = support::events_about(
        &env.ns.client(),
        env.ns.name(),
        "nightly",
        reason::ADOPTED_EARLIER_RUN,
    )
    .await;
    assert!(
        events.iter().any(|n| n.contains("processjob-nightly-")),
        "an Event names the record: {events:?}"
    );

    // A new rerunToken asks for a new run: exactly one more create.
    env.api::<ProcessJob>()
        .patch(
            "nightly",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rerunToken": "again"}})),
        )
        .await
        .expect("patch");
    let p3 = wait_run::<ProcessJob>(&env, "nightly", |o| {
        status(o).phase == Some(Phase::Succeeded)
            && run_of(o).rerun_token.as_deref() == Some("again")
    })
    .await;
    assert_ne!(run_of(&p3).job_id, ids[0]);
    assert_eq!(env.creates(System::Gsekit).await, 2);
    assert_eq!(total_creates(&env).await, 5);
    env.stop().await;
}

async fn env_records_settled(env: &Env, kind: &str, name: &str, phase: Phase) -> Vec<BkRun> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let recs = records(env, kind, name).await;
        if !recs.is_empty() && recs.iter().all(|r| r.spec.phase == phase) {
            return recs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind} {name}: records never all {phase}: {:?}",
            recs.iter().map(|r| &r.spec).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn wait_adopted<K: JobKind>(env: &Env, name: &str) -> K {
    wait_run::<K>(env, name, |o| {
        status(o).phase == Some(Phase::Succeeded)
            && reason_of(o).as_deref() == Some(reason::ADOPTED_EARLIER_RUN)
    })
    .await
}

/// Deleted while its job runs (`deletionPolicy: Orphan`), then re-created: the new object follows
/// the same job to its end, and the record ends with it.
#[tokio::test]
async fn a_job_deleted_while_running_is_followed_by_its_re_created_object() {
    let env = Env::with(
        "gitops-running",
        EnvOptions {
            job_ms: 6000,
            ..EnvOptions::default()
        },
    )
    .await;
    env.apply(&process_job("restart", "")).await;
    let running = wait_run::<ProcessJob>(&env, "restart", |o| {
        status(o).phase == Some(Phase::Running) && run_of(o).job_id.is_some()
    })
    .await;
    let job = run_of(&running).job_id;
    delete_and_wait::<ProcessJob>(&env, "restart").await;
    let recs = records(&env, "ProcessJob", "restart").await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].spec.job_id, job);
    assert_eq!(recs[0].spec.phase, Phase::Running);
    env.apply(&process_job("restart", "")).await;
    let followed = wait_run::<ProcessJob>(&env, "restart", |o| {
        run_of(o).reason.as_deref() == Some(reason::ADOPTED_EARLIER_RUN)
            || status(o).phase == Some(Phase::Succeeded)
    })
    .await;
    assert_eq!(run_of(&followed).job_id, job);
    let done = env
        .wait_phase::<ProcessJob>("restart", Phase::Succeeded)
        .await;
    assert_eq!(
        run_of(&done).job_id,
        job,
        "the same job, followed to its end"
    );
    assert_eq!(env.creates(System::Gsekit).await, 1);
    env_records_settled(&env, "ProcessJob", "restart", Phase::Succeeded).await;
    env.stop().await;
}

/// Deleted while its create's answer is lost (and the search cannot tell), then re-created: the
/// record says the outcome is unknown, so the new object is `Unknown` too, and makes no create.
/// A person names the job: it is followed, still with one create.
#[tokio::test]
async fn a_job_deleted_while_its_create_is_unclear_is_unknown_when_re_created() {
    let env = Env::with(
        "gitops-unclear",
        EnvOptions {
            job_ms: 1000,
            ..EnvOptions::default()
        },
    )
    .await;
    env.short_create_timeout().await;
    for (endpoint, action, times) in [
        (
            "create",
            FaultAction::CommitThenTimeout { delay_ms: 5000 },
            Some(1),
        ),
        (
            "list",
            FaultAction::HttpStatus {
                status: 503,
                code: None,
            },
            None,
        ),
    ] {
        env.control
            .add_fault(&FaultRule {
                system: SystemSel::Job,
                endpoint: endpoint.into(),
                action,
                times,
            })
            .await
            .expect("fault");
    }
    let yaml = "apiVersion: bkops.io/v1alpha1\nkind: ExecuteJob\nmetadata: {name: deploy}\nspec: {bkScopeId: \"2\", jobPlanId: 1000}\n";
    env.apply(yaml).await;
    wait_run::<ExecuteJob>(&env, "deploy", |o| {
        run_of(o).reason.as_deref() == Some(reason::RESOLVING)
    })
    .await;
    delete_and_wait::<ExecuteJob>(&env, "deploy").await;
    let recs = records(&env, "ExecuteJob", "deploy").await;
    assert_eq!(recs.len(), 1, "the unclear run is on record");
    assert_eq!(recs[0].spec.job_id, None);
    env.apply(yaml).await;
    let unknown = env.wait_phase::<ExecuteJob>("deploy", Phase::Unknown).await;
    assert_eq!(
        run_of(&unknown).reason.as_deref(),
        Some(reason::ADOPTED_EARLIER_RUN)
    );
    assert_eq!(run_of(&unknown).key, recs[0].spec.run_key);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.creates(System::Job).await,
        1,
        "no create for the new object"
    );

    // A person finds the job in BlueKing and names it.
    env.control.clear_faults().await.expect("faults cleared");
    let jobs = env.control.jobs().await.expect("jobs");
    let id = jobs
        .iter()
        .find(|j| j.system == System::Job)
        .map(|j| j.id.to_string())
        .expect("the job the lost create made");
    env.api::<ExecuteJob>()
        .patch(
            "deploy",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"bkops.io/adopt-job-id": id}}})),
        )
        .await
        .expect("annotate");
    let done = env
        .wait_phase::<ExecuteJob>("deploy", Phase::Succeeded)
        .await;
    assert_eq!(run_of(&done).job_id.as_deref(), Some(id.as_str()));
    assert_eq!(env.creates(System::Job).await, 1);
    env.stop().await;
}

/// `recreatePolicy: Run`: a re-created object runs again.
#[tokio::test]
async fn recreate_policy_run_runs_a_re_created_job_again() {
    let env = Env::start("gitops-run").await;
    let yaml = process_job("again", ", recreatePolicy: Run");
    env.apply(&yaml).await;
    env.wait_phase::<ProcessJob>("again", Phase::Succeeded)
        .await;
    delete_and_wait::<ProcessJob>(&env, "again").await;
    env.apply(&yaml).await;
    let o = wait_run::<ProcessJob>(&env, "again", |o| {
        status(o).phase == Some(Phase::Succeeded)
            && run_of(o).reason.as_deref() != Some(reason::ADOPTED_EARLIER_RUN)
    })
    .await;
    assert!(!run_of(&o).adopted);
    assert_eq!(env.creates(System::Gsekit).await, 2);
    assert_eq!(records(&env, "ProcessJob", "again").await.len(), 2);
    env.stop().await;
}

fn three_steps() -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gsekit-three-step.yaml");
    std::fs::read_to_string(path).expect("the example")
}

/// The GSEKit generate → release → restart example, applied at once: each create follows the
/// end of the job before it.
#[tokio::test]
async fn three_ordered_steps_create_in_order() {
    let env = Env::with(
        "gitops-steps",
        EnvOptions {
            job_ms: 1500,
            ..EnvOptions::default()
        },
    )
    .await;
    env.apply(&three_steps()).await;
    let waiting = wait_run::<ProcessJob>(&env, "process-restart", |o| {
        status(o)
            .conditions
            .iter()
            .any(|c| c.type_ == "Reconciling" && c.reason == reason::WAITING_FOR_DEPENDENCY)
    })
    .await;
    assert_eq!(status(&waiting).phase, Some(Phase::Pending));
    assert!(
        status(&waiting)
            .message
            .unwrap_or_default()
            .contains("ProcessJob/config-release"),
        "the message names the dependency"
    );
    for name in ["config-generate", "config-release", "process-restart"] {
        env.wait_phase::<ProcessJob>(name, Phase::Succeeded).await;
    }
    let jobs = gsekit_jobs_in_order(&env).await;
    assert_eq!(jobs.len(), 3);
    assert_in_order(&jobs);
    env.stop().await;
}

async fn gsekit_jobs_in_order(env: &Env) -> Vec<bkops::sim::JobView> {
    let mut jobs: Vec<_> = env
        .control
        .jobs()
        .await
        .expect("jobs")
        .into_iter()
        .filter(|j| j.system == System::Gsekit)
        .collect();
    jobs.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    jobs
}

/// Each job was created after the one before it finished.
fn assert_in_order(jobs: &[bkops::sim::JobView]) {
    for pair in jobs.windows(2) {
        let finished = pair[0].finished_at.clone().expect("finished");
        let a = chrono::DateTime::parse_from_rfc3339(&finished).expect("a time");
        let b = chrono::DateTime::parse_from_rfc3339(&pair[1].created_at).expect("a time");
        assert!(
            b >= a,
            "job {} created at {b} before job {} finished at {a}",
            pair[1].id,
            pair[0].id
        );
    }
}

/// A failed step stalls the steps after it, with no create; they run once it is rerun and
/// succeeds. A dependency edited in the same apply as its dependent runs first.
#[tokio::test]
async fn a_failed_step_stalls_the_next_until_it_succeeds_and_a_stale_success_never_counts() {
    let env = Env::with(
        "gitops-stall",
        EnvOptions {
            job_ms: 1000,
            ..EnvOptions::default()
        },
    )
    .await;
    let all = three_steps();
    let docs: Vec<&str> = all.split("\n---\n").collect();
    assert_eq!(docs.len(), 3);
    env.apply(docs[0]).await;
    env.wait_phase::<ProcessJob>("config-generate", Phase::Succeeded)
        .await;
    // The release's create is refused by GSEKit: it fails.
    env.control
        .add_fault(&FaultRule {
            system: SystemSel::Gsekit,
            endpoint: "create".into(),
            action: FaultAction::Reject {
                code: 1_500_100,
                message: Some("release refused".into()),
            },
            times: Some(1),
        })
        .await
        .expect("fault");
    env.apply(&format!("{}\n---\n{}", docs[1], docs[2])).await;
    env.wait_phase::<ProcessJob>("config-release", Phase::Failed)
        .await;
    let stalled = wait_run::<ProcessJob>(&env, "process-restart", |o| {
        status(o).conditions.iter().any(|c| {
            c.type_ == "Stalled" && c.status == "True" && c.reason == reason::DEPENDENCY_FAILED
        })
    })
    .await;
    assert_eq!(status(&stalled).phase, Some(Phase::Pending));
    assert!(status(&stalled).run.is_none(), "no run started");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // generate, and the refused release (a call, nothing made).
    assert_eq!(gsekit_jobs_in_order(&env).await.len(), 1);

    // Rerun the release: it succeeds, and the restart runs by itself.
    env.api::<ProcessJob>()
        .patch(
            "config-release",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rerunToken": "2"}})),
        )
        .await
        .expect("patch");
    env.wait_phase::<ProcessJob>("process-restart", Phase::Succeeded)
        .await;
    let jobs = gsekit_jobs_in_order(&env).await;
    assert_eq!(jobs.len(), 3);
    assert_in_order(&jobs);

    // Release and restart both edited in one apply: the restart waits for the new release run
    // (the old success does not count).
    let bumped = |doc: &str, token: &str| {
        doc.replacen("spec:\n", &format!("spec:\n  rerunToken: \"{token}\"\n"), 1)
    };
    env.apply(&format!(
        "{}\n---\n{}",
        bumped(docs[1], "3"),
        bumped(docs[2], "3")
    ))
    .await;
    for name in ["config-release", "process-restart"] {
        wait_run::<ProcessJob>(&env, name, |o| {
            status(o).phase == Some(Phase::Succeeded)
                && run_of(o).rerun_token.as_deref() == Some("3")
        })
        .await;
    }
    let jobs = gsekit_jobs_in_order(&env).await;
    assert_eq!(jobs.len(), 5);
    assert_in_order(&jobs[3..]);
    env.stop().await;
}

/// A cycle (or a job naming itself) is an invalid spec: nothing is created.
#[tokio::test]
async fn a_dependency_cycle_is_refused_with_no_create() {
    let env = Env::start("gitops-cycle").await;
    env.apply(&format!(
        "{}---\n{}---\n{}",
        process_job("a", ", dependsOn: [{kind: ProcessJob, name: b}]"),
        process_job("b", ", dependsOn: [{kind: ProcessJob, name: a}]"),
        process_job("self", ", dependsOn: [{kind: ProcessJob, name: self}]"),
    ))
    .await;
    for name in ["a", "b", "self"] {
        let o = env.wait_phase::<ProcessJob>(name, Phase::Failed).await;
        let s = status(&o);
        assert!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.reason == reason::INVALID_SPEC),
            "{name}: {s:?}"
        );
        assert!(
            s.message.unwrap_or_default().contains("cycle"),
            "{name}: the message says why"
        );
    }
    // A missing dependency waits.
    env.apply(&process_job(
        "lonely",
        ", dependsOn: [{kind: Taskflow, name: nowhere}]",
    ))
    .await;
    wait_run::<ProcessJob>(&env, "lonely", |o| {
        status(o)
            .conditions
            .iter()
            .any(|c| c.reason == reason::DEPENDENCY_MISSING)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.creates(System::Gsekit).await, 0);
    env.stop().await;
}

/// Reconciles of a dependent are woken by its dependency's change, not by a timer: the
/// dependent starts within moments of the dependency's success even with long polls.
#[tokio::test]
async fn a_dependency_change_wakes_its_dependent() {
    let env = Env::with(
        "gitops-wake",
        EnvOptions {
            job_ms: 500,
            ..EnvOptions::default()
        },
    )
    .await;
    env.control
        .set_behaviour(&Behaviour {
            system: System::Bkflow,
            failed_targets: None,
            wait_for_user: false,
            duration_ms: Some(500),
            targets: None,
            times: None,
        })
        .await
        .expect("behaviour");
    // The dependent exists first and waits for a dependency that is not there yet.
    env.apply(&process_job(
        "after",
        ", dependsOn: [{kind: Taskflow, name: first}]",
    ))
    .await;
    wait_run::<ProcessJob>(&env, "after", |o| {
        status(o)
            .conditions
            .iter()
            .any(|c| c.reason == reason::DEPENDENCY_MISSING)
    })
    .await;
    env.apply("apiVersion: bkops.io/v1alpha1\nkind: Taskflow\nmetadata: {name: first}\nspec: {templateId: 4, creator: admin}\n")
        .await;
    env.wait_phase::<ProcessJob>("after", Phase::Succeeded)
        .await;
    let t = env.wait_phase::<Taskflow>("first", Phase::Succeeded).await;
    let p = env.api::<ProcessJob>().get("after").await.expect("get");
    let (done, started) = (
        run_of(&t).completion_time.expect("ended"),
        run_of(&p).intent_at.expect("intent"),
    );
    assert!(
        started >= done,
        "the dependent started after its dependency ended"
    );
    assert!(
        started - done < chrono::TimeDelta::seconds(10),
        "woken by the change, not a timer: {} s",
        (started - done).num_seconds()
    );
    env.stop().await;
}

/// Retention, on the real API server: only finished records past the retention go; records of
/// runs in flight or of unknown outcome stay whatever their age.
#[tokio::test]
async fn retention_deletes_only_finished_records_past_their_time() {
    let env = Env::with(
        "gitops-retention",
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;
    let api: Api<BkRun> = Api::namespaced(env.ns.client(), env.ns.name());
    let now = chrono::Utc::now();
    let days_ago = |d: i64| Some(now - chrono::TimeDelta::days(d));
    let cases = [
        (
            "old-succeeded",
            Phase::Succeeded,
            Some("1"),
            days_ago(100),
            false,
        ),
        ("old-failed", Phase::Failed, Some("2"), days_ago(91), false),
        (
            "recent-succeeded",
            Phase::Succeeded,
            Some("3"),
            days_ago(10),
            true,
        ),
        ("old-running", Phase::Running, Some("4"), None, true),
        ("old-unknown", Phase::Unknown, None, days_ago(400), true),
    ];
    for (name, phase, job, ended, _) in &cases {
        let record = BkRun::new(
            name,
            bkops::api::BkRunSpec {
                job_kind: "ProcessJob".into(),
                job_name: (*name).into(),
                run_key: format!("{name}-g1-a1"),
                fingerprint: "0".repeat(16),
                generation: 1,
                spec_hash: "h".into(),
                system: "gsekit".into(),
                phase: *phase,
                job_id: job.map(str::to_owned),
                intent_at: days_ago(400),
                completion_time: *ended,
                ..Default::default()
            },
        );
        api.create(&Default::default(), &record)
            .await
            .expect("create");
    }
    let deleted = bkops::controller::retention::sweep(
        &env.ns.client(),
        &[env.ns.name().to_owned()],
        Duration::from_secs(90 * 86_400),
    )
    .await
    .expect("sweep");
    assert_eq!(deleted, 2);
    for (name, _, _, _, kept) in cases {
        assert_eq!(
            api.get_opt(name).await.expect("get").is_some(),
            kept,
            "{name}"
        );
    }
    env.stop().await;
}
