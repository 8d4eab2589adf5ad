/* SPDX-License-Identifier: MIT */
/*
 * The receive paths.
 *
 * Exact: recvmsg of the 12 header bytes, then of exactly size body bytes.
 * Every recvmsg has a control buffer so that no fd is ever dropped unseen;
 * fds count only on the first chunk of a header.
 *
 * Stream: one multishot recvmsg per connection into the ring's provided
 * buffers; each CQE's fds are collected from its cmsgs, its payload goes to
 * the framer, and the buffer goes back to the kernel at once. A multishot
 * that ends is re-armed (after -ENOBUFS, at the end of the reaping pass,
 * once this pass has recycled its buffers; the data waits in the socket).
 *
 * A CQE that arrives while the connection is closing still has its fds
 * closed and its buffer recycled.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------------ */
/* Exact                                                               */

static void
exact_arm(struct vhu_conn *c)
{
	struct recv_op *rx = &c->rx;
	struct io_uring_sqe *sqe;

	if (c->rx_phase == RX_HDR) {
		rx->iov.iov_base = c->rx_hdr.b + c->rx_got;
		rx->iov.iov_len = VHU_HDR_SIZE - c->rx_got;
	} else {
		rx->iov.iov_base = c->rx_body + c->rx_got;
		rx->iov.iov_len = c->rx_hdr.h.size - c->rx_got;
	}
	memset(&rx->mh, 0, sizeof(rx->mh));
	rx->mh.msg_iov = &rx->iov;
	rx->mh.msg_iovlen = 1;
	vhu_cmsg_prep_recv(&rx->mh, &rx->cbuf);
	sqe = vhu__ring_sqe(c->ring);
	if (!sqe) {
		vhu_conn_close_reason(c, -EBUSY);
		return;
	}
	io_uring_prep_recvmsg(sqe, c->fd, &rx->mh,
			      MSG_CMSG_CLOEXEC | (c->rx_more ? MSG_DONTWAIT : 0));
	vhu__conn_track(c, &rx->s, sqe);
}

static void
exact_message(struct vhu_conn *c)
{
	struct vhu_hdr hdr = c->rx_hdr.h;
	int r;

	/* Exact receives hold at most VHU_MAX_FDS fds (more is -VHU_ECTRUNC): framing is done. */
	r = c->frames_only ? 0 : vhu_msg_check(&c->rules, &hdr, c->rx_body, c->rx_fds.n);
	if (r < 0) {
		vhu_fds_close(&c->rx_fds);
		vhu_conn_close_reason(c, r);
		return;
	}
	vhu__conn_deadline_disarm(c);
	c->rx_phase = RX_HDR;
	c->rx_got = 0;
	r = vhu__conn_deliver(c, &hdr, c->rx_body, &c->rx_fds);
	if (r < 0) {
		vhu_conn_close_reason(c, r);
	} else if (c->state == CONN_OPEN && c->ring->depth > 0) {
		/*
		 * The next read is armed at the end of the reaping pass, after the
		 * replies this message produced are submitted: a read armed first
		 * would be tried (and parked on the socket) before the reply leaves.
		 */
		if (vlist_empty(&c->rearm_link)) {
			vlist_add_tail(&c->ring->rearm, &c->rearm_link);
		}
	} else if (c->state == CONN_OPEN) {
		exact_arm(c);
	}
}

static void
exact_data(struct vhu_conn *c, int res)
{
	struct recv_op *rx = &c->rx;
	bool first = c->rx_phase == RX_HDR && c->rx_got == 0;
	struct vhu_fds extra;
	int n;

	vhu_fds_init(&extra);
	if (c->state != CONN_OPEN) {
		vhu_cmsg_collect(&rx->mh, rx->mh.msg_flags, &extra);
		vhu_fds_close(&extra);
		return;
	}
	n = vhu_cmsg_collect(&rx->mh, rx->mh.msg_flags, first ? &c->rx_fds : &extra);
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
	c->rx_got += (uint32_t)res;
	if (c->rx_phase == RX_HDR) {
		if (c->rx_got < VHU_HDR_SIZE) {
			exact_arm(c);
			return;
		}
		n = c->frames_only ? 0 : vhu_hdr_check(&c->rules, &c->rx_hdr.h);
		if (n == 0 && c->rx_hdr.h.size > c->rules.max_size) {
			n = -VHU_EOVERSIZED;
		}
		if (n < 0) {
			vhu_fds_close(&c->rx_fds);
			vhu_conn_close_reason(c, n);
			return;
		}
		if (c->rx_hdr.h.size == 0) {
			exact_message(c);
			return;
		}
		c->rx_phase = RX_BODY;
		c->rx_got = 0;
		exact_arm(c);
		return;
	}
	if (c->rx_got < c->rx_hdr.h.size) {
		exact_arm(c);
		return;
	}
	exact_message(c);
}

static void
exact_complete(struct vhu_conn *c, struct io_uring_cqe *cqe)
{
	int res = cqe->res;
	bool more = res > 0 && (cqe->flags & IORING_CQE_F_SOCK_NONEMPTY);

	vhu__conn_op_end(c, &c->rx.s);
	if (c->q.dn > 0 && !c->tx.s.busy && ++c->rx_held >= VHU_HOLD_READS) {
		/* Held for long enough while the peer kept sending: out it goes. */
		vhu__send_schedule(c);
	}
	if (c->rx_more && !more) {
		/* The socket ran dry: what was held goes out now. */
		vhu__send_schedule(c);
	}
	c->rx_more = more;
	if (res > 0) {
		exact_data(c, res);
	} else if (res == 0) {
		bool between = c->rx_phase == RX_HDR && c->rx_got == 0;

		vhu_conn_close_reason(c, between ? -VHU_EDISCONNECT : -VHU_EPARTIAL);
	} else if (res == -EAGAIN || res == -EINTR) {
		if (c->state == CONN_OPEN) {
			exact_arm(c);
		}
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
	struct io_uring_sqe *sqe = vhu__ring_sqe(c->ring);

	if (!sqe) {
		vhu_conn_close_reason(c, -EBUSY);
		return;
	}
	io_uring_prep_recvmsg_multishot(sqe, c->fd, &c->rx.mh, MSG_CMSG_CLOEXEC);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = VHU_BGID;
	vhu__conn_track(c, &c->rx.s, sqe);
}

static int
stream_deliver(void *arg, const struct vhu_hdr *hdr, void *body, struct vhu_fds *fds)
{
	return vhu__conn_deliver(arg, hdr, body, fds);
}

/* One CQE with a buffer. \return false if the connection must not be re-armed. */
static bool
stream_chunk(struct vhu_conn *c, unsigned int bid, int res)
{
	struct vhu_ring *r = c->ring;
	uint8_t *buf = vhu__ring_buf(r, bid);
	struct io_uring_recvmsg_out *out;
	struct vhu_fds fds;
	struct msghdr cm;
	unsigned int plen;
	int n;

	if (!buf) {
		vhu_conn_close_reason(c, -EIO);
		return false;
	}
	out = io_uring_recvmsg_validate(buf, res, &c->rx.mh);
	if (!out) {
		vhu__ring_buf_put(r, bid);
		vhu_conn_close_reason(c, -EIO);
		return false;
	}
	/* vhu_cmsg_collect walks a msghdr: describe the buffer's control area as one. */
	memset(&cm, 0, sizeof(cm));
	cm.msg_control = (uint8_t *)io_uring_recvmsg_name(out) + c->rx.mh.msg_namelen;
	cm.msg_controllen = out->controllen;
	vhu_fds_init(&fds);
	n = vhu_cmsg_collect(&cm, (int)out->flags, &fds);
	if (c->state != CONN_OPEN) {
		vhu_fds_close(&fds);
		vhu__ring_buf_put(r, bid);
		return false;
	}
	if (n < 0) {
		vhu__ring_buf_put(r, bid);
		vhu_conn_close_reason(c, n);
		return false;
	}
	plen = io_uring_recvmsg_payload_length(out, res, &c->rx.mh);
	if (plen == 0) {
		vhu_fds_close(&fds);
		vhu__ring_buf_put(r, bid);
		vhu_conn_close_reason(c, vhu__framer_idle(&c->fr) ? -VHU_EDISCONNECT
								 : -VHU_EPARTIAL);
		return false;
	}
	n = vhu__framer_feed(&c->fr, io_uring_recvmsg_payload(out, &c->rx.mh), plen, &fds,
			     stream_deliver, c);
	vhu__ring_buf_put(r, bid);
	if (n < 0) {
		vhu_conn_close_reason(c, n);
		return false;
	}
	if (c->state != CONN_OPEN) {
		return false;
	}
	if (vhu__framer_idle(&c->fr)) {
		vhu__conn_deadline_disarm(c);
	} else if (c->fr.began || vlist_empty(&c->dl_link)) {
		vhu__conn_deadline_arm(c);
	}
	return true;
}

static void
stream_complete(struct vhu_conn *c, struct io_uring_cqe *cqe)
{
	bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
	int res = cqe->res;
	bool go_on = true;

	if (!more) {
		vhu__conn_op_end(c, &c->rx.s);
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		go_on = stream_chunk(c, cqe->flags >> IORING_CQE_BUFFER_SHIFT, res);
	} else if (res == 0) {
		vhu_conn_close_reason(c, vhu__framer_idle(&c->fr) ? -VHU_EDISCONNECT
								 : -VHU_EPARTIAL);
		go_on = false;
	} else if (res == -ENOBUFS) {
		c->ring->st.enobufs++;
		if (!more && c->state == CONN_OPEN && vlist_empty(&c->rearm_link)) {
			vlist_add_tail(&c->ring->rearm, &c->rearm_link);
		}
		return;
	} else if (res < 0 && res != -EAGAIN && res != -EINTR) {
		vhu_conn_close_reason(c, res);
		go_on = false;
	}
	if (!more && go_on && c->state == CONN_OPEN) {
		vhu__recv_rearm(c);
	}
}

/* ------------------------------------------------------------------ */

void
vhu__recv_arm(struct vhu_conn *c)
{
	if (c->mode == VHU_RECV_STREAM) {
		/* The multishot template: no name, control space in every buffer. */
		memset(&c->rx.mh, 0, sizeof(c->rx.mh));
		c->rx.mh.msg_controllen = VHU_STREAM_CTRL;
		stream_arm(c);
	} else {
		c->rx_phase = RX_HDR;
		c->rx_got = 0;
		exact_arm(c);
	}
}

void
vhu__recv_rearm(struct vhu_conn *c)
{
	if (c->mode != VHU_RECV_STREAM) {
		exact_arm(c);
		return;
	}
	c->ring->st.rearms++;
	stream_arm(c);
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
