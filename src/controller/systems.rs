//! The job systems of the run lifecycle, for real: each connection's BlueKing client, with
//! BKFlow polls batched per space.

use std::sync::Arc;
use std::time::Duration;

use super::batch::BkflowBatcher;
use super::connection::{Connections, Resolved};
use crate::api::common::ConnectionRef;
use crate::bk::BkError;
use crate::bk::facade::{
    CancelOutcome, CreateRequest, CreateTicket, JobRef, Progress, SearchQuery, Searched, Submitted,
    Unsupported,
};
use crate::run::act::{self, Connection, ConnectionError, JobSystem};

/// The connections' cache and the BKFlow batch poller.
pub struct BkSystems {
    /// Connections, cached.
    pub connections: Connections,
    batch: Arc<BkflowBatcher>,
}

impl BkSystems {
    /// Job systems reached through `connections`, BKFlow polls batched with `batch`.
    pub fn new(connections: Connections, batch: BkflowBatcher) -> Self {
        BkSystems {
            connections,
            batch: Arc::new(batch),
        }
    }
}

/// One connection's BlueKing client.
#[derive(Clone)]
pub struct Connected {
    resolved: Resolved,
    batch: Arc<BkflowBatcher>,
}

impl act::Connections for BkSystems {
    type System = Connected;

    async fn resolve(
        &self,
        ns: &str,
        reference: Option<&ConnectionRef>,
        fresh: bool,
    ) -> Result<Connection<Connected>, ConnectionError> {
        let resolved = if fresh {
            self.connections.resolve_fresh(ns, reference).await?
        } else {
            self.connections.resolve(ns, reference).await?
        };
        Ok(Connection {
            defaults: resolved.defaults.clone(),
            id: resolved.id.clone(),
            system: Connected {
                resolved,
                batch: self.batch.clone(),
            },
        })
    }
}

impl JobSystem for Connected {
    type Ticket = CreateTicket;

    fn timeout(&self) -> Duration {
        self.resolved.client.timeout()
    }

    fn unsupported(&self, req: &CreateRequest) -> Option<Unsupported> {
        self.resolved.client.unsupported(req)
    }

    async fn create_ticket(&self) -> CreateTicket {
        self.resolved.client.create_ticket().await
    }

    async fn submit(
        &self,
        ticket: CreateTicket,
        req: &CreateRequest,
        send_within: Duration,
    ) -> Result<Submitted, BkError> {
        let client = &self.resolved.client;
        client.submit_with(ticket, req, send_within).await
    }

    async fn start(&self, job: &JobRef) -> Result<(), BkError> {
        self.resolved.client.start(job).await
    }

    async fn progress(&self, job: &JobRef) -> Result<Progress, Arc<BkError>> {
        match job {
            JobRef::Bkflow { space_id, task_id } => {
                self.batch
                    .progress(&self.resolved, *space_id, *task_id)
                    .await
            }
            _ => self.resolved.client.progress(job).await.map_err(Arc::new),
        }
    }

    async fn cancel(&self, job: &JobRef) -> Result<CancelOutcome, BkError> {
        self.resolved.client.cancel(job).await
    }

    async fn search(&self, q: &SearchQuery) -> Result<Searched, BkError> {
        self.resolved.client.search(q).await
    }
}
