-- 0021_enrich_quota.sql - provider rate caps shared by every enrichment worker.
--
-- One row per provider: the fixed window of the database clock being counted (its start in
-- ms since the epoch) and the requests granted to workers in it. A worker leases a block of
-- requests and spends it in memory until the window ends; the total granted in a window never
-- passes its limit. One row per provider, rewritten in place: the table never grows.
CREATE TABLE enrichment_provider_quota (
    provider_name TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    requests INTEGER NOT NULL -- granted to workers in that window
);

-- Grants up to p_want of the p_limit requests of the current window of p_window_ms (0 when
-- the window is used up) and the milliseconds the window still runs. The clock is read after
-- the row lock is held, so windows only move forward.
CREATE FUNCTION calseta_enrich_quota_lease(p_provider TEXT, p_want INTEGER, p_limit INTEGER,
                                           p_window_ms INTEGER,
                                           OUT granted INTEGER, OUT ms_left INTEGER)
LANGUAGE plpgsql AS $$
DECLARE
    now_ms BIGINT;
    w BIGINT;
    ws BIGINT;
    used INTEGER;
BEGIN
    IF p_window_ms < 1 OR p_limit < 0 THEN
        RAISE EXCEPTION 'invalid quota window % or limit %', p_window_ms, p_limit;
    END IF;
    INSERT INTO enrichment_provider_quota (provider_name, window_start, requests)
    VALUES (p_provider, 0, 0) ON CONFLICT DO NOTHING;
    SELECT q.window_start, q.requests INTO ws, used FROM enrichment_provider_quota q
     WHERE q.provider_name = p_provider FOR UPDATE;
    now_ms := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    w := now_ms - now_ms % p_window_ms;
    IF ws <> w THEN
        used := 0;
    END IF;
    granted := least(greatest(p_want, 0), greatest(p_limit - used, 0));
    ms_left := (w + p_window_ms - now_ms)::integer;
    UPDATE enrichment_provider_quota q SET window_start = w, requests = used + granted
     WHERE q.provider_name = p_provider;
END $$;
