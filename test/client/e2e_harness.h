/*
 * test/client/e2e_harness.h -- real Postgres, real ferryd, and devices running the `ferry` CLI.
 *
 * Header only, for the client's end-to-end tests. The database comes from the test
 * harness (PG* variables); ferryd is gateway/ferryd, started as a child on a free port
 * with its own data directory (as test/gateway/ferryd_harness.h does), tokens come from
 * `ferryd --make-token`. A device is a SQLite file driven by separate `ferry` processes
 * (build/client/ferry), so two devices of one user are two files and many processes.
 *
 *     Gw *g = gw_start(NULL);                            // waits for /healthz 200
 *     Dev a = dev_new(g, "a", "u1:ws-a");                // a file, a token, the URL
 *     dev_ok(&a, "subscribe", "todos", NULL);            // runs: ferry --db ... subscribe todos
 *     char *rows = dev_out(&a, "query", "SELECT ...", NULL);
 *     gw_stop(g, SIGTERM);
 */
#ifndef FERRY_TEST_E2E_HARNESS_H
#define FERRY_TEST_E2E_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "tap.h"

#define GW_SECRET "client-test-secret-client-test-secret-0123456789"
#define GW_SLOT "ferry_test_client"
/* The CLI under test: build/client/ferry, or $FERRY_TEST_CLI (e.g. a sanitizer build). */
#define CLI (getenv("FERRY_TEST_CLI") ? getenv("FERRY_TEST_CLI") : "build/client/ferry")

static inline long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Postgres ---------------------------------------------------------------------- */

static inline PGconn *
pg(void)
{
	static PGconn *c;

	if (c == NULL)
	{
		c = PQconnectdb("");
		if (PQstatus(c) != CONNECTION_OK)
			bail_out("cannot connect to the test database: %s", PQerrorMessage(c));
		PQclear(PQexec(c, "SET client_min_messages = warning"));
	}
	return c;
}

static inline void
sql(const char *fmt, ...)
{
	char		q[8192];
	va_list		ap;
	PGresult   *r;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	r = PQexec(pg(), q);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		bail_out("SQL failed: %s\n%s", q, PQerrorMessage(pg()));
	PQclear(r);
}

/* The first value of a query (malloc'd; "" when no row, "NULL" for null). */
static inline char *
sqlv(const char *fmt, ...)
{
	char		q[8192];
	va_list		ap;
	PGresult   *r;
	char	   *v;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	r = PQexec(pg(), q);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		bail_out("SQL failed: %s\n%s", q, PQerrorMessage(pg()));
	v = strdup(PQntuples(r) == 0 ? "" : PQgetisnull(r, 0, 0) ? "NULL" : PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

#define is_sql(want, name, ...) \
	do { \
		char *got_ = sqlv(__VA_ARGS__); \
		is_str(got_, (want), "%s", (name)); \
		free(got_); \
	} while (0)

/* ---- ferryd ------------------------------------------------------------------------ */

typedef struct Gw
{
	pid_t		pid;			/* the child */
	int			port;			/* its port */
	char		dir[128];		/* its data directory, kept across restarts */
	char		log[160];		/* its log */
	char		url[64];		/* ws://127.0.0.1:PORT */
} Gw;

static inline int
http_status(int port, const char *path)
{
	struct sockaddr_in sa;
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	char		buf[512];
	int			status = 0;
	ssize_t		n;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
	{
		snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
		if (write(fd, buf, strlen(buf)) > 0)
		{
			struct pollfd p = {fd, POLLIN, 0};

			if (poll(&p, 1, 2000) > 0 && (n = read(fd, buf, sizeof(buf) - 1)) > 12)
			{
				buf[n] = 0;
				status = atoi(buf + 9);
			}
		}
	}
	close(fd);
	return status;
}

/*
 * Sends one whole HTTP request to 127.0.0.1:port and returns what came back until the
 * server closed or was quiet for timeout_ms (malloc'd; "" on failure).
 */
static inline char *
http_exchange(int port, const char *request, int timeout_ms)
{
	struct sockaddr_in sa;
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	char	   *buf = calloc(1, 1);
	size_t		len = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 &&
		write(fd, request, strlen(request)) == (ssize_t) strlen(request))
	{
		struct pollfd p = {fd, POLLIN, 0};

		while (poll(&p, 1, timeout_ms) > 0)
		{
			char		chunk[8192];
			ssize_t		r = read(fd, chunk, sizeof(chunk));

			if (r <= 0)
				break;
			buf = realloc(buf, len + (size_t) r + 1);
			memcpy(buf + len, chunk, (size_t) r);
			len += (size_t) r;
			buf[len] = '\0';
		}
	}
	close(fd);
	return buf;
}

/* The response to GET path (malloc'd; "" on failure). */
static inline char *
http_get(int port, const char *path)
{
	char		req[256];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	return http_exchange(port, req, 2000);
}

static Gw  *gw_running;			/* the ferryd to kill if the test bails out */

static inline void
gw_kill_at_exit(void)
{
	if (gw_running != NULL && gw_running->pid > 0)
	{
		kill(gw_running->pid, SIGKILL);
		waitpid(gw_running->pid, NULL, 0);
	}
}

/* Starts ferryd (in g's data dir when g is given: a restart). extra: NULL-terminated flags. */
static inline Gw *
gw_start_args(Gw *g, const char *const *extra)
{
	char		portfile[200];
	long long	deadline;

	if (g == NULL)
	{
		g = calloc(1, sizeof(Gw));
		snprintf(g->dir, sizeof(g->dir), "/tmp/ferry-client-e2e-XXXXXX");
		if (mkdtemp(g->dir) == NULL)
			bail_out("mkdtemp failed");
		snprintf(g->log, sizeof(g->log), "%s.log", g->dir);
	}
	snprintf(portfile, sizeof(portfile), "%s/port", g->dir);
	unlink(portfile);
	if (gw_running == NULL)
		atexit(gw_kill_at_exit);
	gw_running = g;
	g->pid = fork();
	if (g->pid == 0)
	{
		char		data[200],
					pf[220];
		const char *argv[32];
		int			n = 0;

		if (freopen(g->log, "a", stderr) == NULL)
			_exit(126);
		snprintf(data, sizeof(data), "--data-dir=%s/data", g->dir);
		snprintf(pf, sizeof(pf), "--port-file=%s", portfile);
		setenv("FERRY_JWT_SECRET", GW_SECRET, 1);
		if (getenv("FERRY_DATABASE_URL") == NULL)
			setenv("FERRY_DATABASE_URL", "", 1);	/* the PG* variables */
		argv[n++] = "ferryd";
		argv[n++] = "--listen=127.0.0.1:0";
		argv[n++] = data;
		argv[n++] = pf;
		argv[n++] = "--slot=" GW_SLOT;
		for (int i = 0; extra && extra[i] && n < 30; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		execv("gateway/ferryd", (char *const *) argv);
		_exit(127);
	}
	deadline = now_ms() + 20000;
	while (now_ms() < deadline)
	{
		FILE	   *f = fopen(portfile, "r");

		if (f != NULL)
		{
			if (fscanf(f, "%d", &g->port) != 1)
				g->port = 0;
			fclose(f);
			if (g->port > 0 && http_status(g->port, "/healthz") == 200)
			{
				snprintf(g->url, sizeof(g->url), "ws://127.0.0.1:%d", g->port);
				return g;
			}
		}
		if (waitpid(g->pid, NULL, WNOHANG) == g->pid)
		{
			g->pid = 0;
			bail_out("ferryd exited at start; see %s", g->log);
		}
		usleep(50000);
	}
	bail_out("ferryd did not become healthy; see %s", g->log);
	return NULL;
}

static inline Gw *
gw_start(Gw *g)
{
	return gw_start_args(g, NULL);
}

/* Stops ferryd with sig; returns its wait status. */
static inline int
gw_stop(Gw *g, int sig)
{
	int			status = 0;
	long long	deadline = now_ms() + 10000;

	kill(g->pid, sig);
	while (waitpid(g->pid, &status, WNOHANG) != g->pid)
	{
		if (now_ms() > deadline)
		{
			kill(g->pid, SIGKILL);
			waitpid(g->pid, &status, 0);
			g->pid = 0;
			return -1;
		}
		usleep(20000);
	}
	g->pid = 0;
	return status;
}

/* Removes ferryd's directory and replication slot (ferryd must be stopped). */
static inline void
gw_cleanup(Gw *g)
{
	char		cmd[400];

	if (gw_running == g)
		gw_running = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", g->dir, g->log);
	if (getenv("FERRY_TEST_KEEP") == NULL && system(cmd) != 0)
		diag("could not remove %s", g->dir);
	for (int i = 0; i < 50; i++)
	{
		PGresult   *r = PQexec(pg(), "SELECT pg_drop_replication_slot('" GW_SLOT "') WHERE EXISTS "
								"(SELECT 1 FROM pg_replication_slots WHERE slot_name = '" GW_SLOT "')");
		int			okay = PQresultStatus(r) == PGRES_TUPLES_OK;

		PQclear(r);
		if (okay)
			break;
		usleep(100000);
	}
	free(g);
}

/* ---- devices ------------------------------------------------------------------------ */

typedef struct Dev
{
	char		db[200];		/* the device's file */
	char		token[4096];	/* its token */
	char		url[64];		/* the server */
} Dev;

/* A token for "SUB:T1,T2" from ferryd --make-token, valid ttl seconds. */
static inline void
make_token_ttl(const char *spec, int ttl, char *out, size_t cap)
{
	char		cmd[512];
	FILE	   *p;

	snprintf(cmd, sizeof(cmd), "FERRY_JWT_SECRET='%s' gateway/ferryd --make-token='%s' --token-ttl=%d", GW_SECRET,
			 spec, ttl);
	p = popen(cmd, "r");
	if (p == NULL || fgets(out, (int) cap, p) == NULL)
		bail_out("cannot make a token for %s", spec);
	pclose(p);
	out[strcspn(out, "\r\n")] = '\0';
}

static inline void
make_token(const char *spec, char *out, size_t cap)
{
	make_token_ttl(spec, 86400, out, cap);
}

/* A new device: a fresh file in the gateway's directory. */
static inline Dev
dev_new(Gw *g, const char *name, const char *token_spec)
{
	Dev			d;
	char		side[260];

	memset(&d, 0, sizeof(d));
	snprintf(d.db, sizeof(d.db), "%s/%s.db", g->dir, name);
	unlink(d.db);
	snprintf(side, sizeof(side), "%s-wal", d.db);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", d.db);
	unlink(side);
	make_token(token_spec, d.token, sizeof(d.token));
	snprintf(d.url, sizeof(d.url), "%s", g->url);
	return d;
}

/*
 * Runs `ferry --db D --url U COMMAND ARGS...` (args NULL-terminated, the token in
 * FERRY_TOKEN) and returns its exit status; *out (when not NULL) gets its stdout
 * (malloc'd). Stderr goes to the test's stderr.
 */
static inline int
dev_runv(Dev *d, char **out, va_list ap)
{
	const char *argv[40];
	int			n = 0;
	int			pipefd[2];
	pid_t		pid;
	int			status;
	char	   *buf = NULL;
	size_t		len = 0;
	const char *a;

	argv[n++] = CLI;
	argv[n++] = "--db";
	argv[n++] = d->db;
	argv[n++] = "--url";
	argv[n++] = d->url;
	while ((a = va_arg(ap, const char *)) != NULL && n < 38)
		argv[n++] = a;
	argv[n] = NULL;
	if (pipe(pipefd) != 0)
		bail_out("pipe failed");
	pid = fork();
	if (pid == 0)
	{
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		setenv("FERRY_TOKEN", d->token, 1);
		execv(CLI, (char *const *) argv);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;)
	{
		char		chunk[4096];
		ssize_t		r = read(pipefd[0], chunk, sizeof(chunk));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		buf = realloc(buf, len + (size_t) r + 1);
		memcpy(buf + len, chunk, (size_t) r);
		len += (size_t) r;
	}
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	if (buf == NULL)
		buf = strdup("");
	else
		buf[len] = '\0';
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static inline int
dev_run(Dev *d, char **out, ...)
{
	va_list		ap;
	int			rc;

	va_start(ap, out);
	rc = dev_runv(d, out, ap);
	va_end(ap);
	return rc;
}

/* Runs a command that must succeed; bails out otherwise. */
static inline void
dev_ok_(Dev *d, const char *what, ...)
{
	va_list		ap;
	int			rc;

	va_start(ap, what);
	rc = dev_runv(d, NULL, ap);
	va_end(ap);
	if (rc != 0)
		bail_out("ferry %s on %s failed with exit %d", what, d->db, rc);
}
#define dev_ok(d, ...) dev_ok_((d), #__VA_ARGS__, __VA_ARGS__)

/* The stdout of a command (malloc'd). */
static inline char *
dev_out(Dev *d, ...)
{
	va_list		ap;
	char	   *out = NULL;

	va_start(ap, d);
	dev_runv(d, &out, ap);
	va_end(ap);
	return out;
}

/* `ferry query SQL` without its header line: the rows, tab-separated (malloc'd). */
static inline char *
dev_q(Dev *d, const char *sqltext)
{
	char	   *out = dev_out(d, "query", sqltext, NULL);
	char	   *nl = strchr(out, '\n');
	char	   *rows = strdup(nl ? nl + 1 : "");

	free(out);
	return rows;
}

#define is_dev(d, sqltext, want, name) \
	do { \
		char *got_ = dev_q((d), (sqltext)); \
		is_str(got_, (want), "%s", (name)); \
		free(got_); \
	} while (0)

/* Syncs a device until synced (exit 0) within sec seconds. */
static inline int
dev_sync(Dev *d, int sec)
{
	char		t[16];

	snprintf(t, sizeof(t), "%d", sec);
	return dev_run(d, NULL, "sync", "--until-synced", "--timeout", t, NULL);
}

/* Starts `ferry sync --watch` in the background (output in <db>.watch); returns its pid. */
static inline pid_t
dev_watch(Dev *d)
{
	pid_t		pid = fork();

	if (pid == 0)
	{
		char		log[sizeof(d->db) + 8];
		int			fd;

		snprintf(log, sizeof(log), "%.*s.watch", (int) sizeof(d->db) - 1, d->db);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		setenv("FERRY_TOKEN", d->token, 1);
		execl(CLI, CLI, "--db", d->db, "--url", d->url, "sync", "--watch", (char *) NULL);
		_exit(127);
	}
	return pid;
}

/* Waits until a device's query answers want (the query runs in a separate process). */
static inline int
dev_wait(Dev *d, const char *sqltext, const char *want, int ms)
{
	long long	deadline = now_ms() + ms;

	for (;;)
	{
		char	   *got = dev_q(d, sqltext);
		int			same = strcmp(got, want) == 0;

		if (same || now_ms() > deadline)
		{
			if (!same)
				diag("waited for %s: got '%s', want '%s'", sqltext, got, want);
			free(got);
			return same;
		}
		free(got);
		usleep(100000);
	}
}

#endif
