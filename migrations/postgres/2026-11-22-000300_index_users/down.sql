-- Reverting a create migration drops what it created; the squawk-ignore lines say so per statement.
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX idx_users_deleted_at;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX idx_users_created_at_id;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX uq_users_email;
