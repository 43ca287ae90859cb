-- Every limit set, tenants first, by name.
SELECT scope, name, max_running, starts_per_second, updated_at FROM limits ORDER BY scope DESC, name
