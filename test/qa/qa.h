/*
 * test/qa/qa.h -- the offline QA scenarios' harness: proxies, seeds, and the result line.
 *
 * Header only. Builds on test/client/e2e_harness.h (a real ferryd, devices driven by
 * `ferry` CLI processes, Postgres through the PG* variables) and adds:
 *
 *   - netproxy control: np_start("127.0.0.1:PORT" or "unix:PATH") starts
 *     build/test/qa/netproxy in front of a target; np_cmd(np, "delay %d %d", 200, 50)
 *     steers it while the test runs (commands in netproxy.c); np_pg() is a proxy in front
 *     of Postgres's Unix socket, for ferryd's conninfo (qa_pg_conninfo);
 *   - dev_via(g, np, name, spec): a device whose server URL is a proxy;
 *   - qa_begin(number, name): starts the scenario's clock, and at exit appends one line
 *     "number|name|result|sent|confirmed|duplicates|lost|ms" to $FERRY_QA_REPORT, from
 *     which test/run.sh prints the table (result: pass, FAIL, or FAIL when it bailed out);
 *     the scenario fills qa.sent, qa.confirmed, qa.dups and qa.lost;
 *   - qa_seed(): FERRY_QA_SEED or a fresh seed, printed so that a failure can be replayed.
 */
#ifndef FERRY_TEST_QA_H
#define FERRY_TEST_QA_H

#include <sys/prctl.h>
#include <sys/un.h>

#include "client/e2e_harness.h"

#define NETPROXY (getenv("FERRY_TEST_NETPROXY") ? getenv("FERRY_TEST_NETPROXY") : "build/test/qa/netproxy")

/* The scenario's figures for the summary table. */
static struct
{
	int			number;			/* scenario number */
	char		name[64];		/* short name */
	long long	started;		/* ms, monotonic */
	long		sent;			/* mutations the devices made */
	long		confirmed;		/* mutations the server confirmed (applied, merged or resolved) */
	long		dups;			/* mutations found applied more than once */
	long		lost;			/* mutations made and confirmed but not on the server */
	unsigned long seed;			/* the seed of a randomized scenario, 0 when none */
} qa;

/* ---- netproxy ---------------------------------------------------------------------- */

typedef struct Np
{
	pid_t		pid;			/* the proxy process */
	int			port;			/* where it listens (127.0.0.1) */
	char		ctl[108];		/* its control socket */
	char		dir[64];		/* its directory (control socket, port file, log) */
} Np;

#define QA_MAX_PROXIES 16
static Np  *qa_proxies[QA_MAX_PROXIES];	/* stopped at exit */

static inline void
np_kill_all(void)
{
	for (int i = 0; i < QA_MAX_PROXIES; i++)
		if (qa_proxies[i] != NULL && qa_proxies[i]->pid > 0)
		{
			kill(qa_proxies[i]->pid, SIGKILL);
			waitpid(qa_proxies[i]->pid, NULL, 0);
			qa_proxies[i]->pid = 0;
		}
}

/* np_start starts a proxy in front of target (HOST:PORT or unix:PATH); bails out on failure. */
static inline Np *
np_start(const char *target)
{
	Np		   *np = calloc(1, sizeof(Np));
	char		pf[128];
	long long	deadline = now_ms() + 10000;
	static int	registered;
	int			slot = -1;

	snprintf(np->dir, sizeof(np->dir), "/tmp/ferry-np-XXXXXX");
	if (mkdtemp(np->dir) == NULL)
		bail_out("mkdtemp failed");
	snprintf(np->ctl, sizeof(np->ctl), "%s/ctl", np->dir);
	snprintf(pf, sizeof(pf), "%s/port", np->dir);
	np->pid = fork();
	if (np->pid == 0)
	{
		char		a1[320],
					a2[200],
					a3[200],
					log[128];

		prctl(PR_SET_PDEATHSIG, SIGKILL);	/* no proxy outlives a crashed test */
		snprintf(log, sizeof(log), "%s/log", np->dir);
		if (freopen(log, "a", stderr) == NULL)
			_exit(126);
		snprintf(a1, sizeof(a1), "--to=%s", target);
		snprintf(a2, sizeof(a2), "--control=%s", np->ctl);
		snprintf(a3, sizeof(a3), "--port-file=%s", pf);
		execl(NETPROXY, "netproxy", "--listen=127.0.0.1:0", a1, a2, a3, (char *) NULL);
		_exit(127);
	}
	if (!registered)
	{
		atexit(np_kill_all);
		registered = 1;
	}
	for (int i = 0; i < QA_MAX_PROXIES; i++)
		if (qa_proxies[i] == NULL)
		{
			slot = i;
			break;
		}
	if (slot < 0)
		bail_out("more than %d proxies", QA_MAX_PROXIES);
	qa_proxies[slot] = np;
	while (now_ms() < deadline)
	{
		FILE	   *f = fopen(pf, "r");

		if (f != NULL)
		{
			int			okay = fscanf(f, "%d", &np->port) == 1;

			fclose(f);
			if (okay && np->port > 0)
				return np;
		}
		if (waitpid(np->pid, NULL, WNOHANG) == np->pid)
		{
			np->pid = 0;
			bail_out("netproxy exited at start (is %s built?)", NETPROXY);
		}
		usleep(20000);
	}
	bail_out("netproxy did not start");
	return NULL;
}

/* np_cmd sends one command; returns its answer (static buffer); bails out on "err" or no answer. */
static inline TAP_PRINTF(2, 3) const char *
np_cmd(Np *np, const char *fmt, ...)
{
	static char reply[256];
	char		line[200];
	struct sockaddr_un sa;
	va_list		ap;
	int			fd;
	ssize_t		n = 0,
				r;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, np->ctl, sizeof(np->ctl));
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
		bail_out("cannot reach the netproxy control socket %s: %s", np->ctl, strerror(errno));
	if (write(fd, line, strlen(line)) != (ssize_t) strlen(line))
		bail_out("cannot send '%s' to netproxy", line);
	while ((r = read(fd, reply + n, sizeof(reply) - 1 - (size_t) n)) > 0)
		n += r;
	close(fd);
	reply[n > 0 ? n : 0] = '\0';
	reply[strcspn(reply, "\n")] = '\0';
	if (strncmp(reply, "ok", 2) != 0)
		bail_out("netproxy refused '%s': %s", line, reply);
	return reply;
}

/* np_stat reads one figure of "stats" (e.g. "resets"), -1 when absent. */
static inline long
np_stat(Np *np, const char *name)
{
	const char *r = np_cmd(np, "stats");
	char		key[40];
	const char *p;

	snprintf(key, sizeof(key), " %s=", name);
	p = strstr(r, key);
	return p ? atol(p + strlen(key)) : -1;
}

static inline void
np_stop(Np *np)
{
	char		cmd[128];

	if (np->pid > 0)
	{
		kill(np->pid, SIGTERM);
		waitpid(np->pid, NULL, 0);
		np->pid = 0;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", np->dir);
	if (system(cmd) != 0)
		diag("could not remove %s", np->dir);
}

/* np_pg starts a proxy in front of the test cluster's Unix socket (PGHOST, PGPORT). */
static inline Np *
np_pg(void)
{
	char		target[300];
	const char *host = getenv("PGHOST");
	const char *port = getenv("PGPORT");

	if (host == NULL || host[0] != '/')
		bail_out("PGHOST is not a socket directory");
	snprintf(target, sizeof(target), "unix:%s/.s.PGSQL.%s", host, port ? port : "5432");
	return np_start(target);
}

/* qa_pg_conninfo: ferryd's database through a Postgres proxy (sets FERRY_DATABASE_URL). */
static inline void
qa_pg_conninfo(Np *pgp)
{
	char		ci[256];

	snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=%s dbname=%s", pgp->port,
			 getenv("PGUSER") ? getenv("PGUSER") : "postgres",
			 getenv("PGDATABASE") ? getenv("PGDATABASE") : "ferry_test");
	setenv("FERRY_DATABASE_URL", ci, 1);
}

/* ---- devices ----------------------------------------------------------------------- */

/* dev_via: a new device whose server is ferryd seen through the proxy np. */
static inline Dev
dev_via(Gw *g, Np *np, const char *name, const char *token_spec)
{
	Dev			d = dev_new(g, name, token_spec);

	snprintf(d.url, sizeof(d.url), "ws://127.0.0.1:%d", np->port);
	return d;
}

/* The device's queue length (any status). */
static inline int
dev_queue(Dev *d)
{
	char	   *s = dev_q(d, "SELECT count(*) FROM ferry_queue");
	int			n = atoi(s);

	free(s);
	return n;
}

/* dev_drain syncs (several processes if a fault cuts one) until the queue is empty and synced. */
static inline int
dev_drain(Dev *d, int sec)
{
	long long	deadline = now_ms() + (long long) sec * 1000;

	while (now_ms() < deadline)
	{
		int			left = (int) ((deadline - now_ms()) / 1000);

		if (dev_sync(d, left < 5 ? 5 : left) == 0 && dev_queue(d) == 0)
			return 1;
		usleep(200000);
	}
	return 0;
}

/* The integer value of a server query. */
static inline long
sqll(const char *fmt, ...)
{
	char		q[8192];
	va_list		ap;
	char	   *v;
	long		n;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	v = sqlv("%s", q);
	n = atol(v);
	free(v);
	return n;
}

/* A counter of ferryd's /metrics: the first sample whose line starts with name; -1 when absent. */
static inline long
qa_metric(Gw *g, const char *name)
{
	char	   *body = http_get(g->port, "/metrics");
	char	   *p = body;
	long		v = -1;

	while ((p = strstr(p, name)) != NULL)
	{
		if (p == body || p[-1] == '\n')
		{
			char	   *sp = strchr(p, ' ');

			if (sp)
				v = atol(sp + 1);
			break;
		}
		p += strlen(name);
	}
	free(body);
	return v;
}

/* ---- the scenarios' table ---------------------------------------------------------- */

/*
 * qa_table_create makes a synced table NAME (id int key, tenant column ws) with a column
 * per conflict rule: title and body lww, status version, note manual, tags set_union,
 * n counter, made immutable. Dropped first if it exists.
 */
static inline void
qa_table_create(const char *name)
{
	sql("DROP TABLE IF EXISTS %s", name);
	sql("CREATE TABLE %s (id int PRIMARY KEY, ws text NOT NULL, title text, body text, status text, note text, "
		"tags text[] NOT NULL DEFAULT '{}', n int NOT NULL DEFAULT 0, made text)", name);
	sql("SELECT ferry.enable_sync('%s', 'ws')", name);
	sql("SELECT ferry.set_conflict_rule('%s', 'status', 'version')", name);
	sql("SELECT ferry.set_conflict_rule('%s', 'note', 'manual')", name);
	sql("SELECT ferry.set_conflict_rule('%s', 'tags', 'set_union')", name);
	sql("SELECT ferry.set_conflict_rule('%s', 'n', 'counter')", name);
	sql("SELECT ferry.set_conflict_rule('%s', 'made', 'immutable')", name);
}

/* Takes a device's link down: new connections are refused, open ones reset. */
static inline void
np_offline(Np *np)
{
	np_cmd(np, "refuse on");
	np_cmd(np, "close");
}

/* ---- the scenario's result line ----------------------------------------------------- */

static inline void
qa_report(void)
{
	const char *path = getenv("FERRY_QA_REPORT");
	struct tap_state *st = tap_state();
	FILE	   *f;
	const char *result;

	if (st->failed > 0)
		result = "FAIL";
	else if (st->planned >= 0 && st->run == st->planned)
		result = "pass";
	else
		result = "FAIL";		/* bailed out before done_testing */
	fprintf(stderr, "# scenario %d (%s): %s, sent %ld, confirmed %ld, duplicates %ld, lost %ld, %.1f s\n",
			qa.number, qa.name, result, qa.sent, qa.confirmed, qa.dups, qa.lost,
			(double) (now_ms() - qa.started) / 1000.0);
	if (qa.seed)
		fprintf(stderr, "# seed %lu: reproduce with FERRY_QA_SEED=%lu\n", qa.seed, qa.seed);
	if (path == NULL || (f = fopen(path, "a")) == NULL)
		return;
	fprintf(f, "%d|%s|%s|%ld|%ld|%ld|%ld|%lld|%lu\n", qa.number, qa.name, result, qa.sent, qa.confirmed, qa.dups,
			qa.lost, now_ms() - qa.started, qa.seed);
	fclose(f);
}

/*
 * qa_check_writes ends a scenario whose ndev devices created rows (ids from 1000 on;
 * `creates` in all), each added deltas to its own counter record (id counter_id[d], the
 * sum delta[d]) and made made[d] mutations: every create on the server once, each counter
 * the sum of its deltas, each device's mutations recorded once, and each device holding
 * exactly the server's rows of its tenant (device other_tenant's is ws-b, the others'
 * ws-a). Fills qa.confirmed, qa.dups and qa.lost.
 */
static inline void
qa_check_writes(const char *table, Dev *dev, int ndev, long creates, const int *counter_id, const long *delta,
				const long *made, int other_tenant)
{
	long		on = sqll("SELECT count(*) FROM %s WHERE id >= 1000", table);
	long		twice = sqll("SELECT count(*) FROM %s WHERE id >= 1000 AND ferry_version <> 1", table);
	long		over = 0,
				under = 0;
	char		rows[300];

	is_int(on, creates, "all %ld creates are on the server", creates);
	is_int(twice, 0, "none written twice");
	for (int d = 0; d < ndev; d++)
	{
		long		n = sqll("SELECT n FROM %s WHERE id = %d", table, counter_id[d]);

		is_int(n, delta[d], "device %d's counter is the sum of the deltas it made", d);
		over += n > delta[d] ? n - delta[d] : 0;
		under += n < delta[d] ? delta[d] - n : 0;
	}
	qa.dups = over + twice;
	qa.lost = (creates - on) + under;
	snprintf(rows, sizeof(rows), "SELECT group_concat(id || ':' || title || ':' || n, ',') FROM (SELECT * FROM %s "
			 "ORDER BY id)", table);
	for (int d = 0; d < ndev; d++)
	{
		char	   *cid = dev_q(&dev[d], "SELECT value FROM ferry_meta WHERE key = 'client_id'");
		long		rec = sqll("SELECT count(*) FROM ferry.mutations WHERE client_id = '%s'", cid);
		char	   *want = sqlv("SELECT string_agg(id || ':' || title || ':' || n, ',' ORDER BY id) FROM %s "
								"WHERE ws = '%s'", table, d == other_tenant ? "ws-b" : "ws-a");

		is_int(rec, made[d], "device %d: the server recorded each of its %ld mutations once", d, made[d]);
		qa.confirmed += rec;
		is_dev(&dev[d], rows, want, "device holds exactly the server's rows of its tenant");
		free(cid);
		free(want);
	}
}

/* qa_begin names the scenario and starts its clock; the result line is written at exit. */
static inline void
qa_begin(int number, const char *name)
{
	qa.number = number;
	snprintf(qa.name, sizeof(qa.name), "%s", name);
	qa.started = now_ms();
	atexit(qa_report);
	note("scenario %d: %s", number, name);
}

/* qa_seed: FERRY_QA_SEED when set, else a fresh one; printed either way. */
static inline unsigned long
qa_seed(void)
{
	const char *s = getenv("FERRY_QA_SEED");

	qa.seed = s && *s ? strtoul(s, NULL, 10) : (unsigned long) (time(NULL) ^ (getpid() << 8));
	if (qa.seed == 0)
		qa.seed = 1;
	diag("seed %lu (FERRY_QA_SEED=%lu reproduces this run)", qa.seed, qa.seed);
	return qa.seed;
}

/* qa_full: whether the long variants run (FERRY_QA_FULL=1, make test-full). */
static inline int
qa_full(void)
{
	const char *s = getenv("FERRY_QA_FULL");

	return s != NULL && strcmp(s, "1") == 0;
}

#endif
