//! The pipeline's ticket store in the worker: reads go straight to application storage (one query
//! for the ticket and its tenant's webhook); the apply stage's ticket writes of concurrent jobs are
//! handed to one task that writes whatever has queued up together
//! ([`Store::write_ticket_triage_many`]: one statement on PostgreSQL) — each job still waits for its
//! own write to be committed before its pipeline goes on.

use longhaul_core::{JobContext, JobError, OperationId, TenantId, TicketId, TicketStore, TicketView};
use longhaul_store::{Store, StoreError, TriageWrite};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

type Request = (JobContext, OperationId, Value, oneshot::Sender<Result<Value, StoreError>>);

/// Largest batch in one statement.
const MAX_BATCH: usize = 64;

/// A [`TicketStore`] over [`Store`] whose writes are batched across concurrent jobs.
#[derive(Debug, Clone)]
pub struct BatchedTickets {
    store: Store,
    tx: mpsc::UnboundedSender<Request>,
}

impl BatchedTickets {
    /// Starts the writer task (needs a Tokio runtime); it ends when the last handle is dropped.
    pub fn spawn(store: Store) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
        let writer = store.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                write(&writer, std::mem::take(&mut batch)).await;
            }
        });
        Self { store, tx }
    }
}

async fn write(store: &Store, batch: Vec<Request>) {
    let (writes, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|(ctx, op, triage, reply)| ((ctx, op, triage), reply)).unzip();
    let refs: Vec<TriageWrite<'_>> = writes.iter().map(|(ctx, op, triage)| (ctx, op, triage)).collect();
    match store.write_ticket_triage_many(&refs).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) if refs.len() > 1 => {
            // One bad write must not fail the others: write them one by one.
            tracing::warn!(error = %e, writes = refs.len(), "batched ticket writes failed; writing them one by one");
            for ((ctx, op, triage), reply) in refs.into_iter().zip(replies) {
                let _ = reply.send(store.write_ticket_triage(ctx, op, triage).await);
            }
        }
        Err(e) => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}

impl TicketStore for BatchedTickets {
    async fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<TicketView>, JobError> {
        Ok(self.store.load_ticket_view(tenant, ticket).await?)
    }

    async fn write_triage(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        triage: &Value,
    ) -> Result<Value, JobError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((ctx.clone(), op.clone(), triage.clone(), reply))
            .map_err(|_| StoreError::Config("the ticket writer has stopped".into()))?;
        let result = answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Config("the ticket writer dropped a write".into())))?;
        Ok(result)
    }
}
