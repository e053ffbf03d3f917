/*
 * test/gateway/ferryd_harness.h -- start a real ferryd, talk to it as a client, keep a replica.
 *
 * Header only, for the gateway's end-to-end tests. The database comes from the
 * harness (PG* variables, FERRY_DATABASE_URL); ferryd is build's gateway/ferryd,
 * started as a child process on a free port with its own data directory.
 *
 *     Ferryd *d = ferryd_start(NULL);                // waits for /healthz 200
 *     Client *c = client_open(d, "u1", tenants, 1, NULL);   // Hello + Welcome
 *     client_subscribe(c, 1, "public.todos", NULL, NULL, NULL);
 *     client_sync(c, 1, 5000);                       // until UpToDate: c->rows holds the shape
 *     ...
 *     ferryd_stop(d, SIGTERM);
 */
#ifndef FERRY_TEST_FERRYD_HARNESS_H
#define FERRY_TEST_FERRYD_HARNESS_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "auth.h"
#include "ferry.pb-c.h"
#include "frame.h"
#include "tap.h"
#include "wsclient.h"

#define TEST_SECRET "test-secret-test-secret-test-secret-0123456789"

typedef struct Ferryd
{
	pid_t		pid;			/* the child */
	int			port;			/* its port */
	char		dir[256];		/* its data directory (kept across restarts) */
	char		log[300];		/* its log file */
} Ferryd;

static inline PGconn *
db_connect(void)
{
	PGconn	   *c = PQconnectdb("");

	if (PQstatus(c) != CONNECTION_OK)
		bail_out("cannot connect to the test database: %s", PQerrorMessage(c));
	return c;
}

/* Runs SQL; bails out on error. */
static inline void
db_exec(PGconn *c, const char *sql)
{
	PGresult   *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		bail_out("SQL failed: %s\n%s", sql, PQerrorMessage(c));
	PQclear(r);
}

static inline char *
db_value(PGconn *c, const char *sql)
{
	PGresult   *r = PQexec(c, sql);
	char	   *v;

	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
		bail_out("SQL failed: %s\n%s", sql, PQerrorMessage(c));
	v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

/*
 * GET path on 127.0.0.1:port, with "Authorization: Bearer <token>" unless token is NULL;
 * returns the status (0 when nothing came back) and copies the whole response, headers
 * and body, into resp (when not NULL).
 */
static inline int
http_request(int port, const char *path, const char *token, char *resp, size_t cap)
{
	Ws		   *ws = calloc(1, sizeof(Ws));
	struct sockaddr_in sa;
	char		req[4096];
	int			status = 0;

	if (resp != NULL && cap > 0)
		resp[0] = '\0';
	ws->fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(ws->fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
	{
		snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n%s%s%sConnection: close\r\n\r\n", path,
				 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
		ws_write_all(ws->fd, req, strlen(req));
		while (ws_fill(ws, 3000) > 0)
			;
		if (ws->in_len > 12)
		{
			ws->in = realloc(ws->in, ws->in_len + 1);
			ws->in[ws->in_len] = 0;
			status = atoi((char *) ws->in + 9);
			if (resp != NULL)
				snprintf(resp, cap, "%s", (char *) ws->in);
		}
	}
	ws_close(ws);
	return status;
}

static inline int
http_get_status(int port, const char *path, char *body, size_t cap)
{
	char	   *resp = malloc(1 << 20);
	int			status = http_request(port, path, NULL, resp, 1 << 20);

	if (body != NULL)
	{
		char	   *b = strstr(resp, "\r\n\r\n");

		snprintf(body, cap, "%s", b ? b + 4 : "");
	}
	free(resp);
	return status;
}

/* Starts ferryd (a new data dir unless d already has one). Waits until healthy. */
static inline Ferryd *
ferryd_start_in(Ferryd *d, const char *extra_arg)
{
	char		portfile[300];
	int64_t		deadline;

	if (d == NULL)
	{
		d = calloc(1, sizeof(Ferryd));
		snprintf(d->dir, sizeof(d->dir), "/tmp/ferryd-test-XXXXXX");
		if (mkdtemp(d->dir) == NULL)
			bail_out("mkdtemp failed");
		snprintf(d->log, sizeof(d->log), "%s.log", d->dir);
	}
	snprintf(portfile, sizeof(portfile), "%s/port", d->dir);
	unlink(portfile);
	d->pid = fork();
	if (d->pid == 0)
	{
		char		data[300];
		char		pf[320];
		FILE	   *f = freopen(d->log, "a", stderr);

		(void) f;
		snprintf(data, sizeof(data), "--data-dir=%s/data", d->dir);
		snprintf(pf, sizeof(pf), "--port-file=%s", portfile);
		setenv("FERRY_JWT_SECRET", TEST_SECRET, 1);
		if (getenv("FERRY_DATABASE_URL") == NULL)
			setenv("FERRY_DATABASE_URL", "", 1);
		execl("gateway/ferryd", "ferryd", "--listen=127.0.0.1:0", data, pf, "--slot=ferry_test_gw",
			  "--log-level=info", extra_arg, (char *) NULL);
		_exit(127);
	}
	deadline = ws_now_ms() + 20000;
	while (ws_now_ms() < deadline)
	{
		FILE	   *f = fopen(portfile, "r");

		if (f != NULL)
		{
			if (fscanf(f, "%d", &d->port) != 1)
				d->port = 0;
			fclose(f);
			if (d->port > 0 && http_get_status(d->port, "/healthz", NULL, 0) == 200)
				return d;
		}
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
			bail_out("ferryd exited at start; see %s", d->log);
		usleep(50000);
	}
	bail_out("ferryd did not become healthy; see %s", d->log);
	return NULL;
}

static inline Ferryd *
ferryd_start(const char *extra_arg)
{
	return ferryd_start_in(NULL, extra_arg);
}

/* Stops ferryd with sig (SIGTERM: clean; SIGKILL: crash); returns its exit status. */
static inline int
ferryd_stop(Ferryd *d, int sig)
{
	int			status = 0;
	int64_t		deadline = ws_now_ms() + 10000;

	kill(d->pid, sig);
	while (waitpid(d->pid, &status, WNOHANG) != d->pid)
	{
		if (ws_now_ms() > deadline)
		{
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &status, 0);
			return -1;
		}
		usleep(20000);
	}
	return status;
}

static inline void
ferryd_cleanup(Ferryd *d, PGconn *db)
{
	char		cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", d->dir, d->log);
	if (getenv("FERRY_TEST_KEEP") == NULL && system(cmd) != 0)
		diag("could not remove %s", d->dir);
	/* the slot: ferryd has exited, so its walsender goes a moment later */
	for (int i = 0; i < 50; i++)
	{
		PGresult   *r = PQexec(db, "SELECT pg_drop_replication_slot('ferry_test_gw') "
							   "WHERE EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = 'ferry_test_gw')");

		if (PQresultStatus(r) == PGRES_TUPLES_OK)
		{
			PQclear(r);
			break;
		}
		PQclear(r);
		usleep(100000);
	}
	free(d);
}

/* ---- a client keeping a replica of its subscriptions --------------------------------- */

#define MAX_ROWS 4096
#define MAX_RESULTS 2048

typedef struct Result
{
	char		id[64];			/* mutation id */
	int			status;			/* Ferry__V1__MutationStatus */
	char		code[64];		/* error_code */
	uint32_t	retry_after_ms; /* RETRY */
	int64_t		version;		/* row version */
	char		json[1024];		/* result_json (truncated) */
	int			rows_then;		/* replica size when it arrived */
} Result;

typedef struct Row
{
	char	   *key;			/* key columns' values joined by '|' */
	char	   *values;			/* all values joined by '|' (NULL as \N) */
	int64_t		version;		/* ferry_version */
} Row;

typedef struct Client
{
	Ws		   *ws;				/* the connection */
	char	   *token;			/* its token */
	int			nrows;			/* replica of subscription `sub` */
	Row			rows[MAX_ROWS];
	uint32_t	sub;			/* the subscription the replica follows */
	int			ncols;			/* its columns */
	int			keycols[16];	/* positions of key columns */
	int			nkeys;
	char		handle[64];		/* from Subscribed */
	int			resumed;		/* Subscribed.resumed */
	char		offset[64];		/* last offset received */
	int			up_to_date;		/* UpToDate since the last change */
	int			inserts,		/* counts of changes received */
				updates,
				deletes;
	int			must_refetch;	/* MustRefetch received */
	int			last_error;		/* last Error code */
	char		last_error_msg[512];
	int			batches;		/* ChangeBatches received */
	int64_t		last_commit_ms; /* commit time of the last batch */
	int64_t		last_batch_at_ms;	/* when it arrived (CLOCK_REALTIME ms) */
	int			nresults;		/* mutation results received, in order */
	Result		results[MAX_RESULTS];
} Client;

static inline char *
make_token(const char *sub, const char *const *tenants, size_t n, const char *role, int ttl)
{
	char	   *tok = NULL;
	char		err[256];
	time_t		now = time(NULL);

	if (auth_sign_hs256((const uint8_t *) TEST_SECRET, strlen(TEST_SECRET), sub, tenants, n, role, now,
						now + ttl, &tok, err, sizeof(err)) != AUTH_OK)
		bail_out("cannot sign a token: %s", err);
	return tok;
}

static inline int
client_send(Client *c, Ferry__V1__ClientMessage *m)
{
	uint8_t    *buf;
	size_t		len;
	char		err[256];
	int			rc;

	if (frame_encode_client_alloc(m, 0, &buf, &len, err, sizeof(err)) != FRAME_OK)
		bail_out("cannot encode: %s", err);
	rc = ws_send(c->ws, buf, len);
	free(buf);
	return rc;
}

/* Receives one ServerMessage (NULL on timeout/close); the caller frees it. */
static inline Ferry__V1__ServerMessage *
client_recv(Client *c, int timeout_ms)
{
	long		n = ws_recv(c->ws, timeout_ms);
	Ferry__V1__ServerMessage *m = NULL;
	char		err[256];

	if (n < 0)
		return NULL;
	if (frame_decode_server(c->ws->msg, (size_t) n, &frame_server_limits, &m, err, sizeof(err)) != FRAME_OK)
	{
		diag("undecodable server frame: %s", err);
		return NULL;
	}
	return m;
}

static inline char *
join_values(Ferry__V1__Change *ch, const int *pick, int npick)
{
	size_t		cap = 64,
				len = 0;
	char	   *out = malloc(cap);
	int			n = pick ? npick : (int) ch->n_values;

	out[0] = 0;
	for (int k = 0; k < n; k++)
	{
		int			i = pick ? pick[k] : k;
		int			isnull = 0;
		const char *v;

		for (size_t j = 0; j < ch->n_nulls; j++)
			if ((int) ch->nulls[j] == i)
				isnull = 1;
		v = isnull ? "\\N" : (i < (int) ch->n_values ? ch->values[i] : "?");
		while (len + strlen(v) + 2 > cap)
			out = realloc(out, cap *= 2);
		len += sprintf(out + len, "%s%s", k ? "|" : "", v);
	}
	return out;
}

static inline int
find_row(Client *c, const char *key)
{
	for (int i = 0; i < c->nrows; i++)
		if (strcmp(c->rows[i].key, key) == 0)
			return i;
	return -1;
}

static inline void
apply_change(Client *c, Ferry__V1__Change *ch)
{
	char	   *key;
	int			i;

	if (ch->op == FERRY__V1__OP__DELETE)
	{
		int			all[16];

		for (int k = 0; k < c->nkeys; k++)
			all[k] = k;
		key = join_values(ch, all, c->nkeys);
		c->deletes++;
		i = find_row(c, key);
		if (i >= 0)
		{
			free(c->rows[i].key);
			free(c->rows[i].values);
			c->rows[i] = c->rows[--c->nrows];
		}
		free(key);
		return;
	}
	key = join_values(ch, c->keycols, c->nkeys);
	if (ch->op == FERRY__V1__OP__INSERT)
		c->inserts++;
	else
		c->updates++;
	i = find_row(c, key);
	if (i < 0)
	{
		if (c->nrows == MAX_ROWS)
			bail_out("replica full");
		i = c->nrows++;
		c->rows[i].key = key;
	}
	else
	{
		free(key);
		free(c->rows[i].values);
	}
	c->rows[i].values = join_values(ch, NULL, 0);
	c->rows[i].version = ch->version;
}

/*
 * Handles one message into the replica state. Returns the message case, or 0
 * on timeout/close.
 */
static inline int
client_step(Client *c, int timeout_ms)
{
	Ferry__V1__ServerMessage *m = client_recv(c, timeout_ms);
	int			kind;

	if (m == NULL)
		return 0;
	kind = m->msg_case;
	switch (m->msg_case)
	{
		case FERRY__V1__SERVER_MESSAGE__MSG_SUBSCRIBED:
			if (m->subscribed->subscription_id == c->sub)
			{
				c->ncols = (int) m->subscribed->n_columns;
				c->nkeys = 0;
				for (int i = 0; i < c->ncols; i++)
					if (m->subscribed->columns[i]->key)
						c->keycols[c->nkeys++] = i;
				snprintf(c->handle, sizeof(c->handle), "%s", m->subscribed->handle);
				c->resumed = m->subscribed->resumed;
			}
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_CHANGES:
			if (m->changes->subscription_id == c->sub)
			{
				struct timespec ts;

				for (size_t i = 0; i < m->changes->n_changes; i++)
					apply_change(c, m->changes->changes[i]);
				snprintf(c->offset, sizeof(c->offset), "%s", m->changes->offset);
				c->up_to_date = 0;
				c->batches++;
				c->last_commit_ms = m->changes->commit_time_ms;
				clock_gettime(CLOCK_REALTIME, &ts);
				c->last_batch_at_ms = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
			}
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_UP_TO_DATE:
			if (m->up_to_date->subscription_id == c->sub)
			{
				c->up_to_date = 1;
				snprintf(c->offset, sizeof(c->offset), "%s", m->up_to_date->offset);
			}
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_MUST_REFETCH:
			if (m->must_refetch->subscription_id == c->sub)
				c->must_refetch = 1;
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_MUTATION_RESULTS:
			for (size_t i = 0; i < m->mutation_results->n_results && c->nresults < MAX_RESULTS; i++)
			{
				Ferry__V1__MutationResult *r = m->mutation_results->results[i];
				Result	   *out = &c->results[c->nresults++];

				snprintf(out->id, sizeof(out->id), "%s", r->id);
				out->status = r->status;
				snprintf(out->code, sizeof(out->code), "%s", r->error_code);
				out->retry_after_ms = r->retry_after_ms;
				out->version = r->version;
				snprintf(out->json, sizeof(out->json), "%s", r->result_json);
				out->rows_then = c->nrows;
			}
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_ERROR:
			c->last_error = m->error->code;
			snprintf(c->last_error_msg, sizeof(c->last_error_msg), "%s", m->error->message);
			break;
		default:
			break;
	}
	frame_free_server(m);
	return kind;
}

/* Opens a connection and says Hello; NULL when it failed (c->last_error says why, if known). */
static inline Client *
client_connect(Ferryd *d, const char *token, int64_t schema_version, int *error_code)
{
	Client	   *c = calloc(1, sizeof(Client));
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Hello h = FERRY__V1__HELLO__INIT;
	int			kind;

	if (error_code)
		*error_code = 0;
	c->ws = ws_connect("127.0.0.1", d->port, "/v1/ws", "ferry.v1");
	if (c->ws == NULL)
		bail_out("cannot connect to ferryd on port %d", d->port);
	c->token = strdup(token);
	h.protocol_version = 1;
	h.client_id = "test-client";
	h.token = c->token;
	h.schema_version = schema_version;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HELLO;
	m.hello = &h;
	client_send(c, &m);
	kind = client_step(c, 5000);
	if (kind != FERRY__V1__SERVER_MESSAGE__MSG_WELCOME)
	{
		if (error_code)
			*error_code = c->last_error;
		ws_close(c->ws);
		free(c->token);
		free(c);
		return NULL;
	}
	return c;
}

static inline Client *
client_open(Ferryd *d, const char *sub, const char *const *tenants, size_t n, const char *role)
{
	char	   *tok = make_token(sub, tenants, n, role, 3600);
	Client	   *c = client_connect(d, tok, 0, NULL);

	free(tok);
	if (c == NULL)
		bail_out("ferryd refused a valid token");
	return c;
}

static inline void
client_subscribe(Client *c, uint32_t id, const char *table, const char *where, const char *handle,
				 const char *offset)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Subscribe s = FERRY__V1__SUBSCRIBE__INIT;

	s.subscription_id = id;
	s.table = (char *) table;
	s.where = (char *) (where ? where : "");
	s.handle = (char *) (handle ? handle : "");
	s.offset = (char *) (offset ? offset : "");
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_SUBSCRIBE;
	m.subscribe = &s;
	c->sub = id;
	c->up_to_date = 0;
	c->must_refetch = 0;
	c->last_error = 0;
	client_send(c, &m);
}

/* Pushes one MutationBatch of n mutations (ids[i], jsons[i]). */
static inline void
client_push(Client *c, int n, const char *const *ids, const char *const *jsons)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__MutationBatch b = FERRY__V1__MUTATION_BATCH__INIT;
	Ferry__V1__Mutation *ms = calloc(n, sizeof(Ferry__V1__Mutation));
	Ferry__V1__Mutation **mp = calloc(n, sizeof(Ferry__V1__Mutation *));

	for (int i = 0; i < n; i++)
	{
		ferry__v1__mutation__init(&ms[i]);
		ms[i].id = (char *) ids[i];
		ms[i].json = (char *) jsons[i];
		mp[i] = &ms[i];
	}
	b.n_mutations = (size_t) n;
	b.mutations = mp;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_MUTATIONS;
	m.mutations = &b;
	client_send(c, &m);
	free(ms);
	free(mp);
}

/* Reads until at least n results arrived (1) or the timeout (0). */
static inline int
client_wait_results(Client *c, int n, int timeout_ms)
{
	int64_t		deadline = ws_now_ms() + timeout_ms;

	while (c->nresults < n && ws_now_ms() < deadline)
		if (client_step(c, 200) == 0 && c->ws->closed)
			break;
	return c->nresults >= n;
}

/* Reads until the subscription is up to date (1), or a timeout/refetch/error (0). */
static inline int
client_sync(Client *c, int timeout_ms)
{
	int64_t		deadline = ws_now_ms() + timeout_ms;

	c->up_to_date = 0;
	while (ws_now_ms() < deadline)
	{
		int			left = (int) (deadline - ws_now_ms());

		if (client_step(c, left) == 0 && c->ws->closed)
			return 0;
		if (c->up_to_date)
			return 1;
		if (c->must_refetch || c->last_error)
			return 0;
	}
	return 0;
}

/* Waits until the replica satisfies pred, reading messages meanwhile. */
static inline int
client_wait(Client *c, int (*pred)(Client *, void *), void *arg, int timeout_ms)
{
	int64_t		deadline = ws_now_ms() + timeout_ms;

	while (!pred(c, arg))
	{
		int			left = (int) (deadline - ws_now_ms());

		if (left <= 0)
			return 0;
		if (client_step(c, left > 200 ? 200 : left) == 0 && c->ws->closed)
			return pred(c, arg);
	}
	return 1;
}

static inline void
client_close(Client *c)
{
	if (c == NULL)
		return;
	ws_close(c->ws);
	for (int i = 0; i < c->nrows; i++)
	{
		free(c->rows[i].key);
		free(c->rows[i].values);
	}
	free(c->token);
	free(c);
}

#endif
