/*
 * gateway/writes.h -- the gateway's half of writes: pushed mutations, applied in order per
 * connection through ferry.apply_mutation, answered only after their data was streamed.
 *
 * Each session owns a WriteQueue. Mutations are applied one at a time per
 * queue (in the order they were pushed) by a pool of worker threads, each
 * with its own database connection, so many clients are served in
 * parallel. A worker reads the WAL insert position just before committing;
 * the result waits in the queue until ferryd has processed and synced the
 * WAL up to there (writes_synced_to) and the session has sent what its
 * subscriptions had: acks follow their data. Per-user token buckets limit
 * pushes (mutations) and pulls (subscriptions).
 */
#ifndef FERRY_WRITES_H
#define FERRY_WRITES_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.pb-c.h"

struct lws;
typedef struct WriteQueue WriteQueue;

/* Starts nworkers workers against conninfo. 0, or -1 with err. */
int			writes_init(const char *conninfo, int nworkers, double push_rate, double push_burst,
						double pull_rate, double pull_burst, char *err, size_t errlen);
void		writes_shutdown(void);

/* A queue for one session; wsi is woken when results are ready. */
WriteQueue *writes_open(struct lws *wsi, const char *client_id, const char *sub, const char *claims_json);
/* The session ended: queued mutations are dropped, an in-flight one finishes unanswered. */
void		writes_close(WriteQueue *q);
void		writes_set_claims(WriteQueue *q, const char *claims_json);

/* Takes a pushed batch: queues its mutations or answers them with RETRY. */
void		writes_push(WriteQueue *q, const Ferry__V1__MutationBatch *batch, int64_t now_us);

/*
 * Results that may be sent now, in push order, as a MutationResults frame in
 * *buf (LWS_PRE headroom first, malloc'd; the caller frees it); 1 when a frame
 * was made, 0 when none is ready.
 */
int			writes_take(WriteQueue *q, uint8_t **buf, size_t *len);
/* Whether results wait (ready or not). */
int			writes_pending(const WriteQueue *q);
/* Mutations queued or unanswered over all queues. */
long		writes_unanswered(void);

/*
 * A pull (a Subscribe) by this user: 0 when allowed, else the milliseconds
 * to wait.
 */
uint32_t	writes_pull(WriteQueue *q, int64_t now_us);
/* The same for a user without a queue (HTTP requests). */
uint32_t	writes_pull_user(const char *sub, int64_t now_us);

/* The service thread: collect finished applies, start the next ones, wake sessions. */
void		writes_collect(void);
/* ferryd has processed and synced the WAL up to lsn: results up to it may go. */
void		writes_synced_to(uint64_t lsn);

#endif
