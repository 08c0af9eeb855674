-- Attendance: one row per check-in, closed by a check-out. Storage as in create_users.

CREATE TABLE attendance (
    id BLOB NOT NULL,
    user_id BLOB NOT NULL,
    check_in_time TEXT NOT NULL,
    check_out_time TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'),
    deleted_at TEXT,
    deletion_batch_id BLOB,
    CONSTRAINT pk_attendance PRIMARY KEY (id),
    -- CASCADE serves purges (hard deletes) of users; soft deletes cascade in the repository,
    -- in the same transaction, and mark the rows with the user's deletion batch.
    CONSTRAINT fk_attendance_users FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT chk_attendance_check_out_after_check_in CHECK (
        check_out_time IS NULL OR check_out_time > check_in_time
    ),
    CONSTRAINT chk_attendance_updated_after_created CHECK (updated_at >= created_at),
    CONSTRAINT chk_attendance_deletion_pair CHECK ((deleted_at IS NULL) = (deletion_batch_id IS NULL)),
    CONSTRAINT chk_attendance_storage_format CHECK (
        length(id) = 16
        AND length(user_id) = 16
        AND (deletion_batch_id IS NULL OR length(deletion_batch_id) = 16)
        AND check_in_time GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
        AND (check_out_time IS NULL OR check_out_time GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
        AND created_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
        AND updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'
        AND (deleted_at IS NULL OR deleted_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z')
    )
) STRICT;

CREATE TRIGGER trg_attendance_updated_at
AFTER UPDATE ON attendance
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE attendance SET updated_at = max((strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'), NEW.created_at) WHERE id = NEW.id;
END;
