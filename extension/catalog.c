/*
 * extension/catalog.c -- the per-backend cache of synced tables.
 *
 * A FerryTable describes one table as ferry sees it: columns, key, tenant
 * column, conflict rules, the OR of its rules, and the SPI plans ferry runs
 * against it. It is built from ferry.synced_tables, ferry.rules and
 * ferry.conflict_rules on first use and dropped on any relcache invalidation
 * of the table; the catalog tables' trigger (ferry._invalidate) sends one on
 * every change to them.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "storage/bufmgr.h"

#include "ferry.h"

static HTAB *tables = NULL;

/*
 * Contexts of invalidated entries. Their plans may still be running further
 * up the stack, so they are freed only at the end of the transaction.
 */
static List *graveyard = NIL;
static List *plan_graveyard = NIL;

static const char *const rule_names[] = {
	[FERRY_RULE_LWW] = "lww",
	[FERRY_RULE_VERSION] = "version",
	[FERRY_RULE_MANUAL] = "manual",
	[FERRY_RULE_SET_UNION] = "set_union",
	[FERRY_RULE_COUNTER] = "counter",
	[FERRY_RULE_IMMUTABLE] = "immutable",
};

/*
 * ferry_rule_parse maps a rule name to its enum value.
 */
bool
ferry_rule_parse(const char *name, FerryRule *rule)
{
	for (int i = 0; i < (int) lengthof(rule_names); i++)
	{
		if (strcmp(name, rule_names[i]) == 0)
		{
			*rule = (FerryRule) i;
			return true;
		}
	}
	return false;
}

const char *
ferry_rule_name(FerryRule rule)
{
	return rule_names[rule];
}

static void
bury_plan(SPIPlanPtr plan)
{
	if (plan != NULL)
		plan_graveyard = lappend(plan_graveyard, plan);
}

/*
 * Hands t's memory and plans to the graveyards, once. Code further up the
 * stack may still be using them: they stay valid until the transaction ends.
 */
static void
bury(FerryTable *t)
{
	MemoryContext old;

	if (t->mcxt == NULL || t->buried)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	graveyard = lappend(graveyard, t->mcxt);
	if (t->synced)
	{
		bury_plan(t->plan_tombstone);
		bury_plan(t->plan_resurrect);
		bury_plan(t->plan_fetch);
		bury_plan(t->plan_delete);
		for (FerryPlan *p = t->plans_update; p != NULL; p = p->next)
			bury_plan(p->plan);
		for (FerryPlan *p = t->plans_insert; p != NULL; p = p->next)
			bury_plan(p->plan);
	}
	MemoryContextSwitchTo(old);
	t->buried = true;
}

/* Marks t stale: the next ferry_table_get builds it again. */
static void
forget(FerryTable *t)
{
	bury(t);
	t->valid = false;
	t->generation++;
}

static void
relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	FerryTable *t;

	if (tables == NULL)
		return;
	if (OidIsValid(relid))
	{
		t = hash_search(tables, &relid, HASH_FIND, NULL);
		if (t != NULL)
			forget(t);
		return;
	}
	hash_seq_init(&seq, tables);
	while ((t = hash_seq_search(&seq)) != NULL)
		forget(t);
}

static void
xact_callback(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	while (graveyard != NIL)
	{
		MemoryContext c = linitial(graveyard);

		graveyard = list_delete_first(graveyard);
		MemoryContextDelete(c);
	}
	while (plan_graveyard != NIL)
	{
		SPIPlanPtr	p = linitial(plan_graveyard);

		plan_graveyard = list_delete_first(plan_graveyard);
		SPI_freeplan(p);
	}
}

/*
 * ferry_catalog_init sets up the cache; called once from _PG_init.
 */
void
ferry_catalog_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(FerryTable);
	tables = hash_create("ferry tables", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
	RegisterXactCallback(xact_callback, NULL);
}

/*
 * ferry_invalidate_trigger is the AFTER ROW trigger on ferry's catalog tables:
 * it invalidates the cached view of the table the changed row is about.
 */
PG_FUNCTION_INFO_V1(ferry_invalidate_trigger);
Datum
ferry_invalidate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuples[2];

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "ferry._invalidate must be called as a trigger");
	tuples[0] = td->tg_trigtuple;
	tuples[1] = td->tg_newtuple;
	for (int i = 0; i < 2; i++)
	{
		bool		isnull;
		Oid			relid;

		if (tuples[i] == NULL)
			continue;
		/* The first column of every ferry catalog table is tbl regclass. */
		relid = DatumGetObjectId(heap_getattr(tuples[i], 1, td->tg_relation->rd_att, &isnull));
		if (!isnull && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			CacheInvalidateRelcacheByRelid(relid);
	}
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * Building an entry
 * ---------------------------------------------------------------- */

static int
column_pos(FerryTable *t, const char *name)
{
	for (int i = 0; i < t->ncols; i++)
		if (strcmp(t->cols[i].name, name) == 0)
			return i;
	return -1;
}

/*
 * ferry_table_column returns the live column called name, or NULL.
 */
FerryColumn *
ferry_table_column(FerryTable *t, const char *name)
{
	int			pos = column_pos(t, name);

	return pos < 0 ? NULL : &t->cols[pos];
}

static int
meta_pos(FerryTable *t, const char *name)
{
	int			pos = column_pos(t, name);

	if (pos < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FERRY_NOT_SYNCED),
				 errmsg("synced table %s has lost its column %s", t->qualname, name),
				 errhint("Call ferry.disable_sync and ferry.enable_sync again.")));
	return pos;
}

/* Appends "(p1) OR (p2) ..." of one predicate column of the rules rows. */
static char *
or_predicates(SPITupleTable *tt, uint64 n, int col, int fallback_col)
{
	StringInfoData buf;

	if (n == 0)
		return "true";
	initStringInfo(&buf);
	for (uint64 i = 0; i < n; i++)
	{
		char	   *p = SPI_getvalue(tt->vals[i], tt->tupdesc, col);

		if (p == NULL)
			p = SPI_getvalue(tt->vals[i], tt->tupdesc, fallback_col);
		/* The newline ends a trailing "--" comment inside the predicate. */
		appendStringInfo(&buf, "%s(%s\n)", i > 0 ? " OR " : "", p);
	}
	return buf.data;
}

static void
build(FerryTable *t)
{
	Relation	rel;
	TupleDesc	desc;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	MemoryContext old;
	char	   *tenant;
	Datum		keysd;
	bool		isnull;
	int			n = 0;
	uint64		generation = t->generation;

	t->mcxt = AllocSetContextCreate(CacheMemoryContext, "ferry table", ALLOCSET_SMALL_SIZES);
	t->buried = false;
	t->synced = false;
	t->plans_update = t->plans_insert = NULL;
	t->plan_tombstone = t->plan_resurrect = t->plan_fetch = t->plan_delete = NULL;
	args[0] = ObjectIdGetDatum(t->relid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT tenant_column::text, key_columns::text[] FROM ferry.synced_tables WHERE tbl = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "cannot read ferry.synced_tables");
	if (SPI_processed == 0)
	{
		SPI_finish();
		t->valid = t->generation == generation;
		return;
	}
	old = MemoryContextSwitchTo(t->mcxt);
	tenant = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	keysd = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	keysd = PointerGetDatum(DatumGetArrayTypePCopy(keysd));

	rel = table_open(t->relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	t->planned_blocks = RelationGetNumberOfBlocks(rel);
	t->qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											 RelationGetRelationName(rel));
	t->cols = palloc0(sizeof(FerryColumn) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		FerryColumn *c;

		if (att->attisdropped)
			continue;
		c = &t->cols[n];
		strlcpy(c->name, NameStr(att->attname), NAMEDATALEN);
		c->attnum = att->attnum;
		c->pos = n;
		c->typid = att->atttypid;
		c->typmod = att->atttypmod;
		c->collation = att->attcollation;
		c->rule = FERRY_RULE_LWW;
		c->is_meta = strncmp(c->name, FERRY_META_PREFIX, strlen(FERRY_META_PREFIX)) == 0;
		n++;
	}
	t->ncols = n;
	table_close(rel, AccessShareLock);

	t->tenant = column_pos(t, tenant);
	if (t->tenant < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FERRY_NOT_SYNCED),
				 errmsg("synced table %s has lost its tenant column %s", t->qualname, tenant)));
	t->cols[t->tenant].is_tenant = true;
	{
		Datum	   *elems;
		bool	   *nulls;
		int			nk;

		deconstruct_array(DatumGetArrayTypeP(keysd), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nk);
		t->nkeys = nk;
		t->keys = palloc(sizeof(int) * nk);
		for (int i = 0; i < nk; i++)
		{
			char	   *kname = TextDatumGetCString(elems[i]);

			t->keys[i] = column_pos(t, kname);
			if (t->keys[i] < 0)
				ereport(ERROR,
						(errcode(ERRCODE_FERRY_NOT_SYNCED),
						 errmsg("synced table %s has lost its key column %s", t->qualname, kname)));
			t->cols[t->keys[i]].is_key = true;
		}
	}
	t->col_version = meta_pos(t, FERRY_COL_VERSION);
	t->col_updated = meta_pos(t, FERRY_COL_UPDATED_AT);
	t->col_deleted = meta_pos(t, FERRY_COL_DELETED_AT);
	t->col_xid = meta_pos(t, FERRY_COL_XID);
	t->col_clock = meta_pos(t, FERRY_COL_CLOCK);
	MemoryContextSwitchTo(old);

	if (SPI_execute_with_args("SELECT col::text, rule FROM ferry.conflict_rules WHERE tbl = $1",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cannot read ferry.conflict_rules");
	t->has_immutable = t->has_version = false;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *col = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *rule = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		int			pos = column_pos(t, col);

		if (pos < 0 || !ferry_rule_parse(rule, &t->cols[pos].rule))
			continue;
		t->has_immutable |= t->cols[pos].rule == FERRY_RULE_IMMUTABLE;
		t->has_version |= t->cols[pos].rule == FERRY_RULE_VERSION;
	}

	if (SPI_execute_with_args("SELECT read_predicate, write_predicate FROM ferry.rules WHERE tbl = $1 ORDER BY name",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "cannot read ferry.rules");
	old = MemoryContextSwitchTo(t->mcxt);
	t->read_pred = pstrdup(or_predicates(SPI_tuptable, SPI_processed, 1, 1));
	t->write_pred = pstrdup(or_predicates(SPI_tuptable, SPI_processed, 2, 1));
	MemoryContextSwitchTo(old);

	SPI_finish();
	t->synced = true;
	/* An invalidation that arrived while building leaves it stale. */
	t->valid = t->generation == generation;
}

/*
 * Plans kept for a table that was nearly empty when they were made may scan
 * it sequentially for ever: once such a table has grown, plan again.
 */
#define SMALL_TABLE_BLOCKS 64

static bool
outgrew_plans(FerryTable *t)
{
	Relation	rel;
	BlockNumber now;

	if (!t->synced || t->planned_blocks >= SMALL_TABLE_BLOCKS)
		return false;
	rel = RelationIdGetRelation(t->relid);
	if (!RelationIsValid(rel))
		return false;
	now = RelationGetNumberOfBlocks(rel);
	RelationClose(rel);
	return now >= 2 * t->planned_blocks + 8;
}

/*
 * ferry_table_get returns the cached view of relid, building it when needed,
 * or NULL when relid is not a synced table. The entry lives until the next
 * invalidation of the table; do not keep it across statements.
 */
FerryTable *
ferry_table_get(Oid relid)
{
	FerryTable *t;
	bool		found;

	t = hash_search(tables, &relid, HASH_ENTER, &found);
	if (!found)
	{
		t->mcxt = NULL;
		t->buried = false;
		t->valid = false;
		t->synced = false;
		t->generation = 0;
	}
	if (t->valid && outgrew_plans(t))
		forget(t);
	if (!t->valid)
	{
		bury(t);
		PG_TRY();
		{
			build(t);
		}
		PG_CATCH();
		{
			forget(t);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	return t->synced ? t : NULL;
}

/*
 * ferry_keep_plan prepares sql and keeps the plan for the life of t.
 * The caller must be connected to SPI.
 */
SPIPlanPtr
ferry_keep_plan(FerryTable *t, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "ferry: cannot prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "ferry: SPI_keepplan failed");
	(void) t;
	return plan;
}

/*
 * ferry_key_condition returns "k1 = $n AND k2 = $n+1 ..." over t's key.
 */
char *
ferry_key_condition(FerryTable *t, int first_param)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < t->nkeys; i++)
		appendStringInfo(&buf, "%s%s = $%d", i > 0 ? " AND " : "",
						 quote_identifier(t->cols[t->keys[i]].name), first_param + i);
	return buf.data;
}
