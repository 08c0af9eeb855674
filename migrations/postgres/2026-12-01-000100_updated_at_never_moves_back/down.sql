-- Back to the trigger function of 2026-11-22-000100_create_users.
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A writer that sets updated_at itself (the repository write path does) keeps its value;
    -- any other UPDATE gets the transaction's time, never earlier than created_at (which the application
    -- may have set from its own clock), so chk_*_updated_after_created holds.
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := greatest(now(), NEW.created_at);
    END IF;
    RETURN NEW;
END;
$$;
