//! After an unclear create: search BlueKing for the run's job and adopt it, submit again when it
//! provably created nothing, or ask a person (`Unknown`). The choice is [`resolve::resolution`]'s.

use std::collections::HashMap;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::record::Record;
use super::{Connections, Error, JobSystem, Next, ObjectStore, Reconciler, Severity};
use crate::api::common::{ADOPT_ANNOTATION, CONFIRM_NOT_SUBMITTED_ANNOTATION, Phase, RunStatus};
use crate::api::{BkRun, JobStatus};
use crate::bk::facade::{Candidate, SearchQuery, SearchTarget};
use crate::run::resolve::{self, Found, Resolution};
use crate::run::status::render;
use crate::run::{Defaults, JobKind, reason};
use chrono::{DateTime, Utc};

/// What the search found, as [`resolve::resolution`] weighs it: jobs of this object's earlier
/// runs (`earlier`) and jobs other objects follow (`claimed`, by job id: who) are claimed.
pub fn found(
    candidates: &[Candidate],
    earlier: &[String],
    claimed: &HashMap<String, String>,
) -> Vec<Found> {
    candidates
        .iter()
        .map(|c| {
            let id = c.job.id();
            let claimed_by = if earlier.contains(&id) {
                Some("an earlier run of this object".to_owned())
            } else {
                claimed.get(&id).cloned()
            };
            Found {
                id,
                key_matched: c.key_matched,
                content_matched: c.content_matched,
                claimed_by,
            }
        })
        .collect()
}

/// The message of a run left `Unknown` after its search: what was found and what a person can do.
pub fn unknown_message(key: &str, plausible: &[String]) -> String {
    if plausible.is_empty() {
        format!(
            "whether run {key} was submitted is unknown: the create got no clear answer and no job matching it was found. \
             Check BlueKing, then annotate {ADOPT_ANNOTATION}=<job id> to follow the job, or \
             {CONFIRM_NOT_SUBMITTED_ANNOTATION}={key} to submit again"
        )
    } else {
        format!(
            "whether run {key} was submitted is unknown: {} could be its job ({}). Check BlueKing, then annotate \
             {ADOPT_ANNOTATION}=<job id> to follow one, or {CONFIRM_NOT_SUBMITTED_ANNOTATION}={key} if none is",
            if plausible.len() == 1 {
                "this job"
            } else {
                "these jobs"
            },
            plausible.join(", "),
        )
    }
}

/// The other objects' runs, weighed against a content search.
struct Alike<'a> {
    uid: &'a str,
    target: &'a SearchTarget,
    defaults: &'a Defaults,
    intent_at: DateTime<Utc>,
    window: Duration,
}

impl Alike<'_> {
    /// Whether an intent at `t` lies within the window around this run's.
    fn near(&self, t: Option<DateTime<Utc>>) -> bool {
        t.is_some_and(|t| {
            (t - self.intent_at)
                .abs()
                .to_std()
                .is_ok_and(|d| d <= self.window)
        })
    }

    /// Adds the jobs `others` follow to `claimed`, and names one whose current run could have made
    /// a job matching this search: same content, its create unclear, its intent in the window.
    fn check<K: JobKind>(
        &self,
        others: &[K],
        claimed: &mut HashMap<String, String>,
    ) -> Option<String> {
        let mut contested = None;
        for other in others {
            if other.meta().uid.as_deref() == Some(self.uid) {
                continue;
            }
            let who = format!(
                "{}/{}",
                other.meta().namespace.as_deref().unwrap_or_default(),
                other.meta().name.as_deref().unwrap_or_default()
            );
            let Some(status) = other.job_status() else {
                continue;
            };
            let ids = status.run.iter().filter_map(|r| r.job_id.clone());
            let history = status.history.iter().filter_map(|r| r.job_id.clone());
            for id in ids.chain(history) {
                claimed.entry(id).or_insert_with(|| who.clone());
            }
            let Some(run) = &status.run else { continue };
            let unclear =
                run.job_id.is_none() && matches!(run.phase, Phase::Submitting | Phase::Unknown);
            if unclear
                && self.near(run.intent_at)
                && contested.is_none()
                && other.search_target(self.defaults).ok().as_ref() == Some(self.target)
            {
                contested = Some(format!("{who} (run {})", run.key));
            }
        }
        contested
    }
}

impl Alike<'_> {
    /// Adds the jobs of run records other than run `own` to `claimed`, and names a record whose
    /// create's outcome is unknown with its intent in the window (its content is not on record:
    /// it may have made the candidate).
    fn check_records(
        &self,
        records: &[BkRun],
        own: &str,
        claimed: &mut HashMap<String, String>,
    ) -> Option<String> {
        let mut contested = None;
        for r in records.iter().filter(|r| r.spec.run_key != own) {
            let name = r.metadata.name.clone().unwrap_or_default();
            match &r.spec.job_id {
                Some(id) => {
                    claimed
                        .entry(id.clone())
                        .or_insert_with(|| format!("run record {name}"));
                }
                None => {
                    if self.near(r.spec.intent_at) && contested.is_none() {
                        contested = Some(format!(
                            "run record {name} (run {}, outcome unknown)",
                            r.spec.run_key
                        ));
                    }
                }
            }
        }
        contested
    }
}

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    /// Searches for the job of a run whose create had no clear answer.
    pub(super) async fn resolve(&self, status: JobStatus) -> Result<Next, Error> {
        let Some(run) = status.run.clone() else {
            return Ok(Next::AwaitChange);
        };
        // This process recorded the run's job: the cache has not caught up with that write yet
        // (a busy API server's watch can lag by seconds). Nothing to resolve; look again soon.
        if self.life.timings.lock().await.recorded.get(&self.uid) == Some(&run.key) {
            debug!(key = %run.key, "cache behind the recorded job id; waiting for it");
            return Ok(Next::Requeue(Duration::from_millis(500)));
        }
        let conn = match self.connection(false).await {
            Ok(c) => c,
            Err(e) => return self.report_connection(&status, e).await,
        };
        let poll_initial = self.life.config.poll_initial;
        if let Some(last) = self.life.timings.lock().await.last_poll.get(&self.uid)
            && self.life.clock.elapsed().saturating_sub(*last) < poll_initial
        {
            return Ok(Next::Requeue(poll_initial));
        }
        let now = self.life.clock.now();
        let intent_at = run.intent_at.unwrap_or(now);
        let target = match self.obj.search_target(&conn.defaults) {
            Ok(t) => t,
            Err(e) => {
                let message = format!("cannot search for run {}: {e}", run.key);
                return self
                    .unknown(&status, run, reason::UNKNOWN_SUBMISSION, message)
                    .await;
            }
        };
        let grace = resolve::grace(self.life.config.resolve_grace, conn.system.timeout());
        // The run's create, if made, was made within the grace window after its intent: a job
        // created later is another run's. A minute either side allows for BlueKing's clock.
        let latest = chrono::TimeDelta::from_std(grace)
            .ok()
            .and_then(|g| intent_at.checked_add_signed(g))
            .map_or(now, |end| end.min(now));
        let query = SearchQuery {
            key: run.key.clone(),
            creator: self.obj.creator(&conn.defaults),
            since: crate::run::shifted(intent_at, -60).unwrap_or(intent_at),
            until: crate::run::shifted(latest, 60).unwrap_or(latest),
            target,
        };
        let started = self.life.clock.elapsed();
        self.life
            .timings
            .lock()
            .await
            .last_poll
            .insert(self.uid.clone(), started);
        let result = conn.system.search(&query).await;
        self.record_call("search", started, &result.as_ref());
        let searched = match result {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "search failed");
                return Ok(Next::Requeue(Duration::from_secs(5)));
            }
        };
        let earlier: Vec<String> = status
            .history
            .iter()
            .filter_map(|h| h.job_id.clone())
            .collect();
        let mut claimed = self.life.claimed_jobs(self.kind, &self.uid);
        let searched_for = (now - intent_at).to_std().unwrap_or_default();
        let keyed = K::SYSTEM.stores_run_key();
        let decide = |found: &[Found], contested: bool| {
            resolve::resolution(
                found,
                keyed,
                searched.complete,
                searched_for,
                grace,
                contested,
            )
        };
        let mut weighed = found(&searched.candidates, &earlier, &claimed);
        let mut outcome = decide(&weighed, false);
        // Where only content tells jobs apart, the caches may lag: before adopting, read the
        // other objects now (after the search) for the jobs they follow and for runs that may
        // have made the candidate. Only then: a list of the kind is not cheap.
        let mut contested = None;
        if !keyed && matches!(outcome, Resolution::Adopt(_)) {
            let others = match self.life.store.list::<K>().await {
                Ok(o) => o,
                Err(e) => {
                    warn!(error = %e, "listing the other objects failed");
                    return Ok(Next::Requeue(Duration::from_secs(5)));
                }
            };
            let alike = Alike {
                uid: &self.uid,
                target: &query.target,
                defaults: &conn.defaults,
                intent_at,
                window: grace + Duration::from_secs(60),
            };
            contested = alike.check(&others, &mut claimed);
            // Runs on record (also of objects deleted since) claim their jobs too, and one whose
            // outcome is unknown may have made the candidate.
            let records = match self.life.store.records_of_kind(K::NAME).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "listing the run records failed");
                    return Ok(Next::Requeue(Duration::from_secs(5)));
                }
            };
            let on_record = alike.check_records(&records, &run.key, &mut claimed);
            contested = contested.or(on_record);
            weighed = found(&searched.candidates, &earlier, &claimed);
            outcome = decide(&weighed, contested.is_some());
        }
        debug!(
            candidates = weighed.len(),
            ?outcome,
            "searched for an unclear create"
        );
        match outcome {
            Resolution::Adopt(id) => {
                let Some(job) = searched
                    .candidates
                    .into_iter()
                    .map(|c| c.job)
                    .find(|j| j.id() == id)
                else {
                    return Ok(Next::Requeue(Duration::from_secs(2)));
                };
                if !self.life.claim_job(self.kind, &id, &self.uid) {
                    // Another object of this process adopted it a moment ago: look again.
                    return Ok(Next::Requeue(Duration::from_secs(2)));
                }
                self.count_submission("found");
                let note = format!("found {job} for run {} after an unclear create", run.key);
                self.event(Severity::Normal, "Found", &note);
                // A deleted object's job is found to be cancelled, not started.
                let start = self.obj.two_phase() && !self.deleting();
                self.record_job(Record::Decided(&status), run, job, None, true, start)
                    .await
            }
            Resolution::Wait => Ok(Next::Requeue(
                Duration::from_secs(2).min(self.life.config.resolve_grace),
            )),
            Resolution::NotSubmitted => {
                self.count_submission("not_found");
                let note = format!(
                    "no {} job carries run {}'s key {} s after its intent: nothing was created; submitting again",
                    K::SYSTEM,
                    run.key,
                    searched_for.as_secs()
                );
                info!(key = %run.key, "{note}");
                self.event(Severity::Normal, reason::SUBMISSION_NOT_FOUND, &note);
                // The run that created nothing leaves no history entry.
                let mut base = status;
                if self.deleting() {
                    // Nothing to cancel, nothing to submit: the object may go.
                    let old = base.clone();
                    if let Some(r) = base.run.as_mut() {
                        r.phase = Phase::Pending;
                        r.reason = Some(reason::SUBMISSION_NOT_FOUND.to_owned());
                    }
                    self.write(&old, base).await?;
                    return Ok(Next::Requeue(Duration::from_millis(200)));
                }
                let (attempt, retries) = (run.attempt + 1, run.retries);
                if let Some(r) = base.run.as_mut() {
                    r.phase = Phase::Pending;
                    r.reason = Some(reason::SUBMISSION_NOT_FOUND.to_owned());
                }
                Box::pin(self.submit(base, attempt, retries, None)).await
            }
            Resolution::Unknown {
                reason: why,
                plausible,
            } => {
                let mut message = unknown_message(&run.key, &plausible);
                if let Some(other) = contested {
                    message.push_str(&format!(
                        " ({other} has an unclear create with the same content in the same window)"
                    ));
                }
                self.event(Severity::Warning, why, &message);
                self.unknown(&status, run, why, message).await
            }
        }
    }

    /// Leaves `run` `Unknown`, for a person to resolve.
    pub(super) async fn unknown(
        &self,
        status: &JobStatus,
        mut run: RunStatus,
        why: &'static str,
        message: String,
    ) -> Result<Next, Error> {
        run.phase = Phase::Unknown;
        run.reason = Some(why.to_owned());
        let now = self.life.clock.now();
        let new = render(
            status,
            self.generation,
            Phase::Unknown,
            why,
            message,
            Some(run),
            now,
        );
        self.write(status, new).await?;
        Ok(Next::AwaitChange)
    }
}
