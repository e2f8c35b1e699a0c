//! Ordered steps (`spec.dependsOn`): whether the jobs a job waits for let a new run start.
//!
//! A new run starts only when every dependency exists, its latest run succeeded and it has no
//! run pending (its spec, `rerunToken` and rerun annotation are answered by that run, and its
//! status speaks for its generation). A dependency edited in the same commit as its dependent
//! must run again first: a stale success never counts.

use std::fmt::Write as _;

use crate::api::common::{Dependency, Phase};

use super::{JobKind, Trigger, answers, reason};

/// What a dependency shows, as far as its dependents care.
#[derive(Clone, Debug, PartialEq)]
pub struct DependencyView {
    /// Its own dependencies (for finding cycles).
    pub depends_on: Vec<Dependency>,
    /// Its latest run's phase (`None`: it never ran).
    pub run_phase: Option<Phase>,
    /// Whether a run is due or in flight, or its status does not speak for its generation yet.
    pub pending: bool,
    /// Its status phase (`Failed` with an invalid spec has no run).
    pub phase: Option<Phase>,
}

impl DependencyView {
    /// The view of `obj`.
    pub fn of<K: JobKind>(obj: &K) -> Self {
        let status = obj.job_status();
        let run = status.and_then(|s| s.run.as_ref());
        let trigger = Trigger::of(obj);
        let observed = status.and_then(|s| s.observed_generation) == obj.meta().generation;
        let answered = run.is_some_and(|r| {
            answers(
                r,
                &trigger,
                status.and_then(|s| s.last_handled_rerun_at.as_deref()),
            )
        });
        let in_flight = run.is_some_and(|r| {
            matches!(
                r.phase,
                Phase::Pending | Phase::Submitting | Phase::Running | Phase::WaitingForUser
            )
        });
        DependencyView {
            depends_on: obj.common().depends_on.clone(),
            run_phase: run.map(|r| r.phase),
            pending: !observed || !answered || in_flight,
            phase: status.and_then(|s| s.phase),
        }
    }
}

/// Where one dependency stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Its latest run succeeded and nothing is pending.
    Done,
    /// Not there yet; says what it waits for.
    Waiting(String),
    /// It does not exist.
    Missing,
    /// Its latest run failed, was cancelled, or its outcome is unknown.
    Failed(String),
}

/// The standing of a dependency from its view (`None`: it does not exist).
pub fn standing(view: Option<&DependencyView>) -> Standing {
    let Some(v) = view else {
        return Standing::Missing;
    };
    match v.run_phase {
        Some(Phase::Unknown) => Standing::Failed("its run is Unknown".to_owned()),
        _ if v.phase == Some(Phase::Failed) && v.run_phase.is_none() => {
            Standing::Failed("it is Failed (it never ran)".to_owned())
        }
        Some(p @ (Phase::Failed | Phase::Cancelled)) if !v.pending => {
            Standing::Failed(format!("its latest run {p}"))
        }
        Some(Phase::Succeeded) if !v.pending => Standing::Done,
        None => Standing::Waiting("it has not run yet".to_owned()),
        Some(p) if v.pending && p.is_final() => {
            Standing::Waiting(format!("a new run is due (its last run {p})"))
        }
        Some(p) => Standing::Waiting(format!("its run is {p}")),
    }
}

/// What the dependencies say about a new run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Every dependency is done: the run may start.
    Open,
    /// Not yet: the reason (`WaitingForDependency`, `DependencyMissing`, `DependencyFailed`) and
    /// a message naming each dependency and what it waits for.
    Closed {
        /// The condition reason.
        reason: &'static str,
        /// For people.
        message: String,
    },
}

/// The gate over the standings of the dependencies, in `spec.dependsOn` order. A failed
/// dependency outweighs a missing one, which outweighs one still on its way.
pub fn gate(standings: &[(Dependency, Standing)]) -> Gate {
    let open: Vec<_> = standings
        .iter()
        .filter(|(_, s)| *s != Standing::Done)
        .collect();
    if open.is_empty() {
        return Gate::Open;
    }
    let reason = if open.iter().any(|(_, s)| matches!(s, Standing::Failed(_))) {
        reason::DEPENDENCY_FAILED
    } else if open.iter().any(|(_, s)| *s == Standing::Missing) {
        reason::DEPENDENCY_MISSING
    } else {
        reason::WAITING_FOR_DEPENDENCY
    };
    let mut message = String::from("no new run until the jobs it depends on succeed: ");
    for (i, (d, s)) in open.iter().enumerate() {
        if i > 0 {
            message.push_str("; ");
        }
        let _ = match s {
            Standing::Missing => write!(message, "{d} does not exist"),
            Standing::Waiting(w) => write!(message, "{d}: waiting, {w}"),
            Standing::Failed(f) => write!(
                message,
                "{d}: {f}; this run starts once {d} succeeds (rerun it)"
            ),
            Standing::Done => Ok(()),
        };
    }
    Gate::Closed { reason, message }
}

/// The message for a cycle of dependencies, `path` leading from a job back to itself.
pub fn cycle_message(path: &[Dependency]) -> String {
    let names: Vec<String> = path.iter().map(ToString::to_string).collect();
    format!(
        "spec.dependsOn makes a cycle ({}): none of these jobs could ever run",
        names.join(" -> ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::DependencyKind;

    fn dep(name: &str) -> Dependency {
        Dependency {
            kind: DependencyKind::ProcessJob,
            name: name.into(),
        }
    }

    fn view(run_phase: Option<Phase>, pending: bool) -> DependencyView {
        DependencyView {
            depends_on: vec![],
            run_phase,
            pending,
            phase: run_phase,
        }
    }

    #[test]
    fn only_a_current_success_counts() {
        assert_eq!(
            standing(Some(&view(Some(Phase::Succeeded), false))),
            Standing::Done
        );
        // A success whose object was edited since (a run is due): waits for the new run.
        assert!(matches!(
            standing(Some(&view(Some(Phase::Succeeded), true))),
            Standing::Waiting(_)
        ));
        assert!(matches!(
            standing(Some(&view(None, true))),
            Standing::Waiting(_)
        ));
        assert!(matches!(
            standing(Some(&view(Some(Phase::Running), true))),
            Standing::Waiting(_)
        ));
        assert_eq!(standing(None), Standing::Missing);
        assert!(matches!(
            standing(Some(&view(Some(Phase::Failed), false))),
            Standing::Failed(_)
        ));
        assert!(matches!(
            standing(Some(&view(Some(Phase::Unknown), true))),
            Standing::Failed(_)
        ));
        // A failed run with a rerun due: waits for the rerun, not failed.
        assert!(matches!(
            standing(Some(&view(Some(Phase::Failed), true))),
            Standing::Waiting(_)
        ));
    }

    #[test]
    fn the_gate_names_every_open_dependency_and_failure_outweighs_the_rest() {
        assert_eq!(gate(&[(dep("a"), Standing::Done)]), Gate::Open);
        assert_eq!(gate(&[]), Gate::Open);
        let g = gate(&[
            (dep("a"), Standing::Done),
            (dep("b"), Standing::Missing),
            (dep("c"), Standing::Waiting("its run is Running".into())),
        ]);
        let Gate::Closed { reason, message } = g else {
            panic!("closed expected")
        };
        assert_eq!(reason, reason::DEPENDENCY_MISSING);
        assert!(message.contains("ProcessJob/b does not exist"), "{message}");
        assert!(message.contains("ProcessJob/c: waiting"), "{message}");
        assert!(!message.contains("ProcessJob/a"), "{message}");
        let g = gate(&[
            (dep("b"), Standing::Missing),
            (dep("c"), Standing::Failed("its latest run Failed".into())),
        ]);
        assert!(matches!(
            g,
            Gate::Closed {
                reason: reason::DEPENDENCY_FAILED,
                ..
            }
        ));
        let g = gate(&[(dep("c"), Standing::Waiting("x".into()))]);
        assert!(matches!(
            g,
            Gate::Closed {
                reason: reason::WAITING_FOR_DEPENDENCY,
                ..
            }
        ));
    }
}
