//! `get` (a table of jobs, `-w` to keep watching) and `describe` (one job in full).

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DynamicObject, ListParams};

use super::text::{age, align, time};
use super::{Scope, Target, kind_entry};
use crate::api::JobStatus;
use crate::run::kinds::{JOB_KINDS, KindEntry};

/// One job as `get` shows it.
#[derive(Clone, Debug, PartialEq)]
struct Line {
    namespace: String,
    kind: String,
    name: String,
    phase: String,
    reason: String,
    job: String,
    targets: String,
    created: Option<DateTime<Utc>>,
}

/// A Kubernetes time as chrono's.
fn utc(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().try_into().unwrap_or(0))
}

fn status_of(obj: &DynamicObject) -> Option<JobStatus> {
    obj.data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

fn line(kind: &str, obj: &DynamicObject) -> Line {
    let status = status_of(obj);
    let run = status.as_ref().and_then(|s| s.run.as_ref());
    let targets = run
        .and_then(|r| r.summary.as_ref())
        .map(|s| format!("{}/{} ok, {} failed", s.succeeded, s.total, s.failed))
        .unwrap_or_default();
    Line {
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        kind: kind.to_owned(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        phase: status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into()),
        reason: run.and_then(|r| r.reason.clone()).unwrap_or_default(),
        job: run.and_then(|r| r.job_id.clone()).unwrap_or_default(),
        targets,
        created: obj
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| utc(&t.0)),
    }
}

fn table(lines: &[Line], all: bool, now: DateTime<Utc>) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["KIND", "NAME", "PHASE", "REASON", "JOB", "TARGETS", "AGE"];
    if all {
        header.insert(0, "NAMESPACE");
    }
    rows.push(header.iter().map(|h| (*h).to_owned()).collect());
    for l in lines {
        let mut row = vec![
            l.kind.clone(),
            l.name.clone(),
            l.phase.clone(),
            l.reason.clone(),
            l.job.clone(),
            l.targets.clone(),
            age(l.created, now),
        ];
        if all {
            row.insert(0, l.namespace.clone());
        }
        rows.push(row);
    }
    align(rows)
}

async fn lines(scope: &Scope, kinds: &[&'static KindEntry]) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    for entry in kinds {
        let list = scope
            .list_api(entry)
            .list(&ListParams::default())
            .await
            .map_err(|e| anyhow::anyhow!("listing {}s: {e}", entry.name))?;
        lines.extend(list.items.iter().map(|o| line(entry.name, o)));
    }
    lines.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));
    Ok(lines)
}

/// `get [KIND] [-w]`.
pub(crate) async fn get(scope: &Scope, kind: Option<&str>, watch: bool) -> anyhow::Result<()> {
    let kinds: Vec<&'static KindEntry> = match kind {
        Some(k) => vec![kind_entry(k)?],
        None => JOB_KINDS.iter().collect(),
    };
    let mut shown: Option<Vec<Line>> = None;
    loop {
        let now = Utc::now();
        let current = lines(scope, &kinds).await?;
        if shown.as_ref() != Some(&current) {
            if current.is_empty() && !watch {
                crate::errln!("No bkops jobs found in {}.", scope.place());
                return Ok(());
            }
            if shown.is_some() {
                crate::out!("\n")?;
            }
            crate::out!("{}", table(&current, scope.all, now))?;
            shown = Some(current);
        }
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `describe KIND/NAME`.
pub(crate) async fn describe(scope: &Scope, target: &Target) -> anyhow::Result<()> {
    let obj = scope
        .api(target.entry)
        .get(&target.name)
        .await
        .map_err(|e| anyhow::anyhow!("{} in namespace {}: {e}", target.label(), scope.ns))?;
    let status = status_of(&obj).unwrap_or_default();
    let mut out = String::new();
    let mut field = |k: &str, v: &str| out.push_str(&format!("{k:<12}{v}\n"));
    field("Name:", &target.name);
    field("Namespace:", &scope.ns);
    field("Kind:", target.entry.name);
    field(
        "Phase:",
        &status
            .phase
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    field("Message:", status.message.as_deref().unwrap_or("-"));
    if let Some(run) = &status.run {
        out.push_str("Run:\n");
        let mut f = |k: &str, v: String| out.push_str(&format!("  {k:<12}{v}\n"));
        f("Key:", run.key.clone());
        f(
            "Phase:",
            format!("{} ({})", run.phase, run.reason.clone().unwrap_or_default()),
        );
        f(
            "Job:",
            match (&run.job_id, &run.job_url) {
                (Some(id), Some(url)) => format!("{id}  {url}"),
                (Some(id), None) => id.clone(),
                _ => "-".into(),
            },
        );
        if let Some(state) = &run.upstream_state {
            f("Upstream:", state.clone());
        }
        f("Intent:", time(run.intent_at));
        f("Submitted:", time(run.submitted_at));
        f("Completed:", time(run.completion_time));
        if let Some(s) = &run.summary {
            f(
                "Targets:",
                format!(
                    "{} total: {} succeeded, {} failed, {} running, {} pending, {} ignored",
                    s.total, s.succeeded, s.failed, s.running, s.pending, s.ignored
                ),
            );
        }
        if !run.failed_targets.is_empty() {
            out.push_str("Failed targets:\n");
            for t in &run.failed_targets {
                out.push_str(&format!("  {}: {}\n", t.target, t.reason));
            }
        }
    }
    if !status.history.is_empty() {
        out.push_str("History:\n");
        for h in &status.history {
            out.push_str(&format!(
                "  {}  {}  job {}  submitted {}  completed {}\n",
                h.key,
                h.phase,
                h.job_id.as_deref().unwrap_or("-"),
                time(h.submitted_at),
                time(h.completion_time)
            ));
        }
    }
    out.push_str(&super::runs::records_of(scope, target).await);
    out.push_str(&events(scope, target).await);
    crate::out!("{out}")?;
    Ok(())
}

/// The object's latest Events, or why they could not be read.
async fn events(scope: &Scope, target: &Target) -> String {
    let api: Api<Event> = Api::namespaced(scope.client.clone(), &scope.ns);
    let params = ListParams::default().fields(&format!("involvedObject.name={}", target.name));
    let list = match api.list(&params).await {
        Ok(l) => l,
        Err(e) => return format!("Events:     cannot list them: {e}\n"),
    };
    let mut events: Vec<&Event> = list
        .items
        .iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some(target.entry.name))
        .collect();
    let at = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .and_then(|t| utc(&t))
    };
    events.sort_by_key(|e| at(e));
    if events.is_empty() {
        return "Events:     none\n".into();
    }
    let now = Utc::now();
    let mut out = String::from("Events:\n");
    for e in events.iter().rev().take(10).rev() {
        out.push_str(&format!(
            "  {:<6} {:<8} {:<24} {}\n",
            age(at(e), now),
            e.type_.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-"),
            e.message.as_deref().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let now = Utc::now();
        let ago = |s| Some(now - chrono::Duration::seconds(s));
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h"),
            (86_400 * 3, "3d"),
        ] {
            assert_eq!(age(ago(secs), now), want);
        }
        assert_eq!(age(None, now), "-");
    }

    #[test]
    fn the_table_aligns_and_names_namespaces_only_for_all() {
        let l = Line {
            namespace: "ops".into(),
            kind: "ProcessJob".into(),
            name: "restart".into(),
            phase: "Succeeded".into(),
            reason: "Succeeded".into(),
            job: "10001".into(),
            targets: "3/3 ok, 0 failed".into(),
            created: None,
        };
        let t = table(std::slice::from_ref(&l), false, Utc::now());
        let rows: Vec<&str> = t.lines().collect();
        assert!(rows[0].starts_with("KIND         NAME      PHASE"), "{t}");
        assert!(
            rows[1].starts_with("ProcessJob   restart   Succeeded"),
            "{t}"
        );
        let t = table(&[l], true, Utc::now());
        assert!(t.starts_with("NAMESPACE   KIND"), "{t}");
    }
}
