//! Waiting out an outage of Redis or the database: one backoff for every retry loop of the
//! binaries — 100 ms, doubling up to 5 s, no jitter, never giving up — computed by `backon`, and cut
//! short by the shutdown token.
//!
//! Two shapes: [`until_ok`] retries one call until it succeeds (start-up: create the consumer
//! group); [`Backoff`] paces a loop that keeps running and starts over after each success (read
//! the stream; on an error, wait, then read again).

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder, Retryable as _};
use tokio_util::sync::CancellationToken;

/// The first delay after a failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

fn policy() -> ExponentialBuilder {
    ExponentialBuilder::new().with_min_delay(FIRST_DELAY).with_max_delay(MAX_DELAY).without_max_times()
}

/// Calls `op` until it succeeds, logging each failure as a warning `what` with the delay before
/// the next try. `None` when `stop` is cancelled first (a call under way is dropped).
pub async fn until_ok<T, E, Fut>(what: &str, stop: &CancellationToken, op: impl FnMut() -> Fut) -> Option<T>
where
    E: std::error::Error + 'static,
    Fut: Future<Output = Result<T, E>>,
{
    let retried = op.retry(policy()).sleep(tokio::time::sleep).notify(
        |e: &E, retry_in: Duration| tracing::warn!(error = %longhaul_core::Report(e), ?retry_in, "{what}"),
    );
    tokio::select! {
        () = stop.cancelled() => None,
        // Never an error: the policy has no limit on tries.
        done = retried => done.ok(),
    }
}

/// The delays of a loop that retries after errors and starts over after a success.
#[derive(Debug)]
pub struct Backoff {
    delays: ExponentialBackoff,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { delays: policy().build() }
    }
}

impl Backoff {
    /// The delay before the next try (each one longer, up to [`MAX_DELAY`]).
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(MAX_DELAY)
    }

    /// After a success: the next failure waits [`FIRST_DELAY`] again.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Sleeps for `delay` unless `stop` comes first; whether the whole delay passed.
pub async fn sleep_unless_stopped(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_start_over_after_a_reset() {
        let mut b = Backoff::default();
        let ms: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), FIRST_DELAY);
    }

    // Real time (the workspace's tokio has no `test-util`): 100 + 200 + 400 ms of backoff.
    #[tokio::test]
    async fn until_ok_retries_until_success_and_stops_on_shutdown() {
        let calls = AtomicU32::new(0);
        let stop = CancellationToken::new();
        let got = until_ok("not yet", &stop, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n < 4 { Err(std::io::Error::other(format!("failure {n}"))) } else { Ok(n) }
        })
        .await;
        assert_eq!(got, Some(4));

        stop.cancel();
        let never = until_ok("never", &stop, || async { Err::<(), _>(std::io::Error::other("down")) }).await;
        assert_eq!(never, None);
        assert!(!sleep_unless_stopped(Duration::from_secs(60), &stop).await);
    }
}
