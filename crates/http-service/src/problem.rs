//! Errors as HTTP answers: RFC 9457 problem details (`application/problem+json`), with a
//! status per error kind and nothing internal in the body (no SQL, no server address, no driver
//! message); what a caller cannot be shown is logged with the request id instead.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repo::RepoError;
use serde::Serialize;
use service::ServiceError;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// How long a client should wait before retrying a `503`, in seconds.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// The `RepoError::Conflict` constraints of a lost race, not of the schema (`repo-diesel`'s
/// `map_error`): answered 503, to be retried.
const TRANSIENT: [&str; 2] = ["deadlock", "serialization"];

/// The `RepoError::Validation` field of a value the database itself refused (`map_error`).
const DATABASE_REFUSAL_FIELD: &str = "input";

/// A problem details object (RFC 9457), with this service's extension members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem, for example `/problems/conflict`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind's summary, the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for people.
    pub detail: String,
    /// The input field at fault (`validation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The constraint that refused the write (`conflict`), for example `uq_users_email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
}

/// An error on its way to the client: a [`Problem`] and its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    problem: Problem,
}

impl ApiError {
    /// A problem of `kind` (the last segment of its type) with `status`.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            problem: Problem {
                kind: format!("/problems/{kind}"),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                field: None,
                constraint: None,
            },
        }
    }

    /// `422`: an input broke a rule.
    pub fn validation(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail);
        error.problem.field = Some(field.into());
        error
    }

    /// `500`: logged with its cause; the client learns nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed on the server; it has been logged",
        )
    }

    /// The status this error answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<RepoError> for ApiError {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::NotFound { entity, key } => {
                Self::new(StatusCode::NOT_FOUND, "not-found", format!("{entity} {key} not found"))
            }
            // A deadlock or a serialization failure names no constraint of the schema: the
            // request lost a race and may simply be sent again.
            RepoError::Conflict { constraint, message } if TRANSIENT.contains(&constraint.as_str()) => {
                tracing::warn!(%constraint, %message, "transient conflict");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the request lost a race with another one and changed nothing; retry it",
                )
            }
            RepoError::Conflict { constraint, message } => {
                let mut problem = Self::new(StatusCode::CONFLICT, "conflict", message);
                problem.problem.constraint = Some(constraint);
                problem
            }
            // The database's own refusal of a value (`field` "input"): its message is the
            // driver's, logged rather than shown.
            RepoError::Validation { field, message } if field == DATABASE_REFUSAL_FIELD => {
                tracing::warn!(%message, "the database refused a value");
                Self::validation(field, "the database refused a value of the request")
            }
            RepoError::Validation { field, message } => Self::validation(field, message),
            RepoError::Timeout(cause) => {
                tracing::warn!(%cause, "database timeout");
                Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "the database did not answer in time; nothing of the request was kept unless a retry finds it",
                )
            }
            RepoError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; retry later",
                )
            }
            RepoError::StorageFull(cause) => {
                tracing::error!(%cause, "database out of storage");
                Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage-full",
                    "the database is out of storage; nothing of the request was written",
                )
            }
            RepoError::Internal(cause) => Self::internal(&cause),
            other => Self::internal(&other),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Repo(error) => error.into(),
            ServiceError::InvalidCredentials => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid-credentials", error.to_string())
            }
            ServiceError::Inactive(_) => {
                let mut problem = Self::new(StatusCode::CONFLICT, "conflict", error.to_string());
                problem.problem.constraint = Some("users.is_active".to_owned());
                problem
            }
            ServiceError::WrongPassword => Self::new(StatusCode::FORBIDDEN, "wrong-password", error.to_string()),
            other => Self::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(&self.problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the body of `error` shows a client, and its status.
    fn shown(error: impl Into<ApiError>) -> (StatusCode, String) {
        let error = error.into();
        (error.status, serde_json::to_string(&error.problem).expect("json"))
    }

    #[test]
    fn every_error_kind_has_its_status_and_no_internal_detail() {
        let secret = "SELECT hashed_password FROM users at postgres://app:s3cret@db.internal:5432/prod";
        let cases: Vec<(ApiError, StatusCode)> = vec![
            (RepoError::not_found("user", &"42").into(), StatusCode::NOT_FOUND),
            (
                RepoError::Conflict {
                    constraint: "uq_users_email".into(),
                    message: "a live user has this email".into(),
                }
                .into(),
                StatusCode::CONFLICT,
            ),
            (
                RepoError::validation("email", "must be an address").into(),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (RepoError::Timeout(secret.into()).into(), StatusCode::GATEWAY_TIMEOUT),
            (
                RepoError::Unavailable(secret.into()).into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                RepoError::StorageFull(secret.into()).into(),
                StatusCode::INSUFFICIENT_STORAGE,
            ),
            (
                RepoError::Internal(secret.into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (ServiceError::InvalidCredentials.into(), StatusCode::UNAUTHORIZED),
            (
                RepoError::validation("input", secret).into(),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                RepoError::Conflict {
                    constraint: "deadlock".into(),
                    message: secret.into(),
                }
                .into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                RepoError::Conflict {
                    constraint: "serialization".into(),
                    message: secret.into(),
                }
                .into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ServiceError::Repo(RepoError::Internal(secret.into())).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (error, status) in cases {
            let (shown_status, body) = shown(error);
            assert_eq!(shown_status, status, "{body}");
            for internal in ["SELECT", "s3cret", "db.internal", "postgres://"] {
                assert!(!body.contains(internal), "{status} shows {internal:?}: {body}");
            }
        }
    }

    #[test]
    fn problems_are_problem_json_and_unavailable_says_when_to_retry() {
        let response = ApiError::from(RepoError::Unavailable("down".into())).into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::from(RepoError::Timeout("slow".into())).into_response();
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
        let (_, body) = shown(RepoError::Conflict {
            constraint: "uq_users_email".into(),
            message: "taken".into(),
        });
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(body["type"], "/problems/conflict");
        assert_eq!(body["constraint"], "uq_users_email");
        assert_eq!(body["status"], 409);
    }
}
