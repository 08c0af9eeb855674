-- Pages of live users, the default scope: keyset pages seek it to their position, offset pages walk it in order, and the exact count of an offset page's total reads only it (an index-only scan once vacuumed).
CREATE INDEX idx_users_created_at_id_live ON users (created_at, id) WHERE deleted_at IS NULL;
