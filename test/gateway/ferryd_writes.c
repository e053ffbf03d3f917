/*
 * test/gateway/ferryd_writes.c -- pushed mutations through a real ferryd: results by status,
 * acks after their data, idempotent resends, rate limits with retry-after, metrics.
 */
#include "ferryd_harness.h"

static const char *A[] = {"ws-a"};

static int
count_rows(PGconn *db, const char *where)
{
	char		sql[256];
	char	   *v;
	int			n;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM wr_items WHERE %s", where);
	v = db_value(db, sql);
	n = atoi(v);
	free(v);
	return n;
}

static char *
uuid_n(int n)
{
	char	   *s = malloc(40);

	snprintf(s, 40, "00000000-0000-4000-8000-%012d", n);
	return s;
}

int
main(void)
{
	PGconn	   *db = db_connect();
	Ferryd	   *d;
	Client	   *c;
	char		body[32768];
	const char *ids[200];
	const char *jsons[200];
	char	   *own_ids[200];
	char	   *own_jsons[200];
	int			retried = 0;
	int			first_retry = -1;
	int			later_all_retry = 1;
	uint32_t	retry_after = 0;

	db_exec(db, "DROP TABLE IF EXISTS wr_items");
	db_exec(db, "CREATE TABLE wr_items (id int PRIMARY KEY, ws text NOT NULL, title text, n int NOT NULL DEFAULT 0, "
			"status text NOT NULL DEFAULT 'open')");
	db_exec(db, "SELECT ferry.enable_sync('wr_items', 'ws')");
	db_exec(db, "SELECT ferry.set_conflict_rule('wr_items', 'status', 'version')");
	db_exec(db, "SELECT ferry.set_conflict_rule('wr_items', 'n', 'counter')");
	db_exec(db, "INSERT INTO wr_items (id, ws, title) VALUES (1, 'ws-a', 'one')");

	/* a small push bucket, so the burst below meets it */
	setenv("FERRY_PUSH_RATE", "40", 1);
	setenv("FERRY_PUSH_BURST", "60", 1);
	d = ferryd_start(NULL);
	c = client_open(d, "u1", A, 1, NULL);
	client_subscribe(c, 1, "wr_items", NULL, NULL, NULL);
	ok(client_sync(c, 10000) && c->nrows == 1, "the client holds the table's one row");

	/* ---- applied, and the ack follows its data ---- */
	ids[0] = "10000000-0000-4000-8000-000000000001";
	jsons[0] = "{\"table\": \"wr_items\", \"op\": \"insert\", \"key\": {\"id\": 2}, "
		"\"changes\": {\"ws\": {\"new\": \"ws-a\"}, \"title\": {\"new\": \"two\"}}, \"clock\": \"1700000000000-0-dev\"}";
	client_push(c, 1, ids, jsons);
	ok(client_wait_results(c, 1, 10000), "a pushed insert gets a result");
	is_int(c->results[0].status, FERRY__V1__MUTATION_STATUS__APPLIED, "APPLIED");
	is_int(c->results[0].version, 1, "with the row's version");
	ok(c->results[0].rows_then == 2 && find_row(c, "2") >= 0,
	   "the inserted row reached the client before its result (acks follow their data)");
	is_int(count_rows(db, "id = 2 AND title = 'two'"), 1, "and the row is in Postgres");

	/* ---- the same mutation again: duplicate, nothing written twice ---- */
	client_push(c, 1, ids, jsons);
	ok(client_wait_results(c, 2, 10000) && c->results[1].status == FERRY__V1__MUTATION_STATUS__DUPLICATE,
	   "sending the same mutation id again is DUPLICATE");
	{
		char	   *v = db_value(db, "SELECT ferry_version FROM wr_items WHERE id = 2");

		is_str(v, "1", "and wrote nothing (version still 1)");
		free(v);
	}

	/* ---- counter merges, version conflicts, rejections ---- */
	db_exec(db, "UPDATE wr_items SET n = 5, status = 'done' WHERE id = 1");
	ids[0] = "10000000-0000-4000-8000-000000000002";
	jsons[0] = "{\"table\": \"wr_items\", \"op\": \"update\", \"key\": {\"id\": 1}, "
		"\"changes\": {\"n\": {\"old\": 0, \"new\": 2}}}";
	ids[1] = "10000000-0000-4000-8000-000000000003";
	jsons[1] = "{\"table\": \"wr_items\", \"op\": \"update\", \"key\": {\"id\": 1}, "
		"\"changes\": {\"status\": {\"old\": \"open\", \"new\": \"cancelled\"}}}";
	ids[2] = "10000000-0000-4000-8000-000000000004";
	jsons[2] = "{\"table\": \"wr_items\", \"op\": \"insert\", \"key\": {\"id\": 3}, "
		"\"changes\": {\"ws\": {\"new\": \"ws-b\"}}}";
	ids[3] = "10000000-0000-4000-8000-000000000005";
	jsons[3] = "{not json";
	ids[4] = "10000000-0000-4000-8000-000000000006";
	jsons[4] = "{\"table\": \"wr_items\", \"op\": \"update\", \"key\": {\"id\": 1}, "
		"\"changes\": {\"title\": {\"old\": \"one\", \"new\": \"uno\"}}}";
	client_push(c, 5, ids, jsons);
	ok(client_wait_results(c, 7, 10000), "a batch of 5 gets 5 results");
	ok(c->results[2].status == FERRY__V1__MUTATION_STATUS__APPLIED && count_rows(db, "id = 1 AND n = 7") == 1,
	   "a counter delta applies on top of the server's value (5 + 2 = 7)");
	ok(c->results[3].status == FERRY__V1__MUTATION_STATUS__CONFLICT && strstr(c->results[3].json, "status") != NULL,
	   "a stale base on a version column is CONFLICT, naming the column");
	ok(c->results[4].status == FERRY__V1__MUTATION_STATUS__REJECTED && strcmp(c->results[4].code, "forbidden") == 0,
	   "an insert into another tenant is REJECTED forbidden");
	ok(c->results[5].status == FERRY__V1__MUTATION_STATUS__REJECTED &&
	   strcmp(c->results[5].code, "invalid_mutation") == 0, "malformed JSON is REJECTED invalid_mutation");
	ok(c->results[6].status == FERRY__V1__MUTATION_STATUS__APPLIED && count_rows(db, "id = 1 AND title = 'uno'") == 1,
	   "and the next mutation of the batch still applies, in order");
	{
		int			ok_order = 1;

		for (int i = 2; i < 7; i++)
			if (strcmp(c->results[i].id, ids[i - 2]) != 0)
				ok_order = 0;
		ok(ok_order, "results come in the order the mutations were sent");
	}
	is_int(count_rows(db, "id = 3"), 0, "nothing of the rejected insert was written");

	/* ---- a burst over the rate limit ---- */
	for (int i = 0; i < 150; i++)
	{
		char		json[256];

		own_ids[i] = uuid_n(1000 + i);
		snprintf(json, sizeof(json), "{\"table\": \"wr_items\", \"op\": \"insert\", \"key\": {\"id\": %d}, "
				 "\"changes\": {\"ws\": {\"new\": \"ws-a\"}, \"title\": {\"new\": \"burst\"}}}", 1000 + i);
		own_jsons[i] = strdup(json);
	}
	{
		int			base = c->nresults;
		int			pending[150];
		int			npending = 150;
		int			rounds = 0;

		for (int i = 0; i < 150; i++)
			pending[i] = i;
		while (npending > 0 && rounds < 40)
		{
			int			next = 0;
			int64_t		wait_ms = 0;

			for (int i = 0; i < npending; i++)
			{
				ids[i] = own_ids[pending[i]];
				jsons[i] = own_jsons[pending[i]];
			}
			client_push(c, npending, ids, jsons);
			if (!client_wait_results(c, base + npending, 20000))
				break;
			for (int i = 0; i < npending; i++)
			{
				Result	   *r = &c->results[base + i];

				if (r->status == FERRY__V1__MUTATION_STATUS__RETRY)
				{
					if (first_retry < 0)
					{
						first_retry = base + i;
						retry_after = r->retry_after_ms;
					}
					retried++;
					if (r->retry_after_ms > wait_ms)
						wait_ms = r->retry_after_ms;
					pending[next++] = pending[i];
				}
				else if (rounds == 0 && first_retry >= 0)
					later_all_retry = 0;
			}
			base += npending;
			npending = next;
			rounds++;
			if (npending > 0)
				usleep((useconds_t) (wait_ms * 1000));
		}
		ok(first_retry >= 0 && retried > 0, "a burst of 150 over a bucket of 60 gets RETRY (%d retried)", retried);
		ok(retry_after > 0, "with retry_after_ms (%u)", retry_after);
		ok(later_all_retry, "and every mutation after the first RETRY is RETRY too, keeping the order");
		is_int(npending, 0, "resending after retry_after_ms drains the queue (%d rounds)", rounds);
		is_int(count_rows(db, "id >= 1000 AND title = 'burst'"), 150, "all 150 inserts are in Postgres exactly once");
	}

	/* ---- heartbeats and metrics ---- */
	{
		Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
		Ferry__V1__Heartbeat hb = FERRY__V1__HEARTBEAT__INIT;

		hb.sent_at_ms = 1;
		hb.pending_mutations = 7;
		hb.oldest_pending_age_ms = 42000;
		m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HEARTBEAT;
		m.heartbeat = &hb;
		client_send(c, &m);
		client_step(c, 2000);
		usleep(300000);
	}
	ok(http_get_status(d->port, "/metrics", body, sizeof(body)) == 200 &&
	   strstr(body, "ferry_mutations_total{status=\"applied\"}") != NULL &&
	   strstr(body, "ferry_apply_duration_seconds_count") != NULL, "/metrics counts mutations and apply latency");
	ok(strstr(body, "ferry_client_pending_mutations 7") != NULL &&
	   strstr(body, "ferry_client_oldest_pending_mutation_seconds 42.000") != NULL,
	   "/metrics shows the queue a client reported in its heartbeat");
	ok(strstr(body, "ferry_rate_limited_total 0\n") == NULL, "and the rate-limited pushes");

	client_close(c);
	is_int(WEXITSTATUS(ferryd_stop(d, SIGTERM)), 0, "ferryd stops cleanly");
	ferryd_cleanup(d, db);
	db_exec(db, "DROP TABLE wr_items");
	for (int i = 0; i < 150; i++)
	{
		free(own_ids[i]);
		free(own_jsons[i]);
	}
	PQfinish(db);
	return done_testing();
}
