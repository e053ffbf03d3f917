/*
 * gateway/expr.c -- the WHERE-clause evaluator: shape WHERE clauses and rule predicates,
 * compiled with libpg_query and evaluated over decoded rows the way Postgres 15 would.
 *
 * expr.h holds the interface, the supported subset and the semantics. This file is cut
 * into sections by banner comments:
 *
 *   types and the arena            the 14 supported types, one arena per Expr
 *   errors and text helpers        the caller's err buffer, UTF-8, a string builder
 *   decimals                       exact numeric values as digit strings (numeric_in/out)
 *   scalar input and output        int, float, bool and uuid text forms
 *   dates and timestamps           ISO 8601 input, Postgres output, typmod rounding
 *   typed constants and casts      Datum, input functions, explicit and implicit casts
 *   type resolution                which operator and IN-list type Postgres picks
 *   the compiled tree              Node/Operand and expr_eval
 *   LIKE                           the matcher and ILIKE's case folding
 *   the subset                     the walk of extension/predicate.c over the parse tree
 *   typing                         the parse tree to a compiled tree
 *   canonical text and terms       expr_canonical, expr_eq_terms, expr_columns
 *   the parser thread and the API  libpg_query on a large stack, expr_compile, expr_free
 *
 * Compile-time errors unwind with longjmp to expr_compile (like ereport): every
 * allocation of a compilation is in the Expr's arena or is released there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "expr.h"

/* ================================================================================
 * types and the arena
 * ================================================================================ */

typedef __int128 i128;

/* The types the evaluator knows; TY_OTHER is any other column type (IS NULL only). */
typedef enum Ty
{
	TY_UNKNOWN = 0,				/* an untyped string literal or NULL */
	TY_BOOL,
	TY_INT2,
	TY_INT4,
	TY_INT8,
	TY_NUMERIC,
	TY_FLOAT4,
	TY_FLOAT8,
	TY_TEXT,
	TY_VARCHAR,
	TY_BPCHAR,
	TY_UUID,
	TY_DATE,
	TY_TIMESTAMP,
	TY_TIMESTAMPTZ,
	TY_OTHER
} Ty;

typedef struct TypeInfo
{
	uint32_t	oid;			/* pg_type OID */
	const char *name;			/* format_type() name, for messages */
	const char *catname;		/* pg_type.typname, for casts and canonical text */
	char		category;		/* pg_type.typcategory */
	bool		preferred;		/* pg_type.typispreferred */
} TypeInfo;

static const TypeInfo types[] = {
	[TY_UNKNOWN] = {705, "unknown", "unknown", 'X', false},
	[TY_BOOL] = {16, "boolean", "bool", 'B', true},
	[TY_INT2] = {21, "smallint", "int2", 'N', false},
	[TY_INT4] = {23, "integer", "int4", 'N', false},
	[TY_INT8] = {20, "bigint", "int8", 'N', false},
	[TY_NUMERIC] = {1700, "numeric", "numeric", 'N', false},
	[TY_FLOAT4] = {700, "real", "float4", 'N', false},
	[TY_FLOAT8] = {701, "double precision", "float8", 'N', true},
	[TY_TEXT] = {25, "text", "text", 'S', true},
	[TY_VARCHAR] = {1043, "character varying", "varchar", 'S', false},
	[TY_BPCHAR] = {1042, "character", "bpchar", 'S', false},
	[TY_UUID] = {2950, "uuid", "uuid", 'U', false},
	[TY_DATE] = {1082, "date", "date", 'D', false},
	[TY_TIMESTAMP] = {1114, "timestamp without time zone", "timestamp", 'D', false},
	[TY_TIMESTAMPTZ] = {1184, "timestamp with time zone", "timestamptz", 'D', true},
	[TY_OTHER] = {0, "(unsupported type)", "", '?', false},
};

static Ty
ty_from_oid(uint32_t oid)
{
	for (int t = TY_BOOL; t < TY_OTHER; t++)
		if (types[t].oid == oid)
			return (Ty) t;
	return TY_OTHER;
}

static bool
ty_is_int(Ty t)
{
	return t == TY_INT2 || t == TY_INT4 || t == TY_INT8;
}

static bool
ty_is_string(Ty t)
{
	return t == TY_TEXT || t == TY_VARCHAR || t == TY_BPCHAR;
}

static bool
ty_is_number(Ty t)
{
	return ty_is_int(t) || t == TY_NUMERIC || t == TY_FLOAT4 || t == TY_FLOAT8;
}

/* An arena block; the data follows the header, which keeps it 16-byte aligned. */
typedef struct Block
{
	struct Block *next;			/* the previous block */
	size_t		used;			/* bytes handed out */
	size_t		cap;			/* bytes of data */
	size_t		pad;			/* keeps sizeof(Block) a multiple of 16 */
} Block;

#define BLOCK_SIZE	8192

/* arena_alloc returns n zeroed bytes from *head, or NULL when out of memory. */
static void *
arena_alloc(Block **head, size_t n)
{
	Block	   *b = *head;
	void	   *p;

	n = (n + 15) & ~(size_t) 15;
	if (n == 0)
		n = 16;
	if (b == NULL || b->cap - b->used < n)
	{
		size_t		cap = n > BLOCK_SIZE ? n : BLOCK_SIZE;

		b = malloc(sizeof(Block) + cap);
		if (b == NULL)
			return NULL;
		b->next = *head;
		b->used = 0;
		b->cap = cap;
		*head = b;
	}
	p = (char *) (b + 1) + b->used;
	b->used += n;
	memset(p, 0, n);
	return p;
}

static void
arena_free(Block *b)
{
	while (b != NULL)
	{
		Block	   *next = b->next;

		free(b);
		b = next;
	}
}

/* ================================================================================
 * errors and text helpers
 * ================================================================================ */

struct Node;

struct Expr
{
	Block	   *arena;			/* every allocation of this Expr */
	struct Node *root;			/* the compiled predicate */
	locale_t	loc;			/* C.UTF-8 (or C): strtod_l, towlower_l, snprintf */
	bool		loc_utf8;		/* loc folds non-ASCII letters */
	int			ncols;			/* columns of the schema */
	char	  **colnames;		/* [ncols] names, for canonical text */
	int			nread;			/* columns the predicate reads */
	int		   *read;			/* [nread] their indexes, ascending */
	int			neq;			/* routing terms */
	int		   *eq_cols;		/* [neq] column indexes */
	const char **eq_consts;		/* [neq] constants in the column's text form */
};

/* One compilation: the input, the output under construction, and where errors go. */
typedef struct Compiler
{
	Expr	   *e;				/* the result (its arena holds everything) */
	const char *pred;			/* the predicate text */
	int			offset;			/* length of "SELECT 1 FROM t WHERE " */
	const ExprSchema *schema;	/* the table's columns */
	Ty		   *coltypes;		/* [ncols] the columns' types */
	bool	   *colused;		/* [ncols] read by the predicate */
	ExprClaimFn claim;			/* claim lookup, or NULL */
	void	   *claim_arg;		/* its argument */
	char		msg[512];		/* the error message */
	jmp_buf		fail;			/* where errors unwind to */
	jmp_buf    *lazy;			/* where plan-time cast errors unwind to, or NULL */
	const char *claim_ctx;		/* " (claim \"x\")" while casting a claim, else NULL */
	bool		lazy_input;		/* input function errors are lazy too (casting a claim) */
	char		lazy_msg[512];	/* such an error's message */
	int			lazy_loc;		/* and its location */
} Compiler;

static void *
c_alloc(Compiler *c, size_t n);

/* excerpt writes up to 24 bytes of the predicate from byte at (whole UTF-8 characters). */
static void
excerpt(const char *pred, int at, char *buf, size_t buflen)
{
	size_t		len = strlen(pred);
	size_t		n;

	if (at < 0 || (size_t) at > len)
		at = 0;
	n = len - at;
	if (n > 24)
	{
		n = 24;
		while (n > 0 && ((unsigned char) pred[at + n] & 0xC0) == 0x80)
			n--;
		snprintf(buf, buflen, "%.*s...", (int) n, pred + at);
	}
	else
		snprintf(buf, buflen, "%.*s", (int) n, pred + at);
}

/*
 * fail formats an error and unwinds the compilation. location is a byte offset in the
 * parsed query (libpg_query's), or -1: when it falls inside the predicate, the message
 * ends with where ("at \"...\"").
 */
static void __attribute__((noreturn, format(printf, 3, 4)))
fail(Compiler *c, int location, const char *fmt, ...)
{
	va_list		ap;
	size_t		n;

	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	n = strlen(c->msg);
	if (location >= c->offset && c->pred != NULL &&
		(size_t) (location - c->offset) < strlen(c->pred) && n < sizeof(c->msg))
	{
		char		ex[64];

		excerpt(c->pred, location - c->offset, ex, sizeof(ex));
		snprintf(c->msg + n, sizeof(c->msg) - n, " at \"%s\"", ex);
	}
	longjmp(c->fail, 1);
}

/*
 * plan_fail is fail() for the errors Postgres raises only when the planner folds a cast
 * of a constant (numeric(p,s) overflow, 100000::int2, ...): inside lazy_coerce the
 * error is kept as the operand's "poison" and raised only if Postgres would reach it.
 */
static void __attribute__((noreturn, format(printf, 3, 4)))
plan_fail(Compiler *c, int location, const char *fmt, ...)
{
	va_list		ap;

	if (c->lazy == NULL)
	{
		char		msg[512];

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		fail(c, location, "%s%s", msg, c->claim_ctx != NULL ? c->claim_ctx : "");
	}
	va_start(ap, fmt);
	vsnprintf(c->lazy_msg, sizeof(c->lazy_msg), fmt, ap);
	va_end(ap);
	if (c->claim_ctx != NULL && strlen(c->lazy_msg) + strlen(c->claim_ctx) < sizeof(c->lazy_msg))
		strcat(c->lazy_msg, c->claim_ctx);
	c->lazy_loc = location;
	longjmp(*c->lazy, 1);
}

/*
 * input_fail is for input functions' errors: immediate for a literal (Postgres converts
 * it when parsing), lazy for a claim (Postgres converts it per row); the message then
 * names the claim itself, so ctx is not repeated.
 */
#define input_fail(c, loc, ...) \
	((c)->lazy_input ? plan_fail_noctx(c, loc, __VA_ARGS__) : fail(c, loc, __VA_ARGS__))

static void __attribute__((noreturn, format(printf, 3, 4)))
plan_fail_noctx(Compiler *c, int location, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(c->lazy_msg, sizeof(c->lazy_msg), fmt, ap);
	va_end(ap);
	c->lazy_loc = location;
	longjmp(*c->lazy, 1);
}

static void *
c_alloc(Compiler *c, size_t n)
{
	void	   *p = arena_alloc(&c->e->arena, n);

	if (p == NULL)
		fail(c, -1, "out of memory compiling the predicate");
	return p;
}

static char *
c_strndup(Compiler *c, const char *s, size_t n)
{
	char	   *p = c_alloc(c, n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* The C locale's isspace and isdigit, which the Postgres input functions use. */
static bool
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static char
ascii_lower(char ch)
{
	return (ch >= 'A' && ch <= 'Z') ? (char) (ch + 'a' - 'A') : ch;
}

/* ci_prefix: whether s starts with word, ASCII case-insensitively (pg_strncasecmp). */
static bool
ci_prefix(const char *s, const char *word)
{
	for (; *word; s++, word++)
		if (*s == '\0' || ascii_lower(*s) != ascii_lower(*word))
			return false;
	return true;
}

/* ci_equal: s[0..len) equals word, ASCII case-insensitively. */
static bool
ci_equal(const char *s, size_t len, const char *word)
{
	if (strlen(word) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (ascii_lower(s[i]) != ascii_lower(word[i]))
			return false;
	return true;
}

/* utf8_valid: whether s[0..len) is well-formed UTF-8 (what Postgres accepts). */
static bool
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char b = p[i];
		size_t		n;
		uint32_t	cp;

		if (b < 0x80)
		{
			if (b == 0)
				return false;
			i++;
			continue;
		}
		if ((b & 0xE0) == 0xC0)
			n = 2, cp = b & 0x1F;
		else if ((b & 0xF0) == 0xE0)
			n = 3, cp = b & 0x0F;
		else if ((b & 0xF8) == 0xF0)
			n = 4, cp = b & 0x07;
		else
			return false;
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
			cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n;
	}
	return true;
}

/* utf8_chars: the number of characters in s[0..len) (lead bytes). */
static size_t
utf8_chars(const char *s, size_t len)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
		if (((unsigned char) s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

/* utf8_prefix: the byte length of the first nchars characters of s[0..len). */
static size_t
utf8_prefix(const char *s, size_t len, size_t nchars)
{
	size_t		i = 0;

	while (i < len && nchars > 0)
	{
		i++;
		while (i < len && ((unsigned char) s[i] & 0xC0) == 0x80)
			i++;
		nchars--;
	}
	return i;
}

/* rtrim_len: the length of s[0..len) without trailing spaces (bpchar semantics). */
static size_t
rtrim_len(const char *s, size_t len)
{
	while (len > 0 && s[len - 1] == ' ')
		len--;
	return len;
}

/* A growable malloc'd string; oom is set (and appends ignored) when malloc fails. */
typedef struct StrBuf
{
	char	   *p;				/* the text, NUL-terminated */
	size_t		len;			/* its length */
	size_t		cap;			/* allocated bytes */
	bool		oom;			/* an allocation failed */
} StrBuf;

static void
sb_putn(StrBuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap * 2 : 128;
		char	   *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL)
		{
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_puts(StrBuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

/* sb_quoted appends s[0..len) between q characters, doubling q inside. */
static void
sb_quoted(StrBuf *b, const char *s, size_t len, char q)
{
	size_t		start = 0;

	sb_putn(b, &q, 1);
	for (size_t i = 0; i < len; i++)
		if (s[i] == q)
		{
			sb_putn(b, s + start, i - start + 1);
			sb_putn(b, &q, 1);
			start = i + 1;
		}
	sb_putn(b, s + start, len - start);
	sb_putn(b, &q, 1);
}

/* ================================================================================
 * decimals
 *
 * An exact number (int2/int4/int8/numeric) is a sign, a special kind (NaN, +-Infinity),
 * a decimal weight and its significant digits: value = 0.D * 10^weight, where D is the
 * concatenation of d1 and d2 (two pieces, so that a column's text "123.45" is read in
 * place). Leading zeros are never in D; trailing zeros may be (comparison pads with 0).
 * ================================================================================ */

enum
{
	DEC_NUM = 0,				/* a finite number */
	DEC_NAN,					/* NaN: equal to itself, above everything */
	DEC_PINF,					/* Infinity */
	DEC_NINF					/* -Infinity */
};

typedef struct Dec
{
	uint8_t		special;		/* DEC_NUM, DEC_NAN, DEC_PINF, DEC_NINF */
	uint8_t		neg;			/* negative (finite, nonzero) */
	int32_t		weight;			/* value = 0.D * 10^weight */
	int32_t		dscale;			/* display scale: digits after the point (numeric_out) */
	const char *d1;				/* first piece of D */
	int32_t		n1;				/* its length */
	const char *d2;				/* second piece of D */
	int32_t		n2;				/* its length */
} Dec;

#define NUMERIC_MAX_WEIGHT	131072	/* at most this many digits before the point */
#define NUMERIC_MAX_DSCALE	16383	/* at most this many digits after it */

static char
dec_digit(const Dec *d, int32_t i)
{
	return i < d->n1 ? d->d1[i] : d->d2[i - d->n1];
}

static int32_t
dec_ndigits(const Dec *d)
{
	return d->n1 + d->n2;
}

static bool
dec_is_zero(const Dec *d)
{
	if (d->special != DEC_NUM)
		return false;
	for (int32_t i = 0; i < dec_ndigits(d); i++)
		if (dec_digit(d, i) != '0')
			return false;
	return true;
}

static int
dec_rank(const Dec *d)
{
	switch (d->special)
	{
		case DEC_NINF:
			return 0;
		case DEC_NUM:
			return 1;
		case DEC_PINF:
			return 2;
		default:
			return 3;
	}
}

/* dec_cmp orders two exact numbers as Postgres's numeric_cmp does. */
static int
dec_cmp(const Dec *a, const Dec *b)
{
	int			ra = dec_rank(a),
				rb = dec_rank(b);
	int			sa,
				sb,
				mag = 0;
	int32_t		na,
				nb;

	if (ra != rb)
		return ra < rb ? -1 : 1;
	if (ra != 1)
		return 0;
	sa = dec_is_zero(a) ? 0 : (a->neg ? -1 : 1);
	sb = dec_is_zero(b) ? 0 : (b->neg ? -1 : 1);
	if (sa != sb)
		return sa < sb ? -1 : 1;
	if (sa == 0)
		return 0;
	if (a->weight != b->weight)
		mag = a->weight < b->weight ? -1 : 1;
	else
	{
		na = dec_ndigits(a);
		nb = dec_ndigits(b);
		for (int32_t i = 0; i < na || i < nb; i++)
		{
			char		da = i < na ? dec_digit(a, i) : '0';
			char		db = i < nb ? dec_digit(b, i) : '0';

			if (da != db)
			{
				mag = da < db ? -1 : 1;
				break;
			}
		}
	}
	return sa > 0 ? mag : -mag;
}

/*
 * dec_read_output reads a column value in int or numeric text output form
 * ([-]digits[.digits], NaN, Infinity, -Infinity) in place; false when malformed.
 */
static bool
dec_read_output(const char *s, Dec *d)
{
	const char *ip,
			   *fp = "";
	int32_t		ilen,
				flen = 0;

	memset(d, 0, sizeof(*d));
	d->d1 = d->d2 = "";
	if (s[0] == 'N' && strcmp(s, "NaN") == 0)
	{
		d->special = DEC_NAN;
		return true;
	}
	if (strcmp(s, "Infinity") == 0)
	{
		d->special = DEC_PINF;
		return true;
	}
	if (strcmp(s, "-Infinity") == 0)
	{
		d->special = DEC_NINF;
		return true;
	}
	if (*s == '-')
		d->neg = 1, s++;
	else if (*s == '+')
		s++;
	ip = s;
	while (is_digit(*s))
		s++;
	ilen = (int32_t) (s - ip);
	if (*s == '.')
	{
		fp = ++s;
		while (is_digit(*s))
			s++;
		flen = (int32_t) (s - fp);
	}
	if (*s != '\0' || ilen + flen == 0 || ilen > NUMERIC_MAX_WEIGHT + 1000 || flen > NUMERIC_MAX_DSCALE + 1000)
		return false;
	d->dscale = flen;
	while (ilen > 0 && *ip == '0')
		ip++, ilen--;
	if (ilen > 0)
	{
		d->d1 = ip;
		d->n1 = ilen;
		d->d2 = fp;
		d->n2 = flen;
		d->weight = ilen;
	}
	else
	{
		int32_t		z = 0;

		while (z < flen && fp[z] == '0')
			z++;
		d->d1 = fp + z;
		d->n1 = flen - z;
		d->weight = d->n1 > 0 ? -z : 0;
	}
	return true;
}

/* dec_make builds a finite Dec from digits (any leading zeros stripped here). */
static Dec
dec_make(const char *digits, int32_t n, int32_t weight, bool neg, int32_t dscale)
{
	Dec			d;

	memset(&d, 0, sizeof(d));
	while (n > 0 && *digits == '0')
		digits++, n--, weight--;
	while (n > 0 && digits[n - 1] == '0')
		n--;
	d.d1 = digits;
	d.n1 = n;
	d.d2 = "";
	d.weight = n > 0 ? weight : 0;
	d.neg = (n > 0 && neg) ? 1 : 0;
	d.dscale = dscale;
	return d;
}

/*
 * dec_input is numeric_in: leading/trailing whitespace, a sign, digits with one point,
 * an exponent, NaN and the infinities, and the storage limits. Errors via fail().
 */
static Dec
dec_input(Compiler *c, const char *str, int location, const char *ctx)
{
	const char *p = str;
	Dec			d;
	char	   *digits;
	int32_t		n = 0,
				dweight = -1,
				dscale = 0;
	bool		neg = false,
				have_dp = false;

	memset(&d, 0, sizeof(d));
	d.d1 = d.d2 = "";
	while (is_space(*p))
		p++;
	if (ci_prefix(p, "NaN"))
		d.special = DEC_NAN, p += 3;
	else if (ci_prefix(p, "Infinity"))
		d.special = DEC_PINF, p += 8;
	else if (ci_prefix(p, "+Infinity"))
		d.special = DEC_PINF, p += 9;
	else if (ci_prefix(p, "-Infinity"))
		d.special = DEC_NINF, p += 9;
	else if (ci_prefix(p, "inf"))
		d.special = DEC_PINF, p += 3;
	else if (ci_prefix(p, "+inf"))
		d.special = DEC_PINF, p += 4;
	else if (ci_prefix(p, "-inf"))
		d.special = DEC_NINF, p += 4;
	if (d.special != DEC_NUM)
	{
		while (is_space(*p))
			p++;
		if (*p != '\0')
			input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
		return d;
	}
	if (*p == '+')
		p++;
	else if (*p == '-')
		neg = true, p++;
	if (*p == '.')
		have_dp = true, p++;
	if (!is_digit(*p))
		input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
	digits = c_alloc(c, strlen(p) + 1);
	for (;;)
	{
		if (is_digit(*p))
		{
			digits[n++] = *p++;
			if (!have_dp)
				dweight++;
			else
				dscale++;
		}
		else if (*p == '.')
		{
			if (have_dp)
				input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
			have_dp = true;
			p++;
		}
		else
			break;
	}
	if (*p == 'e' || *p == 'E')
	{
		char	   *end;
		long		exponent;

		p++;
		errno = 0;
		exponent = strtol(p, &end, 10);
		if (end == p)
			input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
		p = end;
		if (exponent >= INT_MAX / 2 || exponent <= -(INT_MAX / 2))
			input_fail(c, location, "value overflows numeric format%s", ctx);
		dweight += (int32_t) exponent;
		dscale -= (int32_t) exponent;
		if (dscale < 0)
			dscale = 0;
	}
	while (is_space(*p))
		p++;
	if (*p != '\0')
		input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
	d = dec_make(digits, n, dweight + 1, neg, dscale);
	if (dscale > NUMERIC_MAX_DSCALE || (dec_ndigits(&d) > 0 && d.weight > NUMERIC_MAX_WEIGHT))
		input_fail(c, location, "value overflows numeric format%s", ctx);
	return d;
}

/* dec_from_int is an integer as a Dec. */
static Dec
dec_from_int(Compiler *c, int64_t v)
{
	char		buf[24];
	uint64_t	u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;
	int			n = 0;
	char	   *digits;

	do
	{
		buf[n++] = (char) ('0' + u % 10);
		u /= 10;
	} while (u > 0);
	digits = c_alloc(c, n + 1);
	for (int i = 0; i < n; i++)
		digits[i] = buf[n - 1 - i];
	return dec_make(digits, n, n, v < 0, 0);
}

/* dec_round rounds half away from zero to scale digits after the point (scale may be < 0). */
static Dec
dec_round(Compiler *c, const Dec *in, int scale)
{
	int32_t		n = dec_ndigits(in);
	int32_t		keep;
	char	   *buf;
	Dec			out;

	if (in->special != DEC_NUM)
		return *in;
	keep = in->weight + scale;
	if (n == 0 || keep >= n)
	{
		out = *in;
		out.dscale = scale > 0 ? scale : 0;
		return out;
	}
	if (keep < 0)
		return dec_make("", 0, 0, false, scale > 0 ? scale : 0);
	buf = c_alloc(c, keep + 2);
	for (int32_t i = 0; i < keep; i++)
		buf[i] = dec_digit(in, i);
	if (dec_digit(in, keep) >= '5')
	{
		int32_t		i = keep - 1;

		while (i >= 0 && buf[i] == '9')
			buf[i--] = '0';
		if (i < 0)
		{
			buf[0] = '1';
			return dec_make(buf, 1, in->weight + 1, in->neg, scale > 0 ? scale : 0);
		}
		buf[i]++;
	}
	return dec_make(buf, keep, in->weight, in->neg, scale > 0 ? scale : 0);
}

/* dec_format_len: the buffer size dec_format needs. */
static size_t
dec_format_len(const Dec *d, int32_t dscale)
{
	return (size_t) (d->weight > 0 ? d->weight : 1) + (dscale > 0 ? dscale : 0) + 12;
}

/* dec_format is numeric_out with display scale dscale (-1: the value's own). */
static void
dec_format(const Dec *d, int32_t dscale, char *buf)
{
	int32_t		n = dec_ndigits(d);
	int32_t		w = d->weight;
	char	   *p = buf;

	switch (d->special)
	{
		case DEC_NAN:
			strcpy(buf, "NaN");
			return;
		case DEC_PINF:
			strcpy(buf, "Infinity");
			return;
		case DEC_NINF:
			strcpy(buf, "-Infinity");
			return;
	}
	if (dscale < 0)
		dscale = d->dscale;
	if (d->neg && !dec_is_zero(d))
		*p++ = '-';
	if (w <= 0 || n == 0)
		*p++ = '0';
	else
		for (int32_t i = 0; i < w; i++)
			*p++ = i < n ? dec_digit(d, i) : '0';
	if (dscale > 0)
	{
		*p++ = '.';
		for (int32_t j = 0; j < dscale; j++)
		{
			int32_t		i = (n == 0 ? 0 : w) + j;

			*p++ = (n > 0 && i >= 0 && i < n) ? dec_digit(d, i) : '0';
		}
	}
	*p = '\0';
}

static char *
dec_out(Compiler *c, const Dec *d, int32_t dscale)
{
	char	   *buf = c_alloc(c, dec_format_len(d, dscale < 0 ? d->dscale : dscale));

	dec_format(d, dscale, buf);
	return buf;
}

/* dec_min_scale: the fewest digits after the point that show d exactly. */
static int32_t
dec_min_scale(const Dec *d)
{
	int32_t		n = dec_ndigits(d);

	while (n > 0 && dec_digit(d, n - 1) == '0')
		n--;
	return (n == 0 || n - d->weight <= 0) ? 0 : n - d->weight;
}

/* ================================================================================
 * scalar input and output
 * ================================================================================ */

enum
{
	IN_OK = 0,					/* parsed */
	IN_SYNTAX,					/* invalid input syntax */
	IN_RANGE					/* out of range */
};

/* int_input is pg_strtoint16/32/64 for type t; *out gets the value. */
static int
int_input(const char *s, Ty t, int64_t *out)
{
	uint64_t	limit = t == TY_INT2 ? 32768u : t == TY_INT4 ? 2147483648u : (uint64_t) 1 << 63;
	uint64_t	acc = 0;
	bool		neg = false;

	while (is_space(*s))
		s++;
	if (*s == '-')
		neg = true, s++;
	else if (*s == '+')
		s++;
	if (!is_digit(*s))
		return IN_SYNTAX;
	while (is_digit(*s))
	{
		acc = acc * 10 + (uint64_t) (*s++ - '0');
		if (acc > limit)
			return IN_RANGE;
	}
	while (is_space(*s))
		s++;
	if (*s != '\0')
		return IN_SYNTAX;
	if (!neg && acc == limit)
		return IN_RANGE;
	*out = neg ? (int64_t) (0 - acc) : (int64_t) acc;
	return IN_OK;
}

/* float_input is float4in/float8in (strtof/strtod in the C locale). */
static int
float_input(const char *s, bool f4, locale_t loc, double *out)
{
	char	   *end;
	double		v;

	while (is_space(*s))
		s++;
	if (*s == '\0')
		return IN_SYNTAX;
	errno = 0;
	if (f4)
		v = strtof_l(s, &end, loc);
	else
		v = strtod_l(s, &end, loc);
	if (end == s)
		return IN_SYNTAX;
	if (errno == ERANGE)
	{
		/* Denormals set ERANGE too: only zero and infinity are out of range. */
		if (v == 0.0 || isinf(v))
			return IN_RANGE;
	}
	else if (errno != 0)
		return IN_SYNTAX;
	while (is_space(*end))
		end++;
	if (*end != '\0')
		return IN_SYNTAX;
	*out = v;
	return IN_OK;
}

/* ci_word_prefix: s[0..len) is a non-empty prefix of word, ASCII case-insensitively. */
static bool
ci_word_prefix(const char *s, size_t len, const char *word)
{
	if (len == 0 || len > strlen(word))
		return false;
	for (size_t i = 0; i < len; i++)
		if (ascii_lower(s[i]) != ascii_lower(word[i]))
			return false;
	return true;
}

/* bool_input is boolin (parse_bool_with_len after trimming whitespace). */
static bool
bool_input(const char *s, bool *out)
{
	size_t		len;

	while (is_space(*s))
		s++;
	len = strlen(s);
	while (len > 0 && is_space(s[len - 1]))
		len--;
	if (len == 0)
		return false;
	switch (ascii_lower(s[0]))
	{
		case 't':
			*out = true;
			return ci_word_prefix(s, len, "true");
		case 'y':
			*out = true;
			return ci_word_prefix(s, len, "yes");
		case 'f':
			*out = false;
			return ci_word_prefix(s, len, "false");
		case 'n':
			*out = false;
			return ci_word_prefix(s, len, "no");
		case 'o':
			/* "o" alone is ambiguous: "on", or "of"/"off" */
			if (len == 2 && ci_equal(s, 2, "on"))
				return *out = true, true;
			*out = false;
			return len >= 2 && ci_word_prefix(s, len, "off");
		case '1':
			*out = true;
			return len == 1;
		case '0':
			*out = false;
			return len == 1;
	}
	return false;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* uuid_input is uuid_in: 32 hex digits, a hyphen allowed after any group of four, braces. */
static bool
uuid_input(const char *s, uint8_t out[16])
{
	bool		braces = false;

	if (*s == '{')
		braces = true, s++;
	for (int i = 0; i < 16; i++)
	{
		int			hi,
					lo;

		if (s[0] == '\0' || s[1] == '\0')
			return false;
		hi = hexval(s[0]);
		lo = hexval(s[1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t) (hi << 4 | lo);
		s += 2;
		if (s[0] == '-' && (i % 2) == 1 && i < 15)
			s++;
	}
	if (braces)
	{
		if (*s != '}')
			return false;
		s++;
	}
	return *s == '\0';
}

static void
uuid_out(const uint8_t u[16], char buf[37])
{
	static const char hex[] = "0123456789abcdef";
	char	   *p = buf;

	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u[i] >> 4];
		*p++ = hex[u[i] & 15];
	}
	*p = '\0';
}

/* float_out writes the shortest text that reads back as v (as a float when f4). */
static void
float_out(double v, bool f4, locale_t loc, char *buf, size_t len)
{
	locale_t	old;

	if (isnan(v))
	{
		snprintf(buf, len, "NaN");
		return;
	}
	if (isinf(v))
	{
		snprintf(buf, len, v > 0 ? "Infinity" : "-Infinity");
		return;
	}
	old = uselocale(loc);
	for (int prec = 1; prec <= 17; prec++)
	{
		snprintf(buf, len, "%.*g", prec, v);
		if (f4 ? strtof_l(buf, NULL, loc) == (float) v : strtod_l(buf, NULL, loc) == v)
			break;
	}
	uselocale(old);
}

/* ================================================================================
 * dates and timestamps
 *
 * Postgres's representations: a date is days since 2000-01-01 (int32; INT32_MIN and
 * INT32_MAX are -infinity and infinity), a timestamp microseconds since 2000-01-01
 * 00:00 (int64; INT64_MIN/INT64_MAX the infinities); timestamptz is UTC. Comparisons
 * across the three use a 128-bit key in microseconds, so that a date past the last
 * timestamp still sorts below infinity, as Postgres 15's cross-type comparisons do.
 * ================================================================================ */

#define USECS_PER_SEC	INT64_C(1000000)
#define USECS_PER_DAY	INT64_C(86400000000)
#define DATE_NOBEGIN	INT32_MIN
#define DATE_NOEND		INT32_MAX
#define TS_NOBEGIN		INT64_MIN
#define TS_NOEND		INT64_MAX
#define DATE_MIN		(-2451545)	/* 4714-11-24 BC, the first valid date */
#define DATE_END		2145031949	/* 5874898-01-01, the first invalid one */
#define TS_MIN			INT64_C(-211813488000000000)	/* 4714-11-24 00:00:00 BC */
#define TS_END			INT64_C(9223371331200000000)	/* 294277-01-01 00:00:00 */
#define UNIX_EPOCH_DAYS 10957		/* days from 1970-01-01 to 2000-01-01 */
#define KEY_INF			((i128) 1 << 100)

/* days_from_civil: days from 1970-01-01 to y-m-d (proleptic Gregorian, year 0 = 1 BC). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t		era,
				yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* civil_from_days is the inverse of days_from_civil. */
static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t		era,
				doe,
				yoe,
				doy,
				mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int) (doy - (153 * mp + 2) / 5 + 1);
	*m = (int) (mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int
days_in_month(int64_t y, int m)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool		leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : mdays[m - 1];
}

enum
{
	DT_OK = 0,					/* parsed */
	DT_SYNTAX,					/* not ISO 8601 (or not a date at all) */
	DT_FIELD,					/* a field out of range (Feb 30, 25:00) */
	DT_TZ,						/* an offset beyond +-15:59:59 */
	DT_RELATIVE					/* now, today, tomorrow, yesterday */
};

enum
{
	DTS_NONE = 0,				/* a date and maybe a time */
	DTS_INF,					/* infinity */
	DTS_NINF,					/* -infinity */
	DTS_EPOCH					/* epoch */
};

/* A date/time literal's fields, as written. */
typedef struct DtIn
{
	int			special;		/* DTS_* */
	int64_t		year;			/* as written, >= 1 (see bc) */
	int			mon;			/* 1..12 */
	int			day;			/* 1..31 */
	int			hour;			/* 0..24 */
	int			min;			/* 0..59 */
	int			sec;			/* 0..60 */
	int64_t		fsec;			/* microseconds, rounded (may be 1000000) */
	bool		has_tz;			/* an offset was given */
	int			tz;				/* the offset, seconds east of UTC */
	bool		bc;				/* BC era */
} DtIn;

/* digit_run: how many digits start at p (before end). */
static int
digit_run(const char *p, const char *end)
{
	int			n = 0;

	while (p + n < end && is_digit(p[n]))
		n++;
	return n;
}

static int64_t
digits_value(const char *p, int n)
{
	int64_t		v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (p[i] - '0');
	return v;
}

/*
 * dt_parse reads an ISO 8601 date/time: [Y]YYY-M[M]-D[D], then optionally ' ' or 'T' and
 * H[H]:M[M][:S[S][.fff]], an offset (Z, UTC, GMT, +H[H][[:]MM[[:]SS]]) after a time, and
 * BC/AD; or infinity, -infinity, epoch. Surrounding whitespace is allowed.
 */
static int
dt_parse(const char *s, locale_t loc, DtIn *d)
{
	const char *p = s,
			   *end;
	int			n;
	bool		has_time = false;

	memset(d, 0, sizeof(*d));
	while (is_space(*p))
		p++;
	end = p + strlen(p);
	while (end > p && is_space(end[-1]))
		end--;
	if (ci_equal(p, end - p, "infinity"))
		return d->special = DTS_INF, DT_OK;
	if (ci_equal(p, end - p, "-infinity"))
		return d->special = DTS_NINF, DT_OK;
	if (ci_equal(p, end - p, "epoch"))
		return d->special = DTS_EPOCH, DT_OK;
	if (ci_equal(p, end - p, "now") || ci_equal(p, end - p, "today") ||
		ci_equal(p, end - p, "tomorrow") || ci_equal(p, end - p, "yesterday"))
		return DT_RELATIVE;

	n = digit_run(p, end);
	if (n < 3 || n > 9)
		return DT_SYNTAX;
	d->year = digits_value(p, n);
	p += n;
	if (p >= end || *p++ != '-')
		return DT_SYNTAX;
	n = digit_run(p, end);
	if (n < 1 || n > 2)
		return DT_SYNTAX;
	d->mon = (int) digits_value(p, n);
	p += n;
	if (p >= end || *p++ != '-')
		return DT_SYNTAX;
	n = digit_run(p, end);
	if (n < 1 || n > 2)
		return DT_SYNTAX;
	d->day = (int) digits_value(p, n);
	p += n;

	/* the time */
	if (p < end && (*p == 'T' || *p == 't' || is_space(*p)))
	{
		const char *q = p + 1;

		if (is_space(*p))
			while (q < end && is_space(*q))
				q++;
		if (q < end && is_digit(*q))
		{
			p = q;
			has_time = true;
			n = digit_run(p, end);
			if (n < 1 || n > 2)
				return DT_SYNTAX;
			d->hour = (int) digits_value(p, n);
			p += n;
			if (p >= end || *p++ != ':')
				return DT_SYNTAX;
			n = digit_run(p, end);
			if (n < 1 || n > 2)
				return DT_SYNTAX;
			d->min = (int) digits_value(p, n);
			p += n;
			if (p < end && *p == ':')
			{
				p++;
				n = digit_run(p, end);
				if (n < 1 || n > 2)
					return DT_SYNTAX;
				d->sec = (int) digits_value(p, n);
				p += n;
				if (p < end && *p == '.')
				{
					char		frac[72];
					int			k;

					n = digit_run(p + 1, end);
					k = n > 64 ? 64 : n;
					frac[0] = '.';
					memcpy(frac + 1, p + 1, k);
					frac[k + 1] = '\0';
					d->fsec = k > 0 ? (int64_t) rint(strtod_l(frac, NULL, loc) * 1000000.0) : 0;
					p += 1 + n;
				}
			}
		}
	}

	/* the offset, after a time */
	if (has_time)
	{
		const char *q = p;

		while (q < end && is_space(*q))
			q++;
		if (q < end && (*q == 'Z' || *q == 'z') &&
			(q + 1 == end || !((q[1] | 0x20) >= 'a' && (q[1] | 0x20) <= 'z')))
		{
			d->has_tz = true;
			p = q + 1;
		}
		else if (end - q >= 3 && (ci_prefix(q, "UTC") || ci_prefix(q, "GMT")) &&
				 (q + 3 == end || !((q[3] | 0x20) >= 'a' && (q[3] | 0x20) <= 'z')))
		{
			d->has_tz = true;
			p = q + 3;
		}
		else if (q + 1 < end && (*q == '+' || *q == '-') && is_digit(q[1]))
		{
			int			sign = *q == '-' ? -1 : 1;
			int			h,
						m = 0,
						sec = 0;

			q++;
			n = digit_run(q, end);
			if (q + n < end && q[n] == ':')
			{
				if (n > 2)
					return DT_SYNTAX;
				h = (int) digits_value(q, n);
				q += n + 1;
				n = digit_run(q, end);
				if (n < 1 || n > 2)
					return DT_SYNTAX;
				m = (int) digits_value(q, n);
				q += n;
				if (q < end && *q == ':')
				{
					q++;
					n = digit_run(q, end);
					if (n < 1 || n > 2)
						return DT_SYNTAX;
					sec = (int) digits_value(q, n);
					q += n;
				}
			}
			else if (n == 1 || n == 2)
				h = (int) digits_value(q, n), q += n;
			else if (n == 4)
				h = (int) digits_value(q, 2), m = (int) digits_value(q + 2, 2), q += 4;
			else if (n == 6)
				h = (int) digits_value(q, 2), m = (int) digits_value(q + 2, 2),
					sec = (int) digits_value(q + 4, 2), q += 6;
			else
				return DT_SYNTAX;
			if (h > 15 || m > 59 || sec > 59)
				return DT_TZ;
			d->has_tz = true;
			d->tz = sign * (h * 3600 + m * 60 + sec);
			p = q;
		}
	}

	/* the era */
	{
		const char *q = p;

		while (q < end && is_space(*q))
			q++;
		if (end - q == 2 && (ci_equal(q, 2, "BC") || ci_equal(q, 2, "AD")))
		{
			d->bc = ascii_lower(*q) == 'b';
			p = end;
		}
	}
	if (p != end)
		return DT_SYNTAX;

	if (d->year < 1 || d->mon < 1 || d->mon > 12 ||
		d->day < 1 || d->day > days_in_month(d->bc ? 1 - d->year : d->year, d->mon))
		return DT_FIELD;
	if (d->hour > 24 || d->min > 59 || d->sec > 60 ||
		(d->hour == 24 && (d->min > 0 || d->sec > 0 || d->fsec > 0)) ||
		(d->sec == 60 && d->fsec > 0))
		return DT_FIELD;
	return DT_OK;
}

/* dt_days: the date of d as days since 2000-01-01; false when outside the date range. */
static bool
dt_days(const DtIn *d, int64_t *days)
{
	int64_t		y = d->bc ? 1 - d->year : d->year;

	*days = days_from_civil(y, d->mon, d->day) - UNIX_EPOCH_DAYS;
	return *days >= DATE_MIN && *days < DATE_END;
}

/* dt_date is date_in's result for parsed fields; false when out of range. */
static bool
dt_date(const DtIn *d, int32_t *out)
{
	int64_t		days;

	switch (d->special)
	{
		case DTS_INF:
			*out = DATE_NOEND;
			return true;
		case DTS_NINF:
			*out = DATE_NOBEGIN;
			return true;
		case DTS_EPOCH:
			*out = -UNIX_EPOCH_DAYS;
			return true;
	}
	if (!dt_days(d, &days))
		return false;
	*out = (int32_t) days;
	return true;
}

/* dt_timestamp is timestamp_in's (tz false) or timestamptz_in's (in UTC) result. */
static bool
dt_timestamp(const DtIn *d, bool tz, int64_t *out)
{
	int64_t		days;
	i128		t;

	switch (d->special)
	{
		case DTS_INF:
			*out = TS_NOEND;
			return true;
		case DTS_NINF:
			*out = TS_NOBEGIN;
			return true;
		case DTS_EPOCH:
			*out = -(int64_t) UNIX_EPOCH_DAYS * USECS_PER_DAY;
			return true;
	}
	if (!dt_days(d, &days))
		return false;
	t = (i128) days * USECS_PER_DAY +
		((i128) (d->hour * 60 + d->min) * 60 + d->sec) * USECS_PER_SEC + d->fsec;
	if (tz && d->has_tz)
		t -= (i128) d->tz * USECS_PER_SEC;
	if (t < TS_MIN || t >= TS_END)
		return false;
	*out = (int64_t) t;
	return true;
}

/* date_out is date_out with DateStyle ISO. */
static void
date_out(int32_t date, char *buf, size_t len)
{
	int64_t		y;
	int			m,
				d;

	if (date == DATE_NOBEGIN)
		snprintf(buf, len, "-infinity");
	else if (date == DATE_NOEND)
		snprintf(buf, len, "infinity");
	else
	{
		civil_from_days((int64_t) date + UNIX_EPOCH_DAYS, &y, &m, &d);
		snprintf(buf, len, "%04lld-%02d-%02d%s", (long long) (y > 0 ? y : 1 - y), m, d,
				 y > 0 ? "" : " BC");
	}
}

/* ts_out is timestamp_out (or timestamptz_out in UTC) with DateStyle ISO. */
static void
ts_out(int64_t t, bool tz, char *buf, size_t len)
{
	int64_t		days,
				rem,
				y;
	int			m,
				d,
				us;
	char		frac[16] = "";

	if (t == TS_NOBEGIN)
	{
		snprintf(buf, len, "-infinity");
		return;
	}
	if (t == TS_NOEND)
	{
		snprintf(buf, len, "infinity");
		return;
	}
	days = t / USECS_PER_DAY;
	rem = t % USECS_PER_DAY;
	if (rem < 0)
		rem += USECS_PER_DAY, days--;
	civil_from_days(days + UNIX_EPOCH_DAYS, &y, &m, &d);
	us = (int) (rem % USECS_PER_SEC);
	rem /= USECS_PER_SEC;
	if (us != 0)
	{
		int			k;

		snprintf(frac, sizeof(frac), ".%06d", us);
		k = (int) strlen(frac);
		while (frac[k - 1] == '0')
			frac[--k] = '\0';
	}
	snprintf(buf, len, "%04lld-%02d-%02d %02d:%02d:%02d%s%s%s", (long long) (y > 0 ? y : 1 - y), m, d,
			 (int) (rem / 3600), (int) (rem / 60 % 60), (int) (rem % 60), frac, tz ? "+00" : "",
			 y > 0 ? "" : " BC");
}

/* ts_round is timestamp(p)'s rounding (AdjustTimestampForTypmod); false when out of range. */
static bool
ts_round(int64_t *t, int prec)
{
	int64_t		scale = 1;

	if (*t == TS_NOBEGIN || *t == TS_NOEND || prec >= 6)
		return true;
	for (int i = prec; i < 6; i++)
		scale *= 10;
	if (*t >= 0)
		*t = ((*t + scale / 2) / scale) * scale;
	else
		*t = -((((-*t) + scale / 2) / scale) * scale);
	return *t >= TS_MIN && *t < TS_END;
}

static i128
date_key(int32_t d)
{
	if (d == DATE_NOBEGIN)
		return -KEY_INF;
	if (d == DATE_NOEND)
		return KEY_INF;
	return (i128) d * USECS_PER_DAY;
}

static i128
ts_key(int64_t t)
{
	if (t == TS_NOBEGIN)
		return -KEY_INF;
	if (t == TS_NOEND)
		return KEY_INF;
	return t;
}

/* ================================================================================
 * typed constants and casts
 * ================================================================================ */

/* A typed constant: a literal, a claim, or either after casts. */
typedef struct Datum
{
	uint8_t		ty;				/* its Ty */
	bool		isnull;			/* SQL NULL */
	union
	{
		bool		b;			/* bool */
		int64_t		i;			/* int2, int4, int8 */
		Dec			num;		/* numeric */
		double		f;			/* float8, or float4 (then exactly a float) */
		struct
		{
			const char *s;		/* NUL-terminated, in the arena */
			size_t		len;	/* its length */
		}			str;		/* text, varchar, bpchar, and unknown (the literal) */
		uint8_t		uuid[16];	/* uuid */
		int32_t		date;		/* date: days since 2000-01-01 */
		int64_t		ts;			/* timestamp, timestamptz: microseconds since 2000-01-01 */
	}			v;
} Datum;

#define ISO_HINT " (the gateway reads ISO 8601 date/time literals only: YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][+HH[:MM]])"

/* input_value is type t's input function on s; ctx is appended to error messages. */
static Datum
input_value(Compiler *c, Ty t, const char *s, int loc, const char *ctx)
{
	Datum		d;
	int			r;
	DtIn		dt;

	memset(&d, 0, sizeof(d));
	d.ty = t;
	switch (t)
	{
		case TY_BOOL:
			if (!bool_input(s, &d.v.b))
				input_fail(c, loc, "invalid input syntax for type boolean: \"%s\"%s", s, ctx);
			break;
		case TY_INT2:
		case TY_INT4:
		case TY_INT8:
			r = int_input(s, t, &d.v.i);
			if (r == IN_SYNTAX)
				input_fail(c, loc, "invalid input syntax for type %s: \"%s\"%s", types[t].name, s, ctx);
			if (r == IN_RANGE)
				input_fail(c, loc, "value \"%s\" is out of range for type %s%s", s, types[t].name, ctx);
			break;
		case TY_NUMERIC:
			d.v.num = dec_input(c, s, loc, ctx);
			break;
		case TY_FLOAT4:
		case TY_FLOAT8:
			r = float_input(s, t == TY_FLOAT4, c->e->loc, &d.v.f);
			if (r == IN_SYNTAX)
				input_fail(c, loc, "invalid input syntax for type %s: \"%s\"%s", types[t].name, s, ctx);
			if (r == IN_RANGE)
				input_fail(c, loc, "\"%s\" is out of range for type %s%s", s, types[t].name, ctx);
			break;
		case TY_UUID:
			if (!uuid_input(s, d.v.uuid))
				input_fail(c, loc, "invalid input syntax for type uuid: \"%s\"%s", s, ctx);
			break;
		case TY_DATE:
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			r = dt_parse(s, c->e->loc, &dt);
			if (r == DT_SYNTAX)
				input_fail(c, loc, "invalid input syntax for type %s: \"%s\"%s" ISO_HINT, types[t].name, s, ctx);
			if (r == DT_FIELD)
				input_fail(c, loc, "date/time field value out of range: \"%s\"%s", s, ctx);
			if (r == DT_TZ)
				input_fail(c, loc, "time zone displacement out of range: \"%s\"%s", s, ctx);
			if (r == DT_RELATIVE)
				input_fail(c, loc, "date/time literal \"%s\" is not supported by the gateway: it depends on the current time%s",
					 s, ctx);
			if (t == TY_DATE ? !dt_date(&dt, &d.v.date) : !dt_timestamp(&dt, t == TY_TIMESTAMPTZ, &d.v.ts))
				input_fail(c, loc, "%s out of range: \"%s\"%s", t == TY_DATE ? "date" : "timestamp", s, ctx);
			break;
		default:
			d.v.str.s = c_strndup(c, s, strlen(s));
			d.v.str.len = strlen(s);
			break;
	}
	return d;
}

/* output_text is the text an explicit cast to text gives (booltext for bool). */
static const char *
output_text(Compiler *c, const Datum *d)
{
	char		buf[64];

	switch (d->ty)
	{
		case TY_BOOL:
			return d->v.b ? "true" : "false";
		case TY_INT2:
		case TY_INT4:
		case TY_INT8:
			snprintf(buf, sizeof(buf), "%lld", (long long) d->v.i);
			break;
		case TY_NUMERIC:
			return dec_out(c, &d->v.num, -1);
		case TY_FLOAT4:
		case TY_FLOAT8:
			float_out(d->v.f, d->ty == TY_FLOAT4, c->e->loc, buf, sizeof(buf));
			break;
		case TY_UUID:
			uuid_out(d->v.uuid, buf);
			break;
		case TY_DATE:
			date_out(d->v.date, buf, sizeof(buf));
			break;
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			ts_out(d->v.ts, d->ty == TY_TIMESTAMPTZ, buf, sizeof(buf));
			break;
		default:
			return d->v.str.s;
	}
	return c_strndup(c, buf, strlen(buf));
}

/* The type modifiers: varchar(n)/char(n) n; numeric(p,s) p << 16 | s; timestamp(p) p. */
#define TYPMOD_NUMERIC(p, s)	((int32_t) (((uint32_t) (p) << 16) | ((uint32_t) (s) & 0xFFFF)))
#define TYPMOD_PREC(t)			((int) ((t) >> 16))
#define TYPMOD_SCALE(t)			((int) (int16_t) ((t) & 0xFFFF))

/* apply_typmod is the length coercion of an explicit cast (varchar(n), char(n), ...). */
static Datum
apply_typmod(Compiler *c, Datum d, int32_t typmod, int loc)
{
	size_t		nchars,
				keep;

	if (typmod < 0 || d.isnull)
		return d;
	switch (d.ty)
	{
		case TY_VARCHAR:
			if (utf8_chars(d.v.str.s, d.v.str.len) > (size_t) typmod)
			{
				keep = utf8_prefix(d.v.str.s, d.v.str.len, typmod);
				d.v.str.s = c_strndup(c, d.v.str.s, keep);
				d.v.str.len = keep;
			}
			break;
		case TY_BPCHAR:
			nchars = utf8_chars(d.v.str.s, d.v.str.len);
			if (nchars > (size_t) typmod)
			{
				keep = utf8_prefix(d.v.str.s, d.v.str.len, typmod);
				d.v.str.s = c_strndup(c, d.v.str.s, keep);
				d.v.str.len = keep;
			}
			else if (nchars < (size_t) typmod)
			{
				size_t		pad = (size_t) typmod - nchars;
				char	   *s = c_alloc(c, d.v.str.len + pad + 1);

				memcpy(s, d.v.str.s, d.v.str.len);
				memset(s + d.v.str.len, ' ', pad);
				d.v.str.s = s;
				d.v.str.len += pad;
			}
			break;
		case TY_NUMERIC:
			{
				int			p = TYPMOD_PREC(typmod),
							s = TYPMOD_SCALE(typmod);

				if (d.v.num.special == DEC_NAN)
					break;
				if (d.v.num.special != DEC_NUM)
					plan_fail(c, loc, "numeric field overflow: a field with precision %d, scale %d cannot hold an infinite value",
						 p, s);
				d.v.num = dec_round(c, &d.v.num, s);
				if (!dec_is_zero(&d.v.num) && d.v.num.weight > p - s)
					plan_fail(c, loc, "numeric field overflow: a field with precision %d, scale %d must round to an absolute value less than 10^%d",
						 p, s, p - s);
				break;
			}
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			if (!ts_round(&d.v.ts, typmod))
				plan_fail(c, loc, "timestamp out of range");
			break;
		default:
			break;
	}
	return d;
}

/* implicit_ok: whether Postgres casts from to to implicitly (pg_cast castcontext 'i'). */
static bool
implicit_ok(Ty from, Ty to)
{
	if (from == to || from == TY_UNKNOWN)
		return true;
	switch (from)
	{
		case TY_INT2:
			return to == TY_INT4 || to == TY_INT8 || to == TY_NUMERIC || to == TY_FLOAT4 || to == TY_FLOAT8;
		case TY_INT4:
			return to == TY_INT8 || to == TY_NUMERIC || to == TY_FLOAT4 || to == TY_FLOAT8;
		case TY_INT8:
			return to == TY_NUMERIC || to == TY_FLOAT4 || to == TY_FLOAT8;
		case TY_NUMERIC:
			return to == TY_FLOAT4 || to == TY_FLOAT8;
		case TY_FLOAT4:
			return to == TY_FLOAT8;
		case TY_TEXT:
		case TY_VARCHAR:
		case TY_BPCHAR:
			return ty_is_string(to);
		case TY_DATE:
			return to == TY_TIMESTAMP || to == TY_TIMESTAMPTZ;
		case TY_TIMESTAMP:
			return to == TY_TIMESTAMPTZ;
		default:
			return false;
	}
}

/* dec_to_int converts numeric to an integer type as numeric_int2/4/8 do. */
static int64_t
dec_to_int(Compiler *c, const Dec *num, Ty to, int loc)
{
	Dec			r;
	uint64_t	acc = 0;
	uint64_t	limit = to == TY_INT2 ? 32768u : to == TY_INT4 ? 2147483648u : (uint64_t) 1 << 63;

	if (num->special == DEC_NAN)
		plan_fail(c, loc, "cannot convert NaN to %s", types[to].name);
	if (num->special != DEC_NUM)
		plan_fail(c, loc, "cannot convert infinity to %s", types[to].name);
	r = dec_round(c, num, 0);
	if (dec_is_zero(&r))
		return 0;
	if (r.weight > 19)
		plan_fail(c, loc, "%s out of range", types[to].name);
	for (int32_t i = 0; i < r.weight; i++)
	{
		acc = acc * 10 + (uint64_t) ((i < dec_ndigits(&r) ? dec_digit(&r, i) : '0') - '0');
		if (acc > limit)
			plan_fail(c, loc, "%s out of range", types[to].name);
	}
	if (!r.neg && acc == limit)
		plan_fail(c, loc, "%s out of range", types[to].name);
	return r.neg ? (int64_t) (0 - acc) : (int64_t) acc;
}

/*
 * coerce converts a constant to type to, as an explicit cast (explicit: every cast
 * Postgres has from the literal types, I/O conversion to and from text) or an implicit
 * one (an operator's argument, an IN list's common type); typmod is the target's type
 * modifier (-1 none). ctx is appended to error messages (which claim a value came from).
 */
static Datum
coerce(Compiler *c, Datum in, Ty to, int32_t typmod, bool explicit, int loc, const char *ctx)
{
	Ty			from = (Ty) in.ty;
	Datum		out;

	memset(&out, 0, sizeof(out));
	out.ty = to;
	if (!explicit && !implicit_ok(from, to))
		fail(c, loc, "cannot cast type %s to %s", types[from].name, types[to].name);
	if (in.isnull)
	{
		out.isnull = true;
		return out;
	}
	if (from == to)
		return apply_typmod(c, in, typmod, loc);
	if (from == TY_UNKNOWN)
		return apply_typmod(c, input_value(c, to, in.v.str.s, loc, ctx), typmod, loc);
	if (ty_is_string(from))
	{
		if (ty_is_string(to))
		{
			out.v.str = in.v.str;
			if (from == TY_BPCHAR)
			{
				out.v.str.len = rtrim_len(in.v.str.s, in.v.str.len);
				out.v.str.s = c_strndup(c, in.v.str.s, out.v.str.len);
			}
			return apply_typmod(c, out, typmod, loc);
		}
		return apply_typmod(c, input_value(c, to, in.v.str.s, loc, ctx), typmod, loc);
	}
	if (ty_is_string(to))
	{
		out.v.str.s = output_text(c, &in);
		out.v.str.len = strlen(out.v.str.s);
		return apply_typmod(c, out, typmod, loc);
	}
	if (ty_is_number(from) && ty_is_number(to))
	{
		if (ty_is_int(from))
		{
			if (ty_is_int(to))
			{
				if ((to == TY_INT2 && (in.v.i < INT16_MIN || in.v.i > INT16_MAX)) ||
					(to == TY_INT4 && (in.v.i < INT32_MIN || in.v.i > INT32_MAX)))
					plan_fail(c, loc, "%s out of range", types[to].name);
				out.v.i = in.v.i;
			}
			else if (to == TY_NUMERIC)
				out.v.num = dec_from_int(c, in.v.i);
			else if (to == TY_FLOAT4)
				out.v.f = (float) in.v.i;
			else
				out.v.f = (double) in.v.i;
			return apply_typmod(c, out, typmod, loc);
		}
		if (from == TY_NUMERIC)
		{
			if (ty_is_int(to))
			{
				out.v.i = dec_to_int(c, &in.v.num, to, loc);
				return out;
			}
			switch (in.v.num.special)
			{
				case DEC_NAN:
					out.v.f = NAN;
					break;
				case DEC_PINF:
					out.v.f = INFINITY;
					break;
				case DEC_NINF:
					out.v.f = -INFINITY;
					break;
				default:
					{
						const char *s = dec_out(c, &in.v.num, -1);

						if (float_input(s, to == TY_FLOAT4, c->e->loc, &out.v.f) != IN_OK)
							plan_fail(c, loc, "\"%s\" is out of range for type %s", s, types[to].name);
					}
			}
			return out;
		}
		if (from == TY_FLOAT4 && to == TY_FLOAT8)
		{
			out.v.f = in.v.f;
			return out;
		}
	}
	if (from == TY_INT4 && to == TY_BOOL)
	{
		out.v.b = in.v.i != 0;
		return out;
	}
	if (from == TY_BOOL && to == TY_INT4)
	{
		out.v.i = in.v.b ? 1 : 0;
		return out;
	}
	if (from == TY_DATE && (to == TY_TIMESTAMP || to == TY_TIMESTAMPTZ))
	{
		if (in.v.date == DATE_NOBEGIN)
			out.v.ts = TS_NOBEGIN;
		else if (in.v.date == DATE_NOEND)
			out.v.ts = TS_NOEND;
		else if ((i128) in.v.date * USECS_PER_DAY >= TS_END)
			plan_fail(c, loc, "date out of range for timestamp");
		else
			out.v.ts = (int64_t) in.v.date * USECS_PER_DAY;
		return apply_typmod(c, out, typmod, loc);
	}
	if (from == TY_TIMESTAMP && to == TY_TIMESTAMPTZ)
	{
		out.v.ts = in.v.ts;		/* the session's time zone is UTC */
		return apply_typmod(c, out, typmod, loc);
	}
	fail(c, loc, "cannot cast type %s to %s", types[from].name, types[to].name);
}

/*
 * lazy_coerce is coerce() for a constant Postgres casts in the planner, or (claim_ctx
 * not NULL) for a claim, which Postgres casts per row: an error that Postgres raises
 * only when it folds (or runs) the cast comes back in *poison (and the value is a NULL
 * of type to) instead of failing the compilation.
 */
static Datum
lazy_coerce(Compiler *c, Datum in, Ty to, int32_t typmod, bool explicit, int loc, const char *claim_ctx,
			const char **poison, int *poison_loc)
{
	jmp_buf		jb;
	jmp_buf    *saved = c->lazy;
	Datum		out;

	*poison = NULL;
	c->lazy = &jb;
	c->lazy_input = claim_ctx != NULL;
	c->claim_ctx = claim_ctx;
	if (setjmp(jb) != 0)
	{
		c->lazy = saved;
		c->lazy_input = false;
		c->claim_ctx = NULL;
		*poison = c_strndup(c, c->lazy_msg, strlen(c->lazy_msg));
		*poison_loc = c->lazy_loc;
		memset(&out, 0, sizeof(out));
		out.ty = to;
		out.isnull = true;
		return out;
	}
	out = coerce(c, in, to, typmod, explicit, loc, claim_ctx != NULL ? claim_ctx : "");
	c->lazy = saved;
	c->lazy_input = false;
	c->claim_ctx = NULL;
	return out;
}

/* ================================================================================
 * type resolution
 *
 * What Postgres 15's operator resolution (oper_select_candidate over pg_operator)
 * and select_common_type pick for the 14 types, checked exhaustively against a server
 * by test/gateway/expr_diff.c.
 * ================================================================================ */

/*
 * resolve_cmp gives the argument types of the comparison operator (= <> < <= > >=)
 * Postgres picks for inputs l and r; false when there is none.
 */
static bool
resolve_cmp(Ty l, Ty r, Ty *al, Ty *ar)
{
	if (l == TY_OTHER || r == TY_OTHER)
		return false;
	if (l == TY_UNKNOWN && r == TY_UNKNOWN)
		l = r = TY_TEXT;
	else if (l == TY_UNKNOWN)
		l = r == TY_VARCHAR ? TY_TEXT : r;
	else if (r == TY_UNKNOWN)
		r = l == TY_VARCHAR ? TY_TEXT : l;
	if (types[l].category != types[r].category)
		return false;
	*al = l;
	*ar = r;
	switch (types[l].category)
	{
		case 'N':
			if (l == TY_FLOAT4 || l == TY_FLOAT8 || r == TY_FLOAT4 || r == TY_FLOAT8)
			{
				*al = l == TY_FLOAT4 ? TY_FLOAT4 : TY_FLOAT8;
				*ar = r == TY_FLOAT4 ? TY_FLOAT4 : TY_FLOAT8;
			}
			else if (l == TY_NUMERIC || r == TY_NUMERIC)
				*al = *ar = TY_NUMERIC;
			return true;
		case 'S':
			if ((l == TY_BPCHAR && r != TY_TEXT) || (r == TY_BPCHAR && l != TY_TEXT))
				*al = *ar = TY_BPCHAR;
			else
				*al = *ar = TY_TEXT;
			return true;
		default:
			return true;
	}
}

/* resolve_like gives the argument types of ~~ / ~~* for inputs l and r. */
static bool
resolve_like(Ty l, Ty r, Ty *al, Ty *ar)
{
	if (!(l == TY_UNKNOWN || ty_is_string(l)) || !(r == TY_UNKNOWN || ty_is_string(r)))
		return false;
	*al = l == TY_BPCHAR ? TY_BPCHAR : TY_TEXT;
	*ar = TY_TEXT;
	return true;
}

/*
 * select_common is select_common_type (without a context: -1 when the categories
 * differ) followed by verify_common_type, for an IN list: t[0] the left side's type.
 */
static int
select_common(const Ty *t, int n)
{
	Ty			ptype = t[0];
	bool		same = ptype != TY_UNKNOWN;

	for (int i = 1; i < n && same; i++)
		same = t[i] == ptype;
	if (same)
		return ptype;
	for (int i = 1; i < n; i++)
	{
		Ty			nt = t[i];

		if (nt == TY_UNKNOWN || nt == ptype)
			continue;
		if (ptype == TY_UNKNOWN)
			ptype = nt;
		else if (types[nt].category != types[ptype].category)
			return -1;
		else if (!types[ptype].preferred && implicit_ok(ptype, nt) && !implicit_ok(nt, ptype))
			ptype = nt;
	}
	if (ptype == TY_UNKNOWN)
		ptype = TY_TEXT;
	for (int i = 0; i < n; i++)
		if (!implicit_ok(t[i], ptype))
			return -1;
	return ptype;
}

/* ================================================================================
 * the compiled tree
 * ================================================================================ */

/* The domain a comparison is done in, decided by the operator's argument types. */
typedef enum Dom
{
	DOM_BOOL,					/* false < true */
	DOM_EXACT,					/* int2/int4/int8/numeric as decimals */
	DOM_FLOAT,					/* double, NaN above everything */
	DOM_TEXT,					/* bytes (C collation) */
	DOM_UUID,					/* 16 bytes */
	DOM_TIME					/* date/timestamp/timestamptz as a 128-bit key */
} Dom;

static Dom
dom_of(Ty t)
{
	switch (t)
	{
		case TY_BOOL:
			return DOM_BOOL;
		case TY_INT2:
		case TY_INT4:
		case TY_INT8:
		case TY_NUMERIC:
			return DOM_EXACT;
		case TY_FLOAT4:
		case TY_FLOAT8:
			return DOM_FLOAT;
		case TY_UUID:
			return DOM_UUID;
		case TY_DATE:
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			return DOM_TIME;
		default:
			return DOM_TEXT;
	}
}

/* A value in a domain. */
typedef struct DVal
{
	bool		null;			/* SQL NULL */
	union
	{
		ExprBool	b;			/* DOM_BOOL */
		Dec			d;			/* DOM_EXACT */
		double		f;			/* DOM_FLOAT */
		struct
		{
			const char *s;		/* not NUL-terminated at len */
			size_t		len;	/* bytes */
		}			t;			/* DOM_TEXT */
		uint8_t		u[16];		/* DOM_UUID */
		i128		k;			/* DOM_TIME */
	}			v;
} DVal;

enum
{
	OPD_COL,					/* a column */
	OPD_CONST,					/* a constant */
	OPD_SUB						/* a boolean subexpression */
};

/* One side of a comparison, LIKE, IN or IS NULL. */
typedef struct Operand
{
	uint8_t		kind;			/* OPD_COL, OPD_CONST, OPD_SUB */
	uint8_t		src;			/* OPD_COL: the column's type */
	uint8_t		arg;			/* the operator's argument type the operand is converted to */
	uint8_t		rtrim;			/* DOM_TEXT: trailing spaces do not count (bpchar) */
	int			col;			/* OPD_COL: the column's index */
	struct Node *sub;			/* OPD_SUB: the subexpression */
	uint8_t		stable;			/* OPD_CONST: from a claim (Postgres does not fold it) */
	Datum		cval;			/* OPD_CONST: the constant, of type arg (for canonical text) */
	DVal		dv;				/* OPD_CONST: the constant in the domain (for evaluation) */
	const char *poison;			/* OPD_CONST: a cast that fails when folded (see plan_fail) */
	int			poison_loc;		/* its location */
	uint8_t		poison_runtime; /* the cast is of a claim: Postgres runs it per row */
} Operand;

enum
{
	CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE
};

static const char *const cmp_names[] = {"=", "<>", "<", "<=", ">", ">="};

typedef enum NodeKind
{
	N_CONST,					/* a boolean constant */
	N_COLBOOL,					/* a bool column alone */
	N_AND,						/* args[0] AND args[1] AND ... */
	N_OR,						/* args[0] OR ... */
	N_NOT,						/* NOT args[0] */
	N_NULLTEST,					/* l IS [NOT] NULL */
	N_CMP,						/* l op r */
	N_LIKE,						/* l [NOT] [I]LIKE r */
	N_IN						/* l [NOT] IN (items): op = ANY / <> ALL */
} NodeKind;

typedef struct Node
{
	uint8_t		kind;			/* NodeKind */
	uint8_t		op;				/* N_CMP, N_IN: CMP_* */
	uint8_t		dom;			/* N_CMP, N_IN: the domain (Dom) */
	uint8_t		neg;			/* N_NULLTEST: IS NOT NULL; N_LIKE: NOT LIKE; N_IN: NOT IN */
	uint8_t		icase;			/* N_LIKE: ILIKE */
	ExprBool	cval;			/* N_CONST: the value */
	int			col;			/* N_COLBOOL: the column */
	int			nargs;			/* N_AND, N_OR, N_NOT: number of args */
	struct Node **args;			/* N_AND, N_OR, N_NOT: [nargs] */
	Operand    *l;				/* N_NULLTEST, N_CMP, N_LIKE, N_IN: the left side */
	Operand    *r;				/* N_CMP, N_LIKE: the right side */
	int			nitems;			/* N_IN: list length */
	Operand    *items;			/* N_IN: [nitems] constants */
} Node;

static ExprBool eval_node(const Expr *e, const Node *n, const char *const *values);

/* operand_dval reads an operand in domain dom into *out; false when it is NULL. */
static bool
operand_dval(const Expr *e, const Operand *o, Dom dom, const char *const *values, DVal *out)
{
	const char *s;

	if (o->kind == OPD_CONST)
	{
		*out = o->dv;
		return !o->dv.null;
	}
	if (o->kind == OPD_SUB)
	{
		ExprBool	b = eval_node(e, o->sub, values);

		out->v.b = b;
		return b != EXPR_NULL;
	}
	s = values != NULL ? values[o->col] : NULL;
	if (s == NULL)
		return false;
	switch (dom)
	{
		case DOM_BOOL:
			{
				bool		b;

				if (s[0] == 't' && s[1] == '\0')
					b = true;
				else if (s[0] == 'f' && s[1] == '\0')
					b = false;
				else if (!bool_input(s, &b))
					return false;
				out->v.b = b ? EXPR_TRUE : EXPR_FALSE;
				return true;
			}
		case DOM_EXACT:
			return dec_read_output(s, &out->v.d);
		case DOM_FLOAT:
			return float_input(s, o->src == TY_FLOAT4, e->loc, &out->v.f) == IN_OK;
		case DOM_TEXT:
			out->v.t.s = s;
			out->v.t.len = strlen(s);
			if (o->rtrim)
				out->v.t.len = rtrim_len(s, out->v.t.len);
			return true;
		case DOM_UUID:
			return uuid_input(s, out->v.u);
		case DOM_TIME:
			{
				DtIn		dt;
				int32_t		d;
				int64_t		t;

				if (dt_parse(s, e->loc, &dt) != DT_OK)
					return false;
				if (o->src == TY_DATE)
				{
					if (!dt_date(&dt, &d))
						return false;
					out->v.k = date_key(d);
				}
				else
				{
					if (!dt_timestamp(&dt, o->src == TY_TIMESTAMPTZ, &t))
						return false;
					out->v.k = ts_key(t);
				}
				return true;
			}
	}
	return false;
}

/* dval_cmp orders two values of a domain as Postgres's comparison functions do. */
static int
dval_cmp(Dom dom, const DVal *a, const DVal *b)
{
	switch (dom)
	{
		case DOM_BOOL:
			return (int) a->v.b - (int) b->v.b;
		case DOM_EXACT:
			return dec_cmp(&a->v.d, &b->v.d);
		case DOM_FLOAT:
			if (isnan(a->v.f))
				return isnan(b->v.f) ? 0 : 1;
			if (isnan(b->v.f))
				return -1;
			return a->v.f < b->v.f ? -1 : a->v.f > b->v.f ? 1 : 0;
		case DOM_TEXT:
			{
				size_t		n = a->v.t.len < b->v.t.len ? a->v.t.len : b->v.t.len;
				int			r = n > 0 ? memcmp(a->v.t.s, b->v.t.s, n) : 0;

				if (r != 0)
					return r < 0 ? -1 : 1;
				return a->v.t.len < b->v.t.len ? -1 : a->v.t.len > b->v.t.len ? 1 : 0;
			}
		case DOM_UUID:
			{
				int			r = memcmp(a->v.u, b->v.u, 16);

				return r < 0 ? -1 : r > 0 ? 1 : 0;
			}
		case DOM_TIME:
			return a->v.k < b->v.k ? -1 : a->v.k > b->v.k ? 1 : 0;
	}
	return 0;
}

static ExprBool
cmp_result(int op, int c)
{
	bool		r;

	switch (op)
	{
		case CMP_EQ:
			r = c == 0;
			break;
		case CMP_NE:
			r = c != 0;
			break;
		case CMP_LT:
			r = c < 0;
			break;
		case CMP_LE:
			r = c <= 0;
			break;
		case CMP_GT:
			r = c > 0;
			break;
		default:
			r = c >= 0;
			break;
	}
	return r ? EXPR_TRUE : EXPR_FALSE;
}

static ExprBool like_eval(const Expr *e, const Node *n, const char *const *values);

static ExprBool
eval_node(const Expr *e, const Node *n, const char *const *values)
{
	switch (n->kind)
	{
		case N_CONST:
			return n->cval;
		case N_COLBOOL:
			{
				const char *s = values != NULL ? values[n->col] : NULL;
				bool		b;

				if (s == NULL)
					return EXPR_NULL;
				if (s[0] == 't' && s[1] == '\0')
					return EXPR_TRUE;
				if (s[0] == 'f' && s[1] == '\0')
					return EXPR_FALSE;
				if (!bool_input(s, &b))
					return EXPR_NULL;
				return b ? EXPR_TRUE : EXPR_FALSE;
			}
		case N_AND:
		case N_OR:
			{
				ExprBool	stop = n->kind == N_AND ? EXPR_FALSE : EXPR_TRUE;
				bool		sawnull = false;

				for (int i = 0; i < n->nargs; i++)
				{
					ExprBool	v = eval_node(e, n->args[i], values);

					if (v == stop)
						return stop;
					if (v == EXPR_NULL)
						sawnull = true;
				}
				if (sawnull)
					return EXPR_NULL;
				return stop == EXPR_FALSE ? EXPR_TRUE : EXPR_FALSE;
			}
		case N_NOT:
			{
				ExprBool	v = eval_node(e, n->args[0], values);

				return v == EXPR_NULL ? EXPR_NULL : v == EXPR_TRUE ? EXPR_FALSE : EXPR_TRUE;
			}
		case N_NULLTEST:
			{
				const Operand *o = n->l;
				bool		isnull;

				if (o->kind == OPD_COL)
					isnull = values == NULL || values[o->col] == NULL;
				else if (o->kind == OPD_CONST)
					isnull = o->cval.isnull;
				else
					isnull = eval_node(e, o->sub, values) == EXPR_NULL;
				return isnull != (n->neg != 0) ? EXPR_TRUE : EXPR_FALSE;
			}
		case N_CMP:
			{
				DVal		a,
							b;

				if (!operand_dval(e, n->l, (Dom) n->dom, values, &a) ||
					!operand_dval(e, n->r, (Dom) n->dom, values, &b))
					return EXPR_NULL;
				return cmp_result(n->op, dval_cmp((Dom) n->dom, &a, &b));
			}
		case N_LIKE:
			return like_eval(e, n, values);
		case N_IN:
			{
				/* = ANY (IN) is an OR of the comparisons, <> ALL (NOT IN) an AND. */
				bool		use_or = n->op == CMP_EQ;
				bool		sawnull = false;
				DVal		a,
							b;

				if (!operand_dval(e, n->l, (Dom) n->dom, values, &a))
					return n->nitems > 0 ? EXPR_NULL : (use_or ? EXPR_FALSE : EXPR_TRUE);
				for (int i = 0; i < n->nitems; i++)
				{
					ExprBool	r;

					if (!operand_dval(e, &n->items[i], (Dom) n->dom, values, &b))
					{
						sawnull = true;
						continue;
					}
					r = cmp_result(n->op, dval_cmp((Dom) n->dom, &a, &b));
					if (use_or && r == EXPR_TRUE)
						return EXPR_TRUE;
					if (!use_or && r == EXPR_FALSE)
						return EXPR_FALSE;
				}
				if (sawnull)
					return EXPR_NULL;
				return use_or ? EXPR_FALSE : EXPR_TRUE;
			}
	}
	return EXPR_NULL;
}

/* ================================================================================
 * LIKE
 *
 * The matcher follows Postgres's like_match.c for UTF-8 step by step (the same search,
 * so that it gives up, and raises "LIKE pattern must not end with escape character",
 * in the same places): % and _ wildcards, backslash escapes, comparison byte by byte,
 * _ stepping over whole characters.
 * ================================================================================ */

enum
{
	LIKE_FALSE,					/* no match */
	LIKE_TRUE,					/* match */
	LIKE_ABORT,					/* no match here, nor at any later start */
	LIKE_ERROR					/* Postgres would raise an error */
};

#define LIKE_MAX_DEPTH	256		/* % groups a pattern may nest */

static void
utf8_next(const char **t, size_t *tlen)
{
	(*t)++;
	(*tlen)--;
	while (*tlen > 0 && ((unsigned char) **t & 0xC0) == 0x80)
	{
		(*t)++;
		(*tlen)--;
	}
}

static int
like_match(const char *t, size_t tlen, const char *p, size_t plen, int depth)
{
	if (plen == 1 && *p == '%')
		return LIKE_TRUE;
	if (depth > LIKE_MAX_DEPTH)
		return LIKE_ERROR;
	while (tlen > 0 && plen > 0)
	{
		if (*p == '\\')
		{
			p++, plen--;
			if (plen == 0)
				return LIKE_ERROR;
			if (*p != *t)
				return LIKE_FALSE;
		}
		else if (*p == '%')
		{
			char		first;

			p++, plen--;
			while (plen > 0)
			{
				if (*p == '%')
					p++, plen--;
				else if (*p == '_')
				{
					if (tlen == 0)
						return LIKE_ABORT;
					utf8_next(&t, &tlen);
					p++, plen--;
				}
				else
					break;
			}
			if (plen == 0)
				return LIKE_TRUE;
			if (*p == '\\')
			{
				if (plen < 2)
					return LIKE_ERROR;
				first = p[1];
			}
			else
				first = *p;
			while (tlen > 0)
			{
				if (*t == first)
				{
					int			m = like_match(t, tlen, p, plen, depth + 1);

					if (m != LIKE_FALSE)
						return m;
				}
				utf8_next(&t, &tlen);
			}
			return LIKE_ABORT;
		}
		else if (*p == '_')
		{
			utf8_next(&t, &tlen);
			p++, plen--;
			continue;
		}
		else if (*p != *t)
			return LIKE_FALSE;
		t++, tlen--;
		p++, plen--;
	}
	if (tlen > 0)
		return LIKE_FALSE;
	while (plen > 0 && *p == '%')
		p++, plen--;
	return plen == 0 ? LIKE_TRUE : LIKE_ABORT;
}

/* pattern_ends_in_escape: whether a pattern ends with an unescaped backslash. */
static bool
pattern_ends_in_escape(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] == '\\')
		{
			if (i + 1 == len)
				return true;
			i++;
		}
	return false;
}

/* pattern_groups: the number of % groups (the matcher's deepest recursion). */
static int
pattern_groups(const char *p, size_t len)
{
	int			n = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (p[i] == '\\')
			i++;
		else if (p[i] == '%' && (i == 0 || p[i - 1] != '%'))
			n++;
	}
	return n;
}

static void
utf8_put(char *out, size_t *o, uint32_t cp)
{
	if (cp < 0x80)
		out[(*o)++] = (char) cp;
	else if (cp < 0x800)
	{
		out[(*o)++] = (char) (0xC0 | (cp >> 6));
		out[(*o)++] = (char) (0x80 | (cp & 0x3F));
	}
	else if (cp < 0x10000)
	{
		out[(*o)++] = (char) (0xE0 | (cp >> 12));
		out[(*o)++] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[(*o)++] = (char) (0x80 | (cp & 0x3F));
	}
	else
	{
		out[(*o)++] = (char) (0xF0 | (cp >> 18));
		out[(*o)++] = (char) (0x80 | ((cp >> 12) & 0x3F));
		out[(*o)++] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[(*o)++] = (char) (0x80 | (cp & 0x3F));
	}
}

/*
 * lower_text writes s[0..len) lowercased into out (room for 2 * len + 4 bytes) and
 * returns the length: towlower per character in the C.UTF-8 locale, as Postgres's
 * lower() does in a C.UTF-8 database (ASCII only without that locale).
 */
static size_t
lower_text(const Expr *e, const char *s, size_t len, char *out)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0,
				o = 0;

	while (i < len)
	{
		unsigned char b = p[i];
		size_t		n;
		uint32_t	cp;

		if (b < 0x80 && !e->loc_utf8)
		{
			out[o++] = ascii_lower((char) b);
			i++;
			continue;
		}
		if (b < 0x80)
			n = 1;
		else
			n = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
		if (n == 0 || len - i < n)
		{
			out[o++] = (char) b;
			i++;
			continue;
		}
		cp = n == 1 ? b : b & (0xFF >> (n + 1));
		for (size_t k = 1; k < n; k++)
			cp = (cp << 6) | (p[i + k] & 0x3F);
		if (e->loc_utf8)
		{
			wint_t		lw = towlower_l((wint_t) cp, e->loc);

			if (lw <= 0x10FFFF && !(lw >= 0xD800 && lw <= 0xDFFF) && lw != 0)
				cp = (uint32_t) lw;
		}
		utf8_put(out, &o, cp);
		i += n;
	}
	return o;
}

static ExprBool
like_eval(const Expr *e, const Node *n, const char *const *values)
{
	DVal		a,
				b;
	char		abuf[256],
				bbuf[256];
	char	   *ta = NULL,
			   *tb = NULL;
	int			m;

	if (!operand_dval(e, n->l, DOM_TEXT, values, &a) || !operand_dval(e, n->r, DOM_TEXT, values, &b))
		return EXPR_NULL;
	if (n->icase)
	{
		/* constants were lowercased when compiled */
		if (n->l->kind != OPD_CONST)
		{
			ta = a.v.t.len * 2 + 4 <= sizeof(abuf) ? abuf : malloc(a.v.t.len * 2 + 4);
			if (ta == NULL)
				return EXPR_NULL;
			a.v.t.len = lower_text(e, a.v.t.s, a.v.t.len, ta);
			a.v.t.s = ta;
		}
		if (n->r->kind != OPD_CONST)
		{
			tb = b.v.t.len * 2 + 4 <= sizeof(bbuf) ? bbuf : malloc(b.v.t.len * 2 + 4);
			if (tb == NULL)
			{
				if (ta != abuf)
					free(ta);
				return EXPR_NULL;
			}
			b.v.t.len = lower_text(e, b.v.t.s, b.v.t.len, tb);
			b.v.t.s = tb;
		}
	}
	m = like_match(a.v.t.s, a.v.t.len, b.v.t.s, b.v.t.len, 0);
	if (ta != NULL && ta != abuf)
		free(ta);
	if (tb != NULL && tb != bbuf)
		free(tb);
	if (m == LIKE_ERROR)
		return EXPR_NULL;
	return (m == LIKE_TRUE) != (n->neg != 0) ? EXPR_TRUE : EXPR_FALSE;
}

/* ================================================================================
 * the subset: the same walk as extension/predicate.c, over libpg_query's tree
 * ================================================================================ */

#define N_(x) PG_QUERY__NODE__NODE_##x

static const char *
str_node(const PgQuery__Node *n)
{
	if (n == NULL || n->node_case != N_(STRING) || n->string == NULL || n->string->sval == NULL)
		return NULL;
	return n->string->sval;
}

static bool
str_node_is(const PgQuery__Node *n, const char *s)
{
	const char *v = str_node(n);

	return v != NULL && strcmp(v, s) == 0;
}

/* node_location is exprLocation for the nodes the walk meets; -1 when unknown. */
static int
node_location(const PgQuery__Node *n)
{
	if (n == NULL)
		return -1;
	switch (n->node_case)
	{
		case N_(A_EXPR):
			return n->a_expr->location;
		case N_(BOOL_EXPR):
			return n->bool_expr->location;
		case N_(NULL_TEST):
			return n->null_test->location;
		case N_(COLUMN_REF):
			return n->column_ref->location;
		case N_(A_CONST):
			return n->a_const->location;
		case N_(TYPE_CAST):
			return n->type_cast->location;
		case N_(FUNC_CALL):
			return n->func_call->location;
		case N_(SUB_LINK):
			return n->sub_link->location;
		case N_(BOOLEAN_TEST):
			return n->boolean_test->location;
		case N_(CASE_EXPR):
			return n->case_expr->location;
		case N_(COALESCE_EXPR):
			return n->coalesce_expr->location;
		case N_(PARAM_REF):
			return n->param_ref->location;
		case N_(A_ARRAY_EXPR):
			return n->a_array_expr->location;
		case N_(ROW_EXPR):
			return n->row_expr->location;
		case N_(MIN_MAX_EXPR):
			return n->min_max_expr->location;
		case N_(SQLVALUE_FUNCTION):
			return n->sqlvalue_function->location;
		case N_(COLLATE_CLAUSE):
			return n->collate_clause->location;
		case N_(A_INDIRECTION):
			return node_location(n->a_indirection->arg);
		default:
			return -1;
	}
}

static void __attribute__((noreturn))
refuse(Compiler *c, int location, const char *what)
{
	fail(c, location, "predicate not supported: %s", what);
}

/* names_text joins a list of String nodes with dots (NameListToString). */
static void
names_text(PgQuery__Node *const *names, size_t n, char *buf, size_t len)
{
	size_t		used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++)
	{
		const char *s = str_node(names[i]);

		used += snprintf(buf + used, len - used, "%s%s", i > 0 ? "." : "", s != NULL ? s : "?");
	}
}

static bool
is_claim_call(const PgQuery__FuncCall *f)
{
	const PgQuery__Node *a;

	if (f->n_funcname != 2 || !str_node_is(f->funcname[0], "ferry") || !str_node_is(f->funcname[1], "claim"))
		return false;
	if (f->n_args != 1 || f->n_agg_order != 0 || f->agg_filter != NULL || f->over != NULL ||
		f->agg_star || f->agg_distinct || f->func_variadic)
		return false;
	a = f->args[0];
	return a != NULL && a->node_case == N_(A_CONST) && !a->a_const->isnull &&
		a->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL && a->a_const->sval != NULL &&
		a->a_const->sval->sval != NULL;
}

/* typmod_value reads one type modifier (an integer, or a string holding one). */
static int64_t
typmod_value(Compiler *c, const PgQuery__Node *n, int loc)
{
	const PgQuery__AConst *ac;
	const char *s = NULL;
	int64_t		v;

	if (n != NULL && n->node_case == N_(A_CONST) && !n->a_const->isnull)
	{
		ac = n->a_const;
		if (ac->val_case == PG_QUERY__A__CONST__VAL_IVAL)
			return ac->ival != NULL ? ac->ival->ival : 0;
		if (ac->val_case == PG_QUERY__A__CONST__VAL_SVAL && ac->sval != NULL)
			s = ac->sval->sval;
		else if (ac->val_case == PG_QUERY__A__CONST__VAL_FVAL && ac->fval != NULL)
			s = ac->fval->fval;
	}
	else if (n != NULL && n->node_case == N_(COLUMN_REF) && n->column_ref->n_fields == 1)
		s = str_node(n->column_ref->fields[0]);
	if (s == NULL)
		fail(c, loc, "type modifiers must be simple constants or identifiers");
	if (int_input(s, TY_INT4, &v) != IN_OK)
		fail(c, loc, "invalid input syntax for type integer: \"%s\"", s);
	return v;
}

/*
 * cast_target resolves a cast's type name to one of the allowed types (as is or
 * pg_catalog-qualified) and its type modifier; anything else is refused.
 */
static Ty
cast_target(Compiler *c, const PgQuery__TypeName *tn, int loc, int32_t *typmod)
{
	char		name[160];
	char		what[200];
	const char *base = NULL;
	Ty			t = TY_OTHER;
	int64_t		v[3] = {0, 0, 0};
	size_t		nt;

	*typmod = -1;
	if (tn == NULL)
		refuse(c, loc, "this kind of cast");
	names_text(tn->names, tn->n_names, name, sizeof(name));
	snprintf(what, sizeof(what), "cast to %s%s", name, tn->n_array_bounds > 0 ? "[]" : "");
	if (tn->n_array_bounds > 0 || tn->setof || tn->pct_type)
		refuse(c, loc, what);
	if (tn->n_names == 1)
		base = str_node(tn->names[0]);
	else if (tn->n_names == 2 && str_node_is(tn->names[0], "pg_catalog"))
		base = str_node(tn->names[1]);
	for (int i = TY_BOOL; base != NULL && i < TY_OTHER; i++)
		if (strcmp(base, types[i].catname) == 0)
			t = (Ty) i;
	if (t == TY_OTHER)
		refuse(c, loc, what);
	nt = tn->n_typmods;
	for (size_t i = 0; i < nt && i < 3; i++)
		v[i] = typmod_value(c, tn->typmods[i], loc);
	switch (t)
	{
		case TY_VARCHAR:
		case TY_BPCHAR:
			if (nt > 1)
				fail(c, loc, "invalid type modifier");
			if (nt == 1)
			{
				const char *tn_ = t == TY_VARCHAR ? "varchar" : "char";

				if (v[0] < 1)
					fail(c, loc, "length for type %s must be at least 1", tn_);
				if (v[0] > 10485760)
					fail(c, loc, "length for type %s cannot exceed 10485760", tn_);
				*typmod = (int32_t) v[0];
			}
			break;
		case TY_NUMERIC:
			if (nt > 2)
				fail(c, loc, "invalid NUMERIC type modifier");
			if (nt >= 1)
			{
				if (v[0] < 1 || v[0] > 1000)
					fail(c, loc, "NUMERIC precision %lld must be between 1 and 1000", (long long) v[0]);
				if (v[1] < -1000 || v[1] > 1000)
					fail(c, loc, "NUMERIC scale %lld must be between -1000 and 1000", (long long) v[1]);
				*typmod = TYPMOD_NUMERIC(v[0], v[1]);
			}
			break;
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			if (nt > 1)
				fail(c, loc, "invalid type modifier");
			if (nt == 1)
			{
				if (v[0] < 0)
					fail(c, loc, "TIMESTAMP(%lld)%s precision must not be negative", (long long) v[0],
						 t == TY_TIMESTAMPTZ ? " WITH TIME ZONE" : "");
				*typmod = v[0] > 6 ? 6 : (int32_t) v[0];
			}
			break;
		default:
			if (nt > 0)
				fail(c, loc, "type modifier is not allowed for type \"%s\"", types[t].catname);
			break;
	}
	return t;
}

static int
find_column(const Compiler *c, const char *name)
{
	for (int i = 0; i < c->schema->ncols; i++)
		if (c->schema->cols[i].name != NULL && strcmp(c->schema->cols[i].name, name) == 0)
			return i;
	return -1;
}

static void
check_column(Compiler *c, const PgQuery__ColumnRef *cr)
{
	static const char *const syscols[] = {"tableoid", "cmax", "xmax", "cmin", "xmin", "ctid"};
	const char *name;
	char		what[200];

	if (cr->n_fields != 1 || str_node(cr->fields[0]) == NULL)
		refuse(c, cr->location, "qualified column names and *; name columns of the table alone");
	name = str_node(cr->fields[0]);
	if (find_column(c, name) >= 0)
		return;
	for (size_t i = 0; i < sizeof(syscols) / sizeof(syscols[0]); i++)
		if (strcmp(name, syscols[i]) == 0)
		{
			snprintf(what, sizeof(what), "system column \"%s\"", name);
			refuse(c, cr->location, what);
		}
	fail(c, -1, "column \"%s\" does not exist", name);
}

static const char *
aexpr_op(const PgQuery__AExpr *a)
{
	const char *op = a->n_name > 0 ? str_node(a->name[a->n_name - 1]) : NULL;

	return op != NULL ? op : "?";
}

static int
cmp_op(const char *op)
{
	for (int i = 0; i < 6; i++)
		if (strcmp(op, cmp_names[i]) == 0)
			return i;
	return -1;
}

static void check_node(Compiler *c, const PgQuery__Node *n, int depth);

static void
check_aexpr(Compiler *c, const PgQuery__AExpr *a, int depth)
{
	const char *op = aexpr_op(a);
	char		what[200];

	switch (a->kind)
	{
		case PG_QUERY__A__EXPR__KIND__AEXPR_OP:
			if (a->lexpr == NULL || a->rexpr == NULL)
			{
				snprintf(what, sizeof(what), "prefix operator %s", op);
				refuse(c, a->location, what);
			}
			if (cmp_op(op) < 0)
			{
				snprintf(what, sizeof(what), "operator %s", op);
				refuse(c, a->location, what);
			}
			if (a->n_name != 1)
				refuse(c, a->location, "schema-qualified operators");
			check_node(c, a->lexpr, depth + 1);
			check_node(c, a->rexpr, depth + 1);
			return;
		case PG_QUERY__A__EXPR__KIND__AEXPR_IN:
			check_node(c, a->lexpr, depth + 1);
			if (a->rexpr == NULL || a->rexpr->node_case != N_(LIST))
				refuse(c, a->location, "IN lists of anything but literals and claims");
			for (size_t i = 0; i < a->rexpr->list->n_items; i++)
			{
				const PgQuery__Node *item = a->rexpr->list->items[i];

				if (item == NULL || (item->node_case != N_(A_CONST) && item->node_case != N_(TYPE_CAST) &&
									 item->node_case != N_(FUNC_CALL)))
					refuse(c, node_location(item), "IN lists of anything but literals and claims");
				check_node(c, item, depth + 1);
			}
			return;
		case PG_QUERY__A__EXPR__KIND__AEXPR_LIKE:
		case PG_QUERY__A__EXPR__KIND__AEXPR_ILIKE:
			check_node(c, a->lexpr, depth + 1);
			check_node(c, a->rexpr, depth + 1);
			return;
		case PG_QUERY__A__EXPR__KIND__AEXPR_OP_ANY:
		case PG_QUERY__A__EXPR__KIND__AEXPR_OP_ALL:
			refuse(c, a->location, "ANY/ALL");
		case PG_QUERY__A__EXPR__KIND__AEXPR_DISTINCT:
		case PG_QUERY__A__EXPR__KIND__AEXPR_NOT_DISTINCT:
			refuse(c, a->location, "IS [NOT] DISTINCT FROM");
		case PG_QUERY__A__EXPR__KIND__AEXPR_NULLIF:
			refuse(c, a->location, "NULLIF");
		case PG_QUERY__A__EXPR__KIND__AEXPR_SIMILAR:
			refuse(c, a->location, "SIMILAR TO");
		default:
			refuse(c, a->location, "BETWEEN");
	}
}

/* check_node refuses anything outside the subset, as extension/predicate.c's walk does. */
static void
check_node(Compiler *c, const PgQuery__Node *n, int depth)
{
	char		what[256];

	if (n == NULL)
		return;
	if (depth > EXPR_MAX_DEPTH)
		fail(c, node_location(n), "predicate nested too deeply (more than %d levels)", EXPR_MAX_DEPTH);
	switch (n->node_case)
	{
		case N_(A_EXPR):
			check_aexpr(c, n->a_expr, depth);
			return;
		case N_(BOOL_EXPR):
			for (size_t i = 0; i < n->bool_expr->n_args; i++)
				check_node(c, n->bool_expr->args[i], depth + 1);
			return;
		case N_(NULL_TEST):
			check_node(c, n->null_test->arg, depth + 1);
			return;
		case N_(COLUMN_REF):
			check_column(c, n->column_ref);
			return;
		case N_(A_CONST):
			if (!n->a_const->isnull && n->a_const->val_case == PG_QUERY__A__CONST__VAL_BSVAL)
				refuse(c, n->a_const->location, "bit-string literals");
			return;
		case N_(TYPE_CAST):
			{
				const PgQuery__TypeCast *tc = n->type_cast;
				int32_t		typmod;

				if (tc->arg == NULL ||
					(tc->arg->node_case != N_(A_CONST) &&
					 !(tc->arg->node_case == N_(FUNC_CALL) && is_claim_call(tc->arg->func_call))))
					refuse(c, tc->location, "casts of anything but literals and ferry.claim()");
				cast_target(c, tc->type_name, tc->location, &typmod);
				check_node(c, tc->arg, depth + 1);
				return;
			}
		case N_(FUNC_CALL):
			if (!is_claim_call(n->func_call))
			{
				char		name[160];

				names_text(n->func_call->funcname, n->func_call->n_funcname, name, sizeof(name));
				snprintf(what, sizeof(what),
						 "function %s(); only ferry.claim('name') with a literal name is allowed", name);
				refuse(c, n->func_call->location, what);
			}
			return;
		case N_(SUB_LINK):
			refuse(c, node_location(n), "subqueries");
		case N_(BOOLEAN_TEST):
			refuse(c, node_location(n), "IS [NOT] TRUE/FALSE/UNKNOWN; compare with = true instead");
		case N_(CASE_EXPR):
			refuse(c, node_location(n), "CASE");
		case N_(COALESCE_EXPR):
			refuse(c, node_location(n), "COALESCE");
		case N_(PARAM_REF):
			refuse(c, node_location(n), "parameters");
		case N_(A_ARRAY_EXPR):
			refuse(c, node_location(n), "ARRAY[...]");
		case N_(ROW_EXPR):
			refuse(c, node_location(n), "row constructors");
		case N_(MIN_MAX_EXPR):
			refuse(c, node_location(n), "GREATEST/LEAST");
		case N_(SQLVALUE_FUNCTION):
			refuse(c, node_location(n), "CURRENT_DATE, CURRENT_USER and the like");
		case N_(COLLATE_CLAUSE):
			refuse(c, node_location(n), "COLLATE");
		case N_(A_INDIRECTION):
			refuse(c, node_location(n), "subscripts and field selection");
		default:
			refuse(c, node_location(n), "this kind of expression");
	}
}

/* check_statement checks that the parsed query is "SELECT 1 FROM t WHERE <one expression>". */
static const PgQuery__Node *
check_statement(Compiler *c, const PgQuery__ParseResult *pr)
{
	const PgQuery__SelectStmt *s;

	if (pr->n_stmts != 1 || pr->stmts[0] == NULL || pr->stmts[0]->stmt == NULL)
		refuse(c, -1, "more than one statement");
	if (pr->stmts[0]->stmt->node_case != N_(SELECT_STMT))
		refuse(c, -1, "anything but one boolean expression (no ORDER BY, LIMIT, UNION, ...)");
	s = pr->stmts[0]->stmt->select_stmt;
	if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE || s->with_clause != NULL || s->into_clause != NULL ||
		s->n_group_clause != 0 || s->having_clause != NULL || s->n_window_clause != 0 ||
		s->n_sort_clause != 0 || s->limit_offset != NULL || s->limit_count != NULL ||
		s->n_locking_clause != 0 || s->n_distinct_clause != 0 || s->n_values_lists != 0 ||
		s->n_from_clause != 1 || s->n_target_list != 1 || s->where_clause == NULL)
		refuse(c, -1, "anything but one boolean expression (no ORDER BY, LIMIT, UNION, ...)");
	check_node(c, s->where_clause, 1);
	return s->where_clause;
}

/* ================================================================================
 * typing: the parse tree to a compiled tree
 * ================================================================================ */

enum
{
	TK_CONST,					/* a constant (literal, claim, cast of either) */
	TK_COL,						/* a column */
	TK_BOOL						/* a boolean expression, compiled */
};

/* A typed subexpression before an operator puts it to use. */
typedef struct Term
{
	uint8_t		kind;			/* TK_* */
	uint8_t		ty;				/* its type */
	int			col;			/* TK_COL: the column */
	Node	   *node;			/* TK_BOOL: the compiled expression */
	Datum		val;			/* TK_CONST: the value */
	int			loc;			/* where it starts, for messages */
	bool		stable;			/* TK_CONST: from a claim */
	const char *poison;			/* TK_CONST: a cast that fails when folded */
	int			poison_loc;		/* its location */
	bool		poison_runtime; /* the cast is of a claim */
} Term;

enum
{
	RT_CMP,						/* a comparison's operand */
	RT_LIKE_LEFT,				/* LIKE's string */
	RT_LIKE_RIGHT				/* LIKE's pattern */
};

static Term transform(Compiler *c, const PgQuery__Node *n);

static Node *
new_node(Compiler *c, NodeKind kind)
{
	Node	   *n = c_alloc(c, sizeof(Node));

	n->kind = (uint8_t) kind;
	return n;
}

/* const_dval puts a constant (already of the operator's argument type) in its domain. */
static DVal
const_dval(Compiler *c, const Datum *d, Dom dom, bool rtrim)
{
	DVal		dv;

	memset(&dv, 0, sizeof(dv));
	if (d->isnull)
	{
		dv.null = true;
		return dv;
	}
	switch (dom)
	{
		case DOM_BOOL:
			dv.v.b = d->v.b ? EXPR_TRUE : EXPR_FALSE;
			break;
		case DOM_EXACT:
			dv.v.d = d->ty == TY_NUMERIC ? d->v.num : dec_from_int(c, d->v.i);
			break;
		case DOM_FLOAT:
			dv.v.f = d->v.f;
			break;
		case DOM_TEXT:
			dv.v.t.s = d->v.str.s;
			dv.v.t.len = rtrim ? rtrim_len(d->v.str.s, d->v.str.len) : d->v.str.len;
			break;
		case DOM_UUID:
			memcpy(dv.v.u, d->v.uuid, 16);
			break;
		case DOM_TIME:
			dv.v.k = d->ty == TY_DATE ? date_key(d->v.date) : ts_key(d->v.ts);
			break;
	}
	return dv;
}

static void
check_not_other(Compiler *c, const Term *t)
{
	if (t->kind == TK_COL && t->ty == TY_OTHER)
		fail(c, t->loc, "column \"%s\" has a type the gateway cannot evaluate (type OID %u): "
			 "only IS NULL and IS NOT NULL may use it", c->schema->cols[t->col].name,
			 c->schema->cols[t->col].type_oid);
}

/* make_operand converts a term to an operator's argument type arg, in domain dom. */
static void
make_operand(Compiler *c, const Term *t, Ty arg, Dom dom, int mode, Operand *o)
{
	memset(o, 0, sizeof(*o));
	o->arg = (uint8_t) arg;
	switch (t->kind)
	{
		case TK_COL:
			o->kind = OPD_COL;
			o->col = t->col;
			o->src = t->ty;
			if (mode == RT_CMP)
				o->rtrim = arg == TY_BPCHAR || t->ty == TY_BPCHAR;
			else if (mode == RT_LIKE_LEFT)
				o->rtrim = t->ty == TY_BPCHAR && arg == TY_TEXT;
			else
				o->rtrim = t->ty == TY_BPCHAR;
			break;
		case TK_BOOL:
			o->kind = OPD_SUB;
			o->sub = t->node;
			o->src = TY_BOOL;
			break;
		default:
			o->kind = OPD_CONST;
			o->src = t->ty;
			o->stable = t->stable;
			o->poison = t->poison;
			o->poison_loc = t->poison_loc;
			o->poison_runtime = t->poison_runtime || t->stable;
			if (o->poison == NULL)
				o->cval = lazy_coerce(c, t->val, arg, -1, false, t->loc, t->stable ? "" : NULL, &o->poison,
									  &o->poison_loc);
			if (o->poison != NULL)
			{
				o->cval.ty = (uint8_t) arg;
				o->cval.isnull = true;
			}
			o->dv = const_dval(c, &o->cval, dom, mode == RT_CMP && arg == TY_BPCHAR);
			break;
	}
}

static Node *make_cmp(Compiler *c, int op, const Term *l, const Term *r, int loc);

/* to_bool makes a boolean node of a term used as a condition (WHERE, AND, OR, NOT). */
static Node *
to_bool(Compiler *c, Term t, const char *ctx)
{
	Node	   *n;

	if (t.poison != NULL && t.ty == TY_BOOL)
	{
		/* a boolean cast that fails: "x = true", an error where Postgres would reach it */
		Term		yes;

		memset(&yes, 0, sizeof(yes));
		yes.kind = TK_CONST;
		yes.ty = TY_BOOL;
		yes.val.ty = TY_BOOL;
		yes.val.v.b = true;
		yes.loc = -1;
		return make_cmp(c, CMP_EQ, &t, &yes, t.loc);
	}
	if (t.poison != NULL)
		fail(c, t.poison_loc, "%s", t.poison);
	if (t.kind == TK_BOOL)
		return t.node;
	if (t.kind == TK_COL && t.ty == TY_BOOL)
	{
		n = new_node(c, N_COLBOOL);
		n->col = t.col;
		return n;
	}
	if (t.kind == TK_CONST && (t.ty == TY_BOOL || t.ty == TY_UNKNOWN))
	{
		Datum		d = coerce(c, t.val, TY_BOOL, -1, false, t.loc, "");

		n = new_node(c, N_CONST);
		n->cval = d.isnull ? EXPR_NULL : d.v.b ? EXPR_TRUE : EXPR_FALSE;
		return n;
	}
	check_not_other(c, &t);
	fail(c, t.loc, "argument of %s must be type boolean, not type %s", ctx, types[t.ty].name);
}

/* add_arg appends a to an AND/OR node, splicing in the arguments of a node of the same kind. */
static void
add_arg(Compiler *c, Node *n, Node *a, int *cap)
{
	if (a->kind == n->kind && (n->kind == N_AND || n->kind == N_OR))
	{
		for (int i = 0; i < a->nargs; i++)
			add_arg(c, n, a->args[i], cap);
		return;
	}
	if (n->nargs == *cap)
	{
		int			ncap = *cap ? *cap * 2 : 4;
		Node	  **args = c_alloc(c, sizeof(Node *) * ncap);

		if (n->nargs > 0)
			memcpy(args, n->args, sizeof(Node *) * n->nargs);
		n->args = args;
		*cap = ncap;
	}
	n->args[n->nargs++] = a;
}

static Node *
make_cmp(Compiler *c, int op, const Term *l, const Term *r, int loc)
{
	Ty			al,
				ar;
	Node	   *n;

	check_not_other(c, l);
	check_not_other(c, r);
	if (!resolve_cmp((Ty) l->ty, (Ty) r->ty, &al, &ar))
		fail(c, loc, "operator does not exist: %s %s %s", types[l->ty].name, cmp_names[op], types[r->ty].name);
	n = new_node(c, N_CMP);
	n->op = (uint8_t) op;
	n->dom = (uint8_t) dom_of(al);
	n->l = c_alloc(c, sizeof(Operand));
	n->r = c_alloc(c, sizeof(Operand));
	make_operand(c, l, al, (Dom) n->dom, RT_CMP, n->l);
	make_operand(c, r, ar, (Dom) n->dom, RT_CMP, n->r);
	return n;
}

/* make_in is transformAExprIn: = ANY / <> ALL over the common type, else OR/AND of comparisons. */
static Node *
make_in(Compiler *c, const PgQuery__AExpr *a)
{
	bool		notin = strcmp(aexpr_op(a), "<>") == 0;
	int			op = notin ? CMP_NE : CMP_EQ;
	const PgQuery__List *list = a->rexpr->list;
	int			n = (int) list->n_items;
	Term		l = transform(c, a->lexpr);
	Term	   *items = c_alloc(c, sizeof(Term) * (n + 1));
	Ty		   *tys = c_alloc(c, sizeof(Ty) * (n + 1));
	Node	   *res = NULL;
	int			cap = 0;

	check_not_other(c, &l);
	tys[0] = (Ty) l.ty;
	for (int i = 0; i < n; i++)
	{
		items[i] = transform(c, list->items[i]);
		tys[i + 1] = (Ty) items[i].ty;
	}
	if (n > 1)
	{
		int			common = select_common(tys, n + 1);
		Ty			al,
					ar;

		if (common >= 0)
		{
			Node	   *in = new_node(c, N_IN);

			if (!resolve_cmp((Ty) l.ty, (Ty) common, &al, &ar))
				fail(c, a->location, "operator does not exist: %s %s %s", types[l.ty].name, cmp_names[op],
					 types[common].name);
			in->op = (uint8_t) op;
			in->neg = notin;
			in->dom = (uint8_t) dom_of(al);
			in->l = c_alloc(c, sizeof(Operand));
			make_operand(c, &l, al, (Dom) in->dom, RT_CMP, in->l);
			in->nitems = n;
			in->items = c_alloc(c, sizeof(Operand) * n);
			for (int i = 0; i < n; i++)
			{
				Term		t = items[i];

				if (t.poison == NULL)
					t.val = lazy_coerce(c, t.val, (Ty) common, -1, false, t.loc, t.stable ? "" : NULL, &t.poison,
										&t.poison_loc);
				t.ty = (uint8_t) common;
				make_operand(c, &t, ar, (Dom) in->dom, RT_CMP, &in->items[i]);
			}
			return in;
		}
	}
	for (int i = 0; i < n; i++)
	{
		Node	   *cmp = make_cmp(c, op, &l, &items[i], a->location);

		if (n == 1)
			return cmp;
		if (res == NULL)
			res = new_node(c, notin ? N_AND : N_OR);
		add_arg(c, res, cmp, &cap);
	}
	return res;
}

static Node *
make_like(Compiler *c, const PgQuery__AExpr *a)
{
	const char *op = aexpr_op(a);
	Term		l = transform(c, a->lexpr);
	Term		r = transform(c, a->rexpr);
	Ty			al,
				ar;
	Node	   *n;

	check_not_other(c, &l);
	check_not_other(c, &r);
	if (!resolve_like((Ty) l.ty, (Ty) r.ty, &al, &ar))
		fail(c, a->location, "operator does not exist: %s %s %s", types[l.ty].name, op, types[r.ty].name);
	n = new_node(c, N_LIKE);
	n->neg = op[0] == '!';
	n->icase = a->kind == PG_QUERY__A__EXPR__KIND__AEXPR_ILIKE;
	n->l = c_alloc(c, sizeof(Operand));
	n->r = c_alloc(c, sizeof(Operand));
	make_operand(c, &l, al, DOM_TEXT, RT_LIKE_LEFT, n->l);
	make_operand(c, &r, ar, DOM_TEXT, RT_LIKE_RIGHT, n->r);
	if (n->r->kind == OPD_CONST && !n->r->dv.null)
	{
		if (pattern_ends_in_escape(n->r->dv.v.t.s, n->r->dv.v.t.len))
			fail(c, r.loc, "LIKE pattern must not end with escape character");
		if (pattern_groups(n->r->dv.v.t.s, n->r->dv.v.t.len) > LIKE_MAX_DEPTH)
			fail(c, r.loc, "LIKE pattern has more than %d groups of %% wildcards", LIKE_MAX_DEPTH);
	}
	if (n->icase)
	{
		Operand    *sides[2] = {n->l, n->r};

		for (int i = 0; i < 2; i++)
			if (sides[i]->kind == OPD_CONST && !sides[i]->dv.null)
			{
				char	   *buf = c_alloc(c, sides[i]->dv.v.t.len * 2 + 4);

				sides[i]->dv.v.t.len = lower_text(c->e, sides[i]->dv.v.t.s, sides[i]->dv.v.t.len, buf);
				sides[i]->dv.v.t.s = buf;
			}
	}
	return n;
}

/*
 * Constant folding, in two passes.
 *
 * pg_fold follows Postgres's eval_const_expressions over the compiled tree (claims are
 * not constants there: ferry.claim() is STABLE) only to find out whether Postgres would
 * fold a poisoned cast, in which case the predicate is an error, as in Postgres; AND and
 * OR stop at the first constant FALSE/TRUE, so a poison after one is never reached.
 * fold then folds every constant subexpression, claims included, rewriting the tree:
 * the same answers, and a canonical text in which, for instance, the rule
 * "owner = ferry.claim('sub') OR ferry.claim('role') = 'admin'" of a non-admin is just
 * the owner test.
 */
enum
{
	OC_VAR,						/* not a constant */
	OC_CONST,					/* a non-NULL constant */
	OC_NULL						/* a NULL constant */
};

#define FOLD_VAR (-1)

static int	pg_fold(Compiler *c, const Node *n);

static int
pg_operand(Compiler *c, const Operand *o)
{
	int			r;

	if (o->kind == OPD_COL)
		return OC_VAR;
	if (o->kind == OPD_SUB)
	{
		r = pg_fold(c, o->sub);
		return r == FOLD_VAR ? OC_VAR : r == EXPR_NULL ? OC_NULL : OC_CONST;
	}
	if (o->stable)
		return OC_VAR;
	return o->cval.isnull ? OC_NULL : OC_CONST;
}

static void __attribute__((noreturn))
raise_poison(Compiler *c, const Operand *o)
{
	fail(c, o->poison_loc, "%s", o->poison);
}

/* node_poison: the node's first operand poisoned at plan time (runtime false) or per row. */
static const Operand *
node_poison(const Node *n, bool runtime)
{
	const Operand *ops[2] = {n->l, n->r};

	for (int i = 0; i < 2; i++)
		if (ops[i] != NULL && ops[i]->poison != NULL && (ops[i]->poison_runtime != 0) == runtime)
			return ops[i];
	for (int i = 0; i < n->nitems; i++)
		if (n->items[i].poison != NULL && (n->items[i].poison_runtime != 0) == runtime)
			return &n->items[i];
	return NULL;
}

/*
 * check_poison ends a node's folding: a cast of a constant that fails fails as soon as
 * Postgres folds the node's arguments (even when the node then folds to NULL); a cast of
 * a claim fails unless the node folded to a constant, since Postgres then runs it.
 */
static int
check_poison(Compiler *c, const Node *n, int folded)
{
	const Operand *o;

	if (folded != FOLD_VAR)
		return folded;
	if ((o = node_poison(n, true)) != NULL)
		raise_poison(c, o);
	return FOLD_VAR;
}

static int
pg_fold(Compiler *c, const Node *n)
{
	const Operand *o;

	switch (n->kind)
	{
		case N_CONST:
			return n->cval;
		case N_COLBOOL:
			return FOLD_VAR;
		case N_NOT:
			{
				int			r = pg_fold(c, n->args[0]);

				return r == FOLD_VAR || r == EXPR_NULL ? r : r == EXPR_TRUE ? EXPR_FALSE : EXPR_TRUE;
			}
		case N_AND:
		case N_OR:
			{
				int			stop = n->kind == N_AND ? EXPR_FALSE : EXPR_TRUE;
				bool		havenull = false,
							var = false;

				for (int i = 0; i < n->nargs; i++)
				{
					int			r = pg_fold(c, n->args[i]);

					if (r == stop)
						return stop;
					if (r == EXPR_NULL)
						havenull = true;
					else if (r == FOLD_VAR)
						var = true;
				}
				if (var)
					return FOLD_VAR;
				return havenull ? EXPR_NULL : stop == EXPR_FALSE ? EXPR_TRUE : EXPR_FALSE;
			}
		case N_NULLTEST:
			{
				int			oc = pg_operand(c, n->l);

				if ((o = node_poison(n, false)) != NULL)
					raise_poison(c, o);
				if (oc == OC_VAR)
					return check_poison(c, n, FOLD_VAR);
				return (oc == OC_NULL) != (n->neg != 0) ? EXPR_TRUE : EXPR_FALSE;
			}
		case N_CMP:
		case N_LIKE:
			{
				int			ol = pg_operand(c, n->l);
				int			or = pg_operand(c, n->r);

				if ((o = node_poison(n, false)) != NULL)
					raise_poison(c, o);
				/* strict operators: a NULL constant input folds to NULL */
				if (ol == OC_NULL || or == OC_NULL)
					return EXPR_NULL;
				if (ol == OC_CONST && or == OC_CONST)
					return eval_node(c->e, n, NULL);
				return check_poison(c, n, FOLD_VAR);
			}
		default:
			{
				int			ol = pg_operand(c, n->l);
				bool		allconst = ol != OC_VAR;

				for (int i = 0; i < n->nitems; i++)
					if (pg_operand(c, &n->items[i]) == OC_VAR)
						allconst = false;
				if ((o = node_poison(n, false)) != NULL)
					raise_poison(c, o);
				return check_poison(c, n, allconst ? (int) eval_node(c->e, n, NULL) : FOLD_VAR);
			}
	}
}

static Node *
const_node(Compiler *c, ExprBool v)
{
	Node	   *n = new_node(c, N_CONST);

	n->cval = v;
	return n;
}

static Node *fold(Compiler *c, Node *n);

/*
 * fold_operand folds an operand's subexpression, making it a constant when it folds;
 * OC_VAR for a poisoned one (which the node must fold away: pg_fold made sure of it).
 */
static int
fold_operand(Compiler *c, Operand *o)
{
	if (o->kind == OPD_COL || o->poison != NULL)
		return OC_VAR;
	if (o->kind == OPD_SUB)
	{
		ExprBool	v;

		o->sub = fold(c, o->sub);
		if (o->sub->kind != N_CONST)
			return OC_VAR;
		v = o->sub->cval;
		o->kind = OPD_CONST;
		o->sub = NULL;
		memset(&o->cval, 0, sizeof(o->cval));
		o->cval.ty = TY_BOOL;
		o->cval.isnull = v == EXPR_NULL;
		o->cval.v.b = v == EXPR_TRUE;
		o->dv = const_dval(c, &o->cval, DOM_BOOL, false);
	}
	return o->cval.isnull ? OC_NULL : OC_CONST;
}

/* folded_node: a node that does not fold must not keep a poisoned operand. */
static Node *
folded_node(Compiler *c, Node *n)
{
	const Operand *o = node_poison(n, false);

	if (o != NULL || (o = node_poison(n, true)) != NULL)
		raise_poison(c, o);
	return n;
}

static Node *
fold(Compiler *c, Node *n)
{
	switch (n->kind)
	{
		case N_CONST:
		case N_COLBOOL:
			return n;
		case N_NOT:
			{
				Node	   *a = fold(c, n->args[0]);

				if (a->kind == N_CONST)
					return const_node(c, a->cval == EXPR_NULL ? EXPR_NULL :
									  a->cval == EXPR_TRUE ? EXPR_FALSE : EXPR_TRUE);
				n->args[0] = a;
				return n;
			}
		case N_AND:
		case N_OR:
			{
				ExprBool	stop = n->kind == N_AND ? EXPR_FALSE : EXPR_TRUE;
				bool		havenull = false;
				int			cap = 0;
				Node	   *out = new_node(c, (NodeKind) n->kind);

				for (int i = 0; i < n->nargs; i++)
				{
					Node	   *a = fold(c, n->args[i]);

					if (a->kind == N_CONST)
					{
						if (a->cval == stop)
							return const_node(c, stop);
						if (a->cval == EXPR_NULL)
							havenull = true;
						continue;
					}
					add_arg(c, out, a, &cap);
				}
				if (havenull)
				{
					if (out->nargs == 0)
						return const_node(c, EXPR_NULL);
					add_arg(c, out, const_node(c, EXPR_NULL), &cap);
				}
				if (out->nargs == 0)
					return const_node(c, stop == EXPR_FALSE ? EXPR_TRUE : EXPR_FALSE);
				return out->nargs == 1 ? out->args[0] : out;
			}
		case N_NULLTEST:
			{
				int			oc = fold_operand(c, n->l);

				if (oc == OC_VAR)
					return folded_node(c, n);
				return const_node(c, (oc == OC_NULL) != (n->neg != 0) ? EXPR_TRUE : EXPR_FALSE);
			}
		case N_CMP:
		case N_LIKE:
			{
				int			ol = fold_operand(c, n->l);
				int			or = fold_operand(c, n->r);

				if (ol == OC_NULL || or == OC_NULL)
					return const_node(c, EXPR_NULL);
				if (ol == OC_CONST && or == OC_CONST)
					return const_node(c, eval_node(c->e, n, NULL));
				return folded_node(c, n);
			}
		default:
			{
				int			ol = fold_operand(c, n->l);
				bool		allnull = n->nitems > 0,
							allconst = ol != OC_VAR;

				for (int i = 0; i < n->nitems; i++)
				{
					int			oc = fold_operand(c, &n->items[i]);

					allnull = allnull && oc == OC_NULL;
					allconst = allconst && oc != OC_VAR;
				}
				if (allconst || allnull)
					return const_node(c, eval_node(c->e, n, NULL));
				return folded_node(c, n);
			}
	}
}

/* mark_columns records the columns a (folded) tree reads. */
static void
mark_columns(Compiler *c, const Node *n)
{
	const Operand *ops[2] = {n->l, n->r};

	if (n->kind == N_COLBOOL)
		c->colused[n->col] = true;
	for (int i = 0; i < n->nargs; i++)
		mark_columns(c, n->args[i]);
	for (int i = 0; i < 2; i++)
		if (ops[i] != NULL && ops[i]->kind == OPD_COL)
			c->colused[ops[i]->col] = true;
		else if (ops[i] != NULL && ops[i]->kind == OPD_SUB)
			mark_columns(c, ops[i]->sub);
}

/* const_value is make_const: the type and value Postgres gives a literal. */
static Datum
const_value(Compiler *c, const PgQuery__AConst *ac)
{
	Datum		d;

	memset(&d, 0, sizeof(d));
	if (ac->isnull)
	{
		d.ty = TY_UNKNOWN;
		d.isnull = true;
		return d;
	}
	switch (ac->val_case)
	{
		case PG_QUERY__A__CONST__VAL_IVAL:
			d.ty = TY_INT4;
			d.v.i = ac->ival != NULL ? ac->ival->ival : 0;
			return d;
		case PG_QUERY__A__CONST__VAL_BOOLVAL:
			d.ty = TY_BOOL;
			d.v.b = ac->boolval != NULL && ac->boolval->boolval;
			return d;
		case PG_QUERY__A__CONST__VAL_FVAL:
			{
				const char *s = ac->fval != NULL && ac->fval->fval != NULL ? ac->fval->fval : "";
				int64_t		v;

				/* an integer too big for int4 is a Float node: int8 when it fits */
				if (int_input(s, TY_INT8, &v) == IN_OK && strspn(s, "-0123456789") == strlen(s))
				{
					d.ty = v >= INT32_MIN && v <= INT32_MAX ? TY_INT4 : TY_INT8;
					d.v.i = v;
					return d;
				}
				d.ty = TY_NUMERIC;
				d.v.num = dec_input(c, s, ac->location, "");
				return d;
			}
		case PG_QUERY__A__CONST__VAL_SVAL:
			{
				const char *s = ac->sval != NULL && ac->sval->sval != NULL ? ac->sval->sval : "";
				size_t		len = strlen(s);

				if (!utf8_valid(s, len))
					fail(c, ac->location, "invalid byte sequence for encoding \"UTF8\" in a string literal");
				d.ty = TY_UNKNOWN;
				d.v.str.s = c_strndup(c, s, len);
				d.v.str.len = len;
				return d;
			}
		default:
			refuse(c, ac->location, "this kind of literal");
	}
}

/* claim_value looks a claim up: text, or NULL when absent. */
static Datum
claim_value(Compiler *c, const PgQuery__FuncCall *f)
{
	const char *name = f->args[0]->a_const->sval->sval;
	const char *v;
	Datum		d;

	if (c->claim == NULL)
		refuse(c, f->location, "ferry.claim() in a shape's WHERE clause (claims belong in rules)");
	memset(&d, 0, sizeof(d));
	d.ty = TY_TEXT;
	v = c->claim(c->claim_arg, name);
	if (v == NULL)
	{
		d.isnull = true;
		return d;
	}
	d.v.str.len = strlen(v);
	if (!utf8_valid(v, d.v.str.len))
		fail(c, f->location, "claim \"%s\" is not valid UTF-8", name);
	d.v.str.s = c_strndup(c, v, d.v.str.len);
	return d;
}

static Term
transform(Compiler *c, const PgQuery__Node *n)
{
	Term		t;

	memset(&t, 0, sizeof(t));
	t.loc = node_location(n);
	if (n == NULL)
		fail(c, -1, "predicate not supported: an empty expression");
	switch (n->node_case)
	{
		case N_(A_CONST):
			t.kind = TK_CONST;
			t.val = const_value(c, n->a_const);
			t.ty = t.val.ty;
			return t;
		case N_(COLUMN_REF):
			t.kind = TK_COL;
			t.col = find_column(c, str_node(n->column_ref->fields[0]));
			t.ty = (uint8_t) c->coltypes[t.col];
			c->colused[t.col] = true;
			return t;
		case N_(FUNC_CALL):
			t.kind = TK_CONST;
			t.val = claim_value(c, n->func_call);
			t.ty = t.val.ty;
			t.stable = true;
			return t;
		case N_(TYPE_CAST):
			{
				const PgQuery__TypeCast *tc = n->type_cast;
				int32_t		typmod;
				Ty			to = cast_target(c, tc->type_name, tc->location, &typmod);
				Term		a = transform(c, tc->arg);
				char		ctx[160] = "";

				t.kind = TK_CONST;
				t.ty = (uint8_t) to;
				if (a.stable)
				{
					/* a claim: Postgres casts it per row (see pg_fold) */
					snprintf(ctx, sizeof(ctx), " (claim \"%.100s\")", tc->arg->func_call->args[0]->a_const->sval->sval);
					t.stable = true;
					t.poison_runtime = true;
					t.val = lazy_coerce(c, a.val, to, typmod, true, a.loc >= 0 ? a.loc : tc->location,
										c_strndup(c, ctx, strlen(ctx)), &t.poison, &t.poison_loc);
				}
				else
					t.val = lazy_coerce(c, a.val, to, typmod, true, a.loc >= 0 ? a.loc : tc->location, NULL,
										&t.poison, &t.poison_loc);
				return t;
			}
		case N_(BOOL_EXPR):
			{
				const PgQuery__BoolExpr *b = n->bool_expr;
				int			cap = 0;
				Node	   *bn;
				const char *ctx;

				switch (b->boolop)
				{
					case PG_QUERY__BOOL_EXPR_TYPE__AND_EXPR:
						bn = new_node(c, N_AND), ctx = "AND";
						break;
					case PG_QUERY__BOOL_EXPR_TYPE__OR_EXPR:
						bn = new_node(c, N_OR), ctx = "OR";
						break;
					default:
						bn = new_node(c, N_NOT), ctx = "NOT";
						break;
				}
				for (size_t i = 0; i < b->n_args; i++)
				{
					Node	   *a = to_bool(c, transform(c, b->args[i]), ctx);

					if (bn->kind == N_NOT)
					{
						if (bn->nargs == 0)
						{
							bn->args = c_alloc(c, sizeof(Node *));
							bn->nargs = 1;
						}
						bn->args[0] = a;
					}
					else
						add_arg(c, bn, a, &cap);
				}
				if (bn->nargs == 0)
					fail(c, t.loc, "predicate not supported: an empty %s", ctx);
				t.kind = TK_BOOL;
				t.ty = TY_BOOL;
				t.node = bn;
				return t;
			}
		case N_(NULL_TEST):
			{
				Term		a = transform(c, n->null_test->arg);
				Node	   *nt = new_node(c, N_NULLTEST);

				nt->neg = n->null_test->nulltesttype == PG_QUERY__NULL_TEST_TYPE__IS_NOT_NULL;
				nt->l = c_alloc(c, sizeof(Operand));
				if (a.kind == TK_COL)
				{
					nt->l->kind = OPD_COL;
					nt->l->col = a.col;
					nt->l->src = a.ty;
				}
				else if (a.kind == TK_BOOL)
				{
					nt->l->kind = OPD_SUB;
					nt->l->sub = a.node;
				}
				else
				{
					nt->l->kind = OPD_CONST;
					nt->l->cval = a.val;
					nt->l->dv.null = a.val.isnull;
					nt->l->stable = a.stable;
					nt->l->poison = a.poison;
					nt->l->poison_loc = a.poison_loc;
					nt->l->poison_runtime = a.poison_runtime;
				}
				nt->l->arg = a.ty;
				t.kind = TK_BOOL;
				t.ty = TY_BOOL;
				t.node = nt;
				return t;
			}
		case N_(A_EXPR):
			{
				const PgQuery__AExpr *a = n->a_expr;

				t.kind = TK_BOOL;
				t.ty = TY_BOOL;
				if (a->kind == PG_QUERY__A__EXPR__KIND__AEXPR_IN)
					t.node = make_in(c, a);
				else if (a->kind == PG_QUERY__A__EXPR__KIND__AEXPR_LIKE ||
						 a->kind == PG_QUERY__A__EXPR__KIND__AEXPR_ILIKE)
					t.node = make_like(c, a);
				else
				{
					Term		l = transform(c, a->lexpr);
					Term		r = transform(c, a->rexpr);

					t.node = make_cmp(c, cmp_op(aexpr_op(a)), &l, &r, a->location);
				}
				return t;
			}
		default:
			refuse(c, t.loc, "this kind of expression");
	}
}

/* ================================================================================
 * canonical text and routing terms
 * ================================================================================ */

/* canon_const writes a constant as a typed literal. */
static void
canon_const(StrBuf *b, const Expr *e, const Datum *d)
{
	char		buf[96];

	if (d->isnull)
	{
		sb_puts(b, "NULL");
		if (d->ty != TY_UNKNOWN)
		{
			sb_puts(b, "::");
			sb_puts(b, types[d->ty].catname);
		}
		return;
	}
	switch (d->ty)
	{
		case TY_BOOL:
			sb_puts(b, d->v.b ? "true" : "false");
			return;
		case TY_UNKNOWN:
			sb_quoted(b, d->v.str.s, d->v.str.len, '\'');
			return;
		case TY_INT2:
		case TY_INT4:
		case TY_INT8:
			snprintf(buf, sizeof(buf), "'%lld'", (long long) d->v.i);
			sb_puts(b, buf);
			break;
		case TY_NUMERIC:
			{
				int32_t		scale = dec_min_scale(&d->v.num);
				char	   *s = malloc(dec_format_len(&d->v.num, scale));

				if (s == NULL)
				{
					b->oom = true;
					return;
				}
				dec_format(&d->v.num, scale, s);
				sb_quoted(b, s, strlen(s), '\'');
				free(s);
				break;
			}
		case TY_FLOAT4:
		case TY_FLOAT8:
			float_out(d->v.f, d->ty == TY_FLOAT4, e->loc, buf, sizeof(buf));
			sb_quoted(b, buf, strlen(buf), '\'');
			break;
		case TY_TEXT:
		case TY_VARCHAR:
		case TY_BPCHAR:
			sb_quoted(b, d->v.str.s, d->v.str.len, '\'');
			break;
		case TY_UUID:
			uuid_out(d->v.uuid, buf);
			sb_quoted(b, buf, strlen(buf), '\'');
			break;
		case TY_DATE:
			date_out(d->v.date, buf, sizeof(buf));
			sb_quoted(b, buf, strlen(buf), '\'');
			break;
		default:
			ts_out(d->v.ts, d->ty == TY_TIMESTAMPTZ, buf, sizeof(buf));
			sb_quoted(b, buf, strlen(buf), '\'');
			break;
	}
	sb_puts(b, "::");
	sb_puts(b, types[d->ty].catname);
}

static char *canon_node(const Expr *e, const Node *n);

static void
canon_operand(StrBuf *b, const Expr *e, const Operand *o)
{
	if (o->kind == OPD_COL)
	{
		const char *name = e->colnames[o->col];

		sb_quoted(b, name, strlen(name), '"');
	}
	else if (o->kind == OPD_CONST)
		canon_const(b, e, &o->cval);
	else
	{
		char	   *s = canon_node(e, o->sub);

		if (s == NULL)
			b->oom = true;
		else
			sb_puts(b, s);
		free(s);
	}
}

static int
cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* canon_join writes parts sorted and without duplicates, between open and close. */
static void
canon_join(StrBuf *b, char **parts, int n, const char *open, const char *sep, const char *close)
{
	qsort(parts, n, sizeof(char *), cmp_strp);
	sb_puts(b, open);
	for (int i = 0, k = 0; i < n; i++)
	{
		if (i > 0 && strcmp(parts[i], parts[i - 1]) == 0)
			continue;
		if (k++ > 0)
			sb_puts(b, sep);
		sb_puts(b, parts[i]);
	}
	sb_puts(b, close);
}

/* canon_node returns the canonical text of a node (malloc'd; NULL when out of memory). */
static char *
canon_node(const Expr *e, const Node *n)
{
	StrBuf		b = {NULL, 0, 0, false};

	switch (n->kind)
	{
		case N_CONST:
			sb_puts(&b, n->cval == EXPR_TRUE ? "true" : n->cval == EXPR_FALSE ? "false" : "NULL::bool");
			break;
		case N_COLBOOL:
			sb_quoted(&b, e->colnames[n->col], strlen(e->colnames[n->col]), '"');
			break;
		case N_NOT:
			{
				char	   *s = canon_node(e, n->args[0]);

				if (s == NULL)
					b.oom = true;
				sb_puts(&b, "(NOT ");
				sb_puts(&b, s != NULL ? s : "");
				sb_puts(&b, ")");
				free(s);
				break;
			}
		case N_AND:
		case N_OR:
			{
				char	  **parts = calloc(n->nargs, sizeof(char *));
				int			distinct = 0;

				if (parts == NULL)
				{
					b.oom = true;
					break;
				}
				for (int i = 0; i < n->nargs; i++)
					if ((parts[i] = canon_node(e, n->args[i])) == NULL)
						b.oom = true;
				if (!b.oom)
				{
					qsort(parts, n->nargs, sizeof(char *), cmp_strp);
					for (int i = 0; i < n->nargs; i++)
						distinct += i == 0 || strcmp(parts[i], parts[i - 1]) != 0;
					if (distinct == 1)
						sb_puts(&b, parts[0]);
					else
						canon_join(&b, parts, n->nargs, "(", n->kind == N_AND ? " AND " : " OR ", ")");
				}
				for (int i = 0; i < n->nargs; i++)
					free(parts[i]);
				free(parts);
				break;
			}
		case N_NULLTEST:
			sb_puts(&b, "(");
			canon_operand(&b, e, n->l);
			sb_puts(&b, n->neg ? " IS NOT NULL)" : " IS NULL)");
			break;
		case N_CMP:
			{
				/* the sides in text order (so a column goes first): 5 > x is x < 5 */
				static const int flipped[] = {CMP_EQ, CMP_NE, CMP_GT, CMP_GE, CMP_LT, CMP_LE};
				StrBuf		lb = {NULL, 0, 0, false},
							rb = {NULL, 0, 0, false};
				bool		swap;

				canon_operand(&lb, e, n->l);
				canon_operand(&rb, e, n->r);
				if (lb.oom || rb.oom || lb.p == NULL || rb.p == NULL)
					b.oom = true;
				else
				{
					swap = strcmp(lb.p, rb.p) > 0;
					sb_puts(&b, "(");
					sb_puts(&b, swap ? rb.p : lb.p);
					sb_puts(&b, " ");
					sb_puts(&b, cmp_names[swap ? flipped[n->op] : n->op]);
					sb_puts(&b, " ");
					sb_puts(&b, swap ? lb.p : rb.p);
					sb_puts(&b, ")");
				}
				free(lb.p);
				free(rb.p);
				break;
			}
		case N_LIKE:
			sb_puts(&b, "(");
			canon_operand(&b, e, n->l);
			sb_puts(&b, n->neg ? " NOT" : "");
			sb_puts(&b, n->icase ? " ILIKE " : " LIKE ");
			canon_operand(&b, e, n->r);
			sb_puts(&b, ")");
			break;
		case N_IN:
			{
				char	  **parts = calloc(n->nitems, sizeof(char *));

				if (parts == NULL)
				{
					b.oom = true;
					break;
				}
				for (int i = 0; i < n->nitems; i++)
				{
					StrBuf		ib = {NULL, 0, 0, false};

					canon_const(&ib, e, &n->items[i].cval);
					if (ib.oom || ib.p == NULL)
					{
						b.oom = true;
						free(ib.p);
					}
					else
						parts[i] = ib.p;
				}
				sb_puts(&b, "(");
				canon_operand(&b, e, n->l);
				if (!b.oom)
				{
					int			distinct = 0;

					/* one distinct item: x IN (a) is x = a */
					qsort(parts, n->nitems, sizeof(char *), cmp_strp);
					for (int i = 0; i < n->nitems; i++)
						distinct += i == 0 || strcmp(parts[i], parts[i - 1]) != 0;
					if (distinct == 1)
					{
						sb_puts(&b, n->neg ? " <> " : " = ");
						sb_puts(&b, parts[0]);
						sb_puts(&b, ")");
					}
					else
						canon_join(&b, parts, n->nitems, n->neg ? " NOT IN (" : " IN (", ", ", "))");
				}
				for (int i = 0; i < n->nitems; i++)
					free(parts[i]);
				free(parts);
				break;
			}
	}
	if (b.oom)
	{
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* add_eq_term records a routing term when the constant's text is the column's text form. */
static void
add_eq_term(Compiler *c, const Node *n)
{
	Expr	   *e = c->e;
	const Operand *o,
			   *k;
	char		buf[96];
	const char *text = NULL;

	if (n->kind == N_COLBOOL)
		text = "t";
	else if (n->kind == N_NOT && n->args[0]->kind == N_COLBOOL)
		text = "f", n = n->args[0];
	else if (n->kind == N_CMP && n->op == CMP_EQ)
	{
		o = n->l->kind == OPD_COL ? n->l : n->r;
		k = n->l->kind == OPD_COL ? n->r : n->l;
		if (o->kind != OPD_COL || k->kind != OPD_CONST || k->cval.isnull || o->rtrim)
			return;
		switch (o->src)
		{
			case TY_INT2:
			case TY_INT4:
			case TY_INT8:
				if (n->dom == DOM_EXACT && k->dv.v.d.special == DEC_NUM && dec_min_scale(&k->dv.v.d) == 0)
					text = dec_out(c, &k->dv.v.d, 0);
				break;
			case TY_TEXT:
			case TY_VARCHAR:
				if (o->arg == TY_TEXT && k->arg == TY_TEXT)
					text = k->cval.v.str.s;
				break;
			case TY_BOOL:
				text = k->cval.v.b ? "t" : "f";
				break;
			case TY_UUID:
				uuid_out(k->cval.v.uuid, buf);
				text = buf;
				break;
			case TY_DATE:
				if (o->arg == TY_DATE && k->arg == TY_DATE)
					date_out(k->cval.v.date, buf, sizeof(buf)), text = buf;
				break;
			case TY_TIMESTAMP:
			case TY_TIMESTAMPTZ:
				if (o->arg == o->src && k->arg == o->src)
					ts_out(k->cval.v.ts, o->src == TY_TIMESTAMPTZ, buf, sizeof(buf)), text = buf;
				break;
			default:
				break;
		}
		if (text == NULL)
			return;
		e->eq_cols[e->neq] = o->col;
		e->eq_consts[e->neq++] = text == buf ? c_strndup(c, buf, strlen(buf)) : text;
		return;
	}
	if (text != NULL)
	{
		e->eq_cols[e->neq] = n->col;
		e->eq_consts[e->neq++] = text;
	}
}

/* finish records the columns read and the routing terms. */
static void
finish(Compiler *c)
{
	Expr	   *e = c->e;
	const Node *root = e->root;
	int			nterms = root->kind == N_AND ? root->nargs : 1;

	e->read = c_alloc(c, sizeof(int) * (e->ncols + 1));
	for (int i = 0; i < e->ncols; i++)
		if (c->colused[i])
			e->read[e->nread++] = i;
	e->eq_cols = c_alloc(c, sizeof(int) * nterms);
	e->eq_consts = c_alloc(c, sizeof(char *) * nterms);
	for (int i = 0; i < nterms; i++)
		add_eq_term(c, root->kind == N_AND ? root->args[i] : root);
}

/* ================================================================================
 * the parser thread and the API
 * ================================================================================ */

#define QUERY_PREFIX	"SELECT 1 FROM t WHERE "
#define PARSER_STACK	((size_t) 64 << 20)	/* the grammar recurses ~10000 levels at most */
#define PB_MAX_DEPTH	(2 * EXPR_MAX_DEPTH + 24)	/* protobuf messages nest about twice */

/* What the parser thread is given and returns. */
typedef struct ParseJob
{
	const char *query;			/* in: the whole query */
	PgQuery__ParseResult *tree; /* out: the unpacked tree (rc 0) */
	int			rc;				/* out: 0 ok, 1 parse error, 2 too deep, 3 unreadable */
	char		message[256];	/* out: the parse error */
	int			cursorpos;		/* out: its 1-based position in query, 0 when unknown */
} ParseJob;

static const ProtobufCFieldDescriptor *
pb_field(const ProtobufCMessageDescriptor *d, uint32_t id)
{
	for (unsigned i = 0; i < d->n_fields; i++)
		if (d->fields[i].id == id)
			return &d->fields[i];
	return NULL;
}

static bool
pb_varint(const uint8_t *buf, size_t end, size_t *pos, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8_t		b;

		if (*pos >= end)
			return false;
		b = buf[(*pos)++];
		*v |= (uint64_t) (b & 0x7F) << shift;
		if ((b & 0x80) == 0)
			return true;
	}
	return false;
}

/*
 * pb_depth_ok walks the serialized tree without recursing and says whether messages
 * nest at most limit deep, so that unpacking it (which recurses) is bounded.
 */
static bool
pb_depth_ok(const uint8_t *buf, size_t len, const ProtobufCMessageDescriptor *top, int limit)
{
	struct
	{
		const ProtobufCMessageDescriptor *d;	/* the message's type */
		size_t		end;		/* where it ends */
	}			st[PB_MAX_DEPTH + 1];
	int			sp = 0;
	size_t		pos = 0;

	if (limit > PB_MAX_DEPTH)
		limit = PB_MAX_DEPTH;
	st[0].d = top;
	st[0].end = len;
	for (;;)
	{
		uint64_t	key,
					v;

		while (sp >= 0 && pos >= st[sp].end)
			sp--;
		if (sp < 0)
			return true;
		if (!pb_varint(buf, st[sp].end, &pos, &key))
			return false;
		switch (key & 7)
		{
			case 0:
				if (!pb_varint(buf, st[sp].end, &pos, &v))
					return false;
				break;
			case 1:
				pos += 8;
				break;
			case 5:
				pos += 4;
				break;
			case 2:
				{
					const ProtobufCFieldDescriptor *f;

					if (!pb_varint(buf, st[sp].end, &pos, &v) || v > st[sp].end - pos)
						return false;
					f = pb_field(st[sp].d, (uint32_t) (key >> 3));
					if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE)
					{
						if (sp + 1 > limit)
							return false;
						sp++;
						st[sp].d = f->descriptor;
						st[sp].end = pos + v;
					}
					else
						pos += v;
					break;
				}
			default:
				return false;
		}
		if (pos > st[sp].end)
			return false;
	}
}

static void *
parse_main(void *arg)
{
	ParseJob   *j = arg;
	PgQueryProtobufParseResult r = pg_query_parse_protobuf(j->query);

	if (r.error != NULL)
	{
		j->rc = 1;
		snprintf(j->message, sizeof(j->message), "%s",
				 r.error->message != NULL ? r.error->message : "syntax error");
		j->cursorpos = r.error->cursorpos;
	}
	else if (!pb_depth_ok((const uint8_t *) r.parse_tree.data, r.parse_tree.len,
						  &pg_query__parse_result__descriptor, PB_MAX_DEPTH))
		j->rc = 2;
	else
	{
		j->tree = pg_query__parse_result__unpack(NULL, r.parse_tree.len, (const uint8_t *) r.parse_tree.data);
		j->rc = j->tree != NULL ? 0 : 3;
	}
	pg_query_free_protobuf_parse_result(r);
	return NULL;
}

/* run_parser runs parse_main on a thread with a large stack; -1 when it cannot start. */
static int
run_parser(ParseJob *j)
{
	pthread_attr_t attr;
	pthread_t	th;
	int			rc;

	if (pthread_attr_init(&attr) != 0)
		return -1;
	rc = pthread_attr_setstacksize(&attr, PARSER_STACK);
	if (rc == 0)
		rc = pthread_create(&th, &attr, parse_main, j);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		return -1;
	pthread_join(th, NULL);
	return 0;
}

static void
set_err(char *err, size_t errlen, const char *msg)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", msg);
}

int
expr_compile(const char *sql, const ExprSchema *schema, ExprClaimFn claim, void *claim_arg,
			 Expr **out, char *err, size_t errlen)
{
	Compiler   *c;
	Expr	   *e;
	size_t		len;
	char	   *query;
	ParseJob	job;
	const PgQuery__Node *where;

	if (out != NULL)
		*out = NULL;
	set_err(err, errlen, "");
	if (sql == NULL || schema == NULL || out == NULL || (schema->ncols > 0 && schema->cols == NULL) ||
		schema->ncols < 0)
	{
		set_err(err, errlen, "expr_compile: no predicate, schema or result pointer");
		return -1;
	}
	len = strlen(sql);
	if (len > EXPR_MAX_LEN)
	{
		set_err(err, errlen, "predicate not supported: a predicate longer than 1 MB");
		return -1;
	}
	if (!utf8_valid(sql, len))
	{
		set_err(err, errlen, "invalid byte sequence for encoding \"UTF8\" in the predicate");
		return -1;
	}
	if (strspn(sql, " \t\r\n\f\v") == len)
	{
		set_err(err, errlen, "predicate not supported: an empty predicate; use 'true' or 'false'");
		return -1;
	}

	c = calloc(1, sizeof(Compiler));
	e = calloc(1, sizeof(Expr));
	query = malloc(sizeof(QUERY_PREFIX) + len);
	if (c == NULL || e == NULL || query == NULL)
	{
		free(c);
		free(e);
		free(query);
		set_err(err, errlen, "out of memory compiling the predicate");
		return -1;
	}
	c->e = e;
	c->pred = sql;
	c->offset = (int) strlen(QUERY_PREFIX);
	c->schema = schema;
	c->claim = claim;
	c->claim_arg = claim_arg;
	e->loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t) 0);
	e->loc_utf8 = e->loc != (locale_t) 0;
	if (!e->loc_utf8)
		e->loc = newlocale(LC_ALL_MASK, "C", (locale_t) 0);
	memcpy(query, QUERY_PREFIX, c->offset);
	memcpy(query + c->offset, sql, len + 1);

	memset(&job, 0, sizeof(job));
	job.query = query;
	if (e->loc == (locale_t) 0)
		snprintf(c->msg, sizeof(c->msg), "cannot create the C locale: %s", strerror(errno));
	else if (run_parser(&job) != 0)
		snprintf(c->msg, sizeof(c->msg), "cannot start the predicate parser's thread");
	else if (job.rc == 1)
	{
		int			at = job.cursorpos - 1 - c->offset;

		if (at >= 0 && (size_t) at <= len)
			snprintf(c->msg, sizeof(c->msg), "%s (at character %d of the predicate)", job.message, at + 1);
		else
			snprintf(c->msg, sizeof(c->msg), "%s", job.message);
	}
	else if (job.rc == 2)
		snprintf(c->msg, sizeof(c->msg), "predicate nested too deeply (more than %d levels)", EXPR_MAX_DEPTH);
	else if (job.rc == 3)
		snprintf(c->msg, sizeof(c->msg), "cannot read the predicate's parse tree");
	if (job.rc != 0 || c->msg[0] != '\0')
		goto failed;

	if (setjmp(c->fail) != 0)
		goto failed;
	e->ncols = schema->ncols;
	e->colnames = c_alloc(c, sizeof(char *) * (e->ncols + 1));
	c->coltypes = c_alloc(c, sizeof(Ty) * (e->ncols + 1));
	c->colused = c_alloc(c, sizeof(bool) * (e->ncols + 1));
	for (int i = 0; i < e->ncols; i++)
	{
		const char *name = schema->cols[i].name != NULL ? schema->cols[i].name : "";

		e->colnames[i] = c_strndup(c, name, strlen(name));
		c->coltypes[i] = ty_from_oid(schema->cols[i].type_oid);
	}
	where = check_statement(c, job.tree);
	e->root = to_bool(c, transform(c, where), "WHERE");
	pg_fold(c, e->root);
	e->root = fold(c, e->root);
	memset(c->colused, 0, sizeof(bool) * (e->ncols + 1));
	mark_columns(c, e->root);
	finish(c);

	pg_query__parse_result__free_unpacked(job.tree, NULL);
	free(query);
	free(c);
	*out = e;
	return 0;

failed:
	set_err(err, errlen, c->msg[0] != '\0' ? c->msg : "cannot compile the predicate");
	if (job.tree != NULL)
		pg_query__parse_result__free_unpacked(job.tree, NULL);
	free(query);
	free(c);
	expr_free(e);
	return -1;
}

ExprBool
expr_eval(const Expr *e, const char *const *values)
{
	if (e == NULL || e->root == NULL || (values == NULL && e->nread > 0))
		return EXPR_NULL;
	return eval_node(e, e->root, values);
}

int
expr_eq_terms(const Expr *e, int max, int *cols, const char **consts)
{
	int			n = 0;

	if (e == NULL)
		return 0;
	for (int i = 0; i < e->neq && n < max; i++, n++)
	{
		cols[n] = e->eq_cols[i];
		consts[n] = e->eq_consts[i];
	}
	return n;
}

char *
expr_canonical(const Expr *e)
{
	if (e == NULL || e->root == NULL)
		return NULL;
	return canon_node(e, e->root);
}

int
expr_columns(const Expr *e, int max, int *cols)
{
	if (e == NULL)
		return 0;
	for (int i = 0; i < e->nread && i < max; i++)
		cols[i] = e->read[i];
	return e->nread;
}

void
expr_free(Expr *e)
{
	if (e == NULL)
		return;
	arena_free(e->arena);
	if (e->loc != (locale_t) 0)
		freelocale(e->loc);
	free(e);
}
