DROP TABLE users_search;
DROP INDEX uq_users_search_keys_user_id;
DROP TABLE users_search_keys;
