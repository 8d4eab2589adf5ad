/* SPDX-License-Identifier: MIT */
/*
 * A device's queues on the ring: the kick eventfd read (8 bytes, which
 * resets the counter, re-armed after each completion; a POLL_ADD would not
 * reset it and would complete again at once), the call eventfd written at
 * most once per queue per reaping pass when the guest wants it, and the
 * data path the application uses (pop, push, drop).
 *
 * An fd replaced while an operation on it is in flight stays open until
 * that operation completes: a number closed early could be reused by
 * another file before the SQE is submitted.
 *
 * Everything here runs on the queue's home ring (its port's): with several
 * rings, a remote queue's events are reported to its port
 * (device_remote.c), a local one's to the device as with one ring.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>

#include "device_internal.h"

static void kick_done(struct vhu_op *op, int res, uint32_t flags);
static void call_done(struct vhu_op *op, int res, uint32_t flags);

static void
fd_close(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
	}
	*fd = -1;
}

void
vhu__dq_init(struct dev_queue *q, struct vhu_dev *d, struct dev_port *p, unsigned int idx)
{
	q->dev = d;
	q->port = p;
	q->idx = idx;
	q->kick_fd = q->kick_old = -1;
	q->call_fd = q->call_old = -1;
	q->err_fd = -1;
	q->kick.done = kick_done;
	q->call.done = call_done;
	vlist_init(&q->call_link);
	vlist_init(&q->poll_link);
}

/* Queue the next kick read, if the queue has a kick fd and none is in flight. */
static void
kick_arm(struct dev_queue *q)
{
	struct io_uring_sqe *sqe;

	if (q->port->closing || q->kick_fd < 0 || vhu_op_busy(&q->kick)) {
		return;
	}
	sqe = vhu_op_sqe(q->port->ring, &q->kick);
	if (sqe == NULL) {
		vhu__dq_fault(q, -EBUSY);
		return;
	}
	io_uring_prep_read(sqe, q->kick_fd, &q->kick_buf, sizeof(q->kick_buf), 0);
}

void
vhu__dq_work(struct dev_queue *q)
{
	struct vhu_dev *d = q->dev;

	if (!q->port->closing && vhu_vq_ready(q->vq)) {
		if (d->srv->o.poll && !q->polled) {
			vhu__dq_poll_join(q);
		}
		d->srv->ops.queue_work(d, q->idx, d->srv->o.ctx);
	}
}

/* A guest or ring fault on the queue: its device closes (from a remote port, by request). */
void
vhu__dq_fault(struct dev_queue *q, int reason)
{
	if (q->port->remote) {
		vhu__port_close_req(q->port, reason);
	} else {
		vhu_dev_close(q->dev, reason);
	}
}

/*
 * Something of the queue finished (a request, a kick read, a call): a
 * message held for it may go on; a closing device (or port) may go.
 */
static void
queue_event(struct dev_queue *q)
{
	struct vhu_dev *d = q->dev;

	if (q->port->remote) {
		vhu__port_event(q->port);
	} else if (q->port->closing) {
		vhu__dev_maybe_free(d);
	} else if (d->held && d->conn != NULL) {
		d->held = false;
		vhu_conn_resume_recv(d->conn);
	}
}

static void
kick_done(struct vhu_op *op, int res, uint32_t flags)
{
	struct dev_queue *q = vhu_container_of(op, struct dev_queue, kick);

	fd_close(&q->kick_old);
	/* A closing device may go (and be freed: touch nothing after). */
	if (q->port->closing) {
		queue_event(q);
		return;
	}
	/* A GET_VRING_BASE held for this read (cancelled) may go on. */
	queue_event(q);
	if (res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
		vhu__dq_fault(q, res);
		return;
	}
	kick_arm(q);
	if (res == (int)sizeof(q->kick_buf)) {
		if (q->polled) {
			vhu__dev_poll_wake(q->port->ring);	/* spin again */
		}
		vhu__dq_work(q);
	}
}

/*
 * SET_VRING_KICK: fd (or -1 with NOFD) becomes the kick fd. A read on the
 * previous one is cancelled; its fd is closed when that read completes.
 */
int
vhu__dq_set_kick(struct dev_queue *q, int fd)
{
	if (vhu_op_busy(&q->kick)) {
		if (q->kick_old < 0) {
			q->kick_old = q->kick_fd;	/* the in-flight read's fd */
			(void)vhu_op_cancel(q->port->ring, &q->kick);
		} else {
			fd_close(&q->kick_fd);		/* never armed */
		}
	} else {
		fd_close(&q->kick_fd);
	}
	q->kick_fd = fd;
	kick_arm(q);
	return 0;
}

static void
call_submit(struct dev_queue *q)
{
	struct io_uring_sqe *sqe;

	sqe = vhu_op_sqe(q->port->ring, &q->call);
	if (sqe == NULL) {
		q->call_again = true;	/* tried again when a call completes, or at the next pass */
		return;
	}
	q->call_buf = 1;
	io_uring_prep_write(sqe, q->call_fd, &q->call_buf, sizeof(q->call_buf), 0);
}

static void
call_done(struct vhu_op *op, int res, uint32_t flags)
{
	struct dev_queue *q = vhu_container_of(op, struct dev_queue, call);

	fd_close(&q->call_old);
	if (q->port->closing) {
		queue_event(q);
		return;
	}
	if (q->call_again && q->call_fd >= 0) {
		q->call_again = false;
		call_submit(q);
	}
}

void
vhu__dq_set_call(struct dev_queue *q, int fd)
{
	if (vhu_op_busy(&q->call) && q->call_old < 0) {
		q->call_old = q->call_fd;
		q->call_fd = -1;
	}
	fd_close(&q->call_fd);
	q->call_fd = fd;
}

/* GET_VRING_BASE, reset: no more kicks are read for this queue. */
void
vhu__dq_stop(struct dev_queue *q)
{
	vhu__dq_poll_leave(q);
	if (vhu_op_busy(&q->kick)) {
		if (q->kick_old < 0) {
			q->kick_old = q->kick_fd;
			q->kick_fd = -1;
			(void)vhu_op_cancel(q->port->ring, &q->kick);
		}
	}
	fd_close(&q->kick_fd);
}

/* The connection is gone: cancel what is in flight; the device is freed when it is back. */
void
vhu__dq_shutdown(struct dev_queue *q)
{
	vhu__dq_stop(q);
	if (vhu_op_busy(&q->call)) {
		(void)vhu_op_cancel(q->port->ring, &q->call);
	}
	if (!vlist_empty(&q->call_link)) {
		vlist_del(&q->call_link);
	}
}

bool
vhu__dq_kick_idle(const struct dev_queue *q)
{
	return !vhu_op_busy(&q->kick);
}

bool
vhu__dq_idle(const struct dev_queue *q)
{
	return !vhu_op_busy(&q->kick) && !vhu_op_busy(&q->call);
}

/* Requests of the port's queues popped and not yet pushed or dropped. */
unsigned int
vhu__port_inflight(const struct dev_port *p)
{
	const struct vhu_dev *d = p->dev;
	unsigned int i, n = 0;

	for (i = 0; i < d->nq; i++) {
		if (d->q[i].port == p) {
			n += vhu_vq_inflight(d->q[i].vq);
		}
	}
	return n;
}

/* Nothing of the port's queues in flight: no request, no kick read, no call write. */
bool
vhu__port_idle(const struct dev_port *p)
{
	const struct vhu_dev *d = p->dev;
	unsigned int i;

	if (vhu__port_inflight(p) > 0) {
		return false;
	}
	for (i = 0; i < d->nq; i++) {
		if (d->q[i].port == p && !vhu__dq_idle(&d->q[i])) {
			return false;
		}
	}
	return true;
}

void
vhu__dq_fini(struct dev_queue *q)
{
	fd_close(&q->kick_fd);
	fd_close(&q->kick_old);
	fd_close(&q->call_fd);
	fd_close(&q->call_old);
	fd_close(&q->err_fd);
	vhu__dq_poll_leave(q);
	if (!vlist_empty(&q->call_link)) {
		vlist_del(&q->call_link);
	}
	vhu_vq_destroy(q->vq);
	q->vq = NULL;
}

/* End of a reaping pass: one call per queue that pushed, if the guest wants it. */
void
vhu__dev_pass_end(struct vhu_ring *r)
{
	while (!vlist_empty(&r->dev_calls)) {
		struct dev_queue *q = vhu_container_of(r->dev_calls.next, struct dev_queue,
						       call_link);

		vlist_del(&q->call_link);
		q->pushed = false;
		if (q->port->closing || !vhu_vq_need_call(q->vq) || q->call_fd < 0) {
			continue;
		}
		if (vhu_op_busy(&q->call)) {
			q->call_again = true;
		} else {
			call_submit(q);
		}
	}
}

/* Data path --------------------------------------------------------- */

int
vhu_dev_pop(struct vhu_dev *d, unsigned int qi, struct vhu_vq_req *req, struct iovec *iov,
	    unsigned int iov_max)
{
	int rc;

	if (qi >= d->nq || d->q[qi].port->closing) {
		return 0;
	}
	rc = vhu_vq_pop(d->q[qi].vq, req, iov, iov_max);
	if (rc < 0) {
		/* A guest fault: this device is broken, nobody else is touched. */
		vhu__dq_fault(&d->q[qi], rc);
	}
	return rc;
}

/* A request left: a message held for the drain may go on; a closed device may go. */
static void
req_gone(struct dev_queue *q)
{
	struct dev_port *p = q->port;

	/* The common case: nobody waits for requests to come back. */
	if (p->remote ? !p->parked && !p->closing : !q->dev->held && !p->closing) {
		return;
	}
	if (vhu__port_inflight(p) > 0) {
		return;
	}
	queue_event(q);
}

int
vhu_dev_push(struct vhu_dev *d, unsigned int qi, struct vhu_vq_req *req, uint32_t len)
{
	struct dev_queue *q = &d->q[qi];
	int rc = 0;

	if (q->port->closing) {
		vhu_vq_drop(q->vq, req);
	} else {
		rc = vhu_vq_push(q->vq, req, len);
		if (rc == -VHU_EMEMLOST) {
			/* Its memory shrank under us (the SIGBUS guard caught it): this device goes. */
			vhu__dq_fault(q, rc);
		}
		if (vlist_empty(&q->call_link)) {
			vlist_add_tail(&q->port->ring->dev_calls, &q->call_link);
		}
		if (q->polled) {
			vhu__dev_poll_wake(q->port->ring);	/* the guest's next request follows soon */
		}
	}
	req_gone(q);
	return rc;
}

void
vhu_dev_drop(struct vhu_dev *d, unsigned int qi, struct vhu_vq_req *req)
{
	vhu_vq_drop(d->q[qi].vq, req);
	req_gone(&d->q[qi]);
}
