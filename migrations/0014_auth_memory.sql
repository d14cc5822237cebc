-- 0014_auth_memory.sql - what lets the intake authenticate and rate-limit from memory:
-- key-change notifications that include key creation, and leased rate-limit windows.

-- Every change to a key tells every intake process to re-read that key's row. Creation is
-- announced too: processes remember unknown prefixes (so a flood of unknown keys costs no
-- database work) and must forget that a new key's prefix was unknown.
CREATE OR REPLACE FUNCTION calseta_api_keys_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('calseta_api_keys', NEW.key_prefix);
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('calseta_api_keys', OLD.key_prefix);
        RETURN OLD;
    END IF;
    IF NEW.is_active IS NOT DISTINCT FROM OLD.is_active
       AND NEW.scopes IS NOT DISTINCT FROM OLD.scopes
       AND NEW.expires_at IS NOT DISTINCT FROM OLD.expires_at
       AND NEW.allowed_sources IS NOT DISTINCT FROM OLD.allowed_sources
       AND NEW.rate_limit_per_minute IS NOT DISTINCT FROM OLD.rate_limit_per_minute
       AND NEW.key_hash IS NOT DISTINCT FROM OLD.key_hash
       AND NEW.key_prefix IS NOT DISTINCT FROM OLD.key_prefix
       AND NEW.id IS NOT DISTINCT FROM OLD.id THEN
        RETURN NEW; -- last_used_at bookkeeping only
    END IF;
    PERFORM pg_notify('calseta_api_keys', OLD.key_prefix);
    IF NEW.key_prefix IS DISTINCT FROM OLD.key_prefix THEN
        PERFORM pg_notify('calseta_api_keys', NEW.key_prefix);
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER api_keys_notify ON api_keys;
CREATE TRIGGER api_keys_notify AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION calseta_api_keys_notify();

-- Leased rate-limit windows. rate_limit_counters.count is now the number of requests GRANTED
-- to intake processes in the window (a process takes a block and counts it down in memory),
-- never more than the limit. Returns what was granted (0..want), the window's total granted
-- after this lease, and the seconds left in the window.
CREATE FUNCTION calseta_rl_lease(p_bucket TEXT, p_window BIGINT, p_want INTEGER, p_limit INTEGER,
                                 OUT granted INTEGER, OUT total INTEGER)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rate_limit_counters (bucket, window_start, count)
    VALUES (p_bucket, p_window, 0) ON CONFLICT DO NOTHING;
    SELECT count INTO total FROM rate_limit_counters
     WHERE bucket = p_bucket AND window_start = p_window FOR UPDATE;
    granted := least(greatest(p_want, 0), greatest(p_limit - total, 0));
    IF granted > 0 THEN
        total := total + granted;
        UPDATE rate_limit_counters SET count = total
         WHERE bucket = p_bucket AND window_start = p_window;
    END IF;
END $$;

-- Unused requests of a lease given back (a process that went idle), so another process can
-- use them within the same window.
CREATE FUNCTION calseta_rl_give_back(p_bucket TEXT, p_window BIGINT, p_n INTEGER)
RETURNS VOID LANGUAGE sql AS $$
    UPDATE rate_limit_counters SET count = greatest(count - greatest(p_n, 0), 0)
     WHERE bucket = p_bucket AND window_start = p_window;
$$;
