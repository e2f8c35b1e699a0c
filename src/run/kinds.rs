//! The four job kinds as adapters of the one run lifecycle: how a spec becomes a create call,
//! which job it refers to afterwards, and how a lost submission is searched for.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api::agent_job::AgentJob;
use crate::api::execute_job::{ExecuteJob, JobApi};
use crate::api::process_job::ProcessJob;
use crate::api::taskflow::Taskflow;
use crate::api::validation::FieldPath;
use crate::api::{CommonSpec, FieldErrors, JobStatus};
use crate::bk::facade::{CreateRequest, JobRef, SearchTarget};
use crate::bk::{System, bkflow, gsekit, job, nodeman};
use crate::limits::BKFLOW_TASK_NAME_MAX_CHARS;

/// Key under GSEKit `extra_data` that carries the run key, so a lost create can be found.
/// GSEKit sets no size limit on `extra_data` (see [`crate::limits`]).
pub const GSEKIT_KEY_FIELD: &str = "bkops_run_key";

/// What the lifecycle needs from the connection to build calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    /// The connection's default BKFlow space.
    pub bkflow_space_id: Option<i64>,
    /// The user the connection's credentials name (`bk_username`), when known.
    pub username: Option<String>,
}

/// A spec that cannot be turned into a call (reported like an invalid spec).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

/// One job kind in the table every list of kinds derives from (the controllers, the CRDs, the
/// demo, the bench, the tests).
#[derive(Clone, Copy, Debug)]
pub struct KindEntry {
    /// The manifest `kind`.
    pub name: &'static str,
    /// The system it submits to.
    pub system: System,
    /// Its API resource.
    pub resource: fn() -> kube::api::ApiResource,
    /// Its CustomResourceDefinition.
    pub crd: fn() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    /// The problems of a manifest of this kind, as the operator reports them (`Err` when it
    /// does not read as the kind).
    pub validate: fn(Value) -> Result<FieldErrors, String>,
    /// The create call a manifest of this kind makes for run `key`, as the operator builds it
    /// (`Err` when it does not read as the kind or cannot be mapped).
    pub request: fn(Value, &str, &Defaults) -> Result<CreateRequest, String>,
    /// What the CRD's CEL rules say of a manifest's `spec`.
    pub cel: fn(&Value) -> FieldErrors,
}

const fn entry<K: JobKind + kube::CustomResourceExt>() -> KindEntry {
    KindEntry {
        name: K::NAME,
        system: K::SYSTEM,
        resource: || kube::api::ApiResource::erase::<K>(&()),
        crd: K::crd,
        validate: |v| {
            serde_path_to_error::deserialize::<_, K>(v)
                .map(|k| k.validate_spec())
                .map_err(|e| e.to_string())
        },
        cel: K::cel_problems,
        request: |v, key, defaults| {
            let k: K = serde_path_to_error::deserialize(v).map_err(|e| e.to_string())?;
            k.create_request(key, defaults).map_err(|e| e.to_string())
        },
    }
}

/// The four job kinds, in the order they are listed everywhere.
pub const JOB_KINDS: [KindEntry; 4] = [
    entry::<ProcessJob>(),
    entry::<Taskflow>(),
    entry::<AgentJob>(),
    entry::<ExecuteJob>(),
];

/// The job kinds' manifest names, in table order.
pub const JOB_KIND_NAMES: [&str; 4] = {
    let mut names = [""; 4];
    let mut i = 0;
    while i < JOB_KINDS.len() {
        names[i] = JOB_KINDS[i].name;
        i += 1;
    }
    names
};

/// The entry of the job kind named `name`.
pub fn job_kind(name: &str) -> Option<&'static KindEntry> {
    JOB_KINDS.iter().find(|k| k.name == name)
}

/// One job kind: its system, its shared fields, and the mapping to BlueKing calls. The
/// lifecycle in [`crate::run`] is written once against this trait.
pub trait JobKind:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The BlueKing system the kind talks to.
    const SYSTEM: System;
    /// The manifest `kind`.
    const NAME: &'static str;

    /// The fields every kind shares.
    fn common(&self) -> &CommonSpec;
    /// The status, if any.
    fn job_status(&self) -> Option<&JobStatus>;
    /// Every problem with the spec.
    fn validate_spec(&self) -> FieldErrors;
    /// What the CRD's CEL rules say of a spec (as JSON), evaluated here: clusters older than
    /// 1.25 do not evaluate them.
    fn cel_problems(spec: &Value) -> FieldErrors;
    /// The spec as JSON, for the run trigger hash.
    fn spec_json(&self) -> Value;
    /// Whether a created job must be started by a second call (BKFlow, JOB v3).
    fn two_phase(&self) -> bool {
        false
    }
    /// The create call for a run with this key.
    fn create_request(&self, key: &str, defaults: &Defaults)
    -> Result<CreateRequest, MappingError>;
    /// The job behind an id recorded in status (or given to adopt).
    fn job_ref(&self, job_id: &str, defaults: &Defaults) -> Result<JobRef, MappingError>;
    /// Filters for searching a job whose create had an unknown outcome.
    fn search_target(&self, defaults: &Defaults) -> Result<SearchTarget, MappingError>;
    /// Whether the system can cancel a running job (GSEKit cannot).
    fn can_cancel(&self) -> bool {
        Self::SYSTEM != System::Gsekit
    }
    /// Who the job is created as, when the request says it.
    fn creator(&self, defaults: &Defaults) -> Option<String> {
        defaults.username.clone()
    }
}

fn parse_id(job_id: &str) -> Result<i64, MappingError> {
    job_id
        .trim()
        .parse::<i64>()
        .map_err(|_| MappingError(format!("job id {job_id:?} is not a number")))
}

/// Re-encodes a camelCase CRD value as the snake_case wire type. Only for parts that hold no
/// free-form data (free-form objects keep their keys as given).
fn to_wire<T: Serialize, U: DeserializeOwned>(value: &T) -> Result<U, MappingError> {
    fn snake(key: &str) -> String {
        let mut out = String::with_capacity(key.len() + 4);
        for c in key.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
    fn convert(v: Value) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (snake(&k), convert(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(convert).collect()),
            other => other,
        }
    }
    let json = serde_json::to_value(value).map_err(|e| MappingError(e.to_string()))?;
    serde_json::from_value(convert(json))
        .map_err(|e| MappingError(format!("cannot map to the wire format: {e}")))
}

fn object(value: &Option<Value>) -> Option<Map<String, Value>> {
    value.as_ref().and_then(|v| v.as_object().cloned())
}

/// The CEL rules' verdict as field errors under `spec`.
fn cel_errors(verdict: Result<(), kube::core::cel::ValidationErrors>) -> FieldErrors {
    let mut errors = FieldErrors::default();
    if let Err(failed) = verdict {
        for e in failed.into_vec() {
            let path = e
                .field_path
                .trim_start_matches("spec")
                .split('.')
                .filter(|p| !p.is_empty())
                .fold(FieldPath::spec(), |path, part| path.child(part));
            errors.push(path, e.message);
        }
    }
    errors
}

macro_rules! common_impl {
    ($spec:ty) => {
        fn cel_problems(spec: &Value) -> FieldErrors {
            cel_errors(<$spec>::validate_cel(spec, None))
        }
        fn common(&self) -> &CommonSpec {
            &self.spec.common
        }
        fn job_status(&self) -> Option<&JobStatus> {
            self.status.as_ref()
        }
        fn validate_spec(&self) -> FieldErrors {
            self.spec.validate()
        }
        fn spec_json(&self) -> Value {
            serde_json::to_value(&self.spec).unwrap_or(Value::Null)
        }
    };
}

impl JobKind for ProcessJob {
    const SYSTEM: System = System::Gsekit;
    const NAME: &'static str = "ProcessJob";
    common_impl!(crate::api::ProcessJobSpec);

    fn create_request(&self, key: &str, _: &Defaults) -> Result<CreateRequest, MappingError> {
        let s = &self.spec;
        let mut extra = object(&s.extra_data).unwrap_or_default();
        // The key goes in extra_data for people reading the job; GSEKit does not keep the
        // request's extra_data on the job row, so a search cannot rely on it.
        extra.insert(GSEKIT_KEY_FIELD.to_owned(), Value::String(key.to_owned()));
        Ok(CreateRequest::Gsekit(gsekit::CreateJobRequest {
            bk_biz_id: s.bk_biz_id,
            job_object: to_wire(&s.job_object)?,
            job_action: to_wire(&s.job_action)?,
            scope: s.scope.as_ref().map(to_wire).transpose()?,
            expression_scope: s.expression_scope.as_ref().map(to_wire).transpose()?,
            extra_data: Some(extra),
        }))
    }

    fn job_ref(&self, job_id: &str, _: &Defaults) -> Result<JobRef, MappingError> {
        Ok(JobRef::Gsekit {
            biz_id: self.spec.bk_biz_id,
            job_id: parse_id(job_id)?,
        })
    }

    fn search_target(&self, _: &Defaults) -> Result<SearchTarget, MappingError> {
        let scope: Option<gsekit::Scope> = self.spec.scope.as_ref().map(to_wire).transpose()?;
        let expression_scope: Option<gsekit::ExpressionScope> = self
            .spec
            .expression_scope
            .as_ref()
            .map(to_wire)
            .transpose()?;
        let json = |v: Option<Value>| v.filter(|v| !v.is_null());
        Ok(SearchTarget::Gsekit {
            biz_id: self.spec.bk_biz_id,
            job_object: Some(to_wire(&self.spec.job_object)?),
            job_action: Some(to_wire(&self.spec.job_action)?),
            scope: json(serde_json::to_value(&scope).ok()),
            expression_scope: json(serde_json::to_value(&expression_scope).ok()),
        })
    }
}

impl Taskflow {
    fn space(&self, defaults: &Defaults) -> Result<i64, MappingError> {
        self.spec
            .space_id
            .or(defaults.bkflow_space_id)
            .ok_or_else(|| {
                MappingError(
                    "no BKFlow space: set spec.spaceId or the connection's bkflowSpaceId"
                        .to_owned(),
                )
            })
    }

    /// The task name with the run key, so `get_task_list` finds a lost create.
    fn task_name(&self, key: &str) -> String {
        let base = self
            .spec
            .name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default();
        task_name(base, key)
    }

    /// The user's description as given: the run key is in the name already. BKFlow refuses a
    /// blank description, so an empty one is not sent.
    fn description(&self) -> Option<String> {
        self.spec.description.clone().filter(|d| !d.is_empty())
    }
}

/// What marks a BKFlow task as a run's: ` [bkops:<run key>]` at the end of its name.
fn key_suffix(key: &str) -> String {
    format!(" [bkops:{key}]")
}

/// The BKFlow task name for `base` (the user's name, or the object's) and a run key: `base`
/// followed by ` [bkops:<key>]`, at most [`BKFLOW_TASK_NAME_MAX_CHARS`] characters. A base too
/// long for that is cut and ends with `…`; the key is always kept whole, since the search for a
/// lost create looks for it in the name.
pub fn task_name(base: &str, key: &str) -> String {
    let suffix = key_suffix(key);
    let room = BKFLOW_TASK_NAME_MAX_CHARS.saturating_sub(suffix.chars().count());
    if base.chars().count() <= room {
        return format!("{base}{suffix}");
    }
    let cut: String = base.chars().take(room.saturating_sub(1)).collect();
    format!("{}…{suffix}", cut.trim_end())
}

impl JobKind for Taskflow {
    const SYSTEM: System = System::Bkflow;
    const NAME: &'static str = "Taskflow";
    common_impl!(crate::api::TaskflowSpec);

    fn two_phase(&self) -> bool {
        true
    }

    fn create_request(
        &self,
        key: &str,
        defaults: &Defaults,
    ) -> Result<CreateRequest, MappingError> {
        let s = &self.spec;
        let space_id = self.space(defaults)?;
        match (&s.template_id, &s.pipeline_tree) {
            (Some(template_id), None) => Ok(CreateRequest::BkflowTemplate {
                space_id,
                body: bkflow::CreateTaskRequest {
                    template_id: *template_id,
                    creator: s.creator.clone(),
                    name: Some(self.task_name(key)),
                    description: self.description(),
                    constants: object(&s.constants),
                    label_ids: None,
                },
            }),
            (None, Some(tree)) => Ok(CreateRequest::BkflowTree {
                space_id,
                body: bkflow::CreateTaskWithoutTemplateRequest {
                    creator: s.creator.clone(),
                    pipeline_tree: tree.clone(),
                    name: Some(self.task_name(key)),
                    scope_type: s.scope_type.clone(),
                    scope_value: s.scope_value.clone(),
                    description: self.description(),
                    constants: object(&s.constants),
                    notify_config: None,
                },
            }),
            _ => Err(MappingError(
                "exactly one of templateId or pipelineTree is required".to_owned(),
            )),
        }
    }

    fn job_ref(&self, job_id: &str, defaults: &Defaults) -> Result<JobRef, MappingError> {
        Ok(JobRef::Bkflow {
            space_id: self.space(defaults)?,
            task_id: parse_id(job_id)?,
        })
    }

    fn search_target(&self, defaults: &Defaults) -> Result<SearchTarget, MappingError> {
        Ok(SearchTarget::Bkflow {
            space_id: self.space(defaults)?,
            template_id: self.spec.template_id,
        })
    }

    fn creator(&self, _: &Defaults) -> Option<String> {
        Some(self.spec.creator.clone())
    }
}

impl JobKind for AgentJob {
    const SYSTEM: System = System::Nodeman;
    const NAME: &'static str = "AgentJob";
    common_impl!(crate::api::AgentJobSpec);

    fn create_request(&self, _: &str, _: &Defaults) -> Result<CreateRequest, MappingError> {
        let s = &self.spec;
        let conditions: Vec<nodeman::Condition> = s
            .conditions
            .iter()
            .flatten()
            .map(|c| nodeman::Condition {
                key: c.key.clone(),
                value: c.value.clone(),
            })
            .collect();
        let bk_biz_id = s.bk_biz_id.clone().unwrap_or_default();
        if s.job_type.is_main_plugin() {
            let params = s.plugin_params.as_ref().ok_or_else(|| {
                MappingError(format!(
                    "pluginParams is required for {}",
                    s.job_type.as_str()
                ))
            })?;
            Ok(CreateRequest::NodemanPlugin(
                nodeman::PluginOperateRequest {
                    job_type: s.job_type.as_str().to_owned(),
                    plugin_params: to_wire(params)?,
                    bk_biz_id,
                    conditions,
                    bk_host_id: s.bk_host_id.clone(),
                    exclude_hosts: s.exclude_hosts.clone(),
                },
            ))
        } else {
            Ok(CreateRequest::NodemanJob(nodeman::JobOperateRequest {
                job_type: s.job_type.as_str().to_owned(),
                bk_biz_id,
                conditions,
                bk_host_id: s.bk_host_id.clone(),
                exclude_hosts: s.exclude_hosts.clone(),
                hosts: None,
                is_install_latest_plugins: s.is_install_latest_plugins,
            }))
        }
    }

    fn job_ref(&self, job_id: &str, _: &Defaults) -> Result<JobRef, MappingError> {
        Ok(JobRef::Nodeman {
            job_id: parse_id(job_id)?,
        })
    }

    fn search_target(&self, _: &Defaults) -> Result<SearchTarget, MappingError> {
        Ok(SearchTarget::Nodeman {
            job_type: Some(self.spec.job_type.as_str().to_owned()),
            // Businesses scope a job only in select-all mode; with a host list NodeMan takes
            // them from the hosts.
            bk_biz_id: self
                .spec
                .bk_biz_id
                .clone()
                .filter(|_| self.spec.bk_host_id.is_none()),
            bk_host_id: self.spec.bk_host_id.clone(),
        })
    }
}

impl ExecuteJob {
    fn scope(&self) -> Result<(job::ScopeType, String), MappingError> {
        let s = &self.spec;
        let scope_type: job::ScopeType = to_wire(&s.bk_scope_type.unwrap_or_default())?;
        let scope_id = s
            .bk_scope_id
            .clone()
            .or_else(|| s.bk_biz_id.map(|b| b.to_string()))
            .ok_or_else(|| MappingError("bkScopeId (or bkBizId) is required".to_owned()))?;
        Ok((scope_type, scope_id))
    }
}

impl JobKind for ExecuteJob {
    const SYSTEM: System = System::Job;
    const NAME: &'static str = "ExecuteJob";
    common_impl!(crate::api::ExecuteJobSpec);

    fn two_phase(&self) -> bool {
        self.spec.api() == JobApi::V3
    }

    fn create_request(&self, _: &str, _: &Defaults) -> Result<CreateRequest, MappingError> {
        let s = &self.spec;
        match s.api() {
            JobApi::V2 => Ok(CreateRequest::JobV2(job::ExecuteJobRequest {
                bk_biz_id: s.bk_biz_id.ok_or_else(|| {
                    MappingError("bkBizId is required with jobApi: v2".to_owned())
                })?,
                bk_job_id: s.bk_job_id.ok_or_else(|| {
                    MappingError("bkJobId is required with jobApi: v2".to_owned())
                })?,
                steps: s
                    .steps
                    .as_ref()
                    .map(to_wire)
                    .transpose()?
                    .unwrap_or_default(),
                global_vars: s
                    .global_vars
                    .as_ref()
                    .map(to_wire)
                    .transpose()?
                    .unwrap_or_default(),
                bk_callback_url: s.bk_callback_url.clone(),
            })),
            JobApi::V3 => {
                let (bk_scope_type, bk_scope_id) = self.scope()?;
                Ok(CreateRequest::JobV3(job::ExecuteJobPlanRequest {
                    bk_scope_type,
                    bk_scope_id,
                    job_plan_id: s
                        .job_plan_id
                        .ok_or_else(|| MappingError("jobPlanId is required".to_owned()))?,
                    global_var_list: s
                        .global_var_list
                        .as_ref()
                        .map(to_wire)
                        .transpose()?
                        .unwrap_or_default(),
                    callback_url: s.callback_url.clone(),
                    // Created stopped, started once the id is recorded: an unclear create then
                    // leaves nothing running.
                    start_task: false,
                }))
            }
        }
    }

    fn job_ref(&self, job_id: &str, _: &Defaults) -> Result<JobRef, MappingError> {
        let job_instance_id = parse_id(job_id)?;
        match self.spec.api() {
            JobApi::V2 => Ok(JobRef::JobV2 {
                biz_id: self
                    .spec
                    .bk_biz_id
                    .ok_or_else(|| MappingError("bkBizId is required".to_owned()))?,
                job_instance_id,
            }),
            JobApi::V3 => {
                let (scope_type, scope_id) = self.scope()?;
                Ok(JobRef::JobV3 {
                    scope_type,
                    scope_id,
                    job_instance_id,
                })
            }
        }
    }

    fn search_target(&self, _: &Defaults) -> Result<SearchTarget, MappingError> {
        match self.spec.api() {
            JobApi::V2 => Ok(SearchTarget::Job {
                scope_type: job::ScopeType::Biz,
                scope_id: self
                    .spec
                    .bk_biz_id
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                job_plan_id: self.spec.bk_job_id,
                v2: true,
            }),
            JobApi::V3 => {
                let (scope_type, scope_id) = self.scope()?;
                Ok(SearchTarget::Job {
                    scope_type,
                    scope_id,
                    job_plan_id: self.spec.job_plan_id,
                    v2: false,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
