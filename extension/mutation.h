/*
 * extension/mutation.h -- the parts of ferry.apply_mutation shared by mutation.c and apply.c.
 */
#ifndef FERRY_MUTATION_H
#define FERRY_MUTATION_H

#include "ferry.h"

typedef enum MutationOp
{
	OP_INSERT,
	OP_UPDATE,
	OP_DELETE
} MutationOp;

typedef struct Mutation
{
	char	   *id;				/* mutation id, a uuid */
	char	   *client_id;		/* sending client */
	Jsonb	   *jb;				/* the whole mutation */
	MutationOp	op;				/* what it does */
	FerryHlc	clock;			/* its clock (server's now when absent) */
	bool		has_base_version;	/* base_version was given */
	int64		base_version;	/* version the client's edit was based on */
} Mutation;

typedef struct MutationResult
{
	const char *status;			/* applied, duplicate, conflict, rejected */
	bool		has_version;	/* version and row are set */
	int64		version;		/* row version after the mutation */
	Jsonb	   *row;			/* current row */
	List	   *conflicts;		/* column names (char *) */
	List	   *applied;		/* columns applied despite a manual conflict */
	List	   *overridden;		/* lww columns the server's value won */
	const char *code;			/* rejected: error code */
	char	   *message;		/* rejected: message */
	char	   *sqlstate;		/* rejected: SQLSTATE of the error */
	char	   *column;			/* rejected: column the error is about */
	bool		retryable;		/* rejected by a transient error */
	Jsonb	   *original;		/* duplicate: the original result */
} MutationResult;

/*
 * Raises an error with one of the internal SQLSTATEs (or any), naming a
 * column when given; inside apply_mutation's subtransaction it becomes a
 * `rejected` result.
 */
#define reject(code, column, ...) \
	ereport(ERROR, (errcode(code), errmsg(__VA_ARGS__), \
					(column) != NULL ? err_generic_string(PG_DIAG_COLUMN_NAME, (column)) : 0))

/* apply.c: reading a mutation and applying it. */
extern bool ferry_mutation_read_envelope(Jsonb *jb, Mutation *m, char **why);
extern void ferry_mutation_apply(Mutation *m, FerryClaims *claims, MutationResult *res);

#endif
