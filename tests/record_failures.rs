//! Run record writes that fail, against the real API server: the job is still followed to its
//! end, and a deleted object is let go only once its record is written. The records fail here
//! because the `BkRun` CRD is removed while the job runs (and put back later), so this test has
//! a control plane of its own (a test binary of its own).

mod support;

use std::time::Duration;

use bkops::api::common::Phase;
use bkops::api::{BkRun, ProcessJob};
use bkops::crdgen::CrdKind;
use bkops::sim::System;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams};
use support::env::{Env, EnvOptions};
use support::{run_of, status};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn failing_record_writes_never_stop_the_job_and_hold_the_deletion_until_they_land() {
    let env = Env::with(
        "records-fail",
        EnvOptions {
            job_ms: 5000,
            ..EnvOptions::default()
        },
    )
    .await;
    let client = env.ns.client();
    env.apply(
        "apiVersion: bkops.io/v1alpha1\nkind: ProcessJob\nmetadata: {name: restart}\nspec: {bkBizId: 2, jobObject: process, jobAction: restart, scope: {bkSetEnv: \"3\"}}\n",
    )
    .await;
    env.wait_for::<ProcessJob>("restart", WAIT, |o| {
        status(o).phase == Some(Phase::Running) && run_of(o).job_id.is_some()
    })
    .await;

    // The records go away, and every record write fails from now on.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = CrdKind::BkRun.crd().metadata.name.unwrap_or_default();
    crds.delete(&name, &DeleteParams::default())
        .await
        .expect("CRD deleted");
    let deadline = tokio::time::Instant::now() + WAIT;
    while crds.get_opt(&name).await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "CRD never gone");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The job is followed to its end all the same.
    let done = env
        .wait_for::<ProcessJob>("restart", WAIT, |o| {
            status(o).phase == Some(Phase::Succeeded)
        })
        .await;
    let job = run_of(&done).job_id;

    // Deleted: held while its record cannot be written.
    env.api::<ProcessJob>()
        .delete("restart", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        env.api::<ProcessJob>()
            .get_opt("restart")
            .await
            .expect("get")
            .is_some(),
        "let go without its record"
    );

    // The records come back: the record is written, then the object goes.
    bkops::local::install_crds(&client)
        .await
        .expect("CRDs back");
    let deadline = tokio::time::Instant::now() + WAIT;
    while env
        .api::<ProcessJob>()
        .get_opt("restart")
        .await
        .expect("get")
        .is_some()
    {
        assert!(tokio::time::Instant::now() < deadline, "never let go");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let records: Api<BkRun> = Api::namespaced(client, env.ns.name());
    let recs = records
        .list(&ListParams::default().labels("bkops.io/job-name=restart"))
        .await
        .expect("records")
        .items;
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].spec.phase, Phase::Succeeded);
    assert_eq!(recs[0].spec.job_id, job);
    assert_eq!(env.creates(System::Gsekit).await, 1);
    env.stop().await;
}
