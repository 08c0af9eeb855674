//! Write transactions that mean the same on both backends: `BEGIN IMMEDIATE` on SQLite, so that
//! a transaction that reads before it writes waits for the write lock instead of failing at once,
//! and the work's own error kept when the rollback after it fails.

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::result::{Error as DieselError, QueryResult};

use crate::connection::DbConnection;

type Manager = <DbConnection as diesel::Connection>::TransactionManager;

/// Runs `work` in a transaction on `connection`, or in a savepoint when a transaction is already
/// open: committed (released) when it returns `Ok` and the COMMIT succeeds, rolled back when it
/// returns an error.
///
/// - On SQLite a top-level transaction starts with `BEGIN IMMEDIATE`: it takes the write lock
///   first and waits for it up to `busy_timeout`. A deferred `BEGIN` that reads and then writes
///   cannot upgrade its lock while another connection writes, and SQLite then fails at once
///   without calling the busy handler.
/// - A failed COMMIT is the result (diesel rolls back what it left open).
/// - When the rollback after a failed `work` fails too (SQLite rolls a transaction back by itself
///   on a full disk; a PostgreSQL connection may be gone), the work's error is returned, since it
///   is the cause. diesel marks the connection broken (and a pool drops it) unless the driver
///   reported that the transaction had already ended, as SQLite's does.
pub fn write_transaction<T, E>(
    connection: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DieselError> + std::fmt::Display,
{
    begin_write(connection)?;
    match work(connection) {
        Ok(value) => {
            Manager::commit_transaction(connection)?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback_error) = Manager::rollback_transaction(connection) {
                // Expected when SQLite has already rolled the transaction back itself (a full
                // disk: "cannot rollback - no transaction is active") or the connection is gone;
                // the work's error is the one that says why, so this is detail, not a warning.
                tracing::debug!(%rollback_error, %error, "the rollback after a failed transaction failed");
            }
            Err(error)
        }
    }
}

/// `BEGIN IMMEDIATE` on SQLite at the top level; otherwise what diesel begins (`BEGIN`, or a
/// savepoint inside a transaction).
fn begin_write(connection: &mut DbConnection) -> QueryResult<()> {
    if let DbConnection::Sqlite(sqlite) = connection {
        match AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE") {
            // Already in a transaction: nest a savepoint below.
            Err(DieselError::AlreadyInTransaction) => {}
            other => return other,
        }
    }
    Manager::begin_transaction(connection)
}

/// Opens a savepoint inside the open transaction (diesel numbers them by depth).
pub fn begin_savepoint(connection: &mut DbConnection) -> QueryResult<()> {
    Manager::begin_transaction(connection)
}

/// Releases the innermost savepoint, or rolls back to it.
pub fn end_savepoint(connection: &mut DbConnection, keep: bool) -> QueryResult<()> {
    if keep {
        Manager::commit_transaction(connection)
    } else {
        Manager::rollback_transaction(connection)
    }
}
