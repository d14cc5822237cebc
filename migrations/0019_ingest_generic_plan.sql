-- 0019_ingest_generic_plan.sql - the group-commit function keeps its plans.
--
-- PL/pgSQL plans each statement of calseta_ingest_batch() with its parameters (the batch, the
-- window) and, because a JSONB parameter tells the planner nothing, the generic plan never
-- looks cheaper than a custom one, so every call planned its dozen-CTE statement again:
-- about a third of the server's CPU for a batch of one alert, ~1 ms per transaction (measured
-- with perf: GetCachedPlan/standard_planner). The estimates do not depend on the values, so
-- the generic plan is the same plan, made once per connection.
ALTER FUNCTION calseta_ingest_batch(JSONB, INTEGER) SET plan_cache_mode = force_generic_plan;
