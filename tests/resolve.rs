//! What an unclear create becomes, against the real API server and the simulator: a run never
//! adopts a job that belongs to another object; where the system keeps the run key (BKFlow) a
//! create that made nothing is submitted again by itself; where it cannot (GSEKit, NodeMan, JOB)
//! a job is adopted only when its content matches and no other object follows it.

mod support;

use std::time::Duration;

use bkops::api::common::Phase;
use bkops::api::{AgentJob, ExecuteJob, ProcessJob, Taskflow};
use bkops::run::JobKind;
use bkops::sim::{FaultAction, FaultRule, System, SystemSel};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::env::{Env, EnvOptions, api_resource, apply, connections_yaml, short_create_timeout};
use support::{TestNamespace, run_of, status};

const WAIT: Duration = Duration::from_secs(60);

fn manifests(name: &str, variant: u32) -> String {
    let (set_env, template, hosts) = match variant {
        0 => ("3", 4, "[1, 2, 3]"),
        _ => ("2", 5, "[7, 8]"),
    };
    format!(
        "apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {{name: {name}}}\nspec: {{bkBizId: 2, jobObject: process, jobAction: restart, scope: {{bkSetEnv: \"{set_env}\"}}}}\n---\n\
         apiVersion: bkops.io/v1alpha1\nkind: Taskflow\nmetadata: {{name: {name}}}\nspec: {{templateId: {template}, creator: admin}}\n---\n\
         apiVersion: bkops.io/v1alpha1\nkind: AgentJob\nmetadata: {{name: {name}}}\nspec: {{jobType: RESTART_AGENT, bkHostId: {hosts}}}\n---\n\
         apiVersion: bkops.io/v1alpha1\nkind: ExecuteJob\nmetadata: {{name: {name}}}\nspec: {{bkScopeId: \"2\", jobPlanId: 1000}}\n"
    )
}

async fn fault_all_creates(env: &Env, action: FaultAction, systems: &[SystemSel]) {
    for system in systems {
        env.control
            .add_fault(&FaultRule {
                system: *system,
                endpoint: "create".into(),
                action: action.clone(),
                times: Some(1),
            })
            .await
            .expect("fault added");
    }
}

async fn wait_in<K: JobKind>(ns: &TestNamespace, name: &str, phase: Phase) -> K {
    let api: Api<K> = ns.api();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(o) = api.get_opt(name).await.expect("get")
            && status(&o).phase == Some(phase)
        {
            return o;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} {name} never reached {phase:?}: {:?}",
            K::kind(&()),
            api.get_opt(name).await.ok().flatten().map(|o| status(&o))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn events_about(ns: &TestNamespace, name: &str, reason: &str) -> Vec<String> {
    support::events_about(&ns.client(), ns.name(), name, reason).await
}

#[tokio::test]
async fn an_unclear_create_never_adopts_another_objects_job() {
    let mut env = Env::with(
        "resolve-a",
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;
    let other = TestNamespace::create("resolve-b").await;
    apply(
        &other.client(),
        other.name(),
        &connections_yaml(env.sim.base_url().as_str()),
    )
    .await
    .expect("connections in the second namespace");
    env.short_create_timeout().await;
    short_create_timeout(&other.client(), other.name()).await;
    let mut config = env.operator_config();
    config.namespaces.push(other.name().to_owned());
    env.start_operator_with(env.ns.client(), config).await;

    // X, in the first namespace, runs normally.
    env.apply(&manifests("x", 0)).await;
    let xp = env.wait_phase::<ProcessJob>("x", Phase::Succeeded).await;
    let xt = env.wait_phase::<Taskflow>("x", Phase::Succeeded).await;
    let xa = env.wait_phase::<AgentJob>("x", Phase::Succeeded).await;
    let xe = env.wait_phase::<ExecuteJob>("x", Phase::Succeeded).await;

    // Y, in the second namespace with other targets: each create answers 502 and makes nothing.
    fault_all_creates(
        &env,
        FaultAction::HttpStatus {
            status: 502,
            code: None,
        },
        &[
            SystemSel::Gsekit,
            SystemSel::Bkflow,
            SystemSel::Nodeman,
            SystemSel::Job,
        ],
    )
    .await;
    apply(&other.client(), other.name(), &manifests("y", 1))
        .await
        .expect("Y applied");

    // Where the key is kept, Y finds no job with its key and submits again, by itself.
    let yt: Taskflow = wait_in(&other, "y", Phase::Succeeded).await;
    let (y, x) = (run_of(&yt), run_of(&xt));
    assert_ne!(y.job_id, x.job_id, "Y followed X's job");
    assert!(!y.adopted, "Y's job is its own create: {y:?}");
    assert_eq!(y.attempt, 2, "the second attempt submitted: {y:?}");
    let notes = events_about(&other, "y", "SubmissionNotFound").await;
    assert_eq!(
        notes.len(),
        1,
        "the Taskflow's SubmissionNotFound: {notes:?}"
    );
    assert!(notes[0].contains("nothing was created"), "{notes:?}");

    // Where it is not, Y's search sees X's job (same creator, same time) and never takes it.
    let yp: ProcessJob = wait_in(&other, "y", Phase::Unknown).await;
    let ya: AgentJob = wait_in(&other, "y", Phase::Unknown).await;
    let ye: ExecuteJob = wait_in(&other, "y", Phase::Unknown).await;
    for (message, x) in [
        (status(&yp).message.unwrap_or_default(), run_of(&xp)),
        (status(&ya).message.unwrap_or_default(), run_of(&xa)),
        (status(&ye).message.unwrap_or_default(), run_of(&xe)),
    ] {
        let x_job = x.job_id.expect("X has a job");
        assert!(
            !message.contains(&format!("({x_job})")) && !message.contains(&format!(" {x_job},")),
            "X's job {x_job} offered as Y's: {message}"
        );
        assert!(
            message.contains("no job matching it was found"),
            "{message}"
        );
    }
    for run in [run_of(&yp), run_of(&ya), run_of(&ye)] {
        assert!(run.job_id.is_none(), "{run:?}");
    }

    assert_eq!(env.creates(System::Gsekit).await, 2, "X's and Y's lost one");
    assert_eq!(
        env.creates(System::Bkflow).await,
        3,
        "X's, Y's lost one, Y's own"
    );
    assert_eq!(
        env.creates(System::Nodeman).await,
        2,
        "X's and Y's lost one"
    );
    assert_eq!(env.creates(System::Job).await, 2, "X's and Y's lost one");
    let jobs = env.control.jobs().await.expect("jobs");
    assert_eq!(jobs.len(), 5, "X's four and Y's Taskflow: {jobs:?}");
    env.stop().await;
    other.delete().await;
}

#[tokio::test]
async fn a_crash_between_intent_and_create_is_submitted_again_once() {
    let mut env = Env::with(
        "resolve-crash",
        EnvOptions {
            operator: false,
            ..EnvOptions::default()
        },
    )
    .await;
    env.short_create_timeout().await;
    let applied = env.apply(&manifests("crash", 0)).await;
    // What an operator killed between the intent and the create leaves: a fenced intent with no
    // job, and no create.
    for obj in applied.iter().filter(|o| {
        o.types
            .as_ref()
            .is_some_and(|t| t.kind == "ProcessJob" || t.kind == "Taskflow")
    }) {
        let kind = obj
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        let uid = obj.metadata.uid.clone().expect("uid");
        let generation = obj.metadata.generation.unwrap_or(1);
        let key = bkops::run::run_key(&uid, generation, 1);
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(env.ns.client(), env.ns.name(), &api_resource(&kind));
        api.patch_status(
            "crash",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Submitting",
                "observedGeneration": generation,
                "run": {"key": key, "generation": generation, "attempt": 1, "specHash": "intent",
                        "phase": "Submitting", "intentAt": chrono::Utc::now()},
            }})),
        )
        .await
        .expect("intent written");
    }
    env.start_operator().await;
    // BKFlow keeps the run key: no task carries it, so nothing was created; submitted again.
    let t = env.wait_phase::<Taskflow>("crash", Phase::Succeeded).await;
    let run = run_of(&t);
    assert_eq!(run.attempt, 2, "{run:?}");
    assert!(!run.adopted);
    assert_eq!(env.creates(System::Bkflow).await, 1, "one create in all");
    let notes = events_about(&env.ns, "crash", "SubmissionNotFound").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    // GSEKit does not keep it: finding no job proves nothing, so a person decides.
    let p = env.wait_phase::<ProcessJob>("crash", Phase::Unknown).await;
    assert!(run_of(&p).job_id.is_none());
    assert_eq!(
        env.creates(System::Gsekit).await,
        0,
        "never submitted on a guess"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_lost_answer_among_other_jobs_of_the_same_creator_is_found() {
    let env = Env::start("resolve-lost").await;
    // Other jobs of the same creator, type, plan and action, moments earlier, on other targets.
    for (i, (hosts, set_env)) in [("[11]", "1"), ("[12, 13]", "2")].iter().enumerate() {
        env.apply(&format!(
            "apiVersion: bkops.io/v1alpha1\nkind: AgentJob\nmetadata: {{name: other-{i}}}\nspec: {{jobType: RESTART_AGENT, bkHostId: {hosts}}}\n---\n\
             apiVersion: bkops.io/v1alpha1\nkind: ExecuteJob\nmetadata: {{name: other-{i}}}\nspec: {{bkScopeId: \"2\", jobPlanId: 1000}}\n---\n\
             apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {{name: other-{i}}}\nspec: {{bkBizId: 2, jobObject: process, jobAction: restart, scope: {{bkSetEnv: \"{set_env}\"}}}}\n"
        ))
        .await;
    }
    for i in 0..2 {
        let name = format!("other-{i}");
        env.wait_phase::<ProcessJob>(&name, Phase::Succeeded).await;
        env.wait_phase::<AgentJob>(&name, Phase::Succeeded).await;
        env.wait_phase::<ExecuteJob>(&name, Phase::Succeeded).await;
    }
    // The create commits, its answer is lost.
    fault_all_creates(
        &env,
        FaultAction::CommitThenDrop,
        &[SystemSel::Gsekit, SystemSel::Nodeman, SystemSel::Job],
    )
    .await;
    env.apply(&manifests("lost", 0)).await;
    let p = env.wait_phase::<ProcessJob>("lost", Phase::Succeeded).await;
    let a = env.wait_phase::<AgentJob>("lost", Phase::Succeeded).await;
    let e = env.wait_phase::<ExecuteJob>("lost", Phase::Succeeded).await;
    for run in [run_of(&p), run_of(&a), run_of(&e)] {
        assert!(run.adopted, "found by search: {run:?}");
    }
    for name in ["other-0", "other-1"] {
        let op = env.api::<ProcessJob>().get(name).await.expect("get");
        let oa = env.api::<AgentJob>().get(name).await.expect("get");
        let oe = env.api::<ExecuteJob>().get(name).await.expect("get");
        assert_ne!(run_of(&op).job_id, run_of(&p).job_id);
        assert_ne!(run_of(&oa).job_id, run_of(&a).job_id);
        assert_ne!(run_of(&oe).job_id, run_of(&e).job_id);
    }
    assert_eq!(env.creates(System::Gsekit).await, 3);
    assert_eq!(env.creates(System::Nodeman).await, 3);
    assert_eq!(env.creates(System::Job).await, 3);
    env.stop().await;
}

#[tokio::test]
async fn alike_lost_creates_are_named_for_a_person_and_a_lost_job_v3_instance_never_starts() {
    let env = Env::start("resolve-alike").await;
    env.short_create_timeout().await;
    // Two objects run the same plan at once, and both answers are lost: each instance could be
    // either object's, and JOB keeps nothing that tells.
    env.control
        .add_fault(&FaultRule {
            system: SystemSel::Job,
            endpoint: "create".into(),
            action: FaultAction::CommitThenDrop,
            times: Some(2),
        })
        .await
        .expect("fault added");
    for name in ["twin-a", "twin-b"] {
        env.apply(&format!(
            "apiVersion: bkops.io/v1alpha1\nkind: ExecuteJob\nmetadata: {{name: {name}}}\nspec: {{bkScopeId: \"2\", jobPlanId: 1000}}\n"
        ))
        .await;
    }
    for name in ["twin-a", "twin-b"] {
        let o = env.wait_phase::<ExecuteJob>(name, Phase::Unknown).await;
        let message = status(&o).message.unwrap_or_default();
        assert_eq!(
            run_of(&o).reason.as_deref(),
            Some("AmbiguousSubmission"),
            "{message}"
        );
        let all = env.control.jobs().await.expect("jobs");
        for job in &all {
            assert!(
                message.contains(&job.id.to_string()),
                "{} not named: {message}",
                job.id
            );
        }
    }
    let jobs = env.control.jobs().await.expect("jobs");
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for job in &jobs {
        assert!(!job.started, "a lost v3 create is never started: {job:?}");
        assert_eq!(job.state, "1", "JOB reports it as not executed: {job:?}");
    }
    assert_eq!(env.creates(System::Job).await, 2, "never submitted again");
    env.stop().await;
}
