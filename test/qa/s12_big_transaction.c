/*
 * test/qa/s12_big_transaction.c -- scenario 12: a big transaction reaches a device whole or not at all.
 *
 * The app updates 3,000 rows in one transaction, three times, while device A syncs
 * continuously over a slow link (about 750 kB a transaction: ferryd cuts its change
 * batches at 256 kB, so each transaction arrives as several `partial` batches).
 * A's file is read again and again meanwhile: it always shows all of a transaction or
 * none of it -- never some rows of it. A's syncing process is killed with SIGKILL and
 * restarted while the transactions stream, and its link is cut mid-frame; at the end A
 * holds exactly the server's rows.
 */
#include "qa.h"

#define T "qa_s12"
#define ROWS 3000

int
main(void)
{
	Gw		   *g;
	Np		   *np;
	Dev			a;
	char		target[64];
	pid_t		watch;
	int			looks = 0,
				torn = 0,
				kills = 0;

	qa_begin(12, "big transaction, whole or nothing");
	qa_table_create(T);
	sql("INSERT INTO " T " (id, ws, title) SELECT i, 'ws-a', 'round 0' FROM generate_series(1, %d) i", ROWS);
	g = gw_start(NULL);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	np = np_start(target);
	a = dev_via(g, np, "a", "u1:ws-a");
	dev_ok(&a, "subscribe", T, NULL);
	ok(dev_sync(&a, 60) == 0, "A syncs %d rows", ROWS);
	np_cmd(np, "rate 60000");
	watch = dev_watch(&a);
	for (int round = 1; round <= 3; round++)
	{
		char		want_all[64];
		long long	deadline;

		sql("UPDATE " T " SET title = 'round %d', body = repeat('x', 100)", round);
		snprintf(want_all, sizeof(want_all), "%d|%d", ROWS, ROWS);
		deadline = now_ms() + 120000;
		for (int i = 0; now_ms() < deadline; i++)
		{
			char		q[160];
			char	   *got;
			int			n;

			snprintf(q, sizeof(q), "SELECT sum(title = 'round %d') || '|' || count(*) FROM " T, round);
			got = dev_q(&a, q);
			n = atoi(got);
			looks++;
			if (n != 0 && n != ROWS)
			{
				torn++;
				diag("round %d: A shows %d of the transaction's %d rows", round, n, ROWS);
			}
			if (strcmp(got, want_all) == 0)
			{
				free(got);
				break;
			}
			free(got);
			if (i == 3)
			{
				/* mid-stream: kill the syncing process, then cut its next connection mid-frame */
				kill(watch, SIGKILL);
				waitpid(watch, NULL, 0);
				kills++;
				np_cmd(np, "cut %d", 20000 + 10000 * round);
				dev_sync(&a, 5);
				np_cmd(np, "cut -1");
				watch = dev_watch(&a);
			}
			usleep(30000);
		}
		note("round %d done", round);
	}
	is_int(torn, 0, "A never showed part of a transaction (%d looks, %d kills)", looks, kills);
	kill(watch, SIGTERM);
	waitpid(watch, NULL, 0);
	np_cmd(np, "pass");
	ok(dev_sync(&a, 60) == 0, "A syncs");
	{
		char	   *want = sqlv("SELECT count(*) || '|' || sum((title = 'round 3')::int) FROM " T);

		is_dev(&a, "SELECT count(*) || '|' || sum(title = 'round 3') FROM " T, want, "A holds the server's rows");
		free(want);
	}
	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	np_stop(np);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
