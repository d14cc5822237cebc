-- 0025_ingest_index_plans.sql - the group-commit function reaches every table by index.
--
-- calseta_ingest_batch() keeps one generic plan per connection (0019), made at its first call.
-- The planner sees a batch as jsonb_array_elements() rows, 100 per level by its default, so it
-- joined them to indicators, detection_rules and alerts with hash joins over sequential scans
-- whenever those tables were small at that moment - as they are when an intake starts on a new
-- database. The plan was then kept while the tables grew: every batch read all of indicators
-- (and, with de-duplication on, the alerts of a fingerprint) and the server's CPU per alert grew
-- with the table (measured on one stack: 0.79 ms per alert after 10 k alerts, 2.1 ms after 40 k).
-- A batch holds at most a few hundred elements and touches a handful of rows per element, so an
-- index lookup per element is the right plan at every table size: the function forbids the
-- other ones.
ALTER FUNCTION calseta_ingest_batch(JSONB, INTEGER)
    SET enable_seqscan = off;
ALTER FUNCTION calseta_ingest_batch(JSONB, INTEGER)
    SET enable_hashjoin = off;
ALTER FUNCTION calseta_ingest_batch(JSONB, INTEGER)
    SET enable_mergejoin = off;
