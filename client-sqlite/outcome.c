/*
 * client-sqlite/outcome.c -- what happens to a mutation after it was sent: results,
 * conflicts, retries, and the app's retry / discard / resolve.
 *
 *   APPLIED            the mutation leaves the queue; its row shows the server's copy
 *                      (which already arrived: acks follow their data)
 *   DUPLICATE          handled as the original result it carries (applied, conflict or
 *                      rejected: a replay of a refused mutation is still refused)
 *   CONFLICT           status conflict + a ferry_conflicts record (mine, theirs, base,
 *                      columns); my values stay visible until the app resolves it
 *   REJECTED           status failed with the server's code and message; stays visible
 *                      until the app retries (new id) or discards it
 *   RETRY, unknown     pending again, not before retry_after_ms or the backoff
 *
 * A mutation that is failed or in conflict holds back the later mutations of the same
 * row (they were based on it); other rows go on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One queue entry, as read for handling. */
typedef struct Entry
{
	int64_t		seq;			/* ferry_queue.seq */
	char	   *id;				/* mutation id */
	char	   *tbl;			/* "schema.table" */
	char	   *row_key;		/* JSON array */
	char	   *op;				/* insert/update/delete */
	json_t	   *changes;		/* {"col": {"old","new"}} */
	int64_t		base_version;	/* 0 none */
	char	   *status;			/* queue status */
	int			retry_count;	/* so far */
} Entry;

static void
entry_free(Entry *e)
{
	free(e->id);
	free(e->tbl);
	free(e->row_key);
	free(e->op);
	free(e->status);
	json_decref(e->changes);
	memset(e, 0, sizeof(*e));
}

/* Reads the queue entry of mutation id: FERRY_OK, FERRY_NOTFOUND, or an error. */
static int
entry_get(ferry *db, const char *id, Entry *e)
{
	sqlite3_stmt *st;
	int			rc;

	memset(e, 0, sizeof(*e));
	if ((st = fy_cached(db, FY_Q_ENTRY_GET, "SELECT seq, id, tbl, row_key, op, changes, base_version, status, "
						"retry_count FROM ferry_queue WHERE id = ?")) == NULL)
		return FERRY_DB;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
	{
		e->seq = sqlite3_column_int64(st, 0);
		e->id = fy_strdup((const char *) sqlite3_column_text(st, 1));
		e->tbl = fy_strdup((const char *) sqlite3_column_text(st, 2));
		e->row_key = fy_strdup((const char *) sqlite3_column_text(st, 3));
		e->op = fy_strdup((const char *) sqlite3_column_text(st, 4));
		e->changes = json_loads((const char *) sqlite3_column_text(st, 5), 0, NULL);
		e->base_version = sqlite3_column_int64(st, 6);
		e->status = fy_strdup((const char *) sqlite3_column_text(st, 7));
		e->retry_count = sqlite3_column_int(st, 8);
		if (e->changes == NULL)
			e->changes = json_object();
	}
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return FERRY_OK;
	if (rc == SQLITE_DONE)
		return fy_err(db, FERRY_NOTFOUND, "no mutation %s in the queue", id);
	return fy_sqlerr(db, "cannot read the queue");
}

/* Runs one statement with text parameters (NULL binds NULL); "" as the last marks the end. */
static int
run(ferry *db, const char *sql, int n, const char *const *params)
{
	sqlite3_stmt *st;
	int			rc;

	if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot update the queue");
	for (int i = 0; i < n; i++)
		if (params[i])
			sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot update the queue");
}

/* Removes an entry and its conflict record, and computes its row again. */
static int
entry_remove(ferry *db, Entry *e, int origin)
{
	FyShape    *s = fy_shape_find(db, e->tbl);
	sqlite3_stmt *st;

	if ((st = fy_cached(db, FY_Q_ENTRY_DELETE, "DELETE FROM ferry_queue WHERE id = ?")) == NULL)
		return FERRY_DB;
	sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
	{
		sqlite3_reset(st);
		return fy_sqlerr(db, "cannot update the queue");
	}
	sqlite3_reset(st);
	if ((st = fy_cached(db, FY_Q_CONFLICT_DELETE, "DELETE FROM ferry_conflicts WHERE mutation_id = ?")) == NULL)
		return FERRY_DB;
	sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
	{
		sqlite3_reset(st);
		return fy_sqlerr(db, "cannot update ferry_conflicts");
	}
	sqlite3_reset(st);
	if (s == NULL)
	{
		const char *q[2] = {e->tbl, e->row_key};

		if (fy_queue_has(db, e->tbl, e->row_key) == 0)
			return run(db, "DELETE FROM ferry_base WHERE tbl = ? AND row_key = ?", 2, q);
		return FERRY_OK;
	}
	return fy_row_refresh(db, s, e->row_key, origin);
}

/* fy_backoff_ms: exponential backoff with equal jitter, capped, at least at_least. */
int64_t
fy_backoff_ms(ferry *db, int attempts, int64_t at_least)
{
	int64_t		d = db->backoff_min_ms;
	uint32_t	r;

	for (int i = 1; i < attempts && d < db->backoff_max_ms; i++)
		d *= 2;
	if (d > db->backoff_max_ms)
		d = db->backoff_max_ms;
	fy_random(&r, sizeof(r));
	d = d / 2 + (int64_t) (r % (uint32_t) (d / 2 + 1));
	return d > at_least ? d : at_least;
}

/*
 * fy_queue_retry_later makes mutation id pending again, not to be sent before the
 * backoff (counting this attempt when `count`) or retry_after_ms. After
 * FERRY_OPT_MAX_RETRIES counted attempts it is marked failed instead.
 */
int
fy_queue_retry_later(ferry *db, const char *id, int64_t retry_after_ms, const char *code, const char *message,
					 bool count)
{
	Entry		e;
	sqlite3_stmt *st;
	int			rc = entry_get(db, id, &e);
	int			n;
	bool		give_up;
	int64_t		wait;

	if (rc != FERRY_OK)
		return rc == FERRY_NOTFOUND ? FERRY_OK : rc;
	n = e.retry_count + (count ? 1 : 0);
	give_up = db->max_retries > 0 && n >= db->max_retries;
	wait = fy_backoff_ms(db, n > 0 ? n : 1, retry_after_ms);
	entry_free(&e);
	if (sqlite3_prepare_v2(db->db, "UPDATE ferry_queue SET status = ?, retry_count = ?, next_attempt_at = ?, "
						   "error_code = ?, last_error = ? WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot update the queue");
	sqlite3_bind_text(st, 1, give_up ? FY_ST_FAILED : FY_ST_PENDING, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, n);
	sqlite3_bind_int64(st, 3, fy_now_ms() + wait);
	sqlite3_bind_text(st, 4, code && code[0] ? code : "retry", -1, SQLITE_STATIC);
	if (give_up)
	{
		char	   *m = fy_sprintf("gave up after %d attempts: %s", n, message && message[0] ? message : "no answer");

		sqlite3_bind_text(st, 5, m, -1, free);
	}
	else
		sqlite3_bind_text(st, 5, message && message[0] ? message : "the server asked to send it again later", -1,
						  SQLITE_STATIC);
	sqlite3_bind_text(st, 6, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fy_sqlerr(db, "cannot update the queue");
	if (give_up)
		fy_sync_set_error(db, id, "mutation %s failed: gave up after %d attempts: %s", id, n,
						  message && message[0] ? message : "no answer");
	return FERRY_OK;
}

/* Marks an entry failed with the server's code and message. */
static int
mark_failed(ferry *db, Entry *e, const char *code, const char *message)
{
	const char *p[3] = {code && code[0] ? code : "rejected", message && message[0] ? message : "rejected by the server",
	e->id};

	fy_sync_set_error(db, e->id, "%s %s of %s was rejected: %s (%s)", e->op, e->row_key, e->tbl, p[1], p[0]);
	return run(db, "UPDATE ferry_queue SET status = 'failed', error_code = ?, last_error = ? WHERE id = ?", 3, p);
}

/* Records a conflict for entry e from the server's result object. */
static int
mark_conflict(ferry *db, Entry *e, const json_t *res)
{
	json_t	   *cols = json_object_get(res, "conflicts");
	json_t	   *applied = json_object_get(res, "applied");
	json_t	   *theirs = json_object_get(res, "row");
	json_t	   *mine = json_object();
	json_t	   *base = json_object();
	const char *col;
	json_t	   *ch;
	char	   *t[5];
	char		now[32];
	char		names[400] = "";
	int			rc;
	size_t		i;
	json_t	   *c;

	json_object_foreach(e->changes, col, ch)
	{
		json_t	   *nv = json_object_get(ch, "new");
		json_t	   *ov = json_object_get(ch, "old");

		json_object_set(mine, col, nv ? nv : json_null());
		if (ov != NULL)
			json_object_set(base, col, ov);
	}
	json_array_foreach(cols, i, c)
	{
		if (json_is_string(c) && strlen(names) + strlen(json_string_value(c)) + 3 < sizeof(names))
		{
			if (names[0])
				strcat(names, ", ");
			strcat(names, json_string_value(c));
		}
	}
	t[0] = json_is_array(cols) ? fy_json_dump(cols) : fy_strdup("[]");
	t[1] = fy_json_dump(mine);
	t[2] = json_is_object(theirs) ? fy_json_dump(theirs) : fy_strdup("{}");
	t[3] = fy_json_dump(base);
	t[4] = json_is_array(applied) ? fy_json_dump(applied) : fy_strdup("[]");
	snprintf(now, sizeof(now), "%lld", (long long) fy_now_ms());
	{
		const char *p[10] = {e->id, e->tbl, e->row_key, e->op, t[0], t[1], t[2], t[3], t[4], now};

		rc = run(db, "INSERT OR REPLACE INTO ferry_conflicts (mutation_id, tbl, row_key, op, columns, mine, theirs, "
				 "base, applied, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", 10, p);
	}
	if (rc == FERRY_OK)
	{
		char	   *msg = fy_sprintf("conflict on %s: the server's row changed since the edit",
									 names[0] ? names : "the row");
		const char *p[2] = {msg, e->id};

		rc = run(db, "UPDATE ferry_queue SET status = 'conflict', error_code = 'conflict', last_error = ? "
				 "WHERE id = ?", 2, p);
		fy_sync_set_error(db, e->id, "%s %s of %s: %s", e->op, e->row_key, e->tbl, msg ? msg : "conflict");
		free(msg);
	}
	for (int k = 0; k < 5; k++)
		free(t[k]);
	json_decref(mine);
	json_decref(base);
	return rc;
}

/*
 * rebase_own_write runs when an update of ours was applied and made the row version v:
 * the row's later queued mutations based on version v - 1 were made on top of it, so
 * they are based on v now. Without this a delete queued behind our own edit (a delete
 * carries the version it saw) was refused as a conflict with our own write. Not when a
 * column of ours was overridden by a newer write: then v - 1 was not the version we saw.
 */
static int
rebase_own_write(ferry *db, const Entry *e, json_t *result)
{
	json_t	   *version = json_object_get(result, "version");
	json_t	   *overridden = json_object_get(result, "overridden");
	sqlite3_stmt *st;
	int			rc;

	if (strcmp(e->op, "update") != 0 || !json_is_integer(version) || json_integer_value(version) < 2 ||
		json_array_size(overridden) > 0)
		return FERRY_OK;
	if (sqlite3_prepare_v2(db->db, "UPDATE ferry_queue SET base_version = ?1 WHERE tbl = ?2 AND row_key = ?3 "
						   "AND base_version = ?1 - 1", -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot update the queue");
	sqlite3_bind_int64(st, 1, json_integer_value(version));
	sqlite3_bind_text(st, 2, e->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, e->row_key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot update the queue");
}

/*
 * fy_result_apply handles one MutationResult, in the caller's transaction. A result for
 * a mutation no longer in the queue (discarded meanwhile) is ignored.
 */
int
fy_result_apply(ferry *db, const Ferry__V1__MutationResult *r)
{
	Entry		e;
	json_t	   *res = NULL;
	json_t	   *use;
	int			rc = entry_get(db, r->id, &e);
	int			status = r->status;
	const char *code = r->error_code;
	const char *message = r->error_message;

	if (rc != FERRY_OK)
		return rc == FERRY_NOTFOUND ? FERRY_OK : rc;
	if (r->result_json != NULL && r->result_json[0])
		res = json_loads(r->result_json, 0, NULL);
	use = res;
	if (status == FERRY__V1__MUTATION_STATUS__DUPLICATE)
	{
		json_t	   *orig = json_object_get(res, "original");
		const char *os = json_string_value(json_object_get(orig, "status"));

		use = orig;
		if (os == NULL || strcmp(os, "applied") == 0 || strcmp(os, "duplicate") == 0)
			status = FERRY__V1__MUTATION_STATUS__APPLIED;
		else if (strcmp(os, "conflict") == 0)
			status = FERRY__V1__MUTATION_STATUS__CONFLICT;
		else
			status = FERRY__V1__MUTATION_STATUS__REJECTED;
	}
	if (status == FERRY__V1__MUTATION_STATUS__REJECTED && (code == NULL || !code[0]))
	{
		json_t	   *err = json_object_get(use, "error");

		code = json_string_value(json_object_get(err, "code"));
		message = json_string_value(json_object_get(err, "message"));
	}
	switch (status)
	{
		case FERRY__V1__MUTATION_STATUS__APPLIED:
			rc = entry_remove(db, &e, FERRY_ORIGIN_SERVER);
			if (rc == FERRY_OK)
				rc = rebase_own_write(db, &e, use);
			break;
		case FERRY__V1__MUTATION_STATUS__CONFLICT:
			rc = mark_conflict(db, &e, use);
			break;
		case FERRY__V1__MUTATION_STATUS__REJECTED:
			rc = mark_failed(db, &e, code, message);
			break;
		default:
			/* RETRY, and any status this client does not know */
			rc = fy_queue_retry_later(db, e.id, r->retry_after_ms, code, message,
									  !(code && (strcmp(code, "rate_limited") == 0 ||
												 strcmp(code, "too_many_inflight") == 0)));
			break;
	}
	json_decref(res);
	entry_free(&e);
	return rc;
}

/*
 * fy_queue_check_schema marks failed every queued mutation of s that no longer fits its
 * columns (a column was dropped or renamed, or the key changed). Runs in the caller's
 * transaction, after new columns arrived.
 */
int
fy_queue_check_schema(ferry *db, FyShape *s)
{
	sqlite3_stmt *st;
	char	  **ids = NULL;
	char	  **why = NULL;
	int			n = 0;
	int			rc = FERRY_OK;

	if (sqlite3_prepare_v2(db->db, "SELECT id, changes, row_key FROM ferry_queue WHERE tbl = ? AND status <> 'failed'",
						   -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot read the queue");
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW)
	{
		json_t	   *ch = json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL);
		json_t	   *key = json_loads((const char *) sqlite3_column_text(st, 2), 0, NULL);
		const char *col;
		json_t	   *v;
		char	   *msg = NULL;

		if (json_array_size(key) != (size_t) s->nkeys)
			msg = fy_sprintf("the primary key of %s changed on the server: this change no longer fits; discard it "
							 "and make it again", s->tbl);
		json_object_foreach(ch, col, v)
		{
			if (msg == NULL && fy_shape_column(s, col) < 0)
				msg = fy_sprintf("column \"%s\" no longer exists in %s (the server's schema changed): this change "
								 "no longer fits; discard it and make it again", col, s->tbl);
		}
		json_decref(ch);
		json_decref(key);
		if (msg != NULL)
		{
			char	  **ni = realloc(ids, sizeof(char *) * (n + 1));
			char	  **nw = ni ? realloc(why, sizeof(char *) * (n + 1)) : NULL;

			if (ni)
				ids = ni;
			if (nw == NULL)
			{
				free(msg);
				break;
			}
			why = nw;
			ids[n] = fy_strdup((const char *) sqlite3_column_text(st, 0));
			why[n++] = msg;
		}
	}
	sqlite3_finalize(st);
	for (int i = 0; i < n; i++)
	{
		const char *p[2] = {why[i], ids[i]};

		if (rc == FERRY_OK)
			rc = run(db, "UPDATE ferry_queue SET status = 'failed', error_code = 'schema_changed', last_error = ? "
					 "WHERE id = ?", 2, p);
		if (rc == FERRY_OK)
			fy_sync_set_error(db, ids[i], "%s", why[i]);
		free(ids[i]);
		free(why[i]);
	}
	free(ids);
	free(why);
	return rc;
}

/* ---- the app's actions ------------------------------------------------------------- */

int
ferry_retry(ferry *db, const char *mutation_id, char **errmsg)
{
	Entry		e;
	char		id[37];
	int			rc;

	if (mutation_id == NULL)
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "no mutation id given"), errmsg);
	if ((rc = fy_begin(db)) != FERRY_OK)
		return fy_finish(db, rc, errmsg);
	if ((rc = entry_get(db, mutation_id, &e)) == FERRY_OK)
	{
		if (strcmp(e.status, FY_ST_FAILED) != 0)
			rc = fy_err(db, FERRY_MISUSE, "mutation %s is %s, not failed: only failed mutations can be retried%s",
						mutation_id, e.status,
						strcmp(e.status, FY_ST_CONFLICT) == 0 ? " (resolve a conflict with ferry_resolve)" : "");
		else
		{
			const char *p[2];

			fy_uuid7(id);
			p[0] = id;
			p[1] = mutation_id;
			rc = run(db, "UPDATE ferry_queue SET id = ?, status = 'pending', retry_count = 0, next_attempt_at = 0, "
					 "error_code = NULL, last_error = NULL WHERE id = ?", 2, p);
		}
		entry_free(&e);
	}
	if (rc == FERRY_OK)
	{
		rc = fy_commit(db);
		db->sync.next_send_at = 0;
		if (strcmp(db->sync.last_error_mutation, mutation_id) == 0)
			db->sync.last_error[0] = db->sync.last_error_mutation[0] = '\0';
	}
	else
		fy_rollback(db);
	return fy_finish(db, rc, errmsg);
}

int
ferry_discard(ferry *db, const char *mutation_id, char **errmsg)
{
	Entry		e;
	int			rc;

	if (mutation_id == NULL)
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "no mutation id given"), errmsg);
	if ((rc = fy_begin(db)) != FERRY_OK)
		return fy_finish(db, rc, errmsg);
	if ((rc = entry_get(db, mutation_id, &e)) == FERRY_OK)
	{
		if (strcmp(e.status, FY_ST_INFLIGHT) == 0)
			rc = fy_err(db, FERRY_BUSY, "mutation %s is being sent; discard it once the server answered", mutation_id);
		else
			rc = entry_remove(db, &e, FERRY_ORIGIN_LOCAL);
		entry_free(&e);
	}
	if (rc == FERRY_OK)
	{
		rc = fy_commit(db);
		if (strcmp(db->sync.last_error_mutation, mutation_id) == 0)
			db->sync.last_error[0] = db->sync.last_error_mutation[0] = '\0';
	}
	else
		fy_rollback(db);
	return fy_finish(db, rc, errmsg);
}

/* Is the string s in the JSON array arr? */
static bool
in_array(const json_t *arr, const char *s)
{
	size_t		i;
	json_t	   *a;

	json_array_foreach(arr, i, a)
	{
		if (json_is_string(a) && strcmp(json_string_value(a), s) == 0)
			return true;
	}
	return false;
}

/* The server's current values of a row: its merge base, or the conflict's `theirs`. */
static json_t *
server_row(ferry *db, Entry *e, const char *theirs_text, int64_t *version, bool *gone)
{
	sqlite3_stmt *st;
	json_t	   *row = NULL;
	json_t	   *theirs = theirs_text ? json_loads(theirs_text, 0, NULL) : NULL;
	const char *del = json_string_value(json_object_get(theirs, "ferry_deleted_at"));

	*version = json_is_string(json_object_get(theirs, "ferry_version")) ?
		strtoll(json_string_value(json_object_get(theirs, "ferry_version")), NULL, 10) :
		json_integer_value(json_object_get(theirs, "ferry_version"));
	*gone = del != NULL;
	if (sqlite3_prepare_v2(db->db, "SELECT row, version, deleted FROM ferry_base WHERE tbl = ? AND row_key = ?", -1,
						   &st, NULL) == SQLITE_OK)
	{
		sqlite3_bind_text(st, 1, e->tbl, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, e->row_key, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
			sqlite3_column_int64(st, 1) >= *version)
		{
			row = json_loads((const char *) sqlite3_column_text(st, 0), 0, NULL);
			*version = sqlite3_column_int64(st, 1);
			*gone = sqlite3_column_int(st, 2) != 0;
		}
		sqlite3_finalize(st);
	}
	if (row == NULL)
		row = theirs ? json_incref(theirs) : json_object();
	json_decref(theirs);
	return row;
}

int
ferry_resolve(ferry *db, const char *mutation_id, int how, const char *merged, char **errmsg)
{
	Entry		e;
	sqlite3_stmt *st;
	FyShape    *s;
	json_t	   *mergedj = NULL;
	json_t	   *applied = NULL;
	json_t	   *contested_cols = NULL;
	json_t	   *cur = NULL;
	json_t	   *changes = NULL;
	char	   *theirs_text = NULL;
	int64_t		version = 0;
	bool		gone = false;
	const char *op;
	int			rc;

	if (mutation_id == NULL || (how != FERRY_KEEP_MINE && how != FERRY_USE_THEIRS && how != FERRY_MERGE) ||
		((how == FERRY_MERGE) != (merged != NULL)))
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "ferry_resolve needs a mutation id and FERRY_KEEP_MINE, "
									"FERRY_USE_THEIRS or FERRY_MERGE (with merged values for FERRY_MERGE only)"),
						 errmsg);
	if (merged != NULL)
	{
		json_error_t jerr;

		mergedj = json_loads(merged, 0, &jerr);
		if (!json_is_object(mergedj))
		{
			json_decref(mergedj);
			return fy_finish(db, fy_err(db, FERRY_INVALID, "the merged values must be a JSON object "
										"{\"column\": value}%s%s", mergedj ? "" : ": ", mergedj ? "" : jerr.text),
							 errmsg);
		}
	}
	if ((rc = fy_begin(db)) != FERRY_OK)
	{
		json_decref(mergedj);
		return fy_finish(db, rc, errmsg);
	}
	if ((rc = entry_get(db, mutation_id, &e)) != FERRY_OK)
		goto out;
	if (strcmp(e.status, FY_ST_CONFLICT) != 0)
	{
		rc = fy_err(db, FERRY_MISUSE, "mutation %s is %s, not in conflict", mutation_id, e.status);
		goto out;
	}
	if (how == FERRY_USE_THEIRS)
	{
		rc = entry_remove(db, &e, FERRY_ORIGIN_LOCAL);
		goto out;
	}
	if ((s = fy_shape_find(db, e.tbl)) == NULL || s->ncols == 0)
	{
		rc = fy_err(db, FERRY_NOTFOUND, "%s is not subscribed any more: only FERRY_USE_THEIRS is possible", e.tbl);
		goto out;
	}
	if (sqlite3_prepare_v2(db->db, "SELECT theirs, applied, columns FROM ferry_conflicts WHERE mutation_id = ?", -1,
						   &st, NULL) != SQLITE_OK)
	{
		rc = fy_sqlerr(db, "cannot read ferry_conflicts");
		goto out;
	}
	sqlite3_bind_text(st, 1, mutation_id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
	{
		theirs_text = fy_strdup((const char *) sqlite3_column_text(st, 0));
		applied = json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL);
		contested_cols = json_loads((const char *) sqlite3_column_text(st, 2), 0, NULL);
	}
	sqlite3_finalize(st);
	cur = server_row(db, &e, theirs_text, &version, &gone);
	changes = json_object();

	/* My values: the mutation's, or the merged ones. */
	{
		json_t	   *mine = json_object();
		const char *col;
		json_t	   *v;

		/* the mutation's values the server did not apply, then the merged ones over them */
		json_object_foreach(e.changes, col, v)
		{
			if (!in_array(applied, col) && json_object_get(v, "new") != NULL)
				json_object_set(mine, col, json_object_get(v, "new"));
		}
		if (mergedj != NULL)
		{
			json_object_foreach(mergedj, col, v)
			{
				char		err[512];
				char	   *text;
				int			i = fy_shape_column(s, col);

				if (i < 0 || strncmp(col, FY_RESERVED_PREFIX, strlen(FY_RESERVED_PREFIX)) == 0)
				{
					rc = fy_err(db, FERRY_INVALID, "%s has no writable column \"%s\"", s->tbl, col);
					break;
				}
				if ((rc = fy_json_to_text(v, &s->cols[i], &text, err, sizeof(err))) != FERRY_OK)
				{
					fy_err(db, rc, "%s", err);
					break;
				}
				json_object_set_new(mine, col, fy_text_json(text));
				free(text);
			}
		}
		if (rc != FERRY_OK)
		{
			json_decref(mine);
			goto out;
		}

		if (strcmp(e.op, "delete") == 0 && mergedj == NULL)
		{
			op = gone ? NULL : "delete";	/* already gone: nothing left to do */
		}
		else if (gone || json_object_size(cur) == 0)
		{
			/* The server deleted the row: keep mine = insert my whole row (resurrects it). */
			json_t	   *row = json_deep_copy(cur);

			op = "insert";
			json_object_update(row, mine);
			json_object_foreach(row, col, v)
			{
				if (fy_shape_column(s, col) >= 0 && strncmp(col, FY_RESERVED_PREFIX, strlen(FY_RESERVED_PREFIX)) != 0)
					json_object_set_new(changes, col, json_pack("{s:O}", "new", v));
			}
			json_decref(row);
		}
		else
		{
			/*
			 * A contested column (in conflict, or new to this mutation) is based on the
			 * server's current value, so it does not conflict again; the others keep their
			 * original base, so their rules (counter deltas, set merges, clocks) still apply.
			 */
			op = "update";
			json_object_foreach(mine, col, v)
			{
				json_t	   *orig = json_object_get(e.changes, col);
				json_t	   *old = json_object_get(orig, "old");
				bool		contested = in_array(contested_cols, col) || old == NULL;
				int			i = fy_shape_column(s, col);

				if (i >= 0 && s->cols[i].key)
					continue;
				if (contested)
				{
					old = json_object_get(cur, col);
					if (fy_text_equal(json_string_value(old), json_string_value(v)))
						continue;	/* the server already has it */
				}
				json_object_set_new(changes, col, json_pack("{s:O,s:O}", "old", old ? old : json_null(), "new", v));
			}
			if (json_object_size(changes) == 0)
				op = NULL;		/* the server already has my values */
		}
		json_decref(mine);
	}

	if (op == NULL)
		rc = entry_remove(db, &e, FERRY_ORIGIN_LOCAL);
	else
	{
		char		id[37];
		char		clock[128];
		char	   *ctext = fy_json_dump(changes);

		fy_uuid7(id);
		fy_hlc_next(db, clock, sizeof(clock));
		if (sqlite3_prepare_v2(db->db, "UPDATE ferry_queue SET id = ?, op = ?, changes = ?, base_version = ?, clock = ?, "
							   "status = 'pending', retry_count = 0, next_attempt_at = 0, error_code = NULL, "
							   "last_error = NULL WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
			rc = fy_sqlerr(db, "cannot update the queue");
		else
		{
			sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, op, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, ctext, -1, SQLITE_STATIC);
			if (version > 0 && strcmp(op, "insert") != 0)
				sqlite3_bind_int64(st, 4, version);
			sqlite3_bind_text(st, 5, clock, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 6, mutation_id, -1, SQLITE_STATIC);
			rc = sqlite3_step(st) == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot update the queue");
			sqlite3_finalize(st);
		}
		free(ctext);
		if (rc == FERRY_OK)
		{
			const char *p[1] = {mutation_id};

			rc = run(db, "DELETE FROM ferry_conflicts WHERE mutation_id = ?", 1, p);
		}
		if (rc == FERRY_OK)
			rc = fy_hlc_save(db);
		if (rc == FERRY_OK)
			rc = fy_row_refresh(db, s, e.row_key, FERRY_ORIGIN_LOCAL);
	}

out:
	if (rc == FERRY_OK)
	{
		rc = fy_commit(db);
		db->sync.next_send_at = 0;
		if (strcmp(db->sync.last_error_mutation, mutation_id) == 0)
			db->sync.last_error[0] = db->sync.last_error_mutation[0] = '\0';
	}
	else
		fy_rollback(db);
	entry_free(&e);
	json_decref(mergedj);
	json_decref(applied);
	json_decref(contested_cols);
	json_decref(cur);
	json_decref(changes);
	free(theirs_text);
	return fy_finish(db, rc, errmsg);
}
