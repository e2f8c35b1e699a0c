//! The bare controller: the reference `bkops bench` judges the operator's latency and throughput
//! against, measured on the same API server and simulator in the same run.
//!
//! A minimal watcher of one namespace that, for each job object with no status yet, makes the
//! calls the operator makes for a run and nothing else: the intent PATCH (conditional on the
//! watched resourceVersion), the BlueKing create (and start, for BKFlow and JOB v3), the job-id
//! PATCH, polls on the operator's schedule, and the end PATCH. No decisions, no run records, no
//! Events, no search, no retries. It runs as its own process (`bkops bench-bare`, hidden), as the
//! operator does, so that its CPU time and memory can be read from `/proc`; it prints `ready`
//! once its watches have listed the namespace.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Semaphore;

use super::status;
use crate::api::JobStatus;
use crate::api::common::RunStatus;
use crate::bk::facade::JobRef;
use crate::controller::connection::{Connections, Resolved};
use crate::run::act::interval;
use crate::run::act::seams::{Clock, SystemClock};
use crate::run::kinds::{JOB_KINDS, KindEntry};
use crate::run::run_key;
use crate::run::status::apply_progress;

/// `bkops bench-bare`: what the bench starts the bare controller with.
#[derive(clap::Args, Debug, Clone)]
pub struct BareArgs {
    /// Kubeconfig of the API server.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The namespace whose job objects it follows.
    #[arg(long)]
    pub namespace: String,
    /// The BkConnection (in that namespace) its BlueKing calls go through.
    #[arg(long, default_value = "blueking")]
    pub connection: String,
    /// Objects in their submit step (intent, create, start, job id) at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// First poll interval, seconds (the operator's `--poll-initial-seconds`).
    #[arg(long, default_value_t = 2.0)]
    pub poll_initial_seconds: f64,
    /// Longest poll interval, seconds (the operator's `--poll-max-seconds`).
    #[arg(long, default_value_t = 30.0)]
    pub poll_max_seconds: f64,
}

/// What every object's task shares.
struct Bare {
    conn: Resolved,
    /// Slots of the submit step.
    submitting: Semaphore,
    poll_initial: Duration,
    poll_max: Duration,
    clock: SystemClock,
}

/// Runs the bare controller until it is killed.
pub async fn run(args: BareArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = crate::cli::kube_client(Some(&args.kubeconfig)).await?;
    let conn = Connections::new(client.clone(), Some(args.connection.clone()))
        .resolve(&args.namespace, None)
        .await?;
    let bare = Arc::new(Bare {
        conn,
        submitting: Semaphore::new(args.concurrency.max(1)),
        poll_initial: Duration::from_secs_f64(args.poll_initial_seconds),
        poll_max: Duration::from_secs_f64(args.poll_max_seconds),
        clock: SystemClock::default(),
    });
    let watches = JOB_KINDS.iter().map(|kind| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &args.namespace, &(kind.resource)());
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .map(move |event| (kind, api.clone(), event))
            .boxed()
    });
    let mut events = futures::stream::select_all(watches);
    let (mut listed, mut taken) = (0, HashSet::new());
    while let Some((kind, api, event)) = events.next().await {
        let obj = match event {
            Ok(watcher::Event::InitDone) => {
                listed += 1;
                if listed == JOB_KINDS.len() {
                    crate::outln!("ready")?;
                }
                continue;
            }
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => obj,
            _ => continue,
        };
        // Only a new object starts a run, once (its own intent comes back with a status).
        if obj.data.get("status").is_some() || !taken.insert(obj.name_any()) {
            continue;
        }
        let bare = bare.clone();
        tokio::spawn(async move {
            let name = obj.name_any();
            if let Err(e) = bare.follow(&api, kind, obj).await {
                crate::errln!("bare controller: {} {name}: {e:#}", kind.name);
            }
        });
    }
    Ok(())
}

impl Bare {
    /// One object's run: submitted within a slot, then polled to its end.
    async fn follow(
        &self,
        api: &Api<DynamicObject>,
        kind: &KindEntry,
        obj: DynamicObject,
    ) -> anyhow::Result<()> {
        let (job, run, status) = {
            let _slot = self.submitting.acquire().await?;
            self.submit(api, kind, &obj).await?
        };
        self.poll_to_end(api, &obj.name_any(), job, run, status)
            .await
    }

    /// The intent (fenced on the watched resourceVersion), the create, the job id, the start.
    async fn submit(
        &self,
        api: &Api<DynamicObject>,
        kind: &KindEntry,
        obj: &DynamicObject,
    ) -> anyhow::Result<(JobRef, RunStatus, JobStatus)> {
        let name = obj.name_any();
        let generation = obj.metadata.generation.unwrap_or(1);
        let key = run_key(&obj.uid().unwrap_or_default(), generation, 0);
        let request = (kind.request)(serde_json::to_value(obj)?, &key, &self.conn.defaults)
            .map_err(anyhow::Error::msg)?;
        let (run, intent) = status::intent(&key, generation, Utc::now());
        let mut fenced = status::patch(&JobStatus::default(), &intent);
        fenced["metadata"] = serde_json::json!({"resourceVersion": obj.resource_version()});
        write(api, &name, &fenced).await?;
        let created = self.conn.client.submit(&request).await?;
        let (run, recorded) =
            status::recorded(&intent, run, &created.job, created.job_url, Utc::now());
        write(api, &name, &status::patch(&intent, &recorded)).await?;
        if created.needs_start {
            self.conn.client.start(&created.job).await?;
        }
        Ok((created.job, run, recorded))
    }

    /// Polls `job` on the operator's schedule until it is over, then writes the end.
    async fn poll_to_end(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        job: JobRef,
        run: RunStatus,
        status: JobStatus,
    ) -> anyhow::Result<()> {
        let since = run.submitted_at.unwrap_or_else(Utc::now);
        loop {
            let age = (Utc::now() - since).as_seconds_f64().max(0.0);
            let wait = interval(self.poll_initial, self.poll_max, age, self.clock.jitter());
            tokio::time::sleep(wait).await;
            // A failed poll is tried again at the next interval, as the operator does.
            let Ok(progress) = self.conn.client.progress(&job).await else {
                continue;
            };
            if !progress.phase.is_terminal() {
                continue;
            }
            let now = Utc::now();
            let (run, message) = apply_progress(&run, &progress, now);
            let end = status::ended(&status, &run, message, now);
            return write(api, name, &status::patch(&status, &end)).await;
        }
    }
}

/// A merge PATCH of `name`'s status.
async fn write(
    api: &Api<DynamicObject>,
    name: &str,
    patch: &serde_json::Value,
) -> anyhow::Result<()> {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}
