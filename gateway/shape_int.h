/*
 * gateway/shape_int.h -- what shape.c and shape_store.c share; not for other modules.
 */
#ifndef FERRY_SHAPE_INT_H
#define FERRY_SHAPE_INT_H

#include "shape.h"

int64_t		shape_now_us(void);
void		shape_free(Shape *s);
/* Builds a shape (not registered, no log) for a request and claims. */
Shape	   *shape_build(const Catalog *cat, const ShapeRequest *req, const ShapeClaims *claims,
						ShapeErr *kind, char *err, size_t errlen);
void		shape_register(ShapeRegistry *r, Shape *s);
/* "<shapes dir>/<handle>.snap", the snapshot's visibility beside the log. */
void		shape_snap_path(const ShapeRegistry *r, const char *handle, char *buf, size_t cap);

#endif
