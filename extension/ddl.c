/*
 * extension/ddl.c -- refusing, before it runs, DDL that would break offline clients.
 *
 * Most checks run at ddl_command_end, in PL/pgSQL (ferry._on_ddl_end), on
 * the table as the command left it. Adding a NOT NULL column without a
 * default cannot wait for that on a table with rows: Postgres itself fails
 * first, with a message that does not say what to do. So this
 * ddl_command_start trigger looks at the statement before it runs.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/event_trigger.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "ferry.h"

static bool
column_has_default(ColumnDef *def)
{
	ListCell   *lc;

	if (def->raw_default != NULL || def->cooked_default != NULL ||
		def->identity != '\0' || def->generated != '\0')
		return true;
	foreach(lc, def->constraints)
	{
		Constraint *c = lfirst(lc);

		if (c->contype == CONSTR_DEFAULT || c->contype == CONSTR_IDENTITY ||
			c->contype == CONSTR_GENERATED)
			return true;
	}
	if (def->typeName != NULL && def->typeName->names != NIL)
	{
		const char *tn = strVal(llast(def->typeName->names));

		if (strcmp(tn, "serial") == 0 || strcmp(tn, "bigserial") == 0 || strcmp(tn, "smallserial") == 0 ||
			strcmp(tn, "serial2") == 0 || strcmp(tn, "serial4") == 0 || strcmp(tn, "serial8") == 0)
			return true;
	}
	return false;
}

static bool
column_not_null(ColumnDef *def)
{
	ListCell   *lc;

	if (def->is_not_null)
		return true;
	foreach(lc, def->constraints)
	{
		Constraint *c = lfirst(lc);

		if (c->contype == CONSTR_NOTNULL || c->contype == CONSTR_PRIMARY)
			return true;
	}
	return false;
}

/*
 * ferry_on_ddl_start is ferry._on_ddl_start(), the ddl_command_start event
 * trigger for ALTER TABLE.
 */
PG_FUNCTION_INFO_V1(ferry_on_ddl_start);
Datum
ferry_on_ddl_start(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	AlterTableStmt *stmt;
	Oid			relid;
	FerryTable *t;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "ferry._on_ddl_start must be called as an event trigger");
	trigdata = (EventTriggerData *) fcinfo->context;
	if (!IsA(trigdata->parsetree, AlterTableStmt))
		PG_RETURN_VOID();
	stmt = (AlterTableStmt *) trigdata->parsetree;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(relid) || (t = ferry_table_get(relid)) == NULL)
		PG_RETURN_VOID();

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);
		ColumnDef  *def;

		if (cmd->subtype != AT_AddColumn || !IsA(cmd->def, ColumnDef))
			continue;
		def = (ColumnDef *) cmd->def;
		if (column_not_null(def) && !column_has_default(def))
			ereport(ERROR,
					(errcode(ERRCODE_FERRY_DDL_REFUSED),
					 errmsg("cannot add NOT NULL column %s without a default to synced table %s",
							quote_identifier(def->colname), t->qualname),
					 errdetail("Offline clients with an older schema insert rows without it."),
					 errhint("Give the column a DEFAULT, or add it nullable.")));
	}
	PG_RETURN_VOID();
}
