//! `Taskflow`: a BKFlow task, from a template (seed `004`, upstream `create_task`) or from an
//! inline pipeline tree (seed `001`, upstream `create_task_without_template`).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, JobStatus};
use super::validation::{FieldErrors, FieldPath, check_len};
use crate::limits::{BKFLOW_TASK_NAME_MAX_CHARS, BKFLOW_USER_NAME_MAX_CHARS};

/// Longest `name` a user may give: BKFlow's 128 characters less room for the
/// ` [bkops:<run key>]` bkops appends, so that a name given here is almost always kept whole.
pub const MAX_TASK_NAME: usize = BKFLOW_TASK_NAME_MAX_CHARS - 32;

/// Run a BKFlow flow: a task created from a template or from an inline pipeline tree, then
/// started by bkops.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bkops.io",
    version = "v1alpha1",
    kind = "Taskflow",
    namespaced,
    status = "JobStatus",
    shortname = "tflow",
    category = "bkops",
    doc = "A BKFlow task (create_task / create_task_without_template), started and followed by bkops.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".status.run.jobId"}"#,
    printcolumn = r#"{"name":"OK","type":"integer","jsonPath":".status.run.summary.succeeded"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.run.summary.failed"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#
)]
#[x_kube(
    cel,
    validation = Rule::new("has(self.templateId) != has(self.pipelineTree)").message("exactly one of templateId or pipelineTree is required"),
    validation = Rule::new("has(self.pipelineTree) || (!has(self.scopeType) && !has(self.scopeValue))").message("scopeType and scopeValue apply only to a pipelineTree task")
)]
#[serde(rename_all = "camelCase")]
pub struct TaskflowSpec {
    /// Fields shared by every job kind.
    #[serde(flatten)]
    pub common: CommonSpec,

    /// The BKFlow space. Path parameter `space_id` of every BKFlow call; defaults to the
    /// connection's `bkflowSpaceId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::api::common::MAX_BK_ID))]
    pub space_id: Option<i64>,

    /// Create the task from this flow template. BKFlow `create_task` `template_id`.
    /// Exactly one of `templateId` and `pipelineTree`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::api::common::MAX_BK_ID))]
    pub template_id: Option<i64>,

    /// Create the task from this pipeline tree, kept as given, except that Kubernetes turns a
    /// whole float into an integer (`2.0` reaches BKFlow as `2`); where the type matters, give
    /// the value as a string (`"2.0"`) and convert it in the flow. BKFlow
    /// `create_task_without_template` `pipeline_tree`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::free_form_object")]
    pub pipeline_tree: Option<serde_json::Value>,

    /// Who creates the task (at most 32 characters, BKFlow's limit). BKFlow `creator`.
    #[schemars(length(min = 1, max = BKFLOW_USER_NAME_MAX_CHARS))]
    pub creator: String,

    /// Task name (at most 96 characters). BKFlow `name`. bkops appends ` [bkops:<run key>]`,
    /// by which it finds the task again; without a name the object's name is used, cut where
    /// needed (ending in `…`) so that the whole stays within BKFlow's 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TASK_NAME))]
    pub name: Option<String>,

    /// Task description, sent as given (the run key is in the name). BKFlow `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// Scope type of a pipeline-tree task. BKFlow `scope_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_type: Option<String>,

    /// Scope value of a pipeline-tree task. BKFlow `scope_value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_value: Option<String>,

    /// Task parameters, keyed like `${key}`. BKFlow `constants`. Kubernetes turns a whole float
    /// into an integer (`2.0` reaches BKFlow as `2`); where the type matters, give the value as
    /// a string (`"2.0"`) and convert it in the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::free_form_object")]
    pub constants: Option<serde_json::Value>,
}

impl TaskflowSpec {
    /// Every problem with this spec, with its field path.
    pub fn validate(&self) -> FieldErrors {
        let mut errors = FieldErrors::default();
        self.common.validate_into(&mut errors);
        let spec = FieldPath::spec();
        match (&self.template_id, &self.pipeline_tree) {
            (Some(_), Some(_)) => errors.push(
                spec.clone(),
                "templateId and pipelineTree are both set: exactly one of templateId or pipelineTree is required",
            ),
            (None, None) => errors.push(spec.clone(), "exactly one of templateId or pipelineTree is required"),
            _ => {}
        }
        if let Some(id) = self.template_id
            && id < 1
        {
            errors.push(
                spec.child("templateId"),
                format!("must be at least 1, got {id}"),
            );
        }
        if let Some(id) = self.space_id
            && id < 1
        {
            errors.push(
                spec.child("spaceId"),
                format!("must be at least 1, got {id}"),
            );
        }
        if let Some(tree) = &self.pipeline_tree {
            validate_tree(tree, &spec.child("pipelineTree"), &mut errors);
        }
        if self.pipeline_tree.is_none() && (self.scope_type.is_some() || self.scope_value.is_some())
        {
            errors.push(
                spec.child("scopeType"),
                "scopeType and scopeValue apply only to a pipelineTree task (create_task takes neither)",
            );
        }
        check_len(
            &mut errors,
            spec.child("creator"),
            &self.creator,
            1,
            BKFLOW_USER_NAME_MAX_CHARS,
        );
        if let Some(name) = &self.name {
            check_len(&mut errors, spec.child("name"), name, 0, MAX_TASK_NAME);
        }
        if let Some(c) = &self.constants
            && !c.is_object()
        {
            errors.push(
                spec.child("constants"),
                "must be an object of ${key}: value",
            );
        }
        errors
    }
}

/// A pipeline tree must at least have its start and end events and activities, or BKFlow
/// refuses it only after the object was accepted.
fn validate_tree(tree: &serde_json::Value, path: &FieldPath, errors: &mut FieldErrors) {
    let Some(obj) = tree.as_object() else {
        errors.push(path.clone(), "must be an object");
        return;
    };
    for key in ["start_event", "end_event", "activities", "flows"] {
        if !obj.contains_key(key) {
            errors.push(path.child(key), "is required in a pipeline tree");
        }
    }
}
