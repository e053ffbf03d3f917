/*
 * gateway/http_sync.c -- GET /v1/sync: exact deltas through ferry.changes_since.
 *
 *   GET /v1/sync?table=todos&since=<cursor>&limit=500
 *
 * answers ferry.changes_since's page: {"rows": [...], "cursor": "...",
 * "has_more": bool}, the next cursor also in the ferry-cursor header; 409
 * with {"must_refetch": true, ...} when the cursor is older than the table's
 * purge or TRUNCATE horizon. The query runs on a worker thread with its own
 * connection (the event loop never waits for Postgres); finished queries come
 * back through lws_cancel_service() and http_sync_collect().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "gateway.h"
#include "http.h"
#include "http_params.h"
#include "log.h"

#define SYNC_DEFAULT_LIMIT 1000
#define SYNC_MAX_LIMIT 10000
#define SYNC_MAX_QUEUED 1000	/* queries waiting: more get 503 */

typedef struct SyncJob
{
	struct SyncJob *next;		/* in the todo or done list */
	HttpReq    *r;				/* the request, NULL once it closed */
	char	   *table;			/* "schema.table" */
	char	   *since;			/* cursor or NULL */
	char	   *claims;			/* claims JSON */
	int			limit;			/* max_rows */
	int			status;			/* answer: HTTP status */
	char	   *body;			/* answer body (malloc'd) */
	char	   *code;			/* error code when status != 200 (static) */
} SyncJob;

static struct
{
	char	   *conninfo;
	pthread_t	thread;
	int			started;
	pthread_mutex_t lock;		/* guards todo, done, stop */
	pthread_cond_t cond;
	SyncJob    *todo;
	SyncJob    *todo_tail;
	SyncJob    *done;
	int			queued;			/* jobs not collected yet */
	int			stop;
} S;

static void
run_job(PGconn **conn, SyncJob *j)
{
	char		lim[16];
	const char *params[4] = {j->table, j->since, j->claims, lim};
	PGresult   *res;
	char		err[512];

	snprintf(lim, sizeof(lim), "%d", j->limit);
	if (*conn == NULL || PQstatus(*conn) != CONNECTION_OK)
	{
		PQfinish(*conn);
		if ((*conn = gw_connect(S.conninfo, err, sizeof(err))) == NULL)
		{
			j->status = 503;
			j->code = "UNAVAILABLE";
			j->body = strdup(err);
			return;
		}
	}
	res = PQexecParams(*conn, "SELECT ferry.changes_since($1::regclass, NULLIF($2, ''), $3::jsonb, $4::int)::text",
					   4, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
	{
		const char *v = PQgetvalue(res, 0, 0);

		j->status = strstr(v, "\"must_refetch\": true") != NULL ? 409 : 200;
		j->body = strdup(v);
	}
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		if (state != NULL && (strcmp(state, "FY050") == 0 || strncmp(state, "22", 2) == 0))
		{
			j->status = 400;
			j->code = "BAD_CURSOR";
		}
		else if (state != NULL && (strcmp(state, "42P01") == 0 || strncmp(state, "FY", 2) == 0))
		{
			j->status = 400;
			j->code = "BAD_REQUEST";
		}
		else
		{
			j->status = 503;
			j->code = "UNAVAILABLE";
			if (PQstatus(*conn) != CONNECTION_OK)
			{
				PQfinish(*conn);
				*conn = NULL;
			}
		}
		j->body = strdup(msg != NULL ? msg : PQerrorMessage(*conn != NULL ? *conn : NULL));
	}
	PQclear(res);
}

static void *
worker(void *arg)
{
	PGconn	   *conn = NULL;

	(void) arg;
	pthread_mutex_lock(&S.lock);
	for (;;)
	{
		SyncJob    *j;

		while (S.todo == NULL && !S.stop)
			pthread_cond_wait(&S.cond, &S.lock);
		if (S.stop)
			break;
		j = S.todo;
		S.todo = j->next;
		if (S.todo == NULL)
			S.todo_tail = NULL;
		pthread_mutex_unlock(&S.lock);
		run_job(&conn, j);
		pthread_mutex_lock(&S.lock);
		j->next = S.done;
		S.done = j;
		if (gw != NULL && gw->ctx != NULL)
			lws_cancel_service(gw->ctx);
	}
	pthread_mutex_unlock(&S.lock);
	PQfinish(conn);
	return NULL;
}

int
http_sync_init(const char *conninfo, char *err, size_t errlen)
{
	S.conninfo = strdup(conninfo);
	pthread_mutex_init(&S.lock, NULL);
	pthread_cond_init(&S.cond, NULL);
	if (pthread_create(&S.thread, NULL, worker, NULL) != 0)
	{
		snprintf(err, errlen, "cannot start the /v1/sync worker thread");
		return -1;
	}
	S.started = 1;
	return 0;
}

static void
free_job(SyncJob *j)
{
	free(j->table);
	free(j->since);
	free(j->claims);
	free(j->body);
	free(j);
}

void
http_sync_shutdown(void)
{
	if (!S.started)
		return;
	pthread_mutex_lock(&S.lock);
	S.stop = 1;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.lock);
	pthread_join(S.thread, NULL);
	S.started = 0;
	while (S.todo != NULL)
	{
		SyncJob    *j = S.todo;

		S.todo = j->next;
		free_job(j);
	}
	while (S.done != NULL)
	{
		SyncJob    *j = S.done;

		S.done = j->next;
		free_job(j);
	}
	free(S.conninfo);
}

void
http_sync_close(HttpReq *r)
{
	SyncJob    *j = r->job;

	/* the worker may hold the job: it is only unlinked from the request, and freed when collected */
	if (j != NULL)
		j->r = NULL;
	r->job = NULL;
}

void
http_sync_handle(HttpReq *r)
{
	HttpParams	p;
	AuthClaims	claims;
	char		err[256];
	char	   *table = NULL;
	long		limit = SYNC_DEFAULT_LIMIT;
	SyncJob    *j;

	if (http_read_params(r, &p) != 0)
		return;
	if (http_auth(r, &claims) != 0)
		goto out;
	if ((table = http_params_table(&p, err, sizeof(err))) == NULL)
	{
		http_error(r, 400, "BAD_REQUEST", err, NULL);
		goto out;
	}
	if (cat_table_by_name(gw->cat, table) == NULL)
	{
		snprintf(err, sizeof(err), "table \"%.200s\" is not synced", table);
		http_error(r, 400, "UNKNOWN_TABLE", err, NULL);
		goto out;
	}
	if (p.limit != NULL)
	{
		char	   *end;

		limit = strtol(p.limit, &end, 10);
		if (*end != '\0' || p.limit[0] == '\0' || limit < 1 || limit > SYNC_MAX_LIMIT)
		{
			snprintf(err, sizeof(err), "limit wants a number from 1 to %d", SYNC_MAX_LIMIT);
			http_error(r, 400, "BAD_REQUEST", err, NULL);
			goto out;
		}
	}
	if (p.since != NULL && strlen(p.since) > 8192)
	{
		http_error(r, 400, "BAD_CURSOR", "the since cursor is too long", NULL);
		goto out;
	}
	if (http_pull_limited(r, claims.sub) != 0)
		goto out;
	if (S.queued >= SYNC_MAX_QUEUED)
	{
		http_error(r, 503, "UNAVAILABLE", "too many /v1/sync queries waiting; try again", "retry-after: 1\n");
		goto out;
	}
	j = calloc(1, sizeof(SyncJob));
	j->r = r;
	j->table = table;
	table = NULL;
	j->since = p.since != NULL ? strdup(p.since) : NULL;
	j->claims = strdup(claims.json);
	j->limit = (int) limit;
	r->job = j;
	S.queued++;
	pthread_mutex_lock(&S.lock);
	if (S.todo_tail != NULL)
		S.todo_tail->next = j;
	else
		S.todo = j;
	S.todo_tail = j;
	pthread_cond_signal(&S.cond);
	pthread_mutex_unlock(&S.lock);
out:
	free(table);
	http_params_free(&p);
	auth_claims_free(&claims);
}

void
http_sync_collect(void)
{
	SyncJob    *done;

	if (!S.started)
		return;
	pthread_mutex_lock(&S.lock);
	done = S.done;
	S.done = NULL;
	pthread_mutex_unlock(&S.lock);
	while (done != NULL)
	{
		SyncJob    *j = done;

		done = j->next;
		S.queued--;
		if (j->r != NULL)
		{
			HttpReq    *r = j->r;

			r->job = NULL;
			if (j->status == 200 || j->status == 409)
			{
				/* the next cursor also as a header, for clients that page without parsing */
				char	   *hdr = malloc(strlen(j->body) + 64);
				const char *c = strstr(j->body, "\"cursor\": \"");

				strcpy(hdr, "cache-control: no-store\n");
				if (c != NULL)
				{
					const char *e = strchr(c + 11, '"');

					if (e != NULL)
						sprintf(hdr + strlen(hdr), "ferry-cursor: %.*s\n", (int) (e - c - 11), c + 11);
				}
				http_respond(r, j->status, hdr, j->body, strlen(j->body));
				free(hdr);
			}
			else
				http_error(r, j->status, j->code, j->body, j->status == 503 ? "retry-after: 1\n" : NULL);
		}
		free_job(j);
	}
}
