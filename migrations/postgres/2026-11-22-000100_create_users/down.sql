-- Never queue behind application locks for long; diesel runs each migration in a transaction.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';

-- Reverting a create migration drops what it created; the squawk-ignore lines say so per statement.
-- squawk-ignore ban-drop-table
DROP TABLE users;
-- squawk-ignore ban-drop-function
DROP FUNCTION set_updated_at();
