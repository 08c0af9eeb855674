//! Reads the live schema from the database's own catalog, on both backends, into one shape.
//!
//! Tests use it to prove that every `down.sql` restores exactly the schema before its `up.sql`,
//! that the two migration trees build the same logical schema, and that names follow the
//! convention; the start-up runner uses it to verify a schema before recording a baseline.
//! Bookkeeping objects, whose names start with `__` (diesel's history table, the runner's state
//! table, the baseline probe schema), are left out. PostgreSQL definitions are read with the
//! current schema's name removed, so the same schema built under another name compares equal.
//! SQLite shadow tables (the storage of a virtual table such as FTS5's) are listed as objects
//! only: their layout belongs to the virtual table's module.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text};

use database::DbConnection;

/// Objects whose names start with this belong to the migration runner, not the schema.
const BOOKKEEPING_PREFIX: &str = "\\_\\_%";

/// The schema of one database. Lists are sorted, so two catalogs compare with `==`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Catalog {
    /// Tables with their columns.
    pub tables: Vec<Table>,
    /// Every index, including those behind primary keys.
    pub indexes: Vec<Index>,
    /// Primary key, foreign key, check and unique constraints.
    pub constraints: Vec<Constraint>,
    /// Triggers, with their full definitions.
    pub triggers: Vec<Trigger>,
    /// PostgreSQL functions with their full definitions (none on SQLite).
    pub routines: Vec<Routine>,
    /// Every other schema object as "kind name" (sequences, views, types, extensions, …), so a
    /// `down.sql` that forgets one is caught.
    pub objects: Vec<String>,
}

/// A table and its columns in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Table {
    /// The table's name.
    pub name: String,
    /// `COMMENT ON TABLE` (PostgreSQL).
    pub comment: Option<String>,
    /// The `CREATE TABLE` statement as stored (SQLite).
    pub definition: Option<String>,
    /// Columns in declaration order.
    pub columns: Vec<Column>,
}

/// A column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The declared type as the catalog reports it (`uuid`, `timestamp with time zone`, `BLOB`, …).
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The default expression, if any.
    pub default: Option<String>,
    /// `COMMENT ON COLUMN` (PostgreSQL).
    pub comment: Option<String>,
}

/// An index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Index {
    /// The index's table.
    pub table: String,
    /// The index's name.
    pub name: String,
    /// Key columns (or expressions) in order.
    pub columns: Vec<String>,
    /// Whether it is unique.
    pub unique: bool,
    /// Whether it backs the primary key.
    pub primary: bool,
    /// The WHERE clause of a partial index, as the catalog prints it.
    pub predicate: Option<String>,
    /// The full definition, as the catalog prints it.
    pub definition: String,
}

/// What a constraint enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ConstraintKind {
    /// PRIMARY KEY.
    PrimaryKey,
    /// FOREIGN KEY.
    ForeignKey,
    /// CHECK.
    Check,
    /// UNIQUE (as a constraint, not a unique index).
    Unique,
    /// Anything else (an exclusion constraint on PostgreSQL).
    Other,
}

/// A constraint. SQLite keeps constraint names only in the `CREATE TABLE` text, which is where
/// they are read from; a constraint declared without a name has an empty `name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Constraint {
    /// The constrained table.
    pub table: String,
    /// What it enforces.
    pub kind: ConstraintKind,
    /// The constraint's name; empty when it was declared without one.
    pub name: String,
    /// The constrained columns in order (empty for checks).
    pub columns: Vec<String>,
    /// For a foreign key: the referenced table.
    pub references: Option<String>,
    /// For a foreign key: `CASCADE`, `RESTRICT`, `SET NULL`, `SET DEFAULT` or `NO ACTION`.
    pub on_delete: Option<String>,
    /// PostgreSQL: `pg_get_constraintdef`. SQLite: a check's expression as written (the rest is
    /// in the table's definition).
    pub definition: String,
}

/// A trigger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Trigger {
    /// The trigger's table.
    pub table: String,
    /// The trigger's name.
    pub name: String,
    /// The full definition.
    pub definition: String,
}

/// A PostgreSQL function or procedure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Routine {
    /// The routine's name.
    pub name: String,
    /// `pg_get_functiondef`.
    pub definition: String,
    /// `COMMENT ON FUNCTION`.
    pub comment: Option<String>,
}

impl Catalog {
    /// Reads the schema of the connection's database (PostgreSQL: its current schema).
    pub fn read(connection: &mut DbConnection) -> QueryResult<Self> {
        let mut catalog = match connection {
            DbConnection::Pg(pg) => postgres::read(pg)?,
            DbConnection::Sqlite(sqlite) => sqlite::read(sqlite)?,
        };
        catalog.tables.sort();
        catalog.indexes.sort();
        catalog.constraints.sort();
        catalog.triggers.sort();
        catalog.routines.sort();
        catalog.objects.sort();
        Ok(catalog)
    }

    /// The table named `name`, if it exists.
    #[must_use]
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|table| table.name == name)
    }

    /// A SHA-256 digest (lower-case hex) of the whole catalog: two databases with the same schema
    /// have the same digest. Backups record it, and a verification compares the restored copy's.
    #[must_use]
    pub fn digest(&self) -> String {
        use sha2::Digest as _;
        let canonical = serde_json::to_vec(self).expect("a catalog is plain data and always serialises");
        format!("{:x}", sha2::Sha256::digest(&canonical))
    }
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

mod postgres {
    use diesel::pg::PgConnection;

    use super::{
        Bool, Catalog, Column, Constraint, ConstraintKind, Index, Line, Nullable, QueryResult, QueryableByName,
        Routine, RunQueryDsl, Table, Text, Trigger,
    };

    #[derive(QueryableByName)]
    struct TableRow {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Nullable<Text>)]
        comment: Option<String>,
    }

    #[derive(QueryableByName)]
    struct ColumnRow {
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        data_type: String,
        #[diesel(sql_type = Bool)]
        nullable: bool,
        #[diesel(sql_type = Nullable<Text>)]
        default_value: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        comment: Option<String>,
    }

    #[derive(QueryableByName)]
    struct IndexRow {
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        columns: String,
        #[diesel(sql_type = Bool)]
        is_unique: bool,
        #[diesel(sql_type = Bool)]
        is_primary: bool,
        #[diesel(sql_type = Nullable<Text>)]
        predicate: Option<String>,
        #[diesel(sql_type = Text)]
        definition: String,
    }

    #[derive(QueryableByName)]
    struct ConstraintRow {
        #[diesel(sql_type = Text)]
        definition: String,
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        columns: String,
        #[diesel(sql_type = Nullable<Text>)]
        referenced_table: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        on_delete: Option<String>,
    }

    #[derive(QueryableByName)]
    struct TriggerRow {
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        definition: String,
    }

    #[derive(QueryableByName)]
    struct RoutineRow {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        definition: String,
        #[diesel(sql_type = Nullable<Text>)]
        comment: Option<String>,
    }

    pub(super) fn read(connection: &mut PgConnection) -> QueryResult<Catalog> {
        let schema = diesel::sql_query("SELECT current_schema()::text AS line")
            .get_result::<Line>(connection)?
            .line;
        let unqualify = |definition: String| definition.replace(&format!("{schema}."), "");
        let mut catalog = Catalog {
            tables: tables(connection)?,
            indexes: indexes(connection)?,
            constraints: constraints(connection)?,
            triggers: triggers(connection)?,
            routines: routines(connection)?,
            objects: objects(connection)?,
        };
        for index in &mut catalog.indexes {
            index.definition = unqualify(std::mem::take(&mut index.definition));
        }
        for trigger in &mut catalog.triggers {
            trigger.definition = unqualify(std::mem::take(&mut trigger.definition));
        }
        for routine in &mut catalog.routines {
            routine.definition = unqualify(std::mem::take(&mut routine.definition));
        }
        Ok(catalog)
    }

    fn tables(connection: &mut PgConnection) -> QueryResult<Vec<Table>> {
        let bookkeeping = super::BOOKKEEPING_PREFIX;
        let table_rows: Vec<TableRow> = diesel::sql_query(
            "SELECT c.relname::text AS name, obj_description(c.oid, 'pg_class') AS comment
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE $1",
        )
        .bind::<Text, _>(bookkeeping)
        .load(connection)?;
        let column_rows: Vec<ColumnRow> = diesel::sql_query(
            "SELECT c.relname::text AS table_name, a.attname::text AS name,
                    format_type(a.atttypid, a.atttypmod)
                        || CASE WHEN a.attcollation <> ty.typcollation THEN ' COLLATE ' || co.collname::text ELSE '' END
                        AS data_type,
                    NOT a.attnotnull AS nullable,
                    pg_get_expr(d.adbin, d.adrelid) AS default_value,
                    col_description(c.oid, a.attnum) AS comment
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_type ty ON ty.oid = a.atttypid
             LEFT JOIN pg_collation co ON co.oid = a.attcollation
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname NOT LIKE $1
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum",
        )
        .bind::<Text, _>(bookkeeping)
        .load(connection)?;
        Ok(table_rows
            .into_iter()
            .map(|row| Table {
                columns: column_rows
                    .iter()
                    .filter(|column| column.table_name == row.name)
                    .map(|column| Column {
                        name: column.name.clone(),
                        data_type: column.data_type.clone(),
                        nullable: column.nullable,
                        default: column.default_value.clone(),
                        comment: column.comment.clone(),
                    })
                    .collect(),
                name: row.name,
                comment: row.comment,
                definition: None,
            })
            .collect())
    }

    fn indexes(connection: &mut PgConnection) -> QueryResult<Vec<Index>> {
        Ok(diesel::sql_query(
            "SELECT t.relname::text AS table_name, i.relname::text AS name,
                    (SELECT string_agg(pg_get_indexdef(ix.indexrelid, k, true), ',' ORDER BY k)
                     FROM generate_series(1, ix.indnkeyatts) AS k) AS columns,
                    ix.indisunique AS is_unique, ix.indisprimary AS is_primary,
                    pg_get_expr(ix.indpred, ix.indrelid) AS predicate,
                    pg_get_indexdef(ix.indexrelid) AS definition
             FROM pg_index ix
             JOIN pg_class i ON i.oid = ix.indexrelid
             JOIN pg_class t ON t.oid = ix.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = current_schema() AND t.relname NOT LIKE $1",
        )
        .bind::<Text, _>(super::BOOKKEEPING_PREFIX)
        .load::<IndexRow>(connection)?
        .into_iter()
        .map(|row| Index {
            table: row.table_name,
            name: row.name,
            columns: split(&row.columns),
            unique: row.is_unique,
            primary: row.is_primary,
            predicate: row.predicate,
            definition: row.definition,
        })
        .collect())
    }

    fn constraints(connection: &mut PgConnection) -> QueryResult<Vec<Constraint>> {
        Ok(diesel::sql_query(
            "SELECT t.relname::text AS table_name, con.conname::text AS name, con.contype::text AS kind,
                    coalesce((SELECT string_agg(a.attname::text, ',' ORDER BY k.ord)
                              FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum),
                             '') AS columns,
                    r.relname::text AS referenced_table,
                    CASE con.contype WHEN 'f' THEN
                        CASE con.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'r' THEN 'RESTRICT'
                             WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' ELSE 'NO ACTION' END
                    END AS on_delete,
                    pg_get_constraintdef(con.oid)
                        || coalesce(' COMMENT ' || obj_description(con.oid, 'pg_constraint'), '') AS definition
             FROM pg_constraint con
             JOIN pg_class t ON t.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             LEFT JOIN pg_class r ON r.oid = con.confrelid
             WHERE n.nspname = current_schema() AND t.relname NOT LIKE $1 AND con.contype IN ('p', 'f', 'c', 'u', 'x')",
        )
        .bind::<Text, _>(super::BOOKKEEPING_PREFIX)
        .load::<ConstraintRow>(connection)?
        .into_iter()
        .map(|row| Constraint {
            table: row.table_name,
            kind: match row.kind.as_str() {
                "p" => ConstraintKind::PrimaryKey,
                "f" => ConstraintKind::ForeignKey,
                "c" => ConstraintKind::Check,
                "u" => ConstraintKind::Unique,
                _ => ConstraintKind::Other,
            },
            name: row.name,
            columns: if row.kind == "c" {
                Vec::new()
            } else {
                split(&row.columns)
            },
            references: row.referenced_table,
            on_delete: row.on_delete,
            definition: row.definition,
        })
        .collect())
    }

    fn triggers(connection: &mut PgConnection) -> QueryResult<Vec<Trigger>> {
        Ok(diesel::sql_query(
            "SELECT t.relname::text AS table_name, tg.tgname::text AS name,
                    pg_get_triggerdef(tg.oid) || ' ENABLED ' || tg.tgenabled::text
                        || coalesce(' COMMENT ' || obj_description(tg.oid, 'pg_trigger'), '') AS definition
             FROM pg_trigger tg
             JOIN pg_class t ON t.oid = tg.tgrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = current_schema() AND NOT tg.tgisinternal",
        )
        .load::<TriggerRow>(connection)?
        .into_iter()
        .map(|row| Trigger {
            table: row.table_name,
            name: row.name,
            definition: row.definition,
        })
        .collect())
    }

    /// The SQL of a normalised ACL: `acl` (a column of `aclitem[]`) as sorted `grantee:privilege`
    /// items with `owner`'s as `<owner>` and no grantor, or NULL when it grants what `default`
    /// (`acldefault(…)`) does. See [`routines`].
    fn normalised_acl(acl: &str, owner: &str, default: &str) -> String {
        // Sorted by the item itself (`ORDER BY 1` inside an aggregate sorts by a constant).
        let items = |source: &str| {
            format!(
                "(SELECT string_agg(item, ',' ORDER BY item) FROM (SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                 WHEN a.grantee = {owner} THEN '<owner>' ELSE pg_get_userbyid(a.grantee)::text END \
                 || ':' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END AS item \
                 FROM aclexplode({source}) a) items)"
            )
        };
        format!("NULLIF({}, {})", items(acl), items(default))
    }

    /// Grants, here and in [`objects`], are written as `grantee:privilege`, sorted, with the
    /// object's owner as `<owner>` and no grantor: a backup restored with `--no-owner` belongs
    /// to the role that restored it, and its schema must still compare equal. Grants that are
    /// the default (none made, or all revoked and given back) are written as nothing, as they
    /// were before grants were normalised: `pg_dump` writes none for them either.
    fn routines(connection: &mut PgConnection) -> QueryResult<Vec<Routine>> {
        let acl = normalised_acl("p.proacl", "p.proowner", "acldefault('f', p.proowner)");
        Ok(diesel::sql_query(format!(
            "SELECT p.proname::text AS name,
                    pg_get_functiondef(p.oid) || coalesce(' ACL ' || {acl}, '') AS definition,
                    obj_description(p.oid, 'pg_proc') AS comment
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = current_schema() AND p.prokind IN ('f', 'p')"
        ))
        .load::<RoutineRow>(connection)?
        .into_iter()
        .map(|row| Routine {
            name: row.name,
            definition: row.definition,
            comment: row.comment,
        })
        .collect())
    }

    fn objects(connection: &mut PgConnection) -> QueryResult<Vec<String>> {
        let acl = normalised_acl(
            "c.relacl",
            "c.relowner",
            "CASE c.relkind WHEN 'S' THEN acldefault('s', c.relowner) ELSE acldefault('r', c.relowner) END",
        );
        Ok(diesel::sql_query(format!(
            "SELECT 'relation ' || c.relkind::text || ' ' || c.relname::text
                    || ' rls=' || c.relrowsecurity::text || ' force_rls=' || c.relforcerowsecurity::text
                    || coalesce(' acl=' || {acl}, '')
                    || coalesce(' options=' || c.reloptions::text, '')
                    || coalesce(' comment=' || obj_description(c.oid, 'pg_class'), '')
                    || CASE WHEN c.relkind IN ('v', 'm') THEN ' view=' || pg_get_viewdef(c.oid) ELSE '' END AS line
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relname NOT LIKE $1
             UNION ALL
             SELECT 'policy ' || p.tablename::text || '.' || p.policyname::text || ' ' || p.cmd || ' '
                    || array_to_string(p.roles, ',') || ' using=' || coalesce(p.qual, '')
                    || ' check=' || coalesce(p.with_check, '')
             FROM pg_policies p WHERE p.schemaname = current_schema()
             UNION ALL
             SELECT 'rule ' || r.tablename::text || '.' || r.rulename::text || ' ' || r.definition
             FROM pg_rules r WHERE r.schemaname = current_schema()
             UNION ALL
             SELECT 'type ' || t.typtype::text || ' ' || t.typname::text
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = current_schema() AND t.typtype IN ('c', 'd', 'e', 'm', 'r')
               AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
             UNION ALL
             SELECT 'extension ' || e.extname::text FROM pg_extension e
             UNION ALL
             SELECT 'schema ' || s.nspname::text FROM pg_namespace s
             WHERE s.nspname NOT LIKE 'pg\\_%' AND s.nspname NOT LIKE $1 AND s.nspname <> 'information_schema'"
        ))
        .bind::<Text, _>(super::BOOKKEEPING_PREFIX)
        .load::<Line>(connection)?
        .into_iter()
        .map(|row| row.line)
        .collect())
    }

    fn split(list: &str) -> Vec<String> {
        list.split(',')
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

mod sqlite {
    use diesel::sql_types::Integer;
    use diesel::sqlite::SqliteConnection;

    use super::{
        Bool, Catalog, Column, Constraint, ConstraintKind, Index, Nullable, QueryResult, QueryableByName, RunQueryDsl,
        Table, Text, Trigger,
    };

    #[derive(QueryableByName)]
    struct MasterRow {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Nullable<Text>)]
        definition: Option<String>,
    }

    #[derive(QueryableByName)]
    struct ColumnRow {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        data_type: String,
        #[diesel(sql_type = Bool)]
        not_null: bool,
        #[diesel(sql_type = Nullable<Text>)]
        default_value: Option<String>,
        #[diesel(sql_type = Integer)]
        primary_key_position: i32,
    }

    #[derive(QueryableByName)]
    struct IndexRow {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Bool)]
        is_unique: bool,
        #[diesel(sql_type = Text)]
        origin: String,
        #[diesel(sql_type = Bool)]
        is_partial: bool,
        #[diesel(sql_type = Nullable<Text>)]
        columns: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        definition: Option<String>,
    }

    #[derive(QueryableByName)]
    struct ForeignKeyRow {
        #[diesel(sql_type = Integer)]
        id: i32,
        #[diesel(sql_type = Text)]
        referenced_table: String,
        #[diesel(sql_type = Text)]
        from_column: String,
        #[diesel(sql_type = Text)]
        on_delete: String,
    }

    pub(super) fn read(connection: &mut SqliteConnection) -> QueryResult<Catalog> {
        // A virtual table's shadow tables (FTS5's `<name>_data`, `_idx`, …) are its module's storage,
        // not schema of ours: they are listed as objects ("shadow table <name>"), so a `down.sql`
        // that leaves one behind is still caught, but their columns and keys are not read.
        let master: Vec<MasterRow> = diesel::sql_query(
            "SELECT CASE WHEN t.type = 'shadow' THEN 'shadow table' ELSE m.type END AS kind, m.name,
                    m.tbl_name AS table_name, m.sql AS definition
             FROM sqlite_master AS m
             LEFT JOIN pragma_table_list AS t ON m.type = 'table' AND t.schema = 'main' AND t.name = m.name
             WHERE m.tbl_name NOT LIKE ? ESCAPE '\\' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             ORDER BY kind, m.name",
        )
        .bind::<Text, _>(super::BOOKKEEPING_PREFIX)
        .load(connection)?;

        let mut catalog = Catalog::default();
        for row in &master {
            catalog.objects.push(format!("{} {}", row.kind, row.name));
            if row.kind == "trigger" {
                catalog.triggers.push(Trigger {
                    table: row.table_name.clone(),
                    name: row.name.clone(),
                    definition: row.definition.clone().unwrap_or_default(),
                });
            }
            if row.kind != "table" {
                continue;
            }
            let definition = row.definition.clone().unwrap_or_default();
            let columns: Vec<ColumnRow> = diesel::sql_query(
                "SELECT name, type AS data_type, \"notnull\" AS not_null, dflt_value AS default_value,
                        pk AS primary_key_position
                 FROM pragma_table_info(?) ORDER BY cid",
            )
            .bind::<Text, _>(&row.name)
            .load(connection)?;
            read_indexes(connection, &row.name, &mut catalog.indexes)?;
            read_constraints(connection, &row.name, &definition, &columns, &mut catalog.constraints)?;
            catalog.tables.push(Table {
                name: row.name.clone(),
                comment: None,
                definition: Some(definition),
                columns: columns
                    .into_iter()
                    .map(|column| Column {
                        name: column.name,
                        data_type: column.data_type,
                        nullable: !column.not_null,
                        default: column.default_value,
                        comment: None,
                    })
                    .collect(),
            });
        }
        Ok(catalog)
    }

    fn read_indexes(connection: &mut SqliteConnection, table: &str, indexes: &mut Vec<Index>) -> QueryResult<()> {
        let rows: Vec<IndexRow> = diesel::sql_query(
            "SELECT il.name AS name, il.\"unique\" AS is_unique, il.origin AS origin, il.partial AS is_partial,
                    (SELECT group_concat(ii.name, ',') FROM
                        (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno) AS ii) AS columns,
                    m.sql AS definition
             FROM pragma_index_list(?) AS il
             LEFT JOIN sqlite_master AS m ON m.type = 'index' AND m.name = il.name",
        )
        .bind::<Text, _>(table)
        .load(connection)?;
        for row in rows {
            let definition = row.definition.unwrap_or_default();
            // SQLite says whether an index is partial; its predicate is only in the SQL text.
            let predicate = row
                .is_partial
                .then(|| super::index_predicate(&definition).unwrap_or_else(|| "(unparsed)".to_owned()));
            indexes.push(Index {
                table: table.to_owned(),
                name: row.name,
                columns: row.columns.unwrap_or_default().split(',').map(str::to_owned).collect(),
                unique: row.is_unique,
                primary: row.origin == "pk",
                predicate,
                definition,
            });
        }
        Ok(())
    }

    fn read_constraints(
        connection: &mut SqliteConnection,
        table: &str,
        definition: &str,
        columns: &[ColumnRow],
        constraints: &mut Vec<Constraint>,
    ) -> QueryResult<()> {
        let declared = super::declared_constraints(definition);
        let named = |kind: ConstraintKind, columns: &[String]| {
            declared
                .iter()
                .find(|constraint| constraint.kind == kind && constraint.columns == columns)
                .map(|constraint| constraint.name.clone())
                .unwrap_or_default()
        };

        let mut primary_key: Vec<&ColumnRow> = columns
            .iter()
            .filter(|column| column.primary_key_position > 0)
            .collect();
        primary_key.sort_by_key(|column| column.primary_key_position);
        let primary_key: Vec<String> = primary_key.iter().map(|column| column.name.clone()).collect();
        if !primary_key.is_empty() {
            constraints.push(Constraint {
                table: table.to_owned(),
                kind: ConstraintKind::PrimaryKey,
                name: named(ConstraintKind::PrimaryKey, &primary_key),
                columns: primary_key,
                references: None,
                on_delete: None,
                definition: String::new(),
            });
        }

        let foreign_keys: Vec<ForeignKeyRow> = diesel::sql_query(
            "SELECT id, \"table\" AS referenced_table, \"from\" AS from_column, on_delete
             FROM pragma_foreign_key_list(?) ORDER BY id, seq",
        )
        .bind::<Text, _>(table)
        .load(connection)?;
        let mut ids: Vec<i32> = foreign_keys.iter().map(|key| key.id).collect();
        ids.dedup();
        for id in ids {
            let parts: Vec<&ForeignKeyRow> = foreign_keys.iter().filter(|key| key.id == id).collect();
            let columns: Vec<String> = parts.iter().map(|key| key.from_column.clone()).collect();
            constraints.push(Constraint {
                table: table.to_owned(),
                kind: ConstraintKind::ForeignKey,
                name: named(ConstraintKind::ForeignKey, &columns),
                columns,
                references: Some(parts[0].referenced_table.clone()),
                on_delete: Some(parts[0].on_delete.clone()),
                definition: String::new(),
            });
        }

        for constraint in declared {
            if matches!(constraint.kind, ConstraintKind::Check | ConstraintKind::Unique) {
                constraints.push(Constraint {
                    table: table.to_owned(),
                    ..constraint
                });
            }
        }
        Ok(())
    }
}

/// The constraints a SQLite `CREATE TABLE` declares, with their names (empty when unnamed):
/// SQLite's pragmas report foreign keys and primary keys but not constraint names or checks.
fn declared_constraints(definition: &str) -> Vec<Constraint> {
    let tokens = tokenize(definition);
    let words: Vec<String> = tokens.iter().map(|token| token.text.clone()).collect();
    let mut constraints = Vec::new();
    // REFERENCES that belong to a table-level FOREIGN KEY, as opposed to a column's own.
    let mut table_level_references = Vec::new();
    for (at, token) in words.iter().enumerate() {
        let upper = token.to_ascii_uppercase();
        let kind = match upper.as_str() {
            "CHECK" => ConstraintKind::Check,
            "UNIQUE" => ConstraintKind::Unique,
            "PRIMARY" => ConstraintKind::PrimaryKey,
            "FOREIGN" => {
                if let Some(offset) = words[at..]
                    .iter()
                    .position(|token| token.eq_ignore_ascii_case("REFERENCES"))
                {
                    table_level_references.push(at + offset);
                }
                ConstraintKind::ForeignKey
            }
            "REFERENCES" if !table_level_references.contains(&at) => ConstraintKind::ForeignKey,
            _ => continue,
        };
        let name = if at >= 2 && words[at - 2].eq_ignore_ascii_case("CONSTRAINT") {
            words[at - 1].clone()
        } else {
            String::new()
        };
        // Table constraints list their columns in parentheses right after the keyword(s); column
        // constraints have no list and apply to the column whose definition holds them.
        let columns = if kind == ConstraintKind::Check {
            Vec::new()
        } else {
            {
                let start = words[at..]
                    .iter()
                    .position(|token| token == "(")
                    .map(|offset| at + offset);
                let column_list = start.filter(|&start| {
                    words[at + 1..start]
                        .iter()
                        .all(|token| token.eq_ignore_ascii_case("KEY"))
                });
                match column_list {
                    Some(start) => words[start + 1..]
                        .iter()
                        .take_while(|token| *token != ")")
                        .filter(|token| *token != ",")
                        .cloned()
                        .collect(),
                    None => column_owning(&words, at).into_iter().collect(),
                }
            }
        };
        let definition = if kind == ConstraintKind::Check {
            parenthesised(definition, &tokens, at + 1).unwrap_or_default()
        } else {
            String::new()
        };
        constraints.push(Constraint {
            table: String::new(),
            kind,
            name,
            columns,
            references: None,
            on_delete: None,
            definition,
        });
    }
    constraints
}

/// The column whose definition contains the token at `at`: the first token after the nearest
/// preceding top-level "(" or ",".
fn column_owning(tokens: &[String], at: usize) -> Option<String> {
    let mut depth = 0_i32;
    for index in (0..at).rev() {
        match tokens[index].as_str() {
            ")" => depth += 1,
            "(" | "," if depth == 0 => return tokens.get(index + 1).cloned(),
            "(" => depth -= 1,
            _ => {}
        }
    }
    None
}

/// A word or a single-character punctuation token, with its byte range in the SQL.
struct Token {
    text: String,
    start: usize,
    end: usize,
}

/// Splits SQL into words and single-character punctuation, dropping string literals and
/// comments and unquoting identifiers.
fn tokenize(sql: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            '\'' => {
                // A string literal; '' inside it is an escaped quote.
                while let Some((_, inner)) = chars.next() {
                    if inner == '\'' {
                        if chars.peek().map(|&(_, next)| next) == Some('\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                let mut text = String::new();
                let mut end = sql.len();
                for (at, inner) in chars.by_ref() {
                    if inner == close {
                        end = at + inner.len_utf8();
                        break;
                    }
                    text.push(inner);
                }
                tokens.push(Token { text, start, end });
            }
            '-' if chars.peek().map(|&(_, next)| next) == Some('-') => {
                for (_, inner) in chars.by_ref() {
                    if inner == '\n' {
                        break;
                    }
                }
            }
            '(' | ')' | ',' => tokens.push(Token {
                text: c.to_string(),
                start,
                end: start + 1,
            }),
            c if c.is_alphanumeric() || c == '_' => {
                let mut text = c.to_string();
                let mut end = start + c.len_utf8();
                while let Some(&(at, next)) = chars.peek() {
                    if next.is_alphanumeric() || next == '_' || next == '$' {
                        text.push(next);
                        end = at + next.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token { text, start, end });
            }
            _ => {}
        }
    }
    tokens
}

/// The text inside the parentheses that open at token `open`, as written.
fn parenthesised(sql: &str, tokens: &[Token], open: usize) -> Option<String> {
    if tokens.get(open)?.text != "(" {
        return None;
    }
    let mut depth = 0_usize;
    for token in &tokens[open..] {
        match token.text.as_str() {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return Some(sql[tokens[open].end..token.start].trim().to_owned());
                }
            }
            _ => {}
        }
    }
    None
}

/// The WHERE clause of a `CREATE INDEX` statement, as written.
fn index_predicate(sql: &str) -> Option<String> {
    let tokens = tokenize(sql);
    let mut depth = 0_i32;
    for token in &tokens {
        match token.text.as_str() {
            "(" => depth += 1,
            ")" => depth -= 1,
            word if depth == 0 && word.eq_ignore_ascii_case("WHERE") => {
                return Some(sql[token.end..].trim().to_owned());
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(sql: &str, expected: &[(ConstraintKind, &str, &[&str])]) {
        let actual: Vec<(ConstraintKind, String, Vec<String>)> = declared_constraints(sql)
            .into_iter()
            .map(|constraint| (constraint.kind, constraint.name, constraint.columns))
            .collect();
        let expected: Vec<(ConstraintKind, String, Vec<String>)> = expected
            .iter()
            .map(|(kind, name, columns)| {
                (
                    *kind,
                    (*name).to_owned(),
                    columns.iter().map(|column| (*column).to_owned()).collect(),
                )
            })
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn declared_constraints_are_found_with_their_names() {
        use ConstraintKind::{Check, ForeignKey, PrimaryKey, Unique};
        check(
            "CREATE TABLE a (id BLOB NOT NULL, b TEXT, CONSTRAINT pk_a PRIMARY KEY (id), \
             CONSTRAINT fk_a_b FOREIGN KEY (b) REFERENCES b (id) ON DELETE CASCADE, \
             CONSTRAINT chk_a_b CHECK (b <> 'CHECK (x)' AND length(b) > 0))",
            &[
                (PrimaryKey, "pk_a", &["id"]),
                (ForeignKey, "fk_a_b", &["b"]),
                (Check, "chk_a_b", &[]),
            ],
        );
        check(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, \"e mail\" TEXT UNIQUE CHECK (length(\"e mail\") > 2), \
             -- a comment with CHECK in it\n x TEXT, y BLOB CONSTRAINT fk_a_b REFERENCES b (id), \
             z VARCHAR(9) REFERENCES c, UNIQUE (x, id))",
            &[
                (PrimaryKey, "", &["id"]),
                (Unique, "", &["e mail"]),
                (Check, "", &[]),
                (ForeignKey, "fk_a_b", &["y"]),
                (ForeignKey, "", &["z"]),
                (Unique, "", &["x", "id"]),
            ],
        );
    }
}
