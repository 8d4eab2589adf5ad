/* SPDX-License-Identifier: MIT */
/*
 * The receive side: reads, delivery, and receive-side flow control.
 *
 * Exact: recvmsg of the 12 header bytes, then of exactly size body bytes.
 * Every recvmsg has a control buffer so that no fd is ever dropped unseen;
 * fds count only on the first chunk of a header.
 *
 * Stream: one single-shot recvmsg at a time into a buffer the kernel picks
 * from the ring's provided buffers (IOSQE_BUFFER_SELECT), with the
 * connection's own control buffer; the framer cuts the chunk into messages.
 * Not multishot, for two reasons: a multishot receive on AF_UNIX can miss
 * the peer's EOF for good (its final completion is never posted), and a
 * receive that is re-armed only when the connection can take more is what
 * makes flow control exact: bytes the engine does not read wait in the
 * socket, and the peer's writes block.
 *
 * Flow control: a message is delivered only while the connection is not
 * paused and, if it is a request, while the send queue has room for a reply
 * (VHU_REPLY_RESERVE). Otherwise it is held (struct rx_hold) with the rest
 * of its chunk (struct rx_stream), no read is armed, and delivery resumes
 * where it stopped once vhu_conn_resume_recv() is called or a send makes
 * room (vhu__recv_wake). A paused stream connection keeps at most one
 * provided buffer, and only while few are so kept (VHU_HOLD_SHARE).
 *
 * A CQE that arrives while the connection is closing still has its fds
 * closed and its buffer recycled.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------------ */
/* Delivery and holding                                                */

/* May this message be handed to on_message now? */
static bool
may_deliver(struct vhu_conn *c, const struct vhu_hdr *hdr)
{
	if (c->rx_paused) {
		return false;
	}
	/*
	 * Replies are always taken (a peer answering us must never wait on our
	 * queue); a proxy's output goes to another connection, which it paces
	 * by pausing this one itself.
	 */
	if (c->frames_only || (hdr->flags & VHU_FLAG_REPLY) || vhu__send_room(c)) {
		return true;
	}
	if (!c->rx_starved) {
		c->rx_starved = true;
		/* Held replies go out now: only their completion brings room back. */
		vhu__send_schedule(c);
	}
	return false;
}

static void
hold(struct vhu_conn *c, const struct vhu_hdr *hdr, void *body, struct vhu_fds *fds)
{
	c->held.on = true;
	c->held.hdr = *hdr;
	/* Exact: the body is in x.body, which no read touches until it is delivered. */
	c->held.body = c->mode == VHU_RECV_STREAM ? vhu__framer_keep(&c->st.fr, body, hdr->size)
						  : body;
	vhu__fds_move(&c->held.fds, fds);
}

/* A handler that returns VHU_MSG_HOLD must leave the message's fds where they were. */
static bool
fds_intact(const struct vhu_fds *fds, unsigned int n)
{
	if (fds->n != n) {
		return false;
	}
	for (unsigned int i = 0; i < n; i++) {
		if (fds->fd[i] < 0) {
			return false;
		}
	}
	return true;
}

/*
 * Hand one validated message to on_message, or hold it.
 * \return 0 to go on; 1 to stop (held, or the connection is closing);
 *         a negative error that closes the connection.
 */
static int
deliver(struct vhu_conn *c, const struct vhu_hdr *hdr, void *body, struct vhu_fds *fds)
{
	unsigned int nfds = fds->n;
	struct vhu_msg m;
	int r = 0;

	if (!may_deliver(c, hdr)) {
		hold(c, hdr, body, fds);
		return 1;
	}
	if (fds->n > 0 && !c->frames_only) {
		r = vhu_msg_check_fd_kinds(&c->rules, hdr, fds->fd, fds->n, c->fd);
		if (r < 0) {
			vhu_fds_close(fds);
			return r;
		}
	}
	m.hdr = *hdr;
	m.body = body;
	vhu__fds_move(&m.fds, fds);
	if (c->cb.on_message) {
		r = c->cb.on_message(c, &m, c->ctx);
	}
	if (r == VHU_MSG_HOLD && c->state == CONN_OPEN) {
		if (!fds_intact(&m.fds, nfds)) {
			vhu_fds_close(&m.fds);
			return -EINVAL;
		}
		c->rx_paused = true;
		hold(c, hdr, body, &m.fds);
		return 1;
	}
	c->ring->st.msgs_in++;
	if (m.fds.n > 0) {
		vhu_fds_close(&m.fds);	/* the ones the handler did not take */
	}
	if (r < 0) {
		return r;
	}
	return c->state == CONN_OPEN ? 0 : 1;
}

static int
deliver_held(struct vhu_conn *c)
{
	struct vhu_hdr hdr = c->held.hdr;
	struct vhu_fds fds = c->held.fds;

	c->held.on = false;
	vhu_fds_init(&c->held.fds);
	return deliver(c, &hdr, c->held.body, &fds);
}

/* Advance the receive side at the end of the reaping pass (after replies are submitted). */
void
vhu__recv_wake(struct vhu_conn *c)
{
	if (c->state == CONN_OPEN && vlist_empty(&c->rearm_link)) {
		vlist_add_tail(&c->ring->rearm, &c->rearm_link);
	}
}

/* May a read be armed? */
static bool
may_read(const struct vhu_conn *c)
{
	return c->state == CONN_OPEN && !c->rx_paused && !c->held.on && !c->rx.s.busy &&
	       c->rx_eof == 0 && c->st.len == c->st.off;
}

/* ------------------------------------------------------------------ */
/* Exact                                                               */

/* The next read of the message being received: the rest of its header or body. */
static void
exact_prep(struct vhu_conn *c)
{
	struct recv_op *rx = &c->rx;
	struct rx_exact *x = &c->x;

	if (x->phase == RX_HDR) {
		rx->iov.iov_base = x->hdr.b + x->got;
		rx->iov.iov_len = VHU_HDR_SIZE - x->got;
	} else {
		rx->iov.iov_base = x->body + x->got;
		rx->iov.iov_len = x->hdr.h.size - x->got;
	}
	memset(&rx->mh, 0, sizeof(rx->mh));
	rx->mh.msg_iov = &rx->iov;
	rx->mh.msg_iovlen = 1;
	vhu_cmsg_prep_recv(&rx->mh, &rx->cbuf.exact);
}

static void
exact_arm(struct vhu_conn *c)
{
	struct recv_op *rx = &c->rx;
	struct rx_exact *x = &c->x;
	struct io_uring_sqe *sqe;
	bool fresh = x->phase == RX_HDR && x->got == 0;

	exact_prep(c);
	sqe = vhu__ring_sqe(c->ring);
	if (!sqe) {
		vhu_conn_close_reason(c, -EBUSY);
		return;
	}
	/*
	 * More bytes waiting: read without waiting, so that a dry socket is
	 * seen at once (held replies go out then). A new message with nothing
	 * waiting: wait for it without a first, failing, attempt.
	 */
	io_uring_prep_recvmsg(sqe, c->fd, &rx->mh,
			      MSG_CMSG_CLOEXEC | (c->rx_more ? MSG_DONTWAIT : 0));
	if (fresh && !c->rx_more) {
		sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	}
	vhu__conn_track(c, &rx->s, sqe);
}

static void
exact_message(struct vhu_conn *c)
{
	struct rx_exact *x = &c->x;
	struct vhu_hdr hdr = x->hdr.h;
	int r;

	/* Exact receives hold at most VHU_MAX_FDS fds (more is -VHU_ECTRUNC): framing is done. */
	r = c->frames_only ? 0 : vhu_msg_check(&c->rules, &hdr, x->body, x->fds.n);
	if (r < 0) {
		vhu_fds_close(&x->fds);
		vhu_conn_close_reason(c, r);
		return;
	}
	vhu__conn_deadline_disarm(c);
	x->phase = RX_HDR;
	x->got = 0;
	r = deliver(c, &hdr, x->body, &x->fds);
	if (r < 0) {
		vhu_conn_close_reason(c, r);
	} else if (r == 0 && !c->x.draining) {
		/*
		 * The next read is armed at the end of the reaping pass, after the
		 * replies this message produced are submitted.
		 */
		vhu__recv_wake(c);
	}
}

/* More of the same message is needed: a draining loop reads it itself, else a read is armed. */
static void
exact_next(struct vhu_conn *c)
{
	if (!c->x.draining) {
		exact_arm(c);
	}
}

static void
exact_data(struct vhu_conn *c, int res)
{
	struct recv_op *rx = &c->rx;
	struct rx_exact *x = &c->x;
	bool first = x->phase == RX_HDR && x->got == 0;
	struct vhu_fds extra;
	int n;

	vhu_fds_init(&extra);
	if (c->state != CONN_OPEN) {
		vhu_cmsg_collect(&rx->mh, rx->mh.msg_flags, &extra);
		vhu_fds_close(&extra);
		return;
	}
	n = vhu_cmsg_collect(&rx->mh, rx->mh.msg_flags, first ? &x->fds : &extra);
	if (n < 0) {
		vhu_conn_close_reason(c, n);
		return;
	}
	if (extra.n > 0) {
		/* fds on a later header chunk or on the body: they belong to no message. */
		vhu_fds_close(&extra);
		vhu_conn_close_reason(c, -VHU_EINVALID);
		return;
	}
	if (first) {
		vhu__conn_deadline_arm(c);
	}
	x->got += (uint32_t)res;
	if (x->phase == RX_HDR) {
		if (x->got < VHU_HDR_SIZE) {
			exact_next(c);
			return;
		}
		n = c->frames_only ? 0 : vhu_hdr_check(&c->rules, &x->hdr.h);
		if (n == 0 && x->hdr.h.size > c->rules.max_size) {
			n = -VHU_EOVERSIZED;
		}
		if (n < 0) {
			vhu_fds_close(&x->fds);
			vhu_conn_close_reason(c, n);
			return;
		}
		if (x->hdr.h.size == 0) {
			exact_message(c);
			return;
		}
		x->phase = RX_BODY;
		x->got = 0;
		exact_next(c);
		return;
	}
	if (x->got < x->hdr.h.size) {
		exact_next(c);
		return;
	}
	exact_message(c);
}

/*
 * The socket holds more (the last read said so): read it with plain
 * non-blocking recvmsg, up to VHU_DRAIN_READS reads, instead of one
 * io_uring round trip per read. Each read is still exactly a header or a
 * body, with its control buffer. A dry socket (EAGAIN) ends the drain and
 * the held replies go out; the caller then arms a waiting read.
 */
static void
exact_drain(struct vhu_conn *c)
{
	struct recv_op *rx = &c->rx;

	c->x.draining = true;
	for (unsigned int n = 0; n < VHU_DRAIN_READS && may_read(c) && c->rx_more; n++) {
		ssize_t r;

		exact_prep(c);
		r = recvmsg(c->fd, &rx->mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			c->rx_more = false;
			vhu__send_read_done(c, false);
			break;
		}
		if (r < 0) {
			vhu_conn_close_reason(c, -errno);
			break;
		}
		c->ring->st.direct_reads++;
		if (r == 0) {
			c->rx_more = false;
			vhu__send_read_done(c, false);
			c->x.draining = false;
			vhu__conn_peer_gone(c, c->x.phase == RX_HDR && c->x.got == 0 ?
						       -VHU_EDISCONNECT : -VHU_EPARTIAL);
			return;
		}
		vhu__send_read_done(c, true);
		exact_data(c, (int)r);
	}
	c->x.draining = false;
}

static void
exact_complete(struct vhu_conn *c, struct io_uring_cqe *cqe)
{
	int res = cqe->res;
	bool more = res > 0 && (cqe->flags & IORING_CQE_F_SOCK_NONEMPTY);

	vhu__conn_op_end(c, &c->rx.s);
	vhu__send_read_done(c, more);
	c->rx_more = more;
	if (res > 0) {
		exact_data(c, res);
	} else if (res == 0) {
		bool between = c->x.phase == RX_HDR && c->x.got == 0;

		vhu__conn_peer_gone(c, between ? -VHU_EDISCONNECT : -VHU_EPARTIAL);
	} else if (res == -EAGAIN || res == -EINTR) {
		vhu__recv_wake(c);
	} else {
		/* -ECANCELED is the close we asked for; the reason is already set. */
		vhu_conn_close_reason(c, res);
	}
}

/* ------------------------------------------------------------------ */
/* Stream                                                              */

static void
stream_arm(struct vhu_conn *c)
{
	struct vhu_ring *r = c->ring;
	struct recv_op *rx = &c->rx;
	struct io_uring_sqe *sqe = vhu__ring_sqe(r);

	if (!sqe) {
		vhu_conn_close_reason(c, -EBUSY);
		return;
	}
	memset(&rx->mh, 0, sizeof(rx->mh));
	/* With a selected buffer, the iovec gives only the most to read. */
	rx->iov.iov_base = NULL;
	rx->iov.iov_len = r->buf_stride - VHU_BUF_SKEW;
	rx->mh.msg_iov = &rx->iov;
	rx->mh.msg_iovlen = 1;
	rx->mh.msg_control = rx->cbuf.stream.buf;
	rx->mh.msg_controllen = CMSG_LEN(sizeof(int) * (VHU_MAX_FDS + 1u));
	io_uring_prep_recvmsg(sqe, c->fd, &rx->mh, MSG_CMSG_CLOEXEC);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = VHU_BGID;
	if (!c->rx_more) {
		sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	}
	vhu__conn_track(c, &rx->s, sqe);
	r->st.rearms++;
}

static int
frame_deliver(void *arg, const struct vhu_hdr *hdr, void *body, struct vhu_fds *fds)
{
	return deliver(arg, hdr, body, fds);
}

/* The rest of the chunk is consumed (or the connection is closing): let it go. */
static void
rest_release(struct vhu_conn *c)
{
	struct rx_stream *st = &c->st;

	if (st->bid >= 0) {
		vhu__ring_buf_put(c->ring, (unsigned int)st->bid);
		if (st->kept) {
			c->ring->bufs_held--;
		}
	}
	st->bid = -1;
	st->kept = false;
	st->data = NULL;
	st->off = 0;
	st->len = 0;
	vhu_fds_close(&st->fds);
}

/*
 * Delivery stopped inside a chunk: keep its rest, in its provided buffer
 * while few are kept ring-wide, else in the connection's spill buffer.
 * \return 0, or -ENOMEM.
 */
static int
rest_keep(struct vhu_conn *c)
{
	struct rx_stream *st = &c->st;
	struct vhu_ring *r = c->ring;
	uint32_t rest = st->len - st->off;

	if (st->bid < 0 || st->kept) {
		return 0;
	}
	if (r->bufs_held < r->nbufs / VHU_HOLD_SHARE) {
		st->kept = true;
		r->bufs_held++;
		return 0;
	}
	if (!st->spill) {
		st->spill = malloc(r->buf_stride);
		if (!st->spill) {
			return -ENOMEM;
		}
	}
	memcpy(st->spill + VHU_BUF_SKEW, st->data + st->off, rest);
	vhu__ring_buf_put(r, (unsigned int)st->bid);
	st->bid = -1;
	st->data = st->spill + VHU_BUF_SKEW;
	st->off = 0;
	st->len = rest;
	return 0;
}

/*
 * Feed the rest of the current chunk to the framer.
 * \return 0 when it is all delivered; 1 when delivery stopped (the rest is
 *         kept) or the connection is closing.
 */
static int
feed_rest(struct vhu_conn *c)
{
	struct rx_stream *st = &c->st;
	size_t used = 0;
	int r;

	r = vhu__framer_feed_part(&st->fr, st->data + st->off, st->len - st->off, &st->fds,
				  frame_deliver, c, &used);
	st->off += (uint32_t)used;
	if (r < 0) {
		rest_release(c);
		vhu_conn_close_reason(c, r);
		return 1;
	}
	if (c->state != CONN_OPEN) {
		rest_release(c);
		return 1;
	}
	if (vhu__framer_idle(&st->fr)) {
		vhu__conn_deadline_disarm(c);
	} else if (st->fr.began || vlist_empty(&c->dl_link)) {
		vhu__conn_deadline_arm(c);
	}
	if (st->off < st->len) {
		r = rest_keep(c);
		if (r < 0) {
			rest_release(c);
			vhu_conn_close_reason(c, r);
		}
		return 1;
	}
	if (st->fds.n > 0) {
		/* Delivery stopped at the chunk's end, and fds are left that no message took. */
		rest_release(c);
		vhu_conn_close_reason(c, -VHU_EINVALID);
		return 1;
	}
	rest_release(c);
	return r;
}

/* One CQE that brought a buffer. */
static void
stream_chunk(struct vhu_conn *c, unsigned int bid, int res)
{
	struct vhu_ring *r = c->ring;
	struct rx_stream *st = &c->st;
	uint8_t *buf = vhu__ring_buf(r, bid);
	struct vhu_fds fds;
	int n;

	if (!buf) {
		vhu_conn_close_reason(c, -EIO);
		return;
	}
	vhu_fds_init(&fds);
	n = vhu_cmsg_collect(&c->rx.mh, c->rx.mh.msg_flags, &fds);
	if (c->state != CONN_OPEN || n < 0 || res <= 0) {
		vhu_fds_close(&fds);
		vhu__ring_buf_put(r, bid);
		if (n < 0) {
			vhu_conn_close_reason(c, n);
		} else if (res == 0) {
			vhu__conn_peer_gone(c, vhu__framer_idle(&st->fr) ? -VHU_EDISCONNECT
									  : -VHU_EPARTIAL);
		} else if (res < 0) {
			vhu_conn_close_reason(c, res);
		}
		return;
	}
	st->bid = (int)bid;
	st->kept = false;
	st->data = buf + VHU_BUF_SKEW;
	st->off = 0;
	st->len = (uint32_t)res;
	st->fds = fds;
	if (feed_rest(c) == 0) {
		vhu__recv_wake(c);
	}
}

static void
stream_complete(struct vhu_conn *c, struct io_uring_cqe *cqe)
{
	int res = cqe->res;

	vhu__conn_op_end(c, &c->rx.s);
	c->rx_more = res > 0 && (cqe->flags & IORING_CQE_F_SOCK_NONEMPTY);
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		stream_chunk(c, cqe->flags >> IORING_CQE_BUFFER_SHIFT, res);
	} else if (res == 0) {
		vhu__conn_peer_gone(c, vhu__framer_idle(&c->st.fr) ? -VHU_EDISCONNECT
								   : -VHU_EPARTIAL);
	} else if (res == -ENOBUFS) {
		/* Every buffer is in use: read again once this pass has recycled some. */
		c->ring->st.enobufs++;
		vhu__recv_wake(c);
	} else if (res == -EAGAIN || res == -EINTR) {
		vhu__recv_wake(c);
	} else {
		/* -ECANCELED is the close we asked for; the reason is already set. */
		vhu_conn_close_reason(c, res);
	}
}

/* ------------------------------------------------------------------ */

int
vhu__recv_init(struct vhu_conn *c)
{
	vhu_fds_init(&c->held.fds);
	vhu_fds_init(&c->x.fds);
	vhu_fds_init(&c->st.fds);
	vhu_fds_init(&c->st.fr.fds);
	c->st.bid = -1;
	if (c->mode == VHU_RECV_STREAM) {
		int ret = vhu__framer_init(&c->st.fr, &c->rules);

		c->st.fr.frames_only = c->frames_only;
		return ret;
	}
	c->x.body = malloc(c->rules.max_size);
	return c->x.body ? 0 : -ENOMEM;
}

void
vhu__recv_fini(struct vhu_conn *c)
{
	vhu_fds_close(&c->held.fds);
	c->held.on = false;
	vhu_fds_close(&c->x.fds);
	rest_release(c);
	vhu__framer_fini(&c->st.fr);
	free(c->x.body);
	c->x.body = NULL;
	free(c->st.spill);
	c->st.spill = NULL;
}

/*
 * Deliver what was held, then arm a read if the connection may take more.
 * Runs at the end of a reaping pass (vhu__ring_deferred) for connections
 * woken by a completed message, a resume or a send that made room.
 */
void
vhu__recv_pump(struct vhu_conn *c)
{
	int r;

	if (c->state != CONN_OPEN) {
		return;
	}
	if (c->held.on) {
		r = deliver_held(c);
		if (r < 0) {
			vhu_conn_close_reason(c, r);
		}
		if (r != 0) {
			return;
		}
	}
	if (c->st.len > c->st.off && feed_rest(c) != 0) {
		return;
	}
	if (c->mode == VHU_RECV_EXACT && c->rx_more) {
		exact_drain(c);
	}
	if (!may_read(c)) {
		return;
	}
	if (c->mode == VHU_RECV_STREAM) {
		stream_arm(c);
	} else {
		exact_arm(c);
	}
}

void
vhu__recv_complete(struct vhu_conn *c, struct io_uring_cqe *cqe)
{
	if (c->mode == VHU_RECV_STREAM) {
		stream_complete(c, cqe);
	} else {
		exact_complete(c, cqe);
	}
}

/* ------------------------------------------------------------------ */
/* Public                                                              */

void
vhu_conn_pause_recv(struct vhu_conn *c)
{
	if (c) {
		c->rx_paused = true;
	}
}

void
vhu_conn_resume_recv(struct vhu_conn *c)
{
	if (c && c->rx_paused) {
		c->rx_paused = false;
		vhu__recv_wake(c);
	}
}

bool
vhu_conn_recv_paused(const struct vhu_conn *c)
{
	return c->rx_paused;
}
