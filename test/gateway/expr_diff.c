/*
 * test/gateway/expr_diff.c -- gateway/expr.c against a real Postgres, row by row.
 *
 * Creates a table with a column of every supported type (and one jsonb) in a scratch
 * schema, fills it with random rows (NULLs, edge values, unicode, trailing spaces), then
 * for thousands of predicates from the subset of docs/predicates.md compares:
 *   - Postgres's result on every row (SELECT id, (p) IS TRUE, (p) IS FALSE ... with the
 *     claims set through ferry.claims) with expr_eval on the same row's text output;
 *   - acceptance: a predicate Postgres rejects (or runs into an error on) must be
 *     rejected by expr_compile, one it runs must compile, except for the gateway's
 *     documented refusals (ISO-only date literals, claim casts that fail, LIKE patterns
 *     ending in an escape, columns of unsupported types);
 *   - the extension's validator (ferry._validate_predicate) and expr_compile accept the
 *     same predicates (same exceptions);
 *   - expr_canonical's text compiles to the same canonical text and the same results;
 *   - every routing term of expr_eq_terms holds on every row the predicate accepts.
 * Phases: random predicates, every pair of columns under every operator, each column
 * against literals of every type, and constructs outside the subset (both must refuse).
 *
 * Prints "# seed N"; FERRY_SEED=N reproduces a run. FERRY_EXPR_PREDICATES sets the number
 * of random predicates (default 3000); FERRY_EXPR_VERBOSE=1 lists the gateway-only
 * refusals. Needs PGHOST etc. of a database with ferry.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "expr.h"
#include "tap.h"

#define NROWS		300
#define MAX_REPORT	12

/* ---------------------------------------------------------------- randomness */

static uint64_t rng_state;

static uint64_t
rnd(void)
{
	uint64_t	x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * UINT64_C(2685821657736338717);
}

static int
rn(int n)
{
	return n <= 0 ? 0 : (int) (rnd() % (uint64_t) n);
}

static bool
chance(int percent)
{
	return rn(100) < percent;
}

#define PICK(arr) ((arr)[rn((int) (sizeof(arr) / sizeof((arr)[0])))])

/* ---------------------------------------------------------------- strings */

typedef struct Buf
{
	char	   *p;				/* text */
	size_t		len;			/* length */
	size_t		cap;			/* allocated */
} Buf;

static void
bput(Buf *b, const char *s)
{
	size_t		n = strlen(s);

	if (b->len + n + 1 > b->cap)
	{
		b->cap = (b->len + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL)
			bail_out("out of memory");
	}
	memcpy(b->p + b->len, s, n + 1);
	b->len += n;
}

static void __attribute__((format(printf, 2, 3)))
bprintf(Buf *b, const char *fmt, ...)
{
	char		tmp[4096];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	bput(b, tmp);
}

/* bquote appends s as a SQL string literal. */
static void
bquote(Buf *b, const char *s)
{
	bput(b, "'");
	for (const char *p = s; *p; p++)
	{
		char		ch[3] = {*p, 0, 0};

		if (*p == '\'')
			ch[1] = '\'';
		bput(b, ch);
	}
	bput(b, "'");
}

/* ---------------------------------------------------------------- the table */

enum Kind
{
	K_BOOL, K_INT2, K_INT4, K_INT8, K_NUM, K_NUM2, K_F4, K_F8, K_TEXT, K_VC, K_BP, K_BP2,
	K_UUID, K_DATE, K_TS, K_TSTZ, K_JSON, K_COUNT
};

typedef struct Col
{
	const char *name;			/* column name */
	const char *sqltype;		/* its declared type */
	uint32_t	oid;			/* its type's OID */
	int			kind;			/* Kind, for values */
} Col;

static const Col cols[] = {
	{"id", "integer", 23, K_INT4},
	{"c_bool", "boolean", 16, K_BOOL},
	{"c_int2", "smallint", 21, K_INT2},
	{"c_int4", "integer", 23, K_INT4},
	{"c_int8", "bigint", 20, K_INT8},
	{"c_num", "numeric", 1700, K_NUM},
	{"c_num2", "numeric(12,3)", 1700, K_NUM2},
	{"c_f4", "real", 700, K_F4},
	{"c_f8", "double precision", 701, K_F8},
	{"c_text", "text", 25, K_TEXT},
	{"c_text2", "text", 25, K_TEXT},
	{"c_vc", "varchar(12)", 1043, K_VC},
	{"c_bp", "char(6)", 1042, K_BP},
	{"c_bp2", "bpchar", 1042, K_BP2},
	{"c_uuid", "uuid", 2950, K_UUID},
	{"c_date", "date", 1082, K_DATE},
	{"c_ts", "timestamp", 1114, K_TS},
	{"c_tstz", "timestamptz", 1184, K_TSTZ},
	{"c_json", "jsonb", 3802, K_JSON},
};

#define NCOLS ((int) (sizeof(cols) / sizeof(cols[0])))

static const char *const pool_bool[] = {"t", "f", "true", "false", "yes", "no", "on", "off", "1", "0"};
static const char *const pool_int2[] = {"0", "1", "-1", "7", "42", "-42", "32767", "-32768", "100", "5"};
static const char *const pool_int4[] = {"0", "1", "-1", "7", "42", "-42", "2147483647", "-2147483648",
"123456", "5", "32767", "32768"};
static const char *const pool_int8[] = {"0", "1", "-1", "42", "9223372036854775807", "-9223372036854775808",
"9007199254740993", "9007199254740992", "4294967296", "2147483648", "7", "5"};
static const char *const pool_num[] = {"0", "0.1", "-0.1", "1.50", "42", "-42.000", "12345678901234567890.5",
	"12345678901234567890.4999", "1e20", "0.000001", "NaN", "Infinity", "-Infinity", "3.14159", "2.5",
"-2.5", "7", "1.1", "5"};
static const char *const pool_num2[] = {"0", "0.1", "42", "-2.5", "123456789.123", "7", "NaN", "1.1", "5"};
static const char *const pool_f4[] = {"0", "-0", "1.1", "2.5", "-2.5", "NaN", "Infinity", "-Infinity",
"3.4028235e38", "1e-45", "16777217", "0.1", "7", "42", "5"};
static const char *const pool_f8[] = {"0", "-0", "1.1", "0.1", "2.5", "NaN", "Infinity", "-Infinity", "1e308",
"1e-310", "9007199254740993", "7", "42", "-42", "3.14159", "5"};
static const char *const pool_text[] = {"", "a", "abc", "ABC", "Abc", "a b", "a  ", "abc ", "\xc3\xa9", "\xc3\x89",
	"\xc3\xa9" "cole", "\xc3\x89" "COLE", "\xc3\x9f", "\xc7\x85", "\xc7\x86", "\xce\xa3\xce\xb1\xcf\x82",
	"\xcf\x83\xce\xb1\xcf\x82", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80", "a%b", "a_b", "a\\b", "it's", "z",
"Z", "0", "10", "9", "  lead", "u1", "admin", "team", "ab", "\xc8\xba", "K", "\xe2\x84\xaa"};
static const char *const pool_bp[] = {"a", "ab", "ab  ", "abc", "ABC", "\xc3\xa9", "", "u1", "admin", "x y", "a b"};
static const char *const pool_bp2[] = {"a", "a   ", "ab", "ab ", "abc", "u1", "admin  ", "", " "};
static const char *const pool_uuid[] = {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000",
	"ffffffff-ffff-ffff-ffff-ffffffffffff", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
"123e4567-e89b-12d3-a456-426614174000"};
static const char *const pool_date[] = {"2024-01-05", "2024-01-06", "2024-02-29", "2000-01-01", "1999-12-31",
	"1970-01-01", "0044-03-15 BC", "0001-01-01", "5874897-12-31", "4714-11-24 BC", "infinity", "-infinity",
"2024-05-01", "294277-01-01"};
static const char *const pool_ts[] = {"2024-01-05 00:00:00", "2024-01-05 10:00:00", "2024-01-05 10:00:00.5",
	"2024-01-05 23:59:59.999999", "2000-01-01 00:00:00", "1999-12-31 23:59:59", "0044-03-15 12:00:00 BC",
	"294276-12-31 23:59:59", "4714-11-24 00:00:00 BC", "infinity", "-infinity", "2024-05-01 10:00:00",
"2024-05-01 12:00:00", "2024-05-01 08:00:00"};
static const char *const pool_tstz[] = {"2024-01-05 00:00:00+00", "2024-05-01 10:00:00+00",
	"2024-05-01 12:00:00+02", "2024-05-01 10:00:00.123456+00", "infinity", "-infinity",
	"2000-01-01 00:00:00+00", "0044-03-15 12:00:00+00 BC", "2024-01-05 10:00:00-05:30",
"2024-05-01 08:00:00+00"};
static const char *const pool_json[] = {"{}", "{\"a\": 1}", "[1, 2]", "null", "\"x\""};

static const char *const text_chars[] = {"a", "b", "c", "A", "B", "z", " ", " ", "%", "_", "\\", "'", "0", "1",
"\xc3\xa9", "\xc3\x89", "\xc3\x9f", "\xce\xa3", "\xcf\x83", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "\xc7\x85", "\xc8\xba"};

/* random_text makes a short string of mixed characters (never ending in a backslash). */
static void
random_text(char *out, size_t outlen, int maxchars)
{
	int			n = rn(maxchars + 1);
	size_t		len = 0;

	out[0] = '\0';
	for (int i = 0; i < n; i++)
	{
		const char *ch = PICK(text_chars);

		if (len + strlen(ch) + 1 >= outlen)
			break;
		strcpy(out + len, ch);
		len += strlen(ch);
	}
	/* a pattern taken from the value must not end in an escape, even once rtrimmed */
	while (len > 0 && out[len - 1] == ' ')
		len--;
	if (len > 0 && out[len - 1] == '\\')
		out[len - 1] = 'x';
}

/* value_text writes a random valid input text for a kind into out. */
static void
value_text(int kind, char *out, size_t outlen)
{
	switch (kind)
	{
		case K_BOOL:
			snprintf(out, outlen, "%s", PICK(pool_bool));
			return;
		case K_INT2:
			if (chance(60))
				snprintf(out, outlen, "%s", PICK(pool_int2));
			else
				snprintf(out, outlen, "%d", rn(2001) - 1000);
			return;
		case K_INT4:
			if (chance(60))
				snprintf(out, outlen, "%s", PICK(pool_int4));
			else
				snprintf(out, outlen, "%d", rn(200001) - 100000);
			return;
		case K_INT8:
			if (chance(60))
				snprintf(out, outlen, "%s", PICK(pool_int8));
			else
				snprintf(out, outlen, "%lld", (long long) (rnd() >> rn(64)) * (chance(50) ? -1 : 1));
			return;
		case K_NUM:
			if (chance(60))
				snprintf(out, outlen, "%s", PICK(pool_num));
			else
				snprintf(out, outlen, "%s%d.%0*d", chance(50) ? "-" : "", rn(100000), 1 + rn(8), rn(100000));
			return;
		case K_NUM2:
			if (chance(60))
				snprintf(out, outlen, "%s", PICK(pool_num2));
			else
				snprintf(out, outlen, "%s%d.%03d", chance(50) ? "-" : "", rn(100000), rn(1000));
			return;
		case K_F4:
		case K_F8:
			if (chance(60))
				snprintf(out, outlen, "%s", kind == K_F4 ? PICK(pool_f4) : PICK(pool_f8));
			else
				snprintf(out, outlen, "%s%d.%d", chance(50) ? "-" : "", rn(1000), rn(1000));
			return;
		case K_TEXT:
		case K_VC:
			if (chance(50))
				snprintf(out, outlen, "%s", PICK(pool_text));
			else
				random_text(out, outlen, 8);
			if (kind == K_VC)
			{
				/* varchar(12): keep it short enough (characters) */
				size_t		len = strlen(out);
				int			chars = 0;

				for (size_t i = 0; i < len; i++)
					if (((unsigned char) out[i] & 0xC0) != 0x80 && ++chars > 12)
					{
						out[i] = '\0';
						break;
					}
			}
			return;
		case K_BP:
			if (chance(70))
				snprintf(out, outlen, "%s", PICK(pool_bp));
			else
				random_text(out, 13, 3);
			return;
		case K_BP2:
			if (chance(70))
				snprintf(out, outlen, "%s", PICK(pool_bp2));
			else
				random_text(out, outlen, 4);
			return;
		case K_UUID:
			if (chance(70))
				snprintf(out, outlen, "%s", PICK(pool_uuid));
			else
				snprintf(out, outlen, "%08x-%04x-%04x-%04x-%08x%04x", (unsigned) rnd(), (unsigned) rn(65536),
						 (unsigned) rn(65536), (unsigned) rn(65536), (unsigned) rnd(), (unsigned) rn(65536));
			return;
		case K_DATE:
			if (chance(60))
				snprintf(out, outlen, "%s", PICK(pool_date));
			else
				snprintf(out, outlen, "%04d-%02d-%02d", 1 + rn(3000), 1 + rn(12), 1 + rn(28));
			return;
		case K_TS:
		case K_TSTZ:
			if (chance(55))
				snprintf(out, outlen, "%s", kind == K_TS ? PICK(pool_ts) : PICK(pool_tstz));
			else
			{
				static const char *const offs[] = {"", "+00", "+02", "-05:30", "Z", "+15:59", "-0800"};

				snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d%s%s", 1900 + rn(200), 1 + rn(12), 1 + rn(28),
						 rn(24), rn(60), rn(60), chance(30) ? ".25" : chance(20) ? ".000001" : "",
						 kind == K_TSTZ ? PICK(offs) : "");
			}
			return;
		default:
			snprintf(out, outlen, "%s", PICK(pool_json));
			return;
	}
}

/* ---------------------------------------------------------------- predicates */

typedef struct CastName
{
	const char *name;			/* how a cast spells the type */
	int			kind;			/* the Kind whose values suit it */
} CastName;

static const CastName cast_names[] = {
	{"int2", K_INT2}, {"smallint", K_INT2}, {"int", K_INT4}, {"integer", K_INT4}, {"int4", K_INT4},
	{"bigint", K_INT8}, {"int8", K_INT8}, {"numeric", K_NUM}, {"decimal", K_NUM}, {"numeric(5,2)", K_NUM2},
	{"numeric(3,-1)", K_INT4}, {"numeric(20,1)", K_NUM}, {"real", K_F4}, {"float4", K_F4}, {"float8", K_F8},
	{"double precision", K_F8}, {"float", K_F8}, {"text", K_TEXT}, {"varchar", K_TEXT}, {"varchar(3)", K_TEXT},
	{"char", K_BP}, {"char(4)", K_BP}, {"character varying(5)", K_VC}, {"bpchar", K_BP2}, {"uuid", K_UUID},
	{"date", K_DATE}, {"timestamp", K_TS}, {"timestamp(0)", K_TS}, {"timestamp(3)", K_TS}, {"timestamptz", K_TSTZ},
	{"timestamp with time zone", K_TSTZ}, {"timestamptz(1)", K_TSTZ}, {"boolean", K_BOOL}, {"bool", K_BOOL},
	{"pg_catalog.int4", K_INT4},
};

static const char *const claim_names[] = {"sub", "role", "lvl", "flag", "team", "day", "uid", "num", "empty", "absent",
"ts"};

static const char *const like_patterns[] = {"a%", "%b%", "_", "__", "%", "", "A%", "\xc3\xa9%", "%\\%%", "a\\_b",
	"%\\\\%", "_bc", "%c ", "ab%", "%\xc3\xa9", "\xc3\x89%", "\xc7\x85%", "\xce\xa3%", "%\xf0\x9f\x98\x80%",
"a%b%c", "%%", "\\a", "%_", "_%", "%a", "ab", "ab  ", "%\\", "x\\", "K%", "\xe2\x84\xaa%", "\xc8\xba%"};

static const char *const cmp_ops[] = {"=", "<>", "!=", "<", "<=", ">", ">="};

static int
kind_of_col(int c)
{
	return cols[c].kind;
}

static int
random_col(void)
{
	return 1 + rn(NCOLS - 1);
}

static bool
kind_is_string(int k)
{
	return k == K_TEXT || k == K_VC || k == K_BP || k == K_BP2;
}

static bool
kind_is_number(int k)
{
	return k == K_INT2 || k == K_INT4 || k == K_INT8 || k == K_NUM || k == K_NUM2 || k == K_F4 || k == K_F8;
}

/* gen_literal appends a literal meant for a side of kind k (sometimes of another kind). */
static void
gen_literal(Buf *b, int k)
{
	char		v[128];
	int			r = rn(100);

	if (r < 4)
	{
		bput(b, "NULL");
		return;
	}
	if (r < 7)
	{
		bprintf(b, "NULL::%s", PICK(cast_names).name);
		return;
	}
	if (r < 12)
	{
		bprintf(b, "ferry.claim('%s')", PICK(claim_names));
		if (chance(50))
		{
			const CastName *cn = &cast_names[rn((int) (sizeof(cast_names) / sizeof(cast_names[0])))];

			for (int tries = 0; tries < 8 && cn->kind != k && !(kind_is_string(k) && kind_is_string(cn->kind)); tries++)
				cn = &cast_names[rn((int) (sizeof(cast_names) / sizeof(cast_names[0])))];
			bprintf(b, "::%s", cn->name);
		}
		return;
	}
	if (r < 20)
		k = rn(K_JSON);			/* another kind: often an error, sometimes coercible */
	value_text(k, v, sizeof(v));
	if (k == K_BOOL && chance(50))
	{
		bput(b, PICK(((const char *const[]) {"true", "false", "TRUE", "False"})));
		return;
	}
	if (kind_is_number(k) && chance(45) && strcmp(v, "NaN") != 0 && strstr(v, "nfinity") == NULL)
	{
		/* a bare number; a minus folds into the literal */
		if (chance(20) && k != K_INT8)
			bprintf(b, "%s%s", v, PICK(((const char *const[]) {".5", "e1", ".0", "0", "e-2"})));
		else
			bput(b, v);
		return;
	}
	if (chance(30))
	{
		const CastName *cn = &cast_names[rn((int) (sizeof(cast_names) / sizeof(cast_names[0])))];

		for (int tries = 0; tries < 10 && cn->kind != k &&
			 !(kind_is_string(k) && kind_is_string(cn->kind)) &&
			 !(kind_is_number(k) && kind_is_number(cn->kind)); tries++)
			cn = &cast_names[rn((int) (sizeof(cast_names) / sizeof(cast_names[0])))];
		switch (rn(3))
		{
			case 0:
				bquote(b, v);
				bprintf(b, "::%s", cn->name);
				break;
			case 1:
				bput(b, "CAST(");
				bquote(b, v);
				bprintf(b, " AS %s)", cn->name);
				break;
			default:
				if (strchr(cn->name, '(') == NULL && strcmp(cn->name, "double precision") != 0 &&
					strcmp(cn->name, "timestamp with time zone") != 0 && strchr(cn->name, '.') == NULL)
				{
					bprintf(b, "%s ", cn->name);
					bquote(b, v);
				}
				else
				{
					bquote(b, v);
					bprintf(b, "::%s", cn->name);
				}
				break;
		}
		return;
	}
	if (k == K_DATE || k == K_TS || k == K_TSTZ)
	{
		/* ISO variants the gateway reads */
		char		w[160];

		snprintf(w, sizeof(w), "%s%s%s", chance(10) ? " " : "", v, chance(10) ? " " : "");
		if (chance(15) && strlen(w) > 13 && w[10] == ' ')
			w[10] = 'T';
		bquote(b, w);
		return;
	}
	if (k == K_UUID && chance(30))
	{
		char		w[160];

		snprintf(w, sizeof(w), chance(50) ? "{%s}" : "%s", v);
		for (char *p = w; *p; p++)
			if (chance(50) && *p >= 'a' && *p <= 'f')
				*p -= 32;
		bquote(b, w);
		return;
	}
	bquote(b, v);
}

/* gen_operand appends a column (usually), a literal or a claim; returns its kind. */
static int
gen_operand(Buf *b, int want_kind)
{
	int			r = rn(100);

	if (want_kind < 0 || r < 30)
	{
		int			c = random_col();

		if (want_kind >= 0 && chance(60))
		{
			/* a column of a compatible kind */
			for (int tries = 0; tries < 20; tries++)
			{
				int			cand = random_col();

				if (kind_of_col(cand) == want_kind ||
					(kind_is_string(kind_of_col(cand)) && kind_is_string(want_kind)) ||
					(kind_is_number(kind_of_col(cand)) && kind_is_number(want_kind)))
				{
					c = cand;
					break;
				}
			}
		}
		bput(b, cols[c].name);
		return kind_of_col(c);
	}
	gen_literal(b, want_kind);
	return want_kind;
}

static void gen_pred(Buf *b, int depth);

static void
gen_atom(Buf *b, int depth)
{
	int			r = rn(100);
	int			c = random_col();
	int			k = kind_of_col(c);

	if (k == K_JSON && chance(80))
	{
		bprintf(b, "c_json IS %sNULL", chance(50) ? "NOT " : "");
		return;
	}
	if (r < 42)
	{
		/* comparison */
		if (chance(15))
		{
			gen_literal(b, k);
			bprintf(b, " %s ", PICK(cmp_ops));
			bput(b, cols[c].name);
		}
		else
		{
			bput(b, cols[c].name);
			bprintf(b, " %s ", PICK(cmp_ops));
			gen_operand(b, k);
		}
		return;
	}
	if (r < 58)
	{
		int			n = 1 + rn(5);

		bput(b, cols[c].name);
		bput(b, chance(35) ? " NOT IN (" : " IN (");
		for (int i = 0; i < n; i++)
		{
			if (i > 0)
				bput(b, ", ");
			gen_literal(b, chance(85) ? k : rn(K_JSON));
		}
		bput(b, ")");
		return;
	}
	if (r < 72)
	{
		static const char *const likes[] = {"LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE", "~~", "!~~*"};
		const char *pat = PICK(like_patterns);

		/* left: a string column mostly */
		for (int tries = 0; tries < 20 && !kind_is_string(k); tries++)
			c = random_col(), k = kind_of_col(c);
		if (chance(10))
			gen_literal(b, K_TEXT);
		else
			bput(b, cols[c].name);
		bprintf(b, " %s ", PICK(likes));
		if (chance(15))
		{
			int			pc = random_col();

			for (int tries = 0; tries < 20 && !kind_is_string(kind_of_col(pc)); tries++)
				pc = random_col();
			bput(b, cols[pc].name);
		}
		else if (chance(8))
			bprintf(b, "ferry.claim('%s')", PICK(claim_names));
		else
		{
			/* a trailing escape rarely: the gateway refuses it */
			while (chance(95) && pat[0] != '\0' && pat[strlen(pat) - 1] == '\\')
				pat = PICK(like_patterns);
			bquote(b, pat);
			if (chance(10))
				bput(b, "::text");
		}
		return;
	}
	if (r < 80)
	{
		if (depth > 0 && chance(30))
		{
			bput(b, "(");
			gen_pred(b, depth - 1);
			bput(b, ")");
		}
		else if (chance(20))
			gen_literal(b, k);
		else
			bput(b, cols[c].name);
		bprintf(b, " IS %sNULL", chance(50) ? "NOT " : "");
		return;
	}
	if (r < 86)
	{
		bput(b, chance(30) ? "NOT c_bool" : "c_bool");
		return;
	}
	if (r < 92 && depth > 0)
	{
		bput(b, "(");
		gen_pred(b, depth - 1);
		bprintf(b, ") %s ", PICK(cmp_ops));
		if (chance(50))
		{
			bput(b, "(");
			gen_pred(b, depth - 1);
			bput(b, ")");
		}
		else
			gen_literal(b, K_BOOL);
		return;
	}
	if (r < 96)
	{
		int			k2 = rn(K_JSON);

		gen_literal(b, k2);
		bprintf(b, " %s ", PICK(cmp_ops));
		gen_literal(b, chance(70) ? k2 : rn(K_JSON));
		return;
	}
	gen_literal(b, K_BOOL);
}

static void
gen_pred(Buf *b, int depth)
{
	int			r = rn(100);

	if (depth > 0 && r < 30)
	{
		int			n = 2 + rn(3);
		const char *op = chance(50) ? " AND " : " OR ";

		for (int i = 0; i < n; i++)
		{
			if (i > 0)
				bput(b, op);
			if (chance(50))
			{
				bput(b, "(");
				gen_pred(b, depth - 1);
				bput(b, ")");
			}
			else
				gen_atom(b, depth - 1);
		}
		return;
	}
	if (depth > 0 && r < 38)
	{
		bput(b, "NOT (");
		gen_pred(b, depth - 1);
		bput(b, ")");
		return;
	}
	gen_atom(b, depth);
}

/* ---------------------------------------------------------------- Postgres */

static PGconn *conn;
static char schema_name[64];
static char *rows[NROWS][NCOLS];	/* text output of each value, NULL for NULL */
static int nrows;

static PGresult *
must(PGresult *res, const char *what)
{
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		bail_out("%s: %s", what, PQresultErrorMessage(res));
	return res;
}

static void
exec_ok(const char *sql)
{
	PQclear(must(PQexec(conn, sql), sql));
}

/* The claims of the current batch, as ferry.claim() returns them. */
static char *claim_values[sizeof(claim_names) / sizeof(claim_names[0])];
static bool claim_present[sizeof(claim_names) / sizeof(claim_names[0])];

static const char *
claim_fn(void *arg, const char *name)
{
	(void) arg;
	for (size_t i = 0; i < sizeof(claim_names) / sizeof(claim_names[0]); i++)
		if (strcmp(name, claim_names[i]) == 0)
			return claim_present[i] ? claim_values[i] : NULL;
	return NULL;
}

/* set_random_claims sets ferry.claims to a random object and reads back each claim. */
static void
set_random_claims(void)
{
	Buf			j = {0};
	Buf			q = {0};
	char		v[128];
	char	   *lit;
	PGresult   *res;
	bool		first = true;

	bput(&j, "{");
	for (size_t i = 0; i < sizeof(claim_names) / sizeof(claim_names[0]); i++)
	{
		const char *name = claim_names[i];

		if (strcmp(name, "absent") == 0 || chance(15))
			continue;
		bprintf(&j, "%s\"%s\": ", first ? "" : ", ", name);
		first = false;
		if (strcmp(name, "lvl") == 0)
			bprintf(&j, "%s", PICK(((const char *const[]) {"3", "42", "-1", "0", "7", "2147483648", "5"})));
		else if (strcmp(name, "num") == 0)
			bprintf(&j, "%s", PICK(((const char *const[]) {"2.50", "1.1", "0.1", "1e3", "-2.5", "5"})));
		else if (strcmp(name, "flag") == 0)
			bprintf(&j, "%s", PICK(((const char *const[]) {"true", "false", "null", "\"yes\""})));
		else
		{
			int			k = strcmp(name, "day") == 0 ? K_DATE : strcmp(name, "uid") == 0 ? K_UUID :
				strcmp(name, "ts") == 0 ? K_TSTZ : strcmp(name, "empty") == 0 ? -1 : K_TEXT;

			if (k < 0)
				v[0] = '\0';
			else
				value_text(k, v, sizeof(v));
			bput(&j, "\"");
			for (const char *p = v; *p; p++)
			{
				char		ch[3] = {*p, 0, 0};

				if (*p == '"' || *p == '\\')
					ch[0] = '\\', ch[1] = *p;
				bput(&j, ch);
			}
			bput(&j, "\"");
		}
	}
	bput(&j, "}");
	lit = PQescapeLiteral(conn, j.p, j.len);
	bprintf(&q, "SET ferry.claims = %s", lit);
	PQfreemem(lit);
	exec_ok(q.p);
	q.len = 0;
	bput(&q, "SELECT ");
	for (size_t i = 0; i < sizeof(claim_names) / sizeof(claim_names[0]); i++)
		bprintf(&q, "%sferry.claim('%s')", i > 0 ? ", " : "", claim_names[i]);
	res = must(PQexec(conn, q.p), "read claims");
	for (size_t i = 0; i < sizeof(claim_names) / sizeof(claim_names[0]); i++)
	{
		free(claim_values[i]);
		claim_present[i] = !PQgetisnull(res, 0, (int) i);
		claim_values[i] = strdup(claim_present[i] ? PQgetvalue(res, 0, (int) i) : "");
	}
	PQclear(res);
	free(j.p);
	free(q.p);
}

static void
setup_table(void)
{
	Buf			b = {0};
	PGresult   *res;

	snprintf(schema_name, sizeof(schema_name), "expr_diff_%d", (int) getpid());
	exec_ok("SET TimeZone = 'UTC'");
	exec_ok("SET DateStyle = 'ISO, MDY'");
	exec_ok("SET extra_float_digits = 1");
	exec_ok("SET client_min_messages = warning");
	bprintf(&b, "DROP SCHEMA IF EXISTS %s CASCADE", schema_name);
	exec_ok(b.p);
	b.len = 0;
	bprintf(&b, "CREATE SCHEMA %s", schema_name);
	exec_ok(b.p);
	b.len = 0;
	bprintf(&b, "CREATE TABLE %s.t (", schema_name);
	for (int c = 0; c < NCOLS; c++)
		bprintf(&b, "%s%s %s%s", c > 0 ? ", " : "", cols[c].name, cols[c].sqltype, c == 0 ? " PRIMARY KEY" : "");
	bput(&b, ")");
	exec_ok(b.p);

	for (int r = 0; r < NROWS; r++)
	{
		char		vals[NCOLS][160];
		const char *params[NCOLS];

		b.len = 0;
		bprintf(&b, "INSERT INTO %s.t VALUES (", schema_name);
		for (int c = 0; c < NCOLS; c++)
		{
			bprintf(&b, "%s$%d", c > 0 ? ", " : "", c + 1);
			if (c == 0)
				snprintf(vals[c], sizeof(vals[c]), "%d", r + 1);
			else
				value_text(cols[c].kind, vals[c], sizeof(vals[c]));
			params[c] = (c > 0 && chance(r < 20 ? 50 : 12)) ? NULL : vals[c];
		}
		bput(&b, ")");
		res = PQexecParams(conn, b.p, NCOLS, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			bail_out("insert: %s", PQresultErrorMessage(res));
		PQclear(res);
	}
	b.len = 0;
	bprintf(&b, "SELECT * FROM %s.t ORDER BY id", schema_name);
	res = must(PQexec(conn, b.p), "read rows");
	nrows = PQntuples(res);
	for (int r = 0; r < nrows; r++)
		for (int c = 0; c < NCOLS; c++)
			rows[r][c] = PQgetisnull(res, r, c) ? NULL : strdup(PQgetvalue(res, r, c));
	PQclear(res);
	free(b.p);
}

/* ---------------------------------------------------------------- comparing */

typedef struct Stats
{
	int			predicates;		/* predicates tried */
	int			both_ok;		/* run by both */
	int			both_refused;	/* refused or failed by both */
	long		comparisons;	/* predicate x row results compared */
	int			mismatches;		/* rows or acceptance that disagree */
	int			tolerated;		/* documented gateway-only refusals */
	int			validator_mismatches;	/* validator and expr_compile disagree */
	int			canon_mismatches;	/* canonical text not stable or not equivalent */
	int			term_mismatches;	/* a routing term that does not hold */
	int			reported;		/* diagnostics printed */
} Stats;

static ExprColumn ecols[NCOLS];
static ExprSchema eschema = {NCOLS, ecols};

/* The refusals the gateway makes on purpose where Postgres may not (expr.h), and counts. */
static const char *const gateway_reasons[] = {"(claim \"", "must not end with escape character", "ISO 8601",
"depends on the current time", "the gateway cannot evaluate", "nested too deeply"};
static int	gateway_counts[sizeof(gateway_reasons) / sizeof(gateway_reasons[0])];

static bool
gateway_only(const char *err)
{
	for (size_t i = 0; i < sizeof(gateway_reasons) / sizeof(gateway_reasons[0]); i++)
		if (strstr(err, gateway_reasons[i]) != NULL)
			return true;
	return false;
}

static void
count_gateway_only(const char *err)
{
	for (size_t i = 0; i < sizeof(gateway_reasons) / sizeof(gateway_reasons[0]); i++)
		if (strstr(err, gateway_reasons[i]) != NULL)
		{
			gateway_counts[i]++;
			return;
		}
}

static const char *
bool_name(ExprBool b)
{
	return b == EXPR_TRUE ? "true" : b == EXPR_FALSE ? "false" : "NULL";
}

static void
report_row(Stats *st, const char *pred, const Expr *e, int r, const char *pg, ExprBool gw)
{
	int			read[NCOLS];
	int			n;
	Buf			b = {0};

	st->mismatches++;
	if (st->reported++ >= MAX_REPORT)
		return;
	n = expr_columns(e, NCOLS, read);
	for (int i = 0; i < n && i < NCOLS; i++)
		bprintf(&b, " %s=%s%s%s", cols[read[i]].name, rows[r][read[i]] ? "'" : "",
				rows[r][read[i]] ? rows[r][read[i]] : "NULL", rows[r][read[i]] ? "'" : "");
	diag("MISMATCH predicate: %s\n  row id=%s:%s\n  postgres: %s  gateway: %s", pred, rows[r][0], b.p ? b.p : "",
		 pg, bool_name(gw));
	free(b.p);
}

/* validator_accepts runs ferry._validate_predicate on the table. */
static bool
validator_accepts(const char *pred, char *msg, size_t msglen)
{
	char		rel[128];
	const char *params[2] = {rel, pred};
	PGresult   *res;
	bool		ok;

	snprintf(rel, sizeof(rel), "%s.t", schema_name);
	res = PQexecParams(conn, "SELECT ferry._validate_predicate($1::regclass, $2)", 2, NULL, params, NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	snprintf(msg, msglen, "%s", ok ? "" : PQresultErrorMessage(res));
	PQclear(res);
	return ok;
}

/*
 * check_predicate runs one predicate on both sides and compares; expect_refusal is for
 * constructs outside the subset (only the refusals are compared).
 */
static void
check_predicate(Stats *st, const char *pred, bool expect_refusal)
{
	Buf			q = {0};
	PGresult   *res;
	Expr	   *e = NULL;
	char		err[512];
	char		vmsg[512];
	bool		compiled,
				validated,
				pg_ok;

	st->predicates++;
	compiled = expr_compile(pred, &eschema, claim_fn, NULL, &e, err, sizeof(err)) == 0;
	validated = validator_accepts(pred, vmsg, sizeof(vmsg));
	if (expect_refusal)
	{
		if (compiled || validated)
		{
			st->validator_mismatches++;
			if (st->reported++ < MAX_REPORT)
				diag("NOT REFUSED predicate: %s\n  expr_compile: %s  validator: %s", pred,
					 compiled ? "accepted" : err, validated ? "accepted" : vmsg);
		}
		expr_free(e);
		return;
	}
	if (!validated)
	{
		/* outside the subset, or an error parse analysis finds: the gateway must refuse it too */
		if (compiled)
		{
			st->validator_mismatches++;
			if (st->reported++ < MAX_REPORT)
				diag("VALIDATOR DISAGREES predicate: %s\n  expr_compile accepts it; validator: %s", pred, vmsg);
		}
		else
			st->both_refused++;
		expr_free(e);
		return;
	}

	bprintf(&q, "SELECT id, (\n%s\n) IS TRUE, (\n%s\n) IS FALSE FROM %s.t ORDER BY id", pred, pred, schema_name);
	res = PQexec(conn, q.p);
	pg_ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!pg_ok && !compiled)
		st->both_refused++;
	else if (pg_ok && !compiled)
	{
		if (gateway_only(err))
		{
			st->tolerated++;
			count_gateway_only(err);
			if (getenv("FERRY_EXPR_VERBOSE") != NULL)
				note("gateway-only refusal of %s: %s", pred, err);
		}
		else
		{
			st->mismatches++;
			if (st->reported++ < MAX_REPORT)
				diag("ACCEPTANCE MISMATCH predicate: %s\n  postgres runs it; expr_compile: %s", pred, err);
		}
	}
	else if (!pg_ok && compiled)
	{
		st->mismatches++;
		if (st->reported++ < MAX_REPORT)
			diag("ACCEPTANCE MISMATCH predicate: %s\n  expr_compile accepts it; postgres: %s", pred,
				 PQresultErrorMessage(res));
	}
	else
	{
		char	   *canon = expr_canonical(e);
		Expr	   *e2 = NULL;
		char		err2[512];
		int			tcols[16];
		const char *tconsts[16];
		int			nterms = expr_eq_terms(e, 16, tcols, tconsts);

		st->both_ok++;
		if (canon == NULL || expr_compile(canon, &eschema, NULL, NULL, &e2, err2, sizeof(err2)) != 0)
		{
			st->canon_mismatches++;
			if (st->reported++ < MAX_REPORT)
				diag("CANONICAL TEXT DOES NOT COMPILE predicate: %s\n  canonical: %s\n  error: %s", pred,
					 canon ? canon : "(null)", canon ? err2 : "");
		}
		else
		{
			char	   *canon2 = expr_canonical(e2);

			if (canon2 == NULL || strcmp(canon, canon2) != 0)
			{
				st->canon_mismatches++;
				if (st->reported++ < MAX_REPORT)
					diag("CANONICAL TEXT NOT STABLE predicate: %s\n  canonical: %s\n  again: %s", pred, canon,
						 canon2 ? canon2 : "(null)");
			}
			free(canon2);
		}
		for (int r = 0; r < PQntuples(res) && r < nrows; r++)
		{
			const char *pg = PQgetvalue(res, r, 1)[0] == 't' ? "true" :
				PQgetvalue(res, r, 2)[0] == 't' ? "false" : "NULL";
			ExprBool	gw = expr_eval(e, (const char *const *) rows[r]);

			st->comparisons++;
			if (strcmp(pg, bool_name(gw)) != 0)
				report_row(st, pred, e, r, pg, gw);
			if (e2 != NULL && expr_eval(e2, (const char *const *) rows[r]) != gw)
			{
				st->canon_mismatches++;
				if (st->reported++ < MAX_REPORT)
					diag("CANONICAL TEXT EVALUATES DIFFERENTLY predicate: %s\n  canonical: %s\n  row id=%s", pred,
						 canon, rows[r][0]);
			}
			if (gw == EXPR_TRUE)
				for (int t = 0; t < nterms; t++)
					if (rows[r][tcols[t]] == NULL || strcmp(rows[r][tcols[t]], tconsts[t]) != 0)
					{
						st->term_mismatches++;
						if (st->reported++ < MAX_REPORT)
							diag("ROUTING TERM DOES NOT HOLD predicate: %s\n  term %s = '%s', row id=%s has %s", pred,
								 cols[tcols[t]].name, tconsts[t], rows[r][0],
								 rows[r][tcols[t]] ? rows[r][tcols[t]] : "NULL");
					}
		}
		free(canon);
		expr_free(e2);
	}
	PQclear(res);
	free(q.p);
	expr_free(e);
}

static void
summary(const char *phase, const Stats *st)
{
	ok(st->mismatches == 0, "%s: %d predicates (%d run by both, %d refused by both, %d gateway-only refusals), "
	   "%ld predicate x row comparisons, %d disagreements", phase, st->predicates, st->both_ok, st->both_refused,
	   st->tolerated, st->comparisons, st->mismatches);
	ok(st->validator_mismatches == 0, "%s: the extension's validator and expr_compile accept the same predicates "
	   "(%d disagreements)", phase, st->validator_mismatches);
	ok(st->canon_mismatches == 0, "%s: canonical texts compile to themselves and evaluate the same (%d failures)",
	   phase, st->canon_mismatches);
	ok(st->term_mismatches == 0, "%s: routing terms hold on every accepted row (%d failures)", phase,
	   st->term_mismatches);
}

/* ---------------------------------------------------------------- phases */

static const char *const refused[] = {
	"c_int4 BETWEEN 1 AND 2", "c_int4 + 1 = 2", "lower(c_text) = 'a'", "c_int4 = (SELECT 1)",
	"EXISTS (SELECT 1)", "CASE WHEN c_bool THEN true END", "COALESCE(c_bool, false)", "NULLIF(c_int4, 1) = 1",
	"c_int4 IS DISTINCT FROM 1", "c_bool IS TRUE", "c_text SIMILAR TO 'a'", "c_int4 = ANY(ARRAY[1,2])",
	"c_text || 'x' = 'a'", "c_int4::text = '1'", "'{1}'::int[] IS NULL", "t.c_int4 = 1", "xmin = '1'",
	"c_int4 = $1", "now() > c_tstz", "c_text LIKE 'a' ESCAPE '!'", "(c_int4, c_int8) = (1, 2)",
	"c_int4 IN (SELECT 1)", "c_int4 IN (c_int8)", "true; SELECT 1", "true ORDER BY 1", "true UNION SELECT 1",
	"-c_int4 = 1", "c_text COLLATE \"C\" = 'a'", "GREATEST(c_int4, 1) = 1", "CURRENT_DATE = c_date",
	"ferry.claim(c_text) = 'a'", "ferry.claim('a', 'b') = 'x'", "claim('sub') = 'x'", "c_int4 = B'101'",
	"'x'::interval IS NULL", "c_int4 OPERATOR(pg_catalog.=) 1", "c_text ~ 'a'", "c_int4 = ALL('{1}')",
	"c_int4 = +1", "c_int4 = -'1'", "'1'::int::int8 = c_int8", "c_int4 = 1 LIMIT 1", "c_int4 = 1 GROUP BY 1",
	"true FOR UPDATE", "c_int4 % 2 = 0", "c_text = 'a'::\"char\"", "c_text::varchar = 'a'", "NOT c_int4",
	"c_int4 IN (1, c_int8)", "c_json ->> 'a' = 'x'", "ferry.claim(NULL) IS NULL", "c_int4 = ferry.claim('x')::int + 1",
	"c_text IS NOT DISTINCT FROM 'a'", "c_bool IS UNKNOWN", "c_date = CURRENT_DATE", "c_int4 = (1)::int4[1]",
	"", "   ", "c_int4 = 1 AND", "c_uuid = gen_random_uuid()", "ROW(c_int4) IS NULL", "c_int4 = 1 WINDOW w AS ()",
	"x'1F'::bit(8) IS NULL", "c_text = 'a' COLLATE \"C\"", "c_int4 IS OF (integer)",
};

/* The literal each kind is compared to in the pairs phase: (value, kind) per type. */
static void
phase_pairs(Stats *st)
{
	static const char *const ops[] = {"=", "<", ">=", "<>", "LIKE", "ILIKE", "NOT LIKE"};
	Buf			b = {0};

	for (int c1 = 1; c1 < NCOLS; c1++)
		for (int c2 = 1; c2 < NCOLS; c2++)
			for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++)
			{
				b.len = 0;
				bprintf(&b, "%s %s %s", cols[c1].name, ops[o], cols[c2].name);
				check_predicate(st, b.p, false);
			}
	/* every column against a typed literal of every cast type, and IN lists mixing them */
	for (int c = 1; c < NCOLS; c++)
		for (size_t t = 0; t < sizeof(cast_names) / sizeof(cast_names[0]); t++)
		{
			char		v[160];

			value_text(cast_names[t].kind, v, sizeof(v));
			b.len = 0;
			bprintf(&b, "%s %s ", cols[c].name, PICK(cmp_ops));
			bquote(&b, v);
			bprintf(&b, "::%s", cast_names[t].name);
			check_predicate(st, b.p, false);
			b.len = 0;
			bprintf(&b, "%s IN (", cols[c].name);
			gen_literal(&b, cols[c].kind);
			bput(&b, ", ");
			bquote(&b, v);
			bprintf(&b, "::%s, ", cast_names[t].name);
			gen_literal(&b, cols[c].kind);
			bput(&b, ")");
			check_predicate(st, b.p, false);
		}
	free(b.p);
}

int
main(void)
{
	const char *seed_env = getenv("FERRY_SEED");
	const char *npred_env = getenv("FERRY_EXPR_PREDICATES");
	uint64_t	seed = seed_env != NULL ? strtoull(seed_env, NULL, 10) :
		(uint64_t) time(NULL) ^ ((uint64_t) getpid() << 20);
	int			npred = npred_env != NULL ? atoi(npred_env) : 3000;
	Stats		random_st = {0},
				pairs_st = {0},
				refused_st = {0};
	Buf			b = {0};
	time_t		started = time(NULL);

	plan(10);
	printf("# seed %llu\n", (unsigned long long) seed);
	rng_state = seed ? seed : 1;
	for (int c = 0; c < NCOLS; c++)
	{
		ecols[c].name = cols[c].name;
		ecols[c].type_oid = cols[c].oid;
	}

	conn = PQconnectdb("");
	if (PQstatus(conn) != CONNECTION_OK)
		bail_out("cannot connect (PGHOST, PGPORT, PGDATABASE): %s", PQerrorMessage(conn));
	setup_table();
	ok(nrows == NROWS, "%d random rows in %s.t", nrows, schema_name);

	for (int i = 0; i < npred; i++)
	{
		if (i % 150 == 0)
			set_random_claims();
		b.len = 0;
		gen_pred(&b, rn(4));
		check_predicate(&random_st, b.p, false);
	}
	summary("random predicates", &random_st);

	set_random_claims();
	phase_pairs(&pairs_st);
	summary("column pairs and typed literals", &pairs_st);

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		check_predicate(&refused_st, refused[i], true);
	ok(refused_st.validator_mismatches == 0, "constructs outside the subset: %d, refused by both",
	   refused_st.predicates);

	note("total: %ld predicate x row comparisons in %ld s", random_st.comparisons + pairs_st.comparisons,
		 (long) (time(NULL) - started));
	for (size_t i = 0; i < sizeof(gateway_reasons) / sizeof(gateway_reasons[0]); i++)
		note("gateway-only refusals of predicates Postgres ran, \"%s\": %d", gateway_reasons[i], gateway_counts[i]);

	b.len = 0;
	bprintf(&b, "DROP SCHEMA %s CASCADE", schema_name);
	exec_ok(b.p);
	free(b.p);
	for (int r = 0; r < nrows; r++)
		for (int c = 0; c < NCOLS; c++)
			free(rows[r][c]);
	for (size_t i = 0; i < sizeof(claim_names) / sizeof(claim_names[0]); i++)
		free(claim_values[i]);
	PQfinish(conn);
	return done_testing();
}
