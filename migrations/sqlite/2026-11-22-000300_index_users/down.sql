DROP INDEX idx_users_deleted_at;
DROP INDEX idx_users_created_at_id;
DROP INDEX uq_users_email;
