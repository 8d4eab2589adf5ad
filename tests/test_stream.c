/* SPDX-License-Identifier: MIT */
/*
 * What only stream receive mode (multishot recvmsg into provided buffers and
 * the framer above it) must get right. The cases both modes share run as
 * stream/NAME beside their bodies in test_conn.c and test_send.c.
 */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

#include "uring_helpers.h"

#define STREAM	VHU_RECV_STREAM

TestSuite(stream, .init = t_setup, .fini = t_teardown, .timeout = 50);

/*
 * One read holding many fd-less messages and then an fd message, twice
 * over, with every fd-less message in its own sendmsg: the fds go to the
 * fd message at the end of each read, never to a message before it.
 */
Test(stream, fds_land_on_last_message_of_read)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(STREAM);
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
	th_wait_msgs(ring, &rec, 27, NULL);
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
 * A message larger than max_size that arrives whole inside one receive
 * buffer, after a message that leaves its body unaligned (so the framer
 * would copy it into its max_size reassembly buffer): refused by its size
 * before any copy, the message before it delivered. Found by fuzz_framer.
 */
Test(stream, oversized_message_inside_one_buffer)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(STREAM);
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
	th_wait_closed(ring, &rec, NULL);
	th_assert_closed(&rec, -VHU_EOVERSIZED, "a whole oversized message");
	cr_assert_eq(rec.n, 1);
	th_assert_msg(&rec, 0, VHU_REQ_SET_FEATURES, &f, 8, 0);
	vhu_ring_destroy(ring);
	close(peer);
	th_rec_fini(&rec);
}
