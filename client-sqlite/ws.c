/*
 * client-sqlite/ws.c -- a small non-blocking WebSocket client (RFC 6455) for libferry.
 *
 * Hand-made rather than libwebsockets' client so that the sync engine can live in the
 * host app's own event loop with one file descriptor and no thread or context of its
 * own. It checks the server's Sec-WebSocket-Accept (SHA-1 below) and subprotocol,
 * reassembles fragmented messages, answers pings, and masks what it sends.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_MAX_HEADER 16384             /* largest upgrade response accepted */
#define WS_READ_CHUNK 65536             /* bytes read per recv */
#define WS_READ_BUDGET (4 * 1024 * 1024)    /* bytes read per fy_ws_io, so others get a turn */

struct FyWs
{
	int			fd;				/* the socket */
	int			state;			/* FY_WS_* */
	char		accept[32];		/* the Sec-WebSocket-Accept we expect */
	char	   *subprotocol;	/* the one we asked for */
	size_t		max_message;	/* largest message accepted */
	uint8_t    *out;			/* bytes to send */
	size_t		out_off;		/* sent so far */
	size_t		out_len;
	size_t		out_cap;
	uint8_t    *in;				/* bytes received, not consumed */
	size_t		in_len;
	size_t		in_cap;
	size_t		consumed;		/* bytes of `in` taken by the last message, dropped next call */
	uint8_t    *frag;			/* a fragmented message being reassembled */
	size_t		frag_len;
	size_t		frag_cap;
	bool		in_frag;		/* a fragmented data message is under way */
	int			close_code;		/* the server's close frame code */
	bool		eof;			/* the server closed its side; buffered bytes remain */
};

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ------------------------------------- */

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void
sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t	w[80];
	uint32_t	a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 | (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	for (int i = 0; i < 80; i++)
	{
		uint32_t	f,
					k,
					t;

		if (i < 20)
			f = (b & c) | (~b & d), k = 0x5A827999;
		else if (i < 40)
			f = b ^ c ^ d, k = 0x6ED9EBA1;
		else if (i < 60)
			f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
		else
			f = b ^ c ^ d, k = 0xCA62C1D6;
		t = ROL(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = ROL(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

static void
sha1(const uint8_t *data, size_t len, uint8_t out[20])
{
	uint32_t	h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	uint8_t		block[64];
	size_t		i = 0;
	uint64_t	bits = (uint64_t) len * 8;

	for (; i + 64 <= len; i += 64)
		sha1_block(h, data + i);
	memset(block, 0, sizeof(block));
	memcpy(block, data + i, len - i);
	block[len - i] = 0x80;
	if (len - i >= 56)
	{
		sha1_block(h, block);
		memset(block, 0, sizeof(block));
	}
	for (int k = 0; k < 8; k++)
		block[63 - k] = (uint8_t) (bits >> (8 * k));
	sha1_block(h, block);
	for (int k = 0; k < 20; k++)
		out[k] = (uint8_t) (h[k / 4] >> (24 - 8 * (k % 4)));
}

static void
base64(const uint8_t *in, size_t n, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t		o = 0;

	for (size_t i = 0; i < n; i += 3)
	{
		uint32_t	v = (uint32_t) in[i] << 16 | (i + 1 < n ? (uint32_t) in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);

		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tab[v & 63] : '=';
	}
	out[o] = '\0';
}

/* ---- buffers ----------------------------------------------------------------------- */

static bool
grow(uint8_t **buf, size_t *cap, size_t need)
{
	size_t		ncap = *cap ? *cap : 4096;
	uint8_t    *nb;

	if (need <= *cap)
		return true;
	while (ncap < need)
		ncap *= 2;
	nb = realloc(*buf, ncap);
	if (nb == NULL)
		return false;
	*buf = nb;
	*cap = ncap;
	return true;
}

static int
out_add(FyWs *ws, const void *p, size_t n)
{
	if (ws->out_off > 0 && ws->out_off == ws->out_len)
		ws->out_off = ws->out_len = 0;
	if (!grow(&ws->out, &ws->out_cap, ws->out_len + n))
		return -1;
	memcpy(ws->out + ws->out_len, p, n);
	ws->out_len += n;
	return 0;
}

/* Queues one frame with the given opcode, masked. */
static int
send_frame(FyWs *ws, int opcode, const uint8_t *data, size_t len)
{
	uint8_t		hdr[14];
	size_t		h = 0;
	uint8_t		mask[4];
	size_t		start;

	fy_random(mask, sizeof(mask));
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
	if (out_add(ws, hdr, h) != 0)
		return -1;
	start = ws->out_len;
	if (len > 0 && out_add(ws, data, len) != 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		ws->out[start + i] ^= mask[i % 4];
	return 0;
}

/* ---- connecting -------------------------------------------------------------------- */

int
fy_ws_connect(const char *url, const char *subprotocol, size_t max_message, FyWs **out, char *err, size_t errlen)
{
	char		host[256];
	char		port[8] = "80";
	const char *path = "/v1/ws";
	const char *p;
	const char *hend;
	struct addrinfo hints;
	struct addrinfo *res = NULL;
	struct addrinfo *ai;
	FyWs	   *ws;
	uint8_t		rnd[16];
	char		key[32];
	char	   *req;
	int			gai;
	int			one = 1;

	*out = NULL;
	err[0] = '\0';
	if (strncmp(url, "ws://", 5) != 0)
	{
		snprintf(err, errlen, "unsupported URL \"%s\": only ws://HOST[:PORT][/PATH] is supported", url);
		return -1;
	}
	p = url + 5;
	if (*p == '[')
	{
		hend = strchr(p, ']');
		if (hend == NULL || (size_t) (hend - p - 1) >= sizeof(host))
		{
			snprintf(err, errlen, "bad host in URL \"%s\"", url);
			return -1;
		}
		memcpy(host, p + 1, (size_t) (hend - p - 1));
		host[hend - p - 1] = '\0';
		p = hend + 1;
	}
	else
	{
		size_t		n = strcspn(p, ":/");

		if (n == 0 || n >= sizeof(host))
		{
			snprintf(err, errlen, "bad host in URL \"%s\"", url);
			return -1;
		}
		memcpy(host, p, n);
		host[n] = '\0';
		p += n;
	}
	if (*p == ':')
	{
		size_t		n = strcspn(p + 1, "/");

		if (n == 0 || n >= sizeof(port) || strspn(p + 1, "0123456789") != n)
		{
			snprintf(err, errlen, "bad port in URL \"%s\"", url);
			return -1;
		}
		memcpy(port, p + 1, n);
		port[n] = '\0';
		p += 1 + n;
	}
	if (*p == '/' && p[1] != '\0')
		path = p;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((gai = getaddrinfo(host, port, &hints, &res)) != 0)
	{
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
		return -1;
	}
	ws = calloc(1, sizeof(FyWs));
	if (ws == NULL)
	{
		freeaddrinfo(res);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ws->fd = -1;
	for (ai = res; ai != NULL; ai = ai->ai_next)
	{
		int			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);

		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)
		{
			ws->fd = fd;
			break;
		}
		snprintf(err, errlen, "cannot connect to %s:%s: %s", host, port, strerror(errno));
		close(fd);
	}
	freeaddrinfo(res);
	if (ws->fd < 0)
	{
		if (ai == NULL && err[0] == '\0')
			snprintf(err, errlen, "cannot connect to %s:%s", host, port);
		free(ws);
		return -1;
	}
	setsockopt(ws->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ws->max_message = max_message;
	ws->subprotocol = fy_strdup(subprotocol);

	/* The upgrade request waits in the output buffer until the connect completes. */
	fy_random(rnd, sizeof(rnd));
	base64(rnd, sizeof(rnd), key);
	{
		char		cat_key[128];
		uint8_t		digest[20];

		snprintf(cat_key, sizeof(cat_key), "%s%s", key, WS_GUID);
		sha1((const uint8_t *) cat_key, strlen(cat_key), digest);
		base64(digest, sizeof(digest), ws->accept);
	}
	req = fy_sprintf("GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
					 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n"
					 "User-Agent: " FY_CLIENT_VERSION "\r\n\r\n", path, host, port, key, subprotocol);
	if (req == NULL || out_add(ws, req, strlen(req)) != 0)
	{
		free(req);
		fy_ws_free(ws, 0);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	free(req);
	ws->state = FY_WS_CONNECTING;
	*out = ws;
	return 0;
}

int
fy_ws_fd(const FyWs *ws)
{
	return ws->fd;
}

int
fy_ws_state(const FyWs *ws)
{
	return ws->state;
}

int
fy_ws_close_code(const FyWs *ws)
{
	return ws->close_code;
}

size_t
fy_ws_out_pending(const FyWs *ws)
{
	return ws->out_len - ws->out_off;
}

int
fy_ws_events(const FyWs *ws)
{
	if (ws->state == FY_WS_CONNECTING)
		return POLLOUT;
	return POLLIN | (fy_ws_out_pending(ws) > 0 ? POLLOUT : 0);
}

/* Finds header `name` in the upgrade response; copies its value. */
static bool
header(const char *resp, const char *name, char *val, size_t cap)
{
	size_t		n = strlen(name);
	const char *p = strstr(resp, "\r\n");

	while (p != NULL && p[2] != '\r')
	{
		p += 2;
		if (strncasecmp(p, name, n) == 0 && p[n] == ':')
		{
			const char *v = p + n + 1;
			size_t		len;

			while (*v == ' ' || *v == '\t')
				v++;
			len = strcspn(v, "\r");
			while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
				len--;
			snprintf(val, cap, "%.*s", (int) len, v);
			return true;
		}
		p = strstr(p, "\r\n");
	}
	return false;
}

/* Checks the 101 response once it is complete. 1 done, 0 not complete yet, -1 refused. */
static int
finish_handshake(FyWs *ws, char *err, size_t errlen)
{
	char	   *end;
	char		val[256];
	size_t		hlen;
	int			status;

	if (!grow(&ws->in, &ws->in_cap, ws->in_len + 1))
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ws->in[ws->in_len] = '\0';
	end = strstr((char *) ws->in, "\r\n\r\n");
	if (end == NULL)
	{
		if (ws->in_len > WS_MAX_HEADER)
		{
			snprintf(err, errlen, "the server's upgrade response is too long: is this a ferryd?");
			return -1;
		}
		return 0;
	}
	hlen = (size_t) (end + 4 - (char *) ws->in);
	end[2] = '\0';
	status = strncmp((char *) ws->in, "HTTP/1.1 ", 9) == 0 ? atoi((char *) ws->in + 9) : 0;
	if (status != 101)
	{
		snprintf(err, errlen, "the server refused the WebSocket upgrade (HTTP %d): is the URL's path right "
				 "(ferryd serves /v1/ws)?", status);
		return -1;
	}
	if (!header((char *) ws->in, "Sec-WebSocket-Accept", val, sizeof(val)) || strcmp(val, ws->accept) != 0)
	{
		snprintf(err, errlen, "the server's Sec-WebSocket-Accept is wrong: a proxy in between may be broken");
		return -1;
	}
	if (!header((char *) ws->in, "Sec-WebSocket-Protocol", val, sizeof(val)) || strcmp(val, ws->subprotocol) != 0)
	{
		snprintf(err, errlen, "the server does not speak protocol %s", ws->subprotocol);
		return -1;
	}
	memmove(ws->in, ws->in + hlen, ws->in_len - hlen);
	ws->in_len -= hlen;
	ws->state = FY_WS_OPEN;
	return 1;
}

int
fy_ws_io(FyWs *ws, char *err, size_t errlen)
{
	size_t		budget = WS_READ_BUDGET;

	if (ws->state == FY_WS_CONNECTING)
	{
		struct pollfd pfd = {ws->fd, POLLOUT, 0};
		int			soerr = 0;
		socklen_t	sl = sizeof(soerr);

		if (poll(&pfd, 1, 0) <= 0)
			return 0;
		if (getsockopt(ws->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
		{
			snprintf(err, errlen, "cannot connect: %s", strerror(soerr ? soerr : errno));
			return -1;
		}
		ws->state = FY_WS_HANDSHAKE;
	}
	while (fy_ws_out_pending(ws) > 0)
	{
		ssize_t		w = send(ws->fd, ws->out + ws->out_off, fy_ws_out_pending(ws), MSG_NOSIGNAL);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			snprintf(err, errlen, "the connection broke while sending: %s", strerror(errno));
			return -1;
		}
		ws->out_off += (size_t) w;
	}
	if (ws->out_off == ws->out_len)
		ws->out_off = ws->out_len = 0;
	if (ws->consumed > 0)
	{
		memmove(ws->in, ws->in + ws->consumed, ws->in_len - ws->consumed);
		ws->in_len -= ws->consumed;
		ws->consumed = 0;
	}
	while (budget > 0)
	{
		ssize_t		r;

		if (!grow(&ws->in, &ws->in_cap, ws->in_len + WS_READ_CHUNK + 1))
		{
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		r = recv(ws->fd, ws->in + ws->in_len, WS_READ_CHUNK, 0);
		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			snprintf(err, errlen, "the connection broke: %s", strerror(errno));
			return -1;
		}
		if (r == 0)
		{
			if (ws->state != FY_WS_OPEN || ws->in_len == 0)
			{
				snprintf(err, errlen, "the server closed the connection");
				return -1;
			}
			ws->eof = true;		/* deliver what is buffered; fy_ws_next reports the close */
			break;
		}
		ws->in_len += (size_t) r;
		budget -= (size_t) r < budget ? (size_t) r : budget;
	}
	if (ws->state == FY_WS_HANDSHAKE)
		return finish_handshake(ws, err, errlen) < 0 ? -1 : 0;
	return 0;
}

int
fy_ws_next(FyWs *ws, const uint8_t **data, size_t *len, char *err, size_t errlen)
{
	if (ws->state != FY_WS_OPEN)
		return 0;
	if (ws->consumed > 0)
	{
		memmove(ws->in, ws->in + ws->consumed, ws->in_len - ws->consumed);
		ws->in_len -= ws->consumed;
		ws->consumed = 0;
	}
	for (;;)
	{
		uint8_t    *p = ws->in;
		size_t		h = 2;
		uint64_t	plen;
		int			op;
		bool		fin;

		if (ws->eof && (ws->in_len < 2 || ws->in_len < 2 + (uint64_t) (p[1] & 0x7f)))
		{
			/* (a conservative test: a longer frame is caught when its length is read) */
			snprintf(err, errlen, "the server closed the connection");
			return -1;
		}
		if (ws->in_len < 2)
			return 0;
		fin = (p[0] & 0x80) != 0;
		op = p[0] & 0x0f;
		if (p[1] & 0x80)
		{
			snprintf(err, errlen, "the server sent a masked frame (not a WebSocket server?)");
			return -1;
		}
		plen = p[1] & 0x7f;
		if (plen == 126)
		{
			if (ws->in_len < 4)
				return 0;
			plen = (uint64_t) p[2] << 8 | p[3];
			h = 4;
		}
		else if (plen == 127)
		{
			if (ws->in_len < 10)
				return 0;
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | p[2 + i];
			h = 10;
		}
		if (plen > ws->max_message || (ws->in_frag && ws->frag_len + plen > ws->max_message))
		{
			snprintf(err, errlen, "the server sent a message above %zu bytes", ws->max_message);
			return -1;
		}
		if (ws->in_len < h + plen)
		{
			if (ws->eof)
			{
				snprintf(err, errlen, "the server closed the connection in the middle of a message");
				return -1;
			}
			return 0;
		}

		if (op >= 8)
		{
			/* control frames: ping, pong, close */
			if (op == 9)
				send_frame(ws, 10, p + h, (size_t) plen);
			else if (op == 8)
			{
				ws->close_code = plen >= 2 ? (p[h] << 8 | p[h + 1]) : 1005;
				snprintf(err, errlen, "the server closed the connection (code %d%s%.*s)", ws->close_code,
						 plen > 2 ? ": " : "", plen > 2 ? (int) (plen - 2) : 0, (const char *) p + h + 2);
				return -1;
			}
			memmove(ws->in, ws->in + h + plen, ws->in_len - h - plen);
			ws->in_len -= h + plen;
			continue;
		}
		if (op == 1 || (op == 0 && !ws->in_frag) || (op == 2 && ws->in_frag) || (op != 0 && op != 2))
		{
			snprintf(err, errlen, "the server sent a %s frame where the protocol has none",
					 op == 1 ? "text" : "misplaced");
			return -1;
		}
		if (fin && op == 2)
		{
			*data = p + h;
			*len = (size_t) plen;
			ws->consumed = h + plen;
			return 1;
		}
		/* a fragment: reassemble */
		if (!grow(&ws->frag, &ws->frag_cap, ws->frag_len + plen + 1))
		{
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(ws->frag + ws->frag_len, p + h, (size_t) plen);
		ws->frag_len += (size_t) plen;
		ws->in_frag = !fin;
		memmove(ws->in, ws->in + h + plen, ws->in_len - h - plen);
		ws->in_len -= h + plen;
		if (fin)
		{
			*data = ws->frag;
			*len = ws->frag_len;
			ws->frag_len = 0;	/* the bytes stay valid until the next fragment arrives */
			return 1;
		}
	}
}

int
fy_ws_send(FyWs *ws, const uint8_t *data, size_t len)
{
	return send_frame(ws, 2, data, len);
}

void
fy_ws_free(FyWs *ws, int code)
{
	if (ws == NULL)
		return;
	if (code != 0 && ws->state == FY_WS_OPEN && ws->fd >= 0)
	{
		uint8_t		b[2] = {(uint8_t) (code >> 8), (uint8_t) code};

		if (send_frame(ws, 8, b, 2) == 0)
			(void) !send(ws->fd, ws->out + ws->out_off, fy_ws_out_pending(ws), MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	if (ws->fd >= 0)
		close(ws->fd);
	free(ws->subprotocol);
	free(ws->out);
	free(ws->in);
	free(ws->frag);
	free(ws);
}
