/* SPDX-License-Identifier: MIT */
/*
 * The ring's listener: multishot accept of blocking clients, the
 * per-listener connection limit, removal of the path on close, and
 * connect/close churn without leaks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "helpers.h"

TestSuite(uring_listener, .init = t_setup, .fini = t_teardown);

#define FEATURES 0x140000000ull
#define MAX_ROUNDS 2000

struct ctx {
	unsigned int accepts;
	unsigned int msgs;
	unsigned int closes;
	int last_reason;
	struct vhu_ulistener *seen_l;
};

static const struct vhu_rules frontend_rules = {
	.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
};

static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *arg)
{
	struct ctx *c = arg;
	struct vhu_hdr h = vhu_hdr_reply(msg->hdr.request, 8);
	uint64_t v = FEATURES;

	c->msgs++;
	return vhu_conn_send(conn, &h, &v, sizeof(v), NULL, 0, NULL, 0);
}

static void
on_close(struct vhu_conn *conn, int reason, void *arg)
{
	struct ctx *c = arg;

	c->closes++;
	c->last_reason = reason;
}

static void
on_accept(struct vhu_ulistener *l, struct vhu_conn *conn, void *arg)
{
	struct ctx *c = arg;

	c->accepts++;
	c->seen_l = l;
	cr_assert_eq(vhu_conn_ctx(conn), arg);
}

static struct vhu_ring *
make_ring(void)
{
	struct vhu_ring *r = NULL;

	cr_assert_eq(vhu_ring_create(NULL, &r), 0);
	return r;
}

static struct vhu_ulistener *
listen_on(struct vhu_ring *r, const char *path, unsigned int max, uint8_t mode, struct ctx *c)
{
	struct vhu_ulistener_opts o = {
		.path = path,
		.max_conns = max,
		.conn = {
			.recv_mode = mode,
			.rules = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST },
		},
		.ops = { .on_message = on_message, .on_close = on_close },
		.ctx = c,
		.on_accept = on_accept,
	};
	struct vhu_ulistener *l = NULL;

	cr_assert_eq(vhu_ring_listen(r, &o, &l), 0);
	cr_assert_not_null(l);
	return l;
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

/* Drive the ring until the endpoint's socket has something to read (data or EOF). */
static void
wait_readable(struct vhu_ring *r, struct vhu_endpoint *ep)
{
	struct pollfd p = { .fd = vhu_endpoint_fd(ep), .events = POLLIN };
	int i;

	for (i = 0; i < MAX_ROUNDS; i++) {
		if (poll(&p, 1, 0) == 1) {
			return;
		}
		cr_assert_geq(vhu_ring_wait(r, 100), 0);
	}
	cr_assert_fail("the client never became readable");
}

static void
client_round_trip(struct vhu_ring *r, struct vhu_endpoint *ep, struct ctx *c)
{
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	struct vhu_hdr rep;
	uint64_t v = 0;

	cr_assert_eq(vhu_endpoint_send_header(ep, &req, NULL, 0), 0);
	wait_readable(r, ep);
	cr_assert_eq(vhu_endpoint_recv_body(ep, &rep, &v, sizeof(v), NULL), 0);
	cr_assert_eq(rep.request, VHU_REQ_GET_FEATURES);
	cr_assert_eq(rep.flags, VHU_VERSION | VHU_FLAG_REPLY);
	cr_assert_eq(v, FEATURES);
}

static void
three_clients(uint8_t mode)
{
	struct vhu_ring *r = make_ring();
	struct ctx c = { 0 };
	const char *path = t_path("l.sock");
	struct vhu_ulistener *l = listen_on(r, path, 0, mode, &c);
	struct vhu_endpoint *ep[3];
	int i;

	for (i = 0; i < 3; i++) {
		cr_assert_eq(vhu_endpoint_connect(path, &frontend_rules, &ep[i]), 0);
	}
	wait_until(r, &c.accepts, 3);
	cr_assert_eq(c.seen_l, l);
	cr_assert_eq(vhu_ring_conn_count(r), 3);
	/* Interleaved: each connection answers its own client. */
	for (i = 2; i >= 0; i--) {
		client_round_trip(r, ep[i], &c);
	}
	client_round_trip(r, ep[1], &c);
	cr_assert_eq(c.msgs, 4);
	for (i = 0; i < 3; i++) {
		vhu_endpoint_destroy(ep[i]);
	}
	wait_until(r, &c.closes, 3);
	cr_assert_eq(c.last_reason, -VHU_EDISCONNECT);
	cr_assert_eq(vhu_ring_conn_count(r), 0);
	vhu_ulistener_close(l);
	vhu_ring_destroy(r);
}

Test(uring_listener, three_clients_exact)
{
	three_clients(VHU_RECV_EXACT);
}

Test(uring_listener, three_clients_stream)
{
	three_clients(VHU_RECV_STREAM);
}

Test(uring_listener, max_conns_extra_client_sees_eof)
{
	struct vhu_ring *r = make_ring();
	struct ctx c = { 0 };
	const char *path = t_path("max.sock");
	struct vhu_endpoint *ep[3];
	struct vhu_hdr h;
	struct vhu_fds fds;
	int i;

	listen_on(r, path, 2, VHU_RECV_EXACT, &c);
	for (i = 0; i < 2; i++) {
		cr_assert_eq(vhu_endpoint_connect(path, &frontend_rules, &ep[i]), 0);
	}
	wait_until(r, &c.accepts, 2);
	cr_assert_eq(vhu_endpoint_connect(path, &frontend_rules, &ep[2]), 0);
	wait_readable(r, ep[2]);
	vhu_fds_init(&fds);
	cr_assert_eq(vhu_endpoint_recv_header(ep[2], &h, &fds), -VHU_EDISCONNECT);
	cr_assert_eq(c.accepts, 2);
	cr_assert_eq(vhu_ring_conn_count(r), 2);
	/* The two within the limit still work. */
	client_round_trip(r, ep[0], &c);
	client_round_trip(r, ep[1], &c);

	/* A slot freed by a departing client is usable again. */
	vhu_endpoint_destroy(ep[0]);
	wait_until(r, &c.closes, 1);
	vhu_endpoint_destroy(ep[2]);
	cr_assert_eq(vhu_endpoint_connect(path, &frontend_rules, &ep[0]), 0);
	wait_until(r, &c.accepts, 3);
	client_round_trip(r, ep[0], &c);
	vhu_ring_destroy(r);
	cr_assert_eq(c.closes, 3);
	vhu_endpoint_destroy(ep[0]);
	vhu_endpoint_destroy(ep[1]);
}

Test(uring_listener, close_removes_path_and_keeps_connections)
{
	struct vhu_ring *r = make_ring();
	struct ctx c = { 0 };
	const char *path = t_path("gone.sock");
	struct vhu_ulistener *l = listen_on(r, path, 0, VHU_RECV_STREAM, &c);
	struct vhu_endpoint *ep, *late = NULL;

	cr_assert_eq(access(path, F_OK), 0);
	cr_assert_eq(vhu_endpoint_connect(path, &frontend_rules, &ep), 0);
	wait_until(r, &c.accepts, 1);
	vhu_ulistener_close(l);
	cr_assert_eq(access(path, F_OK), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_lt(vhu_endpoint_connect(path, &frontend_rules, &late), 0);
	cr_assert_null(late);
	/* Accepted connections outlive their listener. */
	client_round_trip(r, ep, &c);
	cr_assert_eq(vhu_ring_conn_count(r), 1);
	vhu_endpoint_destroy(ep);
	wait_until(r, &c.closes, 1);
	cr_assert_eq(c.last_reason, -VHU_EDISCONNECT);
	vhu_ring_destroy(r);
}

Test(uring_listener, existing_path_needs_unlink_stale)
{
	struct vhu_ring *r = make_ring();
	struct ctx c = { 0 };
	const char *path = t_path("stale.sock");
	struct vhu_ulistener_opts o = { .path = path, .ctx = &c };
	struct vhu_ulistener *l = NULL;
	struct vhu_endpoint *ep;

	listen_on(r, path, 0, VHU_RECV_EXACT, &c);
	cr_assert_eq(vhu_ring_listen(r, &o, &l), -EADDRINUSE);
	cr_assert_null(l);
	vhu_ring_destroy(r);
	/* destroy closed the listener and removed its path. */
	cr_assert_eq(access(path, F_OK), -1);
	cr_assert_lt(vhu_endpoint_connect(path, &frontend_rules, &ep), 0);
}

Test(uring_listener, churn_200_cycles_leaves_nothing_behind)
{
	struct vhu_ring *r = make_ring();
	struct ctx c = { 0 };
	const char *path = t_path("churn.sock");
	struct vhu_ulistener *l = listen_on(r, path, 4, VHU_RECV_STREAM, &c);
	struct vhu_ring_stats st;
	unsigned int i;

	for (i = 1; i <= 200; i++) {
		struct vhu_endpoint *ep;

		cr_assert_eq(vhu_endpoint_connect(path, &frontend_rules, &ep), 0);
		wait_until(r, &c.accepts, i);
		if (i % 10 == 0) {
			client_round_trip(r, ep, &c);
		}
		vhu_endpoint_destroy(ep);
		wait_until(r, &c.closes, i);
		cr_assert_eq(c.last_reason, -VHU_EDISCONNECT);
		cr_assert_eq(vhu_ring_conn_count(r), 0);
	}
	cr_assert_eq(c.msgs, 20);
	vhu_ring_get_stats(r, &st);
	cr_assert_eq(st.msgs_in, 20);
	cr_assert_eq(st.msgs_out, 20);
	vhu_ulistener_close(l);
	vhu_ring_destroy(r);
}
