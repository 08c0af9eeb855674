-- Indexes for every query the attendance repository runs.
-- Plain CREATE INDEX, not CONCURRENTLY (hence the squawk-ignore lines): this migration ships in the
-- release that creates the table, so the table is empty and the lock is momentary. Indexes added to
-- populated tables later get their own migration with run_in_transaction = false and CONCURRENTLY.

-- Serves fk_attendance_users (cascades, joins) and "a user's attendance in a time range".
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX idx_attendance_user_id_check_in_time ON attendance (user_id, check_in_time);

-- At most one open attendance per user among live rows; also serves "currently checked-in users".
-- squawk-ignore require-concurrent-index-creation
CREATE UNIQUE INDEX uq_attendance_user_id ON attendance (user_id)
    WHERE check_out_time IS NULL AND deleted_at IS NULL;

-- Keyset pagination order (created_at, id), for every soft-delete scope.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX idx_attendance_created_at_id ON attendance (created_at, id);

-- The "only deleted" scope and retention purges (deleted_at < cutoff).
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX idx_attendance_deleted_at ON attendance (deleted_at) WHERE deleted_at IS NOT NULL;

-- Restoring a user brings back exactly the rows of its deletion batch.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX idx_attendance_deletion_batch_id ON attendance (deletion_batch_id)
    WHERE deletion_batch_id IS NOT NULL;
