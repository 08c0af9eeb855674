DROP TRIGGER trg_users_search_delete;
DROP TRIGGER trg_users_search_update;
DROP TRIGGER trg_users_search_insert;
DELETE FROM users_search;
DELETE FROM users_search_keys;
