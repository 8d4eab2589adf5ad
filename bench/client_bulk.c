/* SPDX-License-Identifier: MIT */
/*
 * The batching client of pipe, oneway, fds and conns, for every transport:
 * a front-end that keeps depth requests in flight on each connection,
 * refills a quarter of them at a time with one send, and reads replies in
 * bulk, so that the server, not the client, is what is measured. Every
 * reply is validated (header rules, request code, value) and any fd on a
 * reply is an error; the raw transport's client only counts reply bytes.
 * Requests with fds go one per sendmsg, the fds in its control buffer.
 *
 * Against an outside back-end each connection first says hello
 * (GET_FEATURES), so a back-end that does not serve that many connections
 * at once is reported as such; the fds case also negotiates REPLY_ACK.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

/* Bytes one oneway send carries at most (whole requests). */
#define ONEWAY_BATCH	65536u
/* No reply on any connection for this long: something was lost (the sockets' own timeouts match). */
#define POLL_TIMEOUT_MS	10000

static const struct vhu_rules reply_rules = {
	.channel = VHU_CHAN_FRONTEND,
	.expect = VHU_EXPECT_REPLY,
};

struct cconn {
	int fd;
	unsigned int inflight;	/* requests sent whose reply has not come */
	uint32_t have;		/* bytes in rbuf */
	uint32_t rcap;
	uint8_t *rbuf;
};

struct bulk {
	struct cconn *cc;
	struct pollfd *pfd;
	uint8_t *reqs;		/* requests back to back */
	size_t nreqs;		/* in reqs */
	unsigned int batch;	/* refill once this many slots are free */
	int efd[BENCH_MAX_MSG_FDS];
	union vhu_cmsg_buf cbuf;	/* the eventfds, as SCM_RIGHTS */
	struct msghdr fdmh;	/* the control part of an fds request */
};

static int
fail(struct bench_client *c, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(struct bench_client *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->detail[0] == 0) {
		va_start(ap, fmt);
		vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
		va_end(ap);
	}
	return err;
}

/* One request with the eventfds in its first chunk. */
static int
send_with_fds(struct bench_client *c, struct bulk *b, int fd)
{
	const struct bench_traffic *tr = c->tr;
	struct iovec iov = { (void *)tr->msg, tr->msg_len };
	struct msghdr mh = b->fdmh;
	ssize_t n;

	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	do {
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		return -errno;
	}
	/* the fds went with the first byte; the rest goes without them */
	return bench_send_all(fd, tr->msg + n, tr->msg_len - (size_t)n);
}

static int
send_reqs(struct bench_client *c, struct bulk *b, struct cconn *k, unsigned int n)
{
	int ret = 0;

	if (c->tr->nfds == 0) {
		ret = bench_send_all(k->fd, b->reqs, (size_t)n * c->tr->msg_len);
	} else {
		for (unsigned int i = 0; i < n && ret == 0; i++) {
			ret = send_with_fds(c, b, k->fd);
		}
	}
	if (ret < 0) {
		return fail(c, ret, "sending requests: %s", vhu_strerror(ret));
	}
	c->sent += n;
	k->inflight += n;
	return 0;
}

/* Whole replies at the front of rbuf: check and count them. \return the count, or < 0. */
static int
take_replies(struct bench_client *c, struct cconn *k)
{
	const struct bench_traffic *tr = c->tr;
	uint8_t *p = k->rbuf;
	uint32_t left = k->have;
	unsigned int n = 0;

	while (left >= sizeof(struct vhu_hdr)) {
		struct vhu_hdr h;
		uint64_t v;
		uint32_t len = BENCH_REPLY_SIZE;
		int r;

		if (c->validate) {
			memcpy(&h, p, sizeof(h));
			r = vhu_hdr_check(&reply_rules, &h);
			if (r < 0) {
				return fail(c, r, "reply %llu: %s", (unsigned long long)c->replies + n,
					    vhu_strerror(r));
			}
			if (h.request != tr->request || h.size != sizeof(v)) {
				return fail(c, -VHU_EREPLY, "reply %llu: %s with %u bytes to %s",
					    (unsigned long long)c->replies + n,
					    vhu_req_name(VHU_CHAN_FRONTEND, h.request), h.size,
					    vhu_req_name(VHU_CHAN_FRONTEND, tr->request));
			}
		}
		if (left < len) {
			break;
		}
		if (c->validate) {
			memcpy(&v, p + sizeof(h), sizeof(v));
			if (tr->request == VHU_REQ_GET_FEATURES ? !c->foreign && v != BENCH_FEATURES
								: v != 0) {
				return fail(c, -VHU_EREPLY, "reply %llu to %s: value %#llx",
					    (unsigned long long)c->replies + n,
					    vhu_req_name(VHU_CHAN_FRONTEND, tr->request),
					    (unsigned long long)v);
			}
		}
		p += len;
		left -= len;
		n++;
	}
	if (n > k->inflight) {
		return fail(c, -VHU_EREPLY, "%u replies to %u requests", n, k->inflight);
	}
	if (left && p != k->rbuf) {
		memmove(k->rbuf, p, left);
	}
	k->have = left;
	k->inflight -= n;
	c->replies += n;
	return (int)n;
}

/* Receive what has come on one connection and take the whole replies. */
static int
recv_replies(struct bench_client *c, struct cconn *k, int flags)
{
	union vhu_cmsg_buf cbuf;
	struct iovec iov = { k->rbuf + k->have, k->rcap - k->have };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (c->validate) {
		vhu_cmsg_prep_recv(&mh, &cbuf);
		flags |= MSG_CMSG_CLOEXEC;
	}
	do {
		n = recvmsg(k->fd, &mh, flags);
	} while (n < 0 && errno == EINTR);
	if (n == 0) {
		return fail(c, -VHU_EDISCONNECT, "the server closed with %u replies owed",
			    k->inflight);
	}
	if (n < 0) {
		if (errno == EAGAIN && (flags & MSG_DONTWAIT)) {
			return 0;
		}
		if (errno == EAGAIN) {
			return fail(c, -ETIMEDOUT, "no reply within the socket's receive timeout, "
				    "%u owed", k->inflight);
		}
		return fail(c, -errno, "receiving replies: %s", strerror(errno));
	}
	if (c->validate && (mh.msg_controllen > 0 || (mh.msg_flags & MSG_CTRUNC))) {
		struct vhu_fds fds;
		int r;

		vhu_fds_init(&fds);
		r = vhu_cmsg_collect(&mh, mh.msg_flags, &fds);
		vhu_fds_close(&fds);
		if (r != 0) {
			return fail(c, r < 0 ? r : -VHU_EFDS, "a reply carried fds");
		}
	}
	k->have += (uint32_t)n;
	return take_replies(c, k);
}

/* A blocking exchange of one header-only request and its u64 reply (hello). */
static int
exchange(struct bench_client *c, struct cconn *k, uint32_t request, uint64_t *value)
{
	struct vhu_hdr req = vhu_hdr_request(request, 0, false), h;
	uint8_t buf[BENCH_REPLY_SIZE];
	size_t got = 0;
	int r = bench_send_all(k->fd, (const uint8_t *)&req, sizeof(req));

	if (r < 0) {
		return r;
	}
	while (got < sizeof(buf)) {
		ssize_t n = recv(k->fd, buf + got, sizeof(buf) - got, 0);

		if (n == 0) {
			return -VHU_EDISCONNECT;
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		got += (size_t)n;
	}
	memcpy(&h, buf, sizeof(h));
	r = vhu_hdr_check(&reply_rules, &h);
	if (r == 0 && (h.request != request || h.size != sizeof(*value))) {
		return fail(c, -VHU_EREPLY, "hello: %s with %u bytes to %s",
			    vhu_req_name(VHU_CHAN_FRONTEND, h.request), h.size,
			    vhu_req_name(VHU_CHAN_FRONTEND, request));
	}
	memcpy(value, buf + sizeof(h), sizeof(*value));
	return r;
}

/* An outside back-end: hello on every connection, REPLY_ACK for the fds case. */
static int
handshake(struct bench_client *c, struct bulk *b)
{
	for (unsigned int i = 0; i < c->nconns; i++) {
		struct cconn *k = &b->cc[i];
		uint64_t features, pf;
		int r = exchange(c, k, VHU_REQ_GET_FEATURES, &features);

		if (r < 0 && i > 0 && (r == -ETIMEDOUT || r == -VHU_EDISCONNECT ||
				       r == -ECONNRESET)) {
			return fail(c, -EOPNOTSUPP, "the back-end did not answer connection %u of "
				    "%u (%s): it serves fewer connections at once", i + 1,
				    c->nconns, vhu_strerror(r));
		}
		if (r < 0) {
			return fail(c, r, "GET_FEATURES on connection %u: %s", i + 1,
				    vhu_strerror(r));
		}
		if (c->tr->nfds == 0) {
			continue;
		}
		if (!(features & (UINT64_C(1) << VHU_F_PROTOCOL_FEATURES))) {
			return fail(c, -EOPNOTSUPP, "the back-end has no PROTOCOL_FEATURES, so no "
				    "REPLY_ACK: its fd requests get no reply");
		}
		r = exchange(c, k, VHU_REQ_GET_PROTOCOL_FEATURES, &pf);
		if (r < 0) {
			return fail(c, r, "GET_PROTOCOL_FEATURES: %s", vhu_strerror(r));
		}
		if (!(pf & (UINT64_C(1) << VHU_PROTOCOL_F_REPLY_ACK))) {
			return fail(c, -EOPNOTSUPP, "the back-end does not offer REPLY_ACK, so its "
				    "fd requests get no reply");
		}
		pf = UINT64_C(1) << VHU_PROTOCOL_F_REPLY_ACK;
		{
			struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_PROTOCOL_FEATURES,
							   sizeof(pf), false);
			uint8_t m[sizeof(h) + sizeof(pf)];

			memcpy(m, &h, sizeof(h));
			memcpy(m + sizeof(h), &pf, sizeof(pf));
			r = bench_send_all(k->fd, m, sizeof(m));
		}
		if (r < 0) {
			return fail(c, r, "SET_PROTOCOL_FEATURES: %s", vhu_strerror(r));
		}
	}
	return 0;
}

static void
free_bulk(struct bulk *b, unsigned int nconns)
{
	if (b == NULL) {
		return;
	}
	for (unsigned int i = 0; b->cc && i < nconns; i++) {
		free(b->cc[i].rbuf);
	}
	for (unsigned int i = 0; i < BENCH_MAX_MSG_FDS; i++) {
		if (b->efd[i] >= 0) {
			close(b->efd[i]);
		}
	}
	free(b->cc);
	free(b->pfd);
	free(b->reqs);
	free(b);
}

static int
bulk_open(struct bench_client *c)
{
	const struct bench_traffic *tr = c->tr;
	struct bulk *b = calloc(1, sizeof(*b));
	unsigned int depth = tr->depth ? tr->depth : 1;

	if (b == NULL) {
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < BENCH_MAX_MSG_FDS; i++) {
		b->efd[i] = -1;
	}
	c->priv = b;
	b->cc = calloc(c->nconns, sizeof(*b->cc));
	b->pfd = calloc(c->nconns, sizeof(*b->pfd));
	b->nreqs = tr->depth ? depth : (ONEWAY_BATCH / tr->msg_len ? ONEWAY_BATCH / tr->msg_len : 1);
	b->reqs = malloc(b->nreqs * tr->msg_len);
	b->batch = depth / 4 ? depth / 4 : 1;
	if (!b->cc || !b->pfd || !b->reqs) {
		return -ENOMEM;
	}
	bench_fill_requests(tr, b->reqs, b->nreqs);
	for (unsigned int i = 0; i < c->nconns; i++) {
		struct cconn *k = &b->cc[i];

		k->fd = c->fds[i];
		k->rcap = (depth + 1) * BENCH_REPLY_SIZE;
		k->rcap = k->rcap < 4096 ? 4096 : k->rcap;
		k->rbuf = malloc(k->rcap);
		if (k->rbuf == NULL) {
			return -ENOMEM;
		}
		b->pfd[i].fd = k->fd;
		b->pfd[i].events = POLLIN;
	}
	/*
	 * SET_VRING_CALL carries an eventfd; SET_MEM_TABLE regions are memfds
	 * (a back-end refuses any other kind). Either way the server's probe is
	 * an 8-byte write: it counts on an eventfd and grows a memfd by 8.
	 */
	for (unsigned int i = 0; i < tr->nfds; i++) {
		b->efd[i] = tr->nfds == 1 ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
					  : memfd_create("vhu-bench-region", MFD_CLOEXEC);
		if (b->efd[i] < 0) {
			return fail(c, -errno, "%s: %s", tr->nfds == 1 ? "eventfd" : "memfd_create",
				    strerror(errno));
		}
	}
	if (tr->nfds) {
		vhu_cmsg_build(&b->fdmh, &b->cbuf, b->efd, tr->nfds);
	}
	return c->foreign ? handshake(c, b) : 0;
}

/*
 * Until the server has read everything sent: a unix socket's SIOCOUTQ
 * counts the bytes the peer has not consumed yet. Without this a short
 * window would time the socket buffer filling up, not the server.
 */
static int
drained(struct bench_client *c, int fd)
{
	for (;;) {
		int queued = 0;

		if (ioctl(fd, SIOCOUTQ, &queued) < 0) {
			return fail(c, -errno, "SIOCOUTQ: %s", strerror(errno));
		}
		if (queued <= 0) {
			return 0;
		}
		sched_yield();
	}
}

static int
oneway(struct bench_client *c, struct bulk *b, struct bench_window *w)
{
	for (;;) {
		size_t n = b->nreqs;
		int r;

		if (w->count && w->count - w->msgs < n) {
			n = (size_t)(w->count - w->msgs);
		}
		r = bench_send_all(b->cc[0].fd, b->reqs, n * c->tr->msg_len);
		if (r < 0) {
			return fail(c, r, "sending requests: %s", vhu_strerror(r));
		}
		c->sent += n;
		w->msgs += n;
		if (bench_window_done(w, bench_now_ns())) {
			return drained(c, b->cc[0].fd);
		}
	}
}

static int
bulk_run(struct bench_client *c, struct bench_window *w)
{
	struct bulk *b = c->priv;
	const struct bench_traffic *tr = c->tr;

	if (tr->depth == 0) {
		return oneway(c, b, w);
	}
	for (;;) {
		int got = 0, r;

		for (unsigned int i = 0; i < c->nconns; i++) {
			struct cconn *k = &b->cc[i];

			if (tr->depth - k->inflight >= b->batch) {
				r = send_reqs(c, b, k, tr->depth - k->inflight);
				if (r < 0) {
					return r;
				}
			}
		}
		if (c->nconns == 1) {
			got = recv_replies(c, &b->cc[0], 0);
		} else {
			do {
				r = poll(b->pfd, c->nconns, POLL_TIMEOUT_MS);
			} while (r < 0 && errno == EINTR);
			if (r < 0) {
				return fail(c, -errno, "poll: %s", strerror(errno));
			}
			if (r == 0) {
				return fail(c, -ETIMEDOUT, "no reply on any of %u connections in %d ms",
					    c->nconns, POLL_TIMEOUT_MS);
			}
			for (unsigned int i = 0; i < c->nconns && got >= 0; i++) {
				if (b->pfd[i].revents) {
					r = recv_replies(c, &b->cc[i], MSG_DONTWAIT);
					got = r < 0 ? r : got + r;
				}
			}
		}
		if (got < 0) {
			return got;
		}
		w->msgs += (uint64_t)got;
		if (bench_window_done(w, bench_now_ns())) {
			return 0;
		}
	}
}

static int
bulk_finish(struct bench_client *c)
{
	struct bulk *b = c->priv;
	int ret = 0;

	if (b == NULL) {
		return 0;
	}
	for (unsigned int i = 0; b->cc && i < c->nconns && ret == 0; i++) {
		struct cconn *k = &b->cc[i];

		while (k->rbuf && k->inflight && ret == 0) {
			int got = recv_replies(c, k, 0);

			ret = got < 0 ? got : 0;
		}
	}
	for (unsigned int i = 0; i < c->tr->nfds; i++) {
		struct stat st;
		uint64_t v = 0;

		if (b->efd[i] < 0) {
			continue;
		}
		if (c->tr->nfds > 1) {
			v = fstat(b->efd[i], &st) == 0 ? (uint64_t)st.st_size / 8 : 0;
		} else if (read(b->efd[i], &v, sizeof(v)) != (ssize_t)sizeof(v)) {
			v = 0;	/* EAGAIN: never written */
		}
		c->counters[i] = v;
	}
	free_bulk(b, c->nconns);
	c->priv = NULL;
	return ret < 0 ? ret : 0;
}

const struct bench_client_ops bench_client_bulk = {
	.open = bulk_open,
	.run = bulk_run,
	.finish = bulk_finish,
};
