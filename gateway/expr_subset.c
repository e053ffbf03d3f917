/*
 * gateway/expr_subset.c -- the WHERE-clause evaluator's subset: the same walk as
 * extension/predicate.c over libpg_query's parse tree, refusing anything outside
 * docs/predicates.md with "predicate not supported: <construct> at \"<text>\"".
 */
#include <stdio.h>
#include <string.h>

#include "expr_int.h"

const char *const expr_cmp_names[] = {"=", "<>", "<", "<=", ">", ">="};

const char *
expr_str_node(const PgQuery__Node *n)
{
	if (n == NULL || n->node_case != N_(STRING) || n->string == NULL || n->string->sval == NULL)
		return NULL;
	return n->string->sval;
}

static bool
str_node_is(const PgQuery__Node *n, const char *s)
{
	const char *v = expr_str_node(n);

	return v != NULL && strcmp(v, s) == 0;
}

/* expr_node_location is exprLocation for the nodes the walk meets; -1 when unknown. */
int
expr_node_location(const PgQuery__Node *n)
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
			return expr_node_location(n->a_indirection->arg);
		default:
			return -1;
	}
}

void __attribute__((noreturn))
expr_refuse(Compiler *c, int location, const char *what)
{
	expr_fail(c, location, "predicate not supported: %s", what);
}

/* names_text joins a list of String nodes with dots (NameListToString). */
static void
names_text(PgQuery__Node *const *names, size_t n, char *buf, size_t len)
{
	size_t		used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++)
	{
		const char *s = expr_str_node(names[i]);

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
		s = expr_str_node(n->column_ref->fields[0]);
	if (s == NULL)
		expr_fail(c, loc, "type modifiers must be simple constants or identifiers");
	if (expr_int_input(s, TY_INT4, &v) != IN_OK)
		expr_fail(c, loc, "invalid input syntax for type integer: \"%s\"", s);
	return v;
}

/*
 * expr_cast_target resolves a cast's type name to one of the allowed types (as is or
 * pg_catalog-qualified) and its type modifier; anything else is refused.
 */
Ty
expr_cast_target(Compiler *c, const PgQuery__TypeName *tn, int loc, int32_t *typmod)
{
	char		name[160];
	char		what[200];
	const char *base = NULL;
	Ty			t = TY_OTHER;
	int64_t		v[3] = {0, 0, 0};
	size_t		nt;

	*typmod = -1;
	if (tn == NULL)
		expr_refuse(c, loc, "this kind of cast");
	names_text(tn->names, tn->n_names, name, sizeof(name));
	snprintf(what, sizeof(what), "cast to %s%s", name, tn->n_array_bounds > 0 ? "[]" : "");
	if (tn->n_array_bounds > 0 || tn->setof || tn->pct_type)
		expr_refuse(c, loc, what);
	if (tn->n_names == 1)
		base = expr_str_node(tn->names[0]);
	else if (tn->n_names == 2 && str_node_is(tn->names[0], "pg_catalog"))
		base = expr_str_node(tn->names[1]);
	for (int i = TY_BOOL; base != NULL && i < TY_OTHER; i++)
		if (strcmp(base, expr_types[i].catname) == 0)
			t = (Ty) i;
	if (t == TY_OTHER)
		expr_refuse(c, loc, what);
	nt = tn->n_typmods;
	for (size_t i = 0; i < nt && i < 3; i++)
		v[i] = typmod_value(c, tn->typmods[i], loc);
	switch (t)
	{
		case TY_VARCHAR:
		case TY_BPCHAR:
			if (nt > 1)
				expr_fail(c, loc, "invalid type modifier");
			if (nt == 1)
			{
				const char *tn_ = t == TY_VARCHAR ? "varchar" : "char";

				if (v[0] < 1)
					expr_fail(c, loc, "length for type %s must be at least 1", tn_);
				if (v[0] > 10485760)
					expr_fail(c, loc, "length for type %s cannot exceed 10485760", tn_);
				*typmod = (int32_t) v[0];
			}
			break;
		case TY_NUMERIC:
			if (nt > 2)
				expr_fail(c, loc, "invalid NUMERIC type modifier");
			if (nt >= 1)
			{
				if (v[0] < 1 || v[0] > 1000)
					expr_fail(c, loc, "NUMERIC precision %lld must be between 1 and 1000", (long long) v[0]);
				if (v[1] < -1000 || v[1] > 1000)
					expr_fail(c, loc, "NUMERIC scale %lld must be between -1000 and 1000", (long long) v[1]);
				*typmod = TYPMOD_NUMERIC(v[0], v[1]);
			}
			break;
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			if (nt > 1)
				expr_fail(c, loc, "invalid type modifier");
			if (nt == 1)
			{
				if (v[0] < 0)
					expr_fail(c, loc, "TIMESTAMP(%lld)%s precision must not be negative", (long long) v[0],
							  t == TY_TIMESTAMPTZ ? " WITH TIME ZONE" : "");
				*typmod = v[0] > 6 ? 6 : (int32_t) v[0];
			}
			break;
		default:
			if (nt > 0)
				expr_fail(c, loc, "type modifier is not allowed for type \"%s\"", expr_types[t].catname);
			break;
	}
	return t;
}

int
expr_find_column(const Compiler *c, const char *name)
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

	if (cr->n_fields != 1 || expr_str_node(cr->fields[0]) == NULL)
		expr_refuse(c, cr->location, "qualified column names and *; name columns of the table alone");
	name = expr_str_node(cr->fields[0]);
	if (expr_find_column(c, name) >= 0)
		return;
	for (size_t i = 0; i < sizeof(syscols) / sizeof(syscols[0]); i++)
		if (strcmp(name, syscols[i]) == 0)
		{
			snprintf(what, sizeof(what), "system column \"%s\"", name);
			expr_refuse(c, cr->location, what);
		}
	expr_fail(c, -1, "column \"%s\" does not exist", name);
}

const char *
expr_aexpr_op(const PgQuery__AExpr *a)
{
	const char *op = a->n_name > 0 ? expr_str_node(a->name[a->n_name - 1]) : NULL;

	return op != NULL ? op : "?";
}

int
expr_cmp_op(const char *op)
{
	for (int i = 0; i < 6; i++)
		if (strcmp(op, expr_cmp_names[i]) == 0)
			return i;
	return -1;
}

static void check_node(Compiler *c, const PgQuery__Node *n, int depth);

static void
check_aexpr(Compiler *c, const PgQuery__AExpr *a, int depth)
{
	const char *op = expr_aexpr_op(a);
	char		what[200];

	switch (a->kind)
	{
		case PG_QUERY__A__EXPR__KIND__AEXPR_OP:
			if (a->lexpr == NULL || a->rexpr == NULL)
			{
				snprintf(what, sizeof(what), "prefix operator %s", op);
				expr_refuse(c, a->location, what);
			}
			if (expr_cmp_op(op) < 0)
			{
				snprintf(what, sizeof(what), "operator %s", op);
				expr_refuse(c, a->location, what);
			}
			if (a->n_name != 1)
				expr_refuse(c, a->location, "schema-qualified operators");
			check_node(c, a->lexpr, depth + 1);
			check_node(c, a->rexpr, depth + 1);
			return;
		case PG_QUERY__A__EXPR__KIND__AEXPR_IN:
			check_node(c, a->lexpr, depth + 1);
			if (a->rexpr == NULL || a->rexpr->node_case != N_(LIST))
				expr_refuse(c, a->location, "IN lists of anything but literals and claims");
			for (size_t i = 0; i < a->rexpr->list->n_items; i++)
			{
				const PgQuery__Node *item = a->rexpr->list->items[i];

				if (item == NULL || (item->node_case != N_(A_CONST) && item->node_case != N_(TYPE_CAST) &&
									 item->node_case != N_(FUNC_CALL)))
					expr_refuse(c, expr_node_location(item), "IN lists of anything but literals and claims");
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
			expr_refuse(c, a->location, "ANY/ALL");
		case PG_QUERY__A__EXPR__KIND__AEXPR_DISTINCT:
		case PG_QUERY__A__EXPR__KIND__AEXPR_NOT_DISTINCT:
			expr_refuse(c, a->location, "IS [NOT] DISTINCT FROM");
		case PG_QUERY__A__EXPR__KIND__AEXPR_NULLIF:
			expr_refuse(c, a->location, "NULLIF");
		case PG_QUERY__A__EXPR__KIND__AEXPR_SIMILAR:
			expr_refuse(c, a->location, "SIMILAR TO");
		default:
			expr_refuse(c, a->location, "BETWEEN");
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
		expr_fail(c, expr_node_location(n), "predicate nested too deeply (more than %d levels)", EXPR_MAX_DEPTH);
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
				expr_refuse(c, n->a_const->location, "bit-string literals");
			return;
		case N_(TYPE_CAST):
			{
				const PgQuery__TypeCast *tc = n->type_cast;
				int32_t		typmod;

				if (tc->arg == NULL ||
					(tc->arg->node_case != N_(A_CONST) &&
					 !(tc->arg->node_case == N_(FUNC_CALL) && is_claim_call(tc->arg->func_call))))
					expr_refuse(c, tc->location, "casts of anything but literals and ferry.claim()");
				expr_cast_target(c, tc->type_name, tc->location, &typmod);
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
				expr_refuse(c, n->func_call->location, what);
			}
			return;
		case N_(SUB_LINK):
			expr_refuse(c, expr_node_location(n), "subqueries");
		case N_(BOOLEAN_TEST):
			expr_refuse(c, expr_node_location(n), "IS [NOT] TRUE/FALSE/UNKNOWN; compare with = true instead");
		case N_(CASE_EXPR):
			expr_refuse(c, expr_node_location(n), "CASE");
		case N_(COALESCE_EXPR):
			expr_refuse(c, expr_node_location(n), "COALESCE");
		case N_(PARAM_REF):
			expr_refuse(c, expr_node_location(n), "parameters");
		case N_(A_ARRAY_EXPR):
			expr_refuse(c, expr_node_location(n), "ARRAY[...]");
		case N_(ROW_EXPR):
			expr_refuse(c, expr_node_location(n), "row constructors");
		case N_(MIN_MAX_EXPR):
			expr_refuse(c, expr_node_location(n), "GREATEST/LEAST");
		case N_(SQLVALUE_FUNCTION):
			expr_refuse(c, expr_node_location(n), "CURRENT_DATE, CURRENT_USER and the like");
		case N_(COLLATE_CLAUSE):
			expr_refuse(c, expr_node_location(n), "COLLATE");
		case N_(A_INDIRECTION):
			expr_refuse(c, expr_node_location(n), "subscripts and field selection");
		default:
			expr_refuse(c, expr_node_location(n), "this kind of expression");
	}
}

/* expr_check_statement checks that the parsed query is "SELECT 1 FROM t WHERE <one expression>". */
const PgQuery__Node *
expr_check_statement(Compiler *c, const PgQuery__ParseResult *pr)
{
	const PgQuery__SelectStmt *s;

	if (pr->n_stmts != 1 || pr->stmts[0] == NULL || pr->stmts[0]->stmt == NULL)
		expr_refuse(c, -1, "more than one statement");
	if (pr->stmts[0]->stmt->node_case != N_(SELECT_STMT))
		expr_refuse(c, -1, "anything but one boolean expression (no ORDER BY, LIMIT, UNION, ...)");
	s = pr->stmts[0]->stmt->select_stmt;
	if (s->op != PG_QUERY__SET_OPERATION__SETOP_NONE || s->with_clause != NULL || s->into_clause != NULL ||
		s->n_group_clause != 0 || s->having_clause != NULL || s->n_window_clause != 0 ||
		s->n_sort_clause != 0 || s->limit_offset != NULL || s->limit_count != NULL ||
		s->n_locking_clause != 0 || s->n_distinct_clause != 0 || s->n_values_lists != 0 ||
		s->n_from_clause != 1 || s->n_target_list != 1 || s->where_clause == NULL)
		expr_refuse(c, -1, "anything but one boolean expression (no ORDER BY, LIMIT, UNION, ...)");
	check_node(c, s->where_clause, 1);
	return s->where_clause;
}
