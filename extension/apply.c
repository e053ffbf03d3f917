/*
 * extension/apply.c -- applying one mutation: reading it, locking the row, running each
 * changed column through its conflict rule, and writing what wins.
 *
 * Runs inside ferry.apply_mutation's subtransaction (mutation.c): any error
 * raised here rolls the writes back and becomes a `rejected` result.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/uuid.h"
#include "utils/varlena.h"

#include "mutation.h"

/* ----------------------------------------------------------------
 * Reading the mutation
 * ---------------------------------------------------------------- */

static bool
is_uuid(const char *s)
{
	static const char *shape = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	if (strlen(s) != strlen(shape))
		return false;
	for (int i = 0; shape[i]; i++)
	{
		if (shape[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/* Reads what must be known before anything is recorded: id and client_id. */
bool
ferry_mutation_read_envelope(Jsonb *jb, Mutation *m, char **why)
{
	JsonbValue	buf;
	JsonbValue *v;

	memset(m, 0, sizeof(*m));
	m->jb = jb;
	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
	{
		*why = "the mutation must be a JSON object";
		return false;
	}
	v = ferry_json_get(jb, "id", &buf);
	if (v == NULL || v->type != jbvString || !is_uuid(ferry_json_string(v)))
	{
		*why = "\"id\" must be a UUID string";
		return false;
	}
	m->id = ferry_json_string(v);
	for (char *p = m->id; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	v = ferry_json_get(jb, "client_id", &buf);
	if (v == NULL || v->type != jbvString || v->val.string.len == 0 || v->val.string.len > 256)
	{
		*why = "\"client_id\" must be a non-empty string of at most 256 bytes";
		return false;
	}
	m->client_id = ferry_json_string(v);
	return true;
}

/* Reads op, clock and base_version; raises FY101 when malformed. */
static void
read_body(Mutation *m)
{
	JsonbValue	buf;
	JsonbValue *v;
	char	   *op;

	v = ferry_json_get(m->jb, "op", &buf);
	op = (v != NULL && v->type == jbvString) ? ferry_json_string(v) : "";
	if (strcmp(op, "insert") == 0)
		m->op = OP_INSERT;
	else if (strcmp(op, "update") == 0)
		m->op = OP_UPDATE;
	else if (strcmp(op, "delete") == 0)
		m->op = OP_DELETE;
	else
		reject(ERRCODE_FERRY_M_INVALID, NULL, "\"op\" must be \"insert\", \"update\" or \"delete\"");

	v = ferry_json_get(m->jb, "clock", &buf);
	if (v == NULL || v->type == jbvNull)
		ferry_hlc_server_next(NULL, &m->clock);
	else if (v->type != jbvString || !ferry_hlc_parse(v->val.string.val, v->val.string.len, &m->clock))
		reject(ERRCODE_FERRY_M_INVALID, NULL,
			   "\"clock\" must be a hybrid logical clock \"<ms>-<counter>-<node>\"");
	else
	{
		int64		now = ferry_hlc_now_ms();

		/* A clock far ahead of ours would win every later race: clamp it. */
		if (m->clock.ms > now + (int64) ferry_max_clock_skew * 1000)
			m->clock.ms = now;
	}

	v = ferry_json_get(m->jb, "base_version", &buf);
	if (v != NULL && v->type == jbvNumeric)
	{
		m->has_base_version = true;
		m->base_version = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
	}
	else if (v != NULL && v->type != jbvNull)
		reject(ERRCODE_FERRY_M_INVALID, NULL, "\"base_version\" must be an integer");
}

static FerryTable *
read_table(Mutation *m)
{
	JsonbValue	buf;
	JsonbValue *v = ferry_json_get(m->jb, "table", &buf);
	char	   *name;
	Oid			relid;
	FerryTable *t;

	if (v == NULL || v->type != jbvString || v->val.string.len == 0)
		reject(ERRCODE_FERRY_M_INVALID, NULL, "\"table\" must name a synced table");
	name = ferry_json_string(v);
	{
		/* A malformed name is an unknown table, not a syntax error. */
		MemoryContext cxt = CurrentMemoryContext;
		List	   *names = NIL;

		PG_TRY();
		{
			names = stringToQualifiedNameList(name);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			names = NIL;
		}
		PG_END_TRY();
		if (names == NIL || list_length(names) > 2)
			reject(ERRCODE_FERRY_M_TABLE, NULL, "\"%s\" is not a table name; use \"schema.table\"", name);
		relid = RangeVarGetRelid(makeRangeVarFromNameList(names), NoLock, true);
	}
	t = OidIsValid(relid) ? ferry_table_get(relid) : NULL;
	if (t == NULL)
		reject(ERRCODE_FERRY_M_TABLE, NULL, "table \"%s\" does not exist or is not synced", name);
	return t;
}

/* The values a mutation gives, by column position. */
typedef struct Values
{
	bool	   *given;			/* column appears in changes or key */
	Datum	   *new;			/* new values */
	bool	   *new_null;
	Datum	   *base;			/* base values (updates) */
	bool	   *base_null;
} Values;

static void read_changes(Mutation *m, FerryTable *t, JsonbValue *changes, Values *vals);

static void
read_values(Mutation *m, FerryTable *t, Values *vals)
{
	JsonbValue	buf;
	JsonbValue *key = ferry_json_get(m->jb, "key", &buf);
	JsonbValue	cbuf;
	JsonbValue *changes = ferry_json_get(m->jb, "changes", &cbuf);
	int			n = t->ncols;

	vals->given = palloc0(sizeof(bool) * n);
	vals->new = palloc0(sizeof(Datum) * n);
	vals->new_null = palloc0(sizeof(bool) * n);
	vals->base = palloc0(sizeof(Datum) * n);
	vals->base_null = palloc0(sizeof(bool) * n);

	/*
	 * The key: the primary key columns, none of them null. An insert may
	 * give some or all of them in changes instead.
	 */
	if (key == NULL || key->type == jbvNull)
	{
		if (m->op != OP_INSERT)
			reject(ERRCODE_FERRY_M_KEY, NULL, "\"key\" must be an object with the primary key of %s", t->qualname);
	}
	else if (key->type != jbvBinary || !JsonContainerIsObject(key->val.binary.data))
		reject(ERRCODE_FERRY_M_KEY, NULL, "\"key\" must be an object with the primary key of %s", t->qualname);
	else
	{
		JsonbIterator *it = JsonbIteratorInit(key->val.binary.data);
		JsonbValue	kv;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &kv, true)) != WJB_DONE)
		{
			FerryColumn *c;
			char	   *name;

			if (tok != WJB_KEY)
				continue;
			name = ferry_json_string(&kv);
			c = ferry_table_column(t, name);
			if (c == NULL || !c->is_key)
				reject(ERRCODE_FERRY_M_KEY, name, "\"%s\" is not a primary key column of %s", name, t->qualname);
		}
		for (int i = 0; i < t->nkeys; i++)
		{
			FerryColumn *c = &t->cols[t->keys[i]];
			JsonbValue	kbuf;
			JsonbValue *v = ferry_json_get_in(key, c->name, &kbuf);

			if (v == NULL || v->type == jbvNull)
			{
				if (m->op != OP_INSERT)
					reject(ERRCODE_FERRY_M_KEY, c->name, "\"key\" lacks primary key column \"%s\"", c->name);
				continue;
			}
			vals->new[c->pos] = ferry_json_to_datum(v, c->typid, c->typmod, c->name, &vals->new_null[c->pos]);
			vals->base[c->pos] = vals->new[c->pos];
			vals->given[c->pos] = true;
		}
	}

	read_changes(m, t, changes, vals);

	for (int i = 0; i < t->nkeys; i++)
	{
		FerryColumn *c = &t->cols[t->keys[i]];

		if (!vals->given[c->pos] || vals->new_null[c->pos])
			reject(ERRCODE_FERRY_M_KEY, c->name, "the mutation does not give primary key column \"%s\"", c->name);
	}
}

/* Reads "changes" into vals; key columns in it must agree with "key". */
static void
read_changes(Mutation *m, FerryTable *t, JsonbValue *changes, Values *vals)
{
	if (changes == NULL || changes->type == jbvNull)
		return;
	if (changes->type != jbvBinary || !JsonContainerIsObject(changes->val.binary.data))
		reject(ERRCODE_FERRY_M_INVALID, NULL, "\"changes\" must be an object of {\"old\", \"new\"} per column");
	{
		JsonbIterator *it = JsonbIteratorInit(changes->val.binary.data);
		JsonbValue	v;
		JsonbIteratorToken tok;
		FerryColumn *c = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				char	   *name = ferry_json_string(&v);

				c = ferry_table_column(t, name);
				if (c == NULL)
					reject(ERRCODE_FERRY_M_COLUMN, name, "%s has no column \"%s\"", t->qualname, name);
				if (c->is_meta)
					reject(ERRCODE_FERRY_M_COLUMN, name, "column \"%s\" is maintained by ferry and cannot be written", name);
			}
			else if (tok == WJB_VALUE)
			{
				JsonbValue	nbuf,
							obuf;
				JsonbValue *nv = ferry_json_get_in(&v, "new", &nbuf);
				JsonbValue *ov = ferry_json_get_in(&v, "old", &obuf);
				Datum		d;
				bool		isnull;

				if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data) || nv == NULL)
					reject(ERRCODE_FERRY_M_INVALID, c->name,
						   "change of column \"%s\" must be an object with \"new\"%s", c->name,
						   m->op == OP_UPDATE ? " and \"old\"" : "");
				if (m->op == OP_UPDATE && ov == NULL)
					reject(ERRCODE_FERRY_M_INVALID, c->name,
						   "change of column \"%s\" lacks \"old\", the value the edit was based on", c->name);
				d = ferry_json_to_datum(nv, c->typid, c->typmod, c->name, &isnull);
				if (c->is_key && vals->given[c->pos] &&
					!ferry_datum_equal(d, isnull, vals->new[c->pos], vals->new_null[c->pos], c->typid, c->collation))
					reject(ERRCODE_FERRY_M_KEY, c->name, "key column \"%s\" cannot change", c->name);
				vals->new[c->pos] = d;
				vals->new_null[c->pos] = isnull;
				if (ov != NULL)
					vals->base[c->pos] = ferry_json_to_datum(ov, c->typid, c->typmod, c->name,
															 &vals->base_null[c->pos]);
				vals->given[c->pos] = true;
			}
		}
	}
}

/* ----------------------------------------------------------------
 * Statements
 * ---------------------------------------------------------------- */

/*
 * Locks the row with the key in vals. Returns false when there is none; on
 * true, SPI_tuptable holds: ctid, the row (t.*), and whether the caller may
 * write it (the write rules on the row as it is).
 */
static bool
fetch_row(FerryTable *t, Values *vals)
{
	Datum	   *args = palloc(sizeof(Datum) * t->nkeys);
	int			rc;

	if (t->plan_fetch == NULL)
	{
		Oid		   *types = palloc(sizeof(Oid) * t->nkeys);

		for (int i = 0; i < t->nkeys; i++)
			types[i] = t->cols[t->keys[i]].typid;
		t->plan_fetch = ferry_keep_plan(t, psprintf("SELECT ctid, %s.*, (%s\n) FROM %s WHERE %s FOR UPDATE",
													t->qualname, t->write_pred, t->qualname,
													ferry_key_condition(t, 1)),
										t->nkeys, types);
	}
	for (int i = 0; i < t->nkeys; i++)
		args[i] = vals->new[t->keys[i]];
	rc = SPI_execute_plan(t->plan_fetch, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "ferry: reading the row failed: %s", SPI_result_code_string(rc));
	return SPI_processed > 0;
}

static Datum
fetched(FerryTable *t, int pos, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, pos + 2, isnull);
}

static bool
fetched_writable(FerryTable *t)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, t->ncols + 2, &isnull);

	return !isnull && DatumGetBool(d);
}

/* Sets res's version and row from a tuple holding t.* from column first. */
static void
result_row(MutationResult *res, FerryTable *t, HeapTuple tup, TupleDesc desc, int first)
{
	bool		isnull;

	res->has_version = true;
	res->version = DatumGetInt64(heap_getattr(tup, first + t->col_version + 1, desc, &isnull));
	res->row = ferry_row_jsonb(desc, tup, first, t->ncols);
}

static char *
tenant_text(FerryTable *t, Datum d)
{
	return ferry_datum_text(d, t->cols[t->tenant].typid);
}

/*
 * Runs an INSERT or UPDATE of the columns in cols (positions), kept per
 * column set. RETURNING gives t.* and the write rules on the new row.
 */
static bool
write_row(FerryTable *t, bool insert, Bitmapset *cols, Values *vals, Datum ctid,
		  const FerryHlc *clock, MutationResult *res)
{
	FerryPlan **list = insert ? &t->plans_insert : &t->plans_update;
	FerryPlan  *p;
	int			n = bms_num_members(cols);
	Datum	   *args = palloc(sizeof(Datum) * (n + 1));
	char	   *nulls = palloc(n + 2);
	int			i = 0;
	int			pos = -1;
	int			rc;
	bool		isnull;

	for (p = *list; p != NULL; p = p->next)
		if (bms_equal(p->cols, cols))
			break;
	if (p == NULL)
	{
		StringInfoData sql;
		StringInfoData tail;
		Oid		   *types = palloc(sizeof(Oid) * (n + 1));
		MemoryContext old;

		initStringInfo(&sql);
		initStringInfo(&tail);
		appendStringInfo(&sql, insert ? "INSERT INTO %s (" : "UPDATE %s SET ", t->qualname);
		while ((pos = bms_next_member(cols, pos)) >= 0)
		{
			if (insert)
			{
				appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", quote_identifier(t->cols[pos].name));
				appendStringInfo(&tail, "%s$%d", i > 0 ? ", " : "", i + 1);
			}
			else
				appendStringInfo(&sql, "%s%s = $%d", i > 0 ? ", " : "", quote_identifier(t->cols[pos].name), i + 1);
			types[i++] = t->cols[pos].typid;
		}
		if (insert)
			appendStringInfo(&sql, ") VALUES (%s) ON CONFLICT DO NOTHING", tail.data);
		else
		{
			appendStringInfo(&sql, " WHERE ctid = $%d", i + 1);
			types[i] = TIDOID;
		}
		appendStringInfo(&sql, " RETURNING %s.*, (%s\n)", t->qualname, t->write_pred);

		old = MemoryContextSwitchTo(t->mcxt);
		p = palloc0(sizeof(FerryPlan));
		p->cols = bms_copy(cols);
		MemoryContextSwitchTo(old);
		p->plan = ferry_keep_plan(t, sql.data, insert ? n : n + 1, types);
		p->next = *list;
		*list = p;
		i = 0;
		pos = -1;
	}

	while ((pos = bms_next_member(cols, pos)) >= 0)
	{
		args[i] = vals->new[pos];
		nulls[i] = vals->new_null[pos] ? 'n' : ' ';
		i++;
	}
	if (!insert)
	{
		args[i] = ctid;
		nulls[i++] = ' ';
	}
	nulls[i] = '\0';

	PG_TRY();
	{
		ferry_write_clock = clock;
		rc = SPI_execute_plan(p->plan, args, nulls, false, 1);
	}
	PG_FINALLY();
	{
		ferry_write_clock = NULL;
	}
	PG_END_TRY();
	if (rc != (insert ? SPI_OK_INSERT_RETURNING : SPI_OK_UPDATE_RETURNING))
		elog(ERROR, "ferry: writing the row failed: %s", SPI_result_code_string(rc));
	if (insert && SPI_processed == 0)
		return false;			/* a unique key was taken meanwhile */
	if (SPI_processed != 1)
		elog(ERROR, "ferry: writing the row changed " UINT64_FORMAT " rows", SPI_processed);
	{
		Datum		ok = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, t->ncols + 1, &isnull);

		if (isnull || !DatumGetBool(ok))
			reject(ERRCODE_FERRY_M_FORBIDDEN, NULL, "the write rules of %s refuse the row this write would make",
				   t->qualname);
	}
	result_row(res, t, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 0);
	return true;
}

/* ----------------------------------------------------------------
 * Applying
 * ---------------------------------------------------------------- */

/*
 * An insert found a row with its key (fetched into SPI_tuptable). A live row
 * with the same values makes the insert a no-op, with other values a conflict
 * on those columns; a tombstone lets the insert go ahead (it resurrects the
 * row). Returns true when res is decided.
 */
static bool
insert_meets_row(FerryTable *t, FerryClaims *claims, Values *vals, MutationResult *res)
{
	bool		isnull;
	Datum		tenant = fetched(t, t->tenant, &isnull);

	if (isnull || !ferry_claims_allow_tenant(claims, tenant_text(t, tenant)))
		reject(ERRCODE_FERRY_M_FORBIDDEN, NULL, "the key is taken by a row you cannot see");
	(void) fetched(t, t->col_deleted, &isnull);
	if (!isnull)
		return false;
	for (int i = 0; i < t->ncols; i++)
	{
		bool		cnull;
		Datum		cur;

		if (!vals->given[i])
			continue;
		cur = fetched(t, i, &cnull);
		if (!ferry_datum_equal(cur, cnull, vals->new[i], vals->new_null[i],
							   t->cols[i].typid, t->cols[i].collation))
			res->conflicts = lappend(res->conflicts, pstrdup(t->cols[i].name));
	}
	res->status = res->conflicts != NIL ? "conflict" : "applied";
	result_row(res, t, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return true;
}

static void
apply_insert(Mutation *m, FerryTable *t, FerryClaims *claims, Values *vals, MutationResult *res)
{
	Bitmapset  *cols = NULL;
	FerryColumn *tc = &t->cols[t->tenant];

	if (!vals->given[t->tenant] || vals->new_null[t->tenant])
		reject(ERRCODE_FERRY_M_INVALID, tc->name, "an insert into %s must give tenant column \"%s\"",
			   t->qualname, tc->name);
	if (!ferry_claims_allow_tenant(claims, tenant_text(t, vals->new[t->tenant])))
		reject(ERRCODE_FERRY_M_FORBIDDEN, tc->name, "tenant \"%s\" is not one of yours",
			   tenant_text(t, vals->new[t->tenant]));

	if (fetch_row(t, vals) && insert_meets_row(t, claims, vals, res))
		return;
	for (int i = 0; i < t->ncols; i++)
		if (vals->given[i])
			cols = bms_add_member(cols, i);
	if (write_row(t, true, cols, vals, (Datum) 0, &m->clock, res))
	{
		res->status = "applied";
		return;
	}
	/* A concurrent insert took the key and committed: compare with its row. */
	if (fetch_row(t, vals) && insert_meets_row(t, claims, vals, res))
		return;
	reject(ERRCODE_UNIQUE_VIOLATION, NULL, "the row violates a unique constraint of %s", t->qualname);
}

static void
apply_update(Mutation *m, FerryTable *t, FerryClaims *claims, Values *vals, MutationResult *res)
{
	Bitmapset  *cols = NULL;
	FerryHlc   *clocks = palloc(sizeof(FerryHlc) * t->ncols);
	bool	   *has = palloc(sizeof(bool) * t->ncols);
	bool		version_conflict = false;
	bool		isnull;
	Datum		d;
	Datum		ctid;

	if (!fetch_row(t, vals))
		reject(ERRCODE_FERRY_M_NOT_FOUND, NULL, "%s has no row with this key", t->qualname);
	d = fetched(t, t->tenant, &isnull);
	if (isnull || !ferry_claims_allow_tenant(claims, tenant_text(t, d)))
		reject(ERRCODE_FERRY_M_NOT_FOUND, NULL, "%s has no row with this key", t->qualname);
	(void) fetched(t, t->col_deleted, &isnull);
	if (!isnull)
	{
		res->status = "conflict";
		res->conflicts = list_make1(FERRY_COL_DELETED_AT);
		result_row(res, t, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		return;
	}
	if (!fetched_writable(t))
		reject(ERRCODE_FERRY_M_FORBIDDEN, NULL, "the write rules of %s refuse this row", t->qualname);
	ctid = fetched(t, -1, &isnull);
	d = fetched(t, t->col_clock, &isnull);
	ferry_clocks_read(t, d, isnull, clocks, has);

	for (int i = 0; i < t->ncols; i++)
	{
		FerryColumn *c = &t->cols[i];
		FerryMergeInput in;
		Datum		out;
		bool		out_null;

		if (!vals->given[i] || c->is_key)
			continue;
		in.col = c;
		in.cur = fetched(t, i, &in.cur_null);
		in.base = vals->base[i];
		in.base_null = vals->base_null[i];
		in.new = vals->new[i];
		in.new_null = vals->new_null[i];
		in.clock = &m->clock;
		in.cur_clock = has[i] ? &clocks[i] : NULL;
		if (c->is_tenant)
		{
			if (!ferry_datum_equal(in.cur, in.cur_null, in.new, in.new_null, c->typid, c->collation))
				reject(ERRCODE_FERRY_TENANT_IMMUTABLE, c->name, "tenant column \"%s\" cannot change", c->name);
			continue;
		}
		switch (ferry_merge_column(&in, &out, &out_null))
		{
			case FERRY_MERGE_TAKE:
				vals->new[i] = out;
				vals->new_null[i] = out_null;
				cols = bms_add_member(cols, i);
				break;
			case FERRY_MERGE_KEEP:
				break;
			case FERRY_MERGE_OVERRIDDEN:
				res->overridden = lappend(res->overridden, c->name);
				break;
			case FERRY_MERGE_CONFLICT:
				res->conflicts = lappend(res->conflicts, c->name);
				version_conflict |= c->rule == FERRY_RULE_VERSION;
				break;
			case FERRY_MERGE_IMMUTABLE:
				reject(ERRCODE_FERRY_COLUMN_IMMUTABLE, c->name, "column \"%s\" is immutable", c->name);
		}
	}

	res->status = res->conflicts != NIL ? "conflict" : "applied";
	if (version_conflict || cols == NULL)
	{
		/* Nothing to write: a refused mutation, or all changes already there. */
		if (version_conflict)
			res->overridden = NIL;
		result_row(res, t, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		return;
	}
	if (res->conflicts != NIL)
	{
		int			pos = -1;

		while ((pos = bms_next_member(cols, pos)) >= 0)
			res->applied = lappend(res->applied, t->cols[pos].name);
	}
	write_row(t, false, cols, vals, ctid, &m->clock, res);
}

static void
apply_delete(Mutation *m, FerryTable *t, FerryClaims *claims, Values *vals, MutationResult *res)
{
	bool		isnull;
	Datum		d;
	Datum		args[1];
	int			rc;

	if (!fetch_row(t, vals))
		reject(ERRCODE_FERRY_M_NOT_FOUND, NULL, "%s has no row with this key", t->qualname);
	d = fetched(t, t->tenant, &isnull);
	if (isnull || !ferry_claims_allow_tenant(claims, tenant_text(t, d)))
		reject(ERRCODE_FERRY_M_NOT_FOUND, NULL, "%s has no row with this key", t->qualname);
	res->status = "applied";
	(void) fetched(t, t->col_deleted, &isnull);
	if (!isnull)
	{
		/* Already deleted: deleting again changes nothing. */
		result_row(res, t, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		return;
	}
	if (!fetched_writable(t))
		reject(ERRCODE_FERRY_M_FORBIDDEN, NULL, "the write rules of %s refuse this row", t->qualname);
	d = fetched(t, t->col_version, &isnull);
	if (t->has_version && m->has_base_version && DatumGetInt64(d) != m->base_version)
	{
		/* The row changed since the client saw it and carries version-ruled columns. */
		res->status = "conflict";
		res->conflicts = list_make1(FERRY_COL_VERSION);
		result_row(res, t, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		return;
	}
	if (t->plan_delete == NULL)
	{
		Oid			types[1] = {TIDOID};

		t->plan_delete = ferry_keep_plan(t, psprintf("UPDATE %s SET ferry_deleted_at = now() WHERE ctid = $1 RETURNING %s.*",
													 t->qualname, t->qualname), 1, types);
	}
	args[0] = fetched(t, -1, &isnull);
	PG_TRY();
	{
		ferry_write_clock = &m->clock;
		rc = SPI_execute_plan(t->plan_delete, args, NULL, false, 1);
	}
	PG_FINALLY();
	{
		ferry_write_clock = NULL;
	}
	PG_END_TRY();
	if (rc != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
		elog(ERROR, "ferry: writing the tombstone failed: %s", SPI_result_code_string(rc));
	result_row(res, t, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 0);
}

void
ferry_mutation_apply(Mutation *m, FerryClaims *claims, MutationResult *res)
{
	FerryTable *t;
	Values		vals;

	read_body(m);
	t = read_table(m);
	read_values(m, t, &vals);
	switch (m->op)
	{
		case OP_INSERT:
			apply_insert(m, t, claims, &vals, res);
			break;
		case OP_UPDATE:
			apply_update(m, t, claims, &vals, res);
			break;
		case OP_DELETE:
			apply_delete(m, t, claims, &vals, res);
			break;
	}
}

