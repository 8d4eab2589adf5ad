/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine in stream receive mode: multishot recvmsg into
 * provided buffers and the framer above it. The shared cases (uring_helpers.h)
 * run here in stream mode; the rest is what the framer alone must get right.
 */
#define _GNU_SOURCE
#include "uring_helpers.h"

#define MODE VHU_RECV_STREAM

TestSuite(stream, .init = t_setup, .fini = t_teardown, .timeout = 50);

Test(stream, split_at_every_byte)
{
	th_case_split(MODE);
}

Test(stream, batch_in_one_write)
{
	th_case_batch(MODE);
}

Test(stream, fds_after_fdless_messages)
{
	th_case_fds_follow(MODE);
}

Test(stream, header_with_fds_then_body)
{
	th_case_header_then_body(MODE);
}

Test(stream, max_size_bodies_and_fds)
{
	th_case_max_size(MODE);
}

Test(stream, validation_closes_only_offender)
{
	th_case_validation(MODE);
}

Test(stream, fds_on_body_chunk)
{
	th_case_fds_on_body(MODE);
}

Test(stream, many_connections)
{
	th_case_many_conns(MODE);
}

Test(stream, close_in_on_message)
{
	th_case_close_in_handler(MODE);
}

Test(stream, close_with_sends_queued)
{
	th_case_close_with_sends(MODE);
}

Test(stream, close_with_receive_in_flight)
{
	th_case_close_recv_in_flight(MODE);
}

Test(stream, peer_gone_mid_message)
{
	th_case_peer_gone_mid_message(MODE);
}

Test(stream, destroy_closes_all)
{
	th_case_destroy_closes_all(MODE);
}

Test(stream, stalled_message_times_out)
{
	th_case_stall(MODE);
}

Test(stream, send_in_order)
{
	th_case_send_in_order(MODE);
}

Test(stream, send_fds_interleaved)
{
	th_case_send_fds(MODE);
}

Test(stream, send_short_sends)
{
	th_case_send_short(MODE);
}

Test(stream, send_backpressure)
{
	th_case_send_backpressure(MODE);
}

Test(stream, send_refused_keeps_fds)
{
	th_case_send_refused(MODE);
}

/* Provided buffers run out while a child writes; nothing lost or reordered. */
Test(stream, flood_exhausts_buffers)
{
	th_case_flood(MODE, 20000);
}

/*
 * One read holding many fd-less messages and then an fd message, twice
 * over, with every fd-less message in its own sendmsg: the fds go to the
 * fd message at the end of each read, never to a message before it.
 */
Test(stream, fds_land_on_last_message_of_read)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(MODE);
	struct vhu_mem_table mt;
	uint32_t mts = th_mem_table(&mt, 2);
	int mfd[2] = { t_memfd("x"), t_memfd("y") };
	int efd = t_eventfd();
	struct th_rec rec;
	uint8_t buf[128];
	uint64_t word = 7;
	size_t off;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (uint64_t i = 0; i < 20; i++) {
		off = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, i);
		th_send(peer, buf, off, NULL, 0);
	}
	off = th_put_u64(buf, 0, VHU_REQ_SET_VRING_KICK, word);
	th_send(peer, buf, off, &efd, 1);
	for (uint64_t i = 20; i < 25; i++) {
		off = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
		th_send(peer, buf, off, NULL, 0);
	}
	off = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mts);
	th_send(peer, buf, off, mfd, 2);
	th_wait_msgs(ring, &rec, 27);
	for (uint64_t i = 0; i < 20; i++) {
		th_assert_msg(&rec, i, VHU_REQ_SET_FEATURES, &i, 8, 0);
	}
	th_assert_msg(&rec, 20, VHU_REQ_SET_VRING_KICK, &word, 8, 1);
	cr_assert(t_same_file(efd, rec.msg[20].fd[0]));
	for (size_t i = 21; i < 26; i++) {
		th_assert_msg(&rec, i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
	}
	th_assert_msg(&rec, 26, VHU_REQ_SET_MEM_TABLE, &mt, mts, 2);
	cr_assert(t_same_file(mfd[0], rec.msg[26].fd[0]));
	cr_assert(t_same_file(mfd[1], rec.msg[26].fd[1]));
	close(efd);
	th_close_all(mfd, 2);
	th_finish(ring, &rec, peer);
}

/*
 * Megabytes waiting on sixteen sockets at once: more than the provided
 * buffers hold (a ring with 8 small ones), so the engine must recover from
 * -ENOBUFS (at least once) without losing or reordering a byte.
 */
Test(stream, burst_exhausts_buffers)
{
	struct vhu_ring_stats st;

	th_case_burst(MODE, &st);
	cr_assert_gt(st.enobufs, 0, "the burst never exhausted the provided buffers: "
		     "make it larger than the ring's buffers");
	cr_assert_geq(st.rearms, st.enobufs);
}

/*
 * A message larger than max_size that arrives whole inside one receive
 * buffer, after a message that leaves its body unaligned (so the framer
 * would copy it into its max_size reassembly buffer): refused by its size
 * before any copy, the message before it delivered. Found by fuzz_framer.
 */
Test(stream, oversized_message_inside_one_buffer)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(MODE);
	static uint8_t buf[20 + 12 + 6000];
	struct th_rec rec;
	uint64_t f = 7;
	size_t off;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	off = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, f);
	/* 6000 bytes of SET_CONFIG: over the default max_size of 4096 */
	off = th_put_raw(buf, off, VHU_REQ_SET_CONFIG, VHU_VERSION, 6000, NULL, 0);
	memset(buf + off, 0xab, 6000);
	off += 6000;
	th_send(peer, buf, off, NULL, 0);
	th_wait_closed(ring, &rec);
	th_assert_closed(&rec, -VHU_EOVERSIZED, "a whole oversized message");
	cr_assert_eq(rec.n, 1);
	th_assert_msg(&rec, 0, VHU_REQ_SET_FEATURES, &f, 8, 0);
	vhu_ring_destroy(ring);
	close(peer);
	th_rec_fini(&rec);
}
