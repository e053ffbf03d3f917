/*
 * test/qa/s03_crash_mid_sync.c -- scenario 3: 50 creates, the client killed mid-sync, restarted.
 *
 * Device C syncs continuously (`ferry sync --watch`) over a slow link (netproxy's
 * bandwidth limit, so that a sync takes seconds) while the user creates 50 records in
 * quick succession. The syncing process is killed with SIGKILL while the server holds
 * some but not all of them -- twice -- and then a new process finishes. All 50 are on
 * the server exactly once (each at version 1: no insert applied twice, none refused as
 * a duplicate key), C holds all 50, and its queue is empty with nothing failed.
 */
#include "qa.h"

#define T "qa_s03"
#define N 50

static long
on_server(void)
{
	return sqll("SELECT count(*) FROM " T " WHERE made = 'c'");
}

int
main(void)
{
	Gw		   *g;
	Np		   *np;
	Dev			c;
	char		target[64];
	pid_t		watch;
	int			kills = 0;

	qa_begin(3, "50 creates, SIGKILL mid-sync");
	qa_table_create(T);
	g = gw_start(NULL);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	np = np_start(target);
	c = dev_via(g, np, "c", "u1:ws-a");
	dev_ok(&c, "subscribe", T, NULL);
	ok(dev_sync(&c, 30) == 0, "C syncs");

	np_cmd(np, "rate 1000");
	watch = dev_watch(&c);
	for (int i = 0; i < N; i++, qa.sent++)
	{
		char		v[160];

		snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-a\", \"title\": \"record %d\", \"made\": \"c\"}", i + 1, i + 1);
		dev_ok(&c, "insert", T, v, NULL);
	}
	note("50 records created while C syncs over a 1 kB/s link");

	/* kill the syncing process while the server has some but not all, or has not answered all */
	for (int round = 0; round < 2; round++)
	{
		long		before = on_server();
		int			q0 = dev_queue(&c),
					q;
		long long	deadline = now_ms() + 60000;
		long		at_kill;

		if (round > 0)
			watch = dev_watch(&c);
		while ((q = dev_queue(&c)) > q0 - 3 && q > 0 && on_server() < before + 3 && now_ms() < deadline)
			usleep(20000);
		kill(watch, SIGKILL);
		waitpid(watch, NULL, 0);
		at_kill = on_server();
		q = dev_queue(&c);
		if (q > 0)
			kills++;
		ok(at_kill > before || q < q0, "round %d: the sync made progress (server %ld -> %ld, queue %d -> %d)",
		   round + 1, before, at_kill, q0, q);
		note("round %d: killed with %ld of %d on the server, %d in C's queue", round + 1, at_kill, N, q);
	}
	ok(kills > 0, "the syncing process was killed mid-sync (%d of 2 kills with mutations unanswered)", kills);

	/* restarted */
	np_cmd(np, "pass");
	ok(dev_drain(&c, 60), "a new process drains C's queue");
	is_int(on_server(), N, "all 50 are on the server");
	is_sql("0", "each exactly once: no row was written twice", "SELECT count(*) FROM " T " WHERE ferry_version <> 1");
	is_dev(&c, "SELECT count(*) FROM " T " WHERE made = 'c'", "50", "C holds all 50");
	is_dev(&c, "SELECT count(*) FROM ferry_queue", "0", "C's queue is drained");
	is_dev(&c, "SELECT count(*) FROM ferry_conflicts", "0", "with no conflict");
	{
		char	   *cid = dev_q(&c, "SELECT value FROM ferry_meta WHERE key = 'client_id'");

		is_int(sqll("SELECT count(*) FROM ferry.mutations WHERE client_id = '%s' AND status = 'applied'", cid), N,
			   "the server recorded exactly 50 applied mutations of C (one per create)");
		free(cid);
	}
	qa.confirmed = on_server();
	qa.dups = sqll("SELECT count(*) FROM " T " WHERE ferry_version <> 1");
	qa.lost = N - qa.confirmed;

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	np_stop(np);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
