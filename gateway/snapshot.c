/*
 * gateway/snapshot.c -- a new shape's initial rows, copied by a worker thread.
 *
 * The worker opens its own connection, starts a REPEATABLE READ transaction,
 * records its snapshot (pg_current_snapshot()), and streams the shape's rows
 * through a cursor, a batch at a time, into the shape's log as snapshot
 * entries "0_<n>". Meanwhile the service thread keeps appending the shape's
 * live changes to its pending log; when the worker is done, the service
 * thread moves the pending changes the snapshot did not see into the log
 * (shape_finish_snapshot): no gap, no double.
 *
 * While SNAPSHOTTING, the worker alone writes the shape's log; everything
 * else about the shape belongs to the service thread, and the worker only
 * reads the copies in its job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "log.h"

#define FETCH_ROWS 1000

typedef struct SnapshotJob
{
	struct SnapshotJob *next;	/* in the done queue */
	Shape	   *shape;			/* the shape (the service thread's; the worker uses its log only) */
	SlogLog    *log;			/* the shape's log */
	char	   *conninfo;		/* database */
	char	   *sql;			/* the cursor's query */
	char	   *claims_json;	/* for ferry.claims */
	char	   *tenants;		/* text[] literal of the tenants */
	int			ncols;			/* shape columns; the query returns them, then ferry_version */
	pthread_t	thread;			/* the worker */
	double		started;		/* monotonic seconds */
	/* results */
	int			failed;			/* the snapshot failed */
	char		err[512];		/* why */
	char	   *snapshot;		/* pg_current_snapshot() text */
	uint64_t	snapshot_lsn;	/* WAL insert position right after it */
	uint64_t	rows;			/* rows copied */
} SnapshotJob;

static char *
quote_literal_array(char **items, int n)
{
	size_t		cap = 16;
	size_t		len = 0;
	char	   *out;

	for (int i = 0; i < n; i++)
		cap += 2 * strlen(items[i]) + 4;
	out = malloc(cap);
	out[len++] = '{';
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			out[len++] = ',';
		out[len++] = '"';
		for (const char *p = items[i]; *p; p++)
		{
			if (*p == '"' || *p == '\\')
				out[len++] = '\\';
			out[len++] = *p;
		}
		out[len++] = '"';
	}
	out[len++] = '}';
	out[len] = '\0';
	return out;
}

static void
append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t		n = strlen(s);

	while (*len + n + 1 > *cap)
	{
		*cap = *cap ? *cap * 2 : 512;
		*buf = realloc(*buf, *cap);
	}
	memcpy(*buf + *len, s, n + 1);
	*len += n;
}

static char *
quote_ident(const char *name)
{
	char	   *out = malloc(2 * strlen(name) + 3);
	size_t		n = 0;

	out[n++] = '"';
	for (const char *p = name; *p; p++)
	{
		if (*p == '"')
			out[n++] = '"';
		out[n++] = *p;
	}
	out[n++] = '"';
	out[n] = '\0';
	return out;
}

static void
fail(SnapshotJob *job, const char *what, PGconn *conn)
{
	char	   *msg = conn != NULL ? PQerrorMessage(conn) : "";
	size_t		n = strlen(msg);

	while (n > 0 && msg[n - 1] == '\n')
		n--;
	job->failed = 1;
	snprintf(job->err, sizeof(job->err), "%s%s%.*s", what, n ? ": " : "", (int) n, msg);
}

static int
exec_ok(PGconn *conn, PGresult *res, ExecStatusType want)
{
	int			ok = PQresultStatus(res) == want;

	PQclear(res);
	(void) conn;
	return ok;
}

static void *
worker(void *arg)
{
	SnapshotJob *job = arg;
	PGconn	   *conn = gw_connect(job->conninfo, job->err, sizeof(job->err));
	const char *params[2];
	PGresult   *res;
	Wbuf		change;
	const char **vals = malloc(sizeof(char *) * (job->ncols + 1));
	uint32_t   *lens = malloc(sizeof(uint32_t) * (job->ncols + 1));
	char		err[256];

	wbuf_init(&change);
	if (conn == NULL)
	{
		job->failed = 1;
		goto done;
	}
	if (!exec_ok(conn, PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"), PGRES_COMMAND_OK))
	{
		fail(job, "starting the snapshot transaction failed", conn);
		goto done;
	}
	params[0] = job->claims_json;
	if (!exec_ok(conn, PQexecParams(conn, "SELECT set_config('ferry.claims', $1, true)", 1, NULL, params,
									NULL, NULL, 0), PGRES_TUPLES_OK))
	{
		fail(job, "setting the claims failed", conn);
		goto done;
	}
	/* The first statement takes the snapshot; the insert position is read after it. */
	res = PQexec(conn, "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		PQclear(res);
		fail(job, "reading the snapshot failed", conn);
		goto done;
	}
	job->snapshot = strdup(PQgetvalue(res, 0, 0));
	{
		unsigned int hi = 0,
					lo = 0;

		if (sscanf(PQgetvalue(res, 0, 1), "%X/%X", &hi, &lo) == 2)
			job->snapshot_lsn = ((uint64_t) hi << 32) | lo;
	}
	PQclear(res);

	params[0] = job->tenants;
	if (!exec_ok(conn, PQexecParams(conn, job->sql, 1, NULL, params, NULL, NULL, 0), PGRES_COMMAND_OK))
	{
		fail(job, "the shape's query failed", conn);
		goto done;
	}
	for (;;)
	{
		int			n;

		res = PQexec(conn, "FETCH FORWARD " "1000" " FROM ferry_snapshot");
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			PQclear(res);
			fail(job, "fetching the shape's rows failed", conn);
			goto done;
		}
		n = PQntuples(res);
		for (int r = 0; r < n; r++)
		{
			for (int c = 0; c < job->ncols; c++)
			{
				vals[c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
				lens[c] = (uint32_t) PQgetlength(res, r, c);
			}
			wbuf_reset(&change);
			wire_change(&change, WIRE_OP_INSERT, job->ncols, vals, lens,
						strtoll(PQgetvalue(res, r, job->ncols), NULL, 10));
			if (shape_append_snapshot(job->shape, (uint32_t) job->rows, change.data, change.len,
									  err, sizeof(err)) != 0)
			{
				PQclear(res);
				job->failed = 1;
				snprintf(job->err, sizeof(job->err), "writing the shape's log failed: %s", err);
				goto done;
			}
			job->rows++;
		}
		PQclear(res);
		if (n < FETCH_ROWS)
			break;
	}
	exec_ok(conn, PQexec(conn, "COMMIT"), PGRES_COMMAND_OK);
	if (slog_sync(job->log, NULL, err, sizeof(err)) != SLOG_OK)
	{
		job->failed = 1;
		snprintf(job->err, sizeof(job->err), "syncing the shape's log failed: %s", err);
	}

done:
	if (conn != NULL)
		PQfinish(conn);
	wbuf_free(&change);
	free(vals);
	free(lens);
	pthread_mutex_lock(&gw->snap_lock);
	job->next = gw->snap_done;
	gw->snap_done = job;
	pthread_mutex_unlock(&gw->snap_lock);
	lws_cancel_service(gw->ctx);
	return NULL;
}

int
snapshot_start(Shape *s, const CatTable *t, char *err, size_t errlen)
{
	SnapshotJob *job = calloc(1, sizeof(SnapshotJob));
	char	   *sql = NULL;
	size_t		len = 0,
				cap = 0;
	char	   *q;

	append(&sql, &len, &cap, "DECLARE ferry_snapshot NO SCROLL CURSOR FOR SELECT ");
	for (int i = 0; i < s->ncols; i++)
	{
		q = quote_ident(t->cols[s->cols[i]].name);
		append(&sql, &len, &cap, q);
		append(&sql, &len, &cap, ", ");
		free(q);
	}
	append(&sql, &len, &cap, "ferry_version FROM ");
	append(&sql, &len, &cap, t->qualname);
	append(&sql, &len, &cap, " WHERE ");
	q = quote_ident(t->cols[t->tenant].name);
	append(&sql, &len, &cap, q);
	free(q);
	append(&sql, &len, &cap, "::text = ANY ($1::text[]) AND ferry_deleted_at IS NULL");
	/* Both were accepted by expr_compile: one expression of the supported subset each. */
	if (s->where_sql != NULL)
	{
		append(&sql, &len, &cap, " AND (");
		append(&sql, &len, &cap, s->where_sql);
		append(&sql, &len, &cap, "\n)");
	}
	if (s->rules_sql != NULL)
	{
		append(&sql, &len, &cap, " AND (");
		append(&sql, &len, &cap, s->rules_sql);
		append(&sql, &len, &cap, "\n)");
	}

	job->shape = s;
	job->log = s->log;
	job->conninfo = strdup(gw->cfg->database_url);
	job->sql = sql;
	job->claims_json = strdup(s->claims_json);
	job->tenants = quote_literal_array(s->tenants, s->ntenants);
	job->ncols = s->ncols;
	job->started = gw_mono();
	s->snapshot_job = job;
	s->snapshot_started = job->started;
	if (pthread_create(&job->thread, NULL, worker, job) != 0)
	{
		snprintf(err, errlen, "cannot start a snapshot thread");
		s->snapshot_job = NULL;
		free(job->conninfo);
		free(job->sql);
		free(job->claims_json);
		free(job->tenants);
		free(job);
		return -1;
	}
	gw->snap_running++;
	return 0;
}

void
snapshot_collect(void)
{
	SnapshotJob *done;

	/*
	 * A snapshot is finished only between transactions: finishing inside one
	 * would split it between the pending log and the log.
	 */
	if (gw->in_txn)
		return;
	pthread_mutex_lock(&gw->snap_lock);
	done = gw->snap_done;
	gw->snap_done = NULL;
	pthread_mutex_unlock(&gw->snap_lock);

	while (done != NULL)
	{
		SnapshotJob *job = done;
		Shape	   *s = job->shape;
		char		err[512];
		double		secs = gw_mono() - job->started;

		done = job->next;
		pthread_join(job->thread, NULL);
		gw->snap_running--;
		s->snapshot_job = NULL;
		metrics_observe(&gw->metrics.snapshot_seconds, metrics_snapshot_bounds, secs);
		if (s->state == SHAPE_INVALID)
			;					/* dropped by the next sweep */
		else if (job->failed)
		{
			log_error("snapshot", "shape %s on %s: %s", s->handle, s->table, job->err);
			shape_invalidate(s, "its snapshot failed");
			session_shape_invalid(s);
		}
		else if (shape_parse_snapshot(s, job->snapshot, job->snapshot_lsn) != 0 ||
				 shape_finish_snapshot(s, err, sizeof(err)) != 0)
		{
			log_error("snapshot", "shape %s on %s: finishing the snapshot failed: %s", s->handle, s->table,
					  job->failed ? job->err : err);
			shape_invalidate(s, "its snapshot failed");
			session_shape_invalid(s);
		}
		else
		{
			log_info("snapshot", "shape %s on %s: %llu rows in %.3f s", s->handle, s->table,
					 (unsigned long long) job->rows, secs);
			session_notify_shape(s);
		}
		free(job->conninfo);
		free(job->sql);
		free(job->claims_json);
		free(job->tenants);
		free(job->snapshot);
		free(job);
	}
}
