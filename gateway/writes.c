/*
 * gateway/writes.c -- the gateway's half of writes: pushed mutations, applied in order per
 * connection through ferry.apply_mutation, answered only after their data was streamed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "frame.h"
#include "gateway.h"
#include "hmap.h"
#include "log.h"
#include "writes.h"

#define MAX_QUEUED 4000			/* mutations a connection may have unanswered */
#define RELEASE_TIMEOUT_US (5 * 1000000LL)	/* answer anyway if the WAL marker never comes */
#define UNAVAILABLE_RETRY_MS 2000	/* database unreachable */
#define RETRYABLE_RETRY_MS 500	/* apply_mutation said retryable */

enum
{
	ITEM_QUEUED,				/* waiting for its turn */
	ITEM_APPLYING,				/* with a worker */
	ITEM_DONE					/* result known; waits for its data to be streamed */
};

typedef struct Item
{
	struct Item *next;			/* FIFO */
	char	   *id;				/* mutation id */
	char	   *json;			/* the mutation as pushed */
	int			state;			/* ITEM_* */
	Ferry__V1__MutationStatus status;	/* result */
	int64_t		version;		/* row version */
	char	   *error_code;		/* REJECTED/RETRY */
	char	   *error_message;
	uint32_t	retry_after_ms; /* RETRY */
	char	   *result_json;	/* apply_mutation's result */
	uint64_t	lsn;			/* answer once the WAL up to here was streamed (0: now) */
	int64_t		done_at_us;		/* when the result came */
} Item;

struct WriteQueue
{
	struct lws *wsi;			/* the session's connection */
	char	   *client_id;		/* Hello.client_id */
	char	   *sub;			/* the user */
	char	   *claims_json;	/* claims for apply_mutation */
	Item	   *head;			/* items in push order */
	Item	   *tail;
	int			nitems;
	int			applying;		/* an item is with a worker */
	int			closed;			/* the session is gone */
	int			refs;			/* the session + an in-flight job */
	int64_t		retry_until_us; /* answering RETRY until then */
	uint32_t	retry_after_ms; /* with this wait */
};

/* One mutation of a job: what the worker reads, and what it found. */
typedef struct Part
{
	Item	   *item;			/* its item */
	char	   *id;				/* copies the worker reads */
	char	   *json;
	char	   *result;			/* apply_mutation's result text, or NULL */
	char	   *error;			/* database error, or NULL */
	uint64_t	lsn;			/* WAL insert position after the apply */
	double		seconds;		/* apply latency */
} Part;

/*
 * A job is the run of consecutive queued mutations of one connection that a worker applies
 * one after another, each in its own transaction, without going back to the event loop
 * between them. It stops early at a database error or a retryable result: the mutations
 * after it were not applied and are answered RETRY, as the order requires.
 */
#define JOB_MAX 32

typedef struct Job
{
	struct Job *next;			/* in a queue */
	WriteQueue *q;				/* the queue (refs held) */
	char	   *client_id;		/* copies the worker reads */
	char	   *claims;
	int			nparts;			/* mutations in the run */
	int			ran;			/* of them, applied (or failed) by the worker */
	Part		parts[JOB_MAX];
} Job;

typedef struct Bucket
{
	double		tokens;			/* available */
	int64_t		at_us;			/* last refill */
} Bucket;

static struct
{
	char	   *conninfo;		/* database */
	int			nworkers;		/* threads */
	pthread_t  *threads;
	pthread_mutex_t lock;		/* guards todo, done, stop */
	pthread_cond_t cond;		/* todo not empty, or stop */
	Job		   *todo;			/* jobs for the workers (FIFO) */
	Job		   *todo_tail;
	Job		   *done;			/* finished jobs */
	int			stop;			/* shut down */
	int			started;		/* workers running */
	double		push_rate,		/* per-user buckets */
				push_burst,
				pull_rate,
				pull_burst;
	Hmap		buckets;		/* "push:"/"pull:" + sub -> Bucket */
	uint64_t	synced_lsn;		/* WAL processed and synced by ferryd */
	long		items;			/* mutations queued or unanswered, in all queues */
} W;


/* ----------------------------------------------------------------
 * Workers
 * ---------------------------------------------------------------- */

/*
 * Applies one mutation, in a transaction of its own. `flush` false: its commit does not
 * wait for the WAL flush (synchronous_commit off), because a later commit on the same
 * connection will (run_job), and WAL is flushed in order. `first`: the first of its run,
 * the only one that may open a new connection -- a later one must not, since the run's
 * earlier commits may have died with the old one.
 */
static void
run_part(PGconn **conn, Job *job, Part *part, bool flush, bool first)
{
	const char *params[5] = {part->json, part->id, job->client_id, job->claims, flush ? "on" : "off"};
	PGresult   *res;
	double		t0 = gw_mono();
	char		err[512];

	if (!first && (*conn == NULL || PQstatus(*conn) != CONNECTION_OK))
	{
		part->error = strdup("the database connection was lost");
		return;
	}
	if (*conn == NULL || PQstatus(*conn) != CONNECTION_OK)
	{
		PQfinish(*conn);
		*conn = gw_connect(W.conninfo, err, sizeof(err));
		if (*conn == NULL)
		{
			part->error = strdup(err);
			return;
		}
		/* prepared once per connection: parsed and planned once, not per mutation */
		res = PQprepare(*conn, "ferry_apply",
						"WITH s AS MATERIALIZED (SELECT set_config('synchronous_commit', $5, true)), "
						"r AS MATERIALIZED (SELECT ferry.apply_mutation("
						"  CASE WHEN jsonb_typeof($1::jsonb) = 'object' "
						"       THEN $1::jsonb || jsonb_build_object('id', $2::text, 'client_id', $3::text) "
						"       ELSE $1::jsonb END, $4::jsonb)::text AS res FROM s) "
						"SELECT r.res, pg_current_wal_insert_lsn()::text FROM r", 5, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			part->error = strdup(PQerrorMessage(*conn));
			PQclear(res);
			PQfinish(*conn);
			*conn = NULL;
			return;
		}
		PQclear(res);
	}
	/* The MATERIALIZED CTE runs the apply before the WAL position is read. */
	res = PQexecPrepared(*conn, "ferry_apply", 5, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
	{
		uint32_t	hi = 0,
					lo = 0;

		part->result = strdup(PQgetvalue(res, 0, 0));
		if (sscanf(PQgetvalue(res, 0, 1), "%X/%X", &hi, &lo) == 2)
			part->lsn = ((uint64_t) hi << 32) | lo;
	}
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* invalid JSON text: the mutation is malformed, not the database */
		if (state != NULL && strcmp(state, "22P02") == 0)
			part->result = strdup("{\"status\": \"rejected\", \"error\": {\"code\": \"invalid_mutation\", "
								 "\"message\": \"the mutation is not valid JSON\"}}");
		else
			part->error = strdup(PQerrorMessage(*conn));
	}
	PQclear(res);
	part->seconds = gw_mono() - t0;
}

/* True when apply_mutation's result says: transient, send it again. */
static bool
is_retryable(const char *result)
{
	json_t	   *r = json_loads(result, 0, NULL);
	bool		yes = json_is_true(json_object_get(r, "retryable"));

	json_decref(r);
	return yes;
}

/* Waits until every commit of this connection so far is flushed; false when it cannot. */
static bool
flush_wal(PGconn *conn)
{
	PGresult   *res;
	bool		okay;

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return false;
	/* a transaction with an xid, committed with synchronous_commit on, flushes the WAL */
	res = PQexec(conn, "SELECT set_config('synchronous_commit', 'on', true), txid_current()");
	okay = PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	return okay;
}

/*
 * Applies a run of a connection's mutations, in order, until one fails or asks to be
 * sent again. Only the run's last commit waits for the WAL flush, which makes the ones
 * before it durable too (same connection, WAL in order). When the run is cut short, the
 * flush is waited for here; if it cannot be (the database went away), the mutations
 * applied so far may be lost with it, and are answered RETRY: sent again, each is either
 * applied or answered `duplicate` with its result. So the job comes back only with
 * results that are on disk.
 */
static void
run_job(PGconn **conn, Job *job)
{
	bool		unflushed = false;

	for (job->ran = 0; job->ran < job->nparts;)
	{
		Part	   *part = &job->parts[job->ran++];
		bool		flush = job->ran == job->nparts;

		run_part(conn, job, part, flush, job->ran == 1);
		if (part->error == NULL)
			unflushed = !flush;
		if (part->error != NULL || is_retryable(part->result))
			break;
	}
	if (unflushed && !flush_wal(*conn))
		for (int i = 0; i < job->ran; i++)
			if (job->parts[i].error == NULL)
			{
				free(job->parts[i].result);
				job->parts[i].result = NULL;
				job->parts[i].error = strdup("the database went away before the write was flushed");
			}
}

static void *
worker(void *arg)
{
	PGconn	   *conn = NULL;

	(void) arg;
	for (;;)
	{
		Job		   *job;

		pthread_mutex_lock(&W.lock);
		while (W.todo == NULL && !W.stop)
			pthread_cond_wait(&W.cond, &W.lock);
		if (W.stop)
		{
			pthread_mutex_unlock(&W.lock);
			break;
		}
		job = W.todo;
		W.todo = job->next;
		if (W.todo == NULL)
			W.todo_tail = NULL;
		pthread_mutex_unlock(&W.lock);

		run_job(&conn, job);

		pthread_mutex_lock(&W.lock);
		job->next = W.done;
		W.done = job;
		pthread_mutex_unlock(&W.lock);
		if (gw != NULL && gw->ctx != NULL)
			lws_cancel_service(gw->ctx);
	}
	PQfinish(conn);
	return NULL;
}

int
writes_init(const char *conninfo, int nworkers, double push_rate, double push_burst,
			double pull_rate, double pull_burst, char *err, size_t errlen)
{
	memset(&W, 0, sizeof(W));
	W.conninfo = strdup(conninfo != NULL ? conninfo : "");
	W.nworkers = nworkers;
	W.push_rate = push_rate;
	W.push_burst = push_burst;
	W.pull_rate = pull_rate;
	W.pull_burst = pull_burst;
	hmap_init(&W.buckets);
	pthread_mutex_init(&W.lock, NULL);
	pthread_cond_init(&W.cond, NULL);
	W.threads = calloc(nworkers, sizeof(pthread_t));
	for (int i = 0; i < nworkers; i++)
	{
		if (pthread_create(&W.threads[i], NULL, worker, NULL) != 0)
		{
			snprintf(err, errlen, "cannot start write workers");
			return -1;
		}
		W.started++;
	}
	return 0;
}

static void free_job(Job *job);

void
writes_shutdown(void)
{
	pthread_mutex_lock(&W.lock);
	W.stop = 1;
	pthread_cond_broadcast(&W.cond);
	pthread_mutex_unlock(&W.lock);
	for (int i = 0; i < W.started; i++)
		pthread_join(W.threads[i], NULL);
	while (W.todo != NULL)
	{
		Job		   *j = W.todo;

		W.todo = j->next;
		free_job(j);
	}
	while (W.done != NULL)
	{
		Job		   *j = W.done;

		W.done = j->next;
		free_job(j);
	}
	for (long i = hmap_next(&W.buckets, 0); i >= 0; i = hmap_next(&W.buckets, i + 1))
		free(W.buckets.slots[i].value);
	hmap_destroy(&W.buckets);
	free(W.threads);
	free(W.conninfo);
}

/* ----------------------------------------------------------------
 * Queues
 * ---------------------------------------------------------------- */

static void
free_item(Item *it)
{
	free(it->id);
	free(it->json);
	free(it->error_code);
	free(it->error_message);
	free(it->result_json);
	free(it);
}

static void
unref(WriteQueue *q)
{
	if (--q->refs > 0)
		return;
	while (q->head != NULL)
	{
		Item	   *it = q->head;

		q->head = it->next;
		W.items--;
		free_item(it);
	}
	free(q->client_id);
	free(q->sub);
	free(q->claims_json);
	free(q);
}

WriteQueue *
writes_open(struct lws *wsi, const char *client_id, const char *sub, const char *claims_json)
{
	WriteQueue *q = calloc(1, sizeof(WriteQueue));

	q->wsi = wsi;
	q->client_id = strdup(client_id);
	q->sub = strdup(sub);
	q->claims_json = strdup(claims_json);
	q->refs = 1;
	return q;
}

void
writes_close(WriteQueue *q)
{
	if (q == NULL)
		return;
	q->closed = 1;
	q->wsi = NULL;
	unref(q);
}

void
writes_set_claims(WriteQueue *q, const char *claims_json)
{
	free(q->claims_json);
	q->claims_json = strdup(claims_json);
}

static void
free_job(Job *job)
{
	for (int i = 0; i < job->nparts; i++)
	{
		free(job->parts[i].id);
		free(job->parts[i].json);
		free(job->parts[i].result);
		free(job->parts[i].error);
	}
	free(job->client_id);
	free(job->claims);
	free(job);
}

/* Hands the next run of queued items of q to the workers, if none is applying. */
static void
dispatch(WriteQueue *q)
{
	Item	   *it;
	Job		   *job;

	if (q->applying || q->closed)
		return;
	for (it = q->head; it != NULL && it->state != ITEM_QUEUED; it = it->next)
		;
	if (it == NULL)
		return;
	q->applying = 1;
	q->refs++;
	job = calloc(1, sizeof(Job));
	job->q = q;
	job->client_id = strdup(q->client_id);
	job->claims = strdup(q->claims_json);
	for (; it != NULL && it->state == ITEM_QUEUED && job->nparts < JOB_MAX; it = it->next)
	{
		Part	   *part = &job->parts[job->nparts++];

		it->state = ITEM_APPLYING;
		part->item = it;
		part->id = strdup(it->id);
		part->json = strdup(it->json);
	}
	pthread_mutex_lock(&W.lock);
	if (W.todo_tail != NULL)
		W.todo_tail->next = job;
	else
		W.todo = job;
	W.todo_tail = job;
	pthread_cond_signal(&W.cond);
	pthread_mutex_unlock(&W.lock);
}

static void
set_retry(Item *it, const char *code, const char *message, uint32_t after_ms)
{
	it->state = ITEM_DONE;
	it->status = FERRY__V1__MUTATION_STATUS__RETRY;
	free(it->error_code);
	free(it->error_message);
	it->error_code = strdup(code);
	it->error_message = strdup(message);
	it->retry_after_ms = after_ms;
	it->lsn = 0;
	it->done_at_us = gw_now_us();
	gw->metrics.mutations_retry++;
}

/* Once one mutation gets RETRY, so does every later one already received. */
static void
retry_rest(WriteQueue *q, Item *from, const char *code, const char *message, uint32_t after_ms)
{
	q->retry_until_us = gw_now_us() + (int64_t) after_ms * 1000;
	q->retry_after_ms = after_ms;
	for (Item *it = from; it != NULL; it = it->next)
		if (it->state == ITEM_QUEUED)
			set_retry(it, code, message, after_ms);
}

static uint32_t
take_token(const char *kind, const char *sub, double rate, double burst, int64_t now)
{
	char		key[300];
	Bucket	   *b;
	int			n = snprintf(key, sizeof(key), "%s:%s", kind, sub);

	if (rate <= 0)
		return 0;
	b = hmap_get(&W.buckets, key, (size_t) n);
	if (b == NULL)
	{
		b = calloc(1, sizeof(Bucket));
		b->tokens = burst;
		b->at_us = now;
		hmap_put(&W.buckets, key, (size_t) n, b);
	}
	b->tokens = fmin(burst, b->tokens + (double) (now - b->at_us) * rate / 1e6);
	b->at_us = now;
	if (b->tokens >= 1)
	{
		b->tokens -= 1;
		return 0;
	}
	return (uint32_t) ceil((1 - b->tokens) / rate * 1000);
}

void
writes_push(WriteQueue *q, const Ferry__V1__MutationBatch *batch, int64_t now)
{
	double		limited_after_ms = -1;	/* rate-limited in this batch: the next wait */

	for (size_t i = 0; i < batch->n_mutations; i++)
	{
		Item	   *it = calloc(1, sizeof(Item));
		uint32_t	wait;

		it->id = strdup(batch->mutations[i]->id);
		it->json = strdup(batch->mutations[i]->json);
		it->state = ITEM_QUEUED;
		if (q->tail != NULL)
			q->tail->next = it;
		else
			q->head = it;
		q->tail = it;
		q->nitems++;
		W.items++;
		if (limited_after_ms >= 0)
		{
			/* Each later mutation waits one more token, so a resend of them all fits the bucket. */
			limited_after_ms += 1000.0 / W.push_rate;
			set_retry(it, "rate_limited", "push rate limit reached", (uint32_t) ceil(limited_after_ms));
			q->retry_until_us = now + (int64_t) (limited_after_ms * 1000);
		}
		else if (now < q->retry_until_us)
			set_retry(it, "retry", "an earlier mutation of this connection was answered RETRY; "
					  "send this one again after it",
					  (uint32_t) ((q->retry_until_us - now) / 1000 + 1));
		else if (q->nitems > MAX_QUEUED)
			retry_rest(q, it, "too_many_in_flight", "too many unanswered mutations; wait for results", 1000);
		else if ((wait = take_token("push", q->sub, W.push_rate, W.push_burst, now)) > 0)
		{
			gw->metrics.rate_limited++;
			limited_after_ms = wait;
			set_retry(it, "rate_limited", "push rate limit reached", wait);
			q->retry_until_us = now + (int64_t) wait * 1000;
		}
	}
	dispatch(q);
	if (q->wsi != NULL)
		lws_callback_on_writable(q->wsi);
}

uint32_t
writes_pull(WriteQueue *q, int64_t now)
{
	return writes_pull_user(q->sub, now);
}

uint32_t
writes_pull_user(const char *sub, int64_t now)
{
	uint32_t	wait = take_token("pull", sub, W.pull_rate, W.pull_burst, now);

	if (wait > 0)
		gw->metrics.rate_limited++;
	return wait;
}

/* Fills it from apply_mutation's result text. */
static void
read_result(Item *it, const char *text)
{
	json_error_t jerr;
	json_t	   *r = json_loads(text, 0, &jerr);
	const char *status = json_string_value(json_object_get(r, "status"));
	json_t	   *error = json_object_get(r, "error");

	it->result_json = strdup(text);
	it->version = json_integer_value(json_object_get(r, "version"));
	if (status == NULL)
		status = "";
	if (strcmp(status, "applied") == 0)
		it->status = FERRY__V1__MUTATION_STATUS__APPLIED, gw->metrics.mutations_applied++;
	else if (strcmp(status, "duplicate") == 0)
	{
		json_t	   *orig = json_object_get(r, "original");

		it->version = json_integer_value(json_object_get(orig, "version"));
		it->status = FERRY__V1__MUTATION_STATUS__DUPLICATE;
		gw->metrics.mutations_duplicate++;
	}
	else if (strcmp(status, "conflict") == 0)
		it->status = FERRY__V1__MUTATION_STATUS__CONFLICT, gw->metrics.mutations_conflict++;
	else if (json_is_true(json_object_get(r, "retryable")))
	{
		it->status = FERRY__V1__MUTATION_STATUS__RETRY;
		it->retry_after_ms = RETRYABLE_RETRY_MS;
		gw->metrics.mutations_retry++;
	}
	else
		it->status = FERRY__V1__MUTATION_STATUS__REJECTED, gw->metrics.mutations_rejected++;
	if (error != NULL)
	{
		const char *code = json_string_value(json_object_get(error, "code"));
		const char *msg = json_string_value(json_object_get(error, "message"));

		it->error_code = strdup(code != NULL ? code : "");
		it->error_message = strdup(msg != NULL ? msg : "");
	}
	json_decref(r);
}

/* Takes one worker's finding into its item. */
static void
collect_part(WriteQueue *q, Part *part)
{
	Item	   *it = part->item;

	it->state = ITEM_DONE;
	it->done_at_us = gw_now_us();
	it->lsn = part->lsn;
	metrics_observe(&gw->metrics.apply_seconds, metrics_apply_bounds, part->seconds);
	if (part->error != NULL)
	{
		log_warn("writes", "applying mutation %s failed: %s", part->id, part->error);
		set_retry(it, "unavailable", "the database is unavailable; send it again later", UNAVAILABLE_RETRY_MS);
		retry_rest(q, it->next, "unavailable", "the database is unavailable; send it again later",
				   UNAVAILABLE_RETRY_MS);
	}
	else
	{
		read_result(it, part->result);
		if (it->status == FERRY__V1__MUTATION_STATUS__RETRY)
			retry_rest(q, it->next, "retry", "an earlier mutation of this connection was answered RETRY",
					   it->retry_after_ms);
	}
}

void
writes_collect(void)
{
	Job		   *done;

	pthread_mutex_lock(&W.lock);
	done = W.done;
	W.done = NULL;
	pthread_mutex_unlock(&W.lock);

	while (done != NULL)
	{
		Job		   *job = done;
		WriteQueue *q = job->q;

		done = job->next;
		q->applying = 0;
		if (!q->closed)
		{
			/* what the worker did not reach goes back in line (and gets RETRY below) */
			for (int i = job->ran; i < job->nparts; i++)
				job->parts[i].item->state = ITEM_QUEUED;
			for (int i = 0; i < job->ran; i++)
				collect_part(q, &job->parts[i]);
			dispatch(q);
			if (q->wsi != NULL)
				lws_callback_on_writable(q->wsi);
		}
		unref(q);
		free_job(job);
	}
}

void
writes_synced_to(uint64_t lsn)
{
	if (lsn > W.synced_lsn)
		W.synced_lsn = lsn;
}

long
writes_unanswered(void)
{
	return W.items;
}

int
writes_pending(const WriteQueue *q)
{
	return q != NULL && q->head != NULL;
}

int
writes_take(WriteQueue *q, uint8_t **buf, size_t *len)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__MutationResults mr = FERRY__V1__MUTATION_RESULTS__INIT;
	Ferry__V1__MutationResult *rs;
	Ferry__V1__MutationResult **rp;
	int			n = 0;
	int64_t		now = gw_now_us();
	char		err[256];
	int			rc;

	for (Item *it = q->head; it != NULL && it->state == ITEM_DONE && n < 256; it = it->next)
	{
		if (it->lsn > W.synced_lsn && now - it->done_at_us < RELEASE_TIMEOUT_US)
			break;
		n++;
	}
	if (n == 0)
		return 0;
	rs = calloc(n, sizeof(Ferry__V1__MutationResult));
	rp = calloc(n, sizeof(Ferry__V1__MutationResult *));
	{
		Item	   *it = q->head;

		for (int i = 0; i < n; i++, it = it->next)
		{
			ferry__v1__mutation_result__init(&rs[i]);
			rs[i].id = it->id;
			rs[i].status = it->status;
			rs[i].version = it->version;
			rs[i].error_code = it->error_code != NULL ? it->error_code : "";
			rs[i].error_message = it->error_message != NULL ? it->error_message : "";
			rs[i].retry_after_ms = it->retry_after_ms;
			rs[i].result_json = it->result_json != NULL ? it->result_json : "";
			rp[i] = &rs[i];
		}
	}
	mr.n_results = (size_t) n;
	mr.results = rp;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_MUTATION_RESULTS;
	m.mutation_results = &mr;
	rc = frame_encode_server_alloc(&m, LWS_PRE, buf, len, err, sizeof(err));
	free(rs);
	free(rp);
	if (rc != FRAME_OK)
	{
		log_error("writes", "cannot encode results: %s", err);
		return 0;
	}
	for (int i = 0; i < n; i++)
	{
		Item	   *it = q->head;

		q->head = it->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->nitems--;
		W.items--;
		free_item(it);
	}
	return 1;
}
