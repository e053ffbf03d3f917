/*
 * bench/client/clbench.c -- what libferry costs, each figure beside its limit in the same run.
 *
 * Run by bench/client.sh with PG* pointing at a database that has the ferry extension.
 * Starts gateway/ferryd (push and pull limits off) and measures:
 *
 *   local    ferry_insert (apply to the mirror table + append to the queue, one SQLite
 *            transaction) against a raw single-row INSERT committed alone into a plain
 *            SQLite table of the same columns, in a file of the same directory with the
 *            same settings (WAL, synchronous=FULL): ops/s, p50 and p99 per operation, in
 *            interleaved rounds; the verdict is on the median per-round ratio.
 *   e2e      CL_DRAIN mutations (inserts of new rows) queued offline, then one connection:
 *            the time from ferry_sync_run's start until the server acknowledged the last
 *            one and the queue is empty. The limit: the same number of mutations of the
 *            same shape applied by SELECT ferry.apply_mutation($1, $2) over one libpq
 *            connection, one after the other -- what ferryd does per client -- timed the
 *            same way, in interleaved rounds.
 *
 * Prints key=value lines on stdout (bench/client.sh turns them into the report) and
 * progress on stderr. Exits non-zero only when it could not run.
 */
#include "e2e_harness.h"

#include <ferry.h>
#include <sqlite3.h>
#include <sys/resource.h>

#define TABLE "clb_items"

static int	n_local;			/* operations per local round */
static int	n_drain;			/* mutations per end-to-end round */
static int	rounds;				/* rounds of each comparison */
static char token[4096];
static long next_id = 1000000;	/* keys of new rows, unique across the run */

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n values, sorted in place. */
static double
quantile(double *v, int n, double q)
{
	int			i;

	qsort(v, (size_t) n, sizeof(double), cmp_double);
	i = (int) (q * (n - 1) + 0.5);
	return v[i];
}

static int
env_int(const char *name, int dflt)
{
	const char *s = getenv(name);
	int			v = s ? atoi(s) : dflt;

	if (v <= 0)
		bail_out("%s must be a positive integer", name);
	return v;
}

static int
get_token(void *ctx, const char *user, char *buf, size_t cap)
{
	(void) ctx;
	(void) user;
	if (strlen(token) >= cap)
		return FERRY_AUTH;
	memcpy(buf, token, strlen(token) + 1);
	return FERRY_OK;
}

static void
check(int rc, ferry *db, char *err, const char *what)
{
	if (rc != FERRY_OK)
		bail_out("%s: %s (%s)", what, err ? err : db ? ferry_errmsg(db) : "", ferry_errstr(rc));
	ferry_free(err);
}

/* Opens (a new) file `path`, subscribed to TABLE and synced once, then offline. */
static ferry *
device(const char *path, const char *url)
{
	ferry	   *db;
	char	   *err = NULL;
	char		side[320];

	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
	check(ferry_open(path, &db, &err), NULL, err, "ferry_open");
	err = NULL;
	check(ferry_set_url(db, url, &err), db, err, "ferry_set_url");
	ferry_set_token_callback(db, get_token, NULL);
	ferry_config(db, FERRY_OPT_MAX_BATCH, 1000);
	if (getenv("CL_SYNCHRONOUS"))
		ferry_config(db, FERRY_OPT_SYNCHRONOUS, atoi(getenv("CL_SYNCHRONOUS")));
	err = NULL;
	check(ferry_subscribe(db, TABLE, NULL, NULL, &err), db, err, "ferry_subscribe");
	err = NULL;
	check(ferry_sync_run(db, 60000, FERRY_SYNC_UNTIL_SYNCED, &err), db, err, "first sync");
	ferry_sync_stop(db);
	return db;
}

/* CPU seconds (user + system) this process used so far. */
static double
cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds (user + system) process pid used so far, -1 when unknown. */
static double
proc_cpu_s(pid_t pid)
{
	char		path[64];
	char		buf[1024];
	FILE	   *f;
	char	   *p;
	unsigned long ut,
				st;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (p == NULL || (p = strrchr(buf, ')')) == NULL ||
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double) (ut + st) / (double) sysconf(_SC_CLK_TCK);
}

/* A sum from ferryd's /metrics (e.g. "ferry_apply_duration_seconds_sum"), 0 when absent. */
static double
metric(Gw *g, const char *name)
{
	char	   *body = http_get(g->port, "/metrics");
	char	   *p = body;
	double		v = 0;

	while (p != NULL && (p = strstr(p, name)) != NULL)
	{
		if ((p == body || p[-1] == '\n') && p[strlen(name)] == ' ')
		{
			v = atof(p + strlen(name) + 1);
			break;
		}
		p += strlen(name);
	}
	free(body);
	return v;
}

static void
row_json(char *buf, size_t cap, long id)
{
	snprintf(buf, cap, "{\"id\": %ld, \"ws\": \"ws-a\", \"title\": \"item %ld\", \"n\": %ld}", id, id, id % 97);
}

/* ---- local writes -------------------------------------------------------------------- */

typedef struct Round
{
	double		ops;			/* per second */
	double		p50,
				p99;			/* microseconds per operation */
} Round;

static Round
summarize(double *lat, int n, double total_us)
{
	Round		r;

	r.ops = n / (total_us / 1e6);
	r.p50 = quantile(lat, n, 0.50);
	r.p99 = quantile(lat, n, 0.99);
	return r;
}

static Round
local_ferry(ferry *db, double *lat)
{
	char		json[200];
	double		t0 = now_us();

	for (int i = 0; i < n_local; i++)
	{
		double		t = now_us();
		char	   *err = NULL;

		row_json(json, sizeof(json), next_id++);
		check(ferry_insert(db, TABLE, json, NULL, &err), db, err, "ferry_insert");
		lat[i] = now_us() - t;
	}
	return summarize(lat, n_local, now_us() - t0);
}

static Round
local_raw(sqlite3 *s, double *lat)
{
	sqlite3_stmt *st;
	double		t0;

	if (sqlite3_prepare_v2(s, "INSERT INTO items (id, ws, title, n) VALUES (?, ?, ?, ?)", -1, &st, NULL) != SQLITE_OK)
		bail_out("sqlite: %s", sqlite3_errmsg(s));
	t0 = now_us();
	for (int i = 0; i < n_local; i++)
	{
		double		t = now_us();
		long		id = next_id++;
		char		title[40];

		snprintf(title, sizeof(title), "item %ld", id);
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, "ws-a", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, title, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, id % 97);
		if (sqlite3_step(st) != SQLITE_DONE)
			bail_out("sqlite insert: %s", sqlite3_errmsg(s));
		sqlite3_reset(st);
		lat[i] = now_us() - t;
	}
	sqlite3_finalize(st);
	return summarize(lat, n_local, now_us() - t0);
}

static sqlite3 *
raw_open(const char *path)
{
	sqlite3    *s;
	char		side[320];

	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	if (sqlite3_open(path, &s) != SQLITE_OK ||
		sqlite3_exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
					 "CREATE TABLE items (id INTEGER PRIMARY KEY, ws TEXT NOT NULL, title TEXT, n INTEGER)",
					 NULL, NULL, NULL) != SQLITE_OK)
		bail_out("sqlite %s: %s", path, sqlite3_errmsg(s));
	return s;
}

static void
bench_local(Gw *g)
{
	char		path[300];
	ferry	   *db;
	sqlite3    *raw;
	double	   *lat = calloc((size_t) n_local, sizeof(double));
	double		ratio[64];

	snprintf(path, sizeof(path), "%s/local.db", g->dir);
	db = device(path, g->url);
	snprintf(path, sizeof(path), "%s/raw.db", g->dir);
	raw = raw_open(path);
	for (int r = 0; r < rounds; r++)
	{
		Round		a = local_raw(raw, lat);
		Round		b = local_ferry(db, lat);

		ratio[r] = b.ops / a.ops;
		printf("local.%d.raw_ops=%.0f\nlocal.%d.raw_p50_us=%.1f\nlocal.%d.raw_p99_us=%.1f\n", r, a.ops, r, a.p50, r, a.p99);
		printf("local.%d.ferry_ops=%.0f\nlocal.%d.ferry_p50_us=%.1f\nlocal.%d.ferry_p99_us=%.1f\n", r, b.ops, r, b.p50, r,
			   b.p99);
		fprintf(stderr, "clbench: local round %d: raw %.0f/s p99 %.0f us, ferry %.0f/s p99 %.0f us (%.1f%%)\n", r, a.ops,
				a.p99, b.ops, b.p99, 100 * ratio[r]);
		fflush(stdout);
	}
	printf("local.ratio_median=%.4f\n", quantile(ratio, rounds, 0.5));
	sqlite3_close(raw);
	ferry_close(db);
	free(lat);
}

/* ---- end to end ---------------------------------------------------------------------- */

/* Seconds to apply n_drain inserts with ferry.apply_mutation over one libpq connection. */
static double
e2e_libpq(void)
{
	PGconn	   *c = PQconnectdb("");
	const char *claims = "{\"sub\": \"u1\", \"tenants\": [\"ws-a\"]}";
	double		t0;

	if (PQstatus(c) != CONNECTION_OK)
		bail_out("libpq: %s", PQerrorMessage(c));
	t0 = now_us();
	for (int i = 0; i < n_drain; i++)
	{
		char		m[512];
		char		json[200];
		long		id = next_id++;
		const char *params[2] = {m, claims};
		PGresult   *res;

		row_json(json, sizeof(json), id);
		/* the same mutation a device sends: an insert with its values, an id and a clock */
		snprintf(m, sizeof(m),
				 "{\"id\": \"%08x-0000-7000-8000-%012ld\", \"client_id\": \"bench-libpq\", "
				 "\"table\": \"public." TABLE "\", \"op\": \"insert\", \"key\": {\"id\": %ld}, "
				 "\"changes\": {\"id\": {\"new\": %ld}, \"ws\": {\"new\": \"ws-a\"}, "
				 "\"title\": {\"new\": \"item %ld\"}, \"n\": {\"new\": %ld}}, \"clock\": \"%lld-0-bench\"}",
				 (unsigned) time(NULL), id, id, id, id, id % 97, now_ms());
		res = PQexecParams(c, "SELECT ferry.apply_mutation($1::jsonb, $2::jsonb)->>'status'", 2, NULL, params, NULL,
						   NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "applied") != 0)
			bail_out("apply_mutation: %s %s", PQerrorMessage(c),
					 PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : "");
		PQclear(res);
	}
	t0 = (now_us() - t0) / 1e6;
	PQfinish(c);
	return t0;
}

/* Seconds from connecting until n_drain inserts queued offline are acknowledged. */
static double
e2e_ferry(Gw *g, int round)
{
	char		path[300];
	char		json[200];
	ferry	   *db;
	ferry_status st;
	char	   *err = NULL;
	double		t0,
				t;
	double		q0,
				c0,
				f0,
				a0;

	snprintf(path, sizeof(path), "%s/drain-%d.db", g->dir, round);
	db = device(path, g->url);
	q0 = now_us();
	for (int i = 0; i < n_drain; i++)
	{
		row_json(json, sizeof(json), next_id++);
		check(ferry_insert(db, TABLE, json, NULL, &err), db, err, "ferry_insert");
		err = NULL;
	}
	fprintf(stderr, "clbench: queued %d mutations offline in %.2f s\n", n_drain, (now_us() - q0) / 1e6);
	t0 = now_us();
	c0 = cpu_s();
	f0 = proc_cpu_s(g->pid);
	a0 = metric(g, "ferry_apply_duration_seconds_sum");
	check(ferry_sync_run(db, 600000, FERRY_SYNC_UNTIL_SYNCED, &err), db, err, "drain");
	t = (now_us() - t0) / 1e6;
	printf("e2e.%d.client_cpu_s=%.3f\ne2e.%d.ferryd_cpu_s=%.3f\ne2e.%d.apply_s=%.3f\n", round, cpu_s() - c0, round,
		   proc_cpu_s(g->pid) - f0, round, metric(g, "ferry_apply_duration_seconds_sum") - a0);
	ferry_get_status(db, &st);
	if (st.queue_length != 0 || st.failed != 0 || st.conflicts != 0)
		bail_out("after the drain: queue %d, failed %d, conflicts %d", st.queue_length, st.failed, st.conflicts);
	ferry_sync_stop(db);
	ferry_close(db);
	return t;
}

static void
bench_e2e(Gw *g)
{
	double		ratio[64];

	for (int r = 0; r < rounds; r++)
	{
		double		a = e2e_libpq();
		double		b = e2e_ferry(g, r);

		ratio[r] = a / b;
		printf("e2e.%d.libpq_s=%.3f\ne2e.%d.libpq_ops=%.0f\ne2e.%d.ferry_s=%.3f\ne2e.%d.ferry_ops=%.0f\n", r, a, r,
			   n_drain / a, r, b, r, n_drain / b);
		fprintf(stderr, "clbench: e2e round %d: libpq %.2f s (%.0f/s), ferry drain %.2f s (%.0f/s) (%.1f%%)\n", r, a,
				n_drain / a, b, n_drain / b, 100 * ratio[r]);
		fflush(stdout);
	}
	printf("e2e.ratio_median=%.4f\n", quantile(ratio, rounds, 0.5));
	if (sqlv("SELECT count(*) FROM " TABLE " WHERE id >= 1000000") == NULL)
		bail_out("no rows");
}

int
main(void)
{
	Gw		   *g;
	const char *only = getenv("CL_ONLY") ? getenv("CL_ONLY") : "local e2e";
	const char *extra[] = {"--push-rate=0", "--pull-rate=0", getenv("CL_FERRYD_ARG"), NULL};
	char	   *n;

	n_local = env_int("CL_LOCAL_OPS", 2000);
	n_drain = env_int("CL_DRAIN", 10000);
	rounds = env_int("CL_ROUNDS", 3);
	if (rounds > 64)
		bail_out("CL_ROUNDS must be at most 64");

	sql("DROP TABLE IF EXISTS " TABLE);
	sql("CREATE TABLE " TABLE " (id bigint PRIMARY KEY, ws text NOT NULL, title text, n int NOT NULL DEFAULT 0)");
	sql("SELECT ferry.enable_sync('" TABLE "', 'ws')");
	sql("INSERT INTO " TABLE " (id, ws, title) SELECT i, 'ws-a', 'seed ' || i FROM generate_series(1, 100) i");

	g = gw_start_args(NULL, extra);
	make_token("u1:ws-a", token, sizeof(token));
	printf("local_ops=%d\ndrain=%d\nrounds=%d\n", n_local, n_drain, rounds);
	if (strstr(only, "local"))
		bench_local(g);
	if (strstr(only, "e2e"))
		bench_e2e(g);
	n = sqlv("SELECT count(*) FROM " TABLE " WHERE id >= 1000000");
	printf("server_rows=%s\n", n);
	free(n);
	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	sql("DROP TABLE " TABLE);
	return 0;
}
