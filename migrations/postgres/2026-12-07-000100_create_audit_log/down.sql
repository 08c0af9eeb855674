-- Reverting a create migration drops what it created; the squawk-ignore lines say so per statement.
-- The audit entries go with it: take a backup first (dbctl migrate does).
-- squawk-ignore ban-drop-table
DROP TABLE audit_log;
-- squawk-ignore ban-drop-function
DROP FUNCTION audit_log_append_only();
-- squawk-ignore ban-drop-function
DROP FUNCTION audit_log_stamp();
