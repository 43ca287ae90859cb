//! Holding a delivery through a storage outage: a storage call is repeated while it answers
//! "unavailable", and the delivery stays held (and heart-beaten) meanwhile, so an outage of any
//! length costs no delivery and fails nothing.

use std::future::Future;

use longhaul_store::StoreError;
use longhaul_store::outage::hold;

use super::Attempt;

impl Attempt<'_> {
    /// Runs a storage operation until it answers something other than "storage unavailable"
    /// ([`hold`]). The worker's readiness reports the outage meanwhile. `None` when the delivery
    /// is abandoned first (a shutdown's grace period ended, or it was superseded).
    pub(super) async fn durably<T, F, Fut>(&self, what: &'static str, op: F) -> Option<Result<T, StoreError>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        hold(&self.shared.store, what, self.cancel.cancelled(), op).await
    }
}
