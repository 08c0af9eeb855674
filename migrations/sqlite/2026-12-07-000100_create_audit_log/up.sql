-- The audit log: who did what to which entity, when, with the changed fields before and after
-- (never a password hash, never a secret) and the request it belonged to. Same logical schema as
-- migrations/postgres; SQLite storage as for users (UUIDs as 16-byte BLOBs, timestamps as
-- fixed-width UTC text) and JSON as text that json_valid accepts.
--
-- Append-only: triggers refuse UPDATE and DELETE (SQLite has no TRUNCATE, and no roles: anyone
-- who can write the file can drop the triggers, so on SQLite this guards against mistakes, not
-- against a hostile writer). The one exception is the retention purge (`dbctl audit purge`): in
-- its own write transaction it puts its cutoff into audit_log_purge_gate, deletes the entries
-- older than it, and empties the gate before committing.

CREATE TABLE audit_log (
    id BLOB NOT NULL,
    occurred_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    old_values TEXT,
    new_values TEXT,
    correlation_id TEXT,
    CONSTRAINT pk_audit_log PRIMARY KEY (id),
    CONSTRAINT chk_audit_log_actor_format CHECK (
        actor = 'none' OR actor LIKE 'user:_%' OR actor LIKE 'operator:_%' OR actor LIKE 'service:_%'
    ),
    CONSTRAINT chk_audit_log_actor_length CHECK (length(actor) <= 200),
    CONSTRAINT chk_audit_log_action_format CHECK (length(action) >= 3 AND length(action) <= 64 AND action LIKE '_%._%'),
    CONSTRAINT chk_audit_log_entity_length CHECK (
        length(entity_type) >= 1 AND length(entity_type) <= 64 AND length(entity_id) >= 1 AND length(entity_id) <= 200
    ),
    CONSTRAINT chk_audit_log_correlation_id_length CHECK (
        correlation_id IS NULL OR (length(correlation_id) >= 1 AND length(correlation_id) <= 128)
    ),
    CONSTRAINT chk_audit_log_storage_format CHECK (
        length(id) = 16
        AND occurred_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
        AND (old_values IS NULL OR (json_valid(old_values) AND json_type(old_values) = 'object'))
        AND (new_values IS NULL OR (json_valid(new_values) AND json_type(new_values) = 'object'))
    )
) STRICT;

-- The trail of one entity, in time order (AuditRepository::trail pages it by keyset).
CREATE INDEX idx_audit_log_entity_type_entity_id_occurred_at_id ON audit_log (entity_type, entity_id, occurred_at, id);

-- The retention purge removes entries older than a cutoff.
CREATE INDEX idx_audit_log_occurred_at ON audit_log (occurred_at);

-- The retention purge's cutoff, set only inside its own transaction: empty at every commit.
CREATE TABLE audit_log_purge_gate (
    purge_before TEXT NOT NULL
) STRICT;

CREATE TRIGGER trg_audit_log_no_update
BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER trg_audit_log_no_delete
BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_log_purge_gate WHERE OLD.occurred_at < purge_before)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
