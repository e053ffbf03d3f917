/*
 * test/qa/s10_server_crash.c -- scenario 10: ferryd killed and Postgres restarted mid-sync.
 *
 * Three devices (two of user u1 in ws-a, one of u2 in ws-b) sync continuously (`ferry
 * sync --watch`), each behind a netproxy, while they write: creates, and counter deltas
 * on one shared record per tenant. Three times, while their writes are flowing:
 *
 *   1. ferryd is killed with SIGKILL, the devices keep writing, ferryd starts again on
 *      its data directory (the proxies follow it to its new port);
 *   2. Postgres stops at once (`pg_ctl -m immediate`, a crash) and starts again;
 *   3. both: ferryd killed, Postgres crashed and restarted, ferryd started.
 *
 * The clients resume by themselves. Each device, reading its counter record before each
 * edit, always sees its own last write (never an older server row). At the end every
 * create is on the server once, each counter holds the sum of the deltas made, the server recorded each mutation of each
 * device once, and every device holds exactly the server's rows of its tenant.
 */
#include "qa.h"

#define T "qa_s10"
#define NDEV 3
#define PER_BURST 12

static Dev	dev[NDEV];
static Np  *np[NDEV];
static pid_t watch[NDEV];
static long made[NDEV];			/* mutations each device made */
static long delta[NDEV];		/* counter deltas each device made on its own counter record */
static const int counter_of[NDEV] = {1, 3, 2};	/* its record: the others of its tenant see it change */
static int	next_id = 1000;
static long shown[NDEV];		/* the counter each device last wrote (only it writes its record) */
static int	regressions;		/* reads of a device's counter that showed less than its own last write */

/* Each device makes k creates and k counter deltas. */
static void
burst(int k)
{
	for (int i = 0; i < k; i++)
		for (int d = 0; d < NDEV; d++)
		{
			int			t = d == 2;
			char		v[160],
						q[64];
			char	   *cur;

			snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-%c\", \"title\": \"from d%d\"}", next_id++, t ? 'b' : 'a', d);
			dev_ok(&dev[d], "insert", T, v, NULL);
			/*
			 * read, then write the sum in another process: only safe while nobody else changes
			 * the record, so each device has its own counter record
			 */
			snprintf(q, sizeof(q), "SELECT n FROM " T " WHERE id = %d", counter_of[d]);
			cur = dev_q(&dev[d], q);
			if (atol(cur) != shown[d])
			{
				/* its own write is confirmed or pending: the device must show it, not an older server row */
				regressions++;
				diag("device %d shows n = %s on its counter record, but its own last write made it %ld", d, cur,
					 shown[d]);
			}
			shown[d] = atol(cur) + 1 + d;
			snprintf(v, sizeof(v), "{\"n\": %ld}", shown[d]);
			free(cur);
			snprintf(q, sizeof(q), "%d", counter_of[d]);
			{
				char	   *out = NULL;

				if (dev_run(&dev[d], &out, "update", T, q, v, NULL) != 0)
					bail_out("device %d: update %s failed", d, v);
				if (strstr(out, "nothing changed") != NULL)
				{
					/* the device already showed the new value: its view moved under the test */
					regressions++;
					diag("device %d: the update to %s queued nothing", d, v);
				}
				free(out);
			}
			delta[d] += 1 + d;
			made[d] += 2;
			qa.sent += 2;
		}
}

/*
 * burst_bg makes a burst in a child process, so that the test can kill a server while the
 * writes go on; the log counts them here (a burst's deltas do not depend on timing).
 */
static pid_t
burst_bg(int k)
{
	pid_t		pid = fork();

	if (pid == 0)
	{
		burst(k);
		_exit(regressions > 0 ? 3 : 0);
	}
	for (int i = 0; i < k; i++)
		for (int d = 0; d < NDEV; d++)
		{
			shown[d] += 1 + d;
			delta[d] += 1 + d;
			made[d] += 2;
			qa.sent += 2;
			next_id++;
		}
	return pid;
}

/* writer_done waits for a background burst and takes over its count of regressions. */
static void
writer_done(pid_t writer)
{
	int			status = 0;

	waitpid(writer, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		regressions++;
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		bail_out("a background burst of writes failed (status %d)", status);
}

/* Waits until the server has at least n more creates than before (or 30 s). */
static void
wait_progress(long before, long n)
{
	long long	deadline = now_ms() + 30000;

	while (now_ms() < deadline && sqll("SELECT count(*) FROM " T " WHERE id >= 1000") < before + n)
		usleep(50000);
}

static void
retarget(Gw *g)
{
	for (int d = 0; d < NDEV; d++)
		np_cmd(np[d], "target 127.0.0.1:%d", g->port);
}

/* Crashes Postgres (immediate stop) and starts it again; reconnects the test's session; 1 when it restarted. */
static int
pg_crash_restart(void)
{
	char	   *started = sqlv("SELECT pg_postmaster_start_time()");
	char	   *now_started;
	int			restarted;
	char		cmd[1024];
	const char *dir = getenv("FERRY_TEST_PGDIR");
	const char *bin = getenv("FERRY_PG_BIN") ? getenv("FERRY_PG_BIN") : "/usr/lib/postgresql/15/bin";

	if (dir == NULL)
		bail_out("FERRY_TEST_PGDIR is not set: cannot restart Postgres");
	snprintf(cmd, sizeof(cmd), "if [ \"$(id -u)\" = 0 ]; then runuser -u postgres -- %s/pg_ctl -D '%s/data' -m immediate "
			 "-w stop; else %s/pg_ctl -D '%s/data' -m immediate -w stop; fi >/dev/null 2>&1; "
			 "test/pgcluster.sh start '%s' >/dev/null", bin, dir, bin, dir, dir);
	if (system(cmd) != 0)
		bail_out("could not restart Postgres in %s", dir);
	PQreset(pg());
	if (PQstatus(pg()) != CONNECTION_OK)
		bail_out("cannot reconnect to Postgres after its restart");
	PQclear(PQexec(pg(), "SET client_min_messages = warning"));
	now_started = sqlv("SELECT pg_postmaster_start_time()");
	restarted = strcmp(started, now_started) != 0;
	free(started);
	free(now_started);
	return restarted;
}

int
main(void)
{
	Gw		   *g;
	char		target[64];
	const char *spec[NDEV] = {"u1:ws-a", "u1:ws-a", "u2:ws-b"};

	qa_begin(10, "ferryd SIGKILL, Postgres restart");
	qa_table_create(T);
	sql("INSERT INTO " T " (id, ws, title) VALUES (1, 'ws-a', 'counter of d0'), (2, 'ws-b', 'counter of d2'), "
		"(3, 'ws-a', 'counter of d1')");
	g = gw_start(NULL);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	for (int d = 0; d < NDEV; d++)
	{
		char		name[16];

		snprintf(name, sizeof(name), "d%d", d);
		np[d] = np_start(target);
		dev[d] = dev_via(g, np[d], name, spec[d]);
		dev_ok(&dev[d], "subscribe", T, NULL);
		if (dev_sync(&dev[d], 30) != 0)
			bail_out("device %d did not sync", d);
		watch[d] = dev_watch(&dev[d]);
	}

	/* 1: ferryd SIGKILLed mid-sync */
	{
		long		before = sqll("SELECT count(*) FROM " T " WHERE id >= 1000");
		pid_t		writer = burst_bg(PER_BURST);
		int			status;

		wait_progress(before, 3);
		status = gw_stop(g, SIGKILL);
		ok(status > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		   "ferryd killed with SIGKILL while the devices sync");
		writer_done(writer);
		note("ferryd killed with %ld of %ld creates on the server", sqll("SELECT count(*) FROM " T " WHERE id >= 1000"),
			 (long) next_id - 1000);
		burst(PER_BURST / 2);
		gw_start(g);
		retarget(g);
		note("ferryd is back on port %d", g->port);
	}

	/* 2: Postgres crashed and restarted mid-sync */
	{
		long		before = sqll("SELECT count(*) FROM " T " WHERE id >= 1000");
		pid_t		writer = burst_bg(PER_BURST);

		wait_progress(before, 3);
		ok(pg_crash_restart(), "Postgres crashed and restarted while the devices sync");
		writer_done(writer);
		burst(PER_BURST / 2);
	}

	/* 3: both */
	{
		long		before = sqll("SELECT count(*) FROM " T " WHERE id >= 1000");
		pid_t		writer = burst_bg(PER_BURST);
		int			status,
					restarted;

		wait_progress(before, 3);
		status = gw_stop(g, SIGKILL);
		restarted = pg_crash_restart();
		writer_done(writer);
		gw_start(g);
		retarget(g);
		ok(status > 0 && WIFSIGNALED(status) && restarted,
		   "ferryd killed and Postgres crashed together, both started again");
		burst(PER_BURST / 2);
	}

	is_int(regressions, 0, "each device always showed its own last write of its counter record (no older server "
		   "row shown after it: with a counter, the next edit's delta would be computed from it)");

	/* the watchers drain by themselves */
	{
		long long	deadline = now_ms() + 180000;
		int			left = 1;

		while (left > 0 && now_ms() < deadline)
		{
			left = 0;
			for (int d = 0; d < NDEV; d++)
				left += dev_queue(&dev[d]);
			if (left > 0)
				usleep(500000);
		}
		is_int(left, 0, "every device's queue drained by its running sync, without a restart of the clients");
	}
	for (int d = 0; d < NDEV; d++)
	{
		kill(watch[d], SIGTERM);
		waitpid(watch[d], NULL, 0);
	}
	for (int d = 0; d < NDEV; d++)
		ok(dev_drain(&dev[d], 60), "device %d syncs", d);

	qa_check_writes(T, dev, NDEV, NDEV * PER_BURST * 3 + NDEV * (PER_BURST / 2) * 3, counter_of, delta, made, 2);

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	for (int d = 0; d < NDEV; d++)
		np_stop(np[d]);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
