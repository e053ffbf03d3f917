/*
 * client-sqlite/example/todo_app.c -- an app embedding libferry, in a page of C.
 *
 * Opens the user's file, subscribes to their open todos, adds one, lists them with plain
 * SQL, and then runs the sync engine from its own poll(2) loop, printing the sync status
 * the way an app would show it. Works offline: the write is queued and goes when the
 * server is reachable. Build: cc todo_app.c $(pkg-config --cflags --libs ferry sqlite3)
 */
#include <ferry.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The app gets tokens from its backend; this one reads APP_TOKEN. Never stored by ferry. */
static int
get_token(void *ctx, const char *user, char *buf, size_t cap)
{
	const char *t = getenv("APP_TOKEN");

	(void) ctx;
	(void) user;
	if (t == NULL || strlen(t) >= cap)
		return FERRY_AUTH;
	memcpy(buf, t, strlen(t) + 1);
	return FERRY_OK;
}

/* The sync badge: synced / syncing N / offline / needs attention. */
static void
on_status(void *ctx, const ferry_status *st)
{
	(void) ctx;
	printf("[%s] %d waiting, %d failed, %d conflicts%s%s\n", ferry_state_name(st->state), st->pending + st->inflight,
		   st->failed, st->conflicts, st->last_error[0] ? " -- " : "", st->last_error);
}

/* A row changed (mine or the server's): a real app refreshes that row on screen. */
static void
on_change(void *ctx, const char *table, const char *key, int op, int origin)
{
	(void) ctx;
	printf("%s %s %s (%s)\n", op == FERRY_OP_DELETE ? "removed" : "changed", table, key ? key : "(all rows)",
		   origin == FERRY_ORIGIN_LOCAL ? "me" : "server");
}

int
main(int argc, char **argv)
{
	ferry	   *db = NULL;
	char	   *err = NULL;
	sqlite3_stmt *q;

	if (ferry_open(argc > 1 ? argv[1] : "alice.db", &db, &err) != FERRY_OK)
	{
		fprintf(stderr, "cannot open: %s\n", err);
		ferry_free(err);
		ferry_close(db);
		return 1;
	}
	ferry_set_url(db, getenv("APP_SERVER") ? getenv("APP_SERVER") : "ws://127.0.0.1:7070", NULL);
	ferry_set_token_callback(db, get_token, NULL);
	ferry_on_status(db, on_status, NULL);
	ferry_on_change(db, on_change, NULL);
	ferry_subscribe(db, "todos", "done = false", NULL, NULL);

	/* The first run needs the server once (for the columns); later runs start offline. */
	if (ferry_sync_run(db, 5000, FERRY_SYNC_UNTIL_SYNCED, &err) != FERRY_OK)
	{
		printf("not synced yet: %s\n", err);
		ferry_free(err);
	}
	if (ferry_insert(db, "todos", "{\"id\": \"7a1c1b9e-0000-4000-8000-000000000001\", \"workspace_id\": \"ws1\", "
					 "\"title\": \"Buy milk\"}", NULL, &err) != FERRY_OK)
	{
		printf("not added: %s\n", err);	/* e.g. it exists already */
		ferry_free(err);
	}

	/* Reads are plain SQL on the mirror table, online or not. */
	if (sqlite3_prepare_v2(ferry_sqlite(db), "SELECT title FROM todos ORDER BY title", -1, &q, NULL) == SQLITE_OK)
	{
		while (sqlite3_step(q) == SQLITE_ROW)
			printf("- %s\n", (const char *) sqlite3_column_text(q, 0));
		sqlite3_finalize(q);
	}

	/* The app's own event loop, with ferry's socket in it (one minute here). */
	for (int i = 0; i < 600; i++)
	{
		struct pollfd p = {ferry_sync_fd(db), (short) ferry_sync_events(db), 0};

		poll(&p, p.fd >= 0 ? 1 : 0, ferry_sync_timeout_ms(db) < 100 ? ferry_sync_timeout_ms(db) : 100);
		if (ferry_sync_step(db, &err) != FERRY_OK)
		{
			fprintf(stderr, "sync needs attention: %s\n", err);	/* token refused, wrong user... */
			ferry_free(err);
			err = NULL;
		}
	}
	ferry_close(db);
	return 0;
}
