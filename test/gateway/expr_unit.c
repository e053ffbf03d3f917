/*
 * test/gateway/expr_unit.c -- unit tests of gateway/expr.c: what expr_compile refuses (and
 * the messages it gives), and expr_eval on hand-picked rows (NULLs, bpchar, negatives,
 * numeric precision, NaN and infinities, timestamps with offsets, LIKE escapes, NOT IN
 * with NULL), routing terms, canonical text, columns, claims, and threads.
 * No database needed: test/gateway/expr_diff.c compares with Postgres itself.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "tap.h"

static const ExprColumn cols[] = {
	{"id", 23}, {"b", 16}, {"i2", 21}, {"i4", 23}, {"i8", 20}, {"n", 1700}, {"f4", 700}, {"f8", 701},
	{"t", 25}, {"v", 1043}, {"c", 1042}, {"u", 2950}, {"d", 1082}, {"ts", 1114}, {"tz", 1184}, {"j", 3802},
	{"Mixed Case", 25},
};

enum
{
	ID, B, I2, I4, I8, N, F4, F8, T, V, C, U, D, TS, TZ, J, MIXED, NCOLS
};

static const ExprSchema schema = {NCOLS, cols};

/* The row most tests use; set() changes one value of a copy. */
static const char *const base[NCOLS] = {
	"1", "t", "-5", "5", "-9223372036854775808", "12345678901234567890.5", "1.1", "0.1", "abc", "abc", "ab    ",
	"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-01-05", "2024-05-01 10:00:00.25", "2024-05-01 10:00:00+00",
	"{\"a\": 1}", "x"
};

typedef struct Row
{
	const char *v[NCOLS];		/* the values */
} Row;

static Row
row(void)
{
	Row			r;

	memcpy(r.v, base, sizeof(base));
	return r;
}

static Row
set(Row r, int col, const char *value)
{
	r.v[col] = value;
	return r;
}

static const char *
claims(void *arg, const char *name)
{
	(void) arg;
	if (strcmp(name, "sub") == 0)
		return "abc";
	if (strcmp(name, "role") == 0)
		return "admin";
	if (strcmp(name, "lvl") == 0)
		return "5";
	if (strcmp(name, "pad") == 0)
		return "ab ";
	return NULL;
}

static const char *
bool_name(int b)
{
	return b == EXPR_TRUE ? "true" : b == EXPR_FALSE ? "false" : b == EXPR_NULL ? "NULL" : "(refused)";
}

/* ev compiles pred (with the claims above) and evaluates it on r; -1 when refused. */
static int
ev(const char *pred, Row r, int want)
{
	Expr	   *e;
	char		err[512];
	int			v;

	if (expr_compile(pred, &schema, claims, NULL, &e, err, sizeof(err)) != 0)
	{
		if (want != -1)
			diag("refused %s: %s", pred, err);
		return -1;
	}
	v = (int) expr_eval(e, r.v);
	expr_free(e);
	return v;
}

#define is_eval(pred, r, want) \
	is_str(bool_name(ev(pred, r, want)), bool_name(want), "%s", pred)

/* refused checks that pred does not compile and that the message contains want. */
static void
refused(const char *pred, const char *want)
{
	Expr	   *e = (Expr *) 1;
	char		err[512];
	int			rc = expr_compile(pred, &schema, claims, NULL, &e, err, sizeof(err));

	if (!ok(rc == -1 && e == NULL && strstr(err, want) != NULL, "refused: %s", pred))
		diag("  rc %d, message: %s\n  expected it to contain: %s", rc, rc == 0 ? "(none)" : err, want);
	if (rc == 0)
		expr_free(e);
}

static char *
canonical(const char *pred)
{
	Expr	   *e;
	char		err[512];
	char	   *s;

	if (expr_compile(pred, &schema, claims, NULL, &e, err, sizeof(err)) != 0)
		return strdup(err);
	s = expr_canonical(e);
	expr_free(e);
	return s;
}

static void
test_refusals(void)
{
	refused("i4 = (SELECT 1)", "predicate not supported: subqueries at \"(SELECT 1)\"");
	refused("EXISTS (SELECT 1 FROM pg_class)", "predicate not supported: subqueries at \"EXISTS (SELECT 1 FROM pg...\"");
	refused("i4 IN (SELECT 1)", "subqueries");
	refused("lower(t) = 'a'", "predicate not supported: function lower(); only ferry.claim('name')");
	refused("now() > tz", "function now()");
	refused("t LIKE 'a' ESCAPE '!'", "function pg_catalog.like_escape()");
	refused("i4 + 1 = 2", "predicate not supported: operator + at \"+ 1 = 2\"");
	refused("t || 'x' = 'y'", "operator ||");
	refused("i4 % 2 = 0", "operator %");
	refused("-i4 = 1", "prefix operator -");
	refused("i4 BETWEEN 1 AND 2", "predicate not supported: BETWEEN at \"BETWEEN 1 AND 2\"");
	refused("i4 NOT BETWEEN 1 AND 2", "BETWEEN");
	refused("CASE WHEN b THEN true END", "predicate not supported: CASE");
	refused("COALESCE(b, false)", "COALESCE");
	refused("NULLIF(i4, 1) = 1", "NULLIF");
	refused("i4 IS DISTINCT FROM 1", "IS [NOT] DISTINCT FROM");
	refused("i4 IS NOT DISTINCT FROM 1", "IS [NOT] DISTINCT FROM");
	refused("b IS TRUE", "IS [NOT] TRUE/FALSE/UNKNOWN");
	refused("t SIMILAR TO 'a'", "SIMILAR TO");
	refused("i4 = ANY ('{1,2}')", "ANY/ALL");
	refused("i4 = ALL ('{1,2}')", "ANY/ALL");
	refused("ARRAY[i4] IS NULL", "ARRAY[...]");
	refused("(i4, i8) = (1, 2)", "row constructors");
	refused("GREATEST(i4, 1) = 1", "GREATEST/LEAST");
	refused("d = CURRENT_DATE", "CURRENT_DATE");
	refused("t COLLATE \"C\" = 'a'", "COLLATE");
	refused("i4::text = '5'", "casts of anything but literals and ferry.claim()");
	refused("'{1}'::int[] IS NULL", "cast to pg_catalog.int4[]");
	refused("'x'::interval IS NULL", "cast to pg_catalog.interval");
	refused("'x'::mytype IS NULL", "cast to mytype");
	refused("'x'::\"char\" IS NULL", "cast to char");
	refused("tbl.i4 = 1", "qualified column names");
	refused("xmin = '1'", "predicate not supported: system column \"xmin\"");
	refused("i4 = $1", "parameters");
	refused("i4 = 1; DROP TABLE x", "more than one statement");
	refused("i4 = 1 ORDER BY 1", "anything but one boolean expression");
	refused("true UNION SELECT 1", "anything but one boolean expression");
	refused("i4 = 1 LIMIT 1", "anything but one boolean expression");
	refused("", "an empty predicate");
	refused(" \n\t", "an empty predicate");
	refused("i4 = B'101'", "bit-string literals");
	refused("i4 IN (1, i8)", "IN lists of anything but literals and claims");
	refused("ferry.claim(t) = 'a'", "function ferry.claim()");
	refused("ferry.claim('a', 'b') = 'a'", "function ferry.claim()");
	refused("claim('sub') = 'a'", "function claim()");
	refused("i4 OPERATOR(pg_catalog.=) 1", "schema-qualified operators");
	refused("t ~ 'a'", "operator ~");
	refused("t ~~ 'a'", "operator ~~");

	/* names and types */
	refused("nope = 1", "column \"nope\" does not exist");
	refused("mixed case = 'x'", "syntax error");
	refused("\"mixed case\" = 'x'", "column \"mixed case\" does not exist");
	refused("t = 1", "operator does not exist: text = integer at \"= 1\"");
	refused("u = ferry.claim('sub')", "operator does not exist: uuid = text");
	refused("d LIKE '2024%'", "operator does not exist: date ~~ unknown");
	refused("i4 = 'abc'", "invalid input syntax for type integer: \"abc\" at \"'abc'\"");
	refused("'abc'::int = i4", "invalid input syntax for type integer: \"abc\"");
	refused("i2 = '99999'", "value \"99999\" is out of range for type smallint");
	refused("b = 'maybe'", "invalid input syntax for type boolean: \"maybe\"");
	refused("u = 'a0eebc99'", "invalid input syntax for type uuid");
	refused("d = '2024-02-30'", "date/time field value out of range: \"2024-02-30\"");
	refused("tz = '2024-01-01 10:00+16'", "time zone displacement out of range");
	refused("n = '1e131072'", "value overflows numeric format");
	refused("'1000'::numeric(3,1) = n", "numeric field overflow");
	refused("100000::int2 = i2", "smallint out of range");
	refused("'x'::varchar(0) IS NULL", "length for type varchar must be at least 1");
	refused("'5'::int4(2) IS NULL", "type modifier is not allowed for type \"int4\"");
	refused("true::int8 = i8", "cannot cast type boolean to bigint");
	refused("i4", "argument of WHERE must be type boolean, not type integer at \"i4\"");
	refused("b AND t", "argument of AND must be type boolean, not type text");
	refused("NOT 1", "argument of NOT must be type boolean, not type integer");
	refused("i4 =", "syntax error at end of input (at character 5 of the predicate)");
	refused("i4 = = 1", "syntax error at or near \"=\" (at character 6 of the predicate)");
	refused("j = '{}'", "column \"j\" has a type the gateway cannot evaluate (type OID 3802)");
	refused("j LIKE '%'", "the gateway cannot evaluate");

	/* the gateway's own refusals (expr.h, "Deliberate differences") */
	refused("d = 'today'", "date/time literal \"today\" is not supported by the gateway: it depends on the current time");
	refused("ts > 'now'", "depends on the current time");
	refused("d = 'May 5 2024'", "the gateway reads ISO 8601 date/time literals only");
	refused("t LIKE 'a\\'", "LIKE pattern must not end with escape character at \"'a\\'\"");
	refused("i4 = ferry.claim('sub')::int", "invalid input syntax for type integer: \"abc\" (claim \"sub\")");
	{
		char		deep[2048] = "";

		for (int i = 0; i < EXPR_MAX_DEPTH + 5; i++)
			strcat(deep, "NOT ");
		strcat(deep, "b");
		refused(deep, "predicate nested too deeply (more than 200 levels)");
	}
	refused("t = '\xff'", "invalid byte sequence for encoding \"UTF8\"");
}

static void
test_compile_api(void)
{
	Expr	   *e = (Expr *) 1;
	char		err[16];
	char		big[512];

	ok(expr_compile("nope = 1", &schema, claims, NULL, &e, err, sizeof(err)) == -1 && e == NULL &&
	   strlen(err) == sizeof(err) - 1, "a long message is cut to errlen, NUL-terminated");
	ok(expr_compile("nope = 1", &schema, claims, NULL, &e, NULL, 0) == -1, "err may be NULL with errlen 0");
	ok(expr_compile("t = ferry.claim('sub')", &schema, NULL, NULL, &e, big, sizeof(big)) == -1 &&
	   strstr(big, "predicate not supported: ferry.claim() in a shape's WHERE clause") != NULL,
	   "without a claim function, ferry.claim() is refused: %s", big);
	ok(expr_compile(NULL, &schema, claims, NULL, &e, big, sizeof(big)) == -1, "a NULL predicate is an error");
	expr_free(NULL);
	ok(1, "expr_free(NULL) is a no-op");
}

static void
test_nulls_and_logic(void)
{
	Row			r = row();
	Row			n = set(set(set(row(), I4, NULL), T, NULL), B, NULL);

	is_eval("i4 = 5", r, EXPR_TRUE);
	is_eval("i4 = 5", n, EXPR_NULL);
	is_eval("i4 <> 5", n, EXPR_NULL);
	is_eval("i4 IS NULL", n, EXPR_TRUE);
	is_eval("i4 IS NOT NULL", n, EXPR_FALSE);
	is_eval("i4 = NULL", r, EXPR_NULL);
	is_eval("NULL IS NULL", r, EXPR_TRUE);
	is_eval("'x' IS NULL", r, EXPR_FALSE);
	is_eval("i4 = 5 AND t = 'x'", n, EXPR_NULL);
	is_eval("i4 = 5 AND i8 = 0", n, EXPR_FALSE);
	is_eval("i4 = 5 OR i8 < 0", n, EXPR_TRUE);
	is_eval("i4 = 5 OR i8 = 0", n, EXPR_NULL);
	is_eval("NOT (i4 = 5)", n, EXPR_NULL);
	is_eval("b", r, EXPR_TRUE);
	is_eval("NOT b", r, EXPR_FALSE);
	is_eval("b", n, EXPR_NULL);
	is_eval("b IS NULL", n, EXPR_TRUE);
	is_eval("(i4 = 5) IS NULL", n, EXPR_TRUE);
	is_eval("(i4 = 5) = (t = 'abc')", r, EXPR_TRUE);
	is_eval("(i4 = 5) <> true", r, EXPR_FALSE);
	is_eval("b = 'yes'", r, EXPR_TRUE);
	is_eval("'on'", r, EXPR_TRUE);
	is_eval("NULL", r, EXPR_NULL);
	is_eval("NULL AND false", r, EXPR_FALSE);
	is_eval("NULL OR true", r, EXPR_TRUE);
	/* NOT IN with NULLs is three-valued, like Postgres */
	is_eval("i4 IN (1, 5)", r, EXPR_TRUE);
	is_eval("i4 IN (1, NULL)", r, EXPR_NULL);
	is_eval("i4 IN (5, NULL)", r, EXPR_TRUE);
	is_eval("i4 NOT IN (1, 2)", r, EXPR_TRUE);
	is_eval("i4 NOT IN (1, NULL)", r, EXPR_NULL);
	is_eval("i4 NOT IN (5, NULL)", r, EXPR_FALSE);
	is_eval("i4 NOT IN (1, 2)", n, EXPR_NULL);
	is_eval("i4 IN (NULL)", r, EXPR_NULL);
	/* an absent claim is NULL: rules fail closed */
	is_eval("t = ferry.claim('absent')", r, EXPR_NULL);
	is_eval("t = ferry.claim('sub')", r, EXPR_TRUE);
	is_eval("ferry.claim('role') = 'admin'", n, EXPR_TRUE);
	is_eval("i4 = ferry.claim('lvl')::int", r, EXPR_TRUE);
	is_eval("i4 = ferry.claim('absent')::int", r, EXPR_NULL);
}

static void
test_numbers(void)
{
	Row			r = row();

	/* negatives */
	is_eval("i2 = -5", r, EXPR_TRUE);
	is_eval("i2 < -4", r, EXPR_TRUE);
	is_eval("i2 = '-5'", r, EXPR_TRUE);
	is_eval("i2 = (-5)::int8", r, EXPR_TRUE);
	is_eval("i8 = -9223372036854775808", r, EXPR_TRUE);
	is_eval("i8 < -9223372036854775807", r, EXPR_TRUE);
	is_eval("i8 < -9223372036854775808.5", r, EXPR_FALSE);
	is_eval("i8 > -9223372036854775808.5", r, EXPR_TRUE);
	/* untyped literals take the column's type; numeric compares exactly */
	is_eval("i4 = '5'", r, EXPR_TRUE);
	is_eval("i4 = 5.0", r, EXPR_TRUE);
	is_eval("i4 < 5.0000000000000000000001", r, EXPR_TRUE);
	is_eval("i4 = 2.5 * 2", r, -1);
	is_eval("n = 12345678901234567890.5", r, EXPR_TRUE);
	is_eval("n = '12345678901234567890.50'", r, EXPR_TRUE);
	is_eval("n > 12345678901234567890.4999999999", r, EXPR_TRUE);
	is_eval("n < 12345678901234567890.5000000001", r, EXPR_TRUE);
	is_eval("n = 12345678901234567890", r, EXPR_FALSE);
	is_eval("n = 1.23456789012345678905e19", r, EXPR_TRUE);
	is_eval("n = 12345678901234567890.5::float8", r, EXPR_TRUE);	/* as doubles, both round the same */
	is_eval("n = '-0.000'", set(r, N, "0"), EXPR_TRUE);
	is_eval("n < 0.1", set(r, N, "0.0999999999999999999999"), EXPR_TRUE);
	is_eval("n > 99999999999999999999", set(r, N, "100000000000000000000.000"), EXPR_TRUE);
	/* numeric NaN and infinities order like Postgres: NaN above everything */
	is_eval("n = 'NaN'", set(r, N, "NaN"), EXPR_TRUE);
	is_eval("n > 'Infinity'", set(r, N, "NaN"), EXPR_TRUE);
	is_eval("n < 'Infinity'", r, EXPR_TRUE);
	is_eval("n > '-Infinity'", r, EXPR_TRUE);
	is_eval("n > 1e100", set(r, N, "Infinity"), EXPR_TRUE);
	/* floats: int against float is double; a real widened exactly */
	is_eval("f8 = 0.1", r, EXPR_TRUE);
	is_eval("f4 = 1.1", r, EXPR_FALSE);	/* float4 1.1 widened is not double 1.1 */
	is_eval("f4 = '1.1'", r, EXPR_TRUE);	/* the literal is a real */
	is_eval("f4 IN (1.1, 2)", r, EXPR_TRUE);	/* the IN list's common type is real */
	is_eval("f4 IN (1.1)", r, EXPR_FALSE);	/* one item: plain = */
	is_eval("f8 = 'NaN'", set(r, F8, "NaN"), EXPR_TRUE);
	is_eval("f8 > 'Infinity'", set(r, F8, "NaN"), EXPR_TRUE);
	is_eval("f8 = 0", set(r, F8, "-0"), EXPR_TRUE);
	is_eval("i8 = 9007199254740992::float8", set(r, I8, "9007199254740993"), EXPR_TRUE);
	is_eval("i8 = 9007199254740992", set(r, I8, "9007199254740993"), EXPR_FALSE);
	/* casts convert at compile time, as Postgres */
	is_eval("i4 = 4.5::int", r, EXPR_TRUE);
	is_eval("i4 = '4.5'::numeric(2,0)", r, EXPR_TRUE);
	is_eval("i4 = 5::bool::int", r, -1);
	is_eval("n = '12.35'::numeric(3,1)", set(r, N, "12.4"), EXPR_TRUE);
	/* folded away: Postgres never evaluates the failing cast */
	is_eval("false AND i2 = 100000::int2", r, EXPR_FALSE);
	is_eval("i2 = 100000::int2 AND false", r, -1);	/* folded after the cast: an error */
	is_eval("(1 = 2) AND '1000'::numeric(3,1) = n", r, EXPR_FALSE);
	is_eval("i2 = NULL AND i2 = 100000::int2", r, -1);
	/* a failing claim cast: Postgres runs it per row unless folding removed it */
	is_eval("false AND i4 = ferry.claim('sub')::int", r, EXPR_FALSE);
	is_eval("ferry.claim('sub')::int = NULL", r, EXPR_NULL);
	is_eval("ferry.claim('sub')::int IS NULL", r, -1);
	is_eval("ferry.claim('sub')::bool", r, -1);
	/* Postgres skips it per row (or not: the planner may reorder a WHERE clause): refused */
	is_eval("ferry.claim('role') = 'user' AND ferry.claim('sub')::bool", r, -1);
	is_eval("NOT true AND ferry.claim('sub')::bool", r, EXPR_FALSE);
}

static void
test_strings(void)
{
	Row			r = row();

	/* bpchar: trailing spaces do not count, except against text (rtrim) */
	is_eval("c = 'ab'", r, EXPR_TRUE);
	is_eval("c = 'ab  '", r, EXPR_TRUE);
	is_eval("c = 'ab'::text", r, EXPR_TRUE);
	is_eval("c = 'ab '::text", r, EXPR_FALSE);
	is_eval("c = v", set(r, V, "ab "), EXPR_TRUE);	/* varchar against bpchar: bpchar */
	is_eval("c = t", set(r, T, "ab "), EXPR_FALSE);	/* text against bpchar: text */
	is_eval("c = ferry.claim('pad')", r, EXPR_FALSE);	/* a claim is text */
	is_eval("c IN (ferry.claim('pad'), 'zz')", r, EXPR_TRUE);	/* common type bpchar */
	is_eval("c < 'ab!'", r, EXPR_TRUE);
	is_eval("c LIKE 'ab'", r, EXPR_FALSE);	/* LIKE sees the padding */
	is_eval("c LIKE 'ab    '", r, EXPR_TRUE);
	is_eval("c LIKE 'ab%'", r, EXPR_TRUE);
	is_eval("'5'::char(3) = '5'", r, EXPR_TRUE);
	is_eval("'abc'::char = 'a'", r, EXPR_TRUE);
	is_eval("varchar(2) 'abc' = 'ab'", r, EXPR_TRUE);
	is_eval("5::char(3) LIKE '5  '", r, EXPR_TRUE);
	/* text: bytes in C order; equality is byte equality */
	is_eval("t = 'abc'", r, EXPR_TRUE);
	is_eval("t = 'ABC'", r, EXPR_FALSE);
	is_eval("t > 'ABC'", r, EXPR_TRUE);	/* 'a' (0x61) > 'A' (0x41) */
	is_eval("t < '\xc3\xa9'", r, EXPR_TRUE);
	is_eval("t > 'z'", set(r, T, "\xc3\xa9"), EXPR_TRUE);
	is_eval("t < '\xf0\x9f\x98\x80'", set(r, T, "\xef\xbf\xbf"), EXPR_TRUE);
	is_eval("\"Mixed Case\" = 'x'", r, EXPR_TRUE);
	is_eval("'a' = 'a'", r, EXPR_TRUE);
	/* LIKE and its escapes */
	is_eval("t LIKE 'a%'", r, EXPR_TRUE);
	is_eval("t LIKE '_b_'", r, EXPR_TRUE);
	is_eval("t LIKE '__'", r, EXPR_FALSE);
	is_eval("t LIKE 'a\\%'", set(r, T, "a%"), EXPR_TRUE);
	is_eval("t LIKE 'a\\%'", set(r, T, "ab"), EXPR_FALSE);
	is_eval("t LIKE 'a\\_b'", set(r, T, "a_b"), EXPR_TRUE);
	is_eval("t LIKE 'a\\_b'", set(r, T, "axb"), EXPR_FALSE);
	is_eval("t LIKE 'a\\\\b'", set(r, T, "a\\b"), EXPR_TRUE);
	is_eval("t LIKE '\\a\\b\\c'", r, EXPR_TRUE);
	is_eval("t LIKE '%\\%%'", set(r, T, "50% off"), EXPR_TRUE);
	is_eval("t LIKE '_'", set(r, T, "\xc3\xa9"), EXPR_TRUE);	/* _ is a character, not a byte */
	is_eval("t LIKE '__'", set(r, T, "\xc3\xa9"), EXPR_FALSE);
	is_eval("t NOT LIKE 'a%'", r, EXPR_FALSE);
	is_eval("t LIKE NULL", r, EXPR_NULL);
	is_eval("t LIKE v", set(r, V, "a\\"), EXPR_NULL);	/* Postgres: an error */
	is_eval("t LIKE v", set(r, V, "x\\"), EXPR_FALSE);	/* Postgres gives up before the escape */
	is_eval("t ILIKE 'A_C'", r, EXPR_TRUE);
	is_eval("t NOT ILIKE 'ABC'", r, EXPR_FALSE);
	is_eval("t ILIKE '\xc3\xa9" "cole'", set(r, T, "\xc3\x89" "COLE"), EXPR_TRUE);
	is_eval("t ILIKE ferry.claim('sub')", set(r, T, "ABC"), EXPR_TRUE);
	/* uuid: every input form, compared as bytes */
	is_eval("u = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", r, EXPR_TRUE);
	is_eval("u = '{a0eebc999c0b4ef8bb6d6bb9bd380a11}'", r, EXPR_TRUE);
	is_eval("u = 'a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11'", r, EXPR_TRUE);
	is_eval("u < 'b0000000-0000-0000-0000-000000000000'", r, EXPR_TRUE);
}

static void
test_times(void)
{
	Row			r = row();

	is_eval("d = '2024-01-05'", r, EXPR_TRUE);
	is_eval("d = '2024-1-5'", r, EXPR_TRUE);
	is_eval("d = '2024-01-05 23:59'", r, EXPR_TRUE);	/* date input drops the time */
	is_eval("d < '2024-01-05 00:00:01'::timestamp", r, EXPR_TRUE);
	is_eval("d = '2024-01-05'::timestamptz", r, EXPR_TRUE);
	is_eval("d > '-infinity'", r, EXPR_TRUE);
	is_eval("d < 'infinity'", r, EXPR_TRUE);
	is_eval("d > '0044-03-15 BC'", r, EXPR_TRUE);
	is_eval("d > '294276-12-31'::timestamp", set(r, D, "5874897-12-31"), EXPR_TRUE);
	is_eval("d < 'infinity'::timestamp", set(r, D, "5874897-12-31"), EXPR_TRUE);
	is_eval("d = 'epoch'", set(r, D, "1970-01-01"), EXPR_TRUE);
	/* timestamptz: values in UTC; literals with offsets, or none (UTC) */
	is_eval("tz = '2024-05-01 12:00:00+02'", r, EXPR_TRUE);
	is_eval("tz = '2024-05-01T10:00:00Z'", r, EXPR_TRUE);
	is_eval("tz = '2024-05-01 10:00'", r, EXPR_TRUE);
	is_eval("tz = '2024-05-01 04:30:00-05:30'", r, EXPR_TRUE);
	is_eval("tz < '2024-05-01 12:00:00.000001+02'", r, EXPR_TRUE);
	is_eval("tz = '2024-05-01 12:00:00+02'", set(r, TZ, "2024-05-01 10:00:00.5+00"), EXPR_FALSE);
	is_eval("tz > '2024-05-01 10:00:00.499999+00'", set(r, TZ, "2024-05-01 10:00:00.5+00"), EXPR_TRUE);
	is_eval("tz = '2024-05-01 10:00:00+00'", set(r, TZ, "2024-05-01 15:30:00+05:30"), EXPR_TRUE);
	is_eval("tz = ts", set(r, TS, "2024-05-01 10:00:00"), EXPR_TRUE);
	is_eval("tz < '0001-01-01'", set(r, TZ, "0044-03-15 12:00:00+00 BC"), EXPR_TRUE);
	/* timestamp: no zone; an offset in a literal is ignored */
	is_eval("ts = '2024-05-01 10:00:00.25'", r, EXPR_TRUE);
	is_eval("ts = '2024-05-01 10:00:00.25+02'", r, EXPR_TRUE);
	is_eval("ts > '2024-05-01'", r, EXPR_TRUE);
	is_eval("ts = TIMESTAMP(1) '2024-05-01 10:00:00.2499'", set(r, TS, "2024-05-01 10:00:00.2"), EXPR_TRUE);
	is_eval("ts = '2024-04-30 24:00'", set(r, TS, "2024-05-01 00:00:00"), EXPR_TRUE);
	is_eval("ts = 'infinity'", set(r, TS, "infinity"), EXPR_TRUE);
	is_eval("ts > '294276-12-31 23:59:59'", set(r, TS, "infinity"), EXPR_TRUE);
}

static void
test_terms_columns_canonical(void)
{
	Expr	   *e;
	char		err[512];
	int			cs[8];
	const char *cc[8];
	int			n;
	char	   *a,
			   *b;

	ok(expr_compile("t = ferry.claim('sub') AND b AND NOT (i4 = 1) AND i4 = 5.0 AND c = 'x' AND u = "
					"'{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}' AND d = '2024-1-5' AND tz = '2024-05-01 12:00+02'",
					&schema, claims, NULL, &e, err, sizeof(err)) == 0, "compiles a predicate with routing terms");
	n = expr_eq_terms(e, 8, cs, cc);
	is_int(n, 6, "six routing terms (not bpchar, not the NOT)");
	if (n == 6)
	{
		ok(cs[0] == T && strcmp(cc[0], "abc") == 0, "t = 'abc' (the claim)");
		ok(cs[1] == B && strcmp(cc[1], "t") == 0, "a bare bool column is b = 't'");
		ok(cs[2] == I4 && strcmp(cc[2], "5") == 0, "i4 = '5' (5.0 in the column's text form)");
		ok(cs[3] == U && strcmp(cc[3], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11") == 0, "uuid in its text form");
		ok(cs[4] == D && strcmp(cc[4], "2024-01-05") == 0, "date in its text form");
		ok(cs[5] == TZ && strcmp(cc[5], "2024-05-01 10:00:00+00") == 0, "timestamptz in UTC");
	}
	else
		skip(6, "wrong number of terms");
	is_int(expr_eq_terms(e, 2, cs, cc), 2, "expr_eq_terms fills at most max");
	n = expr_columns(e, 8, cs);
	ok(n == 7 && cs[0] == B && cs[1] == I4 && cs[2] == T && cs[3] == C && cs[4] == U && cs[5] == D && cs[6] == TZ,
	   "expr_columns: the columns read, ascending");
	expr_free(e);

	ok(expr_compile("NOT b OR i4 IS NULL", &schema, claims, NULL, &e, err, sizeof(err)) == 0, "an OR");
	is_int(expr_eq_terms(e, 8, cs, cc), 0, "no routing terms in an OR");
	expr_free(e);
	ok(expr_compile("NOT b", &schema, claims, NULL, &e, err, sizeof(err)) == 0 &&
	   expr_eq_terms(e, 8, cs, cc) == 1 && strcmp(cc[0], "f") == 0, "NOT of a bool column is b = 'f'");
	expr_free(e);
	ok(expr_compile("f8 = 1 AND n = 1 AND v = 'y'::bpchar AND t = 'x '::char(3)", &schema, claims, NULL, &e,
					err, sizeof(err)) == 0 && expr_eq_terms(e, 8, cs, cc) == 1 && cs[0] == T && strcmp(cc[0], "x") == 0,
	   "no routing terms for floats, numerics, or varchar compared as bpchar; text against char is rtrimmed");
	expr_free(e);

	a = canonical("  i4 = 5   and T = 'x' ");
	b = canonical("t='x' AND (5 = i4)");
	is_str(a, b, "canonical text: whitespace, case, order and sides do not matter");
	is_str(a, "((\"i4\" = '5'::int4) AND (\"t\" = 'x'::text))", "canonical text spells constants with their types");
	free(a);
	free(b);
	a = canonical("t = ferry.claim('sub') OR ferry.claim('role') = 'user'");
	is_str(a, "(\"t\" = 'abc'::text)", "claims are substituted and what they decide is folded away");
	free(a);
	a = canonical("i4 IN (3, 1, 2, 1) AND b AND b");
	is_str(a, "(\"b\" AND (\"i4\" IN ('1'::int4, '2'::int4, '3'::int4)))", "IN lists and conjuncts sorted, deduplicated");
	free(a);
	a = canonical("i4 < 5");
	b = canonical("5 > i4");
	is_str(a, b, "a comparison with the constant first is turned around");
	free(a);
	free(b);
}

/* Threads evaluate one Expr at once (it is immutable). */
static Expr *shared;
static int	thread_errors;

static void *
eval_thread(void *arg)
{
	Row			r = row();
	int			bad = 0;

	(void) arg;
	for (int i = 0; i < 20000; i++)
	{
		char		buf[32];

		snprintf(buf, sizeof(buf), "%d", i % 10);
		r.v[I4] = buf;
		if (expr_eval(shared, r.v) != ((i % 10 == 5) ? EXPR_TRUE : EXPR_FALSE))
			bad++;
	}
	__atomic_add_fetch(&thread_errors, bad, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *
compile_thread(void *arg)
{
	int			bad = 0;

	(void) arg;
	for (int i = 0; i < 50; i++)
	{
		Expr	   *e;
		char		err[256];

		if (expr_compile("t ILIKE 'A%' AND i4 IN (1, 5) AND tz > '2024-01-01 00:00+00'", &schema, claims, NULL, &e,
						 err, sizeof(err)) != 0 || expr_eval(e, base) != EXPR_TRUE)
			bad++;
		expr_free(e);
	}
	__atomic_add_fetch(&thread_errors, bad, __ATOMIC_SEQ_CST);
	return NULL;
}

static void
test_threads(void)
{
	pthread_t	th[8];
	char		err[256];

	ok(expr_compile("i4 = 5 AND t ILIKE 'ABC'", &schema, claims, NULL, &shared, err, sizeof(err)) == 0,
	   "compiles the shared predicate");
	for (int i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, i % 2 ? eval_thread : compile_thread, NULL);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	is_int(thread_errors, 0, "four threads evaluating one Expr and four compiling agree with one thread");
	expr_free(shared);
}

int
main(void)
{
	test_refusals();
	test_compile_api();
	test_nulls_and_logic();
	test_numbers();
	test_strings();
	test_times();
	test_terms_columns_canonical();
	test_threads();
	return done_testing();
}
