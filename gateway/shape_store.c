/*
 * gateway/shape_store.c -- what a shape keeps on disk besides its log: the snapshot's
 * visibility, finishing a snapshot, and resuming shapes at start.
 *
 * A shape built from a snapshot must never append a transaction the snapshot
 * saw, however late the stream brings it. The visibility (xmin:xmax:xip and
 * the WAL position right after the snapshot) is written beside the log as
 * "<handle>.snap" before the log turns LIVE, and read back when ferryd starts.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "shape.h"
#include "shape_int.h"

/*
 * The snapshot's visibility lives beside the log in "<handle>.snap", so a
 * restart still knows which replayed transactions the snapshot had.
 */
void
shape_snap_path(const ShapeRegistry *r, const char *handle, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%s.snap", r->dir, handle);
}

static int
snap_write(const Shape *s, char *err, size_t errlen)
{
	char		path[4096];
	char		tmp[4200];
	FILE	   *f;
	int			ok;

	shape_snap_path(s->registry, s->handle, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL)
	{
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		return -1;
	}
	fprintf(f, "%" PRIu64 " %" PRIu64 ":%" PRIu64 ":", s->snap_lsn, s->snap_xmin, s->snap_xmax);
	for (int i = 0; i < s->snap_nxip; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", s->snap_xip[i]);
	fputc('\n', f);
	ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path) != 0)
	{
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int
snap_read(Shape *s, const ShapeRegistry *r, const char *handle)
{
	char		path[4096];
	char	   *text = NULL;
	size_t		cap = 0;
	FILE	   *f;
	uint64_t	lsn;
	char	   *sp;
	int			rc = -1;

	shape_snap_path(r, handle, path, sizeof(path));
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (getline(&text, &cap, f) > 0)
	{
		text[strcspn(text, "\n")] = '\0';
		lsn = strtoull(text, &sp, 10);
		if (sp != text && *sp == ' ')
			rc = shape_parse_snapshot(s, sp + 1, lsn);
	}
	free(text);
	fclose(f);
	return rc;
}

/* ----------------------------------------------------------------
 * Snapshots
 * ---------------------------------------------------------------- */

int
shape_parse_snapshot(Shape *s, const char *text, uint64_t lsn)
{
	/* "xmin:xmax:xip1,xip2,..." */
	char	   *end;
	const char *p = text;

	s->snap_lsn = lsn;
	s->snap_xmin = strtoull(p, &end, 10);
	if (end == p || *end != ':')
		return -1;
	p = end + 1;
	s->snap_xmax = strtoull(p, &end, 10);
	if (end == p || *end != ':')
		return -1;
	p = end + 1;
	s->snap_nxip = 0;
	free(s->snap_xip);
	s->snap_xip = NULL;
	while (*p)
	{
		uint64_t	x = strtoull(p, &end, 10);

		if (end == p)
			return -1;
		s->snap_xip = realloc(s->snap_xip, sizeof(uint64_t) * (s->snap_nxip + 1));
		s->snap_xip[s->snap_nxip++] = x;
		p = *end == ',' ? end + 1 : end;
		if (*end != ',' && *end != '\0')
			return -1;
	}
	return 0;
}

/* The 64-bit xid of a 32-bit one, taking the epoch nearest to the snapshot's xmax. */
static uint64_t
widen_xid(uint64_t ref, uint32_t xid)
{
	uint64_t	full = (ref & ~(uint64_t) 0xFFFFFFFF) | xid;

	if (full > ref && full - ref > 0x80000000ULL && full >= 0x100000000ULL)
		full -= 0x100000000ULL;
	else if (full < ref && ref - full > 0x80000000ULL)
		full += 0x100000000ULL;
	return full;
}

int
shape_snapshot_saw(const Shape *s, uint32_t xid)
{
	uint64_t	full = widen_xid(s->snap_xmax, xid);

	if (full >= s->snap_xmax)
		return 0;
	if (full < s->snap_xmin)
		return 1;
	for (int i = 0; i < s->snap_nxip; i++)
		if (s->snap_xip[i] == full)
			return 0;
	return 1;
}

int
shape_snapshot_has(const Shape *s, uint64_t commit_lsn, uint32_t xid)
{
	/* Commits after the snapshot's WAL position were not in it, whatever their xid. */
	return s->snap_lsn != 0 && commit_lsn < s->snap_lsn && shape_snapshot_saw(s, xid);
}

int
shape_finish_snapshot(Shape *s, char *err, size_t errlen)
{
	SlogCursor *c;
	SlogEntry	e;
	int			rc;
	int			t = 0;

	if (s->pending != NULL)
	{
		if (slog_sync(s->pending, NULL, err, errlen) != SLOG_OK)
			return -1;
		rc = slog_cursor_open(s->pending, SLOG_OFFSET_START, &c, err, errlen);
		if (rc == SLOG_OK)
		{
			while ((rc = slog_cursor_next(c, &e, err, errlen)) == SLOG_OK)
			{
				while (t < s->npending_txns && s->pending_txn_lsn[t] < e.lsn)
					t++;
				/* Transactions the snapshot saw are in it already. */
				if (t < s->npending_txns && s->pending_txn_lsn[t] == e.lsn &&
					shape_snapshot_has(s, e.lsn, (uint32_t) s->pending_txn_xid[t]))
					continue;
				if (slog_append(s->log, e.lsn, e.op, e.kind, e.payload, e.len, err, errlen) != SLOG_OK)
				{
					slog_cursor_close(c);
					return -1;
				}
				s->last_lsn = e.lsn;
				s->last_op = e.op;
			}
			slog_cursor_close(c);
			if (rc != SLOG_END)
				return -1;
		}
		else if (rc != SLOG_GONE)
			return -1;
	}
	/* The visibility first: a LIVE log always has it. */
	if (slog_sync(s->log, NULL, err, errlen) != SLOG_OK || snap_write(s, err, errlen) != 0 ||
		slog_set_state(s->log, SLOG_STATE_LIVE, err, errlen) != SLOG_OK)
		return -1;
	if (s->pending != NULL)
	{
		char		derr[256];

		slog_close(s->pending);
		s->pending = NULL;
		if (s->pending_dir != NULL && slog_destroy(s->pending_dir, derr, sizeof(derr)) != SLOG_OK)
			log_warn("shape", "removing %s: %s", s->pending_dir, derr);
	}
	free(s->pending_txn_lsn);
	free(s->pending_txn_xid);
	s->pending_txn_lsn = NULL;
	s->pending_txn_xid = NULL;
	s->npending_txns = 0;
	s->state = SHAPE_READY;
	return 0;
}

/* ----------------------------------------------------------------
 * Restart
 * ---------------------------------------------------------------- */

/* Splits a stored definition into its NUL-separated fields. */
static int
split_definition(const char *def, size_t len, const char **fields, int n)
{
	size_t		pos = 0;

	for (int i = 0; i < n; i++)
	{
		const char *nul;

		if (pos >= len || (nul = memchr(def + pos, '\0', len - pos)) == NULL)
			return -1;
		fields[i] = def + pos;
		pos = nul - def + 1;
	}
	return 0;
}

/*
 * Rebuilds the shape kept in dir (named handle). Returns 0 when it was
 * loaded, -1 when it must be removed (why in err).
 */
static int
load_one(ShapeRegistry *r, const Catalog *cat, const char *handle, const char *dir, char *err, size_t errlen)
{
	SlogLog    *log;
	const char *f[5];
	size_t		dlen;
	const char *def;
	json_t	   *claims_js;
	json_error_t jerr;
	ShapeClaims claims = {0};
	ShapeRequest req = {0};
	ShapeErr	kind;
	Shape	   *s;
	char	   *cols;
	SlogOffset	last;
	int			rc = -1;

	if (slog_open(&log, dir, NULL, 0, NULL, 0, err, errlen) != SLOG_OK)
		return -1;
	if (slog_state(log) != SLOG_STATE_LIVE)
	{
		snprintf(err, errlen, "its snapshot never finished or it was invalidated");
		slog_close(log);
		return -1;
	}
	def = slog_definition(log, &dlen);
	if (split_definition(def, dlen, f, 5) != 0 ||
		(claims_js = json_loads(f[2], 0, &jerr)) == NULL)
	{
		snprintf(err, errlen, "its definition is unreadable");
		slog_close(log);
		return -1;
	}
	claims.sub = json_string_value(json_object_get(claims_js, "sub"));
	claims.role = json_string_value(json_object_get(claims_js, "role"));
	claims.json = f[2];
	{
		json_t	   *ts = json_object_get(claims_js, "tenants");

		claims.ntenants = (int) json_array_size(ts);
		claims.tenants = calloc(claims.ntenants + 1, sizeof(char *));
		for (int i = 0; i < claims.ntenants; i++)
			claims.tenants[i] = (char *) json_string_value(json_array_get(ts, i));
	}
	req.table = f[1];
	req.where = f[4];
	cols = strdup(f[3]);
	req.columns = calloc(strlen(cols) + 2, sizeof(char *));
	for (char *c = strtok(cols, ","); c != NULL; c = strtok(NULL, ","))
		req.columns[req.ncolumns++] = c;

	s = shape_build(cat, &req, &claims, &kind, err, errlen);
	if (s != NULL && strcmp(s->key, f[0]) != 0)
	{
		snprintf(err, errlen, "its table, columns or rules changed while ferryd was stopped");
		shape_free(s);
		s = NULL;
	}
	if (s != NULL && snap_read(s, r, handle) != 0)
	{
		snprintf(err, errlen, "its snapshot's visibility (%s.snap) is missing", handle);
		shape_free(s);
		s = NULL;
	}
	if (s != NULL)
	{
		snprintf(s->handle, sizeof(s->handle), "%s", handle);
		s->log = log;
		s->state = SHAPE_READY;
		last = slog_last(log);
		s->last_lsn = last.lsn;
		s->last_op = last.op;
		s->idle_since_us = shape_now_us();
		shape_register(r, s);
		rc = 0;
	}
	else
		slog_close(log);
	free(cols);
	free(req.columns);
	free(claims.tenants);
	json_decref(claims_js);
	return rc;
}

int
shape_registry_load(ShapeRegistry *r, const Catalog *cat, char *err, size_t errlen)
{
	DIR		   *d = opendir(r->dir);
	struct dirent *de;
	int			loaded = 0,
				dropped = 0;

	if (d == NULL)
	{
		snprintf(err, errlen, "cannot read \"%s\": %s", r->dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL)
	{
		char		dir[4096];
		char		why[512];
		char		derr[256];
		size_t		n = strlen(de->d_name);

		if (de->d_name[0] == '.')
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", r->dir, de->d_name);
		if (n > 5 && strcmp(de->d_name + n - 5, ".snap") == 0)
			continue;			/* read with its shape; orphans go below */
		if (n > 8 && strcmp(de->d_name + n - 8, ".pending") == 0)
		{
			/* a pending log outlives only an unfinished snapshot */
			slog_destroy(dir, derr, sizeof(derr));
			continue;
		}
		if (n >= sizeof(((Shape *) 0)->handle) || load_one(r, cat, de->d_name, dir, why, sizeof(why)) != 0)
		{
			log_info("shape", "dropping shape %s: %s", de->d_name, n >= 48 ? "bad name" : why);
			if (slog_destroy(dir, derr, sizeof(derr)) != SLOG_OK)
				log_warn("shape", "removing %s: %s", dir, derr);
			dropped++;
			continue;
		}
		loaded++;
	}
	/* visibility files of shapes that are gone */
	rewinddir(d);
	while ((de = readdir(d)) != NULL)
	{
		size_t		n = strlen(de->d_name);
		char		handle[64];
		char		path[4096];

		if (n <= 5 || n - 5 >= sizeof(handle) || strcmp(de->d_name + n - 5, ".snap") != 0)
			continue;
		memcpy(handle, de->d_name, n - 5);
		handle[n - 5] = '\0';
		if (shape_by_handle(r, handle) == NULL)
		{
			snprintf(path, sizeof(path), "%s/%s", r->dir, de->d_name);
			unlink(path);
		}
	}
	closedir(d);
	log_info("shape", "%d shapes resumed from %s, %d dropped", loaded, r->dir, dropped);
	return 0;
}
