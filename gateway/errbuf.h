/*
 * gateway/errbuf.h -- filling a caller's error buffer, the gateway modules' one error style.
 *
 * Gateway functions return a code and write what failed into the caller's
 * (char *err, size_t errlen); err may be NULL or errlen 0 when the caller
 * does not want the text.
 */
#ifndef FERRY_ERRBUF_H
#define FERRY_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* errbuf_fail formats the message into err and returns rc, for `return errbuf_fail(...)`. */
static inline int __attribute__((format(printf, 4, 5)))
errbuf_fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
	va_list		ap;

	if (err != NULL && errlen > 0)
	{
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

#endif
