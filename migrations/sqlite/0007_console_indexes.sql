-- Aligned with migrations/postgres/0007, which indexes the operator's views across tenants (failed
-- or cancelled status, error class, key, creation time). SQLite gets none of them: its planner
-- would use none for the statements of those views (EXPLAIN QUERY PLAN) — it plans a statement
-- before its parameters are bound, so `($n IS NULL OR col = $n)` constrains nothing, and it takes
-- a partial index only where the query repeats the index's own terms — while every write would pay
-- for them. SQLite is the embedded default for one node and modest volumes.
SELECT 1;
