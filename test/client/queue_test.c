/*
 * test/client/queue_test.c -- libferry's queue, rebase, results and conflicts on real SQLite files.
 *
 * No network: server frames are built by fake_server.h and handed to the engine's
 * frame handler. Covers the file layout, snapshots and offsets, local writes (one
 * transaction with the queue), rebase of server rows under pending writes, FIFO per row,
 * every result status, conflict resolution three ways, retry/discard, must-refetch,
 * schema changes, the clock, logout, callbacks, and a SIGKILL in the middle of writes.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_server.h"

#define COLS "id:integer:k,ws:text,title:text,done:boolean,tags:text[],n:integer,ferry_clock:jsonb"

static char dir[64];

static char *
path(const char *name)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "%s/%s", dir, name);
	return buf;
}

/* A file with shape todos subscribed and a snapshot of rows 1 and 2. */
static ferry *
fresh(const char *name)
{
	ferry	   *db = NULL;
	char	   *err = NULL;
	Chg			snap[] = {
		{INS, 1, "1|ws-a|one|f|{}|0|{\"title\": \"1000-0-server\"}"},
		{INS, 3, "2|ws-a|two|t|{a,b}|5|\\N"},
	};

	unlink(path(name));
	if (ferry_open(path(name), &db, &err) != FERRY_OK)
		bail_out("cannot open %s: %s", path(name), err);
	if (ferry_subscribe(db, "todos", NULL, NULL, &err) != FERRY_OK)
		bail_out("subscribe: %s", err);
	if (srv_welcome(db, 1, 1, "u1") != FERRY_OK || srv_subscribed(db, 1, "public.todos", "h1", 0, COLS) != FERRY_OK ||
		srv_batch(db, 1, "0_2", snap, 2) != FERRY_OK || srv_up_to_date(db, 1, "0_2") != FERRY_OK)
		bail_out("snapshot failed: %s", ferry_errmsg(db));
	return db;
}

static int
count_queue(ferry *db)
{
	return (int) qint(db, "SELECT count(*) FROM ferry_queue");
}

static char *
last_id(ferry *db)
{
	return q1(db, "SELECT id FROM ferry_queue ORDER BY seq DESC LIMIT 1");
}

static int changes_seen;
static int statuses_seen;
static int last_state;

static void
on_change(void *ctx, const char *table, const char *key, int op, int origin)
{
	(void) ctx;
	(void) table;
	(void) key;
	(void) op;
	(void) origin;
	changes_seen++;
}

static void
on_status(void *ctx, const ferry_status *st)
{
	(void) ctx;
	statuses_seen++;
	last_state = st->state;
}

static void
test_open(void)
{
	ferry	   *db = NULL;
	char	   *err = NULL;
	char		id[64];

	unlink(path("open.db"));
	ok(ferry_open(path("open.db"), &db, &err) == FERRY_OK, "ferry_open creates a file");
	snprintf(id, sizeof(id), "%s", ferry_client_id(db));
	is_int(strlen(id), 36, "it gets a client id (a uuid)");
	is_q(db, "PRAGMA journal_mode", "wal", "the file is in WAL mode");
	is_q(db, "PRAGMA synchronous", "2", "with synchronous = FULL");
	is_q(db, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'ferry\\_%' ESCAPE '\\' AND type = 'table'", "6",
		 "six ferry_* tables");
	ferry_close(db);
	ok(ferry_open(path("open.db"), &db, &err) == FERRY_OK && strcmp(ferry_client_id(db), id) == 0,
	   "reopening keeps the client id");
	is_int(ferry_insert(db, "todos", "{\"id\":1}", NULL, &err), FERRY_NOTFOUND, "a write to a table not subscribed is refused");
	ok(err && strstr(err, "ferry_subscribe") != NULL, "and the message says what to do: %s", err);
	ferry_free(err);
	err = NULL;
	ferry_subscribe(db, "todos", NULL, NULL, NULL);
	is_int(ferry_insert(db, "todos", "{\"id\":1}", NULL, &err), FERRY_NOTFOUND,
		   "a write before the columns arrived is refused");
	ok(err && strstr(err, "sync once") != NULL, "telling the app to sync once: %s", err);
	ferry_free(err);
	ferry_close(db);
	err = NULL;
	is_int(ferry_open("/nonexistent-dir/x.db", &db, &err), FERRY_DB, "a bad path fails cleanly");
	ok(err != NULL, "with a message: %s", err ? err : "");
	ferry_free(err);
	ferry_close(db);
}

static void
test_snapshot(void)
{
	ferry	   *db = fresh("snap.db");
	ferry_status st;

	is_q(db, "SELECT count(*) FROM todos", "2", "the snapshot's rows are in the mirror table todos");
	is_q(db, "SELECT typeof(id) || typeof(done) || typeof(n) || typeof(title) FROM todos WHERE id = 1",
		 "integerintegerintegertext", "integers and booleans are stored typed, text as text");
	is_q(db, "SELECT done || ',' || tags || ',' || ferry_version FROM todos WHERE id = 2", "1,{a,b},3",
		 "boolean t is 1, arrays keep their text form, ferry_version comes from the change");
	is_q(db, "SELECT handle || ' ' || offset FROM ferry_shapes", "h1 0_2", "handle and offset are stored");
	ferry_get_status(db, &st);
	ok(st.last_sync_ms > 0 && st.shapes == 1 && st.shapes_up_to_date == 1, "UpToDate marks the shape synced");
	ok(st.state == FERRY_STATE_SYNCED, "status: synced (got %s)", ferry_state_name(st.state));
	{
		Chg			up[] = {{UPD, 4, "2|ws-a|two!|t|{a,b}|6|\\N"}, {DEL, 2, "1"}};

		srv_batch(db, 1, "100_1", up, 2);
	}
	is_q(db, "SELECT group_concat(id || ':' || title) FROM todos", "2:two!", "live update and delete applied");
	is_q(db, "SELECT offset FROM ferry_shapes", "100_1", "with their offset");
	ferry_close(db);
}

static void
test_local_writes(void)
{
	ferry	   *db = fresh("writes.db");
	char	   *id = NULL;
	char	   *err = NULL;
	int			state;

	changes_seen = 0;
	ferry_on_change(db, on_change, NULL);
	ok(ferry_insert(db, "todos", "{\"id\": 3, \"ws\": \"ws-a\", \"title\": \"three\", \"done\": true, "
					"\"tags\": [\"x\", \"y z\"], \"n\": 2}", &id, &err) == FERRY_OK, "insert");
	ok(id != NULL && strlen(id) == 36 && id[14] == '7', "its id is a UUIDv7 (%s)", id ? id : "");
	ferry_free(id);
	is_int(changes_seen, 1, "the change callback saw it");
	is_q(db, "SELECT title || done || tags || n FROM todos WHERE id = 3", "three1{\"x\",\"y z\"}2",
		 "the row is visible at once, JSON arrays as Postgres array text");
	is_q(db, "SELECT op || ' ' || changes FROM ferry_queue",
		 "insert {\"id\":{\"new\":\"3\"},\"ws\":{\"new\":\"ws-a\"},\"title\":{\"new\":\"three\"},\"done\":{\"new\":\"t\"},"
		 "\"tags\":{\"new\":\"{\\\"x\\\",\\\"y z\\\"}\"},\"n\":{\"new\":\"2\"}}", "the queue holds the values in text form");
	is_q(db, "SELECT clock LIKE '%-%-' || (SELECT value FROM ferry_meta WHERE key = 'client_id') FROM ferry_queue",
		 "1", "with a clock <ms>-<n>-<client id>");
	is_q(db, "SELECT coalesce(row, 'none') FROM ferry_base WHERE row_key = '[\"3\"]'", "none",
		 "an inserted row's merge base says the server has no such row");
	ok(ferry_record_state(db, "todos", "3", &state) == FERRY_OK && state == FERRY_RECORD_PENDING, "row 3 is pending");
	ok(ferry_record_state(db, "todos", "1", &state) == FERRY_OK && state == FERRY_RECORD_SYNCED, "row 1 is synced");
	is_int(ferry_record_state(db, "todos", "99", &state), FERRY_NOTFOUND, "row 99 does not exist");

	ok(ferry_update(db, "todos", "1", "{\"title\": \"uno\", \"done\": false, \"n\": 0}", &id, NULL) == FERRY_OK && id,
	   "update");
	ferry_free(id);
	is_q(db, "SELECT changes || ' ' || base_version FROM ferry_queue WHERE row_key = '[\"1\"]'",
		 "{\"title\":{\"old\":\"one\",\"new\":\"uno\"}} 1",
		 "only changed columns are recorded, with the value they were based on, and the base version");
	ok(ferry_update(db, "todos", "{\"id\": 1}", "{\"title\": \"uno\"}", &id, NULL) == FERRY_OK && id == NULL,
	   "an update that changes nothing queues nothing (and a key can be an object)");
	is_int(count_queue(db), 2, "still two mutations");
	ok(ferry_delete(db, "todos", "2", &id, NULL) == FERRY_OK, "delete");
	ferry_free(id);
	is_q(db, "SELECT count(*) FROM todos WHERE id = 2", "0", "the deleted row is gone locally");

	is_int(ferry_insert(db, "todos", "{\"title\": \"x\"}", NULL, &err), FERRY_INVALID, "insert without key: invalid");
	ok(err && strstr(err, "\"id\""), "naming the key column: %s", err);
	ferry_free(err);
	is_int(ferry_insert(db, "todos", "{\"id\": 4, \"nope\": 1}", NULL, &err), FERRY_INVALID, "unknown column: invalid");
	ok(err && strstr(err, "nope"), "naming it: %s", err);
	ferry_free(err);
	is_int(ferry_update(db, "todos", "1", "{\"ferry_version\": 9}", NULL, &err), FERRY_INVALID,
		   "ferry_* columns cannot be written");
	ferry_free(err);
	is_int(ferry_update(db, "todos", "1", "{\"id\": 9}", NULL, &err), FERRY_INVALID, "key columns cannot change");
	ferry_free(err);
	is_int(ferry_insert(db, "todos", "{\"id\": 1}", NULL, &err), FERRY_INVALID, "inserting a visible key: invalid");
	ferry_free(err);
	is_int(ferry_update(db, "todos", "42", "{\"title\": \"x\"}", NULL, &err), FERRY_NOTFOUND, "updating a missing row");
	ferry_free(err);
	is_int(ferry_update(db, "todos", "1", "{\"title\": ", NULL, &err), FERRY_INVALID, "bad JSON: invalid");
	ok(err && strstr(err, "not valid JSON"), "with the parser's message: %s", err);
	ferry_free(err);
	is_int(ferry_update(db, "todos", "1", "{\"title\": {\"a\": 1}}", NULL, &err), FERRY_INVALID,
		   "an object for a text column: invalid");
	ferry_free(err);
	is_int(count_queue(db), 3, "failed writes left nothing in the queue");
	is_q(db, "SELECT count(*) FROM todos", "2", "nor in the mirror");
	ferry_close(db);
}

static void
test_rebase(void)
{
	ferry	   *db = fresh("rebase.db");
	Chg			srv1[] = {{UPD, 2, "1|ws-a|one|f|{}|7|\\N"}};
	Chg			srv2[] = {{UPD, 3, "1|ws-a|ONE|f|{}|8|\\N"}};
	Chg			del[] = {{DEL, 4, "1"}};

	ferry_update(db, "todos", "1", "{\"title\": \"mine\"}", NULL, NULL);
	srv_batch(db, 1, "10_0", srv1, 1);
	is_q(db, "SELECT title || ',' || n || ',' || ferry_version FROM todos WHERE id = 1", "mine,7,2",
		 "a server change to another column shows under my pending change (rebase)");
	is_q(db, "SELECT json_extract(row, '$.n') || ',' || version FROM ferry_base", "7,2",
		 "the merge base holds the server's row");
	srv_batch(db, 1, "11_0", srv2, 1);
	is_q(db, "SELECT title || ',' || n FROM todos WHERE id = 1", "mine,8",
		 "a server change to my column keeps mine visible until the server answers");
	srv_batch(db, 1, "12_0", del, 1);
	is_q(db, "SELECT title FROM todos WHERE id = 1", "mine",
		 "a server delete keeps my pending edit visible (it will come back as a conflict)");
	is_q(db, "SELECT deleted FROM ferry_base", "1", "the merge base knows the row is gone");
	ferry_close(db);
}

static void
test_take_fifo(void)
{
	ferry	   *db = fresh("fifo.db");
	char	  **ids;
	char	  **jsons;
	char	   *a1,
			   *a2,
			   *b1;
	int			n;

	ferry_update(db, "todos", "1", "{\"title\": \"a1\"}", &a1, NULL);
	ferry_update(db, "todos", "1", "{\"title\": \"a2\"}", &a2, NULL);
	ferry_insert(db, "todos", "{\"id\": 5, \"ws\": \"ws-a\", \"title\": \"b1\"}", &b1, NULL);
	n = fy_queue_take(db, 100, true, &ids, &jsons);
	ok(n == 2 && strcmp(ids[0], a1) == 0 && strcmp(ids[1], b1) == 0,
	   "the first batch takes the head of each row: row 1's first change and row 5's insert");
	ok(n == 2 && strstr(jsons[0], "\"key\":{\"id\":\"1\"}") && strstr(jsons[0], "\"base_version\":1") &&
	   strstr(jsons[0], "\"op\":\"update\"") && strstr(jsons[0], "\"table\":\"public.todos\""),
	   "mutation JSON as apply_mutation takes it: %s", n ? jsons[0] : "");
	ok(n == 2 && strstr(jsons[1], "\"base_version\"") == NULL, "an insert has no base_version");
	fy_strings_free(ids, n);
	fy_strings_free(jsons, n);
	is_q(db, "SELECT group_concat(status) FROM (SELECT status FROM ferry_queue ORDER BY seq)", "inflight,pending,inflight", "they are in flight");
	is_int(fy_queue_take(db, 100, true, &ids, &jsons), 0, "row 1's second change waits for the first one's answer");
	fy_strings_free(ids, 0);
	fy_strings_free(jsons, 0);
	{
		Chg			echo[] = {{UPD, 2, "1|ws-a|a1|f|{}|0|\\N"}};
		Res			r[] = {{a1, FERRY__V1__MUTATION_STATUS__APPLIED, NULL, NULL, 0}};

		srv_batch(db, 1, "20_0", echo, 1);
		srv_results(db, r, 1);
	}
	is_q(db, "SELECT title FROM todos WHERE id = 1", "a2", "after the first is applied, my second change still shows");
	n = fy_queue_take(db, 100, true, &ids, &jsons);
	ok(n == 1 && strcmp(ids[0], a2) == 0 && strstr(jsons[0], "\"old\":\"a1\""), "then row 1's second change goes, "
	   "based on the first");
	fy_strings_free(ids, n);
	fy_strings_free(jsons, n);
	{
		Chg			echo[] = {{UPD, 3, "1|ws-a|a2|f|{}|0|\\N"}, {INS, 1, "5|ws-a|b1|f|{}|0|\\N"}};
		Res			r[] = {{a2, FERRY__V1__MUTATION_STATUS__APPLIED, NULL, NULL, 0},
		{b1, FERRY__V1__MUTATION_STATUS__DUPLICATE, NULL, "{\"status\":\"duplicate\",\"original\":{\"status\":\"applied\"}}", 0}};

		srv_batch(db, 1, "21_0", echo, 2);
		srv_results(db, r, 2);
	}
	is_int(count_queue(db), 0, "APPLIED and DUPLICATE (of an applied one) empty the queue");
	is_q(db, "SELECT count(*) FROM ferry_base", "0", "and the merge bases");
	is_q(db, "SELECT group_concat(id || ':' || title || ':' || ferry_version) FROM todos", "1:a2:3,2:two:3,5:b1:1",
		 "the rows are the server's");
	free(a1);
	free(a2);
	free(b1);
	ferry_close(db);
}

static void
test_rejected(void)
{
	ferry	   *db = fresh("rejected.db");
	char	  **ids;
	char	  **jsons;
	char	   *id;
	char	   *err = NULL;
	int			n;
	int			state;
	ferry_status st;

	ferry_update(db, "todos", "2", "{\"title\": \"bad\"}", &id, NULL);
	n = fy_queue_take(db, 10, true, &ids, &jsons);
	fy_strings_free(ids, n);
	fy_strings_free(jsons, n);
	is_int(ferry_discard(db, id, &err), FERRY_BUSY, "a mutation in flight cannot be discarded");
	ferry_free(err);
	{
		Res			r[] = {{id, FERRY__V1__MUTATION_STATUS__REJECTED, "forbidden", NULL, 0}};

		srv_results(db, r, 1);
	}
	is_q(db, "SELECT status || ' ' || error_code FROM ferry_queue", "failed forbidden", "REJECTED: failed, with the code");
	ok(ferry_record_state(db, "todos", "2", &state) == FERRY_OK && state == FERRY_RECORD_FAILED, "row 2 shows failed");
	is_q(db, "SELECT title FROM todos WHERE id = 2", "bad", "the failed change stays visible");
	ferry_get_status(db, &st);
	ok(st.state == FERRY_STATE_ERROR && st.failed == 1 && strcmp(st.last_error_mutation, id) == 0,
	   "status: error, 1 failed, the last error names the mutation: %s", st.last_error);
	is_int(fy_queue_take(db, 10, true, &ids, &jsons), 0, "a failed mutation is not sent");
	ok(ferry_retry(db, id, NULL) == FERRY_OK, "retry");
	is_q(db, "SELECT status FROM ferry_queue", "pending", "it is pending again");
	{
		char	   *nid = last_id(db);

		ok(strcmp(nid, id) != 0, "with a new id");
		free(id);
		id = nid;
	}
	is_int(ferry_retry(db, id, &err), FERRY_MISUSE, "retrying a pending mutation is a misuse");
	ferry_free(err);
	{
		Res			r[] = {{id, FERRY__V1__MUTATION_STATUS__DUPLICATE, NULL,
			"{\"status\":\"duplicate\",\"original\":{\"status\":\"rejected\",\"error\":{\"code\":\"forbidden\",\"message\":\"no\"}}}", 0}};

		n = fy_queue_take(db, 10, true, &ids, &jsons);
		fy_strings_free(ids, n);
		fy_strings_free(jsons, n);
		srv_results(db, r, 1);
	}
	is_q(db, "SELECT status || ' ' || error_code || ' ' || last_error FROM ferry_queue", "failed forbidden no",
		 "DUPLICATE of a rejected mutation is still a rejection");
	ok(ferry_discard(db, id, NULL) == FERRY_OK, "discard");
	is_q(db, "SELECT title FROM todos WHERE id = 2", "two", "discard restores the server's row");
	is_int(count_queue(db), 0, "and empties the queue");
	is_int(ferry_discard(db, id, &err), FERRY_NOTFOUND, "discarding it again: not found");
	ferry_free(err);
	free(id);
	ferry_close(db);
}

static void
test_retry(void)
{
	ferry	   *db = fresh("retry.db");
	char	  **ids;
	char	  **jsons;
	char	   *id;
	int			n;
	long long	now;

	ferry_config(db, FERRY_OPT_MAX_RETRIES, 2);
	ferry_update(db, "todos", "1", "{\"n\": 1}", &id, NULL);
	n = fy_queue_take(db, 10, true, &ids, &jsons);
	fy_strings_free(ids, n);
	fy_strings_free(jsons, n);
	{
		Res			r[] = {{id, FERRY__V1__MUTATION_STATUS__RETRY, "rate_limited", NULL, 5000}};

		srv_results(db, r, 1);
	}
	now = (long long) fy_now_ms();
	ok(qint(db, "SELECT next_attempt_at FROM ferry_queue") >= now + 4900, "RETRY honours retry_after_ms");
	is_q(db, "SELECT status || ' ' || retry_count FROM ferry_queue", "pending 0", "rate limits do not count as attempts");
	is_int(fy_queue_take(db, 10, true, &ids, &jsons), 0, "and it is not sent before then");
	sqlite3_exec(ferry_sqlite(db), "UPDATE ferry_queue SET next_attempt_at = 0", NULL, NULL, NULL);
	for (int i = 0; i < 2; i++)
	{
		Res			r[] = {{id, FERRY__V1__MUTATION_STATUS__RETRY, "retryable", NULL, 0}};

		n = fy_queue_take(db, 10, true, &ids, &jsons);
		fy_strings_free(ids, n);
		fy_strings_free(jsons, n);
		srv_results(db, r, 1);
		sqlite3_exec(ferry_sqlite(db), "UPDATE ferry_queue SET next_attempt_at = 0", NULL, NULL, NULL);
	}
	is_q(db, "SELECT status || ' ' || retry_count FROM ferry_queue", "failed 2",
		 "after FERRY_OPT_MAX_RETRIES retryable answers it is failed");
	ok(qint(db, "SELECT last_error LIKE 'gave up after 2 attempts%' FROM ferry_queue") == 1, "saying why");
	{
		/* an unknown status is handled like RETRY */
		Res			r[] = {{id, 77, NULL, NULL, 0}};

		ferry_retry(db, id, NULL);
		free(id);
		id = last_id(db);
		n = fy_queue_take(db, 10, true, &ids, &jsons);
		fy_strings_free(ids, n);
		fy_strings_free(jsons, n);
		r[0].id = id;
		srv_results(db, r, 1);
	}
	is_q(db, "SELECT status FROM ferry_queue", "pending", "an unknown result status keeps the mutation for later");
	{
		int64_t		b = fy_backoff_ms(db, 30, 0);

		ok(b <= 60000 && b >= 30000, "backoff is capped with jitter (%lld ms)", (long long) b);
	}
	free(id);
	ferry_close(db);
}

static void
conflict_setup(ferry *db, const char *id, const char *cols)
{
	char	  **ids;
	char	  **jsons;
	int			n = fy_queue_take(db, 10, true, &ids, &jsons);
	char		json[1024];
	Res			r[1];

	fy_strings_free(ids, n);
	fy_strings_free(jsons, n);
	snprintf(json, sizeof(json), "{\"status\":\"conflict\",\"version\":4,\"conflicts\":%s,\"row\":{\"id\":\"1\","
			 "\"ws\":\"ws-a\",\"title\":\"theirs\",\"done\":\"t\",\"tags\":\"{}\",\"n\":\"9\",\"ferry_version\":\"4\","
			 "\"ferry_deleted_at\":null}}", cols);
	r[0].id = id;
	r[0].status = FERRY__V1__MUTATION_STATUS__CONFLICT;
	r[0].error_code = NULL;
	r[0].result_json = json;
	r[0].retry_after_ms = 0;
	srv_results(db, r, 1);
}

static void
test_conflicts(void)
{
	ferry	   *db = fresh("conflict.db");
	Chg			theirs[] = {{UPD, 4, "1|ws-a|theirs|t|{}|9|\\N"}};
	char	   *id;
	char	   *json = NULL;
	int			state;
	ferry_status st;

	/* keep mine */
	ferry_update(db, "todos", "1", "{\"title\": \"mine\", \"n\": 3}", &id, NULL);
	srv_batch(db, 1, "30_0", theirs, 1);
	conflict_setup(db, id, "[\"title\"]");
	is_q(db, "SELECT status FROM ferry_queue", "conflict", "CONFLICT: the mutation waits in status conflict");
	ok(ferry_record_state(db, "todos", "1", &state) == FERRY_OK && state == FERRY_RECORD_CONFLICT, "row 1 shows conflict");
	is_q(db, "SELECT title || ',' || n FROM todos WHERE id = 1", "mine,3", "my values stay visible meanwhile");
	ferry_conflicts_json(db, &json);
	ok(json && strstr(json, "\"columns\":[\"title\"]") && strstr(json, "\"mine\":{\"title\":\"mine\",\"n\":\"3\"}") &&
	   strstr(json, "\"base\":{\"title\":\"one\",\"n\":\"0\"}") && strstr(json, "\"title\":\"theirs\""),
	   "the conflict, side by side: %s", json ? json : "");
	ferry_free(json);
	ferry_get_status(db, &st);
	ok(st.conflicts == 1 && st.state == FERRY_STATE_ERROR, "status counts it and asks for attention");
	ok(ferry_resolve(db, id, FERRY_KEEP_MINE, NULL, NULL) == FERRY_OK, "keep mine");
	is_q(db, "SELECT status || ' ' || changes || ' ' || base_version FROM ferry_queue",
		 "pending {\"title\":{\"old\":\"theirs\",\"new\":\"mine\"},\"n\":{\"old\":\"0\",\"new\":\"3\"}} 4",
		 "re-queued: the contested column based on the server's value, the others on their original base");
	{
		char	   *nid = q1(db, "SELECT id FROM ferry_queue");

		ok(strcmp(nid, id) != 0, "under a new id");
		free(nid);
	}
	is_q(db, "SELECT count(*) FROM ferry_conflicts", "0", "the conflict is gone");
	free(id);
	id = last_id(db);
	ferry_discard(db, id, NULL);
	free(id);

	/* use theirs */
	ferry_update(db, "todos", "1", "{\"title\": \"mine again\"}", &id, NULL);
	conflict_setup(db, id, "[\"title\"]");
	ok(ferry_resolve(db, id, FERRY_USE_THEIRS, NULL, NULL) == FERRY_OK, "use theirs");
	is_q(db, "SELECT title FROM todos WHERE id = 1", "theirs", "the row is the server's again");
	is_int(count_queue(db), 0, "and the queue is empty");
	free(id);

	/* merge */
	ferry_update(db, "todos", "1", "{\"title\": \"third\", \"done\": false}", &id, NULL);
	conflict_setup(db, id, "[\"title\", \"done\"]");
	is_int(ferry_resolve(db, id, FERRY_MERGE, "{\"nope\": 1}", NULL), FERRY_INVALID, "merge with a bad column: invalid");
	ok(ferry_resolve(db, id, FERRY_MERGE, "{\"title\": \"theirs + third\"}", NULL) == FERRY_OK, "merge");
	is_q(db, "SELECT changes FROM ferry_queue",
		 "{\"title\":{\"old\":\"theirs\",\"new\":\"theirs + third\"},\"done\":{\"old\":\"t\",\"new\":\"f\"}}",
		 "the merged value goes, based on the server's, with my other change");
	is_q(db, "SELECT title || done FROM todos WHERE id = 1", "theirs + third0", "and shows");
	free(id);
	id = last_id(db);
	ferry_discard(db, id, NULL);
	free(id);

	/* a deleted row: keep mine re-inserts it */
	{
		Chg			del[] = {{DEL, 5, "1"}};
		char		json2[512];
		Res			r[1];
		char	  **ids;
		char	  **jsons;
		int			n;

		ferry_update(db, "todos", "1", "{\"title\": \"still here\"}", &id, NULL);
		srv_batch(db, 1, "31_0", del, 1);
		n = fy_queue_take(db, 10, true, &ids, &jsons);
		fy_strings_free(ids, n);
		fy_strings_free(jsons, n);
		snprintf(json2, sizeof(json2), "{\"status\":\"conflict\",\"conflicts\":[\"ferry_deleted_at\"],\"row\":{\"id\":\"1\","
				 "\"title\":\"theirs\",\"ferry_version\":\"5\",\"ferry_deleted_at\":\"2024-01-01 00:00:00+00\"}}");
		r[0].id = id;
		r[0].status = FERRY__V1__MUTATION_STATUS__CONFLICT;
		r[0].error_code = NULL;
		r[0].result_json = json2;
		r[0].retry_after_ms = 0;
		srv_results(db, r, 1);
		ok(ferry_resolve(db, id, FERRY_KEEP_MINE, NULL, NULL) == FERRY_OK, "keep mine on a row deleted on the server");
		is_q(db, "SELECT op || ' ' || json_extract(changes, '$.title.new') || ' ' || json_extract(changes, '$.ws.new') "
			 "FROM ferry_queue", "insert still here ws-a", "becomes an insert of my whole row (resurrecting it)");
		free(id);
	}
	ferry_close(db);
}

static void
test_refetch(void)
{
	ferry	   *db = fresh("refetch.db");
	Chg			snap[] = {{INS, 9, "1|ws-a|one again|f|{}|0|\\N"}};

	ferry_insert(db, "todos", "{\"id\": 7, \"ws\": \"ws-a\", \"title\": \"pending insert\"}", NULL, NULL);
	ferry_update(db, "todos", "2", "{\"title\": \"pending edit\"}", NULL, NULL);
	srv_must_refetch(db, 1);
	is_q(db, "SELECT group_concat(id) FROM todos", "2,7", "MustRefetch drops the rows but keeps pending changes visible");
	is_q(db, "SELECT handle || '|' || offset || '|' || refetch FROM ferry_shapes", "|-1|1", "and starts over from -1");
	is_int(count_queue(db), 2, "the queue is kept");
	srv_subscribed(db, 1, "public.todos", "h2", 0, COLS);
	srv_batch(db, 1, "0_1", snap, 1);
	srv_up_to_date(db, 1, "0_1");
	is_q(db, "SELECT group_concat(id || ':' || title) FROM todos", "1:one again,2:pending edit,7:pending insert",
		 "after the new snapshot: the server's rows plus my pending ones");
	is_q(db, "SELECT deleted FROM ferry_base WHERE row_key = '[\"2\"]'", "1",
		 "row 2, not in the new snapshot, is known to be gone from the server");
	is_q(db, "SELECT handle || refetch FROM ferry_shapes", "h20", "the refetch is over");
	ferry_close(db);
}

/* A transaction split over several batches shows whole or not at all, across a restart. */
static void
test_split_transaction(void)
{
	ferry	   *db = fresh("split.db");
	char	   *err = NULL;
	Chg			part1[] = {{INS, 1, "3|ws-a|three|f|{}|0|\\N"}, {UPD, 2, "1|ws-a|one, edited|f|{}|0|\\N"}};
	Chg			part2[] = {{DEL, 4, "2"}};
	Chg			part3[] = {{INS, 1, "4|ws-a|four|f|{}|0|\\N"}};

	is_int(srv_batch_part(db, 1, "200_2", part1, 2, true), FERRY_OK, "the first part of a split transaction is taken");
	is_q(db, "SELECT group_concat(id || ':' || title) FROM todos", "1:one,2:two",
		 "its changes are not shown before the transaction is whole");
	is_q(db, "SELECT count(*) || ' ' || (SELECT offset FROM ferry_shapes) FROM ferry_partial", "2 200_2",
		 "they are kept, with the part's offset");
	ferry_close(db);
	db = NULL;
	if (ferry_open(path("split.db"), &db, &err) != FERRY_OK)
		bail_out("cannot reopen: %s", err);
	srv_welcome(db, 1, 1, "u1");
	srv_subscribed(db, 1, "public.todos", "h1", 1, COLS);
	is_q(db, "SELECT count(*) FROM ferry_partial", "2", "a restart keeps the parts (the stream resumes inside the transaction)");
	is_int(srv_batch_part(db, 1, "200_3", part2, 1, true), FERRY_OK, "a second part");
	is_q(db, "SELECT group_concat(id) FROM todos", "1,2", "still nothing shown");
	is_int(srv_batch(db, 1, "200_4", part3, 1), FERRY_OK, "the last part");
	is_q(db, "SELECT group_concat(id || ':' || title) FROM todos", "1:one, edited,3:three,4:four",
		 "the whole transaction is applied at once, in order");
	is_q(db, "SELECT count(*) || ' ' || (SELECT offset FROM ferry_shapes) FROM ferry_partial", "0 200_4",
		 "the parts are gone and the offset is the last part's");
	srv_batch_part(db, 1, "300_1", part1, 1, true);
	srv_must_refetch(db, 1);
	is_q(db, "SELECT count(*) FROM ferry_partial", "0", "a refetch forgets the parts of an unfinished transaction");
	ferry_close(db);
}

static void
test_schema(void)
{
	ferry	   *db = fresh("schema.db");
	char	   *json = NULL;

	ferry_update(db, "todos", "1", "{\"n\": 4}", NULL, NULL);
	ferry_update(db, "todos", "2", "{\"title\": \"t2\"}", NULL, NULL);
	db->sync.conn = FY_CONN_OFFLINE;
	srv_welcome(db, 2, 1, "u1");
	is_q(db, "SELECT count(*) FROM todos", "2", "a newer schema: the rows go, pending ones stay visible");
	is_q(db, "SELECT value FROM ferry_meta WHERE key = 'schema_version'", "2", "the cache is for schema 2 now");
	is_q(db, "SELECT offset FROM ferry_shapes", "-1", "and refetches");
	srv_subscribed(db, 1, "public.todos", "h3", 0, "id:integer:k,ws:text,title:text,done:boolean,tags:text[],note:text");
	is_q(db, "SELECT group_concat(name) FROM pragma_table_info('todos')", "id,ws,title,done,tags,note,ferry_version",
		 "the mirror has the new columns");
	is_q(db, "SELECT group_concat(status) FROM (SELECT status FROM ferry_queue ORDER BY seq)", "failed,pending",
		 "the change to a dropped column failed, the other is kept");
	ferry_pending_json(db, &json);
	ok(json && strstr(json, "column \\\"n\\\" no longer exists in public.todos"), "with a clear error: %s", json);
	ferry_free(json);
	{
		Chg			snap[] = {{INS, 2, "2|ws-a|two|t|{}|hello"}};

		srv_batch(db, 1, "0_1", snap, 1);
		srv_up_to_date(db, 1, "0_1");
	}
	is_q(db, "SELECT title || note FROM todos WHERE id = 2", "t2hello", "pending changes are laid on the new rows");
	{
		ferry_status st;

		db->sync.conn = FY_CONN_OFFLINE;
		srv_welcome(db, 2, 5, "u1");
		ferry_get_status(db, &st);
		is_q(db, "SELECT offset FROM ferry_shapes", "-1", "a cache below the server's minimum is dropped too");
	}
	db->sync.conn = FY_CONN_OFFLINE;
	srv_welcome(db, 5, 1, "someone-else");
	ok(db->sync.fatal == FERRY_AUTH && strstr(db->sync.last_error, "log out") != NULL,
	   "a token of another user is refused: %s", db->sync.last_error);
	ferry_close(db);
}

static void
test_clock(void)
{
	ferry	   *db = fresh("clock.db");
	long long	ahead = (long long) fy_now_ms() + 60000;
	char		row[256];
	Chg			c[1] = {{UPD, 2, row}};

	snprintf(row, sizeof(row), "1|ws-a|one|f|{}|0|{\"title\": \"%lld-3-server\"}", ahead);
	srv_batch(db, 1, "40_0", c, 1);
	ferry_update(db, "todos", "2", "{\"n\": 1}", NULL, NULL);
	{
		char	   *clock = q1(db, "SELECT clock FROM ferry_queue");
		long long	ms = atoll(clock);
		long long	cnt = atoll(strchr(clock, '-') + 1);

		ok(ms == ahead && cnt == 4, "the clock moved past a server clock it saw (%s)", clock);
		free(clock);
	}
	ferry_close(db);
	{
		ferry	   *again = NULL;

		ferry_open(path("clock.db"), &again, NULL);
		ferry_update(again, "todos", "2", "{\"n\": 2}", NULL, NULL);
		ok(qint(again, "SELECT CAST(clock AS INTEGER) FROM ferry_queue ORDER BY seq DESC") >= ahead,
		   "and stays there after reopening");
		ferry_close(again);
	}
	{
		/* a local write's clock is in its queue entry; ferry_meta may be behind it (killed) */
		ferry	   *again = NULL;
		char	   *before,
				   *after;

		ferry_open(path("clock.db"), &again, NULL);
		ferry_update(again, "todos", "2", "{\"n\": 3}", NULL, NULL);
		before = q1(again, "SELECT clock FROM ferry_queue ORDER BY seq DESC LIMIT 1");
		ferry_close(again);		/* saves the clock */
		again = NULL;
		ferry_open(path("clock.db"), &again, NULL);
		sqlite3_exec(ferry_sqlite(again), "UPDATE ferry_meta SET value = '1-0-x' WHERE key = 'hlc'", NULL, NULL, NULL);
		ferry_close(again);
		again = NULL;
		ferry_open(path("clock.db"), &again, NULL);
		ferry_update(again, "todos", "2", "{\"n\": 4}", NULL, NULL);
		after = q1(again, "SELECT clock FROM ferry_queue ORDER BY seq DESC LIMIT 1");
		ok(atoll(after) > atoll(before) || (atoll(after) == atoll(before) &&
											atoll(strchr(after, '-') + 1) > atoll(strchr(before, '-') + 1)),
		   "with ferry_meta's clock lost, a reopened file still issues a later clock than its last queued "
		   "mutation's (%s after %s)", after, before);
		free(before);
		free(after);
		ferry_close(again);
	}
}

static void
test_logout_callbacks(void)
{
	ferry	   *db = fresh("logout.db");
	char		id[64];
	char	   *err = NULL;
	char	   *json = NULL;

	statuses_seen = 0;
	ferry_on_status(db, on_status, NULL);
	ferry_update(db, "todos", "1", "{\"n\": 1}", NULL, NULL);
	ok(statuses_seen > 0 && last_state == FERRY_STATE_SYNCING, "the status callback saw syncing 1");
	ok(ferry_query_json(db, "SELECT id, title, done FROM todos ORDER BY id", &json, NULL) == FERRY_OK &&
	   strcmp(json, "[{\"id\":1,\"title\":\"one\",\"done\":0},{\"id\":2,\"title\":\"two\",\"done\":1}]") == 0,
	   "query_json: %s", json ? json : "");
	ferry_free(json);
	is_int(ferry_query_json(db, "DELETE FROM todos", &json, &err), FERRY_MISUSE, "query_json refuses writes");
	ferry_free(err);
	snprintf(id, sizeof(id), "%s", ferry_client_id(db));
	is_int(ferry_logout(db, 0, &err), FERRY_PENDING, "logout is refused while changes are pending");
	ok(err && strstr(err, "1 change is not synced"), "saying so: %s", err);
	ferry_free(err);
	ok(ferry_logout(db, FERRY_FORCE, NULL) == FERRY_OK, "logout --force");
	ok(strcmp(ferry_client_id(db), id) != 0, "the file starts afresh with a new client id");
	is_q(db, "SELECT count(*) FROM sqlite_master WHERE name = 'todos'", "0", "without the user's data");
	is_int(count_queue(db), 0, "or queue");
	ok(ferry_user_id(db)[0] == '\0', "or user");
	ferry_close(db);
}

static void
test_values(void)
{
	FyColumn	c = {.name = "x", .type = "numeric"};
	json_t	   *v;
	char	   *t;
	char		err[256];

	fy_column_classify(&c);
	t = fy_real_text(0.1);
	is_str(t, "0.1", "reals print in their shortest exact form");
	free(t);
	t = fy_real_text(1e300);
	is_str(t, "1e+300", "large ones too");
	free(t);
	c.type = "text[]";
	fy_column_classify(&c);
	v = json_loads("[\"a\", \"b \\\"c\\\"\", null, 1, [\"x\"]]", 0, NULL);
	fy_json_to_text(v, &c, &t, err, sizeof(err));
	is_str(t, "{\"a\",\"b \\\"c\\\"\",NULL,\"1\",{\"x\"}}", "a JSON array becomes a Postgres array literal");
	free(t);
	json_decref(v);
	c.type = "jsonb";
	fy_column_classify(&c);
	v = json_loads("{\"a\": [1, 2]}", 0, NULL);
	fy_json_to_text(v, &c, &t, err, sizeof(err));
	is_str(t, "{\"a\":[1,2]}", "a JSON object for jsonb is its JSON text");
	free(t);
	json_decref(v);
	c.type = "boolean";
	c.oid = 16;
	fy_column_classify(&c);
	v = json_true();
	fy_json_to_text(v, &c, &t, err, sizeof(err));
	is_str(t, "t", "true for a boolean is t");
	free(t);
}

/* Another process (here: handle) changing a shape wins over a stale syncing handle. */
static void
test_two_handles(void)
{
	ferry	   *db = fresh("two.db");
	ferry	   *other = NULL;
	Chg			c[] = {{UPD, 5, "2|ws-a|late|t|{a,b}|5|\\N"}};

	ok(ferry_open(path("two.db"), &other, NULL) == FERRY_OK, "a second handle on the file");
	ok(ferry_subscribe(other, "todos", "id = 1", NULL, NULL) == FERRY_OK, "changes the shape's WHERE");
	is_int(srv_batch(db, 1, "50_0", c, 1), FERRY_BUSY,
		   "the first handle, still on the old shape, writes neither rows nor offset");
	is_q(db, "SELECT offset || ' ' || where_sql || ' ' || (SELECT count(*) FROM todos) FROM ferry_shapes",
		 "-1 id = 1 0", "the other handle's reset stands");
	ferry_close(other);
	ferry_close(db);
}

/* A process killed (SIGKILL) in the middle of writing leaves every write whole. */
static void
test_kill(void)
{
	ferry	   *db = fresh("kill.db");
	pid_t		pid;
	int			status;
	int			n;

	ferry_close(db);
	pid = fork();
	if (pid == 0)
	{
		ferry	   *c = NULL;
		char		vals[128];

		ferry_open(path("kill.db"), &c, NULL);
		ferry_config(c, FERRY_OPT_SYNCHRONOUS, 1);
		for (int i = 100;; i++)
		{
			snprintf(vals, sizeof(vals), "{\"id\": %d, \"ws\": \"ws-a\", \"title\": \"row %d\"}", i, i);
			ferry_insert(c, "todos", vals, NULL, NULL);
		}
	}
	usleep(300000);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	ok(WIFSIGNALED(status), "a writer was killed mid-write");
	ferry_open(path("kill.db"), &db, NULL);
	is_q(db, "PRAGMA integrity_check", "ok", "the file is intact");
	n = count_queue(db);
	ok(n > 0, "it had queued %d inserts", n);
	is_int(qint(db, "SELECT count(*) FROM todos WHERE id >= 100"), n, "every queued insert has its row, and vice versa");
	is_int(qint(db, "SELECT count(*) FROM ferry_base"), n, "and its merge base");
	is_int(qint(db, "SELECT count(*) FROM todos t WHERE id >= 100 AND NOT EXISTS (SELECT 1 FROM ferry_queue q "
				"WHERE q.row_key = json_array(CAST(t.id AS TEXT)))"), 0, "no row without its mutation");
	ferry_close(db);
}

int
main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ferry-unit-XXXXXX");
	if (mkdtemp(dir) == NULL)
		bail_out("mkdtemp failed");
	test_open();
	test_snapshot();
	test_local_writes();
	test_rebase();
	test_take_fifo();
	test_rejected();
	test_retry();
	test_conflicts();
	test_refetch();
	test_split_transaction();
	test_schema();
	test_clock();
	test_logout_callbacks();
	test_values();
	test_two_handles();
	test_kill();
	if (getenv("FERRY_TEST_KEEP") == NULL)
	{
		char		cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			diag("could not remove %s", dir);
	}
	return done_testing();
}
