/*
 * extension/predicate.c -- validation of rule predicates.
 *
 * The gateway evaluates rule predicates outside Postgres, so a predicate may
 * use only the subset both sides implement (docs/predicates.md):
 * comparisons, AND/OR/NOT, IS [NOT] NULL, IN lists, [NOT] LIKE/ILIKE,
 * boolean columns, literals and casts of literals, ferry.claim('name') and
 * casts of it. The predicate is parsed with Postgres's own grammar as the
 * WHERE clause of "SELECT 1 FROM <table> WHERE <predicate>", walked against
 * that subset, and then analyzed, so unknown columns and type errors surface
 * here, when the rule is added, not later.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "parser/parse_type.h"
#include "parser/parser.h"
#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_collation.h"
#include "utils/pg_locale.h"
#include "utils/syscache.h"
#include <locale.h>
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "ferry.h"

typedef struct Walk
{
	const char *pred;			/* the predicate, for error positions */
	int			offset;			/* length of the prefix before it */
	Oid			relid;			/* the rule's table */
} Walk;

static void walk(Walk *w, Node *n);

static void
refuse(Walk *w, int location, const char *what)
{
	int			at = location - w->offset;

	ereport(ERROR,
			(errcode(ERRCODE_FERRY_BAD_PREDICATE),
			 errmsg("predicate not supported: %s", what),
			 (at >= 0 && at < (int) strlen(w->pred)) ?
			 errdetail("At: %.60s", w->pred + at) : 0,
			 errhint("Predicates may use comparisons (= <> < <= > >=), AND, OR, NOT, IS [NOT] NULL, "
					 "IN (...) lists, [NOT] LIKE/ILIKE, boolean columns, literals, casts of literals, "
					 "and ferry.claim('name'). See docs/predicates.md.")));
}

static const char *
op_name(List *name)
{
	return strVal(llast(name));
}

static bool
is_claim_call(FuncCall *f)
{
	A_Const    *arg;

	if (list_length(f->funcname) != 2 ||
		strcmp(strVal(linitial(f->funcname)), FERRY_SCHEMA) != 0 ||
		strcmp(strVal(lsecond(f->funcname)), "claim") != 0)
		return false;
	if (list_length(f->args) != 1 || f->agg_order != NIL || f->agg_filter != NULL ||
		f->over != NULL || f->agg_star || f->agg_distinct || f->func_variadic)
		return false;
	arg = linitial(f->args);
	return IsA(arg, A_Const) && !arg->isnull && IsA(&arg->val, String);
}

static bool
cast_type_ok(TypeName *tn)
{
	Oid			typid;
	int32		typmod;

	if (tn->arrayBounds != NIL || tn->setof || tn->pct_type)
		return false;
	typenameTypeIdAndMod(NULL, tn, &typid, &typmod);
	switch (typid)
	{
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case BOOLOID:
		case UUIDOID:
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return true;
		default:
			return false;
	}
}

static void
walk_const(Walk *w, A_Const *c)
{
	if (!c->isnull && IsA(&c->val, BitString))
		refuse(w, c->location, "bit-string literals");
}

static void
walk_column(Walk *w, ColumnRef *cr)
{
	char	   *name;
	AttrNumber	attnum;

	if (list_length(cr->fields) != 1 || !IsA(linitial(cr->fields), String))
		refuse(w, cr->location, "qualified column names and *; name columns of the table alone");
	name = strVal(linitial(cr->fields));
	attnum = get_attnum(w->relid, name);
	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of %s does not exist", name, get_rel_name(w->relid))));
	if (attnum < 0)
		refuse(w, cr->location, psprintf("system column \"%s\"", name));
}

static void
walk_aexpr(Walk *w, A_Expr *e)
{
	const char *op = op_name(e->name);

	switch (e->kind)
	{
		case AEXPR_OP:
			if (e->lexpr == NULL || e->rexpr == NULL)
				refuse(w, e->location, psprintf("prefix operator %s", op));
			if (strcmp(op, "=") != 0 && strcmp(op, "<>") != 0 && strcmp(op, "<") != 0 &&
				strcmp(op, "<=") != 0 && strcmp(op, ">") != 0 && strcmp(op, ">=") != 0)
				refuse(w, e->location, psprintf("operator %s", op));
			if (list_length(e->name) != 1)
				refuse(w, e->location, "schema-qualified operators");
			walk(w, e->lexpr);
			walk(w, e->rexpr);
			return;
		case AEXPR_IN:
			{
				ListCell   *lc;

				walk(w, e->lexpr);
				foreach(lc, (List *) e->rexpr)
				{
					Node	   *item = lfirst(lc);

					if (!IsA(item, A_Const) && !IsA(item, TypeCast) && !IsA(item, FuncCall))
						refuse(w, exprLocation(item), "IN lists of anything but literals and claims");
					walk(w, item);
				}
				return;
			}
		case AEXPR_LIKE:
		case AEXPR_ILIKE:
			walk(w, e->lexpr);
			walk(w, e->rexpr);
			return;
		case AEXPR_OP_ANY:
		case AEXPR_OP_ALL:
			refuse(w, e->location, "ANY/ALL");
			break;
		case AEXPR_DISTINCT:
		case AEXPR_NOT_DISTINCT:
			refuse(w, e->location, "IS [NOT] DISTINCT FROM");
			break;
		case AEXPR_NULLIF:
			refuse(w, e->location, "NULLIF");
			break;
		case AEXPR_SIMILAR:
			refuse(w, e->location, "SIMILAR TO");
			break;
		default:
			refuse(w, e->location, "BETWEEN");
	}
}

static void
walk(Walk *w, Node *n)
{
	if (n == NULL)
		return;
	switch (nodeTag(n))
	{
		case T_A_Expr:
			walk_aexpr(w, (A_Expr *) n);
			return;
		case T_BoolExpr:
			{
				ListCell   *lc;

				foreach(lc, ((BoolExpr *) n)->args)
					walk(w, lfirst(lc));
				return;
			}
		case T_NullTest:
			walk(w, (Node *) ((NullTest *) n)->arg);
			return;
		case T_ColumnRef:
			walk_column(w, (ColumnRef *) n);
			return;
		case T_A_Const:
			walk_const(w, (A_Const *) n);
			return;
		case T_TypeCast:
			{
				TypeCast   *tc = (TypeCast *) n;

				if (!IsA(tc->arg, A_Const) && !(IsA(tc->arg, FuncCall) && is_claim_call((FuncCall *) tc->arg)))
					refuse(w, tc->location, "casts of anything but literals and ferry.claim()");
				if (!cast_type_ok(tc->typeName))
					refuse(w, tc->location, psprintf("cast to %s", TypeNameToString(tc->typeName)));
				walk(w, tc->arg);
				return;
			}
		case T_FuncCall:
			{
				FuncCall   *f = (FuncCall *) n;

				if (!is_claim_call(f))
					refuse(w, f->location,
						   psprintf("function %s(); only ferry.claim('name') with a literal name is allowed",
									NameListToString(f->funcname)));
				return;
			}
		case T_SubLink:
			refuse(w, exprLocation(n), "subqueries");
			break;
		case T_BooleanTest:
			refuse(w, exprLocation(n), "IS [NOT] TRUE/FALSE/UNKNOWN; compare with = true instead");
			break;
		case T_CaseExpr:
			refuse(w, exprLocation(n), "CASE");
			break;
		case T_CoalesceExpr:
			refuse(w, exprLocation(n), "COALESCE");
			break;
		case T_ParamRef:
			refuse(w, exprLocation(n), "parameters");
			break;
		case T_A_ArrayExpr:
			refuse(w, exprLocation(n), "ARRAY[...]");
			break;
		case T_RowExpr:
			refuse(w, exprLocation(n), "row constructors");
			break;
		default:
			refuse(w, exprLocation(n), "this kind of expression");
	}
}

/*
 * True when strings under collation collid sort in byte order, as the
 * gateway compares them: C and POSIX, and the C.UTF-8 locale.
 */
static bool
collation_is_bytewise(Oid collid)
{
	const char *locale = NULL;

	if (!OidIsValid(collid) || lc_collate_is_c(collid))
		return true;
	if (collid == DEFAULT_COLLATION_OID)
		locale = setlocale(LC_COLLATE, NULL);
	else
	{
		HeapTuple	tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(collid));

		if (HeapTupleIsValid(tup))
		{
			Form_pg_collation coll = (Form_pg_collation) GETSTRUCT(tup);
			bool		isnull;
			Datum		d = SysCacheGetAttr(COLLOID, tup, Anum_pg_collation_collcollate, &isnull);

			if (coll->collprovider == COLLPROVIDER_LIBC && !isnull)
				locale = TextDatumGetCString(d);
			ReleaseSysCache(tup);
		}
	}
	return locale != NULL &&
		(pg_strcasecmp(locale, "C.UTF-8") == 0 || pg_strcasecmp(locale, "C.utf8") == 0);
}

/*
 * Refuses any operator that is not built in (a user-defined = on some type),
 * and ordering comparisons of text under a collation the gateway cannot
 * reproduce (it compares bytes).
 */
static bool
check_builtin_ops(Node *n, void *context)
{
	Walk	   *w = context;

	if (n == NULL)
		return false;
	if (IsA(n, OpExpr) && ((OpExpr *) n)->opno >= FirstNormalObjectId)
		refuse(w, ((OpExpr *) n)->location, "user-defined operators");
	if (IsA(n, OpExpr) && !collation_is_bytewise(((OpExpr *) n)->inputcollid))
	{
		char	   *name = get_opname(((OpExpr *) n)->opno);

		if (name != NULL && (strcmp(name, "<") == 0 || strcmp(name, "<=") == 0 ||
							 strcmp(name, ">") == 0 || strcmp(name, ">=") == 0))
			refuse(w, ((OpExpr *) n)->location,
				   psprintf("%s on text under collation \"%s\"; the gateway orders text bytewise "
							"(C, POSIX or C.UTF-8 collations only)", name,
							get_collation_name(((OpExpr *) n)->inputcollid)));
	}
	if (IsA(n, ScalarArrayOpExpr) && ((ScalarArrayOpExpr *) n)->opno >= FirstNormalObjectId)
		refuse(w, ((ScalarArrayOpExpr *) n)->location, "user-defined operators");
	return expression_tree_walker(n, check_builtin_ops, context);
}

/*
 * ferry_validate_predicate raises an error unless pred is a predicate over
 * relid that ferry can evaluate in the gateway too.
 */
void
ferry_validate_predicate(Oid relid, const char *pred)
{
	char	   *rel = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												 get_rel_name(relid));
	char	   *sql;
	List	   *stmts;
	RawStmt    *raw;
	SelectStmt *sel;
	Query	   *q;
	Walk		w;

	sql = psprintf("SELECT 1 FROM %s WHERE ", rel);
	w.offset = strlen(sql);
	w.pred = pred;
	w.relid = relid;
	sql = psprintf("%s%s", sql, pred);

	if (strspn(pred, " \t\r\n") == strlen(pred))
		refuse(&w, -1, "an empty predicate; use 'true' or 'false'");
	stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(stmts) != 1)
		refuse(&w, -1, "more than one statement");
	raw = linitial(stmts);
	sel = (SelectStmt *) raw->stmt;
	if (!IsA(sel, SelectStmt) || sel->op != SETOP_NONE || sel->withClause != NULL ||
		sel->intoClause != NULL || sel->groupClause != NIL || sel->havingClause != NULL ||
		sel->windowClause != NIL || sel->sortClause != NIL || sel->limitOffset != NULL ||
		sel->limitCount != NULL || sel->lockingClause != NIL || sel->distinctClause != NIL ||
		list_length(sel->fromClause) != 1 || list_length(sel->targetList) != 1 ||
		sel->whereClause == NULL)
		refuse(&w, -1, "anything but one boolean expression (no ORDER BY, LIMIT, UNION, ...)");
	walk(&w, sel->whereClause);

	q = parse_analyze_fixedparams(raw, sql, NULL, 0, NULL);
	if (q->jointree != NULL)
		check_builtin_ops(q->jointree->quals, &w);
}

PG_FUNCTION_INFO_V1(ferry_validate_predicate_sql);
Datum
ferry_validate_predicate_sql(PG_FUNCTION_ARGS)
{
	ferry_validate_predicate(PG_GETARG_OID(0), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}
