/*
 * client-sqlite/ws.c -- a small non-blocking WebSocket client (RFC 6455) for libferry.
 *
 * Hand-made rather than libwebsockets' client so that the sync engine can live in the
 * host app's own event loop with one file descriptor and no thread or context of its
 * own. It checks the server's Sec-WebSocket-Accept and subprotocol, reassembles
 * fragmented messages, answers pings, and masks what it sends. wss:// runs the same over
 * OpenSSL: TLS 1.2 or newer, the server's certificate verified against the system's
 * trust store (or a CA file the app names) and its name checked against the URL's host.
 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
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

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

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
	SSL		   *tls;			/* wss://: the TLS connection over memory BIOs, else NULL */
	BIO		   *tls_in;			/* bytes from the socket, for OpenSSL to read */
	BIO		   *tls_out;		/* bytes OpenSSL wrote, for the socket */
	uint8_t    *raw;			/* wss://: encrypted bytes to send */
	size_t		raw_off;		/* sent so far */
	size_t		raw_len;
	size_t		raw_cap;
	uint8_t    *raw_in;			/* wss://: a read buffer of WS_READ_CHUNK */
	char		host[256];		/* the URL's host, for messages */
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

/* ---- base64 and SHA-1, for Sec-WebSocket-Accept ------------------------------------- */

/* base64 of n bytes into out (room for 4 * ceil(n / 3) + 1). */
static void
base64(const uint8_t *in, size_t n, char *out)
{
	EVP_EncodeBlock((unsigned char *) out, in, (int) n);
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

/* ---- TLS (wss://) ------------------------------------------------------------------- */

/*
 * OpenSSL never touches the socket: it reads from and writes to memory BIOs, and this
 * file moves the bytes with recv and send(MSG_NOSIGNAL), so a peer that goes away can
 * never raise SIGPIPE in the host app, and the socket stays under one poll loop.
 */

/* Puts OpenSSL's last error (or what) in err. */
static void
tls_error(const FyWs *ws, const char *what, char *err, size_t errlen)
{
	unsigned long e = ERR_get_error();
	long		v = ws->tls ? SSL_get_verify_result(ws->tls) : X509_V_OK;

	if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
		snprintf(err, errlen, "%s: the server's certificate was refused: %s (the URL's host, %s, must be one "
				 "the certificate names)", what, X509_verify_cert_error_string(v), ws->host);
	else if (v != X509_V_OK)
		snprintf(err, errlen, "%s: the server's certificate was refused: %s (trust its CA with ferry_set_ca_file, "
				 "or fix the server's certificate)", what, X509_verify_cert_error_string(v));
	else if (e != 0)
	{
		char		buf[256];

		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(err, errlen, "%s: %s%s", what, buf, ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ?
				 " (does the server speak TLS on this port? use ws:// for a plain one)" : "");
	}
	else
		snprintf(err, errlen, "%s", what);
	ERR_clear_error();
}

/* Sets up TLS on ws for host: trust (ca_file, or the system's), its name, TLS >= 1.2. */
static int
tls_setup(FyWs *ws, const char *host, const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX    *ctx = SSL_CTX_new(TLS_client_method());
	X509_VERIFY_PARAM *vp;
	struct in6_addr a6;
	struct in_addr a4;
	bool		ip = inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
	int			okay;

	if (ctx == NULL)
	{
		tls_error(ws, "cannot set up TLS", err, errlen);
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL && ca_file[0])
		okay = SSL_CTX_load_verify_locations(ctx, ca_file, NULL) == 1;
	else
		okay = SSL_CTX_set_default_verify_paths(ctx) == 1;
	if (!okay)
	{
		char		what[512];

		snprintf(what, sizeof(what), "cannot load the trusted certificates%s%s", ca_file ? " from " : "",
				 ca_file ? ca_file : "");
		tls_error(ws, what, err, errlen);
		SSL_CTX_free(ctx);
		return -1;
	}
	ws->tls = SSL_new(ctx);
	SSL_CTX_free(ctx);			/* the connection holds its own reference */
	ws->tls_in = BIO_new(BIO_s_mem());
	ws->tls_out = BIO_new(BIO_s_mem());
	ws->raw_in = malloc(WS_READ_CHUNK);
	if (ws->tls == NULL || ws->tls_in == NULL || ws->tls_out == NULL || ws->raw_in == NULL)
	{
		BIO_free(ws->tls_in);
		BIO_free(ws->tls_out);
		ws->tls_in = ws->tls_out = NULL;
		tls_error(ws, "cannot set up TLS", err, errlen);
		return -1;
	}
	SSL_set_bio(ws->tls, ws->tls_in, ws->tls_out);
	vp = SSL_get0_param(ws->tls);
	if (ip)
		okay = X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1;
	else
		okay = SSL_set_tlsext_host_name(ws->tls, host) == 1 && X509_VERIFY_PARAM_set1_host(vp, host, 0) == 1;
	if (!okay)
	{
		tls_error(ws, "cannot set up TLS for this host", err, errlen);
		return -1;
	}
	SSL_set_connect_state(ws->tls);
	return 0;
}

/* Moves what OpenSSL wrote into the raw send buffer. */
static int
tls_collect(FyWs *ws)
{
	size_t		n;

	while ((n = BIO_ctrl_pending(ws->tls_out)) > 0)
	{
		int			r;

		if (ws->raw_off > 0 && ws->raw_off == ws->raw_len)
			ws->raw_off = ws->raw_len = 0;
		if (!grow(&ws->raw, &ws->raw_cap, ws->raw_len + n))
			return -1;
		r = BIO_read(ws->tls_out, ws->raw + ws->raw_len, (int) n);
		if (r <= 0)
			break;
		ws->raw_len += (size_t) r;
	}
	return 0;
}

/*
 * One round of TLS work: the handshake until done, then the plaintext queued in `out`
 * encrypted, then what arrived decrypted into `in`. Returns 0, or -1 (err says why).
 */
static int
tls_pump(FyWs *ws, char *err, size_t errlen)
{
	if (ws->state == FY_WS_TLS)
	{
		int			r = SSL_do_handshake(ws->tls);

		if (r == 1)
			ws->state = FY_WS_HANDSHAKE;
		else
		{
			int			e = SSL_get_error(ws->tls, r);

			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			{
				tls_error(ws, "the TLS handshake failed", err, errlen);
				return -1;
			}
		}
	}
	if (ws->state != FY_WS_TLS)
	{
		while (fy_ws_out_pending(ws) > 0)
		{
			size_t		done = 0;

			if (SSL_write_ex(ws->tls, ws->out + ws->out_off, fy_ws_out_pending(ws), &done) != 1)
			{
				tls_error(ws, "cannot encrypt", err, errlen);
				return -1;
			}
			ws->out_off += done;
		}
		if (ws->out_off == ws->out_len)
			ws->out_off = ws->out_len = 0;
		for (;;)
		{
			size_t		got = 0;
			int			r;

			if (!grow(&ws->in, &ws->in_cap, ws->in_len + WS_READ_CHUNK + 1))
			{
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			r = SSL_read_ex(ws->tls, ws->in + ws->in_len, WS_READ_CHUNK, &got);
			if (r == 1)
			{
				ws->in_len += got;
				continue;
			}
			r = SSL_get_error(ws->tls, r);
			if (r == SSL_ERROR_ZERO_RETURN)
				ws->eof = true; /* close_notify: deliver what is buffered */
			else if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE)
			{
				tls_error(ws, "the TLS connection broke", err, errlen);
				return -1;
			}
			break;
		}
	}
	if (tls_collect(ws) != 0)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* ---- connecting -------------------------------------------------------------------- */

int
fy_ws_connect(const char *url, const char *subprotocol, size_t max_message, const char *ca_file, FyWs **out,
			  char *err, size_t errlen)
{
	char		host[256];
	char		port[8] = "80";
	bool		tls = strncmp(url, "wss://", 6) == 0;
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
	if (strncmp(url, "ws://", 5) != 0 && !tls)
	{
		snprintf(err, errlen, "unsupported URL \"%s\": only ws:// and wss://HOST[:PORT][/PATH] are supported", url);
		return -1;
	}
	p = url + (tls ? 6 : 5);
	if (tls)
		strcpy(port, "443");
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
	snprintf(ws->host, sizeof(ws->host), "%s", host);
	if (tls && tls_setup(ws, host, ca_file, err, errlen) != 0)
	{
		fy_ws_free(ws, 0);
		return -1;
	}
	ws->max_message = max_message;
	ws->subprotocol = fy_strdup(subprotocol);

	/* The upgrade request waits in the output buffer until the connect completes. */
	fy_random(rnd, sizeof(rnd));
	base64(rnd, sizeof(rnd), key);
	{
		char		cat_key[128];
		uint8_t		digest[20];

		snprintf(cat_key, sizeof(cat_key), "%s%s", key, WS_GUID);
		SHA1((const unsigned char *) cat_key, strlen(cat_key), digest);
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
	if (ws->tls != NULL)
		return POLLIN | (ws->raw_len > ws->raw_off || (ws->state != FY_WS_TLS && fy_ws_out_pending(ws) > 0) ? POLLOUT : 0);
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

/* ---- moving bytes ------------------------------------------------------------------ */

/* Drops the bytes of `in` the last message took. */
static void
in_compact(FyWs *ws)
{
	if (ws->consumed > 0)
	{
		memmove(ws->in, ws->in + ws->consumed, ws->in_len - ws->consumed);
		ws->in_len -= ws->consumed;
		ws->consumed = 0;
	}
}

/* Sends buf[*off, len) until done or the socket is full: 0, or -1 (err says why). */
static int
sock_send(FyWs *ws, const uint8_t *buf, size_t *off, size_t len, char *err, size_t errlen)
{
	while (*off < len)
	{
		ssize_t		w = send(ws->fd, buf + *off, len - *off, MSG_NOSIGNAL);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			snprintf(err, errlen, "the connection broke while sending: %s", strerror(errno));
			return -1;
		}
		*off += (size_t) w;
	}
	return 0;
}

/*
 * Reads up to WS_READ_CHUNK bytes into dst: the count, 0 when nothing is there now or the
 * server closed after data that is still to be delivered (ws->eof), -1 when the
 * connection broke or closed early (err says why).
 */
static ssize_t
sock_recv(FyWs *ws, uint8_t *dst, char *err, size_t errlen)
{
	for (;;)
	{
		ssize_t		r = recv(ws->fd, dst, WS_READ_CHUNK, 0);

		if (r > 0)
			return r;
		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			snprintf(err, errlen, "the connection broke: %s", strerror(errno));
			return -1;
		}
		if (ws->state != FY_WS_OPEN || ws->in_len == 0)
		{
			snprintf(err, errlen, ws->state == FY_WS_TLS ? "the server closed the connection during the TLS "
					 "handshake: does it speak TLS on this port?" : "the server closed the connection");
			return -1;
		}
		ws->eof = true;			/* deliver what is buffered; fy_ws_next reports the close */
		return 0;
	}
}

/* fy_ws_io for wss://: plaintext through OpenSSL, encrypted bytes through the socket. */
static int
tls_io(FyWs *ws, char *err, size_t errlen)
{
	size_t		budget = WS_READ_BUDGET;

	in_compact(ws);
	if (tls_pump(ws, err, errlen) != 0)
		return -1;
	for (;;)
	{
		ssize_t		r;

		if (sock_send(ws, ws->raw, &ws->raw_off, ws->raw_len, err, errlen) != 0)
			return -1;
		if (budget == 0 || ws->eof)
			break;
		if ((r = sock_recv(ws, ws->raw_in, err, errlen)) <= 0)
		{
			if (r < 0)
				return -1;
			break;
		}
		if (BIO_write(ws->tls_in, ws->raw_in, (int) r) != (int) r)
		{
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		budget -= (size_t) r < budget ? (size_t) r : budget;
		if (tls_pump(ws, err, errlen) != 0)
			return -1;
	}
	if (ws->state == FY_WS_HANDSHAKE)
		return finish_handshake(ws, err, errlen) < 0 ? -1 : 0;
	return 0;
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
		ws->state = ws->tls != NULL ? FY_WS_TLS : FY_WS_HANDSHAKE;
	}
	if (ws->tls != NULL)
		return tls_io(ws, err, errlen);
	if (sock_send(ws, ws->out, &ws->out_off, ws->out_len, err, errlen) != 0)
		return -1;
	if (ws->out_off == ws->out_len)
		ws->out_off = ws->out_len = 0;
	in_compact(ws);
	while (budget > 0 && !ws->eof)
	{
		ssize_t		r;

		if (!grow(&ws->in, &ws->in_cap, ws->in_len + WS_READ_CHUNK + 1))
		{
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if ((r = sock_recv(ws, ws->in + ws->in_len, err, errlen)) <= 0)
		{
			if (r < 0)
				return -1;
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
	in_compact(ws);
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

		if (send_frame(ws, 8, b, 2) == 0 && ws->tls == NULL)
			(void) !send(ws->fd, ws->out + ws->out_off, fy_ws_out_pending(ws), MSG_NOSIGNAL | MSG_DONTWAIT);
		else if (ws->tls != NULL)
		{
			char		e[128];

			if (tls_pump(ws, e, sizeof(e)) == 0)
			{
				SSL_shutdown(ws->tls);
				if (tls_collect(ws) == 0)
					(void) !send(ws->fd, ws->raw + ws->raw_off, ws->raw_len - ws->raw_off, MSG_NOSIGNAL | MSG_DONTWAIT);
			}
		}
	}
	SSL_free(ws->tls);			/* and its BIOs */
	ERR_clear_error();
	free(ws->raw);
	free(ws->raw_in);
	if (ws->fd >= 0)
		close(ws->fd);
	free(ws->subprotocol);
	free(ws->out);
	free(ws->in);
	free(ws->frag);
	free(ws);
}
