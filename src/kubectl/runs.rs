//! `runs`: the run records (`BkRun`) that outlive their job objects, and the records section
//! of `describe`.

use chrono::Utc;
use kube::api::{Api, ListParams};

use super::text::{age, align, time};
use super::{Scope, Target};
use crate::api::BkRun;
use crate::api::run_record::{JOB_KIND_LABEL, JOB_NAME_LABEL};

fn selector(target: &Target) -> String {
    format!(
        "{JOB_KIND_LABEL}={},{JOB_NAME_LABEL}={}",
        target.entry.name, target.name
    )
}

/// The records of one job (`target`) or of all, newest first.
async fn list(scope: &Scope, target: Option<&Target>) -> anyhow::Result<Vec<BkRun>> {
    let api: Api<BkRun> = if scope.all {
        Api::all(scope.client.clone())
    } else {
        Api::namespaced(scope.client.clone(), &scope.ns)
    };
    let params = match target {
        Some(t) => ListParams::default().labels(&selector(t)),
        None => ListParams::default(),
    };
    let mut items = api
        .list(&params)
        .await
        .map_err(|e| anyhow::anyhow!("listing run records (bkruns): {e}"))?
        .items;
    // The label holds at most 63 characters of the name; the spec holds all of it.
    if let Some(t) = target {
        items.retain(|r| r.spec.job_name == t.name);
    }
    items.sort_by(|a, b| {
        let key = |r: &BkRun| {
            (
                r.spec.intent_at.or(r.spec.submitted_at),
                r.metadata.name.clone(),
            )
        };
        key(b).cmp(&key(a))
    });
    Ok(items)
}

fn table(records: &[BkRun], all: bool) -> String {
    let now = Utc::now();
    let mut header = vec![
        "JOB", "RUN", "PHASE", "JOB ID", "STARTED", "FINISHED", "SOURCE",
    ];
    if all {
        header.insert(0, "NAMESPACE");
    }
    let mut rows = vec![header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()];
    for r in records {
        let s = &r.spec;
        let mut row = vec![
            format!("{}/{}", s.job_kind.to_ascii_lowercase(), s.job_name),
            s.run_key.clone(),
            if s.outcome_unknown() {
                format!("{} (outcome unknown)", s.phase)
            } else {
                s.phase.to_string()
            },
            s.job_id.clone().unwrap_or_else(|| "-".into()),
            age(s.submitted_at.or(s.intent_at), now),
            age(s.completion_time, now),
            s.gitops_revision.clone().unwrap_or_else(|| "-".into()),
        ];
        if all {
            row.insert(0, r.metadata.namespace.clone().unwrap_or_default());
        }
        rows.push(row);
    }
    align(rows)
}

/// `runs [KIND/NAME]`.
pub(crate) async fn runs(scope: &Scope, target: Option<&Target>) -> anyhow::Result<()> {
    let records = list(scope, target).await?;
    if records.is_empty() {
        let whose = target
            .map(|t| format!(" of {}", t.label()))
            .unwrap_or_default();
        crate::errln!("No run records{whose} in {}.", scope.place());
        return Ok(());
    }
    crate::out!("{}", table(&records, scope.all))?;
    Ok(())
}

/// The `Records:` section of `describe`: every run on record for the job, also those of earlier
/// objects of the same name.
pub(crate) async fn records_of(scope: &Scope, target: &Target) -> String {
    let records = match list(scope, Some(target)).await {
        Ok(r) => r,
        Err(e) => return format!("Records:    cannot list them: {e}\n"),
    };
    if records.is_empty() {
        return "Records:    none\n".into();
    }
    let mut out = String::from("Records:\n");
    for r in records {
        let s = &r.spec;
        out.push_str(&format!(
            "  {}  {}  job {}  submitted {}  completed {}  ({})\n",
            s.run_key,
            s.phase,
            s.job_id.as_deref().unwrap_or("unknown"),
            time(s.submitted_at),
            time(s.completion_time),
            r.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BkRunSpec;
    use crate::api::common::Phase;

    #[test]
    fn the_table_shows_unknown_outcomes_and_namespaces_for_all() {
        let mut r = BkRun::new(
            "processjob-restart-abc-g1-a1",
            BkRunSpec {
                job_kind: "ProcessJob".into(),
                job_name: "restart".into(),
                run_key: "abc-g1-a1".into(),
                phase: Phase::Submitting,
                ..BkRunSpec::default()
            },
        );
        r.metadata.namespace = Some("ops".into());
        let t = table(std::slice::from_ref(&r), false);
        let rows: Vec<&str> = t.lines().collect();
        assert!(rows[0].starts_with("JOB "), "{t}");
        assert!(
            rows[1]
                .starts_with("processjob/restart   abc-g1-a1   Submitting (outcome unknown)   -"),
            "{t}"
        );
        assert!(table(&[r], true).starts_with("NAMESPACE   JOB"));
    }
}
