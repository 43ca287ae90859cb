//! The stage timer: how [`crate::Ctx::stage`] measures a stage against the kind's stage timeout,
//! and [`pause`], which storage code calls while it holds a step through an outage, so the wait
//! for storage does not count against the stage (an outage must not spend an attempt).
//!
//! A stage's budget is its timeout plus every span during which at least one [`Paused`] guard of
//! that stage was alive. The guard finds its stage through a task-local the stage sets for exactly
//! the future it wraps (as the current stage is found), so a guard taken outside every stage — the
//! worker's own record writes — pauses nothing.
//!
//! Known limits: the timer is the stage's, not a step's, so while one step of a stage waits for
//! storage, another step running alongside it in the same stage is not timed either; the wait is
//! counted from the first failed storage call's answer, so that call's own time counts; and a
//! stage run inside another stage pauses only the inner one.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static CLOCK: Arc<Clock>;
}

/// How long a stage has been paused, and since when it is paused now.
#[derive(Debug, Default)]
struct State {
    /// Guards alive (concurrent steps of one stage may each wait).
    holds: usize,
    /// When the current pause began (`holds > 0`).
    since: Option<Instant>,
    /// Pauses that have ended.
    total: Duration,
}

#[derive(Debug, Default)]
struct Clock(Mutex<State>);

impl Clock {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Time paused so far, the current pause included, and whether a pause is on.
    fn paused(&self, now: Instant) -> (Duration, bool) {
        self.with(|s| {
            (s.total + s.since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)), s.holds > 0)
        })
    }
}

/// While alive, the stage being polled does not count time against its timeout. From [`pause`].
#[derive(Debug)]
#[must_use = "the stage is paused only while the guard is alive"]
pub struct Paused(Option<Arc<Clock>>);

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(clock) = self.0.take() {
            clock.with(|s| {
                s.holds -= 1;
                if s.holds == 0
                    && let Some(since) = s.since.take()
                {
                    s.total += since.elapsed();
                }
            });
        }
    }
}

/// Pauses the timer of the stage whose work is being polled until the guard drops; a no-op
/// outside every stage. For waits that are not the stage's own work: storage code holding a
/// durable step through an outage.
pub fn pause() -> Paused {
    Paused(CLOCK.try_with(Arc::clone).ok().inspect(|clock| {
        clock.with(|s| {
            s.holds += 1;
            s.since.get_or_insert_with(Instant::now);
        });
    }))
}

/// Runs `work` with a budget of `limit` plus the time it spends paused; `None` when it runs out.
pub(crate) async fn run<T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    let clock = Arc::new(Clock::default());
    let start = Instant::now();
    let work = CLOCK.scope(clock.clone(), work);
    let mut work = std::pin::pin!(work);
    let mut deadline = start + limit;
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            () = tokio::time::sleep_until(deadline) => {}
        }
        let now = Instant::now();
        let (paused, on) = clock.paused(now);
        let due = start + limit + paused;
        if due <= now && !on {
            return None;
        }
        // While a pause is on the budget grows as fast as time passes: look again in a while.
        deadline = if on { due.max(now + Duration::from_millis(250)) } else { due };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_extends_the_budget_by_its_length_only() {
        let limit = Duration::from_millis(200);
        // Without a pause, 300 ms of work runs out.
        assert_eq!(run(limit, tokio::time::sleep(Duration::from_millis(300))).await, None);
        // A pause of 1 s in it does not count: 100 ms before, 1 s paused, 50 ms after.
        let paused = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let guard = pause();
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(guard);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(run(limit, paused).await, Some(()));
        // What is left after the pause is still enforced: 100 + 150 ms of work is over 200.
        let over = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(pause());
            let guard = pause();
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(guard);
            tokio::time::sleep(Duration::from_millis(150)).await;
        };
        assert_eq!(run(limit, over).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_pauses_count_once_and_a_pause_past_the_limit_holds() {
        let limit = Duration::from_millis(200);
        // Two steps wait at once, 0–1 s and 0.5–2 s: paused 2 s in all, then 150 ms of work.
        let work = async {
            let first = pause();
            let second = async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let g = pause();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                drop(g);
            };
            let end_first = async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(first);
            };
            tokio::join!(second, end_first);
            tokio::time::sleep(Duration::from_millis(150)).await;
        };
        assert_eq!(run(limit, work).await, Some(()));
        // A pause that began near the limit holds past it for as long as it lasts (an hour).
        let long = async {
            tokio::time::sleep(Duration::from_millis(190)).await;
            let g = pause();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(g);
        };
        assert_eq!(run(limit, long).await, Some(()));
    }

    #[tokio::test]
    async fn a_pause_outside_a_stage_is_a_no_op() {
        let guard = pause();
        assert!(guard.0.is_none());
    }
}
