/*
 * client-sqlite/shape.c -- shapes (ferry_shapes) and their mirror tables.
 *
 * A shape is a table, an optional WHERE and an optional column list; it lives in
 * ferry_shapes with its handle and offset, so a restarted app resumes where it left
 * off. Its mirror table is created from the columns of the server's Subscribed
 * message: one SQLite column per Postgres column (INTEGER for integers and booleans,
 * REAL for floats, TEXT for the rest; values.c), a column ferry_version, and the same
 * primary key. When the server's columns change, the mirror is dropped and created
 * again (its rows are refetched anyway).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int	prepare_statements(ferry *db, FyShape *s);
static char *cat(char *s, const char *fmt, ...) FY_PRINTF(2, 3);

/* ---- memory ------------------------------------------------------------------------ */

static void
columns_free(FyShape *s)
{
	for (int i = 0; i < s->ncols; i++)
	{
		free(s->cols[i].name);
		free(s->cols[i].type);
	}
	free(s->cols);
	free(s->keys);
	s->cols = NULL;
	s->keys = NULL;
	s->ncols = s->nkeys = 0;
	s->version_col = s->clock_col = -1;
}

/* fy_shape_finalize drops the prepared statements on the mirror. */
void
fy_shape_finalize(FyShape *s)
{
	sqlite3_finalize(s->st_upsert);
	sqlite3_finalize(s->st_delete);
	sqlite3_finalize(s->st_select);
	s->st_upsert = s->st_delete = s->st_select = NULL;
}

static void
shape_free(FyShape *s)
{
	if (s == NULL)
		return;
	fy_shape_finalize(s);
	columns_free(s);
	free(s->tbl);
	free(s->mirror);
	free(s->where);
	free(s->columns);
	free(s->handle);
	free(s->offset);
	free(s->error);
	free(s);
}

void
fy_shapes_free(ferry *db)
{
	for (int i = 0; i < db->nshapes; i++)
		shape_free(db->shapes[i]);
	free(db->shapes);
	db->shapes = NULL;
	db->nshapes = 0;
}

/* Fills s->cols and friends from the stored schema JSON. */
static void
columns_from_json(FyShape *s, const char *schema)
{
	json_t	   *arr = schema ? json_loads(schema, 0, NULL) : NULL;
	size_t		i;
	json_t	   *c;

	columns_free(s);
	if (!json_is_array(arr) || json_array_size(arr) == 0)
	{
		json_decref(arr);
		return;
	}
	s->cols = calloc(json_array_size(arr), sizeof(FyColumn));
	s->keys = calloc(json_array_size(arr), sizeof(int));
	json_array_foreach(arr, i, c)
	{
		FyColumn   *col = &s->cols[s->ncols];

		col->name = fy_strdup(json_string_value(json_object_get(c, "name")));
		col->type = fy_strdup(json_string_value(json_object_get(c, "type")));
		col->oid = (uint32_t) json_integer_value(json_object_get(c, "oid"));
		col->key = json_is_true(json_object_get(c, "key"));
		col->not_null = json_is_true(json_object_get(c, "not_null"));
		if (col->name == NULL || col->type == NULL)
		{
			free(col->name);
			free(col->type);
			continue;
		}
		fy_column_classify(col);
		if (col->key)
			s->keys[s->nkeys++] = s->ncols;
		if (strcmp(col->name, FY_VERSION_COLUMN) == 0)
			s->version_col = s->ncols;
		if (strcmp(col->name, FY_CLOCK_COLUMN) == 0)
			s->clock_col = s->ncols;
		s->ncols++;
	}
	json_decref(arr);
}

/* Appends the shapes of ferry_shapes to db->shapes: all, or the one with id only_id. */
static int
load_shapes(ferry *db, int64_t only_id)
{
	sqlite3_stmt *st;
	int			rc;

	if (sqlite3_prepare_v2(db->db, "SELECT id, tbl, mirror, where_sql, columns, handle, offset, schema, refetch, "
						   "last_sync_ms, error FROM ferry_shapes WHERE ?1 = 0 OR id = ?1 ORDER BY id", -1, &st,
						   NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot read ferry_shapes");
	sqlite3_bind_int64(st, 1, only_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
	{
		FyShape    *s = calloc(1, sizeof(FyShape));
		FyShape   **ns = realloc(db->shapes, sizeof(FyShape *) * (db->nshapes + 1));

		if (s == NULL || ns == NULL)
		{
			free(s);
			sqlite3_finalize(st);
			return fy_err(db, FERRY_NOMEM, "out of memory");
		}
		db->shapes = ns;
		s->version_col = s->clock_col = -1;
		s->id = sqlite3_column_int64(st, 0);
		s->tbl = fy_strdup((const char *) sqlite3_column_text(st, 1));
		s->mirror = fy_strdup((const char *) sqlite3_column_text(st, 2));
		s->where = fy_strdup((const char *) sqlite3_column_text(st, 3));
		s->columns = fy_strdup((const char *) sqlite3_column_text(st, 4));
		s->handle = fy_strdup((const char *) sqlite3_column_text(st, 5));
		s->offset = fy_strdup((const char *) sqlite3_column_text(st, 6));
		columns_from_json(s, (const char *) sqlite3_column_text(st, 7));
		s->refetch = sqlite3_column_int(st, 8) != 0;
		s->last_sync_ms = sqlite3_column_int64(st, 9);
		s->error = sqlite3_column_type(st, 10) == SQLITE_NULL ? NULL :
			fy_strdup((const char *) sqlite3_column_text(st, 10));
		db->shapes[db->nshapes++] = s;
		/* a mirror that cannot be used (dropped by hand?) is made again at the next Subscribed */
		if (s->ncols > 0 && prepare_statements(db, s) != FERRY_OK)
			columns_free(s);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fy_sqlerr(db, "cannot read ferry_shapes");
	return FERRY_OK;
}

/* fy_shapes_load reads ferry_shapes into db->shapes (per-connection state starts afresh). */
int
fy_shapes_load(ferry *db)
{
	fy_shapes_free(db);
	return load_shapes(db, 0);
}

/* fy_table_normalize returns "schema.table" for "table" or "schema.table" (malloc'd). */
char *
fy_table_normalize(const char *table)
{
	if (strchr(table, '.') != NULL)
		return fy_strdup(table);
	return fy_sprintf("public.%s", table);
}

FyShape *
fy_shape_find(ferry *db, const char *table)
{
	char	   *t;

	if (table == NULL)
		return NULL;
	t = fy_table_normalize(table);
	for (int i = 0; t != NULL && i < db->nshapes; i++)
		if (strcmp(db->shapes[i]->tbl, t) == 0 || strcmp(db->shapes[i]->mirror, table) == 0)
		{
			free(t);
			return db->shapes[i];
		}
	free(t);
	return NULL;
}

FyShape *
fy_shape_by_id(ferry *db, int64_t id)
{
	for (int i = 0; i < db->nshapes; i++)
		if (db->shapes[i]->id == id)
			return db->shapes[i];
	return NULL;
}

/* fy_shape_column returns the index of column `name`, or -1. */
int
fy_shape_column(const FyShape *s, const char *name)
{
	for (int i = 0; i < s->ncols; i++)
		if (strcmp(s->cols[i].name, name) == 0)
			return i;
	return -1;
}

/*
 * fy_shape_save_position stores handle, offset, refetch, last sync and error -- only if
 * the shape in the file still has the WHERE and columns this handle knows: if another
 * process changed them (ferry_subscribe there), the rows and offset are no longer this
 * connection's to write, and FERRY_BUSY says so (the engine then reloads and reconnects).
 */
int
fy_shape_save_position(ferry *db, FyShape *s)
{
	sqlite3_stmt *st;
	int			rc;

	if (sqlite3_prepare_v2(db->db, "UPDATE ferry_shapes SET handle = ?, offset = ?, refetch = ?, last_sync_ms = ?, "
						   "error = ? WHERE id = ? AND where_sql = ? AND columns = ?", -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot update ferry_shapes");
	sqlite3_bind_text(st, 1, s->handle ? s->handle : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, s->offset ? s->offset : "-1", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, s->refetch);
	sqlite3_bind_int64(st, 4, s->last_sync_ms);
	if (s->error)
		sqlite3_bind_text(st, 5, s->error, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 5);
	sqlite3_bind_int64(st, 6, s->id);
	sqlite3_bind_text(st, 7, s->where, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, s->columns, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fy_sqlerr(db, "cannot update ferry_shapes");
	if (sqlite3_changes(db->db) == 0)
		return fy_err(db, FERRY_BUSY, "the subscription to %s was changed or removed by another process", s->tbl);
	return FERRY_OK;
}

/*
 * fy_shapes_signature returns the shapes' definitions (id, table, WHERE, columns) as one
 * string (malloc'd): from memory, or, with from_file, from ferry_shapes.
 */
char *
fy_shapes_signature(ferry *db, bool from_file)
{
	char	   *sig = fy_strdup("");

	if (from_file)
	{
		sqlite3_stmt *st;

		if (sqlite3_prepare_v2(db->db, "SELECT id, tbl, where_sql, columns FROM ferry_shapes ORDER BY id", -1, &st,
							   NULL) != SQLITE_OK)
			return sig;
		while (sig != NULL && sqlite3_step(st) == SQLITE_ROW)
			sig = cat(sig, "%lld\x01%s\x01%s\x01%s\x02", (long long) sqlite3_column_int64(st, 0),
					  (const char *) sqlite3_column_text(st, 1), (const char *) sqlite3_column_text(st, 2),
					  (const char *) sqlite3_column_text(st, 3));
		sqlite3_finalize(st);
		return sig;
	}
	for (int i = 0; i < db->nshapes && sig != NULL; i++)
		sig = cat(sig, "%lld\x01%s\x01%s\x01%s\x02", (long long) db->shapes[i]->id, db->shapes[i]->tbl,
				  db->shapes[i]->where, db->shapes[i]->columns);
	return sig;
}

/* ---- mirror tables ----------------------------------------------------------------- */

static const char *
affinity(const FyColumn *c)
{
	switch (c->kind)
	{
		case FY_INT:
		case FY_BOOL:
			return "INTEGER";
		case FY_REAL:
			return "REAL";
		default:
			return "TEXT";
	}
}

/* Appends text to a growing string; on failure frees it and returns NULL. */
static char *
cat(char *s, const char *fmt, ...)
{
	va_list		ap;
	char	   *add = NULL;
	char	   *out;

	if (s == NULL)
		return NULL;
	va_start(ap, fmt);
	if (vasprintf(&add, fmt, ap) < 0)
		add = NULL;
	va_end(ap);
	if (add == NULL)
	{
		free(s);
		return NULL;
	}
	out = fy_sprintf("%s%s", s, add);
	free(s);
	free(add);
	return out;
}

/* Builds the shape's statements on its mirror. */
static int
prepare_statements(ferry *db, FyShape *s)
{
	char	   *m = fy_quote_ident(s->mirror);
	char	   *ins = fy_sprintf("INSERT INTO %s (", m);
	char	   *vals = fy_strdup(") VALUES (");
	char	   *upd = fy_strdup(") DO UPDATE SET ");
	char	   *conflict = fy_strdup(") ON CONFLICT (");
	char	   *sel = fy_strdup("SELECT ");
	char	   *where = fy_strdup(" WHERE ");
	char	   *sql;
	int			rc = FERRY_OK;

	fy_shape_finalize(s);
	for (int i = 0; i <= s->ncols; i++)
	{
		const char *name = i < s->ncols ? s->cols[i].name : FY_VERSION_COLUMN;
		char	   *q;

		if (i == s->ncols && s->version_col >= 0)
			break;
		q = fy_quote_ident(name);
		ins = cat(ins, "%s%s", i ? ", " : "", q);
		vals = cat(vals, "%s?", i ? ", " : "");
		sel = cat(sel, "%s%s", i ? ", " : "", q);
		upd = cat(upd, "%s%s = excluded.%s", i ? ", " : "", q, q);
		free(q);
	}
	for (int k = 0; k < s->nkeys; k++)
	{
		char	   *q = fy_quote_ident(s->cols[s->keys[k]].name);

		conflict = cat(conflict, "%s%s", k ? ", " : "", q);
		where = cat(where, "%s%s = ?", k ? " AND " : "", q);
		free(q);
	}
	sql = (ins && vals && conflict && upd) ? fy_sprintf("%s%s%s%s", ins, vals, conflict, upd) : NULL;
	if (sql == NULL || sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st_upsert, NULL) != SQLITE_OK)
		rc = sql ? fy_sqlerr(db, "cannot prepare the mirror's upsert") : fy_err(db, FERRY_NOMEM, "out of memory");
	free(sql);
	sql = (where && m) ? fy_sprintf("DELETE FROM %s%s", m, where) : NULL;
	if (rc == FERRY_OK && (sql == NULL ||
						   sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st_delete, NULL) != SQLITE_OK))
		rc = sql ? fy_sqlerr(db, "cannot prepare the mirror's delete") : fy_err(db, FERRY_NOMEM, "out of memory");
	free(sql);
	sql = (sel && where && m) ? fy_sprintf("%s FROM %s%s", sel, m, where) : NULL;
	if (rc == FERRY_OK && (sql == NULL ||
						   sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st_select, NULL) != SQLITE_OK))
		rc = sql ? fy_sqlerr(db, "cannot prepare the mirror's select") : fy_err(db, FERRY_NOMEM, "out of memory");
	free(sql);
	free(m);
	free(ins);
	free(vals);
	free(upd);
	free(conflict);
	free(sel);
	free(where);
	if (rc != FERRY_OK)
		fy_shape_finalize(s);
	return rc;
}

/* (Re)creates the mirror table for the shape's current columns (rows are lost). */
static int
create_mirror(ferry *db, FyShape *s)
{
	char	   *m = fy_quote_ident(s->mirror);
	char	   *sql = fy_sprintf("DROP TABLE IF EXISTS %s; CREATE TABLE %s (", m, m);
	int			rc;

	fy_shape_finalize(s);
	for (int i = 0; i < s->ncols; i++)
	{
		char	   *q = fy_quote_ident(s->cols[i].name);

		sql = cat(sql, "%s%s %s", i ? ", " : "", q, affinity(&s->cols[i]));
		free(q);
	}
	if (s->version_col < 0)
		sql = cat(sql, ", %s INTEGER", FY_VERSION_COLUMN);
	sql = cat(sql, ", PRIMARY KEY (");
	for (int k = 0; k < s->nkeys; k++)
	{
		char	   *q = fy_quote_ident(s->cols[s->keys[k]].name);

		sql = cat(sql, "%s%s", k ? ", " : "", q);
		free(q);
	}
	sql = cat(sql, "))");
	free(m);
	if (sql == NULL)
		return fy_err(db, FERRY_NOMEM, "out of memory");
	rc = fy_exec(db, sql);
	free(sql);
	if (rc != FERRY_OK)
		return fy_err(db, rc, "cannot create the mirror table \"%s\" of %s: %s", s->mirror, s->tbl,
					  sqlite3_errmsg(db->db));
	return prepare_statements(db, s);
}

static bool
mirror_exists(ferry *db, const FyShape *s)
{
	sqlite3_stmt *st;
	bool		found = false;

	if (sqlite3_prepare_v2(db->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1, &st,
						   NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(st, 1, s->mirror, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return found;
}

/*
 * fy_shape_set_columns takes the columns of a Subscribed message. When they differ from
 * the stored ones (or the mirror is missing) it stores them and creates the mirror table
 * afresh, setting *changed: the mirror is then empty and the caller refetches. Runs in
 * the caller's transaction.
 */
int
fy_shape_set_columns(ferry *db, FyShape *s, Ferry__V1__Column **cols, size_t n, bool *changed)
{
	json_t	   *arr = json_array();
	char	   *schema;
	bool		same = (size_t) s->ncols == n;
	sqlite3_stmt *st;
	int			rc;

	*changed = false;
	for (size_t i = 0; i < n; i++)
	{
		json_t	   *c = json_object();

		json_object_set_new(c, "name", json_string(cols[i]->name));
		json_object_set_new(c, "type", json_string(cols[i]->type));
		json_object_set_new(c, "oid", json_integer(cols[i]->type_oid));
		json_object_set_new(c, "key", json_boolean(cols[i]->key));
		json_object_set_new(c, "not_null", json_boolean(cols[i]->not_null));
		json_array_append_new(arr, c);
		if (same && (strcmp(s->cols[i].name, cols[i]->name) != 0 || strcmp(s->cols[i].type, cols[i]->type) != 0 ||
					 s->cols[i].key != (bool) cols[i]->key))
			same = false;
	}
	if (same && mirror_exists(db, s))
	{
		json_decref(arr);
		if (s->st_upsert == NULL)
			return prepare_statements(db, s);
		return FERRY_OK;
	}
	schema = fy_json_dump(arr);
	json_decref(arr);
	if (schema == NULL)
		return fy_err(db, FERRY_NOMEM, "out of memory");
	columns_from_json(s, schema);
	if (s->nkeys == 0)
	{
		free(schema);
		return fy_err(db, FERRY_PROTOCOL, "the server sent the columns of %s without a primary key", s->tbl);
	}
	if (sqlite3_prepare_v2(db->db, "UPDATE ferry_shapes SET schema = ? WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
	{
		free(schema);
		return fy_sqlerr(db, "cannot update ferry_shapes");
	}
	sqlite3_bind_text(st, 1, schema, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, s->id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	free(schema);
	if (rc != SQLITE_DONE)
		return fy_sqlerr(db, "cannot update ferry_shapes");
	*changed = true;
	return create_mirror(db, s);
}

/* ---- the API ----------------------------------------------------------------------- */

int
ferry_subscribe(ferry *db, const char *table, const char *where, const char *columns, char **errmsg)
{
	char	   *tbl;
	char	   *mirror;
	FyShape    *s;
	int			rc;

	if (table == NULL || table[0] == '\0' || table[0] == '.' || table[strlen(table) - 1] == '.')
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "ferry_subscribe needs a table name"), errmsg);
	where = where ? where : "";
	columns = columns ? columns : "";
	tbl = fy_table_normalize(table);
	mirror = strncmp(tbl, "public.", 7) == 0 ? fy_strdup(tbl + 7) : fy_strdup(tbl);
	if (tbl == NULL || mirror == NULL)
	{
		free(tbl);
		free(mirror);
		return fy_finish(db, fy_err(db, FERRY_NOMEM, "out of memory"), errmsg);
	}
	if (strncmp(mirror, FY_RESERVED_PREFIX, strlen(FY_RESERVED_PREFIX)) == 0 || strncmp(mirror, "sqlite_", 7) == 0)
	{
		rc = fy_err(db, FERRY_INVALID, "table %s cannot be mirrored: names starting with ferry_ or sqlite_ are "
					"reserved in the local file", tbl);
		free(tbl);
		free(mirror);
		return fy_finish(db, rc, errmsg);
	}
	s = fy_shape_find(db, tbl);
	if (s != NULL)
	{
		free(tbl);
		free(mirror);
		if ((rc = fy_begin(db)) != FERRY_OK)
			return fy_finish(db, rc, errmsg);
		free(s->error);
		s->error = NULL;
		s->attempts = 0;
		s->retry_at = 0;
		if (strcmp(s->where, where) != 0 || strcmp(s->columns, columns) != 0)
		{
			sqlite3_stmt *st;

			/* Another definition: the rows held are not this shape's. */
			if (sqlite3_prepare_v2(db->db, "UPDATE ferry_shapes SET where_sql = ?, columns = ? WHERE id = ?", -1,
								   &st, NULL) != SQLITE_OK)
			{
				fy_rollback(db);
				return fy_finish(db, fy_sqlerr(db, "cannot update ferry_shapes"), errmsg);
			}
			sqlite3_bind_text(st, 1, where, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, columns, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, s->id);
			rc = sqlite3_step(st) == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot update ferry_shapes");
			sqlite3_finalize(st);
			if (rc == FERRY_OK)
			{
				free(s->where);
				free(s->columns);
				s->where = fy_strdup(where);
				s->columns = fy_strdup(columns);
				rc = fy_rows_drop(db, s);
			}
		}
		else
			rc = fy_shape_save_position(db, s);
		if (rc != FERRY_OK)
		{
			fy_rollback(db);
			return fy_finish(db, rc, errmsg);
		}
		if ((rc = fy_commit(db)) == FERRY_OK)
			fy_sync_subscribe_now(db, s);
		return fy_finish(db, rc, errmsg);
	}

	{
		sqlite3_stmt *st;

		if (sqlite3_prepare_v2(db->db, "INSERT INTO ferry_shapes (tbl, mirror, where_sql, columns) VALUES (?, ?, ?, ?)",
							   -1, &st, NULL) != SQLITE_OK)
		{
			free(tbl);
			free(mirror);
			return fy_finish(db, fy_sqlerr(db, "cannot add to ferry_shapes"), errmsg);
		}
		sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, mirror, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, where, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, columns, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
		{
			rc = sqlite3_errcode(db->db) == SQLITE_CONSTRAINT ?
				fy_err(db, FERRY_INVALID, "another subscribed table already has the local name \"%s\"", mirror) :
				fy_sqlerr(db, "cannot add to ferry_shapes");
			free(tbl);
			free(mirror);
			return fy_finish(db, rc, errmsg);
		}
	}
	free(tbl);
	free(mirror);
	if ((rc = load_shapes(db, sqlite3_last_insert_rowid(db->db))) != FERRY_OK)
		return fy_finish(db, rc, errmsg);
	s = db->shapes[db->nshapes - 1];
	fy_sync_subscribe_now(db, s);
	fy_status_changed(db);
	return fy_finish(db, FERRY_OK, errmsg);
}

int
ferry_unsubscribe(ferry *db, const char *table, int flags, char **errmsg)
{
	FyShape    *s = fy_shape_find(db, table);
	sqlite3_stmt *st;
	int			n = 0;
	int			rc;
	char	   *m;
	char	   *sql;
	static const char *const cleanup[] = {
		"DELETE FROM ferry_queue WHERE tbl = ?",
		"DELETE FROM ferry_base WHERE tbl = ?",
		"DELETE FROM ferry_conflicts WHERE tbl = ?",
		"DELETE FROM ferry_partial WHERE tbl = ?",
		"DELETE FROM ferry_shapes WHERE tbl = ?",
	};

	if (s == NULL)
		return fy_finish(db, fy_err(db, FERRY_NOTFOUND, "%s is not subscribed", table ? table : "(null)"), errmsg);
	if (sqlite3_prepare_v2(db->db, "SELECT count(*) FROM ferry_queue WHERE tbl = ?", -1, &st, NULL) != SQLITE_OK)
		return fy_finish(db, fy_sqlerr(db, "cannot count the queue"), errmsg);
	sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (n > 0 && !(flags & FERRY_FORCE))
		return fy_finish(db, fy_err(db, FERRY_PENDING, "%d change%s to %s not synced yet; sync first, or "
									"unsubscribe with FERRY_FORCE to discard them", n, n == 1 ? "" : "s", s->tbl),
						 errmsg);
	if ((rc = fy_begin(db)) != FERRY_OK)
		return fy_finish(db, rc, errmsg);
	for (size_t i = 0; i < sizeof(cleanup) / sizeof(cleanup[0]) && rc == FERRY_OK; i++)
	{
		if (sqlite3_prepare_v2(db->db, cleanup[i], -1, &st, NULL) != SQLITE_OK)
		{
			rc = fy_sqlerr(db, "cannot unsubscribe");
			break;
		}
		sqlite3_bind_text(st, 1, s->tbl, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = fy_sqlerr(db, "cannot unsubscribe");
		sqlite3_finalize(st);
	}
	fy_shape_finalize(s);
	m = fy_quote_ident(s->mirror);
	sql = fy_sprintf("DROP TABLE IF EXISTS %s", m);
	if (rc == FERRY_OK)
		rc = fy_exec(db, sql);
	free(sql);
	free(m);
	if (rc != FERRY_OK)
	{
		fy_rollback(db);
		return fy_finish(db, rc, errmsg);
	}
	if ((rc = fy_commit(db)) != FERRY_OK)
		return fy_finish(db, rc, errmsg);
	/* the server: Unsubscribe; frames about the id until Unsubscribed are ignored */
	if (s->sent && db->sync.conn == FY_CONN_READY)
		fy_sync_unsubscribe(db, s->id);
	for (int i = 0; i < db->nshapes; i++)
		if (db->shapes[i] == s)
		{
			memmove(&db->shapes[i], &db->shapes[i + 1], sizeof(FyShape *) * (size_t) (db->nshapes - i - 1));
			db->nshapes--;
			break;
		}
	shape_free(s);
	fy_status_changed(db);
	return fy_finish(db, rc, errmsg);
}
