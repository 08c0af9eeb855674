-- Pages of live attendance records with their users (list_with_user), and the exact count of their
-- total, which joins users on user_id: with it in the index, the count reads only the index.
CREATE INDEX idx_attendance_created_at_id_user_id_live ON attendance (created_at, id, user_id) WHERE deleted_at IS NULL;
