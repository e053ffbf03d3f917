-- test/sql/07_apply_basic.sql -- ferry.apply_mutation: applied inserts, updates and
-- deletes, and every rejection code (docs/sql-api.md, "Applying a client's write").
BEGIN;
SELECT plan(92);

CREATE SCHEMA t07;
CREATE TABLE t07.todos (
    id         int PRIMARY KEY,
    ws         text NOT NULL,
    owner      text,
    title      text,
    done       boolean NOT NULL DEFAULT false,
    pri        int CHECK (pri >= 0),
    tags       text[],
    created_by text
);
SELECT ferry.enable_sync('t07.todos', 'ws');
SELECT ferry.set_conflict_rule('t07.todos', 'created_by', 'immutable');
CREATE TABLE t07.plain (id int PRIMARY KEY, ws text NOT NULL);
CREATE TABLE t07.kinds (id int PRIMARY KEY, ws text NOT NULL, meta jsonb, due timestamptz, amount numeric, day date);
SELECT ferry.enable_sync('t07.kinds', 'ws');
CREATE TABLE t07.pairs (a int, b text, ws text NOT NULL, val text, PRIMARY KEY (a, b));
SELECT ferry.enable_sync('t07.pairs', 'ws');
SET LOCAL TimeZone = 'UTC';

-- mid(n) is a fixed mutation id; mut(...) builds a mutation; go(n, mutation, claims)
-- applies it and keeps the result under n in table res.
CREATE FUNCTION pg_temp.mid(n int) RETURNS text LANGUAGE sql AS $$
    SELECT format('00000000-0000-4000-8000-%s', lpad(n::text, 12, '0'))
$$;
CREATE FUNCTION pg_temp.mut(n int, op text, key jsonb, changes jsonb, clock text DEFAULT NULL,
                            tbl text DEFAULT 't07.todos') RETURNS jsonb LANGUAGE sql AS $$
    SELECT CASE WHEN clock IS NULL THEN m - 'clock' ELSE m END - CASE WHEN key IS NULL THEN 'key' ELSE '' END
      FROM (SELECT jsonb_build_object('id', pg_temp.mid(n), 'client_id', 'c1', 'table', tbl, 'op', op,
                                      'key', key, 'changes', changes, 'clock', clock) AS m) s
$$;
CREATE TEMP TABLE res (n int PRIMARY KEY, r jsonb);
CREATE FUNCTION pg_temp.go(n int, m jsonb, claims jsonb DEFAULT '{"sub":"u1","tenants":["w1"],"role":"member"}')
RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO res VALUES (n, ferry.apply_mutation(m, claims)) RETURNING r
$$;
CREATE FUNCTION pg_temp.r(n int) RETURNS jsonb LANGUAGE sql AS $$ SELECT r FROM res WHERE res.n = $1 $$;
CREATE FUNCTION pg_temp.code(n int) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN r->>'status' = 'rejected' THEN r #>> '{error,code}' ELSE 'status ' || (r->>'status') END
      FROM res WHERE res.n = $1
$$;

-- ---- applied ---------------------------------------------------------------------------

-- Insert, native JSON values, key only in "key".
SELECT pg_temp.go(1, pg_temp.mut(1, 'insert', '{"id": 1}',
    '{"ws": {"new": "w1"}, "owner": {"new": "u1"}, "title": {"new": "a"}, "done": {"new": false},
      "pri": {"new": 1}, "tags": {"new": ["x", "y"]}, "created_by": {"new": "u1"}}',
    '1700000000000-0-c1'));
SELECT is(pg_temp.r(1)->>'status', 'applied', 'insert: applied');
SELECT is(pg_temp.r(1)->>'id', pg_temp.mid(1), 'the result carries the mutation id');
SELECT is((pg_temp.r(1)->>'version')::int, 1, 'insert: version 1');
SELECT is(pg_temp.r(1)#>>'{row,id}', '1', 'insert: row.id');
SELECT is(pg_temp.r(1)#>>'{row,title}', 'a', 'insert: row.title');
SELECT is(pg_temp.r(1)#>>'{row,done}', 'f', 'insert: row.done in text form (f)');
SELECT is(pg_temp.r(1)#>>'{row,pri}', '1', 'insert: row.pri');
SELECT is(pg_temp.r(1)#>>'{row,tags}', '{x,y}', 'insert: row.tags in text form ({x,y})');
SELECT is((SELECT ROW(ws, owner, title, done, pri, tags, created_by, ferry_version)::text FROM t07.todos WHERE id = 1),
          '(w1,u1,a,f,1,"{x,y}",u1,1)', 'insert: the row is in the table');
SELECT is((SELECT ferry_clock->>'title' FROM t07.todos WHERE id = 1), '1700000000000-0-c1',
          'insert: the columns get the mutation''s clock');

-- Insert, text-form values, key in both "key" and "changes".
SELECT pg_temp.go(2, pg_temp.mut(2, 'insert', '{"id": 2}',
    '{"id": {"new": 2}, "ws": {"new": "w1"}, "done": {"new": "t"}, "pri": {"new": "7"},
      "tags": {"new": "{a,b}"}, "title": {"new": null}}',
    '1700000000000-0-c1'));
SELECT is(pg_temp.r(2)->>'status', 'applied', 'insert with text-form values: applied');
SELECT is((SELECT ROW(done, pri, tags, title IS NULL)::text FROM t07.todos WHERE id = 2), '(t,7,"{a,b}",t)',
          'text-form values are read: done t, pri 7, tags {a,b}, title NULL');

-- Update.
SELECT pg_temp.go(3, pg_temp.mut(3, 'update', '{"id": 1}',
    '{"title": {"old": "a", "new": "b"}, "done": {"old": false, "new": true}}', '1700000001000-0-c1'));
SELECT is(pg_temp.r(3)->>'status', 'applied', 'update: applied');
SELECT is((pg_temp.r(3)->>'version')::int, 2, 'update: version 2');
SELECT is(pg_temp.r(3)#>>'{row,title}', 'b', 'update: row.title');
SELECT is(pg_temp.r(3)#>>'{row,done}', 't', 'update: row.done t');
SELECT is(pg_temp.r(3)#>>'{row,pri}', '1', 'update: an untouched column in row');
SELECT is((SELECT ROW(title, done, ferry_version)::text FROM t07.todos WHERE id = 1), '(b,t,2)',
          'update: the table has it');
SELECT is((SELECT ferry_clock->>'title' FROM t07.todos WHERE id = 1), '1700000001000-0-c1',
          'update: the changed column gets the mutation''s clock');
SELECT is((SELECT ferry_clock->>'pri' FROM t07.todos WHERE id = 1), '1700000000000-0-c1',
          'update: an untouched column keeps its clock');
SELECT is((SELECT ferry_xid FROM t07.todos WHERE id = 1), pg_current_xact_id(),
          'update: ferry_xid is the caller''s top-level transaction (not apply_mutation''s subtransaction)');

-- Delete.
SELECT pg_temp.go(4, pg_temp.mut(4, 'delete', '{"id": 2}', '{}', '1700000002000-0-c1'));
SELECT is(pg_temp.r(4)->>'status', 'applied', 'delete: applied');
SELECT is((pg_temp.r(4)->>'version')::int, 2, 'delete: version 2');
SELECT ok((SELECT ferry_deleted_at IS NOT NULL AND ferry_version = 2 FROM t07.todos WHERE id = 2),
          'delete: the row is a tombstone');

-- A missing clock counts as the server's clock now.
SELECT pg_temp.go(5, pg_temp.mut(5, 'update', '{"id": 1}', '{"pri": {"old": 1, "new": 2}}'));
SELECT is(pg_temp.r(5)->>'status', 'applied', 'update without a clock: applied');
SELECT matches((SELECT ferry_clock->>'pri' FROM t07.todos WHERE id = 1), '^[0-9]{13}-[0-9]+-server$',
               'without a clock the column gets a server clock');

-- A clock far in the future is clamped to the server's now.
SELECT pg_temp.go(6, pg_temp.mut(6, 'update', '{"id": 1}', '{"owner": {"old": "u1", "new": "u1b"}}',
                                 '9999999999999-0-c1'));
SELECT is(pg_temp.r(6)->>'status', 'applied', 'update with a clock far ahead: applied');
SELECT ok((SELECT split_part(ferry_clock->>'owner', '-', 1)::bigint
                  <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 1000
             FROM t07.todos WHERE id = 1),
          'a clock far ahead is clamped to the server''s now');

-- A clock ahead of the server but within ferry.max_clock_skew is kept as it is.
SELECT set_config('ferry.max_clock_skew', '1h', true);
CREATE TEMP TABLE ahead AS
    SELECT ((extract(epoch FROM clock_timestamp()) * 1000)::bigint + 30 * 60 * 1000) || '-0-c1' AS clock;
SELECT pg_temp.go(7, pg_temp.mut(7, 'update', '{"id": 1}', '{"owner": {"old": "u1b", "new": "u1c"}}',
                                 (SELECT clock FROM ahead)));
SELECT is((SELECT ferry_clock->>'owner' FROM t07.todos WHERE id = 1), (SELECT clock FROM ahead),
          'with ferry.max_clock_skew = 1h a clock 30 min ahead is kept');
SELECT set_config('ferry.max_clock_skew', '5min', true);
SELECT pg_temp.go(8, pg_temp.mut(8, 'update', '{"id": 1}', '{"title": {"old": "b", "new": "b2"}}',
                                 (SELECT clock FROM ahead)));
SELECT ok((SELECT split_part(ferry_clock->>'title', '-', 1)::bigint
                  <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 1000
             FROM t07.todos WHERE id = 1),
          'with ferry.max_clock_skew = 5min the same clock is clamped to the server''s now');
SELECT pg_temp.go(9, pg_temp.mut(9, 'update', '{"id": 1}', '{"title": {"old": "b2", "new": "b"}}'));
SELECT is((SELECT owner || '/' || title FROM t07.todos WHERE id = 1), 'u1c/b', 'the three writes applied');

-- Values of other types: native JSON or text form in, text form out.
SELECT pg_temp.go(60, pg_temp.mut(60, 'insert', '{"id": 1}',
    '{"ws": {"new": "w1"}, "meta": {"new": {"a": 1, "b": [true, null]}}, "due": {"new": "2024-05-01 10:00:00+00"},
      "amount": {"new": 12.50}, "day": {"new": "2024-05-01"}}', NULL, 't07.kinds'));
SELECT is(pg_temp.r(60)->>'status', 'applied', 'insert of jsonb, timestamptz, numeric, date values: applied');
SELECT is((SELECT meta FROM t07.kinds WHERE id = 1), '{"a": 1, "b": [true, null]}'::jsonb, 'a JSON object into a jsonb column');
SELECT is((SELECT due FROM t07.kinds WHERE id = 1), '2024-05-01 10:00:00+00'::timestamptz, 'a timestamptz from its text form');
SELECT is((SELECT amount FROM t07.kinds WHERE id = 1), 12.50, 'a JSON number into a numeric column');
SELECT is(pg_temp.r(60)#>>'{row,due}', '2024-05-01 10:00:00+00', 'row: timestamptz in text form');
SELECT is(pg_temp.r(60)#>>'{row,day}', '2024-05-01', 'row: date in text form');
SELECT is((pg_temp.r(60)#>>'{row,meta}')::jsonb, '{"a": 1, "b": [true, null]}'::jsonb, 'row: jsonb as its text');
SELECT pg_temp.go(61, pg_temp.mut(61, 'insert', '{"id": 2}',
    '{"ws": {"new": "w1"}, "meta": {"new": "{\"c\": 2}"}, "amount": {"new": "3.25"}}', NULL, 't07.kinds'));
SELECT is((SELECT meta::text || ' ' || amount FROM t07.kinds WHERE id = 2), '{"c": 2} 3.25',
          'text-form jsonb and numeric values');

-- The key only in changes ("key" is not optional in the mutation format, but "the key
-- columns may be in key, changes or both").
SELECT pg_temp.go(63, pg_temp.mut(63, 'insert', '{}', '{"id": {"new": 4}, "ws": {"new": "w1"}}', NULL, 't07.kinds'));
SELECT is(pg_temp.r(63)->>'status', 'applied', 'insert with the key only in changes ("key": {}): applied');

-- A composite primary key.
SELECT pg_temp.go(64, pg_temp.mut(64, 'insert', '{"a": 1, "b": "x"}', '{"ws": {"new": "w1"}, "val": {"new": "v"}}',
                                  NULL, 't07.pairs'));
SELECT is(pg_temp.r(64)->>'status', 'applied', 'composite key: insert applied');
SELECT is(pg_temp.r(64)#>>'{row,a}' || '/' || (pg_temp.r(64)#>>'{row,b}'), '1/x', 'composite key: row has both key columns');
SELECT pg_temp.go(65, pg_temp.mut(65, 'update', '{"a": 1, "b": "x"}', '{"val": {"old": "v", "new": "w"}}',
                                  NULL, 't07.pairs'));
SELECT is((SELECT val FROM t07.pairs WHERE a = 1 AND b = 'x'), 'w', 'composite key: update applied');
SELECT pg_temp.go(66, pg_temp.mut(66, 'update', '{"a": 1}', '{"val": {"old": "w", "new": "z"}}', NULL, 't07.pairs'));
SELECT is(pg_temp.code(66), 'key_mismatch', 'composite key: a key missing a column: key_mismatch');
SELECT pg_temp.go(67, pg_temp.mut(67, 'update', '{"a": 1, "b": "y"}', '{"val": {"old": "w", "new": "z"}}', NULL, 't07.pairs'));
SELECT is(pg_temp.code(67), 'not_found', 'composite key: another key: not_found');

-- ---- rejected --------------------------------------------------------------------------

INSERT INTO t07.todos (id, ws, owner, title) VALUES (20, 'w2', 'u1', 'other tenant');
INSERT INTO t07.todos (id, ws, owner, title) VALUES (21, 'w1', 'u2', 'someone else''s');
CREATE TEMP TABLE before AS SELECT id, ferry_version, title FROM t07.todos;

SELECT pg_temp.go(10, pg_temp.mut(10, 'update', '{"id": 1}', '{"title": {"old": "b", "new": "c"}}') - 'id');
SELECT is(pg_temp.code(10), 'invalid_mutation', 'no id: invalid_mutation');
SELECT ok(length(pg_temp.r(10)#>>'{error,message}') > 0, 'a rejection carries a message');
SELECT pg_temp.go(11, pg_temp.mut(11, 'upsert', '{"id": 1}', '{"title": {"old": "b", "new": "c"}}'));
SELECT is(pg_temp.code(11), 'invalid_mutation', 'unknown op: invalid_mutation');
SELECT is(pg_temp.r(11)->>'id', pg_temp.mid(11), 'a rejection carries the mutation id');
SELECT pg_temp.go(12, pg_temp.mut(12, 'update', '{"id": 1}', '{"title": {"old": "b", "new": "c"}}', 'yesterday'));
SELECT is(pg_temp.code(12), 'invalid_mutation', 'malformed clock: invalid_mutation');
SELECT pg_temp.go(13, pg_temp.mut(13, 'update', '{"id": 1}', '"title"'));
SELECT is(pg_temp.code(13), 'invalid_mutation', 'changes not an object: invalid_mutation');

SELECT pg_temp.go(14, pg_temp.mut(14, 'update', '{"id": 1}', '{"title": {"old": "b", "new": "c"}}'), '[]');
SELECT is(pg_temp.code(14), 'invalid_claims', 'claims not an object: invalid_claims');
SELECT pg_temp.go(15, pg_temp.mut(15, 'update', '{"id": 1}', '{"title": {"old": "b", "new": "c"}}'),
                  '{"sub": "u1", "tenants": 42}');
SELECT is(pg_temp.code(15), 'invalid_claims', 'tenants not an array: invalid_claims');

SELECT pg_temp.go(16, pg_temp.mut(16, 'update', '{"id": 1}', '{"title": {"old": "b", "new": "c"}}',
                                  NULL, 'public.fy07_no_such_table'));
SELECT is(pg_temp.code(16), 'unknown_table', 'no such table: unknown_table');
SELECT pg_temp.go(17, pg_temp.mut(17, 'insert', '{"id": 1}', '{"ws": {"new": "w1"}}', NULL, 't07.plain'));
SELECT is(pg_temp.code(17), 'unknown_table', 'a table that is not synced: unknown_table');
SELECT is((SELECT count(*) FROM t07.plain), 0::bigint, 'nothing was written to the unsynced table');

SELECT pg_temp.go(18, pg_temp.mut(18, 'update', '{"id": 1}', '{"nope": {"old": null, "new": 1}}'));
SELECT is(pg_temp.code(18), 'unknown_column', 'no such column: unknown_column');

SELECT pg_temp.go(19, pg_temp.mut(19, 'insert', '{"id": 30}', '{"id": {"new": 31}, "ws": {"new": "w1"}}'));
SELECT is(pg_temp.code(19), 'key_mismatch', 'insert whose key and changes disagree: key_mismatch');
SELECT pg_temp.go(20, pg_temp.mut(20, 'update', '{"title": "b"}', '{"done": {"old": true, "new": false}}'));
SELECT is(pg_temp.code(20), 'key_mismatch', 'a key that is not the primary key: key_mismatch');

SELECT pg_temp.go(21, pg_temp.mut(21, 'insert', '{"id": 32}', '{"ws": {"new": "w2"}, "title": {"new": "x"}}'));
SELECT is(pg_temp.code(21), 'forbidden', 'insert into another tenant: forbidden');
SELECT pg_temp.go(22, pg_temp.mut(22, 'update', '{"id": 20}', '{"title": {"old": "other tenant", "new": "x"}}'));
SELECT ok(pg_temp.code(22) IN ('forbidden', 'not_found'),
          'update of another tenant''s row: forbidden (or not_found: the row is not the caller''s to see)');
SELECT pg_temp.go(23, pg_temp.mut(23, 'delete', '{"id": 20}', '{}'));
SELECT ok(pg_temp.code(23) IN ('forbidden', 'not_found'),
          'delete of another tenant''s row: forbidden (or not_found)');
SELECT is((SELECT title || '/' || (ferry_deleted_at IS NULL) FROM t07.todos WHERE id = 20), 'other tenant/true',
          'another tenant''s row is untouched');
SELECT pg_temp.go(24, pg_temp.mut(24, 'update', '{"id": 1}', '{"ws": {"old": "w1", "new": "w2"}}'),
                  '{"sub": "u1", "tenants": ["w1", "w2"]}');
SELECT ok(pg_temp.r(24)->>'status' = 'rejected', 'moving a row to another tenant is rejected');

SELECT ferry.add_rule('t07.todos', 'own', 'true', $$owner = ferry.claim('sub')$$);
SELECT pg_temp.go(25, pg_temp.mut(25, 'update', '{"id": 21}', '{"title": {"old": "someone else''s", "new": "mine"}}'));
SELECT is(pg_temp.code(25), 'forbidden', 'write rule false on the old row: forbidden');
SELECT pg_temp.go(26, pg_temp.mut(26, 'update', '{"id": 21}', '{"owner": {"old": "u2", "new": "u1"}}'));
SELECT is(pg_temp.code(26), 'forbidden', 'write rule false on the old row, true on the new: forbidden');
INSERT INTO t07.todos (id, ws, owner, title) VALUES (22, 'w1', 'u1', 'mine');
SELECT pg_temp.go(27, pg_temp.mut(27, 'update', '{"id": 22}', '{"owner": {"old": "u1", "new": "u2"}}'));
SELECT is(pg_temp.code(27), 'forbidden', 'write rule false on the new row: forbidden');
SELECT pg_temp.go(28, pg_temp.mut(28, 'insert', '{"id": 33}', '{"ws": {"new": "w1"}, "owner": {"new": "u2"}}'));
SELECT is(pg_temp.code(28), 'forbidden', 'insert of a row the write rule refuses: forbidden');
SELECT pg_temp.go(29, pg_temp.mut(29, 'delete', '{"id": 21}', '{}'));
SELECT is(pg_temp.code(29), 'forbidden', 'delete of a row the write rule refuses: forbidden');
SELECT is((SELECT owner FROM t07.todos WHERE id = 22), 'u1', 'the forbidden update wrote nothing');
SELECT ok((SELECT ferry_deleted_at IS NULL FROM t07.todos WHERE id = 21), 'the forbidden delete wrote nothing');
SELECT ferry.drop_rule('t07.todos', 'own');

SELECT pg_temp.go(30, pg_temp.mut(30, 'update', '{"id": 999}', '{"title": {"old": "a", "new": "b"}}'));
SELECT is(pg_temp.code(30), 'not_found', 'update of a missing row: not_found');
SELECT pg_temp.go(31, pg_temp.mut(31, 'delete', '{"id": 999}', '{}'));
SELECT is(pg_temp.code(31), 'not_found', 'delete of a missing row: not_found');

SELECT pg_temp.go(32, pg_temp.mut(32, 'update', '{"id": 1}', '{"created_by": {"old": "u1", "new": "u2"}}'));
SELECT is(pg_temp.code(32), 'immutable_column', 'change of an immutable column: immutable_column');
SELECT is(pg_temp.r(32)#>>'{error,column}', 'created_by', 'immutable_column names the column');

SELECT pg_temp.go(33, pg_temp.mut(33, 'update', '{"id": 1}',
    '{"title": {"old": "b", "new": "written?"}, "pri": {"old": 2, "new": "abc"}}'));
SELECT is(pg_temp.code(33), 'invalid_value', '''abc'' into an int column: invalid_value');
SELECT is(pg_temp.r(33)#>>'{error,column}', 'pri', 'invalid_value names the column');
SELECT pg_temp.go(34, pg_temp.mut(34, 'insert', '{"id": 34}', '{"ws": {"new": "w1"}, "done": {"new": "maybe"}}'));
SELECT is(pg_temp.code(34), 'invalid_value', '''maybe'' into a boolean column: invalid_value');
SELECT is(pg_temp.r(34)#>>'{error,column}', 'done', 'invalid_value names the boolean column');
SELECT pg_temp.go(35, pg_temp.mut(35, 'insert', '{"id": 35}', '{"ws": {"new": "w1"}, "tags": {"new": 5}}'));
SELECT is(pg_temp.code(35), 'invalid_value', 'a number into an array column: invalid_value');

SELECT pg_temp.go(36, pg_temp.mut(36, 'update', '{"id": 1}',
    '{"title": {"old": "b", "new": "written?"}, "pri": {"old": 2, "new": -1}}'));
SELECT is(pg_temp.code(36), 'constraint_violation', 'a CHECK constraint: constraint_violation');
SELECT is(pg_temp.r(36)#>>'{error,sqlstate}', '23514', 'constraint_violation carries the SQLSTATE 23514');
SELECT pg_temp.go(37, pg_temp.mut(37, 'insert', '{"id": 36}', '{"ws": {"new": "w1"}, "pri": {"new": -5}}'));
SELECT is(pg_temp.code(37), 'constraint_violation', 'an insert violating a CHECK: constraint_violation');
SELECT pg_temp.go(38, pg_temp.mut(38, 'insert', '{"id": 37}', '{"title": {"new": "no tenant"}}'));
SELECT ok(pg_temp.code(38) IN ('invalid_mutation', 'forbidden', 'constraint_violation'),
          'an insert without the (NOT NULL) tenant column: rejected (invalid_mutation, forbidden or constraint_violation)');

-- After all these rejections, the transaction is still usable and nothing was written.
SELECT results_eq($$SELECT id, ferry_version, title FROM t07.todos WHERE id IN (SELECT id FROM before) ORDER BY id$$,
                  $$SELECT id, ferry_version, title FROM before ORDER BY id$$,
                  'no rejected mutation changed a row');
SELECT results_eq($$SELECT id FROM t07.todos ORDER BY id$$, ARRAY[1, 2, 20, 21, 22],
                  'no rejected insert left a row');
SELECT is((SELECT title FROM t07.todos WHERE id = 1), 'b',
          'the valid change of a rejected mutation (title) was not written either');
SELECT lives_ok($$UPDATE t07.todos SET title = 'still usable' WHERE id = 1$$,
                'the caller''s transaction is usable after rejected mutations');
SELECT pg_temp.go(39, pg_temp.mut(39, 'update', '{"id": 1}', '{"title": {"old": "still usable", "new": "after"}}'));
SELECT is(pg_temp.r(39)->>'status', 'applied', 'a mutation after rejected ones is applied');
SELECT is((SELECT title FROM t07.todos WHERE id = 1), 'after', 'and written');

-- One rejection from inside a statement that must go on: the statement itself succeeds.
SELECT is((SELECT count(*) FROM (SELECT ferry.apply_mutation(pg_temp.mut(40 + g, 'update', '{"id": 1}',
              '{"pri": {"old": 2, "new": -1}}'), '{"sub":"u1","tenants":["w1"]}') FROM generate_series(0, 2) g) s),
          3::bigint, 'three rejected mutations in one statement: the statement completes');
SELECT is((SELECT pri FROM t07.todos WHERE id = 1), 2, 'and wrote nothing');

SELECT * FROM finish();
ROLLBACK;
