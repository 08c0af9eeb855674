-- Reverting a create migration drops what it created; the squawk-ignore lines say so per statement.
-- Both statements refuse while anything else still uses pg_trgm or the schema.
-- squawk-ignore ban-drop-extension
DROP EXTENSION pg_trgm;
-- squawk-ignore ban-drop-schema
DROP SCHEMA extensions;
