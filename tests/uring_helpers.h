/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the behavioural tests of the io_uring engine (test_conn.c,
 * test_stream.c): a ring in the test process, connections attached to one
 * end of a socketpair, a recorder that copies every delivered message and
 * counts on_close, peer-side writers and readers, and loops that drive the
 * ring until a condition holds (with a hang guard instead of sleeps).
 *
 * Everything is static inline so that each test file includes it without a
 * separate object. Include it after defining _GNU_SOURCE.
 */
#ifndef VHU_TEST_URING_HELPERS_H
#define VHU_TEST_URING_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "helpers.h"

/* A stretch with no completion this long means the engine hangs. */
#define TH_HANG_MS	5000
/* Upper bound on ring iterations of one wait loop (a livelock guard). */
#define TH_MAX_ITERS	2000000ul

/* ------------------------------------------------------------------ */
/* Recorder: what on_message and on_close saw on one connection        */

struct th_msg {
	struct vhu_hdr hdr;
	uint8_t *body;		/* hdr.size bytes, copied */
	int fd[VHU_MAX_FDS];	/* taken out of the message: the recorder owns them */
	unsigned int nfds;
};

struct th_rec;

/* Runs after a message was recorded; its return value is on_message's. */
typedef int (*th_hook_fn)(struct th_rec *rec, struct vhu_conn *conn, struct th_msg *m);

struct th_rec {
	struct vhu_conn *conn;	/* NULL once on_close ran */
	struct th_msg *msg;
	size_t n, cap;
	unsigned int closes;	/* on_close calls: must end at exactly 1 */
	int reason;		/* on_close's reason */
	unsigned int late;	/* callbacks after on_close: must stay 0 */
	unsigned int wrong_conn; /* callbacks with a conn pointer not ours */
	th_hook_fn hook;
	long idx;		/* free for the test: an index among several */
	int hook_rc;		/* free for hooks: a return code to check later */
	unsigned int hook_calls;
};

static inline void
th_rec_init(struct th_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->reason = 1;	/* not a value on_close can give */
	r->hook_rc = 1;
}

static inline void
th_rec_fini(struct th_rec *r)
{
	for (size_t i = 0; i < r->n; i++) {
		for (unsigned int j = 0; j < r->msg[i].nfds; j++) {
			if (r->msg[i].fd[j] >= 0) {
				close(r->msg[i].fd[j]);
			}
		}
		free(r->msg[i].body);
	}
	free(r->msg);
	memset(r, 0, sizeof(*r));
}

static inline int
th_on_message(struct vhu_conn *conn, struct vhu_msg *m, void *ctx)
{
	struct th_rec *r = ctx;
	struct th_msg *t;

	if (r->closes > 0) {
		r->late++;
	}
	if (r->conn != NULL && r->conn != conn) {
		r->wrong_conn++;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct th_msg *nm = realloc(r->msg, cap * sizeof(*nm));

		cr_assert_not_null(nm, "out of memory recording messages");
		r->msg = nm;
		r->cap = cap;
	}
	t = &r->msg[r->n++];
	memset(t, 0, sizeof(*t));
	t->hdr = m->hdr;
	t->body = malloc(m->hdr.size ? m->hdr.size : 1);
	cr_assert_not_null(t->body, "out of memory recording a body");
	if (m->hdr.size) {
		cr_assert_not_null(m->body, "message of size %u delivered with a NULL body",
				   m->hdr.size);
		memcpy(t->body, m->body, m->hdr.size);
	}
	cr_assert_leq(m->fds.n, VHU_MAX_FDS, "message delivered with %u fds", m->fds.n);
	for (unsigned int i = 0; i < m->fds.n; i++) {
		t->fd[t->nfds++] = vhu_fds_take(&m->fds, i);
	}
	if (r->hook) {
		return r->hook(r, conn, t);
	}
	return 0;
}

static inline void
th_on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct th_rec *r = ctx;

	if (r->conn != NULL && r->conn != conn) {
		r->wrong_conn++;
	}
	if (r->closes > 0) {
		r->late++;
	}
	r->closes++;
	r->reason = reason;
	r->conn = NULL;
}

static const struct vhu_conn_ops th_ops = {
	.on_message = th_on_message,
	.on_close = th_on_close,
};

/* on_close fired exactly once, with this reason, and nothing came after it. */
static inline void
th_assert_closed(const struct th_rec *r, int reason, const char *what)
{
	cr_assert_eq(r->closes, 1, "%s: on_close fired %u times, want exactly 1", what, r->closes);
	cr_assert_eq(r->reason, reason, "%s: on_close reason %d (%s), want %d (%s)", what,
		     r->reason, vhu_errname(r->reason), reason, vhu_errname(reason));
	cr_assert_eq(r->late, 0, "%s: %u callbacks after on_close", what, r->late);
	cr_assert_eq(r->wrong_conn, 0, "%s: callbacks with a foreign conn pointer", what);
}

static inline void
th_assert_open(const struct th_rec *r, const char *what)
{
	cr_assert_eq(r->closes, 0, "%s: closed unexpectedly with %d (%s)", what, r->reason,
		     vhu_errname(r->reason));
	cr_assert_eq(r->wrong_conn, 0, "%s: callbacks with a foreign conn pointer", what);
}

/* ------------------------------------------------------------------ */
/* Ring and connections                                                */

static inline struct vhu_ring *
th_ring(unsigned int max_conns)
{
	struct vhu_ring_opts o = { .max_conns = max_conns };
	struct vhu_ring *ring = NULL;
	int rc = vhu_ring_create(&o, &ring);

	cr_assert_eq(rc, 0, "vhu_ring_create: %s (%s)", vhu_strerror(rc),
		     vhu_ring_error_hint(rc));
	cr_assert_not_null(ring);
	return ring;
}

/* A ring with small stream buffers (8 x 4352 bytes): easy to exhaust. */
static inline struct vhu_ring *
th_ring_small_bufs(void)
{
	struct vhu_ring_opts o = { .stream_bufs = 8, .stream_buf_size = 4352 };
	struct vhu_ring *ring = NULL;
	int rc = vhu_ring_create(&o, &ring);

	cr_assert_eq(rc, 0, "vhu_ring_create: %s", vhu_strerror(rc));
	return ring;
}

/* Receive options of a back-end on the main socket: requests in. */
static inline struct vhu_conn_opts
th_opts(uint8_t mode)
{
	struct vhu_conn_opts o = {
		.recv_mode = mode,
		.rules = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST },
	};

	return o;
}

/*
 * Attach one end of a fresh socketpair to the ring with rec as ctx; return
 * the other end (the peer), owned by the caller.
 */
static inline int
th_attach(struct vhu_ring *ring, const struct vhu_conn_opts *o, struct th_rec *rec)
{
	int sv[2];
	int rc;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0,
		     "socketpair: %s", strerror(errno));
	rc = vhu_conn_attach(ring, sv[0], o, &th_ops, rec, &rec->conn);
	cr_assert_eq(rc, 0, "vhu_conn_attach: %s", vhu_strerror(rc));
	cr_assert_not_null(rec->conn);
	cr_assert_eq(vhu_conn_ctx(rec->conn), rec);
	cr_assert_eq(vhu_conn_ring(rec->conn), ring);
	return sv[1];
}

/* ------------------------------------------------------------------ */
/* Driving the ring                                                    */

typedef bool (*th_done_fn)(void *arg);

static inline long
th_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * Drive the ring until done(arg). Fails the test if no completion arrives
 * for TH_HANG_MS (a hang, not a slow run: nothing is timed otherwise).
 */
static inline void
th_run_until(struct vhu_ring *ring, th_done_fn done, void *arg, const char *what)
{
	struct timespec last;
	unsigned long iters = 0;

	clock_gettime(CLOCK_MONOTONIC, &last);
	while (!done(arg)) {
		int r = vhu_ring_wait(ring, TH_HANG_MS);

		cr_assert_geq(r, 0, "vhu_ring_wait while waiting for %s: %d (%s)", what, r,
			      vhu_strerror(r));
		if (r > 0) {
			clock_gettime(CLOCK_MONOTONIC, &last);
		} else if (th_ms_since(&last) >= TH_HANG_MS) {
			cr_assert_fail("the ring made no progress for %d ms while waiting for %s",
				       TH_HANG_MS, what);
		}
		cr_assert_lt(++iters, TH_MAX_ITERS, "ring loop spun while waiting for %s", what);
	}
}

/* Reap whatever is ready without blocking. */
static inline void
th_flush(struct vhu_ring *ring)
{
	int r;
	unsigned long iters = 0;

	while ((r = vhu_ring_poll(ring)) > 0) {
		cr_assert_lt(++iters, TH_MAX_ITERS, "vhu_ring_poll never went idle");
	}
	cr_assert_geq(r, 0, "vhu_ring_poll: %d (%s)", r, vhu_strerror(r));
}

struct th_want {
	struct th_rec *rec;
	size_t n;
	struct vhu_conn *conn;
	int fd;
};

static inline bool
th_done_msgs(void *arg)
{
	struct th_want *w = arg;

	return w->rec->n >= w->n || w->rec->closes > 0;
}

static inline bool
th_done_closed(void *arg)
{
	struct th_want *w = arg;

	return w->rec->closes > 0;
}

static inline bool
th_done_sent(void *arg)
{
	struct th_want *w = arg;

	return w->rec->closes > 0 || vhu_conn_sendq_len(w->conn) == 0;
}

static inline int
th_inq(int fd)
{
	int n = 0;

	cr_assert_eq(ioctl(fd, SIOCINQ, &n), 0, "SIOCINQ: %s", strerror(errno));
	return n;
}

static inline bool
th_done_drained(void *arg)
{
	struct th_want *w = arg;

	return w->rec->closes > 0 || th_inq(w->fd) == 0;
}

/* Drive until rec has n messages; fails if the connection closed first. */
static inline void
th_wait_msgs(struct vhu_ring *ring, struct th_rec *rec, size_t n)
{
	struct th_want w = { .rec = rec, .n = n };
	char what[64];

	snprintf(what, sizeof(what), "%zu messages", n);
	th_run_until(ring, th_done_msgs, &w, what);
	cr_assert_eq(rec->closes, 0, "closed with %d (%s) after %zu of %zu messages",
		     rec->reason, vhu_errname(rec->reason), rec->n, n);
	th_flush(ring);
	cr_assert_eq(rec->n, n, "%zu messages delivered, want %zu", rec->n, n);
}

static inline void
th_wait_closed(struct vhu_ring *ring, struct th_rec *rec)
{
	struct th_want w = { .rec = rec };

	th_run_until(ring, th_done_closed, &w, "on_close");
	th_flush(ring);
}

/* Drive until the connection's send queue is empty (all bytes handed to the kernel). */
static inline void
th_wait_sent(struct vhu_ring *ring, struct th_rec *rec)
{
	struct th_want w = { .rec = rec, .conn = rec->conn };

	th_run_until(ring, th_done_sent, &w, "the send queue to drain");
	th_assert_open(rec, "sender");
	th_flush(ring);
}

/*
 * Drive until the engine has read every byte waiting on its socket, so the
 * next write from the peer lands in a later read.
 */
static inline void
th_drain(struct vhu_ring *ring, struct th_rec *rec)
{
	struct th_want w = { .rec = rec, .fd = vhu_conn_fd(rec->conn) };

	th_run_until(ring, th_done_drained, &w, "the engine to read its socket");
	th_flush(ring);
}

/* ------------------------------------------------------------------ */
/* Building messages                                                   */

/* Append a header with explicit flags and size, then len body bytes. */
static inline size_t
th_put_raw(uint8_t *buf, size_t off, uint32_t req, uint32_t flags, uint32_t size,
	   const void *body, size_t len)
{
	struct vhu_hdr h = { req, flags, size };

	memcpy(buf + off, &h, sizeof(h));
	if (len) {
		memcpy(buf + off + sizeof(h), body, len);
	}
	return off + sizeof(h) + len;
}

/* Append a well-formed request (flags = version 1). */
static inline size_t
th_put(uint8_t *buf, size_t off, uint32_t req, const void *body, uint32_t len)
{
	return th_put_raw(buf, off, req, VHU_VERSION, len, body, len);
}

static inline size_t
th_put_u64(uint8_t *buf, size_t off, uint32_t req, uint64_t v)
{
	return th_put(buf, off, req, &v, sizeof(v));
}

static inline struct vhu_vring_addr
th_vring_addr(uint32_t index, uint64_t desc)
{
	struct vhu_vring_addr a = {
		.index = index,
		.desc = desc,
		.used = 0x200000,
		.avail = 0x300000,
	};

	return a;
}

/* A valid memory table of n regions; returns its size field. */
static inline uint32_t
th_mem_table(struct vhu_mem_table *mt, unsigned int n)
{
	memset(mt, 0, sizeof(*mt));
	mt->nregions = n;
	for (unsigned int i = 0; i < n; i++) {
		mt->regions[i].guest_phys_addr = (uint64_t)i * 0x100000;
		mt->regions[i].size = 0x1000;
		mt->regions[i].user_addr = 0x7f0000000000ull + (uint64_t)i * 0x100000;
	}
	return VHU_MEM_TABLE_SIZE(n);
}

/* Deterministic filler, different per seed. */
static inline void
th_pattern(uint8_t *p, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++) {
		p[i] = (uint8_t)(i * 31u + seed * 7u + (i >> 8));
	}
}

/* ------------------------------------------------------------------ */
/* Peer side                                                           */

/*
 * One sendmsg of buf with fds (no assertions: a forked writer uses it).
 * \return what sendmsg returned; -1 with errno set on failure.
 */
static inline ssize_t
th_sendmsg(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 2 * VHU_MAX_FDS)];
	} cb;

	if (nfds > 2 * VHU_MAX_FDS) {
		errno = EINVAL;
		return -1;
	}
	if (nfds) {
		struct cmsghdr *c;

		memset(&cb, 0, sizeof(cb));
		mh.msg_control = cb.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL);
}

/* One sendmsg of buf with fds; the whole buffer must go. */
static inline void
th_send(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds)
{
	ssize_t n = th_sendmsg(fd, buf, len, fds, nfds);

	cr_assert_eq(n, (ssize_t)len, "peer sendmsg of %zu bytes with %u fds: %zd (%s)", len,
		     nfds, n, n < 0 ? strerror(errno) : "short");
}

/* Read exactly len bytes; fails after TH_HANG_MS without data, or on EOF. */
static inline void
th_read_exact(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		cr_assert_eq(poll(&p, 1, TH_HANG_MS), 1, "peer: no data after %zu of %zu bytes",
			     got, len);
		n = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
		cr_assert_gt(n, 0, "peer recv after %zu of %zu bytes: %zd (%s)", got, len, n,
			     n < 0 ? strerror(errno) : "EOF");
		got += (size_t)n;
	}
}

/* Nothing more is waiting on the peer's socket (and it is not at EOF). */
static inline void
th_assert_no_more(int fd)
{
	cr_assert_eq(th_inq(fd), 0, "peer: %d unexpected bytes waiting", th_inq(fd));
}

/*
 * Read the peer's socket until EOF, closing any fds that arrive.
 * \return bytes read.
 */
static inline size_t
th_read_to_eof(int fd, unsigned int *nfds_out)
{
	uint8_t buf[4096];
	size_t total = 0;
	unsigned int nfds = 0;

	for (;;) {
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		union vhu_cmsg_buf cb;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		mh.msg_control = cb.buf;
		mh.msg_controllen = sizeof(cb.buf);
		cr_assert_eq(poll(&p, 1, TH_HANG_MS), 1, "peer: no EOF after %zu bytes", total);
		n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		cr_assert_geq(n, 0, "peer recvmsg: %s", strerror(errno));
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
				unsigned int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				int f[VHU_MAX_FDS];

				cr_assert_leq(k, VHU_MAX_FDS);
				memcpy(f, CMSG_DATA(c), k * sizeof(int));
				for (unsigned int i = 0; i < k; i++) {
					close(f[i]);
				}
				nfds += k;
			}
		}
		if (n == 0) {
			break;
		}
		total += (size_t)n;
	}
	if (nfds_out) {
		*nfds_out = nfds;
	}
	return total;
}

/* The peer sees EOF (or a reset) right away: the engine closed its socket. */
static inline void
th_assert_peer_eof(int fd)
{
	char c;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	cr_assert_eq(poll(&p, 1, TH_HANG_MS), 1, "peer: the engine's socket was not closed");
	n = recv(fd, &c, 1, MSG_DONTWAIT);
	/* Closing a socket with unread bytes resets the peer instead of EOF. */
	cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "peer: expected EOF, got %zd (%s)",
		  n, n < 0 ? strerror(errno) : "data");
}

/* Compare bytes, naming the first difference. */
static inline void
th_assert_bytes(const void *got, const void *want, size_t len, const char *what)
{
	const uint8_t *g = got, *w = want;

	for (size_t i = 0; i < len; i++) {
		if (g[i] != w[i]) {
			cr_assert_fail("%s: byte %zu of %zu is 0x%02x, want 0x%02x", what, i, len,
				       g[i], w[i]);
		}
	}
}

/* Recorded message i has this header and body (and nfds fds). */
static inline void
th_assert_msg(const struct th_rec *r, size_t i, uint32_t req, const void *body, uint32_t len,
	      unsigned int nfds)
{
	char what[64];

	cr_assert_lt(i, r->n, "message %zu was not delivered (%zu were)", i, r->n);
	snprintf(what, sizeof(what), "message %zu", i);
	cr_assert_eq(r->msg[i].hdr.request, req, "%s: request %u, want %u", what,
		     r->msg[i].hdr.request, req);
	cr_assert_eq(r->msg[i].hdr.flags, VHU_VERSION, "%s: flags 0x%x", what,
		     r->msg[i].hdr.flags);
	cr_assert_eq(r->msg[i].hdr.size, len, "%s: size %u, want %u", what, r->msg[i].hdr.size,
		     len);
	th_assert_bytes(r->msg[i].body, body, len, what);
	cr_assert_eq(r->msg[i].nfds, nfds, "%s: %u fds, want %u", what, r->msg[i].nfds, nfds);
}

static inline uint64_t
th_msg_u64(const struct th_rec *r, size_t i)
{
	uint64_t v;

	cr_assert_geq(r->msg[i].hdr.size, sizeof(v));
	memcpy(&v, r->msg[i].body, sizeof(v));
	return v;
}

static inline int
th_dup(int fd)
{
	int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	cr_assert_geq(d, 0, "dup: %s", strerror(errno));
	return d;
}

static inline bool
th_fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static inline void
th_close_all(int *fds, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
	}
}

/* No fd opened during a case is left open, and none of ours was closed. */
static inline void
th_fd_check(int mark, const char *what)
{
	int now = t_fd_count();

	cr_assert_eq(now, mark, "%s: %d fds open before, %d after (%s)", what, mark, now,
		     now > mark ? "leaked" : "closed twice or closed someone else's");
}

/* ------------------------------------------------------------------ */
/* Shared cases: each takes the receive mode; both test files run them  */

/* Destroy the ring, then check rec saw on_close(0) exactly once and free it. */
static inline void
th_finish(struct vhu_ring *ring, struct th_rec *rec, int peer)
{
	vhu_ring_destroy(ring);
	th_assert_closed(rec, 0, "vhu_ring_destroy");
	if (peer >= 0) {
		close(peer);
	}
	th_rec_fini(rec);
}

/*
 * A 52-byte SET_VRING_ADDR cut at every byte position and at every pair of
 * positions, the engine reading each piece before the next is written:
 * exactly one message per whole one, never early, bytes intact.
 */
static inline void
th_case_split(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec;
	uint8_t m[VHU_HDR_SIZE + sizeof(struct vhu_vring_addr)];
	const size_t len = sizeof(m);
	unsigned int seq = 0;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (size_t a = 1; a < len; a++) {
		for (size_t b = a; b < len; b++) {
			struct vhu_vring_addr va = th_vring_addr(seq % 4, 0x10000 + 16ull * seq);
			size_t before = rec.n;

			th_put(m, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
			th_send(peer, m, a, NULL, 0);
			th_drain(ring, &rec);
			if (b > a) {
				th_send(peer, m + a, b - a, NULL, 0);
				th_drain(ring, &rec);
			}
			th_assert_open(&rec, "split message");
			cr_assert_eq(rec.n, before,
				     "cut at %zu and %zu: delivered before its last byte", a, b);
			th_send(peer, m + b, len - b, NULL, 0);
			th_wait_msgs(ring, &rec, before + 1);
			th_assert_msg(&rec, before, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va), 0);
			seq++;
		}
	}
	cr_assert_eq(seq, (len - 1) * len / 2);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

/*
 * Several messages in one write come out in order; two whole messages plus
 * the start of a third deliver exactly two until the rest arrives.
 */
static inline void
th_case_batch(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec;
	uint8_t buf[1024];
	size_t off = 0;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (int i = 0; i < 10; i++) {
		off = th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	for (uint64_t i = 0; i < 5; i++) {
		off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, 0x1000 + i);
	}
	th_send(peer, buf, off, NULL, 0);
	th_wait_msgs(ring, &rec, 15);
	for (size_t i = 0; i < 10; i++) {
		th_assert_msg(&rec, i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
	}
	for (uint64_t i = 0; i < 5; i++) {
		uint64_t v = 0x1000 + i;

		th_assert_msg(&rec, 10 + i, VHU_REQ_SET_FEATURES, &v, sizeof(v), 0);
	}

	off = 0;
	for (uint64_t i = 0; i < 3; i++) {
		off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, 0x2000 + i);
	}
	th_send(peer, buf, off - 7, NULL, 0);
	th_drain(ring, &rec);
	th_flush(ring);
	th_assert_open(&rec, "batch with a partial tail");
	cr_assert_eq(rec.n, 17, "%zu messages after 2.5 were written, want 17", rec.n);
	th_send(peer, buf + off - 7, 7, NULL, 0);
	th_wait_msgs(ring, &rec, 18);
	for (uint64_t i = 0; i < 3; i++) {
		uint64_t v = 0x2000 + i;

		th_assert_msg(&rec, 15 + i, VHU_REQ_SET_FEATURES, &v, sizeof(v), 0);
	}
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

/*
 * fd-carrying messages preceded by fd-less ones, every message written by
 * its own sendmsg (or a few fd-less ones together), all before the ring
 * runs: each fd lands on its own message and is the same file.
 */
static inline void
th_case_fds_follow(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_mem_table mt;
	struct th_rec rec;
	uint8_t buf[512];
	size_t off;
	uint32_t mtsize = th_mem_table(&mt, 3);
	int efd[2] = { t_eventfd(), t_eventfd() };
	int mfd[3] = { t_memfd("region 0"), t_memfd("region 1"), t_memfd("region 2") };
	uint64_t call = 1, err = 2, kick = 3 | VHU_VRING_NOFD;
	uint64_t f10 = 10, f11 = 11, f12 = 12;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);

	off = 0;
	for (int i = 0; i < 3; i++) {
		off = th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	th_send(peer, buf, off, NULL, 0);
	off = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, call);
	th_send(peer, buf, off, &efd[0], 1);
	off = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, f10);
	off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, f11);
	th_send(peer, buf, off, NULL, 0);
	off = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mtsize);
	th_send(peer, buf, off, mfd, 3);
	off = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
	th_send(peer, buf, off, NULL, 0);
	off = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, f12);
	th_send(peer, buf, off, NULL, 0);
	off = th_put_u64(buf, 0, VHU_REQ_SET_VRING_ERR, err);
	th_send(peer, buf, off, &efd[1], 1);
	off = th_put_u64(buf, 0, VHU_REQ_SET_VRING_KICK, kick);
	th_send(peer, buf, off, NULL, 0);

	th_wait_msgs(ring, &rec, 11);
	for (size_t i = 0; i < 3; i++) {
		th_assert_msg(&rec, i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
	}
	th_assert_msg(&rec, 3, VHU_REQ_SET_VRING_CALL, &call, 8, 1);
	cr_assert(t_same_file(efd[0], rec.msg[3].fd[0]), "SET_VRING_CALL got another file");
	th_assert_msg(&rec, 4, VHU_REQ_SET_FEATURES, &f10, 8, 0);
	th_assert_msg(&rec, 5, VHU_REQ_SET_FEATURES, &f11, 8, 0);
	th_assert_msg(&rec, 6, VHU_REQ_SET_MEM_TABLE, &mt, mtsize, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert(t_same_file(mfd[i], rec.msg[6].fd[i]), "memory region %d: wrong file", i);
	}
	th_assert_msg(&rec, 7, VHU_REQ_GET_FEATURES, NULL, 0, 0);
	th_assert_msg(&rec, 8, VHU_REQ_SET_FEATURES, &f12, 8, 0);
	th_assert_msg(&rec, 9, VHU_REQ_SET_VRING_ERR, &err, 8, 1);
	cr_assert(t_same_file(efd[1], rec.msg[9].fd[0]), "SET_VRING_ERR got another file");
	th_assert_msg(&rec, 10, VHU_REQ_SET_VRING_KICK, &kick, 8, 0);

	th_close_all(efd, 2);
	th_close_all(mfd, 3);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

/*
 * Bodies at the size limit: a 4096-byte VAR body under the default limit,
 * the most fds a message may carry (32 memory regions), and with the limit
 * raised to 16384, two 16384-byte bodies back to back (far larger than any
 * sensible provided buffer, so stream mode must reassemble across them).
 */
static inline void
th_case_max_size(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_conn_opts big = th_opts(mode);
	struct vhu_mem_table mt;
	struct th_rec a, b;
	const size_t blen = 16384;
	uint8_t *buf = malloc(2 * (VHU_HDR_SIZE + blen));
	uint8_t *body = malloc(blen);
	uint8_t *body2 = malloc(blen);
	int mfd[VHU_MAX_FDS];
	uint32_t mtsize = th_mem_table(&mt, VHU_MAX_MEM_REGIONS);
	size_t off;
	int pa, pb;

	cr_assert(buf && body && body2);
	th_rec_init(&a);
	th_rec_init(&b);
	pa = th_attach(ring, &o, &a);
	big.rules.max_size = (uint32_t)blen;
	pb = th_attach(ring, &big, &b);

	th_pattern(body, VHU_DEFAULT_MAX_SIZE, 1);
	off = th_put(buf, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, VHU_DEFAULT_MAX_SIZE);
	th_send(pa, buf, off, NULL, 0);
	th_wait_msgs(ring, &a, 1);
	th_assert_msg(&a, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, VHU_DEFAULT_MAX_SIZE, 0);

	for (unsigned int i = 0; i < VHU_MAX_FDS; i++) {
		char name[16];

		snprintf(name, sizeof(name), "region %u", i);
		mfd[i] = t_memfd(name);
	}
	off = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mtsize);
	th_send(pa, buf, off, mfd, VHU_MAX_FDS);
	th_wait_msgs(ring, &a, 2);
	th_assert_msg(&a, 1, VHU_REQ_SET_MEM_TABLE, &mt, mtsize, VHU_MAX_FDS);
	for (unsigned int i = 0; i < VHU_MAX_FDS; i++) {
		cr_assert(t_same_file(mfd[i], a.msg[1].fd[i]), "memory region %u: wrong file", i);
	}
	th_close_all(mfd, VHU_MAX_FDS);

	th_pattern(body, blen, 2);
	th_pattern(body2, blen, 3);
	off = th_put(buf, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, (uint32_t)blen);
	off = th_put(buf, off, VHU_REQ_CREATE_CRYPTO_SESSION, body2, (uint32_t)blen);
	th_send(pb, buf, off, NULL, 0);
	th_wait_msgs(ring, &b, 2);
	th_assert_msg(&b, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, (uint32_t)blen, 0);
	th_assert_msg(&b, 1, VHU_REQ_CREATE_CRYPTO_SESSION, body2, (uint32_t)blen, 0);

	vhu_ring_destroy(ring);
	th_assert_closed(&a, 0, "destroy");
	th_assert_closed(&b, 0, "destroy");
	close(pa);
	close(pb);
	th_rec_fini(&a);
	th_rec_fini(&b);
	free(buf);
	free(body);
	free(body2);
	th_fd_check(fd_mark, __func__);
}

/* One hostile input for th_case_validation. */
struct th_bad {
	const char *name;
	size_t len;		/* bytes written (one sendmsg) */
	unsigned int nfds;	/* eventfds attached to that sendmsg */
	bool shut;		/* the peer closes after writing */
	int reason;		/* on_close must see exactly this */
	int alt_reason;		/* ... or this, when the contract allows two (else 0) */
	size_t msgs;		/* whole valid messages delivered before the close */
};

/* Build bad input number i into buf; false past the last one. */
static inline bool
th_bad_build(unsigned int i, uint8_t *buf, struct th_bad *c)
{
	struct vhu_vring_addr va = th_vring_addr(0, 0x10008);	/* desc not 16-aligned */
	struct vhu_mem_table mt;
	uint32_t mts;
	uint8_t body[VHU_DEFAULT_MAX_SIZE + 1];

	memset(c, 0, sizeof(*c));
	memset(body, 0xab, sizeof(body));
	switch (i) {
	case 0:
		c->name = "size field one above the limit";
		c->len = th_put(buf, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, sizeof(body));
		c->reason = -VHU_EOVERSIZED;
		break;
	case 1:
		c->name = "size field 0xffffffff, header alone";
		c->len = th_put_raw(buf, 0, VHU_REQ_CREATE_CRYPTO_SESSION, VHU_VERSION,
				    0xffffffffu, NULL, 0);
		c->reason = -VHU_EOVERSIZED;
		break;
	case 2:
		c->name = "version 0";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, 0, 0, NULL, 0);
		c->reason = -VHU_EVERSION;
		break;
	case 3:
		c->name = "version 2";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, 2, 0, NULL, 0);
		c->reason = -VHU_EVERSION;
		break;
	case 4:
		c->name = "reserved flag bit";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, VHU_VERSION | 0x10, 0, NULL, 0);
		c->reason = -VHU_EFLAGS;
		break;
	case 5:
		c->name = "REPLY flag on a request";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, VHU_VERSION | VHU_FLAG_REPLY, 0,
				    NULL, 0);
		c->reason = -VHU_EFLAGS;
		break;
	case 6:
		c->name = "request code 0";
		c->len = th_put(buf, 0, VHU_REQ_NONE, NULL, 0);
		c->reason = -VHU_EREQUEST;
		break;
	case 7:
		c->name = "request code past the last";
		c->len = th_put(buf, 0, VHU_REQ_MAX + 1, NULL, 0);
		c->reason = -VHU_EREQUEST;
		break;
	case 8:
		c->name = "request code 0x80000001";
		c->len = th_put(buf, 0, 0x80000001u, NULL, 0);
		c->reason = -VHU_EREQUEST;
		break;
	case 9:
		c->name = "SET_FEATURES with a 4-byte body";
		c->len = th_put(buf, 0, VHU_REQ_SET_FEATURES, body, 4);
		c->reason = -VHU_EBODYSIZE;
		break;
	case 10:
		c->name = "GET_FEATURES with a body";
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, body, 8);
		c->reason = -VHU_EBODYSIZE;
		break;
	case 11:
		c->name = "misaligned vring descriptor table";
		c->len = th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
		c->reason = -VHU_EBODY;
		break;
	case 12:
		c->name = "memory table padding set, with its fd";
		mts = th_mem_table(&mt, 1);
		mt.padding = 1;
		c->len = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mts);
		c->nfds = 1;
		c->reason = -VHU_EBODY;
		break;
	case 13:
		c->name = "SET_VRING_CALL without NOFD and without fd";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, 0);
		c->reason = -VHU_EFDS;
		break;
	case 14:
		c->name = "GET_FEATURES with an fd";
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
		c->nfds = 1;
		c->reason = -VHU_EFDS;
		break;
	case 15:
		c->name = "memory table of 2 regions with 1 fd";
		mts = th_mem_table(&mt, 2);
		c->len = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mts);
		c->nfds = 1;
		c->reason = -VHU_EFDS;
		break;
	case 16:
		c->name = "memory table of 2 regions with 3 fds";
		mts = th_mem_table(&mt, 2);
		c->len = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mts);
		c->nfds = 3;
		c->reason = -VHU_EFDS;
		break;
	case 17:
		c->name = "SET_VRING_CALL with NOFD and an fd";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, VHU_VRING_NOFD);
		c->nfds = 1;
		c->reason = -VHU_EFDS;
		break;
	case 18:
		c->name = "SET_VRING_CALL with reserved bits, with its fd";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, 0x200);
		c->nfds = 1;
		c->reason = -VHU_EBODY;
		break;
	case 19:
		c->name = "33 fds (one more than a message may carry)";
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
		c->nfds = VHU_MAX_FDS + 1;
		c->reason = -VHU_ECTRUNC;
		c->alt_reason = -VHU_EFDS;
		break;
	case 20:
		c->name = "body cut short, then close";
		va = th_vring_addr(0, 0x10000);
		c->len = th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va)) - 30;
		c->shut = true;
		c->reason = -VHU_EPARTIAL;
		break;
	case 21:
		c->name = "header cut short, then close";
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0) - 7;
		c->shut = true;
		c->reason = -VHU_EPARTIAL;
		break;
	case 22:
		c->name = "fd message cut short, then close";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, 0) - 5;
		c->nfds = 1;
		c->shut = true;
		c->reason = -VHU_EPARTIAL;
		break;
	case 23:
		c->name = "close before any byte";
		c->shut = true;
		c->reason = -VHU_EDISCONNECT;
		break;
	case 24:
		c->name = "close after a whole message";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, 7);
		c->shut = true;
		c->reason = -VHU_EDISCONNECT;
		c->msgs = 1;
		break;
	case 25:
		c->name = "a valid message, then version 2 in the same write";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, 7);
		c->len = th_put_raw(buf, c->len, VHU_REQ_GET_FEATURES, 2, 0, NULL, 0);
		c->reason = -VHU_EVERSION;
		c->msgs = 1;
		break;
	default:
		return false;
	}
	return true;
}

/*
 * Each hostile input closes only its own connection: on_close once with
 * the reason that names the fault, every fd sent on it closed, and a second
 * connection on the same ring keeps delivering in order.
 */
static inline void
th_case_validation(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec good;
	uint8_t *buf = malloc(2 * VHU_DEFAULT_MAX_SIZE);
	uint64_t seq = 0;
	struct th_bad c;
	int pgood;

	cr_assert_not_null(buf);
	th_rec_init(&good);
	pgood = th_attach(ring, &o, &good);
	for (unsigned int i = 0; th_bad_build(i, buf, &c); i++) {
		struct th_rec bad;
		int fds[VHU_MAX_FDS + 1];
		int before = t_fd_count();
		size_t off;
		int peer;

		th_rec_init(&bad);
		peer = th_attach(ring, &o, &bad);
		cr_assert_eq(vhu_ring_conn_count(ring), 2);
		for (unsigned int k = 0; k < c.nfds; k++) {
			fds[k] = t_eventfd();
		}
		if (c.len) {
			th_send(peer, buf, c.len, fds, c.nfds);
		}
		th_close_all(fds, c.nfds);
		if (c.shut) {
			close(peer);
			peer = -1;
		}
		th_wait_closed(ring, &bad);
		if (c.alt_reason && bad.reason == c.alt_reason) {
			c.reason = c.alt_reason;
		}
		th_assert_closed(&bad, c.reason, c.name);
		cr_assert_eq(bad.n, c.msgs, "%s: %zu messages delivered, want %zu", c.name, bad.n,
			     c.msgs);
		cr_assert_eq(vhu_ring_conn_count(ring), 1, "%s: conn count", c.name);
		if (peer >= 0) {
			th_assert_peer_eof(peer);
			close(peer);
		}
		th_rec_fini(&bad);
		cr_assert_eq(t_fd_count(), before, "%s: %d fds open before, %d after the close",
			     c.name, before, t_fd_count());

		seq++;
		off = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, seq);
		th_send(pgood, buf, off, NULL, 0);
		th_wait_msgs(ring, &good, seq);
	}
	cr_assert_geq(seq, 26);
	for (uint64_t i = 0; i < seq; i++) {
		uint64_t v = i + 1;

		th_assert_msg(&good, i, VHU_REQ_SET_FEATURES, &v, 8, 0);
	}
	free(buf);
	th_finish(ring, &good, pgood);
	th_fd_check(fd_mark, __func__);
}

/*
 * fds that arrive after the first chunk of a message: with the body after a
 * header read alone (for a request that takes one fd, and one that takes
 * none), and with the rest of a split header (completing it or not). Both
 * modes must refuse them (-VHU_EINVALID) and close the fd.
 */
static inline void
th_case_fds_on_body(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	static const struct {
		uint32_t req;
		size_t cut, more;	/* first write, then more bytes with the fd */
	} v[] = {
		{ VHU_REQ_SET_VRING_CALL, VHU_HDR_SIZE, 8 },
		{ VHU_REQ_SET_VRING_ADDR, VHU_HDR_SIZE, 40 },
		{ VHU_REQ_SET_VRING_CALL, 5, 3 },
		{ VHU_REQ_SET_VRING_CALL, 5, 15 },
		{ VHU_REQ_GET_FEATURES, 5, 7 },
	};
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct vhu_vring_addr va = th_vring_addr(0, 0x10000);
		uint64_t word = 0;
		uint8_t buf[64];
		int before = t_fd_count();
		struct th_rec rec;
		char what[80];
		int efd, peer;

		snprintf(what, sizeof(what), "%s, fd with bytes %zu..%zu",
			 vhu_req_name(VHU_CHAN_FRONTEND, v[i].req), v[i].cut, v[i].cut + v[i].more);
		if (v[i].req == VHU_REQ_SET_VRING_ADDR) {
			th_put(buf, 0, v[i].req, &va, sizeof(va));
		} else if (v[i].req == VHU_REQ_SET_VRING_CALL) {
			th_put(buf, 0, v[i].req, &word, sizeof(word));
		} else {
			th_put(buf, 0, v[i].req, NULL, 0);
		}
		th_rec_init(&rec);
		peer = th_attach(ring, &o, &rec);
		th_send(peer, buf, v[i].cut, NULL, 0);
		th_drain(ring, &rec);
		th_assert_open(&rec, what);
		efd = t_eventfd();
		th_send(peer, buf + v[i].cut, v[i].more, &efd, 1);
		close(efd);
		th_wait_closed(ring, &rec);
		th_assert_closed(&rec, -VHU_EINVALID, what);
		cr_assert_eq(rec.n, 0, "%s: delivered", what);
		th_assert_peer_eof(peer);
		close(peer);
		th_rec_fini(&rec);
		cr_assert_eq(t_fd_count(), before, "%s: the fd was not closed", what);
	}
	vhu_ring_destroy(ring);
	th_fd_check(fd_mark, __func__);
}

/* Answer every request with a u64 (conn index * 1000 + message number). */
static inline int
th_hook_reply(struct th_rec *r, struct vhu_conn *conn, struct th_msg *m)
{
	struct vhu_hdr h = vhu_hdr_reply(m->hdr.request, 8);
	uint64_t v = (uint64_t)r->idx * 1000 + r->n;
	int rc = vhu_conn_send(conn, &h, &v, sizeof(v), NULL, 0, NULL, 0);

	r->hook_calls++;
	if (rc != 0 && r->hook_rc == 1) {
		r->hook_rc = rc;
	}
	return 0;
}

struct th_many {
	struct th_rec *rec;
	unsigned int n;
	size_t want;
	long skip;	/* this one must close instead */
};

static inline bool
th_done_many(void *arg)
{
	struct th_many *w = arg;

	for (unsigned int i = 0; i < w->n; i++) {
		struct th_rec *r = &w->rec[i];

		if ((long)i == w->skip) {
			if (r->closes == 0) {
				return false;
			}
			continue;
		}
		if (r->closes > 0) {
			return true;	/* unexpected: the caller's asserts report it */
		}
		if (r->n < w->want || vhu_conn_sendq_len(r->conn) != 0) {
			return false;
		}
	}
	return true;
}

#define TH_NCONN 256

/* Each peer reads its replies: k u64s numbered first..first+k-1. */
static inline void
th_many_read(int peer, long idx, unsigned int first, unsigned int k)
{
	uint8_t got[4 * 20], want[4 * 20];
	size_t off = 0;

	cr_assert_leq(k, 4);
	for (unsigned int j = 0; j < k; j++) {
		struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
		uint64_t v = (uint64_t)idx * 1000 + first + j;

		memcpy(want + off, &h, sizeof(h));
		memcpy(want + off + sizeof(h), &v, sizeof(v));
		off += 20;
	}
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "replies");
	th_assert_no_more(peer);
}

/*
 * 256 connections on one ring, each sending four requests in one write and
 * getting four replies sent from on_message; then one connection sends a
 * bad header and only it closes while the others go on.
 */
static inline void
th_case_many_conns(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec *rec = calloc(TH_NCONN, sizeof(*rec));
	int *peer = calloc(TH_NCONN, sizeof(*peer));
	struct th_many w = { .rec = rec, .n = TH_NCONN, .want = 4, .skip = -1 };
	const long bad = 17;
	uint8_t buf[64];
	size_t off;

	cr_assert(rec && peer);
	for (long i = 0; i < TH_NCONN; i++) {
		th_rec_init(&rec[i]);
		rec[i].idx = i;
		rec[i].hook = th_hook_reply;
		peer[i] = th_attach(ring, &o, &rec[i]);
	}
	cr_assert_eq(vhu_ring_conn_count(ring), TH_NCONN);
	off = 0;
	for (int j = 0; j < 4; j++) {
		off = th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	for (long i = 0; i < TH_NCONN; i++) {
		th_send(peer[i], buf, off, NULL, 0);
	}
	th_run_until(ring, th_done_many, &w, "4 replies on every connection");
	for (long i = 0; i < TH_NCONN; i++) {
		th_assert_open(&rec[i], "round 1");
		cr_assert_eq(rec[i].n, 4, "conn %ld: %zu requests", i, rec[i].n);
		cr_assert_eq(rec[i].hook_rc, 1, "conn %ld: vhu_conn_send: %s", i,
			     vhu_errname(rec[i].hook_rc));
		th_many_read(peer[i], i, 1, 4);
	}

	for (long i = 0; i < TH_NCONN; i++) {
		if (i == bad) {
			off = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, 2, 0, NULL, 0);
		} else {
			off = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
		}
		th_send(peer[i], buf, off, NULL, 0);
	}
	w.want = 5;
	w.skip = bad;
	th_run_until(ring, th_done_many, &w, "round 2");
	th_assert_closed(&rec[bad], -VHU_EVERSION, "the bad connection");
	cr_assert_eq(rec[bad].n, 4);
	cr_assert_eq(vhu_ring_conn_count(ring), TH_NCONN - 1);
	for (long i = 0; i < TH_NCONN; i++) {
		if (i != bad) {
			th_assert_open(&rec[i], "round 2");
			cr_assert_eq(rec[i].n, 5, "conn %ld: %zu requests", i, rec[i].n);
			th_many_read(peer[i], i, 5, 1);
		}
	}

	vhu_ring_destroy(ring);
	for (long i = 0; i < TH_NCONN; i++) {
		if (i != bad) {
			th_assert_closed(&rec[i], 0, "destroy");
		}
		cr_assert_eq(rec[i].closes, 1);
		close(peer[i]);
		th_rec_fini(&rec[i]);
	}
	free(rec);
	free(peer);
	th_fd_check(fd_mark, __func__);
}

/* ------------------------------------------------------------------ */
/* Close semantics                                                     */

enum th_close_how {
	TH_CLOSE_PLAIN,		/* vhu_conn_close() */
	TH_CLOSE_REASON,	/* vhu_conn_close_reason(-EPROTO) */
	TH_CLOSE_RETURN,	/* on_message returns -EBADMSG */
};

static inline int
th_hook_close(struct th_rec *r, struct vhu_conn *conn, struct th_msg *m)
{
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 0);

	r->hook_calls++;
	switch ((enum th_close_how)r->idx) {
	case TH_CLOSE_PLAIN:
		vhu_conn_close(conn);
		break;
	case TH_CLOSE_REASON:
		vhu_conn_close_reason(conn, -EPROTO);
		break;
	case TH_CLOSE_RETURN:
		return -EBADMSG;
	}
	if (r->closes == 0) {
		/* Still closing: the handle stays valid until on_close, and refuses sends. */
		r->hook_rc = vhu_conn_send(conn, &h, NULL, 0, NULL, 0, NULL, 0);
		vhu_conn_close(conn);
	}
	return 0;
}

/*
 * Closing from inside on_message (three ways): no further message of that
 * connection is delivered although more were already read, on_close fires
 * once with the right reason, the peer sees the socket closed.
 */
static inline void
th_case_close_in_handler(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	static const int want[] = { 0, -EPROTO, -EBADMSG };

	for (int how = TH_CLOSE_PLAIN; how <= TH_CLOSE_RETURN; how++) {
		struct vhu_ring *ring = th_ring(0);
		struct vhu_conn_opts o = th_opts(mode);
		struct th_rec rec, other;
		uint8_t buf[128];
		size_t off = 0;
		int peer, pother;

		th_rec_init(&rec);
		th_rec_init(&other);
		rec.idx = how;
		rec.hook = th_hook_close;
		peer = th_attach(ring, &o, &rec);
		pother = th_attach(ring, &o, &other);
		for (uint64_t i = 0; i < 3; i++) {
			off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, i);
		}
		th_send(peer, buf, off, NULL, 0);
		th_send(pother, buf, off, NULL, 0);
		th_wait_closed(ring, &rec);
		th_wait_msgs(ring, &other, 3);
		th_assert_closed(&rec, want[how], "closed in on_message");
		cr_assert_eq(rec.n, 1, "%zu messages delivered; the first one closed it", rec.n);
		cr_assert_eq(rec.hook_calls, 1);
		if (how != TH_CLOSE_RETURN && rec.hook_rc != 1) {
			cr_assert_eq(rec.hook_rc, -ENOTCONN,
				     "vhu_conn_send on a closing connection: %d (%s)", rec.hook_rc,
				     vhu_errname(rec.hook_rc));
		}
		th_assert_peer_eof(peer);
		close(peer);
		th_rec_fini(&rec);
		th_finish(ring, &other, pother);
	}
	th_fd_check(fd_mark, __func__);
}

/* Queue messages with fds (dups of efd[]) interleaved with fd-less ones. */
static inline unsigned int
th_queue_with_fds(struct th_rec *rec, const int *efd, unsigned int n, size_t big)
{
	uint8_t *body = calloc(1, big ? big : 1);
	unsigned int queued = 0;

	cr_assert_not_null(body);
	for (unsigned int k = 0; k < n; k++) {
		struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, false);
		struct vhu_hdr g = vhu_hdr_request(VHU_REQ_CREATE_CRYPTO_SESSION,
						   (uint32_t)big, false);
		struct vhu_hdr f = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
		uint64_t word = k;
		int d = th_dup(efd[k]);
		int rc;

		if (big) {
			th_pattern(body, big, k);
			rc = vhu_conn_send(rec->conn, &g, body, big, NULL, 0, NULL, 0);
		} else {
			rc = vhu_conn_send(rec->conn, &f, NULL, 0, NULL, 0, NULL, 0);
		}
		cr_assert_eq(rc, 0, "vhu_conn_send: %s", vhu_errname(rc));
		rc = vhu_conn_send(rec->conn, &h, &word, 8, NULL, 0, &d, 1);
		cr_assert_eq(rc, 0, "vhu_conn_send with an fd: %s", vhu_errname(rc));
		queued += 2;
	}
	free(body);
	return queued;
}

static inline void
th_set_sndbuf(int fd, int bytes)
{
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)), 0,
		     "SO_SNDBUF: %s", strerror(errno));
}

/*
 * vhu_conn_close with sends queued and not yet submitted, and with a send
 * blocked in the kernel on a full socket: on_close(0) once, and every fd
 * handed to vhu_conn_send is closed (sent ones reach the peer, which closes
 * them; dropped ones are closed by the engine).
 */
static inline void
th_case_close_with_sends(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	for (int blocked = 0; blocked < 2; blocked++) {
		struct vhu_ring *ring = th_ring(0);
		struct vhu_conn_opts o = th_opts(mode);
		struct th_rec rec;
		int efd[6];
		unsigned int queued, got_fds = 0;
		int before, peer;

		o.sendq_bytes = 1u << 20;
		for (int k = 0; k < 6; k++) {
			efd[k] = t_eventfd();
		}
		before = t_fd_count();
		th_rec_init(&rec);
		peer = th_attach(ring, &o, &rec);
		if (blocked) {
			th_set_sndbuf(vhu_conn_fd(rec.conn), 4096);
		}
		queued = th_queue_with_fds(&rec, efd, 6, blocked ? 4096 : 0);
		cr_assert_eq(vhu_conn_sendq_len(rec.conn), queued);
		if (blocked) {
			th_flush(ring);
			cr_assert_gt(vhu_conn_sendq_len(rec.conn), 0,
				     "the socket took everything: nothing left blocked");
		}
		vhu_conn_close(rec.conn);
		th_wait_closed(ring, &rec);
		th_assert_closed(&rec, 0, blocked ? "close with a blocked send" :
						     "close with queued sends");
		th_read_to_eof(peer, &got_fds);
		cr_assert_leq(got_fds, 6);
		close(peer);
		th_rec_fini(&rec);
		cr_assert_eq(t_fd_count(), before, "fds of dropped messages were not closed");
		th_close_all(efd, 6);
		vhu_ring_destroy(ring);
	}
	th_fd_check(fd_mark, __func__);
}

/*
 * vhu_conn_close with a receive in flight: idle, after part of a header,
 * after a header and part of a body. on_close(0), not -VHU_EPARTIAL.
 */
static inline void
th_case_close_recv_in_flight(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	static const size_t cut[] = { 0, 5, 12, 20 };
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_vring_addr va = th_vring_addr(1, 0x40000);
	uint8_t buf[64];

	th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		struct th_rec rec;
		int peer;

		th_rec_init(&rec);
		peer = th_attach(ring, &o, &rec);
		if (cut[i]) {
			th_send(peer, buf, cut[i], NULL, 0);
		}
		th_drain(ring, &rec);
		th_assert_open(&rec, "before the close");
		vhu_conn_close(rec.conn);
		th_wait_closed(ring, &rec);
		th_assert_closed(&rec, 0, "close with a receive in flight");
		cr_assert_eq(rec.n, 0);
		cr_assert_eq(vhu_ring_conn_count(ring), 0);
		th_assert_peer_eof(peer);
		close(peer);
		th_rec_fini(&rec);
	}
	vhu_ring_destroy(ring);
	th_fd_check(fd_mark, __func__);
}

/*
 * The peer disconnects inside a message: in the header, after the header,
 * inside the body; with the partial bytes read before the EOF or together
 * with it. Always -VHU_EPARTIAL, once.
 */
static inline void
th_case_peer_gone_mid_message(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	static const size_t cut[] = { 1, 5, 11, 12, 13, 30, 51 };
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_vring_addr va = th_vring_addr(1, 0x40000);
	uint8_t buf[64];

	th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
	for (int drained = 0; drained < 2; drained++) {
		for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
			struct th_rec rec;
			int peer;

			th_rec_init(&rec);
			peer = th_attach(ring, &o, &rec);
			th_send(peer, buf, cut[i], NULL, 0);
			if (drained) {
				th_drain(ring, &rec);
				th_assert_open(&rec, "partial message");
			}
			close(peer);
			th_wait_closed(ring, &rec);
			th_assert_closed(&rec, -VHU_EPARTIAL, "peer gone inside a message");
			cr_assert_eq(rec.n, 0);
			th_rec_fini(&rec);
		}
	}
	cr_assert_eq(vhu_ring_conn_count(ring), 0);
	vhu_ring_destroy(ring);
	th_fd_check(fd_mark, __func__);
}

/*
 * vhu_ring_destroy with connections in every state (idle, partial message,
 * sends queued with fds): on_close(0) once each, and no fd left behind.
 */
static inline void
th_case_destroy_closes_all(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	int before = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec[3];
	int peer[3], efd[2] = { t_eventfd(), t_eventfd() };
	uint8_t buf[64];

	for (int i = 0; i < 3; i++) {
		th_rec_init(&rec[i]);
		peer[i] = th_attach(ring, &o, &rec[i]);
	}
	th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
	th_send(peer[1], buf, 5, NULL, 0);
	th_drain(ring, &rec[1]);
	th_queue_with_fds(&rec[2], efd, 2, 0);
	cr_assert_eq(vhu_ring_conn_count(ring), 3);
	vhu_ring_destroy(ring);
	for (int i = 0; i < 3; i++) {
		th_assert_closed(&rec[i], 0, "destroy");
		cr_assert_eq(rec[i].n, 0);
		th_read_to_eof(peer[i], NULL);
		close(peer[i]);
		th_rec_fini(&rec[i]);
	}
	th_close_all(efd, 2);
	cr_assert_eq(t_fd_count(), before);
	th_fd_check(fd_mark, __func__);
}

/*
 * A message stalled past msg_timeout_ms (in its header, or in its body)
 * closes with -ETIMEDOUT; an idle connection with the same timeout and a
 * stalled one without a timeout stay open.
 */
static inline void
th_case_stall(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_conn_opts none = th_opts(mode);
	struct th_rec idle, untimed, hdr, body;
	struct vhu_vring_addr va = th_vring_addr(1, 0x40000);
	int pidle, puntimed, phdr, pbody;
	uint8_t buf[64];
	size_t len;
	int i;

	o.msg_timeout_ms = 50;
	th_rec_init(&idle);
	th_rec_init(&untimed);
	th_rec_init(&hdr);
	th_rec_init(&body);
	/* The idle one first: a timer wrongly armed on it would fire first. */
	pidle = th_attach(ring, &o, &idle);
	puntimed = th_attach(ring, &none, &untimed);
	phdr = th_attach(ring, &o, &hdr);
	pbody = th_attach(ring, &o, &body);
	len = th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
	th_send(puntimed, buf, 5, NULL, 0);
	th_send(phdr, buf, 5, NULL, 0);
	th_send(pbody, buf, 15, NULL, 0);
	th_drain(ring, &untimed);
	th_drain(ring, &hdr);
	th_drain(ring, &body);
	for (i = 0; i < 10 && (hdr.closes == 0 || body.closes == 0); i++) {
		int r = vhu_ring_wait(ring, 2000);

		cr_assert_geq(r, 0, "vhu_ring_wait: %s", vhu_errname(r));
	}
	th_assert_closed(&hdr, -ETIMEDOUT, "stalled in the header");
	th_assert_closed(&body, -ETIMEDOUT, "stalled in the body");
	th_assert_open(&idle, "idle connection with a timeout");
	th_assert_open(&untimed, "stalled connection without a timeout");

	/* Both survivors still work. */
	th_send(pidle, buf, len, NULL, 0);
	th_send(puntimed, buf + 5, len - 5, NULL, 0);
	th_wait_msgs(ring, &idle, 1);
	th_wait_msgs(ring, &untimed, 1);
	th_assert_msg(&idle, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va), 0);
	th_assert_msg(&untimed, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va), 0);

	vhu_ring_destroy(ring);
	th_assert_closed(&idle, 0, "destroy");
	th_assert_closed(&untimed, 0, "destroy");
	close(pidle);
	close(puntimed);
	close(phdr);
	close(pbody);
	th_rec_fini(&idle);
	th_rec_fini(&untimed);
	th_rec_fini(&hdr);
	th_rec_fini(&body);
	th_fd_check(fd_mark, __func__);
}

/* ------------------------------------------------------------------ */
/* Send path                                                           */

/* Queue one message and append its wire bytes to want. */
static inline void
th_send_expect(struct th_rec *rec, uint8_t *want, size_t *off, uint32_t req, const void *body,
	       uint32_t blen, const void *payload, uint32_t plen)
{
	struct vhu_hdr h = vhu_hdr_request(req, blen + plen, false);
	int rc = vhu_conn_send(rec->conn, &h, body, blen, payload, plen, NULL, 0);

	cr_assert_eq(rc, 0, "vhu_conn_send of request %u: %d (%s)", req, rc, vhu_errname(rc));
	memcpy(want + *off, &h, sizeof(h));
	if (blen) {
		memcpy(want + *off + sizeof(h), body, blen);
	}
	if (plen) {
		memcpy(want + *off + sizeof(h) + blen, payload, plen);
	}
	*off += sizeof(h) + blen + plen;
}

/*
 * 256 messages of four shapes (no body, u64, 40-byte body, body plus
 * payload) queued in one go fill the default queue exactly; the 257th is
 * refused; the peer reads the exact byte stream, nothing more.
 */
static inline void
th_case_send_in_order(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_ring_stats st;
	struct th_rec rec;
	uint8_t *want = malloc(65536), *got = malloc(65536);
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	size_t off = 0;
	int peer, rc;

	cr_assert(want && got);
	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (uint32_t i = 0; i < 256; i++) {
		uint64_t v = 0x5000 + i;
		struct vhu_vring_addr va = th_vring_addr(i % 8, 0x10000 + 16ull * i);
		struct vhu_config cfg = { .offset = 0, .size = 16, .flags = 0 };
		uint8_t payload[16];

		th_pattern(payload, sizeof(payload), i);
		switch (i % 4) {
		case 0:
			th_send_expect(&rec, want, &off, VHU_REQ_GET_FEATURES, NULL, 0, NULL, 0);
			break;
		case 1:
			th_send_expect(&rec, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
			break;
		case 2:
			th_send_expect(&rec, want, &off, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va),
				       NULL, 0);
			break;
		default:
			th_send_expect(&rec, want, &off, VHU_REQ_GET_CONFIG, &cfg,
				       VHU_CONFIG_HDR_SIZE, payload, sizeof(payload));
			break;
		}
	}
	cr_assert_eq(vhu_conn_sendq_len(rec.conn), 256);
	rc = vhu_conn_send(rec.conn, &h, NULL, 0, NULL, 0, NULL, 0);
	cr_assert_eq(rc, -VHU_EQFULL, "257th message with the default queue: %d (%s)", rc,
		     vhu_errname(rc));
	cr_assert_eq(vhu_conn_sendq_len(rec.conn), 256);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "byte stream");
	th_assert_no_more(peer);
	vhu_ring_get_stats(ring, &st);
	cr_assert_geq(st.msgs_out, 256, "stats: %llu messages out",
		      (unsigned long long)st.msgs_out);
	free(want);
	free(got);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

struct th_plan {
	uint32_t req;
	const void *body;
	uint32_t len;
	const int *fds;
	unsigned int nfds;
};

/*
 * Messages with fds interleaved with fd-less ones, read by a blocking
 * vhu_endpoint that validates each one: every fd arrives once, on its own
 * message, as the same file.
 */
static inline void
th_case_send_fds(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_rules rules = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST };
	struct vhu_endpoint *ep = NULL;
	struct vhu_mem_table mt;
	uint32_t mts = th_mem_table(&mt, 3);
	int efd[3] = { t_eventfd(), t_eventfd(), t_eventfd() };
	int mfd[4] = { t_memfd("r0"), t_memfd("r1"), t_memfd("r2"), t_memfd("log") };
	struct th_plan plan[12];
	uint64_t w0 = 0, w1 = 1, w2 = 2 | VHU_VRING_NOFD, w3 = 3, f = 42;
	struct th_rec rec;
	unsigned int n = 0;
	int peer, rc;

	plan[n++] = (struct th_plan){ VHU_REQ_GET_FEATURES, NULL, 0, NULL, 0 };
	plan[n++] = (struct th_plan){ VHU_REQ_SET_VRING_CALL, &w0, 8, &efd[0], 1 };
	plan[n++] = (struct th_plan){ VHU_REQ_SET_FEATURES, &f, 8, NULL, 0 };
	plan[n++] = (struct th_plan){ VHU_REQ_SET_MEM_TABLE, &mt, mts, mfd, 3 };
	plan[n++] = (struct th_plan){ VHU_REQ_SET_VRING_KICK, &w1, 8, &efd[1], 1 };
	plan[n++] = (struct th_plan){ VHU_REQ_SET_VRING_CALL, &w2, 8, NULL, 0 };
	plan[n++] = (struct th_plan){ VHU_REQ_SET_LOG_FD, NULL, 0, &mfd[3], 1 };
	plan[n++] = (struct th_plan){ VHU_REQ_SET_VRING_ERR, &w3, 8, &efd[2], 1 };
	plan[n++] = (struct th_plan){ VHU_REQ_GET_FEATURES, NULL, 0, NULL, 0 };
	plan[n++] = (struct th_plan){ VHU_REQ_SET_FEATURES, &f, 8, NULL, 0 };

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (unsigned int i = 0; i < n; i++) {
		struct vhu_hdr h = vhu_hdr_request(plan[i].req, plan[i].len, false);
		int d[VHU_MAX_FDS];

		for (unsigned int k = 0; k < plan[i].nfds; k++) {
			d[k] = th_dup(plan[i].fds[k]);
		}
		rc = vhu_conn_send(rec.conn, &h, plan[i].body, plan[i].len, NULL, 0, d,
				   plan[i].nfds);
		cr_assert_eq(rc, 0, "vhu_conn_send %u: %s", i, vhu_errname(rc));
	}
	th_wait_sent(ring, &rec);

	rc = vhu_endpoint_from_fd(peer, &rules, &ep);
	cr_assert_eq(rc, 0, "vhu_endpoint_from_fd: %s", vhu_errname(rc));
	for (unsigned int i = 0; i < n; i++) {
		struct vhu_hdr h;
		struct vhu_fds fds;
		uint8_t body[VHU_DEFAULT_MAX_SIZE];

		vhu_fds_init(&fds);
		rc = vhu_endpoint_recv_header(ep, &h, &fds);
		cr_assert_eq(rc, 0, "message %u: recv_header: %s", i, vhu_errname(rc));
		if (h.size) {
			rc = vhu_endpoint_recv_body_bytes(ep, &h, body, sizeof(body), &fds);
			cr_assert_eq(rc, 0, "message %u: recv_body_bytes: %s", i, vhu_errname(rc));
		}
		cr_assert_eq(h.request, plan[i].req, "message %u: request %u", i, h.request);
		cr_assert_eq(h.size, plan[i].len);
		th_assert_bytes(body, plan[i].body, plan[i].len, "body");
		cr_assert_eq(fds.n, plan[i].nfds, "message %u: %u fds, want %u", i, fds.n,
			     plan[i].nfds);
		for (unsigned int k = 0; k < fds.n; k++) {
			cr_assert(t_same_file(plan[i].fds[k], fds.fd[k]),
				  "message %u fd %u: another file", i, k);
		}
		vhu_fds_close(&fds);
	}
	th_assert_no_more(vhu_endpoint_fd(ep));
	th_close_all(efd, 3);
	th_close_all(mfd, 4);
	vhu_ring_destroy(ring);
	th_assert_closed(&rec, 0, "destroy");
	vhu_endpoint_destroy(ep);
	th_rec_fini(&rec);
	th_fd_check(fd_mark, __func__);
}

/* A reader thread: small recvmsg calls, recording bytes and where fds came. */
struct th_fdev {
	size_t start, end;	/* stream offsets the read covered */
	int fd[VHU_MAX_FDS];
	unsigned int n;
};

struct th_reader {
	int fd;
	size_t want, chunk, got;
	uint8_t *buf;
	struct th_fdev ev[64];
	unsigned int nev;
	int err;		/* 0, -errno, or a vhu error; checked by the main thread */
};

static inline void *
th_reader_main(void *arg)
{
	struct th_reader *r = arg;

	while (r->got < r->want) {
		size_t len = r->want - r->got < r->chunk ? r->want - r->got : r->chunk;
		struct iovec iov = { .iov_base = r->buf + r->got, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
		} cb;
		ssize_t n;

		mh.msg_control = cb.buf;
		mh.msg_controllen = sizeof(cb.buf);
		if (poll(&p, 1, 2 * TH_HANG_MS) != 1) {
			r->err = -ETIMEDOUT;
			return NULL;
		}
		n = recvmsg(r->fd, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0) {
			r->err = n == 0 ? -VHU_EDISCONNECT : -errno;
			return NULL;
		}
		if (mh.msg_flags & MSG_CTRUNC) {
			r->err = -VHU_ECTRUNC;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			struct th_fdev *e;

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
				continue;
			}
			if (r->nev == sizeof(r->ev) / sizeof(r->ev[0])) {
				r->err = -ENOSPC;
				return NULL;
			}
			e = &r->ev[r->nev++];
			e->start = r->got;
			e->end = r->got + (size_t)n;
			e->n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(e->fd, CMSG_DATA(c), e->n * sizeof(int));
		}
		r->got += (size_t)n;
	}
	return NULL;
}

/*
 * Short sends forced: the engine's socket gets a 4 KiB send buffer and
 * ~200 KiB of queued messages (near-maximum bodies, with fd messages among
 * them), read by a thread in 61-byte pieces. Every byte arrives in order,
 * each fd exactly once with the message it belongs to, and the stats show
 * the short-send path ran.
 */
static inline void
th_case_send_short(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	enum { NFD = 12, BIG = VHU_DEFAULT_MAX_SIZE };
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_ring_stats st;
	struct th_reader rd = { .chunk = 61 };
	struct th_rec rec;
	size_t want_len = 0, starts[5 * NFD], fdmsg[NFD];
	uint8_t *want, *body = malloc(BIG);
	int efd[NFD];
	unsigned int nmsg = 0;
	pthread_t tid;
	int peer;

	o.sendq_bytes = 1u << 20;
	want = malloc((size_t)NFD * 4 * (VHU_HDR_SIZE + BIG) + NFD * 20);
	rd.buf = malloc((size_t)NFD * 4 * (VHU_HDR_SIZE + BIG) + NFD * 20);
	cr_assert(want && rd.buf && body);
	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	th_set_sndbuf(vhu_conn_fd(rec.conn), 4096);
	for (unsigned int k = 0; k < NFD; k++) {
		struct vhu_hdr hc = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, false);
		uint64_t word = k;
		int d;

		efd[k] = t_eventfd();
		for (unsigned int j = 0; j < 4; j++) {
			uint32_t len = BIG - (j * 13 + k) % 64;

			th_pattern(body, len, k * 4 + j);
			starts[nmsg++] = want_len;
			th_send_expect(&rec, want, &want_len, VHU_REQ_CREATE_CRYPTO_SESSION, body,
				       len, NULL, 0);
		}
		d = th_dup(efd[k]);
		fdmsg[k] = nmsg;
		starts[nmsg++] = want_len;
		cr_assert_eq(vhu_conn_send(rec.conn, &hc, &word, 8, NULL, 0, &d, 1), 0);
		memcpy(want + want_len, &hc, sizeof(hc));
		memcpy(want + want_len + sizeof(hc), &word, 8);
		want_len += 20;
	}

	rd.fd = peer;
	rd.want = want_len;
	cr_assert_eq(pthread_create(&tid, NULL, th_reader_main, &rd), 0);
	th_wait_sent(ring, &rec);
	cr_assert_eq(pthread_join(tid, NULL), 0);
	cr_assert_eq(rd.err, 0, "reader: %d (%s)", rd.err, vhu_errname(rd.err));
	cr_assert_eq(rd.got, want_len);
	th_assert_bytes(rd.buf, want, want_len, "byte stream");
	th_assert_no_more(peer);

	/* Each fd belongs to the last message that begins in the read that brought it. */
	{
		bool seen[NFD] = { false };
		unsigned int total = 0;

		for (unsigned int e = 0; e < rd.nev; e++) {
			struct th_fdev *ev = &rd.ev[e];
			long m = -1;

			for (unsigned int i = 0; i < nmsg; i++) {
				if (starts[i] >= ev->start && starts[i] < ev->end) {
					m = i;
				}
			}
			total += ev->n;
			cr_assert_geq(m, 0, "fds arrived with a read where no message begins");
			cr_assert_eq(ev->n, 1, "%u fds in one read", ev->n);
			for (unsigned int k = 0; k < NFD; k++) {
				if (fdmsg[k] == (size_t)m) {
					cr_assert(!seen[k], "fd of message %ld arrived twice", m);
					seen[k] = true;
					cr_assert(t_same_file(efd[k], ev->fd[0]),
						  "fd on message %ld is another file", m);
					m = -2;
					break;
				}
			}
			cr_assert_eq(m, -2, "an fd arrived on fd-less message");
			th_close_all(ev->fd, ev->n);
		}
		cr_assert_eq(total, NFD, "%u fds arrived, want %d", total, NFD);
	}

	vhu_ring_get_stats(ring, &st);
	cr_assert_gt(st.short_sends, 0, "no short send happened (stats short_sends 0)");
	cr_log_info("short sends: %llu", (unsigned long long)st.short_sends);
	th_close_all(efd, NFD);
	free(want);
	free(rd.buf);
	free(body);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

/*
 * Backpressure: a 4-message queue takes 4 and refuses the 5th (-VHU_EQFULL,
 * its fd still the caller's) without losing any; a byte-limited queue
 * refuses a message larger than itself (-VHU_EOVERSIZED) and one that does
 * not fit beside the queued ones (-VHU_EQFULL). After the queue drains it
 * takes messages again.
 */
static inline void
th_case_send_backpressure(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_conn_opts ob = th_opts(mode);
	struct th_rec rec, rb;
	uint8_t want[256], got[256], big[100] = { 0 };
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	struct vhu_hdr hb = vhu_hdr_request(VHU_REQ_CREATE_CRYPTO_SESSION, sizeof(big), false);
	size_t off = 0;
	uint64_t v = 99;
	int peer, pb, rc, efd = t_eventfd();

	o.sendq_msgs = 4;
	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (uint64_t i = 0; i < 4; i++) {
		th_send_expect(&rec, want, &off, VHU_REQ_SET_FEATURES, &i, 8, NULL, 0);
	}
	rc = vhu_conn_send(rec.conn, &h, &v, 8, NULL, 0, &efd, 1);
	cr_assert_eq(rc, -VHU_EQFULL, "5th message in a 4-message queue: %d (%s)", rc,
		     vhu_errname(rc));
	cr_assert(th_fd_open(efd), "the refused message's fd was closed");
	cr_assert_eq(vhu_conn_sendq_len(rec.conn), 4);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "the 4 queued messages");
	th_assert_no_more(peer);
	off = 0;
	th_send_expect(&rec, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "after the queue drained");

	ob.sendq_bytes = 50;	/* two 20-byte messages fit, a third does not */
	th_rec_init(&rb);
	pb = th_attach(ring, &ob, &rb);
	rc = vhu_conn_send(rb.conn, &hb, big, sizeof(big), NULL, 0, NULL, 0);
	cr_assert_eq(rc, -VHU_EOVERSIZED, "112-byte message, 50-byte queue: %d (%s)", rc,
		     vhu_errname(rc));
	off = 0;
	th_send_expect(&rb, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
	th_send_expect(&rb, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
	rc = vhu_conn_send(rb.conn, &h, &v, 8, NULL, 0, NULL, 0);
	cr_assert_eq(rc, -VHU_EQFULL, "third 20-byte message, 50-byte queue: %d (%s)", rc,
		     vhu_errname(rc));
	th_wait_sent(ring, &rb);
	th_read_exact(pb, got, off);
	th_assert_bytes(got, want, off, "the 2 queued messages");
	th_assert_no_more(pb);

	close(efd);
	vhu_ring_destroy(ring);
	th_assert_closed(&rec, 0, "destroy");
	th_assert_closed(&rb, 0, "destroy");
	close(peer);
	close(pb);
	th_rec_fini(&rec);
	th_rec_fini(&rb);
	th_fd_check(fd_mark, __func__);
}

/*
 * Refused sends leave the fds with the caller and nothing on the wire:
 * 33 fds (-VHU_EFDS), a size field that does not match body + payload
 * (-EINVAL), a message larger than the default 64 KiB queue
 * (-VHU_EOVERSIZED). A valid message sent afterwards is the only thing the
 * peer reads.
 */
static inline void
th_case_send_refused(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec;
	int fds[VHU_MAX_FDS + 1];
	uint8_t body[16] = { 0 }, want[64], got[64];
	uint8_t *huge = calloc(1, 70000);
	struct vhu_hdr h;
	size_t off = 0;
	uint64_t v = 5;
	int peer, rc;

	cr_assert_not_null(huge);
	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (unsigned int k = 0; k <= VHU_MAX_FDS; k++) {
		fds[k] = t_eventfd();
	}
	h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	rc = vhu_conn_send(rec.conn, &h, body, 8, NULL, 0, fds, VHU_MAX_FDS + 1);
	cr_assert_eq(rc, -VHU_EFDS, "33 fds: %d (%s)", rc, vhu_errname(rc));

	h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	rc = vhu_conn_send(rec.conn, &h, body, 4, NULL, 0, fds, 1);
	cr_assert_eq(rc, -EINVAL, "size 8, body 4: %d (%s)", rc, vhu_errname(rc));
	rc = vhu_conn_send(rec.conn, &h, body, 8, body, 4, fds, 1);
	cr_assert_eq(rc, -EINVAL, "size 8, body 8 + payload 4: %d (%s)", rc, vhu_errname(rc));
	h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 16, false);
	rc = vhu_conn_send(rec.conn, &h, body, 8, NULL, 0, NULL, 0);
	cr_assert_eq(rc, -EINVAL, "size 16, body 8: %d (%s)", rc, vhu_errname(rc));
	h = vhu_hdr_request(VHU_REQ_CREATE_CRYPTO_SESSION, 70000, false);
	rc = vhu_conn_send(rec.conn, &h, huge, 70000, NULL, 0, fds, 1);
	cr_assert_eq(rc, -VHU_EOVERSIZED, "70000-byte message: %d (%s)", rc, vhu_errname(rc));

	cr_assert_eq(vhu_conn_sendq_len(rec.conn), 0);
	for (unsigned int k = 0; k <= VHU_MAX_FDS; k++) {
		cr_assert(th_fd_open(fds[k]), "fd %u of a refused send was closed", k);
	}
	th_close_all(fds, VHU_MAX_FDS + 1);

	th_send_expect(&rec, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "the one valid message");
	th_assert_no_more(peer);
	free(huge);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

/*
 * Senders that split a message (libvhost-user, crosvm 2023): header with
 * the fds in one sendmsg, body in a later write; with the engine reading in
 * between, and with both pieces waiting before the ring runs.
 */
static inline void
th_case_header_then_body(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_mem_table mt;
	uint32_t mts = th_mem_table(&mt, 3);
	int mfd[3] = { t_memfd("a"), t_memfd("b"), t_memfd("c") };
	int efd = t_eventfd();
	uint64_t word = 5;
	struct th_rec rec;
	uint8_t buf[512];
	size_t len, n = 0;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (int drained = 0; drained < 2; drained++) {
		len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, word);
		th_send(peer, buf, VHU_HDR_SIZE, &efd, 1);
		if (drained) {
			th_drain(ring, &rec);
		}
		th_send(peer, buf + VHU_HDR_SIZE, len - VHU_HDR_SIZE, NULL, 0);
		len = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mts);
		th_send(peer, buf, VHU_HDR_SIZE, mfd, 3);
		if (drained) {
			th_drain(ring, &rec);
		}
		th_send(peer, buf + VHU_HDR_SIZE, len - VHU_HDR_SIZE, NULL, 0);
		n += 2;
		th_wait_msgs(ring, &rec, n);
		th_assert_msg(&rec, n - 2, VHU_REQ_SET_VRING_CALL, &word, 8, 1);
		cr_assert(t_same_file(efd, rec.msg[n - 2].fd[0]));
		th_assert_msg(&rec, n - 1, VHU_REQ_SET_MEM_TABLE, &mt, mts, 3);
		for (int i = 0; i < 3; i++) {
			cr_assert(t_same_file(mfd[i], rec.msg[n - 1].fd[i]), "region %d", i);
		}
	}
	close(efd);
	th_close_all(mfd, 3);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

/*
 * Many small messages of three sizes (12, 20, 52 bytes: their boundaries
 * drift across any power-of-two buffer), with an fd message every 500,
 * written by a forked child while the ring runs, then EOF. All arrive in
 * order with the fds on their own messages; the connection then closes with
 * -VHU_EDISCONNECT. In stream mode this exhausts the provided buffers.
 */
static inline void
th_case_flood(uint8_t mode, unsigned int count)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_ring_stats st;
	struct th_rec rec;
	int efd = t_eventfd();
	int peer, status = -1;
	pid_t pid;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		static uint8_t buf[128 * 52];
		size_t off = 0;

		/*
		 * Die with the test, and drop the inherited engine end: if the
		 * engine closes early, writes must fail instead of filling a socket
		 * this child keeps alive.
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(vhu_conn_fd(rec.conn));

		for (unsigned int i = 0; i < count; i++) {
			struct vhu_vring_addr va = th_vring_addr(i % 8, 16ull * i);

			if (i % 500 == 499) {
				uint8_t m[20];

				/* The fd message goes alone in its sendmsg, after the rest. */
				if (off && th_sendmsg(peer, buf, off, NULL, 0) != (ssize_t)off) {
					_exit(1);
				}
				off = 0;
				th_put_u64(m, 0, VHU_REQ_SET_VRING_CALL, i & 0xff);
				if (th_sendmsg(peer, m, sizeof(m), &efd, 1) != (ssize_t)sizeof(m)) {
					_exit(2);
				}
				continue;
			}
			switch (i % 3) {
			case 0:
				off = th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
				break;
			case 1:
				off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, i);
				break;
			default:
				off = th_put(buf, off, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
				break;
			}
			if (off + 52 > sizeof(buf)) {
				if (send(peer, buf, off, MSG_NOSIGNAL) != (ssize_t)off) {
					_exit(3);
				}
				off = 0;
			}
		}
		if (off && send(peer, buf, off, MSG_NOSIGNAL) != (ssize_t)off) {
			_exit(4);
		}
		_exit(0);
	}
	close(peer);
	th_wait_closed(ring, &rec);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer child failed: 0x%x",
		  status);
	th_assert_closed(&rec, -VHU_EDISCONNECT, "after the flood");
	cr_assert_eq(rec.n, count, "%zu of %u messages delivered", rec.n, count);
	for (unsigned int i = 0; i < count; i++) {
		struct vhu_vring_addr va = th_vring_addr(i % 8, 16ull * i);
		uint64_t v = i;

		if (i % 500 == 499) {
			v = i & 0xff;
			th_assert_msg(&rec, i, VHU_REQ_SET_VRING_CALL, &v, 8, 1);
			cr_assert(t_same_file(efd, rec.msg[i].fd[0]), "message %u: another file",
				  i);
			continue;
		}
		switch (i % 3) {
		case 0:
			th_assert_msg(&rec, i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
			break;
		case 1:
			th_assert_msg(&rec, i, VHU_REQ_SET_FEATURES, &v, 8, 0);
			break;
		default:
			th_assert_msg(&rec, i, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va), 0);
			break;
		}
	}
	vhu_ring_get_stats(ring, &st);
	cr_log_info("%u messages: %llu cqes, %llu enters, %llu rearms, %llu enobufs", count,
		    (unsigned long long)st.cqes, (unsigned long long)st.enters,
		    (unsigned long long)st.rearms, (unsigned long long)st.enobufs);
	cr_assert_geq(st.msgs_in, count);
	close(efd);
	vhu_ring_destroy(ring);
	th_rec_fini(&rec);
	th_fd_check(fd_mark, __func__);
}

/* Message i of burst connection p: SET_FEATURES (p, i), every 4th a GET_FEATURES. */
static inline size_t
th_burst_put(uint8_t *buf, size_t off, unsigned int p, unsigned int i)
{
	if (i % 4 == 3) {
		return th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	return th_put_u64(buf, off, VHU_REQ_SET_FEATURES, ((uint64_t)p << 32) | i);
}

struct th_burst {
	struct th_rec *rec;
	size_t *want;
	unsigned int n;
};

static inline bool
th_done_burst(void *arg)
{
	struct th_burst *b = arg;

	for (unsigned int p = 0; p < b->n; p++) {
		if (b->rec[p].closes == 0 && b->rec[p].n < b->want[p]) {
			return false;
		}
	}
	return true;
}

/*
 * Sixteen connections each write ~200 KiB (non-blocking, stopping early if
 * the kernel refuses more) before the ring runs: megabytes waiting at once,
 * more than a shared ring of provided buffers holds. Every message arrives,
 * in order, on its own connection, and none closes.
 */
static inline void
th_case_burst(uint8_t mode, struct vhu_ring_stats *out)
{
	const int fd_mark = t_fd_count();
	enum { NB = 16, CHUNK = 200, PER_CONN = 12000 };
	struct vhu_ring *ring = th_ring_small_bufs();
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_ring_stats st;
	struct th_rec rec[NB];
	int peer[NB];
	size_t want[NB], total = 0;
	struct th_burst w = { .rec = rec, .want = want, .n = NB };
	uint8_t buf[CHUNK * 20];
	int big = 1 << 20;

	for (unsigned int p = 0; p < NB; p++) {
		th_rec_init(&rec[p]);
		peer[p] = th_attach(ring, &o, &rec[p]);
		/* As much in flight as the peer's send buffer allows (forced when root). */
		if (setsockopt(peer[p], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) != 0) {
			setsockopt(peer[p], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		}
		want[p] = 0;
		while (want[p] < PER_CONN) {
			size_t off = 0;
			ssize_t n;

			for (unsigned int j = 0; j < CHUNK; j++) {
				off = th_burst_put(buf, off, p, (unsigned int)want[p] + j);
			}
			/* One chunk is one skb: the kernel takes all of it or none. */
			n = send(peer[p], buf, off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0) {
				cr_assert_eq(errno, EAGAIN, "burst send: %s", strerror(errno));
				break;
			}
			cr_assert_eq((size_t)n, off, "a %zu-byte chunk went in part (%zd)", off, n);
			want[p] += CHUNK;
		}
		cr_assert_gt(want[p], 0);
		total += want[p];
	}
	th_run_until(ring, th_done_burst, &w, "every burst delivered");
	th_flush(ring);
	for (unsigned int p = 0; p < NB; p++) {
		th_assert_open(&rec[p], "burst connection");
		cr_assert_eq(rec[p].n, want[p], "conn %u: %zu of %zu messages", p, rec[p].n,
			     want[p]);
		for (unsigned int i = 0; i < want[p]; i++) {
			uint64_t v = ((uint64_t)p << 32) | i;

			if (i % 4 == 3) {
				th_assert_msg(&rec[p], i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
			} else {
				th_assert_msg(&rec[p], i, VHU_REQ_SET_FEATURES, &v, 8, 0);
			}
		}
	}
	vhu_ring_get_stats(ring, &st);
	cr_log_info("burst of %zu messages: %llu cqes, %llu rearms, %llu enobufs", total,
		    (unsigned long long)st.cqes, (unsigned long long)st.rearms,
		    (unsigned long long)st.enobufs);
	*out = st;
	vhu_ring_destroy(ring);
	for (unsigned int p = 0; p < NB; p++) {
		th_assert_closed(&rec[p], 0, "destroy");
		close(peer[p]);
		th_rec_fini(&rec[p]);
	}
	th_fd_check(fd_mark, __func__);
}

#endif
