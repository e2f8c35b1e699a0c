//! Run records (`BkRun`) and the re-creation guard.
//!
//! A run that reached BlueKing, or whose create's outcome is unknown, gets a record that
//! outlives its object: written with the job id, updated when the run ends, and written at the
//! latest before the finalizer lets a deleted object go. A brand-new object whose fingerprint
//! matches a record adopts the newest one instead of submitting (`recreatePolicy: Adopt`).

use std::collections::{BTreeMap, HashMap};

use super::{Connections, Error, Next, ObjectStore, Reconciler, Severity};
use crate::api::JobStatus;
use crate::api::common::{Phase, RecreatePolicy, RunStatus};
use crate::api::run_record::{BkRun, BkRunSpec, FINGERPRINT_LABEL, JOB_KIND_LABEL, JOB_NAME_LABEL};
use crate::run::status::{push_history, render};
use crate::run::{JobKind, fingerprint, reason};

/// Longest object name Kubernetes takes.
const MAX_NAME: usize = 253;

/// Where a run stands as far as its record is concerned: a record is rewritten only when this
/// changes (job id known, still in flight, unknown, ended how).
type Stage = (Option<String>, Phase);

fn stage(job_id: &Option<String>, phase: Phase) -> Stage {
    let phase = match phase {
        Phase::WaitingForUser => Phase::Running,
        p => p,
    };
    (job_id.clone(), phase)
}

/// What this process knows of the records it wrote.
#[derive(Default)]
pub struct RecordBook {
    /// The stage each run's record was last written at, by run key.
    written: HashMap<String, Stage>,
    /// A record whose write failed, by object uid: written again on the object's next
    /// reconcile.
    pending: HashMap<String, BkRun>,
}

impl RecordBook {
    /// Whether a record of object `uid` waits to be written again.
    pub fn pending(&self, uid: &str) -> bool {
        self.pending.contains_key(uid)
    }
}

/// Whether `run` needs a record: it has a job, or its create's outcome is unknown.
/// `deleting`: the object goes, so a create still unanswered leaves a record too.
pub fn needs_record(run: &RunStatus, deleting: bool) -> bool {
    run.job_id.is_some()
        || run.phase == Phase::Unknown
        || (deleting && run.phase == Phase::Submitting)
}

/// The name of the record of run `key` of the `kind` object `name`: `<kind>-<name>-<key>`,
/// the name shortened (and a hash of it added) where the whole would be too long.
pub fn record_name(kind: &str, name: &str, key: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    let whole = format!("{kind}-{name}-{key}");
    if whole.len() <= MAX_NAME {
        return whole;
    }
    let hash = &fingerprint(&kind, "", name, "", None)[..8];
    let room = MAX_NAME - kind.len() - key.len() - hash.len() - 3;
    let cut: String = name.chars().take(room).collect();
    let cut = cut.trim_end_matches(['-', '.']);
    format!("{kind}-{cut}-{hash}-{key}")
}

/// Where the object came from in GitOps terms, from the labels and annotations Argo CD and
/// Flux put on what they apply.
pub fn gitops_source(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> Option<String> {
    let label = |k: &str| labels.and_then(|l| l.get(k)).filter(|v| !v.is_empty());
    if let Some(id) = annotations
        .and_then(|a| a.get("argocd.argoproj.io/tracking-id"))
        .filter(|v| !v.is_empty())
    {
        return Some(format!("argocd:{id}"));
    }
    for (kind, prefix) in [
        ("kustomization", "kustomize.toolkit.fluxcd.io"),
        ("helmrelease", "helm.toolkit.fluxcd.io"),
    ] {
        if let (Some(name), Some(ns)) = (
            label(&format!("{prefix}/name")),
            label(&format!("{prefix}/namespace")),
        ) {
            return Some(format!("flux:{kind}/{ns}/{name}"));
        }
    }
    label("app.kubernetes.io/instance").map(|app| format!("argocd-app:{app}"))
}

/// The newest of `records` (latest intent, then latest submission, then name).
pub fn newest(records: &[BkRun]) -> Option<&BkRun> {
    records.iter().max_by(|a, b| {
        let key = |r: &BkRun| {
            (
                r.spec.intent_at,
                r.spec.submitted_at,
                r.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    })
}

/// The run a brand-new object takes over from `record`, at `generation`: the record's key,
/// job and times. Without a job id nobody can tell whether the job ran: `Unknown`.
pub fn adopted_run(record: &BkRunSpec, generation: i64) -> RunStatus {
    let phase = match record.phase {
        _ if record.outcome_unknown() => Phase::Unknown,
        Phase::Succeeded | Phase::Failed | Phase::Cancelled | Phase::WaitingForUser => record.phase,
        _ => Phase::Running,
    };
    RunStatus {
        key: record.run_key.clone(),
        generation,
        attempt: record.attempt.max(1),
        spec_hash: record.spec_hash.clone(),
        rerun_token: record.rerun_token.clone(),
        phase,
        intent_at: record.intent_at,
        job_id: record.job_id.clone(),
        job_url: record.job_url.clone(),
        adopted: true,
        started: record.started,
        submitted_at: record.submitted_at,
        start_time: record.start_time,
        completion_time: record.completion_time,
        summary: record.summary,
        reason: Some(reason::ADOPTED_EARLIER_RUN.to_owned()),
        ..RunStatus::default()
    }
}

impl<K: JobKind, S: ObjectStore, C: Connections> Reconciler<'_, K, S, C> {
    /// The record of `run` as this object would write it.
    fn record_of(&self, run: &RunStatus) -> BkRun {
        let fp = fingerprint(
            K::NAME,
            &self.ns,
            &self.name,
            &run.spec_hash,
            run.rerun_token.as_deref(),
        );
        let meta = self.obj.meta();
        let mut record = BkRun::new(
            &record_name(K::NAME, &self.name, &run.key),
            BkRunSpec {
                job_kind: K::NAME.to_owned(),
                job_name: self.name.clone(),
                job_uid: Some(self.uid.clone()),
                run_key: run.key.clone(),
                fingerprint: fp.clone(),
                generation: run.generation,
                attempt: run.attempt,
                spec_hash: run.spec_hash.clone(),
                rerun_token: run.rerun_token.clone(),
                system: K::SYSTEM.as_str().to_owned(),
                connection: self
                    .obj
                    .common()
                    .connection_ref
                    .as_ref()
                    .map(|c| c.name.clone()),
                job_id: run.job_id.clone(),
                job_url: run.job_url.clone(),
                started: run.started,
                phase: run.phase,
                reason: run.reason.clone(),
                intent_at: run.intent_at,
                submitted_at: run.submitted_at,
                start_time: run.start_time,
                completion_time: run.completion_time,
                summary: run.summary,
                gitops_revision: gitops_source(meta.labels.as_ref(), meta.annotations.as_ref()),
            },
        );
        record.metadata.namespace = Some(self.ns.clone());
        record.metadata.labels = Some(BTreeMap::from([
            (FINGERPRINT_LABEL.to_owned(), fp),
            (JOB_KIND_LABEL.to_owned(), K::NAME.to_owned()),
            (JOB_NAME_LABEL.to_owned(), label_value(&self.name)),
        ]));
        record
    }

    /// Writes `run`'s record if it needs one and this process has not written it at this
    /// stage. A failed write is counted and kept for the object's next reconcile; it never
    /// fails this one. Returns whether the record is known to be written.
    pub(super) async fn keep_record(&self, run: &RunStatus) -> bool {
        if !needs_record(run, self.deleting()) {
            return true;
        }
        let at = stage(&run.job_id, run.phase);
        let known = {
            let book = self.life.records.lock().unwrap_or_else(|e| e.into_inner());
            book.written.get(&run.key) == Some(&at) && !book.pending.contains_key(&self.uid)
        };
        if known {
            return true;
        }
        let record = self.record_of(run);
        self.put_record(record, at).await
    }

    async fn put_record(&self, record: BkRun, at: Stage) -> bool {
        let key = record.spec.run_key.clone();
        let known = self
            .life
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .written
            .contains_key(&key);
        match self.life.store.put_record(&self.ns, &record, known).await {
            Ok(created) => {
                let outcome = if created { "create" } else { "update" };
                self.life.counters.record_write(self.kind, outcome);
                let mut book = self.life.records.lock().unwrap_or_else(|e| e.into_inner());
                if book.written.len() > 16_384 {
                    book.written.retain(|_, (_, p)| !p.is_final());
                }
                book.written.insert(key, at);
                book.pending.remove(&self.uid);
                true
            }
            Err(e) => {
                self.life.counters.record_write(self.kind, "failed");
                tracing::warn!(error = %e, record = ?record.metadata.name, "writing the run record failed; trying again");
                let mut book = self.life.records.lock().unwrap_or_else(|e| e.into_inner());
                book.pending.insert(self.uid.clone(), record);
                false
            }
        }
    }

    /// Writes again a record whose write failed earlier; `false` while it still fails.
    pub(super) async fn retry_record(&self) -> bool {
        let pending = {
            let book = self.life.records.lock().unwrap_or_else(|e| e.into_inner());
            book.pending.get(&self.uid).cloned()
        };
        let Some(record) = pending else {
            return true;
        };
        let at = stage(&record.spec.job_id, record.spec.phase);
        self.put_record(record, at).await
    }

    /// The fingerprint the re-creation guard looks for before this object's first run, if it
    /// looks: the object never ran and its `recreatePolicy` is `Adopt`.
    fn guarded_fingerprint(&self, status: &JobStatus) -> Option<String> {
        let never_ran = status.run.is_none() && status.history.is_empty();
        let policy = self.obj.common().recreate_policy.unwrap_or_default();
        if !never_ran || policy == RecreatePolicy::Run {
            return None;
        }
        let trigger = crate::run::Trigger::of(&self.obj);
        Some(fingerprint(
            K::NAME,
            &self.ns,
            &self.name,
            &trigger.spec_hash,
            trigger.rerun_token.as_deref(),
        ))
    }

    /// The records of fingerprint `fp`.
    async fn records_of(&self, fp: &str) -> Result<Vec<BkRun>, Error> {
        // Records as of a version of this object or later: a record written before this
        // object was created (its predecessor's, written before that one was let go) is in the
        // answer. The version the watch delivered is the oldest one known, so the API server's
        // watch cache is the likeliest to have passed it (a quorum read of every record in the
        // namespace otherwise, per new object).
        let rv = self
            .delivered_rv
            .clone()
            .or_else(|| self.rv())
            .ok_or(Error::Unnamed)?;
        Ok(self.life.store.records(&self.ns, fp, &rv).await?)
    }

    /// The guard's records read ahead, while the finalizer is written (the read does not depend
    /// on that write, and a new object's submission waits for both): `None` when the guard
    /// will not look, or the read failed (the guard then reads itself).
    pub(super) async fn guard_read_ahead(
        &self,
        status: &JobStatus,
    ) -> Option<(String, Vec<BkRun>)> {
        let fp = self.guarded_fingerprint(status)?;
        let records = self.records_of(&fp).await.ok()?;
        Some((fp, records))
    }

    /// The re-creation guard, before the first run of an object that never ran: with
    /// `recreatePolicy: Adopt`, the newest record of the same fingerprint becomes this object's
    /// run. `None`: no record, the object runs.
    pub(super) async fn guard(&self, status: &JobStatus) -> Result<Option<Next>, Error> {
        let Some(fp) = self.guarded_fingerprint(status) else {
            return Ok(None);
        };
        let read_ahead = self
            .read_ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|(of, _)| *of == fp);
        let records = match read_ahead {
            Some((_, records)) => records,
            None => self.records_of(&fp).await?,
        };
        // The label narrows the list; the fingerprint in the spec decides.
        let records: Vec<BkRun> = records
            .into_iter()
            .filter(|r| r.spec.fingerprint == fp && r.spec.job_kind == K::NAME)
            .collect();
        let Some(record) = newest(&records) else {
            return Ok(None);
        };
        let record_name = record.metadata.name.clone().unwrap_or_default();
        let run = adopted_run(&record.spec, self.generation);
        let what = match (&run.job_id, run.phase) {
            (None, _) => format!(
                "whether its create made a job is unknown: resolve run {} with bkops.io/adopt-job-id or bkops.io/confirm-not-submitted",
                run.key
            ),
            (Some(id), p) if p.is_final() => format!("job {id} ended {p}"),
            (Some(id), _) => format!("following job {id}"),
        };
        let message = format!(
            "this {} ran before with the same spec and rerunToken (run record {record_name}, run {}); adopted it instead of running again: {what}. Change spec.rerunToken to run again",
            K::NAME,
            run.key,
        );
        let now = self.life.clock.now();
        let status_phase = run.phase;
        let mut new = render(
            status,
            self.generation,
            status_phase,
            reason::ADOPTED_EARLIER_RUN,
            message.clone(),
            Some(run.clone()),
            now,
        );
        if status_phase.is_final() {
            push_history(&mut new.history, &run);
        }
        self.write(status, new).await?;
        let severity = if run.job_id.is_none() {
            Severity::Warning
        } else {
            Severity::Normal
        };
        self.event(severity, reason::ADOPTED_EARLIER_RUN, &message);
        self.life.counters.submission(self.kind, "adopted_record");
        // The record is this run's: remember it as written at its stage.
        self.life
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .written
            .insert(
                run.key.clone(),
                stage(&record.spec.job_id, record.spec.phase),
            );
        Ok(Some(if status_phase.is_final() || run.job_id.is_none() {
            Next::AwaitChange
        } else {
            Next::Requeue(std::time::Duration::from_millis(200))
        }))
    }
}

/// `name` as a label value (at most 63 characters; longer names are cut, the record's spec
/// keeps the whole name).
fn label_value(name: &str) -> String {
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.', '_']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_valid_and_distinct_for_long_object_names() {
        assert_eq!(
            record_name("ProcessJob", "restart", "1f3a9c2e-g1-a1"),
            "processjob-restart-1f3a9c2e-g1-a1"
        );
        let long_a = format!("{}a", "x".repeat(250));
        let long_b = format!("{}b", "x".repeat(250));
        let a = record_name("Taskflow", &long_a, "1f3a9c2e-g1-a1");
        let b = record_name("Taskflow", &long_b, "1f3a9c2e-g1-a1");
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME, "{a}");
        assert_ne!(a, b);
        assert!(a.ends_with("-1f3a9c2e-g1-a1"));
        // A cut never leaves a label ending in '-' or '.'.
        let dotted = format!("{}.{}", "y".repeat(220), "z".repeat(40));
        let c = record_name("AgentJob", &dotted, "k-g1-a1");
        assert!(!c.contains(".-") && !c.contains("--"), "{c}");
    }

    #[test]
    fn a_record_without_a_job_id_is_adopted_as_unknown() {
        let spec = BkRunSpec {
            run_key: "u-g1-a1".into(),
            phase: Phase::Submitting,
            ..BkRunSpec::default()
        };
        let run = adopted_run(&spec, 1);
        assert_eq!(run.phase, Phase::Unknown);
        assert!(run.job_id.is_none());
        let running = BkRunSpec {
            job_id: Some("7".into()),
            phase: Phase::Running,
            ..spec.clone()
        };
        assert_eq!(adopted_run(&running, 3).phase, Phase::Running);
        assert_eq!(adopted_run(&running, 3).generation, 3);
        let done = BkRunSpec {
            phase: Phase::Succeeded,
            ..running
        };
        assert_eq!(adopted_run(&done, 1).phase, Phase::Succeeded);
    }

    #[test]
    fn gitops_sources_are_read_from_argo_cd_and_flux_marks() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let ann = map(&[(
            "argocd.argoproj.io/tracking-id",
            "app:bkops.io/ProcessJob:ns/x",
        )]);
        assert_eq!(
            gitops_source(None, Some(&ann)).as_deref(),
            Some("argocd:app:bkops.io/ProcessJob:ns/x")
        );
        let flux = map(&[
            ("kustomize.toolkit.fluxcd.io/name", "jobs"),
            ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
        ]);
        assert_eq!(
            gitops_source(Some(&flux), None).as_deref(),
            Some("flux:kustomization/flux-system/jobs")
        );
        assert_eq!(gitops_source(Some(&map(&[])), None), None);
    }

    #[test]
    fn the_newest_record_wins() {
        let at = |name: &str, secs: i64| {
            let mut r = BkRun::new(name, BkRunSpec::default());
            r.spec.intent_at = chrono::DateTime::from_timestamp(secs, 0);
            r
        };
        let records = [at("a", 10), at("b", 30), at("c", 20)];
        assert_eq!(
            newest(&records).and_then(|r| r.metadata.name.as_deref()),
            Some("b")
        );
        assert!(newest(&[]).is_none());
    }
}
