//! Creating a job: the create ticket, [`BkClient::submit`] and [`BkClient::submit_with`], and
//! [`BkClient::unsupported`] (what a connection cannot create at all).

use tracing::{info, warn};

use crate::bk::{BkClient, BkError};

use super::types::{CreateRequest, JobRef, Submitted, Unsupported};

/// A create's rate-limit token, taken before the run's intent is written so that the create
/// follows the intent at once (a create is made only right after its intent landed). Spent by
/// [`BkClient::submit_with`]; dropped unused (the intent was refused), it is lost, as a call is.
#[must_use = "a ticket is spent by submit_with"]
#[derive(Debug)]
pub struct CreateTicket {
    waited: std::time::Duration,
}

impl BkClient {
    /// Waits for the connection's rate limit for a create (ahead of waiting reads, as creates
    /// are) and holds the token for [`BkClient::submit_with`].
    pub async fn create_ticket(&self) -> CreateTicket {
        CreateTicket {
            waited: self.inner.transport.take_create_token().await,
        }
    }

    /// [`BkClient::submit`] with the token of `ticket`: the create is sent without waiting for
    /// the rate again (only for a slot among the calls in flight, or a 429's pause), and not at
    /// all ([`BkError::NotSent`]) if those waits last longer than `send_within`.
    pub async fn submit_with(
        &self,
        ticket: CreateTicket,
        req: &CreateRequest,
        send_within: std::time::Duration,
    ) -> Result<Submitted, BkError> {
        self.inner
            .transport
            .with_ticket(ticket.waited, send_within, self.submit(req))
            .await
    }

    /// Creates the job, once: never retried, whatever the error. On error, use
    /// [`BkError::class`]: `Ambiguous` means the job may exist (search, never resubmit).
    pub async fn submit(&self, req: &CreateRequest) -> Result<Submitted, BkError> {
        let result = self.submit_inner(req).await;
        match &result {
            Ok(s) => info!(system = %req.system(), job_id = %s.job.id(), "BlueKing job created"),
            Err(e) => {
                warn!(system = %req.system(), error = %e, class = ?e.class(), "BlueKing create failed")
            }
        }
        result
    }

    /// Why this client cannot make `req`, if it cannot: a question of its configuration,
    /// answered without a call.
    pub fn unsupported(&self, req: &CreateRequest) -> Option<Unsupported> {
        let system = req.system();
        if self.mode(system).is_none() {
            return Some(Unsupported::NoEndpoint(system));
        }
        match req {
            CreateRequest::JobV2(_) if !self.job().supports_v2() => {
                Some(Unsupported::JobV2OverGateway)
            }
            _ => None,
        }
    }

    async fn submit_inner(&self, req: &CreateRequest) -> Result<Submitted, BkError> {
        if let Some(u) = self.unsupported(req) {
            return Err(BkError::Config(format!("cannot send this create: {u}")));
        }
        Ok(match req {
            CreateRequest::Gsekit(r) => {
                let resp = self.gsekit().create_job(r).await?;
                Submitted {
                    job: JobRef::Gsekit {
                        biz_id: r.bk_biz_id,
                        job_id: resp.job_id,
                    },
                    job_url: None,
                    needs_start: false,
                }
            }
            CreateRequest::BkflowTemplate { space_id, body } => {
                let t = self.bkflow().create_task(*space_id, body).await?;
                Submitted {
                    job: JobRef::Bkflow {
                        space_id: t.space_id.unwrap_or(*space_id),
                        task_id: t.id,
                    },
                    job_url: None,
                    needs_start: t.is_started != Some(true),
                }
            }
            CreateRequest::BkflowTree { space_id, body } => {
                let t = self
                    .bkflow()
                    .create_task_without_template(*space_id, body)
                    .await?;
                Submitted {
                    job: JobRef::Bkflow {
                        space_id: t.space_id.unwrap_or(*space_id),
                        task_id: t.id,
                    },
                    job_url: None,
                    needs_start: t.is_started != Some(true),
                }
            }
            CreateRequest::NodemanJob(r) => {
                let resp = self.nodeman().job_operate(r).await?;
                Submitted {
                    job: JobRef::Nodeman {
                        job_id: resp.job_id,
                    },
                    job_url: resp.job_url,
                    needs_start: false,
                }
            }
            CreateRequest::NodemanPlugin(r) => {
                let resp = self.nodeman().plugin_operate(r).await?;
                Submitted {
                    job: JobRef::Nodeman {
                        job_id: resp.job_id,
                    },
                    job_url: resp.job_url,
                    needs_start: false,
                }
            }
            CreateRequest::JobV2(r) => {
                let resp = self.job().execute_job(r).await?;
                Submitted {
                    job: JobRef::JobV2 {
                        biz_id: r.bk_biz_id,
                        job_instance_id: resp.job_instance_id,
                    },
                    job_url: None,
                    needs_start: false,
                }
            }
            CreateRequest::JobV3(r) => {
                let mut body = r.clone();
                body.start_task = false;
                let resp = self.job().execute_job_plan(&body).await?;
                Submitted {
                    job: JobRef::JobV3 {
                        scope_type: r.bk_scope_type.clone(),
                        scope_id: r.bk_scope_id.clone(),
                        job_instance_id: resp.job_instance_id,
                    },
                    job_url: None,
                    needs_start: true,
                }
            }
        })
    }
}
