/*
 * gateway/expr.h -- compile and evaluate shape WHERE clauses and rule predicates outside Postgres.
 *
 * ---------------------------------------------------------------------------------------------
 * README section: the WHERE-clause evaluator (gateway/expr.c and the expr_*.c files it lists)
 * ---------------------------------------------------------------------------------------------
 *
 * ferryd decides, for every decoded row, whether it belongs to a shape: the shape's WHERE
 * clause (from the client) and the table's rule predicates (ferry.rules, with ferry.claim()
 * lookups) are compiled once with expr_compile and evaluated per row with expr_eval. The
 * answer must be the one Postgres gives for the same row, so:
 *
 *   text --libpg_query--> parse tree (protobuf) --check--> the subset of docs/predicates.md
 *        --resolve--> columns to indexes, claims to constants, operators and casts typed the
 *                     way Postgres 15 resolves them --> compiled tree (one arena per Expr)
 *   row (values in Postgres text output form, NULL for SQL NULL) --expr_eval--> TRUE/FALSE/NULL
 *
 * Accepted: exactly the subset of docs/predicates.md (the same walk as
 * extension/predicate.c): columns, literals, casts of literals and of ferry.claim('x') to
 * the listed types (with type modifiers: varchar(n), char(n), numeric(p,s), timestamp(p)),
 * = <> != < <= > >=, AND/OR/NOT, IS [NOT] NULL, [NOT] IN (...), [NOT] LIKE/ILIKE.
 * Everything else is refused with "predicate not supported: <construct> at \"<text>\"".
 *
 * Semantics (checked row by row against a real Postgres by test/gateway/expr_diff.c):
 *   - Operator and IN-list typing follow Postgres 15: an untyped literal takes the other
 *     side's type ('5' against an int column is 5); int2/int4/int8/numeric compare as exact
 *     decimals (no rounding, e.g. 12345678901234567890.5); anything against real/double
 *     compares as double (a real operand widened exactly, as Postgres does); bpchar compares
 *     ignoring trailing spaces, but bpchar against text compares rtrim(bpchar) with the text;
 *     date/timestamp/timestamptz compare across types; an IN list uses Postgres's common
 *     type (so real_col IN (1.1, 2) is true for 1.1 while real_col = 1.1 is not).
 *   - NaN sorts above every number (float and numeric), -Infinity/Infinity at the ends;
 *     dates and timestamps 'infinity'/'-infinity' order like Postgres.
 *   - Text ordering is byte order (C collation, which is what the C.UTF-8 clusters ferry
 *     uses give); equality is byte equality. ILIKE lowercases both sides per character with
 *     towlower in the C.UTF-8 locale, as Postgres does in a C.UTF-8 database; if that locale
 *     is missing on the gateway's host, only ASCII letters are folded.
 *   - Three-valued logic for AND/OR/NOT, comparisons with NULL, NOT IN with NULLs.
 *   - The gateway's sessions use TimeZone=UTC and DateStyle=ISO: timestamptz values
 *     arrive as "2024-05-01 10:00:00+00"; a timestamptz literal without an offset is UTC.
 *   - Casts of literals and claims are done at compile time; a conversion that fails
 *     ('abc'::int, or ferry.claim('sub')::int when sub is "u1") is a compile error. An
 *     absent claim is NULL. Constants are folded as Postgres's planner folds them, so a
 *     failing cast Postgres never evaluates ("false AND i2 = 100000::int2") is accepted
 *     like Postgres accepts it; claims are folded too, so the rule
 *     "owner = ferry.claim('sub') OR ferry.claim('role') = 'admin'" of a non-admin
 *     compiles to the owner test alone (and has that canonical text).
 *
 * Deliberate differences (refused at compile time, or NULL where Postgres raises an error):
 *   - Columns of other types (json, interval, arrays, enums, domains...): only
 *     IS [NOT] NULL may use them; any other use is a compile error naming the column.
 *   - Date/time literals must be ISO 8601 ('2024-05-01', '2024-05-01 10:00:00.5+02',
 *     'T' separator, Z/UTC/+HH[:MM[:SS]] offsets, BC, 'infinity', '-infinity', 'epoch');
 *     other spellings ('May 1 2024', zone names) are refused, and 'now', 'today',
 *     'tomorrow', 'yesterday' are refused because they depend on the current time.
 *   - A constant LIKE pattern ending in an unescaped backslash is refused (Postgres raises
 *     the error only when a row reaches it), and so is one with more than 256 groups of %;
 *     a pattern taken from a column that does so evaluates to NULL where Postgres would
 *     raise the error.
 *   - A failing cast of a claim is a compile error (Postgres raises it per row).
 *   - Nesting deeper than EXPR_MAX_DEPTH operators, and predicates longer than
 *     EXPR_MAX_LEN bytes, are refused.
 *   - A column value that is not valid text output of its type (it cannot happen with
 *     values decoded from pgoutput) makes the comparisons that read it NULL; so does a
 *     numeric value beyond double's range compared with a float (Postgres: an error).
 *
 * Threads: no global state. expr_compile runs libpg_query on a helper thread with a 64 MB
 * stack (reserved, touched only by pathological input: the Postgres grammar recurses up to
 * ~10000 levels) and waits for it; the claim callback is called on the caller's thread. A
 * compiled Expr is immutable: any number of threads may call expr_eval and the other
 * readers on it at once. Costs on this project's 2-core machine: ~0.25 ms per compile,
 * ~15 ns to evaluate "t = 'abc'" and ~150 ns for three conditions with ILIKE and a
 * timestamptz.
 *
 * Tests: test/gateway/expr_unit.c (hand-picked cases), test/gateway/expr_diff.c (random
 * predicates and rows against Postgres; FERRY_SEED=N reproduces a run), and the libFuzzer
 * target test/fuzz/fuzz_expr.c (corpus in test/fuzz/corpus/fuzz_expr/).
 * ---------------------------------------------------------------------------------------------
 */
#ifndef FERRY_EXPR_H
#define FERRY_EXPR_H

#include <stddef.h>
#include <stdint.h>

#define EXPR_MAX_DEPTH	200			/* deepest nesting of operators expr_compile accepts */
#define EXPR_MAX_LEN	(1 << 20)	/* longest predicate text, in bytes */

/* SQL three-valued truth. */
typedef enum ExprBool
{
	EXPR_FALSE = 0,
	EXPR_TRUE = 1,
	EXPR_NULL = 2
} ExprBool;

/* A table column. */
typedef struct ExprColumn
{
	const char *name;			/* column name, exactly as in the catalog (case-sensitive) */
	uint32_t	type_oid;		/* its type's OID (bool 16, int4 23, text 25, ...) */
} ExprColumn;

/* The columns of the table a predicate is over; column i is values[i] in expr_eval. */
typedef struct ExprSchema
{
	int			ncols;			/* number of columns */
	const ExprColumn *cols;		/* [ncols] */
} ExprSchema;

/*
 * Returns the claim's text (string claims as is, other JSON as JSON text) or NULL when
 * absent. The returned text need only stay valid until the callback is called again or
 * expr_compile returns: it is copied.
 */
typedef const char *(*ExprClaimFn) (void *arg, const char *name);

/* A compiled predicate; opaque. */
typedef struct Expr Expr;

/*
 * expr_compile parses sql (a boolean expression over schema's columns) with libpg_query
 * (pg_query_parse_protobuf of "SELECT 1 FROM t WHERE <sql>"), checks it against the subset,
 * resolves columns to indexes and claims to constants through claim (claim may be NULL:
 * then ferry.claim() is refused), type-checks, and returns a compiled tree in *out (the
 * caller frees it with expr_free). On error returns -1, sets *out to NULL and writes a
 * message naming the construct or column and where it starts into err (errlen bytes,
 * always NUL-terminated when errlen > 0), e.g.
 *   predicate not supported: subqueries at "(SELECT id FROM t..."
 *   column "nope" does not exist
 * Returns 0 on success. The schema and claim texts are copied; none is kept.
 */
int			expr_compile(const char *sql, const ExprSchema *schema, ExprClaimFn claim, void *claim_arg,
						 Expr **out, char *err, size_t errlen);

/*
 * expr_eval evaluates e on one row: values[i] is column i's value in Postgres text output
 * form (as pgoutput sends it with DateStyle ISO, TimeZone UTC), or NULL for SQL NULL.
 * Only the columns expr_columns lists are read.
 */
ExprBool	expr_eval(const Expr *e, const char *const *values);

/*
 * expr_eq_terms lists the top-level AND conjuncts of the form column = constant (either
 * side), for routing indexes: fills up to max pairs (cols[i] a column index, consts[i] the
 * constant in the column's text output form, owned by e) and returns how many it filled.
 * A term is listed only when "the row's text equals consts[i]" is exactly the same as
 * the term being true: columns of type bool ("t"/"f", also for a bare bool column or NOT
 * of one), int2/int4/int8, text, varchar, uuid, date, timestamp and timestamptz (text
 * forms of the gateway's ISO/UTC sessions) compared with a non-NULL constant of the same
 * kind. bpchar, numeric and float columns are never listed (their text forms are not
 * unique).
 */
int			expr_eq_terms(const Expr *e, int max, int *cols, const char **consts);

/*
 * expr_canonical returns a canonical text of the compiled expression: claims substituted,
 * constants written as typed literals of the type they are compared as, identifiers
 * quoted, whitespace and keyword case normalized, AND/OR operands and IN lists sorted and
 * deduplicated. Equal texts mean equal predicates; the text is itself a predicate that
 * compiles to the same tree. malloc'd, the caller frees it; NULL when out of memory.
 */
char	   *expr_canonical(const Expr *e);

/*
 * expr_columns fills up to max column indexes the expression reads, ascending and
 * without duplicates, and returns how many there are in all (which may exceed max).
 */
int			expr_columns(const Expr *e, int max, int *cols);

/* expr_free frees a compiled expression; NULL is allowed. */
void		expr_free(Expr *e);

#endif							/* FERRY_EXPR_H */
