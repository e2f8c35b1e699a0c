//! Kubernetes Events, published off the reconcile path.
//!
//! Events are best effort, and the operator makes one per phase change: three per run. Publishing
//! them from the reconcile would put an API request on the path to every submission, so they go
//! through a bounded queue that a few tasks drain. Under a burst (thousands of objects applied at
//! once) they lag behind the status writes instead of competing with them; when the queue is full
//! an Event is dropped and counted (`bkops_events_total{outcome="dropped"}`), never waited for.
//!
//! Each Event is published by a fresh [`Recorder`], as kube's documentation intends (one per
//! reconcile). A long-lived one keeps every Event it published for six minutes, to aggregate
//! repeats into a series, and scans them all on each publish: under a burst, thousands. The
//! operator's Events do not repeat (one per phase change, naming the object's resourceVersion),
//! so that cache would never aggregate anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::metrics::Metrics;

/// Events waiting to be published; beyond this, new ones are dropped.
pub const QUEUE_CAPACITY: usize = 16_384;
/// Events published at once.
pub const PUBLISHERS: usize = 4;

/// The queue Events are published through.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<(Event, ObjectReference)>,
    /// Queued plus being published.
    pending: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Events {
    /// Starts the publishers (on the current Tokio runtime). They stop once every clone of the
    /// returned handle is dropped and the queue is empty.
    pub fn start(client: Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE_CAPACITY);
        let pending = Arc::new(AtomicUsize::new(0));
        let drained = pending.clone();
        let counters = metrics.clone();
        tokio::spawn(
            futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).for_each_concurrent(
                PUBLISHERS,
                move |(event, reference)| {
                    let recorder = Recorder::new(client.clone(), reporter.clone());
                    let drained = drained.clone();
                    let counters = counters.clone();
                    async move {
                        let outcome = match recorder.publish(&event, &reference).await {
                            Ok(()) => "published",
                            Err(e) => {
                                debug!(error = %e, reason = %event.reason, "publishing an Event failed");
                                "failed"
                            }
                        };
                        counters.count_event(outcome);
                        drained.fetch_sub(1, Ordering::SeqCst);
                    }
                },
            ),
        );
        Events {
            tx,
            pending,
            metrics,
        }
    }

    /// Queues `event` about `reference`; never waits. A full queue drops it (counted).
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.try_send((event, reference)).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.metrics.count_event("dropped");
            warn!("the Event queue is full; an Event was dropped");
        }
    }

    /// Waits until every queued Event is published (or failed), at most `within`. For shutdown.
    pub async fn flush(&self, within: Duration) {
        let drained = async {
            while self.pending.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(within, drained).await.is_err() {
            warn!(
                pending = self.pending.load(Ordering::SeqCst),
                "Events still unpublished at shutdown"
            );
        }
    }
}
