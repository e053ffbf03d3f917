/*
 * gateway/expr_type.c -- the WHERE-clause evaluator's types: the 14 supported types,
 * typed constants and their casts, and the operator and IN-list types Postgres 15 picks.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "expr_int.h"

/* ================================================================================
 * types
 * ================================================================================ */

const TypeInfo expr_types[] = {
	[TY_UNKNOWN] = {705, "unknown", "unknown", 'X', false},
	[TY_BOOL] = {16, "boolean", "bool", 'B', true},
	[TY_INT2] = {21, "smallint", "int2", 'N', false},
	[TY_INT4] = {23, "integer", "int4", 'N', false},
	[TY_INT8] = {20, "bigint", "int8", 'N', false},
	[TY_NUMERIC] = {1700, "numeric", "numeric", 'N', false},
	[TY_FLOAT4] = {700, "real", "float4", 'N', false},
	[TY_FLOAT8] = {701, "double precision", "float8", 'N', true},
	[TY_TEXT] = {25, "text", "text", 'S', true},
	[TY_VARCHAR] = {1043, "character varying", "varchar", 'S', false},
	[TY_BPCHAR] = {1042, "character", "bpchar", 'S', false},
	[TY_UUID] = {2950, "uuid", "uuid", 'U', false},
	[TY_DATE] = {1082, "date", "date", 'D', false},
	[TY_TIMESTAMP] = {1114, "timestamp without time zone", "timestamp", 'D', false},
	[TY_TIMESTAMPTZ] = {1184, "timestamp with time zone", "timestamptz", 'D', true},
	[TY_OTHER] = {0, "(unsupported type)", "", '?', false},
};

Ty
expr_ty_from_oid(uint32_t oid)
{
	for (int t = TY_BOOL; t < TY_OTHER; t++)
		if (expr_types[t].oid == oid)
			return (Ty) t;
	return TY_OTHER;
}

/* ================================================================================
 * typed constants and casts
 * ================================================================================ */

#define ISO_HINT " (the gateway reads ISO 8601 date/time literals only: YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][+HH[:MM]])"

/* input_value is type t's input function on s; ctx is appended to error messages. */
static Datum
input_value(Compiler *c, Ty t, const char *s, int loc, const char *ctx)
{
	Datum		d;
	int			r;
	DtIn		dt;

	memset(&d, 0, sizeof(d));
	d.ty = t;
	switch (t)
	{
		case TY_BOOL:
			if (!expr_bool_input(s, &d.v.b))
				input_fail(c, loc, "invalid input syntax for type boolean: \"%s\"%s", s, ctx);
			break;
		case TY_INT2:
		case TY_INT4:
		case TY_INT8:
			r = expr_int_input(s, t, &d.v.i);
			if (r == IN_SYNTAX)
				input_fail(c, loc, "invalid input syntax for type %s: \"%s\"%s", expr_types[t].name, s, ctx);
			if (r == IN_RANGE)
				input_fail(c, loc, "value \"%s\" is out of range for type %s%s", s, expr_types[t].name, ctx);
			break;
		case TY_NUMERIC:
			d.v.num = expr_dec_input(c, s, loc, ctx);
			break;
		case TY_FLOAT4:
		case TY_FLOAT8:
			r = expr_float_input(s, t == TY_FLOAT4, c->e->loc, &d.v.f);
			if (r == IN_SYNTAX)
				input_fail(c, loc, "invalid input syntax for type %s: \"%s\"%s", expr_types[t].name, s, ctx);
			if (r == IN_RANGE)
				input_fail(c, loc, "\"%s\" is out of range for type %s%s", s, expr_types[t].name, ctx);
			break;
		case TY_UUID:
			if (!expr_uuid_input(s, d.v.uuid))
				input_fail(c, loc, "invalid input syntax for type uuid: \"%s\"%s", s, ctx);
			break;
		case TY_DATE:
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			r = expr_dt_parse(s, c->e->loc, &dt);
			if (r == DT_SYNTAX)
				input_fail(c, loc, "invalid input syntax for type %s: \"%s\"%s" ISO_HINT, expr_types[t].name, s, ctx);
			if (r == DT_FIELD)
				input_fail(c, loc, "date/time field value out of range: \"%s\"%s", s, ctx);
			if (r == DT_TZ)
				input_fail(c, loc, "time zone displacement out of range: \"%s\"%s", s, ctx);
			if (r == DT_RELATIVE)
				input_fail(c, loc, "date/time literal \"%s\" is not supported by the gateway: it depends on the current time%s",
					 s, ctx);
			if (t == TY_DATE ? !expr_dt_date(&dt, &d.v.date) : !expr_dt_timestamp(&dt, t == TY_TIMESTAMPTZ, &d.v.ts))
				input_fail(c, loc, "%s out of range: \"%s\"%s", t == TY_DATE ? "date" : "timestamp", s, ctx);
			break;
		default:
			d.v.str.s = expr_c_strndup(c, s, strlen(s));
			d.v.str.len = strlen(s);
			break;
	}
	return d;
}

/* output_text is the text an explicit cast to text gives (booltext for bool). */
static const char *
output_text(Compiler *c, const Datum *d)
{
	char		buf[64];

	switch (d->ty)
	{
		case TY_BOOL:
			return d->v.b ? "true" : "false";
		case TY_INT2:
		case TY_INT4:
		case TY_INT8:
			snprintf(buf, sizeof(buf), "%lld", (long long) d->v.i);
			break;
		case TY_NUMERIC:
			return expr_dec_out(c, &d->v.num, -1);
		case TY_FLOAT4:
		case TY_FLOAT8:
			expr_float_out(d->v.f, d->ty == TY_FLOAT4, c->e->loc, buf, sizeof(buf));
			break;
		case TY_UUID:
			expr_uuid_out(d->v.uuid, buf);
			break;
		case TY_DATE:
			expr_date_out(d->v.date, buf, sizeof(buf));
			break;
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			expr_ts_out(d->v.ts, d->ty == TY_TIMESTAMPTZ, buf, sizeof(buf));
			break;
		default:
			return d->v.str.s;
	}
	return expr_c_strndup(c, buf, strlen(buf));
}

/* utf8_chars: the number of characters in s[0..len) (lead bytes). */
static size_t
utf8_chars(const char *s, size_t len)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
		if (((unsigned char) s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

/* utf8_prefix: the byte length of the first nchars characters of s[0..len). */
static size_t
utf8_prefix(const char *s, size_t len, size_t nchars)
{
	size_t		i = 0;

	while (i < len && nchars > 0)
	{
		i++;
		while (i < len && ((unsigned char) s[i] & 0xC0) == 0x80)
			i++;
		nchars--;
	}
	return i;
}

/* apply_typmod is the length coercion of an explicit cast (varchar(n), char(n), ...). */
static Datum
apply_typmod(Compiler *c, Datum d, int32_t typmod, int loc)
{
	size_t		nchars,
				keep;

	if (typmod < 0 || d.isnull)
		return d;
	switch (d.ty)
	{
		case TY_VARCHAR:
			if (utf8_chars(d.v.str.s, d.v.str.len) > (size_t) typmod)
			{
				keep = utf8_prefix(d.v.str.s, d.v.str.len, typmod);
				d.v.str.s = expr_c_strndup(c, d.v.str.s, keep);
				d.v.str.len = keep;
			}
			break;
		case TY_BPCHAR:
			nchars = utf8_chars(d.v.str.s, d.v.str.len);
			if (nchars > (size_t) typmod)
			{
				keep = utf8_prefix(d.v.str.s, d.v.str.len, typmod);
				d.v.str.s = expr_c_strndup(c, d.v.str.s, keep);
				d.v.str.len = keep;
			}
			else if (nchars < (size_t) typmod)
			{
				size_t		pad = (size_t) typmod - nchars;
				char	   *s = expr_c_alloc(c, d.v.str.len + pad + 1);

				memcpy(s, d.v.str.s, d.v.str.len);
				memset(s + d.v.str.len, ' ', pad);
				d.v.str.s = s;
				d.v.str.len += pad;
			}
			break;
		case TY_NUMERIC:
			{
				int			p = TYPMOD_PREC(typmod),
							s = TYPMOD_SCALE(typmod);

				if (d.v.num.special == DEC_NAN)
					break;
				if (d.v.num.special != DEC_NUM)
					expr_plan_fail(c, loc, "numeric field overflow: a field with precision %d, scale %d cannot hold an infinite value",
						 p, s);
				d.v.num = expr_dec_round(c, &d.v.num, s);
				if (!expr_dec_is_zero(&d.v.num) && d.v.num.weight > p - s)
					expr_plan_fail(c, loc, "numeric field overflow: a field with precision %d, scale %d must round to an absolute value less than 10^%d",
						 p, s, p - s);
				break;
			}
		case TY_TIMESTAMP:
		case TY_TIMESTAMPTZ:
			if (!expr_ts_round(&d.v.ts, typmod))
				expr_plan_fail(c, loc, "timestamp out of range");
			break;
		default:
			break;
	}
	return d;
}

/* implicit_ok: whether Postgres casts from to to implicitly (pg_cast castcontext 'i'). */
static bool
implicit_ok(Ty from, Ty to)
{
	if (from == to || from == TY_UNKNOWN)
		return true;
	switch (from)
	{
		case TY_INT2:
			return to == TY_INT4 || to == TY_INT8 || to == TY_NUMERIC || to == TY_FLOAT4 || to == TY_FLOAT8;
		case TY_INT4:
			return to == TY_INT8 || to == TY_NUMERIC || to == TY_FLOAT4 || to == TY_FLOAT8;
		case TY_INT8:
			return to == TY_NUMERIC || to == TY_FLOAT4 || to == TY_FLOAT8;
		case TY_NUMERIC:
			return to == TY_FLOAT4 || to == TY_FLOAT8;
		case TY_FLOAT4:
			return to == TY_FLOAT8;
		case TY_TEXT:
		case TY_VARCHAR:
		case TY_BPCHAR:
			return ty_is_string(to);
		case TY_DATE:
			return to == TY_TIMESTAMP || to == TY_TIMESTAMPTZ;
		case TY_TIMESTAMP:
			return to == TY_TIMESTAMPTZ;
		default:
			return false;
	}
}

/* dec_to_int converts numeric to an integer type as numeric_int2/4/8 do. */
static int64_t
dec_to_int(Compiler *c, const Dec *num, Ty to, int loc)
{
	Dec			r;
	uint64_t	acc = 0;
	uint64_t	limit = to == TY_INT2 ? 32768u : to == TY_INT4 ? 2147483648u : (uint64_t) 1 << 63;

	if (num->special == DEC_NAN)
		expr_plan_fail(c, loc, "cannot convert NaN to %s", expr_types[to].name);
	if (num->special != DEC_NUM)
		expr_plan_fail(c, loc, "cannot convert infinity to %s", expr_types[to].name);
	r = expr_dec_round(c, num, 0);
	if (expr_dec_is_zero(&r))
		return 0;
	if (r.weight > 19)
		expr_plan_fail(c, loc, "%s out of range", expr_types[to].name);
	for (int32_t i = 0; i < r.weight; i++)
	{
		acc = acc * 10 + (uint64_t) ((i < dec_ndigits(&r) ? dec_digit(&r, i) : '0') - '0');
		if (acc > limit)
			expr_plan_fail(c, loc, "%s out of range", expr_types[to].name);
	}
	if (!r.neg && acc == limit)
		expr_plan_fail(c, loc, "%s out of range", expr_types[to].name);
	return r.neg ? (int64_t) (0 - acc) : (int64_t) acc;
}

/*
 * expr_coerce converts a constant to type to, as an explicit cast (explicit: every cast
 * Postgres has from the literal types, I/O conversion to and from text) or an implicit
 * one (an operator's argument, an IN list's common type); typmod is the target's type
 * modifier (-1 none). ctx is appended to error messages (which claim a value came from).
 */
Datum
expr_coerce(Compiler *c, Datum in, Ty to, int32_t typmod, bool explicit, int loc, const char *ctx)
{
	Ty			from = (Ty) in.ty;
	Datum		out;

	memset(&out, 0, sizeof(out));
	out.ty = to;
	if (!explicit && !implicit_ok(from, to))
		expr_fail(c, loc, "cannot cast type %s to %s", expr_types[from].name, expr_types[to].name);
	if (in.isnull)
	{
		out.isnull = true;
		return out;
	}
	if (from == to)
		return apply_typmod(c, in, typmod, loc);
	if (from == TY_UNKNOWN)
		return apply_typmod(c, input_value(c, to, in.v.str.s, loc, ctx), typmod, loc);
	if (ty_is_string(from))
	{
		if (ty_is_string(to))
		{
			out.v.str = in.v.str;
			if (from == TY_BPCHAR)
			{
				out.v.str.len = rtrim_len(in.v.str.s, in.v.str.len);
				out.v.str.s = expr_c_strndup(c, in.v.str.s, out.v.str.len);
			}
			return apply_typmod(c, out, typmod, loc);
		}
		return apply_typmod(c, input_value(c, to, in.v.str.s, loc, ctx), typmod, loc);
	}
	if (ty_is_string(to))
	{
		out.v.str.s = output_text(c, &in);
		out.v.str.len = strlen(out.v.str.s);
		return apply_typmod(c, out, typmod, loc);
	}
	if (ty_is_number(from) && ty_is_number(to))
	{
		if (ty_is_int(from))
		{
			if (ty_is_int(to))
			{
				if ((to == TY_INT2 && (in.v.i < INT16_MIN || in.v.i > INT16_MAX)) ||
					(to == TY_INT4 && (in.v.i < INT32_MIN || in.v.i > INT32_MAX)))
					expr_plan_fail(c, loc, "%s out of range", expr_types[to].name);
				out.v.i = in.v.i;
			}
			else if (to == TY_NUMERIC)
				out.v.num = expr_dec_from_int(c, in.v.i);
			else if (to == TY_FLOAT4)
				out.v.f = (float) in.v.i;
			else
				out.v.f = (double) in.v.i;
			return apply_typmod(c, out, typmod, loc);
		}
		if (from == TY_NUMERIC)
		{
			if (ty_is_int(to))
			{
				out.v.i = dec_to_int(c, &in.v.num, to, loc);
				return out;
			}
			switch (in.v.num.special)
			{
				case DEC_NAN:
					out.v.f = NAN;
					break;
				case DEC_PINF:
					out.v.f = INFINITY;
					break;
				case DEC_NINF:
					out.v.f = -INFINITY;
					break;
				default:
					{
						const char *s = expr_dec_out(c, &in.v.num, -1);

						if (expr_float_input(s, to == TY_FLOAT4, c->e->loc, &out.v.f) != IN_OK)
							expr_plan_fail(c, loc, "\"%s\" is out of range for type %s", s, expr_types[to].name);
					}
			}
			return out;
		}
		if (from == TY_FLOAT4 && to == TY_FLOAT8)
		{
			out.v.f = in.v.f;
			return out;
		}
	}
	if (from == TY_INT4 && to == TY_BOOL)
	{
		out.v.b = in.v.i != 0;
		return out;
	}
	if (from == TY_BOOL && to == TY_INT4)
	{
		out.v.i = in.v.b ? 1 : 0;
		return out;
	}
	if (from == TY_DATE && (to == TY_TIMESTAMP || to == TY_TIMESTAMPTZ))
	{
		if (in.v.date == DATE_NOBEGIN)
			out.v.ts = TS_NOBEGIN;
		else if (in.v.date == DATE_NOEND)
			out.v.ts = TS_NOEND;
		else if ((i128) in.v.date * USECS_PER_DAY >= TS_END)
			expr_plan_fail(c, loc, "date out of range for timestamp");
		else
			out.v.ts = (int64_t) in.v.date * USECS_PER_DAY;
		return apply_typmod(c, out, typmod, loc);
	}
	if (from == TY_TIMESTAMP && to == TY_TIMESTAMPTZ)
	{
		out.v.ts = in.v.ts;		/* the session's time zone is UTC */
		return apply_typmod(c, out, typmod, loc);
	}
	expr_fail(c, loc, "cannot cast type %s to %s", expr_types[from].name, expr_types[to].name);
}

/*
 * expr_lazy_coerce is expr_coerce() for a constant Postgres casts in the planner, or (claim_ctx
 * not NULL) for a claim, which Postgres casts per row: an error that Postgres raises
 * only when it folds (or runs) the cast comes back in *poison (and the value is a NULL
 * of type to) instead of failing the compilation.
 */
Datum
expr_lazy_coerce(Compiler *c, Datum in, Ty to, int32_t typmod, bool explicit, int loc, const char *claim_ctx,
				 const char **poison, int *poison_loc)
{
	jmp_buf		jb;
	jmp_buf    *saved = c->lazy;
	Datum		out;

	*poison = NULL;
	c->lazy = &jb;
	c->lazy_input = claim_ctx != NULL;
	c->claim_ctx = claim_ctx;
	if (setjmp(jb) != 0)
	{
		c->lazy = saved;
		c->lazy_input = false;
		c->claim_ctx = NULL;
		*poison = expr_c_strndup(c, c->lazy_msg, strlen(c->lazy_msg));
		*poison_loc = c->lazy_loc;
		memset(&out, 0, sizeof(out));
		out.ty = to;
		out.isnull = true;
		return out;
	}
	out = expr_coerce(c, in, to, typmod, explicit, loc, claim_ctx != NULL ? claim_ctx : "");
	c->lazy = saved;
	c->lazy_input = false;
	c->claim_ctx = NULL;
	return out;
}

/* ================================================================================
 * type resolution
 *
 * What Postgres 15's operator resolution (oper_select_candidate over pg_operator)
 * and select_common_type pick for the 14 types, checked exhaustively against a server
 * by test/gateway/expr_diff.c.
 * ================================================================================ */

/*
 * expr_resolve_cmp gives the argument types of the comparison operator (= <> < <= > >=)
 * Postgres picks for inputs l and r; false when there is none.
 */
bool
expr_resolve_cmp(Ty l, Ty r, Ty *al, Ty *ar)
{
	if (l == TY_OTHER || r == TY_OTHER)
		return false;
	if (l == TY_UNKNOWN && r == TY_UNKNOWN)
		l = r = TY_TEXT;
	else if (l == TY_UNKNOWN)
		l = r == TY_VARCHAR ? TY_TEXT : r;
	else if (r == TY_UNKNOWN)
		r = l == TY_VARCHAR ? TY_TEXT : l;
	if (expr_types[l].category != expr_types[r].category)
		return false;
	*al = l;
	*ar = r;
	switch (expr_types[l].category)
	{
		case 'N':
			if (l == TY_FLOAT4 || l == TY_FLOAT8 || r == TY_FLOAT4 || r == TY_FLOAT8)
			{
				*al = l == TY_FLOAT4 ? TY_FLOAT4 : TY_FLOAT8;
				*ar = r == TY_FLOAT4 ? TY_FLOAT4 : TY_FLOAT8;
			}
			else if (l == TY_NUMERIC || r == TY_NUMERIC)
				*al = *ar = TY_NUMERIC;
			return true;
		case 'S':
			if ((l == TY_BPCHAR && r != TY_TEXT) || (r == TY_BPCHAR && l != TY_TEXT))
				*al = *ar = TY_BPCHAR;
			else
				*al = *ar = TY_TEXT;
			return true;
		default:
			return true;
	}
}

/* expr_resolve_like gives the argument types of ~~ / ~~* for inputs l and r. */
bool
expr_resolve_like(Ty l, Ty r, Ty *al, Ty *ar)
{
	if (!(l == TY_UNKNOWN || ty_is_string(l)) || !(r == TY_UNKNOWN || ty_is_string(r)))
		return false;
	*al = l == TY_BPCHAR ? TY_BPCHAR : TY_TEXT;
	*ar = TY_TEXT;
	return true;
}

/*
 * expr_select_common is select_common_type (without a context: -1 when the categories
 * differ) followed by verify_common_type, for an IN list: t[0] the left side's type.
 */
int
expr_select_common(const Ty *t, int n)
{
	Ty			ptype = t[0];
	bool		same = ptype != TY_UNKNOWN;

	for (int i = 1; i < n && same; i++)
		same = t[i] == ptype;
	if (same)
		return ptype;
	for (int i = 1; i < n; i++)
	{
		Ty			nt = t[i];

		if (nt == TY_UNKNOWN || nt == ptype)
			continue;
		if (ptype == TY_UNKNOWN)
			ptype = nt;
		else if (expr_types[nt].category != expr_types[ptype].category)
			return -1;
		else if (!expr_types[ptype].preferred && implicit_ok(ptype, nt) && !implicit_ok(nt, ptype))
			ptype = nt;
	}
	if (ptype == TY_UNKNOWN)
		ptype = TY_TEXT;
	for (int i = 0; i < n; i++)
		if (!implicit_ok(t[i], ptype))
			return -1;
	return ptype;
}
