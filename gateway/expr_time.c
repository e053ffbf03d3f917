/*
 * gateway/expr_time.c -- the WHERE-clause evaluator's dates and timestamps: ISO 8601 input,
 * Postgres's output (DateStyle ISO, TimeZone UTC), typmod rounding, and the ordering key.
 *
 * The representations (Postgres's) and the cross-type key are described in expr_int.h,
 * in its dates and timestamps section.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_int.h"

/* days_from_civil: days from 1970-01-01 to y-m-d (proleptic Gregorian, year 0 = 1 BC). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t		era,
				yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* civil_from_days is the inverse of days_from_civil. */
static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t		era,
				doe,
				yoe,
				doy,
				mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int) (doy - (153 * mp + 2) / 5 + 1);
	*m = (int) (mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static int
days_in_month(int64_t y, int m)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool		leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : mdays[m - 1];
}

/* digit_run: how many digits start at p (before end). */
static int
digit_run(const char *p, const char *end)
{
	int			n = 0;

	while (p + n < end && is_digit(p[n]))
		n++;
	return n;
}

static int64_t
digits_value(const char *p, int n)
{
	int64_t		v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (p[i] - '0');
	return v;
}

/*
 * expr_dt_parse reads an ISO 8601 date/time: [Y]YYY-M[M]-D[D], then optionally ' ' or 'T' and
 * H[H]:M[M][:S[S][.fff]], an offset (Z, UTC, GMT, +H[H][[:]MM[[:]SS]]) after a time, and
 * BC/AD; or infinity, -infinity, epoch. Surrounding whitespace is allowed.
 */
int
expr_dt_parse(const char *s, locale_t loc, DtIn *d)
{
	const char *p = s,
			   *end;
	int			n;
	bool		has_time = false;

	memset(d, 0, sizeof(*d));
	while (is_space(*p))
		p++;
	end = p + strlen(p);
	while (end > p && is_space(end[-1]))
		end--;
	if (expr_ci_equal(p, end - p, "infinity"))
		return d->special = DTS_INF, DT_OK;
	if (expr_ci_equal(p, end - p, "-infinity"))
		return d->special = DTS_NINF, DT_OK;
	if (expr_ci_equal(p, end - p, "epoch"))
		return d->special = DTS_EPOCH, DT_OK;
	if (expr_ci_equal(p, end - p, "now") || expr_ci_equal(p, end - p, "today") ||
		expr_ci_equal(p, end - p, "tomorrow") || expr_ci_equal(p, end - p, "yesterday"))
		return DT_RELATIVE;

	n = digit_run(p, end);
	if (n < 3 || n > 9)
		return DT_SYNTAX;
	d->year = digits_value(p, n);
	p += n;
	if (p >= end || *p++ != '-')
		return DT_SYNTAX;
	n = digit_run(p, end);
	if (n < 1 || n > 2)
		return DT_SYNTAX;
	d->mon = (int) digits_value(p, n);
	p += n;
	if (p >= end || *p++ != '-')
		return DT_SYNTAX;
	n = digit_run(p, end);
	if (n < 1 || n > 2)
		return DT_SYNTAX;
	d->day = (int) digits_value(p, n);
	p += n;

	/* the time */
	if (p < end && (*p == 'T' || *p == 't' || is_space(*p)))
	{
		const char *q = p + 1;

		if (is_space(*p))
			while (q < end && is_space(*q))
				q++;
		if (q < end && is_digit(*q))
		{
			p = q;
			has_time = true;
			n = digit_run(p, end);
			if (n < 1 || n > 2)
				return DT_SYNTAX;
			d->hour = (int) digits_value(p, n);
			p += n;
			if (p >= end || *p++ != ':')
				return DT_SYNTAX;
			n = digit_run(p, end);
			if (n < 1 || n > 2)
				return DT_SYNTAX;
			d->min = (int) digits_value(p, n);
			p += n;
			if (p < end && *p == ':')
			{
				p++;
				n = digit_run(p, end);
				if (n < 1 || n > 2)
					return DT_SYNTAX;
				d->sec = (int) digits_value(p, n);
				p += n;
				if (p < end && *p == '.')
				{
					char		frac[72];
					int			k;

					n = digit_run(p + 1, end);
					k = n > 64 ? 64 : n;
					frac[0] = '.';
					memcpy(frac + 1, p + 1, k);
					frac[k + 1] = '\0';
					d->fsec = k > 0 ? (int64_t) rint(strtod_l(frac, NULL, loc) * 1000000.0) : 0;
					p += 1 + n;
				}
			}
		}
	}

	/* the offset, after a time */
	if (has_time)
	{
		const char *q = p;

		while (q < end && is_space(*q))
			q++;
		if (q < end && (*q == 'Z' || *q == 'z') &&
			(q + 1 == end || !((q[1] | 0x20) >= 'a' && (q[1] | 0x20) <= 'z')))
		{
			d->has_tz = true;
			p = q + 1;
		}
		else if (end - q >= 3 && (expr_ci_prefix(q, "UTC") || expr_ci_prefix(q, "GMT")) &&
				 (q + 3 == end || !((q[3] | 0x20) >= 'a' && (q[3] | 0x20) <= 'z')))
		{
			d->has_tz = true;
			p = q + 3;
		}
		else if (q + 1 < end && (*q == '+' || *q == '-') && is_digit(q[1]))
		{
			int			sign = *q == '-' ? -1 : 1;
			int			h,
						m = 0,
						sec = 0;

			q++;
			n = digit_run(q, end);
			if (q + n < end && q[n] == ':')
			{
				if (n > 2)
					return DT_SYNTAX;
				h = (int) digits_value(q, n);
				q += n + 1;
				n = digit_run(q, end);
				if (n < 1 || n > 2)
					return DT_SYNTAX;
				m = (int) digits_value(q, n);
				q += n;
				if (q < end && *q == ':')
				{
					q++;
					n = digit_run(q, end);
					if (n < 1 || n > 2)
						return DT_SYNTAX;
					sec = (int) digits_value(q, n);
					q += n;
				}
			}
			else if (n == 1 || n == 2)
				h = (int) digits_value(q, n), q += n;
			else if (n == 4)
				h = (int) digits_value(q, 2), m = (int) digits_value(q + 2, 2), q += 4;
			else if (n == 6)
				h = (int) digits_value(q, 2), m = (int) digits_value(q + 2, 2),
					sec = (int) digits_value(q + 4, 2), q += 6;
			else
				return DT_SYNTAX;
			if (h > 15 || m > 59 || sec > 59)
				return DT_TZ;
			d->has_tz = true;
			d->tz = sign * (h * 3600 + m * 60 + sec);
			p = q;
		}
	}

	/* the era */
	{
		const char *q = p;

		while (q < end && is_space(*q))
			q++;
		if (end - q == 2 && (expr_ci_equal(q, 2, "BC") || expr_ci_equal(q, 2, "AD")))
		{
			d->bc = ascii_lower(*q) == 'b';
			p = end;
		}
	}
	if (p != end)
		return DT_SYNTAX;

	if (d->year < 1 || d->mon < 1 || d->mon > 12 ||
		d->day < 1 || d->day > days_in_month(d->bc ? 1 - d->year : d->year, d->mon))
		return DT_FIELD;
	if (d->hour > 24 || d->min > 59 || d->sec > 60 ||
		(d->hour == 24 && (d->min > 0 || d->sec > 0 || d->fsec > 0)) ||
		(d->sec == 60 && d->fsec > 0))
		return DT_FIELD;
	return DT_OK;
}

/* dt_days: the date of d as days since 2000-01-01; false when outside the date range. */
static bool
dt_days(const DtIn *d, int64_t *days)
{
	int64_t		y = d->bc ? 1 - d->year : d->year;

	*days = days_from_civil(y, d->mon, d->day) - UNIX_EPOCH_DAYS;
	return *days >= DATE_MIN && *days < DATE_END;
}

/* expr_dt_date is date_in's result for parsed fields; false when out of range. */
bool
expr_dt_date(const DtIn *d, int32_t *out)
{
	int64_t		days;

	switch (d->special)
	{
		case DTS_INF:
			*out = DATE_NOEND;
			return true;
		case DTS_NINF:
			*out = DATE_NOBEGIN;
			return true;
		case DTS_EPOCH:
			*out = -UNIX_EPOCH_DAYS;
			return true;
	}
	if (!dt_days(d, &days))
		return false;
	*out = (int32_t) days;
	return true;
}

/* expr_dt_timestamp is timestamp_in's (tz false) or timestamptz_in's (in UTC) result. */
bool
expr_dt_timestamp(const DtIn *d, bool tz, int64_t *out)
{
	int64_t		days;
	i128		t;

	switch (d->special)
	{
		case DTS_INF:
			*out = TS_NOEND;
			return true;
		case DTS_NINF:
			*out = TS_NOBEGIN;
			return true;
		case DTS_EPOCH:
			*out = -(int64_t) UNIX_EPOCH_DAYS * USECS_PER_DAY;
			return true;
	}
	if (!dt_days(d, &days))
		return false;
	t = (i128) days * USECS_PER_DAY +
		((i128) (d->hour * 60 + d->min) * 60 + d->sec) * USECS_PER_SEC + d->fsec;
	if (tz && d->has_tz)
		t -= (i128) d->tz * USECS_PER_SEC;
	if (t < TS_MIN || t >= TS_END)
		return false;
	*out = (int64_t) t;
	return true;
}

/* expr_date_out is date_out with DateStyle ISO. */
void
expr_date_out(int32_t date, char *buf, size_t len)
{
	int64_t		y;
	int			m,
				d;

	if (date == DATE_NOBEGIN)
		snprintf(buf, len, "-infinity");
	else if (date == DATE_NOEND)
		snprintf(buf, len, "infinity");
	else
	{
		civil_from_days((int64_t) date + UNIX_EPOCH_DAYS, &y, &m, &d);
		snprintf(buf, len, "%04lld-%02d-%02d%s", (long long) (y > 0 ? y : 1 - y), m, d,
				 y > 0 ? "" : " BC");
	}
}

/* expr_ts_out is timestamp_out (or timestamptz_out in UTC) with DateStyle ISO. */
void
expr_ts_out(int64_t t, bool tz, char *buf, size_t len)
{
	int64_t		days,
				rem,
				y;
	int			m,
				d,
				us;
	char		frac[16] = "";

	if (t == TS_NOBEGIN)
	{
		snprintf(buf, len, "-infinity");
		return;
	}
	if (t == TS_NOEND)
	{
		snprintf(buf, len, "infinity");
		return;
	}
	days = t / USECS_PER_DAY;
	rem = t % USECS_PER_DAY;
	if (rem < 0)
		rem += USECS_PER_DAY, days--;
	civil_from_days(days + UNIX_EPOCH_DAYS, &y, &m, &d);
	us = (int) (rem % USECS_PER_SEC);
	rem /= USECS_PER_SEC;
	if (us != 0)
	{
		int			k;

		snprintf(frac, sizeof(frac), ".%06d", us);
		k = (int) strlen(frac);
		while (frac[k - 1] == '0')
			frac[--k] = '\0';
	}
	snprintf(buf, len, "%04lld-%02d-%02d %02d:%02d:%02d%s%s%s", (long long) (y > 0 ? y : 1 - y), m, d,
			 (int) (rem / 3600), (int) (rem / 60 % 60), (int) (rem % 60), frac, tz ? "+00" : "",
			 y > 0 ? "" : " BC");
}

/* expr_ts_round is timestamp(p)'s rounding (AdjustTimestampForTypmod); false when out of range. */
bool
expr_ts_round(int64_t *t, int prec)
{
	int64_t		scale = 1;

	if (*t == TS_NOBEGIN || *t == TS_NOEND || prec >= 6)
		return true;
	for (int i = prec; i < 6; i++)
		scale *= 10;
	if (*t >= 0)
		*t = ((*t + scale / 2) / scale) * scale;
	else
		*t = -((((-*t) + scale / 2) / scale) * scale);
	return *t >= TS_MIN && *t < TS_END;
}

i128
expr_date_key(int32_t d)
{
	if (d == DATE_NOBEGIN)
		return -KEY_INF;
	if (d == DATE_NOEND)
		return KEY_INF;
	return (i128) d * USECS_PER_DAY;
}

i128
expr_ts_key(int64_t t)
{
	if (t == TS_NOBEGIN)
		return -KEY_INF;
	if (t == TS_NOEND)
		return KEY_INF;
	return t;
}
