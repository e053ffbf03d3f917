/*
 * gateway/session.c -- WebSocket sessions: handshake, subscriptions, streaming, liveness.
 *
 * One Session per connection "created for each client connecting to us".
 * Frames leave only from the WRITEABLE callback, one lws_write each: first
 * queued control frames (Welcome, Subscribed, errors...), then change
 * batches read from the shape logs. The shape log is the send buffer: a
 * session holds one frame at a time, so a slow client costs disk, not
 * memory, and is cut off when its socket stays choked too long; it resumes
 * from its offset. Protocol: docs/protocol.md, proto/ferry.proto.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "frame.h"
#include "gateway.h"
#include "http.h"
#include "log.h"
#include "writes.h"

#define MAX_SUBSCRIPTIONS 256	/* per connection */
#define MAX_QUEUED_FRAMES 512	/* control frames waiting to be sent */
#define BATCH_BYTES (256 * 1024)	/* a ChangeBatch is cut (partial) past this */
#define SLOW_CLIENT_SECONDS 30	/* choked this long: cut */
#define TOKEN_WARNING_SECONDS 60	/* TokenExpiring this long before exp */

typedef struct OutFrame
{
	struct OutFrame *next;		/* queue */
	uint8_t    *buf;			/* LWS_PRE headroom, then the frame */
	size_t		len;			/* frame bytes after the headroom */
	int			fatal;			/* close after sending */
	int			close_code;		/* WebSocket close code when fatal */
} OutFrame;

typedef struct Subscription
{
	struct Session *session;	/* owner */
	struct Subscription *next;	/* in the session's list */
	uint32_t	id;				/* client's subscription id */
	Shape	   *shape;			/* the shape it reads */
	SlogCursor *cursor;			/* open once the shape is READY */
	SlogOffset	offset;			/* last offset sent (or resumed from) */
	int			wants_up_to_date;	/* sent changes since the last UpToDate */
	int			initial_done;	/* the first UpToDate was sent */
	int			has_data;		/* the log may have entries for it */
	int			gone;			/* its offset left the log: must refetch */
	/* an entry read but not yet sent (it starts the next transaction) */
	uint8_t    *carry;			/* payload copy, or NULL */
	size_t		carry_len;
	SlogOffset	carry_off;
} Subscription;

typedef struct Session
{
	struct lws *wsi;			/* the connection */
	struct Session *next;		/* in gw->sessions */
	struct Session *prev;
	char		id[24];			/* for logs */
	int			authed;			/* Hello accepted */
	AuthClaims	claims;			/* the token's claims */
	char	   *client_id;		/* Hello.client_id */
	int64_t		connected_us;	/* when it connected */
	int64_t		last_rx_us;		/* last frame received */
	int64_t		choked_since_us;	/* socket full since, or 0 */
	int			expiring_sent;	/* TokenExpiring sent for this token */
	Subscription *subs;			/* subscriptions */
	int			nsubs;
	OutFrame   *out_head;		/* control frames to send */
	OutFrame   *out_tail;
	int			nout;
	int			closing;		/* a fatal frame is queued: close after it */
	Wbuf		rx;				/* fragments of the message being received */
	int			rx_dropping;	/* discarding the rest of an oversized message */
	Wbuf		tx;				/* the change batch being sent */
	WireBatch	batch;			/* its builder */
	WriteQueue *writes;			/* pushed mutations (after Hello) */
	uint32_t	client_pending; /* mutations the client reports queued */
	uint64_t	client_oldest_ms;	/* age of its oldest, as reported */
} Session;

static uint64_t session_seq = 0;

size_t
session_size_of(void)
{
	return sizeof(Session);
}

size_t
session_size(void)
{
	size_t		n = 0;

	for (Session *s = gw->sessions; s != NULL; s = s->next)
		n++;
	return n;
}

/* ----------------------------------------------------------------
 * Outgoing control frames
 * ---------------------------------------------------------------- */

static void
queue_frame(Session *ss, uint8_t *buf, size_t len, int fatal, int close_code)
{
	OutFrame   *f = calloc(1, sizeof(OutFrame));

	f->buf = buf;
	f->len = len;
	f->fatal = fatal;
	f->close_code = close_code;
	if (ss->out_tail != NULL)
		ss->out_tail->next = f;
	else
		ss->out_head = f;
	ss->out_tail = f;
	ss->nout++;
	if (fatal)
		ss->closing = 1;
	lws_callback_on_writable(ss->wsi);
}

static void
send_msg(Session *ss, Ferry__V1__ServerMessage *m)
{
	uint8_t    *buf;
	size_t		len;
	char		err[256];

	if (ss->closing)
		return;
	if (ss->nout >= MAX_QUEUED_FRAMES)
	{
		/* A client that never reads its answers: cut it. */
		ss->closing = 1;
		gw->metrics.slow_clients_dropped++;
		lws_callback_on_writable(ss->wsi);
		return;
	}
	if (frame_encode_server_alloc(m, LWS_PRE, &buf, &len, err, sizeof(err)) != FRAME_OK)
	{
		log_error("session", "%s: cannot encode a %s: %s", ss->id, frame_server_type(m), err);
		return;
	}
	queue_frame(ss, buf, len, 0, 0);
}

static void
send_error(Session *ss, Ferry__V1__ErrorCode code, const char *message, uint32_t sub_id, int fatal,
		   uint32_t retry_after_ms)
{
	uint8_t    *buf;
	size_t		len;
	char		err[256];

	if (ss->closing)
		return;
	if (frame_encode_error(code, message, sub_id, fatal, retry_after_ms, LWS_PRE, &buf, &len,
						   err, sizeof(err)) != FRAME_OK)
		return;
	log_info("session", "%s: %s %s: %s", ss->id, fatal ? "closing with" : "error",
			 frame_error_code_name(code), message);
	queue_frame(ss, buf, len, fatal, frame_close_code(code));
}

/* ----------------------------------------------------------------
 * Subscriptions
 * ---------------------------------------------------------------- */

static Subscription *
find_sub(Session *ss, uint32_t id)
{
	for (Subscription *sub = ss->subs; sub != NULL; sub = sub->next)
		if (sub->id == id)
			return sub;
	return NULL;
}

static void
free_sub(Session *ss, Subscription *sub)
{
	Subscription **p;

	for (p = &ss->subs; *p != NULL; p = &(*p)->next)
		if (*p == sub)
		{
			*p = sub->next;
			break;
		}
	ss->nsubs--;
	if (sub->shape != NULL)
		shape_remove_sub(sub->shape, sub, gw_now_us());
	slog_cursor_close(sub->cursor);
	free(sub->carry);
	free(sub);
}

static void
send_must_refetch(Session *ss, Subscription *sub, const char *reason)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__MustRefetch mr = FERRY__V1__MUST_REFETCH__INIT;

	mr.subscription_id = sub->id;
	mr.reason = (char *) reason;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_MUST_REFETCH;
	m.must_refetch = &mr;
	send_msg(ss, &m);
	gw->metrics.must_refetch++;
	free_sub(ss, sub);
}

void
session_shape_invalid(Shape *s)
{
	/* Every subscriber drops its rows; the shape itself goes at the next sweep. */
	while (s->nsubs > 0)
	{
		Subscription *sub = s->subs[0];

		send_must_refetch(sub->session, sub, s->invalid_reason ? s->invalid_reason : "the shape is no longer valid");
	}
	http_shape_invalid(s);
}

void
session_notify_shape(Shape *s)
{
	for (int i = 0; i < s->nsubs; i++)
	{
		s->subs[i]->has_data = 1;
		lws_callback_on_writable(s->subs[i]->session->wsi);
	}
	http_notify_shape(s);
}

static void
send_subscribed(Session *ss, Subscription *sub, const CatTable *t, int resumed)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__Subscribed sb = FERRY__V1__SUBSCRIBED__INIT;
	Ferry__V1__Column *cols = calloc(sub->shape->ncols, sizeof(Ferry__V1__Column));
	Ferry__V1__Column **colp = calloc(sub->shape->ncols, sizeof(Ferry__V1__Column *));
	char		off[SLOG_OFFSET_BUFLEN];

	for (int i = 0; i < sub->shape->ncols; i++)
	{
		const CatColumn *c = &t->cols[sub->shape->cols[i]];

		ferry__v1__column__init(&cols[i]);
		cols[i].name = c->name;
		cols[i].type = c->type_name;
		cols[i].key = c->is_key;
		cols[i].type_oid = c->type_oid;
		colp[i] = &cols[i];
	}
	sb.subscription_id = sub->id;
	sb.handle = sub->shape->handle;
	sb.n_columns = sub->shape->ncols;
	sb.columns = colp;
	sb.table = sub->shape->table;
	sb.offset = slog_offset_format(sub->offset, off);
	sb.resumed = resumed;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_SUBSCRIBED;
	m.subscribed = &sb;
	send_msg(ss, &m);
	free(cols);
	free(colp);
}

static Ferry__V1__ErrorCode
shape_err_code(ShapeErr k)
{
	switch (k)
	{
		case SHAPE_ERR_TABLE:
			return FERRY__V1__ERROR_CODE__UNKNOWN_TABLE;
		case SHAPE_ERR_COLUMN:
			return FERRY__V1__ERROR_CODE__UNKNOWN_COLUMN;
		case SHAPE_ERR_WHERE:
			return FERRY__V1__ERROR_CODE__BAD_WHERE;
		default:
			return FERRY__V1__ERROR_CODE__INTERNAL;
	}
}

/* Opens sub's cursor on a READY shape; GONE means the client must refetch. */
static int
open_cursor(Session *ss, Subscription *sub)
{
	char		err[256];
	int			rc = slog_cursor_open(sub->shape->log, sub->offset, &sub->cursor, err, sizeof(err));

	if (rc == SLOG_OK)
		return 0;
	if (rc != SLOG_GONE)
		log_error("session", "%s: shape %s: %s", ss->id, sub->shape->handle, err);
	sub->gone = 1;
	return -1;
}

static void
on_subscribe(Session *ss, Ferry__V1__Subscribe *req)
{
	ShapeRequest sr = {0};
	ShapeClaims sc = {0};
	Shape	   *shape;
	ShapeErr	kind;
	int			created;
	char		err[512];
	Subscription *sub;
	SlogOffset	want = SLOG_OFFSET_START;
	int			resume = 0;
	int			asked;

	if (req->subscription_id == 0 || find_sub(ss, req->subscription_id) != NULL)
	{
		send_error(ss, FERRY__V1__ERROR_CODE__BAD_SUBSCRIPTION, "subscription_id must be non-zero and not in use",
				   req->subscription_id, 0, 0);
		return;
	}
	{
		uint32_t	wait = writes_pull(ss->writes, gw_now_us());

		if (wait > 0)
		{
			send_error(ss, FERRY__V1__ERROR_CODE__RATE_LIMITED, "subscription rate limit reached; wait",
					   req->subscription_id, 0, wait);
			return;
		}
	}
	if (ss->nsubs >= MAX_SUBSCRIPTIONS)
	{
		send_error(ss, FERRY__V1__ERROR_CODE__TOO_MANY_SUBSCRIPTIONS, "too many subscriptions on one connection",
				   req->subscription_id, 0, 0);
		return;
	}
	if (req->offset != NULL && req->offset[0] != '\0' &&
		slog_offset_parse(req->offset, strlen(req->offset), &want, err, sizeof(err)) != SLOG_OK)
	{
		send_error(ss, FERRY__V1__ERROR_CODE__BAD_OFFSET, err, req->subscription_id, 0, 0);
		return;
	}
	sr.table = req->table;
	sr.where = req->where;
	sr.ncolumns = (int) req->n_columns;
	sr.columns = req->columns;
	sc.sub = ss->claims.sub;
	sc.role = ss->claims.role;
	sc.ntenants = (int) ss->claims.n_tenants;
	sc.tenants = ss->claims.tenants;
	sc.json = ss->claims.json;

	shape = shape_resolve(&gw->shapes, gw->cat, &sr, &sc, &created, &kind, err, sizeof(err));
	if (shape == NULL)
	{
		send_error(ss, shape_err_code(kind), err, req->subscription_id, 0, 0);
		return;
	}
	/* A resume is honoured only for the handle this request resolves to: never another's shape. */
	asked = req->handle != NULL && req->handle[0] != '\0' && !want.start;
	if (asked && !created && strcmp(req->handle, shape->handle) == 0)
		resume = 1;

	if (created && snapshot_start(shape, cat_table_by_relid(gw->cat, shape->relid), err, sizeof(err)) != 0)
	{
		shape_invalidate(shape, err);
		send_error(ss, FERRY__V1__ERROR_CODE__INTERNAL, err, req->subscription_id, 0, 1000);
		return;
	}

	sub = calloc(1, sizeof(Subscription));
	sub->session = ss;
	sub->id = req->subscription_id;
	sub->shape = shape;
	sub->offset = resume ? want : SLOG_OFFSET_START;
	sub->next = ss->subs;
	ss->subs = sub;
	ss->nsubs++;
	shape_add_sub(shape, sub);

	/*
	 * A resume that cannot be served (another handle now, or an offset the
	 * log no longer has) is a must-refetch: the client drops the rows it has
	 * and subscribes again from "-1" (docs/protocol.md).
	 */
	if (asked && resume && shape->state == SHAPE_READY && open_cursor(ss, sub) != 0 && shape->hidden_above != 0 &&
		slog_offset_cmp(want, slog_last(shape->log)) <= 0)
	{
		/* The offset is in entries hidden since the restart: resume once they show. */
		sub->gone = 0;
		send_subscribed(ss, sub, cat_table_by_relid(gw->cat, shape->relid), resume);
		return;
	}
	if (asked && (!resume || (shape->state == SHAPE_READY && sub->cursor == NULL && open_cursor(ss, sub) != 0)))
	{
		send_must_refetch(ss, sub, resume ? "the offset is no longer in the shape log"
						  : "the shape was rebuilt; subscribe again from -1");
		return;
	}
	if (shape->state == SHAPE_READY && sub->cursor == NULL && open_cursor(ss, sub) != 0)
	{
		/* The log lost its beginning: new subscribers need a new shape. */
		shape_invalidate(shape, "the shape log no longer has its beginning");
		session_shape_invalid(shape);
		send_error(ss, FERRY__V1__ERROR_CODE__UNAVAILABLE,
				   "the shape is being rebuilt; subscribe again", req->subscription_id, 0, 100);
		return;
	}
	send_subscribed(ss, sub, cat_table_by_relid(gw->cat, shape->relid), resume);
	sub->has_data = 1;
	lws_callback_on_writable(ss->wsi);
}

static void
on_unsubscribe(Session *ss, Ferry__V1__Unsubscribe *req)
{
	Subscription *sub = find_sub(ss, req->subscription_id);
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__Unsubscribed u = FERRY__V1__UNSUBSCRIBED__INIT;

	if (sub == NULL)
	{
		send_error(ss, FERRY__V1__ERROR_CODE__BAD_SUBSCRIPTION, "no such subscription", req->subscription_id, 0, 0);
		return;
	}
	free_sub(ss, sub);
	u.subscription_id = req->subscription_id;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_UNSUBSCRIBED;
	m.unsubscribed = &u;
	send_msg(ss, &m);
}

/* ----------------------------------------------------------------
 * Handshake and tokens
 * ---------------------------------------------------------------- */

static Ferry__V1__ErrorCode
auth_error_code(int rc)
{
	return rc == AUTH_ERR_EXPIRED ? FERRY__V1__ERROR_CODE__TOKEN_EXPIRED : FERRY__V1__ERROR_CODE__UNAUTHENTICATED;
}

static void
on_hello(Session *ss, Ferry__V1__Hello *h)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__Welcome w = FERRY__V1__WELCOME__INIT;
	char		err[256];
	int			rc;

	if (h->protocol_version != FRAME_PROTOCOL_VERSION)
	{
		snprintf(err, sizeof(err), "protocol version %u is not spoken here; this server speaks %d",
				 h->protocol_version, FRAME_PROTOCOL_VERSION);
		send_error(ss, FERRY__V1__ERROR_CODE__UNSUPPORTED_VERSION, err, 0, 1, 0);
		return;
	}
	rc = auth_verify(h->token, gw->cfg->jwt_secret, gw->cfg->jwt_secret_len, time(NULL), &ss->claims,
					 err, sizeof(err));
	if (rc != AUTH_OK)
	{
		gw->metrics.auth_failures++;
		send_error(ss, auth_error_code(rc), err, 0, 1, 0);
		return;
	}
	if (h->schema_version != 0 && h->schema_version < gw->cat->min_client_schema_version)
	{
		snprintf(err, sizeof(err), "client schema version %lld is below the minimum %lld: drop the cached rows "
				 "and connect again with schema version 0", (long long) h->schema_version,
				 (long long) gw->cat->min_client_schema_version);
		send_error(ss, FERRY__V1__ERROR_CODE__SCHEMA_TOO_OLD, err, 0, 1, 0);
		return;
	}
	ss->authed = 1;
	ss->client_id = strdup(h->client_id);
	ss->writes = writes_open(ss->wsi, ss->client_id, ss->claims.sub, ss->claims.json);
	w.protocol_version = FRAME_PROTOCOL_VERSION;
	w.schema_version = gw->cat->schema_version;
	w.min_schema_version = gw->cat->min_client_schema_version;
	w.server_version = "ferryd/0.1.0";
	w.session_id = ss->id;
	w.heartbeat_interval_ms = (uint32_t) gw->cfg->heartbeat * 1000;
	w.idle_timeout_ms = (uint32_t) gw->cfg->heartbeat * 3000;
	w.token_expires_at = ss->claims.exp;
	w.max_frame_bytes = (uint32_t) gw->cfg->max_frame;
	w.max_mutations_per_batch = FRAME_MAX_MUTATIONS;
	w.user_id = ss->claims.sub;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_WELCOME;
	m.welcome = &w;
	send_msg(ss, &m);
	log_info("session", "%s: hello from client %s, user %s, %zu tenants", ss->id, ss->client_id,
			 ss->claims.sub, ss->claims.n_tenants);
}

static void
on_refresh(Session *ss, Ferry__V1__RefreshToken *r)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__TokenRefreshed tr = FERRY__V1__TOKEN_REFRESHED__INIT;
	AuthClaims	claims;
	char		err[256];
	int			rc = auth_verify(r->token, gw->cfg->jwt_secret, gw->cfg->jwt_secret_len, time(NULL), &claims,
								 err, sizeof(err));

	if (rc != AUTH_OK)
	{
		gw->metrics.auth_failures++;
		send_error(ss, auth_error_code(rc), err, 0, 1, 0);
		return;
	}
	if (strcmp(claims.sub, ss->claims.sub) != 0)
	{
		auth_claims_free(&claims);
		send_error(ss, FERRY__V1__ERROR_CODE__FORBIDDEN, "a refreshed token must be for the same user", 0, 1, 0);
		return;
	}
	if (strcmp(claims.json, ss->claims.json) != 0)
	{
		/* Tenants or role changed: every shape was resolved with the old claims. */
		while (ss->subs != NULL)
			send_must_refetch(ss, ss->subs, "the token's claims changed");
	}
	auth_claims_free(&ss->claims);
	ss->claims = claims;
	ss->expiring_sent = 0;
	writes_set_claims(ss->writes, ss->claims.json);
	tr.token_expires_at = claims.exp;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_TOKEN_REFRESHED;
	m.token_refreshed = &tr;
	send_msg(ss, &m);
}

static void
on_heartbeat(Session *ss, Ferry__V1__Heartbeat *hb)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__Pong p = FERRY__V1__PONG__INIT;

	ss->client_pending = hb->pending_mutations;
	ss->client_oldest_ms = hb->oldest_pending_age_ms;
	p.echo_sent_at_ms = hb->sent_at_ms;
	p.server_time_ms = gw_now_us() / 1000;
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_PONG;
	m.pong = &p;
	send_msg(ss, &m);
}

static void
on_message(Session *ss, const uint8_t *data, size_t len)
{
	Ferry__V1__ClientMessage *msg;
	FrameLimits lim = frame_client_limits;
	char		err[256];
	int			rc;

	gw->metrics.frames_received++;
	lim.max_frame_bytes = gw->cfg->max_frame;
	rc = frame_decode_client(data, len, &lim, &msg, err, sizeof(err));
	if (rc != FRAME_OK)
	{
		gw->metrics.bad_frames++;
		/* Before the handshake nothing is trusted: close. After it, the session goes on. */
		send_error(ss, frame_error_code(rc), err, 0, !ss->authed, 0);
		return;
	}
	if (!ss->authed && msg->msg_case != FERRY__V1__CLIENT_MESSAGE__MSG_HELLO)
		send_error(ss, FERRY__V1__ERROR_CODE__UNAUTHENTICATED, "the first frame must be Hello", 0, 1, 0);
	else if (ss->authed && msg->msg_case == FERRY__V1__CLIENT_MESSAGE__MSG_HELLO)
		send_error(ss, FERRY__V1__ERROR_CODE__BAD_FRAME, "Hello was already received", 0, 0, 0);
	else
		switch (msg->msg_case)
		{
			case FERRY__V1__CLIENT_MESSAGE__MSG_HELLO:
				on_hello(ss, msg->hello);
				break;
			case FERRY__V1__CLIENT_MESSAGE__MSG_SUBSCRIBE:
				on_subscribe(ss, msg->subscribe);
				break;
			case FERRY__V1__CLIENT_MESSAGE__MSG_UNSUBSCRIBE:
				on_unsubscribe(ss, msg->unsubscribe);
				break;
			case FERRY__V1__CLIENT_MESSAGE__MSG_HEARTBEAT:
				on_heartbeat(ss, msg->heartbeat);
				break;
			case FERRY__V1__CLIENT_MESSAGE__MSG_REFRESH_TOKEN:
				on_refresh(ss, msg->refresh_token);
				break;
			case FERRY__V1__CLIENT_MESSAGE__MSG_MUTATIONS:
				writes_push(ss->writes, msg->mutations, gw_now_us());
				break;
			default:
				send_error(ss, FERRY__V1__ERROR_CODE__BAD_FRAME, "unknown message", 0, 0, 0);
		}
	frame_free_client(msg);
}

/* ----------------------------------------------------------------
 * Streaming
 * ---------------------------------------------------------------- */

static int64_t
entry_commit_ms(const uint8_t *p)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t) p[i] << (8 * i);
	return (int64_t) v;
}

/*
 * Builds the next ChangeBatch of sub into ss->tx: the entries of one
 * transaction (or up to BATCH_BYTES of one; then partial). Returns 1 when a
 * frame is ready, 0 when there is nothing to send, -1 when the subscription
 * must refetch.
 */
static int
next_batch(Session *ss, Subscription *sub, int *caught_up)
{
	SlogEntry	e;
	char		err[256];
	uint64_t	lsn = 0;
	int64_t		commit_ms = 0;
	int			n = 0;
	int			partial = 0;
	char		off[SLOG_OFFSET_BUFLEN];
	int			rc;

	*caught_up = 0;
	wire_batch_begin(&ss->batch, sub->id);
	if (sub->carry != NULL)
	{
		lsn = sub->carry_off.lsn;
		commit_ms = entry_commit_ms(sub->carry);
		wire_batch_add(&ss->batch, sub->carry + 8, sub->carry_len - 8);
		sub->offset = sub->carry_off;
		free(sub->carry);
		sub->carry = NULL;
		n++;
	}
	for (;;)
	{
		int			full = ss->batch.body.len >= BATCH_BYTES;

		rc = slog_cursor_next(sub->cursor, &e, err, sizeof(err));
		if (rc == SLOG_END)
		{
			*caught_up = 1;
			break;
		}
		if (rc != SLOG_OK)
		{
			if (rc != SLOG_GONE)
				log_error("session", "%s: reading shape %s: %s", ss->id, sub->shape->handle, err);
			return -1;
		}
		if (e.len < 8)
			continue;
		if (n > 0 && (e.lsn != lsn || full))
		{
			/*
			 * The next transaction, or more of this one than fits: keep the
			 * entry for the next frame. Only now is it known whether the
			 * transaction goes on past this frame.
			 */
			partial = e.lsn == lsn && lsn != 0;
			sub->carry = malloc(e.len);
			memcpy(sub->carry, e.payload, e.len);
			sub->carry_len = e.len;
			sub->carry_off.lsn = e.lsn;
			sub->carry_off.op = e.op;
			sub->carry_off.start = 0;
			break;
		}
		lsn = e.lsn;
		commit_ms = entry_commit_ms(e.payload);
		wire_batch_add(&ss->batch, (const uint8_t *) e.payload + 8, e.len - 8);
		sub->offset.lsn = e.lsn;
		sub->offset.op = e.op;
		sub->offset.start = 0;
		n++;
	}
	if (n == 0)
		return 0;
	wire_batch_finish(&ss->batch, slog_offset_format(sub->offset, off), commit_ms, partial, LWS_PRE, &ss->tx);
	return 1;
}

static void
queue_up_to_date(Session *ss, Subscription *sub)
{
	Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
	Ferry__V1__UpToDate u = FERRY__V1__UP_TO_DATE__INIT;
	char		off[SLOG_OFFSET_BUFLEN];

	u.subscription_id = sub->id;
	u.offset = slog_offset_format(sub->offset, off);
	m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_UP_TO_DATE;
	m.up_to_date = &u;
	send_msg(ss, &m);
	sub->wants_up_to_date = 0;
	sub->initial_done = 1;
}

/* Writes one frame; returns -1 to close the connection. */
static int
on_writable(Session *ss)
{
	if (ss->out_head != NULL)
	{
		OutFrame   *f = ss->out_head;
		int			n = lws_write(ss->wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_BINARY);
		int			fatal = f->fatal;
		int			code = f->close_code;

		ss->out_head = f->next;
		if (ss->out_head == NULL)
			ss->out_tail = NULL;
		ss->nout--;
		free(f->buf);
		free(f);
		if (n < 0)
			return -1;
		gw->metrics.bytes_sent += (uint64_t) n;
		if (fatal)
		{
			lws_close_reason(ss->wsi, (enum lws_close_status) code, (unsigned char *) "", 0);
			return -1;
		}
		lws_callback_on_writable(ss->wsi);
		return 0;
	}
	if (ss->closing)
		return -1;
	if (!ss->authed)
		return 0;

	/* Change batches, one subscription after another so none starves. */
	for (Subscription *sub = ss->subs; sub != NULL; sub = sub->next)
	{
		int			caught_up;
		int			rc;

		if (!sub->has_data || sub->shape->state != SHAPE_READY)
			continue;
		if (sub->cursor == NULL && open_cursor(ss, sub) != 0)
		{
			if (sub->shape->hidden_above != 0)
			{
				sub->gone = 0;	/* waits for the entries hidden since the restart */
				continue;
			}
			send_must_refetch(ss, sub, "the offset is no longer in the shape log");
			return 0;
		}
		rc = next_batch(ss, sub, &caught_up);
		if (rc < 0)
		{
			send_must_refetch(ss, sub, "the offset is no longer in the shape log");
			return 0;
		}
		if (caught_up && sub->carry == NULL)
			sub->has_data = 0;
		if (rc == 1)
		{
			size_t		len = ss->tx.len - LWS_PRE;
			int			n = lws_write(ss->wsi, ss->tx.data + LWS_PRE, len, LWS_WRITE_BINARY);

			if (n < 0)
				return -1;
			gw->metrics.bytes_sent += (uint64_t) n;
			sub->wants_up_to_date = 1;
			/* move this subscription to the end of the list for fairness */
			if (sub->next != NULL)
			{
				Subscription **p;

				for (p = &ss->subs; *p != sub; p = &(*p)->next)
					;
				*p = sub->next;
				for (p = &ss->subs; *p != NULL; p = &(*p)->next)
					;
				*p = sub;
				sub->next = NULL;
			}
			if (caught_up && sub->carry == NULL)
				queue_up_to_date(ss, sub);
			lws_callback_on_writable(ss->wsi);
			return 0;
		}
		if (caught_up && (sub->wants_up_to_date || !sub->initial_done))
		{
			queue_up_to_date(ss, sub);
			return 0;
		}
	}

	/* Mutation results, once every change before them has gone out: acks follow their data. */
	for (Subscription *sub = ss->subs; sub != NULL; sub = sub->next)
		if (sub->shape->state == SHAPE_READY && (sub->has_data || sub->carry != NULL))
			return 0;
	{
		uint8_t    *buf;
		size_t		len;

		if (writes_take(ss->writes, &buf, &len))
		{
			int			n = lws_write(ss->wsi, buf + LWS_PRE, len, LWS_WRITE_BINARY);

			free(buf);
			if (n < 0)
				return -1;
			gw->metrics.bytes_sent += (uint64_t) n;
			lws_callback_on_writable(ss->wsi);
		}
	}
	return 0;
}

void
session_wake_writers(void)
{
	if (writes_unanswered() == 0)
		return;
	http_wake_writers();
	for (Session *ss = gw->sessions; ss != NULL; ss = ss->next)
		if (writes_pending(ss->writes))
			lws_callback_on_writable(ss->wsi);
}

void
session_client_queues(uint64_t *pending, double *oldest_seconds)
{
	uint64_t	oldest = 0;

	*pending = 0;
	for (Session *ss = gw->sessions; ss != NULL; ss = ss->next)
	{
		*pending += ss->client_pending;
		if (ss->client_pending > 0 && ss->client_oldest_ms > oldest)
			oldest = ss->client_oldest_ms;
	}
	*oldest_seconds = (double) oldest / 1000.0;
}

/* ----------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------- */

static void
session_destroy(Session *ss)
{
	while (ss->subs != NULL)
		free_sub(ss, ss->subs);
	while (ss->out_head != NULL)
	{
		OutFrame   *f = ss->out_head;

		ss->out_head = f->next;
		free(f->buf);
		free(f);
	}
	if (ss->prev != NULL)
		ss->prev->next = ss->next;
	else if (gw->sessions == ss)
		gw->sessions = ss->next;
	if (ss->next != NULL)
		ss->next->prev = ss->prev;
	writes_close(ss->writes);
	auth_claims_free(&ss->claims);
	free(ss->client_id);
	wbuf_free(&ss->rx);
	wbuf_free(&ss->tx);
	wire_batch_free(&ss->batch);
	gw->metrics.connections--;
}

int
session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	Session    *ss = user;

	switch (reason)
	{
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			{
				char		uri[64];

				if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, FRAME_PATH) != 0)
					return -1;	/* WebSockets live at /v1/ws only */
				if (gw->stopping)
					return -1;
				return 0;
			}
		case LWS_CALLBACK_ESTABLISHED:
			memset(ss, 0, sizeof(*ss));
			ss->wsi = wsi;
			snprintf(ss->id, sizeof(ss->id), "c%llu", (unsigned long long) ++session_seq);
			ss->connected_us = ss->last_rx_us = gw_now_us();
			ss->next = gw->sessions;
			if (gw->sessions != NULL)
				gw->sessions->prev = ss;
			gw->sessions = ss;
			gw->metrics.connections++;
			gw->metrics.connections_total++;
			return 0;
		case LWS_CALLBACK_RECEIVE:
			ss->last_rx_us = gw_now_us();
			if (lws_is_first_fragment(wsi))
			{
				wbuf_reset(&ss->rx);
				ss->rx_dropping = 0;
			}
			if (!lws_frame_is_binary(wsi))
			{
				gw->metrics.bad_frames++;
				if (lws_is_final_fragment(wsi))
					send_error(ss, FERRY__V1__ERROR_CODE__BAD_FRAME, "frames must be binary protobuf", 0,
							   !ss->authed, 0);
				return 0;
			}
			if (ss->rx_dropping || ss->rx.len + len > gw->cfg->max_frame)
			{
				if (!ss->rx_dropping)
				{
					char		msg[128];

					gw->metrics.bad_frames++;
					snprintf(msg, sizeof(msg), "a frame above %zu bytes", gw->cfg->max_frame);
					send_error(ss, FERRY__V1__ERROR_CODE__FRAME_TOO_LARGE, msg, 0, 1, 0);
				}
				ss->rx_dropping = 1;
				wbuf_reset(&ss->rx);
				return 0;
			}
			wbuf_put(&ss->rx, in, len);
			if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
			{
				on_message(ss, ss->rx.data, ss->rx.len);
				wbuf_reset(&ss->rx);
				if (ss->rx.cap > 65536)
				{
					wbuf_free(&ss->rx);
					wbuf_init(&ss->rx);
				}
			}
			return 0;
		case LWS_CALLBACK_SERVER_WRITEABLE:
			return on_writable(ss);
		case LWS_CALLBACK_CLOSED:
			session_destroy(ss);
			return 0;
		default:
			return 0;
	}
}

/* ----------------------------------------------------------------
 * Periodic checks
 * ---------------------------------------------------------------- */

typedef struct Sweep
{
	int64_t		now;			/* Unix us */
} Sweep;

static void
sweep_shape(Shape *s, void *arg)
{
	Sweep	   *sw = arg;

	/* Retention: every minute, old segments of live shapes go. */
	if (s->state == SHAPE_READY && sw->now - s->retained_at_us > 60 * 1000000LL)
	{
		char		err[256];

		s->retained_at_us = sw->now;
		if (slog_retain(s->log, (uint64_t) gw->cfg->retention_bytes, gw->cfg->retention_age, sw->now / 1000000,
						err, sizeof(err)) < 0)
			log_warn("session", "retention of shape %s: %s", s->handle, err);
	}
	/* Invalid shapes go once their snapshot (if any) stopped; idle ones after the retention age. */
	if (s->snapshot_job != NULL || s->nsubs > 0 || http_shape_waited(s))
		return;
	if (s->state == SHAPE_INVALID ||
		(s->idle_since_us > 0 && sw->now - s->idle_since_us > gw->cfg->retention_age * 1000000LL))
		shape_drop(&gw->shapes, s);
}

void
session_tick(int64_t now)
{
	static int64_t last_sweep = 0;

	for (Session *ss = gw->sessions; ss != NULL; ss = ss->next)
	{
		if (ss->closing)
			continue;
		if (!ss->authed && now - ss->connected_us > (int64_t) gw->cfg->hello_timeout * 1000000)
			send_error(ss, FERRY__V1__ERROR_CODE__IDLE_TIMEOUT, "no Hello in time", 0, 1, 0);
		else if (now - ss->last_rx_us > (int64_t) gw->cfg->heartbeat * 3000000)
			send_error(ss, FERRY__V1__ERROR_CODE__IDLE_TIMEOUT, "no frame for three heartbeat intervals", 0, 1, 0);
		else if (ss->authed && now / 1000000 >= ss->claims.exp)
			send_error(ss, FERRY__V1__ERROR_CODE__TOKEN_EXPIRED, "the token expired; connect with a new one", 0, 1, 0);
		else if (ss->authed && !ss->expiring_sent && now / 1000000 >= ss->claims.exp - TOKEN_WARNING_SECONDS)
		{
			Ferry__V1__ServerMessage m = FERRY__V1__SERVER_MESSAGE__INIT;
			Ferry__V1__TokenExpiring te = FERRY__V1__TOKEN_EXPIRING__INIT;

			te.token_expires_at = ss->claims.exp;
			m.msg_case = FERRY__V1__SERVER_MESSAGE__MSG_TOKEN_EXPIRING;
			m.token_expiring = &te;
			send_msg(ss, &m);
			ss->expiring_sent = 1;
		}
		if (lws_send_pipe_choked(ss->wsi))
		{
			if (ss->choked_since_us == 0)
				ss->choked_since_us = now;
			else if (now - ss->choked_since_us > SLOW_CLIENT_SECONDS * 1000000LL)
			{
				gw->metrics.slow_clients_dropped++;
				log_info("session", "%s: cut: its socket stayed full for %d s", ss->id, SLOW_CLIENT_SECONDS);
				ss->closing = 1;
				lws_set_timeout(ss->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
			}
		}
		else
			ss->choked_since_us = 0;
	}
	if (now - last_sweep > 1000000)
	{
		Sweep		sw = {now};

		last_sweep = now;
		shape_each(&gw->shapes, 0, sweep_shape, &sw);
	}
}

void
session_close_all(void)
{
	for (Session *ss = gw->sessions; ss != NULL; ss = ss->next)
		send_error(ss, FERRY__V1__ERROR_CODE__SHUTTING_DOWN, "the server is stopping; reconnect", 0, 1, 1000);
}
