//! The JSON bodies of the API. They are this crate's own types, not the domain's: a `User`
//! carries its password hash, which must never reach a response, and the OpenAPI document
//! describes exactly these.

use chrono::{DateTime, Utc};
use domain::{Attendance, User};
use repo::{KeysetPage, OffsetPage, Total};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A user as the API shows them: everything but the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserBody {
    /// The user's id (a UUID).
    pub id: String,
    /// Sign-in address, as registered.
    pub email: String,
    /// Display name.
    pub full_name: String,
    /// Deactivated users cannot sign in or check in.
    pub is_active: bool,
    /// When the user was registered.
    pub created_at: DateTime<Utc>,
    /// When the user last changed.
    pub updated_at: DateTime<Utc>,
    /// When the user was soft-deleted, if they are.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<&User> for UserBody {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.as_str().to_owned(),
            full_name: user.full_name.as_str().to_owned(),
            is_active: user.is_active,
            created_at: user.created_at,
            updated_at: user.updated_at,
            deleted_at: user.deleted_at,
        }
    }
}

/// One attendance record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttendanceBody {
    /// The record's id (a UUID).
    pub id: String,
    /// Whose record.
    pub user_id: String,
    /// When the user checked in.
    pub check_in_time: DateTime<Utc>,
    /// When the user checked out; absent while checked in.
    pub check_out_time: Option<DateTime<Utc>>,
}

impl From<&Attendance> for AttendanceBody {
    fn from(record: &Attendance) -> Self {
        Self {
            id: record.id.to_string(),
            user_id: record.user_id.to_string(),
            check_in_time: record.check_in_time,
            check_out_time: record.check_out_time,
        }
    }
}

/// A user and their attendance in the requested period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserWithAttendanceBody {
    /// The user.
    pub user: UserBody,
    /// Their records checked in within `[from, to)`, oldest first.
    pub attendance: Vec<AttendanceBody>,
}

/// A registration.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// Sign-in address.
    pub email: String,
    /// Display name.
    pub full_name: String,
    /// Clear password: 12 to 128 characters.
    pub password: String,
}

/// A sign-in.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    /// Sign-in address.
    pub email: String,
    /// Clear password.
    pub password: String,
}

/// A keyset page of users: follow `next_cursor` with `after`, `previous_cursor` with `before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserKeysetPage {
    /// The users, oldest first.
    pub items: Vec<UserBody>,
    /// The cursor of the next page; absent on the last.
    pub next_cursor: Option<String>,
    /// The cursor of the previous page; absent on the first.
    pub previous_cursor: Option<String>,
}

impl From<&KeysetPage<User>> for UserKeysetPage {
    fn from(page: &KeysetPage<User>) -> Self {
        Self {
            items: page.items.iter().map(UserBody::from).collect(),
            next_cursor: page.next.as_ref().map(|cursor| cursor.as_str().to_owned()),
            previous_cursor: page.previous.as_ref().map(|cursor| cursor.as_str().to_owned()),
        }
    }
}

/// How an offset page's total was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TotalKind {
    /// Counted.
    Exact,
    /// The database's estimate.
    Estimate,
    /// Not counted (`total=skip`).
    NotCounted,
}

/// A numbered page of users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserOffsetPage {
    /// The users, oldest first.
    pub items: Vec<UserBody>,
    /// The page number, from 1.
    pub page: u32,
    /// The page size.
    pub per_page: u32,
    /// The number of users in the whole list, when counted or estimated.
    pub total: Option<u64>,
    /// How `total` was had.
    pub total_kind: TotalKind,
    /// Whether a page follows.
    pub has_next: bool,
}

impl From<&OffsetPage<User>> for UserOffsetPage {
    fn from(page: &OffsetPage<User>) -> Self {
        let (total, total_kind) = match page.total {
            Total::Exact(total) => (Some(total), TotalKind::Exact),
            Total::Estimate(total) => (Some(total), TotalKind::Estimate),
            _ => (None, TotalKind::NotCounted),
        };
        Self {
            items: page.items.iter().map(UserBody::from).collect(),
            page: page.page,
            per_page: page.per_page,
            total,
            total_kind,
            has_next: page.has_next,
        }
    }
}

/// The query of `GET /users`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeysetQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// The page after the one whose `next_cursor` this is.
    pub after: Option<String>,
    /// The page before the one whose `previous_cursor` this is.
    pub before: Option<String>,
    /// A case-insensitive substring of the name or the email.
    pub search: Option<String>,
}

/// The query of `GET /users/pages`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OffsetQuery {
    /// The page number, from 1 (default 1).
    pub page: Option<u32>,
    /// Page size, 1 to 100 (default 20).
    pub per_page: Option<u32>,
    /// `exact` (default), `estimate` or `skip`.
    pub total: Option<String>,
    /// A case-insensitive substring of the name or the email.
    pub search: Option<String>,
}

/// The query of `GET /users/{id}`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// Start of the period, included (RFC 3339; default 30 days before `to`).
    pub from: Option<DateTime<Utc>>,
    /// End of the period, excluded (RFC 3339; default now).
    pub to: Option<DateTime<Utc>>,
}

/// The answer of `/healthz` and `/readyz` when all is well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusBody {
    /// `pass`.
    pub status: String,
}
