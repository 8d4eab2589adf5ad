/* SPDX-License-Identifier: MIT */
/*
 * The listener: lib's bound socket with a multishot accept on the ring.
 * Each accepted socket is attached with the listener's options; one beyond
 * max_conns is closed at once (the client sees EOF). Out of fds or memory,
 * the accept pauses (a timer, or the next connection of the ring to close).
 * The struct lives until its accept, timer and cancels have completed and
 * every connection it accepted is gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* How long a listener pauses after accept ran out of fds or memory. */
#define BACKOFF_NS	(50 * 1000 * 1000)

static void
track(struct vhu_ulistener *l, struct slot *s, struct io_uring_sqe *sqe)
{
	vhu__op_begin(l->ring, &l->ops, s, sqe);
}

static void
arm_accept(struct vhu_ulistener *l)
{
	struct io_uring_sqe *sqe = vhu__ring_sqe(l->ring);

	if (!sqe) {
		return;
	}
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	track(l, &l->accept, sqe);
}

static void
op_end(struct vhu_ulistener *l, struct slot *s)
{
	vhu__op_end(l->ring, &l->ops, s);
}

/* Errors that retrying at once cannot cure: the process or system is short of something. */
static bool
resource_error(int res)
{
	return res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM;
}

static void
start_backoff(struct vhu_ulistener *l)
{
	struct io_uring_sqe *sqe;

	l->backoff = true;
	l->ring->st.accept_backoffs++;
	if (l->timer.busy) {
		/* The timer of an earlier pause is still running; it ends this one too. */
		return;
	}
	sqe = vhu__ring_sqe(l->ring);
	if (!sqe) {
		/* No timer means no sure wake-up: retrying at once beats never. */
		l->backoff = false;
		arm_accept(l);
		return;
	}
	l->backoff_ts.tv_sec = 0;
	l->backoff_ts.tv_nsec = BACKOFF_NS;
	io_uring_prep_timeout(sqe, &l->backoff_ts, 0, 0);
	track(l, &l->timer, sqe);
}

static void
resume(struct vhu_ulistener *l)
{
	if (!l->backoff || l->closed) {
		return;
	}
	l->backoff = false;
	arm_accept(l);
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
	l->timer.kind = SLOT_ACCEPT_TIMER;
	l->tcancel.kind = SLOT_TIMER_CANCEL;
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
	if (res < 0) {
		l->ring->st.accept_errors++;
	} else {
		if (l->closed || l->ring->destroying || l->nconns >= l->max_conns) {
			close(res);
		} else if (l->on_fd != NULL) {
			l->on_fd(l, res, l->ctx);
		} else if (vhu_conn_attach(l->ring, res, &l->conn_opts, &l->cb, l->ctx, &c) == 0) {
			c->listener = l;
			l->nconns++;
			if (l->on_accept) {
				l->on_accept(l, c, l->ctx);
			}
		}
	}
	/*
	 * An error ends the multishot. A transient one (-ECONNABORTED: a client
	 * gave up) is re-armed at once; at the fd limit an immediate re-arm
	 * fails again at once, forever, so the listener pauses instead.
	 */
	if (!more && !l->closed) {
		if (resource_error(res)) {
			start_backoff(l);
		} else {
			arm_accept(l);
		}
	}
	maybe_reap(l);
}

/* From now on each accepted socket goes to on_fd (which owns it), not attached here. */
void
vhu__ulistener_take_fds(struct vhu_ulistener *l,
			void (*on_fd)(struct vhu_ulistener *l, int fd, void *ctx))
{
	l->on_fd = on_fd;
}

void
vhu__ulistener_timer_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe)
{
	(void)cqe;
	op_end(l, &l->timer);
	resume(l);
	maybe_reap(l);
}

void
vhu__ulistener_tcancel_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe)
{
	/* Whatever the answer, the timer itself still completes and is counted there. */
	(void)cqe;
	op_end(l, &l->tcancel);
	maybe_reap(l);
}

void
vhu__ulistener_fd_freed(struct vhu_ring *r)
{
	struct vlist *n;

	for (n = r->listeners.next; n != &r->listeners; n = n->next) {
		resume(vhu_container_of(n, struct vhu_ulistener, link));
	}
}

void
vhu__ulistener_cancel_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe)
{
	op_end(l, &l->cancel);
	if (cqe->res == -EALREADY && l->accept.busy) {
		struct io_uring_sqe *sqe = vhu__ring_sqe(l->ring);

		if (sqe) {
			io_uring_prep_cancel64(sqe, vhu__tag(&l->accept), 0);
			track(l, &l->cancel, sqe);
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
			io_uring_prep_cancel64(sqe, vhu__tag(&l->accept), 0);
			track(l, &l->cancel, sqe);
		}
	}
	l->backoff = false;
	if (l->timer.busy) {
		struct io_uring_sqe *sqe = vhu__ring_sqe(l->ring);

		/* Without this the ring would wait up to a whole pause to free the listener. */
		if (sqe) {
			io_uring_prep_timeout_remove(sqe, vhu__tag(&l->timer), 0);
			track(l, &l->tcancel, sqe);
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
