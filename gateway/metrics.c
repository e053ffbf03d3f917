/*
 * gateway/metrics.c -- ferryd's counters and gauges, rendered as Prometheus text.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "metrics.h"

const double metrics_snapshot_bounds[METRICS_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
};

const double metrics_apply_bounds[METRICS_BUCKETS] = {
	0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5
};

void
metrics_observe(Histogram *h, const double *bounds, double v)
{
	int			i;

	for (i = 0; i < METRICS_BUCKETS; i++)
		if (v <= bounds[i])
			break;
	if (i < METRICS_BUCKETS)
		h->counts[i]++;
	else
		h->over++;
	h->count++;
	h->sum += v;
}

typedef struct Out
{
	char	   *buf;			/* destination */
	size_t		len;			/* its size */
	size_t		pos;			/* bytes written */
	int			overflow;		/* ran out of room */
} Out;

static void
emit(Out *o, const char *fmt,...)
{
	va_list		ap;
	int			n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= o->len - o->pos)
		o->overflow = 1;
	else
		o->pos += n;
}

static void
metric(Out *o, const char *name, const char *type, const char *help, const char *fmt,...)
{
	va_list		ap;
	char		value[64];

	va_start(ap, fmt);
	vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	emit(o, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, type, name, value);
}

static void
histogram(Out *o, const char *name, const char *help, const Histogram *h, const double *bounds)
{
	uint64_t	cum = 0;

	emit(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int i = 0; i < METRICS_BUCKETS; i++)
	{
		cum += h->counts[i];
		emit(o, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[i], cum);
	}
	emit(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %g\n%s_count %" PRIu64 "\n",
		 name, h->count, name, h->sum, name, h->count);
}

int
metrics_render(const Metrics *m, int64_t now_us, char *buf, size_t len)
{
	Out			o = {buf, len, 0, 0};
	uint64_t	lag_bytes = m->server_wal_end > m->confirmed_lsn ? m->server_wal_end - m->confirmed_lsn : 0;
	double		lag_seconds = 0;

	/* Lag in time: how old the newest processed commit was when ferryd got it, while behind. */
	if (m->last_commit_us > 0 && m->server_wal_end > m->received_lsn)
		lag_seconds = (double) (now_us - m->last_commit_us) / 1e6;
	else if (m->last_commit_us > 0 && m->last_receive_us >= m->last_commit_us)
		lag_seconds = (double) (m->last_receive_us - m->last_commit_us) / 1e6;

	metric(&o, "ferry_replicating", "gauge", "1 while the replication stream is up.", "%d", m->replicating);
	metric(&o, "ferry_replication_lag_bytes", "gauge",
		   "WAL bytes between the server's end and the flush LSN confirmed by ferryd.", "%" PRIu64, lag_bytes);
	metric(&o, "ferry_replication_lag_seconds", "gauge",
		   "Delay between a commit and ferryd processing it.", "%.6f", lag_seconds);
	metric(&o, "ferry_confirmed_lsn", "gauge", "Flush LSN confirmed to Postgres, as a number.",
		   "%" PRIu64, m->confirmed_lsn);
	metric(&o, "ferry_transactions_total", "counter", "Transactions processed.", "%" PRIu64, m->transactions);
	metric(&o, "ferry_changes_total", "counter", "Row changes decoded from the WAL.", "%" PRIu64, m->changes);
	metric(&o, "ferry_changes_routed_total", "counter", "Changes appended to shape logs.",
		   "%" PRIu64, m->changes_routed);
	metric(&o, "ferry_changes_per_second", "gauge", "Row changes decoded over the last second.",
		   "%.1f", m->changes_per_second);
	metric(&o, "ferry_shapes", "gauge", "Live shapes.", "%" PRIu64, m->shapes);
	metric(&o, "ferry_connections", "gauge", "Open WebSocket connections.", "%" PRIu64, m->connections);
	metric(&o, "ferry_connections_total", "counter", "WebSocket connections accepted.",
		   "%" PRIu64, m->connections_total);
	metric(&o, "ferry_bytes_sent_total", "counter", "WebSocket payload bytes sent.", "%" PRIu64, m->bytes_sent);
	metric(&o, "ferry_frames_received_total", "counter", "WebSocket messages received.",
		   "%" PRIu64, m->frames_received);
	metric(&o, "ferry_bad_frames_total", "counter", "Malformed or oversized client messages.",
		   "%" PRIu64, m->bad_frames);
	metric(&o, "ferry_auth_failures_total", "counter", "Bad, expired or wrong-algorithm tokens.",
		   "%" PRIu64, m->auth_failures);
	metric(&o, "ferry_slow_clients_dropped_total", "counter", "Connections cut for not keeping up.",
		   "%" PRIu64, m->slow_clients_dropped);
	metric(&o, "ferry_must_refetch_total", "counter", "must-refetch messages sent.", "%" PRIu64, m->must_refetch);
	metric(&o, "ferry_http_requests_total", "counter", "Requests to the HTTP API (/v1/shape, /v1/mutations, /v1/sync).",
		   "%" PRIu64, m->http_requests);
	metric(&o, "ferry_http_parked", "gauge", "Long-poll requests waiting for changes.", "%" PRIu64, m->http_parked);
	histogram(&o, "ferry_snapshot_duration_seconds", "Initial snapshot durations.",
			  &m->snapshot_seconds, metrics_snapshot_bounds);
	emit(&o, "# HELP ferry_mutations_total Mutation results sent, by status.\n"
		 "# TYPE ferry_mutations_total counter\n"
		 "ferry_mutations_total{status=\"applied\"} %" PRIu64 "\n"
		 "ferry_mutations_total{status=\"duplicate\"} %" PRIu64 "\n"
		 "ferry_mutations_total{status=\"conflict\"} %" PRIu64 "\n"
		 "ferry_mutations_total{status=\"rejected\"} %" PRIu64 "\n"
		 "ferry_mutations_total{status=\"retry\"} %" PRIu64 "\n",
		 m->mutations_applied, m->mutations_duplicate, m->mutations_conflict, m->mutations_rejected,
		 m->mutations_retry);
	metric(&o, "ferry_rate_limited_total", "counter", "Pushes and pulls refused by a per-user token bucket.",
		   "%" PRIu64, m->rate_limited);
	histogram(&o, "ferry_apply_duration_seconds", "Latency of ferry.apply_mutation, per mutation.",
			  &m->apply_seconds, metrics_apply_bounds);
	metric(&o, "ferry_client_pending_mutations", "gauge",
		   "Mutations connected clients report queued and unconfirmed (heartbeats).", "%" PRIu64, m->client_pending);
	metric(&o, "ferry_client_oldest_pending_mutation_seconds", "gauge",
		   "Age of the oldest unconfirmed mutation any connected client reports (heartbeats).", "%.3f",
		   m->client_oldest_pending_seconds);
	return o.overflow ? -1 : (int) o.pos;
}
