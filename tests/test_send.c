/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine's send path in both receive modes: each body takes
 * the mode and is run by conn/NAME (exact) and stream/NAME (stream) beside
 * it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uring_helpers.h"

#define EXACT	VHU_RECV_EXACT
#define STREAM	VHU_RECV_STREAM

TestSuite(conn, .init = t_setup, .fini = t_teardown, .timeout = 50);
TestSuite(stream, .init = t_setup, .fini = t_teardown, .timeout = 50);

/* ------------------------------------------------------------------ */
/* Send path                                                           */

/* Queue one message and append its wire bytes to want. */
static void
send_expect(struct th_rec *rec, uint8_t *want, size_t *off, uint32_t req, const void *body,
	       uint32_t blen, const void *payload, uint32_t plen)
{
	struct vhu_hdr h = vhu_hdr_request(req, blen + plen, false);
	int rc = vhu_conn_send(rec->conn, &h, body, blen, payload, plen, NULL, 0);

	cr_assert_eq(rc, 0, "vhu_conn_send of request %u: %d (%s)", req, rc, vhu_errname(rc));
	memcpy(want + *off, &h, sizeof(h));
	if (blen) {
		memcpy(want + *off + sizeof(h), body, blen);
	}
	if (plen) {
		memcpy(want + *off + sizeof(h) + blen, payload, plen);
	}
	*off += sizeof(h) + blen + plen;
}

/*
 * 256 messages of four shapes (no body, u64, 40-byte body, body plus
 * payload) queued in one go fill the default queue exactly; the 257th is
 * refused; the peer reads the exact byte stream, nothing more.
 */
static void
send_in_order(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_ring_stats st;
	struct th_rec rec;
	uint8_t *want = malloc(65536), *got = malloc(65536);
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	size_t off = 0;
	int peer, rc;

	cr_assert(want && got);
	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (uint32_t i = 0; i < 256; i++) {
		uint64_t v = 0x5000 + i;
		struct vhu_vring_addr va = th_vring_addr(i % 8, 0x10000 + 16ull * i);
		struct vhu_config cfg = { .offset = 0, .size = 16, .flags = 0 };
		uint8_t payload[16];

		th_pattern(payload, sizeof(payload), i);
		switch (i % 4) {
		case 0:
			send_expect(&rec, want, &off, VHU_REQ_GET_FEATURES, NULL, 0, NULL, 0);
			break;
		case 1:
			send_expect(&rec, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
			break;
		case 2:
			send_expect(&rec, want, &off, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va),
				       NULL, 0);
			break;
		default:
			send_expect(&rec, want, &off, VHU_REQ_GET_CONFIG, &cfg,
				       VHU_CONFIG_HDR_SIZE, payload, sizeof(payload));
			break;
		}
	}
	cr_assert_eq(vhu_conn_sendq_len(rec.conn), 256);
	rc = vhu_conn_send(rec.conn, &h, NULL, 0, NULL, 0, NULL, 0);
	cr_assert_eq(rc, -VHU_EQFULL, "257th message with the default queue: %d (%s)", rc,
		     vhu_errname(rc));
	cr_assert_eq(vhu_conn_sendq_len(rec.conn), 256);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "byte stream");
	th_assert_no_more(peer);
	vhu_ring_get_stats(ring, &st);
	cr_assert_geq(st.msgs_out, 256, "stats: %llu messages out",
		      (unsigned long long)st.msgs_out);
	free(want);
	free(got);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

Test(conn, send_in_order) { send_in_order(EXACT); }
Test(stream, send_in_order) { send_in_order(STREAM); }

struct plan {
	uint32_t req;
	const void *body;
	uint32_t len;
	const int *fds;
	unsigned int nfds;
};

/*
 * Messages with fds interleaved with fd-less ones, read by a blocking
 * vhu_endpoint that validates each one: every fd arrives once, on its own
 * message, as the same file.
 */
static void
send_fds_interleaved(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_rules rules = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST };
	struct vhu_endpoint *ep = NULL;
	struct vhu_mem_table mt;
	uint32_t mts = th_mem_table(&mt, 3);
	int efd[3] = { t_eventfd(), t_eventfd(), t_eventfd() };
	int mfd[4] = { t_memfd("r0"), t_memfd("r1"), t_memfd("r2"), t_memfd("log") };
	struct plan plan[12];
	uint64_t w0 = 0, w1 = 1, w2 = 2 | VHU_VRING_NOFD, w3 = 3, f = 42;
	struct th_rec rec;
	unsigned int n = 0;
	int peer, rc;

	plan[n++] = (struct plan){ VHU_REQ_GET_FEATURES, NULL, 0, NULL, 0 };
	plan[n++] = (struct plan){ VHU_REQ_SET_VRING_CALL, &w0, 8, &efd[0], 1 };
	plan[n++] = (struct plan){ VHU_REQ_SET_FEATURES, &f, 8, NULL, 0 };
	plan[n++] = (struct plan){ VHU_REQ_SET_MEM_TABLE, &mt, mts, mfd, 3 };
	plan[n++] = (struct plan){ VHU_REQ_SET_VRING_KICK, &w1, 8, &efd[1], 1 };
	plan[n++] = (struct plan){ VHU_REQ_SET_VRING_CALL, &w2, 8, NULL, 0 };
	plan[n++] = (struct plan){ VHU_REQ_SET_LOG_FD, NULL, 0, &mfd[3], 1 };
	plan[n++] = (struct plan){ VHU_REQ_SET_VRING_ERR, &w3, 8, &efd[2], 1 };
	plan[n++] = (struct plan){ VHU_REQ_GET_FEATURES, NULL, 0, NULL, 0 };
	plan[n++] = (struct plan){ VHU_REQ_SET_FEATURES, &f, 8, NULL, 0 };

	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (unsigned int i = 0; i < n; i++) {
		struct vhu_hdr h = vhu_hdr_request(plan[i].req, plan[i].len, false);
		int d[VHU_MAX_FDS];

		for (unsigned int k = 0; k < plan[i].nfds; k++) {
			d[k] = th_dup(plan[i].fds[k]);
		}
		rc = vhu_conn_send(rec.conn, &h, plan[i].body, plan[i].len, NULL, 0, d,
				   plan[i].nfds);
		cr_assert_eq(rc, 0, "vhu_conn_send %u: %s", i, vhu_errname(rc));
	}
	th_wait_sent(ring, &rec);

	rc = vhu_endpoint_from_fd(peer, &rules, &ep);
	cr_assert_eq(rc, 0, "vhu_endpoint_from_fd: %s", vhu_errname(rc));
	for (unsigned int i = 0; i < n; i++) {
		struct vhu_hdr h;
		struct vhu_fds fds;
		uint8_t body[VHU_DEFAULT_MAX_SIZE];

		vhu_fds_init(&fds);
		rc = vhu_endpoint_recv_header(ep, &h, &fds);
		cr_assert_eq(rc, 0, "message %u: recv_header: %s", i, vhu_errname(rc));
		if (h.size) {
			rc = vhu_endpoint_recv_body_bytes(ep, &h, body, sizeof(body), &fds);
			cr_assert_eq(rc, 0, "message %u: recv_body_bytes: %s", i, vhu_errname(rc));
		}
		cr_assert_eq(h.request, plan[i].req, "message %u: request %u", i, h.request);
		cr_assert_eq(h.size, plan[i].len);
		th_assert_bytes(body, plan[i].body, plan[i].len, "body");
		cr_assert_eq(fds.n, plan[i].nfds, "message %u: %u fds, want %u", i, fds.n,
			     plan[i].nfds);
		for (unsigned int k = 0; k < fds.n; k++) {
			cr_assert(t_same_file(plan[i].fds[k], fds.fd[k]),
				  "message %u fd %u: another file", i, k);
		}
		vhu_fds_close(&fds);
	}
	th_assert_no_more(vhu_endpoint_fd(ep));
	th_close_all(efd, 3);
	th_close_all(mfd, 4);
	vhu_ring_destroy(ring);
	th_assert_closed(&rec, 0, "destroy");
	vhu_endpoint_destroy(ep);
	th_rec_fini(&rec);
	th_fd_check(fd_mark, __func__);
}

Test(conn, send_fds_interleaved) { send_fds_interleaved(EXACT); }
Test(stream, send_fds_interleaved) { send_fds_interleaved(STREAM); }

/* A reader thread: small recvmsg calls, recording bytes and where fds came. */
struct fdev {
	size_t start, end;	/* stream offsets the read covered */
	int fd[VHU_MAX_FDS];
	unsigned int n;
};

struct reader {
	int fd;
	size_t want, chunk, got;
	uint8_t *buf;
	struct fdev ev[64];
	unsigned int nev;
	int err;		/* 0, -errno, or a vhu error; checked by the main thread */
};

static void *
reader_main(void *arg)
{
	struct reader *r = arg;

	while (r->got < r->want) {
		size_t len = r->want - r->got < r->chunk ? r->want - r->got : r->chunk;
		struct iovec iov = { .iov_base = r->buf + r->got, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
		} cb;
		ssize_t n;

		mh.msg_control = cb.buf;
		mh.msg_controllen = sizeof(cb.buf);
		if (poll(&p, 1, 2 * TH_HANG_MS) != 1) {
			r->err = -ETIMEDOUT;
			return NULL;
		}
		n = recvmsg(r->fd, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0) {
			r->err = n == 0 ? -VHU_EDISCONNECT : -errno;
			return NULL;
		}
		if (mh.msg_flags & MSG_CTRUNC) {
			r->err = -VHU_ECTRUNC;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			struct fdev *e;

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
				continue;
			}
			if (r->nev == sizeof(r->ev) / sizeof(r->ev[0])) {
				r->err = -ENOSPC;
				return NULL;
			}
			e = &r->ev[r->nev++];
			e->start = r->got;
			e->end = r->got + (size_t)n;
			e->n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(e->fd, CMSG_DATA(c), e->n * sizeof(int));
		}
		r->got += (size_t)n;
	}
	return NULL;
}

/*
 * Short sends forced: the engine's socket gets a 4 KiB send buffer and
 * ~200 KiB of queued messages (near-maximum bodies, with fd messages among
 * them), read by a thread in 61-byte pieces. Every byte arrives in order,
 * each fd exactly once with the message it belongs to, and the stats show
 * the short-send path ran.
 */
static void
send_short_sends(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	enum { NFD = 12, BIG = VHU_DEFAULT_MAX_SIZE };
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_ring_stats st;
	struct reader rd = { .chunk = 61 };
	struct th_rec rec;
	size_t want_len = 0, starts[5 * NFD], fdmsg[NFD];
	uint8_t *want, *body = malloc(BIG);
	int efd[NFD];
	unsigned int nmsg = 0;
	pthread_t tid;
	int peer;

	o.sendq_bytes = 1u << 20;
	want = malloc((size_t)NFD * 4 * (VHU_HDR_SIZE + BIG) + NFD * 20);
	rd.buf = malloc((size_t)NFD * 4 * (VHU_HDR_SIZE + BIG) + NFD * 20);
	cr_assert(want && rd.buf && body);
	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	th_set_sndbuf(vhu_conn_fd(rec.conn), 4096);
	for (unsigned int k = 0; k < NFD; k++) {
		struct vhu_hdr hc = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, false);
		uint64_t word = k;
		int d;

		efd[k] = t_eventfd();
		for (unsigned int j = 0; j < 4; j++) {
			uint32_t len = BIG - (j * 13 + k) % 64;

			th_pattern(body, len, k * 4 + j);
			starts[nmsg++] = want_len;
			send_expect(&rec, want, &want_len, VHU_REQ_CREATE_CRYPTO_SESSION, body,
				       len, NULL, 0);
		}
		d = th_dup(efd[k]);
		fdmsg[k] = nmsg;
		starts[nmsg++] = want_len;
		cr_assert_eq(vhu_conn_send(rec.conn, &hc, &word, 8, NULL, 0, &d, 1), 0);
		memcpy(want + want_len, &hc, sizeof(hc));
		memcpy(want + want_len + sizeof(hc), &word, 8);
		want_len += 20;
	}

	rd.fd = peer;
	rd.want = want_len;
	cr_assert_eq(pthread_create(&tid, NULL, reader_main, &rd), 0);
	th_wait_sent(ring, &rec);
	cr_assert_eq(pthread_join(tid, NULL), 0);
	cr_assert_eq(rd.err, 0, "reader: %d (%s)", rd.err, vhu_errname(rd.err));
	cr_assert_eq(rd.got, want_len);
	th_assert_bytes(rd.buf, want, want_len, "byte stream");
	th_assert_no_more(peer);

	/* Each fd belongs to the last message that begins in the read that brought it. */
	{
		bool seen[NFD] = { false };
		unsigned int total = 0;

		for (unsigned int e = 0; e < rd.nev; e++) {
			struct fdev *ev = &rd.ev[e];
			long m = -1;

			for (unsigned int i = 0; i < nmsg; i++) {
				if (starts[i] >= ev->start && starts[i] < ev->end) {
					m = i;
				}
			}
			total += ev->n;
			cr_assert_geq(m, 0, "fds arrived with a read where no message begins");
			cr_assert_eq(ev->n, 1, "%u fds in one read", ev->n);
			for (unsigned int k = 0; k < NFD; k++) {
				if (fdmsg[k] == (size_t)m) {
					cr_assert(!seen[k], "fd of message %ld arrived twice", m);
					seen[k] = true;
					cr_assert(t_same_file(efd[k], ev->fd[0]),
						  "fd on message %ld is another file", m);
					m = -2;
					break;
				}
			}
			cr_assert_eq(m, -2, "an fd arrived on fd-less message");
			th_close_all(ev->fd, ev->n);
		}
		cr_assert_eq(total, NFD, "%u fds arrived, want %d", total, NFD);
	}

	vhu_ring_get_stats(ring, &st);
	cr_assert_gt(st.short_sends, 0, "no short send happened (stats short_sends 0)");
	cr_log_info("short sends: %llu", (unsigned long long)st.short_sends);
	th_close_all(efd, NFD);
	free(want);
	free(rd.buf);
	free(body);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

Test(conn, send_short_sends) { send_short_sends(EXACT); }
Test(stream, send_short_sends) { send_short_sends(STREAM); }

/*
 * Backpressure: a 4-message queue takes 4 and refuses the 5th (-VHU_EQFULL,
 * its fd still the caller's) without losing any; a byte-limited queue
 * refuses a message larger than itself (-VHU_EOVERSIZED) and one that does
 * not fit beside the queued ones (-VHU_EQFULL). After the queue drains it
 * takes messages again.
 */
static void
send_backpressure(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct vhu_conn_opts ob = th_opts(mode);
	struct th_rec rec, rb;
	uint8_t want[256], got[256], big[100] = { 0 };
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	struct vhu_hdr hb = vhu_hdr_request(VHU_REQ_CREATE_CRYPTO_SESSION, sizeof(big), false);
	size_t off = 0;
	uint64_t v = 99;
	int peer, pb, rc, efd = t_eventfd();

	o.sendq_msgs = 4;
	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (uint64_t i = 0; i < 4; i++) {
		send_expect(&rec, want, &off, VHU_REQ_SET_FEATURES, &i, 8, NULL, 0);
	}
	rc = vhu_conn_send(rec.conn, &h, &v, 8, NULL, 0, &efd, 1);
	cr_assert_eq(rc, -VHU_EQFULL, "5th message in a 4-message queue: %d (%s)", rc,
		     vhu_errname(rc));
	cr_assert(th_fd_open(efd), "the refused message's fd was closed");
	cr_assert_eq(vhu_conn_sendq_len(rec.conn), 4);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "the 4 queued messages");
	th_assert_no_more(peer);
	off = 0;
	send_expect(&rec, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "after the queue drained");

	ob.sendq_bytes = 50;	/* two 20-byte messages fit, a third does not */
	th_rec_init(&rb);
	pb = th_attach(ring, &ob, &rb);
	rc = vhu_conn_send(rb.conn, &hb, big, sizeof(big), NULL, 0, NULL, 0);
	cr_assert_eq(rc, -VHU_EOVERSIZED, "112-byte message, 50-byte queue: %d (%s)", rc,
		     vhu_errname(rc));
	off = 0;
	send_expect(&rb, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
	send_expect(&rb, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
	rc = vhu_conn_send(rb.conn, &h, &v, 8, NULL, 0, NULL, 0);
	cr_assert_eq(rc, -VHU_EQFULL, "third 20-byte message, 50-byte queue: %d (%s)", rc,
		     vhu_errname(rc));
	th_wait_sent(ring, &rb);
	th_read_exact(pb, got, off);
	th_assert_bytes(got, want, off, "the 2 queued messages");
	th_assert_no_more(pb);

	close(efd);
	vhu_ring_destroy(ring);
	th_assert_closed(&rec, 0, "destroy");
	th_assert_closed(&rb, 0, "destroy");
	close(peer);
	close(pb);
	th_rec_fini(&rec);
	th_rec_fini(&rb);
	th_fd_check(fd_mark, __func__);
}

Test(conn, send_backpressure) { send_backpressure(EXACT); }
Test(stream, send_backpressure) { send_backpressure(STREAM); }

/*
 * Refused sends leave the fds with the caller and nothing on the wire:
 * 33 fds (-VHU_EFDS), a size field that does not match body + payload
 * (-EINVAL), a message larger than the default 64 KiB queue
 * (-VHU_EOVERSIZED). A valid message sent afterwards is the only thing the
 * peer reads.
 */
static void
send_refused_keeps_fds(uint8_t mode)
{
	const int fd_mark = t_fd_count();
	struct vhu_ring *ring = th_ring(0);
	struct vhu_conn_opts o = th_opts(mode);
	struct th_rec rec;
	int fds[VHU_MAX_FDS + 1];
	uint8_t body[16] = { 0 }, want[64], got[64];
	uint8_t *huge = calloc(1, 70000);
	struct vhu_hdr h;
	size_t off = 0;
	uint64_t v = 5;
	int peer, rc;

	cr_assert_not_null(huge);
	th_rec_init(&rec);
	peer = th_attach(ring, &o, &rec);
	for (unsigned int k = 0; k <= VHU_MAX_FDS; k++) {
		fds[k] = t_eventfd();
	}
	h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	rc = vhu_conn_send(rec.conn, &h, body, 8, NULL, 0, fds, VHU_MAX_FDS + 1);
	cr_assert_eq(rc, -VHU_EFDS, "33 fds: %d (%s)", rc, vhu_errname(rc));

	h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	rc = vhu_conn_send(rec.conn, &h, body, 4, NULL, 0, fds, 1);
	cr_assert_eq(rc, -EINVAL, "size 8, body 4: %d (%s)", rc, vhu_errname(rc));
	rc = vhu_conn_send(rec.conn, &h, body, 8, body, 4, fds, 1);
	cr_assert_eq(rc, -EINVAL, "size 8, body 8 + payload 4: %d (%s)", rc, vhu_errname(rc));
	h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 16, false);
	rc = vhu_conn_send(rec.conn, &h, body, 8, NULL, 0, NULL, 0);
	cr_assert_eq(rc, -EINVAL, "size 16, body 8: %d (%s)", rc, vhu_errname(rc));
	h = vhu_hdr_request(VHU_REQ_CREATE_CRYPTO_SESSION, 70000, false);
	rc = vhu_conn_send(rec.conn, &h, huge, 70000, NULL, 0, fds, 1);
	cr_assert_eq(rc, -VHU_EOVERSIZED, "70000-byte message: %d (%s)", rc, vhu_errname(rc));

	cr_assert_eq(vhu_conn_sendq_len(rec.conn), 0);
	for (unsigned int k = 0; k <= VHU_MAX_FDS; k++) {
		cr_assert(th_fd_open(fds[k]), "fd %u of a refused send was closed", k);
	}
	th_close_all(fds, VHU_MAX_FDS + 1);

	send_expect(&rec, want, &off, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0);
	th_wait_sent(ring, &rec);
	th_read_exact(peer, got, off);
	th_assert_bytes(got, want, off, "the one valid message");
	th_assert_no_more(peer);
	free(huge);
	th_finish(ring, &rec, peer);
	th_fd_check(fd_mark, __func__);
}

Test(conn, send_refused_keeps_fds) { send_refused_keeps_fds(EXACT); }
Test(stream, send_refused_keeps_fds) { send_refused_keeps_fds(STREAM); }
