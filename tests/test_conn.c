/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine in exact receive mode (header read, then body read),
 * its send path, and connection close semantics. The cases themselves are
 * shared with test_stream.c (uring_helpers.h); this file also holds what
 * only exact mode promises.
 */
#define _GNU_SOURCE
#include <sys/utsname.h>

#include "uring_helpers.h"

#define MODE VHU_RECV_EXACT

TestSuite(conn, .init = t_setup, .fini = t_teardown, .timeout = 50);

Test(conn, split_at_every_byte)
{
	th_case_split(MODE);
}

Test(conn, batch_in_one_write)
{
	th_case_batch(MODE);
}

Test(conn, fds_after_fdless_messages)
{
	th_case_fds_follow(MODE);
}

Test(conn, header_with_fds_then_body)
{
	th_case_header_then_body(MODE);
}

Test(conn, max_size_bodies_and_fds)
{
	th_case_max_size(MODE);
}

Test(conn, validation_closes_only_offender)
{
	th_case_validation(MODE);
}

Test(conn, fds_on_body_chunk)
{
	th_case_fds_on_body(MODE);
}

Test(conn, many_connections)
{
	th_case_many_conns(MODE);
}

Test(conn, close_in_on_message)
{
	th_case_close_in_handler(MODE);
}

Test(conn, close_with_sends_queued)
{
	th_case_close_with_sends(MODE);
}

Test(conn, close_with_receive_in_flight)
{
	th_case_close_recv_in_flight(MODE);
}

Test(conn, peer_gone_mid_message)
{
	th_case_peer_gone_mid_message(MODE);
}

Test(conn, destroy_closes_all)
{
	th_case_destroy_closes_all(MODE);
}

Test(conn, stalled_message_times_out)
{
	th_case_stall(MODE);
}

Test(conn, send_in_order)
{
	th_case_send_in_order(MODE);
}

Test(conn, send_fds_interleaved)
{
	th_case_send_fds(MODE);
}

Test(conn, send_short_sends)
{
	th_case_send_short(MODE);
}

Test(conn, send_backpressure)
{
	th_case_send_backpressure(MODE);
}

Test(conn, send_refused_keeps_fds)
{
	th_case_send_refused(MODE);
}

Test(conn, flood)
{
	th_case_flood(MODE, 20000);
}

Test(conn, burst_on_many_sockets)
{
	struct vhu_ring_stats st;

	th_case_burst(MODE, &st);
	cr_assert_eq(st.enobufs, 0, "exact mode uses no provided buffers");
}

/*
 * Exact mode ties fds to the header read they came with, so a sender that
 * puts two messages and one fd in a single sendmsg (which stream mode does
 * not support) still has the fd on the first message.
 */
Test(conn, fds_belong_to_first_header_of_sendmsg)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(MODE);
	struct th_rec rec;
	uint8_t buf[64];
	uint64_t word = 3, f = 9;
	size_t off;
	int efd = t_eventfd();
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	off = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, word);
	off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, f);
	th_send(peer, buf, off, &efd, 1);
	th_wait_msgs(ring, &rec, 2);
	th_assert_msg(&rec, 0, VHU_REQ_SET_VRING_CALL, &word, 8, 1);
	cr_assert(t_same_file(efd, rec.msg[0].fd[0]));
	th_assert_msg(&rec, 1, VHU_REQ_SET_FEATURES, &f, 8, 0);
	close(efd);
	th_finish(ring, &rec, peer);
}

/*
 * Exact mode never reads past the message it is on: a handler that closes
 * on the first of three messages leaves the other two unread on the socket.
 */
static int
hook_inq(struct th_rec *r, struct vhu_conn *conn, struct th_msg *m)
{
	r->hook_rc = th_inq(vhu_conn_fd(conn));
	vhu_conn_close(conn);
	return 0;
}

Test(conn, reads_stop_at_message_end)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(MODE);
	struct th_rec rec;
	uint8_t buf[64];
	size_t off = 0;
	int peer;

	th_rec_init(&rec);
	rec.hook = hook_inq;
	peer = th_attach(ring, &o, &rec);
	for (uint64_t i = 0; i < 3; i++) {
		off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, i);
	}
	th_send(peer, buf, off, NULL, 0);
	th_wait_closed(ring, &rec);
	th_assert_closed(&rec, 0, "closed in on_message");
	cr_assert_eq(rec.n, 1);
	cr_assert_eq(rec.hook_rc, 40, "%d bytes unread when the first message was delivered",
		     rec.hook_rc);
	vhu_ring_destroy(ring);
	close(peer);
	th_rec_fini(&rec);
}

/*
 * Replies to requests that were already waiting in the socket are held and
 * go out together once it runs dry (the kernel reports more data waiting
 * with IORING_CQE_F_SOCK_NONEMPTY from Linux 6.17 on AF_UNIX): 32 pipelined
 * requests get their 32 replies, in order, in one sendmsg.
 */
Test(conn, replies_to_pipelined_requests_go_out_together)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(MODE);
	struct vhu_ring_stats st;
	struct th_rec rec;
	struct utsname un;
	uint8_t buf[32 * 20];
	unsigned int major = 0, minor = 0;
	size_t off = 0;
	int peer;

	th_rec_init(&rec);
	rec.hook = th_hook_reply;
	peer = th_attach(ring, &o, &rec);
	for (int i = 0; i < 32; i++) {
		off = th_put_raw(buf, off, VHU_REQ_GET_FEATURES, VHU_VERSION, 0, NULL, 0);
	}
	th_send(peer, buf, off, NULL, 0);
	th_wait_msgs(ring, &rec, 32);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, buf, sizeof(buf));
	for (int i = 0; i < 32; i++) {
		struct vhu_hdr h;
		uint64_t v;

		memcpy(&h, buf + i * 20, sizeof(h));
		memcpy(&v, buf + i * 20 + 12, sizeof(v));
		cr_assert_eq(h.request, VHU_REQ_GET_FEATURES);
		cr_assert_eq(h.flags, VHU_VERSION | VHU_FLAG_REPLY);
		cr_assert_eq(v, (uint64_t)i + 1, "reply %d in order", i);
	}
	vhu_ring_get_stats(ring, &st);
	cr_assert_eq(st.msgs_out, 32);
	cr_assert_eq(uname(&un), 0);
	sscanf(un.release, "%u.%u", &major, &minor);
	if (major > 6 || (major == 6 && minor >= 17)) {
		cr_assert_eq(st.sendmsgs, 1, "32 replies in %llu sendmsgs",
			     (unsigned long long)st.sendmsgs);
	} else {
		cr_assert_leq(st.sendmsgs, 32);
	}
	th_finish(ring, &rec, peer);
}

/* Reply to GET_FEATURES only (the one-way messages get none). */
static int
hook_reply_get_features(struct th_rec *r, struct vhu_conn *conn, struct th_msg *m)
{
	return m->hdr.request == VHU_REQ_GET_FEATURES ? th_hook_reply(r, conn, m) : 0;
}

/*
 * A peer that never lets its socket run dry (one request, then a stream of
 * one-way messages) still gets its reply after a bounded number of reads,
 * not when it stops sending.
 */
Test(conn, held_reply_leaves_while_the_peer_keeps_sending)
{
	enum { FLOOD = 2000 };
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(MODE);
	static uint8_t buf[12 * (FLOOD + 1)];
	struct th_rec rec;
	uint8_t reply[20];
	size_t off = 0;
	ssize_t n;
	int peer;

	th_rec_init(&rec);
	rec.hook = hook_reply_get_features;
	peer = th_attach(ring, &o, &rec);
	off = th_put_raw(buf, off, VHU_REQ_GET_FEATURES, VHU_VERSION, 0, NULL, 0);
	for (int i = 0; i < FLOOD; i++) {
		off = th_put_raw(buf, off, VHU_REQ_SET_OWNER, VHU_VERSION, 0, NULL, 0);
	}
	th_send(peer, buf, off, NULL, 0);
	{
		struct th_want w = { .rec = &rec, .n = 200 };

		th_run_until(ring, th_done_msgs, &w, "200 messages");
	}
	cr_assert_lt(rec.n, FLOOD, "still flooding: %zu of %d delivered", rec.n, FLOOD + 1);
	n = recv(peer, reply, sizeof(reply), MSG_DONTWAIT);
	cr_assert_eq(n, (ssize_t)sizeof(reply), "the reply waited behind the flood (%zd)", n);
	th_finish(ring, &rec, peer);
}
