/*
 * gateway/expr_int.h -- the WHERE-clause evaluator's private declarations, shared by its files.
 *
 * Private to the evaluator (other modules include expr.h): its types, the compiled tree,
 * and the functions its files share, prefixed expr_, under the name of the file that
 * defines and documents them. Everything else is static in its file.
 */
#ifndef FERRY_EXPR_INT_H
#define FERRY_EXPR_INT_H

#include <locale.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pg_query/pg_query.pb-c.h>

#include "expr.h"

/* ================================================================================
 * types
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

/* expr_type.c: pg_type facts of each Ty. */
extern const TypeInfo expr_types[];

static inline bool
ty_is_int(Ty t)
{
	return t == TY_INT2 || t == TY_INT4 || t == TY_INT8;
}

static inline bool
ty_is_string(Ty t)
{
	return t == TY_TEXT || t == TY_VARCHAR || t == TY_BPCHAR;
}

static inline bool
ty_is_number(Ty t)
{
	return ty_is_int(t) || t == TY_NUMERIC || t == TY_FLOAT4 || t == TY_FLOAT8;
}

/* ================================================================================
 * the Expr and one compilation (expr.c)
 * ================================================================================ */

/* An arena block (expr.c). */
typedef struct Block Block;

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

/* expr.c: errors, which unwind the compilation, and allocation in its arena. */
void		expr_fail(Compiler *c, int location, const char *fmt, ...)
			__attribute__((noreturn, format(printf, 3, 4)));
void		expr_plan_fail(Compiler *c, int location, const char *fmt, ...)
			__attribute__((noreturn, format(printf, 3, 4)));
void		expr_plan_fail_noctx(Compiler *c, int location, const char *fmt, ...)
			__attribute__((noreturn, format(printf, 3, 4)));
void	   *expr_c_alloc(Compiler *c, size_t n);
char	   *expr_c_strndup(Compiler *c, const char *s, size_t n);

/*
 * input_fail is for input functions' errors: immediate for a literal (Postgres converts
 * it when parsing), lazy for a claim (Postgres converts it per row); the message then
 * names the claim itself, so ctx is not repeated.
 */
#define input_fail(c, loc, ...) \
	((c)->lazy_input ? expr_plan_fail_noctx(c, loc, __VA_ARGS__) : expr_fail(c, loc, __VA_ARGS__))

/* ================================================================================
 * text helpers (expr_value.c)
 * ================================================================================ */

/* The C locale's isspace and isdigit, which the Postgres input functions use. */
static inline bool
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static inline bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static inline char
ascii_lower(char ch)
{
	return (ch >= 'A' && ch <= 'Z') ? (char) (ch + 'a' - 'A') : ch;
}

/* rtrim_len: the length of s[0..len) without trailing spaces (bpchar semantics). */
static inline size_t
rtrim_len(const char *s, size_t len)
{
	while (len > 0 && s[len - 1] == ' ')
		len--;
	return len;
}

bool		expr_ci_prefix(const char *s, const char *word);
bool		expr_ci_equal(const char *s, size_t len, const char *word);
bool		expr_utf8_valid(const char *s, size_t len);

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

static inline char
dec_digit(const Dec *d, int32_t i)
{
	return i < d->n1 ? d->d1[i] : d->d2[i - d->n1];
}

static inline int32_t
dec_ndigits(const Dec *d)
{
	return d->n1 + d->n2;
}

/* expr_value.c */
bool		expr_dec_is_zero(const Dec *d);
int			expr_dec_cmp(const Dec *a, const Dec *b);
bool		expr_dec_read_output(const char *s, Dec *d);
Dec			expr_dec_input(Compiler *c, const char *str, int location, const char *ctx);
Dec			expr_dec_from_int(Compiler *c, int64_t v);
Dec			expr_dec_round(Compiler *c, const Dec *in, int scale);
size_t		expr_dec_format_len(const Dec *d, int32_t dscale);
void		expr_dec_format(const Dec *d, int32_t dscale, char *buf);
char	   *expr_dec_out(Compiler *c, const Dec *d, int32_t dscale);
int32_t		expr_dec_min_scale(const Dec *d);

/* ================================================================================
 * scalar input and output (expr_value.c)
 * ================================================================================ */

enum
{
	IN_OK = 0,					/* parsed */
	IN_SYNTAX,					/* invalid input syntax */
	IN_RANGE					/* out of range */
};

int			expr_int_input(const char *s, Ty t, int64_t *out);
int			expr_float_input(const char *s, bool f4, locale_t loc, double *out);
bool		expr_bool_input(const char *s, bool *out);
bool		expr_uuid_input(const char *s, uint8_t out[16]);
void		expr_uuid_out(const uint8_t u[16], char buf[37]);
void		expr_float_out(double v, bool f4, locale_t loc, char *buf, size_t len);

/* ================================================================================
 * dates and timestamps (expr_time.c)
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

int			expr_dt_parse(const char *s, locale_t loc, DtIn *d);
bool		expr_dt_date(const DtIn *d, int32_t *out);
bool		expr_dt_timestamp(const DtIn *d, bool tz, int64_t *out);
void		expr_date_out(int32_t date, char *buf, size_t len);
void		expr_ts_out(int64_t t, bool tz, char *buf, size_t len);
bool		expr_ts_round(int64_t *t, int prec);
i128		expr_date_key(int32_t d);
i128		expr_ts_key(int64_t t);

/* ================================================================================
 * typed constants, casts and type resolution (expr_type.c)
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

/* The type modifiers: varchar(n)/char(n) n; numeric(p,s) p << 16 | s; timestamp(p) p. */
#define TYPMOD_NUMERIC(p, s)	((int32_t) (((uint32_t) (p) << 16) | ((uint32_t) (s) & 0xFFFF)))
#define TYPMOD_PREC(t)			((int) ((t) >> 16))
#define TYPMOD_SCALE(t)			((int) (int16_t) ((t) & 0xFFFF))

Ty			expr_ty_from_oid(uint32_t oid);
Datum		expr_coerce(Compiler *c, Datum in, Ty to, int32_t typmod, bool explicit, int loc, const char *ctx);
Datum		expr_lazy_coerce(Compiler *c, Datum in, Ty to, int32_t typmod, bool explicit, int loc, const char *claim_ctx,
							 const char **poison, int *poison_loc);
bool		expr_resolve_cmp(Ty l, Ty r, Ty *al, Ty *ar);
bool		expr_resolve_like(Ty l, Ty r, Ty *al, Ty *ar);
int			expr_select_common(const Ty *t, int n);

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
	const char *poison;			/* OPD_CONST: a cast that fails when folded (see expr_plan_fail) */
	int			poison_loc;		/* its location */
	uint8_t		poison_runtime; /* the cast is of a claim: Postgres runs it per row */
} Operand;

enum
{
	CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE
};

/* expr_subset.c: the comparison operators' names, by CMP_*. */
extern const char *const expr_cmp_names[];

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

/* expr_eval.c: evaluation, and LIKE patterns */
#define LIKE_MAX_DEPTH	256		/* % groups a pattern may nest */

ExprBool	expr_eval_node(const Expr *e, const Node *n, const char *const *values);
bool		expr_pattern_ends_in_escape(const char *p, size_t len);
int			expr_pattern_groups(const char *p, size_t len);
size_t		expr_lower_text(const Expr *e, const char *s, size_t len, char *out);

/* ================================================================================
 * from parse tree to compiled tree
 * ================================================================================ */

/* expr_subset.c: the subset, over libpg_query's tree */
#define N_(x) PG_QUERY__NODE__NODE_##x

const char *expr_str_node(const PgQuery__Node *n);
int			expr_node_location(const PgQuery__Node *n);
void		expr_refuse(Compiler *c, int location, const char *what) __attribute__((noreturn));
Ty			expr_cast_target(Compiler *c, const PgQuery__TypeName *tn, int loc, int32_t *typmod);
int			expr_find_column(const Compiler *c, const char *name);
const char *expr_aexpr_op(const PgQuery__AExpr *a);
int			expr_cmp_op(const char *op);
const PgQuery__Node *expr_check_statement(Compiler *c, const PgQuery__ParseResult *pr);

/* expr_typing.c: typing, the parse tree to a compiled tree */
Node	   *expr_transform_where(Compiler *c, const PgQuery__Node *where);
Node	   *expr_new_node(Compiler *c, NodeKind kind);
DVal		expr_const_dval(Compiler *c, const Datum *d, Dom dom, bool rtrim);
void		expr_add_arg(Compiler *c, Node *n, Node *a, int *cap);

/* expr_fold.c: constant folding */
int			expr_pg_fold(Compiler *c, const Node *n);
Node	   *expr_fold(Compiler *c, Node *n);
void		expr_mark_columns(Compiler *c, const Node *n);

/* expr_canon.c: routing terms */
void		expr_finish(Compiler *c);

#endif							/* FERRY_EXPR_INT_H */
