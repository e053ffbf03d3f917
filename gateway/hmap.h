/*
 * gateway/hmap.h -- a string-keyed hash map of pointers (open addressing).
 *
 * Keys are copied; values are the caller's. Used for the shape registry
 * (definition -> shape, handle -> shape) and the routing index
 * (table and tenant -> shapes).
 */
#ifndef FERRY_HMAP_H
#define FERRY_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct HmapEntry
{
	char	   *key;			/* owned copy, NULL when free */
	size_t		keylen;			/* key length (keys may hold NUL bytes) */
	uint64_t	hash;			/* hash of the key */
	void	   *value;			/* the caller's pointer */
	int			tomb;			/* deleted slot */
} HmapEntry;

typedef struct Hmap
{
	size_t		cap;			/* slots, a power of two */
	size_t		count;			/* live entries */
	size_t		used;			/* live + deleted slots */
	HmapEntry  *slots;			/* [cap] */
} Hmap;

void		hmap_init(Hmap *m);
void		hmap_destroy(Hmap *m);	/* frees keys, not values */
void	   *hmap_get(const Hmap *m, const void *key, size_t keylen);
/* Sets key to value; returns the previous value or NULL. */
void	   *hmap_put(Hmap *m, const void *key, size_t keylen, void *value);
/* Removes key; returns its value or NULL. */
void	   *hmap_del(Hmap *m, const void *key, size_t keylen);
/* Iteration: i from 0; returns the next live slot index >= i, or -1. */
long		hmap_next(const Hmap *m, long i);
uint64_t	hmap_hash(const void *key, size_t len);

#endif
