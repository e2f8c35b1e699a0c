//! Wiring: one controller per job kind over a shared context, the malformed-object guard,
//! leader election, `/metrics` `/healthz` `/readyz`, and graceful shutdown.

pub mod batch;
pub mod cached;
pub mod connection;
pub mod context;
pub mod deps;
pub mod events;
pub mod health;
pub mod metrics;
pub mod projection;
pub mod retention;
pub mod store;
pub mod systems;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::{ApiResource, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use rand::Rng;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::api::common::{FIELD_MANAGER, Phase};
use crate::api::{AgentJob, ExecuteJob, ProcessJob, Taskflow};
use crate::run::JobKind;
use crate::run::act::{self, Error, Next};
use cached::CachedObject;
use metrics::{Metrics, ReconcileLabels};

pub use context::{Context, LeaderElection, OperatorConfig, default_identity};
pub use health::{Health, WATCH_STALL, serve_http};

/// The reconciles of one kind, in two lanes of at most `concurrency` each, each taken in the order
/// its reconciles became due. kube-runtime's own limit picks the next among the due objects in
/// hash order, so under a backlog (thousands applied at once) some waited far longer than
/// others; tokio's semaphore is first in, first out. Waiting here costs a small future per due
/// object.
///
/// Reconciles that follow a job already running upstream (polls, starts, cancels) have a lane of
/// their own, so that new objects never queue behind them: during a burst of thousands the
/// follow-ups of the first ones would otherwise take the slots the later ones' submissions wait
/// for.
struct Slots {
    decide: tokio::sync::Semaphore,
    follow: tokio::sync::Semaphore,
    stopping: CancellationToken,
}

/// Which of its kind's lanes a reconcile waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// Everything but following: new objects, reruns, resolves, finished objects.
    Decide,
    /// A run with a job id that has not ended: polls, starts, cancels.
    Follow,
}

impl Lane {
    /// Read off the cached object without decoding it: its status names a job of a run that
    /// has not ended. A wrong guess only puts a reconcile in the other lane.
    fn of(obj: &CachedObject) -> Lane {
        use serde::Deserialize;
        #[derive(Deserialize)]
        struct Status {
            run: Option<Run>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Run {
            job_id: Option<serde_json::Value>,
            phase: Option<serde_json::Value>,
        }
        let run = obj
            .status_as::<Status>()
            .and_then(Result::ok)
            .and_then(|s| s.run);
        let has_job = run
            .as_ref()
            .and_then(|r| r.job_id.as_ref())
            .is_some_and(|j| !j.is_null());
        let ended = run
            .and_then(|r| r.phase)
            .and_then(|p| Phase::deserialize(p).ok())
            .is_some_and(Phase::is_final);
        if has_job && !ended {
            Lane::Follow
        } else {
            Lane::Decide
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Lane::Decide => "decide",
            Lane::Follow => "follow",
        }
    }
}

async fn reconcile<K: JobKind>(
    obj: Arc<CachedObject>,
    ctx: Arc<Context>,
    slots: Arc<Slots>,
) -> Result<Action, Error> {
    if projection::is_projection(&obj) {
        // Settled as the cache shows it: nothing to do until it changes (a change comes with
        // the whole object). A record whose write failed is written from the object read now.
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        ctx.life.forget_own_write(&uid);
        if !ctx.life.record_pending(&uid) {
            ctx.metrics
                .reconciles
                .get_or_create(&ReconcileLabels {
                    kind: K::NAME,
                    outcome: "idle",
                })
                .inc();
            return Ok(Action::await_change());
        }
        let (Some(ns), Some(name)) = (obj.namespace(), obj.metadata.name.clone()) else {
            return Ok(Action::await_change());
        };
        let api: Api<CachedObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &ApiResource::erase::<K>(&()));
        return match api.get_opt(&name).await {
            Ok(Some(whole)) => Box::pin(reconcile::<K>(Arc::new(whole), ctx, slots)).await,
            Ok(None) => Ok(Action::await_change()),
            Err(e) => {
                warn!(kind = K::NAME, %ns, %name, error = %e, "reading a settled object failed");
                Ok(Action::requeue(Duration::from_secs(10)))
            }
        };
    }
    // The lane of the newest state this process knows: its own last write's, while the watch
    // lags it.
    let own_lane = obj
        .metadata
        .uid
        .as_deref()
        .and_then(|uid| ctx.life.own_write_following(uid));
    let lane = match own_lane {
        Some(true) => Lane::Follow,
        Some(false) => Lane::Decide,
        None => Lane::of(&obj),
    };
    let permits = match lane {
        Lane::Decide => &slots.decide,
        Lane::Follow => &slots.follow,
    };
    let waiting = std::time::Instant::now();
    let Ok(_slot) = permits.acquire().await else {
        return Ok(Action::await_change());
    };
    ctx.metrics
        .slot_wait_seconds
        .get_or_create(&metrics::LaneLabels {
            kind: K::NAME,
            lane: lane.as_str(),
        })
        .observe(waiting.elapsed().as_secs_f64());
    if slots.stopping.is_cancelled() {
        // Shutting down: reconciles still waiting for a slot start nothing new.
        return Ok(Action::await_change());
    }
    // Boxed: the reconcile's state machine is large, and only the ones holding a slot need it.
    // A panic is caught here: it is one object's problem, and uncaught it would end the
    // controller of its whole kind.
    let outcome =
        std::panic::AssertUnwindSafe(Box::pin(reconcile_one::<K>(obj.clone(), ctx.clone())))
            .catch_unwind()
            .await;
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            report_panic::<K>(&ctx, &obj, panic_text(panic.as_ref()));
            Ok(Action::requeue(PANIC_RETRY))
        }
    }
}

/// When a reconcile that panicked is tried again.
const PANIC_RETRY: Duration = Duration::from_secs(300);

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// A reconcile that panicked: counted, logged and told on the object as a Warning Event. The
/// status is left alone: it may describe a job in flight, which the next reconcile follows.
fn report_panic<K: JobKind>(ctx: &Context, obj: &CachedObject, text: &str) {
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::NAME,
            outcome: "panic",
        })
        .inc();
    let (Some(ns), Some(name)) = (obj.namespace(), obj.metadata.name.clone()) else {
        return;
    };
    error!(kind = K::NAME, %ns, %name, panic = text, "reconcile panicked; trying again in 5 minutes");
    let note = format!(
        "bkops failed while handling this object ({text}); other objects are not affected. \
         It tries again in 5 minutes; please report this as a bug."
    );
    warn_on::<K>(ctx, obj, &ns, &name, "ReconcilePanicked", &note);
}

/// Publishes a Warning Event about a cached object of kind `K` (one that could not be read as
/// `K`, or whose reconcile failed), so it works without the typed object.
fn warn_on<K: JobKind>(
    ctx: &Context,
    obj: &CachedObject,
    ns: &str,
    name: &str,
    reason: &str,
    note: &str,
) {
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(name.to_owned()),
        namespace: Some(ns.to_owned()),
        uid: obj.metadata.uid.clone(),
        ..Default::default()
    };
    ctx.events().publish(
        kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        },
        reference,
    );
}

async fn reconcile_one<K: JobKind>(
    obj: Arc<CachedObject>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    // One span per reconcile: every log line inside names the object and its run.
    let span = tracing::info_span!(
        "reconcile",
        kind = K::NAME,
        ns = obj.metadata.namespace.as_deref().unwrap_or_default(),
        name = obj.metadata.name.as_deref().unwrap_or_default(),
        run = tracing::field::Empty,
    );
    match obj.parse::<K>() {
        Ok(typed) => {
            if let Some(key) = typed
                .job_status()
                .and_then(|s| s.run.as_ref())
                .map(|r| &r.key)
            {
                span.record("run", key.as_str());
            }
            use tracing::Instrument as _;
            let next = act::reconcile(&ctx.life, typed, K::NAME)
                .instrument(span)
                .await?;
            Ok(match next {
                Next::Requeue(after) => Action::requeue(after),
                Next::AwaitChange => Action::await_change(),
            })
        }
        Err(e) => {
            // A malformed object must not stop the watch of its kind: say so on the object and
            // move on.
            ctx.metrics
                .reconciles
                .get_or_create(&ReconcileLabels {
                    kind: K::NAME,
                    outcome: "malformed",
                })
                .inc();
            report_malformed::<K>(&ctx, &obj, &e).await;
            Ok(Action::await_change())
        }
    }
}

async fn report_malformed<K: JobKind>(ctx: &Context, obj: &CachedObject, error: &str) {
    let (Some(ns), Some(name)) = (obj.namespace(), obj.metadata.name.clone()) else {
        return;
    };
    warn!(%ns, %name, error, "malformed object");
    let message = format!(
        "malformed object, cannot be read as {}: {error}",
        K::kind(&())
    );
    #[derive(serde::Deserialize)]
    struct Status {
        message: Option<String>,
    }
    let already = obj
        .status_as::<Status>()
        .and_then(Result::ok)
        .and_then(|s| s.message)
        == Some(message.clone());
    if already {
        return;
    }
    let now = chrono::Utc::now();
    let generation = obj.metadata.generation.unwrap_or(0);
    let patch = json!({"status": {
        "observedGeneration": generation,
        "phase": "Failed",
        "message": message,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "MalformedObject", "message": message, "lastTransitionTime": now, "observedGeneration": generation},
            {"type": "Stalled", "status": "True", "reason": "MalformedObject", "message": message, "lastTransitionTime": now, "observedGeneration": generation},
        ],
    }});
    // The Event always lands; the status write may not (1.20 validates a status write against
    // the whole object, whose spec is what is broken).
    warn_on::<K>(ctx, obj, &ns, &name, "MalformedObject", &message);
    let api: Api<CachedObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &ApiResource::erase::<K>(&()));
    if let Err(e) = api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
    {
        warn!(%ns, %name, error = %e, "could not write the status of a malformed object");
    }
}

fn error_policy<K: JobKind>(_obj: Arc<CachedObject>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::NAME,
            outcome: err.category(),
        })
        .inc();
    let base = if err.category() == "conflict" {
        // A decision made on a cache that was behind the object: decided again shortly.
        debug!(kind = K::NAME, error = %err, "status write conflicted; deciding again");
        0.5
    } else {
        warn!(kind = K::NAME, error = %err, "reconcile failed");
        5.0
    };
    Action::requeue(Duration::from_secs_f64(
        base * rand::rng().random_range(1.0..2.0),
    ))
}

/// Reconciles are triggered by what people change (spec, annotations, finalizers, deletion),
/// never by the operator's own status writes; running jobs are followed by requeues.
fn trigger_hash(obj: &CachedObject) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut h);
    obj.metadata.annotations.hash(&mut h);
    obj.metadata.finalizers.hash(&mut h);
    obj.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

async fn run_kind<K: JobKind>(
    ctx: Arc<Context>,
    ns: Option<String>,
    token: CancellationToken,
    health: Health,
) {
    let ar = ApiResource::erase::<K>(&());
    let api: Api<CachedObject> = match &ns {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
        None => Api::all_with(ctx.client.clone(), &ar),
    };
    let writer = reflector::store::Writer::new(ar.clone());
    let reader = writer.as_reader();
    ctx.watch_store(K::NAME, reader.clone());
    // A job that others depend on wakes them when it changes (`spec.dependsOn`).
    let woken = ctx.deps.waker(K::NAME, ns.clone());
    let wake_ar = ar.clone();
    let woken = futures::stream::unfold(woken, |mut rx| async move {
        rx.recv().await.map(|job| (job, rx))
    })
    .map(move |(ns, name)| ObjectRef::new_with(&name, wake_ar.clone()).within(&ns));
    let index = ctx.clone();
    use futures::TryStreamExt as _;
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .inspect(move |event| health.watch_event(K::NAME, event.is_ok()))
        .inspect(move |event| {
            if let Ok(event) = event {
                index.deps.observe(K::NAME, event);
            }
        })
        // Settled objects are cached as a small projection (`projection.rs`).
        .map_ok(|event| {
            event.modify(|obj| {
                let whole = std::mem::replace(obj, CachedObject::new(""));
                *obj = projection::for_cache::<K>(whole, chrono::Utc::now());
            })
        })
        // `CachedObject` skips managedFields as it decodes (nothing reads them).
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash, PredicateConfig::default());
    let slots = Arc::new(Slots {
        decide: tokio::sync::Semaphore::new(usize::from(ctx.config.concurrency)),
        follow: tokio::sync::Semaphore::new(usize::from(ctx.config.concurrency)),
        stopping: token.clone(),
    });
    // No limit in kube-runtime (it still never reconciles one object twice at once): `Slots` is
    // the limit.
    Controller::for_stream_with(stream, reader, ar)
        .reconcile_on(woken)
        .with_config(controller::Config::default())
        .graceful_shutdown_on(token.cancelled_owned())
        .run(
            move |obj, ctx| reconcile::<K>(obj, ctx, slots.clone()),
            error_policy::<K>,
            ctx,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                match e {
                    controller::Error::ReconcilerFailed(..) => {}
                    other => warn!(kind = K::NAME, error = %other, "controller"),
                }
            }
        })
        .await;
}

/// Runs the four controllers until `token` is cancelled (or leadership is lost, which is an
/// error so that the process restarts and competes again).
pub async fn run(
    client: Client,
    config: OperatorConfig,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let health = Health::default();
    if let Some(addr) = config.metrics_addr {
        let local = serve_http(addr, metrics.clone(), health.clone(), token.clone()).await?;
        info!(%local, "serving /metrics, /healthz, /readyz");
    }
    let mut leadership = None;
    if let Some(le) = &config.leader_election {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &le.lease_name)
            .with_namespace(&le.namespace)
            .with_identity(&config.identity)
            .with_duration(le.duration_secs)
            .with_grace((le.duration_secs / 3).max(1))
            .with_field_manager(FIELD_MANAGER)
            .build()
            .await?;
        let (mut rx, handle) = manager.watch().await;
        info!(lease = %le.lease_name, namespace = %le.namespace, identity = %config.identity, "waiting for leadership");
        loop {
            if *rx.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = rx.changed() => changed?,
                _ = token.cancelled() => return Ok(()),
            }
        }
        info!("leading");
        leadership = Some((rx, handle));
    }
    metrics.leader.set(1);
    let ctx = Arc::new(Context::new(client, config.clone(), metrics.clone()));
    let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = token.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    for ns in namespaces {
        let (c, t, h) = (&ctx, &controllers, &health);
        tasks.spawn(run_kind::<ProcessJob>(
            c.clone(),
            ns.clone(),
            t.clone(),
            h.clone(),
        ));
        tasks.spawn(run_kind::<Taskflow>(
            c.clone(),
            ns.clone(),
            t.clone(),
            h.clone(),
        ));
        tasks.spawn(run_kind::<AgentJob>(
            c.clone(),
            ns.clone(),
            t.clone(),
            h.clone(),
        ));
        tasks.spawn(run_kind::<ExecuteJob>(c.clone(), ns, t.clone(), h.clone()));
    }
    if let Some(keep) = config.run_retention {
        tasks.spawn(retention::run(
            ctx.client.clone(),
            config.namespaces.clone(),
            keep,
            controllers.clone(),
        ));
    }
    health.set_ready(true);
    info!("controllers running");
    let lost = async {
        match &mut leadership {
            Some((rx, _)) => loop {
                if rx.changed().await.is_err() || !*rx.borrow() {
                    return true;
                }
            },
            None => std::future::pending::<bool>().await,
        }
    };
    // A controller ends only on shutdown: one that ends before is a kind nobody follows any
    // more, so the process reports itself unhealthy and exits for a fresh start.
    let stopped = async {
        match tasks.join_next().await {
            Some(Err(e)) if e.is_panic() => Some("panicked".to_owned()),
            Some(_) => Some("ended".to_owned()),
            None => None,
        }
    };
    let (lost_leadership, stopped) = tokio::select! {
        l = lost => (l, None),
        _ = token.cancelled() => (false, None),
        // On shutdown the controllers end too, and either branch may be the one taken.
        s = stopped => (false, s.filter(|_| !token.is_cancelled())),
    };
    if stopped.is_some() {
        health.set_stopped();
    }
    health.set_ready(false);
    controllers.cancel();
    while tasks.join_next().await.is_some() {}
    ctx.events().flush(Duration::from_secs(5)).await;
    if let Some((rx, handle)) = leadership {
        // Dropping the receiver makes the manager release the Lease.
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
    }
    metrics.leader.set(0);
    if lost_leadership {
        anyhow::bail!("lost leadership; exiting so that a fresh process competes again");
    }
    if let Some(how) = stopped {
        anyhow::bail!("a controller {how}; exiting so that a fresh process starts");
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(status: serde_json::Value) -> CachedObject {
        let mut obj = CachedObject::new("p");
        if !status.is_null() {
            obj.status = serde_json::value::to_raw_value(&status).ok();
        }
        obj
    }

    #[test]
    fn a_panic_message_is_read_from_either_payload() {
        let text: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_text(text.as_ref()), "boom");
        let owned: Box<dyn std::any::Any + Send> = Box::new(format!("at {}", 7));
        assert_eq!(panic_text(owned.as_ref()), "at 7");
        let other: Box<dyn std::any::Any + Send> = Box::new(7_u8);
        assert_eq!(panic_text(other.as_ref()), "a panic without a message");
    }

    #[test]
    fn only_a_run_with_a_job_that_has_not_ended_is_followed() {
        let cases = [
            (json!(null), Lane::Decide),
            (json!({"phase": "Pending"}), Lane::Decide),
            (json!({"run": {"phase": "Submitting"}}), Lane::Decide),
            (
                json!({"run": {"phase": "Submitting", "jobId": null}}),
                Lane::Decide,
            ),
            (
                json!({"run": {"phase": "Running", "jobId": "7"}}),
                Lane::Follow,
            ),
            // Created, not yet started (two-phase systems).
            (
                json!({"run": {"phase": "Submitting", "jobId": "7"}}),
                Lane::Follow,
            ),
            (
                json!({"run": {"phase": "Succeeded", "jobId": "7"}}),
                Lane::Decide,
            ),
            (
                json!({"run": {"phase": "Cancelled", "jobId": "7"}}),
                Lane::Decide,
            ),
            // A phase this version cannot read: a job it has not seen end.
            (
                json!({"run": {"phase": "Paused", "jobId": "7"}}),
                Lane::Follow,
            ),
        ];
        for (status, lane) in cases {
            assert_eq!(Lane::of(&object(status.clone())), lane, "{status}");
        }
    }
}
