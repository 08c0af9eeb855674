//! The audit log: `record` writes the entries of a change on the change's own connection, inside
//! its transaction, and `DieselAuditRepository` reads the trail of one entity a keyset page at a
//! time.

use diesel::prelude::*;
use domain::{Actor, AuditContext, AuditEntity, AuditEntry};
use repo::{AuditRepository, Direction, KeysetPage, KeysetRequest, KeysetStart, RepoError};
use serde_json::Value;

use super::{Connections, expect_direction, keyset_page, map_error};
use crate::expressions::{RowOrder, row_compare};
use crate::models::AuditRow;
use crate::schema::audit_log;
use database::connection::DbConnection;
use database::sql_types::{DbJson, DbTimestamp, DbUuid, Instant, Uuid};

/// Rows per `INSERT` when many entries are written at once (a retention purge): 9 bound values
/// each, under SQLite's limit of 32,766 variables per statement.
const ROWS_PER_INSERT: usize = 1_000;

/// One audited change, before it becomes a row: the actor and correlation id come from the
/// context it is recorded with.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// `domain::audit::actions`.
    pub action: &'static str,
    /// What was changed.
    pub entity: AuditEntity,
    /// The changed fields before, as a JSON object.
    pub old_values: Option<Value>,
    /// The changed fields after, as a JSON object.
    pub new_values: Option<Value>,
    /// When: the same instant the change writes into the row's `updated_at`.
    pub at: DbTimestamp,
}

fn json(value: Option<&Value>) -> Option<DbJson> {
    value.map(|value| DbJson(value.to_string()))
}

fn row(context: &AuditContext, change: &Change) -> AuditRow {
    AuditRow {
        id: DbUuid(uuid::Uuid::now_v7()),
        occurred_at: change.at,
        actor: context.actor().as_str().to_owned(),
        action: change.action.to_owned(),
        entity_type: change.entity.kind.clone(),
        entity_id: change.entity.id.clone(),
        old_values: json(change.old_values.as_ref()),
        new_values: json(change.new_values.as_ref()),
        correlation_id: context.correlation_id().map(|id| id.as_str().to_owned()),
    }
}

/// Writes the entries of `changes` on `connection`: called inside the transaction (or savepoint)
/// of the change itself, so they commit or roll back together.
pub(crate) fn record(connection: &mut DbConnection, context: &AuditContext, changes: &[Change]) -> QueryResult<()> {
    let rows: Vec<AuditRow> = changes.iter().map(|change| row(context, change)).collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        database::on_its_backend!(&mut *connection, |connection| diesel::insert_into(audit_log::table)
            .values(chunk)
            .execute(connection))?;
    }
    Ok(())
}

/// The audit log read through diesel, on PostgreSQL or SQLite.
#[derive(Debug, Clone)]
pub struct DieselAuditRepository<C> {
    connections: C,
}

impl<C: Connections> DieselAuditRepository<C> {
    /// A repository that takes its connections from `connections`.
    pub fn new(connections: C) -> Self {
        Self { connections }
    }
}

/// Identifies a trail for its cursors: a cursor of one entity's trail is refused by another's.
/// The kind is length-prefixed, so that no two entities share a context (`user` / `a|b` and
/// `user|a` / `b` would, joined by `|` alone).
fn trail_context(entity: &AuditEntity) -> String {
    format!("audit|{}:{}|{}", entity.kind.len(), entity.kind, entity.id)
}

fn entry_of(row: AuditRow) -> Result<AuditEntry, RepoError> {
    let parse = |value: Option<DbJson>| {
        value
            .map(|json| serde_json::from_str::<Value>(&json.0))
            .transpose()
            .map_err(|error| RepoError::Internal(format!("an audit entry holds invalid JSON: {error}")))
    };
    Ok(AuditEntry {
        id: row.id.0,
        occurred_at: row.occurred_at.0,
        actor: Actor::from_stored(row.actor),
        action: row.action,
        entity: AuditEntity {
            kind: row.entity_type,
            id: row.entity_id,
        },
        old_values: parse(row.old_values)?,
        new_values: parse(row.new_values)?,
        correlation_id: row.correlation_id,
    })
}

impl<C: Connections> AuditRepository for DieselAuditRepository<C> {
    fn trail(&self, entity: &AuditEntity, page: &KeysetRequest) -> Result<KeysetPage<AuditEntry>, RepoError> {
        let entity = AuditEntity::new(&entity.kind, &entity.id)?;
        let context = trail_context(&entity);
        let (position, backward) = match &page.start {
            KeysetStart::First => (None, false),
            KeysetStart::After(cursor) => (Some(expect_direction(cursor, Direction::Forward, &context)?), false),
            KeysetStart::Before(cursor) => (Some(expect_direction(cursor, Direction::Backward, &context)?), true),
        };
        let mut query = audit_log::table
            .into_boxed()
            .filter(audit_log::entity_type.eq(entity.kind.clone()))
            .filter(audit_log::entity_id.eq(entity.id.clone()));
        if let Some(position) = position {
            let order = if backward { RowOrder::Before } else { RowOrder::After };
            query = query.filter(row_compare(
                (audit_log::occurred_at, audit_log::id),
                order,
                (
                    DbTimestamp(position.created_at).into_sql::<Instant>(),
                    DbUuid(position.id).into_sql::<Uuid>(),
                ),
            ));
        }
        query = if backward {
            query.order((audit_log::occurred_at.desc(), audit_log::id.desc()))
        } else {
            query.order((audit_log::occurred_at.asc(), audit_log::id.asc()))
        };
        let limit = usize::try_from(page.limit()).unwrap_or(usize::MAX);
        let rows: Vec<AuditRow> = self.connections.read(|connection| {
            query
                .limit(i64::from(page.limit()) + 1)
                .select(AuditRow::as_select())
                .load(connection)
                .map_err(map_error)
        })?;
        let more = rows.len() > limit;
        let items = rows
            .into_iter()
            .take(limit)
            .map(entry_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(keyset_page(
            items,
            more,
            backward,
            position.is_some(),
            |entry: &AuditEntry| (entry.occurred_at, entry.id),
            &context,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_entities_share_a_cursor_context() {
        let entity = |kind: &str, id: &str| AuditEntity::new(kind, id).expect("valid");
        assert_ne!(
            trail_context(&entity("user", "a|b")),
            trail_context(&entity("user|a", "b"))
        );
        assert_ne!(
            trail_context(&entity("user", "1:x")),
            trail_context(&entity("user|1", "x"))
        );
    }
}
