/*
 * gateway/expr_value.c -- the WHERE-clause evaluator's values: text helpers, exact decimals,
 * and the int, float, bool and uuid text forms, read and written as Postgres does.
 *
 * Decimals are numeric_in/numeric_out and numeric_cmp over digit strings (see Dec in
 * expr_int.h); the scalar input functions are Postgres's (pg_strtoint, float8in, boolin,
 * uuid_in), their outputs its output functions. Dates and timestamps are in expr_time.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr_int.h"

/* ================================================================================
 * text helpers
 * ================================================================================ */

/* expr_ci_prefix: whether s starts with word, ASCII case-insensitively (pg_strncasecmp). */
bool
expr_ci_prefix(const char *s, const char *word)
{
	for (; *word; s++, word++)
		if (*s == '\0' || ascii_lower(*s) != ascii_lower(*word))
			return false;
	return true;
}

/* expr_ci_equal: s[0..len) equals word, ASCII case-insensitively. */
bool
expr_ci_equal(const char *s, size_t len, const char *word)
{
	if (strlen(word) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (ascii_lower(s[i]) != ascii_lower(word[i]))
			return false;
	return true;
}

/* expr_utf8_valid: whether s[0..len) is well-formed UTF-8 (what Postgres accepts). */
bool
expr_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char b = p[i];
		size_t		n;
		uint32_t	cp;

		if (b < 0x80)
		{
			if (b == 0)
				return false;
			i++;
			continue;
		}
		if ((b & 0xE0) == 0xC0)
			n = 2, cp = b & 0x1F;
		else if ((b & 0xF0) == 0xE0)
			n = 3, cp = b & 0x0F;
		else if ((b & 0xF8) == 0xF0)
			n = 4, cp = b & 0x07;
		else
			return false;
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
			cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n;
	}
	return true;
}

/* ================================================================================
 * decimals
 * ================================================================================ */

#define NUMERIC_MAX_WEIGHT	131072	/* at most this many digits before the point */
#define NUMERIC_MAX_DSCALE	16383	/* at most this many digits after it */

bool
expr_dec_is_zero(const Dec *d)
{
	if (d->special != DEC_NUM)
		return false;
	for (int32_t i = 0; i < dec_ndigits(d); i++)
		if (dec_digit(d, i) != '0')
			return false;
	return true;
}

static int
dec_rank(const Dec *d)
{
	switch (d->special)
	{
		case DEC_NINF:
			return 0;
		case DEC_NUM:
			return 1;
		case DEC_PINF:
			return 2;
		default:
			return 3;
	}
}

/* expr_dec_cmp orders two exact numbers as Postgres's numeric_cmp does. */
int
expr_dec_cmp(const Dec *a, const Dec *b)
{
	int			ra = dec_rank(a),
				rb = dec_rank(b);
	int			sa,
				sb,
				mag = 0;
	int32_t		na,
				nb;

	if (ra != rb)
		return ra < rb ? -1 : 1;
	if (ra != 1)
		return 0;
	sa = expr_dec_is_zero(a) ? 0 : (a->neg ? -1 : 1);
	sb = expr_dec_is_zero(b) ? 0 : (b->neg ? -1 : 1);
	if (sa != sb)
		return sa < sb ? -1 : 1;
	if (sa == 0)
		return 0;
	if (a->weight != b->weight)
		mag = a->weight < b->weight ? -1 : 1;
	else
	{
		na = dec_ndigits(a);
		nb = dec_ndigits(b);
		for (int32_t i = 0; i < na || i < nb; i++)
		{
			char		da = i < na ? dec_digit(a, i) : '0';
			char		db = i < nb ? dec_digit(b, i) : '0';

			if (da != db)
			{
				mag = da < db ? -1 : 1;
				break;
			}
		}
	}
	return sa > 0 ? mag : -mag;
}

/*
 * expr_dec_read_output reads a column value in int or numeric text output form
 * ([-]digits[.digits], NaN, Infinity, -Infinity) in place; false when malformed.
 */
bool
expr_dec_read_output(const char *s, Dec *d)
{
	const char *ip,
			   *fp = "";
	int32_t		ilen,
				flen = 0;

	memset(d, 0, sizeof(*d));
	d->d1 = d->d2 = "";
	if (s[0] == 'N' && strcmp(s, "NaN") == 0)
	{
		d->special = DEC_NAN;
		return true;
	}
	if (strcmp(s, "Infinity") == 0)
	{
		d->special = DEC_PINF;
		return true;
	}
	if (strcmp(s, "-Infinity") == 0)
	{
		d->special = DEC_NINF;
		return true;
	}
	if (*s == '-')
		d->neg = 1, s++;
	else if (*s == '+')
		s++;
	ip = s;
	while (is_digit(*s))
		s++;
	ilen = (int32_t) (s - ip);
	if (*s == '.')
	{
		fp = ++s;
		while (is_digit(*s))
			s++;
		flen = (int32_t) (s - fp);
	}
	if (*s != '\0' || ilen + flen == 0 || ilen > NUMERIC_MAX_WEIGHT + 1000 || flen > NUMERIC_MAX_DSCALE + 1000)
		return false;
	d->dscale = flen;
	while (ilen > 0 && *ip == '0')
		ip++, ilen--;
	if (ilen > 0)
	{
		d->d1 = ip;
		d->n1 = ilen;
		d->d2 = fp;
		d->n2 = flen;
		d->weight = ilen;
	}
	else
	{
		int32_t		z = 0;

		while (z < flen && fp[z] == '0')
			z++;
		d->d1 = fp + z;
		d->n1 = flen - z;
		d->weight = d->n1 > 0 ? -z : 0;
	}
	return true;
}

/* dec_make builds a finite Dec from digits (any leading zeros stripped here). */
static Dec
dec_make(const char *digits, int32_t n, int32_t weight, bool neg, int32_t dscale)
{
	Dec			d;

	memset(&d, 0, sizeof(d));
	while (n > 0 && *digits == '0')
		digits++, n--, weight--;
	while (n > 0 && digits[n - 1] == '0')
		n--;
	d.d1 = digits;
	d.n1 = n;
	d.d2 = "";
	d.weight = n > 0 ? weight : 0;
	d.neg = (n > 0 && neg) ? 1 : 0;
	d.dscale = dscale;
	return d;
}

/*
 * expr_dec_input is numeric_in: leading/trailing whitespace, a sign, digits with one point,
 * an exponent, NaN and the infinities, and the storage limits. Errors via expr_fail().
 */
Dec
expr_dec_input(Compiler *c, const char *str, int location, const char *ctx)
{
	const char *p = str;
	Dec			d;
	char	   *digits;
	int32_t		n = 0,
				dweight = -1,
				dscale = 0;
	bool		neg = false,
				have_dp = false;

	memset(&d, 0, sizeof(d));
	d.d1 = d.d2 = "";
	while (is_space(*p))
		p++;
	if (expr_ci_prefix(p, "NaN"))
		d.special = DEC_NAN, p += 3;
	else if (expr_ci_prefix(p, "Infinity"))
		d.special = DEC_PINF, p += 8;
	else if (expr_ci_prefix(p, "+Infinity"))
		d.special = DEC_PINF, p += 9;
	else if (expr_ci_prefix(p, "-Infinity"))
		d.special = DEC_NINF, p += 9;
	else if (expr_ci_prefix(p, "inf"))
		d.special = DEC_PINF, p += 3;
	else if (expr_ci_prefix(p, "+inf"))
		d.special = DEC_PINF, p += 4;
	else if (expr_ci_prefix(p, "-inf"))
		d.special = DEC_NINF, p += 4;
	if (d.special != DEC_NUM)
	{
		while (is_space(*p))
			p++;
		if (*p != '\0')
			input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
		return d;
	}
	if (*p == '+')
		p++;
	else if (*p == '-')
		neg = true, p++;
	if (*p == '.')
		have_dp = true, p++;
	if (!is_digit(*p))
		input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
	digits = expr_c_alloc(c, strlen(p) + 1);
	for (;;)
	{
		if (is_digit(*p))
		{
			digits[n++] = *p++;
			if (!have_dp)
				dweight++;
			else
				dscale++;
		}
		else if (*p == '.')
		{
			if (have_dp)
				input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
			have_dp = true;
			p++;
		}
		else
			break;
	}
	if (*p == 'e' || *p == 'E')
	{
		char	   *end;
		long		exponent;

		p++;
		errno = 0;
		exponent = strtol(p, &end, 10);
		if (end == p)
			input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
		p = end;
		if (exponent >= INT_MAX / 2 || exponent <= -(INT_MAX / 2))
			input_fail(c, location, "value overflows numeric format%s", ctx);
		dweight += (int32_t) exponent;
		dscale -= (int32_t) exponent;
		if (dscale < 0)
			dscale = 0;
	}
	while (is_space(*p))
		p++;
	if (*p != '\0')
		input_fail(c, location, "invalid input syntax for type numeric: \"%s\"%s", str, ctx);
	d = dec_make(digits, n, dweight + 1, neg, dscale);
	if (dscale > NUMERIC_MAX_DSCALE || (dec_ndigits(&d) > 0 && d.weight > NUMERIC_MAX_WEIGHT))
		input_fail(c, location, "value overflows numeric format%s", ctx);
	return d;
}

/* expr_dec_from_int is an integer as a Dec. */
Dec
expr_dec_from_int(Compiler *c, int64_t v)
{
	char		buf[24];
	uint64_t	u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;
	int			n = 0;
	char	   *digits;

	do
	{
		buf[n++] = (char) ('0' + u % 10);
		u /= 10;
	} while (u > 0);
	digits = expr_c_alloc(c, n + 1);
	for (int i = 0; i < n; i++)
		digits[i] = buf[n - 1 - i];
	return dec_make(digits, n, n, v < 0, 0);
}

/* expr_dec_round rounds half away from zero to scale digits after the point (scale may be < 0). */
Dec
expr_dec_round(Compiler *c, const Dec *in, int scale)
{
	int32_t		n = dec_ndigits(in);
	int32_t		keep;
	char	   *buf;
	Dec			out;

	if (in->special != DEC_NUM)
		return *in;
	keep = in->weight + scale;
	if (n == 0 || keep >= n)
	{
		out = *in;
		out.dscale = scale > 0 ? scale : 0;
		return out;
	}
	if (keep < 0)
		return dec_make("", 0, 0, false, scale > 0 ? scale : 0);
	buf = expr_c_alloc(c, keep + 2);
	for (int32_t i = 0; i < keep; i++)
		buf[i] = dec_digit(in, i);
	if (dec_digit(in, keep) >= '5')
	{
		int32_t		i = keep - 1;

		while (i >= 0 && buf[i] == '9')
			buf[i--] = '0';
		if (i < 0)
		{
			buf[0] = '1';
			return dec_make(buf, 1, in->weight + 1, in->neg, scale > 0 ? scale : 0);
		}
		buf[i]++;
	}
	return dec_make(buf, keep, in->weight, in->neg, scale > 0 ? scale : 0);
}

/* expr_dec_format_len: the buffer size expr_dec_format needs. */
size_t
expr_dec_format_len(const Dec *d, int32_t dscale)
{
	return (size_t) (d->weight > 0 ? d->weight : 1) + (dscale > 0 ? dscale : 0) + 12;
}

/* expr_dec_format is numeric_out with display scale dscale (-1: the value's own). */
void
expr_dec_format(const Dec *d, int32_t dscale, char *buf)
{
	int32_t		n = dec_ndigits(d);
	int32_t		w = d->weight;
	char	   *p = buf;

	switch (d->special)
	{
		case DEC_NAN:
			strcpy(buf, "NaN");
			return;
		case DEC_PINF:
			strcpy(buf, "Infinity");
			return;
		case DEC_NINF:
			strcpy(buf, "-Infinity");
			return;
	}
	if (dscale < 0)
		dscale = d->dscale;
	if (d->neg && !expr_dec_is_zero(d))
		*p++ = '-';
	if (w <= 0 || n == 0)
		*p++ = '0';
	else
		for (int32_t i = 0; i < w; i++)
			*p++ = i < n ? dec_digit(d, i) : '0';
	if (dscale > 0)
	{
		*p++ = '.';
		for (int32_t j = 0; j < dscale; j++)
		{
			int32_t		i = (n == 0 ? 0 : w) + j;

			*p++ = (n > 0 && i >= 0 && i < n) ? dec_digit(d, i) : '0';
		}
	}
	*p = '\0';
}

char *
expr_dec_out(Compiler *c, const Dec *d, int32_t dscale)
{
	char	   *buf = expr_c_alloc(c, expr_dec_format_len(d, dscale < 0 ? d->dscale : dscale));

	expr_dec_format(d, dscale, buf);
	return buf;
}

/* expr_dec_min_scale: the fewest digits after the point that show d exactly. */
int32_t
expr_dec_min_scale(const Dec *d)
{
	int32_t		n = dec_ndigits(d);

	while (n > 0 && dec_digit(d, n - 1) == '0')
		n--;
	return (n == 0 || n - d->weight <= 0) ? 0 : n - d->weight;
}

/* ================================================================================
 * scalar input and output
 * ================================================================================ */

/* expr_int_input is pg_strtoint16/32/64 for type t; *out gets the value. */
int
expr_int_input(const char *s, Ty t, int64_t *out)
{
	uint64_t	limit = t == TY_INT2 ? 32768u : t == TY_INT4 ? 2147483648u : (uint64_t) 1 << 63;
	uint64_t	acc = 0;
	bool		neg = false;

	while (is_space(*s))
		s++;
	if (*s == '-')
		neg = true, s++;
	else if (*s == '+')
		s++;
	if (!is_digit(*s))
		return IN_SYNTAX;
	while (is_digit(*s))
	{
		acc = acc * 10 + (uint64_t) (*s++ - '0');
		if (acc > limit)
			return IN_RANGE;
	}
	while (is_space(*s))
		s++;
	if (*s != '\0')
		return IN_SYNTAX;
	if (!neg && acc == limit)
		return IN_RANGE;
	*out = neg ? (int64_t) (0 - acc) : (int64_t) acc;
	return IN_OK;
}

/* expr_float_input is float4in/float8in (strtof/strtod in the C locale). */
int
expr_float_input(const char *s, bool f4, locale_t loc, double *out)
{
	char	   *end;
	double		v;

	while (is_space(*s))
		s++;
	if (*s == '\0')
		return IN_SYNTAX;
	errno = 0;
	if (f4)
		v = strtof_l(s, &end, loc);
	else
		v = strtod_l(s, &end, loc);
	if (end == s)
		return IN_SYNTAX;
	if (errno == ERANGE)
	{
		/* Denormals set ERANGE too: only zero and infinity are out of range. */
		if (v == 0.0 || isinf(v))
			return IN_RANGE;
	}
	else if (errno != 0)
		return IN_SYNTAX;
	while (is_space(*end))
		end++;
	if (*end != '\0')
		return IN_SYNTAX;
	*out = v;
	return IN_OK;
}

/* ci_word_prefix: s[0..len) is a non-empty prefix of word, ASCII case-insensitively. */
static bool
ci_word_prefix(const char *s, size_t len, const char *word)
{
	if (len == 0 || len > strlen(word))
		return false;
	for (size_t i = 0; i < len; i++)
		if (ascii_lower(s[i]) != ascii_lower(word[i]))
			return false;
	return true;
}

/* expr_bool_input is boolin (parse_bool_with_len after trimming whitespace). */
bool
expr_bool_input(const char *s, bool *out)
{
	size_t		len;

	while (is_space(*s))
		s++;
	len = strlen(s);
	while (len > 0 && is_space(s[len - 1]))
		len--;
	if (len == 0)
		return false;
	switch (ascii_lower(s[0]))
	{
		case 't':
			*out = true;
			return ci_word_prefix(s, len, "true");
		case 'y':
			*out = true;
			return ci_word_prefix(s, len, "yes");
		case 'f':
			*out = false;
			return ci_word_prefix(s, len, "false");
		case 'n':
			*out = false;
			return ci_word_prefix(s, len, "no");
		case 'o':
			/* "o" alone is ambiguous: "on", or "of"/"off" */
			if (len == 2 && expr_ci_equal(s, 2, "on"))
				return *out = true, true;
			*out = false;
			return len >= 2 && ci_word_prefix(s, len, "off");
		case '1':
			*out = true;
			return len == 1;
		case '0':
			*out = false;
			return len == 1;
	}
	return false;
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* expr_uuid_input is uuid_in: 32 hex digits, a hyphen allowed after any group of four, braces. */
bool
expr_uuid_input(const char *s, uint8_t out[16])
{
	bool		braces = false;

	if (*s == '{')
		braces = true, s++;
	for (int i = 0; i < 16; i++)
	{
		int			hi,
					lo;

		if (s[0] == '\0' || s[1] == '\0')
			return false;
		hi = hexval(s[0]);
		lo = hexval(s[1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t) (hi << 4 | lo);
		s += 2;
		if (s[0] == '-' && (i % 2) == 1 && i < 15)
			s++;
	}
	if (braces)
	{
		if (*s != '}')
			return false;
		s++;
	}
	return *s == '\0';
}

void
expr_uuid_out(const uint8_t u[16], char buf[37])
{
	static const char hex[] = "0123456789abcdef";
	char	   *p = buf;

	for (int i = 0; i < 16; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u[i] >> 4];
		*p++ = hex[u[i] & 15];
	}
	*p = '\0';
}

/* expr_float_out writes the shortest text that reads back as v (as a float when f4). */
void
expr_float_out(double v, bool f4, locale_t loc, char *buf, size_t len)
{
	locale_t	old;

	if (isnan(v))
	{
		snprintf(buf, len, "NaN");
		return;
	}
	if (isinf(v))
	{
		snprintf(buf, len, v > 0 ? "Infinity" : "-Infinity");
		return;
	}
	old = uselocale(loc);
	for (int prec = 1; prec <= 17; prec++)
	{
		snprintf(buf, len, "%.*g", prec, v);
		if (f4 ? strtof_l(buf, NULL, loc) == (float) v : strtod_l(buf, NULL, loc) == v)
			break;
	}
	uselocale(old);
}
