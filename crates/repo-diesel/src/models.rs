//! Row structs: what a table's row looks like to diesel. They never cross the repository traits;
//! conversions to `domain` types happen at the edge.

use crate::schema::{attendance, audit_log, users};
use database::sql_types::{DbJson, DbTimestamp, DbUuid};

/// A row of `users`.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    /// `users.id`.
    pub id: DbUuid,
    /// `users.email`.
    pub email: String,
    /// `users.full_name`.
    pub full_name: String,
    /// `users.hashed_password`.
    pub hashed_password: String,
    /// `users.is_active`.
    pub is_active: bool,
    /// `users.created_at`.
    pub created_at: DbTimestamp,
    /// `users.updated_at`.
    pub updated_at: DbTimestamp,
    /// `users.deleted_at`.
    pub deleted_at: Option<DbTimestamp>,
    /// `users.deletion_batch_id`.
    pub deletion_batch_id: Option<DbUuid>,
}

/// A row of `attendance`.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable)]
#[diesel(table_name = attendance)]
pub struct AttendanceRow {
    /// `attendance.id`.
    pub id: DbUuid,
    /// `attendance.user_id`.
    pub user_id: DbUuid,
    /// `attendance.check_in_time`.
    pub check_in_time: DbTimestamp,
    /// `attendance.check_out_time`.
    pub check_out_time: Option<DbTimestamp>,
    /// `attendance.created_at`.
    pub created_at: DbTimestamp,
    /// `attendance.updated_at`.
    pub updated_at: DbTimestamp,
    /// `attendance.deleted_at`.
    pub deleted_at: Option<DbTimestamp>,
    /// `attendance.deletion_batch_id`.
    pub deletion_batch_id: Option<DbUuid>,
}

/// A row of `audit_log`. Every column is written, `None` as NULL, so that SQLite takes many rows
/// in one `INSERT`.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable, diesel::Insertable)]
#[diesel(table_name = audit_log, treat_none_as_default_value = false)]
pub struct AuditRow {
    /// `audit_log.id`.
    pub id: DbUuid,
    /// `audit_log.occurred_at`.
    pub occurred_at: DbTimestamp,
    /// `audit_log.actor`.
    pub actor: String,
    /// `audit_log.action`.
    pub action: String,
    /// `audit_log.entity_type`.
    pub entity_type: String,
    /// `audit_log.entity_id`.
    pub entity_id: String,
    /// `audit_log.old_values`.
    pub old_values: Option<DbJson>,
    /// `audit_log.new_values`.
    pub new_values: Option<DbJson>,
    /// `audit_log.correlation_id`.
    pub correlation_id: Option<String>,
}
