/*
 * extension/trigger.c -- the row trigger of synced tables, and purging.
 *
 * BEFORE INSERT/UPDATE: maintain ferry_version, ferry_updated_at, ferry_xid
 * and the per-column clocks in ferry_clock; refuse changes to the tenant
 * column and to immutable columns. BEFORE DELETE: turn the delete into a
 * tombstone. INSERT of a tombstoned key: replace the tombstone, continuing
 * its version. Only ferry._purge_table deletes rows for real; it sets
 * `bypass` so this trigger lets its deletes through.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "ferry.h"

/* The clock of the mutation being applied; NULL for ordinary SQL writes. */
const FerryHlc *ferry_write_clock = NULL;

/* True while ferry itself deletes rows physically. */
static bool bypass = false;

/* ----------------------------------------------------------------
 * Column clocks
 * ---------------------------------------------------------------- */

/*
 * Reads a ferry_clock object into one optional clock per column position.
 * Entries that do not parse or name no live column are ignored.
 */
void
ferry_clocks_read(FerryTable *t, Datum d, bool isnull, FerryHlc *clocks, bool *has)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			pos = -1;

	memset(has, 0, sizeof(bool) * t->ncols);
	if (isnull)
		return;
	it = JsonbIteratorInit(&DatumGetJsonbP(d)->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *name = pnstrdup(v.val.string.val, v.val.string.len);
			FerryColumn *c = ferry_table_column(t, name);

			pos = c != NULL ? c->pos : -1;
		}
		else if (tok == WJB_VALUE && pos >= 0 && v.type == jbvString)
			has[pos] = ferry_hlc_parse(v.val.string.val, v.val.string.len, &clocks[pos]);
	}
}

static Datum
clocks_write(FerryTable *t, FerryHlc *clocks, bool *has)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < t->ncols; i++)
	{
		if (!has[i])
			continue;
		ferry_push_key(&ps, t->cols[i].name);
		ferry_push_string(&ps, ferry_hlc_format(&clocks[i]));
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* Sets *clock to the clock of a write to a column whose clock was prev. */
static void
next_clock(const FerryHlc *prev, FerryHlc *clock)
{
	if (ferry_write_clock == NULL)
		ferry_hlc_server_next(prev, clock);
	else if (prev != NULL && ferry_hlc_cmp(prev, ferry_write_clock) > 0)
		*clock = *prev;
	else
		*clock = *ferry_write_clock;
}

/* ----------------------------------------------------------------
 * The trigger
 * ---------------------------------------------------------------- */

typedef struct RowEdit
{
	int			n;				/* columns replaced */
	int			attnums[5];		/* their attribute numbers */
	Datum		values[5];		/* new values */
	bool		nulls[5];		/* new nulls */
} RowEdit;

static void
edit(RowEdit *e, FerryTable *t, int pos, Datum value, bool isnull)
{
	e->attnums[e->n] = t->cols[pos].attnum;
	e->values[e->n] = value;
	e->nulls[e->n] = isnull;
	e->n++;
}

static Datum
column_value(FerryTable *t, TupleDesc desc, HeapTuple tup, int pos, bool *isnull)
{
	return heap_getattr(tup, t->cols[pos].attnum, desc, isnull);
}

static bool
column_changed(FerryTable *t, TupleDesc desc, HeapTuple oldtup, HeapTuple newtup, int pos)
{
	Form_pg_attribute att = TupleDescAttr(desc, t->cols[pos].attnum - 1);
	bool		onull,
				nnull;
	Datum		o = column_value(t, desc, oldtup, pos, &onull);
	Datum		n = column_value(t, desc, newtup, pos, &nnull);

	if (onull || nnull)
		return onull != nnull;
	return !datum_image_eq(o, n, att->attbyval, att->attlen);
}

static void
set_common_meta(RowEdit *e, FerryTable *t, int64 version)
{
	edit(e, t, t->col_version, Int64GetDatum(version), false);
	edit(e, t, t->col_updated, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()), false);
	edit(e, t, t->col_xid, FullTransactionIdGetDatum(GetTopFullTransactionId()), false);
}

/*
 * Removes a tombstone with the key of newtup, so the insert can take its
 * place. Returns the tombstone's version, or 0 when there was none.
 */
static int64
drop_tombstone(FerryTable *t, TupleDesc desc, HeapTuple newtup)
{
	Datum	   *keys = palloc(sizeof(Datum) * t->nkeys);
	char	   *nulls = palloc(t->nkeys + 1);
	int64		version = 0;
	int			rc;

	for (int i = 0; i < t->nkeys; i++)
	{
		bool		isnull;

		keys[i] = column_value(t, desc, newtup, t->keys[i], &isnull);
		if (isnull)
			return 0;			/* the NOT NULL of the key will refuse the row */
		nulls[i] = ' ';
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (t->plan_resurrect == NULL)
	{
		Oid		   *types = palloc(sizeof(Oid) * t->nkeys);

		for (int i = 0; i < t->nkeys; i++)
			types[i] = t->cols[t->keys[i]].typid;
		t->plan_resurrect = ferry_keep_plan(t,
											psprintf("DELETE FROM %s WHERE %s AND ferry_deleted_at IS NOT NULL RETURNING ferry_version",
													 t->qualname, ferry_key_condition(t, 1)),
											t->nkeys, types);
	}
	bypass = true;
	PG_TRY();
	{
		rc = SPI_execute_plan(t->plan_resurrect, keys, nulls, false, 1);
	}
	PG_FINALLY();
	{
		bypass = false;
	}
	PG_END_TRY();
	if (rc != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "ferry: removing a tombstone failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull;

		version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return version;
}

static HeapTuple
on_insert(FerryTable *t, Relation rel, HeapTuple newtup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	FerryHlc   *clocks = palloc(sizeof(FerryHlc) * t->ncols);
	bool	   *has = palloc0(sizeof(bool) * t->ncols);
	RowEdit		e = {0};
	int64		prior = drop_tombstone(t, desc, newtup);

	for (int i = 0; i < t->ncols; i++)
	{
		bool		isnull;

		if (t->cols[i].is_meta)
			continue;
		(void) column_value(t, desc, newtup, i, &isnull);
		if (isnull)
			continue;
		next_clock(NULL, &clocks[i]);
		has[i] = true;
	}
	set_common_meta(&e, t, prior + 1);
	edit(&e, t, t->col_deleted, (Datum) 0, true);
	edit(&e, t, t->col_clock, clocks_write(t, clocks, has), false);
	return heap_modify_tuple_by_cols(newtup, desc, e.n, e.attnums, e.values, e.nulls);
}

static HeapTuple
on_update(FerryTable *t, Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	FerryHlc   *clocks = palloc(sizeof(FerryHlc) * t->ncols);
	bool	   *has = palloc(sizeof(bool) * t->ncols);
	RowEdit		e = {0};
	bool		isnull;
	Datum		d;
	int64		version;

	if (column_changed(t, desc, oldtup, newtup, t->tenant))
		ereport(ERROR,
				(errcode(ERRCODE_FERRY_TENANT_IMMUTABLE),
				 errmsg("cannot change tenant column \"%s\" of synced table %s",
						t->cols[t->tenant].name, t->qualname),
				 errdetail("Clients route and authorize rows by tenant; a row never moves between tenants."),
				 errhint("Insert a copy under the new tenant and delete the old row.")));

	d = column_value(t, desc, oldtup, t->col_clock, &isnull);
	ferry_clocks_read(t, d, isnull, clocks, has);
	for (int i = 0; i < t->ncols; i++)
	{
		FerryHlc	prev;

		if (t->cols[i].is_meta || !column_changed(t, desc, oldtup, newtup, i))
			continue;
		if (t->cols[i].rule == FERRY_RULE_IMMUTABLE)
			ereport(ERROR,
					(errcode(ERRCODE_FERRY_COLUMN_IMMUTABLE),
					 errmsg("cannot change immutable column \"%s\" of %s", t->cols[i].name, t->qualname),
					 errhint("Its conflict rule is immutable; ferry.set_conflict_rule changes that.")));
		prev = clocks[i];
		next_clock(has[i] ? &prev : NULL, &clocks[i]);
		has[i] = true;
	}

	d = column_value(t, desc, oldtup, t->col_version, &isnull);
	version = isnull ? 1 : DatumGetInt64(d) + 1;
	set_common_meta(&e, t, version);
	edit(&e, t, t->col_clock, clocks_write(t, clocks, has), false);
	return heap_modify_tuple_by_cols(newtup, desc, e.n, e.attnums, e.values, e.nulls);
}

static void
on_delete(FerryTable *t, Relation rel, HeapTuple oldtup)
{
	bool		isnull;
	Datum		arg[1];
	int			rc;

	(void) column_value(t, RelationGetDescr(rel), oldtup, t->col_deleted, &isnull);
	if (!isnull)
		return;					/* already a tombstone */

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (t->plan_tombstone == NULL)
	{
		Oid			types[1] = {TIDOID};

		t->plan_tombstone = ferry_keep_plan(t,
											psprintf("UPDATE %s SET ferry_deleted_at = now() WHERE ctid = $1", t->qualname),
											1, types);
	}
	arg[0] = PointerGetDatum(&oldtup->t_self);
	rc = SPI_execute_plan(t->plan_tombstone, arg, NULL, false, 1);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "ferry: writing a tombstone failed: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * ferry_row_trigger is ferry.row_trigger(), installed on every synced table as
 * BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW.
 */
PG_FUNCTION_INFO_V1(ferry_row_trigger);
Datum
ferry_row_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	FerryTable *t;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ferry.row_trigger must run BEFORE ... FOR EACH ROW")));
	rel = td->tg_relation;

	if (bypass || (t = ferry_table_get(RelationGetRelid(rel))) == NULL)
		return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		return PointerGetDatum(on_insert(t, rel, td->tg_trigtuple));
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		return PointerGetDatum(on_update(t, rel, td->tg_trigtuple, td->tg_newtuple));
	on_delete(t, rel, td->tg_trigtuple);
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * Purging tombstones
 * ---------------------------------------------------------------- */

/*
 * ferry_purge_table is ferry._purge_table(tbl, older_than): physically
 * deletes tbl's tombstones older than now() - older_than (all of them when
 * older_than is NULL), moves the table's purge horizon past them, and returns
 * how many rows went.
 */
PG_FUNCTION_INFO_V1(ferry_purge_table);
Datum
ferry_purge_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	FerryTable *t;
	char	   *sql;
	Oid			types[2] = {INTERVALOID, OIDOID};
	Datum		args[2];
	int64		count;
	bool		isnull;
	int			rc;

	if (PG_ARGISNULL(0))
		PG_RETURN_INT64(0);
	relid = PG_GETARG_OID(0);
	t = ferry_table_get(relid);
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FERRY_NOT_SYNCED),
				 errmsg("table %u is not synced", relid)));

	sql = psprintf("WITH d AS (DELETE FROM %s WHERE ferry_deleted_at IS NOT NULL %s RETURNING ferry_xid) "
				   "SELECT count(*), (SELECT max(ferry_xid::text::numeric) FROM d)::text::xid8 FROM d",
				   t->qualname, PG_ARGISNULL(1) ? "" : "AND ferry_deleted_at < now() - $1");
	args[0] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	args[1] = ObjectIdGetDatum(relid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	bypass = true;
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, PG_ARGISNULL(1) ? 0 : 1, types, args, NULL, false, 0);
	}
	PG_FINALLY();
	{
		bypass = false;
	}
	PG_END_TRY();
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "ferry: purging %s failed: %s", t->qualname, SPI_result_code_string(rc));
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (count > 0)
	{
		Oid			htypes[2] = {OIDOID, XID8OID};
		Datum		hargs[2];
		char		hnulls[3] = "  ";

		hargs[0] = ObjectIdGetDatum(relid);
		hargs[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (isnull)
			hnulls[1] = 'n';
		rc = SPI_execute_with_args("UPDATE ferry.synced_tables SET purge_horizon = greatest(purge_horizon, $2) WHERE tbl = $1",
								   2, htypes, hargs, hnulls, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "ferry: recording the purge horizon failed");
	}
	SPI_finish();
	PG_RETURN_INT64(count);
}
