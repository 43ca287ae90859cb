//! Group commit, written once: a [`Batcher`] hands the requests of concurrent callers to one task,
//! which serves whatever has queued up in one call (one statement, one transaction) and answers
//! each caller with its own result. While a batch is in flight the next one gathers, so batches
//! grow with load and a lone request waits for nothing.

use std::future::Future;

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
}
