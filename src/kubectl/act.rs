//! The commands that change a job: `rerun`, `cancel`, `suspend`/`resume` and `resolve`. Each is
//! the patch a person would write by hand, and says what happens next.

use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::{Scope, Target};
use crate::api::JobStatus;
use crate::api::common::{
    ADOPT_ANNOTATION, CONFIRM_NOT_SUBMITTED_ANNOTATION, Phase, RERUN_ANNOTATION,
};

/// The field manager of these edits (a person's, not the operator's).
const MANAGER: &str = "kubectl-bkops";

async fn patch(scope: &Scope, target: &Target, patch: Value) -> anyhow::Result<DynamicObject> {
    scope
        .api(target.entry)
        .patch(
            &target.name,
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{} in namespace {}: {e}", target.label(), scope.ns))
}

/// `rerun`: one more run of the same spec.
pub(crate) async fn rerun(scope: &Scope, target: &Target) -> anyhow::Result<()> {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    patch(
        scope,
        target,
        json!({"metadata": {"annotations": {RERUN_ANNOTATION: at}}}),
    )
    .await?;
    crate::outln!(
        "{}: rerun requested ({RERUN_ANNOTATION}={at}); it starts once the current run, if any, has ended",
        target.label()
    )?;
    Ok(())
}

/// `cancel`: stop the running job.
pub(crate) async fn cancel(scope: &Scope, target: &Target) -> anyhow::Result<()> {
    patch(scope, target, json!({"spec": {"cancel": true}})).await?;
    crate::outln!(
        "{}: cancel requested (spec.cancel=true); GSEKit jobs cannot be cancelled and run to their end",
        target.label()
    )?;
    Ok(())
}

/// `suspend` / `resume`.
pub(crate) async fn suspend(scope: &Scope, target: &Target, on: bool) -> anyhow::Result<()> {
    let value = if on { json!(true) } else { Value::Null };
    patch(scope, target, json!({"spec": {"suspend": value}})).await?;
    let what = if on {
        "suspended: no new run starts; a running job runs on"
    } else {
        "resumed: a run that is due starts"
    };
    crate::outln!("{}: {what}", target.label())?;
    Ok(())
}

/// Why `run` cannot be resolved, if it cannot.
fn unresolvable(status: &JobStatus) -> Option<String> {
    let Some(run) = &status.run else {
        return Some("it has no run".into());
    };
    if run.phase != Phase::Unknown || run.job_id.is_some() {
        return Some(format!(
            "run {} is {}{}, not Unknown: there is nothing to resolve",
            run.key,
            run.phase,
            run.job_id
                .as_deref()
                .map(|id| format!(" with job {id}"))
                .unwrap_or_default()
        ));
    }
    None
}

/// `resolve --adopt ID | --not-submitted`.
pub(crate) async fn resolve(
    scope: &Scope,
    target: &Target,
    adopt: Option<&str>,
) -> anyhow::Result<()> {
    let obj = scope
        .api(target.entry)
        .get(&target.name)
        .await
        .map_err(|e| anyhow::anyhow!("{} in namespace {}: {e}", target.label(), scope.ns))?;
    let status: JobStatus = obj
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    if let Some(why) = unresolvable(&status) {
        anyhow::bail!("{}: {why}", target.label());
    }
    let key = status.run.map(|r| r.key).unwrap_or_default();
    match adopt {
        Some(id) => {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
                anyhow::bail!("--adopt {id:?}: a BlueKing job id is a number");
            }
            patch(
                scope,
                target,
                json!({"metadata": {"annotations": {ADOPT_ANNOTATION: id}}}),
            )
            .await?;
            crate::outln!(
                "{}: run {key} follows BlueKing job {id} ({ADOPT_ANNOTATION}={id})",
                target.label()
            )?;
        }
        None => {
            patch(
                scope,
                target,
                json!({"metadata": {"annotations": {CONFIRM_NOT_SUBMITTED_ANNOTATION: key}}}),
            )
            .await?;
            crate::outln!(
                "{}: run {key} confirmed not submitted ({CONFIRM_NOT_SUBMITTED_ANNOTATION}={key}); it is submitted again",
                target.label()
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RunStatus;

    #[test]
    fn only_an_unknown_run_without_a_job_is_resolved() {
        let with = |phase, job: Option<&str>| JobStatus {
            run: Some(RunStatus {
                key: "k-g1-a1".into(),
                phase,
                job_id: job.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(unresolvable(&with(Phase::Unknown, None)), None);
        assert_eq!(
            unresolvable(&with(Phase::Running, Some("7"))).as_deref(),
            Some("run k-g1-a1 is Running with job 7, not Unknown: there is nothing to resolve")
        );
        assert!(unresolvable(&with(Phase::Submitting, None)).is_some());
        assert_eq!(
            unresolvable(&JobStatus::default()).as_deref(),
            Some("it has no run")
        );
    }
}
