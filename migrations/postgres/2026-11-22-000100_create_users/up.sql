-- Users, with soft deletes and an updated_at that the database keeps current for every writer.

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A writer that sets updated_at itself (the repository write path does) keeps its value;
    -- any other UPDATE gets the transaction's time, never earlier than created_at (which the application
    -- may have set from its own clock), so chk_*_updated_after_created holds.
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := greatest(now(), NEW.created_at);
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION set_updated_at() IS
    'Trigger function: sets updated_at to now() on UPDATE unless the statement set it explicitly.';

CREATE TABLE users (
    id uuid NOT NULL,
    email text NOT NULL,
    full_name text NOT NULL,
    hashed_password text NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    deletion_batch_id uuid,
    CONSTRAINT pk_users PRIMARY KEY (id),
    CONSTRAINT chk_users_email_lowercase CHECK (email = lower(email)),
    CONSTRAINT chk_users_email_length CHECK (length(email) >= 3 AND length(email) <= 254),
    CONSTRAINT chk_users_email_format CHECK (
        email LIKE '_%@_%' AND email NOT LIKE '%@%@%' AND email NOT LIKE '% %'
    ),
    CONSTRAINT chk_users_full_name_length CHECK (length(full_name) >= 1 AND length(full_name) <= 200),
    CONSTRAINT chk_users_full_name_trimmed CHECK (full_name = trim(full_name)),
    CONSTRAINT chk_users_hashed_password_format CHECK (hashed_password LIKE '$argon2id$%'),
    CONSTRAINT chk_users_updated_after_created CHECK (updated_at >= created_at),
    CONSTRAINT chk_users_deletion_pair CHECK ((deleted_at IS NULL) = (deletion_batch_id IS NULL))
);

CREATE TRIGGER trg_users_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

COMMENT ON TABLE users IS 'People who can sign in and record attendance. Soft-deleted rows keep their data until purged.';
COMMENT ON COLUMN users.id IS 'Primary key: a time-ordered UUIDv7 made by the application.';
COMMENT ON COLUMN users.email IS 'Sign-in address, stored lower-case; unique among rows that are not soft-deleted (uq_users_email).';
COMMENT ON COLUMN users.full_name IS 'Display name, 1 to 200 characters, no leading or trailing spaces.';
COMMENT ON COLUMN users.hashed_password IS 'argon2id hash in PHC string format; a clear password is never stored.';
COMMENT ON COLUMN users.is_active IS 'False when the account is deactivated: it keeps its data but may not check in.';
COMMENT ON COLUMN users.created_at IS 'When the row was inserted (UTC, microseconds).';
COMMENT ON COLUMN users.updated_at IS 'When the row last changed (UTC, microseconds); kept current by trg_users_updated_at.';
COMMENT ON COLUMN users.deleted_at IS 'When the row was soft-deleted; NULL for live rows.';
COMMENT ON COLUMN users.deletion_batch_id IS 'Identifies the soft-delete operation that set deleted_at; restore brings back exactly the rows of one batch.';
