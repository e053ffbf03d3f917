/*
 * gateway/expr_fold.c -- the WHERE-clause evaluator's constant folding: what Postgres's
 * planner folds (and so which failing casts it raises), then every constant subexpression.
 */
#include <string.h>

#include "expr_int.h"

/*
 * Constant folding, in two passes.
 *
 * expr_pg_fold follows Postgres's eval_const_expressions over the compiled tree (claims are
 * not constants there: ferry.claim() is STABLE) only to find out whether Postgres would
 * fold a poisoned cast, in which case the predicate is an error, as in Postgres; AND and
 * OR stop at the first constant FALSE/TRUE, so a poison after one is never reached.
 * expr_fold then folds every constant subexpression, claims included, rewriting the tree:
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

static int
pg_operand(Compiler *c, const Operand *o)
{
	int			r;

	if (o->kind == OPD_COL)
		return OC_VAR;
	if (o->kind == OPD_SUB)
	{
		r = expr_pg_fold(c, o->sub);
		return r == FOLD_VAR ? OC_VAR : r == EXPR_NULL ? OC_NULL : OC_CONST;
	}
	if (o->stable)
		return OC_VAR;
	return o->cval.isnull ? OC_NULL : OC_CONST;
}

static void __attribute__((noreturn))
raise_poison(Compiler *c, const Operand *o)
{
	expr_fail(c, o->poison_loc, "%s", o->poison);
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

int
expr_pg_fold(Compiler *c, const Node *n)
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
				int			r = expr_pg_fold(c, n->args[0]);

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
					int			r = expr_pg_fold(c, n->args[i]);

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
					return expr_eval_node(c->e, n, NULL);
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
				return check_poison(c, n, allconst ? (int) expr_eval_node(c->e, n, NULL) : FOLD_VAR);
			}
	}
}

static Node *
const_node(Compiler *c, ExprBool v)
{
	Node	   *n = expr_new_node(c, N_CONST);

	n->cval = v;
	return n;
}

/*
 * fold_operand folds an operand's subexpression, making it a constant when it folds;
 * OC_VAR for a poisoned one (which the node must fold away: expr_pg_fold made sure of it).
 */
static int
fold_operand(Compiler *c, Operand *o)
{
	if (o->kind == OPD_COL || o->poison != NULL)
		return OC_VAR;
	if (o->kind == OPD_SUB)
	{
		ExprBool	v;

		o->sub = expr_fold(c, o->sub);
		if (o->sub->kind != N_CONST)
			return OC_VAR;
		v = o->sub->cval;
		o->kind = OPD_CONST;
		o->sub = NULL;
		memset(&o->cval, 0, sizeof(o->cval));
		o->cval.ty = TY_BOOL;
		o->cval.isnull = v == EXPR_NULL;
		o->cval.v.b = v == EXPR_TRUE;
		o->dv = expr_const_dval(c, &o->cval, DOM_BOOL, false);
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

Node *
expr_fold(Compiler *c, Node *n)
{
	switch (n->kind)
	{
		case N_CONST:
		case N_COLBOOL:
			return n;
		case N_NOT:
			{
				Node	   *a = expr_fold(c, n->args[0]);

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
				Node	   *out = expr_new_node(c, (NodeKind) n->kind);

				for (int i = 0; i < n->nargs; i++)
				{
					Node	   *a = expr_fold(c, n->args[i]);

					if (a->kind == N_CONST)
					{
						if (a->cval == stop)
							return const_node(c, stop);
						if (a->cval == EXPR_NULL)
							havenull = true;
						continue;
					}
					expr_add_arg(c, out, a, &cap);
				}
				if (havenull)
				{
					if (out->nargs == 0)
						return const_node(c, EXPR_NULL);
					expr_add_arg(c, out, const_node(c, EXPR_NULL), &cap);
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
					return const_node(c, expr_eval_node(c->e, n, NULL));
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
					return const_node(c, expr_eval_node(c->e, n, NULL));
				return folded_node(c, n);
			}
	}
}

/* expr_mark_columns records the columns a (folded) tree reads. */
void
expr_mark_columns(Compiler *c, const Node *n)
{
	const Operand *ops[2] = {n->l, n->r};

	if (n->kind == N_COLBOOL)
		c->colused[n->col] = true;
	for (int i = 0; i < n->nargs; i++)
		expr_mark_columns(c, n->args[i]);
	for (int i = 0; i < 2; i++)
		if (ops[i] != NULL && ops[i]->kind == OPD_COL)
			c->colused[ops[i]->col] = true;
		else if (ops[i] != NULL && ops[i]->kind == OPD_SUB)
			expr_mark_columns(c, ops[i]->sub);
}
