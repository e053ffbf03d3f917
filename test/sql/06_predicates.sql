-- test/sql/06_predicates.sql -- how rules filter reads (changes_since) and writes
-- (apply_mutation): every construct of the subset evaluated on rows, the tenant filter,
-- rules OR-ed, write predicates on the old and the new row (docs/sql-api.md, "Rules").
BEGIN;
SELECT plan(56);

CREATE SCHEMA t06;
CREATE TABLE t06.todos (
    id    int PRIMARY KEY,
    ws    text NOT NULL,
    owner text,
    title text,
    pri   int,
    done  boolean NOT NULL DEFAULT false
);
SELECT ferry.enable_sync('t06.todos', 'ws');
INSERT INTO t06.todos VALUES
    (1, 'w1', 'u1', 'apple',   1,    true),
    (2, 'w1', 'u2', 'Avocado', 2,    false),
    (3, 'w1', 'u1', 'banana',  3,    false),
    (4, 'w1', 'u2', NULL,      NULL, true),
    (5, 'w1', 'u3', 'cherry',  2,    false),
    (6, 'w2', 'u1', 'apple',   1,    true);

-- ids(claims) lists the ids of the rows changes_since gives an initial load, in order.
CREATE FUNCTION pg_temp.ids(claims jsonb) RETURNS int[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg((e->>'id')::int ORDER BY o), '{}')
      FROM jsonb_array_elements(ferry.changes_since('t06.todos', NULL, claims) -> 'rows')
           WITH ORDINALITY AS x(e, o)
$$;
-- vis(predicate, claims) makes the predicate the table's only rule ('p', replaced on
-- every call) and returns ids(claims).
CREATE FUNCTION pg_temp.vis(pred text,
                            claims jsonb DEFAULT '{"sub":"u1","tenants":["w1"],"role":"member","lvl":2}')
RETURNS int[] LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ferry.add_rule('t06.todos', 'p', pred);
    RETURN pg_temp.ids(claims);
END $$;

-- No rules: the tenant filter alone.
SELECT is(pg_temp.ids('{"sub":"u1","tenants":["w1"]}'), ARRAY[1, 2, 3, 4, 5], 'no rules: every row of tenant w1');
SELECT is(pg_temp.ids('{"sub":"u1","tenants":["w2"]}'), ARRAY[6], 'no rules: every row of tenant w2');
SELECT is(pg_temp.ids('{"sub":"u1","tenants":["w1","w2"]}'), ARRAY[1, 2, 3, 4, 5, 6], 'two tenants: both');
SELECT is(pg_temp.ids('{"sub":"u1","tenants":[]}'), '{}'::int[], 'no tenants: nothing');
SELECT is(pg_temp.ids('{"sub":"u1","tenants":["w9"]}'), '{}'::int[], 'an unknown tenant: nothing');

-- Each construct (the rows: pri 1,2,3,NULL,2; done t,f,f,t,f).
SELECT is(pg_temp.vis('pri = 2'), ARRAY[2, 5], 'pri = 2');
SELECT is(pg_temp.vis('pri <> 2'), ARRAY[1, 3], 'pri <> 2 (NULL is not true)');
SELECT is(pg_temp.vis('pri != 2'), ARRAY[1, 3], 'pri != 2');
SELECT is(pg_temp.vis('pri < 2'), ARRAY[1], 'pri < 2');
SELECT is(pg_temp.vis('pri <= 2'), ARRAY[1, 2, 5], 'pri <= 2');
SELECT is(pg_temp.vis('pri > 2'), ARRAY[3], 'pri > 2');
SELECT is(pg_temp.vis('pri >= 2'), ARRAY[2, 3, 5], 'pri >= 2');
SELECT is(pg_temp.vis('2 < pri'), ARRAY[3], '2 < pri (literal on the left)');
SELECT is(pg_temp.vis('done'), ARRAY[1, 4], 'a boolean column');
SELECT is(pg_temp.vis('NOT done'), ARRAY[2, 3, 5], 'NOT of a boolean column');
SELECT is(pg_temp.vis('done = false'), ARRAY[2, 3, 5], 'boolean column = false');
SELECT is(pg_temp.vis('done AND pri = 1'), ARRAY[1], 'AND');
SELECT is(pg_temp.vis('done OR pri = 3'), ARRAY[1, 3, 4], 'OR');
SELECT is(pg_temp.vis('NOT (pri = 2)'), ARRAY[1, 3], 'NOT of a comparison with NULL is not true');
SELECT is(pg_temp.vis('NOT (pri = 2) OR pri IS NULL'), ARRAY[1, 3, 4], 'NOT ... OR IS NULL');
SELECT is(pg_temp.vis('title IS NULL'), ARRAY[4], 'IS NULL');
SELECT is(pg_temp.vis('title IS NOT NULL'), ARRAY[1, 2, 3, 5], 'IS NOT NULL');
SELECT is(pg_temp.vis('pri IN (1, 3)'), ARRAY[1, 3], 'IN list');
SELECT is(pg_temp.vis('pri NOT IN (1, 3)'), ARRAY[2, 5], 'NOT IN list (NULL is not true)');
SELECT is(pg_temp.vis($$title IN ('apple', 'cherry')$$), ARRAY[1, 5], 'IN list of strings');
SELECT is(pg_temp.vis($$title LIKE 'a%'$$), ARRAY[1], 'LIKE is case-sensitive');
SELECT is(pg_temp.vis($$title ILIKE 'a%'$$), ARRAY[1, 2], 'ILIKE');
SELECT is(pg_temp.vis($$title NOT LIKE 'a%'$$), ARRAY[2, 3, 5], 'NOT LIKE');
SELECT is(pg_temp.vis($$title NOT ILIKE 'a%'$$), ARRAY[3, 5], 'NOT ILIKE');
SELECT is(pg_temp.vis($$title LIKE '_anana'$$), ARRAY[3], 'LIKE with _');
SELECT is(pg_temp.vis($$pri > '1'::int$$), ARRAY[2, 3, 5], 'a cast literal');
SELECT is(pg_temp.vis('true'), ARRAY[1, 2, 3, 4, 5], 'true: every row of the tenant, never another tenant''s');
SELECT is(pg_temp.vis('false'), '{}'::int[], 'false: nothing');
SELECT is(pg_temp.vis($$owner = ferry.claim('sub')$$), ARRAY[1, 3], 'owner = ferry.claim(''sub'')');
SELECT is(pg_temp.vis($$owner = ferry.claim('sub')$$, '{"sub":"u2","tenants":["w1"]}'), ARRAY[2, 4],
          'the same rule for another user');
SELECT is(pg_temp.vis($$pri = ferry.claim('lvl')::int$$), ARRAY[2, 5], 'a number claim cast to int');
SELECT is(pg_temp.vis($$owner IN (ferry.claim('sub'), 'u3')$$), ARRAY[1, 3, 5], 'IN with a claim in the list');
SELECT is(pg_temp.vis($$ferry.claim('sub') = owner AND title IS NOT NULL$$), ARRAY[1, 3], 'claim on the left');
SELECT is(pg_temp.vis($$owner = ferry.claim('nope')$$), '{}'::int[], 'an absent claim is NULL: nothing');
SELECT is(pg_temp.vis($$ferry.claim('role') = 'admin'$$), '{}'::int[], 'a role claim that does not match');
SELECT is(pg_temp.vis($$ferry.claim('role') = 'admin'$$, '{"sub":"u9","tenants":["w1"],"role":"admin"}'),
          ARRAY[1, 2, 3, 4, 5], 'a role claim that matches');

-- The claims argument wins over the setting ferry.claims inside changes_since.
SELECT set_config('ferry.claims', '{"sub":"u2","tenants":["w1","w2"]}', true);
SELECT is(pg_temp.vis($$owner = ferry.claim('sub')$$), ARRAY[1, 3],
          'changes_since reads claims from its argument, not from ferry.claims');
SELECT set_config('ferry.claims', '', true);

-- Rules combine with OR.
SELECT ferry.add_rule('t06.todos', 'p', 'pri = 1');
SELECT ferry.add_rule('t06.todos', 'q', $$owner = 'u3'$$);
SELECT is(pg_temp.ids('{"sub":"u1","tenants":["w1"]}'), ARRAY[1, 5], 'two rules are OR-ed');
SELECT ferry.drop_rule('t06.todos', 'q');

-- Writes: the write predicate on the row as it was and as it becomes.
CREATE FUNCTION pg_temp.upd(id int, col text, old jsonb, new jsonb, sub text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT ferry.apply_mutation(
        jsonb_build_object('id', gen_random_uuid(), 'client_id', 'c-' || sub, 'table', 't06.todos',
                           'op', 'update', 'key', jsonb_build_object('id', id),
                           'changes', jsonb_build_object(col, jsonb_build_object('old', old, 'new', new))),
        jsonb_build_object('sub', sub, 'tenants', jsonb_build_array('w1')))
$$;

-- A NULL write predicate: the read predicate governs writes.
SELECT ferry.add_rule('t06.todos', 'p', $$owner = ferry.claim('sub')$$);
SELECT is(pg_temp.upd(1, 'title', '"apple"', '"apple pie"', 'u1') ->> 'status', 'applied',
          'NULL write predicate: the owner may write');
SELECT is(pg_temp.upd(2, 'title', '"Avocado"', '"x"', 'u1') #>> '{error,code}', 'forbidden',
          'NULL write predicate: another user''s row is forbidden');
SELECT is(pg_temp.upd(1, 'owner', '"u1"', '"u2"', 'u1') #>> '{error,code}', 'forbidden',
          'the row as it becomes must satisfy the write rule (giving the row away)');
SELECT is((SELECT owner FROM t06.todos WHERE id = 1), 'u1', 'the forbidden write wrote nothing');

-- apply_mutation reads the claims argument, not ferry.claims.
SELECT set_config('ferry.claims', '{"sub":"u2","tenants":["w1"]}', true);
SELECT is(pg_temp.upd(3, 'title', '"banana"', '"banana split"', 'u1') ->> 'status', 'applied',
          'apply_mutation evaluates ferry.claim() from its claims argument');
SELECT set_config('ferry.claims', '', true);

-- A read-only rule.
SELECT ferry.add_rule('t06.todos', 'p', 'true', 'false');
SELECT is(pg_temp.upd(1, 'title', '"apple pie"', '"y"', 'u1') #>> '{error,code}', 'forbidden',
          'read-only rule (write predicate false): forbidden');
SELECT is(pg_temp.ids('{"sub":"u1","tenants":["w1"]}'), ARRAY[1, 2, 3, 4, 5], 'read-only rule: still readable');

-- A write predicate different from the read one: on the old row (done rows are locked)
-- and on the new row (a row may not be made done).
SELECT ferry.add_rule('t06.todos', 'p', 'true', 'NOT done');
SELECT is(pg_temp.upd(4, 'done', 'true', 'false', 'u1') #>> '{error,code}', 'forbidden',
          'write predicate false on the row as it was (true on the new row): forbidden');
SELECT is(pg_temp.upd(2, 'done', 'false', 'true', 'u1') #>> '{error,code}', 'forbidden',
          'write predicate false on the row as it becomes: forbidden');
SELECT is(pg_temp.upd(2, 'title', '"Avocado"', '"Avocado toast"', 'u1') ->> 'status', 'applied',
          'write predicate true on both rows: applied');

-- A tenant column that is not text: compared as text with the claims' tenants.
CREATE TABLE t06.nums (id int PRIMARY KEY, team int NOT NULL, v text);
SELECT ferry.enable_sync('t06.nums', 'team');
INSERT INTO t06.nums VALUES (1, 7, 'a'), (2, 8, 'b'), (3, 7, 'c');
SELECT is((SELECT coalesce(array_agg((e->>'id')::int ORDER BY o), '{}')
             FROM jsonb_array_elements(ferry.changes_since('t06.nums', NULL, '{"sub":"u1","tenants":["7"]}') -> 'rows')
                  WITH ORDINALITY AS x(e, o)),
          ARRAY[1, 3], 'an int tenant column: rows whose tenant as text is in tenants');
SELECT is(ferry.apply_mutation(
    '{"id":"06000000-0000-4000-8000-000000000001","client_id":"c1","table":"t06.nums","op":"insert",
      "key":{"id":4},"changes":{"team":{"new":7},"v":{"new":"d"}}}', '{"sub":"u1","tenants":["7"]}') ->> 'status',
    'applied', 'an int tenant column: insert into the caller''s tenant applied');
SELECT is(ferry.apply_mutation(
    '{"id":"06000000-0000-4000-8000-000000000002","client_id":"c1","table":"t06.nums","op":"insert",
      "key":{"id":5},"changes":{"team":{"new":8},"v":{"new":"e"}}}', '{"sub":"u1","tenants":["7"]}') #>> '{error,code}',
    'forbidden', 'an int tenant column: insert into another tenant forbidden');

SELECT * FROM finish();
ROLLBACK;
