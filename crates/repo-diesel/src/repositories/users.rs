//! `UserRepository` on diesel: one query per read, soft deletes with a deletion batch, and the
//! eager load of a page of users with their attendance in two queries.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::audit::{REDACTED, actions};
use domain::{
    Attendance, AttendanceId, AuditEntity, Email, FullName, NewUser, PasswordHash, User, UserChanges, UserId,
    UserWithAttendance,
};
use repo::{
    Direction, KeysetPage, KeysetRequest, KeysetStart, MAX_SEARCH_CHARS, OffsetPage, PageRequest, RepoError, Scope,
    TimeRange, Total, UserFilter, UserRepository,
};
use serde_json::{Map, Value, json};

use super::audit::{Change, record};
use super::{Connections, PageEnd, count_total, expect_direction, keyset_page, map_error};
use crate::expressions::{Explain, RowOrder, row_compare};
use crate::models::{AttendanceRow, UserRow};
use crate::schema::{attendance, users};
use database::connection::{DbConnection, MultiBackend};
use database::sql_types::{DbTimestamp, DbUuid, Instant, Uuid, fold_case, greatest, lower};

/// Users stored through diesel, on PostgreSQL or SQLite.
#[derive(Debug, Clone)]
pub struct DieselUserRepository<C> {
    connections: C,
}

impl<C: Connections> DieselUserRepository<C> {
    /// A repository that takes its connections from `connections` (a `Database`, or a unit of
    /// work's transaction).
    pub fn new(connections: C) -> Self {
        Self { connections }
    }

    /// Where the repository gets its connections.
    pub fn connections(&self) -> &C {
        &self.connections
    }
}

type UsersQuery = users::BoxedQuery<'static, MultiBackend>;

fn key(id: UserId) -> DbUuid {
    DbUuid(*id.as_uuid())
}

/// `users` in a soft-delete scope.
fn scoped(scope: Scope) -> UsersQuery {
    let query = users::table.into_boxed();
    match scope {
        Scope::Live => query.filter(users::deleted_at.is_null()),
        Scope::WithDeleted => query,
        Scope::OnlyDeleted => query.filter(users::deleted_at.is_not_null()),
    }
}

/// The search text of a filter: trimmed, `None` when empty. A NUL character (PostgreSQL text
/// cannot hold it) or more than [`MAX_SEARCH_CHARS`] characters is a `Validation` error, the
/// same on both backends (SQLite refuses `LIKE` patterns over 50,000 bytes).
fn search_of(filter: &UserFilter) -> Result<Option<&str>, RepoError> {
    let search = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|search| !search.is_empty());
    if search.is_some_and(|search| search.contains('\0')) {
        return Err(RepoError::validation("search", "must not contain NUL characters"));
    }
    if search.is_some_and(|search| search.chars().count() > MAX_SEARCH_CHARS) {
        return Err(RepoError::validation(
            "search",
            format!("must be at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    Ok(search)
}

/// Identifies a list for its cursors: a cursor of one filter is refused by another.
fn list_context(filter: &UserFilter) -> Result<String, RepoError> {
    Ok(format!(
        "users|{:?}|{}",
        filter.scope,
        fold_case(search_of(filter)?.unwrap_or_default())
    ))
}

/// `users` in the filter's scope, matching its search: a case-insensitive substring of the
/// email or the name, with `%`, `_` and `\` in the search taken literally. Both sides are
/// lower-cased by the database's own `lower`, so the search and the column always fold alike
/// (Rust and PostgreSQL disagree on final sigma and dotted capital I). That check decides on
/// both backends; on SQLite it is narrowed first to the candidates of a trigram index
/// (`search::narrowed`), which finds every row the check keeps.
fn filtered(filter: &UserFilter) -> Result<UsersQuery, RepoError> {
    let query = scoped(filter.scope);
    Ok(match search_of(filter)? {
        None => query,
        Some(search) => {
            let escaped = search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            let pattern = format!("%{escaped}%");
            query.filter(super::search::narrowed(
                lower(users::email)
                    .like(lower(pattern.clone()))
                    .escape('\\')
                    .or(lower(users::full_name).like(lower(pattern)).escape('\\')),
                search,
            ))
        }
    })
}

/// The row of `users` that `$filter` picks in `$scope`, as a `QueryResult<UserRow>`: one plain
/// (not boxed) query per scope, run on the connection's own backend, so that each backend's
/// statement cache keeps it by type and diesel builds its SQL once per connection (boxed
/// queries, and any query through the multi-backend enum, are built again on every call).
///
/// The first row is taken without a `LIMIT`: diesel binds `first()`'s `LIMIT 1` as a parameter,
/// and SQLite re-prepares a statement whose `LIMIT` is a parameter every time it is bound again
/// (three quarters of a point read's instructions). An id matches one row; an address in
/// `WithDeleted` may match a live row and deleted ones, and one of them is returned, as `LIMIT 1`
/// without an order did.
macro_rules! user_row {
    ($connection:expr, $scope:expr, $filter:expr) => {{
        let picked = users::table.filter($filter);
        database::on_its_backend!($connection, |connection| match $scope {
            Scope::Live => picked
                .filter(users::deleted_at.is_null())
                .select(UserRow::as_select())
                .get_result(connection),
            Scope::WithDeleted => picked.select(UserRow::as_select()).get_result(connection),
            Scope::OnlyDeleted => picked
                .filter(users::deleted_at.is_not_null())
                .select(UserRow::as_select())
                .get_result(connection),
        })
    }};
}

/// A stored row as a `User`, taking its text as it is: every value was parsed before it was
/// written, and the schema's checks bound every other writer (see `Email::from_stored`).
pub(crate) fn user_of(row: UserRow) -> User {
    User {
        id: UserId::from_uuid(row.id.0),
        email: Email::from_stored(row.email),
        full_name: FullName::from_stored(row.full_name),
        password_hash: PasswordHash::from_stored(row.hashed_password),
        is_active: row.is_active,
        created_at: row.created_at.0,
        updated_at: row.updated_at.0,
        deleted_at: row.deleted_at.map(|instant| instant.0),
    }
}

/// [`user_of`] for a borrowed row, as the list functions collect it.
#[expect(
    clippy::unnecessary_wraps,
    reason = "the list functions, rewritten in parallel, collect its Results; stored rows are no longer re-parsed"
)]
pub(crate) fn to_user(row: &UserRow) -> Result<User, RepoError> {
    Ok(user_of(row.clone()))
}

pub(crate) fn to_attendance(row: &AttendanceRow) -> Attendance {
    Attendance {
        id: AttendanceId::from_uuid(row.id.0),
        user_id: UserId::from_uuid(row.user_id.0),
        check_in_time: row.check_in_time.0,
        check_out_time: row.check_out_time.map(|instant| instant.0),
        created_at: row.created_at.0,
        updated_at: row.updated_at.0,
        deleted_at: row.deleted_at.map(|instant| instant.0),
    }
}

/// Users a retention purge deletes per statement: their ids are bound, within SQLite's limit
/// of 32,766 variables, and their audit entries are written in as many rows.
const PURGE_CHUNK: usize = 1_000;

/// The audit entry of a change to user `id`.
fn audited(
    action: &'static str,
    id: UserId,
    old_values: Option<Value>,
    new_values: Option<Value>,
    at: DbTimestamp,
) -> Change {
    Change {
        action,
        entity: AuditEntity::user(id),
        old_values,
        new_values,
        at,
    }
}

/// An instant as the audit log's JSON shows it: RFC 3339, UTC, microseconds.
fn instant(at: DbTimestamp) -> String {
    at.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// How [`locked_row`] locks the row on PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum Lock {
    /// `FOR NO KEY UPDATE`, as an `UPDATE` that leaves the key alone takes (foreign-key checks
    /// of concurrent check-ins go on).
    NoKeyUpdate,
    /// `FOR UPDATE`, as a `DELETE` takes.
    Update,
}

/// The user's row in any scope, locked until the transaction ends on PostgreSQL, so that what a
/// change's audit entry says was there before is what the change replaced; SQLite's write
/// transaction (`BEGIN IMMEDIATE`) already excludes every other writer.
fn locked_row(connection: &mut DbConnection, id: UserId, lock: Lock) -> QueryResult<Option<UserRow>> {
    let query = users::table.filter(users::id.eq(key(id)));
    match (connection, lock) {
        (DbConnection::Pg(pg), Lock::NoKeyUpdate) => query
            .select(UserRow::as_select())
            .for_no_key_update()
            .get_result(pg)
            .optional(),
        (DbConnection::Pg(pg), Lock::Update) => query
            .select(UserRow::as_select())
            .for_update()
            .get_result(pg)
            .optional(),
        (DbConnection::Sqlite(sqlite), _) => query.select(UserRow::as_select()).get_result(sqlite).optional(),
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChangeset {
    email: Option<String>,
    full_name: Option<String>,
    hashed_password: Option<String>,
}

fn limit_of(value: u32) -> i64 {
    i64::from(value)
}

fn offset_of(page: PageRequest) -> Result<i64, RepoError> {
    i64::try_from(page.offset()).map_err(|_| RepoError::validation("page", "is too large"))
}

impl<C: Connections> DieselUserRepository<C> {
    /// Changes a live user in one atomic step with its audit entry: reads the row, locked;
    /// `change` writes and returns the entry, which is recorded with the call's context; the
    /// user is read back. `NotFound` when no live user has this id.
    fn change_live(
        &self,
        id: UserId,
        change: impl FnOnce(&mut DbConnection, UserRow) -> QueryResult<Change>,
    ) -> Result<User, RepoError> {
        let context = self.connections.audit_context();
        let changed = self.connections.atomic(|connection| {
            let Some(before) = locked_row(connection, id, Lock::NoKeyUpdate)?.filter(|row| row.deleted_at.is_none())
            else {
                return Ok(false);
            };
            let entry = change(connection, before)?;
            record(connection, context, &[entry])?;
            Ok(true)
        })?;
        if !changed {
            return Err(RepoError::not_found("user", &id));
        }
        self.get(id, Scope::Live)
    }

    /// The user that `read` finds (a [`user_row!`] query), if any.
    fn find(&self, read: impl FnOnce(&mut DbConnection) -> QueryResult<UserRow>) -> Result<Option<User>, RepoError> {
        let row = self
            .connections
            .read(|connection| read(connection).optional().map_err(map_error))?;
        Ok(row.map(user_of))
    }

    /// A page of users in `(created_at, id)` order, fetched with one row more to learn whether a
    /// page follows, and the total the request asks for, by a statement of its own on the same
    /// connection (never a window over the whole sorted list).
    fn page(&self, filter: &UserFilter, page: PageRequest) -> Result<(Vec<User>, bool, Total), RepoError> {
        let offset = offset_of(page)?;
        let query = filtered(filter)?;
        let (rows, has_next, total) = self.connections.read(|connection| {
            let mut rows: Vec<UserRow> = query
                .order((users::created_at.asc(), users::id.asc()))
                .limit(limit_of(page.per_page()) + 1)
                .offset(offset)
                .select(UserRow::as_select())
                .load(connection)
                .map_err(map_error)?;
            let has_next = rows.len() > usize::try_from(page.per_page()).unwrap_or(usize::MAX);
            rows.truncate(usize::try_from(page.per_page()).unwrap_or(usize::MAX));
            let total = count_total(
                connection,
                page,
                PageEnd::of(&rows, has_next, offset),
                |connection| filtered(filter)?.count().get_result(connection).map_err(map_error),
                |connection| {
                    Explain(filtered(filter)?.select(users::id))
                        .get_result(connection)
                        .map_err(map_error)
                },
            )?;
            Ok((rows, has_next, total))
        })?;
        let users = rows.iter().map(to_user).collect::<Result<_, _>>()?;
        Ok((users, has_next, total))
    }
}

impl<C: Connections> UserRepository for DieselUserRepository<C> {
    #[tracing::instrument(skip(self, user), fields(email = %user.email))]
    fn create(&self, user: NewUser) -> Result<User, RepoError> {
        let now = DbTimestamp(domain::time::now());
        let row = UserRow {
            id: DbUuid(UserId::new().as_uuid().to_owned()),
            email: user.email.as_str().to_owned(),
            full_name: user.full_name.as_str().to_owned(),
            hashed_password: user.password_hash.as_phc().to_owned(),
            is_active: true,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            deletion_batch_id: None,
        };
        let registered = audited(
            actions::USER_REGISTER,
            UserId::from_uuid(row.id.0),
            None,
            Some(json!({
                "email": row.email,
                "full_name": row.full_name,
                "password": REDACTED,
                "is_active": true,
            })),
            now,
        );
        let context = self.connections.audit_context();
        self.connections.atomic(|connection| {
            diesel::insert_into(users::table).values(&row).execute(connection)?;
            record(connection, context, &[registered])
        })?;
        to_user(&row)
    }

    fn get(&self, id: UserId, scope: Scope) -> Result<User, RepoError> {
        self.find(|connection| user_row!(connection, scope, users::id.eq(key(id))))?
            .ok_or_else(|| RepoError::not_found("user", &id))
    }

    fn get_by_email(&self, email: &Email, scope: Scope) -> Result<User, RepoError> {
        // Stored lower-case, and Email is lower-case: equality is case-insensitive.
        self.find(|connection| user_row!(connection, scope, users::email.eq(email.as_str())))?
            .ok_or_else(|| RepoError::not_found("user", email))
    }

    #[tracing::instrument(skip(self, changes))]
    fn update(&self, id: UserId, changes: UserChanges) -> Result<User, RepoError> {
        let changeset = UserChangeset {
            email: changes.email.map(|email| email.as_str().to_owned()),
            full_name: changes.full_name.map(|name| name.as_str().to_owned()),
            hashed_password: changes.password_hash.map(|hash| hash.as_phc().to_owned()),
        };
        let now = DbTimestamp(domain::time::now());
        self.change_live(id, |connection, before| {
            diesel::update(users::table.filter(users::id.eq(key(id))))
                .set((&changeset, users::updated_at.eq(greatest(users::updated_at, now))))
                .execute(connection)?;
            let (mut old, mut new) = (Map::new(), Map::new());
            if let Some(email) = &changeset.email {
                old.insert("email".into(), before.email.into());
                new.insert("email".into(), email.as_str().into());
            }
            if let Some(full_name) = &changeset.full_name {
                old.insert("full_name".into(), before.full_name.into());
                new.insert("full_name".into(), full_name.as_str().into());
            }
            if changeset.hashed_password.is_some() {
                old.insert("password".into(), REDACTED.into());
                new.insert("password".into(), REDACTED.into());
            }
            Ok(audited(
                actions::USER_UPDATE,
                id,
                Some(old.into()),
                Some(new.into()),
                now,
            ))
        })
    }

    #[tracing::instrument(skip(self, expected, replacement))]
    fn replace_password_hash(
        &self,
        id: UserId,
        expected: &PasswordHash,
        replacement: PasswordHash,
    ) -> Result<bool, RepoError> {
        let now = DbTimestamp(domain::time::now());
        let context = self.connections.audit_context();
        self.connections.atomic(|connection| {
            let replaced = diesel::update(
                users::table
                    .filter(users::id.eq(key(id)))
                    .filter(users::deleted_at.is_null())
                    .filter(users::hashed_password.eq(expected.as_phc())),
            )
            .set((
                users::hashed_password.eq(replacement.as_phc()),
                users::updated_at.eq(greatest(users::updated_at, now)),
            ))
            .execute(connection)?;
            if replaced == 1 {
                let secret = json!({ "password": REDACTED });
                let change = audited(
                    actions::USER_PASSWORD_REHASH,
                    id,
                    Some(secret.clone()),
                    Some(secret),
                    now,
                );
                record(connection, context, &[change])?;
            }
            Ok(replaced == 1)
        })
    }

    #[tracing::instrument(skip(self))]
    fn set_active(&self, id: UserId, active: bool) -> Result<User, RepoError> {
        let now = DbTimestamp(domain::time::now());
        self.change_live(id, |connection, before| {
            diesel::update(users::table.filter(users::id.eq(key(id))))
                .set((
                    users::is_active.eq(active),
                    users::updated_at.eq(greatest(users::updated_at, now)),
                ))
                .execute(connection)?;
            let action = if active {
                actions::USER_REACTIVATE
            } else {
                actions::USER_DEACTIVATE
            };
            Ok(audited(
                action,
                id,
                Some(json!({ "is_active": before.is_active })),
                Some(json!({ "is_active": active })),
                now,
            ))
        })
    }

    #[tracing::instrument(skip(self))]
    fn soft_delete(&self, id: UserId) -> Result<User, RepoError> {
        let now = DbTimestamp(domain::time::now());
        let batch = DbUuid(uuid::Uuid::now_v7());
        let context = self.connections.audit_context();
        let deleted = self.connections.atomic(|connection| {
            let deleted = diesel::update(
                users::table
                    .filter(users::id.eq(key(id)))
                    .filter(users::deleted_at.is_null()),
            )
            .set((
                users::deleted_at.eq(Some(now)),
                users::deletion_batch_id.eq(Some(batch)),
                users::updated_at.eq(greatest(users::updated_at, now)),
            ))
            .execute(connection)?;
            if deleted == 1 {
                // The same batch marks the attendance that goes with the user, so a
                // restore brings back exactly these rows.
                let records = diesel::update(
                    attendance::table
                        .filter(attendance::user_id.eq(key(id)))
                        .filter(attendance::deleted_at.is_null()),
                )
                .set((
                    attendance::deleted_at.eq(Some(now)),
                    attendance::deletion_batch_id.eq(Some(batch)),
                    attendance::updated_at.eq(greatest(attendance::updated_at, now)),
                ))
                .execute(connection)?;
                let change = audited(
                    actions::USER_SOFT_DELETE,
                    id,
                    Some(json!({ "deleted_at": null })),
                    Some(json!({
                        "deleted_at": instant(now),
                        "deletion_batch_id": batch.0.to_string(),
                        "attendance_records": records,
                    })),
                    now,
                );
                record(connection, context, &[change])?;
            }
            Ok(deleted)
        })?;
        if deleted == 0 {
            return Err(RepoError::not_found("user", &id));
        }
        self.get(id, Scope::OnlyDeleted)
    }

    #[tracing::instrument(skip(self))]
    fn restore(&self, id: UserId) -> Result<User, RepoError> {
        let now = DbTimestamp(domain::time::now());
        let context = self.connections.audit_context();
        let restored = self.connections.atomic(|connection| {
            let deletion: Option<(Option<DbTimestamp>, Option<DbUuid>)> = users::table
                .filter(users::id.eq(key(id)))
                .filter(users::deleted_at.is_not_null())
                .select((users::deleted_at, users::deletion_batch_id))
                .first(connection)
                .optional()?;
            let Some((deleted_at, batch)) = deletion else {
                return Ok(false);
            };
            // Only the deletion just read: a concurrent delete/restore/delete makes this
            // restore a no-op rather than reviving a newer batch half-way.
            let restored = diesel::update(
                users::table
                    .filter(users::id.eq(key(id)))
                    .filter(users::deletion_batch_id.eq(batch)),
            )
            .set((
                users::deleted_at.eq(None::<DbTimestamp>),
                users::deletion_batch_id.eq(None::<DbUuid>),
                users::updated_at.eq(greatest(users::updated_at, now)),
            ))
            .execute(connection)?;
            if restored == 0 {
                return Ok(false);
            }
            let records = diesel::update(
                attendance::table
                    .filter(attendance::user_id.eq(key(id)))
                    .filter(attendance::deletion_batch_id.eq(batch)),
            )
            .set((
                attendance::deleted_at.eq(None::<DbTimestamp>),
                attendance::deletion_batch_id.eq(None::<DbUuid>),
                attendance::updated_at.eq(greatest(attendance::updated_at, now)),
            ))
            .execute(connection)?;
            let change = audited(
                actions::USER_RESTORE,
                id,
                Some(json!({
                    "deleted_at": deleted_at.map(instant),
                    "deletion_batch_id": batch.map(|batch| batch.0.to_string()),
                })),
                Some(json!({ "deleted_at": null, "attendance_records": records })),
                now,
            );
            record(connection, context, &[change])?;
            Ok(true)
        })?;
        if !restored {
            return Err(RepoError::not_found("deleted user", &id));
        }
        self.get(id, Scope::Live)
    }

    #[tracing::instrument(skip(self))]
    fn purge(&self, id: UserId) -> Result<(), RepoError> {
        let now = DbTimestamp(domain::time::now());
        let context = self.connections.audit_context();
        let purged = self.connections.atomic(|connection| {
            let Some(before) = locked_row(connection, id, Lock::Update)? else {
                return Ok(false);
            };
            diesel::delete(users::table.filter(users::id.eq(key(id)))).execute(connection)?;
            // No email or name: a purge is how personal data leaves, so its entry keeps none.
            let change = audited(
                actions::USER_PURGE,
                id,
                Some(json!({ "deleted_at": before.deleted_at.map(instant) })),
                None,
                now,
            );
            record(connection, context, &[change])?;
            Ok(true)
        })?;
        if !purged {
            return Err(RepoError::not_found("user", &id));
        }
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    fn purge_deleted_before(&self, cutoff: DateTime<Utc>) -> Result<u64, RepoError> {
        // Outside the years 1 to 9999 is refused on both backends: SQLite's text order would
        // put a year-10000 cutoff before every stored date and purge nothing.
        let cutoff = DbTimestamp(domain::time::storable(cutoff, "cutoff")?);
        let now = DbTimestamp(domain::time::now());
        let context = self.connections.audit_context();
        let purged = self.connections.atomic(|connection| {
            // Locked on PostgreSQL, so that a concurrent restore waits and every entry written
            // below is of a user deleted here; SQLite's write transaction excludes writers.
            let expired = users::table
                .filter(users::deleted_at.lt(cutoff))
                .select((users::id, users::deleted_at));
            let expired: Vec<(DbUuid, Option<DbTimestamp>)> = match connection {
                DbConnection::Pg(pg) => expired.for_update().load(pg)?,
                DbConnection::Sqlite(sqlite) => expired.load(sqlite)?,
            };
            let mut purged = 0;
            for chunk in expired.chunks(PURGE_CHUNK) {
                let changes: Vec<Change> = chunk
                    .iter()
                    .map(|(id, deleted_at)| {
                        audited(
                            actions::USER_RETENTION_PURGE,
                            UserId::from_uuid(id.0),
                            Some(json!({ "deleted_at": deleted_at.map(instant) })),
                            Some(json!({ "retention_cutoff": instant(cutoff) })),
                            now,
                        )
                    })
                    .collect();
                record(connection, context, &changes)?;
                let ids: Vec<DbUuid> = chunk.iter().map(|(id, _)| *id).collect();
                purged += diesel::delete(users::table.filter(users::id.eq_any(ids))).execute(connection)?;
            }
            Ok(purged)
        })?;
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
    }

    fn list(&self, filter: &UserFilter, page: PageRequest) -> Result<OffsetPage<User>, RepoError> {
        let (users, has_next, total) = self.page(filter, page)?;
        Ok(OffsetPage::new(users, page, has_next, total))
    }

    fn list_keyset(&self, filter: &UserFilter, page: &KeysetRequest) -> Result<KeysetPage<User>, RepoError> {
        let fetch = limit_of(page.limit()) + 1;
        let context = list_context(filter)?;
        let (position, backward) = match &page.start {
            KeysetStart::First => (None, false),
            KeysetStart::After(cursor) => (Some(expect_direction(cursor, Direction::Forward, &context)?), false),
            KeysetStart::Before(cursor) => (Some(expect_direction(cursor, Direction::Backward, &context)?), true),
        };
        let mut query = filtered(filter)?;
        if let Some(position) = position {
            let (at, id) = (DbTimestamp(position.created_at), DbUuid(position.id));
            // The full tuple, so rows sharing a timestamp are neither skipped nor repeated, as a
            // row value, so that the database seeks the (created_at, id) index to the position.
            let order = if backward { RowOrder::Before } else { RowOrder::After };
            query = query.filter(row_compare(
                (users::created_at, users::id),
                order,
                (at.into_sql::<Instant>(), id.into_sql::<Uuid>()),
            ));
        }
        query = if backward {
            query.order((users::created_at.desc(), users::id.desc()))
        } else {
            query.order((users::created_at.asc(), users::id.asc()))
        };
        let rows: Vec<UserRow> = self.connections.read(|connection| {
            query
                .limit(fetch)
                .select(UserRow::as_select())
                .load(connection)
                .map_err(map_error)
        })?;
        let more = rows.len() > usize::try_from(page.limit()).unwrap_or(usize::MAX);
        let users: Vec<User> = rows
            .iter()
            .take(usize::try_from(page.limit()).unwrap_or(usize::MAX))
            .map(to_user)
            .collect::<Result<_, _>>()?;
        Ok(keyset_page(
            users,
            more,
            backward,
            position.is_some(),
            |user: &User| (user.created_at, *user.id.as_uuid()),
            &context,
        ))
    }

    fn list_with_attendance(
        &self,
        filter: &UserFilter,
        page: PageRequest,
        range: TimeRange,
    ) -> Result<OffsetPage<UserWithAttendance>, RepoError> {
        let (users, has_next, total) = self.page(filter, page)?;
        let ids: Vec<DbUuid> = users.iter().map(|user| key(user.id)).collect();
        let mut by_user: HashMap<DbUuid, Vec<Attendance>> = HashMap::new();
        if !ids.is_empty() {
            let mut query = attendance::table
                .into_boxed::<MultiBackend>()
                .filter(attendance::user_id.eq_any(ids))
                .filter(attendance::check_in_time.ge(DbTimestamp(range.from)))
                .filter(attendance::check_in_time.lt(DbTimestamp(range.to)));
            // The scope applies to the rows loaded alongside, so deleted rows never leak in.
            query = match filter.scope {
                Scope::Live => query.filter(attendance::deleted_at.is_null()),
                Scope::WithDeleted => query,
                Scope::OnlyDeleted => query.filter(attendance::deleted_at.is_not_null()),
            };
            let rows: Vec<AttendanceRow> = self.connections.read(|connection| {
                query
                    .order((attendance::check_in_time.asc(), attendance::id.asc()))
                    .select(AttendanceRow::as_select())
                    .load(connection)
                    .map_err(map_error)
            })?;
            for row in rows {
                by_user.entry(row.user_id).or_default().push(to_attendance(&row));
            }
        }
        let items = users
            .into_iter()
            .map(|user| {
                let attendance = by_user.remove(&key(user.id)).unwrap_or_default();
                UserWithAttendance { user, attendance }
            })
            .collect();
        Ok(OffsetPage::new(items, page, has_next, total))
    }
}
