//! The routes: each handler turns its request into one call through the async store, and the
//! result into a body or a problem.

use std::str::FromStr as _;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use database::connection::ConnectionManager;
use domain::{Actor, AuditContext, CorrelationId, RegisterUser, UserId};
use repo::{
    Cursor, KeysetRequest, KeysetStart, PageRequest, RepoError, Repositories as _, Scope, TimeRange, TotalMode,
    UserFilter,
};
use repo_diesel::Migrate as _;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;

use crate::body::{
    AttendanceBody, KeysetQuery, OffsetQuery, PeriodQuery, RegisterBody, SignInBody, StatusBody, TotalKind, UserBody,
    UserKeysetPage, UserOffsetPage, UserWithAttendanceBody,
};
use crate::problem::{ApiError, Problem};
use crate::{AppState, RequestId};

/// The page size when a list request names none.
const DEFAULT_PAGE_SIZE: u32 = 20;

/// The OpenAPI document of the service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "attendance",
        description = "The reference HTTP service over the attendance repositories"
    ),
    paths(
        register,
        sign_in,
        get_user,
        list_users,
        list_user_pages,
        delete_user,
        restore_user,
        check_in,
        check_out,
        healthz,
        readyz,
        metrics
    ),
    components(schemas(
        UserBody,
        AttendanceBody,
        UserWithAttendanceBody,
        RegisterBody,
        SignInBody,
        UserKeysetPage,
        UserOffsetPage,
        TotalKind,
        StatusBody,
        Problem
    ))
)]
pub struct ApiDoc;

/// A JSON body whose rejections are problems: malformed JSON `400`, a body that does not fit
/// the schema `422`, a missing content type `415`, a body over the limit `413`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => return ApiError::validation("body", rejection.body_text()),
        _ => "malformed",
    };
    ApiError::new(status, kind, rejection.body_text())
}

/// A query string whose rejections are `400` problems.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::new(rejection.status(), "malformed", rejection.body_text()))
    }
}

/// A user id from the path; a malformed one is a `422` on `id`.
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), "malformed", rejection.body_text()))?;
        UserId::from_str(&text)
            .map(Self)
            .map_err(|_| ApiError::validation("id", "must be a UUID"))
    }
}

/// Who acts for a request: the service itself (`service:http`), for the request's id.
pub struct Caller(pub AuditContext);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let actor = Actor::service("http").map_err(|error| ApiError::internal(&error))?;
        let mut context = AuditContext::new(actor);
        if let Some(RequestId(id)) = parts.extensions.get::<RequestId>()
            && let Ok(id) = CorrelationId::parse(id)
        {
            context = context.with_correlation_id(id);
        }
        Ok(Self(context))
    }
}

/// Registers a user.
#[utoipa::path(post, path = "/users", request_body = RegisterBody, responses(
    (status = 201, body = UserBody, description = "registered"),
    (status = 409, body = Problem, description = "a live user has the email (`uq_users_email`)"),
    (status = 422, body = Problem, description = "an input broke a rule"),
))]
pub async fn register(
    State(state): State<AppState>,
    Caller(context): Caller,
    Body(body): Body<RegisterBody>,
) -> Result<Response, ApiError> {
    let input = RegisterUser {
        email: body.email,
        full_name: body.full_name,
        password: body.password,
    };
    let user = state.api.run(move |api| api.service.register(&context, &input)).await?;
    let location = format!("/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserBody::from(&user)),
    )
        .into_response())
}

/// Signs a user in: the live, active user with this email and password.
#[utoipa::path(post, path = "/sessions", request_body = SignInBody, responses(
    (status = 200, body = UserBody, description = "the user signed in"),
    (status = 401, body = Problem, description = "the email or the password is wrong (one answer for every cause)"),
))]
pub async fn sign_in(
    State(state): State<AppState>,
    Caller(context): Caller,
    Body(body): Body<SignInBody>,
) -> Result<Json<UserBody>, ApiError> {
    let user = state
        .api
        .run(move |api| api.service.authenticate(&context, &body.email, &body.password))
        .await?;
    Ok(Json(UserBody::from(&user)))
}

/// A live user and their attendance in `[from, to)`.
#[utoipa::path(get, path = "/users/{id}", params(("id" = String, Path, description = "the user's id"), PeriodQuery), responses(
    (status = 200, body = UserWithAttendanceBody),
    (status = 404, body = Problem, description = "no live user has this id"),
))]
pub async fn get_user(
    State(state): State<AppState>,
    UserPath(id): UserPath,
    QueryOf(query): QueryOf<PeriodQuery>,
) -> Result<Json<UserWithAttendanceBody>, ApiError> {
    let to = domain::time::storable(query.to.unwrap_or_else(domain::time::now), "to").map_err(RepoError::from)?;
    let from = match query.from {
        Some(from) => from,
        None => to
            .checked_sub_signed(TimeDelta::days(30))
            .ok_or_else(|| ApiError::validation("to", "must be at least 30 days after the year 1 without from"))?,
    };
    let range = TimeRange::new(from, to)?;
    let (user, records) = state
        .api
        .run(move |api| {
            let user = api.store.users().get(id, Scope::Live)?;
            let records = api.store.attendance().list_for_user(id, range, Scope::Live)?;
            Ok::<_, RepoError>((user, records))
        })
        .await?;
    Ok(Json(UserWithAttendanceBody {
        user: UserBody::from(&user),
        attendance: records.iter().map(AttendanceBody::from).collect(),
    }))
}

/// A keyset page of live users, oldest first.
#[utoipa::path(get, path = "/users", params(KeysetQuery), responses(
    (status = 200, body = UserKeysetPage),
    (status = 422, body = Problem, description = "a bad cursor, limit or search"),
))]
pub async fn list_users(
    State(state): State<AppState>,
    QueryOf(query): QueryOf<KeysetQuery>,
) -> Result<Json<UserKeysetPage>, ApiError> {
    let start = match (query.after, query.before) {
        (None, None) => KeysetStart::First,
        (Some(after), None) => KeysetStart::After(Cursor::from_text(after)),
        (None, Some(before)) => KeysetStart::Before(Cursor::from_text(before)),
        (Some(_), Some(_)) => return Err(ApiError::validation("before", "give after or before, not both")),
    };
    let request = KeysetRequest::new(start, query.limit.unwrap_or(DEFAULT_PAGE_SIZE))?;
    let filter = UserFilter {
        search: query.search,
        ..UserFilter::default()
    };
    let page = state
        .api
        .run(move |api| api.store.users().list_keyset(&filter, &request))
        .await?;
    Ok(Json(UserKeysetPage::from(&page)))
}

/// A numbered page of live users, oldest first, with the total asked for.
#[utoipa::path(get, path = "/users/pages", params(OffsetQuery), responses(
    (status = 200, body = UserOffsetPage),
    (status = 422, body = Problem, description = "a bad page, page size, total or search"),
))]
pub async fn list_user_pages(
    State(state): State<AppState>,
    QueryOf(query): QueryOf<OffsetQuery>,
) -> Result<Json<UserOffsetPage>, ApiError> {
    let total = match query.total.as_deref() {
        None | Some("exact") => TotalMode::Exact,
        Some("estimate") => TotalMode::Estimate,
        Some("skip") => TotalMode::Skip,
        Some(_) => return Err(ApiError::validation("total", "must be exact, estimate or skip")),
    };
    let request =
        PageRequest::new(query.page.unwrap_or(1), query.per_page.unwrap_or(DEFAULT_PAGE_SIZE))?.with_total(total);
    let filter = UserFilter {
        search: query.search,
        ..UserFilter::default()
    };
    let page = state
        .api
        .run(move |api| api.store.users().list(&filter, request))
        .await?;
    Ok(Json(UserOffsetPage::from(&page)))
}

/// Soft-deletes a user and their attendance.
#[utoipa::path(delete, path = "/users/{id}", params(("id" = String, Path, description = "the user's id")), responses(
    (status = 200, body = UserBody, description = "the deleted user"),
    (status = 404, body = Problem, description = "no live user has this id"),
))]
pub async fn delete_user(
    State(state): State<AppState>,
    Caller(context): Caller,
    UserPath(id): UserPath,
) -> Result<Json<UserBody>, ApiError> {
    let user = state.api.run(move |api| api.service.delete(&context, id)).await?;
    Ok(Json(UserBody::from(&user)))
}

/// Restores a soft-deleted user and the attendance their deletion took.
#[utoipa::path(post, path = "/users/{id}/restore", params(("id" = String, Path, description = "the user's id")), responses(
    (status = 200, body = UserBody, description = "the restored user"),
    (status = 404, body = Problem, description = "no deleted user has this id"),
    (status = 409, body = Problem, description = "a live user now has the email (`uq_users_email`)"),
))]
pub async fn restore_user(
    State(state): State<AppState>,
    Caller(context): Caller,
    UserPath(id): UserPath,
) -> Result<Json<UserBody>, ApiError> {
    let user = state.api.run(move |api| api.service.restore(&context, id)).await?;
    Ok(Json(UserBody::from(&user)))
}

/// Checks a user in, now.
#[utoipa::path(post, path = "/users/{id}/check-in", params(("id" = String, Path, description = "the user's id")), responses(
    (status = 201, body = AttendanceBody, description = "the open record"),
    (status = 404, body = Problem, description = "no live user has this id"),
    (status = 409, body = Problem, description = "already checked in (`uq_attendance_user_id`), or deactivated (`users.is_active`)"),
))]
pub async fn check_in(
    State(state): State<AppState>,
    Caller(context): Caller,
    UserPath(id): UserPath,
) -> Result<Response, ApiError> {
    let record = state
        .api
        .run(move |api| api.service.check_in(&context, id, domain::time::now()))
        .await?;
    Ok((StatusCode::CREATED, Json(AttendanceBody::from(&record))).into_response())
}

/// Checks a user out, now.
#[utoipa::path(post, path = "/users/{id}/check-out", params(("id" = String, Path, description = "the user's id")), responses(
    (status = 200, body = AttendanceBody, description = "the closed record"),
    (status = 404, body = Problem, description = "the user has no open record"),
))]
pub async fn check_out(
    State(state): State<AppState>,
    Caller(context): Caller,
    UserPath(id): UserPath,
) -> Result<Json<AttendanceBody>, ApiError> {
    let record = state
        .api
        .run(move |api| api.service.check_out(&context, id, domain::time::now()))
        .await?;
    Ok(Json(AttendanceBody::from(&record)))
}

/// The process lives; touches nothing else.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = StatusBody)))]
pub async fn healthz() -> Json<StatusBody> {
    Json(StatusBody { status: "pass".into() })
}

/// The database answers and its migrations are at head.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, body = StatusBody),
    (status = 503, body = Problem, description = "the database does not answer, or migrations are pending"),
))]
///
/// It opens a connection of its own, outside the pool and its slots: a pool busy with requests
/// is still ready, and a server that refuses new connections is not.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<StatusBody>, ApiError> {
    let api = state.api.clone();
    let at_head = tokio::task::spawn_blocking(move || {
        let database = api.inner().store.database();
        let config = database.config();
        let mut connection = ConnectionManager::new(
            config.target.clone(),
            config.session.clone(),
            config.pool.connection_timeout,
        )
        .establish()
        .map_err(|error| RepoError::Unavailable(error.to_string()))?;
        let status = database
            .migrator()
            .status(&mut connection)
            .map_err(|error| RepoError::Unavailable(error.to_string()))?;
        Ok::<_, RepoError>(status.is_at_head())
    })
    .await
    .map_err(|error| ApiError::internal(&error))??;
    if !at_head {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database's migrations are not at head",
        ));
    }
    Ok(Json(StatusBody { status: "pass".into() }))
}

/// The pool and statement metrics, in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state
        .api
        .inner()
        .store
        .database()
        .metrics_collector()
        .render_prometheus();
    (
        [(header::CONTENT_TYPE, database::metrics::PROMETHEUS_CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// The OpenAPI document.
pub async fn openapi() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => ApiError::internal(&error).into_response(),
    }
}
