/*
 * test/client/e2e_write.c -- libferry end to end, the write path: two devices of one user.
 *
 * Real Postgres, real ferryd, devices A and B (files driven by `ferry` processes):
 * offline writes then reconnect; concurrent edits of different columns merge silently;
 * `version` conflicts on the device that syncs second, resolved keep-mine, use-theirs
 * and merge; a `manual` conflict; `set_union` and `counter` merges; 50 creates and 50
 * counter increments synced by processes killed with SIGKILL at random instants, all
 * applied exactly once; a rejected write shown as failed and discarded; a burst over
 * the push rate limit that backs off and drains.
 */
#include "e2e_harness.h"

#define ROWS "SELECT group_concat(id || ':' || coalesce(title, '') || ':' || coalesce(body, '') || ':' || " \
	"coalesce(status, '') || ':' || done, ',') FROM (SELECT * FROM cl_todos WHERE id < 100 ORDER BY id)"
#define PG_ROWS "SELECT string_agg(id || ':' || coalesce(title, '') || ':' || coalesce(body, '') || ':' || " \
	"coalesce(status, '') || ':' || (CASE WHEN done THEN 1 ELSE 0 END), ',' ORDER BY id) FROM cl_todos " \
	"WHERE id < 100 AND ws = 'ws-a' AND ferry_deleted_at IS NULL"

/* The first mutation id in the device's queue for a row (malloc'd). */
static char *
queued(Dev *d, int id)
{
	char		q[160];

	snprintf(q, sizeof(q), "SELECT id FROM ferry_queue WHERE row_key = '[\"%d\"]' ORDER BY seq LIMIT 1", id);
	return dev_q(d, q);
}

static void
same_everywhere(Dev *a, Dev *b, const char *what)
{
	char	   *pa = dev_q(a, ROWS);
	char	   *pb = dev_q(b, ROWS);
	char	   *ps = sqlv(PG_ROWS);

	ok(strcmp(pa, ps) == 0 && strcmp(pb, ps) == 0, "%s: A, B and the server agree", what);
	if (strcmp(pa, ps) != 0 || strcmp(pb, ps) != 0)
		diag("A: %s\nB: %s\nserver: %s", pa, pb, ps);
	free(pa);
	free(pb);
	free(ps);
}

/* A counter from ferryd's /metrics, -1 when absent. */
static int
metric(Gw *g, const char *name)
{
	char	   *body = http_get(g->port, "/metrics");
	char	   *p = body;
	int			v = -1;

	while (p != NULL && (p = strstr(p, name)) != NULL)
	{
		if ((p == body || p[-1] == '\n') && p[strlen(name)] == ' ')
		{
			v = atoi(p + strlen(name) + 1);
			break;
		}
		p += strlen(name);
	}
	free(body);
	return v;
}

int
main(void)
{
	Gw		   *g;
	Dev			a,
				b,
				c;
	char	   *out;

	sql("DROP TABLE IF EXISTS cl_todos");
	sql("CREATE TABLE cl_todos (id int PRIMARY KEY, ws text NOT NULL, title text, body text, "
		"done boolean NOT NULL DEFAULT false, status text, note text, tags text[] NOT NULL DEFAULT '{}', "
		"pomodoros int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00')");
	sql("SELECT ferry.enable_sync('cl_todos', 'ws')");
	sql("SELECT ferry.set_conflict_rule('cl_todos', 'status', 'version')");
	sql("SELECT ferry.set_conflict_rule('cl_todos', 'note', 'manual')");
	sql("SELECT ferry.set_conflict_rule('cl_todos', 'tags', 'set_union')");
	sql("SELECT ferry.set_conflict_rule('cl_todos', 'pomodoros', 'counter')");
	sql("SELECT ferry.set_conflict_rule('cl_todos', 'created_at', 'immutable')");
	sql("INSERT INTO cl_todos (id, ws, title, status, tags, pomodoros) SELECT i, 'ws-a', 'todo ' || i, 'open', "
		"'{home}', 2 FROM generate_series(1, 9) i");

	g = gw_start(NULL);
	a = dev_new(g, "a", "u1:ws-a");
	b = dev_new(g, "b", "u1:ws-a");
	dev_ok(&a, "subscribe", "cl_todos", NULL);
	dev_ok(&b, "subscribe", "cl_todos", NULL);
	ok(dev_sync(&a, 20) == 0 && dev_sync(&b, 20) == 0, "devices A and B of user u1 sync");
	same_everywhere(&a, &b, "after the snapshot");

	/* ---- offline writes, then reconnect ---- */
	gw_stop(g, SIGTERM);
	dev_ok(&a, "insert", "cl_todos", "{\"id\": 10, \"ws\": \"ws-a\", \"title\": \"new on A\"}", NULL);
	dev_ok(&a, "update", "cl_todos", "1", "{\"title\": \"renamed on A\"}", NULL);
	dev_ok(&a, "delete", "cl_todos", "6", NULL);
	dev_ok(&b, "update", "cl_todos", "2", "{\"body\": \"written on B\", \"done\": true}", NULL);
	gw_start(g);
	snprintf(a.url, sizeof(a.url), "%s", g->url);
	snprintf(b.url, sizeof(b.url), "%s", g->url);
	ok(dev_sync(&a, 20) == 0 && dev_sync(&b, 20) == 0 && dev_sync(&a, 20) == 0,
	   "after ferryd is back, both devices sync their offline writes");
	is_sql("renamed on A|written on B|1|0|new on A", "the server has every offline write",
		   "SELECT (SELECT title FROM cl_todos WHERE id = 1) || '|' || (SELECT body FROM cl_todos WHERE id = 2) || '|' || "
		   "(SELECT done::int FROM cl_todos WHERE id = 2) || '|' || (SELECT count(*) FROM cl_todos WHERE id = 6 AND "
		   "ferry_deleted_at IS NULL) || '|' || "
		   "(SELECT title FROM cl_todos WHERE id = 10)");
	same_everywhere(&a, &b, "after the offline writes");
	is_dev(&a, "SELECT count(*) FROM ferry_queue", "0", "A's queue is empty");

	/* ---- different columns of one row: merged silently ---- */
	dev_ok(&a, "update", "cl_todos", "3", "{\"title\": \"title from A\"}", NULL);
	dev_ok(&b, "update", "cl_todos", "3", "{\"body\": \"body from B\"}", NULL);
	ok(dev_sync(&a, 20) == 0 && dev_sync(&b, 20) == 0 && dev_sync(&a, 20) == 0, "both edit row 3 and sync");
	is_sql("title from A|body from B", "edits of different columns both land", "SELECT title || '|' || body FROM cl_todos WHERE id = 3");
	is_dev(&b, "SELECT count(*) FROM ferry_conflicts", "0", "with no conflict");
	same_everywhere(&a, &b, "after concurrent edits of different columns");

	/* ---- one `version` column edited on both: a conflict on the second, resolved three ways ---- */
	dev_ok(&a, "update", "cl_todos", "4", "{\"status\": \"done by A\"}", NULL);
	dev_ok(&a, "update", "cl_todos", "5", "{\"status\": \"done by A\"}", NULL);
	dev_ok(&a, "update", "cl_todos", "7", "{\"status\": \"done by A\"}", NULL);
	dev_ok(&b, "update", "cl_todos", "4", "{\"status\": \"done by B\", \"title\": \"B's title\"}", NULL);
	dev_ok(&b, "update", "cl_todos", "5", "{\"status\": \"done by B\"}", NULL);
	dev_ok(&b, "update", "cl_todos", "7", "{\"status\": \"done by B\"}", NULL);
	is_int(dev_sync(&a, 20), 0, "A syncs first");
	is_int(dev_sync(&b, 20), 0, "B syncs second");
	is_dev(&b, "SELECT count(*) FROM ferry_conflicts", "3", "B has three conflicts");
	out = dev_out(&b, "conflicts", "--json", NULL);
	ok(strstr(out, "\"columns\":[\"status\"]") && strstr(out, "\"mine\":{\"status\":\"done by B\",\"title\":\"B's title\"}") &&
	   strstr(out, "\"status\":\"done by A\""), "side by side: mine, theirs, the columns: %.300s...", out);
	free(out);
	out = dev_out(&b, "state", "cl_todos", "4", NULL);
	is_str(out, "conflict", "row 4 shows conflict on B");
	free(out);
	is_sql("done by A|todo 4", "nothing of B's refused mutation was written (version rule)",
		   "SELECT status || '|' || title FROM cl_todos WHERE id = 4");
	{
		char	   *m4 = queued(&b, 4),
				   *m5 = queued(&b, 5),
				   *m7 = queued(&b, 7);

		is_int(dev_run(&b, NULL, "resolve", m4, "--keep-mine", NULL), 0, "row 4: keep mine");
		is_int(dev_run(&b, NULL, "resolve", m5, "--use-theirs", NULL), 0, "row 5: use theirs");
		is_int(dev_run(&b, NULL, "resolve", m7, "--merge", "{\"status\": \"done by A and B\"}", NULL), 0, "row 7: merge");
		free(m4);
		free(m5);
		free(m7);
	}
	is_dev(&b, "SELECT status FROM cl_todos WHERE id = 5", "done by A", "use theirs shows the server's value at once");
	ok(dev_sync(&b, 20) == 0 && dev_sync(&a, 20) == 0, "B and A sync");
	is_sql("done by B|B's title|done by A|done by A and B", "the server has B's row 4, A's row 5, the merge in row 7",
		   "SELECT string_agg(status || CASE WHEN id = 4 THEN '|' || title ELSE '' END, '|' ORDER BY id) "
		   "FROM cl_todos WHERE id IN (4, 5, 7)");
	same_everywhere(&a, &b, "after the three resolutions");
	is_dev(&b, "SELECT count(*) FROM ferry_queue", "0", "B's queue is empty");

	/* ---- a `manual` column: the rest of the mutation lands, the column waits ---- */
	dev_ok(&a, "update", "cl_todos", "8", "{\"note\": \"A's note\"}", NULL);
	dev_ok(&b, "update", "cl_todos", "8", "{\"note\": \"B's note\", \"body\": \"B's body\"}", NULL);
	ok(dev_sync(&a, 20) == 0 && dev_sync(&b, 20) == 0, "both edit the manual column note of row 8");
	is_sql("A's note|B's body", "B's other column was applied, the note kept the server's value",
		   "SELECT note || '|' || body FROM cl_todos WHERE id = 8");
	out = dev_out(&b, "conflicts", "--json", NULL);
	ok(strstr(out, "\"columns\":[\"note\"]") && strstr(out, "\"applied\":[\"body\"]"), "B's conflict lists what was "
	   "applied: %.200s", out);
	free(out);
	{
		char	   *m = queued(&b, 8);

		is_int(dev_run(&b, NULL, "resolve", m, "--keep-mine", NULL), 0, "keep mine");
		free(m);
	}
	ok(dev_sync(&b, 20) == 0 && dev_sync(&a, 20) == 0, "sync");
	is_sql("B's note|B's body", "B's note won by the user's choice", "SELECT note || '|' || body FROM cl_todos WHERE id = 8");

	/* ---- set_union and counter merge ---- */
	dev_ok(&a, "update", "cl_todos", "9", "{\"tags\": [\"home\", \"a\"], \"pomodoros\": 5}", NULL);
	dev_ok(&b, "update", "cl_todos", "9", "{\"tags\": [\"b\"], \"pomodoros\": 4}", NULL);
	ok(dev_sync(&a, 20) == 0 && dev_sync(&b, 20) == 0 && dev_sync(&a, 20) == 0, "both edit tags and pomodoros of row 9");
	is_sql("{a,b}|7", "tags merge three-way (B's removal of home and both additions), pomodoros add up (2 + 3 + 2)",
		   "SELECT tags::text || '|' || pomodoros FROM cl_todos WHERE id = 9");
	is_dev(&a, "SELECT tags || '|' || pomodoros FROM cl_todos WHERE id = 9", "{a,b}|7", "A shows the merge");
	is_dev(&b, "SELECT tags || '|' || pomodoros FROM cl_todos WHERE id = 9", "{a,b}|7", "and so does B");

	/* ---- a rejected write: failed, visible, discarded ---- */
	dev_ok(&a, "update", "cl_todos", "2", "{\"created_at\": \"2030-01-01 00:00:00+00\", \"title\": \"with a bad date\"}", NULL);
	is_int(dev_sync(&a, 20), 0, "A syncs a write to an immutable column");
	out = dev_out(&a, "pending", "--json", NULL);
	ok(strstr(out, "\"status\":\"failed\"") && strstr(out, "\"error_code\":\"immutable_column\""),
	   "it is failed, with the server's code: %.300s", out);
	free(out);
	out = dev_out(&a, "state", "cl_todos", "2", NULL);
	is_str(out, "failed", "row 2 shows failed");
	free(out);
	is_dev(&a, "SELECT title FROM cl_todos WHERE id = 2", "with a bad date", "the failed write stays visible");
	{
		char	   *m = queued(&a, 2);

		is_int(dev_run(&a, NULL, "discard", m, NULL), 0, "discard it");
		free(m);
	}
	is_dev(&a, "SELECT title || '|' || created_at FROM cl_todos WHERE id = 2", "todo 2|2024-01-01 00:00:00+00",
		   "the server's row is back");

	/* ---- 50 creates and 50 increments, synced by processes killed at random instants ---- */
	c = dev_new(g, "c", "u1:ws-a");
	dev_ok(&c, "subscribe", "cl_todos", NULL);
	is_int(dev_sync(&c, 20), 0, "device C syncs");
	for (int i = 0; i < 50; i++)
	{
		char		v[128];

		snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-a\", \"title\": \"bulk %d\"}", 1000 + i, i);
		dev_ok(&c, "insert", "cl_todos", v, NULL);
		snprintf(v, sizeof(v), "{\"pomodoros\": %d}", 3 + i);
		dev_ok(&c, "update", "cl_todos", "1", v, NULL);
	}
	is_dev(&c, "SELECT count(*) FROM ferry_queue", "100", "C queued 50 inserts and 50 counter increments offline");
	{
		int			kills = 0;
		unsigned	seed = (unsigned) now_ms();

		for (int round = 0; round < 40; round++)
		{
			char	   *left = dev_q(&c, "SELECT count(*) FROM ferry_queue");
			int			n = atoi(left);
			pid_t		pid;

			free(left);
			if (n == 0)
				break;
			pid = fork();
			if (pid == 0)
			{
				setenv("FERRY_TOKEN", c.token, 1);
				if (freopen("/dev/null", "w", stderr) == NULL)
					_exit(126);
				execl(CLI, CLI, "--db", c.db, "--url", c.url, "sync", "--timeout", "20", (char *) NULL);
				_exit(127);
			}
			usleep(30000 + rand_r(&seed) % 170000);
			if (kill(pid, SIGKILL) == 0)
				kills++;
			waitpid(pid, NULL, 0);
		}
		ok(kills > 0, "%d sync processes were killed with SIGKILL mid-sync", kills);
		{
			char	   *left = dev_q(&c, "SELECT count(*) FROM ferry_queue");

			note("%s of 100 mutations left after the kills", left);
			free(left);
		}
	}
	is_int(dev_sync(&c, 30), 0, "a last sync finishes");
	is_dev(&c, "SELECT count(*) FROM ferry_queue", "0", "C's queue is empty");
	is_sql("50", "all 50 creates are on the server", "SELECT count(*) FROM cl_todos WHERE id BETWEEN 1000 AND 1049");
	is_sql("52", "and the counter went up by exactly 50 (2 + 50): no increment lost or applied twice",
		   "SELECT pomodoros FROM cl_todos WHERE id = 1");
	is_dev(&c, "SELECT count(*) || '|' || (SELECT pomodoros FROM cl_todos WHERE id = 1) FROM cl_todos "
		   "WHERE id BETWEEN 1000 AND 1049", "50|52", "C holds the same");

	/* ---- a burst over the push rate limit backs off and drains ---- */
	gw_stop(g, SIGTERM);
	{
		const char *slow[] = {"--push-rate=40", "--push-burst=10", NULL};

		gw_start_args(g, slow);
	}
	snprintf(a.url, sizeof(a.url), "%s", g->url);
	for (int i = 0; i < 60; i++)
	{
		char		v[128];

		snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-a\", \"title\": \"burst %d\"}", 2000 + i, i);
		dev_ok(&a, "insert", "cl_todos", v, NULL);
	}
	{
		long long	t0 = now_ms();

		is_int(dev_sync(&a, 60), 0, "A syncs a burst of 60 writes against a limit of 40/s (burst 10)");
		ok(now_ms() - t0 >= 800, "which takes the time the limit asks for (%lld ms)", now_ms() - t0);
	}
	ok(metric(g, "ferry_rate_limited_total") > 0, "the server did rate-limit it (ferry_rate_limited_total %d)",
	   metric(g, "ferry_rate_limited_total"));
	is_sql("60", "and every write landed", "SELECT count(*) FROM cl_todos WHERE id BETWEEN 2000 AND 2059");
	is_dev(&a, "SELECT count(*) FROM ferry_queue", "0", "A's queue drained");

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	sql("DROP TABLE IF EXISTS cl_todos");
	PQfinish(pg());
	return done_testing();
}
