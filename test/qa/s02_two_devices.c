/*
 * test/qa/s02_two_devices.c -- scenario 2: two devices of one user edit one record offline.
 *
 * Devices A and B of user u1 hold record 1. Both links go down; each device edits every
 * column of the record, one mutation per column (so that one refused column does not
 * take the others with it): title (lww), body (lww, B only), tags (set_union), n
 * (counter), status (version), note (manual). B edits first, A later. Both come back, A
 * syncs first. The rules, column by column:
 *
 *   title   lww: A's edit is newer by its clock, so it stays although B's arrives later
 *   body    only B changed it: B's value
 *   tags    set_union: both additions, nobody's removal lost
 *   n       counter: both deltas added (10 + 2 + 3)
 *   status  version: B's edit is a conflict, shown on B (not on A); B keeps its value
 *   note    manual: a conflict shown on B; B takes the server's (A's) value
 *
 * Nothing is lost: every device ends with the server's row, and the row's version counts
 * each applied mutation once.
 */
#include "qa.h"

#define T "qa_s02"
#define ROW "SELECT title || '|' || body || '|' || tags || '|' || n || '|' || status || '|' || note FROM " T " WHERE id = 1"
#define PG_ROW "SELECT title || '|' || body || '|' || tags::text || '|' || n || '|' || status || '|' || note FROM " T \
	" WHERE id = 1"

/* The first queued mutation of record 1 on a device (malloc'd). */
static char *
head_of_row(Dev *d)
{
	return dev_q(d, "SELECT id FROM ferry_queue WHERE row_key = '[\"1\"]' ORDER BY seq LIMIT 1");
}

int
main(void)
{
	Gw		   *g;
	Np		   *pa,
			   *pb;
	Dev			a,
				b;
	char	   *out;
	char		target[64];
	const char *b_edits[] = {
		"{\"title\": \"title by B\"}", "{\"body\": \"body by B\"}", "{\"tags\": [\"home\", \"b\"]}",
		"{\"n\": 13}", "{\"status\": \"status by B\"}", "{\"note\": \"note by B\"}", NULL
	};
	const char *a_edits[] = {
		"{\"title\": \"title by A\"}", "{\"tags\": [\"home\", \"a\"]}", "{\"n\": 12}",
		"{\"status\": \"status by A\"}", "{\"note\": \"note by A\"}", NULL
	};
	long		writes = 1;		/* applied writes to record 1, from the independent log */

	qa_begin(2, "two devices edit one record");
	qa_table_create(T);
	sql("INSERT INTO " T " (id, ws, title, body, status, note, tags, n) VALUES "
		"(1, 'ws-a', 'title 0', 'body 0', 'open', 'note 0', '{home}', 10)");
	g = gw_start(NULL);
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	pa = np_start(target);
	pb = np_start(target);
	a = dev_via(g, pa, "a", "u1:ws-a");
	b = dev_via(g, pb, "b", "u1:ws-a");
	dev_ok(&a, "subscribe", T, NULL);
	dev_ok(&b, "subscribe", T, NULL);
	ok(dev_sync(&a, 30) == 0 && dev_sync(&b, 30) == 0, "A and B of user u1 sync");
	is_dev(&b, ROW, "title 0|body 0|{home}|10|open|note 0", "both hold record 1");

	/* both offline; B edits first, then A */
	np_offline(pa);
	np_offline(pb);
	for (int i = 0; b_edits[i]; i++, qa.sent++)
		is_int(dev_run(&b, NULL, "update", T, "1", b_edits[i], NULL), 0, "offline B: %s", b_edits[i]);
	usleep(20000);				/* A's clock is later */
	for (int i = 0; a_edits[i]; i++, qa.sent++)
		is_int(dev_run(&a, NULL, "update", T, "1", a_edits[i], NULL), 0, "offline A: %s", a_edits[i]);
	ok(dev_sync(&a, 3) != 0 && dev_sync(&b, 3) != 0, "neither can sync");
	is_sql("title 0|body 0|{home}|10|open|note 0", "the server has none of it", PG_ROW);

	/* both back; A first */
	np_cmd(pa, "pass");
	np_cmd(pb, "pass");
	ok(dev_drain(&a, 60), "A syncs all five edits");
	writes += 5;
	qa.confirmed += 5;
	is_sql("title by A|body 0|{home,a}|12|status by A|note by A", "the server has A's row", PG_ROW);
	is_int(dev_sync(&b, 60), 0, "B syncs second");
	out = dev_out(&b, "conflicts", "--json", NULL);
	ok(strstr(out, "\"columns\":[\"status\"]") != NULL, "B shows the conflict on status: %.300s", out);
	free(out);
	out = dev_out(&b, "state", T, "1", NULL);
	is_str(out, "conflict", "record 1 is in conflict on B");
	free(out);
	is_dev(&a, "SELECT count(*) FROM ferry_conflicts", "0", "A has no conflict");
	is_sql("title by A|body by B|{home,a,b}|15|status by A|note by A",
		   "before B resolves: A's title kept by lww, B's body, both tags, both increments", PG_ROW);

	/* B keeps its status: re-queued; then the note is a manual conflict */
	{
		char	   *m = head_of_row(&b);

		is_int(dev_run(&b, NULL, "resolve", m, "--keep-mine", NULL), 0, "B keeps its status");
		free(m);
	}
	is_int(dev_sync(&b, 60), 0, "B syncs the resolution");
	out = dev_out(&b, "conflicts", "--json", NULL);
	ok(strstr(out, "\"columns\":[\"note\"]") != NULL, "then B shows the conflict on note: %.300s", out);
	free(out);
	{
		char	   *m = head_of_row(&b);

		is_int(dev_run(&b, NULL, "resolve", m, "--use-theirs", NULL), 0, "B takes the server's note");
		free(m);
	}
	ok(dev_drain(&b, 60), "B's queue drains");
	ok(dev_drain(&a, 60), "A syncs again");
	qa.confirmed += 6;			/* every one of B's edits was answered and settled */
	is_sql("title by A|body by B|{home,a,b}|15|status by B|note by A", "the server: every rule applied, nothing lost",
		   PG_ROW);
	is_dev(&a, ROW, "title by A|body by B|{home,a,b}|15|status by B|note by A", "A holds the same");
	is_dev(&b, ROW, "title by A|body by B|{home,a,b}|15|status by B|note by A", "B holds the same");
	is_dev(&b, "SELECT count(*) FROM ferry_conflicts", "0", "B's conflicts are resolved");

	/*
	 * The version counts each applied write once: A's five, B's body, tags, n (its title
	 * lost under lww and writes nothing; its status conflict and note conflict wrote
	 * nothing), B's re-queued status.
	 */
	writes += 3 + 1;
	{
		long		v = sqll("SELECT ferry_version FROM " T " WHERE id = 1");

		is_int(v, writes, "the row's version counts each applied write once");
		qa.dups = v > writes ? v - writes : 0;
	}
	qa.lost = 0;
	{
		char	   *s = sqlv(PG_ROW);

		qa.lost += strstr(s, "body by B") == NULL;
		qa.lost += strstr(s, "{home,a,b}") == NULL;
		qa.lost += strstr(s, "|15|") == NULL;
		free(s);
	}

	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	np_stop(pa);
	np_stop(pb);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
