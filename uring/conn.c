/* SPDX-License-Identifier: MIT */
/*
 * Connections: attach (all memory allocated here), operation accounting,
 * close (cancel, then wait for every CQE), finish (socket and fds closed,
 * on_close, free), stalled-message deadlines and message delivery.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_SENDQ_MSGS	256u
#define DEFAULT_SENDQ_BYTES	(64u * 1024u)

/* ------------------------------------------------------------------ */
/* Operation accounting                                                */

void
vhu__conn_track(struct vhu_conn *c, struct slot *s, struct io_uring_sqe *sqe)
{
	vhu__op_begin(c->ring, &c->ops, s, sqe);
}

void
vhu__conn_op_end(struct vhu_conn *c, struct slot *s)
{
	vhu__op_end(c->ring, &c->ops, s);
}

/* After each of its CQEs: a closing connection with nothing in flight is done. */
void
vhu__conn_settle(struct vhu_conn *c)
{
	if (c->state == CONN_CLOSING && c->ops == 0 && vlist_empty(&c->reap_link)) {
		vlist_add_tail(&c->ring->reap, &c->reap_link);
	}
}

/* ------------------------------------------------------------------ */
/* Deadlines                                                           */

void
vhu__conn_deadline_arm(struct vhu_conn *c)
{
	if (c->msg_timeout_ms == 0 || c->state != CONN_OPEN) {
		return;
	}
	c->deadline_ns = vhu__now_ns() + (uint64_t)c->msg_timeout_ms * 1000000ull;
	if (vlist_empty(&c->dl_link)) {
		vlist_add_tail(&c->ring->deadlines, &c->dl_link);
	}
}

void
vhu__conn_deadline_disarm(struct vhu_conn *c)
{
	if (!vlist_empty(&c->dl_link)) {
		vlist_del(&c->dl_link);
	}
}

/* ------------------------------------------------------------------ */
/* Attach                                                              */

static int
check_opts(const struct vhu_conn_opts *o)
{
	if (o->recv_mode != VHU_RECV_EXACT && o->recv_mode != VHU_RECV_STREAM) {
		return -EINVAL;
	}
	if (o->rules.channel > VHU_CHAN_BACKEND || o->rules.expect > VHU_EXPECT_EITHER) {
		return -EINVAL;
	}
	/* The receive buffer is allocated whole at attach; past this the framer's sums grow too. */
	if (o->rules.max_size > VHU_CONN_MAX_SIZE) {
		return -EINVAL;
	}
	return 0;
}

static int
check_socket(int fd)
{
	int type;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
		int err = errno;

		return err == ENOTSOCK ? -ENOTSOCK : -err;
	}
	return type == SOCK_STREAM ? 0 : -EINVAL;
}

static void
conn_free(struct vhu_conn *c)
{
	vhu__recv_fini(c);
	vhu__sendq_fini(&c->q);
	free(c);
}

int
vhu_conn_attach(struct vhu_ring *r, int fd, const struct vhu_conn_opts *opts,
		const struct vhu_conn_ops *ops, void *ctx, struct vhu_conn **out)
{
	struct vhu_conn_opts o;
	struct vhu_conn *c;
	int ret;

	if (out) {
		*out = NULL;
	}
	if (fd < 0) {
		return -EBADF;
	}
	memset(&o, 0, sizeof(o));
	if (opts) {
		o = *opts;
	}
	if (!r || r->destroying) {
		ret = -EINVAL;
		goto fail_fd;
	}
	if (r->nconns >= r->max_conns) {
		ret = -EMFILE;
		goto fail_fd;
	}
	ret = check_opts(&o);
	if (ret < 0) {
		goto fail_fd;
	}
	ret = check_socket(fd);
	if (ret < 0) {
		goto fail_fd;
	}
	if (o.recv_mode == VHU_RECV_STREAM) {
		ret = vhu__ring_bufs_setup(r);
		if (ret < 0) {
			goto fail_fd;
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		ret = -ENOMEM;
		goto fail_fd;
	}
	c->ring = r;
	c->fd = fd;
	c->mode = o.recv_mode;
	c->frames_only = o.frames_only;
	c->rules = o.rules;
	if (c->rules.max_size == 0) {
		c->rules.max_size = VHU_DEFAULT_MAX_SIZE;
	}
	if (ops) {
		c->cb = *ops;
	}
	c->ctx = ctx;
	c->msg_timeout_ms = o.msg_timeout_ms;
	vlist_init(&c->link);
	vlist_init(&c->reap_link);
	vlist_init(&c->rearm_link);
	vlist_init(&c->flush_link);
	vlist_init(&c->dl_link);
	c->rx.s.kind = SLOT_RECV;
	c->tx.s.kind = SLOT_SEND;
	c->cancel.kind = SLOT_CANCEL;
	ret = vhu__recv_init(c);
	if (ret == 0) {
		ret = vhu__sendq_init(&c->q, o.sendq_bytes ? o.sendq_bytes : DEFAULT_SENDQ_BYTES,
				      o.sendq_msgs ? o.sendq_msgs : DEFAULT_SENDQ_MSGS);
	}
	if (ret < 0) {
		conn_free(c);
		goto fail_fd;
	}
	vlist_add_tail(&r->conns, &c->link);
	r->nconns++;
	vhu__recv_pump(c);
	if (out) {
		*out = c;
	}
	return 0;
fail_fd:
	close(fd);
	return ret;
}

int
vhu_conn_connect(struct vhu_ring *r, const char *path, const struct vhu_conn_opts *opts,
		 const struct vhu_conn_ops *ops, void *ctx, struct vhu_conn **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	int fd;

	if (out) {
		*out = NULL;
	}
	if (!r || !path) {
		return -EINVAL;
	}
	len = strlen(path);
	if (len >= sizeof(sa.sun_path)) {
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, len + 1);
	/*
	 * Non-blocking: an AF_UNIX connect completes (or fails) at once, except
	 * that a blocking one waits for as long as the listener's backlog is
	 * full, which would stall every connection of the ring. Non-blocking,
	 * a full backlog is -EAGAIN at once. The socket is blocking again
	 * before it is attached (the ring's operations wait in the kernel).
	 */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		return -errno;
	}
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
		int err = errno;

		close(fd);
		return err == EINPROGRESS ? -EAGAIN : -err;
	}
	return vhu_conn_attach(r, fd, opts, ops, ctx, out);
}

/* ------------------------------------------------------------------ */
/* Close                                                               */

static void
submit_cancel(struct vhu_conn *c)
{
	struct io_uring_sqe *sqe = vhu__ring_sqe(c->ring);

	if (!sqe) {
		/* The ops still complete on their own when the peer goes; nothing to free early. */
		return;
	}
	/* One cancel for all of the socket's operations; the socket is still open. */
	io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
	vhu__conn_track(c, &c->cancel, sqe);
}

void
vhu_conn_close_reason(struct vhu_conn *c, int reason)
{
	if (!c || c->state != CONN_OPEN) {
		return;
	}
	c->state = CONN_CLOSING;
	c->reason = reason;
	vhu__conn_deadline_disarm(c);
	if (!vlist_empty(&c->rearm_link)) {
		vlist_del(&c->rearm_link);
	}
	if (!vlist_empty(&c->flush_link)) {
		vlist_del(&c->flush_link);
	}
	if (c->ops > 0) {
		submit_cancel(c);
	} else {
		vhu__conn_settle(c);
	}
}

/*
 * The peer hung up (reason: -VHU_EDISCONNECT or -VHU_EPARTIAL). A peer that
 * only stopped sending still reads: replies already queued go out first,
 * and the connection closes once they are sent (or fail).
 */
void
vhu__conn_peer_gone(struct vhu_conn *c, int reason)
{
	if (c->state != CONN_OPEN) {
		return;
	}
	if (c->cb.on_hangup) {
		/* Half-closed: the application still sends, until vhu_conn_shutdown(). */
		c->rx_eof = reason;
		vhu__conn_deadline_disarm(c);
		c->cb.on_hangup(c, reason, c->ctx);
		if (c->state == CONN_OPEN && c->tx_shut_done) {
			vhu_conn_close_reason(c, reason);
		}
		return;
	}
	if (c->q.dn == 0) {
		vhu_conn_close_reason(c, reason);
		return;
	}
	c->rx_eof = reason;
	vhu__conn_deadline_disarm(c);
	vhu__send_schedule(c);
}

/* What was queued before vhu_conn_shutdown() is out: the peer reads EOF now. */
void
vhu__conn_shut_send(struct vhu_conn *c)
{
	if (c->state != CONN_OPEN || c->tx_shut_done) {
		return;
	}
	c->tx_shut_done = true;
	if (shutdown(c->fd, SHUT_WR) != 0) {
		vhu_conn_close_reason(c, -errno);
		return;
	}
	if (c->rx_eof) {
		/* Both directions are over. */
		vhu_conn_close_reason(c, c->rx_eof);
	}
}

void
vhu_conn_shutdown(struct vhu_conn *c)
{
	if (!c || c->state != CONN_OPEN || c->tx_shut) {
		return;
	}
	c->tx_shut = true;
	if (c->q.dn == 0 && !c->tx.s.busy) {
		vhu__conn_shut_send(c);
	}
}

void
vhu_conn_close(struct vhu_conn *c)
{
	vhu_conn_close_reason(c, 0);
}

void
vhu__conn_cancel_complete(struct vhu_conn *c, struct io_uring_cqe *cqe)
{
	vhu__conn_op_end(c, &c->cancel);
	/* -EALREADY: an operation was running and could not be stopped; ask again. */
	if (cqe->res == -EALREADY && c->ops > 0) {
		submit_cancel(c);
	}
}

void
vhu__conn_finish(struct vhu_conn *c)
{
	struct vhu_ring *r = c->ring;
	struct vhu_ulistener *l = c->listener;

	close(c->fd);
	c->fd = -1;
	vhu__sendq_drop(&c->q);
	vhu__recv_fini(c);
	vhu__conn_deadline_disarm(c);
	vlist_del(&c->link);
	r->nconns--;
	if (c->cb.on_close) {
		c->cb.on_close(c, c->reason, c->ctx);
	}
	conn_free(c);
	if (l) {
		vhu__ulistener_conn_gone(l);
	}
	/* Its fd is free again: a listener paused at the fd limit can accept. */
	vhu__ulistener_fd_freed(r);
}

/* ------------------------------------------------------------------ */
/* Accessors                                                           */

int
vhu_conn_fd(const struct vhu_conn *c)
{
	return c->fd;
}

void *
vhu_conn_ctx(const struct vhu_conn *c)
{
	return c->ctx;
}

void
vhu_conn_set_ctx(struct vhu_conn *c, void *ctx)
{
	c->ctx = ctx;
}

struct vhu_ring *
vhu_conn_ring(const struct vhu_conn *c)
{
	return c->ring;
}

unsigned int
vhu_conn_sendq_len(const struct vhu_conn *c)
{
	return c->q.dn;
}
