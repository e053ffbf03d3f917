/*
 * gateway/gateway.c -- the process-wide Gateway, clocks, and ferryd's database connections.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gateway.h"

Gateway    *gw = NULL;

int64_t
gw_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double
gw_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * gw_connect opens a normal libpq connection with ferryd's session settings,
 * so text values read over it match the text pgoutput sends.
 */
PGconn *
gw_connect(const char *conninfo, char *err, size_t errlen)
{
	const char *keys[] = {"dbname", "options", "application_name", NULL};
	const char *vals[] = {conninfo, GW_SESSION_OPTIONS, "ferryd", NULL};
	PGconn	   *conn = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *msg = PQerrorMessage(conn);
		size_t		n = strlen(msg);

		while (n > 0 && msg[n - 1] == '\n')
			msg[--n] = '\0';
		snprintf(err, errlen, "cannot connect to the database: %s", msg);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

