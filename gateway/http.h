/*
 * gateway/http.h -- ferryd's HTTP API for web clients: ElectricSQL-compatible shapes,
 * JSON mutations and exact deltas (docs/http-api.md).
 *
 *   GET  /v1/shape       a shape's rows and changes, as @electric-sql/client reads them
 *   POST /v1/mutations   a JSON array of mutations, applied in order through apply_mutation
 *   GET  /v1/sync        rows changed since a cursor, through ferry.changes_since
 *
 * One HttpReq per HTTP connection (lws per-session data). A request is handled
 * when its headers (GET) or its body (POST) are in; its answer is kept in the
 * HttpReq and written from the WRITEABLE callback: headers first, then the body
 * in pieces, one lws_write each. A long-poll (live=true) that finds nothing new
 * is parked on its shape and handled again when the shape's log is appended
 * to, the shape becomes invalid, or its time is up.
 */
#ifndef FERRY_HTTP_H
#define FERRY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "shape.h"
#include "shapelog.h"
#include "wire.h"

#define HTTP_LONG_POLL_US (20 * 1000000LL)	/* a live request is held this long */
#define HTTP_SSE_US (60 * 1000000LL)	/* a server-sent event stream lasts this long */
#define HTTP_SNAPSHOT_WAIT_US (60 * 1000000LL)	/* a request waits this long for a snapshot */
#define HTTP_MAX_BODY (1024 * 1024) /* largest POST body */
#define HTTP_CHUNK_BYTES (1024 * 1024)	/* a shape response stops after this much JSON */
#define HTTP_WRITE_PIECE (64 * 1024)	/* body bytes per lws_write */
#define HTTP_NOT_MINE 1			/* http_api_callback: not an endpoint of this module */

struct WriteQueue;

typedef enum HttpKind
{
	HTTP_NONE = 0,				/* not (yet) a request of this module */
	HTTP_SHAPE,					/* GET /v1/shape */
	HTTP_MUTATIONS,				/* POST /v1/mutations */
	HTTP_SYNC,					/* GET /v1/sync */
	HTTP_OPTIONS				/* CORS preflight */
} HttpKind;

/* One HTTP connection's request (lws per-session data; zeroed by lws). */
typedef struct HttpReq
{
	struct lws *wsi;			/* the connection */
	HttpKind	kind;			/* which endpoint */
	/* parked long-poll (or a request waiting for a snapshot) */
	struct HttpReq *pnext;		/* in the parked list, by deadline */
	struct HttpReq *pprev;
	struct HttpReq *wnext;		/* in its shape's waiter list */
	struct HttpReq *wprev;
	Shape	   *shape;			/* the shape waited on, or NULL */
	int64_t		deadline_us;	/* answer up-to-date (or 503) by then */
	int64_t		token_exp;		/* the token's exp, Unix seconds */
	SlogOffset	offset;			/* the request's offset */
	uint8_t		parked;			/* in the lists above */
	uint8_t		woken;			/* released: handle it again when writable */
	uint8_t		live;			/* live=true */
	uint8_t		sse;			/* live_sse=true: server-sent events */
	uint8_t		sse_open;		/* an SSE stream: no content length, events go on */
	uint8_t		sse_started;	/* its headers went out */
	uint8_t		sse_closing;	/* end it (close the connection) once written */
	char		sse_handle[48]; /* the stream's shape */
	/* the answer being written */
	uint8_t		responding;		/* an answer is set */
	uint8_t		headers_sent;	/* its headers went out */
	uint16_t	status;			/* HTTP status */
	char	   *headers;		/* extra "name: value\n" lines (malloc'd), or NULL */
	Wbuf		body;			/* LWS_PRE bytes, then the body */
	size_t		sent;			/* body bytes written */
	/* POST body, and mutations in flight */
	Wbuf		in;				/* the body received so far */
	uint8_t		in_too_large;	/* the body passed HTTP_MAX_BODY */
	struct WriteQueue *writes;	/* the mutations' queue, or NULL */
	struct HttpReq *mnext;		/* in the list of requests with mutations in flight */
	struct HttpReq *mprev;
	struct HttpReq *qnext;		/* in the list waiting for their client's request in flight */
	char	   *mkey;			/* "<sub>\n<client id>": one request of a client at a time */
	char	   *msub;			/* the token's sub */
	char	   *mclient;		/* ferry-client-id, or "http:<sub>" */
	char	   *mclaims;		/* the token's claims JSON */
	uint8_t		mturn;			/* its turn came: apply it when writable */
	int			nmutations;		/* mutations pushed */
	Wbuf		results;		/* results so far, as JSON array items */
	int			nresults;		/* of them */
	void	   *job;			/* a /v1/sync query in flight (http_sync.c) */
} HttpReq;

/* http.c */
int			http_api_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
size_t		http_req_size_of(void);
/* Sets the answer: status, extra header lines ("name: value\n"...; copied), body (copied). */
void		http_respond(HttpReq *r, int status, const char *headers, const char *body, size_t len);
/* The same, taking the body buffer (LWS_PRE headroom first) from b, which is left empty. */
void		http_respond_buf(HttpReq *r, int status, const char *headers, Wbuf *b);
/* A JSON error: {"message": msg, "code": code}, with extra header lines. */
void		http_error(HttpReq *r, int status, const char *code, const char *msg, const char *headers);
/* Reads the query arguments into p (http_params.h); 0, or -1 with the 400 answer set. */
struct HttpParams;
int			http_read_params(HttpReq *r, struct HttpParams *p);
/* The bearer token's claims; 0, or -1 with the 401 answer set. Frees with auth_claims_free. */
struct AuthClaims;
int			http_auth(HttpReq *r, struct AuthClaims *claims);
/* The user's pull token bucket (shared with WebSocket Subscribes): 0, or -1 with the 429 answer set. */
int			http_pull_limited(HttpReq *r, const char *sub);
/* Parks r on shape s (NULL: just the deadline) until deadline. */
void		http_park(HttpReq *r, Shape *s, int64_t deadline_us);
void		http_unpark(HttpReq *r);
/* Hooks from the stream: new entries, an invalid shape (parked requests are handled again
 * from their own WRITEABLE callbacks), results ready, housekeeping. */
void		http_notify_shape(Shape *s);
void		http_shape_invalid(Shape *s);
void		http_wake_writers(void);
void		http_tick(int64_t now_us);
size_t		http_parked(void);	/* parked requests */
int			http_shape_waited(const Shape *s);	/* requests are parked on s */

/* http_shape.c */
void		http_shape_handle(HttpReq *r);	/* GET /v1/shape, and again when woken */
void		http_shape_timeout(HttpReq *r); /* a parked request's time is up */
void		http_sse_continue(HttpReq *r);	/* an SSE stream's shape has new entries */

/* http_mutations.c */
void		http_mutations_handle(HttpReq *r);	/* the body is in */
void		http_mutations_writable(HttpReq *r);	/* results may be ready */
void		http_mutations_close(HttpReq *r);

/* http_sync.c */
int			http_sync_init(const char *conninfo, char *err, size_t errlen);
void		http_sync_shutdown(void);
void		http_sync_handle(HttpReq *r);
void		http_sync_collect(void);	/* finished queries (service thread) */
void		http_sync_close(HttpReq *r);

#endif
