//! What every request shares (settings, the simulated world, the stop signal) and the control
//! API's operations on the world's jobs.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use url::Url;

use super::api::JobView;
use super::world::World;
use super::{SimConfig, System, bkflow, gsekit, job, nodeman};

/// State shared by every request.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SimConfig,
    pub base_url: Url,
    pub(crate) world: Mutex<World>,
    pub(crate) stop: CancellationToken,
}

impl Shared {
    /// Locks the world. A panic while holding the lock cannot leave it half-updated in a way
    /// that matters to a simulator, so a poisoned lock is simply taken over.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The control API's view of one system's jobs.
pub(crate) fn job_views(
    w: &mut World,
    config: &SimConfig,
    system: System,
    now: Instant,
) -> Vec<JobView> {
    match system {
        System::Gsekit => gsekit::views(w, now),
        System::Bkflow => bkflow::views(w, now),
        System::Nodeman => nodeman::views(w, now),
        System::Job => job::views(w, config, now),
    }
}

/// A person continues a waiting job; false when there is no such job.
pub(crate) fn approve(w: &mut World, system: System, id: u64, now: Instant) -> bool {
    match system {
        System::Gsekit => w.gse.contains_key(&id),
        System::Bkflow => bkflow::approve(w, id, now),
        System::Nodeman => w.nm.contains_key(&id),
        System::Job => job::approve(w, id, now),
    }
}

/// Ends a job now as planned; false when there is no such job.
pub(crate) fn finish(w: &mut World, system: System, id: u64, now: Instant) -> bool {
    let run = match system {
        System::Gsekit => w.gse.get_mut(&id).map(|j| &mut j.run),
        System::Bkflow => w.flow.get_mut(&id).map(|j| &mut j.run),
        System::Nodeman => w.nm.get_mut(&id).map(|j| &mut j.run),
        System::Job => w.job.get_mut(&id).map(|j| &mut j.run),
    };
    match run {
        Some(run) => {
            run.start(now);
            run.clock.finish(now);
            true
        }
        None => false,
    }
}
