-- The statements of parley_send_batch run on their cached generic plans.
-- PL/pgSQL plans each statement for its first five calls on a connection
-- and then keeps a generic plan only when it looks no dearer than those.
-- The decision query's custom plans (its arrays known) can look cheaper, so
-- some connections planned it again on every batch: 0.17 ms of a call of
-- about 1.3 ms (scripts/profile_postgres, the hot shape at 2,000 msg/s).
-- Every lookup in it is a unique-index probe with LIMIT 1, so the generic
-- plan makes the same probes (BENCHMARKS.md, "The send batch on generic plans").
-- The 8-argument function of 006 (kept for a rolling upgrade) is left as is.
ALTER FUNCTION parley_send_batch(uuid[], uuid[], uuid[], uuid[], text[], bigint[], int[], uuid[], int[], uuid[])
    SET plan_cache_mode = force_generic_plan;
