-- Pages of soft-deleted users (the "only deleted" scope), in page order: without it such a page walks every live user before the position.
-- CONCURRENTLY, so that writes go on while a populated table is indexed; hence this migration runs
-- outside a transaction (metadata.toml), one statement per migration (PostgreSQL runs the
-- statements of one batch in one implicit transaction, where CONCURRENTLY is refused). If the
-- build fails it leaves an invalid index behind and the runner marks the migration dirty: drop the
-- index, clear the marker with the operator command, and start again. No IF NOT EXISTS: it would
-- accept the invalid index a failed build leaves behind.
-- squawk-ignore prefer-robust-stmts
CREATE INDEX CONCURRENTLY idx_users_created_at_id_deleted ON users (created_at, id) WHERE deleted_at IS NOT NULL;
