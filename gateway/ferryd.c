/*
 * gateway/ferryd.c -- ferryd's entry point: configuration, start-up checks, the event loop,
 * and the HTTP endpoints /healthz and /metrics.
 *
 * One service thread runs libwebsockets; the replication socket joins its
 * loop (stream.c), WebSocket sessions live in it (session.c), and snapshot
 * workers report back to it (snapshot.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "gateway.h"
#include "http.h"
#include "log.h"
#include "writes.h"

static int
check_database(PGconn *conn, char *err, size_t errlen)
{
	PGresult   *res = PQexec(conn, "SELECT current_setting('wal_level'), "
							 "(SELECT extversion FROM pg_extension WHERE extname = 'ferry')");

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		snprintf(err, errlen, "cannot query the database: %s", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "logical") != 0)
	{
		snprintf(err, errlen, "wal_level is \"%s\"; ferryd needs logical replication: set wal_level = logical "
				 "in postgresql.conf and restart PostgreSQL", PQgetvalue(res, 0, 0));
		PQclear(res);
		return -1;
	}
	if (PQgetisnull(res, 0, 1))
	{
		snprintf(err, errlen, "the ferry extension is not installed in database \"%s\": run CREATE EXTENSION ferry",
				 PQdb(conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

static int
check_data_dir(const char *dir, char *err, size_t errlen)
{
	char		path[4096];
	FILE	   *f;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
	{
		snprintf(err, errlen, "cannot create data directory \"%s\": %s", dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/.ferryd-write-test", dir);
	if ((f = fopen(path, "w")) == NULL || fputs("ok\n", f) < 0 || fclose(f) != 0)
	{
		snprintf(err, errlen, "data directory \"%s\" is not writable: %s", dir, strerror(errno));
		return -1;
	}
	unlink(path);
	return 0;
}

/*
 * After a restart, the shape logs may end with part of a transaction that was
 * being appended when ferryd stopped: everything from the slot's confirmed
 * position on stays hidden until the replay has appended it all.
 */
static void
hide_unconfirmed(Gateway *g, const char *slot)
{
	const char *params[1] = {slot};
	PGresult   *r = PQexecParams(g->pg, "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::text FROM pg_replication_slots "
								 "WHERE slot_name = $1 AND confirmed_flush_lsn IS NOT NULL",
								 1, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
	{
		uint64_t	confirmed = strtoull(PQgetvalue(r, 0, 0), NULL, 10);

		for (long i = hmap_next(&g->shapes.by_handle, 0); i >= 0; i = hmap_next(&g->shapes.by_handle, i + 1))
		{
			Shape	   *s = g->shapes.by_handle.slots[i].value;
			char		err[256];
			int			rc = slog_limit_visible(s->log, confirmed, err, sizeof(err));

			if (rc == 1)
			{
				s->hidden_above = slog_last(s->log).lsn;
				shape_mark_dirty(s);
			}
			else if (rc < 0)
				log_warn("ferryd", "shape %s: %s", s->handle, err);
		}
	}
	PQclear(r);
}

/* One descriptor per connection and per shape log: take all the hard limit allows. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("ferryd", "cannot raise the open-file limit: %s", strerror(errno));
	}
}

static int
make_token(Config *cfg)
{
	/* SUB:T1,T2[:ROLE] */
	char	   *spec = strdup(cfg->make_token);
	char	   *sub = spec;
	char	   *tenants = strchr(spec, ':');
	char	   *role = NULL;
	const char *list[64];
	size_t		n = 0;
	char	   *token = NULL;
	char		err[256];
	time_t		now = time(NULL);

	if (tenants == NULL || tenants == spec)
	{
		fprintf(stderr, "ferryd: --make-token wants SUB:TENANT[,TENANT...][:ROLE]\n");
		free(spec);
		return 2;
	}
	*tenants++ = '\0';
	if ((role = strchr(tenants, ':')) != NULL)
		*role++ = '\0';
	for (char *t = strtok(tenants, ","); t != NULL && n < 64; t = strtok(NULL, ","))
		list[n++] = t;
	if (auth_sign_hs256(cfg->jwt_secret, cfg->jwt_secret_len, sub, list, n, role, now,
						now + cfg->token_ttl, &token, err, sizeof(err)) != AUTH_OK)
	{
		fprintf(stderr, "ferryd: cannot make a token: %s\n", err);
		free(spec);
		return 1;
	}
	printf("%s\n", token);
	free(token);
	free(spec);
	return 0;
}

/* ----------------------------------------------------------------
 * HTTP: /healthz and /metrics
 * ---------------------------------------------------------------- */

static int
http_reply(struct lws *wsi, unsigned int status, const char *type, const char *body, size_t len)
{
	uint8_t		hdr[LWS_PRE + 512];
	uint8_t    *start = hdr + LWS_PRE;
	uint8_t    *p = start;
	uint8_t    *end = hdr + sizeof(hdr) - 1;
	uint8_t    *buf;

	if (lws_add_http_common_headers(wsi, status, type, (lws_filepos_t) len, &p, end) ||
		lws_add_http_header_by_name(wsi, (const unsigned char *) "cache-control:",
									(const unsigned char *) "no-store", 8, &p, end) ||
		lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	buf = malloc(LWS_PRE + len + 1);
	memcpy(buf + LWS_PRE, body, len);
	if (lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int) len)
	{
		free(buf);
		return -1;
	}
	free(buf);
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	int			rc = user != NULL ? http_api_callback(wsi, reason, user, in, len) : HTTP_NOT_MINE;

	if (rc != HTTP_NOT_MINE)
		return rc;				/* the HTTP API (http.c) */
	if (reason == LWS_CALLBACK_HTTP)
	{
		const char *uri = in;

		if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
		{
			static const char msg[] = "method not allowed: ferryd's HTTP endpoints take GET\n";

			return http_reply(wsi, 405, "text/plain", msg, sizeof(msg) - 1);
		}
		if (strcmp(uri, "/healthz") == 0)
		{
			char		body[512];
			int			ok = gw->repl != NULL && gw->health[0] == '\0' && !gw->stopping;
			int			n = snprintf(body, sizeof(body), "%s\n",
									 ok ? "ok: replicating" : (gw->stopping ? "stopping" :
															  (gw->health[0] ? gw->health : "not replicating yet")));

			return http_reply(wsi, ok ? 200 : 503, "text/plain", body, (size_t) n);
		}
		if (strcmp(uri, "/metrics") == 0)
		{
			size_t		cap = 16384;
			char	   *body = malloc(cap);
			int			n;
			int			rc;

			gw->metrics.shapes = gw->shapes.count;
			session_client_queues(&gw->metrics.client_pending, &gw->metrics.client_oldest_pending_seconds);
			while ((n = metrics_render(&gw->metrics, gw_now_us(), body, cap)) < 0)
				body = realloc(body, cap *= 2);
			rc = http_reply(wsi, 200, "text/plain; version=0.0.4", body, (size_t) n);
			free(body);
			return rc;
		}
		{
			static const char msg[] = "not found: ferryd serves /v1/ws (WebSocket, subprotocol ferry.v1), "
				"/v1/shape, /v1/mutations, /v1/sync, /healthz and /metrics\n";

			return http_reply(wsi, 404, "text/plain", msg, sizeof(msg) - 1);
		}
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* The replication socket, adopted into the loop as a raw file descriptor. */
static int
repl_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	switch (reason)
	{
		case LWS_CALLBACK_RAW_RX_FILE:
			if (stream_is_sync_timer(wsi))
				stream_on_sync_timer();
			else
				stream_on_readable();
			break;
		case LWS_CALLBACK_RAW_WRITEABLE_FILE:
			stream_on_writable();
			break;
		case LWS_CALLBACK_RAW_CLOSE_FILE:
			if (gw->repl_wsi == wsi)
				gw->repl_wsi = NULL;
			if (stream_is_sync_timer(wsi))
				stream_sync_timer_closed();
			break;
		case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
			snapshot_collect();
			writes_collect();
			http_sync_collect();
			break;
		default:
			break;
	}
	(void) user;
	(void) in;
	(void) len;
	return 0;
}

static struct lws_protocols protocols[] = {
	{"http", http_callback, 0, 0, 0, NULL, 0},
	{"ferry.v1", session_callback, 0, 64 * 1024, 0, NULL, 0},	/* per-session size set in main */
	{"ferry-repl", repl_callback, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* ----------------------------------------------------------------
 * Housekeeping and signals
 * ---------------------------------------------------------------- */

static void
tick(lws_sorted_usec_list_t *sul)
{
	int64_t		now = gw_now_us();
	static int64_t last_rate = 0;

	if (now - last_rate >= 1000000)
	{
		gw->metrics.changes_per_second = (double) (gw->metrics.changes - gw->changes_at_last_tick) *
			1e6 / (double) (last_rate ? now - last_rate : 1000000);
		gw->changes_at_last_tick = gw->metrics.changes;
		last_rate = now;
	}
	stream_tick(now);
	session_tick(now);
	http_tick(now);
	if (!gw->stopping)
		lws_sul_schedule(gw->ctx, 0, sul, tick, 100 * LWS_US_PER_MS);
}

static void
on_signal(int sig)
{
	(void) sig;
	if (gw != NULL)
	{
		gw->stopping = 1;
		if (gw->ctx != NULL)
			lws_cancel_service(gw->ctx);
	}
}

static void
lws_log(int level, const char *line)
{
	size_t		n = strlen(line);
	char		buf[512];

	snprintf(buf, sizeof(buf), "%.*s", (int) (n > 0 && line[n - 1] == '\n' ? n - 1 : n), line);
	log_msg(level == LLL_ERR ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, "lws", "%s", buf);
}

int
main(int argc, char **argv)
{
	static Gateway g;
	Config		cfg;
	char		err[1024];
	struct lws_context_creation_info info;
	int			rc;

	rc = config_load(&cfg, argc, argv, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0)
	{
		fprintf(stderr, "ferryd: %s\n", err);
		return 2;
	}
	if (log_set_level_name(cfg.log_level) != 0)
	{
		fprintf(stderr, "ferryd: unknown log level \"%s\": use error, warn, info or debug\n", cfg.log_level);
		return 2;
	}
	if (cfg.make_token != NULL)
	{
		rc = make_token(&cfg);
		config_free(&cfg);
		return rc;
	}

	gw = &g;
	g.cfg = &cfg;
	g.repl_fd = -1;
	pthread_mutex_init(&g.snap_lock, NULL);
	pgo_msg_init(&g.msg);
	g.relcache = pgo_relcache_new();

	if (check_data_dir(cfg.data_dir, err, sizeof(err)) != 0 ||
		(g.pg = gw_connect(cfg.database_url, err, sizeof(err))) == NULL ||
		check_database(g.pg, err, sizeof(err)) != 0 ||
		(g.cat = cat_load(g.pg, err, sizeof(err))) == NULL ||
		shape_registry_init(&g.shapes, cfg.data_dir, err, sizeof(err)) != 0 ||
		shape_registry_load(&g.shapes, g.cat, err, sizeof(err)) != 0)
	{
		log_error("ferryd", "%s", err);
		fprintf(stderr, "ferryd: %s\n", err);
		return 1;
	}

	hide_unconfirmed(&g, cfg.slot);
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);

	protocols[0].per_session_data_size = http_req_size_of();
	protocols[1].per_session_data_size = session_size_of();
	memset(&info, 0, sizeof(info));
	info.port = cfg.listen_port;
	info.iface = cfg.listen_host;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
		LWS_SERVER_OPTION_VALIDATE_UTF8;
	info.options &= ~LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
	info.pt_serv_buf_size = 64 * 1024;
	info.timeout_secs = 20;
	/* parked long-polls keep their request headers: one header table each */
	info.max_http_header_pool2 = 100000;
	g.ctx = lws_create_context(&info);
	if (g.ctx == NULL || (g.vhost = lws_get_vhost_by_name(g.ctx, "default")) == NULL)
	{
		fprintf(stderr, "ferryd: cannot listen on %s:%d (address in use, or not an address of this host)\n",
				cfg.listen_host, cfg.listen_port);
		return 1;
	}
	g.port = lws_get_vhost_listen_port(g.vhost);
	log_info("ferryd", "listening on %s:%d (ws /v1/ws, http /v1/shape /v1/mutations /v1/sync, /healthz, /metrics), "
			 "data dir %s, slot %s",
			 cfg.listen_host, g.port, cfg.data_dir, cfg.slot);
	if (cfg.port_file != NULL)
	{
		FILE	   *f = fopen(cfg.port_file, "w");

		if (f != NULL)
		{
			fprintf(f, "%d\n", g.port);
			fclose(f);
		}
	}

	if (writes_init(cfg.database_url, cfg.apply_workers, cfg.push_rate, cfg.push_burst, cfg.pull_rate,
					cfg.pull_burst, err, sizeof(err)) != 0 ||
		http_sync_init(cfg.database_url, err, sizeof(err)) != 0 ||
		stream_start(err, sizeof(err)) != 0)
	{
		log_error("ferryd", "%s", err);
		fprintf(stderr, "ferryd: %s\n", err);
		lws_context_destroy(g.ctx);
		return 1;
	}
	lws_sul_schedule(g.ctx, 0, &g.tick, tick, 100 * LWS_US_PER_MS);

	while (!g.stopping)
		if (lws_service(g.ctx, 0) < 0)
			break;

	log_info("ferryd", "shutting down");
	session_close_all();
	for (int i = 0; i < 20 && session_size() > 0; i++)
		lws_service(g.ctx, 0);
	stream_sync();
	stream_stop();
	lws_context_destroy(g.ctx);
	writes_shutdown();
	http_sync_shutdown();
	shape_registry_destroy(&g.shapes);
	cat_free(g.cat);
	PQfinish(g.pg);
	pgo_relcache_free(g.relcache);
	pgo_msg_free(&g.msg);
	config_free(&cfg);
	log_info("ferryd", "stopped");
	return 0;
}
