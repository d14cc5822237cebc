-- 0045_links_pending_merge.sql - the merge of the alert links' GIN pending list, called every
-- second by each intake (links_merge.c): one session merges, the others return at once instead
-- of queueing on the index's merge lock while holding a pool connection.
CREATE OR REPLACE FUNCTION calseta_links_pending_merge() RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('calseta_links_pending_merge')) THEN
        RETURN 0;
    END IF;
    RETURN gin_clean_pending_list('ix_alerts_indicator_ids'::regclass);
END $$;
