/*
 * test/qa/s11_convergence.c -- scenario 11: randomized convergence, checked against an independent log.
 *
 * K devices (two of user u1 and one of u2 in tenant ws-b; with FERRY_QA_FULL=1 also a
 * third u1 device and user u3 who sees both tenants), each behind its own netproxy, and
 * the app writing to Postgres directly. A seeded generator picks, step by step: a device
 * inserts a record (its own, which only it later edits or deletes), edits a shared record
 * -- one column per mutation: title (lww), note (manual), status (version), tags
 * (set_union: adds a unique tag), n (counter: adds a delta) -- or deletes its own; the
 * app edits a shared record in SQL, or deletes one (edits of it then conflict); a device
 * syncs; a link goes down, comes back, turns
 * slow, lossy, resets or cuts mid-frame. Conflicts are resolved (keep mine or use theirs,
 * at random) as they show up. At the end every link heals and every device drains.
 *
 * The test keeps its own log of what each device did and checks:
 *   - every device holds exactly the server's live rows of its tenants, nothing else;
 *   - every created record is on the server once, every deleted one is a tombstone;
 *   - n of each record is the sum of every delta made (each counter edit applied exactly
 *     once: the duplicates and lost figures), every added tag is present;
 *   - title, note and status hold a value somebody wrote;
 *   - every mutation a device made reached the server (one idempotency record per
 *     mutation and per keep-mine resubmission), and the server's conflicts are exactly
 *     the conflicts the devices showed and the test resolved.
 *
 * The seed is printed; FERRY_QA_SEED=N replays the same operations and faults
 * (process timing still varies). FERRY_QA_STEPS overrides the number of steps.
 */
#include "qa.h"

#define T "qa_s11"
#define MAXDEV 5
#define MAXROWS 4096
#define SHARED 6				/* shared records per tenant: ids 1..6 (ws-a), 101..106 (ws-b) */

/* What the log knows about a record. */
typedef struct Row
{
	int			id;				/* key */
	int			tenant;			/* 0 = ws-a, 1 = ws-b */
	int			owner;			/* device that created it, -1 = shared (seeded by the app) */
	int			created;		/* exists in the log */
	int			deleted;		/* deleted by its owner */
	int			app_deleted;	/* the app deleted it (shared records): edits of it may be dropped by a
								 * use-theirs, or bring it back by a keep-mine */
	long		n;				/* sum of every delta made */
	int			ntags;			/* tags added */
	char		tags[64][12];	/* each added tag */
	int			nvals;			/* values written to title, note or status */
	char		vals[96][24];	/* those values */
} Row;

/* A device and its counters. */
typedef struct Device
{
	Dev			d;				/* the CLI device */
	Np		   *np;				/* its link */
	int			sees[2];		/* tenants it may see */
	int			can_write[2];	/* tenants it may write */
	int			offline;		/* its link is down */
	long		made;			/* mutations it made */
	long		keep_mine;		/* keep-mine resolutions (each a new mutation) */
	long		conflicts;		/* conflicts it showed and the test resolved */
	int			next_id;		/* the next id of its own records */
} Device;

static Row	rows[MAXROWS];
static int	nrows;
static Device dev[MAXDEV];
static int	ndev;
static unsigned long rng;

static unsigned
rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned) (rng % n);
}

static Row *
row_new(int id, int tenant, int owner)
{
	Row		   *r = &rows[nrows++];

	memset(r, 0, sizeof(*r));
	r->id = id;
	r->tenant = tenant;
	r->owner = owner;
	r->created = 1;
	return r;
}

static void
row_val(Row *r, const char *v)
{
	if (r->nvals < 96)
		snprintf(r->vals[r->nvals++], sizeof(r->vals[0]), "%s", v);
}

static int
row_has_val(Row *r, const char *v)
{
	if (strcmp(v, "") == 0 || strncmp(v, "init", 4) == 0)
		return 1;
	for (int i = 0; i < r->nvals; i++)
		if (strcmp(r->vals[i], v) == 0)
			return 1;
	return 0;
}

/* A random record device k may edit: a shared one of a tenant it writes, or its own live one. */
static Row *
pick_row(int k, int own)
{
	for (int tries = 0; tries < 30; tries++)
	{
		Row		   *r = &rows[rnd((unsigned) nrows)];

		if (r->deleted || !dev[k].can_write[r->tenant])
			continue;
		if (own ? r->owner == k : r->owner == -1)
			return r;
	}
	return NULL;
}

/* ---- operations ---------------------------------------------------------------------- */

static void
op_insert(int k)
{
	Device	   *dv = &dev[k];
	int			tenant = dv->can_write[0] ? 0 : 1;
	Row		   *r;
	char		v[200];

	if (nrows >= MAXROWS)
		return;
	r = row_new(1000 * (k + 1) + dv->next_id++, tenant, k);
	snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-%c\", \"title\": \"init\", \"made\": \"d%d\"}", r->id,
			 tenant ? 'b' : 'a', k);
	if (dev_run(&dv->d, NULL, "insert", T, v, NULL) != 0)
		bail_out("device %d could not insert record %d offline", k, r->id);
	dv->made++;
	qa.sent++;
}

static void
op_edit(int k, Row *r)
{
	Device	   *dv = &dev[k];
	char		q[128],
				key[16],
				v[400];
	char	   *cur;
	int			col = (int) rnd(5);

	snprintf(q, sizeof(q), "SELECT n || '|' || tags FROM " T " WHERE id = %d", r->id);
	cur = dev_q(&dv->d, q);
	if (cur[0] == '\0' || strchr(cur, '|') == NULL)
	{
		free(cur);				/* the device has not received the record yet */
		return;
	}
	snprintf(key, sizeof(key), "%d", r->id);
	if (col == 0 || col == 1 || col == 2)
	{
		static const char *name[] = {"title", "note", "status"};
		char		val[24];

		snprintf(val, sizeof(val), "%c%d-%lu", name[col][0], k, qa.sent);
		row_val(r, val);
		snprintf(v, sizeof(v), "{\"%s\": \"%s\"}", name[col], val);
	}
	else if (col == 3 && r->ntags < 64)
	{
		/* tags: the current set plus a unique tag */
		char	   *tags = strchr(cur, '|') + 1;
		char		list[300] = "";
		char	   *tok,
				   *save = NULL;

		tags[strcspn(tags, "}")] = '\0';
		if (*tags == '{')
			tags++;
		/* the text form quotes elements or not ({a,"b"}): the tags here need no quotes */
		for (tok = strtok_r(tags, ",\"", &save); tok; tok = strtok_r(NULL, ",\"", &save))
			if (strlen(list) + strlen(tok) + 4 < sizeof(list))
			{
				strcat(list, "\"");
				strcat(list, tok);
				strcat(list, "\",");
			}
		snprintf(r->tags[r->ntags], sizeof(r->tags[0]), "t%lu", qa.sent);
		snprintf(v, sizeof(v), "{\"tags\": [%s\"%s\"]}", list, r->tags[r->ntags]);
		r->ntags++;
	}
	else
	{
		long		delta = 1 + (long) rnd(5);

		snprintf(v, sizeof(v), "{\"n\": %ld}", atol(cur) + delta);
		r->n += delta;
	}
	free(cur);
	if (dev_run(&dv->d, NULL, "update", T, key, v, NULL) != 0)
		bail_out("device %d could not update record %d offline with %s", k, r->id, v);
	dv->made++;
	qa.sent++;
}

static void
op_delete(int k, Row *r)
{
	char		key[16];

	snprintf(key, sizeof(key), "%d", r->id);
	if (dev_run(&dev[k].d, NULL, "delete", T, key, NULL) != 0)
		bail_out("device %d could not delete record %d", k, r->id);
	r->deleted = 1;
	dev[k].made++;
	qa.sent++;
}

/*
 * The app writes to Postgres directly: a title, a status (a newer row for version
 * conflicts), a delta, and now and then it deletes a shared record.
 */
static void
op_server(void)
{
	Row		   *r = &rows[rnd(SHARED * 2)];
	char		val[24];
	int			what = (int) rnd(7);

	if (what == 6)
	{
		if (r->id % 100 > 2)	/* records 1, 2, 101, 102 stay, so counters keep a strict check */
		{
			sql("DELETE FROM " T " WHERE id = %d", r->id);
			r->app_deleted = 1;
		}
		return;
	}
	what %= 3;

	if (what == 2)
	{
		long		delta = 1 + (long) rnd(5);

		if (sqll("WITH u AS (UPDATE " T " SET n = n + %ld WHERE id = %d AND ferry_deleted_at IS NULL RETURNING 1) "
				 "SELECT count(*) FROM u", delta, r->id) == 1)
			r->n += delta;
		return;
	}
	snprintf(val, sizeof(val), "%c-app-%lu", what ? 's' : 't', qa.sent);
	row_val(r, val);
	sql("UPDATE " T " SET %s = '%s' WHERE id = %d AND ferry_deleted_at IS NULL", what ? "status" : "title", val, r->id);
}

static void
op_fault(int k)
{
	Device	   *dv = &dev[k];

	switch (rnd(7))
	{
		case 0:
			np_offline(dv->np);
			dv->offline = 1;
			break;
		case 1:
		case 2:
			np_cmd(dv->np, "pass");
			dv->offline = 0;
			break;
		case 3:
			np_cmd(dv->np, "delay %u %u", 20 + rnd(200), rnd(50));
			break;
		case 4:
			np_cmd(dv->np, "cut %u", 200 + rnd(3000));
			break;
		case 5:
			np_cmd(dv->np, "reset %u", 20 + rnd(100));
			break;
		default:
			np_cmd(dv->np, "close");
			break;
	}
}

/* resolve_conflicts resolves every conflict a device shows, at random; returns how many. */
static int
resolve_conflicts(int k)
{
	char	   *ids = dev_q(&dev[k].d, "SELECT coalesce(group_concat(id, ' '), '') FROM ferry_queue WHERE status = 'conflict'");
	char	   *save = NULL;
	int			n = 0;

	for (char *id = strtok_r(ids, " ", &save); id; id = strtok_r(NULL, " ", &save))
	{
		int			keep = (int) rnd(2);

		if (dev_run(&dev[k].d, NULL, "resolve", id, keep ? "--keep-mine" : "--use-theirs", NULL) != 0)
			continue;
		dev[k].conflicts++;
		dev[k].keep_mine += keep;
		qa.sent += keep;		/* keep mine sends the change again, as a new mutation */
		n++;
	}
	free(ids);
	return n;
}

/* ---- checks -------------------------------------------------------------------------- */

static char *
device_rows(int k)
{
	return dev_q(&dev[k].d, "SELECT coalesce(group_concat(id || ':' || coalesce(title, '') || ':' || coalesce(note, '') || ':' "
				 "|| coalesce(status, '') || ':' || tags || ':' || n, ','), '') FROM (SELECT * FROM " T " ORDER BY id)");
}

static char *
server_rows(int k)
{
	return sqlv("SELECT coalesce(string_agg(id || ':' || coalesce(title, '') || ':' || coalesce(note, '') || ':' || "
				"coalesce(status, '') || ':' || tags::text || ':' || n, ',' ORDER BY id), '') FROM " T
				" WHERE ferry_deleted_at IS NULL AND ws IN ('%s', '%s')",
				dev[k].sees[0] ? "ws-a" : "-", dev[k].sees[1] ? "ws-b" : "-");
}

int
main(void)
{
	Gw		   *g;
	char		target[64];
	int			steps;
	int			full = qa_full();

	qa_begin(11, full ? "randomized convergence" : "randomized convergence (short)");
	rng = qa_seed();
	for (int i = 0; i < 10; i++)
		rnd(2);
	steps = getenv("FERRY_QA_STEPS") ? atoi(getenv("FERRY_QA_STEPS")) : full ? 400 : 80;
	qa_table_create(T);
	for (int t = 0; t < 2; t++)
		for (int i = 1; i <= SHARED; i++)
		{
			row_new(t * 100 + i, t, -1);
			sql("INSERT INTO " T " (id, ws, title, note, status) VALUES (%d, 'ws-%c', 'init', 'init', 'init')",
				t * 100 + i, t ? 'b' : 'a');
		}
	g = gw_start(NULL);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	{
		const char *spec[MAXDEV] = {"u1:ws-a", "u1:ws-a", "u2:ws-b", "u3:ws-a,ws-b", "u1:ws-a"};

		ndev = full ? 5 : 3;
		for (int k = 0; k < ndev; k++)
		{
			char		name[16];

			snprintf(name, sizeof(name), "d%d", k);
			dev[k].np = np_start(target);
			np_cmd(dev[k].np, "seed %lu", qa.seed + (unsigned long) k);
			dev[k].d = dev_via(g, dev[k].np, name, spec[k]);
			dev[k].sees[0] = strstr(spec[k], "ws-a") != NULL;
			dev[k].sees[1] = strstr(spec[k], "ws-b") != NULL;
			/* u3 sees both tenants but writes only to ws-b, so that ws-a's counts stay u1's */
			dev[k].can_write[0] = dev[k].sees[0] && k != 3;
			dev[k].can_write[1] = dev[k].sees[1];
			dev_ok(&dev[k].d, "subscribe", T, NULL);
			if (dev_sync(&dev[k].d, 30) != 0)
				bail_out("device %d did not sync at the start", k);
		}
	}
	note("%d devices, %d steps", ndev, steps);

	for (int s = 0; s < steps; s++)
	{
		int			k = (int) rnd((unsigned) ndev);
		unsigned	what = rnd(100);
		Row		   *r;

		if (what < 14)
			op_insert(k);
		else if (what < 50)
		{
			if ((r = pick_row(k, (int) rnd(3) == 0)) != NULL)
				op_edit(k, r);
		}
		else if (what < 54)
		{
			if ((r = pick_row(k, 1)) != NULL)
				op_delete(k, r);
		}
		else if (what < 66)
			op_server();
		else if (what < 86)
		{
			dev_sync(&dev[k].d, 3);
			resolve_conflicts(k);
		}
		else
			op_fault(k);
		if (s % 20 == 19)
			note("step %d: %lu mutations made", s + 1, qa.sent);
	}

	/* heal every link, drain every device (resolving conflicts), then one more sync each */
	for (int k = 0; k < ndev; k++)
		np_cmd(dev[k].np, "pass");
	for (int round = 0; round < 10; round++)
	{
		int			left = 0;

		for (int k = 0; k < ndev; k++)
		{
			dev_sync(&dev[k].d, 30);
			resolve_conflicts(k);
			left += dev_queue(&dev[k].d);
		}
		if (left == 0)
			break;
	}
	for (int k = 0; k < ndev; k++)
	{
		char	   *failed;

		ok(dev_sync(&dev[k].d, 30) == 0 && dev_queue(&dev[k].d) == 0, "device %d drained and synced", k);
		failed = dev_q(&dev[k].d, "SELECT coalesce(group_concat(id || ' ' || error_code, '; '), '') FROM ferry_queue "
					   "WHERE status = 'failed'");
		is_str(failed, "", "device %d has no failed mutation", k);
		free(failed);
	}

	/* every device holds exactly the server's live rows of its tenants */
	for (int k = 0; k < ndev; k++)
	{
		char	   *have = device_rows(k);
		char	   *want = server_rows(k);

		if (!is_str(have, want, "device %d holds exactly the server's rows of its tenants", k))
			diag("device %d (%s)", k, dev[k].d.db);
		free(have);
		free(want);
	}

	/* the log against the server */
	{
		long		app_deleted = 0,
					missing = 0,
					undead = 0,
					bad_n = 0,
					lost_tags = 0,
					bad_val = 0,
					over = 0,
					under = 0;

		for (int i = 0; i < nrows; i++)
		{
			Row		   *r = &rows[i];
			char	   *v = sqlv("SELECT (ferry_deleted_at IS NOT NULL)::int || '|' || n || '|' || tags::text || '|' || "
								 "coalesce(title, '') || '|' || coalesce(note, '') || '|' || coalesce(status, '') "
								 "FROM " T " WHERE id = %d", r->id);
			char	   *f[6] = {0};
			char	   *save = NULL;
			int			nf = 0;

			if (v[0] == '\0')
			{
				missing++;
				diag("record %d is not on the server", r->id);
				free(v);
				continue;
			}
			for (char *p = strtok_r(v, "|", &save); p && nf < 6; p = strtok_r(NULL, "|", &save))
				f[nf++] = p;
			for (int j = nf; j < 6; j++)
				f[j] = "";
			if (r->app_deleted)
			{
				/* whether it is back and what its columns hold depends on the resolutions: convergence covers it */
				app_deleted++;
				free(v);
				continue;
			}
			if (atoi(f[0]) != r->deleted)
			{
				undead++;
				diag("record %d: deleted on the server %s, in the log %d", r->id, f[0], r->deleted);
			}
			if (atol(f[1]) != r->n)
			{
				bad_n++;
				if (atol(f[1]) > r->n)
					over += atol(f[1]) - r->n;
				else
					under += r->n - atol(f[1]);
				diag("record %d: n is %s, the deltas made add up to %ld", r->id, f[1], r->n);
			}
			for (int t = 0; t < r->ntags; t++)
			{
				char		needle[16];

				snprintf(needle, sizeof(needle), "%s", r->tags[t]);
				if (!strstr(f[2], needle))
				{
					lost_tags++;
					diag("record %d: tag %s is missing from %s", r->id, needle, f[2]);
				}
			}
			for (int c = 3; c < 6; c++)
				if (!row_has_val(r, f[c]))
				{
					bad_val++;
					diag("record %d: value '%s' was never written", r->id, f[c]);
				}
			free(v);
		}
		note("%ld shared records deleted by the app (checked by convergence only)", app_deleted);
		is_int(missing, 0, "every record created is on the server");
		is_int(undead, 0, "every record deleted is a tombstone, no other is");
		is_int(bad_n, 0, "every counter holds the sum of its deltas: no edit lost or applied twice");
		is_int(lost_tags, 0, "every tag added is there");
		is_int(bad_val, 0, "every title, note and status holds a value somebody wrote");
		qa.dups = over;
		qa.lost = under + lost_tags + missing;
	}
	{
		long		made = 0,
					conflicts = 0;

		for (int k = 0; k < ndev; k++)
		{
			char	   *cid = dev_q(&dev[k].d, "SELECT value FROM ferry_meta WHERE key = 'client_id'");
			long		recorded = sqll("SELECT count(*) FROM ferry.mutations WHERE client_id = '%s'", cid);
			long		conf = sqll("SELECT count(*) FROM ferry.mutations WHERE client_id = '%s' AND status = 'conflict'",
									cid);

			is_int(recorded, dev[k].made + dev[k].keep_mine,
				   "device %d: the server recorded each of its %ld mutations and %ld resubmissions once", k,
				   dev[k].made, dev[k].keep_mine);
			is_int(conf, dev[k].conflicts, "device %d: every conflict the server found was shown and resolved (%ld)",
				   k, dev[k].conflicts);
			made += dev[k].made + dev[k].keep_mine;
			qa.confirmed += recorded;
			conflicts += dev[k].conflicts;
			free(cid);
		}
		note("%ld mutations made (with resubmissions), %ld conflicts shown and resolved", made, conflicts);
	}

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	for (int k = 0; k < ndev; k++)
		np_stop(dev[k].np);
	if (getenv("FERRY_TEST_KEEP") == NULL)
		sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
