-- Pages of live attendance records with their users (list_with_user), and the exact count of their
-- total, which joins users on user_id: with it in the index, the count reads only the index.
-- CONCURRENTLY, so that writes go on while a populated table is indexed; hence this migration runs
-- outside a transaction (metadata.toml), one statement per migration (PostgreSQL runs the
-- statements of one batch in one implicit transaction, where CONCURRENTLY is refused). If the
-- build fails it leaves an invalid index behind and the runner marks the migration dirty: drop the
-- index, clear the marker with the operator command, and start again. No IF NOT EXISTS: it would
-- accept the invalid index a failed build leaves behind.
-- squawk-ignore prefer-robust-stmts
CREATE INDEX CONCURRENTLY idx_attendance_created_at_id_user_id_live ON attendance (created_at, id, user_id) WHERE deleted_at IS NULL;
