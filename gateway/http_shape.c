/*
 * gateway/http_shape.c -- GET /v1/shape: ElectricSQL's HTTP shape API over ferry's shapes and logs.
 *
 * A request names a shape (table, where, columns, the token's claims) and an
 * offset; it is resolved to the same shared shape a WebSocket Subscribe gets,
 * and answered from the same log: the entries after the offset as change
 * messages, then an up-to-date control message when the log has no more.
 * A handle that is not the shape's current one gets 409 with the current
 * handle (must-refetch). A live request with nothing new is parked on the
 * shape and handled again when the log is appended to; after
 * HTTP_LONG_POLL_US it is answered up-to-date. The request is handled from
 * scratch each time (token, parameters, shape), so a woken request sees a
 * shape invalidated meanwhile as any new request would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "gateway.h"
#include "http.h"
#include "http_json.h"
#include "http_params.h"
#include "log.h"

static int
status_of(ShapeErr k)
{
	return k == SHAPE_ERR_TABLE || k == SHAPE_ERR_COLUMN || k == SHAPE_ERR_WHERE ? 400 : 503;
}

static const char *
code_of(ShapeErr k)
{
	switch (k)
	{
		case SHAPE_ERR_TABLE:
			return "UNKNOWN_TABLE";
		case SHAPE_ERR_COLUMN:
			return "UNKNOWN_COLUMN";
		case SHAPE_ERR_WHERE:
			return "BAD_WHERE";
		default:
			return "UNAVAILABLE";
	}
}

/* The cursor a live answer carries: 20-second intervals, never the one the client sent. */
static long long
live_cursor(const char *given)
{
	long long	c = (long long) (time(NULL) / 20);
	long long	g = given != NULL ? strtoll(given, NULL, 10) : 0;

	return c > g ? c : g + 1;
}

/* 409: the handle is not the shape's (any more); the client starts again from -1 with the new one. */
static void
must_refetch(HttpReq *r, const Shape *s)
{
	char		hdr[256];
	static const char body[] = "[{\"headers\":{\"control\":\"must-refetch\"}}]";

	gw->metrics.must_refetch++;
	snprintf(hdr, sizeof(hdr), "electric-handle: %s\ncache-control: public, max-age=60, must-revalidate\n"
			 "vary: authorization\n", s->handle);
	http_respond(r, 409, hdr, body, sizeof(body) - 1);
}

/* ----------------------------------------------------------------
 * SSE offsets
 *
 * In SSE mode the Electric client takes its next offset from the up-to-date
 * message: "<global_last_seen_lsn>_0". ferry's offsets name entries, and a
 * transaction's entries in one shape's log need not start at op 0, so each
 * SSE up-to-date is remembered as (handle, lsn) -> the op of the last entry
 * sent, and an offset "<lsn>_0" is read as that entry. Answers never end
 * right after an op-0 entry, so a client holding "<lsn>_0" either got it
 * from an SSE up-to-date or has all of transaction lsn: both mean "after the
 * transaction". Bounded: past SSE_MAX_ENDS the table starts again (a client
 * whose entry was forgotten gets 409 and refetches).
 * ---------------------------------------------------------------- */

#define SSE_MAX_ENDS 100000

static Hmap sse_ends;			/* "handle:lsn" -> last op + 1 */
static int	sse_ends_init;

static size_t
sse_key(char *key, size_t cap, const char *handle, uint64_t lsn)
{
	return (size_t) snprintf(key, cap, "%s:%llu", handle, (unsigned long long) lsn);
}

static void
sse_remember(const char *handle, SlogOffset last)
{
	char		key[96];
	size_t		n;

	if (last.start)
		return;
	if (!sse_ends_init || sse_ends.count >= SSE_MAX_ENDS)
	{
		if (sse_ends_init)
			hmap_destroy(&sse_ends);
		hmap_init(&sse_ends);
		sse_ends_init = 1;
	}
	n = sse_key(key, sizeof(key), handle, last.lsn);
	hmap_put(&sse_ends, key, n, (void *) (uintptr_t) (last.op + 1));
}

static void
sse_resolve(const char *handle, SlogOffset *off)
{
	char		key[96];
	size_t		n;
	uintptr_t	v;

	if (!sse_ends_init || off->start || off->op != 0 || handle == NULL)
		return;
	n = sse_key(key, sizeof(key), handle, off->lsn);
	if ((v = (uintptr_t) hmap_get(&sse_ends, key, n)) != 0)
		off->op = (uint32_t) (v - 1);
}

/* ----------------------------------------------------------------
 * Reading the log
 * ---------------------------------------------------------------- */

/*
 * Appends the messages after off to b (JSON array items, or SSE events), up
 * to about HTTP_CHUNK_BYTES; *last is the offset of the last entry read,
 * *up_to_date whether the log has no more. 0, or -1 when off is not in the
 * log.
 */
static int
read_messages(Shape *s, const CatTable *t, SlogOffset off, int sse, Wbuf *b, SlogOffset *last, int *n,
			  int *up_to_date)
{
	SlogCursor *c = NULL;
	SlogEntry	e;
	char		err[256];
	int			rc = slog_cursor_open(s->log, off, &c, err, sizeof(err));

	*last = off;
	*n = 0;
	*up_to_date = 0;
	if (rc != SLOG_OK)
	{
		if (rc != SLOG_GONE)
			log_error("http", "shape %s: %s", s->handle, err);
		return -1;
	}
	for (;;)
	{
		size_t		mark = b->len;

		/* never stop right after an op-0 entry (see SSE offsets) */
		if (b->len >= HTTP_CHUNK_BYTES && !(last->op == 0 && !last->start))
			break;
		rc = slog_cursor_next(c, &e, err, sizeof(err));
		if (rc == SLOG_END)
		{
			*up_to_date = 1;
			break;
		}
		if (rc != SLOG_OK)
		{
			if (rc != SLOG_GONE)
				log_error("http", "reading shape %s: %s", s->handle, err);
			slog_cursor_close(c);
			return -1;
		}
		last->lsn = e.lsn;
		last->op = e.op;
		last->start = 0;
		if (sse)
			wbuf_put(b, "data: ", 6);
		else if (*n > 0)
			wbuf_put(b, ",", 1);
		if (http_json_change(b, s, t, e.payload, e.len) != 0)
		{
			b->len = mark;		/* not a change this path can show: skipped */
			continue;
		}
		if (sse)
			wbuf_put(b, "\n\n", 2);
		(*n)++;
	}
	slog_cursor_close(c);
	return 0;
}

/* Appends an up-to-date message; in SSE mode its LSN is the client's next offset. */
static void
put_up_to_date(Wbuf *b, const Shape *s, SlogOffset last, int sse, int comma)
{
	char		lsn[64];

	if (sse)
		wbuf_put(b, "data: ", 6);
	else if (comma)
		wbuf_put(b, ",", 1);
	{
		static const char m[] = "{\"headers\":{\"control\":\"up-to-date\"";

		wbuf_put(b, m, sizeof(m) - 1);
	}
	if (!last.start)
	{
		snprintf(lsn, sizeof(lsn), ",\"global_last_seen_lsn\":\"%llu\"", (unsigned long long) last.lsn);
		wbuf_put(b, lsn, strlen(lsn));
	}
	wbuf_put(b, "}}", 2);
	if (sse)
	{
		wbuf_put(b, "\n\n", 2);
		sse_remember(s->handle, last);
	}
}

static void
body_init(Wbuf *b)
{
	wbuf_init(b);
	wbuf_reserve(b, LWS_PRE + 4096);
	memset(b->data, 0, LWS_PRE);
	b->len = LWS_PRE;
}

/*
 * Answers from the log: the entries after off and up-to-date when the log
 * has no more. Returns 1 when answered, 0 when there was nothing and the
 * request should wait (live), -1 when the offset is not in the log (the
 * caller answers 409).
 */
static int
answer(HttpReq *r, Shape *s, const HttpParams *p, SlogOffset off, int live)
{
	const CatTable *t = cat_table_by_relid(gw->cat, s->relid);
	SlogOffset	last;
	Wbuf		b;
	int			n;
	int			up_to_date;
	char		offtxt[SLOG_OFFSET_BUFLEN];
	char		reqtxt[SLOG_OFFSET_BUFLEN];
	char		etag[128];
	char	   *schema = NULL;
	char	   *hdr;
	size_t		hcap;

	if (t == NULL)
		return -1;
	body_init(&b);
	wbuf_put(&b, "[", 1);
	if (read_messages(s, t, off, 0, &b, &last, &n, &up_to_date) != 0)
	{
		wbuf_free(&b);
		return -1;
	}
	if (n == 0 && live && up_to_date && r->deadline_us >= 0)
	{
		wbuf_free(&b);
		return 0;
	}
	slog_offset_format(last, offtxt);
	if (up_to_date)
		put_up_to_date(&b, s, last, 0, n > 0);
	wbuf_put(&b, "]", 1);

	snprintf(etag, sizeof(etag), "\"%s:%s:%s\"", s->handle, slog_offset_format(off, reqtxt), offtxt);
	if (!live)
		schema = http_json_schema(s, t);
	hcap = 1024 + (schema ? strlen(schema) : 0);
	hdr = malloc(hcap);
	snprintf(hdr, hcap, "electric-handle: %s\nelectric-offset: %s\n%s%s%s%setag: %s\nvary: authorization\n"
			 "cache-control: %s\n",
			 s->handle, offtxt, up_to_date ? "electric-up-to-date: true\n" : "",
			 schema ? "electric-schema: " : "", schema ? schema : "", schema ? "\n" : "", etag,
			 live ? "public, max-age=5, stale-while-revalidate=5" : "public, max-age=60, stale-while-revalidate=300");
	if (live)
	{
		size_t		l = strlen(hdr);

		snprintf(hdr + l, hcap - l, "electric-cursor: %lld\n", live_cursor(p->cursor));
	}
	free(schema);
	{
		char		inm[160];

		if (!live && lws_hdr_copy(r->wsi, inm, sizeof(inm), WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0 &&
			strcmp(inm, etag) == 0)
		{
			http_respond(r, 304, hdr, "", 0);
			wbuf_free(&b);
			free(hdr);
			return 1;
		}
	}
	http_respond_buf(r, 200, hdr, &b);
	free(hdr);
	return 1;
}

/*
 * live_sse=true: one long response of server-sent events. The first step
 * sends the headers and the entries after the offset, each later step (the
 * shape's log was appended to) the new entries, each batch closed by an
 * up-to-date event. After HTTP_SSE_US the stream ends and the client
 * reconnects from its offset.
 */
static void
sse_step(HttpReq *r, Shape *s, SlogOffset off, const HttpParams *p)
{
	const CatTable *t = cat_table_by_relid(gw->cat, s->relid);
	SlogOffset	last;
	Wbuf		b;
	int			n;
	int			up_to_date;

	if (r->sse_open)
		off = r->offset;
	if (t == NULL)
	{
		must_refetch(r, s);
		return;
	}
	body_init(&b);
	if (read_messages(s, t, off, 1, &b, &last, &n, &up_to_date) != 0)
	{
		wbuf_free(&b);
		if (!r->sse_open)
			must_refetch(r, s);
		else
		{
			r->sse_closing = 1; /* the client reconnects, and gets 409 then */
			lws_callback_on_writable(r->wsi);
		}
		return;
	}
	if (up_to_date && (n > 0 || !r->sse_open))
		put_up_to_date(&b, s, last, 1, 0);
	r->offset = last;
	if (!r->sse_open)
	{
		char		hdr[256];
		char		offtxt[SLOG_OFFSET_BUFLEN];

		snprintf(hdr, sizeof(hdr), "electric-handle: %s\nelectric-offset: %s\nelectric-cursor: %lld\n"
				 "cache-control: no-store\nx-accel-buffering: no\n",
				 s->handle, slog_offset_format(last, offtxt), live_cursor(p != NULL ? p->cursor : NULL));
		r->sse = 1;
		r->sse_open = 1;
		snprintf(r->sse_handle, sizeof(r->sse_handle), "%s", s->handle);
		http_respond_buf(r, 200, hdr, &b);
	}
	else if (b.len > LWS_PRE)
		http_respond_buf(r, 200, NULL, &b);
	else
		wbuf_free(&b);
	if (!up_to_date)
		r->woken = 1;			/* more to read once this part is written */
	else
		http_park(r, s, r->deadline_us > 0 ? r->deadline_us : gw_now_us() + HTTP_SSE_US);
}

void
http_shape_handle(HttpReq *r)
{
	HttpParams	p;
	AuthClaims	claims;
	ShapeRequest sr = {0};
	ShapeClaims sc = {0};
	Shape	   *s = NULL;
	ShapeErr	kind;
	int			created = 0;
	char		err[512];
	char	   *table = NULL;
	char	   *where = NULL;
	char	  **cols = NULL;
	int			ncols = 0;
	SlogOffset	off = SLOG_OFFSET_START;
	int			now_offset = 0;
	int			rc;

	r->kind = HTTP_SHAPE;
	if (http_read_params(r, &p) != 0)
		return;
	if (http_auth(r, &claims) != 0)
		goto out;
	if (p.offset == NULL)
	{
		http_error(r, 400, "BAD_OFFSET", "the offset parameter is required: -1 for the whole shape, now for "
				   "changes only, or an offset from electric-offset", NULL);
		goto out;
	}
	if (p.subset)
	{
		http_error(r, 400, "BAD_REQUEST", "subset snapshots (subset__* parameters) are not supported by ferry; "
				   "read the shape with a where clause instead", NULL);
		goto out;
	}
	if (p.log != NULL && strcmp(p.log, "full") != 0 && strcmp(p.log, "changes_only") != 0)
	{
		http_error(r, 400, "BAD_REQUEST", "log wants full or changes_only", NULL);
		goto out;
	}
	if (strcmp(p.offset, "now") == 0)
		now_offset = 1;
	else if (slog_offset_parse(p.offset, strlen(p.offset), &off, err, sizeof(err)) != SLOG_OK)
	{
		http_error(r, 400, "BAD_OFFSET", err, NULL);
		goto out;
	}
	sse_resolve(p.handle, &off);
	/* changes_only: no initial rows, changes from now on (as offset=now) */
	if (off.start && p.log != NULL && strcmp(p.log, "changes_only") == 0)
		now_offset = 1;
	if (!off.start && !now_offset && (p.handle == NULL || p.handle[0] == '\0'))
	{
		http_error(r, 400, "BAD_OFFSET", "an offset other than -1 or now needs the handle of its shape", NULL);
		goto out;
	}
	if (p.live && (p.handle == NULL || p.handle[0] == '\0'))
	{
		http_error(r, 400, "BAD_REQUEST", "live=true needs the handle and offset of an earlier answer", NULL);
		goto out;
	}
	if ((table = http_params_table(&p, err, sizeof(err))) == NULL)
	{
		http_error(r, 400, "BAD_REQUEST", err, NULL);
		goto out;
	}
	if (http_params_where(&p, &where, err, sizeof(err)) != 0 ||
		http_params_columns(&p, &cols, &ncols, err, sizeof(err)) != 0)
	{
		http_error(r, 400, where == NULL && p.where != NULL ? "BAD_WHERE" : "BAD_REQUEST", err, NULL);
		goto out;
	}
	/* a new read of a whole shape is a pull, as a Subscribe is */
	if (off.start && !p.live && r->deadline_us == 0 && http_pull_limited(r, claims.sub) != 0)
		goto out;
	sr.table = table;
	sr.where = where;
	sr.ncolumns = ncols;
	sr.columns = cols;
	sc.sub = claims.sub;
	sc.role = claims.role;
	sc.ntenants = (int) claims.n_tenants;
	sc.tenants = claims.tenants;
	sc.json = claims.json;
	s = shape_resolve(&gw->shapes, gw->cat, &sr, &sc, &created, &kind, err, sizeof(err));
	if (s == NULL)
	{
		http_error(r, status_of(kind), code_of(kind), err, kind == SHAPE_ERR_STORAGE ? "retry-after: 1\n" : NULL);
		goto out;
	}
	if (created && snapshot_start(s, cat_table_by_relid(gw->cat, s->relid), err, sizeof(err)) != 0)
	{
		shape_invalidate(s, err);
		http_error(r, 503, "UNAVAILABLE", err, "retry-after: 1\n");
		goto out;
	}
	if (s->nsubs == 0)
		s->idle_since_us = gw_now_us();	/* HTTP readers keep it as long as they come back */
	if (p.handle != NULL && p.handle[0] != '\0' && strcmp(p.handle, s->handle) != 0)
	{
		must_refetch(r, s);
		goto out;
	}
	if (s->state != SHAPE_READY)
	{
		if (r->deadline_us < 0)
		{
			http_error(r, 503, "UNAVAILABLE", "the shape's initial rows are still being read; try again",
					   "retry-after: 1\n");
			goto out;
		}
		/* wait for the snapshot */
		http_park(r, s, r->deadline_us > 0 ? r->deadline_us : gw_now_us() + HTTP_SNAPSHOT_WAIT_US);
		goto out;
	}
	if (now_offset)
	{
		SlogStats	st;

		slog_stats(s->log, &st);
		off = st.durable;
	}
	if (p.live && p.live_sse)
	{
		sse_step(r, s, off, &p);
		goto out;
	}
	rc = answer(r, s, &p, off, p.live);
	if (rc == 0)
		http_park(r, s, r->deadline_us > 0 ? r->deadline_us : gw_now_us() + HTTP_LONG_POLL_US);
	else if (rc < 0)
	{
		if (off.start)
		{
			/* the log lost its beginning: new readers need a new shape */
			shape_invalidate(s, "the shape log no longer has its beginning");
			session_shape_invalid(s);
			http_error(r, 503, "UNAVAILABLE", "the shape is being rebuilt; try again", "retry-after: 1\n");
		}
		else
			must_refetch(r, s);
	}
out:
	free(table);
	free(where);
	http_params_free_columns(cols, ncols);
	http_params_free(&p);
	auth_claims_free(&claims);
}

void
http_sse_continue(HttpReq *r)
{
	/* the request's headers are gone once a stream started: it goes on from what it kept */
	Shape	   *s = shape_by_handle(&gw->shapes, r->sse_handle);

	if (s == NULL || s->state != SHAPE_READY || gw_now_us() / 1000000 >= r->token_exp)
	{
		/* invalid shape or expired token: end; the client reconnects and gets 409 or 401 */
		r->sse_closing = 1;
		lws_callback_on_writable(r->wsi);
		return;
	}
	sse_step(r, s, r->offset, NULL);
}

void
http_shape_timeout(HttpReq *r)
{
	if (r->sse_open)
	{
		/* the stream's time is up: close it; the client reconnects from its offset */
		r->sse_closing = 1;
		lws_callback_on_writable(r->wsi);
		return;
	}
	/* handled once more, marked as timed out: up-to-date with nothing new */
	r->deadline_us = -1;
	http_shape_handle(r);
}
