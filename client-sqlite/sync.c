/*
 * client-sqlite/sync.c -- the sync engine: one WebSocket to ferryd, driven by steps.
 *
 *   offline --(backoff elapsed)--> connecting --(101)--> hello --(Welcome)--> ready
 *      ^                                                                        |
 *      +---------------- any failure, close, or silence (idle timeout) ---------+
 *
 * A step (ferry_sync_step) never blocks: it starts or continues the connection, takes
 * every complete frame and applies it (each ChangeBatch with its offset, each
 * MutationResults frame, in transactions nested in one per step), then sends what is due:
 * Subscribe for shapes not yet subscribed on this connection (after Welcome, so that a
 * schema mismatch can be handled first), MutationBatches (FIFO per row, one mutation in
 * flight per row, rows pipelined, at most FERRY_OPT_MAX_INFLIGHT batches unanswered),
 * heartbeats. ferry_sync_run is a poll(2) loop around it.
 *
 * Mutations are marked inflight when sent; a lost connection makes them pending again,
 * and they are sent again with the same ids (the server answers DUPLICATE for those it
 * had applied). One process syncs a file at a time (flock on "<file>-ferry-lock").
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "internal.h"
#include "ws.h"

#define MAX_SERVER_MESSAGE (16 * 1024 * 1024 + 4096)   /* the protocol's 16 MiB, plus room */
#define MAX_STEP_WAIT_MS 500            /* longest wait between steps (other processes' writes) */

/* ---- errors and state -------------------------------------------------------------- */

void
fy_sync_init(ferry *db)
{
	memset(&db->sync, 0, sizeof(db->sync));
	db->sync.lock_fd = -1;
}

/* fy_sync_set_error records the last sync error for the status (mutation_id may be NULL). */
void
fy_sync_set_error(ferry *db, const char *mutation_id, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(db->sync.last_error, sizeof(db->sync.last_error), fmt, ap);
	va_end(ap);
	snprintf(db->sync.last_error_mutation, sizeof(db->sync.last_error_mutation), "%s", mutation_id ? mutation_id : "");
}

/* fy_sync_fatal records a failure the app must act on: kept for the status, returned by the step. */
int
fy_sync_fatal(ferry *db, int rc, const char *fmt, ...) FY_PRINTF(3, 4);
int
fy_sync_fatal(ferry *db, int rc, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(db->sync.last_error, sizeof(db->sync.last_error), fmt, ap);
	va_end(ap);
	db->sync.last_error_mutation[0] = '\0';
	db->sync.fatal = rc;
	db->sync.fatal_new = true;
	snprintf(db->errmsg, sizeof(db->errmsg), "%s", db->sync.last_error);
	return rc;
}

static int
lock_file(ferry *db)
{
	int			fd;

	if (db->sync.lock_fd >= 0)
		return FERRY_OK;
	fd = fy_lock_open(db);
	if (fd < 0)
		return fy_err(db, FERRY_DB, "cannot create %s-ferry-lock: %s", db->path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
	{
		close(fd);
		return fy_err(db, FERRY_BUSY, "another process is syncing %s; let it finish or stop it", db->path);
	}
	db->sync.lock_fd = fd;
	/* whatever a dead syncer left in flight is pending again */
	return fy_exec(db, "UPDATE ferry_queue SET status = 'pending' WHERE status = 'inflight'");
}

static void
unlock_file(ferry *db)
{
	if (db->sync.lock_fd >= 0)
	{
		flock(db->sync.lock_fd, LOCK_UN);
		close(db->sync.lock_fd);
		db->sync.lock_fd = -1;
	}
}

static void
batches_free(ferry *db)
{
	FyBatch    *b = db->sync.inflight;

	while (b != NULL)
	{
		FyBatch    *next = b->next;

		for (int i = 0; i < b->n; i++)
			free(b->ids[i]);
		free(b->ids);
		free(b);
		b = next;
	}
	db->sync.inflight = db->sync.inflight_tail = NULL;
	db->sync.ninflight = 0;
}

/*
 * fy_sync_close drops the connection: in-flight mutations become pending, shapes must
 * subscribe again. With `schedule`, the next attempt is set after the backoff (the
 * engine keeps the sync lock); without, the engine stops and releases the lock. `why`,
 * when given, becomes the status' last error.
 */
void
fy_sync_close(ferry *db, const char *why, bool schedule)
{
	FySync	   *sy = &db->sync;
	bool		was_connected = sy->conn != FY_CONN_OFFLINE;

	if (sy->ws != NULL)
	{
		fy_ws_free(sy->ws, fy_ws_state(sy->ws) == FY_WS_OPEN ? 1000 : 0);
		sy->ws = NULL;
	}
	if (db->db != NULL && sy->ninflight > 0)
		fy_exec(db, "UPDATE ferry_queue SET status = 'pending' WHERE status = 'inflight'");
	batches_free(db);
	for (int i = 0; i < db->nshapes; i++)
	{
		FyShape    *s = db->shapes[i];

		s->sent = s->ready = s->up_to_date = s->resubscribe = false;
	}
	sy->conn = FY_CONN_OFFLINE;
	sy->closing = false;
	sy->refresh_sent = false;
	if (why != NULL)
		fy_sync_set_error(db, NULL, "%s", why);
	if (schedule)
	{
		sy->attempts++;
		sy->disconnects++;
		sy->next_connect_at = fy_mono_ms() + fy_backoff_ms(db, sy->attempts, sy->retry_after_ms);
		sy->retry_after_ms = 0;
	}
	else
	{
		sy->next_connect_at = 0;
		sy->attempts = 0;
		unlock_file(db);
	}
	if (was_connected && db->db != NULL)
		fy_status_changed(db);
}

/* ---- sending (mutations: push.c) ---------------------------------------------------- */

int
fy_sync_send(ferry *db, Ferry__V1__ClientMessage *m)
{
	size_t		n = ferry__v1__client_message__get_packed_size(m);
	uint8_t    *buf;
	int			rc;

	if (db->sync.ws == NULL)
		return FERRY_OK;		/* no connection (unit tests drive the engine without one) */
	if ((buf = malloc(n ? n : 1)) == NULL)
		return fy_err(db, FERRY_NOMEM, "out of memory");
	ferry__v1__client_message__pack(m, buf);
	rc = fy_ws_send(db->sync.ws, buf, n);
	free(buf);
	return rc == 0 ? FERRY_OK : fy_err(db, FERRY_NOMEM, "out of memory");
}

/* Asks the app for a token into a fresh buffer (wiped and freed by the caller). */
static char *
get_token(ferry *db)
{
	char	   *buf;
	int			rc;

	if (db->token_fn == NULL)
	{
		fy_sync_fatal(db, FERRY_AUTH, "no token: the app must install a token callback (ferry_set_token_callback)");
		return NULL;
	}
	if ((buf = calloc(1, FY_MAX_TOKEN + 1)) == NULL)
		return NULL;
	rc = db->token_fn(db->token_ctx, db->user_id, buf, FY_MAX_TOKEN + 1);
	buf[FY_MAX_TOKEN] = '\0';
	if (rc != FERRY_OK || buf[0] == '\0')
	{
		free(buf);
		fy_sync_fatal(db, FERRY_AUTH, "the app's token callback gave no token (it returned %d)", rc);
		return NULL;
	}
	return buf;
}

static void
wipe(char *token)
{
	if (token != NULL)
	{
		volatile char *p = token;

		while (*p)
			*p++ = 0;
		free(token);
	}
}

static int
send_hello(ferry *db)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Hello h = FERRY__V1__HELLO__INIT;
	char	   *token = get_token(db);
	int			rc;

	if (token == NULL)
		return FERRY_AUTH;
	h.protocol_version = 1;
	h.client_id = db->client_id;
	h.token = token;
	h.schema_version = db->schema_version;
	h.client_version = FY_CLIENT_VERSION;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HELLO;
	m.hello = &h;
	rc = fy_sync_send(db, &m);
	wipe(token);
	db->sync.conn = FY_CONN_HELLO;
	return rc;
}

void
fy_sync_refresh(ferry *db)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__RefreshToken r = FERRY__V1__REFRESH_TOKEN__INIT;
	char	   *token = get_token(db);

	db->sync.refresh_at = 0;
	if (token == NULL)
	{
		db->sync.refresh_at = fy_mono_ms() + 10000;	/* ask again */
		return;
	}
	r.token = token;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_REFRESH_TOKEN;
	m.refresh_token = &r;
	fy_sync_send(db, &m);
	wipe(token);
	db->sync.refresh_sent = true;
}

int
fy_sync_subscribe(ferry *db, FyShape *s)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Subscribe sub = FERRY__V1__SUBSCRIBE__INIT;
	char	   *cols = fy_strdup(s->columns);
	char	   *list[1600];
	size_t		n = 0;
	int			rc;

	for (char *tok = cols ? strtok(cols, ",") : NULL; tok != NULL && n < 1600; tok = strtok(NULL, ","))
	{
		while (*tok == ' ')
			tok++;
		for (char *e = tok + strlen(tok); e > tok && e[-1] == ' '; e--)
			e[-1] = '\0';
		if (*tok)
			list[n++] = tok;
	}
	sub.subscription_id = (uint32_t) s->id;
	sub.table = s->tbl;
	sub.where = s->where;
	sub.n_columns = n;
	sub.columns = list;
	sub.handle = s->handle;
	sub.offset = s->offset;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_SUBSCRIBE;
	m.subscribe = &sub;
	rc = fy_sync_send(db, &m);
	free(cols);
	s->sent = true;
	s->ready = false;
	s->up_to_date = false;
	return rc;
}

/* fy_sync_unsubscribe tells the server to stop subscription id (when connected). */
void
fy_sync_unsubscribe(ferry *db, int64_t id)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Unsubscribe u = FERRY__V1__UNSUBSCRIBE__INIT;

	if (db->sync.conn != FY_CONN_READY)
		return;
	u.subscription_id = (uint32_t) id;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_UNSUBSCRIBE;
	m.unsubscribe = &u;
	fy_sync_send(db, &m);
}

/*
 * fy_sync_subscribe_now makes a new or changed shape take effect on the live connection:
 * a shape already subscribed is unsubscribed first and subscribed again on Unsubscribed.
 */
void
fy_sync_subscribe_now(ferry *db, FyShape *s)
{
	if (s == NULL || db->sync.conn != FY_CONN_READY)
		return;
	if (s->sent)
	{
		s->resubscribe = true;
		s->ready = s->up_to_date = false;
		fy_sync_unsubscribe(db, s->id);
	}
	else
		fy_sync_subscribe(db, s);
}

static void
send_heartbeat(ferry *db)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Heartbeat h = FERRY__V1__HEARTBEAT__INIT;
	ferry_status st;

	fy_status_compute(db, &st);
	h.sent_at_ms = (uint64_t) fy_now_ms();
	h.pending_mutations = (uint32_t) (st.pending + st.inflight + st.conflicts);
	h.oldest_pending_age_ms = (uint64_t) st.oldest_pending_age_ms;
	h.failed_mutations = (uint32_t) st.failed;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HEARTBEAT;
	m.heartbeat = &h;
	fy_sync_send(db, &m);
	db->sync.last_heartbeat = fy_mono_ms();
}

/* ---- the step ---------------------------------------------------------------------- */

/*
 * Notices another process's writes: new mutations to send, new shapes. Looks at most
 * every OTHER_WRITERS_MS: each look is a read transaction (file locks), and a step runs
 * for every burst the server sends.
 */
#define OTHER_WRITERS_MS 20

static void
check_other_writers(ferry *db)
{
	sqlite3_stmt *st;
	int64_t		v = 0;
	int64_t		now = fy_mono_ms();

	if (now - db->sync.data_version_at < OTHER_WRITERS_MS && now >= db->sync.data_version_at)
		return;
	db->sync.data_version_at = now;
	if ((st = fy_cached(db, FY_Q_DATA_VERSION, "PRAGMA data_version")) == NULL)
		return;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (v == db->sync.data_version)
		return;
	db->sync.data_version = v;
	db->sync.next_send_at = 0;
	{
		char	   *mine = fy_shapes_signature(db, false);
		char	   *file = fy_shapes_signature(db, true);
		bool		same = mine != NULL && file != NULL && strcmp(mine, file) == 0;

		free(mine);
		free(file);
		if (!same)
		{
			/* another process subscribed, unsubscribed or changed a shape: start over with them */
			fy_sync_close(db, NULL, false);
			fy_reload(db);
		}
	}
}

/* Closes after a transport failure, keeping a fatal error's own message. */
static void
connection_lost(ferry *db, const char *why)
{
	bool		keep = db->sync.closing || db->sync.fatal != 0;
	int			attempts = db->sync.attempts;

	fy_sync_close(db, keep ? NULL : why, true);
	if (attempts < 0)
	{
		/* SCHEMA_TOO_OLD: straight back */
		db->sync.attempts = 0;
		db->sync.next_connect_at = 0;
	}
}

/*
 * Applies every complete frame, all in one SQLite transaction: a burst of change batches
 * and results costs one commit (relaxed: see fy_begin_relaxed), not one each. Each frame's own transaction
 * nests in it, so rows still go with their offsets. If anything was rolled back on the
 * way, the file and the engine's memory may disagree: the engine reloads from the file
 * and reconnects (every shape resumes from the offset in the file). Returns FERRY_OK or
 * an error the app must see.
 */
static int
handle_frames(ferry *db)
{
	FySync	   *sy = &db->sync;
	int			aborts = db->tx_aborts;
	bool		group = false;
	int			rc = FERRY_OK;
	char		err[512] = "";
	bool		lost = false;

	for (int n = 0; sy->ws != NULL && n < 1000; n++)
	{
		const uint8_t *data;
		size_t		len;
		int			got = fy_ws_next(sy->ws, &data, &len, err, sizeof(err));

		if (got == 0)
			break;
		if (got < 0)
		{
			lost = true;
			break;
		}
		sy->last_recv = fy_mono_ms();
		if (!group)
			group = fy_begin_relaxed(db) == FERRY_OK;
		if ((rc = fy_sync_handle_frame(db, data, len)) != FERRY_OK || db->tx_aborts != aborts)
		{
			snprintf(err, sizeof(err), "%.500s", db->errmsg);
			lost = sy->ws != NULL;
			break;
		}
	}
	if (group && db->in_tx > 0)
	{
		if (db->tx_aborts == aborts && fy_commit(db) != FERRY_OK)
		{
			snprintf(err, sizeof(err), "%.500s", db->errmsg);
			rc = FERRY_DB;
		}
		else if (db->tx_aborts != aborts)
			fy_rollback(db);
	}
	if (db->tx_aborts != aborts)
	{
		/* the file is the truth: take the positions from it again, and start over */
		fy_sync_close(db, err[0] ? err : NULL, true);
		if (fy_reload(db) != FERRY_OK)
			return FERRY_DB;
		return rc == FERRY_DB || rc == FERRY_NOMEM ? rc : (sy->fatal_new ? sy->fatal : FERRY_OK);
	}
	if (lost)
		connection_lost(db, err);
	if (rc == FERRY_DB || rc == FERRY_NOMEM)
	{
		if (sy->ws != NULL)
			fy_sync_close(db, err, true);
		return rc;
	}
	if (sy->ws == NULL)
		return sy->fatal_new ? sy->fatal : FERRY_OK;
	return FERRY_OK;
}

static int
step(ferry *db)
{
	FySync	   *sy = &db->sync;
	int64_t		now = fy_mono_ms();
	char		err[512];
	int			rc;

	sy->fatal_new = false;
	if (sy->conn == FY_CONN_OFFLINE)
	{
		if (now < sy->next_connect_at)
			return FERRY_OK;
		if (db->url == NULL)
			return fy_sync_fatal(db, FERRY_MISUSE, "no server URL: call ferry_set_url (e.g. ws://localhost:7070)");
		if ((rc = lock_file(db)) != FERRY_OK)
			return fy_sync_fatal(db, rc, "%s", db->errmsg);
		check_other_writers(db);
		err[0] = '\0';
		if (fy_ws_connect(db->url, "ferry.v1", MAX_SERVER_MESSAGE, db->ca_file, &sy->ws, err, sizeof(err)) != 0)
		{
			fy_sync_close(db, err, true);
			fy_status_changed(db);
			return FERRY_OK;
		}
		sy->conn = FY_CONN_CONNECTING;
		sy->connect_started = now;
		sy->last_recv = now;
	}

	if (fy_ws_io(sy->ws, err, sizeof(err)) != 0)
	{
		connection_lost(db, err);
		return sy->fatal_new ? sy->fatal : FERRY_OK;
	}
	if (sy->conn == FY_CONN_CONNECTING && fy_ws_state(sy->ws) == FY_WS_OPEN)
	{
		sy->last_recv = now;
		if (send_hello(db) != FERRY_OK)
		{
			fy_sync_close(db, NULL, true);
			return sy->fatal_new ? sy->fatal : FERRY_OK;
		}
	}

	/* every complete frame */
	if ((rc = handle_frames(db)) != FERRY_OK)
		return rc;
	if (sy->ws == NULL)
		return sy->fatal_new ? sy->fatal : FERRY_OK;

	/* timers */
	now = fy_mono_ms();
	if (sy->conn != FY_CONN_READY && now - sy->connect_started > db->connect_timeout_ms)
	{
		snprintf(err, sizeof(err), "timed out connecting to %s after %lld ms", db->url,
				 (long long) db->connect_timeout_ms);
		connection_lost(db, err);
		return sy->fatal_new ? sy->fatal : FERRY_OK;
	}
	if (sy->conn == FY_CONN_READY)
	{
		if (now - sy->last_recv > (int64_t) sy->idle_ms)
		{
			snprintf(err, sizeof(err), "no word from the server in %u ms: connection presumed dead", sy->idle_ms);
			connection_lost(db, err);
			return FERRY_OK;
		}
		check_other_writers(db);
		if (sy->conn != FY_CONN_READY)
			return FERRY_OK;
		for (int i = 0; i < db->nshapes; i++)
		{
			FyShape    *s = db->shapes[i];

			if (!s->sent && !s->resubscribe && s->error == NULL && s->retry_at <= now)
				fy_sync_subscribe(db, s);
		}
		fy_sync_send_mutations(db);
		if (now - sy->last_heartbeat >= (int64_t) sy->heartbeat_ms)
			send_heartbeat(db);
		if (sy->refresh_at != 0 && now >= sy->refresh_at && !sy->refresh_sent)
			fy_sync_refresh(db);
	}
	if (fy_ws_io(sy->ws, err, sizeof(err)) != 0)
		connection_lost(db, err);
	fy_status_changed(db);
	return sy->fatal_new ? sy->fatal : FERRY_OK;
}

/* ---- the API ----------------------------------------------------------------------- */

int
ferry_sync_step(ferry *db, char **errmsg)
{
	int			rc = step(db);

	return fy_finish(db, rc, errmsg);
}

int
ferry_sync_fd(ferry *db)
{
	return db->sync.ws ? fy_ws_fd(db->sync.ws) : -1;
}

int
ferry_sync_events(ferry *db)
{
	return db->sync.ws ? fy_ws_events(db->sync.ws) : 0;
}

int
ferry_sync_timeout_ms(ferry *db)
{
	FySync	   *sy = &db->sync;
	int64_t		now = fy_mono_ms();
	int64_t		wait = MAX_STEP_WAIT_MS;

	if (sy->conn == FY_CONN_OFFLINE)
		wait = sy->next_connect_at - now;
	else if (sy->conn == FY_CONN_READY)
	{
		int64_t		hb = sy->last_heartbeat + sy->heartbeat_ms - now;
		int64_t		wall = fy_now_ms();

		if (hb < wait)
			wait = hb;
		/* with every in-flight slot taken, the next result (a socket event) comes first */
		if (sy->next_send_at != INT64_MAX && sy->ninflight < db->max_inflight && sy->next_send_at - wall < wait)
			wait = sy->next_send_at - wall;
		for (int i = 0; i < db->nshapes; i++)
			if (!db->shapes[i]->sent && db->shapes[i]->error == NULL && db->shapes[i]->retry_at - now < wait)
				wait = db->shapes[i]->retry_at - now;
	}
	if (wait > MAX_STEP_WAIT_MS)
		wait = MAX_STEP_WAIT_MS;
	return wait < 0 ? 0 : (int) wait;
}

int
ferry_sync_stop(ferry *db)
{
	fy_sync_close(db, NULL, false);
	return FERRY_OK;
}

int
ferry_sync_run(ferry *db, int timeout_ms, int flags, char **errmsg)
{
	int64_t		deadline = timeout_ms < 0 ? INT64_MAX : fy_mono_ms() + timeout_ms;
	int			disconnects = db->sync.disconnects;

	if (db->url == NULL)
		return fy_finish(db, fy_err(db, FERRY_MISUSE, "no server URL: call ferry_set_url (e.g. ws://localhost:7070)"),
						 errmsg);
	for (;;)
	{
		int			rc = step(db);
		int64_t		now;
		int			wait;

		if (rc != FERRY_OK)
			return fy_finish(db, rc, errmsg);
		if ((flags & FERRY_SYNC_UNTIL_SYNCED) && fy_sync_is_synced(db))
			return fy_finish(db, FERRY_OK, errmsg);
		if ((flags & FERRY_SYNC_ONCE) && db->sync.disconnects != disconnects)
			return fy_finish(db, fy_err(db, FERRY_OFFLINE, "%s", db->sync.last_error[0] ? db->sync.last_error :
										"the server could not be reached"), errmsg);
		now = fy_mono_ms();
		if (now >= deadline)
		{
			if (flags & FERRY_SYNC_UNTIL_SYNCED)
				return fy_finish(db, fy_err(db, FERRY_TIMEOUT, "not synced within %d ms%s%s", timeout_ms,
											db->sync.last_error[0] ? ": " : "", db->sync.last_error), errmsg);
			return fy_finish(db, FERRY_OK, errmsg);
		}
		wait = ferry_sync_timeout_ms(db);
		if (wait > deadline - now)
			wait = (int) (deadline - now);
		if (db->sync.ws != NULL)
		{
			struct pollfd pfd = {fy_ws_fd(db->sync.ws), (short) fy_ws_events(db->sync.ws), 0};

			poll(&pfd, 1, wait);
		}
		else if (wait > 0)
			poll(NULL, 0, wait);
	}
}
