//! [`TicketReader`]: ticket reads of concurrent callers (the producer's triage requests, the
//! worker's load stages) in one query per batch on PostgreSQL, each caller answered with its own
//! ticket; a batch that fails is read one by one ([`Fallback`]), so one bad read fails only itself.

use longhaul_core::{TenantId, TicketId, TicketView};
use longhaul_store::{Store, StoreError};

use crate::Batcher;
use crate::batch::Fallback;

/// Largest batch of reads in one query.
const MAX_BATCH: usize = 64;

/// Reads the tickets of concurrent triage requests in one query (on PostgreSQL); each request
/// gets its own ticket. The task ends when the last handle is dropped.
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

    async fn all(
        &self,
        keys: &[(TenantId, TicketId)],
    ) -> Result<Vec<Result<Option<TicketView>, StoreError>>, StoreError> {
        let refs: Vec<(&TenantId, &TicketId)> = keys.iter().map(|(t, k)| (t, k)).collect();
        Ok(self.0.load_ticket_views(&refs).await?.into_iter().map(Ok).collect())
    }

    async fn one(&self, (tenant, ticket): &(TenantId, TicketId)) -> Result<Option<TicketView>, StoreError> {
        self.0.load_ticket_view(tenant, ticket).await
    }
}

impl TicketReader {
    /// Starts the reader task.
    pub fn spawn(store: Store) -> Self {
        Self { batcher: Batcher::spawn_with_fallback(MAX_BATCH, TicketReads(store)) }
    }

    /// Ticket `ticket` of `tenant` (`None` when it does not exist for that tenant), read in the
    /// batch it joined.
    ///
    /// # Errors
    /// As [`Store::load_ticket_view`].
    pub async fn get(&self, tenant: &TenantId, ticket: &TicketId) -> Result<Option<TicketView>, StoreError> {
        self.batcher
            .call((tenant.clone(), ticket.clone()))
            .await
            .unwrap_or(Err(StoreError::Stopped("ticket reader")))
    }
}
