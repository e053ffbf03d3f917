/*
 * gateway/log.c -- one line per event, with a level, on stderr.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"

static LogLevel max_level = LOG_LEVEL_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

int
log_set_level_name(const char *name)
{
	for (int i = 0; i <= LOG_LEVEL_DEBUG; i++)
	{
		if (strcmp(name, level_names[i]) == 0)
		{
			max_level = (LogLevel) i;
			return 0;
		}
	}
	return -1;
}

void
log_set_level(LogLevel level)
{
	max_level = level;
}

int
log_enabled(LogLevel level)
{
	return level <= max_level;
}

void
log_msg(LogLevel level, const char *component, const char *fmt,...)
{
	char		line[2048];
	char		stamp[32];
	struct timeval tv;
	struct tm	tm;
	va_list		ap;
	int			n;

	if (level > max_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03dZ %-5s %s: ", stamp, (int) (tv.tv_usec / 1000),
				 level_names[level], component);
	va_start(ap, fmt);
	if (n > 0 && (size_t) n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	/* One write per line keeps lines whole when several processes share stderr. */
	for (char *p = line; *p; p++)
		if (*p == '\n')
			*p = ' ';
	fprintf(stderr, "%s\n", line);
}
