-- Pages of soft-deleted users (the "only deleted" scope), in page order: without it such a page walks every live user before the position.
CREATE INDEX idx_users_created_at_id_deleted ON users (created_at, id) WHERE deleted_at IS NOT NULL;
