-- bench/extension/setup.sql -- the tables the extension benchmark writes to (psql, database ferry_bench).
--
-- Two identical todos-like tables of :rows rows: bench_plain stays an ordinary table,
-- bench_synced joins ferry (trigger, ferry_* columns, REPLICA IDENTITY FULL, publication).
-- ferry.mutations gets :history old results, as a server that has been taking writes
-- for a while has (ferry.idempotency_ttl keeps them 24 h).
\set ON_ERROR_STOP 1

CREATE EXTENSION ferry;

CREATE TABLE bench_plain (
    id           int PRIMARY KEY,
    workspace_id text NOT NULL,
    title        text,
    done         bool,
    tags         text[],
    pomodoros    int
);
CREATE TABLE bench_synced (LIKE bench_plain INCLUDING ALL);

-- 10 tenants, w0..w9; the claims of apply_update.pgbench name them all.
INSERT INTO bench_plain
SELECT g, 'w' || (g % 10), 'todo ' || g, false, '{home}', 0
FROM generate_series(1, :rows) AS g;
INSERT INTO bench_synced SELECT * FROM bench_plain;

SELECT ferry.enable_sync('bench_synced', 'workspace_id');
SELECT ferry.set_conflict_rule('bench_synced', 'pomodoros', 'counter');
SELECT ferry.set_conflict_rule('bench_synced', 'tags', 'set_union');

-- bench_fill_history(n) records n results of mutations applied an hour ago by other
-- clients (client_id 'history'); run.sh calls it again after it purged them all.
CREATE FUNCTION bench_fill_history(n int) RETURNS void LANGUAGE sql AS $$
    INSERT INTO ferry.mutations (id, client_id, sub, status, result, applied_at)
    SELECT id, 'history', 'u' || (g % 100), 'applied',
           jsonb_build_object('id', id, 'status', 'applied', 'version', 2,
               'row', jsonb_build_object('id', g::text, 'workspace_id', 'w' || (g % 10),
                   'title', 'todo ' || g, 'done', 'f', 'tags', '{home}', 'pomodoros', '0',
                   'ferry_version', '2', 'ferry_deleted_at', null,
                   'ferry_updated_at', (now() - interval '1 hour')::text,
                   'ferry_xid', '1000', 'ferry_clock', '{"title": "1700000000000-0-c1"}')),
           now() - interval '1 hour'
    FROM (SELECT g, gen_random_uuid() AS id FROM generate_series(1, n) AS g) AS h;
$$;
SELECT bench_fill_history(:history);

-- run.sh vacuums between runs; autovacuum on these tables in the middle of a run would
-- only add noise to that run.
ALTER TABLE bench_plain SET (autovacuum_enabled = off);
ALTER TABLE bench_synced SET (autovacuum_enabled = off);

VACUUM ANALYZE bench_plain, bench_synced, ferry.mutations;
