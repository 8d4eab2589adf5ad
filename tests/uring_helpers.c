/* SPDX-License-Identifier: MIT */
/* The helpers of uring_helpers.h; each function is documented there. */
#define _GNU_SOURCE
#include "uring_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void
th_rec_init(struct th_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->reason = 1;	/* not a value on_close can give */
	r->hook_rc = 1;
}

void
th_rec_init_seq(struct th_rec *r)
{
	th_rec_init(r);
	r->seq = true;
}

void
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

/* The number a message of a sequenced stream carries. \return false if it carries none. */
static bool
msg_seq(const struct vhu_msg *m, uint64_t *seq)
{
	if (m->hdr.request == VHU_REQ_SET_FEATURES && m->hdr.size == 8) {
		memcpy(seq, m->body, 8);
		return true;
	}
	if (m->hdr.request == VHU_REQ_SET_VRING_NUM && m->hdr.size == 8) {
		struct vhu_vring_state vs;

		memcpy(&vs, m->body, sizeof(vs));
		*seq = vs.num;
		return true;
	}
	return false;
}

/* Sequence mode: check the message's place, count its fds, reply if asked. */
static int
on_message_seq(struct th_rec *r, struct vhu_conn *conn, struct vhu_msg *m)
{
	uint64_t idx = r->n++;
	uint64_t seq = UINT64_MAX;
	bool has = msg_seq(m, &seq);
	uint64_t want = th_seq_req(idx) == VHU_REQ_SET_VRING_NUM ? (uint32_t)idx : idx;
	bool ok = m->hdr.request == th_seq_req(idx) && (!has || seq == want);

	r->nfds += m->fds.n;
	if (!ok && !r->seq_bad) {
		r->seq_bad = true;
		r->seq_at = idx;
		r->seq_got = has ? seq : (uint64_t)m->hdr.request << 32;
	}
	if (r->reply) {
		static const uint8_t pad[64 * 1024];
		uint32_t plen = r->reply_pad < sizeof(pad) ? r->reply_pad : (uint32_t)sizeof(pad);
		struct vhu_hdr h = vhu_hdr_reply(m->hdr.request, 8 + plen);
		uint64_t echo = has ? seq : idx;
		int rc = vhu_conn_send(conn, &h, &echo, 8, pad, plen, NULL, 0);
		unsigned int q;

		if (rc == -VHU_EQFULL) {
			r->eqfull++;
		} else if (rc < 0) {
			return rc;
		} else {
			r->replied++;
		}
		q = vhu_conn_sendq_len(conn);
		if (q > r->q_peak) {
			r->q_peak = q;
		}
	}
	return 0;
}

int
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
	if (r->seq) {
		return on_message_seq(r, conn, m);
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

void
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

const struct vhu_conn_ops th_ops = {
	.on_message = th_on_message,
	.on_close = th_on_close,
};

void
th_assert_closed(const struct th_rec *r, int reason, const char *what)
{
	cr_assert_eq(r->closes, 1, "%s: on_close fired %u times, want exactly 1", what, r->closes);
	cr_assert_eq(r->reason, reason, "%s: on_close reason %d (%s), want %d (%s)", what,
		     r->reason, vhu_errname(r->reason), reason, vhu_errname(reason));
	cr_assert_eq(r->late, 0, "%s: %u callbacks after on_close", what, r->late);
	cr_assert_eq(r->wrong_conn, 0, "%s: callbacks with a foreign conn pointer", what);
}

void
th_assert_open(const struct th_rec *r, const char *what)
{
	cr_assert_eq(r->closes, 0, "%s: closed unexpectedly with %d (%s)", what, r->reason,
		     vhu_errname(r->reason));
	cr_assert_eq(r->wrong_conn, 0, "%s: callbacks with a foreign conn pointer", what);
	th_assert_seq(r, what);
}

void
th_assert_seq(const struct th_rec *r, const char *what)
{
	cr_assert(!r->seq_bad, "%s: message %llu carried %llu: lost or reordered", what,
		  (unsigned long long)r->seq_at, (unsigned long long)r->seq_got);
}

struct vhu_ring *
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

struct vhu_ring *
th_ring_small_bufs(void)
{
	struct vhu_ring_opts o = { .stream_bufs = 8, .stream_buf_size = 4352 };
	struct vhu_ring *ring = NULL;
	int rc = vhu_ring_create(&o, &ring);

	cr_assert_eq(rc, 0, "vhu_ring_create: %s", vhu_strerror(rc));
	return ring;
}

struct vhu_conn_opts
th_opts(uint8_t mode)
{
	struct vhu_conn_opts o = {
		.recv_mode = mode,
		.rules = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST },
	};

	return o;
}

int
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

static long
ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

void
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
		} else if (ms_since(&last) >= TH_HANG_MS) {
			cr_assert_fail("the ring made no progress for %d ms while waiting for %s",
				       TH_HANG_MS, what);
		}
		cr_assert_lt(++iters, TH_MAX_ITERS, "ring loop spun while waiting for %s", what);
	}
}

void
th_flush(struct vhu_ring *ring)
{
	int r;
	unsigned long iters = 0;

	while ((r = vhu_ring_poll(ring)) > 0) {
		cr_assert_lt(++iters, TH_MAX_ITERS, "vhu_ring_poll never went idle");
	}
	cr_assert_geq(r, 0, "vhu_ring_poll: %d (%s)", r, vhu_strerror(r));
}

bool
th_done_msgs(void *arg)
{
	struct th_want *w = arg;

	return w->rec->n >= w->n || w->rec->closes > 0;
}

bool
th_done_closed(void *arg)
{
	struct th_want *w = arg;

	return w->rec->closes > 0;
}

bool
th_done_sent(void *arg)
{
	struct th_want *w = arg;

	return w->rec->closes > 0 || vhu_conn_sendq_len(w->conn) == 0;
}

int
th_inq(int fd)
{
	int n = 0;

	cr_assert_eq(ioctl(fd, SIOCINQ, &n), 0, "SIOCINQ: %s", strerror(errno));
	return n;
}

bool
th_done_drained(void *arg)
{
	struct th_want *w = arg;

	return w->rec->closes > 0 || th_inq(w->fd) == 0;
}

void
th_wait_msgs(struct vhu_ring *ring, struct th_rec *rec, size_t n, const char *what)
{
	struct th_want w = { .rec = rec, .n = n };
	char msgs[64];

	snprintf(msgs, sizeof(msgs), "%zu messages", n);
	th_run_until(ring, th_done_msgs, &w, what ? what : msgs);
	what = what ? what : "waiting";
	cr_assert_eq(rec->closes, 0, "%s: closed with %d (%s) after %zu of %zu messages", what,
		     rec->reason, vhu_errname(rec->reason), rec->n, n);
	th_flush(ring);
	cr_assert_eq(rec->n, n, "%s: %zu messages delivered, want %zu", what, rec->n, n);
}

void
th_wait_closed(struct vhu_ring *ring, struct th_rec *rec, const char *what)
{
	struct th_want w = { .rec = rec };

	th_run_until(ring, th_done_closed, &w, what ? what : "on_close");
	th_flush(ring);
}

void
th_wait_sent(struct vhu_ring *ring, struct th_rec *rec)
{
	struct th_want w = { .rec = rec, .conn = rec->conn };

	th_run_until(ring, th_done_sent, &w, "the send queue to drain");
	th_assert_open(rec, "sender");
	th_flush(ring);
}

void
th_drain(struct vhu_ring *ring, struct th_rec *rec)
{
	struct th_want w = { .rec = rec, .fd = vhu_conn_fd(rec->conn) };

	th_run_until(ring, th_done_drained, &w, "the engine to read its socket");
	th_flush(ring);
}


/* Append a header with explicit flags and size, then len body bytes. */
size_t
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

size_t
th_put(uint8_t *buf, size_t off, uint32_t req, const void *body, uint32_t len)
{
	return th_put_raw(buf, off, req, VHU_VERSION, len, body, len);
}

size_t
th_put_u64(uint8_t *buf, size_t off, uint32_t req, uint64_t v)
{
	return th_put(buf, off, req, &v, sizeof(v));
}

uint32_t
th_seq_req(uint64_t i)
{
	static const uint32_t req[3] = {
		VHU_REQ_SET_FEATURES, VHU_REQ_SET_VRING_NUM, VHU_REQ_GET_FEATURES,
	};

	return req[i % 3];
}

size_t
th_put_seq(uint8_t *buf, size_t off, uint64_t i)
{
	struct vhu_vring_state vs = { 0, (uint32_t)i };

	switch (th_seq_req(i)) {
	case VHU_REQ_SET_FEATURES:
		return th_put_u64(buf, off, VHU_REQ_SET_FEATURES, i);
	case VHU_REQ_SET_VRING_NUM:
		return th_put(buf, off, VHU_REQ_SET_VRING_NUM, &vs, sizeof(vs));
	default:
		return th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
}

struct vhu_vring_addr
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

uint32_t
th_mem_table(struct vhu_mem_table *mt, unsigned int n)
{
	memset(mt, 0, sizeof(*mt));
	mt->nregions = n;
	for (unsigned int i = 0; i < n; i++) {
		mt->regions[i].guest_phys_addr = (uint64_t)i << 30;
		mt->regions[i].size = 1ull << 20;
		mt->regions[i].user_addr = 0x7f0000000000ull + ((uint64_t)i << 30);
	}
	return VHU_MEM_TABLE_SIZE(n);
}

void
th_pattern(uint8_t *p, size_t len, unsigned int seed)
{
	for (size_t i = 0; i < len; i++) {
		p[i] = (uint8_t)(i * 31u + seed * 7u + (i >> 8));
	}
}

ssize_t
th_sendmsg(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * TH_SCM_MAX_FD)];
	} cb;

	if (nfds > TH_SCM_MAX_FD) {
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

void
th_send(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds)
{
	ssize_t n = th_sendmsg(fd, buf, len, fds, nfds);

	cr_assert_eq(n, (ssize_t)len, "peer sendmsg of %zu bytes with %u fds: %zd (%s)", len,
		     nfds, n, n < 0 ? strerror(errno) : "short");
}

void
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

void
th_assert_no_more(int fd)
{
	cr_assert_eq(th_inq(fd), 0, "peer: %d unexpected bytes waiting", th_inq(fd));
}

size_t
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

void
th_assert_peer_eof(int fd, const char *what)
{
	char c;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	what = what ? what : "peer";
	cr_assert_eq(poll(&p, 1, TH_HANG_MS), 1, "%s: the engine's socket was not closed", what);
	n = recv(fd, &c, 1, MSG_DONTWAIT);
	/* Closing a socket with unread bytes resets the peer instead of EOF. */
	cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "%s: expected EOF, got %zd (%s)",
		  what, n, n < 0 ? strerror(errno) : "data");
}

void
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

void
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

uint64_t
th_msg_u64(const struct th_rec *r, size_t i)
{
	uint64_t v;

	cr_assert_geq(r->msg[i].hdr.size, sizeof(v));
	memcpy(&v, r->msg[i].body, sizeof(v));
	return v;
}

int
th_dup(int fd)
{
	int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	cr_assert_geq(d, 0, "dup: %s", strerror(errno));
	return d;
}

bool
th_fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

void
th_close_all(int *fds, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
	}
}

void
th_fd_check(int mark, const char *what)
{
	int now = t_fd_count();

	cr_assert_eq(now, mark, "%s: %d fds open before, %d after (%s)", what, mark, now,
		     now > mark ? "leaked" : "closed twice or closed someone else's");
}


/* Destroy the ring, then check rec saw on_close(0) exactly once and free it. */
struct th_probe
th_probe_new(void)
{
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0, "pipe2: %s", strerror(errno));
	return (struct th_probe){ p[0], p[1] };
}

void
th_probe_fds(const struct th_probe *p, int *fds, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		fds[i] = p->wr;
	}
}

void
th_probe_drop_wr(struct th_probe *p)
{
	if (p->wr >= 0) {
		close(p->wr);
		p->wr = -1;
	}
}

void
th_probe_assert_all_closed(struct th_probe *p, const char *what)
{
	struct pollfd pf = { .fd = p->rd, .events = POLLIN };
	char c;

	th_probe_drop_wr(p);
	cr_assert_eq(poll(&pf, 1, TH_HANG_MS), 1, "%s: a copy of a sent fd is still open", what);
	cr_assert_eq(read(p->rd, &c, 1), 0, "%s: the probe pipe is not at EOF", what);
	close(p->rd);
	p->rd = -1;
}

void
th_finish(struct vhu_ring *ring, struct th_rec *rec, int peer)
{
	vhu_ring_destroy(ring);
	th_assert_closed(rec, 0, "vhu_ring_destroy");
	if (peer >= 0) {
		close(peer);
	}
	th_rec_fini(rec);
}

void
th_set_sndbuf(int fd, int bytes)
{
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)), 0,
		     "SO_SNDBUF: %s", strerror(errno));
}

bool
th_done_readable(void *arg)
{
	struct pollfd p = { .fd = *(const int *)arg, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

size_t
th_call(struct vhu_ring *ring, struct vhu_endpoint *ep, uint32_t req, const void *body,
	size_t len, const int *fds, unsigned int nfds, bool need_reply, void *want,
	size_t want_len, int *fd)
{
	struct vhu_hdr h = vhu_hdr_request(req, (uint32_t)len, need_reply);
	struct vhu_fds rfds;
	int efd = vhu_endpoint_fd(ep), rc;

	cr_assert_eq(vhu_endpoint_send_message(ep, &h, body, len, fds, nfds), 0);
	if (want == NULL) {
		return 0;
	}
	if (ring != NULL) {
		th_run_until(ring, th_done_readable, &efd, "the device's reply");
	}
	vhu_fds_init(&rfds);
	rc = vhu_endpoint_recv_body(ep, &h, want, want_len, &rfds);
	cr_assert_eq(rc, 0, "reply to %s: %s", vhu_req_name(VHU_CHAN_FRONTEND, req),
		     vhu_strerror(rc));
	cr_assert_eq(h.request, req);
	if (fd != NULL) {
		cr_assert_eq(rfds.n, 1, "the reply carries one fd");
		*fd = vhu_fds_take(&rfds, 0);
	}
	vhu_fds_close(&rfds);
	return h.size;
}
