/*
 * client-sqlite/db.c -- the ferry handle: open/close, errors, meta, configuration, logout.
 *
 * A ferry handle owns one SQLite connection to one file. The file is in WAL mode with
 * synchronous=FULL by default: a local write is in the queue for good once
 * ferry_insert/update/delete returned, even across a power loss (with NORMAL, a power
 * loss may undo the last writes the user saw saved; an app crash loses nothing either
 * way). Every change of ferry's state happens in a transaction of its own (fy_begin /
 * fy_commit); row-change callbacks collected during a transaction run after its commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- errors ------------------------------------------------------------------------ */

/* fy_err records a message for db and returns rc. */
int
fy_err(ferry *db, int rc, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
	va_end(ap);
	return rc;
}

/* fy_sqlerr records SQLite's message, prefixed with what was being done. */
int
fy_sqlerr(ferry *db, const char *what)
{
	int			code = sqlite3_errcode(db->db);

	fy_err(db, FERRY_DB, "%s: %s%s", what, sqlite3_errmsg(db->db),
		   code == SQLITE_FULL ? " (free some disk space and try again)" :
		   code == SQLITE_BUSY ? " (another process holds the file locked; try again)" : "");
	return FERRY_DB;
}

/* fy_finish ends a public call: sets *errmsg from db->errmsg on failure, clears it on success. */
int
fy_finish(ferry *db, int rc, char **errmsg)
{
	if (rc == FERRY_OK)
		db->errmsg[0] = '\0';
	else if (db->errmsg[0] == '\0')
		snprintf(db->errmsg, sizeof(db->errmsg), "%s", ferry_errstr(rc));
	if (errmsg != NULL)
		*errmsg = rc == FERRY_OK ? NULL : fy_strdup(db->errmsg);
	return rc;
}

const char *
ferry_errmsg(ferry *db)
{
	return db == NULL ? "no ferry handle (ferry_open failed?)" : db->errmsg;
}

const char *
ferry_errstr(int rc)
{
	switch (rc)
	{
		case FERRY_OK:
			return "not an error";
		case FERRY_ERROR:
			return "error";
		case FERRY_MISUSE:
			return "bad arguments or call out of order";
		case FERRY_NOMEM:
			return "out of memory";
		case FERRY_NOTFOUND:
			return "not found";
		case FERRY_BUSY:
			return "busy";
		case FERRY_INVALID:
			return "invalid value, key or column";
		case FERRY_PENDING:
			return "mutations are pending";
		case FERRY_OFFLINE:
			return "the server could not be reached";
		case FERRY_AUTH:
			return "not authenticated";
		case FERRY_TIMEOUT:
			return "timed out";
		case FERRY_DB:
			return "database error";
		case FERRY_PROTOCOL:
			return "protocol error";
		default:
			return "unknown result code";
	}
}

void
ferry_free(void *p)
{
	free(p);
}

/* ---- small helpers ------------------------------------------------------------------- */

/*
 * fy_now_ms is the library's wall clock (ms since the epoch): clocks of writes, created_at,
 * retry times, last sync and ages. The environment variable FERRY_CLOCK_OFFSET_MS, when
 * set, is added to it -- a test hook that lets a test live hours of a device's time in
 * seconds (test/qa/s09_airplane_hours.c). Monotonic timers (fy_mono_ms) are not shifted.
 */
int64_t
fy_now_ms(void)
{
	struct timespec ts;
	const char *offset = getenv("FERRY_CLOCK_OFFSET_MS");	/* read each time: a test moves it */

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + (offset ? strtoll(offset, NULL, 10) : 0);
}

int64_t
fy_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* fy_random fills buf with n random bytes (getrandom; the clock as a last resort). */
void
fy_random(void *buf, size_t n)
{
	uint8_t    *p = buf;
	size_t		got = 0;

	while (got < n)
	{
		ssize_t		r = getrandom(p + got, n - got, 0);

		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		got += (size_t) r;
	}
	if (got < n)
	{
		uint64_t	x = (uint64_t) fy_mono_ms() ^ ((uint64_t) getpid() << 32) ^ (uint64_t) (uintptr_t) buf;

		for (; got < n; got++)
		{
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[got] = (uint8_t) x;
		}
	}
}

char *
fy_strdup(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}

char *
fy_sprintf(const char *fmt, ...)
{
	va_list		ap;
	char	   *out = NULL;

	va_start(ap, fmt);
	if (vasprintf(&out, fmt, ap) < 0)
		out = NULL;
	va_end(ap);
	return out;
}

/* ---- transactions and notes ---------------------------------------------------------- */

int
fy_exec(ferry *db, const char *sql)
{
	if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "SQLite statement failed");
	return FERRY_OK;
}

/*
 * fy_cached returns the statement of slot (prepared from sql the first time), reset and
 * with its bindings cleared; NULL when it cannot be prepared (db->errmsg says why).
 * The caller resets it after use, so that it holds no read snapshot.
 */
sqlite3_stmt *
fy_cached(ferry *db, FyStmt slot, const char *sql)
{
	sqlite3_stmt *st = db->cache[slot];

	if (st == NULL)
	{
		if (sqlite3_prepare_v3(db->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
		{
			fy_sqlerr(db, "cannot prepare a statement");
			return NULL;
		}
		db->cache[slot] = st;
		return st;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

static void
notes_free(ferry *db)
{
	FyNote	   *n = db->notes;

	while (n != NULL)
	{
		FyNote	   *next = n->next;

		free(n->table);
		free(n->key);
		free(n);
		n = next;
	}
	db->notes = NULL;
	db->notes_tail = &db->notes;
}

/* Calls the change callback for every note, then drops them. */
static void
notes_flush(ferry *db)
{
	FyNote	   *n = db->notes;

	db->notes = NULL;
	db->notes_tail = &db->notes;
	while (n != NULL)
	{
		FyNote	   *next = n->next;

		if (db->change_fn != NULL)
			db->change_fn(db->change_ctx, n->table, n->key, n->op, n->origin);
		free(n->table);
		free(n->key);
		free(n);
		n = next;
	}
}

/* fy_note records a change of a visible row, reported after the transaction commits. */
void
fy_note(ferry *db, const char *table, const char *key, int op, int origin)
{
	FyNote	   *n;

	if (db->change_fn == NULL)
		return;
	n = calloc(1, sizeof(FyNote));
	if (n == NULL)
		return;
	n->table = fy_strdup(table);
	n->key = fy_strdup(key);
	n->op = op;
	n->origin = origin;
	*db->notes_tail = n;
	db->notes_tail = &n->next;
	if (db->in_tx == 0)
		notes_flush(db);
}

/* fy_begin starts a write transaction (BEGIN IMMEDIATE); nests by counting. */
int
fy_begin(ferry *db)
{
	if (db->in_tx++ > 0)
		return FERRY_OK;
	if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
	{
		db->in_tx = 0;
		return fy_sqlerr(db, "cannot start a transaction");
	}
	return FERRY_OK;
}

/*
 * fy_begin_relaxed starts a transaction of the sync engine's own (rows received, results,
 * marks of what is in flight) whose commit does not wait for the disk when the file is at
 * synchronous=FULL: SQLite's WAL keeps commits in order, so a power loss can only lose the
 * last of them, and what they held comes back by itself -- rows are fetched again from
 * the offset that was lost with them, and a mutation whose result was lost is sent again
 * and answered `duplicate` with that result. Local writes keep waiting for the disk, and
 * their commit makes every earlier one durable too.
 */
static int apply_synchronous(ferry *db);

int
fy_begin_relaxed(ferry *db)
{
	if (db->in_tx == 0 && db->synchronous == 2 && fy_exec(db, "PRAGMA synchronous = NORMAL") == FERRY_OK)
		db->relaxed = true;
	return fy_begin(db);
}

/* Back to waiting for the disk after a relaxed transaction ended. */
static void
end_relaxed(ferry *db)
{
	if (db->relaxed)
	{
		db->relaxed = false;
		apply_synchronous(db);
	}
}

/*
 * fy_hlc_save writes the clock to ferry_meta when it moved since it was last written.
 * Local writes leave that to the engine's next transaction (or ferry_close): their clock
 * is in their queue entry, which opening the file reads too, and an entry leaves the
 * queue only in an engine transaction, which saves the clock with it.
 */
int
fy_hlc_save(ferry *db)
{
	char		clock[128];
	int			rc;

	if (!db->hlc_dirty)
		return FERRY_OK;
	snprintf(clock, sizeof(clock), "%lld-%lld-%s", (long long) db->hlc_ms, (long long) db->hlc_n, db->client_id);
	if ((rc = fy_meta_set(db, FY_META_HLC, clock)) == FERRY_OK)
		db->hlc_dirty = false;
	return rc;
}

/* fy_commit commits the outermost transaction and reports its changes. */
int
fy_commit(ferry *db)
{
	if (db->in_tx <= 0)
		return FERRY_OK;
	if (db->in_tx == 1 && db->relaxed)
	{
		int			rc = fy_hlc_save(db);

		if (rc != FERRY_OK)
		{
			fy_rollback(db);
			return rc;
		}
	}
	if (--db->in_tx > 0)
		return FERRY_OK;
	if (sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
	{
		int			rc = fy_sqlerr(db, "cannot commit");

		sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
		end_relaxed(db);
		notes_free(db);
		return rc;
	}
	end_relaxed(db);
	notes_flush(db);
	fy_status_changed(db);
	return FERRY_OK;
}

/* fy_rollback undoes the whole transaction, whatever the nesting. */
void
fy_rollback(ferry *db)
{
	if (db->in_tx <= 0)
		return;
	db->in_tx = 0;
	db->tx_aborts++;
	sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
	end_relaxed(db);
	notes_free(db);
}

/* ---- meta -------------------------------------------------------------------------- */

/* fy_meta_get sets *value to the meta value of key (malloc'd), or NULL when absent. */
int
fy_meta_get(ferry *db, const char *key, char **value)
{
	sqlite3_stmt *st;
	int			rc;

	*value = NULL;
	if (sqlite3_prepare_v2(db->db, "SELECT value FROM ferry_meta WHERE key = ?", -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot read ferry_meta");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		*value = fy_strdup((const char *) sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return fy_sqlerr(db, "cannot read ferry_meta");
	return FERRY_OK;
}

int
fy_meta_set(ferry *db, const char *key, const char *value)
{
	sqlite3_stmt *st;
	int			rc;

	if ((st = fy_cached(db, FY_Q_META_SET, "INSERT INTO ferry_meta (key, value) VALUES (?, ?) "
						"ON CONFLICT (key) DO UPDATE SET value = excluded.value")) == NULL)
		return FERRY_DB;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? FERRY_OK : fy_sqlerr(db, "cannot write ferry_meta");
	sqlite3_reset(st);
	return rc;
}

int
fy_meta_set_int(ferry *db, const char *key, int64_t value)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%lld", (long long) value);
	return fy_meta_set(db, key, buf);
}

/* ---- opening ----------------------------------------------------------------------- */

/*
 * fy_lock_open opens (creating it) the file "<path>-ferry-lock" that a syncing process
 * holds with flock(LOCK_EX). A file of its own, because closing any descriptor of the
 * database file itself would drop the POSIX locks SQLite holds on it. -1 on failure.
 */
int
fy_lock_open(ferry *db)
{
	char	   *lp = fy_sprintf("%s-ferry-lock", db->path);
	int			fd = lp ? open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;

	free(lp);
	return fd;
}

/* Reads the meta values the handle keeps in memory. */
static int
load_meta(ferry *db)
{
	char	   *v;
	int			rc;

	if ((rc = fy_meta_get(db, FY_META_CLIENT_ID, &v)) != FERRY_OK)
		return rc;
	snprintf(db->client_id, sizeof(db->client_id), "%s", v ? v : "");
	free(v);
	if ((rc = fy_meta_get(db, FY_META_USER_ID, &v)) != FERRY_OK)
		return rc;
	snprintf(db->user_id, sizeof(db->user_id), "%s", v ? v : "");
	free(v);
	if ((rc = fy_meta_get(db, FY_META_SCHEMA_VERSION, &v)) != FERRY_OK)
		return rc;
	db->schema_version = v ? strtoll(v, NULL, 10) : 0;
	free(v);
	if ((rc = fy_meta_get(db, FY_META_LAST_SYNC, &v)) != FERRY_OK)
		return rc;
	db->last_sync_ms = v ? strtoll(v, NULL, 10) : 0;
	free(v);
	/* the clock: the newest of memory, ferry_meta and the last queued mutation's */
	if ((rc = fy_meta_get(db, FY_META_HLC, &v)) != FERRY_OK)
		return rc;
	{
		bool		dirty = db->hlc_dirty;
		sqlite3_stmt *st;

		if (v != NULL)
			fy_hlc_observe_text(db, v);
		if (sqlite3_prepare_v2(db->db, "SELECT clock FROM ferry_queue ORDER BY seq DESC LIMIT 1", -1, &st,
							   NULL) != SQLITE_OK)
		{
			free(v);
			return fy_sqlerr(db, "cannot read ferry_queue");
		}
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
			fy_hlc_observe_text(db, (const char *) sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		db->hlc_dirty = dirty;
	}
	free(v);
	free(db->url);
	return fy_meta_get(db, FY_META_URL, &db->url);
}

/* Creates the ferry_* tables and the client id when missing. */
static int
init_schema(ferry *db)
{
	char	   *format = NULL;
	int			rc;

	if ((rc = fy_begin(db)) != FERRY_OK)
		return rc;
	if ((rc = fy_exec(db, FY_SCHEMA_SQL)) != FERRY_OK)
		goto fail;
	if ((rc = fy_meta_get(db, FY_META_FORMAT, &format)) != FERRY_OK)
		goto fail;
	if (format != NULL && strcmp(format, FY_FORMAT) != 0)
	{
		rc = fy_err(db, FERRY_ERROR, "%s was written by another version of libferry (file format %s, this "
					"library reads format %s); open it with that version, or log out to start afresh",
					db->path, format, FY_FORMAT);
		goto fail;
	}
	if (format == NULL)
	{
		char		id[37];

		fy_uuid7(id);
		if ((rc = fy_meta_set(db, FY_META_FORMAT, FY_FORMAT)) != FERRY_OK ||
			(rc = fy_meta_set(db, FY_META_CLIENT_ID, id)) != FERRY_OK)
			goto fail;
	}
	free(format);
	return fy_commit(db);
fail:
	free(format);
	fy_rollback(db);
	return rc;
}

/* fy_reload reads the meta values and the shapes from the file again. */
int
fy_reload(ferry *db)
{
	int			rc = load_meta(db);

	return rc == FERRY_OK ? fy_shapes_load(db) : rc;
}

static int
apply_synchronous(ferry *db)
{
	return fy_exec(db, db->synchronous == 1 ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL");
}

/* Opens db->path into db->db and loads everything. */
static int
open_file(ferry *db)
{
	int			rc;
	sqlite3_stmt *st;

	if (sqlite3_open_v2(db->path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
	{
		rc = fy_err(db, FERRY_DB, "cannot open %s: %s", db->path,
					db->db ? sqlite3_errmsg(db->db) : "out of memory");
		return rc;
	}
	sqlite3_busy_timeout(db->db, 5000);
	sqlite3_extended_result_codes(db->db, 0);
	/* WAL: readers (the app's queries) never block the engine's writes and vice versa. */
	if (sqlite3_prepare_v2(db->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) != SQLITE_OK)
		return fy_sqlerr(db, "cannot set WAL mode");
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW || strcmp((const char *) sqlite3_column_text(st, 0), "wal") != 0)
	{
		sqlite3_finalize(st);
		return fy_err(db, FERRY_DB, "cannot put %s in WAL mode (%s); is it on a file system without "
					  "shared memory, or read-only?", db->path, sqlite3_errmsg(db->db));
	}
	sqlite3_finalize(st);
	if ((rc = apply_synchronous(db)) != FERRY_OK)
		return rc;
	if ((rc = init_schema(db)) != FERRY_OK)
		return rc;
	if ((rc = load_meta(db)) != FERRY_OK)
		return rc;

	/*
	 * Mutations left in flight by a process that died: pending again (same ids), unless
	 * another process is syncing this file right now (it holds the lock).
	 */
	{
		int			fd = fy_lock_open(db);

		if (fd >= 0)
		{
			if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			{
				fy_exec(db, "UPDATE ferry_queue SET status = 'pending' WHERE status = 'inflight'");
				flock(fd, LOCK_UN);
			}
			close(fd);
		}
	}
	return fy_shapes_load(db);
}

static void
close_file(ferry *db)
{
	fy_shapes_free(db);
	for (int i = 0; i < FY_Q__COUNT; i++)
	{
		sqlite3_finalize(db->cache[i]);
		db->cache[i] = NULL;
	}
	if (db->db != NULL)
	{
		sqlite3_close_v2(db->db);
		db->db = NULL;
	}
}

int
ferry_open(const char *path, ferry **out, char **errmsg)
{
	ferry	   *db;
	int			rc;

	if (out == NULL)
		return FERRY_MISUSE;
	*out = NULL;
	if (errmsg != NULL)
		*errmsg = NULL;
	if (path == NULL || path[0] == '\0')
	{
		if (errmsg != NULL)
			*errmsg = fy_strdup("ferry_open needs the path of the database file");
		return FERRY_MISUSE;
	}
	db = calloc(1, sizeof(ferry));
	if (db == NULL)
	{
		if (errmsg != NULL)
			*errmsg = fy_strdup("out of memory");
		return FERRY_NOMEM;
	}
	db->path = fy_strdup(path);
	db->notes_tail = &db->notes;
	db->stale_after_ms = 24LL * 3600 * 1000;
	db->backoff_min_ms = 500;
	db->backoff_max_ms = 60000;
	db->max_batch = 100;
	db->max_retries = 0;
	db->connect_timeout_ms = 10000;
	db->synchronous = 2;
	db->max_inflight = 4;
	fy_sync_init(db);
	*out = db;
	rc = open_file(db);
	return fy_finish(db, rc, errmsg);
}

int
ferry_close(ferry *db)
{
	if (db == NULL)
		return FERRY_OK;
	fy_sync_close(db, NULL, false);
	if (db->in_tx > 0)
		fy_rollback(db);
	if (db->hlc_dirty && db->db != NULL && fy_begin(db) == FERRY_OK)
	{
		if (fy_hlc_save(db) == FERRY_OK)
			fy_commit(db);
		else
			fy_rollback(db);
	}
	notes_free(db);
	close_file(db);
	free(db->path);
	free(db->url);
	free(db->ca_file);
	free(db);
	return FERRY_OK;
}

const char *
ferry_client_id(ferry *db)
{
	return db->client_id;
}

const char *
ferry_user_id(ferry *db)
{
	return db->user_id;
}

struct sqlite3 *
ferry_sqlite(ferry *db)
{
	return db->db;
}

/* ---- configuration ----------------------------------------------------------------- */

int
ferry_set_url(ferry *db, const char *url, char **errmsg)
{
	int			rc;

	if (url == NULL || !((strncmp(url, "ws://", 5) == 0 && url[5] != '\0') ||
						 (strncmp(url, "wss://", 6) == 0 && url[6] != '\0')))
	{
		rc = fy_err(db, FERRY_MISUSE, "the server URL must look like wss://HOST[:PORT][/PATH] or "
					"ws://HOST[:PORT][/PATH], not \"%s\"", url ? url : "(null)");
		return fy_finish(db, rc, errmsg);
	}
	if ((rc = fy_meta_set(db, FY_META_URL, url)) == FERRY_OK)
	{
		free(db->url);
		db->url = fy_strdup(url);
	}
	return fy_finish(db, rc, errmsg);
}

int
ferry_set_ca_file(ferry *db, const char *path, char **errmsg)
{
	if (path != NULL && access(path, R_OK) != 0)
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "cannot read the CA file %s: %s", path, strerror(errno)), errmsg);
	free(db->ca_file);
	db->ca_file = path ? fy_strdup(path) : NULL;
	return fy_finish(db, FERRY_OK, errmsg);
}

int
ferry_set_token_callback(ferry *db, ferry_token_fn fn, void *ctx)
{
	db->token_fn = fn;
	db->token_ctx = ctx;
	return FERRY_OK;
}

int
ferry_on_change(ferry *db, ferry_change_fn fn, void *ctx)
{
	db->change_fn = fn;
	db->change_ctx = ctx;
	return FERRY_OK;
}

int
ferry_on_status(ferry *db, ferry_status_fn fn, void *ctx)
{
	db->status_fn = fn;
	db->status_ctx = ctx;
	db->have_status = false;
	return FERRY_OK;
}

int
ferry_config(ferry *db, int op, int64_t value)
{
	switch (op)
	{
		case FERRY_OPT_STALE_AFTER_MS:
			if (value < 0)
				return FERRY_MISUSE;
			db->stale_after_ms = value;
			return FERRY_OK;
		case FERRY_OPT_BACKOFF_MIN_MS:
			if (value < 1 || value > 3600000)
				return FERRY_MISUSE;
			db->backoff_min_ms = value;
			return FERRY_OK;
		case FERRY_OPT_BACKOFF_MAX_MS:
			if (value < 1 || value > 24LL * 3600000)
				return FERRY_MISUSE;
			db->backoff_max_ms = value;
			return FERRY_OK;
		case FERRY_OPT_MAX_BATCH:
			if (value < 1 || value > 1000)
				return FERRY_MISUSE;
			db->max_batch = (int) value;
			return FERRY_OK;
		case FERRY_OPT_MAX_RETRIES:
			if (value < 0 || value > 1000000)
				return FERRY_MISUSE;
			db->max_retries = (int) value;
			return FERRY_OK;
		case FERRY_OPT_CONNECT_TIMEOUT_MS:
			if (value < 100 || value > 600000)
				return FERRY_MISUSE;
			db->connect_timeout_ms = value;
			return FERRY_OK;
		case FERRY_OPT_SYNCHRONOUS:
			if (value != 1 && value != 2)
				return FERRY_MISUSE;
			db->synchronous = (int) value;
			return apply_synchronous(db);
		case FERRY_OPT_MAX_INFLIGHT:
			if (value < 1 || value > 64)
				return FERRY_MISUSE;
			db->max_inflight = (int) value;
			return FERRY_OK;
		default:
			return FERRY_MISUSE;
	}
}

/* ---- logout ------------------------------------------------------------------------ */

int
ferry_logout(ferry *db, int flags, char **errmsg)
{
	sqlite3_stmt *st;
	int			n = 0;
	int			rc;
	char	   *side;
	char	   *url;
	static const char *const suffixes[] = {"-wal", "-shm", "-journal", "-ferry-lock"};

	if (sqlite3_prepare_v2(db->db, "SELECT count(*) FROM ferry_queue", -1, &st, NULL) != SQLITE_OK)
		return fy_finish(db, fy_sqlerr(db, "cannot count the queue"), errmsg);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (n > 0 && !(flags & FERRY_FORCE))
		return fy_finish(db, fy_err(db, FERRY_PENDING, "%d change%s not synced yet; sync first, or log out "
									"with FERRY_FORCE to lose %s", n, n == 1 ? " is" : "s are",
									n == 1 ? "it" : "them"), errmsg);
	fy_sync_close(db, NULL, false);
	close_file(db);
	url = fy_strdup(db->url);
	if (unlink(db->path) != 0 && errno != ENOENT)
	{
		int			e = errno;

		free(url);
		open_file(db);			/* the handle stays usable */
		return fy_finish(db, fy_err(db, FERRY_ERROR, "cannot delete %s: %s", db->path, strerror(e)), errmsg);
	}
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
	{
		side = fy_sprintf("%s%s", db->path, suffixes[i]);
		if (side != NULL)
			unlink(side);
		free(side);
	}
	db->user_id[0] = '\0';
	db->last_sync_ms = 0;
	db->sync.last_error[0] = '\0';
	db->sync.last_error_mutation[0] = '\0';
	db->sync.fatal = 0;
	db->have_status = false;
	rc = open_file(db);
	/* the server's URL is not the user's data: keep it */
	if (rc == FERRY_OK && url != NULL && (rc = fy_meta_set(db, FY_META_URL, url)) == FERRY_OK)
	{
		free(db->url);
		db->url = url;
		url = NULL;
	}
	free(url);
	return fy_finish(db, rc, errmsg);
}
