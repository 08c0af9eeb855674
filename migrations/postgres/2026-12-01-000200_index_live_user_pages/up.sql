-- Pages of live users, the default scope: keyset pages seek it to their position, offset pages walk it in order, and the exact count of an offset page's total reads only it (an index-only scan once vacuumed).
-- CONCURRENTLY, so that writes go on while a populated table is indexed; hence this migration runs
-- outside a transaction (metadata.toml), one statement per migration (PostgreSQL runs the
-- statements of one batch in one implicit transaction, where CONCURRENTLY is refused). If the
-- build fails it leaves an invalid index behind and the runner marks the migration dirty: drop the
-- index, clear the marker with the operator command, and start again. No IF NOT EXISTS: it would
-- accept the invalid index a failed build leaves behind.
-- squawk-ignore prefer-robust-stmts
CREATE INDEX CONCURRENTLY idx_users_created_at_id_live ON users (created_at, id) WHERE deleted_at IS NULL;
