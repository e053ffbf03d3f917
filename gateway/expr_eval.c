/*
 * gateway/expr_eval.c -- the WHERE-clause evaluator's evaluation: expr_eval over a compiled
 * tree and one row of column values in text form, with three-valued logic; LIKE and ILIKE.
 *
 * A compiled Expr is immutable: nothing here writes to it, so threads may share it.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "expr_int.h"

/* ================================================================================
 * the compiled tree
 * ================================================================================ */

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
		ExprBool	b = expr_eval_node(e, o->sub, values);

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
				else if (!expr_bool_input(s, &b))
					return false;
				out->v.b = b ? EXPR_TRUE : EXPR_FALSE;
				return true;
			}
		case DOM_EXACT:
			return expr_dec_read_output(s, &out->v.d);
		case DOM_FLOAT:
			return expr_float_input(s, o->src == TY_FLOAT4, e->loc, &out->v.f) == IN_OK;
		case DOM_TEXT:
			out->v.t.s = s;
			out->v.t.len = strlen(s);
			if (o->rtrim)
				out->v.t.len = rtrim_len(s, out->v.t.len);
			return true;
		case DOM_UUID:
			return expr_uuid_input(s, out->v.u);
		case DOM_TIME:
			{
				DtIn		dt;
				int32_t		d;
				int64_t		t;

				if (expr_dt_parse(s, e->loc, &dt) != DT_OK)
					return false;
				if (o->src == TY_DATE)
				{
					if (!expr_dt_date(&dt, &d))
						return false;
					out->v.k = expr_date_key(d);
				}
				else
				{
					if (!expr_dt_timestamp(&dt, o->src == TY_TIMESTAMPTZ, &t))
						return false;
					out->v.k = expr_ts_key(t);
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
			return expr_dec_cmp(&a->v.d, &b->v.d);
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

ExprBool
expr_eval_node(const Expr *e, const Node *n, const char *const *values)
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
				if (!expr_bool_input(s, &b))
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
					ExprBool	v = expr_eval_node(e, n->args[i], values);

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
				ExprBool	v = expr_eval_node(e, n->args[0], values);

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
					isnull = expr_eval_node(e, o->sub, values) == EXPR_NULL;
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

ExprBool
expr_eval(const Expr *e, const char *const *values)
{
	if (e == NULL || e->root == NULL || (values == NULL && e->nread > 0))
		return EXPR_NULL;
	return expr_eval_node(e, e->root, values);
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

/* expr_pattern_ends_in_escape: whether a pattern ends with an unescaped backslash. */
bool
expr_pattern_ends_in_escape(const char *p, size_t len)
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

/* expr_pattern_groups: the number of % groups (the matcher's deepest recursion). */
int
expr_pattern_groups(const char *p, size_t len)
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
 * expr_lower_text writes s[0..len) lowercased into out (room for 2 * len + 4 bytes) and
 * returns the length: towlower per character in the C.UTF-8 locale, as Postgres's
 * lower() does in a C.UTF-8 database (ASCII only without that locale).
 */
size_t
expr_lower_text(const Expr *e, const char *s, size_t len, char *out)
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
			a.v.t.len = expr_lower_text(e, a.v.t.s, a.v.t.len, ta);
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
			b.v.t.len = expr_lower_text(e, b.v.t.s, b.v.t.len, tb);
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
