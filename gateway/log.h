/*
 * gateway/log.h -- one line per event, with a level, on stderr.
 *
 * Lines read "2026-11-25T08:00:00.123Z info  repl: slot \"ferry\" created".
 * Never pass a token, a secret or row values to these functions.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

typedef enum LogLevel
{
	LOG_LEVEL_ERROR = 0,		/* something failed; ferryd may go on */
	LOG_LEVEL_WARN = 1,			/* something odd, handled */
	LOG_LEVEL_INFO = 2,			/* lifecycle: start, stop, connections */
	LOG_LEVEL_DEBUG = 3			/* per change and per frame detail */
} LogLevel;

/* Sets the most detailed level printed; returns -1 for an unknown name. */
int			log_set_level_name(const char *name);
void		log_set_level(LogLevel level);
int			log_enabled(LogLevel level);

/* Prints one line: level, component, message. */
void		log_msg(LogLevel level, const char *component, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

#define log_error(comp, ...) log_msg(LOG_LEVEL_ERROR, comp, __VA_ARGS__)
#define log_warn(comp, ...)  log_msg(LOG_LEVEL_WARN, comp, __VA_ARGS__)
#define log_info(comp, ...)  log_msg(LOG_LEVEL_INFO, comp, __VA_ARGS__)
#define log_debug(comp, ...) do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, comp, __VA_ARGS__); } while (0)

#endif
