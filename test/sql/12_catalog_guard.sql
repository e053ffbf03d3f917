-- 12_catalog_guard.sql -- ferry.rules accepts only validated predicates, however rows arrive.
BEGIN;
SELECT plan(3);

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

SELECT * FROM finish();
ROLLBACK;
