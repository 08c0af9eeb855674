-- updated_at never moves back. A writer that sets updated_at = greatest(updated_at, <its clock>)
-- leaves it unchanged when the stored value is ahead of its clock (another instance's clock runs
-- ahead); the trigger then took that for "not set" and wrote now(), which could be earlier.
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A writer that sets updated_at itself (the repository write path does) keeps its value;
    -- any other UPDATE gets the transaction's time, never earlier than created_at (which the application
    -- may have set from its own clock) nor than the previous updated_at, so chk_*_updated_after_created
    -- holds and updated_at never moves back.
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := greatest(now(), NEW.created_at, OLD.updated_at);
    END IF;
    RETURN NEW;
END;
$$;
