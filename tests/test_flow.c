/* SPDX-License-Identifier: MIT */
/*
 * Receive-side flow control and the connection lifecycle, in both receive
 * modes: deep pipelining is answered (the engine stops reading instead of
 * refusing replies), pause/resume and VHU_MSG_HOLD keep every message, its
 * fds and its order, a paused connection does not starve the others, a
 * peer that hangs up is always seen, and one that only stops sending still
 * gets its replies.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "uring_helpers.h"
#include "peer.h"

#define EXACT	VHU_RECV_EXACT
#define STREAM	VHU_RECV_STREAM

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED	1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED	0
#endif

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *
mode_name(uint8_t mode)
{
	return mode == STREAM ? "stream" : "exact";
}

/* ------------------------------------------------------------------ */
/* A server that answers GET_FEATURES with a sequence number           */

struct echo {
	struct vhu_conn *conn;
	bool hold;		/* answer VHU_MSG_HOLD */
	int probe_fd;		/* > 0: the peer's end, looked at when reply probe_at is due */
	uint64_t probe_at;
	int probe_inq;		/* bytes readable at the peer then */
	uint64_t next;		/* value of the next reply */
	uint64_t eqfull;	/* replies refused */
	unsigned int closes;
	int reason;
};

static int
echo_message(struct vhu_conn *conn, struct vhu_msg *m, void *ctx)
{
	struct echo *e = ctx;
	struct vhu_hdr h = vhu_hdr_reply(m->hdr.request, 8);
	int rc;

	if (e->hold) {
		return VHU_MSG_HOLD;
	}
	if (m->hdr.request != VHU_REQ_GET_FEATURES) {
		return 0;
	}
	if (e->probe_fd > 0 && e->next == e->probe_at) {
		e->probe_inq = th_inq(e->probe_fd);
	}
	rc = vhu_conn_send(conn, &h, &e->next, 8, NULL, 0, NULL, 0);
	if (rc == -VHU_EQFULL) {
		e->eqfull++;
		return 0;
	}
	e->next++;
	return rc;
}

static void
echo_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct echo *e = ctx;

	e->closes++;
	e->reason = reason;
	e->conn = NULL;
}

static const struct vhu_conn_ops echo_ops = {
	.on_message = echo_message,
	.on_close = echo_close,
};

static int
echo_attach(struct vhu_ring *ring, uint8_t mode, struct echo *e)
{
	struct vhu_conn_opts o = th_opts(mode);
	int sv[2];

	memset(e, 0, sizeof(*e));
	e->reason = 1;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_conn_attach(ring, sv[0], &o, &echo_ops, e, &e->conn), 0);
	return sv[1];
}

/*
 * A front-end that keeps depth GET_FEATURES requests in flight, reading
 * replies while it writes (non-blocking), until total are answered. Every
 * reply is checked: header, and its value is the request's index (in order).
 */
struct pipeliner {
	int fd;
	uint64_t total, depth;
	uint64_t sent_bytes;	/* of total * 12 */
	uint64_t got;		/* replies read and checked */
	uint8_t in[64 * 1024 + 20];
	size_t have;
};

static bool
pipeliner_step(struct pipeliner *p)
{
	static uint8_t reqs[4096 * VHU_HDR_SIZE];
	static bool built;
	bool moved = false;

	if (!built) {
		for (size_t i = 0; i < sizeof(reqs) / VHU_HDR_SIZE; i++) {
			struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);

			memcpy(reqs + i * VHU_HDR_SIZE, &h, VHU_HDR_SIZE);
		}
		built = true;
	}
	for (;;) {
		uint64_t allowed = (p->got + p->depth < p->total ? p->got + p->depth : p->total) *
				   VHU_HDR_SIZE;
		uint64_t want = allowed - p->sent_bytes;
		/* Keep request boundaries aligned to the static buffer. */
		size_t off = (size_t)(p->sent_bytes % sizeof(reqs));
		size_t len = sizeof(reqs) - off;
		ssize_t n;

		if (want == 0) {
			break;
		}
		if (len > want) {
			len = (size_t)want;
		}
		n = send(p->fd, reqs + off, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			cr_assert_eq(errno, EAGAIN, "pipeliner send: %s", strerror(errno));
			break;
		}
		p->sent_bytes += (uint64_t)n;
		moved = true;
	}
	for (;;) {
		ssize_t n = recv(p->fd, p->in + p->have, sizeof(p->in) - p->have, MSG_DONTWAIT);
		size_t k = 0;

		if (n < 0) {
			cr_assert_eq(errno, EAGAIN, "pipeliner recv: %s", strerror(errno));
			break;
		}
		cr_assert_gt(n, 0, "the server closed the connection after %llu of %llu replies",
			     (unsigned long long)p->got, (unsigned long long)p->total);
		p->have += (size_t)n;
		for (; p->have - k >= 20; k += 20) {
			struct vhu_hdr h;
			uint64_t v;

			memcpy(&h, p->in + k, sizeof(h));
			memcpy(&v, p->in + k + VHU_HDR_SIZE, 8);
			cr_assert(h.request == VHU_REQ_GET_FEATURES &&
				  h.flags == (VHU_VERSION | VHU_FLAG_REPLY) && h.size == 8,
				  "reply %llu: request %u flags %#x size %u",
				  (unsigned long long)p->got, h.request, h.flags, h.size);
			cr_assert_eq(v, p->got, "reply %llu carries %llu: lost or reordered",
				     (unsigned long long)p->got, (unsigned long long)v);
			p->got++;
		}
		memmove(p->in, p->in + k, p->have - k);
		p->have -= k;
		moved = true;
	}
	return moved;
}

/* Drive ring and pipeliner together until every reply is in; fail on a stall. */
static void
pipeline_run(struct vhu_ring *ring, struct pipeliner *p, uint64_t stop_at, const char *what)
{
	uint64_t last = now_ns();

	while (p->got < stop_at) {
		bool moved = pipeliner_step(p);
		int r = vhu_ring_poll(ring);

		cr_assert_geq(r, 0, "vhu_ring_poll: %s", vhu_strerror(r));
		if (moved || r > 0) {
			last = now_ns();
		} else {
			struct pollfd pf = { .fd = p->fd, .events = POLLIN };

			/* Idle: wait for the engine (a completion) or the socket, briefly. */
			r = vhu_ring_wait(ring, 1);
			cr_assert_geq(r, 0);
			(void)poll(&pf, 1, 0);
		}
		cr_assert_lt(now_ns() - last, (uint64_t)TH_HANG_MS * 1000000ull,
			     "%s: stalled at %llu of %llu replies (%llu bytes of requests sent)",
			     what, (unsigned long long)p->got, (unsigned long long)p->total,
			     (unsigned long long)p->sent_bytes);
	}
}

struct pipe_case {
	uint8_t mode;
	unsigned int depth;
};

ParameterizedTestParameters(flow, pipelining_is_answered)
{
	static struct pipe_case cases[] = {
		{ EXACT, 512 }, { EXACT, 4096 }, { EXACT, 65536 },
		{ STREAM, 512 }, { STREAM, 4096 }, { STREAM, 65536 },
	};

	return cr_make_param_array(struct pipe_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/*
 * A front-end pipelines far deeper than the send queue (256 messages): the
 * engine stops reading while the queue lacks room for replies, so every
 * request is answered, in order, no reply is refused, the connection stays
 * up, and the steady state allocates nothing.
 */
ParameterizedTest(struct pipe_case *pc, flow, pipelining_is_answered)
{
	struct vhu_ring *ring = th_ring(0);
	struct pipeliner *p = calloc(1, sizeof(*p));
	struct echo e;
	uint64_t a0 = 0, a1 = 0, t0, t1;

	cr_assert_not_null(p);
	p->fd = echo_attach(ring, pc->mode, &e);
	p->depth = pc->depth;
	p->total = pc->depth * 3 > 30000 ? pc->depth * 3 : 30000;
	pipeline_run(ring, p, p->total / 3, "warm-up");
	a0 = bench_allocs();
	t0 = now_ns();
	pipeline_run(ring, p, 2 * p->total / 3, "steady state");
	t1 = now_ns();
	a1 = bench_allocs();
	pipeline_run(ring, p, p->total, "the rest");
	cr_assert_eq(e.closes, 0, "the connection closed (%s)", vhu_strerror(e.reason));
	cr_assert_eq(e.eqfull, 0, "%llu replies refused", (unsigned long long)e.eqfull);
	cr_assert_eq(e.next, p->total);
	cr_assert_eq(p->got, p->total);
	if (bench_allocs_counted()) {
		cr_assert_eq(a1 - a0, 0, "%llu allocations in the steady state",
			     (unsigned long long)(a1 - a0));
	}
	cr_log_info("%s depth %u: %llu requests, %.0f msg/s in the steady state",
		    mode_name(pc->mode), pc->depth, (unsigned long long)p->total,
		    (double)(p->total / 3) * 1e9 / (double)(t1 - t0));
	vhu_ring_destroy(ring);
	cr_assert_eq(e.closes, 1);
	close(p->fd);
	free(p);
}

/*
 * A peer that writes requests and never reads: the engine answers until
 * the send queue is full, then stops reading, so the peer's socket fills
 * and its writes return EAGAIN; nothing is refused, the queue stays within
 * its bound, and a second connection on the ring is answered throughout.
 * When the deaf peer reads at last, every request is answered in order.
 */
static void
deaf_then_reads(uint8_t mode)
{
	struct vhu_ring *ring = th_ring(0);
	struct pipeliner *p = calloc(1, sizeof(*p)), *good = calloc(1, sizeof(*good));
	struct echo e, g;
	uint64_t good_total = 0;

	cr_assert_not_null(p);
	cr_assert_not_null(good);
	p->fd = echo_attach(ring, mode, &e);
	good->fd = echo_attach(ring, mode, &g);
	p->total = UINT64_MAX;
	p->depth = UINT64_MAX / 2;
	good->depth = 16;
	/* Deaf: write until the socket pushes back and the engine stopped reading. */
	for (int rounds = 0; rounds < 4; ) {
		static uint8_t reqs[64 * VHU_HDR_SIZE];
		size_t off;
		ssize_t n;

		if (reqs[0] == 0) {
			for (size_t i = 0; i < 64; i++) {
				struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);

				memcpy(reqs + i * VHU_HDR_SIZE, &h, VHU_HDR_SIZE);
			}
		}
		off = (size_t)(p->sent_bytes % sizeof(reqs));
		n = send(p->fd, reqs + off, sizeof(reqs) - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			p->sent_bytes += (uint64_t)n;
			rounds = 0;
		} else {
			cr_assert_eq(errno, EAGAIN);
			rounds++;
		}
		/* The other connection keeps being answered meanwhile. */
		good->total = good_total += 16;
		pipeline_run(ring, good, good->total, "the good connection beside a deaf peer");
		th_flush(ring);
		cr_assert_leq(vhu_conn_sendq_len(e.conn), 256);
		cr_assert_lt(p->sent_bytes, 64ull << 20, "64 MiB taken from a deaf peer");
	}
	cr_assert_eq(e.closes, 0, "deaf peer closed: %s", vhu_strerror(e.reason));
	cr_assert_eq(e.eqfull, 0, "%llu replies refused", (unsigned long long)e.eqfull);
	cr_assert_lt(e.next, p->sent_bytes / VHU_HDR_SIZE,
		     "every request was answered: the peer never had to stop");
	cr_log_info("%s: a deaf peer wrote %llu KiB (%llu requests) before the socket pushed "
		    "back; %llu answered meanwhile", mode_name(mode),
		    (unsigned long long)(p->sent_bytes >> 10),
		    (unsigned long long)(p->sent_bytes / VHU_HDR_SIZE), (unsigned long long)e.next);
	/* Now it reads (and ends the request it was cut in): all are answered, in order. */
	p->total = (p->sent_bytes + VHU_HDR_SIZE - 1) / VHU_HDR_SIZE;
	p->depth = p->total;
	pipeline_run(ring, p, p->total, "the deaf peer reading at last");
	cr_assert_eq(e.next, p->total);
	cr_assert_eq(e.closes, 0);
	vhu_ring_destroy(ring);
	close(p->fd);
	close(good->fd);
	free(p);
	free(good);
}

Test(flow, deaf_peer_stops_being_read_exact)
{
	deaf_then_reads(EXACT);
}

Test(flow, deaf_peer_stops_being_read_stream)
{
	deaf_then_reads(STREAM);
}

/*
 * A pipeline that arrives in one read is handled in one pass; its first
 * replies must not wait for the end of that pass (the peer then works on
 * them while the rest are handled). 200 requests in one write: when the
 * 151st is handled, at least the first 64 replies are readable at the peer.
 */
Test(flow, long_pipeline_replies_leave_during_the_pass)
{
	enum { N = 200, EARLY = 64 };
	struct vhu_ring *ring = th_ring(0);
	struct pipeliner *p = calloc(1, sizeof(*p));
	static uint8_t reqs[N * VHU_HDR_SIZE];
	struct echo e;

	cr_assert_not_null(p);
	p->fd = echo_attach(ring, STREAM, &e);
	e.probe_fd = p->fd;
	e.probe_at = 150;
	e.probe_inq = -1;
	for (size_t i = 0; i < N; i++) {
		struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);

		memcpy(reqs + i * VHU_HDR_SIZE, &h, VHU_HDR_SIZE);
	}
	cr_assert_eq(send(p->fd, reqs, sizeof(reqs), MSG_NOSIGNAL), (ssize_t)sizeof(reqs));
	p->total = N;
	p->depth = N;
	p->sent_bytes = sizeof(reqs);
	pipeline_run(ring, p, N, "a 200-request pipeline in one write");
	cr_assert_eq(e.next, N);
	cr_assert_geq(e.probe_inq, EARLY * BENCH_REPLY_SIZE,
		      "%d bytes of replies out when request 151 was handled", e.probe_inq);
	cr_assert_eq(e.closes, 0);
	vhu_ring_destroy(ring);
	close(p->fd);
	free(p);
}

/* ------------------------------------------------------------------ */
/* Pause, resume, VHU_MSG_HOLD                                         */

/* One-way SET_VRING_CALL messages, each with its own eventfd, counter i + 1. */
struct calls {
	int fd[8];
	struct stat st[8];
	unsigned int n;
};

static void
calls_send(int peer, struct calls *cs, unsigned int n)
{
	cs->n = n;
	for (unsigned int i = 0; i < n; i++) {
		uint8_t buf[64];
		uint64_t idx = i;
		size_t len;

		cs->fd[i] = eventfd((unsigned int)i + 1, EFD_CLOEXEC);
		cr_assert_geq(cs->fd[i], 0);
		cr_assert_eq(fstat(cs->fd[i], &cs->st[i]), 0);
		len = th_put(buf, 0, VHU_REQ_SET_VRING_CALL, &idx, 8);
		th_send(peer, buf, len, &cs->fd[i], 1);
	}
}

static void
calls_close(struct calls *cs)
{
	for (unsigned int i = 0; i < cs->n; i++) {
		close(cs->fd[i]);
	}
}

/* Message i of the recorder is call i, and its fd is the very eventfd sent. */
static void
calls_check(const struct th_rec *rec, const struct calls *cs)
{
	cr_assert_eq(rec->n, cs->n, "%zu of %u messages", rec->n, cs->n);
	for (unsigned int i = 0; i < cs->n; i++) {
		const struct th_msg *m = &rec->msg[i];
		struct stat st;
		uint64_t v = 0, idx;

		memcpy(&idx, m->body, 8);
		cr_assert_eq(idx, i, "message %u is call %llu: reordered", i,
			     (unsigned long long)idx);
		cr_assert_eq(m->nfds, 1, "call %u arrived with %u fds", i, m->nfds);
		cr_assert_eq(fstat(m->fd[0], &st), 0);
		cr_assert(st.st_dev == cs->st[i].st_dev && st.st_ino == cs->st[i].st_ino,
			  "call %u: its fd is another file", i);
		cr_assert_eq(read(m->fd[0], &v, 8), 8);
		cr_assert_eq(v, i + 1, "call %u: eventfd counter %llu", i, (unsigned long long)v);
	}
}

/*
 * The recorder takes fds out of the message: for VHU_MSG_HOLD the fds must
 * stay, so this handler decides before recording.
 */
static int
hold_on_message(struct vhu_conn *conn, struct vhu_msg *m, void *ctx)
{
	struct th_rec *rec = ctx;

	if (rec->n == 2 && rec->hook_calls++ == 0) {
		return VHU_MSG_HOLD;
	}
	return th_on_message(conn, m, ctx);
}

/*
 * on_message answers VHU_MSG_HOLD for the third of five calls: the
 * connection pauses with it kept, nothing more is delivered while paused,
 * and after vhu_conn_resume_recv() it comes again, first, then the rest,
 * each with its own eventfd (the same file).
 */
static void
hold_redelivers(uint8_t mode)
{
	static const struct vhu_conn_ops ops = { .on_message = hold_on_message,
						 .on_close = th_on_close };
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec;
	struct calls cs;
	int sv[2];

	th_rec_init(&rec);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_conn_attach(ring, sv[0], &o, &ops, &rec, &rec.conn), 0);
	calls_send(sv[1], &cs, 5);
	th_wait_msgs(ring, &rec, 2, "calls");
	th_flush(ring);
	cr_assert(vhu_conn_recv_paused(rec.conn));
	cr_assert_eq(rec.n, 2, "%zu messages delivered while paused", rec.n);
	cr_assert_eq(rec.hook_calls, 1);
	vhu_conn_resume_recv(rec.conn);
	cr_assert(!vhu_conn_recv_paused(rec.conn));
	th_wait_msgs(ring, &rec, 5, "calls");
	calls_check(&rec, &cs);
	th_assert_open(&rec, "after the redelivery");
	vhu_ring_destroy(ring);
	th_assert_closed(&rec, 0, "destroy");
	calls_close(&cs);
	close(sv[1]);
	th_rec_fini(&rec);
}

Test(flow, hold_redelivers_exact)
{
	hold_redelivers(EXACT);
}

Test(flow, hold_redelivers_stream)
{
	hold_redelivers(STREAM);
}

static int
pause_after_second(struct th_rec *rec, struct vhu_conn *conn, struct th_msg *m)
{
	if (rec->n == 2) {
		vhu_conn_pause_recv(conn);
	}
	return 0;
}

/*
 * Paused from inside on_message (after the second call) and from outside
 * (before any byte arrives): nothing more is delivered, the bytes wait,
 * and resume delivers everything in order with its fds.
 */
static void
pause_resume(uint8_t mode, bool inside)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec;
	struct calls cs;
	int peer;

	th_rec_init(&rec);
	if (inside) {
		rec.hook = pause_after_second;
	}
	peer = th_attach(ring, &o, &rec);
	if (!inside) {
		vhu_conn_pause_recv(rec.conn);
		th_flush(ring);
	}
	calls_send(peer, &cs, 6);
	if (inside) {
		th_wait_msgs(ring, &rec, 2, "calls");
	}
	/* Let every completion that can come, come: one per connection at most. */
	for (int i = 0; i < 4; i++) {
		vhu_ring_wait(ring, 0);
		th_flush(ring);
	}
	cr_assert(vhu_conn_recv_paused(rec.conn));
	cr_assert_eq(rec.n, inside ? 2 : 0, "%zu messages delivered while paused", rec.n);
	if (mode == EXACT) {
		/* One read at most was in flight: the rest waits in the socket. */
		cr_assert_gt(th_inq(vhu_conn_fd(rec.conn)), 0, "paused, yet the socket was read dry");
	}
	vhu_conn_resume_recv(rec.conn);
	th_wait_msgs(ring, &rec, 6, "calls");
	calls_check(&rec, &cs);
	vhu_ring_destroy(ring);
	calls_close(&cs);
	close(peer);
	th_rec_fini(&rec);
}

Test(flow, pause_inside_exact)
{
	pause_resume(EXACT, true);
}

Test(flow, pause_inside_stream)
{
	pause_resume(STREAM, true);
}

Test(flow, pause_outside_exact)
{
	pause_resume(EXACT, false);
}

Test(flow, pause_outside_stream)
{
	pause_resume(STREAM, false);
}

/* A handler that takes an fd and then asks for the message again breaks the rule. */
static int
take_then_hold(struct vhu_conn *conn, struct vhu_msg *m, void *ctx)
{
	int fd = vhu_fds_take(&m->fds, 0);

	close(fd);
	return VHU_MSG_HOLD;
}

Test(flow, hold_after_taking_fds_is_refused)
{
	for (int mode = EXACT; mode <= STREAM; mode++) {
		static const struct vhu_conn_ops ops = { .on_message = take_then_hold,
							 .on_close = th_on_close };
		struct vhu_ring *ring = th_ring(0);
		struct vhu_conn_opts o = th_opts((uint8_t)mode);
		struct th_rec rec;
		struct calls cs;
		int sv[2];

		th_rec_init(&rec);
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		cr_assert_eq(vhu_conn_attach(ring, sv[0], &o, &ops, &rec, &rec.conn), 0);
		calls_send(sv[1], &cs, 1);
		th_wait_closed(ring, &rec, "the hang-up");
		th_assert_closed(&rec, -EINVAL, "VHU_MSG_HOLD after taking the fd");
		vhu_ring_destroy(ring);
		calls_close(&cs);
		close(sv[1]);
		th_rec_fini(&rec);
	}
}

/* ------------------------------------------------------------------ */
/* A paused connection does not starve the others                      */

/*
 * Stream mode, 8 provided buffers: 4 connections are paused (VHU_MSG_HOLD
 * on their first message) with a buffer's worth of requests read, so each
 * keeps as much as the engine lets it (its buffer while few are kept, else
 * a copy); 255 others, more than the buffers, keep being answered round
 * after round. Resumed, the paused ones are answered in full, in order.
 */
Test(flow, paused_connections_do_not_starve_others)
{
	enum { PAUSED = 4, ACTIVE = 255, ROUNDS = 20, BURST = 300 };
	struct vhu_ring_opts ro = { .stream_bufs = 8, .stream_buf_size = 4352 };
	struct vhu_ring *ring = NULL;
	struct pipeliner *act = calloc(ACTIVE, sizeof(*act));
	struct pipeliner *pz = calloc(PAUSED, sizeof(*pz));
	struct echo *ea = calloc(ACTIVE, sizeof(*ea)), ep[PAUSED];
	struct vhu_ring_stats st;
	uint8_t burst[BURST * VHU_HDR_SIZE];

	cr_assert(act && pz && ea);
	cr_assert_eq(vhu_ring_create(&ro, &ring), 0);
	for (size_t i = 0; i < BURST; i++) {
		struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);

		memcpy(burst + i * VHU_HDR_SIZE, &h, VHU_HDR_SIZE);
	}
	for (int k = 0; k < PAUSED; k++) {
		pz[k].fd = echo_attach(ring, STREAM, &ep[k]);
		ep[k].hold = true;
		th_send(pz[k].fd, burst, sizeof(burst), NULL, 0);
	}
	for (int i = 0; i < 8; i++) {
		vhu_ring_wait(ring, 0);
		th_flush(ring);
	}
	for (int k = 0; k < PAUSED; k++) {
		cr_assert(vhu_conn_recv_paused(ep[k].conn), "paused connection %d", k);
	}
	for (int i = 0; i < ACTIVE; i++) {
		act[i].fd = echo_attach(ring, STREAM, &ea[i]);
		act[i].depth = 8;
	}
	for (int r = 1; r <= ROUNDS; r++) {
		for (int i = 0; i < ACTIVE; i++) {
			act[i].total = (uint64_t)r * 8;
			pipeliner_step(&act[i]);
		}
		for (int i = 0; i < ACTIVE; i++) {
			pipeline_run(ring, &act[i], act[i].total, "an active connection beside "
				     "paused ones");
		}
	}
	for (int i = 0; i < ACTIVE; i++) {
		cr_assert_eq(ea[i].closes, 0);
		cr_assert_eq(ea[i].eqfull, 0);
	}
	/* Resumed: each paused connection is answered in full, in order. */
	for (int k = 0; k < PAUSED; k++) {
		ep[k].hold = false;
		vhu_conn_resume_recv(ep[k].conn);
		pz[k].sent_bytes = sizeof(burst);
		pz[k].total = BURST;
		pz[k].depth = BURST;
		pipeline_run(ring, &pz[k], BURST, "a paused connection, resumed");
		cr_assert_eq(ep[k].closes, 0);
		cr_assert_eq(ep[k].next, BURST);
	}
	vhu_ring_get_stats(ring, &st);
	cr_log_info("255 active connections, 4 paused, 8 buffers: %llu ENOBUFS recovered",
		    (unsigned long long)st.enobufs);
	vhu_ring_destroy(ring);
	for (int i = 0; i < ACTIVE; i++) {
		close(act[i].fd);
	}
	for (int k = 0; k < PAUSED; k++) {
		close(pz[k].fd);
	}
	free(act);
	free(pz);
	free(ea);
}

/* ------------------------------------------------------------------ */
/* Hang-ups                                                            */

/*
 * A peer that sends one request needing a reply and shuts down its sending
 * side (data and EOF arrive together) still gets the reply; then the
 * connection closes as disconnected.
 */
static void
half_close(uint8_t mode)
{
	for (int i = 0; i < 50; i++) {
		struct vhu_ring *ring = th_ring(0);
		struct echo e;
		uint8_t buf[64];
		int peer = echo_attach(ring, mode, &e);
		unsigned int nreq = 1 + (unsigned int)(i % 3);
		size_t len = 0;

		for (unsigned int k = 0; k < nreq; k++) {
			len = th_put(buf, len, VHU_REQ_GET_FEATURES, NULL, 0);
		}
		th_send(peer, buf, len, NULL, 0);
		cr_assert_eq(shutdown(peer, SHUT_WR), 0);
		while (e.closes == 0) {
			cr_assert_geq(vhu_ring_wait(ring, TH_HANG_MS), 0);
		}
		cr_assert_eq(e.reason, -VHU_EDISCONNECT, "try %d: closed with %s", i,
			     vhu_strerror(e.reason));
		for (unsigned int k = 0; k < nreq; k++) {
			struct vhu_hdr h;
			uint64_t v;

			th_read_exact(peer, buf, 20);
			memcpy(&h, buf, sizeof(h));
			memcpy(&v, buf + VHU_HDR_SIZE, 8);
			cr_assert(h.flags == (VHU_VERSION | VHU_FLAG_REPLY) && v == k,
				  "try %d: reply %u", i, k);
		}
		th_assert_peer_eof(peer, "after the replies");
		vhu_ring_destroy(ring);
		close(peer);
	}
}

Test(flow, half_closed_peer_gets_replies_exact)
{
	half_close(EXACT);
}

Test(flow, half_closed_peer_gets_replies_stream)
{
	half_close(STREAM);
}

/*
 * The hang-up race: a second thread sends a message (one-way, with an fd,
 * or a cut one) and closes while the ring is armed, thousands of times. The
 * engine sees every hang-up with the right reason and keeps no fd. A
 * multishot receive on AF_UNIX misses some of these EOFs for good.
 */
struct racer {
	int pipe[2];
	pthread_t th;
};

static void *
racer_main(void *arg)
{
	struct racer *rc = arg;
	int peer;

	while (read(rc->pipe[0], &peer, sizeof(peer)) == sizeof(peer)) {
		uint8_t buf[128];
		uint64_t idx = 0;
		size_t len;
		int efd;

		switch (peer & 3) {
		case 0:
			len = th_put(buf, 0, VHU_REQ_SET_OWNER, NULL, 0);
			(void)send(peer >> 2, buf, len, MSG_NOSIGNAL);
			break;
		case 1:
			efd = eventfd(0, EFD_CLOEXEC);
			len = th_put(buf, 0, VHU_REQ_SET_VRING_CALL, &idx, 8);
			(void)th_sendmsg(peer >> 2, buf, len, &efd, 1);
			close(efd);
			break;
		default:
			/* 30 bytes of a 52-byte message. */
			len = th_put_raw(buf, 0, VHU_REQ_SET_MEM_TABLE, VHU_VERSION, 40, NULL, 0);
			memset(buf + VHU_HDR_SIZE, 0, 18);
			(void)send(peer >> 2, buf, 30, MSG_NOSIGNAL);
			break;
		}
		close(peer >> 2);
	}
	return NULL;
}

static void
hangup_race(uint8_t mode)
{
	unsigned int iters = SANITIZED ? 1500 : 4000;
	struct vhu_ring *ring = th_ring(0);
	struct racer rc;

	cr_assert_eq(pipe2(rc.pipe, O_CLOEXEC), 0);
	cr_assert_eq(pthread_create(&rc.th, NULL, racer_main, &rc), 0);
	for (unsigned int i = 0; i < iters; i++) {
		struct vhu_conn_opts o = th_opts(mode);
		struct th_rec rec;
		int sv[2], msg;

		th_rec_init(&rec);
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		cr_assert_eq(vhu_conn_attach(ring, sv[0], &o, &th_ops, &rec, &rec.conn), 0);
		th_flush(ring);
		msg = (int)(i % 3);
		msg |= sv[1] << 2;
		cr_assert_eq(write(rc.pipe[1], &msg, sizeof(msg)), (ssize_t)sizeof(msg));
		th_wait_closed(ring, &rec, "the hang-up");
		cr_assert_eq(rec.reason, i % 3 == 2 ? -VHU_EPARTIAL : -VHU_EDISCONNECT,
			     "try %u: closed with %s", i, vhu_strerror(rec.reason));
		cr_assert_eq(rec.n, i % 3 == 2 ? 0 : 1, "try %u: %zu messages", i, rec.n);
		th_rec_fini(&rec);
	}
	close(rc.pipe[1]);
	pthread_join(rc.th, NULL);
	close(rc.pipe[0]);
	cr_assert_eq(vhu_ring_conn_count(ring), 0);
	vhu_ring_destroy(ring);
}

Test(flow, every_hangup_is_seen_exact)
{
	hangup_race(EXACT);
}

Test(flow, every_hangup_is_seen_stream)
{
	hangup_race(STREAM);
}

/* ------------------------------------------------------------------ */
/* fds of the wrong kind                                               */

/*
 * A front-end sends its own end of the connection as the call eventfd, or
 * as the back-end channel, then hangs up: if the engine kept that fd, it
 * would hold the far end of the connection itself and never see EOF. Every
 * fd is checked for its request's kind: the connection closes with
 * -VHU_EFDKIND and holds nothing; an honest eventfd and channel pass.
 */
static void
wrong_kind(uint8_t mode)
{
	static const uint32_t reqs[] = { VHU_REQ_SET_VRING_CALL, VHU_REQ_SET_BACKEND_REQ_FD,
					 VHU_REQ_SET_MEM_TABLE };
	int before = t_fd_count();

	for (unsigned int k = 0; k < 3; k++) {
		for (int honest = 0; honest < 2; honest++) {
			struct vhu_ring *ring = th_ring(0);
			struct vhu_conn_opts o = th_opts(mode);
			struct th_rec rec;
			uint8_t buf[128];
			struct vhu_mem_table mt;
			uint64_t idx = 0;
			size_t len;
			int peer, fd, sv[2] = { -1, -1 };

			th_rec_init(&rec);
			peer = th_attach(ring, &o, &rec);
			if (reqs[k] == VHU_REQ_SET_VRING_CALL) {
				fd = honest ? eventfd(0, EFD_CLOEXEC) : peer;
				len = th_put(buf, 0, reqs[k], &idx, 8);
			} else if (reqs[k] == VHU_REQ_SET_BACKEND_REQ_FD) {
				cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
				fd = honest ? sv[0] : peer;
				len = th_put(buf, 0, reqs[k], NULL, 0);
			} else {
				fd = honest ? memfd_create("region", MFD_CLOEXEC) : eventfd(0, EFD_CLOEXEC);
				cr_assert(!honest || ftruncate(fd, 1 << 20) == 0);
				len = th_put(buf, 0, reqs[k], &mt, th_mem_table(&mt, 1));
			}
			th_send(peer, buf, len, &fd, 1);
			if (fd != peer) {
				close(fd);
			}
			if (honest) {
				th_wait_msgs(ring, &rec, 1, "an honest fd");
				cr_assert_eq(rec.msg[0].nfds, 1);
				th_assert_open(&rec, "an honest fd");
				close(peer);
				th_wait_closed(ring, &rec, "the hang-up after an honest fd");
			} else {
				/* The peer hangs up at once: only a refused fd lets the engine see it. */
				close(peer);
				th_wait_closed(ring, &rec, "an fd of the wrong kind");
				th_assert_closed(&rec, -VHU_EFDKIND, vhu_req_name(VHU_CHAN_FRONTEND,
										 reqs[k]));
				cr_assert_eq(rec.n, 0);
			}
			th_rec_fini(&rec);
			vhu_ring_destroy(ring);
			if (sv[1] >= 0) {
				close(sv[1]);
			}
			if (sv[0] >= 0 && !honest) {
				close(sv[0]);
			}
		}
	}
	cr_assert_eq(t_fd_count(), before, "fds left behind");
}

Test(flow, fds_of_the_wrong_kind_exact)
{
	wrong_kind(EXACT);
}

Test(flow, fds_of_the_wrong_kind_stream)
{
	wrong_kind(STREAM);
}

/* ------------------------------------------------------------------ */
/* Half-close for proxies: on_hangup and vhu_conn_shutdown()           */

struct half {
	struct echo e;
	unsigned int hangups;
	int hangup_reason;
	uint64_t replies_at_hangup;
};

static void
half_hangup(struct vhu_conn *conn, int reason, void *ctx)
{
	struct half *h = ctx;

	h->hangups++;
	h->hangup_reason = reason;
	h->replies_at_hangup = h->e.next;
}

static const struct vhu_conn_ops half_ops = {
	.on_message = echo_message,
	.on_close = echo_close,
	.on_hangup = half_hangup,
};

/*
 * With on_hangup a peer's half-close keeps the connection open for
 * sending: messages sent later still reach the peer; vhu_conn_shutdown()
 * makes the peer read EOF after the last of them, refuses further sends
 * with -EPIPE, and, the peer having hung up too, closes the connection
 * with -VHU_EDISCONNECT.
 */
static void
half_close_relay(uint8_t mode)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_hdr late = vhu_hdr_request(VHU_REQ_SET_OWNER, 0, false);
	struct half h;
	uint8_t buf[64];
	size_t len = 0;
	int sv[2];

	memset(&h, 0, sizeof(h));
	h.e.reason = 1;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_conn_attach(ring, sv[0], &o, &half_ops, &h, &h.e.conn), 0);
	for (int k = 0; k < 3; k++) {
		len = th_put(buf, len, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	th_send(sv[1], buf, len, NULL, 0);
	cr_assert_eq(shutdown(sv[1], SHUT_WR), 0);
	while (h.hangups == 0) {
		cr_assert_geq(vhu_ring_wait(ring, TH_HANG_MS), 0);
		cr_assert_eq(h.e.closes, 0, "closed on a half-close: %s", vhu_strerror(h.e.reason));
	}
	cr_assert_eq(h.hangup_reason, -VHU_EDISCONNECT);
	cr_assert_eq(h.replies_at_hangup, 3, "the hang-up came before its requests");
	/* Still open for sending, long after the hang-up. */
	th_flush(ring);
	cr_assert_eq(vhu_conn_send(h.e.conn, &late, NULL, 0, NULL, 0, NULL, 0), 0);
	th_flush(ring);
	th_read_exact(sv[1], buf, 60);
	th_read_exact(sv[1], buf, VHU_HDR_SIZE);
	cr_assert_eq(memcmp(buf, &late, VHU_HDR_SIZE), 0);
	cr_assert_eq(h.e.closes, 0);
	vhu_conn_shutdown(h.e.conn);
	cr_assert_eq(vhu_conn_send(h.e.conn, &late, NULL, 0, NULL, 0, NULL, 0), -EPIPE);
	while (h.e.closes == 0) {
		cr_assert_geq(vhu_ring_wait(ring, TH_HANG_MS), 0);
	}
	cr_assert_eq(h.e.reason, -VHU_EDISCONNECT);
	th_assert_peer_eof(sv[1], "after vhu_conn_shutdown");
	vhu_ring_destroy(ring);
	close(sv[1]);
}

Test(flow, half_close_relay_exact)
{
	half_close_relay(EXACT);
}

Test(flow, half_close_relay_stream)
{
	half_close_relay(STREAM);
}

/*
 * vhu_conn_shutdown() first: queued messages go out, then the peer reads
 * EOF; the connection still receives, and closes when the peer hangs up.
 */
Test(flow, shutdown_then_peer_hangs_up)
{
	for (int mode = EXACT; mode <= STREAM; mode++) {
		struct vhu_ring *ring = th_ring(0);
		struct vhu_conn_opts o = th_opts((uint8_t)mode);
		struct vhu_hdr m = vhu_hdr_request(VHU_REQ_SET_OWNER, 0, false);
		struct half h;
		uint8_t buf[64];
		int sv[2];

		memset(&h, 0, sizeof(h));
		h.e.reason = 1;
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		cr_assert_eq(vhu_conn_attach(ring, sv[0], &o, &half_ops, &h, &h.e.conn), 0);
		for (int k = 0; k < 5; k++) {
			cr_assert_eq(vhu_conn_send(h.e.conn, &m, NULL, 0, NULL, 0, NULL, 0), 0);
		}
		vhu_conn_shutdown(h.e.conn);
		th_flush(ring);
		for (int k = 0; k < 5; k++) {
			th_read_exact(sv[1], buf, VHU_HDR_SIZE);
		}
		th_assert_peer_eof(sv[1], "after the queued messages");
		/* It still receives. */
		th_send(sv[1], buf, th_put(buf, 0, VHU_REQ_SET_OWNER, NULL, 0), NULL, 0);
		cr_assert_eq(shutdown(sv[1], SHUT_WR), 0);
		while (h.e.closes == 0) {
			cr_assert_geq(vhu_ring_wait(ring, TH_HANG_MS), 0);
		}
		cr_assert_eq(h.hangups, 1);
		cr_assert_eq(h.e.reason, -VHU_EDISCONNECT);
		vhu_ring_destroy(ring);
		close(sv[1]);
	}
}
