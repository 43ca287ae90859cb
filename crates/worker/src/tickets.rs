//! The pipeline's ticket store in the worker. The load stage's reads (the ticket with its tenant's
//! webhook) and the apply stage's writes (the triage result with its operation record) of
//! concurrent jobs are each served in batches ([`Batcher`]): on PostgreSQL one query per batch of
//! reads and one statement per batch of writes; a batch that fails is served one by one, so one bad
//! item fails only itself ([`Fallback`]). Each job still waits for its own answer — its write
//! committed — before its pipeline goes on.

use longhaul_core::{JobContext, JobError, OperationId, TenantId, TicketId, TicketStore, TicketView};
use longhaul_service::batch::Fallback;
use longhaul_service::{Batcher, TicketReader};
use longhaul_store::{Store, StoreError, TriageWrite};
use serde_json::Value;

/// Largest batch in one statement.
const MAX_BATCH: usize = 64;

/// A [`TicketStore`] over [`Store`] whose reads and writes are batched across concurrent jobs.
#[derive(Debug, Clone)]
pub struct BatchedTickets {
    reads: TicketReader,
    writes: Batcher<Pending, Result<Value, StoreError>>,
}

impl BatchedTickets {
    /// Starts the reader and writer tasks (needs a Tokio runtime); they end when the last handle
    /// is dropped.
    pub fn spawn(store: &Store) -> Self {
        Self {
            reads: TicketReader::spawn(store.clone()),
            writes: Batcher::spawn_with_fallback(MAX_BATCH, Writes(store.clone())),
        }
    }
}

/// A triage write as it waits for its batch: context, operation id, stage, effect, triage.
type Pending = (JobContext, OperationId, String, String, Value);

/// The apply stage's writes: one statement per batch; one by one if it fails ([`Fallback`]).
struct Writes(Store);

impl Fallback<Pending> for Writes {
    type Item = Value;
    type Error = StoreError;

    fn what(&self) -> &'static str {
        "ticket triage writes"
    }

    async fn all(&self, batch: &[Pending]) -> Result<Vec<Result<Value, StoreError>>, StoreError> {
        let refs: Vec<TriageWrite<'_>> = batch.iter().map(write_ref).collect();
        self.0.write_ticket_triage_many(&refs).await
    }

    async fn one(&self, pending: &Pending) -> Result<Value, StoreError> {
        self.0.write_ticket_triage(write_ref(pending)).await
    }
}

/// The borrowed form of a pending write.
fn write_ref((ctx, op, stage, effect, triage): &Pending) -> TriageWrite<'_> {
    TriageWrite { ctx, op, stage, effect, triage }
}

impl TicketStore for BatchedTickets {
    async fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<TicketView>, JobError> {
        Ok(self.reads.get(tenant, ticket).await?)
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
