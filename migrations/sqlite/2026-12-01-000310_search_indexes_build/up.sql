-- Substring search of users, part 2 of 2: index every user, and keep the index in step with every
-- writer. The triggers run in whatever connection writes users (the sqlite3 shell included) and
-- need nothing but FTS5; a SQLite without FTS5 or older than 3.34 cannot write users at all.
-- "Unindex" a user: remove its users_search row and its key. "Index" it: unindex it, then give it
-- a new key and a users_search row with its email and name. (An INSERT OR REPLACE removes the
-- replaced row without firing delete triggers unless recursive_triggers is on; indexing unindexes
-- first so that a key left behind is never in the way.)

INSERT INTO users_search_keys (user_id) SELECT id FROM users;
INSERT INTO users_search (rowid, email, full_name)
    SELECT users_search_keys.key, users.email, users.full_name
    FROM users_search_keys JOIN users ON users.id = users_search_keys.user_id;

CREATE TRIGGER trg_users_search_insert
AFTER INSERT ON users
FOR EACH ROW
BEGIN
    DELETE FROM users_search WHERE rowid = (SELECT key FROM users_search_keys WHERE user_id = NEW.id);
    DELETE FROM users_search_keys WHERE user_id = NEW.id;
    INSERT INTO users_search_keys (user_id) VALUES (NEW.id);
    INSERT INTO users_search (rowid, email, full_name)
        SELECT key, NEW.email, NEW.full_name FROM users_search_keys WHERE user_id = NEW.id;
END;

CREATE TRIGGER trg_users_search_update
AFTER UPDATE OF id, email, full_name ON users
FOR EACH ROW WHEN NEW.id IS NOT OLD.id OR NEW.email IS NOT OLD.email OR NEW.full_name IS NOT OLD.full_name
BEGIN
    DELETE FROM users_search WHERE rowid = (SELECT key FROM users_search_keys WHERE user_id = OLD.id);
    DELETE FROM users_search_keys WHERE user_id = OLD.id;
    DELETE FROM users_search WHERE rowid = (SELECT key FROM users_search_keys WHERE user_id = NEW.id);
    DELETE FROM users_search_keys WHERE user_id = NEW.id;
    INSERT INTO users_search_keys (user_id) VALUES (NEW.id);
    INSERT INTO users_search (rowid, email, full_name)
        SELECT key, NEW.email, NEW.full_name FROM users_search_keys WHERE user_id = NEW.id;
END;

CREATE TRIGGER trg_users_search_delete
AFTER DELETE ON users
FOR EACH ROW
BEGIN
    DELETE FROM users_search WHERE rowid = (SELECT key FROM users_search_keys WHERE user_id = OLD.id);
    DELETE FROM users_search_keys WHERE user_id = OLD.id;
END;
