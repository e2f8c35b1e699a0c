//! The summary: each resource's final phase checked against its job in the simulator, and the
//! create calls counted per system.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};

use super::scenario::{simulator_phase, state_label, system_label};
use super::table::Row;
use super::{ALL_MATCHED, Demo};
use crate::api::Phase;
use crate::sim::{JobView, System};

/// One resource at the end, checked against the simulator.
pub(super) struct Checked {
    pub(super) row: Row,
    pub(super) system: System,
    pub(super) sim: Option<JobView>,
    pub(super) expected: Phase,
    pub(super) approved: bool,
}

impl Checked {
    fn sim_phase(&self) -> Option<Phase> {
        self.sim
            .as_ref()
            .and_then(|job| simulator_phase(job.system, &job.state))
    }

    fn matches(&self) -> bool {
        self.row.is_final() && self.sim_phase() == self.row.phase
    }
}

impl Demo {
    /// Prints the check of every resource against the simulator and the create counts; fails
    /// when anything does not match.
    pub(super) async fn summarize(&self, checked: &[Checked], color: bool) -> anyhow::Result<()> {
        let paint = |code: &str, text: String| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text
            }
        };
        let lines: Vec<[String; 5]> = checked
            .iter()
            .map(|c| {
                let sim = match &c.sim {
                    Some(job) => format!(
                        "{} job {}: {}{}",
                        system_label(job.system),
                        job.id,
                        state_label(job.system, &job.state),
                        if c.approved {
                            " (approved by the demo)"
                        } else {
                            ""
                        }
                    ),
                    None => format!(
                        "no {} job {}",
                        system_label(c.system),
                        c.row.job.as_deref().unwrap_or("(no job id)")
                    ),
                };
                let targets = match (c.row.ok, c.row.failed) {
                    (Some(ok), Some(failed)) => format!("{ok} ok, {failed} failed"),
                    _ => "-".to_owned(),
                };
                let phase = c.row.phase.map(Phase::as_str).unwrap_or("-").to_owned();
                [c.row.kind.clone(), c.row.name.clone(), phase, sim, targets]
            })
            .collect();
        let width = |i: usize| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [width(0), width(1), width(2), width(3), width(4)];
        crate::outln!("Summary: each resource's final phase, and its job in the simulator")?;
        let mut problems = Vec::new();
        for (c, line) in checked.iter().zip(&lines) {
            let mut text = String::from(" ");
            for (cell, w) in line.iter().zip(widths) {
                let pad = w.saturating_sub(cell.chars().count());
                text.push(' ');
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 1));
            }
            let verdict = if c.matches() {
                paint("32", "matches".to_owned())
            } else {
                paint("31", "MISMATCH".to_owned())
            };
            crate::outln!("{text}{verdict}")?;
            if !c.matches() {
                problems.push(format!(
                    "{} {}: phase {}, but the simulator says {}",
                    c.row.kind,
                    c.row.name,
                    line[2],
                    c.sim_phase()
                        .map(Phase::as_str)
                        .unwrap_or("not final / no such job")
                ));
            } else if c.row.phase != Some(c.expected) {
                crate::outln!("    note: the demo planned {} for it", c.expected.as_str())?;
            }
        }
        let calls = self
            .control
            .calls()
            .await
            .context("reading the simulator's call counts")?;
        let mut per_system: BTreeMap<System, u64> = BTreeMap::new();
        for c in checked {
            *per_system.entry(c.system).or_default() += 1;
        }
        let counts: Vec<String> = per_system
            .iter()
            .map(|(system, resources)| {
                let creates = calls.get(*system, "create");
                if creates != *resources {
                    problems.push(format!(
                        "{}: {creates} create calls for {resources} resources",
                        system_label(*system)
                    ));
                }
                format!("{} {creates}/{resources}", system_label(*system))
            })
            .collect();
        crate::outln!("Create calls / resources per system: {}", counts.join(", "))?;
        if problems.is_empty() {
            crate::outln!("{}", paint("1", ALL_MATCHED.to_owned()))?;
            Ok(())
        } else {
            for p in &problems {
                crate::outln!("{} {p}", paint("31", "MISMATCH".to_owned()))?;
            }
            bail!("{} problem(s) found; see the summary above", problems.len())
        }
    }
}
