//! The queries a backup and its verification share: which tables exist, their exact row counts,
//! the server's version and the applied migrations, on either backend.

use std::collections::BTreeMap;

use database::{Backend, DbConnection};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text};

use crate::BackupError;

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    schema: String,
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

#[derive(QueryableByName)]
struct Major {
    #[diesel(sql_type = Integer)]
    major: i32,
}

/// Quotes an identifier for SQL: double quotes, with any double quote inside doubled. Table
/// names cannot be bound parameters; the names quoted here come from the database's own catalog.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Every table of the database (system catalogs excepted), as `schema.table` on PostgreSQL
/// (`table` alone in `public`) and `table` on SQLite, with the SQL that names it.
fn tables(connection: &mut DbConnection) -> QueryResult<Vec<(String, String)>> {
    let rows: Vec<TableName> = match connection.backend() {
        Backend::Postgres => diesel::sql_query(
            "SELECT schemaname::text AS schema, tablename::text AS name FROM pg_catalog.pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
             AND schemaname NOT LIKE 'pg\\_temp\\_%' AND schemaname NOT LIKE 'pg\\_toast\\_temp\\_%' ORDER BY 1, 2",
        )
        .load(connection)?,
        Backend::Sqlite => diesel::sql_query(
            "SELECT 'main' AS schema, name FROM sqlite_schema WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .load(connection)?,
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let key = if row.schema == "public" || row.schema == "main" {
                row.name.clone()
            } else {
                format!("{}.{}", row.schema, row.name)
            };
            let sql = format!("{}.{}", quote_identifier(&row.schema), quote_identifier(&row.name));
            (key, sql)
        })
        .collect())
}

/// The exact row count of every table. Run inside the snapshot being backed up.
pub(crate) fn row_counts(connection: &mut DbConnection) -> Result<BTreeMap<String, u64>, BackupError> {
    let mut counts = BTreeMap::new();
    for (key, sql) in tables(connection).map_err(BackupError::database("cannot list the tables"))? {
        let count: Count = diesel::sql_query(format!("SELECT count(*) AS count FROM {sql}"))
            .get_result(connection)
            .map_err(|source| BackupError::Database {
                context: format!("cannot count the rows of {key}"),
                source,
            })?;
        counts.insert(key, u64::try_from(count.count).unwrap_or_default());
    }
    Ok(counts)
}

/// Whether the database holds any table at all.
pub(crate) fn has_tables(connection: &mut DbConnection) -> Result<bool, BackupError> {
    Ok(!tables(connection)
        .map_err(BackupError::database("cannot list the tables"))?
        .is_empty())
}

/// The server's version (`15.19`), or SQLite's.
pub(crate) fn server_version(connection: &mut DbConnection) -> Result<String, BackupError> {
    let query = match connection.backend() {
        Backend::Postgres => "SELECT current_setting('server_version') AS version",
        Backend::Sqlite => "SELECT sqlite_version() AS version",
    };
    let version: Version = diesel::sql_query(query)
        .get_result(connection)
        .map_err(BackupError::database("cannot read the server version"))?;
    Ok(version.version)
}

/// The PostgreSQL server's major version (15).
pub(crate) fn server_major(connection: &mut DbConnection) -> Result<u32, BackupError> {
    let major: Major = diesel::sql_query("SELECT current_setting('server_version_num')::int / 10000 AS major")
        .get_result(connection)
        .map_err(BackupError::database("cannot read the server version"))?;
    Ok(u32::try_from(major.major).unwrap_or_default())
}

/// The applied migrations, oldest first, by folder name where this code knows the version. Read
/// only: diesel's own reader creates the history table when it is missing, which a read-only
/// snapshot refuses.
pub(crate) fn applied_migrations(connection: &mut DbConnection) -> Result<Vec<String>, BackupError> {
    let exists = match connection.backend() {
        Backend::Postgres => {
            "SELECT count(*) AS count FROM pg_catalog.pg_tables WHERE tablename = $1 \
                              AND schemaname = current_schema()"
        }
        Backend::Sqlite => "SELECT count(*) AS count FROM sqlite_schema WHERE type = 'table' AND name = ?",
    };
    let exists: Count = diesel::sql_query(exists)
        .bind::<Text, _>(migrator::runner::HISTORY_TABLE)
        .get_result(connection)
        .map_err(BackupError::database("cannot read the migration history"))?;
    if exists.count == 0 {
        return Ok(Vec::new());
    }
    let versions: Vec<Version> = diesel::sql_query(format!(
        "SELECT version FROM {} ORDER BY version",
        quote_identifier(migrator::runner::HISTORY_TABLE)
    ))
    .load(connection)
    .map_err(BackupError::database("cannot read the migration history"))?;
    let set = migrator::MigrationSet::embedded(connection.backend());
    Ok(versions
        .into_iter()
        .map(|row| {
            set.find(&row.version)
                .map_or(row.version, |migration| migration.name().to_owned())
        })
        .collect())
}

/// The schema's digest, from the catalog.
pub(crate) fn schema_digest(connection: &mut DbConnection) -> Result<String, BackupError> {
    Ok(migrator::Catalog::read(connection)
        .map_err(BackupError::database("cannot read the schema catalog"))?
        .digest())
}

#[cfg(test)]
mod tests {
    use super::quote_identifier;

    #[test]
    fn identifiers_are_quoted_whatever_they_hold() {
        for (name, quoted) in [
            ("users", "\"users\""),
            ("we\"ird", "\"we\"\"ird\""),
            ("a\"; DROP TABLE users; --", "\"a\"\"; DROP TABLE users; --\""),
        ] {
            assert_eq!(quote_identifier(name), quoted);
        }
    }
}
