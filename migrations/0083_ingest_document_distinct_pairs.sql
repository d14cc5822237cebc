-- 0083_ingest_document_distinct_pairs.sql - calseta_ingest_document() (the document forms:
-- calseta_ingest_batch() and the previous intake's calseta_ingest_batch_joined()) sends each
-- distinct indicator pair of a batch once, as the intake does.
--
-- 0079's body, restated with one change. It sent every element's pairs as they came, so a pair
-- named by several elements was looked up once per element, and a new one drew an id per
-- position: one row was written, fewer than the ids drawn, and calseta_ingest_columns() looked
-- every pair of the batch up again. Each distinct pair (NULL type or value included: such a
-- pair names no indicator) is now numbered once (dense_rank over type and value) and each
-- element refers to those numbers, so those batches take the columns' fast path.
--
-- Instructions per call of 15 under callgrind: see docs/ingestion.md.
--
-- Locks: replacing the function takes none.

CREATE OR REPLACE FUNCTION calseta_ingest_document(batch JSONB, dedup_hours INTEGER, payloads TEXT[])
RETURNS TABLE (idx INTEGER, alert_uuid UUID, alert_id BIGINT, job_id BIGINT,
               is_duplicate BOOLEAN, duplicate_count INTEGER)
LANGUAGE plpgsql AS $$
DECLARE
    c RECORD;
BEGIN
    IF payloads IS NOT NULL AND cardinality(payloads) <> jsonb_array_length(batch) THEN
        RAISE EXCEPTION 'calseta_ingest_document: % payloads for % alerts', cardinality(payloads),
                        jsonb_array_length(batch)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- jsonb_to_recordset reads a JSON null as SQL NULL, the same as a missing key
    -- strict: lax mode would unwrap an array and refuse "indicators": [null] as well
    IF batch @? 'strict $[*] ? (@.indicators == null)' THEN
        RAISE EXCEPTION 'calseta_ingest_document: "indicators" is null, not an array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH e AS MATERIALIZED (
        SELECT (t.o - 1)::int AS i, t.*
          FROM ROWS FROM (jsonb_to_recordset(batch)
                              AS (title TEXT, severity TEXT, source_name TEXT, description TEXT,
                                  occurred_at TIMESTAMPTZ, tags TEXT[], fingerprint TEXT,
                                  rule_ref TEXT, indicators JSONB, actor_key_prefix TEXT,
                                  raw_member TEXT, check_numbers BOOLEAN, raw_payload JSONB))
               WITH ORDINALITY t(title, severity, source_name, description, occurred_at, tags,
                                 fingerprint, rule_ref, indicators, actor_key_prefix, raw_member,
                                 check_numbers, raw_payload, o)),
    tg AS ( -- each element's tags, in order
        SELECT e.i, x.v, x.o FROM e CROSS JOIN LATERAL unnest(e.tags) WITH ORDINALITY x(v, o)),
    ind AS MATERIALIZED ( -- each element's indicators (o: its place in the element), each
                          -- distinct pair numbered k, in sorted order: sent once, as position k
        SELECT e.i, x.o, x.x->>'type' AS t, x.x->>'value' AS v,
               dense_rank() OVER (ORDER BY x.x->>'type', x.x->>'value') AS k
          FROM e CROSS JOIN LATERAL jsonb_array_elements(e.indicators) WITH ORDINALITY x(x, o))
    SELECT coalesce(array_agg(e.title ORDER BY e.i), '{}') AS titles,
           coalesce(array_agg(e.severity ORDER BY e.i), '{}') AS severities,
           coalesce(array_agg(e.source_name ORDER BY e.i), '{}') AS source_names,
           coalesce(array_agg(e.description ORDER BY e.i), '{}') AS descriptions,
           coalesce(array_agg(e.occurred_at ORDER BY e.i), '{}') AS occurred,
           coalesce(array_agg(e.fingerprint ORDER BY e.i), '{}') AS fingerprints,
           coalesce(array_agg(e.rule_ref ORDER BY e.i), '{}') AS rule_refs,
           coalesce(array_agg(e.actor_key_prefix ORDER BY e.i), '{}') AS key_prefixes,
           coalesce(array_agg(CASE WHEN payloads IS NOT NULL THEN e.raw_member END ORDER BY e.i), '{}') AS raw_members,
           coalesce(array_agg(e.check_numbers ORDER BY e.i), '{}') AS check_nums,
           coalesce(array_agg(CASE WHEN payloads IS NULL THEN e.raw_payload::text ELSE payloads[e.i + 1] END
                              ORDER BY e.i), '{}') AS payloads,
           -- each element's end: a running sum over the elements (a non-array "indicators"
           -- raises 22023 here as in jsonb_array_elements above)
           ARRAY(SELECT 0 UNION ALL
                 SELECT (sum(coalesce(cardinality(x.tags), 0)) OVER (ORDER BY x.i))::int
                   FROM e x ORDER BY 1) AS tag_offs,
           ARRAY(SELECT tg.v FROM tg ORDER BY tg.i, tg.o) AS tag_vals,
           ARRAY(SELECT DISTINCT ON (ind.k) ind.t FROM ind ORDER BY ind.k) AS ind_types,
           ARRAY(SELECT DISTINCT ON (ind.k) ind.v FROM ind ORDER BY ind.k) AS ind_values,
           ARRAY(SELECT 0 UNION ALL
                 SELECT (sum(coalesce(jsonb_array_length(x.indicators), 0)) OVER (ORDER BY x.i))::int
                   FROM e x ORDER BY 1) AS ind_offs,
           ARRAY(SELECT ind.k::int FROM ind ORDER BY ind.i, ind.o) AS ind_refs
      INTO c
      FROM e;
    RETURN QUERY
    SELECT * FROM calseta_ingest_columns(c.titles, c.severities, c.source_names, c.descriptions,
                                         c.occurred, c.fingerprints, c.rule_refs, c.key_prefixes,
                                         c.raw_members, c.check_nums, c.payloads, c.tag_offs,
                                         c.tag_vals, c.ind_types, c.ind_values, c.ind_offs,
                                         c.ind_refs, dedup_hours);
END $$;
