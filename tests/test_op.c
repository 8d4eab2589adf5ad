/* SPDX-License-Identifier: MIT */
/*
 * Application operations on vhu's ring (struct vhu_op): an eventfd read and
 * write completing through their callbacks, re-arming from the callback,
 * a busy op refused, cancel, and destroy cancelling what is still in flight.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "helpers.h"

TestSuite(op, .init = t_setup, .fini = t_teardown);

#define ROUNDS 1000

struct rec {
	struct vhu_op op;
	struct vhu_ring *ring;
	int fd;
	uint64_t buf;
	unsigned int done;
	int last_res;
	uint64_t total;
	bool rearm;
};

static void
rec_done(struct vhu_op *op, int res, uint32_t flags)
{
	struct rec *r = (struct rec *)(void *)((char *)op - offsetof(struct rec, op));
	struct io_uring_sqe *sqe;

	r->done++;
	r->last_res = res;
	if (res == 8) {
		r->total += r->buf;
	}
	if (r->rearm && res == 8) {
		sqe = vhu_op_sqe(r->ring, &r->op);
		cr_assert_not_null(sqe, "re-arm from done");
		io_uring_prep_read(sqe, r->fd, &r->buf, 8, 0);
	}
}

static struct vhu_ring *
ring_new(void)
{
	struct vhu_ring_opts o = { .max_conns = 4, .max_ops = 8 };
	struct vhu_ring *ring;

	cr_assert_eq(vhu_ring_create(&o, &ring), 0);
	return ring;
}

static void
run_until(struct vhu_ring *ring, unsigned int *counter, unsigned int want)
{
	int i;

	for (i = 0; i < ROUNDS && *counter < want; i++) {
		cr_assert_geq(vhu_ring_wait(ring, 100), 0);
	}
	cr_assert_geq(*counter, want, "op completions: %u, want %u", *counter, want);
}

Test(op, eventfd_read_write_and_rearm)
{
	struct vhu_ring *ring = ring_new();
	struct rec rd = { .op.done = rec_done, .rearm = true };
	struct rec wr = { .op.done = rec_done };
	struct io_uring_sqe *sqe;
	uint64_t one = 1;
	int efd = eventfd(0, EFD_CLOEXEC);

	cr_assert_geq(efd, 0);
	rd.ring = wr.ring = ring;
	rd.fd = wr.fd = efd;
	sqe = vhu_op_sqe(ring, &rd.op);
	cr_assert_not_null(sqe);
	io_uring_prep_read(sqe, efd, &rd.buf, 8, 0);
	cr_assert(vhu_op_busy(&rd.op));
	cr_assert_null(vhu_op_sqe(ring, &rd.op), "a busy op takes no second operation");
	cr_assert_eq(vhu_ring_op_count(ring), 1);

	/* The write goes through the ring too; the read completes, re-arms, reads again. */
	sqe = vhu_op_sqe(ring, &wr.op);
	cr_assert_not_null(sqe);
	io_uring_prep_write(sqe, efd, &one, 8, 0);
	run_until(ring, &wr.done, 1);
	run_until(ring, &rd.done, 1);
	cr_assert_eq(wr.last_res, 8);
	cr_assert_eq(rd.total, 1);
	cr_assert(vhu_op_busy(&rd.op), "re-armed");
	cr_assert_eq(eventfd_write(efd, 5), 0);
	run_until(ring, &rd.done, 2);
	cr_assert_eq(rd.total, 6, "the read resets the counter each time");

	/* Cancel: done runs with -ECANCELED. */
	rd.rearm = false;
	cr_assert_eq(vhu_op_cancel(ring, &rd.op), 0);
	run_until(ring, &rd.done, 3);
	cr_assert_eq(rd.last_res, -ECANCELED);
	cr_assert_not(vhu_op_busy(&rd.op));
	cr_assert_eq(vhu_ring_op_count(ring), 0);
	cr_assert_eq(vhu_op_cancel(ring, &rd.op), 0, "cancel of an idle op is a no-op");
	vhu_ring_destroy(ring);
	close(efd);
}

Test(op, destroy_cancels_inflight)
{
	struct vhu_ring *ring = ring_new();
	struct rec rd[3];
	unsigned int i;
	int efd = eventfd(0, EFD_CLOEXEC);

	for (i = 0; i < 3; i++) {
		struct io_uring_sqe *sqe;

		memset(&rd[i], 0, sizeof(rd[i]));
		rd[i].op.done = rec_done;
		rd[i].rearm = true;	/* must not take: the ring is going */
		rd[i].ring = ring;
		rd[i].fd = efd;
		sqe = vhu_op_sqe(ring, &rd[i].op);
		cr_assert_not_null(sqe);
		io_uring_prep_read(sqe, efd, &rd[i].buf, 8, 0);
	}
	cr_assert_eq(vhu_ring_poll(ring), 0);
	vhu_ring_destroy(ring);
	for (i = 0; i < 3; i++) {
		cr_assert_eq(rd[i].done, 1);
		cr_assert_eq(rd[i].last_res, -ECANCELED);
	}
	close(efd);
}

Test(op, file_readv_writev)
{
	struct vhu_ring *ring = ring_new();
	struct rec io = { .op.done = rec_done };
	char a[512], b[512], out[1024];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	struct io_uring_sqe *sqe;
	int fd = t_memfd("");

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	sqe = vhu_op_sqe(ring, &io.op);
	io_uring_prep_writev(sqe, fd, iov, 2, 4096);
	run_until(ring, &io.done, 1);
	cr_assert_eq(io.last_res, 1024);
	cr_assert_eq(pread(fd, out, sizeof(out), 4096), 1024);
	cr_assert_eq(memcmp(out, a, 512), 0);
	cr_assert_eq(memcmp(out + 512, b, 512), 0);
	sqe = vhu_op_sqe(ring, &io.op);
	io_uring_prep_fsync(sqe, fd, 0);
	run_until(ring, &io.done, 2);
	cr_assert_eq(io.last_res, 0);
	vhu_ring_destroy(ring);
	close(fd);
}
