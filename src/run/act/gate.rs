//! The dependency gate before a new run (`spec.dependsOn`): wait, stall, or refuse a cycle.

use std::collections::{HashMap, HashSet};

use super::{Connections, Error, Next, ObjectStore, Reconciler};
use crate::api::JobStatus;
use crate::api::common::{Dependency, DependencyKind, Phase};
use crate::run::deps::{DependencyView, Gate, cycle_message, gate, standing};
use crate::run::status::render;
use crate::run::{JobKind, invalid_spec_message, reason};

/// How many jobs the search for a cycle reads at most.
const MAX_WALK: usize = 64;

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    /// Checks `spec.dependsOn` before a new run: `None` when the run may start, otherwise what
    /// was reported (waiting, stalled on a failed dependency, or a cycle). A dependency that
    /// changes wakes this object through the controller's reverse index.
    pub(super) async fn wait_for_dependencies(
        &self,
        status: &JobStatus,
    ) -> Result<Option<Next>, Error> {
        let deps = &self.obj.common().depends_on;
        if deps.is_empty() {
            return Ok(None);
        }
        let me = Dependency {
            kind: DependencyKind::from_name(K::NAME).unwrap_or(DependencyKind::ProcessJob),
            name: self.name.clone(),
        };
        let mut views: HashMap<Dependency, Option<DependencyView>> = HashMap::new();
        if let Some(path) = self.find_cycle(&me, &mut views).await? {
            let message = invalid_spec_message(&cycle_message(&path));
            return self
                .report_gate(status, Phase::Failed, reason::INVALID_SPEC, message)
                .await;
        }
        let standings: Vec<_> = deps
            .iter()
            .map(|d| (d.clone(), standing(views.get(d).and_then(Option::as_ref))))
            .collect();
        match gate(&standings) {
            Gate::Open => Ok(None),
            Gate::Closed { reason, message } => {
                self.report_gate(status, Phase::Pending, reason, message)
                    .await
            }
        }
    }

    /// Follows dependencies from `me`, reading each job once into `views`; the path back to
    /// `me` if there is one.
    async fn find_cycle(
        &self,
        me: &Dependency,
        views: &mut HashMap<Dependency, Option<DependencyView>>,
    ) -> Result<Option<Vec<Dependency>>, Error> {
        let mut stack: Vec<Vec<Dependency>> = self
            .obj
            .common()
            .depends_on
            .iter()
            .map(|d| vec![me.clone(), d.clone()])
            .collect();
        let mut expanded = HashSet::new();
        while let Some(path) = stack.pop() {
            let Some(last) = path.last().cloned() else {
                continue;
            };
            if last == *me {
                return Ok(Some(path));
            }
            if !expanded.insert(last.clone()) {
                continue;
            }
            if !views.contains_key(&last) {
                if views.len() >= MAX_WALK {
                    continue;
                }
                let view = self.life.store.dependency(&self.ns, &last).await?;
                views.insert(last.clone(), view);
            }
            if let Some(Some(view)) = views.get(&last) {
                for next in &view.depends_on {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
        Ok(None)
    }

    async fn report_gate(
        &self,
        status: &JobStatus,
        phase: Phase,
        why: &'static str,
        message: String,
    ) -> Result<Option<Next>, Error> {
        let now = self.life.clock.now();
        let new = render(
            status,
            self.generation,
            phase,
            why,
            message,
            status.run.clone(),
            now,
        );
        self.write(status, new).await?;
        Ok(Some(Next::AwaitChange))
    }
}
