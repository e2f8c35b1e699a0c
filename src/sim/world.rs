//! Everything the simulator remembers: its jobs, fault rules, behaviours and call counts.

use std::collections::BTreeMap;
use std::time::Duration;

use super::api::{Behaviour, FaultRule, SystemSel};
use super::jobs::{FlowTask, GseJob, JobInst, NmJob};
use super::model::Plan;
use super::{SimConfig, System};

/// A fault rule as stored, with its remaining uses.
#[derive(Clone, Debug)]
pub(crate) struct StoredFault {
    pub id: u64,
    pub rule: FaultRule,
    pub remaining: Option<u32>,
}

/// A behaviour as stored, with its remaining uses.
#[derive(Clone, Debug)]
pub(crate) struct StoredBehaviour {
    pub id: u64,
    pub rule: Behaviour,
    pub remaining: Option<u32>,
}

/// Everything the simulator remembers.
#[derive(Debug, Default)]
pub(crate) struct World {
    next_id: BTreeMap<&'static str, u64>,
    next_rule: u64,
    pub gse: BTreeMap<u64, GseJob>,
    pub flow: BTreeMap<u64, FlowTask>,
    pub nm: BTreeMap<u64, NmJob>,
    pub job: BTreeMap<u64, JobInst>,
    pub faults: Vec<StoredFault>,
    pub behaviours: Vec<StoredBehaviour>,
    pub calls: BTreeMap<(System, String), u64>,
    pub paths: BTreeMap<(String, String), u64>,
    pub total_calls: u64,
}

impl World {
    /// Allocates the next id for a system; ids start at 1 per system, as a fresh install would.
    pub(crate) fn next_id(&mut self, system: System) -> u64 {
        let n = self.next_id.entry(system.as_str()).or_insert(0);
        *n += 1;
        *n
    }

    pub(crate) fn next_rule_id(&mut self) -> u64 {
        self.next_rule += 1;
        self.next_rule
    }

    /// Resets jobs, faults, behaviours and counts (ids restart too).
    pub(crate) fn reset(&mut self) {
        *self = World::default();
    }

    /// Counts one request that reached a business endpoint.
    pub(crate) fn count(&mut self, system: System, endpoint: &str, method: &str, path: &str) {
        *self
            .calls
            .entry((system, endpoint.to_string()))
            .or_insert(0) += 1;
        *self
            .paths
            .entry((method.to_string(), path.to_string()))
            .or_insert(0) += 1;
        self.total_calls += 1;
    }

    /// Takes the first fault rule that matches, using up one of its `times`.
    pub(crate) fn take_fault(&mut self, system: System, endpoint: &str) -> Option<FaultRule> {
        let idx = self.faults.iter().position(|f| {
            f.remaining != Some(0)
                && f.rule.system.matches(system)
                && (f.rule.endpoint == "*"
                    || f.rule.endpoint == "any"
                    || f.rule.endpoint == endpoint)
        })?;
        let fault = &mut self.faults[idx];
        if let Some(r) = fault.remaining.as_mut() {
            *r -= 1;
        }
        let rule = fault.rule.clone();
        self.faults.retain(|f| f.remaining != Some(0));
        Some(rule)
    }

    /// Fixes the plan of a job being created: the first matching behaviour (using up one of its
    /// `times`) over the configured defaults. `natural_targets` is the number of targets the
    /// request itself names (host ids, pipeline nodes), which wins over any default.
    pub(crate) fn plan_for(
        &mut self,
        system: System,
        config: &SimConfig,
        natural_targets: Option<usize>,
    ) -> Plan {
        let mut plan = Plan {
            targets: natural_targets.unwrap_or(config.targets).max(1),
            failed: 0,
            duration: config.job_duration,
            wait_for_user: false,
        };
        let idx = self
            .behaviours
            .iter()
            .position(|b| b.remaining != Some(0) && b.rule.system == system);
        if let Some(idx) = idx {
            let b = &mut self.behaviours[idx];
            if let Some(r) = b.remaining.as_mut() {
                *r -= 1;
            }
            let rule = b.rule.clone();
            self.behaviours.retain(|b| b.remaining != Some(0));
            if natural_targets.is_none()
                && let Some(t) = rule.targets
            {
                plan.targets = (t as usize).max(1);
            }
            if let Some(ms) = rule.duration_ms {
                plan.duration = Duration::from_millis(ms);
            }
            plan.failed = rule.failed_targets.unwrap_or(0) as usize;
            plan.wait_for_user = rule.wait_for_user;
        }
        plan.failed = plan.failed.min(plan.targets);
        plan
    }
}

impl SystemSel {
    pub(crate) fn matches(self, system: System) -> bool {
        match self {
            SystemSel::Any => true,
            SystemSel::Gsekit => system == System::Gsekit,
            SystemSel::Bkflow => system == System::Bkflow,
            SystemSel::Nodeman => system == System::Nodeman,
            SystemSel::Job => system == System::Job,
        }
    }
}
