-- test/sql/03_tombstones.sql -- soft deletes, resurrection, undelete and
-- ferry.purge_tombstones (docs/sql-api.md, "Row metadata").
BEGIN;
SELECT plan(35);

CREATE SCHEMA t03;
CREATE TABLE t03.notes (id int PRIMARY KEY, ws text NOT NULL, body text, extra text);
SELECT ferry.enable_sync('t03.notes', 'ws');

-- rowcount(sql) is the number of rows the statement reported.
CREATE FUNCTION pg_temp.rowcount(sql text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

INSERT INTO t03.notes (id, ws, body, extra) VALUES
    (1, 'w1', 'one', 'x1'), (2, 'w1', 'two', 'x2'), (3, 'w1', 'three', NULL),
    (4, 'w1', 'four', NULL), (5, 'w1', 'five', NULL);
UPDATE t03.notes SET body = 'one!' WHERE id = 1;           -- row 1 at version 2

-- DELETE makes a tombstone.
SELECT is(pg_temp.rowcount($$DELETE FROM t03.notes WHERE id = 1$$), 0::bigint,
          'DELETE reports 0 rows (the row was not removed)');
SELECT is((SELECT count(*) FROM t03.notes WHERE id = 1), 1::bigint, 'the deleted row stays');
SELECT is((SELECT ferry_deleted_at FROM t03.notes WHERE id = 1), now(), 'ferry_deleted_at = now()');
SELECT is((SELECT ferry_version FROM t03.notes WHERE id = 1), 3::bigint, 'DELETE bumps the version');
SELECT is((SELECT body FROM t03.notes WHERE id = 1), 'one!', 'the tombstone keeps the row''s values');
SELECT is((SELECT ferry_xid FROM t03.notes WHERE id = 1), pg_current_xact_id(),
          'the tombstone''s ferry_xid is the deleting transaction');

-- Deleting a tombstone does nothing.
SELECT is(pg_temp.rowcount($$DELETE FROM t03.notes WHERE id = 1$$), 0::bigint,
          'DELETE of a tombstone reports 0 rows');
SELECT is((SELECT ferry_version FROM t03.notes WHERE id = 1), 3::bigint,
          'deleting a tombstone leaves its version');
SELECT is((SELECT ferry_deleted_at FROM t03.notes WHERE id = 1), now(),
          'deleting a tombstone leaves ferry_deleted_at');

-- A DELETE of several rows tombstones each.
DELETE FROM t03.notes WHERE id IN (4, 5);
SELECT is((SELECT count(*) FROM t03.notes WHERE id IN (4, 5) AND ferry_deleted_at IS NOT NULL), 2::bigint,
          'a multi-row DELETE tombstones every row');

-- INSERT of a tombstoned key resurrects it.
SELECT lives_ok($$INSERT INTO t03.notes (id, ws, body) VALUES (1, 'w1', 'reborn')$$,
                'INSERT of a tombstoned key works');
SELECT is((SELECT count(*) FROM t03.notes WHERE id = 1), 1::bigint, 'still one row for the key');
SELECT is((SELECT ferry_version FROM t03.notes WHERE id = 1), 4::bigint,
          'resurrected: version = tombstone version + 1');
SELECT ok((SELECT ferry_deleted_at IS NULL FROM t03.notes WHERE id = 1), 'resurrected: live again');
SELECT is((SELECT body FROM t03.notes WHERE id = 1), 'reborn', 'resurrected: the new values');
SELECT ok((SELECT extra IS NULL FROM t03.notes WHERE id = 1),
          'resurrected: the tombstone is replaced, not merged (extra is NULL, not x1)');

-- INSERT of a live key is the usual unique violation.
SELECT throws_ok($$INSERT INTO t03.notes (id, ws, body) VALUES (2, 'w1', 'dup')$$, '23505', NULL,
                 'INSERT of a live key: unique violation');
SELECT is((SELECT body FROM t03.notes WHERE id = 2), 'two', 'the live row is untouched');

-- Undelete by clearing ferry_deleted_at.
UPDATE t03.notes SET ferry_deleted_at = NULL WHERE id = 4;
SELECT ok((SELECT ferry_deleted_at IS NULL FROM t03.notes WHERE id = 4), 'undelete: live again');
SELECT is((SELECT ferry_version FROM t03.notes WHERE id = 4), 3::bigint, 'undelete: version bumped');
SELECT is((SELECT body FROM t03.notes WHERE id = 4), 'four', 'undelete: values kept');

-- An update that does not touch ferry_deleted_at keeps it.
UPDATE t03.notes SET body = 'five (deleted)' WHERE id = 5;
SELECT ok((SELECT ferry_deleted_at IS NOT NULL FROM t03.notes WHERE id = 5),
          'an update of a tombstone that does not set ferry_deleted_at keeps it a tombstone');

-- purge_tombstones: only tombstones older than now() - older_than go.
DELETE FROM t03.notes WHERE id = 3;
UPDATE t03.notes SET ferry_deleted_at = now() - interval '40 days' WHERE id = 3;   -- old tombstone
UPDATE t03.notes SET ferry_deleted_at = now() - interval '2 days' WHERE id = 5;    -- recent tombstone
INSERT INTO t03.notes (id, ws, body) VALUES (6, 'w1', 'live');
UPDATE t03.notes SET ferry_updated_at = now() - interval '90 days' WHERE id = 6;   -- ignored anyway

SELECT ok((SELECT ferry_deleted_at = now() - interval '40 days' FROM t03.notes WHERE id = 3),
          'a statement may set ferry_deleted_at of a tombstone');
SELECT is(ferry.purge_tombstones(), 1::bigint, 'purge_tombstones() (30 days) removes the one old tombstone');
SELECT results_eq($$SELECT id FROM t03.notes ORDER BY id$$, ARRAY[1, 2, 4, 5, 6],
                  'the old tombstone is gone; the recent tombstone and live rows stay');
SELECT is(ferry.purge_tombstones('1 day'), 1::bigint, 'purge_tombstones(''1 day'') removes the 2-day-old tombstone');
SELECT results_eq($$SELECT id FROM t03.notes ORDER BY id$$, ARRAY[1, 2, 4, 6],
                  'only live rows are left');
SELECT is(ferry.purge_tombstones('1 day'), 0::bigint, 'nothing left to purge: 0');

DELETE FROM t03.notes WHERE id = 6;
UPDATE t03.notes SET ferry_deleted_at = now() - interval '1 hour' WHERE id = 6;
SELECT is(ferry.purge_tombstones('2 hours'), 0::bigint, 'a 1-hour-old tombstone survives purge(''2 hours'')');
SELECT is(ferry.purge_tombstones('0 seconds'), 1::bigint, 'purge(''0 seconds'') removes it');
SELECT results_eq($$SELECT id FROM t03.notes ORDER BY id$$, ARRAY[1, 2, 4],
                  'live rows untouched by every purge');
SELECT is((SELECT count(*) FROM t03.notes WHERE ferry_deleted_at IS NULL), 3::bigint, 'all three rows live');

-- A purged key can be inserted again as a new row.
SELECT lives_ok($$INSERT INTO t03.notes (id, ws, body) VALUES (3, 'w1', 'again')$$,
                'a purged key can be inserted again');
SELECT is((SELECT ferry_version FROM t03.notes WHERE id = 3), 1::bigint, 'a purged key starts again at version 1');

-- Purging spans every synced table.
CREATE TABLE t03.other (id int PRIMARY KEY, ws text NOT NULL);
SELECT ferry.enable_sync('t03.other', 'ws');
INSERT INTO t03.other VALUES (1, 'w1'), (2, 'w1');
DELETE FROM t03.other;
UPDATE t03.other SET ferry_deleted_at = now() - interval '100 days';
DELETE FROM t03.notes WHERE id = 3;
UPDATE t03.notes SET ferry_deleted_at = now() - interval '100 days' WHERE id = 3;
SELECT is(ferry.purge_tombstones(), 3::bigint, 'purge_tombstones counts across every synced table');

SELECT * FROM finish();
ROLLBACK;
