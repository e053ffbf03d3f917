-- 12_catalog_guard.sql -- ferry.rules accepts only validated predicates, however rows arrive.
BEGIN;
SELECT plan(6);

CREATE SCHEMA t12;
CREATE TABLE t12.items (id int PRIMARY KEY, ws text NOT NULL, owner text);
SELECT ferry.enable_sync('t12.items', 'ws');

SELECT throws_ok(
    $$INSERT INTO ferry.rules (tbl, name, read_predicate) VALUES ('t12.items', 'direct', 'true OR (SELECT true)')$$,
    'FY020', NULL, 'a predicate inserted straight into ferry.rules is validated too');

SELECT lives_ok(
    $$INSERT INTO ferry.rules (tbl, name, read_predicate) VALUES ('t12.items', 'direct', $p$owner = ferry.claim('sub')$p$)$$,
    'a valid predicate inserted straight into ferry.rules is accepted');

SELECT throws_ok(
    $$UPDATE ferry.rules SET write_predicate = 'random() > 0' WHERE name = 'direct'$$,
    'FY020', NULL, 'an UPDATE of ferry.rules is validated too');

-- Ordering text needs a collation the gateway reproduces (it compares bytes).
CREATE TABLE t12.names (id int PRIMARY KEY, ws text NOT NULL, icu text COLLATE "und-x-icu", c text COLLATE "C");
SELECT ferry.enable_sync('t12.names', 'ws');
SELECT throws_ok($$SELECT ferry.add_rule('t12.names', 'r1', $p$icu < 'm'$p$)$$, 'FY020', NULL,
    'ordering text under an ICU collation is refused');
SELECT lives_ok($$SELECT ferry.add_rule('t12.names', 'r2', $p$icu = 'm' AND c < 'x' AND ws >= 'a'$p$)$$,
    'equality under any collation, and ordering under C and the database default (C.UTF-8 here), are accepted');
SELECT throws_imatching($$SELECT ferry.add_rule('t12.names', 'r3', $p$icu >= 'm'$p$)$$,
    'bytewise', 'the refusal says why');

SELECT * FROM finish();
ROLLBACK;
