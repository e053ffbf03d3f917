/*
 * gateway/metrics.h -- ferryd's counters and gauges, rendered as Prometheus text.
 *
 * Everything is updated on the service thread, so plain integers suffice;
 * snapshot workers report through the service thread too.
 */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_BUCKETS 12

typedef struct Histogram
{
	uint64_t	counts[METRICS_BUCKETS];	/* observations <= bounds[i] (not cumulative) */
	uint64_t	over;			/* observations above the last bound */
	uint64_t	count;			/* all observations */
	double		sum;			/* their sum */
} Histogram;

typedef struct Metrics
{
	int			replicating;	/* 1 while the replication stream is up */
	uint64_t	server_wal_end; /* last WAL end the server reported */
	uint64_t	received_lsn;	/* end LSN of the last transaction received */
	uint64_t	confirmed_lsn;	/* flush LSN confirmed to Postgres */
	int64_t		last_commit_us; /* commit time of the last transaction processed (Unix us) */
	int64_t		last_receive_us;	/* when it was processed */
	uint64_t	transactions;	/* transactions processed */
	uint64_t	changes;		/* row changes decoded */
	uint64_t	changes_routed; /* changes appended to shape logs */
	double		changes_per_second; /* over the last second */
	uint64_t	shapes;			/* live shapes */
	uint64_t	connections;	/* open WebSocket connections */
	uint64_t	connections_total;	/* accepted since start */
	uint64_t	bytes_sent;		/* WebSocket payload bytes sent */
	uint64_t	frames_received;	/* WebSocket messages received */
	uint64_t	bad_frames;		/* malformed or oversized messages */
	uint64_t	auth_failures;	/* bad, expired or wrong-algorithm tokens */
	uint64_t	slow_clients_dropped;	/* connections cut for not keeping up */
	uint64_t	must_refetch;	/* must-refetch messages sent */
	uint64_t	http_requests;	/* HTTP API requests (http.c) */
	uint64_t	http_parked;	/* long-polls parked now */
	Histogram	snapshot_seconds;	/* initial snapshot durations */
	uint64_t	mutations_applied;	/* mutation results by status */
	uint64_t	mutations_duplicate;
	uint64_t	mutations_conflict;
	uint64_t	mutations_rejected;
	uint64_t	mutations_retry;
	uint64_t	rate_limited;	/* pushes and pulls refused by a token bucket */
	Histogram	apply_seconds;	/* ferry.apply_mutation latency */
	uint64_t	client_pending; /* mutations clients report queued (heartbeats) */
	double		client_oldest_pending_seconds;	/* the oldest of them, over all clients */
} Metrics;

void		metrics_observe(Histogram *h, const double *bounds, double v);
extern const double metrics_snapshot_bounds[METRICS_BUCKETS];
extern const double metrics_apply_bounds[METRICS_BUCKETS];

/* Renders m into buf (Prometheus text format 0.0.4); returns the length or -1 if it did not fit. */
int			metrics_render(const Metrics *m, int64_t now_us, char *buf, size_t len);

#endif
