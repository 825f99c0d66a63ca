//! What every handler shares: the read connection to the store, the configuration, metrics and
//! the login check, and the one place errors become HTTP statuses.

use crate::config::CollectorConfig;
use crate::http::auth::Logins;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::{Arc, Mutex};

pub struct ApiState {
    pub store: Mutex<Store>,
    pub config: CollectorConfig,
    pub metrics: Arc<Metrics>,
    /// Tells the push loop the agent config changed.
    pub push_wake: Arc<tokio::sync::Notify>,
    /// A fingerprint of the open incidents, kept by `console::watch_incidents`; the console's
    /// live views wait on it.
    pub incidents: tokio::sync::watch::Receiver<u64>,
    /// The login check every route passes.
    pub logins: Arc<Logins>,
}

impl ApiState {
    pub fn new(
        store: Store,
        config: CollectorConfig,
        metrics: Arc<Metrics>,
        push_wake: Arc<tokio::sync::Notify>,
        incidents: tokio::sync::watch::Receiver<u64>,
    ) -> ApiState {
        let logins = Arc::new(Logins::new(config.http.auth.clone(), metrics.clone()));
        ApiState { store: Mutex::new(store), config, metrics, push_wake, incidents, logins }
    }
}

/// The state as handlers receive it.
pub type Shared = Arc<ApiState>;

pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}"))
    }
}

/// Runs `f` with the read connection on the blocking pool.
pub(crate) async fn with_store<T: Send + 'static>(
    state: &Shared,
    f: impl FnOnce(&mut Store, &ApiState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = state.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut store, &state)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}
