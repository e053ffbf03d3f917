/*
 * test/qa/s04_server_newer.c -- scenario 4: the server's row is newer than the client's base.
 *
 * Device A holds records 1-5 and goes offline. The app changes them on the server
 * (status, a `version` column, on 1-3; note, a `manual` column, on 4; title, `lww`, on 5).
 * Meanwhile A edits the same columns, based on the values it last saw -- except the
 * title of 5, which A edits before the app does. Back online:
 *
 *   - 1-3 and 4 are refused as conflicts (the "409": the server records the mutation as
 *     a conflict and writes nothing of it); A shows each conflict with both versions and
 *     the record state `conflict`, and B (another device of the user) shows none;
 *   - keep mine (1), use theirs (2), merge (3, 4) each write the right state on the
 *     server, on A and on B;
 *   - 5 is no conflict: the app's newer write wins by its clock.
 *
 * And the device's own earlier write is not a newer server row: A edits record 6 and
 * then deletes it, offline -- the delete must not conflict with A's own edit. Record 7
 * is the same but the app changed it too: that delete is a conflict. Records 8 and 9 are
 * deleted by the app while A edits them: conflicts; keep mine brings 8 back with A's
 * edit, use theirs leaves 9 deleted, on A and on B.
 */
#include "qa.h"

#define T "qa_s04"
#define PG_ROWS "SELECT string_agg(id || ':' || title || ':' || status || ':' || note, ',' ORDER BY id) FROM " T \
	" WHERE id <= 5"
#define ROWS "SELECT group_concat(id || ':' || title || ':' || status || ':' || note, ',') FROM (SELECT * FROM " T \
	" WHERE id <= 5 ORDER BY id)"

static char *
mutation_of(Dev *d, int id)
{
	char		q[160];

	snprintf(q, sizeof(q), "SELECT id FROM ferry_queue WHERE row_key = '[\"%d\"]' ORDER BY seq LIMIT 1", id);
	return dev_q(d, q);
}

int
main(void)
{
	Gw		   *g;
	Np		   *pa;
	Dev			a,
				b;
	char		target[64];
	char	   *out,
			   *m[6];

	qa_begin(4, "server row newer than base");
	qa_table_create(T);
	sql("INSERT INTO " T " (id, ws, title, status, note) SELECT i, 'ws-a', 'title ' || i, 'open', 'note ' || i "
		"FROM generate_series(1, 5) i");
	g = gw_start(NULL);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	pa = np_start(target);
	a = dev_via(g, pa, "a", "u1:ws-a");
	b = dev_new(g, "b", "u1:ws-a");
	dev_ok(&a, "subscribe", T, NULL);
	dev_ok(&b, "subscribe", T, NULL);
	ok(dev_sync(&a, 30) == 0 && dev_sync(&b, 30) == 0, "A and B sync");

	np_offline(pa);
	dev_ok(&a, "update", T, "5", "{\"title\": \"title 5 by A, earlier\"}", NULL);
	usleep(20000);
	sql("UPDATE " T " SET status = 'server ' || id WHERE id <= 3");
	sql("UPDATE " T " SET note = 'server note' WHERE id = 4");
	sql("UPDATE " T " SET title = 'title 5 by the app, later' WHERE id = 5");
	for (int i = 1; i <= 3; i++)
	{
		char		key[16],
					v[64];

		snprintf(key, sizeof(key), "%d", i);
		snprintf(v, sizeof(v), "{\"status\": \"A %d\"}", i);
		dev_ok(&a, "update", T, key, v, NULL);
	}
	dev_ok(&a, "update", T, "4", "{\"note\": \"A's note\"}", NULL);
	qa.sent = 5;
	is_dev(&a, ROWS, "1:title 1:A 1:note 1,2:title 2:A 2:note 2,3:title 3:A 3:note 3,4:title 4:open:A's note,"
		   "5:title 5 by A, earlier:open:note 5", "offline, A shows its own edits");
	for (int i = 1; i <= 5; i++)
		m[i] = mutation_of(&a, i);

	np_cmd(pa, "pass");
	is_int(dev_sync(&a, 30), 0, "A reconnects and syncs");
	is_sql("1:title 1:server 1:note 1,2:title 2:server 2:note 2,3:title 3:server 3:note 3,4:title 4:open:server note,"
		   "5:title 5 by the app, later:open:note 5", "the server wrote none of the conflicting edits; lww kept the "
		   "app's newer title", PG_ROWS);
	for (int i = 1; i <= 4; i++)
	{
		char	   *st = sqlv("SELECT status FROM ferry.mutations WHERE id = '%s'", m[i]);

		is_str(st, "conflict", "record %d: the server answered conflict (the 409)", i);
		free(st);
		out = dev_out(&a, "state", T, i == 1 ? "1" : i == 2 ? "2" : i == 3 ? "3" : "4", NULL);
		is_str(out, "conflict", "record %d shows conflict on A", i);
		free(out);
	}
	{
		char	   *st = sqlv("SELECT status FROM ferry.mutations WHERE id = '%s'", m[5]);

		is_str(st, "applied", "record 5: applied, the column kept by its rule");
		free(st);
	}
	out = dev_out(&a, "conflicts", "--json", NULL);
	ok(strstr(out, "\"mine\":{\"status\":\"A 1\"}") && strstr(out, "\"status\":\"server 1\"") &&
	   strstr(out, "\"columns\":[\"note\"]"), "A lists each conflict with mine and theirs: %.400s", out);
	free(out);
	is_dev(&a, "SELECT count(*) FROM ferry_conflicts", "4", "A shows four conflicts");
	ok(dev_sync(&b, 30) == 0, "B syncs");
	is_dev(&b, "SELECT count(*) FROM ferry_conflicts", "0", "B, which edited nothing, shows none");

	is_int(dev_run(&a, NULL, "resolve", m[1], "--keep-mine", NULL), 0, "record 1: keep mine");
	is_int(dev_run(&a, NULL, "resolve", m[2], "--use-theirs", NULL), 0, "record 2: use theirs");
	is_int(dev_run(&a, NULL, "resolve", m[3], "--merge", "{\"status\": \"A 3 + server 3\"}", NULL), 0, "record 3: merge");
	is_int(dev_run(&a, NULL, "resolve", m[4], "--merge", "{\"note\": \"A's note + server note\"}", NULL), 0,
		   "record 4: merge");
	is_dev(&a, "SELECT status FROM " T " WHERE id = 2", "server 2", "use theirs shows the server's value at once");
	ok(dev_drain(&a, 30), "A drains its resolutions");
	ok(dev_sync(&b, 30) == 0, "B syncs");
	{
		const char *want = "1:title 1:A 1:note 1,2:title 2:server 2:note 2,3:title 3:A 3 + server 3:note 3,"
			"4:title 4:open:A's note + server note,5:title 5 by the app, later:open:note 5";

		is_sql(want, "the server holds what each resolution asked for", PG_ROWS);
		is_dev(&a, ROWS, want, "A holds the same");
		is_dev(&b, ROWS, want, "B holds the same");
	}
	is_dev(&a, "SELECT count(*) FROM ferry_conflicts", "0", "no conflict left");
	qa.confirmed = 5;
	{
		/* versions: 1 + the app's write + one resolution write (1, 3, 4), or none (2), or the lww no-op (5) */
		long		v = sqll("SELECT sum(ferry_version) FROM " T " WHERE id <= 5");
		long		want = 5 + 5 + 3;

		is_int(v, want, "each record was written once per accepted write (versions add up to %ld)", want);
		qa.dups = v > want ? v - want : 0;
		qa.lost = v < want ? want - v : 0;
	}

	/* A's own edit, then A's delete: no conflict with itself; with the app's edit between: a conflict */
	sql("INSERT INTO " T " (id, ws, title, status, note) VALUES (6, 'ws-a', 'title 6', 'open', 'note 6'), "
		"(7, 'ws-a', 'title 7', 'open', 'note 7')");
	ok(dev_sync(&a, 30) == 0 && dev_wait(&a, "SELECT count(*) FROM " T " WHERE id IN (6, 7)", "2", 10000),
	   "A holds records 6 and 7");
	np_offline(pa);
	dev_ok(&a, "update", T, "6", "{\"title\": \"A edits 6\"}", NULL);
	dev_ok(&a, "delete", T, "6", NULL);
	dev_ok(&a, "update", T, "7", "{\"status\": \"A's 7\"}", NULL);
	dev_ok(&a, "delete", T, "7", NULL);
	qa.sent += 4;
	sql("UPDATE " T " SET title = 'the app edits 7' WHERE id = 7");
	np_cmd(pa, "pass");
	is_int(dev_sync(&a, 30), 0, "A syncs an edit and a delete of record 6, and of record 7");
	is_sql("1", "record 6 is deleted on the server: A's delete did not conflict with A's own edit",
		   "SELECT (ferry_deleted_at IS NOT NULL)::int FROM " T " WHERE id = 6");
	{
		char	   *out = dev_out(&a, "conflicts", "--json", NULL);

		is_dev(&a, "SELECT count(*) FROM ferry_conflicts", "1", "A shows one conflict");
		ok(strstr(out, "\"ferry_version\"") != NULL && strstr(out, "the app edits 7") != NULL,
		   "the delete of record 7, which the app changed after A last saw it: %.300s", out);
		free(out);
	}
	{
		char	   *m7 = mutation_of(&a, 7);

		is_int(dev_run(&a, NULL, "resolve", m7, "--keep-mine", NULL), 0, "A deletes it anyway (keep mine)");
		free(m7);
	}
	ok(dev_drain(&a, 30), "A drains");
	is_sql("1", "record 7 is deleted", "SELECT (ferry_deleted_at IS NOT NULL)::int FROM " T " WHERE id = 7");
	qa.confirmed += 4;

	/* the app deletes records 8 and 9 while A edits them offline: conflicts; keep mine brings 8 back */
	sql("INSERT INTO " T " (id, ws, title, status, note, n) VALUES (8, 'ws-a', 'title 8', 'open', 'note 8', 5), "
		"(9, 'ws-a', 'title 9', 'open', 'note 9', 5)");
	ok(dev_sync(&a, 30) == 0 && dev_wait(&a, "SELECT count(*) FROM " T " WHERE id IN (8, 9)", "2", 10000),
	   "A holds records 8 and 9");
	np_offline(pa);
	dev_ok(&a, "update", T, "8", "{\"title\": \"A edits 8\", \"n\": 7}", NULL);
	dev_ok(&a, "update", T, "9", "{\"title\": \"A edits 9\"}", NULL);
	qa.sent += 2;
	sql("DELETE FROM " T " WHERE id IN (8, 9)");
	np_cmd(pa, "pass");
	is_int(dev_sync(&a, 30), 0, "A syncs its edits of records the app deleted");
	is_dev(&a, "SELECT count(*) FROM ferry_conflicts", "2", "A shows two conflicts");
	is_dev(&a, "SELECT group_concat(title, ',') FROM (SELECT title FROM " T " WHERE id IN (8, 9) ORDER BY id)",
		   "A edits 8,A edits 9", "A still shows its edits while they are in conflict");
	{
		char	   *m8 = mutation_of(&a, 8),
				   *m9 = mutation_of(&a, 9);

		is_int(dev_run(&a, NULL, "resolve", m8, "--keep-mine", NULL), 0, "record 8: keep mine");
		is_int(dev_run(&a, NULL, "resolve", m9, "--use-theirs", NULL), 0, "record 9: use theirs");
		free(m8);
		free(m9);
	}
	ok(dev_drain(&a, 30), "A drains");
	is_sql("A edits 8|7|note 8|0", "record 8 is back with A's edit on the server's last values (a re-insert)",
		   "SELECT title || '|' || n || '|' || note || '|' || (ferry_deleted_at IS NOT NULL)::int FROM " T " WHERE id = 8");
	is_sql("1", "record 9 stays deleted", "SELECT (ferry_deleted_at IS NOT NULL)::int FROM " T " WHERE id = 9");
	ok(dev_sync(&b, 30) == 0, "B syncs");
	is_dev(&a, "SELECT group_concat(id || ':' || title, ',') FROM (SELECT * FROM " T " WHERE id IN (8, 9) ORDER BY id)",
		   "8:A edits 8", "A holds record 8, not 9");
	is_dev(&b, "SELECT group_concat(id || ':' || title, ',') FROM (SELECT * FROM " T " WHERE id IN (8, 9) ORDER BY id)",
		   "8:A edits 8", "so does B");
	qa.confirmed += 2;

	for (int i = 1; i <= 5; i++)
		free(m[i]);
	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	np_stop(pa);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
