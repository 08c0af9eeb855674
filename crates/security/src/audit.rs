//! The audit log from the operator's side: the entries of operator commands (role setup,
//! credential rotation, the audit log's own retention), written in the transaction of what they
//! record, and the retention purge, the only way entries leave the log.
//!
//! The repositories write the entries of application operations (`repo-diesel`); this module
//! writes rows of the same table with its own statement, because operations never depend on the
//! repositories (ARCHITECTURE.md).

use chrono::{DateTime, SubsecRound as _, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use serde_json::{Value, json};

use crate::statements::table_exists;
use crate::{SecurityError, statements};
use database::sql_types::{DbJson, DbTimestamp, DbUuid, Instant, Json, Uuid};
use database::transaction::write_transaction;
use database::{Backend, DbConnection};

/// The actions this crate writes, as `<entity>.<verb>`.
pub mod actions {
    /// The roles and their privileges were set up (`dbctl roles setup`).
    pub const ROLES_SETUP: &str = "roles.setup";
    /// A login of the application role got a new password and became the current one
    /// (`dbctl roles rotate`).
    pub const CREDENTIALS_ROTATE: &str = "credentials.rotate";
    /// The previous login of the application role lost its password after a rotation.
    pub const CREDENTIALS_EXPIRE: &str = "credentials.expire";
    /// Entries older than the retention cutoff were removed (`dbctl audit purge`).
    pub const AUDIT_RETENTION_PURGE: &str = "audit_log.retention_purge";
}

/// Who runs an operator command, and for which change request: written into its audit entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorContext {
    actor: String,
    correlation_id: Option<String>,
}

impl OperatorContext {
    /// The operator `name`: 1 to 100 characters, no whitespace or control characters (the
    /// rules of `domain::Actor::operator`).
    pub fn operator(name: &str) -> Result<Self, SecurityError> {
        let length = name.chars().count();
        if length == 0 || length > 100 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(SecurityError::Invalid(format!(
                "operator name {name:?} must be 1 to 100 characters without whitespace or control characters"
            )));
        }
        Ok(Self {
            actor: format!("operator:{name}"),
            correlation_id: None,
        })
    }

    /// This context for a change request (a ticket, a pipeline run): 1 to 128 visible ASCII
    /// characters (the rules of `domain::CorrelationId`).
    pub fn with_correlation_id(mut self, id: &str) -> Result<Self, SecurityError> {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(SecurityError::Invalid(format!(
                "correlation id {id:?} must be 1 to 128 visible ASCII characters"
            )));
        }
        self.correlation_id = Some(id.to_owned());
        Ok(self)
    }

    /// The actor as the audit log stores it: `operator:<name>`.
    #[must_use]
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The change request, if one was named.
    #[must_use]
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
}

/// One entry of an operator command.
pub(crate) struct Entry<'a> {
    pub action: &'static str,
    pub entity_type: &'a str,
    pub entity_id: &'a str,
    pub old_values: Option<Value>,
    pub new_values: Option<Value>,
}

/// Whether the database has the audit log (a database set up before its first migration does
/// not yet).
pub(crate) fn has_audit_log(connection: &mut DbConnection) -> Result<bool, SecurityError> {
    match connection.backend() {
        Backend::Postgres => table_exists(connection, "audit_log"),
        Backend::Sqlite => statements::fact(
            connection,
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1) AS value",
            &["audit_log"],
        ),
    }
}

/// Writes `entry` on `connection`, inside the caller's transaction.
pub(crate) fn record(
    connection: &mut DbConnection,
    context: &OperatorContext,
    entry: &Entry<'_>,
) -> Result<(), SecurityError> {
    let json = |value: &Option<Value>| value.as_ref().map(|value| DbJson(value.to_string()));
    diesel::sql_query(
        "INSERT INTO audit_log (id, occurred_at, actor, action, entity_type, entity_id, old_values, new_values, correlation_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind::<Uuid, _>(DbUuid(uuid::Uuid::now_v7()))
    .bind::<Instant, _>(DbTimestamp(Utc::now().trunc_subsecs(6)))
    .bind::<Text, _>(context.actor())
    .bind::<Text, _>(entry.action)
    .bind::<Text, _>(entry.entity_type)
    .bind::<Text, _>(entry.entity_id)
    .bind::<Nullable<Json>, _>(json(&entry.old_values))
    .bind::<Nullable<Json>, _>(json(&entry.new_values))
    .bind::<Nullable<Text>, _>(context.correlation_id())
    .execute(connection)
    .map_err(SecurityError::database(format!("writing the audit entry {}", entry.action)))?;
    Ok(())
}

/// What a retention purge of the audit log did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditPurgeReport {
    /// Entries older than this were removed.
    pub before: DateTime<Utc>,
    /// How many.
    pub purged: u64,
}

/// Removes the audit entries that occurred before `before`, and records that it did, in one
/// transaction. Only the table's owner may (on PostgreSQL the application role has no `DELETE`
/// on it, and the table's trigger lets the owner delete only inside this operation: it opens the
/// trigger's gate, `audit_log.purge_before`, for its own transaction). `before` must lie at least
/// a day in the past.
pub fn purge_audit_log(
    connection: &mut DbConnection,
    before: DateTime<Utc>,
    context: &OperatorContext,
) -> Result<AuditPurgeReport, SecurityError> {
    let before = before.trunc_subsecs(6);
    if before > Utc::now() - chrono::TimeDelta::days(1) {
        return Err(SecurityError::Invalid(format!(
            "the cutoff {before} is less than a day ago: the audit log keeps at least a day"
        )));
    }
    write_transaction(connection, |connection| {
        if !has_audit_log(connection)? {
            return Err(SecurityError::Invalid(
                "the database has no audit_log table: apply the migrations first".to_owned(),
            ));
        }
        let cutoff = DbTimestamp(before);
        let opened = match connection.backend() {
            Backend::Postgres => diesel::sql_query("SELECT set_config('audit_log.purge_before', $1, true)")
                .bind::<Text, _>(before.to_rfc3339())
                .execute(connection),
            Backend::Sqlite => diesel::sql_query("INSERT INTO audit_log_purge_gate (purge_before) VALUES ($1)")
                .bind::<Instant, _>(cutoff)
                .execute(connection),
        };
        opened.map_err(SecurityError::database("opening the retention purge's gate"))?;
        let purged = diesel::sql_query("DELETE FROM audit_log WHERE occurred_at < $1")
            .bind::<Instant, _>(cutoff)
            .execute(connection)
            .map_err(SecurityError::database("deleting expired audit entries"))?;
        let closed = match connection.backend() {
            Backend::Postgres => {
                diesel::sql_query("SELECT set_config('audit_log.purge_before', '', true)").execute(connection)
            }
            Backend::Sqlite => diesel::sql_query("DELETE FROM audit_log_purge_gate").execute(connection),
        };
        closed.map_err(SecurityError::database("closing the retention purge's gate"))?;
        let purged = u64::try_from(purged).unwrap_or(u64::MAX);
        record(
            connection,
            context,
            &Entry {
                action: actions::AUDIT_RETENTION_PURGE,
                entity_type: "audit_log",
                entity_id: "audit_log",
                old_values: None,
                new_values: Some(json!({ "purged_before": before.to_rfc3339(), "entries_purged": purged })),
            },
        )?;
        Ok(AuditPurgeReport { before, purged })
    })
}
