/*
 * test/qa/s05_tenant_wire.c -- scenario 5: user B never holds a row of user A's workspace.
 *
 * User A works in ws-a, user B in ws-b. B's device syncs continuously (`ferry sync
 * --watch`, behind a netproxy that resets its connection now and then) while A's
 * workspace churns: the app inserts, edits and deletes ws-a rows in SQL and A's device
 * writes. B's file is read again and again meanwhile: it never holds a ws-a row, and at
 * the end it holds exactly the server's ws-b rows. B's device writing into ws-a is
 * refused and kept visible as failed.
 *
 * Then at the protocol level, with hand-made frames on B's token (the gateway's test
 * client, test/gateway/ferryd_harness.h): subscriptions whose WHERE asks for ws-a, that
 * OR a tautology, or that name A's shape handle and offset; a live subscription while
 * ws-a changes; pushes that insert into, update and delete from ws-a; tokens signed with
 * another key or expired. And over HTTP with B's bearer token: GET /v1/shape (with and
 * without a WHERE that asks for ws-a), GET /v1/sync (from the start and since a cursor
 * taken before the churn), POST /v1/mutations into ws-a. None yields a ws-a row or
 * changes one.
 */
#define _GNU_SOURCE				/* asprintf */
#define make_token gw_test_make_token	/* the two harnesses both have one */
#include "gateway/ferryd_harness.h"
#undef make_token
#include "qa.h"

#define T "qa_s05"

/* The number of rows of a hand-made client's replica that belong to ws-a. */
static int
foreign_rows(Client *c)
{
	int			n = 0;

	for (int i = 0; i < c->nrows; i++)
		if (strstr(c->rows[i].values, "ws-a") != NULL)
			n++;
	return n;
}

/* A token for sub in tenants (NULL-terminated), signed with secret, valid from now+from to now+to. */
static char *
wire_token(const char *secret, const char *sub, const char *tenant, long from, long to)
{
	char	   *tok = NULL;
	char		err[256];
	time_t		now = time(NULL);
	const char *tenants[1] = {tenant};

	if (auth_sign_hs256((const uint8_t *) secret, strlen(secret), sub, tenants, 1, NULL, now + from, now + to, &tok,
						err, sizeof(err)) != AUTH_OK)
		bail_out("cannot sign a token: %s", err);
	return tok;
}

/*
 * http_req sends one HTTP request with B's bearer token to ferryd and returns the status;
 * *body gets the answer's body (malloc'd). method "GET" or "POST" (then with post as body).
 */
static int
http_req(int port, const char *token, const char *method, const char *path, const char *post, char **body)
{
	char	   *req;
	char	   *buf;
	size_t		len;
	int			status = 0;

	if (asprintf(&req, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n"
				 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", method, path, token,
				 post ? strlen(post) : 0, post ? post : "") < 0)
		bail_out("out of memory");
	buf = http_exchange(port, req, 15000);
	len = strlen(buf);
	free(req);
	if (len > 12)
		status = atoi(buf + 9);
	{
		char	   *b = strstr(buf, "\r\n\r\n");

		*body = strdup(b ? b + 4 : "");
	}
	free(buf);
	return status;
}

static Client *
wire_b(Ferryd *fd)
{
	char	   *tok = wire_token(GW_SECRET, "u2", "ws-b", 0, 3600);
	Client	   *c = client_connect(fd, tok, 0, NULL);

	free(tok);
	if (c == NULL)
		bail_out("ferryd refused B's valid token");
	return c;
}

int
main(void)
{
	Gw		   *g;
	Ferryd		fd;
	Np		   *pb;
	Dev			a,
				b;
	char		target[64];
	pid_t		wa,
				wb;
	int			leaks = 0,
				looks = 0;
	char	   *sync_cursor;

	qa_begin(5, "tenant boundary");
	qa_table_create(T);
	sql("INSERT INTO " T " (id, ws, title) SELECT i, 'ws-a', 'secret of A ' || i FROM generate_series(1, 20) i");
	sql("INSERT INTO " T " (id, ws, title) SELECT 100 + i, 'ws-b', 'B ' || i FROM generate_series(1, 10) i");
	g = gw_start(NULL);
	memset(&fd, 0, sizeof(fd));
	fd.port = g->port;
	snprintf(target, sizeof(target), "127.0.0.1:%d", g->port);
	pb = np_start(target);
	a = dev_new(g, "a", "u1:ws-a");
	b = dev_via(g, pb, "b", "u2:ws-b");
	dev_ok(&a, "subscribe", T, NULL);
	dev_ok(&b, "subscribe", T, NULL);
	ok(dev_sync(&a, 30) == 0 && dev_sync(&b, 30) == 0, "A (ws-a) and B (ws-b) sync");
	is_dev(&b, "SELECT count(*) || '/' || sum(ws = 'ws-b') FROM " T, "10/10", "B holds its ten rows, all ws-b");

	sync_cursor = sqlv("SELECT ferry.snapshot_cursor()");

	/* ---- devices: B syncs while A's workspace churns ---- */
	wa = dev_watch(&a);
	wb = dev_watch(&b);
	np_cmd(pb, "seed 5");
	np_cmd(pb, "reset 30");
	for (int i = 0; i < 30; i++)
	{
		char		v[160];

		sql("INSERT INTO " T " (id, ws, title) VALUES (%d, 'ws-a', 'new secret %d')", 200 + i, i);
		sql("UPDATE " T " SET title = 'edited secret %d', n = n + 1 WHERE ws = 'ws-a' AND id < 300 AND id %% 5 = %d", i, i % 5);
		if (i % 3 == 0)
			sql("DELETE FROM " T " WHERE id = %d", 1 + i / 3);
		if (i % 4 == 0)
			sql("UPDATE " T " SET title = 'B edited %d' WHERE id = %d", i, 101 + i % 10);
		snprintf(v, sizeof(v), "{\"id\": %d, \"ws\": \"ws-a\", \"title\": \"A's device %d\"}", 300 + i, i);
		dev_ok(&a, "insert", T, v, NULL);
		qa.sent++;
		if (i % 2 == 0)
		{
			char	   *n = dev_q(&b, "SELECT count(*) FROM " T " WHERE ws <> 'ws-b' OR title LIKE '%secret%' "
								  "OR title LIKE 'A''s%'");

			looks++;
			if (atoi(n) != 0)
				leaks++;
			free(n);
		}
		usleep(50000);
	}
	is_int(leaks, 0, "B's file never held a ws-a row (%d looks during the churn)", looks);
	np_cmd(pb, "pass");
	kill(wa, SIGTERM);
	kill(wb, SIGTERM);
	waitpid(wa, NULL, 0);
	waitpid(wb, NULL, 0);
	ok(dev_drain(&a, 60), "A's writes drain");
	qa.confirmed = sqll("SELECT count(*) FROM " T " WHERE id BETWEEN 300 AND 329");
	qa.lost = 30 - qa.confirmed;
	qa.dups = sqll("SELECT count(*) FROM " T " WHERE id BETWEEN 300 AND 329 AND ferry_version <> 1");
	is_int(qa.confirmed, 30, "all 30 of A's inserts are on the server");
	ok(dev_sync(&b, 30) == 0, "B syncs");
	{
		char	   *want = sqlv("SELECT string_agg(id || ':' || title, ',' ORDER BY id) FROM " T " WHERE ws = 'ws-b' "
								"AND ferry_deleted_at IS NULL");

		is_dev(&b, "SELECT group_concat(id || ':' || title, ',') FROM (SELECT * FROM " T " ORDER BY id)", want,
			   "B holds exactly the server's ws-b rows");
		free(want);
	}
	is_dev(&b, "SELECT count(*) FROM " T " WHERE ws <> 'ws-b'", "0", "and no other");

	/* B's device writes into ws-a: refused, visible as failed, nothing on the server */
	is_int(dev_run(&b, NULL, "insert", T, "{\"id\": 900, \"ws\": \"ws-a\", \"title\": \"B intrudes\"}", NULL), 0,
		   "B's device queues an insert into ws-a (it cannot know better offline)");
	qa.sent++;
	dev_sync(&b, 30);
	{
		char	   *out = dev_out(&b, "pending", "--json", NULL);

		ok(strstr(out, "\"status\":\"failed\"") && strstr(out, "forbidden"), "the server refused it: %.300s", out);
		free(out);
	}
	is_sql("0", "nothing of it on the server", "SELECT count(*) FROM " T " WHERE id = 900");

	/* ---- hand-made frames on B's token ---- */
	{
		Client	   *c = wire_b(&fd);

		client_subscribe(c, 1, T, "ws = 'ws-a'", NULL, NULL);
		ok(client_sync(c, 10000) || c->last_error != 0, "B subscribes WHERE ws = 'ws-a' (answered: %s)",
		   c->last_error ? c->last_error_msg : "up to date");
		is_int(foreign_rows(c), 0, "and gets no ws-a row (%d rows)", c->nrows);
		client_close(c);
	}
	{
		Client	   *c = wire_b(&fd);

		client_subscribe(c, 1, T, "ws = 'ws-a' OR true", NULL, NULL);
		client_sync(c, 10000);
		is_int(foreign_rows(c), 0, "WHERE ws = 'ws-a' OR true: no ws-a row (%d rows)", c->nrows);
		client_close(c);
	}
	{
		char	   *tok = wire_token(GW_SECRET, "u1", "ws-a", 0, 3600);
		Client	   *ca = client_connect(&fd, tok, 0, NULL);
		Client	   *c;
		char		handle[64],
					offset[64];

		free(tok);
		if (ca == NULL)
			bail_out("ferryd refused A's token");
		client_subscribe(ca, 1, T, NULL, NULL, NULL);
		ok(client_sync(ca, 10000) && foreign_rows(ca) > 0, "A's own hand-made client holds ws-a rows (%d)",
		   foreign_rows(ca));
		snprintf(handle, sizeof(handle), "%s", ca->handle);
		snprintf(offset, sizeof(offset), "%s", ca->offset);
		c = wire_b(&fd);
		client_subscribe(c, 1, T, NULL, handle, "-1");
		client_sync(c, 10000);
		is_int(foreign_rows(c), 0, "B resubscribing with A's shape handle from -1: no ws-a row (%d rows)", c->nrows);
		client_close(c);
		c = wire_b(&fd);
		client_subscribe(c, 1, T, NULL, handle, offset);
		client_sync(c, 10000);
		is_int(foreign_rows(c), 0, "B resuming A's shape handle at A's offset: no ws-a row (%d rows)", c->nrows);

		/* live: ws-a changes while B's subscription is open */
		client_subscribe(c, 2, T, NULL, NULL, NULL);
		client_sync(c, 10000);
		sql("INSERT INTO " T " (id, ws, title) SELECT 400 + i, 'ws-a', 'live secret' FROM generate_series(1, 20) i");
		sql("UPDATE " T " SET title = 'live edit' WHERE ws = 'ws-a'");
		sql("INSERT INTO " T " (id, ws, title) VALUES (500, 'ws-b', 'B live')");
		{
			long long	deadline = now_ms() + 10000;

			while (find_row(c, "500") < 0 && now_ms() < deadline)
				client_step(c, 200);
			for (int i = 0; i < 5; i++)
				client_step(c, 100);
		}
		ok(find_row(c, "500") >= 0, "B's live subscription gets B's new row");
		is_int(foreign_rows(c), 0, "and none of the ws-a changes made meanwhile");

		/* pushes into A's workspace */
		{
			char		idbuf[3][40];
			const char *ids[3] = {idbuf[0], idbuf[1], idbuf[2]};
			const char *jsons[3] = {
				"{\"table\": \"" T "\", \"op\": \"insert\", \"key\": {\"id\": 901}, \"changes\": {\"ws\": {\"new\": "
				"\"ws-a\"}, \"title\": {\"new\": \"forged\"}}}",
				"{\"table\": \"" T "\", \"op\": \"update\", \"key\": {\"id\": 20}, \"changes\": {\"title\": {\"old\": "
				"\"edited secret 29\", \"new\": \"forged\"}}}",
				"{\"table\": \"" T "\", \"op\": \"delete\", \"key\": {\"id\": 19}}"
			};
			char	   *before = sqlv("SELECT string_agg(id || title || ferry_version, ',' ORDER BY id) FROM " T
									  " WHERE ws = 'ws-a'");
			char	   *after;

			for (int i = 0; i < 3; i++)	/* fresh ids: the server remembers results by id */
				snprintf(idbuf[i], sizeof(idbuf[i]), "51%06x-0000-4000-8000-%012llx", (unsigned) getpid() & 0xffffff,
						 (unsigned long long) now_ms() * 4 + (unsigned long long) i);
			client_push(c, 3, ids, jsons);
			ok(client_wait_results(c, 3, 10000), "B's three pushes into ws-a are answered");
			for (int i = 0; i < 3 && i < c->nresults; i++)
				ok(c->results[i].status == FERRY__V1__MUTATION_STATUS__REJECTED, "push %d is REJECTED (%s)", i + 1,
				   c->results[i].code);
			after = sqlv("SELECT string_agg(id || title || ferry_version, ',' ORDER BY id) FROM " T " WHERE ws = 'ws-a'");
			is_str(after, before, "ws-a on the server is untouched");
			is_sql("0", "no row 901", "SELECT count(*) FROM " T " WHERE id = 901");
			free(before);
			free(after);
		}
		client_close(c);
		client_close(ca);
	}
	/* ---- hand-made HTTP requests on B's token ---- */
	{
		char	   *tok = wire_token(GW_SECRET, "u2", "ws-b", 0, 3600);
		char	   *body = NULL;
		char		path[512];
		int			st;

		st = http_req(g->port, tok, "GET", "/v1/shape?table=" T "&offset=-1", NULL, &body);
		if (st == 404 && strstr(body, "ws-b") == NULL && strstr(body, "shape") == NULL)
			skip(6, "ferryd has no HTTP shape API");
		else
		{
			ok(st == 200 && strstr(body, "ws-b") != NULL && strstr(body, "ws-a") == NULL,
			   "GET /v1/shape as B: B's rows, no ws-a row (status %d)", st);
			free(body);
			st = http_req(g->port, tok, "GET", "/v1/shape?table=" T "&offset=-1&where=ws%20%3D%20%27ws-a%27", NULL,
						  &body);
			ok(strstr(body, "secret") == NULL && strstr(body, "\"ws-a\"") == NULL,
			   "GET /v1/shape WHERE ws = 'ws-a' as B: no ws-a row (status %d)", st);
			free(body);
			st = http_req(g->port, tok, "GET", "/v1/shape?table=" T "&offset=-1&where=ws%20%3C%3E%20%27ws-b%27", NULL,
						  &body);
			ok(strstr(body, "secret") == NULL && strstr(body, "\"ws-a\"") == NULL,
			   "GET /v1/shape WHERE ws <> 'ws-b' as B: no ws-a row (status %d)", st);
			free(body);
			st = http_req(g->port, tok, "GET", "/v1/sync?table=" T, NULL, &body);
			ok(st == 200 && strstr(body, "\"ws-b\"") != NULL && strstr(body, "secret") == NULL &&
			   strstr(body, "\"ws-a\"") == NULL,
			   "GET /v1/sync as B: no ws-a row (status %d)", st);
			free(body);
			snprintf(path, sizeof(path), "/v1/sync?table=" T "&since=%s", sync_cursor);
			st = http_req(g->port, tok, "GET", path, NULL, &body);
			ok(st == 200 && strstr(body, "B edited") != NULL && strstr(body, "secret") == NULL &&
			   strstr(body, "\"ws-a\"") == NULL,
			   "GET /v1/sync since a cursor from before the churn, as B: no ws-a row (status %d)", st);
			free(body);
			{
				char		post[600];

				snprintf(post, sizeof(post), "[{\"id\": \"52%06x-0000-4000-8000-%012llx\", \"table\": \"" T "\", "
						 "\"op\": \"insert\", \"key\": {\"id\": 902}, \"changes\": {\"ws\": {\"new\": \"ws-a\"}, "
						 "\"title\": {\"new\": \"forged over HTTP\"}}}]", (unsigned) getpid() & 0xffffff,
						 (unsigned long long) now_ms());
				st = http_req(g->port, tok, "POST", "/v1/mutations", post, &body);
				ok(strstr(body, "applied") == NULL && sqll("SELECT count(*) FROM " T " WHERE id = 902") == 0,
				   "POST /v1/mutations as B into ws-a: not applied (status %d: %.200s)", st, body);
				free(body);
			}
		}
		free(tok);
	}
	{
		char	   *forged = wire_token("another-secret-another-secret-another-secret-0", "u2", "ws-a", 0, 3600);
		char	   *expired = wire_token(GW_SECRET, "u1", "ws-a", -7200, -3600);
		int			code = 0;
		Client	   *c = client_connect(&fd, forged, 0, &code);

		ok(c == NULL, "a token for ws-a signed with another key is refused (error %d)", code);
		client_close(c);
		c = client_connect(&fd, expired, 0, &code);
		ok(c == NULL, "an expired token for ws-a is refused (error %d)", code);
		client_close(c);
		free(forged);
		free(expired);
	}

	free(sync_cursor);
	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	np_stop(pb);
	sql("DROP TABLE IF EXISTS " T);
	return done_testing();
}
