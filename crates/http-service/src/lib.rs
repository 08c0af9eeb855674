#![doc = include_str!("../README.md")]

pub mod body;
pub mod problem;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use domain::CorrelationId;
use repo_diesel::{AsyncStore, Database, DieselStore};
use service::AttendanceService;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument as _;

use crate::problem::ApiError;

/// The header that carries a request's id, in the request and in its response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What the service is configured with, besides the database (`DATABASE_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where it listens (`HTTP_LISTEN`; default `127.0.0.1:8080`, loopback only).
    pub listen: SocketAddr,
    /// How long a request may take before it is answered `504` (`HTTP_REQUEST_TIMEOUT_MS`;
    /// default 10 s). A unit of work still running then is rolled back at its end.
    pub request_timeout: Duration,
    /// The largest request body taken (`HTTP_BODY_LIMIT_BYTES`; default 64 KiB); larger is `413`.
    pub body_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(10),
            body_limit: 64 * 1024,
        }
    }
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct SettingsError {
    /// The variable.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Settings {
    /// The settings from the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings from `lookup` (the environment, or a test's map); unset means the default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let parse = |variable: &'static str| -> Result<Option<u64>, SettingsError> {
            lookup(variable)
                .map(|text| {
                    text.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|value| *value > 0)
                        .ok_or(SettingsError {
                            variable,
                            message: format!("must be a whole number above 0, not {text:?}"),
                        })
                })
                .transpose()
        };
        let listen = match lookup("HTTP_LISTEN") {
            Some(text) => text.trim().parse().map_err(|_| SettingsError {
                variable: "HTTP_LISTEN",
                message: format!("must be an address and port such as 127.0.0.1:8080, not {text:?}"),
            })?,
            None => defaults.listen,
        };
        Ok(Self {
            listen,
            request_timeout: parse("HTTP_REQUEST_TIMEOUT_MS")?.map_or(defaults.request_timeout, Duration::from_millis),
            body_limit: parse("HTTP_BODY_LIMIT_BYTES")?
                .map_or(Ok(defaults.body_limit), usize::try_from)
                .map_err(|_| SettingsError {
                    variable: "HTTP_BODY_LIMIT_BYTES",
                    message: "too large for this machine".into(),
                })?,
        })
    }
}

/// What the handlers call on their blocking threads: the service's operations, and the
/// repositories for reads.
pub struct Api {
    /// The business operations.
    pub service: AttendanceService<DieselStore>,
    /// The repositories, for reads.
    pub store: DieselStore,
}

/// The handlers' state: the async store over [`Api`].
#[derive(Clone)]
pub struct AppState {
    /// Every database call goes through it.
    pub api: AsyncStore<Api>,
}

impl AppState {
    /// The state over a pool.
    #[must_use]
    pub fn new(database: Arc<Database>) -> Self {
        let store = DieselStore::new(database);
        let api = Api {
            service: AttendanceService::new(store.clone()),
            store,
        };
        Self {
            api: AsyncStore::new(api.store.clone()).map(api),
        }
    }
}

/// A request's id: the client's `x-request-id` when it is 1 to 128 visible ASCII characters,
/// a new UUID otherwise. It is in every log line of the request, in the response's
/// `x-request-id`, and the correlation id of the request's audit entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The service's routes and layers.
pub fn router(state: AppState, settings: &Settings) -> Router {
    let timeout = settings.request_timeout;
    Router::new()
        .route("/users", post(routes::register).get(routes::list_users))
        .route("/users/pages", get(routes::list_user_pages))
        .route("/users/{id}", get(routes::get_user).delete(routes::delete_user))
        .route("/users/{id}/restore", post(routes::restore_user))
        .route("/users/{id}/check-in", post(routes::check_in))
        .route("/users/{id}/check-out", post(routes::check_out))
        .route("/sessions", post(routes::sign_in))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "the route does not take this method",
            )
        })
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(middleware::from_fn_with_state(timeout, request_timeout))
        .layer(CatchPanicLayer::custom(|panic: Box<dyn std::any::Any + Send>| {
            let cause = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            ApiError::internal(&format_args!("a handler panicked: {cause}")).into_response()
        }))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Answers `504` when the request runs past the timeout. The handler's future is dropped: a
/// unit of work still running rolls back at its end (`repo_diesel::async_store`).
async fn request_timeout(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => {
            tracing::warn!(timeout_ms = timeout.as_millis(), "request timed out");
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the request took longer than {} ms; a change it made was rolled back unless it had already committed",
                    timeout.as_millis()
                ),
            )
            .into_response()
        }
    }
}

/// Gives every request an id ([`RequestId`]) and a span that carries it into every log line.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|text| CorrelationId::parse(text).is_ok())
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", id = %id, method = %request.method(), path = %request.uri().path());
    async move {
        let mut response = next.run(request).await;
        tracing::info!(status = response.status().as_u16(), "answered");
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        response
    }
    .instrument(span)
    .await
}

/// Serves on `listener` until `shutdown` resolves, then stops taking connections, lets the
/// requests in flight finish, and returns; the pool closes when the last state is dropped.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state, settings))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn settings_default_to_loopback_and_read_the_environment() {
        let defaults = settings(&[]).expect("defaults");
        assert_eq!(defaults, Settings::default());
        assert!(defaults.listen.ip().is_loopback());
        let set = settings(&[
            ("HTTP_LISTEN", "0.0.0.0:9000"),
            ("HTTP_REQUEST_TIMEOUT_MS", "1500"),
            ("HTTP_BODY_LIMIT_BYTES", "1024"),
        ])
        .expect("settings");
        assert_eq!(set.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(set.request_timeout, Duration::from_millis(1500));
        assert_eq!(set.body_limit, 1024);
    }

    #[test]
    fn bad_settings_name_their_variable() {
        for (variable, value) in [
            ("HTTP_LISTEN", "localhost"),
            ("HTTP_REQUEST_TIMEOUT_MS", "0"),
            ("HTTP_REQUEST_TIMEOUT_MS", "ten"),
            ("HTTP_BODY_LIMIT_BYTES", "-1"),
        ] {
            let error = settings(&[(variable, value)]).expect_err("refused");
            assert_eq!(error.variable, variable);
            assert!(error.to_string().contains(value), "{error}");
        }
    }
}
