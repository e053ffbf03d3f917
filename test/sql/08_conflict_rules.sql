-- test/sql/08_conflict_rules.sql -- per-column conflict rules in ferry.apply_mutation: lww,
-- version, manual, set_union, counter, immutable; updates of tombstones; inserts of live
-- keys; ferry.set_conflict_rule errors (docs/sql-api.md, "Conflict rules").
BEGIN;
SELECT plan(95);

CREATE SCHEMA t08;
CREATE TABLE t08.docs (
    id         int PRIMARY KEY,
    ws         text NOT NULL,
    title      text,
    done       boolean NOT NULL DEFAULT false,
    note       text,
    ver        text,
    man        text,
    tags       text[],
    qty        int,
    score      numeric,
    ratio      float8,
    created_by text
);
SELECT ferry.enable_sync('t08.docs', 'ws');

CREATE FUNCTION pg_temp.mid(n int) RETURNS text LANGUAGE sql AS $$
    SELECT format('00000000-0000-4000-8000-%s', lpad(n::text, 12, '0'))
$$;
-- go(n, op, key id, changes, clock) applies a mutation of client c<n> as user u1 in
-- tenant w1 and keeps the result under n; r(n) is that result.
CREATE TEMP TABLE res (n int PRIMARY KEY, r jsonb);
CREATE FUNCTION pg_temp.go(n int, op text, id int, changes jsonb, clock text) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO res VALUES (n, ferry.apply_mutation(
        jsonb_build_object('id', pg_temp.mid(n), 'client_id', 'c' || n, 'table', 't08.docs', 'op', op,
                           'key', jsonb_build_object('id', id), 'changes', changes, 'clock', clock),
        '{"sub":"u1","tenants":["w1"]}'))
    RETURNING r
$$;
CREATE FUNCTION pg_temp.r(n int) RETURNS jsonb LANGUAGE sql AS $$ SELECT r FROM res WHERE res.n = $1 $$;
-- list(json array) is a sorted text[] (an absent list is empty).
CREATE FUNCTION pg_temp.list(a jsonb) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(e ORDER BY e), '{}') FROM jsonb_array_elements_text(coalesce(a, '[]')) e
$$;
CREATE FUNCTION pg_temp.version(i int) RETURNS bigint LANGUAGE sql AS $$
    SELECT ferry_version FROM t08.docs WHERE id = i
$$;

SELECT lives_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'ver', 'version')$$, 'set version rule');
SELECT lives_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'man', 'manual')$$, 'set manual rule');
SELECT lives_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'tags', 'set_union')$$, 'set set_union rule on text[]');
SELECT lives_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'qty', 'counter')$$, 'set counter rule on int');
SELECT lives_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'score', 'counter')$$, 'set counter rule on numeric');
SELECT lives_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'ratio', 'counter')$$, 'set counter rule on float8');
SELECT lives_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'created_by', 'immutable')$$, 'set immutable rule');
SELECT lives_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'note', 'lww')$$, 'set lww rule explicitly');

-- The rows, all inserted with an old clock (1700000000000 ms = 2023-11-14).
SELECT pg_temp.go(1, 'insert', 1, '{"ws":{"new":"w1"},"title":{"new":"a"},"done":{"new":false}}', '1700000000000-0-s');
SELECT pg_temp.go(2, 'insert', 2, '{"ws":{"new":"w1"},"title":{"new":"x"},"note":{"new":"n0"}}', '1700000000000-0-s');
SELECT pg_temp.go(3, 'insert', 3, '{"ws":{"new":"w1"},"title":{"new":"t"},"ver":{"new":"v1"}}', '1700000000000-0-s');
SELECT pg_temp.go(4, 'insert', 4, '{"ws":{"new":"w1"},"man":{"new":"m1"},"done":{"new":false}}', '1700000000000-0-s');
SELECT pg_temp.go(5, 'insert', 5, '{"ws":{"new":"w1"},"tags":{"new":["a","b","z"]}}', '1700000000000-0-s');
SELECT pg_temp.go(6, 'insert', 6, '{"ws":{"new":"w1"},"qty":{"new":10},"score":{"new":1.5},"ratio":{"new":0.5}}', '1700000000000-0-s');
SELECT pg_temp.go(7, 'insert', 7, '{"ws":{"new":"w1"},"created_by":{"new":"u1"}}', '1700000000000-0-s');
SELECT pg_temp.go(8, 'insert', 8, '{"ws":{"new":"w1"},"title":{"new":"gone"}}', '1700000000000-0-s');
SELECT is((SELECT count(*) FROM res WHERE r->>'status' = 'applied' AND (r->>'version')::int = 1), 8::bigint,
          'eight rows inserted at version 1');

-- ---- lww -------------------------------------------------------------------------------
SELECT pg_temp.go(101, 'update', 1, '{"title":{"old":"a","new":"b"}}', '1700000001000-0-a');
SELECT is(pg_temp.r(101)->>'status', 'applied', 'lww: first change applied');
-- A concurrent change (base a, server b) with an older clock loses; its other column applies.
SELECT pg_temp.go(102, 'update', 1, '{"title":{"old":"a","new":"c"},"done":{"old":false,"new":true}}', '1700000000500-0-b');
SELECT is(pg_temp.r(102)->>'status', 'applied', 'lww: older concurrent change: applied');
SELECT is(pg_temp.list(pg_temp.r(102)->'overridden'), ARRAY['title'], 'lww: the older clock''s column is listed in overridden');
SELECT is(pg_temp.r(102)#>>'{row,title}', 'b', 'lww: the server''s newer value stays (row)');
SELECT is((SELECT title FROM t08.docs WHERE id = 1), 'b', 'lww: the server''s newer value stays (table)');
SELECT is((SELECT done FROM t08.docs WHERE id = 1), true, 'lww: the non-concurrent column of the same mutation applied');
SELECT is(pg_temp.version(1), 3::bigint, 'lww: version bumped once by the partly applied mutation');
SELECT is((SELECT ferry_clock->>'title' FROM t08.docs WHERE id = 1), '1700000001000-0-a',
          'lww: the winning clock stays on the column');
-- A concurrent change with a newer clock wins.
SELECT pg_temp.go(103, 'update', 1, '{"title":{"old":"a","new":"d"}}', '1700000002000-0-c');
SELECT is(pg_temp.r(103)->>'status', 'applied', 'lww: newer concurrent change: applied');
SELECT is(pg_temp.list(pg_temp.r(103)->'overridden'), '{}'::text[], 'lww: nothing overridden');
SELECT is((SELECT title FROM t08.docs WHERE id = 1), 'd', 'lww: the newer clock''s value wins');
SELECT is((SELECT ferry_clock->>'title' FROM t08.docs WHERE id = 1), '1700000002000-0-c', 'lww: the column has the newer clock');
-- A non-concurrent change (base = server value) applies even with an old clock.
SELECT pg_temp.go(104, 'update', 1, '{"title":{"old":"d","new":"e"}}', '1700000000100-0-d');
SELECT is(pg_temp.r(104)->>'status', 'applied', 'lww: non-concurrent change with an old clock: applied');
SELECT is((SELECT title FROM t08.docs WHERE id = 1), 'e', 'lww: non-concurrent change written');
SELECT is(pg_temp.list(pg_temp.r(104)->'overridden'), '{}'::text[], 'lww: non-concurrent: nothing overridden');
-- A mutation whose only change loses.
SELECT pg_temp.go(105, 'update', 1, '{"title":{"old":"a","new":"z"}}', '1700000000050-0-h');
SELECT is(pg_temp.r(105)->>'status', 'applied', 'lww: a mutation whose only column lost: applied');
SELECT is(pg_temp.list(pg_temp.r(105)->'overridden'), ARRAY['title'], 'lww: ... with the column in overridden');
SELECT is((SELECT title FROM t08.docs WHERE id = 1), 'e', 'lww: ... and the server value kept');
-- Two changes to different columns from the same base never conflict, whatever the clocks.
SELECT pg_temp.go(106, 'update', 2, '{"title":{"old":"x","new":"y"}}', '1700000003000-0-f');
SELECT pg_temp.go(107, 'update', 2, '{"note":{"old":"n0","new":"n1"}}', '1700000000300-0-g');
SELECT is(pg_temp.r(106)->>'status' || '/' || (pg_temp.r(107)->>'status'), 'applied/applied',
          'different columns: both applied');
SELECT is(pg_temp.list(pg_temp.r(107)->'overridden'), '{}'::text[], 'different columns: nothing overridden');
SELECT is((SELECT title || '/' || note FROM t08.docs WHERE id = 2), 'y/n1', 'different columns: both written');
SELECT is(pg_temp.version(2), 3::bigint, 'different columns: two writes, version 3');

-- ---- version ---------------------------------------------------------------------------
SELECT pg_temp.go(111, 'update', 3, '{"ver":{"old":"v1","new":"v2"}}', '1700000001000-0-a');
SELECT is(pg_temp.r(111)->>'status', 'applied', 'version: non-concurrent change applied');
SELECT pg_temp.go(112, 'update', 3, '{"ver":{"old":"v1","new":"v3"},"title":{"old":"t","new":"t2"}}', '1700000009000-0-b');
SELECT is(pg_temp.r(112)->>'status', 'conflict', 'version: server value differs from base: conflict (even with a newer clock)');
SELECT is(pg_temp.list(pg_temp.r(112)->'conflicts'), ARRAY['ver'], 'version: conflicts lists the column');
SELECT is(pg_temp.r(112)#>>'{row,ver}', 'v2', 'version: row is the current server row');
SELECT is((pg_temp.r(112)->>'version')::int, 2, 'version: result version is the server''s');
SELECT is((SELECT ver || '/' || title FROM t08.docs WHERE id = 3), 'v2/t', 'version: nothing written (not even title)');
SELECT is(pg_temp.version(3), 2::bigint, 'version: version not bumped');
SELECT pg_temp.go(113, 'update', 3, '{"ver":{"old":"v2","new":"v3"}}', '1700000000001-0-c');
SELECT is(pg_temp.r(113)->>'status', 'applied', 'version: a change based on the server value applies (old clock)');
SELECT pg_temp.go(114, 'update', 3, '{"title":{"old":"t","new":"t3"}}', '1700000000001-0-c');
SELECT is(pg_temp.r(114)->>'status', 'applied', 'version: a mutation not touching the version column applies');
SELECT is((SELECT ver || '/' || title FROM t08.docs WHERE id = 3), 'v3/t3', 'version: both written');

-- ---- manual ----------------------------------------------------------------------------
SELECT pg_temp.go(121, 'update', 4, '{"man":{"old":"m1","new":"m2"}}', '1700000001000-0-a');
SELECT is(pg_temp.r(121)->>'status', 'applied', 'manual: non-concurrent change applied');
SELECT pg_temp.go(122, 'update', 4, '{"man":{"old":"m1","new":"m3"},"done":{"old":false,"new":true}}', '1700000009000-0-b');
SELECT is(pg_temp.r(122)->>'status', 'conflict', 'manual: concurrent change: conflict');
SELECT is(pg_temp.list(pg_temp.r(122)->'conflicts'), ARRAY['man'], 'manual: conflicts lists the column');
SELECT is(pg_temp.list(pg_temp.r(122)->'applied'), ARRAY['done'], 'manual: applied lists the other columns');
SELECT is(pg_temp.r(122)#>>'{row,man}', 'm2', 'manual: row keeps the server''s value');
SELECT is(pg_temp.r(122)#>>'{row,done}', 't', 'manual: row has the applied column');
SELECT is((SELECT man || '/' || done FROM t08.docs WHERE id = 4), 'm2/true', 'manual: table: server value kept, other column written');
SELECT is(pg_temp.version(4), 3::bigint, 'manual: the partial write bumped the version once');
SELECT is((pg_temp.r(122)->>'version')::int, 3, 'manual: result version is the row''s new version');

-- ---- set_union -------------------------------------------------------------------------
SELECT pg_temp.go(131, 'update', 5, '{"tags":{"old":["a","b","z"],"new":["a","b","z","x"]}}', '1700000001000-0-a');
SELECT is(pg_temp.r(131)->>'status', 'applied', 'set_union: server adds x');
SELECT pg_temp.go(132, 'update', 5, '{"tags":{"old":"{a,b,z}","new":"{a,b,y}"}}', '1700000000500-0-b');
SELECT is(pg_temp.r(132)->>'status', 'applied', 'set_union: concurrent client adds y and removes z: applied');
SELECT is((SELECT tags FROM t08.docs WHERE id = 5), ARRAY['a', 'b', 'x', 'y'],
          'set_union: three-way merge keeps x, adds y, removes z (server''s elements first, then the client''s additions)');
SELECT pg_temp.go(133, 'update', 5, '{"tags":{"old":["a"],"new":["a","b","q"]}}', '1700000000600-0-c');
SELECT is((SELECT tags FROM t08.docs WHERE id = 5), ARRAY['a', 'b', 'x', 'y', 'q'],
          'set_union: an element both sides have is not duplicated');
SELECT is(pg_temp.list(pg_temp.r(132)->'overridden'), '{}'::text[], 'set_union: nothing overridden');

-- ---- counter ---------------------------------------------------------------------------
SELECT pg_temp.go(141, 'update', 6, '{"qty":{"old":10,"new":13}}', '1700000001000-0-a');
SELECT is((SELECT qty FROM t08.docs WHERE id = 6), 13, 'counter: +3 gives 13');
SELECT pg_temp.go(142, 'update', 6, '{"qty":{"old":10,"new":8}}', '1700000000500-0-b');
SELECT is(pg_temp.r(142)->>'status', 'applied', 'counter: concurrent delta applied');
SELECT is((SELECT qty FROM t08.docs WHERE id = 6), 11, 'counter: -2 on the server''s 13 gives 11 (not 8)');
SELECT is(pg_temp.r(142)#>>'{row,qty}', '11', 'counter: row has the sum');
SELECT pg_temp.go(143, 'update', 6, '{"qty":{"old":"5","new":"6"}}', '1700000000500-0-c');
SELECT is((SELECT qty FROM t08.docs WHERE id = 6), 12, 'counter: text-form values, +1 gives 12');
SELECT pg_temp.go(144, 'update', 6, '{"score":{"old":1.5,"new":2.25}}', '1700000001000-0-a');
SELECT pg_temp.go(145, 'update', 6, '{"score":{"old":1.5,"new":1.0}}', '1700000000500-0-b');
SELECT is((SELECT score FROM t08.docs WHERE id = 6), 1.75, 'counter on numeric: 1.5 + 0.75 - 0.5 = 1.75');
SELECT pg_temp.go(146, 'update', 6, '{"ratio":{"old":0.5,"new":1.5}}', '1700000001000-0-a');
SELECT pg_temp.go(147, 'update', 6, '{"ratio":{"old":0.5,"new":0.75}}', '1700000000500-0-b');
SELECT is((SELECT ratio FROM t08.docs WHERE id = 6), 1.75::float8, 'counter on float8: 0.5 + 1 + 0.25 = 1.75');
SELECT pg_temp.go(148, 'update', 6, '{"qty":{"old":10,"new":null}}', '1700000000500-0-d');
SELECT ok((SELECT qty IS NULL FROM t08.docs WHERE id = 6), 'counter: setting NULL is a reset, not a delta');

-- ---- immutable -------------------------------------------------------------------------
SELECT is(pg_temp.r(7)#>>'{row,created_by}', 'u1', 'immutable: set by the insert');
SELECT pg_temp.go(151, 'update', 7, '{"created_by":{"old":"u1","new":"u2"}}', '1700000009000-0-a');
SELECT is(pg_temp.r(151)#>>'{error,code}', 'immutable_column', 'immutable: a change is rejected immutable_column');
SELECT is((SELECT created_by FROM t08.docs WHERE id = 7), 'u1', 'immutable: value kept');
SELECT is(pg_temp.version(7), 1::bigint, 'immutable: nothing written');

-- ---- tombstones and live keys ----------------------------------------------------------
SELECT pg_temp.go(161, 'delete', 8, '{}', '1700000001000-0-a');
SELECT is(pg_temp.r(161)->>'status', 'applied', 'delete applied');
SELECT pg_temp.go(162, 'update', 8, '{"title":{"old":"gone","new":"edited offline"}}', '1700000002000-0-b');
SELECT is(pg_temp.r(162)->>'status', 'conflict', 'update of a tombstone: conflict');
SELECT is(pg_temp.list(pg_temp.r(162)->'conflicts'), ARRAY['ferry_deleted_at'], 'update of a tombstone: conflict on ferry_deleted_at');
SELECT is((SELECT title FROM t08.docs WHERE id = 8), 'gone', 'update of a tombstone: nothing written');
SELECT is(pg_temp.version(8), 2::bigint, 'update of a tombstone: version kept');
SELECT pg_temp.go(163, 'insert', 8, '{"ws":{"new":"w1"},"title":{"new":"edited offline"}}', '1700000002000-0-b');
SELECT is(pg_temp.r(163)->>'status', 'applied', 're-insert of a tombstoned key: applied');
SELECT is((pg_temp.r(163)->>'version')::int, 3, 're-insert resurrects at tombstone version + 1');
SELECT ok((SELECT ferry_deleted_at IS NULL AND title = 'edited offline' FROM t08.docs WHERE id = 8),
          're-insert: live with the new values');

SELECT pg_temp.go(171, 'insert', 1, '{"ws":{"new":"w1"},"title":{"new":"other"},"done":{"new":true}}', '1700000009000-0-a');
SELECT is(pg_temp.r(171)->>'status', 'conflict', 'insert of a live key: conflict');
SELECT is(pg_temp.list(pg_temp.r(171)->'conflicts'), ARRAY['title'], 'insert of a live key: conflicts are the columns that differ');
SELECT is((SELECT title FROM t08.docs WHERE id = 1), 'e', 'insert of a live key: nothing written');
CREATE TEMP TABLE v1 AS SELECT ferry_version AS v FROM t08.docs WHERE id = 1;
SELECT pg_temp.go(172, 'insert', 1, '{"ws":{"new":"w1"},"title":{"new":"e"},"done":{"new":true}}', '1700000009000-0-a');
SELECT is(pg_temp.r(172)->>'status', 'applied', 'an identical insert of a live key: applied');
SELECT is(pg_temp.version(1), (SELECT v FROM v1), 'an identical insert writes nothing');

-- ---- changing a rule -------------------------------------------------------------------
SELECT ferry.set_conflict_rule('t08.docs', 'ver', 'lww');
SELECT pg_temp.go(181, 'update', 3, '{"ver":{"old":"v1","new":"v9"}}', '1700000009000-0-z');
SELECT is(pg_temp.r(181)->>'status', 'applied', 'after set_conflict_rule(ver, lww) a stale change is no conflict');
SELECT is((SELECT ver FROM t08.docs WHERE id = 3), 'v9', '... and the newer clock wins');

-- A table with a version column refuses a delete whose base_version is behind the row.
SELECT ferry.set_conflict_rule('t08.docs', 'ver', 'version');
INSERT INTO res VALUES (191, ferry.apply_mutation(
    '{"id":"00000000-0000-4000-8000-000000000191","client_id":"c191","table":"t08.docs","op":"delete",
      "key":{"id":3},"base_version":1,"clock":"1700000009000-0-z"}', '{"sub":"u1","tenants":["w1"]}'));
SELECT is(pg_temp.r(191)->>'status', 'conflict', 'delete with a stale base_version on a table with a version column: conflict');
SELECT is(pg_temp.list(pg_temp.r(191)->'conflicts'), ARRAY['ferry_version'], '... on ferry_version');
SELECT ok((SELECT ferry_deleted_at IS NULL FROM t08.docs WHERE id = 3), '... and the row is not deleted');
INSERT INTO res VALUES (192, ferry.apply_mutation(jsonb_build_object(
    'id', '00000000-0000-4000-8000-000000000192', 'client_id', 'c192', 'table', 't08.docs', 'op', 'delete',
    'key', '{"id":3}'::jsonb, 'base_version', pg_temp.version(3), 'clock', '1700000009000-0-z'), '{"sub":"u1","tenants":["w1"]}'));
SELECT is(pg_temp.r(192)->>'status', 'applied', 'delete with the current base_version: applied');

-- ---- set_conflict_rule errors ----------------------------------------------------------
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'title', 'newest')$$, 'FY030', NULL, 'unknown rule: FY030');
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'title', 'set_union')$$, 'FY030', NULL, 'set_union on text: FY030');
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'qty', 'set_union')$$, 'FY030', NULL, 'set_union on int: FY030');
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'title', 'counter')$$, 'FY030', NULL, 'counter on text: FY030');
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'done', 'counter')$$, 'FY030', NULL, 'counter on boolean: FY030');
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'id', 'counter')$$, 'FY030', NULL, 'a rule on the key column: FY030');
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'id', 'manual')$$, 'FY030', NULL, 'manual on the key column: FY030');
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'ws', 'version')$$, 'FY030', NULL, 'a rule on the tenant column: FY030');
SELECT throws_ok($$SELECT ferry.set_conflict_rule('t08.docs', 'nope', 'lww')$$, '42703', NULL, 'missing column: 42703');

SELECT * FROM finish();
ROLLBACK;
