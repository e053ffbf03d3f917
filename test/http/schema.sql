-- test/http/schema.sql -- the tables test/http's tests read and write through ferryd.
CREATE EXTENSION IF NOT EXISTS ferry;
CREATE TABLE items (
  id bigint PRIMARY KEY,
  ws text NOT NULL,
  title text,
  done bool,
  meta jsonb,
  tags text[],
  due timestamptz,
  n int8
);
SELECT ferry.enable_sync('items', 'ws');
CREATE TABLE notes (id int PRIMARY KEY, ws text NOT NULL, body text);
SELECT ferry.enable_sync('notes', 'ws');
INSERT INTO items (id, ws, title, done, meta, tags, due, n) VALUES
  (1, 'a', 'one', false, '{"x": 1, "y": [true, null]}', '{a,"b c"}', '2024-05-01 10:00:00+00', 9007199254740993),
  (2, 'a', 'two', true, NULL, NULL, NULL, NULL),
  (3, 'b', 'three', NULL, NULL, '{}', NULL, -5);
INSERT INTO notes (id, ws, body) SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'note ' || g
  FROM generate_series(1, 20) g;
CREATE TABLE owned (id int PRIMARY KEY, ws text NOT NULL, owner text NOT NULL, body text);
SELECT ferry.enable_sync('owned', 'ws');
SELECT ferry.add_rule('owned', 'own_rows', $$owner = ferry.claim('sub')$$);
INSERT INTO owned VALUES (1, 'a', 'u1', 'mine'), (2, 'a', 'u3', 'not mine'), (3, 'b', 'u1', 'other tenant');
CREATE TABLE big (id int PRIMARY KEY, ws text NOT NULL, body text);
SELECT ferry.enable_sync('big', 'ws');
INSERT INTO big SELECT g, 'a', repeat('x', 100) || g FROM generate_series(1, 20000) g;
