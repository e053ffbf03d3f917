/*
 * gateway/config.h -- ferryd's configuration: flags, then environment, then defaults.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct Config
{
	char	   *database_url;	/* libpq conninfo or URI (FERRY_DATABASE_URL) */
	char	   *listen_host;	/* address to listen on (FERRY_LISTEN host part) */
	int			listen_port;	/* port (FERRY_LISTEN port part), 0 = any free port */
	char	   *data_dir;		/* shape logs and state (FERRY_DATA_DIR) */
	uint8_t    *jwt_secret;		/* HS256 key (FERRY_JWT_SECRET or --jwt-secret-file) */
	size_t		jwt_secret_len; /* its length in bytes */
	char	   *slot;			/* logical replication slot (FERRY_SLOT) */
	char	   *publication;	/* publication to read: "ferry" */
	char	   *log_level;		/* error, warn, info, debug (FERRY_LOG_LEVEL) */
	int64_t		retention_bytes;	/* per shape log (FERRY_RETENTION_BYTES) */
	int64_t		retention_age;	/* seconds (FERRY_RETENTION_AGE) */
	size_t		send_buffer;	/* per connection bytes before a slow client is cut */
	size_t		max_frame;		/* largest client frame accepted, bytes */
	int			hello_timeout;	/* seconds a new connection has to say Hello */
	int			heartbeat;		/* seconds between heartbeats */
	char	   *port_file;		/* write the bound port here once listening */
	int			apply_workers;	/* threads applying mutations */
	int64_t		group_sync_us;	/* fsync shape logs at most this often while changes stream */
	double		push_rate;		/* per-user mutations per second (0 = unlimited) */
	double		push_burst;		/* bucket size */
	double		pull_rate;		/* per-user subscriptions per second (0 = unlimited) */
	double		pull_burst;		/* bucket size */
	char	   *make_token;		/* --make-token SUB:T1,T2[:ROLE]: print a token, exit */
	int			token_ttl;		/* seconds, for --make-token */
} Config;

/*
 * config_load fills cfg from argv and the environment. Returns 0 to run,
 * 1 when --help or --version was printed (exit 0), -1 on a bad setting
 * (message in err; exit 2).
 */
int			config_load(Config *cfg, int argc, char **argv, char *err, size_t errlen);
void		config_free(Config *cfg);
void		config_usage(FILE *out);

#endif
