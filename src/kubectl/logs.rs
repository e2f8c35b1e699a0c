//! `logs KIND/NAME [--target HOST] [--run KEY]`: what each target of a run did, read from
//! BlueKing through the job's own connection: per host, process or flow node its status, why it
//! failed, and its steps' logs where the system keeps them (JOB, NodeMan).
//!
//! The connection and its Secret are read with the user's own kubeconfig rights, like every
//! other read of the plugin, so only someone who may read the credentials can use them.

use kube::api::{Api, DynamicObject, ListParams};
use serde_json::json;

use super::{Scope, Target};
use crate::api::common::{ConnectionRef, Phase};
use crate::api::{AgentJob, BkConnection, ExecuteJob, JobStatus, ProcessJob, Taskflow};
use crate::bk::System;
use crate::bk::facade::{JobRef, TargetLogs, TargetOutcome};
use crate::controller::connection::{ConnectionError, Connections, Resolved};
use crate::run::{Defaults, JobKind};

/// How `logs` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogsFormat {
    /// One block per target, failures first.
    #[default]
    Text,
    /// The same as one JSON document.
    Json,
}

/// What `logs` was asked for.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogsArgs {
    /// Only this target (IP, host id, process, node name).
    pub target: Option<String>,
    /// This run instead of the current one.
    pub run: Option<String>,
    /// The connection of a job without `connectionRef`.
    pub connection: Option<String>,
    /// Text or JSON.
    pub format: LogsFormat,
}

/// The run to show: its key and BlueKing job id, or why it has none.
fn pick_run(
    status: &JobStatus,
    want: Option<&str>,
    label: &str,
) -> Result<(String, String), String> {
    let current = status.run.as_ref();
    let unclear = |key: &str| {
        format!(
            "run {key} has no BlueKing job id: its create is unclear (Unknown), so BlueKing may or \
             may not have made a job for it; check BlueKing, then settle it with `kubectl bkops \
             resolve {label} --adopt ID` or `--not-submitted`"
        )
    };
    match want {
        None => {
            let run = current.ok_or_else(|| "it has no run yet".to_owned())?;
            match (&run.job_id, run.phase) {
                (Some(id), _) => Ok((run.key.clone(), id.clone())),
                (None, Phase::Unknown) => Err(unclear(&run.key)),
                (None, phase) => Err(format!("run {} has no BlueKing job yet ({phase})", run.key)),
            }
        }
        Some(key) => {
            if current.is_some_and(|r| r.key == key) {
                return pick_run(status, None, label);
            }
            let record = status.history.iter().find(|h| h.key == key);
            match record {
                Some(h) => match (&h.job_id, h.phase) {
                    (Some(id), _) => Ok((h.key.clone(), id.clone())),
                    (None, Phase::Unknown) => Err(unclear(key)),
                    (None, phase) => Err(format!(
                        "run {key} never got a BlueKing job (it ended {phase})"
                    )),
                },
                None => {
                    let known: Vec<&str> = current
                        .map(|r| r.key.as_str())
                        .into_iter()
                        .chain(status.history.iter().map(|h| h.key.as_str()))
                        .collect();
                    Err(if known.is_empty() {
                        format!("no run {key}: it has no run yet")
                    } else {
                        format!("no run {key}; its runs: {}", known.join(", "))
                    })
                }
            }
        }
    }
}

/// The job behind `job_id`, as the operator follows it.
fn job_ref(
    system: System,
    obj: &DynamicObject,
    job_id: &str,
    defaults: &Defaults,
) -> Result<JobRef, String> {
    fn of<K: JobKind>(obj: &DynamicObject, id: &str, d: &Defaults) -> Result<JobRef, String> {
        let k: K = serde_json::to_value(obj)
            .and_then(serde_json::from_value)
            .map_err(|e| format!("cannot read it as {}: {e}", K::NAME))?;
        k.job_ref(id, d).map_err(|e| e.0)
    }
    match system {
        System::Gsekit => of::<ProcessJob>(obj, job_id, defaults),
        System::Bkflow => of::<Taskflow>(obj, job_id, defaults),
        System::Nodeman => of::<AgentJob>(obj, job_id, defaults),
        System::Job => of::<ExecuteJob>(obj, job_id, defaults),
    }
}

/// A connection error in the words of someone running the plugin: which object, where, and
/// which right is missing.
fn connection_problem(e: ConnectionError, ns: &str) -> String {
    match e {
        ConnectionError::Api {
            connection,
            source: kube::Error::Api(status),
        } if status.is_forbidden() => {
            let details = status.details.as_ref();
            let kind = details.map(|d| d.kind.as_str()).unwrap_or_default();
            let name = details.map(|d| d.name.as_str()).unwrap_or_default();
            if kind == "secrets" || status.message.contains("\"secrets\"") {
                format!(
                    "cannot read Secret {name:?}, the credentials of BkConnection {connection:?}, \
                     in namespace {ns}: you lack the right `get secrets` there. The logs are read \
                     from BlueKing with the connection's credentials, which the plugin reads with \
                     your own rights; ask for `get` on that Secret"
                )
            } else {
                format!(
                    "cannot read BkConnection {connection:?} in namespace {ns}: you lack the \
                     right `get bkconnections` there"
                )
            }
        }
        ConnectionError::NotFound(name) => {
            format!("BkConnection {name:?} not found in namespace {ns}")
        }
        ConnectionError::SecretNotFound { connection, secret } => {
            format!("Secret {secret:?} of BkConnection {connection:?} not found in namespace {ns}")
        }
        other => format!("connection: {other}"),
    }
}

/// The connection of a job without `connectionRef`: `--connection`, else the namespace's only
/// `BkConnection` (the operator's default must be one of the namespace's).
async fn default_connection(scope: &Scope, flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(name) = flag {
        return Ok(name.to_owned());
    }
    let why = "it has no spec.connectionRef, so it uses the operator's default connection, \
               which the plugin cannot see: name it with --connection NAME";
    let api: Api<BkConnection> = Api::namespaced(scope.client.clone(), &scope.ns);
    let names: Vec<String> = match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect(),
        Err(e) => anyhow::bail!(
            "{why} (listing BkConnections in namespace {}: {e})",
            scope.ns
        ),
    };
    match names.as_slice() {
        [only] => Ok(only.clone()),
        [] => anyhow::bail!("{why} (namespace {} has no BkConnection)", scope.ns),
        many => anyhow::bail!("{why} (one of: {})", many.join(", ")),
    }
}

async fn connect(
    scope: &Scope,
    reference: Option<&ConnectionRef>,
    flag: Option<&str>,
) -> anyhow::Result<Resolved> {
    let default = match reference {
        Some(_) => None,
        None => Some(default_connection(scope, flag).await?),
    };
    Connections::new(scope.client.clone(), default)
        .resolve_fresh(&scope.ns, reference)
        .await
        .map_err(|e| anyhow::anyhow!(connection_problem(e, &scope.ns)))
}

/// `logs KIND/NAME`.
pub(crate) async fn logs(scope: &Scope, target: &Target, args: &LogsArgs) -> anyhow::Result<()> {
    let label = target.label();
    let obj = scope
        .api(target.entry)
        .get(&target.name)
        .await
        .map_err(|e| anyhow::anyhow!("{label} in namespace {}: {e}", scope.ns))?;
    let status: JobStatus = obj
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let (key, job_id) = pick_run(&status, args.run.as_deref(), &label)
        .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    let reference: Option<ConnectionRef> = obj
        .data
        .pointer("/spec/connectionRef")
        .and_then(|r| serde_json::from_value(r.clone()).ok());
    let resolved = connect(scope, reference.as_ref(), args.connection.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
    let job = job_ref(target.entry.system, &obj, &job_id, &resolved.defaults)
        .map_err(|e| anyhow::anyhow!("{label}: run {key}: {e}"))?;
    let logs = resolved
        .client
        .target_logs(&job, args.target.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{label}: reading run {key} ({job}) from BlueKing: {e}"))?;
    if let Some(wanted) = &args.target
        && logs.targets.is_empty()
    {
        anyhow::bail!(
            "{label}: run {key} has no target {wanted:?}; its targets: {}",
            some_names(&logs.all)
        );
    }
    match args.format {
        LogsFormat::Text => crate::out!("{}", render(&label, &key, &job, &logs))?,
        LogsFormat::Json => {
            let doc = json!({
                "object": label,
                "namespace": scope.ns,
                "run": key,
                "system": job.system(),
                "jobId": job.id(),
                "message": logs.message,
                "targets": logs.targets,
            });
            crate::outln!("{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(())
}

/// At most 20 names, and how many more.
fn some_names(all: &[String]) -> String {
    const SHOWN: usize = 20;
    if all.is_empty() {
        return "none yet".into();
    }
    let mut s = all
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > SHOWN {
        s.push_str(&format!(" and {} more", all.len() - SHOWN));
    }
    s
}

/// `3 targets: 1 failed, 2 succeeded`.
fn counts(logs: &TargetLogs) -> String {
    let n = logs.targets.len();
    let parts: Vec<String> = [
        (TargetOutcome::Failed, "failed"),
        (TargetOutcome::Running, "running"),
        (TargetOutcome::Pending, "pending"),
        (TargetOutcome::Succeeded, "succeeded"),
        (TargetOutcome::Ignored, "ignored"),
    ]
    .iter()
    .filter_map(|(o, word)| {
        let c = logs.targets.iter().filter(|t| t.outcome == *o).count();
        (c > 0).then(|| format!("{c} {word}"))
    })
    .collect();
    let noun = if n == 1 { "target" } else { "targets" };
    if parts.is_empty() {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}: {}", parts.join(", "))
    }
}

/// The text output: a header, then one block per target.
fn render(label: &str, key: &str, job: &JobRef, logs: &TargetLogs) -> String {
    let mut out = format!("{label}  run {key}  {job}\n{}\n", counts(logs));
    if let Some(m) = &logs.message {
        out.push_str(&format!("note: {m}\n"));
    }
    for t in &logs.targets {
        out.push_str(&format!("\n{}  {}  {}\n", t.target, t.outcome, t.status));
        if let Some(r) = &t.reason {
            out.push_str(&format!("  reason: {r}\n"));
        }
        if let Some(n) = &t.note {
            out.push_str(&format!("  note: {n}\n"));
        }
        for s in &t.steps {
            out.push_str(&format!("  step '{}': {}\n", s.name, s.status));
            for line in s.log.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RunStatus;
    use crate::api::common::RunRecord;
    use crate::bk::facade::{StepLog, TargetLog};

    fn status(
        run: Option<(&str, Phase, Option<&str>)>,
        history: &[(&str, Phase, Option<&str>)],
    ) -> JobStatus {
        JobStatus {
            run: run.map(|(key, phase, id)| RunStatus {
                key: key.into(),
                phase,
                job_id: id.map(str::to_owned),
                ..Default::default()
            }),
            history: history
                .iter()
                .map(|(key, phase, id)| RunRecord {
                    key: (*key).into(),
                    phase: *phase,
                    job_id: id.map(|s| (*s).to_owned()),
                    submitted_at: None,
                    completion_time: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_run_is_the_current_one_or_the_one_asked_for() {
        let label = "processjob/restart";
        let s = status(
            Some(("k-g2-a1", Phase::Running, Some("7"))),
            &[
                ("k-g1-a1", Phase::Failed, Some("5")),
                ("k-g0-a1", Phase::Failed, None),
            ],
        );
        let pick = |want| pick_run(&s, want, label);
        assert_eq!(pick(None), Ok(("k-g2-a1".into(), "7".into())));
        assert_eq!(pick(Some("k-g2-a1")), Ok(("k-g2-a1".into(), "7".into())));
        assert_eq!(pick(Some("k-g1-a1")), Ok(("k-g1-a1".into(), "5".into())));
        assert_eq!(
            pick(Some("k-g0-a1")),
            Err("run k-g0-a1 never got a BlueKing job (it ended Failed)".into())
        );
        assert_eq!(
            pick(Some("nope")),
            Err("no run nope; its runs: k-g2-a1, k-g1-a1, k-g0-a1".into())
        );

        let none = status(None, &[]);
        assert_eq!(
            pick_run(&none, None, label),
            Err("it has no run yet".into())
        );
        let submitting = status(Some(("k", Phase::Submitting, None)), &[]);
        assert_eq!(
            pick_run(&submitting, None, label),
            Err("run k has no BlueKing job yet (Submitting)".into())
        );
        let unknown = status(Some(("k", Phase::Unknown, None)), &[]);
        let err = pick_run(&unknown, None, label).err().unwrap_or_default();
        assert!(
            err.contains("create is unclear (Unknown)")
                && err.contains("kubectl bkops resolve processjob/restart --adopt ID"),
            "{err}"
        );
    }

    #[test]
    fn text_output_puts_a_block_per_target_with_steps_indented() {
        let failed = TargetLog {
            target: "10.0.0.2".into(),
            aliases: vec![],
            outcome: TargetOutcome::Failed,
            status: "host status 104 (script exited non-zero), exit code 1".into(),
            reason: Some("step 'deploy': host status 104".into()),
            steps: vec![StepLog {
                name: "deploy".into(),
                status: "host status 104".into(),
                log: "job_start\nexit code 1\n".into(),
            }],
            note: None,
        };
        let ok = TargetLog {
            target: "10.0.0.1".into(),
            outcome: TargetOutcome::Succeeded,
            status: "host status 9 (success)".into(),
            reason: None,
            steps: vec![],
            aliases: vec![],
            note: Some("log not fetched".into()),
        };
        let logs = TargetLogs {
            targets: vec![failed, ok],
            all: vec![],
            message: None,
        };
        let job = JobRef::Nodeman { job_id: 3 };
        let text = render("agentjob/restart", "k-g1-a1", &job, &logs);
        assert_eq!(
            text,
            "agentjob/restart  run k-g1-a1  NodeMan job 3\n\
             2 targets: 1 failed, 1 succeeded\n\
             \n\
             10.0.0.2  Failed  host status 104 (script exited non-zero), exit code 1\n\
             \x20 reason: step 'deploy': host status 104\n\
             \x20 step 'deploy': host status 104\n\
             \x20   job_start\n\
             \x20   exit code 1\n\
             \n\
             10.0.0.1  Succeeded  host status 9 (success)\n\
             \x20 note: log not fetched\n"
        );
        let names: Vec<String> = (0..25).map(|i| format!("h{i}")).collect();
        assert!(some_names(&names).ends_with("h19 and 5 more"));
    }
}
