/* SPDX-License-Identifier: MIT */
/*
 * The blocking endpoint over socketpairs: crosvm's connection tests
 * (send_data, the six send_fd cases, send_recv), whole-message round trips
 * with the exact bytes on the wire, and every way a peer can get a message
 * wrong, each with the error code that names it and no fd leaked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vhu/endpoint.h>
#include <vhu/error.h>

#include "helpers.h"

TestSuite(endpoint, .init = t_setup, .fini = t_teardown);

static const struct vhu_rules front = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY };
static const struct vhu_rules back = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST };

/* a: front-end (sends requests), b: back-end (receives them). */
static void
pair(struct vhu_endpoint **a, struct vhu_endpoint **b)
{
	cr_assert_eq(vhu_endpoint_pair(&front, &back, a, b), 0);
}

/* sendmsg on a raw fd with any number of fds (beyond what vhu would send). */
static void
raw_send(int sock, const void *buf, size_t len, const int *fds, unsigned int n)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(64 * sizeof(int))];
	} cb;
	struct iovec iov = { (void *)buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	cr_assert_leq(n, 64);
	if (n) {
		memset(&cb, 0, sizeof(cb));
		mh.msg_control = cb.buf;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	}
	cr_assert_eq(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

static ssize_t
recv_n(struct vhu_endpoint *ep, void *buf, size_t len, struct vhu_fds *fds)
{
	struct iovec iov = { buf, len };

	return vhu_endpoint_recv_iov(ep, &iov, 1, fds);
}

static ssize_t
send_n(struct vhu_endpoint *ep, const void *buf, size_t len, const int *fds, unsigned int n)
{
	struct iovec iov = { (void *)buf, len };

	return vhu_endpoint_send_iov(ep, &iov, 1, fds, n);
}

static void
three_files(int *fds)
{
	fds[0] = t_memfd("file0");
	fds[1] = t_memfd("file1");
	fds[2] = t_memfd("file2");
}

static void
close_n(int *fds, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		close(fds[i]);
	}
}

static void
assert_same_files(const struct vhu_fds *got, const int *sent, unsigned int n)
{
	unsigned int i;

	cr_assert_eq(got->n, n);
	for (i = 0; i < n; i++) {
		cr_assert(t_same_file(sent[i], got->fd[i]), "fd %u is not the file sent", i);
		cr_assert(fcntl(got->fd[i], F_GETFD) & FD_CLOEXEC, "fd %u is not CLOEXEC", i);
	}
}

/* crosvm send_data ---------------------------------------------------- */

Test(endpoint, send_data_is_a_stream)
{
	struct vhu_endpoint *a, *b;
	char buf[4096];
	struct vhu_fds fds;

	pair(&a, &b);
	vhu_fds_init(&fds);
	cr_assert_eq(send_n(a, "abcd", 4, NULL, 0), 4);
	cr_assert_eq(recv_n(b, buf, sizeof(buf), &fds), 4);
	cr_assert_arr_eq(buf, "abcd", 4);
	cr_assert_eq(send_n(a, "efgh", 4, NULL, 0), 4);
	cr_assert_eq(recv_n(b, buf, 2, &fds), 2);
	cr_assert_arr_eq(buf, "ef", 2);
	cr_assert_eq(recv_n(b, buf, 2, &fds), 2);
	cr_assert_arr_eq(buf, "gh", 2);
	cr_assert_eq(fds.n, 0);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

/* crosvm send_fd, cases 1-6 ------------------------------------------ */

Test(endpoint, send_fd_1_one_fd_content_reads_back)
{
	struct vhu_endpoint *a, *b;
	struct vhu_fds fds;
	char buf[4096], content[32];
	int f = t_memfd("hello vhost-user");

	pair(&a, &b);
	vhu_fds_init(&fds);
	cr_assert_eq(send_n(a, "abcd", 4, &f, 1), 4);
	cr_assert_eq(recv_n(b, buf, sizeof(buf), &fds), 4);
	cr_assert_arr_eq(buf, "abcd", 4);
	assert_same_files(&fds, &f, 1);
	memset(content, 0, sizeof(content));
	cr_assert_eq(t_read_file(fds.fd[0], content, sizeof(content)), 16);
	cr_assert_str_eq(content, "hello vhost-user");
	vhu_fds_close(&fds);
	close(f);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, send_fd_2_fds_come_with_the_first_read_only)
{
	struct vhu_endpoint *a, *b;
	struct vhu_fds first, second;
	char buf[2];
	int f[3];

	three_files(f);
	pair(&a, &b);
	vhu_fds_init(&first);
	vhu_fds_init(&second);
	cr_assert_eq(send_n(a, "abcd", 4, f, 3), 4);
	cr_assert_eq(recv_n(b, buf, 2, &first), 2);
	assert_same_files(&first, f, 3);
	cr_assert_eq(recv_n(b, buf, 2, &second), 2);
	cr_assert_arr_eq(buf, "cd", 2);
	cr_assert_eq(second.n, 0);
	vhu_fds_close(&first);
	close_n(f, 3);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

/* Why vhu always passes a control buffer: without one the kernel drops the fds. */
Test(endpoint, send_fd_3_a_read_without_control_buffer_loses_the_fds)
{
	struct vhu_endpoint *a, *b;
	struct vhu_fds fds;
	char buf[2];
	struct iovec iov = { buf, 2 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int f[3], before;

	three_files(f);
	pair(&a, &b);
	cr_assert_eq(send_n(a, "abcd", 4, f, 3), 4);
	before = t_fd_count();
	cr_assert_eq(recvmsg(vhu_endpoint_fd(b), &mh, MSG_CMSG_CLOEXEC), 2);
	cr_assert(mh.msg_flags & MSG_CTRUNC, "the kernel reports the drop only as MSG_CTRUNC");
	cr_assert_eq(t_fd_count(), before, "no fd was installed");
	vhu_fds_init(&fds);
	cr_assert_eq(recv_n(b, buf, 2, &fds), 2);
	cr_assert_eq(fds.n, 0, "the fds are gone for good");
	close_n(f, 3);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, send_fd_4_fds_arrive_with_the_read_that_starts_data2)
{
	struct vhu_endpoint *a, *b;
	struct vhu_fds r1, r2, r3;
	char buf[4];
	int f[3];

	three_files(f);
	pair(&a, &b);
	vhu_fds_init(&r1);
	vhu_fds_init(&r2);
	vhu_fds_init(&r3);
	cr_assert_eq(send_n(a, "1234", 4, NULL, 0), 4);
	cr_assert_eq(send_n(a, "5678", 4, f, 3), 4);
	cr_assert_eq(recv_n(b, buf, 4, &r1), 4);
	cr_assert_arr_eq(buf, "1234", 4);
	cr_assert_eq(r1.n, 0);
	cr_assert_eq(recv_n(b, buf, 2, &r2), 2);
	cr_assert_arr_eq(buf, "56", 2);
	assert_same_files(&r2, f, 3);
	cr_assert_eq(recv_n(b, buf, 2, &r3), 2);
	cr_assert_arr_eq(buf, "78", 2);
	cr_assert_eq(r3.n, 0);
	vhu_fds_close(&r2);
	close_n(f, 3);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

/* The hazard exact-size header reads avoid: a read crossing into data2 takes its fds. */
Test(endpoint, send_fd_5_a_read_crossing_the_boundary_takes_data2_fds)
{
	struct vhu_endpoint *a, *b;
	struct vhu_fds r1, r2;
	char buf[8];
	int f[3];

	three_files(f);
	pair(&a, &b);
	vhu_fds_init(&r1);
	vhu_fds_init(&r2);
	cr_assert_eq(send_n(a, "1234", 4, NULL, 0), 4);
	cr_assert_eq(send_n(a, "5678", 4, f, 3), 4);
	cr_assert_eq(recv_n(b, buf, 5, &r1), 5);
	cr_assert_arr_eq(buf, "12345", 5);
	assert_same_files(&r1, f, 3);
	cr_assert_eq(recv_n(b, buf, 8, &r2), 3);
	cr_assert_arr_eq(buf, "678", 3);
	cr_assert_eq(r2.n, 0, "the read that holds the rest of data2 gets no fds");
	vhu_fds_close(&r1);
	close_n(f, 3);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, send_fd_6_three_fds_all_arrive_in_a_32_slot_set)
{
	struct vhu_endpoint *a, *b;
	struct vhu_fds fds;
	char buf[4096];
	int f[3];

	three_files(f);
	pair(&a, &b);
	vhu_fds_init(&fds);
	cr_assert_eq(send_n(a, "abcd", 4, f, 3), 4);
	cr_assert_eq(recv_n(b, buf, sizeof(buf), &fds), 4);
	assert_same_files(&fds, f, 3);
	vhu_fds_close(&fds);
	close_n(f, 3);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

/* fd limits ---------------------------------------------------------- */

Test(endpoint, ctrunc_33_to_40_fds_is_fatal_and_leaks_nothing)
{
	struct vhu_endpoint *a, *b;
	int base = t_eventfd(), sent[40], before;
	unsigned int n, i;

	pair(&a, &b);
	before = t_fd_count();
	for (n = 33; n <= 40; n++) {
		struct vhu_hdr hdr;
		struct vhu_fds fds;

		for (i = 0; i < n; i++) {
			sent[i] = dup(base);
		}
		/* A header-only message; the fds overflow vhu's 32-slot control buffer. */
		hdr = vhu_hdr_request(VHU_REQ_SET_LOG_FD, 0, false);
		raw_send(vhu_endpoint_fd(a), &hdr, sizeof(hdr), sent, n);
		close_n(sent, n);
		cr_assert_eq(vhu_endpoint_recv_header(b, &hdr, &fds), -VHU_ECTRUNC, "n=%u", n);
		cr_assert_eq(fds.n, 0);
		cr_assert_eq(t_fd_count(), before, "%u fds: leaked", n);
	}
	close(base);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, sending_33_fds_is_refused_before_anything_is_sent)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_LOG_FD, 0, false);
	struct iovec iov = { &hdr, sizeof(hdr) };
	uint64_t v = 0;
	int f[33], base = t_eventfd();
	char buf[16];
	struct vhu_fds fds;
	unsigned int i;

	for (i = 0; i < 33; i++) {
		f[i] = base;
	}
	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_iov(a, &iov, 1, f, 33), -VHU_EFDS);
	cr_assert_eq(vhu_endpoint_send_all(a, &iov, 1, f, 33), -VHU_EFDS);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, f, 33), -VHU_EFDS);
	hdr = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &v, 8, f, 33), -VHU_EFDS);
	cr_assert_eq(vhu_endpoint_send_message_with_payload(a, &hdr, &v, 4, (char *)&v + 4, 4,
							    f, 33), -VHU_EFDS);
	cr_assert_eq(vhu_endpoint_set_nonblocking(b, true), 0);
	vhu_fds_init(&fds);
	cr_assert_eq(recv_n(b, buf, sizeof(buf), &fds), -VHU_ERETRY, "nothing went out");
	close(base);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, recv_all_keeps_fds_of_the_first_chunk)
{
	struct vhu_endpoint *a, *b;
	struct vhu_fds fds;
	char buf[6];
	struct iovec iov = { buf, sizeof(buf) };
	int f = t_memfd("first");

	pair(&a, &b);
	/* A read stops after a chunk with fds, so this takes two recvmsg calls. */
	raw_send(vhu_endpoint_fd(a), "ab", 2, &f, 1);
	raw_send(vhu_endpoint_fd(a), "cdef", 4, NULL, 0);
	vhu_fds_init(&fds);
	cr_assert_eq(vhu_endpoint_recv_all(b, &iov, 1, &fds), 0);
	cr_assert_arr_eq(buf, "abcdef", 6);
	assert_same_files(&fds, &f, 1);
	vhu_fds_close(&fds);
	close(f);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, recv_all_fds_on_a_later_chunk_are_closed_and_invalid)
{
	struct vhu_endpoint *a, *b;
	struct vhu_fds fds;
	char buf[8];
	struct iovec iov = { buf, sizeof(buf) };
	int f1 = t_eventfd(), f2 = t_eventfd(), before;

	pair(&a, &b);
	raw_send(vhu_endpoint_fd(a), "abcd", 4, &f1, 1);
	raw_send(vhu_endpoint_fd(a), "efgh", 4, &f2, 1);
	before = t_fd_count();
	vhu_fds_init(&fds);
	cr_assert_eq(vhu_endpoint_recv_all(b, &iov, 1, &fds), -VHU_EINVALID);
	cr_assert_eq(fds.n, 0, "the first chunk's fd is closed too");
	cr_assert_eq(t_fd_count(), before);
	close(f1);
	close(f2);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, recv_iov_with_null_set_refuses_fds)
{
	struct vhu_endpoint *a, *b;
	char buf[4];
	int f = t_eventfd(), before;

	pair(&a, &b);
	cr_assert_eq(send_n(a, "abcd", 4, &f, 1), 4);
	before = t_fd_count();
	cr_assert_eq(recv_n(b, buf, 4, NULL), -VHU_EINVALID);
	cr_assert_eq(t_fd_count(), before);
	close(f);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

/* Round trips -------------------------------------------------------- */

Test(endpoint, header_only_round_trip)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false), got;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), 0);
	cr_assert_eq(got.request, VHU_REQ_GET_FEATURES);
	cr_assert_eq(got.flags, VHU_VERSION);
	cr_assert_eq(got.size, 0);
	cr_assert_eq(fds.n, 0);
	hdr.size = 8;
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, NULL, 0), -EINVAL);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, header_only_with_its_fd)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_LOG_FD, 0, true), got;
	struct vhu_fds fds;
	int f = t_memfd("log");

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, &f, 1), 0);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), 0);
	cr_assert_eq(got.flags, VHU_VERSION | VHU_FLAG_NEED_REPLY);
	assert_same_files(&fds, &f, 1);
	vhu_fds_close(&fds);
	close(f);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, body_round_trip_set_features)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false), got;
	struct vhu_u64 v = { 0xf00dbeefdeadf00dull }, r = { 0 };
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &v, sizeof(v), NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_body(b, &got, &r, sizeof(r), &fds), 0);
	cr_assert_eq(got.request, VHU_REQ_SET_FEATURES);
	cr_assert_eq(got.size, 8);
	cr_assert_eq(r.value, 0xf00dbeefdeadf00dull);
	cr_assert_eq(fds.n, 0);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, body_and_payload_round_trip_get_config)
{
	struct vhu_endpoint *a, *b;
	struct vhu_config cfg = { .offset = 0, .size = 16, .flags = 0 }, rcfg;
	uint8_t payload[16], rpayload[32];
	struct vhu_hdr hdr, got;
	struct vhu_fds fds;
	unsigned int i;

	for (i = 0; i < sizeof(payload); i++) {
		payload[i] = (uint8_t)(0xa0 + i);
	}
	pair(&a, &b);
	/* Request a -> b, then the reply b -> a: both directions carry body + payload. */
	hdr = vhu_hdr_request(VHU_REQ_GET_CONFIG, 12 + 16, false);
	cr_assert_eq(vhu_endpoint_send_message_with_payload(a, &hdr, &cfg, 12, payload, 16,
							    NULL, 0), 0);
	memset(rpayload, 0, sizeof(rpayload));
	cr_assert_eq(vhu_endpoint_recv_payload_into_buf(b, &got, &rcfg, 12, rpayload,
							sizeof(rpayload), &fds), 16);
	cr_assert_eq(got.size, 28);
	cr_assert_eq(rcfg.size, 16);
	cr_assert_arr_eq(rpayload, payload, 16);

	payload[0] = 0x42;
	hdr = vhu_hdr_reply(VHU_REQ_GET_CONFIG, 12 + 16);
	cr_assert_eq(vhu_endpoint_send_message_with_payload(b, &hdr, &cfg, 12, payload, 16,
							    NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_payload_into_buf(a, &got, &rcfg, 12, rpayload, 16, &fds),
		     16);
	cr_assert_eq(got.flags, VHU_VERSION | VHU_FLAG_REPLY);
	cr_assert_arr_eq(rpayload, payload, 16);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

/* Body and payload adjacent in memory: validated in place, same result. */
Test(endpoint, payload_adjacent_to_body)
{
	struct vhu_endpoint *a, *b;
	struct vhu_config cfg = { .offset = 4, .size = 8, .flags = 0 };
	uint8_t payload[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	union {
		uint64_t align;
		uint8_t b[20];
	} in;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_CONFIG, 20, false), got;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message_with_payload(a, &hdr, &cfg, 12, payload, 8,
							    NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_payload_into_buf(b, &got, in.b, 12, in.b + 12, 8, &fds), 8);
	cr_assert_arr_eq(in.b + 12, payload, 8);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, recv_body_into_buf_returns_the_body_length)
{
	struct vhu_endpoint *a, *b;
	struct vhu_vring_state st = { .index = 1, .num = 256 }, rst;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_VRING_NUM, 8, false), got;
	union {
		uint64_t align;
		uint8_t b[64];
	} buf;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &st, sizeof(st), NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_body_into_buf(b, &got, buf.b, sizeof(buf.b), &fds), 8);
	memcpy(&rst, buf.b, sizeof(rst));
	cr_assert_eq(rst.index, 1);
	cr_assert_eq(rst.num, 256);
	/* A buffer too small for the body. */
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &st, sizeof(st), NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_body_into_buf(b, &got, buf.b, 4, &fds), -VHU_EOVERSIZED);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, set_mem_table_two_regions_two_memfds)
{
	struct vhu_endpoint *a, *b;
	struct vhu_mem_table mt, rmt;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_MEM_TABLE, VHU_MEM_TABLE_SIZE(2), true);
	struct vhu_hdr got;
	struct vhu_fds fds;
	char content[16];
	int f[2] = { t_memfd("region-zero"), t_memfd("region-one") };

	memset(&mt, 0, sizeof(mt));
	mt.nregions = 2;
	mt.regions[0] = (struct vhu_mem_region){ 0x0, 0x100000, 0x7f0000000000ull, 0 };
	mt.regions[1] = (struct vhu_mem_region){ 0x100000, 0x200000, 0x7f1000000000ull, 0 };
	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &mt, VHU_MEM_TABLE_SIZE(2), f, 2), 0);
	cr_assert_eq(vhu_endpoint_recv_body_into_buf(b, &got, &rmt, sizeof(rmt), &fds),
		     (ssize_t)VHU_MEM_TABLE_SIZE(2));
	cr_assert_eq(rmt.nregions, 2);
	cr_assert_eq(rmt.regions[1].guest_phys_addr, 0x100000);
	cr_assert_eq(rmt.regions[1].size, 0x200000);
	assert_same_files(&fds, f, 2);
	memset(content, 0, sizeof(content));
	cr_assert_eq(t_read_file(fds.fd[0], content, sizeof(content)), 11);
	cr_assert_str_eq(content, "region-zero");
	memset(content, 0, sizeof(content));
	cr_assert_eq(t_read_file(fds.fd[1], content, sizeof(content)), 10);
	cr_assert_str_eq(content, "region-one");
	vhu_fds_close(&fds);
	close_n(f, 2);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, exact_bytes_on_the_wire)
{
	static const uint8_t want_msg[20] = {
		0x02, 0, 0, 0,  0x01, 0, 0, 0,  0x08, 0, 0, 0,
		0x0d, 0xf0, 0xad, 0xde, 0xef, 0xbe, 0x0d, 0xf0,
	};
	static const uint8_t want_hdr[12] = {
		0x0f, 0, 0, 0,  0x09, 0, 0, 0,  0, 0, 0, 0,
	};
	static const uint8_t want_cfg[20] = {
		0x18, 0, 0, 0,  0x05, 0, 0, 0,  0x08, 0, 0, 0,
		0x10, 0, 0, 0,  0xaa, 0xbb, 0xcc, 0xdd,
	};
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	uint64_t v = 0xf00dbeefdeadf00dull;
	uint32_t off = 0x10;
	uint8_t p[4] = { 0xaa, 0xbb, 0xcc, 0xdd }, raw[64];
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_endpoint_from_fd(sv[0], &front, &a), 0);
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &v, 8, NULL, 0), 0);
	cr_assert_eq(read(sv[1], raw, sizeof(raw)), 20);
	cr_assert_arr_eq(raw, want_msg, 20);

	hdr = vhu_hdr_request(VHU_REQ_GET_PROTOCOL_FEATURES, 0, true);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, NULL, 0), 0);
	cr_assert_eq(read(sv[1], raw, sizeof(raw)), 12);
	cr_assert_arr_eq(raw, want_hdr, 12);

	/* Not a valid config body; the sender frames what it is given. */
	hdr = vhu_hdr_reply(VHU_REQ_GET_CONFIG, 8);
	cr_assert_eq(vhu_endpoint_send_message_with_payload(a, &hdr, &off, 4, p, 4, NULL, 0), 0);
	cr_assert_eq(read(sv[1], raw, sizeof(raw)), 20);
	cr_assert_arr_eq(raw, want_cfg, 20);
	vhu_endpoint_destroy(a);
	close(sv[1]);

	/* The other direction: bytes written by hand parse as the same message. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_endpoint_from_fd(sv[1], &back, &b), 0);
	cr_assert_eq(write(sv[0], want_msg, 20), 20);
	{
		struct vhu_hdr got;
		struct vhu_u64 r;
		struct vhu_fds fds;

		cr_assert_eq(vhu_endpoint_recv_body(b, &got, &r, 8, &fds), 0);
		cr_assert_eq(got.request, 2);
		cr_assert_eq(r.value, 0xf00dbeefdeadf00dull);
	}
	vhu_endpoint_destroy(b);
	close(sv[0]);
}

/* call: the reply is queued first on the full-duplex pair, so no thread is needed. */
Test(endpoint, call_returns_the_reply_body)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false), got;
	struct vhu_hdr rep = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
	uint64_t feat = (1ull << VHU_F_VERSION_1) | (1ull << VHU_F_PROTOCOL_FEATURES), r = 0;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message(b, &rep, &feat, 8, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_call(a, &req, NULL, 0, NULL, 0, &r, sizeof(r), NULL), 8);
	cr_assert_eq(r, feat);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), 0, "the request went out");
	cr_assert_eq(got.request, VHU_REQ_GET_FEATURES);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, call_reply_with_an_fd)
{
	struct vhu_endpoint *a, *b;
	struct vhu_inflight in = { .mmap_size = 0, .num_queues = 1, .queue_size = 128 }, out;
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_INFLIGHT_FD, sizeof(in), false);
	struct vhu_hdr rep = vhu_hdr_reply(VHU_REQ_GET_INFLIGHT_FD, sizeof(in));
	struct vhu_fds fds;
	int f = t_memfd("inflight");

	pair(&a, &b);
	in.mmap_size = 4096;
	cr_assert_eq(vhu_endpoint_send_message(b, &rep, &in, sizeof(in), &f, 1), 0);
	cr_assert_eq(vhu_endpoint_call(a, &req, &in, sizeof(in), NULL, 0, &out, sizeof(out),
				       &fds), (ssize_t)sizeof(in));
	cr_assert_eq(out.mmap_size, 4096);
	assert_same_files(&fds, &f, 1);
	vhu_fds_close(&fds);
	close(f);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, call_reply_to_another_request_is_ereply)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	struct vhu_hdr rep = vhu_hdr_reply(VHU_REQ_GET_PROTOCOL_FEATURES, 8);
	uint64_t v = 1, r = 0;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message(b, &rep, &v, 8, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_call(a, &req, NULL, 0, NULL, 0, &r, 8, &fds), -VHU_EREPLY);
	cr_assert_eq(fds.n, 0);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, call_reply_with_wrong_flags_is_ereply)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	/* Right code, but REPLY|NEED_REPLY: QEMU accepts only exactly 0x5. */
	struct vhu_hdr rep = { VHU_REQ_GET_FEATURES, 0xd, 8 };
	uint64_t v = 1, r = 0;
	int f = t_eventfd(), before;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message(b, &rep, &v, 8, &f, 1), 0);
	before = t_fd_count();
	cr_assert_eq(vhu_endpoint_call(a, &req, NULL, 0, NULL, 0, &r, 8, &fds), -VHU_EREPLY);
	cr_assert_eq(fds.n, 0);
	cr_assert_eq(t_fd_count(), before, "the reply's fd was closed");
	close(f);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, backend_channel_from_set_backend_req_fd)
{
	struct vhu_endpoint *a, *b, *chan;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_BACKEND_REQ_FD, 0, false), got;
	struct vhu_fds fds;
	int sv[2];

	pair(&a, &b);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, &sv[1], 1), 0);
	close(sv[1]);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), 0);
	cr_assert_eq(vhu_endpoint_from_backend_req_fd(&fds, &chan), 0);
	cr_assert_eq(fds.n, 0);
	cr_assert_eq(vhu_endpoint_rules(chan)->channel, VHU_CHAN_BACKEND);
	cr_assert_eq(vhu_endpoint_rules(chan)->expect, VHU_EXPECT_REPLY);
	/* The channel works: the front-end end receives a back-end request. */
	hdr = vhu_hdr_request(VHU_BREQ_CONFIG_CHANGE_MSG, 0, false);
	cr_assert_eq(vhu_endpoint_send_header(chan, &hdr, NULL, 0), 0);
	cr_assert_eq(read(sv[0], &got, sizeof(got)), 12);
	cr_assert_eq(got.request, VHU_BREQ_CONFIG_CHANGE_MSG);
	vhu_endpoint_destroy(chan);
	close(sv[0]);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, backend_req_fd_needs_exactly_one_fd)
{
	struct vhu_endpoint *chan = (struct vhu_endpoint *)&chan;
	struct vhu_fds fds;
	int before = t_fd_count();

	vhu_fds_init(&fds);
	cr_assert_eq(vhu_endpoint_from_backend_req_fd(&fds, &chan), -VHU_EINVALID);
	cr_assert_null(chan);
	fds.fd[fds.n++] = t_eventfd();
	fds.fd[fds.n++] = t_eventfd();
	cr_assert_eq(vhu_endpoint_from_backend_req_fd(&fds, &chan), -VHU_EINVALID);
	cr_assert_eq(fds.n, 0);
	cr_assert_eq(t_fd_count(), before, "both fds closed");
}

Test(endpoint, from_fd_refuses_what_is_not_a_stream_socket)
{
	struct vhu_endpoint *ep;
	int before = t_fd_count(), sv[2];

	cr_assert_eq(vhu_endpoint_from_fd(t_memfd("x"), NULL, &ep), -ENOTSOCK);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_endpoint_from_fd(sv[0], NULL, &ep), -ENOTSOCK);
	close(sv[1]);
	cr_assert_eq(t_fd_count(), before, "the fd is closed on failure");
	cr_assert_eq(vhu_endpoint_from_fd(-1, NULL, &ep), -EBADF);
}

Test(endpoint, connect_errors)
{
	struct vhu_endpoint *ep;
	char longp[200];

	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	cr_assert_eq(vhu_endpoint_connect(longp, NULL, &ep), -ENAMETOOLONG);
	cr_assert_eq(vhu_endpoint_connect(t_path("nobody.sock"), NULL, &ep), -ENOENT);
}

/* Errors ------------------------------------------------------------- */

Test(endpoint, one_byte_then_close_is_partial)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr got;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(write(vhu_endpoint_fd(a), "\x01", 1), 1);
	vhu_endpoint_destroy(a);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_EPARTIAL);
	vhu_endpoint_destroy(b);
}

Test(endpoint, header_then_half_a_body_then_close_is_partial)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false), got;
	struct vhu_u64 r;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(write(vhu_endpoint_fd(a), &hdr, 12), 12);
	cr_assert_eq(write(vhu_endpoint_fd(a), "abcd", 4), 4);
	vhu_endpoint_destroy(a);
	cr_assert_eq(vhu_endpoint_recv_body(b, &got, &r, 8, &fds), -VHU_EPARTIAL);
	vhu_endpoint_destroy(b);
}

Test(endpoint, header_then_close_before_body_is_partial)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false), got;
	struct vhu_u64 r;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(write(vhu_endpoint_fd(a), &hdr, 12), 12);
	vhu_endpoint_destroy(a);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), 0);
	cr_assert_eq(vhu_endpoint_recv_body_bytes(b, &got, &r, 8, &fds), -VHU_EPARTIAL);
	vhu_endpoint_destroy(b);
}

Test(endpoint, close_before_any_byte_is_disconnect)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr got;
	struct vhu_fds fds;
	char buf[4];
	struct iovec iov = { buf, 4 };

	pair(&a, &b);
	vhu_endpoint_destroy(a);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_EDISCONNECT);
	cr_assert_eq(recv_n(b, buf, 4, NULL), -VHU_EDISCONNECT);
	vhu_fds_init(&fds);
	cr_assert_eq(vhu_endpoint_recv_all(b, &iov, 1, &fds), -VHU_EDISCONNECT);
	vhu_endpoint_destroy(b);
}

Test(endpoint, bad_version_is_eversion)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = { VHU_REQ_GET_FEATURES, 0x2, 0 }, got;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_EVERSION);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, bad_header_closes_its_fds)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = { VHU_REQ_SET_LOG_FD, 0x0, 0 }, got;
	struct vhu_fds fds;
	int f = t_eventfd(), before;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, &f, 1), 0);
	before = t_fd_count();
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_EVERSION);
	cr_assert_eq(fds.n, 0);
	cr_assert_eq(t_fd_count(), before);
	close(f);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, oversized_is_eoversized)
{
	static const struct vhu_rules small = {
		.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST, .max_size = 64,
	};
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_CONFIG, VHU_DEFAULT_MAX_SIZE + 1, false);
	struct vhu_hdr got;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(write(vhu_endpoint_fd(a), &hdr, 12), 12);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_EOVERSIZED);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);

	/* The endpoint's own limit. */
	cr_assert_eq(vhu_endpoint_pair(&front, &small, &a, &b), 0);
	hdr.size = 65;
	cr_assert_eq(write(vhu_endpoint_fd(a), &hdr, 12), 12);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_EOVERSIZED);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, payload_buffer_too_small)
{
	struct vhu_endpoint *a, *b;
	struct vhu_config cfg = { .offset = 0, .size = 16, .flags = 0 }, rcfg;
	uint8_t payload[16] = { 0 }, small[8];
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_CONFIG, 28, false), got;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message_with_payload(a, &hdr, &cfg, 12, payload, 16,
							    NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_payload_into_buf(b, &got, &rcfg, 12, small, sizeof(small),
							&fds), -VHU_EOVERSIZED);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, size_below_body_len_is_ebodysize)
{
	struct vhu_endpoint *a, *b;
	struct vhu_config cfg = { .offset = 0, .size = 0, .flags = 0 };
	uint8_t body[16], payload[16];
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_CONFIG, 12, false), got;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &cfg, 12, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_payload_into_buf(b, &got, body, sizeof(body), payload,
							sizeof(payload), &fds), -VHU_EBODYSIZE);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, recv_body_size_mismatch_is_ebodysize)
{
	struct vhu_endpoint *a, *b;
	struct vhu_vring_addr addr;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false), got;
	uint64_t v = 3;
	struct vhu_fds fds;

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &v, 8, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_body(b, &got, &addr, sizeof(addr), &fds), -VHU_EBODYSIZE);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, fds_on_the_body_are_invalid_and_all_closed)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, false), got;
	uint64_t v = 0;
	struct vhu_fds fds;
	int f1 = t_eventfd(), f2 = t_eventfd(), before;

	pair(&a, &b);
	/* Header with its fd, then the body with another: the second is out of place. */
	raw_send(vhu_endpoint_fd(a), &hdr, 12, &f1, 1);
	raw_send(vhu_endpoint_fd(a), &v, 8, &f2, 1);
	before = t_fd_count();
	cr_assert_eq(vhu_endpoint_recv_body(b, &got, &v, 8, &fds), -VHU_EINVALID);
	cr_assert_eq(fds.n, 0);
	cr_assert_eq(t_fd_count(), before, "the header's fd and the body's fd are closed");
	close(f1);
	close(f2);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, wrong_fd_count_is_efds)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, false), got;
	uint64_t v = 0, r;
	struct vhu_fds fds;
	int f = t_eventfd(), before;

	pair(&a, &b);
	/* SET_VRING_CALL without NOFD needs its fd. */
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &v, 8, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_body(b, &got, &r, 8, &fds), -VHU_EFDS);
	/* With NOFD it is fine without one. */
	v = VHU_VRING_NOFD;
	cr_assert_eq(vhu_endpoint_send_message(a, &hdr, &v, 8, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_body(b, &got, &r, 8, &fds), 0);
	/* Header-only messages are settled by recv_header: SET_LOG_FD without its fd... */
	hdr = vhu_hdr_request(VHU_REQ_SET_LOG_FD, 0, false);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_EFDS);
	/* ...and GET_FEATURES with an fd it must not carry (closed). */
	hdr = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, &f, 1), 0);
	before = t_fd_count();
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_EFDS);
	cr_assert_eq(fds.n, 0);
	cr_assert_eq(t_fd_count(), before);
	close(f);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

/*
 * A header that arrives in three pieces. A stream read glues chunks from
 * one writer, but not chunks from different writers when the reader has
 * SO_PASSCRED, so: parent, child process, parent. The raw reads below
 * check that premise; then vhu must reassemble the same three pieces.
 */
static void
write_split(int sock, const uint8_t *msg)
{
	pid_t pid;
	int st;

	cr_assert_eq(write(sock, msg, 4), 4);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		_exit(write(sock, msg + 4, 4) == 4 ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_eq(write(sock, msg + 8, 12), 12);
}

Test(endpoint, split_header_is_reassembled)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false), got;
	uint8_t msg[20], raw[32];
	struct vhu_u64 r;
	struct vhu_fds fds;
	int on = 1;
	union vhu_cmsg_buf cb;
	struct iovec iov = { raw, sizeof(raw) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	uint64_t v = 0x1122334455667788ull;

	memcpy(msg, &hdr, 12);
	memcpy(msg + 12, &v, 8);
	pair(&a, &b);
	cr_assert_eq(setsockopt(vhu_endpoint_fd(b), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);

	write_split(vhu_endpoint_fd(a), msg);
	vhu_cmsg_prep_recv(&mh, &cb);
	cr_assert_eq(recvmsg(vhu_endpoint_fd(b), &mh, 0), 4, "premise: first piece alone");
	vhu_cmsg_prep_recv(&mh, &cb);
	cr_assert_eq(recvmsg(vhu_endpoint_fd(b), &mh, 0), 4, "premise: second piece alone");
	vhu_cmsg_prep_recv(&mh, &cb);
	cr_assert_eq(recvmsg(vhu_endpoint_fd(b), &mh, 0), 12);

	write_split(vhu_endpoint_fd(a), msg);
	cr_assert_eq(vhu_endpoint_recv_body(b, &got, &r, 8, &fds), 0);
	cr_assert_eq(got.request, VHU_REQ_SET_FEATURES);
	cr_assert_eq(got.size, 8);
	cr_assert_eq(r.value, v);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint, nonblocking_with_nothing_pending_is_eretry)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr got;
	struct vhu_fds fds;
	char buf[4];
	struct iovec iov = { buf, 4 };

	pair(&a, &b);
	cr_assert_eq(vhu_endpoint_set_nonblocking(b, true), 0);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), -VHU_ERETRY);
	cr_assert_eq(recv_n(b, buf, 4, NULL), -VHU_ERETRY);
	vhu_fds_init(&fds);
	cr_assert_eq(vhu_endpoint_recv_all(b, &iov, 1, &fds), -VHU_ERETRY);
	/* Nothing was consumed: a message sent now is received whole. */
	cr_assert_eq(send_n(a, "\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00", 12, NULL, 0),
		     12);
	cr_assert_eq(vhu_endpoint_recv_header(b, &got, &fds), 0);
	cr_assert_eq(got.request, VHU_REQ_GET_FEATURES);
	cr_assert_eq(vhu_endpoint_set_nonblocking(b, false), 0);
	cr_assert_eq(fcntl(vhu_endpoint_fd(b), F_GETFL) & O_NONBLOCK, 0);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

/* Runs with SIGPIPE at its default action: without MSG_NOSIGNAL the test process dies. */
Test(endpoint, send_to_a_closed_peer_is_epipe)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);

	signal(SIGPIPE, SIG_DFL);
	pair(&a, &b);
	vhu_endpoint_destroy(b);
	cr_assert_eq(vhu_endpoint_send_header(a, &hdr, NULL, 0), -EPIPE);
	cr_assert_eq(send_n(a, "x", 1, NULL, 0), -EPIPE);
	vhu_endpoint_destroy(a);
}

Test(endpoint, request_on_a_reply_socket_is_eflags)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false), got;
	struct vhu_fds fds;

	pair(&a, &b);
	/* a is a front-end: it expects replies, and gets a request. */
	cr_assert_eq(vhu_endpoint_send_header(b, &hdr, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_recv_header(a, &got, &fds), -VHU_EFLAGS);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}
