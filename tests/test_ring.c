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

Test(ring, busy_poll_round_trip_by_polling)
{
	struct vhu_ring *r = make_ring(true);
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
 * More stream connections with data than provided buffers: on a spinning
 * ring the kernel completes receives eagerly, exhausts the shared buffers,
 * and ends multishots with -ENOBUFS; every message must still arrive.
 */
Test(ring, stream_recovers_from_buffer_exhaustion)
{
	enum { N = 320, PER = 2 };
	struct vhu_ring_opts o = { .busy_poll = true, .max_conns = N };
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
