/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine's receive path and connection close semantics, in
 * both receive modes: each body below takes the mode and is run by two
 * Test()s beside it, conn/NAME in exact mode (header read, then body read)
 * and stream/NAME in stream mode (multishot recvmsg into provided buffers
 * and the framer). At the end, what only exact mode promises; what only
 * stream mode promises is in test_stream.c, the send path in test_send.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uring_helpers.h"

#define EXACT	VHU_RECV_EXACT
#define STREAM	VHU_RECV_STREAM

TestSuite(conn, .init = t_setup, .fini = t_teardown, .timeout = 50);
TestSuite(stream, .init = t_setup, .fini = t_teardown, .timeout = 50);

/* ------------------------------------------------------------------ */
/* Receive path, both modes                                            */

/*
 * A 52-byte SET_VRING_ADDR cut at every byte position and at every pair of
 * positions, the engine reading each piece before the next is written:
 * exactly one message per whole one, never early, bytes intact.
 */
static void
split_at_every_byte(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec;
	uint8_t m[VHU_HDR_SIZE + sizeof(struct vhu_vring_addr)];
	const size_t len = sizeof(m);
	unsigned int seq = 0;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (size_t a = 1; a < len; a++) {
		for (size_t b = a; b < len; b++) {
			struct vhu_vring_addr va = th_vring_addr(seq % 4, 0x10000 + 16ull * seq);
			size_t before = rec.n;

			th_put(m, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
			th_send(peer, m, a, NULL, 0);
			th_drain(ring, &rec);
			if (b > a) {
				th_send(peer, m + a, b - a, NULL, 0);
				th_drain(ring, &rec);
			}
			th_assert_open(&rec, "split message");
			cr_assert_eq(rec.n, before,
				     "cut at %zu and %zu: delivered before its last byte", a, b);
			th_send(peer, m + b, len - b, NULL, 0);
			th_wait_msgs(ring, &rec, before + 1, NULL);
			th_assert_msg(&rec, before, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va), 0);
			seq++;
		}
	}
	cr_assert_eq(seq, (len - 1) * len / 2);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

Test(conn, split_at_every_byte) { split_at_every_byte(EXACT); }
Test(stream, split_at_every_byte) { split_at_every_byte(STREAM); }

/*
 * Several messages in one write come out in order; two whole messages plus
 * the start of a third deliver exactly two until the rest arrives.
 */
static void
batch_in_one_write(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec;
	uint8_t buf[1024];
	size_t off = 0;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (int i = 0; i < 10; i++) {
		off = th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	for (uint64_t i = 0; i < 5; i++) {
		off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, 0x1000 + i);
	}
	th_send(peer, buf, off, NULL, 0);
	th_wait_msgs(ring, &rec, 15, NULL);
	for (size_t i = 0; i < 10; i++) {
		th_assert_msg(&rec, i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
	}
	for (uint64_t i = 0; i < 5; i++) {
		uint64_t v = 0x1000 + i;

		th_assert_msg(&rec, 10 + i, VHU_REQ_SET_FEATURES, &v, sizeof(v), 0);
	}

	off = 0;
	for (uint64_t i = 0; i < 3; i++) {
		off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, 0x2000 + i);
	}
	th_send(peer, buf, off - 7, NULL, 0);
	th_drain(ring, &rec);
	th_flush(ring);
	th_assert_open(&rec, "batch with a partial tail");
	cr_assert_eq(rec.n, 17, "%zu messages after 2.5 were written, want 17", rec.n);
	th_send(peer, buf + off - 7, 7, NULL, 0);
	th_wait_msgs(ring, &rec, 18, NULL);
	for (uint64_t i = 0; i < 3; i++) {
		uint64_t v = 0x2000 + i;

		th_assert_msg(&rec, 15 + i, VHU_REQ_SET_FEATURES, &v, sizeof(v), 0);
	}
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

Test(conn, batch_in_one_write) { batch_in_one_write(EXACT); }
Test(stream, batch_in_one_write) { batch_in_one_write(STREAM); }

/*
 * fd-carrying messages preceded by fd-less ones, every message written by
 * its own sendmsg (or a few fd-less ones together), all before the ring
 * runs: each fd lands on its own message and is the same file.
 */
static void
fds_after_fdless_messages(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_mem_table mt;
	struct th_rec rec;
	uint8_t buf[512];
	size_t off;
	uint32_t mtsize = th_mem_table(&mt, 3);
	int efd[2] = { t_eventfd(), t_eventfd() };
	int mfd[3] = { t_memfd("region 0"), t_memfd("region 1"), t_memfd("region 2") };
	uint64_t call = 1, err = 2, kick = 3 | VHU_VRING_NOFD;
	uint64_t f10 = 10, f11 = 11, f12 = 12;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);

	off = 0;
	for (int i = 0; i < 3; i++) {
		off = th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	th_send(peer, buf, off, NULL, 0);
	off = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, call);
	th_send(peer, buf, off, &efd[0], 1);
	off = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, f10);
	off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, f11);
	th_send(peer, buf, off, NULL, 0);
	off = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mtsize);
	th_send(peer, buf, off, mfd, 3);
	off = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
	th_send(peer, buf, off, NULL, 0);
	off = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, f12);
	th_send(peer, buf, off, NULL, 0);
	off = th_put_u64(buf, 0, VHU_REQ_SET_VRING_ERR, err);
	th_send(peer, buf, off, &efd[1], 1);
	off = th_put_u64(buf, 0, VHU_REQ_SET_VRING_KICK, kick);
	th_send(peer, buf, off, NULL, 0);

	th_wait_msgs(ring, &rec, 11, NULL);
	for (size_t i = 0; i < 3; i++) {
		th_assert_msg(&rec, i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
	}
	th_assert_msg(&rec, 3, VHU_REQ_SET_VRING_CALL, &call, 8, 1);
	cr_assert(t_same_file(efd[0], rec.msg[3].fd[0]), "SET_VRING_CALL got another file");
	th_assert_msg(&rec, 4, VHU_REQ_SET_FEATURES, &f10, 8, 0);
	th_assert_msg(&rec, 5, VHU_REQ_SET_FEATURES, &f11, 8, 0);
	th_assert_msg(&rec, 6, VHU_REQ_SET_MEM_TABLE, &mt, mtsize, 3);
	for (int i = 0; i < 3; i++) {
		cr_assert(t_same_file(mfd[i], rec.msg[6].fd[i]), "memory region %d: wrong file", i);
	}
	th_assert_msg(&rec, 7, VHU_REQ_GET_FEATURES, NULL, 0, 0);
	th_assert_msg(&rec, 8, VHU_REQ_SET_FEATURES, &f12, 8, 0);
	th_assert_msg(&rec, 9, VHU_REQ_SET_VRING_ERR, &err, 8, 1);
	cr_assert(t_same_file(efd[1], rec.msg[9].fd[0]), "SET_VRING_ERR got another file");
	th_assert_msg(&rec, 10, VHU_REQ_SET_VRING_KICK, &kick, 8, 0);

	th_close_all(efd, 2);
	th_close_all(mfd, 3);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

Test(conn, fds_after_fdless_messages) { fds_after_fdless_messages(EXACT); }
Test(stream, fds_after_fdless_messages) { fds_after_fdless_messages(STREAM); }

/*
 * Senders that split a message (libvhost-user, crosvm 2023): header with
 * the fds in one sendmsg, body in a later write; with the engine reading in
 * between, and with both pieces waiting before the ring runs.
 */
static void
header_with_fds_then_body(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_mem_table mt;
	uint32_t mts = th_mem_table(&mt, 3);
	int mfd[3] = { t_memfd("a"), t_memfd("b"), t_memfd("c") };
	int efd = t_eventfd();
	uint64_t word = 5;
	struct th_rec rec;
	uint8_t buf[512];
	size_t len, n = 0;
	int peer;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (int drained = 0; drained < 2; drained++) {
		len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, word);
		th_send(peer, buf, VHU_HDR_SIZE, &efd, 1);
		if (drained) {
			th_drain(ring, &rec);
		}
		th_send(peer, buf + VHU_HDR_SIZE, len - VHU_HDR_SIZE, NULL, 0);
		len = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mts);
		th_send(peer, buf, VHU_HDR_SIZE, mfd, 3);
		if (drained) {
			th_drain(ring, &rec);
		}
		th_send(peer, buf + VHU_HDR_SIZE, len - VHU_HDR_SIZE, NULL, 0);
		n += 2;
		th_wait_msgs(ring, &rec, n, NULL);
		th_assert_msg(&rec, n - 2, VHU_REQ_SET_VRING_CALL, &word, 8, 1);
		cr_assert(t_same_file(efd, rec.msg[n - 2].fd[0]));
		th_assert_msg(&rec, n - 1, VHU_REQ_SET_MEM_TABLE, &mt, mts, 3);
		for (int i = 0; i < 3; i++) {
			cr_assert(t_same_file(mfd[i], rec.msg[n - 1].fd[i]), "region %d", i);
		}
	}
	close(efd);
	th_close_all(mfd, 3);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

Test(conn, header_with_fds_then_body) { header_with_fds_then_body(EXACT); }
Test(stream, header_with_fds_then_body) { header_with_fds_then_body(STREAM); }

/*
 * Bodies at the size limit: a 4096-byte VAR body under the default limit,
 * the most fds a message may carry (32 memory regions), and with the limit
 * raised to 16384, two 16384-byte bodies back to back (far larger than any
 * sensible provided buffer, so stream mode must reassemble across them).
 */
static void
max_size_bodies_and_fds(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_conn_opts big = th_opts(mode);
	struct vhu_mem_table mt;
	struct th_rec a, b;
	const size_t blen = 16384;
	uint8_t *buf = malloc(2 * (VHU_HDR_SIZE + blen));
	uint8_t *body = malloc(blen);
	uint8_t *body2 = malloc(blen);
	int mfd[VHU_MAX_FDS];
	uint32_t mtsize = th_mem_table(&mt, VHU_MAX_MEM_REGIONS);
	size_t off;
	int pa, pb;

	cr_assert(buf && body && body2);
	th_rec_init(&a);
	th_rec_init(&b);
	pa = th_attach(ring, &o, &a);
	big.rules.max_size = (uint32_t)blen;
	pb = th_attach(ring, &big, &b);

	th_pattern(body, VHU_DEFAULT_MAX_SIZE, 1);
	off = th_put(buf, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, VHU_DEFAULT_MAX_SIZE);
	th_send(pa, buf, off, NULL, 0);
	th_wait_msgs(ring, &a, 1, NULL);
	th_assert_msg(&a, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, VHU_DEFAULT_MAX_SIZE, 0);

	for (unsigned int i = 0; i < VHU_MAX_FDS; i++) {
		char name[16];

		snprintf(name, sizeof(name), "region %u", i);
		mfd[i] = t_memfd(name);
	}
	off = th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, &mt, mtsize);
	th_send(pa, buf, off, mfd, VHU_MAX_FDS);
	th_wait_msgs(ring, &a, 2, NULL);
	th_assert_msg(&a, 1, VHU_REQ_SET_MEM_TABLE, &mt, mtsize, VHU_MAX_FDS);
	for (unsigned int i = 0; i < VHU_MAX_FDS; i++) {
		cr_assert(t_same_file(mfd[i], a.msg[1].fd[i]), "memory region %u: wrong file", i);
	}
	th_close_all(mfd, VHU_MAX_FDS);

	th_pattern(body, blen, 2);
	th_pattern(body2, blen, 3);
	off = th_put(buf, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, (uint32_t)blen);
	off = th_put(buf, off, VHU_REQ_CREATE_CRYPTO_SESSION, body2, (uint32_t)blen);
	th_send(pb, buf, off, NULL, 0);
	th_wait_msgs(ring, &b, 2, NULL);
	th_assert_msg(&b, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, (uint32_t)blen, 0);
	th_assert_msg(&b, 1, VHU_REQ_CREATE_CRYPTO_SESSION, body2, (uint32_t)blen, 0);

	vhu_ring_destroy(ring);
	th_assert_closed(&a, 0, "destroy");
	th_assert_closed(&b, 0, "destroy");
	close(pa);
	close(pb);
	th_rec_fini(&a);
	th_rec_fini(&b);
	free(buf);
	free(body);
	free(body2);
	th_fd_check(fd_mark, __func__);
}

Test(conn, max_size_bodies_and_fds) { max_size_bodies_and_fds(EXACT); }
Test(stream, max_size_bodies_and_fds) { max_size_bodies_and_fds(STREAM); }

/*
 * Each hostile input of the table (hostile.c) closes only its own
 * connection: on_close once with the reason that names the fault, every
 * copy of the fd sent on it closed (probe), the peer sees the socket
 * closed, and a second connection on the same ring keeps delivering in
 * order.
 */
static void
validation_closes_only_offender(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec good;
	uint8_t *buf = malloc(TH_HOSTILE_BUF);
	uint64_t seq = 0;
	struct th_hostile c;
	int pgood;

	cr_assert_not_null(buf);
	th_rec_init(&good);
	pgood = th_attach(ring, &o, &good);
	for (unsigned int i = 0; th_hostile_build(i, buf, &c); i++) {
		struct vhu_conn_opts bo = th_opts(mode);
		struct th_probe probe = th_probe_new();
		int fds[TH_SCM_MAX_FD];
		struct th_rec bad;
		int before = t_fd_count();
		size_t off;
		int peer;

		th_hostile_opts(&c, &bo);
		th_rec_init(&bad);
		peer = th_attach(ring, &bo, &bad);
		cr_assert_eq(vhu_ring_conn_count(ring), 2);
		th_probe_fds(&probe, fds, c.nfds);
		if (c.len) {
			th_send(peer, buf, c.len, fds, c.nfds);
		}
		th_probe_drop_wr(&probe);
		if (c.shut) {
			close(peer);
			peer = -1;
		}
		th_wait_closed(ring, &bad, c.name);
		th_assert_closed(&bad, c.reason[mode], c.name);
		cr_assert_eq(bad.n, c.msgs, "%s: %zu messages delivered, want %zu", c.name, bad.n,
			     c.msgs);
		cr_assert_eq(vhu_ring_conn_count(ring), 1, "%s: conn count", c.name);
		if (peer >= 0) {
			th_assert_peer_eof(peer, c.name);
			close(peer);
		}
		th_rec_fini(&bad);
		th_probe_assert_all_closed(&probe, c.name);
		cr_assert_eq(t_fd_count(), before - 2, "%s: %d fds open before, %d after the close",
			     c.name, before - 2, t_fd_count());

		seq++;
		off = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, seq);
		th_send(pgood, buf, off, NULL, 0);
		th_wait_msgs(ring, &good, seq, c.name);
	}
	cr_assert_eq(seq, TH_NHOSTILE);
	for (uint64_t i = 0; i < seq; i++) {
		uint64_t v = i + 1;

		th_assert_msg(&good, i, VHU_REQ_SET_FEATURES, &v, 8, 0);
	}
	free(buf);
	th_finish(ring, &good, pgood);
	th_fd_check(fd_mark, __func__);
}

Test(conn, validation_closes_only_offender) { validation_closes_only_offender(EXACT); }
Test(stream, validation_closes_only_offender) { validation_closes_only_offender(STREAM); }

/*
 * fds that arrive after the first chunk of a message: with the body after a
 * header read alone (for a request that takes one fd, and one that takes
 * none), and with the rest of a split header (completing it or not). Both
 * modes must refuse them (-VHU_EINVALID) and close the fd.
 */
static void
fds_on_body_chunk(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	static const struct {
		uint32_t req;
		size_t cut, more;	/* first write, then more bytes with the fd */
	} v[] = {
		{ VHU_REQ_SET_VRING_CALL, VHU_HDR_SIZE, 8 },
		{ VHU_REQ_SET_VRING_ADDR, VHU_HDR_SIZE, 40 },
		{ VHU_REQ_SET_VRING_CALL, 5, 3 },
		{ VHU_REQ_SET_VRING_CALL, 5, 15 },
		{ VHU_REQ_GET_FEATURES, 5, 7 },
	};
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct vhu_vring_addr va = th_vring_addr(0, 0x10000);
		uint64_t word = 0;
		uint8_t buf[64];
		int before = t_fd_count();
		struct th_rec rec;
		char what[80];
		int efd, peer;

		snprintf(what, sizeof(what), "%s, fd with bytes %zu..%zu",
			 vhu_req_name(VHU_CHAN_FRONTEND, v[i].req), v[i].cut, v[i].cut + v[i].more);
		if (v[i].req == VHU_REQ_SET_VRING_ADDR) {
			th_put(buf, 0, v[i].req, &va, sizeof(va));
		} else if (v[i].req == VHU_REQ_SET_VRING_CALL) {
			th_put(buf, 0, v[i].req, &word, sizeof(word));
		} else {
			th_put(buf, 0, v[i].req, NULL, 0);
		}
		th_rec_init(&rec);
		peer = th_attach(ring, &o, &rec);
		th_send(peer, buf, v[i].cut, NULL, 0);
		th_drain(ring, &rec);
		th_assert_open(&rec, what);
		efd = t_eventfd();
		th_send(peer, buf + v[i].cut, v[i].more, &efd, 1);
		close(efd);
		th_wait_closed(ring, &rec, NULL);
		th_assert_closed(&rec, -VHU_EINVALID, what);
		cr_assert_eq(rec.n, 0, "%s: delivered", what);
		th_assert_peer_eof(peer, NULL);
		close(peer);
		th_rec_fini(&rec);
		cr_assert_eq(t_fd_count(), before, "%s: the fd was not closed", what);
	}
	vhu_ring_destroy(ring);
	th_fd_check(fd_mark, __func__);
}

Test(conn, fds_on_body_chunk) { fds_on_body_chunk(EXACT); }
Test(stream, fds_on_body_chunk) { fds_on_body_chunk(STREAM); }

/* Answer every request with a u64 (conn index * 1000 + message number). */
static int
hook_reply(struct th_rec *r, struct vhu_conn *conn, struct th_msg *m)
{
	struct vhu_hdr h = vhu_hdr_reply(m->hdr.request, 8);
	uint64_t v = (uint64_t)r->idx * 1000 + r->n;
	int rc = vhu_conn_send(conn, &h, &v, sizeof(v), NULL, 0, NULL, 0);

	r->hook_calls++;
	if (rc != 0 && r->hook_rc == 1) {
		r->hook_rc = rc;
	}
	return 0;
}

struct many {
	struct th_rec *rec;
	unsigned int n;
	size_t want;
	long skip;	/* this one must close instead */
};

static bool
done_many(void *arg)
{
	struct many *w = arg;

	for (unsigned int i = 0; i < w->n; i++) {
		struct th_rec *r = &w->rec[i];

		if ((long)i == w->skip) {
			if (r->closes == 0) {
				return false;
			}
			continue;
		}
		if (r->closes > 0) {
			return true;	/* unexpected: the caller's asserts report it */
		}
		if (r->n < w->want || vhu_conn_sendq_len(r->conn) != 0) {
			return false;
		}
	}
	return true;
}

#define NCONN 256

/* Each peer reads its replies: k u64s numbered first..first+k-1. */
static void
many_read(int peer, long idx, unsigned int first, unsigned int k)
{
	uint8_t got[4 * 20], want[4 * 20];
	size_t off = 0;

	cr_assert_leq(k, 4);
	for (unsigned int j = 0; j < k; j++) {
		struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
		uint64_t v = (uint64_t)idx * 1000 + first + j;

		memcpy(want + off, &h, sizeof(h));
		memcpy(want + off + sizeof(h), &v, sizeof(v));
		off += 20;
	}
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "replies");
	th_assert_no_more(peer);
}

/*
 * 256 connections on one ring, each sending four requests in one write and
 * getting four replies sent from on_message; then one connection sends a
 * bad header and only it closes while the others go on.
 */
static void
many_connections(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec *rec = calloc(NCONN, sizeof(*rec));
	int *peer = calloc(NCONN, sizeof(*peer));
	struct many w = { .rec = rec, .n = NCONN, .want = 4, .skip = -1 };
	const long bad = 17;
	uint8_t buf[64];
	size_t off;

	cr_assert(rec && peer);
	for (long i = 0; i < NCONN; i++) {
		th_rec_init(&rec[i]);
		rec[i].idx = i;
		rec[i].hook = hook_reply;
		peer[i] = th_attach(ring, &o, &rec[i]);
	}
	cr_assert_eq(vhu_ring_conn_count(ring), NCONN);
	off = 0;
	for (int j = 0; j < 4; j++) {
		off = th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	for (long i = 0; i < NCONN; i++) {
		th_send(peer[i], buf, off, NULL, 0);
	}
	th_run_until(ring, done_many, &w, "4 replies on every connection");
	for (long i = 0; i < NCONN; i++) {
		th_assert_open(&rec[i], "round 1");
		cr_assert_eq(rec[i].n, 4, "conn %ld: %zu requests", i, rec[i].n);
		cr_assert_eq(rec[i].hook_rc, 1, "conn %ld: vhu_conn_send: %s", i,
			     vhu_errname(rec[i].hook_rc));
		many_read(peer[i], i, 1, 4);
	}

	for (long i = 0; i < NCONN; i++) {
		if (i == bad) {
			off = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, 2, 0, NULL, 0);
		} else {
			off = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
		}
		th_send(peer[i], buf, off, NULL, 0);
	}
	w.want = 5;
	w.skip = bad;
	th_run_until(ring, done_many, &w, "round 2");
	th_assert_closed(&rec[bad], -VHU_EVERSION, "the bad connection");
	cr_assert_eq(rec[bad].n, 4);
	cr_assert_eq(vhu_ring_conn_count(ring), NCONN - 1);
	for (long i = 0; i < NCONN; i++) {
		if (i != bad) {
			th_assert_open(&rec[i], "round 2");
			cr_assert_eq(rec[i].n, 5, "conn %ld: %zu requests", i, rec[i].n);
			many_read(peer[i], i, 5, 1);
		}
	}

	vhu_ring_destroy(ring);
	for (long i = 0; i < NCONN; i++) {
		if (i != bad) {
			th_assert_closed(&rec[i], 0, "destroy");
		}
		cr_assert_eq(rec[i].closes, 1);
		close(peer[i]);
		th_rec_fini(&rec[i]);
	}
	free(rec);
	free(peer);
	th_fd_check(fd_mark, __func__);
}

Test(conn, many_connections) { many_connections(EXACT); }
Test(stream, many_connections) { many_connections(STREAM); }

/* ------------------------------------------------------------------ */
/* Close semantics                                                     */

enum close_how {
	CLOSE_PLAIN,		/* vhu_conn_close() */
	CLOSE_REASON,	/* vhu_conn_close_reason(-EPROTO) */
	CLOSE_RETURN,	/* on_message returns -EBADMSG */
};

static int
hook_close(struct th_rec *r, struct vhu_conn *conn, struct th_msg *m)
{
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 0);

	r->hook_calls++;
	switch ((enum close_how)r->idx) {
	case CLOSE_PLAIN:
		vhu_conn_close(conn);
		break;
	case CLOSE_REASON:
		vhu_conn_close_reason(conn, -EPROTO);
		break;
	case CLOSE_RETURN:
		return -EBADMSG;
	}
	if (r->closes == 0) {
		/* Still closing: the handle stays valid until on_close, and refuses sends. */
		r->hook_rc = vhu_conn_send(conn, &h, NULL, 0, NULL, 0, NULL, 0);
		vhu_conn_close(conn);
	}
	return 0;
}

/*
 * Closing from inside on_message (three ways): no further message of that
 * connection is delivered although more were already read, on_close fires
 * once with the right reason, the peer sees the socket closed.
 */
static void
close_in_on_message(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	static const int want[] = { 0, -EPROTO, -EBADMSG };

	for (int how = CLOSE_PLAIN; how <= CLOSE_RETURN; how++) {
		struct vhu_ring *ring = th_ring(0);
		struct vhu_conn_opts o = th_opts(mode);
		struct th_rec rec, other;
		uint8_t buf[128];
		size_t off = 0;
		int peer, pother;

		th_rec_init(&rec);
		th_rec_init(&other);
		rec.idx = how;
		rec.hook = hook_close;
		peer = th_attach(ring, &o, &rec);
		pother = th_attach(ring, &o, &other);
		for (uint64_t i = 0; i < 3; i++) {
			off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, i);
		}
		th_send(peer, buf, off, NULL, 0);
		th_send(pother, buf, off, NULL, 0);
		th_wait_closed(ring, &rec, NULL);
		th_wait_msgs(ring, &other, 3, NULL);
		th_assert_closed(&rec, want[how], "closed in on_message");
		cr_assert_eq(rec.n, 1, "%zu messages delivered; the first one closed it", rec.n);
		cr_assert_eq(rec.hook_calls, 1);
		if (how != CLOSE_RETURN && rec.hook_rc != 1) {
			cr_assert_eq(rec.hook_rc, -ENOTCONN,
				     "vhu_conn_send on a closing connection: %d (%s)", rec.hook_rc,
				     vhu_errname(rec.hook_rc));
		}
		th_assert_peer_eof(peer, NULL);
		close(peer);
		th_rec_fini(&rec);
		th_finish(ring, &other, pother);
	}
	th_fd_check(fd_mark, __func__);
}

Test(conn, close_in_on_message) { close_in_on_message(EXACT); }
Test(stream, close_in_on_message) { close_in_on_message(STREAM); }

/* Queue messages with fds (dups of efd[]) interleaved with fd-less ones. */
static unsigned int
queue_with_fds(struct th_rec *rec, const int *efd, unsigned int n, size_t big)
{
	uint8_t *body = calloc(1, big ? big : 1);
	unsigned int queued = 0;

	cr_assert_not_null(body);
	for (unsigned int k = 0; k < n; k++) {
		struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, false);
		struct vhu_hdr g = vhu_hdr_request(VHU_REQ_CREATE_CRYPTO_SESSION,
						   (uint32_t)big, false);
		struct vhu_hdr f = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
		uint64_t word = k;
		int d = th_dup(efd[k]);
		int rc;

		if (big) {
			th_pattern(body, big, k);
			rc = vhu_conn_send(rec->conn, &g, body, big, NULL, 0, NULL, 0);
		} else {
			rc = vhu_conn_send(rec->conn, &f, NULL, 0, NULL, 0, NULL, 0);
		}
		cr_assert_eq(rc, 0, "vhu_conn_send: %s", vhu_errname(rc));
		rc = vhu_conn_send(rec->conn, &h, &word, 8, NULL, 0, &d, 1);
		cr_assert_eq(rc, 0, "vhu_conn_send with an fd: %s", vhu_errname(rc));
		queued += 2;
	}
	free(body);
	return queued;
}

/*
 * vhu_conn_close with sends queued and not yet submitted, and with a send
 * blocked in the kernel on a full socket: on_close(0) once, and every fd
 * handed to vhu_conn_send is closed (sent ones reach the peer, which closes
 * them; dropped ones are closed by the engine).
 */
static void
close_with_sends_queued(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	for (int blocked = 0; blocked < 2; blocked++) {
		struct vhu_ring *ring = th_ring(0);
		struct vhu_conn_opts o = th_opts(mode);
		struct th_rec rec;
		int efd[6];
		unsigned int queued, got_fds = 0;
		int before, peer;

		o.sendq_bytes = 1u << 20;
		for (int k = 0; k < 6; k++) {
			efd[k] = t_eventfd();
		}
		before = t_fd_count();
		th_rec_init(&rec);
		peer = th_attach(ring, &o, &rec);
		if (blocked) {
			th_set_sndbuf(vhu_conn_fd(rec.conn), 4096);
		}
		queued = queue_with_fds(&rec, efd, 6, blocked ? 4096 : 0);
		cr_assert_eq(vhu_conn_sendq_len(rec.conn), queued);
		if (blocked) {
			th_flush(ring);
			cr_assert_gt(vhu_conn_sendq_len(rec.conn), 0,
				     "the socket took everything: nothing left blocked");
		}
		vhu_conn_close(rec.conn);
		th_wait_closed(ring, &rec, NULL);
		th_assert_closed(&rec, 0, blocked ? "close with a blocked send" :
						     "close with queued sends");
		th_read_to_eof(peer, &got_fds);
		cr_assert_leq(got_fds, 6);
		close(peer);
		th_rec_fini(&rec);
		cr_assert_eq(t_fd_count(), before, "fds of dropped messages were not closed");
		th_close_all(efd, 6);
		vhu_ring_destroy(ring);
	}
	th_fd_check(fd_mark, __func__);
}

Test(conn, close_with_sends_queued) { close_with_sends_queued(EXACT); }
Test(stream, close_with_sends_queued) { close_with_sends_queued(STREAM); }

/*
 * vhu_conn_close with a receive in flight: idle, after part of a header,
 * after a header and part of a body. on_close(0), not -VHU_EPARTIAL.
 */
static void
close_with_receive_in_flight(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	static const size_t cut[] = { 0, 5, 12, 20 };
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_vring_addr va = th_vring_addr(1, 0x40000);
	uint8_t buf[64];

	th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		struct th_rec rec;
		int peer;

		th_rec_init(&rec);
		peer = th_attach(ring, &o, &rec);
		if (cut[i]) {
			th_send(peer, buf, cut[i], NULL, 0);
		}
		th_drain(ring, &rec);
		th_assert_open(&rec, "before the close");
		vhu_conn_close(rec.conn);
		th_wait_closed(ring, &rec, NULL);
		th_assert_closed(&rec, 0, "close with a receive in flight");
		cr_assert_eq(rec.n, 0);
		cr_assert_eq(vhu_ring_conn_count(ring), 0);
		th_assert_peer_eof(peer, NULL);
		close(peer);
		th_rec_fini(&rec);
	}
	vhu_ring_destroy(ring);
	th_fd_check(fd_mark, __func__);
}

Test(conn, close_with_receive_in_flight) { close_with_receive_in_flight(EXACT); }
Test(stream, close_with_receive_in_flight) { close_with_receive_in_flight(STREAM); }

/*
 * The peer disconnects inside a message: in the header, after the header,
 * inside the body; with the partial bytes read before the EOF or together
 * with it. Always -VHU_EPARTIAL, once.
 */
static void
peer_gone_mid_message(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	static const size_t cut[] = { 1, 5, 11, 12, 13, 30, 51 };
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_vring_addr va = th_vring_addr(1, 0x40000);
	uint8_t buf[64];

	th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
	for (int drained = 0; drained < 2; drained++) {
		for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
			struct th_rec rec;
			int peer;

			th_rec_init(&rec);
			peer = th_attach(ring, &o, &rec);
			th_send(peer, buf, cut[i], NULL, 0);
			if (drained) {
				th_drain(ring, &rec);
				th_assert_open(&rec, "partial message");
			}
			close(peer);
			th_wait_closed(ring, &rec, NULL);
			th_assert_closed(&rec, -VHU_EPARTIAL, "peer gone inside a message");
			cr_assert_eq(rec.n, 0);
			th_rec_fini(&rec);
		}
	}
	cr_assert_eq(vhu_ring_conn_count(ring), 0);
	vhu_ring_destroy(ring);
	th_fd_check(fd_mark, __func__);
}

Test(conn, peer_gone_mid_message) { peer_gone_mid_message(EXACT); }
Test(stream, peer_gone_mid_message) { peer_gone_mid_message(STREAM); }

/*
 * vhu_ring_destroy with connections in every state (idle, partial message,
 * sends queued with fds): on_close(0) once each, and no fd left behind.
 */
static void
destroy_closes_all(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	int before = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec[3];
	int peer[3], efd[2] = { t_eventfd(), t_eventfd() };
	uint8_t buf[64];

	for (int i = 0; i < 3; i++) {
		th_rec_init(&rec[i]);
		peer[i] = th_attach(ring, &o, &rec[i]);
	}
	th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
	th_send(peer[1], buf, 5, NULL, 0);
	th_drain(ring, &rec[1]);
	queue_with_fds(&rec[2], efd, 2, 0);
	cr_assert_eq(vhu_ring_conn_count(ring), 3);
	vhu_ring_destroy(ring);
	for (int i = 0; i < 3; i++) {
		th_assert_closed(&rec[i], 0, "destroy");
		cr_assert_eq(rec[i].n, 0);
		th_read_to_eof(peer[i], NULL);
		close(peer[i]);
		th_rec_fini(&rec[i]);
	}
	th_close_all(efd, 2);
	cr_assert_eq(t_fd_count(), before);
	th_fd_check(fd_mark, __func__);
}

Test(conn, destroy_closes_all) { destroy_closes_all(EXACT); }
Test(stream, destroy_closes_all) { destroy_closes_all(STREAM); }

/*
 * A message stalled past msg_timeout_ms (in its header, or in its body)
 * closes with -ETIMEDOUT; an idle connection with the same timeout and a
 * stalled one without a timeout stay open.
 */
static void
stalled_message_times_out(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_conn_opts none = th_opts(mode);
	struct th_rec idle, untimed, hdr, body;
	struct vhu_vring_addr va = th_vring_addr(1, 0x40000);
	int pidle, puntimed, phdr, pbody;
	uint8_t buf[64];
	size_t len;
	int i;

	o.msg_timeout_ms = 50;
	th_rec_init(&idle);
	th_rec_init(&untimed);
	th_rec_init(&hdr);
	th_rec_init(&body);
	/* The idle one first: a timer wrongly armed on it would fire first. */
	pidle = th_attach(ring, &o, &idle);
	puntimed = th_attach(ring, &none, &untimed);
	phdr = th_attach(ring, &o, &hdr);
	pbody = th_attach(ring, &o, &body);
	len = th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
	th_send(puntimed, buf, 5, NULL, 0);
	th_send(phdr, buf, 5, NULL, 0);
	th_send(pbody, buf, 15, NULL, 0);
	th_drain(ring, &untimed);
	th_drain(ring, &hdr);
	th_drain(ring, &body);
	for (i = 0; i < 10 && (hdr.closes == 0 || body.closes == 0); i++) {
		int r = vhu_ring_wait(ring, 2000);

		cr_assert_geq(r, 0, "vhu_ring_wait: %s", vhu_errname(r));
	}
	th_assert_closed(&hdr, -ETIMEDOUT, "stalled in the header");
	th_assert_closed(&body, -ETIMEDOUT, "stalled in the body");
	th_assert_open(&idle, "idle connection with a timeout");
	th_assert_open(&untimed, "stalled connection without a timeout");

	/* Both survivors still work. */
	th_send(pidle, buf, len, NULL, 0);
	th_send(puntimed, buf + 5, len - 5, NULL, 0);
	th_wait_msgs(ring, &idle, 1, NULL);
	th_wait_msgs(ring, &untimed, 1, NULL);
	th_assert_msg(&idle, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va), 0);
	th_assert_msg(&untimed, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va), 0);

	vhu_ring_destroy(ring);
	th_assert_closed(&idle, 0, "destroy");
	th_assert_closed(&untimed, 0, "destroy");
	close(pidle);
	close(puntimed);
	close(phdr);
	close(pbody);
	th_rec_fini(&idle);
	th_rec_fini(&untimed);
	th_rec_fini(&hdr);
	th_rec_fini(&body);
	th_fd_check(fd_mark, __func__);
}

Test(conn, stalled_message_times_out) { stalled_message_times_out(EXACT); }
Test(stream, stalled_message_times_out) { stalled_message_times_out(STREAM); }

/*
 * Many small messages of three sizes (12, 20, 52 bytes: their boundaries
 * drift across any power-of-two buffer), with an fd message every 500,
 * written by a forked child while the ring runs, then EOF. All arrive in
 * order with the fds on their own messages; the connection then closes with
 * -VHU_EDISCONNECT. In stream mode this exhausts the provided buffers.
 */
static void
flood(uint8_t mode, unsigned int count)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_ring_stats st;
	struct th_rec rec;
	int efd = t_eventfd();
	int peer, status = -1;
	pid_t pid;

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		static uint8_t buf[128 * 52];
		size_t off = 0;

		/*
		 * Die with the test, and drop the inherited engine end: if the
		 * engine closes early, writes must fail instead of filling a socket
		 * this child keeps alive.
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(vhu_conn_fd(rec.conn));

		for (unsigned int i = 0; i < count; i++) {
			struct vhu_vring_addr va = th_vring_addr(i % 8, 16ull * i);

			if (i % 500 == 499) {
				uint8_t m[20];

				/* The fd message goes alone in its sendmsg, after the rest. */
				if (off && th_sendmsg(peer, buf, off, NULL, 0) != (ssize_t)off) {
					_exit(1);
				}
				off = 0;
				th_put_u64(m, 0, VHU_REQ_SET_VRING_CALL, i & 0xff);
				if (th_sendmsg(peer, m, sizeof(m), &efd, 1) != (ssize_t)sizeof(m)) {
					_exit(2);
				}
				continue;
			}
			switch (i % 3) {
			case 0:
				off = th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
				break;
			case 1:
				off = th_put_u64(buf, off, VHU_REQ_SET_FEATURES, i);
				break;
			default:
				off = th_put(buf, off, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
				break;
			}
			if (off + 52 > sizeof(buf)) {
				if (send(peer, buf, off, MSG_NOSIGNAL) != (ssize_t)off) {
					_exit(3);
				}
				off = 0;
			}
		}
		if (off && send(peer, buf, off, MSG_NOSIGNAL) != (ssize_t)off) {
			_exit(4);
		}
		_exit(0);
	}
	close(peer);
	th_wait_closed(ring, &rec, NULL);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer child failed: 0x%x",
		  status);
	th_assert_closed(&rec, -VHU_EDISCONNECT, "after the flood");
	cr_assert_eq(rec.n, count, "%zu of %u messages delivered", rec.n, count);
	for (unsigned int i = 0; i < count; i++) {
		struct vhu_vring_addr va = th_vring_addr(i % 8, 16ull * i);
		uint64_t v = i;

		if (i % 500 == 499) {
			v = i & 0xff;
			th_assert_msg(&rec, i, VHU_REQ_SET_VRING_CALL, &v, 8, 1);
			cr_assert(t_same_file(efd, rec.msg[i].fd[0]), "message %u: another file",
				  i);
			continue;
		}
		switch (i % 3) {
		case 0:
			th_assert_msg(&rec, i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
			break;
		case 1:
			th_assert_msg(&rec, i, VHU_REQ_SET_FEATURES, &v, 8, 0);
			break;
		default:
			th_assert_msg(&rec, i, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va), 0);
			break;
		}
	}
	vhu_ring_get_stats(ring, &st);
	cr_log_info("%u messages: %llu cqes, %llu enters, %llu rearms, %llu enobufs", count,
		    (unsigned long long)st.cqes, (unsigned long long)st.enters,
		    (unsigned long long)st.rearms, (unsigned long long)st.enobufs);
	cr_assert_geq(st.msgs_in, count);
	close(efd);
	vhu_ring_destroy(ring);
	th_rec_fini(&rec);
	th_fd_check(fd_mark, __func__);
}

Test(conn, flood) { flood(EXACT, 20000); }
/* Provided buffers run out while a child writes; nothing lost or reordered. */
Test(stream, flood_exhausts_buffers) { flood(STREAM, 20000); }

/* Message i of burst connection p: SET_FEATURES (p, i), every 4th a GET_FEATURES. */
static size_t
burst_put(uint8_t *buf, size_t off, unsigned int p, unsigned int i)
{
	if (i % 4 == 3) {
		return th_put(buf, off, VHU_REQ_GET_FEATURES, NULL, 0);
	}
	return th_put_u64(buf, off, VHU_REQ_SET_FEATURES, ((uint64_t)p << 32) | i);
}

struct burst_set {
	struct th_rec *rec;
	size_t *want;
	unsigned int n;
};

static bool
done_burst(void *arg)
{
	struct burst_set *b = arg;

	for (unsigned int p = 0; p < b->n; p++) {
		if (b->rec[p].closes == 0 && b->rec[p].n < b->want[p]) {
			return false;
		}
	}
	return true;
}

/*
 * Sixteen connections each write ~200 KiB (non-blocking, stopping early if
 * the kernel refuses more) before the ring runs: megabytes waiting at once,
 * more than a shared ring of provided buffers holds. Every message arrives,
 * in order, on its own connection, and none closes.
 */
static void
burst(uint8_t mode, struct vhu_ring_stats *out)
{
	const int fd_mark = t_fd_count();
	enum { NB = 16, CHUNK = 200, PER_CONN = 12000 };
	struct vhu_ring *ring = th_ring_small_bufs();
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_ring_stats st;
	struct th_rec rec[NB];
	int peer[NB];
	size_t want[NB], total = 0;
	struct burst_set w = { .rec = rec, .want = want, .n = NB };
	uint8_t buf[CHUNK * 20];
	int big = 1 << 20;

	for (unsigned int p = 0; p < NB; p++) {
		th_rec_init(&rec[p]);
		peer[p] = th_attach(ring, &o, &rec[p]);
		/* As much in flight as the peer's send buffer allows (forced when root). */
		if (setsockopt(peer[p], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) != 0) {
			setsockopt(peer[p], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		}
		want[p] = 0;
		while (want[p] < PER_CONN) {
			size_t off = 0;
			ssize_t n;

			for (unsigned int j = 0; j < CHUNK; j++) {
				off = burst_put(buf, off, p, (unsigned int)want[p] + j);
			}
			/* One chunk is one skb: the kernel takes all of it or none. */
			n = send(peer[p], buf, off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0) {
				cr_assert_eq(errno, EAGAIN, "burst send: %s", strerror(errno));
				break;
			}
			cr_assert_eq((size_t)n, off, "a %zu-byte chunk went in part (%zd)", off, n);
			want[p] += CHUNK;
		}
		cr_assert_gt(want[p], 0);
		total += want[p];
	}
	th_run_until(ring, done_burst, &w, "every burst delivered");
	th_flush(ring);
	for (unsigned int p = 0; p < NB; p++) {
		th_assert_open(&rec[p], "burst connection");
		cr_assert_eq(rec[p].n, want[p], "conn %u: %zu of %zu messages", p, rec[p].n,
			     want[p]);
		for (unsigned int i = 0; i < want[p]; i++) {
			uint64_t v = ((uint64_t)p << 32) | i;

			if (i % 4 == 3) {
				th_assert_msg(&rec[p], i, VHU_REQ_GET_FEATURES, NULL, 0, 0);
			} else {
				th_assert_msg(&rec[p], i, VHU_REQ_SET_FEATURES, &v, 8, 0);
			}
		}
	}
	vhu_ring_get_stats(ring, &st);
	cr_log_info("burst of %zu messages: %llu cqes, %llu rearms, %llu enobufs", total,
		    (unsigned long long)st.cqes, (unsigned long long)st.rearms,
		    (unsigned long long)st.enobufs);
	*out = st;
	vhu_ring_destroy(ring);
	for (unsigned int p = 0; p < NB; p++) {
		th_assert_closed(&rec[p], 0, "destroy");
		close(peer[p]);
		th_rec_fini(&rec[p]);
	}
	th_fd_check(fd_mark, __func__);
}

Test(conn, burst_on_many_sockets)
{
	struct vhu_ring_stats st;

	burst(EXACT, &st);
	cr_assert_eq(st.enobufs, 0, "exact mode uses no provided buffers");
}

/*
 * In stream mode the burst is more than the provided buffers hold (a ring
 * with 8 small ones), so the engine must recover from -ENOBUFS (at least
 * once) without losing or reordering a byte.
 */
Test(stream, burst_exhausts_buffers)
{
	struct vhu_ring_stats st;

	burst(STREAM, &st);
	cr_assert_gt(st.enobufs, 0, "the burst never exhausted the provided buffers: "
		     "make it larger than the ring's buffers");
	cr_assert_geq(st.rearms, st.enobufs);
}

/* ------------------------------------------------------------------ */
/* What only exact mode promises                                       */

/*
 * Exact mode ties fds to the header read they came with, so a sender that
 * puts two messages and one fd in a single sendmsg (which stream mode does
 * not support) still has the fd on the first message.
 */
Test(conn, fds_belong_to_first_header_of_sendmsg)
{
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(EXACT);
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
	th_wait_msgs(ring, &rec, 2, NULL);
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
	struct vhu_conn_opts o = th_opts(EXACT);
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
	th_wait_closed(ring, &rec, NULL);
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
	struct vhu_conn_opts o = th_opts(EXACT);
	struct vhu_ring_stats st;
	struct th_rec rec;
	struct utsname un;
	uint8_t buf[32 * 20];
	unsigned int major = 0, minor = 0;
	size_t off = 0;
	int peer;

	th_rec_init(&rec);
	rec.hook = hook_reply;
	peer = th_attach(ring, &o, &rec);
	for (int i = 0; i < 32; i++) {
		off = th_put_raw(buf, off, VHU_REQ_GET_FEATURES, VHU_VERSION, 0, NULL, 0);
	}
	th_send(peer, buf, off, NULL, 0);
	th_wait_msgs(ring, &rec, 32, NULL);
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
	return m->hdr.request == VHU_REQ_GET_FEATURES ? hook_reply(r, conn, m) : 0;
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
	struct vhu_conn_opts o = th_opts(EXACT);
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
