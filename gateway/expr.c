/*
 * gateway/expr.c -- the WHERE-clause evaluator: shape WHERE clauses and rule predicates,
 * compiled with libpg_query and evaluated over decoded rows the way Postgres 15 would.
 * This file: the arena, compile-time errors, the parser thread, expr_compile and expr_free.
 *
 * expr.h holds the interface, the supported subset and the semantics; expr_int.h what the
 * evaluator's files share. The files, in the order a predicate meets them:
 *
 *   expr.c          the arena, errors, libpg_query on a large stack, expr_compile, expr_free
 *   expr_subset.c   the subset: the walk of extension/predicate.c over the parse tree
 *   expr_typing.c   typing: the parse tree to a compiled tree
 *   expr_type.c     the 14 supported types, typed constants and casts, type resolution
 *   expr_value.c    text helpers; decimals, int, float, bool and uuid input and output
 *   expr_time.c     dates and timestamps: ISO 8601 input, Postgres output, typmod rounding
 *   expr_fold.c     constant folding, as Postgres's planner folds
 *   expr_canon.c    canonical text and routing terms: expr_canonical, expr_eq_terms, ...
 *   expr_eval.c     expr_eval over the compiled tree; LIKE and ILIKE's case folding
 *
 * Compile-time errors unwind with longjmp to expr_compile (like ereport): every
 * allocation of a compilation is in the Expr's arena or is released there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "expr_int.h"

/* ================================================================================
 * the arena
 * ================================================================================ */

/* An arena block; the data follows the header, which keeps it 16-byte aligned. */
struct Block
{
	struct Block *next;			/* the previous block */
	size_t		used;			/* bytes handed out */
	size_t		cap;			/* bytes of data */
	size_t		pad;			/* keeps sizeof(Block) a multiple of 16 */
};

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
 * errors
 * ================================================================================ */

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
 * expr_fail formats an error and unwinds the compilation. location is a byte offset in the
 * parsed query (libpg_query's), or -1: when it falls inside the predicate, the message
 * ends with where ("at \"...\"").
 */
void __attribute__((noreturn, format(printf, 3, 4)))
expr_fail(Compiler *c, int location, const char *fmt, ...)
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
 * expr_plan_fail is expr_fail() for the errors Postgres raises only when the planner
 * folds a cast of a constant (numeric(p,s) overflow, 100000::int2, ...): inside
 * expr_lazy_coerce the error is kept as the operand's "poison" and raised only if
 * Postgres would reach it.
 */
void __attribute__((noreturn, format(printf, 3, 4)))
expr_plan_fail(Compiler *c, int location, const char *fmt, ...)
{
	va_list		ap;

	if (c->lazy == NULL)
	{
		char		msg[512];

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		expr_fail(c, location, "%s%s", msg, c->claim_ctx != NULL ? c->claim_ctx : "");
	}
	va_start(ap, fmt);
	vsnprintf(c->lazy_msg, sizeof(c->lazy_msg), fmt, ap);
	va_end(ap);
	if (c->claim_ctx != NULL && strlen(c->lazy_msg) + strlen(c->claim_ctx) < sizeof(c->lazy_msg))
		strcat(c->lazy_msg, c->claim_ctx);
	c->lazy_loc = location;
	longjmp(*c->lazy, 1);
}

/* expr_plan_fail_noctx is expr_plan_fail without the claim context (see input_fail). */
void __attribute__((noreturn, format(printf, 3, 4)))
expr_plan_fail_noctx(Compiler *c, int location, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(c->lazy_msg, sizeof(c->lazy_msg), fmt, ap);
	va_end(ap);
	c->lazy_loc = location;
	longjmp(*c->lazy, 1);
}

void *
expr_c_alloc(Compiler *c, size_t n)
{
	void	   *p = arena_alloc(&c->e->arena, n);

	if (p == NULL)
		expr_fail(c, -1, "out of memory compiling the predicate");
	return p;
}

char *
expr_c_strndup(Compiler *c, const char *s, size_t n)
{
	char	   *p = expr_c_alloc(c, n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* ================================================================================
 * the parser thread, expr_compile and expr_free
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
	if (!expr_utf8_valid(sql, len))
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
	e->colnames = expr_c_alloc(c, sizeof(char *) * (e->ncols + 1));
	c->coltypes = expr_c_alloc(c, sizeof(Ty) * (e->ncols + 1));
	c->colused = expr_c_alloc(c, sizeof(bool) * (e->ncols + 1));
	for (int i = 0; i < e->ncols; i++)
	{
		const char *name = schema->cols[i].name != NULL ? schema->cols[i].name : "";

		e->colnames[i] = expr_c_strndup(c, name, strlen(name));
		c->coltypes[i] = expr_ty_from_oid(schema->cols[i].type_oid);
	}
	where = expr_check_statement(c, job.tree);
	e->root = expr_transform_where(c, where);
	expr_pg_fold(c, e->root);
	e->root = expr_fold(c, e->root);
	memset(c->colused, 0, sizeof(bool) * (e->ncols + 1));
	expr_mark_columns(c, e->root);
	expr_finish(c);

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
