/* SPDX-License-Identifier: MIT */
/*
 * The listener: lib's bound socket with a multishot accept on the ring.
 * Each accepted socket is attached with the listener's options; one beyond
 * max_conns is closed at once (the client sees EOF). The struct lives until
 * its accept has completed and every connection it accepted is gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void
arm_accept(struct vhu_ulistener *l)
{
	struct io_uring_sqe *sqe = vhu__ring_sqe(l->ring);

	if (!sqe) {
		return;
	}
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&l->accept | 1u);
	l->accept.busy = 1;
	l->ops++;
	l->ring->ops++;
}

static void
op_end(struct vhu_ulistener *l, struct slot *s)
{
	s->busy = 0;
	l->ops--;
	l->ring->ops--;
}

static void
maybe_reap(struct vhu_ulistener *l)
{
	if (l->closed && l->ops == 0 && l->nconns == 0 && vlist_empty(&l->reap_link)) {
		vlist_add_tail(&l->ring->lreap, &l->reap_link);
	}
}

int
vhu_ring_listen(struct vhu_ring *r, const struct vhu_ulistener_opts *opts,
		struct vhu_ulistener **out)
{
	struct vhu_ulistener *l;
	int ret;

	if (out) {
		*out = NULL;
	}
	if (!r || !opts || !opts->path || r->destroying) {
		return -EINVAL;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		return -ENOMEM;
	}
	ret = vhu_listener_create(opts->path, opts->unlink_stale, &l->lis);
	if (ret < 0) {
		free(l);
		return ret;
	}
	l->ring = r;
	l->fd = vhu_listener_fd(l->lis);
	l->max_conns = opts->max_conns ? opts->max_conns : r->max_conns;
	l->conn_opts = opts->conn;
	l->cb = opts->ops;
	l->ctx = opts->ctx;
	l->on_accept = opts->on_accept;
	l->accept.kind = SLOT_ACCEPT;
	l->cancel.kind = SLOT_ACCEPT_CANCEL;
	vlist_init(&l->reap_link);
	vlist_add_tail(&r->listeners, &l->link);
	arm_accept(l);
	if (out) {
		*out = l;
	}
	return 0;
}

void
vhu__ulistener_accept_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe)
{
	bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
	struct vhu_conn *c;
	int res = cqe->res;

	if (!more) {
		op_end(l, &l->accept);
	}
	if (res >= 0) {
		if (l->closed || l->ring->destroying || l->nconns >= l->max_conns) {
			close(res);
		} else if (vhu_conn_attach(l->ring, res, &l->conn_opts, &l->cb, l->ctx, &c) == 0) {
			c->listener = l;
			l->nconns++;
			if (l->on_accept) {
				l->on_accept(l, c, l->ctx);
			}
		}
	}
	/* Errors such as -ECONNABORTED or -EMFILE end the multishot; it is simply re-armed. */
	if (!more && !l->closed) {
		arm_accept(l);
	}
	maybe_reap(l);
}

void
vhu__ulistener_cancel_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe)
{
	op_end(l, &l->cancel);
	if (cqe->res == -EALREADY && l->accept.busy) {
		struct io_uring_sqe *sqe = vhu__ring_sqe(l->ring);

		if (sqe) {
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&l->accept | 1u, 0);
			io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&l->cancel | 1u);
			l->cancel.busy = 1;
			l->ops++;
			l->ring->ops++;
		}
	}
	maybe_reap(l);
}

void
vhu__ulistener_conn_gone(struct vhu_ulistener *l)
{
	l->nconns--;
	maybe_reap(l);
}

void
vhu_ulistener_close(struct vhu_ulistener *l)
{
	if (!l || l->closed) {
		return;
	}
	l->closed = true;
	if (l->accept.busy) {
		/* By user_data, not by fd: the listening fd is closed right below. */
		struct io_uring_sqe *sqe = vhu__ring_sqe(l->ring);

		if (sqe) {
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&l->accept | 1u, 0);
			io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)&l->cancel | 1u);
			l->cancel.busy = 1;
			l->ops++;
			l->ring->ops++;
		}
	}
	/*
	 * The path goes now, so no new client can find it; the accept keeps its
	 * own reference to the socket until its cancellation completes.
	 */
	vhu_listener_destroy(l->lis);
	l->lis = NULL;
	l->fd = -1;
	maybe_reap(l);
}

void
vhu__ulistener_free(struct vhu_ulistener *l)
{
	vlist_del(&l->link);
	free(l);
}
