/*
 * test/qa/s09_airplane_hours.c -- scenario 9: four hours in airplane mode, compressed.
 *
 * Device A syncs, then its link goes down and it lives four hours of simulated time in
 * seconds: libferry's wall clock is shifted with FERRY_CLOCK_OFFSET_MS (the library's
 * test hook), starting four hours back and advancing with every write. Meanwhile it makes
 * 3,000 mutations through libferry in this process: 1,000 creates, and edits of its own
 * records and of ten server records (titles and counter deltas). While it is away the
 * app edits the titles of five of the server records.
 *
 * Before reconnecting, A's status says what the user would see: everything pending,
 * the oldest write four hours old, the cache stale (stale-after set to one hour).
 * Meanwhile ferryd has dropped A's shape (nobody subscribed for longer than its
 * retention age, 2 s here), so A comes back to a must-refetch with 3,000 writes queued.
 * After reconnecting, A drains: every create once, every counter delta once, each own record
 * with its last title, the app's newer titles kept (lww by clock: A's edits are older),
 * every device and the server agree, and A is no longer stale.
 */
#include "qa.h"
#include <sqlite3.h>

#include "ferry.h"

#define T "qa_s09"
#define HOURS 4
#define CREATES 1000
#define EDITS 2000
#define SPAN_MS ((long long) HOURS * 3600 * 1000)

static void
clock_at(long long offset_ms)
{
	char		v[32];

	snprintf(v, sizeof(v), "%lld", offset_ms);
	setenv("FERRY_CLOCK_OFFSET_MS", v, 1);
}

int
main(void)
{
	Gw		   *g;
	Np		   *pa;
	Dev			a,
				b;
	ferry	   *h;
	char	   *err = NULL;
	char		target[64];
	long		n[CREATES + 11];	/* counter per record, from the log */
	int			last_title[CREATES + 11];	/* the step of each record's last title edit */
	int			writes[CREATES + 11];	/* edits of each record that must write (counter, winning titles) */
	unsigned	seed = 9;
	/* shapes nobody is subscribed to go after 2 s: A's offset is gone when it comes back */
	const char *args[] = {"--push-rate=0", "--retention-age=2", NULL};
	ferry_status st;

	qa_begin(9, "four hours in airplane mode");
	memset(n, 0, sizeof(n));
	memset(last_title, -1, sizeof(last_title));
	memset(writes, 0, sizeof(writes));
	qa_table_create(T);
	sql("INSERT INTO " T " (id, ws, title) SELECT i, 'ws-a', 'server ' || i FROM generate_series(1, 10) i");
	g = gw_start_args(NULL, args);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	pa = np_start(target);
	a = dev_via(g, pa, "a", "u1:ws-a");
	b = dev_new(g, "b", "u1:ws-a");
	dev_ok(&a, "subscribe", T, NULL);
	dev_ok(&b, "subscribe", T, NULL);
	clock_at(-SPAN_MS);			/* A's last sync was four hours ago */
	ok(dev_sync(&a, 30) == 0, "A syncs, four hours ago by its clock");
	unsetenv("FERRY_CLOCK_OFFSET_MS");
	ok(dev_sync(&b, 30) == 0, "B syncs");

	np_offline(pa);
	if (ferry_open(a.db, &h, &err) != FERRY_OK)
		bail_out("ferry_open: %s", err);
	ferry_config(h, FERRY_OPT_SYNCHRONOUS, 1);
	ferry_config(h, FERRY_OPT_STALE_AFTER_MS, 3600 * 1000);
	for (int i = 0; i < CREATES + EDITS; i++)
	{
		char		v[200],
					key[16];
		int			rc;

		clock_at(-SPAN_MS + SPAN_MS * i / (CREATES + EDITS));
		if (i % 3 == 0)
		{
			int			id = 100 + i / 3;

			snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-a\", \"title\": \"created at step %d\"}", id, i);
			rc = ferry_insert(h, T, v, NULL, &err);
		}
		else
		{
			int			made = i / 3 + 1;	/* own records created so far */
			int			pick = (int) (rand_r(&seed) % (unsigned) (made + 10));
			int			id = pick < 10 ? pick + 1 : 100 + pick - 10;
			int			slot = pick < 10 ? pick + 1 : 11 + pick - 10;

			if (slot > CREATES + 10)
				slot = CREATES + 10;
			snprintf(key, sizeof(key), "%d", id);
			if (rand_r(&seed) % 2)
			{
				snprintf(v, sizeof(v), "{\"title\": \"edited at step %d\"}", i);
				last_title[slot] = i;
				writes[slot] += id > 5;	/* on 1-5 the app's later title wins: A's writes nothing */
			}
			else
			{
				char		q[96];
				sqlite3_stmt *stmt;
				long		cur = 0;

				snprintf(q, sizeof(q), "SELECT n FROM " T " WHERE id = %d", id);
				if (sqlite3_prepare_v2(ferry_sqlite(h), q, -1, &stmt, NULL) == SQLITE_OK &&
					sqlite3_step(stmt) == SQLITE_ROW)
					cur = sqlite3_column_int64(stmt, 0);
				sqlite3_finalize(stmt);
				snprintf(v, sizeof(v), "{\"n\": %ld}", cur + 1 + i % 3);
				n[slot] += 1 + i % 3;
				writes[slot]++;
			}
			rc = ferry_update(h, T, key, v, NULL, &err);
		}
		if (rc != FERRY_OK)
			bail_out("write %d offline failed: %s", i, err);
		qa.sent++;
	}
	unsetenv("FERRY_CLOCK_OFFSET_MS");
	sql("UPDATE " T " SET title = 'the app, while A was away' WHERE id <= 5");
	if (ferry_get_status(h, &st) != FERRY_OK)
		bail_out("ferry_get_status failed");
	is_int(st.queue_length, CREATES + EDITS, "A has 3000 writes queued");
	ok(st.oldest_pending_age_ms >= SPAN_MS - 60000 && st.oldest_pending_age_ms <= SPAN_MS + 600000,
	   "the oldest is four hours old (%.2f h)", (double) st.oldest_pending_age_ms / 3600000.0);
	ok(st.stale, "A's cache is stale (last sync %.2f h ago, stale after 1 h)",
	   (double) (time(NULL) * 1000LL - st.last_sync_ms) / 3600000.0);
	ferry_close(h);

	/* back on the ground, long after ferryd forgot A's shape */
	sleep(5);
	np_cmd(pa, "pass");
	{
		long long	t0 = now_ms();
		int			drained = dev_drain(&a, 180);

		ok(drained, "A reconnects and drains 3000 writes (%lld ms)", now_ms() - t0);
	}
	ok(qa_metric(g, "ferry_must_refetch_total") > 0,
	   "A's offset had expired: ferryd told it to refetch (ferry_must_refetch_total %ld)",
	   qa_metric(g, "ferry_must_refetch_total"));
	ok(dev_sync(&b, 60) == 0 && dev_sync(&a, 60) == 0, "A and B sync");
	is_int(sqll("SELECT count(*) FROM " T " WHERE id >= 100"), CREATES, "all 1000 creates are on the server");
	{
		long		bad_n = 0,
					bad_title = 0,
					over = 0,
					under = 0;

		for (int slot = 1; slot <= CREATES + 10; slot++)
		{
			int			id = slot <= 10 ? slot : 100 + slot - 11;
			char	   *v = sqlv("SELECT n || '|' || title FROM " T " WHERE id = %d", id);
			char		want[64];
			long		got = atol(v);

			if (got != n[slot])
			{
				bad_n++;
				if (got > n[slot])
					over += got - n[slot];
				else
					under += n[slot] - got;
			}
			if (id <= 5)
				snprintf(want, sizeof(want), "the app, while A was away");
			else if (last_title[slot] >= 0)
				snprintf(want, sizeof(want), "edited at step %d", last_title[slot]);
			else if (id <= 10)
				snprintf(want, sizeof(want), "server %d", id);
			else
				snprintf(want, sizeof(want), "created at step %d", (id - 100) * 3);
			if (strcmp(strchr(v, '|') + 1, want) != 0)
			{
				if (bad_title++ < 5)
					diag("record %d: title '%s', want '%s'", id, strchr(v, '|') + 1, want);
			}
			free(v);
		}
		is_int(bad_n, 0, "every record's counter is the sum of its deltas (%ld over, %ld under)", over, under);
		is_int(bad_title, 0, "every title is the last one written, the app's newer ones kept");
		qa.dups = over;
		qa.lost = under + (CREATES - sqll("SELECT count(*) FROM " T " WHERE id >= 100"));
	}
	{
		char	   *cid = dev_q(&a, "SELECT value FROM ferry_meta WHERE key = 'client_id'");
		long		want = 0;

		is_int(sqll("SELECT count(*) FROM ferry.mutations WHERE client_id = '%s'", cid), CREATES + EDITS,
			   "the server recorded each of A's 3000 mutations once");
		free(cid);
		for (int slot = 1; slot <= CREATES + 10; slot++)
			want += 1 + writes[slot] + (slot <= 5);	/* the insert, the edits that write, the app's */
		is_int(sqll("SELECT sum(ferry_version) FROM " T), want, "the row versions add up to the writes made: "
			   "nothing applied twice");
	}
	{
		char	   *want = sqlv("SELECT string_agg(id || ':' || title || ':' || n, ',' ORDER BY id) FROM " T);

		is_dev(&a, "SELECT group_concat(id || ':' || title || ':' || n, ',') FROM (SELECT * FROM " T " ORDER BY id)",
			   want, "A holds the server's rows");
		is_dev(&b, "SELECT group_concat(id || ':' || title || ':' || n, ',') FROM (SELECT * FROM " T " ORDER BY id)",
			   want, "B holds the server's rows");
		free(want);
	}
	{
		char	   *s = dev_out(&a, "status", "--json", NULL);

		ok(strstr(s, "\"stale\":false") != NULL || strstr(s, "\"stale\":0") != NULL, "A is not stale any more: %.200s",
		   s);
		free(s);
	}
	qa.confirmed = qa.sent - qa.lost;

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	np_stop(pa);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
