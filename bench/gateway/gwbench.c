/*
 * bench/gateway/gwbench.c -- the measuring half of the gateway benchmark (bench/gateway.sh).
 *
 * Each mode starts what it measures (a real gateway/ferryd, clients over real sockets,
 * a writer on its own libpq connection), measures, and prints its figures as key=value
 * lines on stdout for bench/gateway.sh; progress goes to stderr. It prints figures, it
 * judges nothing, and exits non-zero only when the measurement could not be made.
 *
 *   gwbench exec -- CMD ARGS...      run CMD; wall time and the CPU time it used
 *   gwbench mkshape                  start ferryd, create one shape (one client subscribes), stop
 *   gwbench ingest                   start ferryd on a slot holding a workload; time until it
 *                                    confirmed the workload's last commit, and (with a client)
 *                                    until the client received every row
 *   gwbench latency                  N clients, each on its own tenant, one shape each; a writer
 *                                    commits single-row transactions at a fixed rate; the delay
 *                                    from each commit to the client that receives the row; the
 *                                    memory of idle connections and of the shapes
 *   gwbench latency-repl             the same writer, received by a bare logical replication
 *                                    client (the limit: what reaches any client of the slot)
 *   gwbench routing                  ferryd's CPU per change written to one tenant while it holds
 *                                    10, 1,000, 10,000 shapes on other tenants; memory per shape
 *
 * Options are --name=value (see each mode's opt() calls). The database is
 * FERRY_DATABASE_URL (a libpq conninfo; ferryd and the writers use it), the token secret
 * FERRY_JWT_SECRET, the ferryd binary GWB_FERRYD (default gateway/ferryd). GWB_DEBUG=1
 * makes the latency run list every row later than 300 ms. Example:
 *
 *   gwbench latency --table=gwb_lat --slot=gwb_lat --data-dir=/tmp/x --clients=1000 --rate=1000
 *   gwbench routing --table=gwb_route --slot=gwb_route --data-dir=/tmp/y --levels=10,1000,10000
 *
 * One process waits on every client socket (epoll); ChangeBatch frames are walked in
 * place (protobuf wire format: field 3 of ServerMessage, its repeated field 3) rather
 * than decoded, so that the client costs little next to what it measures; every other
 * server frame is decoded with the gateway's own frame_decode_server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "auth.h"
#include "ferry.pb-c.h"
#include "frame.h"
#include "pgoutput.h"
#include "repl.h"
#include "wsclient.h"

/* ----------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------- */

static int	g_argc;
static char **g_argv;
static pid_t ferryd_pid = 0;	/* a running ferryd child, killed by die() */

static void
say(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "gwbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void die(const char *fmt,...) __attribute__((noreturn, format(printf, 1, 2)));

static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "gwbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (ferryd_pid > 0)
	{
		kill(ferryd_pid, SIGKILL);
		waitpid(ferryd_pid, NULL, 0);
	}
	exit(1);
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static const char *
opt(const char *name, const char *def)
{
	size_t		n = strlen(name);

	for (int i = 2; i < g_argc; i++)
		if (strncmp(g_argv[i], "--", 2) == 0 && strncmp(g_argv[i] + 2, name, n) == 0 && g_argv[i][2 + n] == '=')
			return g_argv[i] + 3 + n;
	if (def == NULL)
		die("%s: --%s=... is required", g_argv[1], name);
	return def;
}

static long
opt_long(const char *name, const char *def)
{
	const char *v = opt(name, def);
	char	   *end;
	long		n = strtol(v, &end, 10);

	if (*v == '\0' || *end != '\0')
		die("--%s must be an integer, not \"%s\"", name, v);
	return n;
}

static const char *
env_or_die(const char *name)
{
	const char *v = getenv(name);

	if (v == NULL)
		die("%s is not set", name);
	return v;
}

/* ----------------------------------------------------------------
 * /proc
 * ---------------------------------------------------------------- */

/* CPU time of the whole process (every thread, live or exited), ns; 10 ms resolution. */
static int64_t
proc_cpu_ns(pid_t pid)
{
	char		path[64];
	char		buf[2048];
	FILE	   *f;
	size_t		n;
	char	   *p;
	unsigned long long ut = 0,
				st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after the command, which is in parentheses: state is field 3, utime 14, stime 15 */
	if ((p = strrchr(buf, ')')) == NULL ||
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (int64_t) (ut + st) * (1000000000LL / sysconf(_SC_CLK_TCK));
}

/* CPU time of the process's main thread, ns, exact (schedstat); -1 when not available. */
static int64_t
proc_main_thread_ns(pid_t pid)
{
	char		path[64];
	FILE	   *f;
	unsigned long long ns;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int) pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	if (fscanf(f, "%llu", &ns) != 1)
		ns = 0;
	fclose(f);
	return (int64_t) ns;
}

/* A field of /proc/PID/status in kB ("VmRSS", "RssAnon", "VmData"). */
static long
proc_status_kb(pid_t pid, const char *field)
{
	char		path[64];
	char		line[256];
	FILE	   *f;
	long		kb = -1;
	size_t		n = strlen(field);

	snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':')
		{
			kb = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

static int
proc_nfds(pid_t pid)
{
	char		cmd[128];
	FILE	   *p;
	int			n = -1;

	snprintf(cmd, sizeof(cmd), "ls /proc/%d/fd 2>/dev/null | wc -l", (int) pid);
	if ((p = popen(cmd, "r")) != NULL)
	{
		if (fscanf(p, "%d", &n) != 1)
			n = -1;
		pclose(p);
	}
	return n;
}

/* ----------------------------------------------------------------
 * ferryd
 * ---------------------------------------------------------------- */

typedef struct Ferryd
{
	pid_t		pid;
	int			port;
	char		data[1024];		/* --data-dir */
	char		portfile[1100]; /* <data>/port */
	char		log[1024];		/* its stderr */
	int64_t		spawned_ns;		/* now_ns() at fork */
} Ferryd;

static void
ferryd_spawn(Ferryd *d, const char *data, const char *slot, const char *log)
{
	const char *bin = getenv("GWB_FERRYD") ? getenv("GWB_FERRYD") : "gateway/ferryd";

	memset(d, 0, sizeof(*d));
	snprintf(d->data, sizeof(d->data), "%s", data);
	snprintf(d->portfile, sizeof(d->portfile), "%s/port", data);
	snprintf(d->log, sizeof(d->log), "%s", log);
	if (mkdir(data, 0700) != 0 && errno != EEXIST)
		die("cannot create %s: %s", data, strerror(errno));
	unlink(d->portfile);
	env_or_die("FERRY_DATABASE_URL");
	env_or_die("FERRY_JWT_SECRET");
	d->spawned_ns = now_ns();
	d->pid = fork();
	if (d->pid < 0)
		die("fork: %s", strerror(errno));
	if (d->pid == 0)
	{
		char		a_data[1100],
					a_port[1200],
					a_slot[200];
		int			fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0)
		{
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		snprintf(a_data, sizeof(a_data), "--data-dir=%s", data);
		snprintf(a_port, sizeof(a_port), "--port-file=%s", d->portfile);
		snprintf(a_slot, sizeof(a_slot), "--slot=%s", slot);
		execl(bin, "ferryd", "--listen=127.0.0.1:0", a_data, a_port, a_slot, (char *) NULL);
		fprintf(stderr, "cannot run %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	ferryd_pid = d->pid;
}

static void
ferryd_check_alive(Ferryd *d)
{
	int			st;

	if (waitpid(d->pid, &st, WNOHANG) == d->pid)
	{
		ferryd_pid = 0;
		die("ferryd exited (status %d); its log: %s", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), d->log);
	}
}

static void
ferryd_wait_port(Ferryd *d, int timeout_ms)
{
	int64_t		deadline = now_ns() + (int64_t) timeout_ms * 1000000;

	while (now_ns() < deadline)
	{
		FILE	   *f = fopen(d->portfile, "r");

		if (f != NULL)
		{
			int			ok = fscanf(f, "%d", &d->port) == 1 && d->port > 0;

			fclose(f);
			if (ok)
				return;
		}
		ferryd_check_alive(d);
		sleep_ms(2);
	}
	die("ferryd wrote no port file in %d ms; its log: %s", timeout_ms, d->log);
}

/* GET path from ferryd: the status, the body in body (NUL-terminated). */
static int
http_get(int port, const char *path, char *body, size_t cap)
{
	int			fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa;
	char		req[256];
	size_t		len = 0;
	int64_t		deadline = now_ns() + 5000000000LL;
	int			status = 0;
	char	   *buf = malloc(cap + 1024);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
	{
		close(fd);
		free(buf);
		return 0;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	if (ws_write_all(fd, req, strlen(req)) == 0)
		while (now_ns() < deadline && len < cap + 1023)
		{
			struct pollfd p = {fd, POLLIN, 0};
			ssize_t		r;

			if (poll(&p, 1, 100) <= 0)
				continue;
			r = recv(fd, buf + len, cap + 1023 - len, 0);
			if (r <= 0)
				break;
			len += (size_t) r;
			buf[len] = '\0';
			/* lws may keep the connection: stop once Content-Length bytes are here */
			{
				char	   *hdr_end = strstr(buf, "\r\n\r\n");
				char	   *cl = strcasestr(buf, "content-length:");

				if (hdr_end != NULL && cl != NULL && cl < hdr_end &&
					len >= (size_t) (hdr_end + 4 - buf) + strtoul(cl + 15, NULL, 10))
					break;
			}
		}
	close(fd);
	buf[len] = '\0';
	if (len > 12)
	{
		char	   *b = strstr(buf, "\r\n\r\n");

		status = atoi(buf + 9);
		if (body != NULL)
			snprintf(body, cap, "%s", b ? b + 4 : "");
	}
	free(buf);
	return status;
}

static void
ferryd_wait_healthy(Ferryd *d, int timeout_ms)
{
	int64_t		deadline = now_ns() + (int64_t) timeout_ms * 1000000;

	ferryd_wait_port(d, timeout_ms);
	while (now_ns() < deadline)
	{
		if (http_get(d->port, "/healthz", NULL, 0) == 200)
			return;
		ferryd_check_alive(d);
		sleep_ms(20);
	}
	die("ferryd did not become healthy in %d ms; its log: %s", timeout_ms, d->log);
}

/* A metric's value from /metrics text; -1 when absent. */
static double
metric_in(const char *body, const char *name)
{
	size_t		n = strlen(name);

	for (const char *p = body; (p = strstr(p, name)) != NULL; p += n)
		if ((p == body || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

typedef struct Metrics
{
	uint64_t	confirmed_lsn;
	double		changes;
	double		routed;
	double		transactions;
	double		shapes;
	double		connections;
} Metrics;

static int
ferryd_metrics(Ferryd *d, Metrics *m)
{
	static char body[65536];
	const char *p;

	if (http_get(d->port, "/metrics", body, sizeof(body)) != 200)
		return -1;
	p = strstr(body, "\nferry_confirmed_lsn ");
	m->confirmed_lsn = p ? strtoull(p + 21, NULL, 10) : 0;
	m->changes = metric_in(body, "ferry_changes_total");
	m->routed = metric_in(body, "ferry_changes_routed_total");
	m->transactions = metric_in(body, "ferry_transactions_total");
	m->shapes = metric_in(body, "ferry_shapes");
	m->connections = metric_in(body, "ferry_connections");
	return 0;
}

static void
ferryd_stop(Ferryd *d)
{
	int64_t		deadline = now_ns() + 15000000000LL;
	int			st;

	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	while (waitpid(d->pid, &st, WNOHANG) != d->pid)
	{
		if (now_ns() > deadline)
		{
			say("ferryd did not stop in 15 s: killed");
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			break;
		}
		sleep_ms(10);
	}
	d->pid = 0;
	ferryd_pid = 0;
}

/* ----------------------------------------------------------------
 * Tokens
 * ---------------------------------------------------------------- */

static char *
token_for(const char *sub, const char *tenant)
{
	const char *secret = env_or_die("FERRY_JWT_SECRET");
	const char *tenants[1] = {tenant};
	char	   *tok = NULL;
	char		err[256];
	time_t		now = time(NULL);

	if (auth_sign_hs256((const uint8_t *) secret, strlen(secret), sub, tenants, 1, NULL, now, now + 7200,
						&tok, err, sizeof(err)) != AUTH_OK)
		die("cannot sign a token: %s", err);
	return tok;
}

/* ----------------------------------------------------------------
 * Clients: many sockets, one poll loop
 * ---------------------------------------------------------------- */

typedef struct Conn
{
	Ws		   *ws;				/* socket and receive buffer (test/gateway/wsclient.h) */
	int			idx;			/* caller's number */
	int			slot;			/* position in live[] */
	int			welcomed;		/* Welcome received */
	int			subscribed;		/* Subscribed received */
	int			up_to_date;		/* UpToDate received (since the last reset) */
	int			closed;			/* EOF or close frame */
	int			error_code;		/* last Error's code */
	int			must_refetch;	/* MustRefetch received */
	char		handle[64];		/* from Subscribed */
	char		offset[64];		/* last offset received */
	char		err[256];		/* last error message */
	int64_t		changes;		/* changes received */
	int64_t		batches;		/* ChangeBatch frames received */
	int64_t		next_hb_ns;		/* next Heartbeat due */
} Conn;

static Conn **live;				/* open connections */
static int	nlive;
static int	live_cap;
static int	epfd = -1;			/* every open connection's socket */
static int64_t next_hb_sweep;	/* next pass over the connections for heartbeats */

/* Called for every Change received (payload: the Change message). */
static void (*change_hook) (Conn *c, const uint8_t *change, size_t len);

#define HEARTBEAT_NS 10000000000LL	/* ferryd closes connections silent for 45 s */

static void
mark_closed(Conn *c)
{
	if (!c->closed && epfd >= 0)
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->ws->fd, NULL);
	c->closed = 1;
}

static void
send_client(Conn *c, Ferry__V1__ClientMessage *m)
{
	uint8_t    *buf;
	size_t		len;
	char		err[256];

	if (frame_encode_client_alloc(m, 0, &buf, &len, err, sizeof(err)) != FRAME_OK)
		die("cannot encode a client frame: %s", err);
	if (ws_send(c->ws, buf, len) != 0)
		mark_closed(c);
	free(buf);
}

static void
send_heartbeat(Conn *c)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Heartbeat hb = FERRY__V1__HEARTBEAT__INIT;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	hb.sent_at_ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HEARTBEAT;
	m.heartbeat = &hb;
	send_client(c, &m);
	c->next_hb_ns = now_ns() + HEARTBEAT_NS;
}

/* Connects, upgrades and sends Hello (the Welcome comes through pump()). */
static Conn *
conn_open(int port, const char *token, int idx)
{
	Conn	   *c = calloc(1, sizeof(Conn));
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Hello h = FERRY__V1__HELLO__INIT;
	char		client_id[64];

	c->ws = ws_connect("127.0.0.1", port, "/v1/ws", "ferry.v1");
	if (c->ws == NULL)
		die("cannot connect to ferryd on port %d (connection %d): %s", port, idx, strerror(errno));
	c->idx = idx;
	if (nlive == live_cap)
	{
		live_cap = live_cap ? live_cap * 2 : 1024;
		live = realloc(live, sizeof(Conn *) * live_cap);
	}
	c->slot = nlive;
	live[nlive++] = c;
	if (epfd < 0 && (epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));
	{
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->ws->fd, &ev) != 0)
			die("epoll_ctl: %s", strerror(errno));
	}
	snprintf(client_id, sizeof(client_id), "gwbench-%d", idx);
	h.protocol_version = 1;
	h.client_id = client_id;
	h.token = (char *) token;
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_HELLO;
	m.hello = &h;
	send_client(c, &m);
	c->next_hb_ns = now_ns() + HEARTBEAT_NS;
	return c;
}

static void
conn_subscribe(Conn *c, const char *table, uint32_t id)
{
	Ferry__V1__ClientMessage m = FERRY__V1__CLIENT_MESSAGE__INIT;
	Ferry__V1__Subscribe s = FERRY__V1__SUBSCRIBE__INIT;

	s.subscription_id = id;
	s.table = (char *) table;
	s.where = "";
	s.handle = "";
	s.offset = "";
	m.msg_case = FERRY__V1__CLIENT_MESSAGE__MSG_SUBSCRIBE;
	m.subscribe = &s;
	c->up_to_date = 0;
	send_client(c, &m);
}

static void
conn_close(Conn *c)
{
	int			i = c->slot;

	live[i] = live[--nlive];
	live[i]->slot = i;
	ws_close(c->ws);
	free(c);
}

static int
get_varint(const uint8_t *p, size_t n, size_t *k, uint64_t *v)
{
	uint64_t	r = 0;

	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8_t		b;

		if (*k >= n)
			return -1;
		b = p[(*k)++];
		r |= (uint64_t) (b & 0x7f) << shift;
		if (!(b & 0x80))
		{
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* Walks a ChangeBatch in place: counts its changes, keeps its offset, calls change_hook. */
static void
walk_batch(Conn *c, const uint8_t *p, size_t n)
{
	size_t		k = 0;

	c->batches++;
	while (k < n)
	{
		uint64_t	tag,
					v;

		if (get_varint(p, n, &k, &tag) < 0)
			die("bad ChangeBatch frame");
		switch (tag & 7)
		{
			case 0:
				if (get_varint(p, n, &k, &v) < 0)
					die("bad ChangeBatch frame");
				break;
			case 2:
				if (get_varint(p, n, &k, &v) < 0 || v > n - k)
					die("bad ChangeBatch frame");
				if ((tag >> 3) == 3)
				{
					c->changes++;
					if (change_hook != NULL)
						change_hook(c, p + k, (size_t) v);
				}
				else if ((tag >> 3) == 2)
					snprintf(c->offset, sizeof(c->offset), "%.*s", (int) v, (const char *) p + k);
				k += (size_t) v;
				break;
			case 1:
				k += 8;
				break;
			case 5:
				k += 4;
				break;
			default:
				die("bad ChangeBatch frame (wire type %d)", (int) (tag & 7));
		}
	}
}

/* The first value of a Change (its first column) as an integer; -1 when none. */
static int64_t
change_first_int(const uint8_t *p, size_t n)
{
	size_t		k = 0;

	while (k < n)
	{
		uint64_t	tag,
					v;

		if (get_varint(p, n, &k, &tag) < 0)
			return -1;
		if ((tag & 7) == 0)
		{
			if (get_varint(p, n, &k, &v) < 0)
				return -1;
		}
		else if ((tag & 7) == 2)
		{
			if (get_varint(p, n, &k, &v) < 0 || v > n - k)
				return -1;
			if ((tag >> 3) == 2)
			{
				int64_t		r = 0;

				for (size_t i = 0; i < v; i++)
					r = r * 10 + (p[k + i] - '0');
				return r;
			}
			k += (size_t) v;
		}
		else
			return -1;
	}
	return -1;
}

static void
handle_msg(Conn *c, const uint8_t *p, size_t len)
{
	Ferry__V1__ServerMessage *m;
	char		err[256];

	if (len > 0 && p[0] == 0x1a)
	{
		/* ServerMessage.changes = 3, length-delimited */
		size_t		k = 1;
		uint64_t	blen;

		if (get_varint(p, len, &k, &blen) < 0 || blen > len - k)
			die("bad ChangeBatch frame");
		walk_batch(c, p + k, (size_t) blen);
		return;
	}
	if (frame_decode_server(p, len, &frame_server_limits, &m, err, sizeof(err)) != FRAME_OK)
		die("undecodable server frame: %s", err);
	switch (m->msg_case)
	{
		case FERRY__V1__SERVER_MESSAGE__MSG_WELCOME:
			c->welcomed = 1;
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_SUBSCRIBED:
			c->subscribed = 1;
			snprintf(c->handle, sizeof(c->handle), "%s", m->subscribed->handle);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_UP_TO_DATE:
			c->up_to_date = 1;
			snprintf(c->offset, sizeof(c->offset), "%s", m->up_to_date->offset);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_MUST_REFETCH:
			c->must_refetch = 1;
			snprintf(c->err, sizeof(c->err), "must-refetch: %s", m->must_refetch->reason);
			break;
		case FERRY__V1__SERVER_MESSAGE__MSG_ERROR:
			c->error_code = m->error->code;
			snprintf(c->err, sizeof(c->err), "error %d: %s", m->error->code, m->error->message);
			break;
		default:
			break;
	}
	frame_free_server(m);
}

/* Handles every complete frame in c's buffer. */
static void
conn_parse(Conn *c)
{
	uint8_t    *b = c->ws->in;
	size_t		n = c->ws->in_len;
	size_t		pos = 0;

	while (n - pos >= 2 && !c->closed)
	{
		int			op = b[pos] & 0x0f;
		int			fin = b[pos] & 0x80;
		uint64_t	len = b[pos + 1] & 0x7f;
		size_t		h = 2;

		if (len == 126)
		{
			if (n - pos < 4)
				break;
			len = ((uint64_t) b[pos + 2] << 8) | b[pos + 3];
			h = 4;
		}
		else if (len == 127)
		{
			if (n - pos < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = (len << 8) | b[pos + 2 + i];
			h = 10;
		}
		if (n - pos - h < len)
			break;
		if (!fin || op == 0)
			die("connection %d: a fragmented message (not expected from ferryd)", c->idx);
		switch (op)
		{
			case 2:
				handle_msg(c, b + pos + h, (size_t) len);
				break;
			case 8:
				mark_closed(c);
				if (len >= 2)
					snprintf(c->err + strlen(c->err), sizeof(c->err) - strlen(c->err), " (closed %d)",
							 (b[pos + h] << 8) | b[pos + h + 1]);
				break;
			case 9:
				ws_send_op(c->ws, 10, b + pos + h, (size_t) len);
				break;
			case 10:
				break;
			default:
				die("connection %d: unexpected frame opcode %d", c->idx, op);
		}
		pos += h + (size_t) len;
	}
	if (pos > 0)
	{
		memmove(b, b + pos, n - pos);
		c->ws->in_len = n - pos;
	}
}

static void
conn_read(Conn *c)
{
	for (;;)
	{
		Ws		   *ws = c->ws;
		ssize_t		r;

		if (ws->in_len + 65536 > ws->in_cap)
		{
			ws->in_cap = ws->in_len + 65536 * 4;
			ws->in = realloc(ws->in, ws->in_cap);
		}
		r = recv(ws->fd, ws->in + ws->in_len, ws->in_cap - ws->in_len, MSG_DONTWAIT);
		if (r > 0)
		{
			ws->in_len += (size_t) r;
			conn_parse(c);
			if (c->closed)
				return;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		mark_closed(c);
		return;
	}
}

/* Waits up to timeout_ms for input on any open connection and handles what came. */
static void
pump(int timeout_ms)
{
	struct epoll_event ev[256];
	int64_t		now = now_ns();
	int			n;

	if (now >= next_hb_sweep)
	{
		next_hb_sweep = now + 1000000000LL;
		for (int i = 0; i < nlive; i++)
			if (!live[i]->closed && now >= live[i]->next_hb_ns)
				send_heartbeat(live[i]);
	}
	if (nlive == 0)
	{
		sleep_ms(timeout_ms);
		return;
	}
	n = epoll_wait(epfd, ev, 256, timeout_ms);
	for (int i = 0; i < n; i++)
	{
		Conn	   *c = ev[i].data.ptr;

		if (!c->closed)
			conn_read(c);
	}
}

static void
conn_check(Conn *c, const char *doing)
{
	if (c->error_code != 0 || c->must_refetch || c->closed)
		die("connection %d, %s: %s", c->idx, doing,
			c->err[0] ? c->err : (c->closed ? "closed by ferryd" : "failed"));
}

/* Opens count connections (tenant prefix<from+i>) and waits until every one was welcomed. */
static void
open_clients(int port, const char *prefix, int from, int count, Conn **out)
{
	int64_t		deadline;
	int			welcomed = 0;
	int64_t		t0 = now_ns();

	for (int i = 0; i < count; i++)
	{
		char		tenant[128],
					sub[160];
		char	   *tok;

		snprintf(tenant, sizeof(tenant), "%s%d", prefix, from + i);
		snprintf(sub, sizeof(sub), "user-%s", tenant);
		tok = token_for(sub, tenant);
		out[i] = conn_open(port, tok, from + i);
		free(tok);
		if (i % 64 == 63)
			pump(0);
	}
	deadline = now_ns() + 60000000000LL;
	while (welcomed < count)
	{
		if (now_ns() > deadline)
			die("only %d of %d connections were welcomed in 60 s", welcomed, count);
		pump(100);
		welcomed = 0;
		for (int i = 0; i < count; i++)
		{
			conn_check(out[i], "saying Hello");
			welcomed += out[i]->welcomed;
		}
	}
	say("%d connections welcomed in %.2f s", count, (double) (now_ns() - t0) / 1e9);
}

/*
 * Subscribes every connection to table, at most `window` subscriptions not yet up to
 * date at a time (ferryd starts one snapshot worker with its own database connection per
 * new shape, and limits nothing itself), and waits until each is up to date.
 */
static void
subscribe_all(Conn **cs, int count, const char *table, int window)
{
	int			next = 0,
				done = 0,
				inflight = 0;
	char	   *pending = calloc((size_t) count, 1);
	int64_t		t0 = now_ns();
	int64_t		deadline = t0 + 300000000000LL;

	while (done < count)
	{
		while (inflight < window && next < count)
		{
			conn_subscribe(cs[next], table, 1);
			pending[next++] = 1;
			inflight++;
		}
		pump(50);
		for (int i = 0; i < next; i++)
		{
			if (!pending[i])
				continue;
			conn_check(cs[i], "subscribing");
			if (cs[i]->up_to_date)
			{
				pending[i] = 0;
				inflight--;
				done++;
			}
		}
		if (now_ns() > deadline)
			die("only %d of %d subscriptions were up to date after 300 s", done, count);
	}
	free(pending);
	say("%d subscriptions up to date in %.2f s", count, (double) (now_ns() - t0) / 1e9);
}

/*
 * Creates shapes for tenants prefix<from>..prefix<to-1>: per tenant a connection says
 * Hello, subscribes, waits for UpToDate and closes (the shape stays, idle). At most
 * `window` connections at a time.
 */
static void
create_shapes(int port, const char *table, const char *prefix, int from, int to, int window)
{
	Conn	  **act = calloc((size_t) window, sizeof(Conn *));
	int			nact = 0,
				next = from,
				done = 0;
	int64_t		t0 = now_ns();
	int64_t		deadline = t0 + 600000000000LL;

	while (done < to - from)
	{
		while (nact < window && next < to)
		{
			char		tenant[128],
						sub[160];
			char	   *tok;

			snprintf(tenant, sizeof(tenant), "%s%d", prefix, next);
			snprintf(sub, sizeof(sub), "user-%s", tenant);
			tok = token_for(sub, tenant);
			act[nact] = conn_open(port, tok, next);
			free(tok);
			conn_subscribe(act[nact], table, 1);
			nact++;
			next++;
		}
		pump(50);
		for (int i = 0; i < nact; i++)
		{
			conn_check(act[i], "creating a shape");
			if (act[i]->up_to_date)
			{
				conn_close(act[i]);
				act[i--] = act[--nact];
				done++;
			}
		}
		if (now_ns() > deadline)
			die("created only %d of %d shapes in 600 s", done, to - from);
	}
	free(act);
	say("%d shapes created in %.2f s (%.0f/s)", to - from, (double) (now_ns() - t0) / 1e9,
		(to - from) / ((double) (now_ns() - t0) / 1e9));
}

/* ----------------------------------------------------------------
 * Database helpers
 * ---------------------------------------------------------------- */

static PGconn *
db_open(void)
{
	PGconn	   *c = PQconnectdb(env_or_die("FERRY_DATABASE_URL"));

	if (PQstatus(c) != CONNECTION_OK)
		die("cannot connect to the database: %s", PQerrorMessage(c));
	return c;
}

static void
db_exec(PGconn *c, const char *sql)
{
	PGresult   *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		die("SQL failed: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

static int64_t
db_int(PGconn *c, const char *sql)
{
	PGresult   *r = PQexec(c, sql);
	int64_t		v;

	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		die("SQL failed: %s: %s", sql, PQerrorMessage(c));
	v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

/* ----------------------------------------------------------------
 * exec: wall and CPU time of a command
 * ---------------------------------------------------------------- */

static int
mode_exec(void)
{
	int			first = 2;
	pid_t		pid;
	int			st;
	struct rusage ru;
	int64_t		t0;

	if (first < g_argc && strcmp(g_argv[first], "--") == 0)
		first++;
	if (first >= g_argc)
		die("exec: no command");
	t0 = now_ns();
	pid = fork();
	if (pid == 0)
	{
		execvp(g_argv[first], g_argv + first);
		fprintf(stderr, "gwbench: cannot run %s: %s\n", g_argv[first], strerror(errno));
		_exit(127);
	}
	if (wait4(pid, &st, 0, &ru) != pid)
		die("wait4: %s", strerror(errno));
	printf("wall_seconds=%.4f\n", (double) (now_ns() - t0) / 1e9);
	printf("cpu_seconds=%.3f\n", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		   ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	printf("exit_status=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* ----------------------------------------------------------------
 * mkshape: one shape in a data dir, for the ingest runs to start from
 * ---------------------------------------------------------------- */

static int
mode_mkshape(void)
{
	Ferryd		d;
	char	   *tok = token_for("user-bench", opt("tenant", NULL));
	Conn	   *x;
	int64_t		deadline = now_ns() + 60000000000LL;

	ferryd_spawn(&d, opt("data-dir", NULL), opt("slot", NULL), opt("log", "/dev/null"));
	ferryd_wait_healthy(&d, 30000);
	x = conn_open(d.port, tok, 0);
	free(tok);
	conn_subscribe(x, opt("table", NULL), 1);
	while (!x->up_to_date)
	{
		conn_check(x, "subscribing");
		if (now_ns() > deadline)
			die("mkshape: no UpToDate in 60 s");
		pump(50);
	}
	printf("handle=%s\n", x->handle);
	printf("offset=%s\n", x->offset);
	conn_close(x);
	ferryd_stop(&d);
	return 0;
}

/* ----------------------------------------------------------------
 * ingest: time until ferryd confirmed a workload (and a client got it)
 * ---------------------------------------------------------------- */

static int
mode_ingest(void)
{
	Ferryd		d;
	uint64_t	target = strtoull(opt("target-lsn", NULL), NULL, 10);
	const char *client_table = opt("client-table", "");
	const char *client_tenant = opt("client-tenant", "");
	long		client_rows = opt_long("client-rows", "0");
	double		expect_changes = (double) opt_long("changes", "0");
	double		decoded_s = -1;
	int			with_client = client_table[0] != '\0';
	Conn	   *c = NULL;
	Metrics		m = {0};
	double		ingest_s = -1,
				client_s = -1;
	int64_t		cpu_at_ingest = -1;
	int64_t		deadline;
	int64_t		next_poll = 0;

	ferryd_spawn(&d, opt("data-dir", NULL), opt("slot", NULL), opt("log", "/dev/null"));
	ferryd_wait_port(&d, 30000);
	if (with_client)
	{
		char	   *tok = token_for("user-bench", client_tenant);

		c = conn_open(d.port, tok, 0);
		free(tok);
		conn_subscribe(c, client_table, 1);
	}
	deadline = now_ns() + (int64_t) opt_long("timeout", "600") * 1000000000LL;
	while (ingest_s < 0 || (with_client && client_s < 0))
	{
		int64_t		now = now_ns();

		if (now > deadline)
			die("ingest: not done in time: confirmed %" PRIu64 " of %" PRIu64 ", client has %" PRId64
				" of %ld rows", m.confirmed_lsn, target, c ? c->changes : 0, client_rows);
		ferryd_check_alive(&d);
		if (ingest_s < 0 && now >= next_poll)
		{
			next_poll = now + 10000000;
			if (ferryd_metrics(&d, &m) == 0 && decoded_s < 0 && expect_changes > 0 && m.changes >= expect_changes)
				decoded_s = (double) (now_ns() - d.spawned_ns) / 1e9;
			if (m.confirmed_lsn >= target && m.confirmed_lsn > 0)
			{
				ingest_s = (double) (now_ns() - d.spawned_ns) / 1e9;
				cpu_at_ingest = proc_cpu_ns(d.pid);
			}
		}
		if (with_client)
		{
			pump(ingest_s < 0 ? 10 : 100);
			conn_check(c, "receiving");
			if (client_s < 0 && c->changes >= client_rows)
				client_s = (double) (now_ns() - d.spawned_ns) / 1e9;
		}
		else
			sleep_ms(2);
	}
	ferryd_metrics(&d, &m);
	printf("ingest_seconds=%.4f\n", ingest_s);
	if (decoded_s >= 0)
		printf("decoded_seconds=%.4f\n", decoded_s);
	printf("ingest_cpu_seconds=%.3f\n", cpu_at_ingest / 1e9);
	printf("changes=%.0f\n", m.changes);
	printf("routed=%.0f\n", m.routed);
	printf("transactions=%.0f\n", m.transactions);
	printf("cpu_seconds=%.3f\n", proc_cpu_ns(d.pid) / 1e9);
	printf("rss_kb=%ld\n", proc_status_kb(d.pid, "VmRSS"));
	if (with_client)
	{
		printf("client_seconds=%.4f\n", client_s);
		printf("client_changes=%" PRId64 "\n", c->changes);
		printf("client_batches=%" PRId64 "\n", c->batches);
		printf("client_offset=%s\n", c->offset);
		conn_close(c);
	}
	ferryd_stop(&d);
	return 0;
}

/* ----------------------------------------------------------------
 * The paced writer: single-row transactions at a fixed rate
 * ---------------------------------------------------------------- */

typedef struct Writer
{
	const char *table;			/* where */
	const char *prefix;			/* tenant prefix */
	int			tenants;		/* row i goes to tenant prefix<i % tenants> */
	int			rate;			/* rows per second */
	int64_t		n;				/* rows */
	int64_t		id_base;		/* id of row 0 */
	int64_t    *t_send;			/* [n] when its INSERT was sent (now_ns) */
	int64_t    *t_ack;			/* [n] when its commit was acknowledged */
	_Atomic int64_t *t_recv;	/* [n] when a client got it (0: not yet) */
	atomic_int	done;			/* the writer finished */
	int64_t		started_ns;
	int64_t		finished_ns;
	int64_t		behind_max_ns;	/* how late the writer was at most */
} Writer;

static Writer wr;

static void *
writer_main(void *arg)
{
	PGconn	   *db = db_open();
	char		sql[512];
	PGresult   *r;
	int64_t		period = 1000000000LL / wr.rate;

	(void) arg;
	snprintf(sql, sizeof(sql), "INSERT INTO %s (id, tenant, payload) VALUES ($1::bigint, $2, 'x')", wr.table);
	r = PQprepare(db, "ins", sql, 2, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("prepare: %s", PQerrorMessage(db));
	PQclear(r);
	wr.started_ns = now_ns() + 20000000;
	for (int64_t i = 0; i < wr.n; i++)
	{
		int64_t		due = wr.started_ns + i * period;
		int64_t		now = now_ns();
		char		id[32],
					tenant[64];
		const char *params[2] = {id, tenant};

		if (now < due)
		{
			struct timespec ts = {(time_t) (due / 1000000000LL), (long) (due % 1000000000LL)};

			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		}
		else if (now - due > wr.behind_max_ns)
			wr.behind_max_ns = now - due;
		snprintf(id, sizeof(id), "%" PRId64, wr.id_base + i);
		snprintf(tenant, sizeof(tenant), "%s%d", wr.prefix, (int) (i % wr.tenants));
		wr.t_send[i] = now_ns();
		r = PQexecPrepared(db, "ins", 2, params, NULL, NULL, 0);
		wr.t_ack[i] = now_ns();
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			die("insert: %s", PQerrorMessage(db));
		PQclear(r);
	}
	wr.finished_ns = now_ns();
	PQfinish(db);
	atomic_store(&wr.done, 1);
	return NULL;
}

static void
writer_start(pthread_t *th, const char *table, const char *prefix, int tenants, int rate, int64_t n,
			 int64_t id_base)
{
	memset(&wr, 0, sizeof(wr));
	wr.table = table;
	wr.prefix = prefix;
	wr.tenants = tenants;
	wr.rate = rate;
	wr.n = n;
	wr.id_base = id_base;
	wr.t_send = calloc((size_t) n, sizeof(int64_t));
	wr.t_ack = calloc((size_t) n, sizeof(int64_t));
	wr.t_recv = calloc((size_t) n, sizeof(*wr.t_recv));
	if (pthread_create(th, NULL, writer_main, NULL) != 0)
		die("cannot start the writer thread");
}

static void
writer_got(int64_t id)
{
	int64_t		i = id - wr.id_base;
	int64_t		zero = 0;

	if (i >= 0 && i < wr.n)
		atomic_compare_exchange_strong(&wr.t_recv[i], &zero, now_ns());
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return x < y ? -1 : x > y;
}

static double
pct(const int64_t *sorted, int64_t n, double p)
{
	int64_t		i;

	if (n == 0)
		return NAN;
	i = (int64_t) ceil(p / 100.0 * (double) n) - 1;
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return (double) sorted[i] / 1e6;
}

/* Prints the latency figures of rows [skip, n): from commit ack and from send, ms. */
static void
report_latency(const char *prefix, int64_t skip)
{
	int64_t		n = wr.n - skip;
	int64_t    *from_ack = malloc(sizeof(int64_t) * (size_t) (n + 1));
	int64_t    *from_send = malloc(sizeof(int64_t) * (size_t) (n + 1));
	int64_t    *commit = malloc(sizeof(int64_t) * (size_t) (n + 1));
	int64_t		got = 0,
				early = 0;

	int64_t		missing = 0,
				over = 0;
	int64_t		end = now_ns();

	for (int64_t i = skip; i < wr.n; i++)
	{
		int64_t		r = atomic_load(&wr.t_recv[i]);

		if (r == 0)
		{
			/* never received: counted with the time waited for it, a lower bound */
			missing++;
			r = end;
		}
		if (r - wr.t_ack[i] > 500000000)
			over++;
		from_ack[got] = r - wr.t_ack[i];
		if (from_ack[got] < 0)
		{
			early++;			/* the row reached the client before the writer saw its commit */
			from_ack[got] = 0;
		}
		from_send[got] = r - wr.t_send[i];
		commit[got] = wr.t_ack[i] - wr.t_send[i];
		got++;
	}
	if (getenv("GWB_DEBUG") != NULL)
		for (int64_t i = skip; i < wr.n; i++)
		{
			int64_t		r = atomic_load(&wr.t_recv[i]);

			int64_t		j = i + wr.tenants;	/* the next row of the same tenant */

			if (r == 0 || r - wr.t_ack[i] > 300000000)
				say("row %" PRId64 " (tenant %" PRId64 "): acked at +%.3f s, received %.1f ms later; "
					"the tenant's next row was sent %.1f ms before that", i, i % wr.tenants,
					(double) (wr.t_ack[i] - wr.started_ns) / 1e9, r ? (double) (r - wr.t_ack[i]) / 1e6 : -1.0,
					r && j < wr.n ? (double) (r - wr.t_send[j]) / 1e6 : NAN);
		}
	qsort(from_ack, (size_t) got, sizeof(int64_t), cmp_i64);
	qsort(from_send, (size_t) got, sizeof(int64_t), cmp_i64);
	qsort(commit, (size_t) got, sizeof(int64_t), cmp_i64);
	printf("%s_rows=%" PRId64 "\n", prefix, n);
	printf("%s_received=%" PRId64 "\n", prefix, got - missing);
	printf("%s_missing=%" PRId64 "\n", prefix, missing);
	printf("%s_over_500ms=%" PRId64 "\n", prefix, over);
	printf("%s_before_ack=%" PRId64 "\n", prefix, early);
	printf("%s_p50_ms=%.3f\n", prefix, pct(from_ack, got, 50));
	printf("%s_p90_ms=%.3f\n", prefix, pct(from_ack, got, 90));
	printf("%s_p99_ms=%.3f\n", prefix, pct(from_ack, got, 99));
	printf("%s_p999_ms=%.3f\n", prefix, pct(from_ack, got, 99.9));
	printf("%s_max_ms=%.3f\n", prefix, pct(from_ack, got, 100));
	printf("%s_send_p50_ms=%.3f\n", prefix, pct(from_send, got, 50));
	printf("%s_send_p99_ms=%.3f\n", prefix, pct(from_send, got, 99));
	printf("%s_commit_p50_ms=%.3f\n", prefix, pct(commit, got, 50));
	printf("%s_commit_p99_ms=%.3f\n", prefix, pct(commit, got, 99));
	printf("%s_rate=%.1f\n", prefix, (double) wr.n / ((double) (wr.finished_ns - wr.started_ns) / 1e9));
	printf("%s_writer_behind_max_ms=%.1f\n", prefix, (double) wr.behind_max_ns / 1e6);
	free(from_ack);
	free(from_send);
	free(commit);
}

/* ----------------------------------------------------------------
 * latency: N clients on N tenants, paced writes, commit-to-client delay; memory
 * ---------------------------------------------------------------- */

static void
latency_hook(Conn *c, const uint8_t *change, size_t len)
{
	(void) c;
	writer_got(change_first_int(change, len));
}

static int64_t probe_id;		/* the row a probe connection looks for */
static int	probe_found;

static void
probe_hook(Conn *c, const uint8_t *change, size_t len)
{
	(void) c;
	if (change_first_int(change, len) == probe_id)
		probe_found = 1;
}

/*
 * For rows no client received: does a new subscription to the same shape get them from
 * the shape log? (Yes means they were stored and synced but their subscriber was never
 * woken for them.) Returns how many of the first `max` missing rows it found.
 */
static int
probe_missing(int port, const char *table, const char *prefix, int max, int *probed)
{
	int			found = 0;

	*probed = 0;
	change_hook = probe_hook;
	for (int64_t i = 0; i < wr.n && *probed < max; i++)
	{
		char		tenant[64],
					sub[96];
		char	   *tok;
		Conn	   *c;
		int64_t		deadline = now_ns() + 10000000000LL;

		if (atomic_load(&wr.t_recv[i]) != 0)
			continue;
		snprintf(tenant, sizeof(tenant), "%s%d", prefix, (int) (i % wr.tenants));
		snprintf(sub, sizeof(sub), "probe-%s", tenant);
		tok = token_for(sub, tenant);
		c = conn_open(port, tok, -1);
		free(tok);
		probe_id = wr.id_base + i;
		probe_found = 0;
		conn_subscribe(c, table, 1);
		while (!c->up_to_date && !probe_found && now_ns() < deadline)
		{
			conn_check(c, "probing");
			pump(50);
		}
		found += probe_found;
		(*probed)++;
		conn_close(c);
	}
	change_hook = latency_hook;
	return found;
}

static int
mode_latency(void)
{
	Ferryd		d;
	int			nclients = (int) opt_long("clients", "1000");
	int			rate = (int) opt_long("rate", "1000");
	double		seconds = atof(opt("seconds", "10"));
	double		warmup = atof(opt("warmup", "2"));
	const char *table = opt("table", NULL);
	const char *prefix = opt("prefix", "lat-");
	int			window = (int) opt_long("window", "8");
	Conn	  **cs = calloc((size_t) nclients, sizeof(Conn *));
	long		rss0,
				rss1,
				rss2,
				data0,
				data1,
				data2,
				anon0,
				anon1,
				anon2;
	PGconn	   *db = db_open();
	char		sql[256];
	int64_t		id_base;
	pthread_t	th;
	int64_t		n = (int64_t) ((seconds + warmup) * rate);
	int64_t		deadline;
	int64_t		cpu0,
				cpu1,
				self0,
				self1;
	int64_t		t0,
				t1;

	ferryd_spawn(&d, opt("data-dir", NULL), opt("slot", NULL), opt("log", "/dev/null"));
	ferryd_wait_healthy(&d, 30000);
	sleep_ms(1000);
	rss0 = proc_status_kb(d.pid, "VmRSS");
	anon0 = proc_status_kb(d.pid, "RssAnon");
	data0 = proc_status_kb(d.pid, "VmData");

	/* idle, authenticated connections */
	open_clients(d.port, prefix, 0, nclients, cs);
	for (int i = 0; i < 10; i++)
		pump(100);
	rss1 = proc_status_kb(d.pid, "VmRSS");
	anon1 = proc_status_kb(d.pid, "RssAnon");
	data1 = proc_status_kb(d.pid, "VmData");
	printf("conn_count=%d\n", nclients);
	printf("conn_rss_kb_before=%ld\nconn_rss_kb_after=%ld\n", rss0, rss1);
	printf("conn_rss_bytes_each=%.0f\n", (rss1 - rss0) * 1024.0 / nclients);
	printf("conn_anon_bytes_each=%.0f\n", (anon1 - anon0) * 1024.0 / nclients);
	printf("conn_vmdata_bytes_each=%.0f\n", (data1 - data0) * 1024.0 / nclients);

	/* one shape per connection, each on its own tenant */
	subscribe_all(cs, nclients, table, window);
	for (int i = 0; i < 20; i++)
		pump(100);
	rss2 = proc_status_kb(d.pid, "VmRSS");
	anon2 = proc_status_kb(d.pid, "RssAnon");
	data2 = proc_status_kb(d.pid, "VmData");
	printf("sub_rss_bytes_each=%.0f\n", (rss2 - rss1) * 1024.0 / nclients);
	printf("sub_anon_bytes_each=%.0f\n", (anon2 - anon1) * 1024.0 / nclients);
	printf("sub_vmdata_bytes_each=%.0f\n", (data2 - data1) * 1024.0 / nclients);
	printf("ferryd_fds=%d\n", proc_nfds(d.pid));

	/* paced writes, round robin over the tenants */
	snprintf(sql, sizeof(sql), "SELECT coalesce(max(id), 0) + 1 FROM %s", table);
	id_base = db_int(db, sql);
	PQfinish(db);
	change_hook = latency_hook;
	say("writing %" PRId64 " single-row transactions at %d/s over %d tenants", n, rate, nclients);
	cpu0 = proc_cpu_ns(d.pid);
	self0 = proc_cpu_ns(getpid());
	t0 = now_ns();
	writer_start(&th, table, prefix, nclients, rate, n, id_base);
	while (!atomic_load(&wr.done))
		pump(20);
	t1 = now_ns();
	cpu1 = proc_cpu_ns(d.pid);
	self1 = proc_cpu_ns(getpid());
	deadline = now_ns() + 5000000000LL;
	for (;;)
	{
		int64_t		got = 0;

		for (int64_t i = 0; i < wr.n; i++)
			got += atomic_load(&wr.t_recv[i]) != 0;
		if (got == wr.n || now_ns() > deadline)
			break;
		pump(20);
	}
	pthread_join(th, NULL);
	for (int i = 0; i < nclients; i++)
		conn_check(cs[i], "streaming");
	report_latency("lat", (int64_t) (warmup * rate));
	{
		int			probed;
		int			found = probe_missing(d.port, table, prefix, 20, &probed);

		printf("lat_missing_probed=%d\nlat_missing_in_log=%d\n", probed, found);
	}
	printf("lat_ferryd_cpu_share=%.3f\n", (double) (cpu1 - cpu0) / (double) (t1 - t0));
	printf("lat_gwbench_cpu_share=%.3f\n", (double) (self1 - self0) / (double) (t1 - t0));
	for (int i = 0; i < nclients; i++)
		conn_close(cs[i]);
	ferryd_stop(&d);
	return 0;
}

/* ----------------------------------------------------------------
 * latency-repl: the same writes, received by a bare replication client
 * ---------------------------------------------------------------- */

static uint32_t repl_relid;
static Repl *repl_conn;
static PgoMsg repl_msg;

static int
repl_on_data(void *arg, uint64_t start, uint64_t end, const char *payload, size_t len, char *err, size_t errlen)
{
	(void) arg;
	(void) start;
	(void) end;
	if (pgo_decode(&repl_msg, payload, len, err, errlen) < 0)
		return -1;
	if (repl_msg.type == PGO_INSERT && repl_msg.insert.relid == repl_relid && repl_msg.insert.newtup.ncols > 0)
	{
		const PgoDatum *dt = &repl_msg.insert.newtup.cols[0];
		int64_t		id = 0;

		for (uint32_t i = 0; i < dt->len; i++)
			id = id * 10 + (dt->data[i] - '0');
		writer_got(id);
	}
	else if (repl_msg.type == PGO_COMMIT)
		repl_confirm(repl_conn, repl_msg.commit.end_lsn);
	return 0;
}

static int
mode_latency_repl(void)
{
	int			rate = (int) opt_long("rate", "1000");
	int			tenants = (int) opt_long("clients", "1000");
	double		seconds = atof(opt("seconds", "10"));
	double		warmup = atof(opt("warmup", "2"));
	const char *table = opt("table", NULL);
	const char *prefix = opt("prefix", "lat-");
	PGconn	   *db = db_open();
	char		sql[256];
	char		err[512];
	int64_t		n = (int64_t) ((seconds + warmup) * rate);
	int64_t		id_base;
	int64_t		deadline;
	int64_t		next_tick = 0;
	pthread_t	th;
	ReplOptions o;

	snprintf(sql, sizeof(sql), "SELECT '%s'::regclass::oid", table);
	repl_relid = (uint32_t) db_int(db, sql);
	snprintf(sql, sizeof(sql), "SELECT coalesce(max(id), 0) + 1 FROM %s", table);
	id_base = db_int(db, sql);
	PQfinish(db);
	pgo_msg_init(&repl_msg);
	repl_options_init(&o);
	o.conninfo = env_or_die("FERRY_DATABASE_URL");
	o.slot = opt("slot", NULL);
	o.publication = "ferry";
	o.application_name = "gwbench";
	repl_conn = repl_open_opts(&o, NULL, err, sizeof(err));
	if (repl_conn == NULL)
		die("replication: %s", err);
	say("writing %" PRId64 " single-row transactions at %d/s (bare replication client)", n, rate);
	writer_start(&th, table, prefix, tenants, rate, n, id_base);
	deadline = 0;
	for (;;)
	{
		struct pollfd p = {repl_socket(repl_conn), POLLIN | (repl_wants_write(repl_conn) ? POLLOUT : 0), 0};
		int64_t		now;

		poll(&p, 1, 20);
		if ((p.revents & POLLIN) && repl_read(repl_conn, repl_on_data, NULL, err, sizeof(err)) < 0)
			die("replication: %s", err);
		if ((p.revents & POLLOUT) && repl_flush(repl_conn, err, sizeof(err)) < 0)
			die("replication: %s", err);
		now = now_ns();
		if (now >= next_tick)
		{
			next_tick = now + 100000000;
			if (repl_tick(repl_conn, repl_now_ms(), err, sizeof(err)) < 0)
				die("replication: %s", err);
		}
		if (atomic_load(&wr.done))
		{
			int64_t		got = 0;

			if (deadline == 0)
				deadline = now + 5000000000LL;
			for (int64_t i = 0; i < wr.n; i++)
				got += atomic_load(&wr.t_recv[i]) != 0;
			if (got == wr.n || now > deadline)
				break;
		}
	}
	pthread_join(th, NULL);
	report_latency("repl", (int64_t) (warmup * rate));
	repl_close(repl_conn);
	pgo_msg_free(&repl_msg);
	return 0;
}

/* ----------------------------------------------------------------
 * routing: CPU per change against the number of shapes; memory per shape
 * ---------------------------------------------------------------- */

/* Writes n single-row transactions to tenant (synchronous_commit off: as fast as it goes). */
static void
write_rows(PGconn *db, const char *table, const char *tenant, int64_t id_base, int64_t n, int per_txn, int rate)
{
	int64_t		t0 = now_ns();
	char		sql[256];
	PGresult   *r;

	static PGconn *prepared_on = NULL;

	if (prepared_on != db)
	{
		snprintf(sql, sizeof(sql), "INSERT INTO %s (id, tenant, payload) VALUES ($1::bigint, $2, 'x')", table);
		r = PQprepare(db, "rt_ins", sql, 2, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			die("prepare: %s", PQerrorMessage(db));
		PQclear(r);
		prepared_on = db;
	}
	for (int64_t i = 0; i < n; i++)
	{
		char		id[32];
		const char *params[2] = {id, tenant};

		if (rate > 0 && i % per_txn == 0)
		{
			int64_t		due = t0 + (i / per_txn) * (1000000000LL / rate);
			struct timespec ts = {(time_t) (due / 1000000000LL), (long) (due % 1000000000LL)};

			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		}
		if (per_txn > 1 && i % per_txn == 0)
			db_exec(db, "BEGIN");
		snprintf(id, sizeof(id), "%" PRId64, id_base + i);
		r = PQexecPrepared(db, "rt_ins", 2, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			die("insert: %s", PQerrorMessage(db));
		PQclear(r);
		if (per_txn > 1 && (i % per_txn == per_txn - 1 || i == n - 1))
			db_exec(db, "COMMIT");
	}
}

static int
cmp_dbl(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* One measurement: ferryd's main-thread CPU per change while n changes go to tenant. */
static double
measure_changes(Ferryd *d, PGconn *db, const char *table, const char *tenant, int64_t *id_next, int64_t n,
				int per_txn, int rate, double *seconds)
{
	Metrics		m;
	double		routed0;
	int64_t		cpu0,
				cpu1,
				t0;
	int64_t		deadline;

	if (ferryd_metrics(d, &m) != 0)
		die("no /metrics");
	routed0 = m.routed;
	cpu0 = proc_main_thread_ns(d->pid);
	t0 = now_ns();
	write_rows(db, table, tenant, *id_next, n, per_txn, rate);
	*id_next += n;
	deadline = now_ns() + 120000000000LL;
	for (;;)
	{
		sleep_ms(20);
		if (ferryd_metrics(d, &m) != 0)
			die("no /metrics");
		if (m.routed >= routed0 + (double) n)
			break;
		if (now_ns() > deadline)
			die("ferryd routed %.0f of %" PRId64 " changes in 120 s", m.routed - routed0, n);
	}
	cpu1 = proc_main_thread_ns(d->pid);
	*seconds = (double) (now_ns() - t0) / 1e9;
	return (double) (cpu1 - cpu0) / 1000.0 / (double) n;
}

static int
mode_routing(void)
{
	Ferryd		d;
	const char *table = opt("table", NULL);
	const char *prefix = opt("prefix", "rt-");
	const char *levels_s = opt("levels", "10,1000,10000");
	int64_t		nchanges = opt_long("changes", "5000");
	int			reps = (int) opt_long("reps", "5");
	int			paced = (int) opt_long("paced-rate", "500");
	const char *txn_s = opt("rows-per-txn", "1,100");
	int			txn_sizes[4];
	int			ntxn = 0;
	int			window = (int) opt_long("window", "16");
	int			levels[16];
	int			nlevels = 0;
	int			have = 0;
	long		rss0,
				anon0;
	PGconn	   *db = db_open();
	char		sql[256];
	char		tenant0[128];
	int64_t		id_next;
	struct rlimit rl;

	/* ferryd keeps one file descriptor per shape log: let it (and us) have them */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	for (const char *p = levels_s; *p && nlevels < 16;)
	{
		levels[nlevels++] = atoi(p);
		p = strchr(p, ',');
		if (p == NULL)
			break;
		p++;
	}
	for (const char *p = txn_s; *p && ntxn < 4;)
	{
		txn_sizes[ntxn++] = atoi(p) > 0 ? atoi(p) : 1;
		p = strchr(p, ',');
		if (p == NULL)
			break;
		p++;
	}
	snprintf(tenant0, sizeof(tenant0), "%s0", prefix);
	db_exec(db, "SET synchronous_commit = off");
	snprintf(sql, sizeof(sql), "SELECT coalesce(max(id), 0) + 1 FROM %s", table);
	id_next = db_int(db, sql);

	ferryd_spawn(&d, opt("data-dir", NULL), opt("slot", NULL), opt("log", "/dev/null"));
	ferryd_wait_healthy(&d, 30000);
	sleep_ms(1000);
	rss0 = proc_status_kb(d.pid, "VmRSS");
	anon0 = proc_status_kb(d.pid, "RssAnon");
	printf("rss_kb_0=%ld\n", rss0);
	printf("anon_kb_0=%ld\n", anon0);

	for (int l = 0; l < nlevels; l++)
	{
		int			want = levels[l];
		int64_t		idle0,
					idle1;
		long		rss,
					anon;

		if (want > have)
			create_shapes(d.port, table, prefix, have, want, window);
		have = want > have ? want : have;
		sleep_ms(1500);
		rss = proc_status_kb(d.pid, "VmRSS");
		anon = proc_status_kb(d.pid, "RssAnon");
		idle0 = proc_main_thread_ns(d.pid);
		sleep_ms(2000);
		idle1 = proc_main_thread_ns(d.pid);
		/*
		 * As fast as the writer goes in single-row and in 100-row transactions (ferryd
		 * reads several transactions per wake-up), then single-row transactions at a
		 * paced rate, as an app writes (about one transaction per wake-up).
		 */
		for (int t = 0; t <= ntxn; t++)
		{
			double		per[16],
						secs[16],
						sorted[16],
						s;
			int			size = t < ntxn ? txn_sizes[t] : 1;
			int			rate = t < ntxn ? 0 : paced;
			int64_t		n = t < ntxn ? nchanges * (size > 1 ? 4 : 1) : (int64_t) paced * 2;
			char		name[32];

			if (rate == 0 && t == ntxn)
				break;
			if (rate > 0)
				snprintf(name, sizeof(name), "paced%d", rate);
			else
				snprintf(name, sizeof(name), "txn%d", size);
			/* a warm-up batch, then the measured ones */
			measure_changes(&d, db, table, tenant0, &id_next, n / 5 + 1, size, rate, &s);
			for (int r = 0; r < reps && r < 16; r++)
				per[r] = measure_changes(&d, db, table, tenant0, &id_next, n, size, rate, &secs[r]);
			memcpy(sorted, per, sizeof(double) * (size_t) reps);
			qsort(sorted, (size_t) reps, sizeof(double), cmp_dbl);
			printf("shapes_%d_%s_us_per_change=%.2f\n", want, name, sorted[reps / 2]);
			printf("shapes_%d_%s_us_per_change_runs=", want, name);
			for (int r = 0; r < reps; r++)
				printf("%s%.2f", r ? "," : "", per[r]);
			printf("\n");
			printf("shapes_%d_%s_changes_per_second=%.0f\n", want, name, (double) n / secs[reps / 2]);
		}
		printf("shapes_%d_idle_cpu_ms_per_s=%.2f\n", want, (double) (idle1 - idle0) / 1e6 / 2.0);
		printf("shapes_%d_rss_kb=%ld\n", want, rss);
		printf("shapes_%d_anon_kb=%ld\n", want, anon);
		printf("shapes_%d_fds=%d\n", want, proc_nfds(d.pid));
		fflush(stdout);
	}
	ferryd_stop(&d);

	/* the same shapes after a restart: loaded from disk, never touched by a connection */
	{
		int64_t		t0 = now_ns();
		long		rss;

		ferryd_spawn(&d, opt("data-dir", NULL), opt("slot", NULL), opt("log", "/dev/null"));
		ferryd_wait_healthy(&d, 120000);
		printf("restart_seconds=%.2f\n", (double) (now_ns() - t0) / 1e9);
		sleep_ms(1500);
		rss = proc_status_kb(d.pid, "VmRSS");
		printf("restart_rss_kb=%ld\n", rss);
		printf("restart_shapes=%d\n", have);
		printf("restart_anon_kb=%ld\n", proc_status_kb(d.pid, "RssAnon"));
		ferryd_stop(&d);
	}
	PQfinish(db);
	return 0;
}

int
main(int argc, char **argv)
{
	g_argc = argc;
	g_argv = argv;
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		die("usage: gwbench exec|mkshape|ingest|latency|latency-repl|routing [--name=value...]");
	if (strcmp(argv[1], "exec") == 0)
		return mode_exec();
	if (strcmp(argv[1], "mkshape") == 0)
		return mode_mkshape();
	if (strcmp(argv[1], "ingest") == 0)
		return mode_ingest();
	if (strcmp(argv[1], "latency") == 0)
		return mode_latency();
	if (strcmp(argv[1], "latency-repl") == 0)
		return mode_latency_repl();
	if (strcmp(argv[1], "routing") == 0)
		return mode_routing();
	die("unknown mode \"%s\"", argv[1]);
}
