/*
 * extension/values.c -- values between JSON and Postgres Datums.
 *
 * ferry's JSON carries values in Postgres text output form (what psql
 * prints). Inputs also accept native JSON: numbers, booleans, arrays for
 * array columns and objects for json/jsonb columns.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

#include "ferry.h"

/*
 * The column being converted, so an error can name it; set by
 * ferry_json_to_datum for the duration of the conversion.
 */
const char *ferry_error_column = NULL;

/* ----------------------------------------------------------------
 * Reading JSON
 * ---------------------------------------------------------------- */

/*
 * ferry_json_get returns the value of key in the object jb, or NULL. buf
 * holds the value.
 */
JsonbValue *
ferry_json_get(Jsonb *jb, const char *key, JsonbValue *buf)
{
	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	return getKeyJsonValueFromContainer(&jb->root, key, strlen(key), buf);
}

/*
 * ferry_json_get_in is ferry_json_get on a nested value (jbvBinary).
 */
JsonbValue *
ferry_json_get_in(JsonbValue *obj, const char *key, JsonbValue *buf)
{
	if (obj == NULL || obj->type != jbvBinary || !JsonContainerIsObject(obj->val.binary.data))
		return NULL;
	return getKeyJsonValueFromContainer(obj->val.binary.data, key, strlen(key), buf);
}

/*
 * ferry_json_string returns a JSON string's text, palloc'd and terminated.
 */
char *
ferry_json_string(JsonbValue *v)
{
	Assert(v->type == jbvString);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Text of a scalar JSON value as a Postgres input function would take it. */
static char *
scalar_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return ferry_json_string(v);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return v->val.boolean ? "true" : "false";
		default:
			return NULL;
	}
}

static Datum
input_text(const char *text, Oid typid, int32 typmod)
{
	Oid			infunc;
	Oid			ioparam;

	getTypeInputInfo(typid, &infunc, &ioparam);
	return OidInputFunctionCall(infunc, (char *) text, ioparam, typmod);
}

static Datum json_to_datum(JsonbValue *v, Oid typid, int32 typmod, bool *isnull);

/* A JSON array into a one-dimensional Postgres array of elemtype. */
static Datum
json_array_to_datum(JsonbContainer *c, Oid arraytype, Oid elemtype, int32 typmod)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	elem;
	JsonbIteratorToken tok;
	int			n = JsonContainerSize(c);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			i = 0;
	int			dims[1];
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (elem.type == jbvBinary && JsonContainerIsArray(elem.val.binary.data) &&
			elemtype != JSONOID && elemtype != JSONBOID)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("only one-dimensional arrays are supported")));
		elems[i] = json_to_datum(&elem, elemtype, typmod, &nulls[i]);
		i++;
	}
	dims[0] = i;
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, i > 0 ? 1 : 0, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

static Datum
json_to_datum(JsonbValue *v, Oid typid, int32 typmod, bool *isnull)
{
	Oid			base = getBaseType(typid);

	*isnull = false;
	if (v->type == jbvNull)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (base == JSONBOID || base == JSONOID)
	{
		/* A string is the JSON text (text output form); anything else is the value. */
		if (v->type == jbvString)
			return input_text(ferry_json_string(v), typid, typmod);
		if (v->type == jbvBinary)
			return input_text(JsonbToCString(NULL, v->val.binary.data, v->val.binary.len), typid, typmod);
		{
			Jsonb	   *scalar = JsonbValueToJsonb(v);

			return input_text(JsonbToCString(NULL, &scalar->root, VARSIZE(scalar)), typid, typmod);
		}
	}
	if (v->type == jbvBinary)
	{
		Oid			elemtype = get_element_type(base);

		if (OidIsValid(elemtype) && JsonContainerIsArray(v->val.binary.data))
			return json_array_to_datum(v->val.binary.data, typid, elemtype, typmod);
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("a JSON %s cannot be a value of type %s",
						JsonContainerIsArray(v->val.binary.data) ? "array" : "object",
						format_type_be(typid)),
				 errhint("Send the value in Postgres text form, as a JSON string.")));
	}
	return input_text(scalar_text(v), typid, typmod);
}

static void
conversion_context(void *arg)
{
	if (ferry_error_column != NULL)
		errcontext("value of column \"%s\"", ferry_error_column);
}

/*
 * ferry_json_to_datum converts v to a Datum of typid. Errors (bad syntax,
 * out of range) are raised with a context naming column, and
 * ferry_error_column stays set to it so a caller that catches the error can
 * tell which column failed.
 */
Datum
ferry_json_to_datum(JsonbValue *v, Oid typid, int32 typmod, const char *column, bool *isnull)
{
	ErrorContextCallback cb;
	Datum		d;

	ferry_error_column = column;
	cb.callback = conversion_context;
	cb.arg = NULL;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	d = json_to_datum(v, typid, typmod, isnull);
	error_context_stack = cb.previous;
	ferry_error_column = NULL;
	return d;
}

/* ----------------------------------------------------------------
 * Comparing values
 * ---------------------------------------------------------------- */

/*
 * ferry_datum_text is the text output of d, palloc'd.
 */
char *
ferry_datum_text(Datum d, Oid typid)
{
	Oid			outfunc;
	bool		varlena;

	getTypeOutputInfo(typid, &outfunc, &varlena);
	return OidOutputFunctionCall(outfunc, d);
}

/*
 * ferry_datum_equal compares two values of typid with the type's equality
 * operator, or by their text output when the type has none (json, point).
 * Two NULLs are equal.
 */
bool
ferry_datum_equal(Datum a, bool anull, Datum b, bool bnull, Oid typid, Oid collation)
{
	TypeCacheEntry *tc;

	if (anull || bnull)
		return anull && bnull;
	tc = lookup_type_cache(typid, TYPECACHE_EQ_OPR_FINFO);
	if (OidIsValid(tc->eq_opr_finfo.fn_oid))
		return DatumGetBool(FunctionCall2Coll(&tc->eq_opr_finfo, collation, a, b));
	return strcmp(ferry_datum_text(a, typid), ferry_datum_text(b, typid)) == 0;
}

/* ----------------------------------------------------------------
 * Writing JSON
 * ---------------------------------------------------------------- */

void
ferry_push_key(JsonbParseState **ps, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(ps, WJB_KEY, &v);
}

/* Pushes v as the next value or element, whichever the state expects. */
static void
push_value(JsonbParseState **ps, JsonbValue *v)
{
	pushJsonbValue(ps, (*ps)->contVal.type == jbvArray ? WJB_ELEM : WJB_VALUE, v);
}

void
ferry_push_string(JsonbParseState **ps, const char *s)
{
	JsonbValue	v;

	if (s == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) s;
		v.val.string.len = strlen(s);
	}
	push_value(ps, &v);
}

void
ferry_push_int(JsonbParseState **ps, int64 i)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(i);
	push_value(ps, &v);
}

void
ferry_push_bool(JsonbParseState **ps, bool b)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = b;
	push_value(ps, &v);
}

/*
 * ferry_push_names pushes a JSON array of the strings in names.
 */
void
ferry_push_names(JsonbParseState **ps, List *names)
{
	ListCell   *lc;

	pushJsonbValue(ps, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, names)
		ferry_push_string(ps, lfirst(lc));
	pushJsonbValue(ps, WJB_END_ARRAY, NULL);
}

/*
 * ferry_push_row pushes natts columns of tup, from the 0-based column first
 * on, as a JSON object of text output values (NULL as null). Returns what
 * pushJsonbValue returned for the closing brace.
 */
JsonbValue *
ferry_push_row(JsonbParseState **ps, TupleDesc desc, HeapTuple tup, int first, int natts)
{
	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = first; i < first + natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		isnull;
		Datum		d;

		if (att->attisdropped)
			continue;
		d = heap_getattr(tup, i + 1, desc, &isnull);
		ferry_push_key(ps, NameStr(att->attname));
		ferry_push_string(ps, isnull ? NULL : ferry_datum_text(d, att->atttypid));
	}
	return pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/*
 * ferry_row_jsonb is ferry_push_row as a Jsonb of its own, palloc'd.
 */
Jsonb *
ferry_row_jsonb(TupleDesc desc, HeapTuple tup, int first, int natts)
{
	JsonbParseState *ps = NULL;

	return JsonbValueToJsonb(ferry_push_row(&ps, desc, tup, first, natts));
}
