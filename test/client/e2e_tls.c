/*
 * test/client/e2e_tls.c -- wss://: devices sync through a TLS-terminating nginx in front of
 * a real ferryd, the server's certificate checked (trust and name), and every refusal a
 * clear connection error, never a hang or a crash.
 *
 * Certificates are made here with the openssl command: one for IP 127.0.0.1 and one for
 * another name, each self-signed. Skipped when nginx or openssl is not installed.
 */
#include "e2e_harness.h"

#include <netinet/in.h>
#include <sys/socket.h>

#define ROWS "SELECT group_concat(id || ':' || body, ',') FROM (SELECT * FROM tl_notes ORDER BY id)"

static char dir[256];
static pid_t nginx_pid;

/* A TCP port nothing listens on now. */
static int
free_port(void)
{
	struct sockaddr_in sa;
	socklen_t	len = sizeof(sa);
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	int			port;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 ||
		getsockname(fd, (struct sockaddr *) &sa, &len) != 0)
		bail_out("cannot find a free port");
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void
run(const char *fmt, ...)
{
	char		cmd[2048];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0)
		bail_out("failed: %s", cmd);
}

/* A self-signed certificate DIR/name.pem (key DIR/name.key) for subjectAltName san. */
static void
make_cert(const char *name, const char *san)
{
	run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
		"-subj /CN=ferry-test -addext subjectAltName=%s -keyout %s/%s.key -out %s/%s.pem >/dev/null 2>&1",
		san, dir, name, dir, name);
}

/* nginx in the foreground: TLS on `good` (cert for 127.0.0.1) and `wrong` (another name). */
static void
start_nginx(int good, int wrong, int ferryd_port)
{
	char		conf[300];
	FILE	   *f;
	char		url[64];

	snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
	f = fopen(conf, "w");
	if (f == NULL)
		bail_out("cannot write %s", conf);
	fprintf(f,
			"daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\n"
			"error_log %s/nginx-error.log warn;\nevents { worker_connections 64; }\n"
			"http {\n  access_log off;\n  client_body_temp_path %s/tmp-body;\n  proxy_temp_path %s/tmp-proxy;\n"
			"  fastcgi_temp_path %s/tmp-fcgi;\n  uwsgi_temp_path %s/tmp-uwsgi;\n  scgi_temp_path %s/tmp-scgi;\n"
			"  map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n",
			dir, dir, dir, dir, dir, dir, dir);
	for (int i = 0; i < 2; i++)
		fprintf(f,
				"  server {\n    listen 127.0.0.1:%d ssl;\n    ssl_certificate %s/%s.pem;\n"
				"    ssl_certificate_key %s/%s.key;\n    location / {\n      proxy_pass http://127.0.0.1:%d;\n"
				"      proxy_http_version 1.1;\n      proxy_set_header Upgrade $http_upgrade;\n"
				"      proxy_set_header Connection $connection_upgrade;\n      proxy_read_timeout 3600s;\n    }\n  }\n",
				i == 0 ? good : wrong, dir, i == 0 ? "good" : "wrong", dir, i == 0 ? "good" : "wrong", ferryd_port);
	fprintf(f, "}\n");
	fclose(f);
	nginx_pid = fork();
	if (nginx_pid == 0)
	{
		int			null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		execlp("nginx", "nginx", "-e", "stderr", "-c", conf, "-p", dir, (char *) NULL);
		_exit(127);
	}
	/* until it answers on the good port */
	snprintf(url, sizeof(url), "%d", good);
	for (int i = 0; i < 100; i++)
	{
		char		cmd[300];

		snprintf(cmd, sizeof(cmd), "openssl s_client -connect 127.0.0.1:%d </dev/null >/dev/null 2>&1", good);
		if (system(cmd) == 0)
			return;
		usleep(100000);
	}
	bail_out("nginx did not start (see %s/nginx-error.log)", dir);
}

static void
stop_nginx(void)
{
	if (nginx_pid > 0)
	{
		kill(nginx_pid, SIGTERM);
		waitpid(nginx_pid, NULL, 0);
		nginx_pid = 0;
	}
}

/* `ferry sync --once` on d; its exit status, and what it printed on stderr in *err. */
static int
sync_once(Dev *d, char **err)
{
	char		cmd[1200];
	char		errfile[300];
	FILE	   *f;
	long		n;
	int			status;

	snprintf(errfile, sizeof(errfile), "%s/stderr.txt", dir);
	snprintf(cmd, sizeof(cmd), "%s --db '%s' --url '%s' sync --once --timeout 10 >/dev/null 2>'%s'", CLI, d->db,
			 d->url, errfile);
	setenv("FERRY_TOKEN", d->token, 1);
	status = system(cmd);
	unsetenv("FERRY_TOKEN");
	f = fopen(errfile, "r");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	*err = calloc(1, (size_t) n + 1);
	if (fread(*err, 1, (size_t) n, f) != (size_t) n)
		(*err)[0] = '\0';
	fclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int
main(void)
{
	Gw		   *g;
	Dev			a,
				b;
	char	   *out;
	int			good = free_port(),
				wrong = free_port();
	char		ca[300];

	if (system("command -v nginx >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1") != 0)
		skip_all("nginx or openssl is not installed (make deps installs them)");
	snprintf(dir, sizeof(dir), "/tmp/ferry-tls-XXXXXX");
	if (mkdtemp(dir) == NULL)
		bail_out("mkdtemp failed");
	chmod(dir, 0755);
	make_cert("good", "IP:127.0.0.1");
	make_cert("wrong", "DNS:elsewhere.example");
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	run("cat %s/good.pem %s/wrong.pem > %s", dir, dir, ca);

	sql("DROP TABLE IF EXISTS tl_notes");
	sql("CREATE TABLE tl_notes (id int PRIMARY KEY, ws text NOT NULL, body text)");
	sql("SELECT ferry.enable_sync('tl_notes', 'ws')");
	sql("INSERT INTO tl_notes VALUES (1, 'ws-a', 'one'), (2, 'ws-a', 'two'), (3, 'ws-b', 'other tenant')");
	g = gw_start(NULL);
	start_nginx(good, wrong, g->port);

	/* ---- a trusted certificate for the URL's host ---- */
	a = dev_new(g, "a", "u1:ws-a");
	snprintf(a.url, sizeof(a.url), "wss://127.0.0.1:%d", good);
	setenv("FERRY_CA_FILE", ca, 1);
	dev_ok(&a, "subscribe", "tl_notes", NULL);
	is_int(dev_sync(&a, 20), 0, "a device syncs over wss:// through a TLS-terminating proxy");
	is_dev(&a, ROWS, "1:one,2:two", "with its tenant's rows");
	dev_ok(&a, "insert", "tl_notes", "{\"id\": 4, \"ws\": \"ws-a\", \"body\": \"over tls\"}", NULL);
	dev_ok(&a, "update", "tl_notes", "1", "{\"body\": \"one, edited\"}", NULL);
	is_int(dev_sync(&a, 20), 0, "and sends its writes");
	is_sql("1:one, edited,4:over tls", "they are on the server",
		   "SELECT string_agg(id || ':' || body, ',' ORDER BY id) FROM tl_notes WHERE id IN (1, 4)");
	sql("INSERT INTO tl_notes VALUES (5, 'ws-a', 'five')");
	{
		long long	deadline = now_ms() + 20000;
		char	   *rows = NULL;

		do
		{
			free(rows);
			dev_sync(&a, 5);
			rows = dev_q(&a, ROWS);
		} while (strstr(rows, "5:five") == NULL && now_ms() < deadline);
		is_str(rows, "1:one, edited,2:two,4:over tls,5:five", "a live change comes back over TLS");
		free(rows);
	}
	{
		/* a large batch: many TLS records per frame, and frames across records */
		sql("INSERT INTO tl_notes SELECT g, 'ws-a', repeat('t', 300) FROM generate_series(100, 2099) g");
		{
			long long	deadline = now_ms() + 30000;
			char	   *n = NULL;

			do
			{
				free(n);
				dev_sync(&a, 10);
				n = dev_q(&a, "SELECT count(*) FROM tl_notes WHERE id >= 100");
			} while (strcmp(n, "2000") != 0 && now_ms() < deadline);
			is_str(n, "2000", "a 2000-row transaction (~650 kB) arrives whole over TLS");
			free(n);
		}
	}

	/* ---- the system's trust store does not know the test CA ---- */
	unsetenv("FERRY_CA_FILE");
	b = dev_new(g, "b", "u1:ws-a");
	snprintf(b.url, sizeof(b.url), "wss://127.0.0.1:%d", good);
	dev_ok(&b, "subscribe", "tl_notes", NULL);
	is_int(sync_once(&b, &out), 3, "an untrusted certificate: sync --once fails as a connection error (exit 3)");
	ok(strstr(out, "certificate") != NULL && strstr(out, "ferry_set_ca_file") != NULL,
	   "the error names the certificate and what to do: %s", out);
	free(out);
	is_dev(&b, "SELECT count(*) FROM ferry_shapes WHERE handle <> ''", "0", "and nothing was received");

	/* ---- trusted, but for another name ---- */
	setenv("FERRY_CA_FILE", ca, 1);
	snprintf(b.url, sizeof(b.url), "wss://127.0.0.1:%d", wrong);
	is_int(sync_once(&b, &out), 3, "a trusted certificate for another host name is refused (exit 3)");
	ok(strstr(out, "mismatch") != NULL, "the error says the name does not match: %s", out);
	free(out);

	/* ---- wss:// to a port that speaks plain WebSocket ---- */
	snprintf(b.url, sizeof(b.url), "wss://127.0.0.1:%d", g->port);
	{
		long long	t0 = now_ms();

		is_int(sync_once(&b, &out), 3, "wss:// to ferryd's plain port fails as a connection error");
		ok(now_ms() - t0 < 9000, "without waiting for the timeout (%lld ms)", now_ms() - t0);
	}
	ok(strstr(out, "TLS") != NULL, "and says TLS failed: %s", out);
	free(out);

	/* ---- a CA file that does not exist is refused up front ---- */
	setenv("FERRY_CA_FILE", "/nonexistent/ca.pem", 1);
	is_int(dev_run(&b, &out, "status", NULL), 2, "a CA file that cannot be read is a usage error (exit 2)");
	free(out);
	unsetenv("FERRY_CA_FILE");

	/* ---- and the same device then syncs over wss:// when trusted ---- */
	setenv("FERRY_CA_FILE", ca, 1);
	snprintf(b.url, sizeof(b.url), "wss://127.0.0.1:%d", good);
	is_int(dev_sync(&b, 20), 0, "with the right CA and host, the refused device syncs");
	is_dev(&b, "SELECT count(*) FROM tl_notes", "2004", "and holds its tenant's 2004 rows");

	stop_nginx();
	gw_stop(g, SIGTERM);
	gw_cleanup(g);
	run("rm -rf %s", dir);
	sql("DROP TABLE tl_notes");
	return done_testing();
}
