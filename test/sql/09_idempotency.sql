-- test/sql/09_idempotency.sql -- mutation ids: replays answer duplicate with the original
-- result, ids reused by another client or user are refused, ferry.purge_mutations
-- (docs/sql-api.md, "Applying a client's write").
BEGIN;
SELECT plan(39);

CREATE SCHEMA t09;
CREATE TABLE t09.items (id int PRIMARY KEY, ws text NOT NULL, title text, n int NOT NULL DEFAULT 0, ver text);
SELECT ferry.enable_sync('t09.items', 'ws');
SELECT ferry.set_conflict_rule('t09.items', 'n', 'counter');
SELECT ferry.set_conflict_rule('t09.items', 'ver', 'version');
INSERT INTO t09.items (id, ws, title, ver) VALUES (1, 'w1', 'a', 'v1');

-- m(id, changes, client, row id, op) builds a mutation; go(step, mutation, sub) applies it as
-- user sub in tenant w1 and keeps the result under step.
CREATE FUNCTION pg_temp.m(id text, changes jsonb, client text DEFAULT 'c1', rid int DEFAULT 1,
                          op text DEFAULT 'update') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', id, 'client_id', client, 'table', 't09.items', 'op', op,
                              'key', jsonb_build_object('id', rid), 'changes', changes,
                              'clock', '1700000001000-0-' || client)
$$;
CREATE TEMP TABLE res (step int PRIMARY KEY, r jsonb);
CREATE FUNCTION pg_temp.go(step int, m jsonb, sub text DEFAULT 'u1') RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO res VALUES (step, ferry.apply_mutation(m, jsonb_build_object('sub', sub, 'tenants', jsonb_build_array('w1'))))
    RETURNING r
$$;
CREATE FUNCTION pg_temp.r(step int) RETURNS jsonb LANGUAGE sql AS $$ SELECT r FROM res WHERE res.step = $1 $$;

SELECT has_table('ferry', 'mutations', 'results are recorded in ferry.mutations');

-- A counter increment: applying it twice would show.
SELECT pg_temp.go(1, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"n":{"old":0,"new":5}}'));
SELECT is(pg_temp.r(1)->>'status', 'applied', 'first application: applied');
SELECT is((pg_temp.r(1)->>'version')::int, 2, 'first application: version 2');

SELECT pg_temp.go(2, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"n":{"old":0,"new":5}}'));
SELECT is(pg_temp.r(2)->>'status', 'duplicate', 'the same mutation again: duplicate');
SELECT is(pg_temp.r(2)->'original', pg_temp.r(1), 'duplicate: original is the first result');
SELECT is(pg_temp.r(2)->>'id', '10000000-0000-4000-8000-000000000001', 'duplicate: carries the id');
SELECT is((SELECT n FROM t09.items WHERE id = 1), 5, 'written once: the counter is 5, not 10');
SELECT is((SELECT ferry_version FROM t09.items WHERE id = 1), 2::bigint, 'written once: version bumped once');

SELECT pg_temp.go(3, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"n":{"old":0,"new":5}}'));
SELECT is(pg_temp.r(3)->>'status', 'duplicate', 'a third time: duplicate');
SELECT is(pg_temp.r(3)->'original', pg_temp.r(1), 'a third time: the same original');

-- The same id and client with another payload is still that mutation: duplicate.
SELECT pg_temp.go(4, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"title":{"old":"a","new":"zz"}}'));
SELECT is(pg_temp.r(4)->>'status', 'duplicate', 'the same id with another payload: duplicate');
SELECT is((SELECT title FROM t09.items WHERE id = 1), 'a', 'the other payload was not written');

-- The same id from another client or another user.
SELECT pg_temp.go(5, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"n":{"old":0,"new":5}}', 'c2'));
SELECT is(pg_temp.r(5)->>'status', 'rejected', 'the same id from another client_id: rejected');
SELECT is(pg_temp.r(5)#>>'{error,code}', 'id_reused', 'another client_id: id_reused');
SELECT ok(NOT (pg_temp.r(5) ? 'original') AND NOT (pg_temp.r(5) ? 'row'),
          'id_reused reveals nothing of the original (no original, no row)');
SELECT pg_temp.go(6, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"n":{"old":0,"new":5}}'), 'u2');
SELECT is(pg_temp.r(6)#>>'{error,code}', 'id_reused', 'the same id from another sub: id_reused');
SELECT ok(NOT (pg_temp.r(6) ? 'original'), 'another sub: no original');
SELECT is((SELECT n FROM t09.items WHERE id = 1), 5, 'nothing written by the reused ids');

-- A rejection is recorded too: the replay is a duplicate even once it would succeed.
SELECT pg_temp.go(7, pg_temp.m('10000000-0000-4000-8000-000000000002', '{"title":{"old":"b","new":"c"}}', 'c1', 2));
SELECT is(pg_temp.r(7)#>>'{error,code}', 'not_found', 'an update of a missing row: not_found');
INSERT INTO t09.items (id, ws, title) VALUES (2, 'w1', 'b');
SELECT pg_temp.go(8, pg_temp.m('10000000-0000-4000-8000-000000000002', '{"title":{"old":"b","new":"c"}}', 'c1', 2));
SELECT is(pg_temp.r(8)->>'status', 'duplicate', 'the replay of a rejected mutation: duplicate');
SELECT is(pg_temp.r(8)->'original', pg_temp.r(7), 'its original is the rejection');
SELECT is((SELECT title FROM t09.items WHERE id = 2), 'b', 'the replay wrote nothing');

-- A conflict is recorded too.
UPDATE t09.items SET ver = 'v2' WHERE id = 1;
SELECT pg_temp.go(9, pg_temp.m('10000000-0000-4000-8000-000000000003', '{"ver":{"old":"v1","new":"v3"}}'));
SELECT is(pg_temp.r(9)->>'status', 'conflict', 'a stale version column: conflict');
UPDATE t09.items SET ver = 'v1' WHERE id = 1;
SELECT pg_temp.go(10, pg_temp.m('10000000-0000-4000-8000-000000000003', '{"ver":{"old":"v1","new":"v3"}}'));
SELECT is(pg_temp.r(10)->'original', pg_temp.r(9), 'the replay of a conflict: its original is the conflict');
SELECT is((SELECT ver FROM t09.items WHERE id = 1), 'v1', 'the replay of a conflict wrote nothing');

-- An insert replayed is a duplicate, not a conflict with its own row.
SELECT pg_temp.go(11, pg_temp.m('10000000-0000-4000-8000-000000000004', '{"ws":{"new":"w1"},"title":{"new":"new"}}',
                                'c1', 3, 'insert'));
SELECT is(pg_temp.r(11)->>'status', 'applied', 'an insert: applied');
SELECT pg_temp.go(12, pg_temp.m('10000000-0000-4000-8000-000000000004', '{"ws":{"new":"w1"},"title":{"new":"new"}}',
                                'c1', 3, 'insert'));
SELECT is(pg_temp.r(12)->>'status', 'duplicate', 'the insert replayed: duplicate');
SELECT is((SELECT ferry_version FROM t09.items WHERE id = 3), 1::bigint, 'the insert was written once');

-- ---- purge_mutations -------------------------------------------------------------------
SELECT lives_ok($$SELECT ferry.purge_mutations('1 hour')$$, 'purge_mutations(''1 hour'')');
SELECT pg_temp.go(13, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"n":{"old":0,"new":5}}'));
SELECT is(pg_temp.r(13)->>'status', 'duplicate', 'results younger than older_than are kept');
SELECT lives_ok($$SELECT ferry.purge_mutations()$$, 'purge_mutations() (idempotency_ttl, 24 h)');
SELECT pg_temp.go(14, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"n":{"old":0,"new":5}}'));
SELECT is(pg_temp.r(14)->>'status', 'duplicate', 'results younger than ferry.idempotency_ttl are kept');

-- Age every recorded result by two days. The spec names ferry.mutations but not its
-- columns: every timestamptz column of it is moved back.
DO $$
DECLARE c name;
BEGIN
    FOR c IN SELECT attname FROM pg_attribute
              WHERE attrelid = 'ferry.mutations'::regclass AND attnum > 0 AND NOT attisdropped
                AND atttypid = 'timestamptz'::regtype
    LOOP
        EXECUTE format('UPDATE ferry.mutations SET %I = %I - interval ''2 days''', c, c);
    END LOOP;
END $$;
CREATE TEMP TABLE aged AS SELECT count(*) AS n FROM ferry.mutations;
SELECT cmp_ok((SELECT n FROM aged), '>=', 4::bigint, 'ferry.mutations holds (at least) this file''s four recorded ids');

-- A fresh one, after the aging.
SELECT pg_temp.go(15, pg_temp.m('10000000-0000-4000-8000-000000000005', '{"title":{"old":"b","new":"fresh"}}', 'c1', 2));

SELECT set_config('ferry.idempotency_ttl', '3d', true);
SELECT is(ferry.purge_mutations(), 0::bigint, 'with ferry.idempotency_ttl = 3 days nothing two days old goes');
SELECT set_config('ferry.idempotency_ttl', '24h', true);
SELECT is(ferry.purge_mutations(), (SELECT n FROM aged), 'purge_mutations() removes every result older than 24 h');
SELECT is(ferry.purge_mutations(), 0::bigint, 'a second purge removes nothing');

SELECT pg_temp.go(16, pg_temp.m('10000000-0000-4000-8000-000000000005', '{"title":{"old":"b","new":"fresh"}}', 'c1', 2));
SELECT is(pg_temp.r(16)->>'status', 'duplicate', 'the fresh result survived the purge');
SELECT pg_temp.go(17, pg_temp.m('10000000-0000-4000-8000-000000000001', '{"title":{"old":"a","new":"again"}}', 'c2'));
SELECT is(pg_temp.r(17)->>'status', 'applied', 'a purged id is free again (another client may use it)');
SELECT is((SELECT title FROM t09.items WHERE id = 1), 'again', 'and it was written');

SELECT * FROM finish();
ROLLBACK;
