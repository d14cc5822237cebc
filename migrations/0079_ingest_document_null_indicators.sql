-- 0079_ingest_document_null_indicators.sql - calseta_ingest_document() refuses an element
-- whose "indicators" is JSON null, and only that.
--
-- 0078's check used the jsonpath '$[*] ? (@.indicators == null)' in lax mode, which unwraps an
-- array before comparing: "indicators": [null] or [{...}, null] were refused too, which no
-- earlier body did (a null entry names no indicator). In strict mode the comparison sees the
-- member itself; a missing member is no match (the @? operator suppresses that error).
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
    ind AS ( -- each element's indicators, in order; the k-th sent as position k
        SELECT e.i, x.x->>'type' AS t, x.x->>'value' AS v, row_number() OVER (ORDER BY e.i, x.o) AS k
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
           ARRAY(SELECT ind.t FROM ind ORDER BY ind.k) AS ind_types,
           ARRAY(SELECT ind.v FROM ind ORDER BY ind.k) AS ind_values,
           ARRAY(SELECT 0 UNION ALL
                 SELECT (sum(coalesce(jsonb_array_length(x.indicators), 0)) OVER (ORDER BY x.i))::int
                   FROM e x ORDER BY 1) AS ind_offs,
           ARRAY(SELECT ind.k::int FROM ind ORDER BY ind.k) AS ind_refs
      INTO c
      FROM e;
    RETURN QUERY
    SELECT * FROM calseta_ingest_columns(c.titles, c.severities, c.source_names, c.descriptions,
                                         c.occurred, c.fingerprints, c.rule_refs, c.key_prefixes,
                                         c.raw_members, c.check_nums, c.payloads, c.tag_offs,
                                         c.tag_vals, c.ind_types, c.ind_values, c.ind_offs,
                                         c.ind_refs, dedup_hours);
END $$;
