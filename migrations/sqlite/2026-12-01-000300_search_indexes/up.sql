-- Substring search of users (UserFilter.search), part 1 of 2: the index structures (part 2,
-- 2026-12-01-000310_search_indexes_build, fills them and keeps them in step). SQLite has no
-- index for LIKE '%…%'; the repository narrows a search of three or more characters to the
-- candidates of users_search, an FTS5 table with the trigram tokenizer (SQLite 3.34+), and the
-- exact lower(..) LIKE lower(..) check, which stays in the query, decides.
-- users_search holds email and name exactly as stored (case_sensitive 1): all case folding happens
-- in the query, which asks for every spelling that folds like the search, so the index does not
-- depend on the lower() of the connection that wrote a row (the sqlite3 shell's folds ASCII only).
-- detail = none (no positions: the queries look up single trigrams) and columnsize = 0 (no
-- ranking) keep it small. It is a plain FTS5 table, not contentless: deleting from a contentless
-- one needs SQLite 3.43+, which would stop older shells from writing users.

-- FTS5 keys its rows by integer, and users' own rowid is not stable (a .dump and restore renumbers
-- it), so every user gets a key of its own here: users_search.rowid = users_search_keys.key.
CREATE TABLE users_search_keys (
    key INTEGER NOT NULL,
    user_id BLOB NOT NULL,
    CONSTRAINT pk_users_search_keys PRIMARY KEY (key)
) STRICT;

CREATE UNIQUE INDEX uq_users_search_keys_user_id ON users_search_keys (user_id);

CREATE VIRTUAL TABLE users_search USING fts5(
    email,
    full_name,
    tokenize = 'trigram case_sensitive 1',
    detail = none,
    columnsize = 0
);
