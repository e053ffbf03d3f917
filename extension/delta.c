/*
 * extension/delta.c -- ferry.changes_since: exact deltas from a snapshot cursor.
 *
 * Every row carries the top-level xid of its last write (ferry_xid). A cursor
 * is a snapshot; the delta from it is every row whose ferry_xid the snapshot
 * does not see -- including transactions that were running when the cursor
 * was taken and committed later. No timestamps, so no clock-skew holes.
 *
 * Cursor forms:
 *   ""                               initial load (all live rows)
 *   "<snapshot>"                     rows written after the snapshot
 *   "<base>/<target>/<hex key>"      next page: rows after base, key > key;
 *                                    target is the snapshot of the first page
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "ferry.h"

#define MAX_ROWS_LIMIT 100000

typedef struct Cursor
{
	char	   *base;			/* snapshot text, or NULL for the initial load */
	char	   *target;			/* snapshot of the first page, or NULL */
	Jsonb	   *after;			/* key of the last row sent, or NULL */
} Cursor;

static void
bad_cursor(const char *cursor, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_FERRY_BAD_CURSOR),
			 errmsg("malformed delta cursor \"%.80s\": %s", cursor, why),
			 errhint("Pass back a cursor exactly as ferry.changes_since or ferry.snapshot_cursor returned it, "
					 "or NULL for a full load.")));
}

/* Checks that s is a snapshot "xmin:xmax:xip,...", by pg_snapshot's own parser. */
static void
check_snapshot(const char *cursor, const char *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		ok = true;

	if (strspn(s, "0123456789:,") != strlen(s) || strchr(s, ':') == NULL)
		bad_cursor(cursor, "not a snapshot");
	PG_TRY();
	{
		(void) DirectFunctionCall1(pg_snapshot_in, CStringGetDatum(s));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	if (!ok)
		bad_cursor(cursor, "not a valid snapshot");
}

static char *
hex_encode_str(const char *s)
{
	size_t		n = strlen(s);
	char	   *out = palloc(n * 2 + 1);

	for (size_t i = 0; i < n; i++)
		sprintf(out + i * 2, "%02x", (unsigned char) s[i]);
	out[n * 2] = '\0';
	return out;
}

static char *
hex_decode_str(const char *cursor, const char *h)
{
	size_t		n = strlen(h);
	char	   *out;

	if (n % 2 != 0 || strspn(h, "0123456789abcdef") != n)
		bad_cursor(cursor, "bad page key");
	out = palloc(n / 2 + 1);
	for (size_t i = 0; i < n / 2; i++)
	{
		unsigned int b;

		sscanf(h + i * 2, "%2x", &b);
		out[i] = (char) b;
	}
	out[n / 2] = '\0';
	return out;
}

static void
parse_cursor(const char *text, Cursor *c)
{
	char	   *s = pstrdup(text);
	char	   *slash1 = strchr(s, '/');

	memset(c, 0, sizeof(*c));
	if (slash1 == NULL)
	{
		if (*s != '\0')
		{
			check_snapshot(text, s);
			c->base = s;
		}
		return;
	}
	{
		char	   *slash2 = strchr(slash1 + 1, '/');
		char	   *json;
		MemoryContext cxt = CurrentMemoryContext;
		bool		ok = true;

		if (slash2 == NULL)
			bad_cursor(text, "a page cursor has three parts");
		*slash1 = *slash2 = '\0';
		if (*s != '\0')
		{
			check_snapshot(text, s);
			c->base = s;
		}
		check_snapshot(text, slash1 + 1);
		c->target = slash1 + 1;
		json = hex_decode_str(text, slash2 + 1);
		PG_TRY();
		{
			c->after = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			ok = false;
		}
		PG_END_TRY();
		if (!ok || !JB_ROOT_IS_ARRAY(c->after))
			bad_cursor(text, "bad page key");
	}
}

/* True when tbl's history was purged past what the snapshot base has seen. */
static bool
purged_since(FerryTable *t, const char *base)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		args[2] = {ObjectIdGetDatum(t->relid), CStringGetTextDatum(base)};
	bool		isnull;
	Datum		d;

	if (SPI_execute_with_args("SELECT purge_horizon >= pg_snapshot_xmin($2::pg_snapshot) "
							  "FROM ferry.synced_tables WHERE tbl = $1",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "ferry: reading the purge horizon of %s failed", t->qualname);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

static Jsonb *
must_refetch(const char *reason)
{
	JsonbParseState *ps = NULL;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	ferry_push_key(&ps, "must_refetch");
	ferry_push_bool(&ps, true);
	ferry_push_key(&ps, "reason");
	ferry_push_string(&ps, reason);
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
}

/* The key of the row as a hex-encoded JSON array of text values. */
static char *
page_key(FerryTable *t, HeapTuple tup, TupleDesc desc)
{
	JsonbParseState *ps = NULL;
	JsonbValue *v;

	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < t->nkeys; i++)
	{
		FerryColumn *c = &t->cols[t->keys[i]];
		bool		isnull;
		Datum		d = heap_getattr(tup, c->pos + 1, desc, &isnull);

		ferry_push_string(&ps, isnull ? NULL : ferry_datum_text(d, c->typid));
	}
	v = pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	return hex_encode_str(JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0));
}

static Jsonb *
changes(FerryTable *t, Cursor *c, const char *cursor_text, FerryClaims *claims, int max_rows)
{
	StringInfoData sql;
	Oid			types[3 + INDEX_MAX_KEYS];
	Datum		args[3 + INDEX_MAX_KEYS];
	int			n = 0;
	char	   *target;
	JsonbParseState *ps = NULL;
	uint64		nrows;
	bool		has_more;

	if (c->base != NULL && purged_since(t, c->base))
		return must_refetch("tombstones were purged or the table truncated after this cursor; "
							"start again with a NULL cursor");

	if (c->target != NULL)
		target = c->target;
	else
	{
		if (SPI_execute("SELECT pg_current_snapshot()::text", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "ferry: reading the current snapshot failed");
		target = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	}

	initStringInfo(&sql);
	types[n] = TEXTARRAYOID;
	args[n++] = PointerGetDatum(ferry_claims_tenant_array(claims));
	appendStringInfo(&sql, "SELECT %s.* FROM %s WHERE %s::text = ANY ($1) AND (%s\n)",
					 t->qualname, t->qualname, quote_identifier(t->cols[t->tenant].name), t->read_pred);
	if (c->base == NULL)
		appendStringInfoString(&sql, " AND ferry_deleted_at IS NULL");
	else
	{
		types[n] = TEXTOID;
		args[n++] = CStringGetTextDatum(c->base);
		appendStringInfo(&sql, " AND ferry_xid >= pg_snapshot_xmin($%d::pg_snapshot)"
						 " AND NOT pg_visible_in_snapshot(ferry_xid, $%d::pg_snapshot)", n, n);
	}
	if (c->after != NULL)
	{
		if ((int) JsonContainerSize(&c->after->root) != t->nkeys)
			bad_cursor(cursor_text, "the page key does not match the table's key");
		appendStringInfoString(&sql, " AND (");
		for (int i = 0; i < t->nkeys; i++)
			appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", quote_identifier(t->cols[t->keys[i]].name));
		appendStringInfoString(&sql, ") > (");
		for (int i = 0; i < t->nkeys; i++)
		{
			FerryColumn *kc = &t->cols[t->keys[i]];
			JsonbValue *kv = getIthJsonbValueFromContainer(&c->after->root, i);
			bool		isnull;

			if (kv == NULL || kv->type != jbvString)
				bad_cursor(cursor_text, "bad page key");
			types[n] = kc->typid;
			args[n++] = ferry_json_to_datum(kv, kc->typid, kc->typmod, kc->name, &isnull);
			appendStringInfo(&sql, "%s$%d", i > 0 ? ", " : "", n);
		}
		appendStringInfoString(&sql, ")");
	}
	appendStringInfoString(&sql, " ORDER BY ");
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", quote_identifier(t->cols[t->keys[i]].name));
	appendStringInfo(&sql, " LIMIT %d", max_rows + 1);

	if (SPI_execute_with_args(sql.data, n, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "ferry: reading the delta of %s failed", t->qualname);
	has_more = SPI_processed > (uint64) max_rows;
	nrows = has_more ? (uint64) max_rows : SPI_processed;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	ferry_push_key(&ps, "rows");
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (uint64 i = 0; i < nrows; i++)
		ferry_push_row(&ps, SPI_tuptable->tupdesc, SPI_tuptable->vals[i], 0, t->ncols);
	pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	ferry_push_key(&ps, "cursor");
	if (has_more)
		ferry_push_string(&ps, psprintf("%s/%s/%s", c->base != NULL ? c->base : "", target,
										page_key(t, SPI_tuptable->vals[nrows - 1], SPI_tuptable->tupdesc)));
	else
		ferry_push_string(&ps, target);
	ferry_push_key(&ps, "has_more");
	ferry_push_bool(&ps, has_more);
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
}

/*
 * ferry_changes_since is ferry.changes_since(tbl, cursor, claims, max_rows).
 */
PG_FUNCTION_INFO_V1(ferry_changes_since);
Datum
ferry_changes_since(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = CurrentMemoryContext;
	FerryClaims *prev_claims = ferry_current_claims;
	FerryClaims claims;
	FerryTable *t;
	Cursor		c;
	char	   *cursor_text;
	int			max_rows;
	char	   *why;
	Jsonb	   *out;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("table must not be NULL")));
	t = ferry_table_get(PG_GETARG_OID(0));
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FERRY_NOT_SYNCED),
				 errmsg("table %s is not synced",
						DatumGetCString(DirectFunctionCall1(regclassout, PG_GETARG_DATUM(0)))),
				 errhint("Call ferry.enable_sync first.")));
	if (!ferry_claims_parse(PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2), &claims, &why))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid claims: %s", why)));
	max_rows = PG_ARGISNULL(3) ? 1000 : PG_GETARG_INT32(3);
	if (max_rows < 1 || max_rows > MAX_ROWS_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be between 1 and %d, not %d", MAX_ROWS_LIMIT, max_rows)));
	cursor_text = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	parse_cursor(cursor_text, &c);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PG_TRY();
	{
		ferry_current_claims = &claims;
		t = ferry_table_get(PG_GETARG_OID(0));
		out = changes(t, &c, cursor_text, &claims, max_rows);
	}
	PG_FINALLY();
	{
		ferry_current_claims = prev_claims;
	}
	PG_END_TRY();
	/* out lives in SPI memory until SPI_finish: copy it to the caller's. */
	{
		MemoryContext old = MemoryContextSwitchTo(callcxt);

		out = (Jsonb *) PG_DETOAST_DATUM_COPY(JsonbPGetDatum(out));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	PG_RETURN_JSONB_P(out);
}
