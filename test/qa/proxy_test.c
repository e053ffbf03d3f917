/*
 * test/qa/proxy_test.c -- netproxy's own test: every fault does what it says.
 *
 * An echo server (a child process) behind the proxy; the test talks to it through the
 * proxy and steers each fault: pass-through, delay, bandwidth, close, refuse, blackhole,
 * cut after N bytes, seeded random resets (the same seed gives the same resets), and a
 * Postgres connection through a proxy in front of the cluster's Unix socket.
 */
#include "qa.h"

static pid_t echo_pid;

static void
echo_kill(void)
{
	if (echo_pid > 0)
	{
		kill(echo_pid, SIGKILL);
		waitpid(echo_pid, NULL, 0);
	}
}

/* An echo server on a free port; returns the port. */
static int
echo_start(void)
{
	struct sockaddr_in sa;
	socklen_t	len = sizeof(sa);
	int			one = 1;
	int			lfd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) != 0 || listen(lfd, 64) != 0)
		bail_out("echo server: cannot listen");
	getsockname(lfd, (struct sockaddr *) &sa, &len);
	echo_pid = fork();
	if (echo_pid == 0)
	{
		signal(SIGCHLD, SIG_IGN);
		for (;;)
		{
			int			fd = accept(lfd, NULL, NULL);

			if (fd < 0)
				continue;
			if (fork() == 0)
			{
				char		buf[65536];
				ssize_t		n;

				while ((n = read(fd, buf, sizeof(buf))) > 0)
					if (write(fd, buf, (size_t) n) != n)
						break;
				_exit(0);
			}
			close(fd);
		}
	}
	close(lfd);
	atexit(echo_kill);
	return ntohs(sa.sin_port);
}

static int
dial(int port)
{
	struct sockaddr_in sa;
	int			fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
		bail_out("cannot connect to 127.0.0.1:%d", port);
	return fd;
}

/*
 * Reads until want bytes, EOF, an error or ms pass. Returns the bytes read; *end is 1 on
 * EOF, 2 on a reset, 0 when it stopped for want or the time.
 */
static long
recv_upto(int fd, long want, int ms, int *end)
{
	char		buf[65536];
	long		got = 0;
	long long	deadline = now_ms() + ms;

	*end = 0;
	while (got < want)
	{
		struct pollfd p = {fd, POLLIN, 0};
		long long	left = deadline - now_ms();
		ssize_t		n;

		if (left <= 0 || poll(&p, 1, (int) left) <= 0)
			break;
		n = read(fd, buf, sizeof(buf));
		if (n == 0)
		{
			*end = 1;
			break;
		}
		if (n < 0)
		{
			*end = errno == ECONNRESET ? 2 : 1;
			break;
		}
		got += n;
	}
	return got;
}

/* One echo round trip of len bytes; returns the bytes that came back within ms. */
static long
round_trip(int port, long len, int ms, int *end)
{
	int			fd = dial(port);
	char	   *data = malloc((size_t) len);
	long		got;
	long		sent = 0;

	memset(data, 'x', (size_t) len);
	while (sent < len)
	{
		ssize_t		n = write(fd, data + sent, (size_t) (len - sent) > 65536 ? 65536 : (size_t) (len - sent));

		if (n <= 0)
			break;
		sent += n;
	}
	got = recv_upto(fd, len, ms, end);
	free(data);
	close(fd);
	return got;
}

int
main(void)
{
	int			echo = echo_start();
	char		target[64];
	Np		   *np;
	int			end;
	long long	t0;
	long		got;

	signal(SIGPIPE, SIG_IGN);
	snprintf(target, sizeof(target), "127.0.0.1:%d", echo);
	np = np_start(target);

	/* pass */
	is_int(round_trip(np->port, 100000, 5000, &end), 100000, "pass: 100 kB come back whole");

	/* delay */
	np_cmd(np, "delay 300 0");
	t0 = now_ms();
	is_int(round_trip(np->port, 10, 5000, &end), 10, "delay: the bytes come back");
	ok(now_ms() - t0 >= 550, "delay 300 ms each way: the round trip took %lld ms", now_ms() - t0);
	np_cmd(np, "delay 100 80");
	is_int(round_trip(np->port, 200000, 10000, &end), 200000, "delay with jitter keeps the bytes in order and whole");

	/* rate */
	np_cmd(np, "pass");
	np_cmd(np, "rate 50000");
	t0 = now_ms();
	is_int(round_trip(np->port, 60000, 20000, &end), 60000, "rate: 60 kB come back");
	ok(now_ms() - t0 >= 900, "at 50 kB/s per direction it took %lld ms", now_ms() - t0);
	np_cmd(np, "pass");

	/* close */
	{
		int			fd = dial(np->port);
		long		n;

		is_int(write(fd, "ping", 4), 4, "close: a connection is open");
		is_int(recv_upto(fd, 4, 3000, &end), 4, "and answered");
		ok(strstr(np_cmd(np, "close"), "closed=1") != NULL, "close closes the one open connection");
		n = recv_upto(fd, 1, 3000, &end);
		ok(n == 0 && end != 0, "the client sees its connection end (%s)", end == 2 ? "reset" : "eof");
		close(fd);
	}

	/* refuse */
	np_cmd(np, "refuse on");
	got = round_trip(np->port, 10, 3000, &end);
	ok(got == 0 && end != 0, "refuse: a new connection ends at once");
	np_cmd(np, "refuse off");
	is_int(round_trip(np->port, 10, 3000, &end), 10, "refuse off: it works again");

	/* blackhole */
	np_cmd(np, "blackhole on");
	got = round_trip(np->port, 1000, 1500, &end);
	ok(got == 0 && end == 0, "blackhole: accepted, nothing delivered, not closed (got %ld, end %d)", got, end);
	{
		int			fd = dial(np->port);

		np_cmd(np, "blackhole off");
		is_int(write(fd, "ping", 4), 4, "a connection made in the blackhole");
		got = recv_upto(fd, 4, 1000, &end);
		ok(got == 0, "stays dead after blackhole off (a tunnel that ate it)");
		close(fd);
	}
	is_int(round_trip(np->port, 10, 3000, &end), 10, "blackhole off: new connections work");

	/* cut */
	np_cmd(np, "cut 1000");
	got = round_trip(np->port, 100000, 3000, &end);
	ok(got <= 1000 && end != 0, "cut 1000: the connection ends after at most 1000 bytes (%ld came back)", got);
	np_cmd(np, "pass");
	is_int(round_trip(np->port, 100000, 5000, &end), 100000, "pass clears the cut");

	/* seeded random resets */
	{
		int			resets[2] = {0, 0};

		for (int run = 0; run < 2; run++)
		{
			np_cmd(np, "seed 42");
			np_cmd(np, "reset 400");
			for (int i = 0; i < 30; i++)
				if (round_trip(np->port, 10, 3000, &end) < 10)
					resets[run]++;
			np_cmd(np, "pass");
		}
		ok(resets[0] > 0 && resets[0] < 30, "reset 400 per mille: %d of 30 connections reset", resets[0]);
		is_int(resets[1], resets[0], "the same seed resets the same connections");
	}
	ok(np_stat(np, "conns") > 60, "stats counts the connections (%ld)", np_stat(np, "conns"));
	np_stop(np);

	/* Postgres through its Unix socket */
	{
		Np		   *pgp = np_pg();
		char		ci[200];
		PGconn	   *c;

		snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d", pgp->port);
		c = PQconnectdb(ci);
		ok(PQstatus(c) == CONNECTION_OK, "a Postgres connection over TCP to the cluster's Unix socket");
		if (PQstatus(c) == CONNECTION_OK)
		{
			PGresult   *r = PQexec(c, "SELECT 6 * 7");

			is_str(PQgetvalue(r, 0, 0), "42", "and a query through it");
			PQclear(r);
			np_cmd(pgp, "close");
			r = PQexec(c, "SELECT 1");
			ok(PQresultStatus(r) != PGRES_TUPLES_OK, "close breaks the Postgres connection");
			PQclear(r);
		}
		else
			skip(2, "no connection");
		PQfinish(c);
		np_stop(pgp);
	}
	return done_testing();
}
