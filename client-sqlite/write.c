/*
 * client-sqlite/write.c -- local writes: the mirror and the queue in one transaction.
 *
 * ferry_insert/update/delete check the write against the shape's columns, record what
 * the edit was based on (the visible values: the "old" of each changed column, and the
 * row's ferry_version), give the row a merge base if it has none, append the mutation
 * to ferry_queue with a UUIDv7 id and a hybrid logical clock, and compute the visible
 * row again (rows.c) — all in one SQLite transaction, so a crash leaves either the
 * whole write or nothing.
 *
 * The clock is "<ms>-<counter>-<client id>": above the wall clock and above every clock
 * this client issued or saw in a server row's ferry_clock, so an edit made after seeing
 * a value always wins last-writer-wins against that value.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- ids and clocks ---------------------------------------------------------------- */

/* fy_uuid7 writes a new UUIDv7 (RFC 9562: Unix ms, version 7, variant 10, random). */
void
fy_uuid7(char out[37])
{
	uint8_t		b[16];
	uint64_t	ms = (uint64_t) fy_now_ms();

	fy_random(b, sizeof(b));
	for (int i = 0; i < 6; i++)
		b[i] = (uint8_t) (ms >> (40 - 8 * i));
	b[6] = (uint8_t) (0x70 | (b[6] & 0x0f));
	b[8] = (uint8_t) (0x80 | (b[8] & 0x3f));
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* fy_hlc_observe moves the clock past (ms, n) if that is ahead of it. */
void
fy_hlc_observe(ferry *db, int64_t ms, int64_t n)
{
	/* a clock a year ahead is garbage, not a server's clock */
	if (ms > fy_now_ms() + 366LL * 86400 * 1000)
		return;
	if (ms > db->hlc_ms || (ms == db->hlc_ms && n > db->hlc_n))
	{
		db->hlc_ms = ms;
		db->hlc_n = n;
		db->hlc_dirty = true;
	}
}

/*
 * fy_hlc_observe_text observes every clock "<ms>-<n>-..." in text: one clock, or a
 * ferry_clock object {"col": "<ms>-<n>-<node>", ...}.
 */
void
fy_hlc_observe_text(ferry *db, const char *text)
{
	const char *p = text;

	while (p != NULL && *p)
	{
		if (*p >= '0' && *p <= '9' && (p == text || p[-1] == '"' || p[-1] == ' '))
		{
			char	   *end;
			long long	ms = strtoll(p, &end, 10);

			if (*end == '-' && end[1] >= '0' && end[1] <= '9')
			{
				long long	n = strtoll(end + 1, &end, 10);

				if (*end == '-')
					fy_hlc_observe(db, ms, n);
			}
			p = end;
			continue;
		}
		p++;
	}
}

/* fy_hlc_next issues the next clock into out. */
void
fy_hlc_next(ferry *db, char *out, size_t outlen)
{
	int64_t		now = fy_now_ms();

	if (now > db->hlc_ms)
	{
		db->hlc_ms = now;
		db->hlc_n = 0;
	}
	else
		db->hlc_n++;
	db->hlc_dirty = true;
	snprintf(out, outlen, "%lld-%lld-%s", (long long) db->hlc_ms, (long long) db->hlc_n, db->client_id);
}

/* fy_queue_has: 1 when the queue holds a mutation for the row, 0 not, -1 error. */
int
fy_queue_has(ferry *db, const char *tbl, const char *row_key)
{
	sqlite3_stmt *st = fy_cached(db, FY_Q_QUEUE_HAS, "SELECT 1 FROM ferry_queue WHERE tbl = ? AND row_key = ? LIMIT 1");
	int			rc;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, row_key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* ---- local writes ------------------------------------------------------------------ */

/* The shape of a table the app writes to, with its columns known. */
static int
writable_shape(ferry *db, const char *table, FyShape **out)
{
	FyShape    *s = fy_shape_find(db, table);

	*out = NULL;
	if (table == NULL)
		return fy_err(db, FERRY_MISUSE, "no table given");
	if (s == NULL)
		return fy_err(db, FERRY_NOTFOUND, "%s is not subscribed: call ferry_subscribe first", table);
	if (s->ncols == 0 || s->st_upsert == NULL)
		return fy_err(db, FERRY_NOTFOUND, "the columns of %s are not known yet: sync once (online) after "
					  "subscribing, then write", s->tbl);
	*out = s;
	return FERRY_OK;
}

/* A column the app may write, or -1 with db->errmsg set. */
static int
writable_column(ferry *db, const FyShape *s, const char *name)
{
	int			i = fy_shape_column(s, name);

	if (i < 0)
	{
		fy_err(db, FERRY_INVALID, "%s has no column \"%s\"%s", s->tbl, name,
			   s->columns[0] ? " in its subscribed column list" : "");
		return -1;
	}
	if (strncmp(name, FY_RESERVED_PREFIX, strlen(FY_RESERVED_PREFIX)) == 0)
	{
		fy_err(db, FERRY_INVALID, "column \"%s\" is maintained by ferry and cannot be written", name);
		return -1;
	}
	return i;
}

/* Parses the app's JSON object of values. */
static int
parse_object(ferry *db, const char *text, const char *what, json_t **out)
{
	json_error_t jerr;

	*out = text ? json_loads(text, 0, &jerr) : NULL;
	if (text == NULL)
		return fy_err(db, FERRY_MISUSE, "no %s given", what);
	if (*out == NULL)
		return fy_err(db, FERRY_INVALID, "the %s are not valid JSON: %s (at character %d)", what, jerr.text,
					  jerr.position);
	if (!json_is_object(*out))
	{
		json_decref(*out);
		*out = NULL;
		return fy_err(db, FERRY_INVALID, "the %s must be a JSON object {\"column\": value, ...}", what);
	}
	return FERRY_OK;
}

/* Appends a mutation to the queue (in the caller's transaction). */
static int
enqueue(ferry *db, FyShape *s, const char *row_key, const char *op, const json_t *changes, int64_t base_version,
		char id[37])
{
	sqlite3_stmt *st;
	char		clock[128];
	char	   *ctext = fy_json_dump(changes);
	int			rc;

	if (ctext == NULL)
		return fy_err(db, FERRY_NOMEM, "out of memory");
	if ((rc = fy_base_ensure(db, s, row_key)) != FERRY_OK)
	{
		free(ctext);
		return rc;
	}
	fy_uuid7(id);
	fy_hlc_next(db, clock, sizeof(clock));
	if ((st = fy_cached(db, FY_Q_QUEUE_INSERT,
						"INSERT INTO ferry_queue (id, tbl, row_key, op, changes, base_version, clock, "
						"created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")) == NULL)
	{
		free(ctext);
		return FERRY_DB;
	}
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, s->tbl, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, row_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, op, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, ctext, -1, SQLITE_STATIC);
	if (base_version > 0)
		sqlite3_bind_int64(st, 6, base_version);
	sqlite3_bind_text(st, 7, clock, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, fy_now_ms());
	rc = sqlite3_step(st);
	free(ctext);
	rc = rc == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot append to the queue");
	sqlite3_reset(st);
	if (rc != FERRY_OK)
		return rc;
	/* the clock is saved by the engine (fy_hlc_save); the queue entry holds it meanwhile */
	return fy_row_refresh(db, s, row_key, FERRY_ORIGIN_LOCAL);
}

/* Ends a local write: commit (or roll back), hand out the id, wake the engine. */
static int
finish_write(ferry *db, int rc, const char *id, char **mutation_id, char **errmsg)
{
	if (mutation_id != NULL)
		*mutation_id = NULL;
	if (rc == FERRY_OK)
		rc = fy_commit(db);
	else
		fy_rollback(db);
	if (rc == FERRY_OK && mutation_id != NULL && id != NULL && id[0])
		*mutation_id = fy_strdup(id);
	if (rc == FERRY_OK)
		db->sync.next_send_at = 0;	/* something new to send */
	return fy_finish(db, rc, errmsg);
}

int
ferry_insert(ferry *db, const char *table, const char *values, char **mutation_id, char **errmsg)
{
	FyShape    *s;
	json_t	   *obj = NULL;
	json_t	   *changes = NULL;
	json_t	   *row = NULL;
	char	   *row_key = NULL;
	char		id[37] = "";
	int			rc;
	const char *col;
	json_t	   *v;

	if (mutation_id != NULL)
		*mutation_id = NULL;
	if ((rc = writable_shape(db, table, &s)) != FERRY_OK || (rc = parse_object(db, values, "values", &obj)) != FERRY_OK)
		return fy_finish(db, rc, errmsg);
	changes = json_object();
	json_object_foreach(obj, col, v)
	{
		char		err[512];
		char	   *text;
		int			i = writable_column(db, s, col);

		if (i < 0)
		{
			rc = FERRY_INVALID;
			break;
		}
		if ((rc = fy_json_to_text(v, &s->cols[i], &text, err, sizeof(err))) != FERRY_OK)
		{
			fy_err(db, rc, "%s", err);
			break;
		}
		json_object_set_new(changes, col, json_pack("{s:o}", "new", fy_text_json(text)));
		free(text);
	}
	if (rc == FERRY_OK)
		rc = fy_key_from_values(db, s, obj, &row_key);
	if (rc == FERRY_OK && (rc = fy_begin(db)) == FERRY_OK)
	{
		if ((rc = fy_row_read(db, s, row_key, &row, NULL)) == FERRY_OK && row != NULL)
		{
			char	   *k = fy_key_object(s, row_key);

			rc = fy_err(db, FERRY_INVALID, "%s already has a row with key %s: update it instead", s->tbl, k ? k : "");
			free(k);
		}
		if (rc == FERRY_OK)
			rc = enqueue(db, s, row_key, "insert", changes, 0, id);
		rc = finish_write(db, rc, id, mutation_id, errmsg);
	}
	else
		rc = fy_finish(db, rc, errmsg);
	json_decref(row);
	json_decref(obj);
	json_decref(changes);
	free(row_key);
	return rc;
}

int
ferry_update(ferry *db, const char *table, const char *key, const char *changes_json, char **mutation_id,
			 char **errmsg)
{
	FyShape    *s;
	json_t	   *obj = NULL;
	json_t	   *changes = NULL;
	json_t	   *row = NULL;
	char	   *row_key = NULL;
	int64_t		version = 0;
	char		id[37] = "";
	int			rc;
	const char *col;
	json_t	   *v;

	if (mutation_id != NULL)
		*mutation_id = NULL;
	if ((rc = writable_shape(db, table, &s)) != FERRY_OK ||
		(rc = parse_object(db, changes_json, "changes", &obj)) != FERRY_OK)
		return fy_finish(db, rc, errmsg);
	if ((rc = fy_key_parse(db, s, key, &row_key)) != FERRY_OK || (rc = fy_begin(db)) != FERRY_OK)
	{
		json_decref(obj);
		free(row_key);
		return fy_finish(db, rc, errmsg);
	}
	if ((rc = fy_row_read(db, s, row_key, &row, &version)) == FERRY_OK && row == NULL)
		rc = fy_err(db, FERRY_NOTFOUND, "%s has no row with key %s", s->tbl, key);
	changes = json_object();
	if (rc == FERRY_OK)
	{
		json_object_foreach(obj, col, v)
		{
			char		err[512];
			char	   *text;
			const char *old;
			int			i = writable_column(db, s, col);

			if (i < 0)
			{
				rc = FERRY_INVALID;
				break;
			}
			if ((rc = fy_json_to_text(v, &s->cols[i], &text, err, sizeof(err))) != FERRY_OK)
			{
				fy_err(db, rc, "%s", err);
				break;
			}
			old = json_string_value(json_object_get(row, col));
			if (!fy_text_equal(old, text))
			{
				if (s->cols[i].key)
				{
					free(text);
					rc = fy_err(db, FERRY_INVALID, "key column \"%s\" cannot change: delete the row and insert "
								"a new one", col);
					break;
				}
				json_object_set_new(changes, col, json_pack("{s:o,s:o}", "old", fy_text_json(old), "new",
															fy_text_json(text)));
			}
			free(text);
		}
	}
	if (rc == FERRY_OK && json_object_size(changes) > 0)
		rc = enqueue(db, s, row_key, "update", changes, version, id);
	rc = finish_write(db, rc, id, mutation_id, errmsg);
	json_decref(row);
	json_decref(obj);
	json_decref(changes);
	free(row_key);
	return rc;
}

int
ferry_delete(ferry *db, const char *table, const char *key, char **mutation_id, char **errmsg)
{
	FyShape    *s;
	json_t	   *row = NULL;
	json_t	   *changes = json_object();
	char	   *row_key = NULL;
	int64_t		version = 0;
	char		id[37] = "";
	int			rc;

	if (mutation_id != NULL)
		*mutation_id = NULL;
	if ((rc = writable_shape(db, table, &s)) != FERRY_OK || (rc = fy_key_parse(db, s, key, &row_key)) != FERRY_OK ||
		(rc = fy_begin(db)) != FERRY_OK)
	{
		json_decref(changes);
		free(row_key);
		return fy_finish(db, rc, errmsg);
	}
	if ((rc = fy_row_read(db, s, row_key, &row, &version)) == FERRY_OK && row == NULL)
		rc = fy_err(db, FERRY_NOTFOUND, "%s has no row with key %s", s->tbl, key);
	if (rc == FERRY_OK)
		rc = enqueue(db, s, row_key, "delete", changes, version, id);
	rc = finish_write(db, rc, id, mutation_id, errmsg);
	json_decref(row);
	json_decref(changes);
	free(row_key);
	return rc;
}
