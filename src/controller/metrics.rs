//! Prometheus metrics. Labels are bounded: kinds, systems, calls, outcomes, phases and the
//! BkConnections (a few per cluster) — never a job's name, a job id or error text.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::bk::WaitObserver;

/// Labels of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Job kind.
    pub kind: &'static str,
    /// The lifecycle step taken, or the error category.
    pub outcome: &'static str,
}

/// Labels of a submission.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubmissionLabels {
    /// Job kind.
    pub kind: &'static str,
    /// submitted, adopted, rejected, deferred, ambiguous.
    pub outcome: &'static str,
}

/// Labels of a BlueKing call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// gsekit, bkflow, nodeman, job.
    pub system: &'static str,
    /// create, start, poll, cancel, search.
    pub call: &'static str,
    /// ok, transient, rejected, ambiguous.
    pub outcome: &'static str,
}

/// Labels of a duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallKindLabels {
    /// System.
    pub system: &'static str,
    /// Call.
    pub call: &'static str,
}

/// Reconcile outcomes that need a person and may happen once per object: their series exist from
/// the start at 0, so that an alert on `increase()` sees the first one (a series that appears at 1
/// has no increase).
pub const RARE_OUTCOMES: [&str; 2] = ["malformed", "panic"];

/// The classes of `bkops_bk_call_wait_seconds`: calls that move a job (creates and operations,
/// served first), then reads (polls, searches).
pub const WAIT_CLASSES: [&str; 2] = ["job", "read"];

/// Labels of a wait for a connection's limits: the connection and the class of call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabels {
    /// `namespace/name` of the BkConnection.
    pub connection: String,
    /// `job` (creates and operations on a job, served first) or `read` (polls, searches).
    pub class: &'static str,
}

/// Labels of a phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Job kind.
    pub kind: &'static str,
    /// Phase.
    pub phase: &'static str,
}

/// Labels of a slot wait: kind and lane (`decide`, `follow`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    /// Kind.
    pub kind: &'static str,
    /// decide or follow.
    pub lane: &'static str,
}

/// Labels of a published (or not) Event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// published, failed, dropped.
    pub outcome: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by kind and outcome.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// How long a reconcile waited for one of its kind's and lane's slots (`--concurrency`).
    pub slot_wait_seconds: Family<LaneLabels, Histogram>,
    /// Submissions by kind and outcome.
    pub submissions: Family<SubmissionLabels, Counter>,
    /// BlueKing calls by system, call and outcome.
    pub bk_calls: Family<CallLabels, Counter>,
    /// BlueKing call latency.
    pub bk_call_seconds: Family<CallKindLabels, Histogram>,
    /// How long BlueKing calls waited for their connection's limits before being sent.
    pub bk_call_wait_seconds: Family<WaitLabels, Histogram>,
    /// Phase changes written, by kind and new phase.
    pub phase_transitions: Family<PhaseLabels, Counter>,
    /// Status writes by kind.
    pub status_writes: Family<ReconcileLabels, Counter>,
    /// Run record (`BkRun`) writes by kind and outcome: create, update, failed.
    pub run_record_writes: Family<ReconcileLabels, Counter>,
    /// Events by outcome.
    pub events: Family<OutcomeLabels, Counter>,
    /// 1 while this replica leads (or leader election is off).
    pub leader: Gauge,
    /// Job resources by kind and phase, counted from the controllers' caches at scrape time.
    pub runs: Family<PhaseLabels, Gauge>,
    stores: std::sync::Mutex<
        Vec<(
            &'static str,
            kube::runtime::reflector::Store<super::cached::CachedObject>,
        )>,
    >,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bkops");
        let reconciles = Family::default();
        let submissions = Family::default();
        let slot_wait_seconds = Family::<LaneLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let bk_calls = Family::default();
        let bk_call_seconds = Family::<CallKindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        // 1 ms to 524 s: at the default 10 calls/s, thousands of jobs at once wait minutes.
        let bk_call_wait_seconds = Family::<WaitLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 20))
        });
        let phase_transitions = Family::default();
        let status_writes = Family::default();
        let run_record_writes = Family::default();
        let events = Family::default();
        let leader = Gauge::default();
        let runs = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and outcome",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_slot_wait_seconds",
            "How long reconciles waited for a slot of their kind and lane (--concurrency)",
            slot_wait_seconds.clone(),
        );
        registry.register(
            "submissions",
            "BlueKing submissions by kind and outcome",
            submissions.clone(),
        );
        registry.register(
            "bk_calls",
            "BlueKing calls by system, call and outcome",
            bk_calls.clone(),
        );
        registry.register(
            "bk_call_duration_seconds",
            "BlueKing call latency",
            bk_call_seconds.clone(),
        );
        registry.register(
            "bk_call_wait_seconds",
            "How long BlueKing calls waited for their connection's rateLimit (qps and burst, \
             maxInFlight, a 429's pause) before being sent, by connection and class (job, read)",
            bk_call_wait_seconds.clone(),
        );
        registry.register(
            "phase_transitions",
            "Phase changes by kind and new phase",
            phase_transitions.clone(),
        );
        registry.register(
            "status_writes",
            "Status writes by kind and reason",
            status_writes.clone(),
        );
        registry.register(
            "run_record_writes",
            "Run record (BkRun) writes by kind and outcome: create, update, failed (retried)",
            run_record_writes.clone(),
        );
        registry.register(
            "events",
            "Kubernetes Events by outcome: published, failed, dropped (queue full)",
            events.clone(),
        );
        registry.register("leader", "1 while this replica leads", leader.clone());
        registry.register("runs", "Job resources by kind and phase", runs.clone());
        Metrics {
            registry,
            reconciles,
            slot_wait_seconds,
            submissions,
            bk_calls,
            bk_call_seconds,
            bk_call_wait_seconds,
            phase_transitions,
            status_writes,
            run_record_writes,
            events,
            leader,
            runs,
            stores: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// Lets `bkops_runs` count the objects in a controller's cache, and starts the kind's
    /// [`RARE_OUTCOMES`] at 0.
    pub fn watch_store(
        &self,
        kind: &'static str,
        store: kube::runtime::reflector::Store<super::cached::CachedObject>,
    ) {
        self.zero_rare_outcomes(kind);
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((kind, store));
    }

    /// What tells `bkops_bk_call_wait_seconds` the waits of the calls of `connection`
    /// (`namespace/name`).
    pub fn wait_observer(&self, connection: &str) -> WaitObserver {
        let family = self.bk_call_wait_seconds.clone();
        let [job, read] = WAIT_CLASSES.map(|class| {
            family.get_or_create_owned(&WaitLabels {
                connection: connection.to_owned(),
                class,
            })
        });
        WaitObserver(Arc::new(move |moves_a_job, waited| {
            let h = if moves_a_job { &job } else { &read };
            h.observe(waited.as_secs_f64());
        }))
    }

    fn zero_rare_outcomes(&self, kind: &'static str) {
        for outcome in RARE_OUTCOMES {
            let _ = self
                .reconciles
                .get_or_create(&ReconcileLabels { kind, outcome });
        }
    }

    /// Counts an Event by outcome.
    pub fn count_event(&self, outcome: &'static str) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    fn count_runs(&self) {
        #[derive(serde::Deserialize)]
        struct PhaseOnly {
            phase: Option<String>,
        }
        self.runs.clear();
        let stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, store) in stores.iter() {
            for obj in store.state() {
                let phase = obj
                    .status_as::<PhaseOnly>()
                    .and_then(Result::ok)
                    .and_then(|s| s.phase)
                    .as_deref()
                    .and_then(phase_name)
                    .unwrap_or("Pending");
                self.runs.get_or_create(&PhaseLabels { kind, phase }).inc();
            }
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        self.count_runs();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The static name of a phase written in status (labels must be bounded).
fn phase_name(p: &str) -> Option<&'static str> {
    use crate::api::common::Phase;
    [
        Phase::Pending,
        Phase::Suspended,
        Phase::Submitting,
        Phase::Running,
        Phase::WaitingForUser,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
        Phase::Unknown,
    ]
    .into_iter()
    .map(Phase::as_str)
    .find(|n| *n == p)
}

impl crate::run::act::Counters for Metrics {
    fn reconcile(&self, kind: &'static str, outcome: &'static str) {
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, outcome })
            .inc();
    }

    fn status_write(&self, kind: &'static str, why: &'static str) {
        self.status_writes
            .get_or_create(&ReconcileLabels { kind, outcome: why })
            .inc();
    }

    fn phase(&self, kind: &'static str, phase: &'static str) {
        self.phase_transitions
            .get_or_create(&PhaseLabels { kind, phase })
            .inc();
    }

    fn submission(&self, kind: &'static str, outcome: &'static str) {
        self.submissions
            .get_or_create(&SubmissionLabels { kind, outcome })
            .inc();
    }

    fn record_write(&self, kind: &'static str, outcome: &'static str) {
        self.run_record_writes
            .get_or_create(&ReconcileLabels { kind, outcome })
            .inc();
    }

    fn bk_call(
        &self,
        system: &'static str,
        call: &'static str,
        outcome: &'static str,
        took: std::time::Duration,
    ) {
        self.bk_calls
            .get_or_create(&CallLabels {
                system,
                call,
                outcome,
            })
            .inc();
        self.bk_call_seconds
            .get_or_create(&CallKindLabels { system, call })
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_outcomes_start_at_zero_and_count_on() {
        let m = Metrics::default();
        m.zero_rare_outcomes("ProcessJob");
        let text = m.encode();
        for outcome in RARE_OUTCOMES {
            let line =
                format!(r#"bkops_reconciles_total{{kind="ProcessJob",outcome="{outcome}"}} 0"#);
            assert!(text.contains(&line), "no {line} in\n{text}");
        }
        m.reconciles
            .get_or_create(&ReconcileLabels {
                kind: "ProcessJob",
                outcome: "panic",
            })
            .inc();
        m.zero_rare_outcomes("ProcessJob");
        assert!(
            m.encode()
                .contains(r#"bkops_reconciles_total{kind="ProcessJob",outcome="panic"} 1"#),
            "zeroing again must not reset a count"
        );
    }
}
