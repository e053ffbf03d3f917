/*
 * gateway/expr_typing.c -- the WHERE-clause evaluator's typing: the checked parse tree to a
 * compiled tree, with columns resolved, claims looked up, and operators, casts and IN lists
 * typed as Postgres 15 types them.
 */
#include <stdio.h>
#include <string.h>

#include "expr_int.h"

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

Node *
expr_new_node(Compiler *c, NodeKind kind)
{
	Node	   *n = expr_c_alloc(c, sizeof(Node));

	n->kind = (uint8_t) kind;
	return n;
}

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

/* expr_const_dval puts a constant (already of the operator's argument type) in its domain. */
DVal
expr_const_dval(Compiler *c, const Datum *d, Dom dom, bool rtrim)
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
			dv.v.d = d->ty == TY_NUMERIC ? d->v.num : expr_dec_from_int(c, d->v.i);
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
			dv.v.k = d->ty == TY_DATE ? expr_date_key(d->v.date) : expr_ts_key(d->v.ts);
			break;
	}
	return dv;
}

static void
check_not_other(Compiler *c, const Term *t)
{
	if (t->kind == TK_COL && t->ty == TY_OTHER)
		expr_fail(c, t->loc, "column \"%s\" has a type the gateway cannot evaluate (type OID %u): "
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
				o->cval = expr_lazy_coerce(c, t->val, arg, -1, false, t->loc, t->stable ? "" : NULL, &o->poison,
										   &o->poison_loc);
			if (o->poison != NULL)
			{
				o->cval.ty = (uint8_t) arg;
				o->cval.isnull = true;
			}
			o->dv = expr_const_dval(c, &o->cval, dom, mode == RT_CMP && arg == TY_BPCHAR);
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
		expr_fail(c, t.poison_loc, "%s", t.poison);
	if (t.kind == TK_BOOL)
		return t.node;
	if (t.kind == TK_COL && t.ty == TY_BOOL)
	{
		n = expr_new_node(c, N_COLBOOL);
		n->col = t.col;
		return n;
	}
	if (t.kind == TK_CONST && (t.ty == TY_BOOL || t.ty == TY_UNKNOWN))
	{
		Datum		d = expr_coerce(c, t.val, TY_BOOL, -1, false, t.loc, "");

		n = expr_new_node(c, N_CONST);
		n->cval = d.isnull ? EXPR_NULL : d.v.b ? EXPR_TRUE : EXPR_FALSE;
		return n;
	}
	check_not_other(c, &t);
	expr_fail(c, t.loc, "argument of %s must be type boolean, not type %s", ctx, expr_types[t.ty].name);
}

/* expr_add_arg appends a to an AND/OR node, splicing in the arguments of a node of the same kind. */
void
expr_add_arg(Compiler *c, Node *n, Node *a, int *cap)
{
	if (a->kind == n->kind && (n->kind == N_AND || n->kind == N_OR))
	{
		for (int i = 0; i < a->nargs; i++)
			expr_add_arg(c, n, a->args[i], cap);
		return;
	}
	if (n->nargs == *cap)
	{
		int			ncap = *cap ? *cap * 2 : 4;
		Node	  **args = expr_c_alloc(c, sizeof(Node *) * ncap);

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
	if (!expr_resolve_cmp((Ty) l->ty, (Ty) r->ty, &al, &ar))
		expr_fail(c, loc, "operator does not exist: %s %s %s", expr_types[l->ty].name, expr_cmp_names[op], expr_types[r->ty].name);
	n = expr_new_node(c, N_CMP);
	n->op = (uint8_t) op;
	n->dom = (uint8_t) dom_of(al);
	n->l = expr_c_alloc(c, sizeof(Operand));
	n->r = expr_c_alloc(c, sizeof(Operand));
	make_operand(c, l, al, (Dom) n->dom, RT_CMP, n->l);
	make_operand(c, r, ar, (Dom) n->dom, RT_CMP, n->r);
	return n;
}

/* make_in is transformAExprIn: = ANY / <> ALL over the common type, else OR/AND of comparisons. */
static Node *
make_in(Compiler *c, const PgQuery__AExpr *a)
{
	bool		notin = strcmp(expr_aexpr_op(a), "<>") == 0;
	int			op = notin ? CMP_NE : CMP_EQ;
	const PgQuery__List *list = a->rexpr->list;
	int			n = (int) list->n_items;
	Term		l = transform(c, a->lexpr);
	Term	   *items = expr_c_alloc(c, sizeof(Term) * (n + 1));
	Ty		   *tys = expr_c_alloc(c, sizeof(Ty) * (n + 1));
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
		int			common = expr_select_common(tys, n + 1);
		Ty			al,
					ar;

		if (common >= 0)
		{
			Node	   *in = expr_new_node(c, N_IN);

			if (!expr_resolve_cmp((Ty) l.ty, (Ty) common, &al, &ar))
				expr_fail(c, a->location, "operator does not exist: %s %s %s", expr_types[l.ty].name, expr_cmp_names[op],
						  expr_types[common].name);
			in->op = (uint8_t) op;
			in->neg = notin;
			in->dom = (uint8_t) dom_of(al);
			in->l = expr_c_alloc(c, sizeof(Operand));
			make_operand(c, &l, al, (Dom) in->dom, RT_CMP, in->l);
			in->nitems = n;
			in->items = expr_c_alloc(c, sizeof(Operand) * n);
			for (int i = 0; i < n; i++)
			{
				Term		t = items[i];

				if (t.poison == NULL)
					t.val = expr_lazy_coerce(c, t.val, (Ty) common, -1, false, t.loc, t.stable ? "" : NULL, &t.poison,
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
			res = expr_new_node(c, notin ? N_AND : N_OR);
		expr_add_arg(c, res, cmp, &cap);
	}
	return res;
}

static Node *
make_like(Compiler *c, const PgQuery__AExpr *a)
{
	const char *op = expr_aexpr_op(a);
	Term		l = transform(c, a->lexpr);
	Term		r = transform(c, a->rexpr);
	Ty			al,
				ar;
	Node	   *n;

	check_not_other(c, &l);
	check_not_other(c, &r);
	if (!expr_resolve_like((Ty) l.ty, (Ty) r.ty, &al, &ar))
		expr_fail(c, a->location, "operator does not exist: %s %s %s", expr_types[l.ty].name, op, expr_types[r.ty].name);
	n = expr_new_node(c, N_LIKE);
	n->neg = op[0] == '!';
	n->icase = a->kind == PG_QUERY__A__EXPR__KIND__AEXPR_ILIKE;
	n->l = expr_c_alloc(c, sizeof(Operand));
	n->r = expr_c_alloc(c, sizeof(Operand));
	make_operand(c, &l, al, DOM_TEXT, RT_LIKE_LEFT, n->l);
	make_operand(c, &r, ar, DOM_TEXT, RT_LIKE_RIGHT, n->r);
	if (n->r->kind == OPD_CONST && !n->r->dv.null)
	{
		if (expr_pattern_ends_in_escape(n->r->dv.v.t.s, n->r->dv.v.t.len))
			expr_fail(c, r.loc, "LIKE pattern must not end with escape character");
		if (expr_pattern_groups(n->r->dv.v.t.s, n->r->dv.v.t.len) > LIKE_MAX_DEPTH)
			expr_fail(c, r.loc, "LIKE pattern has more than %d groups of %% wildcards", LIKE_MAX_DEPTH);
	}
	if (n->icase)
	{
		Operand    *sides[2] = {n->l, n->r};

		for (int i = 0; i < 2; i++)
			if (sides[i]->kind == OPD_CONST && !sides[i]->dv.null)
			{
				char	   *buf = expr_c_alloc(c, sides[i]->dv.v.t.len * 2 + 4);

				sides[i]->dv.v.t.len = expr_lower_text(c->e, sides[i]->dv.v.t.s, sides[i]->dv.v.t.len, buf);
				sides[i]->dv.v.t.s = buf;
			}
	}
	return n;
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
				if (expr_int_input(s, TY_INT8, &v) == IN_OK && strspn(s, "-0123456789") == strlen(s))
				{
					d.ty = v >= INT32_MIN && v <= INT32_MAX ? TY_INT4 : TY_INT8;
					d.v.i = v;
					return d;
				}
				d.ty = TY_NUMERIC;
				d.v.num = expr_dec_input(c, s, ac->location, "");
				return d;
			}
		case PG_QUERY__A__CONST__VAL_SVAL:
			{
				const char *s = ac->sval != NULL && ac->sval->sval != NULL ? ac->sval->sval : "";
				size_t		len = strlen(s);

				if (!expr_utf8_valid(s, len))
					expr_fail(c, ac->location, "invalid byte sequence for encoding \"UTF8\" in a string literal");
				d.ty = TY_UNKNOWN;
				d.v.str.s = expr_c_strndup(c, s, len);
				d.v.str.len = len;
				return d;
			}
		default:
			expr_refuse(c, ac->location, "this kind of literal");
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
		expr_refuse(c, f->location, "ferry.claim() in a shape's WHERE clause (claims belong in rules)");
	memset(&d, 0, sizeof(d));
	d.ty = TY_TEXT;
	v = c->claim(c->claim_arg, name);
	if (v == NULL)
	{
		d.isnull = true;
		return d;
	}
	d.v.str.len = strlen(v);
	if (!expr_utf8_valid(v, d.v.str.len))
		expr_fail(c, f->location, "claim \"%s\" is not valid UTF-8", name);
	d.v.str.s = expr_c_strndup(c, v, d.v.str.len);
	return d;
}

static Term
transform(Compiler *c, const PgQuery__Node *n)
{
	Term		t;

	memset(&t, 0, sizeof(t));
	t.loc = expr_node_location(n);
	if (n == NULL)
		expr_fail(c, -1, "predicate not supported: an empty expression");
	switch (n->node_case)
	{
		case N_(A_CONST):
			t.kind = TK_CONST;
			t.val = const_value(c, n->a_const);
			t.ty = t.val.ty;
			return t;
		case N_(COLUMN_REF):
			t.kind = TK_COL;
			t.col = expr_find_column(c, expr_str_node(n->column_ref->fields[0]));
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
				Ty			to = expr_cast_target(c, tc->type_name, tc->location, &typmod);
				Term		a = transform(c, tc->arg);
				char		ctx[160] = "";

				t.kind = TK_CONST;
				t.ty = (uint8_t) to;
				if (a.stable)
				{
					/* a claim: Postgres casts it per row (see expr_pg_fold) */
					snprintf(ctx, sizeof(ctx), " (claim \"%.100s\")", tc->arg->func_call->args[0]->a_const->sval->sval);
					t.stable = true;
					t.poison_runtime = true;
					t.val = expr_lazy_coerce(c, a.val, to, typmod, true, a.loc >= 0 ? a.loc : tc->location,
											 expr_c_strndup(c, ctx, strlen(ctx)), &t.poison, &t.poison_loc);
				}
				else
					t.val = expr_lazy_coerce(c, a.val, to, typmod, true, a.loc >= 0 ? a.loc : tc->location, NULL,
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
						bn = expr_new_node(c, N_AND), ctx = "AND";
						break;
					case PG_QUERY__BOOL_EXPR_TYPE__OR_EXPR:
						bn = expr_new_node(c, N_OR), ctx = "OR";
						break;
					default:
						bn = expr_new_node(c, N_NOT), ctx = "NOT";
						break;
				}
				for (size_t i = 0; i < b->n_args; i++)
				{
					Node	   *a = to_bool(c, transform(c, b->args[i]), ctx);

					if (bn->kind == N_NOT)
					{
						if (bn->nargs == 0)
						{
							bn->args = expr_c_alloc(c, sizeof(Node *));
							bn->nargs = 1;
						}
						bn->args[0] = a;
					}
					else
						expr_add_arg(c, bn, a, &cap);
				}
				if (bn->nargs == 0)
					expr_fail(c, t.loc, "predicate not supported: an empty %s", ctx);
				t.kind = TK_BOOL;
				t.ty = TY_BOOL;
				t.node = bn;
				return t;
			}
		case N_(NULL_TEST):
			{
				Term		a = transform(c, n->null_test->arg);
				Node	   *nt = expr_new_node(c, N_NULLTEST);

				nt->neg = n->null_test->nulltesttype == PG_QUERY__NULL_TEST_TYPE__IS_NOT_NULL;
				nt->l = expr_c_alloc(c, sizeof(Operand));
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

					t.node = make_cmp(c, expr_cmp_op(expr_aexpr_op(a)), &l, &r, a->location);
				}
				return t;
			}
		default:
			expr_refuse(c, t.loc, "this kind of expression");
	}
}

/* expr_transform_where compiles the WHERE clause: a boolean tree, not yet folded. */
Node *
expr_transform_where(Compiler *c, const PgQuery__Node *where)
{
	return to_bool(c, transform(c, where), "WHERE");
}
