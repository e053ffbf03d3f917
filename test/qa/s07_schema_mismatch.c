/*
 * test/qa/s07_schema_mismatch.c -- scenario 7: a client with a cached schema one version behind.
 *
 * Devices A and B have synced schema version v. A goes offline and queues writes (an
 * insert, a title edit, a counter delta); B is simply closed. The server migrates: a
 * column is added with a default, existing rows get values in it, and the oldest schema
 * version clients may hold is raised to v + 1. When A reconnects it detects the mismatch
 * (its file records v + 1 afterwards), drops and refetches its rows -- now with the new
 * column, old rows imported with their new values -- keeps its queue and replays it: the
 * writes land once, on the new schema. B, with no writes, opens and converges as well.
 */
#include "qa.h"

#define T "qa_s07"
#define PG_ROWS "SELECT string_agg(id || ':' || title || ':' || n || ':' || priority, ',' ORDER BY id) FROM " T \
	" WHERE ferry_deleted_at IS NULL"
#define ROWS "SELECT group_concat(id || ':' || title || ':' || n || ':' || priority, ',') FROM (SELECT * FROM " T \
	" ORDER BY id)"

int
main(void)
{
	Gw		   *g;
	Np		   *pa;
	Dev			a,
				b;
	char		target[64];
	long		v0,
				v1,
				min0;

	qa_begin(7, "schema one version behind");
	qa_table_create(T);
	sql("INSERT INTO " T " (id, ws, title, n) SELECT i, 'ws-a', 'title ' || i, 10 FROM generate_series(1, 20) i");
	g = gw_start(NULL);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	pa = np_start(target);
	a = dev_via(g, pa, "a", "u1:ws-a");
	b = dev_new(g, "b", "u1:ws-a");
	dev_ok(&a, "subscribe", T, NULL);
	dev_ok(&b, "subscribe", T, NULL);
	ok(dev_sync(&a, 30) == 0 && dev_sync(&b, 30) == 0, "A and B sync");
	v0 = sqll("SELECT ferry.schema_version()");
	{
		char		want[32];

		snprintf(want, sizeof(want), "%ld", v0);
		is_dev(&a, "SELECT value FROM ferry_meta WHERE key = 'schema_version'", want, "A's cache is schema version v");
	}

	/* A offline with writes queued */
	np_offline(pa);
	dev_ok(&a, "insert", T, "{\"id\": 50, \"ws\": \"ws-a\", \"title\": \"made offline\"}", NULL);
	dev_ok(&a, "update", T, "1", "{\"title\": \"edited offline\"}", NULL);
	dev_ok(&a, "update", T, "2", "{\"n\": 17}", NULL);
	qa.sent = 3;
	is_int(dev_queue(&a), 3, "A queued three writes");

	/* the migration */
	sql("ALTER TABLE " T " ADD COLUMN priority int NOT NULL DEFAULT 3");
	sql("UPDATE " T " SET priority = id %% 5 WHERE id <= 10");
	sql("UPDATE " T " SET n = n + 1 WHERE id = 2");
	sql("INSERT INTO " T " (id, ws, title, priority) VALUES (60, 'ws-a', 'made after the migration', 9)");
	v1 = sqll("SELECT ferry.schema_version()");
	ok(v1 > v0, "the migration bumped the schema version (%ld -> %ld)", v0, v1);
	min0 = sqll("SELECT ferry.min_client_schema_version()");
	sql("SELECT ferry.set_min_client_schema_version(%ld)", v1);

	/* A reconnects */
	np_cmd(pa, "pass");
	ok(dev_drain(&a, 60), "A reconnects, re-syncs and drains its queue");
	{
		char		want[32];

		snprintf(want, sizeof(want), "%ld", v1);
		is_dev(&a, "SELECT value FROM ferry_meta WHERE key = 'schema_version'", want,
			   "A detected the new schema version and rebuilt its cache for it");
	}
	is_sql("edited offline|17|made offline|3", "A's writes were replayed on the new schema, each once "
		   "(n: 10 + A's 7 + the server's 1)",
		   "SELECT (SELECT title FROM " T " WHERE id = 1) || '|' || (SELECT n - 1 FROM " T " WHERE id = 2) || '|' || "
		   "(SELECT title FROM " T " WHERE id = 50) || '|' || (SELECT priority FROM " T " WHERE id = 50)");
	ok(dev_sync(&a, 30) == 0, "A syncs again");
	{
		char	   *want = sqlv(PG_ROWS);

		is_dev(&a, ROWS, want, "A holds the server's rows with the new column, old rows imported with their values");
		ok(dev_sync(&b, 30) == 0, "B, which held schema v and no writes, opens and syncs");
		is_dev(&b, ROWS, want, "B holds the same");
		free(want);
	}
	is_dev(&a, "SELECT count(*) FROM ferry_queue", "0", "A's queue is empty");
	is_dev(&a, "SELECT count(*) FROM ferry_conflicts", "0", "with no conflict");
	qa.confirmed = sqll("SELECT (SELECT count(*) FROM " T " WHERE id = 1 AND title = 'edited offline') + "
						"(SELECT count(*) FROM " T " WHERE id = 2 AND n = 18) + (SELECT count(*) FROM " T " WHERE id = 50)");
	qa.lost = 3 - qa.confirmed;
	/* versions: row 1 = insert + priority + A's edit; row 2 = insert + priority + n + A's delta; row 50 = insert */
	qa.dups = sqll("SELECT (SELECT ferry_version FROM " T " WHERE id = 1) - 3 + (SELECT ferry_version FROM " T
				   " WHERE id = 2) - 4 + (SELECT ferry_version FROM " T " WHERE id = 50) - 1");
	is_int(qa.dups, 0, "no write applied twice (row versions)");

	sql("SELECT ferry.set_min_client_schema_version(%ld)", min0);
	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	np_stop(pa);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
