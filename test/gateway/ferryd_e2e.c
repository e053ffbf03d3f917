/*
 * test/gateway/ferryd_e2e.c -- ferryd end to end: real Postgres, real ferryd, clients over real sockets.
 *
 * Snapshot then live changes; tenant isolation against hostile WHERE clauses;
 * move-in and move-out; tombstones; read rules per user; bad tokens and bad
 * frames; TRUNCATE; a SIGKILL mid-stream, restart, and resume with nothing
 * lost or doubled.
 */
#include "ferryd_harness.h"

static const char *A[] = {"ws-a"};
static const char *B[] = {"ws-b"};

static int
has_rows(Client *c, void *arg)
{
	return c->nrows == *(int *) arg;
}

static int
row_has(Client *c, const char *key, const char *needle)
{
	int			i = find_row(c, key);

	return i >= 0 && strstr(c->rows[i].values, needle) != NULL;
}

static int
count_tenant(Client *c, const char *tenant)
{
	int			n = 0;

	for (int i = 0; i < c->nrows; i++)
		if (strstr(c->rows[i].values, tenant) != NULL)
			n++;
	return n;
}

static int
wait_rows(Client *c, int n)
{
	return client_wait(c, has_rows, &n, 5000);
}

/* Reads for a while; returns how many ChangeBatches arrived. */
static int
drain(Client *c, int ms)
{
	int			before = c->batches;
	int64_t		deadline = ws_now_ms() + ms;

	while (ws_now_ms() < deadline)
		client_step(c, 50);
	return c->batches - before;
}

int
main(void)
{
	PGconn	   *db = db_connect();
	Ferryd	   *d;
	Client	   *a,
			   *a2,
			   *b,
			   *u1,
			   *u2;
	char		body[16384];
	char		resume_handle[64];
	char		resume_offset[64];
	int			code;

	db_exec(db, "DROP TABLE IF EXISTS e2e_todos");
	db_exec(db, "CREATE TABLE e2e_todos (id int PRIMARY KEY, ws text NOT NULL, title text, owner text, "
			"done boolean NOT NULL DEFAULT false)");
	db_exec(db, "SELECT ferry.enable_sync('e2e_todos', 'ws')");
	db_exec(db, "INSERT INTO e2e_todos (id, ws, title, owner) VALUES "
			"(1, 'ws-a', 'a one', 'u1'), (2, 'ws-a', 'a two', 'u2'), (3, 'ws-a', 'a three', 'u1'), "
			"(101, 'ws-b', 'b one', 'u9'), (102, 'ws-b', 'b two', 'u9')");

	d = ferryd_start(NULL);
	is_int(http_get_status(d->port, "/healthz", body, sizeof(body)), 200, "/healthz answers 200 while replicating");
	ok(http_get_status(d->port, "/metrics", body, sizeof(body)) == 200 && strstr(body, "ferry_replicating 1") != NULL,
	   "/metrics shows the replication stream up");
	is_int(http_get_status(d->port, "/nope", NULL, 0), 404, "unknown paths are 404");

	/* ---- snapshot, then live ---- */
	a = client_open(d, "u1", A, 1, NULL);
	client_subscribe(a, 1, "e2e_todos", NULL, NULL, NULL);
	ok(client_sync(a, 10000), "tenant A's subscription gets its snapshot and an UpToDate");
	is_int(a->nrows, 3, "tenant A sees its 3 rows");
	is_int(count_tenant(a, "ws-b"), 0, "and no row of tenant B");
	ok(a->handle[0] != '\0' && strcmp(a->offset, "0_2") == 0, "offset after the snapshot is 0_2 (got %s)", a->offset);

	b = client_open(d, "u9", B, 1, NULL);
	client_subscribe(b, 7, "public.e2e_todos", NULL, NULL, NULL);
	ok(client_sync(b, 10000) && b->nrows == 2 && count_tenant(b, "ws-a") == 0, "tenant B sees its 2 rows only");

	db_exec(db, "INSERT INTO e2e_todos (id, ws, title, owner) VALUES (4, 'ws-a', 'a four', 'u1')");
	db_exec(db, "INSERT INTO e2e_todos (id, ws, title, owner) VALUES (103, 'ws-b', 'b three', 'u9')");
	ok(wait_rows(a, 4) && find_row(a, "4") >= 0, "a live insert reaches tenant A");
	ok(wait_rows(b, 3) && find_row(b, "103") >= 0, "and B's insert reaches B");
	db_exec(db, "UPDATE e2e_todos SET title = 'a one, edited' WHERE id = 1");
	drain(a, 500);
	ok(row_has(a, "1", "a one, edited"), "a live update arrives");
	is_int(count_tenant(a, "ws-b"), 0, "A still holds nothing of B after B's writes");
	db_exec(db, "DELETE FROM e2e_todos WHERE id = 2");
	ok(wait_rows(a, 3) && find_row(a, "2") < 0, "a delete (a tombstone in Postgres) removes the row");
	{
		int			i = find_row(a, "1");

		ok(i >= 0 && a->rows[i].version == 2, "rows carry ferry_version (row 1 is at version 2)");
	}

	/* ---- move-in and move-out ---- */
	a2 = client_open(d, "u1", A, 1, NULL);
	client_subscribe(a2, 2, "e2e_todos", "done = false AND title LIKE 'a %'", NULL, NULL);
	ok(client_sync(a2, 10000) && a2->nrows == 3, "a WHERE shape starts with the 3 matching rows");
	db_exec(db, "UPDATE e2e_todos SET done = true WHERE id = 3");
	ok(wait_rows(a2, 2) && find_row(a2, "3") < 0, "an update leaving the WHERE is a delete (move-out)");
	db_exec(db, "UPDATE e2e_todos SET done = false WHERE id = 3");
	ok(wait_rows(a2, 3) && find_row(a2, "3") >= 0, "an update entering the WHERE is an insert (move-in)");
	ok(a2->deletes >= 1 && a2->inserts >= 4, "as DELETE and INSERT changes");

	/* ---- escaping the tenant ---- */
	{
		static const char *escapes[] = {
			"true OR true", "ws <> 'ws-a'", "ws = 'ws-b'", "ws = 'ws-b' OR ws = 'ws-a'",
			"id > 100 /* comment */", "ws::text = 'ws-b'", "NOT (ws = 'ws-a')",
		};

		for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]); i++)
		{
			Client	   *e = client_open(d, "u1", A, 1, NULL);

			client_subscribe(e, 1, "e2e_todos", escapes[i], NULL, NULL);
			client_sync(e, 5000);
			if (e->last_error != 0)
				ok(1, "\"%s\": refused (%s)", escapes[i], e->last_error_msg);
			else
				is_int(count_tenant(e, "ws-b"), 0, "\"%s\": no row of tenant B", escapes[i]);
			client_close(e);
		}
	}
	{
		static const char *bad[] = {
			"ferry.claim('sub') = 'u9'", "(SELECT true)", "true; DROP TABLE e2e_todos", "nope = 1", "random() > 0",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			Client	   *e = client_open(d, "u1", A, 1, NULL);

			client_subscribe(e, 1, "e2e_todos", bad[i], NULL, NULL);
			client_sync(e, 5000);
			ok(e->last_error == FERRY__V1__ERROR_CODE__BAD_WHERE && e->nrows == 0,
			   "\"%s\" is refused with BAD_WHERE (%s)", bad[i], e->last_error_msg);
			client_close(e);
		}
	}
	{
		Client	   *e = client_open(d, "u1", A, 1, NULL);

		client_subscribe(e, 1, "no_such_table", NULL, NULL, NULL);
		client_sync(e, 5000);
		is_int(e->last_error, FERRY__V1__ERROR_CODE__UNKNOWN_TABLE, "an unknown table is UNKNOWN_TABLE");
		client_close(e);
	}

	/* ---- tokens and frames ---- */
	{
		char	   *tok;
		Client	   *e;
		time_t		now = time(NULL);
		char		err[256];
		const char *bad_secret = "another-secret-another-secret-another-secret";

		if (auth_sign_hs256((const uint8_t *) bad_secret, strlen(bad_secret), "u1", A, 1, NULL, now,
							now + 600, &tok, err, sizeof(err)) != AUTH_OK)
			bail_out("%s", err);
		e = client_connect(d, tok, 0, &code);
		ok(e == NULL && code == FERRY__V1__ERROR_CODE__UNAUTHENTICATED, "a token with a bad signature is refused");
		free(tok);
		if (auth_sign_hs256((const uint8_t *) TEST_SECRET, strlen(TEST_SECRET), "u1", A, 1, NULL, now - 7200,
							now - 3600, &tok, err, sizeof(err)) != AUTH_OK)
			bail_out("%s", err);
		e = client_connect(d, tok, 0, &code);
		ok(e == NULL && code == FERRY__V1__ERROR_CODE__TOKEN_EXPIRED, "an expired token is TOKEN_EXPIRED");
		free(tok);
		e = client_connect(d, "not.a.jwt", 0, &code);
		ok(e == NULL && code == FERRY__V1__ERROR_CODE__UNAUTHENTICATED, "garbage as a token is refused");
	}
	{
		Ws		   *w = ws_connect("127.0.0.1", d->port, "/v1/ws", "ferry.v1");
		uint8_t		junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};

		ws_send(w, junk, sizeof(junk));
		ok(ws_recv(w, 3000) > 0, "garbage before Hello gets an error frame");
		ok(ws_recv(w, 3000) < 0 && w->closed, "and the connection is closed");
		ws_close(w);
	}
	{
		uint8_t		junk[] = {0x0a, 0x80};	/* truncated field */
		uint8_t    *big = calloc(1, 2 << 20);

		a->last_error = 0;
		ws_send(a->ws, junk, sizeof(junk));
		{
			int64_t		deadline = ws_now_ms() + 3000;

			while (a->last_error == 0 && ws_now_ms() < deadline)
				client_step(a, 100);
		}
		ok(a->last_error == FERRY__V1__ERROR_CODE__BAD_FRAME && !a->ws->closed,
		   "a malformed frame after Hello gets a non-fatal BAD_FRAME error");
		db_exec(db, "INSERT INTO e2e_todos (id, ws, title, owner) VALUES (5, 'ws-a', 'a five', 'u1')");
		ok(wait_rows(a, 4) && find_row(a, "5") >= 0, "and the client keeps streaming");
		a2->last_error = 0;
		ws_send(a2->ws, big, 2 << 20);
		{
			int64_t		deadline = ws_now_ms() + 3000;

			while (a2->last_error == 0 && !a2->ws->closed && ws_now_ms() < deadline)
				client_step(a2, 100);
		}
		ok(a2->last_error == FERRY__V1__ERROR_CODE__FRAME_TOO_LARGE, "an oversized frame is FRAME_TOO_LARGE");
		{
			int64_t		deadline = ws_now_ms() + 3000;

			while (!a2->ws->closed && ws_now_ms() < deadline)
				client_step(a2, 100);
		}
		ok(a2->ws->closed, "and closes that connection");
		db_exec(db, "INSERT INTO e2e_todos (id, ws, title, owner) VALUES (104, 'ws-b', 'b four', 'u9')");
		ok(wait_rows(b, 4), "other clients keep streaming meanwhile");
		free(big);
	}
	{
		Ws		   *w = ws_connect("127.0.0.1", d->port, "/elsewhere", "ferry.v1");

		ok(w == NULL, "WebSocket upgrades elsewhere than /v1/ws are refused");
		ws_close(w);
	}

	/* ---- rules: two users of one tenant ---- */
	db_exec(db, "SELECT ferry.add_rule('e2e_todos', 'own', $$owner = ferry.claim('sub')$$)");
	{
		int64_t		deadline = ws_now_ms() + 5000;

		while (!a->must_refetch && ws_now_ms() < deadline)
			client_step(a, 100);
		ok(a->must_refetch, "a rule change sends must-refetch to existing subscribers");
	}
	u1 = client_open(d, "u1", A, 1, NULL);
	u2 = client_open(d, "u2", A, 1, NULL);
	client_subscribe(u1, 1, "e2e_todos", NULL, NULL, NULL);
	client_subscribe(u2, 1, "e2e_todos", NULL, NULL, NULL);
	ok(client_sync(u1, 10000) && client_sync(u2, 10000), "both users of tenant A subscribe");
	ok(u1->nrows == 4 && find_row(u1, "2") < 0, "u1 sees its own 4 rows (got %d)", u1->nrows);
	is_int(u2->nrows, 0, "u2 owns nothing live (its row 2 was deleted)");
	db_exec(db, "INSERT INTO e2e_todos (id, ws, title, owner) VALUES (6, 'ws-a', 'for u2', 'u2')");
	ok(wait_rows(u2, 1) && find_row(u2, "6") >= 0, "u2 gets its new row");
	drain(u1, 300);
	ok(find_row(u1, "6") < 0, "u1 does not");
	db_exec(db, "UPDATE e2e_todos SET owner = 'u1' WHERE id = 6");
	ok(wait_rows(u2, 0), "reassigning the row moves it out of u2's shape");
	ok(wait_rows(u1, 5) && find_row(u1, "6") >= 0, "and into u1's");

	/* ---- crash and resume ---- */
	snprintf(resume_handle, sizeof(resume_handle), "%s", u1->handle);
	drain(u1, 300);
	snprintf(resume_offset, sizeof(resume_offset), "%s", u1->offset);
	is_int(ferryd_stop(d, SIGKILL), SIGKILL, "ferryd killed with SIGKILL");
	client_close(u1);
	db_exec(db, "INSERT INTO e2e_todos (id, ws, title, owner) VALUES (7, 'ws-a', 'while down', 'u1')");
	db_exec(db, "UPDATE e2e_todos SET title = 'edited while down' WHERE id = 1");
	ferryd_start_in(d, NULL);
	u1 = client_open(d, "u1", A, 1, NULL);
	client_subscribe(u1, 1, "e2e_todos", NULL, resume_handle, resume_offset);
	ok(client_step(u1, 5000) == FERRY__V1__SERVER_MESSAGE__MSG_SUBSCRIBED && u1->resumed &&
	   strcmp(u1->handle, resume_handle) == 0, "after the restart the subscription resumes its handle");
	ok(client_sync(u1, 10000), "and catches up");
	/* UpToDate means caught up with what ferryd has processed; the restarted ferryd may
	 * still be reading the two transactions from the slot. */
	wait_rows(u1, 2);
	drain(u1, 300);
	ok(u1->inserts == 1 && u1->updates == 1 && find_row(u1, "7") >= 0 && row_has(u1, "1", "edited while down"),
	   "receiving exactly the 2 changes made while ferryd was down (inserts %d, updates %d)", u1->inserts,
	   u1->updates);

	/* ---- TRUNCATE ---- */
	db_exec(db, "TRUNCATE e2e_todos");
	{
		int64_t		deadline = ws_now_ms() + 5000;

		while (!u1->must_refetch && ws_now_ms() < deadline)
			client_step(u1, 100);
		ok(u1->must_refetch, "TRUNCATE sends must-refetch");
	}

	ok(http_get_status(d->port, "/metrics", body, sizeof(body)) == 200 &&
	   strstr(body, "ferry_auth_failures_total") != NULL && strstr(body, "ferry_bad_frames_total") != NULL,
	   "/metrics counts auth failures and bad frames");
	is_int(WEXITSTATUS(ferryd_stop(d, SIGTERM)), 0, "SIGTERM stops ferryd cleanly (exit 0)");

	client_close(a);
	client_close(a2);
	client_close(b);
	client_close(u1);
	client_close(u2);
	ferryd_cleanup(d, db);
	db_exec(db, "DROP TABLE e2e_todos");
	PQfinish(db);
	return done_testing();
}
