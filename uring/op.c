/* SPDX-License-Identifier: MIT */
/*
 * Application operations: a struct vhu_op embedded in the application's
 * object is a slot like the engine's own (kind SLOT_APP, user_data its
 * tagged address), counted in the ring's ops so that destroy waits for it,
 * and listed while in flight so that destroy can cancel it. No allocation.
 */
#include <errno.h>

#include "internal.h"

static struct slot *
op_slot(struct vhu_op *op)
{
	return (struct slot *)(void *)&op->priv.kind;
}

static struct vlist *
op_link(struct vhu_op *op)
{
	return (struct vlist *)(void *)op->priv.link;
}

static struct vhu_op *
slot_op(struct slot *s)
{
	return vhu_container_of(s, struct vhu_op, priv.kind);
}

struct io_uring_sqe *
vhu_op_sqe(struct vhu_ring *r, struct vhu_op *op)
{
	struct io_uring_sqe *sqe;

	if (r->destroying || op->done == NULL || op->priv.busy != 0) {
		return NULL;
	}
	sqe = vhu__ring_sqe(r);
	if (sqe == NULL) {
		return NULL;
	}
	op->priv.kind = SLOT_APP;
	vhu__op_begin(r, &r->app_ops, op_slot(op), sqe);
	vlist_add_tail(&r->app, op_link(op));
	return sqe;
}

bool
vhu_op_busy(const struct vhu_op *op)
{
	return op->priv.busy != 0;
}

unsigned int
vhu_ring_op_count(const struct vhu_ring *r)
{
	return r->app_ops;
}

int
vhu_op_cancel(struct vhu_ring *r, struct vhu_op *op)
{
	struct io_uring_sqe *sqe;

	if (op->priv.busy == 0) {
		return 0;
	}
	sqe = vhu__ring_sqe(r);
	if (sqe == NULL) {
		return -EBUSY;
	}
	io_uring_prep_cancel64(sqe, vhu__tag(op_slot(op)), 0);
	/* One shared slot for every cancel: counted per SQE in the ring's ops. */
	r->app_cancel.kind = SLOT_APP_CANCEL;
	io_uring_sqe_set_data64(sqe, vhu__tag(&r->app_cancel));
	r->ops++;
	return 0;
}

void
vhu__op_complete(struct vhu_ring *r, struct slot *s, struct io_uring_cqe *cqe)
{
	struct vhu_op *op;

	if (s->kind == SLOT_APP_CANCEL) {
		r->ops--;
		return;
	}
	op = slot_op(s);
	if ((cqe->flags & IORING_CQE_F_MORE) == 0) {
		vlist_del(op_link(op));
		vhu__op_end(r, &r->app_ops, s);
	}
	op->done(op, cqe->res, cqe->flags);
}

/* Destroy: cancel every application op still in flight (their done runs as they complete). */
void
vhu__op_cancel_all(struct vhu_ring *r)
{
	struct vlist *n;

	for (n = r->app.next; n != &r->app; n = n->next) {
		struct vhu_op *op = vhu_container_of((void *)n, struct vhu_op, priv.link);

		(void)vhu_op_cancel(r, op);
	}
}
