//! Running the statements of role operations: utility statements (`CREATE ROLE`, `GRANT`,
//! `ALTER DEFAULT PRIVILEGES`) take no bound parameters, so their identifiers are either
//! [`crate::RoleName`]s (checked to be plain, then quoted) or quoted by the server itself
//! (`quote_ident`, `format('%I')`) from values bound as parameters. Facts are read with bound
//! parameters only.

use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use crate::{RoleName, SecurityError};
use database::DbConnection;

/// Runs one utility statement; an error names it (these statements hold no secret; the one that
/// sets a password goes through [`run_secret`]).
pub(crate) fn run(connection: &mut DbConnection, statement: &str) -> Result<(), SecurityError> {
    connection
        .batch_execute(statement)
        .map_err(SecurityError::database(statement.to_owned()))
}

/// Runs a statement that holds a secret (a password verifier); an error names `what`, never the
/// statement, and the slow-query log withholds its text.
pub(crate) fn run_secret(connection: &mut DbConnection, statement: &str, what: &str) -> Result<(), SecurityError> {
    database::metrics::statements_with_secrets(|| connection.batch_execute(statement))
        .map_err(SecurityError::database(what))
}

/// A yes-or-no fact read by `sql`, which binds `binds` as `$1`, `$2`, … and answers in a column
/// `value`.
pub(crate) fn fact(connection: &mut DbConnection, sql: &str, binds: &[&str]) -> Result<bool, SecurityError> {
    #[derive(QueryableByName)]
    struct Fact {
        #[diesel(sql_type = Bool)]
        value: bool,
    }
    let mut query = diesel::sql_query(sql).into_boxed();
    for bind in binds {
        query = query.bind::<Text, _>(*bind);
    }
    Ok(query
        .get_result::<Fact>(connection)
        .map_err(SecurityError::database(format!(
            "reading a fact about {}",
            binds.join(", ")
        )))?
        .value)
}

/// Texts answered by `sql` in a column `value`, binding `binds` as `$1`, `$2`, …: statements
/// formatted by the server (`format('%I')`) from the catalog.
pub(crate) fn formatted(
    connection: &mut DbConnection,
    sql: &str,
    binds: &[&str],
) -> Result<Vec<String>, SecurityError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        value: String,
    }
    let mut query = diesel::sql_query(sql).into_boxed();
    for bind in binds {
        query = query.bind::<Text, _>(*bind);
    }
    Ok(query
        .load::<Row>(connection)
        .map_err(SecurityError::database("reading the catalog"))?
        .into_iter()
        .map(|row| row.value)
        .collect())
}

/// Whether a role of this name exists.
pub(crate) fn role_exists(connection: &mut DbConnection, role: &RoleName) -> Result<bool, SecurityError> {
    fact(
        connection,
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS value",
        &[role.as_str()],
    )
}

/// Whether `member` is a member of `group`, directly or through other roles.
pub(crate) fn is_member(connection: &mut DbConnection, member: &str, group: &RoleName) -> Result<bool, SecurityError> {
    // PostgreSQL 16 separates membership from the right to SET ROLE, which is what is needed.
    fact(
        connection,
        "SELECT CASE WHEN current_setting('server_version_num')::int >= 160000 THEN pg_has_role($1, $2, 'SET')
                     ELSE pg_has_role($1, $2, 'MEMBER') END AS value",
        &[member, group.as_str()],
    )
}

/// Whether a table of this name is visible on the connection's search path.
pub(crate) fn table_exists(connection: &mut DbConnection, table: &str) -> Result<bool, SecurityError> {
    fact(connection, "SELECT to_regclass($1) IS NOT NULL AS value", &[table])
}

/// The connection's current database, quoted by the server as an identifier, and as it is.
pub(crate) fn current_database(connection: &mut DbConnection) -> Result<(String, String), SecurityError> {
    #[derive(QueryableByName)]
    struct Names {
        #[diesel(sql_type = Text)]
        quoted: String,
        #[diesel(sql_type = Text)]
        name: String,
    }
    let names: Names =
        diesel::sql_query("SELECT quote_ident(current_database()) AS quoted, current_database()::text AS name")
            .get_result(connection)
            .map_err(SecurityError::database("reading the current database"))?;
    Ok((names.quoted, names.name))
}

/// The role the connection acts as now (`current_user`).
pub(crate) fn current_user(connection: &mut DbConnection) -> Result<String, SecurityError> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }
    Ok(diesel::sql_query("SELECT current_user::text AS name")
        .get_result::<Name>(connection)
        .map_err(SecurityError::database("reading the current user"))?
        .name)
}

/// The attributes of an existing role that matter to least privilege.
#[derive(Debug, QueryableByName)]
#[expect(clippy::struct_excessive_bools, reason = "flags of pg_roles, read as they are")]
pub(crate) struct RoleAttributes {
    /// Any of `SUPERUSER`, `CREATEROLE`, `REPLICATION`, `BYPASSRLS` or `NOINHERIT`.
    #[diesel(sql_type = Bool)]
    pub(crate) privileged: bool,
    #[diesel(sql_type = Bool)]
    pub(crate) create_db: bool,
    #[diesel(sql_type = Bool)]
    pub(crate) can_login: bool,
    /// `CONNECTION LIMIT` other than none: a login that cannot connect is an outage after a
    /// rotation.
    #[diesel(sql_type = Bool)]
    pub(crate) limited: bool,
}

/// What `role` holds of the attributes that matter to least privilege.
pub(crate) fn role_attributes(connection: &mut DbConnection, role: &RoleName) -> Result<RoleAttributes, SecurityError> {
    diesel::sql_query(
        "SELECT (rolsuper OR rolcreaterole OR rolreplication OR rolbypassrls OR NOT rolinherit) AS privileged,
                rolcreatedb AS create_db, rolcanlogin AS can_login, rolconnlimit <> -1 AS limited
         FROM pg_roles WHERE rolname = $1",
    )
    .bind::<Text, _>(role.as_str())
    .get_result(connection)
    .map_err(SecurityError::database(format!("reading the attributes of {role}")))
}

/// The server's version as a number (`server_version_num`: 150020 for 15.20).
pub(crate) fn server_version(connection: &mut DbConnection) -> Result<i32, SecurityError> {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        version: i32,
    }
    Ok(
        diesel::sql_query("SELECT current_setting('server_version_num')::int AS version")
            .get_result::<Version>(connection)
            .map_err(SecurityError::database("reading the server's version"))?
            .version,
    )
}
