/*
 * test/qa/netproxy.c -- a fault-injecting TCP proxy for the offline QA scenarios.
 *
 *   netproxy --listen=127.0.0.1:0 --to=HOST:PORT|unix:PATH --control=PATH
 *            [--port-file=FILE] [--seed=N]
 *
 * Accepts TCP connections on --listen and connects each to --to (TCP, or a Unix socket
 * such as Postgres's), forwarding bytes both ways through one poll loop. The test steers
 * it while it runs through the Unix socket --control, one command per connection, one
 * line each, answered "ok ..." or "err ...":
 *
 *   pass               no faults: forward at once (clears every command below)
 *   delay MS JITTER    hold each chunk MS +- JITTER ms (order within a direction is kept)
 *   rate BYTES         at most BYTES per second per direction (0 = unlimited)
 *   close              close every open connection now (with a reset)
 *   refuse on|off      new connections are reset at once (the link is down)
 *   blackhole on|off   accept, read and never deliver (new and open connections)
 *   cut N              each connection open now or later is reset after N more bytes
 *   reset PERMILLE     each chunk resets its connection with that chance (seeded)
 *   target ADDR        connect new connections to ADDR (HOST:PORT or unix:PATH) from now on
 *   seed N             reseed the random faults
 *   stats              "ok conns=N open=N up=B down=B resets=N"
 *
 * The faults are what a phone sees: latency, slow links, a tunnel that eats packets, a
 * network that drops mid-frame. test/qa/qa.h starts it and sends commands from C.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define CHUNK 16384
#define MAX_QUEUED (1 << 20)		/* per direction: stop reading beyond this */

/* One chunk on its way, due at a time. */
typedef struct Chunk
{
	struct Chunk *next;			/* the next chunk of the direction */
	int64_t		due;			/* when it may be written (ms, monotonic) */
	size_t		len;			/* bytes in data */
	size_t		off;			/* bytes of data already written */
	char		data[];			/* the bytes */
} Chunk;

/* One direction of a connection: bytes read from `from`, written to `to`. */
typedef struct Dir
{
	Chunk	   *head;			/* oldest chunk */
	Chunk	   *tail;			/* newest chunk */
	size_t		queued;			/* bytes in the chunks */
	int			eof;			/* `from` has ended */
	int			shut;			/* `to` was shut down for writing */
	int64_t		last_due;		/* due time of the newest chunk (keeps order under jitter) */
} Dir;

/* A proxied connection. */
typedef struct Conn
{
	int			used;			/* the slot is taken */
	int			cfd;			/* the accepted client socket */
	int			sfd;			/* the socket to the target */
	int			black;			/* blackholed: read and drop */
	int64_t		cut_left;		/* bytes until it is reset (-1 = never) */
	Dir			up;				/* client -> target */
	Dir			down;			/* target -> client */
} Conn;

/* The proxy's settings and state. */
static struct
{
	int			lfd;			/* the listening socket */
	int			ctlfd;			/* the control socket */
	char		to[256];		/* the target, HOST:PORT or unix:PATH */
	int			delay;			/* ms added to each chunk */
	int			jitter;			/* +- ms */
	long		rate;			/* bytes per second per direction, 0 = unlimited */
	int			refuse;			/* reset new connections */
	int			blackhole;		/* blackhole new connections */
	int64_t		cut;			/* cut new connections after this many bytes, -1 = never */
	int			reset_pm;		/* chance per chunk of a reset, per mille */
	uint64_t	rng;			/* xorshift state */
	double		tokens_up;		/* rate limit bucket, client -> target */
	double		tokens_down;	/* rate limit bucket, target -> client */
	int64_t		refill_at;		/* last refill (ms) */
	long		conns;			/* connections accepted */
	long long	bytes_up;		/* bytes delivered to the target */
	long long	bytes_down;		/* bytes delivered to clients */
	long		resets;			/* connections reset by a fault */
} P;

static Conn conns[MAX_CONNS];

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
rnd(void)
{
	P.rng ^= P.rng << 13;
	P.rng ^= P.rng >> 7;
	P.rng ^= P.rng << 17;
	return P.rng;
}

static void
set_seed(uint64_t seed)
{
	P.rng = seed * 0x9E3779B97F4A7C15ULL + 1;
	for (int i = 0; i < 8; i++)
		rnd();
}

static void
nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* hard_close closes a socket with a reset (SO_LINGER 0), as a dropped network does. */
static void
hard_close(int fd)
{
	struct linger l = {1, 0};

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static void
dir_free(Dir *d)
{
	while (d->head)
	{
		Chunk	   *n = d->head->next;

		free(d->head);
		d->head = n;
	}
	memset(d, 0, sizeof(*d));
}

/* conn_drop ends a connection; reset says whether both ends see a reset. */
static void
conn_drop(Conn *c, int reset)
{
	if (reset)
	{
		hard_close(c->cfd);
		hard_close(c->sfd);
	}
	else
	{
		close(c->cfd);
		if (c->sfd >= 0)
			close(c->sfd);
	}
	dir_free(&c->up);
	dir_free(&c->down);
	memset(c, 0, sizeof(*c));
}

/* connect_target opens a blocking connection to the target; -1 when it refuses. */
static int
connect_target(void)
{
	int			fd;

	if (strncmp(P.to, "unix:", 5) == 0)
	{
		struct sockaddr_un sa;

		memset(&sa, 0, sizeof(sa));
		sa.sun_family = AF_UNIX;
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", P.to + 5);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
		{
			close(fd);
			return -1;
		}
	}
	else
	{
		struct sockaddr_in sa;
		char		host[256];
		char	   *colon;
		int			one = 1;

		snprintf(host, sizeof(host), "%s", P.to);
		colon = strrchr(host, ':');
		if (colon == NULL)
			return -1;
		*colon = '\0';
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_port = htons((uint16_t) atoi(colon + 1));
		inet_pton(AF_INET, host, &sa.sin_addr);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
		{
			close(fd);
			return -1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	nonblock(fd);
	return fd;
}

static void
accept_one(void)
{
	int			fd = accept(P.lfd, NULL, NULL);
	int			one = 1;
	Conn	   *c = NULL;

	if (fd < 0)
		return;
	P.conns++;
	if (P.refuse)
	{
		hard_close(fd);
		return;
	}
	for (int i = 0; i < MAX_CONNS; i++)
		if (!conns[i].used)
		{
			c = &conns[i];
			break;
		}
	if (c == NULL)
	{
		hard_close(fd);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->used = 1;
	c->cfd = fd;
	c->sfd = -1;
	c->cut_left = P.cut;
	c->black = P.blackhole;
	nonblock(fd);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!c->black)
	{
		c->sfd = connect_target();
		if (c->sfd < 0)
			conn_drop(c, 1);
	}
}

/* ---- forwarding -------------------------------------------------------------------- */

/* read_into reads from fd into a direction; returns -1 when the connection must reset. */
static int
read_into(Conn *c, int fd, Dir *d)
{
	char		buf[CHUNK];
	ssize_t		n = read(fd, buf, sizeof(buf));
	Chunk	   *ch;
	int64_t		due;

	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	if (n == 0)
	{
		d->eof = 1;
		return 0;
	}
	if (c->black)
		return 0;				/* swallowed */
	if (P.reset_pm > 0 && (int) (rnd() % 1000) < P.reset_pm)
	{
		P.resets++;
		return -1;
	}
	due = mono_ms() + P.delay;
	if (P.jitter > 0)
		due += (int64_t) (rnd() % (uint64_t) (2 * P.jitter + 1)) - P.jitter;
	if (due < d->last_due)
		due = d->last_due;
	d->last_due = due;
	ch = malloc(sizeof(Chunk) + (size_t) n);
	ch->next = NULL;
	ch->due = due;
	ch->len = (size_t) n;
	ch->off = 0;
	memcpy(ch->data, buf, (size_t) n);
	if (d->tail)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->queued += (size_t) n;
	return 0;
}

/* write_from writes the due chunks of a direction to fd; -1 when the connection must reset. */
static int
write_from(Conn *c, int fd, Dir *d, double *tokens, long long *counter)
{
	int64_t		now = mono_ms();

	while (d->head && d->head->due <= now)
	{
		Chunk	   *ch = d->head;
		size_t		want = ch->len - ch->off;
		ssize_t		n;

		if (P.rate > 0)
		{
			if (*tokens < 1)
				return 0;
			if ((double) want > *tokens)
				want = (size_t) *tokens;
		}
		if (c->cut_left >= 0 && (int64_t) want > c->cut_left)
			want = (size_t) c->cut_left;
		if (want > 0)
		{
			n = write(fd, ch->data + ch->off, want);
			if (n < 0)
				return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
			ch->off += (size_t) n;
			d->queued -= (size_t) n;
			*counter += n;
			if (P.rate > 0)
				*tokens -= (double) n;
			if (c->cut_left >= 0)
				c->cut_left -= n;
		}
		if (c->cut_left == 0)
		{
			P.resets++;
			return -1;
		}
		if (ch->off < ch->len)
			return 0;
		d->head = ch->next;
		if (d->head == NULL)
			d->tail = NULL;
		free(ch);
	}
	if (d->head == NULL && d->eof && !d->shut)
	{
		shutdown(fd, SHUT_WR);
		d->shut = 1;
	}
	return 0;
}

/* ---- control ----------------------------------------------------------------------- */

static void
control_one(void)
{
	int			fd = accept(P.ctlfd, NULL, NULL);
	char		line[256],
				reply[256];
	ssize_t		n;
	long		a = 0,
				b = 0;
	char		word[32] = "";

	if (fd < 0)
		return;
	n = read(fd, line, sizeof(line) - 1);	/* the command is one small write */
	if (n <= 0)
	{
		close(fd);
		return;
	}
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	snprintf(reply, sizeof(reply), "ok\n");
	if (strcmp(line, "pass") == 0)
	{
		P.delay = P.jitter = 0;
		P.rate = 0;
		P.refuse = P.blackhole = 0;
		P.cut = -1;
		P.reset_pm = 0;
		for (int i = 0; i < MAX_CONNS; i++)
			if (conns[i].used)
				conns[i].cut_left = -1;
	}
	else if (sscanf(line, "delay %ld %ld", &a, &b) >= 1)
	{
		P.delay = (int) a;
		P.jitter = (int) b;
	}
	else if (sscanf(line, "rate %ld", &a) == 1)
		P.rate = a;
	else if (strcmp(line, "close") == 0)
	{
		int			k = 0;

		for (int i = 0; i < MAX_CONNS; i++)
			if (conns[i].used)
			{
				conn_drop(&conns[i], 1);
				k++;
			}
		snprintf(reply, sizeof(reply), "ok closed=%d\n", k);
	}
	else if (sscanf(line, "refuse %31s", word) == 1)
		P.refuse = strcmp(word, "on") == 0;
	else if (sscanf(line, "blackhole %31s", word) == 1)
	{
		P.blackhole = strcmp(word, "on") == 0;
		if (P.blackhole)
			for (int i = 0; i < MAX_CONNS; i++)
				if (conns[i].used)
				{
					conns[i].black = 1;
					dir_free(&conns[i].up);
					dir_free(&conns[i].down);
				}
	}
	else if (sscanf(line, "cut %ld", &a) == 1)
	{
		P.cut = a;
		for (int i = 0; i < MAX_CONNS; i++)
			if (conns[i].used)
				conns[i].cut_left = a;
	}
	else if (sscanf(line, "reset %ld", &a) == 1)
		P.reset_pm = (int) a;
	else if (strncmp(line, "target ", 7) == 0 && line[7] != '\0')
		snprintf(P.to, sizeof(P.to), "%.250s", line + 7);
	else if (sscanf(line, "seed %ld", &a) == 1)
		set_seed((uint64_t) a);
	else if (strcmp(line, "stats") == 0)
	{
		int			open = 0;

		for (int i = 0; i < MAX_CONNS; i++)
			open += conns[i].used;
		snprintf(reply, sizeof(reply), "ok conns=%ld open=%d up=%lld down=%lld resets=%ld\n", P.conns, open,
				 P.bytes_up, P.bytes_down, P.resets);
	}
	else
		snprintf(reply, sizeof(reply), "err unknown command: %.200s\n", line);
	if (write(fd, reply, strlen(reply)) < 0)
	{
		/* the test went away; nothing to tell */
	}
	close(fd);
}

/* ---- main -------------------------------------------------------------------------- */

static int
listen_on(const char *spec, int *port)
{
	struct sockaddr_in sa;
	socklen_t	len = sizeof(sa);
	char		host[128];
	char	   *colon;
	int			one = 1;
	int			fd;

	snprintf(host, sizeof(host), "%s", spec);
	colon = strrchr(host, ':');
	if (colon == NULL)
		return -1;
	*colon = '\0';
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 || listen(fd, 128) != 0)
		return -1;
	getsockname(fd, (struct sockaddr *) &sa, &len);
	*port = ntohs(sa.sin_port);
	nonblock(fd);
	return fd;
}

static int
control_on(const char *path)
{
	struct sockaddr_un sa;
	int			fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 || listen(fd, 16) != 0)
		return -1;
	return fd;
}

int
main(int argc, char **argv)
{
	const char *listen_spec = "127.0.0.1:0",
			   *port_file = NULL,
			   *control = NULL;
	int			port = 0;

	signal(SIGPIPE, SIG_IGN);
	P.cut = -1;
	set_seed(1);
	for (int i = 1; i < argc; i++)
	{
		if (strncmp(argv[i], "--listen=", 9) == 0)
			listen_spec = argv[i] + 9;
		else if (strncmp(argv[i], "--to=", 5) == 0)
			snprintf(P.to, sizeof(P.to), "%s", argv[i] + 5);
		else if (strncmp(argv[i], "--control=", 10) == 0)
			control = argv[i] + 10;
		else if (strncmp(argv[i], "--port-file=", 12) == 0)
			port_file = argv[i] + 12;
		else if (strncmp(argv[i], "--seed=", 7) == 0)
			set_seed(strtoull(argv[i] + 7, NULL, 10));
		else
		{
			fprintf(stderr, "usage: netproxy --listen=HOST:PORT --to=HOST:PORT|unix:PATH --control=PATH "
					"[--port-file=FILE] [--seed=N]\n");
			return 2;
		}
	}
	if (P.to[0] == '\0' || control == NULL)
	{
		fprintf(stderr, "netproxy: --to and --control are required\n");
		return 2;
	}
	if ((P.lfd = listen_on(listen_spec, &port)) < 0)
	{
		fprintf(stderr, "netproxy: cannot listen on %s: %s\n", listen_spec, strerror(errno));
		return 1;
	}
	if ((P.ctlfd = control_on(control)) < 0)
	{
		fprintf(stderr, "netproxy: cannot open the control socket %s: %s\n", control, strerror(errno));
		return 1;
	}
	if (port_file)
	{
		char		tmp[512];
		FILE	   *f;

		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		f = fopen(tmp, "w");
		if (f == NULL)
			return 1;
		fprintf(f, "%d\n", port);
		fclose(f);
		rename(tmp, port_file);
	}
	P.refill_at = mono_ms();

	for (;;)
	{
		struct pollfd pfd[2 + 2 * MAX_CONNS];
		int			who[2 + 2 * MAX_CONNS];
		int			n = 0;
		int64_t		now = mono_ms(),
					next = now + 1000;

		if (P.rate > 0)
		{
			double		add = (double) P.rate * (double) (now - P.refill_at) / 1000.0;

			P.tokens_up = P.tokens_up + add > P.rate ? (double) P.rate : P.tokens_up + add;
			P.tokens_down = P.tokens_down + add > P.rate ? (double) P.rate : P.tokens_down + add;
		}
		P.refill_at = now;

		/* write what is due, then decide what to wait for */
		for (int i = 0; i < MAX_CONNS; i++)
		{
			Conn	   *c = &conns[i];

			if (!c->used)
				continue;
			if (!c->black)
			{
				if (write_from(c, c->sfd, &c->up, &P.tokens_up, &P.bytes_up) < 0 ||
					write_from(c, c->cfd, &c->down, &P.tokens_down, &P.bytes_down) < 0)
				{
					conn_drop(c, 1);
					continue;
				}
				if (c->up.shut && c->down.shut)
				{
					conn_drop(c, 0);
					continue;
				}
			}
			else if (c->up.eof)
			{
				conn_drop(c, 0);
				continue;
			}
		}
		pfd[n] = (struct pollfd) {P.lfd, POLLIN, 0};
		who[n++] = -1;
		pfd[n] = (struct pollfd) {P.ctlfd, POLLIN, 0};
		who[n++] = -2;
		for (int i = 0; i < MAX_CONNS; i++)
		{
			Conn	   *c = &conns[i];

			if (!c->used)
				continue;
			pfd[n] = (struct pollfd) {c->cfd, 0, 0};
			if (!c->up.eof && c->up.queued < MAX_QUEUED)
				pfd[n].events |= POLLIN;
			if (c->down.head && c->down.head->due <= now && (P.rate == 0 || P.tokens_down >= 1))
				pfd[n].events |= POLLOUT;
			who[n++] = 2 * i;
			if (c->sfd >= 0)
			{
				pfd[n] = (struct pollfd) {c->sfd, 0, 0};
				if (!c->down.eof && c->down.queued < MAX_QUEUED)
					pfd[n].events |= POLLIN;
				if (c->up.head && c->up.head->due <= now && (P.rate == 0 || P.tokens_up >= 1))
					pfd[n].events |= POLLOUT;
				who[n++] = 2 * i + 1;
			}
			if (c->up.head && c->up.head->due < next)
				next = c->up.head->due;
			if (c->down.head && c->down.head->due < next)
				next = c->down.head->due;
			if (P.rate > 0 && (c->up.head || c->down.head) && now + 10 < next)
				next = now + 10;
		}
		if (poll(pfd, (nfds_t) n, next > now ? (int) (next - now) : 0) < 0)
		{
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int k = 0; k < n; k++)
		{
			Conn	   *c;
			int			rc = 0;

			if (pfd[k].revents == 0)
				continue;
			if (who[k] == -1)
			{
				accept_one();
				continue;
			}
			if (who[k] == -2)
			{
				control_one();
				continue;
			}
			c = &conns[who[k] / 2];
			if (!c->used)
				continue;
			if ((pfd[k].revents & POLLHUP) && !(pfd[k].revents & POLLIN) &&
				(who[k] % 2 == 0 ? c->up.eof : c->down.eof))
			{
				conn_drop(c, 0);	/* the peer is gone both ways */
				continue;
			}
			if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
			{
				if (who[k] % 2 == 0)
					rc = c->up.eof ? 0 : read_into(c, c->cfd, &c->up);
				else
					rc = c->down.eof ? 0 : read_into(c, c->sfd, &c->down);
				if ((pfd[k].revents & POLLERR) && !(pfd[k].revents & POLLIN))
					rc = -1;
			}
			if (rc < 0)
				conn_drop(c, 1);
		}
	}
}
