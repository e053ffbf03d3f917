/*
 * test/qa/s01_offline_edit.c -- scenario 1: online create, offline edit, reconnect.
 *
 * Devices A and B of one user, each behind its own netproxy. A creates a record online;
 * both hold it. A's link goes down three ways in turn -- refused (airplane mode), a
 * blackhole (a captive portal that accepts and never answers), a link cut after a few
 * hundred bytes (mid-frame) -- and each time A edits the record offline: the edit is
 * pending on A, absent from the server and from B. When the link comes back, the edit is
 * on the server and on every device, A's queue is empty, and the row's version on the
 * server counts exactly one write per edit (nothing doubled).
 */
#include "qa.h"

#define T "qa_s01"

int
main(void)
{
	Gw		   *g;
	Np		   *pa,
			   *pb;
	Dev			a,
				b;
	const char *fault[3] = {"refused", "blackhole", "cut mid-frame"};
	char	   *out;

	qa_begin(1, "offline edit, reconnect");
	qa_table_create(T);
	g = gw_start(NULL);
	{
		char		target[64];

		snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
		pa = np_start(target);
		pb = np_start(target);
	}
	a = dev_via(g, pa, "a", "u1:ws-a");
	b = dev_via(g, pb, "b", "u1:ws-a");
	dev_ok(&a, "subscribe", T, NULL);
	dev_ok(&b, "subscribe", T, NULL);
	ok(dev_sync(&a, 30) == 0 && dev_sync(&b, 30) == 0, "A and B sync through their proxies");

	/* online create */
	dev_ok(&a, "insert", T, "{\"id\": 1, \"ws\": \"ws-a\", \"title\": \"created online\"}", NULL);
	qa.sent++;
	ok(dev_drain(&a, 30), "A's create is confirmed");
	is_sql("created online|1", "the server has it, version 1", "SELECT title || '|' || ferry_version FROM " T " WHERE id = 1");
	ok(dev_sync(&b, 30) == 0 && dev_wait(&b, "SELECT title FROM " T " WHERE id = 1", "created online", 5000),
	   "B syncs and holds it");
	qa.confirmed++;

	for (int i = 0; i < 3; i++)
	{
		char		edit[128],
					want[64];
		int			rc;

		/* the link goes down */
		if (i == 0)
			np_offline(pa);
		else if (i == 1)
		{
			np_cmd(pa, "blackhole on");
			np_cmd(pa, "close");
		}
		else
		{
			np_cmd(pa, "close");
			np_cmd(pa, "cut 300");
		}
		snprintf(want, sizeof(want), "edit %d offline (%s)", i + 1, fault[i]);
		snprintf(edit, sizeof(edit), "{\"title\": \"%s\"}", want);
		is_int(dev_run(&a, NULL, "update", T, "1", edit, NULL), 0, "%s: A edits the record", fault[i]);
		qa.sent++;
		out = dev_out(&a, "state", T, "1", NULL);
		is_str(out, "pending", "%s: the record is pending on A", fault[i]);
		free(out);
		rc = dev_sync(&a, 4);
		ok(rc != 0, "%s: A cannot sync (exit %d)", fault[i], rc);
		is_int(dev_queue(&a), 1, "%s: the edit waits in A's queue", fault[i]);
		is_sql(i == 0 ? "created online" : fault[i - 1][0] == 'r' ? "edit 1 offline (refused)" :
			   "edit 2 offline (blackhole)", "the server does not have it",
			   "SELECT title FROM " T " WHERE id = 1");
		out = dev_q(&b, "SELECT title FROM " T " WHERE id = 1");
		ok(strcmp(out, want) != 0, "%s: B does not have it", fault[i]);
		free(out);

		/* the link comes back */
		np_cmd(pa, "pass");
		ok(dev_drain(&a, 60), "%s: back online, A drains its queue", fault[i]);
		is_sql(want, "the edit is on the server", "SELECT title FROM " T " WHERE id = 1");
		ok(dev_sync(&b, 30) == 0 && dev_wait(&b, "SELECT title FROM " T " WHERE id = 1", want, 5000), "%s: and on B",
		   fault[i]);
		is_dev(&a, "SELECT title FROM " T " WHERE id = 1", want, "and on A");
		out = dev_out(&a, "state", T, "1", NULL);
		is_str(out, "synced", "%s: the record is synced on A", fault[i]);
		free(out);
		qa.confirmed++;
	}
	{
		long		version = sqll("SELECT ferry_version FROM " T " WHERE id = 1");

		is_int(version, 4, "the row's version counts one create and three edits");
		qa.dups = version > 4 ? version - 4 : 0;
		qa.lost = version < 4 ? 4 - version : 0;
	}
	is_dev(&a, "SELECT count(*) FROM ferry_conflicts", "0", "no conflict on A");
	is_dev(&b, "SELECT count(*) FROM ferry_queue", "0", "nothing queued on B");

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	np_stop(pa);
	np_stop(pb);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
