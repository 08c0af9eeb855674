-- Indexes for every query the user repository runs.

-- Email is unique among live rows only, so a soft-deleted user's address can be registered again.
CREATE UNIQUE INDEX uq_users_email ON users (email) WHERE deleted_at IS NULL;

-- Keyset pagination order (created_at, id), for every soft-delete scope.
CREATE INDEX idx_users_created_at_id ON users (created_at, id);

-- The "only deleted" scope and retention purges (deleted_at < cutoff).
CREATE INDEX idx_users_deleted_at ON users (deleted_at) WHERE deleted_at IS NOT NULL;
