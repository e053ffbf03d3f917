/*
 * gateway/gateway.h -- ferryd's process-wide state, shared by its service-thread modules.
 *
 * One Gateway per process. Everything here is touched only by the
 * libwebsockets service thread; snapshot workers hand their results over
 * through the completion queue (snapshot.c) and lws_cancel_service().
 */
#ifndef FERRY_GATEWAY_H
#define FERRY_GATEWAY_H

#include <pthread.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <libwebsockets.h>

#include "catalog.h"
#include "config.h"
#include "metrics.h"
#include "pgoutput.h"
#include "repl.h"
#include "shape.h"

struct Session;
struct SnapshotJob;

typedef struct Gateway
{
	Config	   *cfg;			/* settings */
	struct lws_context *ctx;	/* event loop */
	struct lws_vhost *vhost;	/* the one vhost */
	int			port;			/* bound port */
	PGconn	   *pg;				/* control connection: catalog, checks */
	Catalog    *cat;			/* current catalog */
	/* replication */
	Repl	   *repl;			/* NULL while disconnected */
	Repl	   *repl_connecting;	/* a reconnection in progress, or NULL */
	int64_t		repl_connect_started_us;	/* when it started */
	struct lws *repl_wsi;		/* the replication socket in the event loop */
	int			repl_fd;		/* dup of the replication socket given to lws */
	PgoMsg		msg;			/* decoder state */
	PgoRelcache *relcache;		/* Relation messages by relid */
	int64_t		repl_retry_at_us;	/* when to reconnect after a failure */
	int			repl_failures;	/* consecutive failures, for backoff */
	char		health[1024];	/* "" while healthy, else why not */
	/* the transaction being decoded */
	int			in_txn;			/* between Begin and Commit */
	uint32_t	txn_xid;		/* its xid */
	uint64_t	txn_lsn;		/* its commit LSN (Begin's final LSN) */
	int64_t		txn_commit_us;	/* its commit time, Unix us */
	uint32_t	txn_op;			/* next op number within it */
	int			txn_catalog_changed;	/* it wrote ferry's catalog */
	Shape	  **touched;		/* shapes appended to in this transaction */
	int			ntouched;
	int			touched_cap;
	uint64_t	unsynced_end_lsn;	/* end LSN of the last commit not yet confirmed */
	uint64_t	last_commit_lsn;	/* commit LSN of the last transaction processed */
	/* shapes and clients */
	ShapeRegistry shapes;		/* every shape */
	struct Session *sessions;	/* open WebSocket sessions (list) */
	/* snapshots */
	pthread_mutex_t snap_lock;	/* guards snap_done */
	struct SnapshotJob *snap_done;	/* finished jobs to collect */
	int			snap_running;	/* jobs in flight */
	/* bookkeeping */
	Metrics		metrics;		/* counters */
	uint64_t	changes_at_last_tick;	/* for changes_per_second */
	int			stopping;		/* SIGTERM/SIGINT received */
	lws_sorted_usec_list_t tick;	/* 100 ms housekeeping timer */
} Gateway;

extern Gateway *gw;

int64_t		gw_now_us(void);	/* wall clock, Unix us */
/* A libpq connection with ferryd's session settings (UTC, ISO dates, exact floats). */
PGconn	   *gw_connect(const char *conninfo, char *err, size_t errlen);
#define GW_SESSION_OPTIONS "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1"
double		gw_mono(void);		/* monotonic seconds */

/* stream.c: replication */
int			stream_start(char *err, size_t errlen);
void		stream_on_readable(void);
void		stream_on_writable(void);
void		stream_tick(int64_t now_us);
void		stream_stop(void);
void		stream_sync(void);	/* fsync dirty shape logs, confirm the LSN */
bool		stream_is_sync_timer(struct lws *wsi);	/* the group sync timer's descriptor */
void		stream_on_sync_timer(void); /* it fired */
void		stream_sync_timer_closed(void); /* the loop closed it */

/* session.c: WebSocket sessions */
int			session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
							 void *in, size_t len);
void		session_notify_shape(Shape *s);	/* new entries: wake subscribers */
void		session_shape_invalid(Shape *s);	/* must-refetch to subscribers */
void		session_tick(int64_t now_us);
void		session_close_all(void);
void		session_wake_writers(void);	/* results may be ready */
/* The mutation queues clients report in heartbeats: their total, and the oldest's age. */
void		session_client_queues(uint64_t *pending, double *oldest_seconds);
size_t		session_size(void);	/* open sessions */
size_t		session_size_of(void);	/* bytes of one session's state */

/* snapshot.c: initial rows of new shapes */
int			snapshot_start(Shape *s, const CatTable *t, char *err, size_t errlen);
void		snapshot_collect(void);	/* finish jobs the workers completed */

#endif
