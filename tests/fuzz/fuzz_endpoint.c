/* SPDX-License-Identifier: MIT */
/*
 * fuzz_endpoint: the blocking endpoint's receive helpers over a real
 * socketpair (format in fuzz_input.h). The input's stream is written to
 * one end chunk by chunk with sendmsg, each chunk with as many copies of
 * /dev/null attached as the plan says (up to 40, past the 32 a receive
 * can hold, so MSG_CTRUNC happens), and that end is closed. The other end
 * is read with recv_header (+ recv_body_bytes), recv_body,
 * recv_body_into_buf, recv_payload_into_buf, recv_all and recv_iov in the
 * order the input's ops give, round after round, until one fails.
 *
 * Checked on every call: a success hands over a message vhu_msg_check
 * accepts and fds that are open, close-on-exec and really /dev/null; a
 * failure leaves the caller's set empty and is a vhu code with a name; no
 * call writes past the buffer it was given (exact heap buffers, ASan); no
 * fd is closed twice (close() is wrapped); at the end the process has as
 * many fds as before.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vhu/endpoint.h>
#include <vhu/error.h>
#include <vhu/fds.h>
#include <vhu/wire.h>

#include "fuzz_common.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEND_MAX_FDS	40u
#define MAX_TOTAL_FDS	128u
#define MAX_STEPS	64u

/* op byte: kind in bits 0-2; bit 3 forbids fds (NULL set); bit 4 as below. */
enum op_kind {
	OP_HEADER = 0,		/* recv_header, then recv_body_bytes; bit 4: exact buffer */
	OP_BODY,		/* recv_body */
	OP_BODY_INTO_BUF,	/* recv_body_into_buf */
	OP_PAYLOAD,		/* recv_payload_into_buf; bit 4: adjacent buffers */
	OP_ALL,			/* recv_all; bit 4: two iovecs */
	OP_IOV,			/* recv_iov */
};
#define OP_NOFDS	0x08u
#define OP_BIT4		0x10u

struct op {
	uint8_t op;
	uint8_t arg;
};

struct run {
	struct vhu_rules rules;
	struct vhu_endpoint *ep;
	int devnull;
};

/* Buffer lengths: small ones byte for byte, then the sizes the wire cares about. */
static size_t
buf_len(uint8_t arg)
{
	static const size_t big[] = {
		0, 8, 12, 16, 24, 40, 264, 268, 1032, 2056, 4095, 4096, 4097, 8192, 65536, 72,
	};

	return arg < 0xc0 ? arg : big[(arg - 0xc0) % (sizeof(big) / sizeof(big[0]))];
}

static size_t
nibble_len(unsigned int nib)
{
	static const size_t t[16] = {
		0, 4, 8, 12, 16, 24, 32, 40, 48, 60, 64, 256, 1024, 2048, 4096, 8192,
	};

	return t[nib & 15u];
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	FZ_CHECK(p != NULL, "malloc %zu", n);
	return p;
}

static void
check_error(int r, const struct vhu_fds *fds, const char *what)
{
	FZ_CHECK(r <= -VHU_ERROR_BASE && r > -VHU_ERROR_END, "%s: %d (%s) is not a vhu code",
		 what, r, vhu_errname(r));
	FZ_CHECK(strcmp(vhu_errname(r), "E?") != 0, "%s: %d has no name", what, r);
	FZ_CHECK(fds == NULL || fds->n == 0, "%s failed with %u fds left in the set", what,
		 fds->n);
}

/* The fds handed over on success: ours, open, close-on-exec. Then closed. */
static void
take_fds(const struct run *rn, struct vhu_fds *fds, const char *what)
{
	unsigned int i;

	if (fds == NULL) {
		return;
	}
	FZ_CHECK(fds->n <= VHU_MAX_FDS, "%s: %u fds", what, fds->n);
	for (i = 0; i < fds->n; i++) {
		int fl = fcntl(fds->fd[i], F_GETFD);

		FZ_CHECK(fl >= 0, "%s: fd %d is not open", what, fds->fd[i]);
		FZ_CHECK(fl & FD_CLOEXEC, "%s: fd %d without close-on-exec", what, fds->fd[i]);
		FZ_CHECK(vhu_fd_same_file(fds->fd[i], rn->devnull), "%s: fd %d is not the one sent",
			 what, fds->fd[i]);
	}
	vhu_fds_close(fds);
}

static void
check_message(const struct run *rn, const struct vhu_hdr *hdr, const void *body,
	      const struct vhu_fds *fds, const char *what)
{
	int r = vhu_msg_check(&rn->rules, hdr, hdr->size ? body : NULL, fds ? fds->n : 0);

	FZ_CHECK(r == 0, "%s: handed over a message msg_check refuses (%s)", what,
		 vhu_errname(r));
}

static int
op_header(struct run *rn, const struct op *op, struct vhu_fds *fds)
{
	struct vhu_hdr hdr;
	size_t len;
	void *buf;
	int r;

	r = vhu_endpoint_recv_header(rn->ep, &hdr, fds);
	if (r < 0) {
		check_error(r, fds, "recv_header");
		return r;
	}
	FZ_CHECK(vhu_hdr_check(&rn->rules, &hdr) == 0, "recv_header: header refused");
	if (hdr.size == 0) {
		check_message(rn, &hdr, NULL, fds, "recv_header");
		take_fds(rn, fds, "recv_header");
		return 0;
	}
	len = (op->op & OP_BIT4) ? hdr.size : buf_len(op->arg);
	buf = xmalloc(len);
	r = vhu_endpoint_recv_body_bytes(rn->ep, &hdr, buf, len, fds);
	if (r < 0) {
		check_error(r, fds, "recv_body_bytes");
	} else {
		check_message(rn, &hdr, buf, fds, "recv_body_bytes");
		take_fds(rn, fds, "recv_body_bytes");
	}
	free(buf);
	return r;
}

static int
op_body(struct run *rn, const struct op *op, struct vhu_fds *fds)
{
	size_t len = buf_len(op->arg);
	void *buf = xmalloc(len);
	struct vhu_hdr hdr;
	int r;

	r = vhu_endpoint_recv_body(rn->ep, &hdr, buf, len, fds);
	if (r < 0) {
		check_error(r, fds, "recv_body");
	} else {
		FZ_CHECK(hdr.size == len, "recv_body: size %u into %zu bytes", hdr.size, len);
		check_message(rn, &hdr, buf, fds, "recv_body");
		take_fds(rn, fds, "recv_body");
	}
	free(buf);
	return r;
}

static int
op_body_into_buf(struct run *rn, const struct op *op, struct vhu_fds *fds)
{
	size_t len = buf_len(op->arg);
	void *buf = xmalloc(len);
	struct vhu_hdr hdr;
	ssize_t n;

	n = vhu_endpoint_recv_body_into_buf(rn->ep, &hdr, buf, len, fds);
	if (n < 0) {
		check_error((int)n, fds, "recv_body_into_buf");
	} else {
		FZ_CHECK((size_t)n == hdr.size && (size_t)n <= len,
			 "recv_body_into_buf: %zd for size %u into %zu", n, hdr.size, len);
		check_message(rn, &hdr, buf, fds, "recv_body_into_buf");
		take_fds(rn, fds, "recv_body_into_buf");
	}
	free(buf);
	return n < 0 ? (int)n : 0;
}

static int
op_payload(struct run *rn, const struct op *op, struct vhu_fds *fds)
{
	size_t blen = nibble_len(op->arg), plen = nibble_len(op->arg >> 4);
	bool adjacent = (op->op & OP_BIT4) != 0;
	uint8_t *body, *payload, *whole = NULL;
	struct vhu_hdr hdr;
	ssize_t n;

	body = xmalloc(adjacent ? blen + plen : blen);
	payload = adjacent ? body + blen : xmalloc(plen);
	n = vhu_endpoint_recv_payload_into_buf(rn->ep, &hdr, body, blen, payload, plen, fds);
	if (n < 0) {
		check_error((int)n, fds, "recv_payload_into_buf");
	} else {
		FZ_CHECK((size_t)n <= plen && hdr.size == blen + (size_t)n,
			 "recv_payload_into_buf: %zd for size %u, body %zu", n, hdr.size, blen);
		whole = xmalloc(hdr.size);
		memcpy(whole, body, blen);
		memcpy(whole + blen, payload, (size_t)n);
		check_message(rn, &hdr, whole, fds, "recv_payload_into_buf");
		take_fds(rn, fds, "recv_payload_into_buf");
	}
	free(whole);
	if (!adjacent) {
		free(payload);
	}
	free(body);
	return n < 0 ? (int)n : 0;
}

static int
op_raw(struct run *rn, const struct op *op, struct vhu_fds *fds)
{
	size_t len = 1u + op->arg, half = len / 2;
	uint8_t *buf = xmalloc(len);
	struct iovec iov[2] = {
		{ .iov_base = buf, .iov_len = len },
		{ .iov_base = buf + half, .iov_len = len - half },
	};
	ssize_t n;

	if (fds != NULL) {
		vhu_fds_init(fds);
	}
	if ((op->op & 7u) == OP_IOV) {
		n = vhu_endpoint_recv_iov(rn->ep, iov, 1, fds);
		FZ_CHECK(n != 0 && n <= (ssize_t)len, "recv_iov: %zd of %zu", n, len);
	} else if (op->op & OP_BIT4) {
		iov[0].iov_len = half;
		n = vhu_endpoint_recv_all(rn->ep, iov, 2, fds);
	} else {
		n = vhu_endpoint_recv_all(rn->ep, iov, 1, fds);
	}
	if (n < 0) {
		check_error((int)n, fds, "recv_all/recv_iov");
	} else {
		take_fds(rn, fds, "recv_all/recv_iov");
	}
	free(buf);
	return n < 0 ? (int)n : 0;
}

static int
run_op(struct run *rn, const struct op *op)
{
	struct vhu_fds set;
	struct vhu_fds *fds = (op->op & OP_NOFDS) ? NULL : &set;

	/* Garbage in the set: the message helpers must initialise it themselves. */
	memset(&set, 0x5a, sizeof(set));
	switch (op->op & 7u) {
	case OP_BODY:
		return op_body(rn, op, fds);
	case OP_BODY_INTO_BUF:
		return op_body_into_buf(rn, op, fds);
	case OP_PAYLOAD:
		return op_payload(rn, op, fds);
	case OP_ALL:
	case OP_IOV:
		return op_raw(rn, op, fds);
	default:
		return op_header(rn, op, fds);
	}
}

/* Write the chunks; stop at the first the socket does not take whole. */
static void
write_stream(int sock, const uint8_t *stream, const struct fz_plan *pl, int devnull)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * SEND_MAX_FDS)];
	} cbuf;
	int fds[SEND_MAX_FDS];
	unsigned int c, i;

	for (i = 0; i < SEND_MAX_FDS; i++) {
		fds[i] = devnull;
	}
	for (c = 0; c < pl->n; c++) {
		struct iovec iov = {
			.iov_base = (void *)(stream + pl->c[c].off),
			.iov_len = pl->c[c].len,
		};
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		unsigned int nfds = pl->c[c].nfds;

		if (iov.iov_len == 0) {
			continue;
		}
		if (nfds > 0) {
			struct cmsghdr *cm;

			memset(&cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
		if (sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)iov.iov_len) {
			return;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_reader rd = { data, size };
	struct op ops[FZ_MAX_OPS];
	struct fz_plan plan;
	struct run rn;
	unsigned int nops, i;
	int fds_before, sv[2], r;
	uint8_t cfg;

	/* Opened once, before counting: it stays open across runs. */
	rn.devnull = fz_fd_devnull();
	fds_before = fz_fd_count();
	cfg = fz_u8(&rd);
	fz_rules(cfg, 1, &rn.rules);
	fz_plan_read(&rd, &plan, SEND_MAX_FDS);
	nops = fz_u8(&rd) % (FZ_MAX_OPS + 1);
	for (i = 0; i < nops; i++) {
		ops[i].op = fz_u8(&rd);
		ops[i].arg = fz_u8(&rd);
	}
	if (nops == 0) {
		/* Message after message, each into a buffer of its size. */
		ops[0].op = OP_HEADER | OP_BIT4;
		ops[0].arg = 0;
		nops = 1;
	}
	fz_plan_fit(&plan, rd.n, MAX_TOTAL_FDS);

	FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %d",
		 errno);
	write_stream(sv[0], rd.p, &plan, rn.devnull);
	close(sv[0]);
	r = vhu_endpoint_from_fd(sv[1], &rn.rules, &rn.ep);
	FZ_CHECK(r == 0, "endpoint_from_fd %d", r);
	if (cfg & FZ_CFG_BIT6) {
		FZ_CHECK(vhu_endpoint_set_nonblocking(rn.ep, true) == 0, "set_nonblocking");
	}
	for (i = 0; i < MAX_STEPS; i++) {
		if (run_op(&rn, &ops[i % nops]) < 0) {
			break;
		}
	}
	vhu_endpoint_destroy(rn.ep);
	FZ_CHECK(fz_fd_count() == fds_before, "fd count %d, was %d", fz_fd_count(), fds_before);
	return 0;
}
