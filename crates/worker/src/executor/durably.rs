//! Holding a delivery through a storage outage: a storage call is repeated while it answers
//! "unavailable", and the delivery stays held (and heart-beaten) meanwhile, so an outage of any
//! length costs no delivery and fails nothing.

use std::future::Future;
use std::time::{Duration, Instant};

use longhaul_store::StoreError;

use super::Attempt;

/// How long a write may keep failing with a "retryable" error while the database answers a ping
/// before it counts as a permanent failure (a misclassified error must not hold an entry forever).
const REACHABLE_BUT_FAILING: Duration = Duration::from_secs(60);

impl Attempt<'_> {
    /// Runs a storage operation until it answers something other than "storage unavailable". The
    /// worker's readiness reports the outage meanwhile. An error that persists while the database
    /// answers is returned after [`REACHABLE_BUT_FAILING`]. `None` when the delivery is abandoned
    /// first (a shutdown's grace period ended, or it was superseded).
    pub(super) async fn durably<T, F, Fut>(
        &self,
        what: &'static str,
        mut op: F,
    ) -> Option<Result<T, StoreError>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Duration::from_millis(50);
        let mut held: Option<Instant> = None;
        let mut next_warning = Instant::now();
        let mut reachable_since: Option<Instant> = None;
        loop {
            match op().await {
                Err(e) if e.is_retryable() => {
                    if held.is_some_and(|h| h.elapsed() > Duration::from_secs(5)) {
                        if self.shared.store.ping().await.is_ok() {
                            if reachable_since.get_or_insert_with(Instant::now).elapsed()
                                > REACHABLE_BUT_FAILING
                            {
                                tracing::error!(error = %longhaul_core::Report(&e), write = what,
                                    "the database answers but this write keeps failing; giving up on it");
                                return Some(Err(e));
                            }
                        } else {
                            reachable_since = None;
                        }
                    }
                    if Instant::now() >= next_warning {
                        let since = held.get_or_insert_with(Instant::now).elapsed();
                        tracing::warn!(error = %longhaul_core::Report(&e), write = what, held_s = since.as_secs(),
                            "storage unavailable; holding the entry until it is back");
                        next_warning = Instant::now() + Duration::from_secs(30);
                    }
                    tokio::select! {
                        () = self.cancel.cancelled() => return None,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                other => {
                    if let Some(since) = held {
                        tracing::info!(
                            write = what,
                            held_ms = since.elapsed().as_millis() as u64,
                            "storage is back; going on"
                        );
                    }
                    return Some(other);
                }
            }
        }
    }
}
