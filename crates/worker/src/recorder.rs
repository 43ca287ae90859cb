//! The recorder: executors' starts and completions go through one task that writes whatever has
//! queued up in one transaction (group commit), then answers each executor. An executor still
//! waits for its own write to be committed before it goes on, so nothing is acknowledged that
//! storage does not hold — but concurrent jobs share one commit instead of paying one each.

use std::sync::Arc;

use longhaul_core::Pipeline;
use longhaul_store::{StoreError, Write, WriteOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// A write and where its outcome goes.
pub(crate) type Request = (Write, oneshot::Sender<Result<WriteOutcome, StoreError>>);

/// Largest batch in one transaction.
const MAX_BATCH: usize = 64;

/// The recorder task. Runs until `stop`, then handles what is already queued.
pub(crate) async fn run<P: Pipeline + 'static>(
    shared: Arc<Shared<P>>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { return },
            () = stop.cancelled() => {
                while let Ok(request) = rx.try_recv() {
                    batch.push(request);
                }
                write(&shared, std::mem::take(&mut batch)).await;
                return;
            }
        }
        write(&shared, std::mem::take(&mut batch)).await;
    }
}

async fn write<P>(shared: &Shared<P>, batch: Vec<Request>) {
    if batch.is_empty() {
        return;
    }
    let (writes, replies): (Vec<Write>, Vec<_>) = batch.into_iter().unzip();
    match shared.store.write_many(&writes).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) if writes.len() > 1 => {
            // One bad write must not fail the others: write them one by one.
            tracing::warn!(error = %e, writes = writes.len(), "batched write failed; retrying the writes one by one");
            for (write, reply) in writes.into_iter().zip(replies) {
                let result = match write {
                    Write::Start { tenant, job, attempt } => shared.store.start(&tenant, &job, attempt).await,
                    Write::StartNext { tenant, job } => shared.store.start_next(&tenant, &job).await,
                    Write::Complete { tenant, job, attempt, output } => {
                        shared.store.complete(&tenant, &job, attempt, &output).await
                    }
                };
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
    }
}
