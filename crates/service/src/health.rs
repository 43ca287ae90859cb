//! `/healthz` (the process is alive) and `/readyz` (its dependencies answer), for Kubernetes probes:
//! the routes, the readiness check every binary uses ([`dependencies`]), and the admin server the
//! worker and queue-events serve them on ([`AdminServer`]). The routes are declared with their
//! OpenAPI operations ([`routes()`]), so the producer, which serves them beside its API, documents
//! them in its OpenAPI document.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use longhaul_queue::Queue;
use longhaul_store::Store;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A readiness check: `Ok` when every dependency answers, `Err(reason)` otherwise.
pub type ReadyCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The health routes, to serve alone (admin port) or merge into an API router.
pub fn router(ready: ReadyCheck) -> Router {
    routes(ready).into()
}

/// The health routes with their OpenAPI operations (tag `health`).
pub fn routes(ready: ReadyCheck) -> OpenApiRouter {
    OpenApiRouter::default().routes(routes!(healthz)).routes(routes!(readyz)).with_state(ready)
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    summary = "Liveness",
    description = "The process is alive. No key needed.",
    responses((status = 200, description = "The process is alive: `ok`.", body = String, example = "ok"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: every dependency answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    summary = "Readiness",
    description = "Every dependency (application storage, Redis) answers a ping. No key needed.",
    responses(
        (status = 200, description = "Every dependency answers: `ready`.", body = String, example = "ready"),
        (status = 503, description = "A dependency does not answer: `not ready: <which, and why>`.",
            body = String, example = "not ready: database: connection refused"),
    )
)]
async fn readyz(State(ready): State<ReadyCheck>) -> (StatusCode, String) {
    match ready().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}"))
        }
    }
}

/// The readiness of a binary that needs `queues` and, when given, `store`: all must answer a ping;
/// the reason names the one that does not (`database: …`, `redis (queue q): …`). Every queue is
/// pinged: on a Redis Cluster each queue's hash tag may live on a primary of its own.
pub fn dependencies(store: Option<&Store>, queues: &[Queue]) -> ReadyCheck {
    let (store, queues) = (store.cloned(), queues.to_vec());
    Arc::new(move || {
        let (store, queues) = (store.clone(), queues.clone());
        Box::pin(async move {
            if let Some(store) = store {
                store.ping().await.map_err(|e| format!("database: {}", longhaul_core::Report(&e)))?;
            }
            for queue in &queues {
                queue
                    .ping()
                    .await
                    .map_err(|e| format!("redis (queue {}): {}", queue.name(), longhaul_core::Report(&e)))?;
            }
            Ok(())
        })
    })
}

/// The admin server (`/healthz`, `/readyz`, and what a binary adds): bound by
/// [`AdminServer::bind`] when the binary is built, serving from [`AdminServer::spawn`] when it
/// runs.
#[derive(Debug)]
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks one) for `router`.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(addr: SocketAddr, router: Router) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the admin address {addr}: {e}"))?;
        Ok(Self { listener, router })
    }

    /// The bound address.
    ///
    /// # Errors
    /// When the socket cannot tell (it can once bound).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The routes it serves, for driving requests without the listener (`oneshot`).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves until `shutdown`, on a task of its own.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let served = axum::serve(self.listener, self.router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %longhaul_core::Report(&e), "admin server failed");
            }
        })
    }
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
