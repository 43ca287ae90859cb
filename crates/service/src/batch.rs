//! Group commit, written once: a [`Batcher`] hands the requests of concurrent callers to one task,
//! which serves whatever has queued up in one call (a statement or a transaction) and answers
//! each caller with its own result. While a batch is in flight the next one gathers, so batches
//! grow with load and a lone request waits for nothing.
//!
//! "Batch, then fall back one by one" is written here too: a [`Fallback`] serves a batch in one
//! call and, when that call fails as a whole, serves each item alone, so one bad item fails only
//! itself — unless the failure is no item's fault ([`Fallback::transient`]: the connection), when
//! each item gets the error at once ([`all_or_each`]; [`Batcher::spawn_with_fallback`] runs it
//! for a batcher).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

/// A request queue served in batches by one task. Cheap to clone; the task ends when the last
/// clone is dropped.
#[derive(Debug)]
pub struct Batcher<Req, Resp> {
    tx: mpsc::UnboundedSender<(Req, oneshot::Sender<Resp>)>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the task (needs a Tokio runtime). `serve` gets up to `max_batch` requests in the order
    /// they were sent and must return one response per request, in the same order; a caller whose
    /// response is missing gets `None` from [`Batcher::call`].
    pub fn spawn<F, Fut>(max_batch: usize, mut serve: F) -> Self
    where
        F: FnMut(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Resp>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Req, oneshot::Sender<Resp>)>();
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut batch, max_batch).await > 0 {
                let (requests, replies): (Vec<Req>, Vec<_>) = std::mem::take(&mut batch).into_iter().unzip();
                let responses = serve(requests).await;
                for (reply, response) in replies.into_iter().zip(responses) {
                    let _ = reply.send(response);
                }
            }
        });
        Self { tx }
    }

    /// Queues `request` and waits for its response; `None` when the task has stopped or gave no
    /// response for it.
    pub async fn call(&self, request: Req) -> Option<Resp> {
        let (reply, response) = oneshot::channel();
        self.tx.send((request, reply)).ok()?;
        response.await.ok()
    }
}

impl<Req, T, E> Batcher<Req, Result<T, E>>
where
    Req: Send + Sync + 'static,
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    /// [`Batcher::spawn`] serving each batch with [`all_or_each`]: one call for the batch, each
    /// item alone if that call fails.
    pub fn spawn_with_fallback<F>(max_batch: usize, fallback: F) -> Self
    where
        F: Fallback<Req, Item = T, Error = E> + Send + Sync + 'static,
    {
        let fallback = Arc::new(fallback);
        Self::spawn(max_batch, move |requests: Vec<Req>| {
            let fallback = fallback.clone();
            async move { all_or_each(&*fallback, &requests).await }
        })
    }
}

/// A batched call at least this slow is logged (a warning naming what it served and how long it
/// took).
pub const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(200);

/// One result per item of a batch, in order.
pub type Each<T, E> = Vec<Result<T, E>>;

/// A call that serves many items at once, and its one-item form for when the batch call fails as a
/// whole (a batch call is a statement or a transaction: one bad item can fail all of it).
pub trait Fallback<Req> {
    /// An item's result.
    type Item: Send;
    /// What a call can fail with.
    type Error: std::error::Error + Send + 'static;

    /// What the items are, for the log line of a fallback (`"pending records"`).
    fn what(&self) -> &'static str;

    /// Serves `items` in one call: one result per item, in order; `Err` when no item was served
    /// (none is told it succeeded, so each may be served again).
    fn all(
        &self,
        items: &[Req],
    ) -> impl Future<Output = Result<Each<Self::Item, Self::Error>, Self::Error>> + Send;

    /// Serves one item alone.
    fn one(&self, item: &Req) -> impl Future<Output = Result<Self::Item, Self::Error>> + Send;

    /// Whether a failure of [`Fallback::all`] on `items` may be no fault of some of them, so that
    /// serving each alone is worth it: by default, when there is more than one.
    fn shared_blame(&self, items: &[Req]) -> bool {
        items.len() > 1
    }

    /// When a failure of [`Fallback::all`] can be no item's fault (the store unreachable, a wait
    /// for a connection timed out): the error each item is answered with instead of being served
    /// alone, which would meet the same outage once per item, one after another, while every
    /// caller behind the batch waits. Only for callers that retry such an error themselves without
    /// spending anything (the worker's recorder holds its deliveries through an outage; the API
    /// answers `503` to an idempotent submission). `None` (the default): serve them alone.
    fn transient(&self, _error: &Self::Error) -> Option<Self::Error> {
        None
    }
}

/// Serves `items` with one [`Fallback::all`] call; when it fails for no item's fault
/// ([`Fallback::transient`]), answers each item with that at once; when it fails and the blame may
/// be shared ([`Fallback::shared_blame`]), serves each item alone with [`Fallback::one`], in order.
/// Otherwise the lone item gets the batch's error. One result per item, in order.
pub async fn all_or_each<Req: Sync, F: Fallback<Req> + Sync>(
    fallback: &F,
    items: &[Req],
) -> Each<F::Item, F::Error> {
    let started = std::time::Instant::now();
    let served = fallback.all(items).await;
    let took = started.elapsed();
    if took >= SLOW_BATCH {
        // Every caller queued behind this batch waited as long: the log line that explains a
        // latency spike no record's timestamps show.
        tracing::warn!(
            what = fallback.what(),
            items = items.len(),
            took_ms = took.as_millis() as u64,
            "a batched call was slow"
        );
    }
    match served {
        Ok(results) => results,
        Err(e) if items.is_empty() => {
            tracing::warn!(error = %longhaul_core::Report(&e), what = fallback.what(), "a batched call failed");
            Vec::new()
        }
        Err(e) if items.len() > 1 && fallback.transient(&e).is_some() => {
            tracing::warn!(error = %longhaul_core::Report(&e), items = items.len(), what = fallback.what(),
                "a batched call failed for no item's fault; each item gets the error");
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match fallback.transient(&e) {
                    Some(error) => out.push(Err(error)),
                    // An implementation that changed its mind: this item is served alone.
                    None => out.push(fallback.one(item).await),
                }
            }
            out
        }
        Err(e) if fallback.shared_blame(items) => {
            tracing::warn!(error = %longhaul_core::Report(&e), items = items.len(), what = fallback.what(),
                "a batched call failed; serving its items one by one");
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(fallback.one(item).await);
            }
            out
        }
        Err(e) => vec![Err(e)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn concurrent_callers_share_batches_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let open = gate.clone();
        let batcher = Batcher::spawn(8, move |reqs: Vec<u32>| {
            let (seen, gate) = (seen.clone(), gate.clone());
            async move {
                // The first batch waits until every caller has queued, so the rest gather.
                let first = seen.lock().expect("lock").is_empty();
                seen.lock().expect("lock").push(reqs.len());
                if first {
                    let _ = gate.acquire().await.map(|p| p.forget());
                }
                reqs.into_iter().map(|r| r * 10).collect()
            }
        });
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(0).await }
        });
        // Wait (with a deadline) until the first request is being served.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while sizes.lock().expect("lock").is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the first batch never started");
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..=20u32)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { (i, b.call(i).await) })
            })
            .collect();
        // Let the callers queue, then release the first batch.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        open.add_permits(1);
        assert_eq!(first.await.expect("task"), Some(0));
        for handle in rest {
            let (i, answer) = handle.await.expect("task");
            assert_eq!(answer, Some(i * 10), "each caller gets its own answer");
        }
        let sizes = sizes.lock().expect("lock").clone();
        assert_eq!(sizes.iter().sum::<usize>(), 21);
        assert!(sizes.iter().all(|s| *s <= 8), "batches are capped: {sizes:?}");
        assert!(sizes.len() < 21, "callers shared batches: {sizes:?}");
    }

    #[tokio::test]
    async fn a_missing_response_is_none_not_a_hang() {
        let batcher = Batcher::spawn(4, |_reqs: Vec<u32>| async { Vec::<u32>::new() });
        assert_eq!(batcher.call(1).await, None);
    }

    #[derive(Debug, Clone, PartialEq, thiserror::Error)]
    #[error("{0}")]
    struct Bad(&'static str);

    /// Fails a whole batch holding 0; alone, only 0 fails. Counts the calls of each form.
    #[derive(Default)]
    struct ZeroIsBad {
        all_calls: std::sync::atomic::AtomicU32,
        one_calls: std::sync::atomic::AtomicU32,
    }

    impl Fallback<u32> for ZeroIsBad {
        type Item = u32;
        type Error = Bad;

        fn what(&self) -> &'static str {
            "numbers"
        }

        async fn all(&self, items: &[u32]) -> Result<Vec<Result<u32, Bad>>, Bad> {
            self.all_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if items.contains(&0) {
                return Err(Bad("the batch held 0"));
            }
            Ok(items.iter().map(|i| Ok(i * 10)).collect())
        }

        async fn one(&self, item: &u32) -> Result<u32, Bad> {
            self.one_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if *item == 0 { Err(Bad("0 alone")) } else { Ok(item * 10) }
        }
    }

    #[tokio::test]
    async fn a_failed_batch_is_served_one_by_one_so_a_bad_item_fails_only_itself() {
        let f = ZeroIsBad::default();
        assert_eq!(all_or_each(&f, &[1, 2]).await, vec![Ok(10), Ok(20)]);
        assert_eq!(
            f.one_calls.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no fallback when the batch works"
        );
        assert_eq!(all_or_each(&f, &[1, 0, 3]).await, vec![Ok(10), Err(Bad("0 alone")), Ok(30)]);
        assert_eq!(f.one_calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        // A lone item's failure is its own: it gets the batch's error, not a second call.
        assert_eq!(all_or_each(&f, &[0]).await, vec![Err(Bad("the batch held 0"))]);
        assert_eq!(f.one_calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(f.all_calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// Fails every batch as an outage would; alone, every item works.
    #[derive(Default)]
    struct Outage {
        one_calls: std::sync::atomic::AtomicU32,
    }

    impl Fallback<u32> for Outage {
        type Item = u32;
        type Error = Bad;

        fn what(&self) -> &'static str {
            "numbers"
        }

        async fn all(&self, _items: &[u32]) -> Result<Vec<Result<u32, Bad>>, Bad> {
            Err(Bad("unreachable"))
        }

        async fn one(&self, item: &u32) -> Result<u32, Bad> {
            self.one_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(item * 10)
        }

        fn transient(&self, error: &Bad) -> Option<Bad> {
            (error.0 == "unreachable").then_some(Bad("in a batch that failed: unreachable"))
        }
    }

    #[tokio::test]
    async fn a_batch_failed_for_no_items_fault_answers_each_item_without_serving_it_alone() {
        let f = Outage::default();
        let failed = Err(Bad("in a batch that failed: unreachable"));
        assert_eq!(all_or_each(&f, &[1, 2, 3]).await, vec![failed.clone(), failed.clone(), failed]);
        assert_eq!(f.one_calls.load(std::sync::atomic::Ordering::SeqCst), 0, "no item was served alone");
        // A lone item gets the batch's own error, as before.
        assert_eq!(all_or_each(&f, &[1]).await, vec![Err(Bad("unreachable"))]);
        // An error that is some item's fault is still served one by one.
        let z = ZeroIsBad::default();
        assert_eq!(all_or_each(&z, &[1, 0]).await, vec![Ok(10), Err(Bad("0 alone"))]);
    }

    #[tokio::test]
    async fn a_batcher_with_fallback_answers_each_caller_with_its_own_result() {
        let batcher = Batcher::spawn_with_fallback(8, ZeroIsBad::default());
        let calls: Vec<_> = (0..4u32)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { (i, b.call(i).await) })
            })
            .collect();
        for call in calls {
            let (i, answer) = call.await.expect("task");
            match i {
                0 => assert!(matches!(answer, Some(Err(_))), "{answer:?}"),
                _ => assert_eq!(answer, Some(Ok(i * 10))),
            }
        }
    }
}
