/*
 * gateway/expr_canon.c -- the WHERE-clause evaluator's canonical text and routing terms:
 * expr_canonical, expr_eq_terms and expr_columns, and what expr_compile records for them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_int.h"

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
			sb_puts(b, expr_types[d->ty].catname);
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
				int32_t		scale = expr_dec_min_scale(&d->v.num);
				char	   *s = malloc(expr_dec_format_len(&d->v.num, scale));

				if (s == NULL)
				{
					b->oom = true;
					return;
				}
				expr_dec_format(&d->v.num, scale, s);
				sb_quoted(b, s, strlen(s), '\'');
				free(s);
				break;
			}
		case TY_FLOAT4:
		case TY_FLOAT8:
			expr_float_out(d->v.f, d->ty == TY_FLOAT4, e->loc, buf, sizeof(buf));
			sb_quoted(b, buf, strlen(buf), '\'');
			break;
		case TY_TEXT:
		case TY_VARCHAR:
		case TY_BPCHAR:
			sb_quoted(b, d->v.str.s, d->v.str.len, '\'');
			break;
		case TY_UUID:
			expr_uuid_out(d->v.uuid, buf);
			sb_quoted(b, buf, strlen(buf), '\'');
			break;
		case TY_DATE:
			expr_date_out(d->v.date, buf, sizeof(buf));
			sb_quoted(b, buf, strlen(buf), '\'');
			break;
		default:
			expr_ts_out(d->v.ts, d->ty == TY_TIMESTAMPTZ, buf, sizeof(buf));
			sb_quoted(b, buf, strlen(buf), '\'');
			break;
	}
	sb_puts(b, "::");
	sb_puts(b, expr_types[d->ty].catname);
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
					sb_puts(&b, expr_cmp_names[swap ? flipped[n->op] : n->op]);
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
				if (n->dom == DOM_EXACT && k->dv.v.d.special == DEC_NUM && expr_dec_min_scale(&k->dv.v.d) == 0)
					text = expr_dec_out(c, &k->dv.v.d, 0);
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
				expr_uuid_out(k->cval.v.uuid, buf);
				text = buf;
				break;
			case TY_DATE:
				if (o->arg == TY_DATE && k->arg == TY_DATE)
					expr_date_out(k->cval.v.date, buf, sizeof(buf)), text = buf;
				break;
			case TY_TIMESTAMP:
			case TY_TIMESTAMPTZ:
				if (o->arg == o->src && k->arg == o->src)
					expr_ts_out(k->cval.v.ts, o->src == TY_TIMESTAMPTZ, buf, sizeof(buf)), text = buf;
				break;
			default:
				break;
		}
		if (text == NULL)
			return;
		e->eq_cols[e->neq] = o->col;
		e->eq_consts[e->neq++] = text == buf ? expr_c_strndup(c, buf, strlen(buf)) : text;
		return;
	}
	if (text != NULL)
	{
		e->eq_cols[e->neq] = n->col;
		e->eq_consts[e->neq++] = text;
	}
}

/* expr_finish records the columns read and the routing terms. */
void
expr_finish(Compiler *c)
{
	Expr	   *e = c->e;
	const Node *root = e->root;
	int			nterms = root->kind == N_AND ? root->nargs : 1;

	e->read = expr_c_alloc(c, sizeof(int) * (e->ncols + 1));
	for (int i = 0; i < e->ncols; i++)
		if (c->colused[i])
			e->read[e->nread++] = i;
	e->eq_cols = expr_c_alloc(c, sizeof(int) * nterms);
	e->eq_consts = expr_c_alloc(c, sizeof(char *) * nterms);
	for (int i = 0; i < nterms; i++)
		add_eq_term(c, root->kind == N_AND ? root->args[i] : root);
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
