/* SPDX-License-Identifier: MIT */
/*
 * The ring: creation and teardown, the poll/wait loop, borrowed rings,
 * limits, and message round trips against the blocking endpoint in both
 * receive modes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "helpers.h"

TestSuite(ring, .init = t_setup, .fini = t_teardown);

#define FEATURES 0x140000000ull	/* VERSION_1 | PROTOCOL_FEATURES */
#define MAX_ROUNDS 2000		/* wait() calls before a test gives up */

struct ctx {
	unsigned int msgs;
	unsigned int closes;
	int reason;
	uint32_t last_request;
	int fds[VHU_MAX_FDS];
	unsigned int nfds;
	int send_ret;
};

static const struct vhu_rules backend_rules = {
	.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST,
};
static const struct vhu_rules frontend_rules = {
	.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
};

/* Back-end behaviour: answer GET_FEATURES, keep the fds of anything else. */
static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *arg)
{
	struct ctx *c = arg;
	unsigned int i;

	c->msgs++;
	c->last_request = msg->hdr.request;
	for (i = 0; i < msg->fds.n && c->nfds < VHU_MAX_FDS; i++) {
		c->fds[c->nfds++] = vhu_fds_take(&msg->fds, i);
	}
	if (msg->hdr.request == VHU_REQ_GET_FEATURES) {
		struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
		uint64_t v = FEATURES;

		c->send_ret = vhu_conn_send(conn, &h, &v, sizeof(v), NULL, 0, NULL, 0);
	}
	return 0;
}

static void
on_close(struct vhu_conn *conn, int reason, void *arg)
{
	struct ctx *c = arg;

	c->closes++;
	c->reason = reason;
}

static const struct vhu_conn_ops ops = { .on_message = on_message, .on_close = on_close };

static void
close_ctx_fds(struct ctx *c)
{
	unsigned int i;

	for (i = 0; i < c->nfds; i++) {
		close(c->fds[i]);
	}
	c->nfds = 0;
}

static struct vhu_ring *
make_ring(bool busy)
{
	struct vhu_ring_opts o = { .busy_poll = busy, .max_conns = 16 };
	struct vhu_ring *r = NULL;
	int ret = vhu_ring_create(&o, &r);

	cr_assert_eq(ret, 0, "vhu_ring_create: %s (%s)", vhu_strerror(ret),
		     vhu_ring_error_hint(ret));
	return r;
}

/* A socketpair: one end attached to the ring, the other a blocking front-end endpoint. */
static struct vhu_conn *
attach_pair(struct vhu_ring *r, uint8_t mode, struct ctx *c, struct vhu_endpoint **ep)
{
	struct vhu_conn_opts o = { .recv_mode = mode, .rules = backend_rules };
	struct vhu_conn *conn = NULL;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_conn_attach(r, sv[0], &o, &ops, c, &conn), 0);
	cr_assert_not_null(conn);
	cr_assert_eq(vhu_endpoint_from_fd(sv[1], &frontend_rules, ep), 0);
	return conn;
}

static void
wait_until(struct vhu_ring *r, const unsigned int *counter, unsigned int want)
{
	int i;

	for (i = 0; i < MAX_ROUNDS && *counter < want; i++) {
		cr_assert_geq(vhu_ring_wait(r, 100), 0);
	}
	cr_assert_geq(*counter, want, "gave up waiting: %u of %u", *counter, want);
}

/* GET_FEATURES from the endpoint; drive the ring until the reply is on the wire; check it. */
static void
round_trip(struct vhu_ring *r, struct vhu_conn *conn, struct ctx *c, struct vhu_endpoint *ep)
{
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	struct vhu_hdr rep;
	struct vhu_fds fds;
	uint64_t v = 0;
	unsigned int want = c->msgs + 1;
	int i;

	cr_assert_eq(vhu_endpoint_send_header(ep, &req, NULL, 0), 0);
	wait_until(r, &c->msgs, want);
	cr_assert_eq(c->send_ret, 0);
	for (i = 0; i < MAX_ROUNDS && vhu_conn_sendq_len(conn) > 0; i++) {
		cr_assert_geq(vhu_ring_wait(r, 100), 0);
	}
	cr_assert_eq(vhu_conn_sendq_len(conn), 0);
	vhu_fds_init(&fds);
	cr_assert_eq(vhu_endpoint_recv_body(ep, &rep, &v, sizeof(v), &fds), 0);
	cr_assert_eq(rep.request, VHU_REQ_GET_FEATURES);
	cr_assert_eq(rep.flags, VHU_VERSION | VHU_FLAG_REPLY);
	cr_assert_eq(rep.size, 8);
	cr_assert_eq(v, FEATURES);
	cr_assert_eq(fds.n, 0);
}

Test(ring, create_destroy)
{
	struct vhu_ring *r = make_ring(false);

	cr_assert_eq(vhu_ring_conn_count(r), 0);
	vhu_ring_destroy(r);
	r = make_ring(true);
	vhu_ring_destroy(r);
}

Test(ring, stream_buffer_geometry_is_checked)
{
	static const struct { unsigned int n, size; } bad[] = {
		{ 4, 4352 },		/* fewer than 8 */
		{ 48, 4352 },		/* not a power of two */
		{ 65536, 4352 },	/* more than the buffer ring holds */
		{ 64, 4096 },		/* no room for the control area */
		{ 64, 65539 },		/* not a multiple of 8 */
		{ 64, 32u << 20 },	/* above 16 MiB */
	};
	struct vhu_ring *r = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vhu_ring_opts o = { .stream_bufs = bad[i].n, .stream_buf_size = bad[i].size };

		cr_assert_eq(vhu_ring_create(&o, &r), -EINVAL, "%u x %u", bad[i].n, bad[i].size);
		cr_assert_null(r);
	}
	{
		struct vhu_ring_opts o = { .stream_bufs = 8, .stream_buf_size = 4352 };

		cr_assert_eq(vhu_ring_create(&o, &r), 0);
		vhu_ring_destroy(r);
	}
}

Test(ring, idle_poll_returns_zero)
{
	struct vhu_ring *r = make_ring(false);
	struct vhu_endpoint *ep;
	struct ctx c = { 0 };

	cr_assert_eq(vhu_ring_poll(r), 0);
	attach_pair(r, VHU_RECV_EXACT, &c, &ep);
	/* The first poll submits the receive; nothing has arrived, so nothing completes. */
	cr_assert_eq(vhu_ring_poll(r), 0);
	cr_assert_eq(vhu_ring_poll(r), 0);
	cr_assert_eq(c.msgs, 0);
	vhu_ring_destroy(r);
	cr_assert_eq(c.closes, 1);
	vhu_endpoint_destroy(ep);
}

Test(ring, wait_times_out_with_zero)
{
	struct vhu_ring *r = make_ring(false);
	struct vhu_endpoint *ep;
	struct ctx c = { 0 };

	cr_assert_eq(vhu_ring_wait(r, 0), 0);
	attach_pair(r, VHU_RECV_STREAM, &c, &ep);
	cr_assert_eq(vhu_ring_wait(r, 20), 0);
	cr_assert_eq(c.msgs, 0);
	cr_assert_eq(c.closes, 0);
	vhu_ring_destroy(r);
	vhu_endpoint_destroy(ep);
}

static void
round_trip_mode(uint8_t mode, bool busy)
{
	struct vhu_ring *r = make_ring(busy);
	struct vhu_endpoint *ep;
	struct ctx c = { 0 };
	struct vhu_conn *conn = attach_pair(r, mode, &c, &ep);

	round_trip(r, conn, &c, ep);
	round_trip(r, conn, &c, ep);
	cr_assert_eq(c.msgs, 2);
	cr_assert_eq(c.last_request, VHU_REQ_GET_FEATURES);
	cr_assert_eq(c.closes, 0);
	vhu_ring_destroy(r);
	cr_assert_eq(c.closes, 1);
	cr_assert_eq(c.reason, 0);
	vhu_endpoint_destroy(ep);
}

Test(ring, round_trip_exact)
{
	round_trip_mode(VHU_RECV_EXACT, false);
}

Test(ring, round_trip_stream)
{
	round_trip_mode(VHU_RECV_STREAM, false);
}

static void
round_trip_by_polling(bool busy)
{
	struct vhu_ring *r = make_ring(busy);
	struct vhu_ring_stats st0, st1;
	struct vhu_endpoint *ep;
	struct ctx c = { 0 };
	struct vhu_conn *conn = attach_pair(r, VHU_RECV_STREAM, &c, &ep);
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	struct vhu_hdr rep;
	uint64_t v = 0;
	long i;

	cr_assert_eq(vhu_ring_poll(r), 0);	/* arms the receive */
	vhu_ring_get_stats(r, &st0);
	for (i = 0; i < 1000; i++) {
		cr_assert_eq(vhu_ring_poll(r), 0);
	}
	vhu_ring_get_stats(r, &st1);
	/* An idle poll of a spinning ring is a memory read, not a system call. */
	cr_assert_eq(st1.enters, st0.enters);

	cr_assert_eq(vhu_endpoint_send_header(ep, &req, NULL, 0), 0);
	/* Completions post while user space spins: poll alone must see the message. */
	for (i = 0; i < 100000000L && c.msgs == 0; i++) {
		cr_assert_geq(vhu_ring_poll(r), 0);
	}
	cr_assert_eq(c.msgs, 1);
	for (i = 0; i < 100000000L && vhu_conn_sendq_len(conn) > 0; i++) {
		cr_assert_geq(vhu_ring_poll(r), 0);
	}
	cr_assert_eq(vhu_endpoint_recv_body(ep, &rep, &v, sizeof(v), NULL), 0);
	cr_assert_eq(v, FEATURES);
	vhu_ring_destroy(r);
	vhu_endpoint_destroy(ep);
}

Test(ring, busy_poll_round_trip_by_polling)
{
	round_trip_by_polling(true);
}

/* A default ring (DEFER_TASKRUN with TASKRUN_FLAG on this kernel) spins as cheaply. */
Test(ring, default_ring_round_trip_by_polling)
{
	round_trip_by_polling(false);
}

/*
 * wait_spin_us: once a wait has returned work, the next one spins before
 * it blocks, and a message that comes meanwhile is taken by a spinning
 * pass (wait_spin_hits), not after a sleep. A wait that found nothing
 * makes the next one block at once; a ring without the option never spins.
 */
static void
spin_round_trip(struct vhu_ring *r, struct vhu_conn *conn, struct ctx *c, struct vhu_endpoint *ep,
		int timeout_ms)
{
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	struct vhu_hdr rep;
	uint64_t v = 0;
	unsigned int want = c->msgs + 1;
	int i;

	cr_assert_eq(vhu_endpoint_send_header(ep, &req, NULL, 0), 0);
	for (i = 0; i < MAX_ROUNDS && c->msgs < want; i++) {
		cr_assert_geq(vhu_ring_wait(r, timeout_ms), 0);
	}
	cr_assert_eq(c->msgs, want);
	/* The reply out by polling, which leaves the waits' record alone. */
	for (i = 0; i < 100000000 && vhu_conn_sendq_len(conn) > 0; i++) {
		cr_assert_geq(vhu_ring_poll(r), 0);
	}
	cr_assert_eq(vhu_endpoint_recv_body(ep, &rep, &v, sizeof(v), NULL), 0);
	cr_assert_eq(v, FEATURES);
}

Test(ring, wait_spins_only_after_work)
{
	/* 10 s: long enough that the message always comes within the spin */
	struct vhu_ring_opts o = { .max_conns = 4, .wait_spin_us = 10u * 1000u * 1000u };
	struct vhu_ring_stats st;
	struct vhu_endpoint *ep;
	struct vhu_ring *r = NULL;
	struct vhu_conn *conn;
	struct ctx c = { 0 };

	cr_assert_eq(vhu_ring_create(&o, &r), 0);
	conn = attach_pair(r, VHU_RECV_STREAM, &c, &ep);
	spin_round_trip(r, conn, &c, ep, 100);	/* the first: nothing found before, no spin */
	vhu_ring_get_stats(r, &st);
	cr_assert_eq(st.wait_spin_hits, 0);
	/* The reply went out on a wait that found work: the next wait spins and takes the request. */
	spin_round_trip(r, conn, &c, ep, -1);
	vhu_ring_get_stats(r, &st);
	cr_assert_eq(st.wait_spin_hits, 1);
	/* A wait that finds nothing (the reply's send completion is not work) ends the spinning. */
	while (vhu_ring_wait(r, 0) > 0) {
	}
	cr_assert_eq(vhu_ring_wait(r, 1), 0);
	spin_round_trip(r, conn, &c, ep, 100);
	vhu_ring_get_stats(r, &st);
	cr_assert_eq(st.wait_spin_hits, 1, "a wait after an idle one spun");
	vhu_ring_destroy(r);
	vhu_endpoint_destroy(ep);

	/* Without the option: never. */
	r = make_ring(false);
	memset(&c, 0, sizeof(c));
	conn = attach_pair(r, VHU_RECV_STREAM, &c, &ep);
	spin_round_trip(r, conn, &c, ep, 100);
	spin_round_trip(r, conn, &c, ep, 100);
	vhu_ring_get_stats(r, &st);
	cr_assert_eq(st.wait_spin_hits, 0);
	vhu_ring_destroy(r);
	vhu_endpoint_destroy(ep);
}

/* The spin is part of the wait's timeout, not added to it. */
Test(ring, wait_spin_counts_toward_the_timeout)
{
	struct vhu_ring_opts o = { .max_conns = 4, .wait_spin_us = 10u * 1000u * 1000u };
	struct vhu_endpoint *ep;
	struct vhu_ring *r = NULL;
	struct vhu_conn *conn;
	struct ctx c = { 0 };
	struct timespec t0, t1;
	double ms;

	cr_assert_eq(vhu_ring_create(&o, &r), 0);
	conn = attach_pair(r, VHU_RECV_STREAM, &c, &ep);
	spin_round_trip(r, conn, &c, ep, 100);	/* the last wait found work: the next spins */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(vhu_ring_wait(r, 1000), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	/* spin and sleep together: about 1000 ms (2000 if the spin came on top) */
	cr_assert(ms >= 990 && ms < 1800, "a 1000 ms wait took %.0f ms", ms);
	vhu_ring_destroy(r);
	vhu_endpoint_destroy(ep);
}

/* Borrowed ring ---------------------------------------------------- */

struct foreign {
	unsigned int n;
	uint64_t last;
};

static void
on_foreign(struct io_uring_cqe *cqe, void *arg)
{
	struct foreign *f = arg;

	f->n++;
	f->last = cqe->user_data;
}

static void
app_nop(struct io_uring *u, uint64_t ud)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(u);

	cr_assert_not_null(sqe);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, ud);
}

Test(ring, borrowed_ring_shares_the_cq)
{
	struct io_uring app;
	struct foreign f = { 0 };
	struct vhu_ring_opts o = { .borrow = &app, .foreign_cqe = on_foreign, .foreign_ctx = &f };
	struct vhu_ring *r = NULL;
	struct vhu_endpoint *ep;
	struct ctx c = { 0 };
	struct vhu_conn *conn;
	struct io_uring_cqe *cqe;
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	unsigned int mine = 0, theirs = 0;
	int i;

	cr_assert_eq(io_uring_queue_init(64, &app, 0), 0);
	cr_assert_eq(vhu_ring_create(&o, &r), 0);
	conn = attach_pair(r, VHU_RECV_EXACT, &c, &ep);

	/* The application's own operation, reaped through vhu's loop. */
	app_nop(&app, 0x1000);
	round_trip(r, conn, &c, ep);
	for (i = 0; i < MAX_ROUNDS && f.n == 0; i++) {
		vhu_ring_wait(r, 100);
	}
	cr_assert_eq(f.n, 1);
	cr_assert_eq(f.last, 0x1000);

	/* The application reaps, handing each CQE to vhu first. */
	app_nop(&app, 0x2000);
	cr_assert_eq(vhu_endpoint_send_header(ep, &req, NULL, 0), 0);
	for (i = 0; i < MAX_ROUNDS && (theirs == 0 || c.msgs < 2); i++) {
		cr_assert_geq(io_uring_submit_and_wait(&app, 1), 0);
		while (io_uring_peek_cqe(&app, &cqe) == 0) {
			int h = vhu_ring_handle_cqe(r, cqe);

			if (h == 0) {
				cr_assert_eq(cqe->user_data, 0x2000);
				theirs++;
			} else {
				cr_assert_eq(h, 1);
				mine++;
			}
			io_uring_cqe_seen(&app, cqe);
		}
	}
	cr_assert_eq(theirs, 1);
	cr_assert_geq(mine, 1);
	cr_assert_eq(c.msgs, 2);
	cr_assert_eq(f.n, 1, "a CQE handed over by the application is not forwarded again");

	vhu_ring_destroy(r);
	cr_assert_eq(c.closes, 1);
	/* vhu is gone from the ring; the application's ring still works. */
	app_nop(&app, 0x3000);
	cr_assert_eq(io_uring_submit_and_wait(&app, 1), 1);
	cr_assert_eq(io_uring_peek_cqe(&app, &cqe), 0);
	cr_assert_eq(cqe->user_data, 0x3000);
	io_uring_cqe_seen(&app, cqe);
	io_uring_queue_exit(&app);
	vhu_endpoint_destroy(ep);
}

/* Limits and teardown ---------------------------------------------- */

Test(ring, max_conns_enforced)
{
	struct vhu_ring_opts o = { .max_conns = 2 };
	struct vhu_conn_opts co = { .rules = backend_rules };
	struct vhu_ring *r = NULL;
	struct vhu_conn *conn = (struct vhu_conn *)&o;
	struct ctx c = { 0 };
	int sv[3][2], i;

	cr_assert_eq(vhu_ring_create(&o, &r), 0);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
	}
	cr_assert_eq(vhu_conn_attach(r, sv[0][0], &co, &ops, &c, NULL), 0);
	cr_assert_eq(vhu_conn_attach(r, sv[1][0], &co, &ops, &c, NULL), 0);
	cr_assert_eq(vhu_conn_attach(r, sv[2][0], &co, &ops, &c, &conn), -EMFILE);
	cr_assert_null(conn);
	/* The refused socket was closed: its peer sees EOF at once. */
	cr_assert_eq(fcntl(sv[2][0], F_GETFD), -1);
	cr_assert_eq(errno, EBADF);
	{
		char b;

		cr_assert_eq(read(sv[2][1], &b, 1), 0);
	}
	cr_assert_eq(vhu_ring_conn_count(r), 2);
	vhu_ring_destroy(r);
	cr_assert_eq(c.closes, 2);
	for (i = 0; i < 3; i++) {
		close(sv[i][1]);
	}
}

Test(ring, error_hints_name_the_cause)
{
	const char *nosys = vhu_ring_error_hint(-ENOSYS);
	const char *perm = vhu_ring_error_hint(-EPERM);
	const char *notsup = vhu_ring_error_hint(-EOPNOTSUPP);

	cr_assert_not_null(nosys);
	cr_assert_not_null(perm);
	cr_assert_not_null(notsup);
	cr_assert_gt(strlen(nosys), 0);
	cr_assert_gt(strlen(perm), 0);
	cr_assert_gt(strlen(notsup), 0);
	cr_assert_str_neq(nosys, perm);
	cr_assert_str_neq(perm, notsup);
	cr_assert_str_neq(nosys, notsup);
	cr_assert_not_null(strstr(perm, "io_uring_disabled"));
}

Test(ring, destroy_closes_live_connections_once)
{
	struct vhu_ring *r = make_ring(false);
	struct vhu_endpoint *ep[4];
	struct ctx c[4];
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	int i;

	memset(c, 0, sizeof(c));
	for (i = 0; i < 4; i++) {
		attach_pair(r, i % 2 ? VHU_RECV_STREAM : VHU_RECV_EXACT, &c[i], &ep[i]);
	}
	/* Leave a reply queued or in flight on one of them. */
	cr_assert_eq(vhu_endpoint_send_header(ep[1], &req, NULL, 0), 0);
	wait_until(r, &c[1].msgs, 1);
	cr_assert_eq(vhu_ring_conn_count(r), 4);
	vhu_ring_destroy(r);
	for (i = 0; i < 4; i++) {
		char b[64];

		cr_assert_eq(c[i].closes, 1);
		cr_assert_eq(c[i].reason, 0);
		/* Each socket is closed: after any reply that went out, the peer reads EOF. */
		while (read(vhu_endpoint_fd(ep[i]), b, sizeof(b)) > 0) {
		}
		cr_assert_eq(read(vhu_endpoint_fd(ep[i]), b, sizeof(b)), 0);
		vhu_endpoint_destroy(ep[i]);
	}
}

/* fds ---------------------------------------------------------------- */

static void
two_memfds(uint8_t mode)
{
	struct vhu_ring *r = make_ring(false);
	struct vhu_endpoint *ep;
	struct ctx c = { 0 };
	struct vhu_mem_table mt;
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_MEM_TABLE, VHU_MEM_TABLE_SIZE(2), false);
	int fds[2];
	unsigned int i;

	attach_pair(r, mode, &c, &ep);
	memset(&mt, 0, sizeof(mt));
	mt.nregions = 2;
	for (i = 0; i < 2; i++) {
		mt.regions[i].guest_phys_addr = 0x100000ull * i;
		mt.regions[i].size = 0x1000;
		mt.regions[i].user_addr = 0x7f0000000000ull + 0x100000ull * i;
	}
	fds[0] = t_memfd("region zero");
	fds[1] = t_memfd("region one");
	cr_assert_eq(vhu_endpoint_send_message(ep, &h, &mt, VHU_MEM_TABLE_SIZE(2), fds, 2), 0);
	wait_until(r, &c.msgs, 1);
	cr_assert_eq(c.last_request, VHU_REQ_SET_MEM_TABLE);
	cr_assert_eq(c.nfds, 2);
	cr_assert(t_same_file(c.fds[0], fds[0]));
	cr_assert(t_same_file(c.fds[1], fds[1]));
	cr_assert_neq(c.fds[0], fds[0]);
	/* Received with MSG_CMSG_CLOEXEC. */
	cr_assert(fcntl(c.fds[0], F_GETFD) & FD_CLOEXEC);
	close_ctx_fds(&c);
	close(fds[0]);
	close(fds[1]);
	vhu_ring_destroy(r);
	vhu_endpoint_destroy(ep);
}

Test(ring, two_memfds_exact)
{
	two_memfds(VHU_RECV_EXACT);
}

Test(ring, two_memfds_stream)
{
	two_memfds(VHU_RECV_STREAM);
}

Test(ring, stats_count_messages)
{
	struct vhu_ring *r = make_ring(false);
	struct vhu_ring_stats st;
	struct vhu_endpoint *ep;
	struct ctx c = { 0 };
	struct vhu_conn *conn = attach_pair(r, VHU_RECV_STREAM, &c, &ep);
	int i;

	for (i = 0; i < 5; i++) {
		round_trip(r, conn, &c, ep);
	}
	vhu_ring_get_stats(r, &st);
	cr_assert_eq(st.msgs_in, 5);
	cr_assert_eq(st.msgs_out, 5);
	cr_assert_geq(st.cqes, 10);	/* a receive and a send per round trip */
	cr_assert_geq(st.sqes, 6);	/* the multishot receive and five sends */
	cr_assert_geq(st.enters, 1);
	vhu_ring_destroy(r);
	vhu_endpoint_destroy(ep);
}

/*
 * More stream connections with data than provided buffers (8, the fewest a
 * ring takes): one enter completes more receives than there are buffers,
 * the rest end with -ENOBUFS, and every message must still arrive.
 */
Test(ring, stream_recovers_from_buffer_exhaustion)
{
	enum { N = 320, PER = 2 };
	struct vhu_ring_opts o = { .busy_poll = true, .max_conns = N, .stream_bufs = 8 };
	struct vhu_conn_opts co = { .recv_mode = VHU_RECV_STREAM, .rules = backend_rules };
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	uint8_t msg[20];
	static struct ctx c[N];
	static int peer[N];
	struct vhu_ring_stats st;
	struct vhu_ring *r = NULL;
	unsigned int total = 0;
	int i, k;

	memset(c, 0, sizeof(c));
	memcpy(msg, &h, sizeof(h));
	memset(msg + 12, 0, 8);
	cr_assert_eq(vhu_ring_create(&o, &r), 0);
	for (i = 0; i < N; i++) {
		int sv[2];

		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		cr_assert_eq(vhu_conn_attach(r, sv[0], &co, &ops, &c[i], NULL), 0);
		peer[i] = sv[1];
	}
	cr_assert_eq(vhu_ring_poll(r), 0);
	for (k = 0; k < PER; k++) {
		for (i = 0; i < N; i++) {
			cr_assert_eq(write(peer[i], msg, sizeof(msg)), (ssize_t)sizeof(msg));
		}
	}
	for (k = 0; k < MAX_ROUNDS && total < N * PER; k++) {
		cr_assert_geq(vhu_ring_wait(r, 100), 0);
		for (total = 0, i = 0; i < N; i++) {
			total += c[i].msgs;
		}
	}
	cr_assert_eq(total, N * PER);
	vhu_ring_get_stats(r, &st);
	cr_assert_gt(st.enobufs, 0, "the scenario did not exhaust the buffers");
	cr_assert_geq(st.rearms, st.enobufs);
	cr_assert_eq(st.msgs_in, N * PER);
	for (i = 0; i < N; i++) {
		cr_assert_eq(c[i].msgs, PER);
		cr_assert_eq(c[i].closes, 0);
	}
	vhu_ring_destroy(r);
	for (i = 0; i < N; i++) {
		cr_assert_eq(c[i].closes, 1);
		cr_assert_eq(c[i].reason, 0);
		close(peer[i]);
	}
}

/* frames_only ------------------------------------------------------- */

struct fo_rec {
	unsigned int msgs;
	unsigned int closes;
	int reason;
	uint8_t wire[4][64];	/* header and body of each message, as delivered */
	uint32_t len[4];
	int fd;			/* the fd of the last message that had one, or -1 */
	unsigned int nfds;
};

static int
fo_message(struct vhu_conn *conn, struct vhu_msg *msg, void *arg)
{
	struct fo_rec *f = arg;

	(void)conn;
	if (f->msgs < 4 && msg->hdr.size <= sizeof(f->wire[0]) - VHU_HDR_SIZE) {
		memcpy(f->wire[f->msgs], &msg->hdr, VHU_HDR_SIZE);
		memcpy(f->wire[f->msgs] + VHU_HDR_SIZE, msg->body, msg->hdr.size);
		f->len[f->msgs] = VHU_HDR_SIZE + msg->hdr.size;
	}
	f->msgs++;
	f->nfds = msg->fds.n;
	if (msg->fds.n > 0) {
		if (f->fd >= 0) {
			close(f->fd);
		}
		f->fd = vhu_fds_take(&msg->fds, 0);
	}
	return 0;
}

static void
fo_close(struct vhu_conn *conn, int reason, void *arg)
{
	struct fo_rec *f = arg;

	(void)conn;
	f->closes++;
	f->reason = reason;
}

static const struct vhu_conn_ops fo_ops = { .on_message = fo_message, .on_close = fo_close };

/* Attach with frames_only as asked; \return the peer's end (raw bytes are written to it). */
static int
fo_attach(struct vhu_ring *r, uint8_t mode, bool frames_only, struct fo_rec *f)
{
	struct vhu_conn_opts o = {
		.recv_mode = mode, .rules = backend_rules, .frames_only = frames_only,
	};
	int sv[2];

	memset(f, 0, sizeof(*f));
	f->fd = -1;
	o.rules.max_size = 64;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_conn_attach(r, sv[0], &o, &fo_ops, f, NULL), 0);
	return sv[1];
}

/* One sendmsg of len bytes with fd (if >= 0). */
static void
fo_send(int peer, const void *buf, size_t len, int fd)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union vhu_cmsg_buf cb;

	if (fd >= 0) {
		cr_assert_eq(vhu_cmsg_build(&mh, &cb, &fd, 1), 0);
	}
	cr_assert_eq(sendmsg(peer, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

static size_t
fo_put(uint8_t *buf, uint32_t request, uint32_t flags, uint32_t size)
{
	struct vhu_hdr h = { .request = request, .flags = flags, .size = size };
	uint32_t i;

	memcpy(buf, &h, sizeof(h));
	for (i = 0; i < size; i++) {
		buf[VHU_HDR_SIZE + i] = (uint8_t)(0xa0 + i);
	}
	return VHU_HDR_SIZE + size;
}

/*
 * Messages the rules refuse but that frame: a bad version, an unknown code
 * with a 5-byte body, SET_FEATURES with an fd it should not carry. With
 * frames_only each arrives byte for byte (the fd too); then a valid one.
 */
static void
frames_only_delivers(uint8_t mode)
{
	struct vhu_ring *r = make_ring(false);
	uint8_t m[4][64];
	size_t len[4];
	struct fo_rec f;
	int peer = fo_attach(r, mode, true, &f);
	int memfd = t_memfd("not for SET_FEATURES");
	unsigned int i;

	len[0] = fo_put(m[0], VHU_REQ_SET_FEATURES, 0x2, 8);
	len[1] = fo_put(m[1], 9999, VHU_VERSION, 5);
	len[2] = fo_put(m[2], VHU_REQ_SET_FEATURES, VHU_VERSION, 8);
	len[3] = fo_put(m[3], VHU_REQ_SET_FEATURES, VHU_VERSION, 8);
	fo_send(peer, m[0], len[0], -1);
	fo_send(peer, m[1], len[1], -1);
	wait_until(r, &f.msgs, 2);
	fo_send(peer, m[2], len[2], memfd);
	wait_until(r, &f.msgs, 3);
	cr_assert_eq(f.nfds, 1u);
	cr_assert(t_same_file(f.fd, memfd));
	fo_send(peer, m[3], len[3], -1);
	wait_until(r, &f.msgs, 4);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(f.len[i], (uint32_t)len[i], "message %u: %u bytes", i, f.len[i]);
		cr_assert_arr_eq(f.wire[i], m[i], len[i], "message %u differs", i);
	}
	cr_assert_eq(f.nfds, 0u);
	cr_assert_eq(f.closes, 0u, "closed: %s", vhu_errname(f.reason));
	vhu_ring_destroy(r);
	cr_assert_eq(f.closes, 1u);
	close(f.fd);
	close(memfd);
	close(peer);
}

Test(ring, frames_only_delivers_bad_messages_exact)
{
	frames_only_delivers(VHU_RECV_EXACT);
}

Test(ring, frames_only_delivers_bad_messages_stream)
{
	frames_only_delivers(VHU_RECV_STREAM);
}

/* Without frames_only the same messages close the connection, naming the fault. */
static void
checked_refuses(uint8_t mode)
{
	static const struct {
		uint32_t request;
		uint32_t flags;
		uint32_t size;
		int reason;
	} cases[] = {
		{ VHU_REQ_SET_FEATURES, 0x2, 8, -VHU_EVERSION },
		{ 9999, VHU_VERSION, 5, -VHU_EREQUEST },
	};
	unsigned int i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vhu_ring *r = make_ring(false);
		uint8_t m[64];
		struct fo_rec f;
		int peer = fo_attach(r, mode, false, &f);
		size_t len = fo_put(m, cases[i].request, cases[i].flags, cases[i].size);

		fo_send(peer, m, len, -1);
		wait_until(r, &f.closes, 1);
		cr_assert_eq(f.msgs, 0u);
		cr_assert_eq(f.reason, cases[i].reason, "case %u: closed with %s", i,
			     vhu_errname(f.reason));
		vhu_ring_destroy(r);
		close(peer);
	}
}

Test(ring, checked_refuses_bad_messages_exact)
{
	checked_refuses(VHU_RECV_EXACT);
}

Test(ring, checked_refuses_bad_messages_stream)
{
	checked_refuses(VHU_RECV_STREAM);
}

/* frames_only keeps framing safe: a size above max_size still closes. */
static void
frames_only_oversized(uint8_t mode)
{
	struct vhu_ring *r = make_ring(false);
	uint8_t m[64];
	struct fo_rec f;
	int peer = fo_attach(r, mode, true, &f);
	size_t len = fo_put(m, VHU_REQ_SET_FEATURES, VHU_VERSION, 8);
	struct vhu_hdr h = { .request = 9999, .flags = 0x7, .size = 65 };

	fo_send(peer, m, len, -1);
	wait_until(r, &f.msgs, 1);
	fo_send(peer, &h, sizeof(h), -1);
	wait_until(r, &f.closes, 1);
	cr_assert_eq(f.reason, -VHU_EOVERSIZED, "closed with %s", vhu_errname(f.reason));
	cr_assert_eq(f.msgs, 1u);
	vhu_ring_destroy(r);
	close(peer);
}

Test(ring, frames_only_still_refuses_oversized_exact)
{
	frames_only_oversized(VHU_RECV_EXACT);
}

Test(ring, frames_only_still_refuses_oversized_stream)
{
	frames_only_oversized(VHU_RECV_STREAM);
}
