/*
 * client-sqlite/status.c -- what the app shows: status, per-record state, the pending
 * tray and conflicts (as structs for callbacks, or JSON), and read queries as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- status ------------------------------------------------------------------------ */

/* fy_status_compute fills st from the queue and the engine's state. */
void
fy_status_compute(ferry *db, ferry_status *st)
{
	sqlite3_stmt *q;
	int64_t		now = fy_now_ms();
	int64_t		oldest = 0;

	memset(st, 0, sizeof(*st));
	if (db->db != NULL &&
		sqlite3_prepare_v2(db->db, "SELECT status, count(*), min(created_at) FROM ferry_queue GROUP BY status", -1, &q,
						   NULL) == SQLITE_OK)
	{
		while (sqlite3_step(q) == SQLITE_ROW)
		{
			const char *s = (const char *) sqlite3_column_text(q, 0);
			int			n = sqlite3_column_int(q, 1);
			int64_t		t = sqlite3_column_int64(q, 2);

			if (strcmp(s, FY_ST_PENDING) == 0)
				st->pending = n;
			else if (strcmp(s, FY_ST_INFLIGHT) == 0)
				st->inflight = n;
			else if (strcmp(s, FY_ST_FAILED) == 0)
				st->failed = n;
			else if (strcmp(s, FY_ST_CONFLICT) == 0)
				st->conflicts = n;
			if (oldest == 0 || t < oldest)
				oldest = t;
		}
		sqlite3_finalize(q);
	}
	st->queue_length = st->pending + st->inflight + st->failed + st->conflicts;
	st->oldest_pending_age_ms = oldest > 0 && now > oldest ? now - oldest : 0;
	st->connected = db->sync.conn == FY_CONN_READY;
	st->shapes = db->nshapes;
	for (int i = 0; i < db->nshapes; i++)
		if (db->shapes[i]->up_to_date && st->connected)
			st->shapes_up_to_date++;
	st->last_sync_ms = db->last_sync_ms;
	if (db->sync.fatal != 0)
		st->state = FERRY_STATE_ERROR;
	else if (!st->connected)
		st->state = FERRY_STATE_OFFLINE;
	else if (st->failed + st->conflicts > 0)
		st->state = FERRY_STATE_ERROR;
	else if (st->shapes_up_to_date == st->shapes && st->pending + st->inflight == 0)
		st->state = FERRY_STATE_SYNCED;
	else
		st->state = FERRY_STATE_SYNCING;
	st->stale = st->state != FERRY_STATE_SYNCED && (st->shapes > 0 || st->last_sync_ms > 0) &&
		now - st->last_sync_ms > db->stale_after_ms;
	if (db->sync.conn == FY_CONN_OFFLINE && db->sync.next_connect_at > 0 && db->url != NULL)
	{
		int64_t		left = db->sync.next_connect_at - fy_mono_ms();

		st->next_attempt_ms = now + (left > 0 ? left : 0);
	}
	snprintf(st->last_error, sizeof(st->last_error), "%s", db->sync.last_error);
	snprintf(st->last_error_mutation, sizeof(st->last_error_mutation), "%s", db->sync.last_error_mutation);
	snprintf(st->user_id, sizeof(st->user_id), "%s", db->user_id);
}

int
ferry_get_status(ferry *db, ferry_status *out)
{
	if (out == NULL)
		return FERRY_MISUSE;
	fy_status_compute(db, out);
	return FERRY_OK;
}

/* fy_status_changed calls the status callback when something the app shows changed. */
void
fy_status_changed(ferry *db)
{
	ferry_status st;
	ferry_status *o = &db->last_status;

	if (db->status_fn == NULL || db->in_tx > 0)
		return;
	fy_status_compute(db, &st);
	if (db->have_status && st.state == o->state && st.connected == o->connected && st.pending == o->pending &&
		st.inflight == o->inflight && st.failed == o->failed && st.conflicts == o->conflicts &&
		st.shapes == o->shapes && st.shapes_up_to_date == o->shapes_up_to_date && st.stale == o->stale &&
		strcmp(st.last_error, o->last_error) == 0)
		return;
	*o = st;
	db->have_status = true;
	db->status_fn(db->status_ctx, &st);
}

/*
 * fy_sync_is_synced: connected, every shape up to date, nothing in flight, and nothing
 * pending that can still be sent (the mutations behind a failed or conflicting one on
 * the same row wait for the app).
 */
bool
fy_sync_is_synced(ferry *db)
{
	sqlite3_stmt *q;
	int			n = 1;

	if (db->sync.conn != FY_CONN_READY || db->sync.ninflight > 0)
		return false;
	for (int i = 0; i < db->nshapes; i++)
		if (db->shapes[i]->error == NULL && !db->shapes[i]->up_to_date)
			return false;
	if ((q = fy_cached(db, FY_Q_SENDABLE, "SELECT 1 FROM ferry_queue q WHERE q.status IN ('pending', 'inflight') "
						"AND NOT EXISTS (SELECT 1 FROM ferry_queue p WHERE p.tbl = q.tbl AND p.row_key = q.row_key "
						"AND p.seq < q.seq AND p.status IN ('failed', 'conflict')) LIMIT 1")) == NULL)
		return false;
	n = sqlite3_step(q) == SQLITE_ROW;
	sqlite3_reset(q);
	return n == 0;
}

const char *
ferry_state_name(int state)
{
	switch (state)
	{
		case FERRY_STATE_OFFLINE:
			return "offline";
		case FERRY_STATE_SYNCING:
			return "syncing";
		case FERRY_STATE_SYNCED:
			return "synced";
		case FERRY_STATE_ERROR:
			return "error";
		default:
			return "unknown";
	}
}

int
ferry_status_json(ferry *db, char **json)
{
	ferry_status st;
	json_t	   *o;

	fy_status_compute(db, &st);
	o = json_pack("{s:s,s:b,s:i,s:i,s:i,s:i,s:i,s:I,s:I,s:b,s:i,s:i,s:I,s:s,s:s,s:s,s:s}",
				  "state", ferry_state_name(st.state), "connected", st.connected, "pending", st.pending,
				  "inflight", st.inflight, "failed", st.failed, "conflicts", st.conflicts,
				  "queue_length", st.queue_length, "oldest_pending_age_ms", (json_int_t) st.oldest_pending_age_ms,
				  "last_sync_ms", (json_int_t) st.last_sync_ms, "stale", st.stale, "shapes", st.shapes,
				  "shapes_up_to_date", st.shapes_up_to_date, "next_attempt_ms", (json_int_t) st.next_attempt_ms,
				  "last_error", st.last_error, "last_error_mutation", st.last_error_mutation,
				  "user_id", st.user_id, "client_id", db->client_id);
	*json = o ? fy_json_dump(o) : NULL;
	json_decref(o);
	return *json ? FERRY_OK : fy_err(db, FERRY_NOMEM, "out of memory");
}

/* ---- per-record state -------------------------------------------------------------- */

int
ferry_record_state(ferry *db, const char *table, const char *key, int *state)
{
	FyShape    *s = fy_shape_find(db, table);
	char	   *row_key = NULL;
	sqlite3_stmt *q;
	int			rc;
	int			worst = -1;

	*state = FERRY_RECORD_SYNCED;
	if (s == NULL)
		return fy_err(db, FERRY_NOTFOUND, "%s is not subscribed", table ? table : "(null)");
	if (s->ncols == 0)
		return fy_err(db, FERRY_NOTFOUND, "the rows of %s have not arrived yet", s->tbl);
	if ((rc = fy_key_parse(db, s, key, &row_key)) != FERRY_OK)
		return rc;
	if (sqlite3_prepare_v2(db->db, "SELECT status FROM ferry_queue WHERE tbl = ? AND row_key = ?", -1, &q, NULL)
		!= SQLITE_OK)
	{
		free(row_key);
		return fy_sqlerr(db, "cannot read the queue");
	}
	sqlite3_bind_text(q, 1, s->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, row_key, -1, SQLITE_STATIC);
	while (sqlite3_step(q) == SQLITE_ROW)
	{
		const char *st = (const char *) sqlite3_column_text(q, 0);
		int			v = strcmp(st, FY_ST_CONFLICT) == 0 ? FERRY_RECORD_CONFLICT :
			strcmp(st, FY_ST_FAILED) == 0 ? FERRY_RECORD_FAILED : FERRY_RECORD_PENDING;

		if (v > worst)
			worst = v;
	}
	sqlite3_finalize(q);
	if (worst >= 0)
		*state = worst;
	else
	{
		json_t	   *row = NULL;

		rc = fy_row_read(db, s, row_key, &row, NULL);
		if (rc == FERRY_OK && row == NULL)
			rc = fy_err(db, FERRY_NOTFOUND, "%s has no row with key %s", s->tbl, key);
		json_decref(row);
	}
	free(row_key);
	return rc;
}

const char *
ferry_record_state_name(int state)
{
	switch (state)
	{
		case FERRY_RECORD_SYNCED:
			return "synced";
		case FERRY_RECORD_PENDING:
			return "pending";
		case FERRY_RECORD_FAILED:
			return "failed";
		case FERRY_RECORD_CONFLICT:
			return "conflict";
		default:
			return "unknown";
	}
}

/* ---- the pending tray -------------------------------------------------------------- */

static const char *
col_text(sqlite3_stmt *q, int i)
{
	const char *t = (const char *) sqlite3_column_text(q, i);

	return t ? t : "";
}

int
ferry_pending_each(ferry *db, ferry_mutation_fn fn, void *ctx)
{
	sqlite3_stmt *q;

	if (sqlite3_prepare_v2(db->db, "SELECT id, tbl, row_key, op, changes, status, retry_count, error_code, last_error, "
						   "created_at, next_attempt_at FROM ferry_queue ORDER BY seq", -1, &q, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot read the queue");
	while (sqlite3_step(q) == SQLITE_ROW)
	{
		ferry_mutation m;
		FyShape    *s = fy_shape_find(db, col_text(q, 1));
		char	   *key = s ? fy_key_object(s, col_text(q, 2)) : fy_strdup(col_text(q, 2));
		int			stop;

		m.id = col_text(q, 0);
		m.table = col_text(q, 1);
		m.key = key ? key : "";
		m.op = col_text(q, 3);
		m.changes = col_text(q, 4);
		m.status = col_text(q, 5);
		m.retry_count = sqlite3_column_int(q, 6);
		m.error_code = col_text(q, 7);
		m.last_error = col_text(q, 8);
		m.created_at_ms = sqlite3_column_int64(q, 9);
		m.next_attempt_ms = sqlite3_column_int64(q, 10);
		stop = fn(ctx, &m);
		free(key);
		if (stop)
			break;
	}
	sqlite3_finalize(q);
	return FERRY_OK;
}

static json_t *
parsed(const char *text)
{
	json_t	   *j = json_loads(text, 0, NULL);

	return j ? j : json_string(text);
}

static int
pending_to_json(void *ctx, const ferry_mutation *m)
{
	json_array_append_new((json_t *) ctx,
						  json_pack("{s:s,s:s,s:o,s:s,s:o,s:s,s:i,s:s,s:s,s:I,s:I}", "id", m->id, "table", m->table,
									"key", parsed(m->key), "op", m->op, "changes", parsed(m->changes),
									"status", m->status, "retry_count", m->retry_count, "error_code", m->error_code,
									"last_error", m->last_error, "created_at_ms", (json_int_t) m->created_at_ms,
									"next_attempt_ms", (json_int_t) m->next_attempt_ms));
	return 0;
}

int
ferry_pending_json(ferry *db, char **json)
{
	json_t	   *arr = json_array();
	int			rc = ferry_pending_each(db, pending_to_json, arr);

	*json = rc == FERRY_OK ? fy_json_dump(arr) : NULL;
	json_decref(arr);
	return rc;
}

/* ---- conflicts --------------------------------------------------------------------- */

int
ferry_conflicts_each(ferry *db, ferry_conflict_fn fn, void *ctx)
{
	sqlite3_stmt *q;

	if (sqlite3_prepare_v2(db->db, "SELECT c.mutation_id, c.tbl, c.row_key, c.op, c.columns, c.mine, c.theirs, c.base, "
						   "c.applied, c.created_at FROM ferry_conflicts c JOIN ferry_queue q ON q.id = c.mutation_id "
						   "ORDER BY q.seq", -1, &q, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot read ferry_conflicts");
	while (sqlite3_step(q) == SQLITE_ROW)
	{
		ferry_conflict c;
		FyShape    *s = fy_shape_find(db, col_text(q, 1));
		char	   *key = s ? fy_key_object(s, col_text(q, 2)) : fy_strdup(col_text(q, 2));
		int			stop;

		c.mutation_id = col_text(q, 0);
		c.table = col_text(q, 1);
		c.key = key ? key : "";
		c.op = col_text(q, 3);
		c.columns = col_text(q, 4);
		c.mine = col_text(q, 5);
		c.theirs = col_text(q, 6);
		c.base = col_text(q, 7);
		c.applied = col_text(q, 8);
		c.created_at_ms = sqlite3_column_int64(q, 9);
		stop = fn(ctx, &c);
		free(key);
		if (stop)
			break;
	}
	sqlite3_finalize(q);
	return FERRY_OK;
}

static int
conflict_to_json(void *ctx, const ferry_conflict *c)
{
	json_array_append_new((json_t *) ctx,
						  json_pack("{s:s,s:s,s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:I}", "mutation_id", c->mutation_id,
									"table", c->table, "key", parsed(c->key), "op", c->op, "columns", parsed(c->columns),
									"mine", parsed(c->mine), "theirs", parsed(c->theirs), "base", parsed(c->base),
									"applied", parsed(c->applied), "created_at_ms", (json_int_t) c->created_at_ms));
	return 0;
}

int
ferry_conflicts_json(ferry *db, char **json)
{
	json_t	   *arr = json_array();
	int			rc = ferry_conflicts_each(db, conflict_to_json, arr);

	*json = rc == FERRY_OK ? fy_json_dump(arr) : NULL;
	json_decref(arr);
	return rc;
}

/* ---- queries ----------------------------------------------------------------------- */

int
ferry_query_json(ferry *db, const char *sql, char **json, char **errmsg)
{
	sqlite3_stmt *q;
	json_t	   *arr;
	const char *tail = NULL;
	char		why[512] = "";
	int			rc;

	*json = NULL;
	if (sql == NULL)
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "no SQL given"), errmsg);
	if (sqlite3_prepare_v2(db->db, sql, -1, &q, &tail) != SQLITE_OK)
		return fy_finish(db, fy_err(db, FERRY_INVALID, "bad query: %s", sqlite3_errmsg(db->db)), errmsg);
	if (q == NULL)
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "no SQL statement given"), errmsg);
	if (!sqlite3_stmt_readonly(q))
	{
		sqlite3_finalize(q);
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "only reads can be run here: write through ferry_insert, "
									"ferry_update and ferry_delete so that changes are synced"), errmsg);
	}
	while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';'))
		tail++;
	if (tail && *tail)
	{
		sqlite3_finalize(q);
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "give one SQL statement at a time"), errmsg);
	}
	arr = json_array();
	while ((rc = sqlite3_step(q)) == SQLITE_ROW)
	{
		json_t	   *row = json_object();

		for (int i = 0; i < sqlite3_column_count(q); i++)
		{
			json_t	   *v;

			switch (sqlite3_column_type(q, i))
			{
				case SQLITE_INTEGER:
					v = json_integer(sqlite3_column_int64(q, i));
					break;
				case SQLITE_FLOAT:
					v = json_real(sqlite3_column_double(q, i));
					break;
				case SQLITE_NULL:
					v = json_null();
					break;
				default:
					v = json_string((const char *) sqlite3_column_text(q, i));
					if (v == NULL)	/* not UTF-8: a blob */
						v = json_string("(binary)");
					break;
			}
			json_object_set_new(row, sqlite3_column_name(q, i), v);
		}
		json_array_append_new(arr, row);
	}
	if (rc != SQLITE_DONE)
		snprintf(why, sizeof(why), "%s", sqlite3_errmsg(db->db));
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
	{
		json_decref(arr);
		return fy_finish(db, fy_err(db, FERRY_INVALID, "query failed: %s", why), errmsg);
	}
	*json = fy_json_dump(arr);
	json_decref(arr);
	return fy_finish(db, *json ? FERRY_OK : fy_err(db, FERRY_NOMEM, "out of memory"), errmsg);
}
