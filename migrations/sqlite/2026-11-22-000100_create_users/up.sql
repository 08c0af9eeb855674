-- Users, with soft deletes and an updated_at that the database keeps current for every writer.
-- Same logical schema as migrations/postgres; SQLite storage: UUIDs as 16-byte BLOBs, timestamps as
-- fixed-width UTC text (YYYY-MM-DDTHH:MM:SS.ffffffZ) so that text order is time order, booleans as 0/1.
-- chk_users_storage_format holds every writer to that storage; STRICT holds every column to its type.

CREATE TABLE users (
    id BLOB NOT NULL,
    email TEXT NOT NULL,
    full_name TEXT NOT NULL,
    hashed_password TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    deleted_at TEXT,
    deletion_batch_id BLOB,
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
    CONSTRAINT chk_users_deletion_pair CHECK ((deleted_at IS NULL) = (deletion_batch_id IS NULL)),
    CONSTRAINT chk_users_storage_format CHECK (
        length(id) = 16
        AND (deletion_batch_id IS NULL OR length(deletion_batch_id) = 16)
        AND is_active IN (0, 1)
        AND created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
        AND updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
        AND (deleted_at IS NULL OR deleted_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
    )
) STRICT;

-- SQLite triggers cannot assign NEW, so an AFTER trigger rewrites the row when the statement left
-- updated_at unchanged (the WHEN clause also stops the trigger's own UPDATE from firing it again).
CREATE TRIGGER trg_users_updated_at
AFTER UPDATE ON users
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE users SET updated_at = max((strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'), NEW.created_at) WHERE id = NEW.id;
END;
