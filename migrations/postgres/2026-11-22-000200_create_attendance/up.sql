-- Attendance: one row per check-in, closed by a check-out.

CREATE TABLE attendance (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    check_in_time timestamptz NOT NULL,
    check_out_time timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    deletion_batch_id uuid,
    CONSTRAINT pk_attendance PRIMARY KEY (id),
    -- CASCADE serves purges (hard deletes) of users; soft deletes cascade in the repository,
    -- in the same transaction, and mark the rows with the user's deletion batch.
    CONSTRAINT fk_attendance_users FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT chk_attendance_check_out_after_check_in CHECK (
        check_out_time IS NULL OR check_out_time > check_in_time
    ),
    CONSTRAINT chk_attendance_updated_after_created CHECK (updated_at >= created_at),
    CONSTRAINT chk_attendance_deletion_pair CHECK ((deleted_at IS NULL) = (deletion_batch_id IS NULL))
);

CREATE TRIGGER trg_attendance_updated_at
    BEFORE UPDATE ON attendance
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

COMMENT ON TABLE attendance IS 'Check-ins and check-outs of users. At most one open record (no check-out) per user among live rows.';
COMMENT ON COLUMN attendance.id IS 'Primary key: a time-ordered UUIDv7 made by the application.';
COMMENT ON COLUMN attendance.user_id IS 'The user who checked in; hard-deleting the user deletes these rows (fk_attendance_users).';
COMMENT ON COLUMN attendance.check_in_time IS 'When the user checked in (UTC, microseconds).';
COMMENT ON COLUMN attendance.check_out_time IS 'When the user checked out; NULL while the record is open. Always after check_in_time.';
COMMENT ON COLUMN attendance.created_at IS 'When the row was inserted (UTC, microseconds).';
COMMENT ON COLUMN attendance.updated_at IS 'When the row last changed (UTC, microseconds); kept current by trg_attendance_updated_at.';
COMMENT ON COLUMN attendance.deleted_at IS 'When the row was soft-deleted; NULL for live rows.';
COMMENT ON COLUMN attendance.deletion_batch_id IS 'Identifies the soft-delete operation that set deleted_at: the user''s deletion batch when the row went with its user.';
