//! Bulk loading for data generators (the `seed` binary): many rows per statement, the fastest
//! way each backend offers, and the few lookups a generator needs to find its own rows again.
//!
//! - PostgreSQL: binary `COPY ... FROM STDIN` through diesel's `copy_from(..).from_insertable(..)`,
//!   one `COPY` per call.
//! - SQLite: multi-row `INSERT ... VALUES (..), (..)`, split so that no statement binds more than
//!   SQLite's 32,766 variables.
//!
//! Nothing here opens a transaction: the caller owns it, so that a whole load commits or rolls
//! back as one. Errors are mapped by `repositories::map_error`, like every other database error.

use diesel::prelude::*;

use crate::repositories::map_error;
use crate::schema::{attendance, users};
use database::connection::DbConnection;
use database::sql_types::{DbTimestamp, DbUuid};
use repo::RepoError;

/// The most variables one SQLite statement may bind (`SQLITE_MAX_VARIABLE_NUMBER` since 3.32).
pub const SQLITE_MAX_VARIABLES: usize = 32_766;

/// A user to insert in bulk. Every column is written, `NULL`s included (COPY has no `DEFAULT`),
/// and the password hash is borrowed: a generator gives every user the same one.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Insertable)]
#[diesel(table_name = users, treat_none_as_default_value = false)]
pub struct NewUserRow<'a> {
    /// `users.id`.
    pub id: DbUuid,
    /// `users.email`, lower-case.
    pub email: String,
    /// `users.full_name`, trimmed.
    pub full_name: String,
    /// `users.hashed_password`, an argon2id PHC string.
    pub hashed_password: &'a str,
    /// `users.is_active`.
    pub is_active: bool,
    /// `users.created_at`.
    pub created_at: DbTimestamp,
    /// `users.updated_at`, not before `created_at`.
    pub updated_at: DbTimestamp,
    /// `users.deleted_at`, set together with `deletion_batch_id`.
    pub deleted_at: Option<DbTimestamp>,
    /// `users.deletion_batch_id`.
    pub deletion_batch_id: Option<DbUuid>,
}

/// An attendance record to insert in bulk; every column is written, `NULL`s included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::Insertable)]
#[diesel(table_name = attendance, treat_none_as_default_value = false)]
pub struct NewAttendanceRow {
    /// `attendance.id`.
    pub id: DbUuid,
    /// `attendance.user_id`.
    pub user_id: DbUuid,
    /// `attendance.check_in_time`.
    pub check_in_time: DbTimestamp,
    /// `attendance.check_out_time`, after `check_in_time`; `None` while open.
    pub check_out_time: Option<DbTimestamp>,
    /// `attendance.created_at`.
    pub created_at: DbTimestamp,
    /// `attendance.updated_at`, not before `created_at`.
    pub updated_at: DbTimestamp,
    /// `attendance.deleted_at`, set together with `deletion_batch_id`.
    pub deleted_at: Option<DbTimestamp>,
    /// `attendance.deletion_batch_id`.
    pub deletion_batch_id: Option<DbUuid>,
}

/// Columns of `users` and `attendance`: SQLite rows per statement follow from them.
const USER_COLUMNS: usize = 9;
const ATTENDANCE_COLUMNS: usize = 8;

/// Inserts `rows` into `users`: one binary `COPY` on PostgreSQL, multi-row `INSERT`s of at most
/// [`SQLITE_MAX_VARIABLES`] variables each on SQLite. Returns the number of rows inserted.
pub fn insert_users(connection: &mut DbConnection, rows: &[NewUserRow<'_>]) -> Result<usize, RepoError> {
    if rows.is_empty() {
        return Ok(0);
    }
    match connection {
        DbConnection::Pg(pg) => diesel::copy_from(users::table)
            .from_insertable(rows)
            .execute(pg)
            .map_err(map_error),
        DbConnection::Sqlite(sqlite) => rows
            .chunks(SQLITE_MAX_VARIABLES / USER_COLUMNS)
            .map(|chunk| {
                diesel::insert_into(users::table)
                    .values(chunk)
                    .execute(sqlite)
                    .map_err(map_error)
            })
            .sum(),
    }
}

/// Inserts `rows` into `attendance`, as [`insert_users`] does. Their users must exist.
pub fn insert_attendance(connection: &mut DbConnection, rows: &[NewAttendanceRow]) -> Result<usize, RepoError> {
    if rows.is_empty() {
        return Ok(0);
    }
    match connection {
        DbConnection::Pg(pg) => diesel::copy_from(attendance::table)
            .from_insertable(rows)
            .execute(pg)
            .map_err(map_error),
        DbConnection::Sqlite(sqlite) => rows
            .chunks(SQLITE_MAX_VARIABLES / ATTENDANCE_COLUMNS)
            .map(|chunk| {
                diesel::insert_into(attendance::table)
                    .values(chunk)
                    .execute(sqlite)
                    .map_err(map_error)
            })
            .sum(),
    }
}

/// SQLite page cache for bulk loads, in KiB: large index inserts otherwise spill pages to the WAL
/// and read them back through system calls (measured: half the time of a million-row load).
/// 64 MiB was no faster within the noise of a shared machine and put the seed's peak RSS at 96 MiB.
const SQLITE_BULK_CACHE_KIB: u32 = 32_768;
/// SQLite's default page cache, in KiB, restored afterwards.
const SQLITE_DEFAULT_CACHE_KIB: u32 = 2_000;

/// Runs `work` with the connection set up for bulk loading: on SQLite a 32 MiB page cache
/// (the default is 2 MiB), restored to the default afterwards, also when `work` fails. PostgreSQL
/// connections are left as they are.
pub fn with_bulk_settings<T, E: From<RepoError>>(
    connection: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E> {
    set_sqlite_cache(connection, SQLITE_BULK_CACHE_KIB)?;
    let result = work(connection);
    // The work's own outcome wins: a failure to shrink the cache again must neither hide the
    // work's error nor turn a committed load into a reported failure. The pool's checkout ping
    // would still find the connection usable; only its cache stays larger.
    if let Err(error) = set_sqlite_cache(connection, SQLITE_DEFAULT_CACHE_KIB) {
        tracing::warn!(%error, "could not restore the SQLite page cache after a bulk load");
    }
    result
}

fn set_sqlite_cache(connection: &mut DbConnection, kib: u32) -> Result<(), RepoError> {
    use diesel::connection::SimpleConnection as _;
    if let DbConnection::Sqlite(sqlite) = connection {
        // PRAGMA takes no bound parameters; the only interpolated value is an integer constant.
        sqlite
            .batch_execute(&format!("PRAGMA cache_size = -{kib}"))
            .map_err(map_error)?;
    }
    Ok(())
}

/// Email domains `<prefix>…<suffix>`, where `…` is anything: for example `seed` … `.example`
/// matches `seed42.example`. Prefix and suffix are matched literally (`%`, `_` and `\` escaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainPattern<'a> {
    /// The start of the domain, right after `@`.
    pub prefix: &'a str,
    /// The end of the domain, the end of the address.
    pub suffix: &'a str,
}

impl DomainPattern<'_> {
    /// The `LIKE` pattern (escape character `\`), bound as a parameter.
    fn like(&self) -> String {
        format!("%@{}%{}", escape_like(self.prefix), escape_like(self.suffix))
    }
}

/// Escapes `%`, `_` and the escape character itself for `LIKE ... ESCAPE '\'`.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The `LIKE` pattern of every address at `domain`.
fn domain_like(domain: &str) -> String {
    format!("%@{}", escape_like(domain))
}

/// A page of `(id, email)` of users whose email domain matches `pattern` and is not
/// `except_domain`, soft-deleted ones included, in id order after `after`: walk all of them
/// with bounded memory by passing the last id of each page.
pub fn users_in_domains(
    connection: &mut DbConnection,
    pattern: DomainPattern<'_>,
    except_domain: Option<&str>,
    after: Option<DbUuid>,
    limit: u32,
) -> Result<Vec<(DbUuid, String)>, RepoError> {
    let mut query = users::table
        .into_boxed()
        .filter(users::email.like(pattern.like()).escape('\\'));
    if let Some(domain) = except_domain {
        query = query.filter(users::email.not_like(domain_like(domain)).escape('\\'));
    }
    if let Some(after) = after {
        query = query.filter(users::id.gt(after));
    }
    query
        .order(users::id.asc())
        .limit(i64::from(limit))
        .select((users::id, users::email))
        .load(connection)
        .map_err(map_error)
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Users deleted.
    pub users: u64,
    /// Their attendance records, deleted with them by `fk_attendance_users ... ON DELETE CASCADE`.
    pub attendance: u64,
}

/// Deletes the users `ids` for good (not a soft delete), their attendance going with them through
/// the foreign key's `ON DELETE CASCADE`. Pass at most a few thousand ids per call.
pub fn purge_users(connection: &mut DbConnection, ids: &[DbUuid]) -> Result<Purged, RepoError> {
    if ids.is_empty() {
        return Ok(Purged::default());
    }
    let attendance: i64 = attendance::table
        .filter(attendance::user_id.eq_any(ids))
        .count()
        .get_result(connection)
        .map_err(map_error)?;
    let users = diesel::delete(users::table.filter(users::id.eq_any(ids)))
        .execute(connection)
        .map_err(map_error)?;
    Ok(Purged {
        users: u64::try_from(users).unwrap_or(0),
        attendance: u64::try_from(attendance).unwrap_or(0),
    })
}

/// Rows in `users` and `attendance`, soft-deleted ones included.
pub fn count_rows(connection: &mut DbConnection) -> Result<(u64, u64), RepoError> {
    let users: i64 = users::table.count().get_result(connection).map_err(map_error)?;
    let attendance: i64 = attendance::table.count().get_result(connection).map_err(map_error)?;
    Ok((
        u64::try_from(users).unwrap_or(0),
        u64::try_from(attendance).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(domain_like("seed42.example"), "%@seed42.example");
        assert_eq!(
            DomainPattern {
                prefix: "se_d%",
                suffix: r".ex\ample"
            }
            .like(),
            r"%@se\_d\%%.ex\\ample"
        );
    }
}
