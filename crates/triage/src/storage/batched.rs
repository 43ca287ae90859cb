//! Ticket reads and triage writes of concurrent jobs, each served in batches ([`Batcher`]): on
//! PostgreSQL one query per batch of reads and one statement per batch of writes; a batch that
//! fails is served one by one, so one bad item fails only itself, unless its connection failed,
//! when every item gets a retryable error at once ([`Fallback`]). Each caller still waits for its
//! own answer — its write committed — before it goes on. [`TicketReader`] serves the producer's
//! triage route (an outage answers 503 at once) and the pipeline's load stage; [`BatchedTickets`]
//! is the pipeline's [`TicketStore`] in the worker, whose calls wait through a storage outage
//! ([`hold`]) rather than fail the attempt.

use longhaul_core::{JobContext, JobError, OperationId, TenantId, TicketId};
use longhaul_service::Batcher;
use longhaul_service::batch::Fallback;
use longhaul_store::outage::hold;
use longhaul_store::{Store, StoreError};
use serde_json::Value;

use super::{
    TriageWrite, load_ticket_view, load_ticket_views, write_ticket_triage, write_ticket_triage_many,
};
use crate::{TicketStore, TicketView};

/// Largest batch in one statement.
const MAX_BATCH: usize = 64;

/// Reads the tickets of concurrent callers in one query (on PostgreSQL); each gets its own
/// ticket. The task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct TicketReader {
    batcher: Batcher<(TenantId, TicketId), Result<Option<TicketView>, StoreError>>,
}

/// Tickets in one query; one by one if it fails ([`Fallback`]).
struct TicketReads(Store);

impl Fallback<(TenantId, TicketId)> for TicketReads {
    type Item = Option<TicketView>;
    type Error = StoreError;

    fn what(&self) -> &'static str {
        "ticket reads"
    }

    fn transient(&self, error: &StoreError) -> Option<StoreError> {
        error.for_each_item()
    }

    async fn all(
        &self,
        keys: &[(TenantId, TicketId)],
    ) -> Result<Vec<Result<Option<TicketView>, StoreError>>, StoreError> {
        let refs: Vec<(&TenantId, &TicketId)> = keys.iter().map(|(t, k)| (t, k)).collect();
        Ok(load_ticket_views(&self.0, &refs).await?.into_iter().map(Ok).collect())
    }

    async fn one(&self, (tenant, ticket): &(TenantId, TicketId)) -> Result<Option<TicketView>, StoreError> {
        load_ticket_view(&self.0, tenant, ticket).await
    }
}

impl TicketReader {
    /// Starts the reader task (needs a Tokio runtime).
    pub fn spawn(store: Store) -> Self {
        Self { batcher: Batcher::spawn_with_fallback(MAX_BATCH, TicketReads(store)) }
    }

    /// Ticket `ticket` of `tenant` (`None` when it does not exist for that tenant), read in the
    /// batch it joined.
    ///
    /// # Errors
    /// As [`load_ticket_view`].
    pub async fn get(&self, tenant: &TenantId, ticket: &TicketId) -> Result<Option<TicketView>, StoreError> {
        self.batcher
            .call((tenant.clone(), ticket.clone()))
            .await
            .unwrap_or(Err(StoreError::Stopped("ticket reader")))
    }
}

/// A [`TicketStore`] over [`Store`] whose reads and writes are batched across concurrent jobs.
#[derive(Debug, Clone)]
pub struct BatchedTickets {
    store: Store,
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
            store: store.clone(),
        }
    }
}

/// A triage write as it waits for its batch: context, ticket, operation id, stage, effect, triage.
type Pending = (JobContext, TicketId, OperationId, String, String, Value);

/// The apply stage's writes: one statement per batch; one by one if it fails ([`Fallback`]).
struct Writes(Store);

impl Fallback<Pending> for Writes {
    type Item = Value;
    type Error = StoreError;

    fn what(&self) -> &'static str {
        "ticket triage writes"
    }

    fn transient(&self, error: &StoreError) -> Option<StoreError> {
        error.for_each_item()
    }

    async fn all(&self, batch: &[Pending]) -> Result<Vec<Result<Value, StoreError>>, StoreError> {
        let refs: Vec<TriageWrite<'_>> = batch.iter().map(write_ref).collect();
        write_ticket_triage_many(&self.0, &refs).await
    }

    async fn one(&self, pending: &Pending) -> Result<Value, StoreError> {
        write_ticket_triage(&self.0, write_ref(pending)).await
    }
}

/// The borrowed form of a pending write.
fn write_ref((ctx, ticket, op, stage, effect, triage): &Pending) -> TriageWrite<'_> {
    TriageWrite { ctx, ticket, op, stage, effect, triage }
}

impl TicketStore for BatchedTickets {
    async fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<TicketView>, JobError> {
        let read =
            hold(&self.store, "ticket read", std::future::pending(), || self.reads.get(tenant, ticket));
        Ok(read.await.unwrap_or(Err(StoreError::Stopped("ticket reader")))?)
    }

    async fn write_triage(
        &self,
        ctx: &JobContext,
        ticket: &TicketId,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &Value,
    ) -> Result<Value, JobError> {
        let pending =
            (ctx.clone(), ticket.clone(), op.clone(), stage.to_owned(), effect.to_owned(), triage.clone());
        let written = hold(&self.store, "ticket triage write", std::future::pending(), || async {
            self.writes
                .call(pending.clone())
                .await
                .unwrap_or_else(|| Err(StoreError::Stopped("ticket writer")))
        });
        Ok(written.await.unwrap_or(Err(StoreError::Stopped("ticket writer")))?)
    }
}

/// The unbatched store: one statement per call (tests, and callers without concurrency).
impl TicketStore for Store {
    async fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<TicketView>, JobError> {
        Ok(load_ticket_view(self, tenant, ticket).await?)
    }

    async fn write_triage(
        &self,
        ctx: &JobContext,
        ticket: &TicketId,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &Value,
    ) -> Result<Value, JobError> {
        Ok(write_ticket_triage(self, TriageWrite { ctx, ticket, op, stage, effect, triage }).await?)
    }
}
