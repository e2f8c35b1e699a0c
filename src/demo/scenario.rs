//! The scenario: the job manifests of the examples folder, the twists the simulator gives some of
//! them, and what the simulator's job states mean.

use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::manifests::{documents, kind_and_name};
use crate::api::Phase;
use crate::sim::{Behaviour, System};

/// One job manifest of the examples folder.
#[derive(Clone, Debug)]
pub(super) struct Example {
    pub(super) file: String,
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) system: System,
    pub(super) doc: Value,
}

/// What the simulator is told to do with one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Twist {
    /// The last of its targets fail: the run fails, with failed targets.
    FailTarget,
    /// It stops for a person, whom the demo plays a few seconds later.
    WaitForUser,
}

impl Twist {
    pub(super) fn behaviour(self, system: System) -> Behaviour {
        Behaviour {
            system,
            failed_targets: (self == Twist::FailTarget).then_some(1),
            wait_for_user: self == Twist::WaitForUser,
            duration_ms: None,
            targets: None,
            times: Some(1),
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Twist::FailTarget => "one target will fail",
            Twist::WaitForUser => "it will wait for a person (the demo approves it)",
        }
    }

    /// The phase the run should end in.
    pub(super) fn expected(self) -> Phase {
        match self {
            Twist::FailTarget => Phase::Failed,
            Twist::WaitForUser => Phase::Succeeded,
        }
    }
}

/// The system a job kind talks to.
fn system_of(kind: &str) -> Option<System> {
    crate::run::kinds::job_kind(kind).map(|k| k.system.into())
}

/// A system's name for people.
pub(super) fn system_label(system: System) -> &'static str {
    match system {
        System::Gsekit => "GSEKit",
        System::Bkflow => "BKFlow",
        System::Nodeman => "NodeMan",
        System::Job => "JOB",
    }
}

/// The job manifests of `dir` (`*.yaml`, `*.yml`, in name order), and what was skipped.
pub(super) fn load_examples(dir: &Path) -> anyhow::Result<(Vec<Example>, Vec<String>)> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading the examples folder {} (run `bkops demo` from the bkops repository, or pass \
             --examples DIR)",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    let mut jobs: Vec<Example> = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let docs = documents(&text).with_context(|| format!("{}", path.display()))?;
        for doc in docs {
            let (kind, name) =
                kind_and_name(&doc).with_context(|| format!("{}", path.display()))?;
            let Some(system) = system_of(kind) else {
                skipped.push(format!("{file}: {kind} {name}"));
                continue;
            };
            if jobs.iter().any(|j| j.kind == kind && j.name == name) {
                bail!("{}: a second {kind} named {name}", path.display());
            }
            jobs.push(Example {
                file: file.clone(),
                kind: kind.to_owned(),
                name: name.to_owned(),
                system,
                doc: doc.clone(),
            });
        }
    }
    if jobs.is_empty() {
        bail!(
            "no job manifests (ProcessJob, Taskflow, AgentJob, ExecuteJob) in {}",
            dir.display()
        );
    }
    Ok((jobs, skipped))
}

/// Which jobs get a twist: the first AgentJob (else ProcessJob) without a retry policy fails a
/// target (a retry would make a second create); the first ExecuteJob (else Taskflow) waits for a
/// person. They are of different systems, so each behaviour meets its own job's create.
pub(super) fn choose_twists(jobs: &[Example]) -> Vec<(usize, Twist)> {
    let retries = |e: &Example| {
        e.doc["spec"]["retry"]["limit"]
            .as_u64()
            .is_some_and(|limit| limit > 0)
    };
    let first = |kinds: &[&str], ok: &dyn Fn(&Example) -> bool| {
        kinds
            .iter()
            .find_map(|kind| jobs.iter().position(|e| e.kind == *kind && ok(e)))
    };
    let mut twists = Vec::new();
    if let Some(i) = first(&["AgentJob", "ProcessJob"], &|e| !retries(e)) {
        twists.push((i, Twist::FailTarget));
    }
    if let Some(i) = first(&["ExecuteJob", "Taskflow"], &|_| true) {
        twists.push((i, Twist::WaitForUser));
    }
    twists
}

/// The phase a simulator job's final state means, or `None` while it is not final. Written from
/// the simulator's side (`docs/blueking-api.md`), not taken from the operator's mapping, so the two check
/// each other.
pub(super) fn simulator_phase(system: System, state: &str) -> Option<Phase> {
    let phase = match (system, state) {
        (System::Gsekit, "succeeded") => Phase::Succeeded,
        (System::Gsekit, "failed") => Phase::Failed,
        (System::Bkflow, "FINISHED") => Phase::Succeeded,
        (System::Bkflow, "FAILED" | "EXPIRED") => Phase::Failed,
        (System::Bkflow, "REVOKED") => Phase::Cancelled,
        (System::Nodeman, "SUCCESS") => Phase::Succeeded,
        (System::Nodeman, "FAILED" | "PART_FAILED") => Phase::Failed,
        (System::Job, "3" | "6") => Phase::Succeeded,
        (System::Job, "4" | "5" | "9" | "14") => Phase::Failed,
        (System::Job, "8" | "11" | "13") => Phase::Cancelled,
        _ => return None,
    };
    Some(phase)
}

/// A simulator state for people: JOB's numeric statuses get their names.
pub(super) fn state_label(system: System, state: &str) -> String {
    let name = match (system, state) {
        (System::Job, "1") => "BLANK",
        (System::Job, "2") => "RUNNING",
        (System::Job, "3") => "SUCCESS",
        (System::Job, "4") => "FAIL",
        (System::Job, "5") => "SKIPPED",
        (System::Job, "6") => "IGNORE_ERROR",
        (System::Job, "7") => "WAITING_USER",
        (System::Job, "8") => "TERMINATED",
        (System::Job, "11") => "STOP_SUCCESS",
        _ => return state.to_owned(),
    };
    format!("{state} {name}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn repo_examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
    }

    #[test]
    fn loads_the_repository_examples_without_connections() {
        let (jobs, skipped) = load_examples(&repo_examples()).unwrap();
        assert_eq!(jobs.len(), 11);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(
            skipped
                .iter()
                .all(|s| s.contains("Secret") || s.contains("BkConnection"))
        );
        for system in System::ALL {
            let want = if system == System::Gsekit { 5 } else { 2 };
            assert_eq!(jobs.iter().filter(|j| j.system == system).count(), want);
        }
        let twists = choose_twists(&jobs);
        assert_eq!(twists.len(), 2);
        let (fail, wait) = (&jobs[twists[0].0], &jobs[twists[1].0]);
        assert_eq!(
            (fail.kind.as_str(), twists[0].1),
            ("AgentJob", Twist::FailTarget)
        );
        assert_eq!(
            (wait.kind.as_str(), twists[1].1),
            ("ExecuteJob", Twist::WaitForUser)
        );
    }

    #[test]
    fn a_job_with_retries_never_gets_failed_targets() {
        let doc = |kind: &str, name: &str, retry: bool| Example {
            file: "f.yaml".into(),
            kind: kind.into(),
            name: name.into(),
            system: system_of(kind).unwrap(),
            doc: if retry {
                serde_json::json!({"spec": {"retry": {"limit": 1}}})
            } else {
                serde_json::json!({"spec": {}})
            },
        };
        let jobs = [doc("ProcessJob", "a", true), doc("ProcessJob", "b", false)];
        assert_eq!(choose_twists(&jobs), vec![(1, Twist::FailTarget)]);
        assert!(choose_twists(&[doc("ProcessJob", "a", true)]).is_empty());
    }

    #[test]
    fn missing_or_empty_folders_are_clear_errors() {
        let err = load_examples(Path::new("/nonexistent/examples")).unwrap_err();
        assert!(format!("{err:#}").contains("--examples"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            "kind: Secret\nmetadata: {name: s}\n",
        )
        .unwrap();
        let err = load_examples(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no job manifests"), "{err}");
    }

    #[test]
    fn simulator_states() {
        assert_eq!(
            simulator_phase(System::Gsekit, "succeeded"),
            Some(Phase::Succeeded)
        );
        assert_eq!(simulator_phase(System::Gsekit, "running"), None);
        assert_eq!(
            simulator_phase(System::Nodeman, "PART_FAILED"),
            Some(Phase::Failed)
        );
        assert_eq!(simulator_phase(System::Nodeman, "TERMINATED"), None);
        assert_eq!(
            simulator_phase(System::Bkflow, "REVOKED"),
            Some(Phase::Cancelled)
        );
        assert_eq!(simulator_phase(System::Job, "3"), Some(Phase::Succeeded));
        assert_eq!(simulator_phase(System::Job, "7"), None);
        assert_eq!(state_label(System::Job, "3"), "3 SUCCESS");
        assert_eq!(state_label(System::Bkflow, "FINISHED"), "FINISHED");
    }
}
