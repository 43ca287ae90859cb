//! What the triage pipeline reads and writes: a ticket as the pipeline sees it ([`TicketView`])
//! and the store it reaches tickets through ([`TicketStore`]). The production store is
//! [`crate::storage`]; tests use fakes.

use std::future::Future;

use longhaul_core::{JobContext, JobError, OperationId, TenantId, TicketId};
use serde::{Deserialize, Serialize};

/// A ticket as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    /// The owning tenant, as stored.
    pub tenant_id: TenantId,
    /// The ticket.
    pub ticket_id: TicketId,
    /// Its current revision.
    pub revision: u64,
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// The owning tenant's webhook URL when the ticket was loaded, if one is configured: where
    /// results are delivered. Read with the ticket, so a job needs one read for both.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// How the pipeline reaches tickets (with their tenant's webhook). Every call is scoped by tenant.
pub trait TicketStore: Send + Sync {
    /// Loads ticket `ticket` of `tenant` with the tenant's webhook URL; `None` when it does not
    /// exist for that tenant.
    ///
    /// # Errors
    /// A retryable [`JobError`] when storage cannot be reached.
    fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> impl Future<Output = Result<Option<TicketView>, JobError>> + Send;

    /// Writes the triage result onto ticket `ticket` (its `triage` field) at most once per
    /// operation id, in one transaction with the operation's record (kept under `stage` and
    /// `effect`, as the operation log keeps durable steps): a local effect needs no separate
    /// begin/finish. Returns the stored result (the first write's, on a repeat).
    ///
    /// The result carries the triage the first write was about, so a repeat learns what was
    /// applied: `{"written": true, "triage": …}`. A stored triage is never replaced by one of an
    /// older ticket revision (the triage's `revision` field): then the ticket is left alone, the
    /// operation is recorded as done all the same, and the result is
    /// `{"written": false, "superseded_by": <stored revision>, "triage": …}`.
    ///
    /// # Errors
    /// A retryable [`JobError`] when storage cannot be reached; an invalid one when the ticket is gone.
    fn write_triage(
        &self,
        ctx: &JobContext,
        ticket: &TicketId,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &serde_json::Value,
    ) -> impl Future<Output = Result<serde_json::Value, JobError>> + Send;
}

impl<T: TicketStore + ?Sized> TicketStore for &T {
    fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> impl Future<Output = Result<Option<TicketView>, JobError>> + Send {
        (**self).load_ticket(tenant, ticket)
    }

    fn write_triage(
        &self,
        ctx: &JobContext,
        ticket: &TicketId,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &serde_json::Value,
    ) -> impl Future<Output = Result<serde_json::Value, JobError>> + Send {
        (**self).write_triage(ctx, ticket, op, stage, effect, triage)
    }
}

impl<T: TicketStore + ?Sized> TicketStore for std::sync::Arc<T> {
    fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> impl Future<Output = Result<Option<TicketView>, JobError>> + Send {
        (**self).load_ticket(tenant, ticket)
    }

    fn write_triage(
        &self,
        ctx: &JobContext,
        ticket: &TicketId,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &serde_json::Value,
    ) -> impl Future<Output = Result<serde_json::Value, JobError>> + Send {
        (**self).write_triage(ctx, ticket, op, stage, effect, triage)
    }
}
