-- Back to the triggers of 2026-11-22-000100_create_users and 2026-11-22-000200_create_attendance.
DROP TRIGGER trg_users_updated_at;

CREATE TRIGGER trg_users_updated_at
AFTER UPDATE ON users
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE users SET updated_at = max((strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'), NEW.created_at) WHERE id = NEW.id;
END;

DROP TRIGGER trg_attendance_updated_at;

CREATE TRIGGER trg_attendance_updated_at
AFTER UPDATE ON attendance
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE attendance SET updated_at = max((strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'), NEW.created_at) WHERE id = NEW.id;
END;
