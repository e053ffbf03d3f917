/*
 * extension/hlc.c -- hybrid logical clocks for last-writer-wins columns.
 *
 * A clock is the text "<physical ms>-<logical>-<node>": milliseconds since
 * the Unix epoch, a counter that orders writes within one millisecond, and
 * the writer's node id (a client id, or "server"). Clocks compare by
 * physical, then logical, then node, so two writers never tie.
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "ferry.h"

#define HLC_MAX_MS_DIGITS		15
#define HLC_MAX_LOGICAL_DIGITS	9

static bool
node_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_' || c == '.' || c == ':' || c == '@';
}

/*
 * ferry_hlc_parse parses len bytes of s into out; false when malformed.
 */
bool
ferry_hlc_parse(const char *s, int len, FerryHlc *out)
{
	int			i = 0;
	int			start;

	out->ms = 0;
	out->logical = 0;

	start = i;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		out->ms = out->ms * 10 + (s[i++] - '0');
	if (i == start || i - start > HLC_MAX_MS_DIGITS || i >= len || s[i] != '-')
		return false;
	i++;

	start = i;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		out->logical = out->logical * 10 + (s[i++] - '0');
	if (i == start || i - start > HLC_MAX_LOGICAL_DIGITS || i >= len || s[i] != '-')
		return false;
	i++;

	if (len - i < 1 || len - i > FERRY_HLC_NODE_MAX)
		return false;
	for (int j = i; j < len; j++)
		if (!node_char_ok(s[j]))
			return false;
	memcpy(out->node, s + i, len - i);
	out->node[len - i] = '\0';
	return true;
}

/*
 * ferry_hlc_cmp orders two clocks: <0, 0 or >0.
 */
int
ferry_hlc_cmp(const FerryHlc *a, const FerryHlc *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->logical != b->logical)
		return a->logical < b->logical ? -1 : 1;
	return strcmp(a->node, b->node);
}

/*
 * ferry_hlc_format returns the clock's text form, palloc'd.
 */
char *
ferry_hlc_format(const FerryHlc *h)
{
	return psprintf(INT64_FORMAT "-%d-%s", h->ms, h->logical, h->node);
}

/*
 * ferry_hlc_now_ms is the server's wall clock in ms since the Unix epoch.
 */
int64
ferry_hlc_now_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();

	return now / 1000 + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

/*
 * ferry_hlc_server_next sets out to a server clock after prev (which may be
 * NULL): the wall clock, or prev's physical time with the counter bumped when
 * the wall clock is not ahead of it.
 */
void
ferry_hlc_server_next(const FerryHlc *prev, FerryHlc *out)
{
	int64		now = ferry_hlc_now_ms();

	strlcpy(out->node, "server", sizeof(out->node));
	if (prev == NULL || now > prev->ms)
	{
		out->ms = now;
		out->logical = 0;
	}
	else
	{
		out->ms = prev->ms;
		out->logical = prev->logical + 1;
	}
}
