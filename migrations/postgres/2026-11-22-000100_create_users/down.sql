-- Reverting a create migration drops what it created; the squawk-ignore lines say so per statement.
-- squawk-ignore ban-drop-table
DROP TABLE users;
-- squawk-ignore ban-drop-function
DROP FUNCTION set_updated_at();
