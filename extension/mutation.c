/*
 * extension/mutation.c -- ferry.apply_mutation: one client write, exactly once.
 *
 * A mutation is applied (apply.c) and its result recorded under its id in
 * ferry.mutations, both inside one subtransaction: anything that goes wrong
 * there (bad input, a rule that refuses, a constraint) rolls it back and
 * becomes a `rejected` result, so the caller's transaction stays usable. An
 * id that is recorded already (a replay, or a concurrent call) rolls the
 * writes back too and returns the recorded result as `duplicate`.
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
#include "utils/resowner.h"
#include "utils/uuid.h"
#include "utils/varlena.h"

#include "mutation.h"

/* Plans on ferry.mutations, kept for the life of the backend. */
static SPIPlanPtr plan_lookup = NULL;
static SPIPlanPtr plan_record = NULL;

/* ----------------------------------------------------------------
 * Errors and results
 * ---------------------------------------------------------------- */


static void
result_rejected(MutationResult *res, const char *code, const char *message)
{
	res->status = "rejected";
	res->code = code;
	res->message = pstrdup(message);
}

/* Maps an error raised while applying to a result error code. */
static const char *
error_code(int sqlerrcode, bool *retryable)
{
	*retryable = false;
	switch (sqlerrcode)
	{
		case ERRCODE_FERRY_M_INVALID:
			return "invalid_mutation";
		case ERRCODE_FERRY_M_TABLE:
		case ERRCODE_INVALID_NAME:
		case ERRCODE_UNDEFINED_TABLE:
			return "unknown_table";
		case ERRCODE_FERRY_M_COLUMN:
		case ERRCODE_UNDEFINED_COLUMN:
			return "unknown_column";
		case ERRCODE_FERRY_M_KEY:
			return "key_mismatch";
		case ERRCODE_FERRY_M_FORBIDDEN:
		case ERRCODE_INSUFFICIENT_PRIVILEGE:
			return "forbidden";
		case ERRCODE_FERRY_M_NOT_FOUND:
			return "not_found";
		case ERRCODE_FERRY_TENANT_IMMUTABLE:
		case ERRCODE_FERRY_COLUMN_IMMUTABLE:
			return "immutable_column";
	}
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_DATA_EXCEPTION:
			return "invalid_value";
		case ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION:
			return "constraint_violation";
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_SYSTEM_ERROR:
			*retryable = true;
			return "retryable";
	}
	return "server_error";
}

static void
result_from_error(MutationResult *res, ErrorData *ed, const char *column)
{
	result_rejected(res, error_code(ed->sqlerrcode, &res->retryable), ed->message);
	res->sqlstate = pstrdup(unpack_sql_state(ed->sqlerrcode));
	if (ed->column_name != NULL)
		res->column = pstrdup(ed->column_name);
	else if (column != NULL)
		res->column = pstrdup(column);
}

static Jsonb *
result_jsonb(MutationResult *res, const char *id)
{
	JsonbParseState *ps = NULL;
	JsonbValue *v;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	ferry_push_key(&ps, "id");
	ferry_push_string(&ps, id);
	ferry_push_key(&ps, "status");
	ferry_push_string(&ps, res->status);
	if (res->has_version)
	{
		ferry_push_key(&ps, "version");
		ferry_push_int(&ps, res->version);
		ferry_push_key(&ps, "row");
		pushJsonbValue(&ps, WJB_VALUE, &(JsonbValue) {.type = jbvBinary,
					   .val.binary = {.data = &res->row->root, .len = VARSIZE(res->row)}});
	}
	if (res->conflicts != NIL)
	{
		ferry_push_key(&ps, "conflicts");
		ferry_push_names(&ps, res->conflicts);
	}
	if (res->applied != NIL)
	{
		ferry_push_key(&ps, "applied");
		ferry_push_names(&ps, res->applied);
	}
	if (res->overridden != NIL)
	{
		ferry_push_key(&ps, "overridden");
		ferry_push_names(&ps, res->overridden);
	}
	if (res->code != NULL)
	{
		ferry_push_key(&ps, "error");
		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		ferry_push_key(&ps, "code");
		ferry_push_string(&ps, res->code);
		ferry_push_key(&ps, "message");
		ferry_push_string(&ps, res->message);
		if (res->sqlstate != NULL)
		{
			ferry_push_key(&ps, "sqlstate");
			ferry_push_string(&ps, res->sqlstate);
		}
		if (res->column != NULL)
		{
			ferry_push_key(&ps, "column");
			ferry_push_string(&ps, res->column);
		}
		pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	}
	if (res->retryable)
	{
		ferry_push_key(&ps, "retryable");
		ferry_push_bool(&ps, true);
	}
	if (res->original != NULL)
	{
		ferry_push_key(&ps, "original");
		pushJsonbValue(&ps, WJB_VALUE, &(JsonbValue) {.type = jbvBinary,
					   .val.binary = {.data = &res->original->root, .len = VARSIZE(res->original)}});
	}
	v = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(v);
}

/* ----------------------------------------------------------------
 * Idempotency
 * ---------------------------------------------------------------- */

static SPIPlanPtr
static_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "ferry: cannot prepare \"%s\"", sql);
		*slot = p;
	}
	return *slot;
}

/*
 * Records the result under the mutation's id, unless the id is recorded
 * already (or being recorded by a concurrent transaction, which this waits
 * for). Returns true when this call recorded it.
 */
static bool
record_result(Mutation *m, FerryClaims *claims, MutationResult *res, Jsonb *jb)
{
	Oid			types[5] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		args[5];
	int			rc;

	args[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(m->id));
	args[1] = CStringGetTextDatum(m->client_id);
	args[2] = CStringGetTextDatum(claims->sub);
	args[3] = CStringGetTextDatum(res->status);
	args[4] = JsonbPGetDatum(jb);
	rc = SPI_execute_plan(static_plan(&plan_record,
									  "INSERT INTO ferry.mutations (id, client_id, sub, status, result) "
									  "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
									  5, types),
						  args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "ferry: recording mutation %s failed", m->id);
	return SPI_processed == 1;
}

/*
 * The id was recorded before: fills res with the duplicate, or with id_reused
 * when another client or user owns the id.
 */
static void
recorded_result(Mutation *m, FerryClaims *claims, MutationResult *res)
{
	Oid			types[1] = {UUIDOID};
	Datum		args[1];
	int			rc;
	bool		isnull;
	char	   *client;
	char	   *sub;
	Datum		result;

	memset(res, 0, sizeof(*res));
	args[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(m->id));
	rc = SPI_execute_plan(static_plan(&plan_lookup,
									  "SELECT client_id, sub, result FROM ferry.mutations WHERE id = $1",
									  1, types),
						  args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "ferry: reading mutation %s failed", m->id);
	if (SPI_processed == 0)
	{
		/* Recorded by a transaction this one cannot see (REPEATABLE READ). */
		result_rejected(res, "retryable", "another transaction applied this mutation id; send it again");
		res->retryable = true;
		return;
	}
	client = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	sub = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	if (strcmp(client, m->client_id) != 0 || strcmp(sub, claims->sub) != 0 || isnull)
	{
		result_rejected(res, "id_reused", "this mutation id was used by another client; give every mutation a new UUID");
		return;
	}
	res->status = "duplicate";
	res->original = DatumGetJsonbPCopy(result);
}

/*
 * ferry_apply_mutation is ferry.apply_mutation(mutation jsonb, claims jsonb).
 */
PG_FUNCTION_INFO_V1(ferry_apply_mutation);
Datum
ferry_apply_mutation(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *mjb = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Jsonb	   *cjb = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	FerryClaims *prev_claims = ferry_current_claims;
	FerryClaims claims;
	Mutation	m;
	MutationResult		res;
	Jsonb	   *out;
	char	   *why;

	memset(&res, 0, sizeof(res));
	if (!ferry_mutation_read_envelope(mjb, &m, &why))
	{
		result_rejected(&res, "invalid_mutation", why);
		PG_RETURN_JSONB_P(result_jsonb(&res, m.id));
	}
	if (!ferry_claims_parse(cjb, &claims, &why))
	{
		result_rejected(&res, "invalid_claims", why);
		PG_RETURN_JSONB_P(result_jsonb(&res, m.id));
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(callcxt);

	/*
	 * Apply and record in one subtransaction: ferry.mutations is written
	 * once. A replay (or a concurrent call with the same id) finds the id
	 * recorded, and its writes are rolled back with the subtransaction.
	 */
	ferry_error_column = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(callcxt);
	PG_TRY();
	{
		ferry_current_claims = &claims;
		ferry_mutation_apply(&m, &claims, &res);
		ferry_current_claims = prev_claims;
		/* SPI calls leave SPI's own contexts current: the result must outlive them */
		MemoryContextSwitchTo(callcxt);
		out = result_jsonb(&res, m.id);
		if (!record_result(&m, &claims, &res, out))
			ereport(ERROR, (errcode(ERRCODE_FERRY_M_DUPLICATE), errmsg("mutation %s is recorded already", m.id)));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callcxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *ed;
		const char *column = ferry_error_column;

		MemoryContextSwitchTo(callcxt);
		ed = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callcxt);
		CurrentResourceOwner = owner;

		ferry_current_claims = prev_claims;
		ferry_write_clock = NULL;
		ferry_error_column = NULL;
		memset(&res, 0, sizeof(res));
		if (ed->sqlerrcode == ERRCODE_FERRY_M_DUPLICATE)
			recorded_result(&m, &claims, &res);
		else
		{
			result_from_error(&res, ed, column);
			/* Rejections are recorded too; transient errors are not. */
			if (!res.retryable && !record_result(&m, &claims, &res, result_jsonb(&res, m.id)))
				recorded_result(&m, &claims, &res);
		}
		FreeErrorData(ed);
		MemoryContextSwitchTo(callcxt);
		out = result_jsonb(&res, m.id);
	}
	PG_END_TRY();

	SPI_finish();
	PG_RETURN_JSONB_P(out);
}
