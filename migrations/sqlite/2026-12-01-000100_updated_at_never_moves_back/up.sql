-- updated_at never moves back. A writer that sets updated_at = greatest(updated_at, <its clock>)
-- leaves it unchanged when the stored value is ahead of its clock (another instance's clock runs
-- ahead); the trigger then took that for "not set" and wrote the current time, which could be
-- earlier. Now it never writes less than the previous updated_at.
DROP TRIGGER trg_users_updated_at;

CREATE TRIGGER trg_users_updated_at
AFTER UPDATE ON users
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE users SET updated_at = max((strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'), NEW.created_at, OLD.updated_at) WHERE id = NEW.id;
END;

DROP TRIGGER trg_attendance_updated_at;

CREATE TRIGGER trg_attendance_updated_at
AFTER UPDATE ON attendance
FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE attendance SET updated_at = max((strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'), NEW.created_at, OLD.updated_at) WHERE id = NEW.id;
END;
