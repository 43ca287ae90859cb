//! The pipeline's ticket store in the worker. The load stage's reads (the ticket with its tenant's
//! webhook) and the apply stage's writes (the triage result with its operation record) of
//! concurrent jobs are each served in batches ([`Batcher`]): on PostgreSQL one query per batch of
//! reads and one statement per batch of writes. Each job still waits for its own answer — its write
//! committed — before its pipeline goes on.

use longhaul_core::{JobContext, JobError, OperationId, TenantId, TicketId, TicketStore, TicketView};
use longhaul_service::Batcher;
use longhaul_store::{Store, StoreError, TriageWrite};
use serde_json::Value;

/// Largest batch in one statement.
const MAX_BATCH: usize = 64;

type Read = Result<Option<TicketView>, StoreError>;
type Written = Result<Value, StoreError>;
/// A triage write as it waits for its batch: context, operation id, stage, effect, triage.
type Pending = (JobContext, OperationId, String, String, Value);

/// A [`TicketStore`] over [`Store`] whose reads and writes are batched across concurrent jobs.
#[derive(Debug, Clone)]
pub struct BatchedTickets {
    reads: Batcher<(TenantId, TicketId), Read>,
    writes: Batcher<Pending, Written>,
}

impl BatchedTickets {
    /// Starts the reader and writer tasks (needs a Tokio runtime); they end when the last handle
    /// is dropped.
    pub fn spawn(store: &Store) -> Self {
        let reader = store.clone();
        let reads = Batcher::spawn(MAX_BATCH, move |keys: Vec<(TenantId, TicketId)>| {
            let store = reader.clone();
            async move { read(&store, keys).await }
        });
        let writer = store.clone();
        let writes = Batcher::spawn(MAX_BATCH, move |batch: Vec<Pending>| {
            let store = writer.clone();
            async move { write(&store, batch).await }
        });
        Self { reads, writes }
    }
}

async fn read(store: &Store, keys: Vec<(TenantId, TicketId)>) -> Vec<Read> {
    let refs: Vec<(&TenantId, &TicketId)> = keys.iter().map(|(t, k)| (t, k)).collect();
    store.load_ticket_views_each(&refs).await
}

async fn write(store: &Store, batch: Vec<Pending>) -> Vec<Written> {
    let refs: Vec<TriageWrite<'_>> = batch
        .iter()
        .map(|(ctx, op, stage, effect, triage)| TriageWrite { ctx, op, stage, effect, triage })
        .collect();
    match store.write_ticket_triage_many(&refs).await {
        Ok(results) => results,
        Err(e) if refs.len() > 1 => {
            // One bad write must not fail the others: write them one by one.
            tracing::warn!(error = %e.report(), writes = refs.len(), "batched ticket writes failed; writing them one by one");
            let mut out = Vec::with_capacity(refs.len());
            for w in refs {
                out.push(store.write_ticket_triage(w).await);
            }
            out
        }
        Err(e) => vec![Err(e)],
    }
}

impl TicketStore for BatchedTickets {
    async fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<TicketView>, JobError> {
        let view = self
            .reads
            .call((tenant.clone(), ticket.clone()))
            .await
            .unwrap_or_else(|| Err(StoreError::Stopped("ticket reader")))?;
        Ok(view)
    }

    async fn write_triage(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &Value,
    ) -> Result<Value, JobError> {
        let written = self
            .writes
            .call((ctx.clone(), op.clone(), stage.to_owned(), effect.to_owned(), triage.clone()))
            .await
            .unwrap_or_else(|| Err(StoreError::Stopped("ticket writer")))?;
        Ok(written)
    }
}
