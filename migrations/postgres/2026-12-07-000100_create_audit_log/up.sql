-- The audit log: who did what to which entity, when, with the changed fields before and after
-- (never a password hash, never a secret) and the request it belonged to. The repositories write
-- an entry in the same transaction as every sensitive change, so a committed change always has
-- its entry and a rolled-back one has none.
--
-- Append-only three ways: the application role is granted INSERT and SELECT only (`dbctl roles
-- setup`, and the REVOKE below for roles that default privileges granted more); row triggers
-- refuse UPDATE and DELETE, and a statement trigger refuses TRUNCATE (row triggers do not fire on
-- TRUNCATE), whoever runs them. The one exception is the retention purge (`dbctl audit purge`),
-- run by the table's owner: it sets audit_log.purge_before for its own transaction, and the
-- trigger then lets that owner delete the entries older than it, and nothing else.

CREATE TABLE audit_log (
    id uuid NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    entity_type text NOT NULL,
    entity_id text NOT NULL,
    old_values jsonb,
    new_values jsonb,
    correlation_id text,
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
    )
);

-- The trail of one entity, in time order (AuditRepository::trail pages it by keyset).
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX idx_audit_log_entity_type_entity_id_occurred_at_id ON audit_log (entity_type, entity_id, occurred_at, id);

-- The retention purge removes entries older than a cutoff.
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX idx_audit_log_occurred_at ON audit_log (occurred_at);

-- Both trigger functions run with a fixed search_path: a session's temporary objects (pg_temp,
-- searched first by default) must not stand in for the catalog they read.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- The retention purge: the table's owner (or a role it is granted to), in a transaction that
    -- set audit_log.purge_before, deleting an entry older than that.
    IF TG_OP = 'DELETE'
        AND coalesce(current_setting('audit_log.purge_before', true), '') <> ''
        AND pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = TG_RELID), 'USAGE')
        AND OLD.occurred_at < current_setting('audit_log.purge_before', true)::timestamptz
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'entries are removed only by the retention purge, dbctl audit purge';
END;
$$;

COMMENT ON FUNCTION audit_log_append_only() IS
    'Trigger function: refuses UPDATE, DELETE and TRUNCATE on audit_log, except the owner''s retention purge.';

CREATE FUNCTION audit_log_stamp() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Writers other than the table's owner (the application) get the server's clock: they can
    -- neither backdate an entry nor date it where the retention purge never reaches. The owner
    -- (and a restore, which runs as the owner or a superuser) keeps the time it gives.
    IF NOT pg_has_role(current_user, (SELECT relowner FROM pg_catalog.pg_class WHERE oid = TG_RELID), 'USAGE') THEN
        NEW.occurred_at := clock_timestamp();
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION audit_log_stamp() IS
    'Trigger function: sets occurred_at to the server''s clock for every writer but the owner of audit_log.';

CREATE TRIGGER trg_audit_log_stamp
    BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_stamp();

CREATE TRIGGER trg_audit_log_no_update
    BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER trg_audit_log_no_delete
    BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER trg_audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Default privileges (dbctl roles setup) grant the application role SELECT, INSERT, UPDATE and
-- DELETE on every table the owner creates; on this one it keeps INSERT and SELECT only. Every
-- role but the owner loses the rest, whatever its name, and so does PUBLIC.
REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_log FROM PUBLIC;
DO $$
DECLARE
    grantee name;
BEGIN
    FOR grantee IN
        SELECT DISTINCT pg_get_userbyid(a.grantee) FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'audit_log'::regclass AND a.grantee <> 0 AND a.grantee <> c.relowner
          AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')
    LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_log FROM %I', grantee);
    END LOOP;
END;
$$;

COMMENT ON TABLE audit_log IS 'Append-only record of sensitive operations: who, what, which entity, when, changed fields before and after, and the request.';
COMMENT ON COLUMN audit_log.id IS 'Primary key: a time-ordered UUIDv7 made by the writer.';
COMMENT ON COLUMN audit_log.occurred_at IS 'When the operation happened (UTC, microseconds): the server''s clock for every writer but the owner (trg_audit_log_stamp).';
COMMENT ON COLUMN audit_log.actor IS 'Who did it: user:<uuid>, operator:<name>, service:<name>, or none when the caller named no one.';
COMMENT ON COLUMN audit_log.action IS 'What was done, as <entity>.<verb>, for example user.register or credentials.rotate.';
COMMENT ON COLUMN audit_log.entity_type IS 'The kind of entity acted on: user, role, audit_log.';
COMMENT ON COLUMN audit_log.entity_id IS 'The entity''s id (a UUID, a role name).';
COMMENT ON COLUMN audit_log.old_values IS 'The changed fields before the operation; secrets appear as "[redacted]", never their values.';
COMMENT ON COLUMN audit_log.new_values IS 'The changed fields after the operation; secrets appear as "[redacted]", never their values.';
COMMENT ON COLUMN audit_log.correlation_id IS 'The request the operation belonged to, as the caller named it.';
