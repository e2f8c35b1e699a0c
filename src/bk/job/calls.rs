//! The calls to JOB, v3 and v2: create, operate, status and list.

use http::Method;
use serde::Serialize;
use serde_json::{Value, json};

use super::*;
use crate::bk::{BkClient, BkError, CallKind, CallSpec, Mode, System};

/// Calls to JOB. Get one with [`BkClient::job`].
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    pub(super) client: &'a BkClient,
}

impl BkClient {
    /// JOB calls.
    pub fn job(&self) -> Job<'_> {
        Job { client: self }
    }
}

fn body_of<T: Serialize>(v: &T) -> Result<Value, BkError> {
    serde_json::to_value(v).map_err(|e| BkError::InvalidRequest(format!("cannot encode: {e}")))
}

impl Job<'_> {
    /// v3 `execute_job_plan` (never retried).
    pub async fn execute_job_plan(
        &self,
        req: &ExecuteJobPlanRequest,
    ) -> Result<ExecuteResponse, BkError> {
        self.client
            .call(
                CallSpec::new(
                    System::Job,
                    "execute_job_plan",
                    CallKind::Create,
                    body_of(req)?,
                )
                .gateway(Method::POST, "api/v3/execute_job_plan")
                .esb(Method::POST, "jobv3/execute_job_plan/"),
            )
            .await
    }

    /// v2 `execute_job` (never retried; legacy ESB only). `steps` is sent as given.
    pub async fn execute_job(&self, req: &ExecuteJobRequest) -> Result<ExecuteResponse, BkError> {
        self.client
            .call(
                CallSpec::new(System::Job, "execute_job", CallKind::Create, body_of(req)?)
                    .esb(Method::POST, "job/execute_job/"),
            )
            .await
    }

    /// v3 `operate_job_instance`: 1 terminate, 2 start. Retried on transient errors.
    pub async fn operate_job_instance(
        &self,
        scope_type: &ScopeType,
        scope_id: &str,
        job_instance_id: i64,
        op: OperationCode,
    ) -> Result<Value, BkError> {
        let body = json!({
            "bk_scope_type": scope_type,
            "bk_scope_id": scope_id,
            "job_instance_id": job_instance_id,
            "operation_code": op.code(),
        });
        let endpoint = match op {
            OperationCode::Terminate => "operate_job_instance.terminate",
            OperationCode::Start => "operate_job_instance.start",
        };
        self.client
            .call(
                CallSpec::new(System::Job, endpoint, CallKind::Operate, body)
                    .gateway(Method::POST, "api/v3/operate_job_instance")
                    .esb(Method::POST, "jobv3/operate_job_instance/"),
            )
            .await
    }

    /// v3 status with per-host results.
    pub async fn get_job_instance_status(
        &self,
        scope_type: &ScopeType,
        scope_id: &str,
        job_instance_id: i64,
    ) -> Result<JobInstanceStatusV3, BkError> {
        let params = json!({
            "bk_scope_type": scope_type,
            "bk_scope_id": scope_id,
            "job_instance_id": job_instance_id,
            "return_ip_result": true,
        });
        self.client
            .call(
                CallSpec::new(
                    System::Job,
                    "get_job_instance_status",
                    CallKind::Safe,
                    params,
                )
                .gateway(Method::GET, "api/v3/get_job_instance_status")
                .esb(Method::POST, "jobv3/get_job_instance_status/"),
            )
            .await
    }

    /// v2 status (legacy ESB `job` system; a GET there).
    pub async fn get_job_instance_status_v2(
        &self,
        biz_id: i64,
        job_instance_id: i64,
    ) -> Result<JobInstanceStatusV2, BkError> {
        let params = json!({ "bk_biz_id": biz_id, "job_instance_id": job_instance_id });
        self.client
            .call(
                CallSpec::new(
                    System::Job,
                    "get_job_instance_status.v2",
                    CallKind::Safe,
                    params,
                )
                .esb(Method::GET, "job/get_job_instance_status/"),
            )
            .await
    }

    /// One page of instances in a time window (v3).
    pub async fn get_job_instance_list(
        &self,
        q: &JobInstanceListQuery,
    ) -> Result<JobInstanceListPage, BkError> {
        let mut params = json!({
            "bk_scope_type": q.bk_scope_type,
            "bk_scope_id": q.bk_scope_id,
            "create_time_start": q.since.timestamp_millis(),
            "create_time_end": q.until.timestamp_millis(),
            "start": q.start,
            "length": q.length,
        });
        if let Some(op) = &q.operator {
            params["operator"] = json!(op);
        }
        if let Some(plan) = q.job_plan_id {
            params["job_plan_id"] = json!(plan);
        }
        let raw: Value = self
            .client
            .call(
                CallSpec::new(System::Job, "get_job_instance_list", CallKind::Safe, params)
                    .gateway(Method::GET, "api/v3/get_job_instance_list")
                    .esb(Method::POST, "jobv3/get_job_instance_list/"),
            )
            .await?;
        let (items, count) = super::de::list_items(raw);
        let list = self.client.decode_rows(items);
        Ok(JobInstanceListPage { list, count })
    }

    /// Whether v2 calls can be made (they exist on the legacy ESB only).
    pub fn supports_v2(&self) -> bool {
        self.client.mode(System::Job) == Some(Mode::Esb)
    }
}
