//! `/healthz` (the process is alive) and `/readyz` (its dependencies answer), for Kubernetes probes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// A readiness check: `Ok` when every dependency answers, `Err(reason)` otherwise.
pub type ReadyCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The health routes, to serve alone (admin port) or merge into an API router.
pub fn router(ready: ReadyCheck) -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(readyz)).with_state(ready)
}

async fn readyz(State(ready): State<ReadyCheck>) -> (StatusCode, String) {
    match ready().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}"))
        }
    }
}

/// Serves the health routes on `addr` until `shutdown`. Returns the bound address (port 0 picks
/// one) and the server task.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    ready: ReadyCheck,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the admin address {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let served =
            axum::serve(listener, router(ready)).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn check(result: Result<(), String>) -> ReadyCheck {
        Arc::new(move || {
            let r = result.clone();
            Box::pin(async move { r })
        })
    }

    #[tokio::test]
    async fn readyz_reflects_the_check() {
        let get = |uri: &'static str| Request::builder().uri(uri).body(Body::empty()).expect("request");
        let ok = router(check(Ok(())));
        assert_eq!(ok.clone().oneshot(get("/healthz")).await.expect("call").status(), StatusCode::OK);
        assert_eq!(ok.oneshot(get("/readyz")).await.expect("call").status(), StatusCode::OK);
        let down = router(check(Err("redis: connection refused".into())));
        assert_eq!(down.clone().oneshot(get("/healthz")).await.expect("call").status(), StatusCode::OK);
        assert_eq!(
            down.oneshot(get("/readyz")).await.expect("call").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
