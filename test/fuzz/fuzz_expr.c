/*
 * test/fuzz/fuzz_expr.c -- libFuzzer target for the WHERE-clause evaluator (gateway/expr.c):
 * arbitrary bytes as a predicate over a fixed table with a column of every type.
 *
 * For each input: expr_compile (with claims), and when it compiles, expr_eval on fixed
 * rows (NULLs, edge values, and a row whose every value is the input itself, which
 * feeds the column-value parsers arbitrary text), expr_eq_terms, expr_columns and
 * expr_canonical. Properties checked beyond "no crash, no leak, no sanitizer report":
 *   - a refusal sets no Expr and says why; expr_eval returns one of the three values;
 *   - the canonical text compiles (without claims) to the same canonical text and to
 *     the same answers on every row;
 *   - expr_columns lists ascending column indexes of the schema;
 *   - a routing term's constant is the text of its column on every fixed row (text
 *     as Postgres writes it) the predicate accepts.
 * A property violation aborts: that is the fuzzer's way to report it.
 *
 * Seeds: test/fuzz/corpus/fuzz_expr/ (predicates of every construct, accepted and not).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"

static const ExprColumn cols[] = {
	{"id", 23}, {"b", 16}, {"i2", 21}, {"i4", 23}, {"i8", 20}, {"n", 1700}, {"f4", 700}, {"f8", 701},
	{"t", 25}, {"v", 1043}, {"c", 1042}, {"u", 2950}, {"d", 1082}, {"ts", 1114}, {"tz", 1184}, {"j", 3802},
};

#define NCOLS ((int) (sizeof(cols) / sizeof(cols[0])))
#define NROWS 5

static const char *const fixed_rows[NROWS - 1][NCOLS] = {
	{"1", "t", "5", "5", "5", "12345678901234567890.5", "1.1", "2.5", "abc", "abc", "ab    ",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-01-05", "2024-01-05 10:00:00", "2024-01-05 10:00:00+00", "{}"},
	{"2", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
	{"3", "f", "-32768", "-2147483648", "-9223372036854775808", "NaN", "NaN", "-Infinity", "", "\xc3\x89\\%_",
		"      ", "00000000-0000-0000-0000-000000000000", "infinity", "-infinity", "0044-03-15 12:00:00+00 BC", "[]"},
	{"4", "t", "32767", "2147483647", "9223372036854775807", "-0.000001", "-0", "1e308", "\xf0\x9f\x98\x80 a",
		"x", "\xc7\x85", "ffffffff-ffff-ffff-ffff-ffffffffffff", "5874897-12-31", "294276-12-31 23:59:59.999999",
	"2024-05-01 12:00:00.5+02", "null"},
};

static const char *
claim(void *arg, const char *name)
{
	(void) arg;
	if (strcmp(name, "sub") == 0)
		return "u1";
	if (strcmp(name, "lvl") == 0)
		return "3";
	if (strcmp(name, "day") == 0)
		return "2024-01-05";
	if (strcmp(name, "flag") == 0)
		return "true";
	if (strcmp(name, "tenants") == 0)
		return "[\"w1\", \"w2\"]";
	return NULL;
}

static void
check(int cond, const char *what, const char *pred)
{
	if (!cond)
	{
		fprintf(stderr, "fuzz_expr: property violated: %s\npredicate: %s\n", what, pred);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ExprSchema	schema = {NCOLS, cols};
	char	   *pred = malloc(size + 1);
	const char *rows[NROWS][NCOLS];
	Expr	   *e = NULL,
			   *e2 = NULL;
	char		err[512];
	int			read[NCOLS];
	int			tcols[8];
	const char *tconsts[8];
	int			n,
				nterms;
	char	   *canon,
			   *canon2;

	if (pred == NULL)
		return 0;
	memcpy(pred, data, size);
	pred[size] = '\0';
	for (int r = 0; r < NROWS - 1; r++)
		for (int c = 0; c < NCOLS; c++)
			rows[r][c] = fixed_rows[r][c];
	for (int c = 0; c < NCOLS; c++)
		rows[NROWS - 1][c] = pred;	/* every column holds the input */

	err[0] = 'x';
	if (expr_compile(pred, &schema, claim, NULL, &e, err, sizeof(err)) != 0)
	{
		check(e == NULL && err[0] != '\0' && strlen(err) < sizeof(err), "a refusal sets no Expr and says why", pred);
		free(pred);
		return 0;
	}
	check(e != NULL, "a compiled predicate has an Expr", pred);

	n = expr_columns(e, NCOLS, read);
	check(n >= 0 && n <= NCOLS, "expr_columns counts columns of the schema", pred);
	for (int i = 0; i < n; i++)
		check(read[i] >= 0 && read[i] < NCOLS && (i == 0 || read[i] > read[i - 1]),
			  "expr_columns lists ascending column indexes", pred);
	nterms = expr_eq_terms(e, 8, tcols, tconsts);
	check(nterms >= 0 && nterms <= 8, "expr_eq_terms fills at most max terms", pred);

	canon = expr_canonical(e);
	check(canon != NULL, "a compiled predicate has a canonical text", pred);
	check(expr_compile(canon, &schema, NULL, NULL, &e2, err, sizeof(err)) == 0,
		  "the canonical text compiles", canon);
	canon2 = expr_canonical(e2);
	check(canon2 != NULL && strcmp(canon, canon2) == 0, "the canonical text is its own canonical text", canon);

	for (int r = 0; r < NROWS; r++)
	{
		ExprBool	v = expr_eval(e, rows[r]);

		check(v == EXPR_TRUE || v == EXPR_FALSE || v == EXPR_NULL, "expr_eval returns TRUE, FALSE or NULL", pred);
		check(expr_eval(e2, rows[r]) == v, "the canonical text evaluates the same", canon);
		if (v == EXPR_TRUE && r < NROWS - 1)	/* rows of Postgres's own text forms */
			for (int t = 0; t < nterms; t++)
				check(rows[r][tcols[t]] != NULL && strcmp(rows[r][tcols[t]], tconsts[t]) == 0,
					  "a routing term holds on every accepted row", pred);
	}
	free(canon);
	free(canon2);
	expr_free(e2);
	expr_free(e);
	free(pred);
	return 0;
}
