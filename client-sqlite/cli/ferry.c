/*
 * client-sqlite/cli/ferry.c -- `ferry`, the command-line client built on libferry.
 *
 *     ferry --db FILE --url wss://HOST[:PORT] --token TOKEN COMMAND [ARGS]
 *
 * One process per command: it opens the file, does the command, closes the file. The
 * URL is remembered in the file; the token is never written anywhere (FERRY_TOKEN in
 * the environment works too). `ferry --help` lists commands and exit codes.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"

/* Exit codes (also in --help and README.md). */
#define EXIT_OK 0
#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_OFFLINE 3
#define EXIT_AUTH 4
#define EXIT_TIMEOUT 5
#define EXIT_PENDING 6
#define EXIT_NOTFOUND 7
#define EXIT_INVALID 8
#define EXIT_BUSY 9
#define EXIT_PROTOCOL 10

static const char usage_text[] =
"usage: ferry [--db FILE] [--url wss://HOST[:PORT]] [--token TOKEN] COMMAND [ARGS]\n"
"\n"
"The offline-first client of ferry: a local SQLite file that mirrors the rows of the\n"
"shapes you subscribe to, with a durable queue of your writes.\n"
"\n"
"Global options:\n"
"  --db FILE        the local database (default $FERRY_DB, else ./ferry.db)\n"
"  --url URL        the ferryd WebSocket URL (wss:// or ws://); remembered in the file\n"
"  --ca-file FILE   trust the CA certificates in FILE (PEM) for wss:// instead of the\n"
"                   system's (default $FERRY_CA_FILE)\n"
"  --token TOKEN    the JWT to connect with (default $FERRY_TOKEN); never stored\n"
"  -h, --help       this help;  --version  the version\n"
"\n"
"Commands:\n"
"  subscribe TABLE [--where SQL] [--columns a,b]   add or change a shape\n"
"  unsubscribe TABLE [--force]                     remove a shape and its rows\n"
"  sync [--once | --until-synced | --watch] [--timeout SEC]\n"
"        --until-synced (default): connect (retrying), catch up, send the queue, exit when\n"
"                         synced; --once: like it, but give up when the server cannot be\n"
"                         reached; --watch: stay connected and draw a live status line\n"
"                         (until interrupted). --timeout: give up after SEC (default 60;\n"
"                         0 = never)\n"
"  insert TABLE JSON                               insert a row, e.g. '{\"id\":1,\"title\":\"x\"}'\n"
"  update TABLE KEY JSON                           change columns of a row\n"
"  delete TABLE KEY                                delete a row\n"
"  query SQL [--json]                              read the local tables\n"
"  status [--json]                                 sync status\n"
"  state TABLE KEY [--json]                        sync state of one row\n"
"  pending [--json]                                the queue (the pending tray)\n"
"  retry ID                                        send a failed mutation again (new id)\n"
"  discard ID                                      drop a mutation, restore the server row\n"
"  conflicts [--json]                              conflicts, side by side\n"
"  resolve ID --keep-mine | --use-theirs | --merge JSON\n"
"  logout [--force]                                wipe the file (refused while changes are\n"
"                                                  pending, unless --force)\n"
"\n"
"KEY is the row's primary key: a value (42, abc) or, for any key, a JSON object.\n"
"\n"
"Exit codes: 0 ok, 1 error, 2 usage, 3 offline, 4 token refused / wrong user,\n"
"5 timed out, 6 changes pending, 7 not found, 8 invalid value, 9 busy (another\n"
"process syncs the file, or the mutation is in flight), 10 protocol mismatch.\n";

static const char *token_arg;			/* --token or $FERRY_TOKEN */
static volatile sig_atomic_t interrupted;	/* SIGINT/SIGTERM in sync --watch */

static int
exit_code(int rc)
{
	switch (rc)
	{
		case FERRY_OK:
			return EXIT_OK;
		case FERRY_MISUSE:
			return EXIT_USAGE;
		case FERRY_OFFLINE:
			return EXIT_OFFLINE;
		case FERRY_AUTH:
			return EXIT_AUTH;
		case FERRY_TIMEOUT:
			return EXIT_TIMEOUT;
		case FERRY_PENDING:
			return EXIT_PENDING;
		case FERRY_NOTFOUND:
			return EXIT_NOTFOUND;
		case FERRY_INVALID:
			return EXIT_INVALID;
		case FERRY_BUSY:
			return EXIT_BUSY;
		case FERRY_PROTOCOL:
			return EXIT_PROTOCOL;
		default:
			return EXIT_ERROR;
	}
}

/* Prints the library's message for rc and returns the exit code. */
static int
fail(ferry *db, int rc, char *msg)
{
	fprintf(stderr, "ferry: %s\n", msg ? msg : db ? ferry_errmsg(db) : ferry_errstr(rc));
	ferry_free(msg);
	return exit_code(rc);
}

static int
usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "ferry: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'ferry --help'.\n");
	return EXIT_USAGE;
}

static int
token_cb(void *ctx, const char *user, char *buf, size_t cap)
{
	(void) ctx;
	(void) user;
	if (token_arg == NULL || token_arg[0] == '\0' || strlen(token_arg) >= cap)
		return FERRY_AUTH;
	memcpy(buf, token_arg, strlen(token_arg) + 1);
	return FERRY_OK;
}

static void
on_signal(int sig)
{
	(void) sig;
	interrupted = 1;
}

static void
ago(int64_t ms, char *buf, size_t cap)
{
	int64_t		d = (int64_t) time(NULL) * 1000 - ms;

	if (ms == 0)
		snprintf(buf, cap, "never");
	else if (d < 60000)
		snprintf(buf, cap, "%lld s ago", (long long) (d / 1000));
	else if (d < 3600000)
		snprintf(buf, cap, "%lld min ago", (long long) (d / 60000));
	else if (d < 48LL * 3600000)
		snprintf(buf, cap, "%lld h ago", (long long) (d / 3600000));
	else
		snprintf(buf, cap, "%lld days ago", (long long) (d / 86400000));
}

/* One line: "synced", "syncing 3 changes", "offline (retrying in 4 s)", "error: ...". */
static void
status_line(const ferry_status *st, char *buf, size_t cap)
{
	char		last[64];
	int			n = st->pending + st->inflight;

	ago(st->last_sync_ms, last, sizeof(last));
	switch (st->state)
	{
		case FERRY_STATE_SYNCED:
			snprintf(buf, cap, "synced");
			break;
		case FERRY_STATE_SYNCING:
			if (n > 0)
				snprintf(buf, cap, "syncing %d change%s", n, n == 1 ? "" : "s");
			else
				snprintf(buf, cap, "syncing (catching up %d/%d shapes)", st->shapes_up_to_date, st->shapes);
			break;
		case FERRY_STATE_OFFLINE:
			if (st->next_attempt_ms > 0)
			{
				int64_t		in = st->next_attempt_ms - (int64_t) time(NULL) * 1000;

				snprintf(buf, cap, "offline, %d change%s waiting (next try in %lld s)", st->queue_length,
						 st->queue_length == 1 ? "" : "s", (long long) (in > 0 ? (in + 999) / 1000 : 0));
			}
			else
				snprintf(buf, cap, "offline, %d change%s waiting", st->queue_length, st->queue_length == 1 ? "" : "s");
			break;
		default:
			if (st->failed + st->conflicts > 0 && st->connected)
				snprintf(buf, cap, "needs attention: %d failed, %d in conflict", st->failed, st->conflicts);
			else
				snprintf(buf, cap, "sync error");
			break;
	}
	if (st->stale)
	{
		size_t		l = strlen(buf);

		snprintf(buf + l, cap - l, " (data may be stale: last synced %s)", last);
	}
}

/* ---- commands ---------------------------------------------------------------------- */

static int
cmd_subscribe(ferry *db, int argc, char **argv)
{
	const char *where = NULL;
	const char *columns = NULL;
	const char *table = NULL;
	char	   *msg;
	int			rc;

	for (int i = 0; i < argc; i++)
	{
		if (strcmp(argv[i], "--where") == 0 && i + 1 < argc)
			where = argv[++i];
		else if (strcmp(argv[i], "--columns") == 0 && i + 1 < argc)
			columns = argv[++i];
		else if (argv[i][0] == '-' || table != NULL)
			return usage_error("subscribe: unexpected argument %s", argv[i]);
		else
			table = argv[i];
	}
	if (table == NULL)
		return usage_error("%s", "subscribe needs a TABLE");
	if ((rc = ferry_subscribe(db, table, where, columns, &msg)) != FERRY_OK)
		return fail(db, rc, msg);
	return EXIT_OK;
}

static int
cmd_unsubscribe(ferry *db, int argc, char **argv)
{
	int			flags = 0;
	const char *table = NULL;
	char	   *msg;
	int			rc;

	for (int i = 0; i < argc; i++)
	{
		if (strcmp(argv[i], "--force") == 0)
			flags |= FERRY_FORCE;
		else if (table == NULL && argv[i][0] != '-')
			table = argv[i];
		else
			return usage_error("unsubscribe: unexpected argument %s", argv[i]);
	}
	if (table == NULL)
		return usage_error("%s", "unsubscribe needs a TABLE");
	if ((rc = ferry_unsubscribe(db, table, flags, &msg)) != FERRY_OK)
		return fail(db, rc, msg);
	return EXIT_OK;
}

static void
watch_status(void *ctx, const ferry_status *st)
{
	char		line[700];

	(void) ctx;
	status_line(st, line, sizeof(line));
	if (isatty(STDOUT_FILENO))
		printf("\r\033[K%s%s%s", line, st->last_error[0] ? " — " : "", st->last_error);
	else
		printf("%s%s%s\n", line, st->last_error[0] ? " — " : "", st->last_error);
	fflush(stdout);
}

static int
cmd_sync(ferry *db, int argc, char **argv)
{
	int			mode = 0;		/* 0 until-synced, 1 once, 2 watch */
	int			timeout = 60;
	char	   *msg = NULL;
	int			rc;

	for (int i = 0; i < argc; i++)
	{
		if (strcmp(argv[i], "--once") == 0)
			mode = 1;
		else if (strcmp(argv[i], "--until-synced") == 0)
			mode = 0;
		else if (strcmp(argv[i], "--watch") == 0)
			mode = 2;
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
		{
			char	   *end;

			timeout = (int) strtol(argv[++i], &end, 10);
			if (*end || timeout < 0)
				return usage_error("sync: bad --timeout %s", argv[i]);
		}
		else
			return usage_error("sync: unexpected argument %s", argv[i]);
	}
	if (mode == 2)
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		ferry_on_status(db, watch_status, NULL);
		while (!interrupted)
		{
			rc = ferry_sync_run(db, 200, 0, &msg);
			if (rc == FERRY_BUSY || rc == FERRY_MISUSE || rc == FERRY_PROTOCOL || rc == FERRY_DB)
				return fail(db, rc, msg);
			if (rc != FERRY_OK)
			{
				/* a refused token: say so, keep trying (a new token may come) */
				fprintf(stderr, "\nferry: %s\n", msg);
				ferry_free(msg);
				msg = NULL;
			}
		}
		if (isatty(STDOUT_FILENO))
			printf("\n");
		ferry_sync_stop(db);
		return EXIT_OK;
	}
	rc = ferry_sync_run(db, timeout == 0 ? -1 : timeout * 1000,
						FERRY_SYNC_UNTIL_SYNCED | (mode == 1 ? FERRY_SYNC_ONCE : 0), &msg);
	ferry_sync_stop(db);
	if (rc != FERRY_OK)
		return fail(db, rc, msg);
	{
		ferry_status st;

		ferry_get_status(db, &st);
		if (st.failed + st.conflicts > 0)
			fprintf(stderr, "ferry: synced, but %d change%s failed and %d %s in conflict: see `ferry pending` and "
					"`ferry conflicts`\n", st.failed, st.failed == 1 ? "" : "s", st.conflicts,
					st.conflicts == 1 ? "is" : "are");
	}
	return EXIT_OK;
}

static int
cmd_write(ferry *db, const char *cmd, int argc, char **argv)
{
	char	   *id = NULL;
	char	   *msg = NULL;
	int			rc;

	if (strcmp(cmd, "insert") == 0)
	{
		if (argc != 2)
			return usage_error("%s", "usage: insert TABLE JSON");
		rc = ferry_insert(db, argv[0], argv[1], &id, &msg);
	}
	else if (strcmp(cmd, "update") == 0)
	{
		if (argc != 3)
			return usage_error("%s", "usage: update TABLE KEY JSON");
		rc = ferry_update(db, argv[0], argv[1], argv[2], &id, &msg);
	}
	else
	{
		if (argc != 2)
			return usage_error("%s", "usage: delete TABLE KEY");
		rc = ferry_delete(db, argv[0], argv[1], &id, &msg);
	}
	if (rc != FERRY_OK)
		return fail(db, rc, msg);
	printf("%s\n", id ? id : "(nothing changed)");
	ferry_free(id);
	return EXIT_OK;
}

static bool
want_json(int *argc, char **argv)
{
	bool		json = false;
	int			k = 0;

	for (int i = 0; i < *argc; i++)
	{
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			argv[k++] = argv[i];
	}
	*argc = k;
	return json;
}

/* Prints a JSON array of row objects as a header and tab-separated columns. */
static void
print_rows(const char *json)
{
	json_t	   *rows = json_loads(json, 0, NULL);
	size_t		i;
	json_t	   *row;

	json_array_foreach(rows, i, row)
	{
		const char *col;
		json_t	   *v;
		int			k = 0;

		if (i == 0)
		{
			json_object_foreach(row, col, v)
				printf("%s%s", k++ ? "\t" : "", col);
			printf("\n");
			k = 0;
		}
		json_object_foreach(row, col, v)
		{
			char	   *t = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY);

			printf("%s%s", k++ ? "\t" : "", json_is_string(v) ? json_string_value(v) :
				   json_is_null(v) ? "NULL" : t);
			free(t);
		}
		printf("\n");
	}
	json_decref(rows);
}

static int
cmd_query(ferry *db, int argc, char **argv)
{
	char	   *json = NULL;
	char	   *msg = NULL;
	int			rc;

	bool		as_json = want_json(&argc, argv);

	if (argc != 1)
		return usage_error("%s", "usage: query SQL [--json]");
	if ((rc = ferry_query_json(db, argv[0], &json, &msg)) != FERRY_OK)
		return fail(db, rc, msg);
	if (as_json)
		printf("%s\n", json);
	else
		print_rows(json);
	ferry_free(json);
	return EXIT_OK;
}

static int
cmd_status(ferry *db, int argc, char **argv)
{
	bool		json = want_json(&argc, argv);
	ferry_status st;
	char		line[700];
	char		last[64];

	if (argc != 0)
		return usage_error("status: unexpected argument %s", argv[0]);
	if (json)
	{
		char	   *j = NULL;
		int			rc = ferry_status_json(db, &j);

		if (rc != FERRY_OK)
			return fail(db, rc, NULL);
		printf("%s\n", j);
		ferry_free(j);
		return EXIT_OK;
	}
	ferry_get_status(db, &st);
	status_line(&st, line, sizeof(line));
	ago(st.last_sync_ms, last, sizeof(last));
	printf("state:        %s (%s)\n", ferry_state_name(st.state), line);
	printf("user:         %s\n", st.user_id[0] ? st.user_id : "(not known yet)");
	printf("client id:    %s\n", ferry_client_id(db));
	printf("last sync:    %s\n", last);
	printf("queue:        %d (pending %d, in flight %d, failed %d, conflicts %d)\n", st.queue_length, st.pending,
		   st.inflight, st.failed, st.conflicts);
	if (st.queue_length > 0)
		printf("oldest:       %lld s old\n", (long long) (st.oldest_pending_age_ms / 1000));
	printf("shapes:       %d\n", st.shapes);
	if (st.last_error[0])
		printf("last error:   %s%s%s%s\n", st.last_error, st.last_error_mutation[0] ? " (mutation " : "",
			   st.last_error_mutation, st.last_error_mutation[0] ? ")" : "");
	return EXIT_OK;
}

static int
cmd_state(ferry *db, int argc, char **argv)
{
	bool		json = want_json(&argc, argv);
	int			state;
	int			rc;

	if (argc != 2)
		return usage_error("%s", "usage: state TABLE KEY [--json]");
	if ((rc = ferry_record_state(db, argv[0], argv[1], &state)) != FERRY_OK)
		return fail(db, rc, NULL);
	if (json)
		printf("{\"state\":\"%s\"}\n", ferry_record_state_name(state));
	else
		printf("%s\n", ferry_record_state_name(state));
	return EXIT_OK;
}

static int
print_mutation(void *ctx, const ferry_mutation *m)
{
	char		when[64];

	(void) ctx;
	ago(m->created_at_ms, when, sizeof(when));
	printf("%s  %-8s  %-6s %s %s  %s  (%s)", m->id, m->status, m->op, m->table, m->key, m->changes, when);
	if (m->last_error[0])
		printf("  error: %s%s%s%s", m->last_error, m->error_code[0] ? " [" : "", m->error_code,
			   m->error_code[0] ? "]" : "");
	printf("\n");
	return 0;
}

static int
cmd_pending(ferry *db, int argc, char **argv)
{
	bool		json = want_json(&argc, argv);
	int			rc;

	if (argc != 0)
		return usage_error("pending: unexpected argument %s", argv[0]);
	if (json)
	{
		char	   *j = NULL;

		if ((rc = ferry_pending_json(db, &j)) != FERRY_OK)
			return fail(db, rc, NULL);
		printf("%s\n", j);
		ferry_free(j);
		return EXIT_OK;
	}
	if ((rc = ferry_pending_each(db, print_mutation, NULL)) != FERRY_OK)
		return fail(db, rc, NULL);
	return EXIT_OK;
}

static int
print_conflict(void *ctx, const ferry_conflict *c)
{
	(void) ctx;
	printf("%s  %s %s %s\n  columns: %s\n  mine:    %s\n  theirs:  %s\n  base:    %s\n", c->mutation_id, c->op,
		   c->table, c->key, c->columns, c->mine, c->theirs, c->base);
	if (strcmp(c->applied, "[]") != 0)
		printf("  applied anyway: %s\n", c->applied);
	return 0;
}

static int
cmd_conflicts(ferry *db, int argc, char **argv)
{
	bool		json = want_json(&argc, argv);
	int			rc;

	if (argc != 0)
		return usage_error("conflicts: unexpected argument %s", argv[0]);
	if (json)
	{
		char	   *j = NULL;

		if ((rc = ferry_conflicts_json(db, &j)) != FERRY_OK)
			return fail(db, rc, NULL);
		printf("%s\n", j);
		ferry_free(j);
		return EXIT_OK;
	}
	if ((rc = ferry_conflicts_each(db, print_conflict, NULL)) != FERRY_OK)
		return fail(db, rc, NULL);
	return EXIT_OK;
}

static int
cmd_resolve(ferry *db, int argc, char **argv)
{
	int			how = 0;
	const char *merged = NULL;
	const char *id = NULL;
	char	   *msg = NULL;
	int			rc;

	for (int i = 0; i < argc; i++)
	{
		if (strcmp(argv[i], "--keep-mine") == 0)
			how = FERRY_KEEP_MINE;
		else if (strcmp(argv[i], "--use-theirs") == 0)
			how = FERRY_USE_THEIRS;
		else if (strcmp(argv[i], "--merge") == 0 && i + 1 < argc)
		{
			how = FERRY_MERGE;
			merged = argv[++i];
		}
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			return usage_error("resolve: unexpected argument %s", argv[i]);
	}
	if (id == NULL || how == 0)
		return usage_error("%s", "usage: resolve ID --keep-mine | --use-theirs | --merge JSON");
	if ((rc = ferry_resolve(db, id, how, merged, &msg)) != FERRY_OK)
		return fail(db, rc, msg);
	return EXIT_OK;
}

static int
cmd_id(ferry *db, const char *cmd, int argc, char **argv)
{
	char	   *msg = NULL;
	int			rc;

	if (argc != 1)
		return usage_error("usage: %s ID", cmd);
	rc = strcmp(cmd, "retry") == 0 ? ferry_retry(db, argv[0], &msg) : ferry_discard(db, argv[0], &msg);
	if (rc != FERRY_OK)
		return fail(db, rc, msg);
	return EXIT_OK;
}

static int
cmd_logout(ferry *db, int argc, char **argv)
{
	char	   *msg = NULL;
	int			flags = 0;
	int			rc;

	for (int i = 0; i < argc; i++)
	{
		if (strcmp(argv[i], "--force") == 0)
			flags |= FERRY_FORCE;
		else
			return usage_error("logout: unexpected argument %s", argv[i]);
	}
	if ((rc = ferry_logout(db, flags, &msg)) != FERRY_OK)
		return fail(db, rc, msg);
	return EXIT_OK;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"url", required_argument, NULL, 'u'},
		{"token", required_argument, NULL, 't'},
		{"ca-file", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	const char *path = getenv("FERRY_DB");
	const char *url = NULL;
	const char *ca_file = getenv("FERRY_CA_FILE");
	const char *cmd;
	ferry	   *db = NULL;
	char	   *msg = NULL;
	int			c;
	int			rc;
	int			code;

	token_arg = getenv("FERRY_TOKEN");
	/* "+": options stop at the command, whose own options follow it */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				path = optarg;
				break;
			case 'u':
				url = optarg;
				break;
			case 't':
				token_arg = optarg;
				break;
			case 'c':
				ca_file = optarg;
				break;
			case 'h':
				fputs(usage_text, stdout);
				return EXIT_OK;
			case 'V':
				printf("ferry (libferry) %s\n", FERRY_VERSION);
				return EXIT_OK;
			default:
				fprintf(stderr, "Try 'ferry --help'.\n");
				return EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return usage_error("%s", "no command given");
	cmd = argv[optind];
	argc -= optind + 1;
	argv += optind + 1;
	if (strcmp(cmd, "help") == 0)
	{
		fputs(usage_text, stdout);
		return EXIT_OK;
	}
	if (path == NULL || path[0] == '\0')
		path = "ferry.db";

	if ((rc = ferry_open(path, &db, &msg)) != FERRY_OK)
	{
		code = fail(NULL, rc, msg);
		ferry_close(db);
		return code;
	}
	ferry_set_token_callback(db, token_cb, NULL);
	if ((url != NULL && (rc = ferry_set_url(db, url, &msg)) != FERRY_OK) ||
		(ca_file != NULL && ca_file[0] && (rc = ferry_set_ca_file(db, ca_file, &msg)) != FERRY_OK))
	{
		code = fail(db, rc, msg);
		ferry_close(db);
		return code;
	}

	if (strcmp(cmd, "subscribe") == 0)
		code = cmd_subscribe(db, argc, argv);
	else if (strcmp(cmd, "unsubscribe") == 0)
		code = cmd_unsubscribe(db, argc, argv);
	else if (strcmp(cmd, "sync") == 0)
		code = cmd_sync(db, argc, argv);
	else if (strcmp(cmd, "insert") == 0 || strcmp(cmd, "update") == 0 || strcmp(cmd, "delete") == 0)
		code = cmd_write(db, cmd, argc, argv);
	else if (strcmp(cmd, "query") == 0)
		code = cmd_query(db, argc, argv);
	else if (strcmp(cmd, "status") == 0)
		code = cmd_status(db, argc, argv);
	else if (strcmp(cmd, "state") == 0)
		code = cmd_state(db, argc, argv);
	else if (strcmp(cmd, "pending") == 0)
		code = cmd_pending(db, argc, argv);
	else if (strcmp(cmd, "retry") == 0 || strcmp(cmd, "discard") == 0)
		code = cmd_id(db, cmd, argc, argv);
	else if (strcmp(cmd, "conflicts") == 0)
		code = cmd_conflicts(db, argc, argv);
	else if (strcmp(cmd, "resolve") == 0)
		code = cmd_resolve(db, argc, argv);
	else if (strcmp(cmd, "logout") == 0)
		code = cmd_logout(db, argc, argv);
	else
		code = usage_error("unknown command %s", cmd);
	ferry_close(db);
	return code;
}
