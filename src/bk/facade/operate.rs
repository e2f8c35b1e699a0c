//! Acting on a created job: [`BkClient::start`] (safe to repeat) and [`BkClient::cancel`].

use tracing::debug;

use crate::bk::bkflow::{self, Operation, TaskState};
use crate::bk::error::ErrorClass;
use crate::bk::job::{self, OperationCode, RunStatus, ScopeType};
use crate::bk::{BkClient, BkError};

use super::phases::{bkflow_phase, job_phase};
use super::types::{CancelOutcome, JobRef};

impl BkClient {
    /// Starts a job created without starting (BKFlow, JOB v3); a no-op for the others. Safe
    /// to repeat: "already started" counts as success, and a refused start is checked
    /// against the job's state before it is reported.
    pub async fn start(&self, job: &JobRef) -> Result<(), BkError> {
        match job {
            JobRef::Bkflow { space_id, task_id } => {
                let operator = self.inner.username.as_deref();
                match self
                    .bkflow()
                    .operate_task(*space_id, *task_id, &Operation::Start, operator)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if bkflow::is_already_started(&e) => {
                        debug!(%job, "BKFlow task was already started");
                        Ok(())
                    }
                    Err(e) if e.class() == ErrorClass::Rejected => {
                        match self.bkflow().get_task_states(*space_id, *task_id).await {
                            Ok(s) if s.state != TaskState::Created => Ok(()),
                            _ => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            JobRef::JobV3 {
                scope_type,
                scope_id,
                job_instance_id,
            } => {
                match self
                    .job()
                    .operate_job_instance(
                        scope_type,
                        scope_id,
                        *job_instance_id,
                        OperationCode::Start,
                    )
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.class() == ErrorClass::Rejected => {
                        match self
                            .job()
                            .get_job_instance_status(scope_type, scope_id, *job_instance_id)
                            .await
                        {
                            Ok(s)
                                if s.job_instance.status != RunStatus::Blank
                                    || s.job_instance.start_time.is_some() =>
                            {
                                Ok(())
                            }
                            _ => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }

    /// Asks the system to stop the job. GSEKit has no cancel (`NotSupported`).
    pub async fn cancel(&self, job: &JobRef) -> Result<CancelOutcome, BkError> {
        match job {
            JobRef::Gsekit { .. } => Ok(CancelOutcome::NotSupported),
            JobRef::Bkflow { space_id, task_id } => {
                let st = self.bkflow().get_task_states(*space_id, *task_id).await?;
                if bkflow_phase(&st.state).is_terminal() && st.state != TaskState::Failed {
                    return Ok(CancelOutcome::AlreadyFinished);
                }
                let operator = self.inner.username.as_deref();
                match self
                    .bkflow()
                    .operate_task(*space_id, *task_id, &Operation::Revoke, operator)
                    .await
                {
                    Ok(_) => Ok(CancelOutcome::Requested),
                    Err(e) if e.class() == ErrorClass::Rejected => {
                        match self.bkflow().get_task_states(*space_id, *task_id).await {
                            Ok(s)
                                if bkflow_phase(&s.state).is_terminal()
                                    && s.state != TaskState::Failed =>
                            {
                                Ok(CancelOutcome::AlreadyFinished)
                            }
                            _ => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            JobRef::Nodeman { job_id } => {
                let p = self.progress_nodeman(*job_id).await?;
                if p.phase.is_terminal() {
                    return Ok(CancelOutcome::AlreadyFinished);
                }
                self.nodeman().revoke(*job_id, &[]).await?;
                Ok(CancelOutcome::Requested)
            }
            JobRef::JobV2 {
                biz_id,
                job_instance_id,
            } => {
                self.cancel_job(&ScopeType::Biz, &biz_id.to_string(), *job_instance_id)
                    .await
            }
            JobRef::JobV3 {
                scope_type,
                scope_id,
                job_instance_id,
            } => {
                self.cancel_job(scope_type, scope_id, *job_instance_id)
                    .await
            }
        }
    }

    async fn cancel_job(
        &self,
        scope_type: &ScopeType,
        scope_id: &str,
        id: i64,
    ) -> Result<CancelOutcome, BkError> {
        let finished = |s: &job::JobInstanceStatusV3| {
            s.finished || job_phase(s.job_instance.status, true).is_terminal()
        };
        let st = self
            .job()
            .get_job_instance_status(scope_type, scope_id, id)
            .await?;
        if finished(&st) {
            return Ok(CancelOutcome::AlreadyFinished);
        }
        match self
            .job()
            .operate_job_instance(scope_type, scope_id, id, OperationCode::Terminate)
            .await
        {
            Ok(_) => Ok(CancelOutcome::Requested),
            Err(e) if e.class() == ErrorClass::Rejected => {
                match self
                    .job()
                    .get_job_instance_status(scope_type, scope_id, id)
                    .await
                {
                    Ok(s) if finished(&s) => Ok(CancelOutcome::AlreadyFinished),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}
