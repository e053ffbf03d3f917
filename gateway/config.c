/*
 * gateway/config.c -- ferryd's configuration: flags, then environment, then defaults.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define DEFAULT_LISTEN		"127.0.0.1:7070"
#define DEFAULT_SLOT		"ferry"
#define DEFAULT_DATA_DIR	"./ferry-data"

void
config_usage(FILE *out)
{
	fprintf(out,
			"Usage: ferryd [OPTION]...\n"
			"Streams tenant-filtered shapes of a PostgreSQL database to offline-first clients.\n"
			"\n"
			"  -d, --database-url=URL     database (libpq conninfo or URI)       [FERRY_DATABASE_URL]\n"
			"  -l, --listen=HOST:PORT     WebSocket and HTTP address (" DEFAULT_LISTEN ") [FERRY_LISTEN]\n"
			"  -D, --data-dir=DIR         shape logs and state (" DEFAULT_DATA_DIR ")   [FERRY_DATA_DIR]\n"
			"      --jwt-secret-file=FILE HS256 key for client tokens             [FERRY_JWT_SECRET]\n"
			"      --slot=NAME            logical replication slot (" DEFAULT_SLOT ")       [FERRY_SLOT]\n"
			"      --log-level=LEVEL      error, warn, info or debug (info)      [FERRY_LOG_LEVEL]\n"
			"      --retention-bytes=N    shape log size kept per shape (256 MiB) [FERRY_RETENTION_BYTES]\n"
			"      --retention-age=SEC    shape log age kept (7 days)            [FERRY_RETENTION_AGE]\n"
			"      --send-buffer=BYTES    per-connection send buffer before a slow client is cut (4 MiB)\n"
			"      --port-file=FILE       write the bound port to FILE once listening\n"
			"      --apply-workers=N      threads applying mutations (4)\n"
			"      --group-sync=USEC      while changes stream in, fsync the shape logs at most once\n"
			"                             per USEC microseconds (2000; 0 = after every read)\n"
			"      --push-rate=N          per-user mutations per second (100; 0 = unlimited) [FERRY_PUSH_RATE]\n"
			"      --push-burst=N         per-user mutation burst (1000)          [FERRY_PUSH_BURST]\n"
			"      --pull-rate=N          per-user subscriptions per second (10)  [FERRY_PULL_RATE]\n"
			"      --pull-burst=N         per-user subscription burst (100)       [FERRY_PULL_BURST]\n"
			"      --make-token=SUB:TENANT[,TENANT...][:ROLE]\n"
			"                             print a token signed with the JWT secret, and exit\n"
			"      --token-ttl=SEC        lifetime of --make-token tokens (86400)\n"
			"  -h, --help                 this help\n"
			"      --version              version\n"
			"\n"
			"Endpoints: ws://HOST:PORT/v1/ws (subprotocol ferry.v1), GET /healthz, GET /metrics.\n"
			"Exit status: 0 after a clean shutdown (SIGTERM, SIGINT), 1 on a start-up or fatal error,\n"
			"2 on a bad command line.\n");
}

static int
parse_int64(const char *s, int64_t min, int64_t *out)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min)
		return -1;
	*out = v;
	return 0;
}

static int
parse_rate(const char *s, double *out)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v != v)
		return -1;
	*out = v;
	return 0;
}

static int
env_rate(const char *name, double *out, char *err, size_t errlen)
{
	const char *s = getenv(name);

	if (s == NULL || s[0] == '\0')
		return 0;
	if (parse_rate(s, out) != 0)
	{
		snprintf(err, errlen, "%s=\"%s\" is not a rate: give a number >= 0", name, s);
		return -1;
	}
	return 0;
}

static int
set_listen(Config *cfg, const char *s, char *err, size_t errlen)
{
	const char *colon = strrchr(s, ':');
	int64_t		port;

	if (colon == NULL || colon == s || parse_int64(colon + 1, 0, &port) != 0 || port > 65535)
	{
		snprintf(err, errlen, "listen address \"%s\" is not HOST:PORT (e.g. 127.0.0.1:7070)", s);
		return -1;
	}
	free(cfg->listen_host);
	cfg->listen_host = strndup(s, colon - s);
	cfg->listen_port = (int) port;
	return 0;
}

static int
read_secret_file(Config *cfg, const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t		buf[4096];
	size_t		n;

	if (f == NULL)
	{
		snprintf(err, errlen, "cannot read JWT secret file \"%s\": %s", path, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	free(cfg->jwt_secret);
	cfg->jwt_secret = malloc(n + 1);
	memcpy(cfg->jwt_secret, buf, n);
	cfg->jwt_secret[n] = 0;
	cfg->jwt_secret_len = n;
	return 0;
}

static char *
env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	if (v != NULL && v[0] != '\0')
		return strdup(v);
	return fallback != NULL ? strdup(fallback) : NULL;
}

int
config_load(Config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	enum
	{
		OPT_SECRET = 256, OPT_SLOT, OPT_LOG, OPT_RBYTES, OPT_RAGE, OPT_SENDBUF, OPT_PORTFILE,
		OPT_TOKEN, OPT_TTL, OPT_VERSION, OPT_WORKERS, OPT_GROUP_SYNC, OPT_PUSH_RATE, OPT_PUSH_BURST, OPT_PULL_RATE,
		OPT_PULL_BURST
	};
	static const struct option opts[] = {
		{"database-url", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"data-dir", required_argument, NULL, 'D'},
		{"jwt-secret-file", required_argument, NULL, OPT_SECRET},
		{"slot", required_argument, NULL, OPT_SLOT},
		{"log-level", required_argument, NULL, OPT_LOG},
		{"retention-bytes", required_argument, NULL, OPT_RBYTES},
		{"retention-age", required_argument, NULL, OPT_RAGE},
		{"send-buffer", required_argument, NULL, OPT_SENDBUF},
		{"port-file", required_argument, NULL, OPT_PORTFILE},
		{"make-token", required_argument, NULL, OPT_TOKEN},
		{"token-ttl", required_argument, NULL, OPT_TTL},
		{"apply-workers", required_argument, NULL, OPT_WORKERS},
		{"group-sync", required_argument, NULL, OPT_GROUP_SYNC},
		{"push-rate", required_argument, NULL, OPT_PUSH_RATE},
		{"push-burst", required_argument, NULL, OPT_PUSH_BURST},
		{"pull-rate", required_argument, NULL, OPT_PULL_RATE},
		{"pull-burst", required_argument, NULL, OPT_PULL_BURST},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		{NULL, 0, NULL, 0}
	};
	char	   *listen;
	char	   *s;
	int64_t		v;
	int			c;

	memset(cfg, 0, sizeof(*cfg));
	/* Set but empty: libpq's defaults and PG* environment variables. */
	if ((s = getenv("FERRY_DATABASE_URL")) != NULL)
		cfg->database_url = strdup(s);
	cfg->data_dir = env_or("FERRY_DATA_DIR", DEFAULT_DATA_DIR);
	cfg->slot = env_or("FERRY_SLOT", DEFAULT_SLOT);
	cfg->publication = strdup("ferry");
	cfg->log_level = env_or("FERRY_LOG_LEVEL", "info");
	cfg->retention_bytes = 256LL << 20;
	cfg->retention_age = 7LL * 24 * 3600;
	cfg->send_buffer = 4u << 20;
	cfg->max_frame = 1u << 20;
	cfg->hello_timeout = 10;
	cfg->heartbeat = 15;
	cfg->token_ttl = 86400;
	cfg->apply_workers = 4;
	cfg->group_sync_us = 2000;
	cfg->push_rate = 100;
	cfg->push_burst = 1000;
	cfg->pull_rate = 10;
	cfg->pull_burst = 100;
	if (env_rate("FERRY_PUSH_RATE", &cfg->push_rate, err, errlen) != 0 ||
		env_rate("FERRY_PUSH_BURST", &cfg->push_burst, err, errlen) != 0 ||
		env_rate("FERRY_PULL_RATE", &cfg->pull_rate, err, errlen) != 0 ||
		env_rate("FERRY_PULL_BURST", &cfg->pull_burst, err, errlen) != 0)
		return -1;
	if ((s = getenv("FERRY_JWT_SECRET")) != NULL && s[0] != '\0')
	{
		cfg->jwt_secret = (uint8_t *) strdup(s);
		cfg->jwt_secret_len = strlen(s);
	}
	if ((s = getenv("FERRY_RETENTION_BYTES")) != NULL && parse_int64(s, 4096, &cfg->retention_bytes) != 0)
	{
		snprintf(err, errlen, "FERRY_RETENTION_BYTES=\"%s\" is not a byte count of at least 4096", s);
		return -1;
	}
	if ((s = getenv("FERRY_RETENTION_AGE")) != NULL && parse_int64(s, 1, &cfg->retention_age) != 0)
	{
		snprintf(err, errlen, "FERRY_RETENTION_AGE=\"%s\" is not a number of seconds", s);
		return -1;
	}
	listen = env_or("FERRY_LISTEN", DEFAULT_LISTEN);
	if (set_listen(cfg, listen, err, errlen) != 0)
	{
		free(listen);
		return -1;
	}
	free(listen);

	optind = 1;
	while ((c = getopt_long(argc, argv, "d:l:D:h", opts, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				free(cfg->database_url);
				cfg->database_url = strdup(optarg);
				break;
			case 'l':
				if (set_listen(cfg, optarg, err, errlen) != 0)
					return -1;
				break;
			case 'D':
				free(cfg->data_dir);
				cfg->data_dir = strdup(optarg);
				break;
			case OPT_SECRET:
				if (read_secret_file(cfg, optarg, err, errlen) != 0)
					return -1;
				break;
			case OPT_SLOT:
				free(cfg->slot);
				cfg->slot = strdup(optarg);
				break;
			case OPT_LOG:
				free(cfg->log_level);
				cfg->log_level = strdup(optarg);
				break;
			case OPT_RBYTES:
				if (parse_int64(optarg, 4096, &cfg->retention_bytes) != 0)
				{
					snprintf(err, errlen, "--retention-bytes=\"%s\" is not a byte count of at least 4096", optarg);
					return -1;
				}
				break;
			case OPT_RAGE:
				if (parse_int64(optarg, 1, &cfg->retention_age) != 0)
				{
					snprintf(err, errlen, "--retention-age=\"%s\" is not a number of seconds", optarg);
					return -1;
				}
				break;
			case OPT_SENDBUF:
				if (parse_int64(optarg, 65536, &v) != 0)
				{
					snprintf(err, errlen, "--send-buffer=\"%s\" is not a byte count of at least 65536", optarg);
					return -1;
				}
				cfg->send_buffer = (size_t) v;
				break;
			case OPT_PORTFILE:
				free(cfg->port_file);
				cfg->port_file = strdup(optarg);
				break;
			case OPT_TOKEN:
				free(cfg->make_token);
				cfg->make_token = strdup(optarg);
				break;
			case OPT_TTL:
				if (parse_int64(optarg, 1, &v) != 0 || v > 10LL * 365 * 86400)
				{
					snprintf(err, errlen, "--token-ttl=\"%s\" is not a number of seconds", optarg);
					return -1;
				}
				cfg->token_ttl = (int) v;
				break;
			case OPT_WORKERS:
				if (parse_int64(optarg, 1, &v) != 0 || v > 64)
				{
					snprintf(err, errlen, "--apply-workers=\"%s\" is not a number from 1 to 64", optarg);
					return -1;
				}
				cfg->apply_workers = (int) v;
				break;
			case OPT_GROUP_SYNC:
				if (parse_int64(optarg, 0, &v) != 0 || v > 1000000)
				{
					snprintf(err, errlen, "--group-sync=\"%s\" is not a number of microseconds from 0 to 1000000",
							 optarg);
					return -1;
				}
				cfg->group_sync_us = v;
				break;
			case OPT_PUSH_RATE:
			case OPT_PUSH_BURST:
			case OPT_PULL_RATE:
			case OPT_PULL_BURST:
				{
					double	   *dst = c == OPT_PUSH_RATE ? &cfg->push_rate : c == OPT_PUSH_BURST ? &cfg->push_burst :
						c == OPT_PULL_RATE ? &cfg->pull_rate : &cfg->pull_burst;

					if (parse_rate(optarg, dst) != 0)
					{
						snprintf(err, errlen, "\"%s\" is not a rate: give a number >= 0", optarg);
						return -1;
					}
					break;
				}
			case 'h':
				config_usage(stdout);
				return 1;
			case OPT_VERSION:
				printf("ferryd 0.1.0\n");
				return 1;
			default:
				snprintf(err, errlen, "unknown option; see ferryd --help");
				return -1;
		}
	}
	if (optind < argc)
	{
		snprintf(err, errlen, "unexpected argument \"%s\"; see ferryd --help", argv[optind]);
		return -1;
	}
	if (cfg->jwt_secret == NULL || cfg->jwt_secret_len < 32)
	{
		snprintf(err, errlen, "a JWT secret of at least 32 bytes is required: set FERRY_JWT_SECRET "
				 "or --jwt-secret-file");
		return -1;
	}
	if (cfg->make_token == NULL && cfg->database_url == NULL)
	{
		snprintf(err, errlen, "no database: set FERRY_DATABASE_URL or --database-url");
		return -1;
	}
	return 0;
}

void
config_free(Config *cfg)
{
	free(cfg->database_url);
	free(cfg->listen_host);
	free(cfg->data_dir);
	if (cfg->jwt_secret != NULL)
		memset(cfg->jwt_secret, 0, cfg->jwt_secret_len);
	free(cfg->jwt_secret);
	free(cfg->slot);
	free(cfg->publication);
	free(cfg->log_level);
	free(cfg->port_file);
	free(cfg->make_token);
	memset(cfg, 0, sizeof(*cfg));
}
