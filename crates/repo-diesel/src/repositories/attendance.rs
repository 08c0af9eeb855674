//! `AttendanceRepository` on diesel: check-ins guarded by the database's partial unique index,
//! check-outs, reads per scope, daily totals computed in SQL, and joins with users.

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use domain::{Attendance, AttendanceId, AttendanceWithUser, CheckIn, CheckOut, DailyTotal, UserId};
use repo::{AttendanceRepository, OffsetPage, PageRequest, RepoError, Scope, TimeRange};

use super::users::{to_attendance, to_user};
use super::{Connections, PageEnd, count_total, map_error};
use crate::expressions::Explain;
use crate::models::{AttendanceRow, UserRow};
use crate::schema::{attendance, users};
use database::connection::{DbConnection, MultiBackend, on_its_backend};
use database::sql_types::{DbTimestamp, DbUuid, Instant, Uuid, greatest};

/// Attendance stored through diesel, on PostgreSQL or SQLite.
#[derive(Debug, Clone)]
pub struct DieselAttendanceRepository<C> {
    connections: C,
}

impl<C: Connections> DieselAttendanceRepository<C> {
    /// A repository that takes its connections from `connections`.
    pub fn new(connections: C) -> Self {
        Self { connections }
    }

    /// Where the repository gets its connections.
    pub fn connections(&self) -> &C {
        &self.connections
    }
}

type AttendanceQuery = attendance::BoxedQuery<'static, MultiBackend>;

type JoinedQuery =
    diesel::dsl::IntoBoxed<'static, diesel::dsl::InnerJoin<attendance::table, users::table>, MultiBackend>;

/// Attendance joined with its users in a scope. `Live` means live records of live users, so a
/// deleted user's rows never leak through the join.
fn joined_with_users(scope: Scope) -> JoinedQuery {
    let query = attendance::table.inner_join(users::table).into_boxed();
    match scope {
        Scope::Live => query
            .filter(attendance::deleted_at.is_null())
            .filter(users::deleted_at.is_null()),
        Scope::WithDeleted => query,
        Scope::OnlyDeleted => query.filter(attendance::deleted_at.is_not_null()),
    }
}

fn key(id: AttendanceId) -> DbUuid {
    DbUuid(*id.as_uuid())
}

fn user_key(id: UserId) -> DbUuid {
    DbUuid(*id.as_uuid())
}

fn scoped(scope: Scope) -> AttendanceQuery {
    let query = attendance::table.into_boxed();
    match scope {
        Scope::Live => query.filter(attendance::deleted_at.is_null()),
        Scope::WithDeleted => query,
        Scope::OnlyDeleted => query.filter(attendance::deleted_at.is_not_null()),
    }
}

/// What a restore of one record found.
enum RestoreOutcome {
    Restored,
    NotDeleted,
    DeletedWithUser,
    UserDeleted,
}

#[derive(QueryableByName)]
struct DailyRow {
    #[diesel(sql_type = Text)]
    day: String,
    #[diesel(sql_type = BigInt)]
    seconds: i64,
}

impl<C: Connections> DieselAttendanceRepository<C> {
    fn find(&self, query: AttendanceQuery) -> Result<Option<Attendance>, RepoError> {
        let row: Option<AttendanceRow> = self.connections.read(|connection| {
            query
                .select(AttendanceRow::as_select())
                .first(connection)
                .optional()
                .map_err(map_error)
        })?;
        Ok(row.as_ref().map(to_attendance))
    }

    fn get_live(&self, id: AttendanceId) -> Result<Attendance, RepoError> {
        self.get(id, Scope::Live)
    }
}

impl<C: Connections> AttendanceRepository for DieselAttendanceRepository<C> {
    #[tracing::instrument(skip(self))]
    fn check_in(&self, check_in: CheckIn) -> Result<Attendance, RepoError> {
        let at = domain::time::not_in_the_future(check_in.at, "at")?;
        let now = domain::time::now();
        let row = AttendanceRow {
            id: DbUuid(*AttendanceId::new().as_uuid()),
            user_id: user_key(check_in.user_id),
            check_in_time: DbTimestamp(at),
            check_out_time: None,
            created_at: DbTimestamp(now),
            updated_at: DbTimestamp(now),
            deleted_at: None,
            deletion_batch_id: None,
        };
        // One statement: the row is inserted only for a live, active user (INSERT ... SELECT),
        // and uq_attendance_user_id refuses a second open record, also when two check-ins race:
        // the loser gets a unique violation, mapped to Conflict. On PostgreSQL the user row is
        // read FOR SHARE, so a check-in racing the user's soft delete waits for it and then sees
        // the user deleted; SQLite runs one writer at a time anyway.
        let inserted = self.connections.with(|connection| {
            let live_user = users::table
                .filter(users::id.eq(row.user_id))
                .filter(users::deleted_at.is_null())
                .filter(users::is_active.eq(true))
                .select((
                    row.id.into_sql::<Uuid>(),
                    users::id,
                    row.check_in_time.into_sql::<Instant>(),
                    row.created_at.into_sql::<Instant>(),
                    row.updated_at.into_sql::<Instant>(),
                ));
            let columns = (
                attendance::id,
                attendance::user_id,
                attendance::check_in_time,
                attendance::created_at,
                attendance::updated_at,
            );
            match connection {
                DbConnection::Pg(pg) => diesel::insert_into(attendance::table)
                    .values(live_user.for_share())
                    .into_columns(columns)
                    .execute(pg),
                DbConnection::Sqlite(sqlite) => diesel::insert_into(attendance::table)
                    .values(live_user)
                    .into_columns(columns)
                    .execute(sqlite),
            }
            .map_err(map_error)
        })?;
        if inserted == 1 {
            return Ok(to_attendance(&row));
        }
        // Nothing inserted: say why.
        let active: Option<bool> = self.connections.with(|connection| {
            users::table
                .filter(users::id.eq(row.user_id))
                .filter(users::deleted_at.is_null())
                .select(users::is_active)
                .first(connection)
                .optional()
                .map_err(map_error)
        })?;
        match active {
            Some(false) => Err(RepoError::Conflict {
                constraint: "users.is_active".into(),
                message: "the user is deactivated and cannot check in".into(),
            }),
            _ => Err(RepoError::not_found("user", &check_in.user_id)),
        }
    }

    #[tracing::instrument(skip(self))]
    fn check_out(&self, check_out: CheckOut) -> Result<Attendance, RepoError> {
        let at = domain::time::not_in_the_future(check_out.at, "at")?;
        let open = self
            .find(
                scoped(Scope::Live)
                    .filter(attendance::user_id.eq(user_key(check_out.user_id)))
                    .filter(attendance::check_out_time.is_null()),
            )?
            .ok_or_else(|| RepoError::not_found("open attendance of user", &check_out.user_id))?;
        if at <= open.check_in_time {
            return Err(RepoError::validation("check_out_time", "must be after the check-in"));
        }
        let updated = self.connections.with(|connection| {
            diesel::update(
                attendance::table
                    .filter(attendance::id.eq(key(open.id)))
                    .filter(attendance::check_out_time.is_null()),
            )
            .set((
                attendance::check_out_time.eq(Some(DbTimestamp(at))),
                attendance::updated_at.eq(greatest(attendance::updated_at, DbTimestamp(domain::time::now()))),
            ))
            .execute(connection)
            .map_err(map_error)
        })?;
        if updated == 0 {
            // Closed by a concurrent check-out between the read and the write.
            return Err(RepoError::not_found("open attendance of user", &check_out.user_id));
        }
        self.get_live(open.id)
    }

    fn get(&self, id: AttendanceId, scope: Scope) -> Result<Attendance, RepoError> {
        // One plain query per scope on the connection's own backend, kept by the backend's
        // statement cache (see `on_its_backend!`), and no `LIMIT`, which SQLite would re-prepare
        // on every call (see `user_row!`): the id matches at most one row.
        let row: Option<AttendanceRow> = self.connections.read(|connection| {
            let picked = attendance::table.filter(attendance::id.eq(key(id)));
            on_its_backend!(connection, |connection| match scope {
                Scope::Live => picked
                    .filter(attendance::deleted_at.is_null())
                    .select(AttendanceRow::as_select())
                    .get_result(connection),
                Scope::WithDeleted => picked.select(AttendanceRow::as_select()).get_result(connection),
                Scope::OnlyDeleted => picked
                    .filter(attendance::deleted_at.is_not_null())
                    .select(AttendanceRow::as_select())
                    .get_result(connection),
            })
            .optional()
            .map_err(map_error)
        })?;
        row.as_ref()
            .map(to_attendance)
            .ok_or_else(|| RepoError::not_found("attendance", &id))
    }

    fn list_for_user(&self, user_id: UserId, range: TimeRange, scope: Scope) -> Result<Vec<Attendance>, RepoError> {
        let rows: Vec<AttendanceRow> = self.connections.read(|connection| {
            scoped(scope)
                .filter(attendance::user_id.eq(user_key(user_id)))
                .filter(attendance::check_in_time.ge(DbTimestamp(range.from)))
                .filter(attendance::check_in_time.lt(DbTimestamp(range.to)))
                .order((attendance::check_in_time.asc(), attendance::id.asc()))
                .select(AttendanceRow::as_select())
                .load(connection)
                .map_err(map_error)
        })?;
        Ok(rows.iter().map(to_attendance).collect())
    }

    fn currently_checked_in(&self) -> Result<Vec<AttendanceWithUser>, RepoError> {
        let rows: Vec<(AttendanceRow, UserRow)> = self.connections.read(|connection| {
            attendance::table
                .inner_join(users::table)
                .filter(attendance::check_out_time.is_null())
                .filter(attendance::deleted_at.is_null())
                .filter(users::deleted_at.is_null())
                .order((attendance::check_in_time.asc(), attendance::id.asc()))
                .select((AttendanceRow::as_select(), UserRow::as_select()))
                .load(connection)
                .map_err(map_error)
        })?;
        rows.iter()
            .map(|(attendance, user)| {
                Ok(AttendanceWithUser {
                    attendance: to_attendance(attendance),
                    user: to_user(user)?,
                })
            })
            .collect()
    }

    fn daily_totals(&self, user_id: UserId, range: TimeRange) -> Result<Vec<DailyTotal>, RepoError> {
        let rows: Vec<DailyRow> = self
            .connections
            .read(|connection| daily_rows(connection, user_id, range))?;
        rows.into_iter()
            .map(|row| {
                let day = NaiveDate::parse_from_str(&row.day, "%Y-%m-%d")
                    .map_err(|error| RepoError::Internal(format!("day {:?} from the database: {error}", row.day)))?;
                Ok(DailyTotal {
                    user_id,
                    day,
                    seconds: row.seconds,
                })
            })
            .collect()
    }

    fn list_with_user(&self, scope: Scope, page: PageRequest) -> Result<OffsetPage<AttendanceWithUser>, RepoError> {
        let offset = i64::try_from(page.offset()).map_err(|_| RepoError::validation("page", "is too large"))?;
        let per_page = usize::try_from(page.per_page()).unwrap_or(usize::MAX);
        let (rows, has_next, total) = self.connections.read(|connection| {
            let mut rows: Vec<(AttendanceRow, UserRow)> = joined_with_users(scope)
                .order((attendance::created_at.asc(), attendance::id.asc()))
                .limit(i64::from(page.per_page()) + 1)
                .offset(offset)
                .select((AttendanceRow::as_select(), UserRow::as_select()))
                .load(connection)
                .map_err(map_error)?;
            let has_next = rows.len() > per_page;
            rows.truncate(per_page);
            let total = count_total(
                connection,
                page,
                PageEnd::of(&rows, has_next, offset),
                |connection| {
                    joined_with_users(scope)
                        .count()
                        .get_result(connection)
                        .map_err(map_error)
                },
                |connection| {
                    Explain(joined_with_users(scope).select(attendance::id))
                        .get_result(connection)
                        .map_err(map_error)
                },
            )?;
            Ok((rows, has_next, total))
        })?;
        let items = rows
            .iter()
            .map(|(attendance, user)| {
                Ok(AttendanceWithUser {
                    attendance: to_attendance(attendance),
                    user: to_user(user)?,
                })
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        Ok(OffsetPage::new(items, page, has_next, total))
    }

    #[tracing::instrument(skip(self))]
    fn soft_delete(&self, id: AttendanceId) -> Result<Attendance, RepoError> {
        let now = DbTimestamp(domain::time::now());
        let deleted = self.connections.with(|connection| {
            diesel::update(
                attendance::table
                    .filter(attendance::id.eq(key(id)))
                    .filter(attendance::deleted_at.is_null()),
            )
            .set((
                attendance::deleted_at.eq(Some(now)),
                attendance::deletion_batch_id.eq(Some(DbUuid(uuid::Uuid::now_v7()))),
                attendance::updated_at.eq(greatest(attendance::updated_at, now)),
            ))
            .execute(connection)
            .map_err(map_error)
        })?;
        if deleted == 0 {
            return Err(RepoError::not_found("attendance", &id));
        }
        self.get(id, Scope::OnlyDeleted)
    }

    #[tracing::instrument(skip(self))]
    fn restore(&self, id: AttendanceId) -> Result<Attendance, RepoError> {
        let now = DbTimestamp(domain::time::now());
        let outcome = self.connections.atomic(|connection| {
            let query = attendance::table
                .inner_join(users::table)
                .filter(attendance::id.eq(key(id)))
                .filter(attendance::deleted_at.is_not_null())
                .select((
                    attendance::deletion_batch_id,
                    users::deletion_batch_id,
                    users::deleted_at,
                ));
            // On PostgreSQL the rows are read FOR SHARE: a restore racing the user's soft delete
            // waits for it and then sees the user deleted, as a check-in does (SQLite runs one
            // write transaction at a time anyway).
            let found: Option<(Option<DbUuid>, Option<DbUuid>, Option<DbTimestamp>)> = match connection {
                DbConnection::Pg(pg) => query.for_share().first(pg).optional()?,
                DbConnection::Sqlite(sqlite) => query.first(sqlite).optional()?,
            };
            let Some((batch, user_batch, user_deleted_at)) = found else {
                return Ok(RestoreOutcome::NotDeleted);
            };
            if batch.is_some() && batch == user_batch {
                return Ok(RestoreOutcome::DeletedWithUser);
            }
            if user_deleted_at.is_some() {
                return Ok(RestoreOutcome::UserDeleted);
            }
            diesel::update(attendance::table.filter(attendance::id.eq(key(id))))
                .set((
                    attendance::deleted_at.eq(None::<DbTimestamp>),
                    attendance::deletion_batch_id.eq(None::<DbUuid>),
                    attendance::updated_at.eq(greatest(attendance::updated_at, now)),
                ))
                .execute(connection)?;
            Ok(RestoreOutcome::Restored)
        })?;
        match outcome {
            RestoreOutcome::Restored => self.get_live(id),
            RestoreOutcome::NotDeleted => Err(RepoError::not_found("deleted attendance", &id)),
            RestoreOutcome::DeletedWithUser => Err(RepoError::Conflict {
                constraint: "deletion_batch_id".into(),
                message: "the record was deleted with its user: restore the user".into(),
            }),
            RestoreOutcome::UserDeleted => Err(RepoError::Conflict {
                constraint: "users.deleted_at".into(),
                message: "the record's user is deleted: restore the user first".into(),
            }),
        }
    }
}

/// Seconds worked per UTC day of check-in over the range, summed by the database over closed,
/// live records with a check-in in the range, each record's duration rounded to the nearest
/// second from exact microseconds on both backends (SQLite reads them from the fixed-width text;
/// its `julianday` would round to milliseconds). The SQL differs by backend (date arithmetic);
/// the values are bound on both.
fn daily_rows(connection: &mut DbConnection, user_id: UserId, range: TimeRange) -> Result<Vec<DailyRow>, RepoError> {
    let (user, from, to) = (user_key(user_id), DbTimestamp(range.from), DbTimestamp(range.to));
    let sql = match connection {
        DbConnection::Pg(_) => {
            "SELECT to_char(check_in_time AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
                    sum(round(extract(epoch FROM check_out_time - check_in_time)))::bigint AS seconds
             FROM attendance
             WHERE user_id = $1 AND check_in_time >= $2 AND check_in_time < $3
               AND check_out_time IS NOT NULL AND deleted_at IS NULL
             GROUP BY 1 ORDER BY 1"
        }
        DbConnection::Sqlite(_) => {
            "SELECT substr(check_in_time, 1, 10) AS day,
                    sum(((CAST(strftime('%s', substr(check_out_time, 1, 19)) AS INTEGER) * 1000000 + CAST(substr(check_out_time, 21, 6) AS INTEGER)) - (CAST(strftime('%s', substr(check_in_time, 1, 19)) AS INTEGER) * 1000000 + CAST(substr(check_in_time, 21, 6) AS INTEGER)) + 500000) / 1000000) AS seconds
             FROM attendance
             WHERE user_id = $1 AND check_in_time >= $2 AND check_in_time < $3
               AND check_out_time IS NOT NULL AND deleted_at IS NULL
             GROUP BY 1 ORDER BY 1"
        }
    };
    diesel::sql_query(sql)
        .bind::<Uuid, _>(user)
        .bind::<Instant, _>(from)
        .bind::<Instant, _>(to)
        .load(connection)
        .map_err(map_error)
}
