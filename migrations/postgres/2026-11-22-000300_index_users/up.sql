-- Indexes for every query the user repository runs.
-- Plain CREATE INDEX, not CONCURRENTLY (hence the squawk-ignore lines): this migration ships in the
-- release that creates the table, so the table is empty and the lock is momentary. Indexes added to
-- populated tables later get their own migration with run_in_transaction = false and CONCURRENTLY.

-- Email is unique among live rows only, so a soft-deleted user's address can be registered again.
-- squawk-ignore require-concurrent-index-creation
CREATE UNIQUE INDEX uq_users_email ON users (email) WHERE deleted_at IS NULL;

-- Keyset pagination order (created_at, id), for every soft-delete scope.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX idx_users_created_at_id ON users (created_at, id);

-- The "only deleted" scope and retention purges (deleted_at < cutoff).
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX idx_users_deleted_at ON users (deleted_at) WHERE deleted_at IS NOT NULL;
