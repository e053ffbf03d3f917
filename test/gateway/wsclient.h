/*
 * test/gateway/wsclient.h -- a minimal blocking WebSocket client for the gateway's tests.
 *
 * Header only. Deliberately hand-made rather than libwebsockets: tests must be
 * able to send what a well-behaved client never would (truncated frames, text
 * frames, garbage after the handshake) and to read exactly what the server
 * sent, frame by frame.
 *
 *     Ws *ws = ws_connect("127.0.0.1", port, "/v1/ws", "ferry.v1");
 *     ws_send(ws, bytes, len);                   // one binary message
 *     n = ws_recv(ws, &buf, 2000);               // one message, or -1 on timeout/close
 *     ws_close(ws);
 */
#ifndef FERRY_TEST_WSCLIENT_H
#define FERRY_TEST_WSCLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct Ws
{
	int			fd;				/* the socket */
	uint8_t    *in;				/* bytes received, not yet parsed */
	size_t		in_len;
	size_t		in_cap;
	uint8_t    *msg;			/* the last message returned */
	size_t		msg_len;
	int			closed;			/* a close frame or EOF was seen */
	int			close_code;		/* its status code */
	char		close_reason[128];	/* its reason */
} Ws;

static inline int64_t
ws_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int
ws_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0)
	{
		ssize_t		w = send(fd, b, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t) w;
	}
	return 0;
}

/* Reads more bytes into ws->in, waiting up to timeout_ms. 1 read, 0 timeout, -1 EOF/error. */
static inline int
ws_fill(Ws *ws, int timeout_ms)
{
	struct pollfd pfd = {ws->fd, POLLIN, 0};
	ssize_t		r;

	if (poll(&pfd, 1, timeout_ms) <= 0)
		return 0;
	if (ws->in_len + 65536 > ws->in_cap)
	{
		ws->in_cap = ws->in_len + 65536 * 2;
		ws->in = realloc(ws->in, ws->in_cap);
	}
	r = recv(ws->fd, ws->in + ws->in_len, ws->in_cap - ws->in_len, 0);
	if (r <= 0)
	{
		ws->closed = 1;
		return -1;
	}
	ws->in_len += (size_t) r;
	return 1;
}

/* Connects and upgrades. NULL when the connection or the upgrade failed. */
static inline Ws *
ws_connect_ex(const char *host, int port, const char *path, const char *subprotocol, int *http_status)
{
	struct sockaddr_in sa;
	Ws		   *ws = calloc(1, sizeof(Ws));
	char		req[1024];
	int			one = 1;
	int64_t		deadline = ws_now_ms() + 5000;
	char	   *end;

	if (http_status)
		*http_status = 0;
	ws->fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	inet_pton(AF_INET, host, &sa.sin_addr);
	if (connect(ws->fd, (struct sockaddr *) &sa, sizeof(sa)) != 0)
	{
		close(ws->fd);
		free(ws);
		return NULL;
	}
	setsockopt(ws->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
			 "%s%s%s\r\n",
			 path, host, port, subprotocol ? "Sec-WebSocket-Protocol: " : "", subprotocol ? subprotocol : "",
			 subprotocol ? "\r\n" : "");
	if (ws_write_all(ws->fd, req, strlen(req)) != 0)
		goto fail;
	for (;;)
	{
		if (ws->in_len > 0)
		{
			ws->in[ws->in_len < ws->in_cap ? ws->in_len : ws->in_cap - 1] = 0;
			end = strstr((char *) ws->in, "\r\n\r\n");
			if (end != NULL)
				break;
		}
		if (ws_now_ms() > deadline || ws_fill(ws, 100) < 0)
			goto fail;
	}
	if (http_status)
		*http_status = atoi((char *) ws->in + 9);
	if (strncmp((char *) ws->in, "HTTP/1.1 101", 12) != 0)
		goto fail;
	{
		size_t		hdr = (size_t) (end + 4 - (char *) ws->in);

		memmove(ws->in, ws->in + hdr, ws->in_len - hdr);
		ws->in_len -= hdr;
	}
	return ws;
fail:
	close(ws->fd);
	free(ws->in);
	free(ws);
	return NULL;
}

static inline Ws *
ws_connect(const char *host, int port, const char *path, const char *subprotocol)
{
	return ws_connect_ex(host, port, path, subprotocol, NULL);
}

/* Sends one frame with the given opcode (2 binary, 1 text, 8 close), masked as clients must. */
static inline int
ws_send_op(Ws *ws, int opcode, const void *data, size_t len)
{
	uint8_t		hdr[14];
	size_t		h = 0;
	uint8_t		mask[4] = {0x12, 0x34, 0x56, 0x78};
	uint8_t    *body = malloc(len + 1);

	hdr[h++] = (uint8_t) (0x80 | opcode);
	if (len < 126)
		hdr[h++] = (uint8_t) (0x80 | len);
	else if (len < 65536)
	{
		hdr[h++] = 0x80 | 126;
		hdr[h++] = (uint8_t) (len >> 8);
		hdr[h++] = (uint8_t) len;
	}
	else
	{
		hdr[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			hdr[h++] = (uint8_t) ((uint64_t) len >> (8 * i));
	}
	memcpy(hdr + h, mask, 4);
	h += 4;
	for (size_t i = 0; i < len; i++)
		body[i] = ((const uint8_t *) data)[i] ^ mask[i % 4];
	if (ws_write_all(ws->fd, hdr, h) != 0 || ws_write_all(ws->fd, body, len) != 0)
	{
		free(body);
		return -1;
	}
	free(body);
	return 0;
}

static inline int
ws_send(Ws *ws, const void *data, size_t len)
{
	return ws_send_op(ws, 2, data, len);
}

/*
 * Receives one data message (binary or text), answering pings. Returns its
 * length (data in ws->msg) or -1 on timeout, close frame or EOF (ws->closed).
 */
static inline long
ws_recv(Ws *ws, int timeout_ms)
{
	int64_t		deadline = ws_now_ms() + timeout_ms;

	for (;;)
	{
		if (ws->in_len >= 2)
		{
			uint8_t    *p = ws->in;
			int			op = p[0] & 0x0f;
			uint64_t	len = p[1] & 0x7f;
			size_t		h = 2;

			if (len == 126 && ws->in_len >= 4)
			{
				len = ((uint64_t) p[2] << 8) | p[3];
				h = 4;
			}
			else if (len == 127 && ws->in_len >= 10)
			{
				len = 0;
				for (int i = 0; i < 8; i++)
					len = (len << 8) | p[2 + i];
				h = 10;
			}
			else if (len >= 126)
				goto more;
			if (ws->in_len >= h + len)
			{
				free(ws->msg);
				ws->msg = malloc(len + 1);
				memcpy(ws->msg, p + h, len);
				ws->msg[len] = 0;
				ws->msg_len = len;
				memmove(ws->in, ws->in + h + len, ws->in_len - h - len);
				ws->in_len -= h + len;
				if (op == 8)
				{
					ws->closed = 1;
					ws->close_code = len >= 2 ? (ws->msg[0] << 8) | ws->msg[1] : 0;
					snprintf(ws->close_reason, sizeof(ws->close_reason), "%.*s",
							 (int) (len > 2 ? len - 2 : 0), (char *) ws->msg + 2);
					return -1;
				}
				if (op == 9)
				{
					ws_send_op(ws, 10, ws->msg, ws->msg_len);
					continue;
				}
				if (op == 10)
					continue;
				return (long) len;
			}
		}
more:
		{
			int64_t		left = deadline - ws_now_ms();

			if (left <= 0 || ws->closed)
				return -1;
			if (ws_fill(ws, (int) (left > 100 ? 100 : left)) < 0)
				return -1;
		}
	}
}

static inline void
ws_close(Ws *ws)
{
	if (ws == NULL)
		return;
	close(ws->fd);
	free(ws->in);
	free(ws->msg);
	free(ws);
}

#endif
