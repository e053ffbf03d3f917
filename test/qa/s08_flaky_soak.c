/*
 * test/qa/s08_flaky_soak.c -- scenario 8: a flaky network soak with a fixed seed.
 *
 * Four devices (three of user u1 in ws-a, one of u2 in ws-b) sync continuously (`ferry
 * sync --watch`), each behind its own netproxy, and ferryd reaches Postgres through a
 * netproxy too. For FERRY_QA_SOAK_SECONDS (default 60) a seeded generator changes the
 * links every few hundred milliseconds -- latency with jitter, a slow link, random resets,
 * a cut mid-frame, a blackhole, the link down, every connection closed; now and then
 * ferryd's link to Postgres is slowed or closed -- while every device keeps writing:
 * creates, deltas on its own counter record, and titles of records its tenant shares.
 *
 * Then the links heal and the running syncs must drain by themselves. Every create is
 * on the server once, each counter holds the sum of its deltas, the server recorded each
 * mutation once, and every device holds exactly the server's rows of its tenant.
 * The seed is printed; FERRY_QA_SEED=N replays the same faults and writes.
 */
#include "qa.h"

#define T "qa_s08"
#define NDEV 4

static Dev	dev[NDEV];
static Np  *np[NDEV];
static pid_t watch[NDEV];
static long made[NDEV];			/* mutations each device made */
static long delta[NDEV];		/* deltas each device made on its counter record (id 1 + device) */
static int	next_id = 1000;
static unsigned long rng;

static unsigned
rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned) (rng % n);
}

static void
fault(int d)
{
	switch (rnd(10))
	{
		case 0:
		case 1:
			np_cmd(np[d], "pass");
			break;
		case 2:
			np_cmd(np[d], "delay %u %u", 10 + rnd(300), rnd(100));
			break;
		case 3:
			np_cmd(np[d], "rate %u", 2000 + rnd(50000));
			break;
		case 4:
			np_cmd(np[d], "reset %u", 10 + rnd(150));
			break;
		case 5:
			np_cmd(np[d], "cut %u", 100 + rnd(4000));
			break;
		case 6:
			np_cmd(np[d], "blackhole on");
			break;
		case 7:
			np_offline(np[d]);
			break;
		case 8:
			np_cmd(np[d], "close");
			break;
		default:
			np_cmd(np[d], "refuse off");
			np_cmd(np[d], "blackhole off");
			break;
	}
}

static void
write_one(int d)
{
	char		v[200],
				q[96];
	char	   *cur;
	int			t = d == 3;

	switch (rnd(3))
	{
		case 0:
			snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-%c\", \"title\": \"soak d%d\"}", next_id++, t ? 'b' : 'a', d);
			dev_ok(&dev[d], "insert", T, v, NULL);
			break;
		case 1:
			/* its own counter record: nobody else changes it, so read-then-write is exact */
			snprintf(q, sizeof(q), "SELECT n FROM " T " WHERE id = %d", d + 1);
			cur = dev_q(&dev[d], q);
			snprintf(v, sizeof(v), "{\"n\": %ld}", atol(cur) + 1 + d);
			free(cur);
			snprintf(q, sizeof(q), "%d", d + 1);
			dev_ok(&dev[d], "update", T, q, v, NULL);
			delta[d] += 1 + d;
			break;
		default:
			snprintf(q, sizeof(q), "%u", t ? 20 : 10 + rnd(3));
			snprintf(v, sizeof(v), "{\"title\": \"d%d at %ld\"}", d, made[d]);
			dev_ok(&dev[d], "update", T, q, v, NULL);
			break;
	}
	made[d]++;
	qa.sent++;
}

int
main(void)
{
	Gw		   *g;
	Np		   *pgp;
	char		target[64];
	const char *spec[NDEV] = {"u1:ws-a", "u1:ws-a", "u1:ws-a", "u2:ws-b"};
	int			seconds = getenv("FERRY_QA_SOAK_SECONDS") ? atoi(getenv("FERRY_QA_SOAK_SECONDS")) : 60;
	long long	end;
	long		ticks = 0,
				pg_faults = 0;

	qa_begin(8, "flaky network soak");
	rng = qa_seed();
	qa_table_create(T);
	sql("INSERT INTO " T " (id, ws, title) SELECT i, CASE WHEN i = 4 THEN 'ws-b' ELSE 'ws-a' END, 'counter' "
		"FROM generate_series(1, 4) i");
	sql("INSERT INTO " T " (id, ws, title) VALUES (10, 'ws-a', 's'), (11, 'ws-a', 's'), (12, 'ws-a', 's'), "
		"(20, 'ws-b', 's')");
	pgp = np_pg();
	qa_pg_conninfo(pgp);
	g = gw_start(NULL);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	for (int d = 0; d < NDEV; d++)
	{
		char		name[16];

		snprintf(name, sizeof(name), "d%d", d);
		np[d] = np_start(target);
		np_cmd(np[d], "seed %lu", qa.seed + (unsigned long) d);
		dev[d] = dev_via(g, np[d], name, spec[d]);
		dev_ok(&dev[d], "subscribe", T, NULL);
		if (dev_sync(&dev[d], 30) != 0)
			bail_out("device %d did not sync", d);
		watch[d] = dev_watch(&dev[d]);
	}
	note("%d devices writing for %d s through faulty links", NDEV, seconds);

	end = now_ms() + (long long) seconds * 1000;
	while (now_ms() < end)
	{
		int			d = (int) rnd(NDEV);

		fault(d);
		for (int k = 0; k < NDEV; k++)
			if (rnd(2))
				write_one(k);
		if (rnd(25) == 0)
		{
			np_cmd(pgp, rnd(2) ? "close" : "delay 20 10");
			pg_faults++;
		}
		else if (rnd(8) == 0)
			np_cmd(pgp, "pass");
		ticks++;
		usleep(100000 + rnd(300) * 1000);
	}
	note("%ld ticks, %ld faults on ferryd's link to Postgres, %ld mutations", ticks, pg_faults, qa.sent);

	/* heal; the running syncs drain */
	np_cmd(pgp, "pass");
	for (int d = 0; d < NDEV; d++)
		np_cmd(np[d], "pass");
	{
		long long	deadline = now_ms() + 240000;
		int			left = 1;

		while (left > 0 && now_ms() < deadline)
		{
			left = 0;
			for (int d = 0; d < NDEV; d++)
				left += dev_queue(&dev[d]);
			if (left > 0)
				usleep(500000);
		}
		is_int(left, 0, "after the links heal, every running sync drains its queue");
	}
	for (int d = 0; d < NDEV; d++)
	{
		kill(watch[d], SIGTERM);
		waitpid(watch[d], NULL, 0);
	}
	for (int d = 0; d < NDEV; d++)
		ok(dev_drain(&dev[d], 60), "device %d syncs", d);

	{
		int			counter_id[NDEV];

		for (int d = 0; d < NDEV; d++)
			counter_id[d] = d + 1;
		qa_check_writes(T, dev, NDEV, next_id - 1000, counter_id, delta, made, 3);
	}

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	for (int d = 0; d < NDEV; d++)
		np_stop(np[d]);
	np_stop(pgp);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
