-- test/sql/02_metadata.sql -- row metadata kept by the trigger for plain SQL writes
-- (docs/sql-api.md, "Row metadata").
BEGIN;
SELECT plan(40);

CREATE SCHEMA t02;
CREATE TABLE t02.items (
    id    int PRIMARY KEY,
    ws    text NOT NULL,
    title text,
    note  text,
    n     int,
    stamp text
);
SELECT ferry.enable_sync('t02.items', 'ws');

-- A BEFORE trigger of the table's own, which must fire before zz_ferry_row: what it
-- sets must be seen (and clocked) by ferry.
CREATE FUNCTION t02.set_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.title = 'stamp me' THEN
        NEW.stamp := 'stamped';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER a_stamp BEFORE INSERT OR UPDATE ON t02.items
    FOR EACH ROW EXECUTE FUNCTION t02.set_stamp();

-- Snapshots of the clock, to compare across statements.
CREATE TEMP TABLE clocks (step int PRIMARY KEY, clock jsonb);

-- INSERT.
INSERT INTO t02.items (id, ws, title) VALUES (1, 'w1', 'a');
INSERT INTO clocks SELECT 1, ferry_clock FROM t02.items WHERE id = 1;

SELECT is((SELECT ferry_version FROM t02.items WHERE id = 1), 1::bigint, 'insert: version 1');
SELECT is((SELECT ferry_updated_at FROM t02.items WHERE id = 1), now(), 'insert: ferry_updated_at = now()');
SELECT is((SELECT ferry_xid FROM t02.items WHERE id = 1), pg_current_xact_id(),
          'insert: ferry_xid = pg_current_xact_id()');
SELECT ok((SELECT ferry_deleted_at IS NULL FROM t02.items WHERE id = 1), 'insert: ferry_deleted_at NULL');
SELECT ok((SELECT ferry_clock ? 'id' AND ferry_clock ? 'ws' AND ferry_clock ? 'title'
             FROM t02.items WHERE id = 1),
          'insert: every non-null column (id, ws, title) gets a clock');
SELECT ok((SELECT NOT (ferry_clock ? 'note') AND NOT (ferry_clock ? 'n') FROM t02.items WHERE id = 1),
          'insert: null columns (note, n) get no clock');
SELECT matches((SELECT ferry_clock->>'title' FROM t02.items WHERE id = 1), '^[0-9]{13}-[0-9]+-server$',
               'insert outside apply_mutation: a server clock <ms>-<n>-server');
SELECT ok((SELECT abs(split_part(ferry_clock->>'title', '-', 1)::bigint
                      - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 600000
             FROM t02.items WHERE id = 1),
          'the server clock''s physical part is the current time in ms');
SELECT is((SELECT count(DISTINCT v) FROM t02.items, jsonb_each_text(ferry_clock) AS c(k, v) WHERE id = 1),
          1::bigint, 'insert: all columns get the same (the write''s) clock');

-- Values a statement supplies for the metadata are ignored.
INSERT INTO t02.items (id, ws, title, ferry_version, ferry_updated_at, ferry_xid, ferry_clock, ferry_deleted_at)
VALUES (2, 'w1', 'b', 42, '2000-01-01', '5'::xid8, '{"title": "9999999999999-0-x"}', '2000-01-01');
SELECT is((SELECT ferry_version FROM t02.items WHERE id = 2), 1::bigint, 'insert: a supplied ferry_version is ignored');
SELECT is((SELECT ferry_updated_at FROM t02.items WHERE id = 2), now(), 'insert: a supplied ferry_updated_at is ignored');
SELECT is((SELECT ferry_xid FROM t02.items WHERE id = 2), pg_current_xact_id(), 'insert: a supplied ferry_xid is ignored');
SELECT isnt((SELECT ferry_clock->>'title' FROM t02.items WHERE id = 2), '9999999999999-0-x',
            'insert: a supplied ferry_clock is ignored');
SELECT ok((SELECT ferry_deleted_at IS NULL FROM t02.items WHERE id = 2),
          'insert: a supplied ferry_deleted_at is ignored (an insert is live)');

-- UPDATE of one column.
UPDATE t02.items SET title = 'a2' WHERE id = 1;
INSERT INTO clocks SELECT 2, ferry_clock FROM t02.items WHERE id = 1;
SELECT is((SELECT ferry_version FROM t02.items WHERE id = 1), 2::bigint, 'update: version + 1');
SELECT isnt((SELECT clock->>'title' FROM clocks WHERE step = 2), (SELECT clock->>'title' FROM clocks WHERE step = 1),
            'update: the changed column gets a new clock');
SELECT is((SELECT clock->>'id' FROM clocks WHERE step = 2), (SELECT clock->>'id' FROM clocks WHERE step = 1),
          'update: an unchanged column keeps its clock (id)');
SELECT is((SELECT clock->>'ws' FROM clocks WHERE step = 2), (SELECT clock->>'ws' FROM clocks WHERE step = 1),
          'update: an unchanged column keeps its clock (ws)');
SELECT ok((SELECT NOT (clock ? 'note') FROM clocks WHERE step = 2), 'update: an untouched null column still has no clock');
SELECT is((SELECT ferry_xid FROM t02.items WHERE id = 1), pg_current_xact_id(), 'update: ferry_xid = pg_current_xact_id()');
SELECT is((SELECT ferry_updated_at FROM t02.items WHERE id = 1), now(), 'update: ferry_updated_at = now()');

-- A write inside a subtransaction records the top-level transaction.
SAVEPOINT sub1;
UPDATE t02.items SET title = 'a2' WHERE id = 2;
RELEASE SAVEPOINT sub1;
SELECT is((SELECT ferry_xid FROM t02.items WHERE id = 2), pg_current_xact_id(),
          'a write in a subtransaction: ferry_xid is the top-level transaction');

-- A supplied version or clock is ignored on UPDATE too.
UPDATE t02.items SET ferry_version = 100, ferry_clock = '{}', note = 'x' WHERE id = 1;
INSERT INTO clocks SELECT 3, ferry_clock FROM t02.items WHERE id = 1;
SELECT is((SELECT ferry_version FROM t02.items WHERE id = 1), 3::bigint, 'update: a supplied ferry_version is ignored (old + 1)');
SELECT ok((SELECT clock ? 'note' FROM clocks WHERE step = 3), 'update: a column set from NULL gains a clock');
SELECT is((SELECT clock->>'title' FROM clocks WHERE step = 3), (SELECT clock->>'title' FROM clocks WHERE step = 2),
          'update: a supplied ferry_clock is ignored (title keeps its clock)');

-- An UPDATE that changes no value still bumps the version but no clock.
UPDATE t02.items SET title = title WHERE id = 1;
INSERT INTO clocks SELECT 4, ferry_clock FROM t02.items WHERE id = 1;
SELECT is((SELECT ferry_version FROM t02.items WHERE id = 1), 4::bigint, 'a no-op update: version + 1');
SELECT is((SELECT clock FROM clocks WHERE step = 4), (SELECT clock FROM clocks WHERE step = 3),
          'a no-op update: no clock changes');

-- The server clock is always above the column's previous clock, even within one
-- transaction (where now() does not move): three updates give three distinct clocks.
UPDATE t02.items SET n = 1 WHERE id = 1;
INSERT INTO clocks SELECT 5, ferry_clock FROM t02.items WHERE id = 1;
UPDATE t02.items SET n = 2 WHERE id = 1;
INSERT INTO clocks SELECT 6, ferry_clock FROM t02.items WHERE id = 1;
UPDATE t02.items SET n = 3 WHERE id = 1;
INSERT INTO clocks SELECT 7, ferry_clock FROM t02.items WHERE id = 1;
SELECT is((SELECT count(DISTINCT clock->>'n') FROM clocks WHERE step IN (5, 6, 7)), 3::bigint,
          'successive writes of a column get distinct clocks');
SELECT is((SELECT ferry_version FROM t02.items WHERE id = 1), 7::bigint, 'three more updates: version 7');

-- The table's own BEFORE trigger runs first; ferry sees and clocks what it set.
INSERT INTO t02.items (id, ws, title) VALUES (3, 'w1', 'stamp me');
SELECT is((SELECT stamp FROM t02.items WHERE id = 3), 'stamped', 'the table''s own BEFORE trigger ran');
SELECT ok((SELECT ferry_clock ? 'stamp' FROM t02.items WHERE id = 3),
          'zz_ferry_row fired after it: the column it set got a clock');

-- The tenant column cannot change.
SELECT throws_ok($$UPDATE t02.items SET ws = 'w2' WHERE id = 1$$, 'FY001', NULL,
                 'changing the tenant column: FY001');
SELECT is((SELECT ws FROM t02.items WHERE id = 1), 'w1', 'the tenant column kept its value');
SELECT lives_ok($$UPDATE t02.items SET ws = 'w1' WHERE id = 1$$,
                'setting the tenant column to its own value is not a change');

-- An immutable column cannot change.
SELECT ferry.set_conflict_rule('t02.items', 'note', 'immutable');
SELECT throws_ok($$UPDATE t02.items SET note = 'y' WHERE id = 1$$, 'FY002', NULL,
                 'changing an immutable column: FY002');
SELECT is((SELECT note FROM t02.items WHERE id = 1), 'x', 'the immutable column kept its value');
SELECT lives_ok($$UPDATE t02.items SET note = 'x', title = 't' WHERE id = 1$$,
                'an update that leaves the immutable column as it is works');
SELECT lives_ok($$INSERT INTO t02.items (id, ws, note) VALUES (4, 'w1', 'first')$$,
                'an insert sets an immutable column');
SELECT throws_ok($$UPDATE t02.items SET note = NULL WHERE id = 4$$, 'FY002', NULL,
                 'setting an immutable column to NULL: FY002');
SELECT is((SELECT ferry_version FROM t02.items WHERE id = 4), 1::bigint,
          'the refused update did not bump the version');

SELECT * FROM finish();
ROLLBACK;
