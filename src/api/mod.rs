//! The `bkops.io/v1alpha1` API: four job kinds, `BkConnection` and the run records (`BkRun`).
//!
//! One file per kind (spec, validation, wire names together); [`common`] holds the fields and
//! status every job kind shares.

pub mod agent_job;
pub mod common;
pub mod connection;
pub mod execute_job;
pub mod process_job;
pub mod run_record;
pub mod taskflow;
pub mod validation;

pub use agent_job::{AgentJob, AgentJobSpec};
pub use common::{CommonSpec, JobStatus, Phase, RunStatus};
pub use connection::{BkConnection, BkConnectionSpec};
pub use execute_job::{ExecuteJob, ExecuteJobSpec};
pub use process_job::{ProcessJob, ProcessJobSpec};
pub use run_record::{BkRun, BkRunSpec};
pub use taskflow::{Taskflow, TaskflowSpec};
pub use validation::{FieldError, FieldErrors};

use schemars::{Schema, SchemaGenerator, json_schema};

/// A free-form object kept as given (`x-kubernetes-preserve-unknown-fields`), but for the API
/// server's JSON: a whole float (`2.0`) is stored as an integer (`2`).
pub(crate) fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Any JSON value (a string, number, list or object), kept as given.
pub(crate) fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests;
