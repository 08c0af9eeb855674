-- Reverting a create migration drops what it created; the squawk-ignore lines say so per statement.
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX idx_attendance_deletion_batch_id;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX idx_attendance_deleted_at;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX idx_attendance_created_at_id;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX uq_attendance_user_id;
-- squawk-ignore require-concurrent-index-deletion
DROP INDEX idx_attendance_user_id_check_in_time;
