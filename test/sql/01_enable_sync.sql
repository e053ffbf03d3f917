-- test/sql/01_enable_sync.sql -- ferry.enable_sync and ferry.disable_sync (docs/sql-api.md,
-- "Joining a table to sync").
BEGIN;
SELECT plan(60);

CREATE SCHEMA t01;

-- recorded(tbl) counts the rows of ferry.synced_tables that name the table, whatever the
-- catalog's column names are (the spec names the table, not its columns): a row names the
-- table when one of its values is the table's oid, its name, or its qualified name.
CREATE FUNCTION pg_temp.recorded(t_oid oid, t_schema text, t_name text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(DISTINCT to_jsonb(s)::text)
      FROM ferry.synced_tables s, jsonb_each_text(to_jsonb(s)) kv
     WHERE kv.value IN (t_oid::text, t_name, t_schema || '.' || t_name)
$$;

CREATE TABLE t01.todos (id int PRIMARY KEY, ws text NOT NULL, owner text NOT NULL, title text);
INSERT INTO t01.todos VALUES (1, 'w1', 'u1', 'pre-existing');

SELECT lives_ok($$SELECT ferry.enable_sync('t01.todos', 'ws')$$,
                'enable_sync on an ordinary table with a primary key and a NOT NULL tenant column');

-- The columns, with the types of the spec.
SELECT col_type_is('t01', 'todos', 'ferry_version', 'bigint', 'ferry_version is bigint');
SELECT col_not_null('t01', 'todos', 'ferry_version', 'ferry_version is NOT NULL');
SELECT col_has_default('t01', 'todos', 'ferry_version', 'ferry_version has a default');
SELECT col_type_is('t01', 'todos', 'ferry_updated_at', 'timestamp with time zone', 'ferry_updated_at is timestamptz');
SELECT col_not_null('t01', 'todos', 'ferry_updated_at', 'ferry_updated_at is NOT NULL');
SELECT col_has_default('t01', 'todos', 'ferry_updated_at', 'ferry_updated_at has a default');
SELECT col_type_is('t01', 'todos', 'ferry_deleted_at', 'timestamp with time zone', 'ferry_deleted_at is timestamptz');
SELECT col_is_null('t01', 'todos', 'ferry_deleted_at', 'ferry_deleted_at is nullable');
SELECT col_type_is('t01', 'todos', 'ferry_xid', 'xid8', 'ferry_xid is xid8');
SELECT col_type_is('t01', 'todos', 'ferry_clock', 'jsonb', 'ferry_clock is jsonb');
SELECT col_not_null('t01', 'todos', 'ferry_clock', 'ferry_clock is NOT NULL');
SELECT col_has_default('t01', 'todos', 'ferry_clock', 'ferry_clock has a default');

-- A row that existed before enable_sync.
SELECT is((SELECT ferry_version FROM t01.todos WHERE id = 1), 1::bigint,
          'a pre-existing row gets version 1');
SELECT ok((SELECT ferry_xid IS NULL FROM t01.todos WHERE id = 1),
          'a pre-existing row gets a NULL ferry_xid');
SELECT is((SELECT ferry_clock FROM t01.todos WHERE id = 1), '{}'::jsonb,
          'a pre-existing row gets no column clocks');
SELECT ok((SELECT ferry_deleted_at IS NULL FROM t01.todos WHERE id = 1),
          'a pre-existing row is live');

-- It has no column clocks, so any clocked write beats it: a concurrent change (stale base)
-- with an ancient clock still wins.
SELECT is(ferry.apply_mutation(
    '{"id":"01000000-0000-4000-8000-000000000001","client_id":"c1","table":"t01.todos","op":"update",
      "key":{"id":1},"changes":{"title":{"old":"stale base","new":"clocked"}},"clock":"1000000000000-0-c1"}',
    '{"sub":"u1","tenants":["w1"]}') ->> 'status', 'applied', 'an update of the pre-existing row: applied');
SELECT is((SELECT title FROM t01.todos WHERE id = 1), 'clocked',
          'a clocked write beats the unclocked pre-existing value, even with an ancient clock');

-- Triggers: zz_ferry_row BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW
-- (tgtype ROW 1 | BEFORE 2 | INSERT 4 | DELETE 8 | UPDATE 16 = 31) and zz_ferry_truncate
-- AFTER TRUNCATE FOR EACH STATEMENT (TRUNCATE 32).
SELECT has_trigger('t01', 'todos', 'zz_ferry_row', 'trigger zz_ferry_row installed');
SELECT has_trigger('t01', 'todos', 'zz_ferry_truncate', 'trigger zz_ferry_truncate installed');
SELECT is((SELECT tgtype::int FROM pg_trigger
            WHERE tgrelid = 't01.todos'::regclass AND tgname = 'zz_ferry_row'), 31,
          'zz_ferry_row is BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW');
SELECT is((SELECT tgtype::int FROM pg_trigger
            WHERE tgrelid = 't01.todos'::regclass AND tgname = 'zz_ferry_truncate'), 32,
          'zz_ferry_truncate is AFTER TRUNCATE FOR EACH STATEMENT');

SELECT is((SELECT relreplident FROM pg_class WHERE oid = 't01.todos'::regclass), 'f'::"char",
          'replica identity is FULL');
SELECT is((SELECT count(*) FROM pg_publication_tables
            WHERE pubname = 'ferry' AND schemaname = 't01' AND tablename = 'todos'), 1::bigint,
          'the table is in publication ferry');
SELECT is(pg_temp.recorded('t01.todos'::regclass, 't01', 'todos'), 1::bigint,
          'the table is recorded in ferry.synced_tables');

-- Calling it again with the same tenant column does nothing.
SELECT lives_ok($$SELECT ferry.enable_sync('t01.todos', 'ws')$$, 'enable_sync twice is harmless');
SELECT is((SELECT count(*) FROM pg_attribute
            WHERE attrelid = 't01.todos'::regclass AND attname LIKE 'ferry\_%' AND NOT attisdropped),
          5::bigint, 'still exactly five ferry_* columns after the second call');
SELECT is((SELECT count(*) FROM pg_trigger
            WHERE tgrelid = 't01.todos'::regclass AND tgname LIKE 'zz\_ferry%'), 2::bigint,
          'still exactly two ferry triggers after the second call');
SELECT is(pg_temp.recorded('t01.todos'::regclass, 't01', 'todos'), 1::bigint,
          'still recorded once in ferry.synced_tables');
SELECT is((SELECT ferry_version || '/' || title FROM t01.todos WHERE id = 1), '2/clocked',
          'the second call did not touch the rows');

-- Errors.
SELECT throws_ok($$SELECT ferry.enable_sync('t01.todos', 'owner')$$, 'FY010', NULL,
                 'already synced with another tenant column: FY010');

CREATE TABLE t01.nopk (id int, ws text NOT NULL);
SELECT throws_ok($$SELECT ferry.enable_sync('t01.nopk', 'ws')$$, 'FY010', NULL,
                 'no primary key: FY010');
SELECT hasnt_column('t01', 'nopk', 'ferry_version', 'a refused enable_sync adds no column');

CREATE TABLE t01.plain (id int PRIMARY KEY, ws text NOT NULL, maybe text);
SELECT throws_ok($$SELECT ferry.enable_sync('t01.plain', 'nope')$$, '42703', NULL,
                 'no such tenant column: 42703');
SELECT throws_ok($$SELECT ferry.enable_sync('t01.plain', 'maybe')$$, 'FY010', NULL,
                 'nullable tenant column: FY010');

CREATE VIEW t01.v AS SELECT * FROM t01.plain;
SELECT throws_ok($$SELECT ferry.enable_sync('t01.v', 'ws')$$, 'FY010', NULL, 'a view: FY010');

CREATE UNLOGGED TABLE t01.unlogged (id int PRIMARY KEY, ws text NOT NULL);
SELECT throws_ok($$SELECT ferry.enable_sync('t01.unlogged', 'ws')$$, 'FY010', NULL,
                 'an unlogged table: FY010');

CREATE TEMP TABLE fy01_temp (id int PRIMARY KEY, ws text NOT NULL);
SELECT throws_ok($$SELECT ferry.enable_sync('fy01_temp', 'ws')$$, 'FY010', NULL,
                 'a temporary table: FY010');

CREATE TABLE t01.parted (id int, ws text NOT NULL, PRIMARY KEY (id)) PARTITION BY RANGE (id);
SELECT throws_ok($$SELECT ferry.enable_sync('t01.parted', 'ws')$$, 'FY010', NULL,
                 'a partitioned table: FY010');

CREATE EXTENSION file_fdw;
CREATE SERVER fy01_files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE t01.ft (id int NOT NULL, ws text NOT NULL) SERVER fy01_files OPTIONS (filename '/dev/null');
SELECT throws_ok($$SELECT ferry.enable_sync('t01.ft', 'ws')$$, 'FY010', NULL, 'a foreign table: FY010');

CREATE TABLE ferry.fy01_inside (id int PRIMARY KEY, ws text NOT NULL);
SELECT throws_ok($$SELECT ferry.enable_sync('ferry.fy01_inside', 'ws')$$, 'FY010', NULL,
                 'a table in schema ferry: FY010');
DROP TABLE ferry.fy01_inside;

-- disable_sync undoes everything.
INSERT INTO t01.todos (id, ws, owner, title) VALUES (2, 'w1', 'u1', 'to be deleted');
DELETE FROM t01.todos WHERE id = 2;
SELECT is((SELECT count(*) FROM t01.todos), 2::bigint, 'before disable_sync: one live row and one tombstone');
SELECT ferry.add_rule('t01.todos', 'r1', 'true');
SELECT ferry.set_conflict_rule('t01.todos', 'title', 'immutable');

SELECT lives_ok($$SELECT ferry.disable_sync('t01.todos')$$, 'disable_sync');
SELECT hasnt_column('t01', 'todos', 'ferry_version', 'ferry_version dropped');
SELECT hasnt_column('t01', 'todos', 'ferry_updated_at', 'ferry_updated_at dropped');
SELECT hasnt_column('t01', 'todos', 'ferry_deleted_at', 'ferry_deleted_at dropped');
SELECT hasnt_column('t01', 'todos', 'ferry_xid', 'ferry_xid dropped');
SELECT hasnt_column('t01', 'todos', 'ferry_clock', 'ferry_clock dropped');
SELECT hasnt_trigger('t01', 'todos', 'zz_ferry_row', 'zz_ferry_row dropped');
SELECT hasnt_trigger('t01', 'todos', 'zz_ferry_truncate', 'zz_ferry_truncate dropped');
SELECT results_eq($$SELECT id FROM t01.todos ORDER BY id$$, ARRAY[1],
                  'the tombstone was physically deleted, the live row kept');
SELECT is((SELECT relreplident FROM pg_class WHERE oid = 't01.todos'::regclass), 'd'::"char",
          'replica identity back to DEFAULT');
SELECT is((SELECT count(*) FROM pg_publication_tables
            WHERE pubname = 'ferry' AND schemaname = 't01' AND tablename = 'todos'), 0::bigint,
          'the table left publication ferry');
SELECT is(pg_temp.recorded('t01.todos'::regclass, 't01', 'todos'), 0::bigint,
          'the table left ferry.synced_tables');
SELECT throws_ok($$SELECT ferry.disable_sync('t01.todos')$$, 'FY011', NULL,
                 'disable_sync of a table no longer synced: FY011');
SELECT throws_ok($$SELECT ferry.disable_sync('t01.plain')$$, 'FY011', NULL,
                 'disable_sync of a table never synced: FY011');

-- Its rules and conflict rules went with it: after enabling again, none is left.
SELECT lives_ok($$SELECT ferry.enable_sync('t01.todos', 'ws')$$, 'enable_sync after disable_sync');
SELECT throws_ok($$SELECT ferry.drop_rule('t01.todos', 'r1')$$, 'FY021', NULL,
                 'disable_sync dropped the table''s rules');
SELECT lives_ok($$UPDATE t01.todos SET title = 'changed' WHERE id = 1$$,
                'disable_sync dropped the table''s conflict rules (title no longer immutable)');

SELECT * FROM finish();
ROLLBACK;
