//! What every handler shares: the read connection to the store, the configuration, metrics and
//! the login check, and the one place errors become HTTP statuses.

use crate::agent_config::ConfigError;
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

/// Why a request failed. Every handler's error ends here, and [`ApiError::status`] is the one
/// place that maps it to an HTTP status; the body is `{"error": message}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The store failed; another try may work.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// A request parameter out of its range.
    #[error("{0}")]
    BadRequest(String),
    #[error("no customer {0:?}")]
    NoCustomer(String),
    #[error("no incident {0}")]
    NoIncident(i64),
    #[error("no failed delivery {0}")]
    NoDelivery(i64),
    /// An agent configuration that cannot be pushed.
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0} has read-only access")]
    ReadOnly(String),
    /// The handler's task panicked or was cancelled.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NoCustomer(_) | ApiError::NoIncident(_) | ApiError::NoDelivery(_) => StatusCode::NOT_FOUND,
            ApiError::Config(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ReadOnly(_) => StatusCode::FORBIDDEN,
            ApiError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({"error": self.to_string()}))).into_response()
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
    .await?
}
