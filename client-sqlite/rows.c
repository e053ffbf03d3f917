/*
 * client-sqlite/rows.c -- server rows into mirror tables; the merge base and the rebase.
 *
 * A row without queued mutations is simply the server's row: a change from the server
 * is written to the mirror as it is. A row with queued mutations has a merge base in
 * ferry_base, the server's copy of it; a change from the server updates the merge
 * base, and the visible row is computed again (fy_row_refresh): the merge base with
 * every queued mutation of the row laid on top, oldest first ("rebase"):
 *
 *     visible = base (or nothing when the server has no such row)
 *     insert  -> the row exists; its columns take the new values
 *     update  -> its columns take the new values (the row shows while any values are known)
 *     delete  -> the row does not exist
 *
 * A row the server deleted keeps its last values in the merge base (deleted = 1), so
 * that a pending update keeps showing the user's edit until the server answers it
 * (with a conflict the user resolves). When the last mutation of a row leaves the
 * queue, the visible row becomes the merge base and the merge base goes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BASE_GET_SQL "SELECT row, version, deleted FROM ferry_base WHERE tbl = ? AND row_key = ?"
#define QUEUE_ROW_SQL "SELECT op, changes FROM ferry_queue WHERE tbl = ? AND row_key = ? ORDER BY seq"

static int	clear_staged(ferry *db, FyShape *s);

/* Binds the key columns of row_key (a JSON array) from parameter `first` on. */
static int
bind_key(ferry *db, sqlite3_stmt *st, int first, const FyShape *s, const char *row_key)
{
	json_t	   *arr = json_loads(row_key, 0, NULL);

	if (!json_is_array(arr) || json_array_size(arr) != (size_t) s->nkeys)
	{
		json_decref(arr);
		return fy_err(db, FERRY_ERROR, "bad row key %s for %s", row_key, s->tbl);
	}
	for (int k = 0; k < s->nkeys; k++)
		fy_bind_text(st, first + k, &s->cols[s->keys[k]], json_string_value(json_array_get(arr, (size_t) k)));
	json_decref(arr);
	return FERRY_OK;
}

/* Reports a visible row change of s (after commit) when a callback wants it. */
static void
note_row(ferry *db, FyShape *s, const char *row_key, int op, int origin)
{
	char	   *key;

	if (db->change_fn == NULL)
		return;
	key = row_key ? fy_key_object(s, row_key) : NULL;
	fy_note(db, s->mirror, key, op, origin);
	free(key);
}

/*
 * fy_row_read sets *row to the visible row of row_key as a JSON object of text-form
 * values (new reference; NULL when there is no such row) and *version to its
 * ferry_version (0 unknown).
 */
int
fy_row_read(ferry *db, FyShape *s, const char *row_key, json_t **row, int64_t *version)
{
	sqlite3_stmt *st = s->st_select;
	int			rc;

	*row = NULL;
	if (version)
		*version = 0;
	if (st == NULL)
		return fy_err(db, FERRY_NOTFOUND, "the rows of %s have not arrived yet: sync once first", s->tbl);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if ((rc = bind_key(db, st, 1, s, row_key)) != FERRY_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
	{
		json_t	   *obj = json_object();

		for (int i = 0; i < s->ncols; i++)
		{
			char	   *t = fy_value_text(st, i, &s->cols[i]);

			json_object_set_new(obj, s->cols[i].name, fy_text_json(t));
			free(t);
		}
		if (version)
			*version = sqlite3_column_int64(st, s->version_col >= 0 ? s->version_col : s->ncols);
		*row = obj;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fy_sqlerr(db, "cannot read a mirror row");
	return FERRY_OK;
}

/* Writes a whole row (JSON object of text forms) into the mirror. */
static int
mirror_write(ferry *db, FyShape *s, const json_t *row, int64_t version, const char *row_key)
{
	sqlite3_stmt *st = s->st_upsert;
	json_t	   *key = row_key ? json_loads(row_key, 0, NULL) : NULL;
	int			rc;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	for (int i = 0; i < s->ncols; i++)
	{
		json_t	   *v = json_object_get(row, s->cols[i].name);

		if (s->cols[i].key && (v == NULL || json_is_null(v)) && key != NULL)
			for (int k = 0; k < s->nkeys; k++)
				if (s->keys[k] == i)
					v = json_array_get(key, (size_t) k);
		if (i == s->version_col && version > 0)
			sqlite3_bind_int64(st, i + 1, version);
		else if (i == s->version_col)
			sqlite3_bind_null(st, i + 1);
		else
			fy_bind_text(st, i + 1, &s->cols[i], json_string_value(v));
	}
	if (s->version_col < 0)
	{
		if (version > 0)
			sqlite3_bind_int64(st, s->ncols + 1, version);
		else
			sqlite3_bind_null(st, s->ncols + 1);
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	json_decref(key);
	return rc == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot write a mirror row");
}

static int
mirror_delete(ferry *db, FyShape *s, const char *row_key)
{
	sqlite3_stmt *st = s->st_delete;
	int			rc;

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if ((rc = bind_key(db, st, 1, s, row_key)) != FERRY_OK)
		return rc;
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot delete a mirror row");
}

/* ---- the merge base ---------------------------------------------------------------- */

/* Reads the merge base of a row: 1 found (row may be NULL: never on the server), 0 none. */
static int
base_get(ferry *db, FyShape *s, const char *row_key, json_t **row, int64_t *version, bool *deleted)
{
	sqlite3_stmt *st = fy_cached(db, FY_Q_BASE_GET, BASE_GET_SQL);
	int			rc;

	*row = NULL;
	*version = 0;
	*deleted = false;
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row_key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
	{
		if (sqlite3_column_type(st, 0) != SQLITE_NULL)
			*row = json_loads((const char *) sqlite3_column_text(st, 0), 0, NULL);
		*version = sqlite3_column_int64(st, 1);
		*deleted = sqlite3_column_int(st, 2) != 0;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
	{
		fy_sqlerr(db, "cannot read ferry_base");
		return -1;
	}
	return rc == SQLITE_ROW;
}

/*
 * fy_base_ensure gives a row a merge base when it has none: the visible row, which is
 * the server's row since the row has no queued mutations yet. Called before the first
 * mutation of a row enters the queue.
 */
int
fy_base_ensure(ferry *db, FyShape *s, const char *row_key)
{
	json_t	   *row = NULL;
	json_t	   *brow;
	int64_t		version = 0,
				bversion;
	bool		deleted;
	sqlite3_stmt *st;
	char	   *text = NULL;
	int			rc;
	int			found = base_get(db, s, row_key, &brow, &bversion, &deleted);

	json_decref(brow);
	if (found < 0)
		return FERRY_DB;
	if (found)
		return FERRY_OK;
	if ((rc = fy_row_read(db, s, row_key, &row, &version)) != FERRY_OK)
		return rc;
	if (row != NULL && (text = fy_json_dump(row)) == NULL)
	{
		json_decref(row);
		return fy_err(db, FERRY_NOMEM, "out of memory");
	}
	json_decref(row);
	if ((st = fy_cached(db, FY_Q_BASE_INSERT,
						"INSERT INTO ferry_base (tbl, row_key, row, version) VALUES (?, ?, ?, ?)")) == NULL)
	{
		free(text);
		return FERRY_DB;
	}
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row_key, -1, SQLITE_STATIC);
	if (text)
		sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
	if (version > 0)
		sqlite3_bind_int64(st, 4, version);
	rc = sqlite3_step(st);
	free(text);
	rc = rc == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot write ferry_base");
	sqlite3_reset(st);
	return rc;
}

/*
 * fy_base_update records the server's copy of a row that has a merge base: `row` (a
 * JSON object of text forms) at `version`, or, with deleted, that the server deleted
 * it (row NULL keeps the last values). Does nothing for a row without merge base.
 */
int
fy_base_update(ferry *db, FyShape *s, const char *row_key, const json_t *row, int64_t version, bool deleted)
{
	sqlite3_stmt *st;
	char	   *text = row ? fy_json_dump(row) : NULL;
	int			rc;

	if ((st = fy_cached(db, FY_Q_BASE_UPDATE, "UPDATE ferry_base SET row = coalesce(?, row), "
						"version = coalesce(?, version), deleted = ?, stale = 0 WHERE tbl = ? AND row_key = ?")) == NULL)
	{
		free(text);
		return FERRY_DB;
	}
	if (text)
		sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
	if (version > 0)
		sqlite3_bind_int64(st, 2, version);
	sqlite3_bind_int(st, 3, deleted);
	sqlite3_bind_text(st, 4, s->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, row_key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	free(text);
	return rc == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot update ferry_base");
}

/*
 * fy_row_refresh computes the visible row of row_key again from its merge base and its
 * queued mutations (see the file comment) and writes it to the mirror. When the queue
 * holds nothing for the row any more, the row becomes the merge base's, and the merge
 * base is dropped. Does nothing for a row without merge base. Runs in the caller's
 * transaction.
 */
int
fy_row_refresh(ferry *db, FyShape *s, const char *row_key, int origin)
{
	json_t	   *base = NULL;
	json_t	   *vals;
	int64_t		version;
	bool		deleted;
	bool		exists,
				known;
	int			nq = 0;
	int			rc = FERRY_OK;
	int			found = base_get(db, s, row_key, &base, &version, &deleted);
	sqlite3_stmt *st;
	json_t	   *before = NULL;
	int64_t		before_version = 0;

	if (found <= 0)
		return found < 0 ? FERRY_DB : FERRY_OK;
	if (s->st_upsert == NULL)
	{
		json_decref(base);
		return FERRY_OK;		/* no mirror yet: nothing visible to compute */
	}
	exists = base != NULL && !deleted;
	known = base != NULL;
	vals = base ? json_deep_copy(base) : json_object();

	if ((st = fy_cached(db, FY_Q_QUEUE_ROW, QUEUE_ROW_SQL)) == NULL)
	{
		json_decref(base);
		json_decref(vals);
		return FERRY_DB;
	}
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row_key, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
	{
		const char *op = (const char *) sqlite3_column_text(st, 0);
		json_t	   *changes = json_loads((const char *) sqlite3_column_text(st, 1), 0, NULL);
		const char *col;
		json_t	   *ch;

		nq++;
		if (strcmp(op, "delete") == 0)
			exists = false;
		else
		{
			json_object_foreach(changes, col, ch)
			{
				json_t	   *nv = json_object_get(ch, "new");

				if (nv != NULL && fy_shape_column(s, col) >= 0)
					json_object_set(vals, col, nv);
			}
			if (strcmp(op, "insert") == 0)
				exists = known = true;
			else if (known)
				exists = true;
		}
		json_decref(changes);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
	{
		json_decref(base);
		json_decref(vals);
		return fy_sqlerr(db, "cannot read the queue");
	}

	if ((rc = fy_row_read(db, s, row_key, &before, &before_version)) != FERRY_OK)
		goto done;
	if (exists)
	{
		if (!json_equal(before, vals) || before_version != version)
		{
			rc = mirror_write(db, s, vals, version, row_key);
			if (rc == FERRY_OK)
				note_row(db, s, row_key, before ? FERRY_OP_UPDATE : FERRY_OP_INSERT, origin);
		}
	}
	else if (before != NULL)
	{
		rc = mirror_delete(db, s, row_key);
		if (rc == FERRY_OK)
			note_row(db, s, row_key, FERRY_OP_DELETE, origin);
	}
	if (rc == FERRY_OK && nq == 0)
	{
		if ((st = fy_cached(db, FY_Q_BASE_DELETE, "DELETE FROM ferry_base WHERE tbl = ? AND row_key = ?")) == NULL)
			rc = FERRY_DB;
		else
		{
			sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, row_key, -1, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				rc = fy_sqlerr(db, "cannot update ferry_base");
			sqlite3_reset(st);
		}
	}
done:
	json_decref(before);
	json_decref(base);
	json_decref(vals);
	return rc;
}

/* ---- changes from the server ------------------------------------------------------- */

static bool
is_null(const Ferry__V1__Change *ch, size_t i)
{
	for (size_t j = 0; j < ch->n_nulls; j++)
		if (ch->nulls[j] == i)
			return true;
	return false;
}

/*
 * fy_rows_apply_change applies one change of a ChangeBatch for shape s, in the
 * caller's transaction.
 */
int
fy_rows_apply_change(ferry *db, FyShape *s, const Ferry__V1__Change *ch)
{
	json_t	   *key = json_array();
	char	   *row_key;
	int			rc = FERRY_OK;
	int			has_base;
	bool		del = ch->op == FERRY__V1__OP__DELETE;
	sqlite3_stmt *st;

	if (ch->op != FERRY__V1__OP__INSERT && ch->op != FERRY__V1__OP__UPDATE && !del)
	{
		json_decref(key);
		return fy_err(db, FERRY_PROTOCOL, "a change of %s has an unknown op %d", s->tbl, (int) ch->op);
	}
	if ((del && ch->n_values < (size_t) s->nkeys) || (!del && ch->n_values != (size_t) s->ncols))
	{
		json_decref(key);
		return fy_err(db, FERRY_PROTOCOL, "a change of %s has %zu values for %d columns", s->tbl, ch->n_values,
					  del ? s->nkeys : s->ncols);
	}
	for (int k = 0; k < s->nkeys; k++)
	{
		size_t		i = del ? (size_t) k : (size_t) s->keys[k];

		json_array_append_new(key, json_string(ch->values[i]));
	}
	row_key = fy_json_dump(key);
	json_decref(key);
	if (row_key == NULL)
		return fy_err(db, FERRY_NOMEM, "out of memory");

	if (!del && s->clock_col >= 0 && !is_null(ch, (size_t) s->clock_col))
		fy_hlc_observe_text(db, ch->values[s->clock_col]);

	/* Does the row have a merge base (queued mutations)? */
	st = fy_cached(db, FY_Q_BASE_GET, BASE_GET_SQL);
	if (st == NULL)
	{
		free(row_key);
		return FERRY_DB;
	}
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row_key, -1, SQLITE_STATIC);
	has_base = sqlite3_step(st);
	sqlite3_reset(st);
	if (has_base != SQLITE_ROW && has_base != SQLITE_DONE)
	{
		free(row_key);
		return fy_sqlerr(db, "cannot read ferry_base");
	}

	if (has_base == SQLITE_ROW)
	{
		json_t	   *row = NULL;

		if (!del)
		{
			row = json_object();
			for (int i = 0; i < s->ncols; i++)
				json_object_set_new(row, s->cols[i].name,
									is_null(ch, (size_t) i) ? json_null() : json_string(ch->values[i]));
		}
		rc = fy_base_update(db, s, row_key, row, ch->version, del);
		json_decref(row);
		if (rc == FERRY_OK)
			rc = fy_row_refresh(db, s, row_key, FERRY_ORIGIN_SERVER);
		free(row_key);
		return rc;
	}

	if (del)
		rc = mirror_delete(db, s, row_key);
	else
	{
		st = s->st_upsert;
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		for (int i = 0; i < s->ncols; i++)
		{
			if (i == s->version_col)
				sqlite3_bind_int64(st, i + 1, ch->version);
			else
				fy_bind_text(st, i + 1, &s->cols[i], is_null(ch, (size_t) i) ? NULL : ch->values[i]);
		}
		if (s->version_col < 0)
			sqlite3_bind_int64(st, s->ncols + 1, ch->version);
		rc = sqlite3_step(st) == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot write a mirror row");
		sqlite3_reset(st);
	}
	if (rc == FERRY_OK && db->change_fn != NULL && (!del || sqlite3_changes(db->db) > 0))
		note_row(db, s, row_key, del ? FERRY_OP_DELETE : ch->op == FERRY__V1__OP__INSERT ? FERRY_OP_INSERT :
				 FERRY_OP_UPDATE, FERRY_ORIGIN_SERVER);
	free(row_key);
	return rc;
}

/* ---- refetch ------------------------------------------------------------------------ */

/* Calls fy_row_refresh for every merge base of s. */
static int
refresh_all(ferry *db, FyShape *s, int origin)
{
	sqlite3_stmt *st;
	char	  **keys = NULL;
	int			n = 0;
	int			rc = FERRY_OK;

	if (sqlite3_prepare_v2(db->db, "SELECT row_key FROM ferry_base WHERE tbl = ?", -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot read ferry_base");
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW)
	{
		char	  **nk = realloc(keys, sizeof(char *) * (n + 1));

		if (nk == NULL)
			break;
		keys = nk;
		keys[n++] = fy_strdup((const char *) sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	for (int i = 0; i < n; i++)
	{
		if (rc == FERRY_OK)
			rc = fy_row_refresh(db, s, keys[i], origin);
		free(keys[i]);
	}
	free(keys);
	return rc;
}

/*
 * fy_rows_drop starts a refetch of s: its mirror rows go (the queue stays, and every
 * row with queued mutations shows them again on its last known merge base), merge
 * bases are marked stale, and the position is reset to "-1". The caller subscribes
 * again. Runs in the caller's transaction.
 */
int
fy_rows_drop(ferry *db, FyShape *s)
{
	int			rc = FERRY_OK;
	sqlite3_stmt *st;

	if (s->st_upsert != NULL)
	{
		char	   *m = fy_quote_ident(s->mirror);
		char	   *sql = fy_sprintf("DELETE FROM %s", m);

		rc = sql ? fy_exec(db, sql) : fy_err(db, FERRY_NOMEM, "out of memory");
		free(sql);
		free(m);
		if (rc == FERRY_OK)
			fy_note(db, s->mirror, NULL, FERRY_OP_DELETE, FERRY_ORIGIN_SERVER);
	}
	if (rc != FERRY_OK)
		return rc;
	if (sqlite3_prepare_v2(db->db, "UPDATE ferry_base SET stale = 1 WHERE tbl = ?", -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot update ferry_base");
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot update ferry_base");
	sqlite3_finalize(st);
	if (rc == FERRY_OK)
		rc = refresh_all(db, s, FERRY_ORIGIN_SERVER);
	if (rc != FERRY_OK)
		return rc;
	if ((rc = clear_staged(db, s)) != FERRY_OK)
		return rc;
	free(s->handle);
	free(s->offset);
	s->handle = fy_strdup("");
	s->offset = fy_strdup("-1");
	s->refetch = true;
	s->up_to_date = false;
	return fy_shape_save_position(db, s);
}

/* ---- split transactions ------------------------------------------------------------ */

/* Forgets the parts kept of a split transaction of s (the shape starts over). */
static int
clear_staged(ferry *db, FyShape *s)
{
	sqlite3_stmt *st = fy_cached(db, FY_Q_PARTIAL_CLEAR, "DELETE FROM ferry_partial WHERE tbl = ?");
	int			rc;

	if (st == NULL)
		return FERRY_DB;
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot clear ferry_partial");
	sqlite3_reset(st);
	return rc;
}

/*
 * fy_rows_stage keeps one change of a transaction that goes on in the next batch, after
 * the ones kept before it; fy_rows_apply_staged applies them with the last part.
 */
int
fy_rows_stage(ferry *db, FyShape *s, const Ferry__V1__Change *ch)
{
	size_t		len = ferry__v1__change__get_packed_size(ch);
	uint8_t    *buf = malloc(len ? len : 1);
	sqlite3_stmt *st;
	int			rc;

	if (buf == NULL)
		return fy_err(db, FERRY_NOMEM, "out of memory");
	ferry__v1__change__pack(ch, buf);
	st = fy_cached(db, FY_Q_PARTIAL_ADD,
				   "INSERT INTO ferry_partial (tbl, seq, change) "
				   "SELECT ?1, coalesce(max(seq), 0) + 1, ?2 FROM ferry_partial WHERE tbl = ?1");
	if (st == NULL)
	{
		free(buf);
		return FERRY_DB;
	}
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, buf, (int) len, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot write ferry_partial");
	sqlite3_reset(st);
	free(buf);
	return rc;
}

/*
 * Applies the kept parts of s's split transaction in order and forgets them; a no-op when
 * none are kept (a transaction that fit in one batch). Runs in the caller's transaction.
 */
int
fy_rows_apply_staged(ferry *db, FyShape *s)
{
	sqlite3_stmt *st = fy_cached(db, FY_Q_PARTIAL_GET, "SELECT change FROM ferry_partial WHERE tbl = ? ORDER BY seq");
	int			rc = FERRY_OK;
	int			step;
	int			n = 0;

	if (st == NULL)
		return FERRY_DB;
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	while (rc == FERRY_OK && (step = sqlite3_step(st)) == SQLITE_ROW)
	{
		Ferry__V1__Change *ch = ferry__v1__change__unpack(NULL, (size_t) sqlite3_column_bytes(st, 0),
														  sqlite3_column_blob(st, 0));

		n++;
		if (ch == NULL)
			rc = fy_err(db, FERRY_PROTOCOL, "a kept part of a transaction of %s cannot be read", s->tbl);
		else
			rc = fy_rows_apply_change(db, s, ch);
		ferry__v1__change__free_unpacked(ch, NULL);
	}
	if (rc == FERRY_OK && step != SQLITE_DONE)
		rc = fy_sqlerr(db, "cannot read ferry_partial");
	sqlite3_reset(st);
	if (rc == FERRY_OK && n > 0)
		rc = clear_staged(db, s);
	return rc;
}

/*
 * fy_rows_refetch_done ends a refetch at its first UpToDate: merge bases the server did
 * not send again are of rows it no longer has (for this shape): deleted. Runs in the
 * caller's transaction.
 */
int
fy_rows_refetch_done(ferry *db, FyShape *s)
{
	sqlite3_stmt *st;
	int			rc;

	if (sqlite3_prepare_v2(db->db, "UPDATE ferry_base SET deleted = 1, stale = 0 WHERE tbl = ? AND stale = 1", -1,
						   &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot update ferry_base");
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot update ferry_base");
	sqlite3_finalize(st);
	if (rc == FERRY_OK)
		rc = refresh_all(db, s, FERRY_ORIGIN_SERVER);
	s->refetch = false;
	return rc;
}
