//! The simulator's in-memory world: jobs, their clocks, fault rules, behaviours and call counts.
//!
//! Job state is never advanced by a background task. It is computed on every read from the time
//! elapsed since the job started, the job's plan (fixed when it was created) and the events a
//! caller caused (approve, pause, revoke, finish). That makes the state a pure function of the
//! request history and the clock, so two reads at the same instant agree and tests are
//! deterministic given the timing they configure.

use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use serde_json::Value;

/// How a request reached the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `/api/{gateway}/{stage}/...` (APISIX API gateway).
    Gateway,
    /// `/api/c/compapi/v2/...` (legacy ESB).
    Esb,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Gateway => "gateway",
            Mode::Esb => "esb",
        }
    }
}

/// What a job will do, fixed when it is created.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Number of targets (processes, nodes, hosts); at least 1.
    pub targets: usize,
    /// How many of the targets fail (the last ones).
    pub failed: usize,
    /// Time from start to the end of the last target.
    pub duration: Duration,
    /// Whether the job stops for a person (BKFlow NODE_SUSPENDED, JOB WAITING_USER).
    pub wait_for_user: bool,
}

impl Plan {
    fn duration(&self) -> Duration {
        self.duration.max(Duration::from_millis(1))
    }

    /// The first fifth of the run is the "pending" phase: GSEKit builds its sub-tasks, NodeMan
    /// has no subscription instances yet.
    pub(crate) fn pending_phase(&self) -> Duration {
        self.duration() / 5
    }

    fn slot(&self) -> Duration {
        (self.duration() - self.pending_phase()) / self.targets.max(1) as u32
    }

    /// When target `i` starts and ends in a parallel run: all start together, and they finish
    /// one slot apart, so progress counters move visibly.
    pub(crate) fn parallel_window(&self, i: usize) -> (Duration, Duration) {
        let start = self.pending_phase();
        (start, start + self.slot() * (i as u32 + 1))
    }

    /// When target `i` starts and ends in a sequential run (BKFlow nodes).
    pub(crate) fn sequential_window(&self, i: usize) -> (Duration, Duration) {
        let start = self.pending_phase() + self.slot() * i as u32;
        (start, start + self.slot())
    }

    /// Whether target `i` fails: the last `failed` targets do.
    pub(crate) fn target_fails(&self, i: usize) -> bool {
        i >= self.targets.saturating_sub(self.failed)
    }

    /// Where a sequential run stops for a person: at the start of the middle node.
    pub(crate) fn sequential_pause_point(&self) -> Duration {
        self.sequential_window(self.targets / 2).0
    }

    /// The effective time at which every target is over.
    pub(crate) fn end(&self) -> Duration {
        self.duration()
    }
}

/// A job's clock: wall time since start minus the time it stood still.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clock {
    pub started: Option<Instant>,
    paused_total: Duration,
    paused_since: Option<Instant>,
    /// Set when a person approved a job that waits: how much waiting to skip.
    wait_skip: Option<Duration>,
    forced_done: bool,
    /// The effective time at which the job was cancelled (revoke/terminate).
    pub cancelled_at: Option<Duration>,
}

/// Where a job is on its timeline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    /// Effective elapsed time since start.
    pub eff: Duration,
    /// The job is held for a person.
    pub waiting: bool,
    /// The job was cancelled; `eff` is frozen at the moment of cancelling.
    pub cancelled: bool,
}

impl Clock {
    fn manual_elapsed(&self, now: Instant) -> Option<Duration> {
        let started = self.started?;
        let paused = self.paused_total
            + self
                .paused_since
                .map(|s| now.saturating_duration_since(s))
                .unwrap_or_default();
        Some(
            now.saturating_duration_since(started)
                .saturating_sub(paused),
        )
    }

    /// The job's progress now, or `None` while it is not started. `pause_point` is where a
    /// job that waits for a person stops.
    pub(crate) fn progress(
        &self,
        now: Instant,
        plan: &Plan,
        pause_point: Duration,
    ) -> Option<Progress> {
        let m = self.manual_elapsed(now)?;
        if let Some(c) = self.cancelled_at {
            return Some(Progress {
                eff: c,
                waiting: false,
                cancelled: true,
            });
        }
        if self.forced_done {
            return Some(Progress {
                eff: plan.end() + Duration::from_secs(1),
                waiting: false,
                cancelled: false,
            });
        }
        if !plan.wait_for_user || m < pause_point {
            return Some(Progress {
                eff: m,
                waiting: false,
                cancelled: false,
            });
        }
        Some(match self.wait_skip {
            None => Progress {
                eff: pause_point,
                waiting: true,
                cancelled: false,
            },
            Some(skip) => Progress {
                eff: m.saturating_sub(skip).max(pause_point),
                waiting: false,
                cancelled: false,
            },
        })
    }

    pub(crate) fn start(&mut self, now: Instant) {
        if self.started.is_none() {
            self.started = Some(now);
        }
    }

    /// A person continues a job that waits (or will wait).
    pub(crate) fn approve(&mut self, now: Instant, pause_point: Duration) {
        if self.wait_skip.is_none() {
            let m = self.manual_elapsed(now).unwrap_or_default();
            self.wait_skip = Some(m.saturating_sub(pause_point));
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    pub(crate) fn pause(&mut self, now: Instant) {
        if self.paused_since.is_none() {
            self.paused_since = Some(now);
        }
    }

    pub(crate) fn resume(&mut self, now: Instant) {
        if let Some(s) = self.paused_since.take() {
            self.paused_total += now.saturating_duration_since(s);
        }
    }

    /// Ends the job now as its plan says (the control API's `finish`).
    pub(crate) fn finish(&mut self, now: Instant) {
        self.start(now);
        self.resume(now);
        self.forced_done = true;
    }

    /// Freezes the timeline at the current effective time.
    pub(crate) fn cancel(&mut self, now: Instant, plan: &Plan, pause_point: Duration) {
        if self.cancelled_at.is_none() {
            let eff = self
                .progress(now, plan, pause_point)
                .map(|p| p.eff)
                .unwrap_or_default();
            self.cancelled_at = Some(eff);
        }
    }
}

/// A target's state at some effective time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetState {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Was still pending/running when the job was cancelled.
    Cancelled,
}

impl TargetState {
    pub(crate) fn of(window: (Duration, Duration), fails: bool, p: Option<Progress>) -> Self {
        let Some(p) = p else {
            return TargetState::Pending;
        };
        let (start, end) = window;
        let state = if p.eff < start {
            TargetState::Pending
        } else if p.eff < end {
            TargetState::Running
        } else if fails {
            TargetState::Failed
        } else {
            TargetState::Succeeded
        };
        if p.cancelled && !state.is_done() {
            TargetState::Cancelled
        } else {
            state
        }
    }

    pub(crate) fn is_done(self) -> bool {
        matches!(
            self,
            TargetState::Succeeded | TargetState::Failed | TargetState::Cancelled
        )
    }
}

/// What every simulated job carries besides its system's fields.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub plan: Plan,
    pub clock: Clock,
    /// The create request body as received (credentials included, as upstream never echoes
    /// them; the control API shows it to tests).
    pub request: Value,
    pub mode: Mode,
    pub created_wall: DateTime<Local>,
    pub started_wall: Option<DateTime<Local>>,
}

impl Run {
    pub(crate) fn new(plan: Plan, request: Value, mode: Mode) -> Self {
        Run {
            plan,
            clock: Clock::default(),
            request,
            mode,
            created_wall: Local::now(),
            started_wall: None,
        }
    }

    pub(crate) fn start(&mut self, now: Instant) {
        if self.clock.started.is_none() {
            self.clock.start(now);
            self.started_wall = Some(Local::now());
        }
    }

    /// When the plan ends (RFC 3339, sub-second), once started; pauses and waits for a person
    /// are ignored, so it is exact only for jobs that run straight through.
    pub(crate) fn planned_end(&self) -> Option<String> {
        self.wall_at(self.plan.end()).map(|t| t.to_rfc3339())
    }

    /// Wall time at an effective offset from the start (pauses ignored; good enough for
    /// timestamps).
    pub(crate) fn wall_at(&self, offset: Duration) -> Option<DateTime<Local>> {
        let start = self.started_wall?;
        chrono::Duration::from_std(offset).ok().map(|d| start + d)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn plan(wait: bool) -> Plan {
        Plan {
            targets: 4,
            failed: 1,
            duration: Duration::from_millis(1000),
            wait_for_user: wait,
        }
    }

    #[test]
    fn windows_cover_the_run() {
        let p = plan(false);
        assert_eq!(p.pending_phase(), Duration::from_millis(200));
        assert_eq!(p.parallel_window(3).1, Duration::from_millis(1000));
        assert_eq!(p.sequential_window(3).1, Duration::from_millis(1000));
        assert!(p.target_fails(3) && !p.target_fails(2));
    }

    #[test]
    fn waiting_holds_until_approved() {
        let p = plan(true);
        let t0 = Instant::now();
        let mut c = Clock::default();
        c.start(t0);
        let pp = Duration::from_millis(300);
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(!c.progress(at(100), &p, pp).unwrap().waiting);
        assert!(c.progress(at(900), &p, pp).unwrap().waiting);
        c.approve(at(900), pp);
        let pr = c.progress(at(1000), &p, pp).unwrap();
        assert!(!pr.waiting);
        assert_eq!(pr.eff, Duration::from_millis(400));
    }

    #[test]
    fn pause_stops_the_clock() {
        let p = plan(false);
        let t0 = Instant::now();
        let mut c = Clock::default();
        c.start(t0);
        c.pause(t0 + Duration::from_millis(100));
        c.resume(t0 + Duration::from_millis(600));
        let pr = c
            .progress(t0 + Duration::from_millis(700), &p, p.end())
            .unwrap();
        assert_eq!(pr.eff, Duration::from_millis(200));
    }
}
