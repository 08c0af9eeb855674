-- Reverting a create migration drops what it created. The audit entries go with it: take a
-- backup first (dbctl migrate does).
DROP TABLE audit_log_purge_gate;
DROP TABLE audit_log;
