//! Health as `/healthz` and `/readyz` report it, and the HTTP server for those and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::error;

use super::metrics::Metrics;

/// How long a kind's watch may fail without a success before `/healthz` and `/readyz` fail, so
/// that Kubernetes restarts the pod. The watch retries with a backoff of at most about a minute.
pub const WATCH_STALL: Duration = Duration::from_secs(180);

/// Health as `/healthz` and `/readyz` report it.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    /// A kind's controller ended while the operator was meant to run.
    stopped: Arc<AtomicBool>,
    /// Since when each kind's watch has failed without a success in between.
    watch_failing:
        Arc<std::sync::Mutex<std::collections::HashMap<&'static str, std::time::Instant>>>,
}

impl Health {
    /// Marks the operator ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    /// Whether it is ready: running, and every kind's controller is alive.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.is_live()
    }
    /// Whether every kind's controller runs and none's watch has failed for [`WATCH_STALL`].
    pub fn is_live(&self) -> bool {
        self.problem().is_none()
    }
    /// What makes the operator unhealthy, if anything.
    pub fn problem(&self) -> Option<String> {
        self.problem_at(std::time::Instant::now())
    }
    fn problem_at(&self, now: std::time::Instant) -> Option<String> {
        if self.stopped.load(Ordering::SeqCst) {
            return Some("a controller has stopped".to_owned());
        }
        let failing = self.watch_failing.lock().unwrap_or_else(|e| e.into_inner());
        failing
            .iter()
            .map(|(kind, since)| (kind, now.saturating_duration_since(*since)))
            .filter(|(_, failed_for)| *failed_for >= WATCH_STALL)
            .map(|(kind, failed_for)| {
                format!("the {kind} watch has failed for {} s", failed_for.as_secs())
            })
            .min()
    }
    /// Marks a kind's controller as stopped.
    pub fn set_stopped(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
    /// Records the outcome of one event of `kind`'s watch.
    pub fn watch_event(&self, kind: &'static str, ok: bool) {
        let mut failing = self.watch_failing.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            failing.remove(kind);
        } else {
            failing.entry(kind).or_insert_with(std::time::Instant::now);
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `token` is cancelled.
pub async fn serve_http(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
    token: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", {
            let h = health.clone();
            get(move || {
                let h = h.clone();
                async move {
                    match h.problem() {
                        None => (StatusCode::OK, "ok".to_owned()),
                        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, p),
                    }
                }
            })
        })
        .route(
            "/readyz",
            get(move || {
                let h = health.clone();
                async move {
                    if let Some(p) = h.problem() {
                        (StatusCode::SERVICE_UNAVAILABLE, p)
                    } else if h.is_ready() {
                        (StatusCode::OK, "ready".to_owned())
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_owned())
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
        if let Err(e) = served {
            error!(error = %e, "metrics server");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_failing_for_long_or_a_stopped_controller_is_unhealthy() {
        let health = Health::default();
        health.set_ready(true);
        let t0 = std::time::Instant::now();
        assert!(health.is_ready() && health.problem_at(t0).is_none());
        health.watch_event("Taskflow", false);
        // Failing for a while is what a backoff is for.
        assert_eq!(health.problem_at(t0 + Duration::from_secs(60)), None);
        let problem = health.problem_at(t0 + WATCH_STALL + Duration::from_secs(5));
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.starts_with("the Taskflow watch has failed for")),
            "{problem:?}"
        );
        // A later event that decoded clears it.
        health.watch_event("Taskflow", true);
        assert_eq!(health.problem_at(t0 + WATCH_STALL * 2), None);
        health.set_stopped();
        assert!(!health.is_live() && !health.is_ready());
    }
}
