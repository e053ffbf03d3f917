/*
 * client-sqlite/push.c -- sending the queue: MutationBatches out, their bookkeeping.
 *
 * What goes out: the oldest queued mutation of each row, when it is pending and due and
 * nothing older of its row is still queued (so one mutation per row is in flight, a
 * failed or conflicting one holds back the rest of its row, and rows are pipelined), for
 * tables whose shape is subscribed on this connection. It is marked inflight in the same
 * transaction that picks it, and sent as JSON for ferry.apply_mutation. Results
 * (recv.c, outcome.c) take mutations out of the in-flight batches; a non-fatal Error
 * about a batch (e.g. a server that takes no mutations) sends its mutations back to
 * pending with a backoff.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Builds the JSON text of one mutation for apply_mutation (docs/sql-api.md). */
static char *
mutation_json(FyShape *s, const char *row_key, const char *op, const char *changes, sqlite3_int64 base_version,
			  bool has_base, const char *clock)
{
	json_t	   *obj = json_object();
	json_t	   *key = json_loads(row_key, 0, NULL);
	json_t	   *kobj = json_object();
	json_t	   *ch = json_loads(changes, 0, NULL);
	char	   *out;

	for (int k = 0; k < s->nkeys && key != NULL; k++)
		json_object_set(kobj, s->cols[s->keys[k]].name, json_array_get(key, (size_t) k));
	json_object_set_new(obj, "table", json_string(s->tbl));
	json_object_set_new(obj, "op", json_string(op));
	json_object_set_new(obj, "key", kobj);
	if (has_base)
		json_object_set_new(obj, "base_version", json_integer(base_version));
	json_object_set_new(obj, "changes", ch ? ch : json_object());
	json_object_set_new(obj, "clock", json_string(clock));
	out = fy_json_dump(obj);
	json_decref(obj);
	json_decref(key);
	return out;
}

/*
 * fy_queue_take picks up to `limit` mutations to send now -- the oldest queued mutation
 * of each row, when it is pending and due and no older mutation of the row is still in
 * the queue (one in flight per row; a failed or conflicting one holds back the rest of
 * its row) -- for tables whose shape is ready on this connection (every subscribed
 * table with `any_table`), marks them inflight in one transaction, and returns their
 * ids and JSON texts in *ids and *jsons (arrays of n malloc'd strings, freed by the
 * caller with fy_strings_free). Returns n, or -1 on error.
 */
int
fy_queue_take(ferry *db, int limit, bool any_table, char ***ids_out, char ***jsons_out)
{
	char	   *sql;
	sqlite3_stmt *st;
	char	  **ids;
	char	  **jsons;
	int			n = 0;
	int			nready = 0;
	int64_t		now = fy_now_ms();

	*ids_out = *jsons_out = NULL;
	for (int i = 0; i < db->nshapes; i++)
		if (db->shapes[i]->ncols > 0 && (any_table || db->shapes[i]->ready))
			nready++;
	if (nready == 0 || limit <= 0)
		return 0;
	sql = fy_strdup("SELECT q.id, q.tbl, q.row_key, q.op, q.changes, q.base_version, q.clock FROM ferry_queue q "
					"WHERE q.status = 'pending' AND q.next_attempt_at <= ?1 AND NOT EXISTS (SELECT 1 FROM ferry_queue p "
					"WHERE p.tbl = q.tbl AND p.row_key = q.row_key AND p.seq < q.seq) AND q.tbl IN (");
	for (int i = 0, k = 0; i < db->nshapes && sql != NULL; i++)
		if (db->shapes[i]->ncols > 0 && (any_table || db->shapes[i]->ready))
		{
			char	   *next = fy_sprintf("%s%s?%d", sql, k ? ", " : "", k + 3);

			free(sql);
			sql = next;
			k++;
		}
	if (sql != NULL)
	{
		char	   *next = fy_sprintf("%s) ORDER BY q.seq LIMIT ?2", sql);

		free(sql);
		sql = next;
	}
	if (sql == NULL || sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK)
	{
		free(sql);
		fy_sqlerr(db, "cannot read the queue");
		return -1;
	}
	free(sql);
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int(st, 2, limit);
	for (int i = 0, k = 0; i < db->nshapes; i++)
		if (db->shapes[i]->ncols > 0 && (any_table || db->shapes[i]->ready))
			sqlite3_bind_text(st, 3 + k++, db->shapes[i]->tbl, -1, SQLITE_STATIC);
	ids = calloc((size_t) limit, sizeof(char *));
	jsons = calloc((size_t) limit, sizeof(char *));
	if (ids == NULL || jsons == NULL)
	{
		sqlite3_finalize(st);
		free(ids);
		free(jsons);
		return -1;
	}
	while (n < limit && sqlite3_step(st) == SQLITE_ROW)
	{
		FyShape    *s = fy_shape_find(db, (const char *) sqlite3_column_text(st, 1));

		if (s == NULL)
			continue;
		ids[n] = fy_strdup((const char *) sqlite3_column_text(st, 0));
		jsons[n] = mutation_json(s, (const char *) sqlite3_column_text(st, 2), (const char *) sqlite3_column_text(st, 3),
								 (const char *) sqlite3_column_text(st, 4), sqlite3_column_int64(st, 5),
								 sqlite3_column_type(st, 5) != SQLITE_NULL, (const char *) sqlite3_column_text(st, 6));
		if (ids[n] == NULL || jsons[n] == NULL)
		{
			free(ids[n]);
			free(jsons[n]);
			break;
		}
		n++;
	}
	sqlite3_finalize(st);

	if (n > 0)
	{
		sqlite3_stmt *up = NULL;
		bool		okay = fy_begin_relaxed(db) == FERRY_OK &&
			sqlite3_prepare_v2(db->db, "UPDATE ferry_queue SET status = 'inflight' WHERE id = ?", -1, &up, NULL) == SQLITE_OK;

		for (int i = 0; okay && i < n; i++)
		{
			sqlite3_bind_text(up, 1, ids[i], -1, SQLITE_STATIC);
			okay = sqlite3_step(up) == SQLITE_DONE;
			sqlite3_reset(up);
		}
		sqlite3_finalize(up);
		if (!okay || fy_commit(db) != FERRY_OK)
		{
			fy_rollback(db);
			fy_strings_free(ids, n);
			fy_strings_free(jsons, n);
			return -1;
		}
	}
	if (n == 0)
	{
		free(ids);
		free(jsons);
		return 0;
	}
	*ids_out = ids;
	*jsons_out = jsons;
	return n;
}

/* fy_strings_free frees n strings and their array. */
void
fy_strings_free(char **a, int n)
{
	for (int i = 0; a != NULL && i < n; i++)
		free(a[i]);
	free(a);
}

/* Sends one MutationBatch of what is due; returns the number of mutations sent. */
static int
send_batch(ferry *db)
{
	FySync	   *sy = &db->sync;
	int			limit = db->max_batch;
	char	  **ids;
	char	  **jsons;
	Ferry__V1__Mutation *muts;
	Ferry__V1__Mutation **mptr;
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__MutationBatch mb = FERRY__V1__MUTATION_BATCH__INIT;
	FyBatch    *b;
	int			n;

	if (sy->server_max_batch > 0 && (uint32_t) limit > sy->server_max_batch)
		limit = (int) sy->server_max_batch;
	n = fy_queue_take(db, limit, false, &ids, &jsons);
	if (n <= 0)
		return n;
	muts = calloc((size_t) n, sizeof(Ferry__V1__Mutation));
	mptr = calloc((size_t) n, sizeof(Ferry__V1__Mutation *));
	b = calloc(1, sizeof(FyBatch));
	if (muts == NULL || mptr == NULL || b == NULL)
	{
		/* nothing sent: they go back to pending with the next reconnect's reset */
		free(muts);
		free(mptr);
		free(b);
		fy_strings_free(ids, n);
		fy_strings_free(jsons, n);
		return -1;
	}
	for (int i = 0; i < n; i++)
	{
		ferry__v1__mutation__init(&muts[i]);
		muts[i].id = ids[i];
		muts[i].json = jsons[i];
		mptr[i] = &muts[i];
	}
	mb.n_mutations = (size_t) n;
	mb.mutations = mptr;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_MUTATIONS;
	m.mutations = &mb;
	fy_sync_send(db, &m);
	b->n = n;
	b->ids = ids;				/* the batch keeps the ids */
	if (sy->inflight_tail)
		sy->inflight_tail->next = b;
	else
		sy->inflight = b;
	sy->inflight_tail = b;
	sy->ninflight++;
	fy_strings_free(jsons, n);
	free(muts);
	free(mptr);
	return n;
}

/* Sends batches while allowed; when nothing is due, notes when the next one will be. */
void
fy_sync_send_mutations(ferry *db)
{
	FySync	   *sy = &db->sync;
	int64_t		now = fy_now_ms();

	if (sy->next_send_at > now)
		return;
	while (sy->ninflight < db->max_inflight)
	{
		int			n = send_batch(db);

		if (n <= 0)
		{
			sqlite3_stmt *st;

			sy->next_send_at = INT64_MAX;
			if (n == 0 && sqlite3_prepare_v2(db->db, "SELECT min(next_attempt_at) FROM ferry_queue WHERE status = "
											 "'pending' AND next_attempt_at > ?", -1, &st, NULL) == SQLITE_OK)
			{
				sqlite3_bind_int64(st, 1, now);
				if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
					sy->next_send_at = sqlite3_column_int64(st, 0);
				sqlite3_finalize(st);
			}
			if (n < 0)
				sy->next_send_at = now + 1000;
			return;
		}
	}
}

/* Takes the answered ids out of the in-flight batches. */
void
fy_sync_answered(ferry *db, const char *id)
{
	FySync	   *sy = &db->sync;
	FyBatch    *prev = NULL;

	for (FyBatch *b = sy->inflight; b != NULL; prev = b, b = b->next)
	{
		for (int i = 0; i < b->n; i++)
			if (b->ids[i] != NULL && strcmp(b->ids[i], id) == 0)
			{
				free(b->ids[i]);
				b->ids[i] = NULL;
				if (++b->answered == b->n)
				{
					if (prev)
						prev->next = b->next;
					else
						sy->inflight = b->next;
					if (sy->inflight_tail == b)
						sy->inflight_tail = prev;
					free(b->ids);
					free(b);
					sy->ninflight--;
				}
				return;
			}
	}
}

/* A non-fatal error about the connection's oldest unanswered batch: retry those later. */
int
fy_sync_batch_refused(ferry *db, Ferry__V1__Error *e)
{
	FySync	   *sy = &db->sync;
	FyBatch    *b = sy->inflight;
	bool		count = e->code != FERRY__V1__ERROR_CODE__RATE_LIMITED;
	int			rc;

	if (b == NULL)
		return FERRY_OK;
	if (e->code == FERRY__V1__ERROR_CODE__FRAME_TOO_LARGE && db->max_batch > 1)
		db->max_batch /= 2;
	if ((rc = fy_begin(db)) != FERRY_OK)
		return rc;
	for (int i = 0; i < b->n && rc == FERRY_OK; i++)
		if (b->ids[i] != NULL)
			rc = fy_queue_retry_later(db, b->ids[i], e->retry_after_ms, "server_error", e->message, count);
	if (rc != FERRY_OK)
	{
		fy_rollback(db);
		return rc;
	}
	if ((rc = fy_commit(db)) != FERRY_OK)
		return rc;
	fy_sync_set_error(db, b->n > 0 && b->ids[0] ? b->ids[0] : NULL, "the server did not take %d mutation%s: %s",
					  b->n - b->answered, b->n - b->answered == 1 ? "" : "s", e->message ? e->message : "");
	sy->inflight = b->next;
	if (sy->inflight_tail == b)
		sy->inflight_tail = NULL;
	sy->ninflight--;
	for (int i = 0; i < b->n; i++)
		free(b->ids[i]);
	free(b->ids);
	free(b);
	sy->next_send_at = 0;
	return FERRY_OK;
}
