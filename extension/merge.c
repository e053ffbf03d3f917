/*
 * extension/merge.c -- per-column conflict rules, decided three-way.
 *
 * A mutation carries, for each column it changes, the value its edit was
 * based on (base) and the value it wants (new). When the server's current
 * value still equals base, no one else changed the column: the new value is
 * taken. Otherwise the column's rule decides (docs/conflict-rules.md).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

#include "ferry.h"

/* ----------------------------------------------------------------
 * counter: current + (new - base), computed in numeric
 * ---------------------------------------------------------------- */

static Datum
to_numeric(Datum d, Oid typid)
{
	return DirectFunctionCall3(numeric_in, CStringGetDatum(ferry_datum_text(d, typid)),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

static Datum
counter_merge(FerryColumn *col, Datum cur, bool cur_null, Datum base, bool base_null,
			  Datum new, bool new_null, bool *out_null)
{
	Datum		zero = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));
	Datum		c = cur_null ? zero : to_numeric(cur, col->typid);
	Datum		b = base_null ? zero : to_numeric(base, col->typid);
	Datum		n = new_null ? zero : to_numeric(new, col->typid);
	Datum		r;
	Oid			infunc;
	Oid			ioparam;

	if (new_null)
	{
		/* Setting a counter to NULL is a reset, not a delta. */
		*out_null = true;
		return (Datum) 0;
	}
	r = DirectFunctionCall2(numeric_add, c, DirectFunctionCall2(numeric_sub, n, b));
	*out_null = false;
	getTypeInputInfo(col->typid, &infunc, &ioparam);
	return OidInputFunctionCall(infunc, DatumGetCString(DirectFunctionCall1(numeric_out, r)),
								ioparam, col->typmod);
}

/* ----------------------------------------------------------------
 * set_union: (current - (base - new)) + (new - base), without duplicates
 * ---------------------------------------------------------------- */

typedef struct Elems
{
	int			n;				/* elements */
	Datum	   *d;				/* values */
	bool	   *nulls;			/* null flags */
} Elems;

typedef struct ElemType
{
	Oid			typid;			/* element type */
	int16		len;			/* its length */
	bool		byval;			/* passed by value */
	char		align;			/* alignment */
	Oid			collation;		/* collation for equality */
} ElemType;

static void
elems_of(Datum arr, bool isnull, ElemType *et, Elems *out)
{
	out->n = 0;
	out->d = NULL;
	out->nulls = NULL;
	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(arr), et->typid, et->len, et->byval, et->align,
					  &out->d, &out->nulls, &out->n);
}

static bool
elems_contain(Elems *set, Datum d, bool isnull, ElemType *et)
{
	for (int i = 0; i < set->n; i++)
		if (ferry_datum_equal(set->d[i], set->nulls[i], d, isnull, et->typid, et->collation))
			return true;
	return false;
}

static void
elems_add(Elems *set, Datum d, bool isnull, ElemType *et)
{
	if (elems_contain(set, d, isnull, et))
		return;
	set->d[set->n] = d;
	set->nulls[set->n] = isnull;
	set->n++;
}

static Datum
set_union_merge(FerryColumn *col, Datum cur, bool cur_null, Datum base, bool base_null,
				Datum new, bool new_null)
{
	ElemType	et;
	Elems		c,
				b,
				n,
				r;
	int			dims[1];
	int			lbs[1] = {1};

	et.typid = get_element_type(getBaseType(col->typid));
	et.collation = col->collation;
	get_typlenbyvalalign(et.typid, &et.len, &et.byval, &et.align);
	elems_of(cur, cur_null, &et, &c);
	elems_of(base, base_null, &et, &b);
	elems_of(new, new_null, &et, &n);

	r.n = 0;
	r.d = palloc(sizeof(Datum) * (c.n + n.n + 1));
	r.nulls = palloc(sizeof(bool) * (c.n + n.n + 1));
	/* Keep what the server has, minus what the client removed. */
	for (int i = 0; i < c.n; i++)
	{
		bool		removed = elems_contain(&b, c.d[i], c.nulls[i], &et) &&
			!elems_contain(&n, c.d[i], c.nulls[i], &et);

		if (!removed)
			elems_add(&r, c.d[i], c.nulls[i], &et);
	}
	/* Then what the client added, in the client's order. */
	for (int i = 0; i < n.n; i++)
		if (!elems_contain(&b, n.d[i], n.nulls[i], &et))
			elems_add(&r, n.d[i], n.nulls[i], &et);

	dims[0] = r.n;
	return PointerGetDatum(construct_md_array(r.d, r.nulls, r.n > 0 ? 1 : 0, dims, lbs,
											  et.typid, et.len, et.byval, et.align));
}

/* ----------------------------------------------------------------
 * The rules
 * ---------------------------------------------------------------- */

/*
 * ferry_merge_column decides one column of an update. On FERRY_MERGE_TAKE,
 * *out holds the value to write.
 */
FerryMergeOutcome
ferry_merge_column(FerryMergeInput *in, Datum *out, bool *out_null)
{
	FerryColumn *col = in->col;
	bool		unchanged_on_server;
	bool		no_op;

	*out = in->new;
	*out_null = in->new_null;

	no_op = ferry_datum_equal(in->cur, in->cur_null, in->new, in->new_null, col->typid, col->collation);
	unchanged_on_server = ferry_datum_equal(in->cur, in->cur_null, in->base, in->base_null,
											col->typid, col->collation);

	switch (col->rule)
	{
		case FERRY_RULE_IMMUTABLE:
			return no_op ? FERRY_MERGE_KEEP : FERRY_MERGE_IMMUTABLE;

		case FERRY_RULE_COUNTER:
			*out = counter_merge(col, in->cur, in->cur_null, in->base, in->base_null,
								 in->new, in->new_null, out_null);
			return FERRY_MERGE_TAKE;

		case FERRY_RULE_SET_UNION:
			if (unchanged_on_server)
				return no_op ? FERRY_MERGE_KEEP : FERRY_MERGE_TAKE;
			if (in->new_null)
				return FERRY_MERGE_TAKE;	/* clearing the set: the client's intent */
			*out = set_union_merge(col, in->cur, in->cur_null, in->base, in->base_null,
								   in->new, in->new_null);
			*out_null = false;
			return FERRY_MERGE_TAKE;

		case FERRY_RULE_VERSION:
		case FERRY_RULE_MANUAL:
			if (unchanged_on_server || no_op)
				return no_op ? FERRY_MERGE_KEEP : FERRY_MERGE_TAKE;
			return FERRY_MERGE_CONFLICT;

		case FERRY_RULE_LWW:
		default:
			if (unchanged_on_server || no_op)
				return no_op ? FERRY_MERGE_KEEP : FERRY_MERGE_TAKE;
			/* Both changed the column: the newer clock wins. */
			if (in->cur_clock != NULL && ferry_hlc_cmp(in->cur_clock, in->clock) >= 0)
				return FERRY_MERGE_OVERRIDDEN;
			return FERRY_MERGE_TAKE;
	}
}
