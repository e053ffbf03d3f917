/*
 * client-sqlite/ws.h -- a small non-blocking WebSocket client (RFC 6455) for libferry.
 *
 * One object per connection: a TCP socket, the HTTP upgrade, and framing (client
 * frames masked, server frames reassembled, pings answered). It never blocks except
 * in the name lookup of fy_ws_connect, and never owns an event loop: the caller polls
 * fy_ws_fd for fy_ws_events and calls fy_ws_io, then takes messages with fy_ws_next.
 * ws:// and wss:// (TLS through OpenSSL).
 */
#ifndef FERRY_CLIENT_WS_H
#define FERRY_CLIENT_WS_H

#include <stddef.h>
#include <stdint.h>

typedef struct FyWs FyWs;

/* Connection states. */
#define FY_WS_CONNECTING 0              /* TCP connect under way */
#define FY_WS_HANDSHAKE  1              /* upgrade request sent, waiting for 101 */
#define FY_WS_OPEN       2              /* messages flow */
#define FY_WS_TLS        3              /* wss://: TLS handshake under way */

/*
 * fy_ws_connect parses url (ws:// or wss://HOST[:PORT][/PATH], default port 80 or 443,
 * path "/v1/ws"), resolves the host and starts a non-blocking connect, asking for
 * `subprotocol`. For wss://, the server's certificate must chain to ca_file (PEM), or to
 * the system's trust store when ca_file is NULL, and name the URL's host.
 * On success *out is the connection (free with fy_ws_free); on failure it is NULL and
 * err says why. max_message caps one message from the server.
 */
int			fy_ws_connect(const char *url, const char *subprotocol, size_t max_message, const char *ca_file,
						  FyWs **out, char *err, size_t errlen);

int			fy_ws_fd(const FyWs *ws);       /* the socket */
int			fy_ws_state(const FyWs *ws);    /* FY_WS_* */
int			fy_ws_events(const FyWs *ws);   /* POLLIN/POLLOUT to wait for */
size_t		fy_ws_out_pending(const FyWs *ws);  /* bytes queued, not yet sent */

/*
 * fy_ws_io makes progress without blocking: finishes the connect, sends queued bytes,
 * reads what arrived, completes the upgrade. Returns 0, or -1 when the connection
 * failed or closed (err says why; the object must then be freed).
 */
int			fy_ws_io(FyWs *ws, char *err, size_t errlen);

/*
 * fy_ws_next takes the next complete binary message: returns 1 and sets data and len
 * (valid until the next call on ws), 0 when none is complete, -1 when the server
 * closed the connection or broke the framing (err says why; close code in
 * fy_ws_close_code).
 */
int			fy_ws_next(FyWs *ws, const uint8_t **data, size_t *len, char *err, size_t errlen);

/* fy_ws_send queues one binary message (masked); sent by the next fy_ws_io. */
int			fy_ws_send(FyWs *ws, const uint8_t *data, size_t len);

/* fy_ws_close_code returns the code of the server's close frame, 0 when none came. */
int			fy_ws_close_code(const FyWs *ws);

/* fy_ws_free sends a close frame with `code` when open and code != 0 (best effort),
 * closes the socket and frees ws (NULL is fine). */
void		fy_ws_free(FyWs *ws, int code);

#endif
