/*
 * extension/ferry.c -- module entry point, settings and caller claims.
 *
 * Claims are the JSON object {"sub", "tenants", "role"} a gateway passes for
 * the user on whose behalf it reads or writes. ferry.claim() reads the claims
 * of the ferry function currently running, or else the ferry.claims setting.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "ferry.h"

PG_MODULE_MAGIC;

int			ferry_idempotency_ttl = 24 * 60 * 60;
int			ferry_max_clock_skew = 5 * 60;
static char *ferry_claims_setting = NULL;

FerryClaims *ferry_current_claims = NULL;

void		_PG_init(void);

/*
 * _PG_init registers the settings and the catalog cache callbacks.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("ferry.idempotency_ttl",
							"How long mutation results are kept for replays.",
							"ferry.purge_mutations() removes older results.",
							&ferry_idempotency_ttl,
							24 * 60 * 60, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ferry.max_clock_skew",
							"How far ahead of the server a mutation clock may be.",
							"Clocks further ahead are clamped to the server's time.",
							&ferry_max_clock_skew,
							5 * 60, 0, INT_MAX / 1000,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ferry.claims",
							   "Claims ferry.claim() reads outside ferry's own functions.",
							   "A JSON object such as {\"sub\": \"u1\", \"tenants\": [\"w1\"]}.",
							   &ferry_claims_setting,
							   "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("ferry");
	ferry_catalog_init();
}

/* ----------------------------------------------------------------
 * Claims
 * ---------------------------------------------------------------- */

/*
 * ferry_claims_parse fills out from a claims object. On a malformed object it
 * returns false and sets *why to a message naming what is wrong.
 */
bool
ferry_claims_parse(Jsonb *jb, FerryClaims *out, char **why)
{
	JsonbValue	buf;
	JsonbValue *v;

	memset(out, 0, sizeof(*out));
	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
	{
		*why = "claims must be a JSON object with \"sub\" and \"tenants\"";
		return false;
	}
	out->raw = jb;

	v = ferry_json_get(jb, "sub", &buf);
	if (v == NULL || v->type != jbvString || v->val.string.len == 0)
	{
		*why = "claim \"sub\" must be a non-empty string";
		return false;
	}
	out->sub = ferry_json_string(v);

	v = ferry_json_get(jb, "role", &buf);
	if (v != NULL && v->type == jbvString)
		out->role = ferry_json_string(v);
	else if (v != NULL && v->type != jbvNull)
	{
		*why = "claim \"role\" must be a string";
		return false;
	}

	v = ferry_json_get(jb, "tenants", &buf);
	if (v == NULL || v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
	{
		*why = "claim \"tenants\" must be an array of strings";
		return false;
	}
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	elem;
		JsonbIteratorToken tok;
		int			cap = 4;

		out->tenants = palloc(sizeof(char *) * cap);
		while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (elem.type != jbvString)
			{
				*why = "claim \"tenants\" must be an array of strings";
				return false;
			}
			if (out->ntenants == cap)
			{
				cap *= 2;
				out->tenants = repalloc(out->tenants, sizeof(char *) * cap);
			}
			out->tenants[out->ntenants++] = ferry_json_string(&elem);
		}
	}
	return true;
}

/*
 * ferry_claims_allow_tenant says whether tenant (as text) is one of the
 * claims' tenants.
 */
bool
ferry_claims_allow_tenant(FerryClaims *c, const char *tenant)
{
	for (int i = 0; i < c->ntenants; i++)
		if (strcmp(c->tenants[i], tenant) == 0)
			return true;
	return false;
}

/*
 * ferry_claims_tenant_array returns the tenants as a text[] (palloc'd).
 */
ArrayType *
ferry_claims_tenant_array(FerryClaims *c)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(c->ntenants, 1));

	for (int i = 0; i < c->ntenants; i++)
		elems[i] = CStringGetTextDatum(c->tenants[i]);
	return construct_array(elems, c->ntenants, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * ferry_claim is ferry.claim(name): the named claim of the current caller,
 * a string as is, any other JSON value as JSON text, NULL when absent.
 */
PG_FUNCTION_INFO_V1(ferry_claim);
Datum
ferry_claim(PG_FUNCTION_ARGS)
{
	Jsonb	   *claims = NULL;
	JsonbValue	buf;
	JsonbValue *v;
	char	   *name;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (ferry_current_claims != NULL)
		claims = ferry_current_claims->raw;
	else if (ferry_claims_setting != NULL && ferry_claims_setting[0] != '\0')
	{
		/*
		 * Parse the setting once per call site: fn_extra keeps the parsed
		 * copy for as long as the setting's text is unchanged.
		 */
		typedef struct
		{
			char	   *text;
			Jsonb	   *jb;
		}			Cached;
		Cached	   *c = fcinfo->flinfo->fn_extra;

		if (c == NULL || strcmp(c->text, ferry_claims_setting) != 0)
		{
			MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

			c = palloc(sizeof(Cached));
			c->text = pstrdup(ferry_claims_setting);
			c->jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(c->text)));
			fcinfo->flinfo->fn_extra = c;
			MemoryContextSwitchTo(old);
		}
		claims = c->jb;
	}
	if (claims == NULL || !JB_ROOT_IS_OBJECT(claims))
		PG_RETURN_NULL();

	v = ferry_json_get(claims, name, &buf);
	if (v == NULL || v->type == jbvNull)
		PG_RETURN_NULL();
	if (v->type == jbvString)
		PG_RETURN_TEXT_P(cstring_to_text_with_len(v->val.string.val, v->val.string.len));
	if (v->type == jbvBinary)
		PG_RETURN_TEXT_P(cstring_to_text(JsonbToCString(NULL, v->val.binary.data, v->val.binary.len)));
	{
		Jsonb	   *scalar = JsonbValueToJsonb(v);

		PG_RETURN_TEXT_P(cstring_to_text(JsonbToCString(NULL, &scalar->root, VARSIZE(scalar))));
	}
}
