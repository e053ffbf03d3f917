-- test/sql/11_deltas.sql -- ferry.snapshot_cursor and ferry.changes_since: initial loads,
-- deltas, pagination, tenant and rule filtering, must_refetch, malformed cursors
-- (docs/sql-api.md, "Exact deltas").
--
-- Everything here runs in one transaction, so a real cursor taken here sees this
-- transaction's own writes as visible. Deltas are therefore taken from a cursor built by
-- hand, "X:X:" with X this transaction's xid (the format is pg_current_snapshot's): in it,
-- this transaction is not yet visible, while rows written before enable_sync (NULL
-- ferry_xid) count as older than every cursor. test/extension/deltas_inflight.c covers
-- real cursors across transactions, and cursors taken after a committed purge or TRUNCATE.
-- (A cursor taken inside this transaction need not see this transaction's own writes as
-- visible: pg_current_snapshot's xmax may be this transaction's own xid.)
BEGIN;
SELECT plan(51);

CREATE SCHEMA t11;
CREATE TABLE t11.d (id int PRIMARY KEY, ws text NOT NULL, owner text, title text, shared boolean NOT NULL DEFAULT false);
INSERT INTO t11.d VALUES
    (1, 'w1', 'u1', 'one', false),
    (2, 'w1', 'u2', 'two', false),
    (3, 'w1', 'u1', 'three', false),
    (4, 'w1', 'u2', 'four', true),
    (5, 'w1', 'u3', 'five', false),
    (10, 'w2', 'u1', 'ten', false);
SELECT ferry.enable_sync('t11.d', 'ws');

-- cs(cursor, claims, max_rows) calls changes_since on t11.d; ids(result) lists its row ids.
CREATE FUNCTION pg_temp.cs(cur text, claims jsonb DEFAULT '{"sub":"u1","tenants":["w1"]}', max_rows int DEFAULT 1000)
RETURNS jsonb LANGUAGE sql AS $$ SELECT ferry.changes_since('t11.d', cur, claims, max_rows) $$;
CREATE FUNCTION pg_temp.ids(r jsonb) RETURNS int[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg((e->>'id')::int ORDER BY o), '{}')
      FROM jsonb_array_elements(r -> 'rows') WITH ORDINALITY AS x(e, o)
$$;
CREATE TEMP TABLE cur AS SELECT format('%s:%s:', pg_current_xact_id(), pg_current_xact_id()) AS x;
CREATE FUNCTION pg_temp.x() RETURNS text LANGUAGE sql AS $$ SELECT x FROM cur $$;

-- snapshot_cursor.
SELECT function_returns('ferry', 'snapshot_cursor', '{}'::name[], 'text', 'snapshot_cursor() returns text');
SELECT matches(ferry.snapshot_cursor(), '^[0-9]+:[0-9]+:[0-9,]*$', 'snapshot_cursor() is xmin:xmax:xip');
SELECT is(ferry.snapshot_cursor(), pg_current_snapshot()::text, 'snapshot_cursor() is pg_current_snapshot() as text');

-- The initial load: every live row, in key order.
SELECT is(pg_temp.ids(pg_temp.cs(NULL)), ARRAY[1, 2, 3, 4, 5], 'NULL cursor: every live row of the tenant, by key');
SELECT is(pg_temp.ids(pg_temp.cs('')), ARRAY[1, 2, 3, 4, 5], 'empty cursor: the same');
SELECT is(pg_temp.cs(NULL)->'has_more', 'false'::jsonb, 'initial load in one page: has_more false');
SELECT ok(length(pg_temp.cs(NULL)->>'cursor') > 0, 'initial load: a cursor for the next call');
SELECT is(pg_temp.cs(NULL)#>>'{rows,0,title}', 'one', 'rows carry the columns');
SELECT is(pg_temp.cs(NULL)#>>'{rows,0,shared}', 'f', 'rows are in text form');
SELECT is(pg_temp.cs(NULL)#>>'{rows,0,ferry_version}', '1', 'rows carry ferry_version');
SELECT ok(pg_temp.cs(NULL)->'rows'->0 ? 'ferry_deleted_at', 'rows carry ferry_deleted_at');

-- Writes after the cursor.
UPDATE t11.d SET title = 'two!' WHERE id = 2;
DELETE FROM t11.d WHERE id = 3;
INSERT INTO t11.d VALUES (6, 'w1', 'u1', 'six', false);

SELECT is(pg_temp.ids(pg_temp.cs(pg_temp.x())), ARRAY[2, 3, 6], 'delta: only rows written after the cursor, by key');
SELECT is(pg_temp.cs(pg_temp.x())#>>'{rows,0,title}', 'two!', 'delta: the updated row as it is now');
SELECT ok(pg_temp.cs(pg_temp.x())#>>'{rows,1,ferry_deleted_at}' IS NOT NULL, 'delta: the tombstone is included, with ferry_deleted_at');
SELECT is(pg_temp.cs(pg_temp.x())#>>'{rows,1,ferry_version}', '2', 'delta: the tombstone''s version');
SELECT is(pg_temp.cs(pg_temp.x())->'has_more', 'false'::jsonb, 'delta in one page: has_more false');
SELECT is(pg_temp.ids(pg_temp.cs(NULL)), ARRAY[1, 2, 4, 5, 6], 'initial load: no tombstone');

-- Pagination of the initial load: 5 rows, 2 a page.
CREATE TEMP TABLE pages (n int PRIMARY KEY, r jsonb);
INSERT INTO pages SELECT 1, pg_temp.cs(NULL, '{"sub":"u1","tenants":["w1"]}', 2);
INSERT INTO pages SELECT 2, pg_temp.cs((SELECT r->>'cursor' FROM pages WHERE n = 1), '{"sub":"u1","tenants":["w1"]}', 2);
INSERT INTO pages SELECT 3, pg_temp.cs((SELECT r->>'cursor' FROM pages WHERE n = 2), '{"sub":"u1","tenants":["w1"]}', 2);
SELECT is(pg_temp.ids(r), ARRAY[1, 2], 'page 1: rows 1, 2') FROM pages WHERE n = 1;
SELECT is(r->'has_more', 'true'::jsonb, 'page 1: has_more') FROM pages WHERE n = 1;
SELECT is(pg_temp.ids(r), ARRAY[4, 5], 'page 2: rows 4, 5') FROM pages WHERE n = 2;
SELECT is(r->'has_more', 'true'::jsonb, 'page 2: has_more') FROM pages WHERE n = 2;
SELECT is(pg_temp.ids(r), ARRAY[6], 'page 3: row 6') FROM pages WHERE n = 3;
SELECT is(r->'has_more', 'false'::jsonb, 'page 3: no more') FROM pages WHERE n = 3;
SELECT is((SELECT array_agg(DISTINCT i ORDER BY i) FROM pages, unnest(pg_temp.ids(r)) i), ARRAY[1, 2, 4, 5, 6],
          'the pages together: no row missing');
SELECT matches((SELECT r->>'cursor' FROM pages WHERE n = 3), '^[0-9]+:[0-9]+:[0-9,]*$',
               'the last page''s cursor is a snapshot');
SELECT ok(pg_temp.cs((SELECT r->>'cursor' FROM pages WHERE n = 3)) ? 'rows',
          'the last page''s cursor is accepted by changes_since');

-- Pagination of a delta: rows 2, 3, 6, 2 a page.
INSERT INTO pages SELECT 4, pg_temp.cs(pg_temp.x(), '{"sub":"u1","tenants":["w1"]}', 2);
INSERT INTO pages SELECT 5, pg_temp.cs((SELECT r->>'cursor' FROM pages WHERE n = 4), '{"sub":"u1","tenants":["w1"]}', 2);
SELECT is(pg_temp.ids(r), ARRAY[2, 3], 'delta page 1: rows 2, 3') FROM pages WHERE n = 4;
SELECT is(r->'has_more', 'true'::jsonb, 'delta page 1: has_more') FROM pages WHERE n = 4;
SELECT is(pg_temp.ids(r), ARRAY[6], 'delta page 2: row 6') FROM pages WHERE n = 5;
SELECT is(r->'has_more', 'false'::jsonb, 'delta page 2: no more') FROM pages WHERE n = 5;

-- Tenants.
SELECT is(pg_temp.ids(pg_temp.cs(NULL, '{"sub":"u1","tenants":["w2"]}')), ARRAY[10], 'initial load of tenant w2: its row only');
SELECT is(pg_temp.ids(pg_temp.cs(pg_temp.x(), '{"sub":"u1","tenants":["w2"]}')), '{}'::int[],
          'delta for tenant w2: none of w1''s changes');
SELECT is(pg_temp.ids(pg_temp.cs(NULL, '{"sub":"u1","tenants":["w3"]}')), '{}'::int[], 'another tenant: no rows');
INSERT INTO t11.d VALUES (11, 'w2', 'u1', 'eleven', false);
SELECT is(pg_temp.ids(pg_temp.cs(pg_temp.x(), '{"sub":"u1","tenants":["w2"]}')), ARRAY[11], 'delta for tenant w2: its new row');
SELECT is(pg_temp.ids(pg_temp.cs(pg_temp.x())), ARRAY[2, 3, 6], 'delta for tenant w1: not w2''s new row');

-- Two users of one workspace with different read rules.
SELECT ferry.add_rule('t11.d', 'mine', $$owner = ferry.claim('sub')$$);
SELECT ferry.add_rule('t11.d', 'shared', 'shared');
SELECT is(pg_temp.ids(pg_temp.cs(NULL, '{"sub":"u1","tenants":["w1"]}')), ARRAY[1, 4, 6], 'u1 loads its rows and the shared one');
SELECT is(pg_temp.ids(pg_temp.cs(NULL, '{"sub":"u2","tenants":["w1"]}')), ARRAY[2, 4], 'u2 loads its rows and the shared one');
SELECT is(pg_temp.ids(pg_temp.cs(pg_temp.x(), '{"sub":"u1","tenants":["w1"]}')), ARRAY[3, 6], 'u1''s delta: its tombstone and new row');
SELECT is(pg_temp.ids(pg_temp.cs(pg_temp.x(), '{"sub":"u2","tenants":["w1"]}')), ARRAY[2], 'u2''s delta: its updated row');
SELECT ferry.drop_rule('t11.d', 'mine');
SELECT ferry.drop_rule('t11.d', 'shared');

-- A purge after the cursor: must_refetch.
UPDATE t11.d SET ferry_deleted_at = now() - interval '40 days' WHERE id = 3;
SELECT ok(NOT coalesce((pg_temp.cs(pg_temp.x())->>'must_refetch')::boolean, false), 'before the purge: no must_refetch');
SELECT is(ferry.purge_tombstones(), 1::bigint, 'purge the tombstone');
SELECT is(pg_temp.cs(pg_temp.x())->'must_refetch', 'true'::jsonb, 'a cursor older than a purge: must_refetch');
SELECT ok(length(pg_temp.cs(pg_temp.x())->>'reason') > 0, 'must_refetch gives a reason');
SELECT ok(NOT (pg_temp.cs(pg_temp.x()) ? 'rows'), 'must_refetch gives no rows');
SELECT is(pg_temp.ids(pg_temp.cs(NULL)), ARRAY[1, 2, 4, 5, 6], 'after must_refetch a NULL cursor loads again');

-- TRUNCATE: must_refetch.
CREATE TABLE t11.tr (id int PRIMARY KEY, ws text NOT NULL);
INSERT INTO t11.tr VALUES (1, 'w1'), (2, 'w1');
SELECT ferry.enable_sync('t11.tr', 'ws');
INSERT INTO t11.tr VALUES (3, 'w1');
SELECT is(pg_temp.ids(ferry.changes_since('t11.tr', pg_temp.x(), '{"sub":"u1","tenants":["w1"]}')), ARRAY[3],
          'before TRUNCATE: a delta');
TRUNCATE t11.tr;
SELECT is(ferry.changes_since('t11.tr', pg_temp.x(), '{"sub":"u1","tenants":["w1"]}')->'must_refetch', 'true'::jsonb,
          'a cursor older than a TRUNCATE: must_refetch');
SELECT is(pg_temp.ids(ferry.changes_since('t11.tr', NULL, '{"sub":"u1","tenants":["w1"]}')), '{}'::int[],
          'after TRUNCATE the initial load is empty');

-- Malformed cursors.
SELECT throws_ok($$SELECT ferry.changes_since('t11.d', 'garbage', '{"sub":"u1","tenants":["w1"]}')$$, 'FY050', NULL,
                 'malformed cursor ''garbage'': FY050');
SELECT throws_ok($$SELECT ferry.changes_since('t11.d', '12:x:', '{"sub":"u1","tenants":["w1"]}')$$, 'FY050', NULL,
                 'malformed cursor ''12:x:'': FY050');
SELECT throws_ok($$SELECT ferry.changes_since('t11.d', '20:10:', '{"sub":"u1","tenants":["w1"]}')$$, 'FY050', NULL,
                 'malformed cursor ''20:10:'' (xmax below xmin): FY050');

SELECT * FROM finish();
ROLLBACK;
