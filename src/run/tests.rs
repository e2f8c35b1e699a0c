//! `decide` as a table: object state and clock in, one decision out.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::api::common::{RetryPolicy, RunRecord};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn trigger() -> Trigger {
    Trigger {
        spec_hash: "h1".into(),
        rerun_token: None,
        rerun_requested_at: None,
    }
}

fn run(phase: Phase, job_id: Option<&str>) -> RunStatus {
    RunStatus {
        key: "abc-g1-a1".into(),
        generation: 1,
        attempt: 1,
        spec_hash: "h1".into(),
        phase,
        job_id: job_id.map(str::to_owned),
        intent_at: Some(now() - chrono::Duration::seconds(60)),
        submitted_at: job_id.map(|_| now() - chrono::Duration::seconds(59)),
        ..Default::default()
    }
}

struct World {
    common: CommonSpec,
    status: JobStatus,
    trigger: Trigger,
    generation: i64,
    invalid: Option<String>,
    deleting: bool,
    finalizer: bool,
    adopt: Option<&'static str>,
    confirm: Option<&'static str>,
    two_phase: bool,
}

impl World {
    fn new(r: Option<RunStatus>) -> Self {
        World {
            common: CommonSpec::default(),
            status: JobStatus {
                run: r,
                ..Default::default()
            },
            trigger: trigger(),
            generation: 1,
            invalid: None,
            deleting: false,
            finalizer: true,
            adopt: None,
            confirm: None,
            two_phase: false,
        }
    }

    fn decide(&self) -> Decision {
        decide(&Observed {
            now: now(),
            generation: self.generation,
            trigger: self.trigger.clone(),
            common: &self.common,
            status: &self.status,
            invalid: self.invalid.clone(),
            deleting: self.deleting,
            has_finalizer: self.finalizer,
            adopt_annotation: self.adopt,
            confirm_annotation: self.confirm,
            two_phase: self.two_phase,
            resolve_grace: Duration::from_secs(30),
        })
    }
}

fn submit(attempt: u32, retries: u32) -> Decision {
    Decision::Submit {
        attempt,
        retries,
        adopt: None,
    }
}

#[test]
fn a_new_object_submits_its_first_run() {
    assert_eq!(World::new(None).decide(), submit(1, 0));
}

#[test]
fn invalid_suspended_or_cancelled_specs_make_no_call() {
    let mut w = World::new(None);
    w.invalid = Some("spec.x: bad".into());
    assert!(matches!(
        w.decide(),
        Decision::Report {
            phase: Phase::Failed,
            reason: reason::INVALID_SPEC,
            ..
        }
    ));
    let mut w = World::new(None);
    w.common.suspend = Some(true);
    assert!(matches!(
        w.decide(),
        Decision::Report {
            phase: Phase::Suspended,
            ..
        }
    ));
    let mut w = World::new(None);
    w.common.cancel = Some(true);
    assert!(matches!(
        w.decide(),
        Decision::Report {
            phase: Phase::Cancelled,
            ..
        }
    ));
}

#[test]
fn a_running_job_is_polled_and_left_alone_by_spec_changes() {
    let mut w = World::new(Some(run(Phase::Running, Some("10"))));
    assert_eq!(w.decide(), Decision::Poll);
    w.trigger.spec_hash = "h2".into();
    w.generation = 2;
    w.common.suspend = Some(true);
    w.invalid = Some("bad".into());
    assert_eq!(
        w.decide(),
        Decision::Poll,
        "a change waits for the run in flight"
    );
}

#[test]
fn a_finished_run_waits_for_a_new_trigger() {
    let w = World::new(Some(run(Phase::Succeeded, Some("10"))));
    assert_eq!(w.decide(), Decision::Idle { requeue: None });
}

#[test]
fn spec_token_and_annotation_each_start_exactly_one_more_run() {
    let mut w = World::new(Some(run(Phase::Succeeded, Some("10"))));
    w.trigger.spec_hash = "h2".into();
    w.generation = 2;
    assert_eq!(w.decide(), submit(1, 0), "new generation, attempt 1");

    let mut w = World::new(Some(run(Phase::Succeeded, Some("10"))));
    w.trigger.rerun_token = Some("t2".into());
    assert_eq!(w.decide(), submit(2, 0), "same generation, next attempt");

    let mut w = World::new(Some(run(Phase::Succeeded, Some("10"))));
    w.trigger.rerun_requested_at = Some("2026-11-22T09:00:00Z".into());
    assert_eq!(w.decide(), submit(2, 0));
    w.status.last_handled_rerun_at = Some("2026-11-22T09:00:00Z".into());
    assert_eq!(
        w.decide(),
        Decision::Idle { requeue: None },
        "a handled annotation starts nothing"
    );
}

#[test]
fn submitting_without_an_id_is_resolved_never_resubmitted() {
    let w = World::new(Some(run(Phase::Submitting, None)));
    assert_eq!(w.decide(), Decision::Resolve);
    let mut w = World::new(Some(run(Phase::Unknown, None)));
    assert_eq!(
        w.decide(),
        Decision::Idle { requeue: None },
        "Unknown waits for a person"
    );
    w.trigger.spec_hash = "h2".into();
    assert_eq!(
        w.decide(),
        Decision::Idle { requeue: None },
        "even a new spec waits"
    );
}

#[test]
fn a_person_resolves_an_unknown_run() {
    let mut w = World::new(Some(run(Phase::Unknown, None)));
    w.adopt = Some("4242");
    assert_eq!(
        w.decide(),
        Decision::AdoptIntoRun {
            job_id: "4242".into()
        }
    );
    let mut w = World::new(Some(run(Phase::Unknown, None)));
    w.confirm = Some("some-other-key");
    assert_eq!(
        w.decide(),
        Decision::Idle { requeue: None },
        "a confirmation for another run is ignored"
    );
    w.confirm = Some("abc-g1-a1");
    assert_eq!(w.decide(), submit(2, 0));
    let mut w = World::new(Some(run(Phase::Unknown, None)));
    w.adopt = Some("not-a-number");
    assert_eq!(w.decide(), Decision::Idle { requeue: None });
}

#[test]
fn two_phase_jobs_are_started_once_recorded() {
    let mut w = World::new(Some(run(Phase::Running, Some("10"))));
    w.two_phase = true;
    assert_eq!(w.decide(), Decision::Start);
    w.status.run.as_mut().unwrap().started = true;
    assert_eq!(w.decide(), Decision::Poll);
}

#[test]
fn cancel_and_deadline_cancel_once() {
    let mut w = World::new(Some(run(Phase::Running, Some("10"))));
    w.common.cancel = Some(true);
    assert_eq!(w.decide(), Decision::Cancel { deadline: false });
    w.status.run.as_mut().unwrap().cancel_requested_at = Some(now());
    assert_eq!(
        w.decide(),
        Decision::Poll,
        "cancel is made once, then followed"
    );

    let mut w = World::new(Some(run(Phase::Running, Some("10"))));
    w.common.active_deadline_seconds = Some(30);
    assert_eq!(w.decide(), Decision::Cancel { deadline: true });
    w.common.active_deadline_seconds = Some(3600);
    assert_eq!(w.decide(), Decision::Poll);
    // Deadlines past the end of representable time (stored before the CRD bounded them) never
    // pass, and never panic.
    for secs in [i64::MAX, 10_000_000_000_000, i64::MIN] {
        w.common.active_deadline_seconds = Some(secs);
        assert_eq!(w.decide(), Decision::Poll, "{secs}");
    }
}

#[test]
fn time_arithmetic_out_of_range_is_none() {
    let t = now();
    assert_eq!(
        super::shifted(t, 60),
        Some(t + chrono::Duration::seconds(60))
    );
    assert_eq!(super::shifted(t, i64::MAX), None);
    assert_eq!(super::shifted(t, 10_000_000_000_000), None);
    assert_eq!(
        super::shifted(chrono::DateTime::<chrono::Utc>::MIN_UTC, -60),
        None
    );
}

#[test]
fn retry_only_failed_jobs_within_the_limit_after_backoff() {
    let mut failed = run(Phase::Failed, Some("10"));
    failed.reason = Some(reason::JOB_FAILED.into());
    failed.completion_time = Some(now() - chrono::Duration::seconds(5));
    let mut w = World::new(Some(failed.clone()));
    assert_eq!(
        w.decide(),
        Decision::Idle { requeue: None },
        "no retry policy"
    );
    w.common.retry = Some(RetryPolicy {
        limit: 2,
        backoff_seconds: Some(60),
    });
    assert_eq!(
        w.decide(),
        Decision::Idle {
            requeue: Some(Duration::from_secs(55))
        }
    );
    w.common.retry = Some(RetryPolicy {
        limit: 2,
        backoff_seconds: Some(0),
    });
    assert_eq!(w.decide(), submit(2, 1));
    w.status.run.as_mut().unwrap().retries = 2;
    assert_eq!(
        w.decide(),
        Decision::Idle { requeue: None },
        "limit reached"
    );

    let mut deadline = failed;
    deadline.reason = Some(reason::DEADLINE_EXCEEDED.into());
    let mut w = World::new(Some(deadline));
    w.common.retry = Some(RetryPolicy {
        limit: 2,
        backoff_seconds: Some(0),
    });
    assert_eq!(
        w.decide(),
        Decision::Idle { requeue: None },
        "only failed jobs are retried"
    );
}

#[test]
fn deferred_submissions_wait_then_reuse_their_key() {
    let mut deferred = run(Phase::Pending, None);
    deferred.reason = Some(reason::SUBMIT_DEFERRED.into());
    deferred.intent_at = Some(now() - chrono::Duration::seconds(3));
    let mut w = World::new(Some(deferred));
    assert_eq!(
        w.decide(),
        Decision::Idle {
            requeue: Some(Duration::from_secs(7))
        }
    );
    w.status.run.as_mut().unwrap().intent_at = Some(now() - chrono::Duration::seconds(30));
    assert_eq!(w.decide(), submit(1, 0));
}

#[test]
fn adopt_job_id_is_followed_once() {
    let mut w = World::new(None);
    w.common.adopt_job_id = Some("77".into());
    assert_eq!(
        w.decide(),
        Decision::Submit {
            attempt: 1,
            retries: 0,
            adopt: Some("77".into())
        }
    );
    let mut w = World::new(Some(run(Phase::Succeeded, Some("77"))));
    w.common.adopt_job_id = Some("77".into());
    w.trigger.rerun_token = Some("again".into());
    assert_eq!(
        w.decide(),
        submit(2, 0),
        "a rerun submits; the adopted job is not followed twice"
    );
    w.status.history.push(RunRecord {
        key: "x".into(),
        job_id: Some("77".into()),
        ..Default::default()
    });
}

#[test]
fn deletion_cancels_only_with_the_cancel_policy() {
    // Before a new run, whatever its policy, an object gets the finalizer: its runs are recorded
    // before it goes. So does one with a run in flight (e.g. from before run records).
    for policy in [None, Some(crate::api::common::DeletionPolicy::Cancel)] {
        let mut w = World::new(None);
        w.common.deletion_policy = policy;
        w.finalizer = false;
        assert_eq!(w.decide(), Decision::AddFinalizer, "{policy:?}");
    }
    let mut w = World::new(Some(run(Phase::Running, Some("10"))));
    w.finalizer = false;
    assert_eq!(w.decide(), Decision::AddFinalizer);
    // A finished object with nothing to run is left alone: no write (thousands of old objects
    // after an upgrade).
    let mut w = World::new(Some(run(Phase::Succeeded, Some("10"))));
    w.finalizer = false;
    assert_eq!(w.decide(), Decision::Idle { requeue: None });
    // An invalid spec starts nothing: no finalizer needed to report it.
    let mut w = World::new(None);
    w.finalizer = false;
    w.invalid = Some("bad".into());
    assert!(matches!(w.decide(), Decision::Report { .. }));
    // Orphan: let go at once, whatever the run (the act step writes its record first), even
    // a create still unclear.
    for r in [
        run(Phase::Running, Some("10")),
        run(Phase::Submitting, None),
        run(Phase::Unknown, None),
    ] {
        let mut w = World::new(Some(r));
        w.deleting = true;
        assert_eq!(w.decide(), Decision::RemoveFinalizer { warning: None });
    }
    let mut w = World::new(Some(run(Phase::Running, Some("10"))));
    w.common.deletion_policy = Some(crate::api::common::DeletionPolicy::Cancel);
    w.deleting = true;
    assert_eq!(w.decide(), Decision::CancelForDeletion);
    w.status.run.as_mut().unwrap().cancel_requested_at = Some(now());
    assert_eq!(w.decide(), Decision::RemoveFinalizer { warning: None });
    // An unclear create: found first (then cancelled), or a person says what it was.
    let mut w = World::new(Some(run(Phase::Submitting, None)));
    w.common.deletion_policy = Some(crate::api::common::DeletionPolicy::Cancel);
    w.deleting = true;
    assert_eq!(w.decide(), Decision::Resolve);
    w.status.run.as_mut().unwrap().phase = Phase::Unknown;
    assert_eq!(w.decide(), Decision::Idle { requeue: None });
    w.adopt = Some("42");
    assert_eq!(
        w.decide(),
        Decision::AdoptIntoRun {
            job_id: "42".into()
        }
    );
    w.adopt = None;
    w.confirm = Some("abc-g1-a1");
    assert_eq!(w.decide(), Decision::RemoveFinalizer { warning: None });
    // A create that was not made holds nothing.
    let mut w = World::new(Some(run(Phase::Pending, None)));
    w.finalizer = true;
    w.deleting = true;
    assert_eq!(w.decide(), Decision::RemoveFinalizer { warning: None });
    let mut w = World::new(None);
    w.deleting = true;
    w.finalizer = false;
    assert_eq!(
        w.decide(),
        Decision::Idle { requeue: None },
        "no finalizer: nothing to hold"
    );
}

#[test]
fn control_fields_do_not_change_the_spec_hash() {
    let a =
        serde_json::json!({"bkBizId": 2, "suspend": true, "cancel": false, "retry": {"limit": 1}});
    let b = serde_json::json!({"bkBizId": 2});
    let c = serde_json::json!({"bkBizId": 3});
    assert_eq!(spec_hash(&a), spec_hash(&b));
    assert_ne!(spec_hash(&b), spec_hash(&c));
    assert_eq!(run_key("1f3a9c2e-aaaa-bbbb", 3, 1), "1f3a9c2e-g3-a1");
}

#[test]
fn a_create_not_made_for_long_stalls_the_run_with_a_reason_about_why() {
    let t0 = now();
    let stall = Duration::from_secs(300);
    let at = |s| t0 + chrono::Duration::seconds(s);
    let cases = [
        (true, 0, reason::SUBMIT_DEFERRED),
        (true, 299, reason::SUBMIT_DEFERRED),
        (true, 300, reason::CONNECTION_UNREACHABLE),
        (false, 299, reason::SUBMIT_DEFERRED),
        (false, 3600, reason::SUBMIT_BLOCKED),
    ];
    for (unreachable, after, want) in cases {
        assert_eq!(
            super::deferral(unreachable, t0, at(after), stall),
            want,
            "unreachable={unreachable} after={after}"
        );
        assert!(reason::is_deferral(want));
    }
    // A stalled deferral is still tried again like any other.
    let mut deferred = run(Phase::Pending, None);
    deferred.reason = Some(reason::CONNECTION_UNREACHABLE.into());
    deferred.intent_at = Some(now() - chrono::Duration::seconds(30));
    let w = World::new(Some(deferred));
    assert!(
        matches!(w.decide(), Decision::Submit { .. }),
        "{:?}",
        w.decide()
    );
}
