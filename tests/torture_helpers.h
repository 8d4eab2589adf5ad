/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the torture suite (test_torture.c): a recorder that checks
 * sequence numbers instead of storing messages (a million of them must fit),
 * hostile-peer writers able to pass up to SCM_MAX_FD fds, proofs that fds
 * were closed (the read end of a pipe sees EOF only once every copy of the
 * write end is gone), memory figures from /proc, and a spawned vhu-backend.
 *
 * Everything is static inline; include after defining _GNU_SOURCE.
 */
#ifndef VHU_TEST_TORTURE_HELPERS_H
#define VHU_TEST_TORTURE_HELPERS_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "helpers.h"

/* A stretch with no completion this long means a hang (nothing else is timed). */
#define TT_HANG_MS	20000
/* The kernel's most fds per SCM_RIGHTS message (include/net/scm.h SCM_MAX_FD). */
#define TT_SCM_MAX_FD	253u

#if defined(__SANITIZE_ADDRESS__)
#define TT_SANITIZED	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TT_SANITIZED	1
#endif
#endif
#ifndef TT_SANITIZED
#define TT_SANITIZED	0
#endif

/*
 * Counts of the long runs (flood, storms) are multiplied by
 * VHU_TORTURE_SCALE (default 1: the full counts take a few seconds even
 * under ASan+UBSan; set e.g. 0.1 on a slow machine).
 */
static inline double
tt_scale(void)
{
	const char *s = getenv("VHU_TORTURE_SCALE");
	char *end;
	double v;

	if (s == NULL || *s == '\0') {
		return 1.0;
	}
	v = strtod(s, &end);
	cr_assert(end != s && *end == '\0' && v > 0 && v <= 100,
		  "VHU_TORTURE_SCALE must be a number in (0, 100], not '%s'", s);
	return v;
}

static inline unsigned int
tt_scaled(unsigned int full, unsigned int floor)
{
	double v = (double)full * tt_scale();

	return v < (double)floor ? floor : (unsigned int)v;
}

static inline uint64_t
tt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Recorder                                                            */

/*
 * What one connection saw. Message i of a sequenced stream (tt_put_seq)
 * cycles through SET_FEATURES carrying i, SET_VRING_NUM carrying i in num,
 * and GET_FEATURES; a message of another request or number is recorded as
 * the first disorder (seq_bad), so a lost, repeated or reordered message is
 * caught at the index where it happened.
 */
struct tt_rec {
	uint64_t n;		/* messages delivered */
	uint64_t nfds;		/* fds that came with them */
	bool seq_bad;
	uint64_t seq_at;	/* index of the first disorder */
	uint64_t seq_got;	/* what it carried */
	int closes;
	int reason;
	/* Replies: answer each message with a u64, its number (the one it carries, or its index). */
	bool reply;
	uint32_t reply_pad;	/* payload bytes appended to each reply */
	uint64_t replied;	/* replies queued */
	uint64_t eqfull;	/* replies refused by a full send queue (and dropped) */
	unsigned int q_peak;	/* longest send queue seen after a reply was queued */
	struct vhu_conn *conn;	/* NULL once closed */
};

static inline void
tt_rec_init(struct tt_rec *r)
{
	memset(r, 0, sizeof(*r));
}

/* The request code of message i of a sequenced stream (tt_put_seq). */
static inline uint32_t
tt_seq_req(uint64_t i)
{
	static const uint32_t req[3] = {
		VHU_REQ_SET_FEATURES, VHU_REQ_SET_VRING_NUM, VHU_REQ_GET_FEATURES,
	};

	return req[i % 3];
}

/* The number a message carries. \return false if it carries none. */
static inline bool
tt_msg_seq(const struct vhu_msg *m, uint64_t *seq)
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

static inline int
tt_on_message(struct vhu_conn *conn, struct vhu_msg *m, void *ctx)
{
	struct tt_rec *r = ctx;
	uint64_t idx = r->n++;
	uint64_t seq = UINT64_MAX;
	bool has = tt_msg_seq(m, &seq);
	uint64_t want = tt_seq_req(idx) == VHU_REQ_SET_VRING_NUM ? (uint32_t)idx : idx;
	bool ok = m->hdr.request == tt_seq_req(idx) && (!has || seq == want);

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

static inline void
tt_on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct tt_rec *r = ctx;

	(void)conn;
	r->closes++;
	r->reason = reason;
	r->conn = NULL;
}

static const struct vhu_conn_ops tt_ops = {
	.on_message = tt_on_message,
	.on_close = tt_on_close,
};

static inline void
tt_assert_seq(const struct tt_rec *r, const char *what)
{
	cr_assert(!r->seq_bad, "%s: message %llu carried %llu: lost or reordered", what,
		  (unsigned long long)r->seq_at, (unsigned long long)r->seq_got);
}

static inline void
tt_assert_open(const struct tt_rec *r, const char *what)
{
	cr_assert_eq(r->closes, 0, "%s: closed (%s)", what, vhu_errname(r->reason));
	tt_assert_seq(r, what);
}

static inline void
tt_assert_closed(const struct tt_rec *r, int reason, const char *what)
{
	cr_assert_eq(r->closes, 1, "%s: on_close fired %d times", what, r->closes);
	cr_assert_eq(r->reason, reason, "%s: closed with %s (%s), want %s", what,
		     vhu_errname(r->reason), vhu_strerror(r->reason), vhu_errname(reason));
}

/* ------------------------------------------------------------------ */
/* Ring and connections                                                */

static inline struct vhu_ring *
tt_ring(unsigned int max_conns)
{
	struct vhu_ring_opts o = { .max_conns = max_conns };
	struct vhu_ring *ring = NULL;
	int rc = vhu_ring_create(&o, &ring);

	cr_assert_eq(rc, 0, "vhu_ring_create: %s (%s)", vhu_strerror(rc), vhu_ring_error_hint(rc));
	return ring;
}

/* A back-end's options on the main socket: requests in, default limits. */
static inline struct vhu_conn_opts
tt_opts(uint8_t mode)
{
	struct vhu_conn_opts o;

	memset(&o, 0, sizeof(o));
	o.recv_mode = mode;
	o.rules.channel = VHU_CHAN_FRONTEND;
	o.rules.expect = VHU_EXPECT_REQUEST;
	return o;
}

/* Attach one end of a fresh socketpair with rec as ctx; \return the peer's end. */
static inline int
tt_attach(struct vhu_ring *ring, const struct vhu_conn_opts *o, struct tt_rec *rec)
{
	int sv[2];
	int rc;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0, "socketpair: %s",
		     strerror(errno));
	rc = vhu_conn_attach(ring, sv[0], o, &tt_ops, rec, &rec->conn);
	cr_assert_eq(rc, 0, "vhu_conn_attach: %s", vhu_strerror(rc));
	return sv[1];
}

typedef bool (*tt_done_fn)(void *arg);

/* Drive the ring until done(arg); fails after TT_HANG_MS without a completion. */
static inline void
tt_run_until(struct vhu_ring *ring, tt_done_fn done, void *arg, const char *what)
{
	uint64_t last = tt_now_ns();

	while (!done(arg)) {
		int n = vhu_ring_wait(ring, 100);

		cr_assert_geq(n, 0, "%s: vhu_ring_wait: %s", what, vhu_strerror(n));
		if (n > 0) {
			last = tt_now_ns();
		}
		cr_assert_lt(tt_now_ns() - last, (uint64_t)TT_HANG_MS * 1000000ull,
			     "%s: no completion for %d ms", what, TT_HANG_MS);
	}
}

/* Reap whatever is ready now (SQEs queued by the last callbacks go out too). */
static inline void
tt_flush(struct vhu_ring *ring)
{
	for (int i = 0; i < 8; i++) {
		int n = vhu_ring_poll(ring);

		cr_assert_geq(n, 0, "vhu_ring_poll: %s", vhu_strerror(n));
		if (n == 0) {
			break;
		}
	}
}

struct tt_wait_n {
	const struct tt_rec *rec;
	uint64_t n;
};

static inline bool
tt_done_n(void *arg)
{
	const struct tt_wait_n *w = arg;

	return w->rec->n >= w->n || w->rec->closes > 0;
}

/* Drive until rec has n messages; fails if the connection closed first. */
static inline void
tt_wait_msgs(struct vhu_ring *ring, struct tt_rec *rec, uint64_t n, const char *what)
{
	struct tt_wait_n w = { rec, n };

	tt_run_until(ring, tt_done_n, &w, what);
	cr_assert_eq(rec->closes, 0, "%s: closed (%s) after %llu of %llu messages", what,
		     vhu_errname(rec->reason), (unsigned long long)rec->n, (unsigned long long)n);
}

static inline bool
tt_done_closed(void *arg)
{
	return ((const struct tt_rec *)arg)->closes > 0;
}

static inline void
tt_wait_closed(struct vhu_ring *ring, struct tt_rec *rec, const char *what)
{
	tt_run_until(ring, tt_done_closed, rec, what);
}

/* ------------------------------------------------------------------ */
/* Building messages                                                   */

/* Append a header with explicit fields, then len body bytes. \return the new end. */
static inline size_t
tt_put_raw(uint8_t *buf, size_t off, uint32_t req, uint32_t flags, uint32_t size,
	   const void *body, size_t len)
{
	struct vhu_hdr h = { req, flags, size };

	memcpy(buf + off, &h, VHU_HDR_SIZE);
	if (len) {
		memcpy(buf + off + VHU_HDR_SIZE, body, len);
	}
	return off + VHU_HDR_SIZE + len;
}

static inline size_t
tt_put(uint8_t *buf, size_t off, uint32_t req, const void *body, uint32_t len)
{
	return tt_put_raw(buf, off, req, VHU_VERSION, len, body, len);
}

static inline size_t
tt_put_u64(uint8_t *buf, size_t off, uint32_t req, uint64_t v)
{
	return tt_put(buf, off, req, &v, 8);
}

/* Message number i of a sequenced stream (see struct tt_rec). */
static inline size_t
tt_put_seq(uint8_t *buf, size_t off, uint64_t i)
{
	struct vhu_vring_state vs = { 0, (uint32_t)i };

	switch (tt_seq_req(i)) {
	case VHU_REQ_SET_FEATURES:
		return tt_put_u64(buf, off, VHU_REQ_SET_FEATURES, i);
	case VHU_REQ_SET_VRING_NUM:
		return tt_put(buf, off, VHU_REQ_SET_VRING_NUM, &vs, sizeof(vs));
	default:
		return tt_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
}

/* A memory table of n disjoint, valid regions; \return its size field. */
static inline uint32_t
tt_mem_table(struct vhu_mem_table *mt, unsigned int n)
{
	memset(mt, 0, sizeof(*mt));
	mt->nregions = n;
	for (unsigned int i = 0; i < n; i++) {
		mt->regions[i].guest_phys_addr = (uint64_t)i << 30;
		mt->regions[i].size = 1ull << 20;
		mt->regions[i].user_addr = 0x7f0000000000ull + ((uint64_t)i << 30);
		mt->regions[i].mmap_offset = 0;
	}
	return VHU_MEM_TABLE_SIZE(n);
}

/* ------------------------------------------------------------------ */
/* Peer side                                                           */

/* One sendmsg of buf with nfds fds (up to SCM_MAX_FD); all of it must go. */
static inline void
tt_send(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	static union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * TT_SCM_MAX_FD)];
	} cb;
	ssize_t n;

	cr_assert_leq(nfds, TT_SCM_MAX_FD);
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
	n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	cr_assert_eq(n, (ssize_t)len, "peer sendmsg of %zu bytes with %u fds: %zd (%s)", len,
		     nfds, n, n < 0 ? strerror(errno) : "short");
}

/* Like tt_send, for a forked child: no Criterion, \return false on failure. */
static inline bool
tt_child_send(int fd, const void *buf, size_t len, const int *fds, unsigned int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	static union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * TT_SCM_MAX_FD)];
	} cb;

	if (nfds > TT_SCM_MAX_FD) {
		return false;
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
	return sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)len;
}

/* The peer sees EOF (or a reset, if bytes were left unread): the socket was closed. */
static inline void
tt_assert_peer_eof(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint8_t b[256];
	ssize_t n;

	for (;;) {
		cr_assert_eq(poll(&p, 1, TT_HANG_MS), 1, "%s: the socket was not closed", what);
		n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
		if (n <= 0) {
			break;
		}
	}
	cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "%s: expected EOF, got %zd (%s)",
		  what, n, n < 0 ? strerror(errno) : "data");
}

/*
 * A pipe whose write end is what a hostile peer sends (as many copies as it
 * likes). Once the sender's copies are closed, the read end reports EOF only
 * when every copy the receiver got is closed too: proof that no fd leaked.
 */
struct tt_probe {
	int rd;
	int wr;
};

static inline struct tt_probe
tt_probe_new(void)
{
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0, "pipe2: %s", strerror(errno));
	return (struct tt_probe){ p[0], p[1] };
}

/* Fill fds[0..n) with the probe's write end (the kernel installs n distinct fds). */
static inline void
tt_probe_fds(const struct tt_probe *p, int *fds, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		fds[i] = p->wr;
	}
}

static inline void
tt_probe_drop_wr(struct tt_probe *p)
{
	if (p->wr >= 0) {
		close(p->wr);
		p->wr = -1;
	}
}

/* Every copy of the write end is closed (bounded wait: fput may be deferred). */
static inline void
tt_probe_assert_all_closed(struct tt_probe *p, const char *what)
{
	struct pollfd pf = { .fd = p->rd, .events = POLLIN };
	char c;

	tt_probe_drop_wr(p);
	cr_assert_eq(poll(&pf, 1, TT_HANG_MS), 1, "%s: a copy of a sent fd is still open", what);
	cr_assert_eq(read(p->rd, &c, 1), 0, "%s: the probe pipe is not at EOF", what);
	close(p->rd);
	p->rd = -1;
}

/* ------------------------------------------------------------------ */
/* Memory figures                                                      */

/* Resident set of this process in bytes (/proc/self/statm). */
static inline long
tt_rss_self(void)
{
	long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%ld %ld", &size, &res), 2);
	fclose(f);
	return res * sysconf(_SC_PAGESIZE);
}

/* VmRSS of another process in bytes (/proc/PID/status). */
static inline long
tt_rss_of(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
			break;
		}
	}
	fclose(f);
	cr_assert_geq(kb, 0, "no VmRSS in %s", path);
	return kb * 1024;
}

/* Open fds of a process (NULL prefix), or those whose link starts with prefix. */
static inline int
tt_fds_of(pid_t pid, const char *prefix)
{
	char dir[64], path[320], target[256];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		ssize_t l;

		if (e->d_name[0] == '.') {
			continue;
		}
		if (prefix == NULL) {
			n++;
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		l = readlink(path, target, sizeof(target) - 1);
		if (l < 0) {
			continue;
		}
		target[l] = '\0';
		if (strncmp(target, prefix, strlen(prefix)) == 0) {
			n++;
		}
	}
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------ */
/* A spawned vhu-backend                                               */

struct tt_backend {
	struct t_proc p;	/* stdout and stderr on p.out */
	char path[108];
};

#define TT_BACKEND_INIT	{ .p = T_PROC_INIT }

static inline void
tt_backend_kill(struct tt_backend *be)
{
	t_proc_stop(&be->p, SIGKILL);
}

/* Next line of the back-end's output; false at EOF. */
static inline bool
tt_backend_line(struct tt_backend *be, char *line, size_t len)
{
	return t_proc_line(&be->p, line, len);
}

/* Skip output up to a line containing what; fails at EOF. */
static inline void
tt_backend_wait_line(struct tt_backend *be, const char *what)
{
	t_proc_wait_line(&be->p, what);
}

/* Start tools/vhu-backend on t_path(name) in mode ("exact" or "stream"); wait until it listens. */
static inline void
tt_backend_start(struct tt_backend *be, const char *name, const char *mode)
{
	const char *args[] = { "--socket", NULL, "--recv-mode", mode, NULL };
	char want[256];

	snprintf(be->path, sizeof(be->path), "%s", t_path(name));
	args[1] = be->path;
	t_proc_spawn(&be->p, "vhu-backend", args, true);
	snprintf(want, sizeof(want), "vhu-backend: listening on %s", be->path);
	tt_backend_wait_line(be, want);
}

/* SIGTERM must end it with status 0 (under ASan that also means: nothing leaked). */
static inline void
tt_backend_stop(struct tt_backend *be)
{
	int status;

	cr_assert_eq(kill(be->p.pid, SIGTERM), 0);
	status = t_proc_stop(&be->p, 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "back-end wait status 0x%x",
		  status);
}

/* A blocking client socket connected to path. */
static inline int
tt_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", path,
		     strerror(errno));
	return fd;
}

/* Read exactly len bytes; fails after TT_HANG_MS without data, or on EOF. */
static inline void
tt_read_exact(int fd, void *buf, size_t len, const char *what)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		cr_assert_eq(poll(&p, 1, TT_HANG_MS), 1, "%s: no data after %zu of %zu bytes",
			     what, got, len);
		n = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
		cr_assert_gt(n, 0, "%s: recv after %zu of %zu bytes: %zd (%s)", what, got, len, n,
			     n < 0 ? strerror(errno) : "EOF");
		got += (size_t)n;
	}
}

#endif
