/*
 * test/qa/s06_rate_limit.c -- scenario 6: 1,000 mutations within 10 seconds from one user.
 *
 * ferryd limits user u1 to 80 mutations a second (burst 50). Two devices of u1 each
 * sync continuously (`ferry sync --watch`) while the app on each writes 500 records
 * through libferry in this process -- 1,000 in all, well within 10 seconds. The limit
 * applies (ferryd counts refused pushes, and draining takes at least what 80 a second
 * allows for one user across both devices), the clients back off (the refusals stay a
 * small multiple of the mutations instead of a tight loop of resends), everything drains,
 * and every record is on the server exactly once.
 */
#include "qa.h"
#include "ferry.h"

#define T "qa_s06"
#define PER_DEVICE 500
#define RATE 80
#define BURST 50

int
main(void)
{
	Gw		   *g;
	Dev			d[2];
	pid_t		w[2];
	ferry	   *h[2];
	long long	t0,
				made_in,
				drained_in;
	const char *args[] = {"--push-rate=80", "--push-burst=50", NULL};

	qa_begin(6, "1000 mutations in 10 s, rate limit");
	qa_table_create(T);
	g = gw_start_args(NULL, args);
	d[0] = dev_new(g, "a", "u1:ws-a");
	d[1] = dev_new(g, "b", "u1:ws-a");
	for (int k = 0; k < 2; k++)
	{
		char	   *err = NULL;

		dev_ok(&d[k], "subscribe", T, NULL);
		if (dev_sync(&d[k], 30) != 0)
			bail_out("device %d did not sync", k);
		if (ferry_open(d[k].db, &h[k], &err) != FERRY_OK)
			bail_out("ferry_open: %s", err);
		ferry_config(h[k], FERRY_OPT_SYNCHRONOUS, 1);
	}
	for (int k = 0; k < 2; k++)
		w[k] = dev_watch(&d[k]);

	t0 = now_ms();
	for (int i = 0; i < PER_DEVICE; i++)
		for (int k = 0; k < 2; k++)
		{
			char		v[160];
			char	   *err = NULL;

			snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-a\", \"title\": \"burst %d\", \"made\": \"d%d\"}",
					 k * 10000 + i, i, k);
			if (ferry_insert(h[k], T, v, NULL, &err) != FERRY_OK)
				bail_out("ferry_insert: %s", err);
			qa.sent++;
		}
	made_in = now_ms() - t0;
	ok(made_in < 10000, "1000 mutations made in %lld ms (within 10 s)", made_in);
	for (int k = 0; k < 2; k++)
		ferry_close(h[k]);

	/* wait for the watchers to drain both queues */
	{
		long long	deadline = now_ms() + 120000;

		while (now_ms() < deadline && sqll("SELECT count(*) FROM " T) < 2 * PER_DEVICE)
			usleep(200000);
		while (now_ms() < deadline && (dev_queue(&d[0]) > 0 || dev_queue(&d[1]) > 0))
			usleep(200000);
	}
	drained_in = now_ms() - t0;
	for (int k = 0; k < 2; k++)
	{
		kill(w[k], SIGTERM);
		waitpid(w[k], NULL, 0);
	}
	{
		long		limited = qa_metric(g, "ferry_rate_limited_total");
		long		retries = qa_metric(g, "ferry_mutations_total{status=\"retry\"}");
		long long	floor_ms = (long long) (2 * PER_DEVICE - BURST) * 1000 / RATE;

		ok(limited > 0, "the rate limit applied (ferry_rate_limited_total %ld, retry answers %ld)", limited, retries);
		ok(drained_in >= floor_ms * 8 / 10, "draining took %lld ms, what %d/s for one user allows (>= ~%lld ms)",
		   drained_in, RATE, floor_ms);
		ok(retries >= 0 && retries <= 10 * 2 * PER_DEVICE,
		   "the clients backed off: %ld refused mutations for %d sent (a client that resent at once would pile up "
		   "far more)", retries, 2 * PER_DEVICE);
	}
	is_int(dev_queue(&d[0]) + dev_queue(&d[1]), 0, "both queues drained");
	qa.confirmed = sqll("SELECT count(*) FROM " T);
	is_int(qa.confirmed, 2 * PER_DEVICE, "all 1000 are on the server");
	qa.dups = sqll("SELECT count(*) FROM " T " WHERE ferry_version <> 1");
	is_int(qa.dups, 0, "none written twice");
	qa.lost = 2 * PER_DEVICE - qa.confirmed;
	ok(dev_sync(&d[0], 60) == 0 && dev_sync(&d[1], 60) == 0, "both devices sync");
	is_dev(&d[0], "SELECT count(*) FROM " T, "1000", "device A holds all 1000");
	is_dev(&d[1], "SELECT count(*) FROM " T, "1000", "device B holds all 1000");
	is_dev(&d[0], "SELECT count(*) FROM ferry_queue WHERE status = 'failed'", "0", "no mutation failed on A");

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
