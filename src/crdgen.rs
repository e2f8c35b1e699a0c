//! The CustomResourceDefinitions, generated from the Rust types. `crds/` holds their output and
//! a test fails when the two drift apart.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{AgentJob, BkConnection, BkRun, ExecuteJob, ProcessJob, Taskflow};

/// The six kinds bkops defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CrdKind {
    /// GSEKit jobs.
    ProcessJob,
    /// BKFlow tasks.
    Taskflow,
    /// NodeMan jobs.
    AgentJob,
    /// JOB executions.
    ExecuteJob,
    /// Connections to BlueKing.
    BkConnection,
    /// Run records.
    BkRun,
}

impl CrdKind {
    /// Every kind, in the order `bkops crds` prints them.
    pub const ALL: [CrdKind; 6] = [
        CrdKind::ProcessJob,
        CrdKind::Taskflow,
        CrdKind::AgentJob,
        CrdKind::ExecuteJob,
        CrdKind::BkConnection,
        CrdKind::BkRun,
    ];

    /// The generated CRD.
    pub fn crd(self) -> CustomResourceDefinition {
        match self {
            CrdKind::ProcessJob => ProcessJob::crd(),
            CrdKind::Taskflow => Taskflow::crd(),
            CrdKind::AgentJob => AgentJob::crd(),
            CrdKind::ExecuteJob => ExecuteJob::crd(),
            CrdKind::BkConnection => BkConnection::crd(),
            CrdKind::BkRun => BkRun::crd(),
        }
    }

    /// The file under `crds/` that holds this kind's CRD.
    pub fn file_name(self) -> String {
        format!("{}.yaml", self.crd().metadata.name.unwrap_or_default())
    }
}

/// One CRD as a YAML document (with a leading `---`).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(crd)?))
}

/// The YAML for the given kinds, in order.
pub fn render(kinds: &[CrdKind]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for kind in kinds {
        out.push_str(&to_yaml(&kind.crd())?);
    }
    Ok(out)
}

/// Writes one file per kind into `dir`; returns the paths written.
pub fn write_dir(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for kind in CrdKind::ALL {
        let yaml = to_yaml(&kind.crd()).map_err(std::io::Error::other)?;
        let path = dir.join(kind.file_name());
        std::fs::write(&path, yaml)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crds_list_the_job_kinds_of_the_kind_table_in_its_order() {
        let job_crds: Vec<String> = CrdKind::ALL
            .iter()
            .filter(|k| !matches!(k, CrdKind::BkConnection | CrdKind::BkRun))
            .map(|k| k.crd().spec.names.kind)
            .collect();
        assert_eq!(job_crds, crate::run::kinds::JOB_KIND_NAMES);
        for (kind, entry) in CrdKind::ALL.iter().zip(crate::run::kinds::JOB_KINDS) {
            assert_eq!(kind.crd(), (entry.crd)(), "{}", entry.name);
        }
    }
}
