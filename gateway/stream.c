/*
 * gateway/stream.c -- from the replication slot to the shape logs.
 *
 * pgoutput messages arrive a transaction at a time (protocol 1 sends a
 * transaction only once it committed, Begin to Commit in one run). Begin
 * carries the commit LSN, so every change gets its offset (commit LSN, op
 * number) as it arrives and goes straight to the logs of the shapes it
 * belongs to: the logs are the buffer, so a huge transaction costs disk, not
 * memory. Readers see a transaction only after its Commit (visible_lsn).
 *
 * After each read burst the dirty logs are fsynced and only then is the
 * Commit's end LSN confirmed to Postgres: a crash at any moment replays
 * from the last confirmed point, and replayed (lsn, op) pairs a log already
 * has are skipped, so nothing is lost or doubled.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "gateway.h"
#include "log.h"
#include "writes.h"

/* Column mapping of one relation: pgoutput column i -> catalog column map[i]. */
typedef struct RelMap
{
	const PgoRelation *rel;		/* the Relation it was built from */
	uint64_t	generation;		/* the catalog table generation */
	int			nmap;			/* pgoutput columns */
	int		   *map;			/* [nmap] catalog index, -1 if unknown */
} RelMap;

static Hmap relmaps;			/* relid -> RelMap */

/* Scratch for one change: column values as NUL-terminated text. */
typedef struct Row
{
	int			ncols;			/* catalog columns */
	const char **vals;			/* [ncols] text or NULL */
	uint32_t   *lens;			/* [ncols] */
	char	   *buf;			/* storage for the texts */
	size_t		cap;			/* bytes at buf */
} Row;

static Row old_row,
			new_row;
static Wbuf change_buf;

/* ----------------------------------------------------------------
 * Connection
 * ---------------------------------------------------------------- */

/* The user's conninfo plus ferryd's session settings, as key=value text. */
static char *
repl_conninfo(const char *conninfo, char *err, size_t errlen)
{
	char	   *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo != NULL ? conninfo : "", &perr);
	size_t		cap = 1024;
	char	   *out;
	size_t		len = 0;

	if (opts == NULL)
	{
		snprintf(err, errlen, "bad database URL: %s", perr != NULL ? perr : "out of memory");
		PQfreemem(perr);
		return NULL;
	}
	out = malloc(cap);
	out[0] = '\0';
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
	{
		const char *v = o->val;
		size_t		need;

		if (v == NULL || strcmp(o->keyword, "options") == 0 || strcmp(o->keyword, "replication") == 0)
			continue;
		need = strlen(o->keyword) + 2 * strlen(v) + 8;
		while (len + need + 256 > cap)
			out = realloc(out, cap *= 2);
		len += sprintf(out + len, "%s='", o->keyword);
		for (const char *p = v; *p; p++)
		{
			if (*p == '\'' || *p == '\\')
				out[len++] = '\\';
			out[len++] = *p;
		}
		out[len++] = '\'';
		out[len++] = ' ';
		out[len] = '\0';
	}
	sprintf(out + len, "options='%s'", GW_SESSION_OPTIONS);
	PQconninfoFree(opts);
	return out;
}

static void
set_health(const char *fmt, const char *detail)
{
	snprintf(gw->health, sizeof(gw->health), fmt, detail);
}

static void
repl_options(ReplOptions *o, const char *conninfo)
{
	repl_options_init(o);
	o->conninfo = conninfo;
	o->slot = gw->cfg->slot;
	o->publication = gw->cfg->publication;
	o->setup_timeout_ms = 30000;
}

/* A streaming Repl joins the event loop. */
static int
attach_repl(char *err, size_t errlen)
{
	lws_sock_file_fd_type fd;
	char		lsn[REPL_LSN_BUFLEN];

	gw->repl_fd = dup(repl_socket(gw->repl));
	fd.filefd = gw->repl_fd;
	gw->repl_wsi = lws_adopt_descriptor_vhost(gw->vhost, LWS_ADOPT_RAW_FILE_DESC, fd, "ferry-repl", NULL);
	if (gw->repl_wsi == NULL)
	{
		snprintf(err, errlen, "cannot add the replication socket to the event loop");
		repl_close(gw->repl);
		gw->repl = NULL;
		return -1;
	}
	gw->metrics.replicating = 1;
	gw->health[0] = '\0';
	gw->repl_failures = 0;
	log_info("stream", "replicating from slot \"%s\"%s at %s", gw->cfg->slot,
			 repl_slot_created(gw->repl) ? " (created)" : "", repl_lsn_format(repl_start_lsn(gw->repl), lsn));
	return 0;
}

/*
 * Connects at start-up, blocking: -2 for a configuration problem (fatal at
 * start), -1 for an outage (retried).
 */
static int
connect_repl(char *err, size_t errlen)
{
	ReplOptions o;
	ReplErrKind kind;
	char	   *conninfo = repl_conninfo(gw->cfg->database_url, err, errlen);

	if (conninfo == NULL)
		return -2;
	repl_options(&o, conninfo);
	gw->repl = repl_open_opts(&o, &kind, err, errlen);
	free(conninfo);
	if (gw->repl == NULL)
		return kind == REPL_ERR_CONFIG ? -2 : -1;
	return attach_repl(err, errlen);
}

/*
 * Reconnects without blocking the event loop: each call advances the setup
 * as far as the socket allows. 1 while connecting, 0 streaming, -1 failed.
 */
static int
reconnect_step(char *err, size_t errlen)
{
	int			rc;

	if (gw->repl_connecting == NULL)
	{
		ReplOptions o;
		char	   *conninfo = repl_conninfo(gw->cfg->database_url, err, errlen);

		if (conninfo == NULL)
			return -1;
		repl_options(&o, conninfo);
		gw->repl_connecting = repl_start(&o, err, errlen);
		free(conninfo);
		if (gw->repl_connecting == NULL)
			return -1;
		gw->repl_connect_started_us = gw_now_us();
	}
	rc = repl_connect_poll(gw->repl_connecting, err, errlen);
	if (rc == 0)
	{
		gw->repl = gw->repl_connecting;
		gw->repl_connecting = NULL;
		return attach_repl(err, errlen);
	}
	if (rc > 0 && gw_now_us() - gw->repl_connect_started_us < 30 * 1000000LL)
		return 1;
	if (rc > 0)
		snprintf(err, errlen, "connecting the replication stream took longer than 30 s");
	repl_close(gw->repl_connecting);
	gw->repl_connecting = NULL;
	return -1;
}

static void
disconnect_repl(const char *why)
{
	if (gw->repl_wsi != NULL)
	{
		struct lws *w = gw->repl_wsi;

		gw->repl_wsi = NULL;
		lws_set_timeout(w, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
	}
	if (gw->repl != NULL)
		repl_close(gw->repl);
	gw->repl = NULL;
	gw->repl_fd = -1;
	gw->in_txn = 0;
	gw->metrics.replicating = 0;
	gw->repl_failures++;
	{
		int64_t		backoff = 250000LL << (gw->repl_failures < 6 ? gw->repl_failures : 6);

		gw->repl_retry_at_us = gw_now_us() + backoff;
	}
	set_health("replication stopped: %s", why);
	log_error("stream", "replication stopped: %s; retrying", why);
}

int
stream_start(char *err, size_t errlen)
{
	int			rc;

	hmap_init(&relmaps);
	wbuf_init(&change_buf);
	rc = connect_repl(err, errlen);
	/* A configuration problem is fatal at start; an outage is retried. */
	if (rc == -2)
		return -1;
	if (rc == -1)
	{
		log_warn("stream", "%s; retrying", err);
		set_health("replication not connected: %s", err);
		gw->repl_retry_at_us = gw_now_us() + 1000000;
	}
	return 0;
}

void
stream_stop(void)
{
	if (gw->repl != NULL)
		repl_close(gw->repl);
	gw->repl = NULL;
	repl_close(gw->repl_connecting);
	gw->repl_connecting = NULL;
	for (long i = hmap_next(&relmaps, 0); i >= 0; i = hmap_next(&relmaps, i + 1))
	{
		RelMap	   *m = relmaps.slots[i].value;

		free(m->map);
		free(m);
	}
	hmap_destroy(&relmaps);
	wbuf_free(&change_buf);
	free(old_row.vals);
	free(old_row.lens);
	free(old_row.buf);
	free(new_row.vals);
	free(new_row.lens);
	free(new_row.buf);
}

/* ----------------------------------------------------------------
 * Catalog changes
 * ---------------------------------------------------------------- */

typedef struct Reload
{
	Catalog    *old;			/* catalog before */
	Catalog    *new;			/* catalog after */
} Reload;

static void
check_shape(Shape *s, void *arg)
{
	Reload	   *r = arg;
	const CatTable *before = cat_table_by_relid(r->old, s->relid);
	const CatTable *after = cat_table_by_relid(r->new, s->relid);

	if (s->state == SHAPE_INVALID)
		return;
	if (after == NULL)
		shape_invalidate(s, "the table is no longer synced");
	else if (before == NULL || !cat_same_columns(before, after))
		shape_invalidate(s, "the table's columns changed");
	else if (!cat_same_rules(before, after))
		shape_invalidate(s, "the table's rules changed");
	else
		return;
	session_shape_invalid(s);
}

/*
 * Waits (briefly) until the transaction being decoded is visible to new
 * snapshots of the control connection: the stream can deliver a commit a
 * moment before the committing backend leaves the proc array.
 */
static void
wait_visible(uint32_t xid)
{
	PGresult   *r = PQexec(gw->pg, "SELECT txid_snapshot_xmax(txid_current_snapshot())");
	uint64_t	ref;
	uint64_t	full;
	char		num[32];
	const char *params[1] = {num};

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
	{
		PQclear(r);
		return;
	}
	ref = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	full = (ref & ~(uint64_t) 0xFFFFFFFF) | xid;
	if (full > ref && full - ref > 0x80000000ULL && full >= 0x100000000ULL)
		full -= 0x100000000ULL;
	snprintf(num, sizeof(num), "%llu", (unsigned long long) full);
	for (int i = 0; i < 200; i++)
	{
		int			running;

		r = PQexecParams(gw->pg, "SELECT txid_status($1::bigint)", 1, NULL, params, NULL, NULL, 0);
		running = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "in progress") == 0;
		PQclear(r);
		if (!running)
			return;
		usleep(5000);
	}
}

/* Reloads the catalog, in one snapshot, and drops the shapes it invalidates. */
static void
reload_catalog(void)
{
	char		err[512];
	Catalog    *cat;
	Reload		r;

	if (gw->in_txn || gw->txn_catalog_changed)
		wait_visible(gw->txn_xid);
	PQclear(PQexec(gw->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
	cat = cat_load(gw->pg, err, sizeof(err));
	PQclear(PQexec(gw->pg, "COMMIT"));
	if (cat == NULL && PQstatus(gw->pg) != CONNECTION_OK)
	{
		/* The control connection died (a database restart): once more on a new one. */
		PQreset(gw->pg);
		PQclear(PQexec(gw->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
		cat = cat_load(gw->pg, err, sizeof(err));
		PQclear(PQexec(gw->pg, "COMMIT"));
	}
	if (cat == NULL)
	{
		log_error("stream", "reloading the catalog failed: %s", err);
		return;
	}
	r.old = gw->cat;
	r.new = cat;
	gw->cat = cat;
	shape_each(&gw->shapes, 0, check_shape, &r);
	cat_free(r.old);
	log_info("stream", "catalog reloaded: %d synced tables, schema version %lld", cat->ntables,
			 (long long) cat->schema_version);
}

static void
truncate_shape(Shape *s, void *arg)
{
	(void) arg;
	if (s->state == SHAPE_INVALID)
		return;
	shape_invalidate(s, "the table was truncated");
	session_shape_invalid(s);
}

/* ----------------------------------------------------------------
 * Rows
 * ---------------------------------------------------------------- */

static RelMap *
relmap_for(const PgoRelation *rel, const CatTable *t)
{
	RelMap	   *m = hmap_get(&relmaps, &rel->relid, sizeof(rel->relid));

	if (m != NULL && m->rel == rel && m->generation == t->generation)
		return m;
	if (m == NULL)
	{
		m = calloc(1, sizeof(RelMap));
		hmap_put(&relmaps, &rel->relid, sizeof(rel->relid), m);
	}
	free(m->map);
	m->rel = rel;
	m->generation = t->generation;
	m->nmap = rel->ncols;
	m->map = malloc(sizeof(int) * (rel->ncols + 1));
	for (int i = 0; i < rel->ncols; i++)
		m->map[i] = cat_column(t, rel->cols[i].name);
	return m;
}

/*
 * Fills row with the catalog columns of tuple tup (NULL-terminated texts).
 * Unchanged TOAST values come from fallback (the old row). Returns -1 when a
 * column is binary or an unchanged value has no fallback.
 */
static int
fill_row(Row *row, const CatTable *t, const RelMap *m, const PgoTuple *tup, const Row *fallback)
{
	size_t		need = 0;
	size_t		pos = 0;

	if (row->ncols < t->ncols)
	{
		row->vals = realloc(row->vals, sizeof(char *) * t->ncols);
		row->lens = realloc(row->lens, sizeof(uint32_t) * t->ncols);
	}
	row->ncols = t->ncols;
	for (int i = 0; i < tup->ncols && i < m->nmap; i++)
		need += tup->cols[i].len + 1;
	if (fallback != NULL)
		for (int i = 0; i < fallback->ncols; i++)
			need += fallback->vals[i] != NULL ? fallback->lens[i] + 1 : 0;
	if (need > row->cap)
	{
		row->cap = need + 256;
		row->buf = realloc(row->buf, row->cap);
	}
	for (int i = 0; i < t->ncols; i++)
	{
		row->vals[i] = NULL;
		row->lens[i] = 0;
	}
	for (int i = 0; i < tup->ncols && i < m->nmap; i++)
	{
		const PgoDatum *d = &tup->cols[i];
		int			c = m->map[i];
		const char *src;
		uint32_t	len;

		if (c < 0)
			continue;
		switch (d->kind)
		{
			case PGO_DATUM_NULL:
				continue;
			case PGO_DATUM_TEXT:
				src = d->data;
				len = d->len;
				break;
			case PGO_DATUM_UNCHANGED:
				if (fallback == NULL || c >= fallback->ncols || fallback->vals[c] == NULL)
					return -1;
				src = fallback->vals[c];
				len = fallback->lens[c];
				break;
			default:
				return -1;
		}
		memcpy(row->buf + pos, src, len);
		row->buf[pos + len] = '\0';
		row->vals[c] = row->buf + pos;
		row->lens[c] = len;
		pos += len + 1;
	}
	return 0;
}

static void
touch(Shape *s)
{
	for (int i = 0; i < gw->ntouched; i++)
		if (gw->touched[i] == s)
			return;
	if (gw->ntouched == gw->touched_cap)
	{
		gw->touched_cap = gw->touched_cap ? gw->touched_cap * 2 : 16;
		gw->touched = realloc(gw->touched, sizeof(Shape *) * gw->touched_cap);
	}
	gw->touched[gw->ntouched++] = s;
}

typedef struct Change
{
	const CatTable *t;			/* the table */
	const Row  *old;			/* old row or NULL (insert) */
	const Row  *new;			/* new row or NULL (delete) */
	uint32_t	op;				/* op number within the transaction */
	int			failed;			/* an append failed */
} Change;

static void
route_change(Shape *s, void *arg)
{
	Change	   *c = arg;
	int			was = c->old != NULL && shape_matches(s, c->t, c->old->vals);
	int			is = c->new != NULL && shape_matches(s, c->t, c->new->vals);
	int			op;
	const Row  *row;
	char		err[512];

	if (s->state == SHAPE_INVALID || (!was && !is))
		return;
	if (was && is)
		op = WIRE_OP_UPDATE, row = c->new;
	else if (is)
		op = WIRE_OP_INSERT, row = c->new;	/* insert, or moved into the shape */
	else
		op = WIRE_OP_DELETE, row = c->old;	/* delete, tombstone, or moved out */
	wbuf_reset(&change_buf);
	shape_encode_change(s, c->t, op, row->vals, row->lens, &change_buf);
	switch (shape_append_change(s, gw->txn_lsn, c->op, gw->txn_xid, gw->txn_commit_us / 1000,
								change_buf.data, change_buf.len, err, sizeof(err)))
	{
		case 1:
			gw->metrics.changes_routed++;
			touch(s);
			break;
		case 0:
			break;
		default:
			log_error("stream", "shape %s: %s", s->handle, err);
			shape_invalidate(s, "its log could not be written");
			session_shape_invalid(s);
			c->failed = 1;
	}
}

static int
on_row_change(uint32_t relid, const PgoTuple *oldtup, const PgoTuple *newtup, char *err, size_t errlen)
{
	const CatTable *t;
	const PgoRelation *rel;
	RelMap	   *m;
	Change		c;
	const Row  *tenant_row;

	gw->metrics.changes++;
	if (cat_is_ferry_table(gw->cat, relid))
	{
		gw->txn_catalog_changed = 1;
		return 0;
	}
	t = cat_table_by_relid(gw->cat, relid);
	if (t == NULL)
		return 0;				/* not synced (any more) */
	rel = pgo_relcache_get(gw->relcache, relid);
	if (rel == NULL)
	{
		snprintf(err, errlen, "a change of relation %u came before its Relation message", relid);
		return -1;
	}
	m = relmap_for(rel, t);
	memset(&c, 0, sizeof(c));
	c.t = t;
	c.op = gw->txn_op++;
	if (oldtup != NULL && oldtup->ncols > 0)
	{
		if (fill_row(&old_row, t, m, oldtup, NULL) != 0)
		{
			snprintf(err, errlen, "relation %u: old row has binary or missing values", relid);
			return -1;
		}
		c.old = &old_row;
	}
	if (newtup != NULL)
	{
		if (fill_row(&new_row, t, m, newtup, c.old) != 0)
		{
			snprintf(err, errlen, "relation %u: an unchanged TOAST value without an old row "
					 "(is REPLICA IDENTITY still FULL?)", relid);
			return -1;
		}
		c.new = &new_row;
	}
	tenant_row = c.new != NULL ? c.new : c.old;
	if (tenant_row == NULL || tenant_row->vals[t->tenant] == NULL)
		return 0;
	shape_route(&gw->shapes, relid, tenant_row->vals[t->tenant], c.old != NULL ? c.old->vals : NULL,
				c.new != NULL ? c.new->vals : NULL, route_change, &c);
	return 0;
}

/* ----------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------- */

static int
on_data(void *arg, uint64_t wal_start, uint64_t wal_end, const char *payload, size_t len,
		char *err, size_t errlen)
{
	PgoMsg	   *m = &gw->msg;

	(void) arg;
	(void) wal_start;
	(void) wal_end;
	if (pgo_decode(m, payload, len, err, errlen) < 0)
		return -1;
	switch (m->type)
	{
		case PGO_BEGIN:
			gw->in_txn = 1;
			gw->txn_xid = m->begin.xid;
			gw->txn_lsn = m->begin.final_lsn;
			gw->txn_commit_us = pgo_time_to_unix_us(m->begin.commit_time);
			gw->txn_op = 0;
			gw->ntouched = 0;
			gw->txn_catalog_changed = 0;
			return 0;
		case PGO_RELATION:
			{
				const CatTable *t = cat_table_by_relid(gw->cat, m->relation.relid);
				int			changed = 0;

				if (pgo_relcache_put(gw->relcache, &m->relation, err, errlen) == NULL)
					return -1;
				if (t != NULL)
				{
					/* A synced table's columns moved under us: reload before its changes. */
					int			live = 0;

					for (int i = 0; i < m->relation.ncols; i++)
					{
						int			c = cat_column(t, m->relation.cols[i].name);

						if (c < 0 || t->cols[c].type_oid != m->relation.cols[i].type_oid)
							changed = 1;
						live++;
					}
					if (live != t->ncols)
						changed = 1;
				}
				if (changed)
					reload_catalog();
				return 0;
			}
		case PGO_INSERT:
			return on_row_change(m->insert.relid, NULL, &m->insert.newtup, err, errlen);
		case PGO_UPDATE:
			return on_row_change(m->update.relid, m->update.old_kind ? &m->update.oldtup : NULL,
								 &m->update.newtup, err, errlen);
		case PGO_DELETE:
			return on_row_change(m->delete.relid, &m->delete.oldtup, NULL, err, errlen);
		case PGO_TRUNCATE:
			for (uint32_t i = 0; i < m->truncate.nrels; i++)
			{
				if (cat_is_ferry_table(gw->cat, m->truncate.relids[i]))
					gw->txn_catalog_changed = 1;
				else
					shape_each(&gw->shapes, m->truncate.relids[i], truncate_shape, NULL);
			}
			return 0;
		case PGO_COMMIT:
			for (int i = 0; i < gw->ntouched; i++)
			{
				Shape	   *s = gw->touched[i];

				s->visible_lsn = gw->txn_lsn;
				if (s->state == SHAPE_READY)
					session_notify_shape(s);
			}
			gw->ntouched = 0;
			gw->in_txn = 0;
			gw->last_commit_lsn = gw->txn_lsn;
			gw->unsynced_end_lsn = m->commit.end_lsn;
			gw->metrics.transactions++;
			gw->metrics.received_lsn = m->commit.end_lsn;
			gw->metrics.last_commit_us = pgo_time_to_unix_us(m->commit.commit_time);
			gw->metrics.last_receive_us = gw_now_us();
			if (gw->txn_catalog_changed)
				reload_catalog();
			return 0;
		default:
			return 0;
	}
}

/* ----------------------------------------------------------------
 * Event loop hooks
 * ---------------------------------------------------------------- */

typedef struct SyncState
{
	int			failed;			/* a sync failed: do not confirm */
	int			synced;			/* logs fsynced */
} SyncState;

/*
 * Group sync: while commits stream in, dirty logs are fsynced at most once per
 * --group-sync microseconds, so one fsync covers every commit that arrived meanwhile
 * instead of one each (clients' data and acknowledgements wait for it). The first commit
 * after a quiet spell is synced at once.
 */
static int64_t last_sync_us;	/* when logs were last fsynced */
static struct lws *sync_timer_wsi;	/* a timerfd in the event loop (lws's own timers
										 * poll with millisecond timeouts and spin through
										 * the last one) */
static int	sync_timer_fd = -1;
static bool sync_timer_armed;

static int
sync_shape(Shape *s, void *arg)
{
	SyncState  *st = arg;
	char		err[512];

	/* Entries hidden at start are whole once the replay has passed their commit. */
	if (s->hidden_above != 0)
	{
		if (gw->last_commit_lsn < s->hidden_above || s->state != SHAPE_READY)
			return 1;			/* look again at the next sync */
		if (slog_sync(s->log, NULL, err, sizeof(err)) == SLOG_OK)
		{
			s->hidden_above = 0;
			session_notify_shape(s);
		}
	}
	if (!s->dirty)
		return 0;
	if (shape_sync(s, err, sizeof(err)) != 0)
	{
		log_error("stream", "shape %s: %s", s->handle, err);
		st->failed = 1;
		return 1;
	}
	st->synced++;
	if (s->state == SHAPE_READY)
		session_notify_shape(s);	/* readers see the entries only now */
	return 0;
}

void
stream_sync(void)
{
	SyncState	st = {0};
	uint64_t	processed;

	shape_each_dirty(&gw->shapes, sync_shape, &st);
	if (st.synced > 0)
		last_sync_us = (int64_t) (gw_mono() * 1e6);
	if (st.failed || gw->repl == NULL)
		return;
	/*
	 * Everything decoded is in synced logs: the WAL the server reported as
	 * sent (keepalives carry the position decoding reached) is processed.
	 */
	processed = gw->metrics.received_lsn;
	if (!gw->in_txn && repl_server_wal_end(gw->repl) > processed)
		processed = repl_server_wal_end(gw->repl);
	writes_synced_to(processed);
	session_wake_writers();
	if (gw->unsynced_end_lsn == 0)
		return;
	repl_confirm(gw->repl, gw->unsynced_end_lsn);
	gw->metrics.confirmed_lsn = repl_confirmed_lsn(gw->repl);
	gw->unsynced_end_lsn = 0;
}

/* Arms the group sync timer to fire in wait_us; false when there is no timer to arm. */
static bool
arm_sync_timer(int64_t wait_us)
{
	struct itimerspec its;

	if (sync_timer_wsi == NULL)
	{
		lws_sock_file_fd_type fd;

		if (gw->vhost == NULL || (fd.filefd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
			return false;
		sync_timer_wsi = lws_adopt_descriptor_vhost(gw->vhost, LWS_ADOPT_RAW_FILE_DESC, fd, "ferry-repl", NULL);
		if (sync_timer_wsi == NULL)
		{
			close(fd.filefd);
			return false;
		}
		sync_timer_fd = fd.filefd;
	}
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = wait_us / 1000000;
	its.it_value.tv_nsec = (wait_us % 1000000) * 1000;
	if (timerfd_settime(sync_timer_fd, 0, &its, NULL) != 0)
		return false;
	sync_timer_armed = true;
	return true;
}

bool
stream_is_sync_timer(struct lws *wsi)
{
	return wsi != NULL && wsi == sync_timer_wsi;
}

void
stream_on_sync_timer(void)
{
	uint64_t	expirations;

	if (read(sync_timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		log_warn("stream", "reading the group sync timer: %s", strerror(errno));
	sync_timer_armed = false;
	if (!gw->in_txn)
		stream_sync();
}

void
stream_sync_timer_closed(void)
{
	sync_timer_wsi = NULL;
	sync_timer_fd = -1;
	sync_timer_armed = false;
}

/* stream_sync now, or once the group sync interval has passed since the last one. */
static void
sync_soon(void)
{
	int64_t		interval = gw->cfg != NULL ? gw->cfg->group_sync_us : 0;
	int64_t		wait = last_sync_us + interval - (int64_t) (gw_mono() * 1e6);

	if (wait <= 0)
		stream_sync();
	else if (!sync_timer_armed && !arm_sync_timer(wait))
		stream_sync();
}

void
stream_on_readable(void)
{
	char		err[512];

	if (gw->repl == NULL)
		return;
	if (repl_read(gw->repl, on_data, NULL, err, sizeof(err)) < 0)
	{
		disconnect_repl(err);
		return;
	}
	if (!gw->in_txn)
	{
		sync_soon();
		snapshot_collect();		/* snapshots that finished while inside a transaction */
	}
	gw->metrics.server_wal_end = repl_server_wal_end(gw->repl);
	if (repl_wants_write(gw->repl) && gw->repl_wsi != NULL)
		lws_callback_on_writable(gw->repl_wsi);
}

void
stream_on_writable(void)
{
	char		err[512];

	if (gw->repl != NULL && repl_flush(gw->repl, err, sizeof(err)) < 0)
		disconnect_repl(err);
	else if (gw->repl != NULL && repl_wants_write(gw->repl) && gw->repl_wsi != NULL)
		lws_callback_on_writable(gw->repl_wsi);
}

void
stream_tick(int64_t now_us)
{
	char		err[512];

	snapshot_collect();

	if (gw->repl == NULL)
	{
		if (!gw->stopping && now_us >= gw->repl_retry_at_us)
		{
			int			rc = reconnect_step(err, sizeof(err));

			if (rc < 0)
			{
				gw->repl_failures++;
				gw->repl_retry_at_us = now_us + (250000LL << (gw->repl_failures < 6 ? gw->repl_failures : 6));
				set_health("replication not connected: %s", err);
				log_warn("stream", "%s; retrying", err);
			}
		}
		return;
	}
	if (!gw->in_txn)
	{
		stream_sync();
		snapshot_collect();
	}
	gw->metrics.confirmed_lsn = repl_confirmed_lsn(gw->repl);
	gw->metrics.server_wal_end = repl_server_wal_end(gw->repl);
	if (repl_tick(gw->repl, repl_now_ms(), err, sizeof(err)) < 0)
		disconnect_repl(err);
	else if (repl_wants_write(gw->repl) && gw->repl_wsi != NULL)
		lws_callback_on_writable(gw->repl_wsi);
}
