/*
 * gateway/http.c -- ferryd's HTTP API: routing, CORS, bearer tokens, answers, parked long-polls.
 *
 * Runs on the service thread. Each HTTP connection's HttpReq is lws
 * per-session data; an answer is written from the WRITEABLE callback,
 * headers first, then the body HTTP_WRITE_PIECE bytes at a time. Parked
 * requests sit in one list ordered by deadline (every park adds the same
 * delay, so appending keeps the order) and in their shape's waiter list.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "auth.h"
#include "gateway.h"
#include "http.h"
#include "http_json.h"
#include "http_params.h"
#include "log.h"
#include "writes.h"

/* Headers every answer carries, for browsers on other origins. */
#define CORS_HEADERS \
	"access-control-allow-origin: *\n" \
	"access-control-expose-headers: electric-handle, electric-offset, electric-schema, " \
	"electric-up-to-date, electric-cursor, etag, retry-after, ferry-cursor\n"

static struct
{
	HttpReq    *head;			/* parked requests, oldest deadline first */
	HttpReq    *tail;
	size_t		nparked;
	Hmap		waiters;		/* shape handle -> first HttpReq waiting on it */
	int			waiters_init;
} H;

size_t
http_req_size_of(void)
{
	return sizeof(HttpReq);
}

size_t
http_parked(void)
{
	return H.nparked;
}

/* ----------------------------------------------------------------
 * Answers
 * ---------------------------------------------------------------- */

void
http_respond_buf(HttpReq *r, int status, const char *headers, Wbuf *b)
{
	http_unpark(r);
	free(r->headers);
	r->headers = headers != NULL ? strdup(headers) : NULL;
	wbuf_free(&r->body);
	r->body = *b;
	wbuf_init(b);
	if (r->body.len < LWS_PRE)
	{
		/* an empty body still needs its headroom */
		wbuf_reserve(&r->body, LWS_PRE);
		memset(r->body.data, 0, LWS_PRE);
		r->body.len = LWS_PRE;
	}
	r->status = (uint16_t) status;
	r->responding = 1;
	r->headers_sent = r->sse_open && r->sse_started;	/* more events of a stream: no headers */
	r->sent = 0;
	lws_callback_on_writable(r->wsi);
}

void
http_respond(HttpReq *r, int status, const char *headers, const char *body, size_t len)
{
	Wbuf		b;

	wbuf_init(&b);
	wbuf_reserve(&b, LWS_PRE + len);
	memset(b.data, 0, LWS_PRE);
	b.len = LWS_PRE;
	wbuf_put(&b, body, len);
	http_respond_buf(r, status, headers, &b);
}

void
http_error(HttpReq *r, int status, const char *code, const char *msg, const char *headers)
{
	Wbuf		b;

	wbuf_init(&b);
	wbuf_reserve(&b, LWS_PRE + 64);
	memset(b.data, 0, LWS_PRE);
	b.len = LWS_PRE;
	wbuf_put(&b, "{\"message\":", 11);
	http_json_cstr(&b, msg);
	wbuf_put(&b, ",\"code\":", 8);
	http_json_cstr(&b, code);
	wbuf_put(&b, "}\n", 2);
	if (status >= 500)
		log_warn("http", "%d %s: %s", status, code, msg);
	else
		log_debug("http", "%d %s: %s", status, code, msg);
	http_respond_buf(r, status, headers != NULL ? headers : "cache-control: no-store\n", &b);
}

/* Writes the headers of r's answer; -1 on failure. */
static int
write_headers(HttpReq *r)
{
	size_t		extra = (r->headers ? strlen(r->headers) : 0) + sizeof(CORS_HEADERS) + 256;
	uint8_t    *hdr = malloc(LWS_PRE + extra + 512);
	uint8_t    *start = hdr + LWS_PRE;
	uint8_t    *p = start;
	uint8_t    *end = hdr + LWS_PRE + extra + 511;
	size_t		blen = r->body.len - LWS_PRE;
	const char *type = r->sse ? "text/event-stream" : "application/json";
	int			rc = -1;
	char	   *lines = NULL;

	if (r->status == 204 || r->status == 304)
		type = NULL;
	if (lws_add_http_common_headers(r->wsi, r->status, type,
									r->sse_open ? LWS_ILLEGAL_HTTP_CONTENT_LEN : (lws_filepos_t) blen, &p, end))
		goto out;
	{
		size_t		n1 = sizeof(CORS_HEADERS) - 1;
		size_t		n2 = r->headers ? strlen(r->headers) : 0;

		lines = malloc(n1 + n2 + 1);
		memcpy(lines, CORS_HEADERS, n1);
		memcpy(lines + n1, r->headers ? r->headers : "", n2 + 1);
	}
	for (char *line = lines, *nl; *line != '\0'; line = nl + 1)
	{
		char	   *colon = strchr(line, ':');
		char		name[64];
		size_t		nlen;
		const char *v;

		nl = strchr(line, '\n');
		if (nl == NULL || colon == NULL || colon > nl || (nlen = (size_t) (colon - line)) + 2 > sizeof(name))
			break;
		memcpy(name, line, nlen + 1);
		name[nlen + 1] = '\0';
		v = colon + 1;
		while (*v == ' ')
			v++;
		if (lws_add_http_header_by_name(r->wsi, (const unsigned char *) name, (const unsigned char *) v,
										(int) (nl - v), &p, end))
			goto out;
	}
	if (lws_finalize_write_http_header(r->wsi, start, &p, end))
		goto out;
	rc = 0;
out:
	free(lines);
	free(hdr);
	return rc;
}

/* Writes the next piece of r's answer; -1 to close the connection. */
static int
write_answer(HttpReq *r)
{
	size_t		blen = r->body.len - LWS_PRE;
	size_t		n;
	int			final;

	if (!r->headers_sent)
	{
		if (write_headers(r) != 0)
			return -1;
		r->headers_sent = 1;
		if (r->sse_open)
			r->sse_started = 1;
		if (blen == 0 && !r->sse_open)
			goto done;
		lws_callback_on_writable(r->wsi);
		return 0;
	}
	n = blen - r->sent;
	if (n > HTTP_WRITE_PIECE)
		n = HTTP_WRITE_PIECE;
	final = r->sent + n == blen && !r->sse_open;
	/* the piece is written in place: the bytes before it are the headroom lws needs */
	{
		uint8_t    *at = r->body.data + LWS_PRE + r->sent;
		uint8_t		save[LWS_PRE];

		memcpy(save, at - LWS_PRE, LWS_PRE);
		if (lws_write(r->wsi, at, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int) n)
			return -1;
		memcpy(at - LWS_PRE, save, LWS_PRE);
	}
	gw->metrics.bytes_sent += n;
	r->sent += n;
	if (!final)
	{
		if (r->sent < blen)
			lws_callback_on_writable(r->wsi);
		else
		{
			/* an SSE stream: the events went out, the stream stays open */
			wbuf_free(&r->body);
			r->sent = 0;
			r->responding = 0;
			if (r->woken || r->sse_closing)
				lws_callback_on_writable(r->wsi);
		}
		return 0;
	}
done:
	r->responding = 0;
	free(r->headers);
	r->headers = NULL;
	wbuf_free(&r->body);
	r->sent = 0;
	r->kind = HTTP_NONE;
	return lws_http_transaction_completed(r->wsi) ? -1 : 0;
}

int
http_read_params(HttpReq *r, HttpParams *p)
{
	char		err[256];

	http_params_init(p);
	for (int i = 0; i < 256; i++)
	{
		int			n = lws_hdr_fragment_length(r->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
		char	   *buf;

		if (n <= 0)
			break;
		buf = malloc((size_t) n + 1);
		n = lws_hdr_copy_fragment(r->wsi, buf, n + 1, WSI_TOKEN_HTTP_URI_ARGS, i);
		if (n >= 0 && http_params_add(p, buf, (size_t) n, err, sizeof(err)) != 0)
		{
			free(buf);
			http_params_free(p);
			http_error(r, 400, "BAD_REQUEST", err, NULL);
			return -1;
		}
		free(buf);
	}
	return 0;
}

/* ----------------------------------------------------------------
 * Bearer tokens
 * ---------------------------------------------------------------- */

int
http_auth(HttpReq *r, AuthClaims *claims)
{
	int			len = lws_hdr_total_length(r->wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
	char	   *h;
	const char *tok;
	char		err[256];
	int			rc;

	memset(claims, 0, sizeof(*claims));
	if (len <= 0)
	{
		http_error(r, 401, "UNAUTHENTICATED", "an Authorization: Bearer <token> header is required",
				   "www-authenticate: Bearer\ncache-control: no-store\n");
		return -1;
	}
	if (len > AUTH_MAX_TOKEN_BYTES + 16)
	{
		http_error(r, 401, "UNAUTHENTICATED", "the Authorization header is too long", "cache-control: no-store\n");
		return -1;
	}
	h = malloc((size_t) len + 1);
	if (lws_hdr_copy(r->wsi, h, len + 1, WSI_TOKEN_HTTP_AUTHORIZATION) < 0 || strncasecmp(h, "Bearer ", 7) != 0)
	{
		free(h);
		http_error(r, 401, "UNAUTHENTICATED", "the Authorization header must be \"Bearer <token>\"",
				   "www-authenticate: Bearer\ncache-control: no-store\n");
		return -1;
	}
	for (tok = h + 7; *tok == ' '; tok++)
		;
	rc = auth_verify(tok, gw->cfg->jwt_secret, gw->cfg->jwt_secret_len, time(NULL), claims, err, sizeof(err));
	free(h);
	if (rc != AUTH_OK)
	{
		gw->metrics.auth_failures++;
		http_error(r, 401, rc == AUTH_ERR_EXPIRED ? "TOKEN_EXPIRED" : "UNAUTHENTICATED", err,
				   "www-authenticate: Bearer error=\"invalid_token\"\ncache-control: no-store\n");
		return -1;
	}
	r->token_exp = claims->exp;
	return 0;
}

int
http_pull_limited(HttpReq *r, const char *sub)
{
	uint32_t	wait = writes_pull_user(sub, gw_now_us());
	char		hdr[64];

	if (wait == 0)
		return 0;
	snprintf(hdr, sizeof(hdr), "retry-after: %u\n", (wait + 999) / 1000);
	http_error(r, 429, "RATE_LIMITED", "this user's request rate limit (--pull-rate) was reached; wait", hdr);
	return -1;
}

/* ----------------------------------------------------------------
 * Parking
 * ---------------------------------------------------------------- */

void
http_park(HttpReq *r, Shape *s, int64_t deadline_us)
{
	http_unpark(r);
	if (!H.waiters_init)
	{
		hmap_init(&H.waiters);
		H.waiters_init = 1;
	}
	r->deadline_us = deadline_us;
	/* keep the list in deadline order: usually the new one is last */
	{
		HttpReq    *after = H.tail;

		while (after != NULL && after->deadline_us > deadline_us)
			after = after->pprev;
		r->pprev = after;
		r->pnext = after != NULL ? after->pnext : H.head;
		if (r->pnext != NULL)
			r->pnext->pprev = r;
		else
			H.tail = r;
		if (after != NULL)
			after->pnext = r;
		else
			H.head = r;
	}
	r->shape = s;
	if (s != NULL)
	{
		HttpReq    *first = hmap_get(&H.waiters, s->handle, strlen(s->handle));

		r->wprev = NULL;
		r->wnext = first;
		if (first != NULL)
			first->wprev = r;
		hmap_put(&H.waiters, s->handle, strlen(s->handle), r);
	}
	r->parked = 1;
	gw->metrics.http_parked = ++H.nparked;
	/* ferryd answers it by its deadline: no libwebsockets timeout may cut it before */
	lws_set_timeout(r->wsi, NO_PENDING_TIMEOUT, 0);
}

void
http_unpark(HttpReq *r)
{
	if (!r->parked)
		return;
	if (r->pprev != NULL)
		r->pprev->pnext = r->pnext;
	else
		H.head = r->pnext;
	if (r->pnext != NULL)
		r->pnext->pprev = r->pprev;
	else
		H.tail = r->pprev;
	if (r->shape != NULL)
	{
		if (r->wprev != NULL)
			r->wprev->wnext = r->wnext;
		else if (r->wnext != NULL)
			hmap_put(&H.waiters, r->shape->handle, strlen(r->shape->handle), r->wnext);
		else
			hmap_del(&H.waiters, r->shape->handle, strlen(r->shape->handle));
		if (r->wnext != NULL)
			r->wnext->wprev = r->wprev;
	}
	r->pnext = r->pprev = r->wnext = r->wprev = NULL;
	r->shape = NULL;
	r->parked = 0;
	gw->metrics.http_parked = --H.nparked;
}

/*
 * Takes the waiters of s off their lists; each is handled again from its own
 * WRITEABLE callback (never from here: the caller may be walking the shape
 * registry, which handling a request can change).
 */
static void
release_waiters(Shape *s)
{
	HttpReq    *r;

	if (!H.waiters_init || H.nparked == 0)
		return;
	while ((r = hmap_get(&H.waiters, s->handle, strlen(s->handle))) != NULL)
	{
		http_unpark(r);
		r->woken = 1;
		lws_callback_on_writable(r->wsi);
	}
}

void
http_notify_shape(Shape *s)
{
	release_waiters(s);
}

void
http_shape_invalid(Shape *s)
{
	release_waiters(s);
}

/* A shape kept by parked requests is in use: sweeps leave it alone. */
int
http_shape_waited(const Shape *s)
{
	return H.waiters_init && H.nparked > 0 && hmap_get(&H.waiters, s->handle, strlen(s->handle)) != NULL;
}

/*
 * libwebsockets does not read a connection whose request is pending, so a
 * client that hung up on a parked long-poll would only be noticed at its
 * deadline. Every HUNG_UP_CHECK_US each parked connection is peeked at: an
 * orderly close (recv returns 0) or an error ends it now.
 */
#define HUNG_UP_CHECK_US (2 * 1000000LL)

static void
close_hung_up(int64_t now)
{
	static int64_t last = 0;

	if (now - last < HUNG_UP_CHECK_US)
		return;
	last = now;
	for (HttpReq *r = H.head; r != NULL; r = r->pnext)
	{
		int			fd = (int) lws_get_socket_fd(r->wsi);
		char		c;
		ssize_t		n;

		if (fd < 0)
			continue;
		n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			lws_set_timeout(r->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
	}
}

void
http_tick(int64_t now)
{
	close_hung_up(now);
	while (H.head != NULL && H.head->deadline_us <= now)
	{
		HttpReq    *r = H.head;

		http_unpark(r);
		if (r->kind == HTTP_SHAPE)
			http_shape_timeout(r);
		else
			http_error(r, 503, "UNAVAILABLE", "timed out; try again", "retry-after: 1\n");
	}
}

/* ----------------------------------------------------------------
 * The callback
 * ---------------------------------------------------------------- */

static HttpKind
route(struct lws *wsi, const char *uri, int *method_ok)
{
	int			get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
	int			post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
	int			options = lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI) > 0;
	HttpKind	k = HTTP_NONE;

	if (strcmp(uri, "/v1/shape") == 0)
		k = HTTP_SHAPE;
	else if (strcmp(uri, "/v1/mutations") == 0)
		k = HTTP_MUTATIONS;
	else if (strcmp(uri, "/v1/sync") == 0)
		k = HTTP_SYNC;
	else
		return HTTP_NONE;
	*method_ok = k == HTTP_MUTATIONS ? post : get;
	if (options)
	{
		*method_ok = 1;
		return HTTP_OPTIONS;
	}
	return k;
}

static void
free_req(HttpReq *r)
{
	http_unpark(r);
	if (r->kind == HTTP_MUTATIONS || r->writes != NULL || r->mkey != NULL)
		http_mutations_close(r);
	if (r->job != NULL)
		http_sync_close(r);
	free(r->headers);
	r->headers = NULL;
	wbuf_free(&r->body);
	wbuf_free(&r->in);
	wbuf_free(&r->results);
	r->responding = 0;
	r->kind = HTTP_NONE;
}

int
http_api_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	HttpReq    *r = user;

	switch (reason)
	{
		case LWS_CALLBACK_HTTP:
			{
				const char *uri = in;
				int			method_ok = 0;
				HttpKind	k = route(wsi, uri, &method_ok);

				if (k == HTTP_NONE)
					return HTTP_NOT_MINE;
				free_req(r);
				memset(r, 0, sizeof(*r));
				r->wsi = wsi;
				r->kind = k;
				gw->metrics.http_requests++;
				if (!method_ok)
				{
					http_error(r, 405, "METHOD_NOT_ALLOWED", k == HTTP_MUTATIONS ? "/v1/mutations takes POST"
							   : "this endpoint takes GET", k == HTTP_MUTATIONS ? "allow: POST, OPTIONS\n"
							   : "allow: GET, OPTIONS\n");
					return 0;
				}
				switch (k)
				{
					case HTTP_OPTIONS:
						http_respond(r, 204, "access-control-allow-methods: GET, POST, OPTIONS\n"
									 "access-control-allow-headers: authorization, content-type, "
									 "ferry-client-id, if-none-match\n"
									 "access-control-max-age: 86400\n", "", 0);
						break;
					case HTTP_SHAPE:
						http_shape_handle(r);
						break;
					case HTTP_SYNC:
						http_sync_handle(r);
						break;
					case HTTP_MUTATIONS:
						{
							/* the body follows: HTTP_BODY, then HTTP_BODY_COMPLETION */
							char		cl[32];

							if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
								http_error(r, 411, "LENGTH_REQUIRED", "send the body with a Content-Length "
										   "(chunked bodies are not accepted)", "connection: close\n");
							else if (strtoll(cl, NULL, 10) > HTTP_MAX_BODY)
							{
								char		msg[128];

								snprintf(msg, sizeof(msg), "the body is above the limit of %d bytes; send fewer mutations "
										 "per request", HTTP_MAX_BODY);
								http_error(r, 413, "TOO_LARGE", msg, "connection: close\n");
							}
						}
						break;
					default:
						break;
				}
				return 0;
			}
		case LWS_CALLBACK_HTTP_BODY:
			if (r->kind != HTTP_MUTATIONS || r->responding)
				return 0;
			if (r->in.len + len > HTTP_MAX_BODY)
			{
				r->in_too_large = 1;
				wbuf_free(&r->in);
				return 0;
			}
			if (!r->in_too_large)
				wbuf_put(&r->in, in, len);
			return 0;
		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			if (r->kind != HTTP_MUTATIONS || r->responding)
				return 0;
			if (r->in_too_large)
			{
				char		msg[128];

				snprintf(msg, sizeof(msg), "the body is above the limit of %d bytes; send fewer mutations per request",
						 HTTP_MAX_BODY);
				http_error(r, 413, "TOO_LARGE", msg, NULL);
				return 0;
			}
			http_mutations_handle(r);
			return 0;
		case LWS_CALLBACK_HTTP_WRITEABLE:
			if (r->kind == HTTP_NONE)
				return HTTP_NOT_MINE;
			if (r->sse_closing && !r->responding)
				return -1;		/* the end of an SSE stream: close the connection */
			if (r->woken && !r->responding)
			{
				r->woken = 0;
				if (r->sse_open)
					http_sse_continue(r);
				else
					http_shape_handle(r);	/* parks it again, or sets the answer */
			}
			if (r->mturn && !r->responding)
			{
				r->mturn = 0;
				http_mutations_handle(r);
			}
			if (!r->responding && r->writes != NULL)
				http_mutations_writable(r);
			if (r->responding)
				return write_answer(r);
			return 0;
		case LWS_CALLBACK_CLOSED_HTTP:
			free_req(r);
			return HTTP_NOT_MINE;
		default:
			return HTTP_NOT_MINE;
	}
}
