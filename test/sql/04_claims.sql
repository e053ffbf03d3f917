-- test/sql/04_claims.sql -- ferry.claim() outside ferry's own functions, from the setting
-- ferry.claims (docs/sql-api.md, "Claims").
BEGIN;
SELECT plan(14);

SELECT is((SELECT provolatile FROM pg_proc
            WHERE oid = 'ferry.claim(text)'::regprocedure), 's'::"char", 'ferry.claim is STABLE');
SELECT function_returns('ferry', 'claim', ARRAY['text'], 'text', 'ferry.claim(text) returns text');

SELECT set_config('ferry.claims', '', true);
SELECT ok(ferry.claim('sub') IS NULL, 'no claims set: claim(''sub'') is NULL');

SELECT set_config('ferry.claims',
    '{"sub":"u1","tenants":["w1","w2"],"role":"admin","lvl":3,"flag":true,"obj":{"a":1},"empty":""}', true);
SELECT is(ferry.claim('sub'), 'u1', 'a string claim as is');
SELECT is(ferry.claim('role'), 'admin', 'another string claim as is');
SELECT is(ferry.claim('empty'), '', 'an empty string claim is the empty string, not NULL');
SELECT is(ferry.claim('lvl'), '3', 'a number claim as its JSON text');
SELECT is(ferry.claim('flag'), 'true', 'a boolean claim as its JSON text');
SELECT is(ferry.claim('tenants')::jsonb, '["w1","w2"]'::jsonb, 'an array claim as its JSON text');
SELECT is(ferry.claim('obj')::jsonb, '{"a":1}'::jsonb, 'an object claim as its JSON text');
SELECT ok(ferry.claim('nope') IS NULL, 'an absent claim is NULL');
SELECT is(ferry.claim('lvl')::int + 1, 4, 'a number claim casts to int');

-- Ordinary SQL can use the same predicates.
CREATE TEMP TABLE owned (id int, owner text);
INSERT INTO owned VALUES (1, 'u1'), (2, 'u2'), (3, 'u1');
SELECT results_eq($$SELECT id FROM owned WHERE owner = ferry.claim('sub') ORDER BY id$$, ARRAY[1, 3],
                  'ordinary SQL filters with ferry.claim(''sub'')');

SELECT set_config('ferry.claims', '{"sub":"u2","tenants":["w1"]}', true);
SELECT results_eq($$SELECT id FROM owned WHERE owner = ferry.claim('sub') ORDER BY id$$, ARRAY[2],
                  'a new SET ferry.claims is seen by the next statement');

SELECT * FROM finish();
ROLLBACK;
