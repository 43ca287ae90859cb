//! Holding a caller through a storage outage: [`hold`] repeats a storage call while it answers
//! "unavailable" (a retryable [`StoreError`]), so an outage of any length fails nothing that
//! waits on it. The worker's executors hold their deliveries this way, and pipelines their
//! durable steps and batched reads and writes, so an outage spends no attempt: while a caller is
//! held, the timer of the pipeline stage it runs in is paused ([`longhaul_core::stage_timer`]), so
//! the wait does not count against the kind's stage timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder as _, ExponentialBuilder};

use crate::{Store, StoreError};

/// How long a call may keep failing with a "retryable" error while the database answers a ping
/// before it counts as a permanent failure (a misclassified error must not hold a caller forever).
pub const REACHABLE_BUT_FAILING: Duration = Duration::from_secs(60);

/// How often a held caller asks whether the database answers at all: rarely, since an outage
/// holds many callers and each ping takes a connection attempt of its own.
pub const PING_EVERY: Duration = Duration::from_secs(10);

/// Runs `op` until it answers something other than a retryable error, waiting between tries 50 ms,
/// then twice as long each time up to 1 s, plus a random part up to as long again (so at most 2 s
/// apart: the many callers an outage holds do not all try again at the same moment); logs a
/// warning every 30 s while held and once when storage is back. An error that persists while
/// `store` answers a ping (tried every [`PING_EVERY`] once held 5 s) is returned after
/// [`REACHABLE_BUT_FAILING`]. From the first failure on, the caller's pipeline stage does not count
/// the time against its timeout. `None` when `stop` resolves first (checked between tries: a call
/// in flight is never dropped halfway); pass [`std::future::pending`] to hold for as long as the
/// caller itself is polled.
pub async fn hold<T, F, Fut>(
    store: &Store,
    what: &'static str,
    stop: impl Future<Output = ()>,
    mut op: F,
) -> Option<Result<T, StoreError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut stop = std::pin::pin!(stop);
    let mut delays = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .without_max_times()
        .build();
    let mut held: Option<Instant> = None;
    // The stage this caller runs in (if any) is paused from its first failure until it returns.
    let mut paused = None;
    let mut next_warning = Instant::now();
    let mut reachable_since: Option<Instant> = None;
    let mut next_ping = Instant::now();
    loop {
        match op().await {
            Err(e) if e.is_retryable() => {
                paused.get_or_insert_with(longhaul_core::stage_timer::pause);
                if held.is_some_and(|h| h.elapsed() > Duration::from_secs(5)) && Instant::now() >= next_ping {
                    next_ping = Instant::now() + PING_EVERY;
                    if store.ping().await.is_ok() {
                        if reachable_since.get_or_insert_with(Instant::now).elapsed() > REACHABLE_BUT_FAILING
                        {
                            tracing::error!(error = %e.report(), write = what,
                                "the database answers but this write keeps failing; giving up on it");
                            return Some(Err(e));
                        }
                    } else {
                        reachable_since = None;
                    }
                }
                if Instant::now() >= next_warning {
                    let since = held.get_or_insert_with(Instant::now).elapsed();
                    tracing::warn!(error = %e.report(), write = what, held_s = since.as_secs(),
                        "storage unavailable; holding the entry until it is back");
                    next_warning = Instant::now() + Duration::from_secs(30);
                }
                tokio::select! {
                    () = &mut stop => return None,
                    () = tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2))) => {}
                }
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
