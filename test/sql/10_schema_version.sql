-- test/sql/10_schema_version.sql -- ferry.schema_version bumps, DDL refused because it would
-- break offline clients, min_client_schema_version (docs/sql-api.md, "Schema versions").
BEGIN;
SELECT plan(43);

CREATE SCHEMA t10;
CREATE TABLE t10.s (id int PRIMARY KEY, ws text NOT NULL, title text);
CREATE TABLE t10.unsynced (id int PRIMARY KEY, ws text NOT NULL);
SELECT ferry.enable_sync('t10.s', 'ws');
INSERT INTO t10.s VALUES (1, 'w1', 'a');

CREATE FUNCTION pg_temp.recorded(t_oid oid, t_schema text, t_name text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(DISTINCT to_jsonb(s)::text)
      FROM ferry.synced_tables s, jsonb_each_text(to_jsonb(s)) kv
     WHERE kv.value IN (t_oid::text, t_name, t_schema || '.' || t_name)
$$;
-- hint(sql) runs sql and returns the HINT of the error it raised (NULL if it raised none,
-- and then what it did is rolled back).
CREATE FUNCTION pg_temp.hint(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
    EXECUTE sql;
    RAISE EXCEPTION 'ran' USING ERRCODE = 'P0999';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN nullif(h, '');
END $$;
-- outcome(sql) runs sql and returns the SQLSTATE it raised, or 'no error' -- and then
-- rolls it back, so that DDL wrongly allowed does not change what later tests see.
CREATE FUNCTION pg_temp.outcome(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text;
BEGIN
    BEGIN
        EXECUTE sql;
        RAISE EXCEPTION 'ran' USING ERRCODE = 'P0999';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
    END;
    RETURN CASE WHEN st = 'P0999' THEN 'no error' ELSE st END;
END $$;
-- v0 is the schema version before each step.
CREATE TEMP TABLE v0 AS SELECT ferry.schema_version() AS v;
CREATE FUNCTION pg_temp.delta() RETURNS bigint LANGUAGE sql AS $$
    SELECT ferry.schema_version() - (SELECT v FROM v0)
$$;
CREATE FUNCTION pg_temp.mark() RETURNS void LANGUAGE sql AS $$
    UPDATE v0 SET v = ferry.schema_version()
$$;

SELECT function_returns('ferry', 'schema_version', '{}'::name[], 'bigint', 'schema_version() returns bigint');
SELECT cmp_ok(ferry.schema_version(), '>=', 1::bigint, 'schema_version() is at least 1');

-- Column changes of a synced table bump it, once per statement.
ALTER TABLE t10.s ADD COLUMN extra text;
SELECT is(pg_temp.delta(), 1::bigint, 'ADD COLUMN bumps the schema version by 1');
SELECT pg_temp.mark();
SELECT lives_ok($$ALTER TABLE t10.s ADD COLUMN flag boolean NOT NULL DEFAULT false$$,
                'ADD COLUMN NOT NULL with a default is allowed');
SELECT is(pg_temp.delta(), 1::bigint, '... and bumps the schema version');
SELECT is((SELECT flag FROM t10.s WHERE id = 1), false, '... and existing rows get the default');
SELECT pg_temp.mark();
ALTER TABLE t10.s RENAME COLUMN extra TO extra2;
SELECT is(pg_temp.delta(), 1::bigint, 'RENAME COLUMN bumps the schema version');
SELECT pg_temp.mark();
ALTER TABLE t10.s ALTER COLUMN extra2 TYPE varchar(20);
SELECT is(pg_temp.delta(), 1::bigint, 'ALTER COLUMN TYPE bumps the schema version');
SELECT pg_temp.mark();
ALTER TABLE t10.s DROP COLUMN extra2;
SELECT is(pg_temp.delta(), 1::bigint, 'DROP COLUMN bumps the schema version');
SELECT pg_temp.mark();

-- What does not change a synced table's columns does not bump it.
ALTER TABLE t10.unsynced ADD COLUMN extra text;
SELECT is(pg_temp.delta(), 0::bigint, 'ADD COLUMN to an unsynced table: no bump');
ALTER TABLE t10.unsynced DROP COLUMN extra;
SELECT is(pg_temp.delta(), 0::bigint, 'DROP COLUMN of an unsynced table: no bump');
ALTER TABLE t10.unsynced RENAME COLUMN ws TO ws2;
SELECT is(pg_temp.delta(), 0::bigint, 'RENAME COLUMN of an unsynced table: no bump');
ALTER TABLE t10.unsynced ADD COLUMN req int NOT NULL;
SELECT is(pg_temp.delta(), 0::bigint, 'ADD COLUMN NOT NULL (no default) to an unsynced table: allowed, no bump');
CREATE INDEX s_title ON t10.s (title);
SELECT is(pg_temp.delta(), 0::bigint, 'CREATE INDEX on a synced table: no bump');
UPDATE t10.s SET title = 'b';
SELECT is(pg_temp.delta(), 0::bigint, 'DML: no bump');

-- Refused DDL: FY040, a message saying why, a hint saying what to do instead, nothing done.
SELECT is(pg_temp.outcome($$ALTER TABLE t10.s ADD COLUMN req int NOT NULL$$), 'FY040', 'ADD COLUMN NOT NULL without a default: FY040');
SELECT ok(length(pg_temp.hint($$ALTER TABLE t10.s ADD COLUMN req int NOT NULL$$)) > 0,
          'ADD COLUMN NOT NULL without a default: a hint');
SELECT hasnt_column('t10', 's', 'req', 'the refused column was not added');

CREATE TABLE t10.empty (id int PRIMARY KEY, ws text NOT NULL);
SELECT ferry.enable_sync('t10.empty', 'ws');
SELECT pg_temp.mark();
SELECT is(pg_temp.outcome($$ALTER TABLE t10.empty ADD COLUMN req int NOT NULL$$), 'FY040', 'ADD COLUMN NOT NULL without a default, even to an empty synced table: FY040');

SELECT is(pg_temp.outcome($$ALTER TABLE t10.s DROP COLUMN ws$$), 'FY040', 'DROP of the tenant column: FY040');
SELECT throws_imatching($$ALTER TABLE t10.s DROP COLUMN ws$$, 'ws|tenant', 'the message names the tenant column');
SELECT ok(length(pg_temp.hint($$ALTER TABLE t10.s DROP COLUMN ws$$)) > 0, 'DROP of the tenant column: a hint');
SELECT is(pg_temp.outcome($$ALTER TABLE t10.s DROP COLUMN id$$), 'FY040', 'DROP of a key column: FY040');
SELECT is(pg_temp.outcome($$ALTER TABLE t10.s RENAME COLUMN ws TO workspace$$), 'FY040', 'RENAME of the tenant column: FY040');
SELECT is(pg_temp.outcome($$ALTER TABLE t10.s RENAME COLUMN id TO ident$$), 'FY040', 'RENAME of a key column: FY040');
SELECT is(pg_temp.outcome($$ALTER TABLE t10.s DROP CONSTRAINT s_pkey$$), 'FY040', 'dropping the primary key: FY040');
SELECT ok(length(pg_temp.hint($$ALTER TABLE t10.s DROP CONSTRAINT s_pkey$$)) > 0, 'dropping the primary key: a hint');
SELECT has_column('t10', 's', 'ws', 'the tenant column is still there');
SELECT has_column('t10', 's', 'id', 'the key column is still there');
SELECT col_is_pk('t10', 's', 'id', 'the primary key is still id');
SELECT is(pg_temp.delta(), 0::bigint, 'refused DDL does not bump the schema version');

-- min_client_schema_version.
SELECT function_returns('ferry', 'min_client_schema_version', '{}'::name[], 'bigint',
                        'min_client_schema_version() returns bigint');
SELECT throws_ok($$SELECT ferry.set_min_client_schema_version(0)$$, NULL, NULL, 'set_min_client_schema_version(0) is refused');
SELECT throws_ok(format('SELECT ferry.set_min_client_schema_version(%s)', ferry.schema_version() + 1), NULL, NULL,
                 'set_min_client_schema_version above the current version is refused');
SELECT lives_ok(format('SELECT ferry.set_min_client_schema_version(%s)', ferry.schema_version()),
                'set_min_client_schema_version(current)');
SELECT is(ferry.min_client_schema_version(), ferry.schema_version(), 'min_client_schema_version() = current');
SELECT lives_ok($$SELECT ferry.set_min_client_schema_version(1)$$, 'set_min_client_schema_version(1)');
SELECT is(ferry.min_client_schema_version(), 1::bigint, 'min_client_schema_version() = 1');
SELECT pg_temp.mark();
SELECT is(pg_temp.delta(), 0::bigint, 'setting the minimum does not bump the schema version');

-- Dropping a synced table removes it from ferry.
CREATE TEMP TABLE gone AS SELECT 't10.s'::regclass::oid AS oid;
SELECT is(pg_temp.recorded((SELECT oid FROM gone), 't10', 's'), 1::bigint, 't10.s is recorded before the drop');
SELECT lives_ok($$DROP TABLE t10.s$$, 'DROP TABLE of a synced table is allowed');
SELECT is(pg_temp.recorded((SELECT oid FROM gone), 't10', 's'), 0::bigint, 'and removes it from ferry.synced_tables');
SELECT lives_ok($$DROP SCHEMA t10 CASCADE$$, 'DROP SCHEMA CASCADE with a synced table in it');

SELECT * FROM finish();
ROLLBACK;
