//! Least privilege on PostgreSQL: one call, [`setup_roles`], makes (or brings back to) the
//! roles the application needs, and nothing more:
//!
//! - the **owner** (`<prefix>_owner`, LOGIN): owns the database, the schema and every object in
//!   it, and runs the migrations (`DATABASE_MIGRATION_URL`);
//! - the **application** role (`<prefix>_app`, NOLOGIN): `SELECT`, `INSERT`, `UPDATE`,
//!   `DELETE` on the tables, `SELECT` only on the migration runner's history tables (the
//!   at-head check reads them), `SELECT` and `INSERT` only on `audit_log`; no DDL, no
//!   `TRUNCATE`, no `CREATE` anywhere;
//! - two **login** roles of the application (`<prefix>_app_blue`, `<prefix>_app_green`, LOGIN,
//!   members of the application role, with no privilege of their own), alternated by
//!   `rotation::rotate_credentials` so that a password changes without a failed call;
//! - a **read-only** role for reporting (`<prefix>_readonly`, LOGIN): `SELECT` on the tables;
//! - a **monitoring** role for health checks (`<prefix>_monitor`, LOGIN): a member of the
//!   built-in `pg_monitor` (server statistics, other sessions' query texts, settings),
//!   `CONNECT`, `USAGE` on the schema and `SELECT` on the migration runner's history tables only
//!   (the migration-state check reads them); no access to the data of `users`, `attendance` or
//!   `audit_log`.
//!
//! `PUBLIC` keeps no privilege on the database or the schema (`REVOKE CREATE ON SCHEMA public
//! FROM PUBLIC` among them: databases upgraded from before PostgreSQL 15 still allow it), and
//! `ALTER DEFAULT PRIVILEGES FOR ROLE <owner>` covers the tables later migrations create:
//! without `FOR ROLE`, default privileges cover only objects created by the role that ran them.
//! Every role is held to `NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS`, and all but the
//! owner to `NOCREATEDB` (the owner verifies backups in a scratch database it creates);
//! memberships that would widen a role are revoked (the monitoring role keeps `pg_monitor`, and
//! only that). Running it again changes nothing that is
//! already right, and reports what it changed.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, Entry, OperatorContext, actions};
use crate::statements::{
    current_database, current_user, fact, formatted, is_member, role_attributes, role_exists, run, run_secret,
    server_version, table_exists,
};
use crate::{RoleName, SecurityError};
use database::DbConnection;
use database::transaction::write_transaction;

/// The longest prefix [`RoleNames::with_prefix`] takes, leaving room for `_app_green`.
pub const MAX_PREFIX_LENGTH: usize = 48;

/// Serialises the setups of one database (`pg_advisory_xact_lock`): "roles" in ASCII.
const SETUP_LOCK: i64 = 0x0072_6f6c_6573;

/// The roles of one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleNames {
    /// Owns the schema and runs the migrations.
    pub owner: RoleName,
    /// Holds the application's privileges; cannot log in.
    pub app: RoleName,
    /// The two logins of the application role, alternated by rotation.
    pub app_logins: [RoleName; 2],
    /// Reads every table, writes none.
    pub readonly: RoleName,
    /// Reads the server's statistics (`pg_monitor`) and the migration history, no table data.
    pub monitor: RoleName,
}

impl RoleNames {
    /// `<prefix>_owner`, `<prefix>_app`, `<prefix>_app_blue`, `<prefix>_app_green`,
    /// `<prefix>_readonly` and `<prefix>_monitor`; the prefix follows the rules of [`RoleName`] and is at most
    /// [`MAX_PREFIX_LENGTH`] characters.
    pub fn with_prefix(prefix: &str) -> Result<Self, SecurityError> {
        if prefix.len() > MAX_PREFIX_LENGTH {
            return Err(SecurityError::Invalid(format!(
                "role prefix {prefix:?} is longer than {MAX_PREFIX_LENGTH} characters"
            )));
        }
        RoleName::parse(prefix)?;
        let name = |suffix: &str| RoleName::parse(&format!("{prefix}_{suffix}"));
        Ok(Self {
            owner: name("owner")?,
            app: name("app")?,
            app_logins: [name("app_blue")?, name("app_green")?],
            readonly: name("readonly")?,
            monitor: name("monitor")?,
        })
    }
}

/// What a setup may set besides roles and privileges.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// A new password for the owner (sent as a SCRAM-SHA-256 verifier, never in clear).
    pub owner_password: Option<SecretString>,
    /// A new password for the read-only role.
    pub readonly_password: Option<SecretString>,
    /// A new password for the monitoring role.
    pub monitor_password: Option<SecretString>,
    /// Who runs the setup, for its audit entry.
    pub context: OperatorContext,
}

/// What a setup did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupReport {
    /// The database set up.
    pub database: String,
    /// The roles.
    pub roles: RoleNames,
    /// Roles created by this run.
    pub created: Vec<String>,
    /// Everything else this run changed, one line each (empty when all was right already,
    /// apart from the grants and default privileges, which are stated again every time).
    pub changed: Vec<String>,
    /// What this run found and left alone: settings of the roles (`ALTER ROLE … SET`).
    pub notes: Vec<String>,
    /// Whether the setup's audit entry was written: `false` only before the first migration,
    /// when the database has no audit log yet.
    pub audited: bool,
}

/// Which kind of role a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Owner,
    Group,
    Login,
    ReadOnly,
    Monitor,
}

/// Sets up the roles of the connection's database, in one transaction (`CREATE ROLE` and the
/// grants are transactional on PostgreSQL: a failure leaves everything as it was). The
/// connection must be a superuser's, or that of a role with `CREATEROLE` and `CREATEDB` that owns
/// the database (giving the database to the owner needs both); such a role is made a member of
/// the owner, so that it may act as the owner.
pub fn setup_roles(
    connection: &mut DbConnection,
    names: &RoleNames,
    options: &SetupOptions,
) -> Result<SetupReport, SecurityError> {
    if !matches!(connection, DbConnection::Pg(_)) {
        return Err(SecurityError::NotPostgres("roles setup"));
    }
    write_transaction(connection, |connection| {
        diesel::RunQueryDsl::execute(
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)").bind::<diesel::sql_types::BigInt, _>(SETUP_LOCK),
            connection,
        )
        .map_err(SecurityError::database("waiting for another roles setup"))?;
        let mut setup = Setup {
            connection,
            names,
            created: Vec::new(),
            changed: Vec::new(),
            notes: Vec::new(),
        };
        setup.check_admin()?;
        let (database_quoted, database) = current_database(setup.connection)?;
        setup.roles()?;
        setup.passwords(options)?;
        setup.database(&database_quoted)?;
        setup.ownership()?;
        // The rest as the owner: its own tables, its own default privileges.
        run(setup.connection, &format!("SET LOCAL ROLE {}", names.owner.quoted()))?;
        migrator::ensure_tables(setup.connection)?;
        setup.grants()?;
        let audited = audit::has_audit_log(setup.connection)?;
        let report = SetupReport {
            database,
            roles: names.clone(),
            created: setup.created,
            changed: setup.changed,
            notes: setup.notes,
            audited,
        };
        if audited {
            audit::record(
                connection,
                &options.context,
                &Entry {
                    action: actions::ROLES_SETUP,
                    entity_type: "database",
                    entity_id: &report.database,
                    old_values: None,
                    new_values: Some(json!({
                        "roles": report.roles,
                        "created": report.created,
                        "changed": report.changed,
                        "owner_password_set": options.owner_password.is_some(),
                        "readonly_password_set": options.readonly_password.is_some(),
                        "monitor_password_set": options.monitor_password.is_some(),
                    })),
                },
            )?;
        }
        run(connection, "RESET ROLE")?;
        Ok(report)
    })
}

struct Setup<'a> {
    connection: &'a mut DbConnection,
    names: &'a RoleNames,
    created: Vec<String>,
    changed: Vec<String>,
    notes: Vec<String>,
}

impl Setup<'_> {
    fn check_admin(&mut self) -> Result<(), SecurityError> {
        let admin = current_user(self.connection)?;
        let allowed = fact(
            self.connection,
            "SELECT (rolsuper OR (rolcreaterole AND rolcreatedb)) AS value FROM pg_roles WHERE rolname = $1",
            &[&admin],
        )?;
        if allowed {
            Ok(())
        } else {
            Err(SecurityError::NotAllowed(format!(
                "roles setup needs a superuser, or a role with CREATEROLE and CREATEDB that owns the database \
                 (giving the database to its owner role needs both), and {admin} is neither: connect as one in \
                 DATABASE_URL"
            )))
        }
    }

    fn roles(&mut self) -> Result<(), SecurityError> {
        let names = self.names.clone();
        let kinds = [
            (&names.owner, Kind::Owner),
            (&names.app, Kind::Group),
            (&names.app_logins[0], Kind::Login),
            (&names.app_logins[1], Kind::Login),
            (&names.readonly, Kind::ReadOnly),
            (&names.monitor, Kind::Monitor),
        ];
        for (role, kind) in kinds {
            let login = kind != Kind::Group;
            // The owner may create databases: verifying a backup (also the one `dbctl migrate`
            // takes first) restores it into a scratch database it creates and drops.
            let create_db = kind == Kind::Owner;
            let attributes = format!(
                "{} INHERIT NOSUPERUSER {} NOCREATEROLE NOREPLICATION NOBYPASSRLS",
                if login { "LOGIN" } else { "NOLOGIN" },
                if create_db { "CREATEDB" } else { "NOCREATEDB" }
            );
            if role_exists(self.connection, role)? {
                // Only a role that differs from what it should be is altered (and reported).
                let now = role_attributes(self.connection, role)?;
                if now.privileged || now.create_db != create_db || now.can_login != login || now.limited {
                    run(
                        self.connection,
                        &format!("ALTER ROLE {} WITH {attributes} CONNECTION LIMIT -1", role.quoted()),
                    )?;
                    self.changed
                        .push(format!("role {role} set to {attributes} CONNECTION LIMIT -1"));
                }
            } else {
                run(
                    self.connection,
                    &format!("CREATE ROLE {} WITH {attributes}", role.quoted()),
                )?;
                self.created.push(role.to_string());
            }
        }
        self.memberships()
    }

    /// The six managed roles, comma-separated (role names hold no comma).
    fn managed(&self) -> String {
        let names = self.names;
        [
            &names.owner,
            &names.app,
            &names.app_logins[0],
            &names.app_logins[1],
            &names.readonly,
            &names.monitor,
        ]
        .map(RoleName::as_str)
        .join(",")
    }

    /// The logins are members of the application role, and the monitoring role of `pg_monitor`,
    /// without `ADMIN OPTION`; the administrator running this is a member of the owner (to act as
    /// the owner); no other membership touches a managed role, in either direction.
    fn memberships(&mut self) -> Result<(), SecurityError> {
        let names = self.names.clone();
        let admin = current_user(self.connection)?;
        let managed = self.managed();
        let logins = format!("{},{}", names.app_logins[0], names.app_logins[1]);
        // The administrator running this may be a member of any of them (PostgreSQL 16 makes a
        // CREATEROLE role a member of every role it creates); nobody else but the logins, and
        // the monitoring role in pg_monitor.
        let unwanted = formatted(
            self.connection,
            "SELECT format('REVOKE %I FROM %I CASCADE', g.rolname, m.rolname) AS value
             FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
             WHERE (g.rolname = ANY (string_to_array($1, ',')) OR m.rolname = ANY (string_to_array($1, ',')))
               AND NOT (g.rolname = $2 AND m.rolname = ANY (string_to_array($3, ',')))
               AND NOT (g.rolname = 'pg_monitor' AND m.rolname = $5)
               AND m.rolname <> $4
             ORDER BY 1",
            &[&managed, names.app.as_str(), &logins, &admin, names.monitor.as_str()],
        )?;
        let admin_options = formatted(
            self.connection,
            "SELECT format('REVOKE ADMIN OPTION FOR %I FROM %I CASCADE', g.rolname, m.rolname) AS value
             FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
             WHERE am.admin_option
               AND ((g.rolname = $1 AND m.rolname = ANY (string_to_array($2, ',')))
                    OR (g.rolname = 'pg_monitor' AND m.rolname = $3))
             ORDER BY 1",
            &[names.app.as_str(), &logins, names.monitor.as_str()],
        )?;
        for statement in unwanted.into_iter().chain(admin_options) {
            run(self.connection, &statement)?;
            self.changed.push(statement);
        }
        for login in &names.app_logins {
            let member = fact(
                self.connection,
                "SELECT EXISTS (SELECT 1 FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid
                                JOIN pg_roles m ON m.oid = am.member
                                WHERE g.rolname = $1 AND m.rolname = $2) AS value",
                &[names.app.as_str(), login.as_str()],
            )?;
            if !member {
                run(
                    self.connection,
                    &format!("GRANT {} TO {}", names.app.quoted(), login.quoted()),
                )?;
                self.changed.push(format!("role {login} is a member of {}", names.app));
            }
        }
        let monitoring = fact(
            self.connection,
            "SELECT EXISTS (SELECT 1 FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid
                            JOIN pg_roles m ON m.oid = am.member
                            WHERE g.rolname = 'pg_monitor' AND m.rolname = $1) AS value",
            &[names.monitor.as_str()],
        )?;
        if !monitoring {
            run(
                self.connection,
                &format!("GRANT pg_monitor TO {}", names.monitor.quoted()),
            )?;
            self.changed
                .push(format!("role {} is a member of pg_monitor", names.monitor));
        }
        // A CREATEROLE administrator acts as the owner below (SET ROLE): it must be allowed to.
        if !is_member(self.connection, &admin, &names.owner)? {
            let with_set = if server_version(self.connection)? >= 160_000 {
                " WITH SET TRUE"
            } else {
                ""
            };
            run(
                self.connection,
                &format!("GRANT {} TO CURRENT_USER{with_set}", names.owner.quoted()),
            )?;
            self.changed
                .push(format!("{admin} is a member of {} to act as the owner", names.owner));
        }
        // A search_path on a role would point the repositories' unqualified names at another
        // schema (one of its own, with look-alike tables): it goes. Other settings of the roles
        // are kept, and said (`lc_messages` may be wanted).
        for statement in formatted(
            self.connection,
            "SELECT format('ALTER ROLE %I %s RESET search_path', r.rolname,
                           CASE WHEN s.setdatabase = 0 THEN '' ELSE format('IN DATABASE %I', d.datname) END) AS value
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
             LEFT JOIN pg_database d ON d.oid = s.setdatabase
             WHERE r.rolname = ANY (string_to_array($1, ','))
               AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE 'search\\_path=%')
             ORDER BY 1",
            &[&managed],
        )? {
            run(self.connection, &statement)?;
            self.changed.push(statement);
        }
        self.notes = formatted(
            self.connection,
            "SELECT format('role %s has settings %s%s: kept (ALTER ROLE … RESET ALL removes them)', r.rolname,
                           array_to_string(s.setconfig, ', '),
                           CASE WHEN s.setdatabase = 0 THEN '' ELSE ' in database ' || d.datname END) AS value
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
             LEFT JOIN pg_database d ON d.oid = s.setdatabase
             WHERE r.rolname = ANY (string_to_array($1, ',')) ORDER BY 1",
            &[&managed],
        )?;
        Ok(())
    }

    fn passwords(&mut self, options: &SetupOptions) -> Result<(), SecurityError> {
        for (role, password) in [
            (&self.names.owner, &options.owner_password),
            (&self.names.readonly, &options.readonly_password),
            (&self.names.monitor, &options.monitor_password),
        ] {
            if let Some(password) = password {
                set_password(self.connection, role, password)?;
                self.changed.push(format!("role {role} has a new password"));
            }
        }
        Ok(())
    }

    fn database(&mut self, database: &str) -> Result<(), SecurityError> {
        let owner = &self.names.owner;
        let database_owned = fact(
            self.connection,
            "SELECT pg_get_userbyid(datdba)::text = $1 AS value FROM pg_database WHERE datname = current_database()",
            &[owner.as_str()],
        )?;
        if !database_owned {
            run(
                self.connection,
                &format!("ALTER DATABASE {database} OWNER TO {}", owner.quoted()),
            )?;
            self.changed.push(format!("database {database} is owned by {owner}"));
        }
        let public_schema_owned = fact(
            self.connection,
            "SELECT pg_get_userbyid(nspowner)::text = $1 AS value FROM pg_namespace WHERE nspname = 'public'",
            &[owner.as_str()],
        )?;
        if !public_schema_owned {
            run(
                self.connection,
                &format!("ALTER SCHEMA public OWNER TO {}", owner.quoted()),
            )?;
            self.changed.push(format!("schema public is owned by {owner}"));
        }
        // Other roles keep at most CONNECT on the database and nothing on the schema.
        let managed = self.managed();
        let outsiders = formatted(
            self.connection,
            "SELECT DISTINCT format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM %I CASCADE', d.datname,
                           pg_get_userbyid(x.grantee)) AS value
             FROM pg_database d, aclexplode(d.datacl) x
             WHERE d.datname = current_database() AND x.privilege_type <> 'CONNECT'
               AND x.grantee NOT IN (0, d.datdba) AND NOT pg_get_userbyid(x.grantee) = ANY (string_to_array($1, ','))
             UNION
             SELECT DISTINCT format('REVOKE ALL ON SCHEMA public FROM %I CASCADE', pg_get_userbyid(x.grantee))
             FROM pg_namespace n, aclexplode(n.nspacl) x
             WHERE n.nspname = 'public' AND x.grantee NOT IN (0, n.nspowner)
               AND NOT pg_get_userbyid(x.grantee) = ANY (string_to_array($1, ','))
             ORDER BY 1",
            &[&managed],
        )?;
        for statement in outsiders {
            run(self.connection, &statement)?;
            self.changed.push(statement);
        }
        let (owner, app, readonly) = (owner.quoted(), self.names.app.quoted(), self.names.readonly.quoted());
        let monitor = self.names.monitor.quoted();
        let all = format!(
            "{app}, {readonly}, {monitor}, {}, {}",
            self.names.app_logins[0].quoted(),
            self.names.app_logins[1].quoted()
        );
        // The managed roles' grants on the database, the schema and in the owner's default
        // privileges are stated anew: everything revoked, then what each needs granted.
        let mut statements = vec![
            format!("REVOKE ALL ON DATABASE {database} FROM PUBLIC"),
            format!("REVOKE ALL ON DATABASE {database} FROM {all} CASCADE"),
            format!("GRANT CONNECT ON DATABASE {database} TO {app}, {readonly}, {monitor}"),
            "REVOKE ALL ON SCHEMA public FROM PUBLIC".to_owned(),
            format!("REVOKE ALL ON SCHEMA public FROM {all} CASCADE"),
            format!("GRANT USAGE ON SCHEMA public TO {app}, {readonly}, {monitor}"),
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} REVOKE ALL ON SCHEMAS FROM {all}"),
        ];
        for kind in ["TABLES", "SEQUENCES", "FUNCTIONS", "TYPES"] {
            statements.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} REVOKE ALL ON {kind} FROM {all}"
            ));
            statements.push(format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public REVOKE ALL ON {kind} FROM {all}"
            ));
        }
        for statement in statements {
            run(self.connection, &statement)?;
        }
        for statement in [
            // The tables the owner creates from now on, whoever runs this. Without FOR ROLE,
            // default privileges cover only objects created by the role that ran the statement
            // (here the administrator), the most common mistake of a migrator/application split.
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}"
            ),
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app}"
            ),
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO {readonly}"),
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON SEQUENCES TO {readonly}"
            ),
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC"),
        ] {
            run(self.connection, &statement)?;
        }
        Ok(())
    }

    /// Every table, view, sequence, function and the `extensions` schema the migrations made
    /// belongs to the owner (a database migrated before the roles existed belongs to whoever
    /// migrated it). Objects of extensions and sequences owned by a column move with theirs.
    fn ownership(&mut self) -> Result<(), SecurityError> {
        let statements = formatted(
            self.connection,
            "SELECT format('ALTER %s %s OWNER TO %I', kind, name, $1) AS value FROM (
                SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
                       format('%I.%I', n.nspname, c.relname) AS name
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname IN ('public', 'extensions') AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                  AND pg_get_userbyid(c.relowner) <> $1
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                  AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
                UNION ALL
                SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                       p.oid::regprocedure::text
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname IN ('public', 'extensions') AND pg_get_userbyid(p.proowner) <> $1
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                  AND d.objid = p.oid AND d.deptype = 'e')
                UNION ALL
                SELECT 'SCHEMA', quote_ident(nspname) FROM pg_namespace
                WHERE nspname = 'extensions' AND pg_get_userbyid(nspowner) <> $1
             ) objects ORDER BY 1",
            &[self.names.owner.as_str()],
        )?;
        for statement in statements {
            run(self.connection, &statement)?;
            self.changed.push(statement);
        }
        Ok(())
    }

    /// Run as the owner: grants to roles other than the managed ones on the schema's tables,
    /// sequences, columns and functions, and in the owner's default privileges, are revoked
    /// (and reported), as are column grants (the read-only role's own are made again below).
    fn outsiders(&mut self) -> Result<(), SecurityError> {
        let allowed = format!("{},{}", self.names.app, self.names.readonly);
        // The monitoring role's grants on tables are stated anew in grants() (only the history).
        let allowed_on_tables = format!("{allowed},{}", self.names.monitor);
        let readonly = self.names.readonly.as_str();
        let queries: [(&str, Vec<&str>); 4] = [
            (
                "SELECT DISTINCT format('REVOKE ALL ON %s %I.%I FROM %I CASCADE',
                           CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname,
                           pg_get_userbyid(x.grantee)) AS value
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) x
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                   AND x.grantee NOT IN (0, c.relowner)
                   AND NOT pg_get_userbyid(x.grantee) = ANY (string_to_array($1, ','))",
                vec![allowed_on_tables.as_str()],
            ),
            (
                // The read-only role's SELECT on the columns of users but the password hash is
                // made again in grants(); every other column grant goes.
                "SELECT DISTINCT format('REVOKE ALL (%I) ON %I.%I FROM %s CASCADE', a.attname, n.nspname, c.relname,
                           CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END) AS value
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(a.attacl) x
                 WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped AND x.grantee <> c.relowner
                   AND NOT (pg_get_userbyid(x.grantee) = $1 AND c.relname = 'users' AND x.privilege_type = 'SELECT'
                            AND a.attname <> 'hashed_password')",
                vec![readonly],
            ),
            (
                "SELECT DISTINCT format('REVOKE ALL ON ROUTINE %s FROM %I CASCADE', p.oid::regprocedure,
                           pg_get_userbyid(x.grantee)) AS value
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) x
                 WHERE n.nspname = 'public' AND x.grantee NOT IN (0, p.proowner) AND $1 <> ''",
                vec![allowed.as_str()],
            ),
            (
                "SELECT DISTINCT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I %s REVOKE ALL ON %s FROM %s',
                           pg_get_userbyid(d.defaclrole),
                           CASE WHEN d.defaclnamespace = 0 THEN ''
                                ELSE format('IN SCHEMA %I', (SELECT nspname FROM pg_namespace WHERE oid = d.defaclnamespace)) END,
                           CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END,
                           CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END) AS value
                 FROM pg_default_acl d, aclexplode(d.defaclacl) x
                 WHERE pg_get_userbyid(d.defaclrole) = $2 AND x.grantee <> d.defaclrole
                   AND NOT (x.grantee <> 0 AND pg_get_userbyid(x.grantee) = ANY (string_to_array($1, ',')))
                   AND NOT (x.grantee = 0 AND d.defaclobjtype = 'T')",
                vec![allowed.as_str(), self.names.owner.as_str()],
            ),
        ];
        for (sql, binds) in queries {
            for statement in formatted(self.connection, sql, &binds)? {
                run(self.connection, &statement)?;
                self.changed.push(statement);
            }
        }
        Ok(())
    }

    /// Run as the owner: the privileges on today's tables.
    fn grants(&mut self) -> Result<(), SecurityError> {
        self.outsiders()?;
        let app = self.names.app.quoted();
        let readonly = self.names.readonly.quoted();
        let monitor = self.names.monitor.quoted();
        let logins = format!(
            "{}, {}",
            self.names.app_logins[0].quoted(),
            self.names.app_logins[1].quoted()
        );
        let mut statements = vec![
            // Nobody but these roles, and nothing wider than each needs.
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC CASCADE".to_owned(),
            "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC CASCADE".to_owned(),
            "REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA public FROM PUBLIC".to_owned(),
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {logins}, {readonly}, {app}, {monitor} CASCADE"),
            format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {logins}, {readonly}, {app}, {monitor} CASCADE"),
            format!("REVOKE ALL ON ALL ROUTINES IN SCHEMA public FROM {logins}, {readonly}, {app}, {monitor} CASCADE"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}"),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {readonly}"),
            format!("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {readonly}"),
            // The runner's history: read by the at-head check, written only by migrations.
            format!(
                "REVOKE INSERT, UPDATE, DELETE ON {}, {} FROM {app} CASCADE",
                migrator::HISTORY_TABLE,
                migrator::STATE_TABLE
            ),
            // Monitoring reads the history (is the database at head?), and no table's data.
            format!(
                "GRANT SELECT ON {}, {} TO {monitor}",
                migrator::HISTORY_TABLE,
                migrator::STATE_TABLE
            ),
        ];
        if audit::has_audit_log(self.connection)? {
            // Append-only: the application may write entries and read them, nothing else.
            statements.push(format!("REVOKE UPDATE, DELETE ON audit_log FROM {app} CASCADE"));
        }
        if table_exists(self.connection, "users")? {
            // Reporting has no use for password hashes: every column of users but that one.
            statements.push(format!("REVOKE SELECT ON users FROM {readonly} CASCADE"));
            statements.extend(formatted(
                self.connection,
                "SELECT format('GRANT SELECT (%s) ON users TO %I',
                               string_agg(quote_ident(attname::text), ', ' ORDER BY attnum), $1) AS value
                 FROM pg_attribute
                 WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'hashed_password'",
                &[self.names.readonly.as_str()],
            )?);
        }
        for statement in statements {
            run(self.connection, &statement)?;
        }
        Ok(())
    }
}

/// Sets `role`'s password to `password`, sent as the SCRAM-SHA-256 verifier computed here (as
/// psql's `\password` does), so the clear password never reaches the server or its logs. Not
/// audited: [`setup_roles`] and `rotate_credentials` record the passwords they set.
pub fn set_password(
    connection: &mut DbConnection,
    role: &RoleName,
    password: &SecretString,
) -> Result<(), SecurityError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
    // The verifier is base64 and `SCRAM-SHA-256$<iterations>:<salt>$<key>:<key>`: no quote to
    // escape, checked before it is put between quotes.
    if !verifier
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"+/=:$-".contains(&byte))
    {
        return Err(SecurityError::Invalid(
            "the password verifier has an unexpected form".to_owned(),
        ));
    }
    run_secret(
        connection,
        &format!(
            "ALTER ROLE {} WITH PASSWORD '{verifier}' VALID UNTIL 'infinity'",
            role.quoted()
        ),
        &format!("setting the password of {role}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_one_prefix() {
        let names = RoleNames::with_prefix("attendance").expect("valid");
        assert_eq!(names.owner.as_str(), "attendance_owner");
        assert_eq!(names.app.as_str(), "attendance_app");
        assert_eq!(names.app_logins[0].as_str(), "attendance_app_blue");
        assert_eq!(names.app_logins[1].as_str(), "attendance_app_green");
        assert_eq!(names.readonly.as_str(), "attendance_readonly");
        assert_eq!(names.monitor.as_str(), "attendance_monitor");
        assert!(RoleNames::with_prefix("Attendance").is_err());
        assert!(RoleNames::with_prefix(&"a".repeat(49)).is_err());
        assert!(RoleNames::with_prefix(&"a".repeat(48)).is_ok());
    }
}
