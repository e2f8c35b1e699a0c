//! BKFlow: task flows. Gateway only (`bk-flow` / `bk-flow-engine`); every resource lives under
//! `space/{space_id}/`. A created task does not run until it is started.

use std::collections::BTreeMap;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::de::{self, string_enum};
use super::{BkClient, BkError, CallKind, CallSpec, System};

string_enum! {
    /// A task or node state (bamboo-engine states plus BKFlow's computed ones).
    pub enum TaskState {
        /// Created, not started.
        Created = "CREATED",
        /// About to run.
        Ready = "READY",
        /// Running.
        Running = "RUNNING",
        /// Paused as a whole.
        Suspended = "SUSPENDED",
        /// Engine-internal.
        Blocked = "BLOCKED",
        /// Done.
        Finished = "FINISHED",
        /// A node failed; a person can retry or skip it.
        Failed = "FAILED",
        /// Revoked.
        Revoked = "REVOKED",
        /// Runtime data purged.
        Expired = "EXPIRED",
        /// A node waits (pause, confirm, approval).
        NodeSuspended = "NODE_SUSPENDED",
    }
}

string_enum! {
    /// `operate_task` operations.
    pub enum Operation {
        /// Start a created task.
        Start = "start",
        /// Pause.
        Pause = "pause",
        /// Resume.
        Resume = "resume",
        /// Revoke (cancel).
        Revoke = "revoke",
    }
}

/// `create_task` body (from a template).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateTaskRequest {
    /// Template id.
    pub template_id: i64,
    /// Creator (≤ 32 chars).
    pub creator: String,
    /// Task name (≤ 128 chars). Put the run key here: `search` finds tasks by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description; also searched for the run key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Template constants, keys like `${key}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constants: Option<Map<String, Value>>,
    /// Label ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_ids: Option<Vec<i64>>,
}

/// `create_task_without_template` body (from a pipeline tree).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateTaskWithoutTemplateRequest {
    /// Creator.
    pub creator: String,
    /// The pipeline tree, passed through as given.
    pub pipeline_tree: Value,
    /// Task name; put the run key here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scope type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_type: Option<String>,
    /// Scope value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_value: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Constants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constants: Option<Map<String, Value>>,
    /// Notification config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_config: Option<Value>,
}

/// A task instance (create answers, list items).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Task {
    /// Task id.
    #[serde(deserialize_with = "de::int_from_value")]
    pub id: i64,
    /// Space id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub space_id: Option<i64>,
    /// Template id.
    #[serde(default, deserialize_with = "de::opt_int")]
    pub template_id: Option<i64>,
    /// Name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub name: Option<String>,
    /// Creator.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub creator: Option<String>,
    /// Description.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub description: Option<String>,
    /// Created at.
    #[serde(default, deserialize_with = "de::time")]
    pub create_time: Option<DateTime<Utc>>,
    /// Started at.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// Finished at.
    #[serde(default, deserialize_with = "de::time")]
    pub finish_time: Option<DateTime<Utc>>,
    /// Started?
    #[serde(default)]
    pub is_started: Option<bool>,
    /// Finished?
    #[serde(default)]
    pub is_finished: Option<bool>,
    /// Revoked?
    #[serde(default)]
    pub is_revoked: Option<bool>,
}

/// A node of the `get_task_states` tree (the root is the task).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StateNode {
    /// Node id (the pipeline id at the root).
    #[serde(default, deserialize_with = "de::opt_text")]
    pub id: Option<String>,
    /// State.
    pub state: TaskState,
    /// Retries so far.
    #[serde(default, deserialize_with = "de::count")]
    pub retry: u32,
    /// Skipped by a person.
    #[serde(default)]
    pub skip: Option<bool>,
    /// Failure ignored by configuration.
    #[serde(default)]
    pub error_ignored: Option<bool>,
    /// Start time.
    #[serde(default, deserialize_with = "de::time")]
    pub start_time: Option<DateTime<Utc>>,
    /// Finish time.
    #[serde(default, deserialize_with = "de::time")]
    pub finish_time: Option<DateTime<Utc>>,
    /// Child nodes by node id (only nodes that have been reached).
    #[serde(default)]
    pub children: BTreeMap<String, StateNode>,
}

impl StateNode {
    /// Leaf nodes below this one (subprocess nodes are descended into).
    pub fn leaves(&self) -> Vec<(&str, &StateNode)> {
        let mut out = Vec::new();
        for (id, child) in &self.children {
            if child.children.is_empty() {
                out.push((id.as_str(), child));
            } else {
                out.extend(child.leaves());
            }
        }
        out
    }
}

/// One entry of `get_tasks_states`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BatchState {
    /// The task's root state.
    pub state: TaskState,
}

/// `get_task_node_detail` answer (the fields the client uses).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct NodeDetail {
    /// Node name.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub name: Option<String>,
    /// Node state.
    #[serde(default)]
    pub state: Option<TaskState>,
    /// The failure message (string or structure).
    #[serde(default)]
    pub ex_data: Option<Value>,
}

impl NodeDetail {
    /// `ex_data` as text.
    pub fn failure_text(&self) -> Option<String> {
        match self.ex_data.as_ref()? {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// Filters of the task list.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TaskListQuery {
    /// Creator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// Template id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Offset.
    pub offset: u32,
}

/// A page of the task list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskListPage {
    /// Tasks on this page.
    pub list: Vec<Task>,
    /// All matching tasks, when upstream says.
    pub count: Option<u32>,
}

/// Calls to BKFlow. Get one with [`BkClient::bkflow`].
#[derive(Clone, Copy, Debug)]
pub struct Bkflow<'a> {
    client: &'a BkClient,
}

impl BkClient {
    /// BKFlow calls.
    pub fn bkflow(&self) -> Bkflow<'_> {
        Bkflow { client: self }
    }
}

fn body_of<T: Serialize>(v: &T) -> Result<Value, BkError> {
    serde_json::to_value(v).map_err(|e| BkError::InvalidRequest(format!("cannot encode: {e}")))
}

/// Whether a refused `start` says the task runs already (the start compare-and-set lost).
pub fn is_already_started(err: &BkError) -> bool {
    match err {
        BkError::Api(a) => {
            let m = a.message.to_ascii_lowercase();
            m.contains("already started")
                || a.message.contains("已经开始")
                || a.message.contains("已开始")
        }
        _ => false,
    }
}

impl Bkflow<'_> {
    /// Creates a task from a template (never retried). It is not started.
    pub async fn create_task(
        &self,
        space_id: i64,
        req: &CreateTaskRequest,
    ) -> Result<Task, BkError> {
        let path = format!("space/{space_id}/create_task/");
        self.client
            .call(
                CallSpec::new(
                    System::Bkflow,
                    "create_task",
                    CallKind::Create,
                    body_of(req)?,
                )
                .gateway(Method::POST, &path),
            )
            .await
    }

    /// Creates a task from a pipeline tree (never retried). It is not started.
    pub async fn create_task_without_template(
        &self,
        space_id: i64,
        req: &CreateTaskWithoutTemplateRequest,
    ) -> Result<Task, BkError> {
        let path = format!("space/{space_id}/create_task_without_template/");
        self.client
            .call(
                CallSpec::new(
                    System::Bkflow,
                    "create_task_without_template",
                    CallKind::Create,
                    body_of(req)?,
                )
                .gateway(Method::POST, &path),
            )
            .await
    }

    /// `operate_task/{operation}`. Retried on transient errors: a repeated start is refused
    /// upstream by a compare-and-set, a repeated revoke changes nothing. The answer may carry
    /// no `code`, so only `result` counts.
    pub async fn operate_task(
        &self,
        space_id: i64,
        task_id: i64,
        operation: &Operation,
        operator: Option<&str>,
    ) -> Result<Value, BkError> {
        let path = format!("space/{space_id}/task/{task_id}/operate_task/{operation}/");
        let body = match operator {
            Some(o) => json!({ "operator": o }),
            None => json!({}),
        };
        let endpoint = match operation {
            Operation::Start => "operate_task.start",
            Operation::Revoke => "operate_task.revoke",
            Operation::Pause => "operate_task.pause",
            Operation::Resume => "operate_task.resume",
            Operation::Unknown(_) => "operate_task",
        };
        self.client
            .call(
                CallSpec::new(System::Bkflow, endpoint, CallKind::Operate, body)
                    .gateway(Method::POST, &path),
            )
            .await
    }

    /// The state tree of one task.
    pub async fn get_task_states(&self, space_id: i64, task_id: i64) -> Result<StateNode, BkError> {
        let path = format!("space/{space_id}/task/{task_id}/get_task_states/");
        self.client
            .call(
                CallSpec::new(System::Bkflow, "get_task_states", CallKind::Safe, json!({}))
                    .gateway(Method::GET, &path),
            )
            .await
    }

    /// Root states of several tasks of one space in one call.
    pub async fn get_tasks_states(
        &self,
        space_id: i64,
        task_ids: &[i64],
    ) -> Result<HashMap<i64, BatchState>, BkError> {
        let path = format!("space/{space_id}/get_tasks_states/");
        let raw: HashMap<String, Value> = self
            .client
            .call(
                CallSpec::new(
                    System::Bkflow,
                    "get_tasks_states",
                    CallKind::Safe,
                    json!({ "task_ids": task_ids }),
                )
                .gateway(Method::POST, &path),
            )
            .await?;
        let mut out = HashMap::with_capacity(raw.len());
        for (k, v) in raw {
            let Ok(id) = k.trim().parse::<i64>() else {
                continue;
            };
            // Upstream gives `{state}` per task; a bare state string is accepted too.
            let state = match v {
                Value::String(s) => Some(BatchState {
                    state: TaskState::from(s.as_str()),
                }),
                other => serde_json::from_value::<BatchState>(other).ok(),
            };
            if let Some(s) = state {
                out.insert(id, s);
            }
        }
        Ok(out)
    }

    /// Detail of one node, for the failure text (`ex_data`) of FAILED nodes.
    pub async fn get_task_node_detail(
        &self,
        space_id: i64,
        task_id: i64,
        node_id: &str,
    ) -> Result<NodeDetail, BkError> {
        let path = format!("space/{space_id}/task/{task_id}/node/{node_id}/get_task_node_detail/");
        self.client
            .call(
                CallSpec::new(
                    System::Bkflow,
                    "get_task_node_detail",
                    CallKind::Safe,
                    json!({}),
                )
                .gateway(Method::GET, &path),
            )
            .await
    }

    /// Task detail.
    pub async fn get_task_detail(&self, space_id: i64, task_id: i64) -> Result<Task, BkError> {
        let path = format!("space/{space_id}/task/{task_id}/get_task_detail/");
        self.client
            .call(
                CallSpec::new(System::Bkflow, "get_task_detail", CallKind::Safe, json!({}))
                    .gateway(Method::GET, &path),
            )
            .await
    }

    /// One page of the space's tasks.
    pub async fn get_task_list(
        &self,
        space_id: i64,
        query: &TaskListQuery,
    ) -> Result<TaskListPage, BkError> {
        let path = format!("space/{space_id}/get_task_list/");
        let raw: Value = self
            .client
            .call(
                CallSpec::new(
                    System::Bkflow,
                    "get_task_list",
                    CallKind::Safe,
                    body_of(query)?,
                )
                .gateway(Method::GET, &path),
            )
            .await?;
        let (items, count) = super::de::list_items(raw);
        let list = self.client.decode_rows(items);
        Ok(TaskListPage { list, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_answers_decode() -> Result<(), serde_json::Error> {
        let t: Task = serde_json::from_value(json!({
            "id": 93, "space_id": 1, "scope_type": null, "scope_value": null,
            "instance_id": "nb2bf870164336798522536f036a4da7", "template_id": null,
            "name": "default_taskflow_instance", "creator": "创建者",
            "create_time": "2023-10-16T17:24:07.859339+08:00", "executor": "",
            "start_time": null, "finish_time": null, "description": "",
            "is_started": false, "is_finished": false, "is_revoked": false,
            "is_deleted": false, "is_expired": false, "snapshot_id": 80,
            "execution_snapshot_id": 77, "tree_info_id": null, "extra_info": {}
        }))?;
        assert_eq!(t.id, 93);
        assert_eq!(t.is_started, Some(false));
        assert!(t.create_time.is_some());
        Ok(())
    }

    #[test]
    fn state_tree_leaves() -> Result<(), serde_json::Error> {
        let s: StateNode = serde_json::from_value(json!({
            "id": "root", "state": "FAILED", "children": {
                "n1": {"id": "n1", "state": "FINISHED", "children": {}},
                "n2": {"id": "n2", "state": "FAILED", "children": {}},
                "sub": {"id": "sub", "state": "RUNNING", "children": {
                    "n3": {"id": "n3", "state": "WEIRD_NEW", "children": {}}
                }}
            }
        }))?;
        let leaves: Vec<_> = s
            .leaves()
            .into_iter()
            .map(|(id, n)| (id, n.state.clone()))
            .collect();
        assert_eq!(leaves.len(), 3);
        assert!(leaves.contains(&("n3", TaskState::Unknown("WEIRD_NEW".into()))));
        Ok(())
    }
}
