-- test/sql/05_rules.sql -- ferry.add_rule validation of the predicate subset, replacing and
-- dropping rules (docs/sql-api.md, "Rules"). How rules filter rows is in 06_predicates.sql.
BEGIN;
SELECT plan(112);

CREATE SCHEMA t05;
CREATE TABLE t05.todos (
    id    int PRIMARY KEY,
    ws    text NOT NULL,
    owner text,
    title text,
    pri   int,
    done  boolean NOT NULL DEFAULT false
);
SELECT ferry.enable_sync('t05.todos', 'ws');

-- ok_rule(predicate) adds it as a read rule under a fresh name.
CREATE SEQUENCE pg_temp.rule_seq;
CREATE FUNCTION pg_temp.ok_rule(pred text) RETURNS text LANGUAGE sql AS $$
    SELECT lives_ok(format('SELECT ferry.add_rule(%L, %L, %L)', 't05.todos',
                           'ok' || nextval('pg_temp.rule_seq'), pred),
                    'accepted: ' || pred)
$$;
-- bad_rule(predicate, regex) checks it is refused with FY020 and that the message names
-- what was refused (regex, case-insensitive).
CREATE FUNCTION pg_temp.bad_rule(pred text, regex text) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT throws_ok(format('SELECT ferry.add_rule(%L, %L, %L)', 't05.todos', 'bad', pred),
                     'FY020', NULL, 'refused with FY020: ' || pred)
    UNION ALL
    SELECT throws_imatching(format('SELECT ferry.add_rule(%L, %L, %L)', 't05.todos', 'bad', pred),
                            regex, 'the message names what was refused: ' || pred)
$$;

-- Every construct of the subset (33 tests).
SELECT pg_temp.ok_rule('pri = 1');
SELECT pg_temp.ok_rule('pri <> 1');
SELECT pg_temp.ok_rule('pri != 1');
SELECT pg_temp.ok_rule('pri < 1');
SELECT pg_temp.ok_rule('pri <= 1');
SELECT pg_temp.ok_rule('pri > 1');
SELECT pg_temp.ok_rule('pri >= 1');
SELECT pg_temp.ok_rule('1 < pri');
SELECT pg_temp.ok_rule('done AND pri > 1');
SELECT pg_temp.ok_rule('done OR pri > 1');
SELECT pg_temp.ok_rule('NOT done');
SELECT pg_temp.ok_rule('(done OR pri = 1) AND NOT (title IS NULL)');
SELECT pg_temp.ok_rule('title IS NULL');
SELECT pg_temp.ok_rule('title IS NOT NULL');
SELECT pg_temp.ok_rule('pri IN (1, 2, 3)');
SELECT pg_temp.ok_rule('pri NOT IN (1, 2)');
SELECT pg_temp.ok_rule($$title IN ('a', 'b')$$);
SELECT pg_temp.ok_rule($$title LIKE 'a%'$$);
SELECT pg_temp.ok_rule($$title ILIKE 'A%'$$);
SELECT pg_temp.ok_rule($$title NOT LIKE 'a%'$$);
SELECT pg_temp.ok_rule($$title NOT ILIKE 'a%'$$);
SELECT pg_temp.ok_rule('done');
SELECT pg_temp.ok_rule('true');
SELECT pg_temp.ok_rule('false');
SELECT pg_temp.ok_rule($$pri = '5'::int$$);
SELECT pg_temp.ok_rule($$title = 'x'::text$$);
SELECT pg_temp.ok_rule($$owner = ferry.claim('sub')$$);
SELECT pg_temp.ok_rule($$pri <= ferry.claim('lvl')::int$$);
SELECT pg_temp.ok_rule($$ferry.claim('role') = 'admin'$$);
SELECT pg_temp.ok_rule($$owner = ferry.claim('sub') OR ferry.claim('role') = 'admin'$$);
SELECT pg_temp.ok_rule('pri IS NOT NULL AND NOT done');
SELECT pg_temp.ok_rule('done = true');
SELECT pg_temp.ok_rule('ferry_deleted_at IS NULL');
SELECT pg_temp.ok_rule($$CAST('3' AS integer) < pri$$);
SELECT pg_temp.ok_rule($$owner IN (ferry.claim('sub'), 'admin')$$);
SELECT pg_temp.ok_rule('pri > -1');
SELECT pg_temp.ok_rule('title IS NULL OR NULL');
SELECT lives_ok($$SELECT ferry.add_rule('t05.todos', 'rw', 'true', 'owner = ferry.claim(''sub'')')$$,
                'accepted: a read predicate with a separate write predicate');

-- Refused with FY020, the message naming the construct (2 tests each, 30 tests).
SELECT pg_temp.bad_rule('pri IN (SELECT 1)', 'subquer|sublink|select');
SELECT pg_temp.bad_rule('EXISTS (SELECT 1 FROM t05.todos)', 'subquer|sublink|select|exists');
SELECT pg_temp.bad_rule('(SELECT true)', 'subquer|sublink|select');
SELECT pg_temp.bad_rule('random() > 0.5', 'random');
SELECT pg_temp.bad_rule($$now() > '2020-01-01'$$, 'now');
SELECT pg_temp.bad_rule($$lower(title) = 'a'$$, 'lower');
SELECT pg_temp.bad_rule('ferry.schema_version() > 0', 'schema_version');
SELECT pg_temp.bad_rule('true; drop table t05.todos', 'statement|;|drop');
SELECT pg_temp.bad_rule('pri BETWEEN 1 AND 3', 'between');
SELECT pg_temp.bad_rule('CASE WHEN done THEN true ELSE false END', 'case');
SELECT pg_temp.bad_rule('pri + 1 = 2', '\+|arithmetic|operator');
SELECT pg_temp.bad_rule($$pri::text = '1'$$, 'cast|::|type');
SELECT pg_temp.bad_rule('xmin IS NOT NULL', 'xmin|system');
SELECT pg_temp.bad_rule('ctid IS NOT NULL', 'ctid|system');
SELECT pg_temp.bad_rule('pg_sleep(1) IS NULL', 'pg_sleep');
SELECT pg_temp.bad_rule($$title || 'x' = 'ax'$$, '\|\||concat|operator');
SELECT pg_temp.bad_rule('coalesce(pri, 0) = 1', 'coalesce');
SELECT pg_temp.bad_rule('nullif(pri, 0) = 1', 'nullif');
SELECT pg_temp.bad_rule('pri IS DISTINCT FROM 1', 'distinct');
SELECT pg_temp.bad_rule('done IS TRUE', 'is true|boolean test|true');
SELECT pg_temp.bad_rule($$title SIMILAR TO 'a%'$$, 'similar');
SELECT pg_temp.bad_rule($$pri = ANY ('{1,2}'::int[])$$, 'any|array');
SELECT pg_temp.bad_rule('ARRAY[pri] IS NOT NULL', 'array');
SELECT pg_temp.bad_rule('t05.todos.pri = 1', 'qualified|t05');
SELECT pg_temp.bad_rule($$title LIKE 'a!%' ESCAPE '!'$$, 'escape');
SELECT pg_temp.bad_rule('true ORDER BY 1', 'order|expression');
SELECT pg_temp.bad_rule('true UNION SELECT true', 'union|expression|select');
SELECT pg_temp.bad_rule('pri = $1', 'param|\$1');

SELECT has_table('t05', 'todos', 'the refused second statement did not run (the table is still there)');
SELECT throws_ok($$SELECT ferry.drop_rule('t05.todos', 'bad')$$, 'FY021', NULL,
                 'no refused predicate was stored');

-- Unknown columns and type errors.
SELECT throws_ok($$SELECT ferry.add_rule('t05.todos', 'bad', 'nope = 1')$$, '42703', NULL,
                 'unknown column in a read predicate: 42703');
SELECT throws_ok($$SELECT ferry.add_rule('t05.todos', 'bad', 'true', 'nope = 1')$$, '42703', NULL,
                 'unknown column in a write predicate: 42703');
SELECT throws_ok($$SELECT ferry.add_rule('t05.todos', 'bad', 'title = 5')$$, '42883', NULL,
                 'text = integer: 42883');
SELECT throws_ok($$SELECT ferry.add_rule('t05.todos', 'bad', 'pri')$$, '42804', NULL,
                 'a predicate that is not boolean: 42804');
SELECT throws_ok($$SELECT ferry.add_rule('t05.todos', 'bad', 'true', 'random() > 0.5')$$, 'FY020', NULL,
                 'the write predicate is validated too: FY020');

-- Replacing and dropping, seen through changes_since (a table of its own).
CREATE TABLE t05.b (id int PRIMARY KEY, ws text NOT NULL);
SELECT ferry.enable_sync('t05.b', 'ws');
INSERT INTO t05.b VALUES (1, 'w1'), (2, 'w1');

CREATE FUNCTION pg_temp.seen() RETURNS int LANGUAGE sql AS $$
    SELECT jsonb_array_length(ferry.changes_since('t05.b', NULL, '{"sub":"u1","tenants":["w1"]}') -> 'rows')
$$;

SELECT is(pg_temp.seen(), 2, 'no rules: both rows readable');
SELECT ferry.add_rule('t05.b', 'r', 'true');
SELECT is(pg_temp.seen(), 2, 'rule r = true: both rows');
SELECT lives_ok($$SELECT ferry.add_rule('t05.b', 'r', 'false')$$, 'add_rule with an existing name');
SELECT is(pg_temp.seen(), 0, 'rule r replaced by false: no rows (not OR-ed with the old true)');
SELECT ferry.add_rule('t05.b', 'r2', 'id = 2');
SELECT is(pg_temp.seen(), 1, 'rules OR-ed: false OR id = 2');
SELECT lives_ok($$SELECT ferry.drop_rule('t05.b', 'r2')$$, 'drop_rule');
SELECT is(pg_temp.seen(), 0, 'after dropping r2: only false is left');
SELECT lives_ok($$SELECT ferry.drop_rule('t05.b', 'r')$$, 'drop_rule of the last rule');
SELECT is(pg_temp.seen(), 2, 'no rules left: every row readable again');
SELECT throws_ok($$SELECT ferry.drop_rule('t05.b', 'r')$$, 'FY021', NULL, 'drop of a dropped rule: FY021');
SELECT throws_ok($$SELECT ferry.drop_rule('t05.b', 'never')$$, 'FY021', NULL, 'drop of a missing rule: FY021');

SELECT * FROM finish();
ROLLBACK;
