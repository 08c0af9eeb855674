-- Substring search of users (UserFilter.search), part 1 of 2: pg_trgm, whose GIN operator class
-- indexes LIKE '%…%' (part 2, 2026-12-01-000310_search_indexes_build, builds the index).
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it. It gets a
-- schema of its own, so that its functions stay out of the application's schema, and the index
-- names its operator class with that schema, which resolves whatever the session's search_path
-- (the baseline check builds the schema in a scratch schema). A pg_trgm already installed in
-- another schema stops part 2 ("operator class extensions.gin_trgm_ops does not exist"): move it
-- with ALTER EXTENSION pg_trgm SET SCHEMA extensions.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA extensions;
